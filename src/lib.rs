//! The `leadstream` package's library: what the binary and the criterion benches share.
//!
//! The binary itself (`src/main.rs`) is the CLI; the pipeline and the connectors are the
//! `leadstream-pipeline` and `leadstream-connectors` crates.

pub mod cpu_time;
pub mod synth;
