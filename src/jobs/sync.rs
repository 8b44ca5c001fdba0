//! Sync mode (`deactivateMissing`): at the end of a job, the active users of the sources its
//! rows name that no row of the job names become inactive, unless more than
//! `changeThreshold` percent of a source's active users would (a truncated feed, say).

use chrono::{DateTime, Utc};
use entity::import_jobs as jobs;
use sea_orm::{ConnectionTrait, DbErr};

use super::{images, store};
use crate::auth::TenantId;
use crate::users::store as user_store;
use crate::validate::{Lines, Problem, check_characters};

/// What sync mode does at the end of a job.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// Not a sync job.
    Nothing,
    /// These users (by id) become inactive.
    Deactivate(Vec<i64>),
    /// Too many would: nobody is deactivated, for this reason.
    Refused(String),
}

/// What is wrong with the `(source, externalId)` a sync job keeps of a row, by field
/// (`source`, `externalId`). The job stores and compares its rows' keys before any row is
/// checked, so a key must already be text a row may hold: one line, no NUL.
pub fn key_problems(key: &(String, String)) -> Vec<(&'static str, Problem)> {
    [("source", &key.0), ("externalId", &key.1)]
        .into_iter()
        .filter_map(|(field, text)| {
            check_characters(text, Lines::One)
                .err()
                .map(|problem| (field, problem))
        })
        .collect()
}

/// Decides, as the tenant stands now (the job's rows written), whom sync mode deactivates.
pub async fn plan(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    job: &jobs::Model,
) -> Result<Plan, DbErr> {
    if !job.deactivate_missing {
        return Ok(Plan::Nothing);
    }
    let sources = store::job_sources(conn, job.id).await?;
    if sources.is_empty() {
        return Ok(Plan::Deactivate(Vec::new()));
    }
    let missing = store::users_missing_from(conn, tenant, job.id, &sources).await?;
    if let Some(threshold) = job.change_threshold {
        for (source, active) in store::active_users_by_source(conn, tenant, &sources).await? {
            let leaving = missing.iter().filter(|(_, s)| *s == source).count() as i64;
            if leaving * 100 > i64::from(threshold) * active {
                return Ok(Plan::Refused(format!(
                    "sync mode would deactivate {leaving} of the {active} active users of \
                     source {source:?} ({}%), more than the change threshold of {threshold}%; \
                     nobody was deactivated",
                    leaving * 100 / active.max(1)
                )));
            }
        }
    }
    Ok(Plan::Deactivate(
        missing.into_iter().map(|(id, _)| id).collect(),
    ))
}

/// Makes the planned users inactive, keeping their images for a revert (not in a dry
/// run); they come after the job's rows.
pub async fn deactivate(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    job: &jobs::Model,
    ids: &[i64],
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let mut taken = Vec::new();
    if !job.dry_run {
        let mut users: Vec<_> = user_store::by_ids(conn, tenant, ids)
            .await?
            .into_values()
            .collect();
        users.sort_unstable_by_key(|user| user.id);
        let before = images::current(conn, tenant, users).await?;
        taken.extend(
            before
                .into_iter()
                .zip(job.total..)
                .map(|(image, idx)| images::Taken::written(idx, image, now)),
        );
    }
    user_store::deactivate_many(conn, tenant, ids, now).await?;
    images::record(conn, tenant, job.id, taken).await
}

/// Records whom the job deactivated (or, in a dry run, would have), and counts them.
pub async fn record(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    job: &mut jobs::Model,
    ids: &[i64],
) -> Result<(), DbErr> {
    store::insert_deactivations(conn, tenant, job.id, ids).await?;
    job.deactivated += i32::try_from(ids.len()).unwrap_or(i32::MAX);
    Ok(())
}
