//! `leadstream bench domain`: WhatsApp webhook bodies in over HTTP (signed as Meta
//! signs them), through the real server on a fresh embedded store, each causing one
//! `incoming_message` delivered to a local receiver; and in the same run the ceiling:
//! the same requests to a bare server that checks the signature and answers 200,
//! storing nothing. Then the cost of pending `conversation_inactive` timers.

use super::{
    bar, load_avg, ms, rss_bytes, show_progress, thousands, wait_ready, Machine, Percentiles,
    TempDir,
};
use anyhow::{bail, ensure, Context};
use axum::extract::State;
use bytes::Bytes;
use clap::Args;
use indicatif::ProgressBar;
use leadstream_connectors::config::Config;
use leadstream_connectors::domain::store::{self as domain_store, Conversation, ConversationKey};
use parking_lot::Mutex;
use serde::Serialize;
use serde_json::json;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ORG: i64 = 1;
const INTEGRATION: i64 = 456;
const SECRET: &str = "bench-app-secret";

#[derive(Args, Debug, Clone)]
pub struct DomainArgs {
    /// WhatsApp webhooks to send, one user message each.
    #[arg(long, default_value_t = 20_000)]
    pub events: usize,
    /// Distinct contacts the messages come from (their conversations grow).
    #[arg(long, default_value_t = 2_000)]
    pub contacts: usize,
    /// Webhooks in flight at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Pending conversation_inactive timers to arm for the memory and disk measure
    /// (0: skip).
    #[arg(long, default_value_t = 1_000_000)]
    pub timers: usize,
    /// Where to create the temporary data dir; its filesystem decides what an fsync costs.
    #[arg(long, value_name = "DIR")]
    pub tmp_dir: Option<PathBuf>,
    /// Print the summary as one JSON object on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct DomainSummary {
    machine: Machine,
    events: usize,
    contacts: usize,
    concurrency: usize,
    /// Webhooks answered 200 (durable) per second.
    webhooks_per_sec: f64,
    /// incoming_message events delivered (2xx at the receiver) per second, from the
    /// first webhook sent to the last delivery received.
    published_per_sec: f64,
    /// From sending a webhook to its incoming_message arriving at the receiver.
    end_to_end_ms: Percentiles,
    /// The webhook's own answer time.
    webhook_ms: Percentiles,
    /// The same requests to a bare server that checks the signature and answers 200.
    bare_webhooks_per_sec: f64,
    /// `webhooks_per_sec / bare_webhooks_per_sec`.
    ratio_of_bare: f64,
    timers: usize,
    /// Growth of webhooks.db per pending timer (its conversation row and index entry).
    timer_disk_bytes: Option<f64>,
    /// Growth of the process's resident memory while the timers were armed, per timer.
    timer_rss_bytes: Option<f64>,
}

fn sign(body: &[u8]) -> String {
    leadstream_connectors::domain::whatsapp::signature(SECRET, body)
}

/// The `i`-th webhook: one text message `m<i>` from contact `i % contacts`.
fn webhook(i: usize, contacts: usize, at_secs: i64) -> Bytes {
    let from = format!("1415{:07}", 1_000_000 + i % contacts);
    Bytes::from(
        serde_json::to_vec(&json!({"object": "whatsapp_business_account", "entry": [{"id": "WABA", "changes": [{
            "field": "messages",
            "value": {"messaging_product": "whatsapp",
                      "metadata": {"display_phone_number": "15550001111", "phone_number_id": "1"},
                      "contacts": [{"profile": {"name": format!("Contact {}", i % contacts)}, "wa_id": from}],
                      "messages": [{"from": from, "id": format!("wamid.bench.{i}"), "timestamp": at_secs.to_string(),
                                    "type": "text", "text": {"body": format!("m{i}")}}]}}]}]}))
        .expect("a body serializes"),
    )
}

/// Arrival instants at the receiver, by message index.
type Arrivals = Arc<Mutex<HashMap<usize, Instant>>>;

async fn receive(State(arrivals): State<Arrivals>, body: Bytes) -> axum::http::StatusCode {
    let i = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            v["last_message_of_user"]
                .as_str()
                .and_then(|m| m.strip_prefix('m'))
                .and_then(|n| n.parse::<usize>().ok())
        });
    if let Some(i) = i {
        arrivals.lock().entry(i).or_insert_with(Instant::now);
    }
    axum::http::StatusCode::OK
}

/// The bare peer: checks the signature, answers 200.
async fn bare(headers: axum::http::HeaderMap, body: Bytes) -> axum::http::StatusCode {
    let ok = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|sig| {
            leadstream_connectors::domain::whatsapp::signature_ok(SECRET, &body, sig)
        });
    if ok {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::UNAUTHORIZED
    }
}

async fn serve(router: axum::Router) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(addr)
}

/// Sends every body to `url` with `concurrency` in flight; answers the wall time and
/// each request's (start, answer time).
async fn send_all(
    client: &reqwest::Client,
    url: &str,
    bodies: &Arc<[Bytes]>,
    concurrency: usize,
    pb: &ProgressBar,
) -> anyhow::Result<(Duration, Vec<(Instant, Duration)>)> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (client, url, bodies, next, pb) = (
            client.clone(),
            url.to_owned(),
            bodies.clone(),
            next.clone(),
            pb.clone(),
        );
        workers.spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else { break };
                let t = Instant::now();
                let r = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("x-hub-signature-256", sign(body))
                    .body(body.clone())
                    .send()
                    .await
                    .with_context(|| format!("POST webhook {i}"))?;
                let status = r.status();
                let text = r.bytes().await?;
                if !status.is_success() {
                    bail!(
                        "webhook {i}: HTTP {status}: {}",
                        String::from_utf8_lossy(&text)
                    );
                }
                out.push((i, t, t.elapsed()));
                pb.inc(1);
            }
            anyhow::Ok(out)
        });
    }
    let mut all = vec![(started, Duration::ZERO); bodies.len()];
    while let Some(r) = workers.join_next().await {
        for (i, t, d) in r.context("a sender task")?? {
            all[i] = (t, d);
        }
    }
    Ok((started.elapsed(), all))
}

/// Runs `leadstream bench domain`.
///
/// # Errors
/// Bad arguments, a failed request, or a message that never arrived.
pub fn run(args: &DomainArgs) -> anyhow::Result<()> {
    ensure!(args.events > 0, "--events must be at least 1");
    ensure!(args.contacts > 0, "--contacts must be at least 1");
    let show = show_progress(args.json);
    let load_start = load_avg();
    let dir = TempDir::new(args.tmp_dir.as_deref())?;
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let (services, key) = super::bench_services(&rt, &dir.0, None, ORG)?;
    let registry = services.registry;
    let writer = leadstream_connectors::EventWriter::start(&dir.0, 16, Default::default())
        .context("opening the event store")?;
    let mut config = Config::load(None, |_| None).context("loading the default configuration")?;
    config.delivery.allow_private_targets = true;
    let state = super::server_state(&dir.0, registry, writer, &config, &rt)?;
    let domain = state.domain.clone();
    let at_secs = leadstream_connectors::writer::now_ms() / 1000;
    let bodies: Arc<[Bytes]> = (0..args.events)
        .map(|i| webhook(i, args.contacts, at_secs))
        .collect();
    let out = rt.block_on(async {
        let arrivals: Arrivals = Arc::default();
        let receiver = serve(
            axum::Router::new()
                .route("/in", axum::routing::post(receive))
                .with_state(arrivals.clone()),
        )
        .await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(leadstream_connectors::api::run(
            listener,
            state,
            std::future::pending(),
        ));
        let client = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(args.concurrency.max(1))
            .timeout(Duration::from_secs(60))
            .build()?;
        wait_ready(&client, addr).await?;
        let base = format!("http://{addr}");
        let r = client
            .post(format!("{base}/api/v1/integrations/whatsapp"))
            .bearer_auth(&key)
            .json(&json!({"botIntegrationId": INTEGRATION, "botId": 1, "appSecret": SECRET}))
            .send()
            .await?;
        ensure!(
            r.status() == 201,
            "registering the integration: {}",
            r.text().await?
        );
        let r: serde_json::Value = client
            .post(format!("{base}/api/webhooks/create"))
            .bearer_auth(&key)
            .json(&json!({"webhook": format!("http://{receiver}/in")}))
            .send()
            .await?
            .json()
            .await?;
        let endpoint = r["data"]["id"].as_i64().context("the endpoint's id")?;
        let r = client
            .patch(format!("{base}/api/webhooks/{endpoint}"))
            .bearer_auth(&key)
            .json(&json!({"eventTypes": ["incoming_message"], "maxInFlight": 64}))
            .send()
            .await?;
        ensure!(
            r.status().is_success(),
            "subscribing the receiver: {}",
            r.text().await?
        );

        let pb = bar(show, args.events, "webhooks");
        let url = format!("{base}/api/v1/integrations/whatsapp/{INTEGRATION}/webhook");
        let (wall, sent) = send_all(&client, &url, &bodies, args.concurrency, &pb).await?;
        pb.finish_and_clear();
        let deadline = Instant::now() + Duration::from_secs(300);
        while arrivals.lock().len() < args.events {
            ensure!(
                Instant::now() < deadline,
                "{} of {} incoming_message deliveries arrived after 300 s",
                arrivals.lock().len(),
                args.events
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let arrived = arrivals.lock().clone();
        let first = sent.iter().map(|(t, _)| *t).min().expect("one webhook");
        let last = arrived.values().max().copied().expect("one arrival");
        let mut e2e: Vec<f64> = (0..args.events)
            .map(|i| ms(arrived[&i].saturating_duration_since(sent[i].0)))
            .collect();
        let mut answer: Vec<f64> = sent.iter().map(|(_, d)| ms(*d)).collect();

        // The ceiling: the same signed requests to a bare server.
        let peer = serve(axum::Router::new().route("/hook", axum::routing::post(bare))).await?;
        let pb = bar(show, args.events, "bare");
        let (bare_wall, _) = send_all(
            &client,
            &format!("http://{peer}/hook"),
            &bodies,
            args.concurrency,
            &pb,
        )
        .await?;
        pb.finish_and_clear();
        anyhow::Ok((
            wall,
            last.duration_since(first),
            Percentiles::of(&mut e2e),
            Percentiles::of(&mut answer),
            bare_wall,
        ))
    })?;
    let (wall, until_delivered, e2e, answer, bare_wall) = out;

    // Pending timers: conversations armed straight in the store, as messages arm them.
    let (timer_disk_bytes, timer_rss_bytes) = if args.timers > 0 {
        let db_size = || {
            ["webhooks.db", "webhooks.db-wal"]
                .iter()
                .map(|f| std::fs::metadata(dir.0.join(f)).map_or(0, |m| m.len()))
                .sum::<u64>()
        };
        let rss0 = rss_bytes("VmRSS");
        let ckpt = rusqlite::Connection::open(dir.0.join("webhooks.db"))?;
        ckpt.busy_timeout(Duration::from_secs(30))?;
        ckpt.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        drop(ckpt);
        let size0 = db_size();
        let pb = bar(show, args.timers, "timers");
        let due = leadstream_connectors::writer::now_ms() + 23 * 3_600_000;
        for start in (0..args.timers).step_by(50_000) {
            let end = (start + 50_000).min(args.timers);
            rt.block_on(domain.db().write(move |conn| {
                for i in start..end {
                    domain_store::put_conversation(
                        conn,
                        &ConversationKey {
                            org: ORG,
                            bot_integration_id: INTEGRATION + 1,
                            phone: format!("+1646{:07}", i),
                        },
                        &Conversation {
                            last_user_at_ms: Some(due - 23 * 3_600_000),
                            replied: true,
                            inactive_due_ms: Some(due + i as i64),
                            ..Conversation::default()
                        },
                    )?;
                }
                Ok(())
            }))?;
            pb.set_position(end as u64);
        }
        pb.finish_and_clear();
        // Checkpointed, so the file holds them.
        let ckpt = rusqlite::Connection::open(dir.0.join("webhooks.db"))?;
        ckpt.busy_timeout(Duration::from_secs(30))?;
        ckpt.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        let disk = (db_size().saturating_sub(size0)) as f64 / args.timers as f64;
        let rss = match (rss0, rss_bytes("VmRSS")) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a) as f64 / args.timers as f64),
            _ => None,
        };
        (Some(disk), rss)
    } else {
        (None, None)
    };

    let s = DomainSummary {
        machine: Machine::detect(args.tmp_dir.as_deref(), load_start),
        events: args.events,
        contacts: args.contacts,
        concurrency: args.concurrency,
        webhooks_per_sec: args.events as f64 / wall.as_secs_f64(),
        published_per_sec: args.events as f64 / until_delivered.as_secs_f64(),
        end_to_end_ms: e2e,
        webhook_ms: answer,
        bare_webhooks_per_sec: args.events as f64 / bare_wall.as_secs_f64(),
        ratio_of_bare: bare_wall.as_secs_f64() / wall.as_secs_f64(),
        timers: args.timers,
        timer_disk_bytes,
        timer_rss_bytes,
    };
    if args.json {
        println!("{}", serde_json::to_string(&s)?);
        return Ok(());
    }
    println!(
        "domain: {} WhatsApp webhooks from {} contacts, {} in flight",
        thousands(s.events),
        thousands(s.contacts),
        s.concurrency
    );
    println!(
        "  webhooks in          {} /s (answered 200, durable); p50 {:.1} ms, p99 {:.1} ms",
        thousands(s.webhooks_per_sec as usize),
        s.webhook_ms.p50,
        s.webhook_ms.p99
    );
    println!(
        "  incoming_message out {} /s delivered; end to end p50 {:.1} ms, p99 {:.1} ms",
        thousands(s.published_per_sec as usize),
        s.end_to_end_ms.p50,
        s.end_to_end_ms.p99
    );
    println!(
        "  bare signed 200      {} /s: the server is {:.2} of it",
        thousands(s.bare_webhooks_per_sec as usize),
        s.ratio_of_bare
    );
    if let (Some(d), r) = (s.timer_disk_bytes, s.timer_rss_bytes) {
        println!(
            "  pending timers       {}: {:.0} bytes on disk each, {} of memory each",
            thousands(s.timers),
            d,
            r.map_or("unknown".to_owned(), |r| format!("{r:.1} bytes"))
        );
    }
    Ok(())
}
