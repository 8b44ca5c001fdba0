//! Memory freed in bulk, given back to the system at once.
//!
//! mimalloc keeps memory that was freed for a while before it gives it back to the system
//! (`MIMALLOC_PURGE_DELAY`, see `main.rs`), and gives it back only when it is next called
//! on. A bulk request frees some 100 MB at once when its rows are stored, and a job what
//! it held when it ends; [`give_back`] returns such memory there and then, rather than
//! leaving it counted while the next job allocates its own.

/// Gives back to the system the memory freed and not yet returned.
pub fn give_back() {
    // SAFETY: `mi_collect` has no precondition; it only returns memory that is free.
    unsafe { libmimalloc_sys::mi_collect(true) };
}
