//! The embedded event store: `lead_events` in `events.db`.

use leadstream_pipeline::{Fingerprint, OrgId, Phone, Probe};
use rusqlite::{params, Connection};
use std::path::Path;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS lead_events (
    organization_id INTEGER NOT NULL,
    event_type      TEXT    NOT NULL,
    phone_e164      TEXT    NOT NULL,
    occurred_at_ms  INTEGER NOT NULL,
    metadata        TEXT,
    ingested_at_ms  INTEGER NOT NULL,
    fp_hi           INTEGER NOT NULL,
    fp_lo           INTEGER NOT NULL
);
";

/// A store failure. Nothing of the failed write is visible afterwards.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("event store unavailable: {0}")]
    Unavailable(String),
    #[error("event store at {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error("event store write failed: {0}")]
    Write(#[source] rusqlite::Error),
    #[error("event store read failed: {0}")]
    Read(#[source] rusqlite::Error),
    #[error("event store writer has stopped")]
    Stopped,
    /// A ClickHouse request failed for a reason a retry will not fix (bad SQL, auth,
    /// a row the server refused).
    #[error("clickhouse {op} failed: {source}")]
    ClickHouse {
        op: &'static str,
        #[source]
        source: clickhouse::error::Error,
    },
    /// The ClickHouse schema or database is not what leadstream needs.
    #[error("clickhouse schema: {0}")]
    Schema(String),
    /// The ClickHouse client's runtime could not start.
    #[error("starting the clickhouse client runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

impl StoreError {
    /// Whether the store could not be reached: back off and retry.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// One row to store.
#[derive(Debug, Clone, Copy)]
pub struct StoredEvent<'a> {
    pub org: OrgId,
    pub event_type: &'a str,
    pub phone: Phone,
    pub occurred_at_ms: i64,
    pub metadata: Option<&'a str>,
    pub probe: Probe,
}

/// What warm-up reads back for each stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarmRow {
    pub org: OrgId,
    pub event_type: String,
    pub phone: Phone,
    pub occurred_at_ms: i64,
    pub fingerprint: Fingerprint,
}

/// The durable event table in SQLite. Not `Sync`: one writer owns it.
pub struct SqliteStore {
    conn: Connection,
    _checkpointer: Checkpointer,
}

/// Checkpoints the WAL from its own connection and thread.
///
/// SQLite's automatic checkpoint runs inside the commit that crosses the threshold, so
/// a batch would wait for it (11–17 ms per 50k rows, measured) before its answer.
/// Checkpointing elsewhere keeps commits to appending and fsyncing the WAL; durability
/// is the WAL's and does not change. `PASSIVE` never blocks the writer.
struct Checkpointer {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    fn start(path: &Path) -> rusqlite::Result<Self> {
        let conn = super::open_sqlite(path)?;
        let (stop, rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("leadstream-checkpoint".into())
            .spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    rx.recv_timeout(std::time::Duration::from_millis(250))
                {
                    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::warn!(error = %e, "WAL checkpoint failed; will retry");
                    }
                }
            })
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) `events.db` in `dir`.
    ///
    /// # Errors
    /// [`StoreError::Open`] when the file cannot be opened or migrated.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join("events.db");
        let err = |source| StoreError::Open {
            path: path.display().to_string(),
            source,
        };
        let conn = super::open_sqlite(&path).map_err(err)?;
        conn.pragma_update(None, "cache_size", -65_536)
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(err)?;
        // Bound the WAL file that checkpoints leave behind.
        conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)
            .map_err(err)?;
        let checkpointer = Checkpointer::start(&path).map_err(err)?;
        Ok(Self {
            conn,
            _checkpointer: checkpointer,
        })
    }

    /// Number of stored events.
    ///
    /// # Errors
    /// [`StoreError::Read`].
    pub fn count(&self) -> Result<u64, StoreError> {
        self.conn
            .query_row("SELECT count(*) FROM lead_events", [], |r| r.get(0))
            .map_err(StoreError::Read)
    }
}

impl super::EventStore for SqliteStore {
    /// One transaction; returns once the commit is on disk. On error the transaction
    /// is rolled back and nothing is stored.
    fn append(
        &mut self,
        rows: &[StoredEvent<'_>],
        ingested_at_ms: i64,
    ) -> Result<usize, StoreError> {
        let tx = self.conn.transaction().map_err(StoreError::Write)?;
        let mut n = 0;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO lead_events (organization_id, event_type, phone_e164, occurred_at_ms, metadata, ingested_at_ms, fp_hi, fp_lo)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(StoreError::Write)?;
            let mut phone = String::with_capacity(16);
            for r in rows {
                use std::fmt::Write;
                phone.clear();
                let _ = write!(phone, "{}", r.phone);
                let (hi, lo) = r.probe.fingerprint.halves();
                stmt.execute(params![
                    r.org,
                    r.event_type,
                    phone,
                    r.occurred_at_ms,
                    r.metadata,
                    ingested_at_ms,
                    hi,
                    lo
                ])
                .map_err(StoreError::Write)?;
                n += 1;
            }
        }
        tx.commit().map_err(StoreError::Write)?;
        Ok(n)
    }

    fn scan(&mut self, f: &mut dyn FnMut(WarmRow)) -> Result<u64, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT organization_id, event_type, phone_e164, occurred_at_ms, fp_hi, fp_lo FROM lead_events")
            .map_err(StoreError::Read)?;
        let mut rows = stmt.query([]).map_err(StoreError::Read)?;
        let mut n = 0;
        while let Some(row) = rows.next().map_err(StoreError::Read)? {
            let phone: String = row.get(2).map_err(StoreError::Read)?;
            let phone: Phone = phone.parse().map_err(|e| {
                StoreError::Read(rusqlite::Error::FromSqlConversionFailure(
                    2,
                    rusqlite::types::Type::Text,
                    Box::new(e),
                ))
            })?;
            f(WarmRow {
                org: row.get(0).map_err(StoreError::Read)?,
                event_type: row.get(1).map_err(StoreError::Read)?,
                phone,
                occurred_at_ms: row.get(3).map_err(StoreError::Read)?,
                fingerprint: Fingerprint::from_halves(
                    row.get(4).map_err(StoreError::Read)?,
                    row.get(5).map_err(StoreError::Read)?,
                ),
            });
            n += 1;
        }
        Ok(n)
    }
}
