//! End-to-end tests: the real `wharf` binary, as root, on busybox bundles.
#![allow(
    clippy::tests_outside_test_module,
    clippy::unwrap_used,
    reason = "an integration test crate is itself the test module; its helpers fail the test on error"
)]

mod cgroups;
mod containerd;
mod fs;
mod images;
mod init;
mod network;
mod pod;
mod run;
mod runtime_cli;
mod runtime_security;
mod seccomp;
mod system;
mod tty;
mod volume;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use wharf_testkit::{Bundle, BundleBuilder, TestEnv};

/// The runc-compatible command line over a test's own state root.
#[derive(Debug)]
pub struct Runtime<'a> {
    pub env: &'a TestEnv,
}

impl<'a> Runtime<'a> {
    pub fn new(env: &'a TestEnv) -> Self {
        Self { env }
    }

    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wharf"));
        cmd.arg("runtime").arg("--root").arg(self.env.root());
        cmd.stdin(Stdio::null());
        cmd
    }

    /// Runs a verb and returns its output. stdout and stderr go through
    /// files, not pipes: a container's init inherits them and outlives
    /// `create` (as with runc).
    pub fn output(&self, args: &[&str]) -> Output {
        let dir = tempfile::tempdir_in(self.env.path()).expect("output dir");
        let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
        let status = self
            .cmd()
            .args(args)
            .stdout(
                fs_err::File::create(&out_path)
                    .expect("stdout file")
                    .into_parts()
                    .0,
            )
            .stderr(
                fs_err::File::create(&err_path)
                    .expect("stderr file")
                    .into_parts()
                    .0,
            )
            .status()
            .expect("spawn wharf");
        Output {
            status,
            stdout: fs_err::read(&out_path).expect("read stdout"),
            stderr: fs_err::read(&err_path).expect("read stderr"),
        }
    }

    /// Runs a verb that must succeed; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.output(args);
        assert!(
            out.status.success(),
            "wharf runtime {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// Runs a verb that must fail; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.output(args);
        assert!(!out.status.success(), "wharf runtime {args:?} succeeded");
        String::from_utf8(out.stderr).expect("utf-8 output")
    }

    /// `run` in the foreground: (exit code, stdout, stderr).
    pub fn run(&self, bundle: &Bundle) -> (i32, String, String) {
        let id = self.env.name();
        let out = self.output(&["run", "--bundle", path_str(&bundle.dir), &id]);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Builds a bundle running `script` with `sh -c`, runs it, and requires
    /// success; returns stdout.
    pub fn sh(&self, builder: BundleBuilder, script: &str) -> String {
        let bundle = self
            .env
            .bundle(&self.env.name(), builder.args(&["sh", "-c", script]));
        let (code, out, err) = self.run(&bundle);
        assert_eq!(
            code, 0,
            "script {script:?} failed: stdout {out:?} stderr {err:?}"
        );
        out
    }

    /// The `state` JSON of a container.
    pub fn state(&self, id: &str) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["state", id])).expect("state is JSON")
    }

    /// Creates a container from `bundle`, returns its id.
    pub fn create(&self, bundle: &Bundle) -> String {
        let id = self.env.name();
        self.ok(&["create", "--bundle", path_str(&bundle.dir), &id]);
        let pid = self.state(&id)["pid"].as_i64().expect("pid") as i32;
        self.env.track_pid(pid);
        id
    }
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Polls `cond` for up to 5 s.
pub fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..500 {
        if cond() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    false
}

/// A statically linked `wharf-init`, as scripts/install.sh installs it, for
/// `--init-path`: the test build of the binaries is dynamic and would not
/// run in a busybox image. `cargo rustc` passes `crt-static` to the final
/// link only, reusing the built dependencies (under a second). The result
/// is copied aside once per test process.
pub fn static_init() -> std::path::PathBuf {
    static PATH: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        // One build at a time across test processes; the later ones find
        // it done and only relink-check (well under a second).
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
        let lock = fs_err::File::create(dir.join("wharf-init-static.lock")).expect("lock file");
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).expect("lock");
        let manifest = env!("CARGO_MANIFEST_DIR");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(cargo)
            .args([
                "rustc",
                "-q",
                "--offline",
                "-p",
                "wharf",
                "--bin",
                "wharf-init",
                "--",
                "-C",
                "target-feature=+crt-static",
            ])
            .current_dir(manifest)
            .output()
            .expect("run cargo rustc");
        assert!(
            out.status.success(),
            "static wharf-init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let built = std::path::Path::new(env!("CARGO_BIN_EXE_wharf-init"));
        let copy = dir.join("wharf-init-static");
        let tmp = dir.join(format!("wharf-init-static.{}", std::process::id()));
        fs_err::copy(built, &tmp).expect("copy wharf-init");
        fs_err::rename(&tmp, &copy).expect("rename wharf-init");
        copy
    })
    .clone()
}

/// The `wharf` engine command line over a test's own root: each call is
/// its own process, stdin on /dev/null. The per-area helpers build on it.
#[derive(Debug)]
pub struct Cli {
    pub root: std::path::PathBuf,
}

impl Cli {
    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wharf"));
        cmd.arg("--root").arg(&self.root).stdin(Stdio::null());
        cmd
    }

    /// (exit code, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.cmd().args(args).output().expect("spawn wharf");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs a command that must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(code, 0, "wharf {args:?}: stdout {out:?} stderr {err:?}");
        out
    }
}
