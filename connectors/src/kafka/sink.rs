//! The delivery topic (`kafka.deliveries_topic`): one record per delivery a send
//! materializes, for the HTTP webhook workers.
//!
//! [`DeliveryProducer`] is idempotent with `acks=all` and the configured linger and
//! compression; records are keyed by lead (`"42:+15551234567"`) and go to the lead's
//! partition ([`partition_for`]), so one lead's deliveries stay in order. Each record
//! is a [`DeliveryRecord`]: `{"type":"delivery","v":1,"organizationId":42,...}`.

use super::{config, e164, lead_key, partition_for, KafkaError, Topics, Version};
use crate::config::KafkaConfig;
use leadstream_pipeline::{OrgId, Phone};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How long [`DeliveryProducer::send`] waits for room in the producer's queue.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(30);

/// One delivery: a send's message to one eligible lead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    pub organization_id: OrgId,
    /// The lead's phone, E.164.
    #[serde(rename = "phoneE164", with = "e164")]
    pub phone: Phone,
    /// The campaign and the send (of that campaign) this delivery belongs to.
    pub campaign_id: String,
    pub send_id: String,
    /// The lead's id in the customer's system, when the audience gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// The send's instant, RFC 3339 in UTC.
    pub scheduled_at: String,
    /// The lead's template variables.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub variables: serde_json::Map<String, serde_json::Value>,
}

/// A record body of version 1: `"v": 1` beside the body's own fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct V1<T> {
    pub v: Version<1>,
    #[serde(flatten)]
    pub body: T,
}

/// A record on the delivery topic; the `"type"` tag says which.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DeliveryRecord {
    Delivery(V1<Delivery>),
}

/// Where a record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Produced {
    pub partition: i32,
    pub offset: i64,
}

/// The delivery-topic producer. Cheap to share behind an `Arc`; `send` may be called
/// concurrently, and librdkafka batches what is in flight (linger).
pub struct DeliveryProducer {
    producer: FutureProducer,
    topic: String,
    partitions: i32,
}

impl DeliveryProducer {
    /// A producer for `cfg.deliveries_topic`, routing by its partition count in `topics`.
    ///
    /// # Errors
    /// [`KafkaError::Client`] when librdkafka refuses the configuration.
    pub fn new(cfg: &KafkaConfig, topics: &Topics) -> Result<Self, KafkaError> {
        let producer = config::producer(cfg, "deliveries")
            .create()
            .map_err(|source| KafkaError::Client {
                client: "delivery producer",
                brokers: cfg.brokers.clone(),
                source,
            })?;
        Ok(Self {
            producer,
            topic: cfg.deliveries_topic.clone(),
            partitions: topics.deliveries_partitions(),
        })
    }

    /// Produces one delivery and waits until the brokers have it (`acks=all`).
    ///
    /// # Errors
    /// [`KafkaError::Produce`] when the brokers do not acknowledge it within
    /// librdkafka's `delivery.timeout.ms`; the caller retries (the record may then
    /// be there twice: consumers deduplicate by delivery).
    pub async fn send(&self, delivery: &Delivery) -> Result<Produced, KafkaError> {
        let payload = serde_json::to_vec(&DeliveryRecord::Delivery(V1 {
            v: Version,
            body: delivery.clone(),
        }))
        .map_err(|source| KafkaError::Encode {
            topic: self.topic.clone(),
            source,
        })?;
        let key = lead_key(delivery.organization_id, delivery.phone);
        let record = FutureRecord::to(&self.topic)
            .key(&key)
            .payload(&payload)
            .partition(partition_for(
                delivery.organization_id,
                delivery.phone,
                self.partitions,
            ));
        match self.producer.send(record, QUEUE_TIMEOUT).await {
            Ok(d) => Ok(Produced {
                partition: d.partition,
                offset: d.offset,
            }),
            Err((source, _)) => Err(KafkaError::Produce {
                topic: self.topic.clone(),
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_record_is_versioned_and_tagged() {
        let d = Delivery {
            organization_id: 42,
            phone: Phone(15551234567),
            campaign_id: "c1".into(),
            send_id: "s9".into(),
            external_id: None,
            scheduled_at: "2026-05-12T18:34:00.000Z".into(),
            variables: serde_json::Map::new(),
        };
        let rec = DeliveryRecord::Delivery(V1 {
            v: Version,
            body: d.clone(),
        });
        let v = serde_json::to_value(&rec).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "delivery", "v": 1, "organizationId": 42, "phoneE164": "+15551234567",
                "campaignId": "c1", "sendId": "s9", "scheduledAt": "2026-05-12T18:34:00.000Z"})
        );
        assert_eq!(
            serde_json::from_value::<DeliveryRecord>(v.clone()).unwrap(),
            rec
        );
        let mut v2 = v;
        v2["v"] = 2.into();
        assert!(serde_json::from_value::<DeliveryRecord>(v2).is_err());
    }

    /// Against librdkafka's mock cluster (in-process, real sockets on localhost).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn deliveries_are_keyed_by_lead_and_read_back_from_the_lead_partition() {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        use rdkafka::message::Message;
        use rdkafka::{Offset, TopicPartitionList};

        let mock = rdkafka::mocking::MockCluster::new(1).unwrap();
        let mut cfg = crate::config::Config::load(None, |_| None).unwrap().kafka;
        cfg.brokers = mock.bootstrap_servers();
        // The mock has no CreateTopics: create them there, then `ensure_topics` finds them.
        for t in [
            &cfg.raw_topic,
            &cfg.rejects_topic,
            &cfg.deliveries_topic,
            &cfg.domain_events_topic,
        ] {
            mock.create_topic(t, 3, 1).unwrap();
        }
        let topics = crate::kafka::ensure_topics(&cfg).await.unwrap();
        assert!(topics.created.is_empty());
        assert_eq!(topics.deliveries_partitions(), 3);

        let producer = DeliveryProducer::new(&cfg, &topics).unwrap();
        let deliveries: Vec<Delivery> = (0..30)
            .map(|i| Delivery {
                organization_id: 42,
                phone: Phone(15551230000 + i % 10),
                campaign_id: "c1".into(),
                send_id: format!("s{i}"),
                external_id: (i % 2 == 0).then(|| format!("lead-{i}")),
                scheduled_at: "2026-05-12T18:34:00.000Z".into(),
                variables: serde_json::json!({"first_name": "Ana"})
                    .as_object()
                    .unwrap()
                    .clone(),
            })
            .collect();
        for d in &deliveries {
            let at = producer.send(d).await.unwrap();
            assert_eq!(at.partition, partition_for(d.organization_id, d.phone, 3));
        }

        let consumer: BaseConsumer = crate::kafka::config::common(&cfg, "test")
            .set("group.id", "t")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..3 {
            tpl.add_partition_offset(&cfg.deliveries_topic, p, Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&tpl).unwrap();
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while got.len() < deliveries.len() && std::time::Instant::now() < deadline {
            if let Some(m) = consumer.poll(Duration::from_millis(100)) {
                let m = m.unwrap();
                let DeliveryRecord::Delivery(V1 { body, .. }) =
                    serde_json::from_slice(m.payload().unwrap()).unwrap();
                assert_eq!(
                    m.key(),
                    Some(lead_key(body.organization_id, body.phone).as_bytes())
                );
                assert_eq!(
                    m.partition(),
                    partition_for(body.organization_id, body.phone, 3)
                );
                got.push(body);
            }
        }
        got.sort_by_key(|d| d.send_id[1..].parse::<u32>().unwrap());
        assert_eq!(got, deliveries);
    }
}
