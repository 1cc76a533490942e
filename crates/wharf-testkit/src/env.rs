//! Per-test environments: a private directory with a state root and bundles, unique
//! container names, and a `Drop` that kills, unmounts and removes what the test left.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use anyhow::Context as _;

use crate::bundle::{Bundle, BundleBuilder};

/// Where environments live: on disk, not on a tmpfs `/tmp` (overlay upper dirs,
/// xattrs and rename semantics differ there).
const BASE: &str = "/var/tmp";

/// Makes names unique within the process; the pid makes them unique across
/// concurrently running test binaries.
static NAME_COUNTER: AtomicU64 = AtomicU64::new(0);

/// One test's private environment.
///
/// [`TestEnv::new`] creates `/var/tmp/wharf-test-wt<pid>-XXXXXX/` (mode 0755, so
/// that id-mapped container processes can reach the bundles) with `state/` (the
/// runtime's `--root`) and `bundles/`. Dropping it, best effort and ignoring errors:
/// SIGKILLs every process registered with [`TestEnv::track_pid`] and every process
/// whose cwd, root or executable lies under the directory (by path, or by inode for
/// a bundle's rootfs and its busybox, which catches pivot_root'ed containers) or
/// whose command line names it, with all their descendants, reaping tracked
/// children and waiting a few seconds at most for the rest;
/// lazily unmounts every mount under the directory, deepest first; removes the
/// directory. With `WHARF_TEST_KEEP=1`, a test that is panicking keeps its files
/// (processes and mounts are still cleaned) and prints where they are.
#[derive(Debug)]
pub struct TestEnv {
    dir: PathBuf,
    tracked: Mutex<Vec<i32>>,
}

impl Default for TestEnv {
    fn default() -> Self {
        Self::new()
    }
}

impl TestEnv {
    /// Creates the environment.
    ///
    /// # Panics
    ///
    /// When the directories cannot be created (this is test code: the test fails
    /// with the reason).
    pub fn new() -> TestEnv {
        Self::try_new().unwrap_or_else(|e| panic!("create a test environment in {BASE}: {e:#}"))
    }

    fn try_new() -> anyhow::Result<TestEnv> {
        fs_err::create_dir_all(BASE)?;
        let prefix = format!("wharf-test-wt{}-", std::process::id());
        let dir = tempfile::Builder::new()
            .prefix(&prefix)
            .tempdir_in(BASE)
            .with_context(|| format!("create {prefix}XXXXXX"))?
            // Removal is ours: processes and mounts go first.
            .keep();
        let env = TestEnv {
            dir: fs_err::canonicalize(&dir)?,
            tracked: Mutex::new(Vec::new()),
        };
        fs_err::set_permissions(&env.dir, std::fs::Permissions::from_mode(0o755))?;
        for sub in ["state", "bundles"] {
            let path = env.dir.join(sub);
            fs_err::create_dir(&path)?;
            fs_err::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        }
        Ok(env)
    }

    /// The environment's directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The state root for the runtime or engine under test (`--root`), `<dir>/state`.
    pub fn root(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// Builds `builder` into the bundle `<dir>/bundles/<name>`.
    ///
    /// # Panics
    ///
    /// When the bundle cannot be built (the message carries the error chain).
    pub fn bundle(&self, name: &str, builder: BundleBuilder) -> Bundle {
        let dir = self.dir.join("bundles").join(name);
        builder
            .build(&dir)
            .unwrap_or_else(|e| panic!("build bundle {}: {e:#}", dir.display()))
    }

    /// A fresh name for a container (or any named object): `wt<pid>x<n>`, unique
    /// across the processes running at the same time.
    pub fn name(&self) -> String {
        let n = NAME_COUNTER.fetch_add(1, Ordering::Relaxed);
        format!("wt{}x{n}", std::process::id())
    }

    /// Registers `pid` to be SIGKILLed (and reaped, if it is our child) on drop.
    pub fn track_pid(&self, pid: i32) {
        self.tracked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(pid);
    }
}

impl Drop for TestEnv {
    #[allow(
        clippy::print_stderr,
        reason = "a test's Drop has no caller to report to; the person running it needs the path"
    )]
    fn drop(&mut self) {
        let tracked = self
            .tracked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        crate::processes::kill_processes_using(&self.dir, &tracked);
        crate::mounts::detach_mounts_under(&self.dir);

        let keep = std::env::var_os("WHARF_TEST_KEEP").is_some_and(|v| v == "1");
        if keep && std::thread::panicking() {
            eprintln!(
                "WHARF_TEST_KEEP=1: kept the failed test's environment at {}",
                self.dir.display()
            );
            return;
        }
        if let Err(e) = remove_tree(&self.dir) {
            eprintln!("warning: remove test environment: {e:#}");
        }
    }
}

/// Removes `dir`, first as is, then after making every directory in it writable
/// (a test may leave read-only directories, which stop a non-root owner).
pub(crate) fn remove_tree(dir: &Path) -> anyhow::Result<()> {
    if fs_err::remove_dir_all(dir).is_ok() || !dir.exists() {
        return Ok(());
    }
    make_dirs_writable(dir);
    fs_err::remove_dir_all(dir)?;
    Ok(())
}

fn make_dirs_writable(dir: &Path) {
    let _ = fs_err::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    let Ok(entries) = fs_err::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            make_dirs_writable(&entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_prefixed() {
        let env = TestEnv::new();
        let first = env.name();
        let second = env.name();
        let prefix = format!("wt{}x", std::process::id());
        assert!(first.starts_with(&prefix), "{first}");
        assert_ne!(first, second);
    }

    #[test]
    fn layout_and_removal() {
        let env = TestEnv::new();
        let dir = env.path().to_owned();
        assert!(dir.starts_with(BASE));
        assert!(dir
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with(&format!("wharf-test-wt{}-", std::process::id())));
        assert!(env.root().is_dir());
        assert!(dir.join("bundles").is_dir());
        fs_err::create_dir_all(dir.join("ro/inner")).unwrap();
        fs_err::set_permissions(dir.join("ro"), std::fs::Permissions::from_mode(0o555)).unwrap();
        drop(env);
        assert!(!dir.exists());
    }
}
