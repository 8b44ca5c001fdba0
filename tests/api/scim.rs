//! `/scim/v2`: the SCIM 2.0 provider, each behaviour an identity provider relies on against
//! the real server on SQLite and PostgreSQL. What SCIM writes shows in GraphQL, because it
//! is the same user.

use reqwest::Method;
use roster::auth::Role;
use serde_json::{Value, json};

use crate::helpers::{TestApp, db_test};

pub const CORE: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const ROSTER: &str = "urn:roster:params:scim:schemas:extension:2.0:User";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

/// A SCIM answer: status, `Content-Type`, and the JSON body (`Null` when empty).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub location: Option<String>,
    pub body: Value,
}

impl Answer {
    pub fn scim_type(&self) -> &str {
        self.body["scimType"].as_str().unwrap_or("")
    }

    pub fn detail(&self) -> &str {
        self.body["detail"].as_str().unwrap_or("")
    }

    /// The `id` of each resource of a list.
    pub fn ids(&self) -> Vec<String> {
        self.body["Resources"]
            .as_array()
            .map(|r| {
                r.iter()
                    .map(|u| u["id"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

pub async fn send(
    app: &TestApp,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Answer {
    let mut request = app
        .client
        .request(method, format!("{}/scim/v2{path}", app.address))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request
            .header("Content-Type", "application/scim+json")
            .body(body.to_string());
    }
    let response = request.send().await.expect("request sent");
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let content_type = header("content-type").unwrap_or_default();
    let location = header("location");
    let text = response.text().await.expect("body read");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("HTTP {status}: not JSON: {text}"))
    };
    Answer {
        status,
        content_type,
        location,
        body,
    }
}

/// A request with extra headers (`If-Match`, `If-None-Match`) and the answer's `ETag`.
async fn send_with(
    app: &TestApp,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, Option<String>, Value) {
    let mut request = app
        .client
        .request(method, format!("{}/scim/v2{path}", app.address))
        .bearer_auth(app.token(Role::Admin));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request
            .header("Content-Type", "application/scim+json")
            .body(body.to_string());
    }
    let response = request.send().await.expect("request sent");
    let status = response.status().as_u16();
    let etag = response
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = response.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap()
    };
    (status, etag, body)
}

pub async fn admin(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> Answer {
    send(app, &app.token(Role::Admin), method, path, body).await
}

/// A user as Okta sends it.
pub fn okta_user(name: &str) -> Value {
    json!({
        "schemas": [CORE],
        "userName": format!("{name}@example.com"),
        "name": { "givenName": name, "familyName": "Lee" },
        "emails": [{ "primary": true, "value": format!("{name}@example.com"), "type": "work" }],
        "active": true,
    })
}

/// Creates a user; answers its SCIM id.
pub async fn create(app: &TestApp, user: Value) -> String {
    let answer = admin(app, Method::POST, "/Users", Some(user)).await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    answer.body["id"].as_str().expect("an id").to_owned()
}

/// `GET /Users?filter=…` (and any other query).
async fn list(app: &TestApp, query: &[(&str, &str)]) -> Answer {
    let query = serde_urlencoded::to_string(query).unwrap();
    admin(app, Method::GET, &format!("/Users?{query}"), None).await
}

pub fn patch_op(operations: Value) -> Value {
    json!({ "schemas": [PATCH_OP], "Operations": operations })
}

/// The user as GraphQL sees it, by its SCIM id.
pub async fn graphql_user(app: &TestApp, id: &str) -> Value {
    let query = "query($l: UserLookup!) { user(lookup: $l) {
        externalId source email login firstName lastName active phone department company
        tags attributes { name value } approvers { approver { id } label }
        learningTrackStatus } }";
    app.graphql(
        &app.token(Role::Viewer),
        query,
        json!({ "l": { "id": id } }),
    )
    .await
    .data()["user"]
        .clone()
}

db_test! {
    async fn discovery_advertises_only_what_works(app) {
        let config = admin(&app, Method::GET, "/ServiceProviderConfig", None).await;

        assert_eq!(config.status, 200);
        assert!(config.content_type.starts_with("application/scim+json"), "{}", config.content_type);
        assert_eq!(config.body["patch"]["supported"], true);
        assert_eq!(config.body["filter"]["supported"], true);
        assert_eq!(config.body["bulk"]["supported"], true);
        assert_eq!(config.body["bulk"]["maxOperations"], 1000);
        assert_eq!(config.body["bulk"]["maxPayloadSize"], 1024 * 1024);
        assert_eq!(config.body["etag"]["supported"], true);
        assert_eq!(config.body["sort"]["supported"], false);
        let schemas = admin(&app, Method::GET, "/Schemas", None).await;
        let ids: Vec<&str> = schemas.body["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, [CORE, ENTERPRISE, ROSTER, GROUP]);
        let user = admin(&app, Method::GET, "/ResourceTypes/User", None).await;
        assert_eq!(user.body["endpoint"], "/Users");
        let groups = admin(&app, Method::GET, "/ResourceTypes/Group", None).await;
        assert_eq!(groups.body["endpoint"], "/Groups");
        let elsewhere = admin(&app, Method::GET, "/Me", None).await;
        assert_eq!(elsewhere.status, 404, "/Me is not served");
        assert_eq!(elsewhere.body["status"], "404");
    }
}

db_test! {
    async fn a_created_user_is_a_roster_user_in_the_scim_source(app) {
        let mut user = okta_user("ann");
        user[ENTERPRISE] = json!({ "department": "Sales", "organization": "Acme", "employeeNumber": "E-7" });

        let answer = admin(&app, Method::POST, "/Users", Some(user)).await;

        assert_eq!(answer.status, 201, "{:?}", answer.body);
        assert!(answer.content_type.starts_with("application/scim+json"));
        let id = answer.body["id"].as_str().unwrap();
        assert!(answer.location.as_deref().unwrap().ends_with(&format!("/scim/v2/Users/{id}")));
        let user = graphql_user(&app, id).await;
        assert_eq!(user["login"], "ann@example.com");
        assert_eq!(user["externalId"], "ann@example.com", "no externalId: the userName keys the user");
        assert_eq!(user["source"], "scim");
        assert_eq!((&user["firstName"], &user["lastName"]), (&json!("ann"), &json!("Lee")));
        assert_eq!((&user["department"], &user["company"]), (&json!("Sales"), &json!("Acme")));
        assert_eq!(user["attributes"], json!([{ "name": "employeeNumber", "value": "E-7" }]));
        let read = admin(&app, Method::GET, &format!("/Users/{id}"), None).await;
        assert_eq!(read.body[ENTERPRISE]["employeeNumber"], "E-7");
        assert_eq!(read.body["meta"]["resourceType"], "User");
    }
}

db_test! {
    async fn user_name_eq_finds_the_user_whatever_the_case(app) {
        let id = create(&app, okta_user("ann")).await;
        create(&app, okta_user("bob")).await;

        let found = list(&app, &[("filter", r#"userName eq "ANN@example.com""#)]).await;
        let none = list(&app, &[("filter", r#"userName eq "nobody@example.com""#)]).await;

        assert_eq!(found.status, 200);
        assert_eq!(found.body["schemas"], json!(["urn:ietf:params:scim:api:messages:2.0:ListResponse"]));
        assert_eq!(found.ids(), [id]);
        assert_eq!(found.body["totalResults"], 1);
        assert_eq!(none.body["totalResults"], 0);
        assert_eq!(none.body["Resources"], json!([]));
    }
}

db_test! {
    async fn external_id_eq_finds_the_user(app) {
        let mut user = okta_user("ann");
        user["externalId"] = json!("00u1abc");
        let id = create(&app, user).await;
        create(&app, okta_user("bob")).await;

        let found = list(&app, &[("filter", r#"externalId eq "00u1abc""#)]).await;

        assert_eq!(found.ids(), [id]);
    }
}

/// A user an HR import made, in the source `hr` with the key `hr-1`; answers its id.
async fn hr_user(app: &TestApp) -> String {
    let import = "mutation($u: UserImportInput!) { importUser(user: $u) { user { id } } }";
    let user = json!({
        "source": "hr", "externalId": "hr-1", "email": "ann@example.com",
        "login": "ann@example.com", "firstName": "ann", "lastName": "Lee",
    });
    let answer = app
        .graphql(&app.token(Role::Admin), import, json!({ "u": user }))
        .await;
    answer.data()["importUser"]["user"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

db_test! {
    async fn a_scim_write_keeps_the_key_of_a_user_of_another_source(app) {
        let id = hr_user(&app).await;
        let mut put = okta_user("ann");
        put["externalId"] = json!("00u1abc");

        let answer = admin(&app, Method::PUT, &format!("/Users/{id}"), Some(put)).await;

        assert_eq!(answer.status, 200, "{:?}", answer.body);
        let user = graphql_user(&app, &id).await;
        assert_eq!((&user["source"], &user["externalId"]), (&json!("hr"), &json!("hr-1")));
    }
}

db_test! {
    async fn external_id_eq_searches_only_the_scim_source(app) {
        hr_user(&app).await;

        let found = list(&app, &[("filter", r#"externalId eq "hr-1""#)]).await;

        assert_eq!(found.status, 200, "{:?}", found.body);
        assert!(found.ids().is_empty(), "{:?}", found.body);
    }
}

db_test! {
    async fn a_work_email_value_path_finds_the_user(app) {
        let id = create(&app, okta_user("ann")).await;
        create(&app, okta_user("bob")).await;

        let work = list(&app, &[("filter", r#"emails[type eq "work"].value eq "Ann@Example.com""#)]).await;
        let home = list(&app, &[("filter", r#"emails[type eq "home"].value eq "ann@example.com""#)]).await;

        assert_eq!(work.status, 200, "{:?}", work.body);
        assert_eq!(work.ids(), [id]);
        assert_eq!(home.body["totalResults"], 0, "Roster's one email is a work email");
    }
}

db_test! {
    async fn and_binds_tighter_than_or(app) {
        let ann = create(&app, okta_user("ann")).await;
        let bob = create(&app, okta_user("bob")).await;
        create(&app, okta_user("cid")).await;

        let both = list(&app, &[("filter", r#"userName eq "ann@example.com" or userName eq "bob@example.com" and active eq true"#)]).await;
        let neither = list(&app, &[("filter", r#"userName eq "ann@example.com" and userName eq "bob@example.com""#)]).await;

        assert_eq!(both.ids(), [ann, bob]);
        assert_eq!(neither.body["totalResults"], 0);
    }
}

db_test! {
    async fn co_sw_and_pr_compare_as_the_rfc_says(app) {
        let ann = create(&app, okta_user("ann")).await;
        let mut bob = okta_user("bob");
        bob["title"] = json!("Engineer");
        let bob = create(&app, bob).await;

        let co = list(&app, &[("filter", r#"userName co "NN@""#)]).await;
        let sw = list(&app, &[("filter", r#"name.givenName sw "B""#)]).await;
        let pr = list(&app, &[("filter", "title pr")]).await;
        let not_pr = list(&app, &[("filter", "not (title pr)")]).await;

        assert_eq!(co.ids(), std::slice::from_ref(&ann));
        assert_eq!(sw.ids(), std::slice::from_ref(&bob));
        assert_eq!(pr.ids(), [bob]);
        assert_eq!(not_pr.ids(), [ann]);
    }
}

db_test! {
    async fn patch_takes_op_in_any_case(app) {
        let id = create(&app, okta_user("ann")).await;

        let answer = admin(&app, Method::PATCH, &format!("/Users/{id}"), Some(patch_op(json!([
            { "op": "Replace", "path": "title", "value": "Engineer" },
            { "op": "Add", "path": "name.familyName", "value": "Smith" },
        ])))).await;

        assert_eq!(answer.status, 200, "{:?}", answer.body);
        assert_eq!(answer.body["title"], "Engineer");
        assert_eq!(graphql_user(&app, &id).await["lastName"], "Smith");
    }
}

db_test! {
    async fn patch_without_path_takes_a_value_object(app) {
        let id = create(&app, okta_user("ann")).await;

        let answer = admin(&app, Method::PATCH, &format!("/Users/{id}"), Some(patch_op(json!([
            { "op": "replace", "value": {
                "name.givenName": "Anna",
                "title": "Lead",
                format!("{ENTERPRISE}:department"): "Ops",
            } },
        ])))).await;

        assert_eq!(answer.status, 200, "{:?}", answer.body);
        let user = graphql_user(&app, &id).await;
        assert_eq!((&user["firstName"], &user["department"]), (&json!("Anna"), &json!("Ops")));
        assert_eq!(answer.body["title"], "Lead");
    }
}

db_test! {
    async fn active_sent_as_the_string_false_deactivates(app) {
        let id = create(&app, okta_user("ann")).await;

        let answer = admin(&app, Method::PATCH, &format!("/Users/{id}"), Some(patch_op(json!([
            { "op": "Replace", "path": "active", "value": "False" },
        ])))).await;

        assert_eq!(answer.status, 200, "{:?}", answer.body);
        assert_eq!(answer.body["active"], false);
        assert_eq!(graphql_user(&app, &id).await["active"], false);
    }
}

db_test! {
    async fn a_filtered_path_replaces_the_value_it_names(app) {
        let id = create(&app, okta_user("ann")).await;

        let answer = admin(&app, Method::PATCH, &format!("/Users/{id}"), Some(patch_op(json!([
            { "op": "replace", "path": "emails[type eq \"work\"].value", "value": "ann.lee@example.com" },
            { "op": "add", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "+380971234567" },
        ])))).await;

        assert_eq!(answer.status, 200, "{:?}", answer.body);
        let user = graphql_user(&app, &id).await;
        assert_eq!(user["email"], "ann.lee@example.com");
        assert_eq!(user["phone"], "+380971234567");
    }
}

db_test! {
    async fn manager_value_is_the_manager_approver_under_the_same_rules(app) {
        let boss = create(&app, okta_user("boss")).await;
        let mut ann = okta_user("ann");
        ann[ENTERPRISE] = json!({ "manager": { "value": boss } });
        let ann = create(&app, ann).await;

        let user = graphql_user(&app, &ann).await;
        assert_eq!(user["approvers"], json!([{ "approver": { "id": boss }, "label": "MANAGER" }]));
        let read = admin(&app, Method::GET, &format!("/Users/{ann}"), None).await;
        assert_eq!(read.body[ENTERPRISE]["manager"]["value"], json!(boss));
        let before = app.snapshot().await;
        let cycle = admin(&app, Method::PATCH, &format!("/Users/{boss}"), Some(patch_op(json!([
            { "op": "replace", "path": format!("{ENTERPRISE}:manager"), "value": { "value": ann } },
        ])))).await;

        assert_eq!(cycle.status, 400, "{:?}", cycle.body);
        assert_eq!(cycle.scim_type(), "invalidValue");
        assert!(cycle.detail().contains(&format!("{ENTERPRISE}:manager.value")), "{}", cycle.detail());
        assert_eq!(app.snapshot().await, before, "nothing was written");
    }
}

db_test! {
    async fn entras_manager_patch_with_a_bare_id_sets_the_manager(app) {
        let boss = create(&app, okta_user("boss")).await;
        let ann = create(&app, okta_user("ann")).await;
        let body: Value = serde_json::from_str(&format!(r#"{{
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{{
                "op": "Add",
                "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
                "value": "{boss}"
            }}]
        }}"#)).unwrap();

        let answer = admin(&app, Method::PATCH, &format!("/Users/{ann}"), Some(body)).await;

        assert_eq!(answer.status, 200, "{:?}", answer.body);
        let user = graphql_user(&app, &ann).await;
        assert_eq!(user["approvers"], json!([{ "approver": { "id": boss }, "label": "MANAGER" }]));
    }
}

db_test! {
    async fn a_manager_posted_as_a_bare_id_is_the_manager(app) {
        let boss = create(&app, okta_user("boss")).await;
        let mut ann = okta_user("ann");
        ann[ENTERPRISE] = json!({ "manager": boss });

        let ann = create(&app, ann).await;

        let user = graphql_user(&app, &ann).await;
        assert_eq!(user["approvers"], json!([{ "approver": { "id": boss }, "label": "MANAGER" }]));
    }
}

/// Ann, whose manager Bob has been deactivated since; answers Ann's id.
async fn report_of_an_inactive_manager(app: &TestApp) -> String {
    let bob = create(app, okta_user("bob")).await;
    let mut ann = okta_user("ann");
    ann[ENTERPRISE] = json!({ "manager": { "value": bob } });
    let ann = create(app, ann).await;
    let gone = admin(app, Method::DELETE, &format!("/Users/{bob}"), None).await;
    assert_eq!(gone.status, 204, "{:?}", gone.body);
    ann
}

db_test! {
    async fn a_report_of_an_inactive_manager_can_be_patched(app) {
        let ann = report_of_an_inactive_manager(&app).await;

        let answer = admin(&app, Method::PATCH, &format!("/Users/{ann}"), Some(patch_op(json!([
            { "op": "replace", "path": "title", "value": "Clerk" },
        ])))).await;

        assert_eq!(answer.status, 200, "{:?}", answer.body);
        assert_eq!(answer.body["title"], "Clerk");
    }
}

db_test! {
    async fn a_report_of_an_inactive_manager_can_be_deleted(app) {
        let ann = report_of_an_inactive_manager(&app).await;

        let answer = admin(&app, Method::DELETE, &format!("/Users/{ann}"), None).await;

        assert_eq!(answer.status, 204, "{:?}", answer.body);
        assert_eq!(graphql_user(&app, &ann).await["active"], false);
    }
}

db_test! {
    async fn a_put_that_sends_the_stored_inactive_manager_back_is_accepted(app) {
        let ann = report_of_an_inactive_manager(&app).await;
        let read = admin(&app, Method::GET, &format!("/Users/{ann}"), None).await;
        let mut put = okta_user("ann");
        put[ENTERPRISE] = read.body[ENTERPRISE].clone();

        let answer = admin(&app, Method::PUT, &format!("/Users/{ann}"), Some(put)).await;

        assert_eq!(answer.status, 200, "{:?}", answer.body);
        assert_eq!(answer.body[ENTERPRISE]["manager"]["value"], read.body[ENTERPRISE]["manager"]["value"]);
    }
}

db_test! {
    async fn a_manager_in_another_tenant_is_not_found_and_nothing_is_written(app) {
        let other = send(&app, &app.token_for(Role::Admin, Some("other")), Method::POST, "/Users", Some(okta_user("boss"))).await;
        assert_eq!(other.status, 201);
        let mut ann = okta_user("ann");
        ann[ENTERPRISE] = json!({ "manager": { "value": other.body["id"] } });
        let before = app.snapshot().await;

        let answer = admin(&app, Method::POST, "/Users", Some(ann)).await;

        assert_eq!(answer.status, 400, "{:?}", answer.body);
        assert_eq!(answer.scim_type(), "invalidValue");
        assert!(answer.detail().contains("manager.value"), "{}", answer.detail());
        assert_eq!(app.snapshot().await, before);
    }
}

db_test! {
    async fn pages_start_at_one_and_count_every_match(app) {
        let mut ids = Vec::new();
        for name in ["a1", "a2", "a3", "a4", "a5"] {
            ids.push(create(&app, okta_user(name)).await);
        }

        let page = list(&app, &[("startIndex", "2"), ("count", "2")]).await;
        let last = list(&app, &[("startIndex", "5"), ("count", "2")]).await;
        let counted = list(&app, &[("count", "0")]).await;

        assert_eq!(page.ids(), &ids[1..3]);
        assert_eq!(page.body["totalResults"], 5);
        assert_eq!(page.body["startIndex"], 2);
        assert_eq!(page.body["itemsPerPage"], 2);
        assert_eq!(last.ids(), &ids[4..]);
        assert_eq!(counted.body["totalResults"], 5);
        assert_eq!(counted.body["Resources"], json!([]));
    }
}

db_test! {
    async fn attributes_and_excluded_attributes_shape_the_answer(app) {
        let id = create(&app, okta_user("ann")).await;

        let only = list(&app, &[("attributes", "userName,name.givenName")]).await;
        let without = admin(&app, Method::GET, &format!("/Users/{id}?excludedAttributes=emails,{ROSTER}"), None).await;

        let user = &only.body["Resources"][0];
        assert_eq!(user["userName"], "ann@example.com");
        assert_eq!(user["name"], json!({ "givenName": "ann" }));
        assert!(user.get("emails").is_none() && user.get("id").is_some(), "{user}");
        assert!(without.body.get("emails").is_none() && without.body.get(ROSTER).is_none());
        assert_eq!(without.body["userName"], "ann@example.com");
    }
}

db_test! {
    async fn a_viewer_reads_but_does_not_write(app) {
        let id = create(&app, okta_user("ann")).await;
        let viewer = app.token(Role::Viewer);
        let before = app.snapshot().await;

        let read = send(&app, &viewer, Method::GET, &format!("/Users/{id}"), None).await;
        let created = send(&app, &viewer, Method::POST, "/Users", Some(okta_user("bob"))).await;
        let deleted = send(&app, &viewer, Method::DELETE, &format!("/Users/{id}"), None).await;

        assert_eq!(read.status, 200);
        assert_eq!((created.status, deleted.status), (403, 403));
        assert_eq!(created.body["status"], "403");
        assert_eq!(app.snapshot().await, before);
    }
}

db_test! {
    async fn another_tenant_sees_and_changes_nothing(app) {
        let id = create(&app, okta_user("ann")).await;
        let other = app.token_for(Role::Admin, Some("other"));
        let before = app.snapshot().await;

        let read = send(&app, &other, Method::GET, &format!("/Users/{id}"), None).await;
        let listed = send(&app, &other, Method::GET, "/Users", None).await;
        let patched = send(&app, &other, Method::PATCH, &format!("/Users/{id}"), Some(patch_op(json!([
            { "op": "replace", "path": "title", "value": "Owned" },
        ])))).await;
        let deleted = send(&app, &other, Method::DELETE, &format!("/Users/{id}"), None).await;

        assert_eq!((read.status, patched.status, deleted.status), (404, 404, 404));
        assert_eq!(listed.body["totalResults"], 0);
        assert_eq!(app.snapshot().await, before);
    }
}

db_test! {
    async fn a_malformed_filter_is_an_invalid_filter(app) {
        create(&app, okta_user("ann")).await;

        for filter in [r#"userName eq"#, r#"userName eq "ann"#, r#"(userName eq "a""#, r#"shoeSize eq "9""#] {
            let answer = list(&app, &[("filter", filter)]).await;
            assert_eq!(answer.status, 400, "{filter}");
            assert_eq!(answer.scim_type(), "invalidFilter", "{filter}: {:?}", answer.body);
            assert_eq!(answer.body["schemas"], json!(["urn:ietf:params:scim:api:messages:2.0:Error"]));
        }
    }
}

db_test! {
    async fn every_unknown_attribute_is_named_and_nothing_is_written(app) {
        let mut user = okta_user("ann");
        user["shoeSize"] = json!(44);
        user["name"]["nickname2"] = json!("A");
        let before = app.snapshot().await;

        let answer = admin(&app, Method::POST, "/Users", Some(user)).await;

        assert_eq!(answer.status, 400);
        assert_eq!(answer.scim_type(), "invalidValue");
        assert!(answer.detail().contains("shoeSize") && answer.detail().contains("name.nickname2"), "{}", answer.detail());
        assert_eq!(app.snapshot().await, before);
    }
}

db_test! {
    async fn every_bad_value_is_named_by_its_scim_attribute(app) {
        let mut user = okta_user("ann");
        user["emails"][0]["value"] = json!("not-an-email");
        user["phoneNumbers"] = json!([{ "value": "12", "type": "work" }]);
        user["name"]["givenName"] = json!("");
        let before = app.snapshot().await;

        let answer = admin(&app, Method::POST, "/Users", Some(user)).await;

        assert_eq!(answer.status, 400);
        assert_eq!(answer.scim_type(), "invalidValue");
        for named in ["emails:", "phoneNumbers:", "name.givenName:"] {
            assert!(answer.detail().contains(named), "{named} in {}", answer.detail());
        }
        assert_eq!(app.snapshot().await, before);
    }
}

db_test! {
    async fn a_wrong_schema_is_refused(app) {
        let id = create(&app, okta_user("bob")).await;
        let mut user = okta_user("ann");
        user["schemas"] = json!(["urn:ietf:params:scim:schemas:core:2.0:Group"]);
        let before = app.snapshot().await;

        let answer = admin(&app, Method::POST, "/Users", Some(user)).await;
        let patch = admin(&app, Method::PATCH, &format!("/Users/{id}"), Some(json!({
            "schemas": [CORE],
            "Operations": [{ "op": "replace", "path": "title", "value": "x" }],
        }))).await;

        assert_eq!(answer.status, 400);
        assert_eq!(answer.scim_type(), "invalidValue");
        assert!(answer.detail().contains("schemas"), "{}", answer.detail());
        assert_eq!(patch.status, 400, "{:?}", patch.body);
        assert!(patch.detail().contains(PATCH_OP), "{}", patch.detail());
        assert_eq!(app.snapshot().await, before);
    }
}

db_test! {
    async fn a_patch_of_a_read_only_attribute_is_a_mutability_error(app) {
        let id = create(&app, okta_user("ann")).await;
        let before = app.snapshot().await;

        for path in ["id", "meta", "groups", &format!("{ROSTER}:source")] {
            let answer = admin(&app, Method::PATCH, &format!("/Users/{id}"), Some(patch_op(json!([
                { "op": "replace", "path": "title", "value": "Changed" },
                { "op": "replace", "path": path, "value": "x" },
            ])))).await;
            assert_eq!(answer.status, 400, "{path}");
            assert_eq!(answer.scim_type(), "mutability", "{path}: {:?}", answer.body);
            assert!(answer.detail().contains(path), "{}", answer.detail());
        }
        assert_eq!(app.snapshot().await, before, "the whole PATCH is refused");
    }
}

db_test! {
    async fn a_ten_megabyte_payload_is_refused_before_it_is_read(app) {
        let mut user = okta_user("ann");
        user["title"] = json!("x".repeat(10 * 1024 * 1024));
        let before = app.snapshot().await;

        let answer = admin(&app, Method::POST, "/Users", Some(user)).await;

        assert_eq!(answer.status, 413);
        assert_eq!(answer.body["status"], "413");
        assert!(answer.detail().contains("nothing was written"), "{}", answer.detail());
        assert_eq!(app.snapshot().await, before);
    }
}

db_test! {
    async fn a_taken_user_name_is_a_uniqueness_error(app) {
        create(&app, okta_user("ann")).await;
        let mut again = okta_user("ann");
        again["externalId"] = json!("another");
        again["emails"][0]["value"] = json!("other@example.com");
        let before = app.snapshot().await;

        let answer = admin(&app, Method::POST, "/Users", Some(again)).await;

        assert_eq!(answer.status, 409, "{:?}", answer.body);
        assert_eq!(answer.scim_type(), "uniqueness");
        assert!(answer.detail().contains("userName"), "{}", answer.detail());
        assert_eq!(app.snapshot().await, before);
    }
}

db_test! {
    async fn delete_deactivates_and_keeps_the_user(app) {
        let id = create(&app, okta_user("ann")).await;

        let answer = admin(&app, Method::DELETE, &format!("/Users/{id}"), None).await;

        assert_eq!(answer.status, 204);
        assert_eq!(graphql_user(&app, &id).await["active"], false);
    }
}

db_test! {
    async fn put_replaces_core_attributes_and_keeps_a_left_out_extension(app) {
        let mut user = okta_user("ann");
        user["title"] = json!("Engineer");
        user[ROSTER] = json!({ "tags": ["Sales"] });
        let id = create(&app, user).await;

        let answer = admin(&app, Method::PUT, &format!("/Users/{id}"), Some(okta_user("ann"))).await;

        assert_eq!(answer.status, 200, "{:?}", answer.body);
        assert!(answer.body.get("title").is_none(), "a left-out core attribute is cleared");
        assert_eq!(graphql_user(&app, &id).await["tags"], json!(["sales"]));
    }
}

db_test! {
    async fn a_put_with_the_roster_extension_but_no_tags_keeps_the_tags(app) {
        let mut user = okta_user("ann");
        user[ROSTER] = json!({ "tags": ["Sales"] });
        let id = create(&app, user).await;
        let mut put = okta_user("ann");
        put[ROSTER] = json!({ "position": "Clerk" });

        let answer = admin(&app, Method::PUT, &format!("/Users/{id}"), Some(put)).await;

        assert_eq!(answer.status, 200, "{:?}", answer.body);
        assert_eq!(graphql_user(&app, &id).await["tags"], json!(["sales"]));
    }
}

db_test! {
    async fn a_put_with_the_roster_extension_but_no_attributes_keeps_the_attributes(app) {
        let mut user = okta_user("ann");
        user[ROSTER] = json!({ "attributes": [{ "name": "shift", "value": "night" }] });
        let id = create(&app, user).await;
        let mut put = okta_user("ann");
        put[ROSTER] = json!({ "position": "Clerk" });

        let answer = admin(&app, Method::PUT, &format!("/Users/{id}"), Some(put)).await;

        assert_eq!(answer.status, 200, "{:?}", answer.body);
        assert_eq!(
            graphql_user(&app, &id).await["attributes"],
            json!([{ "name": "shift", "value": "night" }])
        );
    }
}

db_test! {
    async fn a_patch_that_removes_the_tags_clears_them(app) {
        let mut user = okta_user("ann");
        user[ROSTER] = json!({ "tags": ["Sales"], "attributes": [{ "name": "shift", "value": "night" }] });
        let id = create(&app, user).await;

        let answer = admin(&app, Method::PATCH, &format!("/Users/{id}"), Some(patch_op(json!([
            { "op": "remove", "path": format!("{ROSTER}:tags") },
            { "op": "remove", "path": format!("{ROSTER}:attributes") },
        ])))).await;

        assert_eq!(answer.status, 200, "{:?}", answer.body);
        let user = graphql_user(&app, &id).await;
        assert_eq!((&user["tags"], &user["attributes"]), (&json!([]), &json!([])));
    }
}

db_test! {
    async fn tags_sent_over_scim_assign_learning_tracks(app) {
        let track = "mutation { createLearningTrack(input: { name: \"Safety\", tags: [\"sales\"] }) { id } }";
        app.graphql(&app.token(Role::Admin), track, json!({})).await.data();
        let mut user = okta_user("ann");
        user[ROSTER] = json!({ "tags": ["Sales"] });

        let id = create(&app, user).await;

        assert_eq!(graphql_user(&app, &id).await["learningTrackStatus"], "UNCOMPLETED");
        let tagged = list(&app, &[("filter", &format!(r#"{ROSTER}:tags eq "SALES""#))]).await;
        assert_eq!(tagged.ids(), [id]);
    }
}

db_test! {
    async fn no_token_is_a_scim_401(app) {
        let answer = send(&app, "not-a-token", Method::GET, "/Users", None).await;

        assert_eq!(answer.status, 401);
        assert_eq!(answer.body["status"], "401");
        assert!(answer.content_type.starts_with("application/scim+json"));
    }
}

db_test! {
    async fn requests_are_counted_by_operation_and_status(app) {
        create(&app, okta_user("ann")).await;
        list(&app, &[("filter", "userName eq")]).await;

        let metrics = app.get("/metrics").await.text().await.unwrap();

        assert!(metrics.contains(r#"roster_scim_requests_total{op="create_user",status="201"}"#), "{metrics}");
        assert!(metrics.contains(r#"roster_scim_requests_total{op="list_users",status="400"}"#));
    }
}

db_test! {
    async fn a_search_request_lists_as_a_query_would(app) {
        let ann = create(&app, okta_user("ann")).await;
        create(&app, okta_user("bob")).await;

        let answer = admin(&app, Method::POST, "/Users/.search", Some(json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
            "filter": "userName sw \"ann\"",
            "attributes": ["userName"],
            "startIndex": 1,
            "count": 10,
        }))).await;
        let across = admin(&app, Method::POST, "/.search", Some(json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
        }))).await;

        assert_eq!(answer.status, 200, "{:?}", answer.body);
        assert_eq!(answer.ids(), [ann]);
        assert!(answer.body["Resources"][0].get("emails").is_none());
        assert_eq!(across.status, 501);
    }
}

db_test! {
    async fn meta_times_compare_as_instants(app) {
        let id = create(&app, okta_user("ann")).await;

        let after = list(&app, &[("filter", r#"meta.lastModified gt "2020-01-01T00:00:00Z""#)]).await;
        let before = list(&app, &[("filter", r#"meta.created lt "2020-01-01T02:00:00+02:00""#)]).await;
        let bad = list(&app, &[("filter", r#"meta.created gt "yesterday""#)]).await;

        assert_eq!(after.ids(), [id]);
        assert_eq!(before.body["totalResults"], 0);
        assert_eq!(bad.scim_type(), "invalidFilter");
    }
}

db_test! {
    async fn scim_users_are_in_the_users_export(app) {
        create(&app, okta_user("ann")).await;

        let export = app.get_with("/exports/users.csv", &app.token(Role::Viewer)).await;

        let csv = export.text().await.unwrap();
        assert!(csv.lines().any(|line| line.contains("ann@example.com") && line.contains("scim")), "{csv}");
    }
}

db_test! {
    async fn if_match_writes_only_the_version_it_names(app) {
        let id = create(&app, okta_user("ann")).await;
        let path = format!("/Users/{id}");
        let (_, read, body) = send_with(&app, Method::GET, &path, &[], None).await;
        let read = read.expect("an ETag");
        assert_eq!(body["meta"]["version"], json!(read));
        let title = |t: &str| patch_op(json!([{ "op": "replace", "path": "title", "value": t }]));

        let (status, written, _) = send_with(&app, Method::PATCH, &path, &[("If-Match", &read)], Some(title("Lead"))).await;
        assert_eq!(status, 200);
        let written = written.expect("a new ETag");
        assert_ne!(written, read);
        let before = app.snapshot().await;
        let (stale, _, error) = send_with(&app, Method::PUT, &path, &[("If-Match", &read)], Some(okta_user("ann"))).await;

        assert_eq!(stale, 412, "{error}");
        assert_eq!(error["status"], "412");
        assert_eq!(app.snapshot().await, before, "nothing was written");
        let (unchanged, _, empty) = send_with(&app, Method::GET, &path, &[("If-None-Match", &written)], None).await;
        assert_eq!((unchanged, empty), (304, Value::Null));
        let (deleted, _, _) = send_with(&app, Method::DELETE, &path, &[("If-Match", &written)], None).await;
        assert_eq!(deleted, 204);
    }
}

/// The user's `customInfo` as GraphQL reads it.
async fn custom_info(app: &TestApp, id: &str) -> Value {
    let query = "query($l: UserLookup!) { user(lookup: $l) { customInfo } }";
    app.graphql(
        &app.token(Role::Viewer),
        query,
        json!({ "l": { "id": id } }),
    )
    .await
    .data()["user"]["customInfo"]
        .clone()
}

db_test! {
    async fn a_custom_info_string_that_reads_as_json_keeps_its_type_through_patch_and_delete(app) {
        let mut user = okta_user("ann");
        user[ROSTER] = json!({ "customInfo": "\"42\"" });
        let id = create(&app, user).await;
        assert_eq!(custom_info(&app, &id).await, json!("42"));
        let read = admin(&app, Method::GET, &format!("/Users/{id}"), None).await;
        assert_eq!(read.body[ROSTER]["customInfo"], "\"42\"", "the JSON text of the string");

        let patched = admin(&app, Method::PATCH, &format!("/Users/{id}"), Some(patch_op(json!([
            { "op": "replace", "path": "title", "value": "Lead" },
        ])))).await;
        assert_eq!(patched.status, 200, "{:?}", patched.body);
        assert_eq!(custom_info(&app, &id).await, json!("42"), "a PATCH of the title keeps it");
        let deleted = admin(&app, Method::DELETE, &format!("/Users/{id}"), None).await;

        assert_eq!(deleted.status, 204, "{:?}", deleted.body);
        assert_eq!(custom_info(&app, &id).await, json!("42"), "a DELETE keeps it");
    }
}

/// Ann, created with `manager.value` as sent; answers the answer.
async fn create_with_manager(app: &TestApp, value: &str) -> Answer {
    let mut ann = okta_user("ann");
    ann[ENTERPRISE] = json!({ "manager": { "value": value } });
    admin(app, Method::POST, "/Users", Some(ann)).await
}

db_test! {
    async fn a_manager_value_that_is_an_external_id_names_that_user(app) {
        let mut boss = okta_user("boss");
        boss["externalId"] = json!("00u1boss");
        let boss = create(&app, boss).await;

        let answer = create_with_manager(&app, "00u1boss").await;

        assert_eq!(answer.status, 201, "{:?}", answer.body);
        assert_eq!(answer.body[ENTERPRISE]["manager"]["value"], json!(boss));
        let ann = answer.body["id"].as_str().unwrap();
        let user = graphql_user(&app, ann).await;
        assert_eq!(user["approvers"], json!([{ "approver": { "id": boss }, "label": "MANAGER" }]));
    }
}

db_test! {
    async fn a_manager_value_that_is_a_user_name_names_that_user(app) {
        let mut boss = okta_user("boss");
        boss["externalId"] = json!("00u1boss");
        let boss = create(&app, boss).await;

        let answer = create_with_manager(&app, "Boss@Example.com").await;

        assert_eq!(answer.status, 201, "{:?}", answer.body);
        assert_eq!(answer.body[ENTERPRISE]["manager"]["value"], json!(boss));
    }
}

db_test! {
    async fn a_manager_value_that_names_no_user_is_an_invalid_value_and_nothing_is_written(app) {
        create(&app, okta_user("boss")).await;
        let before = app.snapshot().await;

        let answer = create_with_manager(&app, "00u1nobody").await;

        assert_eq!(answer.status, 400, "{:?}", answer.body);
        assert_eq!(answer.scim_type(), "invalidValue");
        assert!(answer.detail().contains(&format!("{ENTERPRISE}:manager.value")), "{}", answer.detail());
        assert!(answer.detail().contains("00u1nobody"), "{}", answer.detail());
        assert_eq!(app.snapshot().await, before, "nothing was written");
    }
}

/// The value of `roster_scim_requests_total` for `op` and `status` (0 before the first).
async fn requests_counted(app: &TestApp, op: &str, status: &str) -> u64 {
    let metrics = app.get("/metrics").await.text().await.unwrap();
    let series = format!(r#"roster_scim_requests_total{{op="{op}",status="{status}"}} "#);
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&series))
        .map_or(0, |n| n.trim().parse().unwrap())
}

db_test! {
    async fn a_query_string_the_parameters_cannot_be_read_from_is_a_counted_scim_error(app) {
        let before = requests_counted(&app, "list_groups", "400").await;

        for path in ["/Users?count=1&count=2", "/Groups?startIndex=1&startIndex=2"] {
            let answer = admin(&app, Method::GET, path, None).await;

            assert_eq!(answer.status, 400, "{path}: {:?}", answer.body);
            assert!(answer.content_type.starts_with("application/scim+json"), "{path}: {}", answer.content_type);
            assert_eq!(answer.scim_type(), "invalidValue", "{path}");
            let name = if path.starts_with("/Users") { "count" } else { "startIndex" };
            assert!(answer.detail().contains(name), "{path}: {}", answer.detail());
        }
        assert!(requests_counted(&app, "list_groups", "400").await > before);
    }
}

db_test! {
    async fn a_304_names_the_version_in_its_etag(app) {
        let id = create(&app, okta_user("ann")).await;
        let group = admin(&app, Method::POST, "/Groups", Some(json!({ "schemas": [GROUP], "displayName": "Sales" }))).await;
        assert_eq!(group.status, 201, "{:?}", group.body);
        let group = group.body["id"].as_str().unwrap().to_owned();

        for path in [format!("/Users/{id}"), format!("/Groups/{group}")] {
            let (_, read, _) = send_with(&app, Method::GET, &path, &[], None).await;
            let read = read.expect("an ETag");

            let (status, etag, body) = send_with(&app, Method::GET, &path, &[("If-None-Match", &read)], None).await;

            assert_eq!((status, body), (304, Value::Null), "{path}");
            assert_eq!(etag, Some(read), "{path}: a 304 carries the ETag (RFC 9110 §15.4.5)");
        }
    }
}
