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
