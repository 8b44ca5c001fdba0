//! Connecting, with each database's settings: SQLite's pragmas and its allocator, and
//! `TCP_NODELAY` on PostgreSQL's connections.

use std::str::FromStr;
use std::time::Duration;

use sea_orm::sqlx::postgres::PgConnectOptions;
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};

use crate::config::DatabaseConfig;
use crate::telemetry;

/// SQLite pool size. In WAL mode readers never block the writer, so several connections let
/// reads run beside a write transaction; and a query on the pool from inside an open
/// transaction needs a second connection, which a pool of one would wait for forever.
/// Writers still take turns on the file lock: write transactions begin `IMMEDIATE` and wait
/// up to `SQLITE_BUSY_TIMEOUT` for it instead of failing.
pub const SQLITE_POOL_SIZE: u32 = 8;
pub const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Pages the SQLite write-ahead log grows to before a commit copies them into the database
/// file (64 MB of 4 KB pages; SQLite's default is 1,000). A bulk import rewrites the same
/// index pages chunk after chunk: each copy writes a page once however often it changed
/// since the last one, so fewer copies write far less, and the committing chunk waits for
/// fewer of them. The log's file keeps its largest size for reuse.
pub const SQLITE_WAL_PAGES: u32 = 16_384;

pub async fn connect(config: &DatabaseConfig) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(config.database_url.clone());
    options
        .acquire_timeout(Duration::from_secs(30))
        .sqlx_logging(true)
        .sqlx_logging_level(log::LevelFilter::Debug)
        .sqlx_slow_statements_logging_settings(log::LevelFilter::Warn, Duration::from_secs(1));
    if config.database_url.starts_with("sqlite:") {
        sqlite_memory();
        options
            .max_connections(SQLITE_POOL_SIZE)
            .min_connections(1)
            .map_sqlx_sqlite_opts(|opts| {
                opts.journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(SQLITE_BUSY_TIMEOUT)
                    .foreign_keys(true)
                    .pragma("wal_autocheckpoint", SQLITE_WAL_PAGES.to_string())
                    // Statement journals (each multi-row insert of a chunk keeps one to
                    // undo itself) and sorts stay in memory instead of temporary files.
                    .pragma("temp_store", "memory")
            });
    } else {
        options.max_connections(config.db_max_connections);
        if let Some(port) = postgres_tcp_port(&config.database_url) {
            options.map_sqlx_postgres_pool_opts(move |pool| {
                pool.after_connect(move |_, _| {
                    Box::pin(async move {
                        disable_nagle(port);
                        Ok(())
                    })
                })
            });
        }
    }
    let mut db = Database::connect(options).await?;
    db.set_metric_callback(|info| {
        metrics::counter!(telemetry::DB_STATEMENTS, "failed" => if info.failed { "true" } else { "false" })
            .increment(1);
        metrics::histogram!(telemetry::DB_DURATION).record(info.elapsed.as_secs_f64());
    });
    Ok(db)
}

/// SQLite's own allocations (pages, statements, bound values) are served by mimalloc, as
/// the server's are, and SQLite keeps no count of the memory it uses: keeping one takes a
/// process-wide mutex around every allocation, and with the system allocator behind it the
/// database thread of a bulk job spent about a tenth of its time allocating. Set once,
/// before SQLite starts (a setting made after that is refused, and SQLite keeps its
/// defaults).
pub(super) fn sqlite_memory() {
    use libsqlite3_sys as ffi;
    use std::ffi::{c_int, c_void};

    unsafe extern "C" fn malloc(size: c_int) -> *mut c_void {
        // SAFETY: mimalloc accepts any size; SQLite never asks for a negative one.
        unsafe { libmimalloc_sys::mi_malloc(size.max(0) as usize) }
    }
    unsafe extern "C" fn free(block: *mut c_void) {
        // SAFETY: SQLite frees only blocks `malloc` or `realloc` gave it.
        unsafe { libmimalloc_sys::mi_free(block) }
    }
    unsafe extern "C" fn realloc(block: *mut c_void, size: c_int) -> *mut c_void {
        // SAFETY: as for `free`, and any size.
        unsafe { libmimalloc_sys::mi_realloc(block, size.max(0) as usize) }
    }
    unsafe extern "C" fn size(block: *mut c_void) -> c_int {
        // SAFETY: as for `free`; SQLite's blocks stay far below `c_int::MAX`.
        unsafe { libmimalloc_sys::mi_usable_size(block) as c_int }
    }
    unsafe extern "C" fn roundup(size: c_int) -> c_int {
        // SAFETY: a pure function of its argument.
        let good = unsafe { libmimalloc_sys::mi_good_size(size.max(0) as usize) };
        c_int::try_from(good).unwrap_or(size)
    }
    unsafe extern "C" fn init(_: *mut c_void) -> c_int {
        ffi::SQLITE_OK
    }
    unsafe extern "C" fn shutdown(_: *mut c_void) {}

    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let methods = ffi::sqlite3_mem_methods {
            xMalloc: Some(malloc),
            xFree: Some(free),
            xRealloc: Some(realloc),
            xSize: Some(size),
            xRoundup: Some(roundup),
            xInit: Some(init),
            xShutdown: Some(shutdown),
            pAppData: std::ptr::null_mut(),
        };
        // SAFETY: both settings are made before any connection opens (SQLite refuses them
        // with SQLITE_MISUSE once it has started); SQLite copies the methods it is given,
        // and every function in them is thread-safe, as mimalloc's are.
        let results = unsafe {
            [
                ffi::sqlite3_config(ffi::SQLITE_CONFIG_MALLOC, &raw const methods),
                ffi::sqlite3_config(ffi::SQLITE_CONFIG_MEMSTATUS, 0 as c_int),
            ]
        };
        if results.iter().any(|&code| code != ffi::SQLITE_OK) {
            tracing::debug!(?results, "SQLite had started; it keeps its own allocator");
        }
    });
}

/// The server port of a PostgreSQL URL that connects over TCP (not a Unix socket).
fn postgres_tcp_port(url: &str) -> Option<u16> {
    let options = PgConnectOptions::from_str(url).ok()?;
    options.get_socket().is_none().then(|| options.get_port())
}

/// sqlx 0.9.0 no longer turns Nagle's algorithm off on its TCP connections
/// (launchbadge/sqlx#4335, fixed upstream but not yet released): a statement a little
/// longer than one TCP segment then waits for the server's delayed acknowledgement, 40 ms
/// each time, which made bulk imports on PostgreSQL several times slower. Until a release
/// carries the fix, each new connection gets `TCP_NODELAY` here: every TCP socket of the
/// process whose peer listens on the database's port does (on Linux, found through
/// `/proc/self/fd`).
#[cfg(target_os = "linux")]
fn disable_nagle(port: u16) {
    use std::os::fd::{BorrowedFd, RawFd};
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(raw) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<RawFd>().ok())
        else {
            continue;
        };
        let is_socket = std::fs::read_link(entry.path())
            .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"));
        if !is_socket {
            continue;
        }
        // SAFETY: the descriptor is borrowed only to be duplicated at once. Should another
        // thread close it meanwhile, the duplication fails, or duplicates whatever now has
        // that number; the copy is ours, and it is changed only if it is a TCP socket to
        // the database's port.
        let Ok(copy) = unsafe { BorrowedFd::borrow_raw(raw) }.try_clone_to_owned() else {
            continue;
        };
        let stream = std::net::TcpStream::from(copy);
        if stream.peer_addr().is_ok_and(|peer| peer.port() == port)
            && let Err(error) = stream.set_nodelay(true)
        {
            tracing::debug!(%error, "TCP_NODELAY could not be set on a database connection");
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn disable_nagle(_port: u16) {}

#[cfg(test)]
mod tests {
    use crate::db::scratch_sqlite;

    #[tokio::test]
    async fn sqlite_allocates_through_mimalloc() {
        let (_dir, db) = scratch_sqlite().await;
        // SAFETY: a block SQLite's allocator gives, freed by it at once.
        let from_mimalloc = unsafe {
            let block = libsqlite3_sys::sqlite3_malloc(64);
            assert!(!block.is_null());
            let found = libmimalloc_sys::mi_is_in_heap_region(block);
            libsqlite3_sys::sqlite3_free(block);
            found
        };
        assert!(from_mimalloc, "SQLite keeps the system allocator");
        // SQLite keeps no count of its memory (a process-wide lock around each allocation).
        // SAFETY: a read of SQLite's counters.
        assert_eq!(unsafe { libsqlite3_sys::sqlite3_memory_used() }, 0);
        let _ = db.close().await;
    }
}
