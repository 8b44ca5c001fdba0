//! What a client that is not a GraphQL client can do to the server: stall, hold connections,
//! make up methods. None of it keeps a connection forever or grows the server's memory.

use std::time::Duration;

use roster::auth::Role;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{Backend, TestApp, spawn_app, spawn_app_with};

/// Waits for the server to close `stream`, reading whatever it answered first; fails the
/// test if it is still open after a minute.
async fn answer_before_close(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection")
        .expect("the connection reads");
    String::from_utf8_lossy(&answer).into_owned()
}

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(("127.0.0.1", app.port)).await.unwrap()
}

#[tokio::test]
async fn headers_that_never_end_close_the_connection() {
    let app = spawn_app_with(Backend::Sqlite, |config| {
        config.http.header_timeout = Duration::from_secs(1);
    })
    .await;
    let mut stream = connect(&app).await;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: roster\r\nX-Slow: ")
        .await
        .unwrap();
    let answer = answer_before_close(&mut stream).await;
    assert!(!answer.contains("200 OK"), "{answer}");
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed() {
    let app = spawn_app_with(Backend::Sqlite, |config| {
        config.http.header_timeout = Duration::from_secs(1);
    })
    .await;
    let mut stream = connect(&app).await;
    let answer = answer_before_close(&mut stream).await;
    assert!(!answer.contains("200 OK"), "{answer}");
}

#[tokio::test]
async fn a_body_that_stalls_is_408_and_writes_nothing() {
    let app = spawn_app_with(Backend::Sqlite, |config| {
        config.http.body_timeout = Duration::from_secs(1);
    })
    .await;
    let mut stream = connect(&app).await;
    let token = app.token(Role::Admin);
    let start = r#"{"query":"mutation { importUser(user: {externalId: \"x\""#;
    let head = format!(
        "POST /graphql HTTP/1.1\r\nHost: roster\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(start.as_bytes()).await.unwrap();
    let answer = answer_before_close(&mut stream).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("ROSTER_BODY_TIMEOUT"), "{answer}");
    assert_eq!(app.count_rows("users").await, 0);
}

#[tokio::test]
async fn connections_past_the_limit_wait_for_one_to_close() {
    let app = spawn_app_with(Backend::Sqlite, |config| config.http.max_connections = 1).await;
    let mut held = connect(&app).await;
    held.write_all(b"GET /healthz HTTP/1.1\r\nHost: roster\r\n\r\n")
        .await
        .unwrap();
    let mut answer = [0; 12];
    held.read_exact(&mut answer).await.unwrap();
    assert_eq!(
        &answer, b"HTTP/1.1 200",
        "the first connection is served and kept"
    );

    let (closed, was_closed) = tokio::sync::watch::channel(false);
    let address = app.address.clone();
    let second = tokio::spawn(async move {
        let response = reqwest::get(format!("{address}/healthz")).await.unwrap();
        (response.status(), *was_closed.borrow())
    });
    // Long enough for the second request to be served, were it let in.
    tokio::time::sleep(Duration::from_millis(500)).await;
    closed.send(true).unwrap();
    drop(held);
    let (status, after_close) = second.await.unwrap();
    assert_eq!(status, 200);
    assert!(
        after_close,
        "the second connection was served while the first was open"
    );
}

#[tokio::test]
async fn made_up_methods_are_counted_as_other() {
    let app = spawn_app(Backend::Sqlite).await;
    for i in 0..20 {
        let method = reqwest::Method::from_bytes(format!("MADEUP{i}").as_bytes()).unwrap();
        let response = app
            .client
            .request(method, app.graphql_url())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405);
    }
    let text = app.get("/metrics").await.text().await.unwrap();
    assert!(!text.contains("MADEUP"), "{text}");
    assert!(
        text.lines()
            .any(|line| line.starts_with("roster_http_requests_total{")
                && line.contains("method=\"other\"")
                && line.contains("route=\"/graphql\"")),
        "{text}"
    );
}

/// Sends `request` on a new connection and reads the response's head.
async fn response_head(app: &TestApp, request: &str) -> String {
    let mut stream = connect(app).await;
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0];
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

#[tokio::test]
async fn http1_header_names_are_written_in_title_case() {
    let app = spawn_app(Backend::Sqlite).await;
    let head = response_head(&app, "GET /healthz HTTP/1.1\r\nHost: roster\r\n\r\n").await;
    assert!(head.contains("\r\nContent-Type: text/plain"), "{head}");
}

#[tokio::test]
async fn the_websocket_handshake_answers_in_the_case_the_client_wrote() {
    // Python's gql 4.0 to 4.3 look `Sec-WebSocket-Protocol` up by its exact name.
    let app = spawn_app(Backend::Sqlite).await;
    let request = "GET /graphql/ws HTTP/1.1\r\nHost: roster\r\nConnection: Upgrade\r\n\
                   Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                   Sec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n";
    let head = response_head(&app, request).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.contains("\r\nSec-WebSocket-Protocol: graphql-transport-ws\r\n"),
        "{head}"
    );
}
