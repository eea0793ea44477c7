//! `GET /api/v1/stats`: what the console's Overview draws, for scripts too: lead
//! events stored and deliveries finished per minute, deliveries pending, endpoints
//! failing now.

use super::auth::ApiKeyOrg;
use super::deliveries::instant_ms;
use super::{bad, store_error, ApiError, AppState, ErrorBody};
use crate::store::reads::MAX_STATS_WINDOW_MS;
use crate::writer::now_ms;
use axum::extract::{Query, State};
use axum::Json;
use leadstream_pipeline::time::format_rfc3339_ms;
use serde::Serialize;

/// One minute.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Minute {
    /// The minute's start (UTC).
    #[schema(example = "2026-12-06T03:00:00.000Z")]
    minute: String,
    /// Lead events stored in it (HTTP and Kafka; duplicates and rejects are not stored).
    lead_events: u64,
    /// Deliveries that succeeded in it (their last update).
    deliveries_succeeded: u64,
    /// Deliveries that failed for good in it (their last update).
    deliveries_failed: u64,
}

/// The sums over the window.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    lead_events: u64,
    deliveries_succeeded: u64,
    deliveries_failed: u64,
}

/// An endpoint failing now: its last attempts failed, or the engine disabled it.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailingEndpoint {
    id: i64,
    url: String,
    enabled: bool,
    /// Why the engine disabled it, when it did.
    disabled_reason: Option<String>,
    /// Start of its current run of failed attempts.
    failing_since: Option<String>,
}

/// The answer of `GET /api/v1/stats`.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// The window's start: `since` rounded down to the minute.
    since: String,
    /// Now, the window's end.
    until: String,
    /// One entry per minute of the window, oldest first, empty minutes included.
    minutes: Vec<Minute>,
    totals: Totals,
    /// The organization's deliveries waiting for an attempt or a retry now.
    pending_deliveries: u64,
    failing_endpoints: Vec<FailingEndpoint>,
}

/// Lead events stored and deliveries finished per minute since `since` (an hour ago
/// by default, at most 24 hours), deliveries pending and endpoints failing now.
#[utoipa::path(get, path = "/api/v1/stats", tag = "stats", security(("api_key" = [])),
    params(("since" = Option<super::deliveries::InstantParam>, Query, description = "RFC 3339 start of the window, at most 24 hours ago; empty or absent: an hour ago")),
    responses(
        (status = 200, description = "Per-minute counts and what is pending or failing now", body = Stats),
        (status = 400, description = "since is not an RFC 3339 instant, is in the future, or is more than 24 hours ago", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "The key's scope (ingest) may not read", body = ErrorBody),
        (status = 500, description = "Internal error: the message names an incident under which the server logged the cause", body = ErrorBody),
        (status = 503, description = "A store cannot answer now; retry", body = ErrorBody, headers(("Retry-After" = u32, description = "Seconds to wait"))),
    ))]
pub async fn get(
    State(s): State<AppState>,
    ApiKeyOrg(org): ApiKeyOrg,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<Stats>, ApiError> {
    let q = super::query_params(pairs, &["since"])?;
    let until_ms = now_ms();
    let since_ms = match q.get("since").map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => until_ms - 3_600_000,
        Some(v) => {
            let at = instant_ms("since", v)?;
            if at > until_ms {
                return Err(bad(format!("since {v:?} is in the future")));
            }
            if until_ms - at > MAX_STATS_WINDOW_MS {
                return Err(bad(format!(
                    "since {v:?} is more than 24 hours ago: the window is at most 24 hours (and 5 minutes for clocks that differ)"
                )));
            }
            at
        }
    };
    let since_ms = since_ms.div_euclid(60_000) * 60_000;
    let reads = s.events.clone();
    let stored =
        tokio::task::spawn_blocking(move || reads.stored_per_minute(org, since_ms, until_ms))
            .await
            .map_err(|_| store_error("the event reader stopped"))?
            .map_err(store_error)?;
    let finished = s
        .engine
        .finished_per_minute(org, since_ms, until_ms)
        .await
        .map_err(store_error)?;
    let pending_deliveries = s.engine.pending_of(org).await.map_err(store_error)?;
    let failing_endpoints = s
        .engine
        .endpoints()
        .list(org, None)
        .await
        .map_err(store_error)?
        .iter()
        .filter(|e| !e.enabled || e.failing_since_ms.is_some())
        .map(|e| FailingEndpoint {
            id: e.id,
            url: e.url.clone(),
            enabled: e.enabled,
            disabled_reason: e.disabled_reason.clone(),
            failing_since: e.failing_since_ms.map(format_rfc3339_ms),
        })
        .collect();
    let mut totals = Totals {
        lead_events: 0,
        deliveries_succeeded: 0,
        deliveries_failed: 0,
    };
    let minutes = stored
        .iter()
        .enumerate()
        .map(|(i, &lead_events)| {
            let (ok, failed) = finished.get(i).copied().unwrap_or_default();
            totals.lead_events += lead_events;
            totals.deliveries_succeeded += ok;
            totals.deliveries_failed += failed;
            Minute {
                minute: format_rfc3339_ms(since_ms + i as i64 * 60_000),
                lead_events,
                deliveries_succeeded: ok,
                deliveries_failed: failed,
            }
        })
        .collect();
    Ok(Json(Stats {
        since: format_rfc3339_ms(since_ms),
        until: format_rfc3339_ms(until_ms),
        minutes,
        totals,
        pending_deliveries,
        failing_endpoints,
    }))
}
