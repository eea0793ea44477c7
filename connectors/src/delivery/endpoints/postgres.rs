//! [`EndpointRepo`] on the shared database. Every write notifies
//! [`notify::ENDPOINTS`](crate::db::notify::ENDPOINTS) with the endpoint's id in its
//! own transaction, so every process re-reads it once (and only if) it commits.

use super::repo::{
    event_types_text, failing_reason, secret, stored_secret, EndpointRepo, NewEndpoint,
    StoredEndpoint, COLUMNS,
};
use super::{EndpointEffect, EndpointPatch};
use crate::db::{notify, Pg, RepoError};
use crate::delivery::model::Endpoint;
use crate::delivery::store::DbError;
use deadpool_postgres::GenericClient;
use leadstream_pipeline::signature::WebhookSecret;
use leadstream_pipeline::OrgId;
use std::time::Duration;

/// The endpoints of the shared database.
pub struct PgEndpoints {
    pg: Pg,
}

impl PgEndpoints {
    pub fn new(pg: Pg) -> Self {
        Self { pg }
    }
}

fn read_row(r: &tokio_postgres::Row) -> Result<StoredEndpoint, RepoError> {
    Ok(StoredEndpoint {
        id: r.try_get(0)?,
        org: r.try_get(1)?,
        kind: r.try_get(2)?,
        url: r.try_get(3)?,
        description: r.try_get(4)?,
        event_types: r.try_get(5)?,
        enabled: r.try_get(6)?,
        disabled_reason: r.try_get(7)?,
        timeout_ms: r.try_get(8)?,
        max_in_flight: r.try_get(9)?,
        rate_limit: r.try_get(10)?,
        failing_since_ms: r.try_get(11)?,
        created_at_ms: r.try_get(12)?,
        updated_at_ms: r.try_get(13)?,
    })
}

/// Runs `sql` through the connection's statement cache: a statement prepared once per
/// connection, not once per call (a round trip less on the workers' hot paths: an
/// attempt's effect, a reload after a notification).
async fn exec(
    c: &impl GenericClient,
    sql: &str,
    args: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<u64, DbError> {
    let statement = c.prepare_cached(sql).await.map_err(RepoError::from)?;
    Ok(c.execute(&statement, args).await.map_err(RepoError::from)?)
}

/// [`exec`] for a query's rows.
async fn rows(
    c: &impl GenericClient,
    sql: &str,
    args: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Vec<tokio_postgres::Row>, DbError> {
    let statement = c.prepare_cached(sql).await.map_err(RepoError::from)?;
    Ok(c.query(&statement, args).await.map_err(RepoError::from)?)
}

/// Endpoints matching `filter` (with `args`), with their secrets: two queries.
async fn load_where(
    c: &impl GenericClient,
    filter: &str,
    args: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Vec<Endpoint>, DbError> {
    let found = rows(
        c,
        &format!("SELECT {COLUMNS} FROM endpoints {filter}"),
        args,
    )
    .await?;
    let stored: Vec<StoredEndpoint> = found.iter().map(read_row).collect::<Result<_, _>>()?;
    let ids: Vec<i64> = stored.iter().map(|e| e.id).collect();
    let secrets = rows(
        c,
        "SELECT endpoint_id, secret, created_at, expires_at FROM endpoint_secrets \
         WHERE endpoint_id = ANY($1) ORDER BY created_at DESC, id DESC",
        &[&ids],
    )
    .await?;
    let mut by_endpoint: std::collections::HashMap<i64, Vec<_>> = Default::default();
    for r in &secrets {
        let id: i64 = r.try_get(0).map_err(RepoError::from)?;
        let text: String = r.try_get(1).map_err(RepoError::from)?;
        let s = secret(
            &text,
            r.try_get(2).map_err(RepoError::from)?,
            r.try_get(3).map_err(RepoError::from)?,
        )?;
        by_endpoint.entry(id).or_default().push(s);
    }
    stored
        .into_iter()
        .map(|e| {
            let s = by_endpoint.remove(&e.id).unwrap_or_default();
            e.into_endpoint(s)
        })
        .collect()
}

async fn load_one(c: &impl GenericClient, id: i64) -> Result<Option<Endpoint>, DbError> {
    Ok(load_where(c, "WHERE id = $1", &[&id]).await?.pop())
}

async fn notify_change(c: &impl GenericClient, id: i64) -> Result<(), DbError> {
    notify::notify(c, notify::ENDPOINTS, &id.to_string())
        .await
        .map_err(RepoError::from)?;
    Ok(())
}

/// Ends a write of endpoint `id`: notifies the change, reads the endpoint as the
/// write left it, commits.
async fn commit_changed(
    tx: deadpool_postgres::Transaction<'_>,
    id: i64,
) -> Result<Option<Endpoint>, DbError> {
    notify_change(&tx, id).await?;
    let e = load_one(&tx, id).await?;
    tx.commit().await.map_err(RepoError::from)?;
    Ok(e)
}

/// Locks `org`'s endpoint `id` for the rest of the transaction; `false` when it is not
/// `org`'s (or does not exist).
async fn lock_owned(c: &impl GenericClient, org: OrgId, id: i64) -> Result<bool, DbError> {
    Ok(c.query_opt(
        "SELECT 1 FROM endpoints WHERE id = $1 AND org_id = $2 FOR UPDATE",
        &[&id, &org],
    )
    .await
    .map_err(RepoError::from)?
    .is_some())
}

#[async_trait::async_trait]
impl EndpointRepo for PgEndpoints {
    async fn all(&self) -> Result<Vec<Endpoint>, DbError> {
        load_where(&self.pg.conn().await?, "", &[]).await
    }

    async fn one(&self, id: i64) -> Result<Option<Endpoint>, DbError> {
        load_one(&self.pg.conn().await?, id).await
    }

    async fn of_org(&self, org: OrgId) -> Result<Vec<Endpoint>, DbError> {
        load_where(
            &self.pg.conn().await?,
            "WHERE org_id = $1 ORDER BY id DESC",
            &[&org],
        )
        .await
    }

    async fn insert(&self, new: NewEndpoint) -> Result<Endpoint, DbError> {
        let mut conn = self.pg.conn().await?;
        let tx = conn.transaction().await.map_err(RepoError::from)?;
        let id: i64 = tx
            .query_one(
                "INSERT INTO endpoints (org_id, kind, url, event_types, description, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING id",
                &[
                    &new.org,
                    &new.kind.as_str(),
                    &new.url,
                    &event_types_text(new.event_types.as_ref()),
                    &new.description,
                    &new.at_ms,
                ],
            )
            .await
            .map_err(RepoError::from)?
            .get(0);
        tx.execute(
            "INSERT INTO endpoint_secrets (endpoint_id, secret, created_at) VALUES ($1, $2, $3)",
            &[&id, &stored_secret(&new.secret), &new.at_ms],
        )
        .await
        .map_err(RepoError::from)?;
        commit_changed(tx, id).await?.ok_or(DbError::Stopped)
    }

    async fn patch(
        &self,
        org: OrgId,
        id: i64,
        patch: EndpointPatch,
        now_ms: i64,
    ) -> Result<Option<Endpoint>, DbError> {
        let mut conn = self.pg.conn().await?;
        let tx = conn.transaction().await.map_err(RepoError::from)?;
        if !lock_owned(&tx, org, id).await? {
            return Ok(None);
        }
        let timeout_ms = patch.timeout.map(|t| t.map(|t| t.as_millis() as i64));
        let max_in_flight = patch.max_in_flight.map(|m| m.map(i64::from));
        let types = patch
            .event_types
            .as_ref()
            .map(|t| event_types_text(t.as_ref()));
        // One statement: each `$n_set` says whether its column changes (a `None`
        // inside clears it). Re-enabling clears the engine's reason and failing run.
        tx.execute(
            "UPDATE endpoints SET \
               enabled = CASE WHEN $2 THEN $3 ELSE enabled END, \
               disabled_reason = CASE WHEN $2 AND $3 THEN NULL ELSE disabled_reason END, \
               failing_since = CASE WHEN $2 AND $3 THEN NULL ELSE failing_since END, \
               event_types = CASE WHEN $4 THEN $5 ELSE event_types END, \
               description = CASE WHEN $6 THEN $7 ELSE description END, \
               timeout_ms = CASE WHEN $8 THEN $9 ELSE timeout_ms END, \
               max_in_flight = CASE WHEN $10 THEN $11 ELSE max_in_flight END, \
               rate_limit = CASE WHEN $12 THEN $13 ELSE rate_limit END, \
               url = CASE WHEN $14 THEN $15 ELSE url END, \
               updated_at = $16 \
             WHERE id = $1",
            &[
                &id,
                &patch.enabled.is_some(),
                &patch.enabled.unwrap_or(false),
                &types.is_some(),
                &types.flatten(),
                &patch.description.is_some(),
                &patch.description.clone().flatten(),
                &timeout_ms.is_some(),
                &timeout_ms.flatten(),
                &max_in_flight.is_some(),
                &max_in_flight.flatten(),
                &patch.rate_limit.is_some(),
                &patch.rate_limit.flatten(),
                &patch.url.is_some(),
                &patch.url.clone().unwrap_or_default(),
                &now_ms,
            ],
        )
        .await
        .map_err(RepoError::from)?;
        commit_changed(tx, id).await
    }

    async fn delete(&self, org: OrgId, id: i64) -> Result<bool, DbError> {
        let mut conn = self.pg.conn().await?;
        let tx = conn.transaction().await.map_err(RepoError::from)?;
        // Secrets go with it (ON DELETE CASCADE).
        let n = tx
            .execute(
                "DELETE FROM endpoints WHERE id = $1 AND org_id = $2",
                &[&id, &org],
            )
            .await
            .map_err(RepoError::from)?;
        if n > 0 {
            notify_change(&tx, id).await?;
        }
        tx.commit().await.map_err(RepoError::from)?;
        Ok(n > 0)
    }

    async fn rotate_secret(
        &self,
        org: OrgId,
        id: i64,
        secret: WebhookSecret,
        until_ms: i64,
        now_ms: i64,
    ) -> Result<Option<Endpoint>, DbError> {
        let mut conn = self.pg.conn().await?;
        let tx = conn.transaction().await.map_err(RepoError::from)?;
        if !lock_owned(&tx, org, id).await? {
            return Ok(None);
        }
        tx.execute(
            "UPDATE endpoint_secrets SET expires_at = LEAST(COALESCE(expires_at, $2), $2) WHERE endpoint_id = $1",
            &[&id, &until_ms],
        )
        .await
        .map_err(RepoError::from)?;
        tx.execute(
            "INSERT INTO endpoint_secrets (endpoint_id, secret, created_at) VALUES ($1, $2, $3)",
            &[&id, &stored_secret(&secret), &now_ms],
        )
        .await
        .map_err(RepoError::from)?;
        tx.execute(
            "UPDATE endpoints SET updated_at = $2 WHERE id = $1",
            &[&id, &now_ms],
        )
        .await
        .map_err(RepoError::from)?;
        commit_changed(tx, id).await
    }

    async fn apply_effect(
        &self,
        id: i64,
        effect: EndpointEffect,
        disable_after: Duration,
    ) -> Result<bool, DbError> {
        let mut conn = self.pg.conn().await?;
        let tx = conn.transaction().await.map_err(RepoError::from)?;
        let changed = match effect {
            EndpointEffect::Succeeded => exec(&tx, "UPDATE endpoints SET failing_since = NULL WHERE id = $1 AND failing_since IS NOT NULL", &[&id]).await?,
            EndpointEffect::Failed { at_ms } => {
                let n = exec(&tx, "UPDATE endpoints SET failing_since = $2 WHERE id = $1 AND failing_since IS NULL", &[&id, &at_ms]).await?;
                let cutoff = at_ms - disable_after.as_millis() as i64;
                n + exec(&tx, "UPDATE endpoints SET enabled = FALSE, disabled_reason = $3, updated_at = $4 \
                         WHERE id = $1 AND enabled AND failing_since <= $2", &[&id, &cutoff, &failing_reason(disable_after), &at_ms]).await?
            }
            EndpointEffect::Disable { reason, at_ms } => exec(&tx, "UPDATE endpoints SET enabled = FALSE, disabled_reason = $2, updated_at = $3 WHERE id = $1 AND enabled", &[&id, &reason, &at_ms]).await?,
        };
        if changed > 0 {
            notify_change(&tx, id).await?;
        }
        tx.commit().await.map_err(RepoError::from)?;
        Ok(changed > 0)
    }

    async fn drop_expired_secrets(&self, now_ms: i64) -> Result<Vec<i64>, DbError> {
        let mut conn = self.pg.conn().await?;
        let tx = conn.transaction().await.map_err(RepoError::from)?;
        let rows = tx
            .query(
                "DELETE FROM endpoint_secrets WHERE expires_at <= $1 RETURNING endpoint_id",
                &[&now_ms],
            )
            .await
            .map_err(RepoError::from)?;
        let mut ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
        ids.sort_unstable();
        ids.dedup();
        for id in &ids {
            notify_change(&tx, *id).await?;
        }
        tx.commit().await.map_err(RepoError::from)?;
        Ok(ids)
    }
}
