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
//! | `occurred_at` | `Int64` | `occurredAt` as UTC milliseconds since the Unix epoch |
//! | `metadata` | `String` | compact JSON object text, `''` when none was sent |
//! | `ingested_at` | `Int64` | UTC milliseconds when leadstream stored it; the version column |
//! | `fp_hi`, `fp_lo` | `Int64` | the 128-bit dedup fingerprint of the key, in two halves |
//! | `lead_hash` | `UInt64` | `lead_hash(organization_id, phone)`: a process warms only its Kafka partitions' leads with `lead_hash % N IN (...)` |
//!
//! `ENGINE = ReplacingMergeTree(ingested_at) ORDER BY (organization_id, event_type,
//! phone_e164, occurred_at)`: the sorting key is the unique key, so rows that repeat a
//! key (a retried insert whose first attempt did land) collapse into the latest one
//! when parts merge. Until then they can coexist on disk, which is why every read that
//! must be exact uses `FINAL`.

use crate::store::StoreError;

/// The events table.
pub const TABLE: &str = "lead_events";

/// The unique key, as the table's sorting key (ClickHouse prints it without spaces
/// after commas in `system.tables.sorting_key`).
pub const SORTING_KEY: &str = "organization_id, event_type, phone_e164, occurred_at";

/// Columns of `lead_events`: name, type, and the `DEFAULT` a migration gives a column
/// added to an existing table (`None` for columns every version had).
pub const COLUMNS: &[(&str, &str, Option<&str>)] = &[
    ("organization_id", "Int64", None),
    ("event_type", "String", None),
    ("phone_e164", "String", None),
    ("occurred_at", "Int64", None),
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
        "CREATE TABLE IF NOT EXISTS `{database}`.{TABLE} (\n{}\n) ENGINE = ReplacingMergeTree(ingested_at)\nORDER BY ({SORTING_KEY})\nSETTINGS index_granularity = 8192{settings}",
        cols.join(",\n")
    )
}

/// A database name leadstream accepts: letters, digits and `_`, not starting with a
/// digit, so it can be quoted into SQL without escaping.
///
/// # Errors
/// [`StoreError::Schema`] naming the bad value.
pub fn check_database_name(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit();
    if ok {
        Ok(())
    } else {
        Err(StoreError::Schema(format!("database name {name:?}: expected 1 to 64 letters, digits or _, not starting with a digit")))
    }
}

/// What a migration has to do to an existing table with `existing` columns
/// (name, type): the `ALTER TABLE` statements that add missing columns.
///
/// # Errors
/// [`StoreError::Schema`] when a column has a different type than leadstream writes
/// (changing it would rewrite the table: leadstream refuses rather than guess), or
/// when a column every version had is missing (not a leadstream table).
pub fn migrations(
    database: &str,
    existing: &[(String, String)],
) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::new();
    for (name, ty, default) in COLUMNS {
        match existing.iter().find(|(n, _)| n == name) {
            Some((_, found)) if found == ty => {}
            Some((_, found)) => {
                return Err(StoreError::Schema(format!(
                    "column `{database}`.{TABLE}.{name} is {found}, leadstream writes {ty}; migrate or drop the table"
                )))
            }
            None => match default {
                Some(d) => out.push(format!("ALTER TABLE `{database}`.{TABLE} ADD COLUMN {name} {ty} DEFAULT {d}")),
                None => {
                    return Err(StoreError::Schema(format!(
                        "`{database}`.{TABLE} has no column {name}: not a leadstream table; use another database"
                    )))
                }
            },
        }
    }
    Ok(out)
}

/// Checks the engine and sorting key of an existing table (`system.tables`).
///
/// # Errors
/// [`StoreError::Schema`] naming what was found.
pub fn check_engine(database: &str, engine: &str, sorting_key: &str) -> Result<(), StoreError> {
    let squash = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
    if engine != "ReplacingMergeTree" || squash(sorting_key) != squash(SORTING_KEY) {
        return Err(StoreError::Schema(format!(
            "`{database}`.{TABLE} is {engine} ORDER BY ({sorting_key}); leadstream needs ReplacingMergeTree ORDER BY ({SORTING_KEY}) for exact reads"
        )));
    }
    Ok(())
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
            old.contains("ORDER BY (organization_id, event_type, phone_e164, occurred_at)"),
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
        retyped[3] = ("occurred_at", "DateTime");
        let e = migrations("db", &cols(&retyped)).unwrap_err().to_string();
        assert!(
            e.contains("occurred_at is DateTime") && e.contains("Int64"),
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
            "organization_id, event_type, phone_e164, occurred_at"
        )
        .is_ok());
        assert!(check_engine(
            "db",
            "ReplacingMergeTree",
            "organization_id,event_type,phone_e164,occurred_at"
        )
        .is_ok());
        let e = check_engine("db", "MergeTree", SORTING_KEY)
            .unwrap_err()
            .to_string();
        assert!(e.contains("is MergeTree"), "{e}");
        assert!(check_engine("db", "ReplacingMergeTree", "organization_id").is_err());
    }
}
