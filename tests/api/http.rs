//! GraphQL over HTTP: methods, media types, status codes, body limits and query limits.

use roster::auth::Role;
use serde_json::json;

use crate::helpers::{Backend, GraphQLResponse, TestApp, spawn_app, spawn_app_with};

async fn post(
    app: &TestApp,
    content_type: Option<&str>,
    accept: Option<&str>,
    body: &str,
) -> GraphQLResponse {
    let mut request = app
        .client
        .post(app.graphql_url())
        .bearer_auth(app.token(Role::Admin))
        .body(body.to_owned());
    if let Some(value) = content_type {
        request = request.header("content-type", value);
    }
    if let Some(value) = accept {
        request = request.header("accept", value);
    }
    GraphQLResponse::read(request.send().await.unwrap()).await
}

async fn get(app: &TestApp, query: &str, accept: &str) -> GraphQLResponse {
    let response = app
        .client
        .get(app.graphql_url())
        .query(&[("query", query)])
        .bearer_auth(app.token(Role::Viewer))
        .header("accept", accept)
        .send()
        .await
        .unwrap();
    GraphQLResponse::read(response).await
}

const JSON: &str = "application/json";
const GQL: &str = "application/graphql-response+json";
const TYPENAME: &str = r#"{"query":"{ __typename }"}"#;

#[tokio::test]
async fn answers_in_the_media_type_asked_for() {
    let app = spawn_app(Backend::Sqlite).await;
    let cases = [
        (None, JSON),
        (Some("*/*"), JSON),
        (Some(JSON), JSON),
        (Some(GQL), GQL),
        (
            Some("application/graphql-response+json, application/json;q=0.9"),
            GQL,
        ),
    ];
    for (accept, expected) in cases {
        let response = post(&app, Some(JSON), accept, TYPENAME).await;
        assert_eq!(response.status, 200, "{accept:?}");
        let content_type = response.header("content-type").unwrap();
        assert!(
            content_type.starts_with(expected),
            "{accept:?} got {content_type}"
        );
        assert_eq!(response.body, json!({ "data": { "__typename": "Query" } }));
    }
    let response = post(&app, Some(JSON), Some("text/plain"), TYPENAME).await;
    assert_eq!(response.status, 406);
}

#[tokio::test]
async fn post_bodies_must_be_json_or_multipart() {
    let app = spawn_app(Backend::Sqlite).await;
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/json; charset=latin1"),
    ] {
        let response = post(&app, content_type, None, TYPENAME).await;
        assert_eq!(response.status, 415, "{content_type:?}");
        assert_eq!(response.error_code(), Some("BAD_USER_INPUT"));
    }
    let response = post(
        &app,
        Some("application/json; charset=utf-8"),
        None,
        TYPENAME,
    )
    .await;
    assert_eq!(response.status, 200);
}

#[tokio::test]
async fn malformed_requests_are_400_whatever_the_accept() {
    let app = spawn_app(Backend::Sqlite).await;
    let bodies = [
        ("", "empty"),
        ("{ \"not a JSON", "not valid JSON"),
        (r#"{"qeury":"{ __typename }"}"#, "query"),
        (r#"{"query":1}"#, "query"),
        ("42", "must be a JSON object"),
        (r#"{"query":"{ __typename }","variables":"x"}"#, "variables"),
        (
            r#"{"query":"{ __typename }","variables":[{}]}"#,
            "variables",
        ),
        (
            r#"{"query":"{ __typename }","query":"{ __typename }"}"#,
            "duplicate field `query`",
        ),
        (
            r#"{"query":"{ __typename }","operationName":false}"#,
            "operationName",
        ),
        (
            r#"{"query":"{ __typename }","extensions":["a"]}"#,
            "extensions",
        ),
        (
            r#"[{"query":"{ __typename }"}]"#,
            "batched requests are not supported",
        ),
    ];
    for accept in [JSON, GQL] {
        for (body, reason) in bodies {
            let response = post(&app, Some(JSON), Some(accept), body).await;
            assert_eq!(response.status, 400, "{body} ({accept})");
            assert!(response.body.get("data").is_none());
            assert!(
                response.error_message().contains(reason),
                "{body}: {}",
                response.error_message()
            );
        }
    }
}

#[tokio::test]
async fn request_errors_are_400_without_data_only_under_the_new_media_type() {
    let app = spawn_app(Backend::Sqlite).await;
    let documents = [
        r#"{"query":"{"}"#,
        r#"{"query":"{ noSuchField }"}"#,
        r#"{"query":"query Q($id: ID!) { __typename }","variables":{"id":null}}"#,
    ];
    for body in documents {
        let response = post(&app, Some(JSON), Some(GQL), body).await;
        assert_eq!(response.status, 400, "{body}");
        assert!(response.body.get("data").is_none(), "{body}");
        assert_eq!(response.error_code(), Some("BAD_USER_INPUT"), "{body}");

        let response = post(&app, Some(JSON), Some(JSON), body).await;
        assert_eq!(response.status, 200, "{body}");
        assert!(response.body.get("data").is_none(), "{body}");
    }
}

#[tokio::test]
async fn get_runs_queries_but_never_mutations() {
    let app = spawn_app(Backend::Sqlite).await;
    let response = get(&app, "{ viewer { role } }", JSON).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body["data"]["viewer"]["role"], "viewer");

    let url = format!(
        "{}?query=query%20T(%24n%3AString!)%7B__type(name%3A%24n)%7Bname%7D%7D&variables=%7B%22n%22%3A%22Query%22%7D",
        app.graphql_url()
    );
    let response = app
        .client
        .get(url)
        .bearer_auth(app.token(Role::Viewer))
        .send()
        .await
        .unwrap();
    let response = GraphQLResponse::read(response).await;
    assert_eq!(response.body["data"]["__type"]["name"], "Query");

    for accept in [JSON, GQL] {
        let response = get(&app, "mutation { __typename }", accept).await;
        assert_eq!(response.status, 405);
        assert_eq!(response.header("allow"), Some("POST"));
        assert!(response.error_message().contains("POST"));
    }
    // A document with a mutation may still run its query operation over GET.
    let response = app
        .client
        .get(app.graphql_url())
        .query(&[
            ("query", "query A { __typename } mutation B { __typename }"),
            ("operationName", "A"),
        ])
        .bearer_auth(app.token(Role::Viewer))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    let app = spawn_app_with(Backend::Sqlite, |config| config.http.max_body = 1024).await;
    let big = json!({ "query": format!("{{ __typename }} # {}", "x".repeat(2048)) }).to_string();
    let response = post(&app, Some(JSON), None, &big).await;
    assert_eq!(response.status, 413);
    assert!(response.error_message().contains("1024"));

    // Streamed without a Content-Length, the limit still holds.
    let stream = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(big.into_bytes())]);
    let response = app
        .client
        .post(app.graphql_url())
        .bearer_auth(app.token(Role::Admin))
        .header("content-type", JSON)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
}

/// An `importUsersCsv` request whose file is `size` bytes, sent with a Content-Length or,
/// when `chunked`, as a stream of unknown length.
async fn upload_of(app: &TestApp, size: usize, chunked: bool) -> GraphQLResponse {
    let mut file = b"externalId,email,firstName,lastName\n".to_vec();
    for i in 0.. {
        if file.len() >= size {
            break;
        }
        file.extend(format!("e{i},e{i}@example.com,A,B\n").bytes());
    }
    let part = if chunked {
        let chunks = file
            .chunks(1024)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()));
        let stream = futures_util::stream::iter(chunks.collect::<Vec<_>>());
        reqwest::multipart::Part::stream(reqwest::Body::wrap_stream(stream))
    } else {
        reqwest::multipart::Part::bytes(file)
    };
    let operations = json!({
        "query": "mutation($file: Upload!) { importUsersCsv(file: $file) { id } }",
        "variables": { "file": null }
    });
    let form = reqwest::multipart::Form::new()
        .text("operations", operations.to_string())
        .text("map", r#"{"0":["variables.file"]}"#)
        .part("0", part.file_name("users.csv"));
    let response = app
        .client
        .post(app.graphql_url())
        .bearer_auth(app.token(Role::Admin))
        .multipart(form)
        .send()
        .await
        .unwrap();
    GraphQLResponse::read(response).await
}

async fn max_upload_app() -> TestApp {
    spawn_app_with(Backend::Sqlite, |config| config.http.max_upload = 64 * 1024).await
}

#[tokio::test]
async fn an_upload_over_its_limit_is_413_naming_its_setting() {
    let app = max_upload_app().await;
    let response = upload_of(&app, 100 * 1024, false).await;
    assert_eq!(response.status, 413);
    assert_eq!(
        response.error_message(),
        "the request body is larger than the limit of 65536 bytes (ROSTER_MAX_UPLOAD)"
    );
    assert_eq!(app.count_rows("import_jobs").await, 0);
}

#[tokio::test]
async fn a_chunked_upload_over_its_limit_is_413() {
    let app = max_upload_app().await;
    let response = upload_of(&app, 100 * 1024, true).await;
    assert_eq!(response.status, 413, "{}", response.body);
    assert!(
        response.error_message().ends_with("(ROSTER_MAX_UPLOAD)"),
        "{}",
        response.error_message()
    );
    assert_eq!(app.count_rows("import_jobs").await, 0);
}

#[tokio::test]
async fn a_chunked_upload_within_its_limit_is_read() {
    let app = max_upload_app().await;
    let response = upload_of(&app, 1024, true).await;
    assert!(response.data()["importUsersCsv"]["id"].is_string());
}

#[tokio::test]
async fn query_limits_answer_clear_errors() {
    let app = spawn_app_with(Backend::Sqlite, |config| {
        config.limits.max_depth = 3;
        config.limits.max_aliases = 2;
        config.limits.max_complexity = 5;
    })
    .await;
    let admin = app.token(Role::Admin);

    let deep = "{ __schema { types { fields { type { name } } } } }";
    let response = app.graphql(&admin, deep, json!({})).await;
    assert_eq!(response.error_code(), Some("BAD_USER_INPUT"));
    assert!(
        response
            .error_message()
            .to_lowercase()
            .contains("nested too deep"),
        "{}",
        response.error_message()
    );

    let aliased = "{ a: __typename b: __typename c: __typename }";
    let response = app.graphql(&admin, aliased, json!({})).await;
    assert_eq!(response.error_code(), Some("BAD_USER_INPUT"));
    assert!(
        response.error_message().contains("3 aliased fields"),
        "{}",
        response.error_message()
    );

    let complex = "{ viewer { subject role tenant } again: viewer { subject role } }";
    let response = app.graphql(&admin, complex, json!({})).await;
    assert_eq!(response.error_code(), Some("BAD_USER_INPUT"));
    assert!(
        response.error_message().to_lowercase().contains("complex"),
        "{}",
        response.error_message()
    );

    let within = "{ viewer { subject } }";
    let response = app.graphql(&admin, within, json!({})).await;
    assert!(response.body.get("errors").is_none(), "{:?}", response.body);
}

#[tokio::test]
async fn full_introspection_passes_the_default_limits() {
    let app = spawn_app(Backend::Sqlite).await;
    let query = include_str!("../fixtures/introspection.graphql");
    let response = app
        .graphql(&app.token(Role::Viewer), query, json!({}))
        .await;
    assert_eq!(response.status, 200);
    assert!(
        response.body.get("errors").is_none(),
        "{:?}",
        response.body["errors"]
    );
    assert_eq!(
        response.body["data"]["__schema"]["queryType"]["name"],
        "Query"
    );
}

#[tokio::test]
async fn cors_admits_only_configured_origins() {
    let app = spawn_app_with(Backend::Sqlite, |config| {
        config.http.cors_origins = vec!["https://dashboard.example".into()];
    })
    .await;
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.graphql_url())
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            )
            .send()
    };
    let allowed = preflight("https://dashboard.example").await.unwrap();
    assert_eq!(
        allowed
            .headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("https://dashboard.example")
    );
    let other = preflight("https://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
}
