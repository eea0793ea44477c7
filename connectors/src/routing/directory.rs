//! The owners of the raw lead partitions, in the shared database
//! (`lead_partition_owners`), and the key the processes sign parts with
//! (`cluster_keys`).
//!
//! A row is written by the process that owns the partition, once its warm-up is done,
//! and deleted by it when it gives the partition up; a killed process's rows stay
//! until the partition's next owner overwrites them. So a row only says where to
//! try: the process it names checks its own gates before storing anything.

use crate::db::{Pg, RepoError};
use std::collections::HashMap;
use std::sync::Arc;

/// A process that owns a partition, as the directory names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Owner {
    /// Its [`process_id`](crate::db::process_id).
    pub id: Arc<str>,
    /// The base URL of its HTTP API.
    pub address: Arc<str>,
}

/// The directory's rows for one raw topic.
#[derive(Clone)]
pub(crate) struct Directory {
    pg: Pg,
    topic: Arc<str>,
}

/// The name of the key that signs parts in `cluster_keys`.
const FORWARD_KEY: &str = "lead-parts";

impl Directory {
    pub fn new(pg: Pg, topic: &str) -> Self {
        Self {
            pg,
            topic: topic.into(),
        }
    }

    /// The owners of the topic's partitions, of a topic of `partition_count`
    /// partitions (rows of another count, from before the topic grew, are left out).
    pub async fn owners(&self, partition_count: i32) -> Result<HashMap<i32, Owner>, RepoError> {
        let conn = self.pg.conn().await?;
        let rows = conn
            .query(
                "SELECT partition, owner, address FROM lead_partition_owners \
                 WHERE topic = $1 AND partition_count = $2",
                &[&&*self.topic, &partition_count],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let owner = Owner {
                    id: r.get::<_, String>(1).into(),
                    address: r.get::<_, String>(2).into(),
                };
                (r.get::<_, i32>(0), owner)
            })
            .collect())
    }

    /// Records `me` at `address` as the owner of `partitions`.
    pub async fn claim(
        &self,
        partitions: &[i32],
        partition_count: i32,
        me: &str,
        address: &str,
    ) -> Result<(), RepoError> {
        let conn = self.pg.conn().await?;
        conn.execute(
            "INSERT INTO lead_partition_owners (topic, partition, partition_count, owner, address, since_ms) \
             SELECT $1, p, $3, $4, $5, $6 FROM UNNEST($2::int[]) AS p \
             ON CONFLICT (topic, partition) DO UPDATE SET partition_count = EXCLUDED.partition_count, \
               owner = EXCLUDED.owner, address = EXCLUDED.address, since_ms = EXCLUDED.since_ms",
            &[
                &&*self.topic,
                &partitions,
                &partition_count,
                &me,
                &address,
                &crate::writer::now_ms(),
            ],
        )
        .await?;
        Ok(())
    }

    /// Deletes the rows of `partitions` (every partition when `None`) that still
    /// name `me`: a row another process wrote since is its own.
    pub async fn release(&self, partitions: Option<&[i32]>, me: &str) -> Result<u64, RepoError> {
        let conn = self.pg.conn().await?;
        Ok(match partitions {
            Some(p) => {
                conn.execute(
                    "DELETE FROM lead_partition_owners WHERE topic = $1 AND owner = $2 AND partition = ANY($3)",
                    &[&&*self.topic, &me, &p],
                )
                .await?
            }
            None => {
                conn.execute(
                    "DELETE FROM lead_partition_owners WHERE topic = $1 AND owner = $2",
                    &[&&*self.topic, &me],
                )
                .await?
            }
        })
    }

    /// The key the processes sign the parts they hand each other with: made by the
    /// first process that asks, read by the others.
    pub async fn forward_key(&self) -> Result<Vec<u8>, RepoError> {
        let conn = self.pg.conn().await?;
        let fresh: [u8; 32] = rand::random();
        conn.execute(
            "INSERT INTO cluster_keys (name, key) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            &[&FORWARD_KEY, &&fresh[..]],
        )
        .await?;
        let row = conn
            .query_one(
                "SELECT key FROM cluster_keys WHERE name = $1",
                &[&FORWARD_KEY],
            )
            .await?;
        Ok(row.get(0))
    }
}
