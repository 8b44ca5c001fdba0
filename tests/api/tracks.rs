//! Learning tracks: assignment by tags, completions, statuses at their boundaries, and the
//! compliance summary.

use chrono::{DateTime, Duration, Utc};
use roster::auth::Role;
use serde_json::{Value, json};

use crate::helpers::{
    Backend, GraphQLResponse, ServerProcess, TestApp, TestDatabase, db_test, each_backend,
};
use crate::users::import;

const CREATE: &str = "mutation($i: LearningTrackInput!) { createLearningTrack(input: $i) { id name tags validityDays expiringSoonDays dueDays } }";
const UPDATE: &str = "mutation($id: ID!, $i: LearningTrackInput!) { updateLearningTrack(id: $id, input: $i) { id tags } }";
const COMPLETE: &str = "mutation($c: [TrackCompletionInput!]!) { recordTrackCompletions(completions: $c) { succeeded failed results { lookupKey track success errors { field code } } } }";
const PROGRESS: &str = "query($u: UserLookup!, $at: DateTime) {
    learningTrackStatus(user: $u, asOf: $at)
    user(lookup: $u) { learningTrackStatus(asOf: $at) learningTracks(asOf: $at) { track { name } status assignedAt completedAt expiresAt } }
}";

async fn track(app: &TestApp, input: Value) -> String {
    let response = app
        .graphql(&app.token(Role::Admin), CREATE, json!({ "i": input }))
        .await;
    response.data()["createLearningTrack"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn person(app: &TestApp, id: &str, tags: Value) {
    import(app, json!({ "externalId": id, "email": format!("{id}@example.com"), "firstName": id, "lastName": "P", "tags": tags }), Value::Null)
        .await
        .data();
}

async fn progress(app: &TestApp, id: &str, at: DateTime<Utc>) -> Value {
    let response = app
        .graphql(
            &app.token(Role::Viewer),
            PROGRESS,
            json!({ "u": { "externalId": id }, "at": at.to_rfc3339() }),
        )
        .await;
    let data = response.data();
    assert_eq!(
        data["learningTrackStatus"],
        data["user"]["learningTrackStatus"]
    );
    data.clone()
}

async fn status(app: &TestApp, id: &str, at: DateTime<Utc>) -> String {
    progress(app, id, at).await["learningTrackStatus"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn complete(app: &TestApp, id: &str, track: &str, at: DateTime<Utc>) -> GraphQLResponse {
    app.graphql(
        &app.token(Role::Admin),
        COMPLETE,
        json!({ "c": [{ "user": { "externalId": id }, "track": track, "completedAt": at.to_rfc3339() }] }),
    )
    .await
}

fn at(text: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text.as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

db_test! {
    async fn statuses_change_exactly_at_their_boundaries(app) {
        let safety = track(&app, json!({ "name": "Safety", "tags": ["Safety"], "validityDays": 10, "expiringSoonDays": 3, "dueDays": 5 })).await;
        person(&app, "u", json!(["SAFETY"])).await;
        let now = Utc::now();
        let tracks = &progress(&app, "u", now).await["user"]["learningTracks"];
        assert_eq!(tracks[0]["track"]["name"], "Safety", "tags compare lower-cased");
        let assigned = at(&tracks[0]["assignedAt"]);
        let s = Duration::seconds(1);
        let d = Duration::days(1);

        assert_eq!(status(&app, "u", assigned - s).await, "NO_TRACKS_ASSIGNED", "before the assignment");
        assert_eq!(status(&app, "u", assigned + d * 5 - s).await, "UNCOMPLETED");
        assert_eq!(status(&app, "u", assigned + d * 5).await, "NOT_COMPLIANT", "due at that instant");
        assert_eq!(status(&app, "u", assigned + d * 5 + s).await, "NOT_COMPLIANT");

        let done = assigned + d;
        complete(&app, "u", &safety, done).await.data();
        assert_eq!(status(&app, "u", done - s).await, "UNCOMPLETED", "a completion counts from its instant");
        assert_eq!(status(&app, "u", done).await, "COMPLETED");
        assert_eq!(status(&app, "u", done + d * 7 - s).await, "COMPLETED");
        assert_eq!(status(&app, "u", done + d * 7).await, "EXPIRING_SOON");
        assert_eq!(status(&app, "u", done + d * 10 - s).await, "EXPIRING_SOON");
        assert_eq!(status(&app, "u", done + d * 10).await, "NOT_COMPLIANT", "expired at that instant");
        let late = progress(&app, "u", done + d * 10 + s).await;
        let entry = &late["user"]["learningTracks"][0];
        assert_eq!(entry["status"], "NOT_COMPLIANT");
        assert_eq!(at(&entry["completedAt"]), done);
        assert_eq!(at(&entry["expiresAt"]), done + d * 10);

        // The newest completion counts.
        complete(&app, "u", &safety, done + d * 9).await.data();
        assert_eq!(status(&app, "u", done + d * 10 + s).await, "COMPLETED");
    }
}

db_test! {
    async fn tracks_without_validity_or_due_days_never_lapse(app) {
        let open = track(&app, json!({ "name": "Open", "tags": ["all"] })).await;
        person(&app, "u", json!(["all"])).await;
        let far = Utc::now() + Duration::days(36_000);
        assert_eq!(status(&app, "u", far).await, "UNCOMPLETED");
        complete(&app, "u", &open, Utc::now()).await.data();
        assert_eq!(status(&app, "u", far).await, "COMPLETED");
    }
}

db_test! {
    async fn the_worst_track_decides_and_tags_move_assignments(app) {
        let a = track(&app, json!({ "name": "A", "tags": ["a"], "dueDays": 0 })).await;
        let b = track(&app, json!({ "name": "B", "tags": ["b"] })).await;
        person(&app, "u", json!(["a", "b"])).await;
        person(&app, "none", json!([])).await;
        let now = Utc::now() + Duration::seconds(1);
        assert_eq!(status(&app, "u", now).await, "NOT_COMPLIANT", "A is due at once");
        complete(&app, "u", &a, now - Duration::milliseconds(500)).await.data();
        assert_eq!(status(&app, "u", now).await, "UNCOMPLETED", "B is still open");
        complete(&app, "u", &b, now - Duration::milliseconds(500)).await.data();
        assert_eq!(status(&app, "u", now).await, "COMPLETED");
        assert_eq!(status(&app, "none", now).await, "NO_TRACKS_ASSIGNED");

        // The user loses tag b: B is unassigned.
        person(&app, "u", json!(["a"])).await;
        let names: Vec<String> = progress(&app, "u", now).await["user"]["learningTracks"].as_array().unwrap().iter().map(|t| t["track"]["name"].as_str().unwrap().to_owned()).collect();
        assert_eq!(names, ["A"]);
        // Track A now wants tag c: u loses it, the user with c gains it.
        person(&app, "c", json!(["C"])).await;
        let updated = app.graphql(&app.token(Role::Admin), UPDATE, json!({ "id": a, "i": { "name": "A", "tags": ["c"], "dueDays": 0 } })).await;
        assert_eq!(updated.data()["updateLearningTrack"]["tags"], json!(["c"]));
        let later = Utc::now() + Duration::seconds(1);
        assert_eq!(status(&app, "u", later).await, "NO_TRACKS_ASSIGNED");
        assert_eq!(status(&app, "c", later).await, "NOT_COMPLIANT");
    }
}

db_test! {
    async fn completions_are_checked_one_by_one(app) {
        let a = track(&app, json!({ "name": "A", "tags": ["a"] })).await;
        let b = track(&app, json!({ "name": "B", "tags": ["b"] })).await;
        person(&app, "u", json!(["a"])).await;
        let other = app.token_for(Role::Admin, Some("elsewhere"));
        crate::users::import_as(&app, &other, json!({ "externalId": "x", "email": "x@example.com", "firstName": "X", "lastName": "Y", "tags": ["a"] }), Value::Null).await.data();
        let now = Utc::now().to_rfc3339();
        let response = app.graphql(&app.token(Role::Admin), COMPLETE, json!({ "c": [
            { "user": { "externalId": "u" }, "track": a, "completedAt": now },
            { "user": { "externalId": "u" }, "track": b, "completedAt": now },
            { "user": { "externalId": "nobody" }, "track": a, "completedAt": now },
            { "user": { "externalId": "x" }, "track": a, "completedAt": now },
            { "user": { "externalId": "u" }, "track": "999999", "completedAt": now },
        ] })).await;
        let payload = &response.data()["recordTrackCompletions"];
        assert_eq!((payload["succeeded"].as_i64(), payload["failed"].as_i64()), (Some(1), Some(4)));
        let codes: Vec<String> = payload["results"].as_array().unwrap().iter().map(|r| r["errors"][0]["code"].as_str().unwrap_or("").to_owned()).collect();
        assert_eq!(codes, ["", "NOT_ASSIGNED", "NOT_FOUND", "NOT_FOUND", "NOT_ASSIGNED"]);

        let bad = app.graphql(&app.token(Role::Admin), CREATE, json!({ "i": { "name": " ", "tags": [""], "validityDays": 0, "expiringSoonDays": -1 } })).await;
        let mut fields = bad.field_errors();
        fields.sort();
        assert_eq!(fields, vec![
            ("input.expiringSoonDays".to_owned(), "OUT_OF_RANGE".to_owned()),
            ("input.name".to_owned(), "REQUIRED".to_owned()),
            ("input.tags[0]".to_owned(), "REQUIRED".to_owned()),
            ("input.validityDays".to_owned(), "OUT_OF_RANGE".to_owned()),
        ]);
        let taken = app.graphql(&app.token(Role::Admin), CREATE, json!({ "i": { "name": "A", "tags": [] } })).await;
        assert_eq!(taken.error_code(), Some("CONFLICT"));
        let viewer = app.graphql(&app.token(Role::Viewer), CREATE, json!({ "i": { "name": "V", "tags": [] } })).await;
        assert_eq!(viewer.error_code(), Some("FORBIDDEN"));
        let listed = app.graphql(&app.token(Role::Viewer), "{ learningTracks { name tags expiringSoonDays } }", Value::Null).await;
        assert_eq!(listed.data()["learningTracks"], json!([{ "name": "A", "tags": ["a"], "expiringSoonDays": 30 }, { "name": "B", "tags": ["b"], "expiringSoonDays": 30 }]));
    }
}

db_test! {
    async fn the_summary_counts_what_each_user_shows(app) {
        let tracks = [
            track(&app, json!({ "name": "T0", "tags": ["t0"], "validityDays": 30, "expiringSoonDays": 10, "dueDays": 3 })).await,
            track(&app, json!({ "name": "T1", "tags": ["t1"], "validityDays": 5, "expiringSoonDays": 2 })).await,
            track(&app, json!({ "name": "T2", "tags": ["t2"], "dueDays": 1 })).await,
        ];
        let start = Utc::now();
        let mut completions = Vec::new();
        // 1,000 users: every combination of the three tags, completions spread over time.
        let users: Vec<Value> = (0..1000)
            .map(|i: usize| {
                let tags: Vec<String> = (0..3).filter(|t| (i >> t) & 1 == 1).map(|t| format!("t{t}")).collect();
                json!({ "externalId": format!("u{i}"), "email": format!("u{i}@example.com"), "firstName": "U", "lastName": "P", "tags": tags })
            })
            .collect();
        for batch in users.chunks(20) {
            for response in futures_util::future::join_all(batch.iter().map(|u| import(&app, u.clone(), Value::Null))).await {
                response.data();
            }
        }
        for i in 0..1000usize {
            for (t, track) in tracks.iter().enumerate() {
                if (i >> t) & 1 == 1 && (i / 8 + t) % 3 != 0 {
                    let when = start + Duration::hours(((i * 7 + t * 13) % 200) as i64);
                    completions.push(json!({ "user": { "externalId": format!("u{i}") }, "track": track, "completedAt": when.to_rfc3339() }));
                }
            }
        }
        app.graphql(&app.token(Role::Admin), COMPLETE, json!({ "c": completions })).await.data();
        let query = "query($at: DateTime) {
            complianceSummary(asOf: $at) { notCompliant expiringSoon uncompleted completed noTracksAssigned }
            users(first: 500) { edges { node { learningTrackStatus(asOf: $at) } } }
            more: users(first: 500, after: \"aWQ6NTAw\") { edges { node { learningTrackStatus(asOf: $at) } } }
        }";
        // Ids run from 1 to 1,000 in a fresh database: the second page starts after id 500
        // (its cursor is base64 of `id:500`).
        let mut seen = std::collections::HashSet::new();
        for days in [0, 2, 4, 8, 26, 40] {
            let instant = start + Duration::days(days);
            let response = app.graphql(&app.token(Role::Viewer), query, json!({ "at": instant.to_rfc3339() })).await;
            let data = response.data();
            let mut counted = std::collections::HashMap::new();
            let edges: Vec<&Value> = data["users"]["edges"].as_array().unwrap().iter().chain(data["more"]["edges"].as_array().unwrap()).collect();
            assert_eq!(edges.len(), 1000);
            for edge in edges {
                *counted.entry(edge["node"]["learningTrackStatus"].as_str().unwrap().to_owned()).or_insert(0) += 1;
            }
            let summary = &data["complianceSummary"];
            for (field, status) in [("notCompliant", "NOT_COMPLIANT"), ("expiringSoon", "EXPIRING_SOON"), ("uncompleted", "UNCOMPLETED"), ("completed", "COMPLETED"), ("noTracksAssigned", "NO_TRACKS_ASSIGNED")] {
                assert_eq!(summary[field].as_i64().unwrap(), counted.get(status).copied().unwrap_or(0), "day {days}: {field}");
            }
            seen.extend(counted.keys().cloned());
        }
        assert_eq!(seen.len(), 5, "every status occurs on some day: {seen:?}");

        // Dashboards filter users by their status now; the counts agree with the summary.
        let filtered = "query($s: LearningTrackStatus!) {
            complianceSummary { notCompliant expiringSoon uncompleted completed noTracksAssigned }
            users(filter: { learningTrackStatus: $s }) { totalCount edges { node { learningTrackStatus } } }
        }";
        for (field, status) in [("notCompliant", "NOT_COMPLIANT"), ("expiringSoon", "EXPIRING_SOON"), ("uncompleted", "UNCOMPLETED"), ("completed", "COMPLETED"), ("noTracksAssigned", "NO_TRACKS_ASSIGNED")] {
            let response = app.graphql(&app.token(Role::Viewer), filtered, json!({ "s": status })).await;
            let data = response.data();
            assert_eq!(data["users"]["totalCount"], data["complianceSummary"][field], "{status}");
            for edge in data["users"]["edges"].as_array().unwrap() {
                assert_eq!(edge["node"]["learningTrackStatus"], status);
            }
        }
    }
}

async fn statements_per_page(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    // No job workers: their polling would count among the statements.
    let server = ServerProcess::start(&database.url, &[("ROSTER_WORKERS", "0")]);
    server
        .graphql(
            CREATE,
            json!({ "i": { "name": "T", "tags": ["t"], "validityDays": 30, "dueDays": 5 } }),
        )
        .await
        .data();
    server
        .import_users((0..100).map(|i| {
            json!({
                "externalId": format!("u{i}"), "email": format!("u{i}@example.com"), "firstName": "U",
                "lastName": "V", "tags": ["t"], "attributes": [{ "name": "grade", "value": "1" }],
            })
        }))
        .await;
    let query = "query($first: Int) { users(first: $first) { edges { node {
        learningTrackStatus learningTracks { track { name tags } status assignedAt } attributes { name }
    } } } }";
    let mut counts = Vec::new();
    for first in [100, 10, 1] {
        let (statements, data) = server
            .statements_for(query, json!({ "first": first }))
            .await;
        let edges = data["users"]["edges"].as_array().unwrap().clone();
        assert_eq!(edges.len(), first);
        assert_eq!(edges[0]["node"]["learningTrackStatus"], "UNCOMPLETED");
        counts.push(statements);
    }
    // The page, the attributes, and the tracks, their tags, completions and assignments.
    assert_eq!(
        counts,
        [6.0, 6.0, 6.0],
        "statements for pages of 100, 10 and 1 users"
    );
}

each_backend!(a_page_with_compliance_runs_a_constant_number_of_statements => statements_per_page);

db_test! {
    async fn assignments_follow_tags_changed_at_the_same_time(app) {
        let admin = app.token(Role::Admin);
        for round in 0..10 {
            let tag = format!("r{round}");
            let user = json!({ "externalId": format!("u{round}"), "email": format!("u{round}@example.com"), "firstName": "U", "lastName": "P", "tags": [tag] });
            let track_input = json!({ "i": { "name": format!("T{round}"), "tags": [tag] } });
            let (created, imported) = futures_util::join!(
                app.graphql(&admin, CREATE, track_input),
                import(&app, user, Value::Null),
            );
            created.data();
            imported.data();
            let tracks = &progress(&app, &format!("u{round}"), Utc::now() + Duration::seconds(1)).await["user"]["learningTracks"];
            assert_eq!(tracks.as_array().unwrap().len(), 1, "round {round}: the new user has the new track");
        }
    }
}

db_test! {
    async fn the_status_filter_lists_the_users_of_a_status_on_the_day_asked(app) {
        track(&app, json!({ "name": "Fire safety", "tags": ["staff"], "dueDays": 10 })).await;
        person(&app, "due", json!(["staff"])).await;
        let later = Utc::now() + Duration::days(20);
        let query = "query($s: LearningTrackStatus!, $at: DateTime) {
            complianceSummary(asOf: $at) { uncompleted notCompliant }
            users(filter: { learningTrackStatus: $s, asOf: $at }) { totalCount nodes { externalId } }
        }";
        let listed = |status: &'static str, at: Option<DateTime<Utc>>| {
            let app = &app;
            async move {
                let variables = json!({ "s": status, "at": at.map(|at| at.to_rfc3339()) });
                let response = app.graphql(&app.token(Role::Viewer), query, variables).await;
                response.data().clone()
            }
        };
        let now = listed("UNCOMPLETED", None).await;
        assert_eq!(now["users"]["nodes"], json!([{ "externalId": "due" }]));
        assert_eq!(listed("NOT_COMPLIANT", None).await["users"]["totalCount"], 0);
        let ahead = listed("NOT_COMPLIANT", Some(later)).await;
        assert_eq!(ahead["users"]["nodes"], json!([{ "externalId": "due" }]));
        assert_eq!(ahead["complianceSummary"]["notCompliant"], 1);
        assert_eq!(listed("UNCOMPLETED", Some(later)).await["users"]["totalCount"], 0);
    }
}

/// The names of the tracks `id` is assigned now.
async fn assigned(app: &TestApp, id: &str) -> Vec<String> {
    progress(app, id, Utc::now()).await["user"]["learningTracks"]
        .as_array()
        .expect("tracks")
        .iter()
        .map(|t| t["track"]["name"].as_str().expect("a name").to_owned())
        .collect()
}

const JOB: &str = "query($id: ID!) { importJob(id: $id) { status } }";

db_test! {
    /// A bulk job's users take the tracks their tags call for, as an `importUser` does:
    /// new users, and users whose tags the job changes.
    async fn a_jobs_users_follow_their_tags_into_tracks(app) {
        track(&app, json!({ "name": "Safety", "tags": ["safety"], "expiringSoonDays": 0 })).await;
        person(&app, "kept", json!(["safety"])).await;
        let user = |id: &str, tags: Value| {
            json!({ "externalId": id, "email": format!("{id}@example.com"), "firstName": id,
                    "lastName": "P", "tags": tags })
        };
        let id = app
            .submit_job(json!([user("new", json!(["Safety"])), user("kept", json!(["other"]))]), Value::Null)
            .await;
        assert_eq!(app.finished_job(JOB, &json!(id)).await["status"], "COMPLETED");

        assert_eq!(assigned(&app, "new").await, ["Safety"], "a new user with the tag");
        assert!(assigned(&app, "kept").await.is_empty(), "a user who lost the tag");
    }
}

db_test! {
    /// A revert puts a user's tags back, and the tracks they call for with them.
    async fn a_revert_brings_the_tracks_back_with_the_tags(app) {
        track(&app, json!({ "name": "Safety", "tags": ["safety"], "expiringSoonDays": 0 })).await;
        person(&app, "u", json!(["safety"])).await;
        let id = app
            .submit_job(
                json!([{ "externalId": "u", "email": "u@example.com", "firstName": "u",
                         "lastName": "P", "tags": [] }]),
                Value::Null,
            )
            .await;
        assert_eq!(app.finished_job(JOB, &json!(id)).await["status"], "COMPLETED");
        assert!(assigned(&app, "u").await.is_empty());

        let revert = app.revert_job(&id).await;
        assert_eq!(app.finished_job(JOB, &revert).await["status"], "COMPLETED");

        assert_eq!(assigned(&app, "u").await, ["Safety"]);
    }
}
