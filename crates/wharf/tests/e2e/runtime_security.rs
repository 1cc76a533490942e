//! Regression tests for the attack classes in SECURITY-CASES.md: each tries
//! the attack and proves it fails without touching the host.

use std::os::fd::AsRawFd;
use std::os::unix::fs::symlink;
use std::path::Path;

use oci_spec::runtime::MountBuilder;
use wharf_testkit::{require, BundleBuilder, Sentinel, TestEnv};

use crate::runtime_cli::bind_mount;
use crate::{path_str, Runtime};

fn without_dev_tmpfs(s: &mut oci_spec::runtime::Spec) {
    let mut mounts = s.mounts().clone().unwrap();
    mounts.retain(|m| !m.destination().starts_with("/dev"));
    s.set_mounts(Some(mounts));
}

fn replace_with_symlink(path: &Path, target: &str) {
    if path.is_dir() && !path.is_symlink() {
        fs_err::remove_dir_all(path).unwrap();
    } else if path.exists() || path.is_symlink() {
        fs_err::remove_file(path).unwrap();
    }
    symlink(target, path).unwrap();
}

/// CVE-2019-19921 / CVE-2023-27561: /proc and /sys may not be symlinks.
#[test]
fn proc_or_sys_symlink_in_rootfs_is_refused() {
    require!(Root, Busybox);
    let env = TestEnv::new();
    let rt = Runtime::new(&env);
    let sentinel = Sentinel::new("procsym");
    for (dir, target) in [
        ("proc", "/"),
        ("proc", sentinel.path().to_str().unwrap()),
        ("sys", "/"),
    ] {
        let bundle = env.bundle(&env.name(), BundleBuilder::new());
        replace_with_symlink(&bundle.rootfs.join(dir), target);
        let (code, _, err) = rt.run(&bundle);
        assert_ne!(code, 0);
        assert!(err.contains("not a directory"), "{dir} -> {target}: {err}");
    }
    sentinel.assert_unchanged();
    assert!(rt.ok(&["list", "-q"]).is_empty());
}

/// CVE-2019-18837 class: mount destinations through symlinks stay inside.
#[test]
fn mount_destination_through_symlinks_stays_in_rootfs() {
    require!(Root, Busybox);
    let env = TestEnv::new();
    let rt = Runtime::new(&env);
    let sentinel = Sentinel::new("mntsym");
    let builder = BundleBuilder::new().spec_mut(|s| {
        let mut mounts = s.mounts().clone().unwrap();
        for dest in ["/escape/etc-wharf-test", "/up/wharf-test-up", "/abs/x"] {
            mounts.push(
                MountBuilder::default()
                    .destination(dest)
                    .typ("tmpfs")
                    .source("tmpfs")
                    .build()
                    .unwrap(),
            );
        }
        s.set_mounts(Some(mounts));
    });
    let bundle = env.bundle(
        "mntsym",
        builder.args(&[
            "sh",
            "-c",
            "grep -c tmpfs /proc/self/mountinfo >/dev/null; ls -d /etc-wharf-test /wharf-test-up",
        ]),
    );
    symlink("/", bundle.rootfs.join("escape")).unwrap();
    symlink("../../../../../..", bundle.rootfs.join("up")).unwrap();
    symlink(sentinel.path(), bundle.rootfs.join("abs")).unwrap();
    let (code, out, err) = rt.run(&bundle);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "/etc-wharf-test\n/wharf-test-up\n");
    assert!(!Path::new("/etc-wharf-test").exists());
    assert!(!Path::new("/wharf-test-up").exists());
    sentinel.assert_unchanged();
    assert!(wharf_testkit::leaked_mounts("wharf-test-up").is_empty());
}

/// CVE-2025-31133: a /dev/null symlink in the image never becomes a mask
/// source; masked files are the host's verified null device.
#[test]
fn dev_null_symlink_does_not_redirect_masking() {
    require!(Root, Busybox);
    let env = TestEnv::new();
    let rt = Runtime::new(&env);
    let sentinel = Sentinel::new("devnull");
    let victim = sentinel.path().join("victim");
    fs_err::write(&victim, "host data").unwrap();
    let sentinel = {
        drop(sentinel);
        Sentinel::new("devnull2")
    };
    let target = sentinel.path().join("a");
    let builder = BundleBuilder::new()
        .spec_mut(without_dev_tmpfs)
        .spec_mut(|s| {
            s.linux_mut().as_mut().unwrap().set_masked_paths(Some(vec!["/proc/keys".into(), "/proc/timer_list".into()]));
        })
        .args(&["sh", "-c", "stat -c '%t:%T' /proc/keys /proc/timer_list; echo x > /proc/keys 2>/dev/null; cat /proc/keys | wc -c"]);
    let bundle = env.bundle("devnull", builder);
    fs_err::create_dir_all(bundle.rootfs.join("dev")).unwrap();
    symlink(&target, bundle.rootfs.join("dev/null")).unwrap();
    let (code, out, err) = rt.run(&bundle);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "1:3\n1:3\n0\n");
    sentinel.assert_unchanged();
}

/// CVE-2026-41579 class: a rootfs whose /dev is a symlink to a host path
/// gets its devices and symlinks inside the rootfs only.
#[test]
fn dev_symlink_to_host_directory_is_contained() {
    require!(Root, Busybox);
    let env = TestEnv::new();
    let rt = Runtime::new(&env);
    let sentinel = Sentinel::new("devdir");
    let bundle = env.bundle(
        "devdir",
        BundleBuilder::new().args(&["sh", "-c", "stat -c %t:%T /dev/null; readlink /dev/fd"]),
    );
    replace_with_symlink(
        &bundle.rootfs.join("dev"),
        sentinel.path().to_str().unwrap(),
    );
    let (code, out, err) = rt.run(&bundle);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "1:3\n/proc/self/fd\n");
    sentinel.assert_unchanged();
}

/// CVE-2025-52565: /dev/console as a symlink in the rootfs is refused.
#[test]
fn dev_console_symlink_is_refused() {
    require!(Root, Busybox);
    let env = TestEnv::new();
    let rt = Runtime::new(&env);
    let sock = env.path().join("c.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let sentinel = Sentinel::new("console");
    let bundle = env.bundle(
        "console",
        BundleBuilder::new().terminal(true).spec_mut(|s| {
            let mut mounts = s.mounts().clone().unwrap();
            mounts.retain(|m| m.destination() != Path::new("/dev"));
            s.set_mounts(Some(mounts));
        }),
    );
    fs_err::create_dir_all(bundle.rootfs.join("dev/pts")).unwrap();
    symlink(sentinel.path().join("a"), bundle.rootfs.join("dev/console")).unwrap();
    let id = env.name();
    let err = rt.fails(&[
        "create",
        "--console-socket",
        path_str(&sock),
        "--bundle",
        path_str(&bundle.dir),
        &id,
    ]);
    assert!(err.contains("/dev/console"), "{err}");
    assert!(!env.root().join(&id).exists());
    sentinel.assert_unchanged();
}

/// CVE-2024-21626: a cwd through a leaked descriptor never reaches the
/// host, and the container inherits nothing but stdio.
#[test]
fn cwd_through_proc_self_fd_fails_and_no_fd_leaks() {
    require!(Root, Busybox);
    let env = TestEnv::new();
    let rt = Runtime::new(&env);
    for n in 3..10 {
        let bundle = env.bundle(
            &env.name(),
            BundleBuilder::new()
                .cwd(format!("/proc/self/fd/{n}"))
                .args(&["pwd"]),
        );
        let (code, out, _) = rt.run(&bundle);
        assert_ne!(code, 0, "cwd /proc/self/fd/{n} ran: {out}");
        assert!(out.is_empty());
    }
    // A descriptor leaked by the runtime's caller stays out; one passed with
    // --preserve-fds comes in.
    let leaked = fs_err::File::open(env.path()).unwrap();
    let fd = leaked.as_raw_fd();
    let bundle = env.bundle(
        "fds",
        BundleBuilder::new().args(&["sh", "-c", "ls /proc/self/fd | sort -n | tr '\\n' ' '"]),
    );
    let run = |preserve: &str| {
        let mut cmd = rt.cmd();
        cmd.args([
            "run",
            "--preserve-fds",
            preserve,
            "--bundle",
            path_str(&bundle.dir),
            &env.name(),
        ]);
        // A shell puts the directory descriptor at fd 3 of the runtime.
        let script = format!("exec 3<&{fd}; exec \"$@\"");
        let mut sh = std::process::Command::new("/bin/sh");
        sh.arg("-c")
            .arg(script)
            .arg("sh")
            .arg(cmd.get_program())
            .args(cmd.get_args());
        sh.stdin(std::process::Stdio::null());
        sh.output().unwrap()
    };
    // Clear CLOEXEC so the shell sees the descriptor.
    rustix::io::fcntl_setfd(&leaked, rustix::io::FdFlags::empty()).unwrap();
    let out = run("0");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "0 1 2 3 ",
        "ls's own directory fd is 3"
    );
    let out = run("1");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "0 1 2 3 4 ",
        "fd 3 preserved, ls's is 4"
    );
}

/// CVE-2019-5736: the binary entering the container is a read-only image;
/// a handle to it cannot be reopened for writing, even after the runtime
/// exited.
#[test]
fn host_binary_cannot_be_reopened_for_writing() {
    require!(Root, Busybox);
    let env = TestEnv::new();
    let rt = Runtime::new(&env);
    let exe = Path::new(env!("CARGO_BIN_EXE_wharf"));
    let before = fs_err::read(exe).unwrap();
    let bundle = env.bundle("seal", BundleBuilder::new().args(&["true"]));
    let id = rt.create(&bundle);
    let pid = rt.state(&id)["pid"].as_i64().unwrap();
    // The init runs Wharf code until start: grab its exe as an attacker would.
    let handle = rustix::fs::open(
        format!("/proc/{pid}/exe"),
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .unwrap();
    let vfs = rustix::fs::fstatvfs(&handle).unwrap();
    assert!(
        vfs.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY),
        "init's exe is not on a read-only mount"
    );
    rt.ok(&["delete", "-f", &id]);
    // ETXTBSY while other tests execute the same binary; once it is idle
    // the read-only mount must refuse the write.
    let reopen = || {
        rustix::fs::open(
            format!("/proc/self/fd/{}", handle.as_raw_fd()),
            rustix::fs::OFlags::WRONLY,
            rustix::fs::Mode::empty(),
        )
    };
    let mut last = reopen().map(drop);
    for _ in 0..500 {
        if last != Err(rustix::io::Errno::TXTBSY) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
        last = reopen().map(drop);
    }
    assert!(
        matches!(
            last,
            Err(rustix::io::Errno::ROFS | rustix::io::Errno::TXTBSY)
        ),
        "{last:?}"
    );
    assert_eq!(fs_err::read(exe).unwrap(), before);
}

/// The init holds no descriptor to a host directory while it waits (the
/// only directory allowed is libpathrs' detached procfs handle).
#[test]
fn created_init_holds_no_host_directory_descriptor() {
    require!(Root, Busybox);
    let env = TestEnv::new();
    let rt = Runtime::new(&env);
    let out_dir = env.path().join("o");
    fs_err::create_dir(&out_dir).unwrap();
    let bundle = env.bundle(
        "fdinit",
        BundleBuilder::new()
            .args(&["true"])
            .spec_mut(|s| bind_mount(s, &out_dir, "/o", false)),
    );
    let id = rt.create(&bundle);
    let pid = rt.state(&id)["pid"].as_i64().unwrap();
    for entry in fs_err::read_dir(format!("/proc/{pid}/fd")).unwrap() {
        let entry = entry.unwrap();
        let target = fs_err::read_link(entry.path()).unwrap();
        let is_dir = fs_err::metadata(entry.path())
            .map(|m| m.is_dir())
            .unwrap_or(false);
        let on_procfs = rustix::fs::statfs(entry.path())
            .map(|s| s.f_type == 0x9fa0)
            .unwrap_or(false);
        assert!(
            !is_dir || on_procfs,
            "init holds a directory fd {} -> {}",
            entry.path().display(),
            target.display()
        );
    }
    rt.ok(&["delete", &id]);
}

/// CVE-2021-30465 / CVE-2024-45310 class: a path component swapped between
/// a directory and a symlink to the host while mount points are created and
/// mounted. Every mount must land inside the rootfs; the host is untouched.
#[test]
fn racing_symlink_swap_never_mounts_or_creates_on_the_host() {
    require!(Root, Busybox);
    let env = TestEnv::new();
    let rt = Runtime::new(&env);
    let sentinel = Sentinel::new("race");
    let builder = BundleBuilder::new().args(&["true"]).spec_mut(|s| {
        let mut mounts = s.mounts().clone().unwrap();
        for dest in ["/vol/a/b/c", "/vol/a/tmp"] {
            mounts.push(
                MountBuilder::default()
                    .destination(dest)
                    .typ("tmpfs")
                    .source("tmpfs")
                    .build()
                    .unwrap(),
            );
        }
        s.set_mounts(Some(mounts));
    });
    let bundle = env.bundle("race", builder);
    let vol = bundle.rootfs.join("vol");
    fs_err::create_dir_all(vol.join("a")).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let racer = {
        let stop = stop.clone();
        let (vol, target) = (vol.clone(), sentinel.path().to_path_buf());
        std::thread::spawn(move || {
            let (a, tmp) = (vol.join("a"), vol.join("a.swap"));
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // a: directory -> symlink to the host sentinel -> directory.
                let _ = fs_err::rename(&a, &tmp);
                let _ = std::os::unix::fs::symlink(&target, &a);
                std::thread::yield_now();
                let _ = fs_err::remove_file(&a);
                let _ = fs_err::rename(&tmp, &a);
            }
        })
    };
    for _ in 0..40 {
        let _ = rt.run(&bundle);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    racer.join().unwrap();
    sentinel.assert_unchanged();
    assert!(wharf_testkit::leaked_mounts(sentinel.path().to_str().unwrap()).is_empty());
    assert!(rt.ok(&["list", "-q"]).is_empty());
}

/// Signals the runtime's caller ignores (or the Rust runtime's SIGPIPE) are
/// not inherited: the container starts with default dispositions and an
/// empty signal mask.
#[test]
fn container_starts_with_default_signal_dispositions() {
    require!(Root, Busybox);
    let env = TestEnv::new();
    let rt = Runtime::new(&env);
    let bundle = env.bundle(
        "signals",
        BundleBuilder::new().args(&["grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"]),
    );
    let mut cmd = rt.cmd();
    cmd.args(["run", "--bundle", path_str(&bundle.dir), &env.name()]);
    let out = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg("trap '' HUP INT USR1; exec \"$@\"")
        .arg("sh")
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// CVE-2016-9962 class: while `exec` joins the container, nothing inside
/// may reach the joining process (it is non-dumpable until it execs, and
/// joins through a pidfd with no host directory open). A container process
/// scans /proc for the whole time of 40 execs: every executable it can
/// resolve must be its own busybox, never the runtime's image.
#[test]
fn exec_joining_process_is_unreachable_from_the_container() {
    require!(Root, Busybox);
    let env = TestEnv::new();
    let rt = Runtime::new(&env);
    let bundle = env.bundle(
        "scan",
        BundleBuilder::new()
            .readonly_root(false)
            .args(&[
                "sh",
                "-c",
                "touch /tmp/ready; while true; do for p in /proc/[0-9]*; do \
                 l=$(readlink $p/exe 2>/dev/null) && [ \"$l\" != /bin/busybox ] && echo \"$p $l\" >> /tmp/seen; \
                 done; done",
            ]),
    );
    let id = rt.create(&bundle);
    rt.ok(&["start", &id]);
    assert!(crate::eventually(|| bundle
        .rootfs
        .join("tmp/ready")
        .exists()));
    for _ in 0..40 {
        rt.ok(&["exec", &id, "true"]);
    }
    rt.ok(&["delete", "-f", &id]);
    let seen = fs_err::read_to_string(bundle.rootfs.join("tmp/seen")).unwrap_or_default();
    assert_eq!(seen, "", "the container resolved a foreign executable");
}
