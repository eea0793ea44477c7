//! Exact HTTP ingest on any of several processes: a lead-events batch is split by the
//! raw partition of each lead, and each part is stored by the process that owns that
//! partition in the consumer group: by this one through its writer, or handed to the
//! owner ([`wire`], `POST /internal/v1/lead-parts`), which stores it through its own.
//! The counts are summed and the call answered once every part is durable.
//!
//! Why that is exact: one process at a time owns a partition, its dedup index holds
//! every stored key of the partition's leads (warmed on assignment, see
//! [`ClickHouseWarmer`](crate::clickhouse::ClickHouseWarmer)), and its one writer
//! decides "new or duplicate" for them. A partition's gate ([`gates`]) opens once the
//! warm-up is done and closes when the partition is revoked; the revocation waits for
//! the parts in flight to be durable, so the next owner's warm-up reads them.
//!
//! Where each owner is: the shared database's `lead_partition_owners`
//! ([`directory`]), written by the owners. A row only says where to try: the process
//! it names answers 409 for a partition whose gate is closed, and the part is tried
//! again, for at most `http.forward_wait`, as the directory changes. A partition with
//! no owner when a call arrives (a rebalance, a warm-up) makes the call answer 503
//! with Retry-After before anything is stored.
//!
//! Enabled with Kafka (the group is what owns partitions), ClickHouse (the store all
//! owners share) and `database.url` (the directory). Without them HTTP ingest goes
//! straight to the process's writer, as one process does.

mod directory;
mod gates;
pub mod wire;

use crate::db::{Pg, RepoError};
use crate::kafka::PartitionWarmer;
use crate::store::StoreError;
use crate::writer::{EventWriter, Stored};
use directory::{Directory, Owner};
use gates::PartitionGates;
use leadstream_pipeline::{OrgId, Prepared, Row};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How often the directory is read again while the owners are stable.
const DIRECTORY_FRESH_FOR: Duration = Duration::from_secs(1);
/// How often a part whose owner moved looks for the new one.
const RETRY_EVERY: Duration = Duration::from_millis(200);
/// How often a process writes its owned partitions into the directory again (a write
/// lost to a race with another owner's is mended by the next).
const REASSERT_EVERY: Duration = Duration::from_secs(5);
/// Longest a revocation waits for the parts in flight of its partitions.
const REVOKE_WAIT: Duration = Duration::from_secs(60);
/// Longest a handed-over part may take, sending, storing and answering.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a batch was not stored whole.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// Parts of these partitions found no owner with an open gate (within
    /// `forward_wait` once handing over had begun). `stored` counts the parts that
    /// were stored; with `any_stored` false nothing was.
    #[error("raw partitions {partitions:?} are moving between processes or warming up")]
    Moving {
        partitions: Vec<i32>,
        stored: Stored,
        any_stored: bool,
    },
    /// This process's store failed a part; `partly` when other parts were stored.
    #[error("{error}")]
    Store {
        error: Arc<StoreError>,
        partly: bool,
    },
    /// An owner answered a part with an error of its own: `retry` when its store is
    /// unavailable (503), not when it refused the rows (500).
    #[error("the process at {address} answered {status}: {message}")]
    Owner {
        address: String,
        status: u16,
        message: String,
        retry: bool,
    },
    /// The directory of owners could not be read.
    #[error("reading the owners of the raw partitions: {0}")]
    Directory(#[from] RepoError),
}

/// Why a part handed to this process was not stored.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    #[error(transparent)]
    Wire(#[from] wire::WireError),
    /// The sender split by another partition count than this process consumes.
    #[error("the part was split over {theirs} raw partitions; this process's topic has {ours}")]
    PartitionCount { theirs: i32, ours: i32 },
    /// These partitions' gates are closed here: the sender should find their owner.
    #[error("this process does not own raw partitions {0:?} now")]
    NotOwned(Vec<i32>),
    #[error(transparent)]
    Store(Arc<StoreError>),
}

enum DirectoryOp {
    Claim(Vec<i32>),
    Release(Vec<i32>),
}

/// Where a batch's pending partitions go now.
struct Routes {
    /// Their gates are open here.
    local: Vec<i32>,
    /// Each owner the directory names, with its partitions.
    remote: Vec<(Owner, Vec<i32>)>,
    /// No owner yet (moving or warming).
    unowned: Vec<i32>,
}

/// The partitions of one batch that go one way, with their rows.
type Parts = Vec<(i32, Vec<Row>)>;

/// What one dispatched group of parts came to.
enum Outcome {
    Stored(Stored),
    /// Not stored; find the partitions' owners again.
    Retry(Parts),
    Failed(RouteError),
}

/// Splits lead-event batches by raw partition and stores each part at its owner; see
/// the module's documentation. Cheap to clone.
#[derive(Clone)]
pub struct LeadRouter {
    inner: Arc<Inner>,
}

struct Inner {
    me: Arc<str>,
    address: Arc<str>,
    partition_count: i32,
    gates: PartitionGates,
    directory: Directory,
    key: Vec<u8>,
    client: reqwest::Client,
    writer: EventWriter,
    forward_wait: Duration,
    snapshot: tokio::sync::Mutex<Snapshot>,
    ops: mpsc::UnboundedSender<DirectoryOp>,
}

#[derive(Default)]
struct Snapshot {
    read_at: Option<Instant>,
    owners: Arc<HashMap<i32, Owner>>,
}

impl LeadRouter {
    /// A router for the raw `topic` of `partition_count` partitions, reached by the
    /// other processes at `address`, storing its own parts through `writer`. Reads (or
    /// makes) the key parts are signed with and starts the task that writes this
    /// process's rows of the directory. Every partition's gate starts closed.
    ///
    /// # Errors
    /// The shared database could not be read.
    pub async fn start(
        pg: Pg,
        topic: &str,
        partition_count: i32,
        address: &str,
        writer: EventWriter,
        forward_wait: Duration,
    ) -> Result<Self, RepoError> {
        let directory = Directory::new(pg, topic);
        let key = directory.forward_key().await?;
        let (ops, rx) = mpsc::unbounded_channel();
        // Process to process on the deployment's own network: never through a proxy
        // configured for outbound traffic.
        let client = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(2))
            .timeout(FORWARD_TIMEOUT)
            .build()
            .expect("an HTTP client with timeouts only builds");
        let inner = Arc::new(Inner {
            me: crate::db::process_id().into(),
            address: address.trim_end_matches('/').into(),
            partition_count,
            gates: PartitionGates::default(),
            directory,
            key,
            client,
            writer,
            forward_wait,
            snapshot: tokio::sync::Mutex::new(Snapshot::default()),
            ops,
        });
        crate::tasks::spawn(write_directory(Arc::downgrade(&inner), rx));
        Ok(Self { inner })
    }

    /// The base URL other processes hand this one its parts at.
    pub fn address(&self) -> &str {
        &self.inner.address
    }

    /// Stores `batch`, each lead's part at the owner of its raw partition, and answers
    /// the summed counts once every part is durable.
    ///
    /// # Errors
    /// [`RouteError`]; with [`RouteError::Moving`] before any part was handed over,
    /// nothing was stored.
    pub async fn store(&self, batch: Prepared) -> Result<Stored, RouteError> {
        let Prepared {
            org,
            event_type,
            rows,
            ..
        } = batch;
        let event_type: Arc<str> = event_type.into();
        let n = self.inner.partition_count;
        let mut pending: BTreeMap<i32, Vec<Row>> = BTreeMap::new();
        for row in rows {
            let p = crate::kafka::partition_for(org, row.phone, n);
            pending.entry(p).or_default().push(row);
        }
        let deadline = Instant::now() + self.inner.forward_wait;
        let mut total = Stored::default();
        let mut any_stored = false;
        let mut waited = false;
        let mut failed = None;
        let mut first = true;
        loop {
            let Routes {
                local,
                remote,
                unowned,
            } = self.resolve(&pending, !first).await?;
            if first && !unowned.is_empty() {
                crate::metrics::lead_part_moving("refused");
                return Err(RouteError::Moving {
                    partitions: unowned,
                    stored: total,
                    any_stored,
                });
            }
            let mut set = tokio::task::JoinSet::new();
            let mut take = |ps: &[i32]| -> Parts {
                ps.iter()
                    .map(|p| (*p, pending.remove(p).unwrap_or_default()))
                    .collect()
            };
            if !local.is_empty() {
                let parts = take(&local);
                let inner = self.inner.clone();
                let event_type = event_type.clone();
                set.spawn(async move { inner.store_local(org, &event_type, parts).await });
            }
            for (owner, ps) in remote {
                let parts = take(&ps);
                let inner = self.inner.clone();
                let event_type = event_type.clone();
                set.spawn(async move { inner.forward(&owner, org, event_type, parts).await });
            }
            while let Some(done) = set.join_next().await {
                match done.expect("a part's task does not panic") {
                    Outcome::Stored(s) => {
                        total.inserted += s.inserted;
                        total.duplicates += s.duplicates;
                        any_stored = true;
                    }
                    Outcome::Retry(parts) => pending.extend(parts),
                    Outcome::Failed(e) => failed = failed.or(Some(e)),
                }
            }
            if let Some(e) = failed {
                return Err(match e {
                    RouteError::Store { error, .. } => RouteError::Store {
                        error,
                        partly: any_stored,
                    },
                    e => e,
                });
            }
            if pending.is_empty() {
                if waited {
                    crate::metrics::lead_part_moving("waited");
                }
                return Ok(total);
            }
            waited = true;
            first = false;
            if Instant::now() + RETRY_EVERY > deadline {
                crate::metrics::lead_part_moving("refused");
                return Err(RouteError::Moving {
                    partitions: pending.into_keys().collect(),
                    stored: total,
                    any_stored,
                });
            }
            tokio::time::sleep(RETRY_EVERY).await;
        }
    }

    /// Where each pending partition goes now: here (its gate is open), to another
    /// process (the directory names it), or nowhere yet.
    async fn resolve(
        &self,
        pending: &BTreeMap<i32, Vec<Row>>,
        fresh: bool,
    ) -> Result<Routes, RepoError> {
        let inner = &self.inner;
        let (mut local, mut elsewhere) = (Vec::new(), Vec::new());
        for p in pending.keys() {
            if inner.gates.is_open(*p) {
                local.push(*p);
            } else {
                elsewhere.push(*p);
            }
        }
        let mut remote: Vec<(Owner, Vec<i32>)> = Vec::new();
        let mut unowned = Vec::new();
        if !elsewhere.is_empty() {
            let owners = inner.owners(fresh).await?;
            for p in elsewhere {
                match owners.get(&p) {
                    Some(o) if *o.id != *inner.me => {
                        match remote.iter_mut().find(|(r, _)| r.address == o.address) {
                            Some((_, ps)) => ps.push(p),
                            None => remote.push((o.clone(), vec![p])),
                        }
                    }
                    _ => unowned.push(p),
                }
            }
        }
        Ok(Routes {
            local,
            remote,
            unowned,
        })
    }

    /// Stores a part another process handed over (`body`, signed with `signature`),
    /// when every partition of its rows is open here.
    ///
    /// # Errors
    /// [`ReceiveError`]; nothing was stored.
    pub async fn receive(
        &self,
        body: bytes::Bytes,
        signature: String,
    ) -> Result<Stored, ReceiveError> {
        let inner = self.inner.clone();
        // Up to 21 MB to check and decode: off the async workers.
        let decoded =
            tokio::task::spawn_blocking(move || wire::decode(&inner.key, &body, &signature))
                .await
                .expect("decoding a part does not panic")?;
        let ours = self.inner.partition_count;
        if decoded.partition_count != ours {
            return Err(ReceiveError::PartitionCount {
                theirs: decoded.partition_count,
                ours,
            });
        }
        let batch = decoded.batch;
        let mut partitions: Vec<i32> = batch
            .rows
            .iter()
            .map(|r| crate::kafka::partition_for(batch.org, r.phone, ours))
            .collect();
        partitions.sort_unstable();
        partitions.dedup();
        let _pass = self
            .inner
            .gates
            .enter(&partitions)
            .map_err(ReceiveError::NotOwned)?;
        crate::metrics::lead_part("received");
        self.inner
            .writer
            .store(batch)
            .await
            .map_err(ReceiveError::Store)
    }

    /// `partitions` are warm here: their gates open and the directory names this
    /// process. Called from the rebalance callback.
    pub fn owned(&self, partitions: &[i32]) {
        self.inner.gates.open(partitions);
        let _ = self.inner.ops.send(DirectoryOp::Claim(partitions.to_vec()));
        tracing::info!(
            ?partitions,
            address = %self.inner.address,
            "HTTP parts of these raw partitions are stored here now"
        );
    }

    /// `partitions` are being revoked: their gates close, and this returns once the
    /// parts in flight are durable (so the next owner's warm-up reads them). Called
    /// from the rebalance callback, which the partitions wait for.
    pub fn revoked(&self, partitions: &[i32]) {
        let left = self.inner.gates.close(partitions, REVOKE_WAIT);
        if left > 0 {
            tracing::error!(
                ?partitions,
                in_flight = left,
                "partitions revoked while HTTP parts of them were still being stored after {REVOKE_WAIT:?}; their counts may be inexact"
            );
        }
        let _ = self
            .inner
            .ops
            .send(DirectoryOp::Release(partitions.to_vec()));
    }

    /// At shutdown: closes every gate, waits for the parts in flight and deletes this
    /// process's rows from the directory, so other processes stop handing it parts.
    pub async fn shutdown(&self) {
        let open = self.inner.gates.open_partitions();
        let inner = self.inner.clone();
        let closing = open.clone();
        let _ = tokio::task::spawn_blocking(move || inner.gates.close(&closing, REVOKE_WAIT)).await;
        match self.inner.directory.release(None, &self.inner.me).await {
            Ok(n) => {
                tracing::info!(partitions = ?open, rows = n, "left the directory of partition owners")
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not delete this process's rows from the directory of partition owners; other processes find them stale and wait for the partitions' next owners")
            }
        }
    }
}

impl Inner {
    /// The directory, read again when older than [`DIRECTORY_FRESH_FOR`] or `fresh`.
    async fn owners(&self, fresh: bool) -> Result<Arc<HashMap<i32, Owner>>, RepoError> {
        let mut snap = self.snapshot.lock().await;
        let stale = snap
            .read_at
            .is_none_or(|t| t.elapsed() > DIRECTORY_FRESH_FOR);
        if fresh || stale {
            snap.owners = Arc::new(self.directory.owners(self.partition_count).await?);
            snap.read_at = Some(Instant::now());
        }
        Ok(snap.owners.clone())
    }

    /// Stores `parts` through this process's writer, if their gates are all open.
    async fn store_local(&self, org: OrgId, event_type: &str, parts: Parts) -> Outcome {
        let partitions: Vec<i32> = parts.iter().map(|(p, _)| *p).collect();
        let Ok(_pass) = self.gates.enter(&partitions) else {
            return Outcome::Retry(parts);
        };
        let rows: Vec<Row> = parts.into_iter().flat_map(|(_, rows)| rows).collect();
        crate::metrics::lead_part("local");
        let batch = Prepared {
            org,
            event_type: event_type.to_owned(),
            received: rows.len(),
            rows,
            rejected: 0,
            rejects: Vec::new(),
        };
        match self.writer.store(batch).await {
            Ok(s) => Outcome::Stored(s),
            Err(error) => Outcome::Failed(RouteError::Store {
                error,
                partly: false,
            }),
        }
    }

    /// Hands `parts` to `owner` and reads its counts.
    async fn forward(
        self: Arc<Self>,
        owner: &Owner,
        org: OrgId,
        event_type: Arc<str>,
        parts: Parts,
    ) -> Outcome {
        let started = Instant::now();
        let inner = self.clone();
        let (parts, body, signature) = tokio::task::spawn_blocking(move || {
            let rows: Vec<&Row> = parts.iter().flat_map(|(_, rows)| rows).collect();
            let (body, sig) =
                wire::encode(&inner.key, org, &event_type, inner.partition_count, &rows);
            (parts, body, sig)
        })
        .await
        .expect("encoding a part does not panic");
        let url = format!("{}{}", owner.address, wire::PATH);
        let sent = self
            .client
            .post(&url)
            .header(reqwest::header::CONTENT_TYPE, wire::CONTENT_TYPE)
            .header(wire::SIGNATURE_HEADER, signature)
            .body(body)
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => {
                // Not reached, gone, or no answer in time: the directory may name a
                // process that died; look again. (Had it stored the part before
                // dying, its rows now count as duplicates where they are sent next.)
                tracing::warn!(address = %owner.address, error = %e, "handing a part to its partition's owner failed; looking for the owner again");
                return Outcome::Retry(parts);
            }
        };
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        crate::metrics::lead_part_forwarded(started.elapsed());
        match status {
            200 => match serde_json::from_str::<Counts>(&text) {
                Ok(c) => {
                    crate::metrics::lead_part("forwarded");
                    Outcome::Stored(Stored {
                        inserted: c.inserted,
                        duplicates: c.duplicates,
                    })
                }
                Err(e) => Outcome::Failed(RouteError::Owner {
                    address: owner.address.to_string(),
                    status,
                    message: format!("an answer that is not the counts ({e})"),
                    retry: true,
                }),
            },
            409 => Outcome::Retry(parts),
            _ => {
                let message = serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
                    .unwrap_or(text);
                Outcome::Failed(RouteError::Owner {
                    address: owner.address.to_string(),
                    status,
                    message,
                    retry: status == 503,
                })
            }
        }
    }
}

/// The counts an owner answers a part with.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Counts {
    pub inserted: usize,
    pub duplicates: usize,
}

/// Writes this process's directory rows in the order the rebalances asked for, and
/// every [`REASSERT_EVERY`] writes the partitions it owns again. Ends with the
/// router.
async fn write_directory(
    inner: std::sync::Weak<Inner>,
    mut ops: mpsc::UnboundedReceiver<DirectoryOp>,
) {
    let mut tick = tokio::time::interval(REASSERT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let op = tokio::select! {
            op = ops.recv() => match op {
                Some(op) => op,
                None => return,
            },
            _ = tick.tick() => {
                let Some(inner) = inner.upgrade() else { return };
                DirectoryOp::Claim(inner.gates.open_partitions())
            }
            // LeadRouter::shutdown deletes this process's rows itself.
            () = crate::tasks::stopped() => return,
        };
        let mut wait = Duration::from_millis(100);
        loop {
            let Some(inner) = inner.upgrade() else { return };
            let done = match &op {
                DirectoryOp::Claim(p) if p.is_empty() => Ok(()),
                DirectoryOp::Claim(p) => {
                    // Only what is still open: a claim queued before a revocation
                    // must not name this process for a partition it gave up.
                    let open: Vec<i32> = p
                        .iter()
                        .copied()
                        .filter(|p| inner.gates.is_open(*p))
                        .collect();
                    inner
                        .directory
                        .claim(&open, inner.partition_count, &inner.me, &inner.address)
                        .await
                }
                DirectoryOp::Release(p) => {
                    inner.directory.release(Some(p), &inner.me).await.map(drop)
                }
            };
            match done {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?wait, "writing this process's partitions into the directory of owners failed; retrying");
                    drop(inner);
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

/// Hands the partitions a [`PartitionWarmer`] readied to the [`LeadRouter`]: a
/// partition's gate opens after its warm-up and closes before its revocation goes on.
pub struct RoutingWarmer {
    pub warmer: Box<dyn PartitionWarmer>,
    pub router: LeadRouter,
}

impl PartitionWarmer for RoutingWarmer {
    fn warm(&self, partitions: &[i32], partition_count: i32) {
        self.warmer.warm(partitions, partition_count);
        self.router.owned(partitions);
    }

    fn revoked(&self, partitions: &[i32], partition_count: i32) {
        self.router.revoked(partitions);
        self.warmer.revoked(partitions, partition_count);
    }
}
