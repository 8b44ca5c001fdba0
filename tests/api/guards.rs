//! Every write is admin-only: each mutation field the schema has, found by introspection
//! rather than listed here, refuses a viewer's token, and writes nothing.

use roster::auth::Role;
use serde_json::{Map, Value, json};

use crate::helpers::{TestApp, db_test};

const SCHEMA: &str = "{ __schema {
    mutationType { fields { name args { name type { ...Ref } } } }
    types { name kind inputFields { name type { ...Ref } } enumValues { name } }
} }
fragment Ref on __Type { kind name ofType { kind name ofType { kind name ofType { kind name } } } }";

/// The schema's types by name, as introspection gives them.
struct Types(Map<String, Value>);

impl Types {
    /// A value of the type `reference` that parses as its input type: only required input
    /// fields are given, one for an input of optional fields alone (a lookup).
    fn value(&self, reference: &Value, field: &str) -> Value {
        match reference["kind"].as_str() {
            Some("NON_NULL") => self.value(&reference["ofType"], field),
            Some("LIST") => json!([]),
            Some("ENUM") => {
                let kind = &self.0[reference["name"].as_str().expect("a named enum")];
                kind["enumValues"][0]["name"].clone()
            }
            Some("INPUT_OBJECT") => {
                let kind = &self.0[reference["name"].as_str().expect("a named input")];
                let fields = kind["inputFields"].as_array().expect("input fields");
                let required: Vec<&Value> = fields
                    .iter()
                    .filter(|f| f["type"]["kind"] == "NON_NULL")
                    .collect();
                let given = if required.is_empty() {
                    fields.iter().take(1).collect()
                } else {
                    required
                };
                given
                    .into_iter()
                    .map(|f| {
                        let name = f["name"].as_str().expect("a field name");
                        (name.to_owned(), self.value(&f["type"], name))
                    })
                    .collect::<Map<_, _>>()
                    .into()
            }
            _ => match reference["name"].as_str().expect("a named scalar") {
                "Int" => json!(1),
                "Float" => json!(1.0),
                "Boolean" => json!(false),
                "Date" => json!("2026-01-01"),
                "DateTime" => json!("2026-01-01T00:00:00Z"),
                "JSON" => json!({}),
                // The first of everything the test stored: its user, track and job.
                "ID" => json!("1"),
                _ if field.to_lowercase().contains("email") => json!("someone@example.com"),
                _ => json!("x1"),
            },
        }
    }
}

/// A type reference as GraphQL writes it: `[UserImportInput!]!`.
fn written(reference: &Value) -> String {
    match reference["kind"].as_str() {
        Some("NON_NULL") => format!("{}!", written(&reference["ofType"])),
        Some("LIST") => format!("[{}]", written(&reference["ofType"])),
        _ => reference["name"].as_str().expect("a named type").to_owned(),
    }
}

/// Calls mutation `field` with a viewer's token, its required arguments given as
/// variables (an `Upload` as the multipart request's file).
async fn call_as_viewer(
    app: &TestApp,
    types: &Types,
    field: &Value,
) -> crate::helpers::GraphQLResponse {
    let name = field["name"].as_str().expect("a field name");
    let mut declared = Vec::new();
    let mut passed = Vec::new();
    let mut variables = Map::new();
    let mut upload = false;
    for arg in field["args"].as_array().expect("arguments") {
        if arg["type"]["kind"] != "NON_NULL" {
            continue;
        }
        let arg_name = arg["name"].as_str().expect("an argument name");
        let variable = if written(&arg["type"]) == "Upload!" {
            upload = true;
            "file".to_owned()
        } else {
            variables.insert(arg_name.to_owned(), types.value(&arg["type"], arg_name));
            arg_name.to_owned()
        };
        declared.push(format!("${variable}: {}", written(&arg["type"])));
        passed.push(format!("{arg_name}: ${variable}"));
    }
    let query = if declared.is_empty() {
        format!("mutation {{ {name} {{ __typename }} }}")
    } else {
        format!(
            "mutation({}) {{ {name}({}) {{ __typename }} }}",
            declared.join(", "),
            passed.join(", ")
        )
    };
    let token = app.token(Role::Viewer);
    if upload {
        let file = b"externalId,email,firstName,lastName\nv1,v1@example.com,V,One\n".to_vec();
        app.upload(&token, &query, variables.into(), file).await
    } else {
        app.graphql(&token, &query, variables.into()).await
    }
}

/// Every row a mutation could write, read straight from the database.
async fn stored(app: &TestApp) -> String {
    let mut stored = app.snapshot().await;
    for table in [
        "import_jobs",
        "learning_tracks",
        "learning_track_tags",
        "track_completions",
    ] {
        stored.push_str(&format!("\n{table}: {}", app.count_rows(table).await));
    }
    stored
}

db_test! {
    async fn every_mutation_refuses_a_viewer_and_writes_nothing(app) {
        // Something for each mutation to change: a user (the lookups name it by its email),
        // a learning track its tag assigns, and a finished job.
        let admin = app.token(Role::Admin);
        let mut user = crate::helpers::person("x1");
        user["email"] = json!("someone@example.com");
        user["tags"] = json!(["a"]);
        app.graphql(&admin, "mutation($u: UserImportInput!) { importUser(user: $u) { action } }", json!({ "u": user }))
            .await
            .data();
        app.graphql(
            &admin,
            "mutation($i: LearningTrackInput!) { createLearningTrack(input: $i) { id } }",
            json!({ "i": { "name": "T", "tags": ["a"], "expiringSoonDays": 0 } }),
        )
        .await
        .data();
        let job = app.submit_job(json!([crate::helpers::person("j1")]), Value::Null).await;
        app.finished_job("query($id: ID!) { importJob(id: $id) { status } }", &json!(job)).await;
        let before = stored(&app).await;
        let schema = app.graphql(&app.token(Role::Admin), SCHEMA, json!({})).await;
        let data = schema.data()["__schema"].clone();
        let types = Types(
            data["types"]
                .as_array()
                .expect("types")
                .iter()
                .map(|t| (t["name"].as_str().expect("a type name").to_owned(), t.clone()))
                .collect(),
        );
        let fields = data["mutationType"]["fields"].as_array().expect("mutations");
        assert!(fields.len() >= 13, "the schema's mutations: {fields:?}");
        for field in fields {
            let response = call_as_viewer(&app, &types, field).await;
            assert_eq!(
                response.error_code(),
                Some("FORBIDDEN"),
                "{}: {}",
                field["name"],
                response.body
            );
        }
        assert_eq!(stored(&app).await, before);
    }
}
