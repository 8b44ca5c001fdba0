//! A `dryRun` or `atomic` job runs whole in one transaction, so that every row sees the
//! rows before it exactly as a real run would: its chunks are decided and written as a real
//! run's are, each in a savepoint (as a real run's are in their transactions). The
//! transaction is rolled back for a dry run (and for an atomic job with a failed row), and
//! the results are stored after it.

use chrono::Utc;
use entity::import_jobs as jobs;

use super::decide::{decide_chunk_in_savepoint, link_changes, set_links};
use super::prefetch::prepare;
use super::statistics::Statistics;
use super::{Runner, Secrets, Stop, count_rows, forget_secrets, integrity_warnings, tenant_of};
use crate::approvers::{self};
use crate::db;
use crate::error::FieldError;
use crate::jobs::chunks::{self};
use crate::jobs::input::Inputs;
use crate::jobs::{JobStatus, Phase, RowResult, Summary, sync, user_options};
use crate::tracks;
use crate::users::import::RowAction;

impl Runner<'_> {
    /// A dry run or an atomic job: every row in one transaction, both passes, then the
    /// results stored (and, for an atomic job without failures, the writes committed).
    pub(super) async fn run_whole(&self, job: jobs::Model) -> Result<(), Stop> {
        let tenant = tenant_of(&job)?;
        let (txn, mut job) = self.begin(job.id).await?;
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
            // A whole-job run's rows have no digests: none is decided by one.
            let decided =
                decide_chunk_in_savepoint(&txn, &tenant, job.id, &prepared, &options, now)
                    .await?
                    .results;
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
            let (txn, fenced) = self.begin(job.id).await?;
            job = fenced;
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
            if !chunks::write_first_pass(&txn, job.id, first, rows, kept.as_deref()).await? {
                return Err(sea_orm::DbErr::RecordNotUpdated.into());
            }
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
