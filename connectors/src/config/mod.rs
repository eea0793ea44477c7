//! Configuration: the annotated defaults in `default.toml`, a file, then env.
//!
//! Loaded and validated once into [`Config`], then passed around as `Arc<Config>`.

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
    pub kafka: KafkaConfig,
    pub clickhouse: ClickHouseConfig,
}

/// `[http]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address the HTTP API listens on.
    pub listen: SocketAddr,
}

/// `[store]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Directory of the embedded store and the registry.
    pub data_dir: PathBuf,
    /// Shards of the in-memory indexes.
    pub shards: usize,
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
    /// Deliveries out.
    pub deliveries_topic: String,
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
    /// First backoff while unavailable.
    #[serde(with = "humantime_serde")]
    pub retry_initial: Duration,
    /// Backoff cap while unavailable.
    #[serde(with = "humantime_serde")]
    pub retry_max: Duration,
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

/// Environment overrides: variable, and the key it sets.
pub const ENV_OVERRIDES: &[(&str, &str)] = &[
    ("LEADSTREAM_LISTEN", "http.listen"),
    ("LEADSTREAM_DATA_DIR", "store.data_dir"),
    ("LEADSTREAM_KAFKA_BROKERS", "kafka.brokers"),
    ("LEADSTREAM_KAFKA_GROUP_ID", "kafka.group_id"),
    ("LEADSTREAM_CLICKHOUSE_URL", "clickhouse.url"),
    ("LEADSTREAM_CLICKHOUSE_DATABASE", "clickhouse.database"),
    ("LEADSTREAM_CLICKHOUSE_USER", "clickhouse.user"),
    ("LEADSTREAM_CLICKHOUSE_PASSWORD", "clickhouse.password"),
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
                self.http.listen = value
                    .parse()
                    .map_err(|e| bad(format!("not an address like 127.0.0.1:8080: {e}")))?
            }
            "LEADSTREAM_DATA_DIR" => self.store.data_dir = value.into(),
            "LEADSTREAM_KAFKA_BROKERS" => self.kafka.brokers = value.to_owned(),
            "LEADSTREAM_KAFKA_GROUP_ID" => self.kafka.group_id = value.to_owned(),
            "LEADSTREAM_CLICKHOUSE_URL" => self.clickhouse.url = value.to_owned(),
            "LEADSTREAM_CLICKHOUSE_DATABASE" => self.clickhouse.database = value.to_owned(),
            "LEADSTREAM_CLICKHOUSE_USER" => self.clickhouse.user = value.to_owned(),
            "LEADSTREAM_CLICKHOUSE_PASSWORD" => self.clickhouse.password = value.to_owned(),
            _ => {}
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), String> {
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
        Ok(())
    }

    /// The effective configuration as TOML, with secrets masked.
    pub fn to_masked_toml(&self) -> String {
        let mut c = self.clone();
        if !c.clickhouse.password.is_empty() {
            c.clickhouse.password = "********".into();
        }
        c.clickhouse.url = mask_url_password(&c.clickhouse.url);
        toml::to_string_pretty(&c).expect("config serializes")
    }
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

fn mask_url_password(url: &str) -> String {
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
        assert_eq!(c.http.listen.to_string(), "127.0.0.1:8080");
        assert!(!c.kafka.enabled() && !c.clickhouse.enabled());
        assert_eq!(c.kafka.raw_topic, "leadstream.raw");
        assert_eq!(c.clickhouse.database, "leadstream");
    }

    #[test]
    fn a_file_overrides_some_keys_and_env_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "[clickhouse]\nurl = \"http://ch:8123\"\nretry_max = \"3s\"\n",
        )
        .unwrap();
        let env = |k: &str| match k {
            "LEADSTREAM_KAFKA_BROKERS" => Some("k1:9092".to_owned()),
            "LEADSTREAM_CLICKHOUSE_PASSWORD" => Some("hunter2".to_owned()),
            _ => None,
        };
        let c = Config::load(Some(&f), env).unwrap();
        assert_eq!(c.clickhouse.url, "http://ch:8123");
        assert_eq!(c.clickhouse.retry_max, Duration::from_secs(3));
        assert_eq!(c.kafka.brokers, "k1:9092");
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
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "[kafka]\ncompression = \"brotli\"\n").unwrap();
        assert!(Config::load(Some(&f), no_env)
            .unwrap_err()
            .to_string()
            .contains("kafka.compression"));
    }
}
