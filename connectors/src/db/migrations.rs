//! Every database's migrations, in order: the shared Postgres database, and each
//! embedded SQLite file. Applied by [`super::migrate`]. Never edit a released one; add
//! the next.

use super::migrate::{Migration, SqliteStep};
use crate::store::BoxError;
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
    Migration {
        version: 3,
        name: "events, deliveries, campaigns and domain records",
        step: include_str!("migrations/postgres/0003_webhooks.sql"),
    },
    Migration {
        version: 4,
        name: "deliveries without the updatedAt index; outbox rows' owner",
        step: include_str!("migrations/postgres/0004_deliveries_index_outbox_owner.sql"),
    },
    Migration {
        version: 5,
        name: "WhatsApp integrations and seen ids by org",
        step: include_str!("migrations/postgres/0005_whatsapp_by_org.sql"),
    },
    Migration {
        version: 6,
        name: "owners of the raw lead partitions; keys the processes share",
        step: include_str!("migrations/postgres/0006_lead_partition_owners.sql"),
    },
    Migration {
        version: 7,
        name: "when each WhatsApp id was first seen",
        step: include_str!("migrations/postgres/0007_whatsapp_seen_at.sql"),
    },
    Migration {
        version: 8,
        name: "API-key scopes",
        step: include_str!("migrations/postgres/0008_credential_scopes.sql"),
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
    Migration {
        version: 3,
        name: "API-key scopes",
        step: SqliteStep::Sql(include_str!("migrations/sqlite/0003_credential_scopes.sql")),
    },
];

/// Gives every organization an account UUID (`user_id` in webhook payloads). A store
/// made before versioned migrations may already have the column (and ids for some of
/// its orgs): only what is missing is added.
fn add_account_ids(conn: &Connection) -> Result<(), BoxError> {
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

/// `webhooks.db`: the delivery engine, campaigns and domain state of the embedded
/// store (one file, so each of their writes is one transaction with the deliveries
/// it publishes).
pub const SQLITE_WEBHOOKS: &[Migration<SqliteStep>] = &[
    Migration {
        version: 1,
        name: "endpoints, events, deliveries, attempts, outbox",
        step: SqliteStep::Sql(include_str!(
            "migrations/sqlite/webhooks_0001_deliveries.sql"
        )),
    },
    Migration {
        version: 2,
        name: "deliveries.part",
        step: SqliteStep::Code(|conn| add_missing_columns(conn, &[("deliveries", "part", "BLOB")])),
    },
    Migration {
        version: 3,
        name: "campaigns, audiences, opt-outs, sends",
        step: SqliteStep::Sql(include_str!(
            "migrations/sqlite/webhooks_0003_campaigns.sql"
        )),
    },
    Migration {
        version: 4,
        name: "sends as a shared event, a cursor and emitted ranges",
        step: SqliteStep::Code(sends_as_ranges),
    },
    Migration {
        version: 5,
        name: "contacts, conversations, integrations, triggers, actions",
        step: SqliteStep::Sql(include_str!("migrations/sqlite/webhooks_0005_domain.sql")),
    },
    Migration {
        version: 6,
        name: "WhatsApp integrations and seen ids by org",
        step: SqliteStep::Sql(include_str!(
            "migrations/sqlite/webhooks_0006_whatsapp_by_org.sql"
        )),
    },
    Migration {
        version: 7,
        name: "when each WhatsApp id was first seen",
        step: SqliteStep::Sql(include_str!(
            "migrations/sqlite/webhooks_0007_whatsapp_seen_at.sql"
        )),
    },
];

/// Adds the `(table, column, declaration)`s a store made before versioned migrations
/// may lack (a column added in place by an older release).
fn add_missing_columns(conn: &Connection, columns: &[(&str, &str, &str)]) -> Result<(), BoxError> {
    for (table, column, decl) in columns {
        let present = conn
            .prepare(&format!(
                "SELECT 1 FROM pragma_table_info('{table}') WHERE name = ?1"
            ))?
            .exists([column])?;
        if !present {
            conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))?;
        }
    }
    Ok(())
}

/// Sends of the layout before a send's progress became a cursor and ranges: the
/// columns it lacks, and its sends carried over
/// ([`crate::campaigns::store::carry_over_old_sends`]).
fn sends_as_ranges(conn: &Connection) -> Result<(), BoxError> {
    add_missing_columns(
        conn,
        &[
            ("sends", "event_id", "TEXT"),
            ("sends", "eligible", "INTEGER NOT NULL DEFAULT 0"),
            ("sends", "emitted", "INTEGER NOT NULL DEFAULT 0"),
            ("sends", "emitted_through", "INTEGER NOT NULL DEFAULT 0"),
        ],
    )?;
    Ok(crate::campaigns::store::carry_over_old_sends(conn)?)
}

/// `events.db`: the embedded event store ([`crate::store::sqlite`]).
pub const SQLITE_EVENTS: &[Migration<SqliteStep>] = &[Migration {
    version: 1,
    name: "lead_events with microsecond instants",
    step: SqliteStep::Code(crate::store::sqlite::adopt),
}];
