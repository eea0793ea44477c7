//! Authentication: Bearer API keys, HMAC signatures with rotation, and the 401/403 answers.

use crate::support::{batch, lead, sign, Call, TestServer};
use serde_json::json;

/// The seed's "Bulk batch (HMAC signature)" body, byte for byte.
const SEED_BULK: &str = r#"{"organizationId":42,"eventType":"webinar_attended","events":[{"phoneE164":"+15551234567","occurredAt":"2026-05-15T13:00:00Z"},{"phoneE164":"+447700900123","occurredAt":"2026-05-15T13:05:11Z"}]}"#;

/// The same batch with another event type, so it is new again.
fn seed_bulk_as(event_type: &str) -> String {
    SEED_BULK.replace("webinar_attended", event_type)
}

#[tokio::test]
async fn seed_bulk_hmac_example_accepts_either_active_signing_key() {
    let s = TestServer::start().await;
    s.org(42).auth_mode(42, "hmac");
    let (k1, k2) = (s.signing_key(42), s.signing_key(42));

    let r = s.post_signed(&k1.secret, SEED_BULK).await;
    assert_eq!(
        r.body,
        json!({"status":"accepted","received":2,"inserted":2,"duplicates":0,"rejected":0,"rejects":[]})
    );
    // The second key is active at the same time (rotation): same body, now duplicates.
    assert_eq!(
        s.post_signed(&k2.secret, SEED_BULK).await.counts(),
        (2, 0, 2, 0)
    );

    s.revoke("signing-key", 42, &k1);
    let body = seed_bulk_as("trial_started");
    s.post_signed(&k1.secret, &body).await.error(401);
    assert_eq!(
        s.post_signed(&k2.secret, &body).await.counts(),
        (2, 2, 0, 0),
        "the refused call stored nothing"
    );
}

#[tokio::test]
async fn a_tampered_or_missigned_body_is_401_and_stores_nothing() {
    let s = TestServer::start().await;
    s.org(42).auth_mode(42, "hmac");
    let k = s.signing_key(42);
    let signed_for = SEED_BULK;
    let tampered = SEED_BULK.replace("+447700900123", "+447700900124");
    let post = |body: String, sig: String| {
        s.lead_events()
            .header("content-type", "application/json")
            .header("x-setter-signature", sig)
            .body(body)
            .reply()
    };
    post(tampered.clone(), sign(&k.secret, signed_for.as_bytes()))
        .await
        .error(401);
    // Re-serialized (whitespace) is a different raw body.
    post(
        format!("{signed_for} "),
        sign(&k.secret, signed_for.as_bytes()),
    )
    .await
    .error(401);
    post(
        SEED_BULK.into(),
        sign("lss_not_a_key", SEED_BULK.as_bytes()),
    )
    .await
    .error(401);
    post(SEED_BULK.into(), "sha256=zz".into()).await.error(401);
    let bare_hex = sign(&k.secret, SEED_BULK.as_bytes())
        .trim_start_matches("sha256=")
        .to_owned();
    post(SEED_BULK.into(), bare_hex).await.error(401);

    // Nothing of the refused calls was stored.
    assert_eq!(
        s.post_signed(&k.secret, &tampered).await.counts(),
        (2, 2, 0, 0)
    );
    assert_eq!(
        s.post_signed(&k.secret, SEED_BULK).await.counts(),
        (2, 1, 1, 0)
    );
}

#[tokio::test]
async fn missing_or_wrong_credentials_are_401() {
    let s = TestServer::start().await;
    s.org(42).org(7).auth_mode(7, "hmac");
    let key = s.api_key(42);
    let revoked = s.api_key(42);
    s.revoke("api-key", 42, &revoked);
    let hmac_org_key = s.api_key(7);
    let signing = s.signing_key(7);
    let body = batch(42, "mastery_purchase", vec![lead(1)]);

    let no_credentials = s.lead_events().json(&body).reply().await;
    no_credentials.error(401);
    s.post_bearer("lsk_0123456789abcdef", &body)
        .await
        .error(401);
    s.post_bearer(&revoked.secret, &body).await.error(401);
    s.lead_events()
        .header("authorization", format!("Basic {}", key.secret))
        .json(&body)
        .reply()
        .await
        .error(401);
    s.lead_events()
        .header("authorization", "Bearer ")
        .json(&body)
        .reply()
        .await
        .error(401);
    // An org in HMAC mode refuses Bearer keys, even its own.
    s.post_bearer(
        &hmac_org_key.secret,
        &batch(7, "mastery_purchase", vec![lead(1)]),
    )
    .await
    .error(401);
    // An org in API-key mode refuses signatures, even well-formed ones.
    let raw = body.to_string();
    s.post_signed(&signing.secret, &raw).await.error(401);

    // The valid key still works, and none of the above stored anything.
    assert_eq!(
        s.post_bearer(&key.secret, &body).await.counts(),
        (1, 1, 0, 0)
    );
}

#[tokio::test]
async fn a_key_used_for_another_org_is_403_and_stores_nothing() {
    let s = TestServer::start().await;
    s.org(42).org(43);
    let k42 = s.api_key(42);
    let k43 = s.api_key(43);
    let for43 = batch(43, "mastery_purchase", vec![lead(1), lead(2)]);
    let msg = s
        .post_bearer(&k42.secret, &for43)
        .await
        .error(403)
        .to_owned();
    assert!(
        msg.contains("43"),
        "the message names the organization: {msg:?}"
    );
    // Not an org at all: still not this key's.
    s.post_bearer(&k42.secret, &batch(999, "mastery_purchase", vec![lead(1)]))
        .await
        .error(403);
    assert_eq!(
        s.post_bearer(&k43.secret, &for43).await.counts(),
        (2, 2, 0, 0)
    );
}

#[tokio::test]
async fn switching_an_org_to_hmac_takes_effect_on_the_next_request() {
    let s = TestServer::start().await;
    s.org(42);
    let key = s.api_key(42);
    let sk = s.signing_key(42);
    let body = batch(42, "mastery_purchase", vec![lead(1)]);
    assert_eq!(
        s.post_bearer(&key.secret, &body).await.counts(),
        (1, 1, 0, 0)
    );
    s.auth_mode(42, "hmac");
    s.post_bearer(&key.secret, &body).await.error(401);
    assert_eq!(
        s.post_signed(&sk.secret, &body.to_string()).await.counts(),
        (1, 0, 1, 0)
    );
    s.auth_mode(42, "api-key");
    assert_eq!(
        s.post_bearer(&key.secret, &body).await.counts(),
        (1, 0, 1, 0)
    );
}
