//! The delivery engine's durable state in `webhooks.db` (data dir): endpoints and their
//! secrets, published events, deliveries (the embedded queue) and every attempt.
//!
//! One writer thread owns the write connection and commits in groups: every write
//! waiting when a transaction starts joins it (each in its own savepoint, so one
//! failing write does not undo the others), and each caller hears back only after the
//! `COMMIT` (with `synchronous = FULL`). Publishing a thousand events or recording a
//! thousand attempt outcomes costs one fsync. Reads use their own connection (WAL),
//! so they never wait for the writer.

use crate::store::open_sqlite;
use parking_lot::Mutex;
use rusqlite::Connection;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::oneshot;

/// A failure of the delivery store.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DbError {
    #[error("webhook store: {0}")]
    Sql(Arc<rusqlite::Error>),
    #[error("webhook store stopped")]
    Stopped,
    /// A write gave up on purpose (what it found made it moot); nothing of it stays.
    #[error("{0}")]
    Aborted(String),
    /// The file could not be brought to this binary's schema.
    #[error("{0}")]
    Migrate(Arc<crate::db::migrate::MigrateError>),
    /// The shared database (or a stored value) failed a repository call.
    #[error("{0}")]
    Repo(Arc<crate::db::RepoError>),
}

impl DbError {
    /// Whether a unique key refused the write (another process got there first).
    pub fn is_unique_violation(&self) -> bool {
        match self {
            DbError::Sql(e) => matches!(
                &**e,
                rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation
            ),
            DbError::Repo(e) => e.is_unique_violation(),
            _ => false,
        }
    }
}

impl From<crate::db::RepoError> for DbError {
    fn from(e: crate::db::RepoError) -> Self {
        match e {
            crate::db::RepoError::Sqlite(e) => DbError::Sql(Arc::new(e)),
            e => DbError::Repo(Arc::new(e)),
        }
    }
}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        DbError::Sql(Arc::new(e))
    }
}

/// Runs after the transaction holding its write committed (`Ok`) or failed.
type Finish = Box<dyn FnOnce(Result<(), DbError>) + Send>;
/// A write: runs inside the group's transaction and says what to do once it commits.
type Work = Box<dyn FnOnce(&Connection) -> Finish + Send>;

/// Writes that wait longer than this many per group are left for the next group.
const GROUP_MAX: usize = 4096;

/// The write thread and a read connection.
pub struct Db {
    writes: crossbeam_channel::Sender<Work>,
    read: Mutex<Connection>,
    /// The checkpoint thread runs while this lives.
    _checkpoints: Arc<()>,
}

impl Db {
    /// Opens (creating) `webhooks.db` in `dir` and starts its writer thread.
    ///
    /// # Errors
    /// [`DbError::Sql`] when the file cannot be opened or migrated.
    pub fn open(dir: &Path) -> Result<Arc<Self>, DbError> {
        let path = dir.join("webhooks.db");
        let conn = open_sqlite(&path)?;
        crate::db::migrate::apply_sqlite(
            &conn,
            &path.display().to_string(),
            crate::db::migrations::SQLITE_WEBHOOKS,
        )
        .map_err(|e| DbError::Migrate(Arc::new(e)))?;
        // `rarray`: writes that insert a whole set in one statement (a send's eligible
        // set, a chunk of its deliveries) bind it as an array.
        rusqlite::vtab::array::load_module(&conn)?;
        // Checkpoints run on a thread of their own (below), not in the writer's
        // commits: copying the WAL back took a tenth of the writer's time.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        // A WAL started over is cut back to this size.
        conn.pragma_update(None, "journal_size_limit", WAL_RESTART_BYTES as i64)?;
        let checkpoints = open_sqlite(&path)?;
        let wal = dir.join("webhooks.db-wal");
        let alive = Arc::new(());
        let watched = Arc::downgrade(&alive);
        std::thread::Builder::new()
            .name("webhooks-ckpt".into())
            .spawn(move || checkpoint_loop(&checkpoints, &wal, &watched))
            .map_err(|e| {
                DbError::Sql(Arc::new(rusqlite::Error::ToSqlConversionFailure(Box::new(
                    e,
                ))))
            })?;
        let read = open_sqlite(&path)?;
        let (tx, rx) = crossbeam_channel::unbounded::<Work>();
        std::thread::Builder::new()
            .name("webhooks-db".into())
            .spawn(move || write_loop(&conn, &rx))
            .map_err(|e| {
                DbError::Sql(Arc::new(rusqlite::Error::ToSqlConversionFailure(Box::new(
                    e,
                ))))
            })?;
        Ok(Arc::new(Self {
            writes: tx,
            read: Mutex::new(read),
            _checkpoints: alive,
        }))
    }

    /// Runs `f` in the next group's transaction; answers once that committed.
    ///
    /// # Errors
    /// `f`'s error (its writes undone, the group's others kept), or the commit's.
    pub async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, DbError> {
        let (tx, rx) = oneshot::channel();
        self.submit(f, tx)?;
        rx.await.map_err(|_| DbError::Stopped)?
    }

    /// [`Db::write`] for a caller that is not async.
    ///
    /// # Errors
    /// As [`Db::write`].
    pub fn write_blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, DbError> {
        let (tx, rx) = oneshot::channel();
        self.submit(f, tx)?;
        rx.blocking_recv().map_err(|_| DbError::Stopped)?
    }

    fn submit<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, DbError> + Send + 'static,
        tx: oneshot::Sender<Result<T, DbError>>,
    ) -> Result<(), DbError> {
        let work: Work = Box::new(move |conn: &Connection| -> Finish {
            let done = savepoint(conn, f);
            Box::new(move |committed: Result<(), DbError>| {
                let _ = tx.send(committed.and(done));
            })
        });
        self.writes.send(work).map_err(|_| DbError::Stopped)
    }

    /// Runs `f` on the read connection, off the async runtime.
    ///
    /// # Errors
    /// `f`'s.
    pub async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Connection) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, DbError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || f(&me.read.lock()))
            .await
            .map_err(|_| DbError::Stopped)?
    }

    /// Runs `f` on the read connection, here.
    ///
    /// # Errors
    /// `f`'s.
    pub fn read_blocking<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        f(&self.read.lock())
    }
}

fn savepoint<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, DbError>,
) -> Result<T, DbError> {
    // Cached: a group runs thousands of these, and parsing them each time showed.
    conn.prepare_cached("SAVEPOINT w")?.execute([])?;
    match f(conn) {
        Ok(v) => {
            conn.prepare_cached("RELEASE w")?.execute([])?;
            Ok(v)
        }
        Err(e) => {
            conn.prepare_cached("ROLLBACK TO w")?.execute([])?;
            conn.prepare_cached("RELEASE w")?.execute([])?;
            Err(e)
        }
    }
}

/// How often the checkpoint thread copies the WAL into the database.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// A WAL this large is checkpointed with `RESTART`.
const WAL_RESTART_BYTES: u64 = 64 * 1024 * 1024;

/// Copies committed WAL frames into the database file without blocking the writer or
/// a reader (`PASSIVE`); the writer starts the WAL over once a checkpoint caught up.
/// A writer that never pauses keeps a passive checkpoint from catching up, so past
/// [`WAL_RESTART_BYTES`] the checkpoint is a `RESTART`: it waits for the writer's
/// transaction, holds the next one back while it copies the rest, and the WAL starts
/// over (cut back to that size). Ends with the [`Db`] (`alive`).
fn checkpoint_loop(conn: &Connection, wal: &Path, alive: &std::sync::Weak<()>) {
    while alive.strong_count() > 0 {
        std::thread::sleep(CHECKPOINT_EVERY);
        let large = std::fs::metadata(wal).is_ok_and(|m| m.len() > WAL_RESTART_BYTES);
        let mode = if large { "RESTART" } else { "PASSIVE" };
        if let Err(e) = conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(())) {
            tracing::warn!(error = %e, "webhook store: checkpoint");
        }
    }
}

fn write_loop(conn: &Connection, rx: &crossbeam_channel::Receiver<Work>) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while group.len() < GROUP_MAX {
            match rx.try_recv() {
                Ok(w) => group.push(w),
                Err(_) => break,
            }
        }
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            // Dropping a write unrun drops its answer channel: its caller hears
            // `Stopped` (nothing was written).
            tracing::error!(error = %e, writes = group.len(), "webhook store: cannot begin a transaction; these writes are refused");
            drop(group);
            continue;
        }
        let mut finishes = Vec::with_capacity(group.len());
        for w in group {
            finishes.push(w(conn));
        }
        let committed = conn.execute_batch("COMMIT").map_err(DbError::from);
        if let Err(e) = &committed {
            tracing::error!(error = %e, "webhook store: commit failed; the writes of this group are lost and their callers told so");
            let _ = conn.execute_batch("ROLLBACK");
        }
        for f in finishes {
            f(committed.clone());
        }
    }
}
