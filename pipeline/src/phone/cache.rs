//! Bounded, sharded cache of slow-path (full rlibphonenumber parse) results.
//!
//! Fixed capacity: `SHARDS * SLOTS_PER_SHARD` direct-mapped slots, keyed by
//! the raw input (inputs longer than [`MAX_KEY_LEN`] bytes are not cached),
//! so memory is bounded whatever the traffic. Each shard has its own small
//! mutex, held only for a slot compare/replace, never while parsing; the
//! fast path never touches this cache.

use parking_lot::Mutex;
use xxhash_rust::xxh3::xxh3_64;

use super::Phone;

const SHARDS: usize = 64;
const SLOTS_PER_SHARD: usize = 512;
/// Longer inputs are parsed every time instead of being cached.
pub(crate) const MAX_KEY_LEN: usize = 96;

struct Entry {
    hash: u64,
    key: Box<str>,
    value: Option<Phone>,
}

/// One shard: a fixed array of direct-mapped slots.
type Shard = Mutex<Box<[Option<Entry>]>>;

pub(crate) struct FallbackCache {
    shards: Box<[Shard]>,
}

impl FallbackCache {
    pub(crate) fn new() -> Self {
        let shards = (0..SHARDS)
            .map(|_| {
                Mutex::new(
                    (0..SLOTS_PER_SHARD)
                        .map(|_| None)
                        .collect::<Vec<_>>()
                        .into_boxed_slice(),
                )
            })
            .collect::<Vec<_>>()
            .into_boxed_slice();
        FallbackCache { shards }
    }

    /// Total number of entries the cache can hold.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) const fn capacity() -> usize {
        SHARDS * SLOTS_PER_SHARD
    }

    #[inline]
    fn locate(hash: u64) -> (usize, usize) {
        let shard = (hash >> 58) as usize % SHARDS;
        let slot = (hash as usize) % SLOTS_PER_SHARD;
        (shard, slot)
    }

    /// `Some(answer)` when `raw` is cached.
    pub(crate) fn get(&self, raw: &str) -> Option<Option<Phone>> {
        if raw.len() > MAX_KEY_LEN {
            return None;
        }
        let hash = xxh3_64(raw.as_bytes());
        let (shard, slot) = Self::locate(hash);
        let guard = self.shards[shard].lock();
        match &guard[slot] {
            Some(e) if e.hash == hash && &*e.key == raw => Some(e.value),
            _ => None,
        }
    }

    /// Stores the answer for `raw`, evicting whatever shared its slot.
    pub(crate) fn insert(&self, raw: &str, value: Option<Phone>) {
        if raw.len() > MAX_KEY_LEN {
            return;
        }
        let hash = xxh3_64(raw.as_bytes());
        let (shard, slot) = Self::locate(hash);
        // Allocate outside the lock.
        let entry = Entry {
            hash,
            key: raw.into(),
            value,
        };
        let evicted = self.shards[shard].lock()[slot].replace(entry);
        // Free the evicted key outside the lock.
        drop(evicted);
    }

    /// Number of occupied slots (for tests and diagnostics).
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().iter().filter(|e| e.is_some()).count())
            .sum()
    }
}
