//! The first pass of a job, chunk by chunk, on any number of workers: each claims a chunk
//! ([`crate::jobs::claims`]), writes its users with its results and the job's progress in
//! one transaction, and claims the next while it writes. The worker that holds the job
//! runs the pass to its end and then the [`super::barrier`]; any other idle worker, of this
//! process or another, helps while there are chunks it may take.
//!
//! A chunk written while one before it is still unwritten must not depend on it
//! ([`crate::jobs::order`]): when it does, its transaction rolls back and the chunk runs
//! once every chunk before it is written.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use entity::import_jobs as jobs;

use super::decide::decide_chunk_in_savepoint;
use super::prefetch::{Ahead, Prepared, UsersBatch, hash_passwords, read_users};
use super::{Runner, Statistics, Stop, count_rows, forget_secrets, tenant_of};
use crate::auth::TenantId;
use crate::db;
use crate::jobs::chunks::{self, InputRow};
use crate::jobs::claims::{self, Claimer, Next};
use crate::jobs::input::Inputs;
use crate::jobs::{Summary, digest, store, user_options};
use crate::telemetry;
use crate::tracks;

/// How long a worker that holds a job waits before it looks again for a chunk, when every
/// chunk left is claimed by others or waits for one of theirs.
const WAIT: Duration = Duration::from_millis(25);

/// What a worker does when every chunk left is claimed by others, or waits for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::jobs) enum Wait {
    /// It holds the job: it waits for the other workers' chunks, to end the pass.
    ForOthers,
    /// It helps: it leaves the job to them.
    Leave,
}

impl Runner<'_> {
    /// Helps with the first pass of a job another worker holds, while it has chunks this
    /// worker may take; answers how many it wrote.
    #[tracing::instrument(name = "job", skip_all, fields(job_id = job.id, kind = %job.kind))]
    pub async fn help(&self, job: &jobs::Model) -> Result<usize, Stop> {
        let inputs = Arc::new(Inputs::of(job)?);
        let context = digest::context(job, &user_options(job));
        self.users_pass(job, &inputs, context, Wait::Leave, None)
            .await
    }

    /// Writes the chunks of the job's first pass this worker claims, until none is left
    /// that it may take: with [`Wait::ForOthers`], until every chunk is written. The next
    /// chunk is claimed and read while one is written. Claims still held when the run
    /// stops are let go, for any worker to take at once. Answers how many chunks this
    /// worker wrote.
    pub(in crate::jobs) async fn users_pass(
        &self,
        job: &jobs::Model,
        inputs: &Arc<Inputs>,
        context: Option<[u8; 32]>,
        wait: Wait,
        mut statistics: Option<&mut Statistics>,
    ) -> Result<usize, Stop> {
        let mut claimer = Claimer::new(job.id, self.owner);
        let lease = Duration::from_millis(u64::try_from(self.lease_ms).unwrap_or(u64::MAX));
        let renewing = tokio::spawn(claims::keep(
            self.db.clone(),
            job.id,
            self.owner.to_owned(),
            lease,
        ));
        let ran = self
            .claim_and_write(&mut claimer, job, inputs, context, wait, &mut statistics)
            .await;
        renewing.abort();
        if ran.is_err()
            && let Err(error) = claimer.release_all(self.db).await
        {
            tracing::warn!(job = job.id, %error, "cannot let go of the job's chunks; their claims run out instead");
        }
        ran
    }

    async fn claim_and_write(
        &self,
        claimer: &mut Claimer,
        job: &jobs::Model,
        inputs: &Arc<Inputs>,
        context: Option<[u8; 32]>,
        wait: Wait,
        statistics: &mut Option<&mut Statistics>,
    ) -> Result<usize, Stop> {
        let mut wrote = 0;
        let read = |first| read_users(self.db.clone(), inputs.clone(), context, job.id, first);
        let mut ahead: Option<Ahead<Option<UsersBatch>>> = None;
        loop {
            self.check()?;
            let batch = match ahead.take() {
                Some(next) => next.wait().await?,
                None => match self.claim(claimer).await? {
                    Next::Claimed(first) => read(first).await?,
                    Next::Done => return Ok(wrote),
                    Next::Wait if wait == Wait::Leave => return Ok(wrote),
                    Next::Wait => {
                        tokio::time::sleep(WAIT).await;
                        continue;
                    }
                },
            };
            // Written by another worker since it was claimed (its claim ran out).
            let Some(batch) = batch else { continue };
            if let Next::Claimed(first) = self.claim(claimer).await? {
                ahead = Some(Ahead::start(first, read(first)));
            }
            let Some(job) = self.users_chunk(job, claimer, batch).await? else {
                continue;
            };
            wrote += 1;
            if let Some(statistics) = statistics {
                statistics.refresh(self.db, &job).await?;
            }
        }
    }

    async fn claim(&self, claimer: &mut Claimer) -> Result<Next, Stop> {
        let now = Utc::now().timestamp_millis();
        Ok(claimer.next(self.db, now, now + self.lease_ms).await?)
    }

    /// Decides and writes one claimed chunk of users, in one transaction with its results
    /// and the job's progress (see [`decide_chunk_in_savepoint`]: a database error, such
    /// as a unique value taken by a concurrent `importUser`, fails only its row). Answers
    /// the job as it then stands; `None` when the chunk was not written (another worker
    /// wrote it, or it waits for the chunks before it).
    #[tracing::instrument(
        name = "chunk",
        skip_all,
        fields(chunk = batch.first_idx, pass = "users")
    )]
    async fn users_chunk(
        &self,
        job: &jobs::Model,
        claimer: &mut Claimer,
        batch: UsersBatch,
    ) -> Result<Option<jobs::Model>, Stop> {
        let started = Instant::now();
        let tenant = tenant_of(job)?;
        let UsersBatch {
            first_idx,
            inputs,
            prepared,
        } = batch;
        let prepared = hash_passwords(self.db, &tenant, prepared).await;
        let written = self
            .write_users(job, &tenant, first_idx, &inputs, &prepared)
            .await?;
        match written {
            Written::Done(job) => {
                claimer.written(first_idx);
                self.committed(&job, started);
                Ok(Some(*job))
            }
            Written::ByAnother => {
                claimer.written(first_idx);
                Ok(None)
            }
            Written::InOrder => {
                tracing::info!(
                    job = job.id,
                    chunk = first_idx,
                    "the chunk's rows depend on chunks before it; it runs after them"
                );
                claimer.release(self.db, first_idx, true).await?;
                Ok(None)
            }
        }
    }

    async fn write_users(
        &self,
        job: &jobs::Model,
        tenant: &TenantId,
        first_idx: i32,
        inputs: &[InputRow],
        prepared: &[Prepared],
    ) -> Result<Written, Stop> {
        let txn = db::begin_write_in_turn(self.db).await?;
        db::load_statistics(&txn).await?;
        // Read before the users are: chunks written before this see their users as they
        // left them.
        let out_of_order = claims::runs_out_of_order(&txn, job.id, first_idx).await?;
        let options = user_options(job);
        if options.replace || prepared.iter().any(Prepared::sends_tags) {
            // Shared: chunks write users of their own, whose tracks follow from their own
            // tags; writers of tracks, and of other users' tags, take it alone.
            db::lock_tenant_shared(&txn, tracks::TAGS_LOCK, tenant).await?;
        }
        let now = Utc::now();
        let written =
            decide_chunk_in_savepoint(&txn, tenant, job.id, prepared, &options, now).await?;
        if out_of_order && written.depends_on_order {
            txn.rollback().await?;
            return Ok(Written::InOrder);
        }
        let batch = written.results;
        let mut summary = Summary::default();
        let mut settled = 0;
        for (row, result) in prepared.iter().zip(&batch) {
            // A row that will not reach the second pass is done with its approvers too.
            if row.touches_links(options.replace) && !result.links_pending {
                settled += 1;
            }
            summary.count(result);
        }
        let without: Vec<Option<String>> = prepared
            .iter()
            .map(|row| row.without_secrets.clone())
            .collect();
        let kept = forget_secrets(inputs, &without, &batch);
        if !chunks::write_first_pass(&txn, job.id, first_idx, &batch, kept.as_deref()).await? {
            txn.rollback().await?;
            return Ok(Written::ByAnother);
        }
        let rows = batch.len() as i32;
        let Some(job) = store::add_progress(&txn, job.id, rows, settled, &summary).await? else {
            // Cancelled: nothing more is written.
            txn.rollback().await?;
            return Err(Stop::LeaseLost);
        };
        txn.commit().await?;
        count_rows("users", &batch);
        metrics::counter!(telemetry::JOB_ROWS_BY_DIGEST).increment(written.by_digest);
        Ok(Written::Done(Box::new(job)))
    }
}

/// What became of a claimed chunk.
enum Written {
    /// Written, with the job as it then stood.
    Done(Box<jobs::Model>),
    /// Another worker wrote it first.
    ByAnother,
    /// Not written: it depends on chunks before it, still unwritten.
    InOrder,
}
