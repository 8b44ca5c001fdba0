//! Undoing a job: `revertImportJob` queues a `REVERT` job that puts every user the job
//! wrote back as its before-image shows it ([`super::images`]).
//!
//! A revert runs in chunks like an import, over the images of its job in order:
//!
//! 1. **Users.** A user changed again since the job (its `updated_at` is not the one the
//!    job left), or gone, is skipped and reported. Otherwise its row, tags and attributes
//!    are put back; a user the job removed is put back with its id; a user the job created
//!    is marked for removal.
//! 2. **Links.** Approver sets are put back, checked as any new set is (the approver must
//!    exist and be active, no `MANAGER` cycle), unless the user changed meanwhile.
//! 3. **Removals.** Decided first for all of them at once: a user the job created stays
//!    while a user who stays has it as an approver (a link made since, a user the revert
//!    skipped, or another created user who stays), or when it has track completions;
//!    removing it would take those along. Then the others are removed, chunk by chunk.
//!
//! A revert keeps images of what it writes, like any job, so reverting it applies its job
//! again. A revert after one that was cancelled or failed counts the users that one wrote
//! as unchanged since, and does the rest.

mod plan;
mod run;

pub(super) use run::Reverter;

use entity::import_jobs as jobs;
use sea_orm::{ActiveValue::Set, ConnectionTrait, DatabaseConnection};

use super::images::{self};
use super::{
    JobKind, JobOptions, JobStatus, Queue, Submitter, new_job, not_found, refused, store, submitted,
};
use crate::auth::TenantId;
use crate::db;
use crate::error::{AppError, AppResult};

/// `revertImportJob`: queues a `REVERT` job for the finished job `id`, unless [`check`]
/// refuses it.
pub async fn submit(
    db: &DatabaseConnection,
    queue: &Queue,
    by: Submitter<'_>,
    id: i64,
) -> AppResult<jobs::Model> {
    // Checked before waiting for the job's lock: a whole-job transaction holds it to the end.
    let original = store::find(db, by.tenant, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    let total = check(db, by.tenant, &original).await?;
    let txn = db::begin_write(db).await?;
    // Two reverts of one job take turns here; the second sees the first. A job deleted
    // meanwhile (past its retention) has no images left to put back.
    store::find_for_update(&txn, by.tenant, id)
        .await?
        .ok_or_else(|| not_found(id))?;
    not_reverted(&txn, by.tenant, id).await?;
    let options = JobOptions {
        description: Some(format!("revert of job {id}")),
        ..JobOptions::default()
    };
    // Every user has a second step: its approvers, its removal, or nothing to do.
    let mut job = new_job(&by, &options, String::new(), total, total);
    job.kind = Set(JobKind::Revert.as_str().to_owned());
    job.payload_hash = Set(None);
    job.revert_of = Set(Some(id));
    let job = store::insert_job(&txn, job).await?;
    txn.commit().await?;
    submitted(queue);
    Ok(job)
}

/// Whether `job` can be reverted now: the number of users it wrote, or the `CONFLICT` a
/// revert meets. A job not finished yet (`NOT_FINISHED`), a dry run or a job that wrote no
/// user (`NOTHING_TO_REVERT`), and a job already reverted by a revert that was not
/// cancelled and did not fail (`ALREADY_REVERTED`) cannot.
pub async fn check(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    job: &jobs::Model,
) -> AppResult<i32> {
    let status = JobStatus::from_stored(&job.status);
    if !status.is_final() {
        return Err(refused(
            "NOT_FINISHED",
            format!(
                "the job is {}; revert it once it has finished (or cancel it)",
                status.as_str()
            ),
        ));
    }
    if job.dry_run {
        return Err(refused(
            "NOTHING_TO_REVERT",
            "a dry run writes nothing".to_owned(),
        ));
    }
    not_reverted(conn, tenant, job.id).await?;
    let total = images::count(conn, job.id).await?;
    if total == 0 {
        return Err(refused(
            "NOTHING_TO_REVERT",
            "the job changed no user".to_owned(),
        ));
    }
    i32::try_from(total).map_err(AppError::internal)
}

/// `ALREADY_REVERTED` while job `id` has a revert that was not cancelled and did not fail.
async fn not_reverted(conn: &impl ConnectionTrait, tenant: &TenantId, id: i64) -> AppResult<()> {
    match store::latest_revert(conn, tenant, id).await? {
        Some(revert)
            if !matches!(
                JobStatus::from_stored(&revert.status),
                JobStatus::Cancelled | JobStatus::Failed
            ) =>
        {
            Err(refused(
                "ALREADY_REVERTED",
                format!(
                    "job {} reverts this job already ({}); revert job {} to apply this job again",
                    revert.id, revert.status, revert.id
                ),
            ))
        }
        _ => Ok(()),
    }
}
