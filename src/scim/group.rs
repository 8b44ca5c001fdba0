//! SCIM Groups are tags: a group's members are the users carrying its tag, so an identity
//! provider's groups assign learning tracks (seed 003's rule). The group row keeps the name
//! the provider gave and an id that outlives a rename; every change of membership is a
//! change of the members' tags, written with the group's row in one transaction by
//! `users::membership`: each member that joins or leaves gains or loses that one tag.

use std::collections::BTreeSet;

use chrono::Utc;
use entity::{scim_groups, user_tags};
use sea_orm::sea_query::{Expr, SimpleExpr};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect,
};
use serde_json::{Value as Json, json};

use super::filter::{self, Filter, Op};
use super::patch as patch_op;
use super::query::{exact_compare, id_value, invalid, ordered};
use super::service::{Context, MAX_RESULTS, parse_id};
use super::{GROUP, LIST_RESPONSE, ScimError, ScimResult, ScimType};
use crate::users::domain::Tags;
use crate::users::membership::{self, MembershipError};
use crate::users::store;

/// A group as a request leaves it: its name, external id and members (user ids).
#[derive(Debug, Clone, PartialEq, Eq)]
struct State {
    display_name: String,
    external_id: Option<String>,
    members: BTreeSet<i64>,
}

async fn stored(cx: &Context<'_>, id: &str) -> ScimResult<scim_groups::Model> {
    let id = parse_id(id, "group")?;
    scim_groups::Entity::find_by_id(id)
        .filter(scim_groups::Column::Tenant.eq(cx.tenant.as_str()))
        .one(cx.db)
        .await?
        .ok_or_else(|| ScimError::not_found(format!("no group {id}")))
}

/// The ids of the users carrying `tag`, in order.
async fn members_of(cx: &Context<'_>, tag: &str) -> ScimResult<BTreeSet<i64>> {
    let rows: Vec<i64> = user_tags::Entity::find()
        .select_only()
        .column(user_tags::Column::UserId)
        .filter(user_tags::Column::Tenant.eq(cx.tenant.as_str()))
        .filter(user_tags::Column::Tag.eq(tag))
        .into_tuple()
        .all(cx.db)
        .await?;
    Ok(rows.into_iter().collect())
}

/// The members of several groups at once, by tag.
async fn members_by_tag(
    cx: &Context<'_>,
    groups: &[scim_groups::Model],
) -> ScimResult<std::collections::HashMap<String, BTreeSet<i64>>> {
    let mut members: std::collections::HashMap<String, BTreeSet<i64>> =
        std::collections::HashMap::new();
    let tags: Vec<&str> = groups.iter().map(|g| g.tag.as_str()).collect();
    for chunk in tags.chunks(store::IN_CHUNK) {
        let rows: Vec<(i64, String)> = user_tags::Entity::find()
            .select_only()
            .column(user_tags::Column::UserId)
            .column(user_tags::Column::Tag)
            .filter(user_tags::Column::Tenant.eq(cx.tenant.as_str()))
            .filter(user_tags::Column::Tag.is_in(chunk.iter().copied()))
            .into_tuple()
            .all(cx.db)
            .await?;
        for (user, tag) in rows {
            members.entry(tag).or_default().insert(user);
        }
    }
    Ok(members)
}

async fn resource(cx: &Context<'_>, group: &scim_groups::Model) -> ScimResult<Json> {
    let members = members_of(cx, &group.tag).await?;
    Ok(resource_of(cx, group, members))
}

fn resource_of(cx: &Context<'_>, group: &scim_groups::Model, members: BTreeSet<i64>) -> Json {
    let version = version(group, &members);
    let members: Vec<Json> = members
        .into_iter()
        .map(|id| {
            json!({
                "value": id.to_string(),
                "$ref": format!("{}/Users/{id}", cx.base),
                "type": "User",
            })
        })
        .collect();
    let time = |t: &chrono::DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut doc = json!({
        "schemas": [GROUP],
        "id": group.id.to_string(),
        "displayName": group.display_name,
        "members": members,
        "meta": {
            "resourceType": "Group",
            "created": time(&group.created_at),
            "lastModified": time(&group.updated_at),
            "location": format!("{}/Groups/{}", cx.base, group.id),
            "version": version,
        },
    });
    if let Some(external_id) = &group.external_id {
        doc["externalId"] = json!(external_id);
    }
    doc
}

pub async fn get(cx: &Context<'_>, id: &str) -> ScimResult<Json> {
    let group = stored(cx, id).await?;
    resource(cx, &group).await
}

pub async fn list(
    cx: &Context<'_>,
    filter: Option<&str>,
    start_index: Option<i64>,
    count: Option<i64>,
) -> ScimResult<Json> {
    let mut condition = Condition::all().add(scim_groups::Column::Tenant.eq(cx.tenant.as_str()));
    if let Some(filter) = filter.filter(|f| !f.trim().is_empty()) {
        condition = condition.add(sql(&filter::parse(filter)?)?);
    }
    let start = start_index.unwrap_or(1).max(1);
    let count = u64::try_from(count.unwrap_or(100).max(0))
        .unwrap_or(0)
        .min(MAX_RESULTS);
    let query = scim_groups::Entity::find().filter(condition);
    let total = query.clone().count(cx.db).await?;
    let groups = if count == 0 {
        Vec::new()
    } else {
        query
            .order_by_asc(scim_groups::Column::Id)
            .offset(u64::try_from(start - 1).unwrap_or(0))
            .limit(count)
            .all(cx.db)
            .await?
    };
    let mut members = members_by_tag(cx, &groups).await?;
    let resources: Vec<Json> = groups
        .iter()
        .map(|g| resource_of(cx, g, members.remove(&g.tag).unwrap_or_default()))
        .collect();
    Ok(json!({
        "schemas": [LIST_RESPONSE],
        "totalResults": total,
        "startIndex": start,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    }))
}

/// A filter on groups: `displayName` (case-insensitive), `externalId` and `id`.
fn sql(filter: &Filter) -> ScimResult<SimpleExpr> {
    use scim_groups::Column as C;
    use sea_orm::sea_query::ExprTrait;
    Ok(match filter {
        Filter::And(a, b) => sql(a)?.and(sql(b)?),
        Filter::Or(a, b) => sql(a)?.or(sql(b)?),
        Filter::Not(f) => sql(f)?.not(),
        Filter::Present(path) => match path.attr.to_ascii_lowercase().as_str() {
            "externalid" => Expr::col(C::ExternalId).is_not_null(),
            "displayname" | "id" => Expr::cust("1 = 1"),
            _ => {
                return Err(invalid(format!(
                    "{path}: Roster cannot filter groups on this"
                )));
            }
        },
        Filter::Compare(path, op, value) if path.sub.is_none() => {
            match path.attr.to_ascii_lowercase().as_str() {
                // The group's tag is its name as `Tags::parse` leaves it (trimmed, lower-cased
                // in every script); SQLite's lower() folds ASCII letters only.
                "displayname" => {
                    let value = match value.as_str() {
                        Some(text) if matches!(op, Op::Co | Op::Sw | Op::Ew) => {
                            Json::String(text.to_lowercase())
                        }
                        Some(text) => Json::String(text.trim().to_lowercase()),
                        None => value.clone(),
                    };
                    exact_compare(Expr::col(C::Tag), *op, &value, path)?
                }
                "externalid" => exact_compare(Expr::col(C::ExternalId), *op, value, path)?,
                "id" => ordered(Expr::col(C::Id), *op, id_value(value, path)?.into(), path)?,
                _ => {
                    return Err(invalid(format!(
                        "{path}: Roster cannot filter groups on this"
                    )));
                }
            }
        }
        other => {
            return Err(invalid(format!(
                "{other:?}: Roster cannot filter groups on this"
            )));
        }
    })
}

/// A group as sent: `schemas`, `displayName`, `externalId`, `members`; every problem named.
fn parse(body: &Json) -> ScimResult<State> {
    let mut problems = Vec::new();
    let Some(object) = body.as_object() else {
        return Err(ScimError::bad(
            ScimType::InvalidSyntax,
            "the body must be a JSON object",
        ));
    };
    let schemas_ok = object
        .get("schemas")
        .and_then(Json::as_array)
        .is_some_and(|s| {
            s.iter()
                .any(|u| u.as_str().is_some_and(|u| u.eq_ignore_ascii_case(GROUP)))
        });
    if !schemas_ok {
        problems.push(format!("schemas: must hold {GROUP}"));
    }
    let mut state = State {
        display_name: String::new(),
        external_id: None,
        members: BTreeSet::new(),
    };
    for (key, value) in object {
        match key.to_ascii_lowercase().as_str() {
            "schemas" | "id" | "meta" => {}
            "displayname" => match value.as_str() {
                Some(name) => state.display_name = name.to_owned(),
                None => problems.push("displayName: must be a string".to_owned()),
            },
            "externalid" => match value {
                Json::String(id) if !id.trim().is_empty() => {
                    state.external_id = Some(id.trim().to_owned())
                }
                Json::String(_) | Json::Null => {}
                _ => problems.push("externalId: must be a string".to_owned()),
            },
            "members" => match member_ids(value) {
                Ok(ids) => state.members = ids,
                Err(problem) => problems.push(problem),
            },
            _ => problems.push(format!("{key}: unknown attribute")),
        }
    }
    if problems.is_empty() {
        Ok(state)
    } else {
        Err(ScimError::many(ScimType::InvalidValue, &problems))
    }
}

/// The user ids of a `members` value: a list of `{value}` (or one).
fn member_ids(value: &Json) -> Result<BTreeSet<i64>, String> {
    let items = match value {
        Json::Array(items) => items.clone(),
        Json::Null => Vec::new(),
        single => vec![single.clone()],
    };
    items
        .iter()
        .map(|item| {
            let value = item
                .as_object()
                .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case("value")))
                .map(|(_, v)| v)
                .ok_or_else(|| "members: each member is an object with a value".to_owned())?;
            let text = match value {
                Json::String(text) => text.clone(),
                Json::Number(number) => number.to_string(),
                _ => String::new(),
            };
            text.trim()
                .parse::<i64>()
                .ok()
                .filter(|id| *id > 0)
                .ok_or_else(|| format!("members: {value} is not the id of a user"))
        })
        .collect()
}

/// The tag a display name gives its members, checked as tags are.
fn tag_of(display_name: &str) -> ScimResult<String> {
    match Tags::parse([display_name]) {
        Ok(tags) => tags
            .as_slice()
            .first()
            .cloned()
            .ok_or_else(|| ScimError::bad(ScimType::InvalidValue, "displayName: is required")),
        Err(problems) => Err(ScimError::many(
            ScimType::InvalidValue,
            &problems
                .into_iter()
                .map(|(_, p)| format!("displayName: {}", p.message))
                .collect::<Vec<_>>(),
        )),
    }
}

/// The most characters of a group's `externalId`, its column's size.
const EXTERNAL_ID_MAX_LEN: usize = 255;

/// Refuses an `externalId` its column cannot hold, before anything is written. The
/// `displayName` needs no such check: its tag, as long or longer, is checked already.
fn check_external_id(state: &State) -> ScimResult<()> {
    match &state.external_id {
        Some(id) if id.chars().count() > EXTERNAL_ID_MAX_LEN => Err(ScimError::bad(
            ScimType::InvalidValue,
            format!("externalId: must be at most {EXTERNAL_ID_MAX_LEN} characters"),
        )),
        _ => Ok(()),
    }
}

pub async fn create(cx: &Context<'_>, body: &Json) -> ScimResult<Json> {
    let state = parse(body)?;
    let tag = tag_of(&state.display_name)?;
    check_external_id(&state)?;
    let now = Utc::now();
    let txn = begin(cx).await?;
    let group = scim_groups::ActiveModel {
        tenant: Set(cx.tenant.as_str().to_owned()),
        tag: Set(tag.clone()),
        display_name: Set(state.display_name.trim().to_owned()),
        external_id: Set(state.external_id.clone()),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(&txn)
    .await
    .map_err(|error| taken(error, &state.display_name))?;
    membership::set_holders(&txn, cx.tenant, None, Some(&tag), &state.members, now)
        .await
        .map_err(refused)?;
    txn.commit().await?;
    resource(cx, &group).await
}

/// A write of groups: one transaction for the group's row and its members' tags, taking the
/// tenant's tags lock as every writer of tags does, so that a failure anywhere writes
/// nothing.
async fn begin(cx: &Context<'_>) -> ScimResult<sea_orm::DatabaseTransaction> {
    let txn = crate::db::begin_write(cx.db).await?;
    crate::db::lock_tenant(&txn, crate::tracks::TAGS_LOCK, cx.tenant).await?;
    Ok(txn)
}

/// Members that cannot take the group's tag, each named.
fn refused(error: MembershipError) -> ScimError {
    let problems: Vec<String> = match error {
        MembershipError::Db(error) => return error.into(),
        MembershipError::NotUsers(ids) => ids
            .iter()
            .map(|id| format!("members: no user {id}"))
            .collect(),
        MembershipError::TooManyTags(ids) => ids
            .iter()
            .map(|id| {
                format!(
                    "members: user {id} would carry more than {} tags",
                    Tags::MAX_COUNT
                )
            })
            .collect(),
    };
    ScimError::many(ScimType::InvalidValue, &problems)
}

fn taken(error: sea_orm::DbErr, name: &str) -> ScimError {
    if crate::db::is_unique_violation(&error) {
        return ScimError::bad(
            ScimType::Uniqueness,
            format!("displayName: a group named {name:?} exists already"),
        );
    }
    error.into()
}

pub async fn replace(
    cx: &Context<'_>,
    id: &str,
    body: &Json,
    if_match: Option<&str>,
) -> ScimResult<Json> {
    let group = stored(cx, id).await?;
    precondition(cx, &group, if_match).await?;
    let state = parse(body)?;
    write(cx, group, state).await
}

pub async fn delete(cx: &Context<'_>, id: &str, if_match: Option<&str>) -> ScimResult<()> {
    let group = stored(cx, id).await?;
    precondition(cx, &group, if_match).await?;
    let txn = begin(cx).await?;
    let deleted = scim_groups::Entity::delete_many()
        .filter(scim_groups::Column::Id.eq(group.id))
        .filter(scim_groups::Column::UpdatedAt.eq(group.updated_at))
        .exec(&txn)
        .await?;
    if deleted.rows_affected == 0 {
        return Err(super::changed(&format!("group {id}")));
    }
    let nobody = BTreeSet::new();
    membership::set_holders(&txn, cx.tenant, Some(&group.tag), None, &nobody, Utc::now())
        .await
        .map_err(refused)?;
    txn.commit().await?;
    Ok(())
}

/// A group's version (`meta.version`, the `ETag`): its row's and its members' digest, as
/// members change with their users' tags.
fn version(group: &scim_groups::Model, members: &BTreeSet<i64>) -> String {
    use sha2::{Digest, Sha256};
    let mut digest = Sha256::new();
    digest.update(group.updated_at.timestamp_micros().to_le_bytes());
    for member in members {
        digest.update(member.to_le_bytes());
    }
    let hex: String = digest.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("W/\"{hex}\"")
}

/// Refuses a write when `If-Match` names another version than the group's.
async fn precondition(
    cx: &Context<'_>,
    group: &scim_groups::Model,
    if_match: Option<&str>,
) -> ScimResult<()> {
    let Some(tags) = if_match else { return Ok(()) };
    let members = members_of(cx, &group.tag).await?;
    if super::matches(tags, &version(group, &members)) {
        Ok(())
    } else {
        Err(super::changed(&format!("group {}", group.id)))
    }
}

/// Writes a group's new state in one transaction: its row, only if no other write of the
/// group came after `group` was read (else 412), and the tags of the members that join or
/// leave (or all of them, in a rename).
async fn write(cx: &Context<'_>, group: scim_groups::Model, state: State) -> ScimResult<Json> {
    let tag = tag_of(&state.display_name)?;
    check_external_id(&state)?;
    let now = Utc::now();
    let txn = begin(cx).await?;
    let updated = scim_groups::Entity::update_many()
        .set(scim_groups::ActiveModel {
            tag: Set(tag.clone()),
            display_name: Set(state.display_name.trim().to_owned()),
            external_id: Set(state.external_id.clone()),
            updated_at: Set(now),
            ..Default::default()
        })
        .filter(scim_groups::Column::Id.eq(group.id))
        .filter(scim_groups::Column::UpdatedAt.eq(group.updated_at))
        .exec(&txn)
        .await
        .map_err(|error| taken(error, &state.display_name))?;
    if updated.rows_affected == 0 {
        return Err(super::changed(&format!("group {}", group.id)));
    }
    membership::set_holders(
        &txn,
        cx.tenant,
        Some(&group.tag),
        Some(&tag),
        &state.members,
        now,
    )
    .await
    .map_err(refused)?;
    txn.commit().await?;
    get(cx, &group.id.to_string()).await
}

/// `PATCH /Groups/{id}`: `displayName`, `externalId` and `members` (add, remove — all, some,
/// or those a `members[value eq "…"]` path names — and replace), all checked before any
/// write.
pub async fn patch(
    cx: &Context<'_>,
    id: &str,
    body: &Json,
    if_match: Option<&str>,
) -> ScimResult<Json> {
    let operations = patch_op::operations(body)?;
    // The operations apply to the group as read; another write coming first reads it again.
    for _ in 0..REREADS {
        let group = stored(cx, id).await?;
        precondition(cx, &group, if_match).await?;
        let mut state = State {
            display_name: group.display_name.clone(),
            external_id: group.external_id.clone(),
            members: members_of(cx, &group.tag).await?,
        };
        patch_op::each(operations, |operation| apply(&mut state, operation))?;
        match write(cx, group, state).await {
            Err(error) if error.status == 412 && if_match.is_none() => continue,
            other => return other,
        }
    }
    Err(ScimError::status(
        409,
        format!("group {id} kept changing while this request ran; send it again"),
    ))
}

/// How many times a PATCH reads a group that changes under it again.
const REREADS: usize = 3;

fn apply(state: &mut State, operation: &Json) -> ScimResult<()> {
    let op = patch_op::field(operation, "op")
        .and_then(Json::as_str)
        .unwrap_or("")
        .to_ascii_lowercase();
    if !matches!(op.as_str(), "add" | "replace" | "remove") {
        return Err(ScimError::bad(
            ScimType::InvalidValue,
            format!("op: {op:?} is not add, replace or remove"),
        ));
    }
    let value = patch_op::field(operation, "value")
        .cloned()
        .unwrap_or(Json::Null);
    let Some(path) = patch_op::field(operation, "path").and_then(Json::as_str) else {
        if op == "remove" {
            return Err(ScimError::bad(ScimType::NoTarget, "remove needs a path"));
        }
        let Json::Object(values) = value else {
            return Err(ScimError::bad(
                ScimType::InvalidValue,
                "value: without a path, must be an object",
            ));
        };
        for (name, value) in values {
            one(state, &op, &name, None, value)?;
        }
        return Ok(());
    };
    let parsed = filter::parse_path(path)?;
    one(state, &op, &parsed.attr.attr, parsed.filter.as_ref(), value)
}

fn one(
    state: &mut State,
    op: &str,
    name: &str,
    filter: Option<&Filter>,
    value: Json,
) -> ScimResult<()> {
    let bad = |t, m: String| Err(ScimError::bad(t, m));
    match name.to_ascii_lowercase().as_str() {
        "id" | "meta" | "schemas" => bad(ScimType::Mutability, format!("{name}: is read-only")),
        "displayname" => match (op, value) {
            ("remove", _) => bad(
                ScimType::InvalidValue,
                "displayName: is required".to_owned(),
            ),
            (_, Json::String(name)) => {
                state.display_name = name;
                Ok(())
            }
            _ => bad(
                ScimType::InvalidValue,
                "displayName: must be a string".to_owned(),
            ),
        },
        "externalid" => {
            state.external_id = match (op, value) {
                ("remove", _) | (_, Json::Null) => None,
                (_, Json::String(id)) => Some(id),
                _ => {
                    return bad(
                        ScimType::InvalidValue,
                        "externalId: must be a string".to_owned(),
                    );
                }
            };
            Ok(())
        }
        "members" => {
            if let Some(filter) = filter {
                if op != "remove" {
                    return bad(
                        ScimType::InvalidPath,
                        "members[…]: only remove takes a filter".to_owned(),
                    );
                }
                let mut named = BTreeSet::new();
                named_members(filter, &mut named)?;
                state.members.retain(|m| !named.contains(m));
                return Ok(());
            }
            let ids = member_ids(&value).map_err(|p| ScimError::bad(ScimType::InvalidValue, p))?;
            match op {
                "add" => state.members.extend(ids),
                "replace" => state.members = ids,
                _ if value.is_null() => state.members.clear(),
                _ => state.members.retain(|m| !ids.contains(m)),
            }
            Ok(())
        }
        _ => bad(
            ScimType::InvalidPath,
            format!("{name}: unknown attribute of a group"),
        ),
    }
}

/// The ids a `members[value eq "1" or value eq "2"]` filter names.
fn named_members(filter: &Filter, out: &mut BTreeSet<i64>) -> ScimResult<()> {
    match filter {
        Filter::Or(a, b) => {
            named_members(a, out)?;
            named_members(b, out)
        }
        Filter::Compare(path, Op::Eq, value) if path.attr.eq_ignore_ascii_case("value") => {
            out.insert(id_value(value, path)?);
            Ok(())
        }
        _ => Err(ScimError::bad(
            ScimType::InvalidFilter,
            "members[…]: name members by value eq, joined by or",
        )),
    }
}
