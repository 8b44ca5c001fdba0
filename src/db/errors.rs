//! What a failed statement means, told apart once for both databases: a unique key found
//! taken (named by its constraint), or SQLite's write lock held by another transaction for
//! all of [`SQLITE_BUSY_TIMEOUT`](super::SQLITE_BUSY_TIMEOUT).

use sea_orm::sqlx::error::DatabaseError;
use sea_orm::sqlx::sqlite::SqliteError;
use sea_orm::{DbErr, RuntimeErr};

/// The unique keys of `users` a write can find taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsersKey {
    Email,
    Login,
    ExternalId,
}

impl UsersKey {
    const ALL: [Self; 3] = [Self::Email, Self::Login, Self::ExternalId];

    /// The constraint's name, as the migration creates it and PostgreSQL reports it.
    const fn constraint(self) -> &'static str {
        match self {
            Self::Email => "ux_users_tenant_email_key",
            Self::Login => "ux_users_tenant_login_key",
            Self::ExternalId => "ux_users_tenant_source_external_id",
        }
    }

    /// The constraint's columns, as SQLite lists them in its error (`UNIQUE constraint
    /// failed: users.tenant, users.email_key`), which names no constraint.
    const fn columns(self) -> &'static str {
        match self {
            Self::Email => "users.tenant, users.email_key",
            Self::Login => "users.tenant, users.login_key",
            Self::ExternalId => "users.tenant, users.source, users.external_id",
        }
    }
}

/// The database's own error behind `error`, if the database answered with one.
fn database_error(error: &DbErr) -> Option<&(dyn DatabaseError + 'static)> {
    let (DbErr::Conn(RuntimeErr::SqlxError(error))
    | DbErr::Exec(RuntimeErr::SqlxError(error))
    | DbErr::Query(RuntimeErr::SqlxError(error))) = error
    else {
        return None;
    };
    error.as_database_error()
}

/// Whether the write found one of a table's unique keys taken.
pub fn is_unique_violation(error: &DbErr) -> bool {
    database_error(error).is_some_and(|e| e.is_unique_violation())
}

/// Which unique key of `users` the write found taken; `None` for any other error, a unique
/// key of another table included.
pub fn taken_users_key(error: &DbErr) -> Option<UsersKey> {
    let error = database_error(error).filter(|e| e.is_unique_violation())?;
    match error.constraint() {
        Some(name) => UsersKey::ALL
            .into_iter()
            .find(|key| key.constraint() == name),
        None => {
            let message = error.message();
            UsersKey::ALL
                .into_iter()
                .find(|key| message.ends_with(key.columns()))
        }
    }
}

/// Whether `error` is SQLite's `SQLITE_BUSY`: the database's write lock stayed taken by
/// another transaction for all of the busy timeout.
pub fn is_busy(error: &DbErr) -> bool {
    database_error(error)
        .filter(|e| e.try_downcast_ref::<SqliteError>().is_some())
        .and_then(|e| e.code()?.parse::<i32>().ok())
        // Extended result codes keep the primary code in their low byte.
        .is_some_and(|code| code & 0xff == SQLITE_BUSY)
}

/// SQLite's primary result code for a lock held by another connection.
const SQLITE_BUSY: i32 = 5;

#[cfg(test)]
mod tests {
    use sea_orm::{ConnectionTrait, TransactionTrait};

    use super::*;
    use crate::db::scratch_sqlite;

    #[tokio::test]
    async fn a_write_that_waits_out_the_lock_is_busy() {
        let (_dir, db) = scratch_sqlite().await;
        let holder = crate::db::begin_write(&db).await.expect("the lock");
        // A second connection, told to wait no time at all.
        let other = db.begin().await.expect("a connection");
        other
            .execute_unprepared("PRAGMA busy_timeout = 0")
            .await
            .expect("no wait");
        let error = other
            .execute_unprepared("CREATE TABLE t (a TEXT)")
            .await
            .expect_err("busy");
        assert!(is_busy(&error), "{error}");
        assert!(!is_unique_violation(&error));
        holder.rollback().await.expect("released");
    }
}
