//! Approver links (seed 003): setApprovers, addApprover, removeApprover and their rules.

use roster::auth::Role;
use serde_json::{Value, json};

use crate::helpers::{
    Backend, GraphQLResponse, ServerProcess, TestApp, TestDatabase, db_test, each_backend,
};
use crate::users::{import, import_as};

const LINKS: &str = "id approvers { approver { externalId } label canApprove user { externalId } } \
    managees { user { externalId } label }";

async fn person(app: &TestApp, external_id: &str) {
    import(
        app,
        json!({
            "externalId": external_id, "email": format!("{external_id}@example.com"),
            "firstName": external_id, "lastName": "Person"
        }),
        Value::Null,
    )
    .await
    .data();
}

async fn set(app: &TestApp, user: &str, approvers: Value) -> GraphQLResponse {
    let query = format!(
        "mutation($u: UserLookup!, $a: [ApproverInput!]!) {{ setApprovers(user: $u, approvers: $a) {{ {LINKS} }} }}"
    );
    app.graphql(
        &app.token(Role::Admin),
        &query,
        json!({ "u": { "externalId": user }, "a": approvers }),
    )
    .await
}

async fn add(app: &TestApp, user: &str, approver: Value) -> GraphQLResponse {
    let query = format!(
        "mutation($u: UserLookup!, $a: ApproverInput!) {{ addApprover(user: $u, approver: $a) {{ {LINKS} }} }}"
    );
    app.graphql(
        &app.token(Role::Admin),
        &query,
        json!({ "u": { "externalId": user }, "a": approver }),
    )
    .await
}

fn by(external_id: &str) -> Value {
    json!({ "externalId": external_id })
}

/// `(approver, label, canApprove)` of the user's approvers.
async fn approvers_of(app: &TestApp, user: &str) -> Vec<(String, String, bool)> {
    let query = format!("query($u: UserLookup!) {{ user(lookup: $u) {{ {LINKS} }} }}");
    let response = app
        .graphql(&app.token(Role::Viewer), &query, json!({ "u": by(user) }))
        .await;
    let mut links: Vec<(String, String, bool)> = response.data()["user"]["approvers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            assert_eq!(l["user"]["externalId"], user);
            (
                l["approver"]["externalId"].as_str().unwrap().to_owned(),
                l["label"].as_str().unwrap().to_owned(),
                l["canApprove"].as_bool().unwrap(),
            )
        })
        .collect();
    links.sort();
    links
}

fn link(approver: &str, label: &str, can_approve: bool) -> (String, String, bool) {
    (approver.to_owned(), label.to_owned(), can_approve)
}

db_test! {
    async fn approver_sets_follow_seed_003(app) {
        for who in ["emp", "boss", "top", "peer"] {
            person(&app, who).await;
        }
        let done = set(&app, "emp", json!([
            { "approver": by("boss") },
            { "approver": by("top"), "label": "HIGHER_MANAGER" },
            { "approver": by("peer"), "label": "NON_APPROVING_MANAGER" },
        ]))
        .await;
        done.data();
        assert_eq!(
            approvers_of(&app, "emp").await,
            [link("boss", "MANAGER", true), link("peer", "NON_APPROVING_MANAGER", false), link("top", "HIGHER_MANAGER", true)],
            "each label's defaults"
        );
        let managees = lookup_managees(&app, "boss").await;
        assert_eq!(managees, [("emp".to_owned(), "MANAGER".to_owned())]);

        // A manager who does not approve, when asked.
        set(&app, "emp", json!([{ "approver": by("boss"), "canApprove": false }])).await.data();
        assert_eq!(approvers_of(&app, "emp").await, [link("boss", "MANAGER", false)], "setApprovers replaces");

        add(&app, "emp", json!({ "approver": by("top"), "label": "HIGHER_MANAGER" })).await.data();
        assert_eq!(approvers_of(&app, "emp").await, [link("boss", "MANAGER", false), link("top", "HIGHER_MANAGER", true)]);

        let removed = app
            .graphql(
                &app.token(Role::Admin),
                "mutation { removeApprover(user: { externalId: \"emp\" }, approver: { externalId: \"boss\" }) { id } }",
                Value::Null,
            )
            .await;
        removed.data();
        assert_eq!(approvers_of(&app, "emp").await, [link("top", "HIGHER_MANAGER", true)]);

        set(&app, "emp", json!([])).await.data();
        assert!(approvers_of(&app, "emp").await.is_empty(), "[] clears");
    }
}

async fn lookup_managees(app: &TestApp, user: &str) -> Vec<(String, String)> {
    let query = format!("query($u: UserLookup!) {{ user(lookup: $u) {{ {LINKS} }} }}");
    let response = app
        .graphql(&app.token(Role::Viewer), &query, json!({ "u": by(user) }))
        .await;
    response.data()["user"]["managees"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["user"]["externalId"].as_str().unwrap().to_owned(),
                l["label"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// What the case is, whose set, the approvers, and the `(field, code)` pairs expected.
type BadSet = (
    &'static str,
    &'static str,
    Value,
    Vec<(&'static str, &'static str)>,
);

db_test! {
    async fn bad_approver_sets_are_refused_and_write_nothing(app) {
        for who in ["a", "b", "c", "d", "e", "gone"] {
            person(&app, who).await;
        }
        import(&app, json!({ "externalId": "gone", "email": "gone@example.com", "firstName": "gone", "lastName": "Person", "active": false }), Value::Null).await.data();
        let other = app.token_for(Role::Admin, Some("elsewhere"));
        import_as(&app, &other, json!({ "externalId": "stranger", "email": "s@example.com", "firstName": "S", "lastName": "T" }), Value::Null).await.data();
        // A chain e → d → c → b (each managed by the next).
        for (user, manager) in [("b", "c"), ("c", "d"), ("d", "e")] {
            set(&app, user, json!([{ "approver": by(manager) }])).await.data();
        }

        let cases: Vec<BadSet> = vec![
            ("approver does not exist", "a", json!([{ "approver": by("nobody") }]), vec![("approvers[0].approver", "NOT_FOUND")]),
            ("approver of another tenant", "a", json!([{ "approver": by("stranger") }]), vec![("approvers[0].approver", "NOT_FOUND")]),
            ("inactive approver", "a", json!([{ "approver": by("gone") }]), vec![("approvers[0].approver", "INACTIVE")]),
            ("self", "a", json!([{ "approver": by("a") }]), vec![("approvers[0].approver", "SELF")]),
            ("non-approving that approves", "a", json!([{ "approver": by("b"), "label": "NON_APPROVING_MANAGER", "canApprove": true }]), vec![("approvers[0].canApprove", "NOT_ALLOWED")]),
            ("two managers", "a", json!([{ "approver": by("b") }, { "approver": by("c") }]), vec![("approvers[1].label", "TOO_MANY")]),
            ("two higher managers", "a", json!([{ "approver": by("b"), "label": "HIGHER_MANAGER" }, { "approver": by("c"), "label": "HIGHER_MANAGER" }]), vec![("approvers[1].label", "TOO_MANY")]),
            ("2-long cycle", "c", json!([{ "approver": by("b") }]), vec![("approvers[0].approver", "CYCLE")]),
            ("4-long cycle", "e", json!([{ "approver": by("b") }]), vec![("approvers[0].approver", "CYCLE")]),
            ("several at once", "a", json!([{ "approver": by("nobody") }, { "approver": by("a"), "label": "HIGHER_MANAGER" }]), vec![("approvers[0].approver", "NOT_FOUND"), ("approvers[1].approver", "SELF")]),
        ];
        let before = app.snapshot().await;
        for (what, user, approvers, fields) in cases {
            let response = set(&app, user, approvers).await;
            assert_eq!(response.error_code(), Some("BAD_USER_INPUT"), "{what}: {}", response.body);
            let expected: Vec<(String, String)> = fields.iter().map(|(f, c)| (f.to_string(), c.to_string())).collect();
            assert_eq!(response.field_errors(), expected, "{what}");
            assert!(!response.body.to_string().contains("s@example.com"), "{what}: nothing of another tenant shows");
            assert_eq!(app.snapshot().await, before, "{what}: nothing written");
        }

        // addApprover keeps the same rules, and a second MANAGER is refused there too.
        let second = add(&app, "b", json!({ "approver": by("a") })).await;
        assert_eq!(second.error_code(), Some("BAD_USER_INPUT"));
        assert_eq!(second.field_errors(), vec![("approver.label".to_owned(), "TOO_MANY".to_owned())]);
        let cycle = add(&app, "e", json!({ "approver": by("c"), "label": "MANAGER" })).await;
        assert_eq!(cycle.field_errors(), vec![("approver.approver".to_owned(), "CYCLE".to_owned())]);
        assert_eq!(app.snapshot().await, before);

        let viewer = app.graphql(
            &app.token(Role::Viewer),
            "mutation { setApprovers(user: { externalId: \"a\" }, approvers: []) { id } }",
            Value::Null,
        ).await;
        assert_eq!(viewer.error_code(), Some("FORBIDDEN"));
        let missing = set(&app, "nobody", json!([])).await;
        assert_eq!(missing.error_code(), Some("NOT_FOUND"));
    }
}

db_test! {
    async fn import_user_sets_approvers_in_the_same_transaction(app) {
        for who in ["boss", "top"] {
            person(&app, who).await;
        }
        let emp = |extra: Value| {
            let mut user = json!({ "externalId": "emp", "email": "emp@example.com", "firstName": "E", "lastName": "P" });
            for (k, v) in extra.as_object().unwrap() {
                user[k] = v.clone();
            }
            user
        };
        let created = import(&app, emp(json!({ "managerExternalId": "boss" })), Value::Null).await;
        assert_eq!(created.data()["importUser"]["action"], "CREATED");
        assert_eq!(approvers_of(&app, "emp").await, [link("boss", "MANAGER", true)]);

        // The same again is unchanged; omitting approvers keeps them.
        let again = import(&app, emp(json!({ "managerExternalId": "boss" })), Value::Null).await;
        assert_eq!(again.data()["importUser"]["action"], "UNCHANGED");
        assert_eq!(import(&app, emp(json!({})), Value::Null).await.data()["importUser"]["action"], "UNCHANGED");

        // A change of approvers alone is an update.
        let higher = import(&app, emp(json!({ "approvers": [{ "approver": by("top"), "label": "HIGHER_MANAGER" }], "managerExternalId": "boss" })), Value::Null).await;
        assert_eq!(higher.data()["importUser"]["action"], "UPDATED");
        assert_eq!(approvers_of(&app, "emp").await, [link("boss", "MANAGER", true), link("top", "HIGHER_MANAGER", true)]);

        // managerExternalId alone replaces only the MANAGER link.
        import(&app, emp(json!({ "managerExternalId": null })), Value::Null).await.data();
        assert_eq!(approvers_of(&app, "emp").await, [link("top", "HIGHER_MANAGER", true)]);

        // A bad approver fails the whole import: the new city is not written either.
        let before = app.snapshot().await;
        let bad = import(&app, emp(json!({ "city": "Kyiv", "approvers": [{ "approver": by("nobody") }], "managerExternalId": "emp" })), Value::Null).await;
        assert_eq!(bad.error_code(), Some("BAD_USER_INPUT"), "{}", bad.body);
        let mut fields = bad.field_errors();
        fields.sort();
        assert_eq!(fields, vec![
            ("user.approvers[0].approver".to_owned(), "NOT_FOUND".to_owned()),
            ("user.managerExternalId".to_owned(), "SELF".to_owned()),
        ]);
        assert_eq!(app.snapshot().await, before);

        // A new user whose manager does not exist is not created.
        let orphan = import(&app, json!({ "externalId": "new", "email": "new@example.com", "firstName": "N", "lastName": "U", "managerExternalId": "ghost" }), Value::Null).await;
        assert_eq!(orphan.field_errors(), vec![("user.managerExternalId".to_owned(), "NOT_FOUND".to_owned())]);
        assert_eq!(app.snapshot().await, before);

        // approvers: [] clears.
        import(&app, emp(json!({ "approvers": [] })), Value::Null).await.data();
        assert!(approvers_of(&app, "emp").await.is_empty());
    }
}

db_test! {
    async fn deactivating_an_approver_warns_about_their_managees(app) {
        for who in ["boss", "ann", "bob"] {
            person(&app, who).await;
        }
        for who in ["ann", "bob"] {
            set(&app, who, json!([{ "approver": by("boss") }])).await.data();
        }
        let deactivated = import(
            &app,
            json!({ "externalId": "boss", "email": "boss@example.com", "firstName": "boss", "lastName": "Person", "active": false }),
            Value::Null,
        )
        .await;
        let payload = &deactivated.data()["importUser"];
        assert_eq!(payload["blocked"], 1);
        let warnings = payload["warnings"].as_array().unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        let warning = warnings[0].as_str().unwrap();
        assert!(warning.contains("2 user(s): ann, bob"), "{warning}");
        assert_eq!(approvers_of(&app, "ann").await, [link("boss", "MANAGER", true)], "links stay");
    }
}

async fn statements_per_page(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    // No job workers: their polling would count among the statements.
    let server = ServerProcess::start(&database.url, &[("ROSTER_WORKERS", "0")]);
    server
        .import_users((0..=100).map(|i| {
            let mut user = json!({
                "externalId": format!("u{i}"), "email": format!("u{i}@example.com"),
                "firstName": "U", "lastName": format!("{i}"), "tags": ["staff"],
                "attributes": [{ "name": "grade", "value": "7", "type": "NUMBER" }],
            });
            if i > 0 {
                user["managerExternalId"] = json!("u0");
            }
            user
        }))
        .await;
    // The first user, alone on a page of one, has links both ways too.
    server
        .graphql(
            "mutation { setApprovers(user: { externalId: \"u0\" }, approvers: [{ approver: { externalId: \"u1\" }, label: NON_APPROVING_MANAGER }]) { id } }",
            Value::Null,
        )
        .await
        .data();
    let query = "query($first: Int) { users(first: $first) { edges { node {
        email tags attributes { name } approvers { approver { email } } managees { user { email } }
    } } } }";
    let mut counts = Vec::new();
    for first in [100, 10, 1] {
        let (statements, data) = server
            .statements_for(query, json!({ "first": first }))
            .await;
        let edges = data["users"]["edges"].as_array().unwrap();
        assert_eq!(edges.len(), first);
        assert_eq!(edges[0]["node"]["managees"].as_array().unwrap().len(), 100);
        if first > 1 {
            assert_eq!(
                edges[1]["node"]["approvers"][0]["approver"]["email"],
                "u0@example.com"
            );
        }
        counts.push(statements);
    }
    // One statement for the page, one each for tags and attributes, and per relation
    // (approvers, managees) one for the links and one for the users at their ends.
    assert_eq!(
        counts,
        [7.0, 7.0, 7.0],
        "statements for pages of 100, 10 and 1 users"
    );
}

each_backend!(a_page_of_users_with_links_runs_a_constant_number_of_statements => statements_per_page);

async fn statements_per_chain(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    // No job workers: their polling would count among the statements.
    let server = ServerProcess::start(&database.url, &[("ROSTER_WORKERS", "0")]);
    let user = |id: String, manager: Option<String>| {
        json!({
            "externalId": id, "email": format!("{id}@example.com"), "firstName": "C",
            "lastName": "D", "managerExternalId": manager
        })
    };
    // c0 manages c1, who manages c2, … c30; x and y have no manager yet.
    server
        .import_users(
            (0..=30)
                .map(|i| user(format!("c{i}"), (i > 0).then(|| format!("c{}", i - 1))))
                .chain(["x", "y"].map(|id| user(id.to_owned(), None))),
        )
        .await;
    let set = "mutation($u: String!, $a: String!) { setApprovers(user: { externalId: $u }, approvers: [{ approver: { externalId: $a } }]) { id } }";
    let mut counts = Vec::new();
    for (who, manager) in [("x", "c1"), ("y", "c30")] {
        let (statements, _) = server
            .statements_for(set, json!({ "u": who, "a": manager }))
            .await;
        counts.push(statements);
    }
    assert_eq!(
        counts[0], counts[1],
        "statements to check a chain of 2 and of 31 managers"
    );
}

each_backend!(a_chain_of_managers_is_checked_in_a_constant_number_of_statements => statements_per_chain);

db_test! {
    async fn concurrent_changes_cannot_together_break_the_rules(app) {
        for round in 0..10 {
            let (a, b, c) = (format!("a{round}"), format!("b{round}"), format!("c{round}"));
            for who in [&a, &b, &c] {
                person(&app, who).await;
            }
            // Each alone is fine; together they would make a 2-long cycle.
            let (one, two) = futures_util::join!(
                set(&app, &a, json!([{ "approver": by(&b) }])),
                set(&app, &b, json!([{ "approver": by(&a) }])),
            );
            let mut codes: Vec<Option<&str>> = vec![one.error_code(), two.error_code()];
            codes.sort();
            assert_eq!(codes, [None, Some("BAD_USER_INPUT")], "round {round}: {} {}", one.body, two.body);
            // Each alone is fine; together they would give c two managers.
            let (one, two) = futures_util::join!(
                add(&app, &c, json!({ "approver": by(&a) })),
                add(&app, &c, json!({ "approver": by(&b) })),
            );
            let mut codes: Vec<Option<&str>> = vec![one.error_code(), two.error_code()];
            codes.sort();
            assert_eq!(codes, [None, Some("BAD_USER_INPUT")], "round {round}");
            assert_eq!(approvers_of(&app, &c).await.len(), 1);
        }
    }
}

db_test! {
    async fn imports_and_approver_changes_never_deadlock(app) {
        for who in ["a", "b", "d", "e", "c"] {
            person(&app, who).await;
        }
        let user = |id: &str, manager: Value| json!({
            "externalId": id, "email": format!("{id}@example.com"), "firstName": id,
            "lastName": "Person", "managerExternalId": manager
        });
        for round in 0..20 {
            let manager_of_a = if round % 2 == 0 { "b" } else { "d" };
            let manager_of_e = if round % 2 == 0 { json!("a") } else { Value::Null };
            let (one, two, three) = futures_util::join!(
                import(&app, user("a", json!(manager_of_a)), Value::Null),
                import(&app, user("e", manager_of_e), Value::Null),
                set(&app, "c", json!([{ "approver": by("a") }])),
            );
            for response in [&one, &two, &three] {
                assert!(response.body.get("errors").is_none(), "round {round}: {}", response.body);
            }
        }
    }
}

db_test! {
    async fn approver_edits_keep_what_they_do_not_name(app) {
        for who in ["emp", "boss", "peer"] {
            person(&app, who).await;
        }
        let emp = |extra: Value| {
            let mut user = json!({ "externalId": "emp", "email": "emp@example.com", "firstName": "emp", "lastName": "Person" });
            for (k, v) in extra.as_object().unwrap() {
                user[k] = v.clone();
            }
            user
        };
        set(&app, "emp", json!([
            { "approver": by("boss"), "canApprove": false },
            { "approver": by("peer"), "label": "NON_APPROVING_MANAGER" },
        ])).await.data();
        let before = lookup_updated_at(&app, "emp").await;
        let same = import(&app, emp(json!({ "managerExternalId": "boss" })), Value::Null).await;
        assert_eq!(same.data()["importUser"]["action"], "UNCHANGED", "the same manager keeps canApprove: false");
        assert_eq!(approvers_of(&app, "emp").await, [link("boss", "MANAGER", false), link("peer", "NON_APPROVING_MANAGER", false)]);
        assert_eq!(lookup_updated_at(&app, "emp").await, before);

        // Approver mutations move updatedAt when they change something.
        add(&app, "emp", json!({ "approver": by("peer"), "label": "HIGHER_MANAGER" })).await.data();
        assert_ne!(lookup_updated_at(&app, "emp").await, before);

        // replace: true with only managerExternalId leaves the manager alone in the set.
        import(&app, emp(json!({ "managerExternalId": "boss" })), json!({ "replace": true })).await.data();
        assert_eq!(approvers_of(&app, "emp").await, [link("boss", "MANAGER", false)]);
    }
}

async fn lookup_updated_at(app: &TestApp, user: &str) -> Value {
    let response = app
        .graphql(
            &app.token(Role::Viewer),
            "query($u: UserLookup!) { user(lookup: $u) { updatedAt } }",
            json!({ "u": by(user) }),
        )
        .await;
    response.data()["user"]["updatedAt"].clone()
}

db_test! {
    async fn a_manager_chain_too_long_to_check_is_refused(app) {
        // c0 manages c1, who manages c2, … c1000: the longest chain a job checks whole.
        let chain: Vec<Value> = (0..=1000)
            .map(|i| {
                let mut user = json!({ "externalId": format!("c{i}"), "email": format!("c{i}@example.com"), "firstName": "C", "lastName": "D" });
                if i > 0 {
                    user["managerExternalId"] = json!(format!("c{}", i - 1));
                }
                user
            })
            .collect();
        let id = app.submit_job(json!(chain), Value::Null).await;
        let job = app.finished_job("query($id: ID!) { importJob(id: $id) { status summary { created } } }", &json!(id)).await;
        assert_eq!(job["status"], "COMPLETED", "{job}");
        assert_eq!(job["summary"]["created"], 1001, "{job}");
        // A new user is in no chain yet: nothing to walk.
        let last = json!({ "externalId": "c1001", "email": "c1001@example.com", "firstName": "C", "lastName": "D", "managerExternalId": "c1000" });
        import(&app, last, Value::Null).await.data();
        let top = set(&app, "c0", json!([{ "approver": by("c1001") }])).await;
        assert_eq!(top.field_errors(), vec![("approvers[0].approver".to_owned(), "CHAIN_TOO_DEEP".to_owned())]);
        let bad_lookups = set(&app, "c0", json!([{ "approver": {} }, { "approver": { "id": "x" } }])).await;
        assert_eq!(bad_lookups.field_errors().len(), 2, "every bad lookup is named: {}", bad_lookups.body);
    }
}
