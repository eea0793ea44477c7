//! Every database's migrations, in order: the shared Postgres database, and each
//! embedded SQLite file. Applied by [`super::migrate`]. Never edit a released one; add
//! the next.

use super::migrate::{Migration, SqliteStep};
use rusqlite::Connection;

/// The shared database (`database.url`).
pub const POSTGRES: &[Migration<&str>] = &[
    Migration {
        version: 1,
        name: "organizations and credentials",
        step: include_str!("migrations/postgres/0001_registry.sql"),
    },
    Migration {
        version: 2,
        name: "webhook endpoints and their secrets",
        step: include_str!("migrations/postgres/0002_endpoints.sql"),
    },
];

/// `leadstream.db`: organizations and credentials of the embedded store.
pub const SQLITE_REGISTRY: &[Migration<SqliteStep>] = &[
    Migration {
        version: 1,
        name: "organizations and credentials",
        step: SqliteStep::Sql(include_str!("migrations/sqlite/0001_registry.sql")),
    },
    Migration {
        version: 2,
        name: "organizations.account_id",
        step: SqliteStep::Code(add_account_ids),
    },
];

/// Gives every organization an account UUID (`user_id` in webhook payloads). A store
/// made before versioned migrations may already have the column (and ids for some of
/// its orgs): only what is missing is added.
fn add_account_ids(conn: &Connection) -> rusqlite::Result<()> {
    let has_column = conn
        .prepare("SELECT 1 FROM pragma_table_info('organizations') WHERE name = 'account_id'")?
        .exists([])?;
    if !has_column {
        conn.execute_batch("ALTER TABLE organizations ADD COLUMN account_id TEXT")?;
    }
    let missing: Vec<i64> = conn
        .prepare("SELECT id FROM organizations WHERE account_id IS NULL")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for id in missing {
        conn.execute(
            "UPDATE organizations SET account_id = ?1 WHERE id = ?2",
            rusqlite::params![uuid::Uuid::new_v4().to_string(), id],
        )?;
    }
    Ok(())
}
