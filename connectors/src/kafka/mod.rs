//! The Kafka backend (rdkafka over its bundled librdkafka).
//!
//! - [`admin`]: creates the four topics at start-up when missing and reports their
//!   partition counts.
//! - [`source`]: the raw-topic consumer loop (poll, process, commit). Same pipeline as
//!   HTTP (parse, prepare, the single writer), rejects, unparseable records and rows
//!   the store refuses to the dead-letter topic, offsets committed only once what they
//!   carried is durable or dead-lettered.
//! - [`plan`]: the pure routing plan of a batch: rows to store, records to
//!   dead-letter, events to re-route ([`ReroutedEvent`]).
//! - [`rebalance`]: the consumer's rebalance hooks: the owned partitions and the
//!   [`PartitionWarmer`] that readies the index for new ones (with ClickHouse,
//!   [`crate::clickhouse::ClickHouseWarmer`]).
//! - [`dlq`]: the dead-letter envelope.
//! - [`sink`]: the delivery-topic producer.
//! - [`config`]: librdkafka client properties from [`KafkaConfig`](crate::config::KafkaConfig).
//!
//! Records on the topics leadstream writes are JSON objects of versioned, tagged serde
//! types: a `"v"` number ([`Version`]) and a `"kind"` or `"type"` tag.
//!
//! **Routing.** One lead `(organizationId, normalized phone)` always maps to one raw
//! partition, [`partition_for`], the same [`lead_hash`] that picks the in-memory dedup
//! shard. Every producer leadstream has (the consumer's re-routing, the delivery
//! producer, `bench kafka`) uses it; docs/architecture.md ("Kafka backend") explains
//! how that keeps dedup exact with several processes in one group.

pub mod admin;
pub mod config;
pub mod dlq;
pub mod plan;
pub mod rebalance;
pub mod sink;
pub mod source;

pub use admin::{ensure_topics, Topics};
pub use dlq::DeadLetter;
pub use plan::ReroutedEvent;
pub use rebalance::{Assignment, PartitionWarmer, WarmedAtStartup};
pub use sink::{Delivery, DeliveryProducer, DeliveryRecord, DeliveryTopic, V1};
pub use source::{Failpoint, RawSource, SourceStats};

use leadstream_pipeline::{lead_hash, OrgId, Phone};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The raw-topic partition of a lead: `lead_hash(org, phone) % partitions`.
///
/// `partitions` is the topic's actual partition count (from its metadata, see
/// [`Topics`]); values below 1 are treated as 1.
pub fn partition_for(org: OrgId, phone: Phone, partitions: i32) -> i32 {
    let n = partitions.max(1) as u64;
    (lead_hash(org, phone) % n) as i32
}

/// The record key of a lead: `"<organizationId>:<E.164 phone>"`, e.g. `42:+15551234567`.
pub fn lead_key(org: OrgId, phone: Phone) -> String {
    format!("{org}:{phone}")
}

/// A failure of the Kafka backend, naming the operation and topic at fault.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// A client (consumer, producer, admin) could not be created or configured.
    #[error("creating the Kafka {client} client (brokers {brokers:?}): {source}")]
    Client {
        client: &'static str,
        brokers: String,
        source: rdkafka::error::KafkaError,
    },
    /// Topic metadata could not be read.
    #[error("reading Kafka metadata from {brokers:?}: {source}")]
    Metadata {
        brokers: String,
        source: rdkafka::error::KafkaError,
    },
    /// Creating a missing topic failed.
    #[error("creating Kafka topic {topic:?} ({partitions} partitions, replication {replication}): {message}")]
    CreateTopic {
        topic: String,
        partitions: i32,
        replication: i32,
        message: String,
    },
    /// A topic is still missing after it was created.
    #[error("Kafka topic {topic:?} does not exist after creating it")]
    TopicMissing { topic: String },
    /// Subscribing the consumer failed.
    #[error("subscribing to Kafka topic {topic:?}: {source}")]
    Subscribe {
        topic: String,
        source: rdkafka::error::KafkaError,
    },
    /// A record was not acknowledged by the brokers.
    #[error("producing to Kafka topic {topic:?}: {source}")]
    Produce {
        topic: String,
        source: rdkafka::error::KafkaError,
    },
    /// Serializing a record failed (a bug: the types serialize by construction).
    #[error("encoding a record for Kafka topic {topic:?}: {source}")]
    Encode {
        topic: String,
        source: serde_json::Error,
    },
    /// The event store stopped taking rows (its writer stopped): the consumer cannot go on.
    #[error("storing consumed events: {source}")]
    Store {
        source: std::sync::Arc<crate::store::StoreError>,
    },
}

/// A schema version on the wire: serializes as the number `N`, and refuses any other
/// number when read, so a reader never misreads a record of another version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Version<const N: u8>;

impl<const N: u8> Serialize for Version<N> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(N)
    }
}

impl<'de, const N: u8> Deserialize<'de> for Version<N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = u64::deserialize(d)?;
        if v == u64::from(N) {
            Ok(Version)
        } else {
            Err(serde::de::Error::custom(format_args!(
                "unsupported record version {v}, expected {N}"
            )))
        }
    }
}

/// Serde helpers for a [`Phone`] as its E.164 text (`"+15551234567"`).
pub(crate) mod e164 {
    use leadstream_pipeline::Phone;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(p: &Phone, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(p)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Phone, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.strip_prefix('+')
            .filter(|digits| {
                (1..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
            })
            .and_then(|digits| digits.parse().ok())
            .map(Phone)
            .ok_or_else(|| {
                serde::de::Error::custom(format_args!(
                    "phone {s:?} is not E.164 (+ and 1 to 15 digits)"
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lead_always_maps_to_the_same_partition_and_key() {
        let p = Phone(15551234567);
        let first = partition_for(42, p, 12);
        assert!((0..12).contains(&first));
        assert_eq!(partition_for(42, p, 12), first);
        assert_eq!(first as u64, lead_hash(42, p) % 12);
        assert_eq!(partition_for(42, p, 0), 0);
        assert_eq!(lead_key(42, p), "42:+15551234567");
    }

    #[test]
    fn leads_spread_over_partitions() {
        let mut seen = [0u32; 8];
        for i in 0..8_000u64 {
            seen[partition_for(7, Phone(15550000000 + i), 8) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| (800..1200).contains(&n)), "{seen:?}");
    }

    #[test]
    fn versions_refuse_other_numbers() {
        assert_eq!(serde_json::to_string(&Version::<1>).unwrap(), "1");
        assert!(serde_json::from_str::<Version<1>>("1").is_ok());
        let e = serde_json::from_str::<Version<1>>("2")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unsupported record version 2, expected 1"),
            "{e}"
        );
    }
}
