//! Subscriptions over WebSocket (`graphql-transport-ws`); the token comes in `connection_init`.

mod gate;

use std::str::FromStr;

use async_graphql::Data;
use async_graphql::http::{ALL_WEBSOCKET_PROTOCOLS, WebSocket, WebSocketProtocols, WsMessage};
use axum::extract::ws::{CloseFrame, Message};
use axum::extract::{State, WebSocketUpgrade};
use axum::http::{Extensions, HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt, future};

use self::gate::{Close, Gate};
use super::AppState;
use crate::error::AppError;
use crate::graphql::request_data;

/// Longest close reason a WebSocket frame can carry.
const MAX_CLOSE_REASON: usize = 123;

pub async fn subscribe(
    State(state): State<AppState>,
    headers: HeaderMap,
    request: Extensions,
    upgrade: WebSocketUpgrade,
) -> Response {
    let Some(protocol) = protocol(&headers) else {
        return (
            StatusCode::BAD_REQUEST,
            "use the graphql-transport-ws subprotocol (Sec-WebSocket-Protocol)",
        )
            .into_response();
    };
    let mut response = upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| serve(state, protocol, socket));
    // The handshake answers each header with the case the client wrote it in (hyper keeps
    // the request's case map among its extensions): names are case-insensitive, but some
    // clients (Python's gql 4.0 to 4.3) look `Sec-WebSocket-Protocol` up by exact name.
    response.extensions_mut().extend(request);
    response
}

async fn serve(
    state: AppState,
    protocol: WebSocketProtocols,
    socket: axum::extract::ws::WebSocket,
) {
    let (mut sink, stream) = socket.split();
    let input = stream
        .take_while(|message| future::ready(message.is_ok()))
        .filter_map(|message| {
            future::ready(match message {
                Ok(message @ (Message::Text(_) | Message::Binary(_))) => Some(message.into_data()),
                _ => None,
            })
        });

    let gate = Gate::new(protocol);
    let refuse = gate.clone();
    let init_timeout = state.http.ws_init_timeout;
    let schema = state.schema.clone();
    let output =
        WebSocket::from_message_stream(schema, gate.incoming(input, init_timeout), protocol)
            .on_connection_init(move |payload| async move {
                let principal = state
                    .auth
                    .authenticate_header(authorization(&payload))
                    .map_err(|e| {
                        refuse.forbid();
                        AppError::Unauthenticated(e.to_string())
                    })?;
                let mut data = Data::default();
                request_data(&mut data, principal, &state.db, &state.queue);
                Ok(data)
            });
    futures_util::pin_mut!(output);
    while let Some(message) = output.next().await {
        let message = match message {
            WsMessage::Text(text) if gate.outgoing(&text) => Message::Text(text.into()),
            WsMessage::Text(_) => continue,
            WsMessage::Close(code, reason) => close_frame(Close {
                code: gate.close_code(code),
                reason,
            }),
        };
        if sink.send(message).await.is_err() {
            return;
        }
    }
    if let Some(close) = gate.close() {
        let _ = sink.send(close_frame(close)).await;
    }
}

fn close_frame(Close { code, reason }: Close) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: truncate(reason, MAX_CLOSE_REASON).into(),
    }))
}

fn protocol(headers: &HeaderMap) -> Option<WebSocketProtocols> {
    headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)?
        .to_str()
        .ok()?
        .split(',')
        .find_map(|p| WebSocketProtocols::from_str(p.trim()).ok())
}

/// `{"Authorization": "Bearer …"}`, the key matched case-insensitively as HTTP headers are.
fn authorization(payload: &serde_json::Value) -> Option<&str> {
    payload
        .as_object()?
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case("authorization"))?
        .1
        .as_str()
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}
