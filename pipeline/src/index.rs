//! The event index: per `(organization, eventType, phone)`, the sorted `occurredAt`
//! instants of stored events. It answers the send filters' question "did this lead
//! have event X in `[T - window, T]`?" with one hash lookup and a binary search.
//!
//! Event types are interned per organization to a `u32`, so a key is 20 bytes.
//! Sharded by lead like the dedup index; readers take a shard's read lock.

use crate::event::{lead_hash, OrgId};
use crate::phone::Phone;
use parking_lot::RwLock;
use std::collections::HashMap;

type Instants = Vec<i64>;
/// `(org, interned event type, phone digits)`.
type LeadKey = (OrgId, u32, u64);
type Shard = RwLock<HashMap<LeadKey, Instants>>;

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

    fn shard(&self, org: OrgId, phone: Phone) -> &Shard {
        &self.shards[((lead_hash(org, phone) >> 40) & self.mask) as usize]
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
    /// `at_ms - within_minutes <= occurredAt <= at_ms`; with no window, any
    /// `occurredAt <= at_ms`. This is the send filter's "has the event" at instant T.
    pub fn has_event(
        &self,
        org: OrgId,
        event_type: &str,
        phone: Phone,
        at_ms: i64,
        within_minutes: Option<u64>,
    ) -> bool {
        let Some(t) = self.type_id(org, event_type) else {
            return false;
        };
        let shard = self.shard(org, phone).read();
        let Some(v) = shard.get(&(org, t, phone.0)) else {
            return false;
        };
        let lo = match within_minutes {
            Some(m) => at_ms.saturating_sub(m.saturating_mul(60_000).min(i64::MAX as u64) as i64),
            None => i64::MIN,
        };
        let first = v.partition_point(|&x| x < lo);
        first < v.len() && v[first] <= at_ms
    }

    /// Number of distinct (org, type, lead) entries.
    pub fn leads(&self) -> usize {
        self.shards.iter().map(|s| s.read().len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

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
}
