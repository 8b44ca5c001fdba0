//! Running a `REVERT` job (see [`super`]): users put back, then their approver sets, then
//! the users the job created removed.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use chrono::{DateTime, Utc};
use entity::import_job_images as images_table;
use entity::{import_jobs as jobs, users};
use sea_orm::{ConnectionTrait, TransactionTrait};

use super::plan::{
    Step, approves_for, as_left, changed_since, earlier_images, has_completions, locked_users,
    problem, result, skipped,
};
use crate::approvers::{self, ApproverChange, ApproverSpec};
use crate::auth::TenantId;
use crate::db;
use crate::error::FieldError;
use crate::jobs::chunks::{self, Chunk};
use crate::jobs::images::{self, Image, Taken};
use crate::jobs::process::{Runner, Statistics, Stop, set_links, tenant_of};
use crate::jobs::{Phase, RowResult, Summary};
use crate::tracks;
use crate::users::import::{self, RowAction, UserImportOptions};
use crate::users::lookup::UserKey;
use crate::users::profile::Profile;
use crate::users::store as user_store;

/// A `REVERT` job's run: its passes over its job's images, each chunk in the runner's
/// chunk transactions (fenced by the lease, saved with the job's progress).
pub(in crate::jobs) struct Reverter<'r, 'a> {
    runner: &'r Runner<'a>,
    /// The job being reverted.
    original: i64,
}

impl<'r, 'a> Reverter<'r, 'a> {
    pub(in crate::jobs) fn new(runner: &'r Runner<'a>, original: i64) -> Self {
        Self { runner, original }
    }

    /// Runs the revert from where it stands to its end.
    pub(in crate::jobs) async fn run(&self, mut job: jobs::Model) -> Result<(), Stop> {
        let runner = self.runner;
        let mut statistics = Statistics::new(runner.chunk);
        loop {
            runner.check()?;
            statistics.refresh(runner.db, &job).await?;
            job = match Phase::from_stored(&job.phase) {
                Phase::Users => {
                    let limit = runner.chunk as u64;
                    let batch = images::page(runner.db, self.original, job.cursor, limit).await?;
                    if batch.is_empty() {
                        runner.advance(job, Phase::Links).await?
                    } else {
                        self.restore_users(job, batch).await?
                    }
                }
                Phase::Links => match chunks::next_pending(runner.db, job.id, job.cursor).await? {
                    None => self.settle_removals(job).await?,
                    Some(chunk) => self.restore_links(job, chunk).await?,
                },
                Phase::Removals => {
                    match chunks::next_pending(runner.db, job.id, job.cursor).await? {
                        None => runner.advance(job, Phase::Done).await?,
                        Some(chunk) => self.remove_users(job, chunk).await?,
                    }
                }
                Phase::Done => return runner.finish_chunked(job).await,
            };
        }
    }

    /// The first pass over a chunk of the job's images. A database error (a unique value
    /// that two users of the chunk swap, say) rolls the chunk back; it is then run again
    /// with a savepoint per user, so that the user alone fails.
    async fn restore_users(
        &self,
        job: jobs::Model,
        batch: Vec<images_table::Model>,
    ) -> Result<jobs::Model, Stop> {
        let started = Instant::now();
        let tenant = tenant_of(&job)?;
        let job = match self.write_restores(&job, &tenant, &batch, false).await {
            Err(Stop::Failed(error)) => {
                tracing::warn!(job = job.id, %error, "revert chunk failed; running it again user by user");
                self.write_restores(&job, &tenant, &batch, true).await?
            }
            other => other?,
        };
        self.runner.committed(&job, started);
        Ok(job)
    }

    async fn write_restores(
        &self,
        job: &jobs::Model,
        tenant: &TenantId,
        batch: &[images_table::Model],
        careful: bool,
    ) -> Result<jobs::Model, Stop> {
        let (txn, mut job) = self.runner.begin(job.id).await?;
        db::lock_tenant(&txn, tracks::TAGS_LOCK, tenant).await?;
        let now = Utc::now();
        let ids: Vec<i64> = batch.iter().map(|image| image.user_id).collect();
        let mut found: Vec<users::Model> = locked_users(&txn, tenant, &ids)
            .await?
            .into_values()
            .collect();
        found.sort_unstable_by_key(|user| user.id);
        let current: HashMap<i64, Image> = images::current(&txn, tenant, found)
            .await?
            .into_iter()
            .map(|image| (image.user.id, image))
            .collect();
        let original = self.original;
        let earlier = earlier_images(&txn, tenant, job.id, original, &ids).await?;
        let mut steps: Vec<Step> = batch
            .iter()
            .map(|image| {
                let earlier = earlier.get(&image.user_id).map_or(&[][..], Vec::as_slice);
                Step::plan(image, earlier, current.get(&image.user_id))
            })
            .collect();
        // A user with track completions stays (removing it would remove them); known
        // before the last pass decides which of its approvers stay with it.
        let to_remove: Vec<i64> = batch
            .iter()
            .zip(&steps)
            .filter(|(_, step)| matches!(step, Step::Remove))
            .map(|(image, _)| image.user_id)
            .collect();
        let completions = tracks::users_with_completions(&txn, tenant, &to_remove).await?;
        for (image, step) in batch.iter().zip(steps.iter_mut()) {
            if matches!(step, Step::Remove) && completions.contains(&image.user_id) {
                *step = Step::Skip(has_completions());
            }
        }
        let targets: Vec<Option<Profile>> = steps.iter().map(Step::target).collect();
        let profiles: Vec<&Profile> = targets.iter().flatten().collect();
        let holders = user_store::holders_of_many(&txn, tenant, &profiles, None).await?;

        let mut rows = Vec::with_capacity(batch.len());
        let mut taken = Vec::new();
        let mut restores: Vec<(&users::Model, Profile, &Profile)> = Vec::new();
        let mut reinserts: Vec<(i64, DateTime<Utc>, &Profile)> = Vec::new();
        for ((image, step), target) in batch.iter().zip(&steps).zip(&targets) {
            let mut row = result(image, RowAction::Unchanged, Some(image.user_id));
            if let Some(profile) = target {
                let others: Vec<users::Model> = holders
                    .iter()
                    .filter(|holder| holder.id != image.user_id)
                    .cloned()
                    .collect();
                let clashes = import::clashes(&others, profile, str::to_owned);
                if !clashes.is_empty() {
                    rows.push(skipped(row, clashes));
                    continue;
                }
            }
            match step {
                Step::Skip(reason) => {
                    let gone = reason.code == "GONE";
                    let mut row = skipped(row, vec![reason.clone()]);
                    row.user_id = row.user_id.filter(|_| !gone);
                    rows.push(row);
                    continue;
                }
                Step::Remove => row.links_pending = true,
                Step::Removed => row.user_id = None,
                Step::Reinsert(then) => {
                    let profile = target.as_ref().expect("a reinsert writes");
                    row.action = RowAction::Created;
                    row.links_pending = !then.links().is_empty();
                    reinserts.push((then.user.id, then.user.created_at, profile));
                    taken.push(Taken {
                        user_id: then.user.id,
                        idx: image.idx,
                        lookup_key: image.lookup_key.clone(),
                        before: None,
                        left_at: Some(now),
                    });
                }
                Step::Restore { now: stored, then } => {
                    row.links_pending = then.links() != stored.links();
                    if let Some(profile) = target {
                        row.action = RowAction::Updated;
                        row.blocked = stored.user.active && !profile.active;
                        row.unblocked = !stored.user.active && profile.active;
                        restores.push((&stored.user, stored.profile(), profile));
                        taken.push(Taken::written(image.idx, (**stored).clone(), now));
                    }
                }
            }
            rows.push(row);
        }
        if careful {
            self.write_carefully(&txn, tenant, &mut rows, &restores, &reinserts, now)
                .await?;
        } else {
            let updates: Vec<(&users::Model, &Profile, &Profile)> =
                restores.iter().map(|(u, b, a)| (*u, b, *a)).collect();
            let retagged = user_store::update_many(&txn, tenant, &updates, &[], now)
                .await?
                .and(user_store::reinsert_many(&txn, tenant, &reinserts, now).await?);
            tracks::follow(&txn, tenant, retagged, now).await?;
        }
        let failed: std::collections::HashSet<i64> = rows
            .iter()
            .filter(|row| !row.success)
            .filter_map(|row| row.user_id)
            .collect();
        taken.retain(|one| !failed.contains(&one.user_id));
        images::record(&txn, tenant, job.id, taken).await?;

        let mut summary = Summary::default();
        let settled = rows.iter().filter(|row| !row.links_pending).count();
        rows.iter().for_each(|row| summary.count(row));
        chunks::insert_results(&txn, tenant, job.id, &rows).await?;
        job.cursor = batch.last().map_or(job.cursor, |image| image.idx + 1);
        job.processed += rows.len() as i32;
        job.links_processed += settled as i32;
        summary.add_to(&mut job);
        self.runner.commit(txn, &mut job).await?;
        Ok(job)
    }

    /// Writes each user in a savepoint: a user whose write fails is left as it is and its
    /// row says why.
    async fn write_carefully(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        tenant: &TenantId,
        rows: &mut [RowResult],
        restores: &[(&users::Model, Profile, &Profile)],
        reinserts: &[(i64, DateTime<Utc>, &Profile)],
        now: DateTime<Utc>,
    ) -> Result<(), Stop> {
        let mut failures = Vec::new();
        for (user, before, after) in restores {
            let savepoint = txn.begin().await?;
            let written = async {
                let retagged =
                    user_store::update_many(&savepoint, tenant, &[(user, before, after)], &[], now)
                        .await?;
                tracks::follow(&savepoint, tenant, retagged, now).await
            };
            match written.await {
                Ok(()) => savepoint.commit().await?,
                Err(error) => {
                    savepoint.rollback().await?;
                    failures.push((user.id, error));
                }
            }
        }
        for one in reinserts {
            let savepoint = txn.begin().await?;
            let written = async {
                let retagged =
                    user_store::reinsert_many(&savepoint, tenant, std::slice::from_ref(one), now)
                        .await?;
                tracks::follow(&savepoint, tenant, retagged, now).await
            };
            match written.await {
                Ok(()) => savepoint.commit().await?,
                Err(error) => {
                    savepoint.rollback().await?;
                    failures.push((one.0, error));
                }
            }
        }
        for (user_id, error) in failures {
            let reason = match user_store::unique_violation_field(&error) {
                Some(field) => FieldError::new(
                    field,
                    "TAKEN",
                    format!("{field} is now used by another user"),
                ),
                None => {
                    tracing::warn!(%error, "a revert row failed to write");
                    problem("INTERNAL", "internal error")
                }
            };
            if let Some(row) = rows.iter_mut().find(|row| row.user_id == Some(user_id)) {
                *row = skipped(row.clone(), vec![reason]);
            }
        }
        Ok(())
    }

    /// The second pass over a chunk of rows: their approver sets put back. Rows of users
    /// to remove wait for the last pass.
    async fn restore_links(&self, job: jobs::Model, chunk: Chunk) -> Result<jobs::Model, Stop> {
        let original = self.original;
        let started = Instant::now();
        let tenant = tenant_of(&job)?;
        let batch = chunk.pending();
        let ids: Vec<i64> = batch.iter().filter_map(|row| row.user_id).collect();
        let (txn, job) = self.runner.begin(job.id).await?;
        db::lock_tenant(&txn, approvers::LOCK_KIND, &tenant).await?;
        let stored = images::of_users(&txn, original, &ids).await?;
        // The first pass was another transaction: a user changed since keeps its approvers.
        let found = locked_users(&txn, &tenant, &ids).await?;
        let own = images::of_users(&txn, job.id, &ids).await?;
        let earlier = earlier_images(&txn, &tenant, job.id, original, &ids).await?;
        let mut before = Vec::new();
        let mut held = Vec::new();
        let mut changes = HashMap::new();
        for row in &batch {
            let Some(image) = row.user_id.and_then(|id| stored.get(&id)) else {
                continue;
            };
            let then = match &image.before {
                Some(json) => Image::from_json(json)?,
                // The job created the user: the last pass removes it.
                None => continue,
            };
            if let Some(user) = found.get(&image.user_id) {
                let expected = own.get(&user.id).map_or(image, |own| own);
                let earlier = match own.get(&user.id) {
                    Some(_) => &[][..],
                    None => earlier.get(&user.id).map_or(&[][..], Vec::as_slice),
                };
                if !as_left(user.updated_at, expected, earlier) {
                    let left_at = expected.left_at.unwrap_or(user.updated_at);
                    let mut result = row.clone();
                    result.success = false;
                    result.links_pending = false;
                    result.errors = vec![changed_since(left_at, user.updated_at)];
                    held.push((row.clone(), result));
                    continue;
                }
            }
            let specs = then
                .links()
                .into_iter()
                .enumerate()
                .map(|(i, link)| {
                    let spec = ApproverSpec {
                        approver: UserKey::Id(link.approver_id),
                        label: link.label,
                        can_approve: Some(link.can_approve),
                    };
                    (spec, format!("approvers[{i}]"))
                })
                .collect();
            changes.insert(row.index, Ok(ApproverChange::Replace(specs)));
            before.push(row.clone());
        }
        let options = UserImportOptions {
            replace: true,
            ..UserImportOptions::default()
        };
        let (mut after, mut summary) = set_links(
            &txn,
            &tenant,
            job.id,
            &before,
            &changes,
            &options,
            Utc::now(),
        )
        .await?;
        for (before, result) in held {
            summary.recount(&before, &result);
            after.push(result);
        }
        let cursor = chunk.last_idx + 1;
        self.runner
            .end_later_chunk(txn, job, cursor, (after, summary), "links", started)
            .await
    }

    /// Between the approver pass and the removals, in one transaction with the move to the
    /// last pass: a user the revert would remove stays when a user who stays has it as an
    /// approver (removing it would take the link along), found over every user to remove
    /// at once, as often as needed (a user kept keeps its own approvers).
    async fn settle_removals(&self, job: jobs::Model) -> Result<jobs::Model, Stop> {
        let started = Instant::now();
        let tenant = tenant_of(&job)?;
        let (txn, mut job) = self.runner.begin(job.id).await?;
        db::lock_tenant(&txn, approvers::LOCK_KIND, &tenant).await?;
        let pending: Vec<(i32, i64)> = chunks::all_pending(&txn, job.id)
            .await?
            .into_iter()
            .filter_map(|row| Some((row.index, row.user_id?)))
            .collect();
        let candidates: HashSet<i64> = pending.iter().map(|(_, user)| *user).collect();
        let ids: Vec<i64> = candidates.iter().copied().collect();
        let mut managees: HashMap<i64, Vec<i64>> = HashMap::new();
        for (approver, user) in approvers::store::approvals_of(&txn, &tenant, &ids).await? {
            managees.entry(approver).or_default().push(user);
        }
        let mut kept: HashSet<i64> = HashSet::new();
        let stays =
            |user: &i64, kept: &HashSet<i64>| !candidates.contains(user) || kept.contains(user);
        loop {
            let newly: Vec<i64> = candidates
                .iter()
                .filter(|c| !kept.contains(*c))
                .filter(|c| {
                    managees
                        .get(*c)
                        .is_some_and(|m| m.iter().any(|user| stays(user, &kept)))
                })
                .copied()
                .collect();
            if newly.is_empty() {
                break;
            }
            kept.extend(newly);
        }
        let indexes: Vec<i32> = pending
            .iter()
            .filter(|(_, user)| kept.contains(user))
            .map(|(idx, _)| *idx)
            .collect();
        let staying: Vec<i64> = kept
            .iter()
            .flat_map(|c| managees.get(c).into_iter().flatten())
            .filter(|user| stays(user, &kept))
            .copied()
            .collect();
        let names = user_store::by_ids(&txn, &tenant, &staying).await?;
        let mut summary = Summary::default();
        let mut after = Vec::with_capacity(indexes.len());
        for before in chunks::results_at(&txn, job.id, &indexes).await? {
            let row = &before;
            let user = row.user_id.unwrap_or_default();
            let reason = approves_for(
                managees
                    .get(&user)
                    .into_iter()
                    .flatten()
                    .filter_map(|m| names.get(m))
                    .map(|m| m.external_id.as_str())
                    .collect(),
            );
            let result = skipped(before.clone(), vec![reason]);
            summary.recount(&before, &result);
            after.push(result);
        }
        job.phase = Phase::Removals.as_str().to_owned();
        self.runner
            .end_later_chunk(txn, job, 0, (after, summary), "removals", started)
            .await
    }

    /// Which of `users` this revert removes too: users its job created whose removal is
    /// still to come (in this chunk or a later one).
    async fn leaving(
        &self,
        conn: &impl ConnectionTrait,
        job_id: i64,
        users: &[i64],
    ) -> Result<std::collections::HashSet<i64>, Stop> {
        let created: HashMap<i32, i64> = images::of_users(conn, self.original, users)
            .await?
            .into_values()
            .filter(|image| image.before.is_none())
            .map(|image| (image.idx, image.user_id))
            .collect();
        let indexes: Vec<i32> = created.keys().copied().collect();
        Ok(chunks::results_at(conn, job_id, &indexes)
            .await?
            .into_iter()
            .filter(|row| row.links_pending)
            .filter_map(|row| created.get(&row.index).copied())
            .collect())
    }

    /// The last pass over a chunk of rows: the users the job created are removed, unless
    /// they changed since, approve for someone or have track completions.
    async fn remove_users(&self, job: jobs::Model, chunk: Chunk) -> Result<jobs::Model, Stop> {
        let original = self.original;
        let started = Instant::now();
        let tenant = tenant_of(&job)?;
        let batch = chunk.pending();
        let ids: Vec<i64> = batch.iter().filter_map(|row| row.user_id).collect();
        let (txn, job) = self.runner.begin(job.id).await?;
        // Removing a user removes links and track assignments with it.
        db::lock_tenant(&txn, approvers::LOCK_KIND, &tenant).await?;
        db::lock_tenant(&txn, tracks::TAGS_LOCK, &tenant).await?;
        let stored = images::of_users(&txn, original, &ids).await?;
        let found = locked_users(&txn, &tenant, &ids).await?;
        let approving =
            approvers::store::links_by(&txn, &tenant, approvers::store::Side::Approver, &ids)
                .await?;
        let managee_ids: Vec<i64> = approving.values().flatten().map(|l| l.user_id).collect();
        let leaving = self.leaving(&txn, job.id, &managee_ids).await?;
        let approving: HashMap<i64, Vec<_>> = approving
            .into_iter()
            .map(|(id, links)| {
                let staying = links.into_iter().filter(|l| !leaving.contains(&l.user_id));
                (id, staying.collect::<Vec<_>>())
            })
            .filter(|(_, links)| !links.is_empty())
            .collect();
        let managee_ids: Vec<i64> = approving.values().flatten().map(|l| l.user_id).collect();
        let managees = user_store::by_ids(&txn, &tenant, &managee_ids).await?;
        let completions = tracks::users_with_completions(&txn, &tenant, &ids).await?;

        let mut summary = Summary::default();
        let mut after = Vec::with_capacity(batch.len());
        let mut removed = Vec::new();
        for row in &batch {
            let before = row.clone();
            let user = row.user_id.and_then(|id| found.get(&id));
            let left_at = row
                .user_id
                .and_then(|id| stored.get(&id))
                .and_then(|image| image.left_at);
            let reason = match (user, left_at) {
                (None, _) => Some(problem("GONE", "the user no longer exists")),
                (Some(user), Some(left_at)) if user.updated_at != left_at => {
                    Some(changed_since(left_at, user.updated_at))
                }
                (Some(user), _) => match approving.get(&user.id) {
                    Some(links) => Some(approves_for(
                        links
                            .iter()
                            .filter_map(|l| managees.get(&l.user_id))
                            .map(|u| u.external_id.as_str())
                            .collect(),
                    )),
                    None if completions.contains(&user.id) => Some(has_completions()),
                    None => None,
                },
            };
            let result = match (reason, user) {
                (Some(reason), _) => skipped(before.clone(), vec![reason]),
                (None, Some(user)) => {
                    removed.push(user.clone());
                    RowResult {
                        action: RowAction::Deleted,
                        links_pending: false,
                        ..before.clone()
                    }
                }
                (None, None) => unreachable!("a missing user has a reason"),
            };
            summary.recount(&before, &result);
            after.push(result);
        }
        let ids: Vec<i64> = removed.iter().map(|user| user.id).collect();
        let rows_of: HashMap<i64, i32> = after
            .iter()
            .filter_map(|row| Some((row.user_id?, row.index)))
            .collect();
        let taken = images::current(&txn, &tenant, removed)
            .await?
            .into_iter()
            .map(|image| Taken {
                user_id: image.user.id,
                idx: rows_of[&image.user.id],
                lookup_key: images::key_of(&image.user),
                before: Some(image),
                left_at: None,
            })
            .collect();
        user_store::delete_many(&txn, &tenant, &ids).await?;
        images::record(&txn, &tenant, job.id, taken).await?;
        let cursor = chunk.last_idx + 1;
        self.runner
            .end_later_chunk(txn, job, cursor, (after, summary), "removals", started)
            .await
    }
}
