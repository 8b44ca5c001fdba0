//! Reading and writing jobs (their rows and results are [`super::chunks`]). Every read that a client
//! can cause filters by tenant; the worker's reads go by job id, which it got by claiming.

use chrono::{DateTime, Utc};
use entity::{import_job_keys as keys, import_jobs as jobs};
use sea_orm::sea_query::{Expr, ExprTrait, LockBehavior, LockType};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseBackend, DbErr, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};

use super::JobStatus;
use crate::auth::TenantId;
use crate::db;

pub async fn find(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    id: i64,
) -> Result<Option<jobs::Model>, DbErr> {
    jobs::Entity::find_by_id(id)
        .filter(jobs::Column::Tenant.eq(tenant.as_str()))
        .one(conn)
        .await
}

/// Like [`find`], and on PostgreSQL locks the job's row until the transaction ends: a
/// chunk's transaction locks it too, from the moment it adds its progress to its commit,
/// so this waits for such a chunk (and a chunk that comes after it finds the job as this
/// leaves it).
pub async fn find_for_update(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    id: i64,
) -> Result<Option<jobs::Model>, DbErr> {
    one_locked(
        conn,
        jobs::Entity::find_by_id(id).filter(jobs::Column::Tenant.eq(tenant.as_str())),
    )
    .await
}

/// The job `query` finds, its row locked `FOR UPDATE` on PostgreSQL (SQLite's write
/// transaction already holds the whole database).
async fn one_locked(
    conn: &impl ConnectionTrait,
    query: sea_orm::Select<jobs::Entity>,
) -> Result<Option<jobs::Model>, DbErr> {
    if conn.get_database_backend() == DatabaseBackend::Postgres {
        query.lock_exclusive().one(conn).await
    } else {
        query.one(conn).await
    }
}

/// Finished jobs that finished before `before`, oldest first (see [`expired_condition`]).
pub async fn expired(
    conn: &impl ConnectionTrait,
    before: DateTime<Utc>,
) -> Result<Vec<i64>, DbErr> {
    jobs::Entity::find()
        .select_only()
        .column(jobs::Column::Id)
        .filter(expired_condition(before))
        .order_by_asc(jobs::Column::FinishedAt)
        .into_tuple()
        .all(conn)
        .await
}

/// Deletes the job `id` if it is still [`expired`], with its rows, results, before-images
/// and the record of whom it deactivated; answers whether it did (another process may
/// have been first, or a revert of it submitted since).
///
/// On PostgreSQL the job's row is locked first, as the submission of a revert or a retry
/// of it locks it: the delete then starts after any such submission has committed, and
/// sees its revert (a statement sees what was committed when it started, so a delete that
/// waited on the row itself would not see the revert it waited for).
pub async fn delete_finished(
    conn: &impl ConnectionTrait,
    id: i64,
    before: DateTime<Utc>,
) -> Result<bool, DbErr> {
    use entity::import_job_deactivations as deactivations;
    if one_locked(conn, jobs::Entity::find_by_id(id))
        .await?
        .is_none()
    {
        return Ok(false);
    }
    // Its chunks, sync keys, images and deactivations go with it (their foreign keys cascade).
    let deleted = jobs::Entity::delete_many()
        .filter(jobs::Column::Id.eq(id))
        .filter(expired_condition(before))
        .exec(conn)
        .await?;
    if deleted.rows_affected == 0 {
        return Ok(false);
    }
    deactivations::Entity::delete_many()
        .filter(deactivations::Column::JobId.eq(id))
        .exec(conn)
        .await?;
    Ok(true)
}

/// A job finished before `before` and without a revert still to run (which reads its
/// before-images).
fn expired_condition(before: DateTime<Utc>) -> Condition {
    let unfinished = [JobStatus::Queued.as_str(), JobStatus::Running.as_str()];
    let reverting = sea_orm::sea_query::Query::select()
        .column(jobs::Column::RevertOf)
        .from(jobs::Entity)
        .and_where(jobs::Column::RevertOf.is_not_null())
        .and_where(jobs::Column::Status.is_in(unfinished))
        .to_owned();
    Condition::all()
        .add(jobs::Column::Status.is_not_in(unfinished))
        .add(jobs::Column::FinishedAt.lt(before))
        .add(jobs::Column::Id.not_in_subquery(reverting))
}

pub async fn find_by_key(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    key: &str,
) -> Result<Option<jobs::Model>, DbErr> {
    jobs::Entity::find()
        .filter(jobs::Column::Tenant.eq(tenant.as_str()))
        .filter(jobs::Column::IdempotencyKey.eq(key))
        .one(conn)
        .await
}

/// The job, if `owner` still holds its lease; on PostgreSQL the row stays locked until the
/// transaction ends, so nobody can take the job over (or add a chunk's progress) while the
/// owner writes a chunk of a later pass or moves the job on.
pub async fn fenced(
    conn: &impl ConnectionTrait,
    id: i64,
    owner: &str,
) -> Result<Option<jobs::Model>, DbErr> {
    one_locked(
        conn,
        jobs::Entity::find_by_id(id).filter(jobs::Column::LeaseOwner.eq(owner)),
    )
    .await
}

/// The oldest job that is queued, or running under a lease that has expired (its worker
/// died). On PostgreSQL, jobs another process is claiming right now are skipped.
pub async fn next_claimable(
    conn: &impl ConnectionTrait,
    now_ms: i64,
) -> Result<Option<jobs::Model>, DbErr> {
    let query = jobs::Entity::find()
        .filter(
            Condition::any()
                .add(jobs::Column::Status.eq(JobStatus::Queued.as_str()))
                .add(
                    jobs::Column::Status
                        .eq(JobStatus::Running.as_str())
                        .and(jobs::Column::LeaseUntil.lt(now_ms)),
                ),
        )
        .order_by_asc(jobs::Column::Id)
        .limit(1);
    if conn.get_database_backend() == DatabaseBackend::Postgres {
        query
            .lock_with_behavior(LockType::Update, LockBehavior::SkipLocked)
            .one(conn)
            .await
    } else {
        query.one(conn).await
    }
}

/// Running jobs whose first pass other workers may help with (see
/// [`super::process::Runner::help`]): chunked imports, oldest first.
/// A job whose last run failed is left to its owner, until a chunk of it commits again.
pub async fn helpable(conn: &impl ConnectionTrait) -> Result<Vec<jobs::Model>, DbErr> {
    jobs::Entity::find()
        .filter(jobs::Column::Status.eq(JobStatus::Running.as_str()))
        .filter(jobs::Column::Failures.eq(0))
        .filter(jobs::Column::Phase.eq(super::Phase::Users.as_str()))
        .filter(jobs::Column::DryRun.eq(false))
        .filter(jobs::Column::Atomic.eq(false))
        .filter(jobs::Column::Kind.ne(super::JobKind::Revert.as_str()))
        .order_by_asc(jobs::Column::Id)
        .limit(16)
        .all(conn)
        .await
}

/// Renews the lease of a job `owner` holds; false when it holds it no longer.
pub async fn renew(
    conn: &impl ConnectionTrait,
    id: i64,
    owner: &str,
    until_ms: i64,
) -> Result<bool, DbErr> {
    let result = jobs::Entity::update_many()
        .col_expr(jobs::Column::LeaseUntil, Expr::value(until_ms))
        .filter(jobs::Column::Id.eq(id))
        .filter(jobs::Column::LeaseOwner.eq(owner))
        .filter(jobs::Column::Status.eq(JobStatus::Running.as_str()))
        .exec(conn)
        .await?;
    Ok(result.rows_affected > 0)
}

/// Adds a chunk's progress to its job, if the job still runs: `rows` more processed, of
/// which `settled` are done with their approvers too, and the chunk's `summary`, with the
/// job's next version. Several workers add theirs at once, each in its chunk's
/// transaction, so the job's row is locked only from this statement to the commit. A chunk
/// committed is a run that works: the job's failures in a row start again from none.
/// Answers the job as it then stands; `None`, adding nothing, when it no longer runs (it
/// was cancelled).
pub async fn add_progress(
    conn: &impl ConnectionTrait,
    id: i64,
    rows: i32,
    settled: i32,
    summary: &super::Summary,
) -> Result<Option<jobs::Model>, DbErr> {
    use jobs::Column as C;
    let plus = |column: C, n: i32| (column, Expr::col(column).add(n));
    let mut update = jobs::Entity::update_many();
    for (column, value) in [
        plus(C::Processed, rows),
        plus(C::LinksProcessed, settled),
        plus(C::Created, summary.created),
        plus(C::Updated, summary.updated),
        plus(C::Unchanged, summary.unchanged),
        plus(C::Skipped, summary.skipped),
        plus(C::Failed, summary.failed),
        plus(C::Blocked, summary.blocked),
        plus(C::Unblocked, summary.unblocked),
        plus(C::Deactivated, summary.deactivated),
        plus(C::Deleted, summary.deleted),
        plus(C::Version, 1),
    ] {
        update = update.col_expr(column, value);
    }
    let done = update
        .col_expr(C::Failures, Expr::value(0))
        .filter(C::Id.eq(id))
        .filter(C::Status.eq(JobStatus::Running.as_str()))
        .exec(conn)
        .await?;
    if done.rows_affected == 0 {
        return Ok(None);
    }
    jobs::Entity::find_by_id(id).one(conn).await
}

/// Stores the job's new state; `model.version` must already be the next one.
pub async fn save(conn: &impl ConnectionTrait, model: &jobs::Model) -> Result<(), DbErr> {
    let active: jobs::ActiveModel = model.clone().into();
    // Every column is written: the model was read in this transaction, under the fence.
    jobs::Entity::update(reset_all(active)).exec(conn).await?;
    Ok(())
}

fn reset_all(mut active: jobs::ActiveModel) -> jobs::ActiveModel {
    use sea_orm::{ActiveModelTrait, Iterable};
    for column in jobs::Column::iter() {
        if !matches!(column, jobs::Column::Id) {
            active.reset(column);
        }
    }
    active
}

pub async fn insert_job(
    conn: &impl ConnectionTrait,
    job: jobs::ActiveModel,
) -> Result<jobs::Model, DbErr> {
    jobs::Entity::insert(job).exec_with_returning(conn).await
}

/// The sources of the users a sync job's rows name.
pub async fn job_sources(conn: &impl ConnectionTrait, job_id: i64) -> Result<Vec<String>, DbErr> {
    keys::Entity::find()
        .select_only()
        .column(keys::Column::Source)
        .distinct()
        .filter(keys::Column::JobId.eq(job_id))
        .order_by_asc(keys::Column::Source)
        .into_tuple()
        .all(conn)
        .await
}

/// Active users of the tenant, of one of `sources`, that no row of the job names:
/// `(id, source)`, by id.
pub async fn users_missing_from(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    job_id: i64,
    sources: &[String],
) -> Result<Vec<(i64, String)>, DbErr> {
    use entity::users;
    use sea_orm::sea_query::Query;

    let named = Query::select()
        .expr(Expr::val(1))
        .from(keys::Entity)
        .and_where(Expr::col((keys::Entity, keys::Column::JobId)).eq(job_id))
        .and_where(
            Expr::col((keys::Entity, keys::Column::Source))
                .equals((users::Entity, users::Column::Source)),
        )
        .and_where(
            Expr::col((keys::Entity, keys::Column::ExternalId))
                .equals((users::Entity, users::Column::ExternalId)),
        )
        .to_owned();
    users::Entity::find()
        .select_only()
        .column(users::Column::Id)
        .column(users::Column::Source)
        .filter(users::Column::Tenant.eq(tenant.as_str()))
        .filter(users::Column::Active.eq(true))
        .filter(users::Column::Source.is_in(sources.iter().cloned()))
        .filter(Expr::exists(named).not())
        .order_by_asc(users::Column::Id)
        .into_tuple()
        .all(conn)
        .await
}

/// How many active users each of `sources` has in the tenant.
pub async fn active_users_by_source(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    sources: &[String],
) -> Result<Vec<(String, i64)>, DbErr> {
    use entity::users;

    users::Entity::find()
        .select_only()
        .column(users::Column::Source)
        .column_as(users::Column::Id.count(), "n")
        .filter(users::Column::Tenant.eq(tenant.as_str()))
        .filter(users::Column::Active.eq(true))
        .filter(users::Column::Source.is_in(sources.iter().cloned()))
        .group_by(users::Column::Source)
        .into_tuple()
        .all(conn)
        .await
}

/// Records the users a sync job deactivated (or, in a dry run, would have).
pub async fn insert_deactivations(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    job_id: i64,
    user_ids: &[i64],
) -> Result<(), DbErr> {
    use entity::import_job_deactivations as deactivations;

    let rows = user_ids
        .iter()
        .map(|&user_id| deactivations::ActiveModel {
            job_id: Set(job_id),
            user_id: Set(user_id),
            tenant: Set(tenant.as_str().to_owned()),
        })
        .collect();
    db::insert_in_chunks(conn, rows).await
}

/// A page of the users a sync job deactivated, by id after `after`.
pub async fn deactivated_page(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    job_id: i64,
    after: Option<i64>,
    limit: u64,
) -> Result<Vec<i64>, DbErr> {
    use entity::import_job_deactivations as deactivations;

    let mut query = deactivations::Entity::find()
        .select_only()
        .column(deactivations::Column::UserId)
        .filter(deactivations::Column::Tenant.eq(tenant.as_str()))
        .filter(deactivations::Column::JobId.eq(job_id));
    if let Some(after) = after {
        query = query.filter(deactivations::Column::UserId.gt(after));
    }
    query
        .order_by_asc(deactivations::Column::UserId)
        .limit(limit)
        .into_tuple()
        .all(conn)
        .await
}

/// A page of the tenant's jobs, newest first, before job `before`.
pub async fn jobs_page(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    statuses: &[JobStatus],
    before: Option<i64>,
    limit: u64,
) -> Result<Vec<jobs::Model>, DbErr> {
    let mut query = jobs::Entity::find().filter(jobs_condition(tenant, statuses));
    if let Some(before) = before {
        query = query.filter(jobs::Column::Id.lt(before));
    }
    query
        .order_by_desc(jobs::Column::Id)
        .limit(limit)
        .all(conn)
        .await
}

pub async fn count_jobs(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    statuses: &[JobStatus],
) -> Result<u64, DbErr> {
    jobs::Entity::find()
        .filter(jobs_condition(tenant, statuses))
        .count(conn)
        .await
}

fn jobs_condition(tenant: &TenantId, statuses: &[JobStatus]) -> Condition {
    let mut condition = Condition::all().add(jobs::Column::Tenant.eq(tenant.as_str()));
    if !statuses.is_empty() {
        condition = condition.add(jobs::Column::Status.is_in(statuses.iter().map(|s| s.as_str())));
    }
    condition
}

/// The latest job that reverts job `id`.
pub async fn latest_revert(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    id: i64,
) -> Result<Option<jobs::Model>, DbErr> {
    jobs::Entity::find()
        .filter(jobs::Column::Tenant.eq(tenant.as_str()))
        .filter(jobs::Column::RevertOf.eq(id))
        .order_by_desc(jobs::Column::Id)
        .one(conn)
        .await
}

/// The jobs that reverted job `original` before job `before`, oldest first.
pub async fn reverts_before(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    original: i64,
    before: i64,
) -> Result<Vec<i64>, DbErr> {
    jobs::Entity::find()
        .select_only()
        .column(jobs::Column::Id)
        .filter(jobs::Column::Tenant.eq(tenant.as_str()))
        .filter(jobs::Column::RevertOf.eq(original))
        .filter(jobs::Column::Id.lt(before))
        .order_by_asc(jobs::Column::Id)
        .into_tuple()
        .all(conn)
        .await
}
