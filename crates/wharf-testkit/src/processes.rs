//! Finding and killing the processes a test left behind, by what they point at in
//! `/proc/<pid>` (cwd, root, exe, cmdline).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;

/// How long [`kill_processes_using`] keeps killing and waiting.
const KILL_DEADLINE: Duration = Duration::from_secs(3);
const KILL_POLL: Duration = Duration::from_millis(20);

/// Whether `needle` occurs in `hay` (an empty needle always does).
pub(crate) fn contains_bytes(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

/// Pids of all processes (thread-group leaders) listed in `/proc`.
fn all_pids() -> Vec<i32> {
    let Ok(entries) = fs_err::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .collect()
}

/// `/proc/<pid>/cmdline`, empty for kernel threads, zombies and vanished processes.
fn cmdline(pid: i32) -> Vec<u8> {
    fs_err::read(format!("/proc/{pid}/cmdline")).unwrap_or_default()
}

/// Whether `pid` is a zombie (or gone): nothing left to kill.
fn is_dead(pid: i32) -> bool {
    match fs_err::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the last ')' (the command name may contain one).
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_none_or(|state| state == "Z" || state == "X"),
        Err(_) => true,
    }
}

/// Whether `pid`'s cwd, root or exe lies under `dir`, or its cmdline contains `dir`.
fn uses_dir(pid: i32, dir: &Path) -> bool {
    let under = |link: &str| {
        fs_err::read_link(format!("/proc/{pid}/{link}"))
            .is_ok_and(|target: PathBuf| target.starts_with(dir))
    };
    under("cwd")
        || under("root")
        || under("exe")
        || contains_bytes(&cmdline(pid), dir.as_os_str().as_encoded_bytes())
}

/// SIGKILLs `extra` and every other process that uses `dir` (see [`uses_dir`]), then
/// keeps sweeping (children may have forked meanwhile) and reaping our own children
/// until none is left or a few seconds passed. Best effort: errors are ignored.
pub(crate) fn kill_processes_using(dir: &Path, extra: &[i32]) {
    let me = std::process::id();
    let me = i32::try_from(me).expect("pids fit in i32 (pid_max is at most 2^22)");
    for &pid in extra {
        if pid > 0 && pid != me {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    let deadline = Instant::now() + KILL_DEADLINE;
    loop {
        for &pid in extra {
            // Reaps tracked pids that are our children; ECHILD for the others.
            let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
        }
        let targets: Vec<i32> = all_pids()
            .into_iter()
            .filter(|&pid| pid != me && uses_dir(pid, dir))
            .collect();
        let done = targets.is_empty() && extra.iter().all(|&pid| is_dead(pid));
        if done || Instant::now() >= deadline {
            return;
        }
        for pid in targets {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        std::thread::sleep(KILL_POLL);
    }
}

/// Processes whose cmdline contains `prefix`, excluding the current process, each as
/// `<pid> <cmdline>` (arguments joined by spaces): processes a test leaked. Used by
/// the leak sweep at the end of a CI run.
pub fn leaked_processes(prefix: &str) -> Vec<String> {
    let me = std::process::id();
    all_pids()
        .into_iter()
        .filter(|&pid| u32::try_from(pid).is_ok_and(|pid| pid != me))
        .filter_map(|pid| {
            let raw = cmdline(pid);
            if raw.is_empty() || !contains_bytes(&raw, prefix.as_bytes()) {
                return None;
            }
            let args: Vec<String> = raw
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            Some(format!("{pid} {}", args.join(" ")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contains_bytes_finds_substrings() {
        assert!(contains_bytes(b"runc --root /var/tmp/x/state", b"/var/tmp/x"));
        assert!(!contains_bytes(b"runc", b"/var/tmp/x"));
        assert!(contains_bytes(b"", b""));
    }

    #[test]
    fn leak_sweep_excludes_the_current_process() {
        let own = String::from_utf8_lossy(&cmdline(i32::try_from(std::process::id()).unwrap()))
            .split('\0')
            .next()
            .unwrap()
            .to_owned();
        let me = format!("{} ", std::process::id());
        assert!(leaked_processes(&own).iter().all(|p| !p.starts_with(&me)));
    }

    #[test]
    fn the_current_process_is_alive() {
        assert!(!is_dead(i32::try_from(std::process::id()).unwrap()));
    }
}
