//! Typed domain events from calendars and booking (`POST /api/v1/events`): their
//! types, the seed 003 object each carries, and the checks that turn a body into a
//! [`DomainEvent`] or a message naming the field that is wrong.

use leadstream_pipeline::time::parse_rfc3339_us;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::HashMap;

/// What a trigger type's payload is built around (seed 003's trigger classes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// `{"event": …}`
    Event,
    /// `{"participant": {…, "event": …}}`
    Participant,
    /// `{"booking_page": …}`
    BookingPage,
    /// `{"booking_request": …}`
    BookingRequest,
    /// `{"message": …}`
    Message,
    /// `{"phone": …}` or `{"email": …}`
    StopList,
}

impl Class {
    /// The body key of the class's object (the stop list has `phone` or `email`).
    pub fn key(self) -> &'static str {
        match self {
            Class::Event => "event",
            Class::Participant => "participant",
            Class::BookingPage => "booking_page",
            Class::BookingRequest => "booking_request",
            Class::Message => "message",
            Class::StopList => "phone",
        }
    }
}

/// The trigger types of seed 004, in its order, with their classes.
pub const TRIGGER_TYPES: [(&str, Class); 20] = [
    ("appointment_created", Class::Event),
    ("appointment_modified", Class::Event),
    ("appointment_deleted", Class::Event),
    ("participant_reminder_state_changed", Class::Participant),
    ("participant_invite_sent", Class::Participant),
    ("participant_confirmed", Class::Participant),
    ("participant_not_coming", Class::Participant),
    ("participant_needs_to_reschedule", Class::Participant),
    ("participant_booking_state_changed", Class::Participant),
    ("participant_accepted_booking", Class::Participant),
    ("participant_declined_booking", Class::Participant),
    ("participant_canceled_booking", Class::Participant),
    ("participant_check_in_state_changed", Class::Participant),
    ("participant_replied_to_message", Class::Participant),
    ("participant_added_to_stop_list", Class::StopList),
    ("booking_request_completed", Class::BookingRequest),
    ("booking_page_viewed", Class::BookingPage),
    ("message_sent", Class::Message),
    ("message_received", Class::Message),
    ("message_failed", Class::Message),
];

/// The seed 000 event `POST /api/v1/events` also takes.
pub const APPOINTMENT_BOOKED: &str = "appointment_booked";

/// The class of trigger type `kind`, if it is one.
pub fn class_of(kind: &str) -> Option<Class> {
    TRIGGER_TYPES
        .iter()
        .find(|(t, _)| *t == kind)
        .map(|(_, c)| *c)
}

/// The trigger types, comma-separated (for messages).
pub fn trigger_type_list() -> String {
    TRIGGER_TYPES
        .iter()
        .map(|(t, _)| *t)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A JSON type a field must have (or null).
#[derive(Debug, Clone, Copy)]
enum Kind {
    Int,
    Str,
    /// A string holding an RFC 3339 instant.
    Date,
    Bool,
    Object,
    Array,
    /// An object or an array (seed 003 says both of `custom_data`).
    ObjectOrArray,
}

fn fields(class: Class) -> &'static [(&'static str, Kind)] {
    match class {
        Class::Event => &[
            ("id", Kind::Int),
            ("calendar_id", Kind::Int),
            ("calendar_name", Kind::Str),
            ("external_id", Kind::Str),
            ("start_time", Kind::Date),
            ("end_time", Kind::Date),
            ("all_day", Kind::Bool),
            ("title", Kind::Str),
            ("location", Kind::Str),
            ("content", Kind::Str),
            ("participants", Kind::Array),
            ("custom_data", Kind::ObjectOrArray),
            ("is_deleted", Kind::Bool),
        ],
        Class::Participant => &[
            ("id", Kind::Int),
            ("event_id", Kind::Int),
            ("display_name", Kind::Str),
            ("name", Kind::Str),
            ("phone", Kind::Str),
            ("normalized_phone", Kind::Str),
            ("email", Kind::Str),
            ("state", Kind::Str),
            ("event", Kind::Object),
        ],
        Class::BookingPage => &[("id", Kind::Int), ("name", Kind::Str), ("url", Kind::Str)],
        Class::BookingRequest => &[
            ("token", Kind::Str),
            ("state", Kind::Str),
            ("appointment_type_token", Kind::Str),
            ("occurrence_selected_event_id", Kind::Int),
            ("start_time", Kind::Date),
            ("end_time", Kind::Date),
            ("sign_up_page", Kind::Bool),
            ("timezone", Kind::Str),
            ("field_data", Kind::Object),
            ("contact_info", Kind::Object),
            ("booking_page", Kind::Object),
        ],
        Class::Message => &[
            ("id", Kind::Int),
            ("participant", Kind::Object),
            ("started", Kind::Date),
            ("comm_type", Kind::Str),
            ("last_out", Kind::Date),
            ("last_in", Kind::Date),
        ],
        Class::StopList => &[],
    }
}

/// The problem with `value` as a `kind`, if any.
fn kind_problem(value: &serde_json::Value, kind: Kind) -> Option<&'static str> {
    use serde_json::Value as V;
    let ok = match (kind, value) {
        (_, V::Null) => true,
        (Kind::Int, V::Number(n)) => n.is_i64() || n.is_u64(),
        (Kind::Str, V::String(_)) => true,
        (Kind::Date, V::String(s)) => parse_rfc3339_us(s).is_some(),
        (Kind::Bool, V::Bool(_)) => true,
        (Kind::Object, V::Object(_)) => true,
        (Kind::Array, V::Array(_)) => true,
        (Kind::ObjectOrArray, V::Object(_) | V::Array(_)) => true,
        _ => false,
    };
    if ok {
        return None;
    }
    Some(match kind {
        Kind::Int => "an integer",
        Kind::Str => "a string",
        Kind::Date => "an RFC 3339 instant, e.g. 2026-06-01T13:00:00Z",
        Kind::Bool => "true or false",
        Kind::Object => "an object",
        Kind::Array => "an array",
        Kind::ObjectOrArray => "an object or an array",
    })
}

/// A domain event as taken.
#[derive(Debug)]
pub struct DomainEvent {
    /// The client's id, or one made up.
    pub id: String,
    pub kind: String,
    pub occurred_at_us: i64,
    pub body: Body,
}

/// What the event carries.
#[derive(Debug)]
pub enum Body {
    /// A trigger type's seed 003 object (exact bytes): for the participant class
    /// with its `event` inside; for the stop list `{"phone": …}` or `{"email": …}`'s
    /// key and value.
    Trigger {
        class: Class,
        key: &'static str,
        object: Box<RawValue>,
        /// A phone, email and name the object says of the contact.
        contact: ContactFacts,
        /// A message event with `botIntegrationId`: it belongs to that conversation.
        conversation: Option<Said>,
    },
    /// Seed 000's appointment_booked fields.
    AppointmentBooked(Booked),
}

/// A message a message event adds to a conversation.
#[derive(Debug, Clone)]
pub struct Said {
    pub bot_integration_id: i64,
    /// `message.content` when the object has it, else "".
    pub content: String,
}

/// What an event says of a contact (each may be absent).
#[derive(Debug, Default, Clone)]
pub struct ContactFacts {
    pub phone: Option<String>,
    pub email: Option<String>,
    pub name: Option<String>,
}

/// An `appointment_booked` event's fields.
#[derive(Debug, Clone)]
pub struct Booked {
    pub start_us: i64,
    pub end_us: i64,
    pub time_zone: String,
    pub phone: String,
    pub email: Option<String>,
    pub full_name: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// A JSON object's text.
    pub metadata: Option<String>,
    pub bot_id: Option<i64>,
    pub bot_integration_id: i64,
}

/// A JSON object's members as sent (exact bytes), each name at most once.
struct Members<'a>(HashMap<String, &'a RawValue>);

impl<'de: 'a, 'a> Deserialize<'de> for Members<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut m: M,
            ) -> Result<Self::Value, M::Error> {
                let mut out = HashMap::new();
                while let Some((k, v)) = m.next_entry::<String, &'de RawValue>()? {
                    if out.contains_key(&k) {
                        return Err(serde::de::Error::custom(format!(
                            "field {k:?} is given twice: give it once"
                        )));
                    }
                    out.insert(k, v);
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(Visit)
    }
}

/// Largest client `id`.
const MAX_ID: usize = 200;

/// Reads a `POST /api/v1/events` body. `normalize` answers a phone's E.164 form.
///
/// # Errors
/// A message naming the field that is missing or malformed.
pub fn parse(
    bytes: &[u8],
    normalize: impl Fn(&str) -> Option<String>,
    make_id: impl FnOnce() -> String,
) -> Result<DomainEvent, String> {
    let Members(mut rest) = serde_json::from_slice(bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => format!("invalid request body: {e}"),
        _ => format!("request body is not valid JSON: {e}"),
    })?;
    let (env_id, env_kind, env_occurred) = (
        rest.remove("id"),
        rest.remove("type"),
        rest.remove("occurredAt"),
    );
    let string = |name: &str, raw: Option<&RawValue>| -> Result<Option<String>, String> {
        match raw.map(|r| serde_json::from_str::<serde_json::Value>(r.get())) {
            None | Some(Ok(serde_json::Value::Null)) => Ok(None),
            Some(Ok(serde_json::Value::String(s))) => Ok(Some(s)),
            _ => Err(format!("{name} must be a string")),
        }
    };
    let kind = string("type", env_kind)?.ok_or_else(|| {
        format!(
            "type is missing: one of {APPOINTMENT_BOOKED}, {}",
            trigger_type_list()
        )
    })?;
    let id = match string("id", env_id)? {
        Some(id) if id.trim().is_empty() || id.chars().count() > MAX_ID => {
            return Err(format!("id must be 1 to {MAX_ID} characters"))
        }
        Some(id) => id,
        None => make_id(),
    };
    let occurred = string("occurredAt", env_occurred)?
        .ok_or("occurredAt is missing: an RFC 3339 instant, e.g. 2026-06-01T13:00:00Z")?;
    let occurred_at_us = parse_rfc3339_us(&occurred).ok_or_else(|| {
        format!("occurredAt {occurred:?} is not an RFC 3339 instant, e.g. 2026-06-01T13:00:00Z")
    })?;
    let body = if kind == APPOINTMENT_BOOKED {
        Body::AppointmentBooked(booked(&rest, &normalize)?)
    } else {
        let class = class_of(&kind).ok_or_else(|| {
            format!(
                "type {kind:?} is not one of {APPOINTMENT_BOOKED}, {}",
                trigger_type_list()
            )
        })?;
        trigger_body(class, &rest, &normalize)?
    };
    Ok(DomainEvent {
        id,
        kind,
        occurred_at_us,
        body,
    })
}

fn value(raw: &RawValue) -> serde_json::Value {
    serde_json::from_str(raw.get()).unwrap_or(serde_json::Value::Null)
}

fn trigger_body(
    class: Class,
    rest: &HashMap<String, &RawValue>,
    normalize: &impl Fn(&str) -> Option<String>,
) -> Result<Body, String> {
    if class == Class::StopList {
        if let Some(other) = rest
            .keys()
            .find(|k| !matches!(k.as_str(), "phone" | "email"))
        {
            return Err(format!(
                "{other} is not a field of a stop list event: it carries phone or email"
            ));
        }
        let (key, raw) = match (rest.get("phone"), rest.get("email")) {
            (Some(_), Some(_)) => return Err("give phone or email, not both".into()),
            (Some(r), None) => ("phone", *r),
            (None, Some(r)) => ("email", *r),
            (None, None) => {
                return Err("phone or email is missing: the stop list takes one of them".into())
            }
        };
        let text = match value(raw) {
            serde_json::Value::String(s) if !s.trim().is_empty() => s,
            _ => return Err(format!("{key} must be a non-empty string")),
        };
        let mut contact = ContactFacts::default();
        if key == "phone" {
            contact.phone = Some(
                normalize(&text)
                    .ok_or_else(|| format!("phone {text:?} is not a valid phone number"))?,
            );
        } else {
            contact.email = Some(text);
        }
        return Ok(Body::Trigger {
            class,
            key,
            object: raw.to_owned(),
            contact,
            conversation: None,
        });
    }
    let key = class.key();
    let raw = rest.get(key).ok_or_else(|| {
        format!(
            "{key} is missing: a {} event carries a {key} object",
            class_name(class)
        )
    })?;
    let object = check_object(key, raw, fields(class))?;
    let mut raw_text = raw.get().to_owned();
    if class == Class::Participant {
        // Seed 003: the participant-based payload has `event` inside `participant`.
        match (object.get("event"), rest.get("event")) {
            (Some(_), Some(_)) => {
                return Err("event is given inside participant and beside it: give it once".into())
            }
            (None, Some(ev)) => {
                check_object("event", ev, fields(Class::Event))?;
                let joined = crate::delivery::deliveries::body(
                    &bytes::Bytes::from(raw_text.into_bytes()),
                    Some(format!(r#""event":{}"#, ev.get()).as_bytes()),
                );
                raw_text =
                    String::from_utf8(joined.to_vec()).map_err(|e| format!("participant: {e}"))?;
            }
            (Some(ev), None) => check_value("participant.event", ev, fields(Class::Event))?,
            (None, None) => {}
        }
    } else if let Some(other) = rest.keys().find(|k| {
        k.as_str() != key && !(class == Class::Message && k.as_str() == "botIntegrationId")
    }) {
        return Err(format!(
            "{other} is not a field of a {} event: it carries {key}",
            class_name(class)
        ));
    }
    if class == Class::Participant {
        if let Some(other) = rest
            .keys()
            .find(|k| !matches!(k.as_str(), "participant" | "event"))
        {
            return Err(format!(
                "{other} is not a field of a participant event: it carries participant (with its event)"
            ));
        }
    }
    let contact = contact_facts(class, &object, normalize)?;
    let conversation = match rest.get("botIntegrationId").map(|r| value(r)) {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Number(n)) if n.is_i64() => Some(Said {
            bot_integration_id: n.as_i64().unwrap_or_default(),
            content: object
                .get("content")
                .and_then(|c| c.as_str())
                .unwrap_or_default()
                .to_owned(),
        }),
        Some(_) => return Err("botIntegrationId must be an integer".into()),
    };
    let object = RawValue::from_string(raw_text).map_err(|e| format!("{key}: {e}"))?;
    Ok(Body::Trigger {
        class,
        key,
        object,
        contact,
        conversation,
    })
}

fn class_name(class: Class) -> &'static str {
    match class {
        Class::Event => "appointment (event-based)",
        Class::Participant => "participant-based",
        Class::BookingPage => "booking page",
        Class::BookingRequest => "booking request",
        Class::Message => "message-based",
        Class::StopList => "stop list",
    }
}

fn check_object(
    key: &str,
    raw: &RawValue,
    known: &[(&str, Kind)],
) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    match value(raw) {
        serde_json::Value::Object(m) => {
            check_value(key, &serde_json::Value::Object(m.clone()), known)?;
            Ok(m)
        }
        _ => Err(format!("{key} must be an object")),
    }
}

fn check_value(key: &str, v: &serde_json::Value, known: &[(&str, Kind)]) -> Result<(), String> {
    let serde_json::Value::Object(m) = v else {
        return Err(format!("{key} must be an object"));
    };
    for (name, kind) in known {
        if let Some(field) = m.get(*name) {
            if let Some(want) = kind_problem(field, *kind) {
                return Err(format!("{key}.{name} must be {want} or null"));
            }
        }
    }
    Ok(())
}

/// The phone (normalized), email and name the object says of its contact.
fn contact_facts(
    class: Class,
    object: &serde_json::Map<String, serde_json::Value>,
    normalize: &impl Fn(&str) -> Option<String>,
) -> Result<ContactFacts, String> {
    let person = match class {
        Class::Participant => Some(object),
        Class::BookingRequest => object.get("contact_info").and_then(|c| c.as_object()),
        Class::Message => object.get("participant").and_then(|c| c.as_object()),
        _ => None,
    };
    let Some(p) = person else {
        return Ok(ContactFacts::default());
    };
    let text = |k: &str| p.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    let phone = match text("normalized_phone").or_else(|| text("phone")) {
        Some(raw) if !raw.trim().is_empty() => normalize(&raw),
        _ => None,
    };
    Ok(ContactFacts {
        phone,
        email: text("email").filter(|e| !e.trim().is_empty()),
        name: text("name")
            .or_else(|| text("display_name"))
            .filter(|n| !n.trim().is_empty()),
    })
}

fn booked(
    rest: &HashMap<String, &RawValue>,
    normalize: &impl Fn(&str) -> Option<String>,
) -> Result<Booked, String> {
    const KNOWN: [&str; 13] = [
        "startTime",
        "endTime",
        "timeZone",
        "contactEmail",
        "contactWhatsappId",
        "contactPhoneNumber",
        "contactFullName",
        "contactFirstName",
        "contactLastName",
        "contactMetadata",
        "botId",
        "botIntegrationId",
        "startTimeInTz",
    ];
    if let Some(other) = rest.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(format!(
            "{other} is not a field of appointment_booked: the fields are {}",
            KNOWN.join(", ")
        ));
    }
    let get = |k: &str| {
        rest.get(k)
            .map(|r| value(r))
            .unwrap_or(serde_json::Value::Null)
    };
    let text = |k: &str| -> Result<Option<String>, String> {
        match get(k) {
            serde_json::Value::Null => Ok(None),
            serde_json::Value::String(s) => Ok(Some(s)),
            _ => Err(format!("{k} must be a string or null")),
        }
    };
    let instant = |k: &str| -> Result<i64, String> {
        let t = text(k)?.ok_or_else(|| format!("{k} is missing: an RFC 3339 instant"))?;
        parse_rfc3339_us(&t).ok_or_else(|| format!("{k} {t:?} is not an RFC 3339 instant"))
    };
    let start_us = instant("startTime")?;
    let end_us = instant("endTime")?;
    if end_us < start_us {
        return Err("endTime is before startTime".into());
    }
    let time_zone =
        text("timeZone")?.ok_or("timeZone is missing: an IANA time zone, e.g. America/New_York")?;
    if time_zone.parse::<chrono_tz::Tz>().is_err() {
        return Err(format!(
            "timeZone {time_zone:?} is not an IANA time zone, e.g. America/New_York"
        ));
    }
    let raw_phone = match (text("contactPhoneNumber")?, text("contactWhatsappId")?) {
        (Some(p), _) => p,
        (None, Some(w)) => format!("+{}", w.trim_start_matches('+')),
        (None, None) => {
            return Err("contactPhoneNumber is missing: the contact's phone in E.164".into())
        }
    };
    let phone = normalize(&raw_phone).ok_or_else(|| {
        format!("contactPhoneNumber {raw_phone:?} is not a phone number (E.164, e.g. +14155550100)")
    })?;
    let metadata = match get("contactMetadata") {
        serde_json::Value::Null => None,
        serde_json::Value::Object(_) => rest.get("contactMetadata").map(|r| r.get().to_owned()),
        _ => return Err("contactMetadata must be an object or null".into()),
    };
    let int = |k: &str| -> Result<Option<i64>, String> {
        match get(k) {
            serde_json::Value::Null => Ok(None),
            serde_json::Value::Number(n) if n.is_i64() => Ok(n.as_i64()),
            _ => Err(format!("{k} must be an integer")),
        }
    };
    let bot_integration_id =
        int("botIntegrationId")?.ok_or("botIntegrationId is missing: an integer")?;
    Ok(Booked {
        start_us,
        end_us,
        time_zone,
        phone,
        email: text("contactEmail")?,
        full_name: text("contactFullName")?,
        first_name: text("contactFirstName")?,
        last_name: text("contactLastName")?,
        metadata,
        bot_id: int("botId")?,
        bot_integration_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(s: &str) -> Result<DomainEvent, String> {
        parse(
            s.as_bytes(),
            |p| p.starts_with('+').then(|| p.to_owned()),
            || "generated".into(),
        )
    }

    /// Seed 003's payload for each trigger class: the object under its key, as sent,
    /// and the run's apptoto_id, nothing else.
    #[test]
    fn each_trigger_class_gives_seed_003s_payload() {
        let cases = [
            (
                "appointment_created",
                r#""event":{"id":1,"calendar_id":2,"calendar_name":"Main","external_id":"x","start_time":"2026-03-05T15:00:00Z","end_time":"2026-03-05T16:00:00Z","all_day":false,"title":"Intro","location":"","content":"","participants":[{"id":7,"event_id":1,"display_name":"Ann","name":"Ann","phone":"+14155550100","normalized_phone":"+14155550100","email":"a@example.com","state":"confirmed"}],"custom_data":{},"is_deleted":false}"#,
                "event",
            ),
            (
                "participant_not_coming",
                r#""participant":{"id":7,"event_id":1,"display_name":"Ann","name":"Ann","phone":"+14155550100","normalized_phone":"+14155550100","email":"a@example.com","event":{"id":1,"custom_data":[],"is_deleted":false}}"#,
                "participant",
            ),
            (
                "booking_page_viewed",
                r#""booking_page":{"id":4,"name":"Intro","url":"https://book.example/i"}"#,
                "booking_page",
            ),
            (
                "booking_request_completed",
                r#""booking_request":{"token":"t","state":"completed","appointment_type_token":"a","occurrence_selected_event_id":9,"start_time":"2026-03-05T15:00:00Z","end_time":"2026-03-05T16:00:00Z","sign_up_page":false,"timezone":"America/New_York","field_data":{},"contact_info":{"name":"Ann","phone":"+14155550100","email":"a@example.com"},"booking_page":{"id":4,"name":"Intro","url":"https://book.example/i"}}"#,
                "booking_request",
            ),
            (
                "message_received",
                r#""message":{"id":3,"participant":{"id":7,"phone":"+14155550100"},"started":"2026-03-05T15:00:00Z","comm_type":"sms","last_out":null,"last_in":"2026-03-05T15:01:00Z"}"#,
                "message",
            ),
            (
                "participant_added_to_stop_list",
                r#""phone":"+14155550100""#,
                "phone",
            ),
            (
                "participant_added_to_stop_list",
                r#""email":"a@example.com""#,
                "email",
            ),
        ];
        for (kind, member, key) in cases {
            let body =
                format!(r#"{{"type":"{kind}","occurredAt":"2026-03-02T10:00:00Z",{member}}}"#);
            let e = parse_str(&body).unwrap_or_else(|m| panic!("{kind}: {m}"));
            let Body::Trigger { key: k, object, .. } = e.body else {
                panic!("{kind}: a trigger event");
            };
            assert_eq!(k, key, "{kind}");
            let run: serde_json::Value =
                serde_json::from_slice(&super::super::payloads::action_run(k, object.get()))
                    .unwrap();
            let sent: serde_json::Value = serde_json::from_str(&format!("{{{member}}}")).unwrap();
            assert_eq!(run[key], sent[key], "{kind}: the object as sent");
            let keys: Vec<&String> = run.as_object().unwrap().keys().collect();
            assert_eq!(keys.len(), 2, "{kind}: {run}");
            assert!(run["apptoto_id"].as_str().is_some_and(|id| id.len() == 36));
        }
    }

    #[test]
    fn twenty_trigger_types_each_with_a_class() {
        assert_eq!(TRIGGER_TYPES.len(), 20);
        assert_eq!(class_of("participant_confirmed"), Some(Class::Participant));
        assert_eq!(class_of("Participant_Confirmed"), None);
    }

    #[test]
    fn every_malformed_field_is_named() {
        let cases = [
            (
                r#"{"occurredAt":"2026-01-01T00:00:00Z"}"#,
                "type is missing",
            ),
            (
                r#"{"type":"nope","occurredAt":"2026-01-01T00:00:00Z"}"#,
                "type \"nope\" is not one of",
            ),
            (r#"{"type":"message_sent"}"#, "occurredAt is missing"),
            (
                r#"{"type":"message_sent","occurredAt":"yesterday"}"#,
                "occurredAt \"yesterday\"",
            ),
            (
                r#"{"type":"message_sent","occurredAt":"2026-01-01T00:00:00Z"}"#,
                "message is missing",
            ),
            (
                r#"{"type":"message_sent","occurredAt":"2026-01-01T00:00:00Z","message":[]}"#,
                "message must be an object",
            ),
            (
                r#"{"type":"message_sent","occurredAt":"2026-01-01T00:00:00Z","message":{"id":"x"}}"#,
                "message.id must be an integer",
            ),
            (
                r#"{"type":"appointment_created","occurredAt":"2026-01-01T00:00:00Z","event":{"start_time":"soon"}}"#,
                "event.start_time must be an RFC 3339",
            ),
            (
                r#"{"type":"participant_confirmed","occurredAt":"2026-01-01T00:00:00Z","participant":{"event":{"all_day":1}}}"#,
                "participant.event.all_day must be true or false",
            ),
            (
                r#"{"type":"participant_added_to_stop_list","occurredAt":"2026-01-01T00:00:00Z"}"#,
                "phone or email is missing",
            ),
            (
                r#"{"type":"booking_page_viewed","occurredAt":"2026-01-01T00:00:00Z","booking_page":{},"extra":1}"#,
                "extra is not a field",
            ),
            (
                r#"{"id":"","type":"message_sent","occurredAt":"2026-01-01T00:00:00Z","message":{}}"#,
                "id must be 1 to",
            ),
            (
                r#"{"type":"appointment_booked","occurredAt":"2026-01-01T00:00:00Z","endTime":"2026-01-01T01:00:00Z","timeZone":"UTC","botIntegrationId":1,"contactPhoneNumber":"+1"}"#,
                "startTime is missing",
            ),
            (
                r#"{"type":"appointment_booked","occurredAt":"2026-01-01T00:00:00Z","startTime":"2026-01-01T00:00:00Z","endTime":"2026-01-01T01:00:00Z","timeZone":"Mars/Base","botIntegrationId":1,"contactPhoneNumber":"+1"}"#,
                "timeZone \"Mars/Base\"",
            ),
            (
                r#"{"type":"appointment_booked","occurredAt":"2026-01-01T00:00:00Z","startTime":"2026-01-01T00:00:00Z","endTime":"2026-01-01T01:00:00Z","timeZone":"UTC","contactPhoneNumber":"+1"}"#,
                "botIntegrationId is missing",
            ),
            ("[1", "expected a JSON object"),
            (r#"{"type""#, "not valid JSON"),
            (
                r#"{"type":"message_sent","type":"message_sent"}"#,
                "given twice",
            ),
        ];
        for (body, want) in cases {
            let got = parse_str(body).expect_err(body);
            assert!(got.contains(want), "{body}: {got}");
        }
    }

    #[test]
    fn a_participant_event_keeps_its_bytes_and_takes_a_top_level_event_inside() {
        let e = parse_str(
            r#"{"id":"p1","type":"participant_confirmed","occurredAt":"2026-01-01T00:00:00Z",
                "participant":{"id":7,"name":"Ann Lee","phone":"+14155550100","email":"ann@example.com","score":1.50},
                "event":{"id":3,"title":"Intro"}}"#,
        )
        .unwrap();
        let Body::Trigger {
            class,
            key,
            object,
            contact,
            ..
        } = e.body
        else {
            panic!("a trigger event");
        };
        assert_eq!(
            (class, key, e.id.as_str()),
            (Class::Participant, "participant", "p1")
        );
        assert_eq!(
            object.get(),
            r#"{"id":7,"name":"Ann Lee","phone":"+14155550100","email":"ann@example.com","score":1.50,"event":{"id":3,"title":"Intro"}}"#
        );
        assert_eq!(contact.phone.as_deref(), Some("+14155550100"));
        assert_eq!(contact.name.as_deref(), Some("Ann Lee"));
    }
}
