//! PATCH (RFC 7644 §3.5.2) on a resource document: the operations apply, in order, to the
//! user as `GET` shows it; the result is then checked and written like a `PUT`, so a PATCH
//! is all or nothing. What providers send beyond the RFC's letter is taken as they mean
//! it: `op` in any case, an operation without `path` whose value holds dotted or
//! URN-prefixed names, and a filtered path that matches nothing (`phoneNumbers[type eq
//! "mobile"].value`) adding the value it names.

use serde_json::{Map, Value as Json};

use super::filter::{self, Filter, Op};
use super::schemas::{self, Attr, DROPPED_ENTERPRISE, DROPPED_SUB, DROPPED_USER, Mutability, USER};
use super::validate::checked;
use super::{PATCH_OP, ScimError, ScimResult, ScimType};

/// The object that holds a path's attribute, the attributes it may hold, and the names
/// it drops.
type Container<'a> = (
    &'a mut Map<String, Json>,
    &'static [Attr],
    &'static [&'static str],
);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Add,
    Replace,
    Remove,
}

/// The most operations one PATCH may carry.
pub const MAX_OPERATIONS: usize = 1000;

/// Applies a `PatchOp` message to `doc`.
pub fn apply(doc: &mut Json, message: &Json) -> ScimResult<()> {
    let operations = operations(message)?;
    if operations.len() > MAX_OPERATIONS {
        return Err(ScimError::bad(
            ScimType::TooMany,
            format!("Operations: at most {MAX_OPERATIONS} in one request"),
        ));
    }
    each(operations, |operation| one(doc, operation))
}

/// The operations of a `PatchOp` message, once its `schemas` name the message.
pub fn operations(message: &Json) -> ScimResult<&[Json]> {
    let schemas_ok = message
        .get("schemas")
        .and_then(Json::as_array)
        .is_some_and(|s| {
            s.iter()
                .any(|u| u.as_str().is_some_and(|u| u.eq_ignore_ascii_case(PATCH_OP)))
        });
    if !schemas_ok {
        return Err(ScimError::bad(
            ScimType::InvalidValue,
            format!("schemas: must hold {PATCH_OP}"),
        ));
    }
    field(message, "Operations")
        .and_then(Json::as_array)
        .map(Vec::as_slice)
        .ok_or_else(|| ScimError::bad(ScimType::InvalidValue, "Operations: must be a list"))
}

/// Applies each operation in turn; an error names the operation it came from.
pub fn each(operations: &[Json], mut apply: impl FnMut(&Json) -> ScimResult<()>) -> ScimResult<()> {
    for (index, operation) in operations.iter().enumerate() {
        apply(operation).map_err(|mut error| {
            error.detail = format!("Operations[{index}]: {}", error.detail);
            error
        })?;
    }
    Ok(())
}

/// A member of a JSON object by name, whatever the case (SCIM names are case-insensitive).
pub fn field<'a>(object: &'a Json, name: &str) -> Option<&'a Json> {
    object
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

fn one(doc: &mut Json, operation: &Json) -> ScimResult<()> {
    let op = field(operation, "op").and_then(Json::as_str).unwrap_or("");
    let kind = match op.to_ascii_lowercase().as_str() {
        "add" => Kind::Add,
        "replace" => Kind::Replace,
        "remove" => Kind::Remove,
        _ => {
            return Err(ScimError::bad(
                ScimType::InvalidValue,
                format!("op: {op:?} is not add, replace or remove"),
            ));
        }
    };
    let value = field(operation, "value").cloned().unwrap_or(Json::Null);
    match field(operation, "path").and_then(Json::as_str) {
        Some(path) => at_path(doc, kind, path, value),
        None if kind == Kind::Remove => {
            Err(ScimError::bad(ScimType::NoTarget, "remove needs a path"))
        }
        None => {
            let Json::Object(values) = value else {
                return Err(ScimError::bad(
                    ScimType::InvalidValue,
                    "value: without a path, must be an object of attributes",
                ));
            };
            for (name, value) in values {
                if name.eq_ignore_ascii_case("schemas") {
                    continue;
                }
                at_path(doc, kind, &name, value)?;
            }
            Ok(())
        }
    }
}

/// Where a path points: the object that holds the attribute, and its definitions.
fn container<'a>(doc: &'a mut Json, urn: Option<&str>, raw: &str) -> ScimResult<Container<'a>> {
    let root = doc.as_object_mut().expect("a resource is an object");
    match urn {
        None => Ok((root, &USER, DROPPED_USER)),
        Some(urn) if urn.eq_ignore_ascii_case(super::CORE_USER) => Ok((root, &USER, DROPPED_USER)),
        Some(urn) => {
            let (urn, attrs) = schemas::extension(urn).ok_or_else(|| {
                ScimError::bad(ScimType::InvalidPath, format!("{raw}: unknown schema"))
            })?;
            let dropped = if urn == super::ENTERPRISE_USER {
                DROPPED_ENTERPRISE
            } else {
                &[]
            };
            let ext = root
                .entry(urn.to_owned())
                .or_insert_with(|| Json::Object(Map::new()));
            if !ext.is_object() {
                *ext = Json::Object(Map::new());
            }
            Ok((ext.as_object_mut().expect("made an object"), attrs, dropped))
        }
    }
}

fn at_path(doc: &mut Json, kind: Kind, raw: &str, value: Json) -> ScimResult<()> {
    // A whole extension: its attributes one by one.
    if let Some((urn, _)) = schemas::extension(raw) {
        let Json::Object(values) = value else {
            return Err(ScimError::bad(
                ScimType::InvalidValue,
                format!("{raw}: must be an object"),
            ));
        };
        if kind == Kind::Remove {
            return Err(ScimError::bad(
                ScimType::NoTarget,
                format!("{raw}: name an attribute to remove"),
            ));
        }
        for (name, value) in values {
            if !name.eq_ignore_ascii_case("schemas") {
                at_path(doc, kind, &format!("{urn}:{name}"), value)?;
            }
        }
        return Ok(());
    }
    let path = filter::parse_path(raw)?;
    let name = &path.attr.attr;
    for fixed in ["id", "meta", "schemas", "groups"] {
        if path.attr.urn.is_none() && name.eq_ignore_ascii_case(fixed) {
            return Err(ScimError::bad(
                ScimType::Mutability,
                format!("{raw}: is read-only"),
            ));
        }
    }
    if path.attr.urn.is_none() && name.eq_ignore_ascii_case("externalId") {
        let root = doc.as_object_mut().expect("a resource is an object");
        match kind {
            Kind::Remove => root.remove("externalId"),
            _ => root.insert("externalId".to_owned(), value),
        };
        return Ok(());
    }
    let (object, attrs, dropped) = container(doc, path.attr.urn.as_deref(), raw)?;
    let Some(attr) = schemas::find(attrs, name) else {
        if dropped.iter().any(|d| d.eq_ignore_ascii_case(name)) {
            return Ok(()); // an attribute Roster does not keep
        }
        return Err(ScimError::bad(
            ScimType::InvalidPath,
            format!("{raw}: unknown attribute"),
        ));
    };
    if attr.mutability == Mutability::ReadOnly {
        return Err(ScimError::bad(
            ScimType::Mutability,
            format!("{raw}: is read-only"),
        ));
    }
    let sub_name = path.attr.sub.clone().or(path.sub.clone());
    let sub = match &sub_name {
        Some(sub) => match attr.sub_attr(sub) {
            Some(s) if s.mutability == Mutability::ReadOnly => {
                return Err(ScimError::bad(
                    ScimType::Mutability,
                    format!("{raw}: is read-only"),
                ));
            }
            Some(s) => Some(s),
            None if DROPPED_SUB.iter().any(|d| d.eq_ignore_ascii_case(sub)) => return Ok(()),
            None => {
                return Err(ScimError::bad(
                    ScimType::InvalidPath,
                    format!("{raw}: unknown attribute"),
                ));
            }
        },
        None => None,
    };
    let value = if kind == Kind::Remove {
        Json::Null
    } else {
        let mut problems = Vec::new();
        let checked = checked(sub.unwrap_or(attr), &value, raw, &mut problems);
        match checked {
            Some(value) if problems.is_empty() => value,
            _ => return Err(ScimError::many(ScimType::InvalidValue, &problems)),
        }
    };
    let key = attr.name.to_owned();
    match (&path.filter, sub) {
        (None, None) => whole(object, attr, &key, kind, value),
        (None, Some(sub)) => {
            let current = object.entry(key).or_insert(Json::Null);
            if attr.multi {
                for item in current.as_array_mut().into_iter().flatten() {
                    set_sub(item, sub.name, kind, value.clone());
                }
            } else {
                if !current.is_object() {
                    *current = Json::Object(Map::new());
                }
                set_sub(current, sub.name, kind, value);
            }
            Ok(())
        }
        (Some(filter), sub) => filtered(object, attr, &key, filter, sub, kind, value, raw),
    }
}

fn whole(
    object: &mut Map<String, Json>,
    attr: &Attr,
    key: &str,
    kind: Kind,
    value: Json,
) -> ScimResult<()> {
    match kind {
        Kind::Remove => {
            object.remove(key);
        }
        Kind::Add if attr.multi => {
            let current = object
                .entry(key.to_owned())
                .or_insert_with(|| Json::Array(Vec::new()));
            if !current.is_array() {
                *current = Json::Array(Vec::new());
            }
            let items = current.as_array_mut().expect("made an array");
            for item in value.as_array().cloned().unwrap_or_default() {
                if !items.contains(&item) {
                    items.push(item);
                }
            }
        }
        // A complex value merges: sub-attributes it leaves out stay.
        _ if !attr.multi && value.is_object() => {
            let current = object
                .entry(key.to_owned())
                .or_insert_with(|| Json::Object(Map::new()));
            if !current.is_object() {
                *current = Json::Object(Map::new());
            }
            let current = current.as_object_mut().expect("made an object");
            for (k, v) in value.as_object().expect("checked an object") {
                current.insert(k.clone(), v.clone());
            }
        }
        _ => {
            object.insert(key.to_owned(), value);
        }
    }
    Ok(())
}

fn set_sub(item: &mut Json, sub: &str, kind: Kind, value: Json) {
    if let Some(item) = item.as_object_mut() {
        match kind {
            Kind::Remove => {
                item.remove(sub);
            }
            _ => {
                item.insert(sub.to_owned(), value);
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn filtered(
    object: &mut Map<String, Json>,
    attr: &Attr,
    key: &str,
    filter: &Filter,
    sub: Option<&Attr>,
    kind: Kind,
    value: Json,
    raw: &str,
) -> ScimResult<()> {
    if !attr.multi {
        return Err(ScimError::bad(
            ScimType::InvalidPath,
            format!("{raw}: only multi-valued attributes take a filter"),
        ));
    }
    let current = object
        .entry(key.to_owned())
        .or_insert_with(|| Json::Array(Vec::new()));
    if !current.is_array() {
        *current = Json::Array(Vec::new());
    }
    let items = current.as_array_mut().expect("made an array");
    // Checked as the attribute, the value came as a list of one.
    let value = match value {
        Json::Array(mut values) if sub.is_none() && values.len() == 1 => values.remove(0),
        value => value,
    };
    let matched: Vec<usize> = (0..items.len())
        .filter(|i| matches(&items[*i], filter))
        .collect();
    if kind == Kind::Remove {
        match sub {
            Some(sub) => matched
                .iter()
                .for_each(|i| set_sub(&mut items[*i], sub.name, kind, Json::Null)),
            None => {
                for i in matched.into_iter().rev() {
                    items.remove(i);
                }
            }
        }
        return Ok(());
    }
    if matched.is_empty() {
        // `type eq "mobile"` names the value to add.
        let Filter::Compare(path, Op::Eq, named) = filter else {
            return Err(ScimError::bad(
                ScimType::NoTarget,
                format!("{raw}: no value matches the filter"),
            ));
        };
        let mut item = Map::new();
        item.insert(path.attr.clone(), named.clone());
        let mut item = Json::Object(item);
        merge_into(&mut item, sub, value);
        // Roster keeps one value: the one just added is the one meant.
        if attr.sub_attr("primary").is_some() {
            for other in items.iter_mut().filter_map(Json::as_object_mut) {
                other.remove("primary");
            }
            item["primary"] = Json::Bool(true);
        }
        items.push(item);
        return Ok(());
    }
    for i in matched {
        merge_into(&mut items[i], sub, value.clone());
    }
    Ok(())
}

fn merge_into(item: &mut Json, sub: Option<&Attr>, value: Json) {
    match (sub, value) {
        (Some(sub), value) => set_sub(item, sub.name, Kind::Replace, value),
        (None, Json::Object(values)) => {
            if let Some(item) = item.as_object_mut() {
                item.extend(values);
            }
        }
        (None, _) => {}
    }
}

/// Whether one value of a multi-valued attribute matches a filter on its sub-attributes.
fn matches(item: &Json, filter: &Filter) -> bool {
    let get = |name: &str| {
        item.as_object()
            .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)))
            .map(|(_, v)| v)
    };
    match filter {
        Filter::And(a, b) => matches(item, a) && matches(item, b),
        Filter::Or(a, b) => matches(item, a) || matches(item, b),
        Filter::Not(f) => !matches(item, f),
        Filter::Present(path) => get(&path.attr).is_some_and(|v| !v.is_null()),
        Filter::Compare(path, op, expected) => {
            let actual = get(&path.attr).unwrap_or(&Json::Null);
            match (actual, expected) {
                (Json::String(a), Json::String(e)) => {
                    let (a, e) = (a.to_lowercase(), e.to_lowercase());
                    match op {
                        Op::Eq => a == e,
                        Op::Ne => a != e,
                        Op::Co => a.contains(&e),
                        Op::Sw => a.starts_with(&e),
                        Op::Ew => a.ends_with(&e),
                        Op::Gt => a > e,
                        Op::Ge => a >= e,
                        Op::Lt => a < e,
                        Op::Le => a <= e,
                    }
                }
                (a, e) => match op {
                    Op::Eq => a == e,
                    Op::Ne => a != e,
                    _ => false,
                },
            }
        }
        Filter::ValuePath { .. } => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn patched(doc: Json, operations: Json) -> ScimResult<Json> {
        let mut doc = doc;
        apply(
            &mut doc,
            &json!({ "schemas": [PATCH_OP], "Operations": operations }),
        )?;
        Ok(doc)
    }

    #[test]
    fn a_filtered_path_that_matches_nothing_adds_the_value_it_names() {
        let doc = json!({ "phoneNumbers": [{ "value": "+3801", "type": "work" }] });
        let doc = patched(doc, json!([{ "op": "Replace", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "+3802" }])).unwrap();
        assert_eq!(
            doc["phoneNumbers"][1],
            json!({ "type": "mobile", "value": "+3802", "primary": true })
        );
        assert!(
            doc["phoneNumbers"][0].get("primary").is_none(),
            "the one meant is the new one"
        );
    }

    #[test]
    fn no_path_takes_dotted_and_urn_names() {
        let doc = json!({ "name": { "givenName": "A", "familyName": "B" } });
        let doc = patched(
            doc,
            json!([{ "op": "replace", "value": {
            "name.givenName": "Ann",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": "Sales",
            "active": "False",
        } }]),
        )
        .unwrap();
        assert_eq!(
            doc["name"],
            json!({ "givenName": "Ann", "familyName": "B" })
        );
        assert_eq!(
            doc[super::super::ENTERPRISE_USER]["department"],
            json!("Sales")
        );
        assert_eq!(doc["active"], json!(false));
    }

    #[test]
    fn read_only_and_unknown_paths_are_refused() {
        let error = patched(
            json!({}),
            json!([{ "op": "replace", "path": "id", "value": "9" }]),
        )
        .unwrap_err();
        assert_eq!(error.scim_type, Some(ScimType::Mutability));
        let error = patched(
            json!({}),
            json!([{ "op": "add", "path": "shoeSize", "value": "9" }]),
        )
        .unwrap_err();
        assert_eq!(error.scim_type, Some(ScimType::InvalidPath));
        assert!(error.detail.contains("shoeSize"), "{}", error.detail);
    }
}
