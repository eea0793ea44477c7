//! The endpoint registry: rows in `webhooks.db` or the shared database
//! ([`repo::EndpointRepo`]), and an in-memory copy the workers and the publisher read
//! without touching the database.
//!
//! Every change is written (and committed) first; the copy is updated after, so what
//! the copy says has always been durable.
//!
//! - Embedded: this process makes every change, so its copy is exact and also answers
//!   the API's reads.
//! - Shared database: another process may change an endpoint at any time. The API's
//!   reads (get, list, settings) and a publish's subscribers go to the database, so a
//!   change answered by one process is seen by the next request to any other. The copy
//!   the delivery workers read before each attempt follows the other processes'
//!   changes through [`crate::db::notify`]: an endpoint deleted or disabled anywhere
//!   gets no new attempt here once the notification arrives, well under a second
//!   after the change commits (a full reload runs every 30 s and after a lost
//!   connection).

mod health;
pub mod postgres;
pub mod repo;
pub mod sqlite;

use super::model::{new_secret, Endpoint, EndpointKind};
use super::store::{Db, DbError};
use leadstream_pipeline::OrgId;
use parking_lot::RwLock;
use repo::{EndpointRepo, NewEndpoint};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Why an endpoint lookup found nothing the caller may use.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("no webhook endpoint {0}")]
    NotFound(i64),
    /// Another organization's. The API answers it as [`EndpointError::NotFound`]
    /// (ids are sequential across organizations), except where seed 002 documents a
    /// 403 for it.
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
    repo: Box<dyn EndpointRepo>,
    /// Embedded: every change is this process's, so the copy is exact.
    exact: bool,
    cache: RwLock<HashMap<i64, Arc<Endpoint>>>,
    /// Ids deleted while this process runs (a Kafka record for one is not delivered).
    deleted: RwLock<std::collections::HashSet<i64>>,
    /// Shared database: attempts' effects waiting to be written, merged.
    health: health::HealthWrites,
}

fn by_newest(mut v: Vec<Arc<Endpoint>>) -> Vec<Arc<Endpoint>> {
    v.sort_by_key(|e| std::cmp::Reverse(e.id));
    v
}

impl Endpoints {
    /// Loads every endpoint of `webhooks.db` into memory.
    ///
    /// # Errors
    /// [`DbError`] from reading them.
    pub fn load(db: Arc<Db>) -> Result<Self, DbError> {
        let repo = sqlite::SqliteEndpoints::new(db.clone());
        // Before the runtime serves anything: read on this thread.
        let all = db.read_blocking(|sql| sqlite::load_all(sql.sqlite()?))?;
        Ok(Self::with(Box::new(repo), true, all))
    }

    /// The endpoints of the shared database: loads them, then follows the other
    /// processes' changes (on the current runtime) for as long as the registry lives.
    ///
    /// # Errors
    /// [`DbError`] from reading them.
    pub async fn open_shared(pg: crate::db::Pg) -> Result<Arc<Self>, DbError> {
        let repo = postgres::PgEndpoints::new(pg.clone());
        let all = repo.all().await?;
        let me = Arc::new(Self::with(Box::new(repo), false, all));
        let mut changes = crate::db::notify::listen(pg, crate::db::notify::ENDPOINTS);
        let weak = Arc::downgrade(&me);
        crate::tasks::spawn(async move {
            while let Some(change) = changes.recv().await {
                let Some(me) = weak.upgrade() else { return };
                if let Err(e) = me.follow(change).await {
                    tracing::warn!(error = %e, ?change, "re-reading endpoints another process changed; the next change or reload tries again");
                }
            }
        });
        Ok(me)
    }

    fn with(repo: Box<dyn EndpointRepo>, exact: bool, all: Vec<Endpoint>) -> Self {
        Self {
            repo,
            exact,
            cache: RwLock::new(all.into_iter().map(|e| (e.id, Arc::new(e))).collect()),
            deleted: RwLock::default(),
            health: health::HealthWrites::default(),
        }
    }

    /// Applies another process's change to the copy.
    async fn follow(&self, change: crate::db::notify::Change) -> Result<(), DbError> {
        match change {
            crate::db::notify::Change::Id(id) => self.refresh(id).await,
            // Until the listener is back, the copy keeps what it had; the Reset that
            // follows the reconnection reloads everything.
            crate::db::notify::Change::Lost => Ok(()),
            crate::db::notify::Change::Reset => {
                // Merged, not swapped: an endpoint made (or changed) while the list
                // was read is in the copy but not in the list, and must stay. One
                // missing from the list is asked for on its own, after it: only an
                // endpoint still gone then was deleted.
                let all = self.repo.all().await?;
                let listed: std::collections::HashSet<i64> = all.iter().map(|e| e.id).collect();
                for e in all {
                    self.keep(&Arc::new(e));
                }
                let missing: Vec<i64> = self
                    .cache
                    .read()
                    .keys()
                    .filter(|id| !listed.contains(id))
                    .copied()
                    .collect();
                for id in missing {
                    self.refresh(id).await?;
                }
                Ok(())
            }
        }
    }

    /// The endpoint `id`, any org, from this process's copy (for the workers).
    pub fn by_id(&self, id: i64) -> Option<Arc<Endpoint>> {
        self.cache.read().get(&id).cloned()
    }

    /// The endpoint `id` when it is `org`'s.
    ///
    /// # Errors
    /// [`EndpointError::NotFound`], [`EndpointError::OtherOrg`], [`EndpointError::Db`].
    pub async fn get(&self, org: OrgId, id: i64) -> Result<Arc<Endpoint>, EndpointError> {
        let found = if self.exact {
            self.by_id(id)
        } else {
            self.repo.one(id).await?.map(Arc::new)
        };
        match found {
            None => Err(EndpointError::NotFound(id)),
            Some(e) if e.org != org => Err(EndpointError::OtherOrg(id)),
            Some(e) => Ok(e),
        }
    }

    /// `org`'s endpoints, newest first.
    async fn of_org(&self, org: OrgId) -> Result<Vec<Arc<Endpoint>>, DbError> {
        if self.exact {
            let mine = self
                .cache
                .read()
                .values()
                .filter(|e| e.org == org)
                .cloned()
                .collect();
            return Ok(by_newest(mine));
        }
        Ok(self
            .repo
            .of_org(org)
            .await?
            .into_iter()
            .map(Arc::new)
            .collect())
    }

    /// `org`'s endpoints, newest first; `search` keeps those whose URL contains it.
    ///
    /// # Errors
    /// [`DbError`] (shared database only).
    pub async fn list(
        &self,
        org: OrgId,
        search: Option<&str>,
    ) -> Result<Vec<Arc<Endpoint>>, DbError> {
        let mut all = self.of_org(org).await?;
        all.retain(|e| search.is_none_or(|s| e.url.contains(s)));
        Ok(all)
    }

    /// `org`'s enabled endpoints that receive `event_type`, by id, from this
    /// process's copy (for callers inside a transaction of `webhooks.db`).
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

    /// [`subscribers`](Self::subscribers) as the shared database has them now (the
    /// copy, embedded).
    ///
    /// # Errors
    /// [`DbError`] (shared database only).
    pub async fn subscribers_now(
        &self,
        org: OrgId,
        event_type: &str,
    ) -> Result<Vec<Arc<Endpoint>>, DbError> {
        if self.exact {
            return Ok(self.subscribers(org, event_type));
        }
        let mut out = self.of_org(org).await?;
        out.retain(|e| e.enabled && e.subscribed_to(event_type));
        out.sort_by_key(|e| e.id);
        // The workers look each delivery's endpoint up in the copy: one another
        // process created a moment ago, not heard of yet, is known from here on.
        for e in &out {
            self.keep(e);
        }
        Ok(out)
    }

    /// `org`'s settings endpoint, if it set a `webhookUrl`.
    ///
    /// # Errors
    /// [`DbError`] (shared database only).
    pub async fn settings(&self, org: OrgId) -> Result<Option<Arc<Endpoint>>, DbError> {
        Ok(self
            .of_org(org)
            .await?
            .into_iter()
            .find(|e| e.kind == EndpointKind::Settings))
    }

    /// Every endpoint id in this process's copy (to reset per-endpoint gauges and such).
    pub fn ids(&self) -> Vec<i64> {
        self.cache.read().keys().copied().collect()
    }

    fn put(&self, e: Endpoint) -> Arc<Endpoint> {
        let e = Arc::new(e);
        self.keep(&e);
        e
    }

    /// Puts `e` in the copy unless the copy knows better: a deleted id never comes
    /// back, and a read older than the copy's (a write, a refresh and a notification
    /// may finish in any order) does not replace it.
    fn keep(&self, e: &Arc<Endpoint>) {
        if self.deleted.read().contains(&e.id) {
            return;
        }
        let mut cache = self.cache.write();
        if cache
            .get(&e.id)
            .is_some_and(|known| known.updated_at_ms > e.updated_at_ms)
        {
            return;
        }
        cache.insert(e.id, e.clone());
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
        let e = self
            .repo
            .insert(NewEndpoint {
                org,
                kind,
                url,
                event_types,
                description,
                secret: new_secret(),
                at_ms: now_ms,
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
        self.get(org, id).await?;
        match self.repo.patch(org, id, patch, now_ms).await? {
            Some(e) => Ok(self.put(e)),
            None => Err(EndpointError::NotFound(id)),
        }
    }

    /// Deletes `org`'s endpoint `id` and its secrets. Its pending deliveries fail when
    /// their turn comes (the log keeps them).
    ///
    /// # Errors
    /// [`EndpointError`].
    pub async fn delete(&self, org: OrgId, id: i64) -> Result<(), EndpointError> {
        self.get(org, id).await?;
        if !self.repo.delete(org, id).await? {
            return Err(EndpointError::NotFound(id));
        }
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
        match (self.settings(org).await?, url) {
            (None, None) => Ok(None),
            (Some(e), None) => {
                self.delete(org, e.id).await?;
                Ok(None)
            }
            (None, Some(url)) => {
                match self
                    .create(org, EndpointKind::Settings, url.clone(), now_ms)
                    .await
                {
                    // Another process set one a moment ago (one per org): set the URL
                    // on that one.
                    Err(EndpointError::Db(e)) if e.is_unique_violation() => {
                        let Some(e) = self.settings(org).await? else {
                            return Err(EndpointError::Db(e));
                        };
                        let patch = EndpointPatch {
                            url: Some(url),
                            ..EndpointPatch::default()
                        };
                        self.patch(org, e.id, patch, now_ms).await.map(Some)
                    }
                    other => other.map(Some),
                }
            }
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
        self.get(org, id).await?;
        let until = now_ms.saturating_add(grace.as_millis() as i64);
        match self
            .repo
            .rotate_secret(org, id, new_secret(), until, now_ms)
            .await?
        {
            Some(e) => Ok(self.put(e)),
            None => Err(EndpointError::NotFound(id)),
        }
    }

    /// Whether an attempt's effect on its endpoint is recorded in the same
    /// transaction as the attempt ([`sqlite::write_effect`], embedded); otherwise it
    /// is [`after_outcome`](Self::after_outcome)'s to record.
    pub fn effect_in_outcome(&self) -> bool {
        self.exact
    }

    /// After an attempt's outcome is durable: records its `effect` on endpoint `id` in
    /// the shared database (embedded: `changed` says whether the outcome's own write
    /// changed it) and re-reads the endpoint when it changed.
    ///
    /// Shared database: effects that arrive while another caller writes are merged
    /// into that caller's next write ([`health`]), so the caller that finds nobody
    /// writing writes for everyone until nothing is left.
    pub async fn after_outcome(
        &self,
        id: i64,
        effect: Option<EndpointEffect>,
        changed: bool,
        disable_after: Duration,
    ) {
        match (self.exact, effect) {
            (true, _) => {
                if changed {
                    self.refresh_logged(id).await;
                }
            }
            (false, None) => {}
            (false, Some(effect)) => {
                if self.health.add(id, effect) {
                    let mut writing = health::Writing {
                        writes: &self.health,
                        done: false,
                    };
                    while let Some(batch) = self.health.next() {
                        for (id, effects) in batch {
                            self.write_health(id, effects, disable_after).await;
                        }
                    }
                    writing.done = true;
                }
            }
        }
    }

    /// Writes one endpoint's merged effects, in order; re-reads it if they changed it.
    async fn write_health(&self, id: i64, effects: Vec<EndpointEffect>, disable_after: Duration) {
        let mut changed = false;
        for effect in effects {
            match self.repo.apply_effect(id, effect, disable_after).await {
                Ok(c) => changed |= c,
                Err(e) => {
                    tracing::warn!(endpoint = id, error = %e, "recording attempts' effect on their endpoint (health, disabling) in the shared database");
                }
            }
        }
        if changed {
            self.refresh_logged(id).await;
        }
    }

    async fn refresh_logged(&self, id: i64) {
        if let Err(e) = self.refresh(id).await {
            tracing::warn!(endpoint = id, error = %e, "re-reading an endpoint after its health changed");
        }
    }

    /// Re-reads endpoint `id` after a write changed it.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn refresh(&self, id: i64) -> Result<(), DbError> {
        match self.repo.one(id).await? {
            Some(e) => {
                self.put(e);
            }
            None => {
                if self.cache.write().remove(&id).is_some() {
                    self.deleted.write().insert(id);
                }
            }
        }
        Ok(())
    }

    /// Deletes secrets whose grace ended.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn drop_expired_secrets(&self, now_ms: i64) -> Result<(), DbError> {
        for id in self.repo.drop_expired_secrets(now_ms).await? {
            self.refresh(id).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! One suite, two backends: each test runs on `webhooks.db` and on Postgres.
    use super::*;
    use crate::db::testing::shared_pg;

    /// Runs `check` on a fresh embedded registry and on a fresh Postgres database.
    async fn on_both<F, Fut>(check: F)
    where
        F: Fn(Arc<Endpoints>) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        check(Arc::new(Endpoints::load(db).unwrap())).await;
        check(Endpoints::open_shared(shared_pg().await).await.unwrap()).await;
    }

    const ORG: OrgId = 7;

    #[tokio::test]
    async fn create_list_patch_and_delete_keep_to_their_org() {
        on_both(|eps| async move {
            let a = eps
                .create(
                    ORG,
                    EndpointKind::Registry,
                    "https://a.example/x".into(),
                    1_000,
                )
                .await
                .unwrap();
            let b = eps
                .create_subscribed(
                    ORG,
                    EndpointKind::Registry,
                    "https://b.example/y".into(),
                    Some(vec!["campaign_send".into()]),
                    Some("sends".into()),
                    2_000,
                )
                .await
                .unwrap();
            assert_eq!(a.secrets.len(), 1);
            let ids = |v: Vec<Arc<Endpoint>>| v.iter().map(|e| e.id).collect::<Vec<_>>();
            assert_eq!(ids(eps.list(ORG, None).await.unwrap()), [b.id, a.id]);
            assert_eq!(ids(eps.list(ORG, Some("b.example")).await.unwrap()), [b.id]);
            assert!(eps.list(ORG + 1, None).await.unwrap().is_empty());
            assert_eq!(
                ids(eps.subscribers_now(ORG, "campaign_send").await.unwrap()),
                [a.id, b.id]
            );
            assert_eq!(
                ids(eps.subscribers_now(ORG, "other").await.unwrap()),
                [a.id]
            );
            assert!(matches!(
                eps.get(ORG + 1, a.id).await,
                Err(EndpointError::OtherOrg(_))
            ));
            assert!(matches!(
                eps.get(ORG, 999_999).await,
                Err(EndpointError::NotFound(999_999))
            ));
            let patched = eps
                .patch(
                    ORG,
                    a.id,
                    EndpointPatch {
                        enabled: Some(false),
                        event_types: Some(Some(vec!["x".into()])),
                        timeout: Some(Some(Duration::from_secs(3))),
                        max_in_flight: Some(Some(4)),
                        rate_limit: Some(Some(2.5)),
                        url: Some("https://a.example/z".into()),
                        description: Some(Some("d".into())),
                    },
                    3_000,
                )
                .await
                .unwrap();
            assert!(!patched.enabled);
            assert_eq!(patched.event_types.as_deref(), Some(&["x".to_owned()][..]));
            assert_eq!(patched.timeout, Some(Duration::from_secs(3)));
            assert_eq!(patched.max_in_flight, Some(4));
            assert_eq!(patched.rate_limit, Some(2.5));
            assert_eq!(patched.url, "https://a.example/z");
            assert_eq!(patched.description.as_deref(), Some("d"));
            assert_eq!(patched.updated_at_ms, 3_000);
            // Clearing with an inner None; fields not named keep their values.
            let cleared = eps
                .patch(
                    ORG,
                    a.id,
                    EndpointPatch {
                        timeout: Some(None),
                        event_types: Some(None),
                        ..EndpointPatch::default()
                    },
                    4_000,
                )
                .await
                .unwrap();
            assert_eq!((cleared.timeout, cleared.event_types.clone()), (None, None));
            assert_eq!(cleared.rate_limit, Some(2.5));
            assert!(
                eps.subscribers_now(ORG, "other").await.unwrap().is_empty(),
                "disabled"
            );
            assert!(matches!(
                eps.delete(ORG + 1, a.id).await,
                Err(EndpointError::OtherOrg(_))
            ));
            eps.delete(ORG, a.id).await.unwrap();
            assert!(eps.by_id(a.id).is_none() && eps.was_deleted(a.id));
            assert!(matches!(
                eps.get(ORG, a.id).await,
                Err(EndpointError::NotFound(_))
            ));
            assert_eq!(ids(eps.list(ORG, None).await.unwrap()), [b.id]);
        })
        .await;
    }

    #[tokio::test]
    async fn settings_rotation_and_attempt_effects() {
        on_both(|eps| async move {
            assert!(eps.settings(ORG).await.unwrap().is_none());
            let s = eps
                .set_settings_url(ORG, Some("https://s.example/1".into()), 1_000)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(s.kind, EndpointKind::Settings);
            let again = eps
                .set_settings_url(ORG, Some("https://s.example/2".into()), 2_000)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                (again.id, again.url.as_str()),
                (s.id, "https://s.example/2")
            );
            let rotated = eps
                .rotate_secret(ORG, s.id, Duration::from_millis(500), 3_000)
                .await
                .unwrap();
            assert_eq!(rotated.secrets.len(), 2);
            assert_eq!(rotated.secrets[1].expires_at_ms, Some(3_500));
            assert_eq!(rotated.signing_secrets(3_100).count(), 2);
            eps.drop_expired_secrets(4_000).await.unwrap();
            assert_eq!(eps.by_id(s.id).unwrap().secrets.len(), 1);

            // A failing run longer than disable_after disables it; a success clears it.
            let after = Duration::from_secs(10);
            let sid = s.id;
            let apply = |effect: EndpointEffect| {
                let eps = eps.clone();
                async move {
                    if eps.effect_in_outcome() {
                        let changed = eps.repo.apply_effect(sid, effect, after).await.unwrap();
                        eps.after_outcome(sid, None, changed, after).await;
                    } else {
                        eps.after_outcome(sid, Some(effect), false, after).await;
                    }
                }
            };
            apply(EndpointEffect::Failed { at_ms: 10_000 }).await;
            assert_eq!(eps.by_id(s.id).unwrap().failing_since_ms, Some(10_000));
            apply(EndpointEffect::Succeeded).await;
            assert_eq!(eps.by_id(s.id).unwrap().failing_since_ms, None);
            apply(EndpointEffect::Failed { at_ms: 20_000 }).await;
            apply(EndpointEffect::Failed { at_ms: 31_000 }).await;
            let e = eps.by_id(s.id).unwrap();
            assert!(!e.enabled, "failing for over 10 s disables it");
            assert!(e
                .disabled_reason
                .as_deref()
                .unwrap()
                .contains("disable_after"));
            assert!(eps.subscribers_now(ORG, "any").await.unwrap().is_empty());
            eps.set_settings_url(ORG, None, 40_000).await.unwrap();
            assert!(eps.settings(ORG).await.unwrap().is_none());
        })
        .await;
    }

    #[tokio::test]
    async fn another_process_sees_each_change_at_once_and_its_copy_follows() {
        let pg = shared_pg().await;
        let here = Endpoints::open_shared(pg.clone()).await.unwrap();
        let there = Endpoints::open_shared(pg).await.unwrap();
        let e = here
            .create(ORG, EndpointKind::Registry, "https://x.example/".into(), 1)
            .await
            .unwrap();
        // Reads answer from the database: the very next call sees it.
        assert_eq!(
            there.get(ORG, e.id).await.unwrap().url,
            "https://x.example/"
        );
        assert_eq!(there.subscribers_now(ORG, "t").await.unwrap().len(), 1);
        // A subscriber read for a publish is in the workers' copy from then on, heard
        // of or not: its deliveries find it.
        assert!(there.by_id(e.id).is_some());
        // The workers' copy follows through the notification.
        let id = e.id;
        eventually("a created endpoint", || there.by_id(id).is_some()).await;
        here.patch(
            ORG,
            e.id,
            EndpointPatch {
                enabled: Some(false),
                ..EndpointPatch::default()
            },
            2,
        )
        .await
        .unwrap();
        eventually("a disabled endpoint", || {
            there.by_id(id).is_some_and(|e| !e.enabled)
        })
        .await;
        here.delete(ORG, e.id).await.unwrap();
        eventually("a deleted endpoint", || {
            there.by_id(id).is_none() && there.was_deleted(id)
        })
        .await;
    }

    /// Waits up to a second for `cond`.
    async fn eventually(what: &str, cond: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(1);
        while !cond() {
            assert!(
                std::time::Instant::now() < deadline,
                "{what}: not followed within a second"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
