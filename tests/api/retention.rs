//! Job retention: finished jobs older than `ROSTER_JOB_RETENTION` are deleted, with
//! everything they kept, and the users they wrote stay.

use std::time::Duration;

use roster::auth::Role;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, each_backend, spawn_app_with};

const JOB: &str = "query($id: ID!) { importJob(id: $id) { id status } }";

fn user(id: &str, email: &str) -> Value {
    json!({ "externalId": id, "email": email, "firstName": "R", "lastName": id })
}

/// Rows of `table` that belong to the job `id`.
async fn rows_of(app: &TestApp, table: &str, id: &str) -> i64 {
    app.count_rows(&format!("{table} WHERE job_id = {id}"))
        .await
}

async fn job_of(app: &TestApp, id: &str) -> Value {
    app.graphql(&app.token(Role::Viewer), JOB, json!({ "id": id }))
        .await
        .data()["importJob"]
        .clone()
}

async fn old_jobs_are_deleted_with_what_they_kept(backend: Backend) {
    let app = spawn_app_with(backend, |config| {
        config.jobs.job_sweep_every = Duration::from_millis(100);
    })
    .await;
    let first = app
        .submit_job(
            json!([
                user("r1", "r1@example.com"),
                user("r2", "r2@example.com"),
                user("r3", "r3@example.com")
            ]),
            json!({}),
        )
        .await;
    app.finished_job(JOB, &json!(first)).await;
    // A sync job: a failed row, a user updated (an image) and one deactivated.
    let old = app
        .submit_job(
            json!([
                user("r1", "r1@example.com"),
                { "externalId": "r2", "email": "r2@example.com", "firstName": "Renamed", "lastName": "r2" },
                user("r4", "not an email"),
            ]),
            json!({ "deactivateMissing": true }),
        )
        .await;
    let job = app.finished_job(JOB, &json!(old)).await;
    assert_eq!(job["status"], "COMPLETED_WITH_ERRORS", "{job}");
    for table in [
        "import_job_rows",
        "import_job_results",
        "import_job_images",
        "import_job_deactivations",
    ] {
        assert!(rows_of(&app, table, &old).await > 0, "{table}");
    }

    // Finished 31 days ago: past the default retention of 30 days.
    let finished = (chrono::Utc::now() - chrono::Duration::days(31)).to_rfc3339();
    app.execute(&format!(
        "UPDATE import_jobs SET finished_at = '{finished}' WHERE id = {old}"
    ))
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !job_of(&app, &old).await.is_null() {
        assert!(tokio::time::Instant::now() < deadline, "job {old} kept");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    for table in [
        "import_job_rows",
        "import_job_results",
        "import_job_images",
        "import_job_deactivations",
    ] {
        assert_eq!(rows_of(&app, table, &old).await, 0, "{table}");
    }
    // The younger job stays whole, and so does what the old one wrote.
    assert_eq!(job_of(&app, &first).await["status"], "COMPLETED");
    assert_eq!(rows_of(&app, "import_job_rows", &first).await, 3);
    assert_eq!(rows_of(&app, "import_job_results", &first).await, 3);
    assert_eq!(app.stored_user("r2").await.unwrap().first_name, "Renamed");
    assert!(!app.stored_user("r3").await.unwrap().active);
    let response = app
        .graphql(
            &app.token(Role::Admin),
            "mutation($id: ID!) { retryImportJob(id: $id) { id } }",
            json!({ "id": old }),
        )
        .await;
    assert_eq!(
        response.error_code(),
        Some("NOT_FOUND"),
        "{:?}",
        response.body
    );
}

each_backend!(old_jobs_are_deleted_with_what_they_kept => old_jobs_are_deleted_with_what_they_kept);

/// A revert still to run reads its job's before-images: the job is kept until the revert
/// has finished, however old. Jobs still queued or running are never deleted.
async fn a_job_with_a_revert_waiting_is_kept(backend: Backend) {
    // No workers: the jobs stay as the test sets them, and the test sweeps itself.
    let app = spawn_app_with(backend, |config| config.jobs.workers = 0).await;
    let original = app
        .submit_job(json!([user("k1", "k1@example.com")]), json!({}))
        .await;
    let revert = app
        .submit_job(json!([user("k2", "k2@example.com")]), json!({}))
        .await;
    let long_ago = (chrono::Utc::now() - chrono::Duration::days(40)).to_rfc3339();
    app.execute(&format!(
        "UPDATE import_jobs SET status = 'COMPLETED', finished_at = '{long_ago}' \
         WHERE id = {original}"
    ))
    .await;
    app.execute(&format!(
        "UPDATE import_jobs SET kind = 'REVERT', revert_of = {original} WHERE id = {revert}"
    ))
    .await;
    let db = app.connect().await;
    let thirty_days = Duration::from_secs(30 * 24 * 3600);

    let deleted = roster::jobs::worker::sweep(&db, thirty_days).await.unwrap();
    assert_eq!(deleted, 0);
    assert!(!job_of(&app, &original).await.is_null());
    assert_eq!(job_of(&app, &revert).await["status"], "QUEUED");

    app.execute(&format!(
        "UPDATE import_jobs SET status = 'CANCELLED', finished_at = '{long_ago}' \
         WHERE id = {revert}"
    ))
    .await;
    let deleted = roster::jobs::worker::sweep(&db, thirty_days).await.unwrap();
    assert_eq!(deleted, 2);
    assert!(job_of(&app, &original).await.is_null());
    assert!(job_of(&app, &revert).await.is_null());
    let _ = db.close().await;
}

each_backend!(a_job_with_a_revert_waiting_is_kept => a_job_with_a_revert_waiting_is_kept);
