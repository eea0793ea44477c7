//! Campaign sends over real sockets: campaigns and their states, audiences (CSV and
//! JSON), opt-outs, sends with local times, eligibility at the send's instant (one
//! test per rule), the audience-filter webhook, materialization into signed
//! deliveries, the scheduler, and kill -9 in the middle of a large send.

use crate::api::Api;
use crate::receiver::Receiver;
use crate::support::{batch, Call, TestServer};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const ORG: i64 = 9;
/// The send instant T of the semantic tests.
const T: &str = "2026-05-12T18:34:00Z";

async fn server() -> TestServer {
    TestServer::builder()
        .env("LEADSTREAM_DELIVERY_ALLOW_PRIVATE_TARGETS", "true")
        .start()
        .await
}

impl Api<'_> {
    /// Creates a draft campaign delivering to `url`; its id.
    async fn campaign(&self, url: &str) -> i64 {
        let r = self
            .post(
                "/api/v1/campaigns",
                &json!({"name": "launch", "deliveryUrl": url}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        r.body["id"].as_i64().unwrap()
    }

    async fn audience_json(&self, campaign: i64, leads: &Value) -> Value {
        let r = self
            .post(&format!("/api/v1/campaigns/{campaign}/audience"), leads)
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.body
    }

    async fn audience_csv(&self, campaign: i64, csv: String) -> crate::support::Reply {
        self.req(
            reqwest::Method::POST,
            &format!("/api/v1/campaigns/{campaign}/audience"),
        )
        .header("content-type", "text/csv")
        .body(csv)
        .reply()
        .await
    }

    async fn send(&self, campaign: i64, body: Value) -> i64 {
        let r = self
            .post(&format!("/api/v1/campaigns/{campaign}/sends"), &body)
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        r.body["id"].as_i64().unwrap()
    }

    /// The eligible phones (sorted) and the summary line.
    async fn eligible(&self, campaign: i64, send: i64, at: Option<&str>) -> (Vec<String>, Value) {
        let query = at.map_or(String::new(), |at| format!("at={}", at.replace('+', "%2B")));
        let (phones, summary, _) = self.eligible_query(campaign, send, &query).await;
        (phones, summary)
    }

    /// The eligible phones (sorted), the summary line and the engine that answered.
    pub(crate) async fn eligible_query(
        &self,
        campaign: i64,
        send: i64,
        query: &str,
    ) -> (Vec<String>, Value, String) {
        let path = format!("/api/v1/campaigns/{campaign}/sends/{send}/eligible?{query}");
        let r = self.req(reqwest::Method::POST, &path).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/x-ndjson");
        let engine = r.headers()["x-leadstream-eligibility-engine"]
            .to_str()
            .unwrap()
            .to_owned();
        let text = r.text().await.unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let (summary, leads) = lines.split_last().expect("a summary line");
        let mut phones: Vec<String> = leads
            .iter()
            .map(|l| l["phoneE164"].as_str().unwrap().to_owned())
            .collect();
        phones.sort();
        (phones, summary["summary"].clone(), engine)
    }

    async fn events(&self, event_type: &str, events: Vec<Value>) {
        let r = self
            .post(
                "/api/v1/webhooks/lead-events",
                &batch(ORG, event_type, events),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
}

fn phone(n: u32) -> String {
    format!("+1555123{n:04}")
}

fn ev(n: u32, at: &str) -> Value {
    json!({"phoneE164": phone(n), "occurredAt": at})
}

#[tokio::test]
async fn campaigns_follow_their_state_machine_and_only_drafts_are_edited() {
    let s = server().await;
    let api = Api::new(&s, ORG);
    let c = api.campaign("http://127.0.0.1:9/x").await;
    let got = api.get(&format!("/api/v1/campaigns/{c}")).await;
    assert_eq!(got.body["state"], "draft");
    assert_eq!(got.body["deliveryUrl"], "http://127.0.0.1:9/x");
    // The delivery URL is an endpoint of the org with its own secret.
    let ep = got.body["endpointId"].as_i64().unwrap();
    assert!(api.secret(ep).await.starts_with("whsec_"));

    let r = api
        .patch(
            &format!("/api/v1/campaigns/{c}"),
            &json!({"name": "renamed"}),
        )
        .await;
    assert_eq!(r.body["name"], "renamed", "{}", r.body);
    // A new deliveryUrl: a new endpoint, and the one made for the old URL goes.
    let r = api
        .patch(
            &format!("/api/v1/campaigns/{c}"),
            &json!({"deliveryUrl": "http://127.0.0.1:9/y"}),
        )
        .await;
    assert_eq!(r.body["deliveryUrl"], "http://127.0.0.1:9/y", "{}", r.body);
    let moved = r.body["endpointId"].as_i64().unwrap();
    assert_ne!(moved, ep);
    let listed = api.get("/api/webhooks/get").await.body;
    let ids: Vec<i64> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert_eq!(
        ids,
        [moved],
        "the old URL's endpoint was left behind: {listed}"
    );
    let path = |a: &str| format!("/api/v1/campaigns/{c}/{a}");
    assert!(api
        .post(&path("pause"), &json!({}))
        .await
        .error(409)
        .contains("draft"));
    assert_eq!(
        api.post(&path("schedule"), &json!({})).await.body["state"],
        "scheduled"
    );
    assert!(api
        .patch(&format!("/api/v1/campaigns/{c}"), &json!({"name": "x"}))
        .await
        .error(409)
        .contains("scheduled"));
    assert_eq!(
        api.post(&path("pause"), &json!({})).await.body["state"],
        "paused"
    );
    assert_eq!(
        api.post(&path("resume"), &json!({})).await.body["state"],
        "scheduled"
    );
    assert_eq!(
        api.post(&path("cancel"), &json!({})).await.body["state"],
        "cancelled"
    );
    assert!(api
        .post(&path("resume"), &json!({}))
        .await
        .error(409)
        .contains("cancelled"));

    // Bad input, each with what to fix.
    assert!(api
        .post("/api/v1/campaigns", &json!({"name": "x"}))
        .await
        .error(400)
        .contains("deliveryUrl"));
    api.post(
        "/api/v1/campaigns",
        &json!({"name": "x", "deliveryUrl": "ftp://a"}),
    )
    .await
    .error(400);
    api.post(
        "/api/v1/campaigns",
        &json!({"name": "x", "endpointId": 999}),
    )
    .await
    .error(404);
    api.get("/api/v1/campaigns/999").await.error(404);
    // Another org's campaign answers as a missing one: nothing tells it exists.
    let other = Api::new(&s, ORG + 1);
    let theirs = other.get(&format!("/api/v1/campaigns/{c}")).await;
    let missing = other.get("/api/v1/campaigns/999").await;
    assert_eq!((theirs.status, missing.status), (404, 404));
    assert_eq!(
        theirs.body["error"]
            .as_str()
            .unwrap()
            .replace(&c.to_string(), "N"),
        missing.body["error"].as_str().unwrap().replace("999", "N"),
    );
    // Newest first, with a cursor.
    let c2 = api.campaign("http://127.0.0.1:9/y").await;
    let page = api.get("/api/v1/campaigns?limit=1").await;
    assert_eq!(page.body["data"][0]["id"], c2);
    let cursor = page.body["nextCursor"].as_str().unwrap().to_owned();
    let next = api
        .get(&format!("/api/v1/campaigns?limit=1&cursor={cursor}"))
        .await;
    assert_eq!(next.body["data"][0]["id"], c);
    assert!(next.body["nextCursor"].is_null());
}

#[tokio::test]
async fn private_delivery_urls_are_refused_unless_allowed() {
    let s = TestServer::start().await;
    let api = Api::new(&s, ORG);
    let msg = api
        .post(
            "/api/v1/campaigns",
            &json!({"name": "x", "deliveryUrl": "http://127.0.0.1/hook"}),
        )
        .await
        .error(400)
        .to_owned();
    assert!(msg.contains("private"), "{msg}");
}

#[tokio::test]
async fn audiences_upload_as_csv_or_json_collapse_by_phone_and_merge() {
    let s = server().await;
    let api = Api::new(&s, ORG);
    let c = api.campaign("http://127.0.0.1:9/x").await;
    let csv = "phone,external_id,first_name\n\
               +1 555 123 0001,a,Ann\n\
               not a phone,b,Bob\n\
               15551230001,a2,Ann2\n\
               +15551230002,c,\"Cid, Jr\"\n"
        .to_owned();
    let r = api.audience_csv(c, csv).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        (
            &r.body["received"],
            &r.body["accepted"],
            &r.body["duplicates"],
            &r.body["rejected"]
        ),
        (&json!(4), &json!(2), &json!(1), &json!(1))
    );
    assert_eq!(
        r.body["rejects"][0],
        json!({"row": 2, "value": "not a phone", "reason": "invalid phoneE164"})
    );
    // JSON merges: one phone new, one already there.
    let t = api
        .audience_json(
            c,
            &json!([{"phoneE164": phone(2), "externalId": "c2", "variables": {"tier": "gold"}},
                    {"phoneE164": phone(3)}]),
        )
        .await;
    assert_eq!(
        (&t["received"], &t["accepted"], &t["duplicates"]),
        (&json!(2), &json!(1), &json!(1))
    );
    assert_eq!(
        api.get(&format!("/api/v1/campaigns/{c}")).await.body["audienceSize"],
        3
    );
    // A CSV without a phone column changes nothing.
    let r = api.audience_csv(c, "name\nx\n".into()).await;
    assert!(r.error(400).contains("phone column"));
    // The later row's externalId won: the eligible list shows it.
    let send = api
        .send(
            c,
            json!({"scheduledFor": T, "templateName": "t", "language": "en"}),
        )
        .await;
    let r = api
        .req(
            reqwest::Method::POST,
            &format!("/api/v1/campaigns/{c}/sends/{send}/eligible"),
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        r.contains(r#"{"phoneE164":"+15551230001","externalId":"a2"}"#),
        "{r}"
    );
    assert!(
        r.contains(r#"{"phoneE164":"+15551230002","externalId":"c2"}"#),
        "{r}"
    );
}

#[tokio::test]
async fn opt_outs_are_per_org_and_never_eligible() {
    let s = server().await;
    let api = Api::new(&s, ORG);
    let r = api
        .post(
            "/api/v1/opt-outs",
            &json!({"phones": ["+1 555 123 0001", phone(2)]}),
        )
        .await;
    assert_eq!(r.body, json!({"count": 2}));
    assert_eq!(
        api.post("/api/v1/opt-outs", &json!({"phones": [phone(1)]}))
            .await
            .body,
        json!({"count": 0})
    );
    let got = api.get("/api/v1/opt-outs?phone=15551230001").await;
    assert_eq!(got.body["optedOut"], true, "{}", got.body);
    assert_eq!(got.body["phoneE164"], phone(1));
    // One bad phone: 400 and nothing changes.
    api.post("/api/v1/opt-outs", &json!({"phones": [phone(3), "nope"]}))
        .await
        .error(400);
    assert_eq!(
        api.get(&format!("/api/v1/opt-outs?phone={}", "%2B15551230003"))
            .await
            .body["optedOut"],
        false
    );
    let r = api
        .req(reqwest::Method::DELETE, "/api/v1/opt-outs")
        .json(&json!({"phones": [phone(2)]}))
        .reply()
        .await;
    assert_eq!(r.body, json!({"count": 1}));

    let c = api.campaign("http://127.0.0.1:9/x").await;
    api.audience_json(
        c,
        &json!([{"phoneE164": phone(1)}, {"phoneE164": phone(2)}]),
    )
    .await;
    let send = api
        .send(
            c,
            json!({"scheduledFor": T, "templateName": "t", "language": "en"}),
        )
        .await;
    let (eligible, summary) = api.eligible(c, send, None).await;
    assert_eq!(eligible, [phone(2)]);
    assert_eq!(summary["optedOut"], 1);
    // Another org's opt-outs are its own.
    let other = Api::new(&s, ORG + 1);
    assert_eq!(
        other
            .get(&format!("/api/v1/opt-outs?phone={}", "%2B15551230001"))
            .await
            .body["optedOut"],
        false
    );
}

#[tokio::test]
async fn sends_take_an_instant_or_a_local_time_in_an_iana_zone() {
    let s = server().await;
    let api = Api::new(&s, ORG);
    let c = api.campaign("http://127.0.0.1:9/x").await;
    let at = |body: Value| {
        let api = &api;
        async move {
            let r = api
                .post(&format!("/api/v1/campaigns/{c}/sends"), &body)
                .await;
            assert_eq!(r.status, 201, "{}", r.body);
            r.body["scheduledFor"].as_str().unwrap().to_owned()
        }
    };
    let base = |local: &str| json!({"localTime": local, "timeZone": "America/New_York", "templateName": "t", "language": "en"});
    assert_eq!(at(base("2026-06-01T09:00")).await, "2026-06-01T13:00:00Z");
    assert_eq!(at(base("2026-01-15T09:00")).await, "2026-01-15T14:00:00Z");
    // 02:30 does not exist on 2026-03-08 there: moved forward by the gap (03:30 EDT).
    assert_eq!(at(base("2026-03-08T02:30")).await, "2026-03-08T07:30:00Z");
    // 01:30 happens twice on 2026-11-01: the first (EDT).
    assert_eq!(at(base("2026-11-01T01:30")).await, "2026-11-01T05:30:00Z");
    assert_eq!(
        at(json!({"scheduledFor": "2026-06-01T09:00:00-04:00", "templateName": "t", "language": "en"})).await,
        "2026-06-01T13:00:00Z"
    );
    let bad = |body: Value| {
        let api = &api;
        async move {
            api.post(&format!("/api/v1/campaigns/{c}/sends"), &body)
                .await
        }
    };
    assert!(bad(json!({"localTime": "2026-06-01T09:00", "timeZone": "Mars/Olympus", "templateName": "t", "language": "en"}))
        .await
        .error(400)
        .contains("IANA"));
    assert!(bad(json!({"templateName": "t", "language": "en"}))
        .await
        .error(400)
        .contains("scheduledFor"));
    bad(json!({"scheduledFor": T, "templateName": "t", "language": "en", "eventFilter": {"mode": "maybe", "eventType": "x"}}))
        .await
        .error(400);
    bad(json!({"scheduledFor": T, "language": "en"}))
        .await
        .error(400);
    let list = api.get(&format!("/api/v1/campaigns/{c}/sends")).await;
    assert_eq!(list.body.as_array().unwrap().len(), 5);
}

/// Four leads: 1 bought 121 min before T, 2 exactly 120 min before, 3 at T, 4 one
/// minute after T; 5 has no events at all.
async fn filter_fixture(api: &Api<'_>) -> i64 {
    api.events(
        "purchase",
        vec![
            ev(1, "2026-05-12T16:33:00Z"),
            ev(2, "2026-05-12T16:34:00Z"),
            // The same instant as T, written with an offset.
            ev(3, "2026-05-12T13:34:00-05:00"),
            ev(4, "2026-05-12T18:35:00Z"),
        ],
    )
    .await;
    let c = api.campaign("http://127.0.0.1:9/x").await;
    let leads: Vec<Value> = (1..=5)
        .map(|n| json!({"phoneE164": phone(n), "externalId": format!("ext{n}")}))
        .collect();
    api.audience_json(c, &json!(leads)).await;
    c
}

#[tokio::test]
async fn event_filters_are_evaluated_at_the_send_instant() {
    let s = server().await;
    let api = Api::new(&s, ORG);
    let c = filter_fixture(&api).await;
    let send = |f: Value| {
        let api = &api;
        async move {
            api.send(
                c,
                json!({"scheduledFor": T, "templateName": "t", "language": "en", "eventFilter": f}),
            )
            .await
        }
    };
    // Window: 120 minutes before T and T itself are inside; after T is outside.
    let w =
        send(json!({"mode": "include", "eventType": "purchase", "within": {"minutes": 120}})).await;
    let (e, summary) = api.eligible(c, w, None).await;
    assert_eq!(e, [phone(2), phone(3)]);
    assert_eq!(
        summary,
        json!({"audience": 5, "optedOut": 0, "audienceFilter": 0, "eventFilter": 3, "eligible": 2})
    );
    // No window: any event at or before T.
    let sticky = send(json!({"mode": "include", "eventType": "purchase"})).await;
    assert_eq!(
        api.eligible(c, sticky, None).await.0,
        [phone(1), phone(2), phone(3)]
    );
    // Exclude keeps the leads with no event, and the one whose event is after T.
    let ex = send(json!({"mode": "exclude", "eventType": "purchase"})).await;
    assert_eq!(api.eligible(c, ex, None).await.0, [phone(4), phone(5)]);
    // Case-sensitive event types: nobody has "Purchase".
    let case = send(json!({"mode": "include", "eventType": "Purchase"})).await;
    assert!(api.eligible(c, case, None).await.0.is_empty());
    // `at` evaluates at another instant: a minute later lead 4's event counts.
    let later = api
        .eligible(c, sticky, Some("2026-05-12T18:35:00Z"))
        .await
        .0;
    assert_eq!(later, [phone(1), phone(2), phone(3), phone(4)]);
    // Read your writes: an event acknowledged just now is seen by the next call.
    api.events("purchase", vec![ev(5, "2026-05-12T18:00:00Z")])
        .await;
    assert_eq!(api.eligible(c, ex, None).await.0, [phone(4)]);
}

#[tokio::test]
async fn audience_filter_ands_with_the_event_filter_latest_wins_and_closes_5_minutes_before() {
    let s = server().await;
    let api = Api::new(&s, ORG);
    let c = filter_fixture(&api).await;
    let soon = from_now(Duration::from_secs(3600));
    let send = api
        .send(
            c,
            json!({"scheduledFor": soon, "templateName": "t", "language": "en", "useAudienceFilter": true,
                   "eventFilter": {"mode": "exclude", "eventType": "purchase", "within": {"minutes": 525600}}}),
        )
        .await;
    let filter = |mode: &str, leads: Value| json!({"campaignId": c, "sendId": send, "mode": mode, "leads": leads});
    let r = api
        .post(
            "/api/v1/webhooks/campaigns/audience-filter",
            &filter("include", json!([{"externalId": "ext1"}, {"externalId": "EXT5"}, {"phoneE164": "1 555 123 0005"}, {"externalId": "ext1"}])),
        )
        .await;
    assert_eq!(
        r.body,
        json!({"status": "accepted", "leadCount": 3}),
        "{}",
        r.body
    );
    // ext1 has a purchase (excluded by the event filter); EXT5 matches nobody
    // (case-sensitive); lead 5 is listed by phone and has no purchase.
    let (e, summary) = api.eligible(c, send, None).await;
    assert_eq!(e, [phone(5)]);
    assert_eq!(summary["audienceFilter"], 3);
    assert_eq!(summary["eventFilter"], 1);
    // The latest filter wins.
    api.post(
        "/api/v1/webhooks/campaigns/audience-filter",
        &filter("exclude", json!([{"externalId": "ext5"}])),
    )
    .await
    .accepted();
    // Lead 5 is dropped by it now; leads 1 to 4 bought within the year before T.
    let (e, summary) = api.eligible(c, send, None).await;
    assert!(e.is_empty(), "{e:?}");
    assert_eq!(
        (&summary["audienceFilter"], &summary["eventFilter"]),
        (&json!(1), &json!(4))
    );
    // Bad input changes nothing.
    api.post(
        "/api/v1/webhooks/campaigns/audience-filter",
        &filter("include", json!([{"phoneE164": "nope"}])),
    )
    .await
    .error(400);
    assert_eq!(api.eligible(c, send, None).await.1["audienceFilter"], 1);
    // Less than 5 minutes before the instant: 409.
    let close = api
        .send(c, json!({"scheduledFor": from_now(Duration::from_secs(240)), "templateName": "t", "language": "en", "useAudienceFilter": true}))
        .await;
    let msg = api
        .post(
            "/api/v1/webhooks/campaigns/audience-filter",
            &json!({"campaignId": c, "sendId": close, "mode": "include", "leads": []}),
        )
        .await
        .error(409)
        .to_owned();
    assert!(msg.contains("5 minutes"), "{msg}");
}

/// Now plus `ahead`, as RFC 3339 UTC.
fn from_now(ahead: Duration) -> String {
    let t = std::time::SystemTime::now() + ahead;
    let us = t.duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as i64;
    leadstream_pipeline::time::format_rfc3339_us(us)
}

#[tokio::test]
async fn materialization_publishes_signed_deliveries_once_per_lead() {
    let s = server().await;
    let api = Api::new(&s, ORG);
    let rx = Receiver::start().await;
    let c = api.campaign(&rx.url("sends")).await;
    api.events("purchase", vec![ev(1, "2026-05-12T16:33:00Z")])
        .await;
    api.audience_json(
        c,
        &json!([{"phoneE164": phone(1)}, {"phoneE164": phone(2), "externalId": "x2", "variables": {"name": "Bo"}}, {"phoneE164": phone(3)}]),
    )
    .await;
    api.post("/api/v1/opt-outs", &json!({"phones": [phone(3)]}))
        .await;
    let send = api
        .send(
            c,
            json!({"scheduledFor": T, "templateName": "welcome", "language": "en_US",
                        "eventFilter": {"mode": "exclude", "eventType": "purchase"}}),
        )
        .await;
    let path = format!("/api/v1/campaigns/{c}/sends/{send}/materialize");
    let r = api.post(&path, &json!({})).await;
    assert_eq!(
        r.body,
        json!({"emitted": 1, "alreadyEmitted": 0}),
        "{}",
        r.body
    );
    // Events after materialization change nothing: the set is fixed.
    api.events("other", vec![ev(2, "2026-05-12T16:33:00Z")])
        .await;
    api.post("/api/v1/opt-outs", &json!({"phones": [phone(2)]}))
        .await;
    let again = api.post(&path, &json!({})).await;
    assert_eq!(again.body, json!({"emitted": 0, "alreadyEmitted": 1}));

    let ep = api.get(&format!("/api/v1/campaigns/{c}")).await.body["endpointId"]
        .as_i64()
        .unwrap();
    let secret = api.secret(ep).await;
    let until = Instant::now() + Duration::from_secs(20);
    while rx.seen("sends").is_empty() {
        assert!(Instant::now() < until, "no delivery arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = rx.seen("sends");
    assert_eq!(got.len(), 1);
    standardwebhooks::Webhook::new(&secret)
        .unwrap()
        .verify(&got[0].body, &got[0].headers)
        .expect("signed with the campaign endpoint's secret");
    let body: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(
        body,
        json!({"type": "campaign_send", "campaignId": c, "sendId": send, "scheduledFor": T,
               "phoneE164": phone(2), "externalId": "x2", "variables": {"name": "Bo"},
               "templateName": "welcome", "language": "en_US"})
    );
    // Progress, in the send and in the delivery log.
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let x = api
            .get(&format!("/api/v1/campaigns/{c}/sends/{send}"))
            .await
            .body;
        if x["delivered"] == 1 {
            assert_eq!(
                (&x["emitted"], &x["failed"], &x["pending"]),
                (&json!(1), &json!(0), &json!(0))
            );
            assert!(x["materializedAt"].is_string());
            break;
        }
        assert!(Instant::now() < until, "{x}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = api.get("/api/v1/deliveries?eventType=campaign_send").await;
    assert_eq!(log.body["data"].as_array().unwrap().len(), 1);
    // What an SRE watches: leads emitted, and how long eligibility took by engine.
    crate::metrics::scrape_until(
        &s,
        &[
            "leadstream_campaign_leads_emitted_total 1",
            "leadstream_eligibility_duration_seconds_count{engine=\"index\"} 1",
        ],
    )
    .await;
    // Scheduled with its only send already emitted: nothing is left, it completes.
    let r = api
        .post(&format!("/api/v1/campaigns/{c}/schedule"), &json!({}))
        .await;
    assert_eq!(r.body["state"], "completed", "{}", r.body);
    // A paused campaign is not materialized.
    let c2 = api.campaign(&rx.url("sends2")).await;
    let send2 = api
        .send(c2, json!({"scheduledFor": from_now(Duration::from_secs(3600)), "templateName": "t", "language": "en"}))
        .await;
    api.post(&format!("/api/v1/campaigns/{c2}/schedule"), &json!({}))
        .await;
    api.post(&format!("/api/v1/campaigns/{c2}/pause"), &json!({}))
        .await;
    let msg = api
        .post(
            &format!("/api/v1/campaigns/{c2}/sends/{send2}/materialize"),
            &json!({}),
        )
        .await
        .error(409)
        .to_owned();
    assert!(msg.contains("paused"), "{msg}");
}

#[tokio::test]
async fn the_scheduler_materializes_due_sends_and_completes_the_campaign() {
    let s = server().await;
    let api = Api::new(&s, ORG);
    let rx = Receiver::start().await;
    let c = api.campaign(&rx.url("auto")).await;
    api.audience_json(
        c,
        &json!([{"phoneE164": phone(1)}, {"phoneE164": phone(2)}]),
    )
    .await;
    // Due within materialize_ahead (60 s): materialized once the campaign is scheduled.
    let send = api
        .send(c, json!({"scheduledFor": from_now(Duration::from_secs(30)), "templateName": "t", "language": "en"}))
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let draft = api
        .get(&format!("/api/v1/campaigns/{c}/sends/{send}"))
        .await
        .body;
    assert!(
        draft["materializedAt"].is_null(),
        "a draft is not materialized: {draft}"
    );
    api.post(&format!("/api/v1/campaigns/{c}/schedule"), &json!({}))
        .await;
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let campaign = api.get(&format!("/api/v1/campaigns/{c}")).await.body;
        if campaign["state"] == "completed" {
            break;
        }
        assert!(Instant::now() < until, "{campaign}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let x = api
        .get(&format!("/api/v1/campaigns/{c}/sends/{send}"))
        .await
        .body;
    assert_eq!(x["emitted"], 2, "{x}");
    // Completed: no more sends.
    api.post(
        &format!("/api/v1/campaigns/{c}/sends"),
        &json!({"scheduledFor": T, "templateName": "t", "language": "en"}),
    )
    .await
    .error(409);
}

#[tokio::test]
async fn kill_9_in_the_middle_of_a_large_send_emits_every_lead_exactly_once() {
    let mut s = server().await;
    let key;
    let c;
    let send;
    const LEADS: u32 = 30_000;
    {
        let api = Api::new(&s, ORG);
        key = api.key.clone();
        // Deliveries go nowhere fast (a closed port): they fail and are logged, which
        // is all this test needs; the emission is what is checked.
        c = api.campaign("http://127.0.0.1:9/closed").await;
        let mut csv = String::from("phone\n");
        for n in 0..LEADS {
            csv.push_str(&format!("+1646{:07}\n", 2_000_000 + n));
        }
        let r = api.audience_csv(c, csv).await;
        assert_eq!(r.body["accepted"], LEADS, "{}", r.body);
        send = api
            .send(
                c,
                json!({"scheduledFor": T, "templateName": "t", "language": "en"}),
            )
            .await;
        api.post(&format!("/api/v1/campaigns/{c}/schedule"), &json!({}))
            .await;
        // Kill as soon as the first chunks are emitted.
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let x = api
                .get(&format!("/api/v1/campaigns/{c}/sends/{send}"))
                .await
                .body;
            let emitted = x["emitted"].as_u64().unwrap_or(0);
            if emitted > 0 {
                assert!(
                    emitted < u64::from(LEADS),
                    "the send finished before the kill: {x}"
                );
                break;
            }
            assert!(Instant::now() < until, "{x}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    s.kill9();
    s.restart().await;
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let x = s
            .client()
            .get(s.url(&format!("/api/v1/campaigns/{c}/sends/{send}")))
            .bearer_auth(&key)
            .reply()
            .await
            .body;
        if x["emitted"] == LEADS {
            break;
        }
        assert!(Instant::now() < until, "{x}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Exactly one delivery per lead: none twice, none lost (each delivery's own part
    // of the body names its lead).
    let conn = rusqlite::Connection::open(s.data_dir().join("webhooks.db")).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    let (deliveries, leads): (i64, i64) = conn
        .query_row(
            "SELECT count(*), count(DISTINCT part) FROM deliveries WHERE event_type = 'campaign_send'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((deliveries, leads), (i64::from(LEADS), i64::from(LEADS)));
    let again = s
        .client()
        .post(s.url(&format!("/api/v1/campaigns/{c}/sends/{send}/materialize")))
        .bearer_auth(&key)
        .reply()
        .await;
    assert_eq!(again.body, json!({"emitted": 0, "alreadyEmitted": LEADS}));
}

#[tokio::test]
async fn clickhouse_and_the_event_index_give_identical_answers() {
    let ch = crate::support_clickhouse::ClickHouseServer::start();
    let s = TestServer::builder()
        .env("LEADSTREAM_CLICKHOUSE_URL", ch.url())
        .env("LEADSTREAM_CLICKHOUSE_DATABASE", "sends")
        .env("LEADSTREAM_DELIVERY_ALLOW_PRIVATE_TARGETS", "true")
        .start()
        .await;
    let api = Api::new(&s, ORG);
    let c = filter_fixture(&api).await;
    // Another org's events and another type: neither may count.
    let other = Api::new(&s, ORG + 1);
    let r = other
        .post(
            "/api/v1/webhooks/lead-events",
            &batch(ORG + 1, "purchase", vec![ev(5, "2026-05-12T18:00:00Z")]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    api.events("refund", vec![ev(5, "2026-05-12T18:00:00Z")])
        .await;
    api.post("/api/v1/opt-outs", &json!({"phones": [phone(2)]}))
        .await;
    let filters = [
        json!({"mode": "include", "eventType": "purchase", "within": {"minutes": 120}}),
        json!({"mode": "include", "eventType": "purchase", "within": {"minutes": 0}}),
        json!({"mode": "include", "eventType": "purchase"}),
        json!({"mode": "exclude", "eventType": "purchase"}),
        json!({"mode": "exclude", "eventType": "purchase", "within": {"minutes": 60}}),
        json!({"mode": "include", "eventType": "Purchase"}),
    ];
    for f in filters {
        let send = api
            .send(
                c,
                json!({"scheduledFor": T, "templateName": "t", "language": "en", "eventFilter": f}),
            )
            .await;
        for at in ["", "&at=2026-05-12T18:35:00Z", "&at=2026-05-12T16:34:00Z"] {
            let (ix, ix_summary, used) = api
                .eligible_query(c, send, &format!("engine=index{at}"))
                .await;
            assert_eq!(used, "index");
            let (chq, ch_summary, used) = api
                .eligible_query(c, send, &format!("engine=clickhouse{at}"))
                .await;
            assert_eq!(used, "clickhouse");
            assert_eq!(
                (&ix, &ix_summary),
                (&chq, &ch_summary),
                "filter {f} at {at:?}"
            );
        }
    }
    // A small audience without Kafka: auto answers from the index.
    let send = api
        .send(
            c,
            json!({"scheduledFor": T, "templateName": "t", "language": "en"}),
        )
        .await;
    assert_eq!(api.eligible_query(c, send, "").await.2, "index");
    // Without ClickHouse, asking for it is a 400 that says what to set.
    let plain = server().await;
    let api = Api::new(&plain, ORG);
    let c = api.campaign("http://127.0.0.1:9/x").await;
    let send = api
        .send(
            c,
            json!({"scheduledFor": T, "templateName": "t", "language": "en"}),
        )
        .await;
    let r = api
        .post(
            &format!("/api/v1/campaigns/{c}/sends/{send}/eligible?engine=clickhouse"),
            &json!({}),
        )
        .await;
    assert!(r.error(400).contains("LEADSTREAM_CLICKHOUSE_URL"));
}

#[tokio::test]
async fn deliveries_wait_for_the_send_instant_and_a_deleted_endpoint_stops_the_send() {
    let s = server().await;
    let api = Api::new(&s, ORG);
    let rx = Receiver::start().await;
    let c = api.campaign(&rx.url("timed")).await;
    api.audience_json(c, &json!([{"phoneE164": phone(1)}]))
        .await;
    let at = std::time::SystemTime::now() + Duration::from_secs(3);
    let send = api
        .send(c, json!({"scheduledFor": from_now(Duration::from_secs(3)), "templateName": "t", "language": "en"}))
        .await;
    let m = api
        .post(
            &format!("/api/v1/campaigns/{c}/sends/{send}/materialize"),
            &json!({}),
        )
        .await;
    assert_eq!(m.body["emitted"], 1, "{}", m.body);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        rx.seen("timed").is_empty(),
        "delivered before the send's instant"
    );
    let until = Instant::now() + Duration::from_secs(20);
    while rx.seen("timed").is_empty() {
        assert!(Instant::now() < until, "not delivered after the instant");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(std::time::SystemTime::now() + Duration::from_millis(100) >= at);

    // The campaign's endpoint deleted: the next send cannot go anywhere, and says so.
    let ep = api.get(&format!("/api/v1/campaigns/{c}")).await.body["endpointId"]
        .as_i64()
        .unwrap();
    api.delete(&format!("/api/webhooks/delete?id={ep}")).await;
    let send = api
        .send(
            c,
            json!({"scheduledFor": T, "templateName": "t", "language": "en"}),
        )
        .await;
    let msg = api
        .post(
            &format!("/api/v1/campaigns/{c}/sends/{send}/materialize"),
            &json!({}),
        )
        .await
        .error(409)
        .to_owned();
    assert!(msg.contains("deleted"), "{msg}");
    let x = api
        .get(&format!("/api/v1/campaigns/{c}/sends/{send}"))
        .await
        .body;
    assert_eq!(x["emitted"], 0, "{x}");
}

#[tokio::test]
async fn cancelling_stops_a_send_between_chunks() {
    let s = server().await;
    let api = Api::new(&s, ORG);
    const LEADS: u32 = 60_000;
    let c = api.campaign("http://127.0.0.1:9/closed").await;
    let mut csv = String::from("phone\n");
    for n in 0..LEADS {
        csv.push_str(&format!("+1646{:07}\n", 3_000_000 + n));
    }
    assert_eq!(api.audience_csv(c, csv).await.body["accepted"], LEADS);
    let send = api
        .send(
            c,
            json!({"scheduledFor": T, "templateName": "t", "language": "en"}),
        )
        .await;
    api.post(&format!("/api/v1/campaigns/{c}/schedule"), &json!({}))
        .await;
    let path = format!("/api/v1/campaigns/{c}/sends/{send}");
    let until = Instant::now() + Duration::from_secs(60);
    while api.get(&path).await.body["emitted"].as_u64().unwrap_or(0) == 0 {
        assert!(Instant::now() < until);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let r = api
        .post(&format!("/api/v1/campaigns/{c}/cancel"), &json!({}))
        .await;
    assert_eq!(r.body["state"], "cancelled", "{}", r.body);
    let stopped_at = api.get(&path).await.body["emitted"].as_u64().unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let later = api.get(&path).await.body["emitted"].as_u64().unwrap();
    // At most the chunk in flight at the cancel (2,000 leads) lands after it.
    assert!(later <= stopped_at + 2_000, "{stopped_at} then {later}");
    assert!(
        later < u64::from(LEADS),
        "the whole send went out after the cancel"
    );
    assert_eq!(
        api.get(&format!("/api/v1/campaigns/{c}")).await.body["state"],
        "cancelled"
    );
}

#[tokio::test]
async fn a_csv_cut_off_mid_row_is_an_error_and_its_last_row_is_not_stored() {
    use tokio::io::AsyncWriteExt;
    let s = server().await;
    let api = Api::new(&s, ORG);
    let c = api.campaign("http://127.0.0.1:9/x").await;
    let mut sock = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
    let head = format!(
        "POST /api/v1/campaigns/{c}/audience HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: text/csv\r\nTransfer-Encoding: chunked\r\n\r\n",
        api.key
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    // "+1555123000" is a whole phone of its own; the row meant +15551230001.
    let chunk = "phone\n+15551230002\n+1555123000";
    sock.write_all(format!("{:x}\r\n{chunk}\r\n", chunk.len()).as_bytes())
        .await
        .unwrap();
    sock.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(sock);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = api.get(&format!("/api/v1/campaigns/{c}")).await.body;
    assert_eq!(
        got["audienceSize"], 0,
        "a cut-off upload stored rows: {got}"
    );
}

/// A row far over the row cap is refused while it is read (the server never holds
/// it), the rows after it are taken, and an upload counts in the body budget.
#[tokio::test]
async fn an_oversized_csv_row_is_refused_unread_and_the_upload_goes_on() {
    let s = TestServer::builder()
        .env("LEADSTREAM_DELIVERY_ALLOW_PRIVATE_TARGETS", "true")
        .start()
        .await;
    let api = Api::new(&s, ORG);
    let c = api.campaign("http://127.0.0.1:9/x").await;
    let csv = format!(
        "phone,note\n+14155550100,a\n+14155550101,{}\n+14155550102,c\n",
        "x".repeat(8 * 1024 * 1024)
    );
    let r = api.audience_csv(c, csv).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        (
            &r.body["received"],
            &r.body["accepted"],
            &r.body["rejected"]
        ),
        (&json!(3), &json!(2), &json!(1)),
        "{}",
        r.body
    );
    assert_eq!(r.body["rejects"][0]["row"], 2);
    assert!(
        r.body["rejects"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("over 64 KB"),
        "{}",
        r.body
    );

    // Uploads count in the body budget for as long as they stream: with the smallest
    // budget (10 MB), two slow uploads hold it, and a third is 503 until one ends.
    use tokio::io::AsyncWriteExt;
    let tight = TestServer::builder()
        .env("LEADSTREAM_DELIVERY_ALLOW_PRIVATE_TARGETS", "true")
        .config("[http]\nmax_body_bytes_in_flight = 10485760\n")
        .start()
        .await;
    let api = Api::new(&tight, ORG);
    let c = api.campaign("http://127.0.0.1:9/x").await;
    let mut slow = Vec::new();
    for _ in 0..2 {
        let mut sock = tokio::net::TcpStream::connect(tight.addr()).await.unwrap();
        let head = format!(
            "POST /api/v1/campaigns/{c}/audience HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
             Content-Type: text/csv\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nphone\n\r\n",
            api.key
        );
        sock.write_all(head.as_bytes()).await.unwrap();
        sock.flush().await.unwrap();
        slow.push(sock);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = api
        .audience_csv(c, "phone\n+14155550100\n".to_owned())
        .await;
    assert_eq!(r.status, 503, "{}", r.body);
    drop(slow);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = api
        .audience_csv(c, "phone\n+14155550100\n".to_owned())
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

/// The sends list keeps its bare array and pages: newest first, `limit` at a time, the
/// next page in a `Link` header until the last; each row's counts are the ones the
/// send alone answers, and the campaign page's audience sizes the campaign's.
#[tokio::test]
async fn the_sends_list_pages_with_a_link_header_and_keeps_its_bare_array() {
    let s = server().await;
    let api = Api::new(&s, ORG);
    let rx = Receiver::start().await;
    let c = api.campaign(&rx.url("sends")).await;
    api.audience_json(
        c,
        &json!([{"phoneE164": phone(1)}, {"phoneE164": phone(2)}]),
    )
    .await;
    let mut made = Vec::new();
    for i in 0..5 {
        made.push(
            api.send(
                c,
                json!({"scheduledFor": T, "templateName": format!("t{i}"), "language": "en"}),
            )
            .await,
        );
    }
    // One send emitted and delivered, so its row has counts to show.
    let done = made[1];
    let path = format!("/api/v1/campaigns/{c}/sends/{done}/materialize");
    assert_eq!(api.post(&path, &json!({})).await.body["emitted"], 2);
    let until = Instant::now() + Duration::from_secs(20);
    let alone = loop {
        let x = api
            .get(&format!("/api/v1/campaigns/{c}/sends/{done}"))
            .await
            .body;
        if x["delivered"] == 2 {
            break x;
        }
        assert!(Instant::now() < until, "{x}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    made.reverse();

    let pages = api
        .pages_by_link(&format!("/api/v1/campaigns/{c}/sends?limit=2"))
        .await;
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        [2, 2, 1],
        "{pages:?}"
    );
    let rows: Vec<&Value> = pages.iter().flatten().collect();
    let ids: Vec<i64> = rows.iter().map(|x| x["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, made, "every send once, newest first");
    let listed = rows.iter().find(|x| x["id"] == done).unwrap();
    assert_eq!(**listed, alone);
    assert!(rows
        .iter()
        .filter(|x| x["id"] != done)
        .all(|x| x["emitted"] == 0 && x["pending"] == 0));
    // Without limit: every send (up to 1000), so all five, and no Link.
    let all = api
        .pages_by_link(&format!("/api/v1/campaigns/{c}/sends"))
        .await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].len(), 5);
    api.assert_bad_paging_refused(&format!("/api/v1/campaigns/{c}/sends"))
        .await;
    // Another list's cursor is not this one's.
    api.campaign("http://127.0.0.1:9/y").await;
    let campaigns = api.get("/api/v1/campaigns?limit=1").await;
    let theirs = campaigns.body["nextCursor"].as_str().unwrap();
    api.get(&format!("/api/v1/campaigns/{c}/sends?cursor={theirs}"))
        .await
        .error(400);
    // The campaign page's audience size is the campaign's.
    let page = api.pages_by_cursor("/api/v1/campaigns?limit=1").await;
    let listed = page.iter().flatten().find(|x| x["id"] == c).unwrap();
    assert_eq!(listed["audienceSize"], 2);
    assert_eq!(
        *listed,
        api.get(&format!("/api/v1/campaigns/{c}")).await.body
    );
}
