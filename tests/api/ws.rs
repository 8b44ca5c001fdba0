//! The WebSocket route: the token in `connection_init`, and each mistake of a
//! `graphql-transport-ws` client closing the socket with the code the protocol gives it.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use roster::auth::Role;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::helpers::{Backend, TEST_SECRET, TestApp, db_test, each_backend, spawn_app_with};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

const TRANSPORT_WS: &str = "graphql-transport-ws";

/// A raw WebSocket to `/graphql/ws` that offers `protocol` alone.
async fn connect(app: &TestApp, protocol: &str) -> Socket {
    let mut request = format!("ws://127.0.0.1:{}/graphql/ws", app.port)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", protocol.parse().unwrap());
    let (socket, response) = tokio_tungstenite::connect_async(request)
        .await
        .expect("upgrade");
    assert_eq!(
        response.headers().get("sec-websocket-protocol").unwrap(),
        protocol
    );
    socket
}

async fn send(socket: &mut Socket, message: Value) {
    socket
        .send(Message::text(message.to_string()))
        .await
        .unwrap();
}

/// The server's next message; fails the test when none comes within 10 s.
async fn receive(socket: &mut Socket) -> Message {
    tokio::time::timeout(Duration::from_secs(10), socket.next())
        .await
        .expect("the server answers")
        .expect("a message")
        .expect("a readable message")
}

/// The server's next message, which must be JSON text.
async fn receive_json(socket: &mut Socket) -> Value {
    match receive(socket).await {
        Message::Text(text) => serde_json::from_str(&text).unwrap(),
        other => panic!("expected a message, got {other:?}"),
    }
}

/// The code and reason the server closes with next, which must be a close frame.
async fn closed(socket: &mut Socket) -> (u16, String) {
    match receive(socket).await {
        Message::Close(Some(frame)) => (frame.code.into(), frame.reason.to_string()),
        other => panic!("expected a close frame, got {other:?}"),
    }
}

fn init(token: &str) -> Value {
    json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } })
}

fn subscribe(id: &str, query: &str, variables: Value) -> Value {
    json!({ "id": id, "type": "subscribe", "payload": { "query": query, "variables": variables } })
}

/// Subscribes `id` to a job's progress.
fn follow(id: &str, job: &str) -> Value {
    subscribe(
        id,
        "subscription($id: ID!) { importJobProgress(id: $id) { status } }",
        json!({ "id": job }),
    )
}

/// A `graphql-transport-ws` socket whose `connection_init` was acknowledged.
async fn acknowledged(app: &TestApp) -> Socket {
    let mut socket = connect(app, TRANSPORT_WS).await;
    send(&mut socket, init(&app.token(Role::Viewer))).await;
    let ack = receive_json(&mut socket).await;
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    socket
}

/// A server that runs no jobs, and a job of it that stays queued: its progress subscription
/// stays open.
async fn queued_job(backend: Backend) -> (TestApp, String) {
    let app = spawn_app_with(backend, |config| config.jobs.workers = 0).await;
    let user = json!({
        "externalId": "ws-1", "email": "ws-1@example.com", "firstName": "Socket", "lastName": "User",
    });
    let job = app.submit_job(json!([user]), json!({})).await;
    (app, job)
}

db_test! {
    async fn a_valid_token_is_acknowledged(app) {
        acknowledged(&app).await;
    }
}

db_test! {
    async fn a_missing_or_bad_token_closes_with_4403(app) {
        for payload in [json!({}), json!({ "Authorization": "Bearer not-a-token" })] {
            let mut socket = connect(&app, TRANSPORT_WS).await;
            send(&mut socket, json!({ "type": "connection_init", "payload": payload })).await;
            let message = receive(&mut socket).await;
            let Message::Close(Some(frame)) = message else {
                panic!("{payload}: expected a close frame, got {message:?}")
            };
            assert_eq!(frame.code, CloseCode::Library(4403), "{payload}");
        }
    }
}

db_test! {
    async fn a_subscribe_before_connection_init_closes_with_4401(app) {
        let mut socket = connect(&app, TRANSPORT_WS).await;
        send(&mut socket, subscribe("1", "{ __typename }", json!({}))).await;
        assert_eq!(closed(&mut socket).await, (4401, "Unauthorized".to_owned()));
    }
}

db_test! {
    async fn a_subscribe_right_behind_connection_init_is_answered(app) {
        let mut socket = connect(&app, TRANSPORT_WS).await;
        send(&mut socket, init(&app.token(Role::Viewer))).await;
        send(&mut socket, subscribe("1", "{ __typename }", json!({}))).await;
        assert_eq!(receive_json(&mut socket).await["type"], "connection_ack");
        let next = receive_json(&mut socket).await;
        assert_eq!(next["payload"]["data"]["__typename"], "Query", "{next}");
    }
}

db_test! {
    async fn a_message_of_no_known_type_closes_with_4400(app) {
        let query = json!({ "query": "{ __typename }" });
        let messages = [
            Message::text("not json"),
            Message::text(json!({ "type": "subscribe", "id": "1" }).to_string()),
            Message::text(json!({ "id": "1", "payload": query }).to_string()),
            Message::text(json!({ "type": "bogus" }).to_string()),
            // The older graphql-ws subprotocol's names are not graphql-transport-ws's.
            Message::text(json!({ "type": "start", "id": "1", "payload": query }).to_string()),
        ];
        for message in messages {
            let mut socket = connect(&app, TRANSPORT_WS).await;
            socket.send(message.clone()).await.unwrap();
            let (code, reason) = closed(&mut socket).await;
            assert_eq!(code, 4400, "{message}: {reason}");
            assert!(!reason.is_empty(), "{message}: a reason is given");
        }
    }
}

db_test! {
    async fn a_second_connection_init_closes_with_4429(app) {
        let mut socket = acknowledged(&app).await;
        send(&mut socket, init(&app.token(Role::Viewer))).await;
        assert_eq!(
            closed(&mut socket).await,
            (4429, "Too many initialisation requests".to_owned())
        );
    }
}

/// A server whose sockets have a second to send `connection_init`: long enough for a client
/// that sends it at once, on a loaded machine too.
async fn quick_to_time_out(backend: Backend) -> TestApp {
    spawn_app_with(backend, |config| {
        config.http.ws_init_timeout = Duration::from_secs(1);
    })
    .await
}

async fn no_connection_init_in_time(backend: Backend) {
    let app = quick_to_time_out(backend).await;
    let mut socket = connect(&app, TRANSPORT_WS).await;
    assert_eq!(
        closed(&mut socket).await,
        (4408, "Connection initialisation timeout".to_owned())
    );
}
each_backend!(no_connection_init_within_the_timeout_closes_with_4408 => no_connection_init_in_time);

#[tokio::test]
async fn an_older_graphql_ws_socket_without_connection_init_closes_with_4408() {
    let app = quick_to_time_out(Backend::Sqlite).await;
    let mut socket = connect(&app, "graphql-ws").await;
    assert_eq!(
        closed(&mut socket).await,
        (4408, "Connection initialisation timeout".to_owned())
    );
}

async fn initialised_in_time(backend: Backend) {
    let app = quick_to_time_out(backend).await;
    let mut socket = acknowledged(&app).await;
    // Past the init timeout: the connection was initialised in time and stays open.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    send(&mut socket, json!({ "type": "ping" })).await;
    assert_eq!(receive_json(&mut socket).await["type"], "pong");
}
each_backend!(the_init_timeout_spares_an_initialised_connection => initialised_in_time);

db_test! {
    async fn a_ping_before_connection_init_is_answered(app) {
        let mut socket = connect(&app, TRANSPORT_WS).await;
        send(&mut socket, json!({ "type": "ping" })).await;
        assert_eq!(receive_json(&mut socket).await["type"], "pong");
    }
}

async fn id_in_use(backend: Backend) {
    let (app, job) = queued_job(backend).await;
    let mut socket = acknowledged(&app).await;
    send(&mut socket, follow("1", &job)).await;
    let next = receive_json(&mut socket).await;
    assert_eq!(
        (&next["type"], &next["id"]),
        (&json!("next"), &json!("1")),
        "{next}"
    );
    send(&mut socket, follow("1", &job)).await;
    assert_eq!(
        closed(&mut socket).await,
        (4409, "Subscriber for 1 already exists".to_owned())
    );
}
each_backend!(a_subscribe_with_an_id_in_use_closes_with_4409 => id_in_use);

async fn id_completed_by_the_client(backend: Backend) {
    let (app, job) = queued_job(backend).await;
    let mut socket = acknowledged(&app).await;
    send(&mut socket, follow("1", &job)).await;
    assert_eq!(receive_json(&mut socket).await["type"], "next");
    send(&mut socket, json!({ "type": "complete", "id": "1" })).await;
    send(&mut socket, follow("1", &job)).await;
    let next = receive_json(&mut socket).await;
    assert_eq!(
        (&next["type"], &next["id"]),
        (&json!("next"), &json!("1")),
        "{next}"
    );
}
each_backend!(an_id_the_client_completed_can_be_used_again => id_completed_by_the_client);

async fn completed_by_the_client(backend: Backend) {
    let (app, job) = queued_job(backend).await;
    let mut socket = acknowledged(&app).await;
    send(&mut socket, follow("1", &job)).await;
    assert_eq!(receive_json(&mut socket).await["type"], "next");
    send(&mut socket, json!({ "type": "complete", "id": "1" })).await;
    send(&mut socket, json!({ "type": "ping" })).await;
    // The server reads the client's messages in order: a `complete` of its own would come
    // before the pong.
    let message = receive_json(&mut socket).await;
    assert_eq!(message["type"], "pong", "{message}");
}
each_backend!(a_complete_from_the_client_is_not_answered => completed_by_the_client);

db_test! {
    async fn an_id_the_server_completed_can_be_used_again(app) {
        let mut socket = acknowledged(&app).await;
        for _ in 0..2 {
            send(&mut socket, subscribe("1", "{ __typename }", json!({}))).await;
            let next = receive_json(&mut socket).await;
            assert_eq!(next["payload"]["data"]["__typename"], "Query", "{next}");
            let complete = receive_json(&mut socket).await;
            assert_eq!((&complete["type"], &complete["id"]), (&json!("complete"), &json!("1")));
        }
    }
}

db_test! {
    async fn the_older_graphql_ws_subprotocol_still_works(app) {
        let mut socket = connect(&app, "graphql-ws").await;
        send(&mut socket, init(&app.token(Role::Viewer))).await;
        assert_eq!(receive_json(&mut socket).await["type"], "connection_ack");
        send(&mut socket, json!({ "type": "start", "id": "1", "payload": { "query": "{ __typename }" } })).await;
        let data = receive_json(&mut socket).await;
        assert_eq!((&data["type"], &data["payload"]["data"]["__typename"]), (&json!("data"), &json!("Query")));
    }
}

db_test! {
    async fn a_token_whose_sub_holds_a_nul_closes_with_4403(app) {
        let claims = json!({ "sub": "a\u{0000}b", "role": "admin", "exp": jsonwebtoken::get_current_timestamp() + 600 });
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(TEST_SECRET.as_bytes()),
        )
        .unwrap();
        let mut socket = connect(&app, TRANSPORT_WS).await;
        send(&mut socket, init(&token)).await;
        assert_eq!(closed(&mut socket).await.0, 4403);
    }
}
