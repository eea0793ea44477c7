//! `POST /api/v1/webhooks/lead-events`.
//!
//! Work before authentication is bounded: an API key is checked before the body is
//! read at all; a signed body is read (within the size, progress and memory bounds of
//! [`super::body`]), its `organizationId` found by a scan that builds nothing, and its
//! signature verified — only then is it parsed. Every credential problem gets the
//! same 401 text, so an answer never tells whether an organization exists or how it
//! authenticates.

use super::body::{self, ReadBody};
use super::{ApiError, AppState, ErrorBody, MAX_BODY_BYTES};
use crate::metrics::{self, Source};
use crate::registry::{AuthMode, Registry, SigningKeys};
use crate::routing::RouteError;
use crate::store::StoreError;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use leadstream_pipeline::parse::find_organization_id;
use leadstream_pipeline::{OrgId, Parser, Prepared, Preparer, RequestError};
use serde::Serialize;
use std::cell::RefCell;
use std::sync::Arc;

thread_local! {
    static PARSER: RefCell<Parser> = RefCell::new(Parser::new());
}

/// This route, as the router and the scope check name it.
pub const PATH: &str = "/api/v1/webhooks/lead-events";

/// The one answer to every missing, malformed, unknown, revoked or mismatched
/// credential.
pub const INVALID_CREDENTIALS: &str = "invalid credentials: send Authorization: Bearer <api key>, or, for an organization that signs its requests, X-Setter-Signature: sha256=<hex HMAC-SHA256 of the raw body>";

/// The credential a request presents.
enum Credential {
    /// An API key that resolved to this org.
    ApiKey(OrgId),
    /// A signature to check against the body's org.
    Signature([u8; 32]),
}

/// A credential with what the registry says of it, for [`prepare`] to finish on a
/// blocking thread.
enum Checked {
    /// An API key of this org, which is in api-key mode.
    ApiKey(OrgId),
    /// A signature, the active signing keys of the body's org, and whether that org
    /// is in hmac mode.
    Signature {
        sig: [u8; 32],
        keys: SigningKeys,
        hmac_mode: bool,
    },
}

/// One rejected event.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RejectOut {
    /// Position in `events`, from 0.
    index: usize,
    /// `phoneE164` as sent (any JSON type; `null` when absent).
    #[serde(rename = "phoneE164")]
    #[schema(example = "not-a-phone")]
    phone: serde_json::Value,
    /// Why it was not stored, e.g. `invalid phoneE164`.
    #[schema(example = "invalid phoneE164")]
    reason: String,
}

/// The answer to an accepted call.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Accepted {
    #[schema(example = "accepted")]
    status: &'static str,
    /// Entries in `events`.
    received: usize,
    /// Events stored by this call.
    inserted: usize,
    /// Valid events whose key was already stored (or came earlier in this call).
    duplicates: usize,
    /// Events refused row by row.
    rejected: usize,
    /// The first 50 rejects, in input order.
    rejects: Vec<RejectOut>,
}

/// Preparer a batch of lead events.
///
/// Deduplicated on `(organizationId, phoneE164, eventType, occurredAt)`; a 200 means
/// every inserted row is durable.
#[utoipa::path(
    post,
    path = "/api/v1/webhooks/lead-events",
    tag = "lead events",
    request_body(content = super::openapi::LeadEventsRequest, content_type = "application/json"),
    params(("X-Setter-Signature" = Option<String>, Header, description = "sha256=<64 hex>: HMAC-SHA256 of the raw body, for organizations in hmac mode")),
    security(("api_key" = []), ("hmac_signature" = [])),
    responses(
        (status = 200, description = "Accepted: counts, and the first 50 rejected rows", body = Accepted),
        (status = 400, description = "Not a JSON object of the documented shape, nesting over 128 levels, a field twice, events not 1..=50000, eventType empty, blank, with control characters, an invalid escape or over 128 chars", body = ErrorBody),
        (status = 401, description = "Missing or invalid credentials (one text for every case)", body = ErrorBody),
        (status = 403, description = "organizationId is not the API key's organization", body = ErrorBody),
        (status = 408, description = "The body stalled longer than http.body_timeout", body = ErrorBody),
        (status = 413, description = "Body over 10 MB", body = ErrorBody),
        (status = 414, description = "Request target over 8 KB", body = ErrorBody),
        (status = 415, description = "Content-Type is not application/json", body = ErrorBody),
        (status = 431, description = "Too many or too large headers", body = ErrorBody),
        (status = 500, description = "The store refused the rows for good (a schema problem on the server); retrying will not help", body = ErrorBody),
        (status = 503, description = "Starting up, the store cannot write, too many bodies in flight, or (several processes) the raw partitions of some of the leads are moving between processes; retry after Retry-After", body = ErrorBody, headers(("Retry-After" = u32, description = "Seconds to wait"))),
    )
)]
pub(super) async fn post(State(s): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    match handle(s, headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

fn unauthorized() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, INVALID_CREDENTIALS)
}

fn bad_request(e: RequestError) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, e.to_string())
}

fn lookup_failed(e: crate::registry::RegistryError) -> ApiError {
    super::store_error(e)
}

async fn handle(s: AppState, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    let started = std::time::Instant::now();
    if !s.writer.is_ready() {
        return Err(ApiError::unavailable(
            "starting up: warming the dedup index from the store; retry shortly",
        ));
    }
    let credential = credential(&s.registry, &headers).await?;
    check_json(&headers)?;
    let body = body::read(
        &headers,
        body,
        MAX_BODY_BYTES,
        s.limits.body_timeout,
        &s.budget,
    )
    .await?;

    let checked = check(&s.registry, credential, &body.bytes).await?;
    let ingest = s.preparer.clone();
    let prepared = tokio::task::spawn_blocking(move || prepare(&ingest, checked, body))
        .await
        .map_err(|e| {
            super::incident(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the request's worker failed; nothing was stored",
                &e,
            )
        })??;

    let received = prepared.received;
    let rejected = prepared.rejected;
    let rejects = prepared
        .rejects
        .iter()
        .map(|r| RejectOut {
            index: r.index,
            phone: r.phone.clone(),
            reason: r.reason.to_string(),
        })
        .collect();
    let stored = match &s.routing {
        Some(router) => router.store(prepared).await.map_err(route_error)?,
        None => s
            .writer
            .store(prepared)
            .await
            .map_err(|e| store_failed(&e, false))?,
    };
    // Counted only once the batch is acknowledged: a refused call is retried whole.
    metrics::lead_batch(
        Source::Http,
        stored.inserted as u64,
        stored.duplicates as u64,
        rejected as u64,
        Some(started.elapsed()),
    );
    Ok(Json(Accepted {
        status: "accepted",
        received,
        inserted: stored.inserted,
        duplicates: stored.duplicates,
        rejected,
        rejects,
    })
    .into_response())
}

/// The answer to a batch the writer failed; `partly` when other parts of it were
/// stored.
fn store_failed(e: &Arc<StoreError>, partly: bool) -> ApiError {
    let what = if partly {
        "other parts of this request were stored and count as duplicates when it is sent again"
    } else {
        "nothing from this request was stored"
    };
    match &**e {
        // The store refused these rows for good (a ClickHouse type or range error): a
        // retry would be refused again, so no Retry-After.
        StoreError::Rejected { .. } => super::incident(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("the event store refused these rows; {what}, and a retry will be refused too: the server's store needs attention"),
            e,
        ),
        _ => super::incident(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("the event store is unavailable; {what}, retry it"),
            e,
        ),
    }
}

/// The answer to a batch split between processes that was not stored whole.
fn route_error(e: RouteError) -> ApiError {
    match e {
        RouteError::Moving {
            partitions,
            stored,
            any_stored: false,
        } => {
            debug_assert_eq!(stored.inserted + stored.duplicates, 0);
            ApiError::unavailable(format!(
                "the leads of raw partitions {partitions:?} are moving between processes (a rebalance) or warming up; nothing from this request was stored, retry it"
            ))
        }
        RouteError::Moving {
            partitions, stored, ..
        } => ApiError::unavailable(format!(
            "the leads of raw partitions {partitions:?} found no owner within http.forward_wait (a rebalance); the rest of this request was stored ({} inserted, {} duplicates) and counts as duplicates when it is sent again",
            stored.inserted, stored.duplicates
        )),
        RouteError::Store { error, partly } => store_failed(&error, partly),
        e @ RouteError::Owner { retry: true, .. } => super::incident(
            StatusCode::SERVICE_UNAVAILABLE,
            "the process that owns some of these leads could not store them; parts of this request may have been stored and count as duplicates when it is sent again, retry it",
            &e,
        ),
        e @ (RouteError::Owner { .. } | RouteError::Directory(_)) => super::incident(
            if matches!(e, RouteError::Directory(_)) {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            },
            "the leads of this request could not be handed to the processes that own them; parts of it may have been stored and count as duplicates when it is sent again",
            &e,
        ),
    }
}

/// Reads the credential headers. An API key is resolved here, before the body is read.
async fn credential(registry: &Registry, headers: &HeaderMap) -> Result<Credential, ApiError> {
    if let Some(v) = headers.get("x-setter-signature") {
        let hex_sig = v
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("sha256="))
            .unwrap_or("");
        let mut sig = [0u8; 32];
        if hex::decode_to_slice(hex_sig, &mut sig).is_err() {
            return Err(unauthorized());
        }
        return Ok(Credential::Signature(sig));
    }
    let token = super::auth::bearer_token(headers).ok_or_else(unauthorized)?;
    match registry.grant_for_api_key(token).await {
        Ok(Some(grant)) => {
            super::auth::check_scope(grant.scope, &axum::http::Method::POST, PATH)?;
            Ok(Credential::ApiKey(grant.org))
        }
        Ok(None) => Err(unauthorized()),
        Err(e) => Err(lookup_failed(e)),
    }
}

fn check_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if mime.eq_ignore_ascii_case("application/json")
        || (mime.starts_with("application/") && mime.ends_with("+json"))
    {
        Ok(())
    } else {
        let got = if ct.is_empty() {
            "none".to_owned()
        } else {
            format!("{ct:?}")
        };
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Type must be application/json, got {got}"),
        ))
    }
}

/// What the registry says of the credential: an API key of an org in hmac mode is
/// refused here; a signature's keys are read for [`prepare`] to check. Only the org is
/// read from a signed body, by a scan that builds nothing.
async fn check(
    registry: &Registry,
    credential: Credential,
    body: &bytes::Bytes,
) -> Result<Checked, ApiError> {
    match credential {
        Credential::Signature(sig) => {
            // Up to 10 MB to scan: off the async workers.
            let scanned = body.clone();
            let org = tokio::task::spawn_blocking(move || find_organization_id(&scanned))
                .await
                .map_err(|e| {
                    super::incident(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "the request's worker failed; nothing was stored",
                        &e,
                    )
                })?
                .map_err(bad_request)?;
            let mode = registry.auth_mode(org).await.map_err(lookup_failed)?;
            let keys = registry.signing_keys(org).await.map_err(lookup_failed)?;
            Ok(Checked::Signature {
                sig,
                keys,
                hmac_mode: mode == Some(AuthMode::Hmac),
            })
        }
        Credential::ApiKey(key_org) => {
            if registry.auth_mode(key_org).await.map_err(lookup_failed)? == Some(AuthMode::Hmac) {
                return Err(unauthorized());
            }
            Ok(Checked::ApiKey(key_org))
        }
    }
}

/// Verifies a signed body, then parses, authorizes against the body's org, validates
/// and normalizes. CPU-bound: runs on a blocking thread.
fn prepare(ingest: &Preparer, checked: Checked, body: ReadBody) -> Result<Prepared, ApiError> {
    let bytes = &body.bytes[..];
    let credential = match checked {
        Checked::Signature {
            sig,
            keys,
            hmac_mode,
        } => {
            if !(keys.verify(bytes, &sig) && hmac_mode) {
                return Err(unauthorized());
            }
            Credential::Signature(sig)
        }
        Checked::ApiKey(org) => Credential::ApiKey(org),
    };
    PARSER.with_borrow_mut(|parser| {
        let raw = Preparer::parse(parser, bytes).map_err(bad_request)?;
        let org = Preparer::organization_id(&raw).map_err(bad_request)?;
        if let Credential::ApiKey(key_org) = credential {
            if key_org != org {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    format!("API key belongs to organization {key_org}, not organizationId {org}"),
                ));
            }
        }
        ingest.prepare(raw).map_err(bad_request)
    })
}
