//! The endpoint registry: rows in `webhooks.db`, and an in-memory copy the workers and
//! the publisher read without touching the database.
//!
//! Every change is written (and committed) first; the copy is updated after, so what
//! the copy says has always been durable.

use super::model::{new_secret, Endpoint, EndpointKind, EndpointSecret};
use super::store::{Db, DbError};
use leadstream_pipeline::OrgId;
use parking_lot::RwLock;
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Why an endpoint lookup found nothing the caller may use.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("no webhook endpoint {0}")]
    NotFound(i64),
    #[error("webhook endpoint {0} belongs to another organization")]
    OtherOrg(i64),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// A `PATCH /api/webhooks/{id}`: `Some` fields change; inner `None` clears.
#[derive(Debug, Default, Clone)]
pub struct EndpointPatch {
    pub enabled: Option<bool>,
    pub event_types: Option<Option<Vec<String>>>,
    pub description: Option<Option<String>>,
    pub timeout: Option<Option<Duration>>,
    pub max_in_flight: Option<Option<u32>>,
    pub rate_limit: Option<Option<f64>>,
    pub url: Option<String>,
}

/// What one attempt's outcome does to its endpoint.
#[derive(Debug, Clone, PartialEq)]
pub enum EndpointEffect {
    /// A 2xx: the endpoint is healthy again.
    Succeeded,
    /// A failed attempt at this instant.
    Failed { at_ms: i64 },
    /// Disable it, saying why.
    Disable { reason: String, at_ms: i64 },
}

/// Endpoints, cached.
pub struct Endpoints {
    db: Arc<Db>,
    cache: RwLock<HashMap<i64, Arc<Endpoint>>>,
    /// Ids deleted while this process runs (a Kafka record for one is not delivered).
    deleted: RwLock<std::collections::HashSet<i64>>,
}

const COLUMNS: &str = "id, org_id, kind, url, description, event_types, enabled, disabled_reason, \
     timeout_ms, max_in_flight, rate_limit, failing_since, created_at, updated_at";

fn read_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Endpoint> {
    let kind: String = r.get(2)?;
    let types: Option<String> = r.get(5)?;
    let timeout: Option<i64> = r.get(8)?;
    Ok(Endpoint {
        id: r.get(0)?,
        org: r.get(1)?,
        kind: EndpointKind::parse(&kind),
        url: r.get(3)?,
        description: r.get(4)?,
        event_types: types.and_then(|t| serde_json::from_str(&t).ok()),
        enabled: r.get(6)?,
        disabled_reason: r.get(7)?,
        timeout: timeout.map(|ms| Duration::from_millis(ms.max(0) as u64)),
        max_in_flight: r.get(9)?,
        rate_limit: r.get(10)?,
        failing_since_ms: r.get(11)?,
        created_at_ms: r.get(12)?,
        updated_at_ms: r.get(13)?,
        secrets: Vec::new(),
    })
}

fn load_one(conn: &Connection, id: i64) -> Result<Option<Endpoint>, DbError> {
    let Some(mut e) = conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM endpoints WHERE id = ?1"),
            [id],
            read_row,
        )
        .optional()?
    else {
        return Ok(None);
    };
    e.secrets = load_secrets(conn, id)?;
    Ok(Some(e))
}

fn load_secrets(conn: &Connection, id: i64) -> Result<Vec<EndpointSecret>, DbError> {
    let mut stmt = conn.prepare_cached(
        "SELECT secret, created_at, expires_at FROM endpoint_secrets WHERE endpoint_id = ?1 \
         ORDER BY created_at DESC, rowid DESC",
    )?;
    let rows = stmt.query_map([id], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, Option<i64>>(2)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (text, created_at_ms, expires_at_ms) = row?;
        // Secrets are written by this module only; one that does not parse is skipped.
        if let Ok(secret) = leadstream_pipeline::signature::WebhookSecret::parse(&text) {
            out.push(EndpointSecret {
                secret,
                created_at_ms,
                expires_at_ms,
            });
        }
    }
    Ok(out)
}

fn insert_secret(
    conn: &Connection,
    endpoint: i64,
    secret: &leadstream_pipeline::signature::WebhookSecret,
    now_ms: i64,
) -> Result<(), DbError> {
    conn.execute(
        "INSERT INTO endpoint_secrets (endpoint_id, secret, created_at) VALUES (?1, ?2, ?3)",
        params![endpoint, secret.text(), now_ms],
    )?;
    Ok(())
}

impl Endpoints {
    /// Loads every endpoint into memory.
    ///
    /// # Errors
    /// [`DbError`] from reading them.
    pub fn load(db: Arc<Db>) -> Result<Self, DbError> {
        let all = db.read_blocking(|conn| {
            let ids: Vec<i64> = conn
                .prepare("SELECT id FROM endpoints")?
                .query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            let mut out = HashMap::with_capacity(ids.len());
            for id in ids {
                if let Some(e) = load_one(conn, id)? {
                    out.insert(id, Arc::new(e));
                }
            }
            Ok(out)
        })?;
        Ok(Self {
            db,
            cache: RwLock::new(all),
            deleted: RwLock::default(),
        })
    }

    /// The endpoint `id`, any org (for the workers).
    pub fn by_id(&self, id: i64) -> Option<Arc<Endpoint>> {
        self.cache.read().get(&id).cloned()
    }

    /// The endpoint `id` when it is `org`'s.
    ///
    /// # Errors
    /// [`EndpointError::NotFound`], [`EndpointError::OtherOrg`].
    pub fn get(&self, org: OrgId, id: i64) -> Result<Arc<Endpoint>, EndpointError> {
        match self.by_id(id) {
            None => Err(EndpointError::NotFound(id)),
            Some(e) if e.org != org => Err(EndpointError::OtherOrg(id)),
            Some(e) => Ok(e),
        }
    }

    /// `org`'s endpoints, newest first; `search` keeps those whose URL contains it.
    pub fn list(&self, org: OrgId, search: Option<&str>) -> Vec<Arc<Endpoint>> {
        let mut out: Vec<Arc<Endpoint>> = self
            .cache
            .read()
            .values()
            .filter(|e| e.org == org && search.is_none_or(|s| e.url.contains(s)))
            .cloned()
            .collect();
        out.sort_by_key(|e| std::cmp::Reverse(e.id));
        out
    }

    /// `org`'s enabled endpoints that receive `event_type`, by id.
    pub fn subscribers(&self, org: OrgId, event_type: &str) -> Vec<Arc<Endpoint>> {
        let mut out: Vec<Arc<Endpoint>> = self
            .cache
            .read()
            .values()
            .filter(|e| e.org == org && e.enabled && e.subscribed_to(event_type))
            .cloned()
            .collect();
        out.sort_by_key(|e| e.id);
        out
    }

    /// `org`'s settings endpoint, if it set a `webhookUrl`.
    pub fn settings(&self, org: OrgId) -> Option<Arc<Endpoint>> {
        self.cache
            .read()
            .values()
            .find(|e| e.org == org && e.kind == EndpointKind::Settings)
            .cloned()
    }

    /// Every endpoint id (to reset per-endpoint gauges and such).
    pub fn ids(&self) -> Vec<i64> {
        self.cache.read().keys().copied().collect()
    }

    fn put(&self, e: Endpoint) -> Arc<Endpoint> {
        let e = Arc::new(e);
        self.cache.write().insert(e.id, e.clone());
        e
    }

    /// Creates an endpoint with a new secret.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn create(
        &self,
        org: OrgId,
        kind: EndpointKind,
        url: String,
        now_ms: i64,
    ) -> Result<Arc<Endpoint>, EndpointError> {
        self.create_subscribed(org, kind, url, None, None, now_ms)
            .await
    }

    /// [`create`](Self::create) with its event types and description set in the same
    /// insert: an endpoint meant for one kind of event (a campaign's, a trigger
    /// action's) never receives another, not even for a moment.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn create_subscribed(
        &self,
        org: OrgId,
        kind: EndpointKind,
        url: String,
        event_types: Option<Vec<String>>,
        description: Option<String>,
        now_ms: i64,
    ) -> Result<Arc<Endpoint>, EndpointError> {
        let secret = new_secret();
        let types = event_types.map(|t| serde_json::to_string(&t).unwrap_or_default());
        let e = self
            .db
            .write(move |conn| {
                conn.execute(
                    "INSERT INTO endpoints (org_id, kind, url, event_types, description, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                    params![org, kind.as_str(), url, types, description, now_ms],
                )?;
                let id = conn.last_insert_rowid();
                insert_secret(conn, id, &secret, now_ms)?;
                load_one(conn, id)?.ok_or(DbError::Stopped)
            })
            .await?;
        Ok(self.put(e))
    }

    /// Applies `patch` to `org`'s endpoint `id`.
    ///
    /// # Errors
    /// [`EndpointError`].
    pub async fn patch(
        &self,
        org: OrgId,
        id: i64,
        patch: EndpointPatch,
        now_ms: i64,
    ) -> Result<Arc<Endpoint>, EndpointError> {
        self.get(org, id)?;
        let e = self
            .db
            .write(move |conn| {
                if let Some(enabled) = patch.enabled {
                    // Re-enabling clears the engine's reason and the failing run.
                    conn.execute(
                        "UPDATE endpoints SET enabled = ?2, disabled_reason = CASE WHEN ?2 THEN NULL ELSE disabled_reason END, \
                         failing_since = CASE WHEN ?2 THEN NULL ELSE failing_since END WHERE id = ?1",
                        params![id, enabled],
                    )?;
                }
                if let Some(types) = &patch.event_types {
                    let text = types.as_ref().map(|t| serde_json::to_string(t).unwrap_or_default());
                    conn.execute("UPDATE endpoints SET event_types = ?2 WHERE id = ?1", params![id, text])?;
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
                load_one(conn, id)?.ok_or(DbError::Stopped)
            })
            .await?;
        Ok(self.put(e))
    }

    /// Deletes `org`'s endpoint `id` and its secrets. Its pending deliveries fail when
    /// their turn comes (the log keeps them).
    ///
    /// # Errors
    /// [`EndpointError`].
    pub async fn delete(&self, org: OrgId, id: i64) -> Result<(), EndpointError> {
        self.get(org, id)?;
        self.db
            .write(move |conn| {
                conn.execute("DELETE FROM endpoint_secrets WHERE endpoint_id = ?1", [id])?;
                conn.execute("DELETE FROM endpoints WHERE id = ?1", [id])?;
                Ok(())
            })
            .await?;
        self.cache.write().remove(&id);
        self.deleted.write().insert(id);
        Ok(())
    }

    /// Whether endpoint `id` was deleted while this process runs.
    pub fn was_deleted(&self, id: i64) -> bool {
        self.deleted.read().contains(&id)
    }

    /// Sets (`Some`) or removes (`None`) `org`'s settings URL. Setting another URL
    /// keeps the endpoint and its secret.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn set_settings_url(
        &self,
        org: OrgId,
        url: Option<String>,
        now_ms: i64,
    ) -> Result<Option<Arc<Endpoint>>, EndpointError> {
        match (self.settings(org), url) {
            (None, None) => Ok(None),
            (Some(e), None) => {
                self.delete(org, e.id).await?;
                Ok(None)
            }
            (None, Some(url)) => self
                .create(org, EndpointKind::Settings, url, now_ms)
                .await
                .map(Some),
            (Some(e), Some(url)) => {
                let patch = EndpointPatch {
                    url: Some(url),
                    ..EndpointPatch::default()
                };
                self.patch(org, e.id, patch, now_ms).await.map(Some)
            }
        }
    }

    /// A new current secret for `org`'s endpoint `id`; the previous ones keep signing
    /// for `grace`.
    ///
    /// # Errors
    /// [`EndpointError`].
    pub async fn rotate_secret(
        &self,
        org: OrgId,
        id: i64,
        grace: Duration,
        now_ms: i64,
    ) -> Result<Arc<Endpoint>, EndpointError> {
        self.get(org, id)?;
        let secret = new_secret();
        let until = now_ms.saturating_add(grace.as_millis() as i64);
        let e = self
            .db
            .write(move |conn| {
                conn.execute(
                    "UPDATE endpoint_secrets SET expires_at = MIN(COALESCE(expires_at, ?2), ?2) WHERE endpoint_id = ?1",
                    params![id, until],
                )?;
                insert_secret(conn, id, &secret, now_ms)?;
                conn.execute("UPDATE endpoints SET updated_at = ?2 WHERE id = ?1", params![id, now_ms])?;
                load_one(conn, id)?.ok_or(DbError::Stopped)
            })
            .await?;
        Ok(self.put(e))
    }

    /// The statements that record `effect` on endpoint `id`, for a write that also
    /// records the attempt. Returns whether the endpoint changed.
    ///
    /// # Errors
    /// [`DbError`].
    pub fn write_effect(
        conn: &Connection,
        id: i64,
        effect: &EndpointEffect,
        disable_after: Duration,
    ) -> Result<bool, DbError> {
        let changed = match effect {
            EndpointEffect::Succeeded => conn.execute(
                "UPDATE endpoints SET failing_since = NULL WHERE id = ?1 AND failing_since IS NOT NULL",
                [id],
            )?,
            EndpointEffect::Failed { at_ms } => {
                let n = conn.execute(
                    "UPDATE endpoints SET failing_since = ?2 WHERE id = ?1 AND failing_since IS NULL",
                    params![id, at_ms],
                )?;
                let cutoff = at_ms - disable_after.as_millis() as i64;
                let reason = format!(
                    "disabled by leadstream: every attempt failed for {} (delivery.disable_after); fix the endpoint, then PATCH {{\"enabled\": true}}",
                    humantime::format_duration(disable_after)
                );
                n + conn.execute(
                    "UPDATE endpoints SET enabled = 0, disabled_reason = ?3, updated_at = ?4 \
                     WHERE id = ?1 AND enabled = 1 AND failing_since <= ?2",
                    params![id, cutoff, reason, at_ms],
                )?
            }
            EndpointEffect::Disable { reason, at_ms } => conn.execute(
                "UPDATE endpoints SET enabled = 0, disabled_reason = ?2, updated_at = ?3 WHERE id = ?1 AND enabled = 1",
                params![id, reason, at_ms],
            )?,
        };
        Ok(changed > 0)
    }

    /// Re-reads endpoint `id` after a write changed it.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn refresh(&self, id: i64) -> Result<(), DbError> {
        let row = self.db.read(move |conn| load_one(conn, id)).await?;
        match row {
            Some(e) => {
                self.put(e);
            }
            None => {
                self.cache.write().remove(&id);
            }
        }
        Ok(())
    }

    /// Deletes secrets whose grace ended.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn drop_expired_secrets(&self, now_ms: i64) -> Result<(), DbError> {
        let changed: Vec<i64> = self
            .db
            .write(move |conn| {
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
            .await?;
        for id in changed {
            self.refresh(id).await?;
        }
        Ok(())
    }
}
