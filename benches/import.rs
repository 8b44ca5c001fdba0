//! Bulk import benchmark: generates N users (tags, two attributes, a manager each), submits
//! them with `importUsers` to the real `roster` binary over HTTP, waits for the job, and
//! prints rows per second, the server's peak RSS and its CPU time, on SQLite and on
//! PostgreSQL.
//!
//! `cargo bench --bench import`; `ROSTER_BENCH_SIZES=10000,100000` (the default) picks N,
//! `ROSTER_BENCH_BACKENDS=sqlite,postgres` (the default) the databases,
//! `ROSTER_BENCH_FORM=csv` sends the same users as a CSV file to `importUsersCsv` instead
//! (default `json`), `ROSTER_BENCH_REVERT=1` also reverts each job once it is done
//! (`revertImportJob`, which removes every user it created) and times that,
//! `ROSTER_BENCH_OPTIONS` the job's `ImportOptions` as JSON (default `{}`; for instance
//! `{"dryRun":true}` or `{"atomic":true}`, which run the job in one transaction),
//! `ROSTER_BENCH_LOG` the server's `RUST_LOG` (default `warn`; when set, its JSON log
//! lines go to stderr: `sqlx::query=debug` times every statement), and
//! `ROSTER_TEST_POSTGRES_URL` the PostgreSQL server (default
//! `postgres://postgres@127.0.0.1:5432`).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use roster::auth::{Authenticator, Role};
use serde_json::{Value, json};

const SECRET: &str = "roster-bench-secret";

fn main() {
    let sizes: Vec<usize> = std::env::var("ROSTER_BENCH_SIZES")
        .unwrap_or_else(|_| "10000,100000".to_owned())
        .split(',')
        .map(|n| n.trim().parse().expect("ROSTER_BENCH_SIZES: numbers"))
        .collect();
    let backends =
        std::env::var("ROSTER_BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".to_owned());
    let csv = match std::env::var("ROSTER_BENCH_FORM").as_deref() {
        Ok("csv") => true,
        Ok("json") | Err(_) => false,
        Ok(other) => panic!("ROSTER_BENCH_FORM: json or csv, not {other}"),
    };
    let revert = std::env::var("ROSTER_BENCH_REVERT").is_ok_and(|v| v == "1");
    let options: Value = std::env::var("ROSTER_BENCH_OPTIONS").map_or_else(
        |_| json!({}),
        |v| serde_json::from_str(&v).expect("ROSTER_BENCH_OPTIONS: a JSON object"),
    );
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    println!("form: {}", if csv { "CSV file" } else { "JSON request" });
    println!("options: {options}");
    println!(
        "backend   rows      submit_s  users_s   total_s   rows/s    peak_rss_mb server_cpu_s{}",
        if revert { "  revert_s" } else { "" }
    );
    for backend in backends.split(',').map(str::trim) {
        for &n in &sizes {
            let figures = runtime.block_on(run(backend, n, csv, &options, revert));
            println!(
                "{backend:<9} {n:<9} {:<9.2} {:<9.2} {:<9.2} {:<9.0} {:<11.0} {:<12.2}{}",
                figures.submit.as_secs_f64(),
                figures.users_pass.as_secs_f64(),
                figures.total.as_secs_f64(),
                n as f64 / figures.total.as_secs_f64(),
                figures.peak_rss_kb as f64 / 1024.0,
                figures.server_cpu_s,
                figures
                    .revert
                    .map_or(String::new(), |r| format!("{:.2}", r.as_secs_f64())),
            );
        }
    }
}

struct Figures {
    submit: Duration,
    /// Until every row's user was written (the first pass).
    users_pass: Duration,
    total: Duration,
    peak_rss_kb: u64,
    /// CPU time the server process used (user and system), from its start: steadier than
    /// wall time on a shared machine, though it leaves out PostgreSQL's own processes.
    server_cpu_s: f64,
    /// Until the job's revert was done.
    revert: Option<Duration>,
}

fn users(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let mut user = json!({
                "externalId": format!("b{i}"),
                "email": format!("b{i}@example.com"),
                "firstName": format!("First{i}"),
                "lastName": "Bench",
                "department": format!("dept-{}", i % 50),
                "tags": ["staff", format!("team-{}", i % 20)],
                "attributes": [
                    { "name": "grade", "value": format!("{}", i % 12), "type": "NUMBER" },
                    { "name": "site", "value": format!("site-{}", i % 5) },
                ],
            });
            // A tree of managers, ten reports each; the root has none.
            if i > 0 {
                user["managerExternalId"] = json!(format!("b{}", i / 10));
            }
            user
        })
        .collect()
}

/// The same users as [`users`], as a CSV file of this API's columns.
fn users_csv(n: usize) -> Vec<u8> {
    let mut csv = String::from(
        "externalId,email,firstName,lastName,department,tags,attr:grade,attr:site,managerExternalId\n",
    );
    for i in 0..n {
        let manager = if i > 0 {
            format!("b{}", i / 10)
        } else {
            String::new()
        };
        csv.push_str(&format!(
            "b{i},b{i}@example.com,First{i},Bench,dept-{},\"staff,team-{}\",{},site-{},{manager}\n",
            i % 50,
            i % 20,
            i % 12,
            i % 5,
        ));
    }
    csv.into_bytes()
}

async fn run(backend: &str, n: usize, csv: bool, options: &Value, revert: bool) -> Figures {
    let dir = tempfile::tempdir().expect("a temp dir");
    let (url, pg_name) = match backend {
        "sqlite" => (
            format!(
                "sqlite://{}?mode=rwc",
                dir.path().join("bench.db").display()
            ),
            None,
        ),
        "postgres" => {
            let admin = std::env::var("ROSTER_TEST_POSTGRES_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned());
            let name = format!("roster_bench_{}", uuid::Uuid::new_v4().simple());
            psql(&admin, &format!("CREATE DATABASE \"{name}\"")).await;
            (format!("{admin}/{name}"), Some((admin, name)))
        }
        other => panic!("unknown backend {other}"),
    };
    let (mut child, base) = start(&url);
    let token = Authenticator::hs256(SECRET.as_bytes(), None, None)
        .mint("bench", Role::Admin, None, Duration::from_secs(3600))
        .expect("a token");
    let client = reqwest::Client::new();
    let request = if csv {
        let operations = json!({
            "query": "mutation($f: Upload!, $o: ImportOptions) {
                importUsersCsv(file: $f, options: $o) { id }
            }",
            "variables": { "f": null, "o": options },
        });
        let file = reqwest::multipart::Part::bytes(users_csv(n))
            .file_name("users.csv")
            .mime_str("text/csv")
            .expect("a MIME type");
        let form = reqwest::multipart::Form::new()
            .text("operations", operations.to_string())
            .text("map", r#"{"0":["variables.f"]}"#)
            .part("0", file);
        client.post(format!("{base}/graphql")).multipart(form)
    } else {
        let body = json!({
            "query": "mutation($u: [UserImportInput!]!, $o: ImportOptions) {
                importUsers(users: $u, options: $o) { id }
            }",
            "variables": { "u": users(n), "o": options },
        });
        client.post(format!("{base}/graphql")).json(&body)
    };
    let started = Instant::now();
    let response: Value = request
        .bearer_auth(&token)
        .send()
        .await
        .expect("submitted")
        .json()
        .await
        .expect("JSON");
    let submit = started.elapsed();
    let job = if csv { "importUsersCsv" } else { "importUsers" };
    let id = response["data"][job]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("a job: {response}"))
        .to_owned();
    let api = Api {
        client,
        url: format!("{base}/graphql"),
        token,
    };
    let users_pass = api.completed(&id, started).await;
    let total = started.elapsed();
    let revert = if revert {
        let started = Instant::now();
        let response = api
            .call(
                "mutation($id: ID!) { revertImportJob(id: $id) { id } }",
                json!({ "id": id }),
            )
            .await;
        let revert_id = response["data"]["revertImportJob"]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("a revert: {response}"))
            .to_owned();
        api.completed(&revert_id, started).await;
        Some(started.elapsed())
    } else {
        None
    };
    let peak_rss_kb = peak_rss_kb(child.id());
    let server_cpu_s = cpu_seconds(child.id());
    let _ = child.kill();
    let _ = child.wait();
    if let Some((admin, name)) = pg_name {
        psql(
            &admin,
            &format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
        )
        .await;
    }
    Figures {
        submit,
        users_pass: users_pass.unwrap_or(total),
        total,
        peak_rss_kb,
        server_cpu_s,
        revert,
    }
}

/// The server's GraphQL endpoint, with an admin token.
struct Api {
    client: reqwest::Client,
    url: String,
    token: String,
}

impl Api {
    async fn call(&self, query: &str, variables: Value) -> Value {
        self.client
            .post(&self.url)
            .bearer_auth(&self.token)
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .expect("sent")
            .json()
            .await
            .expect("JSON")
    }

    /// Waits until job `id` is `COMPLETED`; answers when every row's user was done (the
    /// first pass), counted from `started`.
    async fn completed(&self, id: &str, started: Instant) -> Option<Duration> {
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

fn start(url: &str) -> (Child, String) {
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
    (child, base)
}

/// The user and system CPU time of a process so far, in seconds (`/proc/PID/stat`, in
/// clock ticks of 1/100 s, the value of `CLK_TCK` on Linux).
fn cpu_seconds(pid: u32) -> f64 {
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
fn peak_rss_kb(pid: u32) -> u64 {
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

async fn psql(admin: &str, sql: &str) {
    use sea_orm::ConnectionTrait;
    let db = sea_orm::Database::connect(format!("{admin}/postgres"))
        .await
        .expect("PostgreSQL answers");
    db.execute_unprepared(sql).await.expect("admin statement");
    let _ = db.close().await;
}
