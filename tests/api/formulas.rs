//! Cells a spreadsheet would run as a formula: the users export and both kinds of
//! failed-rows file write them after a `'` that keeps them text, and `importUsersCsv` reads
//! that `'` away again, so an export uploaded again changes nothing.

use roster::auth::Role;
use serde_json::{Value, json};

use crate::helpers::{TestApp, db_test};
use crate::users::import;

const HYPERLINK: &str = r#"=HYPERLINK("http://x","y")"#;
const COMMAND: &str = "+cmd|' /C calc'!A0";
const SUM: &str = "@SUM(1)";
const PHONE: &str = "+380971111111";

const UPLOAD: &str = "mutation($file: Upload!) { importUsersCsv(file: $file) { id warnings } }";

const JOB: &str = "query($id: ID!) { importJob(id: $id) {
    status summary { created updated unchanged failed }
    rows(first: 10, onlyFailed: true) { edges { node { errors { field code } } } }
} }";

const USER: &str = "query($id: String!) { user(lookup: { externalId: $id }) {
    title phone city department position attributes { name value type }
} }";

/// A job submitted by `importUsersCsv`, once it is finished.
struct Uploaded {
    id: String,
    warnings: Value,
    job: Value,
}

async fn upload(app: &TestApp, file: impl Into<Vec<u8>>) -> Uploaded {
    let response = app
        .upload(&app.token(Role::Admin), UPLOAD, json!({}), file.into())
        .await;
    let submitted = &response.data()["importUsersCsv"];
    Uploaded {
        id: submitted["id"].as_str().unwrap().to_owned(),
        warnings: submitted["warnings"].clone(),
        job: app.finished_job(JOB, &submitted["id"]).await,
    }
}

async fn user(app: &TestApp, external_id: &str) -> Value {
    let response = app
        .graphql(&app.token(Role::Viewer), USER, json!({ "id": external_id }))
        .await;
    response.data()["user"].clone()
}

/// A downloaded file's records, its header first, as a spreadsheet finds its cells.
async fn download(app: &TestApp, path: &str, delimiter: u8) -> Vec<Vec<String>> {
    let response = app.get_with(path, &app.token(Role::Viewer)).await;
    assert_eq!(response.status(), 200);
    let bytes = response.bytes().await.unwrap();
    csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .from_reader(bytes.as_ref())
        .records()
        .map(|record| record.unwrap().iter().map(str::to_owned).collect())
        .collect()
}

/// Asserts the cells of `row` under the columns of `header` that `expected` names.
fn assert_cells(header: &[String], row: &[String], expected: &[(&str, String)]) {
    for (column, cell) in expected {
        let i = header.iter().position(|name| name == column);
        let i = i.unwrap_or_else(|| panic!("no column {column}: {header:?}"));
        assert_eq!(&row[i], cell, "{column}");
    }
}

db_test! {
    async fn the_export_writes_formulas_as_text(app) {
        let sent = json!({ "externalId": "x1", "email": "x1@example.com", "firstName": "Ex",
                           "lastName": "Port", "title": HYPERLINK, "department": COMMAND,
                           "position": SUM, "phone": PHONE,
                           "attributes": [{ "name": "score", "value": "-5", "type": "NUMBER" }] });
        import(&app, sent, Value::Null).await.data();

        let rows = download(&app, "/exports/users.csv", b',').await;
        assert_cells(&rows[0], &rows[1], &[
            ("title", format!("'{HYPERLINK}")),
            ("department", format!("'{COMMAND}")),
            ("position", format!("'{SUM}")),
            ("phone", format!("'{PHONE}")),
            ("attr:score:NUMBER", "'-5".to_owned()),
            ("firstName", "Ex".to_owned()),
            ("city", String::new()),
        ]);
    }
}

db_test! {
    async fn a_file_job_s_failed_rows_write_formulas_as_text(app) {
        let file = format!(
            "uid;email;firstname;secondname;city;department;position;phone;attr:score:NUMBER;@note\n\
             f1;not-an-email;Fi;Le;\"{}\";{COMMAND};{SUM};{PHONE};-5;=1+1\n",
            HYPERLINK.replace('"', "\"\""),
        );
        let uploaded = upload(&app, file).await;
        assert_eq!(uploaded.warnings, json!([r#"unknown columns, ignored in every row: "@note""#]));
        assert_eq!(uploaded.job["summary"]["failed"], 1, "{}", uploaded.job);

        let path = format!("/jobs/{}/failed-rows.csv", uploaded.id);
        let rows = download(&app, &path, b';').await;
        assert_eq!(rows[0][9..], ["'@note", "errors"], "header cells too");
        assert_cells(&rows[0], &rows[1], &[
            ("city", format!("'{HYPERLINK}")),
            ("department", format!("'{COMMAND}")),
            ("position", format!("'{SUM}")),
            ("phone", format!("'{PHONE}")),
            ("attr:score:NUMBER", "'-5".to_owned()),
            ("'@note", "'=1+1".to_owned()),
            ("email", "not-an-email".to_owned()),
        ]);
    }
}

db_test! {
    async fn an_import_users_job_s_failed_rows_write_formulas_as_text(app) {
        // A failed row comes back as it was sent, a leading tab or carriage return and all.
        let users = json!([{ "externalId": "j1", "email": "not-an-email", "firstName": "Jo",
                             "lastName": "Son", "city": HYPERLINK, "department": COMMAND,
                             "position": SUM, "phone": PHONE, "company": "\t=1+1",
                             "title": "\r-1" }]);
        let id = app.submit_job(users, json!({})).await;
        let job = app.finished_job(JOB, &json!(id)).await;
        assert_eq!(job["summary"]["failed"], 1, "{job}");

        let rows = download(&app, &format!("/jobs/{id}/failed-rows.csv"), b',').await;
        assert_cells(&rows[0], &rows[1], &[
            ("city", format!("'{HYPERLINK}")),
            ("department", format!("'{COMMAND}")),
            ("position", format!("'{SUM}")),
            ("phone", format!("'{PHONE}")),
            ("company", "'\t=1+1".to_owned()),
            ("title", "'\r-1".to_owned()),
            ("firstName", "Jo".to_owned()),
        ]);
    }
}

db_test! {
    async fn an_export_of_formulas_uploaded_again_changes_nothing(app) {
        let sent = json!({ "externalId": "r1", "email": "r1@example.com", "firstName": "Ro",
                           "lastName": "Und", "title": HYPERLINK, "department": COMMAND,
                           "position": SUM, "phone": PHONE, "city": "'=x",
                           "attributes": [{ "name": "score", "value": "-5", "type": "NUMBER" }] });
        import(&app, sent, Value::Null).await.data();
        let stored = json!({ "title": HYPERLINK, "department": COMMAND, "position": SUM,
                             "phone": PHONE, "city": "'=x",
                             "attributes": [{ "name": "score", "value": "-5", "type": "NUMBER" }] });
        assert_eq!(user(&app, "r1").await, stored, "the API stores a value as it is sent");

        let response = app.get_with("/exports/users.csv", &app.token(Role::Viewer)).await;
        let export = response.bytes().await.unwrap().to_vec();
        let uploaded = upload(&app, export).await;
        assert_eq!(uploaded.warnings, json!([]));
        assert_eq!(
            uploaded.job["summary"],
            json!({ "created": 0, "updated": 0, "unchanged": 1, "failed": 0 }),
            "{}",
            uploaded.job
        );
        assert_eq!(user(&app, "r1").await, stored);
    }
}

db_test! {
    async fn a_hand_made_file_s_quote_before_a_formula_character_is_dropped(app) {
        let file = "externalId,email,firstName,lastName,title,phone,attr:score:NUMBER,city\n\
                    h1,h1@example.com,Hana,Hand,'=x,'+380971111111,'-5,'90s\n";
        let uploaded = upload(&app, file).await;
        assert_eq!(uploaded.job["status"], "COMPLETED", "{}", uploaded.job);
        assert_eq!(
            user(&app, "h1").await,
            json!({ "title": "=x", "phone": PHONE, "city": "'90s", "department": null,
                    "position": null,
                    "attributes": [{ "name": "score", "value": "-5", "type": "NUMBER" }] })
        );
    }
}
