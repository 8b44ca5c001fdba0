//! What the databases plan with: planner statistics refreshed and read again, PostgreSQL's
//! plan cache set aside where a statement's plan must follow its table, and the statements
//! SQLite's connections keep prepared.

use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, DbErr};

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

#[cfg(test)]
mod tests {
    use sea_orm::{ConnectOptions, Database, EntityTrait, TransactionTrait};

    use super::*;
    use crate::db::connect::sqlite_memory;
    use crate::db::scratch_sqlite;

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
}
