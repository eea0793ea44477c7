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

pub use events::{EventStore, StoredEvent, StoreError, WarmRow};

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
