//! What the benchmarks share: a database of their own, the real `roster` binary started on
//! it, its GraphQL endpoint, and the process's CPU time and peak memory.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use roster::auth::{Authenticator, Role};
use serde_json::{Value, json};

pub const SECRET: &str = "roster-bench-secret";

/// A fresh database on `backend` (`sqlite` or `postgres`), removed when dropped.
pub struct BenchDatabase {
    pub url: String,
    _dir: tempfile::TempDir,
    postgres: Option<(String, String)>,
}

impl BenchDatabase {
    pub async fn create(backend: &str) -> Self {
        let dir = tempfile::tempdir().expect("a temp dir");
        match backend {
            "sqlite" => Self {
                url: format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("bench.db").display()
                ),
                _dir: dir,
                postgres: None,
            },
            "postgres" => {
                let admin = postgres_admin();
                let name = format!("roster_bench_{}", uuid::Uuid::new_v4().simple());
                psql(&admin, &format!("CREATE DATABASE \"{name}\"")).await;
                Self {
                    url: format!("{admin}/{name}"),
                    _dir: dir,
                    postgres: Some((admin, name)),
                }
            }
            other => panic!("unknown backend {other}"),
        }
    }

    pub async fn drop_postgres(&self) {
        if let Some((admin, name)) = &self.postgres {
            psql(
                admin,
                &format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
            )
            .await;
        }
    }
}

/// The PostgreSQL server: `ROSTER_TEST_POSTGRES_URL`, by default the local one.
pub fn postgres_admin() -> String {
    std::env::var("ROSTER_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

/// The real server, started on a database; killed when dropped.
pub struct Server {
    child: Child,
    pub api: Api,
}

impl Server {
    pub fn start(url: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_roster"))
            .args(["serve", "--addr", "127.0.0.1:0", "--database-url", url])
            .env("ROSTER_JWT_SECRET", SECRET)
            .env(
                "RUST_LOG",
                std::env::var("ROSTER_BENCH_LOG").unwrap_or_else(|_| "warn".to_owned()),
            )
            .env("ROSTER_LOG_FORMAT", "json")
            .stdout(Stdio::piped())
            .spawn()
            .expect("roster starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let base = loop {
            let line = lines.next().expect("a line").expect("readable");
            if let Some(url) = line.strip_prefix("Roster is listening on ") {
                break url.trim().to_owned();
            }
        };
        let echo = std::env::var_os("ROSTER_BENCH_LOG").is_some();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok).filter(|_| echo) {
                eprintln!("{line}");
            }
        });
        let token = Authenticator::hs256(SECRET.as_bytes(), None, None)
            .mint("bench", Role::Admin, None, Duration::from_secs(3600))
            .expect("a token");
        Self {
            child,
            api: Api {
                client: reqwest::Client::new(),
                base,
                token,
            },
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process's peak resident set so far, in MiB.
    pub fn peak_rss_mb(&self) -> f64 {
        peak_rss_kb(self.pid()) as f64 / 1024.0
    }

    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds(self.pid())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server's GraphQL endpoint, with an admin token.
pub struct Api {
    pub client: reqwest::Client,
    pub base: String,
    pub token: String,
}

impl Api {
    pub fn graphql_url(&self) -> String {
        format!("{}/graphql", self.base)
    }

    pub async fn call(&self, query: &str, variables: Value) -> Value {
        let body = json!({ "query": query, "variables": variables });
        self.post(serde_json::to_vec(&body).expect("a request body"))
            .await
    }

    /// POSTs a GraphQL request's JSON `body`; answers the response.
    async fn post(&self, body: Vec<u8>) -> Value {
        self.client
            .post(self.graphql_url())
            .bearer_auth(&self.token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .expect("sent")
            .json()
            .await
            .expect("JSON")
    }

    /// Submits the `importUsers` request `body` (see [`import_request`]); answers the job's
    /// id.
    pub async fn send_import(&self, body: Vec<u8>) -> String {
        job_id(&self.post(body).await, "importUsers")
    }

    /// Uploads a CSV file with `importUsersCsv`; answers the job's id.
    pub async fn import_csv(&self, file: Vec<u8>, options: &Value) -> String {
        let operations = json!({
            "query": "mutation($f: Upload!, $o: ImportOptions) {
                importUsersCsv(file: $f, options: $o) { id }
            }",
            "variables": { "f": null, "o": options },
        });
        let file = reqwest::multipart::Part::bytes(file)
            .file_name("users.csv")
            .mime_str("text/csv")
            .expect("a MIME type");
        let form = reqwest::multipart::Form::new()
            .text("operations", operations.to_string())
            .text("map", r#"{"0":["variables.f"]}"#)
            .part("0", file);
        let response: Value = self
            .client
            .post(self.graphql_url())
            .bearer_auth(&self.token)
            .multipart(form)
            .send()
            .await
            .expect("uploaded")
            .json()
            .await
            .expect("JSON");
        job_id(&response, "importUsersCsv")
    }

    /// Waits until job `id` is `COMPLETED`; answers when every row's user was done (the
    /// first pass), counted from `started`.
    pub async fn completed(&self, id: &str, started: Instant) -> Option<Duration> {
        let mut users_pass = None;
        loop {
            let job = self
                .call(
                    "query($id: ID!) { importJob(id: $id) { status processed total } }",
                    json!({ "id": id }),
                )
                .await;
            let job = &job["data"]["importJob"];
            if users_pass.is_none() && job["processed"] == job["total"] {
                users_pass = Some(started.elapsed());
            }
            let status = job["status"].as_str().unwrap_or("");
            if status != "QUEUED" && status != "RUNNING" {
                assert_eq!(status, "COMPLETED", "{job}");
                return users_pass;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The body of an `importUsers` request for `users`, as a client that has its rows ready
/// sends it.
pub fn import_request(users: &[Value], options: &Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "query": "mutation($u: [UserImportInput!]!, $o: ImportOptions) {
            importUsers(users: $u, options: $o) { id }
        }",
        "variables": { "u": users, "o": options },
    }))
    .expect("a request body")
}

fn job_id(response: &Value, field: &str) -> String {
    response["data"][field]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("a job: {response}"))
        .to_owned()
}

/// The user and system CPU time of a process so far, in seconds (`/proc/PID/stat`, in
/// clock ticks of 1/100 s, the value of `CLK_TCK` on Linux).
pub fn cpu_seconds(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // The fields after the command name, which is in parentheses.
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok();
            Some((ticks(11)? + ticks(12)?) as f64 / 100.0)
        })
        .unwrap_or(0.0)
}

/// The process's peak resident set (`VmHWM`), in KiB.
pub fn peak_rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:"))
                .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Runs one statement on the PostgreSQL server's `postgres` database.
pub async fn psql(admin: &str, sql: &str) {
    use sea_orm::ConnectionTrait;
    let db = sea_orm::Database::connect(format!("{admin}/postgres"))
        .await
        .expect("PostgreSQL answers");
    db.execute_unprepared(sql).await.expect("admin statement");
    let _ = db.close().await;
}
