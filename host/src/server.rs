//! The accept loop: HTTP/1.1 and HTTP/2 (cleartext, prior knowledge) on
//! one listener, with graceful shutdown.
//!
//! Transit runs its own loop rather than `axum::serve` for the settings a
//! gateway needs on its client connections:
//! - `TCP_NODELAY`: without it a stream's second small write waits for the
//!   client's delayed ACK (about 40 ms), so every chunk after the first
//!   would lag;
//! - a bounded read buffer ([`READ_BUFFER_BYTES`]): by default hyper grows
//!   a connection's buffer to take a request body in as few reads as it
//!   can, up to about 400 KB, and keeps it at that size for the
//!   connection's life, which for a stream is minutes;
//! - a header read timeout ([`HEADER_READ_TIMEOUT`]): a client that opens a
//!   connection and sends its request head slowly, or never, is dropped,
//!   and so is a keep-alive connection idle for as long.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// What a client connection's read buffer grows to at most, give or take:
/// hyper reads into all the room an allocation has, so the buffer may
/// reach twice this. A request head must fit in it (a larger one gets
/// 431), and a long body is read through it in pieces instead of growing
/// it to the body's size.
pub const READ_BUFFER_BYTES: usize = 64 * 1024;

/// How long a client has to send a request head, from the moment the
/// connection is ready for one (opened, or done with its last request).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serve `router` on `listener` until `shutdown` resolves; then accept no
/// more connections, let each one finish the request it is serving (idle
/// keep-alive connections close at once), and return when all are closed.
/// Requests see the client's address as [`ConnectInfo<SocketAddr>`], and
/// `cut` (the gateway's [`crate::Inner::shutdown`]) as a [`ConnectionCut`].
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send,
    cut: CancellationToken,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .max_buf_size(READ_BUFFER_BYTES)
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let builder = std::sync::Arc::new(builder);
    let closing = CancellationToken::new();
    let connections = TaskTracker::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    pause_after_accept_error(&e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY on a connection");
        }
        // Tokens of the connection's own, children of the shared ones: a
        // request polls its connection's token, never one every connection
        // shares (each poll of a token takes its lock).
        let connection_cut = ConnectionCut(cut.child_token());
        let service = TowerToHyperService::new(router.clone().map_request(
            move |request: axum::http::Request<Incoming>| {
                let mut request = request.map(Body::new);
                request.extensions_mut().insert(ConnectInfo(remote));
                request.extensions_mut().insert(connection_cut.clone());
                request
            },
        ));
        let builder = builder.clone();
        let closing = closing.child_token();
        connections.spawn(async move {
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(tcp), service);
            let mut connection = std::pin::pin!(connection);
            let served = tokio::select! {
                served = connection.as_mut() => served,
                () = closing.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = served {
                tracing::trace!(error = %e, client = %remote, "connection ended with an error");
            }
        });
    }
    drop(listener);
    closing.cancel();
    connections.close();
    connections.wait().await;
}

/// The shutdown cut as one connection sees it: cancelled with the gateway's
/// [`crate::Inner::shutdown`] (see [`crate::http::cut_at_shutdown`]).
#[derive(Clone)]
pub struct ConnectionCut(pub CancellationToken);

/// After a failed accept: running out of file descriptors (or memory) is
/// not fixed by trying again at once, so wait a moment; errors of the one
/// connection (reset before it was accepted) are retried at once.
async fn pause_after_accept_error(e: &std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "cannot accept a connection");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
