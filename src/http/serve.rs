//! The accept loop: each connection served by hyper's HTTP/1.1 (with WebSocket upgrades),
//! as axum's own `serve` does, with the limits that has no settings for.
//!
//! - A client has `ROSTER_HEADER_TIMEOUT` to send a request's headers, from the moment it
//!   connects (and an idle keep-alive connection that long to start its next request): a
//!   connection that sends nothing, or trickles header bytes, is closed.
//! - At most `ROSTER_MAX_CONNECTIONS` connections are open at once, WebSocket ones included
//!   until they close; past that, new connections wait in the listen backlog.
//! - HTTP/1.1 header names are written in title case (`Content-Type`), and a response that
//!   carries its request's case map answers in the client's own case (the WebSocket
//!   handshake does, for `Sec-WebSocket-Protocol`): names are case-insensitive, but some
//!   clients look them up by exact name.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::config::HttpConfig;

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting and waits
/// for the requests in flight.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    config: &HttpConfig,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(config.max_connections as usize));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout)
        .title_case_headers(true)
        .preserve_header_case(true);
    // Told to stop when the loop ends; each connection holds `open` until it has closed.
    let (stop, stopping) = watch::channel(());
    let (open, all_closed) = watch::channel(());
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => {
                permit.expect("the semaphore is never closed")
            }
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    accept_failed(&error).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        let io = TokioIo::new(Counted {
            stream,
            _permit: permit,
        });
        let connection = builder
            .serve_connection(io, TowerToHyperService::new(router.clone()))
            .with_upgrades();
        let mut stopping = stopping.clone();
        let closed = all_closed.clone();
        tokio::spawn(async move {
            tokio::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                _ = stopping.changed() => {
                    // Finishes the request in flight, if any, then closes.
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = result {
                tracing::debug!(%error, "connection ended with an error");
            }
            drop(closed);
        });
    }
    drop(listener);
    drop(stop);
    drop(all_closed);
    open.closed().await;
}

/// An error of one connection (reset before it was accepted) needs nothing; running out of
/// file descriptors needs a pause, or the loop would spin on it.
async fn accept_failed(error: &io::Error) {
    if matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::warn!(%error, "cannot accept a connection");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// A connection that holds its place among `ROSTER_MAX_CONNECTIONS` until it is dropped,
/// also after an upgrade to WebSocket hands it over.
struct Counted {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
