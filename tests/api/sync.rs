//! Sync mode: `deactivateMissing` and `changeThreshold`, their dry run, and bad options.

use roster::auth::Role;
use serde_json::{Value, json};

use crate::helpers::{TestApp, db_test};

const SUBMIT: &str = "mutation($users: [UserImportInput!]!, $options: ImportOptions) {
    importUsers(users: $users, options: $options) { id deactivateMissing changeThreshold }
}";

const JOB: &str = "query($id: ID!) { importJob(id: $id) {
    status errorMessage summary { failed deactivated }
    deactivatedUsers { edges { node { externalId active } } }
} }";

fn person(source: &str, id: &str) -> Value {
    json!({
        "externalId": id, "source": source, "email": format!("{id}@{source}.example.com"),
        "firstName": "A", "lastName": id,
    })
}

async fn submit(app: &TestApp, users: &[Value], options: Value) -> Value {
    let response = app
        .graphql(
            &app.token(Role::Admin),
            SUBMIT,
            json!({ "users": users, "options": options }),
        )
        .await;
    response.data()["importUsers"].clone()
}

async fn finished(app: &TestApp, id: &Value) -> Value {
    app.finished_job(JOB, id).await
}

/// External ids of the users a job lists as deactivated.
fn deactivated(job: &Value) -> Vec<&str> {
    job["deactivatedUsers"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["externalId"].as_str().unwrap())
        .collect()
}

/// External ids of the active users of the tenant.
async fn active(app: &TestApp) -> Vec<String> {
    let query = "query { users(first: 100) { edges { node { externalId active } } } }";
    let response = app
        .graphql(&app.token(Role::Viewer), query, json!({}))
        .await;
    let mut ids: Vec<String> = response.data()["users"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["node"]["active"] == true)
        .map(|e| e["node"]["externalId"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

db_test! {
    async fn users_missing_from_a_sync_job_become_inactive_within_the_threshold(app) {
        // Ten active users from HR, one already inactive, two from another system.
        let mut seed: Vec<Value> = (0..10).map(|i| person("hr", &format!("p{i}"))).collect();
        let mut gone = person("hr", "p10");
        gone["active"] = json!(false);
        seed.push(gone);
        seed.extend([person("lms", "l0"), person("lms", "l1")]);
        let job = submit(&app, &seed, json!({})).await;
        finished(&app, &job["id"]).await;
        let everyone = active(&app).await;
        assert_eq!(everyone.len(), 12);

        // The HR feed now lacks p8 and p9, and sends p7 with a bad phone.
        let mut feed: Vec<Value> = (0..8).map(|i| person("hr", &format!("p{i}"))).collect();
        feed[7]["phone"] = json!("not a phone");

        let options = json!({ "deactivateMissing": true, "dryRun": true });
        let job = submit(&app, &feed, options).await;
        assert_eq!(job["deactivateMissing"], true);
        let dry = finished(&app, &job["id"]).await;
        assert_eq!(dry["summary"]["deactivated"], 2, "{dry}");
        assert_eq!(deactivated(&dry), ["p8", "p9"], "who would be deactivated");
        assert_eq!(active(&app).await, everyone, "a dry run deactivates nobody");

        // 2 of 10 active HR users is 20%: over a threshold of 10%, nobody goes.
        let options = json!({ "deactivateMissing": true, "changeThreshold": 10 });
        let job = submit(&app, &feed, options).await;
        assert_eq!(job["changeThreshold"], 10);
        let refused = finished(&app, &job["id"]).await;
        assert_eq!(refused["status"], "COMPLETED_WITH_ERRORS");
        assert_eq!(
            refused["errorMessage"],
            "sync mode would deactivate 2 of the 10 active users of source \"hr\" (20%), \
             more than the change threshold of 10%; nobody was deactivated"
        );
        assert_eq!(refused["summary"]["deactivated"], 0);
        assert_eq!(deactivated(&refused), Vec::<&str>::new());
        assert_eq!(active(&app).await, everyone);

        // At 20% it is within the threshold. p7's row failed, but p7 is in the feed.
        let options = json!({ "deactivateMissing": true, "changeThreshold": 20 });
        let job = submit(&app, &feed, options).await;
        let done = finished(&app, &job["id"]).await;
        assert_eq!(done["status"], "COMPLETED_WITH_ERRORS", "the bad row: {done}");
        assert_eq!(done["errorMessage"], Value::Null);
        assert_eq!(done["summary"], json!({ "failed": 1, "deactivated": 2 }));
        let left: Vec<String> = everyone
            .iter()
            .filter(|id| !matches!(id.as_str(), "p8" | "p9"))
            .cloned()
            .collect();
        assert_eq!(active(&app).await, left, "other sources are not touched");

        // A CSV feed of the other system, by its source column.
        let file = b"source,externalId,email,firstName,lastName\nlms,l0,l0@lms.example.com,A,l0\n";
        let upload = "mutation($file: Upload!, $options: ImportOptions) {
            importUsersCsv(file: $file, options: $options) { id }
        }";
        let response = app
            .upload(
                &app.token(Role::Admin),
                upload,
                json!({ "options": { "deactivateMissing": true } }),
                file.to_vec(),
            )
            .await;
        let csv = finished(&app, &response.data()["importUsersCsv"]["id"]).await;
        assert_eq!(deactivated(&csv), ["l1"]);
        assert!(!active(&app).await.contains(&"l1".to_owned()));
    }
}

db_test! {
    async fn sync_options_that_cannot_hold_are_refused(app) {
        let users = [person("hr", "x1")];
        let refused = [
            (json!({ "deactivateMissing": true, "changeThreshold": 150 }), "options.changeThreshold", "OUT_OF_RANGE"),
            (json!({ "changeThreshold": 10 }), "options.changeThreshold", "NOT_SUPPORTED"),
            (json!({ "deactivateMissing": true, "atomic": true }), "options.deactivateMissing", "NOT_SUPPORTED"),
        ];
        for (options, field, code) in refused {
            let response = app
                .graphql(&app.token(Role::Admin), SUBMIT, json!({ "users": users, "options": options }))
                .await;
            assert_eq!(response.error_code(), Some("BAD_USER_INPUT"), "{options}");
            assert_eq!(response.field_errors(), [(field.to_owned(), code.to_owned())]);
        }
        let single = "mutation($u: UserImportInput!, $o: ImportOptions) { importUser(user: $u, options: $o) { action } }";
        let response = app
            .graphql(&app.token(Role::Admin), single, json!({ "u": users[0], "o": { "deactivateMissing": true } }))
            .await;
        assert_eq!(
            response.field_errors(),
            [("options.deactivateMissing".to_owned(), "NOT_SUPPORTED".to_owned())]
        );
        let query = "query { importJobs { totalCount } users { totalCount } }";
        let response = app.graphql(&app.token(Role::Viewer), query, json!({})).await;
        assert_eq!(response.data()["importJobs"]["totalCount"], 0);
        assert_eq!(response.data()["users"]["totalCount"], 0);
    }
}
