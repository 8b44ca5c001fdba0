//! Runs of a job that fail for a server reason: the job waits, longer after each failure in
//! a row, and fails at the third; a takeover or a resumption is no failure.
//!
//! The database fails for real: a trigger refuses the updates of a job that record a chunk,
//! as a full disk or a broken connection would refuse them.

use std::time::Duration;

use entity::import_jobs;
use sea_orm::EntityTrait;
use serde_json::{Value, json};

use crate::helpers::{self, Backend, TestApp, each_backend, spawn_app_with};

const JOB: &str = "query($id: ID!) { importJob(id: $id) {
    status processed errorMessage summary { created failed }
} }";

fn person(i: usize) -> Value {
    helpers::person(&format!("f{i}"))
}

fn people(count: usize) -> Value {
    json!((0..count).map(person).collect::<Vec<_>>())
}

/// A server whose jobs run in chunks of `chunk` rows and wait `retry_delay` after a first
/// failed run.
async fn app_with(backend: Backend, chunk: usize, retry_delay: Duration) -> TestApp {
    spawn_app_with(backend, |config| {
        config.jobs.job_chunk = chunk;
        config.jobs.job_retry_delay = retry_delay;
    })
    .await
}

/// Makes the database refuse, with an error, every update of a job that records a chunk
/// (its `processed` grows) while `when` holds: SQL over the row's `OLD` and `NEW` values.
async fn refuse_chunks_when(app: &TestApp, when: &str) {
    let when = format!("NEW.processed > OLD.processed AND {when}");
    if app.database.url.starts_with("postgres") {
        app.execute(&format!(
            "CREATE FUNCTION refuse_chunk() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             IF {when} THEN RAISE EXCEPTION 'the database refuses the chunk'; END IF; \
             RETURN NEW; END $$"
        ))
        .await;
        app.execute(
            "CREATE TRIGGER refuse_chunk BEFORE UPDATE ON import_jobs \
             FOR EACH ROW EXECUTE FUNCTION refuse_chunk()",
        )
        .await;
    } else {
        app.execute(&format!(
            "CREATE TRIGGER refuse_chunk BEFORE UPDATE ON import_jobs FOR EACH ROW \
             WHEN {when} BEGIN SELECT RAISE(ABORT, 'the database refuses the chunk'); END"
        ))
        .await;
    }
}

/// The job as stored, columns the API does not show included.
async fn stored(app: &TestApp, id: &str) -> import_jobs::Model {
    let db = app.connect().await;
    let job = import_jobs::Entity::find_by_id(id.parse::<i64>().unwrap())
        .one(&db)
        .await
        .unwrap()
        .expect("the job is stored");
    let _ = db.close().await;
    job
}

/// The stored job once `reached` holds for it; fails the test after two minutes, or when
/// the job has finished first.
async fn stored_once(
    app: &TestApp,
    id: &str,
    what: &str,
    reached: impl Fn(&import_jobs::Model) -> bool,
) -> import_jobs::Model {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let job = stored(app, id).await;
        if reached(&job) {
            return job;
        }
        assert!(
            job.status == "RUNNING" || job.status == "QUEUED",
            "the job finished before {what}: {job:?}"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "never {what}: {job:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn finished(app: &TestApp, id: &str) -> Value {
    app.finished_job(JOB, &json!(id)).await
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A job claimed four times before, as when the processes running it died one after
/// another (each claim after a takeover adds one to `attempts`, and nothing else), then
/// failing once for real: the claims were no failures, so the failure is its first and the
/// job is tried again, and ends with every row written once.
async fn takeovers_are_no_failures(backend: Backend) {
    // No workers yet: the job waits, queued, in the state four takeovers leave it in.
    let app = spawn_app_with(backend, |config| config.jobs.workers = 0).await;
    // The fifth claim's first chunk fails; the sixth claim runs the job to its end.
    refuse_chunks_when(&app, "NEW.attempts = 5").await;
    let id = app.submit_job(people(2_000), json!({})).await;
    app.execute(&format!(
        "UPDATE import_jobs SET attempts = 4, lease_owner = 'a worker gone', lease_until = 0 \
         WHERE id = {id}"
    ))
    .await;
    app.spawn_peer(|config| {
        config.jobs.job_chunk = 100;
        config.jobs.job_retry_delay = Duration::from_millis(50);
    })
    .await;

    let job = finished(&app, &id).await;
    assert_eq!(job["status"], "COMPLETED", "{job}");
    assert_eq!(job["processed"], 2_000);
    assert_eq!(job["summary"]["created"], 2_000, "no row written twice");
    assert_eq!(app.count_rows("users").await, 2_000);
    assert_eq!(app.stored_results(&id).await, 2_000);
    assert_eq!(
        stored(&app, &id).await.attempts,
        6,
        "four earlier claims, the one that failed, and one retry after it"
    );
}

each_backend!(a_job_taken_over_again_and_again_still_has_its_retries => takeovers_are_no_failures);

/// A job whose every run fails is tried three times, and then fails with why.
async fn three_failures_fail_the_job(backend: Backend) {
    let app = app_with(backend, 100, Duration::from_millis(50)).await;
    refuse_chunks_when(&app, "1 = 1").await;
    let id = app.submit_job(people(10), json!({})).await;

    let job = finished(&app, &id).await;
    assert_eq!(job["status"], "FAILED", "{job}");
    let stored = stored(&app, &id).await;
    assert_eq!(
        (stored.attempts, stored.failures),
        (3, 3),
        "tried three times"
    );
    assert_eq!((stored.lease_owner, stored.lease_until), (None, None));
    assert_eq!(
        job["errorMessage"],
        "the job stopped after 3 failed runs in a row because of a server error; \
         what was committed before stays"
    );
    assert_eq!(job["processed"], 0);
    assert_eq!(app.count_rows("users").await, 0);
}

each_backend!(three_failed_runs_in_a_row_fail_the_job => three_failures_fail_the_job);

/// Runs that each commit a chunk before they fail are never failures in a row: a job that
/// fails four times, with progress in between, completes.
async fn progress_clears_failures(backend: Backend) {
    let app = app_with(backend, 100, Duration::from_millis(50)).await;
    // Each run writes one chunk more than the runs before it, then fails.
    refuse_chunks_when(&app, "NEW.processed > NEW.attempts * 100").await;
    let id = app.submit_job(people(500), json!({})).await;

    let job = finished(&app, &id).await;
    assert_eq!(job["status"], "COMPLETED", "{job}");
    assert_eq!(job["summary"]["created"], 500);
    let job = stored(&app, &id).await;
    assert_eq!(
        (job.attempts, job.failures),
        (5, 0),
        "five runs, four of them failed after a chunk"
    );
}

each_backend!(failures_with_progress_between_them_are_not_in_a_row => progress_clears_failures);

/// After a failed run the job waits out its retry delay, twice as long after a second
/// failure in a row; no worker claims it meanwhile, though one looks for jobs.
async fn failed_runs_back_off(backend: Backend) {
    const HOUR: i64 = 3_600_000;
    let app = app_with(backend, 100, Duration::from_secs(3600)).await;
    refuse_chunks_when(&app, "NEW.description = 'refused'").await;
    let before = now_ms();
    let id = app
        .submit_job(people(10), json!({ "description": "refused" }))
        .await;
    let job = stored_once(&app, &id, "failed", |job| job.failures == 1).await;
    assert_eq!(job.status, "RUNNING");
    assert!(
        job.lease_until.unwrap() >= before + HOUR,
        "not tried again before an hour: {job:?}"
    );

    // Workers look for a job to run this one, and take the oldest they may: not the first.
    let other = app.submit_job(json!([person(99)]), json!({})).await;
    assert_eq!(finished(&app, &other).await["status"], "COMPLETED");
    let job = stored(&app, &id).await;
    assert_eq!((job.attempts, job.failures), (1, 1), "not claimed again");

    // The hour has passed; the second failure waits two.
    let before = now_ms();
    app.execute(&format!(
        "UPDATE import_jobs SET lease_until = 0 WHERE id = {id}"
    ))
    .await;
    let job = stored_once(&app, &id, "failed again", |job| job.failures == 2).await;
    assert_eq!(job.attempts, 2);
    assert!(
        job.lease_until.unwrap() >= before + 2 * HOUR,
        "not tried again before two hours: {job:?}"
    );
}

each_backend!(a_failed_run_is_tried_again_after_a_delay_that_doubles => failed_runs_back_off);

/// Makes the database refuse every release of a chunk's claim, as it refuses the chunk.
async fn refuse_releases(app: &TestApp) {
    if app.database.url.starts_with("postgres") {
        app.execute(
            "CREATE FUNCTION refuse_release() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             RAISE EXCEPTION 'the database refuses the release'; END $$",
        )
        .await;
        app.execute(
            "CREATE TRIGGER refuse_release BEFORE UPDATE ON import_job_claims FOR EACH ROW \
             WHEN (NEW.owner IS NULL) EXECUTE FUNCTION refuse_release()",
        )
        .await;
    } else {
        app.execute(
            "CREATE TRIGGER refuse_release BEFORE UPDATE ON import_job_claims FOR EACH ROW \
             WHEN NEW.owner IS NULL BEGIN SELECT RAISE(ABORT, 'the database refuses the release'); END",
        )
        .await;
    }
}

/// A run that fails and cannot let go of its chunks leaves them claimed by its worker; the
/// worker's next run takes them again (nobody else may before the claims run out, and the
/// next run renews them), and the job ends.
async fn claims_left_by_a_failed_run(backend: Backend) {
    let app = spawn_app_with(backend, |config| {
        config.jobs.workers = 1;
        config.jobs.job_retry_delay = Duration::from_millis(100);
    })
    .await;
    // The first run's first chunk fails.
    refuse_chunks_when(&app, "OLD.attempts = 1").await;
    refuse_releases(&app).await;

    let id = app.submit_job(people(1_200), json!({})).await;

    let job = finished(&app, &id).await;
    assert_eq!(job["status"], "COMPLETED", "{job}");
    assert_eq!(job["summary"]["created"], 1_200);
    assert_eq!(stored(&app, &id).await.attempts, 2, "it failed once");
}

each_backend!(a_worker_takes_again_the_chunks_its_failed_run_could_not_let_go => claims_left_by_a_failed_run);
