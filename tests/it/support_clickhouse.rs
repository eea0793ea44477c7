//! A real ClickHouse server for the tests: `clickhouse-server` from Debian's package
//! (18.16; `apt-get install -y clickhouse-server`) or an upstream `clickhouse` binary,
//! started on free loopback ports with its own temporary data, tmp and log dirs, and
//! killed on drop.
//!
//! The generated config is the minimum 18.16 needs: a logger, `listen_host`
//! 127.0.0.1, the HTTP, TCP and interserver ports (all three, so servers of tests
//! running in parallel do not collide), the paths, and a `users.xml` with the
//! `default` user (no password, loopback only), a `default` profile and a `default`
//! quota. It runs as root without any extra flag.
//!
//! Queries go over plain HTTP on a `std` socket, so they work from sync tests and
//! from async ones alike.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// How long a fresh or restarted server may take to answer `/ping`.
const STARTUP: Duration = Duration::from_secs(60);

/// What to run, in order of preference.
fn find_binary() -> (PathBuf, Option<&'static str>) {
    if let Some(p) = std::env::var_os("CLICKHOUSE_SERVER_BIN") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "CLICKHOUSE_SERVER_BIN={} is not a file; unset it, or apt-get install -y clickhouse-server", p.display());
        return (p, None);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/usr/local/bin"].map(PathBuf::from))
        .collect();
    for (name, sub) in [("clickhouse-server", None), ("clickhouse", Some("server"))] {
        if let Some(p) = dirs.iter().map(|d| d.join(name)).find(|p| p.is_file()) {
            return (p, sub);
        }
    }
    panic!(
        "clickhouse-server not found (looked in PATH, /usr/sbin, /usr/bin, /usr/local/bin; or set CLICKHOUSE_SERVER_BIN).\n\
         The ClickHouse tests need a real server: apt-get install -y clickhouse-server (CI's .ci/run installs it)"
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .expect("local addr")
        .port()
}

/// A `clickhouse-server` child process. Killed on drop.
pub struct ClickHouseServer {
    dir: TempDir,
    bin: PathBuf,
    subcommand: Option<&'static str>,
    http_port: u16,
    child: Option<Child>,
    starts: u32,
}

impl ClickHouseServer {
    /// Starts a server on fresh dirs and free ports and waits until `/ping` answers.
    ///
    /// # Panics
    /// When no server binary is installed (saying how to install one) or it does not
    /// come up.
    pub fn start() -> Self {
        let (bin, subcommand) = find_binary();
        let dir = tempfile::tempdir().expect("tempdir");
        let http_port = free_port();
        let (tcp_port, interserver_port) = (free_port(), free_port());
        let root = dir.path();
        for d in ["data", "tmp", "user_files", "format_schemas", "log"] {
            std::fs::create_dir_all(root.join(d)).expect("create clickhouse dirs");
        }
        std::fs::write(
            root.join("config.xml"),
            config_xml(root, http_port, tcp_port, interserver_port),
        )
        .expect("write config.xml");
        std::fs::write(root.join("users.xml"), USERS_XML).expect("write users.xml");
        let mut s = Self {
            dir,
            bin,
            subcommand,
            http_port,
            child: None,
            starts: 0,
        };
        s.spawn();
        s
    }

    /// `http://127.0.0.1:<port>`, for `LEADSTREAM_CLICKHOUSE_URL`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// The HTTP port.
    pub fn port(&self) -> u16 {
        self.http_port
    }

    /// `kill -9`: the server gets no chance to finish anything.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same data dir and port (after [`kill`](Self::kill)).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Runs `sql` and returns the response body, trimmed.
    ///
    /// # Panics
    /// When the server answers with an error.
    #[track_caller]
    pub fn query(&self, sql: &str) -> String {
        match self.try_query(sql) {
            Ok(body) => body,
            Err(e) => panic!("{sql}: {e}\n{}", self.logs()),
        }
    }

    /// `SELECT count() ...` as a number.
    #[track_caller]
    pub fn count(&self, sql: &str) -> u64 {
        let out = self.query(sql);
        out.parse()
            .unwrap_or_else(|_| panic!("{sql}: not a number: {out:?}"))
    }

    /// Runs `sql`: the body of a 200, or the status and body of anything else.
    pub fn try_query(&self, sql: &str) -> Result<String, String> {
        let (status, body) = http(self.http_port, "POST", "/", sql).map_err(|e| e.to_string())?;
        if status == 200 {
            Ok(body.trim().to_owned())
        } else {
            Err(format!("HTTP {status}: {}", body.trim()))
        }
    }

    /// The server's error log, for failure messages.
    pub fn logs(&self) -> String {
        let err =
            std::fs::read_to_string(self.dir.path().join("log/server.err.log")).unwrap_or_default();
        let tail: Vec<&str> = err.lines().rev().take(30).collect();
        format!(
            "--- clickhouse-server error log (last lines) ---\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    }

    fn spawn(&mut self) {
        self.starts += 1;
        let root = self.dir.path();
        let out = std::fs::File::create(root.join(format!("log/stdout-{}.log", self.starts)))
            .expect("create stdout log");
        let err = std::fs::File::create(root.join(format!("log/stderr-{}.log", self.starts)))
            .expect("create stderr log");
        let mut cmd = Command::new(&self.bin);
        if let Some(sub) = self.subcommand {
            cmd.arg(sub);
        }
        cmd.arg(format!(
            "--config-file={}",
            root.join("config.xml").display()
        ))
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.bin.display()));
        self.child = Some(child);
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Ok((200, body)) = http(self.http_port, "GET", "/ping", "") {
                if body.trim() == "Ok." {
                    return;
                }
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                let stderr =
                    std::fs::read_to_string(root.join(format!("log/stderr-{}.log", self.starts)))
                        .unwrap_or_default();
                panic!(
                    "{} exited with {status} at start\n{stderr}\n{}",
                    self.bin.display(),
                    self.logs()
                );
            }
            assert!(
                Instant::now() < deadline,
                "clickhouse-server did not answer /ping within {STARTUP:?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ClickHouseServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn config_xml(root: &Path, http_port: u16, tcp_port: u16, interserver_port: u16) -> String {
    let r = root.display();
    format!(
        r#"<?xml version="1.0"?>
<yandex>
    <logger>
        <level>warning</level>
        <log>{r}/log/server.log</log>
        <errorlog>{r}/log/server.err.log</errorlog>
        <size>100M</size>
        <count>1</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <http_port>{http_port}</http_port>
    <tcp_port>{tcp_port}</tcp_port>
    <interserver_http_port>{interserver_port}</interserver_http_port>
    <path>{r}/data/</path>
    <tmp_path>{r}/tmp/</tmp_path>
    <user_files_path>{r}/user_files/</user_files_path>
    <format_schema_path>{r}/format_schemas/</format_schema_path>
    <users_config>{r}/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mark_cache_size>268435456</mark_cache_size>
    <uncompressed_cache_size>268435456</uncompressed_cache_size>
    <max_concurrent_queries>100</max_concurrent_queries>
    <keep_alive_timeout>3</keep_alive_timeout>
    <mlock_executable>false</mlock_executable>
</yandex>
"#
    )
}

const USERS_XML: &str = r#"<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <max_memory_usage>4000000000</max_memory_usage>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks>
                <ip>127.0.0.1</ip>
                <ip>::1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default></default>
    </quotas>
</yandex>
"#;

/// One HTTP/1.1 request with `Connection: close`; returns status and body (chunked
/// bodies decoded).
fn http(port: u16, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    write!(s, "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}", body.len())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_owned());
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status"))?;
    let mut rest = &raw[head_end + 4..];
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("transfer-encoding:")
            && l.to_ascii_lowercase().contains("chunked")
    });
    if !chunked {
        return Ok((status, String::from_utf8_lossy(rest).into_owned()));
    }
    let mut out = Vec::new();
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| bad("truncated chunk"))?;
        let size_text = String::from_utf8_lossy(&rest[..line_end]).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| bad("bad chunk size"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            break;
        }
        if rest.len() < size {
            return Err(bad("truncated chunk"));
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[(size + 2).min(rest.len())..];
    }
    Ok((status, String::from_utf8_lossy(&out).into_owned()))
}
