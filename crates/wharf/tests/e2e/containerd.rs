//! containerd drives Wharf as its runc binary (`ctr run --runc-binary`):
//! run, exec and kill through the real io.containerd.runc.v2 shim.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use wharf_testkit::{require, BundleBuilder, TestEnv};

use crate::{eventually, path_str};

/// A private containerd: its own root, state and socket under the test dir.
struct Containerd {
    daemon: Child,
    socket: String,
    namespace: String,
}

impl Containerd {
    fn start(env: &TestEnv) -> Containerd {
        let dir = env.path().join("ctrd");
        fs_err::create_dir(&dir).unwrap();
        let socket = dir.join("containerd.sock");
        let config = format!(
            "version = 2\nroot = \"{0}/root\"\nstate = \"{0}/state\"\n[grpc]\n  address = \"{1}\"\n\
             [plugins.\"io.containerd.grpc.v1.cri\"]\n  disable_tcp_service = true\n",
            dir.display(),
            socket.display()
        );
        fs_err::write(dir.join("config.toml"), config).unwrap();
        let log = fs_err::File::create(dir.join("containerd.log")).unwrap();
        let daemon = Command::new("containerd")
            .arg("--config")
            .arg(dir.join("config.toml"))
            .stdout(Stdio::null())
            .stderr(log.into_parts().0)
            .spawn()
            .unwrap();
        env.track_pid(daemon.id() as i32);
        let ctrd = Containerd {
            daemon,
            socket: socket.to_string_lossy().into_owned(),
            namespace: env.name(),
        };
        assert!(
            eventually(|| ctrd.ctr(&["version"]).status.success()),
            "containerd did not start"
        );
        ctrd
    }

    fn ctr(&self, args: &[&str]) -> std::process::Output {
        Command::new("ctr")
            .args(["--address", &self.socket, "--namespace", &self.namespace])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.ctr(args);
        assert!(
            out.status.success(),
            "ctr {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
        // The shim keeps runc state under containerd's fixed runc root.
        let _ = fs_err::remove_dir_all(Path::new("/run/containerd/runc").join(&self.namespace));
        // containerd puts containers at cgroupsPath /<namespace>/<id>: the
        // runtime removes each container's cgroup, the namespace's parent
        // stays (as with runc) until removed here.
        if let Ok(hierarchies) = fs_err::read_dir("/sys/fs/cgroup") {
            for h in hierarchies.flatten() {
                let _ = fs_err::remove_dir(h.path().join(&self.namespace));
            }
        }
    }
}

#[test]
fn containerd_runs_execs_and_kills_with_wharf_as_runc() {
    require!(Root, Busybox, Containerd);
    let env = TestEnv::new();
    let bundle = env.bundle("ctrd", BundleBuilder::new());
    let runc = env.path().join("wharf-runc");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_wharf"), &runc).unwrap();
    let ctrd = Containerd::start(&env);
    let rootfs = path_str(&bundle.rootfs);
    let runc = path_str(&runc);

    let out = ctrd.ok(&[
        "run",
        "--rm",
        "--runc-binary",
        runc,
        "--rootfs",
        rootfs,
        "once",
        "sh",
        "-c",
        "echo pid $$; id -u",
    ]);
    assert_eq!(out, "pid 1\n0\n");

    ctrd.ok(&[
        "run",
        "-d",
        "--runc-binary",
        runc,
        "--rootfs",
        rootfs,
        "bg",
        "sleep",
        "1000",
    ]);
    let out = ctrd.ok(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        "bg",
        "sh",
        "-c",
        "tr '\\0' ' ' < /proc/1/cmdline",
    ]);
    assert_eq!(out, "sleep 1000 ");
    assert!(ctrd.ok(&["task", "ls"]).contains("RUNNING"));
    ctrd.ok(&["task", "kill", "--signal", "SIGKILL", "bg"]);
    assert!(eventually(|| ctrd.ok(&["task", "ls"]).contains("STOPPED")));
    ctrd.ok(&["task", "rm", "bg"]);
    ctrd.ok(&["container", "rm", "bg"]);
    assert!(!ctrd.ok(&["container", "ls", "-q"]).contains("bg"));
}
