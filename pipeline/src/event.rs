//! The lead-event model: the unique key, its fingerprint and the lead a key belongs to.

use crate::phone::Phone;
use xxhash_rust::xxh3::{xxh3_128, xxh3_64};

/// An organization's id, as given in `organizationId`.
pub type OrgId = i64;

/// The unique key of a lead event: `(organizationId, phoneE164, eventType, occurredAt)`,
/// with the phone normalized and `occurredAt` as UTC milliseconds, so two spellings of
/// one instant or one number are one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventKey<'a> {
    pub org: OrgId,
    pub phone: Phone,
    pub event_type: &'a str,
    pub occurred_at_ms: i64,
}

/// A 128-bit fingerprint of an [`EventKey`] (xxh3-128 over a length-prefixed encoding).
///
/// The dedup index keeps fingerprints, not keys: 16 bytes a key instead of ~60.
/// Collision bound: for `n` distinct keys in one index the chance that any two share a
/// fingerprint is at most `n² / 2¹²⁹` (birthday bound for a 128-bit hash): below
/// 3·10⁻²³ for 10⁸ keys and below 3·10⁻¹⁹ for 10¹⁰ keys. A collision would make a new
/// event count as a duplicate, so the bound is the probability of losing one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub u128);

impl Fingerprint {
    /// High and low halves, for stores without a 128-bit integer type.
    pub fn halves(self) -> (i64, i64) {
        ((self.0 >> 64) as u64 as i64, self.0 as u64 as i64)
    }

    /// Rebuilds a fingerprint from [`Fingerprint::halves`].
    pub fn from_halves(hi: i64, lo: i64) -> Self {
        Self((u128::from(hi as u64) << 64) | u128::from(lo as u64))
    }
}

impl EventKey<'_> {
    /// The key's fingerprint. Stable across versions and platforms: it is stored.
    pub fn fingerprint(&self) -> Fingerprint {
        let t = self.event_type.as_bytes();
        let mut buf = [0u8; 24 + 2 + 512];
        buf[..8].copy_from_slice(&self.org.to_le_bytes());
        buf[8..16].copy_from_slice(&self.phone.0.to_le_bytes());
        buf[16..24].copy_from_slice(&self.occurred_at_ms.to_le_bytes());
        buf[24..26].copy_from_slice(&(t.len() as u16).to_le_bytes());
        if t.len() <= 512 {
            buf[26..26 + t.len()].copy_from_slice(t);
            Fingerprint(xxh3_128(&buf[..26 + t.len()]))
        } else {
            let mut v = buf[..26].to_vec();
            v.extend_from_slice(t);
            Fingerprint(xxh3_128(&v))
        }
    }

    /// The lead this key belongs to; see [`lead_hash`].
    pub fn lead_hash(&self) -> u64 {
        lead_hash(self.org, self.phone)
    }
}

/// Hash of a lead `(organizationId, normalized phone)`.
///
/// Everything that shards by lead (dedup shards, event-index shards, Kafka partitions
/// in the production backends) uses this one function, so one lead's events always
/// meet in the same shard.
pub fn lead_hash(org: OrgId, phone: Phone) -> u64 {
    let mut buf = [0u8; 16];
    buf[..8].copy_from_slice(&org.to_le_bytes());
    buf[8..].copy_from_slice(&phone.0.to_le_bytes());
    xxh3_64(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(t: &str, at: i64) -> EventKey<'_> {
        EventKey {
            org: 42,
            phone: Phone(15551234567),
            event_type: t,
            occurred_at_ms: at,
        }
    }

    #[test]
    fn fingerprint_separates_every_field() {
        let base = key("mastery_purchase", 1).fingerprint();
        assert_eq!(base, key("mastery_purchase", 1).fingerprint());
        assert_ne!(base, key("mastery_purchase", 2).fingerprint());
        assert_ne!(base, key("mastery_purchasf", 1).fingerprint());
        assert_ne!(
            base,
            EventKey {
                org: 43,
                ..key("mastery_purchase", 1)
            }
            .fingerprint()
        );
        assert_ne!(
            base,
            EventKey {
                phone: Phone(15551234568),
                ..key("mastery_purchase", 1)
            }
            .fingerprint()
        );
        let long = "x".repeat(600);
        assert_ne!(
            key(&long, 1).fingerprint(),
            key(&long[..599], 1).fingerprint()
        );
    }

    #[test]
    fn halves_round_trip() {
        let f = key("a", 7).fingerprint();
        let (hi, lo) = f.halves();
        assert_eq!(Fingerprint::from_halves(hi, lo), f);
    }
}
