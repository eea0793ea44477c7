//! The webhook attempt log in ClickHouse (`webhook_attempts`), when ClickHouse is
//! configured: every attempt of every process in one table, for the questions one
//! process's `webhooks.db` cannot answer (what did endpoint 17 answer across the
//! fleet yesterday?).
//!
//! The engine hands each attempt over after its outcome is durable in `webhooks.db`;
//! a background task inserts them in batches (up to [`BATCH_ROWS`] or every
//! [`FLUSH_EVERY`]) and retries a failed insert with backoff until ClickHouse takes
//! it, holding at most [`BUFFER_ROWS`] rows: past that, recording an attempt waits
//! (deliveries slow down rather than the log losing rows). The table is a
//! `ReplacingMergeTree` keyed by (org, delivery, attempt), so an insert retried after
//! a lost answer counts once (`FINAL`).

use super::{classify, exec, split_credentials};
use crate::config::ClickHouseConfig;
use crate::store::StoreError;
use clickhouse::{Client, Row};
use leadstream_pipeline::retry::Backoff;
use serde::Serialize;
use std::time::Duration;
use tokio::sync::mpsc;

/// The table.
pub const TABLE: &str = "webhook_attempts";
/// Rows per insert at most.
pub const BATCH_ROWS: usize = 10_000;
/// How long a row waits for others before its batch is inserted.
pub const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// Rows waiting for ClickHouse at most.
pub const BUFFER_ROWS: usize = 200_000;

/// `CREATE TABLE` of the attempt log (SQL that ClickHouse 18.16 and current accept).
pub fn create_table(database: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS `{database}`.{TABLE} (\
         organization_id Int64, delivery_id String, event_id String, endpoint_id Int64, \
         url String, event_type String, attempt UInt32, state String, at_ms Int64, \
         response_status Int32, response_body String, duration_ms Int64, error String, \
         host String) \
         ENGINE = ReplacingMergeTree() ORDER BY (organization_id, delivery_id, attempt)"
    )
}

/// One attempt as logged. `response_status` is -1 when no answer came.
#[derive(Debug, Clone, Row, Serialize)]
pub struct AttemptLogRow {
    pub organization_id: i64,
    pub delivery_id: String,
    pub event_id: String,
    pub endpoint_id: i64,
    pub url: String,
    pub event_type: String,
    pub attempt: u32,
    /// `succeeded` or `failed`.
    pub state: &'static str,
    pub at_ms: i64,
    pub response_status: i32,
    pub response_body: String,
    pub duration_ms: i64,
    pub error: String,
    /// The process that made the attempt (host name).
    pub host: String,
}

/// Hands attempts to the background inserter.
#[derive(Clone)]
pub struct AttemptLog {
    tx: mpsc::Sender<Entry>,
}

/// What the inserter is handed: a row, or a request to insert everything before it.
// Nearly every entry is a row: boxing it would only add an allocation per attempt.
#[allow(clippy::large_enum_variant)]
enum Entry {
    Row(AttemptLogRow),
    Flush(tokio::sync::oneshot::Sender<()>),
}

impl AttemptLog {
    /// Connects, creates the table if missing and starts the inserter on the current
    /// runtime.
    ///
    /// # Errors
    /// [`StoreError`] when ClickHouse cannot be reached or refuses the table.
    pub async fn start(cfg: &ClickHouseConfig, retry: Backoff) -> Result<Self, StoreError> {
        let (url, user, password) = split_credentials(&cfg.url, &cfg.user, &cfg.password);
        let server = Client::default()
            .with_url(url)
            .with_user(user)
            .with_password(password)
            .with_validation(false);
        exec(
            &server,
            &format!("CREATE DATABASE IF NOT EXISTS `{}`", cfg.database),
            "create database",
        )
        .await?;
        exec(&server, &create_table(&cfg.database), "create attempt log").await?;
        let client = server.with_database(&cfg.database);
        let (tx, rx) = mpsc::channel(BUFFER_ROWS);
        crate::tasks::spawn(insert_loop(client, rx, retry));
        Ok(Self { tx })
    }

    /// Queues `row`; waits only while [`BUFFER_ROWS`] rows are already waiting.
    pub async fn record(&self, row: AttemptLogRow) {
        if self.tx.send(Entry::Row(row)).await.is_err() {
            tracing::error!(
                "the ClickHouse attempt log stopped; an attempt is only in webhooks.db"
            );
        }
    }

    /// Answers once every row recorded before the call is in ClickHouse (at shutdown:
    /// the buffer holds up to [`BUFFER_ROWS`] rows that nothing else would write).
    pub async fn flush(&self) {
        let (done, flushed) = tokio::sync::oneshot::channel();
        if self.tx.send(Entry::Flush(done)).await.is_ok() {
            let _ = flushed.await;
        }
    }
}

async fn insert_loop(client: Client, mut rx: mpsc::Receiver<Entry>, retry: Backoff) {
    let mut batch: Vec<AttemptLogRow> = Vec::new();
    loop {
        // A flush asked for: answered once the rows before it are inserted.
        let mut flush = None;
        if batch.is_empty() {
            match rx.recv().await {
                Some(Entry::Row(r)) => batch.push(r),
                Some(Entry::Flush(done)) => {
                    let _ = done.send(());
                    // The flush of a stopping process is its last (the dispatcher is
                    // drained: no attempt ends after it).
                    if crate::tasks::is_stopping() {
                        return;
                    }
                    continue;
                }
                None => return,
            }
        }
        let deadline = tokio::time::Instant::now() + FLUSH_EVERY;
        while batch.len() < BATCH_ROWS {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(Entry::Row(r))) => batch.push(r),
                Ok(Some(Entry::Flush(done))) => {
                    flush = Some(done);
                    break;
                }
                Ok(None) | Err(_) => break,
            }
        }
        let mut schedule = retry.schedule(batch.len() as u64);
        loop {
            match insert(&client, &batch).await {
                Ok(()) => break,
                Err(e) => {
                    let wait = schedule.next_delay();
                    tracing::warn!(rows = batch.len(), error = %e, retry_in = ?wait, "inserting webhook attempts into ClickHouse; retrying (they are in webhooks.db meanwhile)");
                    tokio::time::sleep(wait).await;
                }
            }
        }
        batch.clear();
        if let Some(done) = flush {
            let _ = done.send(());
            if crate::tasks::is_stopping() {
                return;
            }
        }
    }
}

async fn insert(client: &Client, rows: &[AttemptLogRow]) -> Result<(), StoreError> {
    let fail = |e| classify("insert webhook attempts", e);
    let mut insert = client.insert::<AttemptLogRow>(TABLE).await.map_err(fail)?;
    for r in rows {
        insert.write(r).await.map_err(fail)?;
    }
    insert.end().await.map_err(fail)
}

/// This machine's host name, for [`AttemptLogRow::host`].
pub fn host_name() -> &'static str {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_default()
    })
}
