//! ClickHouse as the event store, against a real `clickhouse-server` (see
//! `support_clickhouse`): the store on its own, and the real binary with
//! `LEADSTREAM_CLICKHOUSE_URL`, through restarts of either side and an outage.

use crate::support::{batch, instant, lead, TestServer};
use crate::support_clickhouse::ClickHouseServer;
use leadstream_connectors::clickhouse::ClickHouseStore;
use leadstream_connectors::config::{ClickHouseConfig, Config};
use leadstream_connectors::store::{EventStore, StoreError, StoredEvent};
use leadstream_pipeline::{lead_hash, EventKey, Fingerprint, Phone, Probe};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::{Duration, Instant};

const ORG: i64 = 42;

/// The `[clickhouse]` config for `url` and `database`, defaults otherwise.
fn config(url: &str, database: &str) -> ClickHouseConfig {
    let mut c = Config::load(None, |_| None)
        .expect("default config")
        .clickhouse;
    c.url = url.to_owned();
    c.database = database.to_owned();
    c
}

/// The default `[store.retry]` policy.
fn cfg_retry() -> leadstream_pipeline::retry::Backoff {
    Config::load(None, |_| None)
        .expect("default config")
        .store
        .retry
        .backoff()
}

/// `n` distinct events of one type starting at key `from`, with the `Probe` the
/// pipeline would compute.
fn events(from: usize, n: usize) -> Vec<(Phone, i64, Option<String>, Probe)> {
    (from..from + n)
        .map(|k| {
            let phone = Phone(12_125_550_000 + (k % 10_000) as u64);
            let at = 1_777_593_600_000_000 + k as i64 * 1_000_000;
            let key = EventKey {
                org: ORG,
                phone,
                event_type: "webinar_attended",
                occurred_at_us: at,
            };
            let meta = (k % 3 == 0).then(|| format!(r#"{{"k":{k}}}"#));
            (
                phone,
                at,
                meta,
                Probe {
                    fingerprint: key.fingerprint(),
                    lead: key.lead_hash(),
                },
            )
        })
        .collect()
}

fn stored<'a>(rows: &'a [(Phone, i64, Option<String>, Probe)]) -> Vec<StoredEvent<'a>> {
    rows.iter()
        .map(|(phone, at, meta, probe)| StoredEvent {
            org: ORG,
            event_type: "webinar_attended",
            phone: *phone,
            occurred_at_us: *at,
            metadata: meta.as_deref(),
            probe: *probe,
        })
        .collect()
}

#[test]
fn schema_creation_is_idempotent_and_migrates_an_older_table() {
    let ch = ClickHouseServer::start();
    let cfg = config(&ch.url(), "ls_schema");
    let first = ClickHouseStore::connect(&cfg).expect("first connect");
    let create = ch.query("SHOW CREATE TABLE ls_schema.lead_events");
    assert!(
        create.contains("ReplacingMergeTree(ingested_at)"),
        "{create}"
    );
    assert!(
        create.contains("ORDER BY (organization_id, event_type, phone_e164, occurred_at_us)"),
        "{create}"
    );
    drop(first);
    let mut second = ClickHouseStore::connect(&cfg).expect("second connect");
    assert_eq!(
        ch.query("SHOW CREATE TABLE ls_schema.lead_events"),
        create,
        "a second connect changed the table"
    );
    assert_eq!(second.count_exact().unwrap(), 0);
    assert!(
        second
            .server_version()
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit()),
        "{}",
        second.server_version()
    );

    // A table without `lead_hash` gets the column; its rows stay.
    ch.query("CREATE DATABASE ls_old");
    ch.query(
        "CREATE TABLE ls_old.lead_events (organization_id Int64, event_type String, phone_e164 String, occurred_at_us Int64, \
         metadata String, ingested_at Int64, fp_hi Int64, fp_lo Int64) \
         ENGINE = ReplacingMergeTree(ingested_at) ORDER BY (organization_id, event_type, phone_e164, occurred_at_us)",
    );
    ch.query("INSERT INTO ls_old.lead_events VALUES (42, 't', '+15551234567', 1, '', 2, 3, 4)");
    let mut old = ClickHouseStore::connect(&config(&ch.url(), "ls_old")).expect("connect migrates");
    assert_eq!(ch.query("SELECT type FROM system.columns WHERE database = 'ls_old' AND table = 'lead_events' AND name = 'lead_hash'"), "UInt64");
    assert_eq!(old.count_exact().unwrap(), 1);
    ClickHouseStore::connect(&config(&ch.url(), "ls_old")).expect("connect after the migration");

    // A column of another type is refused, naming it; nothing is changed.
    ch.query("CREATE DATABASE ls_bad");
    ch.query(
        "CREATE TABLE ls_bad.lead_events (organization_id Int64, event_type String, phone_e164 String, occurred_at_us DateTime, \
         metadata String, ingested_at Int64, fp_hi Int64, fp_lo Int64) \
         ENGINE = ReplacingMergeTree(ingested_at) ORDER BY (organization_id, event_type, phone_e164, occurred_at_us)",
    );
    let e = ClickHouseStore::connect(&config(&ch.url(), "ls_bad")).unwrap_err();
    assert!(
        matches!(e, StoreError::Open { .. })
            && e.to_string().contains("occurred_at_us is DateTime"),
        "{e}"
    );

    let e = ClickHouseStore::connect(&config(&ch.url(), "no-dashes")).unwrap_err();
    assert!(e.to_string().contains("\"no-dashes\""), "{e}");
}

#[test]
fn retried_inserts_count_once_and_an_outage_is_unavailable_at_once() {
    let mut ch = ClickHouseServer::start();
    let mut cfg = config(&ch.url(), "ls_store");
    cfg.insert_rows = 1000; // several INSERTs per append
    let mut store = ClickHouseStore::connect(&cfg).expect("connect");
    let rows = events(0, 2500);
    assert_eq!(store.append(&stored(&rows), 1).unwrap(), 2500);

    // A retry of a group whose first attempt did land (the answer was lost): the same
    // keys again, newer ingested_at, cut into different chunks.
    store.append(&stored(&rows[..1500]), 2).unwrap();
    assert_eq!(
        store.count_exact().unwrap(),
        2500,
        "a retried insert counted twice"
    );
    let physical = store.count_physical().unwrap();
    if store.uses_dedup_tokens() {
        assert_eq!(
            physical, 3000,
            "the identical first chunk is dropped by its token, the other is not"
        );
    } else {
        assert_eq!(
            physical, 4000,
            "18.16 has no insert tokens: the repeats are stored until they merge"
        );
    }

    // Warm-up reads each key once, with what was written.
    let mut seen = HashSet::new();
    let n = store
        .scan(&mut |r| {
            assert_eq!((r.org, r.event_type.as_str()), (ORG, "webinar_attended"));
            assert_eq!(
                r.fingerprint,
                EventKey {
                    org: r.org,
                    phone: r.phone,
                    event_type: &r.event_type,
                    occurred_at_us: r.occurred_at_us
                }
                .fingerprint()
            );
            assert!(seen.insert(r.fingerprint), "key read twice");
        })
        .unwrap();
    assert_eq!(n, 2500);
    let expected: HashSet<Fingerprint> = rows.iter().map(|r| r.3.fingerprint).collect();
    assert_eq!(seen, expected);
    let (phone, at, _, probe) = &rows[3];
    let row =
        ch.query(&format!("SELECT phone_e164, metadata, lead_hash, ingested_at FROM ls_store.lead_events FINAL WHERE occurred_at_us = {at} FORMAT TSV"));
    assert_eq!(
        row,
        format!("+{}\t{{\"k\":3}}\t{}\t2", phone.0, lead_hash(ORG, *phone))
    );
    assert_eq!(probe.lead, lead_hash(ORG, *phone));

    // ClickHouse gone: every call fails fast with Unavailable.
    ch.kill();
    let more = events(2500, 500);
    let t = Instant::now();
    let e = store.append(&stored(&more), 3).unwrap_err();
    assert!(e.is_unavailable(), "{e}");
    assert!(store.scan(&mut |_| {}).unwrap_err().is_unavailable());
    assert!(store.count_exact().unwrap_err().is_unavailable());
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?} to notice",
        t.elapsed()
    );
    let e = ClickHouseStore::connect(&cfg).unwrap_err();
    assert!(e.is_unavailable(), "{e}");

    // Back on the same data: the same store object carries on.
    ch.restart();
    let t = Instant::now();
    loop {
        match store.append(&stored(&more), 4) {
            Ok(_) => break,
            // A pooled connection to the killed server may fail once.
            Err(e) if e.is_unavailable() && t.elapsed() < Duration::from_secs(10) => {
                std::thread::sleep(Duration::from_millis(100))
            }
            Err(e) => panic!("append after restart: {e}"),
        }
    }
    assert_eq!(store.count_exact().unwrap(), 3000);
}

/// A body of `n` events starting at `from` (see `support::lead`).
fn body(event_type: &str, from: usize, n: usize) -> Value {
    batch(ORG, event_type, (from..from + n).map(lead).collect())
}

#[tokio::test]
async fn events_posted_over_http_are_in_clickhouse_once_and_dedup_survives_a_restart() {
    let ch = ClickHouseServer::start();
    let mut s = TestServer::builder()
        .env("LEADSTREAM_CLICKHOUSE_URL", ch.url())
        .env("LEADSTREAM_CLICKHOUSE_DATABASE", "ls_http")
        .start()
        .await;
    let key = s.org(ORG).api_key(ORG).secret;

    // 250 new events, then 50 repeats of them spelled differently (spaces in the
    // phone, the same instant at -05:00).
    let mut first = body("webinar_attended", 0, 250);
    let repeats = (0..50).map(|k| {
        let at = instant(k)
            .replace("2026-05-01T00", "2026-04-30T19")
            .replace('Z', "-05:00");
        json!({ "phoneE164": format!("+1 212 555 {:04}", k), "occurredAt": at })
    });
    first["events"].as_array_mut().unwrap().extend(repeats);
    first["events"][7]["metadata"] = json!({ "orderId": "ord_7", "amountUsd": 297 });
    assert_eq!(
        s.post_bearer(&key, &first).await.counts(),
        (300, 250, 50, 0)
    );
    // Half old, half new.
    let second = body("webinar_attended", 125, 250);
    assert_eq!(
        s.post_bearer(&key, &second).await.counts(),
        (250, 125, 125, 0)
    );

    assert_eq!(
        ch.count("SELECT count() FROM ls_http.lead_events FINAL"),
        375
    );
    assert_eq!(
        ch.count("SELECT count() FROM ls_http.lead_events"),
        375,
        "rows stored more than once"
    );
    let phone = Phone(12_125_550_007);
    assert_eq!(
        ch.query("SELECT organization_id, event_type, phone_e164, occurred_at_us, lead_hash FROM ls_http.lead_events WHERE phone_e164 = '+12125550007' FORMAT TSV"),
        format!("42\twebinar_attended\t+12125550007\t1777593607000000\t{}", lead_hash(ORG, phone))
    );
    let meta = ch.query(
        "SELECT metadata FROM ls_http.lead_events WHERE phone_e164 = '+12125550007' FORMAT TSVRaw",
    );
    assert_eq!(
        serde_json::from_str::<Value>(&meta).unwrap(),
        json!({ "orderId": "ord_7", "amountUsd": 297 }),
        "{meta}"
    );
    assert_eq!(
        ch.count("SELECT count() FROM ls_http.lead_events WHERE metadata = ''"),
        374,
        "no metadata is stored as ''"
    );
    assert!(
        !s.data_dir().join("events.db").exists(),
        "events went to the embedded store too"
    );
    // The console's reads come from ClickHouse: one lead's events, and this minute's count.
    let reads = crate::api::Api {
        s: &s,
        key: key.clone(),
    };
    let lead = reads.get("/api/v1/lead-events?phone=%2B12125550007").await;
    assert_eq!(
        lead.body,
        json!({"data": [{"phoneE164": "+12125550007", "eventType": "webinar_attended",
            "occurredAt": "2026-05-01T00:00:07Z", "metadata": {"orderId": "ord_7", "amountUsd": 297},
            "ingestedAt": lead.body["data"][0]["ingestedAt"]}], "nextCursor": null}),
    );
    let pages = reads
        .pages_by_cursor(
            "/api/v1/lead-events?phone=%2B12125550130&eventType=webinar_attended&limit=1",
        )
        .await;
    assert_eq!(pages.concat().len(), 1, "{pages:?}");
    let stats = reads.get("/api/v1/stats").await;
    assert_eq!(stats.body["totals"]["leadEvents"], 375, "{}", stats.body);

    // A new process warms its index from ClickHouse: everything is a duplicate.
    s.restart().await;
    assert_eq!(s.post_bearer(&key, &first).await.counts(), (300, 0, 300, 0));
    assert_eq!(
        s.post_bearer(&key, &second).await.counts(),
        (250, 0, 250, 0)
    );
    assert_eq!(
        ch.count("SELECT count() FROM ls_http.lead_events FINAL"),
        375
    );
}

/// POSTs `body` until it is accepted, honouring `Retry-After` on 503s; returns the
/// accepted counts and how many 503s it saw.
async fn post_until_accepted(
    s: &TestServer,
    key: &str,
    body: &Value,
) -> ((u64, u64, u64, u64), u32) {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut refused = 0;
    loop {
        let r = s
            .lead_events()
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .expect("POST");
        match r.status().as_u16() {
            200 => {
                let v: Value = r.json().await.expect("JSON body");
                let n = |f: &str| v[f].as_u64().unwrap_or_else(|| panic!("no {f} in {v}"));
                return (
                    (n("received"), n("inserted"), n("duplicates"), n("rejected")),
                    refused,
                );
            }
            503 => {
                let wait: u64 = r
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok()?.parse().ok())
                    .expect("503 without Retry-After");
                // The outage is named, never in ClickHouse's own words.
                let said = r.text().await.unwrap_or_default();
                assert!(
                    !said.contains("127.0.0.1") && !said.to_lowercase().contains("connect"),
                    "{said}"
                );
                refused += 1;
                assert!(
                    Instant::now() < deadline,
                    "still 503 after 90 s\n{}",
                    s.logs()
                );
                tokio::time::sleep(Duration::from_secs(wait).min(Duration::from_millis(500))).await;
            }
            other => panic!("unexpected {other}: {}", r.text().await.unwrap_or_default()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_outage_answers_503_and_nothing_is_lost_or_doubled() {
    let mut ch = ClickHouseServer::start();
    let s = TestServer::builder()
        .env("LEADSTREAM_CLICKHOUSE_URL", ch.url())
        .env("LEADSTREAM_CLICKHOUSE_DATABASE", "ls_outage")
        .start()
        .await;
    let key = s.org(ORG).api_key(ORG).secret;
    let count = |ch: &ClickHouseServer| ch.count("SELECT count() FROM ls_outage.lead_events FINAL");

    let a = body("trial_started", 0, 1000);
    assert_eq!(s.post_bearer(&key, &a).await.counts(), (1000, 1000, 0, 0));

    // Down between requests: a clean 503 with Retry-After, nothing stored.
    ch.kill();
    let b = body("trial_started", 1000, 1000);
    let r = s
        .lead_events()
        .bearer_auth(&key)
        .json(&b)
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"), "{:?}", r.headers());
    let msg: Value = r.json().await.unwrap();
    assert!(
        msg["error"].as_str().is_some_and(|m| m.contains("retry")),
        "{msg}"
    );
    ch.restart();
    assert_eq!(count(&ch), 1000, "the refused batch was half-stored");
    let (counts, _) = post_until_accepted(&s, &key, &b).await;
    assert_eq!(
        counts,
        (1000, 1000, 0, 0),
        "a refused batch must count as new when retried"
    );

    // Down in the middle of a stream of large batches: every batch is retried until
    // accepted; the accepted counts and the stored rows agree exactly.
    let bodies: Vec<Value> = (0..8)
        .map(|i| body("purchase", 2000 + i * 5000, 5000))
        .collect();
    let mut senders = tokio::task::JoinSet::new();
    let s = std::sync::Arc::new(s);
    for (i, b) in bodies.iter().cloned().enumerate() {
        let (s, key) = (s.clone(), key.clone());
        senders.spawn(async move {
            tokio::time::sleep(Duration::from_millis(150 * i as u64)).await;
            post_until_accepted(&s, &key, &b).await
        });
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    ch.kill();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    ch.restart();
    let (mut inserted, mut refused) = (0, 0);
    while let Some(r) = senders.join_next().await {
        let ((received, ins, dups, rejected), n503) = r.expect("sender");
        assert_eq!((received, ins + dups, rejected), (5000, 5000, 0));
        inserted += ins;
        refused += n503;
    }
    assert!(refused > 0, "the outage was not seen by any request");
    assert_eq!(
        inserted, 40_000,
        "accepted counts disagree with what was sent"
    );
    assert_eq!(
        count(&ch),
        42_000,
        "stored rows disagree with what was acknowledged"
    );

    // Everything again: all duplicates.
    for b in [&a, &b].into_iter().chain(&bodies) {
        let (received, ins, dups, _) = s.post_bearer(&key, b).await.counts();
        assert_eq!((ins, dups), (0, received));
    }
    assert_eq!(count(&ch), 42_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_waits_for_clickhouse_at_start_up_and_says_so() {
    let mut ch = ClickHouseServer::start();
    ch.kill();
    // Stand in for the server until leadstream's first try arrives, then hang up on it
    // and start the real one: the first try is sure to have failed.
    let stand_in = std::net::TcpListener::bind(("127.0.0.1", ch.port()))
        .expect("bind the stopped server's port");
    let builder = TestServer::builder()
        .env("LEADSTREAM_CLICKHOUSE_URL", ch.url())
        .env("LEADSTREAM_CLICKHOUSE_DATABASE", "ls_late");
    let (s, ()) = tokio::join!(builder.start(), async {
        let deadline = Instant::now() + Duration::from_secs(60);
        stand_in
            .set_nonblocking(true)
            .expect("non-blocking listener");
        // Accepting and dropping the connection hangs up on it.
        while stand_in.accept().is_err() {
            assert!(
                Instant::now() < deadline,
                "leadstream never tried to connect"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drop(stand_in);
        tokio::task::block_in_place(|| ch.restart());
    });
    let logs = s.logs();
    assert!(
        logs.contains("ClickHouse is unavailable") && logs.contains("LEADSTREAM_CLICKHOUSE_URL"),
        "{logs}"
    );
    let key = s.org(ORG).api_key(ORG).secret;
    assert_eq!(
        s.post_bearer(&key, &body("trial_started", 0, 10))
            .await
            .counts(),
        (10, 10, 0, 0)
    );
    assert_eq!(
        ch.count("SELECT count() FROM ls_late.lead_events FINAL"),
        10
    );
}

/// Events of leads of several orgs, spread over the raw partitions.
fn spread_events() -> Vec<(i64, Phone, i64, Probe)> {
    (0..600u64)
        .map(|k| {
            let org = 40 + (k % 3) as i64;
            let phone = Phone(13_125_550_000 + k % 200);
            let at = 1_777_593_600_000_000 + k as i64 * 1_000_000;
            let key = EventKey {
                org,
                phone,
                event_type: "t",
                occurred_at_us: at,
            };
            (
                org,
                phone,
                at,
                Probe {
                    fingerprint: key.fingerprint(),
                    lead: key.lead_hash(),
                },
            )
        })
        .collect()
}

fn append_spread(store: &mut ClickHouseStore, rows: &[(i64, Phone, i64, Probe)]) {
    let stored: Vec<StoredEvent<'_>> = rows
        .iter()
        .map(|&(org, phone, occurred_at_us, probe)| StoredEvent {
            org,
            event_type: "t",
            phone,
            occurred_at_us,
            metadata: None,
            probe,
        })
        .collect();
    store.append(&stored, 1).expect("append");
}

#[test]
fn scan_partitions_returns_exactly_the_keys_of_the_leads_of_those_partitions() {
    let ch = ClickHouseServer::start();
    let mut store = ClickHouseStore::connect(&config(&ch.url(), "ls_parts")).expect("connect");
    let rows = spread_events();
    append_spread(&mut store, &rows);
    // A row from before the `lead_hash` column (its default 0), of a lead whose real
    // partition of 4 is 3: found by partition 3 only.
    let phone = (0..)
        .map(|i| Phone(14_155_550_000 + i))
        .find(|p| lead_hash(7, *p) % 4 == 3)
        .unwrap();
    ch.query(&format!(
        "INSERT INTO ls_parts.lead_events (organization_id, event_type, phone_e164, occurred_at_us, metadata, ingested_at, fp_hi, fp_lo, lead_hash) \
         VALUES (7, 'old', '+{}', 5, '', 1, 11, 12, 0)",
        phone.0
    ));
    let old = Fingerprint::from_halves(11, 12);

    for n in [1, 3, 4, 7] {
        let mut union = HashSet::new();
        for p in 0..n {
            let mut got = HashSet::new();
            let count = store
                .scan_partitions(&[p], n, &mut |r| {
                    assert!(got.insert(r.fingerprint), "a key twice")
                })
                .expect("scan partitions");
            let mut want: HashSet<Fingerprint> = rows
                .iter()
                .filter(|r| lead_hash(r.0, r.1) % n as u64 == p as u64)
                .map(|r| r.3.fingerprint)
                .collect();
            if lead_hash(7, phone) % n as u64 == p as u64 {
                want.insert(old);
            }
            assert!(
                !want.is_empty() || n == 7,
                "partition {p} of {n} has no leads: a weak test"
            );
            assert_eq!(count as usize, got.len());
            assert_eq!(got, want, "partition {p} of {n}");
            union.extend(got);
        }
        assert_eq!(
            union.len(),
            rows.len() + 1,
            "the partitions of {n} cover every key once"
        );
    }
    // Several partitions at once; none asked, none read.
    let mut got = HashSet::new();
    store
        .scan_partitions(&[0, 2], 4, &mut |r| assert!(got.insert(r.fingerprint)))
        .unwrap();
    let want: HashSet<Fingerprint> = rows
        .iter()
        .filter(|r| [0, 2].contains(&(lead_hash(r.0, r.1) % 4)))
        .map(|r| r.3.fingerprint)
        .collect();
    assert_eq!(got, want);
    assert_eq!(
        store
            .scan_partitions(&[], 4, &mut |_| panic!("no partition asked"))
            .unwrap(),
        0
    );
}

#[test]
fn the_clickhouse_warmer_loads_the_keys_of_the_assigned_partitions_only() {
    use leadstream_connectors::clickhouse::ClickHouseWarmer;
    use leadstream_connectors::kafka::PartitionWarmer;
    use leadstream_connectors::EventWriter;
    use leadstream_pipeline::{Prepared, Row};

    let ch = ClickHouseServer::start();
    let cfg = config(&ch.url(), "ls_warm");
    // What other processes stored.
    let rows = spread_events();
    append_spread(&mut ClickHouseStore::connect(&cfg).expect("connect"), &rows);

    // A fresh process: an empty embedded store, so its start-up warm-up loads nothing.
    let dir = tempfile::tempdir().unwrap();
    let writer = EventWriter::start(dir.path(), 16, cfg_retry()).expect("writer");
    let t = Instant::now();
    while !writer.is_ready() {
        assert!(t.elapsed() < Duration::from_secs(10), "writer not ready");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(writer.dedup_index().is_empty());
    let warmer = ClickHouseWarmer::new(
        ClickHouseStore::connect(&cfg).expect("second connection"),
        writer.clone(),
        cfg_retry(),
    );
    let (p, n) = (1, 3);
    warmer.warm(&[p], n);
    let mine = |r: &(i64, Phone, i64, Probe)| lead_hash(r.0, r.1) % n as u64 == p as u64;
    let expected = rows.iter().filter(|r| mine(r)).count();
    assert!(expected > 0 && expected < rows.len());
    assert_eq!(writer.dedup_index().len(), expected);
    for r in &rows {
        assert_eq!(writer.dedup_index().contains(r.3), mine(r), "{r:?}");
        assert_eq!(
            writer
                .event_index()
                .occurrences(r.0, "t", r.1)
                .contains(&r.2),
            mine(r),
            "{r:?}"
        );
    }
    // Revoked: its leads leave the event index (the other partitions' were never in).
    warmer.revoked(&[p], n);
    assert!(rows
        .iter()
        .all(|r| writer.event_index().occurrences(r.0, "t", r.1).is_empty()));
    // Warming again (a partition assigned back) restores it; the dedup index is a set.
    warmer.warm(&[p], n);
    assert_eq!(writer.dedup_index().len(), expected);
    for r in rows.iter().filter(|r| mine(r)) {
        assert!(writer
            .event_index()
            .occurrences(r.0, "t", r.1)
            .contains(&r.2));
    }

    // Storing all of them again: the warmed ones are duplicates, the rest new.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (mut inserted, mut duplicates) = (0, 0);
    for org in 40..43 {
        let group: Vec<Row> = rows
            .iter()
            .filter(|r| r.0 == org)
            .map(|r| Row {
                phone: r.1,
                occurred_at_us: r.2,
                metadata: None,
                probe: r.3,
            })
            .collect();
        let batch = Prepared {
            org,
            event_type: "t".into(),
            received: group.len(),
            rows: group,
            rejected: 0,
            rejects: Vec::new(),
        };
        let s = rt.block_on(writer.store(batch)).expect("store");
        inserted += s.inserted;
        duplicates += s.duplicates;
    }
    assert_eq!((inserted, duplicates), (rows.len() - expected, expected));
}

/// A table of the millisecond version (column `occurred_at`) is refused, saying what
/// to do; `schema::legacy_export_sql` turns its events into raw records that the
/// parser reads back to the same events, at microsecond keys.
#[test]
fn a_millisecond_table_is_refused_and_its_events_export_as_raw_records() {
    use leadstream_connectors::clickhouse::schema;
    use leadstream_pipeline::{Parser, PhoneNormalizer, Preparer};

    let ch = ClickHouseServer::start();
    ch.query("CREATE DATABASE ls_ms");
    ch.query(
        "CREATE TABLE ls_ms.lead_events (organization_id Int64, event_type String, phone_e164 String, occurred_at Int64, \
         metadata String, ingested_at Int64, fp_hi Int64, fp_lo Int64, lead_hash UInt64) \
         ENGINE = ReplacingMergeTree(ingested_at) ORDER BY (organization_id, event_type, phone_e164, occurred_at)",
    );
    ch.query(
        "INSERT INTO ls_ms.lead_events VALUES (42, 'we\\\"b\\\\x', '+15551234567', 1778610840007, '{\"a\":[1]}', 1, 2, 3, 4), \
         (42, 't', '+15551234568', 1778610840000, '', 1, 2, 3, 4)",
    );
    let e = ClickHouseStore::connect(&config(&ch.url(), "ls_ms")).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, StoreError::Open { .. }), "{e:?}");
    assert!(
        msg.contains("milliseconds")
            && msg.contains("clickhouse.database")
            && msg.contains("ls_ms"),
        "{msg}"
    );
    assert_eq!(
        ch.query("SELECT count() FROM ls_ms.lead_events"),
        "2",
        "the refused table is left as it was"
    );

    let out = ch.query(&schema::legacy_export_sql("ls_ms"));
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    assert_eq!(lines.len(), 2, "{out}");
    let ingest = Preparer::new(PhoneNormalizer::new());
    let mut parser = Parser::new();
    let mut read = |line: &str| {
        let raw = parser
            .parse_record(line.as_bytes())
            .unwrap_or_else(|e| panic!("{line}: {e}"))
            .into_batch();
        let p = ingest
            .prepare(raw)
            .unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!((p.org, p.rejected), (42, 0), "{line}");
        (
            p.event_type,
            p.rows[0].phone,
            p.rows[0].occurred_at_us,
            p.rows[0].metadata.clone(),
        )
    };
    assert_eq!(
        read(lines[0]),
        (
            "t".to_string(),
            Phone(15551234568),
            1_778_610_840_000_000,
            None
        )
    );
    assert_eq!(
        read(lines[1]),
        (
            "we\"b\\x".to_string(),
            Phone(15551234567),
            1_778_610_840_007_000,
            Some("{\"a\":[1]}".into())
        )
    );
}
