//! Text PostgreSQL cannot store (NUL, and any control character where the text is one
//! line) is refused where it enters, on both databases alike: a bad row of a job fails
//! alone with `INVALID_CHARACTERS` naming its field, a bad request is a `BAD_USER_INPUT`,
//! and nothing of it is written.

use roster::auth::Role;
use serde_json::{Value, json};

use crate::helpers::{GraphQLResponse, TestApp, db_test, person};

const SUBMIT: &str = "mutation($users: [UserImportInput!]!, $options: ImportOptions) {
    importUsers(users: $users, options: $options) { id }
}";

const UPLOAD: &str = "mutation($file: Upload!, $options: ImportOptions) {
    importUsersCsv(file: $file, options: $options) { id }
}";

const JOB: &str = "query($id: ID!) { importJob(id: $id) {
    status summary { created failed }
    rows(first: 10) { edges { node { lookupKey action errors { field code } } } }
} }";

/// What became of one row: `(lookupKey, action, [(field, code)])`.
type Outcome = (String, String, Vec<(String, String)>);

/// Each row of a finished job, in order.
fn outcomes(job: &Value) -> Vec<Outcome> {
    job["rows"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|edge| {
            let row = &edge["node"];
            let errors = row["errors"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    (
                        e["field"].as_str().unwrap_or_default().to_owned(),
                        e["code"].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            let text = |name: &str| row[name].as_str().unwrap().to_owned();
            (text("lookupKey"), text("action"), errors)
        })
        .collect()
}

fn created(lookup_key: &str) -> Outcome {
    (lookup_key.to_owned(), "CREATED".to_owned(), vec![])
}

fn refused(lookup_key: &str, fields: &[&str]) -> Outcome {
    let errors = fields
        .iter()
        .map(|field| ((*field).to_owned(), "INVALID_CHARACTERS".to_owned()))
        .collect();
    (lookup_key.to_owned(), "FAILED".to_owned(), errors)
}

async fn submit(app: &TestApp, users: Value, options: Value) -> GraphQLResponse {
    let variables = json!({ "users": users, "options": options });
    app.graphql(&app.token(Role::Admin), SUBMIT, variables)
        .await
}

async fn upload(app: &TestApp, file: &str, options: Value) -> GraphQLResponse {
    let variables = json!({ "options": options });
    app.upload(
        &app.token(Role::Admin),
        UPLOAD,
        variables,
        file.as_bytes().to_vec(),
    )
    .await
}

/// The finished job a submission answered with.
async fn finished(app: &TestApp, response: &GraphQLResponse) -> Value {
    let data = response.data();
    let id = data["importUsers"]["id"]
        .as_str()
        .or(data["importUsersCsv"]["id"].as_str());
    app.finished_job(JOB, &json!(id.expect("a job id"))).await
}

/// A refused submission: one `BAD_USER_INPUT` with these `(field, code)` pairs.
fn assert_refused(response: &GraphQLResponse, fields: &[(&str, &str)]) {
    assert_eq!(
        response.error_code(),
        Some("BAD_USER_INPUT"),
        "{}",
        response.body
    );
    let expected: Vec<(String, String)> = fields
        .iter()
        .map(|(f, c)| ((*f).to_owned(), (*c).to_owned()))
        .collect();
    assert_eq!(response.field_errors(), expected, "{}", response.body);
}

/// Nothing of a refused submission was kept: no job, no row, no user.
async fn assert_nothing_stored(app: &TestApp) {
    for table in ["import_jobs", "import_job_chunks", "users"] {
        assert_eq!(app.count_rows(table).await, 0, "{table}");
    }
}

db_test! {
    async fn a_bulk_row_with_a_nul_fails_alone_naming_its_field(app) {
        let mut bad = person("b");
        bad["externalId"] = json!("b\u{0000}");
        let response = submit(&app, json!([person("a"), bad, person("c")]), json!({})).await;
        let job = finished(&app, &response).await;
        assert_eq!(job["status"], "COMPLETED_WITH_ERRORS", "{job}");
        assert_eq!(job["summary"], json!({ "created": 2, "failed": 1 }));
        assert_eq!(
            outcomes(&job),
            [
                created("default:a"),
                refused("default:b\\u0000", &["users[1].externalId"]),
                created("default:c"),
            ]
        );
        assert_eq!(app.count_rows("users").await, 2, "only the good rows are written");
    }
}

db_test! {
    async fn a_csv_cell_with_a_nul_fails_its_row_alone_naming_its_column(app) {
        let file = "uid,email,firstName,lastName\n\
                    a,a@example.com,A,B\n\
                    b\0,b@example.com,A,B\n\
                    c,c@example.com,Ann\u{7},B\n\
                    d,d@example.com,A,B\n";
        let response = upload(&app, file, json!({})).await;
        let job = finished(&app, &response).await;
        assert_eq!(job["status"], "COMPLETED_WITH_ERRORS", "{job}");
        assert_eq!(job["summary"], json!({ "created": 2, "failed": 2 }));
        assert_eq!(
            outcomes(&job),
            [
                created("default:a (line 2)"),
                refused("default:b\\u0000 (line 3)", &["uid"]),
                refused("default:c (line 4)", &["firstName"]),
                created("default:d (line 5)"),
            ]
        );
        assert_eq!(app.count_rows("users").await, 2, "only the good rows are written");
    }
}

db_test! {
    async fn a_sync_job_whose_row_key_holds_a_nul_is_refused_whole(app) {
        let sync = json!({ "deactivateMissing": true });
        let mut bad_id = person("b");
        bad_id["externalId"] = json!("b\u{0000}");
        let mut bad_source = person("c");
        bad_source["source"] = json!("hr\u{0000}");
        let response = submit(&app, json!([person("a"), bad_id, bad_source]), sync).await;
        assert_refused(
            &response,
            &[
                ("users[1].externalId", "INVALID_CHARACTERS"),
                ("users[2].source", "INVALID_CHARACTERS"),
            ],
        );
        assert_nothing_stored(&app).await;
    }
}

db_test! {
    async fn a_sync_file_whose_row_key_holds_a_nul_is_refused_whole(app) {
        let file = "uid,source,email,firstName,lastName\n\
                    a,hr,a@example.com,A,B\n\
                    b\0,hr,b@example.com,A,B\n";
        let response = upload(&app, file, json!({ "deactivateMissing": true })).await;
        assert_refused(&response, &[("uid", "INVALID_CHARACTERS")]);
        assert!(response.body["errors"][0]["extensions"]["fieldErrors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("line 3: ")), "{}", response.body);
        assert_nothing_stored(&app).await;
    }
}

db_test! {
    async fn a_bulk_row_whose_custom_info_holds_a_nul_fails_alone(app) {
        let mut in_value = person("b");
        in_value["customInfo"] = json!({ "note": "x\u{0000}y" });
        let mut in_key = person("c");
        in_key["customInfo"] = json!([{ "n\u{0000}": 1 }]);
        let response = submit(&app, json!([person("a"), in_value, in_key]), json!({})).await;
        let job = finished(&app, &response).await;
        assert_eq!(job["summary"], json!({ "created": 1, "failed": 2 }), "{job}");
        assert_eq!(
            outcomes(&job),
            [
                created("default:a"),
                refused("default:b", &["users[1].customInfo"]),
                refused("default:c", &["users[2].customInfo"]),
            ]
        );
        assert_eq!(app.count_rows("users").await, 1, "only the good row is written");
    }
}

db_test! {
    async fn a_job_description_or_idempotency_key_with_a_nul_is_refused(app) {
        for (options, field) in [
            (json!({ "description": "first\nsecond\u{0000}" }), "options.description"),
            (json!({ "idempotencyKey": "k\u{0000}" }), "options.idempotencyKey"),
        ] {
            let response = submit(&app, json!([person("a")]), options.clone()).await;
            assert_refused(&response, &[(field, "INVALID_CHARACTERS")]);
            let response = upload(&app, "uid,email,firstName,lastName\na,a@example.com,A,B\n", options).await;
            assert_refused(&response, &[(field, "INVALID_CHARACTERS")]);
        }
        assert_nothing_stored(&app).await;
    }
}

db_test! {
    async fn a_lookup_key_with_a_nul_is_refused(app) {
        let admin = app.token(Role::Admin);
        let import = "mutation($u: UserImportInput!) { importUser(user: $u) { action } }";
        app.graphql(&admin, import, json!({ "u": person("a") })).await.data();
        let before = app.snapshot().await;
        let set = "mutation($u: UserLookup!, $a: [ApproverInput!]!) {
            setApprovers(user: $u, approvers: $a) { externalId }
        }";
        for (user, source, field) in [
            ("a\u{0000}", "hr", "user.externalId"),
            ("a", "hr\u{0000}", "approvers[0].approver.source"),
        ] {
            let variables = json!({
                "u": { "externalId": user },
                "a": [{ "approver": { "source": source, "externalId": "m" }, "label": "MANAGER" }],
            });
            let response = app.graphql(&admin, set, variables).await;
            assert_refused(&response, &[(field, "INVALID_CHARACTERS")]);
        }
        assert_eq!(app.snapshot().await, before, "nothing was written");
    }
}

db_test! {
    async fn a_bulk_row_whose_approver_lookup_holds_a_nul_fails_alone(app) {
        let mut bad = person("b");
        bad["approvers"] = json!([{ "approver": { "externalId": "a\u{0000}" }, "label": "MANAGER" }]);
        let response = submit(&app, json!([person("a"), bad]), json!({})).await;
        let job = finished(&app, &response).await;
        assert_eq!(job["summary"], json!({ "created": 1, "failed": 1 }), "{job}");
        assert_eq!(
            outcomes(&job),
            [
                created("default:a"),
                refused("default:b", &["users[1].approvers[0].approver.externalId"]),
            ]
        );
        assert_eq!(app.count_rows("users").await, 1, "only the good row is written");
    }
}
