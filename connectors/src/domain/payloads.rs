//! The outbound payloads of the seeds, field for field: seed 000's events and seed
//! 003's trigger action runs. Instants are UTC with milliseconds (`…T10:30:00.000Z`)
//! as seed 000 shows them; unknown contact fields are `null`, never absent.

use super::events::Booked;
use super::store::Contact;
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
