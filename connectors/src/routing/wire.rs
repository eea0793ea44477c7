//! A batch part as one process hands it to another: the rows the first one already
//! validated and normalized, in `postcard`, signed with the key the processes share.
//!
//! The receiver checks the signature before it decodes anything, and then trusts
//! the rows as its own `Preparer` made them (it recomputes their dedup probes, which
//! are not sent).

use hmac::{Hmac, Mac};
use leadstream_pipeline::batch::{MAX_EVENT_TYPE_CHARS, MAX_METADATA_BYTES};
use leadstream_pipeline::{OrgId, Phone, Prepared, Row};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// The header carrying the hex HMAC-SHA256 of the body.
pub const SIGNATURE_HEADER: &str = "leadstream-part-signature";
/// The path parts are posted to.
pub const PATH: &str = "/internal/v1/lead-parts";
/// The content type of a part: leadstream's own encoding, opaque to anyone else.
pub const CONTENT_TYPE: &str = "application/octet-stream";
/// Largest part accepted: a 10 MB request's rows, whose compact metadata is never
/// more than twice the text it came from, and their framing.
pub const MAX_PART_BYTES: usize = 2 * crate::api::MAX_BODY_BYTES + 1024 * 1024;

#[derive(Serialize, Deserialize)]
struct Part<'a> {
    org: OrgId,
    #[serde(borrow)]
    event_type: Cow<'a, str>,
    /// The raw topic's partition count the sender split by.
    partition_count: i32,
    #[serde(borrow)]
    rows: Vec<WireRow<'a>>,
}

#[derive(Serialize, Deserialize)]
struct WireRow<'a> {
    phone: u64,
    occurred_at_us: i64,
    #[serde(borrow)]
    metadata: Option<Cow<'a, str>>,
}

/// A decoded part.
pub(crate) struct Decoded {
    pub partition_count: i32,
    pub batch: Prepared,
}

/// Why a part was not decoded.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("the part's signature is missing or wrong")]
    Signature,
    #[error("the part is not a valid encoding: {0}")]
    Encoding(#[from] postcard::Error),
    #[error("the part holds a row no Preparer makes: {0}")]
    Invalid(&'static str),
}

fn mac(key: &[u8]) -> Hmac<sha2::Sha256> {
    Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes a key of any length")
}

/// Encodes `rows` of `org`'s `event_type` batch, and its signature (hex).
pub(crate) fn encode(
    key: &[u8],
    org: OrgId,
    event_type: &str,
    partition_count: i32,
    rows: &[&Row],
) -> (Vec<u8>, String) {
    let part = Part {
        org,
        event_type: Cow::Borrowed(event_type),
        partition_count,
        rows: rows
            .iter()
            .map(|r| WireRow {
                phone: r.phone.0,
                occurred_at_us: r.occurred_at_us,
                metadata: r.metadata.as_deref().map(Cow::Borrowed),
            })
            .collect(),
    };
    let body = postcard::to_stdvec(&part).expect("a part always encodes");
    let mut m = mac(key);
    m.update(&body);
    let sig = hex::encode(m.finalize().into_bytes());
    (body, sig)
}

/// Checks `signature` (hex) over `body`, then decodes it.
pub(crate) fn decode(key: &[u8], body: &[u8], signature: &str) -> Result<Decoded, WireError> {
    let mut sig = [0u8; 32];
    hex::decode_to_slice(signature.trim(), &mut sig).map_err(|_| WireError::Signature)?;
    let mut m = mac(key);
    m.update(body);
    m.verify_slice(&sig).map_err(|_| WireError::Signature)?;
    let part: Part<'_> = postcard::from_bytes(body)?;
    let chars = part.event_type.chars().count();
    if chars == 0 || chars > MAX_EVENT_TYPE_CHARS {
        return Err(WireError::Invalid("eventType of no or too many chars"));
    }
    let mut rows = Vec::with_capacity(part.rows.len());
    for r in part.rows {
        if r.phone == 0 {
            return Err(WireError::Invalid("phone 0"));
        }
        if r.metadata
            .as_ref()
            .is_some_and(|m| m.len() > MAX_METADATA_BYTES)
        {
            return Err(WireError::Invalid("metadata over 8 KB"));
        }
        rows.push(Row::new(
            part.org,
            &part.event_type,
            Phone(r.phone),
            r.occurred_at_us,
            r.metadata.map(|m| m.into_owned().into_boxed_str()),
        ));
    }
    Ok(Decoded {
        partition_count: part.partition_count,
        batch: Prepared {
            org: part.org,
            event_type: part.event_type.into_owned(),
            received: rows.len(),
            rows,
            rejected: 0,
            rejects: Vec::new(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(phone: u64, t: i64, metadata: Option<&str>) -> Row {
        Row::new(42, "purchase", Phone(phone), t, metadata.map(Into::into))
    }

    #[test]
    fn a_part_decodes_to_the_rows_it_was_made_of_with_their_probes() {
        let rows = vec![
            row(15551234567, 1, Some(r#"{"a":1}"#)),
            row(447700900123, 2, None),
        ];
        let (body, sig) = encode(b"k", 42, "purchase", 6, &rows.iter().collect::<Vec<_>>());
        let d = decode(b"k", &body, &sig).unwrap();
        assert_eq!(d.partition_count, 6);
        assert_eq!((d.batch.org, d.batch.event_type.as_str()), (42, "purchase"));
        assert_eq!(d.batch.rows, rows);
        assert_eq!(d.batch.received, 2);
    }

    #[test]
    fn a_wrong_key_or_altered_body_is_refused_before_decoding() {
        let (mut body, sig) = encode(b"k", 42, "purchase", 6, &[&row(15551234567, 1, None)]);
        assert!(matches!(
            decode(b"other", &body, &sig),
            Err(WireError::Signature)
        ));
        assert!(matches!(
            decode(b"k", &body, "zz"),
            Err(WireError::Signature)
        ));
        *body.last_mut().unwrap() ^= 1;
        assert!(matches!(
            decode(b"k", &body, &sig),
            Err(WireError::Signature)
        ));
    }

    #[test]
    fn garbage_signed_with_the_key_is_an_encoding_error_not_a_panic() {
        let body = b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01";
        let mut m = mac(b"k");
        m.update(body);
        let sig = hex::encode(m.finalize().into_bytes());
        assert!(decode(b"k", body, &sig).is_err());
    }
}
