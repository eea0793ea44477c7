//! The `leadstream` binary: parses arguments and calls [`run`].

mod bench;
mod cli;

use clap::Parser;

/// mimalloc: the server allocates per request and per delivery (hyper, rusqlite),
/// and glibc's malloc was a sixth of `bench deliver`'s CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
