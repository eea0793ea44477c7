//! Where the dispatcher records attempt outcomes. On the embedded store each outcome
//! is one write of the group-committing writer (its effect on the endpoint in the
//! same transaction). On the shared database a round trip per row is what costs, so
//! the outcomes waiting are taken together and recorded with two statements (the rows
//! as arrays), in one write; every caller hears back once it committed.

use super::deliveries::{record_outcome, DeliveryState, Outcome};
use super::store::{Db, DbError};
use crate::db::sql::Sql;
use crate::db::RepoError;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Outcomes recorded in one write at most.
const BATCH: usize = 2048;

/// Batches being written at once (the shared database has several writers).
const IN_FLIGHT: usize = 3;

type Waiting = (Outcome, oneshot::Sender<Result<bool, DbError>>);

/// Records outcomes; cheap to clone.
#[derive(Clone)]
pub struct Outcomes {
    db: Arc<Db>,
    disable_after: Duration,
    /// The batcher, on the shared database.
    batched: Option<mpsc::Sender<Waiting>>,
    /// Told at shutdown, once no attempt runs: the batcher writes what it holds and ends.
    closing: Arc<tokio::sync::Notify>,
}

impl Outcomes {
    /// On the shared database, starts the batcher on the current runtime.
    pub fn new(db: Arc<Db>, disable_after: Duration) -> Self {
        let closing = Arc::new(tokio::sync::Notify::new());
        let batched = db.is_shared().then(|| {
            let (tx, rx) = mpsc::channel(BATCH * 4);
            crate::tasks::spawn(batch_loop(db.clone(), rx, closing.clone()));
            tx
        });
        Self {
            db,
            disable_after,
            batched,
            closing,
        }
    }

    /// At shutdown, once the dispatcher is drained (no attempt runs, so none records):
    /// the batcher writes what it holds and ends. A record after it fails.
    pub fn close(&self) {
        self.closing.notify_one();
    }

    /// Records `o` (the attempt, the delivery's new state, and on the embedded store
    /// the endpoint's); answers whether the endpoint row changed there.
    ///
    /// # Errors
    /// [`DbError`]: nothing of it was recorded.
    pub async fn record(&self, o: Outcome) -> Result<bool, DbError> {
        match &self.batched {
            Some(tx) if o.effect.is_none() => {
                let (answer, heard) = oneshot::channel();
                tx.send((o, answer)).await.map_err(|_| DbError::Stopped)?;
                heard.await.map_err(|_| DbError::Stopped)?
            }
            _ => {
                let disable_after = self.disable_after;
                self.db
                    .write(move |conn| record_outcome(conn, &o, disable_after))
                    .await
            }
        }
    }
}

async fn batch_loop(
    db: Arc<Db>,
    mut rx: mpsc::Receiver<Waiting>,
    closing: Arc<tokio::sync::Notify>,
) {
    let in_flight = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let mut waiting = Vec::with_capacity(BATCH);
    loop {
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let n = tokio::select! {
            n = rx.recv_many(&mut waiting, BATCH) => n,
            // Closed: what is queued is still received, then recv_many answers 0.
            () = closing.notified(), if !rx.is_closed() => {
                rx.close();
                continue;
            }
        };
        if n == 0 {
            return;
        }
        let (outcomes, answers): (Vec<Outcome>, Vec<_>) =
            std::mem::take(&mut waiting).into_iter().unzip();
        let db = db.clone();
        crate::tasks::spawn(async move {
            let written = db.write(move |conn| record_many(conn, &outcomes)).await;
            drop(permit);
            for answer in answers {
                let _ = answer.send(written.clone().map(|()| false));
            }
        });
    }
}

/// Records `outcomes` (none with an endpoint effect) with two statements on the
/// shared database. A delivery with two outcomes in the batch keeps the last one.
fn record_many(conn: Sql<'_>, outcomes: &[Outcome]) -> Result<(), DbError> {
    let Sql::Postgres(s) = conn else {
        return Err(RepoError::Backend("a batch of outcomes").into());
    };
    let mut last = std::collections::HashMap::with_capacity(outcomes.len());
    for (i, o) in outcomes.iter().enumerate() {
        last.insert(o.seq, i);
    }
    let mut attempts = std::collections::HashMap::with_capacity(outcomes.len());
    for (i, o) in outcomes.iter().enumerate() {
        if let Some(a) = &o.attempt {
            attempts.insert((o.seq, a.number), i);
        }
    }
    // In seq order: two batches written at once lock rows in the same order.
    let mut attempts: Vec<usize> = attempts.into_values().collect();
    attempts.sort_unstable_by_key(|&i| outcomes[i].seq);
    let mut latest: Vec<usize> = last.into_values().collect();
    latest.sort_unstable_by_key(|&i| outcomes[i].seq);
    let a = |i: &usize| {
        (
            &outcomes[*i],
            outcomes[*i].attempt.as_ref().expect("kept above"),
        )
    };
    let a_seq: Vec<i64> = attempts.iter().map(|i| a(i).0.seq).collect();
    let a_number: Vec<i64> = attempts.iter().map(|i| i64::from(a(i).1.number)).collect();
    let a_at: Vec<i64> = attempts.iter().map(|i| a(i).0.at_ms).collect();
    let a_url: Vec<&str> = attempts.iter().map(|i| a(i).1.url.as_str()).collect();
    let a_status: Vec<Option<i64>> = attempts
        .iter()
        .map(|i| a(i).1.response_status.map(i64::from))
        .collect();
    let a_body: Vec<Option<&[u8]>> = attempts
        .iter()
        .map(|i| a(i).1.response_body.as_deref())
        .collect();
    let a_duration: Vec<i64> = attempts.iter().map(|i| a(i).1.duration_ms).collect();
    let a_error: Vec<Option<&str>> = attempts.iter().map(|i| a(i).1.error.as_deref()).collect();
    let d = |i: &usize| &outcomes[*i];
    let d_seq: Vec<i64> = latest.iter().map(|i| d(i).seq).collect();
    let d_state: Vec<&str> = latest.iter().map(|i| d(i).state.as_str()).collect();
    let d_attempts: Vec<i64> = latest.iter().map(|i| i64::from(d(i).attempts)).collect();
    let d_status: Vec<Option<i64>> = latest
        .iter()
        .map(|i| d(i).last_status.map(i64::from))
        .collect();
    let d_error: Vec<Option<&str>> = latest.iter().map(|i| d(i).last_error.as_deref()).collect();
    let d_next: Vec<Option<i64>> = latest.iter().map(|i| d(i).next_attempt_at_ms).collect();
    let d_at: Vec<i64> = latest.iter().map(|i| d(i).at_ms).collect();
    let pending = DeliveryState::Pending.as_str();
    s.with_client(|c| {
        if !a_seq.is_empty() {
            c.execute(
                "INSERT INTO attempts (delivery_seq, attempt, at, url, response_status, response_body, duration_ms, error) \
                 SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::bigint[], $6::bytea[], $7::bigint[], $8::text[]) \
                 ON CONFLICT (delivery_seq, attempt) DO UPDATE SET at = excluded.at, url = excluded.url, \
                 response_status = excluded.response_status, response_body = excluded.response_body, \
                 duration_ms = excluded.duration_ms, error = excluded.error",
                &[&a_seq, &a_number, &a_at, &a_url, &a_status, &a_body, &a_duration, &a_error],
            )?;
        }
        // A pending delivery's next attempt stays this process's (held in memory
        // until due) for a lease past it.
        c.execute(
            "UPDATE deliveries d SET state = u.state, attempts = u.attempts, \
             last_status = COALESCE(u.last_status, d.last_status), last_error = u.last_error, \
             next_attempt_at = u.next, updated_at = u.at, \
             single_attempt = CASE WHEN u.state = $8 THEN d.single_attempt ELSE 0 END, \
             lease_owner = CASE WHEN u.state = $8 AND u.next IS NOT NULL THEN $9 ELSE d.lease_owner END, \
             lease_until = CASE WHEN u.state = $8 AND u.next IS NOT NULL THEN GREATEST(u.next, u.at) + $10 ELSE d.lease_until END \
             FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::bigint[], $7::bigint[]) \
               AS u (seq, state, attempts, last_status, last_error, next, at) \
             WHERE d.seq = u.seq",
            &[
                &d_seq,
                &d_state,
                &d_attempts,
                &d_status,
                &d_error,
                &d_next,
                &d_at,
                &pending,
                &crate::db::process_id(),
                &crate::db::lease_ms(),
            ],
        )?;
        Ok(())
    })?;
    Ok(())
}
