//! `conversation_inactive` timers. A conversation's timer is its `inactive_due`
//! column (armed, or re-armed, by each user message: last user message +
//! `domain.conversation_inactive_after`) and that column's partial index: a pending
//! timer costs no memory in the process, about 40 bytes on disk, and survives
//! restarts; one that fell due while the process was down fires at once when it
//! starts. One task sleeps until the earliest due time (or until a message arms an
//! earlier one), then fires what is due, up to 500 a transaction: each conversation's
//! timer is cleared and its event published in the same transaction, so each fires
//! once.

use super::payloads::{self, InactiveConversation};
use super::store::{self, Contact};
use super::{transcript, Domain, CONVERSATION_INACTIVE};
use crate::delivery::deliveries::NewEvent;
use crate::delivery::PublishError;
use bytes::Bytes;
use std::time::Duration;

/// Conversations fired per transaction.
const FIRE_AT_ONCE: usize = 500;
/// Longest sleep between two looks (a safety net; a message that arms an earlier
/// timer wakes the task at once).
const LOOK_AT_LEAST_EVERY: Duration = Duration::from_secs(60);

/// Wall-clock milliseconds that advance with tokio's clock: the same as the system
/// clock in a server, and under a paused test runtime it moves with
/// `tokio::time::advance`.
pub struct Clock {
    wall_ms: i64,
    start: tokio::time::Instant,
}

impl Clock {
    pub fn now() -> Self {
        Clock {
            wall_ms: crate::writer::now_ms(),
            start: tokio::time::Instant::now(),
        }
    }

    pub fn now_ms(&self) -> i64 {
        self.wall_ms + self.start.elapsed().as_millis() as i64
    }
}

impl Domain {
    /// Starts the timer task on the current runtime.
    pub fn start_timers(&self) {
        let me = self.clone();
        crate::tasks::spawn(async move {
            // A firing in hand is finished (it is one transaction); the process's stop
            // is heard between them.
            while !crate::tasks::is_stopping() {
                match me.fire_due().await {
                    Ok(n) if n == FIRE_AT_ONCE => continue,
                    Ok(_) => {}
                    Err(e) => {
                        // They stay armed; the store is given a moment before the next try.
                        tracing::warn!(error = %e, "firing conversation_inactive timers");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
                let now = me.now_ms();
                let next = me.db.read(store::next_due).await.ok().flatten();
                let wait = next.map_or(LOOK_AT_LEAST_EVERY, |due| {
                    Duration::from_millis(due.saturating_sub(now).max(0) as u64)
                        .min(LOOK_AT_LEAST_EVERY)
                });
                if wait.is_zero() {
                    continue;
                }
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = me.inner.timers.notified() => {}
                    () = crate::tasks::stopped() => {}
                }
            }
        });
    }

    /// Fires the timers due now (at most [`FIRE_AT_ONCE`]); answers how many fired.
    ///
    /// # Errors
    /// [`PublishError`]: none fired (they stay armed).
    pub async fn fire_due(&self) -> Result<usize, PublishError> {
        let now = self.now_ms();
        let endpoints = self.engine.endpoints_handle();
        let after = self.inner.config.conversation_inactive_after;
        let keep = self.inner.config.conversation_messages;
        let fired = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
        let lags = fired.clone();
        self.engine
            .publish_with(move |conn| {
                let due = store::due_conversations(conn, now, FIRE_AT_ONCE)?;
                let mut late = Vec::with_capacity(due.len());
                let inactive_for = payloads::iso_duration(after);
                let mut events = Vec::new();
                for key in due {
                    let Some(mut c) = store::conversation(conn, &key)? else {
                        continue;
                    };
                    late.push(now.saturating_sub(c.inactive_due_ms.unwrap_or(now)).max(0));
                    c.inactive_due_ms = None;
                    store::put_conversation(conn, &key, &c)?;
                    let subscribers = endpoints.subscribers(key.org, CONVERSATION_INACTIVE);
                    if subscribers.is_empty() {
                        continue;
                    }
                    let contact = store::contact(conn, key.org, &key.phone)?.unwrap_or(Contact {
                        phone: key.phone.clone(),
                        ..Contact::default()
                    });
                    let bot_id = store::integration_of(conn, key.org, key.bot_integration_id)?
                        .and_then(|i| i.bot_id);
                    let conversation = transcript(conn, &key, keep)?;
                    let payload = payloads::conversation_inactive(
                        &InactiveConversation {
                            fired_at_ms: now,
                            last_user_at_ms: c.last_user_at_ms.unwrap_or(now),
                            inactive_for: &inactive_for,
                            tags: c.tags(),
                            conversation: conversation.as_deref(),
                            bot_id,
                            bot_integration_id: key.bot_integration_id,
                        },
                        &contact,
                    );
                    events.push(NewEvent {
                        org: key.org,
                        event_type: CONVERSATION_INACTIVE.into(),
                        payload: Bytes::from(payload),
                        idempotency_key: None,
                        endpoints: subscribers,
                        due_at_ms: None,
                    });
                }
                *lags.lock() = late;
                Ok(events)
            })
            .await?;
        let fired = std::mem::take(&mut *fired.lock());
        for late_ms in &fired {
            crate::metrics::timer_fired(Duration::from_millis(*late_ms as u64));
        }
        Ok(fired.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::delivery::model::EndpointKind;
    use crate::delivery::DeliveryEngine;
    use leadstream_pipeline::PhoneNormalizer;

    fn hook(id: &str, from: &str, at_secs: i64) -> super::super::whatsapp::Webhook {
        serde_json::from_value(serde_json::json!({
            "object": "whatsapp_business_account",
            "entry": [{"changes": [{"field": "messages", "value": {
                "contacts": [{"wa_id": from, "profile": {"name": "Ann"}}],
                "messages": [{"from": from, "id": id, "timestamp": at_secs.to_string(),
                              "type": "text", "text": {"body": "hello"}}]}}]}]
        }))
        .unwrap()
    }

    fn fired(domain: &Domain) -> i64 {
        domain
            .db()
            .read_blocking(|conn| {
                Ok(conn.query_one(
                    "SELECT count(*) FROM events WHERE event_type = 'conversation_inactive'",
                    crate::db::sql::args![],
                    |r| r.get(0),
                )?)
            })
            .unwrap()
    }

    /// Waits (in real time, at most 10 s) until `f` holds; the paused clock moves a
    /// millisecond per look.
    async fn eventually(what: &str, f: impl Fn() -> bool) {
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(std::time::Instant::now() < until, "{what}");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Paused tokio time: the timer fires once, 23 h after the last user message, not
    /// a minute before; a new message re-arms it. The engine runs on a runtime of its
    /// own, so only the timer task's sleeps move the paused clock.
    #[test]
    fn conversation_inactive_fires_once_23_hours_after_the_last_user_message() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::load(None, |_| None).unwrap();
        let real = tokio::runtime::Runtime::new().unwrap();
        let engine = {
            let _in = real.enter();
            DeliveryEngine::start(dir.path(), &config.delivery).unwrap()
        };
        let paused = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        let domain = Domain::open(engine.clone(), &config.domain).unwrap();
        paused.block_on(async {
            engine
                .endpoints()
                .create(1, EndpointKind::Settings, "https://receiver.example/h".into(), 0)
                .await
                .unwrap();
            domain
                .register_integration(store::Integration {
                    bot_integration_id: 456,
                    org: 1,
                    bot_id: Some(123),
                    app_secret: None,
                    verify_token: None,
                    created_at_ms: 0,
                })
                .await
                .unwrap();
            let integration = domain.integrations_named(456).await.unwrap().remove(0);
            let normalizer = PhoneNormalizer::new();
            let message = |id: &'static str| {
                let (d, i, n) = (domain.clone(), integration.clone(), normalizer.clone());
                async move {
                    let at = d.now_ms() / 1000;
                    d.take_whatsapp(i, "acct".into(), hook(id, "14155550100", at), n)
                        .await
                        .unwrap();
                }
            };
            message("wamid.1").await;
            domain.start_timers();
            let minute = Duration::from_secs(60);
            tokio::time::sleep(Duration::from_secs(23 * 3600) - minute).await;
            assert_eq!(fired(&domain), 0, "fired early");
            tokio::time::sleep(2 * minute).await;
            eventually("fired at 23 h", || fired(&domain) == 1).await;
            // A message older than the last one, delivered late, does not re-arm it.
            let old_at = domain.now_ms() / 1000 - 24 * 3600;
            domain
                .take_whatsapp(
                    integration.clone(),
                    "acct".into(),
                    hook("wamid.0", "14155550100", old_at),
                    normalizer.clone(),
                )
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_secs(48 * 3600)).await;
            assert_eq!(fired(&domain), 1, "fired twice");
            // A new message re-arms it; one 12 h later pushes it back.
            message("wamid.2").await;
            tokio::time::sleep(Duration::from_secs(12 * 3600)).await;
            message("wamid.3").await;
            tokio::time::sleep(Duration::from_secs(12 * 3600)).await;
            assert_eq!(fired(&domain), 1, "the third message did not push the timer back");
            tokio::time::sleep(Duration::from_secs(11 * 3600) + 2 * minute).await;
            eventually("re-armed timer fired", || fired(&domain) == 2).await;
            // The payload: seed 000's fields, the contact named by WhatsApp.
            let payload: serde_json::Value = domain
                .db()
                .read_blocking(|conn| {
                    let p: Vec<u8> = conn.query_one(
                        "SELECT payload FROM events WHERE event_type = 'conversation_inactive' ORDER BY created_at DESC LIMIT 1",
                        crate::db::sql::args![],
                        |r| r.get(0),
                    )?;
                    Ok(serde_json::from_slice(&p).unwrap())
                })
                .unwrap();
            assert_eq!(payload["inactiveForDuration"], "PT23H");
            assert_eq!(payload["conversationStatus"], serde_json::json!(["replied"]));
            assert_eq!(payload["contactPhoneNumber"], "+14155550100");
            assert_eq!(payload["contactFullName"], "Ann");
            assert_eq!(payload["botId"], 123);
            assert_eq!(payload["botIntegrationId"], 456);
        });
        drop(paused);
        drop(real);
    }
}
