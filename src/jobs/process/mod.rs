//! Running one claimed job.
//!
//! A normal job runs in chunks, as it is stored ([`super::chunks`]): each chunk is one
//! transaction that writes its users (or, in the second pass, their approvers), records
//! the chunk's results and adds to the job's progress. The first pass's chunks are claimed
//! by any worker of any process ([`first_pass`]) and written at most once; the worker that
//! holds the job's lease waits for them at the [`barrier`], then runs the later passes in
//! order, each chunk under a fence that holds only while it owns the lease. A job stopped
//! at any moment resumes after its last committed chunks, and nothing is applied twice.
//!
//! Every write of a user also records its before-image ([`super::images`]) in the same
//! transaction; a `REVERT` job runs in chunks too, over the images of its job
//! ([`super::revert`]).
//!
//! A `dryRun` or `atomic` job runs whole in one transaction ([`whole`]).
//!
//! - [`first_pass`]: the first pass's chunks, claimed and written by any worker;
//! - [`prefetch`]: a chunk's rows read and parsed ahead, outside any transaction;
//! - [`decide`]: how a chunk is decided and written;
//! - [`unchanged`]: rows found unchanged by their users' import digests, before deciding;
//! - [`barrier`]: the end of the first pass, where rows settled early may be checked again;
//! - [`statistics`]: planner statistics refreshed as a job grows the tables.

mod barrier;
mod decide;
mod first_pass;
mod prefetch;
mod statistics;
mod unchanged;
mod whole;

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use entity::import_jobs as jobs;
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr};

use super::chunks::{self, InputRow};
use super::digest;
use super::input::Inputs;
use super::revert::Reverter;
use super::{JobKind, JobStatus, Phase, RowResult, Summary, store, sync, user_options};
use crate::approvers;
use crate::auth::TenantId;
use crate::db;
use crate::error::AppError;
use crate::telemetry;

use first_pass::Wait;
use prefetch::{Ahead, LinkBatch, read_links};
pub(super) use statistics::Statistics;

pub(super) use decide::set_links;

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

impl Runner<'_> {
    /// Runs the job to its end. Its log lines, and its chunks', carry the job's id.
    #[tracing::instrument(name = "job", skip_all, fields(job_id = job.id, kind = %job.kind))]
    pub async fn run(&self, job: jobs::Model) -> Result<(), Stop> {
        if (job.dry_run || job.atomic) && JobKind::from_stored(&job.kind) != JobKind::Revert {
            self.run_whole(job).await
        } else {
            self.run_chunked(job).await
        }
    }

    pub(super) fn check(&self) -> Result<(), Stop> {
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

    /// Begins a chunk: its write transaction, in its turn (see [`db::begin_write_in_turn`]),
    /// and the job as stored, if this worker still owns it ([`Self::fence`]).
    pub(in crate::jobs) async fn begin(
        &self,
        id: i64,
    ) -> Result<(DatabaseTransaction, jobs::Model), Stop> {
        let txn = db::begin_write_in_turn(self.db).await?;
        let job = self.fence(&txn, id).await?;
        Ok((txn, job))
    }

    /// Commits a chunk with the job's new state ([`Self::save`]).
    pub(in crate::jobs) async fn commit(
        &self,
        txn: DatabaseTransaction,
        job: &mut jobs::Model,
    ) -> Result<(), Stop> {
        self.save(&txn, job).await?;
        txn.commit().await?;
        Ok(())
    }

    /// Ends a chunk of a later pass: the job's new state, with its lease renewed (the first
    /// pass's chunks add theirs with [`store::add_progress`]). A chunk committed is a run
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
        let mut statistics = Statistics::new(self.chunk);
        if let Some(original) = job
            .revert_of
            .filter(|_| JobKind::from_stored(&job.kind) == JobKind::Revert)
        {
            return Reverter::new(self, original).run(job).await;
        }
        let inputs = Arc::new(Inputs::of(&job)?);
        let context = digest::context(&job, &user_options(&job));
        let mut links_ahead = None;
        loop {
            self.check()?;
            statistics.refresh(self.db, &job).await?;
            job = match Phase::from_stored(&job.phase) {
                Phase::Users => {
                    self.users_pass(
                        &job,
                        &inputs,
                        context,
                        Wait::ForOthers,
                        Some(&mut statistics),
                    )
                    .await?;
                    self.end_first_pass(job, &inputs).await?
                }
                Phase::Links => {
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
                // Only a revert removes users.
                Phase::Removals => self.advance(job, Phase::Done).await?,
                Phase::Done => return self.finish_chunked(job).await,
            };
        }
    }

    /// Moves the job to its second pass past the [`barrier`].
    async fn end_first_pass(&self, job: jobs::Model, inputs: &Inputs) -> Result<jobs::Model, Stop> {
        let tenant = tenant_of(&job)?;
        let (txn, mut job) = self.begin(job.id).await?;
        let replace = user_options(&job).replace;
        let reopened = barrier::reopen(&txn, &tenant, inputs, replace, &mut job).await?;
        if reopened > 0 {
            tracing::info!(
                job = job.id,
                reopened,
                "rows whose approvers the job wrote are checked again"
            );
        }
        job.phase = Phase::Links.as_str().to_owned();
        job.cursor = 0;
        self.commit(txn, &mut job).await?;
        Ok(job)
    }

    pub(super) async fn advance(
        &self,
        job: jobs::Model,
        phase: Phase,
    ) -> Result<jobs::Model, Stop> {
        let (txn, mut job) = self.begin(job.id).await?;
        job.phase = phase.as_str().to_owned();
        job.cursor = 0;
        self.commit(txn, &mut job).await?;
        Ok(job)
    }

    /// Sets the approvers of one chunk of rows whose users are written.
    #[tracing::instrument(
        name = "chunk",
        skip_all,
        fields(chunk = batch.results.first().map(|row| row.index), pass = "links")
    )]
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
        let (txn, job) = self.begin(job.id).await?;
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
        self.commit(txn, &mut job).await?;
        count_rows(pass, &rows);
        self.committed(&job, started);
        Ok(job)
    }

    /// Ends a chunked job: sync mode's deactivations, then the integrity check, which sees
    /// them, in one transaction with the final status.
    pub(super) async fn finish_chunked(&self, job: jobs::Model) -> Result<(), Stop> {
        let tenant = tenant_of(&job)?;
        let (txn, mut job) = self.begin(job.id).await?;
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
        let elapsed = started.elapsed();
        tracing::debug!(
            processed = job.processed,
            links_processed = job.links_processed,
            elapsed_ms = elapsed.as_millis() as u64,
            "chunk committed"
        );
        metrics::histogram!(telemetry::JOB_CHUNK_DURATION).record(elapsed.as_secs_f64());
        self.queue.published(job);
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
