//! Where events are kept: the [`EventStore`] trait, the rows it takes and gives back,
//! and the backend-neutral [`StoreError`] that tells a caller what to do about a
//! failure. The backends are the embedded SQLite store ([`sqlite`]) and ClickHouse
//! ([`crate::clickhouse`]).
//!
//! The embedded default keeps SQLite files under the data dir:
//! - `events.db` holds `lead_events`, written only by the [`crate::ingest`] writer thread.
//! - `leadstream.db` holds organizations and keys ([`crate::registry`]), shared by the
//!   server and the admin CLI, which may run at the same time as separate processes.
//!
//! Both run in WAL mode with `synchronous=FULL`: a commit returns only after its WAL
//! frames are fsynced, so a row whose commit returned survives `kill -9` and power
//! loss. Inspect them with the `sqlite3` shell (see docs/architecture.md); reading
//! while the server runs is safe.

pub mod reads;
pub mod sqlite;

pub use sqlite::SqliteStore;

use leadstream_pipeline::{Fingerprint, OrgId, Phone, Probe};
use rusqlite::Connection;
use std::path::Path;
use std::time::Duration;

/// The cause kept by a [`StoreError`]: the backend's own error (rusqlite, the
/// clickhouse crate, a schema check), reachable through `source()`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a store call failed, classified by what the caller should do about it.
///
/// Every variant but [`Stopped`](Self::Stopped) keeps the backend's error as its
/// `source()`; the message names the operation and carries the backend's text (which
/// names the bad value, when there is one).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot take the call now: unreachable, timed out, overloaded, locked,
    /// out of disk. Nothing is wrong with the rows: back off and retry them.
    #[error("event store unavailable ({op}): {source}")]
    Unavailable { op: &'static str, source: BoxError },
    /// The store refused these rows for good: a value its schema does not accept, a
    /// row it will never store. Retrying the same rows will not help; other rows
    /// may be fine, so a caller holding many can split them to find the bad ones.
    #[error("event store refused the rows ({op}): {source}")]
    Rejected { op: &'static str, source: BoxError },
    /// The store itself is broken in a way a retry alone does not fix and that is not
    /// about the rows: bad credentials, a table changed or dropped under it, a corrupt
    /// file. Every row would fail the same way, so rows are not to blame (and not
    /// dead-lettered): retry after backing off, loudly, until an operator fixes it.
    #[error("event store failed ({op}): {source}")]
    Failed { op: &'static str, source: BoxError },
    /// The store could not be opened or connected to for good: a file that cannot be
    /// opened, a schema leadstream cannot use, a failed migration. `location` names it.
    #[error("opening the event store {location}: {source}")]
    Open { location: String, source: BoxError },
    /// The writer thread that owns the store has stopped (warm-up failed, or the
    /// process is shutting down); nothing more will be stored.
    #[error("event store writer has stopped")]
    Stopped,
}

impl StoreError {
    /// [`StoreError::Unavailable`] of `op` caused by `source`.
    pub fn unavailable(op: &'static str, source: impl Into<BoxError>) -> Self {
        Self::Unavailable {
            op,
            source: source.into(),
        }
    }

    /// [`StoreError::Rejected`] of `op` caused by `source`.
    pub fn rejected(op: &'static str, source: impl Into<BoxError>) -> Self {
        Self::Rejected {
            op,
            source: source.into(),
        }
    }

    /// [`StoreError::Failed`] of `op` caused by `source`.
    pub fn failed(op: &'static str, source: impl Into<BoxError>) -> Self {
        Self::Failed {
            op,
            source: source.into(),
        }
    }

    /// [`StoreError::Open`] of `location` caused by `source`.
    pub fn open(location: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Open {
            location: location.into(),
            source: source.into(),
        }
    }

    /// Whether a retry of the same call can succeed by itself ([`Unavailable`](Self::Unavailable)).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }

    /// Whether the rows themselves were refused for good ([`Rejected`](Self::Rejected)).
    pub fn is_rejected(&self) -> bool {
        matches!(self, Self::Rejected { .. })
    }
}

/// Where events are kept: the embedded SQLite store or ClickHouse. Owned by the one
/// writer thread ([`crate::ingest`]), so it need not be `Sync`.
pub trait EventStore: Send + 'static {
    /// Appends rows; returns only once they are durable (and, on error, having stored
    /// none of them, or only rows a retry will not duplicate).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the store cannot take them now (the caller
    /// backs off and retries), [`StoreError::Rejected`] when it refuses some of these
    /// rows for good, [`StoreError::Failed`] when the store is broken.
    fn append(
        &mut self,
        rows: &[StoredEvent<'_>],
        ingested_at_ms: i64,
    ) -> Result<usize, StoreError>;

    /// Streams every stored event's key to `f`: the start-up warm-up of the indexes.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] (retry) or [`StoreError::Failed`].
    fn scan(&mut self, f: &mut dyn FnMut(WarmRow)) -> Result<u64, StoreError>;
}

/// One row to store.
#[derive(Debug, Clone, Copy)]
pub struct StoredEvent<'a> {
    pub org: OrgId,
    pub event_type: &'a str,
    pub phone: Phone,
    /// `occurredAt` in UTC microseconds since the epoch.
    pub occurred_at_us: i64,
    pub metadata: Option<&'a str>,
    pub probe: Probe,
}

/// What warm-up reads back for each stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarmRow {
    pub org: OrgId,
    pub event_type: String,
    pub phone: Phone,
    /// `occurredAt` in UTC microseconds since the epoch.
    pub occurred_at_us: i64,
    pub fingerprint: Fingerprint,
}

/// Opens a SQLite database with the pragmas every leadstream database uses.
pub(crate) fn open_sqlite(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}
