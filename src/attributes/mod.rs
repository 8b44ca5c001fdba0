//! Attribute changes for many users at once (seed 004): each change succeeds or fails
//! alone, and the whole call runs in a bounded number of statements. No GraphQL here but
//! in `graphql`.

pub mod graphql;
mod store;

use std::collections::HashSet;

use chrono::Utc;
use entity::users;
use sea_orm::DatabaseConnection;
use sea_orm::sea_query::LockType;

use crate::auth::TenantId;
use crate::db;
use crate::error::{AppError, AppResult, FieldError};
use crate::users::lookup::UserKey;
use crate::users::profile::{Attribute, RawAttribute, check_attribute};
use crate::users::store as users_store;
use crate::validate::{Problem, Problems, required_text};

/// Most changes in one call.
pub const MAX_CHANGES: usize = 10_000;
/// Most attributes one user has, as in `importUser`.
pub const MAX_PER_USER: usize = 200;
/// The advisory-lock namespace of attribute calls.
const LOCK_KIND: &str = "attributes";

/// Ids or keys per `IN (…)` list: far below the bind-parameter limits of SQLite (32,766) and
/// PostgreSQL (65,535).
const CHUNK: usize = 500;

/// One change as sent: whose attributes, which to set, which to remove.
#[derive(Debug, Clone)]
pub struct AttributeChange {
    /// The user, or the problems of its lookup.
    pub user: Result<UserKey, Vec<FieldError>>,
    /// How the caller named the user, echoed as `lookupKey`.
    pub lookup_key: String,
    pub set: Vec<RawAttribute>,
    pub unset: Vec<String>,
}

/// What became of one change.
#[derive(Debug, Clone)]
pub struct ChangeResult {
    pub lookup_key: String,
    /// The user, when it was found (also when the change failed on its values).
    pub user: Option<users::Model>,
    pub errors: Vec<FieldError>,
}

impl ChangeResult {
    pub fn success(&self) -> bool {
        self.errors.is_empty()
    }
}

/// The text `lookupKey` shows for a lookup.
pub fn describe(key: &UserKey) -> String {
    match key {
        UserKey::Id(id) => format!("id:{id}"),
        UserKey::External {
            source,
            external_id,
        } => format!("externalId:{source}/{external_id}"),
        UserKey::Email(email) => format!("email:{email}"),
    }
}

/// The attributes a change sets and removes, checked; problems under `set[i].…`/`unset[i]`.
fn parse(change: &AttributeChange) -> Result<(Vec<Attribute>, Vec<String>), Vec<FieldError>> {
    let mut problems = Problems::default();
    if change.set.len() + change.unset.len() > MAX_PER_USER {
        problems.add(
            "set",
            Problem::new(
                "TOO_MANY",
                format!("at most {MAX_PER_USER} attributes set and unset per change"),
            ),
        );
        return Err(problems.into_field_errors());
    }
    let mut set = Vec::new();
    let mut remove: Vec<String> = Vec::new();
    let mut named: HashSet<String> = HashSet::new();
    for (index, attribute) in change.set.iter().enumerate() {
        let at = |field: &str| format!("set[{index}].{field}");
        match check_attribute(attribute, &mut named, &mut problems, at) {
            Some((_, Some(attribute))) => set.push(attribute),
            // A `null` value removes (a refused value fails the change anyway).
            Some((name, None)) => remove.push(name),
            None => {}
        }
    }
    for (index, name) in change.unset.iter().enumerate() {
        let Some(name) = problems.check(format!("unset[{index}]"), required_text(name, 100)) else {
            continue;
        };
        if named.contains(&name) {
            problems.add(
                format!("unset[{index}]"),
                Problem::new(
                    "CONFLICTING_FIELDS",
                    format!("{name:?} is both set and unset"),
                ),
            );
            continue;
        }
        remove.push(name);
    }
    if problems.is_empty() {
        Ok((set, remove))
    } else {
        Err(problems.into_field_errors())
    }
}

/// `setUserAttributes`: applies each change on its own; writes what changed in one
/// transaction, in a number of statements that grows with the call's size in chunks of
/// [`CHUNK`], never per change.
pub async fn set_user_attributes(
    db: &DatabaseConnection,
    tenant: &TenantId,
    changes: Vec<AttributeChange>,
) -> AppResult<Vec<ChangeResult>> {
    if changes.len() > MAX_CHANGES {
        return Err(AppError::invalid_fields(vec![FieldError::new(
            "changes",
            "TOO_MANY",
            format!("at most {MAX_CHANGES} changes per call"),
        )]));
    }
    let now = Utc::now();
    let txn = db::begin_write(db).await?;
    // Calls take turns per tenant, and the users' rows are locked against other writers
    // (PostgreSQL; SQLite has one writer at a time): a read-modify-write must not lose a
    // concurrent change.
    db::lock_tenant(&txn, LOCK_KIND, tenant).await?;
    let keys: Vec<&UserKey> = changes
        .iter()
        .filter_map(|c| c.user.as_ref().ok())
        .collect();
    let found = users_store::find_many(&txn, tenant, &keys, Some(LockType::Update)).await?;
    let mut ids: Vec<i64> = found.values().map(|u| u.id).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut state = store::current(&txn, tenant, &ids).await?;
    let before = state.clone();

    let mut results = Vec::with_capacity(changes.len());
    for change in &changes {
        let user = match &change.user {
            Err(errors) => {
                results.push(ChangeResult {
                    lookup_key: change.lookup_key.clone(),
                    user: None,
                    errors: errors.clone(),
                });
                continue;
            }
            Ok(key) => found.get(key).cloned(),
        };
        let Some(user) = user else {
            results.push(ChangeResult {
                lookup_key: change.lookup_key.clone(),
                user: None,
                errors: vec![FieldError::new(
                    "user",
                    "NOT_FOUND",
                    "no such user in this tenant",
                )],
            });
            continue;
        };
        let errors = match parse(change) {
            Ok((set, remove)) => {
                let current = state.entry(user.id).or_default();
                let mut attributes = current.clone();
                for name in remove {
                    attributes.remove(&name);
                }
                for attribute in set {
                    attributes.insert(attribute.name.clone(), attribute);
                }
                if attributes.len() > MAX_PER_USER {
                    vec![FieldError::new(
                        "set",
                        "TOO_MANY",
                        format!("a user has at most {MAX_PER_USER} attributes"),
                    )]
                } else {
                    *current = attributes;
                    Vec::new()
                }
            }
            Err(errors) => errors,
        };
        results.push(ChangeResult {
            lookup_key: change.lookup_key.clone(),
            user: Some(user),
            errors,
        });
    }

    let changed: Vec<i64> = state
        .iter()
        .filter(|(id, attributes)| {
            before
                .get(id)
                .map_or(!attributes.is_empty(), |old| old != *attributes)
        })
        .map(|(id, _)| *id)
        .collect();
    store::write(&txn, tenant, &changed, &state, now).await?;
    txn.commit().await?;
    for result in &mut results {
        if let Some(user) = &mut result.user
            && changed.contains(&user.id)
        {
            user.updated_at = now;
        }
    }
    Ok(results)
}
