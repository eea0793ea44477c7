//! `POST /api/v1/webhooks/lead-events`: the seed's real-time example, per-row rejects,
//! idempotency and exact counts under concurrency.

use crate::support::{batch, lead, stored_rows, Call, TestServer};
use serde_json::{json, Value};

/// The seed's "Real-time single event (Bearer API key)" curl example, byte for byte.
const SEED_SINGLE: &str = r#"{
    "organizationId": 42,
    "eventType": "mastery_purchase",
    "events": [
      {
        "phoneE164": "+15551234567",
        "occurredAt": "2026-05-12T18:34:00Z",
        "metadata": { "orderId": "ord_9F2", "amountUsd": 297 }
      }
    ]
  }"#;

async fn server_with_key() -> (TestServer, String) {
    let s = TestServer::start().await;
    let key = s.org(42).api_key(42).secret;
    (s, key)
}

#[tokio::test]
async fn seed_real_time_single_event_is_accepted() {
    let (s, key) = server_with_key().await;
    let r = s
        .lead_events()
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(SEED_SINGLE)
        .reply()
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body,
        json!({"status":"accepted","received":1,"inserted":1,"duplicates":0,"rejected":0,"rejects":[]})
    );
}

#[tokio::test]
async fn row_problems_are_rejects_inside_a_200() {
    let (s, key) = server_with_key().await;
    let at = "2026-05-12T18:34:00Z";
    let big = "x".repeat(8 * 1024 + 10);
    let events = vec![
        json!({"phoneE164": "+15551234567", "occurredAt": at, "metadata": {"ok": true}}),
        json!({"phoneE164": "not a phone", "occurredAt": at}),
        json!({"phoneE164": "+15551234568"}),
        json!({"phoneE164": "+15551234569", "occurredAt": "yesterday"}),
        json!({"phoneE164": "+15551234570", "occurredAt": "2026-05-12 18:34"}),
        json!({"phoneE164": "+15551234571", "occurredAt": at, "metadata": [1, 2]}),
        json!({"phoneE164": "+15551234572", "occurredAt": at, "metadata": "text"}),
        json!({"phoneE164": "+15551234573", "occurredAt": at, "metadata": {"k": big}}),
        json!({"phoneE164": "+15551234574", "occurredAt": at}),
        json!(17),
    ];
    let r = s
        .post_bearer(&key, &batch(42, "trial_started", events))
        .await;
    assert_eq!(r.counts(), (10, 2, 0, 8));
    let rejects: Vec<(u64, Value, &str)> = r.body["rejects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["index"].as_u64().unwrap(),
                x["phoneE164"].clone(),
                x["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rejects,
        [
            (1, json!("not a phone"), "invalid phoneE164"),
            (2, json!("+15551234568"), "missing occurredAt"),
            (3, json!("+15551234569"), "invalid occurredAt"),
            (4, json!("+15551234570"), "invalid occurredAt"),
            (5, json!("+15551234571"), "metadata not an object"),
            (6, json!("+15551234572"), "metadata not an object"),
            (7, json!("+15551234573"), "metadata over 8 KB encoded"),
            (9, Value::Null, "event not an object"),
        ]
    );
}

#[tokio::test]
async fn metadata_may_be_8kb_once_encoded_compactly() {
    let (s, key) = server_with_key().await;
    // `{"k":"…"}` is 8 bytes plus the value: 8,184 x's make exactly 8,192 bytes.
    let fits = "x".repeat(8184);
    let over = "x".repeat(8185);
    // Whitespace as sent does not count: the cap is on the compact encoding.
    let body = format!(
        r#"{{"organizationId":42,"eventType":"m","events":[
            {{"phoneE164":"+15551234567","occurredAt":"2026-05-12T18:34:00Z","metadata":{{   "k"  :  "{fits}"   }}}},
            {{"phoneE164":"+15551234567","occurredAt":"2026-05-12T18:35:00Z","metadata":{{"k":"{over}"}}}}]}}"#
    );
    let r = s
        .lead_events()
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(body)
        .reply()
        .await;
    assert_eq!(r.counts(), (2, 1, 0, 1));
    assert_eq!(r.body["rejects"][0]["index"], 1);
    assert_eq!(r.body["rejects"][0]["reason"], "metadata over 8 KB encoded");
}

#[tokio::test]
async fn only_the_first_fifty_rejects_are_listed() {
    let (s, key) = server_with_key().await;
    let mut events: Vec<Value> = (0..120)
        .map(|i| json!({"phoneE164": format!("bad-{i}"), "occurredAt": "2026-05-12T18:34:00Z"}))
        .collect();
    events.push(lead(1));
    let r = s
        .post_bearer(&key, &batch(42, "cart_abandoned", events))
        .await;
    assert_eq!(r.counts(), (121, 1, 0, 120));
    let rejects = r.body["rejects"].as_array().unwrap();
    assert_eq!(rejects.len(), 50);
    for (i, x) in rejects.iter().enumerate() {
        assert_eq!(x["index"], i, "{x}");
        assert_eq!(x["phoneE164"], format!("bad-{i}"));
        assert_eq!(x["reason"], "invalid phoneE164");
    }
}

#[tokio::test]
async fn a_key_repeated_inside_one_batch_is_inserted_once() {
    let (s, key) = server_with_key().await;
    let events = vec![lead(1), lead(2), lead(1), lead(3), lead(1), lead(2)];
    let r = s
        .post_bearer(&key, &batch(42, "webinar_attended", events))
        .await;
    assert_eq!(r.counts(), (6, 3, 3, 0));
}

#[tokio::test]
async fn other_spellings_of_one_instant_and_one_number_are_duplicates() {
    let (s, key) = server_with_key().await;
    let first = batch(
        42,
        "mastery_purchase",
        vec![json!({"phoneE164": "+15551234567", "occurredAt": "2026-05-12T18:34:00Z"})],
    );
    assert_eq!(s.post_bearer(&key, &first).await.counts(), (1, 1, 0, 0));

    let spellings = [
        ("+15551234567", "2026-05-12T13:34:00-05:00"),
        ("+15551234567", "2026-05-12T18:34:00.000Z"),
        ("+1 555-123-4567", "2026-05-12T18:34:00Z"),
        ("15551234567", "2026-05-12T20:34:00+02:00"),
    ];
    for (phone, at) in spellings {
        let b = batch(
            42,
            "mastery_purchase",
            vec![json!({"phoneE164": phone, "occurredAt": at})],
        );
        assert_eq!(
            s.post_bearer(&key, &b).await.counts(),
            (1, 0, 1, 0),
            "{phone} at {at}"
        );
    }
    // Another event type, org-scoped name: a different key.
    let other = batch(
        42,
        "webinar_attended",
        vec![json!({"phoneE164": "+15551234567", "occurredAt": "2026-05-12T18:34:00Z"})],
    );
    assert_eq!(s.post_bearer(&key, &other).await.counts(), (1, 1, 0, 0));
    assert_eq!(stored_rows(&s.data_dir()), 2);
}

#[tokio::test]
async fn reposting_a_batch_inserts_nothing() {
    let (s, key) = server_with_key().await;
    let mut events: Vec<Value> = (0..500).map(lead).collect();
    events.push(json!({"phoneE164": "12", "occurredAt": "2026-05-12T18:34:00Z"}));
    let b = batch(42, "trial_started", events);
    assert_eq!(s.post_bearer(&key, &b).await.counts(), (501, 500, 0, 1));
    for _ in 0..2 {
        let r = s.post_bearer(&key, &b).await;
        assert_eq!(r.counts(), (501, 0, 500, 1));
        assert_eq!(r.body["rejects"][0]["index"], 500);
    }
    assert_eq!(stored_rows(&s.data_dir()), 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_overlapping_batches_insert_each_key_once() {
    let (s, key) = server_with_key().await;
    // Batch i holds keys [500 i, 500 i + 1000): neighbours overlap by half; 4,500 distinct keys.
    let bodies: Vec<Value> = (0..8)
        .map(|i| {
            batch(
                42,
                "webinar_attended",
                (500 * i..500 * i + 1000).map(lead).collect(),
            )
        })
        .collect();
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(bodies.len()));
    let mut tasks = tokio::task::JoinSet::new();
    for body in bodies {
        let req = s.lead_events().bearer_auth(&key).json(&body);
        let barrier = barrier.clone();
        tasks.spawn(async move {
            barrier.wait().await;
            req.reply().await
        });
    }
    let (mut inserted, mut duplicates) = (0, 0);
    while let Some(r) = tasks.join_next().await {
        let (received, i, d, rejected) = r.unwrap().counts();
        assert_eq!((received, i + d, rejected), (1000, 1000, 0));
        inserted += i;
        duplicates += d;
    }
    assert_eq!(inserted, 4500, "every distinct key inserted exactly once");
    assert_eq!(duplicates, 8000 - 4500);
    assert_eq!(stored_rows(&s.data_dir()), 4500);
}
