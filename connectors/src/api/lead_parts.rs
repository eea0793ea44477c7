//! `POST /internal/v1/lead-parts`: a part of a lead-events batch another process
//! handed to this one, the owner of the part's raw partitions
//! ([`crate::routing`]). Authenticated by the signature of the body with the key the
//! processes share (made in the shared database), not by an API key: the sender
//! already authenticated, validated and normalized the batch. Not for clients.

use super::body;
use super::{ApiError, AppState, ErrorBody};
use crate::routing::{wire, Counts, ReceiveError};
use crate::store::StoreError;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

/// Store a part of a lead-events batch (between leadstream processes).
///
/// Sent by a process that received a batch to the process that owns the raw
/// partitions of the part's leads. The body is the part's rows in leadstream's own
/// encoding; `leadstream-part-signature` is the hex HMAC-SHA256 of the body with the
/// key the processes share. Answers 404 on a process that does not split batches
/// (one process, or without Kafka, ClickHouse and `database.url`).
#[utoipa::path(
    post,
    path = "/internal/v1/lead-parts",
    tag = "internal",
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    params(("leadstream-part-signature" = String, Header, description = "hex HMAC-SHA256 of the body with the processes' shared key")),
    responses(
        (status = 200, description = "Stored: the part's counts", body = inline(PartCounts)),
        (status = 400, description = "Not a part this process can read (wrong encoding or partition count)", body = ErrorBody),
        (status = 401, description = "Missing or wrong signature", body = ErrorBody),
        (status = 404, description = "This process does not split batches between processes", body = ErrorBody),
        (status = 408, description = "The body stalled longer than http.body_timeout", body = ErrorBody),
        (status = 409, description = "This process does not own some of the part's raw partitions now: find their owner", body = ErrorBody),
        (status = 413, description = "Body over 21 MB", body = ErrorBody),
        (status = 500, description = "The store refused the rows for good", body = ErrorBody),
        (status = 503, description = "The store cannot write now, or too many bodies in flight; retry after Retry-After", body = ErrorBody, headers(("Retry-After" = u32, description = "Seconds to wait"))),
    )
)]
pub(super) async fn post(State(s): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    match handle(s, headers, body).await {
        Ok(counts) => Json(counts).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The counts of a stored part.
#[derive(serde::Serialize, utoipa::ToSchema)]
struct PartCounts {
    inserted: usize,
    duplicates: usize,
}

async fn handle(s: AppState, headers: HeaderMap, body: Body) -> Result<Counts, ApiError> {
    let bad_signature = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing or wrong leadstream-part-signature",
        )
    };
    let signature = headers
        .get(wire::SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() == 64)
        .ok_or_else(bad_signature)?
        .to_owned();
    let Some(router) = s.routing.clone() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "this process does not split lead-event batches between processes (it needs Kafka, ClickHouse and database.url)",
        ));
    };
    let body = body::read(
        &headers,
        body,
        wire::MAX_PART_BYTES,
        s.limits.body_timeout,
        &s.budget,
    )
    .await?;
    match router.receive(body.bytes.clone(), signature).await {
        Ok(stored) => Ok(Counts {
            inserted: stored.inserted,
            duplicates: stored.duplicates,
        }),
        Err(ReceiveError::Wire(wire::WireError::Signature)) => Err(bad_signature()),
        Err(e @ (ReceiveError::Wire(_) | ReceiveError::PartitionCount { .. })) => {
            Err(ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))
        }
        Err(e @ ReceiveError::NotOwned(_)) => {
            Err(ApiError::new(StatusCode::CONFLICT, e.to_string()))
        }
        Err(ReceiveError::Store(e)) => Err(match &*e {
            StoreError::Rejected { .. } => super::incident(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the event store refused these rows; nothing from this part was stored",
                &e,
            ),
            _ => super::incident(
                StatusCode::SERVICE_UNAVAILABLE,
                "the event store is unavailable; nothing from this part was stored",
                &e,
            ),
        }),
    }
}
