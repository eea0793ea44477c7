//! Parsing lead-event bodies and raw-topic records into borrowed, typed values.
//!
//! One pass of the [`json`] reader over the body's text, straight into the types
//! below: strings and numbers borrow from the body, nothing goes through a generic DOM,
//! nothing recurses. Field types are lenient on purpose: a wrong type inside one event
//! is a per-row reject, never a failure of the whole batch, so every field is read as a
//! [`Scalar`] and judged afterwards. `metadata` is kept as the client's JSON text,
//! minified (whitespace between tokens removed, strings and numbers byte for byte as
//! sent), which is both what is stored and what the 8 KB cap measures.
//!
//! # Rules for what JSON allows but a lead event cannot mean
//! - **Nesting**: at most [`json::MAX_DEPTH`] (128) levels anywhere in a document, else
//!   the whole request is refused; inside `metadata` at most [`MAX_METADATA_DEPTH`]
//!   (64) levels, else that event is rejected.
//! - **Lone surrogates** (`"\ud800"`, valid JSON grammar, no Unicode text): refused in
//!   `eventType` and `organizationId` (400), a rejected row in `phoneE164`,
//!   `occurredAt` or `metadata`, ignored in fields leadstream does not read. Never
//!   decoded to some other character.
//! - **Numbers** are valid at any size (`1e400`, 21-digit integers) and are kept as
//!   sent; `organizationId` must be a number whose value is an integer that fits 64
//!   bits (`42`, `42.0` and `4.2e1` are the same organization).
//! - **Duplicate keys**: a field leadstream reads that appears twice in one object
//!   refuses that object: at the top level the request (400 `field eventType appears
//!   twice`), inside `events` that event (reject `duplicate field phoneE164`). Keys
//!   leadstream does not read, and everything inside `metadata`, are not interpreted
//!   and are kept as sent.
//! - **`events`**: reading stops at the 50,001st entry (the request is refused), so a
//!   body of millions of tiny entries costs no more than 50,001 of them.

pub mod json;

use crate::batch::{RequestError, MAX_EVENTS};
use json::{Escapes, JStr, JsonError, Reader, Value};
use std::borrow::Cow;

/// Deepest nesting of arrays and objects inside one event's `metadata`, counting the
/// metadata object itself as level 1.
pub const MAX_METADATA_DEPTH: usize = 64;

/// A JSON value read leniently: strings borrowed (decoded), numbers as sent,
/// containers skipped.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar<'a> {
    Null,
    Bool(bool),
    /// A number's text, as sent.
    Number(&'a str),
    Str(Cow<'a, str>),
    /// A string holding a lone UTF-16 surrogate escape: its text between the quotes.
    InvalidStr(&'a str),
    Array,
    Object,
}

impl<'a> Scalar<'a> {
    /// The JSON type name, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Scalar::Null => "null",
            Scalar::Bool(_) => "a boolean",
            Scalar::Number(_) => "a number",
            Scalar::Str(_) => "a string",
            Scalar::InvalidStr(_) => "a string with an invalid escape (a lone UTF-16 surrogate)",
            Scalar::Array => "an array",
            Scalar::Object => "an object",
        }
    }

    /// The value as sent, for echoing back in rejects. A number too large for a JSON
    /// library to hold, and a string with a lone surrogate, are echoed as their text.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Scalar::Null => serde_json::Value::Null,
            Scalar::Bool(b) => (*b).into(),
            Scalar::Number(n) => n
                .parse::<serde_json::Number>()
                .map_or_else(|_| (*n).into(), Into::into),
            Scalar::Str(s) => s.as_ref().into(),
            Scalar::InvalidStr(raw) => (*raw).into(),
            Scalar::Array => serde_json::Value::Array(Vec::new()),
            Scalar::Object => serde_json::Value::Object(Default::default()),
        }
    }

    /// The string, when it is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Scalar::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The number as an `i64` when its value is an integer that fits, however it is
    /// written (`42`, `42.0`, `4.2e1`: JSON and JSON Schema make no difference).
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Scalar::Number(n) => exact_i64(n),
            _ => None,
        }
    }

    fn from_value(v: Value<'a>) -> Self {
        match v {
            Value::Null => Scalar::Null,
            Value::Bool(b) => Scalar::Bool(b),
            Value::Number(n) => Scalar::Number(n),
            Value::Str(s) => string(s),
            Value::Array => Scalar::Array,
            Value::Object => Scalar::Object,
        }
    }
}

/// The exact integer value of a JSON number's text, if it has one that fits an `i64`.
fn exact_i64(text: &str) -> Option<i64> {
    if let Ok(v) = text.parse() {
        return Some(v);
    }
    let (negative, rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text),
    };
    let (mantissa, exp) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], rest[i + 1..].parse::<i64>().ok()?),
        None => (rest, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    // digits × 10^(exp - frac.len()), exactly.
    let digits = format!("{int}{frac}");
    let shift = exp.checked_sub(frac.len() as i64)?;
    let digits = digits.trim_start_matches('0');
    let (kept, dropped) = if shift < 0 {
        let cut = digits.len().saturating_sub(shift.unsigned_abs() as usize);
        digits.split_at(cut)
    } else {
        (digits, "")
    };
    if !dropped.bytes().all(|b| b == b'0') {
        return None; // a fraction
    }
    if kept.is_empty() {
        return Some(0);
    }
    let zeros = usize::try_from(shift.max(0)).ok()?;
    if kept.len() + zeros > 19 {
        return None;
    }
    let magnitude: i128 = format!("{kept}{}", "0".repeat(zeros)).parse().ok()?;
    i64::try_from(if negative { -magnitude } else { magnitude }).ok()
}

fn string(s: JStr<'_>) -> Scalar<'_> {
    match s.decode() {
        Some(v) => Scalar::Str(v),
        None => Scalar::InvalidStr(s.raw),
    }
}

/// An event's `metadata` as sent.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Metadata<'a> {
    /// Absent or `null`.
    #[default]
    None,
    /// A JSON object: the client's text, minified.
    Object(Cow<'a, str>),
    /// Something other than an object (the JSON type name).
    NotObject(&'static str),
    /// An object nested deeper than [`MAX_METADATA_DEPTH`].
    TooDeep,
    /// An object with a string (key or value) holding a lone surrogate escape.
    InvalidEscape,
}

/// One entry of `events`, fields read leniently. Unknown fields are skipped.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RawEvent<'a> {
    /// `phoneE164`, or `None` when absent.
    pub phone: Option<Scalar<'a>>,
    /// `occurredAt`, or `None` when absent.
    pub occurred_at: Option<Scalar<'a>>,
    pub metadata: Metadata<'a>,
    /// The first field leadstream reads that appeared twice, if any.
    pub duplicate: Option<&'static str>,
    /// `phoneE164` is a normalized E.164 already (a re-routed raw record,
    /// `"kind":"rerouted_event"`): normalizing it again could change it, since
    /// libphonenumber is not idempotent on every number.
    pub phone_normalized: bool,
}

/// An entry of `events`: an object, or something else (a per-row reject).
#[derive(Debug, Clone, PartialEq)]
pub enum Slot<'a> {
    Event(RawEvent<'a>),
    NotObject(Scalar<'a>),
}

/// `events` as sent: an array of slots, or some other JSON value.
#[derive(Debug, Clone, PartialEq)]
pub enum Events<'a> {
    List(Vec<Slot<'a>>),
    NotArray(&'static str),
}

/// A lead-events request body, before validation.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RawBatch<'a> {
    pub organization_id: Option<Scalar<'a>>,
    pub event_type: Option<Scalar<'a>>,
    pub events: Option<Events<'a>>,
}

/// A record on the raw Kafka topic, before validation: either a batch shaped like the
/// HTTP body (`events` present) or one event with its organization and type
/// (`{organizationId, eventType, phoneE164, occurredAt, metadata?}`).
///
/// [`RawRecord::into_batch`] turns either into a [`RawBatch`] (one event becomes a
/// batch of one), so both shapes go through the same validation as HTTP.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RawRecord<'a> {
    pub organization_id: Option<Scalar<'a>>,
    pub event_type: Option<Scalar<'a>>,
    /// `events`, for a batch record.
    pub events: Option<Events<'a>>,
    /// The event's own fields, for a per-event record.
    pub event: RawEvent<'a>,
}

impl<'a> RawRecord<'a> {
    /// Whether this is a batch record (it has `events`).
    pub fn is_batch(&self) -> bool {
        self.events.is_some()
    }

    /// The record as a batch: itself for a batch record, a batch of one event otherwise.
    pub fn into_batch(self) -> RawBatch<'a> {
        let events = match self.events {
            Some(events) => events,
            None => Events::List(vec![Slot::Event(self.event)]),
        };
        RawBatch {
            organization_id: self.organization_id,
            event_type: self.event_type,
            events: Some(events),
        }
    }
}

/// The document's text, or the request error for a body that is not UTF-8 JSON text.
fn text(body: &[u8]) -> Result<&str, RequestError> {
    std::str::from_utf8(body).map_err(|e| RequestError::NotUtf8(e.valid_up_to()))
}

/// An object key's value, decoding escapes only when it has some.
fn key<'a>(k: &JStr<'a>) -> Cow<'a, str> {
    match k.escapes {
        Escapes::None => Cow::Borrowed(k.raw),
        _ => k.decode().unwrap_or(Cow::Borrowed("")),
    }
}

fn set_once<'a>(
    slot: &mut Option<Scalar<'a>>,
    value: Scalar<'a>,
    name: &'static str,
) -> Result<(), RequestError> {
    if slot.replace(value).is_some() {
        return Err(RequestError::DuplicateField(name));
    }
    Ok(())
}

fn scalar<'a>(r: &mut Reader<'a>) -> Result<Scalar<'a>, JsonError> {
    r.value().map(Scalar::from_value)
}

fn metadata<'a>(r: &mut Reader<'a>) -> Result<Metadata<'a>, JsonError> {
    if r.peek() != Some(b'{') {
        return Ok(match r.value()? {
            Value::Null => Metadata::None,
            other => Metadata::NotObject(other.kind()),
        });
    }
    let seen = r.skip()?;
    Ok(if seen.depth > MAX_METADATA_DEPTH {
        Metadata::TooDeep
    } else if seen.invalid_escape {
        Metadata::InvalidEscape
    } else {
        let text = r.slice(seen.start, seen.end);
        Metadata::Object(if seen.whitespace {
            Cow::Owned(json::minify(text))
        } else {
            Cow::Borrowed(text)
        })
    })
}

/// Reads one of an event's own fields into `ev`; `false` when `name` is not one.
/// `seen` has a bit per field already given, for the duplicate rule (a key given
/// twice counts, whatever its values, `null` included).
fn event_field<'a>(
    r: &mut Reader<'a>,
    ev: &mut RawEvent<'a>,
    seen: &mut u8,
    name: &str,
) -> Result<bool, JsonError> {
    let (field, bit) = match name {
        "phoneE164" => {
            ev.phone = Some(scalar(r)?);
            ("phoneE164", 1)
        }
        "occurredAt" => {
            ev.occurred_at = Some(scalar(r)?);
            ("occurredAt", 2)
        }
        "metadata" => {
            ev.metadata = metadata(r)?;
            ("metadata", 4)
        }
        _ => return Ok(false),
    };
    if *seen & bit != 0 && ev.duplicate.is_none() {
        ev.duplicate = Some(field);
    }
    *seen |= bit;
    Ok(true)
}

fn event<'a>(r: &mut Reader<'a>) -> Result<Slot<'a>, JsonError> {
    if r.peek() != Some(b'{') {
        return scalar(r).map(Slot::NotObject);
    }
    r.begin_object()?;
    let mut ev = RawEvent::default();
    let mut seen = 0;
    let mut first = true;
    while let Some(k) = r.next_key(&mut first)? {
        if !event_field(r, &mut ev, &mut seen, &key(&k))? {
            r.skip()?;
        }
    }
    Ok(Slot::Event(ev))
}

fn events<'a>(r: &mut Reader<'a>) -> Result<Events<'a>, RequestError> {
    if r.peek() != Some(b'[') {
        return Ok(Events::NotArray(r.value()?.kind()));
    }
    r.begin_array()?;
    let mut list = Vec::with_capacity(1024);
    let mut first = true;
    while r.next_element(&mut first)? {
        if list.len() == MAX_EVENTS {
            return Err(RequestError::TooManyEvents);
        }
        list.push(event(r)?);
    }
    Ok(Events::List(list))
}

/// Stateless today (the reader needs no scratch space); kept as the one entry point so
/// callers hold one per thread whatever parsing needs later.
#[derive(Debug, Default)]
pub struct Parser {
    _private: (),
}

impl Parser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses a lead-events body.
    ///
    /// # Errors
    /// A [`RequestError`] when `body` is not UTF-8 JSON, not an object, nested too
    /// deep, has a field leadstream reads twice, or more than 50,000 events.
    pub fn parse_batch<'a>(&mut self, body: &'a [u8]) -> Result<RawBatch<'a>, RequestError> {
        let mut r = Reader::new(text(body)?);
        if r.peek() != Some(b'{') {
            return Err(RequestError::NotAnObject(
                "the body must be a JSON object with organizationId, eventType and events",
            ));
        }
        r.begin_object()?;
        let mut b = RawBatch::default();
        let mut first = true;
        while let Some(k) = r.next_key(&mut first)? {
            match key(&k).as_ref() {
                "organizationId" => {
                    set_once(&mut b.organization_id, scalar(&mut r)?, "organizationId")?
                }
                "eventType" => set_once(&mut b.event_type, scalar(&mut r)?, "eventType")?,
                "events" => {
                    let e = events(&mut r)?;
                    if b.events.replace(e).is_some() {
                        return Err(RequestError::DuplicateField("events"));
                    }
                }
                _ => {
                    r.skip()?;
                }
            }
        }
        r.finish()?;
        Ok(b)
    }

    /// Parses a raw-topic record (a batch or one event, see [`RawRecord`]).
    ///
    /// # Errors
    /// A readable description when `body` is not UTF-8 JSON, not an object, has a
    /// field twice, or has both `events` and the fields of one event.
    pub fn parse_record<'a>(&mut self, body: &'a [u8]) -> Result<RawRecord<'a>, String> {
        self.record(body).map_err(|e| e.to_string())
    }

    fn record<'a>(&mut self, body: &'a [u8]) -> Result<RawRecord<'a>, RequestError> {
        let mut r = Reader::new(text(body)?);
        if r.peek() != Some(b'{') {
            return Err(RequestError::NotAnObject(
                "a record must be a JSON object: a batch {organizationId, eventType, events} or one event {organizationId, eventType, phoneE164, occurredAt, metadata?}",
            ));
        }
        r.begin_object()?;
        let mut rec = RawRecord::default();
        let mut event_field_seen = None;
        let mut seen = 0;
        let mut first = true;
        while let Some(k) = r.next_key(&mut first)? {
            let name = key(&k);
            match name.as_ref() {
                "organizationId" => {
                    set_once(&mut rec.organization_id, scalar(&mut r)?, "organizationId")?
                }
                "eventType" => set_once(&mut rec.event_type, scalar(&mut r)?, "eventType")?,
                "events" => {
                    let e = events(&mut r)?;
                    if rec.events.replace(e).is_some() {
                        return Err(RequestError::DuplicateField("events"));
                    }
                }
                "kind" => {
                    let kind = scalar(&mut r)?;
                    rec.event.phone_normalized = kind.as_str() == Some("rerouted_event");
                }
                other => {
                    if event_field(&mut r, &mut rec.event, &mut seen, other)? {
                        if let Some(dup) = rec.event.duplicate {
                            return Err(RequestError::DuplicateField(dup));
                        }
                        event_field_seen = Some(match other {
                            "phoneE164" => "phoneE164",
                            "occurredAt" => "occurredAt",
                            _ => "metadata",
                        });
                    } else {
                        r.skip()?;
                    }
                }
            }
        }
        r.finish()?;
        if let (Some(field), true) = (event_field_seen, rec.events.is_some()) {
            return Err(RequestError::Mixed(field));
        }
        Ok(rec)
    }
}

/// Finds a body's top-level `organizationId` without parsing the rest: keys are read
/// and other values skipped (validated, not built), so it costs one pass and no
/// allocation. For authenticating a signed body before parsing it.
///
/// # Errors
/// The [`RequestError`] the full parse would give for a missing or mistyped
/// `organizationId` or for a body that is not a JSON object (up to that field).
pub fn find_organization_id(body: &[u8]) -> Result<i64, RequestError> {
    let mut r = Reader::new(text(body)?);
    if r.peek() != Some(b'{') {
        return Err(RequestError::NotAnObject(
            "the body must be a JSON object with organizationId, eventType and events",
        ));
    }
    r.begin_object()?;
    let mut first = true;
    while let Some(k) = r.next_key(&mut first)? {
        if key(&k) == "organizationId" {
            let v = scalar(&mut r)?;
            return crate::batch::organization_id(Some(&v));
        }
        r.skip()?;
    }
    Err(RequestError::Missing("organizationId"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> RawBatch<'_> {
        Parser::new().parse_batch(s.as_bytes()).unwrap()
    }

    #[test]
    fn integers_are_read_by_value_however_written() {
        for (text, want) in [
            ("42", Some(42)),
            ("42.0", Some(42)),
            ("4.2e1", Some(42)),
            ("4200e-2", Some(42)),
            ("-0.0", Some(0)),
            ("0e5", Some(0)),
            ("1E2", Some(100)),
            ("9223372036854775807", Some(i64::MAX)),
            ("-9223372036854775808", Some(i64::MIN)),
            ("9.223372036854775807e18", Some(i64::MAX)),
            ("4.25e1", None),
            ("0.5", None),
            ("9223372036854775808", None),
            ("1e19", None),
            ("1e400", None),
            ("1e-400", None),
        ] {
            assert_eq!(Scalar::Number(text).as_i64(), want, "{text}");
        }
    }

    #[test]
    fn reads_the_seed_body() {
        let b = parse(
            r#"{"organizationId":42,"eventType":"mastery_purchase","events":[{"phoneE164":"+15551234567","occurredAt":"2026-05-12T18:34:00Z","metadata":{"orderId":"ord_9F2","amountUsd":297}}]}"#,
        );
        assert_eq!(
            b.organization_id.as_ref().and_then(Scalar::as_i64),
            Some(42)
        );
        assert_eq!(
            b.event_type.as_ref().and_then(Scalar::as_str),
            Some("mastery_purchase")
        );
        let Some(Events::List(ev)) = b.events else {
            panic!("no events")
        };
        let Slot::Event(e) = &ev[0] else {
            panic!("not an event")
        };
        assert_eq!(
            e.phone.as_ref().and_then(Scalar::as_str),
            Some("+15551234567")
        );
        assert_eq!(
            e.metadata,
            Metadata::Object(r#"{"orderId":"ord_9F2","amountUsd":297}"#.into())
        );
    }

    #[test]
    fn wrong_types_inside_events_do_not_fail_the_batch() {
        let b = parse(
            r#"{"organizationId":"42","events":[7,{"phoneE164":15551234567,"metadata":[1],"x":{"y":[]}},{"metadata":null,"occurredAt":"a\"b"}]}"#,
        );
        assert_eq!(b.organization_id, Some(Scalar::Str("42".into())));
        assert_eq!(b.event_type, None);
        let Some(Events::List(ev)) = b.events else {
            panic!()
        };
        assert_eq!(ev[0], Slot::NotObject(Scalar::Number("7")));
        let Slot::Event(e) = &ev[1] else { panic!() };
        assert_eq!(e.phone, Some(Scalar::Number("15551234567")));
        assert_eq!(e.metadata, Metadata::NotObject("an array"));
        let Slot::Event(e) = &ev[2] else { panic!() };
        assert_eq!(e.metadata, Metadata::None);
        assert_eq!(
            e.occurred_at.as_ref().and_then(Scalar::as_str),
            Some("a\"b")
        );
    }

    #[test]
    fn metadata_is_the_clients_text_minified() {
        let b = parse(
            r#"{"events":[{"metadata": { "n" : 1E2, "tiny": 0.1e-400, "big": 123456789012345678901, "inf": 1e400, "s": "a  b", "d":{"k":1,"k":2} }}], "x": 1e400, "y": -123456789012345678901234}"#,
        );
        let Some(Events::List(ev)) = b.events else {
            panic!()
        };
        let Slot::Event(e) = &ev[0] else { panic!() };
        assert_eq!(
            e.metadata,
            Metadata::Object(r#"{"n":1E2,"tiny":0.1e-400,"big":123456789012345678901,"inf":1e400,"s":"a  b","d":{"k":1,"k":2}}"#.into())
        );
    }

    #[test]
    fn lone_surrogates_are_never_decoded_to_something_else() {
        let b = parse(
            r#"{"eventType":"x\ud800","events":[{"phoneE164":"+1555\udbff","metadata":{"a":"x\ud800"}},{"metadata":{"\udc00":1}}]}"#,
        );
        assert_eq!(b.event_type, Some(Scalar::InvalidStr(r"x\ud800")));
        let Some(Events::List(ev)) = b.events else {
            panic!()
        };
        let Slot::Event(e) = &ev[0] else { panic!() };
        assert_eq!(e.phone, Some(Scalar::InvalidStr(r"+1555\udbff")));
        assert_eq!(e.metadata, Metadata::InvalidEscape);
        let Slot::Event(e) = &ev[1] else { panic!() };
        assert_eq!(e.metadata, Metadata::InvalidEscape);
        // NUL is a valid escape: it is a character, kept as sent in metadata.
        let b = parse(r#"{"eventType":"x\u0000","events":[{"metadata":{"a":"\u0000"}}]}"#);
        assert_eq!(b.event_type, Some(Scalar::Str("x\0".into())));
    }

    #[test]
    fn metadata_nesting_is_limited() {
        let nest = |n: usize| {
            format!(
                r#"{{"events":[{{"metadata":{}{}}}]}}"#,
                "{\"a\":".repeat(n - 1) + "{",
                "}".repeat(n)
            )
        };
        let deep = nest(MAX_METADATA_DEPTH + 1);
        let Some(Events::List(ev)) = parse(&deep).events else {
            panic!()
        };
        assert_eq!(
            ev[0],
            Slot::Event(RawEvent {
                metadata: Metadata::TooDeep,
                ..Default::default()
            })
        );
        let ok = nest(MAX_METADATA_DEPTH);
        let Some(Events::List(ev)) = parse(&ok).events else {
            panic!()
        };
        let Slot::Event(e) = &ev[0] else { panic!() };
        assert!(matches!(e.metadata, Metadata::Object(_)));
    }

    #[test]
    fn deep_documents_are_refused_in_one_pass() {
        for body in [
            format!(r#"{{"organizationId":1,"x":{}}}"#, "[".repeat(13_000)),
            format!(r#"{{"events":[{{"metadata":{}}}]}}"#, "[".repeat(6_150)),
            format!(
                r#"{{"events":[{{"metadata":{{"a":{}}}}}]}}"#,
                "{\"a\":".repeat(200)
            ),
        ] {
            let e = Parser::new().parse_batch(body.as_bytes()).unwrap_err();
            assert!(
                e.to_string().contains("nested deeper than 128 levels"),
                "{e}"
            );
        }
    }

    #[test]
    fn duplicate_fields_refuse_their_object() {
        for (body, msg) in [
            (
                r#"{"eventType":"a","eventType":"b"}"#,
                "field eventType appears twice",
            ),
            (
                r#"{"organizationId":1,"organizationId":1}"#,
                "field organizationId appears twice",
            ),
            (r#"{"events":[],"events":[]}"#, "field events appears twice"),
        ] {
            assert_eq!(
                Parser::new()
                    .parse_batch(body.as_bytes())
                    .unwrap_err()
                    .to_string(),
                msg
            );
        }
        let b = parse(
            r#"{"events":[{"phoneE164":"+1","phoneE164":"+2"},{"metadata":null,"metadata":{}},{"x":1,"x":2}]}"#,
        );
        let Some(Events::List(ev)) = b.events else {
            panic!()
        };
        let dups: Vec<_> = ev
            .iter()
            .map(|s| match s {
                Slot::Event(e) => e.duplicate,
                _ => None,
            })
            .collect();
        assert_eq!(dups, [Some("phoneE164"), Some("metadata"), None]);
    }

    #[test]
    fn counting_stops_after_the_limit() {
        let body = format!(r#"{{"events":[{}]}}"#, vec!["[]"; MAX_EVENTS + 1].join(","));
        assert_eq!(
            Parser::new().parse_batch(body.as_bytes()).unwrap_err(),
            RequestError::TooManyEvents
        );
        let body = format!(r#"{{"events":[{}]}}"#, vec!["[]"; MAX_EVENTS].join(","));
        assert!(Parser::new().parse_batch(body.as_bytes()).is_ok());
    }

    #[test]
    fn organization_id_is_found_without_parsing_the_rest() {
        assert_eq!(
            find_organization_id(
                br#"{"eventType":"t","events":[{"a":[1,2,{}]}],"organizationId":42}"#
            ),
            Ok(42)
        );
        assert_eq!(
            find_organization_id(br#"{"organizationId":7,"events":[{"#),
            Ok(7)
        );
        assert_eq!(
            find_organization_id(br#"{"events":[]}"#),
            Err(RequestError::Missing("organizationId"))
        );
        assert!(find_organization_id(br#"{"organizationId":"42"}"#).is_err());
        assert!(find_organization_id(br#"{"organizationId":4.2}"#).is_err());
        assert_eq!(
            find_organization_id(br#"{"organizationId":-797.0}"#),
            Ok(-797)
        );
        assert!(find_organization_id(b"[1]").is_err());
        assert!(find_organization_id(b"\xff").is_err());
    }

    fn record(s: &str) -> Result<RawRecord<'_>, String> {
        Parser::new().parse_record(s.as_bytes())
    }

    #[test]
    fn a_per_event_record_becomes_a_batch_of_one() {
        let r = record(r#"{"organizationId":42,"eventType":"t","phoneE164":"+15551234567","occurredAt":"2026-05-12T18:34:00Z","metadata":{"a":1},"x":[1]}"#).unwrap();
        assert!(!r.is_batch());
        let b = r.into_batch();
        assert_eq!(
            b.organization_id.as_ref().and_then(Scalar::as_i64),
            Some(42)
        );
        let Some(Events::List(ev)) = b.events else {
            panic!("no events")
        };
        assert_eq!(ev.len(), 1);
        let Slot::Event(e) = &ev[0] else {
            panic!("not an event")
        };
        assert_eq!(
            e.phone.as_ref().and_then(Scalar::as_str),
            Some("+15551234567")
        );
        assert_eq!(e.metadata, Metadata::Object(r#"{"a":1}"#.into()));
    }

    #[test]
    fn a_batch_record_reads_like_the_http_body() {
        let r = record(
            r#"{"organizationId":42,"eventType":"t","events":[{"phoneE164":"+15551234567"},5]}"#,
        )
        .unwrap();
        assert!(r.is_batch());
        let Some(Events::List(ev)) = r.into_batch().events else {
            panic!("no events")
        };
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[1], Slot::NotObject(Scalar::Number("5")));
    }

    #[test]
    fn bad_records_are_errors() {
        for bad in [
            "",
            "[1]",
            "{",
            r#"{"phoneE164":"1","phoneE164":"2"}"#,
            r#"{"events":[],"phoneE164":"+1"}"#,
            r#"{"metadata":{},"metadata":{}}"#,
            r#"{"metadata":null,"metadata":null}"#,
        ] {
            assert!(record(bad).is_err(), "{bad:?}");
        }
        // An empty object is a per-event record missing everything: validation says what.
        assert!(record("{}").is_ok());
    }

    #[test]
    fn malformed_json_is_an_error() {
        for bad in [
            "",
            "{",
            "[1,2]x",
            r#"{"events":[}"#,
            "nul",
            r#"[42,"t",[]]"#,
            r#"{"eventType":"a","eventType":"b"}"#,
            "{}x",
            "\u{feff}{}",
        ] {
            assert!(
                Parser::new().parse_batch(bad.as_bytes()).is_err(),
                "{bad:?}"
            );
        }
        assert_eq!(
            Parser::new().parse_batch(b"{\"a\":\"\xff\"}").unwrap_err(),
            RequestError::NotUtf8(6)
        );
    }
}
