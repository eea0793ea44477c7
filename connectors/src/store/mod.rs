//! The embedded default store: SQLite files under the data dir.
//!
//! - `events.db` holds `lead_events`, written only by the [`crate::ingest`] writer thread.
//! - `leadstream.db` holds organizations and keys ([`crate::registry`]), shared by the
//!   server and the admin CLI, which may run at the same time as separate processes.
//!
//! Both run in WAL mode with `synchronous=FULL`: a commit returns only after its WAL
//! frames are fsynced, so a row whose commit returned survives `kill -9` and power
//! loss. Inspect them with the `sqlite3` shell (see docs/architecture.md); reading
//! while the server runs is safe.

mod events;

pub use events::{SqliteStore, StoreError, StoredEvent, WarmRow};

/// Where events are kept: the embedded SQLite store or ClickHouse. Owned by the one
/// writer thread ([`crate::ingest`]), so it need not be `Sync`.
pub trait EventStore: Send + 'static {
    /// Appends rows; returns only once they are durable (and, on error, having stored
    /// none of them, or only rows a retry will not duplicate).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the store cannot be reached (the caller backs
    /// off and retries), other [`StoreError`]s otherwise.
    fn append(
        &mut self,
        rows: &[StoredEvent<'_>],
        ingested_at_ms: i64,
    ) -> Result<usize, StoreError>;

    /// Streams every stored event's key to `f`: the start-up warm-up of the indexes.
    ///
    /// # Errors
    /// [`StoreError::Read`] or [`StoreError::Unavailable`].
    fn scan(&mut self, f: &mut dyn FnMut(WarmRow)) -> Result<u64, StoreError>;
}

use rusqlite::Connection;
use std::path::Path;
use std::time::Duration;

/// Opens a SQLite database with the pragmas every leadstream database uses.
pub(crate) fn open_sqlite(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}
