//! Stored lead events read back for people and scripts: one lead's events, newest
//! first (`GET /api/v1/lead-events`), and how many events were stored per minute
//! (`GET /api/v1/stats`). Read from wherever events are kept: the embedded
//! `events.db` (its own read-only connection per call, beside the writer) or
//! ClickHouse (a connection of its own).
//!
//! Costs: `events.db` has no index but its rowid (the writer's append order), so one
//! lead's events are a scan of the file (about 0.1 s per million events) and the
//! per-minute counts read back from the newest row only as far as the window starts.
//! ClickHouse's table is sorted by organization, event type and phone: one lead's
//! events of one type are a range read; without a type, the organization's range.

use super::StoreError;
use crate::clickhouse::ClickHouseStore;
use leadstream_pipeline::{OrgId, Phone};
use parking_lot::Mutex;
use rusqlite::OpenFlags;
use std::path::PathBuf;

/// One stored lead event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeadEventRow {
    pub event_type: String,
    /// `occurredAt` in UTC microseconds.
    pub occurred_at_us: i64,
    /// The metadata as stored (minified JSON), if the event had any.
    pub metadata: Option<String>,
    /// When it was stored, in milliseconds since the epoch.
    pub ingested_at_ms: i64,
}

/// Where a page of one lead's events starts: after this event, newest first.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Before {
    #[serde(rename = "o")]
    pub occurred_at_us: i64,
    #[serde(rename = "t")]
    pub event_type: String,
}

/// A page of one lead's events.
#[derive(Debug, Clone)]
pub struct LeadEventsQuery {
    pub org: OrgId,
    pub phone: Phone,
    /// Only events of this type.
    pub event_type: Option<String>,
    pub before: Option<Before>,
    /// Rows to answer at most.
    pub limit: usize,
}

/// How far back the per-minute count reads, at most: a day, and 5 minutes for a
/// client whose clock is behind the server's (asking for "the last 24 hours").
pub const MAX_STATS_WINDOW_MS: i64 = 24 * 3_600_000 + 5 * 60_000;

/// Milliseconds a batch's `ingested_at` may run behind the rows before it (a clock
/// stepped back): the per-minute scan of `events.db` reads this far past the window.
const CLOCK_SLACK_MS: i64 = 5 * 60_000;

/// The stored events, read back.
pub struct EventReads {
    source: Source,
}

enum Source {
    /// `events.db` in this data dir.
    Embedded(PathBuf),
    ClickHouse(Box<Mutex<ClickHouseStore>>),
}

impl EventReads {
    /// Reads `events.db` in `data_dir`.
    pub fn embedded(data_dir: PathBuf) -> Self {
        Self {
            source: Source::Embedded(data_dir),
        }
    }

    /// Reads ClickHouse through `store` (a connection of its own).
    pub fn clickhouse(store: ClickHouseStore) -> Self {
        Self {
            source: Source::ClickHouse(Box::new(Mutex::new(store))),
        }
    }

    /// A page of one lead's events, newest first (`limit + 1` rows when more follow).
    /// Blocking: call it on a blocking thread.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] (retry) or [`StoreError::Failed`].
    pub fn lead_events(&self, q: &LeadEventsQuery) -> Result<Vec<LeadEventRow>, StoreError> {
        match &self.source {
            Source::Embedded(dir) => embedded_lead_events(dir, q),
            Source::ClickHouse(ch) => ch.lock().lead_events(q),
        }
    }

    /// Events of `org` stored in each minute from `since_ms` (a whole minute) until
    /// `until_ms`: answer `i` counts `[since_ms + i min, since_ms + (i + 1) min)`.
    /// Blocking: call it on a blocking thread.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] (retry) or [`StoreError::Failed`].
    pub fn stored_per_minute(
        &self,
        org: OrgId,
        since_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<u64>, StoreError> {
        let minutes = leadstream_pipeline::time::minutes_spanned(since_ms, until_ms);
        let mut out = vec![0u64; minutes];
        let mut add = |at_ms: i64, n: u64| {
            if (since_ms..until_ms).contains(&at_ms) {
                out[((at_ms - since_ms) / 60_000) as usize] += n;
            }
        };
        match &self.source {
            Source::Embedded(dir) => embedded_stored_since(dir, org, since_ms, &mut add)?,
            Source::ClickHouse(ch) => {
                for (at_ms, n) in ch.lock().stored_per_minute(org, since_ms, until_ms)? {
                    add(at_ms, n);
                }
            }
        }
        Ok(out)
    }
}

/// `events.db` of `dir`, read-only; `None` before the writer made it.
fn open_events(dir: &std::path::Path) -> Result<Option<rusqlite::Connection>, StoreError> {
    let path = dir.join("events.db");
    if !path.exists() {
        return Ok(None);
    }
    let conn = rusqlite::Connection::open_with_flags(
        &path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StoreError::unavailable("opening events.db to read", e))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(|e| StoreError::failed("opening events.db to read", e))?;
    Ok(Some(conn))
}

fn embedded_lead_events(
    dir: &std::path::Path,
    q: &LeadEventsQuery,
) -> Result<Vec<LeadEventRow>, StoreError> {
    let Some(conn) = open_events(dir)? else {
        return Ok(Vec::new());
    };
    let fail = |e| StoreError::unavailable("reading a lead's events", e);
    let phone = q.phone.to_string();
    let (before_at, before_type) = match &q.before {
        Some(b) => (Some(b.occurred_at_us), Some(b.event_type.as_str())),
        None => (None, None),
    };
    let mut stmt = conn
        .prepare(
            "SELECT event_type, occurred_at_us, metadata, ingested_at_ms FROM lead_events
             WHERE organization_id = ?1 AND phone_e164 = ?2 AND (?3 IS NULL OR event_type = ?3)
               AND (?4 IS NULL OR occurred_at_us < ?4 OR (occurred_at_us = ?4 AND event_type < ?5))
             ORDER BY occurred_at_us DESC, event_type DESC LIMIT ?6",
        )
        .map_err(fail)?;
    let rows = stmt
        .query_map(
            rusqlite::params![
                q.org,
                phone,
                q.event_type,
                before_at,
                before_type,
                q.limit as i64 + 1
            ],
            |r| {
                Ok(LeadEventRow {
                    event_type: r.get(0)?,
                    occurred_at_us: r.get(1)?,
                    metadata: r.get(2)?,
                    ingested_at_ms: r.get(3)?,
                })
            },
        )
        .map_err(fail)?;
    rows.collect::<Result<_, _>>().map_err(fail)
}

/// Calls `add(ingested_at_ms, 1)` for each event of `org` stored since `since_ms`:
/// reads back from the newest row and stops at the first row stored well before.
fn embedded_stored_since(
    dir: &std::path::Path,
    org: OrgId,
    since_ms: i64,
    add: &mut dyn FnMut(i64, u64),
) -> Result<(), StoreError> {
    let Some(conn) = open_events(dir)? else {
        return Ok(());
    };
    let fail = |e| StoreError::unavailable("counting stored events", e);
    let mut stmt = conn
        .prepare("SELECT organization_id, ingested_at_ms FROM lead_events ORDER BY rowid DESC")
        .map_err(fail)?;
    let mut rows = stmt.query([]).map_err(fail)?;
    while let Some(row) = rows.next().map_err(fail)? {
        let at: i64 = row.get(1).map_err(fail)?;
        if at < since_ms - CLOCK_SLACK_MS {
            break;
        }
        if row.get::<_, OrgId>(0).map_err(fail)? == org {
            add(at, 1);
        }
    }
    Ok(())
}
