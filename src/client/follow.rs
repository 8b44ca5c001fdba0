//! Following a job to its final status: over the WebSocket subscription
//! (`importJobProgress`, `graphql-transport-ws`), or, when the socket is refused or drops,
//! by reading the job again and again.

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use super::progress::Progress;
use super::{Error, JOB_FIELDS, Server, finished};

/// How long polling waits between two reads of a job.
const POLL: Duration = Duration::from_millis(500);

/// How long the WebSocket may take to open, and then stay silent, before the job is read by
/// polling instead: a proxy that never completes the upgrade, or a connection that died
/// without a close frame, would otherwise keep the command waiting for ever.
const SOCKET_SILENCE: Duration = Duration::from_secs(60);

/// Follows the job `id` until it has a final status, showing each state on `progress`, and
/// answers the final job.
pub async fn follow(server: &Server, id: &str, progress: &mut Progress) -> anyhow::Result<Value> {
    match subscribe(server, id, progress).await {
        Ok(job) => Ok(job),
        Err(reason) => {
            progress.note(&format!(
                "job {id}: cannot follow it over the WebSocket ({reason}); reading it every {}",
                humantime::format_duration(POLL)
            ));
            poll(server, id, progress).await
        }
    }
}

/// Follows a job over `/graphql/ws`; an error (the socket refused or closed early, or the
/// subscription refused) says why, and the caller polls instead.
async fn subscribe(server: &Server, id: &str, progress: &mut Progress) -> Result<Value, String> {
    let mut url = server.url("/graphql/ws");
    let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
    url.set_scheme(scheme)
        .map_err(|()| format!("{url} cannot be a WebSocket URL"))?;
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|error| error.to_string())?;
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    let (mut socket, _) =
        tokio::time::timeout(SOCKET_SILENCE, tokio_tungstenite::connect_async(request))
            .await
            .map_err(|_| silent())?
            .map_err(|error| error.to_string())?;
    let send = |message: Value| Message::text(message.to_string());
    socket
        .send(send(json!({
            "type": "connection_init",
            "payload": { "Authorization": format!("Bearer {}", server.token) },
        })))
        .await
        .map_err(|error| error.to_string())?;
    let query = format!(
        "subscription($id: ID!) {{ importJobProgress(id: $id) {{ ...Job }} }} {JOB_FIELDS}"
    );
    let mut last = None;
    while let Some(message) = tokio::time::timeout(SOCKET_SILENCE, socket.next())
        .await
        .map_err(|_| silent())?
    {
        let text = match message.map_err(|error| error.to_string())? {
            Message::Text(text) => text,
            Message::Close(frame) => {
                return Err(match frame {
                    Some(frame) => format!("closed with {}: {}", frame.code, frame.reason),
                    None => "closed".to_owned(),
                });
            }
            _ => continue,
        };
        let message: Value = serde_json::from_str(&text).map_err(|error| error.to_string())?;
        match message["type"].as_str() {
            Some("connection_ack") => {
                progress.note(&format!("job {id}: following it over the WebSocket"));
                let subscribe = json!({
                    "id": "1",
                    "type": "subscribe",
                    "payload": { "query": query, "variables": { "id": id } },
                });
                socket
                    .send(send(subscribe))
                    .await
                    .map_err(|error| error.to_string())?;
            }
            Some("ping") => {
                let _ = socket.send(send(json!({ "type": "pong" }))).await;
            }
            Some("next") => {
                if let Some(error) = message["payload"]["errors"][0]["message"].as_str() {
                    return Err(error.to_owned());
                }
                let job = message["payload"]["data"]["importJobProgress"].clone();
                progress.show(&job);
                if finished(&job) {
                    let _ = socket.close(None).await;
                    return Ok(job);
                }
                last = Some(job);
            }
            Some("error") => return Err(message["payload"].to_string()),
            Some("complete") => break,
            _ => {}
        }
    }
    match last {
        Some(job) if finished(&job) => Ok(job),
        _ => Err("the socket closed before the job ended".to_owned()),
    }
}

fn silent() -> String {
    format!(
        "no word from it for {}",
        humantime::format_duration(SOCKET_SILENCE)
    )
}

/// Follows a job by reading it with `importJob` every [`POLL`].
async fn poll(server: &Server, id: &str, progress: &mut Progress) -> anyhow::Result<Value> {
    loop {
        let job = get(server, id).await?;
        progress.show(&job);
        if finished(&job) {
            return Ok(job);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// One job, as [`JOB_FIELDS`] reads it; an error when the server has no such job.
pub async fn get(server: &Server, id: &str) -> anyhow::Result<Value> {
    let query = format!("query($id: ID!) {{ importJob(id: $id) {{ ...Job }} }} {JOB_FIELDS}");
    let data = server.graphql(&query, json!({ "id": id })).await?;
    match &data["importJob"] {
        Value::Null => Err(Error::NoSuchJob(format!(
            "there is no job {id} (of this token's tenant); finished jobs are deleted once \
             past their retention"
        ))
        .into()),
        job => Ok(job.clone()),
    }
}
