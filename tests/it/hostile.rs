//! The server as an attacker or a careless client meets it: deep nesting, invalid
//! escapes, huge numbers, duplicate keys, probing credentials, slow and many
//! connections, floods of bodies, odd requests. Every answer is JSON; nothing crashes.

use crate::support::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn server_with_key() -> (TestServer, String) {
    let s = TestServer::start().await;
    s.org(42);
    let key = s.api_key(42).secret;
    (s, key)
}

async fn post_raw(s: &TestServer, key: &str, body: String) -> Reply {
    s.lead_events()
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body)
        .reply()
        .await
}

/// One stored metadata text, straight from SQLite.
fn stored_metadata(s: &TestServer) -> Vec<Option<String>> {
    let conn = rusqlite::Connection::open(s.data_dir().join("events.db")).unwrap();
    let mut stmt = conn
        .prepare("SELECT metadata FROM lead_events ORDER BY rowid")
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test]
async fn deep_nesting_before_authentication_does_not_crash_the_server() {
    let s = TestServer::start().await;
    s.org(42).auth_mode(42, "hmac");
    let any_sig = format!("sha256={}", "ab".repeat(32));
    for body in [
        format!(r#"{{"organizationId":42,"x":{}}}"#, "[".repeat(13_000)),
        format!(r#"{{"x":{}"organizationId":42}}"#, "[".repeat(40_000)),
        format!(
            r#"{{"organizationId":42,"eventType":"t","events":[{{"metadata":{}}}]}}"#,
            "[".repeat(6_150)
        ),
    ] {
        let r = s
            .lead_events()
            .header("content-type", "application/json")
            .header("x-setter-signature", &any_sig)
            .body(body)
            .reply()
            .await;
        assert!(matches!(r.status, 400 | 401), "{r:?}");
        assert!(r.body["error"].is_string());
    }
    s.get("/healthz").await.body["status"]
        .as_str()
        .map(|st| assert_eq!(st, "ok"))
        .unwrap();
}

#[tokio::test]
async fn nesting_limits_are_a_400_and_a_per_row_reject() {
    let (s, key) = server_with_key().await;
    let deep_unknown = format!(
        r#"{{"organizationId":42,"eventType":"t","x":{}{},"events":[{{"phoneE164":"+15551234567","occurredAt":"2026-05-12T18:34:00Z"}}]}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    let msg = post_raw(&s, &key, deep_unknown).await.error(400).to_owned();
    assert!(msg.contains("nested deeper than 128"), "{msg}");
    let meta = |n: usize| format!("{}{}", "{\"a\":".repeat(n - 1) + "{", "}".repeat(n));
    let body = format!(
        r#"{{"organizationId":42,"eventType":"t","events":[{{"phoneE164":"+15551234567","occurredAt":"2026-05-12T18:34:00Z","metadata":{}}},{{"phoneE164":"+15551234567","occurredAt":"2026-05-12T18:35:00Z","metadata":{}}}]}}"#,
        meta(65),
        meta(64)
    );
    let r = post_raw(&s, &key, body).await;
    assert_eq!(r.counts(), (2, 1, 0, 1));
    assert_eq!(
        r.body["rejects"][0]["reason"],
        "metadata nested deeper than 64 levels"
    );
    assert_eq!(stored_rows(&s.data_dir()), 1);
}

#[tokio::test]
async fn lone_surrogates_are_refused_never_stored_as_something_else() {
    let (s, key) = server_with_key().await;
    for t in [r"x\ud800", r"x\udbff", r"\udc00x"] {
        let body = format!(
            r#"{{"organizationId":42,"eventType":"{t}","events":[{{"phoneE164":"+15551234567","occurredAt":"2026-05-12T18:34:00Z"}}]}}"#
        );
        let msg = post_raw(&s, &key, body).await.error(400).to_owned();
        assert!(msg.contains("invalid escape"), "{msg}");
    }
    // NUL is a real character but a control character: not an event type either.
    let body = r#"{"organizationId":42,"eventType":"x\u0000","events":[{"phoneE164":"+15551234567","occurredAt":"2026-05-12T18:34:00Z"}]}"#;
    assert!(post_raw(&s, &key, body.into())
        .await
        .error(400)
        .contains("control character"));
    let body = r#"{"organizationId":42,"eventType":"t","events":[{"phoneE164":"+15551234567","occurredAt":"2026-05-12T18:34:00Z","metadata":{"note":"x\ud800y"}}]}"#;
    let r = post_raw(&s, &key, body.into()).await;
    assert_eq!(r.counts(), (1, 0, 0, 1));
    assert_eq!(
        r.body["rejects"][0]["reason"],
        "metadata has an invalid string escape (a lone UTF-16 surrogate)"
    );
    assert_eq!(stored_rows(&s.data_dir()), 0);
}

#[tokio::test]
async fn blank_event_types_are_400() {
    let (s, key) = server_with_key().await;
    for t in ["   ", "\t", "a\nb", "\u{7f}"] {
        s.post_bearer(&key, &batch(42, t, vec![lead(1)]))
            .await
            .error(400);
    }
    assert_eq!(stored_rows(&s.data_dir()), 0);
}

#[tokio::test]
async fn valid_json_never_fails_a_batch_and_metadata_is_kept_as_sent() {
    let (s, key) = server_with_key().await;
    let body = r#"{"organizationId":42,"eventType":"t","unknownField":{"n":123456789012345678901,"e":1e400},"events":[
        {"phoneE164":"+15551234567","occurredAt":"2026-05-12T18:34:00Z","metadata":{ "big" : 123456789012345678901, "huge": 1e400, "n": 1E2, "tiny": 0.1e-400, "s": "a  b", "u": "\u00e9" }},
        {"phoneE164":"+15551234567","occurredAt":"2026-05-12T18:35:00Z","ignored":-1e-400}
    ]}"#;
    let r = post_raw(&s, &key, body.into()).await;
    assert_eq!(r.counts(), (2, 2, 0, 0));
    assert_eq!(
        stored_metadata(&s),
        [Some(r#"{"big":123456789012345678901,"huge":1e400,"n":1E2,"tiny":0.1e-400,"s":"a  b","u":"\u00e9"}"#.to_owned()), None]
    );
}

#[tokio::test]
async fn duplicate_fields_follow_one_rule() {
    let (s, key) = server_with_key().await;
    let top = r#"{"organizationId":42,"eventType":"a","eventType":"b","events":[{"phoneE164":"+15551234567","occurredAt":"2026-05-12T18:34:00Z"}]}"#;
    assert_eq!(
        post_raw(&s, &key, top.into()).await.error(400),
        "field eventType appears twice"
    );
    let inner = r#"{"organizationId":42,"eventType":"t","events":[{"phoneE164":"+15551234567","phoneE164":"+15551234568","occurredAt":"2026-05-12T18:34:00Z"}]}"#;
    let r = post_raw(&s, &key, inner.into()).await;
    assert_eq!(r.counts(), (1, 0, 0, 1));
    assert_eq!(r.body["rejects"][0]["reason"], "duplicate field phoneE164");
}

#[tokio::test]
async fn a_bad_credential_says_nothing_about_the_organization() {
    let s = TestServer::start().await;
    s.org(42).org(43).auth_mode(43, "hmac");
    let body = |org: i64| serde_json::to_string(&batch(org, "t", vec![lead(1)])).unwrap();
    let bad_sig = format!("sha256={}", "00".repeat(32));
    let mut texts = Vec::new();
    for org in [42, 43, 99] {
        let r = s
            .lead_events()
            .header("content-type", "application/json")
            .header("x-setter-signature", &bad_sig)
            .body(body(org))
            .reply()
            .await;
        texts.push(r.error(401).to_owned());
        let r = s
            .lead_events()
            .bearer_auth("ls_not_a_key")
            .header("content-type", "application/json")
            .body(body(org))
            .reply()
            .await;
        texts.push(r.error(401).to_owned());
    }
    let r = s
        .lead_events()
        .header("content-type", "application/json")
        .body(body(42))
        .reply()
        .await;
    texts.push(r.error(401).to_owned());
    // A valid API key of an org in hmac mode: the same answer as any other bad credential.
    let key43 = s.api_key(43).secret;
    let r = s
        .lead_events()
        .bearer_auth(&key43)
        .header("content-type", "application/json")
        .body(body(43))
        .reply()
        .await;
    texts.push(r.error(401).to_owned());
    texts.dedup();
    assert_eq!(texts.len(), 1, "{texts:#?}");
}

#[tokio::test]
async fn every_error_is_json() {
    let (s, key) = server_with_key().await;
    let c = s.client();
    assert!(c
        .get(s.url("/nope"))
        .reply()
        .await
        .error(404)
        .contains("/nope"));
    let r = c.get(s.url(LEAD_EVENTS)).reply().await;
    assert!(r.error(405).contains("POST"), "{r:?}");
    let long = format!("/healthz?{}", "a".repeat(9000));
    c.get(s.url(&long)).reply().await.error(414);
    let mut req = c.get(s.url("/healthz"));
    for i in 0..120 {
        req = req.header(format!("x-h{i}"), "v");
    }
    req.reply().await.error(431);
    let big = c.get(s.url("/healthz")).header("x-big", "v".repeat(40_000));
    big.reply().await.error(431);
    // Still serving afterwards.
    assert_eq!(
        s.post_bearer(&key, &batch(42, "t", vec![lead(1)]))
            .await
            .counts(),
        (1, 1, 0, 0)
    );
}

async fn half_sent(s: &TestServer, head: &str) -> TcpStream {
    let mut c = TcpStream::connect(s.addr()).await.unwrap();
    c.write_all(head.as_bytes()).await.unwrap();
    c
}

/// Reads until the server closes (or `limit` passes); returns what it sent.
async fn read_until_closed(c: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(limit, c.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(String::from_utf8_lossy(&out).into_owned()),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn slow_clients_are_cut_off() {
    let s = TestServer::builder()
        .config("[http]\nheader_timeout = \"1s\"\nbody_timeout = \"1s\"\n")
        .start()
        .await;
    s.org(42);
    let key = s.api_key(42).secret;
    // Headers never finished: closed after the header timeout.
    let t = Instant::now();
    let mut c = half_sent(
        &s,
        "POST /api/v1/webhooks/lead-events HTTP/1.1\r\nHost: x\r\n",
    )
    .await;
    assert!(
        read_until_closed(&mut c, Duration::from_secs(10))
            .await
            .is_some(),
        "still open"
    );
    assert!(t.elapsed() < Duration::from_secs(5));
    // A body that stops: 408 with a JSON error, then the connection closes.
    let head = format!("POST {LEAD_EVENTS} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"organizationId\":42");
    let mut c = half_sent(&s, &head).await;
    let got = read_until_closed(&mut c, Duration::from_secs(10))
        .await
        .expect("closed");
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert!(got.contains(r#"{"error":"request body stalled"#), "{got}");
}

#[tokio::test]
async fn half_sent_requests_cannot_stop_health_checks_even_with_few_open_files() {
    let s = TestServer::builder()
        .open_files(256)
        .config("[http]\nheader_timeout = \"30s\"\n")
        .start()
        .await;
    let mut held = Vec::new();
    for _ in 0..300 {
        match TcpStream::connect(s.addr()).await {
            Ok(mut c) => {
                let _ = c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await;
                held.push(c);
            }
            Err(_) => break,
        }
    }
    // The regular slots are all taken by clients that never finish their headers;
    // a health check still gets through (overflow slots, cleared after 1 s).
    let t = Instant::now();
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let r = client
        .get(s.url("/healthz"))
        .send()
        .await
        .expect("healthz answered");
    assert_eq!(r.status(), 200);
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "took {:?}",
        t.elapsed()
    );
    drop(held);
}

#[tokio::test]
async fn bodies_in_flight_are_capped_with_a_503() {
    let s = TestServer::builder()
        .config(&format!("[http]\nmax_body_bytes_in_flight = {MAX_BODY}\n"))
        .start()
        .await;
    s.org(42);
    let key = s.api_key(42).secret;
    // One declared 8 MB body holds most of the budget while it trickles in...
    let head = format!("POST {LEAD_EVENTS} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{{", 8 * 1024 * 1024);
    let _slow = half_sent(&s, &head).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // ...so a second large one is refused at once, with Retry-After.
    let body = json!({"organizationId": 42, "eventType": "t", "pad": "x".repeat(4 * 1024 * 1024), "events": [lead(1)]});
    let r = s
        .lead_events()
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("too many request bodies"),
        "{v}"
    );
    // Small bodies still fit.
    assert_eq!(
        s.post_bearer(&key, &batch(42, "t", vec![lead(2)]))
            .await
            .counts(),
        (1, 1, 0, 0)
    );
}

#[tokio::test]
async fn requests_hyper_cannot_parse_get_json_errors_too() {
    let s = TestServer::start().await;
    for (raw, status) in [
        (b"GARBAGE LINE\r\n\r\n".to_vec(), 400),
        (
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n".to_vec(),
            400,
        ),
        (
            [
                b"GET /healthz HTTP/1.1\r\nHost: x\r\nx-big: ".to_vec(),
                vec![b'v'; 70_000],
                b"\r\n\r\n".to_vec(),
            ]
            .concat(),
            431,
        ),
    ] {
        let mut c = TcpStream::connect(s.addr()).await.unwrap();
        c.write_all(&raw).await.unwrap();
        let r = read_response(&mut c).await;
        assert!(!r.error(status).is_empty());
    }
    assert_eq!(s.get("/healthz").await.status, 200);
}
