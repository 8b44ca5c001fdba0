//! Running one claimed job.
//!
//! A normal job runs in chunks, as it is stored ([`super::chunks`]): each chunk is one
//! transaction that writes its users (or, in the second pass, their approvers), records
//! the chunk's results and moves the job's cursor, under a fence that holds only while this worker owns the job's lease. A
//! job stopped at any moment resumes after its last committed chunk, and nothing is applied
//! twice.
//!
//! Every write of a user also records its before-image ([`super::images`]) in the same
//! transaction; a `REVERT` job runs in chunks too, over the images of its job
//! ([`super::revert`]).
//!
//! A `dryRun` or `atomic` job runs whole in one transaction, so that every row sees the
//! rows before it exactly as a real run would: its chunks are decided and written as a real
//! run's are, each in a savepoint (as a real run's are in their transactions). The transaction is rolled back for a dry run (and for an
//! atomic job with a failed row), and the results are stored after it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use entity::import_jobs as jobs;
use futures_util::{StreamExt, stream};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr, EntityName, TransactionTrait,
};

use super::chunks::{self, InputRow};
use super::images::{self, Image, Taken};
use super::input::Inputs;
use super::{JobKind, JobStatus, Phase, RowResult, Summary, row_errors, store, sync, user_options};
use crate::approvers::{self, ApproverChange, Snapshot};
use crate::auth::TenantId;
use crate::db;
use crate::error::{AppError, FieldError};
use crate::telemetry;
use crate::tracks;
use crate::users::import::{self, Decision, RowAction, UserImportOptions, plan_links};
use crate::users::profile::UserChanges;
use crate::users::store as user_store;

/// Why a run ended before its job did.
#[derive(Debug)]
pub enum Stop {
    /// Another worker holds the job now (this one's lease expired).
    LeaseLost,
    /// The process is shutting down.
    ShuttingDown,
    /// The database failed: the job is tried again later, unless its runs failed too often
    /// in a row (see [`super::worker`]).
    Failed(anyhow::Error),
}

impl From<DbErr> for Stop {
    fn from(error: DbErr) -> Self {
        Self::Failed(error.into())
    }
}

impl From<AppError> for Stop {
    fn from(error: AppError) -> Self {
        Self::Failed(anyhow::anyhow!("{error:?}"))
    }
}

/// What a run needs from its worker.
pub struct Runner<'a> {
    pub db: &'a DatabaseConnection,
    pub queue: &'a super::Queue,
    /// This worker's lease name.
    pub owner: &'a str,
    pub chunk: usize,
    pub lease_ms: i64,
    /// Checked between chunks: the lease was lost or the process is stopping.
    pub should_stop: &'a (dyn Fn() -> Option<Stop> + Sync),
}

/// A row checked and ready to decide, outside any transaction.
struct Prepared {
    index: i32,
    lookup_key: String,
    parsed: Result<(UserChanges, ApproverChange), AppError>,
    /// The stored row without the password it sends, if it sends one
    /// ([`Inputs::without_secrets`]): stored instead once the row succeeds.
    without_secrets: Option<String>,
}

impl Runner<'_> {
    pub async fn run(&self, job: jobs::Model) -> Result<(), Stop> {
        if (job.dry_run || job.atomic) && JobKind::from_stored(&job.kind) != JobKind::Revert {
            self.run_whole(job).await
        } else {
            self.run_chunked(job).await
        }
    }

    fn check(&self) -> Result<(), Stop> {
        match (self.should_stop)() {
            Some(stop) => Err(stop),
            None => Ok(()),
        }
    }

    /// Begins a chunk: the job as stored, if this worker still owns it, and the planner
    /// statistics as they stand (see [`Statistics`]).
    pub(super) async fn fence(
        &self,
        conn: &impl ConnectionTrait,
        id: i64,
    ) -> Result<jobs::Model, Stop> {
        db::load_statistics(conn).await?;
        store::fenced(conn, id, self.owner)
            .await?
            .ok_or(Stop::LeaseLost)
    }

    /// Ends a chunk: the job's new state, with its lease renewed. A chunk committed is a run
    /// that works: the failures before it no longer count as in a row.
    pub(super) async fn save(
        &self,
        conn: &impl ConnectionTrait,
        job: &mut jobs::Model,
    ) -> Result<(), Stop> {
        job.version += 1;
        job.failures = 0;
        job.lease_until = Some(Utc::now().timestamp_millis() + self.lease_ms);
        store::save(conn, job).await?;
        Ok(())
    }

    async fn run_chunked(&self, mut job: jobs::Model) -> Result<(), Stop> {
        let limit = self.chunk as u64;
        let mut statistics = Statistics::new(self.chunk);
        let reverts = job
            .revert_of
            .filter(|_| JobKind::from_stored(&job.kind) == JobKind::Revert);
        let inputs = Arc::new(Inputs::of(&job)?);
        let (mut users_ahead, mut links_ahead) = (None, None);
        loop {
            self.check()?;
            statistics.refresh(self.db, &job).await?;
            job = match (Phase::from_stored(&job.phase), reverts) {
                (Phase::Users, None) => {
                    let read = |from| read_users(self.db.clone(), inputs.clone(), job.id, from);
                    let batch = match Ahead::take(&mut users_ahead, job.cursor).await? {
                        Some(batch) => batch,
                        None => read(job.cursor).await?,
                    };
                    match batch {
                        None => self.advance(job, Phase::Links).await?,
                        Some(batch) => {
                            let next = batch.last_idx + 1;
                            users_ahead = Some(Ahead::start(next, read(next)));
                            self.users_chunk(job, batch).await?
                        }
                    }
                }
                (Phase::Links, None) => {
                    let read = |from| read_links(self.db.clone(), inputs.clone(), job.id, from);
                    let batch = match Ahead::take(&mut links_ahead, job.cursor).await? {
                        Some(batch) => batch,
                        None => read(job.cursor).await?,
                    };
                    match batch {
                        None => self.advance(job, Phase::Done).await?,
                        Some(batch) => {
                            let next = batch.last_idx + 1;
                            links_ahead = Some(Ahead::start(next, read(next)));
                            self.links_chunk(job, &inputs, batch).await?
                        }
                    }
                }
                (Phase::Users, Some(original)) => {
                    let batch = images::page(self.db, original, job.cursor, limit).await?;
                    if batch.is_empty() {
                        self.advance(job, Phase::Links).await?
                    } else {
                        self.restore_users(job, batch).await?
                    }
                }
                (Phase::Links, Some(original)) => {
                    match chunks::next_pending(self.db, job.id, job.cursor).await? {
                        None => self.settle_removals(job).await?,
                        Some(chunk) => self.restore_links(job, original, chunk).await?,
                    }
                }
                (Phase::Removals, reverts) => {
                    let chunk = chunks::next_pending(self.db, job.id, job.cursor).await?;
                    match (chunk, reverts) {
                        (Some(chunk), Some(original)) => {
                            self.remove_users(job, original, chunk).await?
                        }
                        _ => self.advance(job, Phase::Done).await?,
                    }
                }
                (Phase::Done, _) => return self.finish_chunked(job).await,
            };
        }
    }

    async fn advance(&self, job: jobs::Model, phase: Phase) -> Result<jobs::Model, Stop> {
        let txn = db::begin_write_in_turn(self.db).await?;
        let mut job = self.fence(&txn, job.id).await?;
        job.phase = phase.as_str().to_owned();
        job.cursor = 0;
        self.save(&txn, &mut job).await?;
        txn.commit().await?;
        Ok(job)
    }

    /// Decides and writes one chunk of users, in one transaction with its results (see
    /// [`decide_chunk_in_savepoint`]: a database error, such as a unique value taken by a
    /// concurrent `importUser`, fails only its row).
    async fn users_chunk(&self, job: jobs::Model, batch: UsersBatch) -> Result<jobs::Model, Stop> {
        let started = Instant::now();
        let tenant = tenant_of(&job)?;
        let UsersBatch {
            inputs, prepared, ..
        } = batch;
        let prepared = hash_passwords(self.db, &tenant, prepared).await;
        let job = self.write_users(&job, &tenant, &inputs, &prepared).await?;
        self.committed(&job, started);
        Ok(job)
    }

    async fn write_users(
        &self,
        job: &jobs::Model,
        tenant: &TenantId,
        inputs: &[InputRow],
        prepared: &[Prepared],
    ) -> Result<jobs::Model, Stop> {
        let txn = db::begin_write_in_turn(self.db).await?;
        let mut job = self.fence(&txn, job.id).await?;
        let options = user_options(&job);
        if options.replace || prepared.iter().any(Prepared::sends_tags) {
            db::lock_tenant(&txn, tracks::TAGS_LOCK, tenant).await?;
        }
        let now = Utc::now();
        let batch =
            decide_chunk_in_savepoint(&txn, tenant, job.id, prepared, &options, now).await?;
        let mut summary = Summary::default();
        let mut links_settled = 0;
        for (row, result) in prepared.iter().zip(&batch) {
            // A row that will not reach the second pass is done with its approvers too.
            if row.touches_links(options.replace) && !result.links_pending {
                links_settled += 1;
            }
            summary.count(result);
        }
        let first = inputs.first().map_or(job.cursor, |row| row.idx);
        let without: Vec<Option<String>> = prepared
            .iter()
            .map(|row| row.without_secrets.clone())
            .collect();
        let kept = forget_secrets(inputs, &without, &batch);
        chunks::write_first_pass(&txn, job.id, first, &batch, kept.as_deref()).await?;
        let last = inputs.last().map_or(job.cursor, |row| row.idx);
        job.cursor = last + 1;
        job.processed += batch.len() as i32;
        job.links_processed += links_settled;
        summary.add_to(&mut job);
        self.save(&txn, &mut job).await?;
        txn.commit().await?;
        count_rows("users", &batch);
        Ok(job)
    }

    /// Sets the approvers of one chunk of rows whose users are written.
    async fn links_chunk(
        &self,
        job: jobs::Model,
        reader: &Inputs,
        batch: LinkBatch,
    ) -> Result<jobs::Model, Stop> {
        let started = Instant::now();
        let tenant = tenant_of(&job)?;
        let LinkBatch {
            last_idx,
            results: before,
            changes,
        } = batch;
        let txn = db::begin_write_in_turn(self.db).await?;
        let job = self.fence(&txn, job.id).await?;
        let options = user_options(&job);
        db::lock_tenant(&txn, approvers::LOCK_KIND, &tenant).await?;
        let (mut after, summary) = set_links(
            &txn,
            &tenant,
            job.id,
            &before,
            &changes,
            &options,
            Utc::now(),
        )
        .await?;
        reader.name_link_errors(&mut after);
        self.end_later_chunk(txn, job, last_idx + 1, (after, summary), "links", started)
            .await
    }

    /// Ends a chunk of a pass after the first (approvers, a revert's removals): its rows'
    /// new results stored in place of their first ones, the job's cursor at `cursor`, the
    /// rows counted done with their summary, all committed with `txn`.
    pub(super) async fn end_later_chunk(
        &self,
        txn: DatabaseTransaction,
        mut job: jobs::Model,
        cursor: i32,
        (rows, summary): (Vec<RowResult>, Summary),
        pass: &'static str,
        started: Instant,
    ) -> Result<jobs::Model, Stop> {
        chunks::update_results(&txn, job.id, &rows).await?;
        job.cursor = cursor;
        job.links_processed += rows.len() as i32;
        summary.add_to(&mut job);
        self.save(&txn, &mut job).await?;
        txn.commit().await?;
        count_rows(pass, &rows);
        self.committed(&job, started);
        Ok(job)
    }

    /// Ends a chunked job: sync mode's deactivations, then the integrity check, which sees
    /// them, in one transaction with the final status.
    async fn finish_chunked(&self, job: jobs::Model) -> Result<(), Stop> {
        let tenant = tenant_of(&job)?;
        let txn = db::begin_write_in_turn(self.db).await?;
        let mut job = self.fence(&txn, job.id).await?;
        let message = match sync::plan(&txn, &tenant, &job).await? {
            sync::Plan::Nothing => None,
            sync::Plan::Refused(reason) => Some(reason),
            sync::Plan::Deactivate(ids) => {
                sync::deactivate(&txn, &tenant, &job, &ids, Utc::now()).await?;
                sync::record(&txn, &tenant, &mut job, &ids).await?;
                None
            }
        };
        let warnings = if job.run_integrity_check {
            integrity_warnings(&txn, &tenant).await?
        } else {
            Vec::new()
        };
        let status = if job.failed > 0 || message.is_some() {
            JobStatus::CompletedWithErrors
        } else {
            JobStatus::Completed
        };
        self.close(&txn, &mut job, status, message, warnings)
            .await?;
        txn.commit().await?;
        self.queue.finished(&job);
        Ok(())
    }

    /// Gives a job its final status and lets go of it.
    async fn close(
        &self,
        conn: &impl ConnectionTrait,
        job: &mut jobs::Model,
        status: JobStatus,
        error_message: Option<String>,
        warnings: Vec<String>,
    ) -> Result<(), Stop> {
        super::end(job, status);
        job.phase = Phase::Done.as_str().to_owned();
        job.error_message = error_message;
        job.integrity_warnings = Some(serde_json::to_string(&warnings).map_err(anyhow_error)?);
        store::save(conn, job).await?;
        Ok(())
    }

    pub(super) fn committed(&self, job: &jobs::Model, started: Instant) {
        metrics::histogram!(telemetry::JOB_CHUNK_DURATION).record(started.elapsed().as_secs_f64());
        self.queue.published(job);
    }

    /// A dry run or an atomic job: every row in one transaction, both passes, then the
    /// results stored (and, for an atomic job without failures, the writes committed).
    async fn run_whole(&self, job: jobs::Model) -> Result<(), Stop> {
        let tenant = tenant_of(&job)?;
        let txn = db::begin_write_in_turn(self.db).await?;
        let mut job = self.fence(&txn, job.id).await?;
        let options = user_options(&job);
        // The order every writer takes these locks in: approvers, tags, then rows.
        db::lock_tenant(&txn, approvers::LOCK_KIND, &tenant).await?;
        db::lock_tenant(&txn, tracks::TAGS_LOCK, &tenant).await?;
        let now = Utc::now();
        let reader = Inputs::of(&job)?;
        let mut results: Vec<RowResult> = Vec::with_capacity(job.total.max(0) as usize);
        // Each chunk: its place in `results`, its first index, and when some of its rows
        // send a password, its input rows and what each keeps once it succeeds.
        let mut stored: Vec<(usize, i32, Option<Secrets>)> = Vec::new();
        let mut statistics = Statistics::new(self.chunk);
        let mut from = 0;
        loop {
            self.check()?;
            statistics
                .refresh_for(&txn, Phase::Users, results.len())
                .await?;
            let Some(chunk) = chunks::next_from(self.db, job.id, from).await? else {
                break;
            };
            from = chunk.last_idx + 1;
            let prepared = prepare(self.db, &tenant, &reader, &chunk.inputs).await;
            let decided =
                decide_chunk_in_savepoint(&txn, &tenant, job.id, &prepared, &options, now).await?;
            let secrets = prepared.iter().any(|row| row.without_secrets.is_some());
            let kept = secrets.then(|| Secrets {
                inputs: chunk.inputs,
                without: prepared
                    .iter()
                    .map(|row| row.without_secrets.clone())
                    .collect(),
            });
            stored.push((results.len(), chunk.first_idx, kept));
            results.extend(decided);
        }
        let pending: Vec<usize> = (0..results.len())
            .filter(|&i| results[i].links_pending)
            .collect();
        for (done, chunk) in pending.chunks(self.chunk).enumerate() {
            self.check()?;
            statistics
                .refresh_for(&txn, Phase::Links, done * self.chunk)
                .await?;
            let indexes: Vec<i32> = chunk.iter().map(|&i| results[i].index).collect();
            let inputs = chunks::inputs_at(self.db, job.id, &indexes).await?;
            let changes = link_changes(&reader, &inputs);
            let before: Vec<RowResult> = chunk.iter().map(|&i| results[i].clone()).collect();
            let (mut after, _) =
                set_links(&txn, &tenant, job.id, &before, &changes, &options, now).await?;
            reader.name_link_errors(&mut after);
            for (&i, row) in chunk.iter().zip(after) {
                results[i] = row;
            }
        }
        let failed = results.iter().filter(|row| !row.success).count();
        // A dry run warns of the links as they would be; a failed atomic job, as they are.
        let atomic_failed = !job.dry_run && failed > 0;
        // Sync mode (never atomic, so here a dry run) deactivates as a real run would.
        let (deactivated, sync_message) = match sync::plan(&txn, &tenant, &job).await? {
            sync::Plan::Nothing => (Vec::new(), None),
            sync::Plan::Refused(reason) => (Vec::new(), Some(reason)),
            sync::Plan::Deactivate(ids) => {
                sync::deactivate(&txn, &tenant, &job, &ids, now).await?;
                (ids, None)
            }
        };
        let mut warnings = if job.run_integrity_check && !atomic_failed {
            integrity_warnings(&txn, &tenant).await?
        } else {
            Vec::new()
        };
        let write_nothing = job.dry_run || atomic_failed;
        let (status, message) = if job.dry_run {
            let status = if failed > 0 || sync_message.is_some() {
                JobStatus::CompletedWithErrors
            } else {
                JobStatus::Completed
            };
            (status, sync_message)
        } else if failed > 0 {
            for row in results.iter_mut().filter(|row| row.success) {
                *row = not_written(row);
            }
            let message = format!(
                "{failed} of {} rows failed; the job is atomic, so nothing was written",
                results.len()
            );
            (JobStatus::Failed, Some(message))
        } else if sync_message.is_some() {
            (JobStatus::CompletedWithErrors, sync_message)
        } else {
            (JobStatus::Completed, None)
        };
        let txn = if write_nothing {
            txn.rollback().await?;
            if job.run_integrity_check && atomic_failed {
                warnings = integrity_warnings(self.db, &tenant).await?;
            }
            let txn = db::begin_write_in_turn(self.db).await?;
            job = self.fence(&txn, job.id).await?;
            txn
        } else {
            txn
        };
        let mut summary = Summary::default();
        for row in &mut results {
            row.links_pending = false;
            summary.count(row);
        }
        let ends = stored
            .iter()
            .skip(1)
            .map(|(at, _, _)| *at)
            .chain([results.len()])
            .collect::<Vec<_>>();
        for ((at, first, kept), end) in stored.into_iter().zip(ends) {
            let rows = &results[at..end];
            let kept = kept
                .filter(|_| !write_nothing)
                .and_then(|kept| forget_secrets(&kept.inputs, &kept.without, rows));
            chunks::write_first_pass(&txn, job.id, first, rows, kept.as_deref()).await?;
        }
        if !atomic_failed {
            sync::record(&txn, &tenant, &mut job, &deactivated).await?;
        }
        job.processed = job.total;
        job.links_processed = job.links_total;
        job.cursor = job.total;
        summary.add_to(&mut job);
        self.close(&txn, &mut job, status, message, warnings)
            .await?;
        txn.commit().await?;
        count_rows("whole", &results);
        self.queue.finished(&job);
        Ok(())
    }
}

/// When a run refreshes the planner statistics of the tables a pass grows
/// ([`db::analyze`]): each time the rows the pass has gone through double, until they are
/// [`Statistics::LAST`] chunks. By then the tables the pass writes are big enough for
/// lookups by key to go through their indexes, and they only grow from there: PostgreSQL
/// scales its row estimates with a table's size, and SQLite's choice between two indexes
/// rests on how selective each is, not on how many rows there are. Later refreshes would
/// cost the most (the tables are biggest) and change no plan. Each pass starts over, for
/// the tables it grows: the approver pass fills `approver_links`, empty until then. A
/// job's own chunks are read by key alone and need none.
struct Statistics {
    chunk: i64,
    phase: Phase,
    next: i64,
}

impl Statistics {
    const LAST: i64 = 16;

    fn new(chunk: usize) -> Self {
        let chunk = chunk as i64;
        Self {
            chunk,
            phase: Phase::Done,
            next: chunk,
        }
    }

    async fn refresh(&mut self, db: &DatabaseConnection, job: &jobs::Model) -> Result<(), DbErr> {
        let done = match Phase::from_stored(&job.phase) {
            Phase::Users => job.processed,
            _ => job.links_processed,
        };
        self.refresh_for(db, Phase::from_stored(&job.phase), done as usize)
            .await
    }

    /// As [`Statistics::refresh`], for a pass at `phase` that has gone through `done` rows.
    /// A whole-job run refreshes them inside its transaction, whose rows they then count
    /// (from outside, PostgreSQL would count none of them and keep planning for empty
    /// tables). PostgreSQL keeps `ANALYZE`'s lock on each table to the transaction's end,
    /// so a refresh of the same tables by another job waits for this one to finish; writes
    /// do not.
    async fn refresh_for(
        &mut self,
        conn: &impl ConnectionTrait,
        phase: Phase,
        done: usize,
    ) -> Result<(), DbErr> {
        if phase != self.phase {
            self.phase = phase;
            self.next = self.chunk;
        }
        let tables = match phase {
            Phase::Users => &[
                entity::users::Entity.table_name(),
                entity::user_tags::Entity.table_name(),
                entity::user_attributes::Entity.table_name(),
                entity::track_assignments::Entity.table_name(),
                entity::import_job_images::Entity.table_name(),
            ][..],
            Phase::Links => &[
                entity::approver_links::Entity.table_name(),
                entity::import_job_images::Entity.table_name(),
            ][..],
            Phase::Removals | Phase::Done => return Ok(()),
        };
        let done = done as i64;
        if done < self.next || self.next > self.chunk * Self::LAST {
            return Ok(());
        }
        while self.next <= done {
            self.next *= 2;
        }
        db::analyze(conn, tables).await
    }
}

/// A chunk's input rows and, for each, the row without the password it sends, if it sends
/// one.
struct Secrets {
    inputs: Vec<InputRow>,
    without: Vec<Option<String>>,
}

/// A chunk's input rows as they are kept once `results` are written: a row that succeeded
/// without the password it sent (`without`), one that failed as it was, to be retried.
/// `None` when no row changes.
fn forget_secrets(
    inputs: &[InputRow],
    without: &[Option<String>],
    results: &[RowResult],
) -> Option<Vec<InputRow>> {
    let mut changed = false;
    let kept = inputs
        .iter()
        .zip(without)
        .zip(results)
        .map(|((input, without), result)| match without {
            Some(without) if result.success => {
                changed = true;
                InputRow {
                    input: without.clone(),
                    ..input.clone()
                }
            }
            _ => input.clone(),
        })
        .collect();
    changed.then_some(kept)
}

/// A row of an atomic job that failed as a whole: nothing of it was written.
fn not_written(row: &RowResult) -> RowResult {
    RowResult {
        action: RowAction::Skipped,
        user_id: None,
        links_pending: false,
        blocked: false,
        unblocked: false,
        errors: vec![FieldError {
            field: None,
            code: "NOT_WRITTEN".to_owned(),
            message: format!(
                "would have been {}, but another row failed and the job is atomic",
                row.action.as_str().to_lowercase()
            ),
        }],
        ..row.clone()
    }
}

fn anyhow_error(error: serde_json::Error) -> Stop {
    Stop::Failed(error.into())
}

pub(super) fn tenant_of(job: &jobs::Model) -> Result<TenantId, Stop> {
    TenantId::parse(&job.tenant).map_err(|e| Stop::Failed(anyhow::anyhow!(e)))
}

fn count_rows(pass: &'static str, batch: &[RowResult]) {
    for row in batch {
        metrics::counter!(telemetry::JOB_ROWS, "pass" => pass, "action" => row.action.as_str())
            .increment(1);
    }
}

/// Parses a chunk's rows and hashes their plain passwords (slow by design), before any
/// transaction opens.
async fn prepare(
    db: &DatabaseConnection,
    tenant: &TenantId,
    inputs: &Inputs,
    batch: &[InputRow],
) -> Vec<Prepared> {
    hash_passwords(db, tenant, parse(inputs, batch)).await
}

/// A chunk's rows checked: everything about them that does not depend on the database.
fn parse(inputs: &Inputs, batch: &[InputRow]) -> Vec<Prepared> {
    batch
        .iter()
        .map(|row| {
            let (lookup_key, parsed) = inputs.parse(row);
            Prepared {
                index: row.idx,
                lookup_key,
                parsed,
                without_secrets: inputs.without_secrets(row),
            }
        })
        .collect()
}

/// Hashes the plain passwords of parsed rows a few at a time. It reads the users as they
/// are (an unchanged password keeps its hash), so it runs in the chunk's turn.
async fn hash_passwords(
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
struct Ahead<T> {
    from: i32,
    task: tokio::task::JoinHandle<Result<T, DbErr>>,
}

impl<T: Send + 'static> Ahead<T> {
    fn start(
        from: i32,
        read: impl std::future::Future<Output = Result<T, DbErr>> + Send + 'static,
    ) -> Self {
        Self {
            from,
            task: tokio::spawn(read),
        }
    }

    /// The chunk read ahead, if it is the one from `from`.
    async fn take(ahead: &mut Option<Self>, from: i32) -> Result<Option<T>, DbErr> {
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
struct UsersBatch {
    last_idx: i32,
    inputs: Vec<InputRow>,
    prepared: Vec<Prepared>,
}

/// The first pass's next chunk from `from`, parsed; `None` when every chunk is written.
async fn read_users(
    db: DatabaseConnection,
    inputs: Arc<Inputs>,
    job_id: i64,
    from: i32,
) -> Result<Option<UsersBatch>, DbErr> {
    let Some(chunk) = chunks::next_unwritten(&db, job_id, from).await? else {
        return Ok(None);
    };
    let last_idx = chunk.last_idx;
    let rows = chunk.inputs;
    let (rows, prepared) = blocking(move || {
        let prepared = parse(&inputs, &rows);
        (rows, prepared)
    })
    .await?;
    Ok(Some(UsersBatch {
        last_idx,
        inputs: rows,
        prepared,
    }))
}

/// A chunk of the approver pass: the results of the rows it sets, and their changes.
struct LinkBatch {
    last_idx: i32,
    results: Vec<RowResult>,
    changes: HashMap<i32, Result<ApproverChange, AppError>>,
}

/// The approver pass's next chunk from `from`, parsed; `None` when no row is left to set.
async fn read_links(
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
    fn sends_tags(&self) -> bool {
        self.parsed
            .as_ref()
            .is_ok_and(|(changes, _)| changes.sends_tags())
    }

    fn has_plain_password(&self) -> bool {
        self.parsed
            .as_ref()
            .is_ok_and(|(changes, _)| changes.plain_password().is_some())
    }

    fn touches_links(&self, replace: bool) -> bool {
        self.parsed
            .as_ref()
            .is_ok_and(|(_, links)| links.touches_links(replace))
    }
}

/// Decides and writes a chunk's rows with a fixed number of statements per run of rows
/// that do not touch each other (see [`import::decide_prefix`]); usually one run.
async fn decide_and_write(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    job_id: i64,
    prepared: &[Prepared],
    options: &UserImportOptions,
    now: chrono::DateTime<Utc>,
) -> Result<Vec<RowResult>, DbErr> {
    let mut results = Vec::with_capacity(prepared.len());
    let mut taken = Vec::new();
    let mut pending: Vec<(&Prepared, &UserChanges, &ApproverChange)> = Vec::new();
    for row in prepared {
        match &row.parsed {
            Ok((changes, links)) => pending.push((row, changes, links)),
            Err(error) => results.push(RowResult::failed(
                row.index,
                row.lookup_key.clone(),
                row_errors(error),
            )),
        }
    }
    let mut rest = pending.as_slice();
    while !rest.is_empty() {
        let changes: Vec<&UserChanges> = rest.iter().map(|(_, c, _)| *c).collect();
        let decisions =
            import::decide_prefix(conn, tenant, &changes, options, now.date_naive()).await?;
        let (run, later) = rest.split_at(decisions.len());
        rest = later;
        let mut creates: Vec<&crate::users::profile::Profile> = Vec::new();
        let mut updates = Vec::new();
        for decision in decisions.iter().flatten() {
            match decision {
                Decision::Create(profile) => creates.push(profile),
                Decision::Update {
                    user,
                    before,
                    after,
                } => updates.push((user, before.as_ref(), after.as_ref())),
                Decision::Unchanged(_) | Decision::Skip(_) => {}
            }
        }
        let updated: Vec<i64> = updates.iter().map(|(user, _, _)| user.id).collect();
        let mut sets = approvers::store::sets_of(conn, tenant, &updated).await?;
        let mut created = user_store::insert_many(conn, tenant, &creates, now)
            .await?
            .into_iter();
        user_store::update_many(conn, tenant, &updates, now).await?;
        for ((row, _, links), decision) in run.iter().zip(decisions) {
            let user_id = match &decision {
                Ok(Decision::Create(_)) => created.next(),
                Ok(Decision::Update { user, .. } | Decision::Unchanged(user)) => Some(user.id),
                Ok(Decision::Skip(_)) | Err(_) => None,
            };
            if let Ok(decision) = &decision {
                taken.extend(image_of(row.index, decision, user_id, &mut sets, now));
            }
            results.push(row_result(row, links, decision, user_id, options)?);
        }
    }
    if !options.dry_run {
        images::record(conn, tenant, job_id, taken).await?;
    }
    Ok(results)
}

/// One chunk of rows decided and written in bulk ([`decide_and_write`]) in a savepoint of
/// `txn`: a chunk of a normal run in its own transaction, or of a whole-job run in the
/// job's. A database error rolls the savepoint back, and the chunk runs again with a
/// savepoint per row, so that the row alone fails. The results are in the order of
/// `prepared`.
async fn decide_chunk_in_savepoint(
    txn: &DatabaseTransaction,
    tenant: &TenantId,
    job_id: i64,
    prepared: &[Prepared],
    options: &UserImportOptions,
    now: chrono::DateTime<Utc>,
) -> Result<Vec<RowResult>, DbErr> {
    let savepoint = txn.begin().await?;
    let mut batch = match decide_and_write(&savepoint, tenant, job_id, prepared, options, now).await
    {
        Ok(batch) => {
            savepoint.commit().await?;
            batch
        }
        Err(error) => {
            savepoint.rollback().await?;
            tracing::warn!(job = job_id, %error, "chunk failed; running it again row by row");
            let mut batch = Vec::with_capacity(prepared.len());
            for row in prepared {
                batch.push(decide_in_savepoint(txn, tenant, job_id, row, options, now).await?);
            }
            batch
        }
    };
    batch.sort_by_key(|row| row.index);
    Ok(batch)
}

/// What a written decision keeps for a revert: the user before (none for a new one), with
/// its approver set from `sets`.
fn image_of(
    index: i32,
    decision: &Decision,
    user_id: Option<i64>,
    sets: &mut HashMap<i64, Vec<approvers::Link>>,
    now: chrono::DateTime<Utc>,
) -> Option<Taken> {
    match (decision, user_id) {
        (Decision::Create(profile), Some(user_id)) => Some(Taken {
            user_id,
            idx: index,
            lookup_key: format!("{}:{}", profile.source, profile.external_id),
            before: None,
            left_at: Some(now),
        }),
        (Decision::Update { user, before, .. }, _) => {
            let links = sets.remove(&user.id).unwrap_or_default();
            Some(Taken::written(
                index,
                Image::new(user.clone(), before, &links),
                now,
            ))
        }
        _ => None,
    }
}

/// Decides one row and writes the user (never its approvers: that is the second pass).
/// A refused row is a result; only a database failure is an error.
async fn decide_row(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    job_id: i64,
    row: &Prepared,
    options: &UserImportOptions,
    now: chrono::DateTime<Utc>,
) -> Result<RowResult, DbErr> {
    let (changes, links) = match &row.parsed {
        Ok(parsed) => parsed,
        Err(error) => {
            return Ok(RowResult::failed(
                row.index,
                row.lookup_key.clone(),
                row_errors(error),
            ));
        }
    };
    let decision = import::decide(conn, tenant, changes, options, now.date_naive()).await;
    let user_id = match &decision {
        Ok(decision) => {
            let mut sets = match decision {
                Decision::Update { user, .. } if !options.dry_run => {
                    approvers::store::sets_of(conn, tenant, &[user.id]).await?
                }
                _ => HashMap::new(),
            };
            let user_id = import::apply(conn, tenant, decision, now)
                .await?
                .map(|user| user.id);
            if !options.dry_run {
                let taken = image_of(row.index, decision, user_id, &mut sets, now);
                images::record(conn, tenant, job_id, taken.into_iter().collect()).await?;
            }
            user_id
        }
        Err(_) => None,
    };
    row_result(row, links, decision, user_id, options)
}

/// [`decide_row`] in a savepoint of `txn`: a row whose write fails (a unique value taken
/// meanwhile, say) is rolled back alone and fails with the reason.
async fn decide_in_savepoint(
    txn: &DatabaseTransaction,
    tenant: &TenantId,
    job_id: i64,
    row: &Prepared,
    options: &UserImportOptions,
    now: chrono::DateTime<Utc>,
) -> Result<RowResult, DbErr> {
    let savepoint = txn.begin().await?;
    match decide_row(&savepoint, tenant, job_id, row, options, now).await {
        Ok(result) => {
            savepoint.commit().await?;
            Ok(result)
        }
        Err(error) => {
            savepoint.rollback().await?;
            let error = match &row.parsed {
                Ok((changes, _)) => import::write_error(error, changes),
                Err(_) => error.into(),
            };
            if let AppError::Internal(cause) = &error {
                tracing::warn!(error = %format!("{cause:#}"), "a job row failed to write");
            }
            Ok(RowResult::failed(
                row.index,
                row.lookup_key.clone(),
                row_errors(&error),
            ))
        }
    }
}

/// What a decided row reports; `user_id` is the written (or matched) user. A database
/// failure during the decision is the chunk's error, not the row's.
fn row_result(
    row: &Prepared,
    links: &ApproverChange,
    decision: Result<Decision, AppError>,
    user_id: Option<i64>,
    options: &UserImportOptions,
) -> Result<RowResult, DbErr> {
    let failed =
        |error: &AppError| RowResult::failed(row.index, row.lookup_key.clone(), row_errors(error));
    let decision = match decision {
        Ok(decision) => decision,
        Err(AppError::Internal(error)) => return Err(DbErr::Custom(format!("{error:#}"))),
        Err(error) => return Ok(failed(&error)),
    };
    let (action, blocked, unblocked) = import::counts(&decision, false);
    if let Decision::Skip(reason) = &decision {
        return Ok(RowResult {
            action,
            success: true,
            ..failed(reason)
        });
    }
    Ok(RowResult {
        index: row.index,
        lookup_key: row.lookup_key.clone(),
        action,
        success: true,
        user_id,
        errors: Vec::new(),
        links_pending: links.touches_links(options.replace),
        blocked,
        unblocked,
    })
}

/// Each row's approver change, by index; a row that cannot be read again fails its links.
fn link_changes(
    inputs: &Inputs,
    rows: &[InputRow],
) -> HashMap<i32, Result<ApproverChange, AppError>> {
    rows.iter()
        .map(|row| (row.idx, inputs.links(row)))
        .collect()
}

/// The second pass over some rows: checks each one's approver set in turn against one
/// [`Snapshot`] of what the rows name, then writes every changed set with a few
/// multi-row statements. A row whose set is refused keeps its user and fails with the
/// reason.
pub(super) async fn set_links(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    job_id: i64,
    before: &[RowResult],
    changes: &HashMap<i32, Result<ApproverChange, AppError>>,
    options: &UserImportOptions,
    now: chrono::DateTime<Utc>,
) -> Result<(Vec<RowResult>, Summary), Stop> {
    let mut ids: Vec<i64> = before.iter().filter_map(|row| row.user_id).collect();
    ids.sort_unstable();
    ids.dedup();
    let users = user_store::existing(conn, tenant, &ids).await?;
    let ids: Vec<i64> = users.iter().copied().collect();
    let specs = changes.values().flatten().flat_map(ApproverChange::specs);
    let mut snapshot = Snapshot::load(conn, tenant, &ids, specs).await?;
    // Users whose row the first pass left as it was.
    let mut not_yet_written = std::collections::HashSet::new();
    let mut summary = Summary::default();
    let mut after = Vec::with_capacity(before.len());
    for row in before {
        let mut result = RowResult {
            links_pending: false,
            ..row.clone()
        };
        let user = row.user_id.filter(|id| users.contains(id));
        let outcome = match (user, changes.get(&row.index)) {
            (Some(user_id), Some(Ok(change))) => {
                match plan_links(&snapshot, Some(user_id), change, options.replace) {
                    Ok(None) => Ok(()),
                    Ok(Some(links)) => {
                        snapshot.accept(user_id, links);
                        if result.action == RowAction::Unchanged {
                            result.action = RowAction::Updated;
                            not_yet_written.insert(user_id);
                        }
                        Ok(())
                    }
                    Err(AppError::Internal(error)) => {
                        return Err(Stop::Failed(anyhow::anyhow!("{error:#}")));
                    }
                    Err(error) => Err(row_errors(&error)),
                }
            }
            (_, Some(Err(error))) => Err(row_errors(error)),
            _ => Err(vec![FieldError {
                field: None,
                code: "NOT_FOUND".to_owned(),
                message: "the user of this row no longer exists".to_owned(),
            }]),
        };
        if let Err(errors) = outcome {
            result.success = false;
            result.errors.extend(errors);
        }
        summary.recount(row, &result);
        after.push(result);
    }
    let written = snapshot.changes();
    // `updatedAt` moves with the approvers; a user this job wrote in its first pass has
    // it from then already.
    let touched: Vec<i64> = written
        .iter()
        .map(|change| change.user_id)
        .filter(|id| not_yet_written.contains(id))
        .collect();
    // Their images, before the links are written.
    let taken = if options.dry_run {
        Vec::new()
    } else {
        let rows: HashMap<i64, i32> = after
            .iter()
            .rev()
            .filter_map(|row| Some((row.user_id?, row.index)))
            .collect();
        let mut users: Vec<_> = user_store::by_ids(conn, tenant, &touched)
            .await?
            .into_values()
            .collect();
        users.sort_unstable_by_key(|user| user.id);
        images::current(conn, tenant, users)
            .await?
            .into_iter()
            .map(|image| Taken::written(rows[&image.user.id], image, now))
            .collect()
    };
    approvers::store::write_sets(conn, tenant, &written, now).await?;
    user_store::touch_many(conn, tenant, &touched, now).await?;
    images::record(conn, tenant, job_id, taken).await?;
    Ok((after, summary))
}

/// Every approver link of the tenant whose approver is inactive, described for people.
pub async fn integrity_warnings(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
) -> Result<Vec<String>, DbErr> {
    const MAX_WARNINGS: usize = 1_000;
    let links = approvers::store::inactive_approver_links(conn, tenant).await?;
    let total = links.len();
    let mut warnings: Vec<String> = links
        .into_iter()
        .take(MAX_WARNINGS)
        .map(|link| {
            format!(
                "{}:{} ({}) has {} {}:{} ({}), who is inactive",
                link.user.source,
                link.user.external_id,
                link.user.email,
                link.link.label,
                link.approver.source,
                link.approver.external_id,
                link.approver.email,
            )
        })
        .collect();
    if total > MAX_WARNINGS {
        warnings.push(format!("… and {} more", total - MAX_WARNINGS));
    }
    Ok(warnings)
}
