//! A throwaway Postgres for tests and benches: Debian's `postgresql` server binaries
//! (`apt-get install -y postgresql`), a new cluster in a temporary directory on a free
//! port, trust authentication on 127.0.0.1 only.
//!
//! Postgres refuses to run as root, so as root `initdb` and `pg_ctl` run as the
//! `postgres` user (`runuser`), in a directory that user owns. A watchdog shell stops
//! the cluster when the process that started it exits, however it exits, so a killed
//! test run leaves no server behind; [`TestPostgres`]'s `Drop` stops it at once.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A running throwaway cluster.
pub struct TestPostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    next_db: std::sync::atomic::AtomicU32,
}

fn bin_dir() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("LEADSTREAM_TEST_PG_BIN") {
        return Ok(dir.into());
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| format!("/usr/lib/postgresql: {e}"))?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, b)| b)
        .ok_or_else(|| "no /usr/lib/postgresql/*/bin/initdb".to_owned())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// `program args…`, as the `postgres` user when this process is root.
fn as_server_user(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(mut c: Command, what: &str) -> Result<(), String> {
    let out = c
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what}: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// `pg_ctl start` of the cluster in `data` on `port`: only loopback, the socket in its
/// own directory, durability as in production (fsync stays on).
fn server_start(bin: &Path, data: &Path, port: u16) -> Result<(), String> {
    let log = data.join("server.log");
    let mut pg_ctl = as_server_user(&bin.join("pg_ctl"));
    pg_ctl
        .args(["-w", "-t", "60", "-D"])
        .arg(data)
        .arg("-l")
        .arg(&log)
        .arg("-o")
        .arg(format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=300 -c shared_buffers=128MB",
            data.display()
        ))
        .arg("start");
    run(pg_ctl, "pg_ctl start").map_err(|e| {
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        format!("{e}\nserver log:\n{log}")
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

impl TestPostgres {
    /// Starts a new cluster.
    ///
    /// # Panics
    /// When Postgres is not installed or does not start, with what to do.
    pub fn start() -> Self {
        Self::try_start().unwrap_or_else(|e| {
            panic!("starting a throwaway Postgres for the tests failed: {e}\nInstall Debian's server: apt-get install -y postgresql (or set LEADSTREAM_TEST_PG_BIN to a directory with initdb and pg_ctl)")
        })
    }

    fn try_start() -> Result<Self, String> {
        let bin = bin_dir()?;
        let dir = tempfile::Builder::new()
            .prefix("leadstream-pg-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let data = dir.path().join("data");
        std::fs::create_dir(&data).map_err(|e| e.to_string())?;
        if is_root() {
            // The server user must reach and own its directory.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
                .map_err(|e| e.to_string())?;
            let mut chown = Command::new("chown");
            chown.args(["-R", "postgres:postgres"]).arg(&data);
            run(chown, "chown postgres data dir")?;
        }
        let mut initdb = as_server_user(&bin.join("initdb"));
        initdb
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&data);
        run(initdb, "initdb")?;
        let port = free_port();
        server_start(&bin, &data, port)?;
        // The watchdog: stops the cluster once this process is gone.
        let pg_ctl_path = bin.join("pg_ctl");
        let stop = if is_root() {
            format!(
                "runuser -u postgres -- {} -D {} -m immediate stop",
                pg_ctl_path.display(),
                data.display()
            )
        } else {
            format!(
                "{} -D {} -m immediate stop",
                pg_ctl_path.display(),
                data.display()
            )
        };
        let script = format!(
            "while kill -0 {} 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1",
            std::process::id()
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("watchdog: {e}"))?;
        Ok(Self {
            dir,
            bin,
            port,
            next_db: std::sync::atomic::AtomicU32::new(0),
        })
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `db` as the `postgres` superuser.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{db}?sslmode=disable",
            self.port
        )
    }

    /// Creates a new empty database and answers its URL.
    ///
    /// # Panics
    /// When Postgres refuses.
    pub fn new_database(&self) -> String {
        let n = self
            .next_db
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("t{}_{n}", std::process::id());
        let mut psql = Command::new(self.bin.join("psql"));
        psql.args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
        ])
        .arg("-p")
        .arg(self.port.to_string())
        .args(["-d", "postgres", "-c"])
        .arg(format!("CREATE DATABASE {name}"));
        run(psql, "CREATE DATABASE").unwrap_or_else(|e| panic!("{e}"));
        self.url(&name)
    }
}

impl TestPostgres {
    /// Stops the server at once (`-m immediate`: as a crash would); its data stays.
    pub fn stop(&self) {
        let mut stop = as_server_user(&self.bin.join("pg_ctl"));
        stop.arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let _ = stop.status();
    }

    /// Starts it again after [`stop`](Self::stop), on the same port and data.
    ///
    /// # Panics
    /// When it does not start.
    pub fn restart(&self) {
        server_start(&self.bin, &self.dir.path().join("data"), self.port)
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One cluster for the whole test binary, started on first use.
pub fn shared_cluster() -> &'static TestPostgres {
    static CLUSTER: std::sync::OnceLock<TestPostgres> = std::sync::OnceLock::new();
    CLUSTER.get_or_init(TestPostgres::start)
}

/// A new database of [`shared_cluster`] (migrated): tests stay independent without an
/// `initdb` each.
pub async fn shared_pg() -> crate::db::Pg {
    let url = tokio::task::spawn_blocking(|| shared_cluster().new_database())
        .await
        .expect("starting the test cluster");
    crate::db::Pg::open(&database_config(url))
        .await
        .expect("opening the test database")
}

/// The default `[database]` settings with `url`.
pub fn database_config(url: String) -> crate::config::DatabaseConfig {
    let mut cfg = crate::config::Config::load(None, |_| None)
        .expect("the default config loads")
        .database;
    cfg.url = url;
    cfg
}

/// A connection to a new, migrated database of [`shared_cluster`], for a test that
/// runs statements through [`Sql`](super::sql::Sql) without an async runtime. Call
/// it outside one (it starts its own to migrate).
pub fn pg_session() -> super::sql::PgSession {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime to migrate the test database");
    let pg = rt.block_on(shared_pg());
    let client = pg
        .connect_blocking()
        .expect("connecting to the test database");
    drop(pg);
    drop(rt);
    super::sql::PgSession::new(client)
}

/// A new embedded `webhooks.db`-shaped database in memory, migrated, with `rarray`.
pub fn sqlite_webhooks() -> rusqlite::Connection {
    let conn = rusqlite::Connection::open_in_memory().expect("an in-memory database");
    super::migrate::apply_sqlite(&conn, "test", super::migrations::SQLITE_WEBHOOKS)
        .expect("migrating it");
    rusqlite::vtab::array::load_module(&conn).expect("rarray");
    conn
}

/// Runs `test` on a fresh embedded store and on a fresh shared database: one suite,
/// two backends. The backend's name is passed along for messages.
pub fn on_both_backends(test: impl Fn(super::sql::Sql<'_>, &str)) {
    let lite = sqlite_webhooks();
    test(super::sql::Sql::Sqlite(&lite), "sqlite");
    let pg = pg_session();
    test(super::sql::Sql::Postgres(&pg), "postgres");
}
