//! `/scim/v2/Groups`: groups are tags, so an identity provider's groups assign learning
//! tracks; on SQLite and PostgreSQL.

use reqwest::Method;
use roster::auth::Role;
use serde_json::{Value, json};

use crate::helpers::{TestApp, db_test};
use crate::scim::{GROUP, admin, create, graphql_user, okta_user, patch_op, send};

/// Creates a group; answers its SCIM id.
async fn create_group(app: &TestApp, name: &str, members: &[String]) -> String {
    let members: Vec<Value> = members.iter().map(|id| json!({ "value": id })).collect();
    let answer = admin(
        app,
        Method::POST,
        "/Groups",
        Some(json!({
            "schemas": [GROUP], "displayName": name, "members": members,
        })),
    )
    .await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    answer.body["id"].as_str().expect("an id").to_owned()
}

/// The member ids of a group, sorted as numbers.
async fn members(app: &TestApp, group: &str) -> Vec<String> {
    let answer = admin(app, Method::GET, &format!("/Groups/{group}"), None).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let mut ids: Vec<String> = answer.body["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"].as_str().unwrap().to_owned())
        .collect();
    ids.sort_by_key(|id| id.parse::<i64>().unwrap());
    ids
}

db_test! {
    async fn a_groups_members_carry_its_tag_and_so_its_learning_tracks(app) {
        let track = "mutation { createLearningTrack(input: { name: \"Safety\", tags: [\"safety team\"] }) { id } }";
        app.graphql(&app.token(Role::Admin), track, json!({})).await.data();
        let ann = create(&app, okta_user("ann")).await;
        let bob = create(&app, okta_user("bob")).await;

        let group = create_group(&app, "Safety Team", std::slice::from_ref(&ann)).await;

        assert_eq!(members(&app, &group).await, std::slice::from_ref(&ann));
        let user = graphql_user(&app, &ann).await;
        assert_eq!(user["tags"], json!(["safety team"]));
        assert_eq!(user["learningTrackStatus"], "UNCOMPLETED");
        assert_eq!(graphql_user(&app, &bob).await["learningTrackStatus"], "NO_TRACKS_ASSIGNED");
        let read = admin(&app, Method::GET, &format!("/Groups/{group}"), None).await;
        assert_eq!(read.body["displayName"], "Safety Team");
        let listed = admin(&app, Method::GET, "/Groups?startIndex=1&count=10", None).await;
        assert_eq!(listed.body["Resources"][0]["members"][0]["value"], json!(ann));
        assert_eq!(listed.body["totalResults"], 1);
        let member = admin(&app, Method::GET, &format!("/Users/{ann}"), None).await;
        assert_eq!(member.body["groups"][0]["value"], json!(group));
        assert_eq!(member.body["groups"][0]["display"], "Safety Team");
    }
}

db_test! {
    async fn members_are_added_and_removed_in_pages(app) {
        let mut users = Vec::new();
        for i in 0..12 {
            users.push(create(&app, okta_user(&format!("u{i}"))).await);
        }
        let group = create_group(&app, "Sales", &[]).await;

        for page in users.chunks(5) {
            let values: Vec<Value> = page.iter().map(|id| json!({ "value": id })).collect();
            let answer = admin(&app, Method::PATCH, &format!("/Groups/{group}"), Some(patch_op(json!([
                { "op": "Add", "path": "members", "value": values },
            ])))).await;
            assert_eq!(answer.status, 200, "{:?}", answer.body);
        }
        assert_eq!(members(&app, &group).await, users);
        let answer = admin(&app, Method::PATCH, &format!("/Groups/{group}"), Some(patch_op(json!([
            { "op": "Remove", "path": format!("members[value eq \"{}\"]", users[0]) },
            { "op": "remove", "path": "members", "value": [{ "value": users[1] }, { "value": users[2] }] },
        ])))).await;

        assert_eq!(answer.status, 200, "{:?}", answer.body);
        assert_eq!(members(&app, &group).await, &users[3..]);
        assert_eq!(graphql_user(&app, &users[0]).await["tags"], json!([]));
        assert_eq!(graphql_user(&app, &users[3]).await["tags"], json!(["sales"]));
    }
}

db_test! {
    async fn a_renamed_group_retags_its_members_and_a_deleted_one_untags_them(app) {
        let ann = create(&app, okta_user("ann")).await;
        let group = create_group(&app, "Sales", std::slice::from_ref(&ann)).await;

        let renamed = admin(&app, Method::PATCH, &format!("/Groups/{group}"), Some(patch_op(json!([
            { "op": "replace", "value": { "displayName": "Field Sales" } },
        ])))).await;
        assert_eq!(renamed.status, 200, "{:?}", renamed.body);
        assert_eq!(graphql_user(&app, &ann).await["tags"], json!(["field sales"]));
        let deleted = admin(&app, Method::DELETE, &format!("/Groups/{group}"), None).await;

        assert_eq!(deleted.status, 204);
        assert_eq!(graphql_user(&app, &ann).await["tags"], json!([]));
        assert_eq!(admin(&app, Method::GET, &format!("/Groups/{group}"), None).await.status, 404);
    }
}

db_test! {
    async fn display_name_filters_fold_the_case_of_any_script(app) {
        let group = create_group(&app, "Продажи", &[]).await;
        create_group(&app, "Sales", &[]).await;
        let query = |filter: &str| format!("/Groups?{}", serde_urlencoded::to_string([("filter", filter)]).unwrap());

        let eq = admin(&app, Method::GET, &query(r#"displayName eq "ПРОДАЖИ""#), None).await;
        let sw = admin(&app, Method::GET, &query(r#"displayName sw "ПРОД""#), None).await;

        assert_eq!(eq.ids(), std::slice::from_ref(&group), "{:?}", eq.body);
        assert_eq!(sw.ids(), [group], "{:?}", sw.body);
    }
}

db_test! {
    async fn display_name_eq_finds_the_group_whatever_the_case(app) {
        let group = create_group(&app, "Safety Team", &[]).await;
        create_group(&app, "Sales", &[]).await;

        let found = admin(&app, Method::GET, &format!("/Groups?{}", serde_urlencoded::to_string([("filter", r#"displayName eq "safety team""#)]).unwrap()), None).await;

        assert_eq!(found.ids(), [group]);
        let again = admin(&app, Method::POST, "/Groups", Some(json!({ "schemas": [GROUP], "displayName": "SAFETY TEAM" }))).await;
        assert_eq!(again.status, 409);
        assert_eq!(again.scim_type(), "uniqueness");
    }
}

db_test! {
    async fn a_member_that_is_no_user_of_the_tenant_is_named_and_nothing_is_written(app) {
        let ann = create(&app, okta_user("ann")).await;
        let stranger = send(&app, &app.token_for(Role::Admin, Some("other")), Method::POST, "/Users", Some(okta_user("zed"))).await;
        let stranger = stranger.body["id"].as_str().unwrap().to_owned();
        let group = create_group(&app, "Sales", &[]).await;
        let before = app.snapshot().await;

        let answer = admin(&app, Method::PATCH, &format!("/Groups/{group}"), Some(patch_op(json!([
            { "op": "add", "path": "members", "value": [{ "value": ann }, { "value": stranger }, { "value": "999999" }] },
        ])))).await;

        assert_eq!(answer.status, 400, "{:?}", answer.body);
        assert_eq!(answer.scim_type(), "invalidValue");
        assert!(answer.detail().contains(&format!("no user {stranger}")) && answer.detail().contains("no user 999999"), "{}", answer.detail());
        assert_eq!(app.snapshot().await, before);
        assert!(members(&app, &group).await.is_empty());
    }
}

db_test! {
    async fn groups_are_read_by_viewers_written_by_admins_and_kept_to_their_tenant(app) {
        let group = create_group(&app, "Sales", &[]).await;
        let viewer = app.token(Role::Viewer);
        let other = app.token_for(Role::Admin, Some("other"));

        let read = send(&app, &viewer, Method::GET, &format!("/Groups/{group}"), None).await;
        let written = send(&app, &viewer, Method::DELETE, &format!("/Groups/{group}"), None).await;
        let elsewhere = send(&app, &other, Method::GET, &format!("/Groups/{group}"), None).await;
        let listed = send(&app, &other, Method::GET, "/Groups", None).await;

        assert_eq!((read.status, written.status, elsewhere.status), (200, 403, 404));
        assert_eq!(listed.body["totalResults"], 0);
    }
}

db_test! {
    async fn put_replaces_a_groups_name_and_members(app) {
        let ann = create(&app, okta_user("ann")).await;
        let bob = create(&app, okta_user("bob")).await;
        let group = create_group(&app, "Sales", std::slice::from_ref(&ann)).await;

        let answer = admin(&app, Method::PUT, &format!("/Groups/{group}"), Some(json!({
            "schemas": [GROUP], "displayName": "Field Sales", "members": [{ "value": bob }],
        }))).await;

        assert_eq!(answer.status, 200, "{:?}", answer.body);
        assert_eq!(members(&app, &group).await, std::slice::from_ref(&bob));
        assert_eq!(graphql_user(&app, &ann).await["tags"], json!([]));
        assert_eq!(graphql_user(&app, &bob).await["tags"], json!(["field sales"]));
    }
}

db_test! {
    async fn a_groups_version_moves_with_its_members(app) {
        let ann = create(&app, okta_user("ann")).await;
        let group = create_group(&app, "Sales", &[]).await;
        let path = format!("/Groups/{group}");
        let read = admin(&app, Method::GET, &path, None).await.body["meta"]["version"].clone();
        let add = patch_op(json!([{ "op": "add", "path": "members", "value": [{ "value": ann }] }]));
        let mut request = app
            .client
            .patch(format!("{}/scim/v2{path}", app.address))
            .bearer_auth(app.token(Role::Admin))
            .header("If-Match", read.as_str().unwrap())
            .header("Content-Type", "application/scim+json");
        let added = request.try_clone().unwrap().body(add.to_string()).send().await.unwrap();
        assert_eq!(added.status().as_u16(), 200);

        request = request.body(patch_op(json!([{ "op": "remove", "path": "members" }])).to_string());
        let stale = request.send().await.unwrap();

        assert_eq!(stale.status().as_u16(), 412, "the version read is no longer the group's");
        assert_eq!(members(&app, &group).await, [ann]);
    }
}

/// A user carrying as many tags as a user may; answers its id.
async fn full_user(app: &TestApp, name: &str) -> String {
    let mut user = okta_user(name);
    let tags: Vec<String> = (0..roster::users::domain::Tags::MAX_COUNT)
        .map(|i| format!("t{i}"))
        .collect();
    user[crate::scim::ROSTER] = json!({ "tags": tags });
    create(app, user).await
}

db_test! {
    async fn a_group_created_with_a_member_that_cannot_take_its_tag_writes_nothing(app) {
        let ann = create(&app, okta_user("ann")).await;
        let full = full_user(&app, "bob").await;
        let before = app.snapshot().await;

        let answer = admin(&app, Method::POST, "/Groups", Some(json!({
            "schemas": [GROUP], "displayName": "Sales",
            "members": [{ "value": ann }, { "value": full }],
        }))).await;

        assert_eq!(answer.status, 400, "{:?}", answer.body);
        assert!(answer.body["detail"].as_str().unwrap().contains(&full), "{:?}", answer.body);
        assert_eq!(app.snapshot().await, before, "nothing was written");
    }
}

db_test! {
    async fn a_group_patch_with_a_member_that_cannot_take_its_tag_writes_nothing(app) {
        let ann = create(&app, okta_user("ann")).await;
        let full = full_user(&app, "bob").await;
        let group = create_group(&app, "Sales", &[]).await;
        let before = app.snapshot().await;

        let answer = admin(&app, Method::PATCH, &format!("/Groups/{group}"), Some(patch_op(json!([
            { "op": "replace", "path": "displayName", "value": "Marketing" },
            { "op": "add", "path": "members", "value": [{ "value": ann }, { "value": full }] },
        ])))).await;

        assert_eq!(answer.status, 400, "{:?}", answer.body);
        assert_eq!(app.snapshot().await, before, "nothing was written");
    }
}

db_test! {
    async fn concurrent_patches_adding_a_user_to_two_groups_both_land(app) {
        let ann = create(&app, okta_user("ann")).await;
        for round in 0..5 {
            let one = create_group(&app, &format!("one {round}"), &[]).await;
            let two = create_group(&app, &format!("two {round}"), &[]).await;
            let add = patch_op(json!([{ "op": "add", "path": "members", "value": [{ "value": ann }] }]));

            let (one, two) = (format!("/Groups/{one}"), format!("/Groups/{two}"));

            let (a, b) = futures_util::join!(
                admin(&app, Method::PATCH, &one, Some(add.clone())),
                admin(&app, Method::PATCH, &two, Some(add.clone())),
            );

            assert_eq!((a.status, b.status), (200, 200), "{:?} {:?}", a.body, b.body);
            let tags = graphql_user(&app, &ann).await["tags"].clone();
            for name in [format!("one {round}"), format!("two {round}")] {
                assert!(tags.as_array().unwrap().contains(&json!(name)), "{name} in {tags}");
            }
        }
    }
}

db_test! {
    async fn a_group_external_id_longer_than_255_characters_is_an_invalid_value_and_nothing_is_written(app) {
        let group = create_group(&app, "Sales", &[]).await;
        let long = "é".repeat(256);
        let before = app.snapshot().await;

        let created = admin(&app, Method::POST, "/Groups", Some(json!({
            "schemas": [GROUP], "displayName": "Ops", "externalId": long,
        }))).await;
        let patched = admin(&app, Method::PATCH, &format!("/Groups/{group}"), Some(patch_op(json!([
            { "op": "replace", "path": "externalId", "value": long },
        ])))).await;

        for answer in [created, patched] {
            assert_eq!(answer.status, 400, "{:?}", answer.body);
            assert_eq!(answer.scim_type(), "invalidValue");
            assert!(answer.detail().contains("externalId"), "{}", answer.detail());
        }
        assert_eq!(app.snapshot().await, before, "nothing was written");
    }
}
