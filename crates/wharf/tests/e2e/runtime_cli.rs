//! The runc-compatible lifecycle and every runtime feature, asserted from
//! inside the container.

use std::path::Path;

use oci_spec::runtime::{LinuxNamespaceBuilder, LinuxNamespaceType, MountBuilder};
use wharf_testkit::{require, BundleBuilder, TestEnv};

use crate::{eventually, path_str, Runtime};

fn busybox() -> BundleBuilder {
    BundleBuilder::new()
}

#[test]
fn run_is_isolated_hostname_pid1_own_mounts() {
    require!(Root, Busybox);
    let env = TestEnv::new();
    let rt = Runtime::new(&env);
    let out = rt.sh(
        busybox().hostname("isolated"),
        "hostname; echo $$; cat /proc/self/mountinfo",
    );
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("isolated"));
    assert_eq!(lines.next(), Some("1"));
    let mounts: Vec<&str> = lines.collect();
    // The container sees its own tree: / and what the config mounts, nothing
    // of the host (no /work, no /var/tmp).
    assert!(mounts.iter().any(|l| l.split(' ').nth(4) == Some("/")));
    assert!(mounts.iter().any(|l| l.split(' ').nth(4) == Some("/proc")));
    let points: Vec<&str> = mounts.iter().filter_map(|l| l.split(' ').nth(4)).collect();
    assert!(
        !points
            .iter()
            .any(|p| p.starts_with("/var/tmp") || p.starts_with("/work")),
        "{points:#?}"
    );
}

#[test]
fn create_start_state_kill_delete_lifecycle() {
    require!(Root, Busybox);
    let env = TestEnv::new();
    let rt = Runtime::new(&env);
    let out_dir = env.path().join("out");
    fs_err::create_dir(&out_dir).unwrap();
    let bundle = env.bundle(
        "life",
        busybox()
            .args(&["sh", "-c", "touch /out/started; exec sleep 1000"])
            .spec_mut(|s| bind_mount(s, &out_dir, "/out", false)),
    );
    let id = rt.create(&bundle);
    let state = rt.state(&id);
    assert_eq!(state["status"], "created");
    assert_eq!(state["id"], id.as_str());
    assert_eq!(state["bundle"], path_str(&bundle.dir));
    let pid = state["pid"].as_i64().unwrap();
    assert!(pid > 0);
    // The user process has not run before start.
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert!(!out_dir.join("started").exists());
    assert!(rt.fails(&["start", "nope"]).contains("does not exist"));

    rt.ok(&["start", &id]);
    assert!(eventually(|| out_dir.join("started").exists()));
    assert_eq!(rt.state(&id)["status"], "running");
    assert!(rt.fails(&["start", &id]).contains("it is running"));
    assert!(rt.fails(&["delete", &id]).contains("it is running"));
    let list = rt.ok(&["list", "--format", "json"]);
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["status"], "running");
    assert_eq!(rt.ok(&["list", "-q"]).trim(), id);
    let pids: Vec<i64> = serde_json::from_str(&rt.ok(&["ps", "--format", "json", &id])).unwrap();
    assert_eq!(pids, vec![pid]);

    rt.ok(&["kill", &id, "KILL"]);
    assert!(eventually(|| rt.state(&id)["status"] == "stopped"));
    assert_eq!(rt.state(&id)["pid"], 0);
    assert!(rt.fails(&["kill", &id, "9"]).contains("it is stopped"));
    rt.ok(&["delete", &id]);
    assert!(rt.fails(&["state", &id]).contains("does not exist"));
    assert!(!env.root().join(&id).exists());
}

#[test]
fn state_notices_an_init_that_died_unwatched() {
    require!(Root, Busybox);
    let env = TestEnv::new();
    let rt = Runtime::new(&env);
    let bundle = env.bundle("dies", busybox().args(&["sh", "-c", "exit 3"]));
    let id = rt.create(&bundle);
    rt.ok(&["start", &id]);
    assert!(eventually(|| rt.state(&id)["status"] == "stopped"));
    rt.ok(&["delete", &id]);
}

#[test]
fn kill_delivers_named_and_numbered_signals_to_init() {
    require!(Root, Busybox);
    let env = TestEnv::new();
    let rt = Runtime::new(&env);
    let out_dir = env.path().join("out");
    fs_err::create_dir(&out_dir).unwrap();
    let bundle = env.bundle(
        "trap",
        busybox()
            .args(&["sh", "-c", "trap 'echo usr1 >> /out/log' USR1; trap 'echo term >> /out/log; exit 0' TERM; touch /out/ready; while true; do sleep 0.05; done"])
            .spec_mut(|s| bind_mount(s, &out_dir, "/out", false)),
    );
    let id = rt.create(&bundle);
    rt.ok(&["start", &id]);
    assert!(eventually(|| out_dir.join("ready").exists()));
    rt.ok(&["kill", &id, "SIGUSR1"]);
    assert!(eventually(|| fs_err::read_to_string(out_dir.join("log"))
        .unwrap_or_default()
        == "usr1\n"));
    rt.ok(&["kill", &id, "15"]);
    assert!(eventually(|| rt.state(&id)["status"] == "stopped"));
    assert_eq!(
        fs_err::read_to_string(out_dir.join("log")).unwrap(),
        "usr1\nterm\n"
    );
    assert!(rt
        .fails(&["kill", &id, "SIGBOGUS"])
        .contains("unknown signal"));
    rt.ok(&["delete", &id]);
}

#[test]
fn delete_force_kills_a_running_container_and_a_created_one_without_force() {
    require!(Root, Busybox);
    let env = TestEnv::new();
    let rt = Runtime::new(&env);
    let bundle = env.bundle("sleep", busybox().args(&["sleep", "1000"]));
    let running = rt.create(&bundle);
    rt.ok(&["start", &running]);
    let pid = rt.state(&running)["pid"].as_i64().unwrap();
    rt.ok(&["delete", "--force", &running]);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists()
            || fs_err::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z")
    );
    let created = rt.create(&bundle);
    rt.ok(&["delete", &created]);
    assert!(rt.fails(&["state", &created]).contains("does not exist"));
    // runc: --force on a missing container succeeds.
    rt.ok(&["delete", "--force", "missing"]);
}

/// A container in another's pid namespace is not its namespace's init:
/// killing its init leaves its other processes, which `delete --force`
/// kills too (they are in its cgroup), without waiting out the cgroup's
/// removal; the other container keeps running. The engine removes a
/// container with nothing but `delete --force`.
#[test]
fn delete_force_kills_every_process_of_a_container_in_a_joined_pid_namespace() {
    require!(Root, Busybox);
    let env = TestEnv::new();
    let rt = Runtime::new(&env);
    let owner = rt.create(&env.bundle("owner", busybox().args(&["sleep", "1000"])));
    rt.ok(&["start", &owner]);
    let owner_pid = rt.state(&owner)["pid"].as_i64().unwrap();
    let joiner = busybox()
        .args(&["sh", "-c", "sleep 1000 & sleep 1000 & exec sleep 1000"])
        .spec_mut(|s| {
            let linux = s.linux_mut().as_mut().unwrap();
            let mut ns = linux.namespaces().clone().unwrap();
            ns.retain(|n| n.typ() != LinuxNamespaceType::Pid);
            ns.push(
                LinuxNamespaceBuilder::default()
                    .typ(LinuxNamespaceType::Pid)
                    .path(format!("/proc/{owner_pid}/ns/pid"))
                    .build()
                    .unwrap(),
            );
            linux.set_namespaces(Some(ns));
        });
    let joiner = rt.create(&env.bundle("joiner", joiner));
    rt.ok(&["start", &joiner]);
    let procs = || {
        let out = rt.ok(&["ps", "--format", "json", &joiner]);
        serde_json::from_str::<Vec<i64>>(&out).unwrap()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while procs().len() < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let pids = procs();
    assert_eq!(pids.len(), 3, "{pids:?}");
    let started = std::time::Instant::now();
    rt.ok(&["delete", "--force", &joiner]);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "delete waited for a cgroup that still had processes"
    );
    assert!(
        cgroup_dirs(&joiner).is_empty(),
        "{:?}",
        cgroup_dirs(&joiner)
    );
    for pid in pids {
        let stat = fs_err::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(
            stat.is_empty() || stat.contains(") Z"),
            "{pid} survived: {stat}"
        );
    }
    assert_eq!(rt.state(&owner)["status"], "running");
    rt.ok(&["delete", "--force", &owner]);
}

#[test]
fn run_returns_the_exit_status_and_128_plus_signal() {
    require!(Root, Busybox);
    let env = TestEnv::new();
    let rt = Runtime::new(&env);
    let b = env.bundle("exit", busybox().args(&["sh", "-c", "exit 42"]));
    assert_eq!(rt.run(&b).0, 42);
    // The init of a pid namespace ignores signals sent from inside it: kill
    // it from the host while `run` waits.
    let b = env.bundle("sig", busybox().args(&["sleep", "1000"]));
    let id = env.name();
    let mut run = rt
        .cmd()
        .args(["run", "--bundle", path_str(&b.dir), &id])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(eventually(
        || rt.output(&["state", &id]).status.success() && rt.state(&id)["status"] == "running"
    ));
    rt.ok(&["kill", &id, "KILL"]);
    assert_eq!(run.wait().unwrap().code(), Some(137));
    assert!(
        rt.ok(&["list", "-q"]).is_empty(),
        "run deletes the container"
    );
}

#[test]
fn run_detach_and_pid_file() {
    require!(Root, Busybox);
    let env = TestEnv::new();
    let rt = Runtime::new(&env);
    let bundle = env.bundle("d", busybox().args(&["sleep", "1000"]));
    let id = env.name();
    let pid_file = env.path().join("pid");
    rt.ok(&[
        "run",
        "-d",
        "--pid-file",
        path_str(&pid_file),
        "--bundle",
        path_str(&bundle.dir),
        &id,
    ]);
    let state = rt.state(&id);
    env.track_pid(state["pid"].as_i64().unwrap() as i32);
    assert_eq!(state["status"], "running");
    assert_eq!(
        fs_err::read_to_string(&pid_file).unwrap(),
        state["pid"].as_i64().unwrap().to_string()
    );
    rt.ok(&["delete", "-f", &id]);
}

#[test]
fn exec_joins_namespaces_with_user_env_cwd_and_status() {
    require!(Root, Busybox);
    let env = TestEnv::new();
    let rt = Runtime::new(&env);
    let bundle = env.bundle(
        "ex",
        busybox().hostname("exec-host").args(&["sleep", "1000"]),
    );
    let id = rt.create(&bundle);
    rt.ok(&["start", &id]);
    assert_eq!(rt.ok(&["exec", &id, "hostname"]), "exec-host\n");
    assert_eq!(
        rt.ok(&["exec", "--user", "1000:1000", &id, "id"]),
        "uid=1000(wharf) gid=1000(wharf)\n"
    );
    assert_eq!(rt.ok(&["exec", "-u", "1", &id, "id", "-u"]), "1\n");
    assert_eq!(
        rt.ok(&["exec", "-e", "FOO=bar", &id, "sh", "-c", "echo $FOO"]),
        "bar\n"
    );
    assert_eq!(rt.ok(&["exec", "--cwd", "/tmp", &id, "pwd"]), "/tmp\n");
    // Pid namespace: the init is 1, the exec'd process is not.
    assert_eq!(
        rt.ok(&["exec", &id, "cat", "/proc/1/cmdline"]),
        "sleep\u{0}1000\u{0}"
    );
    let out = rt.output(&["exec", &id, "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7));
    // The exec'd process is in the container's cgroup (it is moved there
    // while it sets up, before it runs).
    assert_eq!(
        rt.ok(&["exec", &id, "cat", "/proc/self/cgroup"]),
        rt.ok(&["exec", &id, "cat", "/proc/1/cgroup"])
    );
    assert!(rt
        .fails(&["exec", &id, "/no/such/binary"])
        .contains("/no/such/binary"));
    assert!(rt
        .fails(&["exec", &id, "nosuchcmd"])
        .contains("executable file not found in $PATH"));
    for bad in ["4294967296", "-1", "root", "1:x", "99999999999999999999"] {
        assert!(
            rt.fails(&["exec", "--user", bad, &id, "id"])
                .contains("--user"),
            "{bad}"
        );
    }
    // --process JSON.
    let process = serde_json::json!({
        "args": ["sh", "-c", "echo $A; id -u"], "env": ["A=from-json"], "cwd": "/", "user": {"uid": 2, "gid": 2}
    });
    let path = env.path().join("process.json");
    fs_err::write(&path, process.to_string()).unwrap();
    assert_eq!(
        rt.ok(&["exec", "--process", path_str(&path), &id]),
        "from-json\n2\n"
    );
    // Extra capability for one exec only; inheritable/ambient stay empty.
    let caps = rt.ok(&[
        "exec",
        "--cap",
        "CAP_NET_ADMIN",
        &id,
        "grep",
        "^Cap",
        "/proc/self/status",
    ]);
    assert!(
        caps.contains("CapInh:\t0000000000000000") || caps.contains("CapInh:\t0000000000001000"),
        "{caps}"
    );
    assert!(caps.contains("CapAmb:\t0000000000000000"), "{caps}");
    let eff = caps.lines().find(|l| l.starts_with("CapEff")).unwrap();
    let eff = u64::from_str_radix(eff.split('\t').nth(1).unwrap(), 16).unwrap();
    assert_ne!(eff & (1 << 12), 0, "CAP_NET_ADMIN in effective: {caps}");
    rt.ok(&["delete", "-f", &id]);
    assert!(rt.fails(&["exec", &id, "true"]).contains("does not exist"));
}

#[test]
fn exec_detach_writes_pid_file() {
    require!(Root, Busybox);
    let env = TestEnv::new();
    let rt = Runtime::new(&env);
    let bundle = env.bundle("exd", busybox().args(&["sleep", "1000"]));
    let id = rt.create(&bundle);
    rt.ok(&["start", &id]);
    let pid_file = env.path().join("exec.pid");
    rt.ok(&[
        "exec",
        "-d",
        "--pid-file",
        path_str(&pid_file),
        &id,
        "sleep",
        "1000",
    ]);
    let pid: i32 = fs_err::read_to_string(&pid_file).unwrap().parse().unwrap();
    env.track_pid(pid);
    let pids: Vec<i32> = serde_json::from_str(&rt.ok(&["ps", "-f", "json", &id])).unwrap();
    assert!(pids.contains(&pid), "{pids:?} {pid}");
    rt.ok(&["delete", "-f", &id]);
}

#[test]
fn user_namespace_maps_ids() {
    require!(Root, Busybox, UserNs);
    let env = TestEnv::new();
    let rt = Runtime::new(&env);
    let out_dir = env.path().join("out");
    fs_err::create_dir(&out_dir).unwrap();
    fs_err::set_permissions(
        &out_dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let builder = busybox()
        .with_user_namespace(200_000, 65_536)
        .spec_mut(|s| bind_mount(s, &out_dir, "/out", false));
    // The rootfs belongs to the host's root, unmapped in the container: the
    // mount point must exist already (as with runc).
    let bundle = env.bundle(
        "userns",
        builder.args(&[
            "sh",
            "-c",
            "cat /proc/self/uid_map /proc/self/gid_map; id -u; touch /out/f",
        ]),
    );
    fs_err::create_dir(bundle.rootfs.join("out")).unwrap();
    let (code, out, err) = rt.run(&bundle);
    assert_eq!(code, 0, "{err}");
    let fields: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(fields[0], vec!["0", "200000", "65536"]);
    assert_eq!(fields[1], vec!["0", "200000", "65536"]);
    assert_eq!(fields[2], vec!["0"]);
    let meta = fs_err::metadata(out_dir.join("f")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), 200_000);
}

#[test]
fn namespaces_joined_by_path() {
    require!(Root, Busybox);
    let env = TestEnv::new();
    let rt = Runtime::new(&env);
    let a = env.bundle(
        "a",
        busybox().hostname("shared-uts").args(&["sleep", "1000"]),
    );
    let a_id = rt.create(&a);
    rt.ok(&["start", &a_id]);
    let a_pid = rt.state(&a_id)["pid"].as_i64().unwrap();
    let b = busybox().spec_mut(|s| {
        let linux = s.linux_mut().as_mut().unwrap();
        let mut ns = linux.namespaces().clone().unwrap();
        ns.retain(|n| n.typ() != LinuxNamespaceType::Uts && n.typ() != LinuxNamespaceType::Network);
        for (typ, name) in [
            (LinuxNamespaceType::Uts, "uts"),
            (LinuxNamespaceType::Network, "net"),
        ] {
            ns.push(
                LinuxNamespaceBuilder::default()
                    .typ(typ)
                    .path(format!("/proc/{a_pid}/ns/{name}"))
                    .build()
                    .unwrap(),
            );
        }
        linux.set_namespaces(Some(ns));
        s.set_hostname(None);
    });
    let out = rt.sh(b, "hostname; readlink /proc/self/ns/net; echo $$");
    let host_view = fs_err::read_link(format!("/proc/{a_pid}/ns/net")).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "shared-uts");
    assert_eq!(lines[1], host_view.to_str().unwrap());
    assert_eq!(lines[2], "1", "a new pid namespace still (two-stage path)");
    rt.ok(&["delete", "-f", &a_id]);
}

#[test]
fn mounts_bind_tmpfs_and_options_apply() {
    require!(Root, Busybox);
    let env = TestEnv::new();
    let rt = Runtime::new(&env);
    let data = env.path().join("data");
    fs_err::create_dir(&data).unwrap();
    fs_err::write(data.join("hello"), "world").unwrap();
    let builder = busybox().spec_mut(|s| {
        bind_mount(s, &data, "/ro-data", true);
        let mut mounts = s.mounts().clone().unwrap();
        mounts.push(
            MountBuilder::default()
                .destination("/scratch")
                .typ("tmpfs")
                .source("tmpfs")
                .options(vec![
                    "nosuid".into(),
                    "noexec".into(),
                    "size=1m".into(),
                    "mode=700".into(),
                ])
                .build()
                .unwrap(),
        );
        s.set_mounts(Some(mounts));
    });
    let out = rt.sh(
        builder,
        "cat /ro-data/hello; echo; touch /ro-data/x 2>/dev/null && echo writable || echo read-only; \
         grep ' /scratch ' /proc/self/mountinfo | cut -d' ' -f6; stat -c %a /scratch; \
         grep ' /scratch ' /proc/mounts | grep -o 'size=[0-9a-z]*'",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "world");
    assert_eq!(lines[1], "read-only");
    assert_eq!(lines[2], "rw,nosuid,noexec,relatime");
    assert_eq!(lines[3], "700");
    assert_eq!(lines[4], "size=1024k");
    assert!(!data.join("x").exists());
}

#[test]
fn masked_readonly_paths_and_readonly_root() {
    require!(Root, Busybox);
    let env = TestEnv::new();
    let rt = Runtime::new(&env);
    let builder = busybox().spec_mut(|s| {
        let linux = s.linux_mut().as_mut().unwrap();
        linux.set_masked_paths(Some(vec![
            "/proc/keys".into(),
            "/sys/firmware".into(),
            "/proc/does-not-exist".into(),
        ]));
        linux.set_readonly_paths(Some(vec!["/proc/sys".into()]));
    });
    let out = rt.sh(
        builder,
        "stat -c '%t:%T %F' /proc/keys; ls -A /sys/firmware | wc -l; \
         (echo 1 > /proc/sys/kernel/ns_last_pid) 2>/dev/null && echo sys-writable || echo sys-ro; \
         touch /newfile 2>/dev/null && echo root-writable || echo root-ro",
    );
    assert_eq!(out, "1:3 character special file\n0\nsys-ro\nroot-ro\n");
}

#[test]
fn default_devices_and_dev_symlinks() {
    require!(Root, Busybox);
    let env = TestEnv::new();
    let rt = Runtime::new(&env);
    let builder = busybox().spec_mut(|s| {
        let linux = s.linux_mut().as_mut().unwrap();
        let dev: oci_spec::runtime::LinuxDevice = serde_json::from_value(serde_json::json!({
            "path": "/dev/custom-null", "type": "c", "major": 1, "minor": 3, "fileMode": 432, "uid": 1000, "gid": 100
        }))
        .unwrap();
        linux.set_devices(Some(vec![dev]));
    });
    let out = rt.sh(
        builder,
        "for d in null zero full random urandom tty custom-null; do stat -c '%n %t:%T %a %u:%g' /dev/$d; done; \
         for l in fd stdin stdout stderr ptmx; do readlink /dev/$l; done",
    );
    assert_eq!(
        out,
        "/dev/null 1:3 666 0:0\n/dev/zero 1:5 666 0:0\n/dev/full 1:7 666 0:0\n/dev/random 1:8 666 0:0\n\
         /dev/urandom 1:9 666 0:0\n/dev/tty 5:0 666 0:0\n/dev/custom-null 1:3 660 1000:100\n\
         /proc/self/fd\n/proc/self/fd/0\n/proc/self/fd/1\n/proc/self/fd/2\npts/ptmx\n"
    );
}

#[test]
fn process_identity_caps_limits_and_privileges() {
    require!(Root, Busybox);
    let env = TestEnv::new();
    let rt = Runtime::new(&env);
    let builder = busybox().user(1000, 1000).spec_mut(|s| {
        let p = s.process_mut().as_mut().unwrap();
        let mut user = p.user().clone();
        user.set_additional_gids(Some(vec![100, 10]));
        user.set_umask(Some(0o027));
        p.set_user(user);
        p.set_oom_score_adj(Some(500));
        let rl: Vec<oci_spec::runtime::PosixRlimit> = serde_json::from_value(serde_json::json!([
            {"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1024},
            {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}
        ]))
        .unwrap();
        p.set_rlimits(Some(rl));
        p.set_env(Some(vec!["PATH=/bin".into()]));
    });
    let out = rt.sh(
        builder,
        "id; umask; ulimit -n; ulimit -Hn; ulimit -c; cat /proc/self/oom_score_adj; echo $HOME; grep -E '^(Cap|NoNewPrivs)' /proc/self/status",
    );
    assert_eq!(
        out,
        // A non-root user keeps no capabilities across execve (no ambient
        // set configured); the bounding set is the configured one.
        "uid=1000(wharf) gid=1000(wharf) groups=10(wheel),100(users)\n0027\n512\n1024\n0\n500\n/home/wharf\n\
         CapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\n\
         CapBnd:\t0000000020000420\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\n"
    );
    // Without no_new_privileges, as root: bounding set exactly as configured.
    let out = rt.sh(
        busybox().no_new_privileges(false),
        "grep -E '^(Cap|NoNewPrivs)' /proc/self/status",
    );
    assert_eq!(
        out,
        "CapInh:\t0000000000000000\nCapPrm:\t0000000020000420\nCapEff:\t0000000020000420\n\
         CapBnd:\t0000000020000420\nCapAmb:\t0000000000000000\nNoNewPrivs:\t0\n"
    );
}

#[test]
fn sysctl_lands_in_the_container_network_namespace() {
    require!(Root, Busybox);
    let env = TestEnv::new();
    let rt = Runtime::new(&env);
    let host = fs_err::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let builder = busybox().spec_mut(|s| {
        let linux = s.linux_mut().as_mut().unwrap();
        let flip = if host.trim() == "1" { "0" } else { "1" };
        linux.set_sysctl(Some(
            [("net.ipv4.ip_forward".to_string(), flip.to_string())].into(),
        ));
    });
    let out = rt.sh(builder, "cat /proc/sys/net/ipv4/ip_forward");
    assert_ne!(out, host);
    assert_eq!(
        fs_err::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        host
    );
    // A host-wide sysctl is refused before anything is created.
    let bad = env.bundle(
        "badsysctl",
        busybox().spec_mut(|s| {
            s.linux_mut().as_mut().unwrap().set_sysctl(Some(
                [("kernel.core_pattern".to_string(), "|/x".to_string())].into(),
            ));
        }),
    );
    let (code, _, err) = rt.run(&bad);
    assert_ne!(code, 0);
    assert!(err.contains("not in a separate kernel namespace"), "{err}");
    assert!(rt.ok(&["list", "-q"]).is_empty());
}

#[test]
fn hooks_run_in_order_with_state_on_stdin() {
    require!(Root, Busybox);
    let env = TestEnv::new();
    let rt = Runtime::new(&env);
    let log = env.path().join("hooks.log");
    let hook = |phase: &str| -> oci_spec::runtime::Hook {
        serde_json::from_value(serde_json::json!({
            "path": "/bin/sh",
            "args": ["sh", "-c", format!("read -r s; echo \"{phase} $(echo \"$s\" | grep -o '\"status\":\"[a-z]*\"')\" >> {}", log.display())]
        }))
        .unwrap()
    };
    let in_container = |phase: &str| -> oci_spec::runtime::Hook {
        // createContainer runs before pivot_root (host paths), startContainer
        // after it: log to a bind-mounted directory for both.
        serde_json::from_value(serde_json::json!({
            "path": "/bin/sh",
            "args": ["sh", "-c", format!("echo {phase} >> /hooklog/log")]
        }))
        .unwrap()
    };
    let log_dir = env.path().join("hooklog");
    fs_err::create_dir(&log_dir).unwrap();
    let builder = busybox().args(&["true"]).spec_mut(|s| {
        bind_mount(s, &log_dir, "/hooklog", false);
        let hooks: oci_spec::runtime::Hooks = serde_json::from_value(serde_json::json!({
            "prestart": [hook("prestart")],
            "createRuntime": [hook("createRuntime")],
            "createContainer": [hook("createContainer")],
            "poststart": [hook("poststart")],
            "poststop": [hook("poststop")],
            "startContainer": [in_container("startContainer")]
        }))
        .unwrap();
        s.set_hooks(Some(hooks));
    });
    rt.sh(builder, "true");
    assert_eq!(
        fs_err::read_to_string(&log).unwrap(),
        "prestart \"status\":\"creating\"\ncreateRuntime \"status\":\"creating\"\n\
         createContainer \"status\":\"creating\"\npoststart \"status\":\"running\"\npoststop \"status\":\"stopped\"\n"
    );
    assert_eq!(
        fs_err::read_to_string(log_dir.join("log")).unwrap(),
        "startContainer\n"
    );
}

#[test]
fn failing_prestart_hook_fails_create_and_leaves_nothing() {
    require!(Root, Busybox);
    let env = TestEnv::new();
    let rt = Runtime::new(&env);
    let bundle = env.bundle(
        "hookfail",
        busybox().args(&["sleep", "1000"]).spec_mut(|s| {
            let hooks: oci_spec::runtime::Hooks =
                serde_json::from_value(serde_json::json!({"prestart": [{"path": "/bin/false"}]}))
                    .unwrap();
            s.set_hooks(Some(hooks));
        }),
    );
    let id = env.name();
    let err = rt.fails(&["create", "--bundle", path_str(&bundle.dir), &id]);
    assert!(err.contains("prestart hook /bin/false"), "{err}");
    assert!(!env.root().join(&id).exists());
    assert!(wharf_testkit::leaked_processes(path_str(&bundle.dir)).is_empty());
    assert!(wharf_testkit::leaked_mounts(path_str(&bundle.dir)).is_empty());
}

/// The cgroup directories named `id` (the runtime's default cgroupsPath,
/// below this process's cgroup in each hierarchy).
fn cgroup_dirs(id: &str) -> Vec<std::path::PathBuf> {
    let out = std::process::Command::new("find")
        .args([
            "/sys/fs/cgroup",
            "-maxdepth",
            "6",
            "-type",
            "d",
            "-name",
            id,
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(Into::into)
        .collect()
}

#[test]
fn delete_force_cleans_up_after_a_killed_create() {
    require!(Root, Busybox);
    let env = TestEnv::new();
    let rt = Runtime::new(&env);
    // The createRuntime hook runs once the cgroup exists and before any
    // state is saved: it says so, then waits to be killed with the runtime.
    let marker = env.path().join("hook.pid");
    let hook = serde_json::json!({"createRuntime": [{
        "path": "/bin/sh",
        "args": ["sh", "-c", format!("echo $$ > {}.tmp; mv {0}.tmp {0}; exec sleep 30", marker.display())]
    }]});
    let bundle = env.bundle(
        "killed",
        busybox().args(&["sleep", "1000"]).spec_mut(move |s| {
            s.set_hooks(Some(serde_json::from_value(hook).unwrap()));
        }),
    );
    let id = env.name();
    let mut create = rt
        .cmd()
        .args(["create", "--bundle", path_str(&bundle.dir), &id])
        .spawn()
        .unwrap();
    assert!(eventually(|| marker.exists()), "the hook never ran");
    let cgroups = cgroup_dirs(&id);
    assert!(!cgroups.is_empty());
    create.kill().unwrap();
    create.wait().unwrap();
    let hook_pid: i32 = fs_err::read_to_string(&marker)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(hook_pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    // No state was saved: the container does not exist, but `delete
    // --force` removes what the killed create left.
    let err = rt.fails(&["delete", &id]);
    assert!(err.contains("does not exist"), "{err}");
    rt.ok(&["delete", "--force", &id]);
    assert!(!env.root().join(&id).exists());
    assert_eq!(cgroup_dirs(&id), Vec::<std::path::PathBuf>::new());
    // Its init went when the sync socket closed.
    assert!(eventually(|| wharf_testkit::leaked_processes(path_str(
        &bundle.dir
    ))
    .is_empty()));
    assert!(wharf_testkit::leaked_mounts(path_str(&bundle.dir)).is_empty());
}

#[test]
fn bad_configs_fail_with_specific_errors_and_leave_nothing() {
    require!(Root, Busybox);
    let env = TestEnv::new();
    let rt = Runtime::new(&env);
    let cases: Vec<(&str, BundleBuilder, &str)> = vec![
        (
            "noexe",
            busybox().args(&["/bin/nonexistent"]),
            "/bin/nonexistent",
        ),
        (
            "nopath",
            busybox().args(&["nonexistent"]),
            "executable file not found in $PATH",
        ),
        (
            "badcwd",
            busybox().cwd("/does/not/exist"),
            "chdir to /does/not/exist",
        ),
        (
            "procbind",
            busybox().spec_mut(|s| bind_mount(s, Path::new("/tmp"), "/proc", false)),
            "only procfs may be mounted at /proc",
        ),
        (
            "badmount",
            busybox().spec_mut(|s| {
                let mut m = s.mounts().clone().unwrap();
                m.push(
                    MountBuilder::default()
                        .destination("/x")
                        .typ("nosuchfs")
                        .source("none")
                        .build()
                        .unwrap(),
                );
                s.set_mounts(Some(m));
            }),
            "create nosuchfs filesystem",
        ),
        (
            "rlimit",
            busybox().spec_mut(|s| {
                let rl: Vec<oci_spec::runtime::PosixRlimit> = serde_json::from_value(
                    serde_json::json!([{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 100000000}]),
                )
                .unwrap();
                s.process_mut().as_mut().unwrap().set_rlimits(Some(rl));
            }),
            "set RLIMIT_NOFILE",
        ),
    ];
    for (name, builder, expected) in cases {
        let bundle = env.bundle(name, builder);
        let id = env.name();
        let err = rt.fails(&["create", "--bundle", path_str(&bundle.dir), &id]);
        assert!(err.contains(expected), "{name}: {err}");
        assert!(!env.root().join(&id).exists(), "{name}: state left behind");
        assert!(
            wharf_testkit::leaked_processes(path_str(&bundle.dir)).is_empty(),
            "{name}: process left behind"
        );
        assert!(
            wharf_testkit::leaked_mounts(path_str(&bundle.dir)).is_empty(),
            "{name}: mount left behind"
        );
    }
    let missing = rt.fails(&["create", "--bundle", "/nonexistent-bundle", "x1"]);
    assert!(missing.contains("/nonexistent-bundle"), "{missing}");
    assert!(rt
        .fails(&["create", "--bundle", ".", "../evil"])
        .contains("invalid container id"));
    // An existing id is refused and the existing container untouched.
    let b = env.bundle("dup", busybox().args(&["sleep", "1000"]));
    let id = rt.create(&b);
    assert!(rt
        .fails(&["create", "--bundle", path_str(&b.dir), &id])
        .contains("already exists"));
    assert_eq!(rt.state(&id)["status"], "created");
    rt.ok(&["delete", &id]);
}

#[test]
fn spec_and_features() {
    require!(Root);
    let env = TestEnv::new();
    let rt = Runtime::new(&env);
    let dir = env.path().join("spec");
    fs_err::create_dir(&dir).unwrap();
    rt.ok(&["spec", "--bundle", path_str(&dir)]);
    let spec: serde_json::Value =
        serde_json::from_str(&fs_err::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(spec["process"]["args"], serde_json::json!(["sh"]));
    assert_eq!(spec["root"]["readonly"], true);
    assert!(rt
        .fails(&["spec", "--bundle", path_str(&dir)])
        .contains("exists"));
    let rootless = env.path().join("rootless");
    fs_err::create_dir(&rootless).unwrap();
    rt.ok(&["spec", "--rootless", "--bundle", path_str(&rootless)]);
    let spec: serde_json::Value =
        serde_json::from_str(&fs_err::read_to_string(rootless.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(spec["linux"]["uidMappings"][0]["containerID"], 0);
    let features: serde_json::Value = serde_json::from_str(&rt.ok(&["features"])).unwrap();
    assert_eq!(features["ociVersionMax"], "1.2.0");
    assert!(features["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .contains(&"time".into()));
}

#[test]
fn terminal_is_sent_over_the_console_socket() {
    require!(Root, Busybox);
    use std::io::Read;
    use std::os::unix::net::UnixListener;
    let env = TestEnv::new();
    let rt = Runtime::new(&env);
    let sock_path = env.path().join("console.sock");
    let listener = UnixListener::bind(&sock_path).unwrap();
    let bundle = env.bundle(
        "tty",
        busybox()
            .terminal(true)
            .args(&[
                "sh",
                "-c",
                "tty; stat -c %t /dev/console; test -t 0 && echo stdin-tty; stty size",
            ])
            .spec_mut(|s| {
                let size: oci_spec::runtime::Box =
                    serde_json::from_value(serde_json::json!({"height": 40, "width": 120}))
                        .unwrap();
                s.process_mut()
                    .as_mut()
                    .unwrap()
                    .set_console_size(Some(size));
            }),
    );
    let id = env.name();
    let mut child = rt
        .cmd()
        .args([
            "create",
            "--console-socket",
            path_str(&sock_path),
            "--bundle",
            path_str(&bundle.dir),
            &id,
        ])
        .spawn()
        .unwrap();
    let (stream, _) = listener.accept().unwrap();
    let master = recv_fd(&stream);
    assert!(child.wait().unwrap().success());
    rt.ok(&["start", &id]);
    let mut out = String::new();
    let mut file = std::fs::File::from(master);
    let mut buf = [0u8; 1024];
    while let Ok(n) = file.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert_eq!(out.replace('\r', ""), "/dev/pts/0\n88\nstdin-tty\n40 120\n");
    assert!(eventually(|| rt.state(&id)["status"] == "stopped"));
    rt.ok(&["delete", &id]);
}

fn recv_fd(stream: &std::os::unix::net::UnixStream) -> std::os::fd::OwnedFd {
    use std::os::fd::AsFd;
    let mut buf = [0u8; 64];
    wharf_sys::console::recv_fd(stream.as_fd(), &mut buf)
        .unwrap()
        .0
}

/// Adds a bind mount of the host directory `src` at `dest`.
pub fn bind_mount(s: &mut oci_spec::runtime::Spec, src: &Path, dest: &str, ro: bool) {
    let mut mounts = s.mounts().clone().unwrap_or_default();
    let mut options = vec!["rbind".to_string()];
    if ro {
        options.push("ro".into());
    }
    mounts.push(
        MountBuilder::default()
            .destination(dest)
            .typ("bind")
            .source(src)
            .options(options)
            .build()
            .unwrap(),
    );
    s.set_mounts(Some(mounts));
}

#[test]
fn time_namespace_offsets_shift_the_container_clocks() {
    require!(Root, Busybox);
    let env = TestEnv::new();
    let rt = Runtime::new(&env);
    let builder = busybox().spec_mut(|s| {
        let linux = s.linux_mut().as_mut().unwrap();
        let mut ns = linux.namespaces().clone().unwrap();
        ns.push(LinuxNamespaceBuilder::default().typ(LinuxNamespaceType::Time).build().unwrap());
        linux.set_namespaces(Some(ns));
        let offsets: std::collections::HashMap<String, oci_spec::runtime::LinuxTimeOffset> =
            serde_json::from_value(serde_json::json!({"boottime": {"secs": 86400 * 365}, "monotonic": {"secs": 86400}})).unwrap();
        linux.set_time_offsets(Some(offsets));
    });
    let out = rt.sh(builder, "cut -d. -f1 /proc/uptime");
    let inside: u64 = out.trim().parse().unwrap();
    let host: f64 = fs_err::read_to_string("/proc/uptime")
        .unwrap()
        .split('.')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        inside >= 86400 * 365 && (inside as f64) < host + 86400.0 * 365.0 + 60.0,
        "{inside} vs host {host}"
    );
}

#[test]
fn personality_no_pivot_propagation_and_domainname() {
    require!(Root, Busybox);
    let env = TestEnv::new();
    let rt = Runtime::new(&env);
    let builder = busybox().spec_mut(|s| {
        let linux = s.linux_mut().as_mut().unwrap();
        let p: oci_spec::runtime::LinuxPersonality =
            serde_json::from_value(serde_json::json!({"domain": "LINUX32"})).unwrap();
        linux.set_personality(Some(p));
        linux.set_rootfs_propagation(Some("rprivate".into()));
        s.set_domainname(Some("wharf.test".into()));
    });
    let bundle = env.bundle(
        "persona",
        builder.args(&[
            "sh",
            "-c",
            "uname -m; cat /proc/sys/kernel/domainname; grep ' / / ' /proc/self/mountinfo | grep -c shared",
        ]),
    );
    let id = env.name();
    let out = rt.output(&["run", "--no-pivot", "--bundle", path_str(&bundle.dir), &id]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    // grep -c prints 0 and exits 1 when the root mount is not shared.
    assert_eq!(
        stdout,
        "i686\nwharf.test\n0\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn idmapped_bind_mount_shows_host_root_files_as_container_root() {
    require!(Root, Busybox, UserNs);
    let env = TestEnv::new();
    let rt = Runtime::new(&env);
    let data = env.path().join("idmapped");
    fs_err::create_dir(&data).unwrap();
    fs_err::write(data.join("f"), "x").unwrap();
    let builder = busybox()
        .with_user_namespace(300_000, 65_536)
        .spec_mut(|s| {
            let mut mounts = s.mounts().clone().unwrap();
            mounts.push(
                MountBuilder::default()
                    .destination("/idmapped")
                    .typ("bind")
                    .source(&data)
                    .options(vec!["bind".into(), "idmap".into()])
                    .build()
                    .unwrap(),
            );
            s.set_mounts(Some(mounts));
        });
    let bundle = env.bundle(
        "idmap",
        builder.args(&[
            "sh",
            "-c",
            "stat -c %u:%g /idmapped/f; touch /idmapped/g && stat -c %u /idmapped/g",
        ]),
    );
    fs_err::create_dir(bundle.rootfs.join("idmapped")).unwrap();
    let (code, out, err) = rt.run(&bundle);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "0:0\n0\n");
    // Written as the container's root through the idmapped mount: host root.
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&fs_err::metadata(data.join("g")).unwrap()),
        0
    );
}

#[test]
fn kill_all_and_ps_table_cover_every_process() {
    require!(Root, Busybox);
    let env = TestEnv::new();
    let rt = Runtime::new(&env);
    let bundle = env.bundle(
        "all",
        busybox().args(&["sh", "-c", "sleep 1000 & sleep 1000 & wait"]),
    );
    let id = rt.create(&bundle);
    rt.ok(&["start", &id]);
    assert!(eventually(|| serde_json::from_str::<Vec<i32>>(
        &rt.ok(&["ps", "-f", "json", &id])
    )
    .unwrap()
    .len()
        == 3));
    let table = rt.ok(&["ps", &id]);
    assert!(table.lines().next().unwrap().contains("PID"));
    assert_eq!(
        table.lines().filter(|l| l.ends_with(" sleep 1000")).count(),
        2,
        "{table}"
    );
    let exec_fds = rt.ok(&["exec", &id, "ls", "/proc/self/fd"]);
    assert_eq!(
        exec_fds, "0\n1\n2\n3\n",
        "exec'd process inherits only stdio (3 is ls's own)"
    );
    rt.ok(&["kill", "--all", &id, "KILL"]);
    assert!(eventually(|| rt.state(&id)["status"] == "stopped"));
    rt.ok(&["delete", &id]);
}

#[test]
fn uids_that_do_not_fit_are_rejected_never_root() {
    require!(Root, Busybox);
    let env = TestEnv::new();
    let rt = Runtime::new(&env);
    for uid in ["4294967296", "-1", "\"0\"", "1.5"] {
        let bundle = env.bundle(&env.name(), busybox().args(&["id", "-u"]));
        let config = fs_err::read_to_string(bundle.config_path()).unwrap();
        let mut json: serde_json::Value = serde_json::from_str(&config).unwrap();
        json["process"]["user"]["uid"] = serde_json::from_str(uid).unwrap();
        fs_err::write(bundle.config_path(), json.to_string()).unwrap();
        let (code, out, err) = rt.run(&bundle);
        assert_ne!(code, 0, "uid {uid} ran: {out}");
        assert!(err.contains("config.json"), "{uid}: {err}");
        assert!(out.is_empty());
    }
}

/// `run` and `exec` in the foreground relay the terminal when
/// `process.terminal` is set and no console socket is given (under
/// script(1), which gives the runtime a terminal of its own).
#[test]
fn foreground_run_and_exec_relay_the_terminal() {
    require!(Root, Busybox);
    let env = TestEnv::new();
    let rt = Runtime::new(&env);
    let wharf = env!("CARGO_BIN_EXE_wharf");
    let root = env.root();
    let script = |cmd: String, input: &str| {
        let mut child = std::process::Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).replace('\r', ""),
        )
    };
    let bundle = env.bundle(
        "tty",
        busybox()
            .terminal(true)
            .args(&["sh", "-c", "tty; read x; echo got:$x; exit 3"]),
    );
    let (code, out) = script(
        format!(
            "{wharf} runtime --root {} run --bundle {} {}",
            root.display(),
            bundle.dir.display(),
            env.name()
        ),
        "hello\n",
    );
    assert_eq!(code, Some(3), "{out}");
    assert!(
        out.contains("/dev/pts/0\n") && out.contains("got:hello\n"),
        "{out}"
    );

    let bg = env.bundle("bg", busybox().args(&["sleep", "1000"]));
    let id = rt.create(&bg);
    rt.ok(&["start", &id]);
    let (code, out) = script(
        format!("{wharf} runtime --root {} exec -t {id} sh -c 'test -t 0 && echo is-a-tty; read x; exit 4'", root.display()),
        "x\n",
    );
    assert_eq!(code, Some(4), "{out}");
    assert!(out.contains("is-a-tty"), "{out}");
    rt.ok(&["delete", "-f", &id]);
}

/// `--log` with `--log-format json` gets runc's logrus lines: containerd
/// reads the last `"level":"error"` entry to report why a create failed.
#[test]
fn errors_are_logged_as_json_for_containerd() {
    require!(Root, Busybox);
    let env = TestEnv::new();
    let rt = Runtime::new(&env);
    let bundle = env.bundle("logjson", busybox().args(&["/no/such/program"]));
    let log = env.path().join("log.json");
    let out = rt
        .cmd()
        .args([
            "--log",
            path_str(&log),
            "--log-format",
            "json",
            "create",
            "--bundle",
            path_str(&bundle.dir),
            &env.name(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let last = fs_err::read_to_string(&log).unwrap();
    let entry: serde_json::Value = serde_json::from_str(last.lines().last().unwrap()).unwrap();
    assert_eq!(entry["level"], "error");
    assert!(
        entry["msg"].as_str().unwrap().contains("/no/such/program"),
        "{entry}"
    );
    assert!(entry["time"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn io_priority_and_apparmor_without_apparmor() {
    require!(Root, Busybox);
    let env = TestEnv::new();
    let rt = Runtime::new(&env);
    let builder = busybox().spec_mut(|s| {
        let prio: oci_spec::runtime::LinuxIOPriority = serde_json::from_value(
            serde_json::json!({"class": "IOPRIO_CLASS_IDLE", "priority": 0}),
        )
        .unwrap();
        s.process_mut()
            .as_mut()
            .unwrap()
            .set_io_priority(Some(prio));
        let sched: oci_spec::runtime::Scheduler =
            serde_json::from_value(serde_json::json!({"policy": "SCHED_BATCH", "nice": 5}))
                .unwrap();
        s.process_mut().as_mut().unwrap().set_scheduler(Some(sched));
    });
    // /proc/<pid>/stat: field 19 is the nice value, 41 the policy (3 = BATCH).
    assert_eq!(
        rt.sh(builder, "ionice -p $$; cut -d' ' -f19,41 /proc/$$/stat"),
        "idle\n5 3\n"
    );
    if !Path::new("/sys/module/apparmor/parameters/enabled").exists() {
        let bundle = env.bundle(
            "aa",
            busybox().spec_mut(|s| {
                s.process_mut()
                    .as_mut()
                    .unwrap()
                    .set_apparmor_profile(Some("wharf-default".into()));
            }),
        );
        let (code, _, err) = rt.run(&bundle);
        assert_ne!(code, 0);
        assert!(err.contains("AppArmor is not enabled"), "{err}");
    }
}
