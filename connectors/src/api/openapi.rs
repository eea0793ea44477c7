//! The OpenAPI 3.1 document of the HTTP API, generated from the handlers' annotations
//! (utoipa) and served at `GET /openapi.json`.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use std::sync::OnceLock;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "leadstream",
        description = "High-throughput ingest of lead events (purchases, webinars, trials) with dedup, and the webhooks that follow from them. Every error is {\"error\": \"...\"}.",
        license(name = "Apache-2.0")
    ),
    paths(
        super::lead_events::post,
        super::lead_parts::post,
        super::auth::current,
        super::stats::get,
        super::lead_event_list::list,
        super::webhooks::list,
        super::webhooks::create,
        super::webhooks::delete,
        super::webhooks::get_one,
        super::webhooks::patch,
        super::webhooks::secret,
        super::webhooks::rotate,
        super::webhooks::replay,
        super::webhooks::get_settings,
        super::webhooks::put_settings,
        super::deliveries::publish,
        super::deliveries::list,
        super::deliveries::get_one,
        super::deliveries::retry,
        super::campaigns::create,
        super::campaigns::list,
        super::campaigns::get_one,
        super::campaigns::patch,
        super::campaigns::schedule,
        super::campaigns::pause,
        super::campaigns::resume,
        super::campaigns::cancel,
        super::campaigns::upload_audience,
        super::campaigns::create_send,
        super::campaigns::list_sends,
        super::campaigns::get_send,
        super::campaigns::eligible,
        super::campaigns::materialize,
        super::campaigns::audience_filter,
        super::campaigns::add_opt_outs,
        super::campaigns::remove_opt_outs,
        super::campaigns::get_opt_out,
        super::domain::take_event,
        super::domain::register_whatsapp,
        super::domain::list_whatsapp,
        super::domain::delete_whatsapp,
        super::domain::whatsapp_challenge,
        super::domain::whatsapp_webhook,
        super::domain::put_contact,
        super::domain::get_contact,
        super::conversations::list,
        super::domain::create_trigger,
        super::domain::list_triggers,
        super::domain::get_trigger,
        super::domain::put_trigger,
        super::domain::delete_trigger,
        super::domain::create_action,
        super::domain::list_actions,
        super::domain::get_action,
        super::domain::put_action,
        super::domain::delete_action,
        super::domain::action_log,
        super::console::index,
        super::console::file,
        super::healthz,
        super::readyz,
        super::serve_metrics,
        serve
    ),
    components(schemas(super::deliveries::InstantParam)),
    modifiers(&Security),
    tags((name = "lead events", description = "Bulk lead-event ingest"), (name = "api keys", description = "The API key a request presents: its organization and scope"), (name = "stats", description = "Per-minute counts for the console's Overview and for scripts"), (name = "webhooks", description = "Webhook endpoints, their secrets, and the org's settings URL"), (name = "deliveries", description = "Publishing events to the endpoints, and the delivery log"), (name = "campaigns", description = "Campaigns, audiences, sends, eligibility, materialization and opt-outs"), (name = "domain events", description = "Calendar and booking events in, and the contacts they tell about"), (name = "triggers", description = "Triggers of the 20 domain event types, their webhook actions and each action's log"), (name = "internal", description = "Between leadstream processes; not for clients"), (name = "console", description = "The web console's page and files (HTML, JavaScript, CSS), served from the binary"), (name = "health", description = "Liveness and readiness"), (name = "metrics", description = "Prometheus metrics"), (name = "meta", description = "This document"))
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key of the organization (`leadstream api-key create`)",
                    ))
                    .build(),
            ),
        );
        // Every route an API key opens answers 403 to a key whose scope does not
        // allow it (registry::Scope::allows): said once here, for all of them.
        let forbidden = utoipa::openapi::ResponseBuilder::new()
            .description("The API key's scope (read or ingest) does not allow this call; the message says what it may do")
            .content(
                "application/json",
                utoipa::openapi::ContentBuilder::new()
                    .schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build();
        for (path, item) in openapi.paths.paths.iter_mut() {
            // Meta's callback takes a key or a signature: a key that may not post it
            // is no credential there, a 401.
            if path.ends_with("/webhook") {
                continue;
            }
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                let keyed = op.security.as_ref().is_some_and(|reqs| {
                    serde_json::to_value(reqs).is_ok_and(|v| v.to_string().contains("\"api_key\""))
                });
                if keyed && !op.responses.responses.contains_key("403") {
                    op.responses
                        .responses
                        .insert("403".to_owned(), forbidden.clone().into());
                }
            }
        }
        components.add_security_scheme(
            "hmac_signature",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Setter-Signature",
                "sha256=<64 hex digits>: HMAC-SHA256 of the raw body with any active signing key (`leadstream signing-key create`)",
            ))),
        );
    }
}

/// The body of `POST /api/v1/webhooks/lead-events` (described here; the reader in
/// `leadstream_pipeline::parse` is what reads it, leniently per row).
#[derive(utoipa::ToSchema)]
#[schema(example = json!({"organizationId": 42, "eventType": "mastery_purchase", "events": [{"phoneE164": "+15551234567", "occurredAt": "2026-05-12T18:34:00Z", "metadata": {"orderId": "ord_9F2", "amountUsd": 297}}]}))]
#[allow(dead_code)] // a schema only: never built, the parser reads the body
pub struct LeadEventsRequest {
    /// The organization the events belong to; must be the credential's.
    #[schema(rename = "organizationId", minimum = -9007199254740991_i64, maximum = 9007199254740991_i64)]
    organization_id: i64,
    /// 1 to 128 characters, not blank, no control characters, no lone surrogates.
    #[schema(
        rename = "eventType",
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
    )]
    event_type: String,
    /// 1 to 50,000 events.
    #[schema(min_items = 1, max_items = 50000)]
    events: Vec<LeadEventIn>,
}

/// One event. Problems with a field are per-row rejects, not errors of the call.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // a schema only
pub struct LeadEventIn {
    /// A phone number, normalized to E.164 as libphonenumber does (a missing `+` is added, `00` becomes `+`).
    #[schema(rename = "phoneE164", example = "+15551234567")]
    phone_e164: String,
    /// An RFC 3339 instant with an offset; compared as an instant at microsecond precision.
    #[schema(rename = "occurredAt", example = "2026-05-12T18:34:00Z")]
    occurred_at: String,
    /// Any JSON object up to 8 KB minified and 64 levels deep, stored as sent (minified).
    #[schema(value_type = Option<Object>)]
    metadata: Option<serde_json::Value>,
}

/// The document, built once.
pub fn document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        ApiDoc::openapi()
            .to_pretty_json()
            .expect("the OpenAPI document serializes")
    })
}

/// `GET /openapi.json`.
#[utoipa::path(get, path = "/openapi.json", tag = "meta", responses((status = 200, description = "This OpenAPI 3.1 document", content_type = "application/json")))]
pub async fn serve() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], document()).into_response()
}

#[cfg(test)]
mod tests {
    /// A path with its parameters' names taken out: `/a/{id}/b` → `/a/{}/b`.
    fn shape(path: &str) -> String {
        let mut out = String::new();
        let mut inside = false;
        for c in path.chars() {
            match c {
                '{' => {
                    inside = true;
                    out.push('{');
                }
                '}' => {
                    inside = false;
                    out.push('}');
                }
                _ if inside => {}
                _ => out.push(c),
            }
        }
        out
    }

    #[test]
    fn a_read_key_is_allowed_or_refused_each_view_on_purpose() {
        use crate::registry::Scope;
        let doc: serde_json::Value = serde_json::from_str(super::document()).unwrap();
        let secrets = [
            "/api/webhooks/{}/secret",
            "/api/v1/organizations/current/settings",
        ];
        let readable: Vec<String> = Scope::READ_ROUTES.iter().map(|p| shape(p)).collect();
        let mut views = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            let keyed = |op: &serde_json::Value| op["security"].to_string().contains("api_key");
            if item.get("get").is_some_and(keyed) {
                let p = shape(path);
                assert!(
                    readable.contains(&p) || secrets.contains(&p.as_str()),
                    "GET {path} is neither in Scope::READ_ROUTES nor a secret: decide whether a read key may call it"
                );
                views.push(p);
            }
        }
        for p in &readable {
            assert!(
                views.contains(p) || p.ends_with("/eligible"),
                "Scope::READ_ROUTES names {p}, which is no keyed GET of the API"
            );
        }
    }

    #[test]
    fn every_route_is_documented() {
        let doc: serde_json::Value = serde_json::from_str(super::document()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        for path in [
            "/api/v1/webhooks/lead-events",
            "/healthz",
            "/readyz",
            "/metrics",
            "/openapi.json",
        ] {
            assert!(doc["paths"][path].is_object(), "{path} missing");
        }
        let post = &doc["paths"]["/api/v1/webhooks/lead-events"]["post"];
        for status in [
            "200", "400", "401", "403", "408", "413", "414", "415", "431", "503",
        ] {
            assert!(post["responses"][status].is_object(), "{status} missing");
        }
        let metrics = &doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"];
        assert!(
            metrics[crate::metrics::CONTENT_TYPE]["schema"]["type"] == "string",
            "{metrics}"
        );
    }
}
