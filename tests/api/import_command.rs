//! `roster import FILE.csv`: the real binary uploads a file to the real server, follows the
//! job and ends with the exit code that says how the job ended.

use std::path::{Path, PathBuf};
use std::process::Output;

use roster::auth::{Authenticator, Role};
use serde_json::{Value, json};

use crate::helpers::{
    Backend, TestApp, assert_every_flag_has_an_environment_variable, roster_command, spawn_app,
};

pub(crate) const HEADER: &str = "externalId,email,firstName,lastName\n";

/// A directory of the test's own holding `users.csv` with these rows under [`HEADER`].
pub(crate) fn csv_file(rows: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.csv");
    std::fs::write(&path, format!("{HEADER}{rows}")).unwrap();
    (dir, path)
}

pub(crate) const GOOD_ROWS: &str = "e1,ann@x.io,Ann,Lee\ne2,bob@x.io,Bob,Kim\n";
pub(crate) const ONE_BAD_ROW: &str = "e1,ann@x.io,Ann,Lee\ne2,not-an-email,Bob,Kim\n";

/// Runs `roster` with these arguments and environment (off the test's runtime, which
/// serves the server the command talks to).
pub(crate) async fn run(args: Vec<String>, env: Vec<(&'static str, String)>) -> Output {
    tokio::task::spawn_blocking(move || {
        roster_command()
            .args(args)
            .envs(env)
            .output()
            .expect("the roster binary runs")
    })
    .await
    .unwrap()
}

/// `roster import FILE --server …` with an admin token of `app` and `extra` flags.
pub(crate) async fn import(app: &TestApp, file: &Path, extra: &[&str]) -> Output {
    import_through(app, &app.address, file, extra).await
}

/// `roster import` against `server`, a way to `app`, with an admin token of `app`.
pub(crate) async fn import_through(
    app: &TestApp,
    server: &str,
    file: &Path,
    extra: &[&str],
) -> Output {
    import_as(server, app.token(Role::Admin), file, extra).await
}

/// `roster import FILE --server SERVER` with `token` in `ROSTER_TOKEN` and `extra` flags (a
/// `--token` among them wins over it).
pub(crate) async fn import_as(server: &str, token: String, file: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "import".to_owned(),
        file.display().to_string(),
        "--server".to_owned(),
        server.to_owned(),
    ];
    args.extend(extra.iter().map(|arg| arg.to_string()));
    run(args, vec![("ROSTER_TOKEN", token)]).await
}

pub(crate) fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub(crate) fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The exit code, with both outputs in the message when it is not the one expected.
pub(crate) fn assert_exit(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        stdout(output),
        stderr(output)
    );
}

fn json_of(output: &Output) -> Value {
    serde_json::from_str(&stdout(output))
        .unwrap_or_else(|_| panic!("stdout is not JSON:\n{}", stdout(output)))
}

#[tokio::test]
async fn a_file_whose_rows_all_succeed_exits_0_with_the_summary() {
    let app = spawn_app(Backend::Sqlite).await;
    let (_dir, file) = csv_file(GOOD_ROWS);
    let output = import(&app, &file, &[]).await;
    assert_exit(&output, 0);
    let out = stdout(&output);
    assert!(out.contains(": COMPLETED\n"), "{out}");
    assert!(out.contains("  created     2\n"), "{out}");
    assert!(out.contains("  failed      0\n"), "{out}");
    assert!(app.stored_user("e1").await.is_some());
    assert!(app.stored_user("e2").await.is_some());
}

#[tokio::test]
async fn failed_rows_exit_2_and_are_written_beside_the_file() {
    let app = spawn_app(Backend::Sqlite).await;
    let (dir, file) = csv_file(ONE_BAD_ROW);
    let output = import(&app, &file, &[]).await;
    assert_exit(&output, 2);
    let failed = std::fs::read_to_string(dir.path().join("users.failed.csv")).unwrap();
    let mut lines = failed.lines();
    assert_eq!(
        lines.next(),
        Some("externalId,email,firstName,lastName,errors")
    );
    let row = lines.next().unwrap();
    assert!(row.starts_with("e2,not-an-email,Bob,Kim,"), "{failed}");
    assert!(row.contains("email"), "{failed}");
    assert_eq!(lines.next(), None, "only the failed row: {failed}");
    assert!(
        stderr(&output).contains("completed with errors: 1 of 2 rows failed"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test]
async fn failed_rows_go_where_the_flag_says() {
    let app = spawn_app(Backend::Sqlite).await;
    let (dir, file) = csv_file(ONE_BAD_ROW);
    let elsewhere = dir.path().join("rejects.csv");
    let output = import(&app, &file, &["--failed-rows", elsewhere.to_str().unwrap()]).await;
    assert_exit(&output, 2);
    let failed = std::fs::read_to_string(&elsewhere).unwrap();
    assert!(failed.contains("e2,not-an-email"), "{failed}");
    assert!(!dir.path().join("users.failed.csv").exists());
}

#[tokio::test]
async fn failed_rows_that_cannot_be_written_leave_the_summary_and_exit_2() {
    let app = spawn_app(Backend::Sqlite).await;
    let (dir, file) = csv_file(ONE_BAD_ROW);
    let nowhere = dir.path().join("no-such-folder").join("rejects.csv");
    let output = import(&app, &file, &["--failed-rows", nowhere.to_str().unwrap()]).await;
    assert_exit(&output, 2);
    assert!(stdout(&output).contains("failed"), "{}", stdout(&output));
    let err = stderr(&output);
    assert!(
        err.contains("cannot write the failed rows") && err.contains("/failed-rows.csv"),
        "{err}"
    );
}

#[tokio::test]
async fn a_job_that_fails_exits_3_and_says_why() {
    let app = spawn_app(Backend::Sqlite).await;
    let (_dir, file) = csv_file(ONE_BAD_ROW);
    let output = import(&app, &file, &["--atomic"]).await;
    assert_exit(&output, 3);
    let err = stderr(&output);
    assert!(
        err.contains("failed (FAILED)") && err.contains("atomic"),
        "{err}"
    );
    assert!(app.stored_user("e1").await.is_none());
}

#[tokio::test]
async fn a_sync_job_refused_by_its_threshold_exits_3() {
    let app = spawn_app(Backend::Sqlite).await;
    let (_dir, everyone) = csv_file("e1,ann@x.io,Ann,Lee\ne2,bob@x.io,Bob,Kim\ne3,cy@x.io,Cy,Ng\n");
    assert_exit(&import(&app, &everyone, &[]).await, 0);
    let (_dir, one) = csv_file("e1,ann@x.io,Ann,Lee\n");
    let output = import(
        &app,
        &one,
        &["--deactivate-missing", "--change-threshold", "10"],
    )
    .await;
    assert_exit(&output, 3);
    let err = stderr(&output);
    assert!(err.contains("refused to deactivate"), "{err}");
    assert!(err.contains("change threshold of 10%"), "{err}");
    assert!(app.stored_user("e2").await.unwrap().active);
    assert!(app.stored_user("e3").await.unwrap().active);
}

#[tokio::test]
async fn an_unreachable_server_exits_4_and_says_so() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let (_dir, file) = csv_file(GOOD_ROWS);
    let output = import_as(
        &format!("http://127.0.0.1:{port}"),
        String::new(),
        &file,
        &["--token", "t"],
    )
    .await;
    assert_exit(&output, 4);
    let err = stderr(&output);
    assert!(
        err.contains(&format!(
            "cannot reach the Roster server at http://127.0.0.1:{port}"
        )),
        "{err}"
    );
}

#[tokio::test]
async fn a_refused_token_exits_4_and_nothing_is_stored() {
    let app = spawn_app(Backend::Sqlite).await;
    let (_dir, file) = csv_file(GOOD_ROWS);
    let foreign = Authenticator::hs256(b"another-secret", None, None)
        .mint(
            "ops",
            Role::Admin,
            None,
            std::time::Duration::from_secs(600),
        )
        .unwrap();
    let output = import_as(&app.address, foreign, &file, &[]).await;
    assert_exit(&output, 4);
    assert!(
        stderr(&output).contains("refused the token"),
        "{}",
        stderr(&output)
    );
    assert_eq!(app.count_rows("import_jobs").await, 0);
}

#[tokio::test]
async fn a_viewer_token_is_refused_with_exit_4_and_nothing_is_stored() {
    let app = spawn_app(Backend::Sqlite).await;
    let (_dir, file) = csv_file(GOOD_ROWS);
    let output = import_as(&app.address, app.token(Role::Viewer), &file, &[]).await;
    assert_exit(&output, 4);
    assert!(
        stderr(&output).contains("refused the token"),
        "{}",
        stderr(&output)
    );
    assert_eq!(app.count_rows("import_jobs").await, 0);
}

#[tokio::test]
async fn a_file_the_server_refuses_exits_3_and_nothing_is_stored() {
    let app = spawn_app(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users.csv");
    std::fs::write(&file, "externalId,email\ne1,ann@x.io\n").unwrap();
    let output = import(&app, &file, &[]).await;
    assert_exit(&output, 3);
    let err = stderr(&output);
    assert!(
        err.contains("refused the request") && err.contains("firstName"),
        "{err}"
    );
    assert_eq!(app.count_rows("import_jobs").await, 0);
}

#[tokio::test]
async fn a_missing_file_exits_1_and_nothing_is_stored() {
    let app = spawn_app(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let output = import(&app, &dir.path().join("nope.csv"), &[]).await;
    assert_exit(&output, 1);
    assert!(
        stderr(&output).contains("cannot read"),
        "{}",
        stderr(&output)
    );
    assert_eq!(app.count_rows("import_jobs").await, 0);
}

#[tokio::test]
async fn running_the_same_import_again_follows_the_first_job() {
    let app = spawn_app(Backend::Sqlite).await;
    let (_dir, file) = csv_file(ONE_BAD_ROW);
    let first = import(&app, &file, &["--json"]).await;
    let again = import(&app, &file, &["--json"]).await;
    assert_exit(&again, 2);
    assert_eq!(json_of(&first)["id"], json_of(&again)["id"]);
    assert_eq!(app.count_rows("import_jobs").await, 1);
}

#[tokio::test]
async fn other_options_on_the_same_file_make_another_job() {
    let app = spawn_app(Backend::Sqlite).await;
    let (_dir, file) = csv_file(GOOD_ROWS);
    let first = import(&app, &file, &["--json", "--dry-run"]).await;
    let second = import(&app, &file, &["--json"]).await;
    assert_ne!(json_of(&first)["id"], json_of(&second)["id"]);
    assert_eq!(json_of(&second)["dryRun"], false);
    assert_eq!(app.count_rows("import_jobs").await, 2);
}

#[tokio::test]
async fn json_prints_the_final_job() {
    let app = spawn_app(Backend::Sqlite).await;
    let (_dir, file) = csv_file(ONE_BAD_ROW);
    let output = import(&app, &file, &["--json", "--mode", "create-only"]).await;
    assert_exit(&output, 2);
    let job = json_of(&output);
    assert_eq!(job["status"], "COMPLETED_WITH_ERRORS");
    assert_eq!(job["total"], 2);
    assert_eq!(
        job["summary"],
        json!({ "created": 1, "updated": 0, "unchanged": 0, "skipped": 0, "failed": 1, "deactivated": 0 })
    );
    let id = job["id"].as_str().unwrap();
    assert_eq!(
        job["failedRowsCsvUrl"],
        format!("/jobs/{id}/failed-rows.csv")
    );
}

#[test]
fn every_import_flag_has_an_environment_variable() {
    assert_every_flag_has_an_environment_variable(
        &["import"],
        &[
            "ROSTER_SERVER",
            "ROSTER_TOKEN",
            "ROSTER_DRY_RUN",
            "ROSTER_MODE",
            "ROSTER_MATCH_BY",
            "ROSTER_DEACTIVATE_MISSING",
            "ROSTER_CHANGE_THRESHOLD",
            "ROSTER_ATOMIC",
            "ROSTER_IDEMPOTENCY_KEY",
            "ROSTER_FAILED_ROWS",
            "ROSTER_JSON",
            "ROSTER_QUIET",
        ],
    );
}

#[tokio::test]
async fn dry_run_decides_every_row_and_writes_nothing() {
    let app = spawn_app(Backend::Sqlite).await;
    let (_dir, file) = csv_file(GOOD_ROWS);
    let output = import(&app, &file, &["--json", "--dry-run"]).await;
    assert_exit(&output, 0);
    let job = json_of(&output);
    assert_eq!(
        (job["dryRun"].as_bool(), job["summary"]["created"].as_i64()),
        (Some(true), Some(2))
    );
    assert!(app.stored_user("e1").await.is_none());
}

#[tokio::test]
async fn mode_update_only_skips_new_users() {
    let app = spawn_app(Backend::Sqlite).await;
    let (_dir, file) = csv_file(GOOD_ROWS);
    let output = import(&app, &file, &["--json", "--mode", "update-only"]).await;
    let job = json_of(&output);
    assert_eq!(
        (
            job["summary"]["skipped"].as_i64(),
            job["summary"]["created"].as_i64()
        ),
        (Some(2), Some(0)),
        "{job}"
    );
    assert!(app.stored_user("e1").await.is_none());
}

#[tokio::test]
async fn match_by_email_finds_the_user_by_email() {
    let app = spawn_app(Backend::Sqlite).await;
    let (_dir, first) = csv_file("old-1,ann@x.io,Ann,Lee\n");
    assert_exit(&import(&app, &first, &[]).await, 0);
    let (_dir, file) = csv_file("e1,ann@x.io,Ann,Lee\n");
    let output = import(&app, &file, &["--json", "--match-by", "email"]).await;
    assert_exit(&output, 0);
    assert_eq!(
        json_of(&output)["summary"]["updated"],
        1,
        "{}",
        stdout(&output)
    );
    assert!(app.stored_user("e1").await.is_some());
    assert!(app.stored_user("old-1").await.is_none());
}

/// `roster import` with `flags` on a good file: refused before anything is sent.
async fn refused_flags(flags: &[&str], says: &str) {
    let app = spawn_app(Backend::Sqlite).await;
    let (_dir, file) = csv_file(GOOD_ROWS);
    let output = import(&app, &file, flags).await;
    assert_exit(&output, 1);
    assert!(stderr(&output).contains(says), "{}", stderr(&output));
    assert_eq!(app.count_rows("import_jobs").await, 0);
}

#[tokio::test]
async fn an_unknown_mode_exits_1_naming_the_modes() {
    refused_flags(
        &["--mode", "merge"],
        "possible values: upsert, create-only, update-only",
    )
    .await;
}

#[tokio::test]
async fn a_change_threshold_without_sync_mode_exits_1() {
    refused_flags(&["--change-threshold", "5"], "--deactivate-missing").await;
}

#[tokio::test]
async fn a_change_threshold_past_100_exits_1() {
    refused_flags(
        &["--deactivate-missing", "--change-threshold", "101"],
        "0..=100",
    )
    .await;
}

#[tokio::test]
async fn sync_mode_with_atomic_exits_1() {
    refused_flags(&["--deactivate-missing", "--atomic"], "cannot be used with").await;
}

#[tokio::test]
async fn an_idempotency_key_reused_for_another_file_exits_3_and_stores_nothing_more() {
    let app = spawn_app(Backend::Sqlite).await;
    let (_dir, first) = csv_file(GOOD_ROWS);
    let (_dir, other) = csv_file("e3,cy@x.io,Cy,Ng\n");
    let key = ["--idempotency-key", "hr-feed-2026-12-07"];
    assert_exit(&import(&app, &first, &key).await, 0);
    let output = import(&app, &other, &key).await;
    assert_exit(&output, 3);
    let err = stderr(&output);
    assert!(
        err.contains("refused the request, and stored nothing"),
        "{err}"
    );
    assert_eq!(app.count_rows("import_jobs").await, 1);
    assert!(app.stored_user("e3").await.is_none());
}

#[tokio::test]
async fn a_file_past_the_servers_upload_limit_exits_3_naming_its_setting() {
    let app = crate::helpers::spawn_app_with(Backend::Sqlite, |config| {
        config.http.max_upload = 64 * 1024
    })
    .await;
    let rows: String = (0..200_000)
        .map(|n| format!("e{n},u{n}@x.io,Ann,Lee{}\n", "e".repeat(100)))
        .collect();
    let (_dir, file) = csv_file(&rows);
    let output = import(&app, &file, &[]).await;
    assert_exit(&output, 3);
    // The server answers 413 by the request's length and closes the connection: the
    // command reads either the answer or the closed connection, and says which limit.
    let err = stderr(&output);
    assert!(err.contains("ROSTER_MAX_UPLOAD"), "{err}");
    assert_eq!(app.count_rows("import_jobs").await, 0);
}

#[tokio::test]
async fn a_connection_closed_during_the_upload_exits_3_and_says_so() {
    use tokio::io::AsyncReadExt as _;

    // A server that stops while the file is on its way: it reads the start of the request,
    // then closes the connection.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut start = vec![0; 64 * 1024];
        let _ = socket.read(&mut start).await;
    });
    let rows: String = (0..50_000)
        .map(|n| format!("e{n},u{n}@x.io,Ann,Lee{}\n", "e".repeat(100)))
        .collect();
    let (_dir, file) = csv_file(&rows);
    let output = import_as(
        &format!("http://127.0.0.1:{port}"),
        String::new(),
        &file,
        &["--token", "t"],
    )
    .await;
    assert_exit(&output, 3);
    let err = stderr(&output);
    assert!(err.contains("closed the connection while"), "{err}");
    assert!(err.contains("users.csv was being sent"), "{err}");
}
