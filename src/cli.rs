//! Command-line interface: `serve`, the admin commands and `bench`.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use leadstream_connectors::clickhouse::ClickHouseStore;
use leadstream_connectors::config::{ClickHouseConfig, Config};
use leadstream_connectors::http::AppState;
use leadstream_connectors::kafka::{ClickHouseWarmer, PartitionWarmer, WarmedAtStartup};
use leadstream_connectors::registry::{KeyInfo, RegistryError};
use leadstream_connectors::{AuthMode, Ingestor, KeyKind, Registry};
use leadstream_pipeline::{Ingest, OrgId, PhoneNormalizer};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// leadstream: a stream pipeline for lead events and the webhooks that follow them.
///
/// With no configuration it runs on one machine, storing everything under --data-dir.
#[derive(Parser, Debug)]
#[command(name = "leadstream", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Directory for the embedded store (events.db, leadstream.db). Created if missing.
    /// [default: ./data, or store.data_dir of --config]
    #[arg(long, global = true, env = "LEADSTREAM_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// TOML config file overriding the embedded defaults (see `leadstream config print`).
    #[arg(long, global = true, env = "LEADSTREAM_CONFIG")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the HTTP API (POST /api/v1/webhooks/lead-events, /healthz, /readyz).
    Serve(ServeArgs),
    /// Manage organizations and how they authenticate.
    #[command(subcommand)]
    Org(OrgCmd),
    /// Manage API keys (Authorization: Bearer), for organizations in api-key mode.
    #[command(subcommand, name = "api-key")]
    ApiKey(KeyCmd),
    /// Manage HMAC signing keys (X-Setter-Signature), for organizations in hmac mode.
    #[command(subcommand, name = "signing-key")]
    SigningKey(KeyCmd),
    /// Show the configuration.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Measure throughput and latency end to end.
    #[command(subcommand)]
    Bench(crate::bench::BenchCmd),
}

#[derive(Subcommand, Debug)]
pub enum ConfigCmd {
    /// Print the effective configuration (defaults, --config file, env, flags), secrets masked.
    Print,
    /// Print the annotated default configuration, a starting point for --config.
    Default,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on. [default: 127.0.0.1:8080, or http.listen of --config]
    #[arg(long, env = "LEADSTREAM_LISTEN")]
    pub listen: Option<SocketAddr>,
}

#[derive(Subcommand, Debug)]
pub enum OrgCmd {
    /// Create an organization (auth mode api-key).
    Create {
        /// Organization id, as sent in `organizationId`.
        #[arg(long)]
        id: OrgId,
        /// Display name.
        #[arg(long)]
        name: String,
    },
    /// List organizations.
    List,
    /// Choose how an organization authenticates lead events.
    SetAuth {
        #[arg(long)]
        org: OrgId,
        /// `api-key` (Authorization: Bearer) or `hmac` (X-Setter-Signature).
        #[arg(long, value_parser = ["api-key", "hmac"])]
        mode: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeyCmd {
    /// Issue a new key; earlier keys stay active. The key is printed once, alone on the last line.
    Create {
        #[arg(long)]
        org: OrgId,
    },
    /// List an organization's keys (prefix only), newest first.
    List {
        #[arg(long)]
        org: OrgId,
    },
    /// Revoke a key by id (see `list`); a running server refuses it from the next request.
    Revoke {
        #[arg(long)]
        org: OrgId,
        #[arg(long)]
        id: i64,
    },
}

/// Runs a parsed command line.
///
/// # Errors
/// Whatever the command fails with, with context.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let mut config = Config::load(cli.config.as_deref(), |k| std::env::var(k).ok())
        .context("loading the configuration")?;
    if let Some(dir) = cli.data_dir {
        config.store.data_dir = dir;
    }
    if let Command::Serve(ServeArgs { listen: Some(addr) }) = &cli.command {
        config.http.listen = *addr;
    }
    let data_dir = config.store.data_dir.clone();
    match cli.command {
        Command::Serve(_) => serve(Arc::new(config)),
        Command::Org(cmd) => org(&open_registry(&data_dir)?, cmd),
        Command::ApiKey(cmd) => keys(&open_registry(&data_dir)?, KeyKind::ApiKey, cmd),
        Command::SigningKey(cmd) => keys(&open_registry(&data_dir)?, KeyKind::SigningKey, cmd),
        Command::Config(ConfigCmd::Print) => {
            print!("{}", config.to_masked_toml());
            Ok(())
        }
        Command::Config(ConfigCmd::Default) => {
            print!("{}", leadstream_connectors::config::DEFAULT_TOML);
            Ok(())
        }
        Command::Bench(cmd) => crate::bench::run(cmd),
    }
}

fn ensure_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating data dir {}", dir.display()))
}

fn open_registry(dir: &Path) -> anyhow::Result<Registry> {
    ensure_dir(dir)?;
    Registry::open(dir).with_context(|| format!("opening the registry in {}", dir.display()))
}

fn org(reg: &Registry, cmd: OrgCmd) -> anyhow::Result<()> {
    match cmd {
        OrgCmd::Create { id, name } => {
            let o = reg.create_org(id, &name)?;
            println!(
                "created organization {} ({}), auth mode {}",
                o.id, o.name, o.auth_mode
            );
            println!("next: leadstream api-key create --org {}", o.id);
        }
        OrgCmd::List => {
            let orgs = reg.orgs()?;
            if orgs.is_empty() {
                println!(
                    "no organizations; create one with `leadstream org create --id 42 --name acme`"
                );
            }
            for o in orgs {
                println!("{}\t{}\t{}", o.id, o.name, o.auth_mode);
            }
        }
        OrgCmd::SetAuth { org, mode } => {
            let mode = AuthMode::parse(&mode)?;
            reg.set_auth_mode(org, mode)?;
            println!(
                "organization {org} now authenticates with {}",
                mode.as_str()
            );
        }
    }
    Ok(())
}

fn keys(reg: &Registry, kind: KeyKind, cmd: KeyCmd) -> anyhow::Result<()> {
    let noun = match kind {
        KeyKind::ApiKey => "API key",
        KeyKind::SigningKey => "signing key",
    };
    match cmd {
        KeyCmd::Create { org } => {
            let k = reg.issue(org, kind)?;
            let mode = reg.auth_mode(org)?;
            println!(
                "created {noun} {} for organization {org}; it is shown only this once:",
                k.id
            );
            match (kind, mode) {
                (KeyKind::SigningKey, Some(AuthMode::ApiKey)) => {
                    eprintln!("note: organization {org} is in api-key mode; `leadstream org set-auth --org {org} --mode hmac` to use signing keys")
                }
                (KeyKind::ApiKey, Some(AuthMode::Hmac)) => {
                    eprintln!("note: organization {org} is in hmac mode; `leadstream org set-auth --org {org} --mode api-key` to use API keys")
                }
                _ => {}
            }
            println!("{}", k.secret);
        }
        KeyCmd::List { org } => {
            let list = reg.keys(org, kind)?;
            if list.is_empty() {
                println!("no {noun}s for organization {org}");
            }
            for KeyInfo {
                id,
                prefix,
                revoked_at_ms,
                created_at_ms,
                ..
            } in list
            {
                let state = if revoked_at_ms.is_some() {
                    "revoked"
                } else {
                    "active"
                };
                println!(
                    "{id}\t{prefix}…\t{state}\tcreated {}",
                    leadstream_pipeline::time::format_rfc3339_ms(created_at_ms)
                );
            }
        }
        KeyCmd::Revoke { org, id } => match reg.revoke(org, kind, id) {
            Ok(()) => println!("revoked {noun} {id} of organization {org}"),
            Err(e @ RegistryError::NoSuchKey { .. }) => return Err(e.into()),
            Err(e) => return Err(e).context("revoking"),
        },
    }
    Ok(())
}

fn serve(config: Arc<Config>) -> anyhow::Result<()> {
    init_tracing();
    let data_dir = &config.store.data_dir;
    ensure_dir(data_dir)?;
    let registry = Arc::new(open_registry(data_dir)?);
    // Phone metadata loads here, not on the first request.
    let normalizer = PhoneNormalizer::new();
    let ingestor = if config.clickhouse.enabled() {
        Ingestor::with_store(
            Box::new(connect_clickhouse(&config.clickhouse)?),
            config.store.shards,
        )
    } else {
        Ingestor::start(data_dir, config.store.shards).context("opening the event store")?
    };
    // Several processes may share the group and the ClickHouse: newly assigned raw
    // partitions are warmed from it, over a second connection. The embedded store is
    // per process, so there the start-up warm-up covers every partition.
    let warmer: Box<dyn PartitionWarmer> = if config.clickhouse.enabled() && config.kafka.enabled()
    {
        Box::new(ClickHouseWarmer::new(
            connect_clickhouse(&config.clickhouse)?,
            ingestor.clone(),
            &config.clickhouse,
        ))
    } else {
        Box::new(WarmedAtStartup(ingestor.clone()))
    };
    let state = AppState {
        registry: registry.clone(),
        ingestor,
        ingest: Ingest::new(normalizer),
    };
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let listen = config.http.listen;
    let cfg = config.clone();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen} (in use? pass --listen 127.0.0.1:PORT)"))?;
        let addr = listener.local_addr()?;
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let kafka = start_kafka(&cfg, &state, warmer, stopping).await?;
        print_banner(addr, data_dir, &registry);
        let served = leadstream_connectors::http::run(listener, state, async move {
            shutdown_signal().await;
            let _ = stop.send(true);
        })
        .await
        .context("HTTP server");
        // The consumer stops on the signal, or when `stop` is dropped with a failed server.
        if let Some(task) = kafka {
            stop_kafka(task).await;
        }
        served
    })
}

type KafkaTask = tokio::task::JoinHandle<()>;

/// With `kafka.brokers` set: creates the topics when missing and starts the raw-topic
/// consumer on the same writer and pipeline as HTTP. HTTP ingest keeps going straight
/// to the writer, so its counts stay exact (docs/architecture.md, "Kafka backend").
/// `warmer` readies the index for partitions assigned to this process.
async fn start_kafka(
    config: &Config,
    state: &AppState,
    warmer: Box<dyn PartitionWarmer>,
    stopping: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Option<KafkaTask>> {
    use leadstream_connectors::kafka::{ensure_topics, Failpoint, RawSource};
    if !config.kafka.enabled() {
        return Ok(None);
    }
    let brokers = config.kafka.brokers.trim();
    tracing::info!(brokers, "connecting to Kafka");
    let topics = ensure_topics(&config.kafka).await.with_context(|| {
        format!("preparing the Kafka topics on {brokers} (is Kafka up? set kafka.brokers / LEADSTREAM_KAFKA_BROKERS, or leave it empty to run without Kafka)")
    })?;
    // Test-only crash points (tests/it/kafka.rs); see Failpoint.
    let failpoint = std::env::var("LEADSTREAM_FAILPOINT")
        .ok()
        .and_then(|v| Failpoint::parse(&v));
    if let Some(f) = failpoint {
        tracing::warn!(failpoint = ?f, "test failpoint armed: this process will abort on purpose");
    }
    let source = RawSource::with_warmer(
        config,
        &topics,
        state.ingestor.clone(),
        state.ingest.clone(),
        failpoint,
        warmer,
    )
    .context("starting the Kafka consumer")?;
    Ok(Some(tokio::spawn(async move {
        // Said at once: HTTP goes on without the consumer.
        if let Err(e) = source.run(stopping).await {
            tracing::error!(error = %e, "Kafka consumer failed; lead events are not read from Kafka");
        }
    })))
}

/// Waits (bounded) for the consumer to finish its batch, commit and leave the group.
async fn stop_kafka(task: KafkaTask) {
    match tokio::time::timeout(std::time::Duration::from_secs(30), task).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "Kafka consumer task panicked"),
        Err(_) => tracing::warn!("Kafka consumer still stopping after 30 s; exiting without it (uncommitted records are read again)"),
    }
}

/// Connects to ClickHouse, waiting with backoff (clickhouse.retry_initial doubling up
/// to retry_max) while it cannot be reached, and saying so each time.
fn connect_clickhouse(cfg: &ClickHouseConfig) -> anyhow::Result<ClickHouseStore> {
    let url = leadstream_connectors::clickhouse::display_url(&cfg.url);
    ClickHouseStore::connect_with_backoff(cfg, |e, wait| {
        tracing::warn!(
            %url,
            error = %e,
            retry_in = ?wait,
            "ClickHouse is unavailable; waiting for it. Start it, fix clickhouse.url (LEADSTREAM_CLICKHOUSE_URL), or unset it to keep events in the embedded store"
        );
    })
    .with_context(|| format!("setting up the ClickHouse event store at {url}, database {}", cfg.database))
}

fn print_banner(addr: SocketAddr, data_dir: &Path, registry: &Registry) {
    println!(
        "leadstream listening on http://{addr} (data dir {})",
        data_dir.display()
    );
    let d = data_dir.display();
    if registry.orgs().map(|o| o.is_empty()).unwrap_or(true) {
        println!("no organizations yet; in another terminal:");
        println!("  leadstream --data-dir {d} org create --id 42 --name acme");
    }
    println!("  KEY=$(leadstream --data-dir {d} api-key create --org 42 | tail -n1)");
    println!(
        "  curl -sS -X POST http://{addr}/api/v1/webhooks/lead-events -H \"Authorization: Bearer $KEY\" -H 'Content-Type: application/json' \\\n    -d '{{\"organizationId\":42,\"eventType\":\"mastery_purchase\",\"events\":[{{\"phoneE164\":\"+15551234567\",\"occurredAt\":\"2026-05-12T18:34:00Z\",\"metadata\":{{\"orderId\":\"ord_9F2\",\"amountUsd\":297}}}}]}}'"
    );
    use std::io::Write;
    let _ = std::io::stdout().flush();
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LEADSTREAM_LOG")
        .unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = term => {} }
    tracing::info!("shutting down: finishing in-flight requests");
}
