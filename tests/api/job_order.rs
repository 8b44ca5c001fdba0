//! A job's result is that of running its rows in order, whichever chunk holds them.

use serde_json::{Value, json};

use crate::helpers::{TestApp, db_test};

const ROWS: &str = "query($id: ID!, $after: String, $onlyFailed: Boolean) { importJob(id: $id) {
    rows(first: 500, after: $after, onlyFailed: $onlyFailed) {
        totalCount
        pageInfo { hasNextPage endCursor }
        edges { node { index action errors { field code } } }
    }
} }";

const JOB: &str = "query($id: ID!) { importJob(id: $id) { status } }";

/// 1,000 people, two chunks of the test server's 500.
fn people() -> Vec<Value> {
    (0..1_000)
        .map(|i| {
            json!({
                "externalId": format!("o{i}"), "email": format!("o{i}@example.com"),
                "firstName": "O", "lastName": format!("{i}"),
            })
        })
        .collect()
}

async fn rows(app: &TestApp, users: Vec<Value>) -> Vec<Value> {
    let id = app.submit_job(json!(users), json!({})).await;
    app.finished_job(JOB, &json!(id)).await;
    let edges = app.job_rows(ROWS, &id, false).await;
    edges.into_iter().map(|edge| edge["node"].clone()).collect()
}

db_test! {
    async fn a_user_named_in_two_chunks_is_created_then_updated(app) {
        let mut users = people();
        users[700] = json!({
            "externalId": "o100", "email": "o100@example.com", "firstName": "Renamed",
            "lastName": "100",
        });
        let rows = rows(&app, users).await;
        assert_eq!((&rows[100]["action"], &rows[700]["action"]), (&json!("CREATED"), &json!("UPDATED")));
        assert_eq!(app.stored_user("o100").await.unwrap().first_name, "Renamed");
        assert!(app.stored_user("o700").await.is_none());
    }
}

db_test! {
    async fn an_email_taken_in_an_earlier_chunk_fails_the_later_row(app) {
        let mut users = people();
        users[800]["email"] = json!("o200@example.com");
        let rows = rows(&app, users).await;
        assert_eq!(rows[200]["action"], "CREATED");
        assert_eq!(rows[800]["action"], "FAILED");
        // Its login is its email, when it sends none.
        assert_eq!(rows[800]["errors"], json!([
            { "field": "users[800].email", "code": "TAKEN" },
            { "field": "users[800].login", "code": "TAKEN" },
        ]));
        assert!(app.stored_user("o800").await.is_none());
    }
}
