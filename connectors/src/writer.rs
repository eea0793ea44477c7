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
//! the index again and every batch in it gets the error: nothing was stored (or, with
//! ClickHouse, only rows a retry does not duplicate).
//!
//! A group the store refuses for good ([`StoreError::Rejected`]: a value its schema
//! does not accept) is written again batch by batch, so only the batch holding the
//! refused row gets the error and its neighbours in the group are stored.

use crate::store::{EventStore, SqliteStore, StoreError, StoredEvent};
use crossbeam_channel::{Receiver, Sender};
use leadstream_pipeline::retry::Backoff;
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

/// A failed store call: the error, and the batch back when the writer had it.
type Refused = (Arc<StoreError>, Option<Prepared>);

struct Job {
    batch: Prepared,
    reply: oneshot::Sender<Result<Stored, Refused>>,
}

/// What [`EventWriter::store_isolating_refusals`] came to.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Isolated {
    /// Counts of the rows that were stored (or found duplicates).
    pub stored: Stored,
    /// Rows the store refused for good: their position in the batch, and why.
    pub refused: Vec<(usize, String)>,
    /// Store calls made.
    pub attempts: usize,
}

/// Counters for `/metrics`-style reporting and tests.
#[derive(Debug, Default)]
pub struct WriterStats {
    pub inserted: AtomicU64,
    pub duplicates: AtomicU64,
    pub commits: AtomicU64,
    pub warmed_keys: AtomicU64,
}

/// Handle to the writer thread. Cheap to clone; the thread stops when the last
/// handle is dropped.
#[derive(Clone)]
pub struct EventWriter {
    tx: Sender<Job>,
    shared: Arc<Shared>,
}

/// What the handles and the writer thread share.
struct Shared {
    dedup: Arc<DedupIndex>,
    events: Arc<EventIndex>,
    ready: AtomicBool,
    stats: WriterStats,
    /// Commit groups answered so far, and how many of them are in the event index:
    /// the index is filled just after the answers, so a reader that must see every
    /// acknowledged event waits for `indexed` to reach `answered` ([`EventWriter::indexed_now`]).
    answered: AtomicU64,
    indexed: AtomicU64,
    indexed_changed: tokio::sync::Notify,
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
            occurred_at_us: r.occurred_at_us,
            metadata: r.metadata.as_deref(),
            probe: r.probe,
        })
}

/// The writer's dedup step for one batch: offers its rows' fingerprints to `dedup` in
/// order; `is_new[i]` tells whether `batch.rows[i]` was new (`probes` is scratch).
pub fn dedup_batch(
    dedup: &DedupIndex,
    batch: &Prepared,
    probes: &mut Vec<Probe>,
    is_new: &mut Vec<bool>,
) {
    probes.clear();
    probes.extend(batch.rows.iter().map(|r| r.probe));
    dedup.insert_batch(probes, is_new);
}

/// The writer's last step for one stored batch: its new rows into the event index.
pub fn record_new(events: &EventIndex, batch: &Prepared, is_new: &[bool]) {
    events.record(
        batch.org,
        &batch.event_type,
        batch
            .rows
            .iter()
            .zip(is_new)
            .filter(|(_, &n)| n)
            .map(|(r, _)| (r.phone, r.occurred_at_us)),
    );
}

/// Now, as the `ingested_at` the stores keep (UTC milliseconds).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Rows per commit group at most; a single batch is never split.
const GROUP_ROWS: usize = 200_000;

impl EventWriter {
    /// Opens the SQLite store in `dir` and starts the writer thread, which first warms
    /// the dedup and event indexes from the store (retrying with `warm_retry`,
    /// `[store.retry]`, while it is unavailable); [`EventWriter::is_ready`] turns true
    /// when that is done. Batches sent before then wait for it.
    ///
    /// # Errors
    /// [`StoreError::Open`] when the store cannot be opened.
    pub fn start(dir: &Path, shards: usize, warm_retry: Backoff) -> Result<Self, StoreError> {
        Ok(Self::with_store(
            Box::new(SqliteStore::open(dir)?),
            shards,
            warm_retry,
        ))
    }

    /// Like [`EventWriter::start`], with any [`EventStore`] (ClickHouse in production).
    pub fn with_store(store: Box<dyn EventStore>, shards: usize, warm_retry: Backoff) -> Self {
        let (tx, rx) = crossbeam_channel::bounded::<Job>(1024);
        let shared = Arc::new(Shared {
            dedup: Arc::new(DedupIndex::new(shards)),
            events: Arc::new(EventIndex::new(shards)),
            ready: AtomicBool::new(false),
            stats: WriterStats::default(),
            answered: AtomicU64::new(0),
            indexed: AtomicU64::new(0),
            indexed_changed: tokio::sync::Notify::new(),
        });
        let w = shared.clone();
        std::thread::Builder::new()
            .name("leadstream-writer".into())
            .spawn(move || w.run(store, rx, warm_retry))
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

    /// Resolves once every event acknowledged before the call (a 200, or a committed
    /// Kafka offset) is in the [`event_index`](Self::event_index): read your writes.
    /// The writer fills the index right after answering, so this waits at most for
    /// the indexing of the commit groups already answered.
    pub async fn indexed_now(&self) {
        let target = self.shared.answered.load(Ordering::Acquire);
        loop {
            let changed = self.shared.indexed_changed.notified();
            if self.shared.indexed.load(Ordering::Acquire) >= target {
                return;
            }
            changed.await;
        }
    }

    /// The dedup index.
    pub fn dedup_index(&self) -> &Arc<DedupIndex> {
        &self.shared.dedup
    }

    /// Counters.
    pub fn stats(&self) -> &WriterStats {
        &self.shared.stats
    }

    /// Dedups and stores a prepared batch; resolves once its new rows are durable.
    ///
    /// # Errors
    /// The store's error, shared by every batch of the failed commit group.
    pub async fn store(&self, batch: Prepared) -> Result<Stored, Arc<StoreError>> {
        self.store_or_return(batch).await.map_err(|(e, _)| e)
    }

    /// Like [`store`](Self::store), giving the batch back with the error, so a caller
    /// can retry part of it without having cloned it first.
    ///
    /// # Errors
    /// As [`store`](Self::store); the batch is `None` only when the writer stopped.
    pub async fn store_or_return(&self, batch: Prepared) -> Result<Stored, Refused> {
        let stopped = || Arc::new(StoreError::Stopped);
        let (reply, rx) = oneshot::channel();
        let tx = self.tx.clone();
        // The channel is bounded: waiting for room happens off the async runtime.
        match tokio::task::spawn_blocking(move || tx.send(Job { batch, reply })).await {
            Ok(Ok(())) => {}
            Ok(Err(crossbeam_channel::SendError(job))) => return Err((stopped(), Some(job.batch))),
            Err(_) => return Err((stopped(), None)),
        }
        rx.await.map_err(|_| (stopped(), None))?
    }

    /// Stores `batch` and, when the store refuses it for good
    /// ([`StoreError::Rejected`]), finds the refused rows by splitting: each refused
    /// part is stored again as two halves, down to single rows, so every row the store
    /// accepts is stored and only the refused ones are returned (with the store's
    /// reason). `k` refused rows among `n` cost about `2k·log₂(n)` store calls. After
    /// `max_attempts` calls the parts still refused are returned whole, each of their
    /// rows with the reason and a note that it was not isolated.
    ///
    /// # Errors
    /// Any error but [`StoreError::Rejected`] (unavailable, failed, stopped), at once:
    /// rows stored by earlier parts come back as duplicates when the caller retries.
    pub async fn store_isolating_refusals(
        &self,
        batch: Prepared,
        max_attempts: usize,
    ) -> Result<Isolated, Arc<StoreError>> {
        let mut out = Isolated::default();
        let mut pending = vec![(0usize, batch)];
        while let Some((offset, part)) = pending.pop() {
            out.attempts += 1;
            match self.store_or_return(part).await {
                Ok(s) => {
                    out.stored.inserted += s.inserted;
                    out.stored.duplicates += s.duplicates;
                }
                Err((e, Some(mut part))) if e.is_rejected() => {
                    let n = part.rows.len();
                    if n == 1 {
                        out.refused.push((offset, e.to_string()));
                    } else if out.attempts + pending.len() + 2 > max_attempts {
                        let why = format!("{e} (not isolated: the store refused these {n} rows together and the search stopped after {max_attempts} attempts)");
                        out.refused
                            .extend((offset..offset + n).map(|i| (i, why.clone())));
                    } else {
                        let tail = part.rows.split_off(n / 2);
                        part.received = part.rows.len();
                        let second = Prepared {
                            org: part.org,
                            event_type: part.event_type.clone(),
                            received: tail.len(),
                            rows: tail,
                            rejected: 0,
                            rejects: Vec::new(),
                        };
                        // A stack: the first half is tried first.
                        pending.push((offset + n / 2, second));
                        pending.push((offset, part));
                    }
                }
                Err((e, _)) => return Err(e),
            }
        }
        out.refused.sort_by_key(|r| r.0);
        Ok(out)
    }
}

impl Shared {
    fn run(&self, mut store: Box<dyn EventStore>, rx: Receiver<Job>, warm_retry: Backoff) {
        let t = Instant::now();
        let mut warm = Vec::with_capacity(65_536);
        let flush = |warm: &mut Vec<crate::store::WarmRow>| {
            self.dedup.extend(warm.iter().map(|r| Probe {
                fingerprint: r.fingerprint,
                lead: leadstream_pipeline::lead_hash(r.org, r.phone),
            }));
            for r in warm.drain(..) {
                self.events
                    .record(r.org, &r.event_type, [(r.phone, r.occurred_at_us)]);
            }
        };
        // A store that cannot be reached (ClickHouse restarting) is waited for. Rows a
        // failed attempt delivered are delivered again: both indexes are sets.
        let mut backoff = warm_retry.schedule(rand::random());
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
                    let wait = backoff.next_delay();
                    tracing::warn!(error = %e, retry_in = ?wait, attempt = backoff.attempts(), "warm-up: event store unavailable; retrying");
                    std::thread::sleep(wait);
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
            dedup_batch(&self.dedup, &job.batch, probes, is_new);
            added.extend(
                probes
                    .iter()
                    .zip(is_new.iter())
                    .filter(|(_, &n)| n)
                    .map(|(p, _)| *p),
            );
            fresh.push(is_new.clone());
        }
        let now = now_ms();
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
                let group_no = self.answered.fetch_add(1, Ordering::AcqRel) + 1;
                let mut answered = Vec::with_capacity(group.len());
                for (Job { batch, reply }, new) in group.into_iter().zip(fresh) {
                    let inserted = new.iter().filter(|&&n| n).count();
                    let s = Stored {
                        inserted,
                        duplicates: batch.rows.len() - inserted,
                    };
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
                    record_new(&self.events, b, new);
                }
                self.indexed.store(group_no, Ordering::Release);
                self.indexed_changed.notify_waiters();
            }
            Err(e) if e.is_rejected() && group.len() > 1 => {
                // One batch's row may be to blame: do not fail the others with it.
                tracing::warn!(error = %e, batches = group.len(), "the store refused a commit group; storing its batches one by one");
                self.dedup.remove_all(&added);
                drop(to_store);
                for job in group {
                    self.commit_group(store, vec![job], probes, is_new);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, batches = group.len(), "commit failed; batches refused");
                self.dedup.remove_all(&added);
                let e = Arc::new(e);
                for Job { batch, reply } in group {
                    let _ = reply.send(Err((e.clone(), Some(batch))));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::WarmRow;
    use leadstream_pipeline::{EventKey, Phone, Row};
    use parking_lot::Mutex;

    /// A store that refuses any append holding a row of a poisoned phone, and counts
    /// its calls.
    struct Picky {
        poison: Vec<Phone>,
        stored: Arc<Mutex<Vec<Phone>>>,
    }

    impl EventStore for Picky {
        fn append(&mut self, rows: &[StoredEvent<'_>], _: i64) -> Result<usize, StoreError> {
            if let Some(bad) = rows.iter().find(|r| self.poison.contains(&r.phone)) {
                return Err(StoreError::rejected(
                    "append",
                    format!("phone {} is poison", bad.phone),
                ));
            }
            self.stored.lock().extend(rows.iter().map(|r| r.phone));
            Ok(rows.len())
        }
        fn scan(&mut self, _: &mut dyn FnMut(WarmRow)) -> Result<u64, StoreError> {
            Ok(0)
        }
    }

    fn batch(phones: impl IntoIterator<Item = u64>) -> Prepared {
        let rows: Vec<Row> = phones
            .into_iter()
            .map(|p| {
                let key = EventKey {
                    org: 1,
                    phone: Phone(p),
                    event_type: "t",
                    occurred_at_us: 7,
                };
                Row {
                    phone: key.phone,
                    occurred_at_us: 7,
                    metadata: None,
                    probe: Probe {
                        fingerprint: key.fingerprint(),
                        lead: key.lead_hash(),
                    },
                }
            })
            .collect();
        Prepared {
            org: 1,
            event_type: "t".into(),
            received: rows.len(),
            rows,
            rejected: 0,
            rejects: Vec::new(),
        }
    }

    fn writer(poison: &[u64]) -> (EventWriter, Arc<Mutex<Vec<Phone>>>) {
        let stored = Arc::new(Mutex::new(Vec::new()));
        let store = Picky {
            poison: poison.iter().map(|&p| Phone(p)).collect(),
            stored: stored.clone(),
        };
        (
            EventWriter::with_store(Box::new(store), 4, Backoff::default()),
            stored,
        )
    }

    #[tokio::test]
    async fn refused_rows_are_found_by_splitting_and_the_rest_is_stored() {
        let (ing, stored) = writer(&[1_017, 1_090]);
        let out = ing
            .store_isolating_refusals(batch(1_000..1_100), 1_000)
            .await
            .unwrap();
        assert_eq!(
            out.refused.iter().map(|r| r.0).collect::<Vec<_>>(),
            [17, 90]
        );
        assert!(
            out.refused[0].1.contains("phone +1017 is poison"),
            "{:?}",
            out.refused
        );
        assert_eq!(
            out.stored,
            Stored {
                inserted: 98,
                duplicates: 0
            }
        );
        assert!(out.attempts <= 2 * 2 * 7 + 1, "{} attempts", out.attempts);
        assert_eq!(stored.lock().len(), 98);
        // The refused keys are not remembered as stored: sent again, the good rows are
        // duplicates and the refused ones refused again.
        let again = ing
            .store_isolating_refusals(batch(1_000..1_100), 1_000)
            .await
            .unwrap();
        assert_eq!(
            (again.stored, again.refused.len()),
            (
                Stored {
                    inserted: 0,
                    duplicates: 98
                },
                2
            )
        );
    }

    #[tokio::test]
    async fn the_search_stops_after_its_budget_and_refuses_the_rest_whole() {
        let (ing, stored) = writer(&(2_000..2_064).collect::<Vec<_>>());
        let out = ing
            .store_isolating_refusals(batch(2_000..2_064), 8)
            .await
            .unwrap();
        assert_eq!(out.refused.len(), 64);
        assert!(out.attempts <= 8, "{}", out.attempts);
        assert!(
            out.refused.iter().any(|r| r.1.contains("not isolated")),
            "{:?}",
            out.refused
        );
        assert!(stored.lock().is_empty());
    }

    #[tokio::test]
    async fn a_refused_batch_does_not_fail_the_batches_committed_with_it() {
        let (ing, stored) = writer(&[3_005]);
        // Queue several at once so the writer groups them.
        let tasks: Vec<_> = [
            batch(3_000..3_010),
            batch(3_010..3_020),
            batch(3_020..3_030),
        ]
        .into_iter()
        .map(|b| {
            let ing = ing.clone();
            crate::tasks::spawn(async move { ing.store(b).await })
        })
        .collect();
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.unwrap());
        }
        assert!(
            results[0].as_ref().is_err_and(|e| e.is_rejected()),
            "{:?}",
            results[0]
        );
        assert_eq!(results[1].as_ref().unwrap().inserted, 10);
        assert_eq!(results[2].as_ref().unwrap().inserted, 10);
        assert_eq!(stored.lock().len(), 20);
    }
}
