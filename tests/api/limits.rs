//! What one operation may cost: refused before it runs when its document or its lists would
//! cost too much, and cut off when its response outgrows `ROSTER_MAX_RESPONSE`.

use roster::auth::Role;
use serde_json::{Value, json};

use crate::helpers::{
    Backend, GraphQLResponse, ServerProcess, TestApp, TestDatabase, peak_rss, spawn_app,
    spawn_app_with,
};

/// A query whose fragments `F1`..`Flevels` each spread the previous one twice: 2^levels
/// copies of `F1` once expanded.
fn spread_bomb(levels: usize) -> String {
    let mut document = format!("query {{ viewer {{ ...F{levels} }} }}\n");
    document.push_str("fragment F1 on Viewer { subject role }\n");
    for level in 2..=levels {
        let previous = level - 1;
        document.push_str(&format!(
            "fragment F{level} on Viewer {{ ...F{previous} ...F{previous} }}\n"
        ));
    }
    document
}

#[tokio::test]
async fn a_spread_bomb_is_refused_before_it_is_expanded() {
    // Expanded, 30 levels would take many minutes to validate (and 40 days): an answer at
    // all shows they were not. 40 levels also pass the parser's recursion limit of 32.
    let app = spawn_app(Backend::Sqlite).await;
    let viewer = app.token(Role::Viewer);
    for levels in [30, 40] {
        let response = app.graphql(&viewer, &spread_bomb(levels), json!({})).await;
        refused_as_too_large_expanded(&response);
    }
}

fn refused_as_too_large_expanded(response: &GraphQLResponse) {
    assert_eq!(response.error_code(), Some("BAD_USER_INPUT"));
    assert!(
        response
            .error_message()
            .contains("once its fragments are expanded"),
        "{}",
        response.error_message()
    );
    assert!(response.body.get("data").is_none());
}

#[tokio::test]
async fn spreads_that_end_in_nothing_are_refused_before_they_are_walked() {
    // No field at all, but 2^30 spreads for the engine to walk.
    let mut document = String::from("query { ...F30 }\nfragment F1 on Query { ...Missing }\n");
    for level in 2..=30 {
        let previous = level - 1;
        document.push_str(&format!(
            "fragment F{level} on Query {{ ...F{previous} ...F{previous} }}\n"
        ));
    }
    let app = spawn_app(Backend::Sqlite).await;
    let response = app
        .graphql(&app.token(Role::Viewer), &document, json!({}))
        .await;
    refused_as_too_large_expanded(&response);
}

#[tokio::test]
async fn a_page_of_null_items_costs_its_default_size() {
    // `first: null` is the default page of 50 to the resolver, and so to the cost.
    let app = spawn_app_with(Backend::Sqlite, |config| config.limits.max_complexity = 60).await;
    let viewer = app.token(Role::Viewer);
    let query = "query($first: Int) { users(first: $first) { nodes { id } } }";
    let response = app.graphql(&viewer, query, json!({ "first": null })).await;
    assert_eq!(response.error_code(), Some("BAD_USER_INPUT"));
    assert!(
        response.error_message().contains("too complex"),
        "{}",
        response.error_message()
    );
    let response = app.graphql(&viewer, query, json!({ "first": 10 })).await;
    assert_eq!(response.data()["users"]["nodes"], json!([]));
}

#[tokio::test]
async fn fragments_within_the_limit_still_run() {
    let app = spawn_app(Backend::Sqlite).await;
    let response = app
        .graphql(&app.token(Role::Viewer), &spread_bomb(8), json!({}))
        .await;
    assert_eq!(response.data()["viewer"]["role"], "viewer");
}

#[tokio::test]
async fn a_document_past_the_token_limit_is_refused() {
    let app = spawn_app_with(Backend::Sqlite, |config| config.limits.max_tokens = 100).await;
    let list = vec!["1"; 100].join(",");
    let query = format!("query($n: [Int!] = [{list}]) {{ viewer {{ role }} }}");
    let response = app
        .graphql(&app.token(Role::Viewer), &query, json!({}))
        .await;
    assert_eq!(response.error_code(), Some("BAD_USER_INPUT"));
    assert!(
        response.error_message().contains("more than 100 tokens"),
        "{}",
        response.error_message()
    );
}

#[tokio::test]
async fn variables_do_not_count_as_tokens() {
    let app = spawn_app_with(Backend::Sqlite, |config| config.limits.max_tokens = 100).await;
    let query = "query($s: [JobStatus!]) { importJobs(status: $s) { nodes { id } } }";
    let statuses = vec!["COMPLETED"; 1000];
    let response = app
        .graphql(&app.token(Role::Viewer), query, json!({ "s": statuses }))
        .await;
    assert_eq!(response.data()["importJobs"]["nodes"], json!([]));
}

/// `user { managees { user { approvers { approver { managees { … } } } } } }`, `rounds`
/// managees deep: each round multiplies the response by the manager's reports.
fn amplification(rounds: usize) -> String {
    let mut inner = "id".to_owned();
    for _ in 0..rounds {
        inner = format!("managees {{ user {{ approvers {{ approver {{ {inner} }} }} }} }}");
    }
    format!(r#"{{ user(lookup: {{ externalId: "boss" }}) {{ {inner} }} }}"#)
}

#[tokio::test]
async fn lists_that_multiply_are_refused_before_they_run() {
    // A process of its own, so that its memory is this query's alone.
    let database = TestDatabase::create(Backend::Sqlite).await;
    let server = ServerProcess::start(&database.url, &[("ROSTER_WORKERS", "0")]);
    let boss = json!({
        "externalId": "boss", "email": "boss@example.com", "firstName": "B", "lastName": "B"
    });
    server
        .import_users(std::iter::once(boss).chain((0..200).map(|i| {
            json!({
                "externalId": format!("r{i}"), "email": format!("r{i}@example.com"),
                "firstName": "R", "lastName": format!("{i}"), "managerExternalId": "boss"
            })
        })))
        .await;
    let before = peak_rss(server.pid());
    let response = server.graphql(&amplification(3), json!({})).await;
    let grown = peak_rss(server.pid()) - before;
    assert_eq!(response.error_code(), Some("BAD_USER_INPUT"));
    assert!(
        response.error_message().contains("too complex"),
        "{}",
        response.error_message()
    );
    assert!(grown < 4 << 20, "the server grew by {grown} bytes");
    // One round is a plain list of reports, and runs.
    let response = server.graphql(&amplification(1), json!({})).await;
    let reports = response.data()["user"]["managees"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(reports, 100, "the default page of managees");
}

#[tokio::test]
async fn managees_come_first_at_a_time() {
    let app = spawn_app(Backend::Sqlite).await;
    import_team(&app, 3, false).await;
    let query = r#"query($first: Int) { user(lookup: { externalId: "boss" }) {
        managees(first: $first) { user { externalId } } } }"#;
    let viewer = app.token(Role::Viewer);
    let response = app.graphql(&viewer, query, json!({ "first": 2 })).await;
    let ids: Vec<&str> = response.data()["user"]["managees"]
        .as_array()
        .unwrap()
        .iter()
        .map(|link| link["user"]["externalId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["r0", "r1"]);
    let response = app.graphql(&viewer, query, json!({ "first": 501 })).await;
    assert_eq!(
        response.field_errors(),
        [("first".to_owned(), "OUT_OF_RANGE".to_owned())]
    );
}

#[tokio::test]
async fn the_largest_dashboard_page_passes_the_default_limits() {
    let app = spawn_app(Backend::Sqlite).await;
    import_team(&app, 99, true).await;
    let admin = app.token(Role::Admin);
    for name in ["Safety", "Privacy", "Ethics"] {
        let track = "mutation($t: LearningTrackInput!) { createLearningTrack(input: $t) { id } }";
        let input = json!({ "name": name, "tags": ["staff"], "dueDays": 30 });
        app.graphql(&admin, track, json!({ "t": input }))
            .await
            .data();
    }
    let page = "{ users(first: 100) { totalCount pageInfo { hasNextPage endCursor }
        nodes { id externalId fullName email department active learningTrackStatus tags
          attributes { name value }
          approvers { label canApprove approver { id fullName email } }
          learningTracks { status assignedAt completedAt expiresAt track { id name } } } } }";
    let response = app.graphql(&app.token(Role::Viewer), page, json!({})).await;
    let users = &response.data()["users"]["nodes"];
    assert_eq!(users.as_array().unwrap().len(), 100);
    assert_eq!(
        users[1]["approvers"][0]["approver"]["email"],
        "boss@example.com"
    );
    assert_eq!(users[1]["learningTracks"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn a_response_past_the_limit_is_cut_off_with_an_error() {
    let app = spawn_app_with(Backend::Sqlite, |config| config.limits.max_response = 2048).await;
    import_team(&app, 99, false).await;
    let viewer = app.token(Role::Viewer);
    let small = app
        .graphql(
            &viewer,
            "{ users(first: 10) { nodes { email } } }",
            json!({}),
        )
        .await;
    assert_eq!(small.data()["users"]["nodes"].as_array().unwrap().len(), 10);

    let large = app
        .graphql(
            &viewer,
            "{ users(first: 100) { nodes { email } } }",
            json!({}),
        )
        .await;
    assert_eq!(large.error_code(), Some("BAD_USER_INPUT"));
    assert!(
        large.error_message().contains("ROSTER_MAX_RESPONSE"),
        "{}",
        large.error_message()
    );
    assert_eq!(large.body["data"], Value::Null);
    assert_eq!(large.body["errors"].as_array().unwrap().len(), 1);
}

/// `boss` and `reports` users reporting to them, in one job.
async fn import_team(app: &TestApp, reports: usize, tagged: bool) {
    let mut users = vec![json!({
        "externalId": "boss", "email": "boss@example.com", "firstName": "B", "lastName": "B"
    })];
    users.extend((0..reports).map(|i| {
        json!({
            "externalId": format!("r{i}"), "email": format!("r{i}@example.com"),
            "firstName": "R", "lastName": format!("{i}"), "managerExternalId": "boss",
            "department": "Sales", "tags": if tagged { json!(["staff"]) } else { json!([]) },
            "attributes": [{ "name": "grade", "value": "7" }]
        })
    }));
    let id = app.submit_job(Value::Array(users), json!({})).await;
    let job = app
        .finished_job(
            "query($id: ID!) { importJob(id: $id) { status } }",
            &json!(id),
        )
        .await;
    assert_eq!(job["status"], "COMPLETED");
}
