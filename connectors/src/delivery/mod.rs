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
pub mod store;

use crate::config::DeliveryConfig;
use crate::writer::now_ms;
use bytes::Bytes;
use deliveries::{DeliveryDetail, DeliveryRow, DeliveryState, ListQuery, NewEvent, Published};
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

/// Largest `payload` accepted, encoded.
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;

/// The engine: cheap to clone.
#[derive(Clone)]
pub struct DeliveryEngine {
    shared: Arc<Shared>,
    dispatch: DispatchHandle,
}

/// Why a publish did not happen.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Store(#[from] DbError),
    #[error("Kafka did not take the deliveries: {0}")]
    Kafka(String),
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
        let db = Db::open(dir)?;
        let endpoints = Arc::new(Endpoints::load(db.clone())?);
        let shared = Arc::new(Shared {
            kafka: std::sync::OnceLock::new(),
            attempt_log: std::sync::OnceLock::new(),
            db: db.clone(),
            endpoints,
            client: client::DeliveryClient::new(
                config.allow_private_targets,
                config.max_in_flight_per_endpoint,
            ),
            retry: config.retry(),
            config: config.clone(),
        });
        let dispatch = dispatch::start(shared.clone());
        let engine = Self { shared, dispatch };
        tokio::spawn(engine.clone().retention());
        Ok(engine)
    }

    /// Embedded queue: queues every delivery the last run left pending, each at its
    /// due time.
    ///
    /// # Errors
    /// [`DbError`] reading them.
    pub fn resume_pending(&self) -> Result<usize, DbError> {
        let pending = self.shared.db.read_blocking(deliveries::load_pending)?;
        let n = pending.len();
        if n > 0 {
            tracing::info!(deliveries = n, "resuming deliveries left pending");
        }
        self.dispatch.at(pending);
        Ok(n)
    }

    /// ClickHouse: from now on every attempt is also logged in its
    /// `webhook_attempts` table ([`crate::clickhouse::attempts`]).
    pub fn attach_attempt_log(&self, log: crate::clickhouse::attempts::AttemptLog) {
        let _ = self.shared.attempt_log.set(log);
    }

    /// Kafka: from now on publishes go to `kafka.deliveries_topic` and this process
    /// delivers what its share of the consumer group reads ([`kafka`]). What the last
    /// run left unfinished is read again from the topics, not from the store.
    ///
    /// # Errors
    /// [`KafkaError`](crate::kafka::KafkaError) starting the producer or consumer.
    pub fn attach_kafka(
        &self,
        cfg: &crate::config::KafkaConfig,
        topics: &crate::kafka::Topics,
    ) -> Result<(), crate::kafka::KafkaError> {
        let link = kafka::start(&self.shared, self.dispatch.clone(), cfg, topics)?;
        let _ = self.shared.kafka.set(link);
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
            endpoints: self.shared.endpoints.subscribers(org, event_type),
            payload,
            idempotency_key,
            due_at_ms: None,
        };
        let mut out = self.publish_many(vec![ev]).await?;
        Ok(out.pop().expect("one event in, one out"))
    }

    /// Publishes several events in one transaction (bulk callers: sends, benches).
    /// Each [`NewEvent`] names its endpoints, usually from
    /// [`Endpoints::subscribers`].
    ///
    /// # Errors
    /// [`PublishError`]: none was published.
    pub async fn publish_many(
        &self,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Published>, PublishError> {
        self.publish_many_and(events, |_, _| Ok(()), |_| Ok(()))
            .await
    }

    /// [`publish_many`](Self::publish_many), running `also` in the same transaction
    /// with what was published: a caller's own record of what it published (a
    /// campaign send's emitted leads) commits with the deliveries or not at all. An
    /// error from `also` undoes the whole publish. When Kafka then refuses the
    /// records, the rows are deleted again and `undo` runs in that transaction to
    /// take back what `also` wrote.
    ///
    /// # Errors
    /// [`PublishError`]: none was published.
    pub async fn publish_many_and(
        &self,
        events: Vec<NewEvent>,
        also: impl FnOnce(&rusqlite::Connection, &[Published]) -> Result<(), DbError> + Send + 'static,
        undo: impl FnOnce(&rusqlite::Connection) -> Result<(), DbError> + Send + 'static,
    ) -> Result<Vec<Published>, PublishError> {
        let window = self.shared.config.idempotency_window;
        let published = self
            .shared
            .db
            .write(move |conn| {
                let now = now_ms();
                let published = events
                    .iter()
                    .map(|ev| deliveries::insert_event(conn, ev, now, window))
                    .collect::<Result<Vec<_>, _>>()?;
                also(conn, &published)?;
                Ok(published)
            })
            .await?;
        let mut jobs = Vec::new();
        for p in &published {
            jobs.extend(p.jobs.iter().map(|j| (j.clone(), p.due_at_ms)));
        }
        if let Some(link) = self.shared.kafka.get() {
            let now = now_ms();
            let records: Vec<_> = jobs
                .iter()
                .filter_map(|(j, due)| {
                    let ep = self.shared.endpoints.by_id(j.endpoint_id)?;
                    Some(kafka::KafkaLink::record(j, &ep, 0, *due, now))
                })
                .collect();
            if let Err(e) = link
                .send_all(crate::kafka::DeliveryTopic::Deliveries, &records)
                .await
            {
                // Undo: what the caller is told was not published must not linger
                // as pending rows no record will ever finish, nor as the caller's
                // record of having published it.
                // A repeated idempotency key names an earlier event: not this publish's.
                let ids: Vec<String> = published
                    .iter()
                    .filter(|p| !p.repeated)
                    .map(|p| p.event_id.clone())
                    .collect();
                let seqs: Vec<i64> = jobs.iter().map(|(j, _)| j.seq).collect();
                let undone = self
                    .shared
                    .db
                    .write(move |conn| {
                        let mut del =
                            conn.prepare_cached("DELETE FROM deliveries WHERE seq = ?1")?;
                        for seq in &seqs {
                            del.execute([seq])?;
                        }
                        let mut del = conn.prepare_cached("DELETE FROM events WHERE id = ?1")?;
                        for id in &ids {
                            del.execute([id])?;
                        }
                        undo(conn)
                    })
                    .await;
                if let Err(u) = undone {
                    tracing::error!(error = %u, "undoing a publish Kafka refused");
                }
                return Err(PublishError::Kafka(e.to_string()));
            }
        } else {
            self.dispatch.at(jobs.clone());
        }
        crate::metrics::deliveries_published(jobs.len() as u64);
        Ok(published)
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

    /// Deletes what `delivery.log_retention` no longer keeps, now and every hour.
    async fn retention(self) {
        let mut tick = tokio::time::interval(RETENTION_EVERY);
        loop {
            tick.tick().await;
            let cutoff = now_ms() - self.shared.config.log_retention.as_millis() as i64;
            loop {
                match self
                    .shared
                    .db
                    .write(move |conn| deliveries::delete_older_than(conn, cutoff, 5000))
                    .await
                {
                    Ok(n) if n > 0 => tokio::task::yield_now().await,
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
