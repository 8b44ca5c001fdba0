//! The GraphQL face of learning tracks and compliance.

use std::collections::HashMap;

use async_graphql::dataloader::{DataLoader, Loader};
use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, TimeZone, Utc};
use entity::learning_tracks;
use sea_orm::DatabaseConnection;

use super::{CompletionEntry, Overall, Progress, RawTrack, Status, Track};
use crate::attributes::graphql::entry_lookup;
use crate::auth::{Role, RoleGuard, TenantId, principal};
use crate::error::{AppError, AppResult};
use crate::graphql::cost;
use crate::graphql::{FieldErrorView, request_now};
use crate::users::graphql::UserLookup;
use crate::users::store as users;

/// Compliance, worst first.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum LearningTrackStatus {
    /// A completion has expired, or an uncompleted track is past its due days.
    NotCompliant,
    /// Completed, expiring within `expiringSoonDays`.
    ExpiringSoon,
    /// Assigned, not completed, not yet due.
    Uncompleted,
    /// Completed and not expiring soon.
    Completed,
    /// No track is assigned.
    NoTracksAssigned,
}

impl From<Status> for LearningTrackStatus {
    fn from(status: Status) -> Self {
        match status {
            Status::NotCompliant => Self::NotCompliant,
            Status::ExpiringSoon => Self::ExpiringSoon,
            Status::Uncompleted => Self::Uncompleted,
            Status::Completed => Self::Completed,
        }
    }
}

impl From<Overall> for LearningTrackStatus {
    fn from(overall: Overall) -> Self {
        match overall {
            Overall::Track(status) => status.into(),
            Overall::NoTracksAssigned => Self::NoTracksAssigned,
        }
    }
}

impl From<LearningTrackStatus> for Overall {
    fn from(status: LearningTrackStatus) -> Self {
        match status {
            LearningTrackStatus::NotCompliant => Overall::Track(Status::NotCompliant),
            LearningTrackStatus::ExpiringSoon => Overall::Track(Status::ExpiringSoon),
            LearningTrackStatus::Uncompleted => Overall::Track(Status::Uncompleted),
            LearningTrackStatus::Completed => Overall::Track(Status::Completed),
            LearningTrackStatus::NoTracksAssigned => Overall::NoTracksAssigned,
        }
    }
}

/// A learning track: users sharing any of its tags are assigned it.
#[derive(InputObject)]
pub struct LearningTrackInput {
    /// Unique in the tenant.
    pub name: String,
    /// Compared lower-cased with users' tags.
    pub tags: Vec<String>,
    /// Days a completion stays valid (1 to 36500); without it a completion never expires.
    pub validity_days: Option<i32>,
    /// Days before expiry from which a completion is `EXPIRING_SOON`.
    #[graphql(default = 30)]
    pub expiring_soon_days: i32,
    /// Days after assignment by which the track must be completed; without it, never due.
    pub due_days: Option<i32>,
}

impl From<LearningTrackInput> for RawTrack {
    fn from(input: LearningTrackInput) -> Self {
        Self {
            name: input.name,
            tags: input.tags,
            validity_days: input.validity_days,
            expiring_soon_days: input.expiring_soon_days,
            due_days: input.due_days,
        }
    }
}

/// A track with its tags, which every path that yields one has already loaded.
pub struct LearningTrack(pub learning_tracks::Model, pub Vec<String>);

impl From<Track> for LearningTrack {
    fn from(track: Track) -> Self {
        Self(track.model, track.tags)
    }
}

#[Object]
impl LearningTrack {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// Lower-cased, sorted.
    async fn tags(&self) -> &[String] {
        &self.1
    }
    async fn validity_days(&self) -> Option<i32> {
        self.0.validity_days
    }
    async fn expiring_soon_days(&self) -> i32 {
        self.0.expiring_soon_days
    }
    async fn due_days(&self) -> Option<i32> {
        self.0.due_days
    }
}

fn instant(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// One assigned track of a user, as of a moment.
#[derive(SimpleObject)]
pub struct TrackProgress {
    pub track: LearningTrack,
    pub status: LearningTrackStatus,
    pub assigned_at: DateTime<Utc>,
    /// The newest completion up to the moment.
    pub completed_at: Option<DateTime<Utc>>,
    /// `completedAt + validityDays`; at that instant the completion has expired.
    pub expires_at: Option<DateTime<Utc>>,
}

impl From<Progress> for TrackProgress {
    fn from(progress: Progress) -> Self {
        Self {
            status: progress.status.into(),
            assigned_at: instant(progress.assigned_at_ms),
            completed_at: progress.completed_at_ms.map(instant),
            expires_at: progress.expires_at_ms.map(instant),
            track: LearningTrack(progress.track, progress.track_tags),
        }
    }
}

/// Users of the tenant per overall status.
#[derive(SimpleObject, Default)]
pub struct ComplianceSummary {
    pub not_compliant: i64,
    pub expiring_soon: i64,
    pub uncompleted: i64,
    pub completed: i64,
    pub no_tracks_assigned: i64,
}

/// Each user's tracks as of one instant: `(user id, instant in ms)`.
pub struct ProgressLoader {
    pub db: DatabaseConnection,
    pub tenant: TenantId,
}

impl Loader<(i64, i64)> for ProgressLoader {
    type Value = Vec<Progress>;
    type Error = AppError;

    async fn load(
        &self,
        keys: &[(i64, i64)],
    ) -> Result<HashMap<(i64, i64), Self::Value>, AppError> {
        let mut by_instant: HashMap<i64, Vec<i64>> = HashMap::new();
        for (user, at) in keys {
            by_instant.entry(*at).or_default().push(*user);
        }
        let mut loaded = HashMap::new();
        for (at, users) in by_instant {
            let mut progress = super::progress_of(&self.db, &self.tenant, &users, at).await?;
            for user in users {
                loaded.insert((user, at), progress.remove(&user).unwrap_or_default());
            }
        }
        Ok(loaded)
    }
}

pub fn loaders(data: &mut async_graphql::Data, db: &DatabaseConnection, tenant: &TenantId) {
    data.insert(DataLoader::new(
        ProgressLoader {
            db: db.clone(),
            tenant: tenant.clone(),
        },
        tokio::spawn,
    ));
}

/// The tracks of one user as of `as_of` (default now), through the request's loader.
pub async fn progress(
    ctx: &Context<'_>,
    user_id: i64,
    as_of: Option<DateTime<Utc>>,
) -> AppResult<Vec<Progress>> {
    let at = as_of.unwrap_or_else(|| request_now(ctx)).timestamp_millis();
    Ok(ctx
        .data_unchecked::<DataLoader<ProgressLoader>>()
        .load_one((user_id, at))
        .await?
        .unwrap_or_default())
}

#[derive(Default)]
pub struct TracksQuery;

#[Object]
impl TracksQuery {
    /// Every learning track of the tenant, by name.
    #[graphql(complexity = "cost::list(cost::LEARNING_TRACKS, child_complexity)")]
    async fn learning_tracks(&self, ctx: &Context<'_>) -> AppResult<Vec<LearningTrack>> {
        let principal = principal(ctx)?;
        let db = ctx.data_unchecked::<DatabaseConnection>();
        Ok(super::list(db, &principal.tenant)
            .await?
            .into_iter()
            .map(LearningTrack::from)
            .collect())
    }

    /// One user's overall compliance as of `asOf` (default now).
    async fn learning_track_status(
        &self,
        ctx: &Context<'_>,
        user: UserLookup,
        as_of: Option<DateTime<Utc>>,
    ) -> AppResult<LearningTrackStatus> {
        let principal = principal(ctx)?;
        let db = ctx.data_unchecked::<DatabaseConnection>();
        let key = user.key("user")?;
        let Some(user) = users::find(db, &principal.tenant, &key).await? else {
            return Err(AppError::NotFound("no such user".to_owned()));
        };
        Ok(super::overall(&progress(ctx, user.id, as_of).await?).into())
    }

    /// Users of the tenant per overall status as of `asOf` (default now), counted in one
    /// query.
    async fn compliance_summary(
        &self,
        ctx: &Context<'_>,
        as_of: Option<DateTime<Utc>>,
    ) -> AppResult<ComplianceSummary> {
        let principal = principal(ctx)?;
        let db = ctx.data_unchecked::<DatabaseConnection>();
        let at = as_of.unwrap_or_else(|| request_now(ctx)).timestamp_millis();
        let counts = super::summary(db, &principal.tenant, at).await?;
        let count = |o: Overall| counts.get(&o).copied().unwrap_or(0);
        Ok(ComplianceSummary {
            not_compliant: count(Overall::Track(Status::NotCompliant)),
            expiring_soon: count(Overall::Track(Status::ExpiringSoon)),
            uncompleted: count(Overall::Track(Status::Uncompleted)),
            completed: count(Overall::Track(Status::Completed)),
            no_tracks_assigned: count(Overall::NoTracksAssigned),
        })
    }
}

/// One completion of a track by a user.
#[derive(InputObject)]
pub struct TrackCompletionInput {
    pub user: UserLookup,
    pub track: ID,
    pub completed_at: DateTime<Utc>,
}

#[derive(SimpleObject)]
pub struct TrackCompletionResult {
    pub lookup_key: String,
    pub track: ID,
    pub success: bool,
    pub errors: Vec<FieldErrorView>,
}

#[derive(SimpleObject)]
pub struct TrackCompletionPayload {
    /// One result per completion, in the order sent.
    pub results: Vec<TrackCompletionResult>,
    pub succeeded: i32,
    pub failed: i32,
}

#[derive(Default)]
pub struct TracksMutation;

#[Object]
impl TracksMutation {
    /// Creates a track; users sharing a tag with it are assigned it now.
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn create_learning_track(
        &self,
        ctx: &Context<'_>,
        input: LearningTrackInput,
    ) -> AppResult<LearningTrack> {
        let principal = principal(ctx)?;
        let db = ctx.data_unchecked::<DatabaseConnection>();
        Ok(super::create(db, &principal.tenant, input.into())
            .await?
            .into())
    }

    /// Replaces a track's settings and tags; assignments follow the new tags.
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn update_learning_track(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: LearningTrackInput,
    ) -> AppResult<LearningTrack> {
        let principal = principal(ctx)?;
        let db = ctx.data_unchecked::<DatabaseConnection>();
        let Ok(id) = id.parse::<i64>() else {
            return Err(AppError::NotFound("no such learning track".to_owned()));
        };
        Ok(super::update(db, &principal.tenant, id, input.into())
            .await?
            .into())
    }

    /// Records completions (up to 10,000); each is recorded or refused alone. An unknown
    /// user or track, or a track not assigned to the user, fails that entry.
    #[graphql(guard = "RoleGuard(Role::Admin)")]
    async fn record_track_completions(
        &self,
        ctx: &Context<'_>,
        completions: Vec<TrackCompletionInput>,
    ) -> AppResult<TrackCompletionPayload> {
        let principal = principal(ctx)?;
        let db = ctx.data_unchecked::<DatabaseConnection>();
        let entries = completions
            .into_iter()
            .map(|c| {
                let (user, lookup_key) = entry_lookup(&c.user);
                CompletionEntry {
                    lookup_key,
                    user,
                    track: c.track.parse().ok(),
                    completed_at_ms: c.completed_at.timestamp_millis(),
                }
            })
            .collect();
        let results = super::record_completions(db, &principal.tenant, entries).await?;
        let succeeded = results.iter().filter(|r| r.errors.is_empty()).count();
        let failed = results.len() - succeeded;
        Ok(TrackCompletionPayload {
            results: results
                .into_iter()
                .map(|r| TrackCompletionResult {
                    lookup_key: r.lookup_key,
                    track: ID(r.track.map(|t| t.to_string()).unwrap_or_default()),
                    success: r.errors.is_empty(),
                    errors: r.errors.into_iter().map(FieldErrorView::from).collect(),
                })
                .collect(),
            succeeded: i32::try_from(succeeded).unwrap_or(i32::MAX),
            failed: i32::try_from(failed).unwrap_or(i32::MAX),
        })
    }
}
