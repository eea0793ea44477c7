//! The accept loop: HTTP/1.1 and HTTP/2 (h2c) over hyper, with the limits a server
//! facing the internet needs before a request is even routed.
//!
//! - **Header timeout** (`http.header_timeout`): a client that has not sent its
//!   headers in time is disconnected, so half-sent requests cannot pile up.
//! - **Connection cap** (`http.max_connections`, clamped to the open-file limit minus
//!   a reserve for the stores and Kafka): past it, up to [`OVERFLOW_CONNECTIONS`] more
//!   are admitted with a [`OVERFLOW_HEADER_TIMEOUT`] header timeout, so a health check
//!   still gets an answer within seconds while slow clients hold the regular slots;
//!   past those too, new connections wait in the listen backlog until a slot frees.
//!   Accept errors (EMFILE) never stop the loop.
//! - **Header size**: hyper buffers at most [`MAX_HEAD_BYTES`] and [`MAX_HEAD_HEADERS`]
//!   headers (beyond those it answers an empty 431 and closes); the JSON 414/431
//!   answers for smaller but still oversized heads come from [`super::limits`].
//!
//! On `shutdown`, the listener closes and in-flight requests get `http.shutdown_grace`
//! to finish.

use super::AppState;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Connections admitted past the cap, each with a short header timeout.
pub const OVERFLOW_CONNECTIONS: usize = 32;
/// Header timeout of an overflow connection.
pub const OVERFLOW_HEADER_TIMEOUT: Duration = Duration::from_secs(1);
/// Largest request head (request line and headers) hyper buffers.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most headers hyper parses; [`super::limits::MAX_HEADERS`] answers in JSON below it.
pub const MAX_HEAD_HEADERS: usize = 1000;
/// Open files kept free for the stores, the registry, Kafka and logs.
const RESERVED_FDS: u64 = 64;

/// The connection cap in force: `configured`, or less when the open-file limit
/// would not allow that many sockets besides the server's own files.
pub fn effective_max_connections(configured: usize) -> usize {
    match rlimit::getrlimit(rlimit::Resource::NOFILE) {
        Ok((soft, _)) => {
            let allowed = soft
                .saturating_sub(RESERVED_FDS + OVERFLOW_CONNECTIONS as u64)
                .max(16);
            configured.min(usize::try_from(allowed).unwrap_or(usize::MAX))
        }
        Err(_) => configured,
    }
}

/// Serves `app(state)` on `listener` until `shutdown` resolves, then lets in-flight
/// requests finish (within `http.shutdown_grace`).
///
/// # Errors
/// None today: accept errors are logged and retried. The `Result` is for callers
/// that treat the server as a fallible task.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = state.limits.clone();
    // Sockets are files: use all the process may have before clamping to it.
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!(error = %e, "could not raise the open-file limit");
    }
    let max = effective_max_connections(limits.max_connections);
    if max < limits.max_connections {
        tracing::warn!(
            configured = limits.max_connections,
            effective = max,
            "http.max_connections clamped to the open-file limit (raise it with ulimit -n)"
        );
    }
    let regular = Arc::new(Semaphore::new(max));
    let overflow = Arc::new(Semaphore::new(OVERFLOW_CONNECTIONS));
    let router = super::app(state);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        // A slot first, then the connection: with every slot taken, new connections
        // wait in the listen backlog instead of being accepted and dropped.
        let (permit, header_timeout) = match regular.clone().try_acquire_owned() {
            Ok(p) => (p, limits.header_timeout),
            Err(_) => tokio::select! {
                p = regular.clone().acquire_owned() => (p.expect("never closed"), limits.header_timeout),
                p = overflow.clone().acquire_owned() => (p.expect("never closed"), OVERFLOW_HEADER_TIMEOUT.min(limits.header_timeout)),
                () = &mut shutdown => break,
            },
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE/ENFILE/ECONNABORTED: the loop goes on; wait a little when
                // out of files so existing connections can finish.
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .max_buf_size(MAX_HEAD_BYTES)
            .max_headers(MAX_HEAD_HEADERS);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(MAX_HEAD_BYTES as u32);
        let conn = builder
            .serve_connection_with_upgrades(
                TokioIo::new(stream),
                TowerToHyperService::new(router.clone()),
            )
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            // Client-side errors (resets, timeouts) end the connection; nothing to do.
            let _ = conn.await;
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::warn!(grace = ?limits.shutdown_grace, "shutdown grace over; closing the remaining connections");
        }
    }
    Ok(())
}
