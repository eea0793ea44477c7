//! The raw-topic consumer: lead events from Kafka into the store, through the same
//! pipeline as HTTP.
//!
//! One loop, one batch at a time:
//! 1. **poll** up to `kafka.max_batch_records` records (or 16 MB), waiting at most
//!    `kafka.max_batch_wait` after the first;
//! 2. **prepare** on a blocking thread: parse each record (simd-json, [`Parser::parse_record`]:
//!    a per-event record or a batch record shaped like the HTTP body), validate and
//!    normalize it ([`Ingest::prepare`]), and sort out what goes where: rows of leads
//!    this process owns into one [`Prepared`] per `(organizationId, eventType)`,
//!    rows of leads whose partition another group member owns to be re-routed,
//!    rejected rows and unparseable or invalid records to be dead-lettered;
//! 3. **store** the groups through the single writer ([`Ingestor::store`]), which
//!    dedups them against everything stored so far and returns once they are durable;
//! 4. **produce** the dead letters and re-routed events and wait for every ack;
//! 5. **commit**, synchronously, the position after the last record of each partition.
//!
//! A failure in 3 or 4 (store unavailable, brokers not acknowledging) commits nothing:
//! the loop backs off (`clickhouse.retry_initial`, doubling up to `retry_max`) and
//! runs the same records again from step 2. Rows stored by the failed attempt come
//! back as duplicates (the in-memory dedup index makes the retry idempotent), so
//! nothing is lost and nothing is stored twice; a dead letter or re-routed event may
//! be produced twice (at-least-once on those topics; re-routed events are deduped
//! where they land). A crash anywhere before 5 is the same as a failure: the records
//! are read again after the restart, from the last committed offsets.
//!
//! A failed commit (e.g. the partitions moved during a rebalance) is only logged:
//! the records are durable already, and whoever reads them again finds them as
//! duplicates.

use super::dlq::{self, DeadLetter, Source as DlqSource};
use super::{config, lead_key, partition_for, KafkaError, Topics};
use crate::config::Config;
use crate::ingest::Ingestor;
use leadstream_pipeline::batch::RejectReason;
use leadstream_pipeline::parse::{Events, Scalar, Slot};
use leadstream_pipeline::time::format_rfc3339_ms;
use leadstream_pipeline::{Ingest, OrgId, Parser, Prepared, Row};
use parking_lot::RwLock;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// A batch holds at most this many payload bytes, whatever `max_batch_records` says:
/// 5,000 batch records of up to 1 MB would otherwise be 5 GB. 16 MB is ~100,000
/// events, a fraction of a second of work, so commits stay frequent.
const MAX_BATCH_BYTES: usize = 16 << 20;
/// Progress is logged at most this often.
const PROGRESS_EVERY: Duration = Duration::from_secs(30);
/// Consumer errors (brokers down, ...) are logged at most this often.
const ERROR_LOG_EVERY: Duration = Duration::from_secs(10);

/// Test-only crash points, chosen with the env variable `LEADSTREAM_FAILPOINT` (read
/// by the binary, never by this library). Not for production use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failpoint {
    /// `kafka-after-store`: `abort()` the process right after a batch's rows are
    /// durable in the store, before anything is dead-lettered and before the offsets
    /// are committed; what the crash test needs.
    AfterStore,
}

impl Failpoint {
    /// Parses the env value: `kafka-after-store`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "kafka-after-store" => Some(Self::AfterStore),
            _ => None,
        }
    }
}

/// Counters of the raw-topic consumer, for logs, benches and tests.
#[derive(Debug, Default)]
pub struct SourceStats {
    /// Records in committed batches.
    pub records: AtomicU64,
    /// Events in them (a per-event record is one; records refused whole count none).
    pub events: AtomicU64,
    pub inserted: AtomicU64,
    pub duplicates: AtomicU64,
    /// Rejected rows (each dead-lettered).
    pub rejected_rows: AtomicU64,
    /// Unparseable and invalid records (each dead-lettered).
    pub bad_records: AtomicU64,
    /// Events re-routed to the partition of their lead.
    pub forwarded: AtomicU64,
    /// Records whose offsets were committed.
    pub committed_records: AtomicU64,
    /// Successful and failed offset commits.
    pub commits: AtomicU64,
    pub commit_failures: AtomicU64,
    /// Batch attempts that failed and were retried.
    pub retries: AtomicU64,
}

impl SourceStats {
    fn snapshot(&self) -> [u64; 7] {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        [
            l(&self.records),
            l(&self.events),
            l(&self.inserted),
            l(&self.duplicates),
            l(&self.rejected_rows),
            l(&self.bad_records),
            l(&self.forwarded),
        ]
    }
}

/// A view of the raw partitions a [`RawSource`] owns.
#[derive(Clone)]
pub struct Assignment(Arc<RwLock<BTreeSet<i32>>>);

impl Assignment {
    /// The owned partitions, ascending; empty before the group is joined and during
    /// a rebalance.
    pub fn partitions(&self) -> Vec<i32> {
        self.0.read().iter().copied().collect()
    }
}

/// Readies the dedup index for raw partitions this process newly owns.
///
/// Called from the rebalance callback ([`ConsumerContext::post_rebalance`]) inside the
/// consumer's poll, on the consumer's task. While it runs the consumer hands out no
/// records, so a warmer that blocks until the index is ready (as
/// [`ClickHouseWarmer`](super::warm::ClickHouseWarmer) does) guarantees nothing from
/// the new partitions is stored before; it must finish within `max.poll.interval.ms`.
pub trait PartitionWarmer: Send + Sync + 'static {
    /// `partitions` were just assigned, only those this process did not own already;
    /// the raw topic has `partition_count`.
    fn warm(&self, partitions: &[i32], partition_count: i32);
}

/// The one-process warmer: the writer warms the whole index from the store at
/// start-up, and the consumer subscribes only after that, so every lead of every
/// partition is already in the index. It only checks that this holds.
pub struct WarmedAtStartup(pub Ingestor);

impl PartitionWarmer for WarmedAtStartup {
    fn warm(&self, partitions: &[i32], partition_count: i32) {
        if self.0.is_ready() {
            tracing::info!(
                ?partitions,
                partition_count,
                keys = self.0.stats().warmed_keys.load(Ordering::Relaxed),
                "partitions assigned; the index holds every stored key (warmed at start-up)"
            );
        } else {
            // Not reachable: the consumer subscribes after warm-up. Storing waits for it anyway.
            tracing::warn!(
                ?partitions,
                "partitions assigned before the index is warm; storing waits for the warm-up"
            );
        }
    }
}

/// The consumer's rebalance hooks: keeps the set of owned raw partitions (what
/// decides between storing a row and re-routing it) and warms the index for new ones.
struct LeadContext {
    topic: String,
    partition_count: i32,
    owned: Arc<RwLock<BTreeSet<i32>>>,
    warmer: Box<dyn PartitionWarmer>,
}

impl ClientContext for LeadContext {}

impl ConsumerContext for LeadContext {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let new: Vec<i32> = {
                    let mut owned = self.owned.write();
                    tpl.elements_for_topic(&self.topic)
                        .iter()
                        .map(|e| e.partition())
                        .filter(|p| owned.insert(*p))
                        .collect()
                };
                if !new.is_empty() {
                    self.warmer.warm(&new, self.partition_count);
                }
            }
            Rebalance::Revoke(tpl) => {
                let mut owned = self.owned.write();
                let gone: Vec<i32> = tpl
                    .elements_for_topic(&self.topic)
                    .iter()
                    .map(|e| e.partition())
                    .filter(|p| owned.remove(p))
                    .collect();
                tracing::info!(partitions = ?gone, still_owned = owned.len(), "partitions revoked");
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "consumer group rebalance failed"),
        }
    }
}

/// What the loop needs from the configuration.
#[derive(Debug, Clone)]
struct Settings {
    raw_topic: String,
    rejects_topic: String,
    partitions: i32,
    max_batch_records: usize,
    max_batch_wait: Duration,
    retry_initial: Duration,
    retry_max: Duration,
    failpoint: Option<Failpoint>,
}

/// The raw-topic consumer, ready to [`run`](RawSource::run).
pub struct RawSource {
    consumer: Arc<StreamConsumer<LeadContext>>,
    producer: FutureProducer,
    ingestor: Ingestor,
    ingest: Ingest,
    settings: Settings,
    owned: Arc<RwLock<BTreeSet<i32>>>,
    stats: Arc<SourceStats>,
}

impl RawSource {
    /// Creates the consumer (group `kafka.group_id`) and the producer for dead letters
    /// and re-routed events. Must be called inside a tokio runtime. `topics` gives the
    /// raw topic's partition count, which routing divides by. Nothing is read until
    /// [`run`](RawSource::run).
    ///
    /// # Errors
    /// [`KafkaError::Client`] when librdkafka refuses the configuration.
    pub fn new(
        config: &Config,
        topics: &Topics,
        ingestor: Ingestor,
        ingest: Ingest,
        failpoint: Option<Failpoint>,
    ) -> Result<Self, KafkaError> {
        let warmer = Box::new(WarmedAtStartup(ingestor.clone()));
        Self::with_warmer(config, topics, ingestor, ingest, failpoint, warmer)
    }

    /// Like [`new`](RawSource::new), warming newly assigned partitions with `warmer`
    /// ([`ClickHouseWarmer`](super::warm::ClickHouseWarmer) when several processes
    /// share a ClickHouse; `new` uses [`WarmedAtStartup`]).
    ///
    /// # Errors
    /// As [`new`](RawSource::new).
    pub fn with_warmer(
        config: &Config,
        topics: &Topics,
        ingestor: Ingestor,
        ingest: Ingest,
        failpoint: Option<Failpoint>,
        warmer: Box<dyn PartitionWarmer>,
    ) -> Result<Self, KafkaError> {
        let k = &config.kafka;
        let client_err = |client| {
            move |source| KafkaError::Client {
                client,
                brokers: k.brokers.clone(),
                source,
            }
        };
        let owned = Arc::new(RwLock::new(BTreeSet::new()));
        let context = LeadContext {
            topic: k.raw_topic.clone(),
            partition_count: topics.raw_partitions(),
            owned: owned.clone(),
            warmer,
        };
        let consumer = config::consumer(k)
            .create_with_context(context)
            .map_err(client_err("raw-topic consumer"))?;
        // This producer enqueues a whole batch's dead letters and re-routed events at
        // once and then waits for their acks: lingering would only add latency.
        let producer = config::producer(k, "raw-consumer-producer")
            .set("linger.ms", "0")
            .create()
            .map_err(client_err("dead-letter producer"))?;
        Ok(Self {
            consumer: Arc::new(consumer),
            producer,
            ingestor,
            ingest,
            settings: Settings {
                raw_topic: k.raw_topic.clone(),
                rejects_topic: k.rejects_topic.clone(),
                partitions: topics.raw_partitions(),
                max_batch_records: k.max_batch_records,
                max_batch_wait: k.max_batch_wait,
                retry_initial: config.clickhouse.retry_initial,
                retry_max: config
                    .clickhouse
                    .retry_max
                    .max(config.clickhouse.retry_initial),
                failpoint,
            },
            owned,
            stats: Arc::new(SourceStats::default()),
        })
    }

    /// The counters, shared with the running loop.
    pub fn stats(&self) -> Arc<SourceStats> {
        self.stats.clone()
    }

    /// The raw partitions this consumer owns, kept current by the rebalance hook.
    pub fn assignment(&self) -> Assignment {
        Assignment(self.owned.clone())
    }

    /// Waits for the index warm-up, subscribes and consumes until `shutdown` turns
    /// true (or its sender is dropped). A batch in progress is finished and committed
    /// first, unless it is waiting to retry, then it is left uncommitted. Leaves the
    /// group on the way out.
    ///
    /// # Errors
    /// [`KafkaError::Subscribe`] when the subscription is refused.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> Result<(), KafkaError> {
        while !self.ingestor.is_ready() {
            tokio::select! {
                () = stopped(&mut shutdown) => return Ok(()),
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
        let topic = self.settings.raw_topic.clone();
        self.consumer
            .subscribe(&[&topic])
            .map_err(|source| KafkaError::Subscribe {
                topic: topic.clone(),
                source,
            })?;
        tracing::info!(topic = %topic, partitions = self.settings.partitions, "consuming lead events from Kafka");

        let mut progress = (Instant::now(), self.stats.snapshot());
        let mut errors = ErrorLog::default();
        while let Some(batch) = self.poll_batch(&mut shutdown, &mut errors).await {
            let batch = Arc::new(batch);
            if !self.process_until_done(&batch, &mut shutdown).await {
                tracing::info!(records = batch.len(), "stopping during a retry; the batch stays uncommitted and is read again at the next start");
                break;
            }
            self.commit(&batch).await;
            if progress.0.elapsed() >= PROGRESS_EVERY {
                let now = self.stats.snapshot();
                if now != progress.1 {
                    let [records, events, inserted, duplicates, rejected_rows, bad_records, forwarded] =
                        now;
                    tracing::info!(
                        records,
                        events,
                        inserted,
                        duplicates,
                        rejected_rows,
                        bad_records,
                        forwarded,
                        "Kafka ingest totals"
                    );
                }
                progress = (Instant::now(), now);
            }
        }
        // Closing leaves the group (its partitions move at once) and blocks while it does.
        let consumer = self.consumer;
        let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
        tracing::info!("Kafka consumer stopped");
        Ok(())
    }

    /// The next batch, or `None` on shutdown.
    async fn poll_batch(
        &self,
        shutdown: &mut watch::Receiver<bool>,
        errors: &mut ErrorLog,
    ) -> Option<Vec<OwnedMessage>> {
        let first = loop {
            tokio::select! {
                biased;
                () = stopped(shutdown) => return None,
                m = self.consumer.recv() => match m {
                    Ok(m) => break m.detach(),
                    Err(e) => {
                        errors.log(&e);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        };
        let deadline = tokio::time::Instant::now() + self.settings.max_batch_wait;
        let mut bytes = first.payload().map_or(0, <[u8]>::len);
        let mut batch = Vec::with_capacity(self.settings.max_batch_records.min(65_536));
        batch.push(first);
        while batch.len() < self.settings.max_batch_records && bytes < MAX_BATCH_BYTES {
            match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                Ok(Ok(m)) => {
                    bytes += m.payload().map_or(0, <[u8]>::len);
                    batch.push(m.detach());
                }
                Ok(Err(e)) => {
                    errors.log(&e);
                    break;
                }
                Err(_) => break,
            }
        }
        Some(batch)
    }

    /// Runs [`process`](Self::process) until it succeeds; `false` when shutdown
    /// comes while waiting to retry.
    async fn process_until_done(
        &self,
        batch: &Arc<Vec<OwnedMessage>>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> bool {
        let mut delay = self.settings.retry_initial;
        loop {
            match self.process(batch).await {
                Ok(()) => return true,
                Err(e) => {
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, records = batch.len(), retry_in_ms = delay.as_millis() as u64, "batch not done; offsets not committed, retrying the same records");
                    tokio::select! {
                        () = stopped(shutdown) => return false,
                        () = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(self.settings.retry_max);
                }
            }
        }
    }

    /// Steps 2–4 of the module docs for one batch.
    async fn process(&self, batch: &Arc<Vec<OwnedMessage>>) -> Result<(), StepError> {
        let (msgs, ingest, s) = (batch.clone(), self.ingest.clone(), self.settings.clone());
        let owned = self.owned.read().clone();
        let t0 = Instant::now();
        let plan = tokio::task::spawn_blocking(move || {
            PARSER.with_borrow_mut(|(parser, buf)| plan(&msgs, &ingest, parser, buf, &s, &owned))
        })
        .await
        .map_err(|e| StepError::Worker(e.to_string()))?;

        let t1 = Instant::now();
        let mut stores = Vec::with_capacity(plan.groups.len());
        for group in plan.groups {
            let ingestor = self.ingestor.clone();
            stores.push(tokio::spawn(async move { ingestor.store(group).await }));
        }
        let (mut inserted, mut duplicates, mut failed) = (0, 0, None);
        for task in stores {
            match task.await {
                Ok(Ok(s)) => {
                    inserted += s.inserted as u64;
                    duplicates += s.duplicates as u64;
                }
                Ok(Err(e)) => failed = Some(StepError::Store(e.to_string())),
                Err(e) => failed = Some(StepError::Worker(e.to_string())),
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        if self.settings.failpoint == Some(Failpoint::AfterStore) {
            tracing::error!(
                records = batch.len(),
                "failpoint kafka-after-store: aborting after the store write, before the commit"
            );
            std::process::abort();
        }

        let t2 = Instant::now();
        self.produce_all(&plan.outgoing).await?;
        let t3 = Instant::now();

        let c = &plan.counts;
        let st = &self.stats;
        st.records.fetch_add(batch.len() as u64, Ordering::Relaxed);
        st.events.fetch_add(c.events, Ordering::Relaxed);
        st.inserted.fetch_add(inserted, Ordering::Relaxed);
        st.duplicates.fetch_add(duplicates, Ordering::Relaxed);
        st.rejected_rows
            .fetch_add(c.rejected_rows, Ordering::Relaxed);
        st.bad_records.fetch_add(c.bad_records, Ordering::Relaxed);
        st.forwarded.fetch_add(c.forwarded, Ordering::Relaxed);
        tracing::debug!(
            records = batch.len(),
            events = c.events,
            inserted,
            duplicates,
            rejected_rows = c.rejected_rows,
            bad_records = c.bad_records,
            forwarded = c.forwarded,
            prepare_ms = (t1 - t0).as_secs_f64() * 1e3,
            store_ms = (t2 - t1).as_secs_f64() * 1e3,
            produce_ms = (t3 - t2).as_secs_f64() * 1e3,
            "batch stored"
        );
        Ok(())
    }

    /// Produces the dead letters and re-routed events; returns once every one is acknowledged.
    async fn produce_all(&self, outgoing: &[Outgoing]) -> Result<(), StepError> {
        let mut pending: Vec<(DeliveryFuture, &str)> = Vec::new();
        for out in outgoing {
            let topic = match out.to {
                To::DeadLetter => self.settings.rejects_topic.as_str(),
                To::Raw(_) => self.settings.raw_topic.as_str(),
            };
            loop {
                let mut record = FutureRecord::to(topic).payload(&out.payload);
                if let Some(k) = &out.key {
                    record = record.key(k.as_slice());
                }
                if let To::Raw(p) = out.to {
                    record = record.partition(p);
                }
                match self.producer.send_result(record) {
                    Ok(f) => {
                        pending.push((f, topic));
                        break;
                    }
                    // The local queue is full: wait for what is in flight, then go on.
                    Err((
                        rdkafka::error::KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull),
                        _,
                    )) => {
                        await_acks(pending.drain(..)).await?;
                    }
                    Err((source, _)) => {
                        return Err(StepError::Produce(KafkaError::Produce {
                            topic: topic.to_owned(),
                            source,
                        }))
                    }
                }
            }
        }
        await_acks(pending.into_iter()).await
    }

    /// Commits the position after the last record of each partition in `batch`.
    async fn commit(&self, batch: &[OwnedMessage]) {
        let mut next: BTreeMap<(&str, i32), i64> = BTreeMap::new();
        for m in batch {
            let e = next.entry((m.topic(), m.partition())).or_insert(0);
            *e = (*e).max(m.offset() + 1);
        }
        let mut tpl = TopicPartitionList::with_capacity(next.len());
        for ((topic, partition), offset) in &next {
            if let Err(e) = tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset)) {
                tracing::error!(error = %e, topic, partition, offset, "bad commit position");
            }
        }
        let consumer = self.consumer.clone();
        let result =
            tokio::task::spawn_blocking(move || consumer.commit(&tpl, CommitMode::Sync)).await;
        match result {
            Ok(Ok(())) => {
                self.stats.commits.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .committed_records
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
            }
            Ok(Err(e)) => {
                self.stats.commit_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, partitions = next.len(), "offset commit failed; the records are stored and will be read again as duplicates");
            }
            Err(e) => tracing::error!(error = %e, "offset commit task failed"),
        }
    }
}

async fn await_acks<'a>(
    pending: impl Iterator<Item = (DeliveryFuture, &'a str)>,
) -> Result<(), StepError> {
    let mut first_err = None;
    for (f, topic) in pending {
        let err = match f.await {
            Ok(Ok(_)) => continue,
            Ok(Err((source, _))) => KafkaError::Produce {
                topic: topic.to_owned(),
                source,
            },
            Err(_) => KafkaError::Produce {
                topic: topic.to_owned(),
                source: rdkafka::error::KafkaError::Canceled,
            },
        };
        first_err.get_or_insert(err);
    }
    first_err.map_or(Ok(()), |e| Err(StepError::Produce(e)))
}

/// Resolves once shutdown is requested or its sender is gone.
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|&stop| stop).await;
}

/// Why a batch attempt failed; the batch is retried.
#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error("storing: {0}")]
    Store(String),
    #[error("{0}")]
    Produce(KafkaError),
    #[error("worker task failed: {0}")]
    Worker(String),
}

/// Logs consumer errors, at most one line per [`ERROR_LOG_EVERY`] with a count.
#[derive(Default)]
struct ErrorLog {
    last: Option<Instant>,
    suppressed: u64,
}

impl ErrorLog {
    fn log(&mut self, e: &rdkafka::error::KafkaError) {
        if self.last.is_some_and(|t| t.elapsed() < ERROR_LOG_EVERY) {
            self.suppressed += 1;
            return;
        }
        tracing::warn!(error = %e, suppressed = self.suppressed, "Kafka consumer error");
        self.last = Some(Instant::now());
        self.suppressed = 0;
    }
}

// ---------------------------------------------------------------------------------
// Step 2: the CPU part, on a blocking thread.

thread_local! {
    /// The parser and the copy of the record it parses in place (the original stays
    /// intact for dead letters).
    static PARSER: RefCell<(Parser, Vec<u8>)> = RefCell::new((Parser::new(), Vec::new()));
}

/// Where an outgoing record goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum To {
    DeadLetter,
    /// The raw topic's partition of the event's lead.
    Raw(i32),
}

#[derive(Debug)]
struct Outgoing {
    to: To,
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Counts {
    events: u64,
    rejected_rows: u64,
    bad_records: u64,
    forwarded: u64,
}

/// What to do with one batch.
struct Plan {
    groups: Vec<Prepared>,
    outgoing: Vec<Outgoing>,
    counts: Counts,
}

/// Parses, prepares and routes every record of `msgs`. Pure but for the parser scratch.
fn plan(
    msgs: &[OwnedMessage],
    ingest: &Ingest,
    parser: &mut Parser,
    buf: &mut Vec<u8>,
    s: &Settings,
    owned: &BTreeSet<i32>,
) -> Plan {
    let mut groups: HashMap<(OrgId, String), Prepared> = HashMap::new();
    let mut outgoing = Vec::new();
    let mut counts = Counts::default();
    for m in msgs {
        let source = || DlqSource {
            topic: m.topic().to_owned(),
            partition: m.partition(),
            offset: m.offset(),
        };
        let mut dead = |d: DeadLetter| {
            outgoing.push(Outgoing {
                to: To::DeadLetter,
                key: m.key().map(<[u8]>::to_vec),
                payload: d.encode(),
            })
        };
        let Some(payload) = m.payload().filter(|p| !p.is_empty()) else {
            counts.bad_records += 1;
            dead(DeadLetter::unparseable(
                source(),
                "empty record".into(),
                &[],
            ));
            continue;
        };
        buf.clear();
        buf.extend_from_slice(payload);
        let record = match parser.parse_record(buf) {
            Ok(r) => r,
            Err(reason) => {
                counts.bad_records += 1;
                dead(DeadLetter::unparseable(source(), reason, payload));
                continue;
            }
        };
        let is_batch = record.is_batch();
        let raw = record.into_batch();
        let org_hint = Ingest::organization_id(&raw).ok();
        let type_hint = raw
            .event_type
            .as_ref()
            .and_then(Scalar::as_str)
            .map(str::to_owned);
        let prepared = match ingest.prepare(raw) {
            Ok(p) => p,
            Err(e) => {
                counts.bad_records += 1;
                dead(DeadLetter::invalid_record(
                    source(),
                    org_hint,
                    type_hint,
                    e.to_string(),
                    payload,
                ));
                continue;
            }
        };
        counts.events += prepared.received as u64;

        if prepared.rejected > 0 {
            counts.rejected_rows += prepared.rejected as u64;
            let rejects: Vec<(usize, RejectReason)> = if prepared.rejects.len() == prepared.rejected
            {
                prepared
                    .rejects
                    .iter()
                    .map(|r| (r.index, r.reason))
                    .collect()
            } else {
                // `prepare` lists the first 50; the dead letter wants every one.
                all_rejects(
                    ingest,
                    parser,
                    buf,
                    payload,
                    prepared.org,
                    &prepared.event_type,
                )
            };
            let rows = if is_batch {
                dlq::batch_rows(payload)
            } else {
                None
            };
            for (index, reason) in rejects {
                let row = match &rows {
                    Some(rows) => rows.get(index).map(|r| r.get().to_owned()),
                    None if !is_batch => std::str::from_utf8(payload).ok().map(str::to_owned),
                    None => None,
                };
                dead(DeadLetter::rejected_row(
                    source(),
                    prepared.org,
                    &prepared.event_type,
                    index,
                    reason.to_string(),
                    row,
                    payload,
                ));
            }
        }

        let Prepared {
            org,
            event_type,
            rows,
            ..
        } = prepared;
        let mut keep = Vec::with_capacity(rows.len());
        for row in rows {
            let p = partition_for(org, row.phone, s.partitions);
            // Leads of a partition this process owns meet the same index and writer
            // here, whichever partition they were read from; others go to their own.
            if p == m.partition() || owned.contains(&p) {
                keep.push(row);
            } else {
                counts.forwarded += 1;
                outgoing.push(Outgoing {
                    to: To::Raw(p),
                    key: Some(lead_key(org, row.phone).into_bytes()),
                    payload: event_record(org, &event_type, &row),
                });
            }
        }
        if !keep.is_empty() {
            let group = groups
                .entry((org, event_type))
                .or_insert_with_key(|(org, event_type)| Prepared {
                    org: *org,
                    event_type: event_type.clone(),
                    received: 0,
                    rows: Vec::new(),
                    rejected: 0,
                    rejects: Vec::new(),
                });
            group.received += keep.len();
            group.rows.append(&mut keep);
        }
    }
    Plan {
        groups: groups.into_values().collect(),
        outgoing,
        counts,
    }
}

/// Every reject of a record, in order: judges each event again (the slow path, for
/// records with more rejects than [`Prepared::rejects`] lists).
fn all_rejects(
    ingest: &Ingest,
    parser: &mut Parser,
    buf: &mut Vec<u8>,
    payload: &[u8],
    org: OrgId,
    event_type: &str,
) -> Vec<(usize, RejectReason)> {
    buf.clear();
    buf.extend_from_slice(payload);
    let Ok(record) = parser.parse_record(buf) else {
        return Vec::new();
    };
    let Some(Events::List(slots)) = record.into_batch().events else {
        return Vec::new();
    };
    slots
        .into_iter()
        .enumerate()
        .filter_map(|(i, slot)| match slot {
            Slot::Event(ev) => ingest
                .judge(org, event_type, ev)
                .err()
                .map(|(reason, _)| (i, reason)),
            Slot::NotObject(_) => Some((i, RejectReason::NotAnObject)),
        })
        .collect()
}

/// A per-event record holding a normalized row: what re-routing produces. Normalizing
/// it again changes nothing, so it keeps its fingerprint.
fn event_record(org: OrgId, event_type: &str, row: &Row) -> Vec<u8> {
    let mut out =
        String::with_capacity(128 + event_type.len() + row.metadata.as_deref().map_or(0, str::len));
    out.push_str("{\"organizationId\":");
    out.push_str(&org.to_string());
    out.push_str(",\"eventType\":");
    out.push_str(&serde_json::to_string(event_type).expect("a string serializes"));
    out.push_str(",\"phoneE164\":\"");
    out.push_str(&row.phone.to_string());
    out.push_str("\",\"occurredAt\":\"");
    out.push_str(&format_rfc3339_ms(row.occurred_at_ms));
    out.push('"');
    if let Some(m) = &row.metadata {
        // Compact JSON object text, as parsed.
        out.push_str(",\"metadata\":");
        out.push_str(m);
    }
    out.push('}');
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use leadstream_pipeline::PhoneNormalizer;
    use rdkafka::message::Timestamp;

    fn msg(partition: i32, offset: i64, payload: &[u8]) -> OwnedMessage {
        OwnedMessage::new(
            Some(payload.to_vec()),
            None,
            "raw".into(),
            Timestamp::NotAvailable,
            partition,
            offset,
            None,
        )
    }

    fn settings(partitions: i32) -> Settings {
        Settings {
            raw_topic: "raw".into(),
            rejects_topic: "rejects".into(),
            partitions,
            max_batch_records: 100,
            max_batch_wait: Duration::from_millis(10),
            retry_initial: Duration::from_millis(1),
            retry_max: Duration::from_millis(2),
            failpoint: None,
        }
    }

    fn run(msgs: &[OwnedMessage], partitions: i32, owned: &[i32]) -> Plan {
        let ingest = Ingest::new(PhoneNormalizer::new());
        let owned: BTreeSet<i32> = owned.iter().copied().collect();
        plan(
            msgs,
            &ingest,
            &mut Parser::new(),
            &mut Vec::new(),
            &settings(partitions),
            &owned,
        )
    }

    fn dead_letters(p: &Plan) -> Vec<serde_json::Value> {
        p.outgoing
            .iter()
            .filter(|o| o.to == To::DeadLetter)
            .map(|o| serde_json::from_slice(&o.payload).unwrap())
            .collect()
    }

    #[test]
    fn both_shapes_are_grouped_by_org_and_type() {
        let msgs = [
            msg(0, 0, br#"{"organizationId":1,"eventType":"a","phoneE164":"+15551230001","occurredAt":"2026-05-12T18:34:00Z"}"#),
            msg(0, 1, br#"{"organizationId":1,"eventType":"a","events":[{"phoneE164":"+15551230002","occurredAt":"2026-05-12T18:34:00Z"},{"phoneE164":"+15551230003","occurredAt":"2026-05-12T18:34:00Z","metadata":{"k":1}}]}"#),
            msg(0, 2, br#"{"organizationId":2,"eventType":"a","phoneE164":"+15551230001","occurredAt":"2026-05-12T18:34:00Z"}"#),
        ];
        let p = run(&msgs, 1, &[0]);
        assert_eq!(
            p.counts,
            Counts {
                events: 4,
                ..Counts::default()
            }
        );
        assert!(p.outgoing.is_empty());
        let mut sizes: Vec<(OrgId, usize)> =
            p.groups.iter().map(|g| (g.org, g.rows.len())).collect();
        sizes.sort();
        assert_eq!(sizes, [(1, 3), (2, 1)]);
    }

    #[test]
    fn every_rejected_row_and_bad_record_is_dead_lettered_with_its_source() {
        // 60 bad rows: more than `prepare` lists.
        let mut events: Vec<String> = (0..60)
            .map(|_| r#"{"phoneE164":"n/a","occurredAt":"2026-05-12T18:34:00Z"}"#.to_string())
            .collect();
        events.push(r#"{"phoneE164":"+15551230001","occurredAt":"2026-05-12T18:34:00Z"}"#.into());
        let batch = format!(
            r#"{{"organizationId":1,"eventType":"a","events":[{}]}}"#,
            events.join(",")
        );
        let msgs = [
            msg(0, 10, batch.as_bytes()),
            msg(0, 11, b"not json"),
            msg(0, 12, br#"{"organizationId":1,"eventType":"","phoneE164":"+15551230001"}"#),
            msg(0, 13, br#"{"organizationId":1,"eventType":"a","phoneE164":"+15551230001","occurredAt":"nope"}"#),
            msg(0, 14, &[0xff, 0x00]),
        ];
        let p = run(&msgs, 1, &[0]);
        assert_eq!(
            p.counts,
            Counts {
                events: 62,
                rejected_rows: 61,
                bad_records: 3,
                forwarded: 0
            }
        );
        let dl = dead_letters(&p);
        assert_eq!(dl.len(), 64);
        assert_eq!(dl[0]["kind"], "rejected_row");
        assert_eq!(dl[0]["index"], 0);
        assert_eq!(dl[59]["index"], 59);
        assert_eq!(
            dl[59]["original"],
            r#"{"phoneE164":"n/a","occurredAt":"2026-05-12T18:34:00Z"}"#
        );
        assert_eq!(dl[59]["originalScope"], "row");
        assert_eq!(
            dl[59]["source"],
            serde_json::json!({"topic": "raw", "partition": 0, "offset": 10})
        );
        assert_eq!(dl[60]["kind"], "unparseable_record");
        assert_eq!(dl[60]["original"], "not json");
        assert_eq!(dl[61]["kind"], "invalid_record");
        assert_eq!(dl[61]["reason"], "eventType is empty");
        assert_eq!(dl[62]["kind"], "rejected_row");
        assert_eq!(dl[62]["reason"], "invalid occurredAt");
        assert_eq!(dl[62]["originalScope"], "row");
        assert_eq!(dl[63]["originalEncoding"], "base64");
        assert_eq!(p.groups.iter().map(|g| g.rows.len()).sum::<usize>(), 1);
    }

    #[test]
    fn leads_of_partitions_owned_elsewhere_are_rerouted_normalized() {
        let ingest = Ingest::new(PhoneNormalizer::new());
        // Find a phone whose lead is on partition 1 of 2, and read it from partition 0.
        let (phone, e164) = (0..100)
            .map(|i| {
                (
                    format!("+1 (555) 123-{:04}", i),
                    leadstream_pipeline::Phone(15551230000 + i),
                )
            })
            .find(|(_, p)| partition_for(7, *p, 2) == 1)
            .unwrap();
        let body = format!(
            r#"{{"organizationId":7,"eventType":"t","phoneE164":"{phone}","occurredAt":"2026-05-12T13:34:00-05:00","metadata":{{"a":[1]}}}}"#
        );
        let msgs = [msg(0, 5, body.as_bytes())];
        // Owning both partitions: stored here.
        let p = run(&msgs, 2, &[0, 1]);
        assert_eq!((p.groups.len(), p.outgoing.len()), (1, 0));
        // Owning only partition 0: re-routed to partition 1, keyed by lead.
        let p = run(&msgs, 2, &[0]);
        assert_eq!(p.counts.forwarded, 1);
        assert!(p.groups.is_empty());
        let out = &p.outgoing[0];
        assert_eq!(out.to, To::Raw(1));
        assert_eq!(out.key.as_deref(), Some(format!("7:{e164}").as_bytes()));
        let text = std::str::from_utf8(&out.payload).unwrap();
        assert_eq!(text, r#"{"organizationId":7,"eventType":"t","phoneE164":"+15551230000","occurredAt":"2026-05-12T18:34:00.000Z","metadata":{"a":[1]}}"#.replace("+15551230000", &e164.to_string()));
        // Read again from its own partition, it is stored with the same fingerprint.
        let again = run(&[msg(1, 0, &out.payload)], 2, &[1]);
        let original = run(&msgs, 2, &[0, 1]);
        assert_eq!(
            again.groups[0].rows[0].probe,
            original.groups[0].rows[0].probe
        );
        drop(ingest);
    }

    #[test]
    fn failpoints_parse() {
        assert_eq!(
            Failpoint::parse("kafka-after-store"),
            Some(Failpoint::AfterStore)
        );
        assert_eq!(Failpoint::parse("nope"), None);
    }
}
