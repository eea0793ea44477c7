//! Where the transactional state lives, and how its schema is kept.
//!
//! - Unset `database.url`: the embedded SQLite files in the data dir (one process).
//! - Set: a shared Postgres database ([`Pg`]), so any number of processes answer
//!   alike. What has moved there so far is listed in docs/architecture.md ("Running
//!   several processes").
//!
//! Each domain's repository is a trait with a SQLite and a Postgres implementation
//! side by side (e.g. [`crate::registry::repo`]); [`migrate`] keeps both schemas,
//! with every migration listed in [`migrations`].

pub mod migrate;
pub mod migrations;
pub mod notify;
pub mod postgres;
pub mod sql;
pub mod testing;

pub use postgres::{Pg, PgOpenError};

use crate::config::Config;
use std::path::PathBuf;

/// A repository call that failed in its backend. Rules (no such org, a repeated id)
/// are the services' errors; this is only "the database could not answer".
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("postgres connection pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// A stored value this binary does not know (a state, a kind): never read as a
    /// default.
    #[error("unknown value {value:?} stored in {column}")]
    Unknown { column: &'static str, value: String },
    /// A stored value of another type than its reader expects.
    #[error("column {column} holds {found}, not {expected}")]
    Type {
        column: usize,
        expected: &'static str,
        found: &'static str,
    },
    /// A statement of one backend was run on the other (a defect, reported not
    /// panicked).
    #[error("{0} cannot run on this database")]
    Backend(&'static str),
    /// A statement that must answer a row answered none.
    #[error("no row")]
    NoRow,
}

impl RepoError {
    /// Whether the constraint of a unique key refused the write (a repeated id).
    pub fn is_unique_violation(&self) -> bool {
        match self {
            RepoError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => {
                e.code == rusqlite::ErrorCode::ConstraintViolation
            }
            RepoError::Postgres(e) => {
                e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
            }
            _ => false,
        }
    }
}

/// How long a process's claim on shared work lasts (a pending delivery its workers
/// hold, a send it materializes, an outbox row it relays), in ms: renewed while it
/// works, taken over by another process once it has run out (the holder was
/// killed). `database.lease`, set once at start-up ([`set_lease`]); 30 s until then.
pub fn lease_ms() -> i64 {
    LEASE_MS.load(std::sync::atomic::Ordering::Relaxed)
}

static LEASE_MS: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(30_000);

/// Sets [`lease_ms`] for this process (from `database.lease`).
pub fn set_lease(lease: std::time::Duration) {
    LEASE_MS.store(
        i64::try_from(lease.as_millis()).unwrap_or(i64::MAX),
        std::sync::atomic::Ordering::Relaxed,
    );
}

/// The advisory lock held by the process deleting what `delivery.log_retention` no
/// longer keeps (the others skip that round).
pub const RETENTION_LOCK: i64 = 0x6c73_7265_7465;

/// Whether this transaction runs this round of retention: always on the embedded
/// store; on the shared database only in the process that takes [`RETENTION_LOCK`]
/// (until the transaction ends), so retention runs once.
///
/// # Errors
/// The backend's.
pub fn retention_turn(conn: sql::Sql<'_>) -> Result<bool, RepoError> {
    if !conn.is_postgres() {
        return Ok(true);
    }
    conn.query_one(
        "SELECT pg_try_advisory_xact_lock(?1)",
        sql::args![RETENTION_LOCK],
        |r| r.get::<bool>(0),
    )
}

/// This process's name in the claims it writes: host, pid and a random tag (a
/// restarted process is another claimant).
pub fn process_id() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "host".into());
        format!(
            "{host}:{}:{:08x}",
            std::process::id(),
            rand::random::<u32>()
        )
    })
}

/// The backend chosen by the configuration.
#[derive(Debug, Clone)]
pub enum StateDb {
    /// SQLite files in this data dir.
    Embedded(PathBuf),
    /// The shared Postgres database.
    Shared(Pg),
}

impl StateDb {
    /// Connects to (and migrates) `database.url` when set; otherwise the data dir,
    /// created if missing.
    ///
    /// # Errors
    /// What opening the database failed with, naming it.
    pub async fn open(config: &Config) -> anyhow::Result<Self> {
        use anyhow::Context;
        if config.database.enabled() {
            return Ok(StateDb::Shared(Pg::open(&config.database).await?));
        }
        let dir = &config.store.data_dir;
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating data dir {}", dir.display()))?;
        Ok(StateDb::Embedded(dir.clone()))
    }

    /// [`open`](Self::open) for a server: while the shared database cannot be reached,
    /// waits with `[store.retry]`'s backoff, calling `on_retry` before each wait, as a
    /// server started before its database should. Anything else (a bad URL, a schema
    /// from a newer release, a failed migration) fails at once.
    ///
    /// # Errors
    /// As [`open`](Self::open), but never for an unreachable database.
    pub async fn open_waiting(
        config: &Config,
        mut on_retry: impl FnMut(&PgOpenError, std::time::Duration),
    ) -> anyhow::Result<Self> {
        if !config.database.enabled() {
            return Self::open(config).await;
        }
        let mut backoff = config.store.retry.backoff().schedule(rand::random());
        loop {
            match Pg::open(&config.database).await {
                Ok(pg) => return Ok(StateDb::Shared(pg)),
                Err(e @ PgOpenError::Connect { .. }) => {
                    let wait = backoff.next_delay();
                    on_retry(&e, wait);
                    tokio::time::sleep(wait).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Where the state is, for messages: the data dir or the masked URL.
    pub fn describe(&self) -> String {
        match self {
            StateDb::Embedded(dir) => format!("data dir {}", dir.display()),
            StateDb::Shared(pg) => format!("database {}", pg.url()),
        }
    }
}
