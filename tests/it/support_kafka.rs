//! librdkafka's mock Kafka cluster, in the test process, for servers to consume from.
//!
//! [`KafkaMock::start`] creates a one-broker cluster listening on a localhost port with
//! leadstream's four topics (the mock has no CreateTopics API, so they are made here
//! and `serve` finds them), and [`KafkaMock::server`] a [`TestServer`] builder pointed
//! at it with `LEADSTREAM_KAFKA_BROKERS` and a small config file (short session
//! timeout, small batches, quick retries, and a 30 s `http.forward_wait` so a rebalance on
//! a loaded CI machine is waited for rather than answered 503). Each test has its own cluster.
//!
//! Mind the mock's limits: a partition keeps at most ~5 MB or 100,000 messages (older
//! ones are dropped), and a consumer group's first join takes ~3 s.

use crate::support::{Builder, TestServer};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{DefaultProducerContext, FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tempfile::TempDir;

pub const RAW: &str = "leadstream.raw";
pub const REJECTS: &str = "leadstream.rejects";
pub const GROUP: &str = "leadstream";

/// A mock cluster and a producer to it. Dropping it stops the cluster.
pub struct KafkaMock {
    producer: FutureProducer,
    raw_partitions: i32,
    config: PathBuf,
    _dir: TempDir,
    // Last: the clients above must go before the cluster.
    cluster: MockCluster<'static, DefaultProducerContext>,
}

impl KafkaMock {
    /// A cluster with the raw topic in `raw_partitions` partitions (the others in 2).
    pub fn start(raw_partitions: i32) -> Self {
        let cluster = MockCluster::new(1).expect("mock cluster");
        cluster.create_topic(RAW, raw_partitions, 1).unwrap();
        for t in [
            REJECTS,
            "leadstream.deliveries",
            "leadstream.deliveries-retry",
            "leadstream.domain-events",
        ] {
            cluster.create_topic(t, 2, 1).unwrap();
        }
        let producer = client(&cluster.bootstrap_servers())
            .set("linger.ms", "0")
            .create()
            .expect("producer");
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("leadstream.toml");
        std::fs::write(
            &config,
            format!(
                "[kafka]\npartitions = {raw_partitions}\nsession_timeout = \"6s\"\nmax_batch_records = 500\nmax_batch_wait = \"50ms\"\n\
                 [kafka.retry]\ninitial = \"100ms\"\nmax = \"1s\"\n[store.retry]\ninitial = \"100ms\"\nmax = \"1s\"\n\
                 [http]\nforward_wait = \"30s\"\n"
            ),
        )
        .unwrap();
        Self {
            producer,
            raw_partitions,
            config,
            _dir: dir,
            cluster,
        }
    }

    pub fn brokers(&self) -> String {
        self.cluster.bootstrap_servers()
    }

    pub fn raw_partitions(&self) -> i32 {
        self.raw_partitions
    }

    /// The next `n` produce requests to the cluster fail with a permanent error
    /// (topic authorization), as a broker refusing writes would.
    pub fn refuse_produce(&self, n: usize) {
        use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
        self.cluster.request_errors(
            RDKafkaApiKey::Produce,
            &vec![RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; n],
        );
    }

    /// Produce requests succeed again.
    pub fn accept_produce(&self) {
        self.cluster
            .clear_request_errors(rdkafka::types::RDKafkaApiKey::Produce);
    }

    /// A server builder consuming from this cluster.
    pub fn server(&self) -> Builder {
        TestServer::builder()
            .env("LEADSTREAM_KAFKA_BROKERS", self.brokers())
            .env("LEADSTREAM_CONFIG", self.config.display().to_string())
            .env("LEADSTREAM_LOG", "info,leadstream_connectors::kafka=debug")
    }

    /// Produces `payload` to `partition` of the raw topic; returns its offset.
    pub async fn produce(&self, partition: i32, key: Option<&str>, payload: &[u8]) -> i64 {
        let mut record = FutureRecord::to(RAW).partition(partition).payload(payload);
        if let Some(k) = key {
            record = record.key(k);
        }
        self.producer
            .send(record, Duration::from_secs(10))
            .await
            .expect("produce to the mock")
            .offset
    }

    /// Produces `payload` to `partition` of `topic`; returns its offset.
    pub async fn produce_to(&self, topic: &str, partition: i32, payload: &[u8]) -> i64 {
        let record = FutureRecord::<(), _>::to(topic)
            .partition(partition)
            .payload(payload);
        self.producer
            .send(record, Duration::from_secs(10))
            .await
            .expect("produce to the mock")
            .offset
    }

    /// The end offset of each partition of `topic`.
    pub fn ends(&self, topic: &str, partitions: i32) -> Vec<i64> {
        let c: BaseConsumer = client(&self.brokers()).create().unwrap();
        (0..partitions)
            .map(|p| {
                c.fetch_watermarks(topic, p, Duration::from_secs(5))
                    .expect("watermarks")
                    .1
            })
            .collect()
    }

    /// The group's committed offset of each raw partition; `None` where it committed none.
    pub fn committed(&self) -> Vec<Option<i64>> {
        // Reading committed offsets (OffsetFetch) does not join the group.
        let c: BaseConsumer = client(&self.brokers())
            .set("group.id", GROUP)
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..self.raw_partitions {
            tpl.add_partition(RAW, p);
        }
        let got = c
            .committed_offsets(tpl, Duration::from_secs(5))
            .expect("committed offsets");
        (0..self.raw_partitions)
            .map(|p| match got.find_partition(RAW, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => Some(o),
                _ => None,
            })
            .collect()
    }

    /// Waits until the group has committed every raw partition to its end.
    pub async fn wait_all_committed(&self, servers: &[&TestServer], within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let ends = self.ends(RAW, self.raw_partitions);
            let committed = self.committed();
            let done = ends
                .iter()
                .zip(&committed)
                .all(|(end, c)| *end == 0 || *c == Some(*end));
            if done {
                return;
            }
            if Instant::now() > deadline {
                let logs: Vec<String> = servers.iter().map(|s| s.logs()).collect();
                panic!("not committed to the end within {within:?}: ends {ends:?}, committed {committed:?}\n{}", logs.join("\n"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every record of `topic` (all `partitions`), once `n` have arrived or after `within`.
    pub fn read(
        &self,
        topic: &str,
        partitions: i32,
        n: usize,
        within: Duration,
    ) -> Vec<OwnedMessage> {
        let c: BaseConsumer = client(&self.brokers())
            .set("group.id", "test-reader")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .unwrap();
        }
        c.assign(&tpl).unwrap();
        let mut out = Vec::new();
        let deadline = Instant::now() + within;
        while out.len() < n && Instant::now() < deadline {
            if let Some(m) = c.poll(Duration::from_millis(100)) {
                out.push(m.expect("read").detach());
            }
        }
        // A little longer, to see records beyond the `n` expected.
        let extra = Instant::now() + Duration::from_millis(300);
        while Instant::now() < extra {
            if let Some(m) = c.poll(Duration::from_millis(50)) {
                out.push(m.expect("read").detach());
            }
        }
        out.sort_by_key(|m| (m.partition(), m.offset()));
        out
    }
}

fn client(brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    c
}
