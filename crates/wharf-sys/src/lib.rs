//! Wharf's unsafe boundary and kernel plumbing.
//!
//! Everything here is a thin, typed wrapper over a syscall or a kernel
//! mechanism: rooted path resolution inside hostile trees ([`root::Root`]),
//! the new mount API on file descriptors ([`mount`]), fd hygiene ([`fd`]),
//! process creation with namespace flags ([`process`]), terminals and fd
//! passing ([`console`]), and running the Wharf binary from a sealed,
//! read-only image ([`exe`]).
//!
//! This crate knows no Wharf concept: no container, bundle, image or network.
//! All `unsafe` code of the workspace lives here (and in the dev-only testkit),
//! each block wrapping one call with a `// SAFETY:` comment.

pub mod bpf;
pub mod console;
pub mod exe;
pub mod fd;
pub mod inode;
pub mod mount;
pub mod plock;
pub mod process;
pub mod procfs;
pub mod root;
pub mod seccomp;

pub use root::Root;
