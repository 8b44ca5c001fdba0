//! The holders of one tag as a set, changed in one go: the users that join take the tag,
//! those that leave lose it, and nothing else of theirs is rewritten. A SCIM group is such
//! a set; so is any other list of the users who carry a tag.
//!
//! [`set_holders`] runs inside the caller's write transaction, which holds the tenant's
//! [`crate::tracks::TAGS_LOCK`] (as every writer of tags takes it), so a failure anywhere
//! rolls back every row it wrote, and two changes of different tags of the same user both
//! land: each adds or removes its own tag's row, not the user's whole set.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use entity::user_tags;
use sea_orm::sea_query::{Expr, ExprTrait, Func, OnConflict};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect};

use super::domain::Tags;
use super::store::{self, IN_CHUNK};
use crate::auth::TenantId;

/// Why a change of holders was refused; nothing of it is written.
#[derive(Debug)]
pub enum MembershipError {
    /// These ids are not users of the tenant.
    NotUsers(Vec<i64>),
    /// These users would carry more than [`Tags::MAX_COUNT`] tags.
    TooManyTags(Vec<i64>),
    Db(DbErr),
}

impl From<DbErr> for MembershipError {
    fn from(error: DbErr) -> Self {
        Self::Db(error)
    }
}

/// What a change of holders did: who took `new` and who lost `old` (in a rename, a holder
/// of `old` who stays does both).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Moved {
    pub joined: BTreeSet<i64>,
    pub left: BTreeSet<i64>,
}

/// Makes `holders` the users carrying `new` (normalised, as [`Tags::parse`] leaves it),
/// taking it from the holders of `old` (a rename when `old` differs from `new`; `new`
/// `None` takes it from everyone). Only the rows that change are written; the users whose
/// tags change have their `updated_at` moved and their learning tracks brought in line,
/// once for them all. Call it in a write transaction holding the tenant's `TAGS_LOCK`.
pub async fn set_holders(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    old: Option<&str>,
    new: Option<&str>,
    holders: &BTreeSet<i64>,
    now: DateTime<Utc>,
) -> Result<Moved, MembershipError> {
    let wanted: Vec<i64> = holders.iter().copied().collect();
    let found = store::by_ids(conn, tenant, &wanted).await?;
    let missing: Vec<i64> = wanted
        .iter()
        .copied()
        .filter(|id| !found.contains_key(id))
        .collect();
    if !missing.is_empty() {
        return Err(MembershipError::NotUsers(missing));
    }
    let mut moved = Moved::default();
    if let Some(old) = old {
        let current = holders_of(conn, tenant, old).await?;
        let leaving: Vec<i64> = current
            .iter()
            .copied()
            .filter(|id| new != Some(old) || !holders.contains(id))
            .collect();
        for chunk in leaving.chunks(IN_CHUNK) {
            user_tags::Entity::delete_many()
                .filter(user_tags::Column::Tenant.eq(tenant.as_str()))
                .filter(user_tags::Column::Tag.eq(old))
                .filter(user_tags::Column::UserId.is_in(chunk.iter().copied()))
                .exec(conn)
                .await?;
        }
        moved.left.extend(leaving);
    }
    if let Some(new) = new {
        let current = holders_of(conn, tenant, new).await?;
        let joining: Vec<i64> = wanted
            .iter()
            .copied()
            .filter(|id| !current.contains(id))
            .collect();
        for chunk in joining.chunks(IN_CHUNK) {
            let rows = chunk.iter().map(|id| user_tags::ActiveModel {
                user_id: sea_orm::ActiveValue::Set(*id),
                tag: sea_orm::ActiveValue::Set(new.to_owned()),
                tenant: sea_orm::ActiveValue::Set(tenant.as_str().to_owned()),
            });
            user_tags::Entity::insert_many(rows)
                .on_conflict(
                    OnConflict::columns([user_tags::Column::UserId, user_tags::Column::Tag])
                        .do_nothing()
                        .to_owned(),
                )
                .exec_without_returning(conn)
                .await?;
        }
        let over = over_the_limit(conn, tenant, &joining).await?;
        if !over.is_empty() {
            return Err(MembershipError::TooManyTags(over));
        }
        moved.joined.extend(joining);
    }
    let changed: Vec<i64> = moved.joined.union(&moved.left).copied().collect();
    if !changed.is_empty() {
        store::touch_many(conn, tenant, &changed, now).await?;
        crate::tracks::sync(
            conn,
            tenant,
            crate::tracks::Scope::Users(&changed),
            now.timestamp_millis(),
        )
        .await?;
    }
    Ok(moved)
}

/// The users of the tenant carrying `tag`.
async fn holders_of(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    tag: &str,
) -> Result<BTreeSet<i64>, DbErr> {
    let rows: Vec<i64> = user_tags::Entity::find()
        .select_only()
        .column(user_tags::Column::UserId)
        .filter(user_tags::Column::Tenant.eq(tenant.as_str()))
        .filter(user_tags::Column::Tag.eq(tag))
        .into_tuple()
        .all(conn)
        .await?;
    Ok(rows.into_iter().collect())
}

/// Which of `ids` carry more tags than a user may.
async fn over_the_limit(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    ids: &[i64],
) -> Result<Vec<i64>, DbErr> {
    let limit = i64::try_from(Tags::MAX_COUNT).unwrap_or(i64::MAX);
    let mut over = Vec::new();
    for chunk in ids.chunks(IN_CHUNK) {
        let rows: Vec<i64> = user_tags::Entity::find()
            .select_only()
            .column(user_tags::Column::UserId)
            .filter(user_tags::Column::Tenant.eq(tenant.as_str()))
            .filter(user_tags::Column::UserId.is_in(chunk.iter().copied()))
            .group_by(user_tags::Column::UserId)
            .having(Expr::expr(Func::count(Expr::col(user_tags::Column::Tag))).gt(limit))
            .into_tuple()
            .all(conn)
            .await?;
        over.extend(rows);
    }
    Ok(over)
}
