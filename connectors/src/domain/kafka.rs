//! Domain events from Kafka: `kafka.domain_events_topic`, read by the consumer group
//! `<kafka.group_id>-domain`. Each record is one versioned, tagged JSON object:
//!
//! ```json
//! {"v": 1, "source": "whatsapp", "botIntegrationId": 456, "body": {"object": "whatsapp_business_account", ...}}
//! {"v": 1, "source": "event", "organizationId": 42, "body": {"type": "participant_confirmed", ...}}
//! {"v": 1, "source": "event", "body": {"type": "appointment_booked", "botIntegrationId": 456, ...}}
//! ```
//!
//! An `event` record's organization is its `organizationId`, or else the one of the
//! WhatsApp integration its body names in `botIntegrationId`.
//!
//! `body` is what the HTTP endpoint takes (`POST
//! /api/v1/integrations/whatsapp/{id}/webhook`, `POST /api/v1/events`); the topic's
//! ACLs stand in for the signature or API key. An `event` without `id` gets
//! `kafka:<topic>:<partition>:<offset>`, so a record read twice causes nothing twice.
//! A record's offset is committed only after what it caused is durably published, or
//! after it was dead-lettered to `kafka.rejects_topic` with the reason (not JSON, an
//! unknown version or source, an unknown integration, a body HTTP would answer 400).
//! While the store cannot write, the same record is tried again with `[kafka.retry]`
//! backoff and nothing is committed.

use super::events;
use super::whatsapp::Webhook;
use super::Domain;
use crate::config::KafkaConfig;
use crate::kafka::dlq::{DeadLetter, Source};
use crate::kafka::{config as kconfig, KafkaError};
use leadstream_pipeline::{OrgId, PhoneNormalizer};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::time::Duration;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Record<'a> {
    v: u8,
    source: String,
    #[serde(rename = "botIntegrationId", default)]
    bot_integration_id: Option<i64>,
    #[serde(rename = "organizationId", default)]
    organization_id: Option<OrgId>,
    #[serde(borrow)]
    body: &'a RawValue,
}

/// What a record comes to.
enum Outcome {
    Taken,
    /// Dead-letter it with this reason (and the org, when known).
    Refused(String, Option<OrgId>),
}

/// Starts the consumer; it runs until `stopping` turns true.
///
/// # Errors
/// [`KafkaError::Client`] when librdkafka refuses the configuration or the
/// subscription.
pub fn start(
    domain: Domain,
    cfg: &KafkaConfig,
    normalizer: PhoneNormalizer,
    registry: std::sync::Arc<crate::registry::Registry>,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, KafkaError> {
    let client_error = |client, source| KafkaError::Client {
        client,
        brokers: cfg.brokers.clone(),
        source,
    };
    let mut c = kconfig::consumer(cfg);
    c.set("group.id", format!("{}-domain", cfg.group_id))
        .set("client.id", "leadstream-domain-consumer");
    let consumer: StreamConsumer = c
        .create()
        .map_err(|e| client_error("domain-events consumer", e))?;
    consumer
        .subscribe(&[&cfg.domain_events_topic])
        .map_err(|e| client_error("domain-events consumer", e))?;
    let dlq: FutureProducer = kconfig::producer(cfg, "domain-dead-letters")
        .create()
        .map_err(|e| client_error("domain dead-letter producer", e))?;
    let rejects = cfg.rejects_topic.clone();
    let retry = cfg.retry;
    Ok(crate::tasks::spawn(async move {
        loop {
            let m = tokio::select! {
                m = consumer.recv() => m,
                _ = stopping.wait_for(|s| *s) => break,
            };
            let m = match m {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "reading the domain-events topic");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let source = Source {
                topic: m.topic().to_owned(),
                partition: m.partition(),
                offset: m.offset(),
            };
            let bytes = m.payload().unwrap_or_default().to_vec();
            let mut backoff = retry.schedule();
            let outcome = loop {
                match take(&domain, &normalizer, &registry, &source, &bytes).await {
                    Ok(o) => break o,
                    Err(e) => {
                        let wait = backoff.next_delay();
                        tracing::warn!(error = %e, retry_in = ?wait, "taking a domain event from Kafka; trying again");
                        tokio::time::sleep(wait).await;
                    }
                }
            };
            if let Outcome::Refused(reason, org) = outcome {
                crate::metrics::domain_events("kafka", "refused", 1);
                let letter = match serde_json::from_slice::<serde_json::Value>(&bytes) {
                    Ok(serde_json::Value::Object(_)) => {
                        DeadLetter::invalid_record(source, org, None, reason, &bytes)
                    }
                    _ => DeadLetter::unparseable(source, reason, &bytes),
                };
                let encoded = letter.encode();
                let mut backoff = retry.schedule();
                while let Err((e, _)) = dlq
                    .send(
                        FutureRecord::<(), _>::to(&rejects).payload(&encoded),
                        Duration::from_secs(30),
                    )
                    .await
                {
                    let wait = backoff.next_delay();
                    tracing::warn!(error = %e, retry_in = ?wait, "dead-lettering a domain event");
                    tokio::time::sleep(wait).await;
                }
            }
            if let Err(e) = consumer.commit_message(&m, CommitMode::Sync) {
                // Read again after a restart or a rebalance: it causes nothing twice.
                tracing::warn!(error = %e, "committing a domain-events offset");
            }
        }
    }))
}

/// Takes one record: `Err` only when the store failed (try again).
async fn take(
    domain: &Domain,
    normalizer: &PhoneNormalizer,
    registry: &crate::registry::Registry,
    source: &Source,
    bytes: &[u8],
) -> Result<Outcome, crate::delivery::PublishError> {
    let record: Record = match serde_json::from_slice(bytes) {
        Ok(r) => r,
        Err(e) => {
            return Ok(Outcome::Refused(
                format!("not a domain-event record: {e}"),
                None,
            ))
        }
    };
    if record.v != 1 {
        return Ok(Outcome::Refused(
            format!("version {} is not one this server reads (1)", record.v),
            None,
        ));
    }
    match record.source.as_str() {
        "whatsapp" => {
            let Some(id) = record.bot_integration_id else {
                return Ok(Outcome::Refused(
                    "botIntegrationId is missing: a whatsapp record names its integration".into(),
                    None,
                ));
            };
            // Only to the org that registered the id: a record naming an id two orgs
            // registered, without saying whose, is dead-lettered.
            let integration = match domain
                .integration_for_record(record.organization_id, id)
                .await?
            {
                Ok(i) => i,
                Err(why) => return Ok(Outcome::Refused(why, record.organization_id)),
            };
            let org = integration.org;
            let hook: Webhook = match serde_json::from_str(record.body.get()) {
                Ok(h) => h,
                Err(e) => {
                    return Ok(Outcome::Refused(
                        format!("body is not a WhatsApp webhook: {e}"),
                        Some(org),
                    ))
                }
            };
            let account = registry
                .account_id(org)
                .await
                .ok()
                .flatten()
                .unwrap_or_default();
            domain
                .take_whatsapp(integration, account, hook, normalizer.clone())
                .await?;
            Ok(Outcome::Taken)
        }
        "event" => {
            // The org: the record's organizationId, or the one of the integration the
            // body names (appointment_booked and message events carry
            // botIntegrationId).
            let named = serde_json::from_str::<serde_json::Value>(record.body.get())
                .ok()
                .and_then(|b| {
                    b.get("botIntegrationId")
                        .and_then(serde_json::Value::as_i64)
                });
            let org = match (record.organization_id, named) {
                (Some(org), _) => org,
                (None, Some(id)) => match domain.integration_for_record(None, id).await? {
                    Ok(i) => i.org,
                    Err(why) => {
                        return Ok(Outcome::Refused(
                            format!("{why}, and the record names no organizationId"),
                            None,
                        ))
                    }
                },
                (None, None) => {
                    return Ok(Outcome::Refused(
                        "organizationId is missing, and the body names no botIntegrationId: an event record names its organization".into(),
                        None,
                    ))
                }
            };
            let fallback_id = format!(
                "kafka:{}:{}:{}",
                source.topic, source.partition, source.offset
            );
            let ev = match events::parse(
                record.body.get().as_bytes(),
                |p| super::contact_phone(normalizer, p),
                || fallback_id,
            ) {
                Ok(ev) => ev,
                Err(why) => return Ok(Outcome::Refused(why, Some(org))),
            };
            let taken = domain.take(org, ev).await?;
            crate::metrics::domain_events("kafka", if taken.new { "taken" } else { "repeated" }, 1);
            Ok(Outcome::Taken)
        }
        other => Ok(Outcome::Refused(
            format!("source {other:?} is not whatsapp or event"),
            None,
        )),
    }
}
