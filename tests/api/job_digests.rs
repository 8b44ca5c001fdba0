//! Rows found unchanged from their users' import digests: a narrow read instead of
//! reading and comparing whole users, never at the cost of missing a change.

use serde_json::{Value, json};

use crate::helpers::{TestApp, db_test, staff};

const JOB: &str = "query($id: ID!) { importJob(id: $id) {
    status total summary { created updated unchanged failed }
} }";

const ROWS: &str = "query($id: ID!, $after: String, $onlyFailed: Boolean) { importJob(id: $id) {
    rows(first: 100, after: $after, onlyFailed: $onlyFailed) {
        totalCount pageInfo { hasNextPage endCursor } edges { node { index action } }
    }
} }";

const IMPORT_ONE: &str = "mutation($u: UserImportInput!) { importUser(user: $u) { action } }";

/// Person `i` of a feed: tags and an attribute, no approvers.
fn person(i: usize) -> Value {
    staff("d", i)
}

async fn import(app: &TestApp, users: &[Value]) -> (String, Value) {
    let id = app
        .submit_job(json!(users), json!({ "runIntegrityCheck": false }))
        .await;
    let job = app.finished_job(JOB, &json!(id)).await;
    (id, job)
}

async fn actions(app: &TestApp, id: &str) -> Vec<String> {
    app.job_rows(ROWS, id, false)
        .await
        .iter()
        .map(|edge| edge["node"]["action"].as_str().unwrap().to_owned())
        .collect()
}

db_test! {
    async fn an_unchanged_row_is_decided_without_reading_its_whole_user(app) {
        let feed: Vec<Value> = (0..1_200).map(person).collect();
        import(&app, &feed).await;
        // A column only a whole user's read asks for: such a read now fails.
        app.execute("ALTER TABLE users DROP COLUMN google_id").await;

        let (_, again) = import(&app, &feed).await;

        assert_eq!(again["status"], "COMPLETED", "{again}");
        assert_eq!(again["summary"]["unchanged"], 1_200, "{again}");
    }
}

db_test! {
    async fn a_user_written_elsewhere_since_the_import_is_compared_in_full(app) {
        let feed: Vec<Value> = (0..1_200).map(person).collect();
        import(&app, &feed).await;
        let mut moved = person(700);
        moved["department"] = json!("Support");
        let token = app.token(roster::auth::Role::Admin);
        let answer = app.graphql(&token, IMPORT_ONE, json!({ "u": moved })).await;
        assert_eq!(answer.data()["importUser"]["action"], "UPDATED");

        let (_, again) = import(&app, &feed).await;

        assert_eq!(again["summary"], json!({ "created": 0, "updated": 1, "unchanged": 1_199, "failed": 0 }));
        let user = app.stored_user("d700").await.unwrap();
        assert_eq!(user.department.as_deref(), Some("Sales"));
    }
}

db_test! {
    async fn a_user_named_twice_in_a_chunk_follows_each_row_in_turn(app) {
        let feed: Vec<Value> = (0..20).map(person).collect();
        import(&app, &feed).await;
        let mut moved = person(7);
        moved["department"] = json!("Support");

        // The changed row first, then the row as the last import sent it.
        let (id, again) = import(&app, &[moved, person(7)]).await;

        assert_eq!(again["summary"]["updated"], 2, "{again}");
        assert_eq!(actions(&app, &id).await, ["UPDATED", "UPDATED"]);
        let user = app.stored_user("d7").await.unwrap();
        assert_eq!(user.department.as_deref(), Some("Sales"));
    }
}

db_test! {
    async fn a_new_user_named_twice_in_a_chunk_is_created_then_updated(app) {
        // Read before the chunk writes anything, the user is not there yet for either row.
        let mut moved = person(7);
        moved["department"] = json!("Support");

        let (id, job) = import(&app, &[person(7), moved]).await;

        assert_eq!(job["summary"], json!({ "created": 1, "updated": 1, "unchanged": 0, "failed": 0 }), "{job}");
        assert_eq!(actions(&app, &id).await, ["CREATED", "UPDATED"]);
        let user = app.stored_user("d7").await.unwrap();
        assert_eq!(user.department.as_deref(), Some("Support"));
    }
}

db_test! {
    async fn a_user_whose_attributes_changed_elsewhere_is_compared_in_full(app) {
        let feed: Vec<Value> = (0..1_200).map(person).collect();
        import(&app, &feed).await;
        let set = "mutation($c: [UserAttributesChange!]!) { setUserAttributes(changes: $c) { succeeded } }";
        let change = json!([{
            "user": { "externalId": "d700" },
            "set": [{ "name": "grade", "value": "9", "type": "NUMBER" }],
        }]);
        let token = app.token(roster::auth::Role::Admin);
        let answer = app.graphql(&token, set, json!({ "c": change })).await;
        assert_eq!(answer.data()["setUserAttributes"]["succeeded"], 1);

        let (_, again) = import(&app, &feed).await;

        assert_eq!(again["summary"], json!({ "created": 0, "updated": 1, "unchanged": 1_199, "failed": 0 }));
    }
}

db_test! {
    async fn a_row_read_with_other_options_is_compared_in_full(app) {
        let mut first = person(1);
        first["phone"] = json!("+14155550100");
        import(&app, &[first]).await;
        // Merged: the phone it omits stays, and the user is written, with its digest.
        let mut merged = person(1);
        merged["department"] = json!("Support");
        let (_, job) = import(&app, &[merged.clone()]).await;
        assert_eq!(job["summary"]["updated"], 1, "{job}");

        // The same row replacing every field: the phone it omits goes.
        let id = app
            .submit_job(json!([merged]), json!({ "replace": true, "runIntegrityCheck": false }))
            .await;
        let job = app.finished_job(JOB, &json!(id)).await;

        assert_eq!(job["summary"]["updated"], 1, "{job}");
        let user = app.stored_user("d1").await.unwrap();
        assert_eq!(user.phone, None);
    }
}

/// Person `i` of a feed whose first 600 people are managed by the person 600 after them.
fn report(i: usize) -> Value {
    let mut person = person(i);
    if i < 600 {
        person["managerExternalId"] = json!(format!("d{}", i + 600));
    }
    person
}

const ERRORS: &str = "query($id: ID!, $after: String, $onlyFailed: Boolean) { importJob(id: $id) {
    rows(first: 100, after: $after, onlyFailed: $onlyFailed) {
        totalCount pageInfo { hasNextPage endCursor }
        edges { node { index action errors { field code } } }
    }
} }";

db_test! {
    async fn a_settled_row_whose_manager_a_later_row_deactivates_is_checked_again(app) {
        let feed: Vec<Value> = (0..1_200).map(report).collect();
        let (_, first) = import(&app, &feed).await;
        assert_eq!(first["summary"]["created"], 1_200, "{first}");
        // Row 5, in the first chunk, is as it was; its manager's row, in the second, leaves.
        let mut next = feed.clone();
        next[605]["active"] = json!(false);

        let (id, again) = import(&app, &next).await;

        assert_eq!(again["summary"]["updated"], 1, "{again}");
        assert_eq!(again["summary"]["failed"], 1, "{again}");
        let failed = app.job_rows(ERRORS, &id, true).await;
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0]["node"]["index"], 5);
        assert_eq!(failed[0]["node"]["errors"][0]["code"], "INACTIVE");
    }
}

db_test! {
    async fn a_settled_row_whose_user_a_row_before_it_sets_other_approvers_for_is_checked_again(app) {
        let feed: Vec<Value> = (0..1_200).map(report).collect();
        import(&app, &feed).await;
        // In the first chunk, d5 with another manager; in the second, d5 as the last import
        // sent it, so that its digest matches.
        let mut next = feed.clone();
        next[3] = report(5);
        next[3]["managerExternalId"] = json!("d606");
        next[5] = report(3);
        next[700] = report(5);

        let (id, again) = import(&app, &next).await;

        let rows = app.job_rows(ROWS, &id, false).await;
        assert_eq!(rows[3]["node"]["action"], "UPDATED", "{again}");
        assert_eq!(rows[700]["node"]["action"], "UPDATED", "{again}");
        let manager = app
            .scalar(
                "SELECT CAST(a.id AS BIGINT) AS n FROM approver_links l \
                 JOIN users u ON u.id = l.user_id JOIN users a ON a.id = l.approver_id \
                 WHERE u.external_id = 'd5'",
            )
            .await;
        assert_eq!(Some(manager), app.stored_user("d605").await.map(|user| user.id));
    }
}

db_test! {
    async fn users_found_unchanged_the_long_way_are_found_by_digest_the_next_time(app) {
        // Written one by one, not by a job: they have no digest.
        let token = app.token(roster::auth::Role::Admin);
        let feed: Vec<Value> = (0..30).map(person).collect();
        for user in &feed {
            app.graphql(&token, IMPORT_ONE, json!({ "u": user })).await.data();
        }
        let (_, first) = import(&app, &feed).await;
        assert_eq!(first["summary"]["unchanged"], 30, "{first}");
        app.execute("ALTER TABLE users DROP COLUMN google_id").await;

        let (_, again) = import(&app, &feed).await;

        assert_eq!(again["status"], "COMPLETED", "{again}");
        assert_eq!(again["summary"]["unchanged"], 30, "{again}");
    }
}
