//! The Kafka backend against librdkafka's mock cluster ([`KafkaMock`]): the real
//! `leadstream serve` consumes the raw topic into its embedded store.
//!
//! Each test has its own cluster; records are produced before or while the server
//! runs, and "done" means the group committed every raw partition to its end.

use crate::support::{batch, instant, lead, stored_rows};
use crate::support_clickhouse::ClickHouseServer;
use crate::support_kafka::{KafkaMock, REJECTS};
use leadstream_connectors::clickhouse::schema;
use leadstream_connectors::kafka::{dlq, lead_key, partition_for, DeadLetter};
use leadstream_pipeline::Phone;
use rdkafka::message::Message;
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

const ORG: i64 = 42;
const TYPE: &str = "webinar_attended";
const DONE_WITHIN: Duration = Duration::from_secs(45);

/// The `k`-th lead's phone, as [`lead`] spells it.
fn phone(k: usize) -> Phone {
    Phone(12125550000 + (k % 10_000) as u64)
}

/// A per-event record of the `k`-th event of [`lead`].
fn per_event(k: usize) -> Value {
    let mut e = lead(k);
    e["organizationId"] = ORG.into();
    e["eventType"] = TYPE.into();
    e
}

/// The same key as [`per_event`], spelled differently.
fn respelled(k: usize) -> Value {
    let digits = format!("{:04}", k % 10_000);
    json!({"organizationId": ORG, "eventType": TYPE, "phoneE164": format!("+1 (212) 555-{digits}"),
           "occurredAt": instant(k).replace('Z', "+00:00")})
}

fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

/// Produces [`per_event`] `k` to its lead's partition, keyed by lead, as a well-behaved producer does.
async fn produce_keyed(kafka: &KafkaMock, k: usize) -> i64 {
    let p = partition_for(ORG, phone(k), kafka.raw_partitions());
    kafka
        .produce(p, Some(&lead_key(ORG, phone(k))), &bytes(&per_event(k)))
        .await
}

/// `(rows, distinct fingerprints)` in `<data dir>/events.db`.
fn rows_and_distinct(data_dir: &Path) -> (u64, u64) {
    let conn = rusqlite::Connection::open(data_dir.join("events.db")).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    let distinct: u64 = conn
        .query_row(
            "SELECT count(*) FROM (SELECT DISTINCT fp_hi, fp_lo FROM lead_events)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    (stored_rows(data_dir), distinct)
}

/// `(organization_id, phone)` of every stored row.
fn stored_leads(data_dir: &Path) -> Vec<(i64, Phone)> {
    let conn = rusqlite::Connection::open(data_dir.join("events.db")).unwrap();
    let mut st = conn
        .prepare("SELECT organization_id, phone_e164 FROM lead_events")
        .unwrap();
    st.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
        .unwrap()
        .map(|r| {
            let (org, p) = r.unwrap();
            (org, p.parse::<Phone>().unwrap())
        })
        .collect()
}

fn dead_letters(kafka: &KafkaMock, n: usize) -> Vec<DeadLetter> {
    kafka
        .read(REJECTS, 2, n, Duration::from_secs(10))
        .iter()
        .map(|m| {
            serde_json::from_slice(m.payload().unwrap())
                .unwrap_or_else(|e| panic!("dead letter {e}: {:?}", m.payload()))
        })
        .collect()
}

/// Both shapes, produced before the server starts (a new group reads from the
/// beginning), keyed or not, with repeats: every key stored once, and HTTP sees them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_event_and_batch_records_are_stored_once() {
    let kafka = KafkaMock::start(3);
    for k in 0..40 {
        produce_keyed(&kafka, k).await;
    }
    // The first ten again, spelled differently, unkeyed, all on partition 0.
    for k in 0..10 {
        kafka.produce(0, None, &bytes(&respelled(k))).await;
    }
    // Two batch records: events 30..60 and 50..80 (10 overlap the per-event ones, 10 each other).
    kafka
        .produce(
            1,
            None,
            &bytes(&batch(ORG, TYPE, (30..60).map(lead).collect())),
        )
        .await;
    kafka
        .produce(
            2,
            Some("anything"),
            &bytes(&batch(ORG, TYPE, (50..80).map(lead).collect())),
        )
        .await;

    let s = kafka.server().start().await;
    kafka.wait_all_committed(&[&s], DONE_WITHIN).await;
    assert_eq!(rows_and_distinct(&s.data_dir()), (80, 80), "{}", s.logs());

    // One dedup index for both ways in: re-POSTing over HTTP finds them all.
    let key = s.org(ORG).api_key(ORG).secret;
    let r = s
        .post_bearer(&key, &batch(ORG, TYPE, (0..80).map(lead).collect()))
        .await;
    assert_eq!(r.counts(), (80, 0, 80, 0));
    // And events that came over HTTP are duplicates when they arrive over Kafka.
    let r = s
        .post_bearer(&key, &batch(ORG, TYPE, (80..90).map(lead).collect()))
        .await;
    assert_eq!(r.counts(), (10, 10, 0, 0));
    for k in 80..95 {
        produce_keyed(&kafka, k).await;
    }
    kafka.wait_all_committed(&[&s], DONE_WITHIN).await;
    assert_eq!(rows_and_distinct(&s.data_dir()), (95, 95));
    // SIGTERM: the consumer leaves the group and the process exits cleanly.
    let mut s = s;
    assert!(s.stop().success(), "{}", s.logs());
}

/// Rejected rows, invalid and unparseable records: each one dead letter with the
/// reason, its source topic/partition/offset and the original bytes; the good rows
/// of the same records are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rows_and_bad_records_are_dead_lettered_with_their_source() {
    let kafka = KafkaMock::start(2);
    let mut events: Vec<Value> = (0..5).map(lead).collect();
    events[1]["phoneE164"] = "n/a".into();
    events[3]["metadata"] = json!([1]);
    let batch_record = bytes(&batch(ORG, TYPE, events.clone()));
    let at_batch = kafka.produce(0, None, &batch_record).await;
    let mut late = per_event(10);
    late["occurredAt"] = "yesterday".into();
    let at_late = kafka.produce(0, None, &bytes(&late)).await;
    let at_text = kafka.produce(1, None, b"not json").await;
    let binary = [0xff, 0xfe, 0x00, b'{'];
    let at_binary = kafka.produce(1, None, &binary).await;
    let orgless =
        br#"{"eventType":"t","phoneE164":"+12125550001","occurredAt":"2026-05-01T00:00:00Z"}"#;
    let at_orgless = kafka.produce(1, None, orgless).await;

    let s = kafka.server().start().await;
    kafka.wait_all_committed(&[&s], DONE_WITHIN).await;
    assert_eq!(stored_rows(&s.data_dir()), 3, "{}", s.logs());

    let mut got = dead_letters(&kafka, 6);
    assert_eq!(got.len(), 6, "{got:#?}");
    got.sort_by_key(|d| {
        (
            d.source.partition,
            d.source.offset,
            matches!(d.kind, dlq::Kind::RejectedRow { index, .. } if index == 3),
        )
    });
    let row = |i: usize| serde_json::to_string(&events[i]).unwrap();
    let want: [(i32, i64, &str, &str, Vec<u8>); 6] = [
        (
            0,
            at_batch,
            "rejected_row 1",
            "invalid phoneE164",
            row(1).into_bytes(),
        ),
        (
            0,
            at_batch,
            "rejected_row 3",
            "metadata not an object",
            row(3).into_bytes(),
        ),
        (
            0,
            at_late,
            "rejected_row 0",
            "invalid occurredAt",
            bytes(&late),
        ),
        (1, at_text, "unparseable_record", "", b"not json".to_vec()),
        (1, at_binary, "unparseable_record", "", binary.to_vec()),
        (
            1,
            at_orgless,
            "invalid_record",
            "missing field organizationId",
            orgless.to_vec(),
        ),
    ];
    for (d, (partition, offset, kind, reason, original)) in got.iter().zip(want) {
        assert_eq!(
            (d.source.topic.as_str(), d.source.partition, d.source.offset),
            ("leadstream.raw", partition, offset),
            "{d:?}"
        );
        let k = match &d.kind {
            dlq::Kind::RejectedRow {
                organization_id,
                event_type,
                index,
            } => {
                assert_eq!((*organization_id, event_type.as_str()), (ORG, TYPE));
                format!("rejected_row {index}")
            }
            dlq::Kind::UnparseableRecord => "unparseable_record".into(),
            dlq::Kind::InvalidRecord { .. } => "invalid_record".into(),
            dlq::Kind::RefusedByStore { .. } => "refused_by_store".into(),
        };
        assert_eq!(k, kind);
        assert!(!d.reason.is_empty() && d.reason.contains(reason), "{d:?}");
        assert_eq!(d.original_bytes().unwrap(), original, "{d:?}");
    }
    assert_eq!(got[4].original_encoding, dlq::Encoding::Base64);
}

/// The crash test: the process aborts right after a batch is durable in the store and
/// before its offsets are committed (failpoint `kafka-after-store`). After a restart
/// the records are read again: everything produced is stored exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_store_and_commit_loses_nothing_and_stores_nothing_twice() {
    let kafka = KafkaMock::start(4);
    // 1,500 per-event records keyed by lead, then 6 batch records of 300 events with
    // every 100th a bad row and every 10th repeating a per-event key.
    for k in 0..1_500 {
        produce_keyed(&kafka, k).await;
    }
    let mut bad = 0;
    for b in 0..6 {
        let events: Vec<Value> = (0..300)
            .map(|i| match i {
                i if i % 100 == 0 => {
                    bad += 1;
                    json!({"phoneE164": "n/a", "occurredAt": instant(0)})
                }
                i if i % 10 == 0 => lead((b * 300 + i) % 1_500),
                i => lead(1_500 + b * 300 + i),
            })
            .collect();
        kafka
            .produce(b as i32 % 4, None, &bytes(&batch(ORG, TYPE, events)))
            .await;
    }
    let unique = 1_500 + 6 * (300 - 30) as u64;

    let mut s = kafka
        .server()
        .env("LEADSTREAM_FAILPOINT", "kafka-after-store")
        .start()
        .await;
    let status = s.wait_exit();
    assert!(
        !status.success(),
        "expected the failpoint's abort, got {status}\n{}",
        s.logs()
    );
    assert!(
        s.logs().contains("failpoint kafka-after-store"),
        "{}",
        s.logs()
    );
    let (stored_before, _) = rows_and_distinct(&s.data_dir());
    assert!(
        stored_before > 0,
        "the first batch was not stored before the crash"
    );
    assert!(
        kafka.committed().iter().all(Option::is_none),
        "committed before the crash: {:?}",
        kafka.committed()
    );

    s.remove_env("LEADSTREAM_FAILPOINT");
    s.restart().await;
    kafka.wait_all_committed(&[&s], DONE_WITHIN).await;
    assert_eq!(
        rows_and_distinct(&s.data_dir()),
        (unique, unique),
        "{}",
        s.logs()
    );
    // The crash came before the dead letters were produced: they are there once.
    assert_eq!(dead_letters(&kafka, bad).len(), bad);
}

/// While the store cannot write, nothing is committed; once it can, the same records
/// are stored and committed. The store is made to fail by holding SQLite's write lock
/// from the test (the writer gives up after its 5 s busy timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_are_not_committed_while_the_store_fails() {
    let kafka = KafkaMock::start(2);
    let s = kafka.server().start().await;
    let lock = rusqlite::Connection::open(s.data_dir().join("events.db")).unwrap();
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();
    for k in 0..200 {
        produce_keyed(&kafka, k).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !s.logs().contains("batch not done") {
        assert!(
            Instant::now() < deadline,
            "no failed store attempt within 30 s\n{}",
            s.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(kafka.committed(), [None, None]);
    assert_eq!(stored_rows(&s.data_dir()), 0);

    lock.execute_batch("ROLLBACK").unwrap();
    drop(lock);
    kafka.wait_all_committed(&[&s], DONE_WITHIN).await;
    assert_eq!(rows_and_distinct(&s.data_dir()), (200, 200), "{}", s.logs());
}

/// Two processes in one group, each with its own store: records read from a
/// partition whose leads belong to the other process's partition are re-routed there,
/// so each process stores exactly the leads of the partition it owns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_processes_each_stores_only_the_leads_of_its_partition() {
    let kafka = KafkaMock::start(2);
    let a = kafka.server().start().await;
    let b = kafka.server().start().await;
    one_partition_each(&a, &b).await;
    // Unkeyed batch records mixing leads of both partitions, one to each partition.
    kafka
        .produce(
            0,
            None,
            &bytes(&batch(ORG, TYPE, (0..40).map(lead).collect())),
        )
        .await;
    kafka
        .produce(
            1,
            None,
            &bytes(&batch(ORG, TYPE, (40..80).map(lead).collect())),
        )
        .await;
    kafka.wait_all_committed(&[&a, &b], DONE_WITHIN).await;

    let (la, lb) = (stored_leads(&a.data_dir()), stored_leads(&b.data_dir()));
    assert_eq!(la.len() + lb.len(), 80, "{}\n{}", a.logs(), b.logs());
    for (leads, owner) in [(&la, assigned(&a.logs())[0]), (&lb, assigned(&b.logs())[0])] {
        assert!(!leads.is_empty());
        assert!(
            leads
                .iter()
                .all(|(org, p)| partition_for(*org, *p, 2) == owner),
            "a lead of another partition stored by the owner of {owner}"
        );
    }
    // The re-routed events are on the raw topic too: 2 batch records + one record per moved event.
    let moved: u64 = (0..80)
        .filter(|&k| partition_for(ORG, phone(k), 2) != i32::from(k >= 40))
        .count() as u64;
    assert_eq!(
        kafka.ends("leadstream.raw", 2).iter().sum::<i64>() as u64,
        2 + moved
    );
}

/// Waits until the group has settled with one raw partition for each of `a` and `b`.
async fn one_partition_each(a: &crate::support::TestServer, b: &crate::support::TestServer) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (pa, pb) = (assigned(&a.logs()), assigned(&b.logs()));
        if pa.len() == 1 && pb.len() == 1 && pa != pb {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no one-partition-each assignment within 30 s\n{}\n{}",
            a.logs(),
            b.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Two processes in one group over one ClickHouse: each event index holds only the
/// leads of its own partition, so a campaign's eligibility is answered by ClickHouse,
/// over every lead, whichever process is asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_processes_eligibility_is_answered_over_every_lead() {
    let ch = ClickHouseServer::start();
    let kafka = KafkaMock::start(2);
    let a = with_clickhouse(&kafka, &ch, "ls_two").start().await;
    let b = with_clickhouse(&kafka, &ch, "ls_two").start().await;
    one_partition_each(&a, &b).await;
    const LEADS: usize = 40;
    for k in 0..LEADS {
        produce_keyed(&kafka, k).await;
    }
    kafka.wait_all_committed(&[&a, &b], DONE_WITHIN).await;

    let api = crate::api::Api::new(&a, ORG);
    let r = api
        .post(
            "/api/v1/campaigns",
            &json!({"name": "two", "deliveryUrl": "https://sender.example.com/sends"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let c = r.body["id"].as_i64().unwrap();
    let audience: Vec<Value> = (0..LEADS)
        .map(|k| json!({"phoneE164": phone(k).to_string()}))
        .collect();
    let r = api
        .post(&format!("/api/v1/campaigns/{c}/audience"), &json!(audience))
        .await;
    assert_eq!(r.body["accepted"], LEADS, "{}", r.body);
    let r = api
        .post(
            &format!("/api/v1/campaigns/{c}/sends"),
            &json!({"scheduledFor": "2026-06-01T00:00:00Z", "templateName": "t", "language": "en",
                    "eventFilter": {"mode": "include", "eventType": TYPE}}),
        )
        .await;
    let send = r.body["id"].as_i64().unwrap();
    // Kafka and ClickHouse configured: auto asks ClickHouse, which has every lead.
    let (all, _, used) = api.eligible_query(c, send, "engine=").await;
    assert_eq!((used.as_str(), all.len()), ("clickhouse", LEADS));
    // The process's own index holds the leads of its partition only.
    let mine = (0..LEADS)
        .filter(|&k| partition_for(ORG, phone(k), 2) == assigned(&a.logs())[0])
        .count();
    assert!(mine > 0 && mine < LEADS);
    let (own, _, used) = api.eligible_query(c, send, "engine=index").await;
    assert_eq!((used.as_str(), own.len()), ("index", mine));
}

/// The raw partitions a server's log says it owns now: the last "partitions assigned"
/// line since the last "partitions revoked".
fn assigned(logs: &str) -> Vec<i32> {
    let mut now = Vec::new();
    for line in logs.lines().map(strip_ansi) {
        if line.contains("partitions revoked") {
            now.clear();
        } else if line.contains("partitions assigned") {
            let list = line
                .split("partitions=[")
                .nth(1)
                .and_then(|r| r.split(']').next())
                .unwrap_or("");
            now.extend(list.split(',').filter_map(|p| p.trim().parse::<i32>().ok()));
        }
    }
    now
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `LEADSTREAM_CLICKHOUSE_*` for a server of `kafka` storing into `database` of `ch`.
fn with_clickhouse(
    kafka: &KafkaMock,
    ch: &ClickHouseServer,
    database: &str,
) -> crate::support::Builder {
    kafka
        .server()
        .env("LEADSTREAM_CLICKHOUSE_URL", ch.url())
        .env("LEADSTREAM_CLICKHOUSE_DATABASE", database)
}

/// A row ClickHouse refuses for good (a table whose materialized column throws on
/// `poison` in the metadata: a real server refusing a value) does not stall its
/// partition: it is dead-lettered with the server's reason, its source and its own
/// JSON; the other rows of its record and the later records are stored; the offsets
/// are committed to the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_clickhouse_refuses_for_good_is_dead_lettered_and_the_partition_goes_on() {
    let ch = ClickHouseServer::start();
    ch.query("CREATE DATABASE ls_refuse");
    ch.query(&schema::create_table("ls_refuse", false));
    ch.query("ALTER TABLE ls_refuse.lead_events ADD COLUMN refused UInt8 MATERIALIZED throwIf(position(metadata, 'poison') > 0)");
    let kafka = KafkaMock::start(2);
    // Partition 0: a batch record of 10 events, the 4th poisoned, then 5 good records.
    let mut events: Vec<Value> = (0..10).map(lead).collect();
    events[3]["metadata"] = json!({"poison": true});
    let at_batch = kafka
        .produce(0, None, &bytes(&batch(ORG, TYPE, events.clone())))
        .await;
    for k in 10..15 {
        kafka.produce(0, None, &bytes(&per_event(k))).await;
    }
    // Partition 1: a poisoned per-event record, then a good one.
    let mut poisoned = per_event(20);
    poisoned["metadata"] = json!({"poison": 1});
    let at_poisoned = kafka.produce(1, None, &bytes(&poisoned)).await;
    kafka.produce(1, None, &bytes(&per_event(21))).await;

    let s = with_clickhouse(&kafka, &ch, "ls_refuse").start().await;
    kafka.wait_all_committed(&[&s], DONE_WITHIN).await;
    assert_eq!(
        ch.count("SELECT count() FROM ls_refuse.lead_events FINAL"),
        9 + 5 + 1,
        "{}",
        s.logs()
    );
    assert_eq!(
        ch.count(
            "SELECT count() FROM ls_refuse.lead_events WHERE position(metadata, 'poison') > 0"
        ),
        0
    );

    let mut got = dead_letters(&kafka, 2);
    assert_eq!(got.len(), 2, "{got:#?}");
    got.sort_by_key(|d| d.source.partition);
    for (d, partition, offset, index, original) in [
        (
            &got[0],
            0,
            at_batch,
            3,
            serde_json::to_vec(&events[3]).unwrap(),
        ),
        (&got[1], 1, at_poisoned, 0, bytes(&poisoned)),
    ] {
        assert_eq!(
            (d.source.topic.as_str(), d.source.partition, d.source.offset),
            ("leadstream.raw", partition, offset),
            "{d:?}"
        );
        assert_eq!(
            d.kind,
            dlq::Kind::RefusedByStore {
                organization_id: ORG,
                event_type: TYPE.into(),
                index
            },
            "{d:?}"
        );
        assert!(
            d.reason.contains("refused") && d.reason.contains("throwIf"),
            "{}",
            d.reason
        );
        assert_eq!(d.original_bytes().unwrap(), original);
    }
    assert!(
        s.logs().contains("the store refused rows for good"),
        "{}",
        s.logs()
    );
}

/// ClickHouse stopped while records arrive: nothing is committed past what is stored;
/// once it is back, every record is stored exactly once and committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clickhouse_outage_stalls_the_consumer_and_nothing_is_lost_or_doubled() {
    let mut ch = ClickHouseServer::start();
    let kafka = KafkaMock::start(2);
    let s = with_clickhouse(&kafka, &ch, "ls_kafka_outage")
        .start()
        .await;
    for k in 0..300 {
        produce_keyed(&kafka, k).await;
    }
    kafka.wait_all_committed(&[&s], DONE_WITHIN).await;
    let committed_before = kafka.committed();

    ch.kill();
    for k in 300..600 {
        produce_keyed(&kafka, k).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !s.logs().contains("batch not done") {
        assert!(
            Instant::now() < deadline,
            "no failed store attempt within 30 s\n{}",
            s.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        kafka.committed(),
        committed_before,
        "committed while ClickHouse was down"
    );

    ch.restart();
    kafka.wait_all_committed(&[&s], DONE_WITHIN).await;
    assert_eq!(
        ch.count("SELECT count() FROM ls_kafka_outage.lead_events FINAL"),
        600,
        "{}",
        s.logs()
    );
    assert_eq!(
        ch.count("SELECT uniqExact(fp_hi, fp_lo) FROM ls_kafka_outage.lead_events"),
        600
    );
}
