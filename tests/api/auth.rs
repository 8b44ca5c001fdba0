//! Authentication: every way a token can be wrong answers 401 with the right challenge and
//! body; good tokens of each supported algorithm pass.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use roster::auth::Role;
use serde_json::{Value, json};

use crate::helpers::{
    Backend, GraphQLResponse, TEST_SECRET, TestApp, db_test, spawn_app, spawn_app_with,
};

const VIEWER_QUERY: &str = "{ viewer { subject role tenant } }";

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn sign(algorithm: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(algorithm), claims, key).unwrap()
}

fn hs256(claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(TEST_SECRET.as_bytes()),
        claims,
    )
}

async fn with_header(app: &TestApp, authorization: Option<&str>) -> GraphQLResponse {
    let mut request = app
        .client
        .post(app.graphql_url())
        .json(&json!({ "query": VIEWER_QUERY }));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    GraphQLResponse::read(request.send().await.unwrap()).await
}

fn assert_unauthenticated(response: &GraphQLResponse, challenge_starts: &str, case: &str) {
    assert_eq!(response.status, 401, "{case}: {:?}", response.body);
    assert_eq!(response.error_code(), Some("UNAUTHENTICATED"), "{case}");
    assert!(response.body.get("data").is_none(), "{case}: no data entry");
    let challenge = response.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with(challenge_starts),
        "{case}: WWW-Authenticate was {challenge:?}"
    );
}

db_test! {
    async fn admin_token_answers_viewer(app) {
        let response = app.graphql(&app.token(Role::Admin), VIEWER_QUERY, json!({})).await;
        assert_eq!(response.status, 200);
        assert_eq!(
            response.body,
            json!({ "data": { "viewer": { "subject": "test-admin", "role": "admin", "tenant": "default" } } })
        );
    }
}

#[tokio::test]
async fn a_token_without_a_tenant_belongs_to_default_and_one_with_a_tenant_to_it() {
    let app = spawn_app(Backend::Sqlite).await;
    let token = app.token_for(Role::Viewer, Some("acme"));
    let response = app.graphql(&token, VIEWER_QUERY, json!({})).await;
    assert_eq!(response.body["data"]["viewer"]["tenant"], "acme");
    assert_eq!(response.body["data"]["viewer"]["role"], "viewer");
}

#[tokio::test]
async fn missing_and_malformed_headers_are_refused() {
    let app = spawn_app(Backend::Sqlite).await;

    let response = with_header(&app, None).await;
    assert_unauthenticated(&response, "Bearer", "no header");
    assert_eq!(
        response.header("www-authenticate"),
        Some("Bearer"),
        "no error code without a token"
    );

    for value in [
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer   ",
        "token-without-scheme",
    ] {
        let response = with_header(&app, Some(value)).await;
        assert_unauthenticated(&response, "Bearer error=\"invalid_request\"", value);
    }
}

#[tokio::test]
async fn bad_tokens_are_refused_with_invalid_token() {
    let app = spawn_app(Backend::Sqlite).await;
    let exp = now() + 600;
    let wrong_secret = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"another-secret"),
        &json!({ "sub": "a", "role": "admin", "exp": exp }),
    );
    // `alg: none`: a header and claims with an empty signature.
    let b64 = |v: &Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let alg_none = format!(
        "{}.{}.",
        b64(&json!({ "alg": "none", "typ": "JWT" })),
        b64(&json!({ "sub": "a", "role": "admin", "exp": exp }))
    );
    let cases = [
        ("garbage", "not-a-jwt".to_owned(), "well-formed"),
        ("wrong secret", wrong_secret, "signature"),
        (
            "expired",
            hs256(&json!({ "sub": "a", "role": "admin", "exp": now() - 3600 })),
            "expired",
        ),
        (
            "not yet valid",
            hs256(&json!({ "sub": "a", "role": "admin", "exp": exp, "nbf": now() + 3600 })),
            "not valid yet",
        ),
        ("alg none", alg_none, ""),
        (
            "missing role",
            hs256(&json!({ "sub": "a", "exp": exp })),
            "role",
        ),
        (
            "unknown role",
            hs256(&json!({ "sub": "a", "role": "superuser", "exp": exp })),
            "superuser",
        ),
        (
            "missing sub",
            hs256(&json!({ "role": "admin", "exp": exp })),
            "sub",
        ),
        (
            "missing exp",
            hs256(&json!({ "sub": "a", "role": "admin" })),
            "exp",
        ),
        (
            "bad tenant",
            hs256(&json!({ "sub": "a", "role": "admin", "exp": exp, "tenant": "" })),
            "tenant",
        ),
    ];
    for (case, token, reason) in cases {
        let response = with_header(&app, Some(&format!("Bearer {token}"))).await;
        assert_unauthenticated(&response, "Bearer error=\"invalid_token\"", case);
        assert!(
            response.error_message().contains(reason),
            "{case}: message {:?} should mention {reason:?}",
            response.error_message()
        );
    }
}

/// Tokens, validly signed, whose `sub` or `tenant` holds a control character.
fn tokens_with_control_characters() -> Vec<(&'static str, String)> {
    let exp = now() + 600;
    vec![
        (
            "sub",
            hs256(&json!({ "sub": "a\u{0000}b", "role": "admin", "exp": exp })),
        ),
        (
            "sub",
            hs256(&json!({ "sub": "a\nb", "role": "admin", "exp": exp })),
        ),
        (
            "tenant",
            hs256(&json!({ "sub": "a", "role": "admin", "exp": exp, "tenant": "t\u{0000}" })),
        ),
    ]
}

db_test! {
    async fn a_claim_with_a_control_character_is_an_invalid_token_and_writes_nothing(app) {
        let query = "mutation($u: [UserImportInput!]!) { importUsers(users: $u) { id } }";
        let users = json!([{ "externalId": "a", "email": "a@example.com", "firstName": "A", "lastName": "B" }]);
        for (claim, token) in tokens_with_control_characters() {
            let response = app.graphql(&token, query, json!({ "u": users })).await;
            assert_unauthenticated(&response, "Bearer error=\"invalid_token\"", claim);
            assert!(
                response.error_message().contains(claim),
                "{claim}: {}",
                response.error_message()
            );
        }
        assert_eq!(app.count_rows("import_jobs").await, 0, "no job was stored");
        assert_eq!(app.count_rows("users").await, 0);
    }
}

db_test! {
    async fn a_download_with_a_claim_holding_a_control_character_is_refused(app) {
        for (claim, token) in tokens_with_control_characters() {
            for path in ["/exports/users.csv", "/jobs/1/failed-rows.csv"] {
                let response = app.get_with(path, &token).await;
                assert_eq!(response.status(), 401, "{claim} {path}");
                let challenge = response.headers()["www-authenticate"].to_str().unwrap();
                assert!(
                    challenge.starts_with("Bearer error=\"invalid_token\""),
                    "{claim} {path}: {challenge}"
                );
            }
        }
    }
}

#[tokio::test]
async fn issuer_and_audience_are_checked_when_configured() {
    let app = spawn_app_with(Backend::Sqlite, |config| {
        config.jwt.jwt_issuer = Some("https://idp.example".into());
        config.jwt.jwt_audience = Some("roster".into());
    })
    .await;
    let exp = now() + 600;
    let good = json!({ "sub": "a", "role": "viewer", "exp": exp, "iss": "https://idp.example", "aud": "roster" });
    let response = with_header(&app, Some(&format!("Bearer {}", hs256(&good)))).await;
    assert_eq!(response.status, 200, "{:?}", response.body);

    // The app's own minted tokens carry both claims.
    let response = app
        .graphql(&app.token(Role::Admin), VIEWER_QUERY, json!({}))
        .await;
    assert_eq!(response.status, 200, "{:?}", response.body);

    let cases = [
        (
            "wrong iss",
            json!({ "sub": "a", "role": "viewer", "exp": exp, "iss": "https://evil", "aud": "roster" }),
        ),
        (
            "wrong aud",
            json!({ "sub": "a", "role": "viewer", "exp": exp, "iss": "https://idp.example", "aud": "other" }),
        ),
        (
            "no iss",
            json!({ "sub": "a", "role": "viewer", "exp": exp, "aud": "roster" }),
        ),
        (
            "no aud",
            json!({ "sub": "a", "role": "viewer", "exp": exp, "iss": "https://idp.example" }),
        ),
    ];
    for (case, claims) in cases {
        let response = with_header(&app, Some(&format!("Bearer {}", hs256(&claims)))).await;
        assert_unauthenticated(&response, "Bearer error=\"invalid_token\"", case);
    }
}

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

async fn public_key_app(public_key: &str) -> TestApp {
    let path = fixture(public_key);
    spawn_app_with(Backend::Sqlite, move |config| {
        config.jwt.jwt_secret = None;
        config.jwt.jwt_public_key_file = Some(path.into());
    })
    .await
}

#[tokio::test]
async fn rs256_public_key_accepts_rs256_and_refuses_other_algorithms() {
    let app = public_key_app("rs256-public.pem").await;
    let private = std::fs::read(fixture("rs256-private.pem")).unwrap();
    let claims = json!({ "sub": "idp-user", "role": "admin", "exp": now() + 600 });

    let token = sign(
        Algorithm::RS256,
        &EncodingKey::from_rsa_pem(&private).unwrap(),
        &claims,
    );
    let response = with_header(&app, Some(&format!("Bearer {token}"))).await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    assert_eq!(response.body["data"]["viewer"]["subject"], "idp-user");

    // An HS256 token must not pass, even one signed with the public key's bytes as secret.
    let public = std::fs::read(fixture("rs256-public.pem")).unwrap();
    for key in [TEST_SECRET.as_bytes(), public.as_slice()] {
        let token = sign(Algorithm::HS256, &EncodingKey::from_secret(key), &claims);
        let response = with_header(&app, Some(&format!("Bearer {token}"))).await;
        assert_unauthenticated(
            &response,
            "Bearer error=\"invalid_token\"",
            "HS256 on RS256",
        );
        assert!(response.error_message().contains("algorithm"));
    }
}

#[tokio::test]
async fn es256_public_key_accepts_es256() {
    let app = public_key_app("es256-public.pem").await;
    let private = std::fs::read(fixture("es256-private.pem")).unwrap();
    let claims = json!({ "sub": "idp-user", "role": "viewer", "exp": now() + 600, "tenant": "t1" });
    let token = sign(
        Algorithm::ES256,
        &EncodingKey::from_ec_pem(&private).unwrap(),
        &claims,
    );
    let response = with_header(&app, Some(&format!("Bearer {token}"))).await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    assert_eq!(response.body["data"]["viewer"]["tenant"], "t1");

    let rsa = std::fs::read(fixture("rs256-private.pem")).unwrap();
    let token = sign(
        Algorithm::RS256,
        &EncodingKey::from_rsa_pem(&rsa).unwrap(),
        &claims,
    );
    let response = with_header(&app, Some(&format!("Bearer {token}"))).await;
    assert_unauthenticated(
        &response,
        "Bearer error=\"invalid_token\"",
        "RS256 on ES256",
    );
}

/// The GraphiQL page, as a browser asks for it, without a token.
async fn graphiql_page(app: &TestApp) -> String {
    let page = app
        .client
        .get(app.graphql_url())
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    page.text().await.unwrap()
}

#[tokio::test]
async fn the_graphiql_page_is_public_but_get_queries_are_not() {
    let app = spawn_app(Backend::Sqlite).await;
    assert!(
        graphiql_page(&app)
            .await
            .to_lowercase()
            .contains("graphiql")
    );

    let response = app
        .client
        .get(format!("{}?query={{viewer{{subject}}}}", app.graphql_url()))
        .send()
        .await
        .unwrap();
    let response = GraphQLResponse::read(response).await;
    assert_unauthenticated(&response, "Bearer", "GET without token");
}

/// The page and every file it loads come from the server itself: nothing from another host,
/// and each vendored bundle byte for byte as `vendor/graphiql/SHA256SUMS` records it.
#[tokio::test]
async fn graphiql_is_served_whole_by_the_server() {
    use sha2::{Digest, Sha256};
    let app = spawn_app(Backend::Sqlite).await;
    let page = graphiql_page(&app).await;
    let sources: Vec<&str> = page
        .split(['"', '\''])
        .filter(|part| part.starts_with('/') || part.contains("://"))
        .collect();
    assert!(
        sources.iter().all(|s| s.starts_with("/graphiql/assets/")),
        "the page loads only its own assets: {sources:?}"
    );
    let sums = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("vendor/graphiql/SHA256SUMS"),
    )
    .unwrap();
    let expected: std::collections::HashMap<&str, &str> = sums
        .lines()
        .filter_map(|line| line.split_once("  "))
        .map(|(sum, name)| (name, sum))
        .collect();
    assert!(sources.len() >= 6, "{sources:?}");
    for source in sources {
        let response = app
            .client
            .get(format!("{}{source}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{source}");
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            content_type.starts_with("text/javascript") || content_type.starts_with("text/css"),
            "{source}: {content_type}"
        );
        let body = response.bytes().await.unwrap();
        let name = source.rsplit('/').next().unwrap();
        if let Some(sum) = expected.get(name) {
            assert_eq!(&format!("{:x}", Sha256::digest(&body)), sum, "{name}");
        }
    }
    let missing = app
        .client
        .get(format!("{}/graphiql/assets/nothing.js", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}
