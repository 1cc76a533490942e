//! The container lifecycle end to end: `run`, `create`, `start`, `stop`,
//! `kill`, `rm`, `ps`, `logs`, `exec`, `wait`, `inspect`, restart
//! policies, a killed monitor, failed runs leaving nothing behind, Docker's
//! defaults seen from inside the container, volumes, and concurrency. The
//! busybox image is served by Debian's docker-registry and pulled.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wharf_testkit::{
    busybox_layout, require, LayerCompression, LocalRegistry, RegistryOptions, TestEnv,
};

/// The `wharf` command line over a test's own root, with the busybox image
/// pulled from a local registry and tagged `busybox`. Removes every
/// container it made when dropped.
pub struct Engine {
    cli: crate::Cli,
    _registry: LocalRegistry,
}

impl std::ops::Deref for Engine {
    type Target = crate::Cli;
    fn deref(&self) -> &crate::Cli {
        &self.cli
    }
}

impl Engine {
    pub fn with_busybox(env: &TestEnv) -> Engine {
        let registry =
            LocalRegistry::start(RegistryOptions::plain()).expect("start docker-registry");
        let (layout, _) =
            busybox_layout(&env.path().join("layout"), "latest", LayerCompression::Gzip).unwrap();
        registry
            .skopeo_copy_in(&layout.reference("latest"), "test/busybox:latest", false)
            .unwrap();
        let engine = Engine {
            cli: crate::Cli {
                root: env.path().join("store"),
            },
            _registry: registry,
        };
        let name = format!("{}/test/busybox:latest", engine._registry.host());
        engine.ok(&["pull", "-q", "--tls-verify=false", &name]);
        engine.ok(&["tag", &name, "busybox"]);
        engine
    }

    pub fn fails(&self, args: &[&str]) -> (i32, String) {
        let (code, out, err) = self.run(args);
        assert_ne!(code, 0, "wharf {args:?} succeeded: {out:?}");
        (code, err)
    }

    pub fn inspect(&self, container: &str, template: &str) -> String {
        self.ok(&["inspect", "-f", template, container])
            .trim()
            .to_owned()
    }

    /// Waits up to 10 s for `cond`.
    pub fn eventually(&self, what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if cond() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("timed out waiting for {what}");
    }

    /// Mounts under this engine's root.
    pub fn mounts(&self) -> Vec<String> {
        wharf_testkit::leaked_mounts(self.root.to_str().unwrap())
    }

    /// Container cgroup directories left on the host for `id`.
    pub fn cgroups_of(id: &str) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for entry in fs_err::read_dir("/sys/fs/cgroup").unwrap().flatten() {
            let dir = entry.path().join("wharf").join(id);
            if dir.exists() {
                out.push(dir);
            }
        }
        out
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let Ok(out) = self.cmd().args(["ps", "-aq", "--no-trunc"]).output() else {
            return;
        };
        for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = self.cmd().args(["rm", "-f", "-v", id]).output();
        }
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn run_in_the_foreground_streams_output_and_exit_codes() {
    require!(Root, Busybox, Overlay, Registry, Skopeo);
    let env = TestEnv::new();
    let w = Engine::with_busybox(&env);
    let (code, out, err) = w.run(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!((code, out.as_str(), err.as_str()), (3, "out\n", "err\n"));
    // Killed by a signal: 128 + n.
    // (Under --init: a shell as PID 1 would ignore the signal, as in Docker.)
    let init = crate::static_init();
    let (code, _, _) = w.run(&[
        "run",
        "--rm",
        "--init-path",
        path(&init),
        "busybox",
        "sh",
        "-c",
        "kill -TERM $$; sleep 5",
    ]);
    assert_eq!(code, 128 + 15);
    // Command not found: 127; not executable: 126; Wharf's own failure: 125.
    let (code, err) = w.fails(&["run", "--rm", "busybox", "/no/such/cmd"]);
    assert_eq!(code, 127, "{err}");
    let (code, err) = w.fails(&["run", "--rm", "busybox", "/etc/passwd"]);
    assert_eq!(code, 126, "{err}");
    let (code, err) = w.fails(&["run", "--rm", "--pull", "never", "nosuchimage"]);
    assert_eq!(code, 125);
    assert!(err.contains("nosuchimage") && err.contains("pull"), "{err}");
    let (code, err) = w.fails(&["run", "--rm", "--restart", "sometimes", "busybox", "true"]);
    assert_eq!(code, 125);
    assert!(err.contains("sometimes"), "{err}");
    // An unknown option is refused, not taken for the image (which may
    // start a command whose own options follow it).
    let (code, err) = w.fails(&["run", "--rm", "--no-such-flag", "busybox", "true"]);
    assert_eq!(code, 125);
    assert!(err.contains("unknown flag: --no-such-flag"), "{err}");
    assert!(!err.contains("Unable to find image"), "{err}");
    // --rm left nothing.
    assert_eq!(w.ok(&["ps", "-aq"]), "");
    assert_eq!(w.mounts(), Vec::<String>::new());
    let dirs: Vec<_> = fs_err::read_dir(w.root.join("containers"))
        .unwrap()
        .collect();
    assert!(dirs.is_empty(), "container directories left: {dirs:?}");
    // stdin with -i.
    let mut child = w
        .cmd()
        .args(["run", "--rm", "-i", "busybox", "sh", "-c", "tr a-z A-Z"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"hello stdin\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "HELLO STDIN\n");
}

#[test]
fn a_failed_run_leaves_nothing_behind() {
    require!(Root, Busybox, Overlay, Registry, Skopeo);
    let env = TestEnv::new();
    let w = Engine::with_busybox(&env);
    for args in [
        vec![
            "run",
            "--name",
            "bad1",
            "-u",
            "nosuchuser",
            "busybox",
            "true",
        ],
        vec![
            "run",
            "--name",
            "bad2",
            "-u",
            "99999999999",
            "busybox",
            "true",
        ],
        vec!["run", "--name", "bad3", "busybox", "/no/such/binary"],
        vec![
            "run",
            "--name",
            "bad4",
            "--cap-add",
            "NOT_A_CAP",
            "busybox",
            "true",
        ],
        vec!["run", "--name", "bad5", "-d", "busybox", "/no/such/binary"],
    ] {
        let (_, err) = w.fails(&args);
        assert!(!err.is_empty());
        assert_eq!(w.ok(&["ps", "-aq"]), "", "after {args:?}");
        // Nor a monitor: `run` spawns one before it creates the container
        // and, failing, waits for it to go.
        assert_eq!(monitors_of(&w), Vec::<i32>::new(), "after {args:?}");
    }
    let (_, err) = w.fails(&["run", "-u", "nosuchuser", "busybox", "true"]);
    assert!(err.contains("nosuchuser"), "{err}");
    assert_eq!(w.mounts(), Vec::<String>::new());
    let left: Vec<_> = fs_err::read_dir(w.root.join("containers"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let left: Vec<_> = fs_err::read_dir(w.root.join("image/rootfs"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "rootfs left: {left:?}");
    // The name is free again and the image is untouched.
    w.ok(&["run", "--rm", "--name", "bad1", "busybox", "true"]);
    w.ok(&["image", "inspect", "busybox"]);
}

#[test]
fn detached_container_lifecycle() {
    require!(Root, Busybox, Overlay, Registry, Skopeo);
    let env = TestEnv::new();
    let w = Engine::with_busybox(&env);
    let id = w
        .ok(&["run", "-d", "--name", "web", "-e", "GREETING=hi", "--label", "tier=front", "busybox",
            "sh", "-c", "trap 'echo bye; exit 0' TERM; echo started; echo oops >&2; while :; do sleep 0.1; done"])
        .trim()
        .to_owned();
    assert_eq!(id.len(), 64);
    w.eventually("the first log line", || {
        w.ok(&["logs", "web"]).contains("started")
    });
    // A second run with the same name is refused.
    let (_, err) = w.fails(&["run", "-d", "--name", "web", "busybox", "true"]);
    assert!(err.contains("already in use"), "{err}");

    let ps = w.ok(&["ps"]);
    let lines: Vec<&str> = ps.lines().collect();
    assert!(lines[0].starts_with("CONTAINER ID   IMAGE"), "{ps}");
    assert!(
        lines[1].starts_with(&id[..12]) && lines[1].contains("Up ") && lines[1].ends_with("web"),
        "{ps}"
    );
    assert_eq!(
        w.ok(&["ps", "-q", "--filter", "label=tier=front"]).trim(),
        &id[..12]
    );
    assert_eq!(w.ok(&["ps", "-q", "--filter", "status=exited"]).trim(), "");
    assert_eq!(
        w.ok(&["ps", "--format", "{{.Names}} {{.State}}"]).trim(),
        "web running"
    );

    // logs: streams kept apart, --tail, -t.
    let (_, out, err) = w.run(&["logs", "web"]);
    assert_eq!((out.as_str(), err.as_str()), ("started\n", "oops\n"));
    let stamped = w.ok(&["logs", "-t", "--tail", "2", "web"]);
    assert!(
        stamped.contains("T") && stamped.ends_with(" started\n"),
        "{stamped:?}"
    );

    // exec: environment, user, working directory, exit status.
    assert_eq!(w.ok(&["exec", "web", "sh", "-c", "echo $GREETING"]), "hi\n");
    assert_eq!(
        w.ok(&["exec", "-u", "nobody", "web", "id", "-u"]),
        "65534\n"
    );
    assert_eq!(w.ok(&["exec", "-w", "/tmp", "web", "pwd"]), "/tmp\n");
    assert_eq!(
        w.ok(&["exec", "-e", "A=b", "web", "sh", "-c", "echo $A"]),
        "b\n"
    );
    let (code, _, _) = w.run(&["exec", "web", "sh", "-c", "exit 42"]);
    assert_eq!(code, 42);
    let (code, _) = w.fails(&["exec", "web", "no-such-command"]);
    assert_eq!(code, 127);

    // pause / unpause.
    w.ok(&["pause", "web"]);
    assert!(w.ok(&["ps"]).contains("(Paused)"));
    let (_, err) = w.fails(&["exec", "web", "true"]);
    assert!(err.contains("paused"), "{err}");
    w.ok(&["unpause", "web"]);

    // top lists the container's processes.
    let top = w.ok(&["top", "web"]);
    assert!(top.starts_with("UID") && top.contains("sh -c"), "{top}");

    // rename, then stop (the trap runs: exit 0), inspect, start again.
    w.ok(&["rename", "web", "web2"]);
    assert_eq!(w.ok(&["stop", "web2"]).trim(), "web2");
    assert_eq!(
        w.inspect("web2", "{{.State.Status}} {{.State.ExitCode}} {{.Name}}"),
        "exited 0 /web2"
    );
    assert!(w.ok(&["logs", "web2"]).contains("bye"));
    assert_eq!(w.ok(&["wait", "web2"]).trim(), "0");
    assert!(
        w.mounts().is_empty(),
        "a stopped container's rootfs stays unmounted"
    );
    w.ok(&["start", "web2"]);
    assert_eq!(w.inspect("web2", "{{.State.Status}}"), "running");
    // rm of a running container needs -f.
    let (_, err) = w.fails(&["rm", "web2"]);
    assert!(err.contains("stop the container"), "{err}");
    // kill sends SIGKILL by default: 137.
    w.ok(&["kill", "web2"]);
    w.eventually("the exit", || {
        w.inspect("web2", "{{.State.Status}}") == "exited"
    });
    assert_eq!(w.inspect("web2", "{{.State.ExitCode}}"), "137");
    w.ok(&["rm", "web2"]);
    assert_eq!(w.ok(&["ps", "-aq"]), "");
    assert!(
        Engine::cgroups_of(&id).is_empty(),
        "cgroups left: {:?}",
        Engine::cgroups_of(&id)
    );
    assert!(w.mounts().is_empty());
    let events = w.ok(&[
        "events",
        "--since",
        "1h",
        "--until",
        "0s",
        "--filter",
        &format!("container={id}"),
    ]);
    for action in [
        "create", "start", "pause", "unpause", "rename", "die", "destroy",
    ] {
        assert!(
            events.contains(&format!("container {action} {id}")),
            "{action} missing from {events}"
        );
    }
}

#[test]
fn create_then_start_attached_and_stop_timeout() {
    require!(Root, Busybox, Overlay, Registry, Skopeo);
    let env = TestEnv::new();
    let w = Engine::with_busybox(&env);
    let cid = env.path().join("cid");
    let id = w
        .ok(&[
            "create",
            "--name",
            "c1",
            "--cidfile",
            path(&cid),
            "busybox",
            "echo",
            "from-create",
        ])
        .trim()
        .to_owned();
    assert_eq!(fs_err::read_to_string(&cid).unwrap(), id);
    assert_eq!(w.inspect("c1", "{{.State.Status}}"), "created");
    assert!(w.ok(&["ps", "-a"]).contains("Created"));
    assert_eq!(w.ok(&["start", "-a", "c1"]), "from-create\n");
    assert_eq!(
        w.inspect("c1", "{{.State.Status}} {{.State.ExitCode}}"),
        "exited 0"
    );
    // A process that ignores SIGTERM is killed after -t seconds.
    w.ok(&[
        "run",
        "-d",
        "--name",
        "stubborn",
        "busybox",
        "sh",
        "-c",
        "trap '' TERM; while :; do sleep 0.1; done",
    ]);
    let t0 = Instant::now();
    w.ok(&["stop", "-t", "1", "stubborn"]);
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(8),
        "{took:?}"
    );
    assert_eq!(w.inspect("stubborn", "{{.State.ExitCode}}"), "137");
    // --stop-signal is what stop sends.
    w.ok(&[
        "run",
        "-d",
        "--name",
        "usr1",
        "--stop-signal",
        "USR1",
        "busybox",
        "sh",
        "-c",
        "trap 'exit 9' USR1; echo trapped; while :; do sleep 0.1; done",
    ]);
    // The shell is the container's pid 1: a signal it has no handler for
    // yet is dropped, so stop only once the trap is set.
    w.eventually("the trap", || w.ok(&["logs", "usr1"]).contains("trapped"));
    w.ok(&["stop", "usr1"]);
    assert_eq!(w.inspect("usr1", "{{.State.ExitCode}}"), "9");
}

#[test]
fn restart_policies() {
    require!(Root, Busybox, Overlay, Registry, Skopeo);
    let env = TestEnv::new();
    let w = Engine::with_busybox(&env);
    w.ok(&[
        "run",
        "-d",
        "--name",
        "flaky",
        "--restart",
        "on-failure:3",
        "busybox",
        "sh",
        "-c",
        "echo run; exit 1",
    ]);
    w.eventually("three restarts", || {
        w.inspect("flaky", "{{.State.Status}} {{.RestartCount}}") == "exited 3"
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        w.inspect(
            "flaky",
            "{{.State.Status}} {{.RestartCount}} {{.State.ExitCode}}"
        ),
        "exited 3 1"
    );
    assert_eq!(w.ok(&["logs", "flaky"]).matches("run").count(), 4);
    assert_eq!(
        w.inspect(
            "flaky",
            "{{.HostConfig.RestartPolicy.Name}} {{.HostConfig.RestartPolicy.MaximumRetryCount}}"
        ),
        "on-failure 3"
    );

    w.ok(&[
        "run",
        "-d",
        "--name",
        "always",
        "--restart",
        "always",
        "busybox",
        "sleep",
        "1000",
    ]);
    let pid = w.inspect("always", "{{.State.Pid}}");
    // Killing the process from outside: restarted.
    Command::new("kill").args(["-9", &pid]).status().unwrap();
    w.eventually("the restart", || {
        w.inspect("always", "{{.State.Status}} {{.RestartCount}}") == "running 1"
    });
    assert_ne!(w.inspect("always", "{{.State.Pid}}"), pid);
    // stop: not restarted.
    w.ok(&["stop", "-t", "1", "always"]);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        w.inspect("always", "{{.State.Status}} {{.RestartCount}}"),
        "exited 1"
    );
}

#[test]
fn a_killed_monitor_is_reported_and_rm_cleans_up() {
    require!(Root, Busybox, Overlay, Registry, Skopeo);
    let env = TestEnv::new();
    let w = Engine::with_busybox(&env);
    let id = w
        .ok(&["run", "-d", "--name", "orphan", "busybox", "sleep", "1000"])
        .trim()
        .to_owned();
    let pid: i32 = w.inspect("orphan", "{{.State.Pid}}").parse().unwrap();
    // The monitor is the container init's parent.
    let ppid = monitor_pid(&w, "orphan");
    let comm = fs_err::read_to_string(format!("/proc/{ppid}/cmdline")).unwrap();
    assert!(comm.contains("__monitor"), "{comm}");
    Command::new("kill")
        .args(["-9", &ppid.to_string()])
        .status()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let ps = w.ok(&["ps", "-a"]);
    assert!(ps.contains("Exited (unknown)"), "{ps}");
    assert_eq!(
        w.inspect("orphan", "{{.State.Status}} {{.State.ExitCode}}"),
        "exited -1"
    );
    // Killed: gone, or a zombie left to the host's init.
    let state = fs_err::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    assert!(
        state.is_empty() || state.contains("State:\tZ"),
        "the orphaned process was left running: {state}"
    );
    assert!(w.mounts().is_empty(), "{:?}", w.mounts());
    w.ok(&["rm", "orphan"]);
    assert!(Engine::cgroups_of(&id).is_empty());
    assert_eq!(w.ok(&["ps", "-aq"]), "");
}

/// The monitor processes (`__monitor` entries) of `w`'s root.
fn monitors_of(w: &Engine) -> Vec<i32> {
    let root = w.root.to_string_lossy().into_owned();
    let mut pids = Vec::new();
    for entry in fs_err::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = fs_err::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if args.get(1) == Some(&&b"__monitor"[..]) && args.get(2) == Some(&root.as_bytes()) {
            pids.push(pid);
        }
    }
    pids
}

/// The monitor of `container` (its init's parent).
fn monitor_pid(w: &Engine, container: &str) -> i32 {
    let pid: i32 = w.inspect(container, "{{.State.Pid}}").parse().unwrap();
    let stat = fs_err::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap()
}

/// Resident and total kB of the executable mappings of `pid`'s own binary
/// (smaps; shared libraries of a dynamically linked test build left out:
/// the monitor trims only its own code).
fn code_kb(pid: i32) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let exe = fs_err::metadata(format!("/proc/{pid}/exe")).unwrap().ino();
    let smaps = fs_err::read_to_string(format!("/proc/{pid}/smaps")).unwrap();
    let (mut rss, mut size, mut code) = (0, 0, false);
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or_default();
        if first.contains('-') && !first.ends_with(':') {
            let perms = fields.next().unwrap_or_default();
            let inode = fields.nth(2).and_then(|i| i.parse::<u64>().ok());
            code = perms.contains('x') && inode == Some(exe);
            continue;
        }
        let value = fields.next().and_then(|v| v.parse::<u64>().ok());
        match (first, value) {
            ("Size:", Some(kb)) if code => size += kb,
            ("Rss:", Some(kb)) if code => rss += kb,
            _ => {}
        }
    }
    (rss, size)
}

#[test]
fn an_idle_monitor_gives_back_its_memory_and_again_after_work() {
    require!(Root, Busybox, Overlay, Registry, Skopeo);
    let env = TestEnv::new();
    let w = Engine::with_busybox(&env);
    // Quiet, then one burst of output, then quiet again.
    w.ok(&[
        "run",
        "-d",
        "--name",
        "idle",
        "busybox",
        "sh",
        "-c",
        "sleep 4; seq 1 20000; sleep 1000",
    ]);
    let monitor = monitor_pid(&w, "idle");
    assert_eq!(monitors_of(&w), vec![monitor]);
    // A second into the run the monitor drops the code its setup ran: a
    // few folios stay resident, of a binary many megabytes large.
    let small = |(rss, size): (u64, u64)| rss * 8 < size;
    w.eventually("the first trim", || small(code_kb(monitor)));
    let trimmed = code_kb(monitor).0;
    // The burst runs the relay and the log writer again, and a second
    // after it the monitor trims again.
    w.eventually("the burst in the log", || {
        w.ok(&["logs", "--tail", "1", "idle"]).trim() == "20000"
    });
    w.eventually("the trim after the burst", || {
        code_kb(monitor).0 <= trimmed + 256
    });
    // The container and its monitor work on: exec, stop, the exit code.
    assert_eq!(w.ok(&["exec", "idle", "echo", "still"]).trim(), "still");
    assert_eq!(
        w.ok(&["logs", "idle"]).lines().count(),
        20000,
        "every line relayed"
    );
    w.ok(&["stop", "-t", "1", "idle"]);
    assert_eq!(
        w.inspect("idle", "{{.State.Status}} {{.State.ExitCode}}"),
        "exited 137"
    );
}

#[test]
fn docker_defaults_seen_from_inside() {
    require!(Root, Busybox, Overlay, Registry, Skopeo);
    let env = TestEnv::new();
    let w = Engine::with_busybox(&env);
    let status = w.ok(&["run", "--rm", "busybox", "cat", "/proc/self/status"]);
    let field = |s: &str, k: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    };
    // Docker's 14 default capabilities.
    assert_eq!(field(&status, "CapEff:"), "00000000a80425fb");
    assert_eq!(field(&status, "CapInh:"), "0000000000000000");
    assert_eq!(field(&status, "Seccomp:"), "2");
    assert_eq!(field(&status, "NoNewPrivs:"), "0");
    let privileged = w.ok(&[
        "run",
        "--rm",
        "--privileged",
        "busybox",
        "cat",
        "/proc/self/status",
    ]);
    assert_eq!(field(&privileged, "Seccomp:"), "0");
    assert_ne!(field(&privileged, "CapEff:"), "00000000a80425fb");
    let nnp = w.ok(&[
        "run",
        "--rm",
        "--security-opt",
        "no-new-privileges",
        "--cap-drop",
        "ALL",
        "busybox",
        "cat",
        "/proc/self/status",
    ]);
    assert_eq!(field(&nnp, "NoNewPrivs:"), "1");
    assert_eq!(field(&nnp, "CapEff:"), "0000000000000000");

    // Hostname is the short id; /etc files come from the container dir.
    let out = w.ok(&[
        "run",
        "-d",
        "--name",
        "hh",
        "--add-host",
        "db:10.1.2.3",
        "busybox",
        "sleep",
        "100",
    ]);
    let id = out.trim();
    assert_eq!(w.ok(&["exec", "hh", "hostname"]).trim(), &id[..12]);
    let hosts = w.ok(&["exec", "hh", "cat", "/etc/hosts"]);
    assert!(
        hosts.contains("127.0.0.1\tlocalhost") && hosts.contains("10.1.2.3\tdb"),
        "{hosts}"
    );
    // Masked and read-only paths, /sys read-only, pids limit.
    assert_eq!(w.ok(&["exec", "hh", "cat", "/proc/timer_list"]), "");
    let (code, _, _) = w.run(&["exec", "hh", "sh", "-c", "echo 1 > /proc/sysrq-trigger"]);
    assert_ne!(code, 0);
    let (code, _, _) = w.run(&["exec", "hh", "touch", "/sys/x"]);
    assert_ne!(code, 0);
    let mounts = w.ok(&["exec", "hh", "cat", "/proc/self/mounts"]);
    assert!(
        mounts.lines().any(|l| l.starts_with("proc /proc proc")
            && l.contains("nosuid")
            && l.contains("nodev")
            && l.contains("noexec")),
        "{mounts}"
    );
    // The default network: loopback and eth0 on the default bridge.
    let net = w.ok(&["exec", "hh", "cat", "/proc/net/dev"]);
    assert!(
        net.contains("lo:") && net.contains("eth0:") && net.lines().count() == 4,
        "{net}"
    );
    w.ok(&["rm", "-f", "hh"]);
    // --network none: only loopback.
    let net = w.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "cat",
        "/proc/net/dev",
    ]);
    assert!(net.contains("lo:") && net.lines().count() == 3, "{net}");

    // --read-only, --tmpfs, --hostname, -w (created), --entrypoint.
    let out = w.ok(&[
        "run",
        "--rm",
        "--read-only",
        "--tmpfs",
        "/scratch",
        "-h",
        "box",
        "-w",
        "/made/here",
        "--entrypoint",
        "sh",
        "busybox",
        "-c",
        "hostname; pwd; touch /scratch/ok && echo tmpfs-ok; touch /nope 2>/dev/null || echo ro-ok",
    ]);
    assert_eq!(out, "box\n/made/here\ntmpfs-ok\nro-ok\n");
    // --init: PID 1 is Wharf's init, the command its child.
    let init = crate::static_init();
    let out = w.ok(&[
        "run",
        "--rm",
        "--init",
        "--init-path",
        path(&init),
        "busybox",
        "sh",
        "-c",
        "cat /proc/1/cmdline | tr '\\0' ' '",
    ]);
    assert!(out.starts_with("/sbin/wharf-init -- sh"), "{out}");
    // -u name:group resolved from the image's files.
    assert_eq!(
        w.ok(&["run", "--rm", "-u", "nobody:nogroup", "busybox", "id"])
            .trim(),
        "uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup)"
    );
    // Resources land in the container's cgroup, which its /sys/fs/cgroup
    // shows (the init mounts it before it is moved there), and the
    // container's processes are in it (pids.current counts them).
    let out = w.ok(&["run", "--rm", "-m", "64m", "--pids-limit", "99", "busybox", "sh", "-c",
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/pids/pids.current 2>/dev/null \
         || cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max /sys/fs/cgroup/pids.current"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[..2],
        [(64u64 << 20).to_string().as_str(), "99"],
        "{out}"
    );
    let current: u32 = lines[2].parse().unwrap_or(0);
    assert!((1..=3).contains(&current), "pids.current {out:?}");
}

#[test]
fn removed_on_exit_containers_get_a_volatile_rootfs() {
    require!(Root, Busybox, Overlay, Registry, Skopeo);
    let env = TestEnv::new();
    let w = Engine::with_busybox(&env);
    let overlay_of = |id: &str| -> String {
        fs_err::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter(|l| l.contains(id) && l.contains(" - overlay "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    // `run --rm`: the writable layer is never synced, nor mounted again.
    let rm = w
        .ok(&["run", "-d", "--rm", "busybox", "sleep", "60"])
        .trim()
        .to_owned();
    let mount = overlay_of(&rm);
    assert!(mount.contains("volatile"), "{mount}");
    // Without --rm it is a plain overlay.
    let kept = w
        .ok(&["run", "-d", "busybox", "sleep", "60"])
        .trim()
        .to_owned();
    let mount = overlay_of(&kept);
    assert!(!mount.is_empty() && !mount.contains("volatile"), "{mount}");
    // `create --rm` then `start`: the rootfs is unmounted after create and
    // mounted again at start, so it is not volatile; the container runs,
    // then goes.
    let created = w
        .ok(&["create", "--rm", "busybox", "sh", "-c", "echo ran"])
        .trim()
        .to_owned();
    assert_eq!(w.ok(&["start", "-a", &created]), "ran\n");
    w.eventually("the --rm container to go", || {
        !w.ok(&["ps", "-aq", "--no-trunc"]).contains(&created)
    });
    w.ok(&["rm", "-f", &rm, &kept]);
    assert!(w.mounts().is_empty(), "{:?}", w.mounts());
    // A container done before its client has read the monitor's report
    // (the client holds the container's lock until then) is still removed.
    for _ in 0..20 {
        let (code, _, _) = w.run(&["run", "--rm", "busybox", "sh", "-c", "exit 3"]);
        assert_eq!(code, 3);
    }
    assert_eq!(w.ok(&["ps", "-aq"]), "");
    // The monitor deletes the moved-aside directory and writable layer
    // once its client is told; nothing stays in the trash.
    let trashes = [w.root.join("trash"), w.root.join("image").join("trash")];
    let left = || -> Vec<std::path::PathBuf> {
        trashes
            .iter()
            .filter_map(|t| fs_err::read_dir(t).ok())
            .flat_map(|d| d.flatten().map(|e| e.path()))
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !left().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(left(), Vec::<std::path::PathBuf>::new());
    let containers: Vec<_> = fs_err::read_dir(w.root.join("containers"))
        .unwrap()
        .flatten()
        .collect();
    assert!(containers.is_empty(), "{containers:?}");
}

#[test]
fn volumes_and_binds() {
    require!(Root, Busybox, Overlay, Registry, Skopeo);
    let env = TestEnv::new();
    let w = Engine::with_busybox(&env);
    // A named volume is made on first use; the image's /etc is copied into
    // it when it is empty.
    w.ok(&[
        "run",
        "--rm",
        "-v",
        "conf:/etc",
        "busybox",
        "sh",
        "-c",
        "test -f /etc/passwd && echo data > /etc/mine",
    ]);
    let ls = w.ok(&["volume", "ls", "-q"]);
    assert_eq!(ls.trim(), "conf");
    assert_eq!(
        w.ok(&[
            "run",
            "--rm",
            "-v",
            "conf:/c:ro",
            "busybox",
            "cat",
            "/c/mine"
        ]),
        "data\n"
    );
    let (code, _, _) = w.run(&[
        "run",
        "--rm",
        "-v",
        "conf:/c:ro",
        "busybox",
        "touch",
        "/c/x",
    ]);
    assert_ne!(code, 0);
    // In use by a stopped container: volume rm refuses.
    w.ok(&[
        "create", "--name", "user", "-v", "conf:/c", "busybox", "true",
    ]);
    let (_, err) = w.fails(&["volume", "rm", "conf"]);
    assert!(err.contains("in use"), "{err}");
    w.ok(&["rm", "user"]);
    // Anonymous volumes: removed by rm -v, not by plain rm.
    w.ok(&["create", "--name", "anon", "-v", "/data", "busybox", "true"]);
    let vols = w.ok(&["volume", "ls", "-q"]);
    assert_eq!(vols.lines().count(), 2);
    w.ok(&["rm", "-v", "anon"]);
    assert_eq!(w.ok(&["volume", "ls", "-q"]).trim(), "conf");
    w.ok(&["volume", "rm", "conf"]);
    // -v creates a missing host directory; --mount type=bind refuses one.
    let host = env.path().join("made-by-v");
    w.ok(&[
        "run",
        "--rm",
        "-v",
        &format!("{}:/h", path(&host)),
        "busybox",
        "sh",
        "-c",
        "echo x > /h/f",
    ]);
    assert_eq!(fs_err::read_to_string(host.join("f")).unwrap(), "x\n");
    let missing = env.path().join("missing");
    let (_, err) = w.fails(&[
        "run",
        "--rm",
        "--mount",
        &format!("type=bind,source={},target=/m", path(&missing)),
        "busybox",
        "true",
    ]);
    assert!(err.contains("does not exist"), "{err}");
    let mounts = w.ok(&[
        "run",
        "--rm",
        "--mount",
        &format!("type=bind,source={},target=/m,readonly", path(&host)),
        "busybox",
        "sh",
        "-c",
        "touch /m/y || echo ro",
    ]);
    assert!(mounts.contains("ro"));
}

#[test]
fn fifty_parallel_runs_and_removals_stay_consistent() {
    require!(Root, Busybox, Overlay, Registry, Skopeo);
    let env = TestEnv::new();
    let w = Engine::with_busybox(&env);
    let root = w.root.clone();
    let spawn = |args: Vec<String>| {
        let root = root.clone();
        std::thread::spawn(move || {
            Command::new(env!("CARGO_BIN_EXE_wharf"))
                .arg("--root")
                .arg(&root)
                .args(&args)
                .stdin(Stdio::null())
                .output()
                .unwrap()
        })
    };
    let runs: Vec<_> = (0..50)
        .map(|i| {
            spawn(vec![
                "run".into(),
                "-d".into(),
                "--name".into(),
                format!("c{i}"),
                "busybox".into(),
                "sleep".into(),
                "1000".into(),
            ])
        })
        .collect();
    // The same name twice at once: exactly one wins.
    let twins: Vec<_> = (0..2)
        .map(|_| {
            spawn(vec![
                "run".into(),
                "-d".into(),
                "--name".into(),
                "twin".into(),
                "busybox".into(),
                "sleep".into(),
                "1000".into(),
            ])
        })
        .collect();
    for r in runs {
        let out = r.join().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let twin_results: Vec<_> = twins.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(
        twin_results.iter().filter(|o| o.status.success()).count(),
        1
    );
    let loser = twin_results.iter().find(|o| !o.status.success()).unwrap();
    assert!(String::from_utf8_lossy(&loser.stderr).contains("already in use"));
    assert_eq!(w.ok(&["ps", "-q"]).lines().count(), 51);
    let removals: Vec<_> = (0..50)
        .map(|i| spawn(vec!["rm".into(), "-f".into(), format!("c{i}")]))
        .collect();
    for r in removals {
        let out = r.join().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    w.ok(&["rm", "-f", "twin"]);
    assert_eq!(w.ok(&["ps", "-aq"]), "");
    assert!(w.mounts().is_empty(), "{:?}", w.mounts());
    let left: Vec<_> = fs_err::read_dir(w.root.join("containers"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // No monitor survives.
    let monitors = Command::new("pgrep")
        .args(["-f", &format!("__monitor {}", path(&w.root))])
        .output()
        .unwrap();
    assert!(
        monitors.stdout.is_empty(),
        "monitors left: {}",
        String::from_utf8_lossy(&monitors.stdout)
    );
    // The database answers and is consistent.
    w.ok(&["run", "--rm", "busybox", "true"]);
}

#[test]
fn health_checks_and_log_drivers() {
    require!(Root, Busybox, Overlay, Registry, Skopeo);
    let env = TestEnv::new();
    let w = Engine::with_busybox(&env);
    w.ok(&[
        "run",
        "-d",
        "--name",
        "hc",
        "--health-cmd",
        "test -f /tmp/ready && echo fine",
        "--health-interval",
        "100ms",
        "--health-retries",
        "2",
        "busybox",
        "sleep",
        "1000",
    ]);
    assert!(w.ok(&["ps"]).contains("(health: starting)") || w.ok(&["ps"]).contains("(unhealthy)"));
    w.eventually("unhealthy", || {
        w.inspect("hc", "{{.State.Health.Status}}") == "unhealthy"
    });
    assert_eq!(
        w.ok(&["ps", "-q", "--filter", "health=unhealthy"])
            .lines()
            .count(),
        1
    );
    w.ok(&["exec", "hc", "touch", "/tmp/ready"]);
    w.eventually("healthy", || {
        w.inspect("hc", "{{.State.Health.Status}}") == "healthy"
    });
    let health: serde_json::Value =
        serde_json::from_str(&w.inspect("hc", "{{json .State.Health}}")).unwrap();
    let last = health["Log"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["ExitCode"].as_i64(), last["Output"].as_str()),
        (Some(0), Some("fine\n"))
    );
    assert!(w.ok(&["ps"]).contains("(healthy)"));
    // A check past its timeout is killed and fails.
    w.ok(&[
        "run",
        "-d",
        "--name",
        "slow",
        "--health-cmd",
        "sleep 5",
        "--health-interval",
        "100ms",
        "--health-timeout",
        "200ms",
        "--health-retries",
        "1",
        "busybox",
        "sleep",
        "1000",
    ]);
    w.eventually("the timeout", || {
        w.inspect("slow", "{{.State.Health.Status}}") == "unhealthy"
    });
    let out = w.inspect("slow", "{{json .State.Health.Log}}");
    assert!(out.contains("exceeded timeout"), "{out}");
    // --no-healthcheck: none.
    w.ok(&[
        "run",
        "-d",
        "--name",
        "none",
        "--no-healthcheck",
        "busybox",
        "sleep",
        "1000",
    ]);
    assert_eq!(w.inspect("none", "{{json .State.Health}}"), "null");

    // --log-driver none keeps nothing to read; json-file rotates.
    w.ok(&[
        "run",
        "--name",
        "quiet",
        "--log-driver",
        "none",
        "busybox",
        "echo",
        "lost",
    ]);
    let (_, err) = w.fails(&["logs", "quiet"]);
    assert!(err.contains("does not support reading"), "{err}");
    w.ok(&[
        "run",
        "--name",
        "chatty",
        "--log-opt",
        "max-size=2k",
        "--log-opt",
        "max-file=2",
        "busybox",
        "sh",
        "-c",
        "i=0; while [ $i -lt 300 ]; do echo line-$i; i=$((i+1)); done",
    ]);
    let logs = w.ok(&["logs", "chatty"]);
    assert!(
        logs.ends_with("line-299\n") && !logs.contains("line-0\n"),
        "rotated logs: {logs}"
    );
    let (_, err) = w.fails(&["run", "--log-opt", "max-file=2", "busybox", "true"]);
    assert!(err.contains("max-size"), "{err}");
}

#[test]
fn debian_image_from_the_registry() {
    require!(Root, Overlay, Registry, Skopeo, Debootstrap);
    use wharf_testkit::{LayerContent, OciLayout, TestPlatform};
    let env = TestEnv::new();
    let registry = LocalRegistry::start(RegistryOptions::plain()).expect("start docker-registry");
    let debian = wharf_testkit::debian_minbase().unwrap();
    let layout = OciLayout::create(&env.path().join("layout")).unwrap();
    let image = layout
        .add_image(
            &[
                LayerContent::Dir(debian.usr_layer.clone()),
                LayerContent::Dir(debian.rest_layer.clone()),
            ],
            LayerCompression::Gzip,
            &TestPlatform::host(),
        )
        .unwrap();
    layout.tag("min", &image.manifest).unwrap();
    registry
        .skopeo_copy_in(&layout.reference("min"), "debian/minbase:1", false)
        .unwrap();
    let name = format!("{}/debian/minbase:1", registry.host());
    let w = Engine {
        cli: crate::Cli {
            root: env.path().join("store"),
        },
        _registry: registry,
    };
    // --pull missing pulls it on first use (TLS off through the registry's
    // own config would be the norm; here the pull is explicit).
    w.ok(&["pull", "-q", "--tls-verify=false", &name]);
    // Users and groups come from the image's own /etc/passwd and /etc/group.
    assert_eq!(
        w.ok(&["run", "--rm", "-u", "daemon", &name, "id"]).trim(),
        "uid=1(daemon) gid=1(daemon) groups=1(daemon)"
    );
    assert_eq!(
        w.ok(&[
            "run",
            "--rm",
            "-u",
            "nobody:nogroup",
            "--group-add",
            "staff",
            &name,
            "id"
        ])
        .trim(),
        "uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup),50(staff)"
    );
    let (_, err) = w.fails(&["run", "--rm", "-u", "nosuchuser", &name, "id"]);
    assert!(err.contains("nosuchuser"), "{err}");
    w.ok(&["run", "-d", "--name", "deb", &name, "sleep", "1000"]);
    let release = w.ok(&["exec", "deb", "cat", "/etc/os-release"]);
    assert!(release.contains("Debian GNU/Linux"), "{release}");
    assert_eq!(
        w.ok(&["exec", "-u", "daemon", "deb", "sh", "-c", "echo $HOME"])
            .trim(),
        "/usr/sbin"
    );
    // A change in the container shows in diff and survives a restart.
    w.ok(&["exec", "deb", "sh", "-c", "echo kept > /root/note"]);
    w.ok(&["restart", "-t", "1", "deb"]);
    assert_eq!(w.ok(&["exec", "deb", "cat", "/root/note"]), "kept\n");
    assert!(w.ok(&["diff", "deb"]).contains("A /root/note"));
}
