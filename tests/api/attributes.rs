//! `setUserAttributes`: many users' attributes in one call, each change on its own.

use roster::auth::Role;
use serde_json::{Value, json};

use crate::helpers::{Backend, ServerProcess, TestApp, TestDatabase, db_test, each_backend};
use crate::users::{import, import_as, lookup};

const SET: &str = "mutation($c: [UserAttributesChange!]!) {
    setUserAttributes(changes: $c) {
        succeeded failed
        results { lookupKey success user { externalId updatedAt } errors { field code message } }
    }
}";

async fn person(app: &TestApp, external_id: &str, attributes: Value) {
    import(
        app,
        json!({
            "externalId": external_id, "email": format!("{external_id}@example.com"),
            "firstName": "A", "lastName": "B", "attributes": attributes
        }),
        Value::Null,
    )
    .await
    .data();
}

async fn attributes_of(app: &TestApp, external_id: &str) -> Value {
    let user = lookup(
        app,
        &app.token(Role::Viewer),
        json!({ "externalId": external_id }),
    )
    .await;
    user.data()["user"]["attributes"].clone()
}

fn errors(result: &Value) -> Vec<(String, String)> {
    result["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["field"].as_str().unwrap_or_default().to_owned(),
                e["code"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

db_test! {
    async fn each_change_succeeds_or_fails_alone(app) {
        person(&app, "a", json!([{ "name": "level", "value": "3", "type": "NUMBER" }, { "name": "site", "value": "Kyiv" }])).await;
        person(&app, "b", json!([])).await;
        person(&app, "c", json!([{ "name": "site", "value": "Lviv" }])).await;
        let other = app.token_for(Role::Admin, Some("elsewhere"));
        import_as(&app, &other, json!({ "externalId": "x", "email": "x@example.com", "firstName": "X", "lastName": "Y" }), Value::Null).await.data();
        let c_before = lookup(&app, &app.token(Role::Viewer), json!({ "externalId": "c" })).await.data()["user"]["updatedAt"].clone();

        let response = app.graphql(&app.token(Role::Admin), SET, json!({ "c": [
            { "user": { "externalId": "a" }, "set": [{ "name": "level", "value": "4.5", "type": "NUMBER" }, { "name": "site", "value": null }] },
            { "user": { "externalId": "b" }, "set": [{ "name": "vip", "value": "yes", "type": "BOOLEAN" }, { "name": "ok", "value": "1" }] },
            { "user": { "externalId": "nobody" }, "set": [{ "name": "n", "value": "1" }] },
            { "user": { "externalId": "x" }, "set": [{ "name": "n", "value": "1" }] },
            { "user": { "email": "B@example.com" }, "set": [{ "name": "since", "value": "26.07.1988", "type": "DATE", "class": "hr" }] },
            { "user": { "externalId": "c" }, "set": [{ "name": "site", "value": "Lviv" }] },
            { "user": { "externalId": "a" }, "unset": ["level"] },
            { "user": { "id": "1", "email": "a@example.com" }, "unset": ["x"] },
            { "user": { "externalId": "c" }, "set": [{ "name": "k", "value": "1" }], "unset": ["k"] },
        ] })).await;
        let payload = &response.data()["setUserAttributes"];
        let results = payload["results"].as_array().unwrap();
        let keys: Vec<&str> = results.iter().map(|r| r["lookupKey"].as_str().unwrap()).collect();
        assert_eq!(keys, [
            "externalId:default/a", "externalId:default/b", "externalId:default/nobody",
            "externalId:default/x", "email:b@example.com", "externalId:default/c",
            "externalId:default/a", "invalid lookup", "externalId:default/c",
        ]);
        let success: Vec<bool> = results.iter().map(|r| r["success"].as_bool().unwrap()).collect();
        assert_eq!(success, [true, false, false, false, true, true, true, false, false]);
        assert_eq!((payload["succeeded"].as_i64(), payload["failed"].as_i64()), (Some(4), Some(5)));
        assert_eq!(errors(&results[1]), [("set[0].value".to_owned(), "INVALID_BOOLEAN".to_owned())]);
        assert_eq!(errors(&results[2]), [("user".to_owned(), "NOT_FOUND".to_owned())]);
        assert_eq!(errors(&results[3]), [("user".to_owned(), "NOT_FOUND".to_owned())], "another tenant's user is not found");
        assert_eq!(results[3]["user"], Value::Null);
        assert_eq!(errors(&results[7])[0].1, "ONE_KEY_REQUIRED");
        assert_eq!(errors(&results[8]), [("unset[0]".to_owned(), "CONFLICTING_FIELDS".to_owned())]);

        assert_eq!(attributes_of(&app, "a").await, json!([]), "set, then a null value and unset removed both");
        assert_eq!(
            attributes_of(&app, "b").await,
            json!([{ "name": "since", "value": "1988-07-26", "type": "DATE", "class": "hr" }]),
            "the failed change wrote nothing; the later one for the same user did"
        );
        assert_eq!(attributes_of(&app, "c").await, json!([{ "name": "site", "value": "Lviv", "type": "STRING", "class": null }]));
        assert_eq!(results[5]["user"]["updatedAt"], c_before, "a change that alters nothing writes nothing");
        let x = lookup(&app, &other, json!({ "externalId": "x" })).await;
        assert_eq!(x.data()["user"]["attributes"], json!([]));

        let viewer = app.graphql(&app.token(Role::Viewer), SET, json!({ "c": [] })).await;
        assert_eq!(viewer.error_code(), Some("FORBIDDEN"));
    }
}

db_test! {
    async fn at_most_ten_thousand_changes_per_call(app) {
        let changes: Vec<Value> = (0..10_001).map(|i| json!({ "user": { "id": i.to_string() }, "unset": ["a"] })).collect();
        let before = app.snapshot().await;
        let response = app.graphql(&app.token(Role::Admin), SET, json!({ "c": changes })).await;
        assert_eq!(response.error_code(), Some("BAD_USER_INPUT"), "{}", response.error_message());
        assert_eq!(response.field_errors(), vec![("changes".to_owned(), "TOO_MANY".to_owned())]);
        assert_eq!(app.snapshot().await, before);
    }
}

async fn statements_for_changes(backend: Backend) {
    let backend_kind = matches!(backend, Backend::Postgres);
    let database = TestDatabase::create(backend).await;
    // No job workers: their polling would count among the statements.
    let server = ServerProcess::start(&database.url, &[("ROSTER_WORKERS", "0")]);
    // Every user in a source of its own: the statement count must not grow per source.
    server
        .import_users((0..1200).map(|i| json!({ "externalId": format!("u{i}"), "source": format!("s{i}"), "email": format!("u{i}@example.com"), "firstName": "U", "lastName": "V" })))
        .await;
    let mut counts = Vec::new();
    for n in [10, 1200] {
        let changes: Vec<Value> = (0..n)
            .map(|i| json!({ "user": { "externalId": format!("u{i}"), "source": format!("s{i}") }, "set": [{ "name": "batch", "value": n.to_string() }] }))
            .collect();
        let (statements, data) = server.statements_for(SET, json!({ "c": changes })).await;
        assert_eq!(data["setUserAttributes"]["succeeded"], n);
        counts.push(statements);
    }
    // Per 500 changes: find the users, read their attributes, delete, touch; then one insert
    // per 5,000 attributes (six columns each, 30,000 bound values); on PostgreSQL one more
    // for the tenant's advisory lock.
    let lock = if backend_kind { 1.0 } else { 0.0 };
    assert_eq!(
        counts,
        [5.0 + lock, 13.0 + lock],
        "statements for 10 and 1,200 changes"
    );
}

each_backend!(changes_run_in_statements_per_chunk_not_per_change => statements_for_changes);

db_test! {
    async fn concurrent_calls_lose_no_change(app) {
        person(&app, "a", json!([])).await;
        let admin = app.token(Role::Admin);
        for round in 0..15 {
            let (one, two) = futures_util::join!(
                app.graphql(&admin, SET, json!({ "c": [{ "user": { "externalId": "a" }, "set": [{ "name": format!("x{round}"), "value": "1" }] }] })),
                app.graphql(&admin, SET, json!({ "c": [{ "user": { "externalId": "a" }, "set": [{ "name": format!("y{round}"), "value": "2" }] }] })),
            );
            one.data();
            two.data();
        }
        assert_eq!(attributes_of(&app, "a").await.as_array().unwrap().len(), 30, "no change was lost");
    }
}

db_test! {
    async fn a_user_has_at_most_two_hundred_attributes(app) {
        person(&app, "a", json!([])).await;
        let many: Vec<Value> = (0..201).map(|i| json!({ "name": format!("n{i}"), "value": "1" })).collect();
        let response = app.graphql(&app.token(Role::Admin), SET, json!({ "c": [{ "user": { "externalId": "a" }, "set": many }] })).await;
        let result = &response.data()["setUserAttributes"]["results"][0];
        assert_eq!(errors(result), [("set".to_owned(), "TOO_MANY".to_owned())]);
        let half: Vec<Value> = (0..150).map(|i| json!({ "name": format!("n{i}"), "value": "1" })).collect();
        let other_half: Vec<Value> = (150..300).map(|i| json!({ "name": format!("n{i}"), "value": "1" })).collect();
        let response = app.graphql(&app.token(Role::Admin), SET, json!({ "c": [
            { "user": { "externalId": "a" }, "set": half },
            { "user": { "externalId": "a" }, "set": other_half },
        ] })).await;
        let results = &response.data()["setUserAttributes"]["results"];
        assert_eq!(results[0]["success"], true);
        assert_eq!(errors(&results[1]), [("set".to_owned(), "TOO_MANY".to_owned())]);
        assert_eq!(attributes_of(&app, "a").await.as_array().unwrap().len(), 150);
    }
}
