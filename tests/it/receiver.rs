//! A scripted webhook receiver on 127.0.0.1:<port 0>: each path answers from its own
//! script, one step per attempt of a delivery (counted per `webhook-id`, the last step
//! repeating), and every request is kept.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One answer of a script.
#[derive(Debug, Clone)]
pub enum Step {
    /// This status, empty body.
    Status(u16),
    /// This status with `Retry-After: <secs>`.
    RetryAfter(u16, u64),
    /// 302 to another URL.
    Redirect(&'static str),
    /// Sleep this long, then 200.
    Hang(Duration),
}

/// A request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

#[derive(Default)]
struct Inner {
    scripts: HashMap<String, Vec<Step>>,
    seen: Vec<Received>,
    /// Requests served per (name, webhook-id).
    served: HashMap<(String, String), usize>,
}

/// The receiver; stops when dropped with the test's runtime.
#[derive(Clone)]
pub struct Receiver {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

impl Receiver {
    pub async fn start() -> Self {
        let inner: Arc<Mutex<Inner>> = Arc::default();
        let app = axum::Router::new()
            .route("/{name}", axum::routing::post(answer))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, inner }
    }

    /// `http://127.0.0.1:<port>/<name>`, answering `steps` in turn (from the first
    /// again when `name` had a script).
    pub fn script(&self, name: &str, steps: Vec<Step>) -> String {
        let mut g = self.inner.lock();
        g.scripts.insert(name.to_owned(), steps);
        g.served.retain(|(n, _), _| n != name);
        drop(g);
        self.url(name)
    }

    pub fn url(&self, name: &str) -> String {
        format!("http://{}/{name}", self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Requests to `name` so far, in arrival order.
    pub fn seen(&self, name: &str) -> Vec<Received> {
        let p = format!("/{name}");
        self.inner
            .lock()
            .seen
            .iter()
            .filter(|r| r.path == p)
            .cloned()
            .collect()
    }

    /// Every request so far.
    pub fn all(&self) -> Vec<Received> {
        self.inner.lock().seen.clone()
    }
}

async fn answer(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let step = {
        let id = headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let mut g = inner.lock();
        g.seen.push(Received {
            path: format!("/{name}"),
            headers,
            body,
            at: Instant::now(),
        });
        let n = g.served.entry((name.clone(), id)).or_default();
        let i = *n;
        *n += 1;
        let script = g.scripts.get(&name).cloned().unwrap_or_default();
        script
            .get(i)
            .or(script.last())
            .cloned()
            .unwrap_or(Step::Status(200))
    };
    match step {
        Step::Status(s) => {
            (StatusCode::from_u16(s).unwrap(), format!("answer {s}")).into_response()
        }
        Step::RetryAfter(s, secs) => (
            StatusCode::from_u16(s).unwrap(),
            [("retry-after", secs.to_string())],
            "slow down",
        )
            .into_response(),
        Step::Redirect(to) => (StatusCode::FOUND, [("location", to)], "").into_response(),
        Step::Hang(d) => {
            tokio::time::sleep(d).await;
            (StatusCode::OK, "late").into_response()
        }
    }
}

/// Whether `r` carries a valid Standard Webhooks signature with `secret`, checked as a
/// receiver would, with the spec's own library.
pub fn verify(secret: &str, r: &Received) -> bool {
    standardwebhooks::Webhook::new(secret)
        .unwrap()
        .verify(&r.body, &r.headers)
        .is_ok()
}
