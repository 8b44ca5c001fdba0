//! `POST /scim/v2/Bulk` (RFC 7644 §3.7): bulkIds between operations, failOnErrors, and the
//! limits discovery advertises, on SQLite and PostgreSQL.

use reqwest::Method;
use roster::auth::Role;
use serde_json::{Value, json};

use crate::helpers::{TestApp, db_test};
use crate::scim::{ENTERPRISE, GROUP, admin, graphql_user, okta_user, send};

const BULK: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";

fn bulk(operations: Value) -> Value {
    json!({ "schemas": [BULK], "Operations": operations })
}

fn post_user(bulk_id: &str, user: Value) -> Value {
    json!({ "method": "POST", "bulkId": bulk_id, "path": "/Users", "data": user })
}

async fn user_count(app: &TestApp) -> i64 {
    app.count_rows("users").await
}

db_test! {
    async fn bulk_ids_link_operations_whatever_their_order(app) {
        let mut bob = okta_user("bob");
        bob[ENTERPRISE] = json!({ "manager": { "value": "bulkId:ann" } });
        let operations = json!([
            post_user("bob", bob),
            { "method": "POST", "bulkId": "sales", "path": "/Groups", "data": {
                "schemas": [GROUP], "displayName": "Sales",
                "members": [{ "value": "bulkId:ann" }, { "value": "bulkId:bob" }],
            } },
            post_user("ann", okta_user("ann")),
            { "method": "PATCH", "path": "/Users/bulkId:ann", "data": {
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{ "op": "replace", "path": "title", "value": "Boss" }],
            } },
        ]);

        let answer = admin(&app, Method::POST, "/Bulk", Some(bulk(operations))).await;

        assert_eq!(answer.status, 200, "{:?}", answer.body);
        assert_eq!(answer.body["schemas"], json!(["urn:ietf:params:scim:api:messages:2.0:BulkResponse"]));
        let results = answer.body["Operations"].as_array().unwrap();
        let statuses: Vec<&str> = results.iter().map(|r| r["status"].as_str().unwrap()).collect();
        assert_eq!(statuses, ["201", "201", "201", "200"]);
        let id_of = |bulk_id: &str| {
            let result = results.iter().find(|r| r["bulkId"] == bulk_id).unwrap();
            result["location"].as_str().unwrap().rsplit('/').next().unwrap().to_owned()
        };
        let (ann, bob) = (id_of("ann"), id_of("bob"));
        let bob = graphql_user(&app, &bob).await;
        assert_eq!(bob["approvers"], json!([{ "approver": { "id": ann }, "label": "MANAGER" }]));
        assert_eq!(bob["tags"], json!(["sales"]));
        assert_eq!(graphql_user(&app, &ann).await["tags"], json!(["sales"]));
    }
}

db_test! {
    async fn each_operation_stands_alone_and_fail_on_errors_stops_the_rest(app) {
        let mut bad = okta_user("bad");
        bad["emails"] = json!([{ "value": "not-an-email" }]);
        let operations = json!([
            post_user("a", okta_user("ann")),
            post_user("b", bad.clone()),
            post_user("c", bad),
            post_user("d", okta_user("dan")),
        ]);
        let mut request = bulk(operations);
        request["failOnErrors"] = json!(2);

        let answer = admin(&app, Method::POST, "/Bulk", Some(request)).await;

        let results = answer.body["Operations"].as_array().unwrap();
        let statuses: Vec<&str> = results.iter().map(|r| r["status"].as_str().unwrap()).collect();
        assert_eq!(statuses, ["201", "400", "400"], "the second error stops the request");
        assert_eq!(results[1]["response"]["scimType"], "invalidValue");
        assert!(results[1]["response"]["detail"].as_str().unwrap().contains("emails"));
        assert_eq!(user_count(&app).await, 1, "ann only: dan was never run");
    }
}

db_test! {
    async fn a_ten_megabyte_bulk_payload_is_refused_and_nothing_is_written(app) {
        let mut big = okta_user("ann");
        big["title"] = json!("x".repeat(10 * 1024 * 1024));
        let before = app.snapshot().await;

        let answer = admin(&app, Method::POST, "/Bulk", Some(bulk(json!([post_user("a", big), post_user("b", okta_user("bob"))])))).await;

        assert_eq!(answer.status, 413);
        assert_eq!(answer.body["status"], "413");
        assert!(answer.body["detail"].as_str().unwrap().contains("nothing was written"));
        assert_eq!(app.snapshot().await, before);
    }
}

db_test! {
    async fn more_operations_than_advertised_are_too_many_and_nothing_is_written(app) {
        let operations: Vec<Value> = (0..1001)
            .map(|i| json!({ "method": "DELETE", "path": format!("/Users/{i}") }))
            .collect();
        let mut operations = operations;
        operations[0] = post_user("a", okta_user("ann"));

        let answer = admin(&app, Method::POST, "/Bulk", Some(bulk(Value::Array(operations)))).await;

        assert_eq!(answer.status, 413, "{:?}", answer.body);
        assert_eq!(answer.body["scimType"], "tooMany");
        assert_eq!(user_count(&app).await, 0);
    }
}

db_test! {
    async fn a_viewer_cannot_bulk(app) {
        let request = bulk(json!([post_user("a", okta_user("ann"))]));

        let answer = send(&app, &app.token(Role::Viewer), Method::POST, "/Bulk", Some(request)).await;

        assert_eq!(answer.status, 403);
        assert_eq!(user_count(&app).await, 0);
    }
}

db_test! {
    async fn a_bulk_id_of_a_group_where_a_user_is_expected_is_refused(app) {
        crate::scim::create(&app, okta_user("boss")).await;
        let mut ann = okta_user("ann");
        ann[ENTERPRISE] = json!({ "manager": { "value": "bulkId:sales" } });
        let operations = json!([
            { "method": "POST", "bulkId": "sales", "path": "/Groups", "data": {
                "schemas": [GROUP], "displayName": "Sales",
            } },
            post_user("ann", ann),
        ]);

        let answer = admin(&app, Method::POST, "/Bulk", Some(bulk(operations))).await;

        assert_eq!(answer.status, 200, "{:?}", answer.body);
        let ann = &answer.body["Operations"][1];
        assert_eq!(ann["status"], "400", "{ann:?}");
        assert_eq!(ann["response"]["scimType"], "invalidValue");
        let detail = ann["response"]["detail"].as_str().unwrap();
        assert!(detail.contains("bulkId:sales names a Group, where a User is expected"), "{detail}");
        assert_eq!(user_count(&app).await, 1, "ann was not created");
    }
}

db_test! {
    async fn a_bulk_id_of_a_user_in_a_groups_path_is_refused(app) {
        let sales = admin(&app, Method::POST, "/Groups", Some(json!({ "schemas": [GROUP], "displayName": "Sales" }))).await;
        let sales = sales.body["id"].as_str().unwrap().to_owned();
        let operations = json!([
            post_user("ann", okta_user("ann")),
            { "method": "DELETE", "path": "/Groups/bulkId:ann" },
        ]);

        let answer = admin(&app, Method::POST, "/Bulk", Some(bulk(operations))).await;

        assert_eq!(answer.status, 200, "{:?}", answer.body);
        let delete = &answer.body["Operations"][1];
        assert_eq!(delete["status"], "400", "{delete:?}");
        let detail = delete["response"]["detail"].as_str().unwrap();
        assert!(detail.contains("bulkId:ann names a User, where a Group is expected"), "{detail}");
        let kept = admin(&app, Method::GET, &format!("/Groups/{sales}"), None).await;
        assert_eq!(kept.status, 200, "the group that has the user's id is kept");
    }
}

db_test! {
    async fn an_operation_whose_creator_failed_is_answered_as_such(app) {
        let mut bad = okta_user("bad");
        bad["emails"] = json!([{ "value": "not-an-email" }]);
        let mut ann = okta_user("ann");
        ann[ENTERPRISE] = json!({ "manager": { "value": "bulkId:bad" } });
        let operations = json!([post_user("ann", ann), post_user("bad", bad)]);

        let answer = admin(&app, Method::POST, "/Bulk", Some(bulk(operations))).await;

        assert_eq!(answer.status, 200, "{:?}", answer.body);
        let ann = &answer.body["Operations"][0];
        assert_eq!(ann["status"], "400", "{ann:?}");
        let detail = ann["response"]["detail"].as_str().unwrap();
        assert!(detail.contains("bulkId:bad: the operation that was to create it failed"), "{detail}");
        assert!(!detail.contains("cycle"), "{detail}");
    }
}

db_test! {
    async fn a_reverse_ordered_chain_of_a_thousand_operations_completes(app) {
        const N: usize = 1000;
        // Each user names the next one, which comes later in the request, so the operations
        // run in the reverse of their order. The name rides on `position` (a bulkId is
        // resolved in any value): a manager chain 1000 deep would spend the time in the
        // approver rules' walks up the chain, not in ordering the operations.
        let operations: Vec<Value> = (0..N)
            .map(|i| {
                let mut user = json!({
                    "schemas": [crate::scim::CORE],
                    "userName": format!("u{i}@example.com"),
                    "name": { "givenName": "U", "familyName": "L" },
                    "emails": [{ "value": format!("u{i}@example.com") }],
                });
                if i + 1 < N {
                    user[crate::scim::ROSTER] = json!({ "position": format!("bulkId:u{}", i + 1) });
                }
                post_user(&format!("u{i}"), user)
            })
            .collect();

        let answer = tokio::time::timeout(
            std::time::Duration::from_secs(60),
            admin(&app, Method::POST, "/Bulk", Some(bulk(Value::Array(operations)))),
        )
        .await
        .expect("the request completes in time");

        assert_eq!(answer.status, 200, "{:?}", answer.body);
        let results = answer.body["Operations"].as_array().unwrap();
        assert_eq!(results.len(), N);
        assert!(results.iter().all(|r| r["status"] == "201"), "{:?}", results.iter().find(|r| r["status"] != "201"));
        assert_eq!(user_count(&app).await, N as i64);
    }
}
