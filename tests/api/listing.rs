//! `users(first, after, filter)` and `GET /exports/users.csv`.

use std::collections::HashSet;

use futures_util::future::join_all;
use roster::auth::Role;
use serde_json::{Value, json};

use crate::helpers::{TestApp, db_test};
use crate::users::{import, import_as};

const PAGE: &str = "query($first: Int, $after: String, $filter: UserFilter) {
    users(first: $first, after: $after, filter: $filter) {
        totalCount
        pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
        edges { cursor node { id externalId } }
    }
}";

/// Imports `count` users named `u-000`, `u-001`, … a few at a time.
async fn import_many(app: &TestApp, count: usize) {
    let users: Vec<Value> = (0..count)
        .map(|i| {
            json!({
                "externalId": format!("u-{i:03}"), "email": format!("u{i}@example.com"),
                "firstName": "User", "lastName": format!("Number{i}")
            })
        })
        .collect();
    for batch in users.chunks(10) {
        for response in join_all(batch.iter().map(|u| import(app, u.clone(), Value::Null))).await {
            response.data();
        }
    }
}

async fn page(app: &TestApp, variables: Value) -> Value {
    let response = app.graphql(&app.token(Role::Viewer), PAGE, variables).await;
    response.data()["users"].clone()
}

async fn external_ids(app: &TestApp, filter: Value) -> Vec<String> {
    let users = page(app, json!({ "first": 500, "filter": filter })).await;
    let ids: Vec<String> = users["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["externalId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        users["totalCount"],
        ids.len(),
        "totalCount counts the filtered users"
    );
    ids
}

db_test! {
    async fn pages_cover_every_user_once_in_a_stable_order(app) {
        import_many(&app, 250).await;
        let mut seen = Vec::new();
        let mut after = Value::Null;
        let mut pages = 0;
        loop {
            let users = page(&app, json!({ "first": 40, "after": after })).await;
            assert_eq!(users["totalCount"], 250);
            assert_eq!(users["pageInfo"]["hasPreviousPage"], !after.is_null());
            let edges = users["edges"].as_array().unwrap();
            for edge in edges {
                seen.push(edge["node"]["id"].as_str().unwrap().parse::<i64>().unwrap());
            }
            pages += 1;
            if let Some(last) = edges.last() {
                assert_eq!(users["pageInfo"]["endCursor"], last["cursor"]);
            }
            if users["pageInfo"]["hasNextPage"] == false {
                break;
            }
            after = users["pageInfo"]["endCursor"].clone();
        }
        assert_eq!(pages, 7, "six full pages of 40 and one of 10");
        assert_eq!(seen.len(), 250);
        assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 250, "no user twice");
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "in creation order");

        let default_page = page(&app, json!({})).await;
        assert_eq!(default_page["edges"].as_array().unwrap().len(), 50, "first defaults to 50");
        let empty = page(&app, json!({ "first": 0 })).await;
        assert_eq!(empty["edges"], json!([]));
        assert_eq!(empty["pageInfo"]["hasNextPage"], true);

        let viewer = app.token(Role::Viewer);
        for (variables, field) in [
            (json!({ "first": 501 }), "first"),
            (json!({ "first": -1 }), "first"),
            (json!({ "after": "not-a-cursor" }), "after"),
        ] {
            let response = app.graphql(&viewer, PAGE, variables.clone()).await;
            assert_eq!(response.error_code(), Some("BAD_USER_INPUT"), "{variables}");
            assert_eq!(response.field_errors()[0].0, field, "{variables}");
        }

        let export = csv_export(&app, &viewer).await;
        assert_eq!(export.len(), 250, "the export spans several chunks and has every user");
    }
}

db_test! {
    async fn each_filter_narrows_the_list(app) {
        for user in [
            json!({ "externalId": "a", "email": "anna.kowalska@example.com", "firstName": "Anna", "lastName": "Kowalska", "department": "Sales", "tags": ["Marketer", "nl"] }),
            json!({ "externalId": "b", "email": "ben@example.com", "firstName": "Ben", "lastName": "Ito", "department": "Sales", "active": false, "tags": ["nl"] }),
            json!({ "externalId": "c", "source": "hr", "email": "cleo@example.com", "firstName": "Cleo", "lastName": "100%_Sure", "department": "IT" }),
        ] {
            import(&app, user, Value::Null).await.data();
        }
        assert_eq!(external_ids(&app, Value::Null).await, ["a", "b", "c"]);
        assert_eq!(external_ids(&app, json!({ "search": "anna KOW" })).await, ["a"], "every word, any case");
        assert_eq!(external_ids(&app, json!({ "search": "example.com" })).await, ["a", "b", "c"]);
        assert_eq!(external_ids(&app, json!({ "search": "ben@" })).await, ["b"], "by email");
        assert_eq!(external_ids(&app, json!({ "search": "ito" })).await, ["b"], "by last name");
        assert_eq!(external_ids(&app, json!({ "search": "C" })).await, ["a", "b", "c"], "every email has a c");
        assert_eq!(external_ids(&app, json!({ "search": "%" })).await, ["c"], "wildcards are literal");
        assert_eq!(external_ids(&app, json!({ "search": "_" })).await, ["c"]);
        assert_eq!(external_ids(&app, json!({ "active": false })).await, ["b"]);
        assert_eq!(external_ids(&app, json!({ "active": true })).await, ["a", "c"]);
        assert_eq!(external_ids(&app, json!({ "tag": "NL" })).await, ["a", "b"]);
        assert_eq!(external_ids(&app, json!({ "tag": "marketer" })).await, ["a"]);
        assert_eq!(external_ids(&app, json!({ "department": "Sales" })).await, ["a", "b"]);
        assert_eq!(external_ids(&app, json!({ "source": "hr" })).await, ["c"]);
        assert_eq!(external_ids(&app, json!({ "department": "Sales", "active": true, "tag": "nl" })).await, ["a"]);
        assert!(external_ids(&app, json!({ "tag": "nobody" })).await.is_empty());

        // Case-insensitive beyond ASCII, on SQLite too.
        import(&app, json!({ "externalId": "d", "email": "ivan@example.com", "firstName": "Иван", "lastName": "Петров" }), Value::Null).await.data();
        for search in ["иван", "ИВАН петров", "Пет"] {
            assert_eq!(external_ids(&app, json!({ "search": search })).await, ["d"], "{search}");
        }

        let viewer = app.token(Role::Viewer);
        for (filter, field, code) in [
            (json!({ "search": "a ".repeat(11) }), "filter.search", "TOO_MANY"),
            (json!({ "search": "a".repeat(201) }), "filter.search", "TOO_LONG"),
            (json!({ "search": "x\u{0000}" }), "filter.search", "INVALID_CHARACTERS"),
            (json!({ "department": "Sales\u{0000}" }), "filter.department", "INVALID_CHARACTERS"),
            (json!({ "tag": "t\u{0000}" }), "filter.tag", "INVALID_CHARACTERS"),
        ] {
            let response = app.graphql(&viewer, PAGE, json!({ "filter": filter })).await;
            assert_eq!(response.error_code(), Some("BAD_USER_INPUT"), "{filter}: {}", response.body);
            assert_eq!(response.field_errors(), vec![(field.to_owned(), code.to_owned())], "{filter}");
        }
    }
}

/// The export's data rows as maps from column to value.
async fn csv_export(app: &TestApp, token: &str) -> Vec<std::collections::HashMap<String, String>> {
    let response = app
        .client
        .get(format!("{}/exports/users.csv", app.address))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/csv; charset=utf-8"
    );
    let text = response.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    reader
        .records()
        .map(|record| {
            let record = record.unwrap();
            header
                .iter()
                .cloned()
                .zip(record.iter().map(str::to_owned))
                .collect()
        })
        .collect()
}

db_test! {
    async fn the_export_has_every_field_tags_and_attributes(app) {
        import(
            &app,
            json!({
                "externalId": "cl123456", "email": "john.smith@example.com", "login": "john.smith",
                "firstName": "John", "lastName": "Smith", "birthDate": "26.07.1988", "gender": "MALE",
                "city": "Kyiv", "department": "Main Office", "tags": ["tag1", "Tag2"],
                "phone": "+380971111111", "customInfo": { "vacation_days": 21 },
                "attributes": [{ "name": "user_field1", "value": "Cluster1" }, { "name": "level", "value": "3", "type": "NUMBER" }]
            }),
            Value::Null,
        )
        .await
        .data();
        import(&app, json!({ "externalId": "x2", "email": "x2@example.com", "firstName": "Ex", "lastName": "Two", "active": false }), Value::Null).await.data();
        let other = app.token_for(Role::Admin, Some("other"));
        import_as(&app, &other, json!({ "externalId": "hidden", "email": "hidden@example.com", "firstName": "Hid", "lastName": "Den" }), Value::Null).await.data();

        let rows = csv_export(&app, &app.token(Role::Viewer)).await;
        assert_eq!(rows.len(), 2, "only the caller's tenant");
        let john = &rows[0];
        for (column, value) in [
            ("externalId", "cl123456"), ("source", "default"), ("email", "john.smith@example.com"),
            ("login", "john.smith"), ("firstName", "John"), ("lastName", "Smith"),
            ("birthDate", "1988-07-26"), ("gender", "MALE"), ("active", "true"), ("city", "Kyiv"),
            ("department", "Main Office"), ("tags", "tag1,tag2"), ("phone", "'+380971111111"),
            ("customInfo", r#"{"vacation_days":21}"#), ("attr:user_field1", "Cluster1"),
            ("attr:level:NUMBER", "3"), ("middleName", ""),
        ] {
            assert_eq!(john[column], value, "{column}");
        }
        assert!(!john.contains_key("password") && !john.contains_key("passwordHash"));
        assert_eq!(rows[1]["externalId"], "x2");
        assert_eq!(rows[1]["active"], "false");
        assert_eq!(rows[1]["attr:user_field1"], "", "attributes a user lacks are empty");

        let other_rows = csv_export(&app, &other).await;
        assert_eq!(other_rows.len(), 1);
        assert_eq!(other_rows[0]["externalId"], "hidden");
        assert!(!other_rows[0].contains_key("attr:level:NUMBER"), "attribute columns of the tenant only");

        let anonymous = app.get("/exports/users.csv").await;
        assert_eq!(anonymous.status(), 401);
        assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");
    }
}

db_test! {
    async fn an_export_uploaded_again_changes_nothing(app) {
        let users = json!([
            { "externalId": "a", "email": "a@example.com", "firstName": "Ann", "lastName": "A",
              "source": "hr", "birthDate": "1990-05-01", "gender": "FEMALE", "language": "DE",
              "tags": ["staff", "north, east"], "customInfo": "plain text",
              "attributes": [{ "name": "level", "value": "3", "type": "NUMBER" },
                             { "name": "desk", "value": "A-1", "class": "office" },
                             { "name": "since", "value": "2020-01-31", "type": "DATE" },
                             { "name": "team", "value": "blue" }] },
            { "externalId": "b", "email": "b@example.com", "firstName": "Bob", "lastName": "B",
              "active": false, "tags": ["[x]"], "customInfo": { "n": [1, 2] },
              "attributes": [{ "name": "desk", "value": "7", "type": "NUMBER" },
                             { "name": "team", "value": "red" }] },
            { "externalId": "c", "email": "c@example.com", "firstName": "Cy", "lastName": "C",
              "middleName": "Q", "customInfo": 12, "employmentStartDate": "2021-03-04" },
        ]);
        let id = app.submit_job(users, json!({})).await;
        let query = "query($id: ID!) { importJob(id: $id) {
            status summary { created updated unchanged failed }
        } }";
        let job = app.finished_job(query, &json!(id)).await;
        assert_eq!(job["summary"]["created"], 3, "{job}");

        let response = app
            .get_with("/exports/users.csv", &app.token(Role::Viewer))
            .await;
        let export = response.bytes().await.unwrap().to_vec();
        let header = String::from_utf8_lossy(&export).lines().next().unwrap().to_owned();
        assert!(
            header.ends_with(",attr:level:NUMBER,attr:since:DATE,attr:team,attributes"),
            "{header}"
        );
        let upload = "mutation($file: Upload!) { importUsersCsv(file: $file) { id warnings } }";
        let response = app.upload(&app.token(Role::Admin), upload, json!({}), export).await;
        let submitted = &response.data()["importUsersCsv"];
        assert_eq!(submitted["warnings"], json!([]));
        let job = app.finished_job(query, &submitted["id"]).await;
        assert_eq!(job["status"], "COMPLETED", "{job}");
        assert_eq!(
            job["summary"],
            json!({ "created": 0, "updated": 0, "unchanged": 3, "failed": 0 }),
            "every value read back as it was stored"
        );
    }
}
