//! `wharf __init -- CMD [ARG…]`: Wharf's own minimal init for `run --init`,
//! the container's PID 1 in place of an external binary (Docker's tini).
//!
//! PID 1 of a pid namespace gets no default signal actions (a SIGTERM a
//! shell ignores as PID 1 would never stop it) and inherits every orphan.
//! The init therefore blocks all catchable signals, runs CMD as its child
//! with a clean mask, forwards each signal it receives to that child, reaps
//! every child that exits, and when CMD exits, exits with its status
//! (128 + signal number when CMD was killed). Single-threaded, no
//! allocation in the loop; it holds no file descriptors of its own.
//!
//! `wharf-init --pause` is a pod's infra container (Podman's pause): it
//! runs nothing, sleeps in `sigwait` with every signal blocked, reaps the
//! orphans a shared PID namespace hands it, and exits 0 on SIGTERM or
//! SIGINT; other signals are ignored. As PID 1 it gets only the signals it
//! waits for (a blocked signal is queued, not dropped as unhandled).

use std::ffi::OsString;

use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// Signals the init forwards to the command rather than acting on.
fn forwarded(signal: Signal) -> bool {
    !matches!(
        signal,
        Signal::SIGCHLD
            | Signal::SIGKILL
            | Signal::SIGSTOP
            | Signal::SIGSEGV
            | Signal::SIGBUS
            | Signal::SIGILL
            | Signal::SIGFPE
            | Signal::SIGABRT
            | Signal::SIGTRAP
            | Signal::SIGSYS
    )
}

/// Whether the command line asks for the pause mode: `wharf-init --pause`
/// or `wharf __init --pause` (never an argument of a command after `--`).
fn pause_requested(args: &[OsString]) -> bool {
    let rest = match args.get(1) {
        Some(a) if a == "__init" => &args[2..],
        _ => args.get(1..).unwrap_or_default(),
    };
    rest.first().is_some_and(|a| a == "--pause")
}

/// Everything the kernel lets a process block: the loops receive them with
/// sigwait instead of running handlers.
fn blockable() -> SigSet {
    let mut blocked = SigSet::all();
    for s in [
        Signal::SIGSEGV,
        Signal::SIGBUS,
        Signal::SIGILL,
        Signal::SIGFPE,
        Signal::SIGABRT,
        Signal::SIGTRAP,
        Signal::SIGSYS,
    ] {
        blocked.remove(s);
    }
    blocked
}

/// The pause mode: sleep, reap, exit 0 on SIGTERM or SIGINT.
fn pause() -> i32 {
    let blocked = blockable();
    if let Err(e) = nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&blocked), None) {
        eprintln!("wharf init: block signals: {e}");
        return 1;
    }
    loop {
        match blocked.wait() {
            Ok(Signal::SIGTERM | Signal::SIGINT) => return 0,
            Ok(Signal::SIGCHLD) => {
                while let Ok(status) = waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                    if status == WaitStatus::StillAlive {
                        break;
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                eprintln!("wharf init: wait for signals: {e}");
                return 1;
            }
        }
    }
}

/// Runs the init; returns the exit status for the binary to exit with.
pub fn main(args: Vec<OsString>) -> i32 {
    if pause_requested(&args) {
        return pause();
    }
    let mut args = args.into_iter().skip_while(|a| a != "--").skip(1);
    let Some(program) = args.next() else {
        eprintln!("wharf init: usage: wharf __init -- CMD [ARG...]");
        return 127;
    };
    let blocked = blockable();
    if let Err(e) = nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&blocked), None) {
        eprintln!("wharf init: block signals: {e}");
        return 127;
    }
    let child = match spawn(&program, args) {
        Ok(child) => child,
        Err(e) => {
            eprintln!("wharf init: run {}: {e}", program.to_string_lossy());
            // Docker's convention: 127 not found, 126 not executable.
            return if e == nix::errno::Errno::ENOENT {
                127
            } else {
                126
            };
        }
    };
    // The command leads its own process group, so a terminal's job control
    // reaches it; the init hands the terminal's foreground to it.
    let _ = nix::unistd::tcsetpgrp(std::io::stdin(), child);
    loop {
        let signal = match blocked.wait() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("wharf init: wait for signals: {e}");
                return 127;
            }
        };
        if signal == Signal::SIGCHLD {
            if let Some(status) = reap(child) {
                return status;
            }
        } else if forwarded(signal) {
            // The whole group: what a shell started in the foreground gets it
            // too, as with a terminal's signals.
            if kill(Pid::from_raw(-child.as_raw()), signal).is_err() {
                let _ = kill(child, signal);
            }
        }
    }
}

/// Runs the command in its own process group with an empty signal mask and
/// every signal at its default action: the init's blocked set and Rust's
/// ignored SIGPIPE must not reach it (posix_spawn's SETSIGMASK and
/// SETSIGDEF; std's Command left the mask to the child under a static
/// glibc).
fn spawn(program: &OsString, args: impl Iterator<Item = OsString>) -> nix::Result<Pid> {
    use nix::spawn::{posix_spawnp, PosixSpawnAttr, PosixSpawnFileActions, PosixSpawnFlags};
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt as _;
    let cstring =
        |s: &std::ffi::OsStr| CString::new(s.as_bytes()).map_err(|_| nix::errno::Errno::EINVAL);
    let path = cstring(program)?;
    let mut argv = vec![path.clone()];
    for a in args {
        argv.push(cstring(&a)?);
    }
    let envp: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).map_err(|_| nix::errno::Errno::EINVAL)
        })
        .collect::<Result<_, _>>()?;
    let mut attr = PosixSpawnAttr::init()?;
    attr.set_flags(
        PosixSpawnFlags::POSIX_SPAWN_SETSIGMASK
            | PosixSpawnFlags::POSIX_SPAWN_SETSIGDEF
            | PosixSpawnFlags::POSIX_SPAWN_SETPGROUP,
    )?;
    attr.set_sigmask(&SigSet::empty())?;
    attr.set_sigdefault(&SigSet::all())?;
    attr.set_pgroup(Pid::from_raw(0))?;
    posix_spawnp(&path, &PosixSpawnFileActions::init()?, &attr, &argv, &envp)
}

/// Reaps every exited child; the command's exit status once it is gone.
fn reap(command: Pid) -> Option<i32> {
    let mut result = None;
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == command => result = Some(code),
            Ok(WaitStatus::Signaled(pid, signal, _)) if pid == command => {
                result = Some(128 + signal as i32);
            }
            Ok(WaitStatus::StillAlive) | Err(_) => return result,
            Ok(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fatal_and_unblockable_signals_are_not_forwarded() {
        assert!(forwarded(Signal::SIGTERM));
        assert!(forwarded(Signal::SIGHUP));
        assert!(forwarded(Signal::SIGWINCH));
        assert!(!forwarded(Signal::SIGCHLD));
        assert!(!forwarded(Signal::SIGKILL));
        assert!(!forwarded(Signal::SIGSEGV));
    }

    #[test]
    fn pause_is_the_first_argument_only() {
        let args = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        assert!(pause_requested(&args(&["/sbin/wharf-init", "--pause"])));
        assert!(pause_requested(&args(&["wharf", "__init", "--pause"])));
        assert!(!pause_requested(&args(&[
            "wharf-init",
            "--",
            "sh",
            "--pause"
        ])));
        assert!(!pause_requested(&args(&[
            "wharf", "__init", "--", "--pause"
        ])));
        assert!(!pause_requested(&args(&["wharf-init"])));
    }
}
