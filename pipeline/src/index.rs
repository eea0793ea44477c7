//! The event index: per `(organization, eventType, phone)`, the sorted `occurredAt`
//! instants (UTC microseconds) of stored events. It answers the send filters' question "did this lead
//! have event X in `[T - window, T]`?" with one hash lookup and a binary search.
//!
//! Event types are interned per organization to a `u32`, so a key is 20 bytes.
//! Sharded by lead like the dedup index; readers take a shard's read lock.

use crate::event::{lead_hash, OrgId};
use crate::phone::Phone;
use parking_lot::RwLock;
use std::collections::HashMap;

type Instants = Vec<i64>;
const MICROS_PER_MINUTE: u64 = 60_000_000;
/// `(org, interned event type, phone digits)`.
type LeadKey = (OrgId, u32, u64);
type Shard = RwLock<HashMap<LeadKey, Instants>>;

/// Audiences at least this large are answered on several threads.
const PARALLEL_FROM: usize = 50_000;

/// The first instant inside the window ending at `at_us`.
pub fn window_start(at_us: i64, within_minutes: Option<u64>) -> i64 {
    match within_minutes {
        Some(m) => {
            at_us.saturating_sub(m.saturating_mul(MICROS_PER_MINUTE).min(i64::MAX as u64) as i64)
        }
        None => i64::MIN,
    }
}

/// Whether sorted `instants` has one in `[lo, hi]`.
fn in_window(instants: &[i64], lo: i64, hi: i64) -> bool {
    let first = instants.partition_point(|&x| x < lo);
    first < instants.len() && instants[first] <= hi
}

/// Per-lead event instants, sharded by lead.
pub struct EventIndex {
    types: RwLock<HashMap<(OrgId, Box<str>), u32>>,
    shards: Box<[Shard]>,
    mask: u64,
}

impl EventIndex {
    /// An empty index with `shards` shards (rounded up to a power of two).
    pub fn new(shards: usize) -> Self {
        let n = shards.max(1).next_power_of_two();
        Self {
            types: RwLock::new(HashMap::new()),
            shards: (0..n).map(|_| RwLock::new(HashMap::new())).collect(),
            mask: n as u64 - 1,
        }
    }

    fn type_id(&self, org: OrgId, event_type: &str) -> Option<u32> {
        self.types.read().get(&(org, event_type.into())).copied()
    }

    fn intern(&self, org: OrgId, event_type: &str) -> u32 {
        if let Some(id) = self.type_id(org, event_type) {
            return id;
        }
        let mut types = self.types.write();
        let next = types.len() as u32;
        *types.entry((org, event_type.into())).or_insert(next)
    }

    fn shard_of(&self, org: OrgId, phone: Phone) -> usize {
        ((lead_hash(org, phone) >> 40) & self.mask) as usize
    }

    fn shard(&self, org: OrgId, phone: Phone) -> &Shard {
        &self.shards[self.shard_of(org, phone)]
    }

    /// Records stored events of one type for one organization.
    pub fn record(
        &self,
        org: OrgId,
        event_type: &str,
        events: impl IntoIterator<Item = (Phone, i64)>,
    ) {
        let t = self.intern(org, event_type);
        for (phone, at) in events {
            let mut shard = self.shard(org, phone).write();
            let v = shard.entry((org, t, phone.0)).or_default();
            if let Err(pos) = v.binary_search(&at) {
                v.insert(pos, at);
            }
        }
    }

    /// The instants of a lead's events of one type, oldest first.
    pub fn occurrences(&self, org: OrgId, event_type: &str, phone: Phone) -> Vec<i64> {
        let Some(t) = self.type_id(org, event_type) else {
            return Vec::new();
        };
        self.shard(org, phone)
            .read()
            .get(&(org, t, phone.0))
            .cloned()
            .unwrap_or_default()
    }

    /// Whether the lead has an event of this type with
    /// `at_us - within_minutes <= occurredAt <= at_us` (instants in UTC microseconds);
    /// with no window, any `occurredAt <= at_us`. This is the send filter's "has the
    /// event" at instant T.
    pub fn has_event(
        &self,
        org: OrgId,
        event_type: &str,
        phone: Phone,
        at_us: i64,
        within_minutes: Option<u64>,
    ) -> bool {
        let Some(t) = self.type_id(org, event_type) else {
            return false;
        };
        let shard = self.shard(org, phone).read();
        let Some(v) = shard.get(&(org, t, phone.0)) else {
            return false;
        };
        in_window(v, window_start(at_us, within_minutes), at_us)
    }

    /// [`has_event`](Self::has_event) for many leads at once: answer `i` is for
    /// `phones[i]`. Leads are grouped by shard, each shard read under one lock, and
    /// large audiences are split over the machine's cores.
    pub fn have_event(
        &self,
        org: OrgId,
        event_type: &str,
        phones: &[Phone],
        at_us: i64,
        within_minutes: Option<u64>,
    ) -> Vec<bool> {
        let mut answers = vec![false; phones.len()];
        let Some(t) = self.type_id(org, event_type) else {
            return answers;
        };
        let lo = window_start(at_us, within_minutes);
        // Positions of the phones, by shard.
        let mut by_shard: Vec<Vec<u32>> = vec![Vec::new(); self.shards.len()];
        for (i, &p) in phones.iter().enumerate() {
            by_shard[self.shard_of(org, p)].push(i as u32);
        }
        let answer_shard = |shard: usize, positions: &[u32]| -> Vec<(u32, bool)> {
            let map = self.shards[shard].read();
            positions
                .iter()
                .map(|&i| {
                    let has = map
                        .get(&(org, t, phones[i as usize].0))
                        .is_some_and(|v| in_window(v, lo, at_us));
                    (i, has)
                })
                .collect()
        };
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        if phones.len() < PARALLEL_FROM || threads < 2 {
            for (shard, positions) in by_shard.iter().enumerate() {
                for (i, has) in answer_shard(shard, positions) {
                    answers[i as usize] = has;
                }
            }
            return answers;
        }
        let per_thread = by_shard.len().div_ceil(threads);
        let parts: Vec<Vec<(u32, bool)>> = std::thread::scope(|scope| {
            let handles: Vec<_> = by_shard
                .chunks(per_thread)
                .enumerate()
                .map(|(c, chunk)| {
                    let answer_shard = &answer_shard;
                    scope.spawn(move || {
                        let mut out = Vec::new();
                        for (k, positions) in chunk.iter().enumerate() {
                            out.extend(answer_shard(c * per_thread + k, positions));
                        }
                        out
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("an index reader panicked"))
                .collect()
        });
        for (i, has) in parts.into_iter().flatten() {
            answers[i as usize] = has;
        }
        answers
    }

    /// Drops every lead for which `keep(org, phone)` is false; answers how many
    /// (org, type, lead) entries went. What a process does with the leads of raw
    /// partitions revoked from it.
    pub fn retain_leads(&self, mut keep: impl FnMut(OrgId, Phone) -> bool) -> usize {
        let mut dropped = 0;
        for shard in self.shards.iter() {
            let mut map = shard.write();
            let before = map.len();
            map.retain(|&(org, _, phone), _| keep(org, Phone(phone)));
            dropped += before - map.len();
        }
        dropped
    }

    /// Number of distinct (org, type, lead) entries.
    pub fn leads(&self) -> usize {
        self.shards.iter().map(|s| s.read().len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000_000;

    #[test]
    fn window_is_inclusive_at_both_ends() {
        let idx = EventIndex::new(4);
        let p = Phone(15551234567);
        idx.record(42, "webinar_attended", [(p, 100 * MIN)]);
        assert!(idx.has_event(42, "webinar_attended", p, 100 * MIN, Some(0)));
        assert!(idx.has_event(42, "webinar_attended", p, 220 * MIN, Some(120)));
        assert!(!idx.has_event(42, "webinar_attended", p, 220 * MIN + 1, Some(120)));
        assert!(
            !idx.has_event(42, "webinar_attended", p, 100 * MIN - 1, None),
            "future events do not count"
        );
        assert!(
            idx.has_event(42, "webinar_attended", p, i64::MAX, None),
            "no window: sticky"
        );
    }

    #[test]
    fn scoped_by_org_type_and_phone() {
        let idx = EventIndex::new(4);
        let p = Phone(15551234567);
        idx.record(42, "mastery_purchase", [(p, 5), (p, 1), (p, 5)]);
        assert_eq!(idx.occurrences(42, "mastery_purchase", p), [1, 5]);
        assert!(!idx.has_event(43, "mastery_purchase", p, 10, None));
        assert!(!idx.has_event(42, "trial_started", p, 10, None));
        assert!(!idx.has_event(42, "mastery_purchase", Phone(447700900123), 10, None));
        assert!(!idx.has_event(42, "mastery_purchase", p, 2, Some(0)));
        assert!(idx.has_event(42, "mastery_purchase", p, 5, Some(0)));
    }

    #[test]
    fn have_event_answers_like_has_event_for_a_whole_audience() {
        let idx = EventIndex::new(16);
        let phones: Vec<Phone> = (0..120_000u64).map(|i| Phone(15550000000 + i)).collect();
        for (i, p) in phones.iter().enumerate() {
            if i % 3 != 0 {
                idx.record(42, "t", [(*p, (i as i64 % 500) * MIN)]);
            }
        }
        for within in [None, Some(100), Some(0)] {
            let many = idx.have_event(42, "t", &phones, 400 * MIN, within);
            for (p, has) in phones.iter().zip(&many) {
                assert_eq!(
                    *has,
                    idx.has_event(42, "t", *p, 400 * MIN, within),
                    "{p:?} {within:?}"
                );
            }
            assert!(many.iter().any(|h| *h) && many.iter().any(|h| !*h));
        }
        assert!(idx
            .have_event(42, "other", &phones[..10], 400 * MIN, None)
            .iter()
            .all(|h| !h));
    }

    #[test]
    fn retain_leads_drops_only_the_leads_not_kept() {
        let idx = EventIndex::new(8);
        for p in 0..100u64 {
            idx.record(42, "a", [(Phone(15550000000 + p), 1)]);
            idx.record(42, "b", [(Phone(15550000000 + p), 2)]);
        }
        let dropped = idx.retain_leads(|org, phone| org == 42 && phone.0 % 2 == 0);
        assert_eq!(dropped, 100);
        assert_eq!(idx.leads(), 100);
        assert!(idx.has_event(42, "a", Phone(15550000002), 5, None));
        assert!(!idx.has_event(42, "b", Phone(15550000003), 5, None));
    }
}
