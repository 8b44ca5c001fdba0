//! Learning tracks (seed 003): tracks assigned by tags, completions, and each user's
//! compliance as of a moment. No GraphQL here but in `graphql`.
//!
//! Per user and track, as of an instant `T` (instants are epoch milliseconds):
//! - only assignments made at or before `T` count, and the newest completion at or before `T`;
//! - completed, with `validityDays`: `NOT_COMPLIANT` from `completedAt + validityDays`
//!   (that instant included), else `EXPIRING_SOON` from `expiresAt - expiringSoonDays`,
//!   else `COMPLETED`; without `validityDays` a completion never expires;
//! - not completed: `NOT_COMPLIANT` from `assignedAt + dueDays` (included), else `UNCOMPLETED`.
//!
//! A user's status is the first any of their tracks has in the order `NOT_COMPLIANT`,
//! `EXPIRING_SOON`, `UNCOMPLETED`, `COMPLETED`; with no track, `NO_TRACKS_ASSIGNED`. The same
//! rules run in Rust ([`status`]) and, for the tenant-wide summary, in one SQL aggregate
//! ([`summary`]); a test checks that they agree.

pub mod graphql;

use std::collections::HashMap;

use chrono::Utc;
use entity::{learning_track_tags, learning_tracks, track_assignments, track_completions};
use sea_orm::ActiveValue::Set;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseConnection, DbErr,
    EntityTrait, QueryFilter, QueryOrder, QuerySelect, Value,
};

use crate::auth::TenantId;
use crate::db;
use crate::error::{AppError, AppResult, FieldError};
use crate::users::domain::{Problem, Problems, Tags, required_text};
use crate::users::lookup::UserKey;
use crate::users::store as users;

pub const DAY_MS: i64 = 86_400_000;

/// The advisory-lock namespace of tag changes (of users or tracks). [`sync`] reads both
/// sides' tags, so writers of either take this lock first, before any row lock: otherwise
/// on PostgreSQL each could sync against the other's old tags.
pub const TAGS_LOCK: &str = "tags";
const MAX_DAYS: i32 = 36_500;
const CHUNK: usize = 500;

/// Compliance of one user with one track, in precedence order (first is worst).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    NotCompliant = 1,
    ExpiringSoon = 2,
    Uncompleted = 3,
    Completed = 4,
}

/// A user's overall compliance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Overall {
    Track(Status),
    NoTracksAssigned,
}

/// A track as sent.
#[derive(Debug, Clone)]
pub struct RawTrack {
    pub name: String,
    pub tags: Vec<String>,
    pub validity_days: Option<i32>,
    pub expiring_soon_days: i32,
    pub due_days: Option<i32>,
}

/// A stored track with its tags (sorted).
#[derive(Debug, Clone)]
pub struct Track {
    pub model: learning_tracks::Model,
    pub tags: Vec<String>,
}

/// One track of one user as of an instant.
#[derive(Debug, Clone)]
pub struct Progress {
    pub track: learning_tracks::Model,
    pub track_tags: Vec<String>,
    pub status: Status,
    pub assigned_at_ms: i64,
    pub completed_at_ms: Option<i64>,
    pub expires_at_ms: Option<i64>,
}

/// The status of one track by the rules above.
pub fn status(
    track: &learning_tracks::Model,
    assigned_at_ms: i64,
    completed_at_ms: Option<i64>,
    as_of_ms: i64,
) -> Status {
    match completed_at_ms {
        Some(done) => match track.validity_days {
            Some(validity) => {
                let expires = done + i64::from(validity) * DAY_MS;
                if as_of_ms >= expires {
                    Status::NotCompliant
                } else if as_of_ms >= expires - i64::from(track.expiring_soon_days) * DAY_MS {
                    Status::ExpiringSoon
                } else {
                    Status::Completed
                }
            }
            None => Status::Completed,
        },
        None => match track.due_days {
            Some(due) if as_of_ms >= assigned_at_ms + i64::from(due) * DAY_MS => {
                Status::NotCompliant
            }
            _ => Status::Uncompleted,
        },
    }
}

pub fn overall(progress: &[Progress]) -> Overall {
    progress
        .iter()
        .map(|p| p.status)
        .min()
        .map_or(Overall::NoTracksAssigned, Overall::Track)
}

fn parse(raw: RawTrack) -> AppResult<(String, Vec<String>, RawTrack)> {
    let mut problems = Problems::default();
    let name = problems.check("input.name", required_text(&raw.name, 200));
    let tags = Tags::check(&raw.tags, "input.tags", &mut problems).unwrap_or_default();
    let days = |problems: &mut Problems, field: &str, value: Option<i32>, min: i32| {
        if let Some(days) = value
            && !(min..=MAX_DAYS).contains(&days)
        {
            problems.add(
                format!("input.{field}"),
                Problem::new(
                    "OUT_OF_RANGE",
                    format!("must be between {min} and {MAX_DAYS}"),
                ),
            );
        }
    };
    days(&mut problems, "validityDays", raw.validity_days, 1);
    days(
        &mut problems,
        "expiringSoonDays",
        Some(raw.expiring_soon_days),
        0,
    );
    days(&mut problems, "dueDays", raw.due_days, 0);
    problems.finish()?;
    Ok((name.unwrap_or_default(), tags, raw))
}

/// `createLearningTrack`; users with a matching tag are assigned it now.
pub async fn create(db: &DatabaseConnection, tenant: &TenantId, raw: RawTrack) -> AppResult<Track> {
    let (name, tags, raw) = parse(raw)?;
    let now = Utc::now();
    let txn = db::begin_write(db).await?;
    db::lock_tenant(&txn, TAGS_LOCK, tenant).await?;
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
    let model = learning_tracks::Entity::insert(model)
        .exec_with_returning(&txn)
        .await
        .map_err(name_taken)?;
    replace_tags(&txn, tenant, model.id, &tags).await?;
    sync(&txn, tenant, Scope::Track(model.id), now.timestamp_millis()).await?;
    txn.commit().await?;
    Ok(Track { model, tags })
}

/// `updateLearningTrack`: replaces the track's settings and tags; assignments follow.
pub async fn update(
    db: &DatabaseConnection,
    tenant: &TenantId,
    id: i64,
    raw: RawTrack,
) -> AppResult<Track> {
    let (name, tags, raw) = parse(raw)?;
    let now = Utc::now();
    let txn = db::begin_write(db).await?;
    db::lock_tenant(&txn, TAGS_LOCK, tenant).await?;
    let Some(existing) = learning_tracks::Entity::find_by_id(id)
        .filter(learning_tracks::Column::Tenant.eq(tenant.as_str()))
        .one(&txn)
        .await?
    else {
        return Err(AppError::NotFound("no such learning track".to_owned()));
    };
    let mut model: learning_tracks::ActiveModel = existing.into();
    model.name = Set(name);
    model.validity_days = Set(raw.validity_days);
    model.expiring_soon_days = Set(raw.expiring_soon_days);
    model.due_days = Set(raw.due_days);
    model.updated_at = Set(now);
    let model = model.update(&txn).await.map_err(name_taken)?;
    replace_tags(&txn, tenant, id, &tags).await?;
    sync(&txn, tenant, Scope::Track(id), now.timestamp_millis()).await?;
    txn.commit().await?;
    Ok(Track { model, tags })
}

fn name_taken(error: DbErr) -> AppError {
    if crate::db::is_unique_violation(&error) {
        return AppError::conflict(vec![FieldError::new(
            "input.name",
            "TAKEN",
            "another learning track has this name",
        )]);
    }
    error.into()
}

async fn replace_tags(
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
pub async fn list(conn: &impl ConnectionTrait, tenant: &TenantId) -> AppResult<Vec<Track>> {
    let models = learning_tracks::Entity::find()
        .filter(learning_tracks::Column::Tenant.eq(tenant.as_str()))
        .order_by_asc(learning_tracks::Column::Name)
        .all(conn)
        .await?;
    let mut tags = tags_of(conn, tenant).await?;
    Ok(models
        .into_iter()
        .map(|model| Track {
            tags: tags.remove(&model.id).unwrap_or_default(),
            model,
        })
        .collect())
}

async fn tags_of(
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

/// One completion as sent.
#[derive(Debug, Clone)]
pub struct CompletionEntry {
    pub user: Result<UserKey, Vec<FieldError>>,
    pub lookup_key: String,
    pub track: Option<i64>,
    pub completed_at_ms: i64,
}

/// What became of one completion.
#[derive(Debug, Clone)]
pub struct CompletionResult {
    pub lookup_key: String,
    pub track: Option<i64>,
    pub errors: Vec<FieldError>,
}

/// Which of `ids` have completions recorded.
pub async fn users_with_completions(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    ids: &[i64],
) -> Result<std::collections::HashSet<i64>, DbErr> {
    let mut found = std::collections::HashSet::new();
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

/// `recordTrackCompletions`: each entry is recorded or refused alone.
pub async fn record_completions(
    db: &DatabaseConnection,
    tenant: &TenantId,
    entries: Vec<CompletionEntry>,
) -> AppResult<Vec<CompletionResult>> {
    if entries.len() > 10_000 {
        return Err(AppError::invalid_fields(vec![FieldError::new(
            "completions",
            "TOO_MANY",
            "at most 10000 completions per call",
        )]));
    }
    let txn = db::begin_write(db).await?;
    let keys: Vec<&UserKey> = entries
        .iter()
        .filter_map(|e| e.user.as_ref().ok())
        .collect();
    let found = users::find_many(&txn, tenant, &keys, None).await?;
    let mut user_ids: Vec<i64> = found.values().map(|u| u.id).collect();
    user_ids.sort_unstable();
    user_ids.dedup();
    let mut assigned: std::collections::HashSet<(i64, i64)> = std::collections::HashSet::new();
    for chunk in user_ids.chunks(CHUNK) {
        for row in track_assignments::Entity::find()
            .filter(track_assignments::Column::Tenant.eq(tenant.as_str()))
            .filter(track_assignments::Column::UserId.is_in(chunk.iter().copied()))
            .all(&txn)
            .await?
        {
            assigned.insert((row.user_id, row.track_id));
        }
    }
    let mut results = Vec::with_capacity(entries.len());
    let mut rows = Vec::new();
    for entry in entries {
        let mut errors = Vec::new();
        let user = match &entry.user {
            Err(problems) => {
                errors.extend(problems.iter().cloned());
                None
            }
            Ok(key) => found.get(key),
        };
        if entry.user.is_ok() && user.is_none() {
            errors.push(FieldError::new(
                "user",
                "NOT_FOUND",
                "no such user in this tenant",
            ));
        }
        match (user, entry.track) {
            (_, None) => errors.push(FieldError::new(
                "track",
                "NOT_FOUND",
                "no such learning track",
            )),
            (Some(user), Some(track)) if !assigned.contains(&(user.id, track)) => {
                errors.push(FieldError::new(
                    "track",
                    "NOT_ASSIGNED",
                    "this learning track is not assigned to the user (or does not exist)",
                ));
            }
            (Some(user), Some(track)) => rows.push(track_completions::ActiveModel {
                user_id: Set(user.id),
                track_id: Set(track),
                completed_at_ms: Set(entry.completed_at_ms),
                tenant: Set(tenant.as_str().to_owned()),
            }),
            (None, Some(_)) => {}
        }
        results.push(CompletionResult {
            lookup_key: entry.lookup_key,
            track: entry.track,
            errors,
        });
    }
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<_> = rows.by_ref().take(CHUNK).collect();
        track_completions::Entity::insert_many(chunk)
            .on_conflict_do_nothing()
            .exec(&txn)
            .await?;
    }
    txn.commit().await?;
    Ok(results)
}

/// Each user's tracks as of `as_of_ms`, in track-name order: the tenant's tracks and their
/// tags, then two statements per chunk of users (completions, assignments).
pub async fn progress_of(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    user_ids: &[i64],
    as_of_ms: i64,
) -> Result<HashMap<i64, Vec<Progress>>, DbErr> {
    let tracks: HashMap<i64, learning_tracks::Model> = learning_tracks::Entity::find()
        .filter(learning_tracks::Column::Tenant.eq(tenant.as_str()))
        .all(conn)
        .await?
        .into_iter()
        .map(|t| (t.id, t))
        .collect();
    let track_tags = tags_of(conn, tenant).await?;
    let mut progress: HashMap<i64, Vec<Progress>> = HashMap::new();
    for chunk in user_ids.chunks(CHUNK) {
        let mut done: HashMap<(i64, i64), i64> = HashMap::new();
        for row in track_completions::Entity::find()
            .filter(track_completions::Column::Tenant.eq(tenant.as_str()))
            .filter(track_completions::Column::UserId.is_in(chunk.iter().copied()))
            .filter(track_completions::Column::CompletedAtMs.lte(as_of_ms))
            .all(conn)
            .await?
        {
            let newest = done
                .entry((row.user_id, row.track_id))
                .or_insert(row.completed_at_ms);
            *newest = (*newest).max(row.completed_at_ms);
        }
        for row in track_assignments::Entity::find()
            .filter(track_assignments::Column::Tenant.eq(tenant.as_str()))
            .filter(track_assignments::Column::UserId.is_in(chunk.iter().copied()))
            .filter(track_assignments::Column::AssignedAtMs.lte(as_of_ms))
            .all(conn)
            .await?
        {
            let Some(track) = tracks.get(&row.track_id) else {
                continue;
            };
            let completed = done.get(&(row.user_id, row.track_id)).copied();
            progress.entry(row.user_id).or_default().push(Progress {
                status: status(track, row.assigned_at_ms, completed, as_of_ms),
                expires_at_ms: completed
                    .zip(track.validity_days)
                    .map(|(done, days)| done + i64::from(days) * DAY_MS),
                completed_at_ms: completed,
                assigned_at_ms: row.assigned_at_ms,
                track_tags: track_tags.get(&track.id).cloned().unwrap_or_default(),
                track: track.clone(),
            });
        }
    }
    progress
        .values_mut()
        .for_each(|list| list.sort_by(|a, b| a.track.name.cmp(&b.track.name)));
    Ok(progress)
}

/// Each user of the tenant with the rank of their overall status as of an instant
/// (`NULL`: no track), as SQL with its values, in the order of its `?`.
fn ranked_users(tenant: &TenantId, as_of_ms: i64) -> (String, Vec<Value>) {
    let sql = format!(
        "SELECT u.id AS user_id, CAST(MIN({RANK_SQL}) AS BIGINT) AS status_rank \
         FROM users u \
         LEFT JOIN track_assignments a ON a.user_id = u.id AND a.assigned_at_ms <= ? \
         LEFT JOIN learning_tracks t ON t.id = a.track_id \
         LEFT JOIN (SELECT user_id, track_id, MAX(completed_at_ms) AS done \
                    FROM track_completions WHERE tenant = ? AND completed_at_ms <= ? \
                    GROUP BY user_id, track_id) c \
           ON c.user_id = a.user_id AND c.track_id = a.track_id \
         WHERE u.tenant = ? \
         GROUP BY u.id"
    );
    // The three of the rank, the assignments' instant, the completions' tenant and
    // instant, the users' tenant.
    let values = vec![
        as_of_ms.into(),
        as_of_ms.into(),
        as_of_ms.into(),
        as_of_ms.into(),
        tenant.as_str().into(),
        as_of_ms.into(),
        tenant.as_str().into(),
    ];
    (sql, values)
}

fn rank_of(overall: Overall) -> Option<i64> {
    match overall {
        Overall::Track(status) => Some(status as i64),
        Overall::NoTracksAssigned => None,
    }
}

/// Users of the tenant per overall status as of `as_of_ms`: one aggregate query, the same
/// rules as [`status`].
pub async fn summary(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    as_of_ms: i64,
) -> Result<HashMap<Overall, i64>, DbErr> {
    let (ranked, values) = ranked_users(tenant, as_of_ms);
    let sql = format!("SELECT s.status_rank, COUNT(*) FROM ({ranked}) s GROUP BY s.status_rank");
    let mut counts = HashMap::new();
    for row in conn
        .query_all_raw(db::statement(conn.get_database_backend(), &sql, values))
        .await?
    {
        let rank: Option<i64> = row.try_get_by_index(0)?;
        let count: i64 = row.try_get_by_index(1)?;
        let overall = match rank {
            Some(1) => Overall::Track(Status::NotCompliant),
            Some(2) => Overall::Track(Status::ExpiringSoon),
            Some(3) => Overall::Track(Status::Uncompleted),
            Some(4) => Overall::Track(Status::Completed),
            _ => Overall::NoTracksAssigned,
        };
        *counts.entry(overall).or_insert(0) += count;
    }
    Ok(counts)
}

/// A condition on `users.id`: the user's overall status as of `as_of_ms` is `overall`.
pub fn status_condition(
    backend: DatabaseBackend,
    tenant: &TenantId,
    overall: Overall,
    as_of_ms: i64,
) -> sea_orm::sea_query::SimpleExpr {
    let (ranked, mut values) = ranked_users(tenant, as_of_ms);
    let test = match rank_of(overall) {
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

/// [`status`] in SQL over `a` (assignment), `t` (track) and `c.done` (newest completion);
/// its three `?` are the instant. `NULL` when the user has no assignment.
const RANK_SQL: &str = "CASE \
    WHEN a.track_id IS NULL THEN NULL \
    WHEN c.done IS NOT NULL AND t.validity_days IS NOT NULL \
         AND ? >= c.done + CAST(t.validity_days AS BIGINT) * 86400000 THEN 1 \
    WHEN c.done IS NOT NULL AND t.validity_days IS NOT NULL \
         AND ? >= c.done + CAST(t.validity_days - t.expiring_soon_days AS BIGINT) * 86400000 THEN 2 \
    WHEN c.done IS NOT NULL THEN 4 \
    WHEN t.due_days IS NOT NULL \
         AND ? >= a.assigned_at_ms + CAST(t.due_days AS BIGINT) * 86400000 THEN 1 \
    ELSE 3 END";
