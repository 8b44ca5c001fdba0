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

mod common;

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::{BenchDatabase, Server};

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
    let database = BenchDatabase::create(backend).await;
    let server = Server::start(&database.url);
    let api = &server.api;
    // The clock starts once the request is ready, as a client's rows are when it sends them.
    enum Request {
        Csv(Vec<u8>),
        Json(Vec<u8>),
    }
    let request = if csv {
        Request::Csv(users_csv(n))
    } else {
        Request::Json(common::import_request(&users(n), options))
    };
    let started = Instant::now();
    let id = match request {
        Request::Csv(file) => api.import_csv(file, options).await,
        Request::Json(body) => api.send_import(body).await,
    };
    let submit = started.elapsed();
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
    let peak_rss_kb = common::peak_rss_kb(server.pid());
    let server_cpu_s = server.cpu_seconds();
    drop(server);
    database.drop_postgres().await;
    Figures {
        submit,
        users_pass: users_pass.unwrap_or(total),
        total,
        peak_rss_kb,
        server_cpu_s,
        revert,
    }
}
