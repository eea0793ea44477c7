//! `POST /api/v1/webhooks/lead-events`.

use super::{ApiError, AppState, MAX_BODY_BYTES};
use crate::registry::AuthMode;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use http_body_util::BodyExt;
use leadstream_pipeline::{Ingest, OrgId, Parser, Prepared, RequestError};
use serde::Serialize;
use std::cell::RefCell;

thread_local! {
    static PARSER: RefCell<Parser> = RefCell::new(Parser::new());
}

/// The credential a request presents.
enum Credential {
    /// An API key that resolved to this org.
    ApiKey(OrgId),
    /// A signature to check against the body's org once it is parsed.
    Signature([u8; 32]),
}

#[derive(Serialize)]
struct RejectOut {
    index: usize,
    #[serde(rename = "phoneE164")]
    phone: serde_json::Value,
    reason: String,
}

#[derive(Serialize)]
struct Accepted {
    status: &'static str,
    received: usize,
    inserted: usize,
    duplicates: usize,
    rejected: usize,
    rejects: Vec<RejectOut>,
}

pub(super) async fn post(State(s): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    match handle(s, headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

fn unauthorized(m: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, m)
}

fn bad_request(e: RequestError) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, e.to_string())
}

async fn handle(s: AppState, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    if !s.ingestor.is_ready() {
        return Err(ApiError::unavailable(
            "starting up: warming the dedup index from the store; retry shortly",
        ));
    }
    let credential = credential(&s, &headers)?;
    check_json(&headers)?;
    let bytes = read_body(&headers, body).await?;

    let registry = s.registry.clone();
    let ingest = s.ingest.clone();
    let prepared =
        tokio::task::spawn_blocking(move || prepare(&registry, &ingest, credential, bytes))
            .await
            .map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("request worker failed: {e}"),
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
    let stored = s.ingestor.store(prepared).await.map_err(|e| {
        ApiError::unavailable(format!(
            "{e}; nothing from this request was stored, retry it"
        ))
    })?;
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

/// Reads the credential headers. An API key is resolved here, before the body is read.
fn credential(s: &AppState, headers: &HeaderMap) -> Result<Credential, ApiError> {
    if let Some(v) = headers.get("x-setter-signature") {
        let v = v.to_str().unwrap_or("");
        let hex_sig = v.strip_prefix("sha256=").unwrap_or("");
        let mut sig = [0u8; 32];
        if hex::decode_to_slice(hex_sig, &mut sig).is_err() {
            return Err(unauthorized(
                "X-Setter-Signature must be sha256=<64 hex digits of HMAC-SHA256 of the raw body>",
            ));
        }
        return Ok(Credential::Signature(sig));
    }
    let Some(v) = headers.get(header::AUTHORIZATION) else {
        return Err(unauthorized(
            "missing credentials: send Authorization: Bearer <api key>, or X-Setter-Signature: sha256=<hex> for organizations in HMAC mode",
        ));
    };
    let v = v.to_str().unwrap_or("");
    let token = match v.split_once(' ') {
        Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") && !t.trim().is_empty() => {
            t.trim()
        }
        _ => return Err(unauthorized("Authorization must be Bearer <api key>")),
    };
    match s.registry.org_for_api_key(token) {
        Ok(Some(org)) => Ok(Credential::ApiKey(org)),
        Ok(None) => Err(unauthorized("invalid or revoked API key")),
        Err(e) => Err(ApiError::unavailable(format!(
            "credential lookup failed: {e}"
        ))),
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

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "request body over 10 MB (10485760 bytes); split the batch",
    )
}

/// Reads the body, refusing as soon as it is known to exceed the limit: from
/// `Content-Length` before reading, or while streaming a chunked body. Nothing past
/// the limit is kept.
async fn read_body(headers: &HeaderMap, mut body: Body) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        discard(&mut body).await;
        return Err(too_large());
    }
    let mut buf = bytes::BytesMut::with_capacity(declared.map_or(64 * 1024, |n| n as usize));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("failed reading the request body: {e}"),
            )
        })?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > MAX_BODY_BYTES {
                drop(buf);
                discard(&mut body).await;
                return Err(too_large());
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

/// Reads and drops what a client keeps sending after its request was refused, for a
/// bounded time and amount, so that it sees the 413 instead of a connection reset
/// (closing a socket with unread input makes the kernel send RST). Memory stays flat.
async fn discard(body: &mut Body) {
    const MAX_DISCARD: usize = 64 * 1024 * 1024;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut seen = 0usize;
    while seen < MAX_DISCARD {
        let next = tokio::time::timeout(std::time::Duration::from_millis(500), body.frame());
        match tokio::time::timeout_at(deadline, next).await {
            Ok(Ok(Some(Ok(frame)))) => seen += frame.data_ref().map_or(0, |d| d.len()),
            _ => return,
        }
    }
}

/// Parses, authorizes against the body's org, validates and normalizes. CPU-bound:
/// runs on a blocking thread with that thread's reusable parser.
fn prepare(
    registry: &crate::registry::Registry,
    ingest: &Ingest,
    credential: Credential,
    bytes: Bytes,
) -> Result<Prepared, ApiError> {
    // simd-json parses in place; a signature needs the raw bytes too, so then the
    // parse works on a copy (`Vec::from` takes the allocation without copying when
    // nothing else holds it).
    let raw_for_sig = matches!(credential, Credential::Signature(_)).then(|| bytes.clone());
    let mut buf: Vec<u8> = Vec::from(bytes);
    PARSER.with_borrow_mut(|parser| {
        let raw = Ingest::parse(parser, &mut buf).map_err(bad_request)?;
        let org = Ingest::organization_id(&raw).map_err(bad_request)?;
        let mode = registry.auth_mode(org).map_err(|e| ApiError::unavailable(format!("credential lookup failed: {e}")))?;
        match credential {
            Credential::ApiKey(key_org) if key_org != org => {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    format!("API key belongs to organization {key_org}, not organizationId {org}"),
                ))
            }
            Credential::ApiKey(_) if mode == Some(AuthMode::Hmac) => {
                return Err(unauthorized(format!("organization {org} authenticates with HMAC: send X-Setter-Signature: sha256=<hex>")))
            }
            Credential::ApiKey(_) => {}
            Credential::Signature(sig) => {
                if mode == Some(AuthMode::ApiKey) {
                    return Err(unauthorized(format!("organization {org} authenticates with API keys: send Authorization: Bearer <api key>")));
                }
                let raw = raw_for_sig.as_deref().unwrap_or_default();
                let ok = mode.is_some()
                    && registry.verify_signature(org, raw, &sig).map_err(|e| ApiError::unavailable(format!("credential lookup failed: {e}")))?;
                if !ok {
                    return Err(unauthorized(format!(
                        "X-Setter-Signature does not match any active signing key of organization {org}"
                    )));
                }
            }
        }
        ingest.prepare(raw).map_err(bad_request)
    })
}
