//! The bulk-import targets: three workloads against their floor, measured in one run.
//!
//! - `feed`: an HR feed of N users (default 100,000) sent as one `importUsers` request:
//!   a manager each (every report comes before its manager), two tags, two attributes, a
//!   phone and a department.
//! - `sync`: the same feed again on the same server, 1% of the users changed (the
//!   next day's feed).
//! - `csv`: a CSV file of M rows (default 1,000,000): a manager and two tags each.
//!
//! The floor is what the same facts cost the database written by the cheapest client into
//! a lean schema that holds them (`benches/floor.py`): Python's `sqlite3` with
//! `executemany` in one transaction, or one `INSERT … SELECT generate_series` per table
//! inside PostgreSQL. The sync is set against the floor of creating its users. Each line
//! gives the time, users per second, the server's peak RSS so far and floor ÷ time (the
//! target's ratio), and when the request was answered (`submit_s`) and every row's user
//! written (`users_s`, the first pass; the rest is the approver pass and the job's end).
//! The clock starts when the request is sent, its body already made: making it is the
//! client's work, not the server's.
//!
//! `cargo bench --bench targets`; `ROSTER_BENCH_WORKLOADS=feed,sync,csv` (the default)
//! picks the workloads (`sync` runs after a `feed`), `ROSTER_BENCH_BACKENDS=sqlite,postgres`
//! the databases, `ROSTER_BENCH_USERS` N and `ROSTER_BENCH_CSV_ROWS` M, and
//! `ROSTER_BENCH_PROCESSES` how many server processes share the database and its jobs
//! (`1,2` runs each workload with one, then two; the default is 1). Jobs are submitted to
//! the first process; the peak RSS is the first's.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::{BenchDatabase, Server};

fn main() {
    let workloads =
        std::env::var("ROSTER_BENCH_WORKLOADS").unwrap_or_else(|_| "feed,sync,csv".to_owned());
    let workloads: Vec<&str> = workloads.split(',').map(str::trim).collect();
    let backends =
        std::env::var("ROSTER_BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".to_owned());
    let users = number("ROSTER_BENCH_USERS", 100_000);
    let csv_rows = number("ROSTER_BENCH_CSV_ROWS", 1_000_000);
    let processes = std::env::var("ROSTER_BENCH_PROCESSES").unwrap_or_else(|_| "1".to_owned());
    let processes: Vec<usize> = processes
        .split(',')
        .map(|n| n.trim().parse().expect("ROSTER_BENCH_PROCESSES: numbers"))
        .collect();
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    println!(
        "backend   procs workload  users     submit_s  users_s   time_s    users/s   peak_rss_mb floor_s   floor/time"
    );
    for backend in backends.split(',').map(str::trim) {
        for &procs in &processes {
            let run = Run {
                backend,
                procs,
                runtime: &runtime,
            };
            if workloads.contains(&"feed") {
                run.feed(users, workloads.contains(&"sync"));
            }
            if workloads.contains(&"csv") {
                run.csv(csv_rows);
            }
        }
    }
}

/// The workloads on one database with `procs` server processes.
struct Run<'a> {
    backend: &'a str,
    procs: usize,
    runtime: &'a tokio::runtime::Runtime,
}

impl Run<'_> {
    /// Servers on a new database: the first takes the jobs, the others share its queue.
    fn servers(&self) -> (BenchDatabase, Vec<Server>) {
        let database = self.runtime.block_on(BenchDatabase::create(self.backend));
        let servers = (0..self.procs.max(1))
            .map(|_| Server::start(&database.url))
            .collect();
        (database, servers)
    }

    fn feed(&self, users: usize, sync: bool) {
        let (database, servers) = self.servers();
        let floor = floor(self.backend, users, 2, 2);
        let feed = feed(users, &[]);
        let times = self.runtime.block_on(import(&servers[0], &feed));
        self.report("feed", users, times, &servers[0], floor);
        if sync {
            let changed: Vec<usize> = (0..users).step_by(100).collect();
            let next_day = self::feed(users, &changed);
            let times = self.runtime.block_on(import(&servers[0], &next_day));
            self.report("sync", users, times, &servers[0], floor);
        }
        drop(servers);
        self.runtime.block_on(database.drop_postgres());
    }

    fn csv(&self, rows: usize) {
        let (database, servers) = self.servers();
        let floor = floor(self.backend, rows, 2, 0);
        let file = csv_file(rows);
        let server = &servers[0];
        let times = self.runtime.block_on(async {
            let started = Instant::now();
            let id = server.api.import_csv(file, &json!({})).await;
            let submit = started.elapsed();
            let users = server.api.completed(&id, started).await;
            Times::new(started, submit, users)
        });
        self.report("csv", rows, times, server, floor);
        drop(servers);
        self.runtime.block_on(database.drop_postgres());
    }

    fn report(&self, workload: &str, n: usize, times: Times, server: &Server, floor: f64) {
        report(self.backend, self.procs, workload, n, times, server, floor);
    }
}

fn number(variable: &str, default: usize) -> usize {
    std::env::var(variable).map_or(default, |v| {
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{variable}: a number"))
    })
}

/// When a job's stages ended, from its submission: the request answered, every row's user
/// written (the first pass), the job done.
struct Times {
    submit: Duration,
    users: Duration,
    total: Duration,
}

impl Times {
    fn new(started: Instant, submit: Duration, users: Option<Duration>) -> Self {
        let total = started.elapsed();
        Self {
            submit,
            users: users.unwrap_or(total),
            total,
        }
    }
}

fn report(
    backend: &str,
    procs: usize,
    workload: &str,
    n: usize,
    times: Times,
    server: &Server,
    floor: f64,
) {
    let seconds = times.total.as_secs_f64();
    println!(
        "{backend:<9} {procs:<5} {workload:<9} {n:<9} {:<9.2} {:<9.2} {seconds:<9.2} {:<9.0} {:<11.0} {floor:<9.2} {:.2}",
        times.submit.as_secs_f64(),
        times.users.as_secs_f64(),
        n as f64 / seconds,
        server.peak_rss_mb(),
        floor / seconds,
    );
}

/// Seconds the floor takes for `n` users with `tags` tags and `attributes` attributes.
fn floor(backend: &str, n: usize, tags: usize, attributes: usize) -> f64 {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/floor.py");
    let output = Command::new("python3")
        .args([
            script,
            backend,
            &n.to_string(),
            &tags.to_string(),
            &attributes.to_string(),
        ])
        .output()
        .expect("python3 runs benches/floor.py");
    assert!(
        output.status.success(),
        "floor.py: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .expect("floor.py prints seconds")
}

/// The HR feed: user `i` is managed by user `i / 10` and comes before it (the file runs
/// from the last user to the first). The users of `changed` have moved department.
fn feed(n: usize, changed: &[usize]) -> Vec<Value> {
    (0..n)
        .rev()
        .map(|i| {
            let department = if changed.binary_search(&i).is_ok() {
                format!("moved-{}", i % 50)
            } else {
                format!("dept-{}", i % 50)
            };
            let mut user = json!({
                "externalId": format!("e{i}"),
                "email": format!("e{i}@example.com"),
                "firstName": format!("First{i}"),
                "lastName": "Feed",
                "phone": format!("+4420{i:08}"),
                "department": department,
                "tags": ["staff", format!("team-{}", i % 20)],
                "attributes": [
                    { "name": "grade", "value": format!("{}", i % 12), "type": "NUMBER" },
                    { "name": "site", "value": format!("site-{}", i % 5) },
                ],
            });
            if i > 0 {
                user["managerExternalId"] = json!(format!("e{}", i / 10));
            }
            user
        })
        .collect()
}

/// Submits `users` and waits for the job; the clock starts once the request's body is
/// ready, as a client's rows are when it sends them.
async fn import(server: &Server, users: &[Value]) -> Times {
    let body = common::import_request(users, &json!({}));
    let started = Instant::now();
    let id = server.api.send_import(body).await;
    let submit = started.elapsed();
    let users = server.api.completed(&id, started).await;
    Times::new(started, submit, users)
}

/// `n` rows of a CSV file: a manager (reports first, as in [`feed`]) and two tags each.
fn csv_file(n: usize) -> Vec<u8> {
    let mut csv = String::from("externalId,email,firstName,lastName,tags,managerExternalId\n");
    for i in (0..n).rev() {
        let manager = if i > 0 {
            format!("c{}", i / 10)
        } else {
            String::new()
        };
        csv.push_str(&format!(
            "c{i},c{i}@example.com,First{i},Csv,\"staff,team-{}\",{manager}\n",
            i % 20
        ));
    }
    csv.into_bytes()
}
