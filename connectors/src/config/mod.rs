//! Configuration: the annotated defaults in `default.toml`, a file, then env.
//!
//! Loaded and validated once into [`Config`], then passed around as `Arc<Config>`.

use leadstream_pipeline::retry::{Backoff, Jitter, Schedule};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The embedded default configuration, with a comment on every key.
pub const DEFAULT_TOML: &str = include_str!("default.toml");

/// A configuration problem, naming the file and key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Invalid { path: String, message: String },
    #[error("environment variable {var}={value:?}: {message}")]
    Env {
        var: &'static str,
        value: String,
        message: String,
    },
}

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub http: HttpConfig,
    pub store: StoreConfig,
    pub database: DatabaseConfig,
    pub delivery: DeliveryConfig,
    pub sends: SendsConfig,
    pub domain: DomainConfig,
    pub kafka: KafkaConfig,
    pub clickhouse: ClickHouseConfig,
    pub org_limits: OrgLimitsConfig,
    pub secrets: SecretsConfig,
}

/// `[secrets]`: the keys that seal endpoint signing secrets and WhatsApp app secrets
/// at rest ([`crate::secrets`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsConfig {
    /// 32 bytes, base64 or 64 hex digits (`leadstream secrets new-key`). Empty: secrets
    /// are stored in clear.
    pub key: String,
    /// Keys that sealed values before `key` (rotation): they still open them until
    /// `leadstream secrets rotate` has sealed everything under `key`.
    pub previous_keys: Vec<String>,
}

/// `[org_limits]`: what one organization may have at most, so that no tenant grows
/// without bound on a shared server. Past one, a create is 409 naming the limit.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgLimitsConfig {
    /// Webhook endpoints (those made for campaigns' `deliveryUrl`s and actions
    /// included; the settings URL not).
    pub endpoints: usize,
    /// Campaigns.
    pub campaigns: usize,
    /// Sends of one campaign.
    pub sends_per_campaign: usize,
    /// Triggers.
    pub triggers: usize,
    /// Actions of one trigger.
    pub actions_per_trigger: usize,
    /// Leads in one campaign's audience: an upload is refused once it is full.
    pub audience: u64,
}

/// `[delivery]`: the outbound webhook engine.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Gaps between attempts, `5s,30s,2m,10m`: length + 1 attempts in all.
    pub retry_schedule: String,
    /// Per-attempt timeout of endpoints that set none.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Attempts in flight to one endpoint that sets no `maxInFlight`.
    pub max_in_flight_per_endpoint: usize,
    /// Attempts in flight in all.
    pub max_in_flight: usize,
    /// Attempts in flight for one organization at most: its share of
    /// `max_in_flight`, so one org's slow endpoints never hold every slot.
    pub max_in_flight_per_org: usize,
    /// Deliver to non-public addresses and to any port.
    pub allow_private_targets: bool,
    /// Keep the first 20 KB of each attempt's response in the delivery log (and the
    /// ClickHouse attempt log). Off: only status, duration and error are kept, so a
    /// receiver's answers are never readable through the API.
    pub log_response_bodies: bool,
    /// How long a rotated-out secret keeps signing.
    #[serde(with = "humantime_serde")]
    pub secret_grace: Duration,
    /// An endpoint failing every attempt this long is disabled.
    #[serde(with = "humantime_serde")]
    pub disable_after: Duration,
    /// At shutdown, after the HTTP server drained: how long attempts in flight get to
    /// end and be recorded before the process exits (what is still in flight then is
    /// retried later under the same `webhook-id`).
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// How long finished deliveries and their attempts are kept; so are domain
    /// events' ids and conversation messages.
    #[serde(with = "humantime_serde")]
    pub log_retention: Duration,
    /// Window in which a repeated `idempotencyKey` creates nothing.
    #[serde(with = "humantime_serde")]
    pub idempotency_window: Duration,
}

impl DeliveryConfig {
    /// The retry policy of `retry_schedule`.
    ///
    /// # Panics
    /// Never after [`Config::load`], which validated the schedule.
    pub fn retry(&self) -> leadstream_pipeline::retry::DeliveryRetry {
        leadstream_pipeline::retry::DeliveryRetry {
            gaps: leadstream_pipeline::retry::DeliveryRetry::parse_schedule(&self.retry_schedule)
                .expect("validated at load"),
            ..Default::default()
        }
    }
}

/// `[sends]`: campaign sends.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendsConfig {
    /// A send is materialized this long before its instant.
    #[serde(with = "humantime_serde")]
    pub materialize_ahead: Duration,
    /// Where eligibility reads events: `auto`, `index` or `clickhouse`.
    pub eligibility: String,
    /// With `auto` and ClickHouse configured: audiences larger than this are
    /// answered by ClickHouse.
    pub clickhouse_above_audience: usize,
}

/// `[domain]`: domain events and the state they keep.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DomainConfig {
    /// `conversation_inactive` fires this long after a conversation's last user
    /// message (once; a new user message re-arms it).
    #[serde(with = "humantime_serde")]
    pub conversation_inactive_after: Duration,
    /// Messages of a conversation its payloads quote (`last_messages`,
    /// `concatenatedConversation`), newest kept.
    pub conversation_messages: usize,
}

/// `[http]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address the HTTP API listens on, `host:port`: an IP address or a name such as
    /// `localhost`, resolved when the server starts.
    pub listen: String,
    /// Longest a client may take to send a request's headers; then the connection is
    /// closed.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// Longest a request body may go without progress; then 408 and the connection is
    /// closed.
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    /// Open connections at most (clamped to what the process's file limit allows).
    pub max_connections: usize,
    /// Request-body bytes held in memory across all requests at most; past it new
    /// bodies get 503 with Retry-After.
    pub max_body_bytes_in_flight: usize,
    /// How long shutdown waits for in-flight requests.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Bearer token of `GET /metrics` (masked by `config print`). Empty: `/metrics`
    /// takes no credential and serves only aggregate series; set: it needs
    /// `Authorization: Bearer <token>` and also serves the per-endpoint series
    /// (labelled by org), which say how much each org's endpoints have queued.
    pub metrics_token: String,
    /// The base URL other processes reach this one's HTTP API at, to hand it the
    /// leads of the raw partitions it owns (several processes with Kafka, ClickHouse
    /// and `database.url`). Empty: `http://` and the listen address, with the host's
    /// name in place of an unspecified address (`0.0.0.0`, `::`).
    pub advertise_url: String,
    /// How long a batch's part waits for its lead partition to get an owner again
    /// when the owner it was handed to gave the partition up meanwhile; past it the
    /// call answers 503 with Retry-After.
    #[serde(with = "humantime_serde")]
    pub forward_wait: Duration,
}

/// `[store]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Directory of the embedded store and the registry.
    pub data_dir: PathBuf,
    /// Shards of the in-memory indexes.
    pub shards: usize,
    /// Backoff while the event store is unavailable (ClickHouse down, the SQLite file
    /// locked): connecting at start-up, the start-up warm-up of the indexes, and the
    /// warm-up of newly assigned Kafka partitions.
    pub retry: RetryConfig,
}

/// `[database]`: the shared database of several processes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `postgres://user:password@host:5432/db?sslmode=require`; empty keeps the
    /// transactional state in the embedded SQLite files of the data dir.
    pub url: String,
    /// PEM file of a CA to trust beside the bundled Mozilla roots (a private CA).
    pub tls_ca_file: String,
    /// Connections per process at most.
    pub pool_size: usize,
    /// Longest wait for a connection from the pool (or a new one).
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
    /// How long a process's claim on shared work (a held delivery, a send being
    /// materialized, an outbox row) outlives it: a killed process's work is taken
    /// over this long after its last renewal.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
}

impl DatabaseConfig {
    /// Whether a shared database is configured.
    pub fn enabled(&self) -> bool {
        !self.url.trim().is_empty()
    }
}

/// `[kafka]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap brokers; empty disables Kafka.
    pub brokers: String,
    /// Consumer group of the raw-topic consumers.
    pub group_id: String,
    /// Lead events in.
    pub raw_topic: String,
    /// Dead letter.
    pub rejects_topic: String,
    /// Webhook deliveries, keyed by endpoint.
    pub deliveries_topic: String,
    /// Scheduled retries of deliveries.
    pub deliveries_retry_topic: String,
    /// Consumer group of the delivery workers.
    pub deliveries_group_id: String,
    /// Domain events in.
    pub domain_events_topic: String,
    /// Partitions of topics created at start-up.
    pub partitions: i32,
    /// Replication factor of topics created at start-up.
    pub replication_factor: i32,
    /// Producer batching delay.
    #[serde(with = "humantime_serde")]
    pub linger: Duration,
    /// Producer compression codec.
    pub compression: String,
    /// Records per consumer batch.
    pub max_batch_records: usize,
    /// Longest wait to fill a consumer batch.
    #[serde(with = "humantime_serde")]
    pub max_batch_wait: Duration,
    /// How long the group waits for a silent consumer before moving its partitions.
    #[serde(with = "humantime_serde")]
    pub session_timeout: Duration,
    /// Backoff of the raw-topic consumer when a batch cannot be finished (the store
    /// unavailable, brokers not acknowledging): the same records are tried again.
    pub retry: RetryConfig,
}

/// A backoff policy: `[store.retry]`, `[kafka.retry]`. See [`Backoff`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Delay before the first retry, before jitter (at least 1 ms).
    #[serde(with = "humantime_serde")]
    pub initial: Duration,
    /// Longest delay (at least `initial`).
    #[serde(with = "humantime_serde")]
    pub max: Duration,
    /// Growth of the delay per retry (at least 1).
    pub multiplier: f64,
    /// How delays are randomized: `none`, `full` (uniform in 0..delay) or
    /// `decorrelated` (uniform in initial..previous × multiplier).
    pub jitter: JitterConfig,
}

/// `jitter` of a [`RetryConfig`]; see [`Jitter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JitterConfig {
    /// `"none"`: the exponential delay exactly.
    None,
    /// `"full"`: uniform in `0..delay`.
    Full,
    /// `"decorrelated"`: uniform in `initial..previous × multiplier`.
    Decorrelated,
}

impl RetryConfig {
    /// The policy.
    pub fn backoff(&self) -> Backoff {
        let jitter = match self.jitter {
            JitterConfig::None => Jitter::None,
            JitterConfig::Full => Jitter::Full,
            JitterConfig::Decorrelated => Jitter::Decorrelated,
        };
        Backoff {
            initial: self.initial,
            max: self.max,
            multiplier: self.multiplier,
            jitter,
        }
    }

    /// A fresh schedule of the policy, with its own random jitter.
    pub fn schedule(&self) -> Schedule {
        self.backoff().schedule(rand::random())
    }

    fn validate(&self, key: &str) -> Result<(), String> {
        if self.initial.is_zero() || self.max < self.initial {
            return Err(format!(
                "{key}: initial is {:?} and max {:?}; expected 0 < initial <= max",
                self.initial, self.max
            ));
        }
        if !(self.multiplier.is_finite() && self.multiplier >= 1.0) {
            return Err(format!(
                "{key}.multiplier is {}, expected a number of at least 1",
                self.multiplier
            ));
        }
        Ok(())
    }
}

/// `[clickhouse]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClickHouseConfig {
    /// HTTP URL; empty keeps events in the embedded store.
    pub url: String,
    /// Database, created if missing.
    pub database: String,
    /// User name.
    pub user: String,
    /// Password (masked by `config print`).
    pub password: String,
    /// Rows per insert at most.
    pub insert_rows: usize,
}

impl KafkaConfig {
    /// Whether Kafka is configured.
    pub fn enabled(&self) -> bool {
        !self.brokers.trim().is_empty()
    }
}

impl ClickHouseConfig {
    /// Whether ClickHouse is configured.
    pub fn enabled(&self) -> bool {
        !self.url.trim().is_empty()
    }
}

/// Longest per-attempt timeout an endpoint may have.
pub const MAX_DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// Environment overrides: variable, and the key it sets.
pub const ENV_OVERRIDES: &[(&str, &str)] = &[
    ("LEADSTREAM_LISTEN", "http.listen"),
    ("LEADSTREAM_DATA_DIR", "store.data_dir"),
    ("LEADSTREAM_DATABASE_URL", "database.url"),
    ("LEADSTREAM_DATABASE_LEASE", "database.lease"),
    (
        "LEADSTREAM_DELIVERY_RETRY_SCHEDULE",
        "delivery.retry_schedule",
    ),
    (
        "LEADSTREAM_DELIVERY_ALLOW_PRIVATE_TARGETS",
        "delivery.allow_private_targets",
    ),
    ("LEADSTREAM_METRICS_TOKEN", "http.metrics_token"),
    ("LEADSTREAM_ADVERTISE_URL", "http.advertise_url"),
    ("LEADSTREAM_SECRETS_KEY", "secrets.key"),
    ("LEADSTREAM_SECRETS_PREVIOUS_KEYS", "secrets.previous_keys"),
    ("LEADSTREAM_KAFKA_BROKERS", "kafka.brokers"),
    ("LEADSTREAM_KAFKA_GROUP_ID", "kafka.group_id"),
    ("LEADSTREAM_CLICKHOUSE_URL", "clickhouse.url"),
    ("LEADSTREAM_CLICKHOUSE_DATABASE", "clickhouse.database"),
    ("LEADSTREAM_CLICKHOUSE_USER", "clickhouse.user"),
    ("LEADSTREAM_CLICKHOUSE_PASSWORD", "clickhouse.password"),
    (
        "LEADSTREAM_CONVERSATION_INACTIVE_AFTER",
        "domain.conversation_inactive_after",
    ),
];

impl Config {
    /// The defaults, then `file` when given, then the environment (`getenv`).
    ///
    /// # Errors
    /// [`ConfigError`] naming the file, key or variable at fault.
    pub fn load(
        file: Option<&Path>,
        getenv: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut merged: toml::Table = DEFAULT_TOML
            .parse()
            .expect("the embedded default config parses");
        let mut source = "(embedded default)".to_owned();
        if let Some(path) = file {
            source = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
                path: source.clone(),
                source: e,
            })?;
            let over: toml::Table =
                text.parse()
                    .map_err(|e: toml::de::Error| ConfigError::Invalid {
                        path: source.clone(),
                        message: e.to_string(),
                    })?;
            merge(&mut merged, over, "").map_err(|message| ConfigError::Invalid {
                path: source.clone(),
                message,
            })?;
        }
        let mut cfg: Config =
            toml::Value::Table(merged)
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Invalid {
                    path: source.clone(),
                    message: e.to_string(),
                })?;
        for (var, _) in ENV_OVERRIDES {
            if let Some(value) = getenv(var) {
                cfg.apply_env(var, &value)?;
            }
        }
        cfg.validate().map_err(|message| ConfigError::Invalid {
            path: source,
            message,
        })?;
        Ok(cfg)
    }

    fn apply_env(&mut self, var: &'static str, value: &str) -> Result<(), ConfigError> {
        let bad = |message: String| ConfigError::Env {
            var,
            value: value.to_owned(),
            message,
        };
        match var {
            "LEADSTREAM_LISTEN" => {
                check_listen(value).map_err(bad)?;
                self.http.listen = value.to_owned();
            }
            "LEADSTREAM_DATA_DIR" => self.store.data_dir = value.into(),
            "LEADSTREAM_DATABASE_URL" => self.database.url = value.trim().to_owned(),
            "LEADSTREAM_DATABASE_LEASE" => {
                self.database.lease = humantime::parse_duration(value.trim())
                    .map_err(|e| bad(format!("{e}; e.g. 30s")))?;
            }
            "LEADSTREAM_DELIVERY_RETRY_SCHEDULE" => {
                leadstream_pipeline::retry::DeliveryRetry::parse_schedule(value).map_err(bad)?;
                self.delivery.retry_schedule = value.to_owned();
            }
            "LEADSTREAM_DELIVERY_ALLOW_PRIVATE_TARGETS" => {
                self.delivery.allow_private_targets = match value.trim() {
                    "true" | "1" | "yes" => true,
                    "false" | "0" | "no" | "" => false,
                    _ => return Err(bad("expected true or false".into())),
                }
            }
            "LEADSTREAM_METRICS_TOKEN" => self.http.metrics_token = value.trim().to_owned(),
            "LEADSTREAM_ADVERTISE_URL" => self.http.advertise_url = value.trim().to_owned(),
            "LEADSTREAM_SECRETS_KEY" => self.secrets.key = value.trim().to_owned(),
            "LEADSTREAM_SECRETS_PREVIOUS_KEYS" => {
                self.secrets.previous_keys = value
                    .split(',')
                    .map(str::trim)
                    .filter(|k| !k.is_empty())
                    .map(str::to_owned)
                    .collect();
            }
            "LEADSTREAM_KAFKA_BROKERS" => self.kafka.brokers = value.to_owned(),
            "LEADSTREAM_KAFKA_GROUP_ID" => self.kafka.group_id = value.to_owned(),
            "LEADSTREAM_CLICKHOUSE_URL" => self.clickhouse.url = value.to_owned(),
            "LEADSTREAM_CLICKHOUSE_DATABASE" => self.clickhouse.database = value.to_owned(),
            "LEADSTREAM_CLICKHOUSE_USER" => self.clickhouse.user = value.to_owned(),
            "LEADSTREAM_CLICKHOUSE_PASSWORD" => self.clickhouse.password = value.to_owned(),
            "LEADSTREAM_CONVERSATION_INACTIVE_AFTER" => {
                self.domain.conversation_inactive_after =
                    humantime::parse_duration(value.trim())
                        .map_err(|e| bad(format!("{e}; e.g. 23h or 90s")))?;
            }
            _ => {}
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), String> {
        check_listen(&self.http.listen)
            .map_err(|e| format!("http.listen {:?}: {e}", self.http.listen))?;
        if self.http.max_connections == 0 {
            return Err("http.max_connections must be at least 1".into());
        }
        if self.http.max_body_bytes_in_flight < crate::api::MAX_BODY_BYTES {
            return Err(format!(
                "http.max_body_bytes_in_flight must be at least one full body, {} bytes",
                crate::api::MAX_BODY_BYTES
            ));
        }
        let advertise = self.http.advertise_url.trim();
        if !advertise.is_empty() {
            match reqwest::Url::parse(advertise) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
                _ => {
                    return Err(format!(
                        "http.advertise_url {advertise:?} is not an http:// or https:// URL with a host, e.g. http://10.0.0.7:8080"
                    ))
                }
            }
        }
        if self.http.header_timeout.is_zero() || self.http.body_timeout.is_zero() {
            return Err("http.header_timeout and http.body_timeout must be above zero".into());
        }
        if self.domain.conversation_inactive_after.is_zero() {
            return Err("domain.conversation_inactive_after must be above zero".into());
        }
        if !(1..=1000).contains(&self.domain.conversation_messages) {
            return Err("domain.conversation_messages must be 1 to 1000".into());
        }
        if self.store.shards == 0 {
            return Err("store.shards must be at least 1".into());
        }
        if self.kafka.partitions < 1 || self.kafka.replication_factor < 1 {
            return Err("kafka.partitions and kafka.replication_factor must be at least 1".into());
        }
        if !["none", "gzip", "snappy", "lz4", "zstd"].contains(&self.kafka.compression.as_str()) {
            return Err(format!(
                "kafka.compression {:?}: expected none, gzip, snappy, lz4 or zstd",
                self.kafka.compression
            ));
        }
        if self.clickhouse.enabled()
            && !(self.clickhouse.url.starts_with("http://")
                || self.clickhouse.url.starts_with("https://"))
        {
            return Err(format!(
                "clickhouse.url {:?}: expected http://host:8123",
                self.clickhouse.url
            ));
        }
        if self.clickhouse.insert_rows == 0 || self.kafka.max_batch_records == 0 {
            return Err(
                "clickhouse.insert_rows and kafka.max_batch_records must be at least 1".into(),
            );
        }
        leadstream_pipeline::retry::DeliveryRetry::parse_schedule(&self.delivery.retry_schedule)
            .map_err(|e| {
                format!(
                    "delivery.retry_schedule {:?}: {e}",
                    self.delivery.retry_schedule
                )
            })?;
        if self.delivery.timeout.is_zero() || self.delivery.timeout > MAX_DELIVERY_TIMEOUT {
            return Err(format!(
                "delivery.timeout {:?}: expected above zero and at most 30s",
                self.delivery.timeout
            ));
        }
        let l = &self.org_limits;
        if [
            l.endpoints,
            l.campaigns,
            l.sends_per_campaign,
            l.triggers,
            l.actions_per_trigger,
        ]
        .contains(&0)
            || l.audience == 0
        {
            return Err("every org_limits value must be at least 1".into());
        }
        if self.delivery.max_in_flight == 0
            || self.delivery.max_in_flight_per_endpoint == 0
            || self.delivery.max_in_flight_per_org == 0
        {
            return Err(
                "delivery.max_in_flight, delivery.max_in_flight_per_endpoint and delivery.max_in_flight_per_org must be at least 1"
                    .into(),
            );
        }
        if !["auto", "index", "clickhouse"].contains(&self.sends.eligibility.as_str()) {
            return Err(format!(
                "sends.eligibility {:?}: expected auto, index or clickhouse",
                self.sends.eligibility
            ));
        }
        if self.sends.eligibility == "clickhouse" && !self.clickhouse.enabled() {
            return Err(
                "sends.eligibility = \"clickhouse\" needs clickhouse.url (LEADSTREAM_CLICKHOUSE_URL)"
                    .into(),
            );
        }
        if self.database.enabled()
            && !(self.database.url.starts_with("postgres://")
                || self.database.url.starts_with("postgresql://"))
        {
            return Err(format!(
                "database.url {:?}: expected postgres://user:password@host:5432/db",
                mask_url_password(&self.database.url)
            ));
        }
        if self.database.lease < Duration::from_secs(1) {
            return Err(
                "database.lease must be at least 1s (a claim must outlive a round trip to the database)".into(),
            );
        }
        if self.database.pool_size == 0 || self.database.acquire_timeout.is_zero() {
            return Err(
                "database.pool_size and database.acquire_timeout must be above zero".into(),
            );
        }
        self.store.retry.validate("store.retry")?;
        self.kafka.retry.validate("kafka.retry")?;
        crate::secrets::Keyring::new(&self.secrets.key, &self.secrets.previous_keys)
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    /// The effective configuration as TOML, with secrets masked.
    pub fn to_masked_toml(&self) -> String {
        let mut c = self.clone();
        if !c.http.metrics_token.is_empty() {
            c.http.metrics_token = "********".into();
        }
        if !c.clickhouse.password.is_empty() {
            c.clickhouse.password = "********".into();
        }
        c.clickhouse.url = mask_url_password(&c.clickhouse.url);
        if !c.secrets.key.is_empty() {
            c.secrets.key = "********".into();
        }
        for k in &mut c.secrets.previous_keys {
            *k = "********".into();
        }
        c.database.url = mask_url_password(&c.database.url);
        toml::to_string_pretty(&c).expect("config serializes")
    }
}

/// Checks that `listen` has the shape `host:port` (`[::1]:8080` for IPv6) with a
/// numeric port. Whether the host resolves is only known when the server binds.
///
/// # Errors
/// What is wrong, with an example of what is expected.
pub fn check_listen(listen: &str) -> Result<(), String> {
    if listen.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    let expected = "expected host:port, like 127.0.0.1:8080, localhost:8080 or [::1]:8080";
    let Some((host, port)) = listen.rsplit_once(':') else {
        return Err(format!("no port; {expected}"));
    };
    if host.trim_matches(|c| c == '[' || c == ']').is_empty() {
        return Err(format!("no host; {expected}"));
    }
    if port.parse::<u16>().is_err() {
        return Err(format!(
            "port {port:?} is not a number from 0 to 65535; {expected}"
        ));
    }
    Ok(())
}

/// Overlays `over` onto `base`, refusing keys `base` does not have.
fn merge(base: &mut toml::Table, over: toml::Table, prefix: &str) -> Result<(), String> {
    for (k, v) in over {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match (base.get_mut(&k), v) {
            (None, _) => {
                return Err(format!(
                    "unknown key {path}; see `leadstream config print` for the keys there are"
                ))
            }
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o, &path)?,
            (Some(toml::Value::Table(_)), _) => return Err(format!("{path} must be a table")),
            (Some(slot), v) => *slot = v,
        }
    }
    Ok(())
}

/// `scheme://user:secret@host…` with the secret replaced by `********`.
pub fn mask_url_password(url: &str) -> String {
    // http://user:secret@host → http://user:********@host
    if let Some((scheme, rest)) = url.split_once("://") {
        if let Some((auth, host)) = rest.split_once('@') {
            if let Some((user, _)) = auth.split_once(':') {
                return format!("{scheme}://{user}:********@{host}");
            }
        }
    }
    url.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn defaults_load_and_disable_the_distributed_backends() {
        let c = Config::load(None, no_env).unwrap();
        assert_eq!(c.http.listen, "127.0.0.1:8080");
        assert!(!c.kafka.enabled() && !c.clickhouse.enabled());
        assert_eq!(c.kafka.raw_topic, "leadstream.raw");
        assert_eq!(c.clickhouse.database, "leadstream");
    }

    #[test]
    fn a_file_overrides_some_keys_and_env_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "[clickhouse]\nurl = \"http://ch:8123\"\n[store.retry]\nmax = \"3s\"\njitter = \"decorrelated\"\n").unwrap();
        let env = |k: &str| match k {
            "LEADSTREAM_KAFKA_BROKERS" => Some("k1:9092".to_owned()),
            "LEADSTREAM_CLICKHOUSE_PASSWORD" => Some("hunter2".to_owned()),
            _ => None,
        };
        let c = Config::load(Some(&f), env).unwrap();
        assert_eq!(c.clickhouse.url, "http://ch:8123");
        assert_eq!(c.store.retry.max, Duration::from_secs(3));
        assert_eq!(c.store.retry.backoff().jitter, Jitter::Decorrelated);
        assert_eq!(
            c.store.retry.initial,
            Duration::from_millis(200),
            "keys the file does not name keep their defaults"
        );
        assert_eq!(c.kafka.brokers, "k1:9092");
        let c = Config::load(Some(&f), |k| match k {
            "LEADSTREAM_DATABASE_URL" => Some("postgres://ls:s3cret@db:5432/leadstream".into()),
            _ => env(k),
        })
        .unwrap();
        assert!(c.database.enabled());
        let printed = c.to_masked_toml();
        assert!(
            !printed.contains("s3cret")
                && printed.contains("postgres://ls:********@db:5432/leadstream"),
            "{printed}"
        );
        let printed = c.to_masked_toml();
        assert!(
            !printed.contains("hunter2") && printed.contains("********"),
            "{printed}"
        );
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "[kafka]\nbrokerz = \"x\"\n").unwrap();
        let e = Config::load(Some(&f), no_env).unwrap_err().to_string();
        assert!(e.contains("kafka.brokerz"), "{e}");
        std::fs::write(&f, "[kafkaa]\n").unwrap();
        assert!(Config::load(Some(&f), no_env)
            .unwrap_err()
            .to_string()
            .contains("kafkaa"));
    }

    #[test]
    fn bad_values_name_where_they_came_from() {
        let e = Config::load(None, |k| {
            (k == "LEADSTREAM_LISTEN").then(|| "nope".to_owned())
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("LEADSTREAM_LISTEN"), "{e}");
        for ok in [
            "localhost:8082",
            "127.0.0.1:0",
            "[::1]:8080",
            "example.com:80",
        ] {
            assert!(check_listen(ok).is_ok(), "{ok}");
        }
        for bad in ["localhost", ":8080", "localhost:http", "localhost:70000"] {
            assert!(check_listen(bad).is_err(), "{bad}");
        }
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "[kafka]\ncompression = \"brotli\"\n").unwrap();
        assert!(Config::load(Some(&f), no_env)
            .unwrap_err()
            .to_string()
            .contains("kafka.compression"));
        std::fs::write(&f, "[kafka.retry]\nmultiplier = 0.5\n").unwrap();
        assert!(Config::load(Some(&f), no_env)
            .unwrap_err()
            .to_string()
            .contains("kafka.retry.multiplier is 0.5"));
        std::fs::write(&f, "[store.retry]\ninitial = \"2s\"\nmax = \"1s\"\n").unwrap();
        assert!(Config::load(Some(&f), no_env)
            .unwrap_err()
            .to_string()
            .contains("store.retry: initial is 2s"));
        std::fs::write(&f, "[store.retry]\njitter = \"lots\"\n").unwrap();
        assert!(Config::load(Some(&f), no_env)
            .unwrap_err()
            .to_string()
            .contains("jitter"));
    }

    #[test]
    fn retry_policies_come_from_the_config() {
        let c = Config::load(None, no_env).unwrap();
        let b = c.kafka.retry.backoff();
        assert_eq!(
            (b.initial, b.max, b.multiplier, b.jitter),
            (
                Duration::from_millis(200),
                Duration::from_secs(10),
                2.0,
                Jitter::Full
            )
        );
        assert_eq!(c.store.retry, c.kafka.retry);
        // Printed and read back, the config is the same.
        let again: Config = toml::from_str(&c.to_masked_toml()).unwrap();
        assert_eq!(again.store.retry, c.store.retry);
    }
}
