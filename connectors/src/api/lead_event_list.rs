//! `GET /api/v1/lead-events`: one lead's stored events, newest first, for the
//! console's Contacts page and for scripts.

use super::auth::ApiKeyOrg;
use super::{bad, cursor, store_error, ApiError, AppState, ErrorBody};
use crate::store::reads::{Before, LeadEventsQuery};
use axum::extract::{Query, State};
use axum::Json;
use leadstream_pipeline::time::{format_rfc3339_ms, format_rfc3339_short_us};
use serde::Serialize;
use serde_json::value::RawValue;

/// One stored lead event.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LeadEventOut {
    #[schema(example = "+15551234567")]
    phone_e164: String,
    #[schema(example = "mastery_purchase")]
    event_type: String,
    /// The instant as stored (UTC, microsecond precision).
    #[schema(example = "2026-05-12T18:34:00Z")]
    occurred_at: String,
    /// The metadata as sent (minified), or null.
    #[schema(value_type = Option<Object>)]
    metadata: Option<Box<RawValue>>,
    /// When leadstream stored it.
    ingested_at: String,
}

/// A page of a lead's events.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LeadEventPage {
    data: Vec<LeadEventOut>,
    /// Pass as `cursor` for the next (older) page; null on the last page.
    next_cursor: Option<String>,
}

/// One lead's stored events, newest `occurredAt` first.
#[utoipa::path(get, path = "/api/v1/lead-events", tag = "lead events", security(("api_key" = [])),
    params(
        ("phone" = String, Query, description = "The lead's phone, normalized as ingest does (+15551234567)"),
        ("eventType" = Option<String>, Query, description = "Only this event type (exact, case-sensitive); empty: any"),
        ("limit" = Option<u32>, Query, description = "Page size, 1 to 1000 (default 50)", minimum = 1, maximum = 1000),
        ("cursor" = Option<String>, Query, description = "nextCursor of the previous page"),
    ),
    responses(
        (status = 200, description = "A page, newest first", body = LeadEventPage),
        (status = 400, description = "phone missing or not a phone number, or another parameter not valid (named)", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "The key's scope (ingest) may not read", body = ErrorBody),
        (status = 500, description = "Internal error: the message names an incident under which the server logged the cause", body = ErrorBody),
        (status = 503, description = "The event store cannot answer now; retry", body = ErrorBody, headers(("Retry-After" = u32, description = "Seconds to wait"))),
    ))]
pub async fn list(
    State(s): State<AppState>,
    ApiKeyOrg(org): ApiKeyOrg,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<LeadEventPage>, ApiError> {
    let q = super::query_params(pairs, &["phone", "eventType", "limit", "cursor"])?;
    let raw = q
        .get("phone")
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
        .ok_or_else(|| bad("phone is required: the lead's phone, e.g. ?phone=%2B15551234567"))?;
    let phone = s.preparer.normalizer().normalize(raw).ok_or_else(|| {
        bad(format!(
            "phone {raw:?} is not a phone number libphonenumber accepts, so no lead event is stored under it (E.164, e.g. +14155550100)"
        ))
    })?;
    let event_type = q
        .get("eventType")
        .filter(|t| !t.is_empty())
        .map(|t| match super::deliveries::event_type_problem(t) {
            Some(problem) => Err(bad(format!("eventType: {problem}"))),
            None => Ok(t.clone()),
        })
        .transpose()?;
    let (limit, before) = cursor::page_params::<Before>(&q)?;
    let query = LeadEventsQuery {
        org,
        phone,
        event_type,
        before,
        limit,
    };
    let reads = s.events.clone();
    let mut rows = tokio::task::spawn_blocking(move || reads.lead_events(&query))
        .await
        .map_err(|_| store_error("the event reader stopped"))?
        .map_err(store_error)?;
    let next_cursor = cursor::cut(&mut rows, limit, |r| Before {
        occurred_at_us: r.occurred_at_us,
        event_type: r.event_type.clone(),
    });
    let phone_e164 = phone.to_string();
    let data = rows
        .into_iter()
        .map(|r| LeadEventOut {
            phone_e164: phone_e164.clone(),
            event_type: r.event_type,
            occurred_at: format_rfc3339_short_us(r.occurred_at_us),
            // Stored as the minified JSON it was sent as; anything else is not sent.
            metadata: r.metadata.and_then(|m| RawValue::from_string(m).ok()),
            ingested_at: format_rfc3339_ms(r.ingested_at_ms),
        })
        .collect();
    Ok(Json(LeadEventPage { data, next_cursor }))
}
