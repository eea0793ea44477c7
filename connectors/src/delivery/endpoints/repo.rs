//! The endpoint registry's repository: one trait, a SQLite ([`super::sqlite`]) and a
//! Postgres ([`super::postgres`]) implementation side by side, and the one mapping of
//! a stored row to an [`Endpoint`] both use.

use super::{EndpointEffect, EndpointPatch};
use crate::db::RepoError;
use crate::delivery::model::{Endpoint, EndpointKind, EndpointSecret};
use crate::delivery::store::DbError;
use leadstream_pipeline::signature::WebhookSecret;
use leadstream_pipeline::OrgId;
use std::time::Duration;

/// An endpoint to create, with its first secret.
pub struct NewEndpoint {
    pub org: OrgId,
    pub kind: EndpointKind,
    pub url: String,
    pub event_types: Option<Vec<String>>,
    pub description: Option<String>,
    pub secret: WebhookSecret,
    pub at_ms: i64,
}

/// Endpoints and their secrets, as stored. Every write that takes an org changes only
/// that org's endpoint: the ownership check is in the write itself.
#[async_trait::async_trait]
pub trait EndpointRepo: Send + Sync {
    /// Every endpoint, with its secrets.
    async fn all(&self) -> Result<Vec<Endpoint>, DbError>;
    /// One endpoint, any org.
    async fn one(&self, id: i64) -> Result<Option<Endpoint>, DbError>;
    /// `org`'s endpoints, newest first.
    async fn of_org(&self, org: OrgId) -> Result<Vec<Endpoint>, DbError>;
    async fn insert(&self, new: NewEndpoint) -> Result<Endpoint, DbError>;
    /// `None` when `id` is not `org`'s.
    async fn patch(
        &self,
        org: OrgId,
        id: i64,
        patch: EndpointPatch,
        now_ms: i64,
    ) -> Result<Option<Endpoint>, DbError>;
    /// `false` when `id` is not `org`'s.
    async fn delete(&self, org: OrgId, id: i64) -> Result<bool, DbError>;
    /// Adds `secret` as the current one; earlier ones expire at `until_ms` at the
    /// latest. `None` when `id` is not `org`'s.
    async fn rotate_secret(
        &self,
        org: OrgId,
        id: i64,
        secret: WebhookSecret,
        until_ms: i64,
        now_ms: i64,
    ) -> Result<Option<Endpoint>, DbError>;
    /// Records what an attempt's outcome does to endpoint `id`; whether it changed.
    async fn apply_effect(
        &self,
        id: i64,
        effect: EndpointEffect,
        disable_after: Duration,
    ) -> Result<bool, DbError>;
    /// Deletes secrets whose grace ended; the endpoints that lost one.
    async fn drop_expired_secrets(&self, now_ms: i64) -> Result<Vec<i64>, DbError>;
}

/// `endpoints` as stored, column for column, in both backends.
pub(super) struct StoredEndpoint {
    pub id: i64,
    pub org: OrgId,
    pub kind: String,
    pub url: String,
    pub description: Option<String>,
    /// A JSON array of event types; `None`: every type.
    pub event_types: Option<String>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub timeout_ms: Option<i64>,
    pub max_in_flight: Option<i64>,
    pub rate_limit: Option<f64>,
    pub failing_since_ms: Option<i64>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// The columns of [`StoredEndpoint`], in order.
pub(super) const COLUMNS: &str =
    "id, org_id, kind, url, description, event_types, enabled, disabled_reason, \
     timeout_ms, max_in_flight, rate_limit, failing_since, created_at, updated_at";

fn unknown(column: &'static str, value: impl Into<String>) -> DbError {
    RepoError::Unknown {
        column,
        value: value.into(),
    }
    .into()
}

impl StoredEndpoint {
    /// The endpoint, with `secrets` (newest first). A kind, event-type list or number
    /// this binary cannot read is an error, never a default.
    pub fn into_endpoint(self, secrets: Vec<EndpointSecret>) -> Result<Endpoint, DbError> {
        let kind =
            EndpointKind::parse(&self.kind).ok_or_else(|| unknown("endpoints.kind", &self.kind))?;
        let event_types = match self.event_types {
            None => None,
            Some(text) => Some(
                serde_json::from_str(&text).map_err(|_| unknown("endpoints.event_types", text))?,
            ),
        };
        let max_in_flight = match self.max_in_flight {
            None => None,
            Some(n) => Some(
                u32::try_from(n).map_err(|_| unknown("endpoints.max_in_flight", n.to_string()))?,
            ),
        };
        Ok(Endpoint {
            id: self.id,
            org: self.org,
            kind,
            url: self.url,
            description: self.description,
            event_types,
            enabled: self.enabled,
            disabled_reason: self.disabled_reason,
            timeout: self
                .timeout_ms
                .map(|ms| Duration::from_millis(ms.max(0) as u64)),
            max_in_flight,
            rate_limit: self.rate_limit,
            failing_since_ms: self.failing_since_ms,
            created_at_ms: self.created_at_ms,
            updated_at_ms: self.updated_at_ms,
            secrets,
        })
    }
}

/// A stored secret; one that does not parse is an error.
pub(super) fn secret(
    text: &str,
    created_at_ms: i64,
    expires_at_ms: Option<i64>,
) -> Result<EndpointSecret, DbError> {
    let text = crate::secrets::open(crate::secrets::Purpose::EndpointSecret, text)
        .map_err(|e| unknown("endpoint_secrets.secret", e.to_string()))?;
    let secret = WebhookSecret::parse(&text)
        .map_err(|_| unknown("endpoint_secrets.secret", "(a secret that does not parse)"))?;
    Ok(EndpointSecret {
        secret,
        created_at_ms,
        expires_at_ms,
    })
}

/// A secret as stored: sealed under `secrets.key` when one is set.
pub(super) fn stored_secret(secret: &WebhookSecret) -> String {
    crate::secrets::seal(crate::secrets::Purpose::EndpointSecret, &secret.text())
}

/// Event types as stored: a JSON array.
pub(super) fn event_types_text(types: Option<&Vec<String>>) -> Option<String> {
    types.map(|t| serde_json::to_string(t).expect("strings serialize"))
}

/// The reason an endpoint failing for `disable_after` is disabled with.
pub(super) fn failing_reason(disable_after: Duration) -> String {
    format!(
        "disabled by leadstream: every attempt failed for {} (delivery.disable_after); fix the endpoint, then PATCH {{\"enabled\": true}}",
        humantime::format_duration(disable_after)
    )
}
