//! `retryImportJob`: a new job over the rows of a finished one that did not succeed.

use entity::import_jobs;
use sea_orm::{ActiveValue::Set, DatabaseConnection};

use super::chunks;
use super::input;
use super::store;
use super::{
    JobKind, JobOptions, JobStatus, Queue, RowResult, Submitter, new_job, not_found, refused,
    submitted, user_options,
};
use crate::db;
use crate::error::{AppError, AppResult};

/// `retryImportJob`: a new job, linked to `id` (`retry_of`), over the rows of that
/// finished job that did not succeed, with its options and (for a CSV job) its columns;
/// rows keep their line in the file. A job still queued or running, or with nothing to
/// run again, is a `CONFLICT`.
pub async fn retry(
    db: &DatabaseConnection,
    queue: &Queue,
    by: Submitter<'_>,
    id: i64,
) -> AppResult<import_jobs::Model> {
    let original = store::find(db, by.tenant, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    if JobKind::from_stored(&original.kind) == JobKind::Revert {
        return Err(refused(
            "NOT_RETRYABLE",
            "a revert cannot be retried: each of its rows says why its user was left as it is"
                .to_owned(),
        ));
    }
    let status = JobStatus::from_stored(&original.status);
    if !status.is_final() {
        return Err(refused(
            "NOT_FINISHED",
            format!(
                "the job is {}; retry it once it has finished",
                status.as_str()
            ),
        ));
    }
    let Some(which) = retry_rows(&original) else {
        return Err(refused(
            "NOTHING_TO_RETRY",
            "every row of the job succeeded".to_owned(),
        ));
    };
    let inputs = input::Inputs::of(&original)?;
    let txn = db::begin_write(db).await?;
    // Held while its rows are copied, so that the job is not deleted (past its retention)
    // halfway through; one deleted meanwhile is gone.
    store::find_for_update(&txn, by.tenant, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    let mut job = new_job_like(&original, &by);
    job.retry_of = Set(Some(original.id));
    let mut job = store::insert_job(&txn, job).await?;
    let (mut total, mut links_total, mut from) = (0, 0, 0);
    let mut rows: Vec<chunks::NewRow> = Vec::new();
    loop {
        let chunk = match which {
            RetryRows::Failed => chunks::next_failed(&txn, original.id, from).await?,
            RetryRows::NotDone | RetryRows::All => {
                chunks::next_from(&txn, original.id, from).await?
            }
        };
        let Some(chunk) = chunk else { break };
        from = chunk.last_idx + 1;
        for row in chunk.inputs.iter() {
            let result = chunk
                .results
                .binary_search_by_key(&row.idx, |result| result.index)
                .ok()
                .map(|at| &chunk.results[at]);
            if !which.includes(result) {
                continue;
            }
            links_total += usize::from(job.replace_fields || inputs.sends_links(row));
            rows.push(chunks::NewRow {
                idx: total,
                input: row.input.clone(),
                line: row.line,
                // A retry is never a sync job: it holds only some of the users.
                user: None,
                keys: inputs.order_keys(row),
            });
            total += 1;
        }
        if rows.len() >= queue.chunk {
            let full = rows.len() - rows.len() % queue.chunk;
            let rest = rows.split_off(full);
            chunks::insert_inputs(&txn, by.tenant, job.id, rows, queue.chunk).await?;
            rows = rest;
        }
    }
    chunks::insert_inputs(&txn, by.tenant, job.id, rows, queue.chunk).await?;
    if total == 0 {
        txn.rollback().await?;
        return Err(refused(
            "NOTHING_TO_RETRY",
            "the job has no rows left to run again".to_owned(),
        ));
    }
    job.total = total;
    job.links_total = i32::try_from(links_total).map_err(AppError::internal)?;
    store::save(&txn, &job).await?;
    txn.commit().await?;
    submitted(queue);
    Ok(job)
}

/// Which input rows of a finished job a retry runs again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RetryRows {
    /// Rows whose result is a failure.
    Failed,
    /// Rows not done: failed, never reached, or with approvers still to set (a job given
    /// up after server failures).
    NotDone,
    /// Every row (an atomic job that failed, which wrote none).
    All,
}

impl RetryRows {
    /// Whether a row with this result (none: never reached) runs again.
    fn includes(self, result: Option<&RowResult>) -> bool {
        match self {
            Self::Failed => result.is_some_and(|result| !result.success),
            Self::NotDone => result.is_none_or(|result| !result.success || result.links_pending),
            Self::All => true,
        }
    }
}

/// Which rows of a finished job a retry would run again; `None` when there are none.
pub(super) fn retry_rows(job: &import_jobs::Model) -> Option<RetryRows> {
    if JobKind::from_stored(&job.kind) == JobKind::Revert {
        return None;
    }
    match JobStatus::from_stored(&job.status) {
        JobStatus::Failed if job.atomic && !job.dry_run => Some(RetryRows::All),
        JobStatus::Failed => Some(RetryRows::NotDone),
        JobStatus::CompletedWithErrors | JobStatus::Cancelled if job.failed > 0 => {
            Some(RetryRows::Failed)
        }
        _ => None,
    }
}

/// Whether a job can be retried: it has finished and has rows that did not succeed.
pub fn repeatable(job: &import_jobs::Model) -> bool {
    retry_rows(job).is_some()
}

/// A new queued job with the options, columns and warnings of `job`, submitted by `by`.
pub(super) fn new_job_like(
    job: &import_jobs::Model,
    by: &Submitter<'_>,
) -> import_jobs::ActiveModel {
    let options = JobOptions {
        user: user_options(job),
        atomic: job.atomic,
        run_integrity_check: job.run_integrity_check,
        idempotency_key: None,
        description: job.description.clone(),
        // A retry holds only some of the users: it must not deactivate the others.
        deactivate_missing: false,
        change_threshold: None,
    };
    let mut new = new_job(by, &options, String::new(), 0, 0);
    new.payload_hash = Set(None);
    new.csv_columns = Set(job.csv_columns.clone());
    new.warnings = Set(job.warnings.clone());
    new
}
