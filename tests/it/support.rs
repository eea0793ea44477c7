//! The test server (the real `leadstream` binary on a real socket), the admin CLI, and
//! small helpers to build and send lead-event requests.

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_leadstream");
pub const LEAD_EVENTS: &str = "/api/v1/webhooks/lead-events";
/// The server's body limit (10 MB).
pub const MAX_BODY: usize = 10 * 1024 * 1024;

const STARTUP: Duration = Duration::from_secs(30);

/// A `leadstream serve` child process on `127.0.0.1:<port 0>` with its own data dir.
/// Killed on drop.
pub struct TestServer {
    dir: TempDir,
    child: Option<Child>,
    addr: SocketAddr,
    starts: u32,
    client: reqwest::Client,
    config_from_env: bool,
    env: Vec<(String, String)>,
    open_files: Option<u32>,
}

static CONFIGS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Options for [`TestServer`].
#[derive(Default)]
pub struct Builder {
    config_from_env: bool,
    env: Vec<(String, String)>,
    open_files: Option<u32>,
}

impl Builder {
    /// Passes the data dir and listen address as `LEADSTREAM_DATA_DIR` and
    /// `LEADSTREAM_LISTEN` instead of flags.
    pub fn config_from_env(mut self) -> Self {
        self.config_from_env = true;
        self
    }

    /// Sets an environment variable for every start of the server, e.g.
    /// `LEADSTREAM_CLICKHOUSE_URL`.
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.to_owned(), value.into()));
        self
    }

    /// Runs the server with this open-file limit (soft and hard), through `prlimit`.
    pub fn open_files(mut self, n: u32) -> Self {
        self.open_files = Some(n);
        self
    }

    /// Runs the server with `toml` as its `--config` file (via `LEADSTREAM_CONFIG`).
    pub fn config(self, toml: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "leadstream-test-{}-{}.toml",
            std::process::id(),
            CONFIGS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::write(&path, toml).expect("write test config");
        self.env("LEADSTREAM_CONFIG", path.display().to_string())
    }

    /// Starts the server on a fresh data dir and waits until `/readyz` answers 200.
    pub async fn start(self) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("logs")).unwrap();
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let mut s = TestServer {
            dir,
            child: None,
            addr: ([127, 0, 0, 1], 0).into(),
            starts: 0,
            client,
            config_from_env: self.config_from_env,
            env: self.env,
            open_files: self.open_files,
        };
        s.spawn().await;
        s
    }
}

impl TestServer {
    /// Starts a server on a fresh data dir and waits until `/readyz` answers 200.
    pub async fn start() -> Self {
        Self::builder().start().await
    }

    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The data dir the server and the CLI share.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// A `POST /api/v1/webhooks/lead-events` to add credentials and a body to.
    pub fn lead_events(&self) -> reqwest::RequestBuilder {
        self.client.post(self.url(LEAD_EVENTS))
    }

    /// `POST`s `body` with `Authorization: Bearer <key>`.
    pub async fn post_bearer(&self, key: &str, body: &Value) -> Reply {
        self.lead_events().bearer_auth(key).json(body).reply().await
    }

    /// `POST`s the raw `body` with `X-Setter-Signature` computed with `secret`.
    pub async fn post_signed(&self, secret: &str, body: &str) -> Reply {
        self.lead_events()
            .header("content-type", "application/json")
            .header("x-setter-signature", sign(secret, body.as_bytes()))
            .body(body.to_owned())
            .reply()
            .await
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Reply {
        self.client.get(self.url(path)).reply().await
    }

    /// The status of `GET path` with `Authorization: Bearer key`.
    pub async fn get_with_key(&self, path: &str, key: &str) -> u16 {
        self.client
            .get(self.url(path))
            .bearer_auth(key)
            .send()
            .await
            .expect("GET")
            .status()
            .as_u16()
    }

    /// Runs `leadstream --data-dir <data dir> args…`.
    pub fn cli<I, S>(&self, args: I) -> CliOutput
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        leadstream(&self.data_dir(), args)
    }

    /// Creates an organization through the CLI.
    pub fn org(&self, id: i64) -> &Self {
        self.cli([
            "org",
            "create",
            "--id",
            &id.to_string(),
            "--name",
            &format!("org{id}"),
        ])
        .ok();
        self
    }

    /// Sets an organization's auth mode (`api-key` or `hmac`) through the CLI.
    pub fn auth_mode(&self, org: i64, mode: &str) -> &Self {
        self.cli(["org", "set-auth", "--org", &org.to_string(), "--mode", mode])
            .ok();
        self
    }

    /// Issues an API key through the CLI.
    pub fn api_key(&self, org: i64) -> Key {
        Key::parse(
            &self
                .cli(["api-key", "create", "--org", &org.to_string()])
                .ok(),
        )
    }

    /// Issues an API key of `scope` (read, ingest or admin) through the CLI.
    pub fn scoped_key(&self, org: i64, scope: &str) -> Key {
        Key::parse(
            &self
                .cli([
                    "api-key",
                    "create",
                    "--org",
                    &org.to_string(),
                    "--scope",
                    scope,
                ])
                .ok(),
        )
    }

    /// Issues an HMAC signing key through the CLI.
    pub fn signing_key(&self, org: i64) -> Key {
        Key::parse(
            &self
                .cli(["signing-key", "create", "--org", &org.to_string()])
                .ok(),
        )
    }

    /// Revokes a key through the CLI; `kind` is `api-key` or `signing-key`.
    pub fn revoke(&self, kind: &str, org: i64, key: &Key) {
        self.cli([
            kind,
            "revoke",
            "--org",
            &org.to_string(),
            "--id",
            &key.id.to_string(),
        ])
        .ok();
    }

    /// `kill -9`: no chance to flush or clean up anything.
    /// The child's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("SIGKILL"); // std sends SIGKILL on Unix
            c.wait().expect("reap");
        }
    }

    /// Sends `SIGTERM` (graceful shutdown) without waiting.
    pub fn sigterm(&self) {
        let pid = self.child.as_ref().expect("server not running").id();
        let st = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(st.success(), "kill -TERM failed");
    }

    /// `kill -TERM` and waits for the process to exit.
    pub fn stop(&mut self) -> ExitStatus {
        self.sigterm();
        self.wait_exit()
    }

    /// Waits (at most 15 s) for the process to exit, after [`sigterm`](Self::sigterm).
    pub fn wait_exit(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("server not running");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = c.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                panic!(
                    "server did not exit within 15 s of SIGTERM\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops passing the environment variable `key` (set with [`Builder::env`]) to the
    /// next starts, e.g. to restart without a failpoint.
    pub fn remove_env(&mut self, key: &str) {
        self.env.retain(|(k, _)| k != key);
    }

    /// Sets `key` for the next [`restart`](Self::restart).
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.remove_env(key);
        self.env.push((key.to_owned(), value.to_owned()));
    }

    /// Starts the server again on the same data dir (after [`kill9`](Self::kill9) or
    /// [`stop`](Self::stop)); it may get a new port.
    pub async fn restart(&mut self) {
        self.kill9();
        self.spawn().await;
    }

    /// The server's stdout and stderr of every start so far, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for n in 1..=self.starts {
            for stream in ["stdout", "stderr"] {
                let p = self.log_path(n, stream);
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                out.push_str(&format!("--- start {n} {stream} ---\n{text}\n"));
            }
        }
        out
    }

    fn log_path(&self, n: u32, stream: &str) -> PathBuf {
        self.dir
            .path()
            .join("logs")
            .join(format!("{stream}-{n}.log"))
    }

    async fn spawn(&mut self) {
        self.starts += 1;
        let n = self.starts;
        let stdout = File::create(self.log_path(n, "stdout")).unwrap();
        let stderr = File::create(self.log_path(n, "stderr")).unwrap();
        let mut cmd = match self.open_files {
            Some(n) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={n}:{n}")).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        if self.config_from_env {
            cmd.arg("serve")
                .env("LEADSTREAM_DATA_DIR", self.data_dir())
                .env("LEADSTREAM_LISTEN", "127.0.0.1:0");
        } else {
            cmd.arg("--data-dir")
                .arg(self.data_dir())
                .args(["serve", "--listen", "127.0.0.1:0"]);
            cmd.env_remove("LEADSTREAM_DATA_DIR")
                .env_remove("LEADSTREAM_LISTEN");
        }
        // A shared database only when the test asks for one.
        cmd.env_remove("LEADSTREAM_DATABASE_URL");
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("spawn leadstream serve");
        self.child = Some(child);
        self.addr = self.wait_for_banner(n).await;
        self.wait_ready().await;
    }

    /// Reads the address from "leadstream listening on http://ADDR ...".
    async fn wait_for_banner(&mut self, n: u32) -> SocketAddr {
        let deadline = Instant::now() + STARTUP;
        loop {
            let text = std::fs::read_to_string(self.log_path(n, "stdout")).unwrap_or_default();
            if let Some(rest) = text
                .lines()
                .find_map(|l| l.strip_prefix("leadstream listening on http://"))
            {
                let addr = rest.split_whitespace().next().unwrap_or("");
                return addr
                    .parse()
                    .unwrap_or_else(|_| panic!("bad address in banner: {rest:?}"));
            }
            self.assert_running();
            assert!(
                Instant::now() < deadline,
                "no listening banner within {STARTUP:?}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Ok(r) = self.client.get(self.url("/readyz")).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            self.assert_running();
            assert!(
                Instant::now() < deadline,
                "/readyz not 200 within {STARTUP:?}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn assert_running(&mut self) {
        if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
            self.child = None;
            panic!(
                "leadstream serve exited early with {status}\n{}",
                self.logs()
            );
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// An issued key: its id (for `revoke`) and the secret printed once.
#[derive(Debug, Clone)]
pub struct Key {
    pub id: i64,
    pub secret: String,
}

impl Key {
    /// From `create`'s output: "created … key <id> for organization …" first, the key
    /// alone on the last line.
    pub fn parse(stdout: &str) -> Self {
        let first = stdout.lines().next().unwrap_or("");
        let words: Vec<&str> = first.split_whitespace().collect();
        let id = words
            .iter()
            .position(|w| *w == "for")
            .and_then(|i| words.get(i.checked_sub(1)?)?.parse().ok())
            .unwrap_or_else(|| panic!("no key id in {first:?}"));
        let secret = stdout.lines().last().unwrap_or("").to_owned();
        Self { id, secret }
    }
}

/// The outcome of a CLI run.
#[derive(Debug)]
pub struct CliOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    /// Asserts success and returns stdout.
    #[track_caller]
    pub fn ok(self) -> String {
        assert!(
            self.status.success(),
            "leadstream failed ({}):\nstdout: {}\nstderr: {}",
            self.status,
            self.stdout,
            self.stderr
        );
        self.stdout
    }
}

impl From<Output> for CliOutput {
    fn from(o: Output) -> Self {
        Self {
            status: o.status,
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Runs `leadstream --data-dir <dir> args…`.
pub fn leadstream<I, S>(dir: &Path, args: I) -> CliOutput
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env_remove("LEADSTREAM_DATA_DIR")
        .env_remove("LEADSTREAM_LISTEN")
        .env_remove("LEADSTREAM_DATABASE_URL")
        .stdin(Stdio::null())
        .output()
        .expect("run leadstream")
        .into()
}

/// A response: status and JSON body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    /// Asserts a 200 and returns the body.
    #[track_caller]
    pub fn accepted(&self) -> &Value {
        assert_eq!(
            self.status, 200,
            "expected 200, got {}: {}",
            self.status, self.body
        );
        assert_eq!(self.body["status"], "accepted", "{}", self.body);
        &self.body
    }

    /// Asserts `status` with a body `{"error": "<non-empty message>"}` and returns the message.
    #[track_caller]
    pub fn error(&self, status: u16) -> &str {
        assert_eq!(
            self.status, status,
            "expected {status}, got {}: {}",
            self.status, self.body
        );
        let msg = self.body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no \"error\" string in {}", self.body));
        assert!(!msg.trim().is_empty(), "empty error message for {status}");
        msg
    }

    /// `(received, inserted, duplicates, rejected)` of a 200.
    #[track_caller]
    pub fn counts(&self) -> (u64, u64, u64, u64) {
        let b = self.accepted();
        let n = |f: &str| b[f].as_u64().unwrap_or_else(|| panic!("no {f} in {b}"));
        (n("received"), n("inserted"), n("duplicates"), n("rejected"))
    }
}

/// Sends a request and reads its [`Reply`].
pub trait Call {
    async fn reply(self) -> Reply;
}

impl Call for reqwest::RequestBuilder {
    async fn reply(self) -> Reply {
        let r = self.send().await.expect("request failed");
        let status = r.status().as_u16();
        let text = r.text().await.expect("read body");
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("status {status}: body is not JSON ({e}): {text:?}"));
        Reply { status, body }
    }
}

/// Reads one HTTP/1.1 response with a `Content-Length` body.
pub async fn read_response(rd: &mut (impl tokio::io::AsyncRead + Unpin)) -> Reply {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut tmp = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = rd.read(&mut tmp).await.expect("read response");
        assert!(
            n > 0,
            "connection closed before a response: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&tmp[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .map(|(_, v)| v.trim().parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no Content-Length in {head:?}"));
    while buf.len() < head_end + len {
        let n = rd.read(&mut tmp).await.expect("read response body");
        assert!(n > 0, "connection closed inside the response body");
        buf.extend_from_slice(&tmp[..n]);
    }
    let body: Value = serde_json::from_slice(&buf[head_end..head_end + len]).expect("JSON body");
    Reply { status, body }
}

/// `sha256=<hex>` of HMAC-SHA256(secret, body), as
/// `printf '%s' "$BODY" | openssl dgst -sha256 -hmac "$SECRET" -binary | xxd -p -c 256`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256>>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A request body.
pub fn batch(org: i64, event_type: &str, events: Vec<Value>) -> Value {
    json!({ "organizationId": org, "eventType": event_type, "events": events })
}

/// The `k`-th of many distinct events: a distinct instant, phones from a pool of 10,000.
pub fn lead(k: usize) -> Value {
    json!({ "phoneE164": format!("+1212555{:04}", k % 10_000), "occurredAt": instant(k) })
}

/// `2026-05-01T00:00:00Z` plus `k` seconds (k below 30 days).
pub fn instant(k: usize) -> String {
    assert!(k < 30 * 86_400);
    format!(
        "2026-05-{:02}T{:02}:{:02}:{:02}Z",
        1 + k / 86_400,
        k / 3600 % 24,
        k / 60 % 60,
        k % 60
    )
}

/// Counts the rows in `<data dir>/events.db`, straight from SQLite.
pub fn stored_rows(data_dir: &Path) -> u64 {
    let conn = rusqlite::Connection::open(data_dir.join("events.db")).expect("open events.db");
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn.query_row("SELECT count(*) FROM lead_events", [], |r| r.get(0))
        .expect("count lead_events")
}
