//! Command-line interface: `serve`, the admin commands and `bench`.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use leadstream_connectors::api::AppState;
use leadstream_connectors::campaigns::Campaigns;
use leadstream_connectors::clickhouse::{ClickHouseStore, ClickHouseWarmer};
use leadstream_connectors::config::{ClickHouseConfig, Config, RetryConfig};
use leadstream_connectors::db::StateDb;
use leadstream_connectors::delivery::DeliveryEngine;
use leadstream_connectors::kafka::{PartitionWarmer, WarmedAtStartup};
use leadstream_connectors::registry::{IssuedKey, KeyInfo, Org, RegistryError, Scope};
use leadstream_connectors::routing::{LeadRouter, RoutingWarmer};
use leadstream_connectors::services::{Role, Services};
use leadstream_connectors::{AuthMode, EventWriter, KeyKind, Registry};
use leadstream_pipeline::{OrgId, PhoneNormalizer, Preparer};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::TcpListener;

/// leadstream: a stream pipeline for lead events and the webhooks that follow them.
///
/// With no configuration it runs on one machine, storing everything under --data-dir.
/// The admin commands (org, api-key, signing-key) work on the same data dir as a
/// running server, which sees their changes on its next request.
#[derive(Parser, Debug)]
#[command(
    name = "leadstream",
    version,
    about,
    propagate_version = true,
    after_help = "Examples:
  leadstream --data-dir /var/lib/leadstream serve --listen localhost:8080
  leadstream --data-dir /var/lib/leadstream org create --id 42 --name acme
  leadstream --data-dir /var/lib/leadstream api-key create --org 42

The HTTP API is described in docs/api.md."
)]
pub struct Cli {
    /// Directory for the embedded store (events.db, leadstream.db, webhooks.db). Created if missing.
    /// [default: ./data, or store.data_dir of --config]
    #[arg(long, global = true, env = "LEADSTREAM_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Shared Postgres database, postgres://user:password@host:5432/db (database.url).
    /// Set, organizations and keys live there for every process and admin command
    /// given the same URL; unset, in the data dir's leadstream.db.
    #[arg(
        long,
        global = true,
        env = "LEADSTREAM_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,

    /// TOML config file overriding the embedded defaults (see `leadstream config default`).
    #[arg(long, global = true, env = "LEADSTREAM_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server: lead-events ingest, the webhook registry and delivery engine, /metrics.
    ///
    /// One server per data dir: `serve` locks <data dir>/serve.lock for as long as it
    /// runs, and a second `serve` on the same data dir exits at once, naming the
    /// running one. The admin commands do not take the lock.
    #[command(after_help = "Examples:
  leadstream --data-dir ./data serve
  leadstream --data-dir /var/lib/leadstream serve --listen 0.0.0.0:8080
  LEADSTREAM_LISTEN=localhost:8082 leadstream serve")]
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
    /// Manage the keys that seal endpoint and WhatsApp secrets at rest.
    #[command(subcommand)]
    Secrets(SecretsCmd),
    /// Measure throughput and latency end to end.
    #[command(subcommand)]
    Bench(crate::bench::BenchCmd),
}

#[derive(Subcommand, Debug)]
pub enum SecretsCmd {
    /// Print a fresh key for secrets.key (LEADSTREAM_SECRETS_KEY): 32 random bytes, base64.
    NewKey,
    /// Store every endpoint signing secret and WhatsApp app secret again, sealed under
    /// secrets.key (values sealed with a key of secrets.previous_keys, or stored in clear
    /// before a key was set), and hash WhatsApp verify tokens stored in clear. Run it
    /// against the data dir (stop the server first) or the shared database (the servers
    /// may run; give them the new key and the old one first). Safe to run again.
    #[command(
        after_help = "Rotation:\n  1. LEADSTREAM_SECRETS_KEY=<new> LEADSTREAM_SECRETS_PREVIOUS_KEYS=<old> on every process, restart them\n  2. LEADSTREAM_SECRETS_KEY=<new> LEADSTREAM_SECRETS_PREVIOUS_KEYS=<old> leadstream secrets rotate\n  3. drop LEADSTREAM_SECRETS_PREVIOUS_KEYS, restart"
    )]
    Rotate,
}

#[derive(Subcommand, Debug)]
pub enum ConfigCmd {
    /// Print the effective configuration (defaults, --config file, env, flags), secrets masked.
    Print,
    /// Print the annotated default configuration, a starting point for --config.
    #[command(
        after_help = "Example:\n  leadstream config default > leadstream.toml && leadstream --config leadstream.toml serve"
    )]
    Default,
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on, HOST:PORT: an IP address (127.0.0.1:8080, [::1]:8080,
    /// 0.0.0.0:8080 for every interface) or a host name (localhost:8082), bound on
    /// each address it resolves to. Port 0 picks a free port, shown in the banner.
    /// [default: 127.0.0.1:8080, or http.listen of --config]
    #[arg(long, env = "LEADSTREAM_LISTEN", value_name = "HOST:PORT", value_parser = parse_listen)]
    pub listen: Option<String>,
}

fn parse_listen(s: &str) -> Result<String, String> {
    leadstream_connectors::config::check_listen(s)?;
    Ok(s.to_owned())
}

#[derive(Subcommand, Debug)]
pub enum OrgCmd {
    /// Create an organization (auth mode api-key).
    #[command(after_help = "Example:\n  leadstream org create --id 42 --name acme")]
    Create {
        /// Organization id, as sent in `organizationId` (an integer).
        #[arg(long)]
        id: OrgId,
        /// Display name, shown by `org list`.
        #[arg(long)]
        name: String,
    },
    /// List organizations: id, name and auth mode.
    List,
    /// Choose how an organization authenticates lead events.
    ///
    /// In api-key mode (the default) requests carry `Authorization: Bearer <api key>`;
    /// in hmac mode they carry `X-Setter-Signature: sha256=<hex>`, the HMAC-SHA256 of
    /// the raw body under an active signing key. Only the chosen kind of credential
    /// is accepted; the other kind's keys stay, unused, until switched back.
    #[command(after_help = "Examples:
  leadstream org set-auth --org 42 --mode hmac
  leadstream signing-key create --org 42")]
    SetAuth {
        /// Organization id.
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
    #[command(
        after_help = "Example:\n  KEY=$(leadstream api-key create --org 42 | tail -n1)\n  READER=$(leadstream api-key create --org 42 --scope read | tail -n1)"
    )]
    Create {
        /// Organization id the key is for.
        #[arg(long)]
        org: OrgId,
        /// API keys only: what the key may do. `admin`: everything. `read`: list and
        /// view, never change anything or see a signing secret. `ingest`: only send
        /// lead events and domain events. Other calls answer 403.
        #[arg(long, value_parser = ["read", "ingest", "admin"])]
        scope: Option<String>,
    },
    /// List an organization's keys (prefix only), newest first.
    List {
        /// Organization id.
        #[arg(long)]
        org: OrgId,
    },
    /// Revoke a key by id (see `list`); a running server refuses it from the next request.
    #[command(after_help = "Example:\n  leadstream api-key revoke --org 42 --id 3")]
    Revoke {
        /// Organization id the key belongs to.
        #[arg(long)]
        org: OrgId,
        /// Key id: the ID column of `list` (not the key itself).
        #[arg(long)]
        id: i64,
    },
}

/// Runs a parsed command line.
///
/// # Errors
/// Whatever the command fails with, with context.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    // --database-url (or its env) goes through the config's own checks, as the env would.
    let mut config = Config::load(cli.config.as_deref(), |k| match k {
        "LEADSTREAM_DATABASE_URL" => cli.database_url.clone(),
        _ => std::env::var(k).ok(),
    })
    .context("loading the configuration")?;
    if let Some(dir) = &cli.data_dir {
        config.store.data_dir = dir.clone();
    }
    if let Command::Serve(ServeArgs { listen: Some(addr) }) = &cli.command {
        config.http.listen = addr.clone();
    }
    let admin = Admin::new(&config);
    match cli.command {
        Command::Serve(_) => serve(Arc::new(config)),
        Command::Org(cmd) => admin.org(cmd),
        Command::ApiKey(cmd) => admin.keys(KeyKind::ApiKey, cmd),
        Command::SigningKey(cmd) => admin.keys(KeyKind::SigningKey, cmd),
        Command::Config(ConfigCmd::Print) => {
            print!("{}", config.to_masked_toml());
            Ok(())
        }
        Command::Config(ConfigCmd::Default) => {
            print!("{}", leadstream_connectors::config::DEFAULT_TOML);
            Ok(())
        }
        Command::Secrets(SecretsCmd::NewKey) => {
            println!("{}", leadstream_connectors::secrets::new_key());
            Ok(())
        }
        Command::Secrets(SecretsCmd::Rotate) => rotate_secrets(&config),
        Command::Bench(cmd) => crate::bench::run(cmd),
    }
}

/// `leadstream secrets rotate`.
fn rotate_secrets(config: &Config) -> anyhow::Result<()> {
    use leadstream_connectors::delivery::store::Db;
    if config.secrets.key.trim().is_empty() {
        anyhow::bail!("secrets.key (LEADSTREAM_SECRETS_KEY) is not set: there is no key to seal under. Make one with `leadstream secrets new-key`");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let services = rt.block_on(Services::open(config, Role::Admin))?;
    let db = match &services.db {
        StateDb::Shared(pg) => Db::open_shared(pg),
        StateDb::Embedded(dir) => Db::open(dir),
    }
    .with_context(|| format!("opening the webhook store in {}", services.db.describe()))?;
    let done = rt
        .block_on(
            db.write(|conn| leadstream_connectors::secrets::reseal_all(conn).map_err(Into::into)),
        )
        .context("sealing the stored secrets under secrets.key (nothing was changed)")?;
    println!(
        "sealed under the current key: {} endpoint secrets, {} WhatsApp app secrets; hashed {} verify tokens; everything else was current",
        done.endpoint_secrets, done.app_secrets, done.verify_tokens
    );
    Ok(())
}

fn ensure_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating data dir {}", dir.display()))
}

/// The registry of `config` (the data dir's, or the shared database's) for the admin
/// commands, which are not async: each call runs to its end on a runtime of its own.
struct BlockingRegistry {
    rt: tokio::runtime::Runtime,
    reg: Arc<Registry>,
}

impl BlockingRegistry {
    fn open(config: &Config) -> anyhow::Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        let services = rt.block_on(Services::open(config, Role::Admin))?;
        Ok(Self {
            rt,
            reg: services.registry,
        })
    }
    fn orgs(&self) -> Result<Vec<Org>, RegistryError> {
        self.rt.block_on(self.reg.orgs())
    }
    fn create_org(&self, id: OrgId, name: &str) -> Result<Org, RegistryError> {
        self.rt.block_on(self.reg.create_org(id, name))
    }
    fn auth_mode(&self, org: OrgId) -> Result<Option<AuthMode>, RegistryError> {
        self.rt.block_on(self.reg.auth_mode(org))
    }
    fn set_auth_mode(&self, org: OrgId, mode: AuthMode) -> Result<(), RegistryError> {
        self.rt.block_on(self.reg.set_auth_mode(org, mode))
    }
    fn issue(&self, org: OrgId, kind: KeyKind, scope: Scope) -> Result<IssuedKey, RegistryError> {
        self.rt.block_on(self.reg.issue_scoped(org, kind, scope))
    }
    fn keys(&self, org: OrgId, kind: KeyKind) -> Result<Vec<KeyInfo>, RegistryError> {
        self.rt.block_on(self.reg.keys(org, kind))
    }
    fn revoke(&self, org: OrgId, kind: KeyKind, id: i64) -> Result<(), RegistryError> {
        self.rt.block_on(self.reg.revoke(org, kind, id))
    }
}

/// Quotes `s` for a POSIX shell when it needs it, so printed commands paste as they are.
fn shell_quote(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+=:,@%".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Lines of `rows` under `header`, each column as wide as its widest cell, two spaces
/// apart, no trailing blanks.
fn table<const N: usize>(header: [&str; N], rows: &[[String; N]]) -> String {
    let mut width = header.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in width.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: [&str; N]| {
        let mut l = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i > 0 {
                l.push_str("  ");
            }
            l.push_str(cell);
            l.extend(std::iter::repeat_n(' ', width[i] - cell.chars().count()));
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header);
    for row in rows {
        line(row.each_ref().map(String::as_str));
    }
    out
}

/// The admin commands: the registry of the configuration (a data dir, or the shared
/// database), and how to name it in the commands they suggest.
struct Admin {
    config: Config,
    /// "data dir DIR" or "database postgres://user:********@host/db".
    location: String,
    /// `leadstream` plus `--data-dir DIR` (or `--database-url URL`) when that is neither
    /// the default nor from the environment (which the next command sees as well).
    prog: String,
}

impl Admin {
    fn new(config: &Config) -> Self {
        let data_dir = &config.store.data_dir;
        let (location, prog) = if config.database.enabled() {
            let url = &config.database.url;
            let from_env = std::env::var("LEADSTREAM_DATABASE_URL").is_ok_and(|v| v.trim() == url);
            let location = format!(
                "database {}",
                leadstream_connectors::config::mask_url_password(url)
            );
            let prog = if from_env {
                "leadstream".to_owned()
            } else {
                format!("leadstream --database-url {}", shell_quote(url))
            };
            (location, prog)
        } else {
            let from_env =
                std::env::var_os("LEADSTREAM_DATA_DIR").is_some_and(|v| Path::new(&v) == data_dir);
            let prog = if from_env || data_dir == Path::new("./data") {
                "leadstream".to_owned()
            } else {
                format!(
                    "leadstream --data-dir {}",
                    shell_quote(&data_dir.to_string_lossy())
                )
            };
            (format!("data dir {}", data_dir.display()), prog)
        };
        Self {
            config: config.clone(),
            location,
            prog,
        }
    }

    /// A command line to suggest: `leadstream [--data-dir DIR] args`.
    fn cmd(&self, args: &str) -> String {
        format!("{} {args}", self.prog)
    }

    fn registry(&self) -> anyhow::Result<BlockingRegistry> {
        BlockingRegistry::open(&self.config)
    }

    /// "no organization N", with the organizations there are, or a hint that the data
    /// dir may be the wrong one when it has none.
    fn no_such_org(&self, reg: &BlockingRegistry, org: OrgId) -> anyhow::Error {
        let create = self.cmd(&format!("org create --id {org} --name NAME"));
        let dir = &self.location;
        match reg.orgs() {
            Ok(orgs) if orgs.is_empty() => anyhow::anyhow!(
                "no organization {org}: {dir} has no organizations at all. Is --data-dir (or LEADSTREAM_DATA_DIR), or --database-url (LEADSTREAM_DATABASE_URL), the one the server uses? To create it: `{create}`"
            ),
            Ok(orgs) => {
                let ids: Vec<String> = orgs.iter().map(|o| o.id.to_string()).collect();
                anyhow::anyhow!(
                    "no organization {org} in {dir}, which has organizations {}; pick one of those, or create it with `{create}`",
                    ids.join(", ")
                )
            }
            Err(_) => anyhow::anyhow!("no organization {org} in {dir}; create it with `{create}`"),
        }
    }

    /// Turns a registry error into what the user reads.
    fn explain(&self, reg: &BlockingRegistry, e: RegistryError) -> anyhow::Error {
        match e {
            RegistryError::NoSuchOrg(org) => self.no_such_org(reg, org),
            e => anyhow::Error::new(e).context(format!("registry in {}", self.location)),
        }
    }

    fn org(&self, cmd: OrgCmd) -> anyhow::Result<()> {
        let reg = self.registry()?;
        match cmd {
            OrgCmd::Create { id, name } => {
                if name.trim().is_empty() {
                    anyhow::bail!(
                        "--name is empty; give the organization a display name, e.g. --name acme"
                    );
                }
                let o = match reg.create_org(id, &name) {
                    Ok(o) => o,
                    Err(RegistryError::OrgExists(id)) => {
                        let existing = reg
                            .orgs()
                            .ok()
                            .and_then(|all| all.into_iter().find(|o| o.id == id));
                        let what = existing
                            .map(|o| format!(" (named {:?}, auth mode {})", o.name, o.auth_mode))
                            .unwrap_or_default();
                        anyhow::bail!(
                            "organization {id} already exists{what}; nothing changed. Pick another --id, or see `{}`",
                            self.cmd("org list")
                        );
                    }
                    Err(e) => return Err(self.explain(&reg, e)),
                };
                println!(
                    "created organization {} ({}), auth mode {}",
                    o.id, o.name, o.auth_mode
                );
                println!(
                    "next: {}",
                    self.cmd(&format!("api-key create --org {}", o.id))
                );
            }
            OrgCmd::List => {
                let orgs = reg.orgs().map_err(|e| self.explain(&reg, e))?;
                if orgs.is_empty() {
                    println!(
                        "no organizations in {}; create one with `{}`",
                        self.location,
                        self.cmd("org create --id 42 --name acme")
                    );
                    return Ok(());
                }
                let rows: Vec<[String; 3]> = orgs
                    .into_iter()
                    .map(|o| [o.id.to_string(), o.name, o.auth_mode.to_string()])
                    .collect();
                print!("{}", table(["ID", "NAME", "AUTH"], &rows));
            }
            OrgCmd::SetAuth { org, mode } => {
                let mode = AuthMode::parse(&mode)?;
                let Some(before) = reg.auth_mode(org).map_err(|e| self.explain(&reg, e))? else {
                    return Err(self.no_such_org(&reg, org));
                };
                reg.set_auth_mode(org, mode)
                    .map_err(|e| self.explain(&reg, e))?;
                let (kind, noun, other) = match mode {
                    AuthMode::Hmac => (
                        KeyKind::SigningKey,
                        "signing key",
                        "API keys (Authorization: Bearer)",
                    ),
                    AuthMode::ApiKey => (
                        KeyKind::ApiKey,
                        "API key",
                        "signatures (X-Setter-Signature)",
                    ),
                };
                if before == mode {
                    println!(
                        "organization {org} already authenticates with {}; nothing changed",
                        mode.as_str()
                    );
                } else {
                    println!(
                        "organization {org} now authenticates with {} (was {})",
                        mode.as_str(),
                        before.as_str()
                    );
                    println!("{other} are refused for it from the next request; its keys of that kind stay, unused, until you switch back");
                }
                match mode {
                    AuthMode::Hmac => println!("requests must carry X-Setter-Signature: sha256=<hex HMAC-SHA256 of the raw body> under an active signing key"),
                    AuthMode::ApiKey => println!("requests must carry Authorization: Bearer <api key> with an active API key"),
                }
                let active = reg
                    .keys(org, kind)
                    .map_err(|e| self.explain(&reg, e))?
                    .iter()
                    .filter(|k| k.revoked_at_ms.is_none())
                    .count();
                let create = self.cmd(&format!("{} create --org {org}", kind_arg(kind)));
                match active {
                    0 => println!("it has no active {noun} yet, so every request is refused until you create one: `{create}`"),
                    1 => println!("it has 1 active {noun} (`{}`)", self.cmd(&format!("{} list --org {org}", kind_arg(kind)))),
                    n => println!("it has {n} active {noun}s (`{}`)", self.cmd(&format!("{} list --org {org}", kind_arg(kind)))),
                }
            }
        }
        Ok(())
    }

    fn keys(&self, kind: KeyKind, cmd: KeyCmd) -> anyhow::Result<()> {
        let reg = self.registry()?;
        let noun = key_noun(kind);
        match cmd {
            KeyCmd::Create { org, scope } => {
                let scope = match (kind, scope) {
                    (_, None) => Scope::Admin,
                    (KeyKind::ApiKey, Some(s)) => Scope::parse(&s)?,
                    (KeyKind::SigningKey, Some(_)) => anyhow::bail!(
                        "--scope is for API keys: a signing key only signs lead-event requests; drop --scope"
                    ),
                };
                let k = reg
                    .issue(org, kind, scope)
                    .map_err(|e| self.explain(&reg, e))?;
                let mode = reg.auth_mode(org)?;
                match kind {
                    KeyKind::ApiKey => println!("created {noun} {} for organization {org} with scope {scope}; it is shown only this once:", k.id),
                    KeyKind::SigningKey => println!("created {noun} {} for organization {org}; it is shown only this once:", k.id),
                }
                match (kind, mode) {
                    (KeyKind::SigningKey, Some(AuthMode::ApiKey)) => eprintln!(
                        "note: organization {org} is in api-key mode, so signatures are refused; `{}` to use signing keys",
                        self.cmd(&format!("org set-auth --org {org} --mode hmac"))
                    ),
                    (KeyKind::ApiKey, Some(AuthMode::Hmac)) => eprintln!(
                        "note: organization {org} is in hmac mode, so API keys are refused; `{}` to use API keys",
                        self.cmd(&format!("org set-auth --org {org} --mode api-key"))
                    ),
                    _ => {}
                }
                println!("{}", k.secret);
            }
            KeyCmd::List { org } => {
                let list = reg.keys(org, kind).map_err(|e| self.explain(&reg, e))?;
                if list.is_empty() {
                    println!("no {noun}s for organization {org}; create one with `{}`", self.cmd(&format!("{} create --org {org}", kind_arg(kind))));
                    return Ok(());
                }
                let time = leadstream_pipeline::time::format_rfc3339_ms;
                let rows: Vec<[String; 6]> = list
                    .into_iter()
                    .map(|KeyInfo { id, prefix, revoked_at_ms, created_at_ms, scope, .. }| {
                        let state = if revoked_at_ms.is_some() { "revoked" } else { "active" };
                        let scope = if kind == KeyKind::ApiKey { scope.as_str() } else { "-" };
                        [id.to_string(), format!("{prefix}…"), scope.to_owned(), state.to_owned(), time(created_at_ms), revoked_at_ms.map_or("-".to_owned(), time)]
                    })
                    .collect();
                print!("{}", table(["ID", "PREFIX", "SCOPE", "STATE", "CREATED", "REVOKED"], &rows));
                match (kind, reg.auth_mode(org)?) {
                    (KeyKind::SigningKey, Some(AuthMode::ApiKey)) => eprintln!("note: organization {org} is in api-key mode; these keys are not used"),
                    (KeyKind::ApiKey, Some(AuthMode::Hmac)) => eprintln!("note: organization {org} is in hmac mode; these keys are not used"),
                    _ => {}
                }
            }
            KeyCmd::Revoke { org, id } => match reg.revoke(org, kind, id) {
                Ok(()) => println!("revoked {noun} {id} of organization {org}; a running server refuses it from the next request"),
                Err(RegistryError::NoSuchKey { .. }) => return Err(self.no_such_key(&reg, kind, org, id)),
                Err(e) => return Err(self.explain(&reg, e)).context("revoking"),
            },
        }
        Ok(())
    }

    /// Why `revoke` found nothing to revoke: already revoked, the other kind of key,
    /// an unknown org, or no such id.
    fn no_such_key(
        &self,
        reg: &BlockingRegistry,
        kind: KeyKind,
        org: OrgId,
        id: i64,
    ) -> anyhow::Error {
        let noun = key_noun(kind);
        let list = self.cmd(&format!("{} list --org {org}", kind_arg(kind)));
        let Ok(mine) = reg.keys(org, kind) else {
            return self.no_such_org(reg, org);
        };
        if let Some(k) = mine.iter().find(|k| k.id == id) {
            let at = k
                .revoked_at_ms
                .map(leadstream_pipeline::time::format_rfc3339_ms)
                .unwrap_or_default();
            return anyhow::anyhow!(
                "{noun} {id} of organization {org} is already revoked (at {at}); nothing changed"
            );
        }
        let other = match kind {
            KeyKind::ApiKey => KeyKind::SigningKey,
            KeyKind::SigningKey => KeyKind::ApiKey,
        };
        if reg
            .keys(org, other)
            .is_ok_and(|ks| ks.iter().any(|k| k.id == id))
        {
            return anyhow::anyhow!(
                "key {id} of organization {org} is a {}, not an {noun}; revoke it with `{}`",
                key_noun(other),
                self.cmd(&format!("{} revoke --org {org} --id {id}", kind_arg(other)))
            );
        }
        anyhow::anyhow!(
            "no {noun} {id} for organization {org}; `{list}` shows its keys and their ids"
        )
    }
}

fn key_noun(kind: KeyKind) -> &'static str {
    match kind {
        KeyKind::ApiKey => "API key",
        KeyKind::SigningKey => "signing key",
    }
}

/// The subcommand that manages `kind`.
fn kind_arg(kind: KeyKind) -> &'static str {
    match kind {
        KeyKind::ApiKey => "api-key",
        KeyKind::SigningKey => "signing-key",
    }
}

/// `<data dir>/serve.lock`, held (an OS file lock) for the life of the process so that
/// two servers never share a data dir. The OS drops the lock when the process dies,
/// however it dies, so a lock file left behind never blocks the next start. The file
/// holds the pid of the process that holds the lock, for the message of the next one.
struct DataDirLock {
    _file: std::fs::File,
}

impl DataDirLock {
    const FILE: &str = "serve.lock";

    fn acquire(dir: &Path) -> anyhow::Result<Self> {
        use std::io::{Read, Seek, Write};
        let path = dir.join(Self::FILE);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                // The holder writes its pid right after locking: give it a moment.
                let mut holder = String::new();
                for _ in 0..20 {
                    holder.clear();
                    let _ = file
                        .seek(std::io::SeekFrom::Start(0))
                        .and_then(|_| file.read_to_string(&mut holder));
                    if !holder.trim().is_empty() {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(25));
                }
                let (who, stop) = match holder.trim().parse::<u32>() {
                    Ok(pid) => (
                        format!("another `leadstream serve`, pid {pid}"),
                        format!(" (`kill {pid}`)"),
                    ),
                    Err(_) => (
                        "another `leadstream serve` (pid unknown)".to_owned(),
                        String::new(),
                    ),
                };
                anyhow::bail!(
                    "data dir {} is in use by {who}, which holds {}. Stop that process first{stop}, or give this server its own --data-dir (or LEADSTREAM_DATA_DIR)",
                    dir.display(),
                    path.display()
                );
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", path.display()))
            }
        }
        file.set_len(0)
            .and_then(|()| file.seek(std::io::SeekFrom::Start(0)))
            .and_then(|_| writeln!(file, "{}", std::process::id()))
            .with_context(|| format!("writing the pid into {}", path.display()))?;
        Ok(Self { _file: file })
    }
}

fn serve(config: Arc<Config>) -> anyhow::Result<()> {
    init_tracing();
    let data_dir = &config.store.data_dir;
    ensure_dir(data_dir)?;
    // Before anything is opened: the embedded stores are this process's alone while it
    // runs (the registry too, unless database.url puts it in the shared database).
    let _lock = DataDirLock::acquire(data_dir)?;
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let Services {
        db: state_db,
        registry,
        endpoints: shared_endpoints,
    } = rt.block_on(Services::open(&config, Role::Server))?;
    // Phone metadata loads here, not on the first request.
    let normalizer = PhoneNormalizer::new();
    let writer = if config.clickhouse.enabled() {
        EventWriter::with_store(
            Box::new(connect_clickhouse(&config.clickhouse, &config.store.retry)?),
            config.store.shards,
            config.store.retry.backoff(),
        )
    } else {
        EventWriter::start(data_dir, config.store.shards, config.store.retry.backoff())
            .context("opening the event store")?
    };
    // Several processes may share the group and the ClickHouse: newly assigned raw
    // partitions are warmed from it, over a second connection. The embedded store is
    // per process, so there the start-up warm-up covers every partition.
    let warmer: Box<dyn PartitionWarmer> = if config.clickhouse.enabled() && config.kafka.enabled()
    {
        Box::new(ClickHouseWarmer::new(
            connect_clickhouse(&config.clickhouse, &config.store.retry)?,
            writer.clone(),
            config.store.retry.backoff(),
        ))
    } else {
        Box::new(WarmedAtStartup(writer.clone()))
    };
    // The engine's dispatcher runs on the runtime; it resumes what the last run left
    // pending before the server takes new work.
    let engine = {
        let _in_runtime = rt.enter();
        let engine = match (&state_db, shared_endpoints) {
            (StateDb::Shared(pg), Some(endpoints)) => {
                DeliveryEngine::start_shared(pg, endpoints, &config.delivery)
                    .context("starting the webhook store on the shared database")?
            }
            (_, endpoints) => DeliveryEngine::start_with(data_dir, &config.delivery, endpoints)
                .context("opening the webhook store")?,
        };
        // With Kafka the unfinished deliveries are read again from the topics
        // (attach_kafka in start_kafka); otherwise from the store (on the shared
        // database, claimed as their leases allow).
        if !config.kafka.enabled() {
            engine
                .resume_pending()
                .context("reading the pending deliveries")?;
        }
        if config.clickhouse.enabled() {
            let log = rt
                .block_on(
                    leadstream_connectors::clickhouse::attempts::AttemptLog::start(
                        &config.clickhouse,
                        config.store.retry.backoff(),
                    ),
                )
                .context("creating the webhook attempt log in ClickHouse")?;
            engine.attach_attempt_log(log);
        }
        engine
    };
    let campaigns = {
        let _in_runtime = rt.enter();
        let campaigns = Campaigns::open(engine.clone(), writer.clone(), &config.sends)
            .context("opening the campaign store")?;
        if config.clickhouse.enabled() {
            // Eligibility of large audiences (and of every audience when processes
            // share the Kafka group) is one ClickHouse query: sends.eligibility.
            campaigns.attach_clickhouse(
                connect_clickhouse(&config.clickhouse, &config.store.retry)?,
                config.kafka.enabled(),
            );
        }
        campaigns
    };
    let domain = leadstream_connectors::domain::Domain::open(engine.clone(), &config.domain)
        .context("opening the domain store")?;
    let mut state = AppState::new(
        registry.clone(),
        writer,
        Preparer::new(normalizer),
        engine,
        campaigns,
        domain,
        &config,
    );
    if config.clickhouse.enabled() {
        // The console's and scripts' reads of stored events: a connection of their own.
        let _in_runtime = rt.enter();
        state.events = Arc::new(leadstream_connectors::store::reads::EventReads::clickhouse(
            connect_clickhouse(&config.clickhouse, &config.store.retry)?,
        ));
    }
    let cfg = config.clone();
    rt.block_on(async move {
        let listeners = bind(&cfg.http.listen).await?;
        let addrs = listeners
            .iter()
            .map(TcpListener::local_addr)
            .collect::<std::io::Result<Vec<_>>>()?;
        let (stop, stopping) = tokio::sync::watch::channel(false);
        // Several processes: each lead's part of an HTTP batch is stored by the owner
        // of its raw partition, reached at this address.
        let shared_pg = match &state_db {
            StateDb::Shared(pg) if cfg.clickhouse.enabled() => Some(pg.clone()),
            _ => None,
        };
        let advertised = advertise_url(&cfg.http.advertise_url, &addrs);
        let (kafka, routing) = start_kafka(
            &cfg,
            &state,
            warmer,
            shared_pg,
            &advertised,
            stopping.clone(),
        )
        .await?;
        let state = AppState {
            routing: routing.clone(),
            ..state
        };
        // After Kafka is attached: what the scheduler publishes then goes through the
        // outbox, never to a local queue Kafka mode does not resume.
        state.campaigns.start_scheduler();
        state.domain.start_timers();
        let orgs = registry.orgs().await.unwrap_or_default();
        print_banner(&addrs, &cfg, &orgs);
        let mut servers = tokio::task::JoinSet::new();
        for listener in listeners {
            let mut stopping = stopping.clone();
            servers.spawn(leadstream_connectors::api::run(
                listener,
                state.clone(),
                async move {
                    let _ = stopping.wait_for(|stop| *stop).await;
                },
            ));
        }
        let joined = |r: Result<std::io::Result<()>, tokio::task::JoinError>| {
            r.context("HTTP server task")?.context("HTTP server")
        };
        // A server only ends early on an error; then the others and the consumer stop too.
        let mut served = tokio::select! {
            () = shutdown_signal() => Ok(()),
            Some(r) = servers.join_next() => joined(r),
        };
        let _ = stop.send(true);
        while let Some(r) = servers.join_next().await {
            served = served.and(joined(r));
        }
        // Nothing acknowledged is lost at exit, within delivery.shutdown_timeout:
        // other processes stop handing this one batch parts; every background loop
        // finishes what it has in hand (a send's chunk, a timer, an outbox row) and
        // stops; attempts in flight end and are recorded, the attempt log is written
        // out; leases are handed back.
        let deadline = tokio::time::Instant::now() + cfg.delivery.shutdown_timeout;
        if let Some(router) = &routing {
            router.shutdown().await;
        }
        leadstream_connectors::tasks::stop();
        state.engine.shutdown(cfg.delivery.shutdown_timeout).await;
        if let Some(task) = kafka {
            stop_kafka(task, deadline).await;
        }
        let left = leadstream_connectors::tasks::wait(
            deadline.saturating_duration_since(tokio::time::Instant::now()),
        )
        .await;
        if left == 0 {
            tracing::info!("every background task has ended");
        } else {
            tracing::warn!(tasks = left, timeout = ?cfg.delivery.shutdown_timeout, "background tasks still running at the shutdown timeout; exiting without them (what they had not made durable is done again by the next start or another process)");
        }
        state.engine.release_leases().await;
        state.campaigns.release_sends().await;
        served
    })
}

/// Binds `listen` (`host:port`) on every address the host resolves to, in the
/// resolver's order. Later addresses get the port the first one got, so `localhost:0`
/// serves one port on 127.0.0.1 and ::1. An address that cannot be bound is skipped
/// with a warning as long as one could be.
async fn bind(listen: &str) -> anyhow::Result<Vec<TcpListener>> {
    let mut resolved: Vec<SocketAddr> = tokio::net::lookup_host(listen)
        .await
        .with_context(|| format!("resolving the listen address {listen} (pass --listen HOST:PORT, e.g. 127.0.0.1:8080)"))?
        .collect();
    resolved.dedup();
    let mut listeners: Vec<TcpListener> = Vec::new();
    let mut failed = Vec::new();
    for mut addr in resolved {
        if let Some(first) = listeners.first() {
            addr.set_port(first.local_addr()?.port());
        }
        match TcpListener::bind(addr).await {
            Ok(l) => listeners.push(l),
            Err(e) => failed.push((addr, e)),
        }
    }
    if listeners.is_empty() {
        let why: Vec<String> = failed.iter().map(|(a, e)| format!("{a}: {e}")).collect();
        anyhow::bail!(
            "cannot listen on {listen} ({}); is the port in use? Pass another with --listen HOST:PORT (e.g. 127.0.0.1:8081)",
            if why.is_empty() { "it resolves to no address".to_owned() } else { why.join("; ") }
        );
    }
    for (addr, e) in failed {
        tracing::warn!(%addr, error = %e, "{listen} resolves to {addr} too, which cannot be bound; serving on the other addresses");
    }
    Ok(listeners)
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
    shared: Option<leadstream_connectors::db::Pg>,
    advertised: &str,
    stopping: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<(Option<KafkaTask>, Option<LeadRouter>)> {
    use leadstream_connectors::kafka::{ensure_topics, Failpoint, RawSource};
    if !config.kafka.enabled() {
        return Ok((None, None));
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
    state
        .engine
        .attach_kafka(&config.kafka, &topics)
        .context("starting the Kafka delivery workers")?;
    // Domain events from their topic; it stops with the HTTP servers.
    leadstream_connectors::domain::kafka::start(
        state.domain.clone(),
        &config.kafka,
        state.preparer.normalizer().clone(),
        state.registry.clone(),
        stopping.clone(),
    )
    .context("starting the domain-events consumer")?;
    let (warmer, router): (Box<dyn PartitionWarmer>, _) = match shared {
        Some(pg) => {
            let router = LeadRouter::start(
                pg,
                &config.kafka.raw_topic,
                topics.raw_partitions(),
                advertised,
                state.writer.clone(),
                config.http.forward_wait,
            )
            .await
            .context("reading the key the processes sign batch parts with")?;
            tracing::info!(address = advertised, "HTTP batches are split by raw partition and each part stored by its owner (several processes)");
            let warmer = RoutingWarmer {
                warmer,
                router: router.clone(),
            };
            (Box::new(warmer), Some(router))
        }
        None => (warmer, None),
    };
    let source = RawSource::with_warmer(
        config,
        &topics,
        state.writer.clone(),
        state.preparer.clone(),
        failpoint,
        warmer,
    )
    .context("starting the Kafka consumer")?;
    Ok((
        Some(leadstream_connectors::tasks::spawn(async move {
            // Said at once: HTTP goes on without the consumer.
            if let Err(e) = source.run(stopping).await {
                tracing::error!(error = %e, "Kafka consumer failed; lead events are not read from Kafka");
            }
        })),
        router,
    ))
}

/// The base URL other processes reach this one at: `http.advertise_url`, else
/// `http://` and the first listen address, with the host's name in place of an
/// unspecified address.
fn advertise_url(configured: &str, addrs: &[SocketAddr]) -> String {
    let configured = configured.trim();
    if !configured.is_empty() {
        return configured.trim_end_matches('/').to_owned();
    }
    let addr = addrs[0];
    if addr.ip().is_unspecified() {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "localhost".into());
        format!("http://{host}:{}", addr.port())
    } else {
        format!("http://{addr}")
    }
}

/// Waits (until `deadline`) for the consumer to finish its batch, commit and leave
/// the group.
async fn stop_kafka(task: KafkaTask, deadline: tokio::time::Instant) {
    match tokio::time::timeout_at(deadline, task).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "Kafka consumer task panicked"),
        Err(_) => tracing::warn!("Kafka consumer still stopping at the shutdown timeout; exiting without it (uncommitted records are read again)"),
    }
}

/// Connects to ClickHouse, waiting with backoff (`[store.retry]`) while it cannot be
/// reached, and saying so each time.
fn connect_clickhouse(
    cfg: &ClickHouseConfig,
    retry: &RetryConfig,
) -> anyhow::Result<ClickHouseStore> {
    let url = leadstream_connectors::clickhouse::display_url(&cfg.url);
    ClickHouseStore::connect_with_backoff(cfg, retry.backoff(), |e, wait| {
        tracing::warn!(
            %url,
            error = %e,
            retry_in = ?wait,
            "ClickHouse is unavailable; waiting for it. Start it, fix clickhouse.url (LEADSTREAM_CLICKHOUSE_URL), or unset it to keep events in the embedded store"
        );
    })
    .with_context(|| format!("setting up the ClickHouse event store at {url}, database {}", cfg.database))
}

/// Prints where the server listens and what to paste next in another terminal, for
/// the first organization's auth mode (or how to create one).
fn print_banner(addrs: &[SocketAddr], config: &Config, orgs: &[Org]) {
    let data_dir = &config.store.data_dir;
    let urls: Vec<String> = addrs.iter().map(|a| format!("http://{a}")).collect();
    let shared = config.database.enabled().then(|| {
        format!(
            ", organizations and keys in {}",
            leadstream_connectors::config::mask_url_password(&config.database.url)
        )
    });
    println!(
        "leadstream listening on {} (data dir {}{})",
        urls.join(" and "),
        data_dir.display(),
        shared.unwrap_or_default()
    );
    // The hint works from any directory: an absolute data dir (or the shared database
    // from the environment), a reachable address.
    let abs = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_owned());
    let prog = if config.database.enabled() {
        "LEADSTREAM_DATABASE_URL=… leadstream".to_owned()
    } else {
        format!(
            "leadstream --data-dir {}",
            shell_quote(&abs.to_string_lossy())
        )
    };
    let mut target = addrs[0];
    if target.ip().is_unspecified() {
        target.set_ip(if target.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let url = format!("http://{target}/api/v1/webhooks/lead-events");
    let (id, mode) = match orgs.first() {
        None => {
            println!("no organizations yet; in another terminal:");
            println!("  {prog} org create --id 42 --name acme");
            (42, AuthMode::ApiKey)
        }
        Some(o) => {
            let mode = o.auth_mode;
            let others = match orgs.len() {
                1 => String::new(),
                n => format!(" (the first of {n}; `{prog} org list` shows them)"),
            };
            println!("organization {} ({}) authenticates with {}{others}; to send it a test event, in another terminal:", o.id, o.name, mode.as_str());
            (o.id, mode)
        }
    };
    let body = format!(
        r#"{{"organizationId":{id},"eventType":"mastery_purchase","events":[{{"phoneE164":"+15551234567","occurredAt":"2026-05-12T18:34:00Z","metadata":{{"orderId":"ord_9F2","amountUsd":297}}}}]}}"#
    );
    match mode {
        AuthMode::ApiKey => {
            println!("  KEY=$({prog} api-key create --org {id} | tail -n1)");
            println!("  curl -sS -w '\\n' -X POST {url} -H \"Authorization: Bearer $KEY\" -H 'Content-Type: application/json' \\\n    -d '{body}'");
        }
        AuthMode::Hmac => {
            println!("  SECRET=$({prog} signing-key create --org {id} | tail -n1)");
            println!("  BODY='{body}'");
            println!("  SIG=$(printf '%s' \"$BODY\" | openssl dgst -sha256 -hmac \"$SECRET\" -binary | xxd -p -c 256)");
            println!("  curl -sS -w '\\n' -X POST {url} -H 'Content-Type: application/json' -H \"X-Setter-Signature: sha256=$SIG\" --data-raw \"$BODY\"");
        }
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
}

/// Whether log lines get ANSI colours: only on a terminal, and never with `NO_COLOR`
/// set to anything but the empty string (https://no-color.org).
pub(crate) fn log_in_color() -> bool {
    use std::io::IsTerminal;
    color_wanted(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR"),
    )
}

fn color_wanted(terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LEADSTREAM_LOG")
        .unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(log_in_color())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(color_wanted(true, None));
        assert!(
            color_wanted(true, Some("".into())),
            "an empty NO_COLOR does not count"
        );
        assert!(!color_wanted(true, Some("1".into())));
        assert!(!color_wanted(false, None));
    }

    #[test]
    fn tables_align_their_columns() {
        let t = table(
            ["ID", "NAME", "AUTH"],
            &[
                ["42".into(), "acme".into(), "api-key".into()],
                ["1000".into(), "a".into(), "hmac".into()],
            ],
        );
        assert_eq!(
            t,
            "ID    NAME  AUTH\n42    acme  api-key\n1000  a     hmac\n"
        );
    }

    #[test]
    fn shell_quote_leaves_plain_paths_alone() {
        assert_eq!(shell_quote("/tmp/data-1"), "/tmp/data-1");
        assert_eq!(shell_quote("/tmp/my data"), "'/tmp/my data'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
