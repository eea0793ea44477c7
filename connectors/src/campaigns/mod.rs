//! Campaign sends: audiences, opt-outs, sends with event and audience filters, which
//! leads are eligible at a send's instant, and their materialization into
//! `campaign_send` deliveries through the delivery engine.
//!
//! Materializing a send happens in two steps, each durable before the next:
//! 1. its eligible set is evaluated at the send's instant T and fixed, once
//!    (`send_leads`, `materialized_at`): later events, opt-outs or filters do not
//!    change it;
//! 2. the set is emitted in chunks: each chunk's deliveries are published and its
//!    leads marked emitted in one transaction of `webhooks.db`.
//!
//! A process killed anywhere restarts with the set fixed and the unemitted rest of it
//! picked up by the scheduler: no lead is emitted twice, none is lost.

pub mod audience;
pub mod model;
pub mod store;

use crate::config::SendsConfig;
use crate::delivery::deliveries::NewEvent;
use crate::delivery::store::{Db, DbError};
use crate::delivery::{DeliveryEngine, PublishError};
use crate::writer::{now_ms, EventWriter};
use bytes::Bytes;
use leadstream_pipeline::eligibility::{self, Lead, Question, Summary};
use leadstream_pipeline::time::format_rfc3339_short_us;
use leadstream_pipeline::{OrgId, Phone};
use model::{Campaign, Send};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// The event type of a campaign's deliveries.
pub const EVENT_TYPE: &str = "campaign_send";
/// Leads published per transaction while emitting a send.
const EMIT_CHUNK: usize = 2_000;
/// How often the scheduler looks for due sends.
const SCHEDULER_EVERY: Duration = Duration::from_secs(1);

/// What one materialization did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Materialized {
    /// Deliveries this run published.
    pub emitted: u64,
    /// Leads of the send's eligible set emitted before this run.
    #[serde(rename = "alreadyEmitted")]
    pub already_emitted: u64,
}

/// Why a materialization did not finish.
#[derive(Debug, thiserror::Error)]
pub enum MaterializeError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error("no send {0}")]
    NoSend(i64),
}

/// The campaign service: cheap to clone.
#[derive(Clone)]
pub struct Campaigns {
    inner: Arc<Inner>,
}

struct Inner {
    db: Arc<Db>,
    engine: DeliveryEngine,
    writer: EventWriter,
    config: SendsConfig,
    /// One materialization of a send at a time.
    running: Mutex<HashMap<i64, Arc<tokio::sync::Mutex<()>>>>,
}

impl Campaigns {
    /// Creates the campaign tables in `webhooks.db` if needed.
    ///
    /// # Errors
    /// [`DbError`].
    pub fn open(
        engine: DeliveryEngine,
        writer: EventWriter,
        config: &SendsConfig,
    ) -> Result<Self, DbError> {
        let db = engine.db().clone();
        db.write_blocking(|conn| Ok(conn.execute_batch(store::SCHEMA)?))?;
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                engine,
                writer,
                config: config.clone(),
                running: Mutex::new(HashMap::new()),
            }),
        })
    }

    pub fn db(&self) -> &Arc<Db> {
        &self.inner.db
    }

    pub fn engine(&self) -> &DeliveryEngine {
        &self.inner.engine
    }

    /// Whether the event index is warm (eligibility needs every stored event).
    pub fn is_ready(&self) -> bool {
        self.inner.writer.is_ready()
    }

    /// Starts the scheduler: every second, each send of a scheduled or running
    /// campaign due within `sends.materialize_ahead`, or fixed but not fully emitted
    /// (a restart after a kill), is materialized.
    pub fn start_scheduler(&self) {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SCHEDULER_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if !me.is_ready() {
                    continue;
                }
                if let Err(e) = me.run_due().await {
                    tracing::warn!(error = %e, "campaign scheduler");
                }
            }
        });
    }

    async fn run_due(&self) -> Result<(), MaterializeError> {
        let ahead = self.inner.config.materialize_ahead.as_micros() as i64;
        let due_us = now_ms() * 1000 + ahead;
        let due = self
            .inner
            .db
            .read(move |conn| store::due_sends(conn, due_us, 100))
            .await?;
        for send in due {
            let id = send.campaign_id;
            let campaign = self
                .inner
                .db
                .read(move |conn| store::campaign(conn, id))
                .await?;
            if campaign.is_some_and(|c| c.state.materializes()) {
                let m = self.materialize(send.id).await?;
                if m.emitted > 0 {
                    tracing::info!(send = send.id, emitted = m.emitted, "send materialized");
                }
            }
        }
        Ok(())
    }

    /// The leads of `send` eligible at `at_us` (in phone order), with the summary.
    /// Waits until every acknowledged event is in the index (read your writes).
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn eligible(&self, send: &Send, at_us: i64) -> Result<(Vec<Lead>, Summary), DbError> {
        self.inner.writer.indexed_now().await;
        let s = send.clone();
        let (leads, opted_out, filter) = self
            .inner
            .db
            .read(move |conn| {
                let leads = store::audience(conn, s.campaign_id)?;
                let out = store::opted_out(conn, s.org)?;
                let filter = if s.use_audience_filter {
                    store::audience_filter(conn, s.id)?
                } else {
                    None
                };
                Ok((leads, out, filter))
            })
            .await?;
        let index = self.inner.writer.event_index().clone();
        let send = send.clone();
        let out = tokio::task::spawn_blocking(move || {
            let q = Question {
                org: send.org,
                at_us,
                opted_out: &opted_out,
                audience_filter: filter.as_ref(),
                event_filter: send.event_filter.as_ref(),
            };
            let (kept, summary) = eligibility::evaluate(&q, &leads, &index);
            let mut leads = leads;
            let mut keep = vec![false; leads.len()];
            for i in kept {
                keep[i] = true;
            }
            let mut it = keep.into_iter();
            leads.retain(|_| it.next().unwrap_or(false));
            (leads, summary)
        })
        .await
        .map_err(|_| DbError::Stopped)?;
        Ok(out)
    }

    /// Materializes `send_id`: fixes its eligible set at its instant (first time
    /// only), then publishes a delivery for each lead of the set not emitted yet.
    ///
    /// # Errors
    /// [`MaterializeError`]: what was emitted before the error stays emitted; a retry
    /// carries on from there.
    pub async fn materialize(&self, send_id: i64) -> Result<Materialized, MaterializeError> {
        let lock = self
            .inner
            .running
            .lock()
            .entry(send_id)
            .or_default()
            .clone();
        let _one_at_a_time = lock.lock().await;
        let send = self
            .inner
            .db
            .read(move |conn| store::send(conn, send_id))
            .await?
            .ok_or(MaterializeError::NoSend(send_id))?;
        if send.materialized_at_ms.is_none() {
            let (leads, summary) = self.eligible(&send, send.time.at_us).await?;
            let phones: Vec<Phone> = leads.iter().map(|l| l.phone).collect();
            let fixed = self
                .inner
                .db
                .write(move |conn| store::fix_eligible(conn, send_id, &phones, now_ms()))
                .await?;
            if fixed {
                tracing::info!(send = send_id, ?summary, "send's eligible set fixed");
            }
        }
        let (already, _) = self
            .inner
            .db
            .read(move |conn| store::emitted_counts(conn, send_id))
            .await?;
        let campaign_id = send.campaign_id;
        let campaign = self
            .inner
            .db
            .read(move |conn| store::campaign(conn, campaign_id))
            .await?
            .ok_or(MaterializeError::NoSend(send_id))?;
        let mut emitted = 0;
        let mut after = Phone(0);
        loop {
            let chunk = self
                .inner
                .db
                .read(move |conn| store::to_emit(conn, send_id, campaign_id, after, EMIT_CHUNK))
                .await?;
            let Some(last) = chunk.last() else {
                break;
            };
            after = last.phone;
            emitted += self.emit(&campaign, &send, chunk).await?;
        }
        let now = now_ms();
        self.inner
            .db
            .write(move |conn| {
                store::mark_emitted_all(conn, send_id)?;
                let Some(c) = store::campaign(conn, campaign_id)? else {
                    return Ok(());
                };
                let next = match c.state {
                    model::CampaignState::Scheduled | model::CampaignState::Running
                        if store::all_sends_emitted(conn, campaign_id)? =>
                    {
                        Some(model::CampaignState::Completed)
                    }
                    model::CampaignState::Scheduled => Some(model::CampaignState::Running),
                    _ => None,
                };
                if let Some(state) = next {
                    store::set_state(conn, campaign_id, state, None, now)?;
                }
                Ok(())
            })
            .await?;
        Ok(Materialized {
            emitted,
            already_emitted: already,
        })
    }

    /// Publishes one chunk of a send's leads and marks them emitted, in one
    /// transaction.
    async fn emit(
        &self,
        campaign: &Campaign,
        send: &Send,
        chunk: Vec<store::ToEmit>,
    ) -> Result<u64, MaterializeError> {
        let endpoint = self.inner.engine.endpoints().by_id(campaign.endpoint_id);
        let scheduled_for = format_rfc3339_short_us(send.time.at_us);
        let mut events = Vec::with_capacity(chunk.len());
        let mut phones = Vec::with_capacity(chunk.len());
        for lead in &chunk {
            let body = DeliveryBody {
                kind: EVENT_TYPE,
                campaign_id: campaign.id,
                send_id: send.id,
                scheduled_for: &scheduled_for,
                phone_e164: lead.phone.to_string(),
                external_id: lead.external_id.as_deref(),
                variables: serde_json::value::RawValue::from_string(lead.variables.clone())
                    .unwrap_or_else(|_| {
                        serde_json::value::RawValue::from_string("{}".into()).expect("JSON")
                    }),
                template_name: &send.template_name,
                language: &send.language,
            };
            let payload = serde_json::to_vec(&body).expect("a delivery body serializes");
            events.push(NewEvent {
                org: send.org,
                event_type: EVENT_TYPE.to_owned(),
                payload: Bytes::from(payload),
                idempotency_key: None,
                // A deleted endpoint: the deliveries are still logged, and fail
                // saying so.
                endpoints: endpoint.iter().cloned().collect(),
            });
            phones.push(lead.phone);
        }
        let send_id = send.id;
        let published = self
            .inner
            .engine
            .publish_many_and(events, move |conn, published| {
                let marks: Vec<(Phone, String)> = phones
                    .into_iter()
                    .zip(published.iter().map(|p| p.event_id.clone()))
                    .collect();
                store::mark_emitted(conn, send_id, &marks)?;
                Ok(())
            })
            .await?;
        Ok(published.len() as u64)
    }
}

/// A `campaign_send` delivery's body.
#[derive(serde::Serialize)]
struct DeliveryBody<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(rename = "campaignId")]
    campaign_id: i64,
    #[serde(rename = "sendId")]
    send_id: i64,
    #[serde(rename = "scheduledFor")]
    scheduled_for: &'a str,
    #[serde(rename = "phoneE164")]
    phone_e164: String,
    #[serde(rename = "externalId", skip_serializing_if = "Option::is_none")]
    external_id: Option<&'a str>,
    variables: Box<serde_json::value::RawValue>,
    #[serde(rename = "templateName")]
    template_name: &'a str,
    language: &'a str,
}

/// The campaign `id` if it is `org`'s.
///
/// # Errors
/// [`DbError`].
pub fn owned_campaign(
    conn: &rusqlite::Connection,
    org: OrgId,
    id: i64,
) -> Result<Option<Result<Campaign, ()>>, DbError> {
    Ok(store::campaign(conn, id)?.map(|c| if c.org == org { Ok(c) } else { Err(()) }))
}
