//! Integration tests: the real `leadstream` binary over real sockets.
//!
//! Every test starts its own server (`serve --listen 127.0.0.1:0`) on its own data
//! dir, sets it up through the real admin CLI and talks HTTP to it.

mod api;
mod auth;
mod campaigns;
mod cli;
mod clickhouse;
mod cluster;
mod console;
mod domain;
mod durability;
mod hostile;
mod kafka;
mod lead_events;
mod limits;
mod metrics;
mod org_limits;
mod precision;
mod receiver;
mod routing;
mod secrets;
mod serve;
mod shared_db;
mod support;
mod support_clickhouse;
mod support_kafka;
mod webhooks;
mod whatsapp;
