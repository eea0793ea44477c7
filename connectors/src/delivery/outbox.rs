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
use crate::db::sql::{args, Sql};
use crate::kafka::DeliveryTopic;
use crate::writer::now_ms;
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
    tx: mpsc::Sender<Entry>,
}

impl Outbox {
    /// Records that `jobs` (just inserted, in this transaction) wait for the
    /// brokers; answers the row's id for [`Outbox::relay`].
    ///
    /// # Errors
    /// [`DbError`].
    pub fn record(conn: Sql<'_>, jobs: &[(Job, i64)]) -> Result<Option<i64>, DbError> {
        let (Some(first), Some(last)) = (
            jobs.iter().map(|(j, _)| j.seq).min(),
            jobs.iter().map(|(j, _)| j.seq).max(),
        ) else {
            return Ok(None);
        };
        // Shared database: the row is this process's relay's until its claim runs out
        // (the process was killed), then another's ([`claim_left`]). The embedded
        // store has one process and no claims.
        let id = if conn.is_postgres() {
            conn.query_one(
                "INSERT INTO outbox (first_seq, last_seq, claimed_until, owner) VALUES (?1, ?2, ?3, ?4) RETURNING id",
                args![first, last, now_ms() + crate::db::lease_ms(), crate::db::process_id()],
                |r| r.get(0),
            )?
        } else {
            conn.query_one(
                "INSERT INTO outbox (first_seq, last_seq) VALUES (?1, ?2) RETURNING id",
                args![first, last],
                |r| r.get(0),
            )?
        };
        Ok(Some(id))
    }

    /// Queues a committed publish for the brokers; waits while the relay holds
    /// [`QUEUED_AT_MOST`] publishes (the brokers are slow or down: publishers slow down
    /// instead of memory growing; what they committed is safe in the outbox).
    pub async fn relay(&self, entry: Entry) {
        let _ = self.tx.send(entry).await;
    }

    /// Starts the relay: first what the last run left in `outbox`, read here, before
    /// any publish of this run can add a row, then each publish in turn, several at
    /// once.
    pub fn start(shared: &Arc<Shared>, link: Arc<KafkaLink>, retry: RetryConfig) -> Self {
        let (tx, mut rx) = mpsc::channel::<Entry>(QUEUED_AT_MOST);
        let left = match shared.db.read_blocking(left_by_last_run) {
            Ok(left) => left,
            Err(e) => {
                // Rare (the store was just opened): those rows wait for the next start.
                tracing::error!(error = %e, "reading the delivery outbox; its rows are produced at the next start");
                Vec::new()
            }
        };
        if !left.is_empty() {
            tracing::info!(
                publishes = left.len(),
                "producing the deliveries the last run committed but Kafka had not acknowledged"
            );
        }
        let shared = shared.clone();
        if shared.db.is_shared() {
            crate::tasks::spawn(sweep_shared(shared.clone(), link.clone(), retry));
        }
        crate::tasks::spawn(async move {
            for entry in left {
                produce(&shared, &link, &retry, vec![entry]).await;
            }
            let mut batch = Vec::with_capacity(BATCH);
            loop {
                let n = tokio::select! {
                    n = rx.recv_many(&mut batch, BATCH) => n,
                    // Stopping: what is queued is produced, then the relay ends (a
                    // later publish's rows stay in the outbox for the next start or,
                    // shared, for another process once their claim runs out).
                    () = crate::tasks::stopped(), if !rx.is_closed() => {
                        rx.close();
                        continue;
                    }
                };
                if n == 0 {
                    return;
                }
                produce(&shared, &link, &retry, std::mem::take(&mut batch)).await;
            }
        });
        Self { tx }
    }
}

/// Publishes the relay holds at most; [`Outbox::relay`] waits beyond.
const QUEUED_AT_MOST: usize = 256;
/// Publishes produced together (their records in flight at once, batched by
/// librdkafka).
const BATCH: usize = 64;

/// Shared database: every half lease, the outbox rows whose claim ran out (their
/// process was killed before the brokers had them) are claimed and produced here.
async fn sweep_shared(shared: Arc<Shared>, link: Arc<KafkaLink>, retry: RetryConfig) {
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(
        crate::db::lease_ms() as u64 / 2,
    ));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = crate::tasks::stopped() => return,
        }
        match shared.db.write(|conn| claim_left(conn, now_ms())).await {
            Ok(left) if left.is_empty() => {}
            Ok(left) => {
                crate::metrics::shared_work_claimed("outbox", left.len() as u64);
                tracing::info!(
                    publishes = left.len(),
                    "producing deliveries another process committed but Kafka had not acknowledged"
                );
                produce(&shared, &link, &retry, left).await;
            }
            Err(e) => tracing::warn!(error = %e, "claiming the outbox rows of stopped processes"),
        }
    }
}

/// Shared database: claims (for a lease, `FOR UPDATE SKIP LOCKED`) the outbox rows no
/// live process holds, in publish order, each with its deliveries still pending.
fn claim_left(conn: Sql<'_>, now_ms: i64) -> Result<Vec<Entry>, DbError> {
    let mut rows: Vec<(i64, i64, i64, Option<String>)> = conn.query(
        "UPDATE outbox SET claimed_until = ?1 WHERE id IN \
         (SELECT id FROM outbox WHERE claimed_until < ?2 ORDER BY id LIMIT 100 FOR UPDATE SKIP LOCKED) \
         RETURNING id, first_seq, last_seq, owner",
        args![now_ms + crate::db::lease_ms(), now_ms],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    rows.sort_unstable();
    entries(conn, rows)
}

/// The outbox rows in publish order, each with its deliveries still pending (the
/// embedded store's; on the shared database [`sweep_shared`] takes them).
fn left_by_last_run(conn: Sql<'_>) -> Result<Vec<Entry>, DbError> {
    if conn.is_postgres() {
        return Ok(Vec::new());
    }
    let rows: Vec<(i64, i64, i64, Option<String>)> = conn.query(
        "SELECT id, first_seq, last_seq, NULL FROM outbox ORDER BY id",
        args![],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, None)),
    )?;
    entries(conn, rows)
}

/// Each row `(id, first seq, last seq, owner)` with its deliveries still pending: on
/// the shared database only its owner's, the range also holds other processes'.
fn entries(
    conn: Sql<'_>,
    rows: Vec<(i64, i64, i64, Option<String>)>,
) -> Result<Vec<Entry>, DbError> {
    rows.into_iter()
        .map(|(id, first, last, owner)| {
            Ok(Entry {
                id,
                jobs: load_pending_between(conn, first, last, owner.as_deref())?,
            })
        })
        .collect()
}

/// Produces `entries` until the brokers acknowledge all of them, then deletes their
/// rows. A refusal tries the same records again: publish order is kept, and the
/// records the brokers took before the refusal are produced twice (their worker drops
/// or repeats them under the same `webhook-id`, see the module docs).
async fn produce(shared: &Arc<Shared>, link: &KafkaLink, retry: &RetryConfig, entries: Vec<Entry>) {
    let mut backoff = retry.schedule();
    loop {
        let now = now_ms();
        let records: Vec<_> = entries
            .iter()
            .flat_map(|e| &e.jobs)
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
    let ids: Vec<i64> = entries.iter().map(|e| e.id).collect();
    let deleted = shared
        .db
        .write(move |conn| {
            for id in &ids {
                conn.execute("DELETE FROM outbox WHERE id = ?1", args![id])?;
            }
            Ok(())
        })
        .await;
    if let Err(e) = deleted {
        // The rows stay: the next start produces those records again (at least once).
        tracing::warn!(error = %e, "deleting relayed outbox rows");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::deliveries::insert_event;
    use crate::delivery::deliveries::lease;
    use crate::delivery::deliveries::tests::{event, setup};
    use std::time::Duration;

    #[tokio::test]
    async fn a_killed_publishers_row_is_taken_over_with_its_deliveries_only() {
        let (_d, db, e) = setup("postgres").await;
        let now = now_ms();
        let (mine, theirs) = db
            .write(move |c| {
                let publish = || {
                    // As the engine publishes: held by this process from the start.
                    let p = insert_event(c, &event(&e, None), now, Duration::from_secs(1))?;
                    lease(c, &[p.jobs[0].seq], now + 30_000)?;
                    Ok::<_, DbError>(p)
                };
                let (mine, theirs) = (publish()?, publish()?);
                // This process's publish, recorded in the outbox; the other delivery,
                // inserted between its seqs, is another live process's.
                let recorded: Vec<(Job, i64)> =
                    mine.jobs.iter().map(|j| (j.clone(), now)).collect();
                Outbox::record(c, &recorded)?;
                c.execute(
                    "UPDATE deliveries SET lease_owner = 'other:1:0' WHERE seq = ?1",
                    args![theirs.jobs[0].seq],
                )?;
                Ok((mine.jobs[0].seq, theirs.jobs[0].seq))
            })
            .await
            .unwrap();
        let widen_and_expire = move |c: Sql<'_>| {
            c.execute(
                "UPDATE outbox SET first_seq = ?1, last_seq = ?2, claimed_until = 0",
                args![mine.min(theirs), mine.max(theirs)],
            )
        };
        let claimed = db
            .write(move |c| {
                widen_and_expire(c)?;
                claim_left(c, now_ms())
            })
            .await
            .unwrap();
        let seqs: Vec<i64> = claimed
            .iter()
            .flat_map(|e| e.jobs.iter().map(|(j, _)| j.seq))
            .collect();
        assert_eq!(
            seqs,
            [mine],
            "only the row's owner's deliveries are produced again"
        );
        // A row an older release wrote has no owner: all of its range.
        let claimed = db
            .write(move |c| {
                widen_and_expire(c)?;
                c.execute("UPDATE outbox SET owner = NULL", args![])?;
                claim_left(c, now_ms())
            })
            .await
            .unwrap();
        assert_eq!(claimed[0].jobs.len(), 2);
    }
}
