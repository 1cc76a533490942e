//! Seccomp: OCI profiles, the default profile, and SCMP_ACT_NOTIFY.

use std::os::fd::AsFd;
use std::os::unix::net::UnixListener;

use oci_spec::runtime::{LinuxSeccomp, Spec};
use wharf_testkit::{require, BundleBuilder, TestEnv};

use crate::{eventually, Runtime};

fn with_seccomp(s: &mut Spec, profile: LinuxSeccomp) {
    let mut linux = s.linux().clone().unwrap();
    linux.set_seccomp(Some(profile));
    s.set_linux(Some(linux));
}

fn profile(json: serde_json::Value) -> LinuxSeccomp {
    serde_json::from_value(json).unwrap()
}

fn deny_mkdir() -> LinuxSeccomp {
    profile(serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
    }))
}

fn bounding_caps(s: &Spec) -> Vec<String> {
    s.process()
        .as_ref()
        .and_then(|p| p.capabilities().as_ref())
        .and_then(|c| c.bounding().as_ref())
        .map(|b| b.iter().map(|c| format!("CAP_{c}")).collect())
        .unwrap_or_default()
}

#[test]
fn errno_rule_denies_mkdir_and_allows_the_rest() {
    require!(Root, Busybox);
    let env = TestEnv::new();
    let rt = Runtime::new(&env);
    let builder = BundleBuilder::new()
        .readonly_root(false)
        .spec_mut(|s| with_seccomp(s, deny_mkdir()));
    let out = rt.sh(
        builder,
        "echo ok; touch /tmp/file && echo touched; mkdir /tmp/x 2>&1; echo rc=$?; \
         grep Seccomp: /proc/self/status",
    );
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("ok"));
    assert_eq!(lines.next(), Some("touched"));
    let mkdir = lines.next().unwrap();
    assert!(mkdir.contains("Operation not permitted"), "{out}");
    assert_eq!(lines.next(), Some("rc=1"));
    // 2: SECCOMP_MODE_FILTER.
    let mode: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(mode, ["Seccomp:", "2"], "{out}");
}

#[test]
fn personality_argument_filter() {
    require!(Root, Busybox);
    let env = TestEnv::new();
    let rt = Runtime::new(&env);
    // PER_LINUX32 (8) is refused, PER_LINUX (0) is allowed.
    let p = profile(serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                      "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}]
    }));
    let builder = BundleBuilder::new().spec_mut(|s| with_seccomp(s, p));
    let out = rt.sh(
        builder,
        "linux64 true && echo linux64-ok; linux32 true 2>/dev/null; echo linux32=$?",
    );
    assert_eq!(out, "linux64-ok\nlinux32=1\n");
}

#[test]
fn default_profile_blocks_user_namespaces_without_cap_sys_admin() {
    require!(Root, Busybox);
    let env = TestEnv::new();
    let rt = Runtime::new(&env);
    let builder = BundleBuilder::new().readonly_root(false);
    let caps = bounding_caps(builder.spec());
    assert!(!caps.iter().any(|c| c == "CAP_SYS_ADMIN"), "{caps:?}");
    let builder = builder.spec_mut(|s| with_seccomp(s, wharf_runtime::default_seccomp(&caps)));
    let out = rt.sh(
        builder,
        "/bin/busybox --list | grep -qx unshare || echo no-unshare-applet; \
         unshare -U true 2>&1; echo unshare=$?; \
         mkdir -p /tmp/a/b && echo hi > /tmp/a/b/f && cat /tmp/a/b/f; ls /tmp/a; \
         (sleep 0; echo subshell) | cat; grep Seccomp: /proc/self/status",
    );
    assert!(!out.contains("no-unshare-applet"), "{out}");
    let mut lines = out.lines();
    assert!(
        lines.next().unwrap().contains("Operation not permitted"),
        "{out}"
    );
    assert_eq!(lines.next(), Some("unshare=1"), "{out}");
    assert_eq!(lines.next(), Some("hi"), "{out}");
    assert_eq!(lines.next(), Some("b"), "{out}");
    assert_eq!(lines.next(), Some("subshell"), "{out}");
    let mode: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(mode, ["Seccomp:", "2"], "{out}");
}

#[test]
fn non_root_user_without_no_new_privileges_gets_the_filter() {
    require!(Root, Busybox);
    let env = TestEnv::new();
    let rt = Runtime::new(&env);
    let builder = BundleBuilder::new()
        .user(1000, 1000)
        .no_new_privileges(false)
        .spec_mut(|s| with_seccomp(s, deny_mkdir()));
    let out = rt.sh(
        builder,
        "id -u; grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status; mkdir /tmp/x 2>&1; echo rc=$?",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "1000", "{out}");
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["NoNewPrivs:", "0"],
        "{out}"
    );
    assert_eq!(
        lines[2].split_whitespace().collect::<Vec<_>>(),
        ["Seccomp:", "2"],
        "{out}"
    );
    // EPERM from the filter, not EROFS from the read-only root.
    assert!(lines[3].contains("Operation not permitted"), "{out}");
    assert_eq!(lines[4], "rc=1");
}

#[test]
fn notify_rule_reaches_the_listener() {
    require!(Root, Busybox);
    let env = TestEnv::new();
    let rt = Runtime::new(&env);
    let socket = env.path().join("seccomp.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let p = profile(serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": socket,
        "listenerMetadata": "wharf-test-metadata",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]
    }));
    let builder = BundleBuilder::new().readonly_root(false).args(&[
        "sh",
        "-c",
        "mkdir /tmp/n 2>/tmp/err; echo $? >/tmp/rc",
    ]);
    let bundle = env.bundle("notify", builder.spec_mut(|s| with_seccomp(s, p)));

    // The listener takes the fd and closes everything: pending and later
    // notified calls then fail with ENOSYS instead of waiting.
    let receiver = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let (fd, n) = wharf_sys::console::recv_fd(conn.as_fd(), &mut buf).unwrap();
        drop(fd);
        serde_json::from_slice::<serde_json::Value>(&buf[..n]).unwrap()
    });
    let id = rt.create(&bundle);
    let doc = receiver.join().unwrap();
    let state = rt.state(&id);
    assert_eq!(doc["fds"], serde_json::json!(["seccompFd"]), "{doc}");
    assert_eq!(doc["pid"], state["pid"], "{doc}");
    assert_eq!(doc["metadata"], "wharf-test-metadata", "{doc}");
    assert_eq!(doc["state"]["id"], id.as_str(), "{doc}");
    assert_eq!(doc["state"]["pid"], state["pid"], "{doc}");
    assert_eq!(doc["state"]["status"], "creating", "{doc}");
    assert_eq!(doc["state"]["bundle"], state["bundle"], "{doc}");

    rt.ok(&["start", &id]);
    assert!(eventually(|| rt.state(&id)["status"] == "stopped"));
    rt.ok(&["delete", &id]);
    let rc = fs_err::read_to_string(bundle.rootfs.join("tmp/rc")).unwrap();
    let err = fs_err::read_to_string(bundle.rootfs.join("tmp/err")).unwrap();
    assert_eq!(rc.trim(), "1", "{err}");
    assert!(err.contains("Function not implemented"), "{err}");
    assert!(!bundle.rootfs.join("tmp/n").exists());
}

#[test]
fn exec_gets_the_container_filter() {
    require!(Root, Busybox);
    let env = TestEnv::new();
    let rt = Runtime::new(&env);
    let bundle = env.bundle(
        "exec",
        BundleBuilder::new()
            .readonly_root(false)
            .args(&["sleep", "1000"])
            .spec_mut(|s| with_seccomp(s, deny_mkdir())),
    );
    let id = rt.create(&bundle);
    rt.ok(&["start", &id]);
    let out = rt.ok(&[
        "exec",
        &id,
        "sh",
        "-c",
        "grep Seccomp: /proc/self/status; mkdir /tmp/x 2>&1; echo rc=$?",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["Seccomp:", "2"],
        "{out}"
    );
    assert!(lines[1].contains("Operation not permitted"), "{out}");
    assert_eq!(lines[2], "rc=1", "{out}");
    rt.ok(&["delete", "-f", &id]);
}
