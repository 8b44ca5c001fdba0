//! A resource as sent, checked against the schemas (`schemas.rs`): every name in its
//! canonical case, every unknown attribute named, read-only ones and the core attributes
//! Roster does not keep dropped, values of the declared types (`active: "False"` is false).

use serde_json::{Map, Value as Json};

use super::schemas::{
    self, Attr, DROPPED_ENTERPRISE, DROPPED_SUB, DROPPED_USER, Kind, Mutability, USER,
};
use super::{CORE_USER, ENTERPRISE_USER, ScimError, ScimResult, ScimType};

/// Checks a resource as sent: its `schemas`, every attribute's name and type. Names come
/// out in their canonical case; read-only attributes (`id`, `meta`, `source`) and the core
/// attributes Roster does not keep are dropped. Every problem is named at once.
pub fn normalize(doc: &Json) -> ScimResult<Json> {
    let Some(object) = doc.as_object() else {
        return Err(ScimError::bad(
            ScimType::InvalidSyntax,
            "the body must be a JSON object",
        ));
    };
    let mut problems = Vec::new();
    check_schemas(object.get("schemas"), &mut problems);
    let mut out = Map::new();
    for (key, value) in object {
        if key.eq_ignore_ascii_case("schemas") {
            continue;
        }
        if key.eq_ignore_ascii_case("id") || key.eq_ignore_ascii_case("meta") {
            continue; // read-only: ignored on input, as RFC 7643 §2.2 says
        }
        if key.eq_ignore_ascii_case("externalId") {
            match value {
                Json::String(_) | Json::Null => {
                    out.insert("externalId".to_owned(), value.clone());
                }
                _ => problems.push("externalId: must be a string".to_owned()),
            }
            continue;
        }
        if key.to_ascii_lowercase().starts_with("urn:") {
            match schemas::extension(key) {
                Some((urn, attrs)) => {
                    let dropped = if urn == ENTERPRISE_USER {
                        DROPPED_ENTERPRISE
                    } else {
                        &[]
                    };
                    match value {
                        Json::Object(ext) => {
                            let ext = attributes(ext, attrs, dropped, urn, &mut problems);
                            out.insert(urn.to_owned(), Json::Object(ext));
                        }
                        Json::Null => {}
                        _ => problems.push(format!("{urn}: must be an object")),
                    }
                }
                None => problems.push(format!("{key}: unknown schema extension")),
            }
            continue;
        }
        one(key, value, &USER, DROPPED_USER, "", &mut out, &mut problems);
    }
    if problems.is_empty() {
        Ok(Json::Object(out))
    } else {
        Err(ScimError::many(ScimType::InvalidValue, &problems))
    }
}

fn check_schemas(schemas: Option<&Json>, problems: &mut Vec<String>) {
    let Some(Json::Array(urns)) = schemas else {
        problems.push(format!("schemas: must be a list that holds {CORE_USER}"));
        return;
    };
    let mut core = false;
    for urn in urns {
        match urn.as_str() {
            Some(urn) if urn.eq_ignore_ascii_case(CORE_USER) => core = true,
            Some(urn) if schemas::extension(urn).is_some() => {}
            Some(urn) => problems.push(format!("schemas: {urn:?} is not a schema of Users")),
            None => problems.push("schemas: must hold strings".to_owned()),
        }
    }
    if !core {
        problems.push(format!("schemas: must hold {CORE_USER}"));
    }
}

fn attributes(
    object: &Map<String, Json>,
    attrs: &'static [Attr],
    dropped: &[&str],
    path: &str,
    problems: &mut Vec<String>,
) -> Map<String, Json> {
    let mut out = Map::new();
    for (key, value) in object {
        one(key, value, attrs, dropped, path, &mut out, problems);
    }
    out
}

/// Checks one attribute of an object into `out`.
fn one(
    key: &str,
    value: &Json,
    attrs: &'static [Attr],
    dropped: &[&str],
    parent: &str,
    out: &mut Map<String, Json>,
    problems: &mut Vec<String>,
) {
    let path = if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}:{key}")
    };
    let Some(attr) = schemas::find(attrs, key) else {
        if !dropped.iter().any(|d| d.eq_ignore_ascii_case(key)) {
            problems.push(format!("{path}: unknown attribute"));
        }
        return;
    };
    if attr.mutability == Mutability::ReadOnly {
        return;
    }
    if let Some(value) = checked(attr, value, &path, problems) {
        out.insert(attr.name.to_owned(), value);
    }
}

/// A value of `attr` in its canonical form, or `None` with the problem recorded.
pub fn checked(
    attr: &'static Attr,
    value: &Json,
    path: &str,
    problems: &mut Vec<String>,
) -> Option<Json> {
    if value.is_null() {
        return Some(Json::Null);
    }
    if attr.multi {
        let items = match value {
            Json::Array(items) => items.clone(),
            single => vec![single.clone()],
        };
        let before = problems.len();
        let items: Vec<Json> = items
            .iter()
            .filter_map(|item| single(attr, item, path, problems))
            .collect();
        return (problems.len() == before).then_some(Json::Array(items));
    }
    single(attr, value, path, problems)
}

fn single(
    attr: &'static Attr,
    value: &Json,
    path: &str,
    problems: &mut Vec<String>,
) -> Option<Json> {
    match (attr.kind, value) {
        (Kind::Complex, Json::Object(object)) => {
            let mut out = Map::new();
            for (key, value) in object {
                match attr.sub_attr(key) {
                    Some(sub) if sub.mutability == Mutability::ReadOnly => {}
                    Some(sub) => {
                        if let Some(value) =
                            checked(sub, value, &format!("{path}.{}", sub.name), problems)
                        {
                            out.insert(sub.name.to_owned(), value);
                        }
                    }
                    None if DROPPED_SUB.iter().any(|d| d.eq_ignore_ascii_case(key)) => {}
                    None => problems.push(format!("{path}.{key}: unknown attribute")),
                }
            }
            Some(Json::Object(out))
        }
        // Entra sends a manager as its id alone, not as `{"value": id}`.
        (Kind::Complex, Json::String(id)) if attr.name == "manager" => {
            let mut object = Map::new();
            object.insert("value".to_owned(), Json::String(id.clone()));
            single(attr, &Json::Object(object), path, problems)
        }
        (Kind::Complex, _) => {
            problems.push(format!("{path}: must be an object"));
            None
        }
        (Kind::Boolean, Json::Bool(_)) => Some(value.clone()),
        // Entra sends `"active": "False"`.
        (Kind::Boolean, Json::String(text)) => match text.to_ascii_lowercase().as_str() {
            "true" => Some(Json::Bool(true)),
            "false" => Some(Json::Bool(false)),
            _ => {
                problems.push(format!("{path}: {text:?} is not true or false"));
                None
            }
        },
        (Kind::Boolean, _) => {
            problems.push(format!("{path}: must be true or false"));
            None
        }
        (_, Json::String(_)) => Some(value.clone()),
        // An employee number may come as a JSON number.
        (_, Json::Number(number)) => Some(Json::String(number.to_string())),
        _ => {
            problems.push(format!("{path}: must be a string"));
            None
        }
    }
}
