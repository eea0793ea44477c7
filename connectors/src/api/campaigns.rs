//! Campaigns, their audiences and sends, eligibility and materialization
//! (`/api/v1/campaigns/*`), the audience-filter webhook and the org's opt-outs.
//! API-key authenticated; errors are `{"error": ...}`.

use super::auth::ApiKeyOrg;
use super::body::{parse_json, read, read_small};
use super::deliveries::event_type_problem;
use super::webhooks::target_problem;
use super::{
    bad, check_text, conflict, parse_id, store_error, ApiError, AppState, ErrorBody, MAX_NAME,
};
use crate::campaigns::audience::{self, UploadError, UploadTally};
use crate::campaigns::model::{Campaign, CampaignState, Send, SendTime, Transition};
use crate::campaigns::{
    records::SendProgress, store, Campaigns, EligibilityEngine, EligibilityError, MaterializeError,
    Materialized,
};
use crate::delivery::model::EndpointKind;
use crate::writer::now_ms;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{LocalResult, NaiveDateTime, Offset, TimeZone};
use leadstream_pipeline::eligibility::{EventFilter, Mode};
use leadstream_pipeline::time::{format_rfc3339_ms, format_rfc3339_short_us, parse_rfc3339_us};
use leadstream_pipeline::{OrgId, Phone};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// Largest body of the small routes.
const MAX_BODY: usize = 64 * 1024;
/// Largest audience-filter or opt-out body.
const MAX_LIST_BODY: usize = 10 * 1024 * 1024;
/// Largest JSON audience upload (a CSV streams and has no limit but this one's).
const MAX_AUDIENCE_JSON: usize = 64 * 1024 * 1024;
/// Largest CSV audience upload.
const MAX_AUDIENCE_CSV: u64 = 1024 * 1024 * 1024;
/// An audience CSV upload's share of the body budget while it streams: the feed's 8
/// body chunks in flight (hyper reads at most 400 KB at once), the reader's 64 KB
/// buffer, one row of at most [`audience::MAX_CSV_ROW_BYTES`], and the rows waiting
/// for the store ([`audience::CHUNK_BYTES`] and one more row).
const UPLOAD_HELD_BYTES: usize = 8 * 400 * 1024
    + 64 * 1024
    + audience::MAX_CSV_ROW_BYTES
    + audience::CHUNK_BYTES
    + audience::MAX_CSV_ROW_BYTES;
/// Phones in one opt-out call at most.
const MAX_OPT_OUT_PHONES: usize = 10_000;
/// Leads in one audience filter at most.
const MAX_FILTER_LEADS: usize = 1_000_000;
/// An audience filter is accepted until this long before the send's instant.
const FILTER_CUTOFF_US: i64 = 5 * 60 * 1_000_000;

fn campaigns(s: &AppState) -> &Campaigns {
    &s.campaigns
}

/// Where a page of campaigns continues: ids below this one (newest first).
#[derive(Serialize, Deserialize)]
struct CampaignCursor {
    before: i64,
}

/// `org`'s campaign `id`; 404 when there is none, and alike when it is another org's
/// (ids are sequential across orgs: a different answer would tell which exist).
async fn load_campaign(s: &AppState, org: OrgId, id: i64) -> Result<Campaign, ApiError> {
    campaigns(s)
        .owned(org, id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no campaign {id}")))
}

async fn load_send(s: &AppState, campaign: &Campaign, send: i64) -> Result<Send, ApiError> {
    let found = campaigns(s).send(send).await.map_err(store_error)?;
    match found {
        Some(x) if x.campaign_id == campaign.id => Ok(x),
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("campaign {} has no send {send}", campaign.id),
        )),
    }
}

/// A campaign.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CampaignOut {
    id: i64,
    name: String,
    /// draft, scheduled, running, paused, completed or cancelled.
    #[schema(example = "draft")]
    state: &'static str,
    /// Set when created with a `deliveryUrl`: registered as endpoint `endpointId`.
    #[serde(rename = "deliveryUrl", skip_serializing_if = "Option::is_none")]
    delivery_url: Option<String>,
    /// The webhook endpoint its deliveries go to (its secret signs them).
    #[serde(rename = "endpointId")]
    endpoint_id: i64,
    /// Leads in the audience.
    #[serde(rename = "audienceSize")]
    audience_size: u64,
    #[serde(rename = "createdAt")]
    created_at: String,
    #[serde(rename = "updatedAt")]
    updated_at: String,
}

/// Campaign `c`, its audience size read (one campaign; a page reads its sizes at once).
async fn campaign_out(s: &AppState, c: Campaign) -> Result<CampaignOut, ApiError> {
    let audience_size = campaigns(s)
        .audience_size(c.id)
        .await
        .map_err(store_error)?;
    Ok(campaign_row(c, audience_size))
}

fn campaign_row(c: Campaign, audience_size: u64) -> CampaignOut {
    CampaignOut {
        id: c.id,
        name: c.name,
        state: c.state.as_str(),
        delivery_url: c.delivery_url,
        endpoint_id: c.endpoint_id,
        audience_size,
        created_at: format_rfc3339_ms(c.created_at_ms),
        updated_at: format_rfc3339_ms(c.updated_at_ms),
    }
}

/// The body of a campaign create or edit.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CampaignIn {
    /// 1 to 256 characters, not blank, no control characters. Required to create.
    #[schema(
        example = "Mastery launch",
        min_length = 1,
        max_length = 256,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    name: Option<String>,
    /// Where the deliveries go: registered as a webhook endpoint of the org
    /// (subscribed to `campaign_send`) with its own signing secret. Give this or
    /// `endpointId`.
    #[serde(rename = "deliveryUrl")]
    #[schema(
        example = "https://sender.example.com/campaign-sends",
        min_length = 1,
        max_length = 2048,
        pattern = r"^[Hh][Tt][Tt][Pp][Ss]?://([A-Za-z0-9_]+(-[A-Za-z0-9_]+)*\.)*[A-Za-z][A-Za-z0-9_]*(-[A-Za-z0-9_]+)*(:(80|443|10[2-9][0-9]|1[1-9][0-9]{2}|[2-9][0-9]{3}))?([/?#][^\s\x00-\x1f\x7f-\x9f]*)?$"
    )]
    delivery_url: Option<String>,
    /// An existing webhook endpoint of the org to deliver to.
    #[serde(rename = "endpointId")]
    endpoint_id: Option<i64>,
}

/// The endpoint a campaign delivers to: an existing one of the org, or a new one
/// registered for `deliveryUrl`.
async fn resolve_target(
    s: &AppState,
    org: OrgId,
    name: &str,
    delivery_url: Option<String>,
    endpoint_id: Option<i64>,
) -> Result<(Option<String>, i64), ApiError> {
    match (delivery_url, endpoint_id) {
        (Some(_), Some(_)) => Err(bad("give deliveryUrl or endpointId, not both")),
        (None, None) => Err(bad(
            "deliveryUrl or endpointId is missing: say where the deliveries go",
        )),
        (None, Some(id)) => {
            s.engine
                .endpoints()
                .get(org, id)
                .await
                .map_err(super::webhooks::endpoint_error)?;
            Ok((None, id))
        }
        (Some(url), None) => {
            if let Some(p) = target_problem(s, "deliveryUrl", &url) {
                return Err(bad(p));
            }
            super::org_limits::endpoints(s, org).await?;
            let e = s
                .engine
                .endpoints()
                .create_subscribed(
                    org,
                    EndpointKind::Registry,
                    url.clone(),
                    Some(vec![crate::campaigns::EVENT_TYPE.to_owned()]),
                    Some(format!("campaign {name}")),
                    now_ms(),
                )
                .await
                .map_err(super::webhooks::endpoint_error)?;
            Ok((Some(url), e.id))
        }
    }
}

/// Create a campaign (state `draft`).
#[utoipa::path(post, path = "/api/v1/campaigns", tag = "campaigns", security(("api_key" = [])),
    request_body = CampaignIn,
    responses(
        (status = 201, description = "Created", body = CampaignOut),
        (status = 400, description = "name missing or invalid; no deliveryUrl or endpointId, or both; a deliveryUrl that is not an http(s) URL or is a private address", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such endpointId of this organization (another's answers the same)", body = ErrorBody),
        (status = 409, description = "An org_limits limit is reached (the message names it)", body = ErrorBody),
        (status = 413, description = "Request body over 64 KB", body = ErrorBody),
        (status = 500, description = "Internal error: the message names an incident under which the server logged the cause", body = ErrorBody),
    ))]
pub async fn create(
    State(s): State<AppState>,
    ApiKeyOrg(org): ApiKeyOrg,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_small(&s, &headers, body, MAX_BODY).await?;
    let req: CampaignIn = parse_json(&body.bytes)?;
    let name = req.name.ok_or_else(|| {
        bad("name is missing: send {\"name\": \"...\", \"deliveryUrl\": \"https://...\"}")
    })?;
    check_text("name", &name, MAX_NAME)?;
    super::org_limits::campaigns(&s, org).await?;
    let (url, endpoint) = resolve_target(&s, org, &name, req.delivery_url, req.endpoint_id).await?;
    let c = campaigns(&s)
        .create(org, name, url, endpoint)
        .await
        .map_err(store_error)?;
    let out = campaign_out(&s, c).await?;
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

/// A page of campaigns.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CampaignPage {
    data: Vec<CampaignOut>,
    /// Pass as `cursor` for the next page; null on the last.
    #[serde(rename = "nextCursor")]
    next_cursor: Option<String>,
}

/// List the org's campaigns, newest first.
#[utoipa::path(get, path = "/api/v1/campaigns", tag = "campaigns", security(("api_key" = [])),
    params(
        ("limit" = Option<u32>, Query, description = "Page size, 1 to 1000 (default 50)", minimum = 1, maximum = 1000),
        ("cursor" = Option<String>, Query, description = "nextCursor of the previous page"),
    ),
    responses(
        (status = 200, description = "Newest first", body = CampaignPage),
        (status = 400, description = "limit or cursor invalid", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 500, description = "Internal error: the message names an incident under which the server logged the cause", body = ErrorBody),
    ))]
pub async fn list(
    State(s): State<AppState>,
    ApiKeyOrg(org): ApiKeyOrg,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<CampaignPage>, ApiError> {
    let q = super::query_params(pairs, &["limit", "cursor"])?;
    let (limit, from) = super::cursor::page_params::<CampaignCursor>(&q)?;
    let mut rows = campaigns(&s)
        .list(org, from.map(|c| c.before), limit + 1)
        .await
        .map_err(store_error)?;
    let next_cursor =
        super::cursor::cut(&mut rows, limit, |(c, _)| CampaignCursor { before: c.id });
    let data = rows
        .into_iter()
        .map(|(c, size)| campaign_row(c, size))
        .collect();
    Ok(Json(CampaignPage { data, next_cursor }))
}

/// One campaign.
#[utoipa::path(get, path = "/api/v1/campaigns/{id}", tag = "campaigns", security(("api_key" = [])),
    params(("id" = i64, Path, description = "Campaign id")),
    responses(
        (status = 200, description = "The campaign", body = CampaignOut),
        (status = 400, description = "id is not an integer", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such campaign of this organization (another's answers the same)", body = ErrorBody),
        (status = 500, description = "Internal error: the message names an incident under which the server logged the cause", body = ErrorBody),
    ))]
pub async fn get_one(
    State(s): State<AppState>,
    ApiKeyOrg(org): ApiKeyOrg,
    Path(id): Path<String>,
) -> Result<Json<CampaignOut>, ApiError> {
    let c = load_campaign(&s, org, parse_id("campaign id", &id)?).await?;
    Ok(Json(campaign_out(&s, c).await?))
}

/// Edit a draft's name or target (`deliveryUrl` or `endpointId`).
#[utoipa::path(patch, path = "/api/v1/campaigns/{id}", tag = "campaigns", security(("api_key" = [])),
    params(("id" = i64, Path, description = "Campaign id")),
    request_body = CampaignIn,
    responses(
        (status = 200, description = "The edited campaign", body = CampaignOut),
        (status = 400, description = "A field is invalid", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such campaign or endpoint of this organization (another's answers the same)", body = ErrorBody),
        (status = 409, description = "The campaign is no longer a draft", body = ErrorBody),
        (status = 413, description = "Request body over 64 KB", body = ErrorBody),
        (status = 500, description = "Internal error: the message names an incident under which the server logged the cause", body = ErrorBody),
    ))]
pub async fn patch(
    State(s): State<AppState>,
    ApiKeyOrg(org): ApiKeyOrg,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<CampaignOut>, ApiError> {
    let c = load_campaign(&s, org, parse_id("campaign id", &id)?).await?;
    let body = read_small(&s, &headers, body, MAX_BODY).await?;
    let req: CampaignIn = parse_json(&body.bytes)?;
    if c.state != CampaignState::Draft {
        return Err(conflict(format!(
            "campaign {} is {}: only a draft's name and target can be edited",
            c.id,
            c.state.as_str()
        )));
    }
    let name = req.name.unwrap_or(c.name.clone());
    check_text("name", &name, MAX_NAME)?;
    let retarget = req.delivery_url.is_some() || req.endpoint_id.is_some();
    let (url, endpoint) = if retarget {
        resolve_target(&s, org, &name, req.delivery_url, req.endpoint_id).await?
    } else {
        (c.delivery_url.clone(), c.endpoint_id)
    };
    let cid = c.id;
    let updated = campaigns(&s)
        .update_draft(cid, name, url.clone(), endpoint)
        .await
        .map_err(store_error);
    // The endpoint made for a deliveryUrl is the campaign's own: the one the change
    // left behind, or the one made for a change that did not happen, goes.
    let made_for = |url: &Option<String>, id: i64| url.is_some().then_some(id);
    let left = match &updated {
        Ok(Some(_)) => made_for(&c.delivery_url, c.endpoint_id).filter(|old| *old != endpoint),
        _ => made_for(&url, endpoint).filter(|_| retarget),
    };
    if let Some(old) = left {
        drop_campaign_endpoint(&s, org, old).await;
    }
    let updated = updated?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no campaign {cid}")))?;
    Ok(Json(campaign_out(&s, updated).await?))
}

/// Deletes endpoint `id`, made for a campaign's `deliveryUrl`, unless a campaign
/// still delivers to it.
async fn drop_campaign_endpoint(s: &AppState, org: OrgId, id: i64) {
    match campaigns(s).endpoint_unused(id).await {
        Ok(true) => {
            if let Err(e) = s.engine.endpoints().delete(org, id).await {
                tracing::warn!(endpoint = id, error = %e, "deleting the endpoint a campaign's deliveryUrl change left behind");
            }
        }
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(endpoint = id, error = %e, "checking the endpoint a campaign's deliveryUrl change left behind")
        }
    }
}

async fn transition(
    s: &AppState,
    org: OrgId,
    id: &str,
    action: Transition,
) -> Result<Json<CampaignOut>, ApiError> {
    let c = load_campaign(s, org, parse_id("campaign id", id)?).await?;
    let cid = c.id;
    let result = campaigns(s)
        .transition(cid, action)
        .await
        .map_err(store_error)?;
    match result {
        Ok(c) => Ok(Json(campaign_out(s, c).await?)),
        Err(state) => Err(conflict(format!(
            "campaign {cid} is {}: it cannot {}",
            state.as_str(),
            action.as_str()
        ))),
    }
}

macro_rules! transition_route {
    ($name:ident, $action:expr, $path:literal, $what:literal) => {
        #[doc = $what]
        #[utoipa::path(post, path = $path, tag = "campaigns", security(("api_key" = [])),
            params(("id" = i64, Path, description = "Campaign id")),
            responses(
                (status = 200, description = "The campaign in its new state", body = CampaignOut),
                (status = 400, description = "id is not an integer", body = ErrorBody),
                (status = 401, description = "No valid API key", body = ErrorBody),
                (status = 404, description = "No such campaign of this organization (another's answers the same)", body = ErrorBody),
                (status = 409, description = "Not allowed from the campaign's current state (named in the error)", body = ErrorBody),
                (status = 500, description = "Internal error: the message names an incident under which the server logged the cause", body = ErrorBody),
            ))]
        pub async fn $name(
            State(s): State<AppState>,
            ApiKeyOrg(org): ApiKeyOrg,
            Path(id): Path<String>,
        ) -> Result<Json<CampaignOut>, ApiError> {
            transition(&s, org, &id, $action).await
        }
    };
}

transition_route!(
    schedule,
    Transition::Schedule,
    "/api/v1/campaigns/{id}/schedule",
    "Schedule a draft: its sends are materialized as they fall due."
);
transition_route!(
    pause,
    Transition::Pause,
    "/api/v1/campaigns/{id}/pause",
    "Pause a scheduled or running campaign: the scheduler skips it until resumed."
);
transition_route!(
    resume,
    Transition::Resume,
    "/api/v1/campaigns/{id}/resume",
    "Resume a paused campaign (back to scheduled or running)."
);
transition_route!(
    cancel,
    Transition::Cancel,
    "/api/v1/campaigns/{id}/cancel",
    "Cancel a campaign for good: nothing more is materialized."
);

/// Add leads to a campaign's audience: `text/csv` with a header row naming `phone`
/// (and optionally `external_id`; every other column is kept as a string variable),
/// or a JSON array of `{phoneE164, externalId?, variables?}`. Streamed; phones are
/// normalized as lead events are; rows with one phone collapse, the later row's
/// externalId and variables winning; adding again merges.
#[utoipa::path(post, path = "/api/v1/campaigns/{id}/audience", tag = "campaigns", security(("api_key" = [])),
    params(("id" = i64, Path, description = "Campaign id")),
    request_body(content = String, content_type = "text/csv", description = "CSV with a header row, or (application/json) an array of {phoneE164, externalId?, variables?}"),
    responses(
        (status = 200, description = "What the upload added; row problems are rejects", body = UploadTally),
        (status = 400, description = "Not CSV with a phone column, nor a JSON array", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such campaign of this organization (another's answers the same)", body = ErrorBody),
        (status = 408, description = "The body made no progress for http.body_timeout", body = ErrorBody),
        (status = 409, description = "The campaign is completed or cancelled; or an org_limits limit is reached (the message names it)", body = ErrorBody),
        (status = 413, description = "Over 1 GB of CSV or 64 MB of JSON", body = ErrorBody),
        (status = 415, description = "Neither text/csv nor application/json", body = ErrorBody),
        (status = 500, description = "Internal error: the message names an incident under which the server logged the cause", body = ErrorBody),
    ))]
pub async fn upload_audience(
    State(s): State<AppState>,
    ApiKeyOrg(org): ApiKeyOrg,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<UploadTally>, ApiError> {
    let c = load_campaign(&s, org, parse_id("campaign id", &id)?).await?;
    if !c.state.takes_sends() {
        return Err(conflict(format!(
            "campaign {} is {}: its audience is final",
            c.id,
            c.state.as_str()
        )));
    }
    super::org_limits::audience(&s, c.id).await?;
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let service = campaigns(&s).clone();
    let cid = c.id;
    let merge = move |rows: &[store::AudienceRow]| {
        let rows: Vec<store::AudienceRow> = rows
            .iter()
            .map(|r| store::AudienceRow {
                phone: r.phone,
                external_id: r.external_id.clone(),
                variables: r.variables.clone(),
            })
            .collect();
        service.merge_audience_blocking(cid, rows)
    };
    let normalizer = s.preparer.normalizer().clone();
    let result = match ctype.as_str() {
        "text/csv" | "application/csv" => {
            let declared = headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|n| n > MAX_AUDIENCE_CSV) {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "audience CSV over 1 GB; split it into several uploads (they merge)",
                ));
            }
            // What the upload holds in memory at most (the feed's chunks in flight, one
            // row, a chunk of rows for the store), counted in the body budget for as
            // long as it runs: so many uploads at once are refused with 503, never
            // held.
            let _held = s.budget.hold(UPLOAD_HELD_BYTES)?;
            let (tx, mut chunks) = tokio::sync::mpsc::channel(8);
            let stall = s.limits.body_timeout;
            let feeding = crate::tasks::spawn(BodyFeed { tx }.run(body, stall));
            let stopped = || store_error("audience upload stopped");
            let mut upload = audience::CsvUpload::new(normalizer, merge);
            let mut parsed = Ok(());
            while let Some(chunk) = chunks.recv().await {
                // A blocking thread parses (and stores) what this chunk completes,
                // and is given back: a slow client holds none while it sends.
                let (back, pushed) = tokio::task::spawn_blocking(move || {
                    let pushed = upload.push(chunk);
                    (upload, pushed)
                })
                .await
                .map_err(|_| stopped())?;
                upload = back;
                if let Err(e) = pushed {
                    parsed = Err(e);
                    break;
                }
            }
            // A parser that stopped stops the feed.
            drop(chunks);
            let fed = feeding.await.map_err(|_| stopped())?;
            // A body that failed is the answer, whatever the parser made of it (a
            // cut-off last row is never read as a whole one).
            fed?;
            match parsed {
                Ok(()) => tokio::task::spawn_blocking(move || upload.finish())
                    .await
                    .map_err(|_| stopped())?,
                Err(e) => Err(e),
            }
        }
        "application/json" | "" => {
            let body = read(
                &headers,
                body,
                MAX_AUDIENCE_JSON,
                s.limits.body_timeout,
                &s.budget,
            )
            .await?;
            tokio::task::spawn_blocking(move || {
                audience::load_json(&body.bytes, &normalizer, merge)
            })
            .await
            .map_err(|_| store_error("audience upload stopped"))?
        }
        other => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("Content-Type {other:?}: send text/csv or application/json"),
            ))
        }
    };
    match result {
        Ok(t) => Ok(Json(t)),
        Err(UploadError::Invalid(m)) => Err(bad(m)),
        Err(UploadError::Body(m)) => Err(bad(format!("reading the upload failed: {m}"))),
        Err(UploadError::Db(e)) => Err(store_error(e)),
    }
}

/// Feeds an upload's body to its parser in chunks, as they arrive (a few in flight).
struct BodyFeed {
    tx: tokio::sync::mpsc::Sender<bytes::Bytes>,
}

impl BodyFeed {
    /// Feeds the body's bytes until its end; answers the error that cut it short.
    /// The parser sees the channel close either way; a failed body is told by the
    /// result, so a cut-off last row is never read as a whole one.
    async fn run(self, body: Body, stall: std::time::Duration) -> Result<(), ApiError> {
        self.feed(body, stall).await
    }

    async fn feed(&self, mut body: Body, stall: std::time::Duration) -> Result<(), ApiError> {
        use http_body_util::BodyExt;
        let mut total: u64 = 0;
        loop {
            let frame = match tokio::time::timeout(stall, body.frame()).await {
                Err(_) => {
                    return Err(ApiError::new(
                        StatusCode::REQUEST_TIMEOUT,
                        format!(
                            "upload stalled: no bytes for {} s; the chunks of 5,000 rows stored before the stall stay, send the file again to finish (uploads merge)",
                            stall.as_secs()
                        ),
                    ))
                }
                Ok(None) => return Ok(()),
                Ok(Some(Err(e))) => return Err(bad(format!("failed reading the upload: {e}"))),
                Ok(Some(Ok(f))) => f,
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            total += data.len() as u64;
            if total > MAX_AUDIENCE_CSV {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "audience CSV over 1 GB; the chunks of 5,000 rows stored before the limit stay; split the rest into further uploads (they merge)",
                ));
            }
            // The parser applies back-pressure; it stopped when the channel is closed.
            if self.tx.send(data).await.is_err() {
                return Ok(());
            }
        }
    }
}

/// The body of a send.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendIn {
    /// The send's instant (RFC 3339). Or give `localTime` and `timeZone`.
    #[serde(rename = "scheduledFor")]
    #[schema(example = "2026-06-01T13:00:00Z")]
    scheduled_for: Option<String>,
    /// A wall-clock time `YYYY-MM-DDTHH:MM[:SS]` in `timeZone`. A time skipped by a
    /// DST change is moved forward by the gap (02:30 on a spring-forward night is
    /// 03:30); a time that occurs twice is its first occurrence.
    #[serde(rename = "localTime")]
    #[schema(example = "2026-06-01T09:00")]
    local_time: Option<String>,
    /// IANA time zone of `localTime`.
    #[serde(rename = "timeZone")]
    #[schema(example = "America/New_York")]
    time_zone: Option<String>,
    /// Required; 1 to 256 characters, not blank, no control characters.
    #[serde(rename = "templateName")]
    #[schema(
        example = "mastery_launch_1",
        min_length = 1,
        max_length = 256,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    template_name: Option<String>,
    /// Required; 1 to 256 characters, not blank, no control characters.
    #[schema(
        example = "en_US",
        min_length = 1,
        max_length = 256,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    language: Option<String>,
    /// Keep (include) or skip (exclude) leads with an event of this type at the
    /// send's instant, within the last `within.minutes` if given.
    #[serde(rename = "eventFilter")]
    event_filter: Option<EventFilterIn>,
    /// Apply the latest audience filter received for this send.
    #[serde(rename = "useAudienceFilter", default)]
    use_audience_filter: bool,
}

#[derive(Deserialize, Serialize, utoipa::ToSchema, Clone)]
#[serde(deny_unknown_fields)]
pub struct EventFilterIn {
    /// include or exclude.
    #[schema(example = "exclude")]
    mode: String,
    /// Case-sensitive.
    #[serde(rename = "eventType")]
    #[schema(example = "mastery_purchase")]
    event_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    within: Option<WithinIn>,
}

#[derive(Deserialize, Serialize, utoipa::ToSchema, Clone)]
#[serde(deny_unknown_fields)]
pub struct WithinIn {
    #[schema(minimum = 0, maximum = 52_560_000)]
    minutes: u64,
}

/// Longest window: 100 years of minutes.
const MAX_WITHIN_MINUTES: u64 = 52_560_000;

fn event_filter(f: EventFilterIn) -> Result<EventFilter, ApiError> {
    let mode = Mode::parse(&f.mode).ok_or_else(|| {
        bad(format!(
            "eventFilter.mode {:?}: expected include or exclude",
            f.mode
        ))
    })?;
    if let Some(p) = event_type_problem(&f.event_type) {
        return Err(bad(format!("eventFilter.eventType: {p}")));
    }
    let within = f.within.map(|w| w.minutes);
    if within.is_some_and(|m| m > MAX_WITHIN_MINUTES) {
        return Err(bad(format!(
            "eventFilter.within.minutes is at most {MAX_WITHIN_MINUTES}"
        )));
    }
    Ok(EventFilter {
        mode,
        event_type: f.event_type,
        within_minutes: within,
    })
}

/// The instant of `local` (`YYYY-MM-DDTHH:MM[:SS]`) in IANA zone `zone`, UTC µs.
pub fn resolve_local_time(local: &str, zone: &str) -> Result<i64, String> {
    let tz: chrono_tz::Tz = zone.parse().map_err(|_| {
        format!("timeZone {zone:?} is not an IANA time zone, e.g. America/New_York")
    })?;
    let naive = NaiveDateTime::parse_from_str(local, "%Y-%m-%dT%H:%M")
        .or_else(|_| NaiveDateTime::parse_from_str(local, "%Y-%m-%dT%H:%M:%S"))
        .map_err(|_| {
            format!("localTime {local:?}: expected YYYY-MM-DDTHH:MM, e.g. 2026-06-01T09:00")
        })?;
    let at = match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) => t,
        LocalResult::Ambiguous(first, _) => first,
        LocalResult::None => {
            // Skipped by a DST change: read it with the offset in force before the
            // gap, which moves it forward by the gap, as a wall clock does (02:30 on
            // a spring-forward night in New York is 03:30 EDT).
            let before = tz
                .from_local_datetime(&(naive - chrono::Duration::hours(6)))
                .earliest()
                .ok_or_else(|| format!("localTime {local:?} does not exist in {zone}"))?;
            let offset =
                chrono::Duration::seconds(i64::from(before.offset().fix().local_minus_utc()));
            return Ok((naive - offset).and_utc().timestamp_micros());
        }
    };
    Ok(at.timestamp_micros())
}

/// A send.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SendOut {
    id: i64,
    #[serde(rename = "campaignId")]
    campaign_id: i64,
    /// The instant, UTC.
    #[serde(rename = "scheduledFor")]
    scheduled_for: String,
    #[serde(rename = "localTime", skip_serializing_if = "Option::is_none")]
    local_time: Option<String>,
    #[serde(rename = "timeZone", skip_serializing_if = "Option::is_none")]
    time_zone: Option<String>,
    #[serde(rename = "templateName")]
    template_name: String,
    language: String,
    #[serde(rename = "eventFilter")]
    event_filter: Option<EventFilterIn>,
    #[serde(rename = "useAudienceFilter")]
    use_audience_filter: bool,
    #[serde(rename = "createdAt")]
    created_at: String,
    /// When its eligible set was fixed; null before.
    #[serde(rename = "materializedAt")]
    materialized_at: Option<String>,
    /// Leads of the eligible set with a delivery.
    emitted: u64,
    /// Of those deliveries: succeeded, failed, still pending.
    delivered: u64,
    failed: u64,
    pending: u64,
}

/// Send `x`, its progress read (one send; a page reads its progress at once).
async fn send_out(s: &AppState, x: Send) -> Result<SendOut, ApiError> {
    let progress = campaigns(s)
        .send_progress(x.id)
        .await
        .map_err(store_error)?;
    Ok(send_row(x, progress))
}

fn send_row(x: Send, progress: SendProgress) -> SendOut {
    let SendProgress {
        emitted,
        delivered,
        failed,
        pending,
    } = progress;
    let (local_time, time_zone) = x.time.local.unzip();
    SendOut {
        id: x.id,
        campaign_id: x.campaign_id,
        scheduled_for: format_rfc3339_short_us(x.time.at_us),
        local_time,
        time_zone,
        template_name: x.template_name,
        language: x.language,
        event_filter: x.event_filter.map(|f| EventFilterIn {
            mode: f.mode.as_str().to_owned(),
            event_type: f.event_type,
            within: f.within_minutes.map(|minutes| WithinIn { minutes }),
        }),
        use_audience_filter: x.use_audience_filter,
        created_at: format_rfc3339_ms(x.created_at_ms),
        materialized_at: x.materialized_at_ms.map(format_rfc3339_ms),
        emitted,
        delivered,
        failed,
        pending,
    }
}

fn required_text(field: &str, v: Option<String>) -> Result<String, ApiError> {
    let v = v.ok_or_else(|| bad(format!("{field} is missing")))?;
    check_text(field, &v, MAX_NAME)?;
    Ok(v)
}

/// Add a send to a campaign.
#[utoipa::path(post, path = "/api/v1/campaigns/{id}/sends", tag = "campaigns", security(("api_key" = [])),
    params(("id" = i64, Path, description = "Campaign id")),
    request_body = SendIn,
    responses(
        (status = 201, description = "Created", body = SendOut),
        (status = 400, description = "No instant (or both forms), an unknown time zone, a missing templateName or language, an invalid eventFilter", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such campaign of this organization (another's answers the same)", body = ErrorBody),
        (status = 409, description = "The campaign is completed or cancelled; or an org_limits limit is reached (the message names it)", body = ErrorBody),
        (status = 413, description = "Request body over 64 KB", body = ErrorBody),
        (status = 500, description = "Internal error: the message names an incident under which the server logged the cause", body = ErrorBody),
    ))]
pub async fn create_send(
    State(s): State<AppState>,
    ApiKeyOrg(org): ApiKeyOrg,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let c = load_campaign(&s, org, parse_id("campaign id", &id)?).await?;
    let body = read_small(&s, &headers, body, MAX_BODY).await?;
    let req: SendIn = parse_json(&body.bytes)?;
    if !c.state.takes_sends() {
        return Err(conflict(format!(
            "campaign {} is {}: it takes no more sends",
            c.id,
            c.state.as_str()
        )));
    }
    super::org_limits::sends(&s, c.id).await?;
    let time = match (req.scheduled_for, req.local_time, req.time_zone) {
        (Some(at), None, None) => SendTime {
            at_us: parse_rfc3339_us(&at).ok_or_else(|| {
                bad(format!(
                    "scheduledFor {at:?} is not an RFC 3339 instant, e.g. 2026-06-01T13:00:00Z"
                ))
            })?,
            local: None,
        },
        (None, Some(local), Some(zone)) => SendTime {
            at_us: resolve_local_time(&local, &zone).map_err(bad)?,
            local: Some((local, zone)),
        },
        (None, None, None) => {
            return Err(bad(
                "the send has no time: give scheduledFor (RFC 3339) or localTime with timeZone",
            ))
        }
        _ => {
            return Err(bad(
                "give scheduledFor, or localTime with timeZone, not a mix",
            ))
        }
    };
    let send = Send {
        id: 0,
        campaign_id: c.id,
        org,
        time,
        template_name: required_text("templateName", req.template_name)?,
        language: required_text("language", req.language)?,
        event_filter: req.event_filter.map(event_filter).transpose()?,
        use_audience_filter: req.use_audience_filter,
        created_at_ms: now_ms(),
        materialized_at_ms: None,
        emitted_all: false,
    };
    // The state is checked again in the write: a campaign completed meanwhile takes
    // no send that nothing would ever materialize.
    let cid = c.id;
    let created = campaigns(&s)
        .add_send(send)
        .await
        .map_err(store_error)?
        .map_err(|state| {
            conflict(format!(
                "campaign {cid} is {}: it takes no more sends",
                state.as_str()
            ))
        })?;
    Ok((StatusCode::CREATED, Json(send_out(&s, created).await?)).into_response())
}

/// Where a page of a campaign's sends continues: sends with ids below this one.
#[derive(Serialize, Deserialize)]
struct SendCursor {
    #[serde(rename = "sendsBefore")]
    before: i64,
}

/// A campaign's sends, newest first, a page at a time. A bare array, as it always was:
/// while more follow, a `Link: <…>; rel="next"` header names the next page.
#[utoipa::path(get, path = "/api/v1/campaigns/{id}/sends", tag = "campaigns", security(("api_key" = [])),
    params(
        ("id" = i64, Path, description = "Campaign id"),
        ("limit" = Option<u32>, Query, description = "Page size, 1 to 1000 (default 1000: a client that reads only the body gets every send of a campaign within the default org limit)", minimum = 1, maximum = 1000),
        ("cursor" = Option<String>, Query, description = "Where the page starts: from the Link header of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of sends, newest first", body = [SendOut],
            headers(("Link" = String, description = "`</api/v1/campaigns/{id}/sends?limit=N&cursor=…>; rel=\"next\"` while more follow; absent on the last page"))),
        (status = 400, description = "id is not an integer, or limit or cursor invalid", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such campaign of this organization (another's answers the same)", body = ErrorBody),
        (status = 500, description = "Internal error: the message names an incident under which the server logged the cause", body = ErrorBody),
    ))]
pub async fn list_sends(
    State(s): State<AppState>,
    ApiKeyOrg(org): ApiKeyOrg,
    Path(id): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let c = load_campaign(&s, org, parse_id("campaign id", &id)?).await?;
    let q = super::query_params(pairs, &["limit", "cursor"])?;
    let (mut limit, from) = super::cursor::page_params::<SendCursor>(&q)?;
    // A bare array since it existed: without `limit`, clients that read only the body
    // keep getting every send (up to the default sends_per_campaign).
    if !q.contains_key("limit") {
        limit = super::cursor::MAX_LIMIT;
    }
    let cid = c.id;
    let mut rows = campaigns(&s)
        .sends(cid, from.map(|c| c.before), limit + 1)
        .await
        .map_err(store_error)?;
    let next = super::cursor::cut(&mut rows, limit, |(x, _)| SendCursor { before: x.id });
    let body = Json(
        rows.into_iter()
            .map(|(x, progress)| send_row(x, progress))
            .collect::<Vec<_>>(),
    );
    Ok(match next {
        Some(cursor) => {
            let query = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("limit", &limit.to_string())
                .append_pair("cursor", &cursor)
                .finish();
            let link = format!("</api/v1/campaigns/{cid}/sends?{query}>; rel=\"next\"");
            ([(header::LINK, link)], body).into_response()
        }
        None => body.into_response(),
    })
}

/// One send, with its progress.
#[utoipa::path(get, path = "/api/v1/campaigns/{id}/sends/{sendId}", tag = "campaigns", security(("api_key" = [])),
    params(("id" = i64, Path, description = "Campaign id"), ("sendId" = i64, Path, description = "Send id")),
    responses(
        (status = 200, description = "The send", body = SendOut),
        (status = 400, description = "An id is not an integer", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such campaign or send of this organization (another's answers the same)", body = ErrorBody),
        (status = 500, description = "Internal error: the message names an incident under which the server logged the cause", body = ErrorBody),
    ))]
pub async fn get_send(
    State(s): State<AppState>,
    ApiKeyOrg(org): ApiKeyOrg,
    Path((id, send)): Path<(String, String)>,
) -> Result<Json<SendOut>, ApiError> {
    let c = load_campaign(&s, org, parse_id("campaign id", &id)?).await?;
    let x = load_send(&s, &c, parse_id("send id", &send)?).await?;
    Ok(Json(send_out(&s, x).await?))
}

/// The eligibility stream's last line.
#[derive(Serialize)]
struct SummaryLine {
    summary: leadstream_pipeline::eligibility::Summary,
}

/// A line of the eligibility stream.
#[derive(Serialize)]
struct EligibleLine<'a> {
    #[serde(rename = "phoneE164")]
    phone_e164: String,
    #[serde(rename = "externalId", skip_serializing_if = "Option::is_none")]
    external_id: Option<&'a str>,
}

/// Which leads of the campaign's audience are eligible for the send at `at` (default:
/// the send's instant), as NDJSON: one `{phoneE164, externalId?}` line per lead, then
/// `{"summary": {audience, optedOut, audienceFilter, eventFilter, eligible}}` — the
/// leads in, those each step dropped, and those left. Emits nothing.
#[utoipa::path(post, path = "/api/v1/campaigns/{id}/sends/{sendId}/eligible", tag = "campaigns", security(("api_key" = [])),
    params(
        ("id" = i64, Path, description = "Campaign id"),
        ("sendId" = i64, Path, description = "Send id"),
        ("at" = Option<super::deliveries::InstantParam>, Query, description = "RFC 3339 instant to evaluate at; empty or absent: the send's instant"),
        ("engine" = Option<String>, Query, description = "index (the in-process event index) or clickhouse (one query; needs ClickHouse configured); empty or absent: as sends.eligibility says", pattern = "^(index|clickhouse)?$"),
    ),
    responses(
        (status = 200, description = "NDJSON: the eligible leads, then the summary", content_type = "application/x-ndjson", body = String,
            headers(("X-Leadstream-Eligibility-Engine" = String, description = "index or clickhouse: what answered"))),
        (status = 400, description = "at is not an RFC 3339 instant, an id is not an integer, or engine=clickhouse without ClickHouse configured", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such campaign or send of this organization (another's answers the same)", body = ErrorBody),
        (status = 500, description = "Internal error: the message names an incident under which the server logged the cause", body = ErrorBody),
        (status = 503, description = "The event index is still warming, or ClickHouse is unavailable; retry", body = ErrorBody),
    ))]
pub async fn eligible(
    State(s): State<AppState>,
    ApiKeyOrg(org): ApiKeyOrg,
    Path((id, send)): Path<(String, String)>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let q = super::query_params(pairs, &["at", "engine"])?;
    let engine = match q.get("engine").map(|e| e.trim()).filter(|e| !e.is_empty()) {
        None => None,
        Some(e) => Some(EligibilityEngine::parse(e).ok_or_else(|| {
            bad(format!(
                "engine {e:?}: expected index or clickhouse (or leave it out)"
            ))
        })?),
    };
    let c = load_campaign(&s, org, parse_id("campaign id", &id)?).await?;
    let x = load_send(&s, &c, parse_id("send id", &send)?).await?;
    let at_us = match q.get("at").map(|a| a.trim()).filter(|a| !a.is_empty()) {
        None => x.time.at_us,
        Some(a) => parse_rfc3339_us(a).ok_or_else(|| {
            bad(format!(
                "at {a:?} is not an RFC 3339 instant, e.g. 2026-06-01T13:00:00Z"
            ))
        })?,
    };
    if !campaigns(&s).is_ready() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "warming the event index from the store; retry shortly",
        ));
    }
    let crate::campaigns::Eligible {
        leads,
        summary,
        engine: used,
        ..
    } = match campaigns(&s).eligible(&x, at_us, engine).await {
        Ok(r) => r,
        Err(e @ EligibilityError::NoClickHouse) => return Err(bad(e.to_string())),
        Err(EligibilityError::ClickHouse(e)) if e.is_unavailable() => {
            return Err(super::incident(
                StatusCode::SERVICE_UNAVAILABLE,
                "ClickHouse is unavailable; retry",
                &e,
            ))
        }
        Err(e) => return Err(store_error(e)),
    };
    // Written in chunks as the client reads.
    let stream = futures_util::stream::iter(
        leads
            .chunks(4096)
            .map(|chunk| {
                let mut buf = Vec::with_capacity(chunk.len() * 40);
                for l in chunk {
                    let line = EligibleLine {
                        phone_e164: l.phone.to_string(),
                        external_id: l.external_id.as_deref(),
                    };
                    serde_json::to_writer(&mut buf, &line).expect("a line serializes");
                    buf.push(b'\n');
                }
                Ok::<_, std::convert::Infallible>(bytes::Bytes::from(buf))
            })
            .chain(std::iter::once(Ok(bytes::Bytes::from(format!(
                "{}\n",
                serde_json::to_string(&SummaryLine { summary }).expect("a summary serializes")
            )))))
            .collect::<Vec<_>>(),
    );
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (
                header::HeaderName::from_static("x-leadstream-eligibility-engine"),
                used.as_str(),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// Materialize the send now: fix its eligible set at its instant (the first time)
/// and publish a `campaign_send` delivery per lead not emitted yet. Idempotent per
/// (send, lead): a second call emits nothing new.
#[utoipa::path(post, path = "/api/v1/campaigns/{id}/sends/{sendId}/materialize", tag = "campaigns", security(("api_key" = [])),
    params(("id" = i64, Path, description = "Campaign id"), ("sendId" = i64, Path, description = "Send id")),
    responses(
        (status = 200, description = "What this run emitted and what was emitted before", body = Materialized),
        (status = 400, description = "An id is not an integer", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such campaign or send of this organization (another's answers the same)", body = ErrorBody),
        (status = 409, description = "The campaign is paused or cancelled", body = ErrorBody),
        (status = 500, description = "Internal error: the message names an incident under which the server logged the cause", body = ErrorBody),
        (status = 503, description = "The event index is still warming, or ClickHouse is unavailable; retry", body = ErrorBody),
    ))]
pub async fn materialize(
    State(s): State<AppState>,
    ApiKeyOrg(org): ApiKeyOrg,
    Path((id, send)): Path<(String, String)>,
) -> Result<Json<Materialized>, ApiError> {
    let c = load_campaign(&s, org, parse_id("campaign id", &id)?).await?;
    let x = load_send(&s, &c, parse_id("send id", &send)?).await?;
    if matches!(c.state, CampaignState::Paused | CampaignState::Cancelled) {
        return Err(conflict(format!(
            "campaign {} is {}: its sends are not materialized",
            c.id,
            c.state.as_str()
        )));
    }
    if !campaigns(&s).is_ready() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "warming the event index from the store; retry shortly",
        ));
    }
    match campaigns(&s).materialize(x.id).await {
        Ok(m) => Ok(Json(m)),
        Err(MaterializeError::Eligibility(EligibilityError::ClickHouse(e)))
            if e.is_unavailable() =>
        {
            Err(super::incident(
                StatusCode::SERVICE_UNAVAILABLE,
                "ClickHouse is unavailable; retry",
                &e,
            ))
        }
        Err(e @ (MaterializeError::NoEndpoint(_) | MaterializeError::Stopped(_))) => {
            Err(conflict(e.to_string()))
        }
        Err(MaterializeError::NoSend(n)) => {
            Err(ApiError::new(StatusCode::NOT_FOUND, format!("no send {n}")))
        }
        Err(e) => Err(store_error(e)),
    }
}

/// The audience-filter webhook's body.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct AudienceFilterIn {
    #[serde(rename = "campaignId")]
    campaign_id: i64,
    #[serde(rename = "sendId")]
    send_id: i64,
    /// include or exclude.
    #[schema(example = "include")]
    mode: String,
    /// Each `{externalId}` (case-sensitive) or `{phoneE164}`.
    #[schema(value_type = Vec<Object>)]
    leads: super::body::Capped<LeadRef, MAX_FILTER_LEADS>,
}

/// One lead of an audience filter: read as these two fields only (others are skipped
/// unread), so a filter's memory is bounded by its lead count.
#[derive(Deserialize, Debug)]
struct LeadRef {
    #[serde(rename = "externalId")]
    external_id: Option<String>,
    #[serde(rename = "phoneE164")]
    phone: Option<String>,
}

/// The audience-filter webhook's answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AudienceFilterOut {
    #[schema(example = "accepted")]
    status: &'static str,
    /// Distinct leads in the request.
    #[serde(rename = "leadCount")]
    lead_count: u64,
}

/// Receive a send's audience filter: the latest one wins. Accepted until 5 minutes
/// before the send's instant.
#[utoipa::path(post, path = "/api/v1/webhooks/campaigns/audience-filter", tag = "campaigns", security(("api_key" = [])),
    request_body = AudienceFilterIn,
    responses(
        (status = 200, description = "Accepted", body = AudienceFilterOut),
        (status = 400, description = "A field is missing or invalid (mode, a lead without externalId or phoneE164, a bad phone)", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such campaign or send of this organization (another's answers the same)", body = ErrorBody),
        (status = 409, description = "Less than 5 minutes before the send's instant, or the send is materialized", body = ErrorBody),
        (status = 413, description = "Request body over 10 MB", body = ErrorBody),
        (status = 500, description = "Internal error: the message names an incident under which the server logged the cause", body = ErrorBody),
    ))]
pub async fn audience_filter(
    State(s): State<AppState>,
    ApiKeyOrg(org): ApiKeyOrg,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<AudienceFilterOut>, ApiError> {
    let body = read_small(&s, &headers, body, MAX_LIST_BODY).await?;
    let req: AudienceFilterIn = parse_json(&body.bytes)?;
    let mode = Mode::parse(&req.mode)
        .ok_or_else(|| bad(format!("mode {:?}: expected include or exclude", req.mode)))?;
    let normalizer = s.preparer.normalizer();
    let mut external_ids: HashSet<String> = HashSet::new();
    let mut phones: HashSet<u64> = HashSet::new();
    for (i, lead) in req.leads.0.into_iter().enumerate() {
        match (lead.external_id, lead.phone.as_deref()) {
            (Some(e), _) => {
                external_ids.insert(e);
            }
            (None, Some(p)) => match normalizer.normalize(p) {
                Some(p) => {
                    phones.insert(p.0);
                }
                None => {
                    return Err(bad(format!(
                        "leads[{i}].phoneE164 {p:?} is not a phone number"
                    )))
                }
            },
            (None, None) => {
                return Err(bad(format!(
                    "leads[{i}] has neither externalId nor phoneE164 (strings)"
                )))
            }
        }
    }
    let c = load_campaign(&s, org, req.campaign_id).await?;
    let x = load_send(&s, &c, req.send_id).await?;
    let now_us = now_ms() * 1000;
    if now_us > x.time.at_us - FILTER_CUTOFF_US || x.materialized_at_ms.is_some() {
        return Err(conflict(format!(
            "too late: audience filters for send {} were accepted until 5 minutes before its instant {}",
            x.id,
            format_rfc3339_short_us(x.time.at_us)
        )));
    }
    let lead_count = (external_ids.len() + phones.len()) as u64;
    let ext: Vec<String> = external_ids.into_iter().collect();
    let ph: Vec<Phone> = phones.into_iter().map(Phone).collect();
    let sid = x.id;
    // Checked again in the write: a materialization in between fixed the set.
    let accepted = campaigns(&s)
        .put_audience_filter(sid, mode, ext, ph)
        .await
        .map_err(store_error)?;
    if !accepted {
        return Err(conflict(format!(
            "too late: send {sid} was materialized; audience filters are accepted until 5 minutes before its instant"
        )));
    }
    Ok(Json(AudienceFilterOut {
        status: "accepted",
        lead_count,
    }))
}

/// Phones to opt out or back in.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OptOutsIn {
    /// 1 to 10,000 phones, normalized as lead events are.
    #[schema(example = json!(["+15551234567"]))]
    #[schema(value_type = Vec<String>)]
    phones: super::body::Capped<String, MAX_OPT_OUT_PHONES>,
}

/// How many opt-outs changed.
#[derive(Serialize, utoipa::ToSchema)]
pub struct OptOutCount {
    count: u64,
}

async fn opt_out_phones(
    s: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Vec<Phone>, ApiError> {
    let body = read_small(s, headers, body, MAX_LIST_BODY).await?;
    let req: OptOutsIn = parse_json(&body.bytes).map_err(|e| {
        if e.message.contains("more than") {
            bad(format!("phones must hold 1 to {MAX_OPT_OUT_PHONES} phones"))
        } else {
            e
        }
    })?;
    if req.phones.0.is_empty() {
        return Err(bad(format!(
            "phones must hold 1 to {MAX_OPT_OUT_PHONES} phones"
        )));
    }
    let n = s.preparer.normalizer();
    req.phones
        .0
        .iter()
        .enumerate()
        .map(|(i, p)| {
            n.normalize(p)
                .ok_or_else(|| bad(format!("phones[{i}] {p:?} is not a phone number")))
        })
        .collect()
}

/// Opt phones out of every campaign of the org.
#[utoipa::path(post, path = "/api/v1/opt-outs", tag = "campaigns", security(("api_key" = [])),
    request_body = OptOutsIn,
    responses(
        (status = 200, description = "How many phones were newly opted out", body = OptOutCount),
        (status = 400, description = "No phones, too many, or one that is not a phone number (nothing changed)", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 413, description = "Request body over 10 MB", body = ErrorBody),
        (status = 500, description = "Internal error: the message names an incident under which the server logged the cause", body = ErrorBody),
    ))]
pub async fn add_opt_outs(
    State(s): State<AppState>,
    ApiKeyOrg(org): ApiKeyOrg,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<OptOutCount>, ApiError> {
    let phones = opt_out_phones(&s, &headers, body).await?;
    let count = campaigns(&s)
        .add_opt_outs(org, phones)
        .await
        .map_err(store_error)?;
    Ok(Json(OptOutCount { count }))
}

/// Remove opt-outs.
#[utoipa::path(delete, path = "/api/v1/opt-outs", tag = "campaigns", security(("api_key" = [])),
    request_body = OptOutsIn,
    responses(
        (status = 200, description = "How many opt-outs were removed", body = OptOutCount),
        (status = 400, description = "No phones, too many, or one that is not a phone number (nothing changed)", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 413, description = "Request body over 10 MB", body = ErrorBody),
        (status = 500, description = "Internal error: the message names an incident under which the server logged the cause", body = ErrorBody),
    ))]
pub async fn remove_opt_outs(
    State(s): State<AppState>,
    ApiKeyOrg(org): ApiKeyOrg,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<OptOutCount>, ApiError> {
    let phones = opt_out_phones(&s, &headers, body).await?;
    let count = campaigns(&s)
        .remove_opt_outs(org, phones)
        .await
        .map_err(store_error)?;
    Ok(Json(OptOutCount { count }))
}

/// Whether a phone is opted out.
#[derive(Serialize, utoipa::ToSchema)]
pub struct OptOutStatus {
    #[serde(rename = "phoneE164")]
    phone_e164: String,
    #[serde(rename = "optedOut")]
    opted_out: bool,
    /// When it opted out.
    #[serde(skip_serializing_if = "Option::is_none")]
    since: Option<String>,
}

/// Look up one phone's opt-out.
#[utoipa::path(get, path = "/api/v1/opt-outs", tag = "campaigns", security(("api_key" = [])),
    params(("phone" = String, Query, description = "The phone, in any form lead events accept")),
    responses(
        (status = 200, description = "Its opt-out state", body = OptOutStatus),
        (status = 400, description = "phone missing or not a phone number", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 500, description = "Internal error: the message names an incident under which the server logged the cause", body = ErrorBody),
    ))]
pub async fn get_opt_out(
    State(s): State<AppState>,
    ApiKeyOrg(org): ApiKeyOrg,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<OptOutStatus>, ApiError> {
    let q = super::query_params(pairs, &["phone"])?;
    let raw = q
        .get("phone")
        .ok_or_else(|| bad("phone is missing: GET /api/v1/opt-outs?phone=+15551234567"))?;
    let phone = s
        .preparer
        .normalizer()
        .normalize(raw)
        .ok_or_else(|| bad(format!("phone {raw:?} is not a phone number")))?;
    let since = campaigns(&s)
        .opt_out_since(org, phone)
        .await
        .map_err(store_error)?;
    Ok(Json(OptOutStatus {
        phone_e164: phone.to_string(),
        opted_out: since.is_some(),
        since: since.map(format_rfc3339_ms),
    }))
}
