//! `GET /metrics`: unauthenticated Prometheus text whose counters follow the lead-event
//! batches the server acknowledged, over HTTP and from the raw Kafka topic.

use crate::support::{batch, lead, TestServer};
use crate::support_kafka::KafkaMock;
use leadstream_connectors::metrics::CONTENT_TYPE;
use serde_json::json;
use std::time::Duration;

/// The value of the sample `series` (name and exact rendered labels) in `text`.
pub(crate) fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Scrapes `/metrics` without credentials; returns the content type and the text.
/// Scrapes until every one of `lines` is a line of `/metrics` (counters are bumped
/// just after what they count is durable, so a request that saw the effect may come
/// a moment before the count); panics with the last scrape after 5 s.
pub(crate) async fn scrape_until(s: &TestServer, lines: &[&str]) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let (_, text) = scrape(s).await;
        let missing: Vec<&&str> = lines
            .iter()
            .filter(|want| !text.lines().any(|l| l == **want))
            .collect();
        if missing.is_empty() {
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {missing:?} in\n{text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

pub(crate) async fn scrape(s: &TestServer) -> (String, String) {
    let r = s
        .client()
        .get(s.url("/metrics"))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(r.status(), 200);
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (ct, r.text().await.expect("read /metrics"))
}

#[tokio::test]
async fn lead_event_counters_follow_acknowledged_batches() {
    let s = TestServer::start().await;
    let key = s.org(42).api_key(42).secret;

    let (ct, text) = scrape(&s).await;
    assert_eq!(ct, CONTENT_TYPE);
    assert_eq!(ct, "text/plain; version=0.0.4; charset=utf-8");
    assert!(
        text.contains("# HELP leadstream_lead_events_total "),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"leadstream_lead_events_total{source="http",outcome="accepted"}"#
        ),
        Some(0.0),
        "the lead-event series start at 0: {text}"
    );

    // Two new events, one repeated within the call, one reject.
    let first = batch(
        42,
        "trial_started",
        vec![
            lead(0),
            lead(1),
            lead(1),
            json!({"phoneE164": "not a phone", "occurredAt": "2026-05-12T18:34:00Z"}),
        ],
    );
    assert_eq!(s.post_bearer(&key, &first).await.counts(), (4, 2, 1, 1));
    // The same event again: a duplicate of what is stored.
    let again = batch(42, "trial_started", vec![lead(0)]);
    assert_eq!(s.post_bearer(&key, &again).await.counts(), (1, 0, 1, 0));
    // Refused before it is read: counted as a response, not as events.
    assert_eq!(s.post_bearer("not-a-key", &again).await.status, 401);

    let (ct, text) = scrape(&s).await;
    assert_eq!(ct, CONTENT_TYPE);
    let http = |outcome: &str| {
        sample(
            &text,
            &format!(r#"leadstream_lead_events_total{{source="http",outcome="{outcome}"}}"#),
        )
    };
    assert_eq!(http("accepted"), Some(2.0), "{text}");
    assert_eq!(http("duplicate"), Some(2.0), "{text}");
    assert_eq!(http("rejected"), Some(1.0), "{text}");
    assert!(
        text.contains("# TYPE leadstream_lead_events_total counter"),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"leadstream_lead_events_total{source="kafka",outcome="accepted"}"#
        ),
        Some(0.0),
        "no Kafka source configured: {text}"
    );
    assert_eq!(
        sample(&text, r#"leadstream_http_responses_total{class="4xx"}"#),
        Some(1.0),
        "{text}"
    );
    // The two posts, the first scrape and the readiness check that saw the server ready.
    assert!(
        sample(&text, r#"leadstream_http_responses_total{class="2xx"}"#).is_some_and(|n| n >= 4.0),
        "{text}"
    );
}

#[tokio::test]
async fn metrics_is_documented_and_needs_no_credentials() {
    let s = TestServer::start().await;
    let (ct, _) = scrape(&s).await;
    assert_eq!(ct, CONTENT_TYPE);
    let doc = s.get("/openapi.json").await.body;
    let get = &doc["paths"]["/metrics"]["get"];
    assert!(
        get["responses"]["200"]["content"][CONTENT_TYPE].is_object(),
        "{get}"
    );
    assert!(get.get("security").is_none(), "{get}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_batches_are_counted_by_outcome() {
    // One partition: every lead is this process's, nothing is re-routed.
    let kafka = KafkaMock::start(1);
    let record = batch(
        42,
        "webinar_attended",
        vec![
            lead(0),
            lead(1),
            lead(1),
            json!({"phoneE164": "n/a", "occurredAt": "2026-05-12T18:34:00Z"}),
        ],
    );
    kafka
        .produce(0, None, &serde_json::to_vec(&record).unwrap())
        .await;
    let s = kafka.server().start().await;
    kafka
        .wait_all_committed(&[&s], Duration::from_secs(45))
        .await;

    let (_, text) = scrape(&s).await;
    let kafka_outcome = |outcome: &str| {
        sample(
            &text,
            &format!(r#"leadstream_lead_events_total{{source="kafka",outcome="{outcome}"}}"#),
        )
    };
    assert_eq!(kafka_outcome("accepted"), Some(2.0), "{text}\n{}", s.logs());
    assert_eq!(kafka_outcome("duplicate"), Some(1.0), "{text}");
    assert_eq!(kafka_outcome("rejected"), Some(1.0), "{text}");
    assert_eq!(
        sample(
            &text,
            r#"leadstream_lead_events_total{source="http",outcome="accepted"}"#
        ),
        Some(0.0),
        "{text}"
    );
}

/// Per-endpoint series say how much each org has queued: an unauthenticated scrape
/// gets only the aggregates; with `http.metrics_token` set, the token is required and
/// the per-endpoint series come labelled by org.
#[tokio::test]
async fn per_endpoint_series_are_served_only_to_the_scrape_token() {
    use crate::api::Api;
    use crate::receiver::{Receiver, Step};
    let rx = Receiver::start().await;
    async fn deliver_once(s: &TestServer, rx: &Receiver) -> i64 {
        let api = Api::new(s, 31);
        let id = api.endpoint(&rx.script("m", vec![Step::Status(200)])).await;
        api.publish("a", json!({})).await;
        api.settled(Duration::from_secs(10)).await;
        id
    }

    let open = TestServer::builder()
        .env("LEADSTREAM_DELIVERY_ALLOW_PRIVATE_TARGETS", "true")
        .start()
        .await;
    deliver_once(&open, &rx).await;
    let text = scrape_until(&open, &["leadstream_deliveries_published_total 1"]).await;
    assert!(
        !text.contains("leadstream_delivery_queue_depth")
            && !text.contains("leadstream_delivery_in_flight"),
        "{text}"
    );

    let guarded = TestServer::builder()
        .env("LEADSTREAM_DELIVERY_ALLOW_PRIVATE_TARGETS", "true")
        .env("LEADSTREAM_METRICS_TOKEN", "scrape-me")
        .start()
        .await;
    let endpoint = deliver_once(&guarded, &rx).await;
    let get = |token: Option<&str>| {
        let mut r = guarded.client().get(guarded.url("/metrics"));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        async move { r.send().await.unwrap() }
    };
    assert_eq!(get(None).await.status(), 401);
    assert_eq!(get(Some("wrong")).await.status(), 401);
    let r = get(Some("scrape-me")).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let series = format!(r#"leadstream_delivery_queue_depth{{org="31",endpoint="{endpoint}"}}"#);
    assert_eq!(sample(&text, &series), Some(0.0), "{text}");
}
