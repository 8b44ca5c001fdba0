//! `revertImportJob`: a `REVERT` job puts back every user a job wrote, except those
//! changed since; reverting the revert applies the job again.

use roster::auth::Role;
use serde_json::{Value, json};

use crate::helpers::{
    Backend, GraphQLResponse, TestApp, db_test, each_backend, person, spawn_app_with,
};

const REVERT: &str = "mutation($id: ID!) {
    revertImportJob(id: $id) { id kind status total description revertOf { id } }
}";

const JOB: &str = "query($id: ID!) { importJob(id: $id) {
    kind status total processed progress repeatable revertible errorMessage
    revertOf { id } revertedBy { id }
    summary { created updated unchanged skipped failed blocked unblocked deleted }
    rows { edges { node { index lookupKey action success user { externalId } errors { code message } } } }
} }";

/// Everything a revert puts back, for every user of the tenant, by external id.
const EVERYONE: &str = "query { users(first: 100) { edges { node {
    id externalId source email login firstName lastName city active tags
    attributes { name value type }
    approvers { label canApprove approver { externalId } }
} } } }";

fn with(mut user: Value, fields: Value) -> Value {
    for (key, value) in fields.as_object().unwrap() {
        user[key] = value.clone();
    }
    user
}

async fn import(app: &TestApp, users: Value, options: Value) -> String {
    let id = app.submit_job(users, options).await;
    let job = finished(app, &id).await;
    assert!(
        job["status"].as_str().unwrap().starts_with("COMPLETED"),
        "{job}"
    );
    id
}

async fn revert(app: &TestApp, token: &str, id: &str) -> GraphQLResponse {
    app.graphql(token, REVERT, json!({ "id": id })).await
}

/// Reverts `id` and waits for the revert to finish.
async fn reverted(app: &TestApp, id: &str) -> (String, Value) {
    let response = revert(app, &app.token(Role::Admin), id).await;
    let job = &response.data()["revertImportJob"];
    assert_eq!(job["kind"], "REVERT");
    assert_eq!(job["revertOf"]["id"], id);
    assert_eq!(job["description"], format!("revert of job {id}"));
    let revert_id = job["id"].as_str().unwrap().to_owned();
    let finished = finished(app, &revert_id).await;
    (revert_id, finished)
}

async fn finished(app: &TestApp, id: &str) -> Value {
    app.finished_job(JOB, &json!(id)).await
}

async fn everyone(app: &TestApp) -> Value {
    let response = app
        .graphql(&app.token(Role::Viewer), EVERYONE, json!({}))
        .await;
    let mut users: Vec<Value> = response.data()["users"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"].clone())
        .collect();
    users.sort_by_key(|u| u["externalId"].as_str().unwrap().to_owned());
    json!(users)
}

/// `(lookupKey, action, success, error codes)` of each row of a job.
fn rows(job: &Value) -> Vec<(String, String, bool, Vec<String>)> {
    job["rows"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let row = &e["node"];
            (
                row["lookupKey"].as_str().unwrap().to_owned(),
                row["action"].as_str().unwrap().to_owned(),
                row["success"].as_bool().unwrap(),
                row["errors"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["code"].as_str().unwrap().to_owned())
                    .collect(),
            )
        })
        .collect()
}

fn row(
    key: &str,
    action: &str,
    success: bool,
    codes: &[&str],
) -> (String, String, bool, Vec<String>) {
    (
        key.to_owned(),
        action.to_owned(),
        success,
        codes.iter().map(|c| (*c).to_owned()).collect(),
    )
}

fn conflict_code(response: &GraphQLResponse) -> (Option<&str>, String) {
    (
        response.error_code(),
        response
            .field_errors()
            .first()
            .map(|(_, code)| code.clone())
            .unwrap_or_default(),
    )
}

/// Two users per chunk, so that each pass of a revert spans chunks.
async fn a_revert_puts_updated_users_back_removes_created_ones_and_its_revert_applies_the_job_again(
    backend: Backend,
) {
    let app = spawn_app_with(backend, |config| config.jobs.job_chunk = 2).await;
    {
        let seed = json!([
            person("boss"),
            person("b2"),
            with(
                person("u1"),
                json!({
                    "managerExternalId": "boss", "tags": ["a"],
                    "attributes": [{ "name": "level", "value": "1", "type": "NUMBER" }],
                })
            ),
            with(person("u2"), json!({ "city": "Oslo", "tags": ["x"] })),
            person("u3"),
            with(person("u4"), json!({ "managerExternalId": "boss" })),
        ]);
        import(&app, seed, json!({})).await;
        let before = everyone(&app).await;

        // The job: u1 gets another manager, tags, attribute and name; u2 is blocked and
        // moves; two users are created, one managed by u1; u3 stays as it is; only u4's
        // manager changes.
        let job = json!([
            with(
                person("u1"),
                json!({
                    "firstName": "Changed", "managerExternalId": "b2", "tags": ["a", "b"],
                    "attributes": [{ "name": "level", "value": "2", "type": "NUMBER" }],
                })
            ),
            with(person("u2"), json!({ "active": false, "city": "Bergen" })),
            with(
                person("n1"),
                json!({ "managerExternalId": "u1", "tags": ["new"] })
            ),
            with(
                person("n2"),
                json!({
                    "approvers": [{ "approver": { "externalId": "boss" }, "label": "NON_APPROVING_MANAGER" }],
                })
            ),
            person("u3"),
            with(person("u4"), json!({ "managerExternalId": "b2" })),
        ]);
        let id = import(&app, job, json!({})).await;
        let after = everyone(&app).await;
        assert_ne!(before, after);
        assert_eq!(finished(&app, &id).await["revertible"], true);

        let (revert_id, done) = reverted(&app, &id).await;
        assert_eq!(done["status"], "COMPLETED", "{done}");
        assert_eq!(done["kind"], "REVERT");
        assert_eq!(done["total"], 5);
        assert_eq!(done["progress"], 1.0);
        assert_eq!(done["repeatable"], false);
        assert_eq!(
            done["summary"],
            json!({ "created": 0, "updated": 3, "unchanged": 0, "skipped": 0, "failed": 0,
                    "blocked": 0, "unblocked": 1, "deleted": 2 })
        );
        assert_eq!(
            rows(&done),
            [
                row("default:u1", "UPDATED", true, &[]),
                row("default:u2", "UPDATED", true, &[]),
                row("default:n1", "DELETED", true, &[]),
                row("default:n2", "DELETED", true, &[]),
                row("default:u4", "UPDATED", true, &[]),
            ]
        );
        let indexes: Vec<&Value> = done["rows"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| &e["node"]["index"])
            .collect();
        assert_eq!(
            indexes,
            [0, 1, 2, 3, 5],
            "rows are those of the job that wrote each user"
        );
        assert_eq!(
            everyone(&app).await,
            before,
            "every user is as it was before the job"
        );
        let original = finished(&app, &id).await;
        assert_eq!(original["revertedBy"]["id"], revert_id.as_str());
        assert_eq!(original["revertible"], false, "reverted once");
        assert_eq!(done["revertible"], true, "a revert can be reverted");

        // Reverted once is enough; reverting the revert applies the job again, created
        // users with their ids and approvers.
        let again = revert(&app, &app.token(Role::Admin), &id).await;
        assert_eq!(
            conflict_code(&again),
            (Some("CONFLICT"), "ALREADY_REVERTED".to_owned())
        );
        let (_, redone) = reverted(&app, &revert_id).await;
        assert_eq!(redone["status"], "COMPLETED", "{redone}");
        assert_eq!(
            rows(&redone),
            [
                row("default:u1", "UPDATED", true, &[]),
                row("default:u2", "UPDATED", true, &[]),
                row("default:n1", "CREATED", true, &[]),
                row("default:n2", "CREATED", true, &[]),
                row("default:u4", "UPDATED", true, &[]),
            ]
        );
        assert_eq!(redone["summary"]["blocked"], 1);
        assert_eq!(
            everyone(&app).await,
            after,
            "the job's work is back, ids included"
        );
    }
}

#[tokio::test]
async fn a_revert_puts_users_back_and_its_revert_applies_the_job_again_sqlite() {
    a_revert_puts_updated_users_back_removes_created_ones_and_its_revert_applies_the_job_again(
        Backend::Sqlite,
    )
    .await;
}

#[tokio::test]
async fn a_revert_puts_users_back_and_its_revert_applies_the_job_again_postgres() {
    a_revert_puts_updated_users_back_removes_created_ones_and_its_revert_applies_the_job_again(
        Backend::Postgres,
    )
    .await;
}

db_test! {
    async fn a_revert_leaves_users_changed_since_and_says_why(app) {
        let admin = app.token(Role::Admin);
        import(&app, json!([person("u1"), person("u2"), person("outsider"), person("o2")]), json!({})).await;
        let id = import(
            &app,
            json!([
                with(person("u1"), json!({ "city": "Paris" })),
                with(person("u2"), json!({ "city": "Rome" })),
                person("c1"),
                person("c2"),
                person("c3"),
                with(person("c4"), json!({ "tags": ["safety"] })),
                // A new manager goes with the new report the job gave it.
                with(person("c5"), json!({ "managerExternalId": "c3" })),
                // … unless the report stays.
                person("c6"),
                with(person("c7"), json!({ "managerExternalId": "c6" })),
            ]),
            json!({}),
        )
        .await;

        // Since the job: u1 and c1 are edited, c2 becomes someone's manager.
        let import_one = "mutation($u: UserImportInput!) { importUser(user: $u) { action } }";
        for user in [with(person("u1"), json!({ "city": "Lyon" })), with(person("c1"), json!({ "city": "Nice" }))] {
            app.graphql(&admin, import_one, json!({ "u": user })).await.data();
        }
        let set = r#"mutation { setApprovers(user: { externalId: "outsider" },
            approvers: [{ approver: { externalId: "c2" }, label: MANAGER }]) { id } }"#;
        app.graphql(&admin, set, json!({})).await.data();
        let set = r#"mutation { setApprovers(user: { externalId: "o2" },
            approvers: [{ approver: { externalId: "c7" }, label: MANAGER }]) { id } }"#;
        app.graphql(&admin, set, json!({})).await.data();
        // … and c4 completes a learning track.
        let create = "mutation { createLearningTrack(input: { name: \"Safety\", tags: [\"safety\"] }) { id } }";
        let track = app.graphql(&admin, create, json!({})).await.data()["createLearningTrack"]["id"].clone();
        let complete = "mutation($c: [TrackCompletionInput!]!) { recordTrackCompletions(completions: $c) { succeeded } }";
        let completion = json!([{ "track": track, "user": { "externalId": "c4" }, "completedAt": "2026-11-20T10:00:00Z" }]);
        let response = app.graphql(&admin, complete, json!({ "c": completion })).await;
        assert_eq!(response.data()["recordTrackCompletions"]["succeeded"], 1);

        let (_, done) = reverted(&app, &id).await;
        assert_eq!(done["status"], "COMPLETED_WITH_ERRORS", "{done}");
        assert_eq!(
            rows(&done),
            [
                row("default:u1", "SKIPPED", false, &["CHANGED_SINCE"]),
                row("default:u2", "UPDATED", true, &[]),
                row("default:c1", "SKIPPED", false, &["CHANGED_SINCE"]),
                row("default:c2", "SKIPPED", false, &["APPROVES_FOR"]),
                row("default:c3", "DELETED", true, &[]),
                row("default:c4", "SKIPPED", false, &["HAS_COMPLETIONS"]),
                row("default:c5", "DELETED", true, &[]),
                row("default:c6", "SKIPPED", false, &["APPROVES_FOR"]),
                row("default:c7", "SKIPPED", false, &["APPROVES_FOR"]),
            ]
        );
        let c2 = &done["rows"]["edges"][3]["node"];
        assert!(c2["errors"][0]["message"].as_str().unwrap().contains("outsider"), "{c2}");
        assert_eq!(c2["user"]["externalId"], "c2");
        assert_eq!(done["summary"]["failed"], 6);
        let message = |i: usize| done["rows"]["edges"][i]["node"]["errors"][0]["message"].as_str().unwrap().to_owned();
        assert!(message(7).contains("c7"), "c6 stays for c7, who stays for o2: {}", message(7));
        assert!(message(8).contains("o2"), "{}", message(8));
        assert_eq!(done["summary"]["deleted"], 2);

        let users = everyone(&app).await;
        let city = |id: &str| {
            users.as_array().unwrap().iter().find(|u| u["externalId"] == id).map(|u| u["city"].clone())
        };
        assert_eq!(city("u1"), Some(json!("Lyon")), "a user changed since keeps its change");
        assert_eq!(city("u2"), Some(Value::Null), "u2 is back as it was");
        assert_eq!(city("c1"), Some(json!("Nice")));
        assert_eq!(city("c2"), Some(Value::Null), "c2 stays: it manages outsider");
        assert_eq!(city("c3"), None, "c3 is removed");
        assert_eq!(city("c4"), Some(Value::Null), "c4 stays: its completion would go with it");
        let manager = |id: &str| {
            users.as_array().unwrap().iter().find(|u| u["externalId"] == id).unwrap()["approvers"][0]["approver"]["externalId"].clone()
        };
        assert_eq!(manager("c7"), "c6", "c7 keeps its manager");
        assert_eq!(manager("o2"), "c7");
    }
}

db_test! {
    async fn a_revert_of_a_sync_job_makes_the_users_it_deactivated_active_again(app) {
        let hr = |id: &str| with(person(id), json!({ "source": "hr", "email": format!("{id}@hr.example.com") }));
        import(&app, json!([hr("p1"), hr("p2"), hr("p3")]), json!({})).await;
        let id = import(&app, json!([hr("p1"), hr("p2")]), json!({ "deactivateMissing": true })).await;
        let active = |users: &Value| -> Vec<String> {
            users.as_array().unwrap().iter().filter(|u| u["active"] == true)
                .map(|u| u["externalId"].as_str().unwrap().to_owned()).collect()
        };
        assert_eq!(active(&everyone(&app).await), ["p1", "p2"]);
        let (_, done) = reverted(&app, &id).await;
        assert_eq!(done["status"], "COMPLETED", "{done}");
        assert_eq!(rows(&done), [row("hr:p3", "UPDATED", true, &[])]);
        assert_eq!(done["rows"]["edges"][0]["node"]["index"], 2, "after the job's two rows");
        assert_eq!(done["summary"]["unblocked"], 1);
        assert_eq!(active(&everyone(&app).await), ["p1", "p2", "p3"]);
    }
}

db_test! {
    async fn a_revert_removes_a_chain_of_managers_it_created_with_those_they_manage(app) {
        // Each of 100 people managed by the next: every manager leaves with its reports.
        let people: Vec<Value> = (0..100)
            .map(|i| match i {
                99 => person(&format!("m{i}")),
                _ => with(person(&format!("m{i}")), json!({ "managerExternalId": format!("m{}", i + 1) })),
            })
            .collect();
        let id = import(&app, json!(people), json!({})).await;
        let (_, done) = reverted(&app, &id).await;
        assert_eq!(done["summary"]["deleted"], 100, "{}", done["summary"]);
        assert_eq!(done["status"], "COMPLETED");
        assert_eq!(everyone(&app).await, json!([]));
    }
}

db_test! {
    async fn a_job_that_wrote_nobody_is_not_reverted_and_a_refusal_stores_nothing(app) {
        let admin = app.token(Role::Admin);
        let id = import(&app, json!([person("r1")]), json!({})).await;
        let dry = import(&app, json!([person("r2")]), json!({ "dryRun": true })).await;
        let same = import(&app, json!([person("r1")]), json!({})).await;
        let mut atomic = vec![person("r3"), person("r4")];
        atomic[1]["email"] = json!("not-an-email");
        let failed = app.submit_job(json!(atomic), json!({ "atomic": true })).await;
        assert_eq!(finished(&app, &failed).await["status"], "FAILED");

        let jobs = app.count_rows("import_jobs").await;
        for job in [&dry, &same, &failed] {
            assert_eq!(finished(&app, job).await["revertible"], false);
        }
        for (job, why) in [
            (&dry, "a dry run writes nothing"),
            (&same, "the job changed no user"),
            (&failed, "the job changed no user"),
        ] {
            let response = revert(&app, &admin, job).await;
            assert_eq!(conflict_code(&response), (Some("CONFLICT"), "NOTHING_TO_REVERT".to_owned()));
            assert!(response.body.to_string().contains(why), "{}", response.body);
        }
        let viewer = revert(&app, &app.token(Role::Viewer), &id).await;
        assert_eq!(viewer.error_code(), Some("FORBIDDEN"));
        let stranger = revert(&app, &app.token_for(Role::Admin, Some("other")), &id).await;
        assert_eq!(stranger.error_code(), Some("NOT_FOUND"));
        let nonsense = revert(&app, &admin, "999999").await;
        assert_eq!(nonsense.error_code(), Some("NOT_FOUND"));
        assert_eq!(app.count_rows("import_jobs").await, jobs, "no job was stored");

        // A revert is not retried: its rows say why a user was left as it is.
        let (revert_id, _) = reverted(&app, &id).await;
        assert!(app.stored_user("r1").await.is_none());
        let retry = "mutation($id: ID!) { retryImportJob(id: $id) { id } }";
        let response = app.graphql(&admin, retry, json!({ "id": revert_id })).await;
        assert_eq!(conflict_code(&response), (Some("CONFLICT"), "NOT_RETRYABLE".to_owned()));

        // An atomic job writes in one transaction, its images with it.
        let whole = import(&app, json!([person("r5"), person("r6")]), json!({ "atomic": true })).await;
        let (_, done) = reverted(&app, &whole).await;
        assert_eq!(done["summary"]["deleted"], 2, "{done}");
        assert!(app.stored_user("r5").await.is_none());
    }
}

#[tokio::test]
async fn a_job_not_finished_is_not_reverted() {
    let app = spawn_app_with(Backend::Sqlite, |config| config.jobs.workers = 0).await;
    let id = app.submit_job(json!([person("w1")]), json!({})).await;
    let response = revert(&app, &app.token(Role::Admin), &id).await;
    assert_eq!(
        conflict_code(&response),
        (Some("CONFLICT"), "NOT_FINISHED".to_owned())
    );
}

/// A revert cancelled midway leaves some users put back; a new revert does the rest, and
/// reports none of them as changed since.
async fn a_revert_after_a_cancelled_one_does_the_rest(backend: Backend) {
    let app = spawn_app_with(backend, |config| config.jobs.job_chunk = 1).await;
    let admin = app.token(Role::Admin);
    let seed: Vec<Value> = (0..30).map(|i| person(&format!("s{i}"))).collect();
    import(&app, json!(seed), json!({})).await;
    let before = everyone(&app).await;
    let mut job: Vec<Value> = (0..30)
        .map(|i| {
            with(
                person(&format!("s{i}")),
                json!({ "city": "Oslo", "managerExternalId": "n0" }),
            )
        })
        .collect();
    job.extend((0..30).map(|i| person(&format!("n{i}"))));
    let id = import(&app, json!(job), json!({})).await;

    let response = revert(&app, &admin, &id).await;
    let first = response.data()["revertImportJob"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let progress = "query($id: ID!) { importJob(id: $id) { status processed total } }";
    loop {
        let job = app.graphql(&admin, progress, json!({ "id": first })).await;
        if job.data()["importJob"]["processed"].as_i64().unwrap() > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let cancel = "mutation($id: ID!) { cancelImportJob(id: $id) { status processed total } }";
    let cancelled = app.graphql(&admin, cancel, json!({ "id": first })).await;
    let cancelled = &cancelled.data()["cancelImportJob"];
    assert_eq!(cancelled["status"], "CANCELLED", "{cancelled}");

    let (_, done) = reverted(&app, &id).await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    assert_eq!(done["summary"]["failed"], 0, "{done}");
    assert_eq!(everyone(&app).await, before);
}

each_backend!(a_revert_after_a_cancelled_one_does_the_rest => a_revert_after_a_cancelled_one_does_the_rest);
