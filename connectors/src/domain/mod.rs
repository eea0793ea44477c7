//! Domain events in, seed events out. Sources: typed calendar and booking events
//! (`POST /api/v1/events`, [`events`]) and WhatsApp Cloud API webhooks
//! ([`whatsapp`], [`inbox`]). State: contacts, conversations with their messages and
//! status tags, and one inactivity timer per conversation ([`timers`]). What goes out,
//! through the delivery engine:
//! - seed 000's `appointment_booked`, `message_delivery_failed` and
//!   `conversation_inactive`, to the org's settings URL and every registry endpoint
//!   subscribed to them ([`payloads`]);
//! - seed 002's `incoming_message` for every WhatsApp user message, to the registry
//!   endpoints subscribed to it;
//! - for each of seed 004's trigger types, one run of every enabled action of every
//!   enabled trigger of that type: seed 003's payload for the trigger's class with a
//!   fresh `apptoto_id`, delivered to the action's URL.
//!
//! Taking an event, updating the state it changes and publishing what it causes is
//! one transaction of `webhooks.db` ([`DeliveryEngine::publish_with`]): a repeated
//! event id (or WhatsApp message id, or status) causes nothing new, and an event whose
//! 2xx was sent is never lost.

pub mod events;
pub mod inbox;
pub mod kafka;
pub mod payloads;
mod records;
pub mod store;
pub mod timers;
pub mod whatsapp;

use crate::config::DomainConfig;
use crate::db::sql::Sql;
use crate::delivery::deliveries::NewEvent;
use crate::delivery::endpoints::Endpoints;
use crate::delivery::store::{Db, DbError};
use crate::delivery::{DeliveryEngine, PublishError};
use bytes::Bytes;
use events::{Body, DomainEvent};
use leadstream_pipeline::OrgId;
use std::sync::Arc;
use store::{Contact, ConversationKey, Message};

/// Seed 002's event type.
pub const INCOMING_MESSAGE: &str = "incoming_message";
/// Seed 000's event types.
pub const MESSAGE_DELIVERY_FAILED: &str = "message_delivery_failed";
pub const CONVERSATION_INACTIVE: &str = "conversation_inactive";

/// What taking a domain event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    pub id: String,
    /// False: the id was taken before, nothing was published.
    pub new: bool,
    /// Deliveries published.
    pub deliveries: usize,
}

/// The domain service: cheap to clone.
#[derive(Clone)]
pub struct Domain {
    db: Arc<Db>,
    engine: DeliveryEngine,
    inner: Arc<Inner>,
}

struct Inner {
    config: DomainConfig,
    /// Woken when a timer may have been armed earlier than the one waited for.
    timers: tokio::sync::Notify,
    /// Made at first use, on the runtime that runs the timers.
    clock: std::sync::OnceLock<timers::Clock>,
}

impl Domain {
    /// Domain state on the engine's `webhooks.db`.
    ///
    /// # Errors
    /// [`DbError`].
    pub fn open(engine: DeliveryEngine, config: &DomainConfig) -> Result<Self, DbError> {
        // Its tables are webhooks.db's (db::migrations::SQLITE_WEBHOOKS).
        let db = engine.db().clone();
        Ok(Self {
            db,
            engine,
            inner: Arc::new(Inner {
                config: config.clone(),
                timers: tokio::sync::Notify::new(),
                clock: std::sync::OnceLock::new(),
            }),
        })
    }

    pub fn db(&self) -> &Arc<Db> {
        &self.db
    }

    /// The timers' clock ([`timers::Clock`]).
    pub fn now_ms(&self) -> i64 {
        self.inner.clock.get_or_init(timers::Clock::now).now_ms()
    }

    pub fn engine(&self) -> &DeliveryEngine {
        &self.engine
    }

    /// Registers a WhatsApp integration of its org; false when that org registered its
    /// id before (another org's integration with the same id is another one).
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn register_integration(&self, i: store::Integration) -> Result<bool, DbError> {
        self.db
            .write(move |conn| store::insert_integration(conn, &i))
            .await
    }

    /// Every org's integration with id `id`, oldest first.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn integrations_named(&self, id: i64) -> Result<Vec<store::Integration>, DbError> {
        self.db
            .read(move |conn| store::integrations_named(conn, id))
            .await
    }

    /// The integration `id` the org a Kafka record names (or, naming none, the one org
    /// that registered it): `Err` with why when there is none, or several orgs
    /// registered the id and the record does not say whose it is.
    ///
    /// # Errors
    /// [`DbError`], inside.
    pub async fn integration_for_record(
        &self,
        org: Option<OrgId>,
        id: i64,
    ) -> Result<Result<store::Integration, String>, DbError> {
        let mut all = self.integrations_named(id).await?;
        if let Some(org) = org {
            all.retain(|i| i.org == org);
        }
        Ok(match all.len() {
            1 => Ok(all.remove(0)),
            0 => Err(match org {
                Some(org) => format!("organization {org} has no WhatsApp integration {id}"),
                None => format!("no WhatsApp integration {id}"),
            }),
            n => Err(format!(
                "WhatsApp integration {id} is registered by {n} organizations: the record must name its organizationId"
            )),
        })
    }

    /// Deletes `org`'s integration `id`; false when it has none.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn delete_integration(&self, org: OrgId, id: i64) -> Result<bool, DbError> {
        self.db
            .write(move |conn| store::delete_integration(conn, org, id))
            .await
    }

    /// Takes `ev` for `org`: once per id, it updates the state it tells about and
    /// publishes what it causes, all in one transaction.
    ///
    /// # Errors
    /// [`PublishError`]: nothing was taken.
    pub async fn take(&self, org: OrgId, ev: DomainEvent) -> Result<Taken, PublishError> {
        let endpoints = self.engine.endpoints_handle();
        let keep = self.inner.config.conversation_messages;
        let id = ev.id.clone();
        let new = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let was_new = new.clone();
        let published = self
            .engine
            .publish_with(move |conn| {
                let now = crate::writer::now_ms();
                if !store::take_event(conn, org, &ev.id, &ev.kind, now)? {
                    return Ok(Vec::new());
                }
                was_new.store(true, std::sync::atomic::Ordering::Relaxed);
                match &ev.body {
                    Body::AppointmentBooked(b) => {
                        let contact = store::merge_contact(
                            conn,
                            org,
                            &Contact {
                                phone: b.phone.clone(),
                                email: b.email.clone(),
                                full_name: b.full_name.clone(),
                                first_name: b.first_name.clone(),
                                last_name: b.last_name.clone(),
                                metadata: b.metadata.clone(),
                                updated_at_ms: now,
                            },
                        )?;
                        store::tag_conversations(conn, org, &b.phone, "appointment_booked")?;
                        // The booking's own conversation is tagged even before its first
                        // message.
                        let key = ConversationKey {
                            org,
                            bot_integration_id: b.bot_integration_id,
                            phone: b.phone.clone(),
                        };
                        let mut c = store::conversation(conn, &key)?.unwrap_or_default();
                        c.appointment_booked = true;
                        store::put_conversation(conn, &key, &c)?;
                        let subscribers = endpoints.subscribers(org, &ev.kind);
                        if subscribers.is_empty() {
                            return Ok(Vec::new());
                        }
                        let key = ConversationKey {
                            org,
                            bot_integration_id: b.bot_integration_id,
                            phone: b.phone.clone(),
                        };
                        let conversation = transcript(conn, &key, keep)?;
                        let payload = payloads::appointment_booked(
                            ev.occurred_at_us,
                            b,
                            &contact,
                            conversation.as_deref(),
                        );
                        Ok(vec![NewEvent {
                            org,
                            event_type: ev.kind.clone(),
                            payload: Bytes::from(payload),
                            idempotency_key: None,
                            endpoints: subscribers,
                            due_at_ms: None,
                        }])
                    }
                    Body::Trigger {
                        key,
                        object,
                        contact,
                        conversation,
                        ..
                    } => {
                        if let Some(phone) = &contact.phone {
                            store::merge_contact(
                                conn,
                                org,
                                &Contact {
                                    phone: phone.clone(),
                                    email: contact.email.clone(),
                                    full_name: contact.name.clone(),
                                    updated_at_ms: now,
                                    ..Contact::default()
                                },
                            )?;
                            if ev.kind == "participant_added_to_stop_list" {
                                store::tag_conversations(conn, org, phone, "opted_out")?;
                            }
                            if let (Some(said), "message_sent") = (conversation, ev.kind.as_str()) {
                                bot_said(conn, org, phone, said, ev.occurred_at_us)?;
                            }
                        }
                        action_runs(conn, &endpoints, org, &ev.kind, key, object.get())
                    }
                }
            })
            .await?;
        Ok(Taken {
            id,
            new: new.load(std::sync::atomic::Ordering::Relaxed),
            deliveries: published.iter().map(|p| p.jobs.len()).sum(),
        })
    }
}

/// A bot message (a `message_sent` event naming its conversation) added to it.
fn bot_said(
    conn: Sql<'_>,
    org: OrgId,
    phone: &str,
    said: &events::Said,
    at_us: i64,
) -> Result<(), DbError> {
    let key = ConversationKey {
        org,
        bot_integration_id: said.bot_integration_id,
        phone: phone.to_owned(),
    };
    let at_ms = at_us.div_euclid(1000);
    store::add_message(
        conn,
        &key,
        &Message {
            at_ms,
            sender: "bot".into(),
            content: said.content.clone(),
            content_type: "text".into(),
            media_url: None,
        },
    )?;
    let mut c = store::conversation(conn, &key)?.unwrap_or_default();
    c.last_bot_at_ms = Some(c.last_bot_at_ms.unwrap_or(i64::MIN).max(at_ms));
    store::put_conversation(conn, &key, &c)
}

/// The conversation's newest messages as one paragraph, `None` when it has none.
fn transcript(
    conn: Sql<'_>,
    key: &ConversationKey,
    keep: usize,
) -> Result<Option<String>, DbError> {
    let recent = store::recent_messages(conn, key, keep)?;
    Ok((!recent.is_empty()).then(|| payloads::paragraph(&recent)))
}

/// One run per enabled action of the org's enabled triggers of `kind`: seed 003's
/// payload (`object` under `key`, a fresh `apptoto_id`) addressed to the action's
/// endpoint. Read inside the publishing transaction, so a trigger disabled before it
/// commits does not run.
///
/// # Errors
/// [`DbError`].
pub fn action_runs(
    conn: Sql<'_>,
    endpoints: &Endpoints,
    org: OrgId,
    kind: &str,
    key: &str,
    object: &str,
) -> Result<Vec<NewEvent>, DbError> {
    Ok(store::armed_actions(conn, org, kind)?
        .into_iter()
        .filter_map(|a| endpoints.by_id(a.endpoint_id))
        .map(|endpoint| NewEvent {
            org,
            event_type: kind.to_owned(),
            payload: Bytes::from(payloads::action_run(key, object)),
            idempotency_key: None,
            endpoints: vec![endpoint],
            due_at_ms: None,
        })
        .collect())
}

/// A contact's phone key: `raw` as ingest normalizes it (libphonenumber), or, when
/// libphonenumber does not take it but it is written in E.164 (`+` and 2 to 15
/// digits, no leading 0), `raw` as given. Messaging platforms and calendars send
/// numbers libphonenumber does not know (new ranges, test numbers, the seeds' own
/// `+1234567890`); their events are not refused for it, and the number is not
/// rewritten either.
pub fn contact_phone(
    normalizer: &leadstream_pipeline::PhoneNormalizer,
    raw: &str,
) -> Option<String> {
    if let Some(p) = normalizer.normalize(raw) {
        return Some(p.to_string());
    }
    let digits = raw.strip_prefix('+')?;
    let e164 = (2..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    e164.then(|| raw.to_owned())
}

/// The one event type a trigger action's endpoint `endpoint_id` is subscribed to:
/// nothing publishes it, so no fan-out reaches the action; its runs are addressed to
/// it directly.
pub fn action_subscription(endpoint_id: i64) -> String {
    format!("trigger-action:{endpoint_id}")
}

#[cfg(test)]
mod tests {
    use super::contact_phone;
    use leadstream_pipeline::PhoneNormalizer;

    #[test]
    fn a_contact_phone_is_normalized_or_kept_when_it_is_e164_libphonenumber_does_not_know() {
        let n = PhoneNormalizer::new();
        assert_eq!(
            contact_phone(&n, "+1 (415) 555-0100").as_deref(),
            Some("+14155550100")
        );
        // Seed 000's example number: E.164 in form, not a valid US number.
        assert_eq!(
            contact_phone(&n, "+1234567890").as_deref(),
            Some("+1234567890")
        );
        for bad in [
            "1234567890",
            "+0123456",
            "+1",
            "+1234567890123456",
            "+12-34",
            "phone",
        ] {
            assert_eq!(contact_phone(&n, bad), None, "{bad}");
        }
    }
}
