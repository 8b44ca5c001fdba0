//! The WebSocket route checks the token in `connection_init`.

use futures_util::{SinkExt, StreamExt};
use roster::auth::Role;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::helpers::{TEST_SECRET, TestApp, db_test};

async fn connect_and_init(app: &TestApp, payload: Value) -> Message {
    let mut request = format!("ws://127.0.0.1:{}/graphql/ws", app.port)
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut socket, response) = tokio_tungstenite::connect_async(request)
        .await
        .expect("upgrade");
    assert_eq!(
        response.headers().get("sec-websocket-protocol").unwrap(),
        "graphql-transport-ws"
    );
    socket
        .send(Message::text(
            json!({ "type": "connection_init", "payload": payload }).to_string(),
        ))
        .await
        .unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(10), socket.next())
        .await
        .expect("the server answers connection_init")
        .expect("a message")
        .expect("a readable message")
}

db_test! {
    async fn a_valid_token_is_acknowledged(app) {
        let token = app.token(Role::Viewer);
        let message = connect_and_init(&app, json!({ "Authorization": format!("Bearer {token}") })).await;
        let Message::Text(text) = message else { panic!("expected connection_ack, got {message:?}") };
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["type"], "connection_ack");
    }
}

db_test! {
    async fn a_missing_or_bad_token_closes_with_4403(app) {
        for payload in [json!({}), json!({ "Authorization": "Bearer not-a-token" })] {
            let message = connect_and_init(&app, payload.clone()).await;
            let Message::Close(Some(frame)) = message else {
                panic!("{payload}: expected a close frame, got {message:?}")
            };
            assert_eq!(frame.code, CloseCode::Library(4403), "{payload}");
        }
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
        let message = connect_and_init(&app, json!({ "Authorization": format!("Bearer {token}") })).await;
        let Message::Close(Some(frame)) = message else {
            panic!("expected a close frame, got {message:?}")
        };
        assert_eq!(frame.code, CloseCode::Library(4403));
    }
}
