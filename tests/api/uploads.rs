//! `importUsersCsv` and `GET /jobs/{id}/failed-rows.csv`: seed-001 files with bad rows
//! fixed and sent again, files refused whole, and uploads that are streamed.

use base64::Engine;
use roster::auth::Role;
use serde_json::{Value, json};

use crate::helpers::{GraphQLResponse, ServerProcess, TestApp, TestDatabase, db_test, peak_rss};

const UPLOAD: &str = "mutation($file: Upload!, $options: ImportOptions) {
    importUsersCsv(file: $file, options: $options) { id status total warnings failedRowsCsvUrl }
}";

const JOB: &str = "query($id: ID!) { importJob(id: $id) {
    status total processed warnings failedRowsCsvUrl
    summary { created updated unchanged failed }
    rows(first: 500, onlyFailed: true) { totalCount edges { node { index lookupKey errors { field code } } } }
} }";

const USERS: &str = "query { users(first: 1) { totalCount } }";

const SEED_HEADER: [&str; 20] = [
    "uid",
    "secondname",
    "firstname",
    "patronymic",
    "login",
    "email",
    "birth_date",
    "gender",
    "is_active",
    "city",
    "department",
    "position",
    "phone",
    "tags",
    "user_field1",
    "customInfo",
    "language",
    "manager_uid",
    "legacy_code",
    "date_of_employment",
];

/// Rows `0..2500` have a manager later in the file (rows `2500..5000`, a few levels deep).
fn manager_of(i: usize) -> Option<usize> {
    let manager = 2500 + i / 2;
    (manager > i && manager < 5000).then_some(manager)
}

/// Rows that are nobody's manager and that the file gets wrong, one way or another.
fn is_bad(i: usize) -> bool {
    i < 2500 && matches!(i % 100, 7 | 57)
}

/// Seed 001's row `i`; `bad` spoils one field (which one depends on `i`).
fn seed_row(i: usize, bad: bool) -> Vec<String> {
    let info = base64::engine::general_purpose::STANDARD.encode(format!(r#"{{"n":{i}}}"#));
    let mut row = vec![
        format!("s{i}"),
        format!("Surname{i}"),
        format!("Name{i}"),
        String::new(),
        format!("login{i}"),
        format!("s{i}@example.com"),
        format!("{:02}.07.1988", 1 + i % 28),
        (i % 2).to_string(),
        "1".to_owned(),
        "Kyiv".to_owned(),
        "Sales; North".to_owned(),
        "Clerk".to_owned(),
        format!("+38097{i:07}"),
        format!("staff, team-{}", i % 5),
        format!("Cluster{}", i % 3),
        info,
        "uk".to_owned(),
        manager_of(i).map(|m| format!("s{m}")).unwrap_or_default(),
        // A cell over two lines, in a column Roster does not know.
        if i == 3 {
            "old\nsystem".to_owned()
        } else {
            format!("L{i}")
        },
        "2020-01-15".to_owned(),
    ];
    if bad {
        match (i / 7) % 4 {
            0 => row[5] = "not-an-email".to_owned(),
            1 => row[7] = "2".to_owned(),
            2 => row[1] = String::new(),
            _ => row[6] = "31.02.1990".to_owned(),
        }
    }
    row
}

/// A CSV file: `;`-separated, with a byte order mark, as Excel saves it.
fn seed_file(header: &[String], rows: impl IntoIterator<Item = Vec<String>>) -> Vec<u8> {
    let mut writer = csv::WriterBuilder::new()
        .delimiter(b';')
        .from_writer(b"\xEF\xBB\xBF".to_vec());
    writer.write_record(header).unwrap();
    for row in rows {
        writer.write_record(&row).unwrap();
    }
    writer.into_inner().unwrap()
}

async fn upload(app: &TestApp, file: Vec<u8>, options: Value) -> GraphQLResponse {
    app.upload(
        &app.token(Role::Admin),
        UPLOAD,
        json!({ "options": options }),
        file,
    )
    .await
}

async fn finished(app: &TestApp, id: &str) -> Value {
    app.finished_job(JOB, &json!(id)).await
}

async fn user_count(app: &TestApp) -> u64 {
    let response = app
        .graphql(&app.token(Role::Viewer), USERS, json!({}))
        .await;
    response.data()["users"]["totalCount"].as_u64().unwrap()
}

async fn job_count(app: &TestApp) -> u64 {
    let query = "query { importJobs { totalCount } }";
    let response = app
        .graphql(&app.token(Role::Viewer), query, json!({}))
        .await;
    response.data()["importJobs"]["totalCount"]
        .as_u64()
        .unwrap()
}

db_test! {
    async fn a_seed_file_with_bad_rows_is_fixed_and_sent_again(app) {
        let header: Vec<String> = SEED_HEADER.iter().map(|h| (*h).to_owned()).collect();
        let file = seed_file(&header, (0..5000).map(|i| seed_row(i, is_bad(i))));
        let response = upload(&app, file, json!({ "description": "HR export" })).await;
        let job = &response.data()["importUsersCsv"];
        assert_eq!(job["status"], "QUEUED");
        assert_eq!(job["total"], 5000);
        assert_eq!(
            job["warnings"],
            json!([r#"unknown columns, ignored in every row: "legacy_code""#])
        );
        let id = job["id"].as_str().unwrap().to_owned();

        let job = finished(&app, &id).await;
        assert_eq!(job["status"], "COMPLETED_WITH_ERRORS", "{job}");
        assert_eq!(job["summary"]["created"], 4950);
        assert_eq!(job["summary"]["failed"], 50);
        assert_eq!(job["failedRowsCsvUrl"], format!("/jobs/{id}/failed-rows.csv"));
        // Each failed row names its line (the header is line 1, and row 3 spans two lines)
        // and the file's own column.
        let failed = job["rows"]["edges"].as_array().unwrap();
        assert_eq!(failed.len(), 50);
        for edge in failed {
            let row = &edge["node"];
            let i = row["index"].as_u64().unwrap() as usize;
            assert!(is_bad(i), "{row}");
            let line = i + 2 + usize::from(i > 3);
            assert_eq!(row["lookupKey"], format!("default:s{i} (line {line})"));
            let expected = ["email", "gender", "secondname", "birth_date"][(i / 7) % 4];
            assert_eq!(row["errors"][0]["field"], expected, "{row}");
        }
        assert_eq!(user_count(&app).await, 4950);

        // The failed rows come back as they were sent, with the reasons.
        let download = app
            .get_with(&format!("/jobs/{id}/failed-rows.csv"), &app.token(Role::Viewer))
            .await;
        assert_eq!(download.status(), 200);
        assert_eq!(download.headers()["content-type"], "text/csv; charset=utf-8");
        let bytes = download.bytes().await.unwrap();
        assert!(bytes.starts_with(b"\xEF\xBB\xBFuid;secondname;"), "the file's own form");
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(b';')
            .from_reader(&bytes[3..]);
        let mut expected_header = header.clone();
        expected_header.push("errors".to_owned());
        assert_eq!(reader.headers().unwrap(), &csv::StringRecord::from(expected_header.clone()));
        let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(records.len(), 50);
        let mut fixed = Vec::new();
        for record in &records {
            let i: usize = record[0][1..].parse().unwrap();
            // The phone after a `'`, as a spreadsheet would run it otherwise.
            let mut sent = seed_row(i, true);
            sent[12] = format!("'{}", sent[12]);
            assert_eq!(record.iter().take(sent.len()).collect::<Vec<_>>(), sent);
            let errors = &record[sent.len()];
            let column = ["email", "gender", "secondname", "birth_date"][(i / 7) % 4];
            assert!(errors.starts_with(&format!("{column}: ")), "{errors}");
            // Fixed by hand; the errors column may stay.
            let mut row = seed_row(i, false);
            row.push(errors.to_owned());
            fixed.push(row);
        }
        let forbidden = app.get(&format!("/jobs/{id}/failed-rows.csv")).await;
        assert_eq!(forbidden.status(), 401, "a token is needed");

        let response = upload(&app, seed_file(&expected_header, fixed), json!({})).await;
        let job = &response.data()["importUsersCsv"];
        assert_eq!(job["total"], 50);
        let id = job["id"].as_str().unwrap().to_owned();
        let job = finished(&app, &id).await;
        assert_eq!(job["status"], "COMPLETED", "{job}");
        assert_eq!(job["summary"]["created"], 50);
        assert_eq!(job["failedRowsCsvUrl"], Value::Null);
        assert_eq!(user_count(&app).await, 5000);

        // Every field of the seed's row landed where it belongs.
        let query = r#"query { user(lookup: { externalId: "s14" }) {
            lastName firstName login email birthDate gender active city department phone tags
            attributes { name value } customInfo language employmentStartDate
            approvers { label approver { externalId } }
        } }"#;
        let response = app.graphql(&app.token(Role::Viewer), query, json!({})).await;
        assert_eq!(
            response.data()["user"],
            json!({
                "lastName": "Surname14", "firstName": "Name14", "login": "login14",
                "email": "s14@example.com", "birthDate": "1988-07-15", "gender": "MALE",
                "active": true, "city": "Kyiv", "department": "Sales; North",
                "phone": "+380970000014", "tags": ["staff", "team-4"],
                "attributes": [{ "name": "user_field1", "value": "Cluster2" }],
                "customInfo": { "n": 14 }, "language": "UK",
                "employmentStartDate": "2020-01-15",
                "approvers": [{ "label": "MANAGER", "approver": { "externalId": "s2507" } }],
            })
        );
    }
}

db_test! {
    async fn an_import_users_job_s_failed_rows_come_back_as_csv_to_fix_and_upload(app) {
        let admin = app.token(Role::Admin);
        let single = "mutation($u: UserImportInput!) { importUser(user: $u) { action } }";
        let existing = json!({ "externalId": "u0", "email": "u0@example.com", "firstName": "Una",
                               "lastName": "Old", "middleName": "Maria", "city": "Lviv" });
        let response = app.graphql(&admin, single, json!({ "u": existing })).await;
        assert_eq!(response.data()["importUser"]["action"], "CREATED");

        let users = json!([
            { "externalId": "m1", "email": "m1@example.com", "firstName": "Max", "lastName": "One" },
            { "externalId": "u1", "email": "u1@example.com", "firstName": "Ula", "lastName": "Two",
              "gender": "FEMALE", "tags": ["staff", "team, north"],
              "attributes": [{ "name": "level", "value": "x3", "type": "NUMBER" },
                             { "name": "desk", "value": "A-1", "class": "office" }],
              "customInfo": { "n": 1 },
              "approvers": [{ "approver": { "email": "boss@example.com" },
                              "label": "HIGHER_MANAGER", "canApprove": false }] },
            { "externalId": "u0", "email": "u0@example.com", "firstName": "Una", "lastName": "Old",
              "middleName": null, "phone": "call me" },
            { "externalId": "u2", "email": "not-an-email", "firstName": "Uwe", "lastName": "Three",
              "active": false, "managerExternalId": "m1" },
            { "externalId": "boss", "email": "boss@example.com", "firstName": "Bo", "lastName": "Ss" },
        ]);
        let id = app.submit_job(users, json!({})).await;
        let job = finished(&app, &id).await;
        assert_eq!(job["status"], "COMPLETED_WITH_ERRORS", "{job}");
        assert_eq!(job["summary"]["failed"], 3);
        assert_eq!(job["failedRowsCsvUrl"], format!("/jobs/{id}/failed-rows.csv"));

        let path = format!("/jobs/{id}/failed-rows.csv");
        let other_tenant = app.token_for(Role::Admin, Some("other"));
        assert_eq!(app.get_with(&path, &other_tenant).await.status(), 404);
        let download = app.get_with(&path, &app.token(Role::Viewer)).await;
        assert_eq!(download.status(), 200);
        let text = download.text().await.unwrap();
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some("externalId,email,firstName,lastName,gender,active,phone,tags,attributes,\
                  customInfo,approvers,managerExternalId,clear,errors")
        );
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        let cells: Vec<Vec<&str>> = records.iter().map(|r| r.iter().collect()).collect();
        assert_eq!(cells.len(), 3);
        assert_eq!(
            cells[0][..12],
            [
                "u1", "u1@example.com", "Ula", "Two", "FEMALE", "", "",
                r#"["staff","team, north"]"#,
                r#"[{"name":"level","value":"x3","type":"NUMBER"},{"name":"desk","value":"A-1","type":"STRING","class":"office"}]"#,
                r#"{"n":1}"#,
                r#"[{"approver":{"email":"boss@example.com"},"label":"HIGHER_MANAGER","canApprove":false}]"#,
                "",
            ]
        );
        assert!(cells[0][13].starts_with("attributes[0].value: "), "{:?}", cells[0]);
        assert_eq!(cells[1][..7], ["u0", "u0@example.com", "Una", "Old", "", "", "call me"]);
        assert_eq!(cells[1][12], "middleName");
        assert!(cells[1][13].starts_with("phone: "), "{:?}", cells[1]);
        assert_eq!((cells[2][1], cells[2][5], cells[2][11]), ("not-an-email", "false", "m1"));
        assert!(cells[2][13].starts_with("email: "), "{:?}", cells[2]);

        // Fixed by hand, errors column and all, and uploaded.
        let mut writer = csv::Writer::from_writer(Vec::new());
        writer.write_record(reader.headers().unwrap()).unwrap();
        for record in &records {
            let fixed: Vec<String> = record
                .iter()
                .map(|cell| match cell {
                    "call me" => "+380971234567".to_owned(),
                    "not-an-email" => "u2@example.com".to_owned(),
                    other => other.replace(r#""x3""#, r#""3""#),
                })
                .collect();
            writer.write_record(&fixed).unwrap();
        }
        let response = upload(&app, writer.into_inner().unwrap(), json!({})).await;
        let upload_id = response.data()["importUsersCsv"]["id"].as_str().unwrap().to_owned();
        let job = finished(&app, &upload_id).await;
        assert_eq!(job["status"], "COMPLETED", "{job}");
        assert_eq!((job["summary"]["created"].as_u64(), job["summary"]["updated"].as_u64()), (Some(2), Some(1)));
        assert_eq!(job["failedRowsCsvUrl"], Value::Null);

        // Every field came through as the JSON row said it.
        let query = r#"query { users(first: 10) { edges { node {
            externalId middleName city phone gender active tags customInfo
            attributes { name value type class }
            approvers { label canApprove approver { externalId } }
        } } } }"#;
        let response = app.graphql(&app.token(Role::Viewer), query, json!({})).await;
        let users: std::collections::HashMap<String, Value> = response.data()["users"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|edge| (edge["node"]["externalId"].as_str().unwrap().to_owned(), edge["node"].clone()))
            .collect();
        assert_eq!(users.len(), 5);
        let u1 = &users["u1"];
        assert_eq!(u1["gender"], "FEMALE");
        assert_eq!(u1["tags"], json!(["staff", "team, north"]));
        assert_eq!(u1["customInfo"], json!({ "n": 1 }));
        assert_eq!(
            u1["attributes"],
            json!([{ "name": "desk", "value": "A-1", "type": "STRING", "class": "office" },
                   { "name": "level", "value": "3", "type": "NUMBER", "class": null }])
        );
        assert_eq!(
            u1["approvers"],
            json!([{ "label": "HIGHER_MANAGER", "canApprove": false, "approver": { "externalId": "boss" } }])
        );
        let u0 = &users["u0"];
        assert_eq!((&u0["middleName"], &u0["city"], &u0["phone"]), (&Value::Null, &json!("Lviv"), &json!("+380971234567")));
        let u2 = &users["u2"];
        assert_eq!(u2["active"], false);
        assert_eq!(u2["approvers"][0]["approver"]["externalId"], "m1");
    }
}

db_test! {
    async fn a_file_that_cannot_be_a_job_is_refused_and_nothing_is_stored(app) {
        let refused = |response: &GraphQLResponse| {
            assert_eq!(response.error_code(), Some("BAD_USER_INPUT"), "{:?}", response.body);
            let errors = &response.body["errors"][0]["extensions"]["fieldErrors"];
            assert_eq!(errors.as_array().map(Vec::len), Some(1), "{errors}");
            assert_eq!(errors[0]["field"], "file");
            errors[0]["message"].as_str().unwrap().to_owned()
        };
        let zip = b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00\xb5U0#\xf4\x00\x00".to_vec();
        let message = refused(&upload(&app, zip, json!({})).await);
        assert!(message.contains("not CSV text in UTF-8"), "{message}");

        let message = refused(&upload(&app, b"uid,mail,name\n1,a@b.c,x\n".to_vec(), json!({})).await);
        assert_eq!(
            message,
            r#"the header (line 1) lacks the required columns email, firstName, lastName (or secondname); it has: "uid", "mail", "name""#
        );

        let header = "externalId,email,firstName,lastName\n";
        let message = refused(&upload(&app, header.as_bytes().to_vec(), json!({})).await);
        assert_eq!(message, "the file has a header but no rows");

        let message = refused(&upload(&app, b"\xEF\xBB\xBF\r\n".to_vec(), json!({})).await);
        assert!(message.starts_with("the file is empty"), "{message}");

        let duplicate = "uid,externalId,email,firstName,lastName\n1,1,a@b.c,A,B\n";
        let message = refused(&upload(&app, duplicate.as_bytes().to_vec(), json!({})).await);
        assert!(message.contains(r#""uid" and "externalId""#), "{message}");

        // A row that is not UTF-8 refuses the whole file, even after rows that were fine.
        let mut file = header.as_bytes().to_vec();
        for i in 0..3000 {
            file.extend(format!("e{i},e{i}@example.com,A,B\n").bytes());
        }
        file.extend(b"e-latin,caf\xe9@example.com,A,B\n");
        let message = refused(&upload(&app, file, json!({})).await);
        assert_eq!(message, "line 3002 is not UTF-8 text; save the file as CSV UTF-8");

        let file = format!("{header}e1,e1@example.com,A,B\n").into_bytes();
        let viewer = app
            .upload(&app.token(Role::Viewer), UPLOAD, json!({}), file.clone())
            .await;
        assert_eq!(viewer.error_code(), Some("FORBIDDEN"));
        let options = json!({ "description": " " });
        let response = upload(&app, file, options).await;
        assert_eq!(response.error_code(), Some("BAD_USER_INPUT"));

        assert_eq!(job_count(&app).await, 0, "no job was stored");
        assert_eq!(user_count(&app).await, 0);
        assert_eq!(
            app.count_rows("import_job_chunks").await,
            0,
            "no row of a refused file was kept"
        );
    }
}

db_test! {
    async fn the_same_file_with_the_same_key_is_the_same_job(app) {
        let file = |n: usize| {
            let mut text = "externalId,email,firstName,lastName\n".to_owned();
            for i in 0..n {
                text.push_str(&format!("k{i},k{i}@example.com,A,B\n"));
            }
            text.into_bytes()
        };
        let options = json!({ "idempotencyKey": "hr-2026-11-24" });
        let first = upload(&app, file(3), options.clone()).await;
        let first = first.data()["importUsersCsv"]["id"].clone();
        let again = upload(&app, file(3), options.clone()).await;
        assert_eq!(again.data()["importUsersCsv"]["id"], first);
        let other = upload(&app, file(4), options).await;
        assert_eq!(other.error_code(), Some("CONFLICT"));
        assert_eq!(job_count(&app).await, 1);
    }
}

#[tokio::test]
async fn an_upload_is_streamed_into_the_job_not_held_in_memory() {
    // A server that only accepts jobs: its memory is the submission's alone.
    let database = TestDatabase::create(crate::helpers::Backend::Sqlite).await;
    let server = ServerProcess::start(&database.url, &[("ROSTER_WORKERS", "0")]);
    let mut file = b"externalId;email;firstName;lastName;attr:notes\n".to_vec();
    let notes = "n".repeat(200);
    let rows = 400_000;
    for i in 0..rows {
        file.extend(format!("m{i};m{i}@example.com;First{i};Last;{notes}\n").bytes());
    }
    let size = file.len() as u64;
    let before = peak_rss(server.pid());
    let response = server.upload(UPLOAD, json!({}), file).await;
    assert_eq!(response.data()["importUsersCsv"]["total"], rows);
    let growth = peak_rss(server.pid()).saturating_sub(before);
    // Held whole, the file alone would take its size, and its parsed rows several times more.
    // Streamed, it grew by 20 to 31 MB (the chunks in flight, SQLite's page caches).
    assert!(
        growth < size / 2,
        "the peak grew by {} MB for a {} MB file",
        growth >> 20,
        size >> 20
    );
}

/// An upload runs under `ROSTER_UPLOAD_TIMEOUT`, not the request timeout meant for JSON
/// requests: storing a big file's rows may take longer.
#[tokio::test]
async fn an_upload_has_its_own_time_limit() {
    let app = crate::helpers::spawn_app_with(crate::helpers::Backend::Sqlite, |config| {
        config.http.request_timeout = std::time::Duration::from_nanos(1);
    })
    .await;
    let admin = app.token(Role::Admin);
    // Big enough that neither request can finish within a tick of the clock.
    let mut file = String::from("externalId,email,firstName,lastName\n");
    for i in 0..5_000 {
        file.push_str(&format!("t{i},t{i}@example.com,T,Row{i}\n"));
    }
    let response = app
        .upload(&admin, UPLOAD, json!({ "file": null }), file.into_bytes())
        .await;
    assert!(
        response.data()["importUsersCsv"]["id"].is_string(),
        "{:?}",
        response.body
    );

    let users: Vec<Value> = (0..5_000)
        .map(|i| {
            json!({ "externalId": format!("j{i}"), "email": format!("j{i}@example.com"),
                    "firstName": "J", "lastName": "Row" })
        })
        .collect();
    let import = "mutation($u: [UserImportInput!]!) { importUsers(users: $u) { id } }";
    let response = app.graphql(&admin, import, json!({ "u": users })).await;
    assert_eq!(response.status, 503);
    assert_eq!(response.error_code(), Some("TIMEOUT"));
    assert_eq!(
        app.count_rows("import_jobs").await,
        1,
        "only the upload's job"
    );
}

/// Uploads a file of two rows that send `secret` as their password, `{prefix}1` good and
/// `{prefix}2` with a bad email; answers the job once it is finished.
async fn password_file_job(app: &TestApp, prefix: &str, secret: &str) -> (String, Value) {
    let header: Vec<String> = ["uid", "secondname", "firstname", "email", "password"]
        .iter()
        .map(|h| (*h).to_owned())
        .collect();
    let rows = vec![
        vec![
            format!("{prefix}1"),
            "Doe".into(),
            "Jo".into(),
            format!("{prefix}1@example.com"),
            secret.into(),
        ],
        vec![
            format!("{prefix}2"),
            "Roe".into(),
            "Al".into(),
            "not-an-email".into(),
            secret.into(),
        ],
    ];
    let response = upload(app, seed_file(&header, rows), json!({})).await;
    let id = response.data()["importUsersCsv"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let job = finished(app, &id).await;
    (id, job)
}

db_test! {
    async fn a_failed_row_s_password_never_comes_back(app) {
        let secret = "Secret-Pass-123";
        let hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA";
        // A file's failed row: its password cell left blank, its errors say so.
        let (id, job) = password_file_job(&app, "p", secret).await;
        assert_eq!(job["summary"]["failed"], 1, "{job}");
        let download = app
            .get_with(&format!("/jobs/{id}/failed-rows.csv"), &app.token(Role::Viewer))
            .await;
        assert_eq!(download.status(), 200);
        let bytes = download.bytes().await.unwrap();
        let text = String::from_utf8(bytes[3..].to_vec()).unwrap();
        assert!(!text.contains(secret), "{text}");
        let mut reader = csv::ReaderBuilder::new().delimiter(b';').from_reader(text.as_bytes());
        let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(records.len(), 1);
        assert_eq!(
            records[0].iter().take(5).collect::<Vec<_>>(),
            ["p2", "Roe", "Al", "not-an-email", ""]
        );
        let errors = &records[0][5];
        assert!(errors.starts_with("email: "), "{errors}");
        assert!(
            errors.ends_with("; password: not returned, as a password never is; fill it in again"),
            "{errors}"
        );

        // An `importUsers` job's failed rows: the same for a password and a hash.
        let users = json!([
            { "externalId": "j1", "email": "bad-one", "firstName": "A", "lastName": "B",
              "password": secret },
            { "externalId": "j2", "email": "bad-two", "firstName": "C", "lastName": "D",
              "passwordHash": hash },
        ]);
        let id = app.submit_job(users, json!({})).await;
        let job = finished(&app, &id).await;
        assert_eq!(job["summary"]["failed"], 2, "{job}");
        let text = app
            .get_with(&format!("/jobs/{id}/failed-rows.csv"), &app.token(Role::Viewer))
            .await
            .text()
            .await
            .unwrap();
        assert!(!text.contains(secret) && !text.contains(hash), "{text}");
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        assert_eq!(
            reader.headers().unwrap().iter().collect::<Vec<_>>(),
            ["externalId", "email", "firstName", "lastName", "password", "passwordHash", "errors"]
        );
        let cells: Vec<Vec<String>> = reader
            .records()
            .map(|r| r.unwrap().iter().map(str::to_owned).collect())
            .collect();
        assert_eq!(cells[0][4..6], ["", ""]);
        assert!(cells[0][6].ends_with("; password: not returned, as a password never is; fill it in again"), "{:?}", cells[0]);
        assert_eq!(cells[1][4..6], ["", ""]);
        assert!(cells[1][6].ends_with("; passwordHash: not returned, as a password never is; fill it in again"), "{:?}", cells[1]);
    }
}

/// The stored input of each row of a job, by index.
async fn stored_inputs(app: &TestApp, id: &str) -> Vec<String> {
    use entity::import_job_chunks::{self as chunks, StoredInput, decode};
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
    let db = app.connect().await;
    let job: i64 = id.parse().unwrap();
    let stored = chunks::Entity::find()
        .filter(chunks::Column::JobId.eq(job))
        .order_by_asc(chunks::Column::FirstIdx)
        .all(&db)
        .await
        .unwrap();
    let _ = db.close().await;
    stored
        .into_iter()
        .flat_map(|chunk| decode::<StoredInput>(&chunk.input.unwrap()).unwrap())
        .map(|row| row.input.get().to_owned())
        .collect()
}

db_test! {
    async fn a_row_keeps_its_password_only_until_its_user_is_written(app) {
        let secret = "Secret-Pass-123";
        let hash = "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW";
        let users = json!([
            { "externalId": "k1", "email": "k1@example.com", "firstName": "A", "lastName": "B",
              "password": secret },
            { "externalId": "k2", "email": "bad", "firstName": "C", "lastName": "D",
              "password": secret },
            { "externalId": "k3", "email": "k3@example.com", "firstName": "E", "lastName": "F",
              "passwordHash": hash },
            { "externalId": "k4", "email": "k4@example.com", "firstName": "G", "lastName": "H" },
        ]);
        // A dry run writes nothing, so its rows keep what they sent.
        let dry = app.submit_job(users.clone(), json!({ "dryRun": true })).await;
        finished(&app, &dry).await;
        let inputs = stored_inputs(&app, &dry).await;
        assert!(inputs[0].contains(secret) && inputs[2].contains(hash), "{inputs:?}");

        let id = app.submit_job(users.clone(), json!({})).await;
        let job = finished(&app, &id).await;
        assert_eq!(job["summary"]["created"], 3, "{job}");
        let inputs = stored_inputs(&app, &id).await;
        assert!(!inputs[0].contains(secret) && !inputs[0].contains("password"), "{}", inputs[0]);
        assert!(inputs[1].contains(secret), "a failed row keeps it, to be retried: {}", inputs[1]);
        assert!(!inputs[2].contains(hash), "{}", inputs[2]);
        let unchanged: Value = serde_json::from_str(&inputs[3]).unwrap();
        assert_eq!(unchanged, users[3]);
        // The rest of a row stays as it was sent, and the password did its work.
        let first: Value = serde_json::from_str(&inputs[0]).unwrap();
        let mut sent = users[0].clone();
        sent.as_object_mut().unwrap().remove("password");
        assert_eq!(first, sent);
        assert!(app.stored_user("k1").await.unwrap().password_hash.is_some());
        assert!(app.stored_user("k3").await.unwrap().password_hash.is_some());

        // An atomic job forgets them when it commits.
        let more = json!([{ "externalId": "k5", "email": "k5@example.com", "firstName": "I",
                            "lastName": "J", "password": secret }]);
        let atomic = app.submit_job(more, json!({ "atomic": true })).await;
        assert_eq!(finished(&app, &atomic).await["status"], "COMPLETED");
        assert!(!stored_inputs(&app, &atomic).await[0].contains(secret));

        // A file's row: its password cell is blanked.
        let (id, job) = password_file_job(&app, "f", secret).await;
        assert_eq!(job["summary"]["created"], 1, "{job}");
        let inputs = stored_inputs(&app, &id).await;
        assert_eq!(inputs[0], r#"["f1","Doe","Jo","f1@example.com",""]"#);
        assert!(inputs[1].contains(secret), "{}", inputs[1]);
        assert!(app.stored_user("f1").await.unwrap().password_hash.is_some());
    }
}
