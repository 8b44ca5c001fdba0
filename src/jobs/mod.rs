//! Bulk imports as durable background jobs. No GraphQL here but in `graphql`.
//!
//! [`submit`] stores a job and its input rows, by chunks ([`chunks`]), in one transaction
//! and answers at once;
//! workers ([`worker`]) claim jobs from the database under a lease and run them
//! ([`process`]): users first, chunk by chunk, then approvers in a second pass, so a row
//! may name a manager that comes later in the same job. Each chunk is one transaction that
//! also records its rows' results and the job's progress, so a job resumes exactly after
//! its last committed chunk, wherever it was stopped.

mod chunks;
pub mod csv;
pub mod failed_rows;
pub mod graphql;
mod images;
mod input;
mod process;
mod revert;
pub mod store;
mod sync;
pub mod worker;

use std::sync::Arc;

use chrono::Utc;
use entity::import_jobs;
use sea_orm::{ActiveValue::Set, DatabaseConnection, DatabaseTransaction};
use sha2::{Digest, Sha256};
use tokio::sync::{Notify, broadcast};

use crate::auth::TenantId;
use crate::db;
use crate::error::{AppError, AppResult, FieldError};
use crate::telemetry;
use crate::users::domain::{Lines, Problem, Problems, check_characters};
use crate::users::import::{ImportMode, ImportRow, MatchBy, RowAction, UserImportOptions};

/// Most rows one `importUsers` request may carry.
pub const MAX_ROWS: usize = 100_000;
/// Longest idempotency key and description.
const KEY_MAX_LEN: usize = 255;
const DESCRIPTION_MAX_LEN: usize = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    Queued,
    Running,
    Completed,
    CompletedWithErrors,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "QUEUED",
            Self::Running => "RUNNING",
            Self::Completed => "COMPLETED",
            Self::CompletedWithErrors => "COMPLETED_WITH_ERRORS",
            Self::Failed => "FAILED",
            Self::Cancelled => "CANCELLED",
        }
    }

    pub fn from_stored(text: &str) -> Self {
        [
            Self::Queued,
            Self::Running,
            Self::Completed,
            Self::CompletedWithErrors,
            Self::Failed,
            Self::Cancelled,
        ]
        .into_iter()
        .find(|status| status.as_str() == text)
        .unwrap_or(Self::Failed)
    }

    /// A job in this status never changes again.
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Queued | Self::Running)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    UserImport,
    Revert,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UserImport => "USER_IMPORT",
            Self::Revert => "REVERT",
        }
    }

    pub fn from_stored(text: &str) -> Self {
        if text == "REVERT" {
            Self::Revert
        } else {
            Self::UserImport
        }
    }
}

/// Where a running job stands: deciding and writing users, then setting approvers, then
/// (a revert) removing the users its job created, then finishing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Users,
    Links,
    Removals,
    Done,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Users => "USERS",
            Self::Links => "LINKS",
            Self::Removals => "REMOVALS",
            Self::Done => "DONE",
        }
    }

    pub fn from_stored(text: &str) -> Self {
        match text {
            "LINKS" => Self::Links,
            "REMOVALS" => Self::Removals,
            "DONE" => Self::Done,
            _ => Self::Users,
        }
    }
}

/// The options of a bulk job.
#[derive(Debug, Clone, Default)]
pub struct JobOptions {
    pub user: UserImportOptions,
    /// All rows or none: one failed row fails the job and nothing is written.
    pub atomic: bool,
    /// At the end, list every link of the tenant whose approver is inactive.
    pub run_integrity_check: bool,
    pub idempotency_key: Option<String>,
    pub description: Option<String>,
    /// Sync mode: at the end, users of the job's sources that no row names become inactive.
    pub deactivate_missing: bool,
    /// Percent of a source's active users above which sync mode deactivates nobody.
    pub change_threshold: Option<i32>,
}

impl JobOptions {
    fn check(&self) -> AppResult<()> {
        let mut problems = Problems::default();
        match self.change_threshold {
            Some(_) if !self.deactivate_missing => problems.add(
                "options.changeThreshold",
                Problem::new("NOT_SUPPORTED", "only applies with deactivateMissing: true"),
            ),
            Some(percent) if !(0..=100).contains(&percent) => problems.add(
                "options.changeThreshold",
                Problem::new("OUT_OF_RANGE", "must be a percentage from 0 to 100"),
            ),
            _ => {}
        }
        if self.deactivate_missing && self.atomic {
            problems.add(
                "options.deactivateMissing",
                Problem::new(
                    "NOT_SUPPORTED",
                    "a sync job cannot be atomic: run it as a dry run first to see who it deactivates",
                ),
            );
        }
        // A description may span lines; a key is one line.
        let texts = [
            (
                "options.idempotencyKey",
                &self.idempotency_key,
                KEY_MAX_LEN,
                Lines::One,
            ),
            (
                "options.description",
                &self.description,
                DESCRIPTION_MAX_LEN,
                Lines::Many,
            ),
        ];
        for (path, text, max, lines) in texts {
            let Some(text) = text else { continue };
            if text.trim().is_empty() {
                problems.add(path, Problem::new("REQUIRED", "must not be blank"));
            } else if text.chars().count() > max {
                problems.add(
                    path,
                    Problem::new("TOO_LONG", format!("must be at most {max} characters")),
                );
            } else {
                problems.check(path, check_characters(text, lines));
            }
        }
        problems.finish()
    }
}

/// Counts of what a job did, as `ImportSummary` reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub created: i32,
    pub updated: i32,
    pub unchanged: i32,
    pub skipped: i32,
    /// Rows that did not succeed: refused, or their approvers could not be set.
    pub failed: i32,
    pub blocked: i32,
    pub unblocked: i32,
    pub deactivated: i32,
    /// Users removed (a revert removes the users its job created).
    pub deleted: i32,
}

impl Summary {
    pub fn of(job: &import_jobs::Model) -> Self {
        Self {
            created: job.created,
            updated: job.updated,
            unchanged: job.unchanged,
            skipped: job.skipped,
            failed: job.failed,
            blocked: job.blocked,
            unblocked: job.unblocked,
            deactivated: job.deactivated,
            deleted: job.deleted,
        }
    }

    fn add_to(&self, job: &mut import_jobs::Model) {
        job.created += self.created;
        job.updated += self.updated;
        job.unchanged += self.unchanged;
        job.skipped += self.skipped;
        job.failed += self.failed;
        job.blocked += self.blocked;
        job.unblocked += self.unblocked;
        job.deactivated += self.deactivated;
        job.deleted += self.deleted;
    }

    fn action(&mut self, action: RowAction, by: i32) {
        match action {
            RowAction::Created => self.created += by,
            RowAction::Updated => self.updated += by,
            RowAction::Unchanged => self.unchanged += by,
            RowAction::Skipped => self.skipped += by,
            RowAction::Deleted => self.deleted += by,
            RowAction::Failed => {}
        }
    }

    /// Counts a row's result for the first time.
    fn count(&mut self, row: &RowResult) {
        self.action(row.action, 1);
        self.failed += i32::from(!row.success);
        self.blocked += i32::from(row.blocked);
        self.unblocked += i32::from(row.unblocked);
    }

    /// Counts the change of a row's result from `before` to `after` (the second pass).
    fn recount(&mut self, before: &RowResult, after: &RowResult) {
        self.action(before.action, -1);
        self.action(after.action, 1);
        self.failed += i32::from(!after.success) - i32::from(!before.success);
    }
}

/// What a job did with one row.
#[derive(Debug, Clone)]
pub struct RowResult {
    pub index: i32,
    pub lookup_key: String,
    pub action: RowAction,
    pub success: bool,
    pub user_id: Option<i64>,
    pub errors: Vec<FieldError>,
    /// Approvers are still to be set in the second pass.
    pub links_pending: bool,
    pub blocked: bool,
    pub unblocked: bool,
}

impl RowResult {
    fn failed(index: i32, lookup_key: String, errors: Vec<FieldError>) -> Self {
        Self {
            index,
            lookup_key,
            action: RowAction::Failed,
            success: false,
            user_id: None,
            errors,
            links_pending: false,
            blocked: false,
            unblocked: false,
        }
    }
}

/// The field errors an error stands for, as a row reports them.
pub fn row_errors(error: &AppError) -> Vec<FieldError> {
    match error {
        AppError::BadUserInput { field_errors, .. } | AppError::Conflict { field_errors, .. }
            if !field_errors.is_empty() =>
        {
            field_errors.clone()
        }
        other => vec![FieldError {
            field: None,
            code: other.code().as_str().to_owned(),
            message: match other {
                AppError::Internal(_) => "internal error".to_owned(),
                other => other.to_string(),
            },
        }],
    }
}

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
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<import_jobs::Model>> {
        self.progress.subscribe()
    }
}

/// `cancelImportJob`: a queued job never starts; a running one stops after the chunk it is
/// writing, and keeps what it committed. The job's lease is taken away, so its worker
/// finds the job gone at its next chunk, in this process or another. Cancelling a cancelled
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
enum RetryRows {
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
fn retry_rows(job: &import_jobs::Model) -> Option<RetryRows> {
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
fn new_job_like(job: &import_jobs::Model, by: &Submitter<'_>) -> import_jobs::ActiveModel {
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

/// Gives a job its final status and takes its lease away; the caller saves it.
fn end(job: &mut import_jobs::Model, status: JobStatus) {
    job.status = status.as_str().to_owned();
    job.finished_at = Some(Utc::now());
    job.lease_owner = None;
    job.lease_until = None;
    job.version += 1;
}

/// Who submits a job.
pub struct Submitter<'a> {
    pub tenant: &'a TenantId,
    pub subject: &'a str,
}

/// One `importUsers` row as its job stores it: the row as JSON, its user's
/// `(source, externalId)` and whether it sets approvers.
pub struct SubmittedRow {
    input: String,
    user: (String, String),
    sends_links: bool,
}

impl SubmittedRow {
    pub fn new(row: &ImportRow) -> AppResult<Self> {
        Ok(Self {
            input: serde_json::to_string(row).map_err(AppError::internal)?,
            user: row.user_key(),
            sends_links: row.links.sends_links(),
        })
    }
}

/// `importUsers`: stores the job and its rows in one transaction and queues it. The same
/// `idempotencyKey` with the same request returns the first job; with another request it is
/// a `CONFLICT`.
pub async fn submit(
    db: &DatabaseConnection,
    queue: &Queue,
    by: Submitter<'_>,
    options: JobOptions,
    rows: Vec<SubmittedRow>,
) -> AppResult<import_jobs::Model> {
    options.check()?;
    if rows.is_empty() {
        return Err(AppError::invalid_fields(vec![FieldError::new(
            "users",
            "REQUIRED",
            "give at least one user",
        )]));
    }
    if rows.len() > MAX_ROWS {
        return Err(AppError::invalid_fields(vec![FieldError::new(
            "users",
            "TOO_MANY",
            format!(
                "at most {MAX_ROWS} users per request (got {}); split the batch into several jobs",
                rows.len()
            ),
        )]));
    }
    if options.deactivate_missing {
        let mut problems = Problems::default();
        for (index, row) in rows.iter().enumerate() {
            for (field, problem) in sync::key_problems(&row.user) {
                problems.add(format!("users[{index}].{field}"), problem);
            }
        }
        problems.finish()?;
    }
    // Rows whose approvers the second pass sets; known now, so progress never goes back.
    let links_total = rows
        .iter()
        .filter(|row| options.user.replace || row.sends_links)
        .count();
    let (inputs, users): (Vec<String>, Vec<Option<(String, String)>>) = rows
        .into_iter()
        .map(|row| (row.input, options.deactivate_missing.then_some(row.user)))
        .unzip();
    let hash = payload_hash(&options, &inputs);

    if let Some(key) = &options.idempotency_key
        && let Some(job) = store::find_by_key(db, by.tenant, key).await?
    {
        return repeated(job, &hash);
    }
    let total = i32::try_from(inputs.len()).map_err(AppError::internal)?;
    let links_total = i32::try_from(links_total).map_err(AppError::internal)?;
    let job = new_job(&by, &options, hash.clone(), total, links_total);
    let txn = db::begin_write(db).await?;
    let (txn, job) = match insert_job(db, txn, &by, &options, &hash, job).await? {
        Inserted::New(txn, job) => (txn, job),
        Inserted::Repeated(job) => return Ok(job),
    };
    let rows = inputs
        .into_iter()
        .zip(users)
        .enumerate()
        .map(|(i, (input, user))| chunks::NewRow {
            idx: i as i32,
            input,
            line: None,
            user,
        })
        .collect();
    chunks::insert_inputs(&txn, by.tenant, job.id, rows, queue.chunk).await?;
    txn.commit().await?;
    submitted(queue);
    Ok(job)
}

/// `importUsersCsv`: streams the file's rows into a new job, in one transaction, and
/// queues it; the file is read twice (its hash, then its rows), never held whole. A file
/// that is not UTF-8 CSV, lacks a required column, has no rows or more than
/// [`csv::MAX_ROWS`] is refused and nothing is stored. The idempotency key works as for
/// [`submit`], over the file's bytes.
pub async fn submit_csv(
    db: &DatabaseConnection,
    queue: &Queue,
    by: Submitter<'_>,
    options: JobOptions,
    file: std::fs::File,
) -> AppResult<import_jobs::Model> {
    options.check()?;
    let mut hasher = payload_hasher(&options, "csv");
    let opened = tokio::task::spawn_blocking(move || {
        csv::open(file, &mut hasher).map(|opened| (opened, hex(hasher)))
    })
    .await
    .map_err(AppError::internal)?;
    let (opened, hash) = opened?;
    if let Some(key) = &options.idempotency_key
        && let Some(job) = store::find_by_key(db, by.tenant, key).await?
    {
        return repeated(job, &hash);
    }
    let layout = serde_json::to_string(opened.columns.layout()).map_err(AppError::internal)?;
    let warnings = serde_json::to_string(&opened.warnings).map_err(AppError::internal)?;
    let mut job = new_job(&by, &options, hash.clone(), 0, 0);
    job.csv_columns = Set(Some(layout));
    job.warnings = Set(Some(warnings));
    let txn = db::begin_write(db).await?;
    let (txn, mut job) = match insert_job(db, txn, &by, &options, &hash, job).await? {
        Inserted::New(txn, job) => (txn, job),
        Inserted::Repeated(job) => return Ok(job),
    };
    let (sender, mut batches) = tokio::sync::mpsc::channel(2);
    let keys = options.deactivate_missing;
    // A batch of the file is a chunk of the job.
    let batch = queue.chunk;
    let reader = tokio::task::spawn_blocking(move || opened.send_rows(batch, keys, &sender));
    let (mut total, mut links_total) = (0_usize, 0_usize);
    while let Some(batch) = batches.recv().await {
        let batch = match batch {
            Ok(batch) => batch,
            Err(error) => {
                txn.rollback().await?;
                return Err(error);
            }
        };
        if total + batch.len() > csv::MAX_ROWS {
            txn.rollback().await?;
            return Err(csv::not_csv(format!(
                "the file has more than {} rows; split it into several files",
                csv::MAX_ROWS
            )));
        }
        let first = total;
        total += batch.len();
        links_total += batch
            .iter()
            .filter(|row| options.user.replace || row.sends_links)
            .count();
        let rows = batch
            .into_iter()
            .enumerate()
            .map(|(i, row)| chunks::NewRow {
                idx: (first + i) as i32,
                input: row.cells,
                line: Some(row.line),
                user: row.user,
            })
            .collect();
        chunks::insert_inputs(&txn, by.tenant, job.id, rows, queue.chunk).await?;
    }
    reader.await.map_err(AppError::internal)?;
    if total == 0 {
        txn.rollback().await?;
        return Err(csv::not_csv("the file has a header but no rows"));
    }
    job.total = i32::try_from(total).map_err(AppError::internal)?;
    job.links_total = i32::try_from(links_total).map_err(AppError::internal)?;
    store::save(&txn, &job).await?;
    txn.commit().await?;
    submitted(queue);
    Ok(job)
}

/// A new job row, queued.
fn new_job(
    by: &Submitter<'_>,
    options: &JobOptions,
    hash: String,
    total: i32,
    links_total: i32,
) -> import_jobs::ActiveModel {
    import_jobs::ActiveModel {
        tenant: Set(by.tenant.as_str().to_owned()),
        kind: Set(JobKind::UserImport.as_str().to_owned()),
        status: Set(JobStatus::Queued.as_str().to_owned()),
        description: Set(options.description.clone()),
        mode: Set(mode_name(options.user.mode).to_owned()),
        match_by: Set(match_name(options.user.match_by).to_owned()),
        replace_fields: Set(options.user.replace),
        dry_run: Set(options.user.dry_run),
        atomic: Set(options.atomic),
        run_integrity_check: Set(options.run_integrity_check),
        idempotency_key: Set(options.idempotency_key.clone()),
        payload_hash: Set(Some(hash)),
        created_by: Set(by.subject.to_owned()),
        created_at: Set(Utc::now()),
        started_at: Set(None),
        finished_at: Set(None),
        total: Set(total),
        processed: Set(0),
        links_total: Set(links_total),
        links_processed: Set(0),
        phase: Set(Phase::Users.as_str().to_owned()),
        cursor: Set(0),
        created: Set(0),
        updated: Set(0),
        unchanged: Set(0),
        skipped: Set(0),
        failed: Set(0),
        blocked: Set(0),
        unblocked: Set(0),
        deactivated: Set(0),
        error_message: Set(None),
        integrity_warnings: Set(None),
        lease_owner: Set(None),
        lease_until: Set(None),
        attempts: Set(0),
        version: Set(0),
        csv_columns: Set(None),
        warnings: Set(None),
        deactivate_missing: Set(options.deactivate_missing),
        change_threshold: Set(options.change_threshold),
        retry_of: Set(None),
        revert_of: Set(None),
        deleted: Set(0),
        failures: Set(0),
        ..Default::default()
    }
}

/// What inserting a new job came to.
enum Inserted {
    /// The job, in the still open transaction its rows go into.
    New(DatabaseTransaction, import_jobs::Model),
    /// Another request with the same idempotency key got in first: its job, as if it had
    /// come first.
    Repeated(import_jobs::Model),
}

async fn insert_job(
    db: &DatabaseConnection,
    txn: DatabaseTransaction,
    by: &Submitter<'_>,
    options: &JobOptions,
    hash: &str,
    job: import_jobs::ActiveModel,
) -> AppResult<Inserted> {
    match store::insert_job(&txn, job).await {
        Ok(job) => Ok(Inserted::New(txn, job)),
        Err(error) if is_unique_violation(&error) => {
            txn.rollback().await?;
            let key = options.idempotency_key.as_deref().unwrap_or_default();
            match store::find_by_key(db, by.tenant, key).await? {
                Some(job) => repeated(job, hash).map(Inserted::Repeated),
                None => Err(error.into()),
            }
        }
        Err(error) => Err(error.into()),
    }
}

fn submitted(queue: &Queue) {
    metrics::counter!(crate::telemetry::JOBS_SUBMITTED).increment(1);
    queue.job_submitted();
}

fn is_unique_violation(error: &sea_orm::DbErr) -> bool {
    matches!(
        error.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}

/// The answer to a submission whose idempotency key is already taken.
fn repeated(job: import_jobs::Model, hash: &str) -> AppResult<import_jobs::Model> {
    if job.payload_hash.as_deref() == Some(hash) {
        Ok(job)
    } else {
        Err(AppError::conflict(vec![FieldError::new(
            "options.idempotencyKey",
            "KEY_REUSED",
            format!(
                "idempotency key already used by job {} for a different request; use a new key for a new request",
                job.id
            ),
        )]))
    }
}

/// SHA-256 of everything a submission asks for but its idempotency key.
fn payload_hash(options: &JobOptions, inputs: &[String]) -> String {
    let mut hash = payload_hasher(options, "json");
    for input in inputs {
        hash.update(b"\n");
        hash.update(input.as_bytes());
    }
    hex(hash)
}

/// A hash of a submission's options and the form of its input, for its rows to follow.
fn payload_hasher(options: &JobOptions, form: &str) -> Sha256 {
    let mut hash = Sha256::new();
    let header = serde_json::json!({
        "mode": mode_name(options.user.mode),
        "matchBy": match_name(options.user.match_by),
        "replace": options.user.replace,
        "dryRun": options.user.dry_run,
        "atomic": options.atomic,
        "runIntegrityCheck": options.run_integrity_check,
        "description": options.description,
    });
    let mut header = header;
    // Added only when set, so that requests without sync mode hash as they always have.
    if options.deactivate_missing {
        header["deactivateMissing"] = true.into();
        header["changeThreshold"] = options.change_threshold.into();
    }
    hash.update(header.to_string().as_bytes());
    // JSON jobs hashed only the header and rows before files came; they still do.
    if form != "json" {
        hash.update(b"\n");
        hash.update(form.as_bytes());
        hash.update(b"\n");
    }
    hash
}

fn hex(hash: Sha256) -> String {
    hash.finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

pub fn mode_name(mode: ImportMode) -> &'static str {
    match mode {
        ImportMode::CreateOnly => "CREATE_ONLY",
        ImportMode::UpdateOnly => "UPDATE_ONLY",
        ImportMode::Upsert => "UPSERT",
    }
}

pub fn match_name(match_by: MatchBy) -> &'static str {
    match match_by {
        MatchBy::ExternalId => "EXTERNAL_ID",
        MatchBy::Email => "EMAIL",
    }
}

/// The per-user options a stored job was submitted with.
fn user_options(job: &import_jobs::Model) -> UserImportOptions {
    UserImportOptions {
        mode: match job.mode.as_str() {
            "CREATE_ONLY" => ImportMode::CreateOnly,
            "UPDATE_ONLY" => ImportMode::UpdateOnly,
            _ => ImportMode::Upsert,
        },
        match_by: if job.match_by == "EMAIL" {
            MatchBy::Email
        } else {
            MatchBy::ExternalId
        },
        replace: job.replace_fields,
        dry_run: job.dry_run,
    }
}

/// How far a job is, from 0 to 1: both passes count, each row once per pass it needs.
pub fn progress(job: &import_jobs::Model) -> f64 {
    let status = JobStatus::from_stored(&job.status);
    // A cancelled job stays where it stopped.
    if status.is_final() && status != JobStatus::Cancelled {
        return 1.0;
    }
    let work = f64::from(job.total) + f64::from(job.links_total);
    if work == 0.0 {
        return 0.0;
    }
    ((f64::from(job.processed) + f64::from(job.links_processed)) / work).min(1.0)
}

/// The integrity warnings stored with a job.
pub fn integrity_warnings(job: &import_jobs::Model) -> Vec<String> {
    job.integrity_warnings
        .as_deref()
        .and_then(|json| serde_json::from_str(json).ok())
        .unwrap_or_default()
}

/// The warnings stored with a job.
pub fn warnings(job: &import_jobs::Model) -> Vec<String> {
    job.warnings
        .as_deref()
        .and_then(|json| serde_json::from_str(json).ok())
        .unwrap_or_default()
}

/// The path of a job's failed rows as CSV, when it has some (a revert has none to send
/// again).
pub fn failed_rows_csv_path(job: &import_jobs::Model) -> Option<String> {
    (job.failed > 0 && JobKind::from_stored(&job.kind) != JobKind::Revert)
        .then(|| format!("/jobs/{}/failed-rows.csv", job.id))
}
