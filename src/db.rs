//! Database connection and migrations, for SQLite and PostgreSQL alike.

use std::str::FromStr;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::sqlx::postgres::PgConnectOptions;
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ActiveModelTrait, ConnectOptions, ConnectionTrait, Database, DatabaseBackend,
    DatabaseConnection, DatabaseTransaction, DbErr, EntityTrait, IdenStatic, Iterable,
    SqliteTransactionMode, TransactionOptions, TransactionTrait,
};

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
fn sqlite_memory() {
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

/// Applies pending migrations. On PostgreSQL an advisory lock makes several processes that
/// start together take turns, so each migration runs once.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    match db.get_database_backend() {
        DatabaseBackend::Postgres => {
            let txn = db.begin().await?;
            txn.execute_unprepared("SELECT pg_advisory_xact_lock(7310042001)")
                .await?;
            Migrator::up(&txn, None).await?;
            txn.commit().await
        }
        _ => Migrator::up(db, None).await,
    }
}

/// Whether the database answers and every migration of this build is applied.
pub async fn is_ready(db: &DatabaseConnection) -> Result<bool, DbErr> {
    db.ping().await?;
    let pending = Migrator::get_migration_with_status_read_only(db)
        .await?
        .into_iter()
        .any(|m| m.status() == migration::MigrationStatus::Pending);
    Ok(!pending)
}

/// Begins a transaction that will write. On SQLite it takes the write lock at once
/// (`BEGIN IMMEDIATE`): a transaction that first reads and then writes could otherwise find
/// the lock taken at its first write and fail instead of waiting.
pub async fn begin_write(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    let _waiting = (db.get_database_backend() == DatabaseBackend::Sqlite).then(WaitingWriter::new);
    db.begin_with_options(TransactionOptions {
        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        ..Default::default()
    })
    .await
}

/// Whether `error` is SQLite's `SQLITE_BUSY`: the database's write lock stayed taken by
/// another transaction for all of [`SQLITE_BUSY_TIMEOUT`].
pub fn is_busy(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        let runtime = match cause.downcast_ref::<DbErr>() {
            Some(DbErr::Conn(e) | DbErr::Exec(e) | DbErr::Query(e)) => Some(e),
            _ => cause.downcast_ref::<sea_orm::RuntimeErr>(),
        };
        let Some(sea_orm::RuntimeErr::SqlxError(error)) = runtime else {
            return false;
        };
        // Extended result codes keep the primary code in their low byte.
        error
            .as_database_error()
            .filter(|e| {
                e.try_downcast_ref::<sea_orm::sqlx::sqlite::SqliteError>()
                    .is_some()
            })
            .and_then(|e| e.code()?.parse::<i32>().ok())
            .is_some_and(|code| code & 0xff == SQLITE_BUSY)
    })
}

/// SQLite's primary result code for a lock held by another connection.
const SQLITE_BUSY: i32 = 5;

/// Begins the next of a long series of write transactions (a job's chunks). SQLite's write
/// lock has no queue: a writer that finds it taken sleeps and tries again, up to 100 ms
/// later, and a series that began its next transaction as soon as it committed would keep
/// the lock for as long as it runs (a user written while a job runs would wait for the
/// whole job). So on SQLite the series first lets every write transaction this process is
/// beginning take the lock, waiting at most [`SQLITE_BUSY_TIMEOUT`] for them.
pub async fn begin_write_in_turn(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    if db.get_database_backend() == DatabaseBackend::Sqlite {
        let until = tokio::time::Instant::now() + SQLITE_BUSY_TIMEOUT;
        while SQLITE_WRITERS_WAITING.load(Ordering::Acquire) > 0
            && tokio::time::Instant::now() < until
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    begin_write(db).await
}

/// SQLite write transactions of this process that are waiting to begin (see
/// [`begin_write_in_turn`]). One count for every database the process has open: a series
/// may let a writer of another file go first, which takes it no time when that file's lock
/// is free.
static SQLITE_WRITERS_WAITING: AtomicUsize = AtomicUsize::new(0);

/// Counts a writer in [`SQLITE_WRITERS_WAITING`] until it has begun, or given up.
struct WaitingWriter;

impl WaitingWriter {
    fn new() -> Self {
        SQLITE_WRITERS_WAITING.fetch_add(1, Ordering::AcqRel);
        Self
    }
}

impl Drop for WaitingWriter {
    fn drop(&mut self) {
        SQLITE_WRITERS_WAITING.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Drops the statements the pool's idle SQLite connections keep prepared, and answers how
/// many. A connection keeps up to 100 (sqlx's cache), and a job's bulk statements take
/// megabytes each once prepared (an insert of a chunk's rows binds thousands of values):
/// after the 100,000-user feed the idle server held some 30 MB of them, on top of which the
/// next day's request then decoded its rows. Connections in use keep theirs, and so does
/// one that is not back in the pool after [`settle`].
pub async fn forget_prepared(db: &DatabaseConnection) -> usize {
    use sea_orm::sqlx::Connection;
    if db.get_database_backend() != DatabaseBackend::Sqlite {
        return 0;
    }
    let pool = db.get_sqlite_connection_pool();
    settle(pool).await;
    let mut dropped = 0;
    // One at a time, so that the pool never finds itself without an idle connection and
    // opens one more; each goes back behind the others.
    for _ in 0..pool.num_idle() {
        let Some(mut connection) = pool.try_acquire() else {
            break;
        };
        let cached = connection.cached_statements_size();
        match connection.clear_cached_statements().await {
            Ok(()) => dropped += cached,
            Err(error) => {
                tracing::warn!(%error, "cannot drop a connection's prepared statements");
            }
        }
    }
    dropped
}

/// Waits for connections let go of a moment ago (the last a job used) to be back in the
/// pool, each of which goes back in a task of its own: until every connection is idle, or
/// none has come back for 5 ms, and at most 50 ms.
async fn settle(pool: &sea_orm::sqlx::SqlitePool) {
    let until = tokio::time::Instant::now() + Duration::from_millis(50);
    let mut idle = pool.num_idle();
    let mut quiet = 0;
    while idle < pool.size() as usize && quiet < 5 && tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(1)).await;
        let now_idle = pool.num_idle();
        quiet = if now_idle > idle { 0 } else { quiet + 1 };
        idle = now_idle;
    }
}

/// SQL with `?` placeholders, numbered `$1…` for PostgreSQL.
pub fn statement(
    backend: DatabaseBackend,
    sql: &str,
    values: Vec<sea_orm::Value>,
) -> sea_orm::Statement {
    let sql = if backend == DatabaseBackend::Postgres {
        let mut numbered = String::with_capacity(sql.len() + 16);
        let mut n = 0;
        for c in sql.chars() {
            if c == '?' {
                n += 1;
                numbered.push_str(&format!("${n}"));
            } else {
                numbered.push(c);
            }
        }
        numbered
    } else {
        sql.to_owned()
    };
    sea_orm::Statement::from_sql_and_values(backend, sql, values)
}

/// Runs `work`, inside the transaction `conn`, with each statement planned for the values
/// it runs with and the tables as they are (PostgreSQL's `plan_cache_mode =
/// force_custom_plan`), then puts the setting back. A connection otherwise keeps the plan
/// it made for a statement after a few runs: a bulk import grows its tables many times
/// over, and the plan of the manager-chain statement cached while `approver_links` was
/// small took seconds a run once it held a million rows, where one made for the table took
/// about 50 ms (BENCHMARKS.md). Only for such statements: planning costs about a
/// millisecond, and set for a whole connection it also made PostgreSQL plan every
/// foreign-key check of every row again, two fifths of its time in a bulk import.
pub async fn planned_per_run<T>(
    conn: &impl ConnectionTrait,
    work: impl Future<Output = Result<T, DbErr>>,
) -> Result<T, DbErr> {
    if conn.get_database_backend() != DatabaseBackend::Postgres {
        return work.await;
    }
    conn.execute_unprepared("SET LOCAL plan_cache_mode = force_custom_plan")
        .await?;
    let done = work.await?;
    conn.execute_unprepared("SET LOCAL plan_cache_mode = DEFAULT")
        .await?;
    Ok(done)
}

/// Makes writers of one kind within one tenant take turns until the transaction ends
/// (PostgreSQL advisory lock; SQLite's write transactions already take turns). Used where a
/// rule spans several rows, such as "MANAGER links never form a cycle".
pub async fn lock_tenant(
    conn: &impl ConnectionTrait,
    kind: &str,
    tenant: &crate::auth::TenantId,
) -> Result<(), DbErr> {
    advisory_lock(conn, "pg_advisory_xact_lock", kind, tenant).await
}

/// [`lock_tenant`], shared: writers that take it shared run together, and wait only for
/// one that takes it alone (and it for them).
pub async fn lock_tenant_shared(
    conn: &impl ConnectionTrait,
    kind: &str,
    tenant: &crate::auth::TenantId,
) -> Result<(), DbErr> {
    advisory_lock(conn, "pg_advisory_xact_lock_shared", kind, tenant).await
}

async fn advisory_lock(
    conn: &impl ConnectionTrait,
    function: &str,
    kind: &str,
    tenant: &crate::auth::TenantId,
) -> Result<(), DbErr> {
    if conn.get_database_backend() != DatabaseBackend::Postgres {
        return Ok(());
    }
    conn.execute_raw(sea_orm::Statement::from_sql_and_values(
        DatabaseBackend::Postgres,
        format!("SELECT {function}(hashtext($1))"),
        [format!("{kind}:{}", tenant.as_str()).into()],
    ))
    .await?;
    Ok(())
}

/// Refreshes the query planner's statistics of `tables`. A bulk load grows tables many
/// times over long before PostgreSQL's autovacuum looks at them (and SQLite keeps no
/// statistics unless asked); plans made for the small tables, such as reading every row of
/// the tenant through the `tenant` index instead of the few asked for by key, would make
/// each chunk slower than the one before.
pub async fn analyze(conn: &impl ConnectionTrait, tables: &[&str]) -> Result<(), DbErr> {
    if tables.is_empty() {
        return Ok(());
    }
    let sql = match conn.get_database_backend() {
        DatabaseBackend::Postgres => format!("ANALYZE {}", tables.join(", ")),
        _ => {
            let each: Vec<String> = tables.iter().map(|t| format!("ANALYZE {t};")).collect();
            // Sampled, so that a big table costs little more than a small one; 10,000
            // rows per index keeps a tenant (every row, in the worst case) looking far
            // less selective than the few hundred keys a bulk statement asks for.
            format!("PRAGMA analysis_limit = 10000; {}", each.join(" "))
        }
    };
    conn.execute_unprepared(&sql).await?;
    if conn.get_database_backend() == DatabaseBackend::Sqlite {
        STATISTICS_STORED.fetch_add(1, Ordering::Release);
    }
    Ok(())
}

/// How many times [`analyze`] has stored new statistics on SQLite in this process (one
/// process owns its SQLite file).
static STATISTICS_STORED: AtomicI32 = AtomicI32::new(0);

/// Makes this connection plan with the statistics [`analyze`] last stored. A SQLite
/// connection reads them once, when it first reads the schema, and keeps them for its
/// lifetime; `ANALYZE sqlite_master` reads them again, but it also voids every statement
/// the connection has prepared, so that each is parsed and planned again on its next run
/// (for a bulk import's multi-row statements, about a tenth of its time). So each
/// connection notes in its own `temp.user_version` which statistics it read, and reads
/// them again only when [`analyze`] has stored newer ones since. PostgreSQL's statistics
/// are shared by every connection already.
pub async fn load_statistics(conn: &impl ConnectionTrait) -> Result<(), DbErr> {
    if conn.get_database_backend() != DatabaseBackend::Sqlite {
        return Ok(());
    }
    // Read before reloading: statistics stored meanwhile are read the next time.
    let stored = STATISTICS_STORED.load(Ordering::Acquire);
    if statistics_read(conn).await? != stored {
        conn.execute_unprepared(&format!(
            "ANALYZE sqlite_master; PRAGMA temp.user_version = {stored}"
        ))
        .await?;
    }
    Ok(())
}

/// Which statistics this SQLite connection last read, as [`load_statistics`] noted them.
async fn statistics_read(conn: &impl ConnectionTrait) -> Result<i32, DbErr> {
    Ok(conn
        .query_one_raw(sea_orm::Statement::from_string(
            DatabaseBackend::Sqlite,
            "PRAGMA temp.user_version",
        ))
        .await?
        .map(|row| row.try_get_by_index(0))
        .transpose()?
        .unwrap_or(0))
}

/// Inserts rows with multi-row statements, as many rows per statement as the bind-parameter
/// limits of both databases allow.
pub async fn insert_in_chunks<A>(conn: &impl ConnectionTrait, rows: Vec<A>) -> Result<(), DbErr>
where
    A: ActiveModelTrait + Send,
{
    Insert::<A::Entity>::new().exec(conn, rows).await?;
    Ok(())
}

/// Bound values per multi-row statement, within SQLite's 32,766 and PostgreSQL's 65,535.
const MAX_BINDS: usize = 30_000;

/// A multi-row `INSERT` of active models, written straight to SQL text and bound values,
/// in as many statements as [`MAX_BINDS`] requires.
///
/// sea-orm's `insert_many` wraps each value in an expression, copies it into its statement
/// builder and again into the statement, and on PostgreSQL reads back every new key. For
/// the tens of thousands of values a job's chunk writes, that was about a third of the
/// server's own work; here each value is moved once. Every row must set the columns the
/// first row sets: a row that does not is refused (sea-orm would store NULL). The syntax
/// (`ON CONFLICT … DO UPDATE`, `RETURNING`) is the same on SQLite and PostgreSQL.
///
/// On SQLite the rows are a `VALUES` list of bound parameters. On PostgreSQL they are one
/// JSON document, bound as a single parameter and read back into the table's row type by
/// `json_populate_recordset`, where a `VALUES` list of thousands of parameters is
/// planned value by value: the users insert of a 20,000-user job took 1.62 s as a
/// `VALUES` list and 0.99 s as a document (BENCHMARKS.md).
pub struct Insert<E: EntityTrait> {
    conflict: String,
    returning: String,
    entity: std::marker::PhantomData<E>,
}

impl<E: EntityTrait> Default for Insert<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E: EntityTrait> Insert<E> {
    pub fn new() -> Self {
        Self {
            conflict: String::new(),
            returning: String::new(),
            entity: std::marker::PhantomData,
        }
    }

    /// A row whose `keys` are taken updates that row's `columns` instead.
    pub fn on_conflict_update(mut self, keys: &[E::Column], columns: &[E::Column]) -> Self {
        let keys: Vec<String> = keys.iter().map(|key| quoted(key.as_str())).collect();
        let sets: Vec<String> = columns
            .iter()
            .map(|column| {
                let column = quoted(column.as_str());
                format!("{column} = excluded.{column}")
            })
            .collect();
        self.conflict = format!(
            " ON CONFLICT ({}) DO UPDATE SET {}",
            keys.join(", "),
            sets.join(", ")
        );
        self
    }

    /// A row whose `keys` are taken is left out.
    pub fn on_conflict_ignore(mut self, keys: &[E::Column]) -> Self {
        let keys: Vec<String> = keys.iter().map(|key| quoted(key.as_str())).collect();
        self.conflict = format!(" ON CONFLICT ({}) DO NOTHING", keys.join(", "));
        self
    }

    /// Each statement returns these columns of the rows it inserted, in no promised order.
    pub fn returning(mut self, columns: &[E::Column]) -> Self {
        let columns: Vec<String> = columns.iter().map(|c| quoted(c.as_str())).collect();
        self.returning = format!(" RETURNING {}", columns.join(", "));
        self
    }

    /// Inserts `rows`; the rows [`Self::returning`] asked for, if any. Each statement is
    /// written from the rows just before it runs, so only one is held at a time. (The rows
    /// come as a `Vec`: an iterator of closures held across an await trips the compiler's
    /// `Send` check of the job's future.)
    pub async fn exec<A>(
        &self,
        conn: &impl ConnectionTrait,
        rows: Vec<A>,
    ) -> Result<Vec<sea_orm::QueryResult>, DbErr>
    where
        A: ActiveModelTrait<Entity = E> + Send,
    {
        let mut rows = rows.into_iter().peekable();
        let Some(columns) = rows.peek().map(Self::columns_of) else {
            return Ok(Vec::new());
        };
        let backend = conn.get_database_backend();
        let head = self.head(backend, &columns)?;
        let mut returned = Vec::new();
        while rows.peek().is_some() {
            let statement = self.statement(backend, &head, &columns, &mut rows)?;
            if self.returning.is_empty() {
                conn.execute_raw(statement).await?;
            } else {
                returned.extend(conn.query_all_raw(statement).await?);
            }
        }
        Ok(returned)
    }

    /// The columns a row sets.
    fn columns_of<A: ActiveModelTrait<Entity = E>>(row: &A) -> Vec<E::Column> {
        E::Column::iter()
            .filter(|column| !row.get(*column).is_not_set())
            .collect()
    }

    /// `INSERT INTO "table" ("a", "b") VALUES ` on SQLite; on PostgreSQL,
    /// `INSERT INTO "table" ("a", "b") SELECT "a", "b" FROM json_populate_recordset(…)`
    /// whole, as its rows are the one parameter.
    fn head(&self, backend: DatabaseBackend, columns: &[E::Column]) -> Result<String, DbErr> {
        let table = E::default().table_name();
        if columns.is_empty() {
            return Err(DbErr::Custom(format!(
                "an insert into {table} without columns"
            )));
        }
        let names = columns
            .iter()
            .map(|c| quoted(c.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        let table = quoted(table);
        Ok(match backend {
            DatabaseBackend::Postgres => format!(
                "INSERT INTO {table} ({names}) SELECT {names} \
                 FROM json_populate_recordset(NULL::{table}, $1::json)"
            ),
            _ => format!("INSERT INTO {table} ({names}) VALUES "),
        })
    }

    /// One statement of as many of `rows` as [`MAX_BINDS`] allows.
    fn statement<A: ActiveModelTrait<Entity = E>>(
        &self,
        backend: DatabaseBackend,
        head: &str,
        columns: &[E::Column],
        rows: &mut impl Iterator<Item = A>,
    ) -> Result<sea_orm::Statement, DbErr> {
        let per_statement = (MAX_BINDS / columns.len()).max(1);
        let rows = rows.take(per_statement);
        let (mut sql, values) = if backend == DatabaseBackend::Postgres {
            let mut document = Vec::new();
            for (n, mut row) in rows.enumerate() {
                document.push(if n == 0 { b'[' } else { b',' });
                for (i, column) in columns.iter().enumerate() {
                    document.push(if i == 0 { b'{' } else { b',' });
                    write_json(&mut document, column.as_str())?;
                    document.push(b':');
                    write_json_value(&mut document, Self::take(&mut row, *column)?)?;
                }
                document.push(b'}');
            }
            document.push(b']');
            let document = String::from_utf8(document)
                .map_err(|e| DbErr::Custom(format!("an insert's rows as JSON: {e}")))?;
            (head.to_owned(), vec![document.into()])
        } else {
            let mut sql = head.to_owned();
            let mut values = Vec::with_capacity(per_statement * columns.len());
            for (n, mut row) in rows.enumerate() {
                sql.push_str(if n == 0 { "(" } else { ", (" });
                for (i, column) in columns.iter().enumerate() {
                    values.push(Self::take(&mut row, *column)?);
                    sql.push_str(if i == 0 { "?" } else { ", ?" });
                }
                sql.push(')');
            }
            (sql, values)
        };
        sql.push_str(&self.conflict);
        sql.push_str(&self.returning);
        Ok(sea_orm::Statement::from_sql_and_values(
            backend, sql, values,
        ))
    }

    /// A row's value of `column`, which it must set.
    fn take<A: ActiveModelTrait<Entity = E>>(
        row: &mut A,
        column: E::Column,
    ) -> Result<sea_orm::Value, DbErr> {
        row.take(column).into_value().ok_or_else(|| {
            DbErr::Custom(format!(
                "a row of an insert into {} does not set {}",
                E::default().table_name(),
                column.as_str()
            ))
        })
    }

    /// Every statement of `rows`, written at once.
    #[cfg(test)]
    fn statements<A: ActiveModelTrait<Entity = E>>(
        &self,
        backend: DatabaseBackend,
        rows: impl IntoIterator<Item = A>,
    ) -> Result<Vec<sea_orm::Statement>, DbErr> {
        let mut rows = rows.into_iter().peekable();
        let Some(columns) = rows.peek().map(Self::columns_of) else {
            return Ok(Vec::new());
        };
        let head = self.head(backend, &columns)?;
        let mut statements = Vec::new();
        while rows.peek().is_some() {
            statements.push(self.statement(backend, &head, &columns, &mut rows)?);
        }
        Ok(statements)
    }
}

/// Writes a value as JSON that `json_populate_recordset` reads back as the same value of
/// its column: text and numbers as themselves, dates as ISO 8601, instants in UTC to the
/// microsecond PostgreSQL keeps (cut, as a bound value is), JSON as itself.
fn write_json_value(out: &mut Vec<u8>, value: sea_orm::Value) -> Result<(), DbErr> {
    use chrono::Datelike;
    use sea_orm::Value;
    use std::io::Write;
    let written = match value {
        Value::Bool(Some(b)) => write!(out, "{b}"),
        Value::TinyInt(Some(n)) => write!(out, "{n}"),
        Value::SmallInt(Some(n)) => write!(out, "{n}"),
        Value::Int(Some(n)) => write!(out, "{n}"),
        Value::BigInt(Some(n)) => write!(out, "{n}"),
        Value::TinyUnsigned(Some(n)) => write!(out, "{n}"),
        Value::SmallUnsigned(Some(n)) => write!(out, "{n}"),
        Value::Unsigned(Some(n)) => write!(out, "{n}"),
        Value::BigUnsigned(Some(n)) => write!(out, "{n}"),
        Value::String(Some(text)) => return write_json(out, &text),
        Value::Char(Some(c)) => return write_json(out, c.encode_utf8(&mut [0; 4])),
        Value::Json(Some(json)) => return write_json(out, &*json),
        // PostgreSQL has no year 0: the year before 1 is 1 BC.
        Value::ChronoDate(Some(date)) if date.year() <= 0 => write!(
            out,
            "\"{:04}-{:02}-{:02} BC\"",
            1 - date.year(),
            date.month(),
            date.day()
        ),
        Value::ChronoDate(Some(date)) => write!(out, "\"{}\"", date.format("%Y-%m-%d")),
        Value::ChronoDateTimeUtc(Some(at)) => {
            write!(out, "\"{}\"", at.format("%Y-%m-%dT%H:%M:%S%.6fZ"))
        }
        // A null of any kind: `json_populate_recordset` reads JSON null as NULL.
        value if value == value.as_null() => write!(out, "null"),
        other => {
            return Err(DbErr::Custom(format!(
                "a bulk insert cannot write {other:?} on PostgreSQL"
            )));
        }
    };
    written.map_err(|e| DbErr::Custom(format!("writing an insert's rows: {e}")))
}

fn write_json(out: &mut Vec<u8>, value: &(impl serde::Serialize + ?Sized)) -> Result<(), DbErr> {
    serde_json::to_writer(out, value)
        .map_err(|e| DbErr::Custom(format!("writing an insert's rows: {e}")))
}

/// An identifier as both databases quote it.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A migrated SQLite database of its own in a temporary directory, for unit tests of the
/// code that reads and writes it; the directory goes with the returned guard.
#[cfg(test)]
pub(crate) async fn scratch_sqlite() -> (tempfile::TempDir, DatabaseConnection) {
    let dir = tempfile::tempdir().expect("a directory");
    let config = DatabaseConfig {
        database_url: format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display()),
        db_max_connections: 1,
    };
    let db = connect(&config).await.expect("SQLite");
    migrate(&db).await.expect("migrated");
    (dir, db)
}

#[cfg(test)]
mod tests {
    use entity::user_tags;
    use sea_orm::{NotSet, Set};

    use super::*;

    fn tag(user_id: i64) -> user_tags::ActiveModel {
        user_tags::ActiveModel {
            user_id: Set(user_id),
            tag: Set(format!("t{user_id}")),
            tenant: Set("acme".to_owned()),
        }
    }

    #[test]
    fn an_insert_is_split_at_the_bind_limit() {
        let rows = (0..10_001).map(tag);
        let statements = Insert::<user_tags::Entity>::new()
            .on_conflict_update(
                &[user_tags::Column::UserId, user_tags::Column::Tag],
                &[user_tags::Column::Tenant],
            )
            .returning(&[user_tags::Column::UserId])
            .statements(DatabaseBackend::Sqlite, rows)
            .expect("statements");
        // Three columns: 10,000 rows per statement.
        assert_eq!(statements.len(), 2);
        let first = &statements[0];
        assert!(first.sql.starts_with(
            r#"INSERT INTO "user_tags" ("user_id", "tag", "tenant") VALUES (?, ?, ?), (?, ?, ?)"#
        ));
        assert!(first.sql.ends_with(
            r#"(?, ?, ?) ON CONFLICT ("user_id", "tag") DO UPDATE SET "tenant" = excluded."tenant" RETURNING "user_id""#
        ));
        assert_eq!(first.values.as_ref().map(|v| v.0.len()), Some(30_000));
        let last = &statements[1];
        assert!(
            last.sql.contains("VALUES (?, ?, ?) ON CONFLICT"),
            "{}",
            last.sql
        );
        assert_eq!(
            last.values.as_ref().map(|v| v.0.clone()),
            Some(vec![
                10_000i64.into(),
                "t10000".to_owned().into(),
                "acme".to_owned().into()
            ])
        );
    }

    #[test]
    fn postgresql_rows_are_one_json_document_per_statement() {
        let statements = Insert::<user_tags::Entity>::new()
            .on_conflict_update(
                &[user_tags::Column::UserId, user_tags::Column::Tag],
                &[user_tags::Column::Tenant],
            )
            .returning(&[user_tags::Column::UserId])
            .statements(DatabaseBackend::Postgres, (0..10_001).map(tag))
            .expect("statements");
        // Split where SQLite's would be, so both run the same number of statements.
        assert_eq!(statements.len(), 2);
        assert_eq!(
            statements[1].sql,
            r#"INSERT INTO "user_tags" ("user_id", "tag", "tenant") SELECT "user_id", "tag", "tenant" FROM json_populate_recordset(NULL::"user_tags", $1::json) ON CONFLICT ("user_id", "tag") DO UPDATE SET "tenant" = excluded."tenant" RETURNING "user_id""#
        );
        assert_eq!(
            statements[1].values.as_ref().map(|v| v.0.clone()),
            Some(vec![
                r#"[{"user_id":10000,"tag":"t10000","tenant":"acme"}]"#.into()
            ])
        );
        let first = statements[0].values.as_ref().expect("the rows");
        let rows: Vec<serde_json::Value> = match &first.0[..] {
            [sea_orm::Value::String(Some(document))] => {
                serde_json::from_str(document).expect("JSON")
            }
            other => panic!("one document, not {other:?}"),
        };
        assert_eq!(rows.len(), 10_000);
        assert_eq!(rows[9_999]["tag"], "t9999");
    }

    #[test]
    fn values_are_written_as_json_postgresql_reads_back_unchanged() {
        use chrono::{NaiveDate, TimeZone, Utc};
        use sea_orm::Value;
        let json = |value: Value| {
            let mut out = Vec::new();
            write_json_value(&mut out, value).expect("written");
            String::from_utf8(out).expect("UTF-8")
        };
        assert_eq!(
            json(Value::String(Some("a \"b\" \\ é\n".into()))),
            r#""a \"b\" \\ é\n""#
        );
        assert_eq!(json(Value::String(None)), "null");
        assert_eq!(
            json(Value::BigInt(Some(9_007_199_254_740_993))),
            "9007199254740993"
        );
        assert_eq!(json(Value::Bool(Some(false))), "false");
        assert_eq!(
            json(Value::Json(Some(Box::new(
                serde_json::json!({"k": [1, "2"]})
            )))),
            r#"{"k":[1,"2"]}"#
        );
        assert_eq!(json(Value::Json(None)), "null");
        let date = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).expect("a date");
        assert_eq!(
            json(Value::ChronoDate(Some(date(1988, 2, 29)))),
            r#""1988-02-29""#
        );
        assert_eq!(
            json(Value::ChronoDate(Some(date(0, 3, 1)))),
            r#""0001-03-01 BC""#
        );
        let at = Utc.with_ymd_and_hms(2026, 11, 24, 22, 26, 35).unwrap()
            + chrono::Duration::nanoseconds(539_251_999);
        assert_eq!(
            json(Value::ChronoDateTimeUtc(Some(at))),
            r#""2026-11-24T22:26:35.539251Z""#
        );
        let mut out = Vec::new();
        let error = write_json_value(&mut out, Value::Double(Some(1.5))).expect_err("refused");
        assert!(error.to_string().contains("cannot write"), "{error}");
    }

    #[tokio::test]
    async fn a_sqlite_connection_reads_statistics_again_once_newer_ones_are_stored() {
        let dir = tempfile::tempdir().expect("a directory");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let mut options = ConnectOptions::new(url);
        options.max_connections(1).sqlx_logging(false);
        // SQLite's allocator is set before any connection of this process opens.
        sqlite_memory();
        let db = Database::connect(options).await.expect("SQLite");
        db.execute_unprepared("CREATE TABLE t (a INTEGER); CREATE INDEX t_a ON t (a)")
            .await
            .expect("a table");
        // Read the counter only around this test's own `analyze` (other tests of this
        // process may store statistics too, which only ever makes it larger).
        let txn = db.begin().await.expect("a transaction");
        load_statistics(&txn).await.expect("loaded");
        let before = statistics_read(&txn).await.expect("the pragma");
        assert!(before <= STATISTICS_STORED.load(Ordering::Acquire));
        txn.commit().await.expect("committed");
        analyze(&db, &["t"]).await.expect("analyzed");
        let stored = STATISTICS_STORED.load(Ordering::Acquire);
        assert!(stored > before, "analyze counts what it stored");
        let txn = db.begin().await.expect("a transaction");
        load_statistics(&txn).await.expect("loaded");
        let read = statistics_read(&txn).await.expect("the pragma");
        assert!(read >= stored, "read {read}, stored {stored}");
        txn.commit().await.expect("committed");
        // Kept across transactions: the next chunk on this connection reads nothing again.
        let txn = db.begin().await.expect("a transaction");
        assert_eq!(statistics_read(&txn).await.expect("the pragma"), read);
    }

    #[tokio::test]
    async fn idle_sqlite_connections_forget_their_prepared_statements() {
        use sea_orm::sqlx::Connection;
        use sea_orm::{ColumnTrait, QueryFilter};
        let (_dir, db) = scratch_sqlite().await;
        let pool = db.get_sqlite_connection_pool().clone();
        // Every connection back in the pool (each goes back in a task of its own).
        let all_idle = || async {
            for _ in 0..5_000 {
                if pool.num_idle() == pool.size() as usize {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            panic!("connections stay out of the pool");
        };
        // Statements prepared on all the connections, every one counted.
        let cached = || async {
            all_idle().await;
            let idle: Vec<_> = std::iter::from_fn(|| pool.try_acquire()).collect();
            assert_eq!(idle.len(), pool.size() as usize, "every connection counted");
            idle.iter()
                .map(|connection| connection.cached_statements_size())
                .sum::<usize>()
        };
        entity::users::Entity::find()
            .filter(entity::users::Column::Tenant.eq("acme"))
            .all(&db)
            .await
            .expect("read");
        let before = cached().await;
        assert!(before > 0, "a statement run is kept prepared");
        all_idle().await;
        assert_eq!(forget_prepared(&db).await, before);
        assert_eq!(cached().await, 0);
    }

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

    #[test]
    fn sqlite_parameters_are_question_marks() {
        let statements = Insert::<user_tags::Entity>::new()
            .statements(DatabaseBackend::Sqlite, [tag(1), tag(2)])
            .expect("statements");
        assert_eq!(statements.len(), 1);
        assert_eq!(
            statements[0].sql,
            r#"INSERT INTO "user_tags" ("user_id", "tag", "tenant") VALUES (?, ?, ?), (?, ?, ?)"#
        );
    }

    #[test]
    fn a_row_without_a_column_of_the_first_is_refused() {
        let mut second = tag(2);
        second.tenant = NotSet;
        let error = Insert::<user_tags::Entity>::new()
            .statements(DatabaseBackend::Sqlite, [tag(1), second])
            .expect_err("a row short of a column");
        assert!(error.to_string().contains("does not set tenant"), "{error}");
        let nothing = Insert::<user_tags::Entity>::new()
            .statements(
                DatabaseBackend::Sqlite,
                Vec::<user_tags::ActiveModel>::new(),
            )
            .expect("no rows");
        assert!(nothing.is_empty());
    }
}
