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

/// The column (in characters) each header word starts at.
fn columns(header: &str) -> Vec<usize> {
    header
        .split_whitespace()
        .map(|w| header.find(w).unwrap())
        .collect()
}

/// `line` from character column `at` on.
fn from_column(line: &str, at: usize) -> String {
    line.chars().skip(at).collect()
}

#[test]
fn lists_print_a_header_and_aligned_columns() {
    let dir = tempfile::tempdir().unwrap();
    leadstream(
        dir.path(),
        ["org", "create", "--id", "42", "--name", "acme"],
    )
    .ok();
    leadstream(
        dir.path(),
        [
            "org",
            "create",
            "--id",
            "1000007",
            "--name",
            "a-much-longer-name",
        ],
    )
    .ok();
    leadstream(
        dir.path(),
        ["org", "set-auth", "--org", "1000007", "--mode", "hmac"],
    )
    .ok();

    let listed = leadstream(dir.path(), ["org", "list"]).ok();
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["ID", "NAME", "AUTH"],
        "{listed}"
    );
    let cols = columns(lines[0]);
    for (line, cells) in lines[1..].iter().zip([
        ["42", "acme", "api-key"],
        ["1000007", "a-much-longer-name", "hmac"],
    ]) {
        for (at, cell) in cols.iter().zip(cells) {
            assert!(
                from_column(line, *at).starts_with(cell),
                "column of {cell} in\n{listed}"
            );
        }
    }

    leadstream(dir.path(), ["api-key", "create", "--org", "42"]).ok();
    leadstream(dir.path(), ["api-key", "create", "--org", "42"]).ok();
    leadstream(
        dir.path(),
        ["api-key", "revoke", "--org", "42", "--id", "1"],
    )
    .ok();
    let keys = leadstream(dir.path(), ["api-key", "list", "--org", "42"]).ok();
    let lines: Vec<&str> = keys.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["ID", "PREFIX", "SCOPE", "STATE", "CREATED", "REVOKED"],
        "{keys}"
    );
    assert_eq!(lines.len(), 3, "{keys}");
    let scope = columns(lines[0])[2];
    assert!(from_column(lines[1], scope).starts_with("admin"), "{keys}");
    let state = columns(lines[0])[3];
    assert!(
        from_column(lines[1], state).starts_with("active")
            && from_column(lines[2], state).starts_with("revoked"),
        "newest first:\n{keys}"
    );

    let signing = leadstream(dir.path(), ["signing-key", "list", "--org", "42"]).ok();
    assert!(
        signing.contains("no signing keys") && signing.contains("signing-key create --org 42"),
        "{signing}"
    );
}

#[test]
fn set_auth_says_what_the_switch_means_and_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    leadstream(
        dir.path(),
        ["org", "create", "--id", "42", "--name", "acme"],
    )
    .ok();
    leadstream(dir.path(), ["api-key", "create", "--org", "42"]).ok();

    let out = leadstream(
        dir.path(),
        ["org", "set-auth", "--org", "42", "--mode", "hmac"],
    )
    .ok();
    assert!(
        out.contains("now authenticates with hmac (was api-key)"),
        "{out}"
    );
    assert!(
        out.contains("API keys (Authorization: Bearer) are refused"),
        "API keys stop working: {out}"
    );
    assert!(out.contains("X-Setter-Signature"), "{out}");
    assert!(
        out.contains("no active signing key") && out.contains("signing-key create --org 42"),
        "a signing key is needed: {out}"
    );

    leadstream(dir.path(), ["signing-key", "create", "--org", "42"]).ok();
    let out = leadstream(
        dir.path(),
        ["org", "set-auth", "--org", "42", "--mode", "hmac"],
    )
    .ok();
    assert!(
        out.contains("already authenticates with hmac") && out.contains("1 active signing key"),
        "{out}"
    );

    let out = leadstream(
        dir.path(),
        ["org", "set-auth", "--org", "42", "--mode", "api-key"],
    )
    .ok();
    assert!(
        out.contains("now authenticates with api-key (was hmac)"),
        "{out}"
    );
    assert!(
        out.contains("signatures (X-Setter-Signature) are refused"),
        "{out}"
    );
    assert!(out.contains("1 active API key"), "{out}");

    let unknown = leadstream(
        dir.path(),
        ["org", "set-auth", "--org", "7", "--mode", "hmac"],
    );
    assert!(!unknown.status.success());
    assert!(
        unknown.stderr.contains("no organization 7") && unknown.stderr.contains("42"),
        "{}",
        unknown.stderr
    );
}

#[test]
fn errors_say_what_to_do_next() {
    let dir = tempfile::tempdir().unwrap();
    // An empty data dir: probably the wrong one.
    let out = leadstream(dir.path(), ["api-key", "create", "--org", "42"]);
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("no organizations at all") && out.stderr.contains("--data-dir"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("org create --id 42"), "{}", out.stderr);

    leadstream(
        dir.path(),
        ["org", "create", "--id", "42", "--name", "acme"],
    )
    .ok();
    let again = leadstream(
        dir.path(),
        ["org", "create", "--id", "42", "--name", "other"],
    );
    assert!(
        again.stderr.contains("organization 42 already exists")
            && again.stderr.contains("org list"),
        "{}",
        again.stderr
    );

    let key = leadstream(dir.path(), ["signing-key", "create", "--org", "42"]).ok();
    assert!(key.starts_with("created signing key 1 "), "{key}");
    let wrong_kind = leadstream(
        dir.path(),
        ["api-key", "revoke", "--org", "42", "--id", "1"],
    );
    assert!(!wrong_kind.status.success());
    assert!(
        wrong_kind
            .stderr
            .contains("signing-key revoke --org 42 --id 1"),
        "{}",
        wrong_kind.stderr
    );

    let unknown = leadstream(
        dir.path(),
        ["signing-key", "revoke", "--org", "42", "--id", "9"],
    );
    assert!(!unknown.status.success());
    assert!(
        unknown.stderr.contains("no signing key 9")
            && unknown.stderr.contains("signing-key list --org 42"),
        "{}",
        unknown.stderr
    );

    leadstream(
        dir.path(),
        ["signing-key", "revoke", "--org", "42", "--id", "1"],
    )
    .ok();
    let twice = leadstream(
        dir.path(),
        ["signing-key", "revoke", "--org", "42", "--id", "1"],
    );
    assert!(!twice.status.success());
    assert!(twice.stderr.contains("already revoked"), "{}", twice.stderr);
}

/// `leadstream <path> --help`.
fn help_of(path: &[String]) -> String {
    let out = Command::new(BIN)
        .args(path)
        .arg("--help")
        .env_remove("LEADSTREAM_DATA_DIR")
        .output()
        .unwrap();
    assert!(out.status.success(), "{path:?} --help");
    String::from_utf8(out.stdout).unwrap()
}

/// The lines of `section` ("Options", "Arguments", "Commands") of a help text.
fn section<'a>(help: &'a str, name: &str) -> Vec<&'a str> {
    let header = format!("{name}:");
    help.lines()
        .skip_while(|l| *l != header)
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with(' '))
        .collect()
}

/// Arguments of a help section without a description, on their line or the next.
fn undescribed(lines: &[&str]) -> Vec<String> {
    let indent = |l: &str| l.len() - l.trim_start().len();
    let is_item = |l: &str| indent(l) <= 6 && l.trim_start().starts_with(['-', '<', '[']);
    let mut missing = Vec::new();
    for (i, line) in lines.iter().enumerate().filter(|(_, l)| is_item(l)) {
        let same_line = line
            .trim()
            .split_once("  ")
            .is_some_and(|(_, d)| !d.trim().is_empty());
        let next_line = lines
            .get(i + 1)
            .is_some_and(|n| !n.trim().is_empty() && indent(n) > indent(line) && !is_item(n));
        if !same_line && !next_line {
            missing.push(line.trim().to_owned());
        }
    }
    missing
}

#[test]
fn every_flag_and_positional_of_every_command_has_help_text() {
    let mut todo: Vec<Vec<String>> = vec![vec![]];
    let mut seen = 0;
    let mut missing = Vec::new();
    while let Some(path) = todo.pop() {
        let help = help_of(&path);
        seen += 1;
        for name in ["Options", "Arguments"] {
            for arg in undescribed(&section(&help, name)) {
                missing.push(format!("`leadstream {}`: {arg}", path.join(" ")));
            }
        }
        for line in section(&help, "Commands")
            .iter()
            .filter(|l| !l.trim().is_empty())
        {
            let (cmd, about) = line.trim().split_once(' ').unwrap_or((line.trim(), ""));
            if about.trim().is_empty() {
                missing.push(format!("`leadstream {}`: subcommand {cmd}", path.join(" ")));
            }
            if cmd != "help" {
                todo.push(path.iter().cloned().chain([cmd.to_owned()]).collect());
            }
        }
    }
    assert!(seen >= 17, "walked only {seen} commands");
    assert!(
        missing.is_empty(),
        "arguments without help text:\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_documented_bench_commands_exist() {
    let dir = tempfile::tempdir().unwrap();
    for cmd in ["ingest", "kafka", "clickhouse"] {
        let out = leadstream(dir.path(), ["bench", cmd, "--help"]).ok();
        assert!(
            out.contains("Usage: leadstream bench"),
            "bench {cmd}: {out}"
        );
    }
}
