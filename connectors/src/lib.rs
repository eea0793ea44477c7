//! leadstream's connections to the outside: the HTTP API (axum), the embedded store
//! (SQLite), the ClickHouse store, the organization/credential registry, the single
//! writer that makes acknowledged events durable, and the Prometheus metrics.

pub mod api;
pub mod campaigns;
pub mod clickhouse;
pub mod config;
pub mod db;
pub mod delivery;
pub mod domain;
pub mod kafka;
pub mod metrics;
pub mod registry;
pub mod routing;
pub mod secrets;
pub mod services;
pub mod store;
pub mod tasks;
pub mod writer;

pub use registry::{AuthMode, KeyKind, Registry};
pub use writer::{EventWriter, Stored};
