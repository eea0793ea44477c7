//! The web console: `GET /` and `GET /console/{path}`, the files of
//! `connectors/console/` built into the binary (a debug build reads them from disk at
//! request time). The console is a client of the public JSON API and nothing else: it
//! holds no state on the server and needs no credential to be fetched.
//!
//! Every answer carries a Content-Security-Policy that allows only this origin's
//! scripts, styles and API (no inline script or style, no frame embedding), and is
//! revalidated by its `ETag` on each load, so an upgraded binary's console is seen at
//! once.

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

#[derive(rust_embed::Embed)]
#[folder = "console/"]
struct Assets;

/// What the console's pages may load: this origin's scripts, styles, images and API.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `GET /`: the console's page.
#[utoipa::path(get, path = "/", tag = "console", responses(
    (status = 200, description = "The console's page; it loads its files from /console/ and talks to this API", content_type = "text/html", body = String),
))]
pub async fn index(headers: HeaderMap) -> Response {
    asset("index.html", &headers)
}

/// `GET /console/{path}`: one of the console's files.
#[utoipa::path(get, path = "/console/{path}", tag = "console",
    params(("path" = String, Path, description = "A file of the console, e.g. js/app.js")),
    responses(
        (status = 200, description = "The file (JavaScript, CSS or SVG), with an ETag", body = String),
        (status = 304, description = "If-None-Match named the file's ETag: unchanged"),
        (status = 404, description = "The console has no such file", body = super::ErrorBody),
    ))]
pub async fn file(Path(path): Path<String>, headers: HeaderMap) -> Response {
    asset(&path, &headers)
}

fn asset(path: &str, request: &HeaderMap) -> Response {
    // Only names below the folder: a debug build reads the disk.
    let inside = !path
        .split(['/', '\\'])
        .any(|part| part == ".." || part.is_empty());
    let Some(file) = inside.then(|| Assets::get(path)).flatten() else {
        return super::ApiError::new(
            StatusCode::NOT_FOUND,
            format!("the console has no file {path:?}; open / for the console"),
        )
        .into_response();
    };
    let etag = format!("\"{}\"", hex::encode(&file.metadata.sha256_hash()[..16]));
    let unchanged = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut response = if unchanged {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(header::CONTENT_TYPE, content_type(file.metadata.mimetype()))],
            file.data.into_owned(),
        )
            .into_response()
    };
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    response
}

/// `mime` with `charset=utf-8` for text: the files are UTF-8.
fn content_type(mime: &str) -> String {
    if mime.starts_with("text/") || mime == "application/javascript" || mime.ends_with("+xml") {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_owned()
    }
}
