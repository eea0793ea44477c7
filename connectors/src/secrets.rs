//! Secrets at rest. Endpoint signing secrets and WhatsApp app secrets are sealed with
//! XChaCha20-Poly1305 under `secrets.key` (`LEADSTREAM_SECRETS_KEY`) before they are
//! stored, on both backends, and opened when read. WhatsApp verify tokens are only
//! ever compared, so they are stored as their SHA-256.
//!
//! A sealed value is text: `sealed:v1:<key id>:<base64url of nonce ‖ ciphertext>`.
//! The key id is the first 4 bytes of the key's SHA-256, in hex, so a value names the
//! key that sealed it. The AAD is the value's purpose (`endpoint-secret`,
//! `whatsapp-app-secret`), so a sealed value copied into another column does not open.
//!
//! Rotation: set the new key as `secrets.key` and the old one in
//! `secrets.previous_keys`, restart, then run `leadstream secrets rotate`, which seals
//! every stored value again under the new key (and seals values stored in clear
//! before a key was set); then drop the old key. Without a key, values are stored in
//! clear (and a warning says so at start-up); sealed values then cannot be opened, so
//! a server with sealed rows refuses to use them rather than guessing.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

const SEALED: &str = "sealed:v1:";
const HASHED: &str = "sha256:";

/// What a sealed value is; bound to it as the AEAD's associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// `endpoint_secrets.secret`.
    EndpointSecret,
    /// `whatsapp_integrations.app_secret`.
    WhatsAppAppSecret,
}

impl Purpose {
    fn aad(self) -> &'static [u8] {
        match self {
            Purpose::EndpointSecret => b"endpoint-secret",
            Purpose::WhatsAppAppSecret => b"whatsapp-app-secret",
        }
    }
}

/// Why a key or a stored value was not usable.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("{what} is not a key: expected 32 bytes as 64 hex digits or base64 (make one with `leadstream secrets new-key`)")]
    BadKey { what: String },
    #[error("a stored secret is sealed with key {key_id}, which is neither secrets.key nor in secrets.previous_keys: set the key it was sealed with")]
    UnknownKey { key_id: String },
    #[error("a stored secret sealed with key {key_id} does not open: it was altered, or belongs to another column")]
    Corrupt { key_id: String },
}

struct Key {
    id: String,
    cipher: XChaCha20Poly1305,
}

impl Key {
    fn parse(text: &str, what: &str) -> Result<Self, SecretError> {
        use base64::Engine;
        let text = text.trim();
        let bad = || SecretError::BadKey {
            what: what.to_owned(),
        };
        let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(text).map_err(|_| bad())?
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text))
                .map_err(|_| bad())?
        };
        if bytes.len() != 32 {
            return Err(bad());
        }
        Ok(Self {
            id: hex::encode(&Sha256::digest(&bytes)[..4]),
            cipher: XChaCha20Poly1305::new_from_slice(&bytes).map_err(|_| bad())?,
        })
    }
}

/// The current key (sealing and opening) and the previous ones (opening only).
#[derive(Default)]
pub struct Keyring {
    current: Option<Key>,
    previous: Vec<Key>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current.as_ref().map(|k| &k.id))
            .field(
                "previous",
                &self.previous.iter().map(|k| &k.id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Keyring {
    /// The keyring of `key` (empty: none) and `previous`.
    ///
    /// # Errors
    /// [`SecretError::BadKey`] naming the setting.
    pub fn new(key: &str, previous: &[String]) -> Result<Self, SecretError> {
        let current = (!key.trim().is_empty())
            .then(|| Key::parse(key, "secrets.key"))
            .transpose()?;
        let previous = previous
            .iter()
            .filter(|k| !k.trim().is_empty())
            .enumerate()
            .map(|(i, k)| Key::parse(k, &format!("secrets.previous_keys[{i}]")))
            .collect::<Result<_, _>>()?;
        Ok(Self { current, previous })
    }

    /// Whether values are sealed when stored.
    pub fn seals(&self) -> bool {
        self.current.is_some()
    }

    /// The id of the current key.
    pub fn key_id(&self) -> Option<&str> {
        self.current.as_ref().map(|k| k.id.as_str())
    }

    /// `plain` as stored: sealed under the current key, or as it is without one.
    pub fn seal(&self, purpose: Purpose, plain: &str) -> String {
        use base64::Engine;
        let Some(key) = &self.current else {
            return plain.to_owned();
        };
        let nonce_bytes: [u8; 24] = rand::random();
        let nonce = XNonce::from_slice(&nonce_bytes);
        let sealed = key
            .cipher
            .encrypt(
                nonce,
                Payload {
                    msg: plain.as_bytes(),
                    aad: purpose.aad(),
                },
            )
            .expect("XChaCha20-Poly1305 seals any length a column holds");
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&sealed);
        format!(
            "{SEALED}{}:{}",
            key.id,
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(out)
        )
    }

    /// A stored value's text: opened when sealed, as it is otherwise (stored before a
    /// key was set).
    ///
    /// # Errors
    /// [`SecretError`] when it is sealed with an unknown key or does not open.
    pub fn open(&self, purpose: Purpose, stored: &str) -> Result<String, SecretError> {
        use base64::Engine;
        let Some(rest) = stored.strip_prefix(SEALED) else {
            return Ok(stored.to_owned());
        };
        let (key_id, data) = rest.split_once(':').unwrap_or((rest, ""));
        let corrupt = || SecretError::Corrupt {
            key_id: key_id.to_owned(),
        };
        let key = self
            .current
            .iter()
            .chain(&self.previous)
            .find(|k| k.id == key_id)
            .ok_or_else(|| SecretError::UnknownKey {
                key_id: key_id.to_owned(),
            })?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(data)
            .map_err(|_| corrupt())?;
        if bytes.len() < 24 {
            return Err(corrupt());
        }
        let (nonce, sealed) = bytes.split_at(24);
        let plain = key
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: purpose.aad(),
                },
            )
            .map_err(|_| corrupt())?;
        String::from_utf8(plain).map_err(|_| corrupt())
    }

    /// Whether `stored` is as [`seal`](Self::seal) stores values now: sealed under the
    /// current key, or in clear when there is none.
    pub fn is_current(&self, stored: &str) -> bool {
        match (&self.current, stored.strip_prefix(SEALED)) {
            (None, None) => true,
            (Some(k), Some(rest)) => rest.split_once(':').is_some_and(|(id, _)| id == k.id),
            _ => false,
        }
    }
}

static KEYRING: OnceLock<Keyring> = OnceLock::new();

/// Makes `keyring` the process's. The first call wins; a later one with other keys
/// is refused (one process, one set of keys).
///
/// # Errors
/// A keyring with other keys was installed before.
pub fn install(keyring: Keyring) -> Result<(), String> {
    let (want, prev) = (
        keyring.key_id().map(str::to_owned),
        keyring
            .previous
            .iter()
            .map(|k| k.id.clone())
            .collect::<Vec<_>>(),
    );
    if let Err(k) = KEYRING.set(keyring) {
        let have = keyring_now();
        let same = have.key_id().map(str::to_owned) == want
            && have
                .previous
                .iter()
                .map(|k| k.id.clone())
                .collect::<Vec<_>>()
                == prev;
        drop(k);
        if !same {
            return Err("the secrets keys were already set to others in this process".into());
        }
    }
    Ok(())
}

fn keyring_now() -> &'static Keyring {
    KEYRING.get_or_init(Keyring::default)
}

/// `plain` as it is stored ([`Keyring::seal`] with the process's keys).
pub fn seal(purpose: Purpose, plain: &str) -> String {
    keyring_now().seal(purpose, plain)
}

/// A stored value's text ([`Keyring::open`] with the process's keys).
///
/// # Errors
/// As [`Keyring::open`].
pub fn open(purpose: Purpose, stored: &str) -> Result<String, SecretError> {
    keyring_now().open(purpose, stored)
}

/// Whether `stored` needs sealing again ([`Keyring::is_current`]).
pub fn is_current(stored: &str) -> bool {
    keyring_now().is_current(stored)
}

/// Whether the process seals values.
pub fn seals() -> bool {
    keyring_now().seals()
}

/// A verify token as stored: its SHA-256, hex.
pub fn hash_token(token: &str) -> String {
    format!("{HASHED}{}", hex::encode(Sha256::digest(token.as_bytes())))
}

/// Whether a token stored by [`hash_token`] (or in clear, before it hashed) is
/// `presented`, compared in constant time.
pub fn token_matches(stored: &str, presented: &str) -> bool {
    use subtle::ConstantTimeEq;
    let presented = match stored.starts_with(HASHED) {
        true => hash_token(presented),
        false => presented.to_owned(),
    };
    stored.as_bytes().ct_eq(presented.as_bytes()).into()
}

/// Whether a stored verify token is hashed already.
pub fn is_hashed(stored: &str) -> bool {
    stored.starts_with(HASHED)
}

/// A fresh key, base64, for `secrets.key`.
pub fn new_key() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())
}

/// What [`reseal_all`] changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Resealed {
    pub endpoint_secrets: usize,
    pub app_secrets: usize,
    pub verify_tokens: usize,
}

/// Stores every endpoint secret and WhatsApp app secret again as the process's keys
/// seal them now (opened with any known key), and hashes verify tokens stored in
/// clear. Values already current are left alone. One transaction: `conn` is a
/// write of the webhook store (embedded `webhooks.db`, or the shared database).
///
/// # Errors
/// A value sealed with an unknown key ([`SecretError`], as `RepoError::Unknown`), or
/// the database's error; nothing is changed then.
pub fn reseal_all(conn: crate::db::sql::Sql<'_>) -> Result<Resealed, crate::db::RepoError> {
    use crate::db::sql::args;
    use crate::db::RepoError;
    let unknown = |column: &'static str| {
        move |e: SecretError| RepoError::Unknown {
            column,
            value: e.to_string(),
        }
    };
    let mut done = Resealed::default();
    let endpoint_rows: Vec<(i64, String)> = conn.query(
        "SELECT endpoint_id, secret FROM endpoint_secrets",
        args![],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    for (endpoint, stored) in endpoint_rows {
        if is_current(&stored) {
            continue;
        }
        let plain =
            open(Purpose::EndpointSecret, &stored).map_err(unknown("endpoint_secrets.secret"))?;
        conn.execute(
            "UPDATE endpoint_secrets SET secret = ?1 WHERE endpoint_id = ?2 AND secret = ?3",
            args![seal(Purpose::EndpointSecret, &plain), endpoint, stored],
        )?;
        done.endpoint_secrets += 1;
    }
    let integrations: Vec<(i64, i64, Option<String>, Option<String>)> = conn.query(
        "SELECT org_id, bot_integration_id, app_secret, verify_token FROM whatsapp_integrations",
        args![],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    for (org, id, app_secret, verify_token) in integrations {
        if let Some(stored) = app_secret.filter(|s| !is_current(s)) {
            let plain = open(Purpose::WhatsAppAppSecret, &stored)
                .map_err(unknown("whatsapp_integrations.app_secret"))?;
            conn.execute(
                "UPDATE whatsapp_integrations SET app_secret = ?1 WHERE org_id = ?2 AND bot_integration_id = ?3",
                args![seal(Purpose::WhatsAppAppSecret, &plain), org, id],
            )?;
            done.app_secrets += 1;
        }
        if let Some(token) = verify_token.filter(|t| !is_hashed(t)) {
            conn.execute(
                "UPDATE whatsapp_integrations SET verify_token = ?1 WHERE org_id = ?2 AND bot_integration_id = ?3",
                args![hash_token(&token), org, id],
            )?;
            done.verify_tokens += 1;
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_with_its_key_and_purpose_only() {
        let k1 = new_key();
        let ring = Keyring::new(&k1, &[]).unwrap();
        let sealed = ring.seal(Purpose::EndpointSecret, "whsec_abc");
        assert!(sealed.starts_with("sealed:v1:") && !sealed.contains("whsec_abc"));
        assert_ne!(
            sealed,
            ring.seal(Purpose::EndpointSecret, "whsec_abc"),
            "a fresh nonce each time"
        );
        assert_eq!(
            ring.open(Purpose::EndpointSecret, &sealed).unwrap(),
            "whsec_abc"
        );
        assert!(matches!(
            ring.open(Purpose::WhatsAppAppSecret, &sealed),
            Err(SecretError::Corrupt { .. })
        ));
        let mut altered = sealed.clone();
        let last = altered.pop().unwrap();
        altered.push(if last == 'A' { 'B' } else { 'A' });
        assert!(ring.open(Purpose::EndpointSecret, &altered).is_err());
        // In clear: as it is.
        assert_eq!(
            ring.open(Purpose::EndpointSecret, "plain").unwrap(),
            "plain"
        );
        // Another key, or none, cannot open it.
        let other = Keyring::new(&new_key(), &[]).unwrap();
        assert!(matches!(
            other.open(Purpose::EndpointSecret, &sealed),
            Err(SecretError::UnknownKey { .. })
        ));
        assert!(Keyring::default()
            .open(Purpose::EndpointSecret, &sealed)
            .is_err());
    }

    #[test]
    fn after_rotation_old_values_open_with_the_previous_key_and_are_not_current() {
        let (old, new) = (new_key(), new_key());
        let before = Keyring::new(&old, &[]).unwrap();
        let sealed = before.seal(Purpose::WhatsAppAppSecret, "app");
        let after = Keyring::new(&new, &[old]).unwrap();
        assert_eq!(
            after.open(Purpose::WhatsAppAppSecret, &sealed).unwrap(),
            "app"
        );
        assert!(before.is_current(&sealed) && !after.is_current(&sealed));
        assert!(
            !after.is_current("app"),
            "a value in clear is sealed by rotate"
        );
        assert!(Keyring::default().is_current("app"));
    }

    #[test]
    fn keys_are_64_hex_digits_or_base64_of_32_bytes() {
        assert!(Keyring::new(&"ab".repeat(32), &[]).is_ok());
        assert!(Keyring::new(&new_key(), &[]).is_ok());
        for bad in ["short", &"ab".repeat(31), "!!!!"] {
            assert!(matches!(
                Keyring::new(bad, &[]),
                Err(SecretError::BadKey { .. })
            ));
        }
        assert!(Keyring::new("", &["nope".into()]).is_err());
    }

    #[test]
    fn verify_tokens_are_hashed_and_compared() {
        let stored = hash_token("tok");
        assert!(!stored.contains("tok") || stored.starts_with("sha256:"));
        assert!(token_matches(&stored, "tok"));
        assert!(!token_matches(&stored, "tok2"));
        assert!(
            token_matches("legacy", "legacy"),
            "a token stored in clear before"
        );
        assert!(!token_matches("legacy", "other"));
    }
}
