//! `retryImportJob`: a new job over the rows of a finished job that did not succeed.

use roster::auth::Role;
use serde_json::{Value, json};

use crate::helpers::{self, Backend, GraphQLResponse, TestApp, db_test, spawn_app_with};

const RETRY: &str = "mutation($id: ID!) {
    retryImportJob(id: $id) { id status total description retryOf { id } }
}";

const JOB: &str = "query($id: ID!) { importJob(id: $id) {
    status total repeatable retryOf { id }
    summary { created updated unchanged failed }
    rows { edges { node { lookupKey action success errors { field code } } } }
} }";

fn person(id: &str, manager: Option<&str>) -> Value {
    let mut user = helpers::person(id);
    if let Some(manager) = manager {
        user["managerExternalId"] = json!(manager);
    }
    user
}

async fn submit(app: &TestApp, users: Value, options: Value) -> String {
    app.submit_job(users, options).await
}

async fn retry(app: &TestApp, token: &str, id: &str) -> GraphQLResponse {
    app.graphql(token, RETRY, json!({ "id": id })).await
}

async fn finished(app: &TestApp, id: &str) -> Value {
    app.finished_job(JOB, &json!(id)).await
}

fn conflict_code(response: &GraphQLResponse) -> (Option<&str>, String) {
    (
        response.error_code(),
        response
            .field_errors()
            .first()
            .map(|(_, code)| code.clone())
            .unwrap_or_default(),
    )
}

db_test! {
    async fn a_retry_runs_the_rows_that_failed_once_they_can_succeed(app) {
        let admin = app.token(Role::Admin);
        let mut users: Vec<Value> = (0..6).map(|i| person(&format!("p{i}"), None)).collect();
        for i in [1, 3, 4] {
            users[i] = person(&format!("p{i}"), Some("boss"));
        }
        users[5]["email"] = json!("not-an-email");
        let id = submit(&app, json!(users), json!({ "description": "nightly" })).await;
        let job = finished(&app, &id).await;
        assert_eq!(job["status"], "COMPLETED_WITH_ERRORS");
        assert_eq!(job["summary"], json!({ "created": 5, "updated": 0, "unchanged": 0, "failed": 4 }));
        assert_eq!(job["repeatable"], true);

        // The missing manager arrives; the retry runs the four rows that failed, in order.
        let import = "mutation($u: UserImportInput!) { importUser(user: $u) { action } }";
        app.graphql(&admin, import, json!({ "u": person("boss", None) })).await.data();
        let response = retry(&app, &admin, &id).await;
        let again = &response.data()["retryImportJob"];
        assert_eq!(again["status"], "QUEUED");
        assert_eq!(again["total"], 4);
        assert_eq!(again["description"], "nightly");
        assert_eq!(again["retryOf"]["id"], id.as_str());
        let again_id = again["id"].as_str().unwrap().to_owned();
        let job = finished(&app, &again_id).await;
        assert_eq!(job["status"], "COMPLETED_WITH_ERRORS");
        assert_eq!(job["summary"], json!({ "created": 0, "updated": 3, "unchanged": 0, "failed": 1 }));
        let keys: Vec<&str> = job["rows"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["node"]["lookupKey"].as_str().unwrap())
            .collect();
        assert_eq!(keys, ["default:p1", "default:p3", "default:p4", "default:p5"]);
        let query = r#"query { user(lookup: { externalId: "p3" }) { approvers { approver { externalId } } } }"#;
        let response = app.graphql(&admin, query, json!({})).await;
        assert_eq!(response.data()["user"]["approvers"][0]["approver"]["externalId"], "boss");

        // Only the row that is still wrong is left; then a job with nothing to run again.
        let response = retry(&app, &admin, &again_id).await;
        assert_eq!(response.data()["retryImportJob"]["total"], 1);
        let done = submit(&app, json!([person("q1", None)]), json!({})).await;
        let job = finished(&app, &done).await;
        assert_eq!(job["repeatable"], false);
        let response = retry(&app, &admin, &done).await;
        assert_eq!(conflict_code(&response), (Some("CONFLICT"), "NOTHING_TO_RETRY".to_owned()));

        let viewer = retry(&app, &app.token(Role::Viewer), &id).await;
        assert_eq!(viewer.error_code(), Some("FORBIDDEN"));
        let stranger = retry(&app, &app.token_for(Role::Admin, Some("other")), &id).await;
        assert_eq!(stranger.error_code(), Some("NOT_FOUND"));
    }
}

db_test! {
    async fn an_atomic_job_that_failed_is_retried_whole_and_a_csv_row_keeps_its_line(app) {
        let admin = app.token(Role::Admin);
        let mut users: Vec<Value> = (0..3).map(|i| person(&format!("a{i}"), None)).collect();
        users[2] = person("a2", Some("later"));
        let id = submit(&app, json!(users), json!({ "atomic": true })).await;
        let job = finished(&app, &id).await;
        assert_eq!(job["status"], "FAILED");
        assert_eq!(job["repeatable"], true);
        app.graphql(
            &admin,
            "mutation($u: UserImportInput!) { importUser(user: $u) { action } }",
            json!({ "u": person("later", None) }),
        )
        .await
        .data();
        let response = retry(&app, &admin, &id).await;
        let again = response.data()["retryImportJob"]["id"].as_str().unwrap().to_owned();
        let job = finished(&app, &again).await;
        assert_eq!(job["status"], "COMPLETED", "{job}");
        assert_eq!(job["total"], 3);
        assert_eq!(job["summary"]["created"], 3);

        let file = "uid;email;firstname;secondname;manager_uid\n\
                    c1;c1@example.com;A;B;\n\
                    c2;c2@example.com;A;B;ghost\n"
            .as_bytes()
            .to_vec();
        let upload = "mutation($file: Upload!) { importUsersCsv(file: $file) { id } }";
        let response = app.upload(&admin, upload, json!({}), file).await;
        let id = response.data()["importUsersCsv"]["id"].as_str().unwrap().to_owned();
        assert_eq!(finished(&app, &id).await["summary"]["failed"], 1);
        let response = retry(&app, &admin, &id).await;
        let again = response.data()["retryImportJob"]["id"].as_str().unwrap().to_owned();
        let job = finished(&app, &again).await;
        let row = &job["rows"]["edges"][0]["node"];
        assert_eq!(row["lookupKey"], "default:c2 (line 3)");
        assert_eq!(row["errors"][0]["field"], "manager_uid", "{row}");
    }
}

#[tokio::test]
async fn a_job_not_finished_is_not_retried() {
    let app = spawn_app_with(Backend::Sqlite, |config| config.jobs.workers = 0).await;
    let id = submit(&app, json!([person("w1", None)]), json!({})).await;
    let response = retry(&app, &app.token(Role::Admin), &id).await;
    assert_eq!(
        conflict_code(&response),
        (Some("CONFLICT"), "NOT_FINISHED".to_owned())
    );
}
