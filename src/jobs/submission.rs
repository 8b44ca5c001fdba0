//! Submitting a job: `importUsers` and `importUsersCsv` store the job and its rows in one
//! transaction and queue it, once per idempotency key.

use chrono::Utc;
use entity::import_jobs;
use sea_orm::{ActiveValue::Set, DatabaseConnection, DatabaseTransaction};
use sha2::{Digest, Sha256};

use super::chunks;
use super::store;
use super::{
    JobKind, JobOptions, JobStatus, MAX_ROWS, Phase, Queue, csv, match_name, mode_name, sync,
};
use crate::auth::TenantId;
use crate::db;
use crate::error::{AppError, AppResult, FieldError};
use crate::users::import::ImportRow;
use crate::validate::Problems;

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
    keys: Vec<u64>,
}

impl SubmittedRow {
    pub fn new(row: &ImportRow) -> AppResult<Self> {
        // Held until the request's rows are stored, so copied into a block of its own size:
        // serde_json's buffer grows by doubling (a row of 311 bytes sat in 512), and
        // shrinking it in place keeps the block (mimalloc keeps a block that a reallocation
        // shrinks by less than half).
        let input = serde_json::to_string(row)
            .map_err(AppError::internal)?
            .as_str()
            .to_owned();
        Ok(Self {
            input,
            user: row.user_key(),
            sends_links: row.links.sends_links(),
            keys: super::order::of_row(row),
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
    let (inputs, named): (Vec<String>, Vec<_>) = rows
        .into_iter()
        .map(|row| {
            let user = options.deactivate_missing.then_some(row.user);
            (row.input, (user, row.keys))
        })
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
        .zip(named)
        .enumerate()
        .map(|(i, (input, (user, keys)))| chunks::NewRow {
            idx: i as i32,
            input,
            line: None,
            user,
            keys,
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
                keys: row.keys,
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
pub(super) fn new_job(
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
pub(super) enum Inserted {
    /// The job, in the still open transaction its rows go into.
    New(DatabaseTransaction, import_jobs::Model),
    /// Another request with the same idempotency key got in first: its job, as if it had
    /// come first.
    Repeated(import_jobs::Model),
}

pub(super) async fn insert_job(
    db: &DatabaseConnection,
    txn: DatabaseTransaction,
    by: &Submitter<'_>,
    options: &JobOptions,
    hash: &str,
    job: import_jobs::ActiveModel,
) -> AppResult<Inserted> {
    match store::insert_job(&txn, job).await {
        Ok(job) => Ok(Inserted::New(txn, job)),
        Err(error) if db::is_unique_violation(&error) => {
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

pub(super) fn submitted(queue: &Queue) {
    metrics::counter!(crate::telemetry::JOBS_SUBMITTED).increment(1);
    queue.job_submitted();
    crate::memory::give_back();
}

/// The answer to a submission whose idempotency key is already taken.
pub(super) fn repeated(job: import_jobs::Model, hash: &str) -> AppResult<import_jobs::Model> {
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
pub(super) fn payload_hash(options: &JobOptions, inputs: &[String]) -> String {
    let mut hash = payload_hasher(options, "json");
    for input in inputs {
        hash.update(b"\n");
        hash.update(input.as_bytes());
    }
    hex(hash)
}

/// A hash of a submission's options and the form of its input, for its rows to follow.
pub(super) fn payload_hasher(options: &JobOptions, form: &str) -> Sha256 {
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

pub(super) fn hex(hash: Sha256) -> String {
    hash.finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}
