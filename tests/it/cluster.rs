//! Three `serve` processes on one Postgres, one ClickHouse and one Kafka bootstrap
//! address (librdkafka's mock cluster, listening on TCP), each with its own data dir,
//! and a client that spreads its requests across them: one scenario through keys,
//! endpoints, publishing, the delivery log, a campaign send, opt-outs, WhatsApp
//! messages with a short inactivity timer and triggers, then `kill -9` of the process
//! materializing a large send.

use crate::api::Api;
use crate::receiver::{Receiver, Step};
use crate::support::{Call, CliOutput, Key, TestServer};
use crate::support_clickhouse::ClickHouseServer;
use crate::support_kafka::KafkaMock;
use crate::whatsapp::{message, now_secs, signed, SECRET};
use leadstream_connectors::db::testing::TestPostgres;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

const ORG: i64 = 21;
const LEADS: u32 = 20_000;

fn admin(url: &str, args: &[&str]) -> CliOutput {
    let dir = tempfile::tempdir().unwrap();
    let mut all = vec!["--database-url", url];
    all.extend_from_slice(args);
    crate::support::leadstream(dir.path(), all)
}

async fn until<T>(what: &str, within: Duration, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The lead a campaign delivery names, from its body.
fn phone_of(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap();
    v["phoneE164"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn three_processes_answer_alike_and_one_killed_mid_send_loses_and_repeats_nothing() {
    let pg = TestPostgres::start();
    let url = pg.new_database();
    let ch = ClickHouseServer::start();
    let kafka = KafkaMock::start(3);
    let rx = Receiver::start().await;
    let mut servers = Vec::new();
    for _ in 0..3 {
        servers.push(
            kafka
                .server()
                .env("LEADSTREAM_DATABASE_URL", &url)
                .env("LEADSTREAM_DATABASE_LEASE", "3s")
                .env("LEADSTREAM_CLICKHOUSE_URL", ch.url())
                .env("LEADSTREAM_CLICKHOUSE_DATABASE", "cluster")
                .env("LEADSTREAM_DELIVERY_ALLOW_PRIVATE_TARGETS", "true")
                .env("LEADSTREAM_CONVERSATION_INACTIVE_AFTER", "2s")
                .start()
                .await,
        );
    }
    admin(
        &url,
        &[
            "org",
            "create",
            "--id",
            &ORG.to_string(),
            "--name",
            "cluster",
        ],
    )
    .ok();
    let key =
        Key::parse(&admin(&url, &["api-key", "create", "--org", &ORG.to_string()]).ok()).secret;
    // The client spreads its requests: call n goes to process n mod 3.
    let api = |n: usize| Api {
        s: &servers[n % servers.len()],
        key: key.clone(),
    };

    // Endpoints and publishing: made on 0, published on 1, logged on 2.
    let hook = rx.script("hook", vec![Step::Status(200)]);
    let endpoint = api(0).endpoint(&hook).await;
    let r = api(1)
        .post(
            "/api/v1/outbound-events",
            &json!({"eventType": "ping", "payload": {"n": 1}}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let event = r.body["id"].as_str().unwrap().to_owned();
    let delivered = until("the ping's delivery", Duration::from_secs(30), async || {
        let log = api(2).get("/api/v1/deliveries?status=succeeded").await;
        log.body["data"]
            .as_array()
            .and_then(|d| d.iter().find(|d| d["eventId"] == event.as_str()).cloned())
    })
    .await;
    assert_eq!(delivered["endpointId"], endpoint);
    assert_eq!(rx.seen("hook").len(), 1, "delivered once");

    // Triggers: made on 2, the domain event taken on 0, the run delivered once.
    let runs = rx.script("runs", vec![Step::Status(200)]);
    let t = api(2)
        .post(
            "/api/v1/triggers",
            &json!({"type": "participant_confirmed", "name": "on confirm"}),
        )
        .await;
    assert_eq!(t.status, 201, "{}", t.body);
    let t = t.body["id"].as_i64().unwrap();
    let a = api(1)
        .post(
            &format!("/api/v1/triggers/{t}/actions"),
            &json!({"type": "webhook", "url": runs, "name": "hook"}),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let participant = crate::domain::participant();
    let domain_event = json!({"id": "evt-c1", "type": "participant_confirmed",
        "occurredAt": "2026-03-01T10:00:00Z", "participant": participant});
    for n in 0..3 {
        // The same event on every process: taken once.
        let r = api(n).post("/api/v1/events", &domain_event).await;
        assert_eq!(r.status, 202, "{}", r.body);
    }
    until("the trigger's run", Duration::from_secs(30), async || {
        (!rx.seen("runs").is_empty()).then_some(())
    })
    .await;

    // WhatsApp: the integration made on 0, messages taken on 1 and 2, the inactivity
    // timer fires once for the conversation although three processes watch it.
    let settings = rx.script("settings", vec![Step::Status(200)]);
    let r = api(0)
        .put(
            "/api/v1/organizations/current/settings",
            &json!({"webhookUrl": settings}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = api(0)
        .post(
            "/api/v1/integrations/whatsapp",
            &json!({"botIntegrationId": 77, "botId": 5, "appSecret": SECRET, "verifyToken": "vt"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    // The same message twice (WhatsApp redelivers), to two processes.
    let hi = message("wamid.C1", "16315551234", now_secs(), "hi");
    signed(&servers[1], 77, &hi).await;
    signed(&servers[2], 77, &hi).await;

    // A campaign: made on 0, its audience uploaded on 1, an opt-out on 2, its send
    // materialized by whichever process takes it, that process killed mid-send.
    let sends = rx.script("sends", vec![Step::Status(200)]);
    let c = api(0)
        .post(
            "/api/v1/campaigns",
            &json!({"name": "spring", "deliveryUrl": sends}),
        )
        .await;
    assert_eq!(c.status, 201, "{}", c.body);
    let c = c.body["id"].as_i64().unwrap();
    let mut csv = String::from("phone\n");
    for n in 0..LEADS {
        csv.push_str(&format!("+1646{:07}\n", 2_000_000 + n));
    }
    let r = api(1)
        .req(
            reqwest::Method::POST,
            &format!("/api/v1/campaigns/{c}/audience"),
        )
        .header("content-type", "text/csv")
        .body(csv)
        .reply()
        .await;
    assert_eq!(r.body["accepted"], LEADS, "{}", r.body);
    let opted_out = "+16462000007";
    let r = api(2)
        .post("/api/v1/opt-outs", &json!({"phones": [opted_out]}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let send = api(0)
        .post(
            &format!("/api/v1/campaigns/{c}/sends"),
            &json!({"scheduledFor": "2026-01-01T00:00:00Z", "templateName": "t", "language": "en"}),
        )
        .await;
    assert_eq!(send.status, 201, "{}", send.body);
    let send = send.body["id"].as_i64().unwrap();
    let r = api(1)
        .post(&format!("/api/v1/campaigns/{c}/schedule"), &json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // The timer fired once (2 s after the message), whatever process fired it.
    until(
        "conversation_inactive",
        Duration::from_secs(30),
        async || (!rx.seen("settings").is_empty()).then_some(()),
    )
    .await;

    // Kill the process holding the send as soon as it has emitted some of it.
    let holder = until(
        "a process materializing",
        Duration::from_secs(60),
        async || {
            let x = api(2)
                .get(&format!("/api/v1/campaigns/{c}/sends/{send}"))
                .await
                .body;
            let emitted = x["emitted"].as_u64().unwrap_or(0);
            (emitted > 0).then(|| {
                assert!(emitted < u64::from(LEADS), "finished before the kill: {x}");
            })?;
            let owner = pg_query(
                &url,
                &format!("SELECT lease_owner FROM sends WHERE id = {send}"),
            );
            let pid: u32 = owner.split(':').nth(1)?.parse().ok()?;
            servers.iter().position(|s| s.pid() == Some(pid))
        },
    )
    .await;
    servers[holder].kill9();
    let alive: Vec<&TestServer> = servers.iter().filter(|s| s.pid().is_some()).collect();
    assert_eq!(alive.len(), 2);
    let survivor = Api {
        s: alive[0],
        key: key.clone(),
    };
    until(
        "the rest of the send",
        Duration::from_secs(180),
        async || {
            let x = survivor
                .get(&format!("/api/v1/campaigns/{c}/sends/{send}"))
                .await
                .body;
            (x["emitted"] == LEADS - 1).then_some(())
        },
    )
    .await;
    // Every eligible lead delivered, none under two webhook-ids, the opted-out one
    // never.
    let all = until(
        "every lead's delivery",
        Duration::from_secs(180),
        async || {
            let seen = rx.seen("sends");
            let phones: HashSet<String> = seen.iter().map(|r| phone_of(&r.body)).collect();
            (phones.len() == (LEADS - 1) as usize).then_some(seen)
        },
    )
    .await;
    let mut ids: HashMap<String, HashSet<String>> = HashMap::new();
    for r in &all {
        ids.entry(phone_of(&r.body))
            .or_default()
            .insert(r.header("webhook-id").to_owned());
    }
    assert!(!ids.contains_key(opted_out), "an opted-out lead was sent");
    let twice: Vec<_> = ids.iter().filter(|(_, i)| i.len() > 1).collect();
    assert!(twice.is_empty(), "leads under two webhook-ids: {twice:?}");
    // And the timer never fired again, nor the trigger's run.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        rx.seen("settings").len(),
        1,
        "conversation_inactive fired twice"
    );
    assert_eq!(rx.seen("runs").len(), 1, "the trigger ran twice");
}

/// One value from the shared database, by `psql`.
fn pg_query(url: &str, sql: &str) -> String {
    let out = std::process::Command::new("psql")
        .args([url, "-tAc", sql])
        .output()
        .expect("psql");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
