//! Published events, deliveries and attempts in `webhooks.db`: the statements the
//! engine runs. A delivery is `pending` until an attempt succeeds or its last attempt
//! fails; `next_attempt_at` is when it is due (what a restart resumes from).

use super::endpoints::EndpointEffect;
use super::model::{new_id, Endpoint};

/// The length of a delivery id: `msg_` and 26 characters ([`new_id`]).
const ID_LEN: usize = 30;
use super::store::DbError;
use crate::db::sql::{args, Row, Sql};
use crate::db::RepoError;
use bytes::Bytes;
use leadstream_pipeline::OrgId;
use std::sync::Arc;
use std::time::Duration;

/// A delivery's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    Pending,
    Succeeded,
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Succeeded => "succeeded",
            DeliveryState::Failed => "failed",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => DeliveryState::Pending,
            "succeeded" => DeliveryState::Succeeded,
            "failed" => DeliveryState::Failed,
            _ => return None,
        })
    }
}

/// One pending delivery row to insert ([`insert_pending`]).
pub struct PendingRow<'a> {
    /// `msg_…`: the `webhook-id` of every attempt.
    pub id: &'a str,
    pub event_id: &'a str,
    pub org: OrgId,
    pub endpoint_id: i64,
    pub url: &'a str,
    pub event_type: &'a str,
    /// Attempts already made (a delivery read back from Kafka).
    pub attempts: u32,
    pub due_ms: i64,
    pub created_ms: i64,
    /// The delivery's own members of the body ([`body`]).
    pub part: Option<&'a [u8]>,
}

/// Inserts one pending delivery; answers its seq. (A campaign's chunk inserts its
/// deliveries as one set: [`insert_parts`].)
///
/// # Errors
/// [`DbError`].
pub fn insert_pending(conn: Sql<'_>, d: &PendingRow<'_>) -> Result<i64, DbError> {
    Ok(conn.query_one(
        "INSERT INTO deliveries (id, event_id, org_id, endpoint_id, url, event_type, state, attempts, next_attempt_at, created_at, updated_at, part) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?8, ?9, ?9, ?10) RETURNING seq",
    args![
        d.id,
        d.event_id,
        d.org,
        d.endpoint_id,
        d.url,
        d.event_type,
        d.attempts,
        d.due_ms,
        d.created_ms,
        d.part
    ], |r| r.get(0))?)
}

/// A delivery's state as stored, for a caller deciding what to do with it.
///
/// # Errors
/// [`DbError`]; an unknown stored state is one.
pub fn state_by_id(conn: Sql<'_>, id: &str) -> Result<Option<(i64, DeliveryState, u32)>, DbError> {
    Ok(conn.query_opt(
        "SELECT seq, state, attempts FROM deliveries WHERE id = ?1",
        args![id],
        |r| Ok((r.get(0)?, state_of(r, 1)?, r.get(2)?)),
    )?)
}

/// A delivery to attempt: what the dispatcher queues.
#[derive(Debug, Clone)]
pub struct Job {
    pub seq: i64,
    /// The delivery id: `webhook-id` on every attempt.
    pub id: Arc<str>,
    pub event_id: Arc<str>,
    pub org: OrgId,
    pub endpoint_id: i64,
    pub event_type: Arc<str>,
    /// The event's payload.
    pub payload: Bytes,
    /// This delivery's own members of the body, when it has some (a campaign send's
    /// lead): see [`body`].
    pub part: Option<Bytes>,
    /// Attempts made so far.
    pub attempts: u32,
    /// A manual retry or replay: one attempt, no schedule.
    pub single: bool,
    pub created_at_ms: i64,
    /// The endpoint as a Kafka record carried it, when this process's registry does
    /// not have it (see `super::kafka`).
    pub snapshot: Option<Arc<Endpoint>>,
    /// The Kafka record to mark done once this delivery's outcome is durable.
    pub ack: Option<super::kafka::Ack>,
}

/// What every delivery of one event shares: its event.
pub struct EventOf {
    pub event_id: Arc<str>,
    pub org: OrgId,
    pub event_type: Arc<str>,
    /// The event's payload, as stored.
    pub payload: Bytes,
    pub created_at_ms: i64,
}

impl Job {
    /// A delivery of `event` to endpoint `endpoint_id`, with its own `part` of the body
    /// when it has one, as stored: no attempt made yet, on its schedule, nothing to
    /// acknowledge. The one constructor (a read-back or a Kafka record sets what
    /// differs from there).
    pub fn new(
        seq: i64,
        id: Arc<str>,
        event: &EventOf,
        endpoint_id: i64,
        part: Option<Bytes>,
    ) -> Self {
        Self {
            seq,
            id,
            event_id: event.event_id.clone(),
            org: event.org,
            endpoint_id,
            event_type: event.event_type.clone(),
            payload: event.payload.clone(),
            part,
            attempts: 0,
            single: false,
            created_at_ms: event.created_at_ms,
            snapshot: None,
            ack: None,
        }
    }

    /// The exact bytes every attempt sends and signs.
    pub fn body(&self) -> Bytes {
        match &self.part {
            None => self.payload.clone(),
            Some(part) => body(&self.payload, Some(part)),
        }
    }
}

/// A delivery's body: its event's payload (a JSON object's text), with the
/// delivery's own `part` (members of a JSON object, `"key":value,...`) added at the
/// end of that object when it has one. One event then carries what its deliveries
/// share once (a campaign send's template, language, instant), and each delivery only
/// what is its own (the lead), and no body is stored twice.
pub fn body(payload: &Bytes, part: Option<&[u8]>) -> Bytes {
    let Some(part) = part else {
        return payload.clone();
    };
    let Some(close) = payload.iter().rposition(|&b| b == b'}') else {
        return payload.clone();
    };
    let head = &payload[..close];
    let empty = head.iter().rev().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let mut out = Vec::with_capacity(payload.len() + part.len() + 1);
    out.extend_from_slice(head);
    if !empty {
        out.push(b',');
    }
    out.extend_from_slice(part);
    out.extend_from_slice(&payload[close..]);
    Bytes::from(out)
}

/// What a publish did.
#[derive(Debug)]
pub struct Published {
    pub event_id: String,
    /// Deliveries created (0 for a repeated idempotency key).
    pub jobs: Vec<Job>,
    /// The idempotency key had been used within the window: nothing was created.
    pub repeated: bool,
    /// When its deliveries' first attempts are due (wall-clock ms).
    pub due_at_ms: i64,
}

/// One event to publish.
pub struct NewEvent {
    pub org: OrgId,
    pub event_type: String,
    pub payload: Bytes,
    pub idempotency_key: Option<String>,
    pub endpoints: Vec<Arc<Endpoint>>,
    /// The first attempt's due time (wall-clock ms); `None`: now. A campaign send's
    /// deliveries are due at the send's instant.
    pub due_at_ms: Option<i64>,
}

impl NewEvent {
    /// What its deliveries share, once stored as `event_id` at `now_ms`.
    fn shared(&self, event_id: &str, now_ms: i64) -> EventOf {
        EventOf {
            event_id: Arc::from(event_id),
            org: self.org,
            event_type: Arc::from(self.event_type.as_str()),
            payload: self.payload.clone(),
            created_at_ms: now_ms,
        }
    }
}

/// Inserts the event and one pending delivery per endpoint, due now.
///
/// # Errors
/// [`DbError`].
pub fn insert_event(
    conn: Sql<'_>,
    ev: &NewEvent,
    now_ms: i64,
    idempotency_window: Duration,
) -> Result<Published, DbError> {
    if let Some(key) = &ev.idempotency_key {
        let earlier: Option<(String, i64)> = conn.query_opt(
            "SELECT id, created_at FROM events WHERE org_id = ?1 AND idempotency_key = ?2",
            args![ev.org, key],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        if let Some((id, at)) = earlier {
            if now_ms - at < idempotency_window.as_millis() as i64 {
                return Ok(Published {
                    event_id: id,
                    jobs: Vec::new(),
                    repeated: true,
                    due_at_ms: now_ms,
                });
            }
            // The window is over: the key is free again.
            conn.execute(
                "UPDATE events SET idempotency_key = NULL WHERE id = ?1",
                args![id],
            )?;
        }
    }
    let event_id = new_id("evt_", now_ms);
    conn.execute(
        "INSERT INTO events (id, org_id, event_type, payload, idempotency_key, deliveries, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    args![
        event_id,
        ev.org,
        ev.event_type,
        ev.payload,
        ev.idempotency_key,
        ev.endpoints.len(),
        now_ms
    ])?;
    let due = ev.due_at_ms.unwrap_or(now_ms).max(now_ms);
    let event = ev.shared(&event_id, now_ms);
    let mut jobs = Vec::with_capacity(ev.endpoints.len());
    for e in &ev.endpoints {
        let id = new_id("msg_", now_ms);
        let seq = insert_pending(
            conn,
            &PendingRow {
                id: &id,
                event_id: &event_id,
                org: ev.org,
                endpoint_id: e.id,
                url: &e.url,
                event_type: &ev.event_type,
                attempts: 0,
                due_ms: due,
                created_ms: now_ms,
                part: None,
            },
        )?;
        jobs.push(Job::new(seq, Arc::from(id), &event, e.id, None));
    }
    Ok(Published {
        event_id,
        jobs,
        repeated: false,
        due_at_ms: due,
    })
}

/// Inserts `events` (none with an idempotency key) and one pending delivery per
/// endpoint of each, on the shared database, with two statements whatever their
/// number (the rows as arrays): what [`insert_event`] does one event at a time, in
/// the same order.
///
/// # Errors
/// [`DbError`].
pub fn insert_events_bulk(
    s: &crate::db::sql::PgSession,
    events: &[&NewEvent],
    now_ms: i64,
) -> Result<Vec<Published>, DbError> {
    let ids: Vec<String> = events.iter().map(|_| new_id("evt_", now_ms)).collect();
    let orgs: Vec<i64> = events.iter().map(|e| e.org).collect();
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    let payloads: Vec<&[u8]> = events.iter().map(|e| &e.payload[..]).collect();
    let counts: Vec<i64> = events.iter().map(|e| e.endpoints.len() as i64).collect();
    let mut d_ids = Vec::new();
    let mut d_events = Vec::new();
    let mut d_orgs = Vec::new();
    let mut d_endpoints = Vec::new();
    let mut d_urls = Vec::new();
    let mut d_types = Vec::new();
    let mut d_due = Vec::new();
    for (ev, event_id) in events.iter().zip(&ids) {
        let due = ev.due_at_ms.unwrap_or(now_ms).max(now_ms);
        for e in &ev.endpoints {
            d_ids.push(new_id("msg_", now_ms));
            d_events.push(event_id.as_str());
            d_orgs.push(ev.org);
            d_endpoints.push(e.id);
            d_urls.push(e.url.as_str());
            d_types.push(ev.event_type.as_str());
            d_due.push(due);
        }
    }
    let seqs: Vec<i64> = s.with_client(|c| {
        c.execute(
            "INSERT INTO events (id, org_id, event_type, payload, deliveries, created_at) \
             SELECT u.id, u.org, u.type, u.payload, u.n, $6 \
             FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::bytea[], $5::bigint[]) AS u (id, org, type, payload, n)",
            &[&ids, &orgs, &types, &payloads, &counts, &now_ms],
        )?;
        // Held by this process's workers from the start (see [`lease`]).
        let rows = c.query(
            "INSERT INTO deliveries (id, event_id, org_id, endpoint_id, url, event_type, state, attempts, next_attempt_at, created_at, updated_at, lease_owner, lease_until) \
             SELECT u.id, u.event, u.org, u.endpoint, u.url, u.type, 'pending', 0, u.due, $8, $8, $9, GREATEST(u.due, $8) + $10 \
             FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::text[], $7::bigint[]) \
               WITH ORDINALITY AS u (id, event, org, endpoint, url, type, due, n) ORDER BY u.n \
             RETURNING seq, id",
            &[
                &d_ids,
                &d_events,
                &d_orgs,
                &d_endpoints,
                &d_urls,
                &d_types,
                &d_due,
                &now_ms,
                &crate::db::process_id(),
                &crate::db::lease_ms(),
            ],
        )?;
        let by_id: std::collections::HashMap<String, i64> = rows
            .iter()
            .map(|r| Ok((r.try_get::<_, String>(1)?, r.try_get::<_, i64>(0)?)))
            .collect::<Result<_, postgres::Error>>()?;
        Ok(d_ids.iter().map(|id| by_id.get(id).copied().unwrap_or(-1)).collect())
    })?;
    if seqs.contains(&-1) {
        return Err(RepoError::NoRow.into());
    }
    let mut seqs = seqs.into_iter();
    let mut d_ids = d_ids.into_iter();
    let mut out = Vec::with_capacity(events.len());
    for (ev, event_id) in events.iter().zip(ids) {
        let due = ev.due_at_ms.unwrap_or(now_ms).max(now_ms);
        let event = ev.shared(&event_id, now_ms);
        let jobs = ev
            .endpoints
            .iter()
            .zip(seqs.by_ref())
            .zip(d_ids.by_ref())
            .map(|((e, seq), id)| Job::new(seq, Arc::from(id), &event, e.id, None))
            .collect();
        out.push(Published {
            event_id,
            jobs,
            repeated: false,
            due_at_ms: due,
        });
    }
    Ok(out)
}

/// Deliveries of one event to one endpoint, each with its own part of the body
/// ([`body`]): a campaign send's chunk of leads.
pub struct NewParts {
    /// An event inserted by [`insert_shared_event`].
    pub event_id: Arc<str>,
    pub org: OrgId,
    pub event_type: Arc<str>,
    /// The event's payload, as stored.
    pub payload: Bytes,
    pub endpoint: Arc<Endpoint>,
    /// The first attempts' due time (wall-clock ms; now, if that has passed).
    pub due_at_ms: i64,
    /// One delivery per part.
    pub parts: Vec<Bytes>,
}

impl NewParts {
    /// A new delivery id per part, made before the write (the writer thread is the
    /// bottleneck of a large send).
    pub fn new_ids(&self, now_ms: i64) -> Vec<Arc<str>> {
        self.parts
            .iter()
            .map(|_| Arc::from(new_id("msg_", now_ms)))
            .collect()
    }
}

/// Inserts an event whose deliveries are added later, each with its own part
/// ([`insert_parts`]); answers its id.
///
/// # Errors
/// [`DbError`].
pub fn insert_shared_event(
    conn: Sql<'_>,
    org: OrgId,
    event_type: &str,
    payload: &[u8],
    now_ms: i64,
) -> Result<String, DbError> {
    let event_id = new_id("evt_", now_ms);
    conn.execute(
        "INSERT INTO events (id, org_id, event_type, payload, idempotency_key, deliveries, created_at) \
         VALUES (?1, ?2, ?3, ?4, NULL, 0, ?5)",
        args![event_id, org, event_type, payload, now_ms],
    )?;
    Ok(event_id)
}

/// Inserts one pending delivery per part of `batch`, in order; answers them with
/// their due time. Only the part is stored per delivery: its body is composed from
/// the event's payload whenever it is needed.
///
/// # Errors
/// [`DbError`].
pub fn insert_parts(
    conn: Sql<'_>,
    batch: &NewParts,
    ids: &[Arc<str>],
    now_ms: i64,
) -> Result<Vec<(Job, i64)>, DbError> {
    let n = batch.parts.len().min(ids.len());
    if n == 0 {
        return Ok(Vec::new());
    }
    let due = batch.due_at_ms.max(now_ms);
    let seqs = match conn {
        Sql::Sqlite(c) => {
            // One statement for the chunk: each row is the delivery id (fixed width)
            // followed by its part, in one array; the rows get consecutive seqs in
            // that order (one statement, one writer, AUTOINCREMENT).
            let rows: rusqlite::vtab::array::Array = std::rc::Rc::new(
                batch
                    .parts
                    .iter()
                    .zip(ids)
                    .map(|(part, id)| {
                        let mut row = Vec::with_capacity(ID_LEN + part.len());
                        row.extend_from_slice(id.as_bytes());
                        row.extend_from_slice(part);
                        rusqlite::types::Value::Blob(row)
                    })
                    .collect(),
            );
            c.prepare_cached(&format!(
                "INSERT INTO deliveries (id, event_id, org_id, endpoint_id, url, event_type, state, next_attempt_at, created_at, updated_at, part) \
                 SELECT CAST(substr(value, 1, {ID_LEN}) AS TEXT), ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?8, ?8, substr(value, {}) FROM rarray(?1)",
                ID_LEN + 1
            ))?
            .execute(rusqlite::params![
                rows,
                &*batch.event_id,
                batch.org,
                batch.endpoint.id,
                batch.endpoint.url,
                &*batch.event_type,
                due,
                now_ms,
            ])?;
            let first = c.last_insert_rowid() - n as i64 + 1;
            (first..first + n as i64).collect::<Vec<_>>()
        }
        Sql::Postgres(s) => {
            // One statement for the chunk, the ids and parts as two arrays. The rows
            // are inserted in array order and each takes the identity's next value,
            // so their seqs ascend in that order (other processes inserting at the
            // same time only leave gaps): the sorted seqs are the chunk's, in order.
            let id_list: Vec<&str> = ids[..n].iter().map(|i| &**i).collect();
            let part_list: Vec<&[u8]> = batch.parts[..n].iter().map(|p| &p[..]).collect();
            // Held by this process's workers from the start (see [`lease`]).
            let lease = lease_until(due, now_ms);
            let owner = crate::db::process_id();
            let rows = s.with_client(|c| {
                c.query(
                    "INSERT INTO deliveries (id, event_id, org_id, endpoint_id, url, event_type, state, next_attempt_at, created_at, updated_at, part, lease_owner, lease_until) \
                     SELECT u.id, $3, $4, $5, $6, $7, 'pending', $8, $9, $9, u.part, $10, $11 \
                     FROM UNNEST($1::text[], $2::bytea[]) WITH ORDINALITY AS u (id, part, n) ORDER BY u.n \
                     RETURNING seq",
                    &[
                        &id_list,
                        &part_list,
                        &&*batch.event_id,
                        &batch.org,
                        &batch.endpoint.id,
                        &batch.endpoint.url,
                        &&*batch.event_type,
                        &due,
                        &now_ms,
                        &owner,
                        &lease,
                    ],
                )
            })?;
            let mut seqs = rows
                .iter()
                .map(|r| r.try_get::<_, i64>(0))
                .collect::<Result<Vec<_>, postgres::Error>>()
                .map_err(RepoError::from)?;
            if seqs.len() != n {
                return Err(RepoError::NoRow.into());
            }
            seqs.sort_unstable();
            seqs
        }
    };
    let event = EventOf {
        event_id: batch.event_id.clone(),
        org: batch.org,
        event_type: batch.event_type.clone(),
        payload: batch.payload.clone(),
        created_at_ms: now_ms,
    };
    let jobs = batch
        .parts
        .iter()
        .zip(ids)
        .zip(seqs)
        .map(|((part, id), seq)| {
            (
                Job::new(
                    seq,
                    id.clone(),
                    &event,
                    batch.endpoint.id,
                    Some(part.clone()),
                ),
                due,
            )
        })
        .collect::<Vec<_>>();
    conn.execute(
        "UPDATE events SET deliveries = deliveries + ?2 WHERE id = ?1",
        args![batch.event_id, n],
    )?;
    Ok(jobs)
}

/// An attempt's (or an abandoned delivery's) result, to record.
pub struct Outcome {
    pub seq: i64,
    pub endpoint_id: i64,
    /// `None`: no attempt was made (the endpoint was deleted or disabled).
    pub attempt: Option<RecordedAttempt>,
    pub state: DeliveryState,
    pub attempts: u32,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub next_attempt_at_ms: Option<i64>,
    pub at_ms: i64,
    pub effect: Option<EndpointEffect>,
}

/// One attempt, as logged.
pub struct RecordedAttempt {
    pub number: u32,
    pub url: String,
    pub response_status: Option<u16>,
    pub response_body: Option<Vec<u8>>,
    pub duration_ms: i64,
    pub error: Option<String>,
}

/// Records `o`: the attempt, the delivery's new state and the endpoint's. Returns
/// whether the endpoint row changed.
///
/// # Errors
/// [`DbError`].
pub fn record_outcome(
    conn: Sql<'_>,
    o: &Outcome,
    disable_after: Duration,
) -> Result<bool, DbError> {
    if let Some(a) = &o.attempt {
        conn.execute(
            "INSERT INTO attempts (delivery_seq, attempt, at, url, response_status, response_body, duration_ms, error) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
             ON CONFLICT (delivery_seq, attempt) DO UPDATE SET at = excluded.at, url = excluded.url, \
             response_status = excluded.response_status, response_body = excluded.response_body, \
             duration_ms = excluded.duration_ms, error = excluded.error",
        args![
            o.seq,
            a.number,
            o.at_ms,
            a.url,
            a.response_status,
            a.response_body,
            a.duration_ms,
            a.error
        ])?;
    }
    conn.execute(
        "UPDATE deliveries SET state = ?2, attempts = ?3, last_status = COALESCE(?4, last_status), last_error = ?5, \
         next_attempt_at = ?6, updated_at = ?7, single_attempt = CASE WHEN ?2 = 'pending' THEN single_attempt ELSE 0 END \
         WHERE seq = ?1",
    args![
        o.seq,
        o.state.as_str(),
        o.attempts,
        o.last_status,
        o.last_error,
        o.next_attempt_at_ms,
        o.at_ms
    ])?;
    if let (DeliveryState::Pending, Some(next)) = (o.state, o.next_attempt_at_ms) {
        // This process holds the next attempt (in memory, until it is due).
        lease(conn, &[o.seq], lease_until(next, o.at_ms))?;
    }
    match &o.effect {
        Some(effect) => {
            super::endpoints::sqlite::write_effect(conn, o.endpoint_id, effect, disable_after)
        }
        None => Ok(false),
    }
}

/// Every pending delivery with its payload, oldest due first (a restart's queue).
///
/// # Errors
/// [`DbError`].
pub fn load_pending(conn: Sql<'_>) -> Result<Vec<(Job, i64)>, DbError> {
    load_pending_between(conn, 0, i64::MAX, None)
}

/// The pending deliveries with seqs in `[first, last]` (held by `owner`, when given:
/// shared database only), oldest due first.
///
/// # Errors
/// [`DbError`].
pub fn load_pending_between(
    conn: Sql<'_>,
    first: i64,
    last: i64,
    owner: Option<&str>,
) -> Result<Vec<(Job, i64)>, DbError> {
    const SELECT: &str = "SELECT d.seq, d.id, d.endpoint_id, d.event_type, d.attempts, d.single_attempt, \
         COALESCE(d.next_attempt_at, d.created_at), e.payload, d.created_at, d.event_id, d.org_id, d.part \
         FROM deliveries d JOIN events e ON e.id = d.event_id \
         WHERE d.state = 'pending' AND d.seq BETWEEN ?1 AND ?2";
    const ORDER: &str = " ORDER BY d.next_attempt_at, d.seq";
    let rows = match owner {
        None => conn.query(&format!("{SELECT}{ORDER}"), args![first, last], pending_row)?,
        Some(owner) => conn.query(
            &format!("{SELECT} AND d.lease_owner = ?3{ORDER}"),
            args![first, last, owner],
            pending_row,
        )?,
    };
    Ok(jobs_of(rows))
}

/// A pending delivery's columns as [`load_pending_between`] selects them.
type PendingColumns = (
    i64,
    String,
    i64,
    String,
    u32,
    bool,
    i64,
    Vec<u8>,
    i64,
    String,
    OrgId,
    Option<Vec<u8>>,
);

fn pending_row(r: &Row<'_>) -> Result<PendingColumns, RepoError> {
    pending_row_from(r, 0)
}

/// [`PendingColumns`] from column `at` of `r` on.
fn pending_row_from(r: &Row<'_>, at: usize) -> Result<PendingColumns, RepoError> {
    Ok((
        r.get(at)?,
        r.get(at + 1)?,
        r.get(at + 2)?,
        r.get(at + 3)?,
        r.get(at + 4)?,
        r.get(at + 5)?,
        r.get(at + 6)?,
        r.get(at + 7)?,
        r.get(at + 8)?,
        r.get(at + 9)?,
        r.get(at + 10)?,
        r.get(at + 11)?,
    ))
}

/// Jobs with their due times, one copy of each event's payload shared by its
/// deliveries.
fn jobs_of(rows: Vec<PendingColumns>) -> Vec<(Job, i64)> {
    let mut payloads: std::collections::HashMap<Vec<u8>, Bytes> = Default::default();
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let (
            seq,
            id,
            endpoint_id,
            event_type,
            attempts,
            single,
            due,
            payload,
            created,
            event_id,
            org,
            part,
        ) = row;
        // One copy per event, shared by its deliveries.
        let payload = payloads
            .entry(payload)
            .or_insert_with_key(|p| Bytes::from(p.clone()))
            .clone();
        let event = EventOf {
            event_id: Arc::from(event_id),
            org,
            event_type: Arc::from(event_type),
            payload,
            created_at_ms: created,
        };
        out.push((
            Job {
                attempts,
                single,
                ..Job::new(
                    seq,
                    Arc::from(id),
                    &event,
                    endpoint_id,
                    part.map(Bytes::from),
                )
            },
            due,
        ));
    }
    out
}

/// Shared database: marks deliveries `seqs` as held by this process's workers until
/// `until_ms` (no other process claims them before; see [`claim_due`]). Nothing on
/// the embedded store, which one process owns.
///
/// # Errors
/// [`DbError`].
pub fn lease(conn: Sql<'_>, seqs: &[i64], until_ms: i64) -> Result<(), DbError> {
    let Sql::Postgres(s) = conn else {
        return Ok(());
    };
    if seqs.is_empty() {
        return Ok(());
    }
    s.with_client(|c| {
        c.execute(
            "UPDATE deliveries SET lease_owner = $1, lease_until = $2 WHERE seq = ANY($3)",
            &[&crate::db::process_id(), &until_ms, &seqs],
        )
    })?;
    Ok(())
}

/// How long a held delivery due at `due_ms` stays this process's: until its attempt
/// is due and a lease after.
pub fn lease_until(due_ms: i64, now_ms: i64) -> i64 {
    due_ms.max(now_ms) + crate::db::lease_ms()
}

/// Shared database: extends, to a lease from `now_ms`, the leases of this process's
/// pending deliveries that end within half a lease: those its workers still hold in
/// memory (a backlog behind an endpoint's `maxInFlight`, a retry about to be due), so
/// that no other process claims them while this one lives. Answers how many.
///
/// # Errors
/// [`DbError`].
pub fn renew_leases(conn: Sql<'_>, now_ms: i64) -> Result<usize, DbError> {
    if !conn.is_postgres() {
        return Ok(0);
    }
    let lease = crate::db::lease_ms();
    Ok(conn.execute(
        "UPDATE deliveries SET lease_until = ?2 + ?3 \
         WHERE lease_owner = ?1 AND state = 'pending' AND lease_until >= ?2 AND lease_until < ?2 + ?3 / 2",
        args![crate::db::process_id(), now_ms, lease],
    )?)
}

/// Shared database, at shutdown: hands back the pending deliveries this process
/// holds (their lease ends now), so another process claims each when it is due
/// instead of a lease later. Answers how many.
///
/// # Errors
/// [`DbError`].
pub fn release_leases(conn: Sql<'_>) -> Result<usize, DbError> {
    if !conn.is_postgres() {
        return Ok(0);
    }
    Ok(conn.execute(
        "UPDATE deliveries SET lease_until = 0 WHERE lease_owner = ?1 AND state = 'pending'",
        args![crate::db::process_id()],
    )?)
}

/// Shared database: claims for this process up to `limit` pending deliveries due by
/// `horizon_ms` that no live process holds (never held, or their holder's lease ran
/// out: it was killed), `FOR UPDATE SKIP LOCKED` so that two processes never claim
/// the same one; answers them with their due times.
///
/// # Errors
/// [`DbError`].
pub fn claim_due(
    conn: Sql<'_>,
    now_ms: i64,
    horizon_ms: i64,
    limit: usize,
) -> Result<Vec<(Job, i64)>, DbError> {
    let Sql::Postgres(s) = conn else {
        return Ok(Vec::new());
    };
    let me = crate::db::process_id();
    let limit = limit as i64;
    let rows = s
        .with_client(|c| {
            let seqs: Vec<i64> = c
                .query(
                    "UPDATE deliveries SET lease_owner = $1, lease_until = GREATEST(COALESCE(next_attempt_at, created_at), $2) + $3 \
                     WHERE seq IN (SELECT seq FROM deliveries WHERE state = 'pending' AND lease_until < $2 \
                       AND lease_owner IS DISTINCT FROM $1 AND COALESCE(next_attempt_at, created_at) <= $4 \
                       ORDER BY next_attempt_at LIMIT $5 FOR UPDATE SKIP LOCKED) \
                     RETURNING seq",
                    &[&me, &now_ms, &crate::db::lease_ms(), &horizon_ms, &limit],
                )?
                .iter()
                .map(|r| r.try_get(0))
                .collect::<Result<_, _>>()?;
            c.query(
                "SELECT d.seq, d.id, d.endpoint_id, d.event_type, d.attempts, d.single_attempt, \
                 COALESCE(d.next_attempt_at, d.created_at), e.payload, d.created_at, d.event_id, d.org_id, d.part \
                 FROM deliveries d JOIN events e ON e.id = d.event_id \
                 WHERE d.seq = ANY($1) ORDER BY d.next_attempt_at, d.seq",
                &[&seqs],
            )
        })?;
    let rows = rows
        .iter()
        .map(|r| pending_row(&Row::Postgres(r)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(jobs_of(rows))
}

/// Marks a finished delivery for one more attempt now. `Ok(None)`: no such delivery
/// of `org`; `Err(state)` inside: it is still pending.
///
/// # Errors
/// [`DbError`].
pub fn mark_for_retry(
    conn: Sql<'_>,
    org: OrgId,
    id: &str,
    now_ms: i64,
) -> Result<Option<Result<Job, DeliveryState>>, DbError> {
    let row = conn.query_opt(
        "SELECT d.state, d.seq, d.id, d.endpoint_id, d.event_type, d.attempts, d.single_attempt, \
         COALESCE(d.next_attempt_at, d.created_at), e.payload, d.created_at, d.event_id, d.org_id, d.part \
         FROM deliveries d JOIN events e ON e.id = d.event_id WHERE d.id = ?1 AND d.org_id = ?2",
        args![id, org],
        |r| Ok((state_of(r, 0)?, pending_row_from(r, 1)?)),
    )?;
    let row = row.map(|(state, columns)| {
        let (job, _) = jobs_of(vec![columns]).pop().expect("one row in, one out");
        (
            state,
            Job {
                single: true,
                ..job
            },
        )
    });
    let Some((state, job)) = row else {
        return Ok(None);
    };
    if state == DeliveryState::Pending {
        return Ok(Some(Err(DeliveryState::Pending)));
    }
    conn.execute(
        "UPDATE deliveries SET state = 'pending', single_attempt = 1, next_attempt_at = ?2, updated_at = ?2 WHERE seq = ?1",
        args![job.seq, now_ms],
    )?;
    lease(conn, &[job.seq], lease_until(now_ms, now_ms))?;
    Ok(Some(Ok(job)))
}

/// Marks every failed delivery of endpoint `endpoint` created in `[since, until]`
/// for one more attempt now.
///
/// # Errors
/// [`DbError`].
pub fn mark_replay(
    conn: Sql<'_>,
    endpoint: i64,
    since_ms: i64,
    until_ms: i64,
    now_ms: i64,
) -> Result<Vec<Job>, DbError> {
    let ids: Vec<String> = conn.query(
        "SELECT id FROM deliveries WHERE endpoint_id = ?1 AND state = 'failed' \
         AND created_at >= ?2 AND created_at <= ?3 ORDER BY seq",
        args![endpoint, since_ms, until_ms],
        |r| r.get(0),
    )?;
    let org: Option<OrgId> = conn.query_opt(
        "SELECT org_id FROM deliveries WHERE endpoint_id = ?1 LIMIT 1",
        args![endpoint],
        |r| r.get(0),
    )?;
    let Some(org) = org else {
        return Ok(Vec::new());
    };
    let mut jobs = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(Ok(job)) = mark_for_retry(conn, org, &id, now_ms)? {
            jobs.push(job);
        }
    }
    Ok(jobs)
}

/// Deletes finished deliveries (with their attempts) last updated before `cutoff_ms`,
/// and events left with no delivery, a chunk at a time. Returns the deliveries deleted.
/// The caller holds this round's [`crate::db::retention_turn`].
///
/// # Errors
/// [`DbError`].
pub fn delete_older_than(conn: Sql<'_>, cutoff_ms: i64, chunk: usize) -> Result<usize, DbError> {
    let seqs: Vec<i64> = conn.query(
        "SELECT seq FROM deliveries WHERE state != 'pending' AND updated_at < ?1 LIMIT ?2",
        args![cutoff_ms, chunk],
        |r| r.get(0),
    )?;
    for seq in &seqs {
        conn.execute("DELETE FROM attempts WHERE delivery_seq = ?1", args![seq])?;
        conn.execute("DELETE FROM deliveries WHERE seq = ?1", args![seq])?;
    }
    conn.execute(
        "DELETE FROM events WHERE created_at < ?1 AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = events.id)",
        args![cutoff_ms],
    )?;
    Ok(seqs.len())
}

/// A delivery as listed.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryRow {
    #[schema(example = "msg_01jd8x6k3v9q2w7e5r4t1y0u8i")]
    pub id: String,
    pub event_id: String,
    pub event_type: String,
    pub endpoint_id: i64,
    pub url: String,
    /// `pending`, `succeeded` or `failed`.
    pub state: DeliveryState,
    pub attempts: u32,
    /// The status of the last answer, `null` when none came.
    pub last_status: Option<u16>,
    /// Why the last attempt failed without an answer (timeout, connection, refused).
    pub last_error: Option<String>,
    /// When the next attempt is due, for a pending delivery.
    pub next_attempt_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip)]
    #[schema(ignore)]
    pub seq: i64,
    #[serde(skip)]
    #[schema(ignore)]
    pub created_at_ms: i64,
    #[serde(skip)]
    #[schema(ignore)]
    pub updated_at_ms: i64,
}

const ROW_COLUMNS: &str =
    "id, event_id, event_type, endpoint_id, url, state, attempts, last_status, last_error, \
     next_attempt_at, created_at, updated_at, seq";

/// A stored state; one this binary does not know is a read error, never a default.
fn state_of(r: &Row<'_>, column: usize) -> Result<DeliveryState, RepoError> {
    let text: String = r.get(column)?;
    DeliveryState::parse(&text).ok_or(RepoError::Unknown {
        column: "deliveries.state",
        value: text,
    })
}

fn read_delivery(r: &Row<'_>) -> Result<DeliveryRow, RepoError> {
    use leadstream_pipeline::time::format_rfc3339_ms;
    let state = state_of(r, 5)?;
    let next: Option<i64> = r.get(9)?;
    let created: i64 = r.get(10)?;
    let updated: i64 = r.get(11)?;
    Ok(DeliveryRow {
        id: r.get(0)?,
        event_id: r.get(1)?,
        event_type: r.get(2)?,
        endpoint_id: r.get(3)?,
        url: r.get(4)?,
        next_attempt_at: next
            .filter(|_| state == DeliveryState::Pending)
            .map(format_rfc3339_ms),
        state,
        attempts: r.get(6)?,
        last_status: r.get(7)?,
        last_error: r.get(8)?,
        created_at: format_rfc3339_ms(created),
        updated_at: format_rfc3339_ms(updated),
        seq: r.get(12)?,
        created_at_ms: created,
        updated_at_ms: updated,
    })
}

/// The order of a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    CreatedAt,
    UpdatedAt,
    Attempts,
    LastStatus,
}

impl SortKey {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "createdAt" => SortKey::CreatedAt,
            "updatedAt" => SortKey::UpdatedAt,
            "attempts" => SortKey::Attempts,
            "lastStatus" => SortKey::LastStatus,
            _ => return None,
        })
    }
    fn column(self) -> &'static str {
        match self {
            SortKey::CreatedAt => "created_at",
            SortKey::UpdatedAt => "updated_at",
            SortKey::Attempts => "attempts",
            // No answer sorts below every status.
            SortKey::LastStatus => "COALESCE(last_status, -1)",
        }
    }
    /// The sort value of `row`, for a cursor.
    pub fn value(self, row: &DeliveryRow) -> i64 {
        match self {
            SortKey::CreatedAt => row.created_at_ms,
            SortKey::UpdatedAt => row.updated_at_ms,
            SortKey::Attempts => i64::from(row.attempts),
            SortKey::LastStatus => row.last_status.map_or(-1, i64::from),
        }
    }
}

/// A listing's filters, order and position.
#[derive(Debug, Clone)]
pub struct ListQuery {
    pub org: OrgId,
    pub state: Option<DeliveryState>,
    pub event_type: Option<String>,
    pub endpoint_id: Option<i64>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub sort: SortKey,
    pub descending: bool,
    pub limit: usize,
    /// After this (sort value, seq).
    pub after: Option<(i64, i64)>,
}

/// One page of deliveries: at most `limit`, and whether more follow.
///
/// # Errors
/// [`DbError`].
pub fn list(conn: Sql<'_>, q: &ListQuery) -> Result<(Vec<DeliveryRow>, bool), DbError> {
    use crate::db::sql::Param;
    let mut sql = format!("SELECT {ROW_COLUMNS} FROM deliveries WHERE org_id = ?");
    let mut args: Vec<&dyn Param> = vec![&q.org];
    let state = q.state.map(DeliveryState::as_str);
    if let Some(s) = &state {
        sql.push_str(" AND state = ?");
        args.push(s);
    }
    if let Some(t) = &q.event_type {
        sql.push_str(" AND event_type = ?");
        args.push(t);
    }
    if let Some(e) = &q.endpoint_id {
        sql.push_str(" AND endpoint_id = ?");
        args.push(e);
    }
    if let Some(s) = &q.since_ms {
        sql.push_str(" AND created_at >= ?");
        args.push(s);
    }
    if let Some(u) = &q.until_ms {
        sql.push_str(" AND created_at <= ?");
        args.push(u);
    }
    let col = q.sort.column();
    let (cmp, dir) = if q.descending {
        ("<", "DESC")
    } else {
        (">", "ASC")
    };
    if let Some((v, seq)) = &q.after {
        sql.push_str(&format!(
            " AND ({col} {cmp} ? OR ({col} = ? AND seq {cmp} ?))"
        ));
        args.extend([v as &dyn Param, v, seq]);
    }
    sql.push_str(&format!(" ORDER BY {col} {dir}, seq {dir} LIMIT ?"));
    let limit = q.limit as i64 + 1;
    args.push(&limit);
    let mut rows: Vec<DeliveryRow> = conn.query(&sql, &args, read_delivery)?;
    let more = rows.len() > q.limit;
    rows.truncate(q.limit);
    Ok((rows, more))
}

/// `org`'s deliveries that finished in each minute of `[since_ms, until_ms)` by their
/// last update: (succeeded, failed), one entry per minute started in the window.
///
/// Uses the `(org_id, updated_at)` index of the embedded store; on the shared
/// database (which has none, see its migration 4) it reads the organization's
/// deliveries.
///
/// # Errors
/// [`DbError`].
pub fn finished_per_minute(
    conn: Sql<'_>,
    org: OrgId,
    since_ms: i64,
    until_ms: i64,
) -> Result<Vec<(u64, u64)>, DbError> {
    let minutes = leadstream_pipeline::time::minutes_spanned(since_ms, until_ms);
    let mut out = vec![(0u64, 0u64); minutes];
    let rows = conn.query(
        "SELECT (updated_at - ?) / 60000, state, count(*) FROM deliveries
         WHERE org_id = ? AND updated_at >= ? AND updated_at < ? AND state <> 'pending'
         GROUP BY 1, 2",
        &[&since_ms, &org, &since_ms, &until_ms],
        |r| Ok((r.get::<i64>(0)?, r.get::<String>(1)?, r.get::<i64>(2)?)),
    )?;
    for (minute, state, n) in rows {
        let Some(slot) = usize::try_from(minute).ok().and_then(|m| out.get_mut(m)) else {
            continue;
        };
        let n = u64::try_from(n).unwrap_or(0);
        match DeliveryState::parse(&state) {
            Some(DeliveryState::Succeeded) => slot.0 += n,
            Some(DeliveryState::Failed) => slot.1 += n,
            _ => {}
        }
    }
    Ok(out)
}

/// How many of `org`'s deliveries are pending.
///
/// # Errors
/// [`DbError`].
pub fn pending_of(conn: Sql<'_>, org: OrgId) -> Result<u64, DbError> {
    let n: i64 = conn.query_one(
        "SELECT count(*) FROM deliveries WHERE org_id = ? AND state = 'pending'",
        &[&org],
        |r| r.get(0),
    )?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// One attempt as shown.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AttemptRow {
    /// 1-based.
    pub attempt: u32,
    /// `succeeded` (a 2xx) or `failed`.
    #[schema(example = "failed")]
    pub state: &'static str,
    pub at: String,
    pub url: String,
    /// `null` when no answer came.
    pub response_status: Option<u16>,
    /// The first 20 KB of the answer, as text (invalid UTF-8 replaced).
    pub response_body: Option<String>,
    pub duration_ms: i64,
    /// Why no (complete) answer came: timeout, connection error, refused target.
    pub error: Option<String>,
}

/// A delivery with its request body and every attempt.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryDetail {
    pub id: String,
    pub event_id: String,
    pub event_type: String,
    pub endpoint_id: i64,
    pub url: String,
    /// `pending`, `succeeded` or `failed`.
    pub state: DeliveryState,
    /// Every attempt, first first.
    pub attempts: Vec<AttemptRow>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// The body every attempt sent.
    #[schema(value_type = Object)]
    pub payload: Box<serde_json::value::RawValue>,
}

/// `org`'s delivery `id`, with its payload and attempts.
///
/// # Errors
/// [`DbError`].
pub fn get(conn: Sql<'_>, org: OrgId, id: &str) -> Result<Option<DeliveryDetail>, DbError> {
    use leadstream_pipeline::time::format_rfc3339_ms;
    let Some(delivery) = conn.query_opt(
        &format!("SELECT {ROW_COLUMNS} FROM deliveries WHERE id = ?1 AND org_id = ?2"),
        args![id, org],
        read_delivery,
    )?
    else {
        return Ok(None);
    };
    let (payload, part): (Vec<u8>, Option<Vec<u8>>) = conn.query_one(
        "SELECT e.payload, d.part FROM events e, deliveries d WHERE e.id = ?1 AND d.seq = ?2",
        args![delivery.event_id, delivery.seq],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let payload = payload_json(payload, part.as_deref())?;
    let attempts = conn.query(
        "SELECT attempt, at, url, response_status, response_body, duration_ms, error FROM attempts \
         WHERE delivery_seq = ?1 ORDER BY attempt",
        args![delivery.seq],
        |r| {
            let body: Option<Vec<u8>> = r.get(4)?;
            let status: Option<u16> = r.get(3)?;
            Ok(AttemptRow {
                attempt: r.get(0)?,
                state: if status.is_some_and(|s| (200..300).contains(&s)) {
                    "succeeded"
                } else {
                    "failed"
                },
                at: format_rfc3339_ms(r.get(1)?),
                url: r.get(2)?,
                response_status: r.get(3)?,
                response_body: body.map(|b| String::from_utf8_lossy(&b).into_owned()),
                duration_ms: r.get(5)?,
                error: r.get(6)?,
            })
        },
    )?;
    let d = delivery;
    Ok(Some(DeliveryDetail {
        id: d.id,
        event_id: d.event_id,
        event_type: d.event_type,
        endpoint_id: d.endpoint_id,
        url: d.url,
        state: d.state,
        attempts,
        last_status: d.last_status,
        last_error: d.last_error,
        next_attempt_at: d.next_attempt_at,
        created_at: d.created_at,
        updated_at: d.updated_at,
        payload,
    }))
}

/// A delivery's body as JSON: its event's `payload` with its own `part`.
fn payload_json(
    payload: Vec<u8>,
    part: Option<&[u8]>,
) -> Result<Box<serde_json::value::RawValue>, DbError> {
    let payload = body(&Bytes::from(payload), part);
    serde_json::value::RawValue::from_string(String::from_utf8_lossy(&payload).into_owned())
        .map_err(|e| {
            DbError::Sql(Arc::new(rusqlite::Error::ToSqlConversionFailure(Box::new(
                e,
            ))))
        })
}

/// What a log shows of a delivery beside its row: the body and the attempts made.
#[derive(Debug)]
pub struct RunDetail {
    /// The body every attempt sent.
    pub payload: Box<serde_json::value::RawValue>,
    /// Attempts made.
    pub attempts: usize,
    /// The last attempt's answer, once one was made.
    pub last: Option<LastAnswer>,
}

/// What an attempt got back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastAnswer {
    /// `None` when no answer came (`error` says why).
    pub status: Option<u16>,
    /// The answer's body, as stored (at most 20 KB).
    pub body: Option<String>,
    pub error: Option<String>,
}

/// The bodies and attempts of `org`'s deliveries `seqs` (a page of a log), by seq: one
/// statement for the page, whatever its length. A seq that is not `org`'s, or no
/// longer stored, is left out.
///
/// # Errors
/// [`DbError`].
pub fn run_details(
    conn: Sql<'_>,
    org: OrgId,
    seqs: &[i64],
) -> Result<std::collections::HashMap<i64, RunDetail>, DbError> {
    // The seqs as SQLite's `rarray` or a Postgres array: one statement whatever their
    // number.
    let sql = |seqs_match: &str| {
        format!(
            "WITH page AS (SELECT seq, event_id, part FROM deliveries WHERE org_id = ?1 AND seq {seqs_match}), \
             tried AS (SELECT delivery_seq, count(*) AS n, max(attempt) AS last FROM attempts \
               WHERE delivery_seq IN (SELECT seq FROM page) GROUP BY delivery_seq) \
             SELECT page.seq, e.payload, page.part, coalesce(tried.n, 0), \
               a.response_status, a.response_body, a.error \
             FROM page JOIN events e ON e.id = page.event_id \
             LEFT JOIN tried ON tried.delivery_seq = page.seq \
             LEFT JOIN attempts a ON a.delivery_seq = page.seq AND a.attempt = tried.last"
        )
    };
    let detail = |r: &Row<'_>| -> Result<(i64, RunDetail), DbError> {
        let part: Option<Vec<u8>> = r.get(2)?;
        let attempts: usize = r.get(3)?;
        let body: Option<Vec<u8>> = r.get(5)?;
        Ok((
            r.get(0)?,
            RunDetail {
                payload: payload_json(r.get(1)?, part.as_deref())?,
                attempts,
                last: (attempts > 0)
                    .then(|| -> Result<_, RepoError> {
                        Ok(LastAnswer {
                            status: r.get(4)?,
                            body: body.map(|b| String::from_utf8_lossy(&b).into_owned()),
                            error: r.get(6)?,
                        })
                    })
                    .transpose()?,
            },
        ))
    };
    let mut out = std::collections::HashMap::with_capacity(seqs.len());
    match conn {
        Sql::Sqlite(c) => {
            let list: rusqlite::vtab::array::Array = std::rc::Rc::new(
                seqs.iter()
                    .map(|&s| rusqlite::types::Value::Integer(s))
                    .collect(),
            );
            let mut stmt = c.prepare_cached(&sql("IN rarray(?2)"))?;
            let mut rows = stmt.query(rusqlite::params![org, list])?;
            while let Some(r) = rows.next()? {
                let (seq, d) = detail(&Row::Sqlite(r))?;
                out.insert(seq, d);
            }
        }
        Sql::Postgres(session) => {
            let sql = sql("= ANY($2)").replace("?1", "$1");
            let rows = session.with_client(|c| c.query(&sql, &[&org, &seqs]))?;
            for r in &rows {
                let (seq, d) = detail(&Row::Postgres(r))?;
                out.insert(seq, d);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::delivery::endpoints::Endpoints;
    use crate::delivery::model::EndpointKind;
    use crate::delivery::store::Db;

    /// Each test runs on both: one suite, two backends.
    const BACKENDS: [&str; 2] = ["sqlite", "postgres"];

    #[test]
    fn a_page_of_run_details_is_what_each_delivery_shows_alone() {
        crate::db::testing::on_both_backends(|conn, backend| {
            conn.execute(
                "INSERT INTO events (id, org_id, event_type, payload, deliveries, created_at) \
                 VALUES ('evt_1', 1, 't', ?1, 2, 0), ('evt_2', 1, 't', ?2, 1, 0)",
                args![br#"{"apptoto_id":"a1"}"#.to_vec(), br#"{"k":1}"#.to_vec()],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO deliveries (seq, id, event_id, org_id, endpoint_id, url, event_type, state, created_at, updated_at, part) \
                 VALUES (1, 'd1', 'evt_1', 1, 5, 'u', 't', 'pending', 0, 0, NULL), \
                        (2, 'd2', 'evt_2', 1, 5, 'u', 't', 'failed', 0, 0, ?1), \
                        (3, 'd3', 'evt_1', 2, 6, 'u', 't', 'pending', 0, 0, NULL)",
                args![br#""lead":7"#.to_vec()],
            )
            .unwrap();
            let none: Option<i64> = None;
            conn.execute(
                "INSERT INTO attempts (delivery_seq, attempt, at, url, response_status, response_body, duration_ms, error) \
                 VALUES (2, 1, 0, 'u', 500, ?1, 1, NULL), (2, 2, 0, 'u', ?2, NULL, 1, 'timeout')",
                args![b"no".to_vec(), none],
            )
            .unwrap();
            // Org 2's delivery and a seq that is not stored are left out.
            let mut got = run_details(conn, 1, &[1, 2, 3, 99]).unwrap();
            let mut keys: Vec<i64> = got.keys().copied().collect();
            keys.sort();
            assert_eq!(keys, [1, 2], "{backend}");
            let first = got.remove(&1).unwrap();
            assert_eq!(first.payload.get(), r#"{"apptoto_id":"a1"}"#, "{backend}");
            assert_eq!((first.attempts, first.last), (0, None), "{backend}");
            let second = got.remove(&2).unwrap();
            assert_eq!(second.payload.get(), r#"{"k":1,"lead":7}"#, "{backend}");
            let alone = get(conn, 1, "d2").unwrap().unwrap();
            assert_eq!(second.payload.get(), alone.payload.get(), "{backend}");
            assert_eq!(second.attempts, alone.attempts.len(), "{backend}");
            let last = alone.attempts.last().unwrap();
            assert_eq!(
                second.last,
                Some(LastAnswer {
                    status: last.response_status,
                    body: last.response_body.clone(),
                    error: last.error.clone(),
                }),
                "{backend}"
            );
            assert_eq!(second.last.unwrap().error.as_deref(), Some("timeout"));
            assert!(run_details(conn, 1, &[]).unwrap().is_empty(), "{backend}");
        });
    }

    /// A fresh store of `backend` with one endpoint (the data dir lives as long as
    /// the first value).
    pub(crate) async fn setup(
        backend: &str,
    ) -> (Option<tempfile::TempDir>, Arc<Db>, Arc<Endpoint>) {
        let (dir, db, endpoints) = if backend == "postgres" {
            let pg = crate::db::testing::shared_pg().await;
            let db = Db::open_shared(&pg).unwrap();
            (None, db, Endpoints::open_shared(pg).await.unwrap())
        } else {
            let dir = tempfile::tempdir().unwrap();
            let db = Db::open(dir.path()).unwrap();
            let endpoints = Arc::new(Endpoints::load(db.clone()).unwrap());
            (Some(dir), db, endpoints)
        };
        let e = endpoints
            .create(
                1,
                EndpointKind::Registry,
                "https://example.com/h".into(),
                1_000,
            )
            .await
            .unwrap();
        (dir, db, e)
    }

    pub(crate) fn event(e: &Arc<Endpoint>, key: Option<&str>) -> NewEvent {
        NewEvent {
            due_at_ms: None,
            org: 1,
            event_type: "t".into(),
            payload: Bytes::from_static(b"{\"a\":1}"),
            idempotency_key: key.map(str::to_owned),
            endpoints: vec![e.clone()],
        }
    }

    #[test]
    fn a_part_is_added_at_the_end_of_the_event_payload_object() {
        let payload = Bytes::from_static(br#"{"type":"campaign_send","sendId":3}"#);
        assert_eq!(
            body(&payload, Some(br#""phoneE164":"+14155550100""#)),
            &br#"{"type":"campaign_send","sendId":3,"phoneE164":"+14155550100"}"#[..]
        );
        assert_eq!(body(&payload, None), payload);
        // An empty object takes the part without a comma, whitespace included.
        assert_eq!(
            body(&Bytes::from_static(b"{ }"), Some(br#""a":1"#)),
            &br#"{ "a":1}"#[..]
        );
    }

    #[tokio::test]
    async fn parts_get_their_own_seqs_ids_and_bodies_and_a_restart_reads_them_back() {
        for backend in BACKENDS {
            let (_d, db, e) = setup(backend).await;
            let now = 2_000;
            let (event_id, jobs) = db
                .write(move |conn| {
                    let event_id =
                        insert_shared_event(conn, 1, "campaign_send", br#"{"s":1}"#, now)?;
                    // Another publish first, so the parts' seqs do not start at 1.
                    insert_event(conn, &event(&e, None), now, Duration::from_secs(1))?;
                    let batch = NewParts {
                        event_id: Arc::from(event_id.as_str()),
                        org: 1,
                        event_type: Arc::from("campaign_send"),
                        payload: Bytes::from_static(br#"{"s":1}"#),
                        endpoint: e,
                        due_at_ms: 5_000,
                        parts: (0..5)
                            .map(|i| Bytes::from(format!(r#""lead":{i}"#)))
                            .collect(),
                    };
                    let ids = batch.new_ids(now);
                    Ok((event_id, insert_parts(conn, &batch, &ids, now)?))
                })
                .await
                .unwrap();
            assert_eq!(jobs.len(), 5);
            let stored: Vec<(i64, String, Vec<u8>)> = db
                .read_blocking(|conn| {
                    Ok(conn.query(
                        "SELECT seq, id, part FROM deliveries WHERE part IS NOT NULL ORDER BY seq",
                        args![],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                    )?)
                })
                .unwrap();
            for (i, ((job, due), (seq, id, part))) in jobs.iter().zip(&stored).enumerate() {
                assert_eq!((job.seq, &*job.id), (*seq, id.as_str()), "job {i}");
                assert_eq!(*due, 5_000);
                assert_eq!(part, format!(r#""lead":{i}"#).as_bytes());
                assert_eq!(job.body(), format!(r#"{{"s":1,"lead":{i}}}"#).as_bytes());
            }
            // The restart's queue composes the same bodies; the event counts its deliveries.
            let pending = db.read_blocking(load_pending).unwrap();
            let bodies: Vec<Bytes> = pending
                .iter()
                .filter(|(j, _)| j.part.is_some())
                .map(|(j, _)| j.body())
                .collect();
            let expected: Vec<Bytes> = jobs.iter().map(|(j, _)| j.body()).collect();
            assert_eq!(bodies, expected);
            let counted: i64 = db
                .read_blocking(move |conn| {
                    Ok(conn.query_one(
                        "SELECT deliveries FROM events WHERE id = ?1",
                        args![event_id],
                        |r| r.get(0),
                    )?)
                })
                .unwrap();
            assert_eq!(counted, 5);
        }
    }

    #[tokio::test]
    async fn an_idempotency_key_repeats_within_the_window_and_is_free_after_it() {
        for backend in BACKENDS {
            let (_d, db, e) = setup(backend).await;
            let window = Duration::from_secs(10);
            let ev = event(&e, Some("k"));
            let ev2 = event(&e, Some("k"));
            let ev3 = event(&e, Some("k"));
            let (first, again, later) = db
                .write(move |c| {
                    Ok((
                        insert_event(c, &ev, 1_000, window)?,
                        insert_event(c, &ev2, 10_999, window)?,
                        insert_event(c, &ev3, 11_000, window)?,
                    ))
                })
                .await
                .unwrap();
            assert_eq!((first.jobs.len(), again.jobs.len()), (1, 0));
            assert!(again.repeated && again.event_id == first.event_id);
            assert!(!later.repeated && later.event_id != first.event_id);
            assert_eq!(later.jobs.len(), 1);
        }
    }

    #[tokio::test]
    async fn only_deliveries_no_live_process_holds_are_claimed_and_only_once() {
        for backend in BACKENDS {
            let (_d, db, e) = setup(backend).await;
            let now = 1_000_000;
            let ev = event(&e, None);
            let published = db
                .write(move |c| insert_event(c, &ev, now, Duration::from_secs(1)))
                .await
                .unwrap();
            let seq = published.jobs[0].seq;
            let claim = |at: i64| {
                let db = db.clone();
                async move {
                    db.write(move |c| claim_due(c, at, at + 1_000, 100))
                        .await
                        .unwrap()
                        .into_iter()
                        .map(|(j, _)| j.seq)
                        .collect::<Vec<_>>()
                }
            };
            if backend == "sqlite" {
                // One process owns the embedded store: nothing to claim from anyone.
                assert!(claim(now + 10_000).await.is_empty());
                continue;
            }
            // Held by another process until now + 5 s.
            db.write(move |c| {
                c.execute(
                    "UPDATE deliveries SET lease_owner = 'other:1:0', lease_until = ?2 WHERE seq = ?1",
                    args![seq, now + 5_000],
                )?;
                Ok(())
            })
            .await
            .unwrap();
            assert!(
                claim(now + 4_999).await.is_empty(),
                "its holder's lease runs"
            );
            assert_eq!(claim(now + 5_001).await, [seq], "the lease ran out");
            assert!(
                claim(now + 5_002).await.is_empty(),
                "claimed once: this process holds it now"
            );
            // Held here, its lease is renewed while this process lives: never claimable.
            let lease = crate::db::lease_ms();
            let late = now + 5_001 + lease - 1;
            let renewed = db.write(move |c| renew_leases(c, late)).await.unwrap();
            assert_eq!(renewed, 1);
            assert!(claim(late + 2).await.is_empty(), "renewed, still held");
            // Finished, it is nobody's to claim however late.
            let done = Outcome {
                seq,
                endpoint_id: e.id,
                attempt: None,
                state: DeliveryState::Succeeded,
                attempts: 1,
                last_status: Some(200),
                last_error: None,
                next_attempt_at_ms: None,
                at_ms: now + 6_000,
                effect: None,
            };
            db.write(move |c| record_outcome(c, &done, Duration::from_secs(1)))
                .await
                .unwrap();
            assert!(claim(now + 1_000_000).await.is_empty());
        }
    }

    #[tokio::test]
    async fn at_shutdown_the_leases_of_pending_deliveries_are_handed_back() {
        let (_d, db, e) = setup("postgres").await;
        let (ev1, ev2) = (event(&e, None), event(&e, None));
        let until = |seq: i64| {
            let db = db.clone();
            async move {
                db.read(move |c| {
                    c.query_one(
                        "SELECT lease_until FROM deliveries WHERE seq = ?1",
                        args![seq],
                        |r| r.get::<i64>(0),
                    )
                    .map_err(DbError::from)
                })
                .await
                .unwrap()
            }
        };
        let (mine, theirs) = db
            .write(move |c| {
                let mine = insert_event(c, &ev1, 1_000, Duration::from_secs(1))?.jobs[0].seq;
                let theirs = insert_event(c, &ev2, 1_000, Duration::from_secs(1))?.jobs[0].seq;
                lease(c, &[mine], 99_000)?;
                c.execute(
                    "UPDATE deliveries SET lease_owner = 'other:1:0', lease_until = 99000 WHERE seq = ?1",
                    args![theirs],
                )?;
                Ok((mine, theirs))
            })
            .await
            .unwrap();
        assert_eq!(db.write(release_leases).await.unwrap(), 1);
        assert_eq!(
            until(mine).await,
            0,
            "this process's: claimable by another at once"
        );
        assert_eq!(
            until(theirs).await,
            99_000,
            "another live process's: untouched"
        );
    }

    #[tokio::test]
    async fn retention_deletes_old_finished_deliveries_and_keeps_pending_ones() {
        for backend in BACKENDS {
            let (_d, db, e) = setup(backend).await;
            let (ev1, ev2) = (event(&e, None), event(&e, None));
            let jobs = db
                .write(move |c| {
                    let a = insert_event(c, &ev1, 1_000, Duration::ZERO)?;
                    let b = insert_event(c, &ev2, 1_000, Duration::ZERO)?;
                    Ok([a.jobs[0].seq, b.jobs[0].seq])
                })
                .await
                .unwrap();
            let finished = Outcome {
                seq: jobs[0],
                endpoint_id: e.id,
                attempt: Some(RecordedAttempt {
                    number: 1,
                    url: e.url.clone(),
                    response_status: Some(200),
                    response_body: Some(b"ok".to_vec()),
                    duration_ms: 3,
                    error: None,
                }),
                state: DeliveryState::Succeeded,
                attempts: 1,
                last_status: Some(200),
                last_error: None,
                next_attempt_at_ms: None,
                at_ms: 2_000,
                effect: None,
            };
            db.write(move |c| record_outcome(c, &finished, Duration::from_secs(1)))
                .await
                .unwrap();
            let deleted = db.write(|c| delete_older_than(c, 5_000, 10)).await.unwrap();
            assert_eq!(deleted, 1);
            let left = db.read_blocking(load_pending).unwrap();
            assert_eq!(left.len(), 1);
            assert_eq!(left[0].0.seq, jobs[1]);
            let attempts: i64 = db
                .read_blocking(|c| {
                    Ok(c.query_one("SELECT COUNT(*) FROM attempts", args![], |r| r.get(0))?)
                })
                .unwrap();
            assert_eq!(attempts, 0);
        }
    }

    #[tokio::test]
    async fn keyset_pages_see_each_delivery_once_in_either_order() {
        for backend in BACKENDS {
            let (_d, db, e) = setup(backend).await;
            let events: Vec<NewEvent> = (0..25).map(|_| event(&e, None)).collect();
            db.write(move |c| {
                for (i, ev) in events.iter().enumerate() {
                    // Several share an instant: the seq breaks the tie.
                    insert_event(c, ev, 1_000 + (i as i64 / 4), Duration::ZERO)?;
                }
                Ok(())
            })
            .await
            .unwrap();
            for descending in [true, false] {
                let mut q = ListQuery {
                    org: 1,
                    state: None,
                    event_type: None,
                    endpoint_id: None,
                    since_ms: None,
                    until_ms: None,
                    sort: SortKey::CreatedAt,
                    descending,
                    limit: 4,
                    after: None,
                };
                let mut seen = Vec::new();
                loop {
                    let (rows, more) = db.read_blocking(|c| list(c, &q)).unwrap();
                    seen.extend(rows.iter().map(|r| r.seq));
                    match rows.last() {
                        Some(last) if more => {
                            q.after = Some((SortKey::CreatedAt.value(last), last.seq))
                        }
                        _ => break,
                    }
                }
                let mut want: Vec<i64> = seen.clone();
                want.sort_unstable();
                if descending {
                    want.reverse();
                }
                assert_eq!(seen, want);
                assert_eq!(seen.len(), 25);
            }
        }
    }
}
