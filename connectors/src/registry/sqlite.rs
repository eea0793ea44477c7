//! [`RegistryRepo`] on `leadstream.db` in the data dir. Calls are short and run on the
//! caller's thread (one connection behind a mutex), as the embedded store always did.

use super::repo::{auth_mode, scope, NewKey, RegistryRepo, StoredApiKey};
use super::{AuthMode, KeyInfo, KeyKind, Org};
use crate::db::RepoError;
use crate::store::open_sqlite;
use leadstream_pipeline::OrgId;
use parking_lot::Mutex;
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;

/// The registry in `leadstream.db`.
pub struct SqliteRegistry {
    conn: Mutex<Connection>,
}

impl SqliteRegistry {
    /// Opens (creating, migrating) `leadstream.db` in `dir`.
    ///
    /// # Errors
    /// The file cannot be opened or migrated.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join("leadstream.db");
        let conn = open_sqlite(&path)?;
        crate::db::migrate::apply_sqlite(
            &conn,
            &path.display().to_string(),
            crate::db::migrations::SQLITE_REGISTRY,
        )?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }
}

#[async_trait::async_trait]
impl RegistryRepo for SqliteRegistry {
    async fn insert_org(&self, org: &Org, account_id: &str) -> Result<bool, RepoError> {
        let r = self.conn.lock().execute(
            "INSERT INTO organizations (id, name, auth_mode, created_at, account_id) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![org.id, org.name, org.auth_mode.as_str(), org.created_at_ms, account_id],
        );
        match r.map_err(RepoError::from) {
            Ok(_) => Ok(true),
            Err(e) if e.is_unique_violation() => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn orgs(&self) -> Result<Vec<Org>, RepoError> {
        let conn = self.conn.lock();
        let mut stmt =
            conn.prepare("SELECT id, name, auth_mode, created_at FROM organizations ORDER BY id")?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get::<_, String>(2)?, r.get(3)?))
        })?;
        rows.map(|row| {
            let (id, name, mode, created_at_ms) = row?;
            Ok(Org {
                id,
                name,
                auth_mode: auth_mode(&mode)?,
                created_at_ms,
            })
        })
        .collect()
    }

    async fn org(&self, id: OrgId) -> Result<Option<(AuthMode, String)>, RepoError> {
        let row: Option<(String, String)> = self
            .conn
            .lock()
            .prepare_cached("SELECT auth_mode, account_id FROM organizations WHERE id = ?1")?
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        row.map(|(mode, account)| Ok((auth_mode(&mode)?, account)))
            .transpose()
    }

    async fn set_auth_mode(&self, id: OrgId, mode: AuthMode) -> Result<bool, RepoError> {
        let n = self.conn.lock().execute(
            "UPDATE organizations SET auth_mode = ?1 WHERE id = ?2",
            params![mode.as_str(), id],
        )?;
        Ok(n > 0)
    }

    async fn insert_key(&self, key: NewKey<'_>) -> Result<Option<i64>, RepoError> {
        let conn = self.conn.lock();
        let n = conn.execute(
            "INSERT INTO credentials (org_id, kind, hash, prefix, created_at, scope)
             SELECT id, ?2, ?3, ?4, ?5, ?6 FROM organizations WHERE id = ?1",
            params![
                key.org,
                key.kind.as_str(),
                key.hash,
                key.prefix,
                key.at_ms,
                key.scope.as_str()
            ],
        )?;
        Ok((n > 0).then(|| conn.last_insert_rowid()))
    }

    async fn keys(&self, org: OrgId, kind: KeyKind) -> Result<Vec<KeyInfo>, RepoError> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare(
            "SELECT id, org_id, prefix, created_at, revoked_at, scope FROM credentials WHERE org_id = ?1 AND kind = ?2 ORDER BY id DESC",
        )?;
        let rows = stmt.query_map(params![org, kind.as_str()], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get::<_, String>(5)?,
            ))
        })?;
        rows.map(|row| {
            let (id, org, prefix, created_at_ms, revoked_at_ms, stored) = row?;
            Ok(KeyInfo {
                id,
                org,
                prefix,
                created_at_ms,
                revoked_at_ms,
                scope: scope(&stored)?,
            })
        })
        .collect()
    }

    async fn revoke(
        &self,
        org: OrgId,
        kind: KeyKind,
        id: i64,
        at_ms: i64,
    ) -> Result<bool, RepoError> {
        let n = self.conn.lock().execute(
            "UPDATE credentials SET revoked_at = ?1 WHERE id = ?2 AND org_id = ?3 AND kind = ?4 AND revoked_at IS NULL",
            params![at_ms, id, org, kind.as_str()],
        )?;
        Ok(n > 0)
    }

    async fn api_key(&self, hash: &[u8]) -> Result<Option<StoredApiKey>, RepoError> {
        let row: Option<(i64, OrgId, Vec<u8>, String, String)> = self
            .conn
            .lock()
            .prepare_cached("SELECT id, org_id, hash, prefix, scope FROM credentials WHERE hash = ?1 AND kind = 'api-key' AND revoked_at IS NULL")?
            .query_row([hash], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
            .optional()?;
        row.map(|(id, org, hash, prefix, stored)| {
            Ok(StoredApiKey {
                id,
                org,
                hash,
                prefix,
                scope: scope(&stored)?,
            })
        })
        .transpose()
    }

    async fn signing_keys(&self, org: OrgId) -> Result<Vec<Vec<u8>>, RepoError> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT hash FROM credentials WHERE org_id = ?1 AND kind = 'signing-key' AND revoked_at IS NULL",
        )?;
        let rows = stmt.query_map([org], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
