//! The engine with Kafka configured: deliveries travel as records on
//! `kafka.deliveries_topic` (keyed by endpoint, so one endpoint's deliveries stay in
//! order on one partition), consumed by the consumer group
//! `kafka.deliveries_group_id`, so more processes deliver more. A scheduled retry is
//! a record on `kafka.deliveries_retry_topic` holding its due time; a worker holds it
//! until then.
//!
//! A record's offset is stored for commit only once what it carried is durable: its
//! final outcome, or the retry record of its next attempt acknowledged by the brokers
//! (`acks=all`). Offsets complete out of order (endpoints answer at their own pace),
//! so each partition commits up to its lowest record still open ([`OffsetTracker`]):
//! a process killed at any point leaves every unfinished delivery uncommitted, and
//! the group reads it again. The attempt log is the processing process's
//! `webhooks.db`; a record read twice is recognized there and not sent again.
//!
//! Endpoints live in each process's registry. A worker delivers with its own copy of
//! the endpoint when it has one with the record's URL; otherwise with the endpoint as
//! the record carries it (URL, secrets, timeout), so a group of processes with
//! separate registries still delivers every record correctly.

use super::deliveries::{self, DeliveryState, Job};
use super::dispatch::{DispatchHandle, Shared};
use super::model::{Endpoint, EndpointKind, EndpointSecret};
use super::store::DbError;
use crate::config::KafkaConfig;
use crate::db::sql::args;
use crate::kafka::{
    config as kconfig, Delivery, DeliveryProducer, DeliveryRecord, DeliveryTopic, KafkaError,
    Topics, V1,
};
use bytes::Bytes;
use parking_lot::Mutex;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

/// Records read before they are handed on together (one store read for all).
const BATCH: usize = 500;
/// How long a batch waits for more records.
const BATCH_WAIT: Duration = Duration::from_millis(5);

/// The open offsets of each partition.
pub struct OffsetTracker {
    consumer: Arc<StreamConsumer>,
    open: Mutex<HashMap<(Arc<str>, i32), Partition>>,
}

#[derive(Default)]
struct Partition {
    open: BTreeSet<i64>,
    /// One past the highest offset read.
    next: i64,
}

impl OffsetTracker {
    fn track(&self, topic: &Arc<str>, partition: i32, offset: i64) {
        let mut g = self.open.lock();
        let p = g.entry((topic.clone(), partition)).or_default();
        p.open.insert(offset);
        p.next = p.next.max(offset + 1);
    }

    fn done(&self, topic: &Arc<str>, partition: i32, offset: i64) {
        let commit = {
            let mut g = self.open.lock();
            let Some(p) = g.get_mut(&(topic.clone(), partition)) else {
                return;
            };
            p.open.remove(&offset);
            p.open.first().copied().unwrap_or(p.next)
        };
        let mut tpl = TopicPartitionList::new();
        if tpl
            .add_partition_offset(topic, partition, Offset::Offset(commit))
            .is_ok()
        {
            // Fails only for a partition this process no longer owns: its new owner
            // reads the open records again.
            if let Err(e) = self.consumer.store_offsets(&tpl) {
                tracing::debug!(%topic, partition, error = %e, "storing a delivery offset");
            }
        }
    }
}

/// A record to mark done once its delivery's outcome is durable.
#[derive(Clone)]
pub struct Ack {
    tracker: Arc<OffsetTracker>,
    topic: Arc<str>,
    partition: i32,
    offset: i64,
}

impl Ack {
    pub fn done(&self) {
        self.tracker.done(&self.topic, self.partition, self.offset);
    }
}

impl std::fmt::Debug for Ack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}@{}", self.topic, self.partition, self.offset)
    }
}

/// The engine's Kafka side.
pub struct KafkaLink {
    producer: DeliveryProducer,
    /// The consumer of the delivery topics, to commit the last offsets at shutdown.
    consumer: Arc<StreamConsumer>,
}

impl KafkaLink {
    /// At shutdown, once the dispatcher is drained: commits the offsets of the
    /// records whose deliveries are done now (the rest are read again by the group),
    /// and leaves the group.
    pub async fn leave(&self) {
        let consumer = self.consumer.clone();
        let left = tokio::task::spawn_blocking(move || {
            use rdkafka::consumer::{CommitMode, Consumer};
            let committed = consumer.commit_consumer_state(CommitMode::Sync);
            consumer.unsubscribe();
            committed
        })
        .await;
        match left {
            Ok(Ok(())) => tracing::info!(
                "delivery consumer: offsets of the finished deliveries committed; left the group"
            ),
            // Nothing new since the last background commit.
            Ok(Err(rdkafka::error::KafkaError::ConsumerCommit(
                rdkafka::types::RDKafkaErrorCode::NoOffset,
            ))) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "delivery consumer: the last offsets were not committed; those records are read again (their deliveries are known done and dropped)")
            }
            Err(e) => tracing::warn!(error = %e, "delivery consumer: leaving the group failed"),
        }
    }

    /// The record of `job` for its next attempt at `due_ms`, with `ep` as the endpoint.
    pub fn record(job: &Job, ep: &Endpoint, attempts: u32, due_ms: i64, now_ms: i64) -> Delivery {
        Delivery {
            delivery_id: job.id.to_string(),
            event_id: job.event_id.to_string(),
            organization_id: job.org,
            endpoint_id: job.endpoint_id,
            event_type: job.event_type.to_string(),
            payload: String::from_utf8_lossy(&job.body()).into_owned(),
            event_payload: job
                .part
                .as_ref()
                .map(|_| String::from_utf8_lossy(&job.payload).into_owned()),
            part: job
                .part
                .as_ref()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
            attempts,
            created_at_us: job.created_at_ms.saturating_mul(1000),
            due_at_us: due_ms.max(now_ms).saturating_mul(1000),
            url: ep.url.clone(),
            secrets: ep.signing_secrets(now_ms).map(|s| s.text()).collect(),
            timeout_ms: ep.timeout.map(|t| t.as_millis() as u64),
        }
    }

    /// Produces `records` to `which` topic; done when the brokers have all of them.
    ///
    /// # Errors
    /// The first [`KafkaError`].
    pub async fn send_all(
        &self,
        which: DeliveryTopic,
        records: &[Delivery],
    ) -> Result<(), KafkaError> {
        let sends = records.iter().map(|r| self.producer.send_to(which, r));
        for r in futures_util::future::join_all(sends).await {
            r?;
        }
        Ok(())
    }
}

/// Starts the Kafka side: the producer and the group consumer of both delivery
/// topics, feeding `dispatch`.
///
/// # Errors
/// [`KafkaError::Client`] when librdkafka refuses the configuration, or the
/// subscription fails.
pub fn start(
    shared: &Arc<Shared>,
    dispatch: DispatchHandle,
    cfg: &KafkaConfig,
    topics: &Topics,
) -> Result<Arc<KafkaLink>, KafkaError> {
    let producer = DeliveryProducer::new(cfg, topics)?;
    let mut c = kconfig::consumer(cfg);
    c.set("group.id", &cfg.deliveries_group_id)
        .set("client.id", "leadstream-delivery-consumer")
        // Only offsets stored by the tracker are committed, in the background.
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "500")
        .set("enable.auto.offset.store", "false");
    let consumer: Arc<StreamConsumer> =
        Arc::new(c.create().map_err(|source| KafkaError::Client {
            client: "delivery consumer",
            brokers: cfg.brokers.clone(),
            source,
        })?);
    consumer
        .subscribe(&[&cfg.deliveries_topic, &cfg.deliveries_retry_topic])
        .map_err(|source| KafkaError::Client {
            client: "delivery consumer",
            brokers: cfg.brokers.clone(),
            source,
        })?;
    let tracker = Arc::new(OffsetTracker {
        consumer: consumer.clone(),
        open: Mutex::default(),
    });
    crate::tasks::spawn(consume(shared.clone(), dispatch, consumer.clone(), tracker));
    Ok(Arc::new(KafkaLink { producer, consumer }))
}

/// One record read, before the store is asked about it.
struct Read {
    record: Option<Delivery>,
    ack: Ack,
}

async fn consume(
    shared: Arc<Shared>,
    dispatch: DispatchHandle,
    consumer: Arc<StreamConsumer>,
    tracker: Arc<OffsetTracker>,
) {
    let mut topics: HashMap<String, Arc<str>> = HashMap::new();
    loop {
        let mut batch: Vec<Read> = Vec::new();
        // Stopping: no new record is read; the dispatcher drains what is in flight and
        // KafkaLink::leave commits what is done.
        let received = tokio::select! {
            r = consumer.recv() => r,
            () = crate::tasks::stopped() => return,
        };
        let first = match received {
            Ok(m) => m.detach(),
            Err(e) => {
                tracing::warn!(error = %e, "reading the delivery topics; trying again");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut messages = vec![first];
        while messages.len() < BATCH {
            match tokio::time::timeout(BATCH_WAIT, consumer.recv()).await {
                Ok(Ok(m)) => messages.push(m.detach()),
                _ => break,
            }
        }
        for m in messages {
            let topic = topics
                .entry(m.topic().to_owned())
                .or_insert_with(|| Arc::from(m.topic()))
                .clone();
            tracker.track(&topic, m.partition(), m.offset());
            let record = match m.payload().map(serde_json::from_slice::<DeliveryRecord>) {
                Some(Ok(DeliveryRecord::Delivery(V1 { body, .. }))) => Some(body),
                other => {
                    let why = match other {
                        Some(Err(e)) => e.to_string(),
                        _ => "no payload".into(),
                    };
                    tracing::error!(topic = %topic, partition = m.partition(), offset = m.offset(), error = %why, "a delivery record that is not one; skipped");
                    None
                }
            };
            batch.push(Read {
                record,
                ack: Ack {
                    tracker: tracker.clone(),
                    topic,
                    partition: m.partition(),
                    offset: m.offset(),
                },
            });
        }
        match admit(&shared, batch).await {
            Ok(jobs) => dispatch.at(jobs),
            Err(e) => {
                // Nothing was marked done: the records are read again after a restart.
                tracing::error!(error = %e, "recording delivery records in the webhook store failed");
            }
        }
    }
}

/// Records the batch's deliveries in the local log (new ones as pending), drops those
/// already finished or already past this attempt, and turns the rest into jobs with
/// their due times.
async fn admit(shared: &Arc<Shared>, batch: Vec<Read>) -> Result<Vec<(Job, i64)>, DbError> {
    let endpoints = shared.endpoints.clone();
    let decided = shared
        .db
        .write(move |conn| {
            let mut out = Vec::with_capacity(batch.len());
            for Read { record, ack } in batch {
                let Some(d) = record else {
                    out.push((None, ack));
                    continue;
                };
                let known = deliveries::state_by_id(conn, &d.delivery_id)?;
                let seq = match known {
                    Some((_, state, attempts))
                        if state != DeliveryState::Pending || attempts > d.attempts =>
                    {
                        out.push((None, ack));
                        continue;
                    }
                    Some((seq, _, _)) => seq,
                    None => {
                        let created_ms = d.created_at_us.div_euclid(1000);
                        conn.execute(
                            "INSERT INTO events (id, org_id, event_type, payload, deliveries, created_at) VALUES (?1, ?2, ?3, ?4, 1, ?5) \
                             ON CONFLICT (id) DO NOTHING",
                            args![d.event_id, d.organization_id, d.event_type, shared_payload(&d).as_bytes(), created_ms],
                        )?;
                        deliveries::insert_pending(
                            conn,
                            &deliveries::PendingRow {
                                id: &d.delivery_id,
                                event_id: &d.event_id,
                                org: d.organization_id,
                                endpoint_id: d.endpoint_id,
                                url: &d.url,
                                event_type: &d.event_type,
                                attempts: d.attempts,
                                due_ms: d.due_at_us.div_euclid(1000),
                                created_ms,
                                part: d.event_payload.as_ref().and(d.part.as_deref()).map(str::as_bytes),
                            },
                        )?
                    }
                };
                out.push((Some((seq, d)), ack));
            }
            Ok(out)
        })
        .await?;
    let mut jobs = Vec::with_capacity(decided.len());
    for (decided, ack) in decided {
        let Some((seq, d)) = decided else {
            ack.done();
            continue;
        };
        let local = endpoints
            .by_id(d.endpoint_id)
            .filter(|e| e.url == d.url && e.org == d.organization_id);
        let snapshot = match local {
            Some(_) => None,
            None if endpoints.was_deleted(d.endpoint_id) => None,
            None => Some(Arc::new(snapshot_of(&d))),
        };
        let due = d.due_at_us.div_euclid(1000);
        let payload = Bytes::from(shared_payload(&d).to_owned());
        let part = d
            .event_payload
            .as_ref()
            .and(d.part.clone())
            .map(Bytes::from);
        let event = deliveries::EventOf {
            event_id: Arc::from(d.event_id),
            org: d.organization_id,
            event_type: Arc::from(d.event_type),
            payload,
            created_at_ms: d.created_at_us.div_euclid(1000),
        };
        jobs.push((
            Job {
                attempts: d.attempts,
                snapshot,
                ack: Some(ack),
                ..Job::new(seq, Arc::from(d.delivery_id), &event, d.endpoint_id, part)
            },
            due,
        ));
    }
    Ok(jobs)
}

/// The payload of the record's event: the shared one when the record names it,
/// otherwise the whole body.
fn shared_payload(d: &Delivery) -> &str {
    match (&d.event_payload, &d.part) {
        (Some(shared), Some(_)) => shared,
        _ => &d.payload,
    }
}

/// The endpoint as a record carries it.
fn snapshot_of(d: &Delivery) -> Endpoint {
    Endpoint {
        id: d.endpoint_id,
        org: d.organization_id,
        kind: EndpointKind::Registry,
        url: d.url.clone(),
        description: None,
        event_types: None,
        enabled: true,
        disabled_reason: None,
        timeout: d.timeout_ms.map(Duration::from_millis),
        max_in_flight: None,
        rate_limit: None,
        failing_since_ms: None,
        created_at_ms: 0,
        updated_at_ms: 0,
        secrets: d
            .secrets
            .iter()
            .filter_map(|s| leadstream_pipeline::signature::WebhookSecret::parse(s).ok())
            .map(|secret| EndpointSecret {
                secret,
                created_at_ms: 0,
                expires_at_ms: None,
            })
            .collect(),
    }
}
