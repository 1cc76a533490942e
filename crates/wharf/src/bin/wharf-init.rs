//! `wharf-init`: Wharf's init for `run --init` alone (what `wharf __init`
//! runs), a small executable the engine bind-mounts into containers as
//! /sbin/wharf-init. Installed statically linked beside `wharf`, like
//! Docker's docker-init: it runs inside images that have no C library.

#![allow(
    clippy::print_stderr,
    clippy::exit,
    reason = "the binary owns stderr and the exit status"
)]

#[path = "../init.rs"]
mod init;

fn main() {
    std::process::exit(init::main(std::env::args_os().collect()));
}
