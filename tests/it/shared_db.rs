//! Several `serve` processes, each with its own data dir, on one shared Postgres
//! database (`LEADSTREAM_DATABASE_URL`), and the admin CLI against the same database:
//! organizations and keys are the same on every process.

use crate::support::{batch, lead, leadstream, sign, CliOutput, Key, TestServer};
use leadstream_connectors::db::testing::TestPostgres;

/// `leadstream --database-url URL args…`, from a data dir of its own (none of the
/// servers'): everything it reads and writes is in the database.
fn admin(url: &str, args: &[&str]) -> CliOutput {
    let dir = tempfile::tempdir().unwrap();
    let mut all = vec!["--database-url", url];
    all.extend_from_slice(args);
    leadstream(dir.path(), all)
}

async fn cluster(url: &str, n: usize) -> Vec<TestServer> {
    let mut servers = Vec::new();
    for _ in 0..n {
        servers.push(
            TestServer::builder()
                .env("LEADSTREAM_DATABASE_URL", url)
                .start()
                .await,
        );
    }
    servers
}

#[tokio::test]
async fn keys_made_by_the_cli_work_on_every_process_and_a_revocation_reaches_them_all() {
    let pg = TestPostgres::start();
    let url = pg.new_database();
    let servers = cluster(&url, 3).await;
    admin(&url, &["org", "create", "--id", "42", "--name", "acme"]).ok();
    let key = Key::parse(&admin(&url, &["api-key", "create", "--org", "42"]).ok());
    let mut k = 0;
    for s in &servers {
        let reply = s
            .post_bearer(&key.secret, &batch(42, "mastery_purchase", vec![lead(k)]))
            .await;
        reply.accepted();
        k += 1;
        // The management API takes the same key on every process.
        assert_eq!(s.get_with_key("/api/webhooks/get", &key.secret).await, 200);
    }
    // A key made while the servers run works at once on each of them.
    let second = Key::parse(&admin(&url, &["api-key", "create", "--org", "42"]).ok());
    for s in &servers {
        s.post_bearer(
            &second.secret,
            &batch(42, "mastery_purchase", vec![lead(k)]),
        )
        .await
        .accepted();
        k += 1;
    }
    // Revoked through the CLI: refused by every process from the next request.
    admin(
        &url,
        &[
            "api-key",
            "revoke",
            "--org",
            "42",
            "--id",
            &key.id.to_string(),
        ],
    )
    .ok();
    for s in &servers {
        let reply = s
            .post_bearer(&key.secret, &batch(42, "mastery_purchase", vec![lead(k)]))
            .await;
        assert_eq!(reply.status, 401, "{:?}", reply.body);
        assert_eq!(s.get_with_key("/api/webhooks/get", &key.secret).await, 401);
        s.post_bearer(
            &second.secret,
            &batch(42, "mastery_purchase", vec![lead(k)]),
        )
        .await
        .accepted();
        k += 1;
    }
    // A read-only key: views on every process, changes nothing on any.
    let reader = Key::parse(
        &admin(
            &url,
            &["api-key", "create", "--org", "42", "--scope", "read"],
        )
        .ok(),
    );
    for s in &servers {
        assert_eq!(
            s.get_with_key("/api/webhooks/get", &reader.secret).await,
            200
        );
        let r = s
            .client()
            .post(s.url("/api/webhooks/create"))
            .bearer_auth(&reader.secret)
            .json(&serde_json::json!({"webhook": "https://hooks.example.com"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        let r = s
            .post_bearer(
                &reader.secret,
                &batch(42, "mastery_purchase", vec![lead(k)]),
            )
            .await;
        assert_eq!(r.status, 403, "{:?}", r.body);
    }
    // The organization and its keys are listed the same from any data dir.
    let listed = admin(&url, &["api-key", "list", "--org", "42"]).ok();
    assert!(
        listed.contains("revoked") && listed.contains("active") && listed.contains("read"),
        "{listed}"
    );
    let orgs = admin(&url, &["org", "list"]).ok();
    assert!(orgs.contains("acme"), "{orgs}");
    // What an SRE watches: the listeners are up, the cache answers, the pool reports.
    let text = crate::metrics::scrape_until(
        &servers[0],
        &[
            "leadstream_database_listener_connected{channel=\"leadstream_credentials\"} 1",
            "leadstream_database_listener_connected{channel=\"leadstream_endpoints\"} 1",
        ],
    )
    .await;
    let value = |prefix: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
    };
    assert!(value("leadstream_credential_cache_lookups_total{outcome=\"hit\"}") >= 1.0);
    assert!(
        value("leadstream_database_notifications_total{channel=\"leadstream_credentials\"}") >= 2.0
    );
    // The pool is reported every second.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !crate::metrics::scrape(&servers[0])
        .await
        .1
        .contains("leadstream_database_connections{state=\"idle\"}")
    {
        assert!(std::time::Instant::now() < deadline, "no pool gauges");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn hmac_mode_and_signing_keys_are_shared_by_every_process() {
    let pg = TestPostgres::start();
    let url = pg.new_database();
    let servers = cluster(&url, 2).await;
    admin(&url, &["org", "create", "--id", "7", "--name", "signer"]).ok();
    let api_key = Key::parse(&admin(&url, &["api-key", "create", "--org", "7"]).ok());
    admin(&url, &["org", "set-auth", "--org", "7", "--mode", "hmac"]).ok();
    let secret = Key::parse(&admin(&url, &["signing-key", "create", "--org", "7"]).ok());
    for (i, s) in servers.iter().enumerate() {
        let body = batch(7, "webinar_attended", vec![lead(i)]).to_string();
        s.post_signed(&secret.secret, &body).await.accepted();
        let reply = s
            .post_bearer(
                &api_key.secret,
                &batch(7, "webinar_attended", vec![lead(i)]),
            )
            .await;
        assert_eq!(
            reply.status, 401,
            "an org in hmac mode refuses API keys on every process"
        );
    }
    admin(
        &url,
        &[
            "signing-key",
            "revoke",
            "--org",
            "7",
            "--id",
            &secret.id.to_string(),
        ],
    )
    .ok();
    for s in &servers {
        let body = batch(7, "webinar_attended", vec![lead(99)]).to_string();
        let reply = s
            .lead_events()
            .header(
                "x-setter-signature",
                format!("sha256={}", sign(&secret.secret, body.as_bytes())),
            )
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 401);
    }
}

#[test]
fn the_admin_cli_names_an_unreachable_database_and_masks_its_password() {
    // Nothing listens on port 1.
    let url = "postgres://ls:hunter2@127.0.0.1:1/leadstream?sslmode=disable&connect_timeout=2";
    let out = admin(url, &["org", "list"]);
    assert!(!out.status.success());
    assert!(
        out.stderr
            .contains("postgres://ls:********@127.0.0.1:1/leadstream")
            && !out.stderr.contains("hunter2"),
        "{}",
        out.stderr
    );
    let printed = admin(url, &["config", "print"]).ok();
    assert!(
        printed.contains("ls:********@127.0.0.1:1") && !printed.contains("hunter2"),
        "{printed}"
    );
    let bad = admin("mysql://x@y/z", &["org", "list"]);
    assert!(
        !bad.status.success() && bad.stderr.contains("expected postgres://"),
        "{}",
        bad.stderr
    );
}

#[test]
fn a_database_migrated_by_a_newer_release_is_refused_with_what_to_do() {
    let pg = TestPostgres::start();
    let url = pg.new_database();
    admin(&url, &["org", "list"]).ok();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
            .execute(
                "INSERT INTO schema_migrations (version, name) VALUES (1000, 'future')",
                &[],
            )
            .await
            .unwrap();
    });
    let out = admin(&url, &["org", "list"]);
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("schema version 1000") && out.stderr.contains("newer release"),
        "{}",
        out.stderr
    );
}

/// A JSON request with `key` to `path` on `s`: (status, body).
async fn call(
    s: &TestServer,
    method: reqwest::Method,
    path: &str,
    key: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut r = s.client().request(method, s.url(path)).bearer_auth(key);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

async fn wait_for(what: &str, secs: u64, cond: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within {secs} s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Organization `org` made with the admin CLI against `url`, and an API key of it.
fn org_with_key(url: &str, org: i64) -> String {
    let id = org.to_string();
    admin(url, &["org", "create", "--id", &id, "--name", "org"]).ok();
    Key::parse(&admin(url, &["api-key", "create", "--org", &id]).ok()).secret
}

/// A webhook endpoint to `hook`, made on `s`; its id.
async fn endpoint(s: &TestServer, key: &str, hook: &str) -> i64 {
    let (st, made) = call(
        s,
        reqwest::Method::POST,
        "/api/webhooks/create",
        key,
        Some(serde_json::json!({ "webhook": hook })),
    )
    .await;
    assert_eq!(st, 200, "{made}");
    made["data"]["id"].as_i64().unwrap()
}

/// Delivery `id` with its attempts, as `s` answers it.
async fn delivery(s: &TestServer, key: &str, id: &str) -> serde_json::Value {
    call(
        s,
        reqwest::Method::GET,
        &format!("/api/v1/deliveries/{id}"),
        key,
        None,
    )
    .await
    .1
}

#[tokio::test]
async fn endpoints_and_settings_are_the_same_on_every_process_and_a_delete_stops_every_attempt() {
    use crate::receiver::{Receiver, Step};
    use reqwest::Method;
    use serde_json::json;
    let pg = TestPostgres::start();
    let url = pg.new_database();
    let mut servers = Vec::new();
    for _ in 0..2 {
        servers.push(
            TestServer::builder()
                .env("LEADSTREAM_DATABASE_URL", &url)
                .env("LEADSTREAM_DELIVERY_ALLOW_PRIVATE_TARGETS", "true")
                .env(
                    "LEADSTREAM_DELIVERY_RETRY_SCHEDULE",
                    "300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms",
                )
                .start()
                .await,
        );
    }
    let (a, b) = (&servers[0], &servers[1]);
    admin(&url, &["org", "create", "--id", "7", "--name", "hooks"]).ok();
    let key = Key::parse(&admin(&url, &["api-key", "create", "--org", "7"]).ok()).secret;
    let rx = Receiver::start().await;
    let ok_url = rx.script("ok", vec![Step::Status(200)]);
    let fail_url = rx.script("fail", vec![Step::Status(500)]);

    // Made on a, listed and read on b at once.
    let (st, made) = call(
        a,
        Method::POST,
        "/api/webhooks/create",
        &key,
        Some(json!({"webhook": ok_url})),
    )
    .await;
    assert_eq!(st, 200, "{made}");
    let ok_id = made["data"]["id"].as_i64().unwrap();
    let (_, listed) = call(b, Method::GET, "/api/webhooks/get", &key, None).await;
    let ids: Vec<i64> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [ok_id]);
    let (st, secret) = call(
        b,
        Method::GET,
        &format!("/api/webhooks/{ok_id}/secret"),
        &key,
        None,
    )
    .await;
    assert_eq!(st, 200, "{secret}");
    let (st, _) = call(
        a,
        Method::GET,
        &format!("/api/webhooks/{ok_id}/secret"),
        &key,
        None,
    )
    .await;
    assert_eq!(st, 200);

    // Published on b: delivered, signed with the secret a made.
    let (st, published) = call(
        b,
        Method::POST,
        "/api/v1/outbound-events",
        &key,
        Some(json!({"eventType": "ping", "payload": {"n": 1}})),
    )
    .await;
    assert_eq!(st, 202, "{published}");
    assert_eq!(published["deliveries"], 1);
    wait_for("the delivery", 10, || rx.seen("ok").len() == 1).await;
    let secret = secret["key"].as_str().unwrap();
    assert!(crate::receiver::verify(secret, &rx.seen("ok")[0]));

    // Settings set on a are b's answer.
    let (st, set) = call(
        a,
        Method::PUT,
        "/api/v1/organizations/current/settings",
        &key,
        Some(json!({"webhookUrl": rx.url("settings")})),
    )
    .await;
    assert_eq!(st, 200, "{set}");
    let (_, got) = call(
        b,
        Method::GET,
        "/api/v1/organizations/current/settings",
        &key,
        None,
    )
    .await;
    assert_eq!(got["webhookUrl"], rx.url("settings"));
    call(
        a,
        Method::PUT,
        "/api/v1/organizations/current/settings",
        &key,
        Some(json!({"webhookUrl": null})),
    )
    .await;

    // A failing endpoint made on a, its delivery retried by b's workers …
    let (_, made) = call(
        a,
        Method::POST,
        "/api/webhooks/create",
        &key,
        Some(json!({"webhook": fail_url})),
    )
    .await;
    let fail_id = made["data"]["id"].as_i64().unwrap();
    call(
        b,
        Method::PATCH,
        &format!("/api/webhooks/{ok_id}"),
        &key,
        Some(json!({"enabled": false})),
    )
    .await;
    let (st, published) = call(
        b,
        Method::POST,
        "/api/v1/outbound-events",
        &key,
        Some(json!({"eventType": "ping", "payload": {"n": 2}})),
    )
    .await;
    assert_eq!(st, 202, "{published}");
    assert_eq!(
        published["deliveries"], 1,
        "the endpoint disabled on b gets nothing: {published}"
    );
    wait_for("a retried attempt", 10, || rx.seen("fail").len() >= 2).await;
    // … gets no new attempt from any process once deleted on a.
    let (st, _) = call(
        a,
        Method::DELETE,
        &format!("/api/webhooks/delete?id={fail_id}"),
        &key,
        None,
    )
    .await;
    assert_eq!(st, 200);
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let attempts = rx.seen("fail").len();
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(
        rx.seen("fail").len(),
        attempts,
        "attempts went on after the delete"
    );
    let (st, _) = call(
        b,
        Method::GET,
        &format!("/api/webhooks/{fail_id}/secret"),
        &key,
        None,
    )
    .await;
    assert_eq!(st, 404);
    assert_eq!(
        rx.seen("ok").len(),
        1,
        "nothing more to the disabled endpoint"
    );
}

#[tokio::test]
async fn with_the_database_down_requests_get_503_and_never_its_message_then_recover() {
    let pg = TestPostgres::start();
    let url = pg.new_database();
    let servers = cluster(&url, 1).await;
    let s = &servers[0];
    admin(&url, &["org", "create", "--id", "5", "--name", "five"]).ok();
    let key = Key::parse(&admin(&url, &["api-key", "create", "--org", "5"]).ok());
    s.post_bearer(&key.secret, &batch(5, "t", vec![lead(1)]))
        .await
        .accepted();
    pg.stop();
    for path in [
        "/api/webhooks/get",
        "/api/v1/organizations/current/settings",
    ] {
        let r = s
            .client()
            .get(s.url(path))
            .bearer_auth(&key.secret)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 503, "{path}");
        assert_eq!(r.headers()["retry-after"], "1");
        let body: serde_json::Value = r.json().await.unwrap();
        let msg = body["error"].as_str().unwrap();
        assert!(
            msg.contains("incident")
                && !msg.to_lowercase().contains("postgres")
                && !msg.contains("127.0.0.1"),
            "{msg}"
        );
    }
    let r = s
        .post_bearer(&key.secret, &batch(5, "t", vec![lead(2)]))
        .await;
    assert_eq!(r.status, 503, "{:?}", r.body);
    assert!(s.logs().contains("incident"), "the cause is logged");
    // Back: the pool makes new connections, nothing to restart.
    pg.restart();
    s.post_bearer(&key.secret, &batch(5, "t", vec![lead(2)]))
        .await
        .accepted();
    assert_eq!(s.get_with_key("/api/webhooks/get", &key.secret).await, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_waits_for_the_database_at_start_up_and_says_so() {
    let pg = TestPostgres::start();
    let url = pg.new_database();
    admin(&url, &["org", "create", "--id", "9", "--name", "late"]).ok();
    let key = Key::parse(&admin(&url, &["api-key", "create", "--org", "9"]).ok());
    pg.stop();
    let builder = TestServer::builder().env("LEADSTREAM_DATABASE_URL", &url);
    let (s, ()) = tokio::join!(builder.start(), async {
        // Long enough for the first tries to fail.
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        tokio::task::block_in_place(|| pg.restart());
    });
    let logs = s.logs();
    assert!(
        logs.contains("the shared database is unavailable")
            && logs.contains("LEADSTREAM_DATABASE_URL"),
        "{logs}"
    );
    s.post_bearer(&key.secret, &batch(9, "t", vec![lead(1)]))
        .await
        .accepted();
}

#[tokio::test]
async fn what_a_killed_process_answered_is_there_for_the_others() {
    use serde_json::json;
    let pg = TestPostgres::start();
    let url = pg.new_database();
    let mut servers = cluster(&url, 2).await;
    admin(&url, &["org", "create", "--id", "3", "--name", "three"]).ok();
    let key = Key::parse(&admin(&url, &["api-key", "create", "--org", "3"]).ok()).secret;
    let (st, made) = call(
        &servers[0],
        reqwest::Method::POST,
        "/api/webhooks/create",
        &key,
        Some(json!({"webhook": "https://hooks.example.com/a"})),
    )
    .await;
    assert_eq!(st, 200, "{made}");
    let id = made["data"]["id"].as_i64().unwrap();
    // Answered, then killed: no chance to flush anything.
    servers[0].kill9();
    let (st, got) = call(
        &servers[1],
        reqwest::Method::GET,
        &format!("/api/webhooks/{id}"),
        &key,
        None,
    )
    .await;
    assert_eq!(st, 200, "{got}");
    assert_eq!(got["webhook"], "https://hooks.example.com/a");
    // And a process started after it answers the same.
    let later = cluster(&url, 1).await;
    let (st, _) = call(
        &later[0],
        reqwest::Method::GET,
        &format!("/api/webhooks/{id}"),
        &key,
        None,
    )
    .await;
    assert_eq!(st, 200);
}

#[tokio::test]
async fn a_data_dir_with_endpoints_of_its_own_is_not_served_with_the_shared_database() {
    use serde_json::json;
    let mut s = TestServer::start().await;
    let key = s.org(4).api_key(4).secret;
    let r = s
        .client()
        .post(s.url("/api/webhooks/create"))
        .bearer_auth(&key)
        .json(&json!({"webhook": "https://hooks.example.com/own"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    s.stop();
    let pg = TestPostgres::start();
    let url = pg.new_database();
    let out: CliOutput = std::process::Command::new(crate::support::BIN)
        .arg("--data-dir")
        .arg(s.data_dir())
        .args(["--database-url", &url, "serve", "--listen", "127.0.0.1:0"])
        .env_remove("LEADSTREAM_DATA_DIR")
        .env_remove("LEADSTREAM_DATABASE_URL")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run leadstream")
        .into();
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("1 webhook endpoints of its own") && out.stderr.contains("--data-dir"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn deliveries_are_in_every_process_log_and_a_killed_process_s_retries_are_taken_over() {
    use crate::receiver::{Receiver, Step};
    use reqwest::Method;
    use serde_json::json;
    let pg = TestPostgres::start();
    let url = pg.new_database();
    let start = || {
        TestServer::builder()
            .env("LEADSTREAM_DATABASE_URL", &url)
            .env("LEADSTREAM_DELIVERY_ALLOW_PRIVATE_TARGETS", "true")
            .env("LEADSTREAM_DELIVERY_RETRY_SCHEDULE", "1s,1s,1s,1s,1s,1s")
            .env("LEADSTREAM_DATABASE_LEASE", "3s")
            .start()
    };
    let mut a = start().await;
    let b = start().await;
    let key = org_with_key(&url, 5);
    let rx = Receiver::start().await;
    // Refused until a process other than the first asks (see below), then taken.
    let hook = rx.script(
        "flaky",
        vec![
            Step::Status(503),
            Step::Status(503),
            Step::Status(503),
            Step::Status(200),
        ],
    );
    endpoint(&a, &key, &hook).await;

    // Published on a, its delivery is in b's log at once (read-your-writes).
    let (st, published) = call(
        &a,
        Method::POST,
        "/api/v1/outbound-events",
        &key,
        Some(json!({"eventType": "ping", "payload": {"n": 1}})),
    )
    .await;
    assert_eq!(st, 202, "{published}");
    let (st, log) = call(&b, Method::GET, "/api/v1/deliveries", &key, None).await;
    assert_eq!(st, 200, "{log}");
    let rows = log["data"].as_array().expect("a page of deliveries");
    assert_eq!(rows.len(), 1, "{log}");
    let id = rows[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(rows[0]["eventId"], published["id"]);

    // a attempts, fails and holds the retry; killed, it never makes it. b takes the
    // delivery over once a's lease (3 s past the due retry) has run out.
    wait_for("a's first attempt", 10, || !rx.seen("flaky").is_empty()).await;
    // Its outcome recorded (an attempt a kill cuts short of that is made again).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let d = delivery(&b, &key, &id).await;
        if !d["attempts"].as_array().is_none_or(Vec::is_empty) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a's attempt not logged: {d}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    a.kill9();
    let tried_by_a = rx.seen("flaky").len();
    wait_for("b taking the delivery over", 20, || {
        rx.seen("flaky").len() > tried_by_a
    })
    .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let detail = loop {
        let d = delivery(&b, &key, &id).await;
        if d["state"] == "succeeded" {
            break d;
        }
        assert!(std::time::Instant::now() < deadline, "not delivered: {d}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    // The console's Overview, from the shared database: one delivery succeeded in the
    // last hour, none pending, no endpoint failing now.
    let (st, stats) = call(&b, Method::GET, "/api/v1/stats", &key, None).await;
    assert_eq!(st, 200, "{stats}");
    assert_eq!(
        (
            &stats["totals"]["deliveriesSucceeded"],
            &stats["totals"]["deliveriesFailed"],
            &stats["pendingDeliveries"]
        ),
        (&json!(1), &json!(0), &json!(0)),
        "{stats}"
    );
    assert_eq!(stats["failingEndpoints"], json!([]), "{stats}");
    // Every attempt, a's and b's, under the one webhook-id, in one log.
    let seen = rx.seen("flaky");
    assert!(seen.iter().all(|r| r.header("webhook-id") == id));
    assert_eq!(
        detail["attempts"].as_array().unwrap().len(),
        seen.len(),
        "{detail}"
    );
    // An SRE sees the takeover.
    let (_, text) = crate::metrics::scrape(&b).await;
    assert!(
        text.lines()
            .any(|l| l == "leadstream_shared_work_claimed_total{kind=\"delivery\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn a_campaign_made_on_one_process_is_read_and_listed_on_another() {
    use reqwest::Method;
    use serde_json::json;
    let pg = TestPostgres::start();
    let url = pg.new_database();
    let servers = cluster(&url, 2).await;
    let (a, b) = (&servers[0], &servers[1]);
    let key = org_with_key(&url, 6);
    let endpoint = endpoint(a, &key, "https://hooks.example.com/c").await;
    let (st, campaign) = call(
        a,
        Method::POST,
        "/api/v1/campaigns",
        &key,
        Some(json!({"name": "spring", "endpointId": endpoint})),
    )
    .await;
    assert_eq!(st, 201, "{campaign}");
    let id = campaign["id"].as_i64().expect("campaign id");
    let (st, got) = call(
        b,
        Method::GET,
        &format!("/api/v1/campaigns/{id}"),
        &key,
        None,
    )
    .await;
    assert_eq!(st, 200, "{got}");
    assert_eq!(got["name"], "spring");
    let (st, listed) = call(b, Method::GET, "/api/v1/campaigns", &key, None).await;
    assert_eq!(st, 200, "{listed}");
    assert_eq!(listed["data"][0]["id"], id, "{listed}");
}

#[tokio::test]
async fn text_postgres_cannot_store_is_a_400_that_changes_nothing() {
    use reqwest::Method;
    use serde_json::json;
    let pg = TestPostgres::start();
    let url = pg.new_database();
    let servers = cluster(&url, 1).await;
    let s = &servers[0];
    let key = org_with_key(&url, 8);
    endpoint(s, &key, "https://hooks.example.com/n").await;
    // A NUL character, which Postgres text cannot hold: the client's to fix, not a 500.
    let (st, body) = call(
        s,
        Method::POST,
        "/api/v1/outbound-events",
        &key,
        Some(json!({"eventType": "ping", "payload": {"n": 1}, "idempotencyKey": "a\u{0}b"})),
    )
    .await;
    assert_eq!(st, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("NUL"), "{body}");
    let (st, log) = call(s, Method::GET, "/api/v1/deliveries", &key, None).await;
    assert_eq!(st, 200, "{log}");
    assert_eq!(log["data"], json!([]), "nothing was published");
    let (st, ok) = call(
        s,
        Method::POST,
        "/api/v1/outbound-events",
        &key,
        Some(json!({"eventType": "ping", "payload": {"n": 1}, "idempotencyKey": "ab"})),
    )
    .await;
    assert_eq!(st, 202, "{ok}");
}
