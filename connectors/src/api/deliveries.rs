//! Publishing (`POST /api/v1/outbound-events`) and the attempt log
//! (`/api/v1/deliveries`). API-key authenticated.

use super::auth::ApiKeyOrg;
use super::body::{parse_json, read_small};
use super::{bad, store_error, ApiError, AppState, ErrorBody};
use crate::delivery::deliveries::{DeliveryDetail, DeliveryRow, DeliveryState, ListQuery, SortKey};
use crate::delivery::{PublishError, RetryAnswer, MAX_PAYLOAD_BYTES};
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use leadstream_pipeline::time::parse_rfc3339_us;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::openapi::schema::{
    KnownFormat, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, Type,
};
use utoipa::openapi::RefOr;

/// Largest request body of a publish: the payload's 256 KB and the envelope.
const MAX_PUBLISH_BODY: usize = MAX_PAYLOAD_BYTES + 4096;
/// Longest event type.
pub const MAX_EVENT_TYPE: usize = 128;
/// What [`event_type_problem`] accepts, as a JSON Schema pattern: not blank, no
/// control characters (U+0000–U+001F, U+007F–U+009F).
pub const EVENT_TYPE_PATTERN: &str = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$";
/// Longest idempotency key.
const MAX_IDEMPOTENCY_KEY: usize = 256;
/// Page size of a listing by default and at most.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 1000;

/// What is wrong with `t` as an event type, if anything.
pub fn event_type_problem(t: &str) -> Option<String> {
    if t.trim().is_empty() {
        return Some("an event type is empty or blank".into());
    }
    let n = t.chars().count();
    if n > MAX_EVENT_TYPE {
        return Some(format!("event type is {n} chars, at most {MAX_EVENT_TYPE}"));
    }
    if t.chars().any(char::is_control) {
        return Some(format!("event type {t:?} contains control characters"));
    }
    None
}

/// The body of a publish.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishIn<'a> {
    /// What happened, e.g. `appointment_booked`; endpoints subscribe by it
    /// (case-sensitive). 1 to 128 characters.
    #[serde(rename = "eventType")]
    #[schema(
        value_type = String,
        required = true,
        example = "appointment_booked",
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    event_type: Option<String>,
    /// A JSON object: the exact body every endpoint receives. At most 256 KB encoded.
    #[serde(borrow)]
    #[schema(value_type = Object)]
    payload: Option<&'a RawValue>,
    /// A repeat within 24 h answers the first call's `id` and creates nothing. No NUL
    /// character (`\u0000`).
    #[serde(rename = "idempotencyKey")]
    #[schema(
        min_length = 1,
        max_length = 256,
        pattern = "^[^\\x00]+$",
        example = "order-9F2-booked"
    )]
    idempotency_key: Option<String>,
}

/// What a publish created.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PublishOut {
    /// The event's id (the first call's, for a repeated idempotency key).
    #[schema(example = "evt_01jd8x6k3v9q2w7e5r4t1y0u8i")]
    id: String,
    #[serde(rename = "eventType")]
    event_type: String,
    /// Deliveries created: one per enabled endpoint subscribed to `eventType` (0 for a
    /// repeat).
    deliveries: usize,
}

/// Publish an event: one delivery per enabled endpoint of the org subscribed to its
/// type, each signed, retried and logged. Answered once the deliveries are durable.
#[utoipa::path(post, path = "/api/v1/outbound-events", tag = "deliveries", security(("api_key" = [])),
    request_body = PublishIn,
    responses(
        (status = 202, description = "Queued for delivery", body = PublishOut),
        (status = 400, description = "eventType or payload missing or malformed (the message says which)", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 408, description = "The request body made no progress for http.body_timeout (30 s)", body = ErrorBody, headers(("Connection" = String, description = "close"))),
        (status = 413, description = "payload over 256 KB encoded, or the whole request body over 260 KB", body = ErrorBody, headers(("Connection" = String, description = "close"))),
        (status = 500, description = "Internal error: the message names an incident under which the server logged the cause", body = ErrorBody),
        (status = 503, description = "The credential registry cannot be read, or too many request bodies are in flight; retry", body = ErrorBody, headers(("Retry-After" = u32, description = "Seconds to wait"))),
    ))]
pub async fn publish(
    State(s): State<AppState>,
    ApiKeyOrg(org): ApiKeyOrg,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_small(&s, &headers, body, MAX_PUBLISH_BODY).await?;
    let req: PublishIn<'_> = parse_json(&body.bytes)?;
    let event_type = req.event_type.ok_or_else(|| {
        bad("eventType is missing: send {\"eventType\": \"...\", \"payload\": {...}}")
    })?;
    if let Some(why) = event_type_problem(&event_type) {
        return Err(bad(format!("eventType: {why}")));
    }
    let payload = req
        .payload
        .ok_or_else(|| {
            bad("payload is missing: send the JSON object every endpoint should receive")
        })?
        .get();
    if !payload.starts_with('{') {
        return Err(bad(format!(
            "payload must be a JSON object, not {}",
            payload.chars().take(40).collect::<String>()
        )));
    }
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "payload is {} bytes encoded, at most {MAX_PAYLOAD_BYTES} (256 KB): send a smaller object, e.g. ids the receiver can look up",
                payload.len()
            ),
        ));
    }
    if let Some(k) = &req.idempotency_key {
        if k.is_empty() || k.chars().count() > MAX_IDEMPOTENCY_KEY || k.contains('\0') {
            return Err(bad(format!(
                "idempotencyKey must be 1 to {MAX_IDEMPOTENCY_KEY} characters, without the NUL character (\\u0000)"
            )));
        }
    }
    // The payload's exact bytes: a slice of the body, no re-encoding.
    let start = payload.as_ptr() as usize - body.bytes.as_ptr() as usize;
    let payload: Bytes = body.bytes.slice(start..start + payload.len());
    let published = s
        .engine
        .publish(org, &event_type, payload, req.idempotency_key)
        .await
        .map_err(|e| match e {
            PublishError::Store(e) => store_error(e),
        })?;
    Ok((
        StatusCode::ACCEPTED,
        Json(PublishOut {
            id: published.event_id,
            event_type,
            deliveries: published.jobs.len(),
        }),
    )
        .into_response())
}

/// A page of deliveries.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DeliveryPage {
    data: Vec<DeliveryRow>,
    /// Pass as `cursor` for the next page; `null` on the last.
    #[serde(rename = "nextCursor")]
    next_cursor: Option<String>,
}

/// Which page a cursor continues: the listing's order and the last row's position.
#[derive(Serialize, Deserialize)]
struct Cursor {
    sort: String,
    desc: bool,
    value: i64,
    seq: i64,
}

pub(super) fn instant_ms(field: &str, text: &str) -> Result<i64, ApiError> {
    parse_rfc3339_us(text)
        .map(|us| us.div_euclid(1000))
        .ok_or_else(|| {
            bad(format!(
                "{field} {text:?} is not an RFC 3339 instant like 2026-06-01T00:00:00Z"
            ))
        })
}

/// A query parameter that is an RFC 3339 instant or, empty, no bound.
pub struct InstantParam;

impl utoipa::PartialSchema for InstantParam {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .max_length(Some(0)),
            )
            .description(Some(
                "An RFC 3339 instant, e.g. 2026-06-01T00:00:00Z; empty: no bound",
            ))
            .into()
    }
}

impl utoipa::ToSchema for InstantParam {}

/// List deliveries (newest first by default), filtered and sorted; keyset cursors
/// stay correct while deliveries are added.
#[utoipa::path(get, path = "/api/v1/deliveries", tag = "deliveries", security(("api_key" = [])),
    params(
        ("status" = Option<String>, Query, description = "pending, succeeded or failed; empty: any", pattern = "^(pending|succeeded|failed)?$"),
        ("eventType" = Option<String>, Query, description = "Only this event type (exact, case-sensitive); empty: any"),
        ("endpointId" = Option<i64>, Query, description = "Only deliveries to this endpoint", minimum = -9223372036854775808_i64, maximum = 9223372036854775807_i64),
        ("since" = Option<InstantParam>, Query, description = "Created at or after this RFC 3339 instant; empty: no bound"),
        ("until" = Option<InstantParam>, Query, description = "Created at or before this RFC 3339 instant; empty: no bound"),
        ("sort" = Option<String>, Query, description = "createdAt (default), updatedAt, attempts or lastStatus; empty: the default", pattern = "^(createdAt|updatedAt|attempts|lastStatus)?$"),
        ("order" = Option<String>, Query, description = "desc (default) or asc; empty: the default", pattern = "^(asc|desc)?$"),
        ("limit" = Option<u32>, Query, description = "Page size, 1 to 1000 (default 50)", minimum = 1, maximum = 1000),
        ("cursor" = Option<String>, Query, description = "nextCursor of the previous page"),
    ),
    responses(
        (status = 200, description = "A page", body = DeliveryPage),
        (status = 400, description = "A parameter is not valid (the message names it)", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 500, description = "Internal error: the message names an incident under which the server logged the cause", body = ErrorBody),
        (status = 503, description = "The credential registry cannot be read; retry", body = ErrorBody, headers(("Retry-After" = u32, description = "Seconds to wait"))),
    ))]
pub async fn list(
    State(s): State<AppState>,
    ApiKeyOrg(org): ApiKeyOrg,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<DeliveryPage>, ApiError> {
    let q = super::query_params(
        pairs,
        &[
            "status",
            "eventType",
            "endpointId",
            "since",
            "until",
            "sort",
            "order",
            "limit",
            "cursor",
        ],
    )?;
    let get = |k: &str| q.get(k).map(String::as_str).filter(|v| !v.is_empty());
    // Like limit, an empty endpointId is not an integer (the document says so).
    let endpoint_id = q
        .get("endpointId")
        .map(|v| {
            v.parse::<i64>()
                .map_err(|_| bad(format!("endpointId {v:?} is not an integer")))
        })
        .transpose()?;
    let mut page = ListPage::parse(org, &q, MAX_LIMIT)?;
    page.query.endpoint_id = endpoint_id;
    page.query.event_type = get("eventType").map(str::to_owned);
    page.query.since_ms = get("since").map(|v| instant_ms("since", v)).transpose()?;
    page.query.until_ms = get("until").map(|v| instant_ms("until", v)).transpose()?;
    let (rows, next_cursor) = page.run(&s).await?;
    Ok(Json(DeliveryPage {
        data: rows,
        next_cursor,
    }))
}

/// A listing's `status`, `sort`, `order`, `limit` and `cursor` (the delivery log and
/// an action's log share them), as a query of the log.
pub(super) struct ListPage {
    pub query: ListQuery,
    sort_text: String,
}

impl ListPage {
    /// Reads the parameters from `q` (already checked for unknown and repeated ones).
    ///
    /// # Errors
    /// 400 naming the parameter that is not valid.
    pub fn parse(
        org: leadstream_pipeline::OrgId,
        q: &std::collections::HashMap<String, String>,
        max_limit: usize,
    ) -> Result<Self, ApiError> {
        let get = |k: &str| q.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let state = get("status")
            .map(|v| {
                DeliveryState::parse(v).ok_or_else(|| {
                    bad(format!(
                        "status {v:?} is not one of pending, succeeded, failed"
                    ))
                })
            })
            .transpose()?;
        let sort_text = get("sort").unwrap_or("createdAt");
        let sort = SortKey::parse(sort_text).ok_or_else(|| {
            bad(format!(
                "sort {sort_text:?} is not one of createdAt, updatedAt, attempts, lastStatus"
            ))
        })?;
        let descending = match get("order").unwrap_or("desc") {
            "desc" => true,
            "asc" => false,
            other => return Err(bad(format!("order {other:?} is not asc or desc"))),
        };
        // An empty limit is not a number (the document says integer), unlike the
        // empty filters, which mean "any".
        let limit = match q.get("limit").map(String::as_str) {
            None => DEFAULT_LIMIT.min(max_limit),
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (1..=max_limit).contains(&n) => n,
                _ => {
                    return Err(bad(format!(
                        "limit {v:?} is not an integer from 1 to {max_limit}"
                    )))
                }
            },
        };
        let after = match get("cursor") {
            None => None,
            Some(text) => {
                let c: Cursor = super::cursor::decode(text)?;
                if c.sort != sort_text || c.desc != descending {
                    return Err(bad(format!(
                        "cursor belongs to a listing sorted by {} {}: repeat that sort and order with it",
                        c.sort,
                        if c.desc { "desc" } else { "asc" }
                    )));
                }
                Some((c.value, c.seq))
            }
        };
        Ok(ListPage {
            query: ListQuery {
                org,
                state,
                event_type: None,
                endpoint_id: None,
                since_ms: None,
                until_ms: None,
                sort,
                descending,
                limit,
                after,
            },
            sort_text: sort_text.to_owned(),
        })
    }

    /// The page's rows and the cursor of the next page (`None` on the last).
    ///
    /// # Errors
    /// 500 when the log cannot be read.
    pub async fn run(self, s: &AppState) -> Result<(Vec<DeliveryRow>, Option<String>), ApiError> {
        let (sort, descending) = (self.query.sort, self.query.descending);
        let (rows, more) = s.engine.list(self.query).await.map_err(store_error)?;
        let next_cursor = more.then(|| {
            let last = rows.last().expect("a full page has a last row");
            super::cursor::encode(&Cursor {
                sort: self.sort_text.clone(),
                desc: descending,
                value: sort.value(last),
                seq: last.seq,
            })
        });
        Ok((rows, next_cursor))
    }
}

/// One delivery with its payload and every attempt.
#[utoipa::path(get, path = "/api/v1/deliveries/{id}", tag = "deliveries", security(("api_key" = [])),
    params(("id" = String, Path, description = "The delivery id (`webhook-id`)")),
    responses(
        (status = 200, description = "The delivery", body = DeliveryDetail),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such delivery of this organization", body = ErrorBody),
        (status = 500, description = "Internal error: the message names an incident under which the server logged the cause", body = ErrorBody),
        (status = 503, description = "The credential registry cannot be read; retry", body = ErrorBody, headers(("Retry-After" = u32, description = "Seconds to wait"))),
    ))]
pub async fn get_one(
    State(s): State<AppState>,
    ApiKeyOrg(org): ApiKeyOrg,
    Path(id): Path<String>,
) -> Result<Json<DeliveryDetail>, ApiError> {
    match s.engine.get(org, id.clone()).await.map_err(store_error)? {
        Some(d) => Ok(Json(d)),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no delivery {id:?} in this organization"),
        )),
    }
}

/// `{id, state}` of a retried delivery.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RetryOut {
    id: String,
    #[schema(example = "pending")]
    state: &'static str,
}

/// One more attempt now, also after a final failure (not while one is pending).
#[utoipa::path(post, path = "/api/v1/deliveries/{id}/retry", tag = "deliveries", security(("api_key" = [])),
    params(("id" = String, Path, description = "The delivery id")),
    responses(
        (status = 202, description = "One attempt queued", body = RetryOut),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such delivery of this organization", body = ErrorBody),
        (status = 409, description = "The delivery is still pending", body = ErrorBody),
        (status = 500, description = "Internal error: the message names an incident under which the server logged the cause", body = ErrorBody),
        (status = 503, description = "The credential registry cannot be read; retry", body = ErrorBody, headers(("Retry-After" = u32, description = "Seconds to wait"))),
    ))]
pub async fn retry(
    State(s): State<AppState>,
    ApiKeyOrg(org): ApiKeyOrg,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    match s.engine.retry(org, id.clone()).await.map_err(store_error)? {
        RetryAnswer::Queued => Ok((
            StatusCode::ACCEPTED,
            Json(RetryOut {
                id,
                state: "pending",
            }),
        )
            .into_response()),
        RetryAnswer::Pending => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("delivery {id:?} is still pending: its next attempt is already scheduled; retry it once it has succeeded or failed"),
        )),
        RetryAnswer::NotFound => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no delivery {id:?} in this organization"),
        )),
    }
}
