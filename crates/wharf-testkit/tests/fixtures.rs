//! The testkit's own fixtures on a real host: the busybox rootfs and bundles,
//! `in_child` error reporting, and `TestEnv` cleanup of processes and mounts.

// The workspace lints want tests inside a `#[cfg(test)]` module, even here.
#[cfg(test)]
mod tests {
    use std::io::{BufRead as _, BufReader};
    use std::os::unix::fs::PermissionsExt as _;
    use std::path::Path;
    use std::process::{Command, Stdio};

    use anyhow::{anyhow, Context as _};
    use nix::sched::CloneFlags;
    use wharf_testkit::{
        busybox_rootfs, in_child, in_child_unshare, leaked_mounts, leaked_processes, BundleBuilder,
        Sentinel, TestEnv,
    };

    #[test]
    fn bundle_has_busybox_rootfs_and_valid_config() {
        wharf_testkit::require!(Root, Busybox);
        let env = TestEnv::new();
        let bundle = env.bundle("b", BundleBuilder::new().args(&["echo", "hi"]));

        assert_eq!(bundle.dir, env.path().join("bundles/b"));
        let sh = bundle.rootfs.join("bin/sh");
        assert_eq!(fs_err::read_link(&sh).unwrap(), Path::new("/bin/busybox"));
        assert_eq!(
            fs_err::read_link(bundle.rootfs.join("usr/bin/env")).unwrap(),
            Path::new("/bin/busybox")
        );
        let busybox = fs_err::symlink_metadata(bundle.rootfs.join("bin/busybox")).unwrap();
        assert!(busybox.is_file());
        assert_eq!(busybox.permissions().mode() & 0o7777, 0o755);
        let tmp = fs_err::metadata(bundle.rootfs.join("tmp")).unwrap();
        assert_eq!(tmp.permissions().mode() & 0o7777, 0o1777);
        let passwd = fs_err::read_to_string(bundle.rootfs.join("etc/passwd")).unwrap();
        assert!(
            passwd.contains("wharf:x:1000:1000::/home/wharf:/bin/sh\n"),
            "{passwd}"
        );
        for dir in ["proc", "sys", "dev", "root", "home/wharf"] {
            assert!(bundle.rootfs.join(dir).is_dir(), "{dir}");
        }

        let json: serde_json::Value =
            serde_json::from_str(&fs_err::read_to_string(bundle.config_path()).unwrap()).unwrap();
        assert_eq!(json["root"]["path"], "rootfs");
        let spec = bundle.read_spec().unwrap();
        assert_eq!(
            spec.process().as_ref().unwrap().args().as_deref(),
            Some(&["echo".to_owned(), "hi".to_owned()][..])
        );

        // Each bundle is a private copy: editing one leaves the cache alone.
        fs_err::remove_file(&sh).unwrap();
        assert!(busybox_rootfs().unwrap().join("bin/sh").is_symlink());
    }

    #[test]
    fn busybox_in_the_rootfs_runs_chrooted() {
        wharf_testkit::require!(Root, Busybox);
        let env = TestEnv::new();
        let bundle = env.bundle("chroot", BundleBuilder::new());
        let out = Command::new("chroot")
            .arg(&bundle.rootfs)
            .args(["/bin/sh", "-c", "id -un; cat /etc/group | wc -l"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "root\n5\n");
    }

    #[test]
    fn in_child_returns_the_error_chain() {
        let err =
            in_child(|| Err(anyhow!("permission denied")).context("mount proc at /x/rootfs/proc"))
                .unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "mount proc at /x/rootfs/proc: permission denied"
        );
    }

    #[test]
    fn in_child_unshare_enters_a_user_namespace() {
        wharf_testkit::require!(UserNs);
        let host_ns = fs_err::read_link("/proc/self/ns/user").unwrap();
        in_child_unshare(CloneFlags::CLONE_NEWUSER, || {
            let ns = fs_err::read_link("/proc/self/ns/user")?;
            anyhow::ensure!(ns != host_ns, "still in the host user namespace {ns:?}");
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn test_env_drop_kills_processes_and_unmounts() {
        wharf_testkit::require!(Root);
        let env = TestEnv::new();
        let dir = env.path().to_owned();
        let dir_text = dir.to_str().unwrap().to_owned();

        // One process found by its cwd, one by its command line (whose child is found
        // as its descendant), one only tracked.
        let by_cwd = Command::new("sleep")
            .arg("1000")
            .current_dir(&dir)
            .spawn()
            .unwrap();
        let mut by_cmdline = Command::new("sh")
            .args(["-c", "sleep 1000 & echo $!; wait; : \"$0\"", &dir_text])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(by_cmdline.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let grandchild: u32 = line.trim().parse().unwrap();
        let tracked = Command::new("sleep").arg("1001").spawn().unwrap();
        env.track_pid(i32::try_from(tracked.id()).unwrap());

        let mnt = dir.join("mnt");
        fs_err::create_dir_all(&mnt).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "wharf-testkit-outer", mnt.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(status.success());
        fs_err::create_dir(mnt.join("inner")).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "wharf-testkit-inner"])
            .arg(mnt.join("inner"))
            .status()
            .unwrap();
        assert!(status.success());
        assert_eq!(leaked_mounts(&dir_text).len(), 2);
        assert_eq!(
            leaked_processes(&dir_text).len(),
            1,
            "{:?}",
            leaked_processes(&dir_text)
        );

        drop(env);

        let pids = [by_cwd.id(), by_cmdline.id(), tracked.id(), grandchild];
        for pid in pids {
            let state = process_state(pid);
            assert!(state == "Z" || state == "gone", "pid {pid} is {state}");
        }
        for mut child in [by_cwd, by_cmdline, tracked] {
            let _ = child.wait();
        }
        assert!(leaked_mounts(&dir_text).is_empty());
        assert!(!dir.exists());
    }

    /// State of `pid` from `/proc/<pid>/stat`, or "gone".
    fn process_state(pid: u32) -> String {
        fs_err::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                s.rsplit_once(')')
                    .unwrap()
                    .1
                    .split_whitespace()
                    .next()
                    .unwrap()
                    .to_owned()
            })
            .unwrap_or_else(|_| "gone".to_owned())
    }

    #[test]
    fn test_env_drop_kills_a_pivot_rooted_container_process() {
        wharf_testkit::require!(Root, Busybox);
        let env = TestEnv::new();
        let bundle = env.bundle("pivot", BundleBuilder::new());
        fs_err::create_dir(bundle.rootfs.join(".old")).unwrap();
        // Host paths are unreachable from its root, cwd and exe: only inodes tell.
        let script = format!(
            "mount --bind {r} {r} && cd {r} && pivot_root . .old && \\
             exec /bin/busybox sh -c 'umount -l /.old && echo ready && exec sleep 1000'",
            r = bundle.rootfs.display()
        );
        let mut container = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(container.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "ready\n");
        let pid = container.id();
        assert_eq!(
            fs_err::read_link(format!("/proc/{pid}/root")).unwrap(),
            Path::new("/")
        );
        drop(env);
        let state = process_state(pid);
        assert!(state == "Z" || state == "gone", "pid {pid} is {state}");
        let _ = container.wait();
    }

    #[test]
    fn sentinel_survives_a_harmless_test() {
        let sentinel = Sentinel::new("fixtures");
        let _ = fs_err::read_to_string(sentinel.path().join("hello.txt")).unwrap();
        sentinel.assert_unchanged();
    }
}
