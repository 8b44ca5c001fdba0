//! Health, readiness and metrics.

use roster::auth::Role;
use serde_json::json;

use crate::helpers::{Backend, TestDatabase, db_test, spawn_app};

db_test! {
    async fn healthz_and_readyz_answer(app) {
        let health = app.get("/healthz").await;
        assert_eq!(health.status(), 200);
        let ready = app.get("/readyz").await;
        assert_eq!(ready.status(), 200);
        assert_eq!(ready.text().await.unwrap(), "ready");
    }
}

#[tokio::test]
async fn readyz_is_503_when_the_database_is_gone_while_healthz_stays_200() {
    let app = spawn_app(Backend::Postgres).await;
    assert_eq!(app.get("/readyz").await.status(), 200);

    app.database.drop_postgres_now().await;

    assert_eq!(app.get("/readyz").await.status(), 503);
    assert_eq!(app.get("/healthz").await.status(), 200);
}

#[tokio::test]
async fn metrics_count_requests_and_observe_latency() {
    let app = spawn_app(Backend::Sqlite).await;
    app.graphql(&app.token(Role::Viewer), "{ viewer { role } }", json!({}))
        .await;

    let metrics = app.get("/metrics").await;
    assert_eq!(metrics.status(), 200);
    assert!(
        metrics
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/plain"))
    );
    let text = metrics.text().await.unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("roster_http_requests_total{")
                && l.contains("route=\"/graphql\"")
                && l.contains("status=\"200\"")),
        "{text}"
    );
    assert!(
        text.contains("roster_http_request_duration_seconds_bucket{"),
        "latency is a histogram: {text}"
    );
}

/// A pool on `database`, connected as the server connects.
async fn connected(database: &TestDatabase) -> sea_orm::DatabaseConnection {
    roster::db::connect(&roster::config::DatabaseConfig {
        database_url: database.url.clone(),
        db_max_connections: 2,
    })
    .await
    .expect("connected")
}

/// A bulk import grows its tables many times over while it runs: the manager-chain
/// statement is planned for the tables as they are, not from a plan cached while they were
/// small; every other statement, and every foreign-key check, keeps the plan its
/// connection cached.
#[tokio::test]
async fn postgresql_plans_each_run_only_where_asked() {
    use sea_orm::{ConnectionTrait, TransactionTrait};
    let database = TestDatabase::create(Backend::Postgres).await;
    let db = connected(&database).await;
    async fn mode(conn: &impl ConnectionTrait) -> Result<String, sea_orm::DbErr> {
        let row = conn
            .query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DatabaseBackend::Postgres,
                "SHOW plan_cache_mode",
            ))
            .await?
            .expect("a row");
        row.try_get_by_index(0)
    }
    assert_eq!(mode(&db).await.expect("shown"), "auto");
    let txn = db.begin().await.expect("begun");
    let inside = roster::db::planned_per_run(&txn, mode(&txn))
        .await
        .expect("shown");
    assert_eq!(inside, "force_custom_plan");
    assert_eq!(mode(&txn).await.expect("shown"), "auto");
    txn.commit().await.expect("committed");
}

/// A numeric setting of a server's SQLite connection.
async fn sqlite_pragma(name: &str) -> i64 {
    use sea_orm::ConnectionTrait;
    let database = TestDatabase::create(Backend::Sqlite).await;
    let db = connected(&database).await;
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DatabaseBackend::Sqlite,
            format!("PRAGMA {name}"),
        ))
        .await
        .expect("read")
        .expect("a row");
    row.try_get_by_index(0).expect("a number")
}

/// SQLite copies its write-ahead log into the database file every `SQLITE_WAL_PAGES`
/// pages, not every thousand: a bulk import rewrites the same index pages chunk after chunk.
#[tokio::test]
async fn sqlite_connections_copy_the_log_back_in_large_steps() {
    let pages = sqlite_pragma("wal_autocheckpoint").await;
    assert_eq!(pages, i64::from(roster::db::SQLITE_WAL_PAGES));
}

/// SQLite keeps a statement's journal (the pages a multi-row insert may have to undo) and
/// its temporary sorts in memory, not in files it writes and reads back.
#[tokio::test]
async fn sqlite_connections_keep_temporary_data_in_memory() {
    // 2 is MEMORY; 0, the build's default, writes them to files.
    assert_eq!(sqlite_pragma("temp_store").await, 2);
}

/// A write that waits out SQLite's busy timeout behind another transaction (a `dryRun` or
/// `atomic` job holds the lock until it ends) is a `TIMEOUT` that says so, and writes
/// nothing.
#[tokio::test]
async fn a_write_that_finds_sqlite_busy_is_a_timeout_and_writes_nothing() {
    let app = spawn_app(Backend::Sqlite).await;
    let db = app.connect().await;
    let holder = roster::db::begin_write(&db).await.expect("the write lock");
    let mutation = "mutation { importUser(user: { externalId: \"b1\", \
                    email: \"b1@example.com\", firstName: \"B\", lastName: \"One\" }) { action } }";

    let response = app
        .graphql(&app.token(Role::Admin), mutation, json!({}))
        .await;

    assert_eq!(
        response.error_code(),
        Some("TIMEOUT"),
        "{:?}",
        response.body
    );
    let message = response.body["errors"][0]["message"].as_str().unwrap_or("");
    assert!(
        message.contains("busy") && message.contains("try again"),
        "{message}"
    );
    holder.rollback().await.expect("released");
    let _ = db.close().await;
    assert_eq!(app.count_rows("users").await, 0);
    // Once the lock is free, the same write goes through.
    let response = app
        .graphql(&app.token(Role::Admin), mutation, json!({}))
        .await;
    assert_eq!(response.data()["importUser"]["action"], "CREATED");
}

/// A row of `users` as SQL: `id` (none: the next), `externalId`, email and login keys.
fn user_row(id: Option<i64>, external_id: &str, email: &str, login: &str) -> String {
    let (column, value) = match id {
        Some(id) => ("id, ", format!("{id}, ")),
        None => ("", String::new()),
    };
    format!(
        "INSERT INTO users ({column}tenant, source, external_id, email, email_key, login, \
         login_key, first_name, last_name, active, search_key, created_at, updated_at) \
         VALUES ({value}'acme', 'hr', '{external_id}', 'x', '{email}', 'x', '{login}', 'A', \
         'B', true, 'a', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')"
    )
}

db_test! {
    /// A unique key of `users` found taken is told by its constraint, on both databases
    /// (PostgreSQL names the constraint in its error, SQLite only its columns).
    async fn a_taken_unique_key_of_users_is_told_by_its_constraint(app) {
        use roster::db::{UsersKey, is_busy, taken_users_key};
        use sea_orm::ConnectionTrait;
        let db = app.connect().await;
        db.execute_unprepared(&user_row(None, "1", "a@x", "a")).await.expect("the first user");
        for (row, key) in [
            (user_row(None, "2", "a@x", "b"), UsersKey::Email),
            (user_row(None, "2", "b@x", "a"), UsersKey::Login),
            (user_row(None, "1", "b@x", "b"), UsersKey::ExternalId),
        ] {
            let error = db.execute_unprepared(&row).await.expect_err("taken");
            assert_eq!(taken_users_key(&error), Some(key), "{error}");
            assert!(!is_busy(&error), "{error}");
        }
        let _ = db.close().await;
    }
}

db_test! {
    /// A taken key that is none of the unique keys of `users` (its id, or another table's
    /// key over columns of the same names) is a unique violation, but no key of `users`.
    async fn a_taken_key_of_another_kind_is_no_key_of_users(app) {
        use roster::db::{is_unique_violation, taken_users_key};
        use sea_orm::ConnectionTrait;
        let db = app.connect().await;
        db.execute_unprepared(&user_row(Some(7), "1", "a@x", "a")).await.expect("a user");
        db.execute_unprepared(
            "CREATE TABLE old_users (tenant TEXT, email_key TEXT, UNIQUE (tenant, email_key))",
        )
        .await
        .expect("a table");
        db.execute_unprepared("INSERT INTO old_users VALUES ('acme', 'a@x')")
            .await
            .expect("a row");
        for row in [
            user_row(Some(7), "2", "b@x", "b"),
            "INSERT INTO old_users VALUES ('acme', 'a@x')".to_owned(),
        ] {
            let error = db.execute_unprepared(&row).await.expect_err("taken");
            assert!(is_unique_violation(&error), "{error}");
            assert_eq!(taken_users_key(&error), None, "{error}");
        }
        let _ = db.close().await;
    }
}

/// With JSON logs, a job's lines can be followed as one story: each chunk's line carries
/// the job's id and the chunk's first row and pass, as spans.
#[tokio::test]
async fn a_jobs_log_lines_carry_its_id_and_their_chunk() {
    use crate::helpers::ServerProcess;
    let database = TestDatabase::create(Backend::Sqlite).await;
    let server = ServerProcess::start(
        &database.url,
        &[
            ("ROSTER_LOG_FORMAT", "json"),
            ("RUST_LOG", "info,roster=debug"),
            ("ROSTER_JOB_CHUNK", "2"),
        ],
    );
    let users: Vec<serde_json::Value> = (0..5)
        .map(|i| {
            let mut user = crate::helpers::person(&format!("l{i}"));
            if i > 0 {
                user["managerExternalId"] = json!(format!("l{}", i - 1));
            }
            user
        })
        .collect();
    let submitted = server
        .graphql(
            "mutation($u: [UserImportInput!]!) { importUsers(users: $u) { id } }",
            json!({ "u": users }),
        )
        .await;
    let id = submitted.data()["importUsers"]["id"]
        .as_str()
        .expect("a job")
        .to_owned();
    let mut chunks = Vec::new();
    loop {
        let line = server.next_line();
        let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        match event["message"].as_str() {
            Some("chunk committed") => chunks.push(event),
            Some("job finished") => break,
            _ => {}
        }
    }
    let job: i64 = id.parse().expect("a numeric id");
    let mut seen = Vec::new();
    for event in &chunks {
        let spans = event["spans"].as_array().expect("the event's spans");
        assert_eq!(spans[0]["name"], "job", "{event}");
        assert_eq!(spans[0]["job_id"], job, "{event}");
        let chunk = spans.last().expect("the chunk's span");
        assert_eq!(chunk["name"], "chunk", "{event}");
        seen.push((
            chunk["pass"].as_str().unwrap_or("").to_owned(),
            chunk["chunk"].clone(),
        ));
    }
    let users: Vec<_> = seen.iter().filter(|(pass, _)| pass == "users").collect();
    assert_eq!(users.len(), 3, "5 rows in chunks of 2: {seen:?}");
    for first in [0, 2, 4] {
        assert!(
            users.iter().any(|(_, chunk)| chunk == &json!(first)),
            "{seen:?}"
        );
    }
    assert!(seen.iter().any(|(pass, _)| pass == "links"), "{seen:?}");
}
