//! Whole-call refusals: 413 over 10 MB (also while streaming), 415 not JSON, and the
//! 400s of the request-level caps. Each answers `{"error": "..."}` and stores nothing.

use crate::support::{batch, lead, read_response, stored_rows, Call, Reply, TestServer, MAX_BODY};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

async fn server_with_key() -> (TestServer, String) {
    let s = TestServer::start().await;
    let key = s.org(42).api_key(42).secret;
    (s, key)
}

/// Sends a request head, then `chunks` (already framed), and never finishes the body:
/// whatever answer comes was given while the body was still being read.
async fn unfinished_request(addr: SocketAddr, head: String, chunks: Vec<Vec<u8>>) -> Reply {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        wr.write_all(head.as_bytes()).await?;
        for c in chunks {
            wr.write_all(&c).await?;
        }
        wr.flush().await?;
        // Keep the connection open without ending the body.
        std::future::pending::<()>().await;
        Ok::<_, std::io::Error>(wr)
    });
    let reply = tokio::time::timeout(Duration::from_secs(30), read_response(&mut rd))
        .await
        .expect("no answer within 30 s while the body was left unfinished");
    writer.abort();
    reply
}

fn head(addr: SocketAddr, key: &str, length: &str) -> String {
    format!(
        "POST /api/v1/webhooks/lead-events HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\n{length}\r\n"
    )
}

#[tokio::test]
async fn a_declared_length_over_10mb_is_413_before_the_body_is_sent() {
    let (s, key) = server_with_key().await;
    let head = head(
        s.addr(),
        &key,
        &format!("Content-Length: {}\r\n", MAX_BODY + 1),
    );
    unfinished_request(s.addr(), head, vec![]).await.error(413);
}

#[tokio::test]
async fn a_chunked_body_over_10mb_is_413_while_streaming() {
    let (s, key) = server_with_key().await;
    let head = head(s.addr(), &key, "Transfer-Encoding: chunked\r\n");
    // Exactly 10 MB in 1 MB chunks, then one byte more; the terminating chunk never comes.
    let mb = 1024 * 1024;
    let mut chunks: Vec<Vec<u8>> = (0..MAX_BODY / mb)
        .map(|_| {
            let mut c = format!("{mb:x}\r\n").into_bytes();
            c.resize(c.len() + mb, b' ');
            c.extend_from_slice(b"\r\n");
            c
        })
        .collect();
    chunks.push(b"1\r\n \r\n".to_vec());
    unfinished_request(s.addr(), head, chunks).await.error(413);
}

#[tokio::test]
async fn a_complete_body_over_10mb_is_413() {
    let (s, key) = server_with_key().await;
    let mut body = batch(42, "t", vec![lead(1)]).to_string().into_bytes();
    body.resize(MAX_BODY + 1, b' ');
    // The server refuses from Content-Length without keeping the body, but reads and
    // drops the rest, so a client still uploading sees the 413 rather than a reset.
    for _ in 0..5 {
        let r = s
            .lead_events()
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await;
        let r = r.expect("the 413 reaches a client that is still sending");
        let status = r.status().as_u16();
        let body: Value = r.json().await.expect("JSON error body");
        Reply { status, body }.error(413);
    }
    assert_eq!(stored_rows(&s.data_dir()), 0);
}

#[tokio::test]
async fn a_body_of_exactly_10mb_is_read() {
    let (s, key) = server_with_key().await;
    let mut body = batch(42, "t", vec![lead(1)]).to_string().into_bytes();
    body.resize(MAX_BODY, b' ');
    let r = s
        .lead_events()
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(body)
        .reply()
        .await;
    assert_eq!(r.counts(), (1, 1, 0, 0));
}

#[tokio::test]
async fn content_type_must_be_json() {
    let (s, key) = server_with_key().await;
    let body = batch(42, "t", vec![lead(1)]).to_string();
    for ct in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let mut req = s.lead_events().bearer_auth(&key).body(body.clone());
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        req.reply().await.error(415);
    }
    let r = s
        .lead_events()
        .bearer_auth(&key)
        .header("content-type", "application/json; charset=utf-8")
        .body(body)
        .reply()
        .await;
    assert_eq!(r.counts(), (1, 1, 0, 0), "the refused calls stored nothing");
}

#[tokio::test]
async fn malformed_requests_are_400_naming_the_problem() {
    let (s, key) = server_with_key().await;
    let ev = json!([{"phoneE164": "+15551234567", "occurredAt": "2026-05-12T18:34:00Z"}]);
    let cases: Vec<(String, &str)> = vec![
        ("{\"organizationId\":42,".into(), "json"),
        ("not json".into(), "json"),
        ("".into(), "json"),
        (
            json!({"eventType": "t", "events": ev}).to_string(),
            "organizationId",
        ),
        (
            json!({"organizationId": "42", "eventType": "t", "events": ev}).to_string(),
            "organizationId",
        ),
        (
            json!({"organizationId": 42, "events": ev}).to_string(),
            "eventType",
        ),
        (
            json!({"organizationId": 42, "eventType": 7, "events": ev}).to_string(),
            "eventType",
        ),
        (
            json!({"organizationId": 42, "eventType": "t"}).to_string(),
            "events",
        ),
        (
            json!({"organizationId": 42, "eventType": "t", "events": {}}).to_string(),
            "events",
        ),
        (
            json!({"organizationId": 42, "eventType": "t", "events": []}).to_string(),
            "events",
        ),
        (
            json!({"organizationId": 42, "eventType": "", "events": ev}).to_string(),
            "eventType",
        ),
        (
            json!({"organizationId": 42, "eventType": "a".repeat(129), "events": ev}).to_string(),
            "129",
        ),
    ];
    for (body, hint) in cases {
        let r = s
            .lead_events()
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .body(body.clone())
            .reply()
            .await;
        let msg = r.error(400);
        assert!(
            msg.to_lowercase().contains(&hint.to_lowercase()),
            "{body:?}: message {msg:?} should mention {hint:?}"
        );
    }
    assert_eq!(stored_rows(&s.data_dir()), 0);
}

#[tokio::test]
async fn a_body_that_is_not_a_json_object_is_400() {
    let (s, key) = server_with_key().await;
    // The fields in order, as an array: the API takes an object with named fields.
    let as_array = json!([42, "mastery_purchase", [{"phoneE164": "+15551234567", "occurredAt": "2026-05-12T18:34:00Z"}]]);
    for body in [
        as_array.to_string(),
        "42".into(),
        "\"x\"".into(),
        "null".into(),
    ] {
        let r = s
            .lead_events()
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .body(body.clone())
            .reply()
            .await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        r.error(400);
    }
    assert_eq!(stored_rows(&s.data_dir()), 0);
}

#[tokio::test]
async fn event_type_may_be_128_characters() {
    let (s, key) = server_with_key().await;
    for t in ["a".repeat(128), "é".repeat(128)] {
        let r = s.post_bearer(&key, &batch(42, &t, vec![lead(1)])).await;
        assert_eq!(r.counts(), (1, 1, 0, 0), "{} bytes", t.len());
    }
    s.post_bearer(&key, &batch(42, &"é".repeat(129), vec![lead(1)]))
        .await
        .error(400);
}

#[tokio::test]
async fn a_call_holds_at_most_50000_events() {
    let (s, key) = server_with_key().await;
    let events: Vec<Value> = (0..50_001).map(lead).collect();
    let msg = s
        .post_bearer(&key, &batch(42, "t", events.clone()))
        .await
        .error(400)
        .to_owned();
    assert!(
        msg.contains("50001"),
        "the message gives the count: {msg:?}"
    );
    assert_eq!(stored_rows(&s.data_dir()), 0);
    let r = s
        .post_bearer(&key, &batch(42, "t", events[..50_000].to_vec()))
        .await;
    assert_eq!(r.counts(), (50_000, 50_000, 0, 0));
}
