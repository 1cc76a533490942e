//! podman and skopeo, the reference tools, run so they leave the host alone:
//! even with `--root` they write host paths (`/var/lib/containers/cache`'s
//! blob-info cache, `/run/libpod`, `/run/containers`,
//! `/etc/containers/networks`). Each run gets a private mount namespace with
//! tmpfs over `/run` and `/var/lib/containers` (or `/var/lib` where that does
//! not exist), and podman's roots, tmpdir and network config in a scratch dir.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{ensure, Context};

/// Wraps `program` so it runs with the host's container-tool state paths
/// hidden under tmpfs (see the module docs). Add its arguments to the
/// returned command.
pub fn isolated(program: &str) -> Command {
    const SCRIPT: &str = "mount -t tmpfs wharf-test /run && \
        if [ -d /var/lib/containers ]; then mount -t tmpfs wharf-test /var/lib/containers; \
        else mount -t tmpfs wharf-test /var/lib; fi && exec \"$@\"";
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        SCRIPT,
        "sh",
        program,
    ]);
    cmd.stdin(Stdio::null());
    cmd
}

/// A podman with its own store in a scratch directory, isolated from the
/// host's podman state.
#[derive(Debug)]
pub struct Podman {
    dir: tempfile::TempDir,
}

impl Podman {
    /// A fresh podman store.
    ///
    /// # Panics
    ///
    /// The scratch directory cannot be made (a test fixture).
    pub fn new() -> Podman {
        let dir = tempfile::tempdir().expect("podman scratch dir");
        fs_err::create_dir(dir.path().join("vartmp")).expect("podman tmpdir");
        Podman { dir }
    }

    /// A path in the scratch directory.
    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// The podman command with the store flags; add the subcommand.
    pub fn command(&self) -> Command {
        let d = self.dir.path();
        let mut cmd = isolated("podman");
        cmd.arg("--root")
            .arg(d.join("root"))
            .arg("--runroot")
            .arg(d.join("runroot"))
            .arg("--tmpdir")
            .arg(d.join("tmp"))
            .arg("--network-config-dir")
            .arg(d.join("net"))
            .args([
                "--storage-driver",
                "vfs",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "none",
            ])
            .env("TMPDIR", d.join("vartmp"));
        cmd
    }

    /// Runs `podman ARGS`; its stdout.
    ///
    /// # Errors
    ///
    /// podman fails; its stderr is in the error.
    pub fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.command().args(args).output().context("run podman")?;
        ensure!(
            out.status.success(),
            "podman {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The scratch directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Default for Podman {
    fn default() -> Self {
        Self::new()
    }
}
