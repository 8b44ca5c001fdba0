//! `attributes` and `excludedAttributes` (RFC 7644 §3.4.2.5): which attributes of a
//! resource an answer carries. Paths are `userName`, `name.givenName`, an extension's URN
//! alone, or a URN-prefixed attribute; names compare case-insensitively. `id` and
//! `schemas` are always returned.

use std::collections::HashMap;

use serde_json::{Map, Value as Json};

/// The attributes a list names: per (extension URN or `None` for the core, attribute
/// lower-cased), the sub-attributes named (`None`: the whole attribute). An extension named
/// alone is under its URN with the attribute `None`.
type Named = HashMap<(Option<String>, Option<String>), Option<Vec<String>>>;

fn named(list: &str) -> Named {
    let mut named: Named = HashMap::new();
    for path in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (urn, rest) = if let Some((urn, _)) = super::schemas::extension(path) {
            (Some(urn.to_ascii_lowercase()), None)
        } else if path.to_ascii_lowercase().starts_with("urn:") {
            match path.rfind(':') {
                Some(at) => (Some(path[..at].to_ascii_lowercase()), Some(&path[at + 1..])),
                None => (None, Some(path)),
            }
        } else {
            (None, Some(path))
        };
        let urn = urn.filter(|u| {
            !u.eq_ignore_ascii_case(super::CORE_USER) && !u.eq_ignore_ascii_case(super::GROUP)
        });
        let (attr, sub) = match rest.map(|r| r.split_once('.').unwrap_or((r, ""))) {
            Some((attr, sub)) => (
                Some(attr.to_ascii_lowercase()),
                (!sub.is_empty()).then(|| sub.to_ascii_lowercase()),
            ),
            None => (None, None),
        };
        let entry = named.entry((urn, attr)).or_insert_with(|| Some(Vec::new()));
        match (entry.as_mut(), sub) {
            (Some(subs), Some(sub)) => subs.push(sub),
            _ => *entry = None,
        }
    }
    named
}

/// Whether an attribute is always returned.
fn always(key: &str) -> bool {
    key.eq_ignore_ascii_case("id") || key.eq_ignore_ascii_case("schemas")
}

/// Keeps, in each value of an attribute, only (or all but) the named sub-attributes.
fn prune(value: &mut Json, subs: &[String], keep: bool) {
    let one = |item: &mut Json| {
        if let Some(item) = item.as_object_mut() {
            item.retain(|k, _| subs.contains(&k.to_ascii_lowercase()) == keep);
        }
    };
    match value {
        Json::Array(items) => items.iter_mut().for_each(one),
        other => one(other),
    }
}

/// Applies both lists to one resource.
pub fn project(doc: &mut Json, attributes: Option<&str>, excluded: Option<&str>) {
    let Some(object) = doc.as_object_mut() else {
        return;
    };
    if let Some(list) = attributes.filter(|l| !l.trim().is_empty()) {
        keep(object, None, &named(list));
    }
    if let Some(list) = excluded.filter(|l| !l.trim().is_empty()) {
        drop(object, None, &named(list));
    }
}

fn keep(object: &mut Map<String, Json>, urn: Option<&str>, named: &Named) {
    let whole_extension = urn.is_some_and(|u| named.get(&(Some(u.to_owned()), None)).is_some());
    if whole_extension {
        return;
    }
    object.retain(|key, value| {
        if urn.is_none() && always(key) {
            return true;
        }
        let lower = key.to_ascii_lowercase();
        if urn.is_none() && lower.starts_with("urn:") {
            let inner = named
                .keys()
                .any(|(u, _)| u.as_deref() == Some(lower.as_str()));
            if inner && let Some(ext) = value.as_object_mut() {
                keep(ext, Some(&lower), named);
            }
            return inner;
        }
        match named.get(&(urn.map(str::to_owned), Some(lower))) {
            None => false,
            Some(None) => true,
            Some(Some(subs)) => {
                prune(value, subs, true);
                true
            }
        }
    });
}

fn drop(object: &mut Map<String, Json>, urn: Option<&str>, named: &Named) {
    object.retain(|key, value| {
        if urn.is_none() && always(key) {
            return true;
        }
        let lower = key.to_ascii_lowercase();
        if urn.is_none() && lower.starts_with("urn:") {
            if named.get(&(Some(lower.clone()), None)).is_some() {
                return false;
            }
            if let Some(ext) = value.as_object_mut() {
                drop(ext, Some(&lower), named);
            }
            return true;
        }
        match named.get(&(urn.map(str::to_owned), Some(lower))) {
            None => true,
            Some(None) => false,
            Some(Some(subs)) => {
                prune(value, subs, false);
                true
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::scim::ENTERPRISE_USER;

    fn user() -> Json {
        json!({
            "schemas": ["s"], "id": "1", "userName": "ann",
            "name": { "givenName": "Ann", "familyName": "Lee" },
            "emails": [{ "value": "a@b.co", "type": "work" }],
            ENTERPRISE_USER: { "department": "Ops", "organization": "Acme" },
        })
    }

    #[test]
    fn attributes_keep_only_what_they_name() {
        let mut doc = user();
        project(
            &mut doc,
            Some(&format!(
                "USERNAME,name.givenName,emails.value,{ENTERPRISE_USER}:department"
            )),
            None,
        );
        assert_eq!(
            doc,
            json!({
                "schemas": ["s"], "id": "1", "userName": "ann",
                "name": { "givenName": "Ann" },
                "emails": [{ "value": "a@b.co" }],
                ENTERPRISE_USER: { "department": "Ops" },
            })
        );
    }

    #[test]
    fn excluded_attributes_drop_what_they_name() {
        let mut doc = user();
        project(
            &mut doc,
            None,
            Some(&format!("id,name.familyName,emails,{ENTERPRISE_USER}")),
        );
        assert_eq!(
            doc,
            json!({
                "schemas": ["s"], "id": "1", "userName": "ann", "name": { "givenName": "Ann" },
            })
        );
    }
}
