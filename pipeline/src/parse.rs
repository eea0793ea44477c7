//! Parsing lead-event batches with simd-json into borrowed, typed values.
//!
//! The body is parsed in place (simd-json unescapes strings inside the buffer), with
//! the parser's scratch buffers reused across calls, and deserialized straight into
//! the types below through serde: strings borrow from the buffer, nothing goes
//! through a generic DOM. Field types are lenient on purpose: a wrong type inside one
//! event is a per-row reject, never a failure of the whole batch, so every field is
//! read as a [`Scalar`] and judged afterwards. `metadata` is transcoded to compact JSON
//! text while parsing, which is both what is stored and what the 8 KB cap measures.

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::borrow::Cow;
use std::fmt;

/// A JSON value read leniently: strings borrowed, containers skipped. Integers that
/// fit are `Int`; `UInt` only holds those above `i64::MAX`.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar<'a> {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(Cow<'a, str>),
    Array,
    Object,
}

impl Scalar<'_> {
    /// The JSON type name, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Scalar::Null => "null",
            Scalar::Bool(_) => "a boolean",
            Scalar::Int(_) | Scalar::UInt(_) | Scalar::Float(_) => "a number",
            Scalar::Str(_) => "a string",
            Scalar::Array => "an array",
            Scalar::Object => "an object",
        }
    }

    /// The value as sent, for echoing back in rejects.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Scalar::Null => serde_json::Value::Null,
            Scalar::Bool(b) => (*b).into(),
            Scalar::Int(i) => (*i).into(),
            Scalar::UInt(u) => (*u).into(),
            Scalar::Float(f) => {
                serde_json::Number::from_f64(*f).map_or(serde_json::Value::Null, Into::into)
            }
            Scalar::Str(s) => s.as_ref().into(),
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
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Scalar::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(i64::try_from(v).map_or(Scalar::UInt(v), Scalar::Int))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Scalar::Float(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Array)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Object)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

/// An object key, borrowed from the buffer when it can be. (`Cow<str>`'s own
/// `Deserialize` always allocates, which cost three allocations per event.)
struct Key<'a>(Cow<'a, str>);

impl AsRef<str> for Key<'_> {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Key(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Key(Cow::Owned(v.to_owned())))
    }
}

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(KeyVisitor)
    }
}

/// An event's `metadata` as sent.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Metadata {
    /// Absent or `null`.
    #[default]
    None,
    /// A JSON object, re-encoded as compact JSON text.
    Object(String),
    /// Something other than an object (the JSON type name).
    NotObject(&'static str),
}

struct MetadataSeed;

impl<'de> DeserializeSeed<'de> for MetadataSeed {
    type Value = Metadata;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Metadata, D::Error> {
        let mut out = Vec::with_capacity(64);
        serde_transcode::transcode(d, &mut serde_json::Serializer::new(&mut out))
            .map_err(de::Error::custom)?;
        Ok(match out.first() {
            Some(b'{') => Metadata::Object(String::from_utf8(out).map_err(de::Error::custom)?),
            Some(b'n') => Metadata::None,
            Some(b'[') => Metadata::NotObject("an array"),
            Some(b'"') => Metadata::NotObject("a string"),
            Some(b't' | b'f') => Metadata::NotObject("a boolean"),
            _ => Metadata::NotObject("a number"),
        })
    }
}

/// One entry of `events`, fields read leniently. Unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RawEvent<'a> {
    /// `phoneE164`, or `None` when absent.
    pub phone: Option<Scalar<'a>>,
    /// `occurredAt`, or `None` when absent.
    pub occurred_at: Option<Scalar<'a>>,
    pub metadata: Metadata,
}

/// An entry of `events`: an object, or something else (a per-row reject).
#[derive(Debug, Clone, PartialEq)]
pub enum Slot<'a> {
    Event(RawEvent<'a>),
    NotObject(Scalar<'a>),
}

struct SlotVisitor;

impl<'de> Visitor<'de> for SlotVisitor {
    type Value = Slot<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an event object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut ev = RawEvent::default();
        while let Some(k) = map.next_key::<Key<'de>>()? {
            match k.as_ref() {
                "phoneE164" => ev.phone = Some(map.next_value()?),
                "occurredAt" => ev.occurred_at = Some(map.next_value()?),
                "metadata" => ev.metadata = map.next_value_seed(MetadataSeed)?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Slot::Event(ev))
    }
    // Anything else is kept as a scalar so the reject can say what it was.
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Slot::NotObject(Scalar::Null))
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Slot::NotObject(Scalar::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Slot::NotObject(Scalar::Int(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        ScalarVisitor.visit_u64(v).map(Slot::NotObject)
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Slot::NotObject(Scalar::Float(v)))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Slot::NotObject(Scalar::Str(Cow::Borrowed(v))))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Slot::NotObject(Scalar::Str(Cow::Owned(v.to_owned()))))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        ScalarVisitor.visit_seq(seq).map(Slot::NotObject)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Slot<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SlotVisitor)
    }
}

/// `events` as sent: an array of slots, or some other JSON value.
#[derive(Debug, Clone, PartialEq)]
pub enum Events<'a> {
    List(Vec<Slot<'a>>),
    NotArray(&'static str),
}

struct EventsVisitor;

impl<'de> Visitor<'de> for EventsVisitor {
    type Value = Events<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of events")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(65_536));
        while let Some(s) = seq.next_element()? {
            v.push(s);
        }
        Ok(Events::List(v))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        ScalarVisitor
            .visit_map(map)
            .map(|s| Events::NotArray(s.kind()))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Events::NotArray("null"))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Events::NotArray("a boolean"))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Events::NotArray("a number"))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Events::NotArray("a number"))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Events::NotArray("a number"))
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Events::NotArray("a string"))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Events<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(EventsVisitor)
    }
}

/// A lead-events request body, before validation. Only a JSON object is accepted
/// (serde's derive would also take an array and fill fields by position).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RawBatch<'a> {
    pub organization_id: Option<Scalar<'a>>,
    pub event_type: Option<Scalar<'a>>,
    pub events: Option<Events<'a>>,
}

struct BatchVisitor;

impl<'de> Visitor<'de> for BatchVisitor {
    type Value = RawBatch<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object with organizationId, eventType and events")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut b = RawBatch::default();
        while let Some(k) = map.next_key::<Key<'de>>()? {
            let (slot_name, dup) = match k.as_ref() {
                "organizationId" => (
                    "organizationId",
                    b.organization_id.replace(map.next_value()?).is_some(),
                ),
                "eventType" => (
                    "eventType",
                    b.event_type.replace(map.next_value()?).is_some(),
                ),
                "events" => ("events", b.events.replace(map.next_value()?).is_some()),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            if dup {
                return Err(de::Error::custom(format_args!(
                    "field {slot_name} appears twice"
                )));
            }
        }
        Ok(b)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for RawBatch<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(BatchVisitor)
    }
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

struct RecordVisitor;

impl<'de> Visitor<'de> for RecordVisitor {
    type Value = RawRecord<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object with organizationId, eventType and either events or phoneE164 and occurredAt")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut r = RawRecord::default();
        let mut event_field = None;
        while let Some(k) = map.next_key::<Key<'de>>()? {
            let (name, dup) = match k.as_ref() {
                "organizationId" => (
                    "organizationId",
                    r.organization_id.replace(map.next_value()?).is_some(),
                ),
                "eventType" => (
                    "eventType",
                    r.event_type.replace(map.next_value()?).is_some(),
                ),
                "events" => ("events", r.events.replace(map.next_value()?).is_some()),
                "phoneE164" => {
                    event_field = Some("phoneE164");
                    (
                        "phoneE164",
                        r.event.phone.replace(map.next_value()?).is_some(),
                    )
                }
                "occurredAt" => {
                    event_field = Some("occurredAt");
                    (
                        "occurredAt",
                        r.event.occurred_at.replace(map.next_value()?).is_some(),
                    )
                }
                "metadata" => {
                    event_field = Some("metadata");
                    let seen = metadata_given(&r.event.metadata);
                    r.event.metadata = map.next_value_seed(MetadataSeed)?;
                    ("metadata", seen)
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            if dup {
                return Err(de::Error::custom(format_args!(
                    "field {name} appears twice"
                )));
            }
        }
        if let (Some(field), true) = (event_field, r.events.is_some()) {
            return Err(de::Error::custom(format_args!(
                "a record has either events (a batch) or the fields of one event, not both; got events and {field}"
            )));
        }
        Ok(r)
    }
}

/// Whether `metadata` was already given (a duplicate key). `null` counts as not given,
/// like an absent field, which is what the batch parser does too.
fn metadata_given(m: &Metadata) -> bool {
    !matches!(m, Metadata::None)
}

impl<'de: 'a, 'a> Deserialize<'de> for RawRecord<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(RecordVisitor)
    }
}

/// Reusable simd-json scratch space. One per thread or task; parsing takes `&mut`.
pub struct Parser {
    buffers: simd_json::Buffers,
}

impl Default for Parser {
    fn default() -> Self {
        Self::new()
    }
}

impl Parser {
    pub fn new() -> Self {
        Self {
            buffers: simd_json::Buffers::new(64 * 1024),
        }
    }

    /// Parses a batch body in place.
    ///
    /// # Errors
    /// A readable description when `body` is not well-formed JSON or not an object.
    pub fn parse_batch<'a>(&mut self, body: &'a mut [u8]) -> Result<RawBatch<'a>, String> {
        if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(
                "the body must be a JSON object with organizationId, eventType and events".into(),
            );
        }
        simd_json::serde::from_slice_with_buffers(body, &mut self.buffers).map_err(|e| {
            match e.error() {
                simd_json::ErrorType::Serde(m) => m.clone(),
                simd_json::ErrorType::Eof => "the body ends before the JSON does".into(),
                other => format!("invalid JSON near byte {} ({other:?})", e.index()),
            }
        })
    }

    /// Parses a raw-topic record (a batch or one event, see [`RawRecord`]) in place.
    ///
    /// # Errors
    /// A readable description when `body` is not well-formed JSON, not an object, or
    /// has both `events` and the fields of one event.
    pub fn parse_record<'a>(&mut self, body: &'a mut [u8]) -> Result<RawRecord<'a>, String> {
        if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err("a record must be a JSON object: a batch {organizationId, eventType, events} or one event {organizationId, eventType, phoneE164, occurredAt, metadata?}".into());
        }
        simd_json::serde::from_slice_with_buffers(body, &mut self.buffers).map_err(|e| {
            match e.error() {
                simd_json::ErrorType::Serde(m) => m.clone(),
                simd_json::ErrorType::Eof => "the record ends before the JSON does".into(),
                other => format!("invalid JSON near byte {} ({other:?})", e.index()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> RawBatch<'static> {
        let buf: &'static mut [u8] = s.as_bytes().to_vec().leak();
        Parser::new().parse_batch(buf).unwrap()
    }

    #[test]
    fn reads_the_seed_body() {
        let b = parse(
            r#"{"organizationId":42,"eventType":"mastery_purchase","events":[{"phoneE164":"+15551234567","occurredAt":"2026-05-12T18:34:00Z","metadata":{"orderId":"ord_9F2","amountUsd":297}}]}"#,
        );
        assert_eq!(b.organization_id, Some(Scalar::Int(42)));
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
        assert_eq!(ev[0], Slot::NotObject(Scalar::Int(7)));
        let Slot::Event(e) = &ev[1] else { panic!() };
        assert_eq!(e.phone, Some(Scalar::Int(15551234567)));
        assert_eq!(e.metadata, Metadata::NotObject("an array"));
        let Slot::Event(e) = &ev[2] else { panic!() };
        assert_eq!(e.metadata, Metadata::None);
        assert_eq!(
            e.occurred_at.as_ref().and_then(Scalar::as_str),
            Some("a\"b")
        );
    }

    fn record(s: &str) -> Result<RawRecord<'static>, String> {
        let buf: &'static mut [u8] = s.as_bytes().to_vec().leak();
        Parser::new().parse_record(buf)
    }

    #[test]
    fn a_per_event_record_becomes_a_batch_of_one() {
        let r = record(r#"{"organizationId":42,"eventType":"t","phoneE164":"+15551234567","occurredAt":"2026-05-12T18:34:00Z","metadata":{"a":1},"x":[1]}"#).unwrap();
        assert!(!r.is_batch());
        let b = r.into_batch();
        assert_eq!(b.organization_id, Some(Scalar::Int(42)));
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
        assert_eq!(ev[1], Slot::NotObject(Scalar::Int(5)));
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
        ] {
            let mut v = bad.as_bytes().to_vec();
            assert!(Parser::new().parse_batch(&mut v).is_err(), "{bad:?}");
        }
    }
}
