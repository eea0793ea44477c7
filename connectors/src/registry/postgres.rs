//! [`RegistryRepo`] on the shared Postgres database. Every write that can change an
//! answer a process caches ([`super::cache`]) notifies
//! [`notify::CREDENTIALS`](crate::db::notify::CREDENTIALS) in its own transaction.

use super::repo::{auth_mode, scope, NewKey, RegistryRepo, StoredApiKey};
use super::{AuthMode, KeyInfo, KeyKind, Org};
use crate::db::{notify, Pg, RepoError};
use leadstream_pipeline::OrgId;

/// Runs `statement` with `params` and notifies the change of `org`'s credentials in
/// the same transaction, when it changed a row; the rows it changed.
async fn write_notifying(
    pg: &Pg,
    org: OrgId,
    statement: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<u64, RepoError> {
    let mut conn = pg.conn().await?;
    let tx = conn.transaction().await?;
    let n = tx.execute(statement, params).await?;
    if n > 0 {
        notify::notify(&tx, notify::CREDENTIALS, &org.to_string()).await?;
    }
    tx.commit().await?;
    Ok(n)
}

/// The registry in the shared database.
pub struct PgRegistry {
    pg: Pg,
}

impl PgRegistry {
    /// The registry of `pg` (migrated by [`Pg::open`]).
    pub fn new(pg: Pg) -> Self {
        Self { pg }
    }
}

#[async_trait::async_trait]
impl RegistryRepo for PgRegistry {
    async fn insert_org(&self, org: &Org, account_id: &str) -> Result<bool, RepoError> {
        let n = self
            .pg
            .conn()
            .await?
            .execute(
                "INSERT INTO organizations (id, name, auth_mode, created_at, account_id) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
                &[&org.id, &org.name, &org.auth_mode.as_str(), &org.created_at_ms, &account_id],
            )
            .await?;
        Ok(n > 0)
    }

    async fn orgs(&self) -> Result<Vec<Org>, RepoError> {
        let rows = self
            .pg
            .conn()
            .await?
            .query(
                "SELECT id, name, auth_mode, created_at FROM organizations ORDER BY id",
                &[],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Org {
                    id: r.try_get(0)?,
                    name: r.try_get(1)?,
                    auth_mode: auth_mode(r.try_get(2)?)?,
                    created_at_ms: r.try_get(3)?,
                })
            })
            .collect()
    }

    async fn org(&self, id: OrgId) -> Result<Option<(AuthMode, String)>, RepoError> {
        let conn = self.pg.conn().await?;
        let stmt = conn
            .prepare_cached("SELECT auth_mode, account_id FROM organizations WHERE id = $1")
            .await?;
        conn.query_opt(&stmt, &[&id])
            .await?
            .map(|r| Ok((auth_mode(r.try_get(0)?)?, r.try_get(1)?)))
            .transpose()
    }

    async fn set_auth_mode(&self, id: OrgId, mode: AuthMode) -> Result<bool, RepoError> {
        let n = write_notifying(
            &self.pg,
            id,
            "UPDATE organizations SET auth_mode = $1 WHERE id = $2",
            &[&mode.as_str(), &id],
        )
        .await?;
        Ok(n > 0)
    }

    async fn insert_key(&self, key: NewKey<'_>) -> Result<Option<i64>, RepoError> {
        let mut conn = self.pg.conn().await?;
        let tx = conn.transaction().await?;
        let row = tx
            .query_opt(
                "INSERT INTO credentials (org_id, kind, hash, prefix, created_at, scope)
                 SELECT id, $2, $3, $4, $5, $6 FROM organizations WHERE id = $1
                 RETURNING id",
                &[
                    &key.org,
                    &key.kind.as_str(),
                    &key.hash,
                    &key.prefix,
                    &key.at_ms,
                    &key.scope.as_str(),
                ],
            )
            .await?;
        if row.is_some() {
            // A new signing key changes the set a process may hold for the org.
            notify::notify(&tx, notify::CREDENTIALS, &key.org.to_string()).await?;
        }
        tx.commit().await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    async fn keys(&self, org: OrgId, kind: KeyKind) -> Result<Vec<KeyInfo>, RepoError> {
        let rows = self
            .pg
            .conn()
            .await?
            .query(
                "SELECT id, org_id, prefix, created_at, revoked_at, scope FROM credentials WHERE org_id = $1 AND kind = $2 ORDER BY id DESC",
                &[&org, &kind.as_str()],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(KeyInfo {
                    id: r.try_get(0)?,
                    org: r.try_get(1)?,
                    prefix: r.try_get(2)?,
                    created_at_ms: r.try_get(3)?,
                    revoked_at_ms: r.try_get(4)?,
                    scope: scope(r.try_get(5)?)?,
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
        let n = write_notifying(
            &self.pg,
            org,
            "UPDATE credentials SET revoked_at = $1 WHERE id = $2 AND org_id = $3 AND kind = $4 AND revoked_at IS NULL",
            &[&at_ms, &id, &org, &kind.as_str()],
        )
        .await?;
        Ok(n > 0)
    }

    async fn api_key(&self, hash: &[u8]) -> Result<Option<StoredApiKey>, RepoError> {
        let conn = self.pg.conn().await?;
        let stmt = conn
            .prepare_cached("SELECT id, org_id, hash, prefix, scope FROM credentials WHERE hash = $1 AND kind = 'api-key' AND revoked_at IS NULL")
            .await?;
        conn.query_opt(&stmt, &[&hash])
            .await?
            .map(|r| {
                Ok(StoredApiKey {
                    id: r.try_get(0)?,
                    org: r.try_get(1)?,
                    hash: r.try_get(2)?,
                    prefix: r.try_get(3)?,
                    scope: scope(r.try_get(4)?)?,
                })
            })
            .transpose()
    }

    async fn signing_keys(&self, org: OrgId) -> Result<Vec<Vec<u8>>, RepoError> {
        let conn = self.pg.conn().await?;
        let stmt = conn
            .prepare_cached("SELECT hash FROM credentials WHERE org_id = $1 AND kind = 'signing-key' AND revoked_at IS NULL")
            .await?;
        conn.query(&stmt, &[&org])
            .await?
            .iter()
            .map(|r| Ok(r.try_get(0)?))
            .collect()
    }
}
