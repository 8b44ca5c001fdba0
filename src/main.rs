use clap::Parser;

// A bulk job allocates and frees many short-lived strings and rows on several threads at
// once; mimalloc serves that with less time and contention than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (its position in `mi_option_t`, `mimalloc.h` of
/// mimalloc 3, which `libmimalloc-sys` names no constant for).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long memory freed stays with the allocator before it goes back to the system, in
/// milliseconds; mimalloc's own default is 1,000. A 100,000-user request frees some 100 MB
/// when its rows are stored, and a job's chunks free what they held a few times a second:
/// held for a second, that memory was still counted while the next allocated its own, and
/// the peak of a 100,000-user import and its next-day sync rose by a third (BENCHMARKS.md).
/// Much shorter, the memory a chunk frees goes back before the next chunk takes it again,
/// and a large file's import slowed by a tenth. `MIMALLOC_PURGE_DELAY` in the environment
/// still overrides it.
const PURGE_DELAY_MS: std::ffi::c_long = 100;

fn main() -> std::process::ExitCode {
    // SAFETY: options are set before any other thread starts, as mimalloc asks; this one
    // keeps a value the environment set.
    unsafe { libmimalloc_sys::mi_option_set_default(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
    match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime.block_on(run()),
        Err(error) => {
            eprintln!("roster: cannot start the runtime: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> std::process::ExitCode {
    // A bad flag exits 1, not clap's 2: `roster import` gives 2 its own meaning (the job
    // completed with errors), which a script must not confuse with a typo.
    let cli = match roster::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() {
                std::process::ExitCode::FAILURE
            } else {
                std::process::ExitCode::SUCCESS
            };
        }
    };
    match roster::cli::run(cli).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("roster: {error:#}");
            // The client's errors have exit codes of their own (4: the server could not be
            // reached or refused the token); anything else is 1.
            match error.downcast_ref::<roster::client::Error>() {
                Some(error) => error.exit().into(),
                None => std::process::ExitCode::FAILURE,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_option_is_the_one_mimalloc_reads() {
        // Read before `main` sets it: mimalloc's default, or what the environment says.
        let expected = std::env::var("MIMALLOC_PURGE_DELAY")
            .ok()
            .and_then(|value| value.parse().ok())
            .unwrap_or(1_000);
        // SAFETY: reading an option has no precondition.
        let read = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert_eq!(read, expected);
    }
}
