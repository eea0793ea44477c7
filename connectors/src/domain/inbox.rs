//! What a WhatsApp webhook causes, in one transaction per webhook: contacts named,
//! user messages added to their conversations (each re-arming its
//! `conversation_inactive` timer) and announced as seed 002's `incoming_message`,
//! failed statuses announced as seed 000's `message_delivery_failed` and run through
//! the `message_failed` triggers. A message id or a (status id, status) seen before
//! causes nothing.

use super::payloads::{self, Failure, Incoming};
use super::store::{self, Contact, ConversationKey, Integration, Message};
use super::whatsapp::{content_of, seconds_ms, Webhook};
use super::Domain;
use crate::db::sql::Sql;
use crate::delivery::deliveries::NewEvent;
use crate::delivery::model::EndpointKind;
use crate::delivery::store::DbError;
use crate::delivery::PublishError;
use crate::writer::now_ms;
use bytes::Bytes;
use leadstream_pipeline::PhoneNormalizer;
use std::sync::Arc;

/// What a webhook did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Inbox {
    /// User messages taken (not seen before).
    pub messages: usize,
    /// Statuses taken.
    pub statuses: usize,
    /// Messages and statuses seen before (redeliveries): nothing was done.
    pub repeated: usize,
    /// Deliveries published.
    pub deliveries: usize,
}

impl Domain {
    /// Takes a WhatsApp webhook of `integration`. `account_id` is the org's account
    /// UUID (seed 002's `user_id`).
    ///
    /// # Errors
    /// [`PublishError`]: nothing of it was taken.
    pub async fn take_whatsapp(
        &self,
        integration: Integration,
        account_id: String,
        hook: Webhook,
        normalizer: PhoneNormalizer,
    ) -> Result<Inbox, PublishError> {
        let endpoints = self.engine.endpoints_handle();
        let after = self.inner.config.conversation_inactive_after;
        let keep = self.inner.config.conversation_messages;
        let counts = Arc::new(parking_lot::Mutex::new(Inbox::default()));
        let out = counts.clone();
        let published = self
            .engine
            .publish_with(move |conn| {
                let mut events = Vec::new();
                let mut counted = Inbox::default();
                let i = &integration;
                let org = i.org;
                let phone_of = |wa_id: &str| {
                    super::contact_phone(
                        &normalizer,
                        &format!("+{}", wa_id.trim_start_matches('+')),
                    )
                };
                // Who gets what this webhook causes: read once, not per message.
                let incoming_to: Vec<_> = endpoints
                    .subscribers(org, super::INCOMING_MESSAGE)
                    .into_iter()
                    .filter(|e| e.kind == EndpointKind::Registry)
                    .collect();
                let failed_to = endpoints.subscribers(org, super::MESSAGE_DELIVERY_FAILED);
                for change in hook.entry.iter().flat_map(|e| &e.changes) {
                    if change.field.as_deref().is_some_and(|f| f != "messages") {
                        continue;
                    }
                    let v = &change.value;
                    for c in &v.contacts {
                        let (Some(phone), Some(name)) = (
                            phone_of(&c.wa_id),
                            c.profile.as_ref().and_then(|p| p.name.clone()),
                        ) else {
                            continue;
                        };
                        name_contact(conn, org, i.bot_integration_id, &phone, &name)?;
                    }
                    for m in &v.messages {
                        let (Some(phone), Some(at_ms)) =
                            (phone_of(&m.from), seconds_ms(&m.timestamp))
                        else {
                            continue;
                        };
                        if !store::first_sight(
                            conn,
                            org,
                            i.bot_integration_id,
                            &format!("m:{}", m.id),
                            now_ms(),
                        )? {
                            counted.repeated += 1;
                            continue;
                        }
                        counted.messages += 1;
                        let key = ConversationKey {
                            org,
                            bot_integration_id: i.bot_integration_id,
                            phone: phone.clone(),
                        };
                        let (content_type, content, media_url) = content_of(m);
                        store::add_message(
                            conn,
                            &key,
                            &Message {
                                at_ms,
                                sender: "user".into(),
                                content,
                                content_type: content_type.into(),
                                media_url,
                            },
                        )?;
                        let mut c = store::conversation(conn, &key)?.unwrap_or_default();
                        c.replied = true;
                        // Only a message newer than the last one (re-)arms the timer: an
                        // older one WhatsApp delivers late must not fire it again.
                        if c.last_user_at_ms.is_none_or(|last| at_ms > last) {
                            c.last_user_at_ms = Some(at_ms);
                            c.inactive_due_ms =
                                Some(at_ms.saturating_add(after.as_millis() as i64));
                        }
                        store::put_conversation(conn, &key, &c)?;
                        if incoming_to.is_empty() {
                            continue;
                        }
                        let recent = store::recent_messages(conn, &key, keep)?;
                        let last_user = store::last_message_of(conn, &key, "user")?;
                        let last_bot = store::last_message_of(conn, &key, "bot")?;
                        let payload = payloads::incoming_message(&Incoming {
                            messages: &recent,
                            phone: &phone,
                            recipient_name: c.profile_name.as_deref().unwrap_or(""),
                            user_id: &account_id,
                            last_user: last_user.as_ref(),
                            last_bot: last_bot.as_ref(),
                        });
                        events.push(NewEvent {
                            org,
                            event_type: super::INCOMING_MESSAGE.into(),
                            payload: Bytes::from(payload),
                            idempotency_key: None,
                            endpoints: incoming_to.clone(),
                            due_at_ms: None,
                        });
                    }
                    for st in &v.statuses {
                        if !store::first_sight(
                            conn,
                            org,
                            i.bot_integration_id,
                            &format!("s:{}:{}", st.id, st.status),
                            now_ms(),
                        )? {
                            counted.repeated += 1;
                            continue;
                        }
                        counted.statuses += 1;
                        if st.status != "failed" {
                            continue;
                        }
                        let Some(phone) = phone_of(&st.recipient_id) else {
                            continue;
                        };
                        let contact = store::contact(conn, org, &phone)?.unwrap_or(Contact {
                            phone: phone.clone(),
                            ..Contact::default()
                        });
                        let err = st.errors.first();
                        let at_ms = seconds_ms(&st.timestamp).unwrap_or_else(now_ms);
                        let failure = Failure {
                            at_ms,
                            id: &st.id,
                            code: err.and_then(|e| e.code),
                            title: err.and_then(|e| e.title.as_deref()),
                            message: err.and_then(|e| e.message.as_deref()),
                            details: err
                                .and_then(|e| e.error_data.as_ref())
                                .and_then(|d| d.details.as_deref()),
                        };
                        if !failed_to.is_empty() {
                            events.push(NewEvent {
                                org,
                                event_type: super::MESSAGE_DELIVERY_FAILED.into(),
                                payload: Bytes::from(payloads::message_delivery_failed(
                                    &failure,
                                    &contact,
                                    i.bot_integration_id,
                                )),
                                idempotency_key: None,
                                endpoints: failed_to.clone(),
                                due_at_ms: None,
                            });
                        }
                        let message = failed_message_object(&contact, &failure);
                        events.extend(super::action_runs(
                            conn,
                            &endpoints,
                            org,
                            "message_failed",
                            "message",
                            &message,
                        )?);
                    }
                }
                *out.lock() = counted;
                Ok(events)
            })
            .await?;
        let mut inbox = counts.lock().clone();
        inbox.deliveries = published.iter().map(|p| p.jobs.len()).sum();
        crate::metrics::domain_events(
            "whatsapp",
            "taken",
            (inbox.messages + inbox.statuses) as u64,
        );
        crate::metrics::domain_events("whatsapp", "repeated", inbox.repeated as u64);
        if inbox.messages > 0 {
            self.inner.timers.notify_one();
        }
        Ok(inbox)
    }
}

/// Names the contact (when it has no name yet) and its conversation from a WhatsApp
/// profile.
fn name_contact(
    conn: Sql<'_>,
    org: leadstream_pipeline::OrgId,
    integration: i64,
    phone: &str,
    name: &str,
) -> Result<(), DbError> {
    let mut contact = store::contact(conn, org, phone)?.unwrap_or(Contact {
        phone: phone.to_owned(),
        ..Contact::default()
    });
    if contact.full_name.is_none() {
        contact.full_name = Some(name.to_owned());
        contact.updated_at_ms = now_ms();
        store::put_contact(conn, org, &contact)?;
    }
    let key = ConversationKey {
        org,
        bot_integration_id: integration,
        phone: phone.to_owned(),
    };
    let mut c = store::conversation(conn, &key)?.unwrap_or_default();
    c.profile_name = Some(name.to_owned());
    store::put_conversation(conn, &key, &c)
}

/// Seed 003's message object for a failed WhatsApp status, its fields and nothing
/// else: the participant is the contact; WhatsApp message ids (wamids) are not
/// integers, so `id` is null.
fn failed_message_object(contact: &Contact, f: &Failure<'_>) -> String {
    serde_json::json!({
        "id": null,
        "participant": {
            "id": null,
            "event_id": null,
            "display_name": contact.full_name,
            "name": contact.full_name,
            "phone": contact.phone,
            "normalized_phone": contact.phone,
            "email": contact.email,
            "state": null,
        },
        "started": null,
        "comm_type": "whatsapp",
        "last_out": leadstream_pipeline::time::format_rfc3339_ms(f.at_ms),
        "last_in": null,
    })
    .to_string()
}
