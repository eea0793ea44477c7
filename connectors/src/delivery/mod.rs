//! The webhook delivery engine: endpoints, publishing, workers that deliver with
//! Standard Webhooks signatures, retries, and the attempt log.
//!
//! Everything leadstream sends out goes through [`DeliveryEngine::publish`]. A publish
//! writes the event and one pending delivery per subscribed endpoint in one
//! transaction of `webhooks.db` (group-committed with other writes), answers, and
//! hands the deliveries to the [`dispatch`]er. From there each delivery is attempted
//! until it succeeds, fails for good, or its schedule is used up; every outcome is
//! durable before the delivery leaves memory or its next attempt is scheduled.

pub mod client;
pub mod deliveries;
mod dispatch;
pub mod endpoints;
pub mod kafka;
pub mod model;
pub mod outbox;
pub mod outcomes;
pub mod store;

use crate::config::DeliveryConfig;
use crate::db::sql::Sql;
use crate::writer::now_ms;
use bytes::Bytes;
use deliveries::{
    DeliveryDetail, DeliveryRow, DeliveryState, ListQuery, NewEvent, NewParts, Published,
};
use dispatch::{DispatchHandle, Shared};
use endpoints::Endpoints;
use leadstream_pipeline::OrgId;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use store::{Db, DbError};

/// How often finished deliveries past `delivery.log_retention` and expired secrets
/// are deleted.
const RETENTION_EVERY: Duration = Duration::from_secs(3600);

/// How often a process claims the shared queue's unheld deliveries.
const CLAIM_EVERY: Duration = Duration::from_secs(1);

/// Deliveries claimed per statement.
const CLAIM_AT_ONCE: usize = 1000;

/// Largest `payload` accepted, encoded.
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;

/// The engine: cheap to clone.
#[derive(Clone)]
pub struct DeliveryEngine {
    shared: Arc<Shared>,
    dispatch: DispatchHandle,
}

/// Why a publish did not happen. With Kafka, a publish is done once its deliveries
/// are durable in `webhooks.db`: the [`outbox`] relay produces them after.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Store(#[from] DbError),
}

/// What a manual retry found.
#[derive(Debug, PartialEq, Eq)]
pub enum RetryAnswer {
    /// One more attempt is queued.
    Queued,
    /// The delivery is still pending.
    Pending,
    /// No such delivery of this org.
    NotFound,
}

impl DeliveryEngine {
    /// Opens `webhooks.db` in `dir` and starts the dispatcher on the current tokio
    /// runtime. Then either [`DeliveryEngine::resume_pending`] (embedded) or
    /// [`DeliveryEngine::attach_kafka`].
    ///
    /// # Errors
    /// [`DbError`] when the store cannot be opened or read.
    pub fn start(dir: &Path, config: &DeliveryConfig) -> Result<Self, DbError> {
        Self::start_with(dir, config, None)
    }

    /// [`start`](Self::start) with the endpoint registry of the shared database
    /// ([`Endpoints::open_shared`]) instead of `webhooks.db`'s.
    ///
    /// # Errors
    /// [`DbError`] when the store cannot be opened or read.
    pub fn start_with(
        dir: &Path,
        config: &DeliveryConfig,
        endpoints: Option<Arc<Endpoints>>,
    ) -> Result<Self, DbError> {
        let db = Db::open(dir)?;
        let endpoints = match endpoints {
            Some(shared) => shared,
            None => Arc::new(Endpoints::load(db.clone())?),
        };
        Ok(Self::start_on(db, endpoints, config))
    }

    /// The engine on the shared database: events, deliveries, attempts and the
    /// outbox there ([`Db::open_shared`]), endpoints from [`Endpoints::open_shared`].
    /// Then [`resume_pending`](Self::resume_pending) (the database is the queue) or
    /// [`attach_kafka`](Self::attach_kafka).
    ///
    /// # Errors
    /// [`DbError`] when the writer threads cannot start.
    pub fn start_shared(
        pg: &crate::db::Pg,
        endpoints: Arc<Endpoints>,
        config: &DeliveryConfig,
    ) -> Result<Self, DbError> {
        Ok(Self::start_on(Db::open_shared(pg)?, endpoints, config))
    }

    fn start_on(db: Arc<Db>, endpoints: Arc<Endpoints>, config: &DeliveryConfig) -> Self {
        let shared = Arc::new(Shared {
            kafka: std::sync::OnceLock::new(),
            outbox: std::sync::OnceLock::new(),
            attempt_log: std::sync::OnceLock::new(),
            db: db.clone(),
            endpoints,
            client: client::DeliveryClient::new(
                config.allow_private_targets,
                config.max_in_flight_per_endpoint,
            ),
            retry: config.retry(),
            outcomes: outcomes::Outcomes::new(db.clone(), config.disable_after),
            config: config.clone(),
        });
        let dispatch = dispatch::start(shared.clone());
        let engine = Self { shared, dispatch };
        crate::tasks::spawn(engine.clone().retention());
        engine
    }

    /// Embedded queue: queues every delivery the last run left pending, each at its
    /// due time.
    ///
    /// # Errors
    /// [`DbError`] reading them.
    pub fn resume_pending(&self) -> Result<usize, DbError> {
        if self.shared.db.is_shared() {
            crate::tasks::spawn(self.clone().claim_shared());
            return Ok(0);
        }
        let pending = self.shared.db.read_blocking(deliveries::load_pending)?;
        let n = pending.len();
        if n > 0 {
            tracing::info!(deliveries = n, "resuming deliveries left pending");
        }
        self.dispatch.at(pending);
        Ok(n)
    }

    /// Shared database without Kafka, the database is the queue: every
    /// [`CLAIM_EVERY`] this process renews the leases of what it holds that are about
    /// to run out ([`deliveries::renew_leases`]), and claims the pending deliveries due
    /// by then that no live process holds ([`deliveries::claim_due`]): those a killed
    /// process held once its lease ran out, those left when every process stopped.
    /// What this process publishes it holds from the start.
    async fn claim_shared(self) {
        let mut tick = tokio::time::interval(CLAIM_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = crate::tasks::stopped() => return,
            }
            // What this process still holds keeps its lease while the process lives
            // (a lease runs out only when its holder stops renewing: it died).
            let now = now_ms();
            if let Err(e) = self
                .shared
                .db
                .write(move |conn| deliveries::renew_leases(conn, now))
                .await
            {
                tracing::warn!(error = %e, "renewing the leases of the deliveries this process holds");
            }
            loop {
                let now = now_ms();
                let horizon = now + CLAIM_EVERY.as_millis() as i64;
                let claimed = self
                    .shared
                    .db
                    .write(move |conn| deliveries::claim_due(conn, now, horizon, CLAIM_AT_ONCE))
                    .await;
                match claimed {
                    Ok(jobs) if jobs.is_empty() => break,
                    Ok(jobs) => {
                        let n = jobs.len();
                        tracing::info!(
                            deliveries = n,
                            "claimed pending deliveries no live process held"
                        );
                        crate::metrics::shared_work_claimed("delivery", n as u64);
                        self.dispatch.at(jobs);
                        if n < CLAIM_AT_ONCE {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "claiming pending deliveries");
                        break;
                    }
                }
            }
        }
    }

    /// ClickHouse: from now on every attempt is also logged in its
    /// `webhook_attempts` table ([`crate::clickhouse::attempts`]).
    pub fn attach_attempt_log(&self, log: crate::clickhouse::attempts::AttemptLog) {
        let _ = self.shared.attempt_log.set(log);
    }

    /// Kafka: from now on publishes go to `kafka.deliveries_topic` through the
    /// [`outbox`] relay and this process delivers what its share of the consumer group
    /// reads ([`kafka`]). What the last run left unfinished is read again from the
    /// topics, and what it committed but never got to the brokers from the outbox.
    ///
    /// # Errors
    /// [`KafkaError`](crate::kafka::KafkaError) starting the producer or consumer.
    pub fn attach_kafka(
        &self,
        cfg: &crate::config::KafkaConfig,
        topics: &crate::kafka::Topics,
    ) -> Result<(), crate::kafka::KafkaError> {
        let link = kafka::start(&self.shared, self.dispatch.clone(), cfg, topics)?;
        let _ = self.shared.kafka.set(link.clone());
        let relay = outbox::Outbox::start(&self.shared, link, cfg.retry);
        let _ = self.shared.outbox.set(relay);
        Ok(())
    }

    /// `webhooks.db`, for the records that belong with the deliveries (campaigns).
    pub fn db(&self) -> &Arc<Db> {
        &self.shared.db
    }

    /// The endpoint registry.
    pub fn endpoints(&self) -> &Endpoints {
        &self.shared.endpoints
    }

    /// The endpoint registry, to hold (a publish's `make` reads subscribers inside
    /// its transaction).
    pub fn endpoints_handle(&self) -> Arc<Endpoints> {
        self.shared.endpoints.clone()
    }

    /// Stops the engine losing nothing (at SIGTERM, after the HTTP server drained and
    /// [`crate::tasks::stop`]): starts no new attempt, waits up to `within` for those
    /// in flight to end with their outcomes durable, commits the delivery consumer's
    /// offsets of what is done and leaves its group, writes out the ClickHouse attempt
    /// log's buffer, and ends the tasks that recorded them. An attempt still in flight
    /// at `within` stays pending: retried by another process (once
    /// [`release_leases`](Self::release_leases) hands it back) or at the next start,
    /// under the same `webhook-id`.
    pub async fn shutdown(&self, within: Duration) {
        let until = tokio::time::Instant::now() + within;
        if tokio::time::timeout_at(until, self.dispatch.drain())
            .await
            .is_err()
        {
            tracing::warn!(?within, "delivery attempts still in flight at the shutdown timeout; they stay pending and are retried under the same webhook-id");
        }
        if let Some(link) = self.shared.kafka.get() {
            link.leave().await;
        }
        if let Some(log) = self.shared.attempt_log.get() {
            if tokio::time::timeout_at(until, log.flush()).await.is_err() {
                tracing::warn!("the ClickHouse attempt log was not written out before the shutdown timeout; those attempts are in the delivery log only");
            }
        }
        self.shared.outcomes.close();
    }

    /// At exit, after [`shutdown`](Self::shutdown) and once the background tasks have
    /// ended: on the shared database, hands back the leases of the pending deliveries
    /// this process holds, so other processes carry them on now rather than a
    /// `database.lease` later.
    pub async fn release_leases(&self) {
        if self.shared.db.is_shared() {
            match self.shared.db.write(deliveries::release_leases).await {
                Ok(n) => tracing::info!(
                    deliveries = n,
                    "handed back the leases of the pending deliveries this process held"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "handing back delivery leases; they run out within database.lease")
                }
            }
        }
    }

    /// `[delivery]` as started.
    pub fn config(&self) -> &DeliveryConfig {
        &self.shared.config
    }

    /// Publishes `payload` (a JSON object's exact bytes) as `event_type` to every
    /// enabled endpoint of `org` subscribed to it. A repeated `idempotency_key` within
    /// `delivery.idempotency_window` answers the first event's id and creates nothing.
    ///
    /// # Errors
    /// [`PublishError`]: nothing was published.
    pub async fn publish(
        &self,
        org: OrgId,
        event_type: &str,
        payload: Bytes,
        idempotency_key: Option<String>,
    ) -> Result<Published, PublishError> {
        let ev = NewEvent {
            org,
            event_type: event_type.to_owned(),
            endpoints: self
                .shared
                .endpoints
                .subscribers_now(org, event_type)
                .await?,
            payload,
            idempotency_key,
            due_at_ms: None,
        };
        let mut out = self.publish_many(vec![ev]).await?;
        Ok(out.pop().expect("one event in, one out"))
    }

    /// Publishes several events in one transaction (bulk callers: benches).
    /// Each [`NewEvent`] names its endpoints, usually from
    /// [`Endpoints::subscribers`].
    ///
    /// # Errors
    /// [`PublishError`]: none was published.
    pub async fn publish_many(
        &self,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Published>, PublishError> {
        self.publish_with(move |_| Ok(events)).await
    }

    /// Publishes what `make` answers, running it in the publish's transaction: a caller
    /// whose events depend on its own records (a domain event taken once, the contact
    /// it updates) reads and writes them there, so an event is recorded and its
    /// deliveries published together or not at all. `make` answering no event
    /// publishes nothing (a repeated domain event).
    ///
    /// # Errors
    /// [`PublishError`]: none was published (an error of `make` included).
    pub async fn publish_with(
        &self,
        make: impl FnOnce(Sql<'_>) -> Result<Vec<NewEvent>, DbError> + Send + 'static,
    ) -> Result<Vec<Published>, PublishError> {
        let window = self.shared.config.idempotency_window;
        self.commit(move |conn| {
            let events = make(conn)?;
            let now = now_ms();
            let published = match conn {
                // The shared database: events without an idempotency key in two
                // statements, however many (a round trip per row showed).
                Sql::Postgres(s) if events.iter().all(|e| e.idempotency_key.is_none()) => {
                    let all: Vec<&NewEvent> = events.iter().collect();
                    deliveries::insert_events_bulk(s, &all, now)?
                }
                _ => {
                    let published = events
                        .iter()
                        .map(|ev| deliveries::insert_event(conn, ev, now, window))
                        .collect::<Result<Vec<_>, _>>()?;
                    // Shared database: this process's workers hold what it published
                    // (the bulk insert and a chunk's set it in the insert).
                    for p in &published {
                        let seqs: Vec<i64> = p.jobs.iter().map(|j| j.seq).collect();
                        deliveries::lease(conn, &seqs, deliveries::lease_until(p.due_at_ms, now))?;
                    }
                    published
                }
            };
            let mut jobs = Vec::new();
            for p in &published {
                jobs.extend(p.jobs.iter().map(|j| (j.clone(), p.due_at_ms)));
            }
            Ok((published, jobs))
        })
        .await
    }

    /// Publishes `batch` (one delivery per part, [`deliveries::insert_parts`]) and runs
    /// `also` in the same transaction first: a caller's check that it may still
    /// publish, and its own record of what it published (a campaign send's progress),
    /// commit with the deliveries or not at all. Answers the deliveries' seqs.
    ///
    /// # Errors
    /// [`PublishError`]: none was published (an error of `also` included).
    pub async fn publish_parts(
        &self,
        batch: NewParts,
        also: impl FnOnce(Sql<'_>, &[(deliveries::Job, i64)]) -> Result<(), DbError> + Send + 'static,
    ) -> Result<usize, PublishError> {
        let ids = batch.new_ids(now_ms());
        self.commit(move |conn| {
            let jobs = deliveries::insert_parts(conn, &batch, &ids, now_ms())?;
            also(conn, &jobs)?;
            Ok((jobs.len(), jobs))
        })
        .await
    }

    /// Runs `write` (which inserts deliveries and answers them with their due times)
    /// in one transaction, then hands the deliveries on once committed: to the
    /// dispatcher, or with Kafka to the [`outbox`] relay (an `outbox` row commits
    /// with them, so a crash before the brokers have them loses nothing).
    async fn commit<T: Send + 'static>(
        &self,
        write: impl FnOnce(Sql<'_>) -> Result<(T, Vec<(deliveries::Job, i64)>), DbError>
            + Send
            + 'static,
    ) -> Result<T, PublishError> {
        let outbox = self.shared.outbox.get().cloned();
        let with_outbox = outbox.is_some();
        let (out, jobs, row) = self
            .shared
            .db
            .write(move |conn| {
                let (out, jobs) = write(conn)?;
                let row = if with_outbox {
                    outbox::Outbox::record(conn, &jobs)?
                } else {
                    None
                };
                Ok((out, jobs, row))
            })
            .await?;
        crate::metrics::deliveries_published(jobs.len() as u64);
        match (outbox, row) {
            (Some(outbox), Some(id)) => outbox.relay(outbox::Entry { id, jobs }).await,
            (Some(_), None) => {}
            (None, _) => self.dispatch.at(jobs),
        }
        Ok(out)
    }

    /// A page of deliveries and whether more follow.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn list(&self, q: ListQuery) -> Result<(Vec<DeliveryRow>, bool), DbError> {
        self.shared
            .db
            .read(move |conn| deliveries::list(conn, &q))
            .await
    }

    /// The bodies and attempts of `org`'s deliveries `seqs` (a page of a log), by seq:
    /// one query for the page.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn run_details(
        &self,
        org: OrgId,
        seqs: Vec<i64>,
    ) -> Result<std::collections::HashMap<i64, deliveries::RunDetail>, DbError> {
        self.shared
            .db
            .read(move |conn| deliveries::run_details(conn, org, &seqs))
            .await
    }

    /// `org`'s deliveries finished per minute: [`deliveries::finished_per_minute`].
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn finished_per_minute(
        &self,
        org: OrgId,
        since_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<(u64, u64)>, DbError> {
        self.shared
            .db
            .read(move |conn| deliveries::finished_per_minute(conn, org, since_ms, until_ms))
            .await
    }

    /// How many of `org`'s deliveries are pending.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn pending_of(&self, org: OrgId) -> Result<u64, DbError> {
        self.shared
            .db
            .read(move |conn| deliveries::pending_of(conn, org))
            .await
    }

    /// `org`'s delivery `id` with its attempts.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn get(&self, org: OrgId, id: String) -> Result<Option<DeliveryDetail>, DbError> {
        self.shared
            .db
            .read(move |conn| deliveries::get(conn, org, &id))
            .await
    }

    /// One more attempt of a finished delivery, now.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn retry(&self, org: OrgId, id: String) -> Result<RetryAnswer, DbError> {
        let found = self
            .shared
            .db
            .write(move |conn| deliveries::mark_for_retry(conn, org, &id, now_ms()))
            .await?;
        Ok(match found {
            None => RetryAnswer::NotFound,
            Some(Err(DeliveryState::Pending | _)) => RetryAnswer::Pending,
            Some(Ok(job)) => {
                self.dispatch.due(vec![job]);
                RetryAnswer::Queued
            }
        })
    }

    /// One more attempt, now, of every failed delivery of endpoint `endpoint` created
    /// in `[since_ms, until_ms]`. The caller checked the endpoint is the org's.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn replay(
        &self,
        endpoint: i64,
        since_ms: i64,
        until_ms: i64,
    ) -> Result<usize, DbError> {
        let jobs = self
            .shared
            .db
            .write(move |conn| {
                deliveries::mark_replay(conn, endpoint, since_ms, until_ms, now_ms())
            })
            .await?;
        let n = jobs.len();
        self.dispatch.due(jobs);
        Ok(n)
    }

    /// Deletes what `delivery.log_retention` no longer keeps, now and every hour:
    /// finished deliveries, and the domain events and conversation messages received
    /// before it.
    async fn retention(self) {
        let mut tick = tokio::time::interval(RETENTION_EVERY);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = crate::tasks::stopped() => return,
            }
            let cutoff = now_ms() - self.shared.config.log_retention.as_millis() as i64;
            loop {
                match self
                    .shared
                    .db
                    .write(move |conn| {
                        // Another process is deleting: retention runs once.
                        if !crate::db::retention_turn(conn)? {
                            return Ok(0);
                        }
                        let n = deliveries::delete_older_than(conn, cutoff, 5000)?;
                        crate::domain::store::delete_older_than(conn, cutoff)?;
                        Ok(n)
                    })
                    .await
                {
                    Ok(n) if n > 0 && !crate::tasks::is_stopping() => {
                        tokio::task::yield_now().await
                    }
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "deleting deliveries past log retention");
                        break;
                    }
                }
            }
            if let Err(e) = self.shared.endpoints.drop_expired_secrets(now_ms()).await {
                tracing::warn!(error = %e, "deleting expired endpoint secrets");
            }
        }
    }
}
