//! The one cursor format of every list: the position after a page's last row as
//! JSON, base64url without padding. Opaque to clients; a cursor this server did not
//! give, or one of another list or order, is a 400.

use super::{bad, ApiError};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// `position` as a cursor.
pub(crate) fn encode<T: serde::Serialize>(position: &T) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(position).expect("a cursor serializes"))
}

/// The position a cursor names.
///
/// # Errors
/// 400 when `text` is not a cursor of this shape.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, ApiError> {
    URL_SAFE_NO_PAD
        .decode(text)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| bad(format!("cursor {text:?} is not one this server gave; pass nextCursor of the previous page as it is")))
}

/// Rows of a page when `limit` is not given.
pub(crate) const DEFAULT_LIMIT: usize = 50;
/// Rows of a page at most.
pub(crate) const MAX_LIMIT: usize = 1000;

/// A list's `limit` and `cursor` parameters: the page size (1 to 1000, 50 when
/// absent) and the position the cursor names (`None` when absent or empty).
///
/// # Errors
/// 400 naming `limit` or the cursor when either is not valid.
pub(crate) fn page_params<T: serde::de::DeserializeOwned>(
    q: &std::collections::HashMap<String, String>,
) -> Result<(usize, Option<T>), ApiError> {
    let limit = match q.get("limit").map(|l| l.trim()) {
        None => DEFAULT_LIMIT,
        Some(l) => match l.parse::<usize>() {
            Ok(n @ 1..=MAX_LIMIT) => n,
            _ => return Err(bad(format!("limit {l:?}: expected 1 to {MAX_LIMIT}"))),
        },
    };
    let position = match q.get("cursor").map(|c| c.trim()).filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(decode::<T>(c)?),
    };
    Ok((limit, position))
}

/// Cuts `rows`, fetched with `limit + 1`, to the page; answers the cursor of the
/// next page (made by `position` from the page's last row) when more follow.
pub(crate) fn cut<R, T: serde::Serialize>(
    rows: &mut Vec<R>,
    limit: usize,
    position: impl FnOnce(&R) -> T,
) -> Option<String> {
    if rows.len() <= limit {
        return None;
    }
    rows.truncate(limit);
    rows.last().map(|r| encode(&position(r)))
}
