//! What the web console stands on: API-key scopes enforced by the API, the key's own
//! description, one lead's stored events, the per-minute stats, and the console's
//! files served with a strict Content-Security-Policy. (The console itself is walked
//! in a browser by tests/console/walk.py.)

use crate::api::Api;
use crate::receiver::{Receiver, Step};
use crate::support::{batch, TestServer, LEAD_EVENTS};
use serde_json::{json, Value};
use std::time::Duration;

const ORG: i64 = 42;

async fn server() -> TestServer {
    TestServer::builder()
        .env("LEADSTREAM_DELIVERY_ALLOW_PRIVATE_TARGETS", "true")
        .start()
        .await
}

#[tokio::test]
async fn a_read_key_views_everything_but_secrets_and_changes_nothing() {
    let s = server().await;
    let admin = Api::new(&s, ORG);
    let reader = Api::scoped(&s, ORG, "read");
    let id = admin.endpoint("https://hooks.example.com/a").await;
    admin
        .put(
            "/api/v1/organizations/current/settings",
            &json!({"webhookUrl": "https://hooks.example.com/settings"}),
        )
        .await;
    let me = reader.get("/api/v1/api-keys/current").await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.body["scope"], "read");
    assert_eq!(me.body["organizationId"], ORG);
    // Views answer as they do for an admin key.
    for path in [
        "/api/webhooks/get".to_owned(),
        format!("/api/webhooks/{id}"),
        "/api/v1/deliveries".to_owned(),
        "/api/v1/campaigns".to_owned(),
        "/api/v1/triggers".to_owned(),
        "/api/v1/stats".to_owned(),
        "/api/v1/lead-events?phone=%2B14155550100".to_owned(),
    ] {
        let (r, a) = (reader.get(&path).await, admin.get(&path).await);
        assert_eq!((r.status, a.status), (200, 200), "{path}: {}", r.body);
    }
    // Changes and secrets are 403, saying what the scope may do and what to use.
    let refused = [
        reader
            .post(
                "/api/webhooks/create",
                &json!({"webhook": "https://x.example.com"}),
            )
            .await,
        reader
            .patch(&format!("/api/webhooks/{id}"), &json!({"enabled": false}))
            .await,
        reader
            .delete(&format!("/api/webhooks/delete?id={id}"))
            .await,
        reader.get(&format!("/api/webhooks/{id}/secret")).await,
        reader
            .post(&format!("/api/webhooks/{id}/secret/rotate"), &json!({}))
            .await,
        reader.get("/api/v1/organizations/current/settings").await,
        reader
            .post(
                "/api/v1/campaigns",
                &json!({"name": "c", "deliveryUrl": "https://x.example.com"}),
            )
            .await,
        reader
            .post(
                "/api/v1/outbound-events",
                &json!({"eventType": "t", "payload": {}}),
            )
            .await,
        reader
            .post(
                LEAD_EVENTS,
                &batch(
                    ORG,
                    "purchase",
                    vec![
                        json!({"phoneE164": "+14155550100", "occurredAt": "2026-01-01T00:00:00Z"}),
                    ],
                ),
            )
            .await,
    ];
    for r in &refused {
        let msg = r.error(403);
        assert!(
            msg.contains("scope is read") && msg.contains("--scope admin"),
            "{msg}"
        );
    }
    // What an SRE sees.
    let (_, text) = crate::metrics::scrape(&s).await;
    assert!(
        text.contains("leadstream_api_key_scope_refusals_total{scope=\"read\"} 9"),
        "{text}"
    );
    // Nothing changed: the endpoint is there, enabled, with its one secret.
    let list = admin.get("/api/webhooks/get").await;
    let ids: Vec<i64> = list
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert!(ids.contains(&id), "{}", list.body);
    assert_eq!(
        ids.len(),
        2,
        "the settings endpoint and one registry endpoint: {}",
        list.body
    );
    assert_eq!(
        admin.get(&format!("/api/webhooks/{id}")).await.body["enabled"],
        true
    );
    assert_eq!(admin.get("/api/v1/campaigns").await.body["data"], json!([]));
}

#[tokio::test]
async fn an_ingest_key_only_sends_events() {
    let s = server().await;
    let admin = Api::new(&s, ORG);
    let ingest = Api::scoped(&s, ORG, "ingest");
    let r = ingest
        .post(
            LEAD_EVENTS,
            &batch(
                ORG,
                "purchase",
                vec![json!({"phoneE164": "+14155550100", "occurredAt": "2026-01-01T00:00:00Z"})],
            ),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["inserted"], 1);
    let me = ingest.get("/api/v1/api-keys/current").await;
    assert_eq!(me.body["scope"], "ingest", "{}", me.body);
    for path in [
        "/api/webhooks/get",
        "/api/v1/deliveries",
        "/api/v1/stats",
        "/api/v1/lead-events?phone=%2B14155550100",
    ] {
        let msg = ingest.get(path).await.error(403).to_owned();
        assert!(msg.contains("scope is ingest"), "{path}: {msg}");
    }
    ingest
        .post(
            "/api/webhooks/create",
            &json!({"webhook": "https://x.example.com"}),
        )
        .await
        .error(403);
    // The admin key sees what the ingest key sent.
    let events = admin.get("/api/v1/lead-events?phone=%2B14155550100").await;
    assert_eq!(
        events.body["data"].as_array().unwrap().len(),
        1,
        "{}",
        events.body
    );
    // Keys list with their scope; a signing key has none to give.
    let listed = s.cli(["api-key", "list", "--org", "42"]).ok();
    assert!(
        listed.contains("SCOPE") && listed.contains("ingest") && listed.contains("admin"),
        "{listed}"
    );
    let out = s.cli(["signing-key", "create", "--org", "42", "--scope", "read"]);
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("--scope is for API keys"),
        "{}",
        out.stderr
    );
    let out = s.cli(["api-key", "create", "--org", "42", "--scope", "owner"]);
    assert!(!out.status.success(), "{}", out.stdout);
}

#[tokio::test]
async fn one_leads_events_page_newest_first_and_only_the_orgs_own() {
    let s = server().await;
    let admin = Api::new(&s, ORG);
    let other = Api::new(&s, 43);
    let phone = "+14155550100";
    let mut sent = Vec::new();
    for (k, t) in ["purchase", "webinar", "purchase", "trial", "purchase"]
        .iter()
        .enumerate()
    {
        let at = format!("2026-01-0{}T10:00:00Z", k + 1);
        let metadata = json!({"k": k});
        let r = admin
            .post(
                LEAD_EVENTS,
                &batch(
                    ORG,
                    t,
                    vec![json!({"phoneE164": phone, "occurredAt": at, "metadata": metadata})],
                ),
            )
            .await;
        assert_eq!(r.body["inserted"], 1, "{}", r.body);
        sent.push((t.to_string(), at, metadata));
    }
    // Another lead and another org with the same phone.
    admin
        .post(
            LEAD_EVENTS,
            &batch(
                ORG,
                "purchase",
                vec![json!({"phoneE164": "+14155550101", "occurredAt": "2026-02-01T00:00:00Z"})],
            ),
        )
        .await;
    other
        .post(
            LEAD_EVENTS,
            &batch(
                43,
                "purchase",
                vec![json!({"phoneE164": phone, "occurredAt": "2026-02-01T00:00:00Z"})],
            ),
        )
        .await;
    // Written as a client might, without the + and with spaces: normalized as ingest does.
    let pages = admin
        .pages_by_cursor("/api/v1/lead-events?phone=1%20(415)%20555-0100&limit=2")
        .await;
    assert!(pages.len() == 3, "5 events by 2: {pages:?}");
    let got: Vec<(String, String, Value)> = pages
        .concat()
        .into_iter()
        .map(|e| {
            assert_eq!(e["phoneE164"], phone);
            (
                e["eventType"].as_str().unwrap().to_owned(),
                e["occurredAt"].as_str().unwrap().to_owned(),
                e["metadata"].clone(),
            )
        })
        .collect();
    let mut want = sent.clone();
    want.reverse();
    assert_eq!(got, want);
    // One type.
    let purchases = admin
        .get("/api/v1/lead-events?phone=%2B14155550100&eventType=purchase")
        .await;
    let at: Vec<&str> = purchases.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["occurredAt"].as_str().unwrap())
        .collect();
    assert_eq!(
        at,
        [
            "2026-01-05T10:00:00Z",
            "2026-01-03T10:00:00Z",
            "2026-01-01T10:00:00Z"
        ]
    );
    assert_eq!(purchases.body["nextCursor"], Value::Null);
    // What is not a question is a 400 naming the problem.
    assert!(admin
        .get("/api/v1/lead-events")
        .await
        .error(400)
        .contains("phone is required"));
    assert!(admin
        .get("/api/v1/lead-events?phone=hello")
        .await
        .error(400)
        .contains("not a phone number"));
    assert!(admin
        .get("/api/v1/lead-events?phone=%2B14155550100&sort=x")
        .await
        .error(400)
        .contains("unknown parameter"));
    admin
        .assert_bad_paging_refused("/api/v1/lead-events?phone=%2B14155550100&x=")
        .await;
}

#[tokio::test]
async fn stats_count_this_minutes_events_and_finished_deliveries_and_name_failing_endpoints() {
    let s = server().await;
    let rx = Receiver::start().await;
    let admin = Api::new(&s, ORG);
    let ok = admin
        .endpoint(&rx.script("ok", vec![Step::Status(200)]))
        .await;
    let gone = admin
        .endpoint(&rx.script("gone", vec![Step::Status(400)]))
        .await;
    let slow = admin
        .endpoint(&rx.script("slow", vec![Step::Status(503)]))
        .await;
    admin
        .patch(
            &format!("/api/webhooks/{ok}"),
            &json!({"eventTypes": ["a"]}),
        )
        .await;
    admin
        .patch(
            &format!("/api/webhooks/{gone}"),
            &json!({"eventTypes": ["a"]}),
        )
        .await;
    admin
        .patch(
            &format!("/api/webhooks/{slow}"),
            &json!({"eventTypes": ["b"]}),
        )
        .await;
    let events: Vec<Value> = (0..7)
        .map(|k| json!({"phoneE164": format!("+1415555{:04}", 100 + k), "occurredAt": "2026-01-01T00:00:00Z"}))
        .collect();
    admin
        .post(LEAD_EVENTS, &batch(ORG, "purchase", events))
        .await
        .accepted();
    // Another org's events and deliveries are not counted.
    let other = Api::new(&s, 43);
    other
        .post(
            LEAD_EVENTS,
            &batch(
                43,
                "purchase",
                vec![json!({"phoneE164": "+14155550100", "occurredAt": "2026-01-01T00:00:00Z"})],
            ),
        )
        .await
        .accepted();
    for k in 0..3 {
        admin.publish("a", json!({"k": k})).await;
    }
    admin.publish("b", json!({})).await;
    // Three succeed at ok, three fail for good at gone; the one to slow is retried.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let stats = loop {
        let r = admin.get("/api/v1/stats").await;
        assert_eq!(r.status, 200, "{}", r.body);
        let t = &r.body["totals"];
        let failing = r.body["failingEndpoints"].as_array().unwrap().len();
        if t["deliveriesSucceeded"] == 3 && t["deliveriesFailed"] == 3 && failing == 2 {
            break r.body;
        }
        assert!(std::time::Instant::now() < deadline, "{}", r.body);
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(stats["totals"]["leadEvents"], 7, "{stats}");
    let minutes = stats["minutes"].as_array().unwrap();
    assert!(
        (60..=61).contains(&minutes.len()),
        "an hour of minutes: {}",
        minutes.len()
    );
    let sum = |k: &str| minutes.iter().map(|m| m[k].as_u64().unwrap()).sum::<u64>();
    assert_eq!(
        (
            sum("leadEvents"),
            sum("deliveriesSucceeded"),
            sum("deliveriesFailed")
        ),
        (7, 3, 3)
    );
    assert_eq!(stats["pendingDeliveries"], 1, "{stats}");
    let failing: Vec<i64> = stats["failingEndpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    // Both whose last attempt failed (finally or to be retried); not the one that succeeds.
    assert!(
        failing.contains(&slow) && failing.contains(&gone) && !failing.contains(&ok),
        "{stats}"
    );
    // A window is at most a day, and not in the future.
    for since in ["2020-01-01T00:00:00Z", "2999-01-01T00:00:00Z", "yesterday"] {
        admin
            .get(&format!("/api/v1/stats?since={since}"))
            .await
            .error(400);
    }
}

#[tokio::test]
async fn the_console_is_served_from_the_binary_with_a_strict_content_security_policy() {
    let s = TestServer::start().await;
    let page = s.client().get(s.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let h = page.headers().clone();
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'")
            && csp.contains("default-src 'none'")
            && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
    let html = page.text().await.unwrap();
    assert!(html.contains("/console/js/app.js"), "{html}");
    assert!(
        !html.contains("<script>") && !html.contains(" style=\"") && !html.contains("onclick"),
        "inline script or style: {html}"
    );
    // Its script, revalidated by ETag.
    let js = s
        .client()
        .get(s.url("/console/js/app.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(js.status(), 200);
    assert!(js.headers()["content-type"]
        .to_str()
        .unwrap()
        .contains("javascript"));
    let etag = js.headers()["etag"].clone();
    let again = s
        .client()
        .get(s.url("/console/js/app.js"))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    // Nothing outside the console's files.
    for path in [
        "/console/../Cargo.toml",
        "/console/%2e%2e/Cargo.toml",
        "/console/nope.js",
        "/console/",
    ] {
        let r = s.get(path).await;
        assert_eq!(r.status, 404, "{path}: {}", r.body);
    }
}
