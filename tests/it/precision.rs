//! `occurredAt` at microsecond precision, as Postgres `timestamptz`: instants 100 µs
//! apart are two events over HTTP and after a restart, and a data dir of the
//! millisecond version is migrated so its dedup answers stay right.

use crate::support::{batch, stored_rows, TestServer};
use leadstream_pipeline::{EventKey, Phone};
use serde_json::json;

const ORG: i64 = 42;

fn at(fraction: &str) -> serde_json::Value {
    json!({"phoneE164": "+15551234567", "occurredAt": format!("2026-05-12T18:34:00{fraction}Z")})
}

#[tokio::test]
async fn events_100_microseconds_apart_are_two_rows_over_http_and_after_a_restart() {
    let mut s = TestServer::start().await;
    let key = s.org(ORG).api_key(ORG).secret;
    let two = batch(ORG, "mastery_purchase", vec![at(".0001"), at(".0002")]);
    assert_eq!(s.post_bearer(&key, &two).await.counts(), (2, 2, 0, 0));
    assert_eq!(stored_rows(&s.data_dir()), 2);

    s.restart().await;
    assert_eq!(s.post_bearer(&key, &two).await.counts(), (2, 0, 2, 0));
    // Other spellings of the same two instants (and a digit past the microsecond that
    // rounds away, as Postgres rounds it) are duplicates; a third instant is new.
    let again = batch(
        ORG,
        "mastery_purchase",
        vec![
            at(".000100"),
            json!({"phoneE164": "+15551234567", "occurredAt": "2026-05-12T13:34:00.0002-05:00"}),
            at(".0001004"),
            at(".0003"),
        ],
    );
    assert_eq!(s.post_bearer(&key, &again).await.counts(), (4, 1, 3, 0));
    let conn = rusqlite::Connection::open(s.data_dir().join("events.db")).unwrap();
    let instants: Vec<i64> = conn
        .prepare("SELECT occurred_at_us FROM lead_events ORDER BY 1")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let base = 1_778_610_840_000_000;
    assert_eq!(instants, [base + 100, base + 200, base + 300]);
}

/// A data dir written by the millisecond version (its `events.db` layout, its
/// fingerprints): the server migrates it at start, so a re-sent event is a duplicate,
/// and new sub-millisecond instants are new keys.
#[tokio::test]
async fn a_data_dir_of_the_millisecond_version_is_migrated_and_dedups_right() {
    let mut s = TestServer::start().await;
    let key = s.org(ORG).api_key(ORG).secret;
    s.stop();
    let db = s.data_dir().join("events.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    // What the millisecond version stored for the seed's event: the instant in ms and
    // the fingerprint of the ms key (its encoding took the ms number as is).
    let ms = 1_778_610_840_000i64;
    let old = EventKey {
        org: ORG,
        phone: Phone(15551234567),
        event_type: "mastery_purchase",
        occurred_at_us: ms,
    }
    .fingerprint();
    let (hi, lo) = old.halves();
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "CREATE TABLE lead_events (organization_id INTEGER NOT NULL, event_type TEXT NOT NULL, phone_e164 TEXT NOT NULL,
         occurred_at_ms INTEGER NOT NULL, metadata TEXT, ingested_at_ms INTEGER NOT NULL, fp_hi INTEGER NOT NULL, fp_lo INTEGER NOT NULL)",
    )
    .unwrap();
    conn.execute("INSERT INTO lead_events VALUES (42, 'mastery_purchase', '+15551234567', ?1, NULL, 1, ?2, ?3)", rusqlite::params![ms, hi, lo]).unwrap();
    drop(conn);

    s.restart().await;
    assert!(
        s.logs().contains("migrated to microsecond instants"),
        "{}",
        s.logs()
    );
    let seed = batch(ORG, "mastery_purchase", vec![at("")]);
    assert_eq!(
        s.post_bearer(&key, &seed).await.counts(),
        (1, 0, 1, 0),
        "the migrated row is the same key"
    );
    assert_eq!(
        s.post_bearer(&key, &batch(ORG, "mastery_purchase", vec![at(".0001")]))
            .await
            .counts(),
        (1, 1, 0, 0)
    );
    assert_eq!(stored_rows(&s.data_dir()), 2);
}
