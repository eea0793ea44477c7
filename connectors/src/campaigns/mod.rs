//! Campaign sends: audiences, opt-outs, sends with event and audience filters, which
//! leads are eligible at a send's instant, and their materialization into
//! `campaign_send` deliveries through the delivery engine.
//!
//! Materializing a send happens in two steps, each durable before the next:
//! 1. its eligible set is evaluated at the send's instant T and fixed, once
//!    (`send_leads`, `materialized_at`), with the event its deliveries share (the
//!    body's common fields): later events, opt-outs or filters do not change it;
//! 2. the set is emitted in phone order, a chunk per transaction of `webhooks.db`:
//!    one delivery per lead, carrying only the lead's part of the body
//!    ([`deliveries::body`]), and the send's progress (`emitted_through`, the chunk's
//!    seqs) in the same transaction. The next chunk is read and rendered while one is
//!    written, and written while that one commits.
//!
//! A process killed anywhere restarts with the set fixed and the rest of it above
//! `emitted_through` picked up by the scheduler: no lead is emitted twice, none is
//! lost.

pub mod audience;
pub mod model;
pub mod records;
pub mod store;

use crate::config::SendsConfig;
use crate::delivery::deliveries::{self, NewParts};
use crate::delivery::store::{Db, DbError};
use crate::delivery::{DeliveryEngine, PublishError};
use crate::writer::{now_ms, EventWriter};
use bytes::Bytes;
use leadstream_pipeline::eligibility::{self, Lead, Question, Summary};
use leadstream_pipeline::time::format_rfc3339_short_us;
use leadstream_pipeline::Phone;
use model::{CampaignState, Send};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// The event type of a campaign's deliveries.
pub const EVENT_TYPE: &str = "campaign_send";
/// Leads published per transaction while emitting a send.
const EMIT_CHUNK: usize = 5_000;
/// The same on the shared database, where each transaction's round trips cost more
/// than SQLite's (20,000: about 10% more leads/s than 5,000 in `bench materialize`).
const EMIT_CHUNK_SHARED: usize = 20_000;
/// Eligibility evaluations that may run at once (each holds its audience in memory;
/// more wait their turn).
const EVALUATIONS_AT_ONCE: usize = 2;
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
    #[error(transparent)]
    Eligibility(#[from] EligibilityError),
    #[error("no send {0}")]
    NoSend(i64),
    #[error("the campaign's endpoint {0} was deleted: its deliveries have nowhere to go; cancel the campaign and create it again with a target")]
    NoEndpoint(i64),
    /// The campaign was paused or cancelled while it emitted.
    #[error("{0}")]
    Stopped(String),
}

/// Where a send's eligibility reads events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EligibilityEngine {
    /// The in-process event index.
    Index,
    /// One query to ClickHouse's `lead_events`.
    ClickHouse,
}

impl EligibilityEngine {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "index" => Some(Self::Index),
            "clickhouse" => Some(Self::ClickHouse),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Index => "index",
            Self::ClickHouse => "clickhouse",
        }
    }
}

/// Why eligibility was not answered.
#[derive(Debug, thiserror::Error)]
pub enum EligibilityError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("ClickHouse: {0}")]
    ClickHouse(#[from] crate::store::StoreError),
    #[error("ClickHouse is not configured: set clickhouse.url (LEADSTREAM_CLICKHOUSE_URL) to answer eligibility there")]
    NoClickHouse,
}

/// ClickHouse as configured for eligibility.
struct ClickHouseEvents {
    store: Mutex<crate::clickhouse::ClickHouseStore>,
    /// Kafka is configured too: several processes may share the consumer group.
    shared_group: bool,
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
    clickhouse: std::sync::OnceLock<ClickHouseEvents>,
    /// Evaluations at once: each holds an audience in memory.
    evaluations: tokio::sync::Semaphore,
}

impl Campaigns {
    /// Campaigns on the engine's `webhooks.db`.
    ///
    /// # Errors
    /// [`DbError`].
    pub fn open(
        engine: DeliveryEngine,
        writer: EventWriter,
        config: &SendsConfig,
    ) -> Result<Self, DbError> {
        // Its tables are webhooks.db's (db::migrations::SQLITE_WEBHOOKS).
        let db = engine.db().clone();
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                engine,
                writer,
                config: config.clone(),
                running: Mutex::new(HashMap::new()),
                clickhouse: std::sync::OnceLock::new(),
                evaluations: tokio::sync::Semaphore::new(EVALUATIONS_AT_ONCE),
            }),
        })
    }

    /// Lets eligibility read events from ClickHouse (a connection of its own):
    /// `sends.eligibility` says when. `shared_group`: Kafka is configured too.
    pub fn attach_clickhouse(&self, store: crate::clickhouse::ClickHouseStore, shared_group: bool) {
        let _ = self.inner.clickhouse.set(ClickHouseEvents {
            store: Mutex::new(store),
            shared_group,
        });
    }

    /// The engine for an audience of `audience` leads: `requested` if given, else
    /// `sends.eligibility`, where `auto` is ClickHouse when it is attached and the
    /// audience is over `sends.clickhouse_above_audience` or Kafka shares the work.
    ///
    /// # Errors
    /// [`EligibilityError::NoClickHouse`] when ClickHouse is asked for but absent.
    pub fn engine_for(
        &self,
        audience: u64,
        requested: Option<EligibilityEngine>,
    ) -> Result<EligibilityEngine, EligibilityError> {
        let ch = self.inner.clickhouse.get();
        let chosen = requested
            .or_else(|| EligibilityEngine::parse(&self.inner.config.eligibility))
            .unwrap_or(match ch {
                Some(c)
                    if c.shared_group
                        || audience > self.inner.config.clickhouse_above_audience as u64 =>
                {
                    EligibilityEngine::ClickHouse
                }
                _ => EligibilityEngine::Index,
            });
        if chosen == EligibilityEngine::ClickHouse && ch.is_none() {
            return Err(EligibilityError::NoClickHouse);
        }
        Ok(chosen)
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
        crate::tasks::spawn(async move {
            let mut tick = tokio::time::interval(SCHEDULER_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = crate::tasks::stopped() => return,
                }
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
        // One send's failure is logged and does not hold up the others.
        for send in due {
            match self.materialize(send.id).await {
                Ok(m) if m.emitted > 0 => {
                    tracing::info!(send = send.id, emitted = m.emitted, "send materialized");
                }
                Ok(_) => {}
                Err(MaterializeError::Stopped(why)) => {
                    tracing::info!(send = send.id, %why, "send stopped");
                }
                Err(e) => tracing::warn!(send = send.id, error = %e, "materializing a send"),
            }
        }
        Ok(())
    }

    /// The leads of `send` eligible at `at_us`, with the others, the summary and the
    /// engine that answered ([`engine_for`](Self::engine_for)). Every event
    /// acknowledged before the call is seen: the index is waited for
    /// ([`EventWriter::indexed_now`]); ClickHouse has each row before its 200.
    ///
    /// # Errors
    /// [`EligibilityError`].
    pub async fn eligible(
        &self,
        send: &Send,
        at_us: i64,
        requested: Option<EligibilityEngine>,
    ) -> Result<Eligible, EligibilityError> {
        let _turn = self
            .inner
            .evaluations
            .acquire()
            .await
            .map_err(|_| DbError::Stopped)?;
        let started = std::time::Instant::now();
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
        let engine = self.engine_for(leads.len() as u64, requested)?;
        let index = self.inner.writer.event_index().clone();
        let send = send.clone();
        let me = self.clone();
        let out = tokio::task::spawn_blocking(move || {
            let q = Question {
                org: send.org,
                at_us,
                opted_out: &opted_out,
                audience_filter: filter.as_ref(),
                event_filter: send.event_filter.as_ref(),
            };
            let having = match (engine, &send.event_filter) {
                (EligibilityEngine::ClickHouse, Some(f)) => {
                    let ch = me
                        .inner
                        .clickhouse
                        .get()
                        .ok_or(EligibilityError::NoClickHouse)?;
                    let lo = eligibility::window_start(at_us, f.within_minutes);
                    Some(
                        ch.store
                            .lock()
                            .leads_with_event(send.org, &f.event_type, lo, at_us)?,
                    )
                }
                _ => None,
            };
            let events = match &having {
                Some(set) => eligibility::Events::Having(set),
                None => eligibility::Events::Index(&index),
            };
            let (kept, summary) = eligibility::evaluate(&q, &leads, events);
            let mut leads = leads;
            let mut keep = vec![false; leads.len()];
            for i in kept {
                keep[i] = true;
            }
            let excluded = leads
                .iter()
                .zip(&keep)
                .filter(|(_, kept)| !**kept)
                .map(|(l, _)| l.phone)
                .collect();
            let mut it = keep.into_iter();
            leads.retain(|_| it.next().unwrap_or(false));
            Ok::<_, EligibilityError>(Eligible {
                leads,
                excluded,
                summary,
                engine,
            })
        })
        .await
        .map_err(|_| DbError::Stopped)??;
        crate::metrics::eligibility(out.engine.as_str(), started.elapsed());
        Ok(out)
    }

    /// At shutdown, on the shared database: hands back the sends this process holds,
    /// so another process carries them on at once (no lead is emitted twice: each
    /// chunk's cursor is compared in its write).
    pub async fn release_sends(&self) {
        if !self.inner.db.is_shared() {
            return;
        }
        match self.inner.db.write(store::release_sends).await {
            Ok(n) => tracing::info!(sends = n, "handed back the sends this process held"),
            Err(e) => {
                tracing::warn!(error = %e, "handing back sends; their leases run out within database.lease")
            }
        }
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
        // Shared database: one process materializes a send; another takes it over
        // when that one's lease runs out (it was killed mid-send).
        if !self
            .inner
            .db
            .write(move |conn| store::hold_send(conn, send_id, now_ms()))
            .await?
        {
            return Err(MaterializeError::Stopped(format!(
                "send {send_id} is being materialized by another process"
            )));
        }
        let send = self
            .inner
            .db
            .read(move |conn| store::send(conn, send_id))
            .await?
            .ok_or(MaterializeError::NoSend(send_id))?;
        let campaign_id = send.campaign_id;
        let shared = Bytes::from(SharedBody::of(&send).to_bytes());
        if send.materialized_at_ms.is_none() {
            let Eligible {
                leads,
                excluded,
                summary,
                ..
            } = self.eligible(&send, send.time.at_us, None).await?;
            let set = store::FixedSet {
                eligible: leads.iter().map(|l| l.phone).collect(),
                excluded,
            };
            drop(leads);
            let (org, payload) = (send.org, shared.clone());
            let fixed = self
                .inner
                .db
                .write(move |conn| {
                    let now = now_ms();
                    let event =
                        deliveries::insert_shared_event(conn, org, EVENT_TYPE, &payload, now)?;
                    if store::fix_eligible(conn, send_id, campaign_id, &set, &event, now)? {
                        Ok(true)
                    } else {
                        // Fixed meanwhile: the event is not needed.
                        Err(DbError::Aborted("fixed before".into()))
                    }
                })
                .await;
            match fixed {
                Ok(_) => tracing::info!(send = send_id, ?summary, "send's eligible set fixed"),
                Err(DbError::Aborted(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let progress = self
            .inner
            .db
            .read(move |conn| store::progress(conn, send_id))
            .await?
            .ok_or(MaterializeError::NoSend(send_id))?;
        let already = progress.emitted;
        let campaign = self
            .inner
            .db
            .read(move |conn| store::campaign(conn, campaign_id))
            .await?
            .ok_or(MaterializeError::NoSend(send_id))?;
        let Some(endpoint) = self.inner.engine.endpoints().by_id(campaign.endpoint_id) else {
            return Err(MaterializeError::NoEndpoint(campaign.endpoint_id));
        };
        let (org, payload) = (send.org, shared.clone());
        let event_id: Arc<str> = Arc::from(
            self.inner
                .db
                .write(move |conn| store::ensure_event(conn, send_id, org, &payload, now_ms()))
                .await?,
        );
        // The next chunk is read and rendered while the current one is written, and
        // is written as soon as the current one is recorded, while that one commits:
        // its cursor update waits on the send's row until then, so the chunks still
        // commit in order, and the database never idles through a commit.
        let mut emitted = 0;
        let mut after = progress.emitted_through;
        let mut next = self.read_chunk(send_id, after);
        let mut committing: Option<tokio::task::JoinHandle<Result<u64, MaterializeError>>> = None;
        loop {
            let chunk = next.await.map_err(|_| DbError::Stopped)??;
            let Some(&through) = chunk.phones.last() else {
                break;
            };
            next = self.read_chunk(send_id, through);
            let batch = NewParts {
                event_id: event_id.clone(),
                org: send.org,
                event_type: Arc::from(EVENT_TYPE),
                payload: shared.clone(),
                endpoint: endpoint.clone(),
                due_at_ms: send.time.at_us.div_euclid(1000),
                parts: chunk.parts,
            };
            let (recorded, was_recorded) = tokio::sync::oneshot::channel();
            let me = self.clone();
            let emitting = crate::tasks::spawn(async move {
                me.emit(campaign_id, send_id, after, through, batch, recorded)
                    .await
            });
            let recorded_ok = was_recorded.await.is_ok();
            // This chunk recorded after the one before committed.
            if let Some(before) = committing.take() {
                emitted += before.await.map_err(|_| DbError::Stopped)??;
            }
            if !recorded_ok {
                // It stopped before recording (a write that records always answers
                // it): its error says why.
                emitting.await.map_err(|_| DbError::Stopped)??;
                return Err(DbError::Stopped.into());
            }
            committing = Some(emitting);
            after = through;
            if crate::tasks::is_stopping() {
                // The process is stopping: the chunk in hand commits, and the rest is
                // emitted from the send's cursor by the next start (shared: by another
                // process once the send's lease is handed back).
                if let Some(last) = committing.take() {
                    last.await.map_err(|_| DbError::Stopped)??;
                }
                return Err(DbError::Stopped.into());
            }
        }
        if let Some(last) = committing {
            emitted += last.await.map_err(|_| DbError::Stopped)??;
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

    /// Starts reading the send's next [`EMIT_CHUNK`] leads above `after` and rendering
    /// each one's part of its delivery body, on the read connection.
    fn read_chunk(
        &self,
        send_id: i64,
        after: Phone,
    ) -> tokio::task::JoinHandle<Result<Chunk, DbError>> {
        let db = self.inner.db.clone();
        crate::tasks::spawn(async move {
            let leads = db
                .read(move |conn| {
                    store::to_emit(
                        conn,
                        send_id,
                        after,
                        if conn.is_postgres() {
                            EMIT_CHUNK_SHARED
                        } else {
                            EMIT_CHUNK
                        },
                    )
                })
                .await?;
            let mut chunk = Chunk {
                phones: Vec::with_capacity(leads.len()),
                parts: Vec::with_capacity(leads.len()),
            };
            for lead in leads {
                chunk.parts.push(lead_part(&lead));
                chunk.phones.push(lead.phone);
            }
            Ok(chunk)
        })
    }

    /// Publishes one chunk of a send's leads and records it emitted, in one
    /// transaction, which first checks the campaign may still emit (a pause or a
    /// cancel stops a send between two chunks). Each delivery is due at the send's
    /// instant (now, if that has passed).
    async fn emit(
        &self,
        campaign_id: i64,
        send_id: i64,
        after: Phone,
        through: Phone,
        batch: NewParts,
        recorded: tokio::sync::oneshot::Sender<()>,
    ) -> Result<u64, MaterializeError> {
        let published = self
            .inner
            .engine
            .publish_parts(batch, move |conn, jobs| {
                match store::campaign_state(conn, campaign_id)? {
                    Some(s) if s.materializes() || s == CampaignState::Draft => {}
                    state => {
                        return Err(DbError::Aborted(format!(
                            "campaign {campaign_id} is {}: its sends are not materialized",
                            state.map_or("deleted", CampaignState::as_str)
                        )))
                    }
                }
                if !store::hold_send(conn, send_id, now_ms())? {
                    return Err(DbError::Aborted(format!(
                        "send {send_id} was taken over by another process"
                    )));
                }
                let seqs = jobs.iter().map(|(j, _)| j.seq);
                let (first, last) = (seqs.clone().min(), seqs.max());
                if let (Some(first), Some(last)) = (first, last) {
                    store::record_emitted(
                        conn,
                        send_id,
                        after,
                        through,
                        jobs.len() as u64,
                        first,
                        last,
                    )?;
                }
                let _ = recorded.send(());
                Ok(())
            })
            .await;
        match published {
            Ok(n) => {
                crate::metrics::campaign_leads_emitted(n as u64);
                Ok(n as u64)
            }
            Err(PublishError::Store(DbError::Aborted(why))) => Err(MaterializeError::Stopped(why)),
            Err(e) => Err(e.into()),
        }
    }
}

/// A send's audience split by eligibility ([`Campaigns::eligible`]).
pub struct Eligible {
    /// The eligible leads, in phone order.
    pub leads: Vec<Lead>,
    /// The audience's other phones (opted out, filtered), in phone order.
    pub excluded: Vec<Phone>,
    pub summary: Summary,
    /// The engine that answered.
    pub engine: EligibilityEngine,
}

/// A chunk of a send's leads to emit, in phone order, with their body parts.
struct Chunk {
    phones: Vec<Phone>,
    parts: Vec<Bytes>,
}

/// What every delivery of a send carries: the shared event's payload. Each
/// delivery adds its lead ([`lead_part`]), so the body a receiver gets is
/// `{type, campaignId, sendId, scheduledFor, templateName, language, phoneE164,
/// externalId?, variables}`.
#[derive(serde::Serialize)]
struct SharedBody<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(rename = "campaignId")]
    campaign_id: i64,
    #[serde(rename = "sendId")]
    send_id: i64,
    #[serde(rename = "scheduledFor")]
    scheduled_for: String,
    #[serde(rename = "templateName")]
    template_name: &'a str,
    language: &'a str,
}

impl<'a> SharedBody<'a> {
    fn of(send: &'a Send) -> Self {
        SharedBody {
            kind: EVENT_TYPE,
            campaign_id: send.campaign_id,
            send_id: send.id,
            scheduled_for: format_rfc3339_short_us(send.time.at_us),
            template_name: &send.template_name,
            language: &send.language,
        }
    }

    fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a delivery body serializes")
    }
}

/// A lead's members of its delivery body: `"phoneE164":…,"externalId":…,"variables":…`
/// (`externalId` only when it has one; `variables` as stored, a JSON object).
fn lead_part(lead: &store::ToEmit) -> Bytes {
    use std::io::Write;
    let mut out = Vec::with_capacity(48 + lead.variables.len());
    let _ = write!(out, r#""phoneE164":"{}""#, lead.phone);
    if let Some(ext) = &lead.external_id {
        out.extend_from_slice(br#","externalId":"#);
        serde_json::to_writer(&mut out, ext).expect("a string serializes");
    }
    out.extend_from_slice(br#","variables":"#);
    if serde_json::from_str::<&serde_json::value::RawValue>(&lead.variables).is_ok() {
        out.extend_from_slice(lead.variables.as_bytes());
    } else {
        out.extend_from_slice(b"{}");
    }
    Bytes::from(out)
}
