//! The database, SQLite and PostgreSQL alike, one concern a file:
//!
//! - `connect.rs`: connecting, with each database's settings;
//! - `turns.rs`: writers taking turns (SQLite's write lock, PostgreSQL's advisory locks);
//! - `plans.rs`: planner statistics, plan-cache control and prepared statements;
//! - `insert.rs`: the bulk `INSERT` builder and its JSON encoder;
//! - `errors.rs`: what a failed statement means (a unique key taken, SQLite busy);
//!
//! and here, migrations and the SQL of hand-written statements.

mod connect;
mod errors;
mod insert;
mod plans;
mod turns;

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, DbErr, TransactionTrait};

pub use connect::{SQLITE_BUSY_TIMEOUT, SQLITE_POOL_SIZE, SQLITE_WAL_PAGES, connect};
pub use errors::{UsersKey, is_busy, is_unique_violation, taken_users_key};
pub use insert::{Insert, insert_in_chunks};
pub use plans::{analyze, forget_prepared, load_statistics, planned_per_run};
pub use turns::{begin_write, begin_write_in_turn, lock_tenant, lock_tenant_shared};

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

/// A migrated SQLite database of its own in a temporary directory, for unit tests of the
/// code that reads and writes it; the directory goes with the returned guard.
#[cfg(test)]
pub(crate) async fn scratch_sqlite() -> (tempfile::TempDir, DatabaseConnection) {
    let dir = tempfile::tempdir().expect("a directory");
    let config = crate::config::DatabaseConfig {
        database_url: format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display()),
        db_max_connections: 1,
    };
    let db = connect(&config).await.expect("SQLite");
    migrate(&db).await.expect("migrated");
    (dir, db)
}
