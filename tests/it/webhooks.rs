//! The webhook delivery engine over real sockets: the registry (seed 002), settings
//! (seed 000), publishing, scripted receivers for every outcome, signatures checked
//! with the `standardwebhooks` crate, rotation, SSRF, the attempt log, kill -9.

use crate::api::Api;
use crate::receiver::{verify, Receiver, Step};
use crate::support::TestServer;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};

const ORG: i64 = 7;

/// A server whose deliveries may go to 127.0.0.1, retrying quickly.
async fn server(schedule: &str) -> TestServer {
    TestServer::builder()
        .env("LEADSTREAM_DELIVERY_ALLOW_PRIVATE_TARGETS", "true")
        .env("LEADSTREAM_DELIVERY_RETRY_SCHEDULE", schedule)
        .start()
        .await
}

fn by_endpoint(all: &[Value]) -> HashMap<i64, Value> {
    all.iter()
        .map(|d| (d["endpointId"].as_i64().unwrap(), d.clone()))
        .collect()
}

#[tokio::test]
async fn registry_follows_seed_002() {
    let s = TestServer::start().await;
    let api = Api::new(&s, ORG);
    let other = Api::new(&s, ORG + 1);

    let a = api
        .post(
            "/api/webhooks/create",
            &json!({"webhook": "https://api.example.com/events"}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let data = &a.body["data"];
    assert!(data["id"].is_i64());
    assert_eq!(data["webhook"], "https://api.example.com/events");
    let user = data["user_id"].as_str().unwrap().to_owned();
    assert!(uuid_like(&user), "{user}");
    assert!(data["created_at"].as_str().unwrap().ends_with('Z'));
    let b = api
        .post(
            "/api/webhooks/create",
            &json!({"webhook": "http://hooks.example.org/b"}),
        )
        .await;
    assert_eq!(
        b.body["data"]["user_id"],
        user.as_str(),
        "user_id is stable"
    );

    let list = api.get("/api/webhooks/get").await;
    let ids: Vec<i64> = list
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            b.body["data"]["id"].as_i64().unwrap(),
            data["id"].as_i64().unwrap()
        ],
        "newest first"
    );
    let found = api.get("/api/webhooks/get?search=example.org").await;
    assert_eq!(found.body.as_array().unwrap().len(), 1);
    assert_eq!(other.get("/api/webhooks/get").await.body, json!([]));

    for bad in [
        json!({}),
        json!({"webhook": ""}),
        json!({"webhook": "not a url"}),
        json!({"webhook": "ftp://x.example/"}),
        json!({"webhook": 5}),
    ] {
        let r = api.post("/api/webhooks/create", &bad).await;
        r.error(400);
    }
    let private = api
        .post(
            "/api/webhooks/create",
            &json!({"webhook": "http://127.0.0.1:8080/x"}),
        )
        .await;
    assert!(private.error(400).contains("private"), "{}", private.body);
    let r = s
        .client()
        .get(s.url("/api/webhooks/get"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let id = data["id"].as_i64().unwrap();
    api.delete("/api/webhooks/delete").await.error(400);
    // Seed 002's route answers another account's webhook with its documented 403.
    other
        .delete(&format!("/api/webhooks/delete?id={id}"))
        .await
        .error(403);
    api.delete("/api/webhooks/delete?id=999999")
        .await
        .error(404);
    let d = api.delete(&format!("/api/webhooks/delete?id={id}")).await;
    assert_eq!((d.status, d.body), (200, json!({"success": true})));
    api.delete(&format!("/api/webhooks/delete?id={id}"))
        .await
        .error(404);

    // The seed's four fields first, in its order.
    let raw = s
        .client()
        .post(s.url("/api/webhooks/create"))
        .bearer_auth(&api.key)
        .json(&json!({"webhook": "https://api.example.com/other"}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let at = |k: &str| raw.find(&format!("\"{k}\":")).unwrap_or(usize::MAX);
    assert!(raw.starts_with("{\"data\":{\"id\":"), "{raw}");
    assert!(
        at("id") < at("created_at")
            && at("created_at") < at("webhook")
            && at("webhook") < at("user_id")
            && at("user_id") < at("kind"),
        "{raw}"
    );
}

fn uuid_like(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.iter().map(|p| p.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
        && s.chars().all(|c| c == '-' || c.is_ascii_hexdigit())
}

#[tokio::test]
async fn patch_changes_subscriptions_and_limits_and_says_what_is_wrong() {
    let s = TestServer::start().await;
    let api = Api::new(&s, ORG);
    let id = api.endpoint("https://api.example.com/x").await;
    let path = format!("/api/webhooks/{id}");
    let r = api
        .patch(&path, &json!({"eventTypes": ["a", "b"], "description": "crm", "timeout": "10s", "maxInFlight": 4, "rateLimit": 50}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let e = api.get(&path).await.body;
    assert_eq!(e["eventTypes"], json!(["a", "b"]));
    assert_eq!(
        (
            e["timeout"].as_str(),
            e["maxInFlight"].as_i64(),
            e["rateLimit"].as_f64()
        ),
        (Some("10s"), Some(4), Some(50.0))
    );
    assert_eq!(e["description"], "crm");
    assert_eq!(e["enabled"], true);
    for (bad, field) in [
        (json!({"timeout": "31s"}), "timeout"),
        (json!({"timeout": "soon"}), "timeout"),
        (json!({"maxInFlight": 0}), "maxInFlight"),
        (json!({"rateLimit": -1}), "rateLimit"),
        (json!({"eventTypes": []}), "eventTypes"),
        (json!({"enabled": "yes"}), "enabled"),
        (json!({"colour": "red"}), "colour"),
    ] {
        let r = api.patch(&path, &bad).await;
        assert!(r.error(400).contains(field), "{bad}: {}", r.body);
    }
    assert_eq!(
        api.get(&path).await.body["timeout"],
        "10s",
        "a refused PATCH changed nothing"
    );
    let r = api
        .patch(&path, &json!({"eventTypes": null, "enabled": false}))
        .await;
    assert_eq!(
        (r.body["eventTypes"].clone(), r.body["enabled"].clone()),
        (Value::Null, json!(false))
    );
    let other = Api::new(&s, ORG + 1);
    // Every other route answers it as a missing one.
    other
        .patch(&path, &json!({"enabled": true}))
        .await
        .error(404);
    other.get(&path).await.error(404);
    api.get("/api/webhooks/424242").await.error(404);
}

#[tokio::test]
async fn every_receiver_outcome_gets_its_attempts_signed_with_one_id() {
    let rx = Receiver::start().await;
    let s = server("300ms,300ms,300ms,300ms").await;
    let api = Api::new(&s, ORG);
    let scripts: Vec<(&str, Vec<Step>)> = vec![
        ("ok", vec![Step::Status(200)]),
        ("always500", vec![Step::Status(500)]),
        (
            "flaky",
            vec![Step::Status(500), Step::Status(500), Step::Status(200)],
        ),
        ("notfound", vec![Step::Status(404)]),
        ("gone", vec![Step::Status(410)]),
        ("busy", vec![Step::RetryAfter(429, 1), Step::Status(200)]),
        (
            "moved",
            vec![Step::Redirect("http://127.0.0.1:1/elsewhere")],
        ),
        ("slow", vec![Step::Hang(Duration::from_secs(5))]),
    ];
    let mut ids = HashMap::new();
    for (name, steps) in scripts {
        let id = api.endpoint(&rx.script(name, steps)).await;
        ids.insert(name, id);
    }
    let slow = ids["slow"];
    api.patch(&format!("/api/webhooks/{slow}"), &json!({"timeout": "1s"}))
        .await;
    let payload = json!({"orderId": "ord_9F2", "amountUsd": 297, "note": "ünïcode ✓"});
    let published = api.publish("order_paid", payload.clone()).await;
    assert_eq!(published["deliveries"], 8);
    assert_eq!(published["eventType"], "order_paid");

    let all = by_endpoint(&api.settled(Duration::from_secs(40)).await);
    let expect = [
        ("ok", "succeeded", 1),
        ("always500", "failed", 5),
        ("flaky", "succeeded", 3),
        ("notfound", "failed", 1),
        ("gone", "failed", 1),
        ("busy", "succeeded", 2),
        ("moved", "failed", 1),
        ("slow", "failed", 5),
    ];
    for (name, state, attempts) in expect {
        let d = &all[&ids[name]];
        assert_eq!(
            (
                d["state"].as_str().unwrap(),
                d["attempts"].as_u64().unwrap()
            ),
            (state, attempts),
            "{name}: {d}"
        );
        let seen = rx.seen(name);
        assert_eq!(seen.len() as u64, attempts, "{name}: requests received");
        let secret = api.secret(ids[name]).await;
        for r in &seen {
            assert!(verify(&secret, r), "{name}: signature does not verify");
            assert_eq!(
                r.header("webhook-id"),
                d["id"].as_str().unwrap(),
                "{name}: one id on every attempt"
            );
            assert_eq!(r.header("content-type"), "application/json");
            assert!(r.header("user-agent").starts_with("leadstream/"));
            assert_eq!(serde_json::from_slice::<Value>(&r.body).unwrap(), payload);
        }
    }
    // The body is the payload's exact bytes, whatever the publisher's spacing.
    assert_eq!(rx.seen("ok")[0].body, serde_json::to_vec(&payload).unwrap());

    // Gaps: 300 ms ±20% between 5xx attempts; the 429's Retry-After (1 s) is honoured.
    let times: Vec<Instant> = rx.seen("always500").iter().map(|r| r.at).collect();
    for w in times.windows(2) {
        let gap = w[1] - w[0];
        assert!(
            gap >= Duration::from_millis(235) && gap < Duration::from_secs(3),
            "gap {gap:?}"
        );
    }
    let busy = rx.seen("busy");
    assert!(
        busy[1].at - busy[0].at >= Duration::from_millis(990),
        "Retry-After not honoured"
    );

    // 410 disables the endpoint, saying why; the 404 and 302 ones stay enabled.
    let gone = api
        .get(&format!("/api/webhooks/{}", ids["gone"]))
        .await
        .body;
    assert_eq!(gone["enabled"], false);
    assert!(
        gone["disabledReason"].as_str().unwrap().contains("410"),
        "{gone}"
    );
    assert_eq!(
        api.get(&format!("/api/webhooks/{}", ids["notfound"]))
            .await
            .body["enabled"],
        true
    );
    assert_eq!(
        api.get(&format!("/api/webhooks/{}", ids["moved"]))
            .await
            .body["enabled"],
        true
    );
    assert!(rx.seen("elsewhere").is_empty(), "a redirect was followed");

    // The log: every attempt with status, body and error.
    let flaky = api.detail(all[&ids["flaky"]]["id"].as_str().unwrap()).await;
    let statuses: Vec<Value> = flaky["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["responseStatus"].clone())
        .collect();
    assert_eq!(statuses, [json!(500), json!(500), json!(200)]);
    assert_eq!(flaky["attempts"][2]["responseBody"], "answer 200");
    assert_eq!(flaky["payload"], payload);
    let slow_log = api.detail(all[&slow]["id"].as_str().unwrap()).await;
    let first = &slow_log["attempts"][0];
    assert_eq!(first["responseStatus"], Value::Null);
    assert!(
        first["error"].as_str().unwrap().contains("timed out"),
        "{first}"
    );

    // A disabled endpoint gets nothing new; PATCH enabled:true brings it back.
    assert_eq!(
        api.publish("order_paid", json!({"n": 2})).await["deliveries"],
        7
    );
    api.patch(
        &format!("/api/webhooks/{}", ids["gone"]),
        &json!({"enabled": true}),
    )
    .await;
    let again = api
        .get(&format!("/api/webhooks/{}", ids["gone"]))
        .await
        .body;
    assert_eq!(
        (again["enabled"].clone(), again["disabledReason"].clone()),
        (json!(true), Value::Null)
    );
}

#[tokio::test]
async fn a_hanging_endpoint_never_delays_another() {
    let rx = Receiver::start().await;
    let s = server("10s").await;
    let api = Api::new(&s, ORG);
    let hang = api
        .endpoint(&rx.script("hang", vec![Step::Hang(Duration::from_secs(20))]))
        .await;
    api.patch(
        &format!("/api/webhooks/{hang}"),
        &json!({"timeout": "30s", "maxInFlight": 2}),
    )
    .await;
    api.endpoint(&rx.script("fast", vec![Step::Status(200)]))
        .await;
    let started = Instant::now();
    for i in 0..40 {
        api.publish("tick", json!({ "i": i })).await;
    }
    let until = Instant::now() + Duration::from_secs(10);
    while rx.seen("fast").len() < 40 {
        assert!(
            Instant::now() < until,
            "fast endpoint got {} of 40",
            rx.seen("fast").len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(
        rx.seen("hang").len(),
        2,
        "maxInFlight bounds the hanging endpoint"
    );
}

#[tokio::test]
async fn rotation_signs_with_both_secrets_during_the_grace_then_one() {
    let rx = Receiver::start().await;
    let s = TestServer::builder()
        .config("[delivery]\nallow_private_targets = true\nsecret_grace = \"2s\"\n")
        .start()
        .await;
    let api = Api::new(&s, ORG);
    let id = api
        .endpoint(&rx.script("hook", vec![Step::Status(200)]))
        .await;
    let old = api.secret(id).await;
    assert!(old.starts_with("whsec_") && old.len() >= 6 + 32, "{old}");
    let r = api
        .post(&format!("/api/webhooks/{id}/secret/rotate"), &json!({}))
        .await;
    let new = r.body["key"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert_eq!(api.secret(id).await, new);

    api.publish("a", json!({"k": 1})).await;
    api.settled(Duration::from_secs(10)).await;
    let during = rx.seen("hook").pop().unwrap();
    assert_eq!(during.header("webhook-signature").split(' ').count(), 2);
    assert!(verify(&old, &during) && verify(&new, &during));

    tokio::time::sleep(Duration::from_millis(2100)).await;
    api.publish("a", json!({"k": 2})).await;
    api.settled(Duration::from_secs(10)).await;
    let after = rx.seen("hook").pop().unwrap();
    assert_eq!(after.header("webhook-signature").split(' ').count(), 1);
    assert!(verify(&new, &after) && !verify(&old, &after));
}

#[tokio::test]
async fn private_targets_are_refused_also_behind_a_name() {
    let rx = Receiver::start().await;
    let s = TestServer::start().await;
    let api = Api::new(&s, ORG);
    for url in [
        "http://127.0.0.1/x",
        "http://[::1]/x",
        "http://10.0.0.8/x",
        "http://169.254.169.254/latest",
        "http://[::ffff:127.0.0.1]/x",
        "http://[64:ff9b:1::a00:1]/x",
        "http://[::ffff:0:7f00:1]/x",
        "http://[2001::1]/x",
        "http://192.88.99.1/x",
        "http://168.63.129.16/x",
    ] {
        let r = api
            .post("/api/webhooks/create", &json!({ "webhook": url }))
            .await;
        assert!(r.error(400).contains("private"), "{url}: {}", r.body);
    }
    // Only ports 80, 443 and 1024-65535: a host's own services are not targets.
    for url in [
        "https://hooks.example.com:22/x",
        "http://hooks.example.com:1023/x",
    ] {
        let r = api
            .post("/api/webhooks/create", &json!({ "webhook": url }))
            .await;
        assert!(
            r.error(400).contains("80, 443 or 1024"),
            "{url}: {}",
            r.body
        );
    }
    // localhost is a name: accepted, then refused when it resolves to loopback.
    let url = format!("http://localhost:{}/named", rx.port());
    api.endpoint(&url).await;
    api.publish("a", json!({})).await;
    let all = api.settled(Duration::from_secs(10)).await;
    assert_eq!(all[0]["state"], "failed");
    assert_eq!(all[0]["attempts"], 1, "a refused target is final");
    let log = api.detail(all[0]["id"].as_str().unwrap()).await;
    assert!(
        log["attempts"][0]["error"]
            .as_str()
            .unwrap()
            .contains("refused"),
        "{log}"
    );
    assert!(rx.all().is_empty(), "nothing reached the receiver");
}

#[tokio::test]
async fn publish_fans_out_by_event_type_and_idempotency_key() {
    let rx = Receiver::start().await;
    let s = server("1s").await;
    let api = Api::new(&s, ORG);
    let only_a = api.endpoint(&rx.script("a", vec![])).await;
    api.patch(
        &format!("/api/webhooks/{only_a}"),
        &json!({"eventTypes": ["booked"]}),
    )
    .await;
    api.endpoint(&rx.script("all", vec![])).await;
    Api::new(&s, ORG + 1)
        .endpoint(&rx.script("other-org", vec![]))
        .await;

    assert_eq!(
        api.publish("booked", json!({"x": 1})).await["deliveries"],
        2
    );
    assert_eq!(
        api.publish("Booked", json!({"x": 2})).await["deliveries"],
        1,
        "types are case-sensitive"
    );
    let body = json!({"eventType": "booked", "payload": {"x": 3}, "idempotencyKey": "k-1"});
    let first = api.post("/api/v1/outbound-events", &body).await;
    let again = api.post("/api/v1/outbound-events", &body).await;
    assert_eq!((first.status, again.status), (202, 202));
    assert_eq!(first.body["id"], again.body["id"]);
    assert_eq!(
        (
            first.body["deliveries"].clone(),
            again.body["deliveries"].clone()
        ),
        (json!(2), json!(0))
    );
    api.settled(Duration::from_secs(10)).await;
    assert_eq!(rx.seen("a").len(), 2);
    assert_eq!(rx.seen("all").len(), 3);
    assert!(rx.seen("other-org").is_empty());
    crate::metrics::scrape_until(
        &s,
        &[
            "leadstream_deliveries_published_total 5",
            "leadstream_deliveries_finished_total{state=\"succeeded\"} 5",
            "leadstream_delivery_attempts_total{outcome=\"2xx\"} 5",
            "leadstream_delivery_attempt_duration_seconds_count 5",
        ],
    )
    .await;

    for (bad, status) in [
        (json!({"payload": {}}), 400),
        (json!({"eventType": "x"}), 400),
        (json!({"eventType": "x", "payload": [1]}), 400),
        (json!({"eventType": "", "payload": {}}), 400),
        (
            json!({"eventType": "x", "payload": {"big": "a".repeat(300 * 1024)}}),
            413,
        ),
    ] {
        api.post("/api/v1/outbound-events", &bad)
            .await
            .error(status);
    }
}

#[tokio::test]
async fn settings_url_is_an_endpoint_for_every_event_type() {
    let rx = Receiver::start().await;
    let s = server("1s").await;
    let api = Api::new(&s, ORG);
    let path = "/api/v1/organizations/current/settings";
    assert_eq!(
        api.get(path).await.body,
        json!({"webhookUrl": null, "webhookSigningSecret": null})
    );
    let r = api.put(path, &json!({"webhookUrl": rx.url("first")})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let secret = r.body["webhookSigningSecret"].as_str().unwrap().to_owned();
    let r = api
        .put(path, &json!({"webhookUrl": rx.url("second")}))
        .await;
    assert_eq!(r.body["webhookUrl"], rx.url("second"));
    assert_eq!(
        r.body["webhookSigningSecret"],
        secret.as_str(),
        "replacing the URL keeps the secret"
    );
    let listed = api.get("/api/webhooks/get").await.body;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["kind"], "settings");
    let sid = listed[0]["id"].as_i64().unwrap();
    api.patch(
        &format!("/api/webhooks/{sid}"),
        &json!({"eventTypes": ["a"]}),
    )
    .await
    .error(409);
    api.publish("anything", json!({"a": 1})).await;
    api.settled(Duration::from_secs(10)).await;
    assert!(rx.seen("first").is_empty());
    assert!(verify(&secret, &rx.seen("second")[0]));
    api.put(path, &json!({"webhookUrl": "nope"}))
        .await
        .error(400);
    api.put(path, &json!({})).await.error(400);
    let r = api.put(path, &json!({"webhookUrl": null})).await;
    assert_eq!(
        r.body,
        json!({"webhookUrl": null, "webhookSigningSecret": null})
    );
    assert_eq!(api.publish("anything", json!({})).await["deliveries"], 0);
}

#[tokio::test]
async fn the_log_lists_filters_pages_retries_and_replays() {
    let rx = Receiver::start().await;
    let s = server("").await; // one attempt each
    let api = Api::new(&s, ORG);
    let bad = api
        .endpoint(&rx.script("bad", vec![Step::Status(500)]))
        .await;
    let good = api.endpoint(&rx.script("good", vec![])).await;
    for i in 0..30 {
        api.publish(if i % 2 == 0 { "even" } else { "odd" }, json!({ "i": i }))
            .await;
    }
    let all = api.settled(Duration::from_secs(20)).await;
    assert_eq!(all.len(), 60);
    let created: Vec<&str> = all
        .iter()
        .map(|d| d["createdAt"].as_str().unwrap())
        .collect();
    assert!(created.windows(2).all(|w| w[0] >= w[1]), "newest first");

    let failed = api
        .get(&format!(
            "/api/v1/deliveries?status=failed&endpointId={bad}"
        ))
        .await
        .body;
    assert_eq!(failed["data"].as_array().unwrap().len(), 30);
    let odd = api
        .get("/api/v1/deliveries?eventType=odd&limit=1000")
        .await
        .body;
    assert_eq!(odd["data"].as_array().unwrap().len(), 30);
    let by_attempts = api
        .get("/api/v1/deliveries?sort=lastStatus&order=asc&limit=1")
        .await
        .body;
    assert_eq!(
        by_attempts["data"][0]["lastStatus"], 200,
        "200 sorts below 500"
    );

    // Pages of 7 while new deliveries arrive: each one seen exactly once.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let q = cursor
            .as_ref()
            .map_or(String::new(), |c| format!("&cursor={c}"));
        let page = api
            .get(&format!("/api/v1/deliveries?limit=7&order=asc{q}"))
            .await;
        assert_eq!(page.status, 200, "{}", page.body);
        seen.extend(
            page.body["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["id"].as_str().unwrap().to_owned()),
        );
        if seen.len() == 14 {
            api.publish("late", json!({})).await;
        }
        match page.body["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let unique: std::collections::HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len());
    assert_eq!(
        seen.len(),
        62,
        "ascending pages reach the deliveries added meanwhile"
    );
    api.get("/api/v1/deliveries?cursor=garbage")
        .await
        .error(400);
    api.get("/api/v1/deliveries?status=lost").await.error(400);
    api.get("/api/v1/deliveries?sort=colour").await.error(400);

    // Retry: one attempt now, also after a final failure; 409 while pending.
    let one = failed["data"][0]["id"].as_str().unwrap().to_owned();
    let r = api
        .post(&format!("/api/v1/deliveries/{one}/retry"), &json!({}))
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let again = api
        .post(&format!("/api/v1/deliveries/{one}/retry"), &json!({}))
        .await;
    assert!(again.status == 409 || again.status == 202, "{}", again.body);
    api.settled(Duration::from_secs(10)).await;
    let d = api.detail(&one).await;
    assert!(d["attempts"].as_array().unwrap().len() >= 2);
    api.post("/api/v1/deliveries/msg_nope/retry", &json!({}))
        .await
        .error(404);

    // Replay every failed one of the bad endpoint, which now answers 200.
    rx.script("bad", vec![Step::Status(200)]);
    let r = api
        .post(
            &format!("/api/webhooks/{bad}/replay"),
            &json!({"since": "2000-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["replayed"], 31, "30 and the late one");
    api.settled(Duration::from_secs(20)).await;
    let still = api
        .get(&format!(
            "/api/v1/deliveries?status=failed&endpointId={bad}"
        ))
        .await
        .body;
    assert_eq!(still["data"].as_array().unwrap().len(), 0);
    let _ = good;
}

#[tokio::test]
async fn kill_9_in_the_middle_of_retry_schedules_loses_no_delivery() {
    let rx = Receiver::start().await;
    let mut s = server("1s,1s,1s,1s").await;
    let api_key;
    let ids: Vec<String>;
    {
        let api = Api::new(&s, ORG);
        api_key = api.key.clone();
        api.endpoint(&rx.script(
            "flaky",
            vec![
                Step::Status(500),
                Step::Status(500),
                Step::Status(500),
                Step::Status(200),
            ],
        ))
        .await;
        for i in 0..20 {
            api.publish("e", json!({ "i": i })).await;
        }
        // Wait for the first attempts, then kill in the middle of the schedules.
        let until = Instant::now() + Duration::from_secs(10);
        while rx.seen("flaky").len() < 20 {
            assert!(Instant::now() < until);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let listed = api.get("/api/v1/deliveries?limit=100").await.body;
        ids = listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_str().unwrap().to_owned())
            .collect();
    }
    s.kill9();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.restart().await;
    let api = Api {
        s: &s,
        key: api_key,
    };
    let all = api.settled(Duration::from_secs(30)).await;
    assert_eq!(all.len(), 20);
    assert!(all.iter().all(|d| d["state"] == "succeeded"), "{all:#?}");
    let mut per_id: HashMap<String, usize> = HashMap::new();
    for r in rx.seen("flaky") {
        *per_id.entry(r.header("webhook-id").to_owned()).or_default() += 1;
    }
    for id in &ids {
        let n = per_id.get(id).copied().unwrap_or(0);
        assert!(
            (4..=5).contains(&n),
            "{id} was sent {n} times: at most the attempt in flight at the kill repeats"
        );
    }
}

#[tokio::test]
async fn an_endpoint_failing_for_disable_after_is_disabled_until_patched() {
    let rx = Receiver::start().await;
    let s = TestServer::builder()
        .config("[delivery]\nallow_private_targets = true\nretry_schedule = \"400ms,400ms,400ms,400ms\"\ndisable_after = \"1s\"\n")
        .start()
        .await;
    let api = Api::new(&s, ORG);
    let id = api
        .endpoint(&rx.script("down", vec![Step::Status(503)]))
        .await;
    api.publish("a", json!({})).await;
    let all = api.settled(Duration::from_secs(20)).await;
    assert_eq!(all[0]["state"], "failed");
    let e = api.get(&format!("/api/webhooks/{id}")).await.body;
    assert_eq!(e["enabled"], false, "{e}");
    assert!(
        e["disabledReason"]
            .as_str()
            .unwrap()
            .contains("disable_after"),
        "{e}"
    );
    // Attempts stopped when it was disabled: the rest failed without being sent.
    let sent = rx.seen("down").len();
    assert!((3..5).contains(&sent), "{sent} attempts");
    assert_eq!(api.publish("a", json!({})).await["deliveries"], 0);
    let r = api
        .patch(&format!("/api/webhooks/{id}"), &json!({"enabled": true}))
        .await;
    assert_eq!(r.body["enabled"], true);
    assert_eq!(api.publish("a", json!({})).await["deliveries"], 1);
}

/// With Kafka: deliveries go through the deliveries topic (keyed by endpoint) and the
/// consumer group, retries through the retry topic; kill -9 mid-schedule loses none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_kafka_deliveries_and_retries_travel_as_records_and_survive_kill_9() {
    use rdkafka::message::Message;
    let kafka = crate::support_kafka::KafkaMock::start(2);
    let rx = Receiver::start().await;
    let mut s = kafka
        .server()
        .env("LEADSTREAM_DELIVERY_ALLOW_PRIVATE_TARGETS", "true")
        .env("LEADSTREAM_DELIVERY_RETRY_SCHEDULE", "1s,1s,1s")
        .start()
        .await;
    let key;
    let endpoint;
    {
        let api = Api::new(&s, ORG);
        key = api.key.clone();
        endpoint = api
            .endpoint(&rx.script(
                "flaky",
                vec![Step::Status(500), Step::Status(500), Step::Status(200)],
            ))
            .await;
        for i in 0..10 {
            assert_eq!(api.publish("e", json!({ "i": i })).await["deliveries"], 1);
        }
        // The first attempts (after the group join), then kill in the schedules.
        let until = Instant::now() + Duration::from_secs(30);
        while rx.seen("flaky").len() < 10 {
            assert!(Instant::now() < until, "{}", s.logs());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    s.kill9();
    s.restart().await;
    let api = Api { s: &s, key };
    let until = Instant::now() + Duration::from_secs(60);
    let mut per_id: HashMap<String, usize> = HashMap::new();
    loop {
        per_id.clear();
        for r in rx.seen("flaky") {
            *per_id.entry(r.header("webhook-id").to_owned()).or_default() += 1;
        }
        if per_id.len() == 10 && per_id.values().all(|n| *n >= 3) {
            break;
        }
        assert!(Instant::now() < until, "{per_id:?}\n{}", s.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (id, n) in &per_id {
        assert!((3..=4).contains(n), "{id} sent {n} times");
    }
    let log = api.settled(Duration::from_secs(20)).await;
    assert_eq!(log.len(), 10);
    assert!(log.iter().all(|d| d["state"] == "succeeded"), "{log:#?}");
    let secret = api.secret(endpoint).await;
    assert!(rx.seen("flaky").iter().all(|r| verify(&secret, r)));
    // New deliveries on the topic, keyed by endpoint; each retry a record too.
    let records = kafka.read("leadstream.deliveries", 2, 10, Duration::from_secs(5));
    assert_eq!(records.len(), 10);
    let key = format!("endpoint:{endpoint}");
    assert!(records.iter().all(|m| m.key() == Some(key.as_bytes())));
    let retries = kafka.read("leadstream.deliveries-retry", 2, 20, Duration::from_secs(5));
    assert!(retries.len() >= 20, "{} retry records", retries.len());
    let body: Value = serde_json::from_slice(records[0].payload().unwrap()).unwrap();
    assert_eq!(
        (body["type"].clone(), body["v"].clone()),
        (json!("delivery"), json!(1))
    );
}

/// With Kafka: a publish is answered once its deliveries are durable in `webhooks.db`.
/// While the brokers refuse them, the outbox relay keeps them and tries again (counted
/// in /metrics), nothing is delivered and nothing is taken back; a kill -9 meanwhile
/// loses none: the restart produces them, each delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_kafka_refusing_publishes_wait_in_the_outbox_and_survive_kill_9() {
    let kafka = crate::support_kafka::KafkaMock::start(2);
    let rx = Receiver::start().await;
    let mut s = kafka
        .server()
        .env("LEADSTREAM_DELIVERY_ALLOW_PRIVATE_TARGETS", "true")
        .start()
        .await;
    let key;
    {
        let api = Api::new(&s, ORG);
        key = api.key.clone();
        api.endpoint(&rx.script("ok", vec![Step::Status(200)]))
            .await;
        kafka.refuse_produce(100_000);
        for i in 0..5 {
            assert_eq!(api.publish("e", json!({ "i": i })).await["deliveries"], 1);
        }
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let (_, text) = crate::metrics::scrape(&s).await;
            let retries = crate::metrics::sample(&text, "leadstream_delivery_outbox_retries_total")
                .unwrap_or(0.0);
            if retries >= 1.0 {
                break;
            }
            assert!(Instant::now() < until, "no outbox retry\n{}", s.logs());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(rx.seen("ok").is_empty(), "delivered while Kafka refused");
        let log = api.get("/api/v1/deliveries").await.body;
        let states: Vec<&Value> = log["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| &d["state"])
            .collect();
        assert_eq!(states, vec![&json!("pending"); 5], "{log}");
    }
    s.kill9();
    kafka.accept_produce();
    s.restart().await;
    let api = Api { s: &s, key };
    let until = Instant::now() + Duration::from_secs(60);
    let mut per_id: HashMap<String, usize> = HashMap::new();
    while per_id.len() < 5 {
        assert!(Instant::now() < until, "{per_id:?}\n{}", s.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
        per_id.clear();
        for r in rx.seen("ok") {
            *per_id.entry(r.header("webhook-id").to_owned()).or_default() += 1;
        }
    }
    let log = api.settled(Duration::from_secs(20)).await;
    assert_eq!(log.len(), 5);
    assert!(log.iter().all(|d| d["state"] == "succeeded"), "{log:#?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    for r in rx.seen("ok") {
        assert_eq!(per_id[r.header("webhook-id")], 1, "delivered twice");
    }
    let bodies: Vec<Value> = rx
        .seen("ok")
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    for i in 0..5 {
        assert!(bodies.contains(&json!({ "i": i })), "{bodies:?}");
    }
}

/// With ClickHouse configured every attempt is also in its `webhook_attempts` table.
#[tokio::test]
async fn with_clickhouse_every_attempt_is_in_the_attempt_log_table() {
    let ch = crate::support_clickhouse::ClickHouseServer::start();
    let rx = Receiver::start().await;
    let s = TestServer::builder()
        .env("LEADSTREAM_CLICKHOUSE_URL", ch.url())
        .env("LEADSTREAM_CLICKHOUSE_DATABASE", "hooks")
        .env("LEADSTREAM_DELIVERY_ALLOW_PRIVATE_TARGETS", "true")
        .env("LEADSTREAM_DELIVERY_RETRY_SCHEDULE", "200ms")
        .start()
        .await;
    let api = Api::new(&s, ORG);
    let id = api
        .endpoint(&rx.script("hook", vec![Step::Status(502), Step::Status(200)]))
        .await;
    for i in 0..3 {
        api.publish("booked", json!({ "i": i })).await;
    }
    let log = api.settled(Duration::from_secs(20)).await;
    assert!(log.iter().all(|d| d["state"] == "succeeded"));
    let sql = "SELECT delivery_id, attempt, state, response_status, endpoint_id, event_type \
               FROM hooks.webhook_attempts FINAL ORDER BY delivery_id, attempt FORMAT TSV";
    let until = Instant::now() + Duration::from_secs(10);
    let rows = loop {
        let out = ch.query(sql);
        let rows: Vec<String> = out.lines().map(str::to_owned).collect();
        if rows.len() >= 6 || Instant::now() > until {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(rows.len(), 6, "{rows:?}");
    for pair in rows.chunks(2) {
        let a: Vec<&str> = pair[0].split('\t').collect();
        let b: Vec<&str> = pair[1].split('\t').collect();
        assert_eq!(a[0], b[0]);
        assert_eq!(&a[1..4], ["1", "failed", "502"]);
        assert_eq!(&b[1..4], ["2", "succeeded", "200"]);
        assert_eq!(a[4], id.to_string());
        assert_eq!(a[5], "booked");
    }
}

#[tokio::test]
async fn a_rate_limit_spaces_an_endpoints_attempts() {
    let rx = Receiver::start().await;
    let s = server("1s").await;
    let api = Api::new(&s, ORG);
    let id = api.endpoint(&rx.script("limited", vec![])).await;
    let r = api
        .patch(&format!("/api/webhooks/{id}"), &json!({"rateLimit": 4}))
        .await;
    assert_eq!(r.body["rateLimit"], 4.0);
    for i in 0..12 {
        api.publish("a", json!({ "i": i })).await;
    }
    api.settled(Duration::from_secs(20)).await;
    let at: Vec<Instant> = rx.seen("limited").iter().map(|r| r.at).collect();
    assert_eq!(at.len(), 12);
    // A burst of 4, then 4 a second: the 12th at least 2 s after the first.
    let span = at[11] - at[0];
    assert!(
        span >= Duration::from_millis(1900),
        "12 attempts in {span:?}"
    );
}

#[tokio::test]
async fn with_log_response_bodies_off_no_receiver_answer_is_kept() {
    let rx = Receiver::start().await;
    let s = TestServer::builder()
        .config("[delivery]\nallow_private_targets = true\nlog_response_bodies = false\n")
        .start()
        .await;
    let api = Api::new(&s, ORG);
    api.endpoint(&rx.script("quiet", vec![Step::Status(200)]))
        .await;
    api.publish("a", json!({})).await;
    let all = api.settled(Duration::from_secs(10)).await;
    assert_eq!(all[0]["state"], "succeeded");
    let log = api.detail(all[0]["id"].as_str().unwrap()).await;
    let attempt = &log["attempts"][0];
    assert_eq!(attempt["responseStatus"], 200, "{log}");
    assert_eq!(attempt["responseBody"], Value::Null, "{log}");
}

/// One org's hanging endpoint holds at most its share of the attempts in flight:
/// another org's delivery starts at once instead of waiting for those attempts to
/// time out.
#[tokio::test]
async fn an_org_whose_endpoint_hangs_does_not_delay_another_orgs_delivery() {
    let rx = Receiver::start().await;
    let s = TestServer::builder()
        .config(
            "[delivery]\nallow_private_targets = true\nmax_in_flight = 8\nmax_in_flight_per_org = 4\ntimeout = \"10s\"\n",
        )
        .start()
        .await;
    let a = Api::new(&s, ORG);
    let hanging = a
        .endpoint(&rx.script("hang", vec![Step::Hang(Duration::from_secs(20))]))
        .await;
    a.patch(
        &format!("/api/webhooks/{hanging}"),
        &json!({"maxInFlight": 8}),
    )
    .await;
    for _ in 0..20 {
        a.publish("a", json!({})).await;
    }
    // Org A's attempts are in flight, hanging.
    let deadline = Instant::now() + Duration::from_secs(5);
    while rx.seen("hang").len() < 4 {
        assert!(Instant::now() < deadline, "org A's attempts never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let b = Api::new(&s, ORG + 1);
    b.endpoint(&rx.script("fast", vec![Step::Status(200)]))
        .await;
    let sent = Instant::now();
    b.publish("b", json!({})).await;
    while rx.seen("fast").is_empty() {
        assert!(
            sent.elapsed() < Duration::from_secs(2),
            "org B's delivery waited behind org A's hanging attempts"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(rx.seen("hang").len(), 4, "org A holds its share, no more");
}

/// SIGTERM with attempts in flight loses nothing: they end and are recorded before the
/// process exits (none is sent again after the restart), and every attempt is in the
/// ClickHouse attempt log, whose buffer is written out at exit.
// Multi-threaded: the receiver must keep answering while the test waits for the exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_attempts_in_flight_loses_no_delivery_and_no_attempt_log_row() {
    let ch = crate::support_clickhouse::ClickHouseServer::start();
    let rx = Receiver::start().await;
    let mut s = TestServer::builder()
        .env("LEADSTREAM_CLICKHOUSE_URL", ch.url())
        .env("LEADSTREAM_CLICKHOUSE_DATABASE", "hooks")
        .env("LEADSTREAM_DELIVERY_ALLOW_PRIVATE_TARGETS", "true")
        .start()
        .await;
    s.org(ORG);
    let key = s.api_key(ORG).secret;
    {
        let api = Api {
            s: &s,
            key: key.clone(),
        };
        api.endpoint(&rx.script("slow", vec![Step::Hang(Duration::from_millis(1500))]))
            .await;
        for i in 0..10 {
            api.publish("booked", json!({ "i": i })).await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while rx.seen("slow").len() < 10 {
        assert!(Instant::now() < deadline, "the attempts never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Ten attempts in flight, each answered in 1.5 s.
    s.sigterm();
    assert!(s.wait_exit().success(), "{}", s.logs());
    assert!(!s.logs().contains("panicked"), "{}", s.logs());
    assert!(
        s.logs().contains("every background task has ended"),
        "{}",
        s.logs()
    );
    let rows = ch.query("SELECT count() FROM hooks.webhook_attempts FORMAT TSV");
    assert_eq!(rows.trim(), "10", "attempt log rows at exit\n{}", s.logs());
    s.restart().await;
    let api = Api { s: &s, key };
    let log = api.settled(Duration::from_secs(10)).await;
    assert_eq!(log.len(), 10);
    assert!(
        log.iter()
            .all(|d| d["state"] == "succeeded" && d["attempts"] == 1),
        "{log:?}\n{}",
        s.logs()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.seen("slow").len(), 10, "no attempt was made twice");
}

/// `/api/webhooks/get` keeps seed 002's bare array; with `limit` it pages, newest
/// first, the next page's query in a `Link` header until the last page.
#[tokio::test]
async fn the_webhook_list_pages_with_limit_and_a_link_header() {
    let s = TestServer::start().await;
    let api = Api::new(&s, ORG);
    let mut made = Vec::new();
    for i in 0..5 {
        made.push(
            api.endpoint(&format!("https://hooks{i}.example.com/x"))
                .await,
        );
    }
    made.reverse();
    let mut seen = Vec::new();
    let mut path = "/api/webhooks/get?limit=2".to_owned();
    let mut pages = 0;
    loop {
        let r = s
            .client()
            .get(s.url(&path))
            .bearer_auth(&api.key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let link = r
            .headers()
            .get("link")
            .map(|v| v.to_str().unwrap().to_owned());
        let page: Value = r.json().await.unwrap();
        let ids: Vec<i64> = page
            .as_array()
            .expect("a bare array, as seed 002's")
            .iter()
            .map(|e| e["id"].as_i64().unwrap())
            .collect();
        assert!(ids.len() <= 2);
        seen.extend(ids);
        pages += 1;
        let Some(link) = link else { break };
        let next = link
            .strip_prefix('<')
            .and_then(|l| l.split_once(">; rel=\"next\""))
            .map(|(p, _)| p.to_owned())
            .expect("Link: <…>; rel=\"next\"");
        path = next;
    }
    assert_eq!((seen, pages), (made, 3));
    api.get("/api/webhooks/get?limit=0").await.error(400);
    api.get("/api/webhooks/get?limit=2&cursor=nope")
        .await
        .error(400);
}
