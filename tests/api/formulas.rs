//! Cells a spreadsheet would run as a formula: `importUsersCsv` reads the `'` that keeps
//! them text away again.

use roster::auth::Role;
use serde_json::{Value, json};

use crate::helpers::{TestApp, db_test};

const UPLOAD: &str = "mutation($file: Upload!) { importUsersCsv(file: $file) { id warnings } }";

const JOB: &str = "query($id: ID!) { importJob(id: $id) {
    status summary { created updated unchanged failed }
    rows(first: 10, onlyFailed: true) { edges { node { errors { field code } } } }
} }";

const USER: &str = "query($id: String!) { user(lookup: { externalId: $id }) {
    title phone city attributes { name value type }
} }";

/// Uploads `file` with `importUsersCsv`; answers the job once it is finished.
async fn uploaded(app: &TestApp, file: &str) -> Value {
    let response = app
        .upload(
            &app.token(Role::Admin),
            UPLOAD,
            json!({}),
            file.as_bytes().to_vec(),
        )
        .await;
    let submitted = &response.data()["importUsersCsv"];
    assert_eq!(submitted["warnings"], json!([]));
    app.finished_job(JOB, &submitted["id"]).await
}

async fn user(app: &TestApp, external_id: &str) -> Value {
    let response = app
        .graphql(&app.token(Role::Viewer), USER, json!({ "id": external_id }))
        .await;
    response.data()["user"].clone()
}

db_test! {
    async fn a_hand_made_file_s_quote_before_a_formula_character_is_dropped(app) {
        let file = "externalId,email,firstName,lastName,title,phone,attr:score:NUMBER,city\n\
                    h1,h1@example.com,Hana,Hand,'=x,'+380971111111,'-5,'90s\n";
        let job = uploaded(&app, file).await;
        assert_eq!(job["status"], "COMPLETED", "{job}");
        assert_eq!(
            user(&app, "h1").await,
            json!({ "title": "=x", "phone": "+380971111111", "city": "'90s",
                    "attributes": [{ "name": "score", "value": "-5", "type": "NUMBER" }] })
        );
    }
}
