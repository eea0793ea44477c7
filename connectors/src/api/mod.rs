//! The HTTP API (axum on hyper): lead-event ingest (`POST /api/v1/webhooks/lead-events`),
//! the webhook endpoint registry and org settings ([`webhooks`]), publishing and the
//! delivery log ([`deliveries`]), `GET /healthz`, `GET /readyz`, `GET /metrics`,
//! `GET /openapi.json`.
//!
//! Request-level problems answer 4xx with `{"error": "..."}` and store nothing;
//! row-level problems are rejects inside a 200. A 200 is sent only after the batch's
//! new rows are durable (see [`crate::writer`]). Every error the server sends is JSON
//! ([`limits`]); work before authentication is bounded ([`body`], [`server`]).

pub mod auth;
pub mod body;
mod campaigns;
pub mod console;
mod conversations;
mod cursor;
mod deliveries;
mod domain;
mod lead_event_list;
mod lead_events;
mod lead_parts;
pub mod limits;
pub mod openapi;
mod org_limits;
pub mod server;
mod stats;
mod webhooks;

use crate::campaigns::Campaigns;
use crate::config::HttpConfig;
use crate::delivery::DeliveryEngine;
use crate::metrics;
use crate::registry::Registry;
use crate::writer::EventWriter;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use body::BodyBudget;
use leadstream_pipeline::Preparer;
use std::sync::Arc;

pub use server::run;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<Registry>,
    pub writer: EventWriter,
    pub preparer: Preparer,
    /// Outbound webhooks: endpoints, publishing, the delivery log.
    pub engine: DeliveryEngine,
    /// Campaigns, audiences, sends, opt-outs.
    pub campaigns: Campaigns,
    /// Domain events, contacts, triggers and their actions.
    pub domain: crate::domain::Domain,
    /// Timeouts and caps from `[http]`.
    pub limits: Arc<HttpConfig>,
    /// What one organization may have at most (`[org_limits]`).
    pub org_limits: Arc<crate::config::OrgLimitsConfig>,
    /// Request-body bytes in flight across all requests.
    pub budget: BodyBudget,
    /// With several processes: stores each lead's part of a batch at the owner of its
    /// raw partition ([`crate::routing`]). `None`: batches go to [`writer`](Self::writer).
    pub routing: Option<crate::routing::LeadRouter>,
    /// Stored lead events read back (`GET /api/v1/lead-events`, `GET /api/v1/stats`):
    /// the data dir's `events.db` unless [`serve`](crate) attaches ClickHouse.
    pub events: Arc<crate::store::reads::EventReads>,
}

impl AppState {
    /// The handlers' state, with `[http]` and `[org_limits]` from `config`. Installs
    /// the Prometheus recorder ([`metrics::install`]), so a server built from it
    /// records and serves `GET /metrics`.
    pub fn new(
        registry: Arc<Registry>,
        writer: EventWriter,
        preparer: Preparer,
        engine: DeliveryEngine,
        campaigns: Campaigns,
        domain: crate::domain::Domain,
        config: &crate::config::Config,
    ) -> Self {
        metrics::install();
        Self {
            registry,
            writer,
            preparer,
            engine,
            campaigns,
            domain,
            budget: BodyBudget::new(config.http.max_body_bytes_in_flight),
            limits: Arc::new(config.http.clone()),
            org_limits: Arc::new(config.org_limits.clone()),
            routing: None,
            events: Arc::new(crate::store::reads::EventReads::embedded(
                config.store.data_dir.clone(),
            )),
        }
    }
}

/// The router, without a socket: tests may drive it directly.
pub fn app(state: AppState) -> Router {
    let routes = Router::new()
        .route(lead_events::PATH, post(lead_events::post))
        .route(crate::routing::wire::PATH, post(lead_parts::post))
        .route("/api/v1/api-keys/current", get(auth::current))
        .route("/api/v1/lead-events", get(lead_event_list::list))
        .route("/api/v1/stats", get(stats::get))
        .route("/api/webhooks/get", get(webhooks::list))
        .route("/api/webhooks/create", post(webhooks::create))
        .route("/api/webhooks/delete", delete(webhooks::delete))
        .route(
            "/api/webhooks/{id}",
            get(webhooks::get_one).patch(webhooks::patch),
        )
        .route("/api/webhooks/{id}/secret", get(webhooks::secret))
        .route("/api/webhooks/{id}/secret/rotate", post(webhooks::rotate))
        .route("/api/webhooks/{id}/replay", post(webhooks::replay))
        .route(
            "/api/v1/organizations/current/settings",
            put(webhooks::put_settings).get(webhooks::get_settings),
        )
        .route("/api/v1/outbound-events", post(deliveries::publish))
        .route("/api/v1/deliveries", get(deliveries::list))
        .route("/api/v1/deliveries/{id}", get(deliveries::get_one))
        .route("/api/v1/deliveries/{id}/retry", post(deliveries::retry))
        .route(
            "/api/v1/campaigns",
            post(campaigns::create).get(campaigns::list),
        )
        .route(
            "/api/v1/campaigns/{id}",
            get(campaigns::get_one).patch(campaigns::patch),
        )
        .route("/api/v1/campaigns/{id}/schedule", post(campaigns::schedule))
        .route("/api/v1/campaigns/{id}/pause", post(campaigns::pause))
        .route("/api/v1/campaigns/{id}/resume", post(campaigns::resume))
        .route("/api/v1/campaigns/{id}/cancel", post(campaigns::cancel))
        .route(
            "/api/v1/campaigns/{id}/audience",
            post(campaigns::upload_audience),
        )
        .route(
            "/api/v1/campaigns/{id}/sends",
            post(campaigns::create_send).get(campaigns::list_sends),
        )
        .route(
            "/api/v1/campaigns/{id}/sends/{send}",
            get(campaigns::get_send),
        )
        .route(
            "/api/v1/campaigns/{id}/sends/{send}/eligible",
            post(campaigns::eligible),
        )
        .route(
            "/api/v1/campaigns/{id}/sends/{send}/materialize",
            post(campaigns::materialize),
        )
        .route(
            "/api/v1/webhooks/campaigns/audience-filter",
            post(campaigns::audience_filter),
        )
        .route(
            "/api/v1/opt-outs",
            post(campaigns::add_opt_outs)
                .delete(campaigns::remove_opt_outs)
                .get(campaigns::get_opt_out),
        )
        .route(domain::EVENTS_PATH, post(domain::take_event))
        .route(
            "/api/v1/integrations/whatsapp",
            post(domain::register_whatsapp).get(domain::list_whatsapp),
        )
        .route(
            "/api/v1/integrations/whatsapp/{id}",
            axum::routing::delete(domain::delete_whatsapp),
        )
        .route(
            "/api/v1/integrations/whatsapp/{id}/webhook",
            get(domain::whatsapp_challenge).post(domain::whatsapp_webhook),
        )
        .route(
            "/api/v1/contacts/{phone}",
            get(domain::get_contact).put(domain::put_contact),
        )
        .route(
            "/api/v1/contacts/{phone}/conversations",
            get(conversations::list),
        )
        .route(
            "/api/v1/triggers",
            get(domain::list_triggers).post(domain::create_trigger),
        )
        .route(
            "/api/v1/triggers/{id}",
            get(domain::get_trigger)
                .put(domain::put_trigger)
                .delete(domain::delete_trigger),
        )
        .route(
            "/api/v1/triggers/{id}/actions",
            get(domain::list_actions).post(domain::create_action),
        )
        .route(
            "/api/v1/triggers/{id}/actions/{action}",
            get(domain::get_action)
                .put(domain::put_action)
                .delete(domain::delete_action),
        )
        .route(
            "/api/v1/triggers/{id}/actions/{action}/log",
            get(domain::action_log),
        )
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(serve_metrics))
        .route("/openapi.json", get(openapi::serve))
        .route("/", get(console::index))
        .route("/console/{*path}", get(console::file))
        .fallback(|| async { StatusCode::NOT_FOUND })
        .with_state(state);
    // The guard wraps the whole router, so it sees responses as routing finished them
    // (a 405 with its Allow header); responses are counted outside it, with the status
    // the client gets.
    Router::new()
        .fallback_service(routes)
        .layer(axum::middleware::from_fn(limits::guard))
        .layer(axum::middleware::from_fn(count_response))
}

/// Middleware: counts every response the router sends by its status class.
async fn count_response(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let response = next.run(req).await;
    metrics::http_response(response.status().as_u16());
    response
}

/// `GET /metrics`: Prometheus metrics.
///
/// Like the health checks, without an API key: a scraper has none, and the values are
/// counts and gauges without event data or secrets. Without `http.metrics_token` only
/// aggregate series are served; with it, the token is required and the per-endpoint
/// series (which say how much each org has queued) are served too.
#[utoipa::path(get, path = "/metrics", tag = "metrics", responses(
    (status = 200, description = "Prometheus metrics in the text exposition format 0.0.4", content_type = "text/plain; version=0.0.4; charset=utf-8", body = String),
    (status = 401, description = "http.metrics_token is set and the request does not carry it as Authorization: Bearer", body = ErrorBody),
))]
async fn serve_metrics(
    axum::extract::State(s): axum::extract::State<AppState>,
    headers: axum::http::HeaderMap,
) -> Response {
    let want = s.limits.metrics_token.as_str();
    let text = if want.is_empty() {
        metrics::render_aggregate()
    } else {
        use subtle::ConstantTimeEq;
        let got = auth::bearer_token(&headers).unwrap_or_default();
        if !bool::from(got.as_bytes().ct_eq(want.as_bytes())) {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "GET /metrics needs the scrape token: send http.metrics_token as Authorization: Bearer",
            )
            .into_response();
        }
        metrics::render()
    };
    ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response()
}

/// `GET /healthz`: the process is up and serving HTTP.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "The process is up", body = Status, example = json!({"status": "ok"}))))]
async fn healthz() -> Json<Status> {
    Json(Status { status: "ok" })
}

/// `GET /readyz`: the indexes are warm and events are being stored.
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "Ready: events are accepted", body = Status, example = json!({"status": "ready"})),
    (status = 503, description = "Still warming the dedup index from the store", body = ErrorBody, headers(("Retry-After" = u32, description = "Seconds to wait"))),
))]
async fn readyz(axum::extract::State(s): axum::extract::State<AppState>) -> Response {
    if s.writer.is_ready() {
        Json(Status { status: "ready" }).into_response()
    } else {
        ApiError::unavailable("warming up the dedup index from the store").into_response()
    }
}

/// 400 with `msg`.
pub(crate) fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, msg)
}

/// A path id: `what` names it in the 400.
pub(crate) fn parse_id(what: &str, text: &str) -> Result<i64, ApiError> {
    text.trim()
        .parse::<i64>()
        .map_err(|_| bad(format!("{what} {text:?} is not an integer id")))
}

/// 409 with `msg`.
pub(crate) fn conflict(msg: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, msg)
}

/// Longest name a client may give anything (a campaign, a trigger, an action, a
/// send's template and language), in characters.
pub const MAX_NAME: usize = 256;

/// The one rule for a client's short text field (a name, a template, a secret): 1 to
/// `max` characters, not blank, no control characters. The 400 names the field and
/// what was wrong.
///
/// # Errors
/// 400 saying which rule `value` broke.
pub(crate) fn check_text(field: &str, value: &str, max: usize) -> Result<(), ApiError> {
    let n = value.chars().count();
    let problem = if value.trim().is_empty() {
        format!("{field} is empty or blank")
    } else if n > max {
        format!("{field} is {n} characters")
    } else if value.chars().any(char::is_control) {
        format!("{field} contains control characters")
    } else {
        return Ok(());
    };
    Err(bad(format!(
        "{problem}: it must be 1 to {max} characters, not blank, without control characters"
    )))
}

/// A failure of the server's own storage, as the client hears it. The cause (the
/// database's own message) is logged with an incident id and never sent: a store that
/// cannot answer now (locked, busy, no connection, shutting down) is a 503 with
/// `Retry-After`; anything else a 500 naming the incident.
pub(crate) fn store_error(e: impl StoreFailure) -> ApiError {
    if e.is_nul_in_text() {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "a text value contains the NUL character (\\u0000), which the database cannot store: send it without that character",
        );
    }
    if e.is_unavailable() {
        incident(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server's database is unavailable right now; retry after Retry-After",
            &e,
        )
    } else {
        incident(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error: the server could not complete this request",
            &e,
        )
    }
}

/// A failure inside the server (its database's, ClickHouse's, a worker's), as the
/// client hears it: `say` and an incident id, under which the cause is logged. The
/// cause's own words (addresses, SQL, hosts) never reach the client. A 503 carries
/// `Retry-After`.
pub(crate) fn incident(status: StatusCode, say: &str, cause: &dyn std::fmt::Display) -> ApiError {
    let incident = format!("{:08x}", rand::random::<u32>());
    let message = format!("{say} (incident {incident}; the server logged why under it)");
    if status == StatusCode::SERVICE_UNAVAILABLE {
        tracing::warn!(incident, error = %cause, "a request found a part of the server unavailable; answered 503");
        ApiError::unavailable(message)
    } else {
        tracing::error!(incident, error = %cause, status = status.as_u16(), "a request failed inside the server");
        ApiError::new(status, message)
    }
}

/// A storage failure [`store_error`] can answer: is it worth retrying soon?
pub(crate) trait StoreFailure: std::fmt::Display {
    /// The store could not answer now (a retry may succeed), as opposed to failing
    /// this request for good.
    fn is_unavailable(&self) -> bool;
    /// A text value the client sent holds a NUL character, which Postgres text cannot
    /// store (SQLSTATE 22021; the embedded store refuses it alike,
    /// [`crate::db::sql::NulInText`]): the request's fault, answered 400, nothing
    /// written.
    fn is_nul_in_text(&self) -> bool {
        false
    }
}

impl StoreFailure for crate::db::RepoError {
    fn is_nul_in_text(&self) -> bool {
        match self {
            crate::db::RepoError::Postgres(e) => {
                e.code() == Some(&tokio_postgres::error::SqlState::CHARACTER_NOT_IN_REPERTOIRE)
            }
            crate::db::RepoError::Sqlite(e) => crate::db::sql::NulInText::is(e),
            _ => false,
        }
    }

    fn is_unavailable(&self) -> bool {
        use crate::db::RepoError;
        match self {
            RepoError::Sqlite(e) => sqlite_busy(e),
            RepoError::Pool(_) => true,
            RepoError::Postgres(e) => {
                e.is_closed()
                    || e.code().is_some_and(|c| {
                        let c = c.code();
                        // Connection exceptions, operator intervention (shutdown),
                        // insufficient resources, serialization failures and deadlocks.
                        c.starts_with("08")
                            || c.starts_with("57")
                            || c.starts_with("53")
                            || c == "40001"
                            || c == "40P01"
                    })
                    || std::error::Error::source(e)
                        .is_some_and(|c| c.downcast_ref::<std::io::Error>().is_some())
            }
            RepoError::Unknown { .. }
            | RepoError::Type { .. }
            | RepoError::NoRow
            | RepoError::Backend(_) => false,
        }
    }
}

fn sqlite_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

impl StoreFailure for crate::delivery::store::DbError {
    fn is_nul_in_text(&self) -> bool {
        match self {
            crate::delivery::store::DbError::Repo(e) => e.is_nul_in_text(),
            crate::delivery::store::DbError::Sql(e) => crate::db::sql::NulInText::is(e),
            _ => false,
        }
    }

    fn is_unavailable(&self) -> bool {
        use crate::delivery::store::DbError;
        match self {
            DbError::Sql(e) => sqlite_busy(e),
            DbError::Stopped => true,
            DbError::Repo(e) => e.is_unavailable(),
            DbError::Aborted(_) | DbError::Migrate(_) => false,
        }
    }
}

impl StoreFailure for crate::registry::RegistryError {
    fn is_nul_in_text(&self) -> bool {
        matches!(self, crate::registry::RegistryError::Db(e) if e.is_nul_in_text())
    }

    fn is_unavailable(&self) -> bool {
        match self {
            crate::registry::RegistryError::Db(e) => e.is_unavailable(),
            _ => false,
        }
    }
}

impl StoreFailure for crate::delivery::PublishError {
    fn is_nul_in_text(&self) -> bool {
        match self {
            crate::delivery::PublishError::Store(e) => e.is_nul_in_text(),
        }
    }

    fn is_unavailable(&self) -> bool {
        match self {
            crate::delivery::PublishError::Store(e) => e.is_unavailable(),
        }
    }
}

impl StoreFailure for crate::campaigns::EligibilityError {
    fn is_unavailable(&self) -> bool {
        use crate::campaigns::EligibilityError;
        match self {
            EligibilityError::Db(e) => e.is_unavailable(),
            EligibilityError::ClickHouse(e) => e.is_unavailable(),
            EligibilityError::NoClickHouse => false,
        }
    }
}

impl StoreFailure for crate::campaigns::MaterializeError {
    fn is_nul_in_text(&self) -> bool {
        use crate::campaigns::MaterializeError;
        match self {
            MaterializeError::Db(e) => e.is_nul_in_text(),
            MaterializeError::Publish(e) => e.is_nul_in_text(),
            _ => false,
        }
    }

    fn is_unavailable(&self) -> bool {
        use crate::campaigns::MaterializeError;
        match self {
            MaterializeError::Db(e) => e.is_unavailable(),
            MaterializeError::Publish(e) => e.is_unavailable(),
            MaterializeError::Eligibility(e) => e.is_unavailable(),
            MaterializeError::NoSend(_)
            | MaterializeError::NoEndpoint(_)
            | MaterializeError::Stopped(_) => false,
        }
    }
}

impl StoreFailure for crate::store::StoreError {
    fn is_unavailable(&self) -> bool {
        crate::store::StoreError::is_unavailable(self)
    }
}

impl StoreFailure for &str {
    /// A task that stopped (the server is shutting down).
    fn is_unavailable(&self) -> bool {
        true
    }
}

/// A query string's parameters, each at most once and each one of `known`.
///
/// # Errors
/// 400 naming an unknown or repeated parameter.
pub fn query_params(
    pairs: Vec<(String, String)>,
    known: &[&str],
) -> Result<std::collections::HashMap<String, String>, ApiError> {
    let mut out = std::collections::HashMap::with_capacity(pairs.len());
    for (k, v) in pairs {
        if !known.contains(&k.as_str()) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "unknown parameter {k:?}: the parameters are {}",
                    known.join(", ")
                ),
            ));
        }
        if out.insert(k.clone(), v).is_some() {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("parameter {k:?} is given more than once; give it once"),
            ));
        }
    }
    Ok(out)
}

/// A health answer.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Status {
    pub status: &'static str,
}

/// Every error response: what went wrong and what to do about it.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// A sentence saying what was wrong with the request, with the offending value.
    #[schema(example = "eventType is 131 chars, at most 128")]
    pub error: String,
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
    pub(crate) fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }
    fn timeout(message: impl Into<String>) -> Self {
        Self::new(StatusCode::REQUEST_TIMEOUT, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response();
        match self.status {
            StatusCode::SERVICE_UNAVAILABLE => {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            // The rest of a stalled body is not waited for: the connection ends here.
            StatusCode::REQUEST_TIMEOUT | StatusCode::PAYLOAD_TOO_LARGE => {
                r.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_failure_never_reaches_the_client_and_an_unavailable_store_is_a_503() {
        let broken = crate::delivery::store::DbError::from(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(11), // SQLITE_CORRUPT
            Some("database disk image is malformed at page 7".into()),
        ));
        let e = store_error(broken);
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(
            !e.message.contains("malformed") && e.message.contains("incident"),
            "{}",
            e.message
        );
        let busy = crate::delivery::store::DbError::from(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(5), // SQLITE_BUSY
            Some("database is locked".into()),
        ));
        let e = store_error(busy);
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(!e.message.contains("locked"), "{}", e.message);
        let r = e.into_response();
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        let unknown = crate::db::RepoError::Unknown {
            column: "endpoints.kind",
            value: "magic".into(),
        };
        assert_eq!(
            store_error(unknown).status,
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
