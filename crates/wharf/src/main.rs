//! The `wharf` binary: the command line over Wharf's libraries.
//!
//! Invoked as `wharf-runc` (a link to this binary) it is the runc-compatible
//! OCI runtime command line; `wharf runtime …` is the same command line.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::exit,
    reason = "the binary owns stdout, stderr and the exit status"
)]

mod log;
mod runtime_cli;

use std::ffi::OsString;
use std::path::Path;

use clap::Parser;

/// Wharf: a daemonless Linux container engine with its own OCI runtime.
#[derive(Debug, Parser)]
#[command(name = "wharf", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// The runc-compatible OCI runtime (`wharf runtime run …`); also
    /// available as `wharf-runc`.
    #[command(disable_help_flag = false)]
    Runtime(runtime_cli::RuntimeCli),
}

fn main() {
    let args: Vec<OsString> = std::env::args_os().collect();
    let invoked_as = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let code = if invoked_as == "wharf-runc" || invoked_as == "runc" {
        let cli = runtime_cli::RuntimeCli::parse_from(args);
        runtime_cli::main(cli)
    } else {
        let cli = Cli::parse_from(args);
        match cli.command {
            Command::Runtime(rt) => runtime_cli::main(rt),
        }
    };
    std::process::exit(code);
}
