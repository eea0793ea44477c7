//! [`EndpointRepo`] on `webhooks.db`: writes go through its group-committing writer,
//! reads through its read connection.

use super::repo::{
    event_types_text, failing_reason, secret, stored_secret, EndpointRepo, NewEndpoint,
    StoredEndpoint, COLUMNS,
};
use super::{EndpointEffect, EndpointPatch};
use crate::db::sql::{args, Sql};
use crate::delivery::model::Endpoint;
use crate::delivery::store::{Db, DbError};
use leadstream_pipeline::signature::WebhookSecret;
use leadstream_pipeline::OrgId;
use rusqlite::{params, Connection, OptionalExtension};
use std::sync::Arc;
use std::time::Duration;

/// The endpoints of `webhooks.db`.
pub struct SqliteEndpoints {
    db: Arc<Db>,
}

impl SqliteEndpoints {
    pub fn new(db: Arc<Db>) -> Self {
        Self { db }
    }
}

fn read_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredEndpoint> {
    Ok(StoredEndpoint {
        id: r.get(0)?,
        org: r.get(1)?,
        kind: r.get(2)?,
        url: r.get(3)?,
        description: r.get(4)?,
        event_types: r.get(5)?,
        enabled: r.get(6)?,
        disabled_reason: r.get(7)?,
        timeout_ms: r.get(8)?,
        max_in_flight: r.get(9)?,
        rate_limit: r.get(10)?,
        failing_since_ms: r.get(11)?,
        created_at_ms: r.get(12)?,
        updated_at_ms: r.get(13)?,
    })
}

fn with_secrets(conn: &Connection, row: StoredEndpoint) -> Result<Endpoint, DbError> {
    let mut stmt = conn.prepare_cached(
        "SELECT secret, created_at, expires_at FROM endpoint_secrets WHERE endpoint_id = ?1 \
         ORDER BY created_at DESC, rowid DESC",
    )?;
    let rows = stmt.query_map([row.id], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, Option<i64>>(2)?,
        ))
    })?;
    let mut secrets = Vec::new();
    for r in rows {
        let (text, created, expires) = r?;
        secrets.push(secret(&text, created, expires)?);
    }
    row.into_endpoint(secrets)
}

fn load_where(
    conn: &Connection,
    filter: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<Endpoint>, DbError> {
    let rows: Vec<StoredEndpoint> = conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM endpoints {filter}"))?
        .query_map(args, read_row)?
        .collect::<Result<_, _>>()?;
    rows.into_iter().map(|r| with_secrets(conn, r)).collect()
}

/// Every endpoint, with its secrets.
///
/// # Errors
/// [`DbError`].
pub fn load_all(conn: &Connection) -> Result<Vec<Endpoint>, DbError> {
    load_where(conn, "", [])
}

fn load_one(conn: &Connection, id: i64) -> Result<Option<Endpoint>, DbError> {
    let row = conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM endpoints WHERE id = ?1"))?
        .query_row([id], read_row)
        .optional()?;
    row.map(|r| with_secrets(conn, r)).transpose()
}

fn owned(conn: &Connection, org: OrgId, id: i64) -> Result<bool, DbError> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM endpoints WHERE id = ?1 AND org_id = ?2")?
        .exists(params![id, org])?)
}

fn insert_secret(
    conn: &Connection,
    endpoint: i64,
    secret: &WebhookSecret,
    now_ms: i64,
) -> Result<(), DbError> {
    conn.execute(
        "INSERT INTO endpoint_secrets (endpoint_id, secret, created_at) VALUES (?1, ?2, ?3)",
        params![endpoint, stored_secret(secret), now_ms],
    )?;
    Ok(())
}

/// The statements that record `effect` on endpoint `id`, for a write that also
/// records the attempt (the embedded engine records both in one transaction).
/// Returns whether the endpoint changed.
///
/// # Errors
/// [`DbError`].
pub fn write_effect(
    conn: Sql<'_>,
    id: i64,
    effect: &EndpointEffect,
    disable_after: Duration,
) -> Result<bool, DbError> {
    // `enabled` is a BOOLEAN on Postgres and 0/1 here: TRUE and FALSE suit both.
    let changed = match effect {
        EndpointEffect::Succeeded => conn.execute(
            "UPDATE endpoints SET failing_since = NULL WHERE id = ?1 AND failing_since IS NOT NULL",
            args![id],
        )?,
        EndpointEffect::Failed { at_ms } => {
            let n = conn.execute(
                "UPDATE endpoints SET failing_since = ?2 WHERE id = ?1 AND failing_since IS NULL",
                args![id, at_ms],
            )?;
            let cutoff = at_ms - disable_after.as_millis() as i64;
            n + conn.execute(
                "UPDATE endpoints SET enabled = FALSE, disabled_reason = ?3, updated_at = ?4 \
                 WHERE id = ?1 AND enabled = TRUE AND failing_since <= ?2",
                args![id, cutoff, failing_reason(disable_after), at_ms],
            )?
        }
        EndpointEffect::Disable { reason, at_ms } => conn.execute(
            "UPDATE endpoints SET enabled = FALSE, disabled_reason = ?2, updated_at = ?3 WHERE id = ?1 AND enabled = TRUE",
            args![id, reason, at_ms],
        )?,
    };
    if changed > 0 && conn.is_postgres() {
        // Every process's copy of the endpoint is reloaded (`db::notify`).
        conn.execute(
            "SELECT pg_notify(?1, ?2)",
            args![crate::db::notify::ENDPOINTS, id.to_string()],
        )?;
    }
    Ok(changed > 0)
}

#[async_trait::async_trait]
impl EndpointRepo for SqliteEndpoints {
    async fn all(&self) -> Result<Vec<Endpoint>, DbError> {
        self.db.read(|sql| load_all(sql.sqlite()?)).await
    }

    async fn one(&self, id: i64) -> Result<Option<Endpoint>, DbError> {
        self.db.read(move |sql| load_one(sql.sqlite()?, id)).await
    }

    async fn of_org(&self, org: OrgId) -> Result<Vec<Endpoint>, DbError> {
        self.db
            .read(move |sql| load_where(sql.sqlite()?, "WHERE org_id = ?1 ORDER BY id DESC", [org]))
            .await
    }

    async fn insert(&self, new: NewEndpoint) -> Result<Endpoint, DbError> {
        self.db
            .write(move |sql| {
                let conn = sql.sqlite()?;
                conn.execute(
                    "INSERT INTO endpoints (org_id, kind, url, event_types, description, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                    params![new.org, new.kind.as_str(), new.url, event_types_text(new.event_types.as_ref()), new.description, new.at_ms],
                )?;
                let id = conn.last_insert_rowid();
                insert_secret(conn, id, &new.secret, new.at_ms)?;
                load_one(conn, id)?.ok_or(DbError::Stopped)
            })
            .await
    }

    async fn patch(
        &self,
        org: OrgId,
        id: i64,
        patch: EndpointPatch,
        now_ms: i64,
    ) -> Result<Option<Endpoint>, DbError> {
        self.db
            .write(move |sql| {
                let conn = sql.sqlite()?;
                if !owned(conn, org, id)? {
                    return Ok(None);
                }
                if let Some(enabled) = patch.enabled {
                    // Re-enabling clears the engine's reason and the failing run.
                    conn.execute(
                        "UPDATE endpoints SET enabled = ?2, disabled_reason = CASE WHEN ?2 THEN NULL ELSE disabled_reason END, \
                         failing_since = CASE WHEN ?2 THEN NULL ELSE failing_since END WHERE id = ?1",
                        params![id, enabled],
                    )?;
                }
                if let Some(types) = &patch.event_types {
                    conn.execute("UPDATE endpoints SET event_types = ?2 WHERE id = ?1", params![id, event_types_text(types.as_ref())])?;
                }
                if let Some(d) = &patch.description {
                    conn.execute("UPDATE endpoints SET description = ?2 WHERE id = ?1", params![id, d])?;
                }
                if let Some(t) = patch.timeout {
                    let ms = t.map(|t| t.as_millis() as i64);
                    conn.execute("UPDATE endpoints SET timeout_ms = ?2 WHERE id = ?1", params![id, ms])?;
                }
                if let Some(m) = patch.max_in_flight {
                    conn.execute("UPDATE endpoints SET max_in_flight = ?2 WHERE id = ?1", params![id, m])?;
                }
                if let Some(r) = patch.rate_limit {
                    conn.execute("UPDATE endpoints SET rate_limit = ?2 WHERE id = ?1", params![id, r])?;
                }
                if let Some(u) = &patch.url {
                    conn.execute("UPDATE endpoints SET url = ?2 WHERE id = ?1", params![id, u])?;
                }
                conn.execute("UPDATE endpoints SET updated_at = ?2 WHERE id = ?1", params![id, now_ms])?;
                load_one(conn, id)
            })
            .await
    }

    async fn delete(&self, org: OrgId, id: i64) -> Result<bool, DbError> {
        self.db
            .write(move |sql| {
                let conn = sql.sqlite()?;
                if !owned(conn, org, id)? {
                    return Ok(false);
                }
                conn.execute("DELETE FROM endpoint_secrets WHERE endpoint_id = ?1", [id])?;
                conn.execute("DELETE FROM endpoints WHERE id = ?1", [id])?;
                Ok(true)
            })
            .await
    }

    async fn rotate_secret(
        &self,
        org: OrgId,
        id: i64,
        secret: WebhookSecret,
        until_ms: i64,
        now_ms: i64,
    ) -> Result<Option<Endpoint>, DbError> {
        self.db
            .write(move |sql| {
                let conn = sql.sqlite()?;
                if !owned(conn, org, id)? {
                    return Ok(None);
                }
                conn.execute(
                    "UPDATE endpoint_secrets SET expires_at = MIN(COALESCE(expires_at, ?2), ?2) WHERE endpoint_id = ?1",
                    params![id, until_ms],
                )?;
                insert_secret(conn, id, &secret, now_ms)?;
                conn.execute("UPDATE endpoints SET updated_at = ?2 WHERE id = ?1", params![id, now_ms])?;
                load_one(conn, id)
            })
            .await
    }

    async fn apply_effect(
        &self,
        id: i64,
        effect: EndpointEffect,
        disable_after: Duration,
    ) -> Result<bool, DbError> {
        self.db
            .write(move |sql| write_effect(sql, id, &effect, disable_after))
            .await
    }

    async fn drop_expired_secrets(&self, now_ms: i64) -> Result<Vec<i64>, DbError> {
        self.db
            .write(move |sql| {
                let conn = sql.sqlite()?;
                let ids: Vec<i64> = conn
                    .prepare(
                        "SELECT DISTINCT endpoint_id FROM endpoint_secrets WHERE expires_at <= ?1",
                    )?
                    .query_map([now_ms], |r| r.get(0))?
                    .collect::<Result<_, _>>()?;
                conn.execute(
                    "DELETE FROM endpoint_secrets WHERE expires_at <= ?1",
                    [now_ms],
                )?;
                Ok(ids)
            })
            .await
    }
}
