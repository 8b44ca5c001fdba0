//! Bulk imports as durable background jobs. No GraphQL here but in `graphql`.
//!
//! [`submit`] stores a job and its input rows, by chunks ([`chunks`]), in one transaction
//! and answers at once;
//! workers ([`worker`]) claim jobs from the database under a lease and run them
//! ([`process`]): users first, chunk by chunk, then approvers in a second pass, so a row
//! may name a manager that comes later in the same job. Each chunk is one transaction that
//! also records its rows' results and the job's progress, so a job resumes exactly after
//! its last committed chunk, wherever it was stopped.
//!
//! - [`types`]: a job's status, kind, phase, options, summary and row results;
//! - [`submission`]: `importUsers` and `importUsersCsv`; [`retry`] and [`revert`]: the jobs
//!   made from a finished one;
//! - [`chunks`]: how a job's rows and results are stored; [`process`]: how it runs.

mod chunks;
mod claims;
pub mod csv;
mod digest;
pub mod failed_rows;
pub mod graphql;
mod images;
mod input;
mod order;
mod process;
mod retry;
mod revert;
pub mod store;
mod submission;
mod sync;
mod types;
pub mod worker;

use std::sync::Arc;

use chrono::Utc;
use entity::import_jobs;
use sea_orm::DatabaseConnection;
use tokio::sync::{Notify, broadcast};

use crate::auth::TenantId;
use crate::db;
use crate::error::{AppError, AppResult, FieldError};
use crate::telemetry;

pub use retry::{repeatable, retry};
pub use submission::{SubmittedRow, Submitter, submit, submit_csv};
use submission::{new_job, submitted};
use types::user_options;
pub use types::{
    JobKind, JobOptions, JobStatus, Phase, RowResult, Summary, failed_rows_csv_path,
    integrity_warnings, match_name, mode_name, progress, row_errors, warnings,
};

/// Most rows one `importUsers` request may carry.
pub const MAX_ROWS: usize = 100_000;

/// How this process's workers hear of new jobs, and how watchers hear of progress made
/// here. Other processes are seen by polling the database.
#[derive(Clone)]
pub struct Queue {
    wake: Arc<Notify>,
    progress: broadcast::Sender<Arc<import_jobs::Model>>,
    /// Rows per chunk of the jobs submitted here.
    chunk: usize,
}

impl Queue {
    /// A queue whose jobs are stored, and run, `chunk` rows at a time.
    pub fn new(chunk: usize) -> Self {
        Self {
            wake: Arc::new(Notify::new()),
            progress: broadcast::channel(256).0,
            chunk: chunk.max(1),
        }
    }

    fn job_submitted(&self) {
        self.wake.notify_waiters();
        self.wake.notify_one();
    }

    fn published(&self, job: &import_jobs::Model) {
        // Nobody listening is fine.
        let _ = self.progress.send(Arc::new(job.clone()));
    }

    /// A job reached its final status: counted, logged and published.
    fn finished(&self, job: &import_jobs::Model) {
        metrics::counter!(telemetry::JOBS_FINISHED, "status" => job.status.clone()).increment(1);
        tracing::info!(
            job = job.id,
            status = %job.status,
            total = job.total,
            processed = job.processed,
            failed = job.failed,
            "job finished"
        );
        self.published(job);
        crate::memory::give_back();
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<import_jobs::Model>> {
        self.progress.subscribe()
    }
}

/// `cancelImportJob`: a queued job never starts; a running one keeps what it committed,
/// and no chunk of it commits after this: a chunk being written finds the job cancelled
/// when it adds its progress, and rolls back. The job's lease is taken away, so its
/// workers stop, in this process or another. Cancelling a cancelled
/// job answers it as it is; a finished job, or a dry run or atomic job already running
/// (one transaction, which cannot stop midway), is a `CONFLICT`.
pub async fn cancel(
    db: &DatabaseConnection,
    queue: &Queue,
    tenant: &TenantId,
    id: i64,
) -> AppResult<import_jobs::Model> {
    // Checked before waiting for the job's lock: a whole-job transaction holds it to the end.
    let job = store::find(db, tenant, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    if job.status == JobStatus::Running.as_str() && (job.dry_run || job.atomic) {
        return Err(refused(
            "NOT_CANCELLABLE",
            "a dry run or an atomic job runs as one transaction and cannot stop midway".to_owned(),
        ));
    }
    let txn = db::begin_write(db).await?;
    let mut job = store::find_for_update(&txn, tenant, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    match JobStatus::from_stored(&job.status) {
        JobStatus::Cancelled => return Ok(job),
        JobStatus::Queued | JobStatus::Running => {}
        finished => {
            return Err(refused(
                "FINISHED",
                format!("the job has already finished ({})", finished.as_str()),
            ));
        }
    }
    end(&mut job, JobStatus::Cancelled);
    store::save(&txn, &job).await?;
    txn.commit().await?;
    queue.finished(&job);
    Ok(job)
}

/// No job `id` in the caller's tenant.
pub fn not_found(id: i64) -> AppError {
    AppError::NotFound(format!("no import job {id}"))
}

/// A job that cannot do what was asked in the state it is in (`code` says why).
fn refused(code: &str, message: String) -> AppError {
    AppError::conflict(vec![FieldError::new("id", code, message)])
}

/// Gives a job its final status and takes its lease away; the caller saves it.
fn end(job: &mut import_jobs::Model, status: JobStatus) {
    job.status = status.as_str().to_owned();
    job.finished_at = Some(Utc::now());
    job.lease_owner = None;
    job.lease_until = None;
    job.version += 1;
}
