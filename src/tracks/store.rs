//! The SQL of learning tracks: the tracks and their tags, assignments brought in line with
//! the tags, completions, and each user's overall status ranked in one statement
//! (`ranked_users.sql`).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use entity::{learning_track_tags, learning_tracks, track_assignments, track_completions};
use sea_orm::ActiveValue::Set;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseBackend, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, Value,
};

use super::{CHUNK, RawTrack};
use crate::auth::TenantId;
use crate::db;
use crate::users::store as users;

/// Stores a new track.
pub(super) async fn insert(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    name: String,
    raw: &RawTrack,
    now: DateTime<Utc>,
) -> Result<learning_tracks::Model, DbErr> {
    let model = learning_tracks::ActiveModel {
        tenant: Set(tenant.as_str().to_owned()),
        name: Set(name),
        validity_days: Set(raw.validity_days),
        expiring_soon_days: Set(raw.expiring_soon_days),
        due_days: Set(raw.due_days),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    };
    learning_tracks::Entity::insert(model)
        .exec_with_returning(conn)
        .await
}

/// The tenant's track `id`.
pub(super) async fn find(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    id: i64,
) -> Result<Option<learning_tracks::Model>, DbErr> {
    learning_tracks::Entity::find_by_id(id)
        .filter(learning_tracks::Column::Tenant.eq(tenant.as_str()))
        .one(conn)
        .await
}

/// Gives the stored track `existing` the settings of `raw`.
pub(super) async fn update(
    conn: &impl ConnectionTrait,
    existing: learning_tracks::Model,
    name: String,
    raw: &RawTrack,
    now: DateTime<Utc>,
) -> Result<learning_tracks::Model, DbErr> {
    let mut model: learning_tracks::ActiveModel = existing.into();
    model.name = Set(name);
    model.validity_days = Set(raw.validity_days);
    model.expiring_soon_days = Set(raw.expiring_soon_days);
    model.due_days = Set(raw.due_days);
    model.updated_at = Set(now);
    model.update(conn).await
}

/// Makes `tags` the track's tags.
pub(super) async fn replace_tags(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    track_id: i64,
    tags: &[String],
) -> Result<(), DbErr> {
    learning_track_tags::Entity::delete_many()
        .filter(learning_track_tags::Column::TrackId.eq(track_id))
        .exec(conn)
        .await?;
    if !tags.is_empty() {
        learning_track_tags::Entity::insert_many(tags.iter().map(|tag| {
            learning_track_tags::ActiveModel {
                track_id: Set(track_id),
                tag: Set(tag.clone()),
                tenant: Set(tenant.as_str().to_owned()),
            }
        }))
        .exec(conn)
        .await?;
    }
    Ok(())
}

/// Every track of the tenant, by name.
pub(super) async fn all(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
) -> Result<Vec<learning_tracks::Model>, DbErr> {
    learning_tracks::Entity::find()
        .filter(learning_tracks::Column::Tenant.eq(tenant.as_str()))
        .order_by_asc(learning_tracks::Column::Name)
        .all(conn)
        .await
}

/// The tags of every track of the tenant, each track's sorted.
pub(super) async fn tags_of(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
) -> Result<HashMap<i64, Vec<String>>, DbErr> {
    let mut tags: HashMap<i64, Vec<String>> = HashMap::new();
    for row in learning_track_tags::Entity::find()
        .filter(learning_track_tags::Column::Tenant.eq(tenant.as_str()))
        .all(conn)
        .await?
    {
        tags.entry(row.track_id).or_default().push(row.tag);
    }
    tags.values_mut().for_each(|t| t.sort());
    Ok(tags)
}

/// Whose assignments to bring in line with the tags.
pub enum Scope<'a> {
    Users(&'a [i64]),
    Track(i64),
}

/// Adds the assignments a shared tag calls for (assigned `now_ms`) and removes those no
/// tag supports any more: two statements per chunk, whatever the number of users.
pub async fn sync(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    scope: Scope<'_>,
    now_ms: i64,
) -> Result<(), DbErr> {
    let backend = conn.get_database_backend();
    let chunks: Vec<(String, String, Vec<Value>)> = match scope {
        Scope::Track(id) => vec![(
            "lt.track_id = ?".to_owned(),
            "track_id = ?".to_owned(),
            vec![id.into()],
        )],
        Scope::Users(ids) => ids
            .chunks(CHUNK)
            .map(|chunk| {
                let marks = vec!["?"; chunk.len()].join(", ");
                (
                    format!("ut.user_id IN ({marks})"),
                    format!("user_id IN ({marks})"),
                    chunk.iter().map(|id| (*id).into()).collect(),
                )
            })
            .collect(),
    };
    for (insert_scope, delete_scope, ids) in chunks {
        let mut values: Vec<Value> = vec![now_ms.into(), tenant.as_str().into()];
        values.extend(ids.iter().cloned());
        conn.execute_raw(db::statement(
            backend,
            &format!(
                "INSERT INTO track_assignments (user_id, track_id, tenant, assigned_at_ms) \
                 SELECT DISTINCT ut.user_id, lt.track_id, ut.tenant, ? \
                 FROM user_tags ut \
                 JOIN learning_track_tags lt ON lt.tenant = ut.tenant AND lt.tag = ut.tag \
                 WHERE ut.tenant = ? AND {insert_scope} \
                 ON CONFLICT (user_id, track_id) DO NOTHING"
            ),
            values,
        ))
        .await?;
        let mut values: Vec<Value> = vec![tenant.as_str().into()];
        values.extend(ids);
        conn.execute_raw(db::statement(
            backend,
            &format!(
                "DELETE FROM track_assignments WHERE tenant = ? AND {delete_scope} \
                 AND NOT EXISTS (SELECT 1 FROM user_tags ut \
                 JOIN learning_track_tags lt ON lt.tenant = ut.tenant AND lt.tag = ut.tag \
                 WHERE ut.user_id = track_assignments.user_id \
                 AND lt.track_id = track_assignments.track_id)"
            ),
            values,
        ))
        .await?;
    }
    Ok(())
}

/// Which of `ids` have completions recorded.
pub async fn users_with_completions(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    ids: &[i64],
) -> Result<HashSet<i64>, DbErr> {
    let mut found = HashSet::new();
    for chunk in ids.chunks(users::IN_CHUNK) {
        let rows: Vec<i64> = track_completions::Entity::find()
            .select_only()
            .column(track_completions::Column::UserId)
            .distinct()
            .filter(track_completions::Column::Tenant.eq(tenant.as_str()))
            .filter(track_completions::Column::UserId.is_in(chunk.iter().copied()))
            .into_tuple()
            .all(conn)
            .await?;
        found.extend(rows);
    }
    Ok(found)
}

/// The `(user, track)` pairs of the assignments of `user_ids`.
pub(super) async fn assigned(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    user_ids: &[i64],
) -> Result<HashSet<(i64, i64)>, DbErr> {
    let mut assigned = HashSet::new();
    for chunk in user_ids.chunks(CHUNK) {
        for row in track_assignments::Entity::find()
            .filter(track_assignments::Column::Tenant.eq(tenant.as_str()))
            .filter(track_assignments::Column::UserId.is_in(chunk.iter().copied()))
            .all(conn)
            .await?
        {
            assigned.insert((row.user_id, row.track_id));
        }
    }
    Ok(assigned)
}

/// Stores completions; one already stored stays as it is.
pub(super) async fn insert_completions(
    conn: &impl ConnectionTrait,
    rows: Vec<track_completions::ActiveModel>,
) -> Result<(), DbErr> {
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<_> = rows.by_ref().take(CHUNK).collect();
        track_completions::Entity::insert_many(chunk)
            .on_conflict_do_nothing()
            .exec(conn)
            .await?;
    }
    Ok(())
}

/// Every track of the tenant, by id.
pub(super) async fn by_id(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
) -> Result<HashMap<i64, learning_tracks::Model>, DbErr> {
    Ok(learning_tracks::Entity::find()
        .filter(learning_tracks::Column::Tenant.eq(tenant.as_str()))
        .all(conn)
        .await?
        .into_iter()
        .map(|t| (t.id, t))
        .collect())
}

/// The newest completion of each `(user, track)` of `user_ids` made by `as_of_ms`.
pub(super) async fn newest_completions(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    user_ids: &[i64],
    as_of_ms: i64,
) -> Result<HashMap<(i64, i64), i64>, DbErr> {
    let mut done: HashMap<(i64, i64), i64> = HashMap::new();
    for row in track_completions::Entity::find()
        .filter(track_completions::Column::Tenant.eq(tenant.as_str()))
        .filter(track_completions::Column::UserId.is_in(user_ids.iter().copied()))
        .filter(track_completions::Column::CompletedAtMs.lte(as_of_ms))
        .all(conn)
        .await?
    {
        let newest = done
            .entry((row.user_id, row.track_id))
            .or_insert(row.completed_at_ms);
        *newest = (*newest).max(row.completed_at_ms);
    }
    Ok(done)
}

/// The assignments of `user_ids` made by `as_of_ms`.
pub(super) async fn assignments(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    user_ids: &[i64],
    as_of_ms: i64,
) -> Result<Vec<track_assignments::Model>, DbErr> {
    track_assignments::Entity::find()
        .filter(track_assignments::Column::Tenant.eq(tenant.as_str()))
        .filter(track_assignments::Column::UserId.is_in(user_ids.iter().copied()))
        .filter(track_assignments::Column::AssignedAtMs.lte(as_of_ms))
        .all(conn)
        .await
}

/// Each user of the tenant with the rank of their overall status as of an instant, as SQL
/// with its values, in the order of its `?`.
fn ranked_users(tenant: &TenantId, as_of_ms: i64) -> (&'static str, Vec<Value>) {
    let values = vec![
        as_of_ms.into(),
        as_of_ms.into(),
        as_of_ms.into(),
        as_of_ms.into(),
        tenant.as_str().into(),
        as_of_ms.into(),
        tenant.as_str().into(),
    ];
    (include_str!("ranked_users.sql"), values)
}

/// How many users of the tenant have each rank as of `as_of_ms` (`None`: no track).
pub(super) async fn rank_counts(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    as_of_ms: i64,
) -> Result<Vec<(Option<i64>, i64)>, DbErr> {
    let (ranked, values) = ranked_users(tenant, as_of_ms);
    let sql = format!("SELECT s.status_rank, COUNT(*) FROM ({ranked}) s GROUP BY s.status_rank");
    let mut counts = Vec::new();
    for row in conn
        .query_all_raw(db::statement(conn.get_database_backend(), &sql, values))
        .await?
    {
        counts.push((row.try_get_by_index(0)?, row.try_get_by_index(1)?));
    }
    Ok(counts)
}

/// A condition on `users.id`: the user's rank as of `as_of_ms` is `rank` (`None`: no track).
pub(super) fn rank_condition(
    backend: DatabaseBackend,
    tenant: &TenantId,
    rank: Option<i64>,
    as_of_ms: i64,
) -> sea_orm::sea_query::SimpleExpr {
    let (ranked, mut values) = ranked_users(tenant, as_of_ms);
    let test = match rank {
        Some(rank) => {
            values.push(rank.into());
            "r.status_rank = ?"
        }
        None => "r.status_rank IS NULL",
    };
    let sql = format!("\"users\".\"id\" IN (SELECT r.user_id FROM ({ranked}) r WHERE {test})");
    // sea-query numbers custom placeholders itself on PostgreSQL, as `$1…` of this
    // expression's own values.
    let sql = db::statement(backend, &sql, Vec::new()).sql;
    sea_orm::sea_query::Expr::cust_with_values(sql, values)
}
