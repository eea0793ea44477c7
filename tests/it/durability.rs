//! A 200 means durable: acknowledged rows survive `kill -9` and a graceful restart, and
//! re-POSTing them afterwards counts them as duplicates, never twice.

use crate::support::{batch, lead, read_response, stored_rows, TestServer};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const BATCHES: usize = 20;
const PER_BATCH: usize = 5_000;
/// Every 500th event has a bad phone: 10 rejects a batch.
const BAD_EVERY: usize = 500;
const VALID_PER_BATCH: u64 = (PER_BATCH - PER_BATCH / BAD_EVERY) as u64;

/// Batch `b`: 5,000 events with keys of its own, 10 of them rejects.
fn numbered_batch(b: usize) -> Value {
    let events = (b * PER_BATCH..(b + 1) * PER_BATCH)
        .map(|k| {
            if k % BAD_EVERY == 0 {
                json!({"phoneE164": "n/a", "occurredAt": "2026-05-12T18:34:00Z"})
            } else {
                lead(k)
            }
        })
        .collect();
    batch(42, "webinar_attended", events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_batches_survive_kill_9() {
    let mut s = TestServer::start().await;
    let key = s.org(42).api_key(42).secret;
    let bodies: Arc<Vec<Value>> = Arc::new((0..BATCHES).map(numbered_batch).collect());

    // Four senders, five batches each; kill -9 once some are acknowledged and others
    // are still in flight.
    let acked = Arc::new(AtomicUsize::new(0));
    let mut senders = tokio::task::JoinSet::new();
    for t in 0..4 {
        let (client, url, key, bodies, acked) = (
            s.client().clone(),
            s.url("/api/v1/webhooks/lead-events"),
            key.clone(),
            bodies.clone(),
            acked.clone(),
        );
        senders.spawn(async move {
            let mut outcomes = Vec::new();
            for b in (t..BATCHES).step_by(4) {
                let r = client
                    .post(&url)
                    .bearer_auth(&key)
                    .json(&bodies[b])
                    .send()
                    .await;
                let ok = match r {
                    Ok(r) if r.status() == 200 => r.json::<Value>().await.ok(),
                    _ => None,
                };
                if ok.is_some() {
                    acked.fetch_add(1, Ordering::SeqCst);
                }
                outcomes.push((b, ok));
            }
            outcomes
        });
    }
    while acked.load(Ordering::SeqCst) < BATCHES / 2 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    s.kill9();

    let mut acks: Vec<(usize, Value)> = Vec::new();
    let mut unacked = Vec::new();
    while let Some(outcomes) = senders.join_next().await {
        for (b, ok) in outcomes.unwrap() {
            match ok {
                Some(body) => acks.push((b, body)),
                None => unacked.push(b),
            }
        }
    }
    assert!(acks.len() >= BATCHES / 2);
    let mut acked_inserted = 0;
    for (b, body) in &acks {
        assert_eq!(body["inserted"], VALID_PER_BATCH, "batch {b}: {body}");
        acked_inserted += VALID_PER_BATCH;
    }

    // What is on disk after the crash: every acknowledged row, and whole batches only.
    let on_disk = stored_rows(&s.data_dir());
    assert!(
        on_disk >= acked_inserted,
        "lost acknowledged rows: {on_disk} on disk, {acked_inserted} acknowledged"
    );
    assert_eq!(
        on_disk % VALID_PER_BATCH,
        0,
        "a batch was stored in part: {on_disk} rows"
    );

    s.restart().await;
    for (b, _) in &acks {
        let r = s.post_bearer(&key, &bodies[*b]).await;
        assert_eq!(
            r.counts(),
            (PER_BATCH as u64, 0, VALID_PER_BATCH, 10),
            "acknowledged batch {b} after kill -9"
        );
    }
    // Batches that got no answer may or may not have been stored, but only once.
    let mut late_inserted = 0;
    for b in &unacked {
        let (_, inserted, duplicates, _) = s.post_bearer(&key, &bodies[*b]).await.counts();
        assert!(
            inserted == 0 || inserted == VALID_PER_BATCH,
            "batch {b} stored in part: {inserted} new"
        );
        assert_eq!(inserted + duplicates, VALID_PER_BATCH);
        late_inserted += inserted;
    }
    assert_eq!(on_disk + late_inserted, BATCHES as u64 * VALID_PER_BATCH);
    assert_eq!(
        stored_rows(&s.data_dir()),
        BATCHES as u64 * VALID_PER_BATCH,
        "every key stored exactly once"
    );
}

#[tokio::test]
async fn rows_acknowledged_just_before_kill_9_are_kept() {
    let mut s = TestServer::start().await;
    let key = s.org(42).api_key(42).secret;
    let mut total = 0;
    for b in 0..5 {
        let body = batch(
            42,
            "mastery_purchase",
            (b * 1000..(b + 1) * 1000).map(lead).collect(),
        );
        total += s.post_bearer(&key, &body).await.counts().1;
    }
    s.kill9();
    assert_eq!(stored_rows(&s.data_dir()), total);
    s.restart().await;
    let all = batch(42, "mastery_purchase", (0..5000).map(lead).collect());
    assert_eq!(s.post_bearer(&key, &all).await.counts(), (5000, 0, 5000, 0));
}

#[tokio::test]
async fn dedup_holds_across_a_graceful_restart() {
    let mut s = TestServer::start().await;
    let key = s.org(42).api_key(42).secret;
    let body = batch(42, "trial_started", (0..2000).map(lead).collect());
    assert_eq!(
        s.post_bearer(&key, &body).await.counts(),
        (2000, 2000, 0, 0)
    );

    let status = s.stop();
    assert!(
        status.success(),
        "SIGTERM should end the server cleanly, got {status}"
    );
    s.restart().await;

    assert_eq!(
        s.post_bearer(&key, &body).await.counts(),
        (2000, 0, 2000, 0)
    );
    // The same instants spelled in another offset are still the same keys.
    let shifted: Vec<Value> = (0..10)
        .map(|k| {
            let mut e = lead(k);
            let utc = e["occurredAt"].as_str().unwrap().to_owned();
            e["occurredAt"] = json!(at_plus_two(&utc));
            e
        })
        .collect();
    assert_eq!(
        s.post_bearer(&key, &batch(42, "trial_started", shifted))
            .await
            .counts(),
        (10, 0, 10, 0)
    );
    assert_eq!(stored_rows(&s.data_dir()), 2000);
}

#[tokio::test]
async fn sigterm_lets_a_request_in_flight_finish() {
    use tokio::io::AsyncWriteExt;
    let mut s = TestServer::start().await;
    let key = s.org(42).api_key(42).secret;
    let body = batch(42, "trial_started", (0..1000).map(lead).collect()).to_string();
    let head = format!(
        "POST /api/v1/webhooks/lead-events HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        s.addr(),
        body.len()
    );
    let mut conn = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
    let (sent_first, rest) = body.as_bytes().split_at(body.len() / 2);
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(sent_first).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    s.sigterm();
    tokio::time::sleep(Duration::from_millis(200)).await;
    conn.write_all(rest)
        .await
        .expect("the server stopped reading a request in flight");
    let r = tokio::time::timeout(Duration::from_secs(15), read_response(&mut conn))
        .await
        .expect("no answer after SIGTERM");
    assert_eq!(r.counts(), (1000, 1000, 0, 0));
    let status = s.wait_exit();
    assert!(
        status.success(),
        "SIGTERM should end the server cleanly, got {status}"
    );

    assert_eq!(stored_rows(&s.data_dir()), 1000);
    s.restart().await;
    let again: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        s.post_bearer(&key, &again).await.counts(),
        (1000, 0, 1000, 0)
    );
}

/// `…Thh:mm:ssZ` as the same instant at `+02:00` (hh below 22, so the date stays).
fn at_plus_two(utc: &str) -> String {
    let (date, rest) = utc.split_once('T').unwrap();
    let h: u32 = rest[..2].parse().unwrap();
    assert!(h < 22);
    format!("{date}T{:02}{}+02:00", h + 2, &rest[2..rest.len() - 1])
}
