//! The shared database: a bounded pool of Postgres connections, TLS as the URL asks.
//!
//! `database.url` is a libpq-style URL, `postgres://user:password@host:5432/db`, with
//! the usual parameters (`sslmode`, `connect_timeout`, `application_name`, several
//! `host`s). TLS: `sslmode=disable` (none), `prefer` (the default: TLS when the server
//! offers it) or `require` (refuse a server without TLS). Server certificates are
//! verified against the Mozilla roots bundled in the binary, plus the PEM file
//! `database.tls_ca_file` when set (a private CA).

use crate::config::DatabaseConfig;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use std::sync::Arc;
use std::time::Duration;

/// Why the shared database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum PgOpenError {
    #[error("database.url {url}: {message}")]
    Url { url: String, message: String },
    #[error("database.tls_ca_file {path}: {message}")]
    Ca { path: String, message: String },
    #[error("connecting to {url} (check that Postgres runs there, that the user, password and database exist, and that sslmode suits the server)")]
    Connect {
        url: String,
        #[source]
        source: deadpool_postgres::PoolError,
    },
    #[error(transparent)]
    Migrate(#[from] super::migrate::MigrateError),
}

/// The pool of connections to the shared database.
#[derive(Clone)]
pub struct Pg {
    pool: Pool,
    /// The URL with its password masked, for messages.
    url: Arc<str>,
    /// For connections outside the pool (a listener holds one for good).
    config: Arc<tokio_postgres::Config>,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
}

impl std::fmt::Debug for Pg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pg").field("url", &self.url).finish()
    }
}

fn tls(ca_file: &str) -> Result<tokio_postgres_rustls::MakeRustlsConnect, PgOpenError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if !ca_file.is_empty() {
        let bad = |message: String| PgOpenError::Ca {
            path: ca_file.to_owned(),
            message,
        };
        let pem = std::fs::read(ca_file).map_err(|e| bad(e.to_string()))?;
        use rustls::pki_types::pem::PemObject;
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| bad(format!("not a PEM certificate: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| bad(format!("not a CA certificate: {e}")))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

impl Pg {
    /// Connects (one connection, to fail early with a clear message) and migrates the
    /// schema to this binary's version under the migration lock.
    ///
    /// # Errors
    /// [`PgOpenError`] naming the URL (password masked).
    pub async fn open(cfg: &DatabaseConfig) -> Result<Self, PgOpenError> {
        let pg = Self::connect(cfg).await?;
        let mut client = pg.pool.get().await.map_err(|source| PgOpenError::Connect {
            url: pg.url.to_string(),
            source,
        })?;
        let applied =
            super::migrate::apply_postgres(&mut client, &pg.url, super::migrations::POSTGRES)
                .await?;
        tracing::debug!(database = %pg.url, %applied, "shared database ready");
        drop(client);
        Ok(pg)
    }

    /// A pool of `cfg`'s database, checked with one connection, without migrating it.
    ///
    /// # Errors
    /// [`PgOpenError`] naming the URL (password masked).
    pub async fn connect(cfg: &DatabaseConfig) -> Result<Self, PgOpenError> {
        let url: Arc<str> = crate::config::mask_url_password(&cfg.url).into();
        let mut pg_config: tokio_postgres::Config =
            cfg.url
                .parse()
                .map_err(|e: tokio_postgres::Error| PgOpenError::Url {
                    url: url.to_string(),
                    message: e.to_string(),
                })?;
        if pg_config.get_connect_timeout().is_none() {
            pg_config.connect_timeout(Duration::from_secs(10));
        }
        // Notice a connection that died silently within about a minute, not TCP's
        // default two hours (the change listeners hold theirs for good).
        if pg_config.get_keepalives_idle() == Duration::from_secs(2 * 60 * 60) {
            pg_config.keepalives_idle(Duration::from_secs(30));
        }
        if pg_config.get_application_name().is_none() {
            pg_config.application_name("leadstream");
        }
        let tls = tls(&cfg.tls_ca_file)?;
        let manager = Manager::from_config(
            pg_config.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(cfg.pool_size)
            .wait_timeout(Some(cfg.acquire_timeout))
            .create_timeout(Some(cfg.acquire_timeout))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| PgOpenError::Url {
                url: url.to_string(),
                message: e.to_string(),
            })?;
        let pg = Self {
            pool,
            url,
            config: Arc::new(pg_config),
            tls,
        };
        drop(pg.pool.get().await.map_err(|source| PgOpenError::Connect {
            url: pg.url.to_string(),
            source,
        })?);
        Ok(pg)
    }

    /// A connection from the pool (waits up to `database.acquire_timeout`).
    ///
    /// # Errors
    /// [`super::RepoError::Pool`] when none came in time or a new one failed.
    pub async fn conn(&self) -> Result<deadpool_postgres::Object, super::RepoError> {
        Ok(self.pool.get().await?)
    }

    /// A connection of its own, outside the pool, and the task that drives it: for a
    /// listener, which holds its connection for as long as it listens.
    ///
    /// # Errors
    /// [`tokio_postgres::Error`] connecting.
    pub async fn dedicated(
        &self,
    ) -> Result<
        (
            tokio_postgres::Client,
            tokio_postgres::Connection<
                tokio_postgres::Socket,
                <tokio_postgres_rustls::MakeRustlsConnect as tokio_postgres::tls::MakeTlsConnect<
                    tokio_postgres::Socket,
                >>::Stream,
            >,
        ),
        tokio_postgres::Error,
    > {
        self.config.connect(self.tls.clone()).await
    }

    /// A blocking connection of its own, for a thread that holds it (the delivery
    /// store's writers and readers). Not on an async worker: it runs its own runtime.
    ///
    /// # Errors
    /// [`postgres::Error`] connecting.
    pub fn connect_blocking(&self) -> Result<postgres::Client, postgres::Error> {
        postgres::Config::from((*self.config).clone()).connect(self.tls.clone())
    }

    /// Reports the pool's connections to `/metrics` every second, on the current
    /// runtime, for as long as the pool lives.
    pub fn report_metrics(&self) {
        let pool = self.pool.clone();
        let weak = pool.weak();
        drop(pool);
        crate::tasks::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = every.tick() => {}
                    () = crate::tasks::stopped() => return,
                }
                let Some(pool) = weak.upgrade() else { return };
                let st = pool.status();
                crate::metrics::database_pool(
                    st.size.saturating_sub(st.available),
                    st.available,
                    st.waiting,
                );
            }
        });
    }

    /// The URL, password masked.
    pub fn url(&self) -> &str {
        &self.url
    }
}
