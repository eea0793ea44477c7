//! Exact HTTP ingest on any of several processes (connectors/src/routing): a batch
//! POSTed to any process of the group answers the counts one process would, while
//! processes join and leave, and ClickHouse holds each key once.

use crate::support::{instant, CliOutput, Key, Reply, TestServer};
use crate::support_clickhouse::ClickHouseServer;
use crate::support_kafka::KafkaMock;
use leadstream_connectors::db::testing::TestPostgres;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::{Duration, Instant};

const ORG: i64 = 31;
const PARTITIONS: i32 = 6;
const TYPES: [&str; 2] = ["webinar_joined", "mastery_purchase"];

fn admin(url: &str, args: &[&str]) -> CliOutput {
    let dir = tempfile::tempdir().unwrap();
    let mut all = vec!["--database-url", url];
    all.extend_from_slice(args);
    crate::support::leadstream(dir.path(), all)
}

/// A small deterministic generator (xorshift64*).
struct Draw(u64);

impl Draw {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }
}

/// One stream of batches over leads no other stream uses, and the keys it stored:
/// the oracle of what one process would answer.
struct Stream {
    leads: std::ops::Range<usize>,
    draw: Draw,
    stored: HashSet<(String, &'static str, String)>,
}

struct Batch {
    body: Value,
    event_type: &'static str,
    /// (phone, instant) of each valid event, in order.
    valid: Vec<(String, String)>,
    rejected: u64,
}

impl Stream {
    fn next_batch(&mut self, n: usize) -> Batch {
        let event_type = TYPES[self.draw.below(TYPES.len())];
        let mut events = Vec::with_capacity(n);
        let mut valid = Vec::new();
        let mut rejected = 0;
        for _ in 0..n {
            if self.draw.below(50) == 0 {
                events.push(json!({"phoneE164": "not-a-phone", "occurredAt": instant(1)}));
                rejected += 1;
                continue;
            }
            let lead = self.leads.start + self.draw.below(self.leads.len());
            let phone = format!("+1212555{lead:04}");
            // Few instants per lead: keys repeat across batches and within one.
            let at = instant(self.draw.below(4) * 60);
            events.push(json!({"phoneE164": phone, "occurredAt": at}));
            valid.push((phone, at));
        }
        Batch {
            body: json!({"organizationId": ORG, "eventType": event_type, "events": events}),
            event_type,
            valid,
            rejected,
        }
    }

    /// The (inserted, duplicates) one process answers, recording the new keys.
    fn expect(&mut self, b: &Batch) -> (u64, u64) {
        let mut inserted = 0;
        for (phone, at) in &b.valid {
            if self
                .stored
                .insert((phone.clone(), b.event_type, at.clone()))
            {
                inserted += 1;
            }
        }
        (inserted, b.valid.len() as u64 - inserted)
    }
}

/// Posts `body` to the live servers starting at `first`, moving on to the next after
/// a 503 (partitions moving), until one answers something else.
async fn post(servers: &[&TestServer], first: usize, key: &str, body: &Value) -> (Reply, u32) {
    let deadline = Instant::now() + Duration::from_secs(60);
    for (refused, n) in (first..).enumerate() {
        let s = servers[n % servers.len()];
        let reply = s.post_bearer(key, body).await;
        if reply.status != 503 {
            return (reply, refused as u32);
        }
        let msg = reply.body["error"].as_str().unwrap_or_default();
        assert!(
            msg.contains("nothing from this request was stored"),
            "a 503 after part of the batch was stored: {msg}"
        );
        assert!(Instant::now() < deadline, "503 for a minute: {msg}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    unreachable!()
}

fn owns_partitions(s: &TestServer) -> bool {
    s.logs()
        .contains("HTTP parts of these raw partitions are stored here now")
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Two streams of batches (concurrent, over disjoint leads so each has its own
/// oracle) sent round-robin to the processes of a group: two at first, a third joins
/// half-way through, and the first is stopped with SIGTERM later. Every 200 answers
/// the oracle's counts; a 503 stores nothing; a batch sent again to another process
/// answers all duplicates; ClickHouse holds each key once, not merged away but
/// written once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn any_process_counts_exactly_through_a_join_and_a_leave() {
    let pg = TestPostgres::start();
    let url = pg.new_database();
    let ch = ClickHouseServer::start();
    let kafka = KafkaMock::start(PARTITIONS);
    let server = || {
        kafka
            .server()
            .env("LEADSTREAM_DATABASE_URL", &url)
            .env("LEADSTREAM_CLICKHOUSE_URL", ch.url())
            .env("LEADSTREAM_CLICKHOUSE_DATABASE", "routing")
    };
    let a = server().start().await;
    let b = server().start().await;
    admin(
        &url,
        &["org", "create", "--id", &ORG.to_string(), "--name", "r"],
    )
    .ok();
    let key =
        Key::parse(&admin(&url, &["api-key", "create", "--org", &ORG.to_string()]).ok()).secret;
    wait_for("both first processes owning partitions", || {
        owns_partitions(&a) && owns_partitions(&b)
    })
    .await;

    let mut streams = [
        Stream {
            leads: 0..1500,
            draw: Draw(0x9E37_79B9),
            stored: HashSet::new(),
        },
        Stream {
            leads: 1500..3000,
            draw: Draw(0x7F4A_7C15),
            stored: HashSet::new(),
        },
    ];
    let mut c: Option<TestServer> = None;
    let mut a = Some(a);
    let mut stopping = None;
    let mut refused = 0;
    let mut resent = 0;
    const ROUNDS: usize = 36;
    for round in 0..ROUNDS {
        if round == 12 {
            c = Some(server().start().await);
        }
        if round == 16 {
            wait_for("the third process owning partitions", || {
                owns_partitions(c.as_ref().unwrap())
            })
            .await;
        }
        if round == 24 {
            // Out of the client's rotation at once: it stops taking requests.
            let gone: TestServer = a.take().unwrap();
            gone.sigterm();
            stopping = Some(gone);
        }
        if round == 26 {
            let status = stopping.as_mut().unwrap().wait_exit();
            assert!(status.success(), "{status:?}");
        }
        let live: Vec<&TestServer> = a.iter().chain([&b]).chain(c.iter()).collect();
        let [s0, s1] = &mut streams;
        let (b0, b1) = (s0.next_batch(400), s1.next_batch(400));
        let ((r0, n0), (r1, n1)) = tokio::join!(
            post(&live, round, &key, &b0.body),
            post(&live, round + 1, &key, &b1.body)
        );
        refused += n0 + n1;
        for (stream, batch, reply) in [(s0, &b0, &r0), (s1, &b1, &r1)] {
            let (received, inserted, duplicates, rejected) = reply.counts();
            let (want_inserted, want_duplicates) = stream.expect(batch);
            assert_eq!(
                (received, inserted, duplicates, rejected),
                (400, want_inserted, want_duplicates, batch.rejected),
                "round {round}: {}",
                reply.body
            );
        }
        if round % 5 == 0 {
            // The same batch again, to another process: all duplicates.
            let (again, _) = post(&live, round + 2, &key, &b0.body).await;
            let (_, inserted, duplicates, rejected) = again.counts();
            assert_eq!(
                (inserted, duplicates + rejected),
                (0, 400),
                "{}",
                again.body
            );
            resent += 1;
        }
    }
    let keys: usize = streams.iter().map(|s| s.stored.len()).sum();
    assert!(keys > 5_000, "the streams stored {keys} keys");
    // Written once each: no FINAL, no merge relied on.
    assert_eq!(
        ch.count("SELECT count() FROM routing.lead_events"),
        keys as u64
    );
    assert_eq!(
        ch.count("SELECT count() FROM (SELECT DISTINCT organization_id, event_type, phone_e164, occurred_at_us FROM routing.lead_events)"),
        keys as u64
    );
    // Parts really went between processes.
    let c = c.unwrap();
    let mut forwarded = 0.0;
    for s in [&b, &c] {
        forwarded += metric(s, "leadstream_lead_parts_total{route=\"forwarded\"}").await;
    }
    assert!(forwarded > 0.0, "no part was handed to another process");
    eprintln!("{refused} calls answered 503 while partitions moved; {resent} batches re-sent");
}

async fn metric(s: &TestServer, series: &str) -> f64 {
    let text = s
        .client()
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// SIGTERM on a process running everything (Postgres, ClickHouse, Kafka: the raw and
/// domain-event consumers, the delivery consumer and outbox relay, the campaign
/// scheduler, the timers, retention, the listeners, the directory of partition owners)
/// with a delivery's attempt in flight: every background task ends, the attempt is
/// recorded, and the process exits well within the shutdown timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_every_background_task_of_the_full_stack() {
    let pg = TestPostgres::start();
    let url = pg.new_database();
    let ch = ClickHouseServer::start();
    let kafka = KafkaMock::start(PARTITIONS);
    let rx = crate::receiver::Receiver::start().await;
    let mut s = kafka
        .server()
        .env("LEADSTREAM_DATABASE_URL", &url)
        .env("LEADSTREAM_CLICKHOUSE_URL", ch.url())
        .env("LEADSTREAM_CLICKHOUSE_DATABASE", "stopping")
        .env("LEADSTREAM_DELIVERY_ALLOW_PRIVATE_TARGETS", "true")
        .start()
        .await;
    admin(
        &url,
        &["org", "create", "--id", &ORG.to_string(), "--name", "s"],
    )
    .ok();
    let key =
        Key::parse(&admin(&url, &["api-key", "create", "--org", &ORG.to_string()]).ok()).secret;
    wait_for("the process owning partitions", || owns_partitions(&s)).await;
    let api = crate::api::Api {
        s: &s,
        key: key.clone(),
    };
    let hook = rx.script(
        "slow",
        vec![crate::receiver::Step::Hang(Duration::from_millis(1500))],
    );
    api.endpoint(&hook).await;
    api.publish("booked", json!({"n": 1})).await;
    let (r, _) = post(
        &[&s],
        0,
        &key,
        &json!({"organizationId": ORG, "eventType": "t",
        "events": [{"phoneE164": "+12125550100", "occurredAt": instant(5)}]}),
    )
    .await;
    assert_eq!(r.counts().1, 1);
    // The route processes hand parts over on takes nothing without the processes'
    // key: a forged part is 401, a missing signature too, and nothing is stored.
    for signature in [Some("ab".repeat(32)), None] {
        let mut req = s
            .client()
            .post(s.url("/internal/v1/lead-parts"))
            .header("content-type", "application/octet-stream")
            .body(vec![1u8, 2, 3, 4]);
        if let Some(sig) = &signature {
            req = req.header("leadstream-part-signature", sig);
        }
        let forged = req.send().await.unwrap();
        assert_eq!(forged.status(), 401, "{signature:?}");
    }
    assert_eq!(ch.count("SELECT count() FROM stopping.lead_events"), 1);
    let deadline = Instant::now() + Duration::from_secs(30);
    while rx.seen("slow").is_empty() {
        assert!(
            Instant::now() < deadline,
            "the attempt never started\n{}",
            s.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let t = Instant::now();
    s.sigterm();
    assert!(s.wait_exit().success(), "{}", s.logs());
    let took = t.elapsed();
    let logs = s.logs();
    assert!(logs.contains("every background task has ended"), "{logs}");
    assert!(!logs.contains("panicked"), "{logs}");
    assert!(took < Duration::from_secs(20), "took {took:?}\n{logs}");
    // The attempt in flight was recorded: the delivery is not pending any more.
    s.restart().await;
    let api = crate::api::Api { s: &s, key };
    let log = api.get("/api/v1/deliveries").await;
    let d = &log.body["data"][0];
    assert_eq!(d["state"], "succeeded", "{}", log.body);
    assert_eq!(d["attempts"], 1, "{}", log.body);
}
