//! The delivery engine's durable state in `webhooks.db` (data dir): endpoints and their
//! secrets, published events, deliveries (the embedded queue) and every attempt.
//!
//! One writer thread owns the write connection and commits in groups: every write
//! waiting when a transaction starts joins it (each in its own savepoint, so one
//! failing write does not undo the others), and each caller hears back only after the
//! `COMMIT` (with `synchronous = FULL`). Publishing a thousand events or recording a
//! thousand attempt outcomes costs one fsync. Reads use their own connection (WAL),
//! so they never wait for the writer.

use crate::db::sql::{PgSession, Sql};
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
type Work = Box<dyn for<'c> FnOnce(Sql<'c>) -> Finish + Send>;

/// Writes that wait longer than this many per group are left for the next group.
const GROUP_MAX: usize = 4096;

/// Writer threads (each one connection, one group at a time) on the shared database.
const PG_WRITERS: usize = 4;

/// Read connections kept open to the shared database.
const PG_READERS: usize = 8;

/// The write thread(s) and read connections.
pub struct Db {
    writes: crossbeam_channel::Sender<Work>,
    reads: Reads,
    /// The checkpoint thread runs while this lives.
    _checkpoints: Arc<()>,
}

enum Reads {
    Sqlite(Mutex<Connection>),
    Postgres {
        pg: crate::db::Pg,
        idle: Mutex<Vec<PgSession>>,
    },
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
        // Every statement is cached ([`Sql`] prepares through the cache).
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        // Checkpoints run on a thread of their own (below), not in the writer's
        // commits: copying the WAL back took a tenth of the writer's time.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        // A WAL started over is cut back to this size.
        conn.pragma_update(None, "journal_size_limit", WAL_RESTART_BYTES as i64)?;
        let checkpoints = open_sqlite(&path)?;
        let wal = dir.join("webhooks.db-wal");
        let alive = Arc::new(());
        let watched = Arc::downgrade(&alive);
        spawn("webhooks-ckpt", move || {
            checkpoint_loop(&checkpoints, &wal, &watched)
        })?;
        let read = open_sqlite(&path)?;
        rusqlite::vtab::array::load_module(&read)?;
        read.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let (tx, rx) = crossbeam_channel::unbounded::<Work>();
        spawn("webhooks-db", move || write_loop_sqlite(&conn, &rx))?;
        Ok(Arc::new(Self {
            writes: tx,
            reads: Reads::Sqlite(Mutex::new(read)),
            _checkpoints: alive,
        }))
    }

    /// The delivery engine's state on the shared database (migrated by
    /// [`crate::db::Pg::open`]): [`PG_WRITERS`] writer threads, each grouping the
    /// writes waiting into one transaction as the embedded writer does, and reads on
    /// connections of their own.
    ///
    /// # Errors
    /// [`DbError::Stopped`] when a thread cannot start.
    pub fn open_shared(pg: &crate::db::Pg) -> Result<Arc<Self>, DbError> {
        let (tx, rx) = crossbeam_channel::unbounded::<Work>();
        for i in 0..PG_WRITERS {
            let rx = rx.clone();
            let pg = pg.clone();
            spawn(&format!("webhooks-pg-{i}"), move || {
                write_loop_postgres(&pg, &rx)
            })?;
        }
        Ok(Arc::new(Self {
            writes: tx,
            reads: Reads::Postgres {
                pg: pg.clone(),
                idle: Mutex::new(Vec::new()),
            },
            _checkpoints: Arc::new(()),
        }))
    }

    /// Whether this is the shared database.
    pub fn is_shared(&self) -> bool {
        matches!(self.reads, Reads::Postgres { .. })
    }

    /// Runs `f` in the next group's transaction; answers once that committed.
    ///
    /// # Errors
    /// `f`'s error (its writes undone, the group's others kept), or the commit's.
    pub async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(Sql<'_>) -> Result<T, DbError> + Send + 'static,
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
        f: impl FnOnce(Sql<'_>) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, DbError> {
        let (tx, rx) = oneshot::channel();
        self.submit(f, tx)?;
        rx.blocking_recv().map_err(|_| DbError::Stopped)?
    }

    fn submit<T: Send + 'static>(
        &self,
        f: impl FnOnce(Sql<'_>) -> Result<T, DbError> + Send + 'static,
        tx: oneshot::Sender<Result<T, DbError>>,
    ) -> Result<(), DbError> {
        let work: Work = Box::new(move |conn: Sql<'_>| -> Finish {
            let done = savepoint(conn, f);
            Box::new(move |committed: Result<(), DbError>| {
                let _ = tx.send(committed.and(done));
            })
        });
        self.writes.send(work).map_err(|_| DbError::Stopped)
    }

    /// Runs `f` on a read connection, off the async runtime.
    ///
    /// # Errors
    /// `f`'s.
    pub async fn read<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(Sql<'_>) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, DbError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.read_here(f))
            .await
            .map_err(|_| DbError::Stopped)?
    }

    /// Runs `f` on a read connection and waits for it (on a thread of its own for the
    /// shared database, whose blocking client must not run on an async worker).
    ///
    /// # Errors
    /// `f`'s.
    pub fn read_blocking<T: Send>(
        &self,
        f: impl FnOnce(Sql<'_>) -> Result<T, DbError> + Send,
    ) -> Result<T, DbError> {
        match &self.reads {
            Reads::Sqlite(_) => self.read_here(f),
            Reads::Postgres { .. } => std::thread::scope(|s| {
                s.spawn(|| self.read_here(f))
                    .join()
                    .map_err(|_| DbError::Stopped)?
            }),
        }
    }

    fn read_here<T>(&self, f: impl FnOnce(Sql<'_>) -> Result<T, DbError>) -> Result<T, DbError> {
        match &self.reads {
            Reads::Sqlite(conn) => f(Sql::Sqlite(&conn.lock())),
            Reads::Postgres { pg, idle } => {
                let session = match idle.lock().pop() {
                    Some(s) => s,
                    None => {
                        PgSession::new(pg.connect_blocking().map_err(crate::db::RepoError::from)?)
                    }
                };
                let out = f(Sql::Postgres(&session));
                let mut idle = idle.lock();
                if idle.len() < PG_READERS && !session.is_closed() {
                    idle.push(session);
                }
                out
            }
        }
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<(), DbError> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map(drop)
        .map_err(|e| {
            tracing::error!(error = %e, thread = name, "webhook store: cannot start a thread");
            DbError::Stopped
        })
}

/// Statements kept prepared per SQLite connection.
const STATEMENT_CACHE: usize = 256;

fn savepoint<T>(
    conn: Sql<'_>,
    f: impl FnOnce(Sql<'_>) -> Result<T, DbError>,
) -> Result<T, DbError> {
    // Cached: a group runs thousands of these, and parsing them each time showed.
    let run = |sql: &str| match conn {
        Sql::Sqlite(c) => c
            .prepare_cached(sql)?
            .execute([])
            .map(drop)
            .map_err(DbError::from),
        Sql::Postgres(s) => s.batch(sql).map_err(DbError::from),
    };
    run("SAVEPOINT w")?;
    match f(conn) {
        Ok(v) => {
            run("RELEASE w")?;
            Ok(v)
        }
        Err(e) => {
            run("ROLLBACK TO w")?;
            run("RELEASE w")?;
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

/// The next group: the first write waiting and every one that follows it at once.
fn next_group(rx: &crossbeam_channel::Receiver<Work>) -> Option<Vec<Work>> {
    let first = rx.recv().ok()?;
    let mut group = vec![first];
    while group.len() < GROUP_MAX {
        match rx.try_recv() {
            Ok(w) => group.push(w),
            Err(_) => break,
        }
    }
    Some(group)
}

fn write_loop_sqlite(conn: &Connection, rx: &crossbeam_channel::Receiver<Work>) {
    while let Some(group) = next_group(rx) {
        commit_group(Sql::Sqlite(conn), "BEGIN IMMEDIATE", group);
    }
}

/// One writer of the shared database: as [`write_loop_sqlite`], on a connection it
/// opens again (with a pause) when the last one failed. Several run at once, so
/// groups commit in parallel; Postgres's row locks order what two of them touch.
fn write_loop_postgres(pg: &crate::db::Pg, rx: &crossbeam_channel::Receiver<Work>) {
    let mut session: Option<PgSession> = None;
    while let Some(group) = next_group(rx) {
        let s = match session.take().filter(|s| !s.is_closed()) {
            Some(s) => s,
            None => match pg.connect_blocking() {
                Ok(c) => PgSession::new(c),
                Err(e) => {
                    tracing::error!(error = %e, writes = group.len(), database = %pg.url(), "webhook store: cannot connect to the shared database; these writes are refused");
                    drop(group);
                    std::thread::sleep(std::time::Duration::from_millis(500));
                    continue;
                }
            },
        };
        commit_group(Sql::Postgres(&s), "BEGIN", group);
        session = Some(s);
    }
}

/// Runs `group` in one transaction begun with `begin`, each write in its savepoint,
/// and tells every write whether the commit held.
fn commit_group(conn: Sql<'_>, begin: &str, group: Vec<Work>) {
    if let Err(e) = conn.batch(begin) {
        // Dropping a write unrun drops its answer channel: its caller hears
        // `Stopped` (nothing was written).
        tracing::error!(error = %e, writes = group.len(), "webhook store: cannot begin a transaction; these writes are refused");
        return;
    }
    let finishes: Vec<Finish> = group.into_iter().map(|w| w(conn)).collect();
    let committed = conn.batch("COMMIT").map_err(DbError::from);
    if let Err(e) = &committed {
        tracing::error!(error = %e, "webhook store: commit failed; the writes of this group are lost and their callers told so");
        let _ = conn.batch("ROLLBACK");
    }
    for f in finishes {
        f(committed.clone());
    }
}
