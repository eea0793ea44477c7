//! The ingest stage: a parsed batch becomes validated, normalized rows and rejects.
//!
//! [`Preparer::prepare`] is pure: it checks the request-level fields (a failure is a
//! [`RequestError`], a 400 for the whole call) and judges every event on its own
//! (a failure is a [`Reject`] row, never an error). Dedup and storage come after, in
//! the connectors, which is what makes counts exact across concurrent calls.

use crate::dedup::Probe;
use crate::event::{EventKey, OrgId};
use crate::parse::json::JsonError;
use crate::parse::{Events, Metadata, Parser, RawBatch, RawEvent, Scalar, Slot};
use crate::phone::{Phone, PhoneNormalizer};
use crate::time::parse_rfc3339_us;

/// At most this many events per call.
pub const MAX_EVENTS: usize = 50_000;
/// `eventType` at most this many characters.
pub const MAX_EVENT_TYPE_CHARS: usize = 128;
/// `metadata` at most this many bytes, encoded as compact JSON.
pub const MAX_METADATA_BYTES: usize = 8 * 1024;
/// `rejects` holds at most this many entries; `rejected` counts them all.
pub const MAX_REJECTS_LISTED: usize = 50;

/// A problem with the request as a whole: the call is refused and nothing is stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("the body is not UTF-8 text (invalid byte at offset {0})")]
    NotUtf8(usize),
    #[error("{0}")]
    NotAnObject(&'static str),
    #[error(transparent)]
    Json(#[from] JsonError),
    #[error("field {0} appears twice")]
    DuplicateField(&'static str),
    #[error("a record has either events (a batch) or the fields of one event, not both; got events and {0}")]
    Mixed(&'static str),
    #[error("missing field {0}")]
    Missing(&'static str),
    #[error("{field} must be {expected}, got {got}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
        got: &'static str,
    },
    #[error("events has {0} entries, expected 1 to 50000")]
    EventCount(usize),
    #[error("events has more than 50000 entries; split the batch")]
    TooManyEvents,
    #[error("eventType is empty")]
    EventTypeEmpty,
    #[error("eventType is blank (only whitespace)")]
    EventTypeBlank,
    #[error("eventType contains a control character (U+{0:04X})")]
    EventTypeControl(u32),
    #[error("eventType has an invalid escape (a lone UTF-16 surrogate): {0:?}")]
    EventTypeInvalidEscape(String),
    #[error("eventType is {0} chars, at most 128")]
    EventTypeTooLong(usize),
}

/// Why one event was not stored. The `Display` text is the API's `reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RejectReason {
    #[error("event not an object")]
    NotAnObject,
    #[error("invalid phoneE164")]
    InvalidPhone,
    #[error("missing occurredAt")]
    MissingOccurredAt,
    #[error("invalid occurredAt")]
    InvalidOccurredAt,
    #[error("metadata not an object")]
    MetadataNotObject,
    #[error("metadata over 8 KB encoded")]
    MetadataTooLarge,
    #[error("metadata nested deeper than 64 levels")]
    MetadataTooDeep,
    #[error("metadata has an invalid string escape (a lone UTF-16 surrogate)")]
    MetadataInvalidEscape,
    #[error("duplicate field {0}")]
    DuplicateField(&'static str),
}

/// A rejected event: its index in `events`, `phoneE164` as sent, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Reject {
    pub index: usize,
    pub phone: serde_json::Value,
    pub reason: RejectReason,
}

/// An accepted event, normalized and fingerprinted.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub phone: Phone,
    /// `occurredAt` as UTC microseconds since the epoch ([`crate::time`]).
    pub occurred_at_us: i64,
    /// Compact JSON object text, when metadata was sent.
    pub metadata: Option<Box<str>>,
    pub probe: Probe,
}

/// The outcome of preparing a batch: what to dedup and store, and what was rejected.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    pub org: OrgId,
    pub event_type: String,
    pub received: usize,
    pub rows: Vec<Row>,
    pub rejected: usize,
    /// The first [`MAX_REJECTS_LISTED`] rejects, in input order.
    pub rejects: Vec<Reject>,
}

/// The parse + normalize + validate stage. Holds reusable parser buffers; one per
/// worker thread.
#[derive(Clone)]
pub struct Preparer {
    normalizer: PhoneNormalizer,
}

impl Preparer {
    pub fn new(normalizer: PhoneNormalizer) -> Self {
        Self { normalizer }
    }

    /// The phone normalizer, for other inputs that must normalize as events do.
    pub fn normalizer(&self) -> &PhoneNormalizer {
        &self.normalizer
    }

    /// Reads `organizationId` only, so the caller can authenticate before the rest
    /// of the request is judged.
    ///
    /// # Errors
    /// [`RequestError::Missing`] or [`RequestError::WrongType`].
    pub fn organization_id(raw: &RawBatch<'_>) -> Result<OrgId, RequestError> {
        organization_id(raw.organization_id.as_ref())
    }

    /// Parses `body` with `parser`.
    ///
    /// # Errors
    /// A [`RequestError`] when it is not a JSON object of the right shape.
    pub fn parse<'a>(parser: &mut Parser, body: &'a [u8]) -> Result<RawBatch<'a>, RequestError> {
        parser.parse_batch(body)
    }

    /// Validates the request-level fields and judges every event.
    ///
    /// # Errors
    /// A [`RequestError`] when the call as a whole must be refused.
    pub fn prepare(&self, raw: RawBatch<'_>) -> Result<Prepared, RequestError> {
        let org = Self::organization_id(&raw)?;
        let event_type = event_type(raw.event_type.as_ref())?;
        let events = match raw.events {
            None => return Err(RequestError::Missing("events")),
            Some(Events::NotArray(kind)) => {
                return Err(RequestError::WrongType {
                    field: "events",
                    expected: "an array",
                    got: kind,
                })
            }
            Some(Events::List(v)) => v,
        };
        if events.is_empty() || events.len() > MAX_EVENTS {
            return Err(RequestError::EventCount(events.len()));
        }
        let mut out = Prepared {
            org,
            event_type: event_type.to_owned(),
            received: events.len(),
            rows: Vec::with_capacity(events.len()),
            rejected: 0,
            rejects: Vec::new(),
        };
        for (index, slot) in events.into_iter().enumerate() {
            let judged = match slot {
                Slot::Event(ev) => self.judge(org, event_type, ev),
                Slot::NotObject(_) => Err((RejectReason::NotAnObject, serde_json::Value::Null)),
            };
            match judged {
                Ok(row) => out.rows.push(row),
                Err((reason, phone)) => {
                    out.rejected += 1;
                    if out.rejects.len() < MAX_REJECTS_LISTED {
                        out.rejects.push(Reject {
                            index,
                            phone,
                            reason,
                        });
                    }
                }
            }
        }
        Ok(out)
    }

    /// Judges one event against `org` and `event_type`, which apply to all of a batch.
    ///
    /// # Errors
    /// The reason, with `phoneE164` as sent, when the event must be rejected.
    pub fn judge(
        &self,
        org: OrgId,
        event_type: &str,
        ev: RawEvent<'_>,
    ) -> Result<Row, (RejectReason, serde_json::Value)> {
        let as_sent = |ev: &RawEvent<'_>| {
            ev.phone
                .as_ref()
                .map_or(serde_json::Value::Null, Scalar::to_json)
        };
        if let Some(field) = ev.duplicate {
            return Err((RejectReason::DuplicateField(field), as_sent(&ev)));
        }
        let normalize = |s: &str| match ev.phone_normalized {
            // Kept as it is when it is a valid number at all (re-normalizing a
            // normalized number can change it: `+4900301234567` → `+490301234567`).
            true => s
                .parse::<Phone>()
                .ok()
                .filter(|_| self.normalizer.normalize(s).is_some()),
            false => self.normalizer.normalize(s),
        };
        let Some(phone) = ev
            .phone
            .as_ref()
            .and_then(Scalar::as_str)
            .and_then(normalize)
        else {
            return Err((RejectReason::InvalidPhone, as_sent(&ev)));
        };
        let occurred_at_us = match &ev.occurred_at {
            None | Some(Scalar::Null) => {
                return Err((RejectReason::MissingOccurredAt, as_sent(&ev)))
            }
            Some(s) => match s.as_str().and_then(parse_rfc3339_us) {
                Some(us) => us,
                None => return Err((RejectReason::InvalidOccurredAt, as_sent(&ev))),
            },
        };
        let metadata = match ev.metadata {
            Metadata::None => None,
            Metadata::NotObject(_) => return Err((RejectReason::MetadataNotObject, as_sent(&ev))),
            Metadata::TooDeep => return Err((RejectReason::MetadataTooDeep, as_sent(&ev))),
            Metadata::InvalidEscape => {
                return Err((RejectReason::MetadataInvalidEscape, as_sent(&ev)))
            }
            Metadata::Object(ref text) if text.len() > MAX_METADATA_BYTES => {
                return Err((RejectReason::MetadataTooLarge, as_sent(&ev)))
            }
            Metadata::Object(text) => Some(text.into_owned().into_boxed_str()),
        };
        Ok(Row::new(org, event_type, phone, occurred_at_us, metadata))
    }
}

impl Row {
    /// A row of `org`'s `event_type` batch, its dedup probe computed from the key.
    /// The fields must already be what [`Preparer::prepare`] makes of an event (a
    /// normalized phone, compact metadata within [`MAX_METADATA_BYTES`]).
    pub fn new(
        org: OrgId,
        event_type: &str,
        phone: Phone,
        occurred_at_us: i64,
        metadata: Option<Box<str>>,
    ) -> Self {
        let key = EventKey {
            org,
            phone,
            event_type,
            occurred_at_us,
        };
        Row {
            phone,
            occurred_at_us,
            metadata,
            probe: Probe {
                fingerprint: key.fingerprint(),
                lead: key.lead_hash(),
            },
        }
    }
}

/// `organizationId`: a number whose value is an integer that fits 64 bits.
///
/// # Errors
/// [`RequestError::Missing`] or [`RequestError::WrongType`].
pub fn organization_id(v: Option<&Scalar<'_>>) -> Result<OrgId, RequestError> {
    match v {
        None | Some(Scalar::Null) => Err(RequestError::Missing("organizationId")),
        Some(s) => s.as_i64().ok_or(RequestError::WrongType {
            field: "organizationId",
            expected: "an integer of at most 64 bits",
            got: match s {
                Scalar::Number(_) => "a fraction or a larger number",
                other => other.kind(),
            },
        }),
    }
}

/// `eventType`: a string of 1 to 128 characters, not blank, with no control
/// characters and no invalid escapes.
fn event_type<'a>(v: Option<&'a Scalar<'_>>) -> Result<&'a str, RequestError> {
    let t = match v {
        None | Some(Scalar::Null) => return Err(RequestError::Missing("eventType")),
        Some(Scalar::Str(s)) => s.as_ref(),
        Some(Scalar::InvalidStr(raw)) => {
            return Err(RequestError::EventTypeInvalidEscape((*raw).to_owned()))
        }
        Some(other) => {
            return Err(RequestError::WrongType {
                field: "eventType",
                expected: "a string",
                got: other.kind(),
            })
        }
    };
    if t.is_empty() {
        return Err(RequestError::EventTypeEmpty);
    }
    if let Some(c) = t.chars().find(|c| c.is_control()) {
        return Err(RequestError::EventTypeControl(c as u32));
    }
    if t.chars().all(char::is_whitespace) {
        return Err(RequestError::EventTypeBlank);
    }
    let chars = t.chars().count();
    if chars > MAX_EVENT_TYPE_CHARS {
        return Err(RequestError::EventTypeTooLong(chars));
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepare(body: &str) -> Result<Prepared, RequestError> {
        let mut parser = Parser::new();
        let raw = Preparer::parse(&mut parser, body.as_bytes())?;
        Preparer::new(PhoneNormalizer::new()).prepare(raw)
    }

    #[test]
    fn request_level_errors_name_the_problem() {
        let cases = [
            (r#"{"eventType":"x","events":[{}]}"#, "missing field organizationId"),
            (r#"{"organizationId":"42","eventType":"x","events":[{}]}"#, "organizationId must be an integer of at most 64 bits, got a string"),
            (r#"{"organizationId":42.5,"eventType":"x","events":[{}]}"#, "organizationId must be an integer of at most 64 bits, got a fraction or a larger number"),
            (r#"{"organizationId":42,"eventType":"  ","events":[{}]}"#, "eventType is blank (only whitespace)"),
            (r#"{"organizationId":42,"eventType":"a\nb","events":[{}]}"#, "eventType contains a control character (U+000A)"),
            (r#"{"organizationId":42,"eventType":"x\u0000","events":[{}]}"#, "eventType contains a control character (U+0000)"),
            (r#"{"organizationId":42,"eventType":"x\ud800","events":[{}]}"#, "eventType has an invalid escape (a lone UTF-16 surrogate): \"x\\\\ud800\""),
            (r#"{"organizationId":42,"events":[{}]}"#, "missing field eventType"),
            (r#"{"organizationId":42,"eventType":"","events":[{}]}"#, "eventType is empty"),
            (r#"{"organizationId":42,"eventType":"x"}"#, "missing field events"),
            (r#"{"organizationId":42,"eventType":"x","events":{}}"#, "events must be an array, got an object"),
            (r#"{"organizationId":42,"eventType":"x","events":[]}"#, "events has 0 entries, expected 1 to 50000"),
        ];
        for (body, msg) in cases {
            assert_eq!(prepare(body).unwrap_err().to_string(), msg, "{body}");
        }
        let long = format!(
            r#"{{"organizationId":42,"eventType":"{}","events":[{{}}]}}"#,
            "é".repeat(129)
        );
        assert_eq!(
            prepare(&long).unwrap_err().to_string(),
            "eventType is 129 chars, at most 128"
        );
        let ok = format!(
            r#"{{"organizationId":42,"eventType":"{}","events":[{{}}]}}"#,
            "é".repeat(128)
        );
        assert!(prepare(&ok).is_ok());
        assert!(matches!(
            prepare("{nope"),
            Err(RequestError::Json(JsonError::Syntax { at: 1, .. }))
        ));
    }

    #[test]
    fn row_problems_are_rejects_with_reasons() {
        let big = format!(r#"{{"k":"{}"}}"#, "x".repeat(8200));
        let body = format!(
            r#"{{"organizationId":42,"eventType":"t","events":[
            {{"phoneE164":"+15551234567","occurredAt":"2026-05-12T18:34:00Z"}},
            {{"phoneE164":"not a phone","occurredAt":"2026-05-12T18:34:00Z"}},
            {{"phoneE164":"+15551234567"}},
            {{"phoneE164":"+15551234567","occurredAt":"yesterday"}},
            {{"phoneE164":"+15551234567","occurredAt":"2026-05-12T18:34:00Z","metadata":[1]}},
            {{"phoneE164":"+15551234567","occurredAt":"2026-05-12T18:34:00Z","metadata":{big}}},
            17,
            {{"phoneE164":15551234567,"occurredAt":"2026-05-12T18:34:00Z"}}
        ]}}"#
        );
        let p = prepare(&body).unwrap();
        assert_eq!((p.received, p.rows.len(), p.rejected), (8, 1, 7));
        let reasons: Vec<(usize, String)> = p
            .rejects
            .iter()
            .map(|r| (r.index, r.reason.to_string()))
            .collect();
        assert_eq!(
            reasons,
            [
                (1, "invalid phoneE164".to_string()),
                (2, "missing occurredAt".into()),
                (3, "invalid occurredAt".into()),
                (4, "metadata not an object".into()),
                (5, "metadata over 8 KB encoded".into()),
                (6, "event not an object".into()),
                (7, "invalid phoneE164".into()),
            ]
        );
        assert_eq!(p.rejects[0].phone, serde_json::json!("not a phone"));
        assert_eq!(p.rejects[6].phone, serde_json::json!(15551234567u64));
    }

    #[test]
    fn hostile_rows_are_rejects_and_valid_json_never_fails_the_batch() {
        let deep = format!("{}{}", "[".repeat(70), "]".repeat(70));
        let body = format!(
            r#"{{"organizationId":42,"eventType":"t","unknown":[1e400,123456789012345678901,"\ud800"],"events":[
            {{"phoneE164":"+15551234567","occurredAt":"2026-05-12T18:34:00Z","metadata":{{ "n": 1E2, "z": 0.1e-400, "big": 123456789012345678901 }}}},
            {{"phoneE164":"+15551234567","occurredAt":"2026-05-12T18:35:00Z","metadata":{{"a":{deep}}}}},
            {{"phoneE164":"+15551234567","occurredAt":"2026-05-12T18:36:00Z","metadata":{{"a":"x\ud800"}}}},
            {{"phoneE164":"+15551234567","phoneE164":"+15551234568","occurredAt":"2026-05-12T18:37:00Z"}},
            {{"phoneE164":"+1555\udbff1234567","occurredAt":"2026-05-12T18:38:00Z"}},
            {{"phoneE164":1e400,"occurredAt":"2026-05-12T18:39:00Z"}}
        ]}}"#
        );
        let p = prepare(&body).unwrap();
        assert_eq!((p.received, p.rows.len(), p.rejected), (6, 1, 5));
        assert_eq!(
            p.rows[0].metadata.as_deref(),
            Some(r#"{"n":1E2,"z":0.1e-400,"big":123456789012345678901}"#)
        );
        let reasons: Vec<String> = p.rejects.iter().map(|r| r.reason.to_string()).collect();
        assert_eq!(
            reasons,
            [
                "metadata nested deeper than 64 levels",
                "metadata has an invalid string escape (a lone UTF-16 surrogate)",
                "duplicate field phoneE164",
                "invalid phoneE164",
                "invalid phoneE164"
            ]
        );
        assert_eq!(p.rejects[3].phone, serde_json::json!(r"+1555\udbff1234567"));
        assert_eq!(p.rejects[4].phone, serde_json::json!("1e400"));
    }

    #[test]
    fn only_the_first_fifty_rejects_are_listed() {
        let events: Vec<String> = (0..120)
            .map(|_| r#"{"phoneE164":"x","occurredAt":"2026-05-12T18:34:00Z"}"#.to_string())
            .collect();
        let body = format!(
            r#"{{"organizationId":1,"eventType":"t","events":[{}]}}"#,
            events.join(",")
        );
        let p = prepare(&body).unwrap();
        assert_eq!(
            (p.rejected, p.rejects.len(), p.rejects[49].index),
            (120, 50, 49)
        );
    }

    #[test]
    fn one_instant_and_one_number_make_one_key() {
        let body = r#"{"organizationId":42,"eventType":"t","events":[
            {"phoneE164":"+15551234567","occurredAt":"2026-05-12T18:34:00Z"},
            {"phoneE164":"1 (555) 123-4567","occurredAt":"2026-05-12T13:34:00-05:00"}]}"#;
        let p = prepare(body).unwrap();
        assert_eq!(p.rows.len(), 2);
        assert_eq!(p.rows[0].probe.fingerprint, p.rows[1].probe.fingerprint);
        assert_eq!(p.rows[0].phone.to_string(), "+15551234567");
    }

    #[test]
    fn instants_100_microseconds_apart_are_two_keys() {
        let body = r#"{"organizationId":42,"eventType":"t","events":[
            {"phoneE164":"+15551234567","occurredAt":"2026-05-12T18:34:00.0001Z"},
            {"phoneE164":"+15551234567","occurredAt":"2026-05-12T18:34:00.0002Z"}]}"#;
        let p = prepare(body).unwrap();
        assert_eq!(p.rows[1].occurred_at_us - p.rows[0].occurred_at_us, 100);
        assert_ne!(p.rows[0].probe.fingerprint, p.rows[1].probe.fingerprint);
    }

    #[test]
    fn a_rerouted_record_keeps_its_normalized_phone() {
        let n = PhoneNormalizer::new();
        // libphonenumber strips a second national prefix on a second pass.
        let once = n.normalize("+49 000 30 1234567").unwrap();
        assert_ne!(n.normalize(&once.to_string()), Some(once));
        let record = |kind: &str, phone: &str| {
            format!(
                r#"{{"kind":"{kind}","v":1,"organizationId":7,"eventType":"t","phoneE164":"{phone}","occurredAt":"2026-05-12T18:34:00Z"}}"#
            )
        };
        let prepare = |text: String| {
            let raw = Parser::new()
                .parse_record(text.as_bytes())
                .unwrap()
                .into_batch();
            Preparer::new(n.clone()).prepare(raw).unwrap()
        };
        let p = prepare(record("rerouted_event", &once.to_string()));
        assert_eq!(p.rows[0].phone, once);
        // Anything else is normalized as always, and a re-routed junk phone is refused.
        assert_ne!(
            prepare(record("other", &once.to_string())).rows[0].phone,
            once
        );
        assert_eq!(prepare(record("rerouted_event", "+1")).rejected, 1);
    }
}
