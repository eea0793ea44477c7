//! The endpoint registry (seed 002's `/api/webhooks/*`, plus `PATCH`/`GET` of one
//! endpoint, its secret and rotation, replay) and seed 000's organization settings.
//! Every route authenticates with the org's API key ([`ApiKeyOrg`]).

use super::auth::ApiKeyOrg;
use super::body::{parse_json, read_small};
use super::{bad, store_error, ApiError, AppState, ErrorBody};
use crate::delivery::endpoints::{EndpointError, EndpointPatch};
use crate::delivery::model::{Endpoint, EndpointKind};
use crate::writer::now_ms;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use leadstream_pipeline::target::{address_refusal, literal_ip, port_refusal, url_problem};
use leadstream_pipeline::time::{format_rfc3339_ms, parse_rfc3339_us};
use leadstream_pipeline::OrgId;
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::time::Duration;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;

/// Largest body of these routes.
const MAX_BODY: usize = 64 * 1024;
/// Longest `timeout` an endpoint may set.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(30);
/// Most `maxInFlight` an endpoint may set.
pub const MAX_IN_FLIGHT: u64 = 1024;
/// Event types an endpoint may list at most.
const MAX_EVENT_TYPES: usize = 256;

/// A webhook endpoint: seed 002's four fields first, then the engine's.
#[derive(Serialize, utoipa::ToSchema)]
pub struct WebhookOut {
    id: i64,
    /// ISO 8601 UTC, milliseconds.
    #[schema(example = "2025-06-01T10:22:33.000Z")]
    created_at: String,
    /// The endpoint URL.
    #[schema(example = "https://api.example.com/events")]
    webhook: String,
    /// The organization's account UUID.
    #[schema(example = "6fb11ff2-d9b2-4560-8437-0fe58ec9f4a6")]
    user_id: String,
    /// `registry` (created here) or `settings` (the org's settings `webhookUrl`).
    #[schema(example = "registry")]
    kind: &'static str,
    enabled: bool,
    /// Why leadstream disabled it (410 Gone, or failing for `delivery.disable_after`).
    #[serde(rename = "disabledReason")]
    disabled_reason: Option<String>,
    /// The event types it receives; `null`: every type.
    #[serde(rename = "eventTypes")]
    event_types: Option<Vec<String>>,
    description: Option<String>,
    /// Per-attempt timeout in effect.
    #[schema(example = "5s")]
    timeout: String,
    /// Attempts in flight at most, in effect.
    #[serde(rename = "maxInFlight")]
    max_in_flight: u64,
    /// Attempts started per second at most; `null`: no limit.
    #[serde(rename = "rateLimit")]
    rate_limit: Option<f64>,
    #[serde(rename = "updatedAt")]
    updated_at: String,
}

fn out(s: &AppState, account: &str, e: &Endpoint) -> WebhookOut {
    let cfg = s.engine.config();
    WebhookOut {
        id: e.id,
        created_at: format_rfc3339_ms(e.created_at_ms),
        webhook: e.url.clone(),
        user_id: account.to_owned(),
        kind: e.kind.as_str(),
        enabled: e.enabled,
        disabled_reason: e.disabled_reason.clone(),
        event_types: e.event_types.clone(),
        description: e.description.clone(),
        timeout: humantime::format_duration(e.timeout.unwrap_or(cfg.timeout)).to_string(),
        max_in_flight: e
            .max_in_flight
            .map_or(cfg.max_in_flight_per_endpoint as u64, u64::from),
        rate_limit: e.rate_limit,
        updated_at: format_rfc3339_ms(e.updated_at_ms),
    }
}

async fn account_id(s: &AppState, org: OrgId) -> Result<String, ApiError> {
    match s.registry.account_id(org).await {
        Ok(Some(a)) => Ok(a),
        Ok(None) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            super::auth::INVALID_API_KEY,
        )),
        Err(e) => Err(store_error(e)),
    }
}

/// Another org's endpoint answers as a missing one: ids are sequential across orgs,
/// so a different answer would tell which exist.
pub(super) fn endpoint_error(e: EndpointError) -> ApiError {
    match e {
        EndpointError::NotFound(id) | EndpointError::OtherOrg(id) => ApiError::new(
            StatusCode::NOT_FOUND,
            EndpointError::NotFound(id).to_string(),
        ),
        EndpointError::Db(e) => store_error(e),
    }
}

/// The problem with `url` as an endpoint of this server, if any.
pub(super) fn target_problem(s: &AppState, field: &str, url: &str) -> Option<String> {
    if let Some(p) = url_problem(url) {
        return Some(p.replacen("webhook", field, 1));
    }
    if s.engine.config().allow_private_targets {
        return None;
    }
    if let Some(why) = port_refusal(url) {
        return Some(format!(
            "{field} {url:?}: {why}; use one of those (a server may allow any with delivery.allow_private_targets = true)"
        ));
    }
    let ip = literal_ip(url)?;
    address_refusal(ip).map(|why| {
        format!(
            "{field} {url:?} points at {ip}, {why}; private targets are refused (a server may allow them with delivery.allow_private_targets = true)"
        )
    })
}

fn parse_id(text: &str) -> Result<i64, ApiError> {
    text.trim().parse::<i64>().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("id {text:?} is not an integer webhook id"),
        )
    })
}

/// Where a page of `/api/webhooks/get` continues: endpoints with ids below this one.
#[derive(Serialize, serde::Deserialize)]
struct EndpointCursor {
    before: i64,
}

/// List the org's webhook endpoints, newest first. Seed 002's shape, a bare array: with
/// `limit`, a page of at most that many, and a `Link: <…>; rel="next"` header (the
/// same query with the next `cursor`) while more follow.
#[utoipa::path(get, path = "/api/webhooks/get", tag = "webhooks", security(("api_key" = [])),
    params(
        ("search" = Option<String>, Query, description = "Only endpoints whose URL contains this text"),
        ("limit" = Option<u32>, Query, description = "Page size, 1 to 1000 (default: every endpoint)", minimum = 1, maximum = 1000),
        ("cursor" = Option<String>, Query, description = "Where the page starts: from the Link header of the previous page"),
    ),
    responses(
        (status = 200, description = "The endpoints, newest first", body = [WebhookOut],
            headers(("Link" = String, description = "`<path?query&cursor=…>; rel=\"next\"` while more follow (with `limit`)"))),
        (status = 400, description = "limit or cursor is not valid", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 500, description = "Internal error: the message names an incident under which the server logged the cause", body = ErrorBody),
        (status = 503, description = "The credential registry cannot be read; retry", body = ErrorBody, headers(("Retry-After" = u32, description = "Seconds to wait"))),
    ))]
pub async fn list(
    State(s): State<AppState>,
    ApiKeyOrg(org): ApiKeyOrg,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let account = account_id(&s, org).await?;
    let search = q
        .get("search")
        .map(String::as_str)
        .filter(|t| !t.is_empty());
    let limit = match q.get("limit").map(|l| l.trim()) {
        None => None,
        Some(l) => match l.parse::<usize>() {
            Ok(n @ 1..=1000) => Some(n),
            _ => return Err(bad(format!("limit {l:?}: expected 1 to 1000"))),
        },
    };
    let before = match q.get("cursor").map(|c| c.trim()).filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(super::cursor::decode::<EndpointCursor>(c)?.before),
    };
    let mut all = s
        .engine
        .endpoints()
        .list(org, search)
        .await
        .map_err(store_error)?;
    // Newest first: ids below the cursor's.
    all.retain(|e| before.is_none_or(|b| e.id < b));
    let next = match limit {
        Some(n) if all.len() > n => {
            all.truncate(n);
            all.last().map(|e| {
                let mut query = url::form_urlencoded::Serializer::new(String::new());
                if let Some(t) = search {
                    query.append_pair("search", t);
                }
                query.append_pair("limit", &n.to_string());
                query.append_pair(
                    "cursor",
                    &super::cursor::encode(&EndpointCursor { before: e.id }),
                );
                format!("</api/webhooks/get?{}>; rel=\"next\"", query.finish())
            })
        }
        _ => None,
    };
    let body = Json(all.iter().map(|e| out(&s, &account, e)).collect::<Vec<_>>());
    Ok(match next {
        Some(link) => ([(header::LINK, link)], body).into_response(),
        None => body.into_response(),
    })
}

/// `{data: endpoint}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct WebhookData {
    data: WebhookOut,
}

/// The body of `POST /api/webhooks/create`.
#[derive(serde::Deserialize, utoipa::ToSchema)]
pub struct CreateWebhook {
    /// Full http:// or https:// URL of the endpoint, at most 2048 characters, without
    /// whitespace or control characters. The pattern is a safe subset of what is
    /// accepted: any URL the WHATWG URL standard parses with an http(s) scheme and a
    /// DNS name or IP address as host (IDNs, user info, a trailing dot). A host written
    /// as a private or loopback address, or a port other than 80, 443 and 1024–65535,
    /// is refused unless the server allows private targets.
    #[schema(
        value_type = String,
        required = true,
        example = "https://api.example.com/events",
        min_length = 1,
        max_length = 2048,
        pattern = r"^[Hh][Tt][Tt][Pp][Ss]?://([A-Za-z0-9_]+(-[A-Za-z0-9_]+)*\.)*[A-Za-z][A-Za-z0-9_]*(-[A-Za-z0-9_]+)*(:(80|443|10[2-9][0-9]|1[1-9][0-9]{2}|[2-9][0-9]{3}))?([/?#][^\s\x00-\x1f\x7f-\x9f]*)?$"
    )]
    webhook: Option<Value>,
}

/// Register a webhook endpoint (it receives every event type until `eventTypes` is
/// set, and gets its own signing secret).
#[utoipa::path(post, path = "/api/webhooks/create", tag = "webhooks", security(("api_key" = [])),
    request_body = CreateWebhook,
    responses(
        (status = 200, description = "Created", body = WebhookData),
        (status = 400, description = "`webhook` missing, empty, not an http(s) URL, or a private address", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 408, description = "The request body made no progress for http.body_timeout (30 s)", body = ErrorBody, headers(("Connection" = String, description = "close"))),
        (status = 409, description = "An org_limits limit is reached (the message names it)", body = ErrorBody),
        (status = 413, description = "Request body over 64 KB", body = ErrorBody, headers(("Connection" = String, description = "close"))),
        (status = 500, description = "Internal error: the message names an incident under which the server logged the cause", body = ErrorBody),
        (status = 503, description = "The credential registry cannot be read, or too many request bodies are in flight; retry", body = ErrorBody, headers(("Retry-After" = u32, description = "Seconds to wait"))),
    ))]
pub async fn create(
    State(s): State<AppState>,
    ApiKeyOrg(org): ApiKeyOrg,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<WebhookData>, ApiError> {
    let account = account_id(&s, org).await?;
    let body = read_small(&s, &headers, body, MAX_BODY).await?;
    let req: CreateWebhook = parse_json(&body.bytes)?;
    let url = match req.webhook {
        None | Some(Value::Null) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "webhook is missing: send {\"webhook\": \"https://your.host/path\"}",
            ))
        }
        Some(Value::String(u)) => u,
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("webhook must be a URL string, not {other}"),
            ))
        }
    };
    if let Some(p) = target_problem(&s, "webhook", &url) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, p));
    }
    super::org_limits::endpoints(&s, org).await?;
    let e = s
        .engine
        .endpoints()
        .create(org, EndpointKind::Registry, url, now_ms())
        .await
        .map_err(endpoint_error)?;
    Ok(Json(WebhookData {
        data: out(&s, &account, &e),
    }))
}

/// `{success: true}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Success {
    success: bool,
}

/// Delete a webhook endpoint. Its pending deliveries fail ("endpoint deleted"); the
/// log keeps them.
#[utoipa::path(delete, path = "/api/webhooks/delete", tag = "webhooks", security(("api_key" = [])),
    params(("id" = i64, Query, description = "The endpoint's id", minimum = 1, maximum = 9223372036854775807_i64)),
    responses(
        (status = 200, description = "Deleted", body = Success, example = json!({"success": true})),
        (status = 400, description = "`id` missing or not an integer", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 403, description = "The webhook exists but belongs to a different account (seed 002's answer, kept on this route only)", body = ErrorBody),
        (status = 404, description = "No webhook found with the given id", body = ErrorBody),
        (status = 500, description = "Internal error: the message names an incident under which the server logged the cause", body = ErrorBody),
        (status = 503, description = "The credential registry cannot be read; retry", body = ErrorBody, headers(("Retry-After" = u32, description = "Seconds to wait"))),
    ))]
pub async fn delete(
    State(s): State<AppState>,
    ApiKeyOrg(org): ApiKeyOrg,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Success>, ApiError> {
    let id = q.get("id").filter(|v| !v.is_empty()).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "id is missing: DELETE /api/webhooks/delete?id=<webhook id>",
        )
    })?;
    let id = parse_id(id)?;
    match s.engine.endpoints().delete(org, id).await {
        // Seed 002 documents this route's 403 for "the webhook exists but belongs to a
        // different account"; every other route answers it as a missing one.
        Err(e @ EndpointError::OtherOrg(_)) => {
            Err(ApiError::new(StatusCode::FORBIDDEN, e.to_string()))
        }
        other => other.map_err(endpoint_error),
    }?;
    Ok(Json(Success { success: true }))
}

/// One webhook endpoint.
#[utoipa::path(get, path = "/api/webhooks/{id}", tag = "webhooks", security(("api_key" = [])),
    params(("id" = i64, Path, description = "The endpoint's id", minimum = 1, maximum = 9223372036854775807_i64)),
    responses(
        (status = 200, description = "The endpoint", body = WebhookOut),
        (status = 400, description = "`id` is not an integer", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such endpoint of this organization (another's answers the same)", body = ErrorBody),
        (status = 500, description = "Internal error: the message names an incident under which the server logged the cause", body = ErrorBody),
        (status = 503, description = "The credential registry cannot be read; retry", body = ErrorBody, headers(("Retry-After" = u32, description = "Seconds to wait"))),
    ))]
pub async fn get_one(
    State(s): State<AppState>,
    ApiKeyOrg(org): ApiKeyOrg,
    Path(id): Path<String>,
) -> Result<Json<WebhookOut>, ApiError> {
    let account = account_id(&s, org).await?;
    let id = parse_id(&id)?;
    let e = s
        .engine
        .endpoints()
        .get(org, id)
        .await
        .map_err(endpoint_error)?;
    Ok(Json(out(&s, &account, &e)))
}

/// An event type: 1 to 128 characters, not blank, no control characters (a schema).
pub struct EventTypeName;

impl utoipa::PartialSchema for EventTypeName {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(super::deliveries::MAX_EVENT_TYPE))
            .pattern(Some(super::deliveries::EVENT_TYPE_PATTERN))
            .examples(["appointment_booked"])
            .into()
    }
}

impl utoipa::ToSchema for EventTypeName {}

/// The body of `PATCH /api/webhooks/{id}`: any of these fields; others are refused.
#[derive(utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // a schema only: the handler reads the fields one by one
pub struct PatchWebhook {
    /// `true` re-enables an endpoint leadstream disabled, `false` stops deliveries to
    /// it. Not `null`.
    #[schema(value_type = bool, required = false)]
    enabled: Option<bool>,
    /// The event types it receives (1 to 256, case-sensitive; repeats are dropped);
    /// `null`: every type.
    #[schema(rename = "eventTypes", value_type = Option<Vec<EventTypeName>>, min_items = 1, max_items = 256)]
    event_types: Option<Vec<String>>,
    /// Free text, at most 1000 characters; `null` clears it.
    #[schema(max_length = 1000)]
    description: Option<String>,
    /// Per-attempt timeout, above 0 and at most 30 s: `"10s"`, `"1500ms"` (the
    /// pattern shows the plain forms; `"1s 500ms"` is accepted too); `null`: the
    /// server's `delivery.timeout`.
    #[schema(
        example = "10s",
        pattern = "^0*([1-9]|[12][0-9]|30)s$|^0*([1-9][0-9]{0,3}|[12][0-9]{4}|30000)ms$"
    )]
    timeout: Option<String>,
    /// Attempts in flight at most, 1 to 1024; `null`: the server's default.
    #[schema(rename = "maxInFlight", minimum = 1, maximum = 1024)]
    max_in_flight: Option<u32>,
    /// Attempts started per second at most (above 0, at most 100000); `null`: no limit.
    #[schema(rename = "rateLimit", exclusive_minimum = 0, maximum = 100000)]
    rate_limit: Option<f64>,
}

fn read_patch(fields: Map<String, Value>) -> Result<EndpointPatch, ApiError> {
    let mut p = EndpointPatch::default();
    for (key, v) in fields {
        match key.as_str() {
            "enabled" => {
                p.enabled = Some(v.as_bool().ok_or_else(|| {
                    bad(format!("enabled must be true or false, not {v}"))
                })?);
            }
            "eventTypes" => {
                p.event_types = Some(match v {
                    Value::Null => None,
                    Value::Array(items) => {
                        if items.is_empty() {
                            return Err(bad("eventTypes is empty: list at least one event type, or send null to receive every type"));
                        }
                        if items.len() > MAX_EVENT_TYPES {
                            return Err(bad(format!("eventTypes has {} entries, at most {MAX_EVENT_TYPES}", items.len())));
                        }
                        let mut types = Vec::with_capacity(items.len());
                        for item in items {
                            let t = item.as_str().ok_or_else(|| bad(format!("eventTypes must hold strings, not {item}")))?;
                            if let Some(why) = super::deliveries::event_type_problem(t) {
                                return Err(bad(format!("eventTypes: {why}")));
                            }
                            if !types.iter().any(|x: &String| x == t) {
                                types.push(t.to_owned());
                            }
                        }
                        Some(types)
                    }
                    other => return Err(bad(format!("eventTypes must be an array of event types or null, not {other}"))),
                });
            }
            "description" => {
                p.description = Some(match v {
                    Value::Null => None,
                    Value::String(d) if d.chars().count() <= 1000 => Some(d),
                    Value::String(_) => return Err(bad("description is longer than 1000 characters")),
                    other => return Err(bad(format!("description must be a string or null, not {other}"))),
                });
            }
            "timeout" => {
                p.timeout = Some(match v {
                    Value::Null => None,
                    Value::String(t) => {
                        let d = humantime::parse_duration(t.trim()).map_err(|_| {
                            bad(format!("timeout {t:?} is not a duration: write e.g. \"5s\" or \"1500ms\""))
                        })?;
                        if d.is_zero() || d > MAX_TIMEOUT {
                            return Err(bad(format!("timeout {t:?} must be above 0 and at most 30s")));
                        }
                        Some(d)
                    }
                    other => return Err(bad(format!("timeout must be a duration string like \"5s\", not {other}"))),
                });
            }
            "maxInFlight" => {
                p.max_in_flight = Some(match v {
                    Value::Null => None,
                    // JSON has one number type: 16.0 is the integer 16 (as JSON Schema says).
                    v => match v.as_u64().or_else(|| {
                        v.as_f64()
                            .filter(|f| f.fract() == 0.0 && (1.0..=MAX_IN_FLIGHT as f64).contains(f))
                            .map(|f| f as u64)
                    }) {
                        Some(n) if (1..=MAX_IN_FLIGHT).contains(&n) => Some(n as u32),
                        _ => return Err(bad(format!("maxInFlight must be an integer from 1 to {MAX_IN_FLIGHT}, not {v}"))),
                    },
                });
            }
            "rateLimit" => {
                p.rate_limit = Some(match v {
                    Value::Null => None,
                    v => match v.as_f64() {
                        Some(r) if r > 0.0 && r <= 100_000.0 => Some(r),
                        _ => return Err(bad(format!("rateLimit must be deliveries per second above 0 and at most 100000, not {v}"))),
                    },
                });
            }
            other => {
                return Err(bad(format!(
                    "unknown field {other:?}: PATCH takes enabled, eventTypes, description, timeout, maxInFlight, rateLimit"
                )))
            }
        }
    }
    Ok(p)
}

/// Change an endpoint's subscriptions, state or delivery limits.
#[utoipa::path(patch, path = "/api/webhooks/{id}", tag = "webhooks", security(("api_key" = [])),
    params(("id" = i64, Path, description = "The endpoint's id", minimum = 1, maximum = 9223372036854775807_i64)),
    request_body = PatchWebhook,
    responses(
        (status = 200, description = "The endpoint as changed", body = WebhookOut),
        (status = 400, description = "A field is not valid (the message names it)", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such endpoint of this organization (another's answers the same)", body = ErrorBody),
        (status = 409, description = "eventTypes on the org's settings endpoint, which receives every event type", body = ErrorBody),
        (status = 408, description = "The request body made no progress for http.body_timeout (30 s)", body = ErrorBody, headers(("Connection" = String, description = "close"))),
        (status = 413, description = "Request body over 64 KB", body = ErrorBody, headers(("Connection" = String, description = "close"))),
        (status = 500, description = "Internal error: the message names an incident under which the server logged the cause", body = ErrorBody),
        (status = 503, description = "The credential registry cannot be read, or too many request bodies are in flight; retry", body = ErrorBody, headers(("Retry-After" = u32, description = "Seconds to wait"))),
    ))]
pub async fn patch(
    State(s): State<AppState>,
    ApiKeyOrg(org): ApiKeyOrg,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<WebhookOut>, ApiError> {
    let account = account_id(&s, org).await?;
    let id = parse_id(&id)?;
    let current = s
        .engine
        .endpoints()
        .get(org, id)
        .await
        .map_err(endpoint_error)?;
    let body = read_small(&s, &headers, body, MAX_BODY).await?;
    let fields: Value = parse_json(&body.bytes)?;
    let Value::Object(fields) = fields else {
        return Err(bad(
            "the body must be a JSON object of the fields to change",
        ));
    };
    let patch = read_patch(fields)?;
    if current.kind == EndpointKind::Settings && matches!(patch.event_types, Some(Some(_))) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "eventTypes: the organization's settings webhookUrl receives every event type; create a registry endpoint (POST /api/webhooks/create) to subscribe to some",
        ));
    }
    let e = s
        .engine
        .endpoints()
        .patch(org, id, patch, now_ms())
        .await
        .map_err(endpoint_error)?;
    Ok(Json(out(&s, &account, &e)))
}

/// `{key}`: a signing secret.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SecretOut {
    /// `whsec_` + base64 of 32 random bytes.
    #[schema(example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
    key: String,
}

/// The endpoint's current signing secret.
#[utoipa::path(get, path = "/api/webhooks/{id}/secret", tag = "webhooks", security(("api_key" = [])),
    params(("id" = i64, Path, description = "The endpoint's id", minimum = 1, maximum = 9223372036854775807_i64)),
    responses(
        (status = 200, description = "The current secret", body = SecretOut),
        (status = 400, description = "`id` is not an integer", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such endpoint of this organization (another's answers the same)", body = ErrorBody),
        (status = 503, description = "The credential registry cannot be read; retry", body = ErrorBody, headers(("Retry-After" = u32, description = "Seconds to wait"))),
    ))]
pub async fn secret(
    State(s): State<AppState>,
    ApiKeyOrg(org): ApiKeyOrg,
    Path(id): Path<String>,
) -> Result<Json<SecretOut>, ApiError> {
    let id = parse_id(&id)?;
    let e = s
        .engine
        .endpoints()
        .get(org, id)
        .await
        .map_err(endpoint_error)?;
    let key = e.current_secret().map(|k| k.text()).unwrap_or_default();
    Ok(Json(SecretOut { key }))
}

/// A new signing secret; the previous one keeps signing beside it for
/// `delivery.secret_grace` (24 h by default).
#[utoipa::path(post, path = "/api/webhooks/{id}/secret/rotate", tag = "webhooks", security(("api_key" = [])),
    params(("id" = i64, Path, description = "The endpoint's id", minimum = 1, maximum = 9223372036854775807_i64)),
    responses(
        (status = 200, description = "The new secret", body = SecretOut),
        (status = 400, description = "`id` is not an integer", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such endpoint of this organization (another's answers the same)", body = ErrorBody),
        (status = 500, description = "Internal error: the message names an incident under which the server logged the cause", body = ErrorBody),
        (status = 503, description = "The credential registry cannot be read; retry", body = ErrorBody, headers(("Retry-After" = u32, description = "Seconds to wait"))),
    ))]
pub async fn rotate(
    State(s): State<AppState>,
    ApiKeyOrg(org): ApiKeyOrg,
    Path(id): Path<String>,
) -> Result<Json<SecretOut>, ApiError> {
    let id = parse_id(&id)?;
    let grace = s.engine.config().secret_grace;
    let e = s
        .engine
        .endpoints()
        .rotate_secret(org, id, grace, now_ms())
        .await
        .map_err(endpoint_error)?;
    let key = e.current_secret().map(|k| k.text()).unwrap_or_default();
    Ok(Json(SecretOut { key }))
}

/// The body of a replay.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayIn {
    /// RFC 3339: deliveries created at or after this.
    #[schema(example = "2026-06-01T00:00:00Z", format = DateTime)]
    since: String,
    /// RFC 3339: deliveries created at or before this; default now. A range with
    /// `until` before `since` is empty: nothing is replayed.
    #[schema(example = "2026-06-02T00:00:00Z", format = DateTime)]
    until: Option<String>,
}

/// `{replayed}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ReplayOut {
    /// Failed deliveries sent again.
    replayed: usize,
}

fn instant_ms(field: &str, text: &str) -> Result<i64, ApiError> {
    parse_rfc3339_us(text)
        .map(|us| us.div_euclid(1000))
        .ok_or_else(|| {
            bad(format!(
                "{field} {text:?} is not an RFC 3339 instant like 2026-06-01T00:00:00Z"
            ))
        })
}

/// Send again every failed delivery of this endpoint created in `[since, until]`
/// (one attempt each, now).
#[utoipa::path(post, path = "/api/webhooks/{id}/replay", tag = "webhooks", security(("api_key" = [])),
    params(("id" = i64, Path, description = "The endpoint's id", minimum = 1, maximum = 9223372036854775807_i64)),
    request_body = ReplayIn,
    responses(
        (status = 200, description = "How many were sent again", body = ReplayOut),
        (status = 400, description = "since/until missing or not RFC 3339", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such endpoint of this organization (another's answers the same)", body = ErrorBody),
        (status = 408, description = "The request body made no progress for http.body_timeout (30 s)", body = ErrorBody, headers(("Connection" = String, description = "close"))),
        (status = 413, description = "Request body over 64 KB", body = ErrorBody, headers(("Connection" = String, description = "close"))),
        (status = 500, description = "Internal error: the message names an incident under which the server logged the cause", body = ErrorBody),
        (status = 503, description = "The credential registry cannot be read, or too many request bodies are in flight; retry", body = ErrorBody, headers(("Retry-After" = u32, description = "Seconds to wait"))),
    ))]
pub async fn replay(
    State(s): State<AppState>,
    ApiKeyOrg(org): ApiKeyOrg,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<ReplayOut>, ApiError> {
    let id = parse_id(&id)?;
    s.engine
        .endpoints()
        .get(org, id)
        .await
        .map_err(endpoint_error)?;
    let body = read_small(&s, &headers, body, MAX_BODY).await?;
    let req: ReplayIn = parse_json(&body.bytes)?;
    let since = instant_ms("since", &req.since)?;
    let until = match &req.until {
        Some(u) => instant_ms("until", u)?,
        None => now_ms(),
    };
    // An empty range (until before since, or since in the future) replays nothing,
    // as a listing of it lists nothing.
    if until < since {
        return Ok(Json(ReplayOut { replayed: 0 }));
    }
    let replayed = s
        .engine
        .replay(id, since, until)
        .await
        .map_err(store_error)?;
    Ok(Json(ReplayOut { replayed }))
}

/// Seed 000's organization settings.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SettingsOut {
    /// Where every event is delivered; `null` when unset.
    #[serde(rename = "webhookUrl")]
    #[schema(example = "https://api.example.com/webhook")]
    webhook_url: Option<String>,
    /// The secret its deliveries are signed with (Standard Webhooks); `null` when unset.
    #[serde(rename = "webhookSigningSecret")]
    webhook_signing_secret: Option<String>,
}

/// The body of `PUT /api/v1/organizations/current/settings`.
#[derive(utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // a schema only
pub struct SettingsIn {
    /// An http(s) URL (as `webhook` of `POST /api/webhooks/create`), or `null` to stop
    /// delivering to one. Required.
    #[schema(
        rename = "webhookUrl",
        required = true,
        example = "https://api.example.com/webhook",
        min_length = 1,
        max_length = 2048,
        pattern = r"^[Hh][Tt][Tt][Pp][Ss]?://([A-Za-z0-9_]+(-[A-Za-z0-9_]+)*\.)*[A-Za-z][A-Za-z0-9_]*(-[A-Za-z0-9_]+)*(:(80|443|10[2-9][0-9]|1[1-9][0-9]{2}|[2-9][0-9]{3}))?([/?#][^\s\x00-\x1f\x7f-\x9f]*)?$"
    )]
    webhook_url: Option<String>,
}

fn settings_out(e: Option<&Endpoint>) -> SettingsOut {
    SettingsOut {
        webhook_url: e.map(|e| e.url.clone()),
        webhook_signing_secret: e.and_then(|e| e.current_secret()).map(|k| k.text()),
    }
}

/// The org's settings.
#[utoipa::path(get, path = "/api/v1/organizations/current/settings", tag = "webhooks", security(("api_key" = [])),
    responses(
        (status = 200, description = "The settings", body = SettingsOut),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 503, description = "The credential registry cannot be read; retry", body = ErrorBody, headers(("Retry-After" = u32, description = "Seconds to wait"))),
    ))]
pub async fn get_settings(
    State(s): State<AppState>,
    ApiKeyOrg(org): ApiKeyOrg,
) -> Result<Json<SettingsOut>, ApiError> {
    let settings = s
        .engine
        .endpoints()
        .settings(org)
        .await
        .map_err(store_error)?;
    Ok(Json(settings_out(settings.as_deref())))
}

/// Set (or, with `null`, remove) the org's webhook URL: an endpoint that receives
/// every event type. Another URL replaces it and keeps its secret.
#[utoipa::path(put, path = "/api/v1/organizations/current/settings", tag = "webhooks", security(("api_key" = [])),
    request_body = SettingsIn,
    responses(
        (status = 200, description = "The settings as saved", body = SettingsOut),
        (status = 400, description = "webhookUrl missing, not an http(s) URL, or a private address", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 408, description = "The request body made no progress for http.body_timeout (30 s)", body = ErrorBody, headers(("Connection" = String, description = "close"))),
        (status = 413, description = "Request body over 64 KB", body = ErrorBody, headers(("Connection" = String, description = "close"))),
        (status = 500, description = "Internal error: the message names an incident under which the server logged the cause", body = ErrorBody),
        (status = 503, description = "The credential registry cannot be read, or too many request bodies are in flight; retry", body = ErrorBody, headers(("Retry-After" = u32, description = "Seconds to wait"))),
    ))]
pub async fn put_settings(
    State(s): State<AppState>,
    ApiKeyOrg(org): ApiKeyOrg,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<SettingsOut>, ApiError> {
    let body = read_small(&s, &headers, body, MAX_BODY).await?;
    let fields: Value = parse_json(&body.bytes)?;
    let Value::Object(mut fields) = fields else {
        return Err(bad(
            "the body must be a JSON object: {\"webhookUrl\": \"https://…\"}",
        ));
    };
    if let Some(k) = fields.keys().find(|k| *k != "webhookUrl") {
        return Err(bad(format!(
            "unknown setting {k:?}: the settings are webhookUrl"
        )));
    }
    let url =
        match fields.remove("webhookUrl") {
            None => return Err(bad(
                "webhookUrl is missing: send {\"webhookUrl\": \"https://…\"}, or null to remove it",
            )),
            Some(Value::Null) => None,
            Some(Value::String(u)) => {
                if let Some(p) = target_problem(&s, "webhookUrl", &u) {
                    return Err(bad(p));
                }
                Some(u)
            }
            Some(other) => {
                return Err(bad(format!(
                    "webhookUrl must be a URL string or null, not {other}"
                )))
            }
        };
    let e = s
        .engine
        .endpoints()
        .set_settings_url(org, url, now_ms())
        .await
        .map_err(endpoint_error)?;
    Ok(Json(settings_out(e.as_deref())))
}
