//! Reading and writing approver links, always within one tenant.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use entity::{approver_links, users};
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{Expr, Query};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Value,
};

use super::{Label, Link};
use crate::auth::TenantId;
use crate::db;
use crate::users::store::{self as user_store, IN_CHUNK};

/// The `MANAGER` of each of the given users that has one, and of each of their managers,
/// all the way up: one recursive statement per [`IN_CHUNK`] users, whatever the depth.
/// Each link is read once (`UNION` drops a pair already found), so a cycle stored before
/// the rules held ends the walk rather than looping. Each run is planned for
/// `approver_links` as it is ([`db::planned_per_run`]): a bulk import grows it while it
/// runs. `conn` is a transaction.
pub async fn managers_above(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    ids: &[i64],
) -> Result<HashMap<i64, i64>, DbErr> {
    db::planned_per_run(conn, chains(conn, tenant, ids)).await
}

async fn chains(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    ids: &[i64],
) -> Result<HashMap<i64, i64>, DbErr> {
    let backend = conn.get_database_backend();
    let mut managers = HashMap::new();
    for chunk in ids.chunks(IN_CHUNK) {
        let marks = vec!["?"; chunk.len()].join(", ");
        let sql = include_str!("manager_chains.sql").replace("{users}", &marks);
        let manager = Label::Manager.as_str();
        let mut values: Vec<Value> = vec![tenant.as_str().into(), manager.into()];
        values.extend(chunk.iter().map(|&id| Value::from(id)));
        values.extend([tenant.as_str().into(), manager.into()]);
        for row in conn
            .query_all_raw(db::statement(backend, &sql, values))
            .await?
        {
            managers.insert(row.try_get_by_index(0)?, row.try_get_by_index(1)?);
        }
    }
    Ok(managers)
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
    let mut grouped: HashMap<i64, Vec<approver_links::Model>> = HashMap::new();
    for chunk in ids.chunks(IN_CHUNK) {
        let rows = approver_links::Entity::find()
            .filter(approver_links::Column::Tenant.eq(tenant.as_str()))
            .filter(column.is_in(chunk.iter().copied()))
            .order_by_asc(approver_links::Column::UserId)
            .order_by_asc(approver_links::Column::Label)
            .order_by_asc(approver_links::Column::ApproverId)
            .all(conn)
            .await?;
        for row in rows {
            let key = match side {
                Side::User => row.user_id,
                Side::Approver => row.approver_id,
            };
            grouped.entry(key).or_default().push(row);
        }
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

/// `(approver, user)` of every link in which one of `approvers` approves.
pub async fn approvals_of(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    approvers: &[i64],
) -> Result<Vec<(i64, i64)>, DbErr> {
    let mut found = Vec::new();
    for chunk in approvers.chunks(IN_CHUNK) {
        let rows: Vec<(i64, i64)> = approver_links::Entity::find()
            .select_only()
            .column(approver_links::Column::ApproverId)
            .column(approver_links::Column::UserId)
            .filter(approver_links::Column::Tenant.eq(tenant.as_str()))
            .filter(approver_links::Column::ApproverId.is_in(chunk.iter().copied()))
            .into_tuple()
            .all(conn)
            .await?;
        found.extend(rows);
    }
    Ok(found)
}

/// The stored approver sets of the given users (empty for a user without approvers), each
/// in [`super::sort_links`] order.
pub async fn sets_of(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    ids: &[i64],
) -> Result<HashMap<i64, Vec<Link>>, DbErr> {
    let mut stored = links_by(conn, tenant, Side::User, ids).await?;
    Ok(ids
        .iter()
        .map(|&id| {
            let mut links: Vec<Link> = stored
                .remove(&id)
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
            (id, links)
        })
        .collect())
}

/// The stored approver set of one user, in [`super::sort_links`] order.
pub async fn set_of(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    user_id: i64,
) -> Result<Vec<Link>, DbErr> {
    Ok(sets_of(conn, tenant, &[user_id])
        .await?
        .remove(&user_id)
        .unwrap_or_default())
}

/// One user's approver set as stored, and as it is to become.
#[derive(Debug, Clone, Copy)]
pub struct SetChange<'a> {
    pub user_id: i64,
    pub stored: &'a [Link],
    pub new: &'a [Link],
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
    let stored = set_of(conn, tenant, user_id).await?;
    let change = SetChange {
        user_id,
        stored: &stored,
        new: links,
    };
    write_sets(conn, tenant, &[change], now).await
}

/// Links per statement when deleting or updating by `(user, approver, label)`.
const LINKS_PER_STATEMENT: usize = 300;

/// Makes the stored sets equal to the new ones, touching only what differs, with a fixed
/// number of statements for any number of users (each `stored` must be the set as it is
/// stored now); returns whether anything was written.
pub async fn write_sets(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    changes: &[SetChange<'_>],
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let same_pair = |a: &Link, b: &Link| a.approver_id == b.approver_id && a.label == b.label;
    let mut removed: Vec<(i64, &Link)> = Vec::new();
    // Links whose `canApprove` changes, by the value it takes.
    let mut flipped: [Vec<(i64, &Link)>; 2] = [Vec::new(), Vec::new()];
    let mut added: Vec<approver_links::ActiveModel> = Vec::new();
    for change in changes.iter().filter(|c| c.stored != c.new) {
        for old in change.stored {
            match change.new.iter().find(|new| same_pair(new, old)) {
                None => removed.push((change.user_id, old)),
                Some(new) if new.can_approve != old.can_approve => {
                    flipped[usize::from(new.can_approve)].push((change.user_id, old));
                }
                Some(_) => {}
            }
        }
        added.extend(
            change
                .new
                .iter()
                .filter(|new| !change.stored.iter().any(|old| same_pair(new, old)))
                .map(|new| approver_links::ActiveModel {
                    user_id: Set(change.user_id),
                    approver_id: Set(new.approver_id),
                    label: Set(new.label.as_str().to_owned()),
                    tenant: Set(tenant.as_str().to_owned()),
                    can_approve: Set(new.can_approve),
                    created_at: Set(now),
                    updated_at: Set(now),
                }),
        );
    }
    let written = !(removed.is_empty() && flipped.iter().all(Vec::is_empty) && added.is_empty());
    for chunk in removed.chunks(LINKS_PER_STATEMENT) {
        approver_links::Entity::delete_many()
            .filter(approver_links::Column::Tenant.eq(tenant.as_str()))
            .filter(any_of(chunk))
            .exec(conn)
            .await?;
    }
    for (can_approve, links) in [false, true].into_iter().zip(&flipped) {
        for chunk in links.chunks(LINKS_PER_STATEMENT) {
            approver_links::Entity::update_many()
                .col_expr(approver_links::Column::CanApprove, Expr::value(can_approve))
                .col_expr(approver_links::Column::UpdatedAt, Expr::value(now))
                .filter(approver_links::Column::Tenant.eq(tenant.as_str()))
                .filter(any_of(chunk))
                .exec(conn)
                .await?;
        }
    }
    db::insert_in_chunks(conn, added).await?;
    Ok(written)
}

/// Matches exactly the given links, each named by its user, approver and label.
fn any_of(links: &[(i64, &Link)]) -> Condition {
    links.iter().fold(Condition::any(), |any, (user_id, link)| {
        any.add(
            Condition::all()
                .add(approver_links::Column::UserId.eq(*user_id))
                .add(approver_links::Column::ApproverId.eq(link.approver_id))
                .add(approver_links::Column::Label.eq(link.label.as_str())),
        )
    })
}

/// The users of the tenant with an approver written since `since` (created, changed or
/// touched): those whose sets a check made before then may now answer otherwise.
pub async fn approved_by_written_since(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    since: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<i64>, DbErr> {
    let sql = "SELECT DISTINCT l.user_id FROM approver_links l \
               JOIN users a ON a.id = l.approver_id \
               WHERE l.tenant = ? AND a.tenant = ? AND a.updated_at >= ?";
    let values = vec![tenant.as_str().into(), tenant.as_str().into(), since.into()];
    conn.query_all_raw(db::statement(conn.get_database_backend(), sql, values))
        .await?
        .iter()
        .map(|row| row.try_get_by_index(0))
        .collect()
}
