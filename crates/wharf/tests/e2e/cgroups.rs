//! Containers in cgroups: limits enforced and visible inside, pause and
//! resume, live update, stats, device rules, cleanup. Runs on the host's
//! cgroup v1 controllers (CI) or on a pure cgroup v2 host with controllers
//! (the device machine): each test reads the files of the version it runs on.

use std::path::Path;

use oci_spec::runtime::{LinuxNamespaceBuilder, LinuxNamespaceType, LinuxResources, MountBuilder};
use wharf_testkit::{require, BundleBuilder, TestEnv};

use crate::{eventually, Runtime};

/// A busybox bundle with `resources`, a cgroup namespace and /sys/fs/cgroup
/// mounted, running `script`.
fn limited(resources: serde_json::Value, script: &str) -> BundleBuilder {
    let resources: LinuxResources = serde_json::from_value(resources).unwrap();
    BundleBuilder::new()
        .args(&["sh", "-c", script])
        .spec_mut(move |s| {
            let mut mounts = s.mounts().clone().unwrap();
            mounts.push(
                MountBuilder::default()
                    .destination("/sys/fs/cgroup")
                    .typ("cgroup")
                    .source("cgroup")
                    .options(vec![
                        "nosuid".into(),
                        "noexec".into(),
                        "nodev".into(),
                        "ro".into(),
                    ])
                    .build()
                    .unwrap(),
            );
            s.set_mounts(Some(mounts));
            let linux = s.linux_mut().as_mut().unwrap();
            let mut ns = linux.namespaces().clone().unwrap();
            ns.push(
                LinuxNamespaceBuilder::default()
                    .typ(LinuxNamespaceType::Cgroup)
                    .build()
                    .unwrap(),
            );
            linux.set_namespaces(Some(ns));
            linux.set_resources(Some(resources));
        })
}

/// Runs a bundle that must succeed; returns stdout.
fn run_ok(rt: &Runtime<'_>, builder: BundleBuilder) -> String {
    let bundle = rt.env.bundle(&rt.env.name(), builder);
    let (code, out, err) = rt.run(&bundle);
    assert_eq!(code, 0, "stdout {out:?} stderr {err:?}");
    out
}

/// The cgroup files tests read inside the container (which sees its own
/// cgroup as the root, in a cgroup namespace), for the host's version.
#[derive(Debug)]
struct Files {
    v2: bool,
    memory_max: &'static str,
    pids_max: &'static str,
    pids_current: &'static str,
    /// cpu.shares on v1, cpu.weight on v2 (converted as runc does).
    cpu_weight: &'static str,
    cpu_stat: &'static str,
}

/// The files for this host, or None where the memory, pids and cpu
/// controllers are not all available to containers (see [`cgroup_files!`]).
fn files() -> Option<Files> {
    if Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists() {
        return Some(Files {
            v2: false,
            memory_max: "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            pids_max: "/sys/fs/cgroup/pids/pids.max",
            pids_current: "/sys/fs/cgroup/pids/pids.current",
            cpu_weight: "/sys/fs/cgroup/cpu/cpu.shares",
            cpu_stat: "/sys/fs/cgroup/cpu/cpu.stat",
        });
    }
    let controllers = fs_err::read_to_string("/sys/fs/cgroup/cgroup.controllers").ok()?;
    let has = |c: &str| controllers.split_whitespace().any(|x| x == c);
    if !(has("memory") && has("pids") && has("cpu")) {
        return None;
    }
    Some(Files {
        v2: true,
        memory_max: "/sys/fs/cgroup/memory.max",
        pids_max: "/sys/fs/cgroup/pids.max",
        pids_current: "/sys/fs/cgroup/pids.current",
        cpu_weight: "/sys/fs/cgroup/cpu.weight",
        cpu_stat: "/sys/fs/cgroup/cpu.stat",
    })
}

/// The host's [`Files`]; where there are none, the test is skipped as
/// needing cgroup v2 controllers (the one way a host can lack them).
macro_rules! cgroup_files {
    () => {
        match files() {
            Some(files) => files,
            None => {
                require!(CgroupV2Controllers);
                return;
            }
        }
    };
}

#[test]
fn limits_are_applied_and_visible_in_the_container_cgroup_namespace() {
    require!(Root, Busybox);
    let f = cgroup_files!();
    let env = TestEnv::new();
    let rt = Runtime::new(&env);
    let out = run_ok(
        &rt,
        limited(
            serde_json::json!({"memory": {"limit": 67108864}, "pids": {"limit": 40}, "cpu": {"shares": 512}}),
            &format!(
                "grep -c ':/$' /proc/self/cgroup >/dev/null && echo root-view; cat {} {} {}",
                f.memory_max, f.pids_max, f.cpu_weight
            ),
        ),
    );
    // v2: cpu.weight = 1 + (shares - 2) * 9999 / 262142, runc's conversion.
    let weight = if f.v2 { 20 } else { 512 };
    assert_eq!(out, format!("root-view\n67108864\n40\n{weight}\n"));
}

#[test]
fn pids_limit_stops_a_fork_bomb_and_memory_limit_oom_kills() {
    require!(Root, Busybox);
    let f = cgroup_files!();
    let env = TestEnv::new();
    let rt = Runtime::new(&env);
    let bundle = env.bundle(
        "forks",
        limited(
            serde_json::json!({"pids": {"limit": 8}}),
            &format!(
                "for i in $(seq 30); do sleep 5 2>/dev/null & done; \
                 read n < {}; echo running=$n",
                f.pids_current
            ),
        ),
    );
    // The shell gives up at the first fork the pids controller refuses.
    let (code, _, err) = rt.run(&bundle);
    assert_ne!(code, 0);
    assert!(
        err.contains("can't fork: Resource temporarily unavailable"),
        "{err}"
    );

    let bundle = env.bundle(
        "oom",
        limited(
            serde_json::json!({"memory": {"limit": 33554432, "swap": 33554432}}),
            "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived",
        ),
    );
    let (code, out, _) = rt.run(&bundle);
    assert_eq!(
        code, 137,
        "a 200 MB shell variable under a 32 MB limit: {out}"
    );
    assert!(!out.contains("survived"));
}

#[test]
fn pause_resume_update_events_and_cleanup() {
    require!(Root, Busybox);
    let f = cgroup_files!();
    let env = TestEnv::new();
    let rt = Runtime::new(&env);
    let bundle = env.bundle(
        "count",
        limited(
            serde_json::json!({"pids": {"limit": 100}}),
            // A long-lived child, so `ps` always lists at least two processes
            // (the loop's own sleep comes and goes).
            "sleep 100000 & i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.02; done",
        ),
    );
    let count = bundle.rootfs.join("tmp/count");
    let read = || {
        fs_err::read_to_string(&count)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    // The testkit's root is read-only: make /tmp a tmpfs-free writable dir.
    let mut spec = bundle.read_spec().unwrap();
    spec.root_mut().as_mut().unwrap().set_readonly(Some(false));
    bundle.write_spec(&spec).unwrap();
    let id = rt.create(&bundle);
    rt.ok(&["start", &id]);
    assert!(eventually(|| read() > 2));

    rt.ok(&["pause", &id]);
    assert_eq!(rt.state(&id)["status"], "paused");
    let frozen = read();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(read(), frozen, "the counter advanced while paused");
    assert!(rt.fails(&["pause", &id]).contains("it is paused"));
    assert!(rt.fails(&["exec", &id, "true"]).contains("it is paused"));
    rt.ok(&["resume", &id]);
    assert_eq!(rt.state(&id)["status"], "running");
    assert!(eventually(|| read() > frozen + 2));

    rt.ok(&["update", "--pids-limit", "50", "--memory", "100000000", &id]);
    assert_eq!(rt.ok(&["exec", &id, "cat", f.pids_max]), "50\n");
    let stats: serde_json::Value =
        serde_json::from_str(rt.ok(&["events", "--stats", &id]).trim()).unwrap();
    assert_eq!(stats["type"], "stats");
    assert_eq!(stats["data"]["pids"]["limit"], 50);
    assert!(stats["data"]["pids"]["current"].as_u64().unwrap() >= 1);
    assert_eq!(
        stats["data"]["memory"]["usage"]["limit"], 99999744,
        "rounded to pages by the kernel"
    );

    let pids: Vec<i32> = serde_json::from_str(&rt.ok(&["ps", "-f", "json", &id])).unwrap();
    assert!(pids.len() >= 2, "{pids:?}");
    rt.ok(&["pause", &id]);
    rt.ok(&["delete", "-f", &id]);
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists()
                || eventually(|| !Path::new(&format!("/proc/{pid}")).exists())
        );
    }
    let leftover = std::process::Command::new("find")
        .args([
            "/sys/fs/cgroup",
            "-maxdepth",
            "4",
            "-type",
            "d",
            "-name",
            &id,
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&leftover.stdout),
        "",
        "cgroup directories left behind"
    );
}

/// A disk's device node the rules let the container create but not open:
/// open fails with EPERM (v1 devices controller; v2 eBPF device program),
/// while the default devices still work.
#[test]
fn device_rules_deny_opening_a_disk() {
    require!(Root, Busybox);
    cgroup_files!();
    let env = TestEnv::new();
    let rt = Runtime::new(&env);
    let builder = limited(
        serde_json::json!({"devices": [
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "b", "major": 8, "minor": 0, "access": "m"}
        ]}),
        "mknod /tmp/sda b 8 0 && echo mknod-ok; head -c 1 /tmp/sda; \
         mknod /tmp/sdb b 8 16 || echo mknod-sdb-denied; \
         echo > /dev/null && echo null-ok",
    )
    .spec_mut(|s| {
        let p = s.process_mut().as_mut().unwrap();
        let mut caps = p.capabilities().clone().unwrap();
        let mut set = caps.bounding().clone().unwrap();
        set.insert(oci_spec::runtime::Capability::Mknod);
        caps.set_bounding(Some(set.clone()));
        caps.set_effective(Some(set.clone()));
        caps.set_permitted(Some(set));
        p.set_capabilities(Some(caps));
        s.root_mut().as_mut().unwrap().set_readonly(Some(false));
    });
    let bundle = rt.env.bundle(&rt.env.name(), builder);
    let (code, out, err) = rt.run(&bundle);
    assert_eq!(code, 0, "stdout {out:?} stderr {err:?}");
    assert_eq!(
        out, "mknod-ok\nmknod-sdb-denied\nnull-ok\n",
        "stderr {err:?}"
    );
    assert!(
        err.contains("/tmp/sda: Operation not permitted"),
        "open of the disk: {err:?}"
    );
    assert!(
        err.contains("mknod: /tmp/sdb: Operation not permitted"),
        "mknod of an unlisted disk: {err:?}"
    );
}

#[test]
fn cpu_quota_throttles_a_busy_loop() {
    require!(Root, Busybox);
    let f = cgroup_files!();
    let env = TestEnv::new();
    let rt = Runtime::new(&env);
    // 10% of one CPU: a busy loop for 1 s of wall time gets about 0.1 s of
    // CPU, and the kernel counts the periods it was throttled in.
    let usage = if f.v2 {
        // usage_usec is in cpu.stat, in microseconds.
        format!("sed -n 's/^usage_usec /usage=/p' {}", f.cpu_stat)
    } else {
        "read -r usage < /sys/fs/cgroup/cpuacct/cpuacct.usage; echo usage=$((usage / 1000))"
            .to_owned()
    };
    let out = run_ok(
        &rt,
        limited(
            serde_json::json!({"cpu": {"quota": 10000, "period": 100000}}),
            &format!(
                "timeout 1 sh -c 'while :; do :; done'; grep -E '^nr_throttled' {}; {usage}",
                f.cpu_stat
            ),
        ),
    );
    let throttled: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("nr_throttled "))
        .unwrap_or_else(|| panic!("{out}"))
        .parse()
        .unwrap();
    let usage_us: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("usage="))
        .unwrap_or_else(|| panic!("{out}"))
        .parse()
        .unwrap();
    assert!(throttled >= 3, "throttled in {throttled} periods: {out}");
    assert!(
        usage_us < 400_000,
        "{usage_us} µs of CPU in 1 s under a 10% quota"
    );
}

#[test]
fn systemd_cgroup_driver_is_a_clear_error() {
    require!(Root, Busybox);
    let env = TestEnv::new();
    let rt = Runtime::new(&env);
    let bundle = env.bundle("sysd", BundleBuilder::new());
    let out = rt
        .cmd()
        .args([
            "--systemd-cgroup",
            "run",
            "--bundle",
            crate::path_str(&bundle.dir),
            &env.name(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--systemd-cgroup"));
    assert!(rt.ok(&["list", "-q"]).is_empty());
}

#[test]
fn events_reports_an_oom_kill() {
    require!(Root, Busybox);
    cgroup_files!();
    let env = TestEnv::new();
    let rt = Runtime::new(&env);
    // The init survives; each `dd`, whose one 64 MiB buffer is anonymous
    // memory (no pipe, no page cache to thrash on a busy disk), is
    // OOM-killed as it fills it.
    let bundle = env.bundle(
        "oomev",
        limited(
            serde_json::json!({"memory": {"limit": 16777216, "swap": 16777216}}),
            "sleep 0.5; while true; do dd if=/dev/zero of=/dev/null bs=64M count=1 2>/dev/null; sleep 0.2; done",
        ),
    );
    let id = rt.create(&bundle);
    rt.ok(&["start", &id]);
    let log = env.path().join("events.log");
    let mut events = rt
        .cmd()
        .args(["events", "--interval", "200ms", &id])
        .stdout(fs_err::File::create(&log).unwrap().into_parts().0)
        .spawn()
        .unwrap();
    // A loaded 2-core machine can starve the container and the events
    // process for long (a concurrent image test's disk writes once kept
    // this under 20 s): wait well past `eventually`'s 5 s.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let saw_oom = loop {
        let seen = fs_err::read_to_string(&log)
            .unwrap_or_default()
            .contains("\"type\":\"oom\"");
        if seen || std::time::Instant::now() > deadline {
            break seen;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    rt.ok(&["delete", "-f", &id]);
    let _ = events.wait();
    let text = fs_err::read_to_string(&log).unwrap();
    assert!(saw_oom, "{text}");
    assert!(
        text.lines().next().unwrap().contains("\"type\":\"stats\""),
        "{text}"
    );
}
