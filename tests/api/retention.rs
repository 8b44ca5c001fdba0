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
        "import_job_chunks",
        "import_job_keys",
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
        "import_job_chunks",
        "import_job_keys",
        "import_job_images",
        "import_job_deactivations",
    ] {
        assert_eq!(rows_of(&app, table, &old).await, 0, "{table}");
    }
    // The younger job stays whole, and so does what the old one wrote.
    assert_eq!(job_of(&app, &first).await["status"], "COMPLETED");
    assert_eq!(
        rows_of(&app, "import_job_chunks", &first).await,
        1,
        "its three rows' chunk"
    );
    assert_eq!(app.stored_results(&first).await, 3);
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

/// A server without workers (the jobs stay as the test sets them, and the test sweeps
/// itself), a job that finished 40 days ago, and a job still queued.
async fn an_old_job_and_a_queued_one(backend: Backend) -> (TestApp, String, String) {
    let app = spawn_app_with(backend, |config| config.jobs.workers = 0).await;
    let old = app
        .submit_job(json!([user("k1", "k1@example.com")]), json!({}))
        .await;
    let queued = app
        .submit_job(json!([user("k2", "k2@example.com")]), json!({}))
        .await;
    let long_ago = (chrono::Utc::now() - chrono::Duration::days(40)).to_rfc3339();
    app.execute(&format!(
        "UPDATE import_jobs SET status = 'COMPLETED', finished_at = '{long_ago}' \
         WHERE id = {old}"
    ))
    .await;
    (app, old, queued)
}

/// A revert still to run reads its job's before-images: the job is kept until the revert
/// has finished, however old. Jobs still queued or running are never deleted.
async fn a_job_with_a_revert_waiting_is_kept(backend: Backend) {
    let (app, original, revert) = an_old_job_and_a_queued_one(backend).await;
    let long_ago = (chrono::Utc::now() - chrono::Duration::days(40)).to_rfc3339();
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

/// Until some statement on the test's PostgreSQL database waits for a row lock.
async fn a_statement_waits_on_a_lock(app: &TestApp) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let waiting = "pg_stat_activity WHERE datname = current_database() \
                   AND wait_event_type = 'Lock'";
    while app.count_rows(waiting).await == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing waited on the job's row"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A job's row locked in a transaction of its own, as a submission or a sweep holds it.
async fn locked(db: &sea_orm::DatabaseConnection, id: &str) -> sea_orm::DatabaseTransaction {
    use sea_orm::{ConnectionTrait, TransactionTrait};

    let txn = db.begin().await.unwrap();
    txn.execute_unprepared(&format!(
        "SELECT id FROM import_jobs WHERE id = {id} FOR UPDATE"
    ))
    .await
    .unwrap();
    txn
}

/// The sweep waits for a revert's submission under way and then keeps the job: the revert
/// will read its before-images.
#[tokio::test]
async fn a_revert_submitted_while_the_sweep_waits_keeps_its_job() {
    use sea_orm::ConnectionTrait;

    let (app, original, revert) = an_old_job_and_a_queued_one(Backend::Postgres).await;
    // The revert's submission: the job's row locked, its revert written but not committed.
    let submitter = app.connect().await;
    let submission = locked(&submitter, &original).await;
    submission
        .execute_unprepared(&format!(
            "UPDATE import_jobs SET kind = 'REVERT', revert_of = {original} WHERE id = {revert}"
        ))
        .await
        .unwrap();

    let db = app.connect().await;
    let thirty_days = Duration::from_secs(30 * 24 * 3600);
    let (deleted, ()) = tokio::join!(roster::jobs::worker::sweep(&db, thirty_days), async {
        a_statement_waits_on_a_lock(&app).await;
        submission.commit().await.unwrap();
    });

    assert_eq!(deleted.unwrap(), 0);
    assert_eq!(job_of(&app, &original).await["status"], "COMPLETED");
    assert_eq!(rows_of(&app, "import_job_chunks", &original).await, 1);
    let _ = db.close().await;
    let _ = submitter.close().await;
}

/// A revert or a retry whose job the sweep deletes while the submission waits for it is
/// `NOT_FOUND`, and nothing is queued.
#[tokio::test]
async fn a_job_deleted_while_its_revert_or_retry_waits_is_not_found() {
    use sea_orm::ConnectionTrait;

    let app = crate::helpers::spawn_app(Backend::Postgres).await;
    let admin = app.token(Role::Admin);
    for (mutation, column) in [
        ("revertImportJob", "revert_of"),
        ("retryImportJob", "retry_of"),
    ] {
        // A user written (for the revert) and a row failed (for the retry).
        let id = app
            .submit_job(
                json!([
                    user(&format!("{column}1"), &format!("{column}@example.com")),
                    user(&format!("{column}2"), "not an email")
                ]),
                json!({}),
            )
            .await;
        let job = app.finished_job(JOB, &json!(id)).await;
        assert_eq!(job["status"], "COMPLETED_WITH_ERRORS", "{job}");
        let sweeper = app.connect().await;
        let sweep = locked(&sweeper, &id).await;

        let query = format!("mutation($id: ID!) {{ {mutation}(id: $id) {{ id }} }}");
        let (response, ()) =
            tokio::join!(app.graphql(&admin, &query, json!({ "id": id })), async {
                a_statement_waits_on_a_lock(&app).await;
                sweep
                    .execute_unprepared(&format!("DELETE FROM import_jobs WHERE id = {id}"))
                    .await
                    .unwrap();
                sweep.commit().await.unwrap();
            });

        assert_eq!(
            response.error_code(),
            Some("NOT_FOUND"),
            "{mutation}: {:?}",
            response.body
        );
        assert_eq!(
            app.count_rows(&format!("import_jobs WHERE {column} = {id}"))
                .await,
            0,
            "{mutation}"
        );
        let _ = sweeper.close().await;
    }
}
