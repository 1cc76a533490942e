//! Pods end to end with real traffic: members talking over the pod's
//! localhost, sharing its hostname (and, with `--share +pid`, its
//! processes), a published port reaching a member from the host, `pod
//! stop|start|restart|kill` keeping members working, an infra container
//! restarted under a member, `pod ps|inspect|top|stats|logs`, a pod without
//! infra, what the engine refuses, and no container, mount, cgroup, veth,
//! rule or address left after `pod rm -f`.

use std::path::PathBuf;

use wharf_testkit::{require, TestEnv};

use crate::network::{assert_no_leaks, http_get, httpd, wait_http, Net};
use crate::run::Engine;

/// Removes the test's pods (with their containers) whatever happens;
/// declared after a [`Net`] so that it drops first.
struct Pods<'a> {
    engine: &'a Engine,
}

impl Drop for Pods<'_> {
    fn drop(&mut self) {
        let Ok(out) = self.engine.cmd().args(["pod", "ps", "-q"]).output() else {
            return;
        };
        for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = self.engine.cmd().args(["pod", "rm", "-f", id]).output();
        }
    }
}

/// `pod create --init-path <static wharf-init> ARGS…`: the test build's
/// `wharf-init` is dynamic and cannot run in the infra's empty rootfs.
fn create_pod(engine: &Engine, args: &[&str]) -> String {
    let init = crate::static_init();
    let mut all = vec!["pod", "create", "--init-path", init.to_str().unwrap()];
    all.extend_from_slice(args);
    engine.ok(&all).trim().to_owned()
}

fn pod_inspect(engine: &Engine, pod: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(&engine.ok(&["pod", "inspect", pod])).unwrap();
    v[0].clone()
}

/// The pod's cgroup directories left on the host.
fn pod_cgroups(pod_id: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs_err::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let dir = entry.path().join("wharf").join(format!("pod-{pod_id}"));
        if dir.exists() {
            out.push(dir);
        }
    }
    out
}

/// No container, mount or cgroup of the engine's pods is left.
fn assert_nothing_left(engine: &Engine, pod_ids: &[String]) {
    assert_eq!(engine.ok(&["pod", "ps", "-q"]), "");
    assert_eq!(engine.ok(&["ps", "-aq"]), "");
    assert_eq!(engine.mounts(), Vec::<String>::new());
    for id in pod_ids {
        assert_eq!(pod_cgroups(id), Vec::<PathBuf>::new(), "cgroups of {id}");
    }
    let dirs: Vec<_> = fs_err::read_dir(engine.root.join("containers"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert_eq!(dirs, Vec::<PathBuf>::new(), "container directories left");
}

/// `wget -qO- URL` from a new member of `pod`, retried until it answers.
fn fetch_in_pod(engine: &Engine, pod: &str, url: &str) -> String {
    let mut last = String::new();
    engine.eventually(&format!("{url} from pod {pod}"), || {
        let (code, out, err) = engine.run(&[
            "run", "--rm", "--pod", pod, "busybox", "timeout", "5", "wget", "-qO-", url,
        ]);
        last = format!("{out}{err}");
        code == 0 && !out.trim().is_empty()
    });
    last.trim().to_owned()
}

#[test]
fn pod_members_share_localhost_and_hostname_and_pids_when_asked() {
    require!(Root, Busybox, Overlay, Registry, Skopeo);
    let env = TestEnv::new();
    let engine = Engine::with_busybox(&env);
    let _pods = Pods { engine: &engine };

    let p1 = create_pod(&engine, &["--name", "p1"]);
    assert_eq!(p1.len(), 64, "{p1}");
    let infra = pod_inspect(&engine, "p1")["InfraContainerID"]
        .as_str()
        .unwrap()
        .to_owned();
    // The infra container is a container: `ps -a` shows it, created.
    let ps = engine.ok(&[
        "ps",
        "-a",
        "--no-trunc",
        "--format",
        "{{.ID}} {{.Names}} {{.Status}}",
    ]);
    assert!(
        ps.contains(&format!("{infra} {}-infra Created", &p1[..12])),
        "{ps}"
    );

    engine.ok(&[
        "run",
        "-d",
        "--pod",
        "p1",
        "--name",
        "aa",
        "busybox",
        "sh",
        "-c",
        "mkdir -p /www && echo hello-pod > /www/index.html && exec httpd -f -p 8080 -h /www",
    ]);
    // Starting a member started the infra.
    assert_eq!(engine.inspect(&infra, "{{.State.Status}}"), "running");
    assert_eq!(
        fetch_in_pod(&engine, "p1", "http://127.0.0.1:8080/"),
        "hello-pod"
    );
    // One hostname: the pod's name; the infra's /etc/hosts.
    assert_eq!(engine.ok(&["exec", "aa", "hostname"]).trim(), "p1");
    assert_eq!(
        engine
            .ok(&["run", "--rm", "--pod", "p1", "busybox", "hostname"])
            .trim(),
        "p1"
    );
    let hosts = engine.ok(&["exec", "aa", "cat", "/etc/hosts"]);
    assert!(hosts.contains("\tp1\n"), "{hosts}");
    // Without pid in --share, a member sees only its own processes.
    let ps = engine.ok(&["run", "--rm", "--pod", "p1", "busybox", "ps"]);
    assert!(!ps.contains("httpd"), "{ps}");

    // --share +pid: the members see each other's processes and the pause.
    create_pod(&engine, &["--name", "p2", "--share", "+pid"]);
    assert_eq!(
        pod_inspect(&engine, "p2")["SharedNamespaces"],
        serde_json::json!(["net", "ipc", "uts", "pid"])
    );
    engine.ok(&[
        "run", "-d", "--pod", "p2", "--name", "sl", "busybox", "sleep", "600",
    ]);
    let ps = engine.ok(&["run", "--rm", "--pod", "p2", "busybox", "ps"]);
    assert!(ps.contains("sleep 600"), "{ps}");
    assert!(ps.contains("/sbin/wharf-init --pause"), "{ps}");
    // The pause is PID 1 of the shared namespace.
    assert!(
        ps.lines()
            .any(|l| l.trim_start().starts_with("1 ") && l.contains("--pause")),
        "{ps}"
    );
    // IPC is shared too: one namespace for every member.
    let ipc = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["readlink", "/proc/self/ns/ipc"]);
        engine.ok(&all)
    };
    assert_eq!(
        ipc(&["exec", "sl"]),
        ipc(&["run", "--rm", "--pod", "p2", "busybox"])
    );

    // What a pod owns is refused on a member, and the infra goes only with
    // its pod.
    let (code, err) = engine.fails(&["run", "--rm", "--pod", "p1", "-p", "80", "busybox", "true"]);
    assert_eq!(code, 125);
    assert!(err.contains("pod create -p"), "{err}");
    let (_, err) = engine.fails(&[
        "run",
        "--rm",
        "--pod",
        "p1",
        "--network",
        "none",
        "busybox",
        "true",
    ]);
    assert!(err.contains("--network cannot be set"), "{err}");
    let (_, err) = engine.fails(&[
        "run",
        "--rm",
        "--pod",
        "p1",
        "--hostname",
        "x",
        "busybox",
        "true",
    ]);
    assert!(err.contains("UTS namespace"), "{err}");
    let (_, err) = engine.fails(&["rm", "-f", &infra]);
    assert!(
        err.contains("is the infra container of pod p1, which has 1 other container(s)"),
        "{err}"
    );
    let (_, err) = engine.fails(&["run", "--rm", "--pod", "nosuchpod", "busybox", "true"]);
    assert!(err.contains("no such pod: nosuchpod"), "{err}");
    let (_, err) = engine.fails(&["pod", "create", "--name", "p1"]);
    assert!(err.contains("pod name \"p1\" is already in use"), "{err}");
    // `pod rm` of a running pod needs -f.
    let (code, err) = engine.fails(&["pod", "rm", "p1"]);
    assert_eq!(code, 1);
    assert!(err.contains("running container(s)"), "{err}");
    assert_eq!(engine.inspect("aa", "{{.State.Status}}"), "running");

    let p2 = pod_inspect(&engine, "p2")["Id"]
        .as_str()
        .unwrap()
        .to_owned();
    engine.ok(&["pod", "rm", "-f", "p1", "p2"]);
    assert_nothing_left(&engine, &[p1, p2]);
}

#[test]
fn pod_ports_reach_a_member_through_stop_start_restart_and_kill() {
    require!(Root, Busybox, Overlay, Registry, Skopeo);
    let env = TestEnv::new();
    let engine = Engine::with_busybox(&env);
    let mut net = Net::new(&engine);
    let _pods = Pods { engine: &engine };
    let network = env.name();
    let n = net.create(&network, &[]);
    let free = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);

    let pod = create_pod(
        &engine,
        &[
            "--name",
            "web",
            "--network",
            &network,
            "-p",
            &format!("{port}:80"),
            "--label",
            "tier=front",
        ],
    );
    engine.ok(&[
        "run",
        "-d",
        "--pod",
        "web",
        "--name",
        "srv",
        "busybox",
        "sh",
        "-c",
        &httpd("in-pod"),
    ]);
    engine.ok(&[
        "run",
        "-d",
        "--pod",
        "web",
        "--name",
        "talker",
        "busybox",
        "sh",
        "-c",
        "echo hi-from-talker; exec sleep 600",
    ]);
    assert_eq!(wait_http(&engine, "127.0.0.1", port), "in-pod");

    let v = pod_inspect(&engine, "web");
    assert_eq!(v["Id"], pod.as_str());
    assert_eq!(v["State"], "Running");
    assert_eq!(v["Hostname"], "web");
    assert_eq!(v["Labels"]["tier"], "front");
    assert_eq!(v["CreateInfra"], true);
    assert_eq!(v["NumContainers"], 3);
    assert_eq!(
        v["InfraConfig"]["PortBindings"]["80/tcp"][0]["HostPort"],
        port.to_string()
    );
    assert_eq!(v["InfraConfig"]["Networks"], serde_json::json!([network]));
    let names: Vec<&str> = v["Containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["Name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"srv") && names.contains(&"talker"), "{v}");
    let infra = v["InfraContainerID"].as_str().unwrap().to_owned();
    let members = [
        infra.clone(),
        engine.inspect("srv", "{{.Id}}"),
        engine.inspect("talker", "{{.Id}}"),
    ];
    // Other containers on the network reach the pod by its name.
    let out = engine.ok(&[
        "run",
        "--rm",
        "--network",
        &network,
        "busybox",
        "timeout",
        "5",
        "wget",
        "-qO-",
        "http://web/",
    ]);
    assert_eq!(out.trim(), "in-pod");

    let ps = engine.ok(&["pod", "ps"]);
    let header = ps.lines().next().unwrap();
    for column in [
        "POD ID",
        "NAME",
        "STATUS",
        "CREATED",
        "INFRA ID",
        "# OF CONTAINERS",
    ] {
        assert!(header.contains(column), "{ps}");
    }
    let row = ps.lines().nth(1).unwrap();
    assert!(row.starts_with(&pod[..12]), "{ps}");
    assert!(row.contains(" web ") && row.contains("Running"), "{ps}");
    assert!(
        row.contains(&infra[..12]) && row.trim_end().ends_with('3'),
        "{ps}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&engine.ok(&["pod", "ps", "--format", "json"])).unwrap();
    assert_eq!(json[0]["Name"], "web");
    assert_eq!(json[0]["Status"], "Running");
    assert_eq!(json[0]["Containers"].as_array().unwrap().len(), 3);
    assert_eq!(engine.ok(&["pod", "ps", "-q", "--no-trunc"]).trim(), pod);

    // top: every member's processes; stats: a row per container.
    let top = engine.ok(&["pod", "top", "web"]);
    for process in ["httpd", "sleep 600", "wharf-init --pause"] {
        assert!(top.contains(process), "{top}");
    }
    let stats = engine.ok(&["pod", "stats", "--no-stream", "web"]);
    assert_eq!(stats.lines().count(), 4, "{stats}");
    assert!(stats.contains("srv") && stats.contains("talker"), "{stats}");
    let logs = engine.ok(&["pod", "logs", "web"]);
    assert!(logs.contains("talker hi-from-talker\n"), "{logs}");

    // stop, start, restart: the port keeps reaching the member.
    engine.ok(&["pod", "stop", "-t", "2", "web"]);
    assert_eq!(pod_inspect(&engine, "web")["State"], "Exited");
    assert!(http_get("127.0.0.1", port).is_err());
    engine.ok(&["pod", "start", "web"]);
    assert_eq!(pod_inspect(&engine, "web")["State"], "Running");
    assert_eq!(wait_http(&engine, "127.0.0.1", port), "in-pod");
    engine.ok(&["pod", "restart", "-t", "2", "web"]);
    assert_eq!(wait_http(&engine, "127.0.0.1", port), "in-pod");

    // The infra restarted under a stopped member: the member's next start
    // joins the new namespaces.
    engine.ok(&["stop", "-t", "2", "srv"]);
    engine.ok(&["restart", &infra]);
    assert_eq!(pod_inspect(&engine, "web")["State"], "Degraded");
    engine.ok(&["start", "srv"]);
    assert_eq!(wait_http(&engine, "127.0.0.1", port), "in-pod");
    let infra_pid = engine.inspect(&infra, "{{.State.Pid}}");
    let srv_pid = engine.inspect("srv", "{{.State.Pid}}");
    let ns = |pid: &str| fs_err::read_link(format!("/proc/{pid}/ns/net")).unwrap();
    assert_eq!(ns(&infra_pid), ns(&srv_pid));

    // kill: every container ends.
    engine.ok(&["pod", "kill", "web"]);
    engine.eventually("the killed pod to exit", || {
        pod_inspect(&engine, "web")["State"] == "Exited"
    });
    let (_, err) = engine.fails(&["pod", "kill", "web"]);
    assert!(err.contains("no container of pod web is running"), "{err}");

    engine.ok(&["pod", "start", "web"]);
    assert_eq!(wait_http(&engine, "127.0.0.1", port), "in-pod");
    engine.ok(&["pod", "rm", "-f", "web"]);
    assert!(http_get("127.0.0.1", port).is_err());
    let bridge = n["Options"]["com.docker.network.bridge.name"]
        .as_str()
        .unwrap();
    assert_no_leaks(n["Id"].as_str().unwrap(), bridge, &members);
    assert_nothing_left(&engine, &[pod]);
}

#[test]
fn pods_without_infra_share_nothing_and_failed_creates_leave_nothing() {
    require!(Root, Busybox, Overlay, Registry, Skopeo);
    let env = TestEnv::new();
    let engine = Engine::with_busybox(&env);
    let _pods = Pods { engine: &engine };

    let solo = create_pod(&engine, &["--name", "solo", "--infra=false"]);
    let v = pod_inspect(&engine, "solo");
    assert_eq!(v["CreateInfra"], false);
    assert_eq!(v["SharedNamespaces"], serde_json::json!([]));
    assert!(v.get("InfraContainerID").is_none(), "{v}");
    assert_eq!(engine.ok(&["ps", "-aq"]), "");
    for name in ["cx", "cy"] {
        engine.ok(&[
            "run", "-d", "--pod", "solo", "--name", name, "busybox", "sleep", "600",
        ]);
    }
    assert_eq!(pod_inspect(&engine, "solo")["State"], "Running");
    let hostname = |c: &str| engine.ok(&["exec", c, "hostname"]);
    assert_ne!(hostname("cx"), hostname("cy"));
    let ns =
        |c: &str, kind: &str| engine.ok(&["exec", c, "readlink", &format!("/proc/self/ns/{kind}")]);
    for kind in ["net", "ipc", "uts", "pid"] {
        assert_ne!(ns("cx", kind), ns("cy", kind), "{kind}");
    }
    // Without infra, a member has its own network and may publish.
    let out = engine.ok(&["exec", "cx", "cat", "/proc/net/dev"]);
    assert!(out.contains("eth0:"), "{out}");
    let (_, err) = engine.fails(&["pod", "create", "--infra=false", "-p", "80"]);
    assert!(err.contains("need --infra"), "{err}");
    let (_, err) = engine.fails(&["pod", "create", "--infra=false", "--share", "net"]);
    assert!(err.contains("--share needs --infra"), "{err}");
    let (_, err) = engine.fails(&["pod", "create", "--share", "mnt"]);
    assert!(
        err.contains("\"mnt\" is not a namespace a pod can share"),
        "{err}"
    );

    // A failed create leaves nothing: an unknown network, a taken infra
    // name.
    let before = engine.ok(&["ps", "-aq", "--no-trunc"]);
    let init = crate::static_init();
    let init = init.to_str().unwrap();
    let (_, err) = engine.fails(&[
        "pod",
        "create",
        "--init-path",
        init,
        "--name",
        "bad",
        "--network",
        "nosuchnet",
    ]);
    assert!(err.contains("nosuchnet"), "{err}");
    let (_, err) = engine.fails(&[
        "pod",
        "create",
        "--init-path",
        init,
        "--name",
        "bad",
        "--infra-name",
        "cx",
    ]);
    assert!(err.contains("name \"cx\" is already in use"), "{err}");
    assert_eq!(engine.ok(&["ps", "-aq", "--no-trunc"]), before);
    let pods = engine.ok(&["pod", "ps", "--format", "json"]);
    assert!(!pods.contains("\"bad\""), "{pods}");
    let dirs = fs_err::read_dir(engine.root.join("containers"))
        .unwrap()
        .count();
    assert_eq!(dirs, 2, "container directories besides cx and cy");

    // An infra without net in --share has no network of its own; the
    // members have theirs.
    let nonet = create_pod(&engine, &["--name", "nonet", "--share", "ipc"]);
    assert_eq!(
        pod_inspect(&engine, "nonet")["InfraConfig"]["Networks"],
        serde_json::json!([])
    );
    let links = engine.ok(&[
        "run",
        "--rm",
        "--pod",
        "nonet",
        "busybox",
        "ls",
        "/sys/class/net",
    ]);
    assert!(links.contains("eth0"), "{links}");
    engine.ok(&["pod", "rm", "-f", "nonet"]);

    let (_, err) = engine.fails(&["pod", "rm", "solo"]);
    assert!(err.contains("force remove"), "{err}");
    engine.ok(&["pod", "rm", "-f", "solo"]);
    assert_nothing_left(&engine, &[solo, nonet]);
}
