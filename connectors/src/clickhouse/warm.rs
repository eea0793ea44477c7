//! The multi-process [`PartitionWarmer`]: several `leadstream serve` processes in one
//! consumer group, sharing one ClickHouse.
//!
//! Each process warms its whole index from ClickHouse at start-up, but afterwards the
//! other members keep storing keys for the leads of the partitions they own. When a
//! raw partition moves to this process, [`ClickHouseWarmer`] reads the keys stored
//! for that partition's leads ([`ClickHouseStore::scan_partitions`]) into the dedup
//! and event indexes before anything from the partition is stored here.
//!
//! It runs inside the rebalance callback and blocks it until the keys are loaded (or
//! the store is back, retrying with `[store.retry]`; it never goes on unwarmed). That is what makes it safe: the callback
//! runs inside the consumer's poll, so no record of the new partitions is handed out,
//! let alone stored, before the warm-up finished. The cost is that the consumer reads
//! nothing meanwhile; a warm-up must finish within `max.poll.interval.ms` (5 minutes
//! by default) or the group considers the member gone and rebalances again.

use super::ClickHouseStore;
use crate::kafka::PartitionWarmer;
use crate::store::{StoreError, WarmRow};
use crate::writer::EventWriter;
use leadstream_pipeline::retry::Backoff;
use leadstream_pipeline::{lead_hash, Probe};
use parking_lot::Mutex;
use std::time::{Duration, Instant};

/// Rows buffered before they are added to the indexes.
const FLUSH_ROWS: usize = 65_536;

/// Warms the indexes of an [`EventWriter`] for newly assigned raw partitions from
/// ClickHouse, over a connection of its own (the writer owns the other one).
pub struct ClickHouseWarmer {
    /// `None` only while being dropped.
    store: Mutex<Option<ClickHouseStore>>,
    writer: EventWriter,
    retry: Backoff,
}

impl ClickHouseWarmer {
    /// A warmer reading through `store` (a second connection to the writer's database)
    /// into `writer`'s indexes, retrying a failed read with `retry` (`[store.retry]`).
    pub fn new(store: ClickHouseStore, writer: EventWriter, retry: Backoff) -> Self {
        Self {
            store: Mutex::new(Some(store)),
            writer,
            retry,
        }
    }

    /// Loads the keys of the leads of `partitions` into the indexes, retrying until
    /// the store answers; returns how many keys were read. Blocking: must not run on an
    /// async runtime's thread ([`warm`](PartitionWarmer::warm) takes care of that).
    pub fn warm_blocking(&self, partitions: &[i32], partition_count: i32) -> u64 {
        let mut guard = self.store.lock();
        let Some(store) = guard.as_mut() else {
            return 0;
        };
        let (dedup, events) = (self.writer.dedup_index(), self.writer.event_index());
        let mut buf: Vec<WarmRow> = Vec::with_capacity(FLUSH_ROWS);
        let flush = |buf: &mut Vec<WarmRow>| {
            dedup.extend(buf.iter().map(|r| Probe {
                fingerprint: r.fingerprint,
                lead: lead_hash(r.org, r.phone),
            }));
            for r in buf.drain(..) {
                events.record(r.org, &r.event_type, [(r.phone, r.occurred_at_us)]);
            }
        };
        let mut backoff = self.retry.schedule(rand::random());
        loop {
            // Rows a failed attempt delivered are delivered again: both indexes are sets.
            let scanned = store.scan_partitions(partitions, partition_count, &mut |r| {
                buf.push(r);
                if buf.len() == FLUSH_ROWS {
                    flush(&mut buf);
                }
            });
            flush(&mut buf);
            match scanned {
                Ok(n) => return n,
                Err(e) => {
                    let wait = backoff.next_delay();
                    log_failure(&e, partitions, wait);
                    std::thread::sleep(wait);
                }
            }
        }
    }
}

/// A store that is unavailable is waited for; any other error too (going on unwarmed
/// would store duplicates), but louder, since a retry may not fix it.
fn log_failure(e: &StoreError, partitions: &[i32], wait: Duration) {
    if e.is_unavailable() {
        tracing::warn!(error = %e, ?partitions, retry_in = ?wait, "partition warm-up: ClickHouse unavailable; retrying (the consumer waits)");
    } else {
        tracing::error!(error = %e, ?partitions, retry_in = ?wait, "partition warm-up failed; retrying (the consumer waits)");
    }
}

impl PartitionWarmer for ClickHouseWarmer {
    /// Called with the partitions newly assigned (the hook already leaves out those
    /// this process still owned). Blocks the rebalance callback until they are warm.
    fn warm(&self, partitions: &[i32], partition_count: i32) {
        if partitions.is_empty() {
            return;
        }
        let t = Instant::now();
        // The store blocks on its own runtime, which cannot be entered from an async
        // runtime's thread (the callback runs inside the consumer's poll, on a tokio
        // worker): run it on a thread of its own and wait for it.
        let keys = std::thread::scope(|s| {
            std::thread::Builder::new()
                .name("leadstream-warm".into())
                .spawn_scoped(s, || self.warm_blocking(partitions, partition_count))
                .expect("spawn warm-up thread")
                .join()
                .expect("warm-up thread panicked")
        });
        tracing::info!(
            ?partitions,
            partition_count,
            keys,
            elapsed_ms = t.elapsed().as_millis() as u64,
            "partitions assigned; their stored keys are in the index"
        );
    }

    /// Drops the leads of the revoked partitions from the event index: their events
    /// are now the owners' to index, and a partition assigned back is warmed again.
    /// (The dedup index keeps their keys: it holds fingerprints without their lead, and
    /// a key it still holds is only ever a true duplicate.)
    fn revoked(&self, partitions: &[i32], partition_count: i32) {
        let dropped = self.writer.event_index().retain_leads(|org, phone| {
            !partitions.contains(&crate::kafka::partition_for(org, phone, partition_count))
        });
        tracing::info!(
            ?partitions,
            dropped,
            "partitions revoked; their leads left the event index"
        );
    }
}

impl Drop for ClickHouseWarmer {
    fn drop(&mut self) {
        // The store owns a tokio runtime, which panics when dropped on an async
        // runtime's thread (where the consumer may be dropped): drop it on its own.
        if let Some(store) = self.store.get_mut().take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                let _ = std::thread::Builder::new()
                    .name("leadstream-warm-drop".into())
                    .spawn(move || drop(store));
            } else {
                drop(store);
            }
        }
    }
}
