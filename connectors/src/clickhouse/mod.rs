//! ClickHouse as the event store: `lead_events` in a `ReplacingMergeTree` (see
//! [`schema`]), written and read over HTTP in RowBinary with the `clickhouse` crate.
//!
//! [`ClickHouseStore`] implements the synchronous [`EventStore`] that the single
//! writer thread ([`crate::ingest`]) owns. It carries its own small tokio runtime (one
//! worker) and blocks on the async client, so the writer stays a plain thread and the
//! HTTP runtime never waits on ClickHouse. Being blocking, its methods must not be
//! called from inside an async runtime.
//!
//! # Exactly once, with a store that can fail half-way
//! - The in-memory dedup index in front decides what is new; ClickHouse only ever
//!   receives rows the index has not seen.
//! - A failed [`append`](EventStore::append) may still have stored some rows: an
//!   insert that landed but whose answer was lost, or the first chunks of a group
//!   split at `insert_rows`. The writer then answers 503 and forgets the keys, the
//!   client retries, and the rows are inserted again.
//! - Such repeats are harmless: the table's sorting key is the unique key, so
//!   `ReplacingMergeTree` collapses them when parts merge, and every read that must be
//!   exact ([`scan`](EventStore::scan), [`ClickHouseStore::count_exact`]) uses `FINAL`,
//!   which collapses them at read time until then.
//! - On servers that support it (`insert_deduplication_token`, ClickHouse 22.2+), each
//!   insert also carries a token made from its rows' fingerprints and the table keeps a
//!   window of recent tokens, so a retried identical insert is not even written twice.
//!   ClickHouse 18.16 rejects unknown settings, so the token is only sent where the
//!   server lists it in `system.settings`.
//!
//! # Failures
//! Every error is classified once, by what a caller should do:
//! - **[`StoreError::Unavailable`]**, at once and without internal retries: connection
//!   errors, timeouts, 5xx answers without an exception (a proxy), 408/429, and the
//!   server's transient exceptions ([`TRANSIENT_CODES`]: too many parts, memory limit,
//!   too many queries, ...). The HTTP path answers 503 with `Retry-After` and its
//!   clients retry; the Kafka consumer backs off.
//! - **[`StoreError::Rejected`]**: exceptions about the values of the rows
//!   ([`REJECTED_CODES`]: cannot parse, type mismatch, out of range, `throwIf`, a
//!   violated constraint, ...). The same rows will never be accepted; the Kafka
//!   consumer splits the batch to find and dead-letter them.
//! - **[`StoreError::Failed`]**: everything else: bad credentials, unknown table or
//!   column, a syntax error, a readonly user. These are faults of the store or its
//!   schema, not of the rows: every row would fail alike, so nothing is dead-lettered;
//!   callers retry loudly until an operator fixes the store.
//! - **[`StoreError::Open`]** at connect for a database or table leadstream cannot use
//!   ([`schema::SchemaError`]).

pub mod attempts;
pub mod schema;
pub mod warm;

pub use warm::ClickHouseWarmer;

use crate::config::ClickHouseConfig;
use crate::store::{EventStore, StoreError, StoredEvent, WarmRow};
use clickhouse::{Client, Compression, Row};
use leadstream_pipeline::retry::Backoff;
use leadstream_pipeline::{Fingerprint, Phone};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::future::Future;
use std::time::Duration;

/// Longest wait for one insert's data to be sent, and for its acknowledgement.
const INSERT_SEND_TIMEOUT: Duration = Duration::from_secs(30);
const INSERT_END_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for a DDL statement or a small query.
const QUERY_TIMEOUT: Duration = Duration::from_secs(60);

/// ClickHouse exception codes a retry can fix: the server is overloaded, shutting
/// down, or the network failed between it and its peers.
pub const TRANSIENT_CODES: &[u32] = &[
    3,   // UNEXPECTED_END_OF_FILE (the request was cut)
    32,  // ATTEMPT_TO_READ_AFTER_EOF (likewise)
    159, // TIMEOUT_EXCEEDED
    202, // TOO_MANY_SIMULTANEOUS_QUERIES
    203, // NO_FREE_CONNECTION
    209, // SOCKET_TIMEOUT
    210, // NETWORK_ERROR
    236, // ABORTED
    241, // MEMORY_LIMIT_EXCEEDED
    242, // TABLE_IS_READ_ONLY
    252, // TOO_MANY_PARTS
    319, // UNKNOWN_STATUS_OF_INSERT
    394, // QUERY_WAS_CANCELLED
    225, // NO_ZOOKEEPER
    279, // ALL_CONNECTION_TRIES_FAILED
    285, // TOO_FEW_LIVE_REPLICAS
    999, // KEEPER_EXCEPTION
];

/// ClickHouse exception codes that refuse the values of the rows sent: the same rows
/// will never be accepted, other rows may be.
pub const REJECTED_CODES: &[u32] = &[
    6,   // CANNOT_PARSE_TEXT
    26,  // CANNOT_PARSE_QUOTED_STRING
    27,  // CANNOT_PARSE_INPUT_ASSERTION_FAILED
    38,  // CANNOT_PARSE_DATE
    41,  // CANNOT_PARSE_DATETIME
    53,  // TYPE_MISMATCH
    69,  // ARGUMENT_OUT_OF_BOUND
    70,  // CANNOT_CONVERT_TYPE
    72,  // CANNOT_PARSE_NUMBER
    117, // INCORRECT_DATA
    131, // TOO_LARGE_STRING_SIZE
    321, // VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
    349, // CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN
    395, // FUNCTION_THROW_IF_VALUE_IS_NON_ZERO
    469, // VIOLATED_CONSTRAINT
];

/// One row as inserted: the columns of [`schema::COLUMNS`], in order.
#[derive(Row, Serialize)]
struct InsertRow<'a> {
    organization_id: i64,
    event_type: &'a str,
    phone_e164: &'a str,
    occurred_at_us: i64,
    metadata: &'a str,
    ingested_at: i64,
    fp_hi: i64,
    fp_lo: i64,
    lead_hash: u64,
}

/// What warm-up reads back: only the key columns and the fingerprint.
#[derive(Row, Deserialize)]
struct KeyRow<'a> {
    organization_id: i64,
    event_type: &'a str,
    phone_e164: &'a str,
    occurred_at_us: i64,
    fp_hi: i64,
    fp_lo: i64,
}

/// `lead_events` in ClickHouse. Not `Sync`: one writer owns it.
pub struct ClickHouseStore {
    rt: OwnRuntime,
    /// Bound to the database.
    client: Client,
    /// The URL without credentials, for messages.
    endpoint: String,
    database: String,
    insert_rows: usize,
    dedup_tokens: bool,
    server_version: String,
    /// Reused for each row's `+digits`.
    phone: String,
}

/// The store's own runtime (its calls block a writer thread). A runtime dropped
/// inside an async context panics, and the last handle of a store can go away in a
/// task cancelled at exit: this one is shut down in the background instead.
struct OwnRuntime(Option<tokio::runtime::Runtime>);

impl std::ops::Deref for OwnRuntime {
    type Target = tokio::runtime::Runtime;

    fn deref(&self) -> &tokio::runtime::Runtime {
        self.0
            .as_ref()
            .expect("the runtime lives until the store is dropped")
    }
}

impl Drop for OwnRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl std::fmt::Debug for ClickHouseStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseStore")
            .field("endpoint", &self.endpoint)
            .field("database", &self.database)
            .field("server_version", &self.server_version)
            .field("dedup_tokens", &self.dedup_tokens)
            .finish_non_exhaustive()
    }
}

impl ClickHouseStore {
    /// Connects to `cfg.url`, creates the database if missing, and creates or migrates
    /// `lead_events` (see [`schema`]). Safe to call any number of times, from several
    /// processes.
    ///
    /// Credentials come from `cfg.user`/`cfg.password`, or from the URL
    /// (`http://user:password@host:8123`) when it carries them.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the server cannot be reached (retry later);
    /// [`StoreError::Open`] for anything else: a bad database name, an existing table
    /// leadstream cannot use ([`schema::SchemaError`], e.g. one from the millisecond
    /// version), a statement the server refuses (e.g. bad credentials), or a client
    /// runtime that cannot start.
    pub fn connect(cfg: &ClickHouseConfig) -> Result<Self, StoreError> {
        let location = format!(
            "clickhouse {} database {:?}",
            display_url(&cfg.url),
            cfg.database
        );
        let open = |e: StoreError| {
            if e.is_unavailable() {
                e
            } else {
                StoreError::open(location.clone(), e)
            }
        };
        schema::check_database_name(&cfg.database)
            .map_err(|e| StoreError::open(location.clone(), e))?;
        // One worker besides the calling thread: it drives pooled connections between
        // calls, so a connection the server closed (restart, keep-alive timeout) is seen
        // closed before it is reused instead of failing the next insert.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("leadstream-clickhouse")
            .enable_all()
            .build()
            .map_err(|e| StoreError::open(location.clone(), e))?;
        let (endpoint, user, password) = split_credentials(&cfg.url, &cfg.user, &cfg.password);
        let server = {
            let _guard = rt.enter();
            Client::default()
                .with_url(&endpoint)
                .with_user(user)
                .with_password(password)
                // 18.16 knows neither RowBinaryWithNamesAndTypes nor the schema query.
                .with_validation(false)
                // Inserts go lz4-compressed (less to send to a remote server).
                .with_compression(Compression::Lz4)
        };
        let db = cfg.database.as_str();
        let setup = async {
            let version: String = query(
                server.query("SELECT version()").fetch_one(),
                "version query",
            )
            .await?;
            exec(
                &server,
                &format!("CREATE DATABASE IF NOT EXISTS `{db}`"),
                "create database",
            )
            .await?;
            let dedup_tokens =
                has_setting(&server, "system.settings", "insert_deduplication_token").await?
                    && has_setting(
                        &server,
                        "system.merge_tree_settings",
                        "non_replicated_deduplication_window",
                    )
                    .await?;
            exec(
                &server,
                &schema::create_table(db, dedup_tokens),
                "create table",
            )
            .await?;

            let (engine, sorting_key): (String, String) = query(
                server
                    .query("SELECT engine, sorting_key FROM system.tables WHERE database = ? AND name = ?")
                    .bind(db)
                    .bind(schema::TABLE)
                    .fetch_one(),
                "read table engine",
            )
            .await?;
            let columns: Vec<(String, String)> = query(
                server
                    .query("SELECT name, type FROM system.columns WHERE database = ? AND table = ?")
                    .bind(db)
                    .bind(schema::TABLE)
                    .fetch_all(),
                "read columns",
            )
            .await?;
            // The columns first: a millisecond-era table also fails the engine check, and
            // this says why and what to do.
            let schema_err = |e: schema::SchemaError| StoreError::open(location.clone(), e);
            let alters = schema::migrations(db, &columns).map_err(schema_err)?;
            schema::check_engine(db, &engine, &sorting_key).map_err(schema_err)?;
            for alter in alters {
                tracing::info!(statement = %alter, "migrating the ClickHouse schema");
                exec(&server, &alter, "migrate table").await?;
            }
            if dedup_tokens {
                // A table created before the server learned the setting lacks it; setting
                // it again is a metadata-only no-op otherwise.
                let alter = format!(
                    "ALTER TABLE `{db}`.{} MODIFY SETTING non_replicated_deduplication_window = {}",
                    schema::TABLE,
                    schema::DEDUP_WINDOW
                );
                exec(&server, &alter, "set the insert dedup window").await?;
            }
            Ok::<_, StoreError>((version, dedup_tokens))
        };
        let (server_version, dedup_tokens) = rt.block_on(setup).map_err(open)?;
        tracing::info!(
            endpoint = %endpoint,
            database = db,
            version = %server_version,
            insert_dedup_tokens = dedup_tokens,
            "ClickHouse event store ready"
        );
        Ok(Self {
            client: server.with_database(db),
            rt: OwnRuntime(Some(rt)),
            endpoint,
            database: db.to_owned(),
            insert_rows: cfg.insert_rows.max(1),
            dedup_tokens,
            server_version,
            phone: String::with_capacity(16),
        })
    }

    /// Like [`connect`](Self::connect), retrying while ClickHouse is unavailable with
    /// `retry` (`[store.retry]`); `on_retry` is called with each failure and the wait
    /// before the next try (log it there).
    ///
    /// # Errors
    /// The first error that is not [`StoreError::Unavailable`].
    pub fn connect_with_backoff(
        cfg: &ClickHouseConfig,
        retry: Backoff,
        mut on_retry: impl FnMut(&StoreError, Duration),
    ) -> Result<Self, StoreError> {
        let mut backoff = retry.schedule(rand::random());
        loop {
            match Self::connect(cfg) {
                Err(e) if e.is_unavailable() => {
                    let wait = backoff.next_delay();
                    on_retry(&e, wait);
                    std::thread::sleep(wait);
                }
                other => return other,
            }
        }
    }

    /// The server's `version()`, e.g. `18.16.1` or `25.3.2.39`.
    pub fn server_version(&self) -> &str {
        &self.server_version
    }

    /// The database holding `lead_events`.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// Whether inserts carry an `insert_deduplication_token` (servers 22.2+).
    pub fn uses_dedup_tokens(&self) -> bool {
        self.dedup_tokens
    }

    /// Stored unique keys, exactly: `count()` with `FINAL`, so repeats of a retried
    /// insert that have not been merged yet count once.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Failed`].
    pub fn count_exact(&mut self) -> Result<u64, StoreError> {
        let sql = format!("SELECT count() FROM {} FINAL", schema::TABLE);
        self.rt
            .block_on(query(self.client.query(&sql).fetch_one::<u64>(), "count"))
    }

    /// Physical rows, repeats of retried inserts included until they merge: for tests
    /// and diagnostics, never for answers.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Failed`].
    pub fn count_physical(&mut self) -> Result<u64, StoreError> {
        let sql = format!("SELECT count() FROM {}", schema::TABLE);
        self.rt
            .block_on(query(self.client.query(&sql).fetch_one::<u64>(), "count"))
    }

    /// Drops the whole database, `lead_events` and all: for benchmarks and tests that
    /// made their own. The store is unusable afterwards.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Failed`].
    pub fn drop_database(&mut self) -> Result<(), StoreError> {
        let sql = format!("DROP DATABASE IF EXISTS `{}`", self.database);
        self.rt.block_on(exec(&self.client, &sql, "drop database"))
    }

    /// Inserts one chunk in one `INSERT`; returns once ClickHouse acknowledged it.
    async fn insert_chunk(
        client: &Client,
        rows: &[StoredEvent<'_>],
        ingested_at_ms: i64,
        token: bool,
        phone: &mut String,
    ) -> Result<(), StoreError> {
        let fail = |e| classify("insert", e);
        let mut insert = client
            .insert::<InsertRow<'_>>(schema::TABLE)
            .await
            .map_err(fail)?
            .with_timeouts(Some(INSERT_SEND_TIMEOUT), Some(INSERT_END_TIMEOUT));
        if token {
            insert = insert.with_setting("insert_deduplication_token", dedup_token(rows));
        }
        for r in rows {
            phone.clear();
            let _ = write!(phone, "{}", r.phone);
            let (fp_hi, fp_lo) = r.probe.fingerprint.halves();
            let row = InsertRow {
                organization_id: r.org,
                event_type: r.event_type,
                phone_e164: phone,
                occurred_at_us: r.occurred_at_us,
                metadata: r.metadata.unwrap_or(""),
                ingested_at: ingested_at_ms,
                fp_hi,
                fp_lo,
                // `Probe::lead` is `lead_hash(org, phone)`.
                lead_hash: r.probe.lead,
            };
            insert.write(&row).await.map_err(fail)?;
        }
        insert.end().await.map_err(fail)
    }
}

impl EventStore for ClickHouseStore {
    /// One `INSERT` per `insert_rows` rows, in order; returns once every one was
    /// acknowledged. On error, earlier chunks may be stored: see the module docs for
    /// why a retry does not make them count twice.
    fn append(
        &mut self,
        rows: &[StoredEvent<'_>],
        ingested_at_ms: i64,
    ) -> Result<usize, StoreError> {
        let Self {
            rt,
            client,
            insert_rows,
            dedup_tokens,
            phone,
            ..
        } = self;
        rt.block_on(async {
            for chunk in rows.chunks(*insert_rows) {
                Self::insert_chunk(client, chunk, ingested_at_ms, *dedup_tokens, phone).await?;
            }
            Ok(rows.len())
        })
    }

    /// `SELECT` of the key columns `FINAL`, streamed in RowBinary: each stored key
    /// exactly once.
    fn scan(&mut self, f: &mut dyn FnMut(WarmRow)) -> Result<u64, StoreError> {
        let sql = format!("SELECT organization_id, event_type, phone_e164, occurred_at_us, fp_hi, fp_lo FROM {} FINAL", schema::TABLE);
        self.scan_keys(&sql, "scan", &mut |_| true, f)
    }
}

impl ClickHouseStore {
    /// Like [`scan`](EventStore::scan), but only the keys of the leads of the given
    /// raw Kafka partitions: those with `lead_hash(org, phone) % partition_count` in
    /// `partitions`, the formula of [`crate::kafka::partition_for`] (a
    /// `partition_count` below 1 counts as 1). What a process newly assigned those
    /// partitions loads into its indexes.
    ///
    /// The server filters on the stored `lead_hash` column (`lead_hash % N IN (...)`,
    /// unsigned `UInt64` modulo, as Rust's `u64 % n`). Rows written before that column
    /// existed hold its default 0, so rows with `lead_hash = 0` are read as well and
    /// every row is checked again here against the hash computed from its own
    /// `organization_id` and `phone_e164`: the answer is exact either way.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Failed`], as `scan`. Rows
    /// delivered before a failure are delivered again by a retry.
    pub fn scan_partitions(
        &mut self,
        partitions: &[i32],
        partition_count: i32,
        f: &mut dyn FnMut(WarmRow),
    ) -> Result<u64, StoreError> {
        let n = partition_count.max(1) as u64;
        let wanted: std::collections::BTreeSet<u64> = partitions
            .iter()
            .filter(|&&p| p >= 0 && (p as u64) < n)
            .map(|&p| p as u64)
            .collect();
        if wanted.is_empty() {
            return Ok(0);
        }
        let list = wanted
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        // `lead_hash` is UInt64 and `n` a positive literal: integer modulo, the same
        // value as Rust's `u64 % n` (ClickHouse 18.16 and current alike).
        let sql = format!(
            "SELECT organization_id, event_type, phone_e164, occurred_at_us, fp_hi, fp_lo FROM {} FINAL \
             WHERE lead_hash % {n} IN ({list}) OR lead_hash = 0",
            schema::TABLE
        );
        self.scan_keys(
            &sql,
            "scan partitions",
            &mut |r| wanted.contains(&(leadstream_pipeline::lead_hash(r.org, r.phone) % n)),
            f,
        )
    }

    /// Streams the key rows of `sql` (the columns of [`KeyRow`]) that `keep` accepts
    /// to `f`; returns how many it delivered.
    /// The phones of `org`'s leads with an event of `event_type` at an instant in
    /// `[lo_us, hi_us]`: the send filter's question for every lead at once, as one
    /// query the sorting key answers (organization, type, phone, instant). No `FINAL`:
    /// a row repeated before a merge names the same lead.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Failed`].
    pub fn leads_with_event(
        &mut self,
        org: leadstream_pipeline::OrgId,
        event_type: &str,
        lo_us: i64,
        hi_us: i64,
    ) -> Result<std::collections::HashSet<u64>, StoreError> {
        #[derive(Row, Deserialize)]
        struct PhoneRow<'a> {
            phone_e164: &'a str,
        }
        let sql = format!(
            "SELECT DISTINCT phone_e164 FROM {} WHERE organization_id = ? AND event_type = ? \
             AND occurred_at_us >= ? AND occurred_at_us <= ?",
            schema::TABLE
        );
        let client = &self.client;
        self.rt.block_on(async {
            let fail = |e| classify("eligibility", e);
            let mut cursor = client
                .query(&sql)
                .bind(org)
                .bind(event_type)
                .bind(lo_us)
                .bind(hi_us)
                .fetch::<PhoneRow<'_>>()
                .map_err(fail)?;
            let mut out = std::collections::HashSet::new();
            while let Some(row) = cursor.next().await.map_err(fail)? {
                if let Ok(p) = row.phone_e164.parse::<Phone>() {
                    out.insert(p.0);
                }
            }
            Ok(out)
        })
    }

    /// A page of one lead's events, newest first: `q.limit + 1` rows when more follow.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Failed`].
    pub fn lead_events(
        &mut self,
        q: &crate::store::reads::LeadEventsQuery,
    ) -> Result<Vec<crate::store::reads::LeadEventRow>, StoreError> {
        #[derive(Row, Deserialize)]
        struct EventRow {
            event_type: String,
            occurred_at_us: i64,
            metadata: String,
            ingested_at: i64,
        }
        let mut sql = format!(
            "SELECT event_type, occurred_at_us, metadata, ingested_at FROM {} FINAL \
             WHERE organization_id = ? AND phone_e164 = ?",
            schema::TABLE
        );
        if q.event_type.is_some() {
            sql.push_str(" AND event_type = ?");
        }
        if q.before.is_some() {
            sql.push_str(" AND (occurred_at_us < ? OR (occurred_at_us = ? AND event_type < ?))");
        }
        sql.push_str(" ORDER BY occurred_at_us DESC, event_type DESC LIMIT ?");
        let client = &self.client;
        self.rt.block_on(async {
            let mut query = client.query(&sql).bind(q.org).bind(q.phone.to_string());
            if let Some(t) = &q.event_type {
                query = query.bind(t.as_str());
            }
            if let Some(b) = &q.before {
                query = query
                    .bind(b.occurred_at_us)
                    .bind(b.occurred_at_us)
                    .bind(b.event_type.as_str());
            }
            let rows = query
                .bind(q.limit as u64 + 1)
                .fetch_all::<EventRow>()
                .await
                .map_err(|e| classify("reading a lead's events", e))?;
            Ok(rows
                .into_iter()
                .map(|r| crate::store::reads::LeadEventRow {
                    event_type: r.event_type,
                    occurred_at_us: r.occurred_at_us,
                    // Stored as "" when the event had none.
                    metadata: (!r.metadata.is_empty()).then_some(r.metadata),
                    ingested_at_ms: r.ingested_at,
                })
                .collect())
        })
    }

    /// `org`'s events stored per minute in `[since_ms, until_ms)`: (the minute's
    /// start, events), minutes without events left out. `FINAL`: a retried insert's
    /// rows, until ClickHouse merges them away, count once.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] or [`StoreError::Failed`].
    pub fn stored_per_minute(
        &mut self,
        org: leadstream_pipeline::OrgId,
        since_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<(i64, u64)>, StoreError> {
        #[derive(Row, Deserialize)]
        struct MinuteRow {
            minute: i64,
            events: u64,
        }
        let sql = format!(
            "SELECT intDiv(ingested_at, 60000) * 60000 AS minute, count() AS events FROM {} FINAL \
             WHERE organization_id = ? AND ingested_at >= ? AND ingested_at < ? GROUP BY minute",
            schema::TABLE
        );
        let client = &self.client;
        self.rt.block_on(async {
            let rows = client
                .query(&sql)
                .bind(org)
                .bind(since_ms)
                .bind(until_ms)
                .fetch_all::<MinuteRow>()
                .await
                .map_err(|e| classify("counting stored events", e))?;
            Ok(rows.into_iter().map(|r| (r.minute, r.events)).collect())
        })
    }

    fn scan_keys(
        &mut self,
        sql: &str,
        op: &'static str,
        keep: &mut dyn FnMut(&WarmRow) -> bool,
        f: &mut dyn FnMut(WarmRow),
    ) -> Result<u64, StoreError> {
        let client = &self.client;
        self.rt.block_on(async {
            let fail = |e| classify(op, e);
            let mut cursor = client.query(sql).fetch::<KeyRow<'_>>().map_err(fail)?;
            let (mut n, mut bad, mut example) = (0u64, 0u64, String::new());
            while let Some(row) = cursor.next().await.map_err(fail)? {
                let Ok(phone) = row.phone_e164.parse::<Phone>() else {
                    // The row is still stored and still deduplicated by ClickHouse; only
                    // the in-memory index misses it. Count it and say so once.
                    if bad == 0 {
                        example = row.phone_e164.to_owned();
                    }
                    bad += 1;
                    continue;
                };
                let row = WarmRow {
                    org: row.organization_id,
                    event_type: row.event_type.to_owned(),
                    phone,
                    occurred_at_us: row.occurred_at_us,
                    fingerprint: Fingerprint::from_halves(row.fp_hi, row.fp_lo),
                };
                if keep(&row) {
                    f(row);
                    n += 1;
                }
            }
            if bad > 0 {
                tracing::warn!(rows = bad, example = %example, "lead_events rows with a phone_e164 that is not +digits were skipped by warm-up");
            }
            Ok(n)
        })
    }
}

/// The insert dedup token of a chunk: a hash of its rows' fingerprints, in order, and
/// their number. The same rows give the same token whatever their `ingested_at`, so a
/// retry of an insert that did land is dropped by the server.
fn dedup_token(rows: &[StoredEvent<'_>]) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for r in rows {
        h.update(&r.probe.fingerprint.0.to_le_bytes());
    }
    format!("leadstream-{:032x}-{}", h.digest128(), rows.len())
}

/// Runs a statement that returns nothing.
async fn exec(client: &Client, sql: &str, op: &'static str) -> Result<(), StoreError> {
    query(client.query(sql).execute(), op).await
}

/// Whether `table` (`system.settings` or `system.merge_tree_settings`) lists `name`.
async fn has_setting(client: &Client, table: &'static str, name: &str) -> Result<bool, StoreError> {
    let sql = format!("SELECT count() FROM {table} WHERE name = ?");
    let n: u64 = query(
        client.query(&sql).bind(name).fetch_one(),
        "read server settings",
    )
    .await?;
    Ok(n > 0)
}

/// Awaits a client call with [`QUERY_TIMEOUT`], classifying its error.
async fn query<T>(
    fut: impl Future<Output = clickhouse::error::Result<T>>,
    op: &'static str,
) -> Result<T, StoreError> {
    match tokio::time::timeout(QUERY_TIMEOUT, fut).await {
        Ok(r) => r.map_err(|e| classify(op, e)),
        Err(_) => Err(StoreError::unavailable(
            op,
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("clickhouse gave no answer within {QUERY_TIMEOUT:?}"),
            ),
        )),
    }
}

/// What a failure of the clickhouse crate means for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Transient,
    Rejected,
    Failed,
}

/// Classifies a clickhouse crate error into the [`StoreError`] that says what to do
/// (see the module docs); the crate's error is kept as the source.
fn classify(op: &'static str, e: clickhouse::error::Error) -> StoreError {
    use clickhouse::error::Error as E;
    let class = match &e {
        E::Network(_) | E::TimedOut | E::Compression(_) | E::Decompression(_) => Class::Transient,
        E::BadResponse(msg) => classify_response(msg),
        _ => Class::Failed,
    };
    match class {
        Class::Transient => StoreError::unavailable(op, e),
        Class::Rejected => StoreError::rejected(op, e),
        Class::Failed => StoreError::failed(op, e),
    }
}

/// A ClickHouse exception (`Code: N, ...` in the body, or the bare code of the
/// `X-ClickHouse-Exception-Code` header when the body was empty) by its code; a bare
/// HTTP status (a proxy's answer) by the status: 5xx, 408 and 429 are transient,
/// other 4xx failures; anything else (an HTML page from a proxy) transient.
fn classify_response(msg: &str) -> Class {
    let code = match msg.split_once("Code: ") {
        Some((_, rest)) => rest
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|d| d.parse::<u32>().ok()),
        None if !msg.is_empty() && msg.bytes().all(|b| b.is_ascii_digit()) => msg.parse().ok(),
        None => None,
    };
    if let Some(code) = code {
        return if TRANSIENT_CODES.contains(&code) {
            Class::Transient
        } else if REJECTED_CODES.contains(&code) {
            Class::Rejected
        } else {
            Class::Failed
        };
    }
    let status = msg
        .get(..4)
        .filter(|s| s.as_bytes()[..3].iter().all(u8::is_ascii_digit) && s.ends_with(' '))
        .and_then(|s| s[..3].parse::<u16>().ok());
    match status {
        Some(408 | 429) | None => Class::Transient,
        Some(s) if s >= 500 => Class::Transient,
        Some(_) => Class::Failed,
    }
}

/// `url` without the credentials it may carry, for messages and logs.
pub fn display_url(url: &str) -> String {
    split_credentials(url, "", "").0
}

/// Splits `http://user:password@host:8123` into the URL without credentials and the
/// credentials to use: the URL's when it has them, else `user`/`password`.
fn split_credentials(url: &str, user: &str, password: &str) -> (String, String, String) {
    if let Some((scheme, rest)) = url.split_once("://") {
        let authority_end = rest.find('/').unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            let (info, host) = (&rest[..at], &rest[at + 1..]);
            let (u, p) = info.split_once(':').unwrap_or((info, ""));
            return (format!("{scheme}://{host}"), u.to_owned(), p.to_owned());
        }
    }
    (url.to_owned(), user.to_owned(), password.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use leadstream_pipeline::Probe;

    #[test]
    fn exceptions_are_classified_by_what_a_retry_can_do() {
        for (msg, class) in [
            ("Code: 252, e.displayText() = DB::Exception: Too many parts (300)", Class::Transient),
            ("Code: 241. DB::Exception: Memory limit (total) exceeded", Class::Transient),
            ("Code: 159. DB::Exception: Timeout exceeded", Class::Transient),
            ("502 Bad Gateway", Class::Transient),
            ("503 Service Unavailable", Class::Transient),
            ("429 Too Many Requests", Class::Transient),
            ("<html>upstream unavailable</html>", Class::Transient),
            ("Code: 395, e.displayText() = DB::Exception: Value passed to 'throwIf' function is non zero", Class::Rejected),
            ("Code: 6. DB::Exception: Cannot parse string 'abc' as Int32", Class::Rejected),
            ("Code: 53. DB::Exception: Type mismatch", Class::Rejected),
            ("Code: 321. DB::Exception: Value is out of range", Class::Rejected),
            ("395", Class::Rejected),
            ("Code: 60, e.displayText() = DB::Exception: Table leadstream.lead_events doesn't exist", Class::Failed),
            ("Code: 16. DB::Exception: No such column x in table", Class::Failed),
            ("Code: 62. DB::Exception: Syntax error", Class::Failed),
            ("Code: 516. DB::Exception: default: Authentication failed", Class::Failed),
            ("403 Forbidden", Class::Failed),
        ] {
            assert_eq!(classify_response(msg), class, "{msg}");
        }
        let e = classify(
            "insert",
            clickhouse::error::Error::BadResponse(
                "Code: 395, e.displayText() = DB::Exception: poison".into(),
            ),
        );
        assert!(e.is_rejected() && e.to_string().contains("poison"), "{e}");
        assert!(std::error::Error::source(&e).is_some());
        assert!(classify("insert", clickhouse::error::Error::TimedOut).is_unavailable());
    }

    #[test]
    fn credentials_in_the_url_win_and_leave_it() {
        assert_eq!(
            split_credentials("http://bob:s3cret@ch:8123", "default", ""),
            (
                "http://ch:8123".to_owned(),
                "bob".to_owned(),
                "s3cret".to_owned()
            )
        );
        assert_eq!(
            split_credentials("http://ch:8123/", "u", "p"),
            ("http://ch:8123/".to_owned(), "u".to_owned(), "p".to_owned())
        );
    }

    #[test]
    fn phones_round_trip_and_junk_is_refused() {
        assert_eq!("+15551234567".parse::<Phone>(), Ok(Phone(15_551_234_567)));
        for bad in [
            "15551234567",
            "+",
            "+1555x",
            "",
            "+12345678901234567890123",
            "+0",
        ] {
            assert!(bad.parse::<Phone>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_dedup_token_depends_on_the_keys_only() {
        let ev = |fp: u128, meta| StoredEvent {
            org: 1,
            event_type: "t",
            phone: Phone(1),
            occurred_at_us: 0,
            metadata: meta,
            probe: Probe {
                fingerprint: Fingerprint(fp),
                lead: 0,
            },
        };
        let a = [ev(1, None), ev(2, None)];
        let same_keys = [ev(1, Some("{}")), ev(2, None)];
        let other_order = [ev(2, None), ev(1, None)];
        assert_eq!(dedup_token(&a), dedup_token(&same_keys));
        assert_ne!(dedup_token(&a), dedup_token(&other_order));
        assert_ne!(dedup_token(&a), dedup_token(&a[..1]));
    }
}
