//! The delivery topic (`kafka.deliveries_topic`): one record per webhook delivery the
//! engine publishes.
//!
//! [`DeliveryProducer`] is idempotent with `acks=all` and the configured linger and
//! compression; records are keyed by endpoint (`"endpoint:17"`) and go to the
//! endpoint's partition ([`partition_for_endpoint`]), so one endpoint's deliveries
//! stay in order on one partition. Each record is a [`DeliveryRecord`]:
//! `{"type":"delivery","v":1,"deliveryId":"msg_…","endpointId":17,...}`.

use super::{config, KafkaError, Topics, Version};
use crate::config::KafkaConfig;
use leadstream_pipeline::OrgId;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How long [`DeliveryProducer::send`] waits for room in the producer's queue.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(30);

/// One webhook delivery: an event's payload for one endpoint, and where its
/// schedule stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// The delivery id, sent as `webhook-id` on every attempt.
    pub delivery_id: String,
    /// The published event it belongs to.
    pub event_id: String,
    pub organization_id: OrgId,
    pub endpoint_id: i64,
    pub event_type: String,
    /// The exact body every attempt sends (a JSON object's text). A string, not a
    /// nested object: the record is read through a tagged enum, which would re-encode
    /// a nested value, and the receiver must get the publisher's bytes.
    pub payload: String,
    /// With `part`: the payload of the event the delivery shares with others (a
    /// campaign send's), which `payload` is with `part` added at the end of its object
    /// (`delivery::deliveries::body`). Consumers that know it store the event once and
    /// the part per delivery; `payload` alone stays the whole body, so a record
    /// means the same to a consumer that ignores both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_payload: Option<String>,
    /// The delivery's own members of the body (a campaign send's lead); see
    /// `event_payload`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<String>,
    /// Attempts made so far.
    pub attempts: u32,
    /// When it was published, microseconds since the Unix epoch.
    pub created_at_us: i64,
    /// When its next attempt is due, microseconds since the Unix epoch.
    pub due_at_us: i64,
    /// The endpoint as published: a worker that does not know the endpoint (another
    /// process's registry) delivers with these. The signing secrets travel with the
    /// record, so the delivery topics must be protected like the data dir.
    pub url: String,
    /// Signing secrets (`whsec_…`), newest first.
    pub secrets: Vec<String>,
    /// Per-attempt timeout, when the endpoint sets one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// The record key of an endpoint's deliveries: `"endpoint:<id>"`.
pub fn endpoint_key(endpoint: i64) -> String {
    format!("endpoint:{endpoint}")
}

/// The partition of an endpoint's deliveries among `partitions`.
pub fn partition_for_endpoint(endpoint: i64, partitions: i32) -> i32 {
    let n = partitions.max(1) as u64;
    (xxhash_rust::xxh3::xxh3_64(&endpoint.to_le_bytes()) % n) as i32
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

/// Which delivery topic a record goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryTopic {
    /// `kafka.deliveries_topic`: new deliveries.
    Deliveries,
    /// `kafka.deliveries_retry_topic`: scheduled retries.
    Retry,
}

/// The delivery-topic producer. Cheap to share behind an `Arc`; `send` may be called
/// concurrently, and librdkafka batches what is in flight (linger).
pub struct DeliveryProducer {
    producer: FutureProducer,
    topic: String,
    partitions: i32,
    retry_topic: String,
    retry_partitions: i32,
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
            retry_topic: cfg.deliveries_retry_topic.clone(),
            retry_partitions: topics.deliveries_retry_partitions(),
        })
    }

    /// Produces one delivery and waits until the brokers have it (`acks=all`).
    ///
    /// # Errors
    /// [`KafkaError::Produce`] when the brokers do not acknowledge it within
    /// librdkafka's `delivery.timeout.ms`; the caller retries (the record may then
    /// be there twice: consumers deduplicate by `deliveryId`).
    pub async fn send(&self, delivery: &Delivery) -> Result<Produced, KafkaError> {
        self.send_to(DeliveryTopic::Deliveries, delivery).await
    }

    /// Produces one delivery to `which` topic; as [`DeliveryProducer::send`].
    ///
    /// # Errors
    /// As [`DeliveryProducer::send`].
    pub async fn send_to(
        &self,
        which: DeliveryTopic,
        delivery: &Delivery,
    ) -> Result<Produced, KafkaError> {
        let (topic, partitions) = match which {
            DeliveryTopic::Deliveries => (&self.topic, self.partitions),
            DeliveryTopic::Retry => (&self.retry_topic, self.retry_partitions),
        };
        let payload = serde_json::to_vec(&DeliveryRecord::Delivery(V1 {
            v: Version,
            body: delivery.clone(),
        }))
        .map_err(|source| KafkaError::Encode {
            topic: topic.clone(),
            source,
        })?;
        let key = endpoint_key(delivery.endpoint_id);
        let record = FutureRecord::to(topic)
            .key(&key)
            .payload(&payload)
            .partition(partition_for_endpoint(delivery.endpoint_id, partitions));
        match self.producer.send(record, QUEUE_TIMEOUT).await {
            Ok(d) => Ok(Produced {
                partition: d.partition,
                offset: d.offset,
            }),
            Err((source, _)) => Err(KafkaError::Produce {
                topic: topic.clone(),
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(i: i64) -> Delivery {
        Delivery {
            delivery_id: format!("msg_{i:026}"),
            event_id: format!("evt_{i:026}"),
            organization_id: 42,
            endpoint_id: 1 + i % 5,
            event_type: "appointment_booked".into(),
            payload: format!("{{\"n\": {i}}}"),
            event_payload: (i % 2 == 1).then(|| "{}".to_owned()),
            part: (i % 2 == 1).then(|| format!("\"lead\":{i}")),
            attempts: 0,
            created_at_us: 1_778_610_840_123_456,
            due_at_us: 1_778_610_840_123_456,
            url: "https://example.com/hook".into(),
            secrets: vec!["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()],
            timeout_ms: None,
        }
    }

    #[test]
    fn a_delivery_record_is_versioned_and_tagged_and_keeps_the_payload_bytes() {
        let rec = DeliveryRecord::Delivery(V1 {
            v: Version,
            body: delivery(7),
        });
        let text = serde_json::to_string(&rec).unwrap();
        assert!(
            text.starts_with(r#"{"type":"delivery","v":1,"deliveryId":"msg_"#),
            "{text}"
        );
        assert!(text.contains(r#""payload":"{\"n\": 7}""#), "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["endpointId"], 3);
        assert_eq!(v["createdAtUs"], 1_778_610_840_123_456_i64);
        assert_eq!(serde_json::from_str::<DeliveryRecord>(&text).unwrap(), rec);
        let mut v2 = v;
        v2["v"] = 2.into();
        assert!(serde_json::from_value::<DeliveryRecord>(v2).is_err());
    }

    /// Against librdkafka's mock cluster (in-process, real sockets on localhost).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn deliveries_are_keyed_by_endpoint_and_read_back_from_its_partition() {
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
            &cfg.deliveries_retry_topic,
            &cfg.domain_events_topic,
        ] {
            mock.create_topic(t, 3, 1).unwrap();
        }
        let topics = crate::kafka::ensure_topics(&cfg).await.unwrap();
        assert!(topics.created.is_empty());
        assert_eq!(topics.deliveries_partitions(), 3);

        let producer = DeliveryProducer::new(&cfg, &topics).unwrap();
        let deliveries: Vec<Delivery> = (0..30).map(delivery).collect();
        for d in &deliveries {
            let at = producer.send(d).await.unwrap();
            assert_eq!(at.partition, partition_for_endpoint(d.endpoint_id, 3));
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
                assert_eq!(m.key(), Some(endpoint_key(body.endpoint_id).as_bytes()));
                assert_eq!(m.partition(), partition_for_endpoint(body.endpoint_id, 3));
                got.push(body);
            }
        }
        // One endpoint's deliveries arrive in the order they were produced.
        for e in 1..=5 {
            let mine: Vec<&str> = got
                .iter()
                .filter(|d| d.endpoint_id == e)
                .map(|d| d.delivery_id.as_str())
                .collect();
            let mut sorted = mine.clone();
            sorted.sort_unstable();
            assert_eq!(mine, sorted, "endpoint {e} out of order");
        }
        got.sort_by(|a, b| a.delivery_id.cmp(&b.delivery_id));
        assert_eq!(got, deliveries);
    }
}
