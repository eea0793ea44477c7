//! The raw-topic consumer loop: lead events from Kafka into the store, through the
//! same pipeline as HTTP.
//!
//! One loop, one batch at a time:
//! 1. **poll** up to `kafka.max_batch_records` records (or 16 MB), waiting at most
//!    `kafka.max_batch_wait` after the first;
//! 2. **plan** on a blocking thread ([`super::plan`]): parse and prepare each record
//!    and decide where each row goes: stored here, re-routed to its lead's partition,
//!    or dead-lettered;
//! 3. **store** the groups through the single writer
//!    ([`EventWriter::store_isolating_refusals`]), which dedups them against everything
//!    stored so far and returns once they are durable. Rows the store refuses for good
//!    ([`StoreError::Rejected`]) are found by splitting the group (down to single
//!    rows, within [`ISOLATION_ATTEMPTS`] store calls a group), the rest is stored,
//!    and the refused rows become `refused_by_store` dead letters;
//! 4. **produce** the dead letters and re-routed events and wait for every ack;
//! 5. **commit**, synchronously, the position after the last record of each partition.
//!
//! Errors stay typed (`StepError`, holding the [`StoreError`]). A transient failure in 3 or 4 (store
//! unavailable, brokers not acknowledging) and a broken store
//! ([`StoreError::Failed`]: every row would fail alike, so none is dead-lettered)
//! commit nothing: the loop backs off (`[kafka.retry]`) and runs the same records again
//! from step 2. Rows stored by the failed attempt come back as duplicates (the
//! in-memory dedup index makes the retry idempotent), so nothing is lost and nothing
//! is stored twice; a dead letter or re-routed event may be produced twice
//! (at-least-once on those topics; re-routed events are deduped where they land). A
//! stopped writer ends the loop. A crash anywhere before 5 is the same as a failure:
//! the records are read again after the restart, from the last committed offsets.
//!
//! A failed commit (e.g. the partitions moved during a rebalance) is only logged:
//! the records are durable already, and whoever reads them again finds them as
//! duplicates.

use super::plan::{plan, refused_dead_letters, Outgoing, Plan, To};
use super::rebalance::{Assignment, PartitionWarmer, RebalanceHooks, WarmedAtStartup};
use super::{config, KafkaError, Topics};
use crate::config::Config;
use crate::metrics::{self, Source};
use crate::store::StoreError;
use crate::writer::{EventWriter, Isolated};
use leadstream_pipeline::retry::Backoff;
use leadstream_pipeline::{Parser, Preparer};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use std::cell::RefCell;
use std::collections::BTreeMap;
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
/// Store calls spent finding the refused rows of one group: one bad row among 5,000
/// takes about 26; past this, the parts still refused are dead-lettered whole.
pub const ISOLATION_ATTEMPTS: usize = 256;

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
    /// Valid rows the store refused for good (each dead-lettered).
    pub refused_rows: AtomicU64,
    /// Records whose offsets were committed.
    pub committed_records: AtomicU64,
    /// Successful and failed offset commits.
    pub commits: AtomicU64,
    pub commit_failures: AtomicU64,
    /// Batch attempts that failed and were retried.
    pub retries: AtomicU64,
}

impl SourceStats {
    fn snapshot(&self) -> [u64; 8] {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        [
            l(&self.records),
            l(&self.events),
            l(&self.inserted),
            l(&self.duplicates),
            l(&self.rejected_rows),
            l(&self.bad_records),
            l(&self.forwarded),
            l(&self.refused_rows),
        ]
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
    retry: Backoff,
    failpoint: Option<Failpoint>,
}

/// The raw-topic consumer, ready to [`run`](RawSource::run).
pub struct RawSource {
    consumer: Arc<StreamConsumer<RebalanceHooks>>,
    producer: FutureProducer,
    writer: EventWriter,
    preparer: Preparer,
    settings: Settings,
    owned: Assignment,
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
        writer: EventWriter,
        preparer: Preparer,
        failpoint: Option<Failpoint>,
    ) -> Result<Self, KafkaError> {
        let warmer = Box::new(WarmedAtStartup(writer.clone()));
        Self::with_warmer(config, topics, writer, preparer, failpoint, warmer)
    }

    /// Like [`new`](RawSource::new), warming newly assigned partitions with `warmer`
    /// ([`ClickHouseWarmer`](crate::clickhouse::ClickHouseWarmer) when several processes
    /// share a ClickHouse; `new` uses [`WarmedAtStartup`]).
    ///
    /// # Errors
    /// As [`new`](RawSource::new).
    pub fn with_warmer(
        config: &Config,
        topics: &Topics,
        writer: EventWriter,
        preparer: Preparer,
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
        let owned = Assignment::default();
        let context = RebalanceHooks {
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
            writer,
            preparer,
            settings: Settings {
                raw_topic: k.raw_topic.clone(),
                rejects_topic: k.rejects_topic.clone(),
                partitions: topics.raw_partitions(),
                max_batch_records: k.max_batch_records,
                max_batch_wait: k.max_batch_wait,
                retry: k.retry.backoff(),
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
        self.owned.clone()
    }

    /// Waits for the index warm-up, subscribes and consumes until `shutdown` turns
    /// true (or its sender is dropped). A batch in progress is finished and committed
    /// first, unless it is waiting to retry, then it is left uncommitted. Leaves the
    /// group on the way out.
    ///
    /// # Errors
    /// [`KafkaError::Subscribe`] when the subscription is refused;
    /// [`KafkaError::Store`] when the writer stopped (nothing more can be stored).
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> Result<(), KafkaError> {
        while !self.writer.is_ready() {
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
        let mut outcome = Ok(());
        while let Some(batch) = self.poll_batch(&mut shutdown, &mut errors).await {
            let batch = Arc::new(batch);
            match self.process_until_done(&batch, &mut shutdown).await {
                Done::Processed => {}
                Done::ShutDown => {
                    tracing::info!(records = batch.len(), "stopping during a retry; the batch stays uncommitted and is read again at the next start");
                    break;
                }
                Done::Fatal(source) => {
                    tracing::error!(error = %source, records = batch.len(), "the event store writer stopped; the Kafka consumer stops, the batch stays uncommitted");
                    outcome = Err(KafkaError::Store { source });
                    break;
                }
            }
            self.commit(&batch).await;
            if progress.0.elapsed() >= PROGRESS_EVERY {
                let now = self.stats.snapshot();
                if now != progress.1 {
                    let [records, events, inserted, duplicates, rejected_rows, bad_records, forwarded, refused_rows] =
                        now;
                    tracing::info!(
                        records,
                        events,
                        inserted,
                        duplicates,
                        rejected_rows,
                        bad_records,
                        forwarded,
                        refused_rows,
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
        outcome
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

    /// Runs [`process`](Self::process) until it succeeds, backing off (`[kafka.retry]`)
    /// between attempts that fail in a way a retry can fix.
    async fn process_until_done(
        &self,
        batch: &Arc<Vec<OwnedMessage>>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Done {
        let mut backoff = self.settings.retry.schedule(rand::random());
        loop {
            let e = match self.process(batch).await {
                Ok(()) => return Done::Processed,
                Err(StepError::Store(e)) if matches!(*e, StoreError::Stopped) => {
                    return Done::Fatal(e)
                }
                Err(e) => e,
            };
            let delay = backoff.next_delay();
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            let (error, records, retry_in_ms, attempt) = (
                &e,
                batch.len(),
                delay.as_millis() as u64,
                backoff.attempts(),
            );
            if e.is_transient() {
                tracing::warn!(%error, records, retry_in_ms, attempt, "batch not done; offsets not committed, retrying the same records");
            } else {
                // Not the rows' fault (they would all fail alike): wait for an operator.
                tracing::error!(%error, records, retry_in_ms, attempt, "batch not done: the event store is failing, not transiently; offsets not committed, retrying the same records until it is fixed");
            }
            tokio::select! {
                () = stopped(shutdown) => return Done::ShutDown,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// Steps 2–4 of the module docs for one batch.
    async fn process(&self, batch: &Arc<Vec<OwnedMessage>>) -> Result<(), StepError> {
        let (msgs, ingest, partitions) = (
            batch.clone(),
            self.preparer.clone(),
            self.settings.partitions,
        );
        let owned = self.owned.snapshot();
        let t0 = Instant::now();
        let Plan {
            groups,
            mut outgoing,
            counts,
        } = tokio::task::spawn_blocking(move || {
            PARSER.with_borrow_mut(|(parser, buf)| {
                plan(&msgs, &ingest, parser, buf, partitions, &owned)
            })
        })
        .await
        .map_err(StepError::Worker)?;

        let t1 = Instant::now();
        let mut stores = Vec::with_capacity(groups.len());
        for group in groups {
            let writer = self.writer.clone();
            let (org, event_type) = (group.batch.org, group.batch.event_type.clone());
            let task = crate::tasks::spawn(async move {
                writer
                    .store_isolating_refusals(group.batch, ISOLATION_ATTEMPTS)
                    .await
            });
            stores.push((task, org, event_type, group.origins));
        }
        let (mut inserted, mut duplicates, mut refused_rows, mut failed) = (0, 0, 0, None);
        for (task, org, event_type, origins) in stores {
            match task.await {
                Ok(Ok(Isolated {
                    stored,
                    refused,
                    attempts,
                })) => {
                    inserted += stored.inserted as u64;
                    duplicates += stored.duplicates as u64;
                    if !refused.is_empty() {
                        tracing::warn!(org, event_type, rows = refused.len(), attempts, first = %refused[0].1, "the store refused rows for good; dead-lettering them, the others are stored");
                        refused_rows += refused.len() as u64;
                        outgoing.extend(refused_dead_letters(
                            batch,
                            org,
                            &event_type,
                            &origins,
                            &refused,
                        ));
                    }
                }
                Ok(Err(e)) => failed = Some(StepError::Store(e)),
                Err(e) => failed = Some(StepError::Worker(e)),
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
        self.produce_all(&outgoing).await?;
        let t3 = Instant::now();

        let st = &self.stats;
        st.records.fetch_add(batch.len() as u64, Ordering::Relaxed);
        st.events.fetch_add(counts.events, Ordering::Relaxed);
        st.inserted.fetch_add(inserted, Ordering::Relaxed);
        st.duplicates.fetch_add(duplicates, Ordering::Relaxed);
        st.rejected_rows
            .fetch_add(counts.rejected_rows, Ordering::Relaxed);
        st.bad_records
            .fetch_add(counts.bad_records, Ordering::Relaxed);
        st.forwarded.fetch_add(counts.forwarded, Ordering::Relaxed);
        st.refused_rows.fetch_add(refused_rows, Ordering::Relaxed);
        // Rows refused by the store are dead-lettered like rejected rows; bad records
        // (unreadable whole) hold no countable events; forwarded events are counted
        // where they land.
        metrics::lead_batch(
            Source::Kafka,
            inserted,
            duplicates,
            counts.rejected_rows + refused_rows,
            Some(t0.elapsed()),
        );
        tracing::debug!(
            records = batch.len(),
            events = counts.events,
            inserted,
            duplicates,
            rejected_rows = counts.rejected_rows,
            bad_records = counts.bad_records,
            forwarded = counts.forwarded,
            refused_rows,
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

/// How [`RawSource::process_until_done`] ended.
enum Done {
    Processed,
    /// Shutdown came while waiting to retry.
    ShutDown,
    /// The writer stopped: nothing more can be stored.
    Fatal(Arc<StoreError>),
}

/// Why a batch attempt failed; the batch is retried (but for a stopped writer).
#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error("storing: {0}")]
    Store(#[source] Arc<StoreError>),
    #[error("{0}")]
    Produce(#[source] KafkaError),
    #[error("worker task failed: {0}")]
    Worker(#[source] tokio::task::JoinError),
}

impl StepError {
    /// Whether a retry can succeed by itself: all but a failing store.
    fn is_transient(&self) -> bool {
        match self {
            Self::Store(e) => e.is_unavailable(),
            Self::Produce(_) | Self::Worker(_) => true,
        }
    }
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

thread_local! {
    /// The parser and the copy of the record it parses in place (the original stays
    /// intact for dead letters).
    static PARSER: RefCell<(Parser, Vec<u8>)> = RefCell::new((Parser::new(), Vec::new()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failpoints_parse() {
        assert_eq!(
            Failpoint::parse("kafka-after-store"),
            Some(Failpoint::AfterStore)
        );
        assert_eq!(Failpoint::parse("nope"), None);
    }

    #[test]
    fn only_a_failing_store_is_not_transient() {
        let store = |e| StepError::Store(Arc::new(e));
        assert!(store(StoreError::unavailable("append", "down")).is_transient());
        assert!(!store(StoreError::failed("append", "no such table")).is_transient());
        let produce = StepError::Produce(KafkaError::Produce {
            topic: "t".into(),
            source: rdkafka::error::KafkaError::Canceled,
        });
        assert!(produce.is_transient());
    }
}
