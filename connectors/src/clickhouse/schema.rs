//! The ClickHouse schema of leadstream: the `lead_events` table, and how it is created
//! and migrated at start-up.
//!
//! Everything here is SQL that both ClickHouse 18.16 (Debian's package) and current
//! ClickHouse accept: a `ReplacingMergeTree` with the new-style `ORDER BY` clause, plain
//! `Int64`/`UInt64`/`String` columns (no `DateTime64`, `Map` or `JSON`), and migrations
//! driven by `system.columns` because 18.16 has no `ADD COLUMN IF NOT EXISTS`.
//!
//! `lead_events` (one row per unique lead event):
//!
//! | column | type | meaning |
//! |---|---|---|
//! | `organization_id` | `Int64` | `organizationId` |
//! | `event_type` | `String` | `eventType` |
//! | `phone_e164` | `String` | normalized phone, `+` and digits |
//! | `occurred_at_us` | `Int64` | `occurredAt` as UTC microseconds since the Unix epoch |
//! | `metadata` | `String` | compact JSON object text, `''` when none was sent |
//! | `ingested_at` | `Int64` | UTC milliseconds when leadstream stored it; the version column |
//! | `fp_hi`, `fp_lo` | `Int64` | the 128-bit dedup fingerprint of the key, in two halves |
//! | `lead_hash` | `UInt64` | `lead_hash(organization_id, phone)`: a process warms only its Kafka partitions' leads with `lead_hash % N IN (...)` |
//!
//! `ENGINE = ReplacingMergeTree(ingested_at) ORDER BY (organization_id, event_type,
//! phone_e164, occurred_at_us)`: the sorting key is the unique key, so rows that repeat a
//! key (a retried insert whose first attempt did land) collapse into the latest one
//! when parts merge. Until then they can coexist on disk, which is why every read that
//! must be exact uses `FINAL`.
//!
//! A table of the leadstream before microsecond keys has `occurred_at` (milliseconds)
//! where this one has `occurred_at_us`, and fingerprints of millisecond keys. Read as
//! it is, it would give wrong dedup answers, and its sorting key cannot be changed in
//! place, so it is refused with [`SchemaError::Milliseconds`], which says what to do
//! ([`legacy_export_sql`] turns its rows back into raw records to ingest again).

/// Why an existing database or table cannot be used; the message says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error(
        "database name {0:?}: expected 1 to 64 letters, digits or _, not starting with a digit"
    )]
    DatabaseName(String),
    #[error("column `{database}`.lead_events.{column} is {found}, leadstream writes {expected}; migrate or drop the table")]
    ColumnType {
        database: String,
        column: &'static str,
        found: String,
        expected: &'static str,
    },
    #[error("`{database}`.lead_events has no column {column}: not a leadstream table; use another database")]
    MissingColumn {
        database: String,
        column: &'static str,
    },
    #[error(
        "`{database}`.lead_events holds occurredAt in milliseconds (column occurred_at, from a leadstream before microsecond keys) \
         and fingerprints of millisecond keys, which would give wrong dedup answers; set clickhouse.database to a new database \
         and ingest the old events again (docs/architecture.md, \"Tables from before microsecond instants\"), or rename the table away"
    )]
    Milliseconds { database: String },
    #[error("`{database}`.lead_events is {engine} ORDER BY ({sorting_key}); leadstream needs ReplacingMergeTree ORDER BY ({SORTING_KEY}) for exact reads")]
    Engine {
        database: String,
        engine: String,
        sorting_key: String,
    },
}

/// The events table.
pub const TABLE: &str = "lead_events";

/// The unique key, as the table's sorting key (ClickHouse prints it without spaces
/// after commas in `system.tables.sorting_key`).
pub const SORTING_KEY: &str = "organization_id, event_type, phone_e164, occurred_at_us";

/// Columns of `lead_events`: name, type, and the `DEFAULT` a migration gives a column
/// added to an existing table (`None` for columns every version had).
pub const COLUMNS: &[(&str, &str, Option<&str>)] = &[
    ("organization_id", "Int64", None),
    ("event_type", "String", None),
    ("phone_e164", "String", None),
    ("occurred_at_us", "Int64", None),
    ("metadata", "String", None),
    ("ingested_at", "Int64", None),
    ("fp_hi", "Int64", None),
    ("fp_lo", "Int64", None),
    ("lead_hash", "UInt64", Some("0")),
];

/// How many recent insert blocks a non-replicated table remembers for insert
/// deduplication, on servers that support it.
pub const DEDUP_WINDOW: u32 = 1000;

/// `CREATE TABLE IF NOT EXISTS lead_events ...` in `database`. `dedup_window` adds
/// `non_replicated_deduplication_window`, which only newer servers know.
pub fn create_table(database: &str, dedup_window: bool) -> String {
    let cols: Vec<String> = COLUMNS
        .iter()
        .map(|(name, ty, _)| format!("    {name} {ty}"))
        .collect();
    let settings = if dedup_window {
        format!(", non_replicated_deduplication_window = {DEDUP_WINDOW}")
    } else {
        String::new()
    };
    format!(
        "CREATE TABLE IF NOT EXISTS `{database}`.lead_events (\n{}\n) ENGINE = ReplacingMergeTree(ingested_at)\nORDER BY ({SORTING_KEY})\nSETTINGS index_granularity = 8192{settings}",
        cols.join(",\n")
    )
}

/// A database name leadstream accepts: letters, digits and `_`, not starting with a
/// digit, so it can be quoted into SQL without escaping.
///
/// # Errors
/// [`SchemaError::DatabaseName`] naming the bad value.
pub fn check_database_name(name: &str) -> Result<(), SchemaError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit();
    if ok {
        Ok(())
    } else {
        Err(SchemaError::DatabaseName(name.to_owned()))
    }
}

/// What a migration has to do to an existing table with `existing` columns
/// (name, type): the `ALTER TABLE` statements that add missing columns.
///
/// # Errors
/// [`SchemaError::Milliseconds`] for a table of the millisecond version;
/// [`SchemaError::ColumnType`] when a column has a different type than leadstream
/// writes (changing it would rewrite the table: leadstream refuses rather than
/// guess); [`SchemaError::MissingColumn`] when a column every version had is missing
/// (not a leadstream table).
pub fn migrations(
    database: &str,
    existing: &[(String, String)],
) -> Result<Vec<String>, SchemaError> {
    let has = |c: &str| existing.iter().any(|(n, _)| n == c);
    if has("occurred_at") && !has("occurred_at_us") {
        return Err(SchemaError::Milliseconds {
            database: database.to_owned(),
        });
    }
    let mut out = Vec::new();
    for (name, ty, default) in COLUMNS {
        match existing.iter().find(|(n, _)| n == name) {
            Some((_, found)) if found == ty => {}
            Some((_, found)) => {
                return Err(SchemaError::ColumnType {
                    database: database.to_owned(),
                    column: name,
                    found: found.clone(),
                    expected: ty,
                })
            }
            None => match default {
                Some(d) => out.push(format!(
                    "ALTER TABLE `{database}`.lead_events ADD COLUMN {name} {ty} DEFAULT {d}"
                )),
                None => {
                    return Err(SchemaError::MissingColumn {
                        database: database.to_owned(),
                        column: name,
                    })
                }
            },
        }
    }
    Ok(out)
}

/// Checks the engine and sorting key of an existing table (`system.tables`).
///
/// # Errors
/// [`SchemaError::Engine`] naming what was found.
pub fn check_engine(database: &str, engine: &str, sorting_key: &str) -> Result<(), SchemaError> {
    let squash = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
    if engine != "ReplacingMergeTree" || squash(sorting_key) != squash(SORTING_KEY) {
        return Err(SchemaError::Engine {
            database: database.to_owned(),
            engine: engine.to_owned(),
            sorting_key: sorting_key.to_owned(),
        });
    }
    Ok(())
}

/// A query (ClickHouse 18.16 and later) that prints every event of a millisecond-era
/// `lead_events` in `database` as a per-event raw record, one JSON object a line
/// (`FORMAT TSVRaw`): `{organizationId, eventType, phoneE164, occurredAt, metadata?}`
/// with `occurredAt` as `YYYY-MM-DDThh:mm:ss.sssZ`. Produced to the raw topic (or
/// POSTed in batches) with leadstream running on a new database, they are stored
/// again with microsecond keys and their own fingerprints. Instants before 1970 are
/// not supported by it.
pub fn legacy_export_sql(database: &str) -> String {
    let json_string =
        |col: &str| format!(r#"replaceAll(replaceAll({col}, '\\', '\\\\'), '"', '\\"')"#);
    format!(
        "SELECT concat('{{\"organizationId\":', toString(organization_id), ',\"eventType\":\"', {}, \
         '\",\"phoneE164\":\"', phone_e164, '\",\"occurredAt\":\"', \
         formatDateTime(toDateTime(intDiv(occurred_at, 1000), 'UTC'), '%Y-%m-%dT%H:%M:%S', 'UTC'), '.', \
         substring(toString(1000 + occurred_at % 1000), 2), 'Z\"', \
         if(metadata = '', '', concat(',\"metadata\":', metadata)), '}}') \
         FROM `{database}`.lead_events FINAL FORMAT TSVRaw",
        json_string("event_type")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn create_table_orders_by_the_unique_key_and_adds_the_window_only_when_asked() {
        let old = create_table("leadstream", false);
        assert!(
            old.contains("ENGINE = ReplacingMergeTree(ingested_at)"),
            "{old}"
        );
        assert!(
            old.contains("ORDER BY (organization_id, event_type, phone_e164, occurred_at_us)"),
            "{old}"
        );
        assert!(!old.contains("non_replicated"), "{old}");
        assert!(
            create_table("leadstream", true).contains("non_replicated_deduplication_window = 1000")
        );
    }

    #[test]
    fn database_names_are_plain_identifiers() {
        assert!(check_database_name("leadstream_test_1").is_ok());
        for bad in ["", "1abc", "a-b", "a`b", "a b", &"x".repeat(65)] {
            let e = check_database_name(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn migration_adds_missing_new_columns_and_refuses_type_changes() {
        let all: Vec<(&str, &str)> = COLUMNS.iter().map(|(n, t, _)| (*n, *t)).collect();
        assert!(migrations("db", &cols(&all)).unwrap().is_empty());

        let without_lead_hash = &all[..all.len() - 1];
        assert_eq!(
            migrations("db", &cols(without_lead_hash)).unwrap(),
            ["ALTER TABLE `db`.lead_events ADD COLUMN lead_hash UInt64 DEFAULT 0"]
        );

        let mut retyped = all.clone();
        retyped[3] = ("occurred_at_us", "DateTime");
        let e = migrations("db", &cols(&retyped)).unwrap_err().to_string();
        assert!(
            e.contains("occurred_at_us is DateTime") && e.contains("Int64"),
            "{e}"
        );

        let mut millis = all.clone();
        millis[3] = ("occurred_at", "Int64");
        let e = migrations("db", &cols(&millis)).unwrap_err();
        assert_eq!(
            e,
            SchemaError::Milliseconds {
                database: "db".into()
            }
        );
        assert!(
            e.to_string().contains("milliseconds") && e.to_string().contains("clickhouse.database"),
            "{e}"
        );

        let e = migrations("db", &cols(&all[1..])).unwrap_err().to_string();
        assert!(e.contains("no column organization_id"), "{e}");
    }

    #[test]
    fn engine_check_accepts_what_either_server_prints() {
        assert!(check_engine(
            "db",
            "ReplacingMergeTree",
            "organization_id, event_type, phone_e164, occurred_at_us"
        )
        .is_ok());
        assert!(check_engine(
            "db",
            "ReplacingMergeTree",
            "organization_id,event_type,phone_e164,occurred_at_us"
        )
        .is_ok());
        assert!(check_engine(
            "db",
            "ReplacingMergeTree",
            "organization_id, event_type, phone_e164, occurred_at"
        )
        .is_err());
        let e = check_engine("db", "MergeTree", SORTING_KEY)
            .unwrap_err()
            .to_string();
        assert!(e.contains("is MergeTree"), "{e}");
        assert!(check_engine("db", "ReplacingMergeTree", "organization_id").is_err());
    }
}
