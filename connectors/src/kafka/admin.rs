//! Topics at start-up: the raw, dead-letter, delivery and domain-event topics are
//! created when missing, with the configured partitions and replication factor.
//!
//! Existing topics are left as they are. Routing uses a topic's *actual* partition
//! count, read back here ([`Topics`]), not the configured one: the two differ when a
//! topic was created beforehand by someone else, which is logged.

use super::{config, KafkaError};
use crate::config::KafkaConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// How long a metadata request may take.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for created topics to show up in the metadata.
const CREATE_SETTLE: Duration = Duration::from_secs(10);

/// The topics leadstream uses, as they exist on the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// Partition count of every topic leadstream uses, by name.
    pub partitions: BTreeMap<String, i32>,
    /// Topics this call created.
    pub created: Vec<String>,
    raw_topic: String,
    deliveries_topic: String,
    deliveries_retry_topic: String,
}

impl Topics {
    /// Partitions of the raw topic: what [`partition_for`](super::partition_for) divides by.
    pub fn raw_partitions(&self) -> i32 {
        self.partitions.get(&self.raw_topic).copied().unwrap_or(1)
    }

    /// Partitions of the delivery topic.
    pub fn deliveries_partitions(&self) -> i32 {
        self.partitions
            .get(&self.deliveries_topic)
            .copied()
            .unwrap_or(1)
    }

    /// Partitions of the delivery retry topic.
    pub fn deliveries_retry_partitions(&self) -> i32 {
        self.partitions
            .get(&self.deliveries_retry_topic)
            .copied()
            .unwrap_or(1)
    }
}

type Admin = AdminClient<DefaultClientContext>;

/// Creates whichever of `raw_topic`, `rejects_topic`, `deliveries_topic`,
/// `deliveries_retry_topic` and `domain_events_topic` is missing, then reads every one's partition count.
///
/// Safe when several processes start at once: a topic another one created in the
/// meantime counts as existing.
///
/// # Errors
/// [`KafkaError::Client`] or [`KafkaError::Metadata`] when the brokers cannot be
/// reached, [`KafkaError::CreateTopic`] when the brokers refuse to create a topic
/// (e.g. a replication factor above the broker count, or a cluster without the
/// CreateTopics API, such as librdkafka's mock cluster: create them beforehand there),
/// [`KafkaError::TopicMissing`] when a created topic never shows up.
pub async fn ensure_topics(cfg: &KafkaConfig) -> Result<Topics, KafkaError> {
    let brokers = cfg.brokers.trim().to_owned();
    let admin: Arc<Admin> =
        Arc::new(
            config::admin(cfg)
                .create()
                .map_err(|source| KafkaError::Client {
                    client: "admin",
                    brokers: brokers.clone(),
                    source,
                })?,
        );
    let wanted = [
        &cfg.raw_topic,
        &cfg.rejects_topic,
        &cfg.deliveries_topic,
        &cfg.deliveries_retry_topic,
        &cfg.domain_events_topic,
    ];

    let mut existing = metadata(&admin, &brokers).await?;
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|t| !existing.contains_key(t.as_str()))
        .map(|t| t.as_str())
        .collect();
    let mut created = Vec::new();
    if !missing.is_empty() {
        let new: Vec<NewTopic<'_>> = missing
            .iter()
            .map(|t| {
                NewTopic::new(
                    t,
                    cfg.partitions,
                    TopicReplication::Fixed(cfg.replication_factor),
                )
            })
            .collect();
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let refused = |topic: &str, message: String| KafkaError::CreateTopic {
            topic: topic.to_owned(),
            partitions: cfg.partitions,
            replication: cfg.replication_factor,
            message,
        };
        let results = admin
            .create_topics(&new, &opts)
            .await
            .map_err(|e| refused(missing[0], e.to_string()))?;
        for r in results {
            match r {
                Ok(topic) => created.push(topic),
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => return Err(refused(&topic, code.to_string())),
            }
        }
        // Creation reaches every broker's metadata asynchronously.
        let deadline = tokio::time::Instant::now() + CREATE_SETTLE;
        loop {
            existing = metadata(&admin, &brokers).await?;
            if missing.iter().all(|t| existing.contains_key(*t))
                || tokio::time::Instant::now() > deadline
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    let mut partitions = BTreeMap::new();
    for t in wanted {
        let n = *existing
            .get(t.as_str())
            .ok_or_else(|| KafkaError::TopicMissing { topic: t.clone() })?;
        partitions.insert(t.clone(), n);
    }
    let raw = partitions[&cfg.raw_topic];
    if raw != cfg.partitions && !created.contains(&cfg.raw_topic) {
        tracing::warn!(
            topic = %cfg.raw_topic,
            partitions = raw,
            configured = cfg.partitions,
            "the raw topic exists with another partition count than kafka.partitions; leads are routed by the topic's own count"
        );
    }
    tracing::info!(created = ?created, partitions = ?partitions, "Kafka topics ready");
    Ok(Topics {
        partitions,
        created,
        raw_topic: cfg.raw_topic.clone(),
        deliveries_topic: cfg.deliveries_topic.clone(),
        deliveries_retry_topic: cfg.deliveries_retry_topic.clone(),
    })
}

/// Every topic on the cluster that has partitions and no error, with its partition count.
async fn metadata(admin: &Arc<Admin>, brokers: &str) -> Result<BTreeMap<String, i32>, KafkaError> {
    let admin = admin.clone();
    // librdkafka's metadata call blocks its thread.
    let md = tokio::task::spawn_blocking(move || {
        admin
            .inner()
            .fetch_metadata(None, METADATA_TIMEOUT)
            .map(|md| {
                md.topics()
                    .iter()
                    .filter(|t| t.error().is_none() && !t.partitions().is_empty())
                    .map(|t| (t.name().to_owned(), t.partitions().len() as i32))
                    .collect::<BTreeMap<_, _>>()
            })
    })
    .await
    .expect("metadata task does not panic");
    md.map_err(|source| KafkaError::Metadata {
        brokers: brokers.to_owned(),
        source,
    })
}
