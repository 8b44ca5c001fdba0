//! Bulk imports as background jobs: `importUsers`, job status, rows, options, idempotency,
//! the progress subscription, and workers that crash or share one database.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use roster::auth::Role;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::helpers::{
    Backend, GraphQLResponse, ServerProcess, TEST_SECRET, TestApp, TestDatabase, db_test,
    each_backend, spawn_app, spawn_app_with,
};

const SUBMIT: &str = "mutation($users: [UserImportInput!]!, $options: ImportOptions) {
    importUsers(users: $users, options: $options) { id status total createdBy dryRun atomic }
}";

const JOB: &str = "query($id: ID!) { importJob(id: $id) {
    id kind status total processed progress errorMessage integrityWarnings dryRun repeatable
    createdBy startedAt finishedAt
    summary { created updated unchanged skipped failed blocked unblocked deactivated }
} }";

const ROWS: &str = "query($id: ID!, $after: String, $onlyFailed: Boolean) { importJob(id: $id) {
    rows(first: 500, after: $after, onlyFailed: $onlyFailed) {
        totalCount
        pageInfo { hasNextPage endCursor }
        edges { node { index lookupKey action success user { externalId } errors { field code } } }
    }
} }";

fn user(i: usize) -> Value {
    json!({
        "externalId": format!("u{i}"),
        "email": format!("u{i}@example.com"),
        "firstName": format!("First{i}"),
        "lastName": "Bulk",
        "tags": ["staff", format!("team-{}", i % 7)],
        "attributes": [
            { "name": "grade", "value": format!("{}", i % 10), "type": "NUMBER" },
            { "name": "site", "value": "north" },
        ],
    })
}

/// The manager of user `i` in a batch of 2,000: always a later row (a tree, a few levels
/// deep); the last user has none.
fn manager_of(i: usize) -> Option<usize> {
    let manager = 1000 + i / 2;
    (manager > i).then_some(manager)
}

async fn submit(app: &TestApp, token: &str, users: &[Value], options: Value) -> GraphQLResponse {
    app.graphql(token, SUBMIT, json!({ "users": users, "options": options }))
        .await
}

async fn submit_ok(app: &TestApp, users: &[Value], options: Value) -> String {
    let response = submit(app, &app.token(Role::Admin), users, options).await;
    let job = &response.data()["importUsers"];
    assert_eq!(job["status"], "QUEUED", "{job}");
    assert_eq!(job["total"], users.len());
    job["id"].as_str().unwrap().to_owned()
}

/// Polls the job until it reaches a final status.
async fn finished(app: &TestApp, id: &str) -> Value {
    app.finished_job(JOB, &json!(id)).await
}

/// The job once it has written its first chunk (it fails the test after two minutes).
async fn under_way(app: &TestApp, id: &str) -> Value {
    let token = app.token(Role::Viewer);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let job = app.graphql(&token, JOB, json!({ "id": id })).await.data()["importJob"].clone();
        if job["processed"].as_i64().unwrap_or(0) > 0 {
            return job;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the job never started: {job}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every row result of a job, following the pages.
async fn rows(app: &TestApp, id: &str, only_failed: bool) -> Vec<Value> {
    let edges = app.job_rows(ROWS, id, only_failed).await;
    edges.into_iter().map(|edge| edge["node"].clone()).collect()
}

fn actions(rows: &[Value]) -> Vec<(String, bool)> {
    rows.iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap().to_owned(),
                r["success"] == true,
            )
        })
        .collect()
}

/// User `i` with `extra` fields set over [`user`]'s.
fn user_with(i: usize, extra: Value) -> Value {
    let mut row = user(i);
    row.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    row
}

/// Each row's success and its errors as `field=CODE`.
fn outcomes(rows: &[Value]) -> Vec<(bool, Vec<String>)> {
    rows.iter()
        .map(|r| {
            let codes = r["errors"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    format!(
                        "{}={}",
                        e["field"].as_str().unwrap_or(""),
                        e["code"].as_str().unwrap()
                    )
                })
                .collect();
            (r["success"] == true, codes)
        })
        .collect()
}

/// `(user, label, approver, canApprove)` of every stored approver link, by external id.
async fn links(app: &TestApp) -> Vec<(String, String, String, bool)> {
    use entity::{approver_links, users};
    use sea_orm::EntityTrait;
    let db = app.connect().await;
    let external: HashMap<i64, String> = users::Entity::find()
        .all(&db)
        .await
        .unwrap()
        .into_iter()
        .map(|u| (u.id, u.external_id))
        .collect();
    let mut links: Vec<(String, String, String, bool)> = approver_links::Entity::find()
        .all(&db)
        .await
        .unwrap()
        .into_iter()
        .map(|l| {
            (
                external[&l.user_id].clone(),
                l.label,
                external[&l.approver_id].clone(),
                l.can_approve,
            )
        })
        .collect();
    links.sort();
    let _ = db.close().await;
    links
}

/// `(user, manager)` of every stored MANAGER link, by external id.
async fn manager_links(app: &TestApp) -> Vec<(String, String)> {
    links(app)
        .await
        .into_iter()
        .filter(|(_, label, _, _)| label == "MANAGER")
        .map(|(user, _, manager, _)| (user, manager))
        .collect()
}

db_test! {
    async fn managers_later_in_the_batch_and_bad_rows(app) {
        let bad: Vec<usize> = (0..20).map(|k| 7 + 50 * k).collect();
        let users: Vec<Value> = (0..2000)
            .map(|i| {
                let mut user = user(i);
                if let Some(manager) = manager_of(i) {
                    user["managerExternalId"] = json!(format!("u{manager}"));
                }
                if bad.contains(&i) {
                    user["email"] = json!(format!("not-an-email-{i}"));
                }
                user
            })
            .collect();
        let id = submit_ok(&app, &users, json!({ "description": "nightly HR sync" })).await;
        let job = finished(&app, &id).await;
        assert_eq!(job["status"], "COMPLETED_WITH_ERRORS", "{job}");
        assert_eq!(job["kind"], "USER_IMPORT");
        assert_eq!(job["createdBy"], "test-admin");
        assert_eq!((job["total"].as_i64(), job["processed"].as_i64()), (Some(2000), Some(2000)));
        assert_eq!(job["progress"], 1.0);
        assert_eq!(
            job["summary"],
            json!({ "created": 1980, "updated": 0, "unchanged": 0, "skipped": 0, "failed": 20,
                    "blocked": 0, "unblocked": 0, "deactivated": 0 })
        );
        assert!(job["startedAt"].is_string() && job["finishedAt"].is_string());
        assert_eq!(job["repeatable"], true);

        // Every link of a created user is in place, though each manager came later.
        let expected: Vec<(String, String)> = {
            let mut links: Vec<_> = (0..2000)
                .filter(|i| !bad.contains(i))
                .filter_map(|i| Some((format!("u{i}"), format!("u{}", manager_of(i)?))))
                .collect();
            links.sort();
            links
        };
        assert_eq!(expected.len(), 1979);
        assert_eq!(manager_links(&app).await, expected);

        let failed = rows(&app, &id, true).await;
        assert_eq!(
            failed.iter().map(|r| r["index"].as_u64().unwrap() as usize).collect::<Vec<_>>(),
            bad
        );
        for row in &failed {
            let i = row["index"].as_u64().unwrap();
            assert_eq!(row["lookupKey"], format!("default:u{i}"));
            assert_eq!((row["action"].as_str(), row["success"].as_bool()), (Some("FAILED"), Some(false)));
            assert!(row["user"].is_null());
            assert_eq!(row["errors"], json!([{ "field": format!("users[{i}].email"), "code": "INVALID_EMAIL" }]));
        }
        let all = rows(&app, &id, false).await;
        assert_eq!(all.len(), 2000);
        assert_eq!(all[0]["user"]["externalId"], "u0");
        assert_eq!(all[0]["action"], "CREATED");

        // Every row is stored as done with its approvers too, those whose links failed
        // and those the approver pass only settled: a retry of a job given up part way
        // runs again exactly the rows not done.
        let pending = app
            .count_rows(&format!("import_job_chunks WHERE job_id = {id} AND pending > 0"))
            .await;
        assert_eq!(pending, 0);
    }
}

db_test! {
    async fn dry_run_predicts_the_real_run_and_a_resubmission_is_unchanged(app) {
        let mut users: Vec<Value> = (0..600)
            .map(|i| {
                let mut user = user(i);
                if let Some(manager) = (i < 599).then_some(i + 1) {
                    user["managerExternalId"] = json!(format!("u{manager}"));
                }
                user
            })
            .collect();
        // A user sent twice (the second time changed), a manager nobody sends, a bad row.
        let mut again = user(3);
        again["city"] = json!("Lviv");
        users.push(again);
        users[10]["managerExternalId"] = json!("nobody");
        users[20]["phone"] = json!("12");
        let before = app.snapshot().await;

        let dry = submit_ok(&app, &users, json!({ "dryRun": true })).await;
        let dry_job = finished(&app, &dry).await;
        assert_eq!(app.snapshot().await, before, "a dry run writes nothing");
        assert_eq!(dry_job["dryRun"], true);
        assert_eq!(dry_job["status"], "COMPLETED_WITH_ERRORS");
        let predicted = rows(&app, &dry, false).await;

        let real = submit_ok(&app, &users, json!({})).await;
        let real_job = finished(&app, &real).await;
        let done = rows(&app, &real, false).await;
        assert_eq!(actions(&predicted), actions(&done));
        assert_eq!(dry_job["summary"], real_job["summary"]);
        assert_eq!(
            real_job["summary"],
            json!({ "created": 599, "updated": 1, "unchanged": 0, "skipped": 0, "failed": 3,
                    "blocked": 0, "unblocked": 0, "deactivated": 0 })
        );
        // u20 is refused, so u19's manager does not exist when the links are set.
        assert_eq!(done[20]["action"], "FAILED");
        assert_eq!(done[19]["errors"], json!([{ "field": "users[19].managerExternalId", "code": "NOT_FOUND" }]));
        assert_eq!(done[600]["action"], "UPDATED", "the second u3 sees the first");
        assert_eq!(
            (done[10]["action"].as_str(), done[10]["success"].as_bool()),
            (Some("CREATED"), Some(false)),
            "the user is written; only the missing manager fails"
        );
        assert_eq!(done[10]["errors"], json!([{ "field": "users[10].managerExternalId", "code": "NOT_FOUND" }]));
        assert!(dry_job["integrityWarnings"].as_array().unwrap().is_empty());

        let written = app.snapshot().await;
        let resent = submit_ok(&app, &users, json!({})).await;
        let resent_job = finished(&app, &resent).await;
        // Every row but the refused u20, both u3 rows and the two whose link fails included.
        assert_eq!(resent_job["summary"]["unchanged"], 600, "{resent_job}");
        assert_eq!(resent_job["summary"]["failed"], 3, "the same rows fail again");
        assert_eq!(resent_job["summary"]["updated"], 0);
        assert_eq!(app.snapshot().await, written, "an unchanged job writes nothing");
    }
}

db_test! {
    async fn an_atomic_job_with_one_bad_row_writes_nothing(app) {
        let mut users: Vec<Value> = (0..40).map(user).collect();
        users[25]["birthDate"] = json!("31.02.1988");
        let before = app.snapshot().await;
        let id = submit_ok(&app, &users, json!({ "atomic": true })).await;
        let job = finished(&app, &id).await;
        assert_eq!(job["status"], "FAILED");
        assert!(job["errorMessage"].as_str().unwrap().contains("atomic"), "{job}");
        assert_eq!((job["summary"]["failed"].as_i64(), job["summary"]["skipped"].as_i64(), job["summary"]["created"].as_i64()), (Some(1), Some(39), Some(0)));
        assert_eq!(app.snapshot().await, before);
        let failed = rows(&app, &id, true).await;
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0]["errors"][0]["field"], "users[25].birthDate");
        let all = rows(&app, &id, false).await;
        assert_eq!(all[0]["action"], "SKIPPED");
        assert_eq!(all[0]["errors"][0]["code"], "NOT_WRITTEN");

        users[25]["birthDate"] = json!("1988-02-28");
        let id = submit_ok(&app, &users, json!({ "atomic": true })).await;
        let job = finished(&app, &id).await;
        assert_eq!(job["status"], "COMPLETED");
        assert_eq!(job["summary"]["created"], 40);
        assert!(app.stored_user("u39").await.is_some());
    }
}

db_test! {
    async fn an_idempotency_key_returns_the_first_job(app) {
        let admin = app.token(Role::Admin);
        let users: Vec<Value> = (0..5).map(user).collect();
        let options = json!({ "idempotencyKey": "hr-2026-11-24" });
        let first = submit_ok(&app, &users, options.clone()).await;
        finished(&app, &first).await;
        let again = submit(&app, &admin, &users, options.clone()).await;
        assert_eq!(again.data()["importUsers"]["id"], first.as_str());
        assert_eq!(again.data()["importUsers"]["status"], "COMPLETED", "whatever its status");

        let other: Vec<Value> = (0..6).map(user).collect();
        let clash = submit(&app, &admin, &other, options.clone()).await;
        assert_eq!(clash.error_code(), Some("CONFLICT"), "{:?}", clash.body);
        assert_eq!(clash.field_errors(), [("options.idempotencyKey".into(), "KEY_REUSED".into())]);

        // Keys are per tenant.
        let elsewhere = app.token_for(Role::Admin, Some("acme"));
        let theirs = submit(&app, &elsewhere, &users, options).await;
        assert_ne!(theirs.data()["importUsers"]["id"], first.as_str());

        let listed = app
            .graphql(&admin, "{ importJobs { totalCount edges { node { id } } } }", json!({}))
            .await;
        assert_eq!(listed.data()["importJobs"]["totalCount"], 1);
    }
}

db_test! {
    async fn jobs_belong_to_their_tenant_and_only_admins_submit(app) {
        let users: Vec<Value> = (0..3).map(user).collect();
        let id = submit_ok(&app, &users, json!({})).await;
        finished(&app, &id).await;
        let second = submit_ok(&app, &[user(9)], json!({})).await;
        finished(&app, &second).await;

        let viewer = app.token(Role::Viewer);
        let forbidden = submit(&app, &viewer, &users, json!({})).await;
        assert_eq!(forbidden.error_code(), Some("FORBIDDEN"));
        let listed = app
            .graphql(&viewer, "{ importJobs(first: 1) { totalCount pageInfo { hasNextPage endCursor } edges { node { id } } } }", json!({}))
            .await;
        let page = &listed.data()["importJobs"];
        assert_eq!(page["totalCount"], 2, "the viewer's submission made no job");
        assert_eq!(page["edges"][0]["node"]["id"], second.as_str(), "newest first");
        let next = app
            .graphql(&viewer, "query($after: String) { importJobs(first: 5, after: $after, status: [COMPLETED]) { edges { node { id } } } }", json!({ "after": page["pageInfo"]["endCursor"] }))
            .await;
        assert_eq!(next.data()["importJobs"]["edges"], json!([{ "node": { "id": id } }]));
        let none = app
            .graphql(&viewer, "{ importJobs(status: [FAILED, QUEUED]) { totalCount } }", json!({}))
            .await;
        assert_eq!(none.data()["importJobs"]["totalCount"], 0);

        let other = app.token_for(Role::Admin, Some("acme"));
        let theirs = app.graphql(&other, JOB, json!({ "id": id })).await;
        assert_eq!(theirs.data()["importJob"], Value::Null);
        let theirs = app.graphql(&other, "{ importJobs { totalCount } }", json!({})).await;
        assert_eq!(theirs.data()["importJobs"]["totalCount"], 0);
    }
}

#[tokio::test]
async fn bad_submissions_are_refused_whole() {
    let app = spawn_app(Backend::Sqlite).await;
    let admin = app.token(Role::Admin);
    let cases = [
        (json!([]), json!({}), "users", "REQUIRED"),
        (
            json!([user(1)]),
            json!({ "idempotencyKey": "k".repeat(256) }),
            "options.idempotencyKey",
            "TOO_LONG",
        ),
        (
            json!([user(1)]),
            json!({ "idempotencyKey": "  " }),
            "options.idempotencyKey",
            "REQUIRED",
        ),
        (
            json!([user(1)]),
            json!({ "description": "d".repeat(1001) }),
            "options.description",
            "TOO_LONG",
        ),
    ];
    for (users, options, field, code) in cases {
        let response = app
            .graphql(
                &admin,
                SUBMIT,
                json!({ "users": users, "options": options }),
            )
            .await;
        assert_eq!(response.error_code(), Some("BAD_USER_INPUT"), "{field}");
        assert_eq!(
            response.field_errors(),
            [(field.to_owned(), code.to_owned())]
        );
    }
    let too_many: Vec<Value> = (0..100_001)
        .map(|i| json!({ "externalId": format!("{i}"), "email": "a@b.co", "firstName": "A", "lastName": "B" }))
        .collect();
    let response = submit(&app, &admin, &too_many, json!({})).await;
    assert_eq!(
        response.field_errors(),
        [("users".into(), "TOO_MANY".into())]
    );

    let single = app
        .graphql(
            &admin,
            "mutation($u: UserImportInput!) { importUser(user: $u, options: { idempotencyKey: \"x\" }) { action } }",
            json!({ "u": user(1) }),
        )
        .await;
    assert_eq!(
        single.field_errors(),
        [("options.idempotencyKey".into(), "NOT_SUPPORTED".into())]
    );

    assert_eq!(job_count(&app).await, 0, "nothing was stored");
    assert_eq!(app.stored_user("1").await, None);
}

/// How many jobs the test tenant has.
async fn job_count(app: &TestApp) -> u64 {
    let listed = app
        .graphql(
            &app.token(Role::Viewer),
            "{ importJobs { totalCount } }",
            json!({}),
        )
        .await;
    listed.data()["importJobs"]["totalCount"].as_u64().unwrap()
}

/// Users sent in a variable are read one at a time, apart from the rest of the request;
/// what GraphQL refuses in one is still refused with GraphQL's own error, and the same
/// users sent inline make the same job.
#[tokio::test]
async fn users_in_a_variable_are_checked_as_graphql_checks_them() {
    let app = spawn_app(Backend::Sqlite).await;
    let admin = app.token(Role::Admin);
    let refused = [
        (json!({ "nickname": "x" }), "unknown field \"nickname\""),
        (
            json!({ "gender": "SOMETIMES" }),
            "does not contain the value \"SOMETIMES\"",
        ),
        (json!({ "email": null }), "expected type \"String\""),
        (
            json!({ "attributes": [{ "name": "a", "colour": "red" }] }),
            "unknown field \"colour\"",
        ),
    ];
    for (change, message) in refused {
        let mut bad = user(2);
        for (key, value) in change.as_object().unwrap() {
            bad[key] = value.clone();
        }
        let response = submit(&app, &admin, &[user(1), bad], json!({})).await;
        let error = response.body["errors"][0]["message"]
            .as_str()
            .unwrap_or_default();
        assert!(error.contains(message), "{message}: {:?}", response.body);
        assert!(error.contains("users"), "names the argument: {error}");
        assert_eq!(
            response.body.get("data"),
            None,
            "a request error: {:?}",
            response.body
        );
    }
    assert_eq!(job_count(&app).await, 0, "nothing was stored");

    let users: Vec<Value> = (0..3).map(user).collect();
    let options = json!({ "idempotencyKey": "same-users" });
    let sent = submit_ok(&app, &users, options.clone()).await;
    let inline = format!(
        "mutation {{ importUsers(users: {}, options: {{ idempotencyKey: \"same-users\" }}) {{ id }} }}",
        graphql_literal(&json!(users))
    );
    let response = app.graphql(&admin, &inline, json!({})).await;
    assert_eq!(
        response.data()["importUsers"]["id"],
        sent.as_str(),
        "the same rows were stored either way"
    );
    let job = finished(&app, &sent).await;
    assert_eq!(job["summary"]["created"], 3);
    let stored = app.stored_user("u2").await.expect("stored");
    assert_eq!(stored.first_name, "First2");
}

/// A JSON value written as a GraphQL input literal (object keys unquoted).
fn graphql_literal(value: &Value) -> String {
    match value {
        Value::Object(fields) => {
            let fields: Vec<String> = fields
                .iter()
                .map(|(key, value)| format!("{key}: {}", graphql_literal(value)))
                .collect();
            format!("{{{}}}", fields.join(", "))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(graphql_literal).collect();
            format!("[{}]", items.join(", "))
        }
        other => other.to_string(),
    }
}

/// Opens a subscription to a job's progress and collects every event until it completes.
async fn progress_events(port: u16, token: &str, id: &str) -> Vec<Value> {
    let mut request = format!("ws://127.0.0.1:{port}/graphql/ws")
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let send = |value: Value| Message::text(value.to_string());
    socket
        .send(send(json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } })))
        .await
        .unwrap();
    socket
        .send(send(json!({ "id": "1", "type": "subscribe", "payload": {
            "query": "subscription($id: ID!) { importJobProgress(id: $id) { status processed progress summary { created } } }",
            "variables": { "id": id },
        } })))
        .await
        .unwrap();
    let mut events = Vec::new();
    loop {
        let message = tokio::time::timeout(Duration::from_secs(120), socket.next())
            .await
            .expect("an event before the deadline")
            .expect("the socket stays open")
            .unwrap();
        let Message::Text(text) = message else {
            continue;
        };
        let body: Value = serde_json::from_str(&text).unwrap();
        match body["type"].as_str() {
            Some("next") => {
                assert!(body["payload"]["errors"].is_null(), "{body}");
                events.push(body["payload"]["data"]["importJobProgress"].clone());
            }
            Some("complete") => return events,
            Some("connection_ack") => {}
            other => panic!("unexpected {other:?}: {body}"),
        }
    }
}

db_test! {
    async fn progress_is_pushed_over_websocket_until_the_end(app) {
        let users: Vec<Value> = (0..3000).map(user).collect();
        let id = submit_ok(&app, &users, json!({})).await;
        let viewer = app.token(Role::Viewer);
        let events = progress_events(app.port, &viewer, &id).await;
        let last = events.last().unwrap();
        assert_eq!(last["status"], "COMPLETED");
        assert_eq!((last["processed"].as_i64(), last["progress"].as_f64()), (Some(3000), Some(1.0)));
        assert_eq!(last["summary"]["created"], 3000);
        let processed: Vec<i64> = events.iter().map(|e| e["processed"].as_i64().unwrap()).collect();
        assert!(processed.windows(2).all(|w| w[0] <= w[1]), "{processed:?}");
        assert!(events.len() >= 3, "an event per committed chunk: {processed:?}");
    }
}

#[tokio::test]
async fn a_watcher_sees_a_job_another_server_runs() {
    let app =
        crate::helpers::spawn_app_with(Backend::Postgres, |config| config.jobs.workers = 0).await;
    let users: Vec<Value> = (0..1500).map(user).collect();
    let id = submit_ok(&app, &users, json!({})).await;
    let viewer = app.token(Role::Viewer);
    let watcher = tokio::spawn({
        let port = app.port;
        let id = id.clone();
        async move { progress_events(port, &viewer, &id).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        status_of(&app, &id).await,
        "QUEUED",
        "this server runs no jobs"
    );
    app.spawn_peer(|_| {}).await;
    let events = watcher.await.unwrap();
    assert_eq!(events.first().unwrap()["status"], "QUEUED");
    assert_eq!(events.last().unwrap()["status"], "COMPLETED");
    assert_eq!(events.last().unwrap()["processed"], 1500);
}

async fn status_of(app: &TestApp, id: &str) -> String {
    let job = app
        .graphql(&app.token(Role::Viewer), JOB, json!({ "id": id }))
        .await;
    job.data()["importJob"]["status"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A job interrupted by `kill -9` resumes in the next process after its last committed
/// chunk: every user exists once, and the counts add up.
#[tokio::test]
async fn a_killed_server_resumes_the_job_without_applying_anything_twice() {
    let database = TestDatabase::create(Backend::Sqlite).await;
    let env = [
        ("ROSTER_JWT_SECRET", TEST_SECRET),
        ("ROSTER_JOB_LEASE", "2s"),
        ("ROSTER_JOB_CHUNK", "1000"),
    ];
    let mut server = ServerProcess::start(&database.url, &env);
    let users: Vec<Value> = (0..50_000).map(user).collect();
    let submitted = server
        .graphql(SUBMIT, json!({ "users": users, "options": {} }))
        .await;
    let id = submitted.data()["importUsers"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let job = server.graphql(JOB, json!({ "id": id })).await;
        let processed = job.data()["importJob"]["processed"].as_i64().unwrap();
        assert_eq!(
            job.data()["importJob"]["status"],
            "RUNNING",
            "killed while running"
        );
        if processed >= 3000 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill();

    let server = ServerProcess::start(&database.url, &env);
    let job = server
        .finished_job(JOB, &id, Duration::from_secs(600))
        .await;
    assert_eq!(job["status"], "COMPLETED", "{job}");
    assert_eq!(job["processed"], 50_000);
    let summary = &job["summary"];
    assert_eq!(
        summary["created"], 50_000,
        "no row was applied twice: {summary}"
    );
    assert_eq!(summary["unchanged"], 0);
    let count = server.graphql("{ users { totalCount } }", json!({})).await;
    assert_eq!(count.data()["users"]["totalCount"], 50_000);
    let results = server
        .graphql(
            "query($id: ID!) { importJob(id: $id) { rows(first: 1) { totalCount } } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(results.data()["importJob"]["rows"]["totalCount"], 50_000);
}

/// Two processes on one PostgreSQL share the queue: every job runs once.
#[tokio::test]
async fn two_processes_share_the_queue_and_run_each_job_once() {
    let database = TestDatabase::create(Backend::Postgres).await;
    let env = [
        ("ROSTER_JWT_SECRET", TEST_SECRET),
        ("ROSTER_JOB_CHUNK", "100"),
        ("ROSTER_JOB_POLL", "50ms"),
    ];
    let servers = [
        ServerProcess::start(&database.url, &env),
        ServerProcess::start(&database.url, &env),
    ];
    let mut ids = Vec::new();
    for job in 0..10 {
        let users: Vec<Value> = (0..400).map(|i| user(job * 1000 + i)).collect();
        let response = servers[job % 2]
            .graphql(SUBMIT, json!({ "users": users, "options": {} }))
            .await;
        ids.push(
            response.data()["importUsers"]["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    for id in &ids {
        let job = servers[0]
            .finished_job(JOB, id, Duration::from_secs(300))
            .await;
        assert_eq!(job["status"], "COMPLETED", "{job}");
        assert_eq!(job["summary"]["created"], 400, "{job}");
        let rows = servers[1]
            .graphql("query($id: ID!) { importJob(id: $id) { rows(first: 500) { totalCount edges { node { action } } } } }", json!({ "id": id }))
            .await;
        let rows = &rows.data()["importJob"]["rows"];
        assert_eq!(rows["totalCount"], 400);
        assert!(
            rows["edges"]
                .as_array()
                .unwrap()
                .iter()
                .all(|e| e["node"]["action"] == "CREATED")
        );
    }
    let count = servers[1]
        .graphql("{ users { totalCount } }", json!({}))
        .await;
    assert_eq!(count.data()["users"]["totalCount"], 4000);
    let mut finished = 0.0;
    for server in &servers {
        finished += server
            .metric("roster_jobs_finished_total{status=\"COMPLETED\"}")
            .await;
    }
    assert_eq!(
        finished, 10.0,
        "each job finished once, in one of the processes"
    );
}

db_test! {
    async fn the_integrity_check_lists_links_to_inactive_approvers(app) {
        let mut ann = user(1);
        ann["managerExternalId"] = json!("u2");
        let id = submit_ok(&app, &[ann, user(2)], json!({})).await;
        assert_eq!(finished(&app, &id).await["integrityWarnings"], json!([]));

        // The manager leaves: Ann's link now points at an inactive user.
        let mut gone = user(2);
        gone["active"] = json!(false);
        let id = submit_ok(&app, std::slice::from_ref(&gone), json!({})).await;
        let job = finished(&app, &id).await;
        assert_eq!(job["summary"]["blocked"], 1);
        assert_eq!(
            job["integrityWarnings"],
            json!(["default:u1 (u1@example.com) has MANAGER default:u2 (u2@example.com), who is inactive"])
        );
        let id = submit_ok(&app, &[gone], json!({ "runIntegrityCheck": false })).await;
        assert_eq!(finished(&app, &id).await["integrityWarnings"], json!([]), "not asked for");
    }
}

db_test! {
    async fn approver_rules_see_the_rows_before_them_in_the_same_chunk(app) {
        // Stored before the job: u9 has a MANAGER and a HIGHER_MANAGER.
        let mut before = vec![user(7), user(8), user(10)];
        let mut stored = user(9);
        stored["approvers"] = json!([
            { "approver": { "externalId": "u7" } },
            { "approver": { "externalId": "u8" }, "label": "HIGHER_MANAGER" },
        ]);
        before.push(stored);
        let id = submit_ok(&app, &before, json!({})).await;
        assert_eq!(finished(&app, &id).await["status"], "COMPLETED");

        let with = user_with;
        let batch = vec![
            with(1, json!({})),
            with(2, json!({ "managerExternalId": "u1" })),
            with(3, json!({ "managerExternalId": "u2" })),
            // u1 under u3 would close the loop u1 → u3 → u2 → u1, all set in this job.
            with(1, json!({ "managerExternalId": "u3" })),
            with(4, json!({ "approvers": [
                { "approver": { "externalId": "u1" } },
                { "approver": { "externalId": "u2" }, "label": "NON_APPROVING_MANAGER" },
            ] })),
            // u4 again: u2 goes, and u1 stops approving.
            with(4, json!({ "approvers": [
                { "approver": { "externalId": "u1" }, "canApprove": false },
            ] })),
            with(5, json!({ "active": false })),
            with(6, json!({ "managerExternalId": "u5" })),
            with(11, json!({ "managerExternalId": "nobody" })),
            with(12, json!({ "managerExternalId": "u12" })),
            // Only the MANAGER changes; the stored HIGHER_MANAGER stays.
            with(9, json!({ "managerExternalId": "u10" })),
        ];
        let id = submit_ok(&app, &batch, json!({})).await;
        let job = finished(&app, &id).await;
        assert_eq!(job["status"], "COMPLETED_WITH_ERRORS", "{job}");
        let outcome = outcomes(&rows(&app, &id, false).await);
        let ok = (true, vec![]);
        let failed = |field: &str, code: &str| (false, vec![format!("{field}={code}")]);
        assert_eq!(
            outcome,
            vec![
                ok.clone(),
                ok.clone(),
                ok.clone(),
                failed("users[3].managerExternalId", "CYCLE"),
                ok.clone(),
                ok.clone(),
                ok.clone(),
                failed("users[7].managerExternalId", "INACTIVE"),
                failed("users[8].managerExternalId", "NOT_FOUND"),
                failed("users[9].managerExternalId", "SELF"),
                ok,
            ]
        );
        let link = |user: &str, label: &str, approver: &str, can: bool| {
            (user.to_owned(), label.to_owned(), approver.to_owned(), can)
        };
        assert_eq!(
            links(&app).await,
            vec![
                link("u2", "MANAGER", "u1", true),
                link("u3", "MANAGER", "u2", true),
                link("u4", "MANAGER", "u1", false),
                link("u9", "HIGHER_MANAGER", "u8", true),
                link("u9", "MANAGER", "u10", true),
            ]
        );
    }
}

db_test! {
    async fn unique_values_held_by_other_users_fail_their_rows(app) {
        let mut lone = user(1);
        lone["login"] = json!("lone");
        let id = submit_ok(&app, &[lone, user(2)], json!({})).await;
        assert_eq!(finished(&app, &id).await["status"], "COMPLETED");
        let before = app.snapshot().await;

        let with = user_with;
        let failed = |field: &str, code: &str| (false, vec![format!("{field}={code}")]);
        let batch = vec![
            with(3, json!({ "email": "U1@example.com" })),
            with(4, json!({ "login": "LONE" })),
        ];
        let id = submit_ok(&app, &batch, json!({})).await;
        assert_eq!(finished(&app, &id).await["status"], "COMPLETED_WITH_ERRORS");
        assert_eq!(
            outcomes(&rows(&app, &id, false).await),
            vec![failed("users[0].email", "TAKEN"), failed("users[1].login", "TAKEN")]
        );
        // Matched to u1 by its email, the row would give u1 the key u2 holds.
        let rekey = [with(2, json!({ "email": "u1@example.com" }))];
        let id = submit_ok(&app, &rekey, json!({ "matchBy": "EMAIL" })).await;
        assert_eq!(finished(&app, &id).await["status"], "COMPLETED_WITH_ERRORS");
        assert_eq!(
            outcomes(&rows(&app, &id, false).await),
            vec![failed("users[0].externalId", "TAKEN")]
        );
        assert_eq!(app.snapshot().await, before);
    }
}

/// Statements a whole job of `n` users runs, from its submission to its end: each with tags,
/// attributes and a manager, so that both passes write.
async fn statements_for_job(
    server: &ServerProcess,
    offset: usize,
    n: usize,
    options: &Value,
) -> f64 {
    const STATEMENTS: &str = "roster_db_statements_total{failed=\"false\"}";
    const FINISHED: &str = "roster_jobs_finished_total{status=\"COMPLETED\"}";
    let users: Vec<Value> = (offset..offset + n)
        .map(|i| {
            let mut row = user(i);
            if i > offset {
                row["managerExternalId"] = json!(format!("u{}", offset + (i - offset) / 10));
            }
            row
        })
        .collect();
    let finished = server.metric(FINISHED).await;
    let before = server.metric(STATEMENTS).await;
    let response = server
        .graphql(SUBMIT, json!({ "users": users, "options": options }))
        .await;
    assert_eq!(response.data()["importUsers"]["status"], "QUEUED");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    // Only /metrics is read meanwhile: it runs no statement.
    while server.metric(FINISHED).await == finished {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the job did not finish"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.metric(STATEMENTS).await - before
}

/// A normal job, a dry run and an atomic job (one transaction, its chunks in savepoints)
/// each run a few statements per chunk, not per row.
async fn job_statements_grow_per_chunk(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    // One worker that wakes only when a job is submitted, with a lease that never needs
    // renewing during the test: nothing but the job runs statements.
    let server = ServerProcess::start(
        &database.url,
        &[
            ("ROSTER_WORKERS", "1"),
            ("ROSTER_JOB_POLL", "1h"),
            ("ROSTER_JOB_LEASE", "1h"),
            ("ROSTER_JOB_CHUNK", "500"),
        ],
    );
    let runs = [
        json!({}),
        json!({ "dryRun": true }),
        json!({ "atomic": true }),
    ];
    for (run, options) in runs.iter().enumerate() {
        let offset = 100_000 * run;
        let one_chunk = statements_for_job(&server, offset, 500, options).await;
        let four_chunks = statements_for_job(&server, offset + 10_000, 2_000, options).await;
        let per_chunk = (four_chunks - one_chunk) / 3.0;
        // Users, tags, attributes, learning tracks, results and the job's progress in the
        // first pass, approvers in the second: a few dozen statements per 500 rows. One
        // statement per row would be 500 or more.
        assert!(
            per_chunk <= 60.0,
            "{options}: {one_chunk} statements for 500 rows, {four_chunks} for 2,000: \
             {per_chunk} per chunk of 500"
        );
    }
}

each_backend!(a_job_runs_statements_per_chunk_not_per_row => job_statements_grow_per_chunk);

const CANCEL: &str = "mutation($id: ID!) { cancelImportJob(id: $id) {
    status processed total progress startedAt finishedAt summary { created failed }
} }";

/// Users of the tenant, as stored.
async fn user_count(app: &TestApp) -> u64 {
    use sea_orm::{EntityTrait, PaginatorTrait};
    let db = app.connect().await;
    let count = entity::users::Entity::find().count(&db).await.unwrap();
    let _ = db.close().await;
    count
}

async fn a_cancelled_queued_job_never_starts(backend: Backend) {
    // No worker here: the job stays queued.
    let app = spawn_app_with(backend, |config| config.jobs.workers = 0).await;
    let admin = app.token(Role::Admin);
    let users: Vec<Value> = (0..50).map(user).collect();
    let id = submit_ok(&app, &users, json!({})).await;
    let cancelled = app.graphql(&admin, CANCEL, json!({ "id": id })).await;
    let job = &cancelled.data()["cancelImportJob"];
    assert_eq!(job["status"], "CANCELLED", "{job}");
    assert_eq!(job["startedAt"], Value::Null);
    assert!(job["finishedAt"].is_string());
    assert_eq!(job["processed"], 0);
    assert_eq!(job["progress"], 0.0);
    // Again: the same answer.
    let again = app.graphql(&admin, CANCEL, json!({ "id": id })).await;
    assert_eq!(again.data()["cancelImportJob"]["status"], "CANCELLED");

    // A server with workers on the same database never claims it.
    app.spawn_peer(|_| {}).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let job = finished(&app, &id).await;
    assert_eq!(job["status"], "CANCELLED");
    assert_eq!(job["startedAt"], Value::Null);
    assert_eq!(user_count(&app).await, 0);
}

each_backend!(a_cancelled_queued_job_never_starts => a_cancelled_queued_job_never_starts);

/// SQLite's write lock has no queue: a writer that finds it taken sleeps and tries again.
/// A bulk job lets such a writer have it between two of its chunks, so that a user written
/// (or a job cancelled) while a job runs waits for a chunk, not for the whole job.
#[tokio::test]
async fn a_write_during_a_sqlite_job_waits_for_a_chunk_not_the_job() {
    let app = spawn_app(Backend::Sqlite).await;
    let admin = app.token(Role::Admin);
    let users: Vec<Value> = (0..20_000).map(user).collect();
    let id = submit_ok(&app, &users, json!({})).await;
    under_way(&app, &id).await;
    let one = "mutation($u: UserImportInput!) { importUser(user: $u) { action } }";
    // Five writes in turn, each waiting for a chunk or two of the job's forty; had they
    // to wait for the job, it would be over before the last (one may find the lock free
    // by chance).
    for i in 0..5 {
        let written = app
            .graphql(&admin, one, json!({ "u": user(50_000 + i) }))
            .await;
        assert_eq!(written.data()["importUser"]["action"], "CREATED");
        let job = app.graphql(&admin, JOB, json!({ "id": id })).await.data()["importJob"].clone();
        assert_eq!(job["status"], "RUNNING", "write {i}: {job}");
    }
}

db_test! {
    async fn a_running_job_stops_after_its_chunk_and_keeps_what_it_wrote(app) {
        let users: Vec<Value> = (0..20_000).map(user).collect();
        let id = submit_ok(&app, &users, json!({})).await;
        under_way(&app, &id).await;
        let cancelled = app.graphql(&app.token(Role::Admin), CANCEL, json!({ "id": id })).await;
        let job = cancelled.data()["cancelImportJob"].clone();
        assert_eq!(job["status"], "CANCELLED", "{job}");
        let processed = job["processed"].as_i64().unwrap();
        assert!(processed > 0 && processed < 20_000, "{job}");
        let progress = job["progress"].as_f64().unwrap();
        assert!(progress > 0.0 && progress < 1.0, "{job}");

        // The worker finds its lease gone and writes no further chunk.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let later = finished(&app, &id).await;
        assert_eq!(later["status"], "CANCELLED");
        assert_eq!(later["processed"], processed, "nothing was written after the cancel");
        assert_eq!(later["summary"]["created"], processed);
        assert_eq!(user_count(&app).await, processed as u64, "what was committed stays");
        assert_eq!(rows(&app, &id, false).await.len(), processed as usize);
    }
}

db_test! {
    async fn only_unfinished_jobs_of_ones_own_tenant_are_cancelled(app) {
        let id = submit_ok(&app, &[user(1)], json!({})).await;
        assert_eq!(finished(&app, &id).await["status"], "COMPLETED");
        let admin = app.token(Role::Admin);
        let done = app.graphql(&admin, CANCEL, json!({ "id": id })).await;
        assert_eq!(done.error_code(), Some("CONFLICT"));
        assert_eq!(done.field_errors(), vec![("id".to_owned(), "FINISHED".to_owned())]);
        assert_eq!(finished(&app, &id).await["status"], "COMPLETED", "unchanged");

        let viewer = app.graphql(&app.token(Role::Viewer), CANCEL, json!({ "id": id })).await;
        assert_eq!(viewer.error_code(), Some("FORBIDDEN"));
        let elsewhere = app
            .graphql(&app.token_for(Role::Admin, Some("acme")), CANCEL, json!({ "id": id }))
            .await;
        assert_eq!(elsewhere.error_code(), Some("NOT_FOUND"));
        let bad = app.graphql(&admin, CANCEL, json!({ "id": "x" })).await;
        assert_eq!(bad.error_code(), Some("BAD_USER_INPUT"));

        // An atomic job runs as one transaction: once running, it cannot stop midway.
        let users: Vec<Value> = (100..1100).map(user).collect();
        let atomic = submit_ok(&app, &users, json!({ "atomic": true })).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while status_of(&app, &atomic).await == "QUEUED" {
            assert!(tokio::time::Instant::now() < deadline, "the atomic job never started");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let refused = app.graphql(&admin, CANCEL, json!({ "id": atomic })).await;
        assert_eq!(refused.error_code(), Some("CONFLICT"), "{}", refused.error_message());
        assert_eq!(refused.field_errors(), vec![("id".to_owned(), "NOT_CANCELLABLE".to_owned())]);
    }
}
