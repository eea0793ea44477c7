//! `leadstream bench deliver`: webhook deliveries end to end through the real engine
//! on the embedded store, against local receivers, with a bare HTTP client loop over
//! the same receivers as the ceiling, in the same run; with `--database-url`, the
//! engine again on the shared database (a schema of its own), beside the embedded
//! figure.

use super::{load_avg, ms, reset_peak_rss, rss_bytes, thousands, Machine, TempDir};
use anyhow::{bail, ensure, Context};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use leadstream_connectors::config::Config;
use leadstream_connectors::delivery::deliveries::{DeliveryState, ListQuery, NewEvent, SortKey};
use leadstream_connectors::delivery::endpoints::EndpointPatch;
use leadstream_connectors::delivery::model::{Endpoint, EndpointKind};
use leadstream_connectors::delivery::DeliveryEngine;
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The target.
const TARGET_DELIVERIES_PER_SEC: f64 = 20_000.0;
/// The target on the shared database (issue 14).
const TARGET_SHARED_DELIVERIES_PER_SEC: f64 = 10_000.0;
const ORG: i64 = 1;
/// Share of deliveries to the slow endpoint.
const SLOW_SHARE: usize = 100; // one in 100
/// How long the slow endpoint takes to answer.
const SLOW_ANSWER: Duration = Duration::from_millis(20);
/// One in this many deliveries to a flaky endpoint gets a 500 on its first attempt.
const FLAKY_ONE_IN: u64 = 10;

#[derive(Args, Debug, Clone)]
pub struct DeliverArgs {
    /// Deliveries to publish (one event each).
    #[arg(long, default_value_t = 200_000)]
    pub deliveries: usize,
    /// Local receivers (endpoints), at least 2: one answers slowly (20 ms, 1% of the
    /// deliveries), half of the others answer 500 to the first attempt of one delivery
    /// in ten.
    #[arg(long, default_value_t = 8)]
    pub endpoints: usize,
    /// Bytes of each payload (a JSON object padded to about this size).
    #[arg(long, default_value_t = 512)]
    pub payload_bytes: usize,
    /// Events per publish call (one transaction each).
    #[arg(long, default_value_t = 1000)]
    pub publish_batch: usize,
    /// Where to create the temporary data dir; its filesystem decides what an fsync costs.
    #[arg(long, value_name = "DIR")]
    pub tmp_dir: Option<PathBuf>,
    /// Also run the engine on this Postgres database (in a schema of its own, dropped
    /// after), beside the embedded store: `postgres://user:pass@host:5432/db`.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// Print the summary as one JSON object on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    Fast,
    Flaky,
    Slow,
}

/// One local receiver's state.
struct Receiver {
    behaviour: Behaviour,
    /// Ids answered 500 once already.
    failed_once: Mutex<HashSet<String>>,
    /// 2xx answers: (webhook-id, when).
    ok: Mutex<Vec<(String, Instant)>>,
    requests: AtomicUsize,
    ok_count: Arc<AtomicUsize>,
}

fn planned_flaky(id: &str) -> bool {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    id.hash(&mut h);
    h.finish().is_multiple_of(FLAKY_ONE_IN)
}

async fn receive(State(r): State<Arc<Receiver>>, headers: HeaderMap, _body: Bytes) -> StatusCode {
    r.requests.fetch_add(1, Ordering::Relaxed);
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    match r.behaviour {
        Behaviour::Slow => tokio::time::sleep(SLOW_ANSWER).await,
        Behaviour::Flaky if planned_flaky(&id) && r.failed_once.lock().insert(id.clone()) => {
            return StatusCode::INTERNAL_SERVER_ERROR;
        }
        _ => {}
    }
    r.ok.lock().push((id, Instant::now()));
    r.ok_count.fetch_add(1, Ordering::Relaxed);
    StatusCode::OK
}

struct Receivers {
    all: Vec<(String, Arc<Receiver>)>,
    ok_count: Arc<AtomicUsize>,
}

impl Receivers {
    async fn start(k: usize) -> anyhow::Result<Self> {
        let ok_count = Arc::new(AtomicUsize::new(0));
        let mut all = Vec::with_capacity(k);
        for i in 0..k {
            let behaviour = match i {
                0 => Behaviour::Slow,
                i if i % 2 == 1 => Behaviour::Flaky,
                _ => Behaviour::Fast,
            };
            let r = Arc::new(Receiver {
                behaviour,
                failed_once: Mutex::default(),
                ok: Mutex::default(),
                requests: AtomicUsize::new(0),
                ok_count: ok_count.clone(),
            });
            let app = axum::Router::new()
                .route("/hook", axum::routing::post(receive))
                .with_state(r.clone());
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .context("binding a receiver on 127.0.0.1:0")?;
            let url = format!("http://{}/hook", listener.local_addr()?);
            tokio::spawn(async move { axum::serve(listener, app).await });
            all.push((url, r));
        }
        Ok(Self { all, ok_count })
    }

    fn reset(&self) {
        for (_, r) in &self.all {
            r.failed_once.lock().clear();
            r.ok.lock().clear();
            r.requests.store(0, Ordering::Relaxed);
        }
        self.ok_count.store(0, Ordering::Relaxed);
    }

    fn requests(&self) -> usize {
        self.all
            .iter()
            .map(|(_, r)| r.requests.load(Ordering::Relaxed))
            .sum()
    }
}

/// The receiver a delivery `n` goes to.
fn receiver_of(n: usize, k: usize) -> usize {
    if n % SLOW_SHARE == SLOW_SHARE - 1 {
        0
    } else {
        1 + n % (k - 1)
    }
}

fn payload(n: usize, size: usize) -> Bytes {
    let head = format!("{{\"type\":\"bench\",\"n\":{n},\"pad\":\"");
    let pad = size.saturating_sub(head.len() + 2);
    let mut s = String::with_capacity(head.len() + pad + 2);
    s.push_str(&head);
    s.push_str(&"x".repeat(pad));
    s.push_str("\"}");
    Bytes::from(s)
}

#[derive(Serialize)]
struct Latency {
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

fn percentiles(mut v: Vec<f64>) -> Latency {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| {
        if v.is_empty() {
            0.0
        } else {
            v[((v.len() - 1) as f64 * q).round() as usize]
        }
    };
    Latency {
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        max_ms: at(1.0),
    }
}

#[derive(Serialize)]
struct EnginePhase {
    deliveries: usize,
    /// Publish of the first event to the last outcome durable.
    elapsed_ms: f64,
    deliveries_per_sec: f64,
    /// Publish calls only (the store writes of the deliveries).
    publish_ms: f64,
    /// Publish (the call's return) to the receiver's 2xx.
    latency: Latency,
    attempts: usize,
    planned_attempts: usize,
    succeeded: usize,
    failed: usize,
    peak_rss_bytes: Option<u64>,
}

#[derive(Serialize)]
struct BaselinePhase {
    requests: usize,
    elapsed_ms: f64,
    deliveries_per_sec: f64,
    in_flight: usize,
}

#[derive(Serialize)]
struct Summary {
    machine: Machine,
    deliveries: usize,
    endpoints: usize,
    payload_bytes: usize,
    retry_schedule: String,
    engine: EnginePhase,
    /// The engine on the shared database, with `--database-url`.
    shared: Option<EnginePhase>,
    /// shared / embedded deliveries per second.
    shared_ratio: Option<f64>,
    shared_meets_target: Option<bool>,
    baseline: BaselinePhase,
    /// engine / baseline deliveries per second.
    ratio: f64,
    target_deliveries_per_sec: f64,
    meets_target: bool,
    problems: Vec<String>,
}

fn bar(show: bool, n: usize, prefix: &'static str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template(
        "{prefix:>10} [{bar:30}] {human_pos}/{human_len} deliveries, {per_sec}, eta {eta}",
    )
    .expect("valid template")
    .progress_chars("=> ");
    ProgressBar::new(n as u64)
        .with_style(style)
        .with_prefix(prefix)
}

/// Runs the bench.
///
/// # Errors
/// Bad arguments, a failed phase, or deliveries that did not reach their planned state.
pub fn run(args: &DeliverArgs) -> anyhow::Result<()> {
    ensure!(args.deliveries > 0, "--deliveries must be at least 1");
    ensure!(
        args.endpoints >= 2,
        "--endpoints must be at least 2 (one of them is the slow one)"
    );
    ensure!(args.endpoints <= 1000, "--endpoints is at most 1000");
    ensure!(args.publish_batch > 0, "--publish-batch must be at least 1");
    ensure!(
        args.payload_bytes <= leadstream_connectors::delivery::MAX_PAYLOAD_BYTES,
        "--payload-bytes is at most 262144 (the publish limit)"
    );
    let show = !args.json && std::io::stderr().is_terminal();
    let load_start = load_avg();
    let dir = TempDir::new(args.tmp_dir.as_deref())?;
    let mut config = Config::load(None, |_| None).context("loading the default configuration")?;
    config.delivery.allow_private_targets = true;
    config.delivery.retry_schedule = "100ms,1s,5s,30s".into();
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let summary = rt.block_on(async {
        let receivers = Receivers::start(args.endpoints).await?;
        let engine =
            DeliveryEngine::start(&dir.0, &config.delivery).context("opening the webhook store")?;
        let endpoints = make_endpoints(&engine, &receivers).await?;
        let per_endpoint = config.delivery.max_in_flight_per_endpoint;
        reset_peak_rss();
        let engine_phase = engine_phase(&engine, &receivers, &endpoints, args, show).await?;
        receivers.reset();
        let shared = match &args.database_url {
            Some(url) => {
                let schema = super::BenchSchema::create(url).await?;
                let phase =
                    shared_phase(&schema.url, &dir.0, &config, &receivers, args, show).await;
                receivers.reset();
                schema.drop_all().await?;
                Some(phase?)
            }
            None => None,
        };
        let in_flight =
            ((args.endpoints - 1) * per_endpoint + 64).min(config.delivery.max_in_flight);
        let baseline = baseline_phase(&receivers, args, in_flight, show).await?;
        let ratio = engine_phase.deliveries_per_sec / baseline.deliveries_per_sec.max(1e-9);
        let mut problems = Vec::new();
        if engine_phase.succeeded != args.deliveries {
            problems.push(format!(
                "{} of {} deliveries succeeded ({} failed)",
                engine_phase.succeeded, args.deliveries, engine_phase.failed
            ));
        }
        for (name, phase) in [
            ("embedded", Some(&engine_phase)),
            ("shared", shared.as_ref()),
        ] {
            let Some(phase) = phase else { continue };
            if phase.succeeded != args.deliveries && name == "shared" {
                problems.push(format!(
                    "shared database: {} of {} deliveries succeeded ({} failed)",
                    phase.succeeded, args.deliveries, phase.failed
                ));
            }
            if phase.attempts != phase.planned_attempts {
                problems.push(format!(
                    "{name}: {} attempts, {} planned",
                    phase.attempts, phase.planned_attempts
                ));
            }
        }
        let shared_ratio = shared
            .as_ref()
            .map(|p| p.deliveries_per_sec / engine_phase.deliveries_per_sec.max(1e-9));
        let shared_meets_target = shared
            .as_ref()
            .map(|p| p.deliveries_per_sec >= TARGET_SHARED_DELIVERIES_PER_SEC);
        anyhow::Ok(Summary {
            machine: Machine::detect(args.tmp_dir.as_deref(), load_start),
            deliveries: args.deliveries,
            endpoints: args.endpoints,
            payload_bytes: args.payload_bytes,
            retry_schedule: config.delivery.retry_schedule.clone(),
            meets_target: engine_phase.deliveries_per_sec >= TARGET_DELIVERIES_PER_SEC,
            engine: engine_phase,
            shared,
            shared_ratio,
            shared_meets_target,
            baseline,
            ratio,
            target_deliveries_per_sec: TARGET_DELIVERIES_PER_SEC,
            problems,
        })
    })?;
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        print_table(&summary);
    }
    if !summary.problems.is_empty() {
        bail!(
            "deliveries did not reach their planned state: {}",
            summary.problems.join("; ")
        );
    }
    Ok(())
}

/// The engine phase again, on the shared database at `url`: the engine a server
/// starts there ([`Services::open`](leadstream_connectors::services::Services::open),
/// [`DeliveryEngine::start_shared`]), the same endpoints made anew in it.
async fn shared_phase(
    url: &str,
    dir: &std::path::Path,
    config: &Config,
    receivers: &Receivers,
    args: &DeliverArgs,
    show: bool,
) -> anyhow::Result<EnginePhase> {
    use leadstream_connectors::db::StateDb;
    use leadstream_connectors::services::{Role, Services};
    let mut config = config.clone();
    config.database.url = url.to_owned();
    config.store.data_dir = dir.join("shared");
    std::fs::create_dir_all(&config.store.data_dir)?;
    let services = Services::open(&config, Role::Server).await?;
    let (StateDb::Shared(pg), Some(shared_endpoints)) = (&services.db, services.endpoints) else {
        bail!("the shared database did not open as one");
    };
    let engine = DeliveryEngine::start_shared(pg, shared_endpoints, &config.delivery)
        .context("starting the engine on the shared database")?;
    let endpoints = make_endpoints(&engine, receivers).await?;
    reset_peak_rss();
    engine_phase(&engine, receivers, &endpoints, args, show).await
}

/// One endpoint per receiver, the slow one allowed more connections.
async fn make_endpoints(
    engine: &DeliveryEngine,
    receivers: &Receivers,
) -> anyhow::Result<Vec<Arc<Endpoint>>> {
    let mut endpoints: Vec<Arc<Endpoint>> = Vec::new();
    for (url, _) in &receivers.all {
        let e = engine
            .endpoints()
            .create(
                ORG,
                EndpointKind::Registry,
                url.clone(),
                leadstream_connectors::writer::now_ms(),
            )
            .await?;
        endpoints.push(e);
    }
    // The slow one may use more connections: it is slow, not overloaded.
    endpoints[0] = engine
        .endpoints()
        .patch(
            ORG,
            endpoints[0].id,
            EndpointPatch {
                max_in_flight: Some(Some(64)),
                ..EndpointPatch::default()
            },
            leadstream_connectors::writer::now_ms(),
        )
        .await?;
    Ok(endpoints)
}

async fn engine_phase(
    engine: &DeliveryEngine,
    receivers: &Receivers,
    endpoints: &[Arc<Endpoint>],
    args: &DeliverArgs,
    show: bool,
) -> anyhow::Result<EnginePhase> {
    let n = args.deliveries;
    let k = args.endpoints;
    let pb = bar(show, n, "engine");
    let started = Instant::now();
    let published_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let planned_retries = Arc::new(AtomicUsize::new(0));
    let publisher = {
        let engine = engine.clone();
        let endpoints: Vec<Arc<Endpoint>> = endpoints.to_vec();
        let published_at = published_at.clone();
        let planned_retries = planned_retries.clone();
        let (batch, size) = (args.publish_batch, args.payload_bytes);
        tokio::spawn(async move {
            let mut publish_time = Duration::ZERO;
            let mut next = 0;
            while next < n {
                let end = (next + batch).min(n);
                let events: Vec<NewEvent> = (next..end)
                    .map(|i| NewEvent {
                        org: ORG,
                        event_type: "bench".into(),
                        payload: payload(i, size),
                        idempotency_key: None,
                        endpoints: vec![endpoints[receiver_of(i, k)].clone()],
                        due_at_ms: None,
                    })
                    .collect();
                let t = Instant::now();
                let published = engine.publish_many(events).await?;
                let done = Instant::now();
                publish_time += done - t;
                {
                    let mut at = published_at.lock();
                    for (j, p) in published.iter().enumerate() {
                        for job in &p.jobs {
                            let flaky = receiver_of(next + j, k) % 2 == 1;
                            if flaky && planned_flaky(&job.id) {
                                planned_retries.fetch_add(1, Ordering::Relaxed);
                            }
                            at.insert(job.id.to_string(), done);
                        }
                    }
                }
                next = end;
                tokio::task::yield_now().await;
            }
            anyhow::Ok(publish_time)
        })
    };
    while receivers.ok_count.load(Ordering::Relaxed) < n {
        pb.set_position(receivers.ok_count.load(Ordering::Relaxed) as u64);
        if publisher.is_finished() && started.elapsed() > Duration::from_secs(600) {
            bail!("deliveries did not all succeed within 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let publish_time = publisher.await.context("publisher task")??;
    // Every outcome durable: nothing pending in the store.
    let pending = ListQuery {
        org: ORG,
        state: Some(DeliveryState::Pending),
        event_type: None,
        endpoint_id: None,
        since_ms: None,
        until_ms: None,
        sort: SortKey::CreatedAt,
        descending: false,
        limit: 1,
        after: None,
    };
    while !engine.list(pending.clone()).await?.0.is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = started.elapsed();
    pb.finish_and_clear();
    let lat = {
        let published_at = published_at.lock();
        let mut lat = Vec::with_capacity(n);
        for (_, r) in &receivers.all {
            for (id, at) in r.ok.lock().iter() {
                if let Some(p) = published_at.get(id) {
                    lat.push(ms(at.saturating_duration_since(*p)));
                }
            }
        }
        lat
    };
    let count = |state| {
        let q = ListQuery {
            state: Some(state),
            limit: 1000,
            ..pending.clone()
        };
        let engine = engine.clone();
        async move {
            let mut total = 0;
            let mut q = q;
            loop {
                let (rows, more) = engine.list(q.clone()).await?;
                total += rows.len();
                match rows.last() {
                    Some(last) if more => q.after = Some((last.created_at_ms, last.seq)),
                    _ => return anyhow::Ok(total),
                }
            }
        }
    };
    let succeeded = count(DeliveryState::Succeeded).await?;
    let failed = count(DeliveryState::Failed).await?;
    Ok(EnginePhase {
        deliveries: n,
        elapsed_ms: ms(elapsed),
        deliveries_per_sec: n as f64 / elapsed.as_secs_f64(),
        publish_ms: ms(publish_time),
        latency: percentiles(lat),
        attempts: receivers.requests(),
        planned_attempts: n + planned_retries.load(Ordering::Relaxed),
        succeeded,
        failed,
        peak_rss_bytes: rss_bytes("VmHWM"),
    })
}

/// The ceiling: the same requests to the same receivers from one HTTP client, with
/// as many in flight as the engine may have, no store and no signing. A 500 is sent
/// again at once.
async fn baseline_phase(
    receivers: &Receivers,
    args: &DeliverArgs,
    in_flight: usize,
    show: bool,
) -> anyhow::Result<BaselinePhase> {
    let n = args.deliveries;
    let k = args.endpoints;
    let pb = bar(show, n, "baseline");
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(64)
        .timeout(Duration::from_secs(30))
        .build()?;
    let urls: Arc<Vec<String>> = Arc::new(receivers.all.iter().map(|(u, _)| u.clone()).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..in_flight {
        let (client, urls, next) = (client.clone(), urls.clone(), next.clone());
        let size = args.payload_bytes;
        workers.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return anyhow::Ok(());
                }
                let url = &urls[receiver_of(i, k)];
                let body = payload(i, size);
                let id = format!("base_{i}");
                loop {
                    let r = client
                        .post(url)
                        .header("content-type", "application/json")
                        .header("webhook-id", &id)
                        .body(body.clone())
                        .send()
                        .await?;
                    if r.status().is_success() {
                        break;
                    }
                }
            }
        });
    }
    let total = workers.len();
    let mut done = 0;
    while let Some(r) = workers.join_next().await {
        r.context("baseline worker")??;
        done += 1;
        pb.set_position((next.load(Ordering::Relaxed).min(n)) as u64);
        let _ = (done, total);
    }
    let elapsed = started.elapsed();
    pb.finish_and_clear();
    Ok(BaselinePhase {
        requests: receivers.requests(),
        elapsed_ms: ms(elapsed),
        deliveries_per_sec: n as f64 / elapsed.as_secs_f64(),
        in_flight,
    })
}

fn print_table(s: &Summary) {
    let e = &s.engine;
    let b = &s.baseline;
    println!(
        "leadstream bench deliver: {} deliveries to {} local endpoints ({} B payloads; retry schedule {})",
        thousands(s.deliveries),
        s.endpoints,
        s.payload_bytes,
        s.retry_schedule
    );
    println!(
        "machine: {} cores, {}; load {} -> {}",
        s.machine.nproc,
        s.machine.cpu.as_deref().unwrap_or("?"),
        s.machine.load_avg_start.as_deref().unwrap_or("?"),
        s.machine.load_avg_end.as_deref().unwrap_or("?")
    );
    println!();
    println!("  engine    {:>10.0} deliveries/s   {:>8.0} ms   publish-to-2xx p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        e.deliveries_per_sec, e.elapsed_ms, e.latency.p50_ms, e.latency.p99_ms, e.latency.max_ms);
    println!(
        "            attempts {} (planned {}), succeeded {}, failed {}, publish calls {:.0} ms, peak RSS {:.0} MiB",
        thousands(e.attempts),
        thousands(e.planned_attempts),
        thousands(e.succeeded),
        thousands(e.failed),
        e.publish_ms,
        e.peak_rss_bytes.unwrap_or(0) as f64 / 1048576.0
    );
    if let Some(p) = &s.shared {
        println!("  shared    {:>10.0} deliveries/s   {:>8.0} ms   publish-to-2xx p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms  (Postgres)",
            p.deliveries_per_sec, p.elapsed_ms, p.latency.p50_ms, p.latency.p99_ms, p.latency.max_ms);
        println!(
            "            attempts {} (planned {}), succeeded {}, failed {}, publish calls {:.0} ms, peak RSS {:.0} MiB",
            thousands(p.attempts),
            thousands(p.planned_attempts),
            thousands(p.succeeded),
            thousands(p.failed),
            p.publish_ms,
            p.peak_rss_bytes.unwrap_or(0) as f64 / 1048576.0
        );
    }
    println!(
        "  baseline  {:>10.0} deliveries/s   {:>8.0} ms   bare client loop, {} in flight, no store, no signing",
        b.deliveries_per_sec, b.elapsed_ms, b.in_flight
    );
    println!();
    println!(
        "  ratio engine/baseline: {:.2}   target {} deliveries/s: {}",
        s.ratio,
        thousands(s.target_deliveries_per_sec as usize),
        if s.meets_target { "met" } else { "NOT met" }
    );
    if let (Some(r), Some(met)) = (s.shared_ratio, s.shared_meets_target) {
        println!(
            "  ratio shared/embedded: {r:.2}   target {} deliveries/s on the shared database: {}",
            thousands(TARGET_SHARED_DELIVERIES_PER_SEC as usize),
            if met { "met" } else { "NOT met" }
        );
    }
    for p in &s.problems {
        println!("  PROBLEM: {p}");
    }
}
