//! The registry's repository: the statements behind [`super::Registry`], one trait
//! with a SQLite ([`super::sqlite`]) and a Postgres ([`super::postgres`])
//! implementation, tested by one suite (`super::tests`).

use super::{AuthMode, KeyInfo, KeyKind, Org, Scope};
use crate::db::RepoError;
use leadstream_pipeline::OrgId;

/// A credential to store: only its hash and its first characters.
pub struct NewKey<'a> {
    pub org: OrgId,
    pub kind: KeyKind,
    pub hash: &'a [u8],
    pub prefix: &'a str,
    /// What an API key may do; signing keys are stored as [`Scope::Admin`].
    pub scope: Scope,
    pub at_ms: i64,
}

/// An active API key as stored: found by its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredApiKey {
    pub id: i64,
    pub org: OrgId,
    pub hash: Vec<u8>,
    pub prefix: String,
    pub scope: Scope,
}

/// Organizations and credentials, as stored.
#[async_trait::async_trait]
pub trait RegistryRepo: Send + Sync {
    /// Inserts an organization; `Ok(false)` when its id is taken.
    async fn insert_org(&self, org: &Org, account_id: &str) -> Result<bool, RepoError>;
    /// Every organization, by id.
    async fn orgs(&self) -> Result<Vec<Org>, RepoError>;
    /// One organization's auth mode and account id.
    async fn org(&self, id: OrgId) -> Result<Option<(AuthMode, String)>, RepoError>;
    /// `Ok(false)` when there is no such org.
    async fn set_auth_mode(&self, id: OrgId, mode: AuthMode) -> Result<bool, RepoError>;
    /// Stores a key of an existing org and answers its id; `None` when there is no
    /// such org.
    async fn insert_key(&self, key: NewKey<'_>) -> Result<Option<i64>, RepoError>;
    /// An org's keys of `kind`, newest first, revoked ones included.
    async fn keys(&self, org: OrgId, kind: KeyKind) -> Result<Vec<KeyInfo>, RepoError>;
    /// Marks an active key revoked; `Ok(false)` when it is not an active key of
    /// `kind` for `org`.
    async fn revoke(
        &self,
        org: OrgId,
        kind: KeyKind,
        id: i64,
        at_ms: i64,
    ) -> Result<bool, RepoError>;
    /// The active API key with this hash.
    async fn api_key(&self, hash: &[u8]) -> Result<Option<StoredApiKey>, RepoError>;
    /// The hashes of an org's active signing keys.
    async fn signing_keys(&self, org: OrgId) -> Result<Vec<Vec<u8>>, RepoError>;
}

/// Reads a stored scope; an unknown one is an error, never a default.
pub(super) fn scope(stored: &str) -> Result<Scope, RepoError> {
    Scope::parse(stored).map_err(|_| RepoError::Unknown {
        column: "credentials.scope",
        value: stored.to_owned(),
    })
}

/// Reads a stored auth mode; an unknown one is an error, never a default.
pub(super) fn auth_mode(stored: &str) -> Result<AuthMode, RepoError> {
    AuthMode::parse(stored).map_err(|_| RepoError::Unknown {
        column: "organizations.auth_mode",
        value: stored.to_owned(),
    })
}
