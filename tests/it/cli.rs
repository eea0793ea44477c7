//! The admin CLI against a running server, `--help`, and the health endpoints.

use crate::support::{batch, lead, leadstream, Reply, TestServer, BIN};
use std::process::Command;
use std::time::{Duration, Instant};

/// Repeats `post` until it answers `status`, for at most a second.
async fn within_a_second<F, Fut>(status: u16, mut post: F) -> Reply
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Reply>,
{
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let r = post().await;
        if r.status == status || Instant::now() > deadline {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn api_key_create_prints_the_key_alone_on_its_last_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = leadstream(
        dir.path(),
        ["org", "create", "--id", "42", "--name", "acme"],
    )
    .ok();
    assert!(out.contains("42") && out.contains("acme"), "{out}");

    let out = leadstream(dir.path(), ["api-key", "create", "--org", "42"]);
    let stdout = out.ok();
    let last = stdout.lines().last().unwrap();
    assert!(stdout.ends_with('\n'));
    assert!(
        !last.is_empty() && !last.contains(char::is_whitespace),
        "last line is only the key: {last:?}"
    );
    assert!(
        stdout.lines().count() > 1,
        "an explanation comes first: {stdout:?}"
    );

    // `list` shows a prefix, never the key, and its state.
    let listed = leadstream(dir.path(), ["api-key", "list", "--org", "42"]).ok();
    assert!(
        !listed.contains(last),
        "list must not print the key: {listed}"
    );
    assert!(
        listed.contains(&last[..8]),
        "list shows the key's prefix: {listed}"
    );
    assert!(listed.contains("active"), "{listed}");

    let signing = leadstream(dir.path(), ["signing-key", "create", "--org", "42"]);
    assert!(signing.status.success());
    let secret = signing.stdout.lines().last().unwrap();
    assert!(!secret.is_empty() && !secret.contains(char::is_whitespace));
    assert_ne!(secret, last);
}

#[tokio::test]
async fn keys_created_or_revoked_while_serving_take_effect_within_a_second() {
    let s = TestServer::start().await;
    s.org(42);
    let body = batch(42, "mastery_purchase", vec![lead(1)]);

    let key = s.api_key(42);
    let r = within_a_second(200, || s.post_bearer(&key.secret, &body)).await;
    assert_eq!(r.counts(), (1, 1, 0, 0));

    s.revoke("api-key", 42, &key);
    within_a_second(401, || s.post_bearer(&key.secret, &body))
        .await
        .error(401);
    let listed = s.cli(["api-key", "list", "--org", "42"]).ok();
    assert!(listed.contains("revoked"), "{listed}");

    // Revoking twice, or a key that does not exist, fails with a message.
    let again = s.cli([
        "api-key",
        "revoke",
        "--org",
        "42",
        "--id",
        &key.id.to_string(),
    ]);
    assert!(!again.status.success());
    assert!(
        again.stderr.contains(&key.id.to_string()),
        "{}",
        again.stderr
    );
}

#[tokio::test]
async fn creating_an_org_twice_fails_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    leadstream(
        dir.path(),
        ["org", "create", "--id", "42", "--name", "acme"],
    )
    .ok();
    let again = leadstream(
        dir.path(),
        ["org", "create", "--id", "42", "--name", "acme"],
    );
    assert!(
        !again.status.success(),
        "second create must fail: {}",
        again.stdout
    );
    assert!(
        again.stderr.contains("organization 42 already exists"),
        "stderr: {:?}",
        again.stderr
    );

    let listed = leadstream(dir.path(), ["org", "list"]).ok();
    assert_eq!(
        listed.lines().filter(|l| l.starts_with("42")).count(),
        1,
        "{listed}"
    );

    let unknown = leadstream(dir.path(), ["api-key", "create", "--org", "7"]);
    assert!(!unknown.status.success());
    assert!(
        unknown.stderr.contains("no organization 7"),
        "stderr: {:?}",
        unknown.stderr
    );
}

#[test]
fn help_documents_the_flags_and_their_environment_variables() {
    let help = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .env_remove("LEADSTREAM_DATA_DIR")
            .env_remove("LEADSTREAM_LISTEN")
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let top = help(&["--help"]);
    for needle in [
        "--data-dir",
        "LEADSTREAM_DATA_DIR",
        "serve",
        "org",
        "api-key",
        "signing-key",
    ] {
        assert!(
            top.contains(needle),
            "`leadstream --help` should mention {needle}:\n{top}"
        );
    }
    let serve = help(&["serve", "--help"]);
    for needle in [
        "--listen",
        "LEADSTREAM_LISTEN",
        "--data-dir",
        "LEADSTREAM_DATA_DIR",
    ] {
        assert!(
            serve.contains(needle),
            "`leadstream serve --help` should mention {needle}:\n{serve}"
        );
    }
}

#[tokio::test]
async fn serve_takes_its_data_dir_and_address_from_the_environment() {
    let s = TestServer::builder().config_from_env().start().await;
    assert!(
        s.data_dir().join("events.db").exists(),
        "LEADSTREAM_DATA_DIR is where the store lives"
    );
    let key = s.org(42).api_key(42);
    let r = s
        .post_bearer(&key.secret, &batch(42, "t", vec![lead(1)]))
        .await;
    assert_eq!(r.counts(), (1, 1, 0, 0));

    // The admin commands read LEADSTREAM_DATA_DIR too.
    let out = Command::new(BIN)
        .args(["org", "list"])
        .env("LEADSTREAM_DATA_DIR", s.data_dir())
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("org42"));
}

#[tokio::test]
async fn health_and_readiness_answer_200() {
    let s = TestServer::start().await;
    assert_eq!(s.get("/healthz").await.status, 200);
    assert_eq!(s.get("/readyz").await.status, 200);
}
