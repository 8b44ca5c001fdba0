//! Workers: claim a job from the database, hold it under a renewed lease, run it.
//!
//! On PostgreSQL the claim is `SELECT … FOR UPDATE SKIP LOCKED`, so the workers of several
//! processes share one queue and a job is claimed by one of them at a time. A worker renews
//! its lease while it runs the job; when a process dies, its leases run out and the jobs are
//! claimed again, to resume after their last committed chunk. The job's passes after the
//! first, and its end, are fenced by the lease (see [`super::store::fenced`]), so a worker
//! that lost its job commits nothing more of them.
//!
//! The first pass's chunks are claimed one by one ([`super::claims`]): a worker with no
//! job to claim helps with the first pass of a job another worker holds, in this process
//! or another, so that one job runs on every worker. A chunk is written at most once, and
//! only while its job runs.
//!
//! A run that fails for a server reason lets go of its job until a later time, further off
//! after each failure in a row; the job fails at the [`MAX_FAILURES`]th. Only failures
//! count: a job taken over or resumed after a restart was claimed again, and failed nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::Utc;
use entity::import_jobs as jobs;
use rand::RngCore;
use sea_orm::{DatabaseConnection, DbErr};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::process::{Runner, Stop};
use super::{JobStatus, Queue, store};
use crate::config::JobsConfig;
use crate::db;
use crate::telemetry;

/// A job whose runs failed this often in a row (the database failing, not its rows) is
/// given up.
const MAX_FAILURES: i32 = 3;

/// The running workers of this process.
pub struct Workers {
    stop: watch::Sender<bool>,
    handles: Vec<JoinHandle<()>>,
}

impl Workers {
    /// Starts `config.workers` workers and, when there are some and jobs are not kept
    /// forever, the sweeper that deletes jobs past their retention.
    pub fn start(db: DatabaseConnection, queue: Queue, config: JobsConfig) -> Self {
        let (stop, stopping) = watch::channel(false);
        let process = rand::rng().next_u32();
        let sweeper = match config.job_retention.0 {
            Some(keep) if config.workers > 0 => Some(tokio::spawn(sweep_every(
                db.clone(),
                keep,
                config.job_sweep_every,
                stopping.clone(),
            ))),
            _ => None,
        };
        let handles = (0..config.workers)
            .map(|n| {
                let worker = Worker {
                    db: db.clone(),
                    queue: queue.clone(),
                    config: config.clone(),
                    name: format!("{}-{process:08x}-{n}", std::process::id()),
                    stopping: stopping.clone(),
                };
                tokio::spawn(worker.work())
            })
            .chain(sweeper)
            .collect();
        Self { stop, handles }
    }

    /// Asks every worker to stop after its current chunk, and waits for them. Jobs they
    /// held are released at once, for any process to resume.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for handle in self.handles {
            let _ = handle.await;
        }
    }
}

/// Deletes the jobs that finished more than `keep` ago, now and then each `every`, until
/// the process stops.
async fn sweep_every(
    db: DatabaseConnection,
    keep: Duration,
    every: Duration,
    mut stopping: watch::Receiver<bool>,
) {
    loop {
        match sweep(&db, keep).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "deleted jobs past their retention"),
            Err(error) => tracing::warn!(%error, "cannot delete jobs past their retention"),
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = stopping.changed() => return,
        }
    }
}

/// Deletes every job that finished more than `keep` ago, one transaction each; answers how
/// many this process deleted.
pub async fn sweep(db: &DatabaseConnection, keep: Duration) -> Result<usize, DbErr> {
    let keep = chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::MAX);
    let Some(before) = Utc::now().checked_sub_signed(keep) else {
        return Ok(0);
    };
    let mut deleted = 0;
    for id in store::expired(db, before).await? {
        let txn = db::begin_write(db).await?;
        if store::delete_finished(&txn, id, before).await? {
            deleted += 1;
            metrics::counter!(telemetry::JOBS_DELETED).increment(1);
        }
        txn.commit().await?;
    }
    Ok(deleted)
}

struct Worker {
    db: DatabaseConnection,
    queue: Queue,
    config: JobsConfig,
    name: String,
    stopping: watch::Receiver<bool>,
}

impl Worker {
    fn lease_ms(&self) -> i64 {
        millis(self.config.job_lease)
    }

    async fn work(mut self) {
        loop {
            if *self.stopping.borrow() {
                return;
            }
            match self.claim().await {
                Ok(Some(job)) => {
                    self.run(job).await;
                    // The statements the job prepared go back with the rest of its memory,
                    // which was given back when it ended: again only if they were freed.
                    let dropped = db::forget_prepared(&self.db).await;
                    if dropped > 0 {
                        tracing::debug!(worker = %self.name, dropped, "prepared statements dropped");
                        crate::memory::give_back();
                    }
                }
                Ok(None) if self.help().await > 0 => {}
                Ok(None) => {
                    let wake = self.queue.wake.clone();
                    tokio::select! {
                        () = wake.notified() => {}
                        () = tokio::time::sleep(self.config.job_poll) => {}
                        _ = self.stopping.changed() => {}
                    }
                }
                Err(error) => {
                    tracing::warn!(worker = %self.name, %error, "cannot claim a job");
                    tokio::time::sleep(self.config.job_poll).await;
                }
            }
        }
    }

    /// Takes the oldest claimable job, if any. A read first, so that idle workers never
    /// take SQLite's write lock.
    async fn claim(&self) -> Result<Option<jobs::Model>, DbErr> {
        let now = Utc::now().timestamp_millis();
        if store::next_claimable(&self.db, now).await?.is_none() {
            return Ok(None);
        }
        let txn = db::begin_write(&self.db).await?;
        let Some(mut job) = store::next_claimable(&txn, now).await? else {
            txn.commit().await?;
            return Ok(None);
        };
        job.status = JobStatus::Running.as_str().to_owned();
        job.lease_owner = Some(self.name.clone());
        job.lease_until = Some(now + self.lease_ms());
        job.started_at.get_or_insert_with(Utc::now);
        job.attempts += 1;
        job.version += 1;
        store::save(&txn, &job).await?;
        txn.commit().await?;
        tracing::info!(
            worker = %self.name,
            job = job.id,
            claim = job.attempts,
            failures = job.failures,
            "job claimed"
        );
        self.queue.published(&job);
        Ok(Some(job))
    }

    /// What a run by this worker needs; `should_stop` is checked between chunks.
    fn runner<'a>(&'a self, should_stop: &'a (dyn Fn() -> Option<Stop> + Sync)) -> Runner<'a> {
        Runner {
            db: &self.db,
            queue: &self.queue,
            owner: &self.name,
            chunk: self.config.job_chunk,
            lease_ms: self.lease_ms(),
            should_stop,
        }
    }

    /// Helps with the first pass of the jobs other workers hold, while they have chunks
    /// this worker may take; answers how many chunks it wrote.
    async fn help(&self) -> usize {
        let jobs = match store::helpable(&self.db).await {
            Ok(jobs) => jobs,
            Err(error) => {
                tracing::warn!(worker = %self.name, %error, "cannot look for jobs to help with");
                return 0;
            }
        };
        let stopping = self.stopping.clone();
        let should_stop = move || (*stopping.borrow()).then_some(Stop::ShuttingDown);
        let runner = self.runner(&should_stop);
        let mut wrote = 0;
        for job in jobs {
            match runner.help(&job).await {
                Ok(chunks) => wrote += chunks,
                Err(Stop::Failed(error)) => {
                    let error = format!("{error:#}");
                    tracing::warn!(worker = %self.name, job = job.id, %error, "helping with the job failed; its chunks are free again");
                }
                Err(Stop::LeaseLost | Stop::ShuttingDown) => {}
            }
        }
        wrote
    }

    async fn run(&self, job: jobs::Model) {
        let id = job.id;
        let lost = Arc::new(AtomicBool::new(false));
        let heartbeat = tokio::spawn(heartbeat(
            self.db.clone(),
            id,
            self.name.clone(),
            self.config.job_lease,
            lost.clone(),
        ));
        let stopping = self.stopping.clone();
        let should_stop = move || {
            if lost.load(Ordering::Acquire) {
                Some(Stop::LeaseLost)
            } else if *stopping.borrow() {
                Some(Stop::ShuttingDown)
            } else {
                None
            }
        };
        let runner = self.runner(&should_stop);
        metrics::gauge!(telemetry::JOBS_RUNNING).increment(1.0);
        let outcome = runner.run(job).await;
        metrics::gauge!(telemetry::JOBS_RUNNING).decrement(1.0);
        heartbeat.abort();
        match outcome {
            Ok(()) => {}
            Err(Stop::LeaseLost) => {
                tracing::warn!(worker = %self.name, job = id, "lost the job's lease: it was cancelled, or another worker resumes it");
            }
            Err(Stop::ShuttingDown) => {
                tracing::info!(worker = %self.name, job = id, "stopping; the job resumes in any process");
                self.release(id, 0).await;
            }
            Err(Stop::Failed(error)) => {
                let error = format!("{error:#}");
                match self.count_failure(id).await {
                    Ok(Some(job)) if job.status == JobStatus::Failed.as_str() => {
                        tracing::error!(worker = %self.name, job = id, %error, failures = job.failures, "job failed; giving up");
                    }
                    Ok(Some(job)) => {
                        tracing::warn!(worker = %self.name, job = id, %error, failures = job.failures, retry_at = job.lease_until, "job run failed; it is tried again");
                    }
                    Ok(None) => {
                        tracing::warn!(worker = %self.name, job = id, %error, "job run failed after it lost the job's lease");
                    }
                    Err(cause) => {
                        tracing::error!(worker = %self.name, job = id, %error, %cause, "job run failed, and its failure cannot be recorded; its lease runs out instead");
                    }
                }
            }
        }
    }

    /// Lets go of a job: any worker may claim it from `until_ms` on.
    async fn release(&self, id: i64, until_ms: i64) {
        if let Err(error) = store::renew(&self.db, id, &self.name, until_ms).await {
            tracing::warn!(job = id, %error, "cannot release the job; its lease runs out instead");
        }
    }

    /// Counts a failed run of a job this worker still holds: the job waits out its
    /// [`retry_delay`] before any worker claims it again, or, at its [`MAX_FAILURES`]th
    /// failure in a row, fails. Answers the job as stored; `None` when this worker holds it
    /// no longer (it was cancelled, or taken over while it failed), and nothing is counted.
    async fn count_failure(&self, id: i64) -> Result<Option<jobs::Model>, DbErr> {
        let txn = db::begin_write(&self.db).await?;
        let Some(mut job) = store::fenced(&txn, id, &self.name).await? else {
            return Ok(None);
        };
        job.failures += 1;
        let given_up = job.failures >= MAX_FAILURES;
        if given_up {
            super::end(&mut job, JobStatus::Failed);
            job.error_message = Some(format!(
                "the job stopped after {MAX_FAILURES} failed runs in a row because of a server error; what was committed before stays"
            ));
        } else {
            let delay = retry_delay(self.config.job_retry_delay, job.failures);
            job.lease_until = Some(Utc::now().timestamp_millis().saturating_add(delay));
            job.version += 1;
        }
        store::save(&txn, &job).await?;
        txn.commit().await?;
        if given_up {
            self.queue.finished(&job);
        }
        Ok(Some(job))
    }
}

/// Renews the lease every third of its length until aborted; marks it lost when another
/// worker holds the job.
async fn heartbeat(
    db: DatabaseConnection,
    id: i64,
    owner: String,
    lease: Duration,
    lost: Arc<AtomicBool>,
) {
    let lease_ms = millis(lease);
    loop {
        tokio::time::sleep(lease / 3).await;
        let until = Utc::now().timestamp_millis() + lease_ms;
        match store::renew(&db, id, &owner, until).await {
            Ok(true) => {}
            Ok(false) => {
                lost.store(true, Ordering::Release);
                return;
            }
            Err(error) => tracing::warn!(job = id, %error, "cannot renew the job's lease"),
        }
    }
}

/// How long a job waits, in milliseconds, after its `failures`th failed run in a row: `first`,
/// doubled for each failure before it.
fn retry_delay(first: Duration, failures: i32) -> i64 {
    let doublings = u32::try_from(failures - 1).unwrap_or(0).min(20);
    millis(first).saturating_mul(1 << doublings)
}

/// A duration in milliseconds, as leases are stored.
fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX / 2)
}
