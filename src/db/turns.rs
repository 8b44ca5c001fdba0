//! Writers taking turns: SQLite's write transactions, which have one lock and no queue,
//! and PostgreSQL's advisory locks for rules that span several rows.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sea_orm::{
    ConnectionTrait, DatabaseBackend, DatabaseConnection, DatabaseTransaction, DbErr,
    SqliteTransactionMode, TransactionOptions, TransactionTrait,
};

use super::SQLITE_BUSY_TIMEOUT;

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
