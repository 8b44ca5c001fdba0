//! The mapping between a SCIM `User` resource and a Roster user (the README's table).
//!
//! [`changes`] turns a resource checked by `validate::normalize` into the very
//! `UserChanges` an `importUser` would make, so that the same validation and decision
//! apply. [`resource`] is the other way round.

use entity::users;
use serde_json::{Map, Value as Json, json};

use super::{CORE_USER, ENTERPRISE_USER, ROSTER_USER, ScimError, ScimResult, ScimType};
use crate::approvers::{ApproverChange, ApproverSpec};
use crate::error::AppError;
use crate::users::lookup::UserKey;
use crate::users::profile::{Gender, Language, Patch, Profile, RawAttribute, RawUser, UserChanges};

/// The attribute `employeeNumber` of the enterprise extension is kept under.
pub const EMPLOYEE_NUMBER: &str = "employeeNumber";
/// The prefix of the input paths the domain names problems with.
const PREFIX: &str = "user";

/// The stored user a write applies to.
pub struct Stored<'a> {
    pub user: &'a users::Model,
    pub profile: &'a Profile,
}

/// A user as a SCIM resource. Only a user of the SCIM `source` has an `externalId`: another
/// source's is that source's key, not the identity provider's.
pub fn resource(
    user: &users::Model,
    profile: &Profile,
    manager: Option<i64>,
    base: &str,
    source: &str,
) -> Json {
    let mut doc = json!({
        "schemas": [CORE_USER, ENTERPRISE_USER, ROSTER_USER],
        "id": user.id.to_string(),
        "userName": profile.login,
        "name": { "givenName": profile.first_name, "familyName": profile.last_name },
        "active": profile.active,
        "emails": [{ "value": profile.email, "type": "work", "primary": true }],
        "meta": {
            "resourceType": "User",
            "created": user.created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "lastModified": user.updated_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "version": super::user_version(&user.updated_at),
            "location": format!("{base}/Users/{}", user.id),
        },
    });
    if profile.source == source {
        doc["externalId"] = json!(profile.external_id);
    }
    if let Some(middle) = &profile.middle_name {
        doc["name"]["middleName"] = json!(middle);
    }
    if let Some(title) = &profile.title {
        doc["title"] = json!(title);
    }
    if let Some(language) = profile.language {
        doc["preferredLanguage"] = json!(language.as_str().to_lowercase());
    }
    if let Some(phone) = &profile.phone {
        doc["phoneNumbers"] = json!([{ "value": phone, "type": "work", "primary": true }]);
    }
    if let Some(city) = &profile.city {
        doc["addresses"] = json!([{ "locality": city, "type": "work", "primary": true }]);
    }
    let mut enterprise = Map::new();
    let put = |map: &mut Map<String, Json>, name: &str, value: &Option<String>| {
        if let Some(value) = value {
            map.insert(name.to_owned(), json!(value));
        }
    };
    put(&mut enterprise, "department", &profile.department);
    put(&mut enterprise, "organization", &profile.company);
    let (employee_number, attributes): (Vec<_>, Vec<_>) = profile
        .attributes
        .iter()
        .partition(|a| a.name == EMPLOYEE_NUMBER);
    if let Some(number) = employee_number.first() {
        enterprise.insert(EMPLOYEE_NUMBER.to_owned(), json!(number.value));
    }
    if let Some(id) = manager {
        enterprise.insert(
            "manager".to_owned(),
            json!({ "value": id.to_string(), "$ref": format!("{base}/Users/{id}") }),
        );
    }
    doc[ENTERPRISE_USER] = Json::Object(enterprise);
    let mut roster = Map::new();
    roster.insert("tags".to_owned(), json!(profile.tags));
    roster.insert(
        "attributes".to_owned(),
        attributes
            .iter()
            .map(|a| {
                let mut attribute = json!({
                    "name": a.name, "value": a.value, "type": a.kind.as_str(),
                });
                if let Some(class) = &a.class {
                    attribute["class"] = json!(class);
                }
                attribute
            })
            .collect(),
    );
    put(&mut roster, "structureUid", &profile.structure_uid);
    put(&mut roster, "position", &profile.position);
    put(&mut roster, "workContact", &profile.work_contact);
    let date = |d: Option<chrono::NaiveDate>| d.map(|d| d.format("%Y-%m-%d").to_string());
    put(&mut roster, "birthDate", &date(profile.birth_date));
    put(
        &mut roster,
        "gender",
        &profile.gender.map(|g| g.as_str().to_owned()),
    );
    put(
        &mut roster,
        "employmentStartDate",
        &date(profile.employment_start_date),
    );
    put(
        &mut roster,
        "employmentEndDate",
        &date(profile.employment_end_date),
    );
    put(
        &mut roster,
        "positionAssignedDate",
        &date(profile.position_assigned_date),
    );
    put(
        &mut roster,
        "customInfo",
        &profile.custom_info.as_ref().map(|c| custom_info_text(&c.0)),
    );
    roster.insert("source".to_owned(), json!(profile.source));
    doc[ROSTER_USER] = Json::Object(roster);
    doc
}

/// `customInfo` as SCIM text, which [`changes`] reads back as the very JSON stored: JSON as
/// its text, and a string as itself unless that text would read as other JSON (`"42"`) or
/// as nothing (blank), when it is the string's JSON text (`"\"42\""`).
fn custom_info_text(info: &Json) -> String {
    match info {
        Json::String(text)
            if !text.trim().is_empty() && serde_json::from_str::<Json>(text).is_err() =>
        {
            text.clone()
        }
        other => other.to_string(),
    }
}

/// The SCIM attribute a domain input path names (`user.firstName` is `name.givenName`).
pub fn scim_name(field: &str) -> String {
    let field = field
        .strip_prefix(PREFIX)
        .and_then(|f| f.strip_prefix('.'))
        .unwrap_or(field);
    let (head, rest) = match field.find(['.', '[']) {
        Some(at) => field.split_at(at),
        None => (field, ""),
    };
    let core = |name: &str| name.to_owned();
    let enterprise = |name: &str| format!("{ENTERPRISE_USER}:{name}");
    let roster = |name: &str| format!("{ROSTER_USER}:{name}{rest}");
    match head {
        "externalId" => core("externalId"),
        "email" => core("emails"),
        "login" => core("userName"),
        "firstName" => core("name.givenName"),
        "middleName" => core("name.middleName"),
        "lastName" => core("name.familyName"),
        "title" => core("title"),
        "password" | "passwordHash" => core("password"),
        "active" => core("active"),
        "phone" => core("phoneNumbers"),
        "city" => core("addresses"),
        "language" => core("preferredLanguage"),
        "department" => enterprise("department"),
        "company" => enterprise("organization"),
        "managerExternalId" | "approvers" => enterprise("manager.value"),
        EMPLOYEE_NUMBER => enterprise(EMPLOYEE_NUMBER),
        "attributes" => roster("attributes"),
        other => roster(other),
    }
}

/// A normalized resource as the changes of an import: the same checks, the same decision.
/// A new user takes `source`; a stored one keeps its own. An extension left out keeps its
/// attributes as they are, and so do Roster's `tags` and `attributes` left out of it; a core
/// attribute left out is cleared (PUT replaces).
pub fn changes(
    doc: &Json,
    stored: Option<&Stored<'_>>,
    source: &str,
) -> ScimResult<(UserChanges, ApproverChange)> {
    let mut problems: Vec<String> = Vec::new();
    let text = |value: Option<&Json>| -> Patch<String> {
        match value.and_then(Json::as_str) {
            Some(text) if !text.trim().is_empty() => Patch::Set(text.to_owned()),
            _ => Patch::Clear,
        }
    };
    let name = doc.get("name");
    let field = |value: Option<&Json>| value.and_then(Json::as_str).unwrap_or("").to_owned();
    let user_name = field(doc.get("userName"));
    if user_name.trim().is_empty() {
        problems.push("userName: is required".to_owned());
    }
    // SCIM's externalId is a key in the SCIM source only: a user of another source (an HR
    // import's) keeps that source's key, which its next import matches it by.
    let external_id = match (stored, doc.get("externalId").and_then(Json::as_str)) {
        (Some(s), _) if s.user.source != source => s.user.external_id.clone(),
        (_, Some(id)) if !id.trim().is_empty() => id.to_owned(),
        _ => stored.map_or_else(|| user_name.clone(), |s| s.user.external_id.clone()),
    };
    let emails = doc.get("emails");
    let email = pick(emails, &["work"])
        .and_then(|e| e.get("value"))
        .map(|v| field(Some(v)));
    // None: the domain names `emails` as required.
    let email = email.unwrap_or_default();
    let phone = pick(doc.get("phoneNumbers"), &["work", "mobile"]).and_then(|p| p.get("value"));
    let city = pick(doc.get("addresses"), &["work"]).and_then(|a| a.get("locality"));
    let language = match doc
        .get("preferredLanguage")
        .filter(|v| !v.is_null())
        .or_else(|| doc.get("locale"))
        .and_then(Json::as_str)
    {
        None => Patch::Clear,
        Some(tag) if tag.trim().is_empty() => Patch::Clear,
        Some(tag) => {
            let code = tag
                .split(['-', '_'])
                .next()
                .unwrap_or("")
                .to_ascii_uppercase();
            match Language::from_stored(&code) {
                Some(language) => Patch::Set(language),
                None => {
                    problems.push(format!(
                        "preferredLanguage: {tag:?} is not one of en, uk, de, es, et, tr, ru, nl, fr"
                    ));
                    Patch::Keep
                }
            }
        }
    };
    let mut raw = RawUser {
        external_id,
        source: Some(stored.map_or_else(|| source.to_owned(), |s| s.user.source.clone())),
        email,
        login: Patch::Set(user_name),
        first_name: field(name.and_then(|n| n.get("givenName"))),
        middle_name: text(name.and_then(|n| n.get("middleName"))),
        last_name: field(name.and_then(|n| n.get("familyName"))),
        title: text(doc.get("title")),
        // Left out, a stored user stays as active as it is; a new one is active.
        active: match doc.get("active") {
            Some(Json::Bool(active)) => Patch::Set(*active),
            _ => Patch::Keep,
        },
        // RFC 3966's form, which RFC 7643 suggests, around the E.164 number Roster keeps.
        phone: text(phone).map(|p| p.trim().strip_prefix("tel:").unwrap_or(&p).to_owned()),
        city: text(city),
        language,
        ..RawUser::default()
    };
    if let Some(password) = doc.get("password").and_then(Json::as_str) {
        raw.password = Patch::Set(password.to_owned());
    }
    let enterprise = doc.get(ENTERPRISE_USER).filter(|e| e.is_object());
    let roster = doc.get(ROSTER_USER).filter(|r| r.is_object());
    let mut approvers = ApproverChange::Keep;
    if let Some(enterprise) = enterprise {
        raw.department = text(enterprise.get("department"));
        raw.company = text(enterprise.get("organization"));
        let manager = enterprise.get("manager");
        let by_ref = manager
            .and_then(|m| m.get("$ref"))
            .and_then(Json::as_str)
            .and_then(|r| r.trim_end_matches('/').rsplit('/').next());
        let manager = manager
            .and_then(|m| m.get("value"))
            .and_then(Json::as_str)
            .or(by_ref)
            .filter(|v| !v.trim().is_empty());
        let path = format!("{PREFIX}.managerExternalId");
        approvers = match manager {
            None => ApproverChange::SetManager(None, path),
            Some(id) => match id.trim().parse::<i64>().ok().filter(|id| *id > 0) {
                Some(id) => {
                    ApproverChange::SetManager(Some(ApproverSpec::manager(UserKey::Id(id))), path)
                }
                None => {
                    problems.push(format!(
                        "{ENTERPRISE_USER}:manager.value: {id:?} is not the id of a user"
                    ));
                    ApproverChange::Keep
                }
            },
        };
    }
    if let Some(roster) = roster {
        // Left out, the tags stay: they are the user's groups, which a full PUT from an
        // identity provider that knows nothing of them must not take away.
        raw.tags = match roster.get("tags") {
            None => Patch::Keep,
            Some(Json::Array(tags)) => Patch::Set(
                tags.iter()
                    .filter_map(|t| t.as_str().map(str::to_owned))
                    .collect(),
            ),
            Some(_) => Patch::Clear,
        };
        raw.structure_uid = text(roster.get("structureUid"));
        raw.position = text(roster.get("position"));
        raw.work_contact = text(roster.get("workContact"));
        let date = |name: &str| text(roster.get(name)).map(|d| date_part(&d));
        raw.birth_date = date("birthDate");
        raw.employment_start_date = date("employmentStartDate");
        raw.employment_end_date = date("employmentEndDate");
        raw.position_assigned_date = date("positionAssignedDate");
        raw.gender = match text(roster.get("gender")) {
            Patch::Set(gender) => match Gender::from_stored(&gender.to_ascii_uppercase()) {
                Some(gender) => Patch::Set(gender),
                None => {
                    problems.push(format!(
                        "{ROSTER_USER}:gender: {gender:?} is not MALE, FEMALE or OTHER"
                    ));
                    Patch::Keep
                }
            },
            _ => Patch::Clear,
        };
        // JSON text is kept as that JSON; other text, as a JSON string: what
        // `custom_info_text` emits reads back as it was stored.
        raw.custom_info = match text(roster.get("customInfo")) {
            Patch::Set(info) => {
                Patch::Set(serde_json::from_str::<Json>(&info).unwrap_or(Json::String(info)))
            }
            _ => Patch::Clear,
        };
    }
    raw.attributes = attributes_of(enterprise, roster, stored, &mut problems);
    let parsed = UserChanges::parse(raw, PREFIX);
    match parsed {
        Ok(changes) if problems.is_empty() => Ok((changes, approvers)),
        Ok(_) => Err(ScimError::many(ScimType::InvalidValue, &problems)),
        Err(field_errors) => {
            let ScimError { detail, .. } = AppError::invalid_fields(field_errors).into();
            problems.push(detail);
            Err(ScimError::many(ScimType::InvalidValue, &problems))
        }
    }
}

/// The date of a SCIM date-time (`1988-07-26T00:00:00Z`); other text as it is, for the
/// domain to check.
fn date_part(text: &str) -> String {
    let text = text.trim();
    match (text.get(..10), text.as_bytes().get(10)) {
        (Some(date), Some(b'T' | b't')) => date.to_owned(),
        _ => text.to_owned(),
    }
}

/// The primary value of a multi-valued attribute, else the last of the first `types` that
/// has one, else the first: Roster keeps one.
fn pick<'a>(values: Option<&'a Json>, types: &[&str]) -> Option<&'a Json> {
    let values = values?.as_array()?;
    if let Some(primary) = values
        .iter()
        .find(|v| v.get("primary") == Some(&Json::Bool(true)))
    {
        return Some(primary);
    }
    values
        .iter()
        .rev()
        .find(|v| {
            v.get("type")
                .and_then(Json::as_str)
                .is_some_and(|t| types.iter().any(|w| t.eq_ignore_ascii_case(w)))
        })
        .or_else(|| values.first())
}

/// The attribute set after a write: `employeeNumber` from the enterprise extension, the
/// others from Roster's; an extension left out, or Roster's without `attributes`, keeps
/// its part as stored.
fn attributes_of(
    enterprise: Option<&Json>,
    roster: Option<&Json>,
    stored: Option<&Stored<'_>>,
    problems: &mut Vec<String>,
) -> Patch<Vec<RawAttribute>> {
    if enterprise.is_none() && roster.is_none() {
        return Patch::Keep;
    }
    let stored: Vec<RawAttribute> = stored
        .map(|s| {
            s.profile
                .attributes
                .iter()
                .map(|a| RawAttribute {
                    name: a.name.clone(),
                    value: Some(a.value.clone()),
                    kind: a.kind,
                    class: a.class.clone(),
                })
                .collect()
        })
        .unwrap_or_default();
    let is_number = |a: &RawAttribute| a.name == EMPLOYEE_NUMBER;
    let mut out: Vec<RawAttribute> = match roster {
        Some(roster) => match roster.get("attributes") {
            Some(Json::Array(items)) => items
                .iter()
                .filter_map(
                    |item| match serde_json::from_value::<RawAttribute>(item.clone()) {
                        Ok(attribute) => Some(attribute),
                        Err(error) => {
                            problems.push(format!("{ROSTER_USER}:attributes: {error}"));
                            None
                        }
                    },
                )
                .filter(|a| !is_number(a))
                .collect(),
            // Left out, they stay as stored; `null`, they are cleared.
            None => stored.iter().filter(|a| !is_number(a)).cloned().collect(),
            Some(_) => Vec::new(),
        },
        None => stored.iter().filter(|a| !is_number(a)).cloned().collect(),
    };
    match enterprise {
        Some(enterprise) => {
            if let Some(number) = enterprise.get(EMPLOYEE_NUMBER).and_then(Json::as_str) {
                out.push(RawAttribute {
                    name: EMPLOYEE_NUMBER.to_owned(),
                    value: Some(number.to_owned()),
                    kind: crate::users::domain::AttributeType::String,
                    class: None,
                });
            }
        }
        None => out.extend(stored.iter().filter(|a| is_number(a)).cloned()),
    }
    Patch::Set(out)
}
