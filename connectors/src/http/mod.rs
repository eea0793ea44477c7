//! The HTTP API (axum): `POST /api/v1/webhooks/lead-events`, `GET /healthz`, `GET /readyz`.
//!
//! Request-level problems answer 4xx with `{"error": "..."}` and store nothing;
//! row-level problems are rejects inside a 200. A 200 is sent only after the batch's
//! new rows are durable (see [`crate::ingest`]).

mod lead_events;

use crate::ingest::Ingestor;
use crate::registry::Registry;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use leadstream_pipeline::Ingest;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<Registry>,
    pub ingestor: Ingestor,
    pub ingest: Ingest,
}

/// The router, without a socket: tests may drive it directly.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/webhooks/lead-events", post(lead_events::post))
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn readyz(axum::extract::State(s): axum::extract::State<AppState>) -> Response {
    if s.ingestor.is_ready() {
        Json(serde_json::json!({"status": "ready"})).into_response()
    } else {
        ApiError::unavailable("warming up the dedup index from the store").into_response()
    }
}

/// Serves `app(state)` on `listener` until `shutdown` resolves, then lets in-flight
/// requests finish.
///
/// # Errors
/// The server's I/O error.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// An error response: a status and `{"error": message}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
    fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}
