//! Before-images: each user a job writes, kept as it was before the job (its row, tags,
//! attributes and approvers) and with its `updated_at` as the job left it, so that a
//! revert can put it back, and can tell a user changed again since.
//!
//! Every write of a job that moves a user's `updated_at` records its image in the same
//! transaction ([`record`]): the first image of a user in a job is kept, its `left_at`
//! follows the job's last write.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use entity::{import_job_images as images, users};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect,
};
use serde::{Deserialize, Serialize};

use crate::approvers::{self, Label, Link};
use crate::auth::TenantId;
use crate::db;
use crate::users::domain::AttributeType;
use crate::users::profile::{Attribute, Profile};
use crate::users::store as user_store;

/// A user as stored at one moment: what a revert puts back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Image {
    pub user: users::Model,
    pub tags: Vec<String>,
    pub attributes: Vec<ImageAttribute>,
    pub approvers: Vec<ImageLink>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageAttribute {
    name: String,
    value: String,
    kind: String,
    class: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageLink {
    approver_id: i64,
    label: String,
    can_approve: bool,
}

impl Image {
    /// `user` (as stored) with the tags and attributes of `profile` (its profile) and its
    /// approver set `links`.
    pub fn new(user: users::Model, profile: &Profile, links: &[Link]) -> Self {
        Self {
            user,
            tags: profile.tags.clone(),
            attributes: profile
                .attributes
                .iter()
                .map(|a| ImageAttribute {
                    name: a.name.clone(),
                    value: a.value.clone(),
                    kind: a.kind.as_str().to_owned(),
                    class: a.class.clone(),
                })
                .collect(),
            approvers: links
                .iter()
                .map(|l| ImageLink {
                    approver_id: l.approver_id,
                    label: l.label.as_str().to_owned(),
                    can_approve: l.can_approve,
                })
                .collect(),
        }
    }

    /// The profile the image holds.
    pub fn profile(&self) -> Profile {
        let attributes = self
            .attributes
            .iter()
            .map(|a| Attribute {
                name: a.name.clone(),
                value: a.value.clone(),
                kind: AttributeType::from_stored(&a.kind).unwrap_or(AttributeType::String),
                class: a.class.clone(),
            })
            .collect();
        user_store::profile_from(&self.user, self.tags.clone(), attributes)
    }

    /// The approver set the image holds, in stored order.
    pub fn links(&self) -> Vec<Link> {
        let mut links: Vec<Link> = self
            .approvers
            .iter()
            .filter_map(|l| {
                Some(Link {
                    approver_id: l.approver_id,
                    label: Label::from_stored(&l.label)?,
                    can_approve: l.can_approve,
                })
            })
            .collect();
        approvers::sort_links(&mut links);
        links
    }

    fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an image serialises")
    }

    pub fn from_json(json: &str) -> Result<Self, DbErr> {
        serde_json::from_str(json)
            .map_err(|e| DbErr::Custom(format!("a stored before-image cannot be read: {e}")))
    }
}

/// `source:externalId` of a stored user.
pub fn key_of(user: &users::Model) -> String {
    format!("{}:{}", user.source, user.external_id)
}

/// The images of stored users as they are now, read with a few statements.
pub async fn current(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    users: Vec<users::Model>,
) -> Result<Vec<Image>, DbErr> {
    let ids: Vec<i64> = users.iter().map(|u| u.id).collect();
    let mut images = Vec::with_capacity(users.len());
    let mut users = users.into_iter();
    for chunk in ids.chunks(user_store::IN_CHUNK) {
        let mut tags = user_store::tags_of(conn, tenant, chunk).await?;
        let mut attributes = user_store::attributes_of(conn, tenant, chunk).await?;
        let mut sets = approvers::store::sets_of(conn, tenant, chunk).await?;
        for user in users.by_ref().take(chunk.len()) {
            let profile = user_store::profile_from(
                &user,
                tags.remove(&user.id).unwrap_or_default(),
                attributes.remove(&user.id).unwrap_or_default(),
            );
            let links = sets.remove(&user.id).unwrap_or_default();
            images.push(Image::new(user, &profile, &links));
        }
    }
    Ok(images)
}

/// One user a job wrote.
#[derive(Debug, Clone)]
pub struct Taken {
    pub user_id: i64,
    /// The job's row (or step) that wrote it.
    pub idx: i32,
    pub lookup_key: String,
    /// The user before; `None` when the job created it.
    pub before: Option<Image>,
    /// Its `updated_at` after the write; `None` when the job removed it.
    pub left_at: Option<DateTime<Utc>>,
}

impl Taken {
    /// A user the job is about to write, as `image` shows it now.
    pub fn written(idx: i32, image: Image, now: DateTime<Utc>) -> Self {
        Self {
            user_id: image.user.id,
            idx,
            lookup_key: key_of(&image.user),
            before: Some(image),
            left_at: Some(now),
        }
    }
}

/// Records the users a job wrote. A user the job wrote before keeps its first image and
/// takes the new `left_at`.
pub async fn record(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    job_id: i64,
    taken: Vec<Taken>,
) -> Result<(), DbErr> {
    // One row per user and statement (PostgreSQL refuses to upsert a row twice in one).
    let mut at: HashMap<i64, usize> = HashMap::with_capacity(taken.len());
    let mut unique: Vec<Taken> = Vec::with_capacity(taken.len());
    for one in taken {
        match at.get(&one.user_id) {
            Some(&i) => unique[i].left_at = one.left_at,
            None => {
                at.insert(one.user_id, unique.len());
                unique.push(one);
            }
        }
    }
    let rows: Vec<images::ActiveModel> = unique
        .into_iter()
        .map(|one| images::ActiveModel {
            job_id: Set(job_id),
            user_id: Set(one.user_id),
            tenant: Set(tenant.as_str().to_owned()),
            idx: Set(one.idx),
            lookup_key: Set(one.lookup_key),
            before: Set(one.before.as_ref().map(Image::to_json)),
            left_at: Set(one.left_at),
        })
        .collect();
    db::Insert::new()
        .on_conflict_update(
            &[images::Column::JobId, images::Column::UserId],
            &[images::Column::LeftAt],
        )
        .exec(conn, rows)
        .await?;
    Ok(())
}

/// How many users a job wrote.
pub async fn count(conn: &impl ConnectionTrait, job_id: i64) -> Result<u64, DbErr> {
    images::Entity::find()
        .filter(images::Column::JobId.eq(job_id))
        .count(conn)
        .await
}

/// Up to `limit` images of a job from index `from` on, in order.
pub async fn page(
    conn: &impl ConnectionTrait,
    job_id: i64,
    from: i32,
    limit: u64,
) -> Result<Vec<images::Model>, DbErr> {
    images::Entity::find()
        .filter(images::Column::JobId.eq(job_id))
        .filter(images::Column::Idx.gte(from))
        .order_by_asc(images::Column::Idx)
        .limit(limit)
        .all(conn)
        .await
}

/// The images of a job for these users.
pub async fn of_users(
    conn: &impl ConnectionTrait,
    job_id: i64,
    user_ids: &[i64],
) -> Result<HashMap<i64, images::Model>, DbErr> {
    let mut found = HashMap::with_capacity(user_ids.len());
    for chunk in user_ids.chunks(user_store::IN_CHUNK) {
        let rows = images::Entity::find()
            .filter(images::Column::JobId.eq(job_id))
            .filter(images::Column::UserId.is_in(chunk.iter().copied()))
            .all(conn)
            .await?;
        found.extend(rows.into_iter().map(|row| (row.user_id, row)));
    }
    Ok(found)
}
