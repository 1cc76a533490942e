//! `wharf-runc`: the runc-compatible OCI runtime alone, the same code as
//! `wharf runtime …` in a lean executable.
//!
//! The runtime is exec'd for every container start (twice, with the sealed
//! re-exec), so its start cost is paid per container. Built on its own it
//! links only the runtime (4 MB instead of the engine's 9.5 MB with the
//! registry client, image store and SQLite), and faults in fewer pages:
//! level with crun instead of 6-17% slower (BENCHMARKS.md).

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::exit,
    reason = "the binary owns stdout, stderr and the exit status"
)]

#[path = "../log.rs"]
mod log;
#[path = "../runtime_cli.rs"]
mod runtime_cli;

use clap::Parser;

fn main() {
    let cli = runtime_cli::RuntimeCli::parse();
    std::process::exit(runtime_cli::main(cli));
}
