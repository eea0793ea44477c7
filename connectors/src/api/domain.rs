//! Domain events in (`POST /api/v1/events`), contacts, and seed 003/004's triggers
//! with their webhook actions and each action's log.

use super::auth::ApiKeyOrg;
use super::body::{parse_json, read_small};
use super::deliveries::ListPage;
use super::webhooks::{endpoint_error, target_problem};
use super::{bad, check_text, parse_id, store_error, ApiError, AppState, ErrorBody, MAX_NAME};
use crate::delivery::endpoints::EndpointPatch;
use crate::delivery::model::EndpointKind;
use crate::domain::events::{self, class_of, trigger_type_list};
use crate::domain::store::{self, Action, Contact, Trigger};
use crate::domain::{action_subscription, Domain};
use crate::writer::now_ms;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use leadstream_pipeline::time::format_rfc3339_ms;
use leadstream_pipeline::OrgId;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Largest domain event body.
const MAX_EVENT_BODY: usize = 1024 * 1024;
/// Largest trigger, action or contact body.
const MAX_BODY: usize = 64 * 1024;
/// Longest trigger description.
const MAX_DESCRIPTION: usize = 2000;

/// `POST /api/v1/events`, as the router and the scope check name it.
pub const EVENTS_PATH: &str = "/api/v1/events";

fn domain(s: &AppState) -> &Domain {
    &s.domain
}

/// The answer to a domain event.
#[derive(Serialize, utoipa::ToSchema)]
pub struct EventTaken {
    /// The event's id: the one given, or one made up.
    id: String,
}

/// Take a calendar or booking event: `appointment_booked` (seed 000's fields at the top
/// level) or one of the 20 trigger types with its seed 003 object. A repeated `id`
/// causes nothing new.
#[utoipa::path(post, path = "/api/v1/events", tag = "domain events", security(("api_key" = [])),
    request_body(content = Object, description = "{id?, type, occurredAt, ...}: for appointment_booked startTime, endTime, timeZone, contactPhoneNumber, contact*, botId, botIntegrationId; for a trigger type its object under event, participant, booking_page, booking_request or message, or phone/email for participant_added_to_stop_list"),
    responses(
        (status = 202, description = "Taken: what it causes is durable and on its way", body = EventTaken),
        (status = 400, description = "A field is missing or malformed (the message names it)", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 413, description = "Body over 1 MB", body = ErrorBody),
        (status = 500, description = "Internal error: the message names an incident under which the server logged the cause", body = ErrorBody),
    ))]
pub async fn take_event(
    State(s): State<AppState>,
    ApiKeyOrg(org): ApiKeyOrg,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_small(&s, &headers, body, MAX_EVENT_BODY).await?;
    let normalizer = s.preparer.normalizer();
    let ev = events::parse(
        &body.bytes,
        |p| crate::domain::contact_phone(normalizer, p),
        || crate::delivery::model::new_id("dev_", now_ms()),
    )
    .map_err(bad)?;
    let taken = domain(&s).take(org, ev).await.map_err(|e| match e {
        crate::delivery::PublishError::Store(e) => store_error(e),
    })?;
    crate::metrics::domain_events("event", if taken.new { "taken" } else { "repeated" }, 1);
    Ok((StatusCode::ACCEPTED, Json(EventTaken { id: taken.id })).into_response())
}

/// A contact.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContactOut {
    phone_e164: String,
    email: Option<String>,
    full_name: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    #[schema(value_type = Option<Object>)]
    metadata: Option<Box<RawValue>>,
    updated_at: String,
}

fn contact_out(c: Contact) -> ContactOut {
    ContactOut {
        metadata: c.metadata.and_then(|m| RawValue::from_string(m).ok()),
        phone_e164: c.phone,
        email: c.email,
        full_name: c.full_name,
        first_name: c.first_name,
        last_name: c.last_name,
        updated_at: format_rfc3339_ms(c.updated_at_ms),
    }
}

/// A contact's fields; each absent or null one is unknown.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContactIn {
    email: Option<String>,
    full_name: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    #[schema(value_type = Option<Object>)]
    metadata: Option<Box<RawValue>>,
}

pub(super) fn contact_phone(s: &AppState, raw: &str) -> Result<String, ApiError> {
    crate::domain::contact_phone(s.preparer.normalizer(), raw).ok_or_else(|| {
        bad(format!(
            "phoneE164 {raw:?} is not a phone number (E.164, e.g. +14155550100)"
        ))
    })
}

/// Replace a contact's fields (what seed payloads take their `contact*` fields from).
#[utoipa::path(put, path = "/api/v1/contacts/{phoneE164}", tag = "domain events", security(("api_key" = [])),
    params(("phoneE164" = String, Path, description = "The contact's phone, normalized as ingest does")),
    request_body = ContactIn,
    responses(
        (status = 200, description = "The contact as stored", body = ContactOut),
        (status = 400, description = "Phone or a field invalid (named)", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 500, description = "Internal error: the message names an incident under which the server logged the cause", body = ErrorBody),
    ))]
pub async fn put_contact(
    State(s): State<AppState>,
    ApiKeyOrg(org): ApiKeyOrg,
    Path(phone): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<ContactOut>, ApiError> {
    let phone = contact_phone(&s, &phone)?;
    let body = read_small(&s, &headers, body, MAX_BODY).await?;
    let req: ContactIn = parse_json(&body.bytes)?;
    let metadata = match req.metadata {
        Some(m) if m.get() == "null" => None,
        Some(m) if m.get().trim_start().starts_with('{') => Some(m.get().to_owned()),
        Some(_) => return Err(bad("metadata must be an object or null")),
        None => None,
    };
    let c = Contact {
        phone,
        email: req.email,
        full_name: req.full_name,
        first_name: req.first_name,
        last_name: req.last_name,
        metadata,
        updated_at_ms: now_ms(),
    };
    let out = c.clone();
    domain(&s).put_contact(org, c).await.map_err(store_error)?;
    Ok(Json(contact_out(out)))
}

/// A contact of the org.
#[utoipa::path(get, path = "/api/v1/contacts/{phoneE164}", tag = "domain events", security(("api_key" = [])),
    params(("phoneE164" = String, Path, description = "The contact's phone, normalized as ingest does")),
    responses(
        (status = 200, description = "The contact", body = ContactOut),
        (status = 400, description = "Not a valid phone number", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such contact", body = ErrorBody),
        (status = 500, description = "Internal error: the message names an incident under which the server logged the cause", body = ErrorBody),
    ))]
pub async fn get_contact(
    State(s): State<AppState>,
    ApiKeyOrg(org): ApiKeyOrg,
    Path(phone): Path<String>,
) -> Result<Json<ContactOut>, ApiError> {
    let phone = contact_phone(&s, &phone)?;
    let c = domain(&s)
        .contact(org, phone.clone())
        .await
        .map_err(store_error)?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no contact {phone}")))?;
    Ok(Json(contact_out(c)))
}

/// A trigger.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TriggerOut {
    id: i64,
    /// One of the 20 trigger types.
    #[serde(rename = "type")]
    kind: String,
    name: String,
    description: Option<String>,
    enabled: bool,
    created_at: String,
    updated_at: String,
}

fn trigger_out(t: Trigger) -> TriggerOut {
    TriggerOut {
        id: t.id,
        kind: t.kind,
        name: t.name,
        description: t.description,
        enabled: t.enabled,
        created_at: format_rfc3339_ms(t.created_at_ms),
        updated_at: format_rfc3339_ms(t.updated_at_ms),
    }
}

/// A trigger's fields (on `PUT`, an absent one is kept).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerIn {
    #[serde(rename = "type")]
    kind: Option<String>,
    name: Option<String>,
    #[serde(default, with = "serde_with_null")]
    #[schema(value_type = Option<String>)]
    description: Option<Option<String>>,
    enabled: Option<bool>,
}

/// `Some(None)` for an explicit `null`, `None` for an absent field.
mod serde_with_null {
    use serde::{Deserialize, Deserializer};
    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<String>>, D::Error> {
        Ok(Some(Option::<String>::deserialize(d)?))
    }
}

fn check_trigger(t: &Trigger) -> Result<(), ApiError> {
    if class_of(&t.kind).is_none() {
        return Err(bad(format!(
            "type {:?} is not a trigger type: one of {}",
            t.kind,
            trigger_type_list()
        )));
    }
    check_text("name", &t.name, MAX_NAME)?;
    if let Some(d) = &t.description {
        if d.chars().count() > MAX_DESCRIPTION {
            return Err(bad(format!(
                "description is over {MAX_DESCRIPTION} characters"
            )));
        }
    }
    Ok(())
}

async fn load_trigger(s: &AppState, org: OrgId, id: &str) -> Result<Trigger, ApiError> {
    let id = parse_id("trigger id", id)?;
    let t = domain(s).trigger(id).await.map_err(store_error)?;
    // Another org's trigger answers as a missing one: ids are sequential across orgs.
    match t {
        Some(t) if t.org == org => Ok(t),
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no trigger {id}"),
        )),
    }
}

/// Create a trigger: a type of domain event whose actions run when one happens.
#[utoipa::path(post, path = "/api/v1/triggers", tag = "triggers", security(("api_key" = [])),
    request_body = TriggerIn,
    responses(
        (status = 201, description = "Created", body = TriggerOut),
        (status = 400, description = "type not one of the 20 trigger types (the message lists them), or name missing or invalid", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 409, description = "An org_limits limit is reached (the message names it)", body = ErrorBody),
        (status = 500, description = "Internal error: the message names an incident under which the server logged the cause", body = ErrorBody),
    ))]
pub async fn create_trigger(
    State(s): State<AppState>,
    ApiKeyOrg(org): ApiKeyOrg,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_small(&s, &headers, body, MAX_BODY).await?;
    let req: TriggerIn = parse_json(&body.bytes)?;
    let now = now_ms();
    let t = Trigger {
        id: 0,
        org,
        kind: req
            .kind
            .ok_or_else(|| bad(format!("type is missing: one of {}", trigger_type_list())))?,
        name: req.name.ok_or_else(|| bad("name is missing"))?,
        description: req.description.flatten(),
        enabled: req.enabled.unwrap_or(true),
        created_at_ms: now,
        updated_at_ms: now,
    };
    check_trigger(&t)?;
    super::org_limits::triggers(&s, org).await?;
    let t = domain(&s).insert_trigger(t).await.map_err(store_error)?;
    Ok((StatusCode::CREATED, Json(trigger_out(t))).into_response())
}

/// A page of the org's triggers.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TriggerList {
    data: Vec<TriggerOut>,
    /// Pass as `cursor` for the next page; null on the last.
    #[serde(rename = "nextCursor")]
    next_cursor: Option<String>,
}

/// Where a page of triggers continues: ids below this one (newest first).
#[derive(Serialize, Deserialize)]
struct TriggerCursor {
    #[serde(rename = "triggersBefore")]
    before: i64,
}

/// The org's triggers, newest first, a page at a time.
#[utoipa::path(get, path = "/api/v1/triggers", tag = "triggers", security(("api_key" = [])),
    params(
        ("limit" = Option<u32>, Query, description = "Page size, 1 to 1000 (default 50)", minimum = 1, maximum = 1000),
        ("cursor" = Option<String>, Query, description = "nextCursor of the previous page"),
    ),
    responses(
        (status = 200, description = "Newest first", body = TriggerList),
        (status = 400, description = "limit or cursor invalid", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 500, description = "Internal error: the message names an incident under which the server logged the cause", body = ErrorBody),
    ))]
pub async fn list_triggers(
    State(s): State<AppState>,
    ApiKeyOrg(org): ApiKeyOrg,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<TriggerList>, ApiError> {
    let q = super::query_params(pairs, &["limit", "cursor"])?;
    let (limit, from) = super::cursor::page_params::<TriggerCursor>(&q)?;
    let mut rows = domain(&s)
        .triggers(org, from.map(|c| c.before), limit + 1)
        .await
        .map_err(store_error)?;
    let next_cursor = super::cursor::cut(&mut rows, limit, |t| TriggerCursor { before: t.id });
    Ok(Json(TriggerList {
        data: rows.into_iter().map(trigger_out).collect(),
        next_cursor,
    }))
}

/// One trigger.
#[utoipa::path(get, path = "/api/v1/triggers/{id}", tag = "triggers", security(("api_key" = [])),
    params(("id" = i64, Path, description = "Trigger id")),
    responses(
        (status = 200, description = "The trigger", body = TriggerOut),
        (status = 400, description = "id not an integer", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such trigger of this organization (another's answers the same)", body = ErrorBody),
    ))]
pub async fn get_trigger(
    State(s): State<AppState>,
    ApiKeyOrg(org): ApiKeyOrg,
    Path(id): Path<String>,
) -> Result<Json<TriggerOut>, ApiError> {
    Ok(Json(trigger_out(load_trigger(&s, org, &id).await?)))
}

/// Change a trigger: each field given replaces the current one; `enabled: false`
/// stops it without deleting it.
#[utoipa::path(put, path = "/api/v1/triggers/{id}", tag = "triggers", security(("api_key" = [])),
    params(("id" = i64, Path, description = "Trigger id")),
    request_body = TriggerIn,
    responses(
        (status = 200, description = "The trigger as changed", body = TriggerOut),
        (status = 400, description = "A field is invalid (named)", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such trigger of this organization (another's answers the same)", body = ErrorBody),
    ))]
pub async fn put_trigger(
    State(s): State<AppState>,
    ApiKeyOrg(org): ApiKeyOrg,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<TriggerOut>, ApiError> {
    let mut t = load_trigger(&s, org, &id).await?;
    let body = read_small(&s, &headers, body, MAX_BODY).await?;
    let req: TriggerIn = parse_json(&body.bytes)?;
    if let Some(k) = req.kind {
        t.kind = k;
    }
    if let Some(n) = req.name {
        t.name = n;
    }
    if let Some(d) = req.description {
        t.description = d;
    }
    if let Some(e) = req.enabled {
        t.enabled = e;
    }
    t.updated_at_ms = now_ms();
    check_trigger(&t)?;
    let out = t.clone();
    domain(&s).update_trigger(t).await.map_err(store_error)?;
    Ok(Json(trigger_out(out)))
}

/// Delete a trigger with its actions (and their endpoints).
#[utoipa::path(delete, path = "/api/v1/triggers/{id}", tag = "triggers", security(("api_key" = [])),
    params(("id" = i64, Path, description = "Trigger id")),
    responses(
        (status = 200, description = "Deleted", body = Deleted),
        (status = 400, description = "id not an integer", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such trigger of this organization (another's answers the same)", body = ErrorBody),
    ))]
pub async fn delete_trigger(
    State(s): State<AppState>,
    ApiKeyOrg(org): ApiKeyOrg,
    Path(id): Path<String>,
) -> Result<Json<Deleted>, ApiError> {
    let t = load_trigger(&s, org, &id).await?;
    domain(&s)
        .delete_trigger(org, t.id)
        .await
        .map_err(store_error)?;
    Ok(Json(Deleted {
        id: t.id,
        deleted: true,
    }))
}

/// What a delete did.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Deleted {
    id: i64,
    deleted: bool,
}

/// A trigger's webhook action.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActionOut {
    id: i64,
    trigger_id: i64,
    /// Always `webhook`.
    #[serde(rename = "type")]
    kind: String,
    url: String,
    name: String,
    enabled: bool,
    /// The delivery engine's endpoint its runs go to (its signing secret:
    /// `GET /api/webhooks/{endpointId}/secret`).
    endpoint_id: i64,
    created_at: String,
    updated_at: String,
}

fn action_out(a: Action) -> ActionOut {
    ActionOut {
        id: a.id,
        trigger_id: a.trigger_id,
        kind: a.kind,
        url: a.url,
        name: a.name,
        enabled: a.enabled,
        endpoint_id: a.endpoint_id,
        created_at: format_rfc3339_ms(a.created_at_ms),
        updated_at: format_rfc3339_ms(a.updated_at_ms),
    }
}

/// An action's fields (on `PUT`, an absent one is kept).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionIn {
    /// `webhook`, the one action type.
    #[serde(rename = "type")]
    kind: Option<String>,
    url: Option<String>,
    name: Option<String>,
    enabled: Option<bool>,
}

fn check_kind(kind: Option<&str>) -> Result<(), ApiError> {
    match kind {
        None | Some("webhook") => Ok(()),
        Some(other) => Err(bad(format!(
            "type {other:?} is not an action type: the one action type is webhook"
        ))),
    }
}

async fn load_action(
    s: &AppState,
    org: OrgId,
    trigger: &str,
    action: &str,
) -> Result<(Trigger, Action), ApiError> {
    let t = load_trigger(s, org, trigger).await?;
    let id = parse_id("action id", action)?;
    let a = domain(s)
        .action(id)
        .await
        .map_err(store_error)?
        .filter(|a| a.trigger_id == t.id)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("trigger {} has no action {id}", t.id),
            )
        })?;
    Ok((t, a))
}

/// Add a webhook action to a trigger: each event of the trigger's type then POSTs
/// seed 003's payload to `url`, signed and retried by the delivery engine.
#[utoipa::path(post, path = "/api/v1/triggers/{id}/actions", tag = "triggers", security(("api_key" = [])),
    params(("id" = i64, Path, description = "Trigger id")),
    request_body = ActionIn,
    responses(
        (status = 201, description = "Created", body = ActionOut),
        (status = 400, description = "type not webhook; url missing, not http(s) or private; name invalid", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such trigger of this organization (another's answers the same)", body = ErrorBody),
        (status = 409, description = "An org_limits limit is reached (the message names it)", body = ErrorBody),
    ))]
pub async fn create_action(
    State(s): State<AppState>,
    ApiKeyOrg(org): ApiKeyOrg,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let t = load_trigger(&s, org, &id).await?;
    let body = read_small(&s, &headers, body, MAX_BODY).await?;
    let req: ActionIn = parse_json(&body.bytes)?;
    check_kind(req.kind.as_deref())?;
    let url = req
        .url
        .ok_or_else(|| bad("url is missing: where the action POSTs"))?;
    if let Some(p) = target_problem(&s, "url", &url) {
        return Err(bad(p));
    }
    let name = req.name.unwrap_or_else(|| format!("{} webhook", t.kind));
    check_text("name", &name, MAX_NAME)?;
    super::org_limits::actions(&s, t.id).await?;
    super::org_limits::endpoints(&s, org).await?;
    let now = now_ms();
    // The endpoint's one subscription names the endpoint itself, so it is set after
    // the insert; until then it is subscribed to a type nothing publishes either.
    let endpoints = s.engine.endpoints();
    let e = endpoints
        .create_subscribed(
            org,
            EndpointKind::Registry,
            url.clone(),
            Some(vec![format!("trigger-action:new:{}", uuid::Uuid::new_v4())]),
            Some(format!("trigger {} action {name}", t.id)),
            now,
        )
        .await
        .map_err(endpoint_error)?;
    endpoints
        .patch(
            org,
            e.id,
            EndpointPatch {
                event_types: Some(Some(vec![action_subscription(e.id)])),
                ..EndpointPatch::default()
            },
            now,
        )
        .await
        .map_err(endpoint_error)?;
    let a = Action {
        id: 0,
        trigger_id: t.id,
        kind: "webhook".into(),
        url,
        name,
        enabled: req.enabled.unwrap_or(true),
        endpoint_id: e.id,
        created_at_ms: now,
        updated_at_ms: now,
    };
    let a = domain(&s).insert_action(a).await.map_err(store_error)?;
    Ok((StatusCode::CREATED, Json(action_out(a))).into_response())
}

/// A page of a trigger's actions.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ActionList {
    data: Vec<ActionOut>,
    /// Pass as `cursor` for the next page; null on the last.
    #[serde(rename = "nextCursor")]
    next_cursor: Option<String>,
}

/// Where a page of actions continues: ids above this one (oldest first).
#[derive(Serialize, Deserialize)]
struct ActionCursor {
    #[serde(rename = "actionsAfter")]
    after: i64,
}

/// A trigger's actions, oldest first, a page at a time.
#[utoipa::path(get, path = "/api/v1/triggers/{id}/actions", tag = "triggers", security(("api_key" = [])),
    params(
        ("id" = i64, Path, description = "Trigger id"),
        ("limit" = Option<u32>, Query, description = "Page size, 1 to 1000 (default 50)", minimum = 1, maximum = 1000),
        ("cursor" = Option<String>, Query, description = "nextCursor of the previous page"),
    ),
    responses(
        (status = 200, description = "Oldest first", body = ActionList),
        (status = 400, description = "The id is not an integer, or limit or cursor invalid", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such trigger of this organization (another's answers the same)", body = ErrorBody),
        (status = 500, description = "Internal error: the message names an incident under which the server logged the cause", body = ErrorBody),
    ))]
pub async fn list_actions(
    State(s): State<AppState>,
    ApiKeyOrg(org): ApiKeyOrg,
    Path(id): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<ActionList>, ApiError> {
    let t = load_trigger(&s, org, &id).await?;
    let q = super::query_params(pairs, &["limit", "cursor"])?;
    let (limit, from) = super::cursor::page_params::<ActionCursor>(&q)?;
    let mut rows = domain(&s)
        .actions(t.id, from.map(|c| c.after), limit + 1)
        .await
        .map_err(store_error)?;
    let next_cursor = super::cursor::cut(&mut rows, limit, |a| ActionCursor { after: a.id });
    Ok(Json(ActionList {
        data: rows.into_iter().map(action_out).collect(),
        next_cursor,
    }))
}

/// One action of a trigger.
#[utoipa::path(get, path = "/api/v1/triggers/{id}/actions/{actionId}", tag = "triggers", security(("api_key" = [])),
    params(("id" = i64, Path, description = "Trigger id"), ("actionId" = i64, Path, description = "Action id")),
    responses(
        (status = 200, description = "The action", body = ActionOut),
        (status = 400, description = "An id is not an integer", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such trigger or action of this organization (another's answers the same)", body = ErrorBody),
    ))]
pub async fn get_action(
    State(s): State<AppState>,
    ApiKeyOrg(org): ApiKeyOrg,
    Path((id, action)): Path<(String, String)>,
) -> Result<Json<ActionOut>, ApiError> {
    Ok(Json(action_out(
        load_action(&s, org, &id, &action).await?.1,
    )))
}

/// Change an action: each field given replaces the current one; `enabled: false`
/// stops it without deleting it.
#[utoipa::path(put, path = "/api/v1/triggers/{id}/actions/{actionId}", tag = "triggers", security(("api_key" = [])),
    params(("id" = i64, Path, description = "Trigger id"), ("actionId" = i64, Path, description = "Action id")),
    request_body = ActionIn,
    responses(
        (status = 200, description = "The action as changed", body = ActionOut),
        (status = 400, description = "A field is invalid (named)", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such trigger or action of this organization (another's answers the same)", body = ErrorBody),
    ))]
pub async fn put_action(
    State(s): State<AppState>,
    ApiKeyOrg(org): ApiKeyOrg,
    Path((id, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<ActionOut>, ApiError> {
    let (_, mut a) = load_action(&s, org, &id, &action).await?;
    let body = read_small(&s, &headers, body, MAX_BODY).await?;
    let req: ActionIn = parse_json(&body.bytes)?;
    check_kind(req.kind.as_deref())?;
    if let Some(n) = req.name {
        check_text("name", &n, MAX_NAME)?;
        a.name = n;
    }
    if let Some(e) = req.enabled {
        a.enabled = e;
        if e {
            // An endpoint the engine disabled (a 410, a failing streak) runs again.
            s.engine
                .endpoints()
                .patch(
                    org,
                    a.endpoint_id,
                    EndpointPatch {
                        enabled: Some(true),
                        ..EndpointPatch::default()
                    },
                    now_ms(),
                )
                .await
                .map_err(endpoint_error)?;
        }
    }
    if let Some(url) = req.url {
        if let Some(p) = target_problem(&s, "url", &url) {
            return Err(bad(p));
        }
        s.engine
            .endpoints()
            .patch(
                org,
                a.endpoint_id,
                EndpointPatch {
                    url: Some(url.clone()),
                    ..EndpointPatch::default()
                },
                now_ms(),
            )
            .await
            .map_err(endpoint_error)?;
        a.url = url;
    }
    a.updated_at_ms = now_ms();
    let out = a.clone();
    domain(&s).update_action(a).await.map_err(store_error)?;
    Ok(Json(action_out(out)))
}

/// Delete an action (and its endpoint: runs still pending are not attempted).
#[utoipa::path(delete, path = "/api/v1/triggers/{id}/actions/{actionId}", tag = "triggers", security(("api_key" = [])),
    params(("id" = i64, Path, description = "Trigger id"), ("actionId" = i64, Path, description = "Action id")),
    responses(
        (status = 200, description = "Deleted", body = Deleted),
        (status = 400, description = "An id is not an integer", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such trigger or action of this organization (another's answers the same)", body = ErrorBody),
    ))]
pub async fn delete_action(
    State(s): State<AppState>,
    ApiKeyOrg(org): ApiKeyOrg,
    Path((id, action)): Path<(String, String)>,
) -> Result<Json<Deleted>, ApiError> {
    let (_, a) = load_action(&s, org, &id, &action).await?;
    domain(&s)
        .delete_action(org, &a)
        .await
        .map_err(store_error)?;
    Ok(Json(Deleted {
        id: a.id,
        deleted: true,
    }))
}

/// One run of an action, as its log shows it.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActionRun {
    /// The delivery id (`webhook-id` of every attempt).
    id: String,
    /// The payload's `apptoto_id`.
    apptoto_id: Option<String>,
    /// `pending`, `succeeded` or `failed`.
    state: crate::delivery::deliveries::DeliveryState,
    /// A 2xx answer came back.
    delivered: bool,
    attempts: usize,
    created_at: String,
    updated_at: String,
    /// The body every attempt sent.
    #[schema(value_type = Object)]
    payload: Box<RawValue>,
    /// The last attempt's answer.
    response: Option<RunResponse>,
}

/// What the action's URL answered.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RunResponse {
    /// `null` when no answer came (the error says why).
    status: Option<u16>,
    /// The answer's body (at most 20 KB).
    body: Option<String>,
    error: Option<String>,
}

/// A page of an action's runs.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ActionLog {
    data: Vec<ActionRun>,
    /// Pass as `cursor` for the next page; `null` on the last.
    #[serde(rename = "nextCursor")]
    next_cursor: Option<String>,
}

/// An action's runs, newest first by default, with state, whether each was
/// delivered, its attempts, payload and response (seed 003's log).
#[utoipa::path(get, path = "/api/v1/triggers/{id}/actions/{actionId}/log", tag = "triggers", security(("api_key" = [])),
    params(
        ("id" = i64, Path, description = "Trigger id"),
        ("actionId" = i64, Path, description = "Action id"),
        ("status" = Option<String>, Query, description = "succeeded, failed or pending; empty: any", pattern = "^(pending|succeeded|failed)?$"),
        ("sort" = Option<String>, Query, description = "createdAt (default), updatedAt, attempts or lastStatus", pattern = "^(createdAt|updatedAt|attempts|lastStatus)?$"),
        ("order" = Option<String>, Query, description = "desc (default) or asc", pattern = "^(asc|desc)?$"),
        ("limit" = Option<u32>, Query, description = "Page size, 1 to 100 (default 50)", minimum = 1, maximum = 100),
        ("cursor" = Option<String>, Query, description = "nextCursor of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of runs", body = ActionLog),
        (status = 400, description = "A parameter is not valid (named)", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "No such trigger or action of this organization (another's answers the same)", body = ErrorBody),
    ))]
pub async fn action_log(
    State(s): State<AppState>,
    ApiKeyOrg(org): ApiKeyOrg,
    Path((id, action)): Path<(String, String)>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<ActionLog>, ApiError> {
    let (_, a) = load_action(&s, org, &id, &action).await?;
    let q = super::query_params(pairs, &["status", "sort", "order", "limit", "cursor"])?;
    let mut page = ListPage::parse(org, &q, 100)?;
    page.query.endpoint_id = Some(a.endpoint_id);
    let (rows, next_cursor) = page.run(&s).await?;
    // The page's bodies and answers in one query, not one per run.
    let mut details = s
        .engine
        .run_details(org, rows.iter().map(|r| r.seq).collect())
        .await
        .map_err(store_error)?;
    let data = rows
        .into_iter()
        .filter_map(|row| {
            // Gone since the page was read (retention): left out, as a missing one.
            let d = details.remove(&row.seq)?;
            let apptoto_id = serde_json::from_str::<serde_json::Value>(d.payload.get())
                .ok()
                .and_then(|v| v["apptoto_id"].as_str().map(str::to_owned));
            Some(ActionRun {
                id: row.id,
                apptoto_id,
                delivered: row.state == crate::delivery::deliveries::DeliveryState::Succeeded,
                state: row.state,
                attempts: d.attempts,
                created_at: row.created_at,
                updated_at: row.updated_at,
                payload: d.payload,
                response: d.last.map(|a| RunResponse {
                    status: a.status,
                    body: a.body,
                    error: a.error,
                }),
            })
        })
        .collect();
    Ok(Json(ActionLog { data, next_cursor }))
}

/// A WhatsApp integration to register.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IntegrationIn {
    bot_integration_id: Option<i64>,
    bot_id: Option<i64>,
    /// The Meta app secret: webhooks must then carry `X-Hub-Signature-256` (or the
    /// org's API key).
    app_secret: Option<String>,
    /// What Meta's subscription handshake must present as `hub.verify_token`.
    verify_token: Option<String>,
}

/// A registered WhatsApp integration (its secrets are not shown).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IntegrationOut {
    bot_integration_id: i64,
    bot_id: Option<i64>,
    has_app_secret: bool,
    has_verify_token: bool,
    /// Where Meta sends this integration's webhooks (path on this server).
    webhook_path: String,
    created_at: String,
}

/// The org's WhatsApp integrations.
#[derive(Serialize, utoipa::ToSchema)]
pub struct IntegrationList {
    /// Newest first.
    data: Vec<IntegrationOut>,
}

/// The org's WhatsApp integrations, newest first (their secrets are not shown).
#[utoipa::path(get, path = "/api/v1/integrations/whatsapp", tag = "domain events", security(("api_key" = [])),
    responses(
        (status = 200, description = "The integrations, newest first", body = IntegrationList),
        (status = 401, description = "No valid API key", body = ErrorBody),
    ))]
pub async fn list_whatsapp(
    State(s): State<AppState>,
    ApiKeyOrg(org): ApiKeyOrg,
) -> Result<Json<IntegrationList>, ApiError> {
    let all = domain(&s).integrations_of(org).await.map_err(store_error)?;
    Ok(Json(IntegrationList {
        data: all.iter().map(integration_out).collect(),
    }))
}

/// Register a WhatsApp Cloud API integration for the org.
#[utoipa::path(post, path = "/api/v1/integrations/whatsapp", tag = "domain events", security(("api_key" = [])),
    request_body = IntegrationIn,
    responses(
        (status = 201, description = "Registered", body = IntegrationOut),
        (status = 400, description = "botIntegrationId missing or a field invalid (named)", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 409, description = "This organization registered this botIntegrationId before (another organization's integration with the same id is its own and changes nothing here)", body = ErrorBody),
    ))]
pub async fn register_whatsapp(
    State(s): State<AppState>,
    ApiKeyOrg(org): ApiKeyOrg,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_small(&s, &headers, body, MAX_BODY).await?;
    let req: IntegrationIn = parse_json(&body.bytes)?;
    let id = req
        .bot_integration_id
        .ok_or_else(|| bad("botIntegrationId is missing: the integration's integer id"))?;
    for (field, v) in [
        ("appSecret", &req.app_secret),
        ("verifyToken", &req.verify_token),
    ] {
        if let Some(v) = v {
            check_text(field, v, 512)?;
        }
    }
    let i = store::Integration {
        bot_integration_id: id,
        org,
        bot_id: req.bot_id,
        app_secret: req.app_secret,
        verify_token: req.verify_token,
        created_at_ms: now_ms(),
    };
    let out = integration_out(&i);
    if !domain(&s)
        .register_integration(i)
        .await
        .map_err(store_error)?
    {
        return Err(super::conflict(format!(
            "this organization already has WhatsApp integration {id}: DELETE /api/v1/integrations/whatsapp/{id} first to register it again"
        )));
    }
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

fn integration_out(i: &store::Integration) -> IntegrationOut {
    IntegrationOut {
        bot_integration_id: i.bot_integration_id,
        bot_id: i.bot_id,
        has_app_secret: i.app_secret.is_some(),
        has_verify_token: i.verify_token.is_some(),
        webhook_path: format!(
            "/api/v1/integrations/whatsapp/{}/webhook",
            i.bot_integration_id
        ),
        created_at: format_rfc3339_ms(i.created_at_ms),
    }
}

/// Delete this organization's WhatsApp integration: its webhook stops taking
/// messages for the org; its contacts and conversations stay.
#[utoipa::path(delete, path = "/api/v1/integrations/whatsapp/{botIntegrationId}", tag = "domain events", security(("api_key" = [])),
    params(("botIntegrationId" = i64, Path, description = "The integration")),
    responses(
        (status = 200, description = "Deleted", body = IntegrationDeleted),
        (status = 400, description = "The id is not an integer", body = ErrorBody),
        (status = 401, description = "No valid API key", body = ErrorBody),
        (status = 404, description = "This organization has no such integration", body = ErrorBody),
    ))]
pub async fn delete_whatsapp(
    State(s): State<AppState>,
    ApiKeyOrg(org): ApiKeyOrg,
    Path(id): Path<String>,
) -> Result<Json<IntegrationDeleted>, ApiError> {
    let id = parse_id("botIntegrationId", &id)?;
    if domain(&s)
        .delete_integration(org, id)
        .await
        .map_err(store_error)?
    {
        Ok(Json(IntegrationDeleted {
            bot_integration_id: id,
            deleted: true,
        }))
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no WhatsApp integration {id}"),
        ))
    }
}

/// A deleted integration.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IntegrationDeleted {
    bot_integration_id: i64,
    deleted: bool,
}

/// Every org's integration an unauthenticated WhatsApp route names (its URL names only
/// the id; the credential says whose). These routes face the internet without a key,
/// so an unknown id answers exactly as a wrong credential does: nothing tells which
/// ids exist.
async fn named_integrations(s: &AppState, id: &str) -> Result<Vec<store::Integration>, ApiError> {
    let id = parse_id("botIntegrationId", id)?;
    domain(s).integrations_named(id).await.map_err(store_error)
}

/// Meta's subscription handshake: answers `hub.challenge` when `hub.verify_token` is
/// the integration's.
#[utoipa::path(get, path = "/api/v1/integrations/whatsapp/{botIntegrationId}/webhook", tag = "domain events",
    params(
        ("botIntegrationId" = i64, Path, description = "The integration"),
        ("hub.mode" = Option<String>, Query, description = "subscribe"),
        ("hub.verify_token" = Option<String>, Query, description = "The integration's verifyToken"),
        ("hub.challenge" = Option<String>, Query, description = "Echoed back"),
    ),
    responses(
        (status = 200, description = "The challenge, as text/plain", content_type = "text/plain", body = String),
        (status = 400, description = "An id is not an integer", body = ErrorBody),
        (status = 403, description = "Not a subscribe request with the integration's verify token (an unknown integration answers the same)", body = ErrorBody),
    ))]
pub async fn whatsapp_challenge(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let found = named_integrations(&s, &id).await?;
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let token_ok = get("hub.verify_token").is_some_and(|got| {
        found
            .iter()
            .filter_map(|i| i.verify_token.as_ref())
            .any(|stored| crate::secrets::token_matches(stored, got))
    });
    match (get("hub.mode"), get("hub.challenge")) {
        (Some("subscribe"), Some(challenge)) if token_ok && challenge.len() <= 1024 => Ok((
            StatusCode::OK,
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; charset=utf-8",
            )],
            challenge.to_owned(),
        )
            .into_response()),
        _ => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "not a subscribe request with this integration's verify token",
        )),
    }
}

/// What a WhatsApp webhook did.
#[derive(Serialize, utoipa::ToSchema)]
pub struct WhatsappTaken {
    status: &'static str,
    /// User messages taken (a redelivered one is not counted).
    messages: usize,
    /// Statuses taken.
    statuses: usize,
}

/// Largest WhatsApp webhook body.
const MAX_WHATSAPP_BODY: usize = 1024 * 1024;
/// Most contacts, messages and statuses one webhook may carry (each is work in the
/// webhook's one transaction; Meta sends far fewer).
const MAX_WHATSAPP_ITEMS: usize = 1000;

/// Meta's webhook for the integration: contacts, user messages and statuses.
/// Authenticated by `X-Hub-Signature-256` (the HMAC-SHA256 of the raw body with the
/// integration's app secret) or by the org's API key.
#[utoipa::path(post, path = "/api/v1/integrations/whatsapp/{botIntegrationId}/webhook", tag = "domain events",
    security((), ("api_key" = [])),
    params(
        ("botIntegrationId" = i64, Path, description = "The integration"),
        ("X-Hub-Signature-256" = Option<String>, Header, description = "sha256=<hex HMAC-SHA256 of the raw body with the app secret>"),
    ),
    request_body(content = Object, description = "Meta's webhook body: {object, entry[].changes[].value{metadata, contacts, messages, statuses}}"),
    responses(
        (status = 200, description = "Taken", body = WhatsappTaken),
        (status = 400, description = "Not a WhatsApp webhook body (the message says what is wrong)", body = ErrorBody),
        (status = 401, description = "Neither a valid signature nor the org's API key (an unknown integration answers the same)", body = ErrorBody),
        (status = 413, description = "Body over 1 MB", body = ErrorBody),
    ))]
pub async fn whatsapp_webhook(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<WhatsappTaken>, ApiError> {
    let mut found = named_integrations(&s, &id).await?;
    // Decided from the headers before any of the body is read, when they can decide:
    // the org's key, or no signature at all. One answer whatever the reason (unknown
    // integration, no app secret, wrong key or signature), so none is told apart.
    // Several orgs may have registered the id: the key's org, or the one whose app
    // secret signed the body, is the one it is for.
    let keyed = match (found.is_empty(), super::auth::bearer_token(&headers)) {
        // A key that may send domain events (ingest or admin) may post this too.
        (false, Some(token)) => match s.registry.grant_for_api_key(token).await {
            Ok(Some(g))
                if g.scope
                    .allows(&axum::http::Method::POST, EVENTS_PATH)
                    .is_ok() =>
            {
                found.iter().position(|i| i.org == g.org)
            }
            _ => None,
        },
        _ => None,
    };
    let signature = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let unauthorized = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid credentials: sign the body (X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body with the integration's app secret>) or send the org's API key as Authorization: Bearer",
        )
    };
    if keyed.is_none() && signature.is_none() {
        return Err(unauthorized());
    }
    let body = read_small(&s, &headers, body, MAX_WHATSAPP_BODY).await?;
    let chosen = keyed.or_else(|| {
        let sig = signature.as_deref()?;
        let mut signed = found.iter().enumerate().filter(|(_, i)| {
            i.app_secret.as_ref().is_some_and(|secret| {
                crate::domain::whatsapp::signature_ok(secret, &body.bytes, sig)
            })
        });
        // Two orgs sharing one app secret cannot be told apart: neither is chosen.
        match (signed.next(), signed.next()) {
            (Some((n, _)), None) => Some(n),
            _ => None,
        }
    });
    let Some(n) = chosen else {
        return Err(unauthorized());
    };
    let i = found.swap_remove(n);
    let hook: crate::domain::whatsapp::Webhook = parse_json(&body.bytes)?;
    let items: usize = hook
        .entry
        .iter()
        .flat_map(|e| &e.changes)
        .map(|c| c.value.messages.len() + c.value.statuses.len() + c.value.contacts.len())
        .sum();
    if items > MAX_WHATSAPP_ITEMS {
        return Err(bad(format!(
            "{items} contacts, messages and statuses in one webhook: at most {MAX_WHATSAPP_ITEMS}"
        )));
    }
    if hook.object != "whatsapp_business_account" {
        return Err(bad(format!(
            "object {:?} is not whatsapp_business_account",
            hook.object
        )));
    }
    let account = s
        .registry
        .account_id(i.org)
        .await
        .map_err(|e| {
            super::incident(
                StatusCode::SERVICE_UNAVAILABLE,
                "the credential registry is unavailable; nothing was taken, retry",
                &e,
            )
        })?
        .unwrap_or_default();
    let taken = domain(&s)
        .take_whatsapp(i, account, hook, s.preparer.normalizer().clone())
        .await
        .map_err(|e| match e {
            crate::delivery::PublishError::Store(e) => store_error(e),
        })?;
    Ok(Json(WhatsappTaken {
        status: "accepted",
        messages: taken.messages,
        statuses: taken.statuses,
    }))
}
