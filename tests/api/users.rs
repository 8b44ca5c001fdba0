//! `importUser`, `user(lookup)` and `users(...)`: the contract's rules for one user, each
//! against the real server on SQLite and PostgreSQL.

use roster::auth::Role;
use serde_json::{Value, json};

use crate::helpers::{GraphQLResponse, TestApp, db_test};

pub const USER_FIELDS: &str = "id externalId source email login firstName middleName lastName \
    fullName title birthDate gender active phone city department position company workContact \
    structureUid language facebookId googleId employmentStartDate employmentEndDate \
    positionAssignedDate tags attributes { name value type class } customInfo createdAt updatedAt";

pub async fn import(app: &TestApp, user: Value, options: Value) -> GraphQLResponse {
    import_as(app, &app.token(Role::Admin), user, options).await
}

pub async fn import_as(app: &TestApp, token: &str, user: Value, options: Value) -> GraphQLResponse {
    let query = format!(
        "mutation($user: UserImportInput!, $options: ImportOptions) {{
            importUser(user: $user, options: $options) {{
                action created updated blocked unblocked warnings user {{ {USER_FIELDS} }}
            }}
        }}"
    );
    app.graphql(token, &query, json!({ "user": user, "options": options }))
        .await
}

pub async fn lookup(app: &TestApp, token: &str, lookup: Value) -> GraphQLResponse {
    let query = format!("query($l: UserLookup!) {{ user(lookup: $l) {{ {USER_FIELDS} }} }}");
    app.graphql(token, &query, json!({ "l": lookup })).await
}

/// Seed 001's example user, in this contract's names.
fn john_smith() -> Value {
    json!({
        "externalId": "cl123456",
        "lastName": "Smith",
        "firstName": "John",
        "middleName": "",
        "login": "john.smith",
        "email": "john.smith@example.com",
        "password": "12345678",
        "birthDate": "26.07.1988",
        "gender": "MALE",
        "active": true,
        "city": "Kyiv",
        "department": "Main Office",
        "position": "CEO",
        "tags": ["tag1"],
        "phone": "+380971111111",
        "attributes": [
            { "name": "user_field1", "value": "Cluster1" },
            { "name": "user_field2", "value": "Top Management" },
            { "name": "user_field3", "value": "Ukraine" },
            { "name": "user_field4", "value": "string" },
            { "name": "user_field5", "value": "string" }
        ]
    })
}

fn payload(response: &GraphQLResponse) -> &Value {
    &response.data()["importUser"]
}

fn counts(response: &GraphQLResponse) -> (String, i64, i64, i64, i64) {
    let p = payload(response);
    (
        p["action"].as_str().unwrap().to_owned(),
        p["created"].as_i64().unwrap(),
        p["updated"].as_i64().unwrap(),
        p["blocked"].as_i64().unwrap(),
        p["unblocked"].as_i64().unwrap(),
    )
}

fn with(mut base: Value, changes: Value) -> Value {
    for (key, value) in changes.as_object().unwrap() {
        base[key] = value.clone();
    }
    base
}

db_test! {
    async fn seed_001_user_round_trip(app) {
        let created = import(&app, john_smith(), Value::Null).await;
        assert_eq!(counts(&created), ("CREATED".into(), 1, 0, 0, 0));

        let read = lookup(&app, &app.token(Role::Viewer), json!({ "externalId": "cl123456" })).await;
        let user = &read.data()["user"];
        assert_eq!(user["id"], payload(&created)["user"]["id"]);
        let expected = json!({
            "externalId": "cl123456", "source": "default", "email": "john.smith@example.com",
            "login": "john.smith", "firstName": "John", "middleName": null, "lastName": "Smith",
            "fullName": "John Smith", "title": null, "birthDate": "1988-07-26", "gender": "MALE",
            "active": true, "phone": "+380971111111", "city": "Kyiv", "department": "Main Office",
            "position": "CEO", "company": null, "workContact": null, "structureUid": null,
            "language": null, "facebookId": null, "googleId": null, "employmentStartDate": null,
            "employmentEndDate": null, "positionAssignedDate": null, "tags": ["tag1"],
            "customInfo": null,
        });
        for (field, value) in expected.as_object().unwrap() {
            assert_eq!(&user[field], value, "{field}");
        }
        let attributes: Vec<(String, String, String)> = user["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                assert_eq!(a["class"], Value::Null);
                (
                    a["name"].as_str().unwrap().to_owned(),
                    a["value"].as_str().unwrap().to_owned(),
                    a["type"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(attributes.len(), 5);
        assert_eq!(attributes[0], ("user_field1".into(), "Cluster1".into(), "STRING".into()));
        assert_eq!(attributes[1].1, "Top Management");
        let hash = app.stored_user("cl123456").await.unwrap().password_hash.unwrap();
        assert!(hash.starts_with("$argon2id$"), "stored as an Argon2id hash");
        assert!(!read.body.to_string().contains("12345678"), "a password is never returned");

        let before = app.snapshot().await;
        let again = import(&app, john_smith(), Value::Null).await;
        assert_eq!(counts(&again), ("UNCHANGED".into(), 0, 0, 0, 0));
        assert_eq!(payload(&again)["user"]["updatedAt"], user["updatedAt"]);
        assert_eq!(app.snapshot().await, before, "an identical re-send writes nothing");

        let moved = import(&app, with(john_smith(), json!({ "city": "Lviv" })), Value::Null).await;
        assert_eq!(counts(&moved), ("UPDATED".into(), 0, 1, 0, 0));
        assert_eq!(payload(&moved)["user"]["city"], "Lviv");
        assert_ne!(payload(&moved)["user"]["updatedAt"], user["updatedAt"]);
        assert_eq!(payload(&moved)["user"]["createdAt"], user["createdAt"]);

        let blocked = import(&app, with(john_smith(), json!({ "city": "Lviv", "active": false })), Value::Null).await;
        assert_eq!(counts(&blocked), ("UPDATED".into(), 0, 1, 1, 0));
        assert_eq!(payload(&blocked)["user"]["active"], false);

        let unblocked = import(&app, with(john_smith(), json!({ "city": "Lviv" })), Value::Null).await;
        assert_eq!(counts(&unblocked), ("UPDATED".into(), 0, 1, 0, 1));
        assert_eq!(payload(&unblocked)["user"]["active"], true);
    }
}

/// What the case is, the user, the options, the error code, and the `(field, code)` pairs of
/// `extensions.fieldErrors`.
type BadCase = (
    &'static str,
    Value,
    Value,
    &'static str,
    Vec<(&'static str, &'static str)>,
);

db_test! {
    async fn bad_input_is_refused_whole_and_names_every_field(app) {
        let taken = json!({
            "externalId": "taken-1", "email": "taken@example.com", "login": "taken",
            "firstName": "Tak", "lastName": "En"
        });
        import(&app, taken, Value::Null).await.data();
        let base = json!({ "externalId": "new-1", "email": "new@example.com", "firstName": "New", "lastName": "User" });
        let existing = json!({ "externalId": "taken-1", "email": "taken@example.com", "firstName": "Tak", "lastName": "En" });
        let argon2i = "$argon2i$v=19$m=16,t=2,p=1$c2FsdHNhbHQ$Aq0vN6CJ3Ks0j2XsXNJqDg";

        let cases: Vec<BadCase> = vec![
            ("email without @", with(base.clone(), json!({ "email": "john" })), Value::Null, "BAD_USER_INPUT", vec![("user.email", "INVALID_EMAIL")]),
            ("blank email", with(base.clone(), json!({ "email": "  " })), Value::Null, "BAD_USER_INPUT", vec![("user.email", "REQUIRED")]),
            ("phone without +", with(base.clone(), json!({ "phone": "0971234567" })), Value::Null, "BAD_USER_INPUT", vec![("user.phone", "INVALID_PHONE")]),
            ("phone with letters", with(base.clone(), json!({ "phone": "+38097abc4567" })), Value::Null, "BAD_USER_INPUT", vec![("user.phone", "INVALID_PHONE")]),
            ("impossible date", with(base.clone(), json!({ "birthDate": "31.02.1988" })), Value::Null, "BAD_USER_INPUT", vec![("user.birthDate", "INVALID_DATE")]),
            ("date in another format", with(base.clone(), json!({ "birthDate": "07/26/1988" })), Value::Null, "BAD_USER_INPUT", vec![("user.birthDate", "INVALID_DATE")]),
            ("birth date in the future", with(base.clone(), json!({ "birthDate": "2999-01-01" })), Value::Null, "BAD_USER_INPUT", vec![("user.birthDate", "IN_FUTURE")]),
            ("employment ends before it starts", with(base.clone(), json!({ "employmentStartDate": "2020-05-01", "employmentEndDate": "01.04.2020" })), Value::Null, "BAD_USER_INPUT", vec![("user.employmentEndDate", "BEFORE_START")]),
            ("blank first name", with(base.clone(), json!({ "firstName": " " })), Value::Null, "BAD_USER_INPUT", vec![("user.firstName", "REQUIRED")]),
            ("last name too long", with(base.clone(), json!({ "lastName": "x".repeat(101) })), Value::Null, "BAD_USER_INPUT", vec![("user.lastName", "TOO_LONG")]),
            ("blank external id", with(base.clone(), json!({ "externalId": "" })), Value::Null, "BAD_USER_INPUT", vec![("user.externalId", "REQUIRED")]),
            ("blank source", with(base.clone(), json!({ "source": " " })), Value::Null, "BAD_USER_INPUT", vec![("user.source", "REQUIRED")]),
            ("control characters", with(base.clone(), json!({ "city": "Ky\u{0007}iv" })), Value::Null, "BAD_USER_INPUT", vec![("user.city", "INVALID_CHARACTERS")]),
            ("unknown gender", with(base.clone(), json!({ "gender": "X" })), Value::Null, "BAD_USER_INPUT", vec![]),
            ("unknown language", with(base.clone(), json!({ "language": "PL" })), Value::Null, "BAD_USER_INPUT", vec![]),
            ("blank tag", with(base.clone(), json!({ "tags": ["ok", "  "] })), Value::Null, "BAD_USER_INPUT", vec![("user.tags[1]", "REQUIRED")]),
            ("tag too long", with(base.clone(), json!({ "tags": ["t".repeat(101)] })), Value::Null, "BAD_USER_INPUT", vec![("user.tags[0]", "TOO_LONG")]),
            ("number attribute", with(base.clone(), json!({ "attributes": [{ "name": "a", "value": "1" }, { "name": "n", "value": "1,5", "type": "NUMBER" }] })), Value::Null, "BAD_USER_INPUT", vec![("user.attributes[1].value", "INVALID_NUMBER")]),
            ("boolean attribute", with(base.clone(), json!({ "attributes": [{ "name": "b", "value": "yes", "type": "BOOLEAN" }] })), Value::Null, "BAD_USER_INPUT", vec![("user.attributes[0].value", "INVALID_BOOLEAN")]),
            ("date attribute", with(base.clone(), json!({ "attributes": [{ "name": "d", "value": "31.02.1988", "type": "DATE" }] })), Value::Null, "BAD_USER_INPUT", vec![("user.attributes[0].value", "INVALID_DATE")]),
            ("attribute named twice", with(base.clone(), json!({ "attributes": [{ "name": "a", "value": "1" }, { "name": "a", "value": "2" }] })), Value::Null, "BAD_USER_INPUT", vec![("user.attributes[1].name", "DUPLICATE")]),
            ("password too short (seed 001's example)", with(base.clone(), json!({ "password": "123456" })), Value::Null, "BAD_USER_INPUT", vec![("user.password", "TOO_SHORT")]),
            ("argon2i hash", with(base.clone(), json!({ "passwordHash": argon2i })), Value::Null, "BAD_USER_INPUT", vec![("user.passwordHash", "INVALID_PASSWORD_HASH")]),
            ("not a PHC string", with(base.clone(), json!({ "passwordHash": "secret123" })), Value::Null, "BAD_USER_INPUT", vec![("user.passwordHash", "INVALID_PASSWORD_HASH")]),
            ("argon2id hash too costly to verify", with(base.clone(), json!({ "passwordHash": "$argon2id$v=19$m=4194304,t=4294967295,p=255$c2FsdHNhbHQ$Aq0vN6CJ3Ks0j2XsXNJqDg" })), Value::Null, "BAD_USER_INPUT", vec![("user.passwordHash", "HASH_TOO_COSTLY")]),
            ("hash too long", with(base.clone(), json!({ "passwordHash": format!("$argon2id$v=19$m=19456,t=2,p=1,data={}$c2FsdHNhbHQ$Aq0vN6CJ3Ks0j2XsXNJqDg", "A".repeat(240)) })), Value::Null, "BAD_USER_INPUT", vec![("user.passwordHash", "TOO_LONG")]),
            ("NUL in custom info", with(base.clone(), json!({ "customInfo": { "a": "x\u{0000}y" } })), Value::Null, "BAD_USER_INPUT", vec![("user.customInfo", "INVALID_CHARACTERS")]),
            ("tag that grows past the limit when lower-cased", with(base.clone(), json!({ "tags": ["İ".repeat(80)] })), Value::Null, "BAD_USER_INPUT", vec![("user.tags[0]", "TOO_LONG")]),
            ("attribute named twice, once without a value", with(base.clone(), json!({ "attributes": [{ "name": "a", "value": null }, { "name": "a", "value": "x" }] })), Value::Null, "BAD_USER_INPUT", vec![("user.attributes[1].name", "DUPLICATE")]),
            ("a required field missing beside other bad fields", with(base.clone(), json!({ "externalId": "", "city": "x".repeat(300), "title": "t".repeat(101) })), Value::Null, "BAD_USER_INPUT", vec![("user.externalId", "REQUIRED"), ("user.city", "TOO_LONG"), ("user.title", "TOO_LONG")]),
            ("CREATE_ONLY matching by email, found by external id", with(existing.clone(), json!({ "email": "fresh@example.com" })), json!({ "mode": "CREATE_ONLY", "matchBy": "EMAIL" }), "CONFLICT", vec![("user.externalId", "EXISTS")]),
            ("password and hash", with(base.clone(), json!({ "password": "long enough", "passwordHash": "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW" })), Value::Null, "BAD_USER_INPUT", vec![("user.passwordHash", "CONFLICTING_FIELDS")]),
            ("custom info too big", with(base.clone(), json!({ "customInfo": { "blob": "x".repeat(70_000) } })), Value::Null, "BAD_USER_INPUT", vec![("user.customInfo", "TOO_LONG")]),
            ("email of another user, other case", with(base.clone(), json!({ "email": "TAKEN@example.com" })), Value::Null, "CONFLICT", vec![("user.email", "TAKEN")]),
            ("login of another user", with(base.clone(), json!({ "login": "Taken" })), Value::Null, "CONFLICT", vec![("user.login", "TAKEN")]),
            ("email and login of another user", with(base.clone(), json!({ "email": "taken@example.com", "login": "taken" })), Value::Null, "CONFLICT", vec![("user.email", "TAKEN"), ("user.login", "TAKEN")]),
            ("CREATE_ONLY on an existing user", existing.clone(), json!({ "mode": "CREATE_ONLY" }), "CONFLICT", vec![("user.externalId", "EXISTS")]),
            ("UPDATE_ONLY on a missing user", base.clone(), json!({ "mode": "UPDATE_ONLY" }), "NOT_FOUND", vec![]),
            (
                "several bad fields",
                with(base.clone(), json!({ "email": "nope", "phone": "12", "birthDate": "32.01.2000", "tags": [""], "attributes": [{ "name": "n", "value": "x", "type": "NUMBER" }] })),
                Value::Null,
                "BAD_USER_INPUT",
                vec![("user.email", "INVALID_EMAIL"), ("user.phone", "INVALID_PHONE"), ("user.birthDate", "INVALID_DATE"), ("user.tags[0]", "REQUIRED"), ("user.attributes[0].value", "INVALID_NUMBER")],
            ),
        ];
        assert!(cases.len() >= 20);
        let before = app.snapshot().await;
        for (what, user, options, code, fields) in cases {
            let response = import(&app, user, options).await;
            assert_eq!(response.error_code(), Some(code), "{what}: {}", response.body);
            assert_eq!(response.body["data"], Value::Null, "{what}");
            let mut got = response.field_errors();
            got.sort();
            let mut expected: Vec<(String, String)> =
                fields.iter().map(|(f, c)| (f.to_string(), c.to_string())).collect();
            expected.sort();
            assert_eq!(got, expected, "{what}: {}", response.body);
            assert_eq!(app.snapshot().await, before, "{what}: nothing was written");
        }
    }
}

db_test! {
    async fn omitted_fields_are_kept_null_clears_replace_clears_the_rest(app) {
        let full = json!({
            "externalId": "e-1", "email": "Eva@Example.com", "login": "eva", "firstName": "Eva",
            "lastName": "Berg", "title": "Dr", "city": "Utrecht", "department": "Sales",
            "phone": "+31 20 123 4567", "password": "long enough", "language": "NL",
            "tags": [" Marketer", "netherlands", "MARKETER"], "customInfo": { "vacation_days": 21 },
            "attributes": [{ "name": "cost_center", "value": "42.5", "type": "NUMBER", "class": "finance" }],
            "active": false,
        });
        let created = import(&app, full, Value::Null).await;
        let user = &payload(&created)["user"];
        assert_eq!(user["tags"], json!(["marketer", "netherlands"]));
        assert_eq!(user["phone"], "+31201234567");
        assert_eq!(user["email"], "Eva@Example.com");
        assert_eq!(user["customInfo"], json!({ "vacation_days": 21 }));
        assert_eq!(user["attributes"], json!([{ "name": "cost_center", "value": "42.5", "type": "NUMBER", "class": "finance" }]));

        let required = json!({ "externalId": "e-1", "email": "eva@example.com", "firstName": "Eva", "lastName": "Berg" });
        let kept = import(&app, required.clone(), Value::Null).await;
        assert_eq!(payload(&kept)["action"], "UPDATED", "the email's case changed");
        let kept_user = &payload(&kept)["user"];
        for field in ["login", "title", "city", "department", "phone", "language", "tags", "customInfo", "attributes", "active"] {
            assert_eq!(kept_user[field], user[field], "omitted {field} is kept");
        }
        assert_eq!(payload(&import(&app, required.clone(), Value::Null).await)["action"], "UNCHANGED");

        let cleared = import(&app, with(required.clone(), json!({ "city": null, "tags": null, "customInfo": null })), Value::Null).await;
        let cleared_user = &payload(&cleared)["user"];
        assert_eq!(cleared_user["city"], Value::Null);
        assert_eq!(cleared_user["tags"], json!([]));
        assert_eq!(cleared_user["customInfo"], Value::Null);
        assert_eq!(cleared_user["department"], "Sales", "fields not sent are kept");

        let replaced = import(&app, required.clone(), json!({ "replace": true })).await;
        let replaced_user = &payload(&replaced)["user"];
        for field in ["title", "department", "phone", "language", "customInfo"] {
            assert_eq!(replaced_user[field], Value::Null, "replace clears {field}");
        }
        assert_eq!(replaced_user["attributes"], json!([]));
        assert_eq!(replaced_user["login"], "eva@example.com", "login falls back to the email");
        assert_eq!(replaced_user["active"], true, "active falls back to its default");
        assert_eq!(payload(&replaced)["unblocked"], 1);
        assert!(app.stored_user("e-1").await.unwrap().password_hash.is_some(), "replace keeps the password");

        let no_password = import(&app, with(required, json!({ "password": null })), Value::Null).await;
        assert_eq!(payload(&no_password)["action"], "UPDATED");
        assert!(app.stored_user("e-1").await.unwrap().password_hash.is_none(), "null removes the password");
    }
}

db_test! {
    async fn the_same_password_again_is_unchanged(app) {
        let user = json!({ "externalId": "p-1", "email": "p@example.com", "firstName": "P", "lastName": "Q", "password": "correct horse" });
        import(&app, user.clone(), Value::Null).await.data();
        let hash = app.stored_user("p-1").await.unwrap().password_hash;
        assert_eq!(payload(&import(&app, user.clone(), Value::Null).await)["action"], "UNCHANGED");
        assert_eq!(app.stored_user("p-1").await.unwrap().password_hash, hash);
        let changed = import(&app, with(user, json!({ "password": "battery staple" })), Value::Null).await;
        assert_eq!(payload(&changed)["action"], "UPDATED");
        assert_ne!(app.stored_user("p-1").await.unwrap().password_hash, hash);
    }
}

db_test! {
    async fn match_by_email_rekeys_the_user(app) {
        let old = import(&app, json!({ "externalId": "old-1", "email": "ann@example.com", "firstName": "Ann", "lastName": "Lee" }), Value::Null).await;
        let id = payload(&old)["user"]["id"].clone();
        let rekeyed = import(
            &app,
            json!({ "externalId": "new-1", "source": "hr", "email": "ANN@example.com", "firstName": "Ann", "lastName": "Lee" }),
            json!({ "matchBy": "EMAIL" }),
        )
        .await;
        assert_eq!(payload(&rekeyed)["action"], "UPDATED");
        assert_eq!(payload(&rekeyed)["user"]["id"], id);
        assert_eq!(payload(&rekeyed)["user"]["externalId"], "new-1");
        assert_eq!(payload(&rekeyed)["user"]["source"], "hr");
        let admin = app.token(Role::Admin);
        assert_eq!(lookup(&app, &admin, json!({ "externalId": "old-1" })).await.data()["user"], Value::Null);
        assert_eq!(lookup(&app, &admin, json!({ "externalId": "new-1", "source": "hr" })).await.data()["user"]["id"], id);

        // Re-keying onto an id another user holds is a conflict, and writes nothing.
        import(&app, json!({ "externalId": "bob-1", "source": "hr", "email": "bob@example.com", "firstName": "Bob", "lastName": "Ray" }), Value::Null).await.data();
        let before = app.snapshot().await;
        let clash = import(
            &app,
            json!({ "externalId": "bob-1", "source": "hr", "email": "ann@example.com", "firstName": "Ann", "lastName": "Lee" }),
            json!({ "matchBy": "EMAIL" }),
        )
        .await;
        assert_eq!(clash.error_code(), Some("CONFLICT"), "{}", clash.body);
        assert_eq!(clash.field_errors(), vec![("user.externalId".to_owned(), "TAKEN".to_owned())]);
        assert_eq!(app.snapshot().await, before);
    }
}

db_test! {
    async fn dry_run_reports_and_writes_nothing(app) {
        let before = app.snapshot().await;
        let user = json!({ "externalId": "d-1", "email": "d@example.com", "firstName": "D", "lastName": "R" });
        let dry = import(&app, user.clone(), json!({ "dryRun": true })).await;
        assert_eq!(counts(&dry), ("CREATED".into(), 1, 0, 0, 0));
        assert_eq!(payload(&dry)["user"], Value::Null);
        assert_eq!(app.snapshot().await, before);
        import(&app, user.clone(), Value::Null).await.data();
        let before = app.snapshot().await;
        let dry = import(&app, with(user, json!({ "active": false })), json!({ "dryRun": true })).await;
        assert_eq!(counts(&dry), ("UPDATED".into(), 0, 1, 1, 0));
        assert_eq!(payload(&dry)["user"]["active"], true, "the user as it still is");
        assert_eq!(app.snapshot().await, before);
    }
}

db_test! {
    async fn tenants_never_see_each_other(app) {
        let a = app.token_for(Role::Admin, Some("tenant-a"));
        let b = app.token_for(Role::Admin, Some("tenant-b"));
        let same = json!({ "externalId": "x-1", "email": "same@example.com", "login": "same", "firstName": "A", "lastName": "A" });
        let in_a = import_as(&app, &a, same.clone(), Value::Null).await;
        let in_b = import_as(&app, &b, with(same.clone(), json!({ "firstName": "B" })), Value::Null).await;
        assert_eq!(payload(&in_a)["action"], "CREATED");
        assert_eq!(payload(&in_b)["action"], "CREATED", "the same keys in another tenant do not clash");
        let id_in_a = payload(&in_a)["user"]["id"].as_str().unwrap().to_owned();

        let viewer_b = app.token_for(Role::Viewer, Some("tenant-b"));
        assert_eq!(lookup(&app, &viewer_b, json!({ "id": id_in_a })).await.data()["user"], Value::Null);
        let by_email = lookup(&app, &viewer_b, json!({ "email": "same@example.com" })).await;
        assert_eq!(by_email.data()["user"]["firstName"], "B");
        let listed = app.graphql(&viewer_b, "{ users { totalCount edges { node { firstName } } } }", Value::Null).await;
        assert_eq!(listed.data()["users"]["totalCount"], 1);
        assert_eq!(listed.data()["users"]["edges"][0]["node"]["firstName"], "B");

        // A write of tenant b leaves tenant a's user as it was.
        let rename = import_as(&app, &b, with(same, json!({ "firstName": "Bee" })), json!({ "matchBy": "EMAIL" })).await;
        assert_eq!(payload(&rename)["user"]["firstName"], "Bee");
        let a_user = lookup(&app, &a, json!({ "id": id_in_a })).await;
        assert_eq!(a_user.data()["user"]["firstName"], "A");
    }
}

db_test! {
    async fn only_admins_import(app) {
        let before = app.snapshot().await;
        let user = json!({ "externalId": "v-1", "email": "v@example.com", "firstName": "V", "lastName": "W" });
        let refused = import_as(&app, &app.token(Role::Viewer), user, Value::Null).await;
        assert_eq!(refused.error_code(), Some("FORBIDDEN"), "{}", refused.body);
        assert_eq!(app.snapshot().await, before);
    }
}

db_test! {
    async fn a_lookup_names_exactly_one_key(app) {
        let viewer = app.token(Role::Viewer);
        import(&app, json!({ "externalId": "k-1", "email": "k@example.com", "firstName": "K", "lastName": "L" }), Value::Null).await.data();
        for bad in [
            json!({}),
            json!({ "externalId": "k-1", "email": "k@example.com" }),
            json!({ "source": "default" }),
            json!({ "id": "not-an-id" }),
        ] {
            let response = lookup(&app, &viewer, bad.clone()).await;
            assert_eq!(response.error_code(), Some("BAD_USER_INPUT"), "{bad}: {}", response.body);
            assert!(!response.field_errors().is_empty(), "{bad}");
        }
        for good in [json!({ "externalId": "k-1" }), json!({ "externalId": "k-1", "source": "default" }), json!({ "email": "K@EXAMPLE.COM" })] {
            assert_eq!(lookup(&app, &viewer, good.clone()).await.data()["user"]["externalId"], "k-1", "{good}");
        }
        assert_eq!(lookup(&app, &viewer, json!({ "externalId": "k-1", "source": "other" })).await.data()["user"], Value::Null);
        assert_eq!(lookup(&app, &viewer, json!({ "id": "999999" })).await.data()["user"], Value::Null);
    }
}

db_test! {
    async fn every_readme_example_runs_as_printed(app) {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        let examples: Vec<&str> = readme
            .split("```graphql\n")
            .skip(1)
            .map(|rest| &rest[..rest.find("```").unwrap()])
            .collect();
        assert_eq!(examples.len(), 6, "viewer, importUser, setUserAttributes, importUsers, importJob, createLearningTrack");
        let admin = app.token(Role::Admin);
        // In README order: each example works on what the earlier ones made.
        let mut results = Vec::new();
        for (index, example) in examples.iter().enumerate() {
            results.push(app.graphql(&admin, example, Value::Null).await.data().clone());
            if index == 1 {
                let again = app.graphql(&admin, example, Value::Null).await;
                assert_eq!(again.data()["importUser"]["action"], "UNCHANGED", "a re-send of the import");
            }
        }
        assert_eq!(results[0]["viewer"]["role"], "admin");
        let imported = &results[1]["importUser"];
        assert_eq!(imported["action"], "CREATED");
        assert_eq!(imported["user"]["fullName"], "John Smith");
        assert_eq!(imported["user"]["birthDate"], "1988-07-26");
        assert_eq!(imported["user"]["tags"], json!(["kyiv", "management"]));
        let changed = &results[2]["setUserAttributes"];
        assert_eq!(changed["results"][0]["success"], true, "{changed}");
        assert_eq!(changed["results"][1]["errors"][0]["code"], "NOT_FOUND", "no jane in a fresh database");
        assert_eq!(results[3]["importUsers"]["status"], "QUEUED");
        assert_eq!(results[4]["importJob"]["total"], 2);
        assert!(results[5]["createLearningTrack"]["id"].is_string());
    }
}

db_test! {
    async fn stored_values_read_back_the_same_on_both_databases(app) {
        // PostgreSQL hands 1e16 back as 10000000000000000: still the same user.
        let user = json!({
            "externalId": "j-1", "email": "j@example.com", "firstName": "J", "lastName": "K",
            "customInfo": { "big": 1e16, "ratio": 1.50, "list": [1, 2.5e-3] },
            "tags": ["age", "Dept", "ab", "a_c"],
            "login": "İ".repeat(200),
        });
        assert_eq!(payload(&import(&app, user.clone(), Value::Null).await)["action"], "CREATED");
        assert_eq!(payload(&import(&app, user, Value::Null).await)["action"], "UNCHANGED");
    }
}

db_test! {
    async fn a_login_that_was_the_email_follows_it(app) {
        let user = json!({ "externalId": "m-1", "email": "old@example.com", "firstName": "M", "lastName": "N" });
        import(&app, user.clone(), Value::Null).await.data();
        let moved = import(&app, with(user.clone(), json!({ "email": "new@example.com" })), Value::Null).await;
        assert_eq!(payload(&moved)["user"]["login"], "new@example.com");
        // The old address is free again, login included.
        let other = json!({ "externalId": "m-2", "email": "old@example.com", "firstName": "O", "lastName": "P" });
        assert_eq!(payload(&import(&app, other, Value::Null).await)["action"], "CREATED");
        // A login of its own stays when the email changes.
        import(&app, with(user.clone(), json!({ "email": "new@example.com", "login": "mn" })), Value::Null).await.data();
        let again = import(&app, with(user, json!({ "email": "newer@example.com" })), Value::Null).await;
        assert_eq!(payload(&again)["user"]["login"], "mn");
    }
}

db_test! {
    async fn concurrent_imports_of_one_new_user_create_it_once(app) {
        let user = json!({ "externalId": "r-1", "email": "r@example.com", "firstName": "R", "lastName": "S", "active": false });
        let responses = futures_util::future::join_all(
            (0..32).map(|_| import(&app, user.clone(), Value::Null)),
        )
        .await;
        let actions: Vec<String> = responses
            .iter()
            .map(|r| payload(r)["action"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(actions.iter().filter(|a| *a == "CREATED").count(), 1, "{actions:?}");
        assert_eq!(actions.iter().filter(|a| *a == "UNCHANGED").count(), 31, "{actions:?}");
        let reactivated = futures_util::future::join_all(
            (0..16).map(|_| import(&app, with(user.clone(), json!({ "active": true })), Value::Null)),
        )
        .await;
        let unblocked: i64 = reactivated.iter().map(|r| payload(r)["unblocked"].as_i64().unwrap()).sum();
        assert_eq!(unblocked, 1, "one import unblocks, the others find it done");
    }
}
