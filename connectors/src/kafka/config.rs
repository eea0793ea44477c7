//! librdkafka client properties, from [`KafkaConfig`].
//!
//! Only what leadstream's guarantees depend on is set here; everything else keeps
//! librdkafka's defaults.

use crate::config::KafkaConfig;
use rdkafka::ClientConfig;

/// Properties every client shares: the bootstrap brokers and a client id.
pub fn common(cfg: &KafkaConfig, role: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", cfg.brokers.trim())
        .set("client.id", format!("leadstream-{role}"));
    c
}

/// The raw-topic consumer, in the consumer group `group_id`.
///
/// Offsets are neither stored nor committed by librdkafka on its own
/// (`enable.auto.commit=false`, `enable.auto.offset.store=false`): the source commits
/// explicitly, synchronously, after the records are durable or dead-lettered. A group
/// without committed offsets starts at the beginning of the topic, so records
/// produced before the first start are ingested too.
pub fn consumer(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = common(cfg, "raw-consumer");
    c.set("group.id", &cfg.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set(
            "session.timeout.ms",
            millis(cfg.session_timeout).max(1).to_string(),
        )
        // Heartbeats at a third of the session timeout at most (Kafka's rule of thumb).
        .set(
            "heartbeat.interval.ms",
            (millis(cfg.session_timeout) / 3)
                .clamp(1, 3_000)
                .to_string(),
        );
    c
}

/// A producer that loses and duplicates nothing on its own: idempotent, `acks=all`,
/// with the configured linger and compression. Used for the dead letter, re-routing
/// and deliveries.
pub fn producer(cfg: &KafkaConfig, role: &str) -> ClientConfig {
    let mut c = common(cfg, role);
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", millis(cfg.linger).to_string())
        .set("compression.type", &cfg.compression);
    c
}

/// The admin client that creates topics.
pub fn admin(cfg: &KafkaConfig) -> ClientConfig {
    common(cfg, "admin")
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn the_consumer_never_commits_on_its_own() {
        let mut cfg = Config::load(None, |_| None).unwrap().kafka;
        cfg.brokers = " k1:9092,k2:9092 ".into();
        let c = consumer(&cfg);
        assert_eq!(c.get("bootstrap.servers"), Some("k1:9092,k2:9092"));
        assert_eq!(c.get("group.id"), Some("leadstream"));
        assert_eq!(c.get("enable.auto.commit"), Some("false"));
        assert_eq!(c.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(c.get("session.timeout.ms"), Some("45000"));
        assert_eq!(c.get("heartbeat.interval.ms"), Some("3000"));
    }

    #[test]
    fn producers_are_idempotent_with_acks_all() {
        let cfg = Config::load(None, |_| None).unwrap().kafka;
        let c = producer(&cfg, "test");
        assert_eq!(c.get("enable.idempotence"), Some("true"));
        assert_eq!(c.get("acks"), Some("all"));
        assert_eq!(c.get("linger.ms"), Some("5"));
        assert_eq!(c.get("compression.type"), Some("lz4"));
    }
}
