//! `wharf-monitor __monitor ROOT DRIVER ID`: the per-container monitor
//! alone (what `wharf __monitor` runs), a lean executable: one runs per
//! running container, so it maps only the code the monitor uses.

#![allow(
    clippy::print_stderr,
    clippy::exit,
    reason = "the binary owns stderr and the exit status"
)]

#[path = "../monitor_main.rs"]
mod monitor_main;

fn main() {
    std::process::exit(monitor_main::main(std::env::args_os().collect()));
}
