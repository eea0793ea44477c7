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
//! - **Requests hyper cannot parse** (a garbage request line, a malformed header) are
//!   answered by hyper itself, before any handler, with an empty body; the socket
//!   wrapper [`JsonParseErrors`] gives those answers the same `{"error": ...}` body as
//!   every other error.
//!
//! On `shutdown`, the listener closes and in-flight requests get `http.shutdown_grace`
//! to finish.

use super::AppState;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
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
                TokioIo::new(JsonParseErrors::new(stream)),
                TowerToHyperService::new(router.clone()),
            )
            .into_owned();
        let conn = graceful.watch(conn);
        crate::tasks::spawn(async move {
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

/// A connection whose error answers written by hyper itself (a request it could not
/// parse: empty body, `connection: close`) carry a JSON body like every other error.
///
/// hyper writes such an answer as one head with `content-length: 0` and closes; the
/// head is recognised by its exact start and replaced whole. Every other byte passes
/// through unchanged. Writes are not vectored, so a head always starts a write.
pub struct JsonParseErrors {
    inner: TcpStream,
    /// A replacement answer being written, and how much of it is out.
    pending: Option<(Vec<u8>, usize)>,
}

impl JsonParseErrors {
    pub fn new(inner: TcpStream) -> Self {
        Self {
            inner,
            pending: None,
        }
    }

    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, done)) = &mut self.pending {
            if *done == bytes.len() {
                self.pending = None;
                break;
            }
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*done..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *done += n;
        }
        Poll::Ready(Ok(()))
    }
}

/// The JSON answer for a head hyper wrote for a request it refused, if `buf` is one.
fn json_answer(buf: &[u8]) -> Option<Vec<u8>> {
    let head = buf.strip_suffix(b"\r\n\r\n")?;
    let text = std::str::from_utf8(head).ok()?;
    let (status_line, headers) = text.split_once("\r\n")?;
    let code = status_line.strip_prefix("HTTP/1.1 ")?.get(..3)?;
    let lower = headers.to_ascii_lowercase();
    if !(code.starts_with('4') || code.starts_with('5'))
        || !lower.contains("content-length: 0")
        || lower.contains("content-type")
    {
        return None;
    }
    let message = match code {
        "400" => "malformed HTTP request: the request line or a header could not be parsed",
        "414" => "request target too long",
        "431" => "request head too large: at most 64 KB and 1000 headers",
        "505" => "HTTP version not supported: use HTTP/1.1 or HTTP/2",
        _ => "the request could not be read",
    };
    let body = serde_json::to_vec(&serde_json::json!({ "error": message })).ok()?;
    let mut out = format!("{status_line}\r\n").into_bytes();
    for line in headers
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("content-length:"))
    {
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(
        format!(
            "content-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(&body);
    Some(out)
}

impl AsyncRead for JsonParseErrors {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for JsonParseErrors {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.drain(cx))?;
        if buf.len() < 512 {
            if let Some(answer) = json_answer(buf) {
                self.pending = Some((answer, 0));
                // Accepted whole; the rest goes out on the next write, flush or shutdown.
                let _ = self.drain(cx)?;
                return Poll::Ready(Ok(buf.len()));
            }
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::json_answer;

    #[test]
    fn hypers_own_error_heads_get_a_json_body() {
        let head = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: Tue, 01 Dec 2026 22:11:02 GMT\r\n\r\n";
        let out = String::from_utf8(json_answer(head).unwrap()).unwrap();
        let (h, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(
            h.starts_with("HTTP/1.1 400 Bad Request\r\nconnection: close\r\ndate: "),
            "{h}"
        );
        assert!(
            h.contains("content-type: application/json")
                && h.contains(&format!("content-length: {}", body.len())),
            "{h}"
        );
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(body).unwrap()["error"],
            "malformed HTTP request: the request line or a header could not be parsed"
        );
        // Our own answers, and anything that is not an empty error head, pass through.
        assert!(json_answer(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(json_answer(b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(json_answer(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n\r\n").is_none());
        assert!(json_answer(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n{}").is_none());
    }
}
