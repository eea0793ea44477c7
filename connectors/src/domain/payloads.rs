//! The outbound payloads of the seeds, field for field: seed 000's events and seed
//! 003's trigger action runs. Instants are UTC with milliseconds (`…T10:30:00.000Z`)
//! as seed 000 shows them; unknown contact fields are `null`, never absent.

use super::events::Booked;
use super::store::{Contact, Message};
use chrono::TimeZone;
use leadstream_pipeline::time::format_rfc3339_ms;
use serde::Serialize;
use serde_json::value::RawValue;

/// An instant in microseconds as seed 000 writes it.
fn instant(us: i64) -> String {
    format_rfc3339_ms(us.div_euclid(1000))
}

/// `us` in `zone` with its offset, to the second (`2025-12-05T09:00:00-05:00`), as
/// seed 000's `startTimeInTz`; UTC when the zone does not parse (it was checked).
pub fn in_zone(us: i64, zone: &str) -> String {
    let secs = us.div_euclid(1_000_000);
    let nanos = (us.rem_euclid(1_000_000) * 1000) as u32;
    let utc = chrono::Utc
        .timestamp_opt(secs, nanos)
        .single()
        .unwrap_or_default();
    match zone.parse::<chrono_tz::Tz>() {
        Ok(tz) => utc
            .with_timezone(&tz)
            .format("%Y-%m-%dT%H:%M:%S%:z")
            .to_string(),
        Err(_) => utc.format("%Y-%m-%dT%H:%M:%S%:z").to_string(),
    }
}

/// The contact fields every seed 000 event carries.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ContactFields<'a> {
    contact_email: Option<&'a str>,
    contact_whatsapp_id: Option<&'a str>,
    contact_phone_number: Option<&'a str>,
    contact_full_name: Option<&'a str>,
    contact_first_name: Option<&'a str>,
    contact_last_name: Option<&'a str>,
    contact_metadata: Option<&'a RawValue>,
}

impl<'a> ContactFields<'a> {
    fn of(c: &'a Contact, metadata: Option<&'a RawValue>) -> Self {
        ContactFields {
            contact_email: c.email.as_deref(),
            contact_whatsapp_id: Some(c.phone.trim_start_matches('+')),
            contact_phone_number: Some(&c.phone),
            contact_full_name: c.full_name.as_deref(),
            contact_first_name: c.first_name.as_deref(),
            contact_last_name: c.last_name.as_deref(),
            contact_metadata: metadata,
        }
    }
}

fn metadata_of(c: &Contact) -> Option<Box<RawValue>> {
    c.metadata
        .as_ref()
        .and_then(|m| RawValue::from_string(m.clone()).ok())
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AppointmentBooked<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    timestamp: String,
    start_time: String,
    start_time_in_tz: String,
    end_time: String,
    time_zone: &'a str,
    #[serde(flatten)]
    contact: ContactFields<'a>,
    concatenated_conversation: Option<&'a str>,
    bot_id: Option<i64>,
    bot_integration_id: i64,
}

/// Seed 000's `appointment_booked` for an event at `occurred_us`, the contact as it
/// stands after the event, and the conversation's transcript if there is one.
pub fn appointment_booked(
    occurred_us: i64,
    b: &Booked,
    contact: &Contact,
    conversation: Option<&str>,
) -> Vec<u8> {
    let metadata = metadata_of(contact);
    let out = AppointmentBooked {
        kind: "appointment_booked",
        timestamp: instant(occurred_us),
        start_time: instant(b.start_us),
        start_time_in_tz: in_zone(b.start_us, &b.time_zone),
        end_time: instant(b.end_us),
        time_zone: &b.time_zone,
        contact: ContactFields::of(contact, metadata.as_deref()),
        concatenated_conversation: conversation,
        bot_id: b.bot_id,
        bot_integration_id: b.bot_integration_id,
    };
    serde_json::to_vec(&out).expect("a payload serializes")
}

/// A conversation as one line per message, oldest first: `User (10:08:11 PM): text ;
/// Bot (9:45:30 PM): text` (seed 002's `conversation_paragraph`; times in UTC, a media
/// message without text as `[Document]`).
pub fn paragraph(messages: &[Message]) -> String {
    messages
        .iter()
        .map(|m| {
            let who = if m.sender == "bot" { "Bot" } else { "User" };
            let at = chrono::Utc
                .timestamp_millis_opt(m.at_ms)
                .single()
                .unwrap_or_default()
                .format("%-I:%M:%S %p");
            let text = if m.content.is_empty() && m.content_type != "text" {
                let mut t = m.content_type.clone();
                if let Some(first) = t.get_mut(0..1) {
                    first.make_ascii_uppercase();
                }
                format!("[{t}]")
            } else {
                m.content.clone()
            };
            format!("{who} ({at}): {text}")
        })
        .collect::<Vec<_>>()
        .join(" ; ")
}

#[derive(Serialize)]
struct LastMessage<'a> {
    #[serde(rename = "type")]
    sender: &'a str,
    content: &'a str,
    timestamp: String,
    content_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    media_url: Option<&'a str>,
}

#[derive(Serialize)]
struct IncomingMessage<'a> {
    last_messages: Vec<LastMessage<'a>>,
    conversation_paragraph: String,
    phone_number: &'a str,
    recipient_name: &'a str,
    user_id: &'a str,
    last_message_of_user: &'a str,
    last_message_of_bot: &'a str,
    message_type: &'a str,
    user_last_message_time: i64,
    bot_last_message_time: i64,
    attachment_url: Option<&'a str>,
    note: &'a str,
    note_automation: &'a str,
    labels: &'a str,
}

/// What seed 002's `incoming_message` is made of.
pub struct Incoming<'a> {
    /// Newest last; the last one is the message that arrived.
    pub messages: &'a [Message],
    pub phone: &'a str,
    pub recipient_name: &'a str,
    /// The org's account UUID.
    pub user_id: &'a str,
    pub last_user: Option<&'a Message>,
    pub last_bot: Option<&'a Message>,
}

/// Seed 002's `incoming_message`. Times of a side that has not written are 0, its
/// last message "".
pub fn incoming_message(i: &Incoming<'_>) -> Vec<u8> {
    let latest = i.messages.last();
    let out = IncomingMessage {
        last_messages: i
            .messages
            .iter()
            .map(|m| LastMessage {
                sender: &m.sender,
                content: &m.content,
                timestamp: format_rfc3339_ms(m.at_ms),
                content_type: &m.content_type,
                media_url: if m.content_type == "text" {
                    None
                } else {
                    m.media_url.as_deref()
                },
            })
            .collect(),
        conversation_paragraph: paragraph(i.messages),
        phone_number: i.phone.trim_start_matches('+'),
        recipient_name: i.recipient_name,
        user_id: i.user_id,
        last_message_of_user: i.last_user.map_or("", |m| m.content.as_str()),
        last_message_of_bot: i.last_bot.map_or("", |m| m.content.as_str()),
        message_type: latest.map_or("text", |m| m.content_type.as_str()),
        user_last_message_time: i.last_user.map_or(0, |m| m.at_ms.div_euclid(1000)),
        bot_last_message_time: i.last_bot.map_or(0, |m| m.at_ms.div_euclid(1000)),
        attachment_url: latest.and_then(|m| m.media_url.as_deref()),
        note: "",
        note_automation: "",
        labels: "",
    };
    serde_json::to_vec(&out).expect("a payload serializes")
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DeliveryFailed<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    timestamp: String,
    platform_resource_id: &'a str,
    error_code: Option<i64>,
    error_title: Option<&'a str>,
    error_message: Option<&'a str>,
    error_details: Option<&'a str>,
    #[serde(flatten)]
    contact: ContactFields<'a>,
    bot_integration_id: i64,
}

/// What a failed WhatsApp status says.
pub struct Failure<'a> {
    pub at_ms: i64,
    /// The status id (wamid).
    pub id: &'a str,
    pub code: Option<i64>,
    pub title: Option<&'a str>,
    pub message: Option<&'a str>,
    pub details: Option<&'a str>,
}

/// Seed 000's `message_delivery_failed`.
pub fn message_delivery_failed(
    f: &Failure<'_>,
    contact: &Contact,
    bot_integration_id: i64,
) -> Vec<u8> {
    let metadata = metadata_of(contact);
    let out = DeliveryFailed {
        kind: "message_delivery_failed",
        timestamp: format_rfc3339_ms(f.at_ms),
        platform_resource_id: f.id,
        error_code: f.code,
        error_title: f.title,
        error_message: f.message,
        error_details: f.details,
        contact: ContactFields::of(contact, metadata.as_deref()),
        bot_integration_id,
    };
    serde_json::to_vec(&out).expect("a payload serializes")
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Inactive<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    timestamp: String,
    last_user_message_sent_at: String,
    inactive_for_duration: &'a str,
    conversation_status: Vec<&'static str>,
    #[serde(flatten)]
    contact: ContactFields<'a>,
    concatenated_conversation: Option<&'a str>,
    bot_id: Option<i64>,
    bot_integration_id: i64,
}

/// What seed 000's `conversation_inactive` is made of.
pub struct InactiveConversation<'a> {
    pub fired_at_ms: i64,
    pub last_user_at_ms: i64,
    /// ISO 8601 ([`iso_duration`]).
    pub inactive_for: &'a str,
    pub tags: Vec<&'static str>,
    pub conversation: Option<&'a str>,
    pub bot_id: Option<i64>,
    pub bot_integration_id: i64,
}

/// Seed 000's `conversation_inactive`.
pub fn conversation_inactive(i: &InactiveConversation<'_>, contact: &Contact) -> Vec<u8> {
    let metadata = metadata_of(contact);
    let out = Inactive {
        kind: "conversation_inactive",
        timestamp: format_rfc3339_ms(i.fired_at_ms),
        last_user_message_sent_at: format_rfc3339_ms(i.last_user_at_ms),
        inactive_for_duration: i.inactive_for,
        conversation_status: i.tags.clone(),
        contact: ContactFields::of(contact, metadata.as_deref()),
        concatenated_conversation: i.conversation,
        bot_id: i.bot_id,
        bot_integration_id: i.bot_integration_id,
    };
    serde_json::to_vec(&out).expect("a payload serializes")
}

/// `d` as an ISO 8601 duration of hours, minutes and seconds: 23 h is `PT23H`, 90 s
/// `PT1M30S`, zero `PT0S`.
pub fn iso_duration(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut out = String::from("PT");
    if h > 0 {
        out.push_str(&format!("{h}H"));
    }
    if m > 0 {
        out.push_str(&format!("{m}M"));
    }
    if s > 0 || out.len() == 2 {
        out.push_str(&format!("{s}S"));
    }
    out
}

/// One run of a trigger's action (seed 003): the trigger class's object under its
/// key, exactly as the event carried it, and a fresh `apptoto_id`, unique to this run
/// (its retries send the same bytes).
pub fn action_run(key: &str, object: &str) -> Vec<u8> {
    let id = uuid::Uuid::new_v4();
    let mut out = Vec::with_capacity(object.len() + key.len() + 64);
    out.push(b'{');
    serde_json::to_writer(&mut out, key).expect("a key serializes");
    out.push(b':');
    out.extend_from_slice(object.as_bytes());
    out.extend_from_slice(br#","apptoto_id":""#);
    out.extend_from_slice(id.to_string().as_bytes());
    out.extend_from_slice(b"\"}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use leadstream_pipeline::time::parse_rfc3339_us;
    use serde_json::{json, Value};

    fn us(s: &str) -> i64 {
        parse_rfc3339_us(s).unwrap()
    }

    /// Seed 000's example, field for field (its concatenatedConversation and botId
    /// given).
    #[test]
    fn appointment_booked_is_seed_000s_example() {
        let b = Booked {
            start_us: us("2025-12-05T14:00:00Z"),
            end_us: us("2025-12-05T15:00:00Z"),
            time_zone: "America/New_York".into(),
            phone: "+1234567890".into(),
            email: None,
            full_name: None,
            first_name: None,
            last_name: None,
            metadata: None,
            bot_id: Some(123),
            bot_integration_id: 456,
        };
        let contact = Contact {
            phone: "+1234567890".into(),
            email: Some("user@example.com".into()),
            full_name: Some("John Doe".into()),
            first_name: Some("John".into()),
            last_name: Some("Doe".into()),
            metadata: Some("{}".into()),
            updated_at_ms: 0,
        };
        let got: Value = serde_json::from_slice(&appointment_booked(
            us("2025-12-04T10:30:00Z"),
            &b,
            &contact,
            Some("Full conversation history..."),
        ))
        .unwrap();
        assert_eq!(
            got,
            json!({
              "type": "appointment_booked",
              "timestamp": "2025-12-04T10:30:00.000Z",
              "startTime": "2025-12-05T14:00:00.000Z",
              "startTimeInTz": "2025-12-05T09:00:00-05:00",
              "endTime": "2025-12-05T15:00:00.000Z",
              "timeZone": "America/New_York",
              "contactEmail": "user@example.com",
              "contactWhatsappId": "1234567890",
              "contactPhoneNumber": "+1234567890",
              "contactFullName": "John Doe",
              "contactFirstName": "John",
              "contactLastName": "Doe",
              "contactMetadata": {},
              "concatenatedConversation": "Full conversation history...",
              "botId": 123,
              "botIntegrationId": 456
            })
        );
        // What is unknown is null, not absent.
        let bare = Contact {
            phone: "+1234567890".into(),
            ..Contact::default()
        };
        let got: Value = serde_json::from_slice(&appointment_booked(0, &b, &bare, None)).unwrap();
        for k in [
            "contactEmail",
            "contactFullName",
            "contactFirstName",
            "contactLastName",
            "contactMetadata",
            "concatenatedConversation",
        ] {
            assert_eq!(got[k], Value::Null, "{k}");
        }
    }

    #[test]
    fn start_time_in_tz_follows_daylight_saving() {
        assert_eq!(
            in_zone(us("2026-07-01T13:00:00Z"), "America/New_York"),
            "2026-07-01T09:00:00-04:00"
        );
        assert_eq!(
            in_zone(us("2026-01-15T13:00:00Z"), "Asia/Kolkata"),
            "2026-01-15T18:30:00+05:30"
        );
        assert_eq!(
            in_zone(us("2026-01-15T13:00:00Z"), "UTC"),
            "2026-01-15T13:00:00+00:00"
        );
    }

    fn msg(at: &str, sender: &str, content: &str, kind: &str, media: Option<&str>) -> Message {
        Message {
            at_ms: us(at) / 1000,
            sender: sender.into(),
            content: content.into(),
            content_type: kind.into(),
            media_url: media.map(str::to_owned),
        }
    }

    /// Seed 002's first example, newest last as the issue asks. The example's
    /// `bot_last_message_time` (1749504330, 21:25:30) is 20 minutes before its own bot
    /// message (21:45:30.417); the time here is that message's.
    #[test]
    fn incoming_message_is_seed_002s_text_example() {
        let messages = [
            msg(
                "2025-06-09T21:45:30.417Z",
                "bot",
                "Of course! Let me pull up available slots for you.",
                "text",
                None,
            ),
            msg(
                "2025-06-09T22:08:11.990Z",
                "user",
                "Can I reschedule my appointment for Thursday?",
                "text",
                None,
            ),
        ];
        let got: Value = serde_json::from_slice(&incoming_message(&Incoming {
            messages: &messages,
            phone: "+14155552671",
            recipient_name: "Alex Martinez",
            user_id: "9232fcef-a570-4a2c-b46b-6cab53aec304",
            last_user: Some(&messages[1]),
            last_bot: Some(&messages[0]),
        }))
        .unwrap();
        assert_eq!(
            got,
            json!({
                "last_messages": [
                    {"type": "bot", "content": "Of course! Let me pull up available slots for you.",
                     "timestamp": "2025-06-09T21:45:30.417Z", "content_type": "text"},
                    {"type": "user", "content": "Can I reschedule my appointment for Thursday?",
                     "timestamp": "2025-06-09T22:08:11.990Z", "content_type": "text"}
                ],
                "conversation_paragraph": "Bot (9:45:30 PM): Of course! Let me pull up available slots for you. ; User (10:08:11 PM): Can I reschedule my appointment for Thursday?",
                "phone_number": "14155552671",
                "recipient_name": "Alex Martinez",
                "user_id": "9232fcef-a570-4a2c-b46b-6cab53aec304",
                "last_message_of_user": "Can I reschedule my appointment for Thursday?",
                "last_message_of_bot": "Of course! Let me pull up available slots for you.",
                "message_type": "text",
                "user_last_message_time": 1749506891,
                "bot_last_message_time": 1749505530,
                "attachment_url": null,
                "note": "",
                "note_automation": "",
                "labels": ""
            })
        );
    }

    /// Seed 002's media example: the document's URL, `[Document]` in the paragraph.
    #[test]
    fn incoming_message_is_seed_002s_document_example() {
        let messages = [
            msg(
                "2025-06-09T14:03:20Z",
                "bot",
                "Please send the signed contract when ready.",
                "text",
                None,
            ),
            msg(
                "2025-06-09T14:05:12Z",
                "user",
                "",
                "document",
                Some("https://api.insightssystem.com/vault/contract_v2.pdf"),
            ),
        ];
        let got: Value = serde_json::from_slice(&incoming_message(&Incoming {
            messages: &messages,
            phone: "+14155552671",
            recipient_name: "Alex Martinez",
            user_id: "u",
            last_user: Some(&messages[1]),
            last_bot: Some(&messages[0]),
        }))
        .unwrap();
        assert_eq!(
            got["last_messages"][1]["media_url"],
            "https://api.insightssystem.com/vault/contract_v2.pdf"
        );
        assert!(got["last_messages"][0].get("media_url").is_none());
        assert_eq!(got["conversation_paragraph"], "Bot (2:03:20 PM): Please send the signed contract when ready. ; User (2:05:12 PM): [Document]");
        assert_eq!(got["message_type"], "document");
        assert_eq!(
            got["attachment_url"],
            "https://api.insightssystem.com/vault/contract_v2.pdf"
        );
        assert_eq!(got["last_message_of_user"], "");
        assert_eq!(got["user_last_message_time"], 1749477912);
    }

    /// Seed 000's message_delivery_failed example, field for field.
    #[test]
    fn message_delivery_failed_is_seed_000s_example() {
        let contact = Contact {
            phone: "+447911123456".into(),
            email: Some("john@example.com".into()),
            full_name: Some("John Doe".into()),
            first_name: Some("John".into()),
            last_name: Some("Doe".into()),
            metadata: Some("{}".into()),
            updated_at_ms: 0,
        };
        let got: Value = serde_json::from_slice(&message_delivery_failed(
            &Failure {
                at_ms: us("2025-12-04T10:30:00Z") / 1000,
                id: "wamid.HBgLNDQ3...",
                code: Some(131026),
                title: Some("Message undeliverable"),
                message: Some("Message failed to send because there were one or more errors related to your phone number."),
                details: Some("The message could not be delivered."),
            },
            &contact,
            456,
        ))
        .unwrap();
        assert_eq!(
            got,
            json!({
              "type": "message_delivery_failed",
              "timestamp": "2025-12-04T10:30:00.000Z",
              "platformResourceId": "wamid.HBgLNDQ3...",
              "errorCode": 131026,
              "errorTitle": "Message undeliverable",
              "errorMessage": "Message failed to send because there were one or more errors related to your phone number.",
              "errorDetails": "The message could not be delivered.",
              "contactWhatsappId": "447911123456",
              "contactPhoneNumber": "+447911123456",
              "contactFullName": "John Doe",
              "contactFirstName": "John",
              "contactLastName": "Doe",
              "contactEmail": "john@example.com",
              "contactMetadata": {},
              "botIntegrationId": 456
            })
        );
    }

    /// Seed 000's conversation_inactive example, field for field.
    #[test]
    fn conversation_inactive_is_seed_000s_example() {
        let contact = Contact {
            phone: "+1234567890".into(),
            email: Some("user@example.com".into()),
            full_name: Some("John Doe".into()),
            first_name: Some("John".into()),
            last_name: Some("Doe".into()),
            metadata: Some("{}".into()),
            updated_at_ms: 0,
        };
        let got: Value = serde_json::from_slice(&conversation_inactive(
            &InactiveConversation {
                fired_at_ms: us("2025-12-04T10:30:00Z") / 1000,
                last_user_at_ms: us("2025-12-03T11:30:00Z") / 1000,
                inactive_for: &iso_duration(std::time::Duration::from_secs(23 * 3600)),
                tags: vec!["replied"],
                conversation: Some("Full conversation history..."),
                bot_id: Some(123),
                bot_integration_id: 456,
            },
            &contact,
        ))
        .unwrap();
        assert_eq!(
            got,
            json!({
              "type": "conversation_inactive",
              "timestamp": "2025-12-04T10:30:00.000Z",
              "lastUserMessageSentAt": "2025-12-03T11:30:00.000Z",
              "inactiveForDuration": "PT23H",
              "conversationStatus": ["replied"],
              "contactEmail": "user@example.com",
              "contactWhatsappId": "1234567890",
              "contactPhoneNumber": "+1234567890",
              "contactFullName": "John Doe",
              "contactFirstName": "John",
              "contactLastName": "Doe",
              "contactMetadata": {},
              "concatenatedConversation": "Full conversation history...",
              "botId": 123,
              "botIntegrationId": 456
            })
        );
        assert_eq!(iso_duration(std::time::Duration::from_secs(90)), "PT1M30S");
        assert_eq!(iso_duration(std::time::Duration::from_secs(0)), "PT0S");
    }

    #[test]
    fn an_action_run_carries_the_object_as_sent_and_a_fresh_id() {
        let object = r#"{"id":1,"score":1.50}"#;
        let a = action_run("booking_page", object);
        let b = action_run("booking_page", object);
        let text = String::from_utf8(a.clone()).unwrap();
        assert!(text.starts_with(r#"{"booking_page":{"id":1,"score":1.50},"apptoto_id":""#));
        let (va, vb): (Value, Value) = (
            serde_json::from_slice(&a).unwrap(),
            serde_json::from_slice(&b).unwrap(),
        );
        assert_ne!(va["apptoto_id"], vb["apptoto_id"]);
        assert_eq!(va.as_object().unwrap().len(), 2);
    }
}
