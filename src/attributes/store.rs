//! The SQL of attribute changes: the users' attributes read, and replaced for those that
//! changed, in statements per chunk of [`CHUNK`] users.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use entity::user_attributes;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter};

use super::CHUNK;
use crate::auth::TenantId;
use crate::users::profile::Attribute;
use crate::users::store;

/// The attributes of each of `ids` that has some, by name.
pub(super) async fn current(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    ids: &[i64],
) -> Result<HashMap<i64, BTreeMap<String, Attribute>>, DbErr> {
    let mut state = HashMap::new();
    for chunk in ids.chunks(CHUNK) {
        for (id, attributes) in store::attributes_of(conn, tenant, chunk).await? {
            state.insert(
                id,
                attributes
                    .into_iter()
                    .map(|a| (a.name.clone(), a))
                    .collect(),
            );
        }
    }
    Ok(state)
}

/// Replaces the attributes of the `changed` users with their new sets and moves their
/// `updated_at`.
pub(super) async fn write(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    changed: &[i64],
    state: &HashMap<i64, BTreeMap<String, Attribute>>,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    for chunk in changed.chunks(CHUNK) {
        user_attributes::Entity::delete_many()
            .filter(user_attributes::Column::Tenant.eq(tenant.as_str()))
            .filter(user_attributes::Column::UserId.is_in(chunk.iter().copied()))
            .exec(conn)
            .await?;
        store::touch_many(conn, tenant, chunk, now).await?;
    }
    let rows: Vec<user_attributes::ActiveModel> = changed
        .iter()
        .flat_map(|id| {
            state
                .get(id)
                .into_iter()
                .flat_map(|attributes| attributes.values())
                .map(|attribute| store::attribute_row(tenant, *id, attribute))
        })
        .collect();
    crate::db::insert_in_chunks(conn, rows).await
}
