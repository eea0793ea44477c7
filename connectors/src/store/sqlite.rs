//! The embedded event store: `lead_events` in `events.db`.
//!
//! # Schema versions
//! Kept by the versioned migrations of [`crate::db::migrate`]
//! ([`crate::db::migrations::SQLITE_EVENTS`]). Version 1 ([`adopt`]) also adopts a
//! file made before versioned migrations, whose layout `PRAGMA user_version` told:
//! - **0**, with a column `occurred_at_ms`: leadstream before microsecond keys. Its
//!   instants are milliseconds and its fingerprints are of millisecond keys, so read
//!   as they are they would give wrong dedup answers. It is migrated in one
//!   transaction: each instant × 1000, each fingerprint recomputed from the row's key.
//!   A crash during the migration rolls it back and the next open starts it again.
//!   What the old version truncated stays truncated: a migrated row's instant is its
//!   whole millisecond, so an event sent again later with sub-millisecond digits is a
//!   new key.
//! - **1**: `occurred_at_us`, UTC microseconds, fingerprints of microsecond keys.
//! - anything newer: written by a newer leadstream; refused with
//!   [`StoreError::Open`] rather than misread.

use super::{StoreError, StoredEvent, WarmRow};
use leadstream_pipeline::{EventKey, Fingerprint, Phone};
use rusqlite::{params, Connection, ErrorCode};
use std::path::Path;

/// The last layout of files made before versioned migrations (`PRAGMA user_version`).
pub const LEGACY_SCHEMA_VERSION: i64 = 1;

const CREATE: &str = "
CREATE TABLE IF NOT EXISTS lead_events (
    organization_id INTEGER NOT NULL,
    event_type      TEXT    NOT NULL,
    phone_e164      TEXT    NOT NULL,
    occurred_at_us  INTEGER NOT NULL,
    metadata        TEXT,
    ingested_at_ms  INTEGER NOT NULL,
    fp_hi           INTEGER NOT NULL,
    fp_lo           INTEGER NOT NULL
);
";

/// Classifies a SQLite failure: locks, I/O and a full disk are transient; a constraint,
/// a type mismatch or an oversized value refuse the rows; the rest (corruption, a
/// read-only or missing file, API misuse) is a broken store.
fn classify(op: &'static str, e: rusqlite::Error) -> StoreError {
    let code = match &e {
        rusqlite::Error::SqliteFailure(f, _) => Some(f.code),
        _ => None,
    };
    match code {
        Some(
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::SystemIoFailure
            | ErrorCode::DiskFull
            | ErrorCode::OutOfMemory,
        ) => StoreError::unavailable(op, e),
        Some(ErrorCode::ConstraintViolation | ErrorCode::TypeMismatch | ErrorCode::TooBig) => {
            StoreError::rejected(op, e)
        }
        _ => StoreError::failed(op, e),
    }
}

/// A stored `phone_e164` (`+15551234567`) read back; text that is not the canonical
/// form leadstream writes is a read error, never some other number.
fn phone_of(text: &str) -> rusqlite::Result<Phone> {
    text.parse::<Phone>().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, Box::new(e))
    })
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

/// A layout problem found at open: names the file and what to do.
#[derive(Debug, thiserror::Error)]
enum LayoutError {
    #[error("schema version {found} is newer than this leadstream's ({LEGACY_SCHEMA_VERSION}); run a newer leadstream on it, or use another data dir")]
    Newer { found: i64 },
    #[error("lead_events has neither occurred_at_us nor occurred_at_ms (columns {columns}): not a leadstream table; use another data dir")]
    Unknown { columns: String },
}

impl SqliteStore {
    /// Opens (creating if needed) `events.db` in `dir`, migrating a file written by
    /// an older leadstream (see the module docs).
    ///
    /// # Errors
    /// [`StoreError::Open`] when the file cannot be opened or migrated, or has a layout
    /// this version does not know.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join("events.db");
        let location = path.display().to_string();
        let err = |source: rusqlite::Error| StoreError::open(location.clone(), source);
        let conn = super::open_sqlite(&path).map_err(err)?;
        conn.pragma_update(None, "cache_size", -65_536)
            .map_err(err)?;
        crate::db::migrate::apply_sqlite(&conn, &location, crate::db::migrations::SQLITE_EVENTS)
            .map_err(|e| StoreError::open(location.clone(), e))?;
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
    /// As [`EventStore::scan`](super::EventStore::scan).
    pub fn count(&self) -> Result<u64, StoreError> {
        self.conn
            .query_row("SELECT count(*) FROM lead_events", [], |r| r.get(0))
            .map_err(|e| classify("count", e))
    }
}

/// Version 1 of `events.db`, in the migration's transaction: creates `lead_events` in
/// a new file, adopts a file made before versioned migrations (migrating a
/// millisecond one), refuses a layout it does not know.
///
/// # Errors
/// A [`LayoutError`] (as the error's source) or the statements' errors.
pub(crate) fn adopt(conn: &Connection) -> Result<(), super::BoxError> {
    let layout = |e: LayoutError| -> super::BoxError { Box::new(e) };
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > LEGACY_SCHEMA_VERSION {
        return Err(layout(LayoutError::Newer { found: version }));
    }
    let columns: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info('lead_events')")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let has = |c: &str| columns.iter().any(|n| n == c);
    if columns.is_empty() {
        conn.execute_batch(CREATE)?;
    } else if has("occurred_at_ms") && !has("occurred_at_us") {
        migrate_ms_to_us(conn)?;
    } else if !has("occurred_at_us") {
        return Err(layout(LayoutError::Unknown {
            columns: columns.join(", "),
        }));
    }
    Ok(())
}

/// Version 0 → 1 inside the caller's transaction: a new table with the instants in
/// microseconds and the fingerprints of the microsecond keys, in the old rows' order.
fn migrate_ms_to_us(tx: &Connection) -> rusqlite::Result<()> {
    let t = std::time::Instant::now();
    let rows: u64 = tx.query_row("SELECT count(*) FROM lead_events", [], |r| r.get(0))?;
    tracing::warn!(rows, "events.db has occurredAt in milliseconds (an older leadstream): migrating it to microseconds, fingerprints recomputed");
    tx.execute_batch(&CREATE.replace("IF NOT EXISTS lead_events", "lead_events_us"))?;
    {
        let mut read = tx.prepare(
            "SELECT organization_id, event_type, phone_e164, occurred_at_ms, metadata, ingested_at_ms FROM lead_events ORDER BY rowid",
        )?;
        let mut write = tx.prepare(
            "INSERT INTO lead_events_us (organization_id, event_type, phone_e164, occurred_at_us, metadata, ingested_at_ms, fp_hi, fp_lo)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        let mut old = read.query([])?;
        while let Some(r) = old.next()? {
            let (org, event_type, phone): (i64, String, String) = (r.get(0)?, r.get(1)?, r.get(2)?);
            let ms: i64 = r.get(3)?;
            let occurred_at_us = ms.saturating_mul(1000);
            let key = EventKey {
                org,
                phone: phone_of(&phone)?,
                event_type: &event_type,
                occurred_at_us,
            };
            let (hi, lo) = key.fingerprint().halves();
            let (metadata, ingested): (Option<String>, i64) = (r.get(4)?, r.get(5)?);
            write.execute(params![
                org,
                event_type,
                phone,
                occurred_at_us,
                metadata,
                ingested,
                hi,
                lo
            ])?;
        }
    }
    tx.execute_batch("DROP TABLE lead_events; ALTER TABLE lead_events_us RENAME TO lead_events;")?;
    tracing::warn!(
        rows,
        elapsed_ms = t.elapsed().as_millis() as u64,
        "events.db migrated to microsecond instants"
    );
    Ok(())
}

impl super::EventStore for SqliteStore {
    /// One transaction; returns once the commit is on disk. On error the transaction
    /// is rolled back and nothing is stored.
    fn append(
        &mut self,
        rows: &[StoredEvent<'_>],
        ingested_at_ms: i64,
    ) -> Result<usize, StoreError> {
        let fail = |e| classify("append", e);
        let tx = self.conn.transaction().map_err(fail)?;
        let mut n = 0;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO lead_events (organization_id, event_type, phone_e164, occurred_at_us, metadata, ingested_at_ms, fp_hi, fp_lo)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(fail)?;
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
                    r.occurred_at_us,
                    r.metadata,
                    ingested_at_ms,
                    hi,
                    lo
                ])
                .map_err(fail)?;
                n += 1;
            }
        }
        tx.commit().map_err(fail)?;
        Ok(n)
    }

    fn scan(&mut self, f: &mut dyn FnMut(WarmRow)) -> Result<u64, StoreError> {
        let fail = |e| classify("scan", e);
        let mut stmt =
            self.conn.prepare("SELECT organization_id, event_type, phone_e164, occurred_at_us, fp_hi, fp_lo FROM lead_events").map_err(fail)?;
        let mut rows = stmt.query([]).map_err(fail)?;
        let mut n = 0;
        while let Some(row) = rows.next().map_err(fail)? {
            let phone: String = row.get(2).map_err(fail)?;
            f(WarmRow {
                org: row.get(0).map_err(fail)?,
                event_type: row.get(1).map_err(fail)?,
                phone: phone_of(&phone).map_err(fail)?,
                occurred_at_us: row.get(3).map_err(fail)?,
                fingerprint: Fingerprint::from_halves(
                    row.get(4).map_err(fail)?,
                    row.get(5).map_err(fail)?,
                ),
            });
            n += 1;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::EventStore;
    use leadstream_pipeline::Probe;

    const T: i64 = 1_778_610_840_000; // 2026-05-12T18:34:00Z in ms

    fn event(at_us: i64) -> (Phone, i64, Probe) {
        let key = EventKey {
            org: 42,
            phone: Phone(15551234567),
            event_type: "t",
            occurred_at_us: at_us,
        };
        (
            key.phone,
            at_us,
            Probe {
                fingerprint: key.fingerprint(),
                lead: key.lead_hash(),
            },
        )
    }

    fn append(store: &mut SqliteStore, events: &[(Phone, i64, Probe)]) {
        let rows: Vec<StoredEvent<'_>> = events
            .iter()
            .map(|&(phone, occurred_at_us, probe)| StoredEvent {
                org: 42,
                event_type: "t",
                phone,
                occurred_at_us,
                metadata: None,
                probe,
            })
            .collect();
        assert_eq!(store.append(&rows, 1).unwrap(), rows.len());
    }

    fn scan(store: &mut SqliteStore) -> Vec<WarmRow> {
        let mut out = Vec::new();
        store.scan(&mut |r| out.push(r)).unwrap();
        out
    }

    #[test]
    fn instants_100_microseconds_apart_are_two_rows_and_read_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (event(T * 1000 + 100), event(T * 1000 + 200));
        append(&mut SqliteStore::open(dir.path()).unwrap(), &[a, b]);
        let mut store = SqliteStore::open(dir.path()).unwrap();
        let got = scan(&mut store);
        assert_eq!(
            got.iter()
                .map(|r| (r.occurred_at_us, r.fingerprint))
                .collect::<Vec<_>>(),
            [(a.1, a.2.fingerprint), (b.1, b.2.fingerprint)]
        );
    }

    /// A file of the millisecond version (its exact layout, user_version 0) is migrated
    /// on open: instants × 1000 and the fingerprints of the microsecond keys, so dedup
    /// answers for the old rows are right.
    #[test]
    fn a_millisecond_file_is_migrated_with_fingerprints_recomputed() {
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = Connection::open(dir.path().join("events.db")).unwrap();
            conn.execute_batch(
                "CREATE TABLE lead_events (organization_id INTEGER NOT NULL, event_type TEXT NOT NULL, phone_e164 TEXT NOT NULL,
                 occurred_at_ms INTEGER NOT NULL, metadata TEXT, ingested_at_ms INTEGER NOT NULL, fp_hi INTEGER NOT NULL, fp_lo INTEGER NOT NULL);
                 INSERT INTO lead_events VALUES (42, 't', '+15551234567', 1778610840000, '{\"a\":1}', 5, 11, 12);
                 INSERT INTO lead_events VALUES (42, 't', '+15551234567', 1778610840001, NULL, 6, 13, 14);",
            )
            .unwrap();
        }
        let mut store = SqliteStore::open(dir.path()).unwrap();
        let got = scan(&mut store);
        assert_eq!(got.len(), 2);
        for (r, ms) in got.iter().zip([T, T + 1]) {
            assert_eq!(r.occurred_at_us, ms * 1000);
            assert_eq!(
                r.fingerprint,
                event(ms * 1000).2.fingerprint,
                "fingerprint of the microsecond key"
            );
        }
        let conn = Connection::open(dir.path().join("events.db")).unwrap();
        let (version, meta, ingested): (i64, String, i64) = (
            conn.query_row("SELECT max(version) FROM schema_migrations", [], |r| {
                r.get(0)
            })
            .unwrap(),
            conn.query_row(
                "SELECT metadata FROM lead_events WHERE occurred_at_us = ?1",
                [T * 1000],
                |r| r.get(0),
            )
            .unwrap(),
            conn.query_row(
                "SELECT ingested_at_ms FROM lead_events WHERE occurred_at_us = ?1",
                [T * 1000],
                |r| r.get(0),
            )
            .unwrap(),
        );
        assert_eq!((version, meta.as_str(), ingested), (1, "{\"a\":1}", 5));
        drop(store);
        // Opening again changes nothing.
        assert_eq!(scan(&mut SqliteStore::open(dir.path()).unwrap()), got);
    }

    #[test]
    fn files_of_a_newer_or_unknown_layout_are_refused_saying_what_to_do() {
        // A file made before versioned migrations by a newer layout.
        let dir = tempfile::tempdir().unwrap();
        let legacy = Connection::open(dir.path().join("events.db")).unwrap();
        legacy.execute_batch(CREATE).unwrap();
        legacy.pragma_update(None, "user_version", 7).unwrap();
        drop(legacy);
        let e = SqliteStore::open(dir.path())
            .err()
            .expect("a newer file is refused");
        assert!(matches!(e, StoreError::Open { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(
            msg.contains("events.db")
                && msg.contains("schema version 7")
                && msg.contains("newer leadstream"),
            "{msg}"
        );

        // A file a newer release migrated past this binary's versions.
        let newer = tempfile::tempdir().unwrap();
        drop(SqliteStore::open(newer.path()).unwrap());
        Connection::open(newer.path().join("events.db"))
            .unwrap()
            .execute_batch("INSERT INTO schema_migrations VALUES (2, 'future', 0)")
            .unwrap();
        let msg = SqliteStore::open(newer.path())
            .err()
            .expect("refused")
            .to_string();
        assert!(
            msg.contains("schema version 2") && msg.contains("newer release"),
            "{msg}"
        );

        let other = tempfile::tempdir().unwrap();
        Connection::open(other.path().join("events.db"))
            .unwrap()
            .execute_batch("CREATE TABLE lead_events (x INTEGER)")
            .unwrap();
        let msg = SqliteStore::open(other.path())
            .err()
            .expect("refused")
            .to_string();
        assert!(
            msg.contains("not a leadstream table") && msg.contains("(columns x)"),
            "{msg}"
        );
    }

    #[test]
    fn a_locked_file_is_unavailable_not_broken() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = SqliteStore::open(dir.path()).unwrap();
        store
            .conn
            .busy_timeout(std::time::Duration::from_millis(10))
            .unwrap();
        let lock = Connection::open(dir.path().join("events.db")).unwrap();
        lock.execute_batch("BEGIN IMMEDIATE").unwrap();
        let (phone, at, probe) = event(1);
        let e = store
            .append(
                &[StoredEvent {
                    org: 42,
                    event_type: "t",
                    phone,
                    occurred_at_us: at,
                    metadata: None,
                    probe,
                }],
                1,
            )
            .unwrap_err();
        assert!(e.is_unavailable(), "{e:?}");
        assert!(std::error::Error::source(&e).is_some());
    }
}
