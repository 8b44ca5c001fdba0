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
//! ([`summary`], over `ranked_users.sql`); a test checks that they agree.

pub mod graphql;
mod store;

use std::collections::HashMap;

use chrono::Utc;
use entity::{learning_tracks, track_completions};
use sea_orm::ActiveValue::Set;
use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, DbErr};

pub use store::{Scope, sync, users_with_completions};

use crate::auth::TenantId;
use crate::db;
use crate::error::{AppError, AppResult, FieldError};
use crate::users::domain::Tags;
use crate::users::lookup::UserKey;
use crate::users::store as users;
use crate::validate::{Problem, Problems, required_text};

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
    let model = store::insert(&txn, tenant, name, &raw, now)
        .await
        .map_err(name_taken)?;
    store::replace_tags(&txn, tenant, model.id, &tags).await?;
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
    let Some(existing) = store::find(&txn, tenant, id).await? else {
        return Err(AppError::NotFound("no such learning track".to_owned()));
    };
    let model = store::update(&txn, existing, name, &raw, now)
        .await
        .map_err(name_taken)?;
    store::replace_tags(&txn, tenant, id, &tags).await?;
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

/// Every track of the tenant, by name.
pub async fn list(conn: &impl ConnectionTrait, tenant: &TenantId) -> AppResult<Vec<Track>> {
    let models = store::all(conn, tenant).await?;
    let mut tags = store::tags_of(conn, tenant).await?;
    Ok(models
        .into_iter()
        .map(|model| Track {
            tags: tags.remove(&model.id).unwrap_or_default(),
            model,
        })
        .collect())
}

/// Brings the assignments of the users a write retagged in line with their tags, as of
/// `now`: what every write of users' tags runs next, in its transaction.
pub async fn follow(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    retagged: users::Retagged,
    now: chrono::DateTime<Utc>,
) -> Result<(), DbErr> {
    if retagged.ids().is_empty() {
        return Ok(());
    }
    sync(
        conn,
        tenant,
        Scope::Users(retagged.ids()),
        now.timestamp_millis(),
    )
    .await
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
    let assigned = store::assigned(&txn, tenant, &user_ids).await?;
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
    store::insert_completions(&txn, rows).await?;
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
    let tracks = store::by_id(conn, tenant).await?;
    let track_tags = store::tags_of(conn, tenant).await?;
    let mut progress: HashMap<i64, Vec<Progress>> = HashMap::new();
    for chunk in user_ids.chunks(CHUNK) {
        let done = store::newest_completions(conn, tenant, chunk, as_of_ms).await?;
        for row in store::assignments(conn, tenant, chunk, as_of_ms).await? {
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
    let mut counts = HashMap::new();
    for (rank, count) in store::rank_counts(conn, tenant, as_of_ms).await? {
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
    store::rank_condition(backend, tenant, rank_of(overall), as_of_ms)
}
