//! The dedup index: which event keys are already stored.
//!
//! Sharded by lead (`lead_hash`), each shard a `HashSet` of 128-bit [`Fingerprint`]s
//! behind its own mutex. Fingerprints are already uniform hashes, so the sets use an
//! identity hasher instead of hashing them again. Batches take each shard lock once.
//! See [`Fingerprint`] for the collision bound.

use crate::event::Fingerprint;
use parking_lot::Mutex;
use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

/// Identity hasher for values that are already hashes.
#[derive(Default, Clone, Copy)]
pub struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u128(&mut self, v: u128) {
        self.0 = (v as u64) ^ ((v >> 64) as u64);
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

type FpSet = HashSet<Fingerprint, BuildHasherDefault<IdentityHasher>>;

/// One entry of a batch offered to the index: the key's fingerprint and its lead hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub fingerprint: Fingerprint,
    pub lead: u64,
}

/// A sharded in-memory set of event-key fingerprints.
pub struct DedupIndex {
    shards: Box<[Mutex<FpSet>]>,
    mask: u64,
}

impl DedupIndex {
    /// An empty index with `shards` shards (rounded up to a power of two).
    pub fn new(shards: usize) -> Self {
        let n = shards.max(1).next_power_of_two();
        Self {
            shards: (0..n).map(|_| Mutex::new(FpSet::default())).collect(),
            mask: n as u64 - 1,
        }
    }

    /// The shard a lead's keys live in.
    pub fn shard_of(&self, lead: u64) -> usize {
        // The high bits: the low bits of `lead` are not used by anything else, but
        // keeping the shard choice independent of the set's own hashing is cheap.
        ((lead >> 40) & self.mask) as usize
    }

    /// Number of shards.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Adds one fingerprint. Returns `true` when it was not present.
    pub fn insert(&self, p: Probe) -> bool {
        self.shards[self.shard_of(p.lead)]
            .lock()
            .insert(p.fingerprint)
    }

    /// Whether a fingerprint is present.
    pub fn contains(&self, p: Probe) -> bool {
        self.shards[self.shard_of(p.lead)]
            .lock()
            .contains(&p.fingerprint)
    }

    /// Removes fingerprints (used to undo a batch whose store write failed).
    pub fn remove_all(&self, probes: &[Probe]) {
        for p in probes {
            self.shards[self.shard_of(p.lead)]
                .lock()
                .remove(&p.fingerprint);
        }
    }

    /// Inserts a batch, taking each shard's lock once. `is_new[i]` is set to whether
    /// `probes[i]` was absent before this call *and* before every earlier entry of the
    /// batch, so a key repeated inside the batch counts once as new, then as duplicate.
    pub fn insert_batch(&self, probes: &[Probe], is_new: &mut Vec<bool>) {
        is_new.clear();
        is_new.resize(probes.len(), false);
        if probes.len() < 64 {
            for (i, p) in probes.iter().enumerate() {
                is_new[i] = self.insert(*p);
            }
            return;
        }
        // Counting sort of entry indices by shard, then one lock per shard. Order
        // inside a shard is the batch order, so "first occurrence wins" holds.
        let n = self.shards.len();
        let mut starts = vec![0u32; n + 1];
        for p in probes {
            starts[self.shard_of(p.lead) + 1] += 1;
        }
        for s in 0..n {
            starts[s + 1] += starts[s];
        }
        let mut order = vec![0u32; probes.len()];
        let mut fill = starts.clone();
        for (i, p) in probes.iter().enumerate() {
            let s = self.shard_of(p.lead);
            order[fill[s] as usize] = i as u32;
            fill[s] += 1;
        }
        for s in 0..n {
            let (a, b) = (starts[s] as usize, starts[s + 1] as usize);
            if a == b {
                continue;
            }
            let mut set = self.shards[s].lock();
            set.reserve(b - a);
            for &i in &order[a..b] {
                is_new[i as usize] = set.insert(probes[i as usize].fingerprint);
            }
        }
    }

    /// Adds fingerprints known to be stored (start-up warm-up); duplicates are ignored.
    pub fn extend<I: IntoIterator<Item = Probe>>(&self, probes: I) {
        for p in probes {
            self.shards[self.shard_of(p.lead)]
                .lock()
                .insert(p.fingerprint);
        }
    }

    /// Number of fingerprints held.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    /// Whether the index holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet as StdSet;

    fn probe(k: u64) -> Probe {
        Probe {
            fingerprint: Fingerprint(
                u128::from(k).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835),
            ),
            lead: k.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        }
    }

    #[test]
    fn repeated_key_in_one_batch_counts_once() {
        let idx = DedupIndex::new(8);
        let batch: Vec<Probe> = [1, 2, 1, 3, 2].iter().map(|&k| probe(k)).collect();
        let mut new = Vec::new();
        idx.insert_batch(&batch, &mut new);
        assert_eq!(new, [true, true, false, true, false]);
        idx.insert_batch(&batch, &mut new);
        assert_eq!(new, [false; 5]);
        assert_eq!(idx.len(), 3);
    }

    #[test]
    fn remove_undoes_a_batch() {
        let idx = DedupIndex::new(4);
        let batch: Vec<Probe> = (0..100).map(probe).collect();
        let mut new = Vec::new();
        idx.insert_batch(&batch, &mut new);
        idx.remove_all(&batch);
        assert!(idx.is_empty());
        idx.insert_batch(&batch, &mut new);
        assert!(new.iter().all(|&b| b));
    }

    proptest! {
        /// Dedup never admits a key twice, and admits every key once, in batch order.
        #[test]
        fn admits_each_key_exactly_once(batches in prop::collection::vec(prop::collection::vec(0u64..500, 0..300), 1..6)) {
            let idx = DedupIndex::new(16);
            let mut seen = StdSet::new();
            let mut new = Vec::new();
            for b in &batches {
                let probes: Vec<Probe> = b.iter().map(|&k| probe(k)).collect();
                idx.insert_batch(&probes, &mut new);
                for (k, n) in b.iter().zip(&new) {
                    prop_assert_eq!(*n, seen.insert(*k));
                }
            }
            prop_assert_eq!(idx.len(), seen.len());
        }
    }
}
