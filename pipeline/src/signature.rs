//! Webhook signatures, as the Standard Webhooks spec defines them
//! (<https://www.standardwebhooks.com/>).
//!
//! A secret is `whsec_` followed by the base64 of its key bytes. An attempt is signed
//! over `"{webhook-id}.{webhook-timestamp}.{body}"` with HMAC-SHA256 under the key
//! bytes; `webhook-signature` carries `v1,<base64 of the MAC>`, one space-separated
//! entry per active secret (two during a rotation's grace period).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The prefix of every secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// Random bytes in a secret leadstream issues (the spec asks for 24 to 64).
pub const SECRET_BYTES: usize = 32;

/// A signing secret: its key bytes, and the text it was written as.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret {
    key: Vec<u8>,
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(whsec_…)")
    }
}

/// Why a secret's text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("a webhook secret starts with whsec_")]
    Prefix,
    #[error("a webhook secret is whsec_ followed by base64")]
    Base64,
    #[error("a webhook secret holds 24 to 64 key bytes, this one {0}")]
    Length(usize),
}

impl WebhookSecret {
    /// A secret of these key bytes (24 to 64 of them).
    ///
    /// # Errors
    /// [`SecretError::Length`].
    pub fn from_key(key: &[u8]) -> Result<Self, SecretError> {
        if !(24..=64).contains(&key.len()) {
            return Err(SecretError::Length(key.len()));
        }
        Ok(Self { key: key.to_vec() })
    }

    /// Reads `whsec_<base64>`.
    ///
    /// # Errors
    /// [`SecretError`] saying what is wrong with the text.
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let b64 = text
            .strip_prefix(SECRET_PREFIX)
            .ok_or(SecretError::Prefix)?;
        let key = STANDARD.decode(b64).map_err(|_| SecretError::Base64)?;
        Self::from_key(&key)
    }

    /// `whsec_<base64>`: what the API shows and receivers configure.
    pub fn text(&self) -> String {
        format!("{SECRET_PREFIX}{}", STANDARD.encode(&self.key))
    }

    /// `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = <Hmac<Sha256>>::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

/// The `webhook-signature` header value: one `v1,…` entry per secret, space-separated,
/// in the order given (newest first by convention).
pub fn signature_header<'a>(
    secrets: impl IntoIterator<Item = &'a WebhookSecret>,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    let mut out = String::new();
    for s in secrets {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&s.sign(id, timestamp, body));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The spec's published test vector.
    #[test]
    fn standard_webhooks_test_vector() {
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            secret.sign(
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1_614_265_330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        assert_eq!(secret.text(), "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    }

    #[test]
    fn one_entry_per_secret_space_separated() {
        let a = WebhookSecret::from_key(&[1; 32]).unwrap();
        let b = WebhookSecret::from_key(&[2; 32]).unwrap();
        let h = signature_header([&a, &b], "msg_1", 10, b"{}");
        let parts: Vec<&str> = h.split(' ').collect();
        assert_eq!(
            parts,
            [a.sign("msg_1", 10, b"{}"), b.sign("msg_1", 10, b"{}")]
        );
        assert_ne!(parts[0], parts[1]);
        assert_eq!(signature_header([], "msg_1", 10, b"{}"), "");
    }

    #[test]
    fn secrets_are_checked_when_read() {
        assert_eq!(WebhookSecret::parse("MfKQ9r8G"), Err(SecretError::Prefix));
        assert_eq!(WebhookSecret::parse("whsec_!!!"), Err(SecretError::Base64));
        assert_eq!(
            WebhookSecret::parse("whsec_AAAA"),
            Err(SecretError::Length(3))
        );
        let s = WebhookSecret::from_key(&[7; SECRET_BYTES]).unwrap();
        assert_eq!(WebhookSecret::parse(&s.text()).unwrap(), s);
        assert!(!format!("{s:?}").contains(&s.text()[6..]));
    }
}
