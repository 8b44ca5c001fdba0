//! The command line: `token` mints what the server accepts, and every flag is documented.

use std::process::Command;

use roster::auth::{Authenticator, Role};

fn roster() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_roster"));
    for var in [
        "ROSTER_JWT_SECRET",
        "ROSTER_JWT_PUBLIC_KEY_FILE",
        "ROSTER_JWT_ISSUER",
        "ROSTER_JWT_AUDIENCE",
    ] {
        command.env_remove(var);
    }
    command
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
    let output = roster().args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8(output.stdout).unwrap();
    for var in [
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
    ] {
        assert!(
            help.contains(&format!("[env: {var}")),
            "{var} missing from:\n{help}"
        );
    }
    let flags = help
        .lines()
        .filter(|l| l.trim_start().starts_with("--"))
        .count();
    let envs = help.matches("[env: ").count();
    assert_eq!(
        flags, envs,
        "every flag but -h/--help has an env variable:\n{help}"
    );
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

/// Kills the server process when the test ends, however it ends.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn serve_without_a_key_prints_a_working_admin_token_and_logs_json() {
    use std::io::{BufRead, BufReader};
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("s.db").display());
    let mut child = roster()
        .args(["serve", "--addr", "127.0.0.1:0", "--database-url", &url])
        .env("ROSTER_LOG_FORMAT", "json")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _server = Server(child);
    let (lines_tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let next_line = || {
        lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the server prints before the deadline")
    };

    let mut base = None;
    let mut admin_token = None;
    while admin_token.is_none() {
        let line = next_line();
        if let Some(address) = line.strip_prefix("Roster is listening on ") {
            base = Some(address.trim().to_owned());
        }
        if line.starts_with("Admin token") {
            admin_token = Some(next_line().trim().to_owned());
        }
    }
    let base = base.expect("the URL is printed before the tokens");
    let response = reqwest::Client::new()
        .post(format!("{base}/graphql"))
        .bearer_auth(admin_token.unwrap())
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
