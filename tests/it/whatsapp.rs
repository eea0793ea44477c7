//! WhatsApp Cloud API webhooks over real sockets: registration, Meta's handshake, the
//! signature, redeliveries, and what messages and statuses cause (seeds 000, 002, 003)
//! at a real receiver; `conversation_inactive` for real with a short duration, and
//! across a kill -9.

use crate::api::Api;
use crate::receiver::{Receiver, Step};
use crate::support::{Call, TestServer};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::time::{Duration, Instant};

const ORG: i64 = 11;
pub(crate) const SECRET: &str = "meta-app-secret";

async fn server(inactive_after: &str) -> TestServer {
    TestServer::builder()
        .env("LEADSTREAM_DELIVERY_ALLOW_PRIVATE_TARGETS", "true")
        .env("LEADSTREAM_CONVERSATION_INACTIVE_AFTER", inactive_after)
        .start()
        .await
}

fn sign(body: &[u8]) -> String {
    sign_with(SECRET, body)
}

fn sign_with(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

pub(crate) fn message(id: &str, from: &str, at: i64, text: &str) -> Value {
    json!({"object": "whatsapp_business_account", "entry": [{"id": "WABA", "changes": [{
        "field": "messages",
        "value": {"messaging_product": "whatsapp",
                  "metadata": {"display_phone_number": "15550001111", "phone_number_id": "1234"},
                  "contacts": [{"profile": {"name": "Kerry Fisher"}, "wa_id": from}],
                  "messages": [{"from": from, "id": id, "timestamp": at.to_string(),
                                "type": "text", "text": {"body": text}}]}}]}]})
}

fn failed_status(id: &str, to: &str, at: i64) -> Value {
    json!({"object": "whatsapp_business_account", "entry": [{"id": "WABA", "changes": [{
        "field": "messages",
        "value": {"messaging_product": "whatsapp",
                  "metadata": {"display_phone_number": "15550001111", "phone_number_id": "1234"},
                  "statuses": [{"id": id, "status": "failed", "timestamp": at.to_string(),
                                "recipient_id": to,
                                "errors": [{"code": 131026, "title": "Message undeliverable",
                                            "message": "Message failed to send because there were one or more errors related to your phone number.",
                                            "error_data": {"details": "The message could not be delivered."}}]}]}}]}]})
}

async fn post_hook(
    s: &TestServer,
    integration: i64,
    body: &Value,
    signature: Option<&str>,
) -> crate::support::Reply {
    let bytes = serde_json::to_vec(body).unwrap();
    let mut req = s
        .client()
        .post(s.url(&format!(
            "/api/v1/integrations/whatsapp/{integration}/webhook"
        )))
        .header("content-type", "application/json");
    if let Some(sig) = signature {
        req = req.header("x-hub-signature-256", sig);
    }
    req.body(bytes).reply().await
}

pub(crate) async fn signed(s: &TestServer, integration: i64, body: &Value) -> Value {
    let sig = sign(&serde_json::to_vec(body).unwrap());
    let r = post_hook(s, integration, body, Some(&sig)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

async fn received(
    rx: &Receiver,
    name: &str,
    n: usize,
    within: Duration,
) -> Vec<crate::receiver::Received> {
    let until = Instant::now() + within;
    loop {
        let seen = rx.seen(name);
        if seen.len() >= n {
            return seen;
        }
        assert!(Instant::now() < until, "{name}: {} of {n}", seen.len());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `reason` of each dead-lettered record.
fn reasons_of(letters: &[rdkafka::message::OwnedMessage]) -> Vec<String> {
    letters
        .iter()
        .map(|m| {
            let v: Value =
                serde_json::from_slice(rdkafka::message::Message::payload(m).unwrap()).unwrap();
            v["reason"].as_str().unwrap().to_owned()
        })
        .collect()
}

pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn integration(api: &Api<'_>, id: i64) {
    let r = api
        .post(
            "/api/v1/integrations/whatsapp",
            &json!({"botIntegrationId": id, "botId": 123, "appSecret": SECRET, "verifyToken": "vt-1"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["hasAppSecret"], true);
}

#[tokio::test]
async fn registration_handshake_and_authentication() {
    let s = server("23h").await;
    let api = Api::new(&s, ORG);
    integration(&api, 456).await;
    let again = api
        .post(
            "/api/v1/integrations/whatsapp",
            &json!({"botIntegrationId": 456}),
        )
        .await;
    assert_eq!(again.status, 409, "{}", again.body);
    // Meta's handshake.
    let hs = |token: &str| {
        s.client().get(s.url(&format!(
            "/api/v1/integrations/whatsapp/456/webhook?hub.mode=subscribe&hub.verify_token={token}&hub.challenge=1158201444"
        )))
    };
    let ok = hs("vt-1").send().await.unwrap();
    assert_eq!(ok.status(), 200);
    assert!(ok.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    assert_eq!(ok.text().await.unwrap(), "1158201444");
    let wrong = hs("wrong").send().await.unwrap();
    assert_eq!(wrong.status(), 403);
    let wrong = wrong.text().await.unwrap();
    // An unknown integration answers as a wrong token: nothing tells which ids exist.
    let unknown = s
        .client()
        .get(s.url("/api/v1/integrations/whatsapp/999/webhook?hub.mode=subscribe&hub.verify_token=vt-1&hub.challenge=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 403);
    assert_eq!(unknown.text().await.unwrap(), wrong);
    // The webhook: a bad or missing signature is 401 and takes nothing; the org's API
    // key or a good signature is 200.
    let body = message("wamid.A1", "16315551234", now_secs(), "hi");
    let unsigned = post_hook(&s, 456, &body, None).await;
    assert_eq!(unsigned.status, 401);
    let badly_signed = post_hook(&s, 456, &body, Some("sha256=00ff")).await;
    assert_eq!(badly_signed.status, 401);
    assert_eq!(
        unsigned.body, badly_signed.body,
        "one answer for every reason"
    );
    let other_org = Api::new(&s, ORG + 1);
    let r = s
        .client()
        .post(s.url("/api/v1/integrations/whatsapp/456/webhook"))
        .bearer_auth(&other_org.key)
        .json(&body)
        .reply()
        .await;
    assert_eq!(r.status, 401, "another org's key");
    // An unknown integration answers as a wrong signature, with the same words.
    let unknown = post_hook(&s, 999, &body, Some(&sign(b"{}"))).await;
    assert_eq!(unknown.status, 401);
    assert_eq!(unknown.body, badly_signed.body);
    let r = api
        .req(
            reqwest::Method::POST,
            "/api/v1/integrations/whatsapp/456/webhook",
        )
        .json(&body)
        .reply()
        .await;
    assert_eq!(
        (r.status, &r.body["messages"]),
        (200, &json!(1)),
        "{}",
        r.body
    );
    // Redelivered (WhatsApp retries): nothing new, and /metrics says so.
    assert_eq!(signed(&s, 456, &body).await["messages"], 0);
    let (_, text) = crate::metrics::scrape(&s).await;
    let count = |series: &str| crate::metrics::sample(&text, series).unwrap_or(0.0);
    assert_eq!(
        count(r#"leadstream_domain_events_total{source="whatsapp",outcome="taken"}"#),
        1.0,
        "{text}"
    );
    assert_eq!(
        count(r#"leadstream_domain_events_total{source="whatsapp",outcome="repeated"}"#),
        1.0,
        "{text}"
    );
    // Not a WhatsApp body.
    let bad = json!({"object": "page", "entry": []});
    assert_eq!(
        post_hook(
            &s,
            456,
            &bad,
            Some(&sign(&serde_json::to_vec(&bad).unwrap()))
        )
        .await
        .status,
        400
    );
}

#[tokio::test]
async fn messages_and_failed_statuses_cause_seed_events_once() {
    let rx = Receiver::start().await;
    let s = server("23h").await;
    let api = Api::new(&s, ORG);
    integration(&api, 457).await;
    // The settings URL gets the seed 000 events; a registry endpoint subscribed to
    // incoming_message gets seed 002's payload; a message_failed trigger runs.
    let r = api
        .put(
            "/api/v1/organizations/current/settings",
            &json!({"webhookUrl": rx.script("settings", vec![Step::Status(200)])}),
        )
        .await;
    assert_eq!(r.status, 200);
    let inbox = api
        .endpoint(&rx.script("inbox", vec![Step::Status(200)]))
        .await;
    let r = api
        .patch(
            &format!("/api/webhooks/{inbox}"),
            &json!({"eventTypes": ["incoming_message"]}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let t = api
        .post(
            "/api/v1/triggers",
            &json!({"type": "message_failed", "name": "fallback"}),
        )
        .await
        .body["id"]
        .as_i64()
        .unwrap();
    let r = api
        .post(
            &format!("/api/v1/triggers/{t}/actions"),
            &json!({"type": "webhook", "url": rx.script("action", vec![Step::Status(200)])}),
        )
        .await;
    assert_eq!(r.status, 201);
    let at = now_secs();
    signed(
        &s,
        457,
        &message("wamid.M1", "16315551234", at, "Can I reschedule?"),
    )
    .await;
    let got = received(&rx, "inbox", 1, Duration::from_secs(20)).await;
    // The console's Contacts page: the conversation, its transcript and its timer.
    let c = api.get("/api/v1/contacts/+16315551234/conversations").await;
    assert_eq!(c.status, 200, "{}", c.body);
    let conv = &c.body["data"][0];
    assert_eq!(conv["botIntegrationId"], 457, "{}", c.body);
    assert_eq!(conv["profileName"], "Kerry Fisher");
    assert_eq!(conv["messages"][0]["content"], "Can I reschedule?");
    assert_eq!(conv["messages"][0]["sender"], "user");
    assert!(
        conv["inactiveAt"].is_string(),
        "a 23 h timer is pending: {conv}"
    );
    assert_eq!(conv["tags"], json!(["replied"]));
    let none = api.get("/api/v1/contacts/+16315550000/conversations").await;
    assert_eq!(none.body, json!({"data": []}));
    api.get("/api/v1/contacts/+16315551234/conversations?messages=0")
        .await
        .error(400);
    // The integrations, as registered (no secret in the list).
    let list = api.get("/api/v1/integrations/whatsapp").await;
    assert_eq!(
        list.body["data"][0]["botIntegrationId"], 457,
        "{}",
        list.body
    );
    assert!(!list.body.to_string().contains(SECRET));
    let incoming: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(incoming["phone_number"], "16315551234");
    assert_eq!(incoming["recipient_name"], "Kerry Fisher");
    assert_eq!(incoming["last_message_of_user"], "Can I reschedule?");
    assert_eq!(incoming["user_last_message_time"], at);
    assert_eq!(incoming["message_type"], "text");
    assert_eq!(incoming["last_messages"][0]["type"], "user");
    assert!(
        incoming["user_id"].as_str().is_some_and(|u| u.len() == 36),
        "{incoming}"
    );
    // The failed status: seed 000's message_delivery_failed, and the trigger's run.
    let failed = failed_status("wamid.HBgLNDQ3", "16315551234", at + 5);
    signed(&s, 457, &failed).await;
    let got = received(&rx, "settings", 1, Duration::from_secs(20)).await;
    let body: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(body["type"], "message_delivery_failed");
    assert_eq!(body["platformResourceId"], "wamid.HBgLNDQ3");
    assert_eq!(body["errorCode"], 131026);
    assert_eq!(body["errorDetails"], "The message could not be delivered.");
    assert_eq!(body["contactPhoneNumber"], "+16315551234");
    assert_eq!(body["contactWhatsappId"], "16315551234");
    assert_eq!(body["contactFullName"], "Kerry Fisher");
    assert_eq!(body["contactEmail"], Value::Null);
    assert_eq!(body["botIntegrationId"], 457);
    let run = received(&rx, "action", 1, Duration::from_secs(20)).await;
    let run: Value = serde_json::from_slice(&run[0].body).unwrap();
    assert_eq!(run["message"]["participant"]["phone"], "+16315551234");
    assert!(run["apptoto_id"].is_string());
    // Redelivered status: nothing new anywhere.
    assert_eq!(signed(&s, 457, &failed).await["statuses"], 0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.seen("settings").len(), 1);
    assert_eq!(rx.seen("action").len(), 1);
    assert_eq!(rx.seen("inbox").len(), 1);
}

/// For real, 1 s: conversation_inactive reaches the settings URL once, with the
/// conversation.
#[tokio::test]
async fn conversation_inactive_fires_for_real_after_a_short_duration() {
    let rx = Receiver::start().await;
    let s = server("1s").await;
    let api = Api::new(&s, ORG);
    integration(&api, 458).await;
    api.put(
        "/api/v1/organizations/current/settings",
        &json!({"webhookUrl": rx.script("settings", vec![Step::Status(200)])}),
    )
    .await;
    let at = now_secs();
    signed(
        &s,
        458,
        &message("wamid.I1", "16315551234", at, "anyone there?"),
    )
    .await;
    let got = received(&rx, "settings", 1, Duration::from_secs(20)).await;
    let body: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(body["type"], "conversation_inactive");
    assert_eq!(body["inactiveForDuration"], "PT1S");
    assert_eq!(body["conversationStatus"], json!(["replied"]));
    assert_eq!(body["botId"], 123);
    assert!(body["concatenatedConversation"]
        .as_str()
        .unwrap()
        .contains("anyone there?"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(rx.seen("settings").len(), 1, "fired twice");
    let (_, text) = crate::metrics::scrape(&s).await;
    assert!(
        text.lines()
            .any(|l| l == "leadstream_conversation_inactive_fired_total 1"),
        "{text}"
    );
}

/// A timer due while the process was down (killed with -9) fires at once on start.
#[tokio::test]
async fn a_timer_due_while_down_fires_at_once_after_kill_9() {
    let rx = Receiver::start().await;
    let mut s = server("3s").await;
    {
        let api = Api::new(&s, ORG);
        integration(&api, 459).await;
        api.put(
            "/api/v1/organizations/current/settings",
            &json!({"webhookUrl": rx.script("settings", vec![Step::Status(200)])}),
        )
        .await;
        signed(
            &s,
            459,
            &message("wamid.K1", "16315551234", now_secs(), "bye"),
        )
        .await;
    }
    s.kill9();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(rx.seen("settings").is_empty());
    s.restart().await;
    let got = received(&rx, "settings", 1, Duration::from_secs(10)).await;
    let body: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(body["type"], "conversation_inactive");
}

/// Domain events from Kafka: a WhatsApp record and an event record cause what their
/// HTTP twins do; a bad record is dead-lettered with its reason; the same records read
/// again (a second process of the group after a restart) cause nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domain_event_records_from_kafka_are_taken_once_and_bad_ones_dead_lettered() {
    let kafka = crate::support_kafka::KafkaMock::start(2);
    let rx = Receiver::start().await;
    let mut s = kafka
        .server()
        .env("LEADSTREAM_DELIVERY_ALLOW_PRIVATE_TARGETS", "true")
        .start()
        .await;
    {
        let api = Api::new(&s, ORG);
        integration(&api, 460).await;
        let inbox = api
            .endpoint(&rx.script("inbox", vec![Step::Status(200)]))
            .await;
        api.patch(
            &format!("/api/webhooks/{inbox}"),
            &json!({"eventTypes": ["incoming_message"]}),
        )
        .await;
        let t = api
            .post(
                "/api/v1/triggers",
                &json!({"type": "booking_page_viewed", "name": "viewed"}),
            )
            .await
            .body["id"]
            .as_i64()
            .unwrap();
        api.post(
            &format!("/api/v1/triggers/{t}/actions"),
            &json!({"type": "webhook", "url": rx.script("action", vec![Step::Status(200)])}),
        )
        .await;
    }
    let topic = "leadstream.domain-events";
    let wa = json!({"v": 1, "source": "whatsapp", "botIntegrationId": 460,
                    "body": message("wamid.KF1", "16315551234", now_secs(), "from kafka")});
    let ev = json!({"v": 1, "source": "event", "organizationId": ORG,
                    "body": {"type": "booking_page_viewed", "occurredAt": "2026-03-02T10:00:00Z",
                             "booking_page": {"id": 4, "name": "Intro", "url": "https://book.example/i"}}});
    kafka
        .produce_to(topic, 0, &serde_json::to_vec(&wa).unwrap())
        .await;
    kafka
        .produce_to(topic, 0, &serde_json::to_vec(&ev).unwrap())
        .await;
    // No organizationId: the integration the body names says whose it is.
    let bot = json!({"v": 1, "source": "event",
                     "body": {"type": "message_sent", "occurredAt": "2026-03-02T10:01:00Z",
                              "botIntegrationId": 460,
                              "message": {"id": 9, "participant": {"phone": "+16315551234"},
                                          "content": "bot reply"}}});
    kafka
        .produce_to(topic, 0, &serde_json::to_vec(&bot).unwrap())
        .await;
    kafka
        .produce_to(topic, 1, b"{\"v\": 1, \"source\": \"fax\", \"body\": {}}")
        .await;
    kafka.produce_to(topic, 1, b"not json").await;
    let got = received(&rx, "inbox", 1, Duration::from_secs(30)).await;
    let body: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(body["last_message_of_user"], "from kafka");
    let run = received(&rx, "action", 1, Duration::from_secs(30)).await;
    let run: Value = serde_json::from_slice(&run[0].body).unwrap();
    assert_eq!(run["booking_page"]["name"], "Intro");
    // The bot's reply joined the conversation: the next user message's payload has it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let wa2 = json!({"v": 1, "source": "whatsapp", "botIntegrationId": 460,
                     "body": message("wamid.KF2", "16315551234", now_secs(), "thanks")});
    kafka
        .produce_to(topic, 0, &serde_json::to_vec(&wa2).unwrap())
        .await;
    let got = received(&rx, "inbox", 2, Duration::from_secs(30)).await;
    let second: Value = serde_json::from_slice(&got[1].body).unwrap();
    assert_eq!(second["last_message_of_bot"], "bot reply", "{second}");
    let letters = kafka.read("leadstream.rejects", 2, 2, Duration::from_secs(20));
    assert_eq!(letters.len(), 2);
    let reasons = reasons_of(&letters);
    assert!(reasons.iter().any(|r| r.contains("fax")), "{reasons:?}");
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("not a domain-event record")),
        "{reasons:?}"
    );
    // The same records again (as after a crash before the commit): nothing twice.
    kafka
        .produce_to(topic, 0, &serde_json::to_vec(&wa).unwrap())
        .await;
    s.kill9();
    s.restart().await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(rx.seen("inbox").len(), 2, "{}", s.logs());
    assert_eq!(rx.seen("action").len(), 1);

    // Another org registers 460 too: a record that does not say whose it is goes to
    // neither (dead-lettered); one naming its organizationId goes to that org only.
    let other = Api::new(&s, ORG + 1);
    integration(&other, 460).await;
    let unnamed = json!({"v": 1, "source": "whatsapp", "botIntegrationId": 460,
                         "body": message("wamid.KF3", "16315559999", now_secs(), "whose?")});
    kafka
        .produce_to(topic, 0, &serde_json::to_vec(&unnamed).unwrap())
        .await;
    let named = json!({"v": 1, "source": "whatsapp", "botIntegrationId": 460, "organizationId": ORG + 1,
                       "body": message("wamid.KF4", "16315558888", now_secs(), "theirs")});
    kafka
        .produce_to(topic, 0, &serde_json::to_vec(&named).unwrap())
        .await;
    let letters = kafka.read("leadstream.rejects", 2, 3, Duration::from_secs(20));
    let reasons = reasons_of(&letters);
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("registered by 2 organizations")),
        "{reasons:?}"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while other.get("/api/v1/contacts/+16315558888").await.status != 200 {
        assert!(std::time::Instant::now() < deadline, "{}", s.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The first org, with a new key (the org exists since the start).
    let api = Api {
        s: &s,
        key: s.api_key(ORG).secret,
    };
    assert_eq!(api.get("/api/v1/contacts/+16315558888").await.status, 404);
    assert_eq!(api.get("/api/v1/contacts/+16315559999").await.status, 404);
    assert_eq!(other.get("/api/v1/contacts/+16315559999").await.status, 404);
}

/// An integration id is each org's own: another org registering the same id gets an
/// integration of its own (nothing of the first one's), a webhook goes to the org
/// whose secret signed it, and DELETE removes only the caller's.
#[tokio::test]
async fn an_integration_id_cannot_be_squatted_by_another_org() {
    let s = server("23h").await;
    let mine = Api::new(&s, ORG);
    let theirs = Api::new(&s, ORG + 1);
    integration(&mine, 470).await;
    let r = theirs
        .post(
            "/api/v1/integrations/whatsapp",
            &json!({"botIntegrationId": 470, "appSecret": "their-secret"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let again = theirs
        .post(
            "/api/v1/integrations/whatsapp",
            &json!({"botIntegrationId": 470}),
        )
        .await;
    assert_eq!(again.status, 409, "{}", again.body);
    assert!(again.body["error"]
        .as_str()
        .unwrap()
        .contains("this organization"));
    // Signed with the first org's secret: the first org's contact, not the other's.
    signed(
        &s,
        470,
        &message("wamid.S1", "16315551234", now_secs(), "hi"),
    )
    .await;
    assert_eq!(mine.get("/api/v1/contacts/+16315551234").await.status, 200);
    assert_eq!(
        theirs.get("/api/v1/contacts/+16315551234").await.status,
        404
    );
    // Signed with theirs: theirs only, and the same message id is new to them.
    let body = message("wamid.S1", "16315550000", now_secs(), "hey");
    let sig = sign_with("their-secret", &serde_json::to_vec(&body).unwrap());
    let r = post_hook(&s, 470, &body, Some(&sig)).await;
    assert_eq!(
        (r.status, &r.body["messages"]),
        (200, &json!(1)),
        "{}",
        r.body
    );
    assert_eq!(
        theirs.get("/api/v1/contacts/+16315550000").await.status,
        200
    );
    assert_eq!(mine.get("/api/v1/contacts/+16315550000").await.status, 404);
    // DELETE: only the caller's; then their signature no longer opens the webhook.
    let path = "/api/v1/integrations/whatsapp/470";
    assert_eq!(theirs.delete(path).await.status, 200);
    assert_eq!(theirs.delete(path).await.status, 404);
    assert_eq!(post_hook(&s, 470, &body, Some(&sig)).await.status, 401);
    let again = message("wamid.S2", "16315551234", now_secs(), "still mine");
    assert_eq!(signed(&s, 470, &again).await["messages"], 1);
}
