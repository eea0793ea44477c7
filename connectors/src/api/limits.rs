//! Request-head limits and JSON error bodies for everything the router answers.
//!
//! - A URI over [`MAX_URI_BYTES`] is 414 and a head with over [`MAX_HEADERS`] headers or
//!   [`MAX_HEADER_BYTES`] of them is 431, before any handler runs. (Heads beyond
//!   hyper's own buffer, [`super::server::MAX_HEAD_BYTES`], are refused by hyper with
//!   an empty 431 before they reach the router.)
//! - Unknown paths are 404 and known paths with another method 405 (with `Allow`).
//! - Any error response the router or an extractor produced without a JSON body is
//!   rewritten to `{"error": "..."}`, keeping its status and headers, so a client
//!   parses every error the same way.

use super::ApiError;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

/// Longest request target (path and query).
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Most headers in one request.
pub const MAX_HEADERS: usize = 100;
/// Largest total of header names and values.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// Middleware: head limits before routing, JSON bodies on errors after.
pub async fn guard(req: Request, next: Next) -> Response {
    let uri_len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if uri_len > MAX_URI_BYTES {
        return ApiError::new(
            StatusCode::URI_TOO_LONG,
            format!("request target is {uri_len} bytes, at most {MAX_URI_BYTES}"),
        )
        .into_response();
    }
    let headers = req.headers();
    let header_bytes: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if headers.len() > MAX_HEADERS || header_bytes > MAX_HEADER_BYTES {
        return ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!("{} headers, {header_bytes} bytes: at most {MAX_HEADERS} headers and {MAX_HEADER_BYTES} bytes", headers.len()),
        )
        .into_response();
    }
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let response = next.run(req).await;
    if !(response.status().is_client_error() || response.status().is_server_error())
        || is_json(&response)
    {
        return response;
    }
    as_json(response, &method, &path).await
}

fn is_json(r: &Response) -> bool {
    r.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"))
}

/// The same response with `{"error": ...}`: the original text when there was one (an
/// extractor's rejection says what was wrong), else a message for the status.
async fn as_json(response: Response, method: &axum::http::Method, path: &str) -> Response {
    let (mut parts, body) = response.into_parts();
    // Bodies the router makes itself are short; read at most a little of one.
    let text = match http_body_util::Limited::new(body, 4096).collect().await {
        Ok(b) => String::from_utf8_lossy(&b.to_bytes()).trim().to_owned(),
        Err(_) => String::new(),
    };
    let message = match parts.status {
        StatusCode::NOT_FOUND => {
            format!("no endpoint {method} {path}; the API is described at GET /openapi.json")
        }
        StatusCode::METHOD_NOT_ALLOWED => {
            match parts.headers.get(header::ALLOW).and_then(|v| v.to_str().ok()).filter(|a| !a.is_empty()) {
                Some(allow) => format!("method {method} not allowed on {path}; allowed: {allow}"),
                None => format!("method {method} not allowed on {path}; the API is described at GET /openapi.json"),
            }
        }
        s if !text.is_empty() => format!(
            "{}: {text}",
            s.canonical_reason().unwrap_or("error").to_lowercase()
        ),
        s => s.canonical_reason().unwrap_or("error").to_lowercase(),
    };
    let body = serde_json::to_vec(&serde_json::json!({ "error": message })).unwrap_or_default();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}
