//! Domain events in, seed events out: typed calendar and booking events
//! (`POST /api/v1/events`, [`events`]), the contacts they tell about, and the
//! outbound events they cause, published through the delivery engine:
//! - seed 000's `appointment_booked` to the org's settings URL and every registry
//!   endpoint subscribed to it ([`payloads::appointment_booked`]);
//! - for each of seed 004's trigger types, one run of every enabled action of every
//!   enabled trigger of that type: seed 003's payload for the trigger's class with a
//!   fresh `apptoto_id` ([`payloads::action_run`]), delivered to the action's URL.
//!
//! Taking an event, updating its contact and publishing what it causes is one
//! transaction of `webhooks.db` ([`DeliveryEngine::publish_with`]): a repeated event
//! id causes nothing new, and an event whose 202 was sent is never lost.

pub mod events;
pub mod payloads;
pub mod store;

use crate::delivery::deliveries::NewEvent;
use crate::delivery::store::{Db, DbError};
use crate::delivery::{DeliveryEngine, PublishError};
use crate::writer::now_ms;
use bytes::Bytes;
use events::{Body, DomainEvent};
use leadstream_pipeline::OrgId;
use std::sync::Arc;

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
}

impl Domain {
    /// Creates the domain tables in `webhooks.db` if needed.
    ///
    /// # Errors
    /// [`DbError`].
    pub fn open(engine: DeliveryEngine) -> Result<Self, DbError> {
        let db = engine.db().clone();
        db.write_blocking(|conn| Ok(conn.execute_batch(store::SCHEMA)?))?;
        Ok(Self { db, engine })
    }

    pub fn db(&self) -> &Arc<Db> {
        &self.db
    }

    pub fn engine(&self) -> &DeliveryEngine {
        &self.engine
    }

    /// Takes `ev` for `org`: once per id, it updates the contact and publishes what
    /// it causes, all in one transaction.
    ///
    /// # Errors
    /// [`PublishError`]: nothing was taken.
    pub async fn take(&self, org: OrgId, ev: DomainEvent) -> Result<Taken, PublishError> {
        let kind = ev.kind.clone();
        let armed = if matches!(ev.body, Body::Trigger { .. }) {
            let k = kind.clone();
            self.db
                .read(move |conn| store::armed_actions(conn, org, &k))
                .await?
        } else {
            Vec::new()
        };
        let endpoints = self.engine.endpoints();
        let subscribers = match ev.body {
            Body::AppointmentBooked(_) => endpoints.subscribers(org, &kind),
            Body::Trigger { .. } => Vec::new(),
        };
        let actions: Vec<_> = armed
            .into_iter()
            .filter_map(|a| endpoints.by_id(a.endpoint_id).map(|e| (a, e)))
            .collect();
        let id = ev.id.clone();
        let new = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let was_new = new.clone();
        let published = self
            .engine
            .publish_with(move |conn| {
                let now = now_ms();
                if !store::take_event(conn, org, &ev.id, &ev.kind, now)? {
                    return Ok(Vec::new());
                }
                was_new.store(true, std::sync::atomic::Ordering::Relaxed);
                match &ev.body {
                    Body::AppointmentBooked(b) => {
                        let contact = store::merge_contact(
                            conn,
                            org,
                            &store::Contact {
                                phone: b.phone.clone(),
                                email: b.email.clone(),
                                full_name: b.full_name.clone(),
                                first_name: b.first_name.clone(),
                                last_name: b.last_name.clone(),
                                metadata: b.metadata.clone(),
                                updated_at_ms: now,
                            },
                        )?;
                        if subscribers.is_empty() {
                            return Ok(Vec::new());
                        }
                        let payload =
                            payloads::appointment_booked(ev.occurred_at_us, b, &contact, None);
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
                        ..
                    } => {
                        if let Some(phone) = &contact.phone {
                            store::merge_contact(
                                conn,
                                org,
                                &store::Contact {
                                    phone: phone.clone(),
                                    email: contact.email.clone(),
                                    full_name: contact.name.clone(),
                                    updated_at_ms: now,
                                    ..store::Contact::default()
                                },
                            )?;
                        }
                        Ok(actions
                            .into_iter()
                            .map(|(_, endpoint)| NewEvent {
                                org,
                                event_type: ev.kind.clone(),
                                payload: Bytes::from(payloads::action_run(key, object.get())),
                                idempotency_key: None,
                                endpoints: vec![endpoint],
                                due_at_ms: None,
                            })
                            .collect())
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

/// The one event type a trigger action's endpoint `endpoint_id` is subscribed to:
/// nothing publishes it, so no fan-out reaches the action; its runs are addressed to
/// it directly.
pub fn action_subscription(endpoint_id: i64) -> String {
    format!("trigger-action:{endpoint_id}")
}
