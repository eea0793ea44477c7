//! `leadstream bench eligibility` and `leadstream bench materialize`: the campaign
//! side, each with its peer in the same run.
//!
//! - eligibility: one send's question (an event filter over the whole audience) asked
//!   of the in-process event index, and the same question as SQL over the same data
//!   on the embedded store (SQLite), with the answers checked equal.
//! - materialize: a send of a large audience materialized into durable pending
//!   deliveries through the real engine, against the bare cost of writing as many
//!   delivery-sized rows to SQLite with the same durability.

use super::{
    bar, load_avg, ms, reset_peak_rss, rss_bytes, show_progress, thousands, Machine, TempDir,
};
use anyhow::{ensure, Context};
use clap::Args;
use leadstream_connectors::campaigns::model::{Send, SendTime};
use leadstream_connectors::campaigns::{store, Campaigns};
use leadstream_connectors::config::Config;
use leadstream_connectors::delivery::endpoints::EndpointPatch;
use leadstream_connectors::delivery::model::EndpointKind;
use leadstream_connectors::delivery::DeliveryEngine;
use leadstream_connectors::writer::now_ms;
use leadstream_connectors::EventWriter;
use leadstream_pipeline::eligibility::{self, EventFilter, Lead, Mode, Question};
use leadstream_pipeline::{EventIndex, Phone};
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Instant;

const ORG: i64 = 1;
const MINUTE_US: i64 = 60_000_000;
/// The eligibility target: a 1,000,000-lead audience over 10,000,000 events.
const TARGET_ELIGIBILITY_MS: f64 = 250.0;
/// The materialization target on the embedded store.
const TARGET_MATERIALIZE_PER_SEC: f64 = 200_000.0;
/// Event types the generated events spread over; the filter asks for the first.
const EVENT_TYPES: [&str; 4] = ["purchase", "webinar_attended", "trial_started", "refund"];

#[derive(Args, Debug, Clone)]
pub struct EligibilityArgs {
    /// Leads in the campaign's audience.
    #[arg(long, default_value_t = 1_000_000)]
    pub audience: usize,
    /// Stored events, over twice as many leads as the audience (half of them are in
    /// it), four event types, 30 days.
    #[arg(long, default_value_t = 10_000_000)]
    pub events: usize,
    /// Event filter window in minutes (include leads with a purchase this recent).
    #[arg(long, default_value_t = 7 * 24 * 60)]
    pub within_minutes: u64,
    /// Skip the SQL peer (it loads every event into SQLite, which takes minutes).
    #[arg(long)]
    pub no_sql: bool,
    /// Also ask ClickHouse at this HTTP URL (e.g. http://127.0.0.1:8123): the events
    /// are inserted into a scratch database (dropped afterwards) and the event filter
    /// is the query the server's ClickHouse path runs, answers checked equal.
    #[arg(long, value_name = "URL")]
    pub clickhouse: Option<String>,
    /// Seed of the generator.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Where to create the temporary data dir of the SQL peer.
    #[arg(long, value_name = "DIR")]
    pub tmp_dir: Option<PathBuf>,
    /// Print the summary as one JSON object on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Clone)]
pub struct MaterializeArgs {
    /// Leads in the audience, all eligible.
    #[arg(long, default_value_t = 1_000_000)]
    pub audience: usize,
    /// Also materialize on this Postgres database (in a schema of its own, dropped
    /// after), beside the embedded store: `postgres://user:pass@host:5432/db`.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// Where to create the temporary data dir; its filesystem decides what an fsync costs.
    #[arg(long, value_name = "DIR")]
    pub tmp_dir: Option<PathBuf>,
    /// Print the summary as one JSON object on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// The `i`-th generated lead's phone (distinct, valid US numbers).
fn lead_phone(i: usize) -> Phone {
    Phone(12_122_000_000 + i as u64)
}

#[derive(Serialize)]
struct EligibilitySummary {
    machine: Machine,
    audience: usize,
    events: usize,
    within_minutes: u64,
    eligible: u64,
    index_build_ms: f64,
    /// Median of the runs.
    in_process_ms: f64,
    in_process_leads_per_sec: f64,
    target_ms: f64,
    index_rss_bytes: Option<u64>,
    sql_load_ms: Option<f64>,
    sql_ms: Option<f64>,
    /// `sql_ms / in_process_ms`: how many times faster the index answers.
    sql_over_in_process: Option<f64>,
    clickhouse_load_ms: Option<f64>,
    /// Median of 3: the ClickHouse query plus the rest of the evaluation in process.
    clickhouse_ms: Option<f64>,
    clickhouse_over_in_process: Option<f64>,
    peak_rss_bytes: Option<u64>,
}

/// Runs `leadstream bench eligibility`.
///
/// # Errors
/// Bad arguments, or the two answers disagree.
pub fn eligibility(args: &EligibilityArgs) -> anyhow::Result<()> {
    ensure!(args.audience > 0, "--audience must be at least 1");
    let show = show_progress(args.json);
    let load_start = load_avg();
    reset_peak_rss();
    let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed);
    let t_us: i64 = 1_780_000_000 * 1_000_000;
    let span_us = 30 * 24 * 60 * MINUTE_US;
    // (phone, type, at): leads 0..2×audience, so half the events are the audience's.
    let pool = args.audience * 2;
    let pb = bar(show, args.events, "generate");
    let events: Vec<(Phone, u8, i64)> = (0..args.events)
        .map(|i| {
            if i % 65_536 == 0 {
                pb.set_position(i as u64);
            }
            (
                lead_phone(rng.random_range(0..pool)),
                rng.random_range(0..EVENT_TYPES.len() as u8),
                t_us - rng.random_range(0..span_us) + span_us / 30,
            )
        })
        .collect();
    pb.finish_and_clear();

    let rss_before = rss_bytes("VmRSS");
    let t = Instant::now();
    let index = EventIndex::new(64);
    for (ty, name) in EVENT_TYPES.iter().enumerate() {
        index.record(
            ORG,
            name,
            events
                .iter()
                .filter(|e| e.1 as usize == ty)
                .map(|e| (e.0, e.2)),
        );
    }
    let index_build_ms = ms(t.elapsed());
    let index_rss = rss_bytes("VmRSS")
        .zip(rss_before)
        .map(|(a, b)| a.saturating_sub(b));

    let leads: Vec<Lead> = (0..args.audience)
        .map(|i| Lead {
            phone: lead_phone(i),
            external_id: None,
        })
        .collect();
    let filter = EventFilter {
        mode: Mode::Include,
        event_type: EVENT_TYPES[0].to_owned(),
        within_minutes: Some(args.within_minutes),
    };
    let opted_out = HashSet::new();
    let q = Question {
        org: ORG,
        at_us: t_us,
        opted_out: &opted_out,
        audience_filter: None,
        event_filter: Some(&filter),
    };
    let mut runs = Vec::new();
    let mut eligible = 0;
    for _ in 0..5 {
        let t = Instant::now();
        let (kept, summary) = eligibility::evaluate(&q, &leads, eligibility::Events::Index(&index));
        runs.push(ms(t.elapsed()));
        eligible = summary.eligible;
        ensure!(kept.len() as u64 == eligible, "summary and list disagree");
    }
    runs.sort_by(f64::total_cmp);
    let in_process_ms = runs[runs.len() / 2];

    let (sql_load_ms, sql_ms) = if args.no_sql {
        (None, None)
    } else {
        let dir = TempDir::new(args.tmp_dir.as_deref())?;
        let (load, query, count) = sql_peer(&dir.0, &events, args, t_us, show)?;
        ensure!(
            count == eligible,
            "SQL found {count} eligible leads, the index {eligible}"
        );
        (Some(load), Some(query))
    };
    let (clickhouse_load_ms, clickhouse_ms) = match &args.clickhouse {
        None => (None, None),
        Some(url) => {
            let (load, query, count) = clickhouse_peer(url, &events, &q, &leads, &filter, show)?;
            ensure!(
                count == eligible,
                "ClickHouse found {count} eligible leads, the index {eligible}"
            );
            (Some(load), Some(query))
        }
    };
    let out = EligibilitySummary {
        machine: Machine::detect(args.tmp_dir.as_deref(), load_start),
        audience: args.audience,
        events: args.events,
        within_minutes: args.within_minutes,
        eligible,
        index_build_ms,
        in_process_ms,
        in_process_leads_per_sec: args.audience as f64 / (in_process_ms / 1e3),
        target_ms: TARGET_ELIGIBILITY_MS,
        index_rss_bytes: index_rss,
        sql_load_ms,
        sql_ms,
        sql_over_in_process: sql_ms.map(|s| s / in_process_ms),
        clickhouse_load_ms,
        clickhouse_ms,
        clickhouse_over_in_process: clickhouse_ms.map(|c| c / in_process_ms),
        peak_rss_bytes: rss_bytes("VmHWM"),
    };
    if args.json {
        println!("{}", serde_json::to_string(&out)?);
        return Ok(());
    }
    println!(
        "eligibility: {} leads, {} events, include {:?} within {} min",
        thousands(out.audience),
        thousands(out.events),
        EVENT_TYPES[0],
        out.within_minutes
    );
    println!(
        "  eligible             {}",
        thousands(out.eligible as usize)
    );
    println!("  index build          {:.0} ms", out.index_build_ms);
    println!(
        "  in-process           {:.1} ms (median of 5), {} leads/s, target ≤ {:.0} ms: {}",
        out.in_process_ms,
        thousands(out.in_process_leads_per_sec as usize),
        out.target_ms,
        if out.in_process_ms <= out.target_ms {
            "met"
        } else {
            "MISSED"
        }
    );
    if let Some(b) = out.index_rss_bytes {
        println!("  index memory         {:.0} MB", b as f64 / 1048576.0);
    }
    if let (Some(load), Some(q), Some(r)) = (out.sql_load_ms, out.sql_ms, out.sql_over_in_process) {
        println!("  SQLite load          {load:.0} ms");
        println!("  SQLite query         {q:.1} ms: the index answers {r:.1}× faster");
    }
    if let (Some(load), Some(q), Some(r)) = (
        out.clickhouse_load_ms,
        out.clickhouse_ms,
        out.clickhouse_over_in_process,
    ) {
        println!("  ClickHouse load      {load:.0} ms");
        println!(
            "  ClickHouse path      {q:.1} ms (median of 3): the index answers {r:.1}× faster"
        );
    }
    Ok(())
}

/// Inserts the events into a scratch ClickHouse database and answers the question
/// the way the server's ClickHouse path does; answers (load ms, median ms, eligible).
fn clickhouse_peer(
    url: &str,
    events: &[(Phone, u8, i64)],
    q: &Question<'_>,
    leads: &[Lead],
    filter: &EventFilter,
    show: bool,
) -> anyhow::Result<(f64, f64, u64)> {
    use leadstream_connectors::clickhouse::ClickHouseStore;
    use leadstream_connectors::store::{EventStore, StoredEvent};
    use leadstream_pipeline::{EventKey, Probe};
    let mut cfg = Config::load(None, |_| None)?.clickhouse;
    cfg.url = url.to_owned();
    cfg.database = format!("leadstream_bench_eligibility_{}", std::process::id());
    let mut ch = ClickHouseStore::connect(&cfg)
        .with_context(|| format!("connecting to ClickHouse at {url}"))?;
    let pb = bar(show, events.len(), "load CH");
    let t = Instant::now();
    for chunk in events.chunks(100_000) {
        let rows: Vec<StoredEvent<'_>> = chunk
            .iter()
            .map(|&(phone, ty, at)| {
                let key = EventKey {
                    org: ORG,
                    phone,
                    event_type: EVENT_TYPES[ty as usize],
                    occurred_at_us: at,
                };
                StoredEvent {
                    org: ORG,
                    event_type: EVENT_TYPES[ty as usize],
                    phone,
                    occurred_at_us: at,
                    metadata: None,
                    probe: Probe {
                        fingerprint: key.fingerprint(),
                        lead: key.lead_hash(),
                    },
                }
            })
            .collect();
        ch.append(&rows, now_ms())?;
        pb.inc(chunk.len() as u64);
    }
    pb.finish_and_clear();
    let load_ms = ms(t.elapsed());
    let lo = eligibility::window_start(q.at_us, filter.within_minutes);
    let mut runs = Vec::new();
    let mut eligible = 0;
    for _ in 0..3 {
        let t = Instant::now();
        let having = ch.leads_with_event(ORG, &filter.event_type, lo, q.at_us)?;
        let (_, summary) = eligibility::evaluate(q, leads, eligibility::Events::Having(&having));
        runs.push(ms(t.elapsed()));
        eligible = summary.eligible;
    }
    runs.sort_by(f64::total_cmp);
    ch.drop_database()
        .with_context(|| format!("dropping database {}", cfg.database))?;
    Ok((load_ms, runs[1], eligible))
}

/// Loads the events and the audience into SQLite and asks the same question; answers
/// (load ms, query ms, eligible count).
fn sql_peer(
    dir: &std::path::Path,
    events: &[(Phone, u8, i64)],
    args: &EligibilityArgs,
    t_us: i64,
    show: bool,
) -> anyhow::Result<(f64, f64, u64)> {
    let conn = rusqlite::Connection::open(dir.join("peer.db")).context("opening peer.db")?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
         CREATE TABLE lead_events (org INTEGER, phone INTEGER, event_type TEXT, occurred_at INTEGER);
         CREATE TABLE audience (phone INTEGER PRIMARY KEY) WITHOUT ROWID;",
    )?;
    let pb = bar(show, events.len(), "load SQLite");
    let t = Instant::now();
    for chunk in events.chunks(100_000) {
        let tx = conn.unchecked_transaction()?;
        {
            let mut ins = tx.prepare_cached("INSERT INTO lead_events VALUES (?1, ?2, ?3, ?4)")?;
            for (p, ty, at) in chunk {
                ins.execute(rusqlite::params![
                    ORG,
                    p.0 as i64,
                    EVENT_TYPES[*ty as usize],
                    at
                ])?;
            }
        }
        tx.commit()?;
        pb.inc(chunk.len() as u64);
    }
    {
        let tx = conn.unchecked_transaction()?;
        {
            let mut ins = tx.prepare_cached("INSERT INTO audience VALUES (?1)")?;
            for i in 0..args.audience {
                ins.execute([lead_phone(i).0 as i64])?;
            }
        }
        tx.commit()?;
    }
    // The index the question needs, as the embedded store would keep it.
    conn.execute_batch(
        "CREATE INDEX lead_events_by_type ON lead_events (org, event_type, phone, occurred_at)",
    )?;
    let load_ms = ms(t.elapsed());
    pb.finish_and_clear();
    let lo = t_us - args.within_minutes as i64 * MINUTE_US;
    let t = Instant::now();
    let count: i64 = conn.query_row(
        "SELECT count(*) FROM audience a WHERE EXISTS (SELECT 1 FROM lead_events e \
         WHERE e.org = ?1 AND e.event_type = ?2 AND e.phone = a.phone AND e.occurred_at BETWEEN ?3 AND ?4)",
        rusqlite::params![ORG, EVENT_TYPES[0], lo, t_us],
        |r| r.get(0),
    )?;
    Ok((load_ms, ms(t.elapsed()), count as u64))
}

#[derive(Serialize)]
struct MaterializeSummary {
    machine: Machine,
    audience: usize,
    emitted: u64,
    audience_load_ms: f64,
    materialize_ms: f64,
    leads_per_sec: f64,
    target_per_sec: f64,
    /// The bare SQLite write of as many delivery-sized rows, same durability.
    baseline_ms: f64,
    baseline_rows_per_sec: f64,
    /// `leads_per_sec / baseline_rows_per_sec`.
    ratio_of_baseline: f64,
    peak_rss_bytes: Option<u64>,
    /// With `--database-url`: the same on the shared database.
    shared: Option<SharedMaterialize>,
}

#[derive(Serialize)]
struct SharedMaterialize {
    audience_load_ms: f64,
    materialize_ms: f64,
    leads_per_sec: f64,
    /// shared / embedded leads per second.
    ratio_of_embedded: f64,
}

/// Uploads `args.audience` leads to a new campaign of `engine`'s org, fixes a send due
/// now and materializes it; answers (upload ms, materialize ms, leads emitted).
async fn materialize_phase(
    engine: &DeliveryEngine,
    campaigns: &Campaigns,
    writer: &EventWriter,
    args: &MaterializeArgs,
    show: bool,
) -> anyhow::Result<(f64, f64, u64)> {
    // The endpoint takes one delivery per 1000 s: the deliveries stay pending, so
    // this measures materialization into durable deliveries, not their sending
    // (`bench deliver` measures that).
    let ep = engine
        .endpoints()
        .create(
            ORG,
            EndpointKind::Registry,
            "https://receiver.example/sends".into(),
            now_ms(),
        )
        .await?;
    engine
        .endpoints()
        .patch(
            ORG,
            ep.id,
            EndpointPatch {
                rate_limit: Some(Some(0.001)),
                ..EndpointPatch::default()
            },
            now_ms(),
        )
        .await?;
    let db = campaigns.db().clone();
    let campaign = db
        .write(move |conn| store::insert_campaign(conn, ORG, "bench", None, ep.id, now_ms()))
        .await?;
    while !writer.is_ready() {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let pb = bar(show, args.audience, "audience");
    let t = Instant::now();
    let cid = campaign.id;
    for start in (0..args.audience).step_by(50_000) {
        let end = (start + 50_000).min(args.audience);
        let rows: Vec<store::AudienceRow> = (start..end)
            .map(|i| store::AudienceRow {
                phone: lead_phone(i),
                external_id: Some(format!("lead-{i}")),
                variables: format!(r#"{{"first_name":"Lead {i}"}}"#),
            })
            .collect();
        db.write(move |conn| store::merge_audience(conn, cid, &rows))
            .await?;
        pb.set_position(end as u64);
    }
    pb.finish_and_clear();
    let audience_load_ms = ms(t.elapsed());
    let send = Send {
        id: 0,
        campaign_id: cid,
        org: ORG,
        time: SendTime {
            at_us: now_ms() * 1000,
            local: None,
        },
        template_name: "welcome".into(),
        language: "en".into(),
        event_filter: None,
        use_audience_filter: false,
        created_at_ms: now_ms(),
        materialized_at_ms: None,
        emitted_all: false,
    };
    let send = db
        .write(move |conn| store::insert_send(conn, &send))
        .await?;
    reset_peak_rss();
    let t = Instant::now();
    let m = campaigns.materialize(send.id).await?;
    let materialize_ms = ms(t.elapsed());
    ensure!(
        m.emitted as usize == args.audience,
        "emitted {} of {} leads",
        m.emitted,
        args.audience
    );
    let sid = send.id;
    let (emitted, _) = db
        .read(move |conn| store::emitted_counts(conn, sid))
        .await?;
    ensure!(
        emitted as usize == args.audience,
        "{emitted} marked emitted"
    );
    Ok((audience_load_ms, materialize_ms, m.emitted))
}

/// [`materialize_phase`] on the shared database at `url`, as a server opens it.
async fn shared_materialize(
    url: &str,
    dir: &std::path::Path,
    config: &Config,
    args: &MaterializeArgs,
    show: bool,
) -> anyhow::Result<(f64, f64, u64)> {
    use leadstream_connectors::db::StateDb;
    use leadstream_connectors::services::{Role, Services};
    let mut config = config.clone();
    config.database.url = url.to_owned();
    config.store.data_dir = dir.join("shared");
    std::fs::create_dir_all(&config.store.data_dir)?;
    let services = Services::open(&config, Role::Server).await?;
    let (StateDb::Shared(pg), Some(endpoints)) = (&services.db, services.endpoints) else {
        anyhow::bail!("the shared database did not open as one");
    };
    let writer = EventWriter::start(&config.store.data_dir, 64, Default::default())
        .context("opening the event store")?;
    let engine = DeliveryEngine::start_shared(pg, endpoints, &config.delivery)
        .context("starting the engine on the shared database")?;
    let campaigns = Campaigns::open(engine.clone(), writer.clone(), &config.sends)
        .context("opening the campaign store")?;
    materialize_phase(&engine, &campaigns, &writer, args, show).await
}

/// The target on the shared database (issue 14).
const TARGET_SHARED_MATERIALIZE_PER_SEC: f64 = 100_000.0;

/// Runs `leadstream bench materialize`.
///
/// # Errors
/// Bad arguments, a failed phase, or a count that is off.
pub fn materialize(args: &MaterializeArgs) -> anyhow::Result<()> {
    ensure!(args.audience > 0, "--audience must be at least 1");
    let show = show_progress(args.json);
    let load_start = load_avg();
    let dir = TempDir::new(args.tmp_dir.as_deref())?;
    let config = Config::load(None, |_| None).context("loading the default configuration")?;
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let writer =
        EventWriter::start(&dir.0, 64, Default::default()).context("opening the event store")?;
    let (engine, campaigns) = {
        let _in_runtime = rt.enter();
        let engine =
            DeliveryEngine::start(&dir.0, &config.delivery).context("opening the webhook store")?;
        let campaigns = Campaigns::open(engine.clone(), writer.clone(), &config.sends)
            .context("opening the campaign store")?;
        (engine, campaigns)
    };
    let out = rt.block_on(materialize_phase(&engine, &campaigns, &writer, args, show))?;
    let shared = match &args.database_url {
        Some(url) => Some(rt.block_on(async {
            let schema = super::BenchSchema::create(url).await?;
            let out = shared_materialize(&schema.url, &dir.0, &config, args, show).await;
            schema.drop_all().await?;
            out
        })?),
        None => None,
    };
    let (audience_load_ms, materialize_ms, emitted) = out;
    let peak = rss_bytes("VmHWM");
    let baseline_ms = baseline(&dir.0, args.audience)?;
    let leads_per_sec = emitted as f64 / (materialize_ms / 1e3);
    let baseline_rows_per_sec = args.audience as f64 / (baseline_ms / 1e3);
    let out = MaterializeSummary {
        machine: Machine::detect(args.tmp_dir.as_deref(), load_start),
        audience: args.audience,
        emitted,
        audience_load_ms,
        materialize_ms,
        leads_per_sec,
        target_per_sec: TARGET_MATERIALIZE_PER_SEC,
        baseline_ms,
        baseline_rows_per_sec,
        ratio_of_baseline: leads_per_sec / baseline_rows_per_sec,
        peak_rss_bytes: peak,
        shared: shared.map(|(load, m, n)| {
            let per_sec = n as f64 / (m / 1e3);
            SharedMaterialize {
                audience_load_ms: load,
                materialize_ms: m,
                leads_per_sec: per_sec,
                ratio_of_embedded: per_sec / leads_per_sec,
            }
        }),
    };
    if args.json {
        println!("{}", serde_json::to_string(&out)?);
        return Ok(());
    }
    println!(
        "materialize: {} leads, all eligible",
        thousands(out.audience)
    );
    println!("  audience upload      {:.0} ms", out.audience_load_ms);
    println!(
        "  materialize          {:.0} ms, {} leads/s into durable deliveries, target ≥ {}: {}",
        out.materialize_ms,
        thousands(out.leads_per_sec as usize),
        thousands(out.target_per_sec as usize),
        if out.leads_per_sec >= out.target_per_sec {
            "met"
        } else {
            "MISSED"
        }
    );
    println!(
        "  bare SQLite rows     {:.0} ms, {} rows/s: materialize is {:.2} of it",
        out.baseline_ms,
        thousands(out.baseline_rows_per_sec as usize),
        out.ratio_of_baseline
    );
    if let Some(p) = out.peak_rss_bytes {
        println!("  peak RSS             {:.0} MB", p as f64 / 1048576.0);
    }
    if let Some(sh) = &out.shared {
        println!(
            "  shared database      upload {:.0} ms; materialize {:.0} ms, {} leads/s, target ≥ {}: {}; {:.2} of the embedded store",
            sh.audience_load_ms,
            sh.materialize_ms,
            thousands(sh.leads_per_sec as usize),
            thousands(TARGET_SHARED_MATERIALIZE_PER_SEC as usize),
            if sh.leads_per_sec >= TARGET_SHARED_MATERIALIZE_PER_SEC {
                "met"
            } else {
                "MISSED"
            },
            sh.ratio_of_embedded
        );
    }
    Ok(())
}

/// Writes `n` delivery-sized rows (id, event id, a ~200-byte payload) to SQLite in
/// transactions of 2,000 with `synchronous = FULL`, as the engine does; answers ms.
fn baseline(dir: &std::path::Path, n: usize) -> anyhow::Result<f64> {
    let conn = rusqlite::Connection::open(dir.join("baseline.db"))?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
         CREATE TABLE rows (id TEXT PRIMARY KEY, event_id TEXT NOT NULL, payload BLOB NOT NULL);",
    )?;
    let payload = vec![b'x'; 200];
    let t = Instant::now();
    for start in (0..n).step_by(2000) {
        let tx = conn.unchecked_transaction()?;
        {
            let mut ins = tx.prepare_cached("INSERT INTO rows VALUES (?1, ?2, ?3)")?;
            for i in start..(start + 2000).min(n) {
                ins.execute(rusqlite::params![
                    format!("msg_{i:026}"),
                    format!("evt_{i:026}"),
                    &payload
                ])?;
            }
        }
        tx.commit()?;
    }
    Ok(ms(t.elapsed()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_phones_are_valid_and_distinct() {
        let n = leadstream_pipeline::PhoneNormalizer::new();
        for i in [0, 1, 999_999, 1_999_999] {
            let p = lead_phone(i);
            assert_eq!(n.normalize(&p.to_string()), Some(p));
        }
    }
}
