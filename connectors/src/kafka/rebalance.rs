//! The raw-topic consumer's rebalance hooks: which raw partitions this process owns
//! (what decides between storing a row and re-routing it, see [`super::plan`]), and
//! readying the dedup index for partitions it newly owns ([`PartitionWarmer`]).

use crate::writer::EventWriter;
use parking_lot::RwLock;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::ClientContext;
use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// A view of the raw partitions a [`RawSource`](super::RawSource) owns.
#[derive(Clone, Default)]
pub struct Assignment(pub(crate) Arc<RwLock<BTreeSet<i32>>>);

impl Assignment {
    /// The owned partitions, ascending; empty before the group is joined and during
    /// a rebalance.
    pub fn partitions(&self) -> Vec<i32> {
        self.0.read().iter().copied().collect()
    }

    /// A copy of the owned set, for one batch's plan.
    pub(crate) fn snapshot(&self) -> BTreeSet<i32> {
        self.0.read().clone()
    }
}

/// Readies the dedup index for raw partitions this process newly owns.
///
/// Called from the rebalance callback ([`ConsumerContext::post_rebalance`]) inside the
/// consumer's poll, on the consumer's task. While it runs the consumer hands out no
/// records, so a warmer that blocks until the index is ready (as
/// [`ClickHouseWarmer`](crate::clickhouse::ClickHouseWarmer) does) guarantees nothing
/// from the new partitions is stored before; it must finish within
/// `max.poll.interval.ms`.
pub trait PartitionWarmer: Send + Sync + 'static {
    /// `partitions` were just assigned, only those this process did not own already;
    /// the raw topic has `partition_count`.
    fn warm(&self, partitions: &[i32], partition_count: i32);

    /// `partitions` were just revoked. A warmer that warms on assignment may drop
    /// their leads from the indexes; the default keeps them (the one-process warmer
    /// never warms again, so it must).
    fn revoked(&self, partitions: &[i32], partition_count: i32) {
        let _ = (partitions, partition_count);
    }
}

/// The one-process warmer: the writer warms the whole index from the store at
/// start-up, and the consumer subscribes only after that, so every lead of every
/// partition is already in the index. It only checks that this holds.
pub struct WarmedAtStartup(pub EventWriter);

impl PartitionWarmer for WarmedAtStartup {
    fn warm(&self, partitions: &[i32], partition_count: i32) {
        if self.0.is_ready() {
            tracing::info!(
                ?partitions,
                partition_count,
                keys = self.0.stats().warmed_keys.load(Ordering::Relaxed),
                "partitions assigned; the index holds every stored key (warmed at start-up)"
            );
        } else {
            // Not reachable: the consumer subscribes after warm-up. Storing waits for it anyway.
            tracing::warn!(
                ?partitions,
                "partitions assigned before the index is warm; storing waits for the warm-up"
            );
        }
    }
}

/// The consumer context: keeps the [`Assignment`] current and warms newly assigned
/// partitions with its [`PartitionWarmer`].
pub(crate) struct RebalanceHooks {
    pub topic: String,
    pub partition_count: i32,
    pub owned: Assignment,
    pub warmer: Box<dyn PartitionWarmer>,
}

impl ClientContext for RebalanceHooks {}

impl ConsumerContext for RebalanceHooks {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let given: Vec<i32> = tpl
                    .elements_for_topic(&self.topic)
                    .iter()
                    .map(|e| e.partition())
                    .collect();
                // Said even when empty: a member with no partition has joined too.
                tracing::info!(partitions = ?given, "group assignment received");
                let new: Vec<i32> = {
                    let mut owned = self.owned.0.write();
                    given.into_iter().filter(|p| owned.insert(*p)).collect()
                };
                if !new.is_empty() {
                    self.warmer.warm(&new, self.partition_count);
                }
            }
            Rebalance::Revoke(tpl) => {
                let mut owned = self.owned.0.write();
                let gone: Vec<i32> = tpl
                    .elements_for_topic(&self.topic)
                    .iter()
                    .map(|e| e.partition())
                    .filter(|p| owned.remove(p))
                    .collect();
                tracing::info!(partitions = ?gone, still_owned = owned.len(), "partitions revoked");
                drop(owned);
                if !gone.is_empty() {
                    self.warmer.revoked(&gone, self.partition_count);
                }
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "consumer group rebalance failed"),
        }
    }
}
