//! Bearer API-key authentication of the management APIs (webhooks, deliveries,
//! settings): an extractor that runs before the body is read.

use super::{ApiError, AppState};
use axum::extract::FromRequestParts;
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

/// The org whose API key the request presents.
#[derive(Debug, Clone, Copy)]
pub struct ApiKeyOrg(pub OrgId);

impl FromRequestParts<AppState> for ApiKeyOrg {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, ApiError> {
        let unauthorized = || ApiError::new(StatusCode::UNAUTHORIZED, INVALID_API_KEY);
        let token = bearer_token(&parts.headers).ok_or_else(unauthorized)?;
        match s.registry.org_for_api_key(token).await {
            Ok(Some(org)) => Ok(ApiKeyOrg(org)),
            Ok(None) => Err(unauthorized()),
            Err(e) => Err(super::store_error(e)),
        }
    }
}
