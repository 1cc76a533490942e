//! `wharf __init` (what `run --init` makes PID 1): exit statuses pass
//! through, signals reach the command, orphans are reaped. Run as PID 1 of a
//! fresh pid namespace (`unshare --pid --fork --mount-proc`), on the host:
//! the test build of `wharf` is dynamically linked, so it cannot run inside
//! the busybox rootfs.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use wharf_testkit::require;

fn init(script: &str) -> Command {
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--fork", "--mount-proc", "--"])
        .arg(env!("CARGO_BIN_EXE_wharf"))
        .args(["__init", "--", "sh", "-c", script])
        .stdin(Stdio::null());
    cmd
}

#[test]
fn exit_status_and_missing_command() {
    require!(Root);
    let status = init("exit 7").status().unwrap();
    assert_eq!(status.code(), Some(7));
    let status = init("kill -KILL $$").status().unwrap();
    assert_eq!(
        status.code(),
        Some(128 + 9),
        "killed by a signal: 128 + signal"
    );
    let out = Command::new("unshare")
        .args(["--pid", "--fork", "--"])
        .arg(env!("CARGO_BIN_EXE_wharf"))
        .args(["__init", "--", "/nonexistent/cmd"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/cmd"));
}

/// SIGTERM to PID 1 reaches the command, which a shell as PID 1 would
/// never get (no default action for PID 1).
#[test]
fn signals_are_forwarded_to_the_command() {
    require!(Root);
    let mut child =
        init("trap 'echo got-term; exit 3' TERM; echo ready; while :; do sleep 0.05; done")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    // unshare's only child is the init, PID 1 of the new namespace.
    let children =
        fs_err::read_to_string(format!("/proc/{pid}/task/{pid}/children", pid = child.id()))
            .unwrap();
    let init_pid: i32 = children.split_whitespace().next().unwrap().parse().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(init_pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "got-term");
    assert_eq!(child.wait().unwrap().code(), Some(3));
}

/// An orphan is reparented to the init and reaped when it exits: no zombie
/// is left in the namespace.
#[test]
fn orphans_are_reaped() {
    require!(Root);
    let out = init(
        "for i in 1 2 3; do (sleep 0.1 &) ; done; sleep 0.6; \
         ps -eo stat=,comm= | awk '$1 ~ /^Z/' | wc -l",
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0");
}
