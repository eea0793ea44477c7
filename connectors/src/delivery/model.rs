//! What the delivery engine keeps: endpoints, their secrets, and the ids it makes.

use leadstream_pipeline::signature::WebhookSecret;
use leadstream_pipeline::OrgId;
use rand::RngCore;
use std::time::Duration;

/// Where an endpoint came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointKind {
    /// `POST /api/webhooks/create`.
    Registry,
    /// The org's settings `webhookUrl` (at most one per org; every event type).
    Settings,
}

impl EndpointKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointKind::Registry => "registry",
            EndpointKind::Settings => "settings",
        }
    }
    /// `registry` or `settings`; anything else is `None` (a stored value this binary
    /// does not know, never read as a default).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "registry" => Some(EndpointKind::Registry),
            "settings" => Some(EndpointKind::Settings),
            _ => None,
        }
    }
}

/// One signing secret of an endpoint.
#[derive(Clone, Debug)]
pub struct EndpointSecret {
    pub secret: WebhookSecret,
    pub created_at_ms: i64,
    /// Set when a rotation replaced it: it keeps signing until then.
    pub expires_at_ms: Option<i64>,
}

/// A webhook endpoint as the engine delivers to it.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub id: i64,
    pub org: OrgId,
    pub kind: EndpointKind,
    pub url: String,
    pub description: Option<String>,
    /// `None`: every event type.
    pub event_types: Option<Vec<String>>,
    pub enabled: bool,
    /// Why the engine disabled it (410, or failing for `delivery.disable_after`).
    pub disabled_reason: Option<String>,
    /// Per-attempt timeout; `None`: `delivery.timeout`.
    pub timeout: Option<Duration>,
    /// Attempts in flight at most; `None`: `delivery.max_in_flight_per_endpoint`.
    pub max_in_flight: Option<u32>,
    /// Attempts started per second at most; `None`: unlimited.
    pub rate_limit: Option<f64>,
    /// Start of the current run of failed attempts (none since a success).
    pub failing_since_ms: Option<i64>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// Newest first.
    pub secrets: Vec<EndpointSecret>,
}

impl Endpoint {
    /// Whether deliveries of `event_type` go here (enabled or not).
    pub fn subscribed_to(&self, event_type: &str) -> bool {
        self.event_types
            .as_ref()
            .is_none_or(|types| types.iter().any(|t| t == event_type))
    }

    /// The secrets that sign at `now_ms`: the current one and any rotated out less
    /// than the grace period ago. Newest first.
    pub fn signing_secrets(&self, now_ms: i64) -> impl Iterator<Item = &WebhookSecret> {
        self.secrets
            .iter()
            .filter(move |s| s.expires_at_ms.is_none_or(|at| at > now_ms))
            .map(|s| &s.secret)
    }

    /// The current secret (the one `GET …/secret` shows).
    pub fn current_secret(&self) -> Option<&WebhookSecret> {
        self.secrets
            .iter()
            .find(|s| s.expires_at_ms.is_none())
            .or_else(|| self.secrets.first())
            .map(|s| &s.secret)
    }
}

/// A new random secret (`whsec_` + base64 of 32 bytes).
pub fn new_secret() -> WebhookSecret {
    let mut key = [0u8; leadstream_pipeline::signature::SECRET_BYTES];
    rand::rng().fill_bytes(&mut key);
    WebhookSecret::from_key(&key).expect("SECRET_BYTES is a valid key length")
}

const CROCKFORD: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// A new id, `prefix` + 26 characters that sort by creation time (48 bits of
/// milliseconds, then 80 random bits, Crockford base32 in lower case).
pub fn new_id(prefix: &str, now_ms: i64) -> String {
    let mut random = [0u8; 10];
    rand::rng().fill_bytes(&mut random);
    let mut value: u128 = u128::from(now_ms.max(0) as u64 & 0xFFFF_FFFF_FFFF) << 80;
    for (i, b) in random.iter().enumerate() {
        value |= u128::from(*b) << (8 * (9 - i));
    }
    let mut out = String::with_capacity(prefix.len() + 26);
    out.push_str(prefix);
    for i in (0..26).rev() {
        out.push(char::from(CROCKFORD[((value >> (5 * i)) & 31) as usize]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_time_and_differ() {
        let a = new_id("msg_", 1_000);
        let b = new_id("msg_", 1_001);
        let c = new_id("msg_", 1_001);
        assert!(a < b && a < c);
        assert_ne!(b, c);
        assert_eq!(a.len(), 30);
        assert!(a[4..].bytes().all(|x| CROCKFORD.contains(&x)));
    }

    #[test]
    fn rotated_secrets_sign_until_they_expire() {
        let old = new_secret();
        let new = new_secret();
        let mut e = Endpoint {
            id: 1,
            org: 1,
            kind: EndpointKind::Registry,
            url: "https://example.com/".into(),
            description: None,
            event_types: Some(vec!["a".into()]),
            enabled: true,
            disabled_reason: None,
            timeout: None,
            max_in_flight: None,
            rate_limit: None,
            failing_since_ms: None,
            created_at_ms: 0,
            updated_at_ms: 0,
            secrets: vec![
                EndpointSecret {
                    secret: new.clone(),
                    created_at_ms: 10,
                    expires_at_ms: None,
                },
                EndpointSecret {
                    secret: old.clone(),
                    created_at_ms: 0,
                    expires_at_ms: Some(100),
                },
            ],
        };
        assert_eq!(e.signing_secrets(99).count(), 2);
        assert_eq!(e.signing_secrets(100).count(), 1);
        assert!(e.current_secret() == Some(&new));
        assert!(e.subscribed_to("a") && !e.subscribed_to("A"));
        e.event_types = None;
        assert!(e.subscribed_to("anything"));
    }
}
