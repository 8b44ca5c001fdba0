//! The `users` variable of an `importUsers` request, read one user at a time.
//!
//! As GraphQL values, a list of 100,000 users is a tree of about 500 MB, and async-graphql
//! copies it twice more: to validate the argument, and to resolve it. When a POST's
//! operation is a lone `importUsers` field whose `users` argument is a variable, the HTTP
//! handler gives that variable's JSON to [`decode`] instead. Each user is checked with the
//! schema's own input types, kept only as the row its job stores ([`SubmittedRow`]), and
//! the variable the schema sees becomes `[]`. The rows go into the request's data
//! ([`DecodedUsers`]), where `importUsers` takes them.
//!
//! Any user this path does not accept (a missing field, an unknown one, a wrong type)
//! leaves the request as it was, so the client gets the error GraphQL gives for it.

use std::collections::BTreeMap;
use std::sync::{LazyLock, Mutex};

use async_graphql::parser::types::{DocumentOperations, OperationType, Selection};
use async_graphql::registry::{MetaType, MetaTypeName, Registry};
use async_graphql::{InputType, Name, Variables};
use async_graphql_value::{ConstValue, Value};
use serde_json::value::RawValue;

use crate::jobs::SubmittedRow;
use crate::users::graphql::UserImportInput;
use crate::users::import::ImportRow;

/// Rows decoded from the `users` variable, for `importUsers` to take once.
pub struct DecodedUsers(Mutex<Option<Vec<SubmittedRow>>>);

impl DecodedUsers {
    pub fn take(&self) -> Option<Vec<SubmittedRow>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// The name of the variable that carries `importUsers(users:)`, when the operation `query`
/// runs is a mutation with that one field and nothing else at its top level.
pub fn users_variable(query: &str, operation_name: Option<&str>) -> Option<String> {
    // Such a document is a few dozen tokens; a longer one is left to the schema, whose
    // limits judge its length before it is parsed.
    crate::graphql::count_tokens(query, 1_000)?;
    let document = async_graphql::parser::parse_query(query).ok()?;
    let operation = match document.operations {
        DocumentOperations::Single(operation) => operation,
        DocumentOperations::Multiple(mut operations) => {
            let name = operation_name?;
            operations.remove(&Name::new(name))?
        }
    };
    if operation.node.ty != OperationType::Mutation {
        return None;
    }
    let [selection] = operation.node.selection_set.node.items.as_slice() else {
        return None;
    };
    let Selection::Field(field) = &selection.node else {
        return None;
    };
    if field.node.name.node != "importUsers" {
        return None;
    }
    match field.node.get_argument("users").map(|value| &value.node) {
        Some(Value::Variable(name)) => Some(name.to_string()),
        _ => None,
    }
}

/// Splits the JSON object `variables` into the variables the schema sees, with `name` as
/// `[]`, and the users `name` held, each checked and stored as its job row. `None` when a
/// user does not pass GraphQL's checks, or `name` is not a list: the caller then leaves
/// the request as it is.
pub fn decode(variables: &str, name: &str) -> Option<(Variables, DecodedUsers)> {
    let raw: BTreeMap<String, &RawValue> = serde_json::from_str(variables).ok()?;
    let users: Vec<&RawValue> = serde_json::from_str(raw.get(name)?.get()).ok()?;
    let rows = decode_users(&users)?;
    let mut values = BTreeMap::new();
    for (key, value) in raw {
        let value = if key == name {
            ConstValue::List(Vec::new())
        } else {
            serde_json::from_str(value.get()).ok()?
        };
        values.insert(Name::new(key), value);
    }
    let variables = Variables::from_value(ConstValue::Object(values.into_iter().collect()));
    Some((variables, DecodedUsers(Mutex::new(Some(rows)))))
}

/// Users decoded on every core: reading a user and checking it is most of a large
/// request's cost.
fn decode_users(users: &[&RawValue]) -> Option<Vec<SubmittedRow>> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let per_thread = users.len().div_ceil(threads).max(1_000);
    if users.len() <= per_thread {
        return users.iter().map(|user| decode_user(user)).collect();
    }
    let parts: Vec<Option<Vec<SubmittedRow>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = users
            .chunks(per_thread)
            .map(|part| scope.spawn(|| part.iter().map(|user| decode_user(user)).collect()))
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().ok().flatten())
            .collect()
    });
    let mut rows = Vec::with_capacity(users.len());
    for part in parts {
        rows.extend(part?);
    }
    Some(rows)
}

/// The schema's description of `UserImportInput` and the types inside it.
static TYPES: LazyLock<(Registry, String)> = LazyLock::new(|| {
    let mut registry = Registry::default();
    let name = UserImportInput::create_type_info(&mut registry);
    (registry, name)
});

fn decode_user(user: &RawValue) -> Option<SubmittedRow> {
    let value: ConstValue = serde_json::from_str(user.get()).ok()?;
    let (registry, name) = &*TYPES;
    if !valid(registry, name, &value) {
        return None;
    }
    let input = UserImportInput::parse(Some(value)).ok()?;
    SubmittedRow::new(&ImportRow::from(input)).ok()
}

/// What GraphQL's validation checks of a variable beyond what parsing the input type
/// checks: no field the type does not have, and scalars that pass their own test.
fn valid(registry: &Registry, type_name: &str, value: &ConstValue) -> bool {
    match MetaTypeName::create(type_name) {
        MetaTypeName::NonNull(inner) => valid(registry, inner, value),
        MetaTypeName::List(inner) => match value {
            ConstValue::List(items) => items.iter().all(|item| valid(registry, inner, item)),
            other => valid(registry, inner, other),
        },
        MetaTypeName::Named(name) => match (registry.types.get(name), value) {
            (_, ConstValue::Null) => true,
            (Some(MetaType::InputObject { input_fields, .. }), ConstValue::Object(fields)) => {
                fields.iter().all(|(key, value)| {
                    input_fields
                        .get(key.as_str())
                        .is_some_and(|field| valid(registry, &field.ty, value))
                })
            }
            (
                Some(MetaType::Scalar {
                    is_valid: Some(is_valid),
                    ..
                }),
                value,
            ) => is_valid(value),
            _ => true,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_lone_import_users_field_fed_by_a_variable_is_read_apart() {
        let lone = "mutation($u: [UserImportInput!]!) { importUsers(users: $u) { id } }";
        assert_eq!(users_variable(lone, None).as_deref(), Some("u"));
        let aliased = "mutation($u: [UserImportInput!]!) { job: importUsers(users: $u) { id } }";
        assert_eq!(users_variable(aliased, None).as_deref(), Some("u"));
        let named = "query Q { me { tenant } } mutation M($v: [UserImportInput!]!) \
                     { importUsers(users: $v) { id } }";
        assert_eq!(users_variable(named, Some("M")).as_deref(), Some("v"));
        for other in [
            "mutation { importUsers(users: [{externalId: \"1\"}]) { id } }",
            "mutation($u: [UserImportInput!]!) { importUsers(users: $u) { id } me: __typename }",
            "mutation($u: [UserImportInput!]!) { ... on Mutation { importUsers(users: $u) { id } } }",
            "query($u: [UserImportInput!]!) { importUsers(users: $u) { id } }",
            "mutation($u: [UserImportInput!]!) { importUsers(users: $u) { id }",
        ] {
            assert_eq!(users_variable(other, None), None, "{other}");
        }
        assert_eq!(users_variable(named, None), None);
        assert_eq!(users_variable(named, Some("Q")), None);
    }

    fn user(extra: &str) -> String {
        format!(
            r#"{{"externalId": "1", "email": "a@example.com", "firstName": "A", "lastName": "B"{extra}}}"#
        )
    }

    #[test]
    fn users_are_stored_rows_and_the_variable_becomes_empty() {
        let variables = format!(
            r#"{{"options": {{"dryRun": true}}, "users": [{}, {}]}}"#,
            user(r#", "attributes": [{"name": "level", "value": "3", "type": "NUMBER"}]"#),
            user(r#", "tags": ["a"], "approvers": null, "gender": "FEMALE""#),
        );
        let (variables, users) = decode(&variables, "users").expect("decoded");
        assert_eq!(
            variables.into_value().into_json().unwrap(),
            serde_json::json!({"options": {"dryRun": true}, "users": []})
        );
        let rows = users.take().expect("rows");
        assert_eq!(rows.len(), 2);
        assert!(users.take().is_none(), "taken once");
    }

    #[test]
    fn a_user_graphql_refuses_leaves_the_request_as_it_was() {
        for bad in [
            user(r#", "nickname": "x""#),
            user(r#", "attributes": [{"name": "a", "value": "1", "colour": "red"}]"#),
            user(r#", "gender": "SOMETIMES""#),
            user(r#", "active": "yes""#),
            user(r#", "birthDate": 3"#),
            r#"{"externalId": "1", "firstName": "A", "lastName": "B"}"#.to_owned(),
            "7".to_owned(),
        ] {
            let variables = format!(r#"{{"users": [{}, {bad}]}}"#, user(""));
            assert!(decode(&variables, "users").is_none(), "{bad}");
        }
        assert!(decode(r#"{"users": null}"#, "users").is_none());
        assert!(decode(r#"{"other": []}"#, "users").is_none());
    }
}
