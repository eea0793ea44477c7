//! `leadstream bench`: end-to-end measurements on synthetic lead events.
//!
//! `bench ingest` generates deterministic request bodies up front ([`synth`], not
//! timed), then measures them twice: through the pipeline in-process on one thread
//! (parse, normalize + validate, dedup), and over HTTP against the real server on a
//! loopback port with a fresh embedded store. Both phases check their counts against
//! what the generator planted, so a fast wrong answer fails the run.
//!
//! The generator lives in the library ([`leadstream::synth`]) so the criterion
//! benches (`benches/parse.rs`) measure the same bodies as `leadstream bench ingest`.

use anyhow::{bail, ensure, Context};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use leadstream::cpu_time::thread_sched;
use leadstream::synth;
use leadstream_connectors::api::AppState;
use leadstream_connectors::delivery::DeliveryEngine;
use leadstream_connectors::services::{Role, Services};
use leadstream_connectors::store::SqliteStore;
use leadstream_connectors::{EventWriter, KeyKind, Registry};
use leadstream_pipeline::batch::MAX_EVENTS;
use leadstream_pipeline::{DedupIndex, Parser, PhoneNormalizer, Preparer, Probe};
use serde::Serialize;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Shards of the dedup index, in both phases (the server uses the same number).
const SHARDS: usize = 64;
/// The issue's targets.
const TARGET_PIPELINE_EVENTS_PER_SEC: f64 = 1_000_000.0;
const TARGET_HTTP_P50_MS: f64 = 100.0;
const TARGET_HTTP_BATCH: usize = 50_000;

mod campaigns;
mod clickhouse;
mod deliver;
mod domain;
mod forward;
mod kafka;

#[derive(Subcommand, Debug)]
#[command(after_help = "Run `leadstream bench ingest --help` for what is measured and how.")]
pub enum BenchCmd {
    /// Synthetic lead-event batches through the pipeline in-process and over HTTP.
    ///
    /// Generates --events synthetic lead events (deterministic from --seed; not
    /// timed): phones from 27 countries in 7 spellings (E.164, spaces, dashes,
    /// parentheses, dots, no plus, 00 prefix), RFC 3339 instants in UTC and with
    /// offsets, metadata objects, about 10% duplicates (earlier keys spelled
    /// differently, within a batch and across batches) and about 1% bad rows (bad
    /// phone, bad occurredAt, metadata not an object), as JSON bodies of --batch-size
    /// events.
    ///
    /// Phase 1, in-process: on one thread, for each body: parse (simd-json, in place;
    /// the copy of the body into the reused buffer is not timed), prepare (normalize
    /// phones, parse instants, validate, fingerprint) and insert the rows'
    /// fingerprints into the dedup index. Reports events/s over the timed work,
    /// per-batch latency p50/p99 and the time per stage. Target: >= 1,000,000
    /// events/s.
    ///
    /// Phase 2, HTTP: starts the real server on 127.0.0.1:0 with a fresh data dir
    /// (removed afterwards), creates an organization and API key, and POSTs the
    /// bodies to /api/v1/webhooks/lead-events with --concurrency requests in flight.
    /// A response is durable (fsynced) when it arrives. Reports events/s over the
    /// wall time and per-request latency p50/p99. Target: a 50,000-event batch
    /// answered in <= 100 ms p50.
    ///
    /// With --breakdown, phase 3 times the HTTP path's steps one by one on this thread
    /// against a fresh store (parse + prepare, dedup, store append with commit and
    /// fsync, event-index record), to show where a batch's time goes.
    ///
    /// Both phases check inserted + duplicates + rejected == received and that
    /// inserted equals the unique valid keys planted; the HTTP phase also counts the
    /// rows in the store. A mismatch exits non-zero. Also reported: peak RSS of each
    /// phase (VmHWM) and the machine.
    Ingest(IngestArgs),
    /// ClickHouse event store: insert rows/s and index warm-up keys/s, SQLite as the peer.
    ///
    /// Generates --rows distinct rows (not timed), appends them --batch-rows at a time
    /// as the writer does (each append returns once acknowledged), then scans them
    /// back into a fresh dedup index as the start-up warm-up does (SELECT ... FINAL in
    /// RowBinary). The embedded SQLite store does the same in the same run. Target:
    /// warm-up >= 1,000,000 keys/s. Uses a fresh database, dropped afterwards.
    Clickhouse(clickhouse::ClickhouseArgs),
    /// Kafka raw topic to the store: end-to-end events/s and consumer lag.
    ///
    /// Produces --events synthetic lead events (the `bench ingest` mix) to the raw
    /// topic, as per-event records keyed by lead or as batch records (--shape), while
    /// the real consumer pipeline stores them in a fresh embedded store. Reports the
    /// producer's rate, the end-to-end rate (first record produced to last record
    /// stored or dead-lettered and committed) and the consumer lag sampled every
    /// 100 ms (max, final). Without --brokers, an in-process librdkafka mock cluster
    /// is used: it keeps at most ~5 MB or 100,000 produce batches per partition, so
    /// partitions are raised to keep each under ~4 MB. Counts are checked against
    /// the generator's plan; a mismatch exits non-zero.
    Kafka(kafka::KafkaArgs),
    /// Webhook deliveries end to end: deliveries/s and publish-to-2xx latency, a bare
    /// HTTP client loop as the ceiling.
    ///
    /// Starts --endpoints local receivers on 127.0.0.1:0 and registers them with the
    /// real delivery engine on a fresh embedded store (removed afterwards): one answers
    /// after 20 ms and gets 1% of the deliveries; half of the others answer 500 to the
    /// first attempt of one delivery in ten, so those are retried (schedule 100ms,…).
    /// Publishes --deliveries events (one delivery each, --publish-batch per
    /// transaction) while the engine delivers them, signed, with every outcome written
    /// before the next step. Reports deliveries/s from the first publish to the last
    /// outcome durable, publish-to-2xx latency p50/p99, attempts and peak RSS, and
    /// checks every delivery succeeded with exactly the planned attempts.
    ///
    /// Then, in the same run, the ceiling: the same requests to the same receivers
    /// from a bare reqwest loop with as many in flight as the engine may use, no store
    /// and no signing; the engine is reported as a ratio of it. Target: 20,000
    /// deliveries/s.
    Deliver(deliver::DeliverArgs),
    /// Which leads of a campaign audience are eligible for a send: generates
    /// --events events over twice --audience leads (four event types, 30 days), fills
    /// the in-process event index and asks it for the whole audience with an include
    /// filter over a window (median of 5 runs; target ≤ 250 ms for 1,000,000 leads
    /// over 10,000,000 events). In the same run, the same question as one SQL query
    /// over the same data in SQLite (the embedded store), answers checked equal, and
    /// reported as a ratio.
    Eligibility(campaigns::EligibilityArgs),
    /// Materializes a send of --audience leads (all eligible) into durable pending
    /// deliveries through the real campaign service and delivery engine on a fresh
    /// embedded store (target ≥ 200,000 leads/s), and in the same run writes as many
    /// delivery-sized rows straight to SQLite with the same durability, as the
    /// baseline it is reported against.
    Materialize(campaigns::MaterializeArgs),
    /// WhatsApp webhooks in, seed events out: --events signed webhook bodies (one user
    /// message each, from --contacts contacts) sent over HTTP to the real server on a
    /// fresh embedded store, each causing one incoming_message delivered to a local
    /// receiver subscribed to it. Reports webhooks/s (answered once durable), events
    /// delivered/s and end-to-end latency p50/p99 (webhook sent → delivery received).
    /// In the same run, the ceiling: the same requests to a bare server that checks
    /// the signature and answers 200; the server is reported as a ratio of it. Then
    /// arms --timers conversation_inactive timers and reports their cost on disk and
    /// in memory per timer.
    Domain(domain::DomainArgs),
    /// A 50,000-event batch sent to a process that does not own its leads' raw
    /// partition, against one process: real `leadstream serve` processes on
    /// --clickhouse-url, --database-url and Kafka (--brokers, or a mock cluster in
    /// this process), a raw topic of one partition. Run 1: one process, the batches
    /// sent to it. Run 2: two processes, the batches sent to the one that hands them
    /// to the owner. Reports latency p50/p99 of each, one batch at a time, and the
    /// ratio of the p50s; counts are checked against the generator.
    Forward(forward::ForwardArgs),
}

#[derive(Args, Debug, Clone)]
pub struct IngestArgs {
    /// Total events to generate and send.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: usize,
    /// Events per batch (one HTTP request each), 1 to 50000.
    #[arg(long, default_value_t = 50_000)]
    pub batch_size: usize,
    /// Seed of the synthetic data: one seed, byte-identical bodies.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// HTTP requests in flight at once.
    #[arg(long, default_value_t = 2)]
    pub concurrency: usize,
    /// Share of events that repeat an earlier key (0 to 0.5).
    #[arg(long, default_value_t = 0.10)]
    pub dup_ratio: f64,
    /// Share of events with one row-level defect (0 to 0.5).
    #[arg(long, default_value_t = 0.01)]
    pub bad_ratio: f64,
    /// Where to create the server's temporary data dir; its filesystem decides what an fsync costs.
    #[arg(long, value_name = "DIR")]
    pub tmp_dir: Option<PathBuf>,
    /// Skip phase 1 (in-process pipeline).
    #[arg(long)]
    pub skip_pipeline: bool,
    /// Skip phase 2 (HTTP).
    #[arg(long)]
    pub skip_http: bool,
    /// Also time the store writer's steps one by one, on this thread against a fresh
    /// store: dedup, append (insert, commit, fsync), event-index record. This is where
    /// an HTTP batch's time goes after parsing.
    #[arg(long)]
    pub breakdown: bool,
    /// Print the summary as one JSON object on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also run the HTTP phase with organizations and keys in this Postgres database
    /// (a schema of its own, dropped at the end; the user needs CREATE), beside the
    /// embedded registry's run: what the shared database costs each request's
    /// credential check.
    #[arg(long, value_name = "URL", env = "LEADSTREAM_BENCH_DATABASE_URL")]
    pub database_url: Option<String>,
}

/// Runs a bench command.
///
/// # Errors
/// Bad arguments, a failed phase, or counts that disagree with the generator.
pub fn run(cmd: BenchCmd) -> anyhow::Result<()> {
    match cmd {
        BenchCmd::Ingest(args) => ingest(&args),
        BenchCmd::Clickhouse(args) => clickhouse::run(&args),
        BenchCmd::Kafka(args) => kafka::run(&args),
        BenchCmd::Deliver(args) => deliver::run(&args),
        BenchCmd::Eligibility(args) => campaigns::eligibility(&args),
        BenchCmd::Materialize(args) => campaigns::materialize(&args),
        BenchCmd::Domain(args) => domain::run(&args),
        BenchCmd::Forward(args) => forward::run(&args),
    }
}

fn ingest(args: &IngestArgs) -> anyhow::Result<()> {
    ensure!(args.events > 0, "--events must be at least 1");
    ensure!(
        (1..=MAX_EVENTS).contains(&args.batch_size),
        "--batch-size is {}, expected 1 to {MAX_EVENTS}",
        args.batch_size
    );
    ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    check_ratios(args.dup_ratio, args.bad_ratio)?;
    let show_progress =
        !args.json && std::io::stdout().is_terminal() && std::io::stderr().is_terminal();

    let load_start = load_avg();
    reset_peak_rss();
    let cfg = synth::Config {
        events: args.events,
        batch_size: args.batch_size,
        seed: args.seed,
        dup_ratio: args.dup_ratio,
        bad_ratio: args.bad_ratio,
    };
    let pb = progress(show_progress, args.events, "generate");
    let t = Instant::now();
    let data = synth::generate_with(&cfg, |n| pb.inc(n as u64));
    let generate_ms = ms(t.elapsed());
    pb.finish_and_clear();
    let generated = Generated {
        events: data.totals.events,
        batches: data.batches.len(),
        bytes: data.bytes,
        countries: synth::COUNTRIES.iter().map(|c| c.iso).collect(),
        phone_spellings: synth::PHONE_SPELLINGS,
        expected: data.totals,
        elapsed_ms: generate_ms,
        rss_bytes: rss_bytes("VmRSS"),
    };

    let pipeline = if args.skip_pipeline {
        None
    } else {
        reset_peak_rss();
        let pb = progress(show_progress, args.events, "in-process");
        let r = pipeline_phase(&data, &pb).context("in-process phase")?;
        pb.finish_and_clear();
        Some(r)
    };
    let http = if args.skip_http {
        None
    } else {
        reset_peak_rss();
        let pb = progress(show_progress, args.events, "HTTP");
        let r = http_phase(&data, args, None, &pb).context("HTTP phase")?;
        pb.finish_and_clear();
        Some(r)
    };
    let http_shared = match (&args.database_url, args.skip_http) {
        (Some(url), false) => {
            reset_peak_rss();
            let pb = progress(show_progress, args.events, "HTTP, PG");
            let r = http_phase(&data, args, Some(url), &pb)
                .context("HTTP phase with the registry in Postgres")?;
            pb.finish_and_clear();
            Some(r)
        }
        _ => None,
    };

    let breakdown = if args.breakdown {
        reset_peak_rss();
        let pb = progress(show_progress, args.events, "breakdown");
        let r = writer_breakdown(&data, args, &pb).context("writer breakdown")?;
        pb.finish_and_clear();
        Some(r)
    } else {
        None
    };

    let summary = Summary {
        machine: Machine::detect(args.tmp_dir.as_deref(), load_start),
        config: Cfg {
            events: args.events,
            batch_size: args.batch_size,
            seed: args.seed,
            concurrency: args.concurrency,
            dup_ratio: args.dup_ratio,
            bad_ratio: args.bad_ratio,
        },
        targets: Targets::judge(pipeline.as_ref(), http.as_ref(), args.batch_size),
        generated,
        pipeline,
        http,
        http_shared,
        breakdown,
        peak_rss_bytes: rss_bytes("VmHWM"),
    };
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        print_table(&summary);
    }
    let problems: Vec<&String> = summary
        .pipeline
        .iter()
        .chain(&summary.http)
        .chain(&summary.http_shared)
        .flat_map(|p| &p.mismatches)
        .collect();
    if !problems.is_empty() {
        let list: Vec<&str> = problems.iter().map(|s| s.as_str()).collect();
        bail!(
            "counts disagree with the generator's plan: {}",
            list.join("; ")
        );
    }
    Ok(())
}

fn progress(show: bool, events: usize, prefix: &'static str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template(
        "{prefix:>10} [{bar:30}] {human_pos}/{human_len} events, {per_sec}, eta {eta}",
    )
    .expect("valid template")
    .progress_chars("=> ");
    ProgressBar::new(events as u64)
        .with_style(style)
        .with_prefix(prefix)
}

// ---------------------------------------------------------------------------------
// Phase 1: in-process

fn pipeline_phase(data: &synth::Synth, pb: &ProgressBar) -> anyhow::Result<Phase> {
    let ingest = Preparer::new(PhoneNormalizer::new());
    let mut parser = Parser::new();
    let dedup = DedupIndex::new(SHARDS);
    let (mut probes, mut is_new) = (Vec::<Probe>::new(), Vec::new());
    let mut latencies = Vec::with_capacity(data.batches.len());
    let mut stages = StageMs::default();
    let mut got = Counted::default();
    let mut unplanned = Vec::new();
    let (mut cpu_ms, mut cpu_ok, switches0) = (0.0, true, thread_sched().map(|c| c.1));
    let mut faults = Some(0);
    for (i, batch) in data.batches.iter().enumerate() {
        let (c0, f0) = (thread_sched(), thread_faults());
        let t0 = Instant::now();
        let raw =
            Preparer::parse(&mut parser, &batch.body).with_context(|| format!("batch {i}"))?;
        let t1 = Instant::now();
        let prepared = ingest.prepare(raw).with_context(|| format!("batch {i}"))?;
        let t2 = Instant::now();
        probes.clear();
        probes.extend(prepared.rows.iter().map(|r| r.probe));
        dedup.insert_batch(&probes, &mut is_new);
        let t3 = Instant::now();
        let inserted = is_new.iter().filter(|&&n| n).count();
        got.add(
            prepared.received,
            inserted,
            prepared.rows.len() - inserted,
            prepared.rejected,
        );
        // Rejects of rows the generator planted as valid: the first few, for the error.
        for r in &prepared.rejects {
            if unplanned.len() < 5 && batch.bad.binary_search(&(r.index as u32)).is_err() {
                unplanned.push(format!(
                    "batch {i} row {}: {} ({})",
                    r.index, r.phone, r.reason
                ));
            }
        }
        drop(prepared);
        let t4 = Instant::now();
        match (c0, thread_sched()) {
            (Some(a), Some(b)) => cpu_ms += b.0 - a.0,
            _ => cpu_ok = false,
        }
        faults = faults
            .zip(f0)
            .zip(thread_faults())
            .map(|((n, a), b)| n + b - a);
        stages.parse += ms(t1 - t0);
        stages.prepare += ms(t2 - t1);
        stages.dedup += ms(t3 - t2);
        stages.drop += ms(t4 - t3);
        latencies.push(ms(t4 - t0));
        pb.inc(batch.events as u64);
    }
    let busy_ms: f64 = latencies.iter().sum();
    let mut mismatches = got.mismatches(&data.totals);
    if !unplanned.is_empty() {
        mismatches.push(format!(
            "valid rows rejected, e.g. {}",
            unplanned.join(", ")
        ));
    }
    let cpu = cpu_ok.then_some(cpu_ms);
    Ok(Phase {
        name: "in-process, 1 thread",
        events_per_sec: got.received as f64 / (busy_ms / 1e3),
        elapsed_ms: busy_ms,
        cpu_ms: cpu,
        events_per_cpu_sec: cpu.map(|c| got.received as f64 / (c / 1e3)),
        preemptions: switches0.zip(thread_sched()).map(|(a, b)| b.1 - a),
        page_faults: faults,
        batch_ms: Percentiles::of(&mut latencies),
        stage_ms: Some(stages),
        concurrency: 1,
        counts: got,
        stored_rows: None,
        data_dir_fs: None,
        peak_rss_bytes: rss_bytes("VmHWM"),
        mismatches,
    })
}

// ---------------------------------------------------------------------------------
// Phase 2: HTTP

/// A temporary data dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(parent: Option<&Path>) -> anyhow::Result<Self> {
        let parent = parent.map_or_else(std::env::temp_dir, Path::to_path_buf);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = parent.join(format!(
            "leadstream-bench-{}-{nanos:09}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The server's handler state on `dir`, as `serve` builds it (embedded store), its
/// engine's tasks on `rt`.
pub(crate) fn server_state(
    dir: &Path,
    registry: Arc<Registry>,
    writer: EventWriter,
    config: &leadstream_connectors::config::Config,
    rt: &tokio::runtime::Runtime,
) -> anyhow::Result<AppState> {
    let engine = {
        let _in_runtime = rt.enter();
        DeliveryEngine::start(dir, &config.delivery).context("opening the webhook store")?
    };
    let campaigns = leadstream_connectors::campaigns::Campaigns::open(
        engine.clone(),
        writer.clone(),
        &config.sends,
    )
    .context("opening the campaign store")?;
    let domain = leadstream_connectors::domain::Domain::open(engine.clone(), &config.domain)
        .context("opening the domain store")?;
    Ok(AppState::new(
        registry,
        writer,
        Preparer::new(PhoneNormalizer::new()),
        engine,
        campaigns,
        domain,
        config,
    ))
}

/// A progress bar counting to `n`, or a hidden one when `show` is false.
pub(crate) fn bar(show: bool, n: usize, prefix: &'static str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(n as u64).with_prefix(prefix);
    pb.set_style(
        ProgressStyle::with_template("{prefix:>12} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    pb
}

/// The services of a bench run (as a server opens them) over the data dir `dir`, or
/// over the shared database at `database_url` when given, with organization `org` and
/// an API key of it.
///
/// # Errors
/// When the services cannot be opened or the registry written.
pub(crate) fn bench_services(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    database_url: Option<&str>,
    org: leadstream_pipeline::OrgId,
) -> anyhow::Result<(Services, String)> {
    let mut config = leadstream_connectors::config::Config::load(None, |_| None)
        .context("loading the default configuration")?;
    config.store.data_dir = dir.to_owned();
    if let Some(url) = database_url {
        config.database.url = url.to_owned();
    }
    let services = rt.block_on(Services::open(&config, Role::Server))?;
    rt.block_on(services.registry.create_org(org, "bench"))
        .context("creating the organization")?;
    let key = rt
        .block_on(services.registry.issue(org, KeyKind::ApiKey))
        .context("issuing an API key")?
        .secret;
    Ok((services, key))
}

/// A schema of its own in a Postgres database for one bench run: every table the
/// run makes is in it, and it is dropped at the end.
pub(crate) struct BenchSchema {
    /// The URL of the run: `search_path` set to the schema.
    pub url: String,
    /// A pool on the database's default search path, to drop the schema with.
    admin: leadstream_connectors::db::Pg,
    name: String,
}

impl BenchSchema {
    /// Creates `leadstream_bench_<pid>_<ms>` in `url`'s database and connects to it.
    ///
    /// # Errors
    /// When Postgres cannot be reached or refuses `CREATE SCHEMA`.
    pub async fn create(url: &str) -> anyhow::Result<Self> {
        let name = format!(
            "leadstream_bench_{}_{}",
            std::process::id(),
            leadstream_connectors::writer::now_ms()
        );
        let sep = if url.contains('?') { '&' } else { '?' };
        let mut cfg = leadstream_connectors::config::Config::load(None, |_| None)?.database;
        cfg.url = format!("{url}{sep}options=-c%20search_path%3D{name}");
        let admin = {
            let mut c = cfg.clone();
            c.url = url.to_owned();
            c
        };
        // On the default search path: the schema must exist before the run's pool
        // migrates into it.
        let admin = leadstream_connectors::db::Pg::connect(&admin).await?;
        admin
            .conn()
            .await?
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .await
            .context("creating the bench's schema (the user needs CREATE on the database)")?;
        Ok(Self {
            url: cfg.url,
            admin,
            name,
        })
    }

    /// Drops the schema and everything in it.
    ///
    /// # Errors
    /// When Postgres refuses.
    pub async fn drop_all(self) -> anyhow::Result<()> {
        let conn = self.admin.conn().await?;
        conn.batch_execute(&format!("DROP SCHEMA {} CASCADE", self.name))
            .await
            .context("dropping the bench's schema")?;
        Ok(())
    }
}

/// Whether progress bars are drawn: not with `--json`, and only on a terminal.
pub(crate) fn show_progress(json: bool) -> bool {
    !json && std::io::stdout().is_terminal() && std::io::stderr().is_terminal()
}

#[derive(serde::Deserialize)]
struct Accepted {
    received: usize,
    inserted: usize,
    duplicates: usize,
    rejected: usize,
}

fn http_phase(
    data: &synth::Synth,
    args: &IngestArgs,
    database_url: Option<&str>,
    pb: &ProgressBar,
) -> anyhow::Result<Phase> {
    let dir = TempDir::new(args.tmp_dir.as_deref())?;
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let schema = database_url
        .map(|url| rt.block_on(BenchSchema::create(url)))
        .transpose()?;
    let (services, key) = bench_services(
        &rt,
        &dir.0,
        schema.as_ref().map(|s| s.url.as_str()),
        synth::ORG,
    )?;
    let registry = services.registry.clone();
    let writer = EventWriter::start(&dir.0, SHARDS, Default::default())
        .context("opening the event store")?;
    let config = leadstream_connectors::config::Config::load(None, |_| None)
        .context("loading the default configuration")?;
    let state = server_state(&dir.0, registry, writer.clone(), &config, &rt)?;
    let (results, wall, cpu) = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding 127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(leadstream_connectors::api::run(listener, state, async {
            let _ = stopped.await;
        }));
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(300))
            .build()?;
        wait_ready(&client, addr).await?;

        let url = format!("http://{addr}/api/v1/webhooks/lead-events");
        let next = Arc::new(AtomicUsize::new(0));
        let cpu0 = process_cpu_ms();
        let t = Instant::now();
        let bodies: Arc<[bytes::Bytes]> = data.batches.iter().map(|b| b.body.clone()).collect();
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..args.concurrency.min(data.batches.len()) {
            let (client, url, key, next, pb, bodies) = (
                client.clone(),
                url.clone(),
                key.clone(),
                next.clone(),
                pb.clone(),
                bodies.clone(),
            );
            workers.spawn(async move {
                let mut out = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = bodies.get(i) else { break };
                    let t = Instant::now();
                    let resp = client
                        .post(&url)
                        .bearer_auth(&key)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await
                        .with_context(|| format!("POST batch {i}"))?;
                    let status = resp.status();
                    let bytes = resp
                        .bytes()
                        .await
                        .with_context(|| format!("reading the response to batch {i}"))?;
                    let latency = ms(t.elapsed());
                    if !status.is_success() {
                        bail!(
                            "batch {i}: HTTP {status}: {}",
                            String::from_utf8_lossy(&bytes)
                        );
                    }
                    let a: Accepted = serde_json::from_slice(&bytes)
                        .with_context(|| format!("batch {i}: unexpected response body"))?;
                    pb.inc(a.received as u64);
                    out.push((i, latency, a));
                }
                anyhow::Ok(out)
            });
        }
        let mut results = Vec::with_capacity(data.batches.len());
        while let Some(r) = workers.join_next().await {
            results.extend(r.context("HTTP client task")??);
        }
        let wall = t.elapsed();
        let cpu = cpu0.zip(process_cpu_ms()).map(|(a, b)| b - a);
        let _ = stop.send(());
        server
            .await
            .context("server task")?
            .context("HTTP server")?;
        anyhow::Ok((results, wall, cpu))
    })?;
    if let Some(schema) = schema {
        rt.block_on(schema.drop_all())?;
    }
    drop(rt);

    let mut got = Counted::default();
    let mut mismatches = Vec::new();
    let mut latencies = Vec::with_capacity(results.len());
    for (i, latency, a) in &results {
        let planned = &data.batches[*i].counts;
        got.add(a.received, a.inserted, a.duplicates, a.rejected);
        latencies.push(*latency);
        if a.received != planned.events || a.rejected != planned.rejected {
            mismatches.push(format!(
                "batch {i}: received {} rejected {}, planned {} and {}",
                a.received, a.rejected, planned.events, planned.rejected
            ));
        }
    }
    mismatches.extend(got.mismatches(&data.totals));
    let stored = SqliteStore::open(&dir.0)
        .and_then(|s| s.count())
        .context("counting stored rows")?;
    if stored != got.inserted as u64 {
        mismatches.push(format!(
            "the store holds {stored} rows, the responses said {} inserted",
            got.inserted
        ));
    }
    let fs = fs_type(&dir.0);
    Ok(Phase {
        name: if database_url.is_some() {
            "HTTP, keys in Postgres"
        } else {
            "HTTP, embedded store"
        },
        events_per_sec: got.received as f64 / wall.as_secs_f64(),
        elapsed_ms: ms(wall),
        cpu_ms: cpu,
        events_per_cpu_sec: cpu.map(|c| got.received as f64 / (c / 1e3)),
        preemptions: None,
        page_faults: None,
        batch_ms: Percentiles::of(&mut latencies),
        stage_ms: None,
        concurrency: args.concurrency,
        counts: got,
        stored_rows: Some(stored),
        data_dir_fs: fs,
        peak_rss_bytes: rss_bytes("VmHWM"),
        mismatches,
    })
}

// ---------------------------------------------------------------------------------
// Writer breakdown

/// Per-batch milliseconds of each step the HTTP path takes, one batch at a time.
#[derive(Serialize)]
struct Breakdown {
    /// Parse + prepare (what a request's blocking task does).
    prepare_ms: Percentiles,
    /// The writer's steps (`EventWriter::commit_group`): dedup, append + commit, record.
    dedup_ms: Percentiles,
    append_ms: Percentiles,
    record_ms: Percentiles,
    /// The sum of the four, per batch.
    total_ms: Percentiles,
    data_dir_fs: Option<String>,
    peak_rss_bytes: Option<u64>,
}

fn writer_breakdown(
    data: &synth::Synth,
    args: &IngestArgs,
    pb: &ProgressBar,
) -> anyhow::Result<Breakdown> {
    use leadstream_connectors::store::{EventStore, StoredEvent};
    use leadstream_connectors::writer;
    use leadstream_pipeline::EventIndex;
    let dir = TempDir::new(args.tmp_dir.as_deref())?;
    let mut store = SqliteStore::open(&dir.0).context("opening the event store")?;
    let (dedup, events) = (DedupIndex::new(SHARDS), EventIndex::new(SHARDS));
    let ingest = Preparer::new(PhoneNormalizer::new());
    let mut parser = Parser::new();
    let (mut probes, mut is_new) = (Vec::<Probe>::new(), Vec::new());
    let mut steps: [Vec<f64>; 5] = Default::default();
    for (i, batch) in data.batches.iter().enumerate() {
        let t0 = Instant::now();
        let raw =
            Preparer::parse(&mut parser, &batch.body).with_context(|| format!("batch {i}"))?;
        let b = ingest.prepare(raw).with_context(|| format!("batch {i}"))?;
        let t1 = Instant::now();
        writer::dedup_batch(&dedup, &b, &mut probes, &mut is_new);
        let t2 = Instant::now();
        let rows: Vec<StoredEvent<'_>> = writer::new_rows(&b, &is_new).collect();
        store
            .append(&rows, writer::now_ms())
            .with_context(|| format!("storing batch {i}"))?;
        let t3 = Instant::now();
        writer::record_new(&events, &b, &is_new);
        let t4 = Instant::now();
        for (v, d) in steps
            .iter_mut()
            .zip([t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0])
        {
            v.push(ms(d));
        }
        pb.inc(batch.events as u64);
    }
    let [mut prepare, mut dedup_ms, mut append, mut record, mut total] = steps;
    Ok(Breakdown {
        prepare_ms: Percentiles::of(&mut prepare),
        dedup_ms: Percentiles::of(&mut dedup_ms),
        append_ms: Percentiles::of(&mut append),
        record_ms: Percentiles::of(&mut record),
        total_ms: Percentiles::of(&mut total),
        data_dir_fs: fs_type(&dir.0),
        peak_rss_bytes: rss_bytes("VmHWM"),
    })
}

async fn wait_ready(client: &reqwest::Client, addr: std::net::SocketAddr) -> anyhow::Result<()> {
    let url = format!("http://{addr}/readyz");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(&url).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("server on {addr} not ready after 30 s");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------------------------
// Summary

#[derive(Serialize)]
struct Summary {
    machine: Machine,
    config: Cfg,
    generated: Generated,
    pipeline: Option<Phase>,
    http: Option<Phase>,
    /// The HTTP phase again with the registry in Postgres (`--database-url`).
    http_shared: Option<Phase>,
    breakdown: Option<Breakdown>,
    targets: Targets,
    /// Peak RSS over the whole run.
    peak_rss_bytes: Option<u64>,
}

#[derive(Serialize)]
struct Cfg {
    events: usize,
    batch_size: usize,
    seed: u64,
    concurrency: usize,
    dup_ratio: f64,
    bad_ratio: f64,
}

#[derive(Serialize)]
pub(crate) struct Machine {
    nproc: usize,
    cpu: Option<String>,
    kernel: Option<String>,
    /// 1, 5 and 15 minute load averages when the run started and ended: this machine is shared.
    load_avg_start: Option<String>,
    load_avg_end: Option<String>,
    tmp_dir_fs: Option<String>,
}

impl Machine {
    fn detect(tmp: Option<&Path>, load_avg_start: Option<String>) -> Self {
        let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        });
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .ok()
            .map(|s| s.trim().to_owned());
        let tmp = tmp.map_or_else(std::env::temp_dir, Path::to_path_buf);
        Self {
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu,
            kernel,
            load_avg_start,
            load_avg_end: load_avg(),
            tmp_dir_fs: fs_type(&tmp),
        }
    }
}

#[derive(Serialize)]
struct Generated {
    events: usize,
    batches: usize,
    bytes: usize,
    countries: Vec<&'static str>,
    phone_spellings: usize,
    expected: synth::Counts,
    elapsed_ms: f64,
    rss_bytes: Option<u64>,
}

#[derive(Serialize, Default, Clone, Copy)]
struct StageMs {
    parse: f64,
    prepare: f64,
    dedup: f64,
    drop: f64,
}

#[derive(Serialize, Default, Clone, Copy)]
struct Counted {
    received: usize,
    inserted: usize,
    duplicates: usize,
    rejected: usize,
}

impl Counted {
    fn add(&mut self, received: usize, inserted: usize, duplicates: usize, rejected: usize) {
        self.received += received;
        self.inserted += inserted;
        self.duplicates += duplicates;
        self.rejected += rejected;
    }

    fn mismatches(&self, want: &synth::Counts) -> Vec<String> {
        let mut m = Vec::new();
        if self.inserted + self.duplicates + self.rejected != self.received {
            m.push(format!(
                "inserted {} + duplicates {} + rejected {} != received {}",
                self.inserted, self.duplicates, self.rejected, self.received
            ));
        }
        for (what, got, planned) in [
            ("received", self.received, want.events),
            ("inserted", self.inserted, want.unique),
            ("duplicates", self.duplicates, want.duplicates),
            ("rejected", self.rejected, want.rejected),
        ] {
            if got != planned {
                m.push(format!("{what} {got}, planned {planned}"));
            }
        }
        m
    }
}

#[derive(Serialize, Clone, Copy)]
pub(crate) struct Percentiles {
    p50: f64,
    p99: f64,
    max: f64,
    mean: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles.
    pub(crate) fn of(v: &mut [f64]) -> Self {
        v.sort_by(f64::total_cmp);
        let at = |q: f64| {
            v.get(((q * v.len() as f64).ceil() as usize).saturating_sub(1))
                .copied()
                .unwrap_or(0.0)
        };
        let mean = if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        };
        Self {
            p50: at(0.50),
            p99: at(0.99),
            max: at(1.0),
            mean,
        }
    }
}

#[derive(Serialize)]
struct Phase {
    name: &'static str,
    events_per_sec: f64,
    /// In-process: the sum of the timed per-batch work. HTTP: wall time.
    elapsed_ms: f64,
    /// In-process: this thread's CPU time over the same work, below `elapsed_ms` when
    /// other processes took the CPU away. HTTP: the whole process's (server and client,
    /// all threads), 10 ms resolution.
    cpu_ms: Option<f64>,
    /// Events per second of that CPU time: per core.
    events_per_cpu_sec: Option<f64>,
    /// In-process only: involuntary context switches of the thread during the phase.
    preemptions: Option<u64>,
    /// In-process only: minor page faults of the thread during the timed work (memory
    /// the allocator took from the kernel, or got back after returning it).
    page_faults: Option<u64>,
    batch_ms: Percentiles,
    /// In-process only: time per stage, summed over batches.
    stage_ms: Option<StageMs>,
    concurrency: usize,
    counts: Counted,
    stored_rows: Option<u64>,
    data_dir_fs: Option<String>,
    peak_rss_bytes: Option<u64>,
    mismatches: Vec<String>,
}

#[derive(Serialize)]
struct Target {
    target: f64,
    measured: f64,
    /// What `measured` is over: "thread CPU time" or "wall time".
    basis: &'static str,
    met: bool,
}

#[derive(Serialize)]
struct Targets {
    /// At least 1,000,000 events/s on one core, in-process; judged on the thread's CPU time
    /// when the kernel reports it (a shared machine steals wall time), else wall time.
    pipeline_events_per_sec: Option<Target>,
    /// At most 100 ms p50 for a 50,000-event HTTP batch (only judged at --batch-size 50000).
    http_batch_p50_ms: Option<Target>,
}

impl Targets {
    fn judge(pipeline: Option<&Phase>, http: Option<&Phase>, batch_size: usize) -> Self {
        Self {
            pipeline_events_per_sec: pipeline.map(|p| {
                let (measured, basis) = match p.events_per_cpu_sec {
                    Some(v) => (v, "thread CPU time"),
                    None => (p.events_per_sec, "wall time"),
                };
                Target {
                    target: TARGET_PIPELINE_EVENTS_PER_SEC,
                    measured,
                    basis,
                    met: measured >= TARGET_PIPELINE_EVENTS_PER_SEC,
                }
            }),
            http_batch_p50_ms: http
                .filter(|_| batch_size == TARGET_HTTP_BATCH)
                .map(|h| Target {
                    target: TARGET_HTTP_P50_MS,
                    measured: h.batch_ms.p50,
                    basis: "wall time",
                    met: h.batch_ms.p50 <= TARGET_HTTP_P50_MS,
                }),
        }
    }
}

fn print_table(s: &Summary) {
    let (g, e, m) = (&s.generated, &s.generated.expected, &s.machine);
    println!(
        "leadstream bench ingest: {} events in {} batches of {}, seed {}",
        thousands(g.events),
        g.batches,
        thousands(s.config.batch_size),
        s.config.seed
    );
    println!(
        "machine: {} CPUs, {}, Linux {}; load average {} at the start, {} at the end",
        m.nproc,
        m.cpu.as_deref().unwrap_or("unknown CPU"),
        m.kernel.as_deref().unwrap_or("?"),
        m.load_avg_start.as_deref().unwrap_or("?"),
        m.load_avg_end.as_deref().unwrap_or("?"),
    );
    println!(
        "generated in {:.0} ms (not timed): {:.1} MB of JSON, {} countries, {} phone spellings; {} unique keys, {} duplicates ({} within a batch, {} across), {} bad rows ({} phone, {} occurredAt, {} metadata)",
        g.elapsed_ms,
        g.bytes as f64 / 1e6,
        g.countries.len(),
        g.phone_spellings,
        thousands(e.unique),
        thousands(e.duplicates),
        thousands(e.dup_within_batch),
        thousands(e.dup_across_batches),
        thousands(e.rejected),
        thousands(e.bad_phone),
        thousands(e.bad_occurred_at),
        thousands(e.bad_metadata),
    );
    println!();
    if s.pipeline.is_some() || s.http.is_some() {
        println!(
            "{:<22} {:>9} {:>11} {:>11} {:>10} {:>10} {:>10} {:>9} {:>9}",
            "phase",
            "in flight",
            "events/s",
            "per CPU-s",
            "batch p50",
            "batch p99",
            "batch max",
            "total",
            "peak RSS"
        );
    }
    for p in [&s.pipeline, &s.http, &s.http_shared].into_iter().flatten() {
        println!(
            "{:<22} {:>9} {:>11} {:>11} {:>7.1} ms {:>7.1} ms {:>7.1} ms {:>6.0} ms {:>6} MB",
            p.name,
            p.concurrency,
            thousands(p.events_per_sec as usize),
            p.events_per_cpu_sec
                .map_or("-".into(), |v| thousands(v as usize)),
            p.batch_ms.p50,
            p.batch_ms.p99,
            p.batch_ms.max,
            p.elapsed_ms,
            p.peak_rss_bytes
                .map_or("?".into(), |b| (b >> 20).to_string()),
        );
    }
    if let Some(p) = &s.pipeline {
        if let Some(st) = p.stage_ms {
            let per = |x: f64| x * 1e6 / p.counts.received.max(1) as f64;
            println!(
                "  in-process, per event: parse {:.0} ns, prepare (normalize, validate, fingerprint) {:.0} ns, dedup {:.0} ns, drop {:.0} ns",
                per(st.parse),
                per(st.prepare),
                per(st.dedup),
                per(st.drop)
            );
        }
        if let (Some(cpu), Some(n)) = (p.cpu_ms, p.preemptions) {
            println!(
                "  in-process: {cpu:.0} ms on the CPU of {:.0} ms timed, preempted {n} times, {} page faults",
                p.elapsed_ms,
                p.page_faults.map_or("?".into(), |n| thousands(n as usize))
            );
        }
    }
    if let Some(h) = &s.http {
        println!(
            "  HTTP: data dir on {}, {} rows in the store afterwards; {} ms of CPU (server and client, all threads) in {:.0} ms, {} ms per batch",
            h.data_dir_fs.as_deref().unwrap_or("?"),
            h.stored_rows.map_or("?".into(), |n| thousands(n as usize)),
            h.cpu_ms.map_or("?".into(), |c| format!("{c:.0}")),
            h.elapsed_ms,
            h.cpu_ms.map_or("?".into(), |c| format!("{:.0}", c / s.generated.batches as f64)),
        );
    }
    if let Some(b) = &s.breakdown {
        println!(
            "  HTTP path step by step, one batch at a time, p50 (p99) per batch: parse + prepare {:.1} ({:.1}) ms, dedup {:.1} ({:.1}) ms, store append + commit {:.1} ({:.1}) ms, event-index record {:.1} ({:.1}) ms; sum {:.1} ({:.1}) ms",
            b.prepare_ms.p50,
            b.prepare_ms.p99,
            b.dedup_ms.p50,
            b.dedup_ms.p99,
            b.append_ms.p50,
            b.append_ms.p99,
            b.record_ms.p50,
            b.record_ms.p99,
            b.total_ms.p50,
            b.total_ms.p99,
        );
    }
    println!();
    for p in [&s.pipeline, &s.http, &s.http_shared].into_iter().flatten() {
        let c = p.counts;
        let verdict = if p.mismatches.is_empty() {
            "as planned".to_owned()
        } else {
            format!("MISMATCH: {}", p.mismatches.join("; "))
        };
        println!(
            "counts, {}: received {} = inserted {} + duplicates {} + rejected {}: {verdict}",
            p.name,
            thousands(c.received),
            thousands(c.inserted),
            thousands(c.duplicates),
            thousands(c.rejected)
        );
    }
    if let Some(t) = &s.targets.pipeline_events_per_sec {
        println!(
            "target >= {} events/s in-process on one core: {} ({} per second of {}, {:.2}x the target)",
            thousands(t.target as usize),
            if t.met { "met" } else { "MISSED" },
            thousands(t.measured as usize),
            t.basis,
            t.measured / t.target
        );
    }
    match &s.targets.http_batch_p50_ms {
        Some(t) => println!(
            "target <= {:.0} ms p50 per 50,000-event HTTP batch: {} ({:.1} ms at {} in flight, {:.2}x the target)",
            t.target,
            if t.met { "met" } else { "MISSED" },
            t.measured,
            s.config.concurrency,
            t.measured / t.target
        ),
        None if s.http.is_some() => println!("target <= 100 ms p50 per 50,000-event HTTP batch: not judged (--batch-size is not 50000)"),
        None => {}
    }
}

fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The load averages, "1m 5m 15m".
fn load_avg() -> Option<String> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

/// A `/proc/self/status` field (`VmRSS`, `VmHWM`) in bytes.
fn rss_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| {
        let kb = l
            .strip_prefix(field)?
            .strip_prefix(':')?
            .trim()
            .strip_suffix("kB")?
            .trim();
        kb.parse::<u64>().ok().map(|k| k * 1024)
    })
}

/// CPU time (user + system) of the whole process so far, in ms (`/proc/self/stat`,
/// fields 14 and 15, in USER_HZ = 100 ticks a second).
fn process_cpu_ms() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let mut f = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let (utime, stime): (u64, u64) = (f.next()?.parse().ok()?, f.next()?.parse().ok()?);
    Some((utime + stime) as f64 * 10.0)
}

/// This thread's minor page faults so far (`/proc/thread-self/stat`, field 10).
fn thread_faults() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // The command name (field 2) may hold spaces; count from the `)` that ends it.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(7)?
        .parse()
        .ok()
}

/// Resets VmHWM to the current RSS (Linux `clear_refs` 5), so each phase reports its own peak.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The filesystem type `path` lives on, from `/proc/self/mounts` (longest mount point that is a prefix).
fn fs_type(path: &Path) -> Option<String> {
    let path = std::fs::canonicalize(path).ok()?;
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split(' ');
            let (_, at, kind) = (f.next()?, f.next()?, f.next()?);
            path.starts_with(at).then(|| (at.len(), kind.to_owned()))
        })
        .max_by_key(|(n, _)| *n)
        .map(|(_, k)| k)
}

// ---------------------------------------------------------------------------------

/// `--dup-ratio` and `--bad-ratio`, shared by the benches that generate data.
pub(crate) fn check_ratios(dup_ratio: f64, bad_ratio: f64) -> anyhow::Result<()> {
    ensure!(
        (0.0..=0.5).contains(&dup_ratio),
        "--dup-ratio is {dup_ratio}, expected 0 to 0.5"
    );
    ensure!(
        (0.0..=0.5).contains(&bad_ratio),
        "--bad-ratio is {bad_ratio}, expected 0 to 0.5"
    );
    Ok(())
}
