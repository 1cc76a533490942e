//! Running test code in a forked child, optionally in fresh namespaces, with its
//! error chain (or panic) sent back to the parent over a pipe.
#![allow(
    unsafe_code,
    reason = "fork(2) is unsafe: the child of a multi-threaded process may only rely on what fork preserves"
)]

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::os::fd::OwnedFd;
use std::panic::{catch_unwind, AssertUnwindSafe};

use anyhow::{anyhow, Context as _};
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sched::{unshare, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, pipe2, ForkResult, Pid};

/// The child's report is cut to this many bytes so that writing it never blocks
/// (a pipe holds at least 64 KiB), whatever the parent does.
const MAX_REPORT: usize = 32 * 1024;

/// Runs `f` in a forked child and returns its outcome: `Ok` when it returned `Ok`,
/// otherwise an error carrying the child's rendered error chain (`{e:#}`) or panic
/// message.
///
/// The child exits with `_exit` right after `f`, so it runs no destructors or
/// `atexit` handlers of the parent's state. It is a copy of the calling process
/// with one thread: a lock another thread held at the fork stays held forever in
/// the child, so `f` should stick to syscalls, files and allocation (glibc's malloc
/// is fork-safe). Under `cargo test` (tests as threads of one process) this bites
/// when another test is panicking with `RUST_BACKTRACE` set at the moment of the
/// fork: it holds std's backtrace lock, which `anyhow!` in the child then waits for.
/// `cargo nextest` runs each test in its own process and has no such neighbours.
/// Processes `f` forks itself should be waited for by `f`.
///
/// # Errors
///
/// The fork fails, `f` fails or panics, or the child dies from a signal.
pub fn in_child<F: FnOnce() -> anyhow::Result<()>>(f: F) -> anyhow::Result<()> {
    in_child_unshare(CloneFlags::empty(), f)
}

/// Like [`in_child`], but the child first calls `unshare(flags)`.
///
/// Unsharing happens in the forked child, which is single-threaded, so
/// `CLONE_NEWUSER` works even though the test process has many threads (the
/// kernel refuses a user namespace to a multi-threaded process). After
/// `CLONE_NEWUSER` the child has no uid/gid mapping yet (it is `nobody` with full
/// capabilities in the new namespace); `f` can write `/proc/self/uid_map` itself.
/// After `CLONE_NEWPID` only the child's own children enter the new pid namespace.
///
/// # Errors
///
/// The fork or `unshare` fails, `f` fails or panics, or the child dies from a
/// signal.
pub fn in_child_unshare<F: FnOnce() -> anyhow::Result<()>>(
    flags: CloneFlags,
    f: F,
) -> anyhow::Result<()> {
    let (read_end, write_end) = pipe2(OFlag::O_CLOEXEC).context("create the report pipe")?;
    // SAFETY: the child only runs `f` (documented to avoid locks other threads may
    // hold), writes to a pipe it owns and calls `_exit`; it never returns into the
    // test harness.
    let fork_result = unsafe { fork() }.context("fork a test child")?;
    match fork_result {
        ForkResult::Child => {
            drop(read_end);
            run_child(flags, f, write_end)
        }
        ForkResult::Parent { child } => {
            drop(write_end);
            wait_child(child, read_end)
        }
    }
}

/// The child's side: unshare, run `f`, report, `_exit`. Never returns.
fn run_child<F: FnOnce() -> anyhow::Result<()>>(flags: CloneFlags, f: F, report: OwnedFd) -> ! {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        if !flags.is_empty() {
            unshare(flags).with_context(|| format!("unshare({flags:?})"))?;
        }
        f()
    }));
    let (code, message) = match outcome {
        Ok(Ok(())) => (0, String::new()),
        Ok(Err(e)) => (1, format!("{e:#}")),
        Err(payload) => {
            let text = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".to_owned());
            (2, format!("child panicked: {text}"))
        }
    };
    let mut end = message.len().min(MAX_REPORT);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let mut pipe = File::from(report);
    // Nothing to do if the parent is gone; the exit code still tells failure.
    let _ = pipe.write_all(&message.as_bytes()[..end]);
    drop(pipe);
    // SAFETY: _exit(2) takes no pointers and never returns; skipping destructors and
    // atexit handlers is the point (they belong to the parent's copy of the state).
    unsafe { libc::_exit(code) }
}

/// The parent's side: reap the child, then drain its report without blocking (a
/// grandchild may still hold the write end).
fn wait_child(child: Pid, report: OwnedFd) -> anyhow::Result<()> {
    let status = loop {
        match waitpid(child, None) {
            Err(Errno::EINTR) => continue,
            other => break other.with_context(|| format!("wait for test child {child}"))?,
        }
    };
    fcntl(&report, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))
        .context("make the report pipe non-blocking")?;
    let mut pipe = File::from(report);
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match pipe.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    let message = String::from_utf8_lossy(&raw).into_owned();
    match status {
        WaitStatus::Exited(_, 0) if message.is_empty() => Ok(()),
        WaitStatus::Exited(..) if !message.is_empty() => Err(anyhow!(message)),
        WaitStatus::Exited(_, code) => Err(anyhow!("test child exited with status {code}")),
        WaitStatus::Signaled(_, signal, _) => {
            let detail = if message.is_empty() {
                String::new()
            } else {
                format!(" after reporting: {message}")
            };
            Err(anyhow!("test child was killed by {signal}{detail}"))
        }
        other => Err(anyhow!("test child ended unexpectedly: {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ok_closure_is_ok() {
        in_child(|| Ok(())).unwrap();
    }

    #[test]
    fn error_chain_comes_back() {
        let err = in_child(|| Err(anyhow!("inner cause")).context("outer step")).unwrap_err();
        assert_eq!(format!("{err:#}"), "outer step: inner cause");
    }

    #[test]
    fn panic_comes_back() {
        let err = in_child(|| panic!("boom {}", 42)).unwrap_err();
        assert_eq!(format!("{err:#}"), "child panicked: boom 42");
    }

    #[test]
    fn child_runs_in_another_process() {
        let parent = std::process::id();
        in_child(|| {
            anyhow::ensure!(std::process::id() != parent, "still the parent");
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn long_reports_are_cut_not_blocking() {
        let err = in_child(|| Err(anyhow!("é".repeat(MAX_REPORT)))).unwrap_err();
        let text = format!("{err:#}");
        assert!(text.len() <= MAX_REPORT && text.len() > MAX_REPORT - 4);
    }
}
