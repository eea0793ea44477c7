//! PLACEHOLDER until the metrics branch merges (replaced by it).
#![allow(dead_code, unused_variables, missing_docs)]
pub fn delivery_finished(state: &'static str) {}
pub fn delivery_attempt(outcome: &'static str) {}
pub fn delivery_latency(d: std::time::Duration) {}
pub fn delivery_queue_depth(endpoint_id: i64, depth: u64) {}
pub fn delivery_in_flight(endpoint_id: i64, n: u64) {}
pub fn deliveries_published(n: u64) {}
