//! Finding and killing the processes a test left behind, by what they point at in
//! `/proc/<pid>` (cwd, root, exe, cmdline).

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt as _;
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

/// Field `n` (0 = state, 1 = ppid) of `/proc/<pid>/stat` after the command name.
fn stat_field(pid: i32, n: usize) -> Option<String> {
    let stat = fs_err::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields follow the last ')' (the command name may contain one).
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(n).map(str::to_owned)
}

/// Whether `pid` is a zombie (or gone): nothing left to kill.
fn is_dead(pid: i32) -> bool {
    stat_field(pid, 0).is_none_or(|state| state == "Z" || state == "X")
}

/// `roots` and all their descendants. Collected before killing: once a parent
/// dies its children are reparented and no longer point at it.
fn with_descendants(roots: &[i32]) -> BTreeSet<i32> {
    let parents: Vec<(i32, i32)> = all_pids()
        .into_iter()
        .filter_map(|pid| Some((pid, stat_field(pid, 1)?.parse().ok()?)))
        .collect();
    let mut family: BTreeSet<i32> = roots.iter().copied().collect();
    loop {
        let before = family.len();
        for (pid, parent) in &parents {
            if family.contains(parent) {
                family.insert(*pid);
            }
        }
        if family.len() == before {
            return family;
        }
    }
}

/// Inode identities `(dev, ino)` of each bundle's rootfs and its busybox under
/// `dir/bundles`. A process that pivot_root'ed into a rootfs in its own mount
/// namespace shows a root path the host cannot resolve, but stat-ing its
/// `/proc/<pid>/root` (or `exe`) still yields the rootfs's (or busybox's) inode.
fn rootfs_identities(dir: &Path) -> BTreeSet<(u64, u64)> {
    let Ok(bundles) = fs_err::read_dir(dir.join("bundles")) else {
        return BTreeSet::new();
    };
    bundles
        .filter_map(Result::ok)
        .flat_map(|b| {
            let rootfs = b.path().join("rootfs");
            [rootfs.join("bin/busybox"), rootfs]
        })
        .filter_map(|p| fs_err::metadata(p).ok())
        .map(|m| (m.dev(), m.ino()))
        .collect()
}

/// Whether `pid`'s cwd, root or exe lies under `dir` (by path, or by inode for a
/// bundle's rootfs, see [`rootfs_identities`]), or its cmdline contains `dir`.
fn uses_dir(pid: i32, dir: &Path, identities: &BTreeSet<(u64, u64)>) -> bool {
    let under = |link: &str| {
        let link = format!("/proc/{pid}/{link}");
        fs_err::read_link(&link).is_ok_and(|target: PathBuf| target.starts_with(dir))
            || fs_err::metadata(&link).is_ok_and(|m| identities.contains(&(m.dev(), m.ino())))
    };
    under("cwd")
        || under("root")
        || under("exe")
        || contains_bytes(&cmdline(pid), dir.as_os_str().as_encoded_bytes())
}

/// SIGKILLs `extra` and every other process that uses `dir` (see [`uses_dir`]), with
/// all their descendants, then keeps sweeping (a process may have forked meanwhile)
/// and reaping our own children until none is left or a few seconds passed. Best
/// effort: errors are ignored.
pub(crate) fn kill_processes_using(dir: &Path, extra: &[i32]) {
    let me = std::process::id();
    let me = i32::try_from(me).expect("pids fit in i32 (pid_max is at most 2^22)");
    let tracked: Vec<i32> = extra
        .iter()
        .copied()
        .filter(|&pid| pid > 0 && pid != me)
        .collect();
    let deadline = Instant::now() + KILL_DEADLINE;
    let mut first = true;
    loop {
        let identities = rootfs_identities(dir);
        let mut roots: Vec<i32> = all_pids()
            .into_iter()
            .filter(|&pid| pid != me && uses_dir(pid, dir, &identities))
            .collect();
        if first {
            // Tracked pids are killed once: later their number may be reused.
            roots.extend(&tracked);
            first = false;
        }
        let targets: Vec<i32> = with_descendants(&roots)
            .into_iter()
            .filter(|&pid| pid != me && !is_dead(pid))
            .collect();
        for &pid in &targets {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        for &pid in &tracked {
            // Reaps tracked pids that are our children; ECHILD for the others.
            let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
        }
        let done = targets.is_empty() && tracked.iter().all(|&pid| is_dead(pid));
        if done || Instant::now() >= deadline {
            return;
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
        assert!(contains_bytes(
            b"runc --root /var/tmp/x/state",
            b"/var/tmp/x"
        ));
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
    fn descendants_include_children() {
        let me = i32::try_from(std::process::id()).unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let family = with_descendants(&[me]);
        let _ = child.kill();
        let _ = child.wait();
        assert!(family.contains(&me));
        assert!(family.contains(&i32::try_from(child.id()).unwrap()));
    }

    #[test]
    fn the_current_process_is_alive() {
        assert!(!is_dead(i32::try_from(std::process::id()).unwrap()));
    }
}
