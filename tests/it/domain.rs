//! Domain events over real sockets: `POST /api/v1/events`, contacts, and triggers with
//! their webhook actions (seeds 000, 003, 004), delivered by the engine to a real
//! receiver.

use crate::api::Api;
use crate::receiver::{verify, Receiver, Step};
use crate::support::TestServer;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const ORG: i64 = 9;
const AT: &str = "2026-03-02T10:00:00Z";

async fn server() -> TestServer {
    TestServer::builder()
        .env("LEADSTREAM_DELIVERY_ALLOW_PRIVATE_TARGETS", "true")
        .env(
            "LEADSTREAM_DELIVERY_RETRY_SCHEDULE",
            "100ms,100ms,100ms,100ms",
        )
        .start()
        .await
}

/// Waits until `name` received `n` requests; answers them.
async fn received(rx: &Receiver, name: &str, n: usize) -> Vec<crate::receiver::Received> {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let seen = rx.seen(name);
        if seen.len() >= n {
            return seen;
        }
        assert!(
            Instant::now() < until,
            "{name}: {} of {n} requests",
            seen.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn trigger(api: &Api<'_>, kind: &str) -> i64 {
    let r = api
        .post(
            "/api/v1/triggers",
            &json!({"type": kind, "name": format!("on {kind}"), "description": "d"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body["id"].as_i64().unwrap()
}

async fn action(api: &Api<'_>, trigger: i64, url: &str) -> (i64, i64) {
    let r = api
        .post(
            &format!("/api/v1/triggers/{trigger}/actions"),
            &json!({"type": "webhook", "url": url, "name": "hook"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    (
        r.body["id"].as_i64().unwrap(),
        r.body["endpointId"].as_i64().unwrap(),
    )
}

/// Seed 003's participant, confirmed for an event.
pub(crate) fn participant() -> Value {
    json!({"id": 7, "event_id": 3, "display_name": "Ann", "name": "Ann Lee",
        "phone": "+14155550100", "normalized_phone": "+14155550100", "email": "ann@example.com",
        "state": "confirmed",
        "event": {"id": 3, "calendar_id": 1, "calendar_name": "Main", "external_id": "x-3",
                  "start_time": "2026-03-05T15:00:00Z", "end_time": "2026-03-05T16:00:00Z",
                  "all_day": false, "title": "Intro", "location": null, "content": "",
                  "custom_data": {}, "is_deleted": false}})
}

async fn event(api: &Api<'_>, body: Value) -> Value {
    let r = api.post("/api/v1/events", &body).await;
    assert_eq!(r.status, 202, "{}", r.body);
    r.body
}

#[tokio::test]
async fn a_trigger_runs_each_enabled_action_with_seed_003s_payload_once_per_event() {
    let rx = Receiver::start().await;
    let s = server().await;
    let api = Api::new(&s, ORG);
    let t = trigger(&api, "participant_confirmed").await;
    let (a1, e1) = action(&api, t, &rx.script("one", vec![Step::Status(200)])).await;
    let (_a2, _) = action(&api, t, &rx.script("two", vec![Step::Status(200)])).await;
    // Another type's trigger must not run.
    let other = trigger(&api, "message_sent").await;
    action(&api, other, &rx.script("other", vec![Step::Status(200)])).await;
    let participant = participant();
    let body = json!({"id": "evt-1", "type": "participant_confirmed", "occurredAt": AT,
                      "participant": participant});
    assert_eq!(event(&api, body.clone()).await, json!({"id": "evt-1"}));
    let one = received(&rx, "one", 1).await;
    let two = received(&rx, "two", 1).await;
    let got: Value = serde_json::from_slice(&one[0].body).unwrap();
    assert_eq!(
        got["participant"], participant,
        "the object as sent, event inside"
    );
    assert_eq!(got.as_object().unwrap().len(), 2, "{got}");
    let id1 = got["apptoto_id"].as_str().unwrap().to_owned();
    let got2: Value = serde_json::from_slice(&two[0].body).unwrap();
    assert_ne!(
        got2["apptoto_id"].as_str().unwrap(),
        id1,
        "one apptoto_id per run"
    );
    assert!(verify(&api.secret(e1).await, &one[0]), "signed");
    // The same id again causes nothing new.
    assert_eq!(event(&api, body).await, json!({"id": "evt-1"}));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.seen("one").len(), 1);
    assert!(rx.seen("other").is_empty());
    // The log of action 1: one succeeded, delivered run with its payload and answer.
    let log = api
        .get(&format!("/api/v1/triggers/{t}/actions/{a1}/log"))
        .await;
    assert_eq!(log.status, 200, "{}", log.body);
    let runs = log.body["data"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "{}", log.body);
    assert_eq!(runs[0]["state"], "succeeded");
    assert_eq!(runs[0]["delivered"], true);
    assert_eq!(runs[0]["apptotoId"], id1.as_str());
    assert_eq!(runs[0]["payload"], got);
    assert_eq!(runs[0]["response"]["status"], 200);
    let failed = api
        .get(&format!(
            "/api/v1/triggers/{t}/actions/{a1}/log?status=failed"
        ))
        .await;
    assert_eq!(failed.body["data"], json!([]));
}

#[tokio::test]
async fn disabled_triggers_and_actions_stop_without_being_deleted() {
    let rx = Receiver::start().await;
    let s = server().await;
    let api = Api::new(&s, ORG);
    let t = trigger(&api, "booking_page_viewed").await;
    let (a, _) = action(&api, t, &rx.script("hook", vec![Step::Status(200)])).await;
    let viewed = |id: &str| {
        json!({"id": id, "type": "booking_page_viewed", "occurredAt": AT,
               "booking_page": {"id": 4, "name": "Intro call", "url": "https://book.example/intro"}})
    };
    let r = api
        .put(&format!("/api/v1/triggers/{t}"), &json!({"enabled": false}))
        .await;
    assert_eq!(
        (r.status, &r.body["enabled"]),
        (200, &json!(false)),
        "{}",
        r.body
    );
    assert_eq!(r.body["type"], "booking_page_viewed", "absent fields kept");
    event(&api, viewed("v1")).await;
    let r = api
        .put(&format!("/api/v1/triggers/{t}"), &json!({"enabled": true}))
        .await;
    assert_eq!(r.status, 200);
    let r = api
        .put(
            &format!("/api/v1/triggers/{t}/actions/{a}"),
            &json!({"enabled": false}),
        )
        .await;
    assert_eq!(
        (r.status, &r.body["enabled"]),
        (200, &json!(false)),
        "{}",
        r.body
    );
    event(&api, viewed("v2")).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        rx.seen("hook").is_empty(),
        "a disabled trigger or action ran"
    );
    // Both still there; enabled again, the next event runs.
    assert_eq!(api.get(&format!("/api/v1/triggers/{t}")).await.status, 200);
    api.put(
        &format!("/api/v1/triggers/{t}/actions/{a}"),
        &json!({"enabled": true}),
    )
    .await;
    event(&api, viewed("v3")).await;
    let got: Value = serde_json::from_slice(&received(&rx, "hook", 1).await[0].body).unwrap();
    assert_eq!(got["booking_page"]["name"], "Intro call");
    // Deleted: gone, with its actions.
    let r = api.delete(&format!("/api/v1/triggers/{t}")).await;
    assert_eq!((r.status, r.body), (200, json!({"id": t, "deleted": true})));
    assert_eq!(api.get(&format!("/api/v1/triggers/{t}")).await.status, 404);
    assert_eq!(
        api.get(&format!("/api/v1/triggers/{t}/actions/{a}"))
            .await
            .status,
        404
    );
}

/// Seed 003's policy: 5xx retried up to five attempts in all, 4xx never retried.
#[tokio::test]
async fn action_runs_retry_5xx_up_to_five_attempts_and_never_4xx() {
    let rx = Receiver::start().await;
    let s = server().await;
    let api = Api::new(&s, ORG);
    let t = trigger(&api, "participant_added_to_stop_list").await;
    let (five, _) = action(&api, t, &rx.script("five", vec![Step::Status(503)])).await;
    let (four, _) = action(&api, t, &rx.script("four", vec![Step::Status(404)])).await;
    event(
        &api,
        json!({"id": "s1", "type": "participant_added_to_stop_list", "occurredAt": AT,
               "phone": "+14155550100"}),
    )
    .await;
    let fives = received(&rx, "five", 5).await;
    let got: Value = serde_json::from_slice(&fives[0].body).unwrap();
    assert_eq!(got["phone"], "+14155550100");
    assert!(
        fives.iter().all(|r| r.body == fives[0].body),
        "retries resend the same run"
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(rx.seen("five").len(), 5);
    assert_eq!(rx.seen("four").len(), 1);
    for (a, name, attempts, status) in [(five, "five", 5, 503), (four, "four", 1, 404)] {
        let log = api
            .get(&format!(
                "/api/v1/triggers/{t}/actions/{a}/log?status=failed"
            ))
            .await;
        let runs = log.body["data"].as_array().unwrap();
        assert_eq!(runs.len(), 1, "{}", log.body);
        assert_eq!(runs[0]["attempts"], attempts);
        assert_eq!(runs[0]["delivered"], false);
        assert_eq!(runs[0]["response"]["status"], status, "the last answer");
        let sent: Value = serde_json::from_slice(&rx.seen(name)[0].body).unwrap();
        assert_eq!(runs[0]["payload"], sent);
    }
}

#[tokio::test]
async fn appointment_booked_goes_to_the_settings_url_with_the_contact_as_known() {
    let rx = Receiver::start().await;
    let s = server().await;
    let api = Api::new(&s, ORG);
    let r = api
        .put(
            "/api/v1/organizations/current/settings",
            &json!({"webhookUrl": rx.script("settings", vec![Step::Status(200)])}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let secret = r.body["webhookSigningSecret"].as_str().unwrap().to_owned();
    let r = api
        .put(
            "/api/v1/contacts/+1 (415) 555-0100",
            &json!({"email": "user@example.com", "firstName": "John", "lastName": "Doe",
                    "fullName": "John Doe", "metadata": {"tier": "gold"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["phoneE164"], "+14155550100");
    event(
        &api,
        json!({"type": "appointment_booked", "occurredAt": "2025-12-04T10:30:00Z",
               "startTime": "2025-12-05T14:00:00Z", "endTime": "2025-12-05T15:00:00Z",
               "timeZone": "America/New_York", "contactPhoneNumber": "+14155550100",
               "botId": 123, "botIntegrationId": 456}),
    )
    .await;
    let got = received(&rx, "settings", 1).await;
    assert!(verify(&secret, &got[0]));
    let body: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(
        body,
        json!({
            "type": "appointment_booked",
            "timestamp": "2025-12-04T10:30:00.000Z",
            "startTime": "2025-12-05T14:00:00.000Z",
            "startTimeInTz": "2025-12-05T09:00:00-05:00",
            "endTime": "2025-12-05T15:00:00.000Z",
            "timeZone": "America/New_York",
            "contactEmail": "user@example.com",
            "contactWhatsappId": "14155550100",
            "contactPhoneNumber": "+14155550100",
            "contactFullName": "John Doe",
            "contactFirstName": "John",
            "contactLastName": "Doe",
            "contactMetadata": {"tier": "gold"},
            "concatenatedConversation": null,
            "botId": 123,
            "botIntegrationId": 456
        })
    );
    let c = api.get("/api/v1/contacts/+14155550100").await;
    assert_eq!(c.body["email"], "user@example.com");
    assert_eq!(api.get("/api/v1/contacts/+14155550199").await.status, 404);
}

/// Seed 000's own example, as is: its placeholder number is E.164 in form, and the
/// event is taken with it unchanged.
#[tokio::test]
async fn seed_000s_appointment_booked_example_is_taken_as_is() {
    let rx = Receiver::start().await;
    let s = server().await;
    let api = Api::new(&s, ORG);
    api.put(
        "/api/v1/organizations/current/settings",
        &json!({"webhookUrl": rx.script("settings", vec![Step::Status(200)])}),
    )
    .await;
    event(
        &api,
        json!({"type": "appointment_booked", "occurredAt": "2025-12-04T10:30:00.000Z",
               "startTime": "2025-12-05T14:00:00.000Z", "startTimeInTz": "2025-12-05T09:00:00-05:00",
               "endTime": "2025-12-05T15:00:00.000Z", "timeZone": "America/New_York",
               "contactEmail": "user@example.com", "contactWhatsappId": "1234567890",
               "contactPhoneNumber": "+1234567890", "contactFullName": "John Doe",
               "contactFirstName": "John", "contactLastName": "Doe", "contactMetadata": {},
               "botId": 123, "botIntegrationId": 456}),
    )
    .await;
    let got = received(&rx, "settings", 1).await;
    let body: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(body["contactPhoneNumber"], "+1234567890");
    assert_eq!(body["contactWhatsappId"], "1234567890");
    assert_eq!(body["startTimeInTz"], "2025-12-05T09:00:00-05:00");
    assert_eq!(body["contactMetadata"], json!({}));
}

#[tokio::test]
async fn every_bad_request_is_a_400_that_names_the_field() {
    let s = server().await;
    let api = Api::new(&s, ORG);
    let r = api
        .post("/api/v1/triggers", &json!({"type": "nope", "name": "x"}))
        .await;
    assert_eq!(r.status, 400);
    let msg = r.body["error"].as_str().unwrap();
    assert!(
        msg.contains("participant_confirmed") && msg.contains("message_failed"),
        "{msg}"
    );
    for (path, body, names) in [
        ("/api/v1/triggers", json!({"name": "x"}), "type"),
        ("/api/v1/triggers", json!({"type": "message_sent"}), "name"),
        (
            "/api/v1/triggers",
            json!({"type": "message_sent", "name": "x", "colour": 1}),
            "colour",
        ),
        (
            "/api/v1/events",
            json!({"type": "message_sent", "occurredAt": AT}),
            "message",
        ),
        (
            "/api/v1/events",
            json!({"type": "message_sent", "occurredAt": "now", "message": {}}),
            "occurredAt",
        ),
        (
            "/api/v1/events",
            json!({"type": "booking_request_completed", "occurredAt": AT, "booking_request": {"sign_up_page": "yes"}}),
            "booking_request.sign_up_page",
        ),
    ] {
        let r = api.post(path, &body).await;
        assert_eq!(r.status, 400, "{path} {body}: {}", r.body);
        let msg = r.body["error"].as_str().unwrap();
        assert!(msg.contains(names), "{path} {body}: {msg}");
    }
    let t = trigger(&api, "message_failed").await;
    for (body, names) in [
        (
            json!({"type": "email", "url": "https://x.example/h"}),
            "type",
        ),
        (json!({"type": "webhook"}), "url"),
        (
            json!({"type": "webhook", "url": "ftp://x.example/h"}),
            "url",
        ),
    ] {
        let r = api
            .post(&format!("/api/v1/triggers/{t}/actions"), &body)
            .await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert!(
            r.body["error"].as_str().unwrap().contains(names),
            "{}",
            r.body
        );
    }
    assert_eq!(
        api.put("/api/v1/contacts/not-a-phone", &json!({}))
            .await
            .status,
        400
    );
    // Another org sees none of it.
    let other = Api::new(&s, ORG + 1);
    assert_eq!(
        other.get(&format!("/api/v1/triggers/{t}")).await.status,
        404,
        "another org's trigger answers as a missing one"
    );
    assert_eq!(other.get("/api/v1/triggers").await.body["data"], json!([]));
}

/// A NUL character inside a contact's name: Postgres text cannot hold it, so the
/// embedded store refuses it too (one answer on both backends), and nothing of the
/// event is kept.
#[tokio::test]
async fn a_nul_character_the_shared_database_cannot_store_is_a_400_here_too() {
    let s = server().await;
    let api = Api::new(&s, ORG);
    let mut p = participant();
    p["name"] = json!("Ann\u{0}Lee");
    let r = api
        .post(
            "/api/v1/events",
            &json!({"id": "evt-nul", "type": "participant_confirmed", "occurredAt": AT,
                    "participant": p}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body["error"].as_str().unwrap().contains("NUL"),
        "{}",
        r.body
    );
    assert_eq!(api.get("/api/v1/contacts/+14155550100").await.status, 404);
    // The same event without it is taken, as new: the refused one left no trace.
    let ok = json!({"id": "evt-nul", "type": "participant_confirmed", "occurredAt": AT,
                    "participant": participant()});
    assert_eq!(event(&api, ok).await, json!({"id": "evt-nul"}));
    assert_eq!(api.get("/api/v1/contacts/+14155550100").await.status, 200);
}

/// Triggers (newest first) and a trigger's actions (oldest first) page with `limit`
/// and `nextCursor`: each row once, in order, the last page's cursor null.
#[tokio::test]
async fn triggers_and_actions_page_with_a_cursor() {
    let s = server().await;
    let api = Api::new(&s, ORG);
    let mut triggers = Vec::new();
    for _ in 0..5 {
        triggers.push(trigger(&api, "message_sent").await);
    }
    let mut actions = Vec::new();
    for i in 0..5 {
        actions.push(
            action(&api, triggers[0], &format!("https://x.example/h{i}"))
                .await
                .0,
        );
    }
    triggers.reverse();
    // Another org's rows are not on its pages.
    let other = Api::new(&s, ORG + 1);
    trigger(&other, "message_sent").await;

    let ids = |pages: &[Vec<Value>]| -> Vec<i64> {
        pages
            .iter()
            .flatten()
            .map(|x| x["id"].as_i64().unwrap())
            .collect()
    };
    let sizes = |pages: &[Vec<Value>]| pages.iter().map(Vec::len).collect::<Vec<_>>();
    let pages = api.pages_by_cursor("/api/v1/triggers?limit=2").await;
    assert_eq!(sizes(&pages), [2, 2, 1]);
    assert_eq!(ids(&pages), triggers, "every trigger once, newest first");
    let path = format!("/api/v1/triggers/{}/actions?limit=2", triggers[4]);
    let pages = api.pages_by_cursor(&path).await;
    assert_eq!(sizes(&pages), [2, 2, 1]);
    assert_eq!(ids(&pages), actions, "every action once, oldest first");
    // Without limit: the first 50, so all of them, the cursor null.
    let all = api.get("/api/v1/triggers").await.body;
    assert_eq!(all["data"].as_array().unwrap().len(), 5);
    assert!(all["nextCursor"].is_null());

    let actions_path = format!("/api/v1/triggers/{}/actions", triggers[4]);
    for list in ["/api/v1/triggers", actions_path.as_str()] {
        api.assert_bad_paging_refused(list).await;
    }
    // One list's cursor is not the other's.
    let cursor = api.get("/api/v1/triggers?limit=1").await.body["nextCursor"]
        .as_str()
        .unwrap()
        .to_owned();
    api.get(&format!("{actions_path}?cursor={cursor}"))
        .await
        .error(400);
}
