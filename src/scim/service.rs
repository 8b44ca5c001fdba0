//! The SCIM operations on Users, over the domain services: reads through the users store,
//! every write through `users::import` (the decision `importUser` makes), so validation,
//! approver rules, tags and learning tracks are the GraphQL API's own.

use std::collections::HashMap;

use entity::{scim_groups, users};
use sea_orm::DatabaseConnection;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value as Json, json};

use super::user::{self, Stored};
use super::{
    ENTERPRISE_USER, LIST_RESPONSE, ROSTER_USER, ScimError, ScimResult, ScimType, filter, patch,
    query, validate,
};
use crate::approvers::ApproverChange;
use crate::approvers::store::{self as approver_store, Side};
use crate::auth::TenantId;
use crate::users::import::{self, ImportMode, Target, UserImportOptions};
use crate::users::lookup::UserKey;
use crate::users::store;

/// Who asks, and where the answers point.
pub struct Context<'a> {
    pub db: &'a DatabaseConnection,
    pub tenant: &'a TenantId,
    /// `https://host/scim/v2`, for `meta.location`.
    pub base: &'a str,
    /// The source of the users SCIM creates (`ROSTER_SCIM_SOURCE`).
    pub source: &'a str,
}

impl Context<'_> {
    /// Whose users a filter searches.
    pub fn scope(&self) -> query::Scope<'_> {
        query::Scope {
            tenant: self.tenant,
            source: self.source,
        }
    }
}

/// The largest page `GET /Users` answers (`filter.maxResults`).
pub const MAX_RESULTS: u64 = 1000;

/// One page of users, as a `ListResponse`. `start_index` is 1-based.
pub async fn list(
    cx: &Context<'_>,
    filter: Option<&str>,
    start_index: Option<i64>,
    count: Option<i64>,
) -> ScimResult<Json> {
    let filter = filter
        .filter(|f| !f.trim().is_empty())
        .map(filter::parse)
        .transpose()?;
    // RFC 7644 §3.4.2.4: below 1 counts as 1, a negative count as 0.
    let start = start_index.unwrap_or(1).max(1);
    let count = u64::try_from(count.unwrap_or(100).max(0))
        .unwrap_or(0)
        .min(MAX_RESULTS);
    let offset = u64::try_from(start - 1).unwrap_or(0);
    let (found, total) = query::page(cx.db, &cx.scope(), filter.as_ref(), offset, count).await?;
    let resources = resources(cx, &found).await?;
    Ok(json!({
        "schemas": [LIST_RESPONSE],
        "totalResults": total,
        "startIndex": start,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    }))
}

/// The users as resources, with their tags, attributes and managers read in one go.
async fn resources(cx: &Context<'_>, found: &[users::Model]) -> ScimResult<Vec<Json>> {
    let ids: Vec<i64> = found.iter().map(|u| u.id).collect();
    let mut tags = store::tags_of(cx.db, cx.tenant, &ids).await?;
    let mut attributes = store::attributes_of(cx.db, cx.tenant, &ids).await?;
    let managers = managers_of(cx, &ids).await?;
    let groups = groups_of(cx, tags.values().flatten()).await?;
    Ok(found
        .iter()
        .map(|u| {
            let profile = store::profile_from(
                u,
                tags.remove(&u.id).unwrap_or_default(),
                attributes.remove(&u.id).unwrap_or_default(),
            );
            let mut doc = user::resource(
                u,
                &profile,
                managers.get(&u.id).copied(),
                cx.base,
                cx.source,
            );
            let of_user: Vec<Json> = profile
                .tags
                .iter()
                .filter_map(|tag| groups.get(tag))
                .map(|(id, name)| {
                    json!({
                        "value": id.to_string(),
                        "$ref": format!("{}/Groups/{id}", cx.base),
                        "display": name,
                    })
                })
                .collect();
            if !of_user.is_empty() {
                doc["groups"] = Json::Array(of_user);
            }
            doc
        })
        .collect())
}

/// The groups of the tenant whose tags are among `tags`: id and name, by tag.
async fn groups_of(
    cx: &Context<'_>,
    tags: impl Iterator<Item = &String>,
) -> ScimResult<HashMap<String, (i64, String)>> {
    let mut tags: Vec<&String> = tags.collect();
    tags.sort();
    tags.dedup();
    let mut found = HashMap::new();
    for chunk in tags.chunks(store::IN_CHUNK) {
        let rows = scim_groups::Entity::find()
            .filter(scim_groups::Column::Tenant.eq(cx.tenant.as_str()))
            .filter(scim_groups::Column::Tag.is_in(chunk.iter().map(|t| t.as_str())))
            .all(cx.db)
            .await?;
        found.extend(rows.into_iter().map(|g| (g.tag, (g.id, g.display_name))));
    }
    Ok(found)
}

/// Each user's `MANAGER`, by id.
async fn managers_of(cx: &Context<'_>, ids: &[i64]) -> ScimResult<HashMap<i64, i64>> {
    let links = approver_store::links_by(cx.db, cx.tenant, Side::User, ids).await?;
    Ok(links
        .into_iter()
        .filter_map(|(user, links)| {
            links
                .into_iter()
                .find(|l| l.label == crate::approvers::Label::Manager.as_str())
                .map(|l| (user, l.approver_id))
        })
        .collect())
}

/// The Roster id a resource's `{id}` names; anything else names no `kind` (404).
pub(super) fn parse_id(id: &str, kind: &str) -> ScimResult<i64> {
    id.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ScimError::not_found(format!("no {kind} {id}")))
}

async fn stored(cx: &Context<'_>, id: &str) -> ScimResult<users::Model> {
    let id = parse_id(id, "user")?;
    store::find(cx.db, cx.tenant, &UserKey::Id(id))
        .await?
        .ok_or_else(|| ScimError::not_found(format!("no user {id}")))
}

pub async fn get(cx: &Context<'_>, id: &str) -> ScimResult<Json> {
    let user = stored(cx, id).await?;
    one(cx, &user).await
}

async fn one(cx: &Context<'_>, user: &users::Model) -> ScimResult<Json> {
    Ok(resources(cx, std::slice::from_ref(user))
        .await?
        .pop()
        .expect("one user, one resource"))
}

/// `POST /Users`: a new user; one that exists already is a `uniqueness` error.
pub async fn create(cx: &Context<'_>, body: &Json) -> ScimResult<Json> {
    let mut doc = validate::normalize(body)?;
    resolve_manager(cx, &mut doc).await?;
    let (changes, approvers) = user::changes(&doc, None, cx.source)?;
    let options = UserImportOptions {
        mode: ImportMode::CreateOnly,
        ..UserImportOptions::default()
    };
    let outcome =
        import::import_parsed(cx.db, cx.tenant, changes, &approvers, None, &options).await?;
    let user = outcome
        .user
        .ok_or_else(|| ScimError::status(500, "internal error"))?;
    one(cx, &user).await
}

/// `PUT /Users/{id}`: the resource as sent replaces the user's. With `If-Match`, only the
/// version it names.
pub async fn replace(
    cx: &Context<'_>,
    id: &str,
    body: &Json,
    if_match: Option<&str>,
) -> ScimResult<Json> {
    let user = stored(cx, id).await?;
    let read_at = precondition(&user, if_match)?;
    let doc = validate::normalize(body)?;
    write(
        cx,
        &user,
        &doc,
        read_at.then(|| user.updated_at.timestamp_micros()),
    )
    .await
}

/// `PATCH /Users/{id}`: the operations apply to the user as `GET` shows it; the result is
/// written as a `PUT` would write it, if the user is still as it was read (else it is read
/// again, or, with `If-Match`, the answer is 412).
pub async fn patch(
    cx: &Context<'_>,
    id: &str,
    body: &Json,
    if_match: Option<&str>,
) -> ScimResult<Json> {
    rewrite(cx, id, if_match, |doc| patch::apply(doc, body)).await
}

/// `DELETE /Users/{id}`: the user is deactivated and keeps its learning history.
pub async fn deactivate(cx: &Context<'_>, id: &str, if_match: Option<&str>) -> ScimResult<()> {
    rewrite(cx, id, if_match, |doc| {
        doc["active"] = Json::Bool(false);
        Ok(())
    })
    .await
    .map(|_| ())
}

/// Reads a user, changes its resource with `change`, and writes it unless the user changed
/// in between: then reads it again, a few times, unless `If-Match` named the version read.
async fn rewrite(
    cx: &Context<'_>,
    id: &str,
    if_match: Option<&str>,
    change: impl Fn(&mut Json) -> ScimResult<()>,
) -> ScimResult<Json> {
    for _ in 0..REREADS {
        let user = stored(cx, id).await?;
        precondition(&user, if_match)?;
        let mut doc = one(cx, &user).await?;
        change(&mut doc)?;
        removed_means_none(&mut doc);
        let doc = validate::normalize(&doc)?;
        match write(cx, &user, &doc, Some(user.updated_at.timestamp_micros())).await {
            Err(error) if error.status == 412 && if_match.is_none() => continue,
            other => return other,
        }
    }
    Err(ScimError::status(
        409,
        format!("user {id} kept changing while this request ran; send it again"),
    ))
}

/// The resource as read always holds Roster's `tags` and `attributes`, so one that lacks
/// them after a PATCH had them removed: they are sent as none, not left out (which a PUT
/// takes as "keep them").
fn removed_means_none(doc: &mut Json) {
    if let Some(roster) = doc.get_mut(ROSTER_USER).and_then(Json::as_object_mut) {
        for name in ["tags", "attributes"] {
            roster
                .entry(name)
                .or_insert_with(|| Json::Array(Vec::new()));
        }
    }
}

/// How many times a PATCH reads a user that changes under it again.
const REREADS: usize = 3;

/// Whether `If-Match` lets a write apply to the user as read; `true` when one was sent.
fn precondition(user: &users::Model, if_match: Option<&str>) -> ScimResult<bool> {
    match if_match {
        None => Ok(false),
        Some(tags) if super::matches(tags, &super::user_version(&user.updated_at)) => Ok(true),
        Some(_) => Err(super::changed(&format!("user {}", user.id))),
    }
}

async fn write(
    cx: &Context<'_>,
    user: &users::Model,
    doc: &Json,
    read_at: Option<i64>,
) -> ScimResult<Json> {
    let mut doc = doc.clone();
    resolve_manager(cx, &mut doc).await?;
    let profile = store::profile_of(cx.db, cx.tenant, user).await?;
    let stored = Stored {
        user,
        profile: &profile,
    };
    let (changes, approvers) = user::changes(&doc, Some(&stored), cx.source)?;
    let approvers = unchanged_manager(cx, user.id, approvers).await?;
    let target = Target {
        id: user.id,
        read_at,
    };
    let outcome = import::import_parsed(
        cx.db,
        cx.tenant,
        changes,
        &approvers,
        Some(target),
        &UserImportOptions::default(),
    )
    .await?;
    let user = outcome
        .user
        .ok_or_else(|| ScimError::status(500, "internal error"))?;
    one(cx, &user).await
}

/// Makes the enterprise `manager.value` (or the id its `$ref` ends with) the Roster id of
/// the user it names in the tenant: a Roster id, else the `externalId` of a user of the
/// SCIM source (Okta's), else a `userName` (login, whatever the case). A value that names
/// no user is an `invalidValue`.
async fn resolve_manager(cx: &Context<'_>, doc: &mut Json) -> ScimResult<()> {
    let Some(manager) = doc
        .get_mut(ENTERPRISE_USER)
        .and_then(|e| e.get_mut("manager"))
        .filter(|m| m.is_object())
    else {
        return Ok(());
    };
    let by_ref = manager
        .get("$ref")
        .and_then(Json::as_str)
        .and_then(|r| r.trim_end_matches('/').rsplit('/').next());
    let Some(value) = manager
        .get("value")
        .and_then(Json::as_str)
        .or(by_ref)
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
    else {
        return Ok(());
    };
    let mut found = None;
    if let Some(id) = value.parse::<i64>().ok().filter(|id| *id > 0) {
        found = store::find(cx.db, cx.tenant, &UserKey::Id(id)).await?;
    }
    if found.is_none() {
        let key = UserKey::External {
            source: cx.source.to_owned(),
            external_id: value.clone(),
        };
        found = store::find(cx.db, cx.tenant, &key).await?;
    }
    if found.is_none() {
        found = users::Entity::find()
            .filter(users::Column::Tenant.eq(cx.tenant.as_str()))
            .filter(users::Column::LoginKey.eq(value.to_lowercase()))
            .one(cx.db)
            .await?;
    }
    match found {
        Some(user) => {
            *manager = json!({ "value": user.id.to_string() });
            Ok(())
        }
        None => Err(ScimError::bad(
            ScimType::InvalidValue,
            format!(
                "{ENTERPRISE_USER}:manager.value: {value:?} is not the id, externalId or userName of a user"
            ),
        )),
    }
}

/// A manager sent as the one stored is no change: the approver rules (the approver exists
/// and is active) judge a manager being set, not one a PUT sends back as it is, or that a
/// PATCH or DELETE of other attributes carries over from the resource as read.
async fn unchanged_manager(
    cx: &Context<'_>,
    user_id: i64,
    approvers: ApproverChange,
) -> ScimResult<ApproverChange> {
    let sent = match &approvers {
        ApproverChange::SetManager(None, _) => None,
        ApproverChange::SetManager(Some(spec), _) => match spec.approver {
            UserKey::Id(id) => Some(id),
            _ => return Ok(approvers),
        },
        _ => return Ok(approvers),
    };
    let stored = managers_of(cx, &[user_id]).await?.get(&user_id).copied();
    Ok(if sent == stored {
        ApproverChange::Keep
    } else {
        approvers
    })
}
