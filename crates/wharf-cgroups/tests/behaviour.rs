//! One behavioural suite run against each manager on the real kernel: create a
//! cgroup, move a busy child in, freeze/thaw it, read stats, kill everything,
//! destroy. v1 runs against this host's v1 controllers; v2 runs against the
//! unified hierarchy's core files everywhere and its controllers where a full
//! v2 host offers them.

// The workspace lints want tests inside a `#[cfg(test)]` module, even here.
#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command};
    use std::time::Duration;

    use oci_spec::runtime::LinuxResources;
    use rustix::process::WaitOptions;
    use wharf_cgroups::{manager_for, FreezerState, Hierarchy, Manager, V1Manager, V2Manager};
    use wharf_sys::process::{exit_now, fork_into_cgroup, Forked};
    use wharf_testkit::{in_child, require, TestEnv};

    /// Kills and removes the cgroup however the test ends.
    struct CgroupGuard<M: Manager + ?Sized>(Box<M>);

    impl<M: Manager + ?Sized> Drop for CgroupGuard<M> {
        fn drop(&mut self) {
            let _ = self.0.kill_all();
            let _ = self.0.destroy();
        }
    }

    /// A child burning CPU, SIGKILLed and reaped on drop.
    struct Busy(Child);

    impl Busy {
        fn spawn(env: &TestEnv) -> Busy {
            let child = Command::new("sh")
                .args(["-c", "while :; do :; done"])
                .spawn()
                .unwrap();
            env.track_pid(i32::try_from(child.id()).unwrap());
            Busy(child)
        }

        fn pid(&self) -> i32 {
            i32::try_from(self.0.id()).unwrap()
        }

        /// utime + stime from /proc/<pid>/stat, in clock ticks.
        fn cpu_ticks(&self) -> u64 {
            let stat = fs_read(&PathBuf::from(format!("/proc/{}/stat", self.pid())));
            let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
            let fields: Vec<&str> = after_comm.split_whitespace().collect();
            fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
        }
    }

    impl Drop for Busy {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn fs_read(path: &Path) -> String {
        fs_err_read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    }

    fn fs_err_read(path: &Path) -> std::io::Result<String> {
        use std::io::Read as _;
        let mut text = String::new();
        std::fs::OpenOptions::new()
            .read(true)
            .open(path)?
            .read_to_string(&mut text)?;
        Ok(text)
    }

    fn resources(json: &str) -> LinuxResources {
        serde_json::from_str(json).unwrap()
    }

    /// The suite every manager passes; `dirs` are the directories it must create
    /// and remove.
    fn lifecycle(env: &TestEnv, manager: &dyn Manager, dirs: &[PathBuf]) {
        manager.create().unwrap();
        for dir in dirs {
            assert!(dir.is_dir(), "{} was not created", dir.display());
        }
        // Creating again reuses the cgroup.
        manager.create().unwrap();

        let mut busy = Busy::spawn(env);
        manager.add_process(busy.pid()).unwrap();
        assert_eq!(manager.pids().unwrap(), vec![busy.pid()]);

        manager.freeze().unwrap();
        assert_eq!(manager.freezer_state().unwrap(), FreezerState::Frozen);
        let frozen_at = busy.cpu_ticks();
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(busy.cpu_ticks(), frozen_at, "a frozen process kept running");

        manager.thaw().unwrap();
        assert_eq!(manager.freezer_state().unwrap(), FreezerState::Thawed);
        let thawed_at = busy.cpu_ticks();
        std::thread::sleep(Duration::from_millis(300));
        assert!(busy.cpu_ticks() > thawed_at, "a thawed process did not run");

        manager.kill_all().unwrap();
        assert!(manager.pids().unwrap().is_empty());
        let status = busy.0.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );

        // Child cgroups (a nested runtime's, say) go too: the cgroup's own
        // rmdir answers EBUSY, then its tree is removed deepest first.
        for dir in dirs {
            std::fs::DirBuilder::new()
                .recursive(true)
                .create(dir.join("child/grandchild"))
                .unwrap();
        }
        manager.destroy().unwrap();
        for dir in dirs {
            assert!(!dir.exists(), "{} was left behind", dir.display());
        }
        // Destroying again is fine.
        manager.destroy().unwrap();
    }

    fn v1_manager(env: &TestEnv) -> Option<V1Manager> {
        let (mounts, unified) = match Hierarchy::detect().unwrap() {
            Hierarchy::V1 { mounts } => (mounts, None),
            Hierarchy::Hybrid { mounts, unified } => (mounts, Some(unified)),
            Hierarchy::V2 { .. } => return None,
        };
        let name = env.name();
        let dirs = mounts
            .iter()
            .map(|(c, m)| (c.clone(), m.mount_point.join(&name)))
            .collect();
        Some(V1Manager::with_dirs(dirs, unified.map(|u| u.join(&name))))
    }

    /// Where the v2 hierarchy is mounted: the root on a v2 host, `unified` on a
    /// hybrid one.
    fn v2_mount() -> Option<PathBuf> {
        match Hierarchy::detect().unwrap() {
            Hierarchy::V2 { root } => Some(root),
            Hierarchy::Hybrid { unified, .. } => Some(unified),
            Hierarchy::V1 { .. } => None,
        }
    }

    #[test]
    fn v1_lifecycle_create_add_freeze_kill_destroy() {
        require!(Root);
        let env = TestEnv::new();
        let Some(manager) = v1_manager(&env) else {
            return;
        };
        let mut dirs: Vec<PathBuf> = manager.dirs().values().cloned().collect();
        dirs.extend(manager.unified_dir().map(Path::to_path_buf));
        let guard = CgroupGuard(Box::new(manager));
        lifecycle(&env, &*guard.0, &dirs);
    }

    /// The lines of /proc/self/cgroup that are not in `name`.
    fn cgroups_elsewhere(name: &str) -> anyhow::Result<Vec<String>> {
        let own = fs_err_read(Path::new("/proc/self/cgroup"))?;
        Ok(own
            .lines()
            .filter(|l| !l.ends_with(&format!("/{name}")))
            .map(str::to_owned)
            .collect())
    }

    #[test]
    fn a_child_enters_through_an_entry_in_every_hierarchy() {
        require!(Root);
        let env = TestEnv::new();
        let (manager, name): (Box<dyn Manager>, String) = match v1_manager(&env) {
            Some(m) => {
                let dir = m.dirs().values().next().unwrap();
                let name = dir.file_name().unwrap().to_string_lossy().into_owned();
                (Box::new(m), name)
            }
            None => {
                let mount = v2_mount().unwrap();
                let name = env.name();
                (
                    Box::new(V2Manager::with_dir(&mount, mount.join(&name))),
                    name,
                )
            }
        };
        let guard = CgroupGuard(manager);
        guard.0.create().unwrap();
        let entry = guard.0.entry().unwrap();
        // The forked test child is single-threaded: it enters the v1
        // hierarchies itself, then clones a grandchild into the v2 directory.
        in_child(|| {
            entry.join_self()?;
            let Some(dir) = entry.v2_dir() else {
                let elsewhere = cgroups_elsewhere(&name)?;
                anyhow::ensure!(elsewhere.is_empty(), "not entered: {elsewhere:?}");
                return Ok(());
            };
            match fork_into_cgroup(0, dir)? {
                Forked::Child => {
                    let entered = cgroups_elsewhere(&name).is_ok_and(|e| e.is_empty());
                    exit_now(if entered { 0 } else { 1 })
                }
                Forked::Parent(pid) => {
                    let status = rustix::process::waitpid(Some(pid), WaitOptions::empty())?
                        .map(|(_, s)| s.exit_status());
                    anyhow::ensure!(
                        status == Some(Some(0)),
                        "the clone3 child was not in every hierarchy: {status:?}"
                    );
                    Ok(())
                }
            }
        })
        .unwrap();
        assert!(guard.0.pids().unwrap().is_empty());
        // A move by pid into v2 is the fallback.
        let busy = Busy::spawn(&env);
        entry.add_v2(busy.pid()).unwrap();
        if entry.v2_dir().is_some() {
            let own = fs_read(&PathBuf::from(format!("/proc/{}/cgroup", busy.pid())));
            assert!(
                own.lines()
                    .any(|l| l.starts_with("0::") && l.ends_with(&format!("/{name}"))),
                "{own}"
            );
        }
    }

    #[test]
    fn v1_apply_writes_limits_the_kernel_reads_back() {
        require!(Root);
        let env = TestEnv::new();
        let Some(manager) = v1_manager(&env) else {
            return;
        };
        let guard = CgroupGuard(Box::new(manager));
        let m = &*guard.0;
        m.create().unwrap();
        m.apply(&resources(
            r#"{
            "memory": {"limit": 67108864, "swap": 134217728, "reservation": 33554432},
            "cpu": {"shares": 512, "quota": 50000, "period": 100000},
            "pids": {"limit": 50},
            "devices": [
                {"allow": false, "access": "rwm"},
                {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}
            ]
        }"#,
        ))
        .unwrap();
        let read = |controller: &str, file: &str| {
            fs_read(&m.dirs()[controller].join(file)).trim().to_owned()
        };
        assert_eq!(read("memory", "memory.limit_in_bytes"), "67108864");
        assert_eq!(read("memory", "memory.memsw.limit_in_bytes"), "134217728");
        assert_eq!(read("memory", "memory.soft_limit_in_bytes"), "33554432");
        assert_eq!(read("cpu", "cpu.shares"), "512");
        assert_eq!(read("cpu", "cpu.cfs_quota_us"), "50000");
        assert_eq!(read("cpu", "cpu.cfs_period_us"), "100000");
        assert_eq!(read("pids", "pids.max"), "50");
        assert_eq!(read("devices", "devices.list"), "c 1:3 rwm");
        // A new cpuset cgroup got its parent's cpus and mems.
        assert!(!read("cpuset", "cpuset.cpus").is_empty());

        let busy = Busy::spawn(&env);
        m.add_process(busy.pid()).unwrap();
        let stats = m.stats().unwrap();
        assert_eq!(stats.memory.limit, Some(67_108_864));
        assert!(stats.memory.usage.is_some());
        assert_eq!(stats.pids.current, Some(1));
        assert_eq!(stats.pids.limit, Some(50));
        assert!(stats.memory.inactive_file.is_some());
        assert!(stats.io.read_bytes.is_some() && stats.io.write_bytes.is_some());
        assert!(stats.cpu.usage_ns.is_some());

        // An update lowers the limit; a failing write names the file and value.
        m.apply(&resources(r#"{"pids": {"limit": 20}}"#)).unwrap();
        assert_eq!(read("pids", "pids.max"), "20");
        let err = m
            .apply(&resources(r#"{"cpu": {"cpus": "4096"}}"#))
            .unwrap_err();
        let cpuset = m.dirs()["cpuset"].join("cpuset.cpus");
        assert_eq!(
            err.to_string(),
            format!("write \"4096\" to {}", cpuset.display())
        );
        drop(busy);
        m.kill_all().unwrap();
        m.destroy().unwrap();
    }

    #[test]
    fn v1_relative_path_lands_below_the_own_cgroup() {
        require!(Root);
        let env = TestEnv::new();
        let hierarchy = Hierarchy::detect().unwrap();
        if matches!(hierarchy, Hierarchy::V2 { .. }) {
            return;
        }
        let name = env.name();
        let manager = manager_for(&hierarchy, Path::new(&name)).unwrap();
        let guard = CgroupGuard(manager);
        guard.0.create().unwrap();
        let own = fs_read(Path::new("/proc/self/cgroup"));
        let memory_own = own
            .lines()
            .find_map(|l| l.split_once(":memory:"))
            .map(|(_, p)| p.to_owned())
            .unwrap();
        let expected = Path::new("/sys/fs/cgroup/memory")
            .join(memory_own.trim_start_matches('/'))
            .join(&name);
        assert!(expected.is_dir(), "{} missing", expected.display());
        guard.0.destroy().unwrap();
        assert!(!expected.exists());
    }

    #[test]
    fn v2_core_lifecycle_create_add_freeze_kill_destroy() {
        require!(Root);
        let env = TestEnv::new();
        let Some(mount) = v2_mount() else {
            return;
        };
        let dir = mount.join(env.name());
        let guard = CgroupGuard(Box::new(V2Manager::with_dir(&mount, &dir)));
        lifecycle(&env, &*guard.0, std::slice::from_ref(&dir));
    }

    #[test]
    fn v2_apply_writes_limits_the_kernel_reads_back() {
        require!(Root, CgroupV2Controllers);
        let env = TestEnv::new();
        let Some(mount) = v2_mount() else {
            return;
        };
        let dir = mount.join(env.name());
        let guard = CgroupGuard(Box::new(V2Manager::with_dir(&mount, &dir)));
        let m = &*guard.0;
        m.create().unwrap();
        m.apply(&resources(
            r#"{
            "memory": {"limit": 67108864, "reservation": 33554432},
            "cpu": {"shares": 1024, "quota": 50000, "period": 100000},
            "pids": {"limit": 50},
            "unified": {"memory.high": "60000000"}
        }"#,
        ))
        .unwrap();
        let read = |file: &str| fs_read(&dir.join(file)).trim().to_owned();
        assert_eq!(read("memory.max"), "67108864");
        assert_eq!(read("memory.low"), "33554432");
        assert_eq!(read("cpu.weight"), "39");
        assert_eq!(read("cpu.max"), "50000 100000");
        assert_eq!(read("pids.max"), "50");
        // memory.high rounds down to pages.
        assert!(read("memory.high").parse::<u64>().unwrap() <= 60_000_000);

        let busy = Busy::spawn(&env);
        m.add_process(busy.pid()).unwrap();
        let stats = m.stats().unwrap();
        assert_eq!(stats.memory.limit, Some(67_108_864));
        assert_eq!(stats.pids.current, Some(1));
        assert!(stats.cpu.usage_ns.is_some());
        drop(busy);
        m.kill_all().unwrap();
        m.destroy().unwrap();
        assert!(!dir.exists());
    }

    /// cgroup v2 device control: the eBPF program attached to a cgroup in the
    /// unified hierarchy (present on this hybrid host, even without
    /// controllers) denies what the rules deny.
    #[test]
    fn v2_device_program_denies_unlisted_devices() {
        wharf_testkit::require!(Root);
        let Some(unified) = unified_root() else {
            return;
        };
        let env = wharf_testkit::TestEnv::new();
        let dir = unified.join(env.name());
        let manager = wharf_cgroups::V2Manager::with_dir(&unified, &dir);
        use wharf_cgroups::Manager;
        manager.create().unwrap();
        let resources: oci_spec::runtime::LinuxResources =
            serde_json::from_value(serde_json::json!({
                "devices": [
                    {"allow": false, "access": "rwm"},
                    {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"}
                ]
            }))
            .unwrap();
        manager.apply(&resources).unwrap();
        let mut child = std::process::Command::new("/bin/sh")
            .args([
                "-c",
                "read _; head -c 1 /dev/zero | wc -c; head -c 1 /dev/full || echo full-denied",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        manager.add_process(child.id() as i32).unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"go\n").unwrap();
        let out = child.wait_with_output().unwrap();
        manager.destroy().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "1\nfull-denied\n");
    }

    /// A long rule list (runtime-tools' linux_devices has dozens) makes a
    /// program whose verifier log outgrows any small buffer: the load must
    /// not ask for a log unless the program is refused.
    #[test]
    fn v2_device_program_with_many_rules_loads() {
        wharf_testkit::require!(Root);
        let Some(unified) = unified_root() else {
            return;
        };
        let env = wharf_testkit::TestEnv::new();
        let dir = unified.join(env.name());
        let manager = wharf_cgroups::V2Manager::with_dir(&unified, &dir);
        use wharf_cgroups::Manager;
        manager.create().unwrap();
        let mut rules = vec![serde_json::json!({"allow": false, "access": "rwm"})];
        for minor in 0..200 {
            rules.push(serde_json::json!(
                {"allow": true, "type": "c", "major": 250, "minor": minor, "access": "rw"}
            ));
        }
        rules.push(serde_json::json!(
            {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"}
        ));
        let resources: oci_spec::runtime::LinuxResources =
            serde_json::from_value(serde_json::json!({ "devices": rules })).unwrap();
        let applied = manager.apply(&resources);
        manager.destroy().unwrap();
        applied.unwrap();
    }

    fn unified_root() -> Option<std::path::PathBuf> {
        match wharf_cgroups::Hierarchy::detect().ok()? {
            wharf_cgroups::Hierarchy::V2 { root } => Some(root),
            wharf_cgroups::Hierarchy::Hybrid { unified, .. } => Some(unified),
            wharf_cgroups::Hierarchy::V1 { .. } => None,
        }
    }
}
