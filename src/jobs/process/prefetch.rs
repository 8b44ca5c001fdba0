//! A chunk's rows made ready outside any transaction: read and parsed while the chunk
//! before is written, their plain passwords hashed before the chunk's turn.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::{StreamExt, stream};
use sea_orm::{DatabaseConnection, DbErr};

use super::decide::link_changes;
use crate::approvers::ApproverChange;
use crate::auth::TenantId;
use crate::error::AppError;
use crate::jobs::RowResult;
use crate::jobs::chunks::{self, InputRow};
use crate::jobs::digest;
use crate::jobs::input::Inputs;
use crate::users::import;
use crate::users::profile::UserChanges;

/// A row checked and ready to decide, outside any transaction.
pub(super) struct Prepared {
    pub(super) index: i32,
    pub(super) lookup_key: String,
    pub(super) parsed: Result<(UserChanges, ApproverChange), AppError>,
    /// The stored row without the password it sends, if it sends one
    /// ([`Inputs::without_secrets`]): stored instead once the row succeeds.
    pub(super) without_secrets: Option<String>,
    /// The row's [`digest`] in its job, when the job's rows have one and the row reads
    /// well and sends no plain password.
    pub(super) digest: Option<[u8; 32]>,
}

/// Parses a chunk's rows and hashes their plain passwords (slow by design), before any
/// transaction opens.
pub(super) async fn prepare(
    db: &DatabaseConnection,
    tenant: &TenantId,
    inputs: &Inputs,
    batch: &[InputRow],
) -> Vec<Prepared> {
    hash_passwords(db, tenant, parse(inputs, None, batch)).await
}

/// A chunk's rows checked: everything about them that does not depend on the database;
/// with the job's digest `context`, each row's digest.
fn parse(inputs: &Inputs, context: Option<&[u8; 32]>, batch: &[InputRow]) -> Vec<Prepared> {
    batch
        .iter()
        .map(|row| {
            let (lookup_key, parsed) = inputs.parse(row);
            let digest = match (&parsed, context) {
                (Ok((changes, _)), Some(context)) if changes.plain_password().is_none() => {
                    Some(digest::of_row(context, &row.input))
                }
                _ => None,
            };
            Prepared {
                index: row.idx,
                lookup_key,
                parsed,
                without_secrets: inputs.without_secrets(row),
                digest,
            }
        })
        .collect()
}

/// Hashes the plain passwords of parsed rows a few at a time. It reads the users as they
/// are (an unchanged password keeps its hash), so it runs in the chunk's turn.
pub(super) async fn hash_passwords(
    db: &DatabaseConnection,
    tenant: &TenantId,
    prepared: Vec<Prepared>,
) -> Vec<Prepared> {
    if !prepared.iter().any(Prepared::has_plain_password) {
        return prepared;
    }
    stream::iter(prepared)
        .map(|mut row| async move {
            if let Ok((changes, _)) = &mut row.parsed
                && let Err(error) = import::prepare_password(db, tenant, changes).await
            {
                row.parsed = Err(error);
            }
            row
        })
        .buffered(4)
        .collect()
        .await
}

/// A job's next chunk, read and parsed while the chunk before it is written: on SQLite
/// the writes run on the database's own thread, and on PostgreSQL in its server, so
/// parsing on this side overlaps them. Only rows no chunk before it changes are read
/// ahead (the job's input, and results of rows after the current chunk). Dropped, it
/// stops.
pub(super) struct Ahead<T> {
    from: i32,
    task: tokio::task::JoinHandle<Result<T, DbErr>>,
}

impl<T: Send + 'static> Ahead<T> {
    pub(super) fn start(
        from: i32,
        read: impl std::future::Future<Output = Result<T, DbErr>> + Send + 'static,
    ) -> Self {
        Self {
            from,
            task: tokio::spawn(read),
        }
    }

    /// The chunk read ahead, once it is read.
    pub(super) async fn wait(mut self) -> Result<T, DbErr> {
        (&mut self.task)
            .await
            .map_err(|e| DbErr::Custom(format!("reading a chunk ahead: {e}")))?
    }

    /// The chunk read ahead, if it is the one from `from`.
    pub(super) async fn take(ahead: &mut Option<Self>, from: i32) -> Result<Option<T>, DbErr> {
        match ahead.take() {
            Some(mut next) if next.from == from => (&mut next.task)
                .await
                .map_err(|e| DbErr::Custom(format!("reading a chunk ahead: {e}")))?
                .map(Some),
            _ => Ok(None),
        }
    }
}

impl<T> Drop for Ahead<T> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A chunk of the first pass: its input rows, parsed.
pub(super) struct UsersBatch {
    pub(super) first_idx: i32,
    pub(super) inputs: Vec<InputRow>,
    pub(super) prepared: Vec<Prepared>,
}

/// The first pass's chunk that starts at `first_idx`, parsed; `None` when it is written
/// already.
pub(super) async fn read_users(
    db: DatabaseConnection,
    inputs: Arc<Inputs>,
    context: Option<[u8; 32]>,
    job_id: i64,
    first_idx: i32,
) -> Result<Option<UsersBatch>, DbErr> {
    let Some(chunk) = chunks::unwritten_at(&db, job_id, first_idx).await? else {
        return Ok(None);
    };
    let first_idx = chunk.first_idx;
    let rows = chunk.inputs;
    let (rows, prepared) = blocking(move || {
        let prepared = parse(&inputs, context.as_ref(), &rows);
        (rows, prepared)
    })
    .await?;
    Ok(Some(UsersBatch {
        first_idx,
        inputs: rows,
        prepared,
    }))
}

/// A chunk of the approver pass: the results of the rows it sets, and their changes.
pub(super) struct LinkBatch {
    pub(super) last_idx: i32,
    pub(super) results: Vec<RowResult>,
    pub(super) changes: HashMap<i32, Result<ApproverChange, AppError>>,
}

/// The approver pass's next chunk from `from`, parsed; `None` when no row is left to set.
pub(super) async fn read_links(
    db: DatabaseConnection,
    inputs: Arc<Inputs>,
    job_id: i64,
    from: i32,
) -> Result<Option<LinkBatch>, DbErr> {
    let Some(chunk) = chunks::next_pending(&db, job_id, from).await? else {
        return Ok(None);
    };
    let results = chunk.pending();
    let indexes: Vec<i32> = results.iter().map(|r| r.index).collect();
    let rows = chunk.inputs_at(&indexes);
    let changes = blocking(move || link_changes(&inputs, &rows)).await?;
    Ok(Some(LinkBatch {
        last_idx: chunk.last_idx,
        results,
        changes,
    }))
}

/// Parsing a chunk, on a blocking thread.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, DbErr> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| DbErr::Custom(format!("parsing a chunk: {e}")))
}

impl Prepared {
    pub(super) fn sends_tags(&self) -> bool {
        self.parsed
            .as_ref()
            .is_ok_and(|(changes, _)| changes.sends_tags())
    }

    fn has_plain_password(&self) -> bool {
        self.parsed
            .as_ref()
            .is_ok_and(|(changes, _)| changes.plain_password().is_some())
    }

    pub(super) fn touches_links(&self, replace: bool) -> bool {
        self.parsed
            .as_ref()
            .is_ok_and(|(_, links)| links.touches_links(replace))
    }
}
