//! `leadstream bench clickhouse`: the ClickHouse event store's insert rows/s and
//! index warm-up keys/s, with the embedded SQLite store doing the same work in the
//! same run as the peer.
//!
//! Rows are generated up front (not timed): `--rows` distinct keys of one organization
//! over 4 event types and `--rows / 4` leads in 6 countries, instants over 150 days,
//! and a JSON metadata object on 9 rows in 10, like the HTTP bench's. Each store then
//! gets the same `EventStore` calls the writer thread makes:
//! 1. `append` of `--batch-rows` rows at a time (the writer's commit group), each
//!    returning once the store acknowledged it (ClickHouse: the `INSERT`'s 200;
//!    SQLite: the fsynced commit);
//! 2. `scan` of everything into a fresh `DedupIndex`, as the start-up warm-up does
//!    (ClickHouse: `SELECT ... FINAL` in RowBinary), after a `scan` that only decodes.
//!
//! Both are checked: the exact count and the keys warmed must equal `--rows`.

use anyhow::{ensure, Context};
use clap::Args;
use leadstream_connectors::clickhouse::ClickHouseStore;
use leadstream_connectors::config::{ClickHouseConfig, Config};
use leadstream_connectors::store::{EventStore, SqliteStore, StoredEvent, WarmRow};
use leadstream_pipeline::{lead_hash, DedupIndex, EventKey, Phone, Probe};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::time::Instant;

/// The issue's warm-up target.
const TARGET_WARM_KEYS_PER_SEC: f64 = 1_000_000.0;
const EVENT_TYPES: [&str; 4] = [
    "webinar_attended",
    "mastery_purchase",
    "trial_started",
    "call_booked",
];
/// Country calling code and national number length.
const COUNTRIES: [(u64, u32); 6] = [(1, 10), (44, 10), (49, 11), (91, 10), (55, 11), (234, 10)];

#[derive(Args, Debug, Clone)]
pub struct ClickhouseArgs {
    /// ClickHouse HTTP URL.
    #[arg(long, env = "LEADSTREAM_CLICKHOUSE_URL")]
    pub url: String,
    /// ClickHouse user.
    #[arg(long, env = "LEADSTREAM_CLICKHOUSE_USER", default_value = "default")]
    pub user: String,
    /// ClickHouse password.
    #[arg(
        long,
        env = "LEADSTREAM_CLICKHOUSE_PASSWORD",
        default_value = "",
        hide_env_values = true
    )]
    pub password: String,
    /// Distinct rows to insert and warm.
    #[arg(long, default_value_t = 1_000_000)]
    pub rows: usize,
    /// Rows per append (one writer commit group); ClickHouse gets one INSERT each.
    #[arg(long, default_value_t = 100_000)]
    pub batch_rows: usize,
    /// Seed of the synthetic rows.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Database to use; created, and dropped afterwards unless --keep. [default:
    /// leadstream_bench_<pid>]
    #[arg(long)]
    pub database: Option<String>,
    /// Keep the database (and its rows) afterwards.
    #[arg(long)]
    pub keep: bool,
    /// Skip the embedded SQLite peer.
    #[arg(long)]
    pub skip_sqlite: bool,
    /// Print the summary as one JSON object on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// One row, owned, generated before anything is timed.
struct Gen {
    event_type: &'static str,
    phone: Phone,
    occurred_at_ms: i64,
    metadata: Option<String>,
    probe: Probe,
}

#[derive(Serialize)]
struct StoreRun {
    store: String,
    insert_rows_per_sec: f64,
    insert_ms: f64,
    batch_ms: super::Percentiles,
    /// CPU time of this process (all its threads) during the appends: the client's
    /// share of the work, which the machine's load does not inflate.
    insert_client_cpu_ms: Option<f64>,
    scan_only_keys_per_sec: f64,
    warm_keys_per_sec: f64,
    warm_ms: f64,
    /// CPU time of this process during the warm-up scan.
    warm_client_cpu_ms: Option<f64>,
    keys_warmed: u64,
    exact_count: u64,
}

#[derive(Serialize)]
struct Summary {
    url: String,
    database: String,
    server_version: String,
    insert_dedup_tokens: bool,
    rows: usize,
    batch_rows: usize,
    seed: u64,
    nproc: usize,
    load_avg_start: Option<String>,
    load_avg_end: Option<String>,
    clickhouse: StoreRun,
    sqlite: Option<StoreRun>,
    /// ClickHouse over SQLite.
    insert_ratio: Option<f64>,
    warm_ratio: Option<f64>,
    warm_target_keys_per_sec: f64,
    warm_target_met: bool,
}

/// Runs `bench clickhouse`.
///
/// # Errors
/// Bad arguments, ClickHouse unreachable, or counts that disagree with what was written.
pub fn run(args: &ClickhouseArgs) -> anyhow::Result<()> {
    ensure!(args.rows > 0, "--rows must be at least 1");
    ensure!(args.batch_rows > 0, "--batch-rows must be at least 1");
    let load_avg_start = super::load_avg();
    let database = args
        .database
        .clone()
        .unwrap_or_else(|| format!("leadstream_bench_{}", std::process::id()));
    let mut cfg: ClickHouseConfig = Config::load(None, |_| None)
        .context("default config")?
        .clickhouse;
    cfg.url = args.url.clone();
    cfg.user = args.user.clone();
    cfg.password = args.password.clone();
    cfg.database = database.clone();
    cfg.insert_rows = args.batch_rows;

    let rows = generate(args.rows, args.seed);
    let mut ch = ClickHouseStore::connect(&cfg)
        .with_context(|| format!("connecting to ClickHouse at {}", args.url))?;
    ensure!(
        ch.count_exact()? == 0,
        "database {database} already holds lead_events rows; pass another --database"
    );
    let clickhouse = measure(
        "ClickHouse",
        &mut ch,
        &rows,
        args.batch_rows,
        ClickHouseStore::count_exact,
    )
    .context("ClickHouse")?;
    if !args.keep {
        ch.drop_database()
            .with_context(|| format!("dropping database {database}"))?;
    }

    let sqlite = if args.skip_sqlite {
        None
    } else {
        let dir = tempfile_dir()?;
        let mut store = SqliteStore::open(&dir.0).context("opening the SQLite peer")?;
        Some(
            measure(
                "SQLite (embedded, fsync per append)",
                &mut store,
                &rows,
                args.batch_rows,
                |s| s.count(),
            )
            .context("SQLite")?,
        )
    };
    let ratio = |f: fn(&StoreRun) -> f64| sqlite.as_ref().map(|s| f(&clickhouse) / f(s));
    let summary = Summary {
        url: leadstream_connectors::clickhouse::display_url(&args.url),
        database,
        server_version: ch.server_version().to_owned(),
        insert_dedup_tokens: ch.uses_dedup_tokens(),
        rows: args.rows,
        batch_rows: args.batch_rows,
        seed: args.seed,
        nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
        load_avg_start,
        load_avg_end: super::load_avg(),
        insert_ratio: ratio(|r| r.insert_rows_per_sec),
        warm_ratio: ratio(|r| r.warm_keys_per_sec),
        warm_target_keys_per_sec: TARGET_WARM_KEYS_PER_SEC,
        warm_target_met: clickhouse.warm_keys_per_sec >= TARGET_WARM_KEYS_PER_SEC,
        clickhouse,
        sqlite,
    };
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        print_table(&summary);
    }
    Ok(())
}

/// Appends `rows` in batches, then scans twice (decode only, then into a dedup
/// index), checking the counts.
fn measure<S: EventStore>(
    name: &str,
    store: &mut S,
    rows: &[Gen],
    batch_rows: usize,
    count: impl Fn(&mut S) -> Result<u64, leadstream_connectors::store::StoreError>,
) -> anyhow::Result<StoreRun> {
    let mut latencies = Vec::with_capacity(rows.len().div_ceil(batch_rows));
    let mut insert_ms = 0.0;
    let mut insert_cpu = Some(0.0);
    for chunk in rows.chunks(batch_rows) {
        let batch: Vec<StoredEvent<'_>> = chunk
            .iter()
            .map(|r| StoredEvent {
                org: super::synth::ORG,
                event_type: r.event_type,
                phone: r.phone,
                occurred_at_ms: r.occurred_at_ms,
                metadata: r.metadata.as_deref(),
                probe: r.probe,
            })
            .collect();
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let (t, cpu) = (Instant::now(), process_cpu_ms());
        store.append(&batch, now_ms).context("append")?;
        let took = super::ms(t.elapsed());
        insert_cpu = insert_cpu
            .zip(cpu)
            .zip(process_cpu_ms())
            .map(|((sum, a), b)| sum + b - a);
        insert_ms += took;
        latencies.push(took);
    }
    let exact = count(store).context("exact count")?;
    ensure!(
        exact == rows.len() as u64,
        "{name}: {exact} rows stored, {} written",
        rows.len()
    );

    let t = Instant::now();
    let scanned = store.scan(&mut |r| {
        std::hint::black_box(r);
    })?;
    let scan_ms = super::ms(t.elapsed());
    ensure!(
        scanned == rows.len() as u64,
        "{name}: scan read {scanned} keys, {} stored",
        rows.len()
    );

    // As the writer's warm-up does: buffer, then extend the index per 64k rows.
    let index = DedupIndex::new(64);
    let mut buf: Vec<WarmRow> = Vec::with_capacity(65_536);
    let flush = |buf: &mut Vec<WarmRow>| {
        index.extend(buf.drain(..).map(|r| Probe {
            fingerprint: r.fingerprint,
            lead: lead_hash(r.org, r.phone),
        }));
    };
    let (t, cpu) = (Instant::now(), process_cpu_ms());
    let warmed = store.scan(&mut |r| {
        buf.push(r);
        if buf.len() == buf.capacity() {
            flush(&mut buf);
        }
    })?;
    flush(&mut buf);
    let warm_ms = super::ms(t.elapsed());
    let warm_cpu = cpu.zip(process_cpu_ms()).map(|(a, b)| b - a);
    ensure!(
        warmed == rows.len() as u64 && index.len() == rows.len(),
        "{name}: warmed {warmed} keys, index holds {}",
        index.len()
    );

    let per_sec = |n: usize, ms: f64| n as f64 / (ms / 1e3);
    Ok(StoreRun {
        store: name.to_owned(),
        insert_rows_per_sec: per_sec(rows.len(), insert_ms),
        insert_ms,
        batch_ms: super::Percentiles::of(&mut latencies),
        insert_client_cpu_ms: insert_cpu,
        scan_only_keys_per_sec: per_sec(rows.len(), scan_ms),
        warm_keys_per_sec: per_sec(rows.len(), warm_ms),
        warm_ms,
        warm_client_cpu_ms: warm_cpu,
        keys_warmed: warmed,
        exact_count: exact,
    })
}

/// CPU time of every thread of this process so far, in ms (`/proc/self/task/*/schedstat`).
fn process_cpu_ms() -> Option<f64> {
    let mut ns = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        ns += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(ns as f64 / 1e6)
}

/// `n` distinct rows, deterministic from `seed`.
fn generate(n: usize, seed: u64) -> Vec<Gen> {
    let mut rng = StdRng::seed_from_u64(seed);
    let leads: Vec<Phone> = (0..(n / 4).max(16))
        .map(|_| {
            let (cc, len) = COUNTRIES[rng.random_range(0..COUNTRIES.len())];
            Phone(cc * 10u64.pow(len) + rng.random_range(10u64.pow(len - 1)..10u64.pow(len)))
        })
        .collect();
    let start_ms = 1_767_225_600_000; // 2026-01-01T00:00:00Z
    let mut seen = std::collections::HashSet::with_capacity(n);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let event_type = EVENT_TYPES[rng.random_range(0..EVENT_TYPES.len())];
        let phone = leads[rng.random_range(0..leads.len())];
        let occurred_at_ms = start_ms + rng.random_range(0..150 * 86_400_000i64);
        let key = EventKey {
            org: super::synth::ORG,
            phone,
            event_type,
            occurred_at_ms,
        };
        let fingerprint = key.fingerprint();
        if !seen.insert(fingerprint) {
            continue;
        }
        let metadata = (rng.random_range(0..10) > 0).then(|| {
            format!(
                r#"{{"amountUsd":{},"orderId":"ord_{:x}","utm":{{"source":"facebook"}}}}"#,
                rng.random_range(9..2000),
                rng.random::<u32>()
            )
        });
        out.push(Gen {
            event_type,
            phone,
            occurred_at_ms,
            metadata,
            probe: Probe {
                fingerprint,
                lead: key.lead_hash(),
            },
        });
    }
    out
}

/// A temporary directory for the SQLite peer, removed on drop.
struct TempDir(std::path::PathBuf);

fn tempfile_dir() -> anyhow::Result<TempDir> {
    let dir = std::env::temp_dir().join(format!("leadstream-bench-ch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(TempDir(dir))
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn print_table(s: &Summary) {
    println!(
        "ClickHouse {} at {} (database {}; insert dedup tokens: {}), {} rows in appends of {}, seed {}",
        s.server_version,
        s.url,
        s.database,
        if s.insert_dedup_tokens { "yes" } else { "no, server too old" },
        s.rows,
        s.batch_rows,
        s.seed
    );
    println!(
        "{} cores, load average {} at start, {} at end",
        s.nproc,
        s.load_avg_start.as_deref().unwrap_or("?"),
        s.load_avg_end.as_deref().unwrap_or("?")
    );
    println!();
    println!("| store | insert rows/s | append p50 | append p99 | client CPU, insert | scan-only keys/s | warm-up keys/s (scan → DedupIndex) | client CPU, warm-up |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let cpu = |ms: Option<f64>| ms.map_or_else(|| "?".to_owned(), |ms| format!("{ms:.0} ms"));
    for r in std::iter::once(&s.clickhouse).chain(&s.sqlite) {
        println!(
            "| {} | {} | {:.1} ms | {:.1} ms | {} | {} | {} | {} |",
            r.store,
            thousands(r.insert_rows_per_sec),
            r.batch_ms.p50,
            r.batch_ms.p99,
            cpu(r.insert_client_cpu_ms),
            thousands(r.scan_only_keys_per_sec),
            thousands(r.warm_keys_per_sec),
            cpu(r.warm_client_cpu_ms)
        );
    }
    if let (Some(i), Some(w)) = (s.insert_ratio, s.warm_ratio) {
        println!("| ClickHouse / SQLite | {i:.2}× | | | | | {w:.2}× | |");
    }
    println!();
    println!(
        "warm-up target >= {} keys/s: {} ({})",
        thousands(s.warm_target_keys_per_sec),
        if s.warm_target_met { "met" } else { "NOT met" },
        thousands(s.clickhouse.warm_keys_per_sec)
    );
}

/// `1234567.8` → `1,234,568`.
fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
