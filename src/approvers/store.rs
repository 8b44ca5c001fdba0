//! Reading and writing approver links, always within one tenant.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use entity::{approver_links, users};
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{Expr, Query};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder};

use super::{Label, Link};
use crate::auth::TenantId;
use crate::users::store as user_store;

/// The `MANAGER` of a user, if any.
pub async fn manager_of(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    user_id: i64,
) -> Result<Option<i64>, DbErr> {
    Ok(approver_links::Entity::find()
        .filter(approver_links::Column::Tenant.eq(tenant.as_str()))
        .filter(approver_links::Column::UserId.eq(user_id))
        .filter(approver_links::Column::Label.eq(Label::Manager.as_str()))
        .one(conn)
        .await?
        .map(|link| link.approver_id))
}

/// Which end of a link the given ids are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The users approved for: their approvers.
    User,
    /// The approvers: their managees.
    Approver,
}

/// Links of the given users, grouped by the end `side` names.
pub async fn links_by(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    side: Side,
    ids: &[i64],
) -> Result<HashMap<i64, Vec<approver_links::Model>>, DbErr> {
    let column = match side {
        Side::User => approver_links::Column::UserId,
        Side::Approver => approver_links::Column::ApproverId,
    };
    let rows = approver_links::Entity::find()
        .filter(approver_links::Column::Tenant.eq(tenant.as_str()))
        .filter(column.is_in(ids.iter().copied()))
        .order_by_asc(approver_links::Column::UserId)
        .order_by_asc(approver_links::Column::Label)
        .order_by_asc(approver_links::Column::ApproverId)
        .all(conn)
        .await?;
    let mut grouped: HashMap<i64, Vec<approver_links::Model>> = HashMap::new();
    for row in rows {
        let key = match side {
            Side::User => row.user_id,
            Side::Approver => row.approver_id,
        };
        grouped.entry(key).or_default().push(row);
    }
    Ok(grouped)
}

/// A link with the users at both its ends.
#[derive(Debug, Clone)]
pub struct ResolvedLink {
    pub link: approver_links::Model,
    pub user: users::Model,
    pub approver: users::Model,
}

/// Like [`links_by`], each link with both its users: two statements for any number of ids.
pub async fn resolved_links_by(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    side: Side,
    ids: &[i64],
) -> Result<HashMap<i64, Vec<ResolvedLink>>, DbErr> {
    let links = links_by(conn, tenant, side, ids).await?;
    let users = users_at_ends(conn, tenant, links.values().flatten()).await?;
    Ok(links
        .into_iter()
        .map(|(id, links)| (id, resolve(&users, links)))
        .collect())
}

/// Every link of the tenant whose approver is inactive, with both its users, in order of
/// the user it is for.
pub async fn inactive_approver_links(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
) -> Result<Vec<ResolvedLink>, DbErr> {
    let inactive = Query::select()
        .column(users::Column::Id)
        .from(users::Entity)
        .and_where(users::Column::Tenant.eq(tenant.as_str()))
        .and_where(users::Column::Active.eq(false))
        .to_owned();
    let links = approver_links::Entity::find()
        .filter(approver_links::Column::Tenant.eq(tenant.as_str()))
        .filter(approver_links::Column::ApproverId.in_subquery(inactive))
        .order_by_asc(approver_links::Column::UserId)
        .order_by_asc(approver_links::Column::Label)
        .order_by_asc(approver_links::Column::ApproverId)
        .all(conn)
        .await?;
    let users = users_at_ends(conn, tenant, &links).await?;
    Ok(resolve(&users, links))
}

async fn users_at_ends(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    links: impl IntoIterator<Item = &approver_links::Model>,
) -> Result<HashMap<i64, users::Model>, DbErr> {
    let mut ends: Vec<i64> = links
        .into_iter()
        .flat_map(|l| [l.user_id, l.approver_id])
        .collect();
    ends.sort_unstable();
    ends.dedup();
    user_store::by_ids(conn, tenant, &ends).await
}

fn resolve(
    users: &HashMap<i64, users::Model>,
    links: Vec<approver_links::Model>,
) -> Vec<ResolvedLink> {
    links
        .into_iter()
        .filter_map(|link| {
            Some(ResolvedLink {
                user: users.get(&link.user_id)?.clone(),
                approver: users.get(&link.approver_id)?.clone(),
                link,
            })
        })
        .collect()
}

/// The stored approver set of one user, in [`super::sort_links`] order.
pub async fn set_of(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    user_id: i64,
) -> Result<Vec<Link>, DbErr> {
    let mut links: Vec<Link> = links_by(conn, tenant, Side::User, &[user_id])
        .await?
        .remove(&user_id)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|row| {
            Some(Link {
                approver_id: row.approver_id,
                label: Label::from_stored(&row.label)?,
                can_approve: row.can_approve,
            })
        })
        .collect();
    super::sort_links(&mut links);
    Ok(links)
}

/// Makes the stored set of `user_id` equal to `links`, touching only what differs; returns
/// whether anything was written.
pub async fn replace_set(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    user_id: i64,
    links: &[Link],
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let current = set_of(conn, tenant, user_id).await?;
    if current == links {
        return Ok(false);
    }
    let same_pair = |a: &Link, b: &Link| a.approver_id == b.approver_id && a.label == b.label;
    for old in &current {
        match links.iter().find(|new| same_pair(new, old)) {
            None => {
                approver_links::Entity::delete_many()
                    .filter(approver_links::Column::UserId.eq(user_id))
                    .filter(approver_links::Column::ApproverId.eq(old.approver_id))
                    .filter(approver_links::Column::Label.eq(old.label.as_str()))
                    .exec(conn)
                    .await?;
            }
            Some(new) if new.can_approve != old.can_approve => {
                approver_links::Entity::update_many()
                    .col_expr(
                        approver_links::Column::CanApprove,
                        Expr::value(new.can_approve),
                    )
                    .col_expr(approver_links::Column::UpdatedAt, Expr::value(now))
                    .filter(approver_links::Column::UserId.eq(user_id))
                    .filter(approver_links::Column::ApproverId.eq(old.approver_id))
                    .filter(approver_links::Column::Label.eq(old.label.as_str()))
                    .exec(conn)
                    .await?;
            }
            Some(_) => {}
        }
    }
    let added: Vec<approver_links::ActiveModel> = links
        .iter()
        .filter(|new| !current.iter().any(|old| same_pair(new, old)))
        .map(|new| approver_links::ActiveModel {
            user_id: Set(user_id),
            approver_id: Set(new.approver_id),
            label: Set(new.label.as_str().to_owned()),
            tenant: Set(tenant.as_str().to_owned()),
            can_approve: Set(new.can_approve),
            created_at: Set(now),
            updated_at: Set(now),
        })
        .collect();
    if !added.is_empty() {
        approver_links::Entity::insert_many(added)
            .exec(conn)
            .await?;
    }
    Ok(true)
}
