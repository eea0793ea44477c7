//! Secrets at rest (connectors/src/secrets.rs): with `secrets.key` set, endpoint signing
//! secrets and WhatsApp app secrets are stored sealed and verify tokens hashed, yet
//! every signature and handshake works; `leadstream secrets rotate` moves them to a new
//! key; a store sealed with a key the server does not have is refused, not guessed.

use crate::api::Api;
use crate::receiver::{verify, Receiver, Step};
use crate::support::TestServer;
use crate::whatsapp::{message, now_secs, signed, SECRET};
use serde_json::json;
use std::time::{Duration, Instant};

const ORG: i64 = 61;

/// Every byte of the data dir's webhook store, with its write-ahead log.
fn store_bytes(s: &TestServer) -> Vec<u8> {
    let mut all = Vec::new();
    for f in ["webhooks.db", "webhooks.db-wal"] {
        all.extend(std::fs::read(s.data_dir().join(f)).unwrap_or_default());
    }
    all
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// `leadstream <args…> secrets rotate` under `key` (and `previous`): its output, once
/// it succeeded.
fn rotate(args: &[&str], key: &str, previous: Option<&str>) -> String {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_leadstream"));
    cmd.args(args)
        .args(["secrets", "rotate"])
        .env("LEADSTREAM_SECRETS_KEY", key);
    if let Some(previous) = previous {
        cmd.env("LEADSTREAM_SECRETS_PREVIOUS_KEYS", previous);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn new_key(s: &TestServer) -> String {
    s.cli(["secrets", "new-key"]).ok().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_sealed_at_rest_work_and_rotate_to_a_new_key() {
    let rx = Receiver::start().await;
    let probe = TestServer::builder().start().await;
    let (old, new) = (new_key(&probe), new_key(&probe));
    drop(probe);
    let mut s = TestServer::builder()
        .env("LEADSTREAM_DELIVERY_ALLOW_PRIVATE_TARGETS", "true")
        .env("LEADSTREAM_SECRETS_KEY", &old)
        .start()
        .await;
    let api = Api::new(&s, ORG);
    let hook = rx.script("sealed", vec![Step::Status(200)]);
    let endpoint = api.endpoint(&hook).await;
    let secret = api.secret(endpoint).await;
    let r = api
        .post(
            "/api/v1/integrations/whatsapp",
            &json!({"botIntegrationId": 808, "appSecret": SECRET, "verifyToken": "vt-secret-808"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    api.publish("booked", json!({"n": 1})).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while rx.seen("sealed").is_empty() {
        assert!(Instant::now() < deadline, "not delivered\n{}", s.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(verify(&secret, &rx.seen("sealed")[0]));
    // Nothing of the three is in the store's files.
    let bytes = store_bytes(&s);
    assert!(!bytes.is_empty());
    for plain in [secret.as_str(), SECRET, "vt-secret-808"] {
        assert!(!contains(&bytes, plain), "{plain} stored in clear");
    }
    // The handshake and a signed webhook still work.
    let hs = s
        .client()
        .get(s.url("/api/v1/integrations/whatsapp/808/webhook?hub.mode=subscribe&hub.verify_token=vt-secret-808&hub.challenge=77"))
        .send()
        .await
        .unwrap();
    assert_eq!(hs.status(), 200);
    let taken = signed(
        &s,
        808,
        &message("wamid.S1", "16315551234", now_secs(), "hi"),
    )
    .await;
    assert_eq!(taken["status"], "accepted", "{taken}");

    // Rotation: stopped, the store sealed again under the new key with the old one
    // still known; then the new key alone serves everything.
    s.stop();
    let data_dir = s.data_dir();
    let rotated = rotate(
        &["--data-dir", data_dir.to_str().unwrap()],
        &new,
        Some(&old),
    );
    assert!(
        rotated.contains("1 endpoint secrets, 1 WhatsApp app secrets"),
        "{rotated}"
    );
    s.remove_env("LEADSTREAM_SECRETS_KEY");
    // Without any key, sealed secrets are refused at start, saying which key is missing.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_leadstream"))
        .args([
            "--data-dir",
            s.data_dir().to_str().unwrap(),
            "serve",
            "--listen",
            "127.0.0.1:0",
        ])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("secrets.key"), "{err}");

    let mut s = s;
    s.set_env("LEADSTREAM_SECRETS_KEY", &new);
    s.restart().await;
    let api = Api {
        s: &s,
        key: s.api_key(ORG).secret,
    };
    assert_eq!(
        api.secret(endpoint).await,
        secret,
        "the same secret, sealed anew"
    );
    api.publish("booked", json!({"n": 2})).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while rx.seen("sealed").len() < 2 {
        assert!(
            Instant::now() < deadline,
            "not delivered after rotation\n{}",
            s.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(verify(&secret, &rx.seen("sealed")[1]));
    let taken = signed(
        &s,
        808,
        &message("wamid.S2", "16315551234", now_secs(), "again"),
    )
    .await;
    assert_eq!(taken["status"], "accepted", "{taken}");
}

/// On the shared database too: what Postgres holds is sealed, and `secrets rotate`
/// runs against it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_secrets_are_sealed_and_rotate() {
    let pg = leadstream_connectors::db::testing::TestPostgres::start();
    let url = pg.new_database();
    let probe = TestServer::builder().start().await;
    let (old, new) = (new_key(&probe), new_key(&probe));
    drop(probe);
    let s = TestServer::builder()
        .env("LEADSTREAM_DATABASE_URL", &url)
        .env("LEADSTREAM_SECRETS_KEY", &old)
        .start()
        .await;
    let admin = |args: &[&str]| {
        let dir = tempfile::tempdir().unwrap();
        let mut all = vec!["--database-url", url.as_str()];
        all.extend_from_slice(args);
        crate::support::leadstream(dir.path(), all)
    };
    admin(&["org", "create", "--id", &ORG.to_string(), "--name", "pg"]).ok();
    let key =
        crate::support::Key::parse(&admin(&["api-key", "create", "--org", &ORG.to_string()]).ok());
    let api = Api {
        s: &s,
        key: key.secret,
    };
    let endpoint = api.endpoint("https://hooks.example.com/in").await;
    let secret = api.secret(endpoint).await;
    let r = api
        .post(
            "/api/v1/integrations/whatsapp",
            &json!({"botIntegrationId": 909, "appSecret": SECRET, "verifyToken": "vt-909"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let stored = async |sql: &str| -> String { client.query_one(sql, &[]).await.unwrap().get(0) };
    let sealed = stored("SELECT secret FROM endpoint_secrets").await;
    assert!(
        sealed.starts_with("sealed:v1:") && !sealed.contains(&secret),
        "{sealed}"
    );
    let app = stored("SELECT app_secret FROM whatsapp_integrations").await;
    assert!(
        app.starts_with("sealed:v1:") && !app.contains(SECRET),
        "{app}"
    );
    let token = stored("SELECT verify_token FROM whatsapp_integrations").await;
    assert!(token.starts_with("sha256:"), "{token}");
    // Rotated while the server runs with both keys known.
    let dir = tempfile::tempdir().unwrap();
    let on_pg = [
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--database-url",
        &url,
    ];
    rotate(&on_pg, &new, Some(&old));
    let resealed = stored("SELECT secret FROM endpoint_secrets").await;
    assert_ne!(resealed, sealed);
    assert!(resealed.starts_with("sealed:v1:"));
    // Run again: nothing left to do.
    let said = rotate(&on_pg, &new, None);
    assert!(
        said.contains("0 endpoint secrets, 0 WhatsApp app secrets; hashed 0"),
        "{said}"
    );
}
