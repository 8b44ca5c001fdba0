use std::time::Duration;

use reqwest::header::HeaderMap;
use roster::auth::{Authenticator, Role};
use roster::config::{
    DatabaseConfig, HttpConfig, JobsConfig, JwtConfig, QueryLimits, ScimConfig, ServeConfig,
};
use roster::startup::Application;
use sea_orm::{ConnectionTrait, Database};
use serde_json::{Value, json};

pub const TEST_SECRET: &str = "roster-test-secret-that-signs-test-tokens";

/// The databases a test can run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs one async test body against SQLite and against PostgreSQL, as `name::sqlite` and
/// `name::postgres`. The body gets a fresh server with its own fresh database each time.
macro_rules! db_test {
    ($(#[$meta:meta])* async fn $name:ident($app:ident) $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            $(#[$meta])*
            async fn run($app: $crate::helpers::TestApp) $body

            #[tokio::test]
            async fn sqlite() {
                run($crate::helpers::spawn_app($crate::helpers::Backend::Sqlite).await).await
            }

            #[tokio::test]
            async fn postgres() {
                run($crate::helpers::spawn_app($crate::helpers::Backend::Postgres).await).await
            }
        }
    };
}
pub(crate) use db_test;

/// Runs `run(backend)`, a test that starts its own server (another configuration, a
/// statement log, several processes), once per database: `name::sqlite` and
/// `name::postgres`, as [`db_test!`] names its tests.
macro_rules! each_backend {
    ($name:ident => $run:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$run($crate::helpers::Backend::Sqlite).await;
            }

            #[tokio::test]
            async fn postgres() {
                super::$run($crate::helpers::Backend::Postgres).await;
            }
        }
    };
}
pub(crate) use each_backend;

/// A running server and what a test needs to talk to it.
pub struct TestApp {
    pub address: String,
    pub port: u16,
    pub client: reqwest::Client,
    pub database: TestDatabase,
    auth: Authenticator,
}

/// A GraphQL answer: HTTP status, headers and the JSON body.
#[derive(Debug)]
pub struct GraphQLResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

impl GraphQLResponse {
    /// The `extensions.code` of the first error.
    pub fn error_code(&self) -> Option<&str> {
        self.body["errors"][0]["extensions"]["code"].as_str()
    }

    pub fn error_message(&self) -> &str {
        self.body["errors"][0]["message"].as_str().unwrap_or("")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

/// Starts a server whose configuration the test may adjust first; the JWT settings default
/// to the test secret.
pub async fn spawn_app_with(backend: Backend, customize: impl FnOnce(&mut ServeConfig)) -> TestApp {
    let database = TestDatabase::create(backend).await;
    spawn_on(database, customize).await
}

/// A server for the tests: small job chunks (so that jobs of a few thousand rows take
/// several chunks) and quick polling.
fn test_config(database_url: &str) -> ServeConfig {
    ServeConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        database: DatabaseConfig {
            database_url: database_url.to_owned(),
            db_max_connections: 5,
        },
        jwt: JwtConfig {
            jwt_secret: Some(TEST_SECRET.to_owned()),
            ..JwtConfig::default()
        },
        http: HttpConfig {
            max_body: 64 * 1024 * 1024,
            max_upload: 256 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            upload_timeout: Duration::from_secs(600),
            ..HttpConfig::default()
        },
        limits: QueryLimits::default(),
        jobs: JobsConfig {
            job_chunk: 500,
            job_poll: Duration::from_millis(100),
            ..JobsConfig::default()
        },
        scim: ScimConfig::default(),
    }
}

async fn spawn_on(database: TestDatabase, customize: impl FnOnce(&mut ServeConfig)) -> TestApp {
    let mut config = test_config(&database.url);
    customize(&mut config);
    let auth = Authenticator::from_config(&config.jwt)
        .expect("valid test key")
        .expect("a test key is configured");
    // The test keeps its own signer; for public-key setups it signs with helpers below.
    let signer = Authenticator::hs256(
        config
            .jwt
            .jwt_secret
            .as_deref()
            .unwrap_or(TEST_SECRET)
            .as_bytes(),
        config.jwt.jwt_issuer.clone(),
        config.jwt.jwt_audience.clone(),
    );
    let app = Application::build(config, auth)
        .await
        .expect("the application builds");
    let port = app.port();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        client: reqwest::Client::new(),
        database,
        auth: signer,
    }
}

impl TestApp {
    /// Starts a second server on this one's database, as another process would be; it runs
    /// until the test ends.
    pub async fn spawn_peer(&self, customize: impl FnOnce(&mut ServeConfig)) {
        let mut config = test_config(&self.database.url);
        customize(&mut config);
        let auth = Authenticator::from_config(&config.jwt)
            .expect("valid test key")
            .expect("a test key is configured");
        let app = Application::build(config, auth)
            .await
            .expect("the peer builds");
        tokio::spawn(app.run_until_stopped());
    }

    /// A real token signed with the test secret, for the default tenant.
    pub fn token(&self, role: Role) -> String {
        self.token_for(role, None)
    }

    pub fn token_for(&self, role: Role, tenant: Option<&str>) -> String {
        self.auth
            .mint(
                &format!("test-{}", role.as_str()),
                role,
                tenant,
                Duration::from_secs(600),
            )
            .expect("the test secret signs")
    }

    pub fn graphql_url(&self) -> String {
        format!("{}/graphql", self.address)
    }

    /// POSTs a GraphQL operation as JSON with the given token.
    pub async fn graphql(&self, token: &str, query: &str, variables: Value) -> GraphQLResponse {
        let response = self
            .client
            .post(self.graphql_url())
            .bearer_auth(token)
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .expect("request sent");
        GraphQLResponse::read(response).await
    }

    /// POSTs a GraphQL multipart request with `file` as the upload at `$file`.
    pub async fn upload(
        &self,
        token: &str,
        query: &str,
        variables: Value,
        file: Vec<u8>,
    ) -> GraphQLResponse {
        let response = self
            .client
            .post(self.graphql_url())
            .bearer_auth(token)
            .multipart(upload_form(query, variables, file))
            .send()
            .await
            .expect("request sent");
        GraphQLResponse::read(response).await
    }

    /// Asks for the revert of job `id` as an admin; answers the revert's id.
    pub async fn revert_job(&self, id: &str) -> Value {
        let response = self
            .graphql(
                &self.token(Role::Admin),
                "mutation($id: ID!) { revertImportJob(id: $id) { id } }",
                json!({ "id": id }),
            )
            .await;
        response.data()["revertImportJob"]["id"].clone()
    }

    /// Submits `users` with `importUsers` and `options` as an admin; answers the job's id.
    pub async fn submit_job(&self, users: Value, options: Value) -> String {
        let query = "mutation($users: [UserImportInput!]!, $options: ImportOptions) {
            importUsers(users: $users, options: $options) { id }
        }";
        let variables = json!({ "users": users, "options": options });
        let response = self
            .graphql(&self.token(Role::Admin), query, variables)
            .await;
        response.data()["importUsers"]["id"]
            .as_str()
            .expect("a job id")
            .to_owned()
    }

    /// Runs `query` (an `importJob(id: $id)` query) with a viewer token until the job has
    /// a final status, and answers the job; fails the test after three minutes.
    pub async fn finished_job(&self, query: &str, id: &Value) -> Value {
        let token = self.token(Role::Viewer);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
        loop {
            let response = self.graphql(&token, query, json!({ "id": id })).await;
            let job = response.data()["importJob"].clone();
            if !matches!(job["status"].as_str(), Some("QUEUED" | "RUNNING")) {
                return job;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "job {id} did not finish: {job}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A connection of the test's own to the server's database.
    pub async fn connect(&self) -> sea_orm::DatabaseConnection {
        Database::connect(&self.database.url)
            .await
            .expect("test database answers")
    }

    /// Runs one statement straight on the database, for states no request can make.
    pub async fn execute(&self, sql: &str) {
        use sea_orm::ConnectionTrait;

        let db = self.connect().await;
        db.execute_unprepared(sql).await.expect(sql);
        let _ = db.close().await;
    }

    /// How many rows a table holds, read straight from the database.
    /// Every row edge of a job, following the pages of `query`: one that takes `$id`,
    /// `$after` and `$onlyFailed`, and selects `importJob.rows` with `totalCount`,
    /// `pageInfo { hasNextPage endCursor }` and `edges`.
    pub async fn job_rows(&self, query: &str, id: &str, only_failed: bool) -> Vec<Value> {
        let token = self.token(Role::Viewer);
        let mut all = Vec::new();
        let mut after = Value::Null;
        loop {
            let response = self
                .graphql(
                    &token,
                    query,
                    json!({ "id": id, "after": after, "onlyFailed": only_failed }),
                )
                .await;
            let page = &response.data()["importJob"]["rows"];
            all.extend(page["edges"].as_array().unwrap().iter().cloned());
            if page["pageInfo"]["hasNextPage"] != true {
                assert_eq!(page["totalCount"], all.len());
                return all;
            }
            after = page["pageInfo"]["endCursor"].clone();
        }
    }

    /// How many row results a job has stored, over all its chunks.
    pub async fn stored_results(&self, job: &str) -> i64 {
        self.scalar(&format!(
            "SELECT CAST(COALESCE(SUM(row_count), 0) AS BIGINT) AS n FROM import_job_chunks \
             WHERE job_id = {job} AND results IS NOT NULL"
        ))
        .await
    }

    pub async fn count_rows(&self, table: &str) -> i64 {
        self.scalar(&format!("SELECT COUNT(*) AS n FROM {table}"))
            .await
    }

    /// The integer a query's one row holds in its column `n`.
    pub async fn scalar(&self, sql: &str) -> i64 {
        use sea_orm::{ConnectionTrait, Statement};

        let db = self.connect().await;
        let row = db
            .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
            .await
            .unwrap()
            .expect("a row");
        let _ = db.close().await;
        row.try_get::<i64>("", "n").unwrap()
    }

    /// GETs a path with a bearer token.
    pub async fn get_with(&self, path: &str, token: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{}", self.address, path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{}", self.address, path))
            .send()
            .await
            .expect("request sent")
    }
}

impl GraphQLResponse {
    pub async fn read(response: reqwest::Response) -> Self {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body read");
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("HTTP {status}: body is not JSON: {text}"));
        Self {
            status,
            headers,
            body,
        }
    }
}

/// A GraphQL multipart request (the multipart request spec): `query` with its
/// `variables`, and `file` as the upload at the variable `$file`.
fn upload_form(query: &str, mut variables: Value, file: Vec<u8>) -> reqwest::multipart::Form {
    variables["file"] = Value::Null;
    let operations = json!({ "query": query, "variables": variables });
    reqwest::multipart::Form::new()
        .text("operations", operations.to_string())
        .text("map", r#"{"0":["variables.file"]}"#)
        .part(
            "0",
            reqwest::multipart::Part::bytes(file)
                .file_name("users.csv")
                .mime_str("text/csv")
                .expect("a valid type"),
        )
}

/// A database of the test's own: a fresh SQLite file, or a fresh PostgreSQL database that
/// is dropped when the test ends.
pub struct TestDatabase {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    postgres_name: Option<String>,
}

/// The PostgreSQL server the tests use; CI starts it on 127.0.0.1:5432 (trust auth).
pub fn postgres_admin_url() -> String {
    std::env::var("ROSTER_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

impl TestDatabase {
    pub async fn create(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("roster.db").display()
                );
                Self {
                    url,
                    _dir: Some(dir),
                    postgres_name: None,
                }
            }
            Backend::Postgres => {
                let name = format!("roster_test_{}", uuid::Uuid::new_v4().simple());
                let admin = Database::connect(format!("{}/postgres", postgres_admin_url()))
                    .await
                    .expect(
                        "PostgreSQL answers on ROSTER_TEST_POSTGRES_URL (default 127.0.0.1:5432)",
                    );
                admin
                    .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                    .await
                    .expect("test database created");
                let _ = admin.close().await;
                Self {
                    url: format!("{}/{name}", postgres_admin_url()),
                    _dir: None,
                    postgres_name: Some(name),
                }
            }
        }
    }

    /// Drops a PostgreSQL test database now, connections and all.
    pub async fn drop_postgres_now(&self) {
        if let Some(name) = &self.postgres_name {
            drop_postgres(name).await;
        }
    }
}

async fn drop_postgres(name: &str) {
    if let Ok(admin) = Database::connect(format!("{}/postgres", postgres_admin_url())).await {
        let _ = admin
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .await;
        let _ = admin.close().await;
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some(name) = self.postgres_name.take() {
            // Drop runs inside the test's runtime, which cannot be blocked on: clean up from
            // a thread with a runtime of its own.
            let _ = std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("cleanup runtime")
                    .block_on(drop_postgres(&name));
            })
            .join();
        }
    }
}

impl TestApp {
    /// Every stored user, tag, attribute, approver link, SCIM group and learning-track
    /// assignment, read straight from the database: two equal snapshots mean nothing was
    /// written in between.
    pub async fn snapshot(&self) -> String {
        use entity::{
            approver_links, scim_groups, track_assignments, user_attributes, user_tags, users,
        };
        use sea_orm::{EntityTrait, QueryOrder};

        let db = self.connect().await;
        let users = users::Entity::find()
            .order_by_asc(users::Column::Id)
            .all(&db)
            .await
            .unwrap();
        let tags = user_tags::Entity::find()
            .order_by_asc(user_tags::Column::UserId)
            .order_by_asc(user_tags::Column::Tag)
            .all(&db)
            .await
            .unwrap();
        let attributes = user_attributes::Entity::find()
            .order_by_asc(user_attributes::Column::UserId)
            .order_by_asc(user_attributes::Column::Name)
            .all(&db)
            .await
            .unwrap();
        let links = approver_links::Entity::find()
            .order_by_asc(approver_links::Column::UserId)
            .order_by_asc(approver_links::Column::ApproverId)
            .order_by_asc(approver_links::Column::Label)
            .all(&db)
            .await
            .unwrap();
        let groups = scim_groups::Entity::find()
            .order_by_asc(scim_groups::Column::Id)
            .all(&db)
            .await
            .unwrap();
        let assignments = track_assignments::Entity::find()
            .order_by_asc(track_assignments::Column::UserId)
            .order_by_asc(track_assignments::Column::TrackId)
            .all(&db)
            .await
            .unwrap();
        let _ = db.close().await;
        format!("{users:?}\n{tags:?}\n{attributes:?}\n{links:?}\n{groups:?}\n{assignments:?}")
    }

    /// The stored row of one user of the default tenant, by external id.
    pub async fn stored_user(&self, external_id: &str) -> Option<entity::users::Model> {
        use entity::users;
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

        let db = self.connect().await;
        let user = users::Entity::find()
            .filter(users::Column::ExternalId.eq(external_id))
            .one(&db)
            .await
            .unwrap();
        let _ = db.close().await;
        user
    }
}

impl GraphQLResponse {
    /// `extensions.fieldErrors` of the first error as `(field, code)` pairs.
    pub fn field_errors(&self) -> Vec<(String, String)> {
        self.body["errors"][0]["extensions"]["fieldErrors"]
            .as_array()
            .map(|errors| {
                errors
                    .iter()
                    .map(|e| {
                        (
                            e["field"].as_str().unwrap_or_default().to_owned(),
                            e["code"].as_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `data`, after checking that there were no errors.
    pub fn data(&self) -> &Value {
        assert!(
            self.body.get("errors").is_none(),
            "unexpected errors: {}",
            self.body
        );
        &self.body["data"]
    }
}

/// The peak resident memory of a process so far, in bytes (Linux).
pub fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

/// Checks that `roster ARGS --help` names each of `vars`, and that every flag it lists but
/// `-h, --help` has an environment variable. A flag's line starts with `--`, or with a short
/// flag such as `-q, --quiet`; the `- value:` lines of a flag's choices are not flags.
pub fn assert_every_flag_has_an_environment_variable(args: &[&str], vars: &[&str]) {
    let output = roster_command().args(args).arg("--help").output().unwrap();
    let help = String::from_utf8(output.stdout).unwrap();
    for var in vars {
        assert!(
            help.contains(&format!("[env: {var}")),
            "{var} missing from:\n{help}"
        );
    }
    let flags = help
        .lines()
        .map(str::trim_start)
        .filter(|line| line.starts_with("--") || line.get(2..4) == Some(", "))
        .filter(|line| !line.starts_with("-h, --help"))
        .count();
    let envs = help.matches("[env: ").count();
    assert_eq!(
        flags, envs,
        "every flag but -h/--help has an env variable:\n{help}"
    );
}

/// The `roster` binary, without key settings inherited from the environment.
pub fn roster_command() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_roster"));
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

/// The real `roster serve` binary in a process of its own, without a configured key, so it
/// prints its URL and an admin token. Process-wide state (its `/metrics`) is its alone.
pub struct ServerProcess {
    pub base: String,
    pub admin_token: String,
    lines: std::sync::mpsc::Receiver<String>,
    child: std::process::Child,
}

impl ServerProcess {
    pub fn start(database_url: &str, env: &[(&str, &str)]) -> Self {
        use std::io::{BufRead, BufReader};

        let mut child = roster_command()
            .args([
                "serve",
                "--addr",
                "127.0.0.1:0",
                "--database-url",
                database_url,
            ])
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("the roster binary starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (lines_tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        // With a configured secret the server prints no token: the test signs its own.
        let secret = env
            .iter()
            .find(|(name, _)| *name == "ROSTER_JWT_SECRET")
            .map(|(_, secret)| *secret);
        let mut server = Self {
            base: String::new(),
            admin_token: secret
                .map(|secret| {
                    Authenticator::hs256(secret.as_bytes(), None, None)
                        .mint("admin", Role::Admin, None, Duration::from_secs(3600))
                        .expect("a token")
                })
                .unwrap_or_default(),
            lines,
            child,
        };
        while server.base.is_empty() || server.admin_token.is_empty() {
            let line = server.next_line();
            if let Some(address) = line.strip_prefix("Roster is listening on ") {
                server.base = address.trim().to_owned();
            }
            if line.starts_with("Admin token") {
                server.admin_token = server.next_line().trim().to_owned();
            }
        }
        assert!(
            !server.base.is_empty(),
            "the URL is printed before the tokens"
        );
        server
    }

    /// Stops the process at once, as a crash would (SIGKILL).
    pub fn kill(&mut self) {
        self.child.kill().expect("the server is killed");
        let _ = self.child.wait();
    }

    /// The next line the server prints; fails the test after 30 seconds of silence.
    pub fn next_line(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(30))
            .expect("the server prints before the deadline")
    }

    /// POSTs a GraphQL operation with the printed admin token.
    pub async fn graphql(&self, query: &str, variables: Value) -> GraphQLResponse {
        let response = reqwest::Client::new()
            .post(format!("{}/graphql", self.base))
            .bearer_auth(&self.admin_token)
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .expect("request sent");
        GraphQLResponse::read(response).await
    }

    /// Runs `query` (an `importJob(id: $id)` query) until the job has a final status, and
    /// answers the job; fails the test after `patience`.
    pub async fn finished_job(&self, query: &str, id: &str, patience: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let job = self.graphql(query, json!({ "id": id })).await.data()["importJob"].clone();
            if job["status"] != "RUNNING" && job["status"] != "QUEUED" {
                return job;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "not finished: {job}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// POSTs a GraphQL multipart request with the admin token and `file` at `$file`.
    pub async fn upload(&self, query: &str, variables: Value, file: Vec<u8>) -> GraphQLResponse {
        let response = reqwest::Client::new()
            .post(format!("{}/graphql", self.base))
            .bearer_auth(&self.admin_token)
            .multipart(upload_form(query, variables, file))
            .send()
            .await
            .expect("request sent");
        GraphQLResponse::read(response).await
    }

    /// Imports each user with `importUser`, in order; any error fails the test.
    pub async fn import_users(&self, users: impl IntoIterator<Item = Value>) {
        let import = "mutation($u: UserImportInput!) { importUser(user: $u) { action } }";
        for user in users {
            self.graphql(import, json!({ "u": user })).await.data();
        }
    }

    /// Runs one operation and counts the SQL statements the server ran for it, from its own
    /// `/metrics`; returns the count and the operation's `data` (errors fail the test).
    pub async fn statements_for(&self, query: &str, variables: Value) -> (f64, Value) {
        const SERIES: &str = "roster_db_statements_total{failed=\"false\"}";
        let before = self.metric(SERIES).await;
        let response = self.graphql(query, variables).await;
        let after = self.metric(SERIES).await;
        (after - before, response.data().clone())
    }

    /// The value of an unlabelled-or-labelled counter line of `/metrics` that starts with
    /// `series` (e.g. `roster_db_statements_total{failed="false"}`), 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = reqwest::get(format!("{}/metrics", self.base))
            .await
            .expect("metrics answer")
            .text()
            .await
            .expect("metrics body");
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or(0.0)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A user as sent, with the fields a user needs: `{id}@example.com`, first name `A`, last
/// name `id`.
pub fn person(id: &str) -> Value {
    json!({
        "externalId": id, "email": format!("{id}@example.com"), "firstName": "A", "lastName": id,
    })
}

/// The `i`th user of a staff feed (`{prefix}{i}`): a department, two tags (one of five
/// teams) and a numeric attribute, as HR systems send them.
pub fn staff(prefix: &str, i: usize) -> Value {
    json!({
        "externalId": format!("{prefix}{i}"), "email": format!("{prefix}{i}@example.com"),
        "firstName": prefix.to_uppercase(), "lastName": format!("{i}"), "department": "Sales",
        "tags": ["staff", format!("team-{}", i % 5)],
        "attributes": [{ "name": "grade", "value": format!("{}", i % 4), "type": "NUMBER" }],
    })
}
