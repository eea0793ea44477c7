//! What a server process keeps of the shared registry, so a request's credential
//! check does not cost a round trip to Postgres: the orgs of API keys seen, the auth
//! mode and account of orgs seen, and the signing keys of orgs seen.
//!
//! Only answers that were found are kept (an unknown key is asked again each time),
//! and everything is dropped when another process changes credentials: every such
//! write notifies [`notify::CREDENTIALS`] in its own transaction
//! ([`super::postgres`]), and Postgres delivers that to this process's listener when
//! the write commits, well under a millisecond later on a local network. While the
//! listener is not connected (start-up, a lost connection) nothing is kept and every
//! check goes to the database; a reconnection drops everything again. Every entry is
//! also dropped after [`MAX_AGE`], and the whole cache when it holds
//! [`MAX_ENTRIES`].

use super::repo::{NewKey, RegistryRepo, StoredApiKey};
use super::{AuthMode, KeyInfo, KeyKind, Org};
use crate::db::notify::{self, Change};
use crate::db::{Pg, RepoError};
use leadstream_pipeline::OrgId;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An entry is asked again after this long, notification or not.
pub const MAX_AGE: Duration = Duration::from_secs(60);
/// Entries kept at most (each kind); past it the cache starts over.
pub const MAX_ENTRIES: usize = 100_000;

/// An answer and when it was read.
type Entry<V> = (Instant, V);

#[derive(Default)]
struct Kept {
    /// Counts the times everything was dropped: an answer read from the database
    /// while it changed is not kept (it may predate the change).
    generation: u64,
    /// Key hash → the key as stored.
    api_keys: HashMap<Vec<u8>, Entry<StoredApiKey>>,
    /// Org → its auth mode and account id.
    orgs: HashMap<OrgId, Entry<(AuthMode, String)>>,
    /// Org → its active signing keys' hashes.
    signing: HashMap<OrgId, Entry<Vec<Vec<u8>>>>,
}

/// A [`RegistryRepo`] in front of another, keeping what it found.
pub struct CachedRegistry {
    inner: Box<dyn RegistryRepo>,
    kept: Arc<Mutex<Kept>>,
    /// The listener is connected: notifications are heard, so entries may be kept.
    live: Arc<AtomicBool>,
}

fn fresh<V: Clone>(entry: Option<&Entry<V>>) -> Option<V> {
    entry
        .filter(|(at, _)| at.elapsed() < MAX_AGE)
        .map(|(_, v)| v.clone())
}

fn keep<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, Entry<V>>, k: K, v: V) {
    if map.len() >= MAX_ENTRIES {
        map.clear();
    }
    map.insert(k, (Instant::now(), v));
}

impl CachedRegistry {
    /// Caches `inner` (the registry of `pg`) and listens for changes, on the current
    /// runtime, for as long as it lives.
    pub fn new(inner: Box<dyn RegistryRepo>, pg: Pg) -> Self {
        let kept: Arc<Mutex<Kept>> = Arc::default();
        let live = Arc::new(AtomicBool::new(false));
        let mut changes = notify::listen(pg, notify::CREDENTIALS);
        let (k, l) = (Arc::downgrade(&kept), Arc::downgrade(&live));
        crate::tasks::spawn(async move {
            while let Some(change) = changes.recv().await {
                let (Some(kept), Some(live)) = (k.upgrade(), l.upgrade()) else {
                    return;
                };
                // Lost: stop keeping first, then drop (a read finishing in between
                // cannot keep anything). A change or a reconnection: drop first, then
                // keep again (an entry from before it is never served after it).
                if change == Change::Lost {
                    live.store(false, Ordering::SeqCst);
                    forget(&kept);
                } else {
                    forget(&kept);
                    live.store(true, Ordering::SeqCst);
                }
            }
        });
        Self { inner, kept, live }
    }

    /// The generation to compare after a read, when entries may be kept now.
    fn before_read(&self) -> Option<u64> {
        let generation = self.kept.lock().generation;
        self.live.load(Ordering::SeqCst).then_some(generation)
    }

    /// Keeps what `put` does when nothing was dropped since `before` and
    /// notifications are still heard.
    fn keep_if_current(&self, before: Option<u64>, put: impl FnOnce(&mut Kept)) {
        let mut kept = self.kept.lock();
        if before == Some(kept.generation) && self.live.load(Ordering::SeqCst) {
            put(&mut kept);
        }
    }

    fn forget(&self) {
        forget(&self.kept);
    }
}

fn forget(kept: &Mutex<Kept>) {
    let mut k = kept.lock();
    *k = Kept {
        generation: k.generation + 1,
        ..Kept::default()
    };
}

#[async_trait::async_trait]
impl RegistryRepo for CachedRegistry {
    async fn insert_org(&self, org: &Org, account_id: &str) -> Result<bool, RepoError> {
        self.inner.insert_org(org, account_id).await
    }

    async fn orgs(&self) -> Result<Vec<Org>, RepoError> {
        self.inner.orgs().await
    }

    async fn org(&self, id: OrgId) -> Result<Option<(AuthMode, String)>, RepoError> {
        if let Some(v) = fresh(self.kept.lock().orgs.get(&id)) {
            crate::metrics::credential_cache(true);
            return Ok(Some(v));
        }
        crate::metrics::credential_cache(false);
        let before = self.before_read();
        let found = self.inner.org(id).await?;
        if let Some(v) = &found {
            self.keep_if_current(before, |k| keep(&mut k.orgs, id, v.clone()));
        }
        Ok(found)
    }

    async fn set_auth_mode(&self, id: OrgId, mode: AuthMode) -> Result<bool, RepoError> {
        let r = self.inner.set_auth_mode(id, mode).await;
        self.forget();
        r
    }

    async fn insert_key(&self, key: NewKey<'_>) -> Result<Option<i64>, RepoError> {
        let r = self.inner.insert_key(key).await;
        self.forget();
        r
    }

    async fn keys(&self, org: OrgId, kind: KeyKind) -> Result<Vec<KeyInfo>, RepoError> {
        self.inner.keys(org, kind).await
    }

    async fn revoke(
        &self,
        org: OrgId,
        kind: KeyKind,
        id: i64,
        at_ms: i64,
    ) -> Result<bool, RepoError> {
        let r = self.inner.revoke(org, kind, id, at_ms).await;
        self.forget();
        r
    }

    async fn api_key(&self, hash: &[u8]) -> Result<Option<StoredApiKey>, RepoError> {
        if let Some(v) = fresh(self.kept.lock().api_keys.get(hash)) {
            crate::metrics::credential_cache(true);
            return Ok(Some(v));
        }
        crate::metrics::credential_cache(false);
        let before = self.before_read();
        let found = self.inner.api_key(hash).await?;
        if let Some(v) = &found {
            self.keep_if_current(before, |k| keep(&mut k.api_keys, hash.to_vec(), v.clone()));
        }
        Ok(found)
    }

    async fn signing_keys(&self, org: OrgId) -> Result<Vec<Vec<u8>>, RepoError> {
        if let Some(v) = fresh(self.kept.lock().signing.get(&org)) {
            crate::metrics::credential_cache(true);
            return Ok(v);
        }
        crate::metrics::credential_cache(false);
        let before = self.before_read();
        let found = self.inner.signing_keys(org).await?;
        // An org without keys (or none at all: any id a signed request names) is
        // asked again each time, so unknown ids cannot fill the cache.
        if !found.is_empty() {
            self.keep_if_current(before, |k| keep(&mut k.signing, org, found.clone()));
        }
        Ok(found)
    }
}
