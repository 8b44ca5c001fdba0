//! The rules of `graphql-transport-ws` that async-graphql's `WebSocket` leaves to the server.
//! The gate reads the client's messages before async-graphql does and watches what the
//! server answers; a message the protocol forbids, or no `connection_init` in time, ends the
//! client's messages, and the socket closes with the code the protocol gives that mistake.
//! Under the older `graphql-ws` subprotocol the gate only parses the messages, and closes a
//! socket without `connection_init` in time with the same 4408.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_graphql::http::{ClientMessage, WebSocketProtocols};
use futures_util::{Stream, StreamExt};
use serde::Deserialize;

/// A message that is not JSON, has no known `type`, or lacks what its type needs.
const BAD_REQUEST: u16 = 4400;
/// A `subscribe` before the connection was acknowledged.
const UNAUTHORIZED: u16 = 4401;
/// A refused `connection_init`.
const FORBIDDEN: u16 = 4403;
/// No `connection_init` within the init timeout.
const INIT_TIMEOUT: u16 = 4408;
/// A `subscribe` whose id an operation under way still holds.
const SUBSCRIBER_EXISTS: u16 = 4409;
/// A second `connection_init`.
const TOO_MANY_INITS: u16 = 4429;

/// The messages a `graphql-transport-ws` client may send.
const CLIENT_TYPES: [&str; 5] = ["connection_init", "ping", "pong", "subscribe", "complete"];

/// The code and reason of a close frame.
#[derive(Debug, Clone)]
pub struct Close {
    pub code: u16,
    pub reason: String,
}

impl Close {
    fn new(code: u16, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }
}

/// One socket's protocol state, shared by the client's side and the server's.
#[derive(Clone)]
pub struct Gate {
    /// `graphql-transport-ws`: its rules apply.
    checked: bool,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    /// `connection_init` came (its token may still be being checked).
    initialised: bool,
    /// The server answered `connection_ack`.
    acknowledged: bool,
    /// The token in `connection_init` was refused.
    forbidden: bool,
    /// The ids of the operations under way: each from its `subscribe` until the server sends
    /// `complete` or `error` for it, or the client sends `complete`.
    operations: HashSet<String>,
    /// Why the gate ended the client's messages.
    close: Option<Close>,
}

impl Gate {
    pub fn new(protocol: WebSocketProtocols) -> Self {
        Self {
            checked: protocol == WebSocketProtocols::GraphQLWS,
            state: Arc::default(),
        }
    }

    /// The client's messages, parsed for async-graphql. They end when no `connection_init`
    /// came within `init_timeout`, and under `graphql-transport-ws` at the first message the
    /// protocol forbids; [`Gate::close`] then says how to close the socket.
    pub fn incoming<S>(
        &self,
        messages: S,
        init_timeout: Duration,
    ) -> impl Stream<Item = serde_json::Result<ClientMessage>> + Send + 'static
    where
        S: Stream + Unpin + Send + 'static,
        S::Item: AsRef<[u8]>,
    {
        let deadline = tokio::time::Instant::now() + init_timeout;
        futures_util::stream::unfold(
            (messages, self.clone()),
            move |(mut messages, gate)| async move {
                let awaiting_init = !gate.state().initialised;
                let message = if awaiting_init {
                    match tokio::time::timeout_at(deadline, messages.next()).await {
                        Ok(message) => message?,
                        Err(_) => {
                            gate.end(Close::new(
                                INIT_TIMEOUT,
                                "Connection initialisation timeout",
                            ));
                            return None;
                        }
                    }
                } else {
                    messages.next().await?
                };
                if !gate.checked {
                    let message = ClientMessage::from_bytes(message);
                    if let Ok(ClientMessage::ConnectionInit { .. }) = &message {
                        gate.state().initialised = true;
                    }
                    return Some((message, (messages, gate)));
                }
                match gate.admit(message.as_ref()) {
                    Ok(message) => Some((Ok(message), (messages, gate))),
                    Err(close) => {
                        gate.end(close);
                        None
                    }
                }
            },
        )
        .fuse()
    }

    /// Notes what the server is about to send the client: its acknowledgement, and the
    /// operations it ends. Answers whether to send it: nothing more goes out about an
    /// operation the client completed.
    pub fn outgoing(&self, text: &str) -> bool {
        #[derive(Deserialize)]
        struct Sent {
            #[serde(rename = "type")]
            kind: String,
            id: Option<String>,
        }

        if !self.checked {
            return true;
        }
        let Ok(Sent { kind, id }) = serde_json::from_str(text) else {
            return true;
        };
        let mut state = self.state();
        match (kind.as_str(), id) {
            ("connection_ack", _) => state.acknowledged = true,
            ("next", Some(id)) => return state.operations.contains(&id),
            ("complete" | "error", Some(id)) => return state.operations.remove(&id),
            _ => {}
        }
        true
    }

    /// The token in `connection_init` was refused.
    pub fn forbid(&self) {
        self.state().forbidden = true;
    }

    /// The code of a close async-graphql decided: 4403 once the token was refused.
    pub fn close_code(&self, code: u16) -> u16 {
        if self.state().forbidden {
            FORBIDDEN
        } else {
            code
        }
    }

    /// How to close the socket, when the gate ended the client's messages.
    pub fn close(&self) -> Option<Close> {
        self.state().close.clone()
    }

    /// One client message under `graphql-transport-ws`, or the close it calls for.
    fn admit(&self, bytes: &[u8]) -> Result<ClientMessage, Close> {
        #[derive(Deserialize)]
        struct Received {
            #[serde(rename = "type")]
            kind: String,
        }

        let bad_request = |e: serde_json::Error| Close::new(BAD_REQUEST, e.to_string());
        let Received { kind } = serde_json::from_slice(bytes).map_err(bad_request)?;
        if !CLIENT_TYPES.contains(&kind.as_str()) {
            return Err(Close::new(
                BAD_REQUEST,
                format!("Unknown message type {kind:?}"),
            ));
        }
        let message = ClientMessage::from_bytes(bytes).map_err(bad_request)?;
        let mut state = self.state();
        match &message {
            ClientMessage::ConnectionInit { .. } => {
                if state.initialised {
                    return Err(Close::new(
                        TOO_MANY_INITS,
                        "Too many initialisation requests",
                    ));
                }
                state.initialised = true;
            }
            ClientMessage::Start { id, .. } => {
                // async-graphql reads nothing more while it checks `connection_init`, so a
                // `subscribe` sent right behind it comes here once the answer has gone out.
                if !state.acknowledged {
                    return Err(Close::new(UNAUTHORIZED, "Unauthorized"));
                }
                if !state.operations.insert(id.clone()) {
                    return Err(Close::new(
                        SUBSCRIBER_EXISTS,
                        format!("Subscriber for {id} already exists"),
                    ));
                }
            }
            ClientMessage::Stop { id } => {
                state.operations.remove(id);
            }
            _ => {}
        }
        Ok(message)
    }

    fn end(&self, close: Close) {
        self.state().close = Some(close);
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
