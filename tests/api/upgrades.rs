//! A server upgraded over jobs stored the earlier way, a row at a time, reads them as
//! before: their rows, failed rows, retries and reverts work after the migration that
//! moves them into chunk records.
//!
//! Each test runs jobs, migrates their database back to the per-row shape (the last
//! migration's `down`, checked to have left the rows there), and starts a second server on
//! it, whose start applies the migration again.

use migration::{Migrator, MigratorTrait};
use roster::auth::Role;
use serde_json::{Value, json};

use crate::helpers::{TestApp, db_test};

const JOB: &str = "query($id: ID!) { importJob(id: $id) {
    kind status total processed summary { created updated unchanged failed deleted }
} }";

const ROWS: &str = "query($id: ID!, $after: String, $onlyFailed: Boolean) { importJob(id: $id) {
    rows(first: 400, after: $after, onlyFailed: $onlyFailed) {
        totalCount
        pageInfo { hasNextPage endCursor }
        edges { cursor node { index lookupKey action success user { externalId } errors { field code } } }
    }
} }";

/// 1,200 people (three chunks of the test server's 500), each managed by the next one,
/// 12 with an email that fails (and who manage no one).
fn people() -> Value {
    (0..1_200)
        .map(|i| {
            let email = if i % 100 == 7 {
                format!("not an email {i}")
            } else {
                format!("p{i}@example.com")
            };
            let mut person = json!({
                "externalId": format!("p{i}"), "email": email,
                "firstName": "P", "lastName": format!("{i}"), "tags": ["staff"],
            });
            if i < 1_199 && (i + 1) % 100 != 7 {
                person["managerExternalId"] = json!(format!("p{}", i + 1));
            }
            person
        })
        .collect()
}

async fn finished(app: &TestApp, id: &str) -> Value {
    app.finished_job(JOB, &json!(id)).await
}

/// Every row of a job with its cursor, following the pages.
async fn rows(app: &TestApp, id: &str, only_failed: bool) -> Vec<Value> {
    app.job_rows(ROWS, id, only_failed).await
}

async fn failed_rows_file(app: &TestApp, id: &str) -> String {
    let response = app
        .get_with(
            &format!("/jobs/{id}/failed-rows.csv"),
            &app.token(Role::Viewer),
        )
        .await;
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

async fn import(app: &TestApp) -> String {
    let id = app.submit_job(people(), json!({})).await;
    let job = finished(app, &id).await;
    assert_eq!(job["status"], "COMPLETED_WITH_ERRORS", "{job}");
    assert_eq!(job["summary"]["failed"], 12, "{job}");
    id
}

async fn revert(app: &TestApp, id: &str) -> (String, Value) {
    let response = app
        .graphql(
            &app.token(Role::Admin),
            "mutation($id: ID!) { revertImportJob(id: $id) { id } }",
            json!({ "id": id }),
        )
        .await;
    let revert = response.data()["revertImportJob"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let job = finished(app, &revert).await;
    (revert, job)
}

/// The migration that stores jobs per chunk.
const PER_CHUNK: &str = "m20261207_000001_job_chunks";

/// Moves the database's jobs back to rows and results stored a row each: the migrations
/// from [`PER_CHUNK`] on are undone.
async fn store_per_row(app: &TestApp) {
    let migrations = Migrator::migrations();
    let at = migrations
        .iter()
        .position(|m| m.name() == PER_CHUNK)
        .expect("the migration to chunk records");
    let db = app.connect().await;
    Migrator::down(&db, Some((migrations.len() - at) as u32))
        .await
        .unwrap();
    let _ = db.close().await;
    assert!(app.count_rows("import_job_results").await > 0);
}

/// Starts a server on the database, which applies the migration to chunk records (and
/// those after it).
async fn upgrade(app: &TestApp) {
    app.spawn_peer(|_| {}).await;
    assert!(app.count_rows("import_job_chunks").await > 0);
}

db_test! {
    async fn a_job_stored_per_row_shows_the_same_rows_after_the_upgrade(app) {
        let id = import(&app).await;
        let (all, failed) = (rows(&app, &id, false).await, rows(&app, &id, true).await);
        assert_eq!((all.len(), failed.len()), (1_200, 12));

        store_per_row(&app).await;
        assert_eq!(app.count_rows("import_job_rows").await, 1_200);
        upgrade(&app).await;

        assert_eq!(rows(&app, &id, false).await, all, "every row, with the same cursors");
        assert_eq!(rows(&app, &id, true).await, failed);
    }
}

db_test! {
    async fn a_job_stored_per_row_gives_the_same_failed_rows_file_after_the_upgrade(app) {
        let id = import(&app).await;
        let file = failed_rows_file(&app, &id).await;
        assert_eq!(file.lines().count(), 13, "{file}");

        store_per_row(&app).await;
        upgrade(&app).await;

        assert_eq!(failed_rows_file(&app, &id).await, file);
    }
}

db_test! {
    async fn a_job_stored_per_row_is_retried_after_the_upgrade(app) {
        let id = import(&app).await;
        store_per_row(&app).await;
        upgrade(&app).await;

        let response = app
            .graphql(
                &app.token(Role::Admin),
                "mutation($id: ID!) { retryImportJob(id: $id) { id total } }",
                json!({ "id": id }),
            )
            .await;
        let retry = &response.data()["retryImportJob"];
        assert_eq!(retry["total"], 12, "its failed rows: {retry}");
        let retry = retry["id"].as_str().unwrap();
        let job = finished(&app, retry).await;
        assert_eq!(job["summary"]["failed"], 12, "the same rows, failing the same way: {job}");
        let keys = |rows: Vec<Value>| -> Vec<Value> {
            rows.into_iter().map(|row| row["node"]["lookupKey"].clone()).collect()
        };
        assert_eq!(keys(rows(&app, retry, false).await), keys(rows(&app, &id, true).await));
    }
}

db_test! {
    async fn a_job_stored_per_row_is_reverted_after_the_upgrade(app) {
        let id = import(&app).await;
        store_per_row(&app).await;
        upgrade(&app).await;

        let (_, job) = revert(&app, &id).await;
        assert_eq!(job["status"], "COMPLETED", "{job}");
        assert_eq!(job["summary"]["deleted"], 1_188, "{job}");
        assert_eq!(app.count_rows("users").await, 0);
        assert_eq!(app.count_rows("approver_links").await, 0);
    }
}

db_test! {
    async fn a_revert_stored_per_row_is_reverted_after_the_upgrade(app) {
        let id = import(&app).await;
        let (users, links) = (
            app.count_rows("users").await,
            app.count_rows("approver_links").await,
        );
        assert_eq!((users, links), (1_188, 1_188 - 13), "all but the last and those of failed rows");
        let (first_revert, _) = revert(&app, &id).await;
        assert_eq!(app.count_rows("users").await, 0);
        store_per_row(&app).await;
        upgrade(&app).await;

        let (_, job) = revert(&app, &first_revert).await;
        assert_eq!(job["status"], "COMPLETED", "{job}");
        assert_eq!(job["summary"]["created"], 1_188, "{job}");
        assert_eq!(app.count_rows("users").await, users);
        assert_eq!(app.count_rows("approver_links").await, links);
    }
}
