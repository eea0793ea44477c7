//! `leadstream bench forward`: the latency a lead-events batch pays when the process
//! it is sent to does not own its leads' raw partition and hands the batch to the
//! owner (connectors/src/routing), against one process storing it itself.
//!
//! Both runs are real `leadstream serve` processes (this binary) on the same
//! ClickHouse, Postgres and Kafka, with a raw topic of one partition, so the owner is
//! one process: run 1 has one process and the batches go to it; run 2 has two, and
//! the batches go to the one that does not own the partition. Each run has its own
//! topic, group, ClickHouse database and Postgres schema, dropped at the end.

use super::{ms, progress, show_progress, BenchSchema, Counted, Percentiles};
use anyhow::{bail, Context};
use clap::Args;
use leadstream::synth;
use serde::Serialize;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Args, Debug, Clone)]
pub struct ForwardArgs {
    /// ClickHouse HTTP URL both runs store into (a database of their own each,
    /// dropped at the end).
    #[arg(long, env = "LEADSTREAM_BENCH_CLICKHOUSE_URL")]
    pub clickhouse_url: String,
    /// Postgres database both runs share their state in (a schema of their own each,
    /// dropped at the end; the user needs CREATE).
    #[arg(long, env = "LEADSTREAM_BENCH_DATABASE_URL")]
    pub database_url: String,
    /// Bootstrap brokers of a real Kafka cluster (topics named
    /// leadstream-bench-fwd-<pid>-*). Without it, a librdkafka mock cluster runs in
    /// this process and the servers connect to it.
    #[arg(long)]
    pub brokers: Option<String>,
    /// Batches sent to each run, one at a time.
    #[arg(long, default_value_t = 20)]
    pub batches: usize,
    /// Events per batch, 1 to 50000.
    #[arg(long, default_value_t = 50_000)]
    pub batch_size: usize,
    /// Seed of the synthetic data (the `bench ingest` mix).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Print the summary as one JSON object on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Run {
    name: &'static str,
    processes: usize,
    batches: usize,
    latency_ms: Percentiles,
    events_per_s: f64,
}

#[derive(Serialize)]
struct Summary {
    batch_size: usize,
    one_process: Run,
    through_non_owner: Run,
    /// p50 through the non-owner over p50 of one process.
    p50_ratio: f64,
}

/// Runs the bench.
///
/// # Errors
/// A server that does not start, a refused batch, or counts that disagree with the
/// generator.
pub fn run(args: &ForwardArgs) -> anyhow::Result<()> {
    if !(1..=50_000).contains(&args.batch_size) || args.batches == 0 {
        bail!("--batch-size must be 1 to 50000 and --batches at least 1");
    }
    let show = show_progress(args.json);
    let data = synth::generate(&synth::Config {
        events: args.batches * args.batch_size,
        batch_size: args.batch_size,
        seed: args.seed,
        dup_ratio: 0.10,
        bad_ratio: 0.01,
    });
    let mock = match args.brokers {
        None => {
            Some(rdkafka::mocking::MockCluster::new(1).context("starting the mock Kafka cluster")?)
        }
        Some(_) => None,
    };
    let brokers = match (&args.brokers, &mock) {
        (Some(b), _) => b.clone(),
        (None, Some(m)) => m.bootstrap_servers(),
        (None, None) => unreachable!(),
    };
    // The mock cluster makes no topics on request: each run's are made here.
    let make_topics = |topic: &str| -> anyhow::Result<()> {
        if let Some(m) = &mock {
            for suffix in TOPICS {
                m.create_topic(&format!("{topic}{suffix}"), 1, 1)
                    .context("creating a topic on the mock cluster")?;
            }
        }
        Ok(())
    };
    let one = measure(args, &data, &brokers, "one", 1, show, &make_topics)?;
    let two = measure(args, &data, &brokers, "two", 2, show, &make_topics)?;
    let summary = Summary {
        batch_size: args.batch_size,
        p50_ratio: two.latency_ms.p50 / one.latency_ms.p50,
        one_process: one,
        through_non_owner: two,
    };
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        println!(
            "{} batches of {} events, one at a time, each run on its own topic of one raw partition",
            args.batches, args.batch_size
        );
        println!(
            "{:<34} {:>9} {:>9} {:>9} {:>12}",
            "run", "p50 ms", "p99 ms", "max ms", "events/s"
        );
        for r in [&summary.one_process, &summary.through_non_owner] {
            println!(
                "{:<34} {:>9.1} {:>9.1} {:>9.1} {:>12.0}",
                r.name, r.latency_ms.p50, r.latency_ms.p99, r.latency_ms.max, r.events_per_s
            );
        }
        println!(
            "p50 through a non-owner / one process: {:.2}",
            summary.p50_ratio
        );
    }
    Ok(())
}

/// Posts `probe` to `s` until it is stored (503s while the partition finds its owner).
async fn send_probe(
    client: &reqwest::Client,
    s: &Server,
    key: &str,
    probe: &str,
    deadline: Instant,
) -> anyhow::Result<()> {
    loop {
        let r = client
            .post(format!("http://{}/api/v1/webhooks/lead-events", s.addr))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(probe.to_owned())
            .send()
            .await;
        if r.as_ref().is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the server on {} did not take a batch within 120 s: {:?}",
                s.addr,
                r.map(|r| r.status())
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The parts `s` handed to another process so far.
async fn forwarded(client: &reqwest::Client, s: &Server) -> anyhow::Result<f64> {
    let text = client
        .get(format!("http://{}/metrics", s.addr))
        .send()
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix("leadstream_lead_parts_total{route=\"forwarded\"}"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0))
}

/// The suffixes of a run's topics after its prefix.
const TOPICS: [&str; 5] = [
    ".raw",
    ".rejects",
    ".deliveries",
    ".deliveries-retry",
    ".domain-events",
];

/// A `leadstream serve` child and what it was given.
struct Server {
    child: Child,
    addr: String,
    dir: PathBuf,
}

impl Server {
    fn spawn(config: &str, dir: PathBuf) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let addr = format!("127.0.0.1:{port}");
        std::fs::create_dir_all(&dir)?;
        let file = dir.join("leadstream.toml");
        std::fs::write(
            &file,
            format!(
                "[http]\nlisten = \"{addr}\"\n[store]\ndata_dir = \"{}\"\n{config}",
                dir.join("data").display()
            ),
        )?;
        let log = std::fs::File::create(dir.join("serve.log"))?;
        let child = Command::new(std::env::current_exe()?)
            .arg("serve")
            .arg("--config")
            .arg(&file)
            .env("NO_COLOR", "1")
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .context("starting leadstream serve")?;
        Ok(Self { child, addr, dir })
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.join("serve.log")).unwrap_or_default()
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `processes` servers on a topic and ClickHouse database of their own, sends
/// every batch to one that does not own the partition (the only one, with one
/// process), and stops them.
fn measure(
    args: &ForwardArgs,
    data: &synth::Synth,
    brokers: &str,
    name: &'static str,
    processes: usize,
    show: bool,
    make_topics: &dyn Fn(&str) -> anyhow::Result<()>,
) -> anyhow::Result<Run> {
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let tmp = super::TempDir::new(None)?;
    let tag = format!("leadstream_bench_fwd_{}_{name}", std::process::id());
    let schema = rt.block_on(BenchSchema::create(&args.database_url))?;
    // The org and key, in the run's schema, before the servers start.
    let (services, key) =
        super::bench_services(&rt, &tmp.0.join("admin"), Some(&schema.url), synth::ORG)?;
    drop(services);
    let topic = tag.replace('_', "-");
    make_topics(&topic)?;
    let config = format!(
        "[database]\nurl = {db:?}\n[clickhouse]\nurl = {ch:?}\ndatabase = {tag:?}\n\
         [kafka]\nbrokers = {brokers:?}\ngroup_id = \"{topic}\"\npartitions = 1\n\
         raw_topic = \"{topic}.raw\"\nrejects_topic = \"{topic}.rejects\"\n\
         deliveries_topic = \"{topic}.deliveries\"\ndeliveries_retry_topic = \"{topic}.deliveries-retry\"\n\
         deliveries_group_id = \"{topic}-deliveries\"\ndomain_events_topic = \"{topic}.domain-events\"\n",
        db = schema.url,
        ch = args.clickhouse_url,
    );
    let mut servers = Vec::new();
    for i in 0..processes {
        servers.push(Server::spawn(&config, tmp.0.join(format!("p{i}")))?);
    }
    let result = rt.block_on(drive(args, data, &servers, &key, name, show));
    let logs: Vec<String> = servers.iter().map(Server::logs).collect();
    for s in servers {
        s.stop();
    }
    rt.block_on(async {
        let _ = reqwest::Client::new()
            .post(&args.clickhouse_url)
            .body(format!("DROP DATABASE IF EXISTS {tag}"))
            .send()
            .await;
        schema.drop_all().await
    })?;
    result.map_err(|e| {
        anyhow::anyhow!(
            "{e:#}\n--- server logs ---\n{}",
            logs.iter()
                .map(|l| l.lines().rev().take(15).collect::<Vec<_>>().join("\n"))
                .collect::<Vec<_>>()
                .join("\n---\n")
        )
    })
}

async fn drive(
    args: &ForwardArgs,
    data: &synth::Synth,
    servers: &[Server],
    key: &str,
    name: &'static str,
    show: bool,
) -> anyhow::Result<Run> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(300))
        .build()?;
    // Ready once a batch of a lead no bench batch has is stored: the partition has an
    // owner, warm, and every process has found it.
    let probe = format!(
        r#"{{"organizationId":{},"eventType":"bench_probe","events":[{{"phoneE164":"+15551230000","occurredAt":"2026-01-01T00:00:00Z"}}]}}"#,
        synth::ORG
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    // Every process in the group (the last to join has its assignment), so no
    // rebalance comes during the measurement.
    for s in servers {
        while !s.logs().contains("group assignment received") {
            if Instant::now() > deadline {
                bail!(
                    "the server on {} joined no consumer group within 120 s",
                    s.addr
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // The non-owner: the process whose forwarded-parts counter its probe moves.
    let mut target = None;
    for s in servers {
        let before = forwarded(&client, s).await?;
        send_probe(&client, s, key, &probe, deadline).await?;
        if forwarded(&client, s).await? > before {
            target = Some(s);
        }
    }
    let target = match servers {
        [only] => only,
        _ => target.context("no process handed its probe to the owner")?,
    };
    let url = format!("http://{}/api/v1/webhooks/lead-events", target.addr);
    let pb = progress(show, data.batches.len() * args.batch_size, name);
    let mut latencies = Vec::with_capacity(data.batches.len());
    let mut got = Counted::default();
    let t = Instant::now();
    for (i, b) in data.batches.iter().enumerate() {
        let started = Instant::now();
        let r = client
            .post(&url)
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(b.body.clone())
            .send()
            .await
            .with_context(|| format!("POST batch {i}"))?;
        let status = r.status();
        let bytes = r.bytes().await?;
        latencies.push(ms(started.elapsed()));
        if !status.is_success() {
            bail!(
                "batch {i}: HTTP {status}: {}",
                String::from_utf8_lossy(&bytes)
            );
        }
        let a: super::Accepted = serde_json::from_slice(&bytes)?;
        got.add(a.received, a.inserted, a.duplicates, a.rejected);
        pb.inc(a.received as u64);
    }
    let wall = t.elapsed();
    pb.finish_and_clear();
    let mismatches = got.mismatches(&data.totals);
    if !mismatches.is_empty() {
        bail!(
            "counts disagree with the generator: {}",
            mismatches.join("; ")
        );
    }
    Ok(Run {
        name: if servers.len() == 1 {
            "one process (owner)"
        } else {
            "two processes, through the non-owner"
        },
        processes: servers.len(),
        batches: data.batches.len(),
        events_per_s: got.received as f64 / wall.as_secs_f64(),
        latency_ms: Percentiles::of(&mut latencies),
    })
}
