//! `leadstream serve` itself: one server per data dir (the `serve.lock` lock), the
//! listen address, and what it prints.

use crate::support::{batch, lead, leadstream, BIN};
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const STARTUP: Duration = Duration::from_secs(30);

/// A `leadstream serve` child started with chosen arguments, its output in files.
/// Killed (SIGKILL) on drop.
pub struct Serve {
    child: Option<Child>,
    logs: tempfile::TempDir,
    addr: Option<SocketAddr>,
}

impl Serve {
    /// Starts `leadstream --data-dir <data_dir> serve --listen <listen>` with `env`,
    /// without waiting for anything.
    pub fn spawn(data_dir: &Path, listen: &str, env: &[(&str, &str)]) -> Self {
        let logs = tempfile::tempdir().unwrap();
        let stdout = File::create(logs.path().join("stdout")).unwrap();
        let stderr = File::create(logs.path().join("stderr")).unwrap();
        let child = Command::new(BIN)
            .arg("--data-dir")
            .arg(data_dir)
            .args(["serve", "--listen", listen])
            .env_remove("LEADSTREAM_DATA_DIR")
            .env_remove("LEADSTREAM_LISTEN")
            .env_remove("NO_COLOR")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("spawn leadstream serve");
        Self {
            child: Some(child),
            logs,
            addr: None,
        }
    }

    /// Starts a server and waits for its banner; panics if it exits instead.
    pub async fn start(data_dir: &Path, listen: &str, env: &[(&str, &str)]) -> Self {
        let mut s = Self::spawn(data_dir, listen, env);
        let deadline = Instant::now() + STARTUP;
        while s.addr.is_none() {
            s.addr = s
                .stdout()
                .lines()
                .find_map(|l| l.strip_prefix("leadstream listening on http://"))
                .map(|rest| {
                    let addr = rest.split_whitespace().next().unwrap_or("");
                    addr.parse()
                        .unwrap_or_else(|_| panic!("bad address in banner: {rest:?}"))
                });
            if let Some(status) = s.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("serve exited early with {status}\n{}", s.output());
            }
            assert!(
                Instant::now() < deadline,
                "no banner within {STARTUP:?}\n{}",
                s.output()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        s
    }

    /// The first address of the banner.
    pub fn addr(&self) -> SocketAddr {
        self.addr.expect("not started")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("not running").id()
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.logs.path().join("stdout")).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.logs.path().join("stderr")).unwrap_or_default()
    }

    pub fn output(&self) -> String {
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout(),
            self.stderr()
        )
    }

    /// Waits at most `within` for the process to exit on its own.
    pub fn exit_within(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .expect("not running")
                .try_wait()
                .unwrap()
            {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "still running after {within:?}\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("SIGKILL");
            c.wait().expect("reap");
        }
    }

    /// Waits until `GET /readyz` answers 200.
    pub async fn ready(&self) {
        let deadline = Instant::now() + STARTUP;
        let url = format!("http://{}/readyz", self.addr());
        loop {
            if client()
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "/readyz not 200 within {STARTUP:?}\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn data_dir(t: &tempfile::TempDir) -> PathBuf {
    t.path().join("data")
}

/// Creates org 42 with an API key and returns the key.
fn org_with_key(dir: &Path) -> String {
    leadstream(dir, ["org", "create", "--id", "42", "--name", "acme"]).ok();
    leadstream(dir, ["api-key", "create", "--org", "42"])
        .ok()
        .lines()
        .last()
        .unwrap()
        .to_owned()
}

async fn post(s: &Serve, key: &str, k: usize) -> serde_json::Value {
    let r = client()
        .post(format!("http://{}/api/v1/webhooks/lead-events", s.addr()))
        .bearer_auth(key)
        .json(&batch(42, "mastery_purchase", vec![lead(k)]))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200, "{}", s.output());
    r.json().await.unwrap()
}

#[tokio::test]
async fn a_second_serve_on_the_same_data_dir_exits_at_once_naming_the_first() {
    let t = tempfile::tempdir().unwrap();
    let dir = data_dir(&t);
    let key = org_with_key(&dir);
    let first = Serve::start(&dir, "127.0.0.1:0", &[]).await;
    first.ready().await;

    let started = Instant::now();
    let mut second = Serve::spawn(&dir, "127.0.0.1:0", &[]);
    let status = second.exit_within(Duration::from_secs(10));
    assert!(
        !status.success(),
        "a second server on the same data dir must fail\n{}",
        second.output()
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "it fails at once, took {:?}",
        started.elapsed()
    );
    let err = second.stderr();
    assert!(
        err.contains(&format!("pid {}", first.pid())),
        "names the running server's pid {}: {err}",
        first.pid()
    );
    assert!(
        err.contains("in use") && err.contains(&dir.display().to_string()),
        "says the data dir is in use: {err}"
    );
    assert!(err.contains("--data-dir"), "says what to do: {err}");
    assert!(
        !second.stdout().contains("listening"),
        "it never listened: {}",
        second.stdout()
    );

    // The first one carries on.
    assert_eq!(post(&first, &key, 1).await["inserted"], 1);
}

#[tokio::test]
async fn the_admin_cli_works_beside_a_running_server() {
    let t = tempfile::tempdir().unwrap();
    let dir = data_dir(&t);
    org_with_key(&dir);
    let s = Serve::start(&dir, "127.0.0.1:0", &[]).await;
    s.ready().await;

    leadstream(&dir, ["org", "create", "--id", "7", "--name", "other"]).ok();
    assert!(leadstream(&dir, ["org", "list"]).ok().contains("other"));
    leadstream(&dir, ["org", "set-auth", "--org", "7", "--mode", "hmac"]).ok();
    let key = leadstream(&dir, ["api-key", "create", "--org", "42"])
        .ok()
        .lines()
        .last()
        .unwrap()
        .to_owned();
    leadstream(&dir, ["signing-key", "create", "--org", "7"]).ok();
    assert!(leadstream(&dir, ["api-key", "list", "--org", "42"])
        .ok()
        .contains("active"));
    leadstream(&dir, ["api-key", "revoke", "--org", "42", "--id", "1"]).ok();

    // The server sees the new key.
    assert_eq!(post(&s, &key, 1).await["inserted"], 1);
}

#[tokio::test]
async fn after_kill_9_a_new_serve_starts_on_the_same_data_dir() {
    let t = tempfile::tempdir().unwrap();
    let dir = data_dir(&t);
    let key = org_with_key(&dir);
    let mut first = Serve::start(&dir, "127.0.0.1:0", &[]).await;
    first.ready().await;
    assert_eq!(post(&first, &key, 1).await["inserted"], 1);
    let lock = std::fs::read_to_string(dir.join("serve.lock")).unwrap();
    assert_eq!(
        lock.trim(),
        first.pid().to_string(),
        "serve.lock holds the holder's pid"
    );
    first.kill9();
    assert!(
        dir.join("serve.lock").exists(),
        "kill -9 leaves the lock file behind"
    );

    let second = Serve::start(&dir, "127.0.0.1:0", &[]).await;
    second.ready().await;
    let again = post(&second, &key, 1).await;
    assert_eq!(
        (again["inserted"].as_u64(), again["duplicates"].as_u64()),
        (Some(0), Some(1)),
        "{again}"
    );
    let lock = std::fs::read_to_string(dir.join("serve.lock")).unwrap();
    assert_eq!(lock.trim(), second.pid().to_string());
}

#[tokio::test]
async fn listen_takes_a_host_name() {
    let t = tempfile::tempdir().unwrap();
    let port = free_port();
    let s = Serve::start(&data_dir(&t), &format!("localhost:{port}"), &[]).await;
    assert_eq!(s.addr().port(), port, "{}", s.stdout());
    assert!(s.addr().ip().is_loopback(), "{}", s.stdout());
    let r = client()
        .get(format!("http://localhost:{port}/healthz"))
        .send()
        .await
        .expect("GET /healthz");
    assert_eq!(r.status(), 200);

    // Not a host:port at all: refused before anything starts, with an example.
    let bad = Command::new(BIN)
        .args(["serve", "--listen", "localhost"])
        .env_remove("LEADSTREAM_LISTEN")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("host:port") && err.contains("127.0.0.1:8080"),
        "{err}"
    );
}

#[tokio::test]
async fn serve_writes_no_escape_codes_when_its_output_is_not_a_terminal() {
    let t = tempfile::tempdir().unwrap();
    let dir = data_dir(&t);
    let key = org_with_key(&dir);
    let s = Serve::start(&dir, "127.0.0.1:0", &[("LEADSTREAM_LOG", "debug")]).await;
    s.ready().await;
    post(&s, &key, 1).await;
    let (out, err) = (s.stdout(), s.stderr());
    assert!(
        !err.trim().is_empty(),
        "serve logs to stderr at debug level"
    );
    assert!(!err.contains('\x1b'), "escape codes in stderr: {err:?}");
    assert!(!out.contains('\x1b'), "escape codes in stdout: {out:?}");
}

#[tokio::test]
async fn the_banner_hint_fits_the_first_orgs_auth_mode() {
    // No organization: the hint starts by creating one.
    let t = tempfile::tempdir().unwrap();
    let dir = data_dir(&t);
    let mut s = Serve::start(&dir, "127.0.0.1:0", &[]).await;
    let out = s.stdout();
    let abs = std::path::absolute(&dir).unwrap();
    assert!(
        out.contains(&format!("--data-dir {} org create", abs.display())),
        "{out}"
    );
    assert!(out.contains("api-key create --org 42"), "{out}");
    s.kill9();

    // An org in hmac mode: the signature recipe, not a bearer key.
    leadstream(&dir, ["org", "create", "--id", "7", "--name", "signed"]).ok();
    leadstream(&dir, ["org", "set-auth", "--org", "7", "--mode", "hmac"]).ok();
    let mut s = Serve::start(&dir, "127.0.0.1:0", &[]).await;
    let out = s.stdout();
    assert!(
        out.contains("signing-key create --org 7") && out.contains("X-Setter-Signature"),
        "{out}"
    );
    assert!(
        !out.contains("Bearer") && !out.contains("org create"),
        "{out}"
    );
    s.kill9();

    // Several: the first, said so.
    leadstream(&dir, ["org", "create", "--id", "42", "--name", "acme"]).ok();
    let s = Serve::start(&dir, "127.0.0.1:0", &[]).await;
    let out = s.stdout();
    assert!(
        out.contains("organization 7 (signed)") && out.contains("first of 2"),
        "{out}"
    );
}
