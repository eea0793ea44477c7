//! What a process opens from its configuration, in one place: `serve`, the admin
//! commands and the benches each call [`Services::open`], so which backend holds what
//! is decided once (the data dir's SQLite files, or the shared database of
//! `database.url`).
//!
//! It holds the state that lives in the shared database when one is configured: the
//! registry of organizations and credentials, and the webhook endpoints. The delivery
//! engine, campaigns and domain events are started by `serve` on top of these (their
//! state is still each process's `webhooks.db`; docs/architecture.md, "Running several
//! processes").

use crate::config::Config;
use crate::db::StateDb;
use crate::delivery::endpoints::Endpoints;
use crate::registry::Registry;
use anyhow::Context;
use std::sync::Arc;

/// Who opens the services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A long-running server: waits for the shared database at start-up, keeps what
    /// credential checks find (dropped on any change), follows other processes'
    /// endpoint changes and reports the pool to `/metrics`.
    Server,
    /// A one-shot command (the admin CLI): fails at once when the database cannot be
    /// reached, keeps nothing.
    Admin,
}

/// The services of one process.
pub struct Services {
    pub db: StateDb,
    pub registry: Arc<Registry>,
    /// The shared database's endpoint registry, for the delivery engine
    /// (`DeliveryEngine::start_with`); `None`: the engine keeps endpoints in its
    /// `webhooks.db`.
    pub endpoints: Option<Arc<Endpoints>>,
}

impl Services {
    /// Opens what `config` says, as `role` needs it. Call it on the runtime that will
    /// run the process (a server's listeners and reports run there).
    ///
    /// # Errors
    /// What opening the database or the registry failed with, naming where.
    pub async fn open(config: &Config, role: Role) -> anyhow::Result<Self> {
        // Before anything reads or writes a secret.
        let keyring =
            crate::secrets::Keyring::new(&config.secrets.key, &config.secrets.previous_keys)?;
        if role == Role::Server && !keyring.seals() {
            tracing::warn!("secrets.key (LEADSTREAM_SECRETS_KEY) is not set: endpoint signing secrets and WhatsApp app secrets are stored in clear. Make a key with `leadstream secrets new-key`, set it on every process, then run `leadstream secrets rotate`");
        }
        crate::secrets::install(keyring).map_err(anyhow::Error::msg)?;
        let db = match role {
            Role::Server => {
                // Before anything records a metric (the listeners do at once).
                crate::metrics::install();
                StateDb::open_waiting(config, |e, wait| {
                    tracing::warn!(
                        error = %e,
                        retry_in = ?wait,
                        "the shared database is unavailable; waiting for it. Start it, or fix database.url (LEADSTREAM_DATABASE_URL)"
                    );
                })
                .await?
            }
            Role::Admin => StateDb::open(config).await?,
        };
        crate::db::set_lease(config.database.lease);
        let opened = match role {
            Role::Server => Registry::open_cached(&db),
            Role::Admin => Registry::open(&db),
        };
        let registry =
            Arc::new(opened.with_context(|| format!("opening the registry in {}", db.describe()))?);
        let endpoints = match (&db, role) {
            (StateDb::Shared(pg), Role::Server) => {
                refuse_embedded_endpoints(&config.store.data_dir)?;
                pg.report_metrics();
                Some(
                    Endpoints::open_shared(pg.clone())
                        .await
                        .context("reading the webhook endpoints of the shared database")?,
                )
            }
            _ => None,
        };
        Ok(Self {
            db,
            registry,
            endpoints,
        })
    }
}

/// A data dir whose `webhooks.db` keeps endpoints of its own (it ran without
/// `database.url`; with it, endpoints are never written there) cannot be served with
/// the shared database: its pending deliveries, campaigns and trigger actions name
/// endpoints by ids the shared database numbers anew, so those ids would name other
/// endpoints there, possibly another org's. (The dispatcher also never sends a
/// delivery to an endpoint of another org.)
///
/// # Errors
/// When the data dir has such endpoints, saying what to do.
fn refuse_embedded_endpoints(data_dir: &std::path::Path) -> anyhow::Result<()> {
    let path = data_dir.join("webhooks.db");
    if !path.exists() {
        return Ok(());
    }
    let conn =
        rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .with_context(|| format!("reading {}", path.display()))?;
    let endpoints: i64 = match conn.query_row("SELECT count(*) FROM endpoints", [], |r| r.get(0)) {
        Err(rusqlite::Error::SqliteFailure(_, Some(m))) if m.starts_with("no such table") => 0,
        other => other.with_context(|| format!("reading {}", path.display()))?,
    };
    if endpoints > 0 {
        anyhow::bail!(
            "data dir {} has {endpoints} webhook endpoints of its own (it ran without database.url); with the shared database its deliveries, campaigns and actions would name other endpoints by their ids. Serve it without database.url until its deliveries are done, or give this process a new data dir (--data-dir) and create the endpoints again",
            data_dir.display()
        );
    }
    Ok(())
}
