//! WhatsApp Cloud API webhooks: the signature Meta sends (`X-Hub-Signature-256`), and
//! the parts of a webhook body this service acts on (`entry[].changes[].value` with
//! its `contacts`, `messages` and `statuses`).

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

/// The `X-Hub-Signature-256` value Meta sends with `body`: `sha256=<hex HMAC-SHA256>`.
pub fn signature(app_secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(app_secret.as_bytes()).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Whether `header` (`sha256=<hex>`) is the HMAC-SHA256 of `body` with `app_secret`.
/// Compared in constant time.
pub fn signature_ok(app_secret: &str, body: &[u8], header: &str) -> bool {
    let Some(hex_sig) = header.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(app_secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// A webhook body as Meta sends it (fields this service does not use are ignored).
#[derive(Debug, Deserialize)]
pub struct Webhook {
    pub object: String,
    pub entry: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
pub struct Entry {
    #[serde(default)]
    pub changes: Vec<Change>,
}

#[derive(Debug, Deserialize)]
pub struct Change {
    #[serde(default)]
    pub field: Option<String>,
    pub value: Value,
}

#[derive(Debug, Default, Deserialize)]
pub struct Value {
    #[serde(default)]
    pub contacts: Vec<ContactIn>,
    #[serde(default)]
    pub messages: Vec<MessageIn>,
    #[serde(default)]
    pub statuses: Vec<StatusIn>,
}

#[derive(Debug, Deserialize)]
pub struct ContactIn {
    pub wa_id: String,
    #[serde(default)]
    pub profile: Option<Profile>,
}

#[derive(Debug, Deserialize)]
pub struct Profile {
    #[serde(default)]
    pub name: Option<String>,
}

/// A message a user sent.
#[derive(Debug, Deserialize)]
pub struct MessageIn {
    pub from: String,
    pub id: String,
    /// Unix seconds, as a string.
    pub timestamp: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub text: Option<Text>,
    #[serde(default)]
    pub image: Option<Media>,
    #[serde(default)]
    pub video: Option<Media>,
    #[serde(default)]
    pub audio: Option<Media>,
    #[serde(default)]
    pub document: Option<Media>,
    #[serde(default)]
    pub sticker: Option<Media>,
    #[serde(default)]
    pub location: Option<Location>,
    #[serde(default)]
    pub button: Option<Text>,
    #[serde(default)]
    pub interactive: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
pub struct Text {
    #[serde(default, alias = "text")]
    pub body: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Media {
    #[serde(default)]
    pub caption: Option<String>,
    #[serde(default)]
    pub link: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Location {
    #[serde(default)]
    pub latitude: Option<f64>,
    #[serde(default)]
    pub longitude: Option<f64>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub address: Option<String>,
}

/// What a message is, as seed 002 types it: `(content_type, content, media_url)`.
pub fn content_of(m: &MessageIn) -> (&'static str, String, Option<String>) {
    let media = |kind: &'static str, media: &Option<Media>| {
        let m = media.as_ref();
        (
            kind,
            m.and_then(|m| m.caption.clone()).unwrap_or_default(),
            m.and_then(|m| m.link.clone().or_else(|| m.url.clone())),
        )
    };
    match m.kind.as_str() {
        "image" => media("image", &m.image),
        "sticker" => media("image", &m.sticker),
        "video" => media("video", &m.video),
        "audio" => media("audio", &m.audio),
        "document" => media("document", &m.document),
        "location" => {
            let l = m.location.as_ref();
            let text = match l {
                Some(Location {
                    name: Some(n),
                    address,
                    ..
                }) => match address {
                    Some(a) => format!("{n}, {a}"),
                    None => n.clone(),
                },
                Some(Location {
                    latitude: Some(lat),
                    longitude: Some(lon),
                    ..
                }) => format!("{lat},{lon}"),
                _ => String::new(),
            };
            ("location", text, None)
        }
        "button" => (
            "text",
            m.button
                .as_ref()
                .and_then(|b| b.body.clone())
                .unwrap_or_default(),
            None,
        ),
        "interactive" => {
            let i = m.interactive.as_ref();
            let title = i
                .and_then(|i| {
                    i.pointer("/button_reply/title")
                        .or_else(|| i.pointer("/list_reply/title"))
                })
                .and_then(|t| t.as_str())
                .unwrap_or_default()
                .to_owned();
            ("text", title, None)
        }
        _ => (
            "text",
            m.text
                .as_ref()
                .and_then(|t| t.body.clone())
                .unwrap_or_default(),
            None,
        ),
    }
}

/// A status of a message the business sent.
#[derive(Debug, Deserialize)]
pub struct StatusIn {
    pub id: String,
    pub status: String,
    /// Unix seconds, as a string.
    pub timestamp: String,
    pub recipient_id: String,
    #[serde(default)]
    pub errors: Vec<StatusError>,
}

#[derive(Debug, Deserialize)]
pub struct StatusError {
    #[serde(default)]
    pub code: Option<i64>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub error_data: Option<ErrorData>,
}

#[derive(Debug, Deserialize)]
pub struct ErrorData {
    #[serde(default)]
    pub details: Option<String>,
}

/// Unix seconds (a string) in milliseconds.
pub fn seconds_ms(text: &str) -> Option<i64> {
    text.trim().parse::<i64>().ok()?.checked_mul(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_the_bodys_hmac_with_the_app_secret() {
        let body = br#"{"object":"whatsapp_business_account","entry":[]}"#;
        let good = signature("s3cret", body);
        let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").unwrap();
        mac.update(body);
        assert_eq!(
            good,
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        );
        assert!(signature_ok("s3cret", body, &good));
        assert!(!signature_ok("other", body, &good));
        assert!(!signature_ok("s3cret", b"{}", &good));
        assert!(!signature_ok("s3cret", body, "sha1=00"));
        assert!(!signature_ok("s3cret", body, "sha256=zz"));
    }

    #[test]
    fn message_types_map_to_seed_002s_content_types() {
        let m: MessageIn = serde_json::from_str(
            r#"{"from":"14155550100","id":"wamid.1","timestamp":"1749506891","type":"document",
                "document":{"caption":"signed","link":"https://files.example/c.pdf","mime_type":"application/pdf"}}"#,
        )
        .unwrap();
        assert_eq!(
            content_of(&m),
            (
                "document",
                "signed".into(),
                Some("https://files.example/c.pdf".into())
            )
        );
        let t: MessageIn = serde_json::from_str(
            r#"{"from":"1","id":"w","timestamp":"1","type":"text","text":{"body":"hi"}}"#,
        )
        .unwrap();
        assert_eq!(content_of(&t), ("text", "hi".into(), None));
        assert_eq!(seconds_ms("1749506891"), Some(1_749_506_891_000));
        assert_eq!(seconds_ms("soon"), None);
    }
}
