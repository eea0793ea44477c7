//! `leadstream bench`: end-to-end measurements (being written).

use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum BenchCmd {
    /// Synthetic lead-event batches through the pipeline in-process and over HTTP.
    Ingest {
        /// Total events to send.
        #[arg(long, default_value_t = 1_000_000)]
        events: usize,
    },
}

pub fn run(cmd: BenchCmd) -> anyhow::Result<()> {
    match cmd {
        BenchCmd::Ingest { events } => anyhow::bail!("bench ingest ({events} events) is not built yet"),
    }
}
