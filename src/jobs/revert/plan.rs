//! What a revert does with each user its job wrote: the step the user's image calls for,
//! and the reasons it leaves a user as it is.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use entity::import_job_images as images_table;
use entity::users;
use sea_orm::ConnectionTrait;
use sea_orm::sea_query::LockType;

use crate::auth::TenantId;
use crate::error::FieldError;
use crate::jobs::images::{self, Image};
use crate::jobs::process::Stop;
use crate::jobs::{RowResult, store};
use crate::users::import::RowAction;
use crate::users::lookup::UserKey;
use crate::users::profile::Profile;
use crate::users::store as user_store;

/// What a revert does with one user in its first pass.
pub(super) enum Step {
    /// Left as it is, for this reason.
    Skip(FieldError),
    /// Its row, tags and attributes become the image's (its approvers follow in the second
    /// pass).
    Restore { now: Box<Image>, then: Box<Image> },
    /// Put back as the image shows it (the job removed it).
    Reinsert(Box<Image>),
    /// Removed in the last pass (the job created it).
    Remove,
    /// An earlier revert of the job (cancelled, or failed) removed it already.
    Removed,
}

impl Step {
    /// Decides from the job's image of a user, the images of earlier reverts of the job
    /// (cancelled or failed: they did part of the work) and the user as stored now.
    pub(super) fn plan(
        image: &images_table::Model,
        earlier: &[images_table::Model],
        now: Option<&Image>,
    ) -> Self {
        let before = match image.before.as_deref().map(Image::from_json).transpose() {
            Ok(before) => before,
            Err(error) => {
                tracing::error!(job = image.job_id, user = image.user_id, %error, "unreadable image");
                return Self::Skip(problem(
                    "UNREADABLE",
                    "the user's before-image cannot be read",
                ));
            }
        };
        match (before, image.left_at, now) {
            (_, Some(_), None) if earlier.iter().any(|e| e.left_at.is_none()) => Self::Removed,
            (_, Some(_), None) => Self::Skip(problem("GONE", "the user no longer exists")),
            (_, Some(left_at), Some(now)) if !as_left(now.user.updated_at, image, earlier) => {
                Self::Skip(changed_since(left_at, now.user.updated_at))
            }
            (None, Some(_), Some(_)) => Self::Remove,
            (Some(then), Some(_), Some(now)) => Self::Restore {
                now: Box::new(now.clone()),
                then: Box::new(then),
            },
            (Some(then), None, None) => Self::Reinsert(Box::new(then)),
            (_, None, Some(_)) => Self::Skip(problem(
                "EXISTS",
                "the job removed this user, but a user with its id exists again",
            )),
            (None, None, None) => Self::Skip(problem("GONE", "the user no longer exists")),
        }
    }

    /// The profile this step writes, if any.
    pub(super) fn target(&self) -> Option<Profile> {
        match self {
            Self::Restore { now, then } => {
                let target = then.profile();
                (target != now.profile()).then_some(target)
            }
            Self::Reinsert(then) => Some(then.profile()),
            Self::Skip(_) | Self::Remove | Self::Removed => None,
        }
    }
}

/// Whether a user's `updated_at` is the one the job left it with, or an earlier revert of
/// the job did: nobody else changed it since.
pub(super) fn as_left(
    updated_at: DateTime<Utc>,
    image: &images_table::Model,
    earlier: &[images_table::Model],
) -> bool {
    std::iter::once(image)
        .chain(earlier)
        .any(|image| image.left_at == Some(updated_at))
}

/// The images earlier reverts of job `original` (before `job_id`) kept of these users.
pub(super) async fn earlier_images(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    job_id: i64,
    original: i64,
    users: &[i64],
) -> Result<HashMap<i64, Vec<images_table::Model>>, Stop> {
    let mut found: HashMap<i64, Vec<images_table::Model>> = HashMap::new();
    for revert in store::reverts_before(conn, tenant, original, job_id).await? {
        for (user, image) in images::of_users(conn, revert, users).await? {
            found.entry(user).or_default().push(image);
        }
    }
    Ok(found)
}

pub(super) fn problem(code: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: None,
        code: code.to_owned(),
        message: message.into(),
    }
}

/// Why a user the job created stays: it approves for users who stay (external ids).
pub(super) fn approves_for(mut names: Vec<&str>) -> FieldError {
    const SHOWN: usize = 10;
    names.sort_unstable();
    names.dedup();
    let more = names.len().saturating_sub(SHOWN);
    let mut shown = names[..names.len().min(SHOWN)].join(", ");
    if more > 0 {
        shown.push_str(&format!(" and {more} more"));
    }
    problem(
        "APPROVES_FOR",
        format!(
            "the user approves for {} user(s) who stay: {shown}; it was left in place",
            names.len()
        ),
    )
}

pub(super) fn has_completions() -> FieldError {
    problem(
        "HAS_COMPLETIONS",
        "the user has learning-track completions recorded since the job; it was left in place",
    )
}

pub(super) fn changed_since(left_at: DateTime<Utc>, updated_at: DateTime<Utc>) -> FieldError {
    problem(
        "CHANGED_SINCE",
        format!(
            "the user changed again since the job (updated at {}, the job left it at {}); it was left as it is",
            updated_at.to_rfc3339(),
            left_at.to_rfc3339()
        ),
    )
}

/// The users of `ids` as stored, locked until the transaction ends (PostgreSQL).
pub(super) async fn locked_users(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    ids: &[i64],
) -> Result<HashMap<i64, users::Model>, Stop> {
    let keys: Vec<UserKey> = ids.iter().map(|&id| UserKey::Id(id)).collect();
    let keys: Vec<&UserKey> = keys.iter().collect();
    let found = user_store::find_many(conn, tenant, &keys, Some(LockType::Update)).await?;
    Ok(ids
        .iter()
        .filter_map(|id| Some((*id, found.get(&UserKey::Id(*id))?.clone())))
        .collect())
}

pub(super) fn result(
    image: &images_table::Model,
    action: RowAction,
    user_id: Option<i64>,
) -> RowResult {
    RowResult {
        index: image.idx,
        lookup_key: image.lookup_key.clone(),
        action,
        success: true,
        user_id,
        errors: Vec::new(),
        links_pending: false,
        blocked: false,
        unblocked: false,
    }
}

pub(super) fn skipped(mut row: RowResult, errors: Vec<FieldError>) -> RowResult {
    row.action = RowAction::Skipped;
    row.success = false;
    row.links_pending = false;
    row.errors = errors;
    row
}
