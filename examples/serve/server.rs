//! The accept loop: HTTP/1 connections served by hyper with a header-read timeout (which also
//! closes idle keep-alive connections: hyper starts it whenever a connection waits for a
//! request head) and at most a fixed number of connections at once, with a graceful shutdown.
//!
//! `axum::serve` has neither a timeout nor a limit, so a few hundred stalled sockets would hold
//! the server's descriptors for ever; here each connection holds a permit of a semaphore, taken
//! before accepting, so that extra clients wait in the kernel's backlog instead.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

/// Bounds on connections.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Connections served at once.
    pub max_connections: u32,
    /// The longest wait for a complete request head, from the connection's opening or from
    /// its last answer.
    pub idle_timeout: Duration,
}

/// How long to wait before accepting again after a failed accept (out of descriptors, ...).
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting and waits
/// for the connections to finish their answers under way.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections as usize));
    let (stopping, stop) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = Arc::clone(&permits).acquire_owned() => permit,
        };
        // The semaphore is never closed.
        let Ok(permit) = permit else { break };
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        match stream {
            Ok((stream, _)) => {
                let connection = connection(stream, router.clone(), limits, stop.clone(), permit);
                tokio::spawn(connection);
            }
            Err(err) => {
                eprintln!("cannot accept a connection: {err}");
                tokio::time::sleep(ACCEPT_RETRY).await;
            }
        }
    }
    drop(listener);
    let _ = stopping.send(true);
    // Every connection gives its permit back when it ends.
    let _ = permits.acquire_many(limits.max_connections).await;
}

/// Serves one connection, holding `_permit` until it closes; on `stop`, finishes the answer
/// under way and closes.
async fn connection(
    stream: TcpStream,
    router: Router,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.idle_timeout);
    let service = TowerToHyperService::new(router);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    // A failed connection (reset, timed out, malformed) concerns that client only.
    tokio::select! {
        _ = connection.as_mut() => return,
        _ = stop.wait_for(|stopping| *stopping) => connection.as_mut().graceful_shutdown(),
    }
    let _ = connection.await;
}
