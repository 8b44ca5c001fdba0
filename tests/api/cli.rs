//! The command line: `token` mints what the server accepts, and every flag is documented.

use std::process::Command;

use roster::auth::{Authenticator, Role};

use crate::helpers::{
    ServerProcess, assert_every_flag_has_an_environment_variable, roster_command,
};

fn roster() -> Command {
    roster_command()
}

#[test]
fn token_mints_a_token_the_server_accepts() {
    let output = roster()
        .args([
            "token", "--sub", "ops", "--role", "viewer", "--tenant", "acme", "--ttl", "2h",
        ])
        .env("ROSTER_JWT_SECRET", "cli-secret")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = String::from_utf8(output.stdout).unwrap();
    let principal = Authenticator::hs256(b"cli-secret", None, None)
        .verify(token.trim())
        .expect("the minted token verifies");
    assert_eq!(principal.subject, "ops");
    assert_eq!(principal.role, Role::Viewer);
    assert_eq!(principal.tenant.as_str(), "acme");
}

#[test]
fn token_without_a_secret_says_what_to_set() {
    let output = roster()
        .args(["token", "--sub", "ops", "--role", "admin"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("ROSTER_JWT_SECRET"));
}

#[test]
fn every_serve_flag_has_an_environment_variable() {
    assert_every_flag_has_an_environment_variable(
        &["serve"],
        &[
            "DATABASE_URL",
            "ROSTER_ADDR",
            "ROSTER_JWT_SECRET",
            "ROSTER_JWT_PUBLIC_KEY_FILE",
            "ROSTER_JWT_ISSUER",
            "ROSTER_JWT_AUDIENCE",
            "ROSTER_MAX_BODY",
            "ROSTER_REQUEST_TIMEOUT",
            "ROSTER_MAX_DEPTH",
            "ROSTER_MAX_COMPLEXITY",
            "ROSTER_MAX_ALIASES",
            "ROSTER_LOG_FORMAT",
        ],
    );
}

#[test]
fn jobs_are_kept_at_least_a_day() {
    let output = roster()
        .args(["serve", "--job-retention", "23h"])
        .env("ROSTER_JWT_SECRET", "cli-secret")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("at least 24h"), "{stderr}");
    let help = roster().args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("[env: ROSTER_JOB_RETENTION=]"), "{help}");
    assert!(help.contains("[default: 30days]"), "{help}");
}

#[test]
fn migrate_applies_migrations_to_a_new_database() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("m.db").display());
    let output = roster()
        .args(["migrate", "--database-url", &url])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(dir.path().join("m.db").exists());
}

#[tokio::test]
async fn serve_without_a_key_prints_a_working_admin_token_and_logs_json() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("s.db").display());
    let server = ServerProcess::start(&url, &[("ROSTER_LOG_FORMAT", "json")]);
    let (base, admin_token) = (&server.base, &server.admin_token);
    let next_line = || server.next_line();
    let response = reqwest::Client::new()
        .post(format!("{base}/graphql"))
        .bearer_auth(admin_token)
        .json(&serde_json::json!({ "query": "{ viewer { role tenant } }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        body["data"]["viewer"],
        serde_json::json!({ "role": "admin", "tenant": "default" })
    );

    // The request above is logged as one JSON object with its status and latency.
    loop {
        let line = next_line();
        let Ok(log) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if log["message"] == "request finished" && log["span"]["path"] == "/graphql" {
            assert_eq!(log["status"], 200, "{log}");
            assert!(log["latency_ms"].is_number(), "{log}");
            break;
        }
    }
}
