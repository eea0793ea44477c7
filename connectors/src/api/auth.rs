//! Bearer API-key authentication of the management APIs (webhooks, deliveries,
//! settings): an extractor that runs before the body is read, and checks the key's
//! scope against the route ([`Scope::allows`]): 401 without a valid key, 403 for a
//! route the key's scope does not allow.

use super::{ApiError, AppState};
use crate::registry::{Grant, Scope};
use axum::extract::{FromRequestParts, MatchedPath};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use leadstream_pipeline::OrgId;

/// The one answer to a missing, malformed, unknown or revoked API key.
pub const INVALID_API_KEY: &str =
    "invalid credentials: send Authorization: Bearer <api key> (leadstream api-key create)";

/// The token of `Authorization: Bearer <token>`, if the header has that form.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    match v.split_once(' ') {
        Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") && !t.trim().is_empty() => {
            Some(t.trim())
        }
        _ => None,
    }
}

/// The org whose API key the request presents, once its scope allows the route.
#[derive(Debug, Clone, Copy)]
pub struct ApiKeyOrg(pub OrgId);

impl FromRequestParts<AppState> for ApiKeyOrg {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, ApiError> {
        let ApiKey(grant) = ApiKey::from_request_parts(parts, s).await?;
        Ok(ApiKeyOrg(grant.org))
    }
}

/// The API key the request presents, once its scope allows the route.
#[derive(Debug, Clone)]
pub struct ApiKey(pub Grant);

impl FromRequestParts<AppState> for ApiKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, ApiError> {
        let unauthorized = || ApiError::new(StatusCode::UNAUTHORIZED, INVALID_API_KEY);
        let token = bearer_token(&parts.headers).ok_or_else(unauthorized)?;
        let grant = match s.registry.grant_for_api_key(token).await {
            Ok(Some(grant)) => grant,
            Ok(None) => return Err(unauthorized()),
            Err(e) => return Err(super::store_error(e)),
        };
        // The route's template: the scopes name routes, not paths. Without one (a
        // handler mounted outside the router's routes) only an admin key passes.
        let route = parts
            .extensions
            .get::<MatchedPath>()
            .map_or("(a path outside the API's routes)", MatchedPath::as_str);
        check_scope(grant.scope, &parts.method, route)?;
        Ok(ApiKey(grant))
    }
}

/// 403 when `scope` does not allow `method` on `route` (a route template).
///
/// # Errors
/// 403 saying what the scope may do and which key to use instead.
pub fn check_scope(scope: Scope, method: &axum::http::Method, route: &str) -> Result<(), ApiError> {
    scope.allows(method, route).map_err(|why| {
        crate::metrics::scope_refusal(scope.as_str());
        ApiError::new(StatusCode::FORBIDDEN, why)
    })
}

/// The API key a request presents, as `GET /api/v1/api-keys/current` answers it.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CurrentKey {
    /// The organization the key belongs to.
    pub organization_id: OrgId,
    /// The key's id, as `leadstream api-key list` shows it.
    pub key_id: i64,
    /// The key's first characters.
    #[schema(example = "lsk_3f9a1c2b")]
    pub prefix: String,
    /// What the key may do.
    pub scope: Scope,
}

/// `GET /api/v1/api-keys/current`: which organization the key is for and what it may
/// do (every scope may ask). The console signs in with it.
#[utoipa::path(get, path = "/api/v1/api-keys/current", tag = "api keys", security(("api_key" = [])), responses(
    (status = 200, description = "The key's organization and scope", body = CurrentKey, example = json!({"organizationId": 42, "keyId": 3, "prefix": "lsk_3f9a1c2b", "scope": "read"})),
    (status = 401, description = "Missing, unknown or revoked API key", body = super::ErrorBody),
))]
pub async fn current(ApiKey(grant): ApiKey) -> axum::Json<CurrentKey> {
    axum::Json(CurrentKey {
        organization_id: grant.org,
        key_id: grant.key_id,
        prefix: grant.prefix,
        scope: grant.scope,
    })
}
