//! Schema migrations: one versioned, forward-only mechanism for both backends.
//!
//! Each database has a list of [`Migration`]s numbered from 1. The numbers applied are
//! rows of `schema_migrations (version, name, applied_at)` in that database. At start-up
//! (`serve`, an admin command, a bench) the list is applied in order, each migration in
//! the transaction that records it, so a migration is applied whole or not at all:
//! - Postgres: inside one transaction that first takes an advisory lock
//!   ([`PG_MIGRATION_LOCK`]), so processes starting at once migrate once; the others
//!   wait, then find nothing left to do.
//! - SQLite: inside `BEGIN IMMEDIATE`, SQLite's write lock, which does the same for the
//!   server and an admin command opening one file.
//!
//! A database whose highest applied version is above the binary's list was migrated by
//! a newer leadstream: it is refused with [`MigrateError::Newer`] rather than used with
//! a schema this binary does not know. Migrations are never edited once released; a
//! change is a new migration.

use std::fmt;

/// One step of a database's schema history.
pub struct Migration<S: 'static> {
    /// 1, 2, 3…: the order, and the number recorded once applied.
    pub version: i64,
    /// What it does, recorded beside the number.
    pub name: &'static str,
    pub step: S,
}

/// A SQLite migration: statements, or code where a statement cannot say it (a store
/// made before versioned migrations, whose tables may or may not have a column yet).
pub enum SqliteStep {
    Sql(&'static str),
    Code(fn(&rusqlite::Connection) -> Result<(), crate::store::BoxError>),
}

/// A migration failure.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The database was migrated by a newer binary.
    #[error("{database} has schema version {found}, newer than this leadstream knows ({known}): it was migrated by a newer release. Run that release (or newer) against it; this binary will not use it")]
    Newer {
        database: String,
        found: i64,
        known: i64,
    },
    #[error("migrating {database} to version {version} ({name}): {source}")]
    Step {
        database: String,
        version: i64,
        name: &'static str,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("migrating {database}: {source}")]
    Db {
        database: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The advisory lock (`pg_advisory_xact_lock`) held while a Postgres database is
/// migrated: "leadstrm" in ASCII.
pub const PG_MIGRATION_LOCK: i64 = 0x6c65_6164_7374_726d;

const SQLITE_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version     INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL,
    applied_at  INTEGER NOT NULL
)";

const PG_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version     BIGINT      PRIMARY KEY,
    name        TEXT        NOT NULL,
    applied_at  TIMESTAMPTZ NOT NULL DEFAULT now()
)";

/// The migrations of `list` a database at version `from` lacks.
///
/// # Errors
/// [`MigrateError::Newer`] when `from` is past the list's last.
fn missing<'a, S>(
    database: &str,
    list: &'a [Migration<S>],
    from: i64,
) -> Result<impl Iterator<Item = &'a Migration<S>>, MigrateError> {
    let known = known(list);
    if from > known {
        return Err(MigrateError::Newer {
            database: database.to_owned(),
            found: from,
            known,
        });
    }
    Ok(list.iter().filter(move |m| m.version > from))
}

impl<S> Migration<S> {
    /// This step's failure, caused by `source`.
    fn failed(&self, database: &str, source: impl Into<crate::store::BoxError>) -> MigrateError {
        MigrateError::Step {
            database: database.to_owned(),
            version: self.version,
            name: self.name,
            source: source.into(),
        }
    }
}

fn known<S>(list: &[Migration<S>]) -> i64 {
    debug_assert!(
        list.iter()
            .enumerate()
            .all(|(i, m)| m.version == i as i64 + 1),
        "migrations are numbered 1, 2, 3… in order"
    );
    list.last().map_or(0, |m| m.version)
}

/// What [`apply_sqlite`] and [`apply_postgres`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// The version the database had before.
    pub from: i64,
    /// The version it has now.
    pub to: i64,
}

impl fmt::Display for Applied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.from == self.to {
            write!(f, "schema version {} (up to date)", self.to)
        } else {
            write!(f, "schema version {} → {}", self.from, self.to)
        }
    }
}

/// Brings a SQLite database up to the last of `list`.
///
/// # Errors
/// [`MigrateError`]; a failed step leaves the database at the version before it.
pub fn apply_sqlite(
    conn: &rusqlite::Connection,
    database: &str,
    list: &[Migration<SqliteStep>],
) -> Result<Applied, MigrateError> {
    let db = |e: rusqlite::Error| MigrateError::Db {
        database: database.to_owned(),
        source: Box::new(e),
    };
    let known = known(list);
    conn.execute_batch("BEGIN IMMEDIATE").map_err(db)?;
    let result = (|| {
        conn.execute_batch(SQLITE_TABLE).map_err(db)?;
        let from: i64 = conn
            .query_row(
                "SELECT coalesce(max(version), 0) FROM schema_migrations",
                [],
                |r| r.get(0),
            )
            .map_err(db)?;
        for m in missing(database, list, from)? {
            let step = |e: rusqlite::Error| m.failed(database, e);
            match &m.step {
                SqliteStep::Sql(sql) => conn.execute_batch(sql).map_err(step)?,
                SqliteStep::Code(f) => f(conn).map_err(|e| m.failed(database, e))?,
            }
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
                rusqlite::params![m.version, m.name, crate::writer::now_ms()],
            )
            .map_err(step)?;
        }
        Ok(Applied { from, to: known })
    })();
    match result {
        Ok(applied) => {
            conn.execute_batch("COMMIT").map_err(db)?;
            Ok(applied)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// Brings a Postgres database up to the last of `list`, under [`PG_MIGRATION_LOCK`].
///
/// # Errors
/// [`MigrateError`]; a failed step leaves the database at the version before it
/// (Postgres DDL is transactional).
pub async fn apply_postgres(
    client: &mut tokio_postgres::Client,
    database: &str,
    list: &[Migration<&'static str>],
) -> Result<Applied, MigrateError> {
    let db = |e: tokio_postgres::Error| MigrateError::Db {
        database: database.to_owned(),
        source: Box::new(e),
    };
    let known = known(list);
    let tx = client.transaction().await.map_err(db)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PG_MIGRATION_LOCK])
        .await
        .map_err(db)?;
    tx.batch_execute(PG_TABLE).await.map_err(db)?;
    let from: i64 = tx
        .query_one(
            "SELECT coalesce(max(version), 0)::BIGINT FROM schema_migrations",
            &[],
        )
        .await
        .map_err(db)?
        .get(0);
    for m in missing(database, list, from)? {
        let step = |e: tokio_postgres::Error| m.failed(database, e);
        tx.batch_execute(m.step).await.map_err(step)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[&m.version, &m.name],
        )
        .await
        .map_err(step)?;
    }
    tx.commit().await.map_err(db)?;
    Ok(Applied { from, to: known })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testing::{database_config, shared_cluster};
    use crate::db::{migrations, Pg};

    #[tokio::test]
    async fn processes_starting_at_once_migrate_once() {
        let url = tokio::task::spawn_blocking(|| shared_cluster().new_database())
            .await
            .unwrap();
        let cfg = database_config(url);
        let opens: Vec<_> = (0..6)
            .map(|_| {
                let cfg = cfg.clone();
                crate::tasks::spawn(async move { Pg::open(&cfg).await })
            })
            .collect();
        for o in opens {
            o.await.unwrap().expect("every process starts");
        }
        let pg = Pg::open(&cfg).await.unwrap();
        let rows = pg
            .conn()
            .await
            .unwrap()
            .query(
                "SELECT version FROM schema_migrations ORDER BY version",
                &[],
            )
            .await
            .unwrap();
        let versions: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
        let expected: Vec<i64> = migrations::POSTGRES.iter().map(|m| m.version).collect();
        assert_eq!(versions, expected, "each migration recorded once");
    }

    #[tokio::test]
    async fn a_postgres_database_newer_than_the_binary_is_refused() {
        let pg = crate::db::testing::shared_pg().await;
        pg.conn()
            .await
            .unwrap()
            .execute(
                "INSERT INTO schema_migrations (version, name) VALUES (999, 'from the future')",
                &[],
            )
            .await
            .unwrap();
        let url = pg.url().to_owned();
        let e = Pg::open(&database_config(url))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("schema version 999") && e.contains("newer"),
            "{e}"
        );
    }

    #[test]
    fn a_sqlite_store_newer_than_the_binary_is_refused_and_a_failed_step_undone() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let list = [
            Migration {
                version: 1,
                name: "t",
                step: SqliteStep::Sql("CREATE TABLE t (a INTEGER)"),
            },
            Migration {
                version: 2,
                name: "broken",
                step: SqliteStep::Sql("CREATE TABLE u (b INTEGER); INSERT INTO nowhere VALUES (1)"),
            },
        ];
        let e = apply_sqlite(&conn, "mem", &list).unwrap_err().to_string();
        assert!(e.contains("version 2 (broken)"), "{e}");
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name IN ('t', 'u', 'schema_migrations')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 0, "nothing of a failed run stays");
        assert_eq!(
            apply_sqlite(&conn, "mem", &list[..1]).unwrap(),
            Applied { from: 0, to: 1 }
        );
        assert_eq!(
            apply_sqlite(&conn, "mem", &list[..1]).unwrap(),
            Applied { from: 1, to: 1 }
        );
        let e = apply_sqlite(&conn, "mem", &[]).unwrap_err().to_string();
        assert!(e.contains("schema version 1, newer"), "{e}");
    }

    #[test]
    fn a_registry_made_before_versioned_migrations_is_adopted() {
        let dir = tempfile::tempdir().unwrap();
        let conn = rusqlite::Connection::open(dir.path().join("leadstream.db")).unwrap();
        // The first release's schema, with one organization and no account ids.
        conn.execute_batch(include_str!("migrations/sqlite/0001_registry.sql"))
            .unwrap();
        conn.execute(
            "INSERT INTO organizations (id, name, created_at) VALUES (7, 'old', 0)",
            [],
        )
        .unwrap();
        drop(conn);
        let reg = crate::registry::Registry::open_embedded(dir.path()).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let account = rt.block_on(reg.account_id(7)).unwrap().unwrap();
        assert!(uuid::Uuid::parse_str(&account).is_ok(), "{account}");
    }
}
