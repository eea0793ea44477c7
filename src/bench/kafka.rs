//! `leadstream bench kafka`: lead events produced to the raw topic, consumed by the
//! real consumer pipeline into a fresh embedded store; end-to-end events/s and the
//! consumer lag over time.
//!
//! The events are the HTTP bench's ([`synth`](super::synth): 27 countries, 7 phone
//! spellings, ~10% duplicates, ~1% bad rows), generated up front (not timed) and
//! produced either as per-event records keyed by lead to the lead's partition
//! ([`partition_for`], as a well-behaved producer does) or as batch records of
//! `--batch-events` events round-robin over the partitions. The consumer
//! ([`RawSource`], exactly what `serve` runs) joins the group first; then the clock
//! starts with the first record produced and stops when the last record is stored or
//! dead-lettered and committed. A sampler reads the group's lag (end offsets minus
//! committed offsets, summed over partitions) every 100 ms from the brokers.
//!
//! Without `--brokers`, a librdkafka mock cluster runs in this process. It keeps at
//! most ~5 MB (compressed) or 100,000 produce batches per partition and drops older
//! ones, so the partition count is raised to keep each under ~4 MB uncompressed.
//! Checked afterwards: stored rows, inserted, duplicates, rejected rows and dead
//! letters against the generator's plan; a mismatch exits non-zero.

use super::synth;
use anyhow::{bail, ensure, Context};
use clap::{Args, ValueEnum};
use leadstream_connectors::config::Config;
use leadstream_connectors::kafka::{ensure_topics, lead_key, partition_for, RawSource, Topics};
use leadstream_connectors::store::SqliteStore;
use leadstream_connectors::EventWriter;
use leadstream_pipeline::{PhoneNormalizer, Preparer};
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The mock keeps at most this many bytes per partition (rdkafka_mock.c).
const MOCK_PARTITION_BYTES: usize = 5 * 1024 * 1024;
/// The mock keeps at most this many produce batches per partition.
const MOCK_PARTITION_BATCHES: usize = 100_000;
/// Uncompressed bytes per partition the bench aims to stay under on the mock.
const MOCK_TARGET_BYTES: usize = 4 * 1024 * 1024;
/// Largest record the brokers take by default.
const MAX_RECORD_BYTES: usize = 1_000_000;
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// The record shape data teams produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    /// One record per event, `{organizationId, eventType, phoneE164, occurredAt, metadata?}`, keyed by lead.
    Event,
    /// Records shaped like the HTTP body, `--batch-events` events each, unkeyed.
    Batch,
}

#[derive(Args, Debug, Clone)]
pub struct KafkaArgs {
    /// Bootstrap brokers of a real cluster; topics named leadstream-bench-<pid>-* are
    /// created and deleted afterwards. Without it, an in-process librdkafka mock
    /// cluster is used (see the limits above).
    #[arg(long, value_name = "ADDR")]
    pub brokers: Option<String>,
    /// Events to produce.
    #[arg(long, default_value_t = 200_000)]
    pub events: usize,
    /// How the events are produced.
    #[arg(long, value_enum, default_value_t = Shape::Event)]
    pub shape: Shape,
    /// Events per batch record (--shape batch).
    #[arg(long, default_value_t = 1_000)]
    pub batch_events: usize,
    /// Partitions of the raw topic. [default: 12; on the mock, raised so that no
    /// partition gets more than ~4 MB]
    #[arg(long)]
    pub partitions: Option<i32>,
    /// The consumer's kafka.max_batch_records.
    #[arg(long, default_value_t = 5_000)]
    pub max_batch_records: usize,
    /// Seed of the synthetic events.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Share of events that repeat an earlier key (0 to 0.5).
    #[arg(long, default_value_t = 0.10)]
    pub dup_ratio: f64,
    /// Share of events with one row-level defect (0 to 0.5).
    #[arg(long, default_value_t = 0.01)]
    pub bad_ratio: f64,
    /// Where to create the temporary data dir of the embedded store.
    #[arg(long, value_name = "DIR")]
    pub tmp_dir: Option<std::path::PathBuf>,
    /// Print the summary as one JSON object on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// One record to produce.
struct Record {
    partition: i32,
    key: Option<String>,
    payload: Vec<u8>,
}

#[derive(Serialize)]
struct Summary {
    machine: super::Machine,
    cluster: String,
    /// The mock's retention limits, when it is the mock.
    cluster_limits: Option<String>,
    shape: Shape,
    events: usize,
    records: usize,
    partitions: i32,
    bytes: usize,
    max_partition_bytes: usize,
    max_batch_records: usize,
    seed: u64,
    /// Until every record was acknowledged by the brokers (acks=all).
    produce: Rate,
    /// First record produced to last record stored or dead-lettered and committed.
    end_to_end: Rate,
    lag: Lag,
    planned: synth::Counts,
    got: Got,
    peak_rss_bytes: Option<u64>,
    mismatches: Vec<String>,
}

#[derive(Serialize)]
struct Rate {
    elapsed_ms: f64,
    records_per_sec: f64,
    events_per_sec: f64,
}

impl Rate {
    fn of(elapsed: Duration, records: usize, events: usize) -> Self {
        let s = elapsed.as_secs_f64().max(1e-9);
        Self {
            elapsed_ms: super::ms(elapsed),
            records_per_sec: records as f64 / s,
            events_per_sec: events as f64 / s,
        }
    }
}

#[derive(Serialize)]
struct Lag {
    /// Records produced (acknowledged) but not yet committed, summed over partitions.
    max_records: i64,
    final_records: i64,
    /// `[ms since the first record, lag]`, every 100 ms.
    samples: Vec<(u64, i64)>,
}

#[derive(Serialize, Default)]
struct Got {
    stored_rows: u64,
    events: u64,
    inserted: u64,
    duplicates: u64,
    rejected_rows: u64,
    bad_records: u64,
    dead_letters: i64,
    forwarded: u64,
    commits: u64,
    retries: u64,
}

/// Runs `bench kafka`.
///
/// # Errors
/// Bad arguments, a cluster that cannot be reached, a consumer that does not finish,
/// or counts that disagree with the generator's plan.
pub fn run(args: &KafkaArgs) -> anyhow::Result<()> {
    ensure!(args.events > 0, "--events must be at least 1");
    ensure!(
        (1..=50_000).contains(&args.batch_events),
        "--batch-events is {}, expected 1 to 50000",
        args.batch_events
    );
    ensure!(
        args.max_batch_records > 0,
        "--max-batch-records must be at least 1"
    );
    super::check_ratios(args.dup_ratio, args.bad_ratio)?;
    ensure!(
        args.partitions.is_none_or(|p| (1..=1_000).contains(&p)),
        "--partitions must be 1 to 1000"
    );
    let load_start = super::load_avg();
    // Logs only when asked, e.g. LEADSTREAM_LOG=leadstream_connectors::kafka=debug for
    // the consumer's per-batch stage times.
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("LEADSTREAM_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(crate::cli::log_in_color())
            .try_init();
    }

    // Generate (not timed).
    let batch_size = if args.shape == Shape::Batch {
        args.batch_events
    } else {
        10_000
    };
    let cfg = synth::Config {
        events: args.events,
        batch_size,
        seed: args.seed,
        dup_ratio: args.dup_ratio,
        bad_ratio: args.bad_ratio,
    };
    let data = synth::generate(&cfg);
    let normalizer = PhoneNormalizer::new();
    let mut partitions = args.partitions.unwrap_or(12);
    let mut records = build_records(&data, args.shape, partitions, &normalizer)?;
    let bytes: usize = records.iter().map(|r| r.payload.len()).sum();
    if args.brokers.is_none()
        && args.partitions.is_none()
        && bytes / partitions as usize > MOCK_TARGET_BYTES
    {
        partitions = bytes.div_ceil(MOCK_TARGET_BYTES) as i32;
        records = build_records(&data, args.shape, partitions, &normalizer)?;
    }
    let mut per_partition = vec![0usize; partitions as usize];
    for r in &records {
        per_partition[r.partition as usize] += r.payload.len();
    }
    let max_partition_bytes = per_partition.iter().copied().max().unwrap_or(0);
    if args.brokers.is_none() && max_partition_bytes > MOCK_PARTITION_BYTES {
        eprintln!(
            "warning: up to {:.1} MB per partition before compression; the mock keeps ~5 MB per partition and drops older records (counts would then disagree): raise --partitions or lower --events",
            max_partition_bytes as f64 / 1e6
        );
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let dir = super::TempDir::new(args.tmp_dir.as_deref())?;
    let (summary, topics_to_delete) = rt.block_on(async {
        // The cluster: the mock lives as long as this block.
        let mock = if args.brokers.is_none() { Some(MockCluster::new(1).context("starting the mock cluster")?) } else { None };
        let brokers = match (&args.brokers, &mock) {
            (Some(b), _) => b.clone(),
            (None, Some(m)) => m.bootstrap_servers(),
            (None, None) => unreachable!(),
        };
        let mut config = Config::load(None, |_| None).context("default config")?;
        let k = &mut config.kafka;
        k.brokers = brokers.clone();
        k.partitions = partitions;
        k.max_batch_records = args.max_batch_records;
        let tag = format!("leadstream-bench-{}-{}", std::process::id(), std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis()));
        k.group_id = tag.clone();
        if mock.is_none() {
            k.raw_topic = format!("{tag}.raw");
            k.rejects_topic = format!("{tag}.rejects");
            k.deliveries_topic = format!("{tag}.deliveries");
            k.deliveries_retry_topic = format!("{tag}.deliveries-retry");
            k.domain_events_topic = format!("{tag}.domain-events");
        }
        if let Some(m) = &mock {
            // The mock has no CreateTopics API.
            m.create_topic(&k.raw_topic, partitions, 1)?;
            for t in [&k.rejects_topic, &k.deliveries_topic, &k.deliveries_retry_topic, &k.domain_events_topic] {
                m.create_topic(t, 4, 1)?;
            }
        }
        let topics: Topics = ensure_topics(&config.kafka).await.context("creating the topics")?;
        ensure!(topics.raw_partitions() == partitions, "topic {} has {} partitions, expected {partitions}", config.kafka.raw_topic, topics.raw_partitions());
        let created = topics.created.clone();

        let n_records = records.len();
        let m = measure(&config, &topics, &dir, records, data.totals).await?;
        let limits = mock.as_ref().map(|_| {
            format!("librdkafka mock cluster in this process, 1 broker: each partition keeps at most ~{} MB (compressed) or {} produce batches, older records are dropped; a group join takes ~3 s", MOCK_PARTITION_BYTES >> 20, super::thousands(MOCK_PARTITION_BATCHES))
        });
        let summary = Summary {
            machine: super::Machine::detect(args.tmp_dir.as_deref(), load_start),
            cluster: if mock.is_some() { "mock".into() } else { brokers },
            cluster_limits: limits,
            shape: args.shape,
            events: args.events,
            partitions,
            bytes,
            max_partition_bytes,
            max_batch_records: args.max_batch_records,
            seed: args.seed,
            records: n_records,
            produce: m.produce,
            end_to_end: m.end_to_end,
            lag: m.lag,
            planned: data.totals,
            got: m.got,
            peak_rss_bytes: super::rss_bytes("VmHWM"),
            mismatches: m.mismatches,
        };
        anyhow::Ok((summary, (config.kafka.clone(), created)))
    })?;
    let (kcfg, created) = topics_to_delete;
    if !created.is_empty() {
        rt.block_on(async {
            let admin: Result<AdminClient<_>, _> =
                leadstream_connectors::kafka::config::admin(&kcfg).create();
            let deleted = match admin {
                Ok(a) => a
                    .delete_topics(
                        &created.iter().map(String::as_str).collect::<Vec<_>>(),
                        &AdminOptions::new(),
                    )
                    .await
                    .map(|_| ()),
                Err(e) => Err(e),
            };
            if let Err(e) = deleted {
                eprintln!("note: could not delete the bench topics {created:?}: {e}");
            }
        });
    }
    drop(rt);

    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        print_table(&summary);
    }
    if !summary.mismatches.is_empty() {
        bail!(
            "counts disagree with the generator's plan: {}",
            summary.mismatches.join("; ")
        );
    }
    Ok(())
}

/// The records to produce, from the generator's bodies.
fn build_records(
    data: &synth::Synth,
    shape: Shape,
    partitions: i32,
    normalizer: &PhoneNormalizer,
) -> anyhow::Result<Vec<Record>> {
    let mut out = Vec::with_capacity(match shape {
        Shape::Event => data.totals.events,
        Shape::Batch => data.batches.len(),
    });
    let mut unrouted = 0;
    for (i, b) in data.batches.iter().enumerate() {
        match shape {
            Shape::Batch => {
                ensure!(
                    b.body.len() < MAX_RECORD_BYTES,
                    "a batch record of {} bytes is over 1 MB: lower --batch-events",
                    b.body.len()
                );
                out.push(Record {
                    partition: i as i32 % partitions,
                    key: None,
                    payload: b.body.to_vec(),
                });
            }
            Shape::Event => {
                let body: serde_json::Value =
                    serde_json::from_slice(&b.body).context("generated body")?;
                let (org, ty) = (body["organizationId"].clone(), body["eventType"].clone());
                for ev in body["events"].as_array().context("generated events")? {
                    let mut rec = ev.as_object().cloned().unwrap_or_default();
                    rec.insert("organizationId".into(), org.clone());
                    rec.insert("eventType".into(), ty.clone());
                    let lead = ev["phoneE164"]
                        .as_str()
                        .and_then(|p| normalizer.normalize(p));
                    let (partition, key) = match lead {
                        Some(phone) => (
                            partition_for(synth::ORG, phone, partitions),
                            Some(lead_key(synth::ORG, phone)),
                        ),
                        None => {
                            // A bad phone has no lead: spread those round-robin.
                            unrouted += 1;
                            (unrouted % partitions, None)
                        }
                    };
                    out.push(Record {
                        partition,
                        key,
                        payload: serde_json::to_vec(&rec)?,
                    });
                }
            }
        }
    }
    Ok(out)
}

/// What [`measure`] finds.
struct Measured {
    produce: Rate,
    end_to_end: Rate,
    lag: Lag,
    got: Got,
    mismatches: Vec<String>,
}

/// Starts the consumer on a fresh store in `dir`, waits for its assignment, produces
/// `records` and times them until they are all committed.
async fn measure(
    config: &Config,
    topics: &Topics,
    dir: &super::TempDir,
    records: Vec<Record>,
    planned: synth::Counts,
) -> anyhow::Result<Measured> {
    let k = &config.kafka;
    let writer = EventWriter::start(&dir.0, config.store.shards, config.store.retry.backoff())
        .context("opening the event store")?;
    let source = RawSource::new(
        config,
        topics,
        writer.clone(),
        Preparer::new(PhoneNormalizer::new()),
        None,
    )?;
    let (stats, assignment) = (source.stats(), source.assignment());
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let consumer = tokio::spawn(source.run(stopping));

    // The group join is not part of the measurement.
    let deadline = Instant::now() + Duration::from_secs(60);
    while assignment.partitions().len() < k.partitions as usize {
        ensure!(
            Instant::now() < deadline,
            "the consumer was not assigned all {} partitions within 60 s",
            k.partitions
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // The lag sampler: its own clients, on its own thread (metadata calls block).
    let start = Instant::now();
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (k, sampling) = (k.clone(), sampling.clone());
        std::thread::spawn(move || sample_lag(&k, start, &sampling))
    };

    let producer: FutureProducer =
        leadstream_connectors::kafka::config::producer(k, "bench").create()?;
    let n_records = records.len();
    let mut pending = VecDeque::new();
    for r in &records {
        loop {
            let mut rec = FutureRecord::to(&k.raw_topic)
                .partition(r.partition)
                .payload(&r.payload);
            if let Some(key) = &r.key {
                rec = rec.key(key.as_str());
            }
            match producer.send_result(rec) {
                Ok(f) => {
                    pending.push_back(f);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    match pending.pop_front() {
                        Some(f) => ack(f.await)?,
                        None => tokio::time::sleep(Duration::from_millis(1)).await,
                    }
                }
                Err((e, _)) => bail!("producing: {e}"),
            }
        }
    }
    for f in pending {
        ack(f.await)?;
    }
    let produced = start.elapsed();

    let deadline = Instant::now() + Duration::from_secs(600);
    while stats.committed_records.load(Ordering::Relaxed) < n_records as u64 {
        ensure!(
            Instant::now() < deadline,
            "the consumer did not commit every record within 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let done = start.elapsed();
    // Let the sampler see the final lag.
    tokio::time::sleep(SAMPLE_EVERY * 3).await;
    sampling.store(false, Ordering::Relaxed);
    let samples = sampler
        .join()
        .map_err(|_| anyhow::anyhow!("lag sampler panicked"))??;
    let _ = stop.send(true);
    consumer.await.context("consumer task")??;

    let dead_letters = {
        let k = k.clone();
        tokio::task::spawn_blocking(move || topic_size(&k, &k.rejects_topic)).await??
    };
    drop(writer);
    let stored_rows = SqliteStore::open(&dir.0)
        .and_then(|s| s.count())
        .context("counting stored rows")?;
    let l = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let got = Got {
        stored_rows,
        events: l(&stats.events),
        inserted: l(&stats.inserted),
        duplicates: l(&stats.duplicates),
        rejected_rows: l(&stats.rejected_rows),
        bad_records: l(&stats.bad_records),
        dead_letters,
        forwarded: l(&stats.forwarded),
        commits: l(&stats.commits),
        retries: l(&stats.retries),
    };
    let mut mismatches = Vec::new();
    for (what, value, want) in [
        ("events", got.events, planned.events as u64),
        ("stored rows", got.stored_rows, planned.unique as u64),
        ("inserted", got.inserted, planned.unique as u64),
        ("duplicates", got.duplicates, planned.duplicates as u64),
        ("rejected rows", got.rejected_rows, planned.rejected as u64),
        (
            "dead letters",
            got.dead_letters as u64,
            planned.rejected as u64,
        ),
    ] {
        if value != want {
            mismatches.push(format!("{what} {value}, planned {want}"));
        }
    }
    let final_lag = samples.last().map_or(0, |s| s.1);
    if final_lag != 0 {
        mismatches.push(format!("final lag {final_lag}, expected 0"));
    }
    Ok(Measured {
        produce: Rate::of(produced, n_records, planned.events),
        end_to_end: Rate::of(done, n_records, planned.events),
        lag: Lag {
            max_records: samples.iter().map(|s| s.1).max().unwrap_or(0),
            final_records: final_lag,
            samples,
        },
        got,
        mismatches,
    })
}

fn ack<E>(
    r: Result<rdkafka::producer::future_producer::OwnedDeliveryResult, E>,
) -> anyhow::Result<()> {
    match r {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => bail!("a record was not acknowledged: {e}"),
        Err(_) => bail!("the producer went away"),
    }
}

/// Samples the group's lag every [`SAMPLE_EVERY`] until `sampling` turns false.
fn sample_lag(
    k: &leadstream_connectors::config::KafkaConfig,
    start: Instant,
    sampling: &AtomicBool,
) -> anyhow::Result<Vec<(u64, i64)>> {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", &k.brokers)
        .set("group.id", &k.group_id);
    // Reads committed offsets (OffsetFetch) without joining the group.
    let c: BaseConsumer = cfg.create()?;
    let mut samples = Vec::new();
    while sampling.load(Ordering::Relaxed) {
        let t = start.elapsed();
        let mut tpl = TopicPartitionList::new();
        for p in 0..k.partitions {
            tpl.add_partition(&k.raw_topic, p);
        }
        let committed = c.committed_offsets(tpl, Duration::from_secs(5))?;
        let mut lag = 0;
        for p in 0..k.partitions {
            let (_, end) = c.fetch_watermarks(&k.raw_topic, p, Duration::from_secs(5))?;
            let at = match committed
                .find_partition(&k.raw_topic, p)
                .map(|e| e.offset())
            {
                Some(Offset::Offset(o)) => o,
                _ => 0,
            };
            lag += (end - at).max(0);
        }
        samples.push((t.as_millis() as u64, lag));
        std::thread::sleep(SAMPLE_EVERY.saturating_sub(start.elapsed() - t));
    }
    Ok(samples)
}

/// Records on `topic`, counted by reading them all: offsets are not a count on every
/// broker (some Kafka-compatible brokers number batches, not records, and transactional
/// producers leave control records), so the high watermark alone could disagree.
fn topic_size(k: &leadstream_connectors::config::KafkaConfig, topic: &str) -> anyhow::Result<i64> {
    use rdkafka::Message;
    let c: BaseConsumer = leadstream_connectors::kafka::config::common(k, "bench")
        .set("group.id", "leadstream-bench-count")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()?;
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(5))?;
    let parts = md
        .topics()
        .first()
        .map_or(0, |t| t.partitions().len() as i32);
    let mut tpl = TopicPartitionList::new();
    let mut ends = std::collections::HashMap::new();
    for p in 0..parts {
        let (lo, hi) = c.fetch_watermarks(topic, p, Duration::from_secs(5))?;
        if hi > lo {
            tpl.add_partition_offset(topic, p, Offset::Offset(lo))?;
            ends.insert(p, hi);
        }
    }
    if ends.is_empty() {
        return Ok(0);
    }
    c.assign(&tpl)?;
    let mut n = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ends.is_empty() {
        ensure!(
            Instant::now() < deadline,
            "reading {topic} back took over 60 s; {} partitions unfinished",
            ends.len()
        );
        match c.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                n += 1;
                if ends
                    .get(&m.partition())
                    .is_some_and(|&hi| m.offset() + 1 >= hi)
                {
                    ends.remove(&m.partition());
                }
            }
            Some(Err(e)) => return Err(e.into()),
            None => {}
        }
    }
    Ok(n)
}

fn print_table(s: &Summary) {
    let t = super::thousands;
    println!(
        "leadstream bench kafka: {} events as {} {} records, {} partitions, seed {}",
        t(s.events),
        t(s.records),
        match s.shape {
            Shape::Event => "per-event",
            Shape::Batch => "batch",
        },
        s.partitions,
        s.seed
    );
    println!(
        "cluster: {}; {:.1} MB produced, at most {:.2} MB per partition (uncompressed); consumer batches of up to {} records",
        s.cluster,
        s.bytes as f64 / 1e6,
        s.max_partition_bytes as f64 / 1e6,
        t(s.max_batch_records)
    );
    if let Some(l) = &s.cluster_limits {
        println!("  {l}");
    }
    let m = &s.machine;
    println!(
        "machine: {} CPUs, {}; load average {} at the start, {} at the end",
        m.nproc,
        m.cpu.as_deref().unwrap_or("unknown CPU"),
        m.load_avg_start.as_deref().unwrap_or("?"),
        m.load_avg_end.as_deref().unwrap_or("?")
    );
    println!();
    println!(
        "{:<48} {:>10} {:>12} {:>12}",
        "", "elapsed", "records/s", "events/s"
    );
    for (name, r) in [
        ("produce (acks=all, lz4, idempotent)", &s.produce),
        (
            "end to end (stored or dead-lettered, committed)",
            &s.end_to_end,
        ),
    ] {
        println!(
            "{:<48} {:>7.0} ms {:>12} {:>12}",
            name,
            r.elapsed_ms,
            t(r.records_per_sec as usize),
            t(r.events_per_sec as usize)
        );
    }
    println!();
    let curve: Vec<String> = s
        .lag
        .samples
        .iter()
        .step_by((s.lag.samples.len() / 12).max(1))
        .map(|(ms, lag)| format!("{:.1}s:{}", *ms as f64 / 1e3, t(*lag as usize)))
        .collect();
    println!(
        "consumer lag (records): max {}, final {}; over time {}",
        t(s.lag.max_records as usize),
        t(s.lag.final_records as usize),
        curve.join(" ")
    );
    let (g, p) = (&s.got, &s.planned);
    println!(
        "counts: {} events, {} inserted = {} rows stored, {} duplicates, {} rejected rows = {} dead letters, {} bad records, {} re-routed; {} commits, {} retries",
        t(g.events as usize),
        t(g.inserted as usize),
        t(g.stored_rows as usize),
        t(g.duplicates as usize),
        t(g.rejected_rows as usize),
        t(g.dead_letters as usize),
        t(g.bad_records as usize),
        t(g.forwarded as usize),
        t(g.commits as usize),
        t(g.retries as usize)
    );
    let verdict = if s.mismatches.is_empty() {
        "as planned".to_owned()
    } else {
        format!("MISMATCH: {}", s.mismatches.join("; "))
    };
    println!(
        "planned: {} unique, {} duplicates, {} rejected: {verdict}",
        t(p.unique),
        t(p.duplicates),
        t(p.rejected)
    );
    if let Some(b) = s.peak_rss_bytes {
        println!("peak RSS {} MB", b >> 20);
    }
}
