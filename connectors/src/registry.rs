//! Organizations and their credentials, in `leadstream.db`.
//!
//! Shared by the server and the admin CLI (separate processes, SQLite WAL). The server
//! reads it on every request, so a key created or revoked by the CLI takes effect on
//! the next request.
//!
//! Keys are stored hashed (SHA-256), never as issued:
//! - API keys (`lsk_…`): the server hashes the presented bearer token and looks the
//!   hash up, then compares in constant time.
//! - Signing keys (`lss_…`, 100 bytes): HMAC-SHA256 replaces any key longer than the
//!   64-byte block by its SHA-256 (RFC 2104 §2), so `HMAC(secret, body)` equals
//!   `HMAC(SHA-256(secret), body)`. Storing the hash is enough to verify signatures
//!   and does not reveal the issued secret. The hash still verifies signatures, so the
//!   data dir must be kept private like any credential store.

use crate::store::open_sqlite;
use hmac::{Hmac, Mac};
use leadstream_pipeline::OrgId;
use parking_lot::Mutex;
use rand::RngCore;
use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest, Sha256};
use std::path::Path;
use subtle::ConstantTimeEq;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS organizations (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL,
    auth_mode   TEXT    NOT NULL DEFAULT 'api-key' CHECK (auth_mode IN ('api-key', 'hmac')),
    created_at  INTEGER NOT NULL,
    account_id  TEXT
);
CREATE TABLE IF NOT EXISTS credentials (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id      INTEGER NOT NULL REFERENCES organizations(id),
    kind        TEXT    NOT NULL CHECK (kind IN ('api-key', 'signing-key')),
    hash        BLOB    NOT NULL UNIQUE,
    prefix      TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
CREATE INDEX IF NOT EXISTS credentials_org ON credentials (org_id, kind);
";

/// How an organization authenticates inbound lead events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// `Authorization: Bearer <api key>`, any active key of the org (the default).
    ApiKey,
    /// `X-Setter-Signature: sha256=<hex HMAC-SHA256 of the raw body>`, any active signing key.
    Hmac,
}

impl AuthMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::ApiKey => "api-key",
            AuthMode::Hmac => "hmac",
        }
    }

    /// Parses `api-key` or `hmac`.
    ///
    /// # Errors
    /// A message naming the accepted values.
    pub fn parse(s: &str) -> Result<Self, RegistryError> {
        match s {
            "api-key" => Ok(AuthMode::ApiKey),
            "hmac" => Ok(AuthMode::Hmac),
            other => Err(RegistryError::BadMode(other.to_owned())),
        }
    }
}

/// The two kinds of credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    ApiKey,
    SigningKey,
}

impl KeyKind {
    fn as_str(self) -> &'static str {
        match self {
            KeyKind::ApiKey => "api-key",
            KeyKind::SigningKey => "signing-key",
        }
    }
    fn prefix(self) -> &'static str {
        match self {
            KeyKind::ApiKey => "lsk_",
            KeyKind::SigningKey => "lss_",
        }
    }
    /// Random bytes in a key; signing keys exceed HMAC-SHA256's 64-byte block.
    fn random_bytes(self) -> usize {
        match self {
            KeyKind::ApiKey => 24,
            KeyKind::SigningKey => 48,
        }
    }
}

/// A registry failure, with what to do next where there is something to do.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("no organization {0}; create it with `leadstream org create --id {0} --name NAME`")]
    NoSuchOrg(OrgId),
    #[error("organization {0} already exists")]
    OrgExists(OrgId),
    #[error("no {kind} {id} for organization {org}; see `leadstream {kind} list --org {org}`")]
    NoSuchKey {
        kind: &'static str,
        id: i64,
        org: OrgId,
    },
    #[error("unknown auth mode {0:?}: expected api-key or hmac")]
    BadMode(String),
    #[error("registry database: {0}")]
    Db(#[from] rusqlite::Error),
}

/// An organization as listed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Org {
    pub id: OrgId,
    pub name: String,
    pub auth_mode: &'static str,
    pub created_at_ms: i64,
}

/// A credential as listed: never the key itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyInfo {
    pub id: i64,
    pub org: OrgId,
    pub prefix: String,
    pub created_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
}

/// A newly issued key: `secret` is shown once and never stored.
#[derive(Debug, Clone)]
pub struct IssuedKey {
    pub id: i64,
    pub secret: String,
}

/// Organizations and credentials.
pub struct Registry {
    conn: Mutex<Connection>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn sha256(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

/// Gives every organization an account UUID: adds the column to registries made
/// before it existed and fills it for their orgs, once.
fn migrate_account_ids(conn: &Connection) -> Result<(), RegistryError> {
    let has_column = conn
        .prepare("SELECT 1 FROM pragma_table_info('organizations') WHERE name = 'account_id'")?
        .exists([])?;
    if !has_column {
        conn.execute_batch("ALTER TABLE organizations ADD COLUMN account_id TEXT")?;
    }
    let missing: Vec<OrgId> = conn
        .prepare("SELECT id FROM organizations WHERE account_id IS NULL")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for id in missing {
        conn.execute(
            "UPDATE organizations SET account_id = ?1 WHERE id = ?2 AND account_id IS NULL",
            params![uuid::Uuid::new_v4().to_string(), id],
        )?;
    }
    Ok(())
}

impl Registry {
    /// Opens (creating if needed) `leadstream.db` in `dir`.
    ///
    /// # Errors
    /// [`RegistryError::Db`].
    pub fn open(dir: &Path) -> Result<Self, RegistryError> {
        let conn = open_sqlite(&dir.join("leadstream.db"))?;
        conn.execute_batch(SCHEMA)?;
        migrate_account_ids(&conn)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    /// Creates an organization (auth mode api-key).
    ///
    /// # Errors
    /// [`RegistryError::OrgExists`].
    pub fn create_org(&self, id: OrgId, name: &str) -> Result<Org, RegistryError> {
        let conn = self.conn.lock();
        let at = now_ms();
        match conn.execute(
            "INSERT INTO organizations (id, name, created_at, account_id) VALUES (?1, ?2, ?3, ?4)",
            params![id, name, at, uuid::Uuid::new_v4().to_string()],
        ) {
            Ok(_) => Ok(Org {
                id,
                name: name.to_owned(),
                auth_mode: "api-key",
                created_at_ms: at,
            }),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(RegistryError::OrgExists(id))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Every organization, by id.
    ///
    /// # Errors
    /// [`RegistryError::Db`].
    pub fn orgs(&self) -> Result<Vec<Org>, RegistryError> {
        let conn = self.conn.lock();
        let mut stmt =
            conn.prepare("SELECT id, name, auth_mode, created_at FROM organizations ORDER BY id")?;
        let rows = stmt.query_map([], |r| {
            let mode: String = r.get(2)?;
            Ok(Org {
                id: r.get(0)?,
                name: r.get(1)?,
                auth_mode: if mode == "hmac" { "hmac" } else { "api-key" },
                created_at_ms: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The org's auth mode, or `None` when there is no such org.
    ///
    /// # Errors
    /// [`RegistryError::Db`].
    pub fn auth_mode(&self, org: OrgId) -> Result<Option<AuthMode>, RegistryError> {
        let conn = self.conn.lock();
        let mode: Option<String> = conn
            .query_row(
                "SELECT auth_mode FROM organizations WHERE id = ?1",
                [org],
                |r| r.get(0),
            )
            .optional()?;
        Ok(mode.map(|m| {
            if m == "hmac" {
                AuthMode::Hmac
            } else {
                AuthMode::ApiKey
            }
        }))
    }

    /// Sets how the org authenticates inbound events.
    ///
    /// # Errors
    /// [`RegistryError::NoSuchOrg`].
    pub fn set_auth_mode(&self, org: OrgId, mode: AuthMode) -> Result<(), RegistryError> {
        let n = self.conn.lock().execute(
            "UPDATE organizations SET auth_mode = ?1 WHERE id = ?2",
            params![mode.as_str(), org],
        )?;
        if n == 0 {
            return Err(RegistryError::NoSuchOrg(org));
        }
        Ok(())
    }

    /// Issues a new key of `kind` for `org`. Earlier keys stay active.
    ///
    /// # Errors
    /// [`RegistryError::NoSuchOrg`].
    pub fn issue(&self, org: OrgId, kind: KeyKind) -> Result<IssuedKey, RegistryError> {
        let mut raw = vec![0u8; kind.random_bytes()];
        rand::rng().fill_bytes(&mut raw);
        let secret = format!("{}{}", kind.prefix(), hex::encode(&raw));
        let conn = self.conn.lock();
        let exists: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM organizations WHERE id = ?1)",
            [org],
            |r| r.get(0),
        )?;
        if !exists {
            return Err(RegistryError::NoSuchOrg(org));
        }
        conn.execute(
            "INSERT INTO credentials (org_id, kind, hash, prefix, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![org, kind.as_str(), &sha256(secret.as_bytes())[..], &secret[..12], now_ms()],
        )?;
        Ok(IssuedKey {
            id: conn.last_insert_rowid(),
            secret,
        })
    }

    /// Lists an org's keys of `kind`, newest first, revoked ones included.
    ///
    /// # Errors
    /// [`RegistryError::NoSuchOrg`].
    pub fn keys(&self, org: OrgId, kind: KeyKind) -> Result<Vec<KeyInfo>, RegistryError> {
        if self.auth_mode(org)?.is_none() {
            return Err(RegistryError::NoSuchOrg(org));
        }
        let conn = self.conn.lock();
        let mut stmt = conn.prepare(
            "SELECT id, org_id, prefix, created_at, revoked_at FROM credentials WHERE org_id = ?1 AND kind = ?2 ORDER BY id DESC",
        )?;
        let rows = stmt.query_map(params![org, kind.as_str()], |r| {
            Ok(KeyInfo {
                id: r.get(0)?,
                org: r.get(1)?,
                prefix: r.get(2)?,
                created_at_ms: r.get(3)?,
                revoked_at_ms: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Revokes a key; it stops working on the next request.
    ///
    /// # Errors
    /// [`RegistryError::NoSuchKey`] when `id` is not an active key of `kind` for `org`.
    pub fn revoke(&self, org: OrgId, kind: KeyKind, id: i64) -> Result<(), RegistryError> {
        let n = self.conn.lock().execute(
            "UPDATE credentials SET revoked_at = ?1 WHERE id = ?2 AND org_id = ?3 AND kind = ?4 AND revoked_at IS NULL",
            params![now_ms(), id, org, kind.as_str()],
        )?;
        if n == 0 {
            return Err(RegistryError::NoSuchKey {
                kind: kind.as_str(),
                id,
                org,
            });
        }
        Ok(())
    }

    /// The org's account UUID (`user_id` in webhook payloads): made with the org and
    /// never changed. `None` when there is no such org.
    ///
    /// # Errors
    /// [`RegistryError::Db`].
    pub fn account_id(&self, org: OrgId) -> Result<Option<String>, RegistryError> {
        let conn = self.conn.lock();
        Ok(conn
            .query_row(
                "SELECT account_id FROM organizations WHERE id = ?1",
                [org],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// The org an active API key belongs to, or `None` for an unknown or revoked key.
    ///
    /// # Errors
    /// [`RegistryError::Db`].
    pub fn org_for_api_key(&self, key: &str) -> Result<Option<OrgId>, RegistryError> {
        let h = sha256(key.as_bytes());
        let conn = self.conn.lock();
        let row: Option<(OrgId, Vec<u8>)> = conn
            .query_row(
                "SELECT org_id, hash FROM credentials WHERE hash = ?1 AND kind = 'api-key' AND revoked_at IS NULL",
                [&h[..]],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        // The lookup is by hash, so its timing says nothing about the key; the
        // comparison is repeated in constant time all the same.
        Ok(row
            .filter(|(_, stored)| bool::from(stored.ct_eq(&h[..])))
            .map(|(org, _)| org))
    }

    /// Whether `signature` (raw 32 bytes) is the HMAC-SHA256 of `body` under any active
    /// signing key of `org`. Every active key is tried, in constant time each.
    ///
    /// # Errors
    /// [`RegistryError::Db`].
    pub fn verify_signature(
        &self,
        org: OrgId,
        body: &[u8],
        signature: &[u8],
    ) -> Result<bool, RegistryError> {
        let keys: Vec<Vec<u8>> = {
            let conn = self.conn.lock();
            let mut stmt = conn.prepare_cached(
                "SELECT hash FROM credentials WHERE org_id = ?1 AND kind = 'signing-key' AND revoked_at IS NULL",
            )?;
            let rows = stmt.query_map([org], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        let mut ok = false;
        if keys.is_empty() {
            // No key (unknown org, no active key): spend an HMAC all the same, so the
            // answer's timing does not tell which.
            let mut mac =
                <Hmac<Sha256>>::new_from_slice(&[0u8; 32]).expect("HMAC takes any key length");
            mac.update(body);
            let _ = mac.verify_slice(signature);
        }
        for k in keys {
            let mut mac = <Hmac<Sha256>>::new_from_slice(&k).expect("HMAC takes any key length");
            mac.update(body);
            ok |= mac.verify_slice(signature).is_ok();
        }
        Ok(ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_signing_key_verifies_like_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path()).unwrap();
        reg.create_org(42, "acme").unwrap();
        let k1 = reg.issue(42, KeyKind::SigningKey).unwrap();
        let k2 = reg.issue(42, KeyKind::SigningKey).unwrap();
        assert!(
            k1.secret.len() > 64,
            "secrets must exceed the HMAC block for hashed storage to verify"
        );
        let body = br#"{"organizationId":42}"#;
        for k in [&k1, &k2] {
            let mut mac = <Hmac<Sha256>>::new_from_slice(k.secret.as_bytes()).unwrap();
            mac.update(body);
            let sig = mac.finalize().into_bytes();
            assert!(reg.verify_signature(42, body, &sig).unwrap());
            assert!(!reg.verify_signature(42, b"tampered", &sig).unwrap());
            assert!(!reg.verify_signature(43, body, &sig).unwrap());
        }
        reg.revoke(42, KeyKind::SigningKey, k1.id).unwrap();
        let mut mac = <Hmac<Sha256>>::new_from_slice(k1.secret.as_bytes()).unwrap();
        mac.update(body);
        assert!(!reg
            .verify_signature(42, body, &mac.finalize().into_bytes())
            .unwrap());
    }

    #[test]
    fn api_keys_resolve_to_their_org_until_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::open(dir.path()).unwrap();
        reg.create_org(42, "acme").unwrap();
        assert!(matches!(
            reg.create_org(42, "again"),
            Err(RegistryError::OrgExists(42))
        ));
        assert!(matches!(
            reg.issue(7, KeyKind::ApiKey),
            Err(RegistryError::NoSuchOrg(7))
        ));
        let k = reg.issue(42, KeyKind::ApiKey).unwrap();
        assert_eq!(reg.org_for_api_key(&k.secret).unwrap(), Some(42));
        assert_eq!(reg.org_for_api_key("lsk_nope").unwrap(), None);
        let listed = reg.keys(42, KeyKind::ApiKey).unwrap();
        assert_eq!(listed.len(), 1);
        assert!(k.secret.starts_with(&listed[0].prefix));
        reg.revoke(42, KeyKind::ApiKey, k.id).unwrap();
        assert_eq!(reg.org_for_api_key(&k.secret).unwrap(), None);
        assert!(matches!(
            reg.revoke(42, KeyKind::ApiKey, k.id),
            Err(RegistryError::NoSuchKey { .. })
        ));
    }
}
