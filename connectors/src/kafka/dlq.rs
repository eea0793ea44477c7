//! The dead-letter topic (`kafka.rejects_topic`): what the raw-topic consumer could not
//! store, with why and where it came from.
//!
//! One record per rejected row, per invalid record (JSON, but refused as a whole, as
//! HTTP would answer 400), per unparseable record, and per row the event store
//! refused for good (`refused_by_store`, the store's error as the reason). Each is a
//! JSON object:
//!
//! ```json
//! {"v":1,"kind":"rejected_row","organizationId":42,"eventType":"mastery_purchase","index":3,
//!  "reason":"invalid phoneE164","source":{"topic":"leadstream.raw","partition":5,"offset":1042},
//!  "original":"{\"phoneE164\":\"n/a\",\"occurredAt\":\"2026-05-12T18:34:00Z\"}",
//!  "originalEncoding":"utf8","originalScope":"row"}
//! ```
//!
//! `original` is the row's own JSON as sent (`originalScope: "row"`) or
//! the record's bytes as received (`"record"`), as UTF-8 text, or base64 when they are
//! not UTF-8 (`originalEncoding: "base64"`). A dead letter stays under
//! [`MAX_DEAD_LETTER_BYTES`]: a longer `original` is cut, and `originalTruncated: true`
//! says so.

use super::Version;
use base64::Engine;
use serde::{Deserialize, Serialize};

/// Largest encoded dead letter, below the brokers' default 1 MB record limit with
/// room for the record overhead.
pub const MAX_DEAD_LETTER_BYTES: usize = 900 * 1024;

/// One dead letter (version 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    pub v: Version<1>,
    #[serde(flatten)]
    pub kind: Kind,
    /// Why: a reject reason as HTTP gives it, a validation error, or a parse error.
    pub reason: String,
    /// Where the record was read.
    pub source: Source,
    /// The row's JSON or the record's bytes, see [`Scope`] and [`Encoding`].
    pub original: String,
    pub original_encoding: Encoding,
    pub original_scope: Scope,
    /// Whether `original` was cut to keep the dead letter under [`MAX_DEAD_LETTER_BYTES`].
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub original_truncated: bool,
}

/// What was dead-lettered; the `"kind"` tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Kind {
    /// One event of a record was rejected; the record's other events were stored.
    #[serde(rename_all = "camelCase")]
    RejectedRow {
        organization_id: i64,
        event_type: String,
        index: usize,
    },
    /// The record is JSON but was refused as a whole (missing `organizationId`,
    /// `eventType` empty, `events` empty, ...): nothing of it was stored.
    #[serde(rename_all = "camelCase")]
    InvalidRecord {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        organization_id: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        event_type: Option<String>,
    },
    /// The record is not a JSON object.
    UnparseableRecord,
    /// The row was valid, but the event store refused it for good (a value its
    /// schema does not accept); the record's other rows were stored.
    #[serde(rename_all = "camelCase")]
    RefusedByStore {
        organization_id: i64,
        event_type: String,
        index: usize,
    },
}

/// The raw record a dead letter comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// How `original` holds the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// The bytes are valid UTF-8 and are the string itself.
    Utf8,
    /// Standard base64 (RFC 4648, padded) of the bytes.
    Base64,
}

/// What `original` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// The rejected row's own JSON (for a per-event record, the whole record).
    Row,
    /// The whole record as received.
    Record,
}

impl DeadLetter {
    /// A rejected row; `row` is its JSON, or `None` to keep the whole `record` instead.
    pub fn rejected_row(
        source: Source,
        org: i64,
        event_type: &str,
        index: usize,
        reason: String,
        row: Option<String>,
        record: &[u8],
    ) -> Self {
        let kind = Kind::RejectedRow {
            organization_id: org,
            event_type: event_type.to_owned(),
            index,
        };
        Self::for_row(kind, reason, source, row, record)
    }

    /// A row the store refused; `row` is its JSON, or `None` to keep the whole `record`.
    pub fn refused_by_store(
        source: Source,
        org: i64,
        event_type: &str,
        index: usize,
        reason: String,
        row: Option<String>,
        record: &[u8],
    ) -> Self {
        let kind = Kind::RefusedByStore {
            organization_id: org,
            event_type: event_type.to_owned(),
            index,
        };
        Self::for_row(kind, reason, source, row, record)
    }

    /// One row's dead letter: the row's own JSON when known, else the whole record.
    fn for_row(
        kind: Kind,
        reason: String,
        source: Source,
        row: Option<String>,
        record: &[u8],
    ) -> Self {
        match row {
            Some(row) => Self::new(kind, reason, source, row, Encoding::Utf8, Scope::Row),
            None => Self::with_record(kind, reason, source, record),
        }
    }

    /// A record refused as a whole.
    pub fn invalid_record(
        source: Source,
        org: Option<i64>,
        event_type: Option<String>,
        reason: String,
        record: &[u8],
    ) -> Self {
        Self::with_record(
            Kind::InvalidRecord {
                organization_id: org,
                event_type,
            },
            reason,
            source,
            record,
        )
    }

    /// A record that is not a JSON object.
    pub fn unparseable(source: Source, reason: String, record: &[u8]) -> Self {
        Self::with_record(Kind::UnparseableRecord, reason, source, record)
    }

    fn with_record(kind: Kind, reason: String, source: Source, record: &[u8]) -> Self {
        let (original, encoding) = match std::str::from_utf8(record) {
            Ok(s) => (s.to_owned(), Encoding::Utf8),
            Err(_) => (
                base64::engine::general_purpose::STANDARD.encode(record),
                Encoding::Base64,
            ),
        };
        Self::new(kind, reason, source, original, encoding, Scope::Record)
    }

    fn new(
        kind: Kind,
        reason: String,
        source: Source,
        original: String,
        encoding: Encoding,
        scope: Scope,
    ) -> Self {
        Self {
            v: Version,
            kind,
            reason,
            source,
            original,
            original_encoding: encoding,
            original_scope: scope,
            original_truncated: false,
        }
    }

    /// The bytes of `original` (decoding base64).
    ///
    /// # Errors
    /// The base64 decoding error, for a dead letter not made by leadstream.
    pub fn original_bytes(&self) -> Result<Vec<u8>, base64::DecodeError> {
        match self.original_encoding {
            Encoding::Utf8 => Ok(self.original.as_bytes().to_vec()),
            Encoding::Base64 => base64::engine::general_purpose::STANDARD.decode(&self.original),
        }
    }

    /// The record to produce: JSON, at most [`MAX_DEAD_LETTER_BYTES`], cutting
    /// `original` when needed.
    pub fn encode(&self) -> Vec<u8> {
        let json = serde_json::to_vec(self).expect("a dead letter serializes");
        if json.len() <= MAX_DEAD_LETTER_BYTES {
            return json;
        }
        let mut cut = self.clone();
        cut.original_truncated = true;
        let mut len = json.len();
        loop {
            // Escaping can make the JSON longer than `original`: cut in proportion,
            // then again if still too long.
            let keep = (cut.original.len() as u128 * (MAX_DEAD_LETTER_BYTES as u128 - 256)
                / len as u128) as usize;
            let mut keep = keep.min(cut.original.len().saturating_sub(1));
            if cut.original_encoding == Encoding::Base64 {
                keep -= keep % 4; // whole base64 quanta still decode
            }
            while !cut.original.is_char_boundary(keep) {
                keep -= 1;
            }
            cut.original.truncate(keep);
            let json = serde_json::to_vec(&cut).expect("a dead letter serializes");
            if json.len() <= MAX_DEAD_LETTER_BYTES {
                return json;
            }
            len = json.len();
        }
    }
}

/// The entries of a batch record's `events`, each exactly as sent (serde_json's raw
/// values: the reader does not keep a row's raw text), to put each
/// rejected row's own JSON in its dead letter. `None` when the record has no
/// `events` array.
pub fn batch_rows(record: &[u8]) -> Option<Vec<&serde_json::value::RawValue>> {
    #[derive(Deserialize)]
    struct Rows<'a> {
        #[serde(borrow)]
        events: Vec<&'a serde_json::value::RawValue>,
    }
    serde_json::from_slice::<Rows<'_>>(record)
        .ok()
        .map(|r| r.events)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> Source {
        Source {
            topic: "leadstream.raw".into(),
            partition: 5,
            offset: 1042,
        }
    }

    #[test]
    fn a_rejected_row_reads_as_documented() {
        let d = DeadLetter::rejected_row(
            source(),
            42,
            "t",
            3,
            "invalid phoneE164".into(),
            Some(r#"{"phoneE164":"n/a"}"#.into()),
            b"{}",
        );
        let v: serde_json::Value = serde_json::from_slice(&d.encode()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "v": 1, "kind": "rejected_row", "organizationId": 42, "eventType": "t", "index": 3,
                "reason": "invalid phoneE164", "source": {"topic": "leadstream.raw", "partition": 5, "offset": 1042},
                "original": "{\"phoneE164\":\"n/a\"}", "originalEncoding": "utf8", "originalScope": "row"
            })
        );
        assert_eq!(serde_json::from_value::<DeadLetter>(v).unwrap(), d);
    }

    #[test]
    fn records_that_are_not_utf8_are_kept_as_base64() {
        let bytes = [0xff, 0xfe, b'{', 0x00];
        let d = DeadLetter::unparseable(source(), "invalid JSON".into(), &bytes);
        let back: DeadLetter = serde_json::from_slice(&d.encode()).unwrap();
        assert_eq!(back.kind, Kind::UnparseableRecord);
        assert_eq!(back.original_encoding, Encoding::Base64);
        assert_eq!(back.original_scope, Scope::Record);
        assert_eq!(back.original_bytes().unwrap(), bytes);
        let v: serde_json::Value = serde_json::from_slice(&d.encode()).unwrap();
        assert_eq!(v["kind"], "unparseable_record");
        assert!(v.get("originalTruncated").is_none());
    }

    #[test]
    fn invalid_records_name_what_they_know() {
        let d = DeadLetter::invalid_record(
            source(),
            Some(7),
            None,
            "missing field eventType".into(),
            br#"{"organizationId":7}"#,
        );
        let v: serde_json::Value = serde_json::from_slice(&d.encode()).unwrap();
        assert_eq!(v["kind"], "invalid_record");
        assert_eq!(v["organizationId"], 7);
        assert!(v.get("eventType").is_none());
    }

    #[test]
    fn big_originals_are_cut_under_the_limit_and_flagged() {
        // Control characters escape to six bytes each: the worst case for the size.
        for record in [
            "\u{1}".repeat(1_000_000).into_bytes(),
            "é".repeat(600_000).into_bytes(),
            vec![0xffu8; 1_000_000],
        ] {
            let d = DeadLetter::unparseable(source(), "x".into(), &record);
            let json = d.encode();
            assert!(json.len() <= MAX_DEAD_LETTER_BYTES, "{}", json.len());
            let back: DeadLetter = serde_json::from_slice(&json).unwrap();
            assert!(back.original_truncated);
            let bytes = back.original_bytes().unwrap();
            assert!(!bytes.is_empty() && record.starts_with(&bytes));
        }
    }

    #[test]
    fn batch_rows_are_the_events_as_sent() {
        let rows =
            batch_rows(br#"{"organizationId":1,"events":[{"phoneE164":"x", "a":1},7]}"#).unwrap();
        assert_eq!(rows[0].get(), r#"{"phoneE164":"x", "a":1}"#);
        assert_eq!(rows[1].get(), "7");
        assert!(batch_rows(b"{}").is_none());
    }
}
