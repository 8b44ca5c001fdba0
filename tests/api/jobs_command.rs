//! `roster jobs` and `roster job ID`: the real binary reads the real server's jobs.

use std::process::Output;

use roster::auth::Role;
use serde_json::{Value, json};

use crate::helpers::{
    Backend, TestApp, assert_every_flag_has_an_environment_variable, roster_command, spawn_app,
};

/// Runs `roster` with these arguments against `app` with a viewer token.
async fn roster(app: &TestApp, args: &[&str]) -> Output {
    let mut command = roster_command();
    command
        .args(args)
        .args(["--server", &app.address])
        .env("ROSTER_TOKEN", app.token(Role::Viewer));
    tokio::task::spawn_blocking(move || command.output().expect("the roster binary runs"))
        .await
        .unwrap()
}

fn json_of(output: &Output) -> Value {
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("stdout is JSON")
}

/// Two finished jobs, older first: a clean one and one with a failed row.
async fn two_jobs(app: &TestApp) -> (String, String) {
    let user = |n: u32| json!({ "externalId": format!("e{n}"), "email": format!("u{n}@x.io"), "firstName": "A", "lastName": "B" });
    let clean = app.submit_job(json!([user(1)]), json!({})).await;
    let query = "query($id: ID!) { importJob(id: $id) { status } }";
    app.finished_job(query, &json!(clean)).await;
    let mut bad = user(2);
    bad["email"] = json!("not-an-email");
    let failing = app.submit_job(json!([bad]), json!({})).await;
    app.finished_job(query, &json!(failing)).await;
    (clean, failing)
}

#[tokio::test]
async fn jobs_lists_the_newest_first_as_json() {
    let app = spawn_app(Backend::Sqlite).await;
    let (clean, failing) = two_jobs(&app).await;
    let jobs = json_of(&roster(&app, &["jobs", "--json"]).await);
    let listed: Vec<_> = jobs
        .as_array()
        .unwrap()
        .iter()
        .map(|job| (job["id"].as_str().unwrap(), job["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        listed,
        [
            (failing.as_str(), "COMPLETED_WITH_ERRORS"),
            (clean.as_str(), "COMPLETED")
        ]
    );
}

#[tokio::test]
async fn jobs_prints_a_line_per_job() {
    let app = spawn_app(Backend::Sqlite).await;
    let (clean, failing) = two_jobs(&app).await;
    let output = roster(&app, &["jobs", "--first", "1"]).await;
    assert_eq!(output.status.code(), Some(0));
    let out = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<_> = out.lines().collect();
    assert_eq!(lines.len(), 2, "a header and the one newest job:\n{out}");
    assert!(lines[1].starts_with(&format!("{failing} ")), "{out}");
    assert!(lines[1].contains("COMPLETED_WITH_ERRORS"), "{out}");
    assert!(!out.contains(&format!("\n{clean} ")), "{out}");
}

#[tokio::test]
async fn job_shows_one_job_as_json() {
    let app = spawn_app(Backend::Sqlite).await;
    let (_, failing) = two_jobs(&app).await;
    let job = json_of(&roster(&app, &["job", &failing, "--json"]).await);
    assert_eq!(job["id"], failing.as_str());
    assert_eq!(job["status"], "COMPLETED_WITH_ERRORS");
    assert_eq!(job["summary"]["failed"], 1);
}

#[tokio::test]
async fn job_prints_the_summary_and_where_its_failed_rows_are() {
    let app = spawn_app(Backend::Sqlite).await;
    let (_, failing) = two_jobs(&app).await;
    let output = roster(&app, &["job", &failing]).await;
    assert_eq!(output.status.code(), Some(0));
    let out = String::from_utf8(output.stdout).unwrap();
    assert!(
        out.starts_with(&format!("job {failing}: COMPLETED_WITH_ERRORS\n")),
        "{out}"
    );
    assert!(out.contains("  failed      1\n"), "{out}");
    let url = format!("{}/jobs/{failing}/failed-rows.csv", app.address);
    assert!(out.contains(&url), "{out}");
}

#[tokio::test]
async fn job_with_an_unknown_id_says_there_is_none() {
    let app = spawn_app(Backend::Sqlite).await;
    let output = roster(&app, &["job", "987654"]).await;
    assert_eq!(output.status.code(), Some(3));
    let err = String::from_utf8(output.stderr).unwrap();
    assert!(err.contains("there is no job 987654"), "{err}");
    assert!(output.stdout.is_empty());
}

#[test]
fn every_jobs_and_job_flag_has_an_environment_variable() {
    for command in ["jobs", "job"] {
        assert_every_flag_has_an_environment_variable(
            &[command],
            &["ROSTER_SERVER", "ROSTER_TOKEN", "ROSTER_JSON"],
        );
    }
}
