//! What a job writes and reads, row by row: counted by triggers in the database itself,
//! or shown by what the job no longer needs to read.

use roster::auth::Role;
use serde_json::{Value, json};

use crate::helpers::{TestApp, db_test, staff};

const JOB: &str = "query($id: ID!) { importJob(id: $id) {
    status total summary { created updated unchanged failed }
} }";

const FAILED: &str = "query($id: ID!, $after: String, $onlyFailed: Boolean) { importJob(id: $id) {
    rows(first: 100, after: $after, onlyFailed: $onlyFailed) {
        totalCount pageInfo { endCursor } edges { node { index action } }
    }
} }";

/// The tables that hold users and what a job keeps of them.
const TABLES: [&str; 9] = [
    "users",
    "user_tags",
    "user_attributes",
    "approver_links",
    "track_assignments",
    "import_job_images",
    "import_job_chunks",
    "import_job_keys",
    "import_job_deactivations",
];

/// Person `i` of a feed: tags, attributes and a manager (the person ten before).
fn person(i: usize) -> Value {
    let mut person = staff("w", i);
    if i >= 10 {
        person["managerExternalId"] = json!(format!("w{}", i - 10));
    }
    person
}

async fn import(app: &TestApp, users: Value, options: Value) -> (String, Value) {
    let id = app.submit_job(users, options).await;
    let job = app.finished_job(JOB, &json!(id)).await;
    (id, job)
}

/// From now on, every row inserted, updated or deleted in [`TABLES`] adds a row naming
/// its table to `row_writes`.
async fn count_row_writes(app: &TestApp) {
    app.execute("CREATE TABLE row_writes (written TEXT NOT NULL)")
        .await;
    let postgres = app.database.url.starts_with("postgres");
    if postgres {
        app.execute(
            "CREATE FUNCTION count_row_write() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             INSERT INTO row_writes VALUES (TG_TABLE_NAME); RETURN NULL; END $$",
        )
        .await;
    }
    for table in TABLES {
        if postgres {
            app.execute(&format!(
                "CREATE TRIGGER count_{table} AFTER INSERT OR UPDATE OR DELETE ON {table} \
                 FOR EACH ROW EXECUTE FUNCTION count_row_write()"
            ))
            .await;
        } else {
            for op in ["INSERT", "UPDATE", "DELETE"] {
                app.execute(&format!(
                    "CREATE TRIGGER count_{table}_{op} AFTER {op} ON {table} FOR EACH ROW \
                     BEGIN INSERT INTO row_writes VALUES ('{table}'); END"
                ))
                .await;
            }
        }
    }
}

async fn row_writes(app: &TestApp, table: &str) -> i64 {
    app.count_rows(&format!("row_writes WHERE written = '{table}'"))
        .await
}

db_test! {
    async fn an_unchanged_feed_writes_nothing_per_row(app) {
        let feed: Vec<Value> = (0..2_000).map(person).collect();
        let (_, first) = import(&app, json!(feed), json!({})).await;
        assert_eq!(first["summary"]["created"], 2_000, "{first}");
        count_row_writes(&app).await;

        let (_, again) = import(&app, json!(feed), json!({})).await;

        assert_eq!(again["summary"]["unchanged"], 2_000, "{again}");
        for table in TABLES.iter().filter(|t| **t != "import_job_chunks") {
            assert_eq!(row_writes(&app, table).await, 0, "{table}");
        }
        // Four chunks of the test server's 500 rows, each stored, then its results written
        // once by each of the job's two passes.
        assert!(row_writes(&app, "import_job_chunks").await <= 12);
    }
}

db_test! {
    async fn an_unchanged_feed_settles_its_approvers_in_its_first_pass(app) {
        let feed: Vec<Value> = (0..2_000).map(person).collect();
        import(&app, json!(feed), json!({})).await;
        count_row_writes(&app).await;

        let (_, again) = import(&app, json!(feed), json!({})).await;

        assert_eq!(again["summary"]["unchanged"], 2_000, "{again}");
        // Four chunks of the test server's 500 rows, each stored, then its results written
        // by the first pass; the second pass has nothing to rewrite.
        assert_eq!(row_writes(&app, "import_job_chunks").await, 8);
    }
}

db_test! {
    async fn a_feed_with_one_change_writes_that_user_alone(app) {
        let mut feed: Vec<Value> = (0..2_000).map(person).collect();
        import(&app, json!(feed), json!({})).await;
        count_row_writes(&app).await;

        feed[1_234]["department"] = json!("Support");
        let (_, again) = import(&app, json!(feed), json!({})).await;

        assert_eq!(again["summary"], json!({ "created": 0, "updated": 1, "unchanged": 1_999, "failed": 0 }));
        assert_eq!(row_writes(&app, "users").await, 1);
        assert_eq!(row_writes(&app, "import_job_images").await, 1, "its before-image");
        for table in ["user_tags", "user_attributes", "approver_links", "track_assignments"] {
            assert_eq!(row_writes(&app, table).await, 0, "{table}");
        }
    }
}

db_test! {
    async fn failed_rows_are_found_without_reading_the_chunks_that_hold_none(app) {
        // 50,000 rows in a hundred chunks of the test server's 500; ten rows fail, in four
        // of the chunks.
        let failing = [3, 4_999, 5_000, 5_001, 5_002, 31_000, 31_001, 31_002, 31_003, 31_499];
        let users: Vec<Value> = (0..50_000)
            .map(|i| {
                let mut user = json!({
                    "externalId": format!("f{i}"), "email": format!("f{i}@example.com"),
                    "firstName": "F", "lastName": "F",
                });
                if failing.contains(&i) {
                    user["email"] = json!("not an email");
                }
                user
            })
            .collect();
        let id = app.submit_job(json!(users), json!({})).await;
        let job = app.finished_job(JOB, &json!(id)).await;
        assert_eq!(job["summary"]["failed"], 10, "{job}");
        let chunks = app.count_rows(&format!("import_job_chunks WHERE job_id = {id}")).await;
        assert_eq!(chunks, 100);

        // Chunks without a failure become unreadable: a read of one would fail the query.
        app.execute(&format!(
            "UPDATE import_job_chunks SET results = input WHERE job_id = {id} AND failed = 0"
        ))
        .await;
        let token = app.token(Role::Viewer);
        let failed = app.graphql(&token, FAILED, json!({ "id": id, "onlyFailed": true })).await;
        let rows = &failed.data()["importJob"]["rows"];
        assert_eq!(rows["totalCount"], 10, "{rows}");
        let indexes: Vec<Value> = rows["edges"].as_array().unwrap().iter()
            .map(|e| e["node"]["index"].clone()).collect();
        assert_eq!(indexes, failing.map(|i| json!(i)));
        // The last failed row ends its chunk: every row after it is in one that is unreadable.
        let after = &rows["pageInfo"]["endCursor"];
        let all = app.graphql(&token, FAILED, json!({ "id": id, "after": after, "onlyFailed": false })).await;
        assert!(all.error_code().is_some(), "the chunk after is unreadable: {}", all.body);
    }
}
