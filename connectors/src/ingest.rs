//! The single writer: dedup against the index, append to the store, then answer.
//!
//! Request handlers prepare batches in parallel (parse, normalize, validate) and send
//! them here. One thread owns the [`EventStore`] and, for each group of batches that
//! queued up meanwhile (group commit), it
//! 1. offers every row's fingerprint to the [`DedupIndex`] in arrival order, so a key
//!    seen earlier (in the store, an earlier batch or earlier in the same batch)
//!    counts as a duplicate;
//! 2. appends the new rows in one transaction and waits for the fsync;
//! 3. only then answers every batch of the group.
//!
//! Since checking and storing happen in one place, the counts are exact under
//! concurrency, and a "duplicate" answer is only ever given for a key whose original
//! is already durable. If the write fails, the group's fingerprints are removed from
//! the index again and every batch in it gets the error: nothing was stored.

use crate::store::{EventStore, SqliteStore, StoreError, StoredEvent};
use crossbeam_channel::{Receiver, Sender};
use leadstream_pipeline::{DedupIndex, EventIndex, Prepared, Probe};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::oneshot;

/// Per-batch counts after dedup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stored {
    pub inserted: usize,
    pub duplicates: usize,
}

struct Job {
    batch: Prepared,
    reply: oneshot::Sender<Result<Stored, Arc<StoreError>>>,
}

/// Counters for `/metrics`-style reporting and tests.
#[derive(Debug, Default)]
pub struct IngestStats {
    pub batches: AtomicU64,
    pub inserted: AtomicU64,
    pub duplicates: AtomicU64,
    pub commits: AtomicU64,
    pub warmed_keys: AtomicU64,
}

/// Handle to the writer thread. Cheap to clone; the thread stops when the last
/// handle is dropped.
#[derive(Clone)]
pub struct Ingestor {
    tx: Sender<Job>,
    shared: Arc<Shared>,
}

/// What the handles and the writer thread share.
struct Shared {
    dedup: Arc<DedupIndex>,
    events: Arc<EventIndex>,
    ready: AtomicBool,
    stats: IngestStats,
}

/// The rows of `batch` that dedup found new (`is_new[i]` for `batch.rows[i]`), as the
/// store takes them.
pub fn new_rows<'a>(
    batch: &'a Prepared,
    is_new: &'a [bool],
) -> impl Iterator<Item = StoredEvent<'a>> + 'a {
    batch
        .rows
        .iter()
        .zip(is_new)
        .filter(|(_, &n)| n)
        .map(move |(r, _)| StoredEvent {
            org: batch.org,
            event_type: &batch.event_type,
            phone: r.phone,
            occurred_at_ms: r.occurred_at_ms,
            metadata: r.metadata.as_deref(),
            probe: r.probe,
        })
}

/// Rows per commit group at most; a single batch is never split.
const GROUP_ROWS: usize = 200_000;

impl Ingestor {
    /// Opens the store in `dir` and starts the writer thread, which first warms the
    /// dedup and event indexes from the store; [`Ingestor::is_ready`] turns true
    /// when that is done. Batches sent before then wait for it.
    ///
    /// # Errors
    /// [`StoreError::Open`] when the store cannot be opened.
    pub fn start(dir: &Path, shards: usize) -> Result<Self, StoreError> {
        Ok(Self::with_store(Box::new(SqliteStore::open(dir)?), shards))
    }

    /// Like [`Ingestor::start`], with any [`EventStore`] (ClickHouse in production).
    pub fn with_store(store: Box<dyn EventStore>, shards: usize) -> Self {
        let (tx, rx) = crossbeam_channel::bounded::<Job>(1024);
        let shared = Arc::new(Shared {
            dedup: Arc::new(DedupIndex::new(shards)),
            events: Arc::new(EventIndex::new(shards)),
            ready: AtomicBool::new(false),
            stats: IngestStats::default(),
        });
        let w = shared.clone();
        std::thread::Builder::new()
            .name("leadstream-writer".into())
            .spawn(move || w.run(store, rx))
            .expect("spawn writer thread");
        Self { tx, shared }
    }

    /// Whether warm-up has finished and batches are being stored.
    pub fn is_ready(&self) -> bool {
        self.shared.ready.load(Ordering::Acquire)
    }

    /// The event index (per-lead instants) the send filters read.
    pub fn event_index(&self) -> &Arc<EventIndex> {
        &self.shared.events
    }

    /// The dedup index.
    pub fn dedup_index(&self) -> &Arc<DedupIndex> {
        &self.shared.dedup
    }

    /// Counters.
    pub fn stats(&self) -> &IngestStats {
        &self.shared.stats
    }

    /// Dedups and stores a prepared batch; resolves once its new rows are durable.
    ///
    /// # Errors
    /// The store's error, shared by every batch of the failed commit group.
    pub async fn store(&self, batch: Prepared) -> Result<Stored, Arc<StoreError>> {
        let (reply, rx) = oneshot::channel();
        let tx = self.tx.clone();
        // The channel is bounded: waiting for room happens off the async runtime.
        tokio::task::spawn_blocking(move || tx.send(Job { batch, reply }))
            .await
            .map_err(|_| Arc::new(StoreError::Stopped))?
            .map_err(|_| Arc::new(StoreError::Stopped))?;
        rx.await.map_err(|_| Arc::new(StoreError::Stopped))?
    }
}

impl Shared {
    fn run(&self, mut store: Box<dyn EventStore>, rx: Receiver<Job>) {
        let t = Instant::now();
        let mut warm = Vec::with_capacity(65_536);
        let flush = |warm: &mut Vec<crate::store::WarmRow>| {
            self.dedup.extend(warm.iter().map(|r| Probe {
                fingerprint: r.fingerprint,
                lead: leadstream_pipeline::lead_hash(r.org, r.phone),
            }));
            for r in warm.drain(..) {
                self.events
                    .record(r.org, &r.event_type, [(r.phone, r.occurred_at_ms)]);
            }
        };
        // A store that cannot be reached (ClickHouse restarting) is waited for. Rows a
        // failed attempt delivered are delivered again: both indexes are sets.
        let mut wait = std::time::Duration::from_millis(200);
        let scanned = loop {
            let scanned = store.scan(&mut |r| {
                warm.push(r);
                if warm.len() == warm.capacity() {
                    flush(&mut warm);
                }
            });
            flush(&mut warm);
            match scanned {
                Err(e) if e.is_unavailable() => {
                    tracing::warn!(error = %e, retry_in = ?wait, "warm-up: event store unavailable; retrying");
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(std::time::Duration::from_secs(10));
                }
                other => break other,
            }
        };
        match scanned {
            Ok(n) => {
                self.stats.warmed_keys.store(n, Ordering::Relaxed);
                tracing::info!(
                    keys = n,
                    elapsed_ms = t.elapsed().as_millis() as u64,
                    "indexes warmed from the event store"
                );
            }
            Err(e) => {
                // Without the index, dedup would be wrong: refuse to ingest at all.
                tracing::error!(error = %e, "warm-up failed; not accepting events");
                return;
            }
        }
        self.ready.store(true, Ordering::Release);

        let mut is_new = Vec::new();
        let mut probes = Vec::new();
        while let Ok(first) = rx.recv() {
            let mut group = vec![first];
            let mut rows = group[0].batch.rows.len();
            while rows < GROUP_ROWS {
                match rx.try_recv() {
                    Ok(j) => {
                        rows += j.batch.rows.len();
                        group.push(j);
                    }
                    Err(_) => break,
                }
            }
            self.commit_group(store.as_mut(), group, &mut probes, &mut is_new);
        }
    }

    fn commit_group(
        &self,
        store: &mut dyn EventStore,
        group: Vec<Job>,
        probes: &mut Vec<Probe>,
        is_new: &mut Vec<bool>,
    ) {
        // Per job: which rows are new, as a bitmap over its rows.
        let mut fresh: Vec<Vec<bool>> = Vec::with_capacity(group.len());
        let mut added: Vec<Probe> = Vec::new();
        for job in &group {
            probes.clear();
            probes.extend(job.batch.rows.iter().map(|r| r.probe));
            self.dedup.insert_batch(probes, is_new);
            added.extend(
                probes
                    .iter()
                    .zip(is_new.iter())
                    .filter(|(_, &n)| n)
                    .map(|(p, _)| *p),
            );
            fresh.push(is_new.clone());
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let to_store: Vec<StoredEvent<'_>> = group
            .iter()
            .zip(&fresh)
            .flat_map(|(job, new)| new_rows(&job.batch, new))
            .collect();
        match store.append(&to_store, now) {
            Ok(_) => {
                self.stats.commits.fetch_add(1, Ordering::Relaxed);
                // Answer first: the event index is not part of what a 200 promises, and
                // filling it costs as much as a tenth of a batch's latency.
                let mut answered = Vec::with_capacity(group.len());
                for (Job { batch, reply }, new) in group.into_iter().zip(fresh) {
                    let inserted = new.iter().filter(|&&n| n).count();
                    let s = Stored {
                        inserted,
                        duplicates: batch.rows.len() - inserted,
                    };
                    self.stats.batches.fetch_add(1, Ordering::Relaxed);
                    self.stats
                        .inserted
                        .fetch_add(s.inserted as u64, Ordering::Relaxed);
                    self.stats
                        .duplicates
                        .fetch_add(s.duplicates as u64, Ordering::Relaxed);
                    let _ = reply.send(Ok(s));
                    answered.push((batch, new));
                }
                for (b, new) in &answered {
                    self.events.record(
                        b.org,
                        &b.event_type,
                        b.rows
                            .iter()
                            .zip(new)
                            .filter(|(_, &n)| n)
                            .map(|(r, _)| (r.phone, r.occurred_at_ms)),
                    );
                }
            }
            Err(e) => {
                tracing::error!(error = %e, batches = group.len(), "commit failed; batches refused");
                self.dedup.remove_all(&added);
                let e = Arc::new(e);
                for job in group {
                    let _ = job.reply.send(Err(e.clone()));
                }
            }
        }
    }
}
