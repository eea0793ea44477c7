//! Kafka mode's outbox: a publish commits its deliveries to `webhooks.db` with an
//! `outbox` row naming their seqs, and answers; the relay then produces their
//! records to `kafka.deliveries_topic` and deletes the row once the brokers
//! acknowledged every record (`acks=all`).
//!
//! Nothing is ever taken back: while the brokers refuse, the relay tries the same
//! records again with `[kafka.retry]` backoff, in publish order, and a restart
//! produces every row the last run left (its deliveries read back from the store,
//! same delivery ids). A crash after the brokers acknowledged but before the row was
//! deleted produces those records twice; the worker that reads the second copy finds
//! the delivery finished in its log and drops it, or, while the first is still in
//! flight, attempts it again under the same `webhook-id` (at least once, as Standard
//! Webhooks receivers expect).

use super::deliveries::{load_pending_between, Job};
use super::dispatch::Shared;
use super::kafka::KafkaLink;
use super::store::DbError;
use crate::config::RetryConfig;
use crate::kafka::DeliveryTopic;
use crate::writer::now_ms;
use rusqlite::Connection;
use std::sync::Arc;
use tokio::sync::mpsc;

/// One publish's deliveries waiting for the brokers.
pub struct Entry {
    /// The `outbox` row.
    pub id: i64,
    pub jobs: Vec<(Job, i64)>,
}

/// Hands committed publishes to the relay.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::UnboundedSender<Entry>,
}

impl Outbox {
    /// Records that `jobs` (just inserted, in this transaction) wait for the
    /// brokers; answers the row's id for [`Outbox::relay`].
    ///
    /// # Errors
    /// [`DbError`].
    pub fn record(conn: &Connection, jobs: &[(Job, i64)]) -> Result<Option<i64>, DbError> {
        let (Some(first), Some(last)) = (
            jobs.iter().map(|(j, _)| j.seq).min(),
            jobs.iter().map(|(j, _)| j.seq).max(),
        ) else {
            return Ok(None);
        };
        conn.prepare_cached("INSERT INTO outbox (first_seq, last_seq) VALUES (?1, ?2)")?
            .execute([first, last])?;
        Ok(Some(conn.last_insert_rowid()))
    }

    /// Queues a committed publish for the brokers.
    pub fn relay(&self, entry: Entry) {
        let _ = self.tx.send(entry);
    }

    /// Starts the relay: first what the last run left in `outbox` (read again from
    /// the store until that works), then each publish in turn.
    pub fn start(shared: &Arc<Shared>, link: Arc<KafkaLink>, retry: RetryConfig) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Entry>();
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut backoff = retry.schedule();
            let left = loop {
                match shared.db.read(left_by_last_run).await {
                    Ok(left) => break left,
                    Err(e) => {
                        let wait = backoff.next_delay();
                        tracing::warn!(error = %e, retry_in = ?wait, "reading the delivery outbox");
                        tokio::time::sleep(wait).await;
                    }
                }
            };
            if !left.is_empty() {
                tracing::info!(
                    publishes = left.len(),
                    "producing the deliveries the last run committed but Kafka had not acknowledged"
                );
            }
            for entry in left {
                produce(&shared, &link, &retry, entry).await;
            }
            while let Some(entry) = rx.recv().await {
                produce(&shared, &link, &retry, entry).await;
            }
        });
        Self { tx }
    }
}

/// The outbox rows in publish order, each with its deliveries still pending.
fn left_by_last_run(conn: &Connection) -> Result<Vec<Entry>, DbError> {
    let rows: Vec<(i64, i64, i64)> = conn
        .prepare("SELECT id, first_seq, last_seq FROM outbox ORDER BY id")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    rows.into_iter()
        .map(|(id, first, last)| {
            Ok(Entry {
                id,
                jobs: load_pending_between(conn, first, last)?,
            })
        })
        .collect()
}

/// Produces `entry` until the brokers acknowledge all of it, then deletes its row.
async fn produce(shared: &Arc<Shared>, link: &KafkaLink, retry: &RetryConfig, entry: Entry) {
    let mut backoff = retry.schedule();
    loop {
        let now = now_ms();
        let records: Vec<_> = entry
            .jobs
            .iter()
            .filter_map(|(j, due)| {
                let ep = shared.endpoints.by_id(j.endpoint_id)?;
                Some(KafkaLink::record(j, &ep, j.attempts, *due, now))
            })
            .collect();
        match link.send_all(DeliveryTopic::Deliveries, &records).await {
            Ok(()) => break,
            Err(e) => {
                let wait = backoff.next_delay();
                crate::metrics::outbox_retry();
                tracing::warn!(error = %e, deliveries = records.len(), retry_in = ?wait, "Kafka did not take committed deliveries; trying again");
                tokio::time::sleep(wait).await;
            }
        }
    }
    let id = entry.id;
    let deleted = shared
        .db
        .write(move |conn| {
            conn.prepare_cached("DELETE FROM outbox WHERE id = ?1")?
                .execute([id])?;
            Ok(())
        })
        .await;
    if let Err(e) = deleted {
        // The row stays: the next start produces those records again (at least once).
        tracing::warn!(error = %e, "deleting a relayed outbox row");
    }
}
