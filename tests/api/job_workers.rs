//! One job on many workers: the chunks of its first pass are claimed by every worker of
//! every process sharing the database, and the job ends as running its rows in order
//! would have left it.

use std::time::Duration;

use sea_orm::{ConnectionTrait, Database, FromQueryResult, JsonValue, Statement};
use serde_json::{Value, json};

use crate::helpers::{Backend, ServerProcess, TEST_SECRET, TestApp, TestDatabase, db_test, staff};

const SUBMIT: &str = "mutation($users: [UserImportInput!]!, $options: ImportOptions) {
    importUsers(users: $users, options: $options) { id }
}";

const JOB: &str = "query($id: ID!) { importJob(id: $id) {
    status processed summary { created updated unchanged skipped failed blocked }
} }";

const ROWS: &str = "query($id: ID!, $after: String) { importJob(id: $id) {
    rows(first: 500, after: $after) {
        pageInfo { hasNextPage endCursor }
        edges { node { index lookupKey action success errors { field code } } }
    }
} }";

const REVERT: &str = "mutation($id: ID!) { revertImportJob(id: $id) { id } }";

/// Person `i` of a feed: tags, an attribute, and a manager 700 rows later (in another
/// chunk of 500).
fn person(i: usize) -> Value {
    let mut person = staff("w", i);
    if i + 700 < 20_000 {
        person["managerExternalId"] = json!(format!("w{}", i + 700));
    }
    person
}

/// 20,000 rows whose chunks meet: `w100` is named again 15,000 rows later (created, then
/// updated), and row 12,000 sends the email of `w200` (it fails). Two more rows fail:
/// their managers are `w12000` and `w15000`, which do not exist.
fn feed() -> Vec<Value> {
    let mut rows: Vec<Value> = (0..20_000).map(person).collect();
    rows[15_000] = person(100);
    rows[15_000]["department"] = json!("Support");
    rows[12_000]["email"] = json!("w200@example.com");
    rows
}

fn env(workers: &'static str) -> [(&'static str, &'static str); 5] {
    [
        ("ROSTER_JWT_SECRET", TEST_SECRET),
        ("ROSTER_JOB_CHUNK", "500"),
        ("ROSTER_JOB_POLL", "50ms"),
        ("ROSTER_JOB_LEASE", "2s"),
        ("ROSTER_WORKERS", workers),
    ]
}

async fn submit(server: &ServerProcess, users: &[Value]) -> String {
    let response = server
        .graphql(SUBMIT, json!({ "users": users, "options": {} }))
        .await;
    response.data()["importUsers"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn finished(server: &ServerProcess, id: &str) -> Value {
    server.finished_job(JOB, id, Duration::from_secs(600)).await
}

/// Every result of a job, in order.
async fn rows(server: &ServerProcess, id: &str) -> Vec<Value> {
    let mut rows = Vec::new();
    let mut after = Value::Null;
    loop {
        let page = server
            .graphql(ROWS, json!({ "id": id, "after": after }))
            .await;
        let page = page.data()["importJob"]["rows"].clone();
        rows.extend(
            page["edges"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["node"].clone()),
        );
        if page["pageInfo"]["hasNextPage"] != true {
            return rows;
        }
        after = page["pageInfo"]["endCursor"].clone();
    }
}

/// The users of a database with their tags, attributes and approvers, named by their
/// keys (ids differ between databases).
async fn stored(url: &str) -> Vec<Vec<JsonValue>> {
    let db = Database::connect(url).await.unwrap();
    let mut tables = Vec::new();
    for sql in [
        "SELECT source, external_id, email, first_name, last_name, department, active \
         FROM users ORDER BY source, external_id",
        "SELECT u.external_id, t.tag FROM user_tags t JOIN users u ON u.id = t.user_id \
         ORDER BY u.external_id, t.tag",
        "SELECT u.external_id, a.name, a.value FROM user_attributes a \
         JOIN users u ON u.id = a.user_id ORDER BY u.external_id, a.name",
        "SELECT u.external_id AS user_key, m.external_id AS approver, l.label \
         FROM approver_links l JOIN users u ON u.id = l.user_id \
         JOIN users m ON m.id = l.approver_id ORDER BY u.external_id, m.external_id, l.label",
    ] {
        let statement = Statement::from_string(db.get_database_backend(), sql);
        tables.push(
            JsonValue::find_by_statement(statement)
                .all(&db)
                .await
                .unwrap(),
        );
    }
    let _ = db.close().await;
    tables
}

/// Chunks of the first pass a process claimed and that are written (a worker's claims
/// are named after its process id).
async fn chunks_written(url: &str, server: &ServerProcess) -> i64 {
    scalar(
        url,
        &format!(
            "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM import_job_claims c \
             JOIN import_job_chunks k ON k.job_id = c.job_id AND k.first_idx = c.first_idx \
             WHERE c.owner LIKE '{}-%' AND k.results IS NOT NULL",
            server.pid()
        ),
    )
    .await
}

/// Chunks a process holds and has not written.
async fn chunks_held(url: &str, server: &ServerProcess) -> i64 {
    scalar(
        url,
        &format!(
            "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM import_job_claims c \
             JOIN import_job_chunks k ON k.job_id = c.job_id AND k.first_idx = c.first_idx \
             WHERE c.owner LIKE '{}-%' AND k.results IS NULL",
            server.pid()
        ),
    )
    .await
}

async fn scalar(url: &str, sql: &str) -> i64 {
    let db = Database::connect(url).await.unwrap();
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
        .unwrap();
    let _ = db.close().await;
    row.try_get("", "n").unwrap()
}

/// A job's summary, results and users, run by one process alone.
async fn run_alone(users: &[Value]) -> (Value, Vec<Value>, Vec<Vec<JsonValue>>) {
    let database = TestDatabase::create(Backend::Postgres).await;
    let server = ServerProcess::start(&database.url, &env("1"));
    let id = submit(&server, users).await;
    let job = finished(&server, &id).await;
    (job, rows(&server, &id).await, stored(&database.url).await)
}

#[tokio::test]
async fn a_job_taken_by_two_processes_ends_as_one_process_leaves_it() {
    let feed = feed();
    let (alone, alone_rows, alone_users) = run_alone(&feed).await;
    assert_eq!(alone["summary"]["failed"], 3, "{alone}");

    // Stored by a process without workers, its first chunk held until every chunk that
    // need not wait for it is written: all but the three that name its users.
    let database = TestDatabase::create(Backend::Postgres).await;
    let id = submit(&ServerProcess::start(&database.url, &env("0")), &feed).await;
    execute(&database.url, &held_first_chunk(&id)).await;
    let servers = [
        ServerProcess::start(&database.url, &env("2")),
        ServerProcess::start(&database.url, &env("2")),
    ];
    let_go_once_written(&database.url, &id, 37).await;
    let job = finished(&servers[0], &id).await;

    assert_eq!(job, alone);
    let rows = rows(&servers[1], &id).await;
    assert_eq!(rows[100]["action"], "CREATED");
    assert_eq!(rows[15_000]["action"], "UPDATED");
    assert!(rows == alone_rows, "the results differ");
    assert!(
        stored(&database.url).await == alone_users,
        "the users differ"
    );
    for server in &servers {
        assert!(
            chunks_written(&database.url, server).await > 0,
            "both processes wrote chunks"
        );
    }
}

async fn execute(url: &str, sql: &str) {
    let db = Database::connect(url).await.unwrap();
    db.execute_unprepared(sql).await.unwrap();
    let _ = db.close().await;
}

#[tokio::test]
async fn a_process_killed_mid_job_leaves_its_chunks_to_the_other() {
    let database = TestDatabase::create(Backend::Postgres).await;
    let survivor = ServerProcess::start(&database.url, &env("2"));
    let feed: Vec<Value> = (0..20_000).map(person).collect();
    let id = submit(&survivor, &feed).await;
    // The job is the survivor's; the other process helps, and dies holding chunks.
    let mut killed = ServerProcess::start(&database.url, &env("2"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while chunks_written(&database.url, &killed).await < 2
        || chunks_held(&database.url, &killed).await == 0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the process took no chunk"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    killed.kill();
    let held = chunks_held(&database.url, &killed).await;

    let job = finished(&survivor, &id).await;
    assert!(held > 0, "killed holding chunks");
    assert_eq!(job["status"], "COMPLETED", "{job}");
    assert_eq!(job["processed"], 20_000);
    assert_eq!(
        job["summary"]["created"], 20_000,
        "no row was applied twice: {job}"
    );
    let count = survivor
        .graphql("{ users { totalCount } }", json!({}))
        .await;
    assert_eq!(count.data()["users"]["totalCount"], 20_000);
    assert_eq!(rows(&survivor, &id).await.len(), 20_000);
}

#[tokio::test]
async fn a_job_written_by_two_processes_is_reverted_and_its_revert_too() {
    let database = TestDatabase::create(Backend::Postgres).await;
    let servers = [
        ServerProcess::start(&database.url, &env("2")),
        ServerProcess::start(&database.url, &env("2")),
    ];
    let before = stored(&database.url).await;
    let id = submit(&servers[0], &feed()).await;
    finished(&servers[0], &id).await;
    let after = stored(&database.url).await;

    let revert = servers[1].graphql(REVERT, json!({ "id": id })).await;
    let revert = revert.data()["revertImportJob"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(finished(&servers[1], &revert).await["status"], "COMPLETED");
    assert!(stored(&database.url).await == before, "the job is undone");

    let again = servers[0].graphql(REVERT, json!({ "id": revert })).await;
    let again = again.data()["revertImportJob"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(finished(&servers[0], &again).await["status"], "COMPLETED");
    assert!(
        stored(&database.url).await == after,
        "the job is applied again"
    );
}

/// A job of 2,000 rows in four chunks of 500; `rows` replaces rows of the plain feed.
fn small_job(rows: &[(usize, Value)]) -> Vec<Value> {
    let mut users: Vec<Value> = (0..2_000)
        .map(|i| {
            let mut row = person(i);
            row.as_object_mut().unwrap().remove("managerExternalId");
            row
        })
        .collect();
    for (at, row) in rows {
        users[*at] = row.clone();
    }
    users
}

/// The claim of a worker that holds the first chunk of job `id` until the test lets go
/// of it ([`LET_GO`]): meanwhile the other workers take the chunks they may.
fn held_first_chunk(id: &str) -> String {
    let until = chrono::Utc::now().timestamp_millis() + 600_000;
    format!(
        "INSERT INTO import_job_claims (job_id, first_idx, owner, lease_until, in_order) \
         VALUES ({id}, 0, 'elsewhere', {until}, FALSE)"
    )
}

/// Lets go of the claim [`held_first_chunk`] made.
const LET_GO: &str = "UPDATE import_job_claims SET owner = NULL WHERE owner = 'elsewhere'";

/// Waits until `count` chunks of job `id` are written (and no more), then lets go of its
/// first chunk.
async fn let_go_once_written(url: &str, id: &str, count: i64) {
    let_go_once(url, id, count, None).await;
}

/// [`let_go_once_written`], once the chunk from `in_order` is also marked to run in order.
async fn let_go_once(url: &str, id: &str, count: i64, in_order: Option<i32>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    loop {
        let n = scalar(
            url,
            &format!(
                "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM import_job_chunks \
                 WHERE job_id = {id} AND results IS NOT NULL"
            ),
        )
        .await;
        assert!(
            n <= count,
            "{n} chunks written while the first is held, not {count}"
        );
        let marked = match in_order {
            None => true,
            Some(first_idx) => {
                scalar(
                    url,
                    &format!(
                        "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM import_job_claims \
                         WHERE job_id = {id} AND first_idx = {first_idx} AND in_order"
                    ),
                )
                .await
                    == 1
            }
        };
        if n == count && marked {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{n} chunks written, not {count}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    execute(url, LET_GO).await;
}

fn named(external_id: &str, email: &str) -> Value {
    json!({ "externalId": external_id, "email": email, "firstName": "N", "lastName": external_id })
}

/// Runs a job on four workers while its first chunk is held by another until the chunks
/// that need not wait for it (the second and the fourth) are written, and with
/// `in_order`, until the third ran out of order and was sent back to run in order.
/// Answers its results.
async fn run_first_chunk_last(app: &TestApp, users: &[Value], in_order: bool) -> Vec<Value> {
    let id = app.submit_job(json!(users), json!({})).await;
    app.execute(&held_first_chunk(&id)).await;
    app.spawn_peer(|config| config.jobs.workers = 4).await;
    let third = in_order.then_some(1_000);
    let_go_once(&app.database.url, &id, 2, third).await;
    app.finished_job(JOB, &json!(id)).await;
    nodes(app.job_rows(ROWS_BRIEF, &id, false).await)
}

/// A server whose own workers are none: jobs wait for [`run_first_chunk_last`].
async fn without_workers(backend: Backend) -> TestApp {
    crate::helpers::spawn_app_with(backend, |config| config.jobs.workers = 0).await
}

async fn import_user(app: &TestApp, user: Value) {
    let import = "mutation($u: UserImportInput!) { importUser(user: $u) { action } }";
    let token = app.token(roster::auth::Role::Admin);
    app.graphql(&token, import, json!({ "u": user }))
        .await
        .data();
}

fn nodes(edges: Vec<Value>) -> Vec<Value> {
    edges.into_iter().map(|edge| edge["node"].clone()).collect()
}

const ROWS_BRIEF: &str =
    "query($id: ID!, $after: String, $onlyFailed: Boolean) { importJob(id: $id) {
    rows(first: 500, after: $after, onlyFailed: $onlyFailed) {
        totalCount pageInfo { hasNextPage endCursor }
        edges { node { index action success errors { field code } } }
    }
} }";

fn action(rows: &[Value], index: usize) -> &Value {
    &rows[index]["action"]
}

async fn user_named_twice(backend: Backend) {
    let app = without_workers(backend).await;
    let mut again = named("twice", "twice@example.com");
    again["department"] = json!("Support");
    let job = small_job(&[(10, named("twice", "twice@example.com")), (1_200, again)]);

    let rows = run_first_chunk_last(&app, &job, false).await;

    assert_eq!(action(&rows, 10), "CREATED");
    assert_eq!(action(&rows, 1_200), "UPDATED");
    let user = app.stored_user("twice").await.unwrap();
    assert_eq!(user.department.as_deref(), Some("Support"));
}

crate::helpers::each_backend!(a_user_named_in_two_chunks_is_created_then_updated_by_any_worker => user_named_twice);

async fn email_freed_later(backend: Backend) {
    let app = without_workers(backend).await;
    import_user(&app, named("holder", "held@example.com")).await;
    // Row 10 wants the email its holder gives up only at row 1,200: in order, it fails.
    // Row 1,200's chunk, run before row 10's, is sent back to run in order.
    let job = small_job(&[
        (10, named("wants", "held@example.com")),
        (1_200, named("holder", "moved@example.com")),
    ]);

    let rows = run_first_chunk_last(&app, &job, true).await;

    assert_eq!(rows[10]["success"], false, "{}", rows[10]);
    assert_eq!(rows[10]["errors"][0]["code"], "TAKEN");
    assert_eq!(action(&rows, 1_200), "UPDATED");
    assert!(app.stored_user("wants").await.is_none());
}

crate::helpers::each_backend!(a_chunk_that_frees_an_email_waits_for_earlier_rows_that_want_it => email_freed_later);

async fn email_freed_earlier(backend: Backend) {
    let app = without_workers(backend).await;
    import_user(&app, named("holder", "held@example.com")).await;
    // Row 10 gives the email up; row 1,200 takes it: in order, both succeed. Row 1,200's
    // chunk, run before row 10's, is sent back to run in order.
    let job = small_job(&[
        (10, named("holder", "moved@example.com")),
        (1_200, named("wants", "held@example.com")),
    ]);

    let rows = run_first_chunk_last(&app, &job, true).await;

    assert_eq!(action(&rows, 10), "UPDATED");
    assert_eq!(action(&rows, 1_200), "CREATED", "{}", rows[1_200]);
}

crate::helpers::each_backend!(a_row_that_wants_an_email_waits_for_the_earlier_chunk_that_frees_it => email_freed_earlier);

async fn chunks_without_keys(backend: Backend) {
    let app = without_workers(backend).await;
    let mut again = named("twice", "twice@example.com");
    again["department"] = json!("Support");
    let job = small_job(&[(10, named("twice", "twice@example.com")), (1_200, again)]);
    let id = app.submit_job(json!(job), json!({})).await;
    // As a job stored before chunks had keys.
    app.execute("UPDATE import_job_chunks SET keys = NULL")
        .await;
    app.execute(&held_first_chunk(&id)).await;

    app.spawn_peer(|config| config.jobs.workers = 4).await;
    // Without keys, no chunk may pass the first.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let written = app
        .scalar(&format!(
            "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM import_job_chunks \
         WHERE job_id = {id} AND results IS NOT NULL"
        ))
        .await;
    assert_eq!(written, 0);
    app.execute(LET_GO).await;
    app.finished_job(JOB, &json!(id)).await;

    let rows = nodes(app.job_rows(ROWS_BRIEF, &id, false).await);
    assert_eq!(action(&rows, 10), "CREATED");
    assert_eq!(action(&rows, 1_200), "UPDATED");
}

crate::helpers::each_backend!(chunks_stored_without_keys_run_in_order => chunks_without_keys);

db_test! {
    async fn a_job_is_written_by_every_worker_of_a_process(app) {
        let users: Vec<Value> = (0..10_000).map(person).collect();
        let id = app.submit_job(json!(users), json!({})).await;
        app.finished_job(JOB, &json!(id)).await;
        let writers = app.scalar(&format!(
            "SELECT CAST(COUNT(DISTINCT c.owner) AS BIGINT) AS n FROM import_job_claims c \
             JOIN import_job_chunks k ON k.job_id = c.job_id AND k.first_idx = c.first_idx \
             WHERE c.job_id = {id} AND k.results IS NOT NULL"
        )).await;
        assert_eq!(writers, 2, "the test server's two workers both wrote chunks");
    }
}
