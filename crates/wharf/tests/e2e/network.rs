//! Networking end to end with real traffic: user networks (by IP, by name
//! and alias through the embedded DNS), the host, published ports from the
//! host's loopback and address, from another "host" (a network namespace
//! the test makes) and from containers (hairpin), UDP, `-P`, internal
//! networks, isolation, `network connect`/`disconnect`, IPv6, and no leaked
//! veths, rules, addresses or DNS records after many cycles and after
//! monitors killed during setup.

use std::io::{Read as _, Write as _};
use std::net::{TcpStream, UdpSocket};
use std::os::fd::AsFd as _;
use std::process::Command;
use std::time::Duration;

use wharf_testkit::{require, TestEnv};

use crate::run::Engine;

/// A host socket that takes one TCP connection: its port, and what it
/// received with the peer's address.
fn receive_once() -> (u16, std::thread::JoinHandle<(Vec<u8>, std::net::IpAddr)>) {
    let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accept = std::thread::spawn(move || {
        let (mut s, peer) = listener.accept().unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        (got, peer.ip())
    });
    (port, accept)
}

/// The busybox command that serves `text` over HTTP on port 80.
pub(crate) fn httpd(text: &str) -> String {
    format!("mkdir -p /www && echo {text} > /www/index.html && exec httpd -f -p 80 -h /www")
}

/// Removes the test's networks (and its containers, through `Engine`'s
/// drop) whatever happens.
pub(crate) struct Net<'a> {
    engine: &'a Engine,
    names: Vec<String>,
}

impl<'a> Net<'a> {
    pub(crate) fn new(engine: &'a Engine) -> Self {
        Net {
            engine,
            names: Vec::new(),
        }
    }

    /// `network create NAME ARGS…`; the inspect object.
    pub(crate) fn create(&mut self, name: &str, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["network", "create"];
        all.extend_from_slice(args);
        all.push(name);
        self.engine.ok(&all);
        self.names.push(name.to_owned());
        self.inspect(name)
    }

    fn inspect(&self, name: &str) -> serde_json::Value {
        let v: serde_json::Value =
            serde_json::from_str(&self.engine.ok(&["network", "inspect", name])).unwrap();
        v[0].clone()
    }
}

impl Drop for Net<'_> {
    fn drop(&mut self) {
        let Ok(out) = self.engine.cmd().args(["ps", "-aq", "--no-trunc"]).output() else {
            return;
        };
        for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = self.engine.cmd().args(["rm", "-f", "-v", id]).output();
        }
        for n in &self.names {
            let _ = self.engine.cmd().args(["network", "rm", n]).output();
        }
    }
}

/// A container's address on a network.
fn address(engine: &Engine, container: &str, network: &str) -> String {
    engine.inspect(
        container,
        &format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}"),
    )
}

/// The host's first global IPv4 address (eth0's here).
pub(crate) fn host_address() -> String {
    let out = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .expect("a global IPv4 address on the host")
        .to_owned()
}

/// GET / over plain TCP; the body's first line.
pub(crate) fn http_get(addr: &str, port: u16) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(
        &format!("{addr}:{port}").parse().unwrap(),
        Duration::from_secs(3),
    )?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .trim()
        .to_owned())
}

/// Waits until `addr:port` serves HTTP.
pub(crate) fn wait_http(engine: &Engine, addr: &str, port: u16) -> String {
    let mut last = String::new();
    engine.eventually(&format!("http on {addr}:{port}"), || {
        match http_get(addr, port) {
            Ok(body) if !body.is_empty() => {
                last = body;
                true
            }
            _ => false,
        }
    });
    last
}

/// Veths still attached to `bridge`.
pub(crate) fn bridge_ports(bridge: &str) -> Vec<String> {
    match fs_err::read_dir(format!("/sys/class/net/{bridge}/brif")) {
        Ok(d) => d
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The IPv4 GSO limit of each port of `bridge` and of the bridge itself
/// (`None` each where the kernel, before 6.3, does not report one).
pub(crate) fn gso_limits(bridge: &str) -> Vec<(String, Option<u32>)> {
    let netlink = wharf_net::Netlink::open().unwrap();
    let mut links = bridge_ports(bridge);
    links.push(bridge.to_owned());
    links
        .into_iter()
        .map(|l| {
            let size = netlink.gso_ipv4_max_size(&l).unwrap();
            (l, size)
        })
        .collect()
}

/// The allocations left in a network's address pool.
pub(crate) fn allocations(network_id: &str) -> Vec<serde_json::Value> {
    let path = format!("/run/wharf/networks/{network_id}/ipam.json");
    match fs_err::read(&path) {
        Ok(bytes) => {
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            v["allocations"].as_array().cloned().unwrap_or_default()
        }
        Err(_) => Vec::new(),
    }
}

/// Wharf's nft table as text ("" when absent).
pub(crate) fn nft_table() -> String {
    let out = Command::new("nft")
        .args(["list", "table", "inet", "wharf"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Nothing of `ids` is left: no veth on `bridge`, no allocation, no rule.
pub(crate) fn assert_no_leaks(network_id: &str, bridge: &str, ids: &[String]) {
    // The kernel removes a dead namespace's veth asynchronously.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !bridge_ports(bridge).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(bridge_ports(bridge), Vec::<String>::new(), "veths left");
    assert_eq!(
        allocations(network_id),
        Vec::<serde_json::Value>::new(),
        "addresses left"
    );
    let table = nft_table();
    for id in ids {
        assert!(!table.contains(&id[..12]), "rules of {id} left:\n{table}");
        // Also the cgroup a monitor killed while it created the container
        // made before the runtime saved any state.
        let cgroups = Engine::cgroups_of(id);
        assert!(cgroups.is_empty(), "cgroups of {id} left: {cgroups:?}");
    }
}

#[test]
fn containers_talk_by_ip_name_and_alias_and_reach_the_host() {
    require!(Root, Busybox, Overlay, Registry, Skopeo);
    let env = TestEnv::new();
    let engine = Engine::with_busybox(&env);
    let mut net = Net::new(&engine);
    let name = env.name();
    let n = net.create(&name, &[]);
    assert_eq!(n["Driver"], "bridge");
    assert_eq!(n["DNSEnabled"], true);
    let bridge = n["Options"]["com.docker.network.bridge.name"]
        .as_str()
        .unwrap()
        .to_owned();
    let gateway = n["IPAM"]["Config"][0]["Gateway"]
        .as_str()
        .unwrap()
        .to_owned();

    let web = engine
        .ok(&[
            "run",
            "-d",
            "--name",
            "web",
            "--network",
            &name,
            "--network-alias",
            "www",
            "busybox",
            "sh",
            "-c",
            &httpd("hello-web"),
        ])
        .trim()
        .to_owned();
    let ip = address(&engine, "web", &name);
    assert!(
        ip.starts_with(&gateway[..gateway.rfind('.').unwrap()]),
        "{ip} vs {gateway}"
    );
    // The container's link and the bridge take large IPv4 segments.
    for (link, size) in gso_limits(&bridge) {
        assert!(
            size.is_none() || size == Some(wharf_net::BIG_TCP_MAX_SIZE),
            "{link}: {size:?}"
        );
    }
    // The host reaches the container directly on the bridge.
    assert_eq!(wait_http(&engine, &ip, 80), "hello-web");
    for target in [ip.as_str(), "web", "www", "web.dns.wharf", &web[..12]] {
        let out = engine.ok(&[
            "run",
            "--rm",
            "--network",
            &name,
            "busybox",
            "timeout",
            "5",
            "wget",
            "-qO-",
            &format!("http://{target}/"),
        ]);
        assert_eq!(out.trim(), "hello-web", "by {target}");
    }
    let lookup = engine.ok(&[
        "run",
        "--rm",
        "--network",
        &name,
        "busybox",
        "nslookup",
        "web",
    ]);
    assert!(lookup.contains(&ip), "{lookup}");
    let resolv = engine.ok(&[
        "run",
        "--rm",
        "--network",
        &name,
        "busybox",
        "cat",
        "/etc/resolv.conf",
    ]);
    assert!(
        resolv.contains(&format!("nameserver {gateway}")),
        "{resolv}"
    );
    let hosts = engine.ok(&["exec", "web", "cat", "/etc/hosts"]);
    assert!(hosts.contains(&ip), "{hosts}");

    // `network inspect` lists the running container.
    let n = net.inspect(&name);
    assert_eq!(n["Containers"][&web]["Name"], "web", "{n}");

    // The container reaches the host through the gateway.
    let (port, accept) = receive_once();
    engine.ok(&[
        "run",
        "--rm",
        "--network",
        &name,
        "busybox",
        "sh",
        "-c",
        &format!("echo to-host | nc {gateway} {port}"),
    ]);
    let (got, peer) = accept.join().unwrap();
    assert_eq!(String::from_utf8_lossy(&got).trim(), "to-host");
    assert!(
        peer.to_string()
            .starts_with(&gateway[..gateway.rfind('.').unwrap()]),
        "{peer}"
    );

    // A bulk TCP transfer to the host arrives whole. The links allow IPv4
    // segments up to 512 KiB (BIG TCP), which a stream this size uses.
    let (port, receiver) = receive_once();
    let sent = engine.ok(&[
        "run",
        "--rm",
        "--network",
        &name,
        "busybox",
        "sh",
        "-c",
        &format!(
            "dd if=/dev/urandom of=/tmp/blob bs=1M count=32 2>/dev/null && \
             nc {gateway} {port} < /tmp/blob && sha256sum /tmp/blob"
        ),
    ]);
    let (got, _) = receiver.join().unwrap();
    assert_eq!(got.len(), 32 << 20);
    let blob = env.path().join("bulk");
    fs_err::write(&blob, &got).unwrap();
    let received = Command::new("sha256sum").arg(&blob).output().unwrap();
    let received = String::from_utf8_lossy(&received.stdout);
    assert_eq!(
        sent.split_whitespace().next(),
        received.split_whitespace().next(),
        "sent {sent}, received {received}"
    );

    engine.ok(&["rm", "-f", "web"]);
    assert_no_leaks(n["Id"].as_str().unwrap(), &bridge, &[web]);
    // Nothing of the container is left in the network's DNS records.
    let records = fs_err::read_to_string(engine.root.join("dns").join(format!("{name}.json")))
        .unwrap_or_default();
    assert!(!records.contains("\"web\""), "{records}");
}

#[test]
fn published_ports_reach_the_container_from_everywhere() {
    require!(Root, Busybox, Overlay, Registry, Skopeo);
    let env = TestEnv::new();
    let engine = Engine::with_busybox(&env);
    let mut net = Net::new(&engine);
    let name = env.name();
    let n = net.create(&name, &[]);
    let host = host_address();

    let free = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let web = engine
        .ok(&[
            "run",
            "-d",
            "--name",
            "pub",
            "--network",
            &name,
            "-p",
            &format!("{port}:80"),
            "-p",
            "5353/udp",
            "busybox",
            "sh",
            "-c",
            &httpd("published"),
        ])
        .trim()
        .to_owned();
    assert_eq!(wait_http(&engine, "127.0.0.1", port), "published");
    assert_eq!(http_get(&host, port).unwrap(), "published");
    // The port is reserved: a host process cannot take it.
    assert!(std::net::TcpListener::bind(("0.0.0.0", port)).is_err());

    // `port` and `ps` show the mappings, the random UDP one resolved.
    let ports = engine.ok(&["port", "pub"]);
    assert!(
        ports.contains(&format!("80/tcp -> 0.0.0.0:{port}")),
        "{ports}"
    );
    let udp_port: u16 = ports
        .lines()
        .find(|l| l.starts_with("5353/udp"))
        .and_then(|l| l.rsplit(':').next())
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no udp mapping in {ports}"));

    // Hairpin: a container reaches the published port through the host's
    // address, its own included.
    for from in ["--name=other", "--name=self-ish"] {
        let out = engine.ok(&[
            "run",
            "--rm",
            from,
            "--network",
            &name,
            "busybox",
            "timeout",
            "5",
            "wget",
            "-qO-",
            &format!("http://{host}:{port}/"),
        ]);
        assert_eq!(out.trim(), "published");
    }
    let own = engine.ok(&[
        "exec",
        "pub",
        "timeout",
        "5",
        "wget",
        "-qO-",
        &format!("http://{host}:{port}/"),
    ]);
    assert_eq!(own.trim(), "published");

    // Another host: a namespace behind a veth, routed through this host.
    let other = OtherHost::new(&env);
    let out = other.run(&[
        "busybox",
        "timeout",
        "5",
        "busybox",
        "wget",
        "-qO-",
        &format!("http://{}:{port}/", other.host_side),
    ]);
    assert_eq!(out.trim(), "published");

    // UDP: an echo server inside the container's namespace answers what
    // reaches the published port.
    let pid: i32 = engine.inspect("pub", "{{.State.Pid}}").parse().unwrap();
    let ns = fs_err::File::open(format!("/proc/{pid}/ns/net")).unwrap();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let echo = std::thread::spawn(move || {
        nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let s = UdpSocket::bind("0.0.0.0:5353").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        ready_tx.send(()).unwrap();
        let mut buf = [0u8; 64];
        if let Ok((len, peer)) = s.recv_from(&mut buf) {
            s.send_to(&buf[..len], peer).unwrap();
        }
    });
    ready_rx.recv().unwrap();
    let client = UdpSocket::bind("0.0.0.0:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    client
        .send_to(b"ping-udp", (host.as_str(), udp_port))
        .unwrap();
    let mut buf = [0u8; 64];
    let (len, _) = client.recv_from(&mut buf).expect("the UDP echo answers");
    assert_eq!(&buf[..len], b"ping-udp");
    echo.join().unwrap();

    // -P: every exposed port on a free host port.
    let all = engine
        .ok(&[
            "run",
            "-d",
            "--network",
            &name,
            "--expose",
            "80",
            "-P",
            "busybox",
            "sh",
            "-c",
            &httpd("all"),
        ])
        .trim()
        .to_owned();
    let line = engine.ok(&["port", &all, "80/tcp"]);
    let random: u16 = line.trim().rsplit(':').next().unwrap().parse().unwrap();
    assert_eq!(wait_http(&engine, "127.0.0.1", random), "all");

    // A taken port is refused, and the failed run leaves nothing.
    let (code, err) = engine.fails(&[
        "run",
        "-d",
        "--network",
        &name,
        "-p",
        &format!("{port}:80"),
        "busybox",
        "true",
    ]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains(&port.to_string()), "{err}");

    engine.ok(&["rm", "-f", "pub", &all]);
    assert!(http_get("127.0.0.1", port).is_err());
    let bridge = n["Options"]["com.docker.network.bridge.name"]
        .as_str()
        .unwrap();
    assert_no_leaks(n["Id"].as_str().unwrap(), bridge, &[web, all]);
    drop(other);
}

/// A network namespace acting as another host: a veth to this host with a
/// /30, a default route through it.
struct OtherHost {
    ns: String,
    host_veth: String,
    host_side: String,
}

impl OtherHost {
    fn new(env: &TestEnv) -> OtherHost {
        let tag = env.name();
        let ns = format!("{tag}o");
        let host_veth = format!("v{}", &tag[tag.len().saturating_sub(12)..]);
        let peer = format!("{host_veth}p");
        // A /30 per test from the pid, clear of Wharf's pools.
        let n = std::process::id() % 250;
        let host_side = format!("10.252.{n}.1");
        let sh = |args: &str| {
            let ok = Command::new("sh")
                .arg("-c")
                .arg(args)
                .status()
                .unwrap()
                .success();
            assert!(ok, "{args}");
        };
        let me = OtherHost {
            ns: ns.clone(),
            host_veth: host_veth.clone(),
            host_side: host_side.clone(),
        };
        sh(&format!("ip netns add {ns}"));
        sh(&format!(
            "ip link add {host_veth} type veth peer name {peer} netns {ns}"
        ));
        sh(&format!(
            "ip addr add {host_side}/30 dev {host_veth} && ip link set {host_veth} up"
        ));
        sh(&format!(
            "ip -n {ns} addr add 10.252.{n}.2/30 dev {peer} && ip -n {ns} link set {peer} up \
             && ip -n {ns} link set lo up && ip -n {ns} route add default via {host_side}"
        ));
        me
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for OtherHost {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_veth])
            .status();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

#[test]
fn internal_networks_and_isolation_between_networks() {
    require!(Root, Busybox, Overlay, Registry, Skopeo);
    let env = TestEnv::new();
    let engine = Engine::with_busybox(&env);
    let mut net = Net::new(&engine);
    let (a, b, internal) = (env.name() + "a", env.name() + "b", env.name() + "i");
    net.create(&a, &[]);
    net.create(&b, &[]);
    net.create(&internal, &["--internal"]);
    let host = host_address();

    // Internal: no default route, the host's address unreachable, no ports.
    let routes = engine.ok(&[
        "run",
        "--rm",
        "--network",
        &internal,
        "busybox",
        "ip",
        "route",
    ]);
    assert!(!routes.contains("default"), "{routes}");
    let (code, _) = engine.fails(&[
        "run",
        "--rm",
        "--network",
        &internal,
        "busybox",
        "timeout",
        "2",
        "wget",
        "-qO-",
        &format!("http://{host}:1/"),
    ]);
    assert_ne!(code, 0);
    let (code, err) = engine.fails(&[
        "run",
        "-d",
        "--network",
        &internal,
        "-p",
        "80",
        "busybox",
        "true",
    ]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("internal"), "{err}");

    // Isolation: b cannot reach a's container until connected to a.
    engine.ok(&[
        "run",
        "-d",
        "--name",
        "srv",
        "--network",
        &a,
        "busybox",
        "sh",
        "-c",
        &httpd("in-a"),
    ]);
    let ip = address(&engine, "srv", &a);
    wait_http(&engine, &ip, 80);
    engine.ok(&[
        "run",
        "-d",
        "--name",
        "cli",
        "--network",
        &b,
        "busybox",
        "sleep",
        "600",
    ]);
    let wget = [
        "exec",
        "cli",
        "timeout",
        "2",
        "wget",
        "-qO-",
        &format!("http://{ip}/"),
    ];
    let (code, _) = engine.fails(&wget);
    assert_ne!(code, 0, "networks are not isolated");
    engine.ok(&["network", "connect", &a, "cli"]);
    assert_eq!(engine.ok(&wget).trim(), "in-a");
    assert_eq!(
        engine
            .ok(&["exec", "cli", "timeout", "2", "wget", "-qO-", "http://srv/"])
            .trim(),
        "in-a"
    );
    engine.ok(&["network", "disconnect", &a, "cli"]);
    let (code, _) = engine.fails(&wget);
    assert_ne!(code, 0);
    // A network in use cannot be removed.
    let (code, err) = engine.fails(&["network", "rm", &a]);
    assert_ne!(code, 0);
    assert!(err.contains("active endpoints"), "{err}");
}

#[test]
fn ipv6_between_containers() {
    require!(Root, Busybox, Overlay, Registry, Skopeo);
    let env = TestEnv::new();
    let engine = Engine::with_busybox(&env);
    let mut net = Net::new(&engine);
    let name = env.name();
    let n = net.create(&name, &["--ipv6"]);
    assert_eq!(n["EnableIPv6"], true);
    engine.ok(&[
        "run",
        "-d",
        "--name",
        "v6",
        "--network",
        &name,
        "busybox",
        "sh",
        "-c",
        &httpd("over-v6"),
    ]);
    let v6 = engine.inspect(
        "v6",
        &format!("{{{{(index .NetworkSettings.Networks \"{name}\").GlobalIPv6Address}}}}"),
    );
    assert!(v6.parse::<std::net::Ipv6Addr>().is_ok(), "{v6:?}");
    let url = format!("http://[{v6}]/");
    engine.eventually("httpd over IPv6", || {
        engine
            .run(&[
                "run",
                "--rm",
                "--network",
                &name,
                "busybox",
                "timeout",
                "3",
                "wget",
                "-qO-",
                &url,
            ])
            .1
            .trim()
            == "over-v6"
    });
    let lookup = engine.ok(&[
        "run",
        "--rm",
        "--network",
        &name,
        "busybox",
        "nslookup",
        "-type=AAAA",
        "v6",
    ]);
    assert!(lookup.contains(&v6), "{lookup}");
}

#[test]
fn many_cycles_and_killed_monitors_leak_nothing() {
    require!(Root, Busybox, Overlay, Registry, Skopeo);
    let env = TestEnv::new();
    let engine = Engine::with_busybox(&env);
    let mut net = Net::new(&engine);
    let name = env.name();
    let n = net.create(&name, &[]);
    let network_id = n["Id"].as_str().unwrap().to_owned();
    let bridge = n["Options"]["com.docker.network.bridge.name"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut ids = Vec::new();
    for i in 0..200 {
        let id = engine
            .ok(&[
                "run",
                "-d",
                "--name",
                &format!("c{i}"),
                "--network",
                &name,
                "-p",
                "80",
                "--network-alias",
                "svc",
                "busybox",
                "sleep",
                "600",
            ])
            .trim()
            .to_owned();
        engine.ok(&["rm", "-f", &id]);
        ids.push(id);
    }
    assert_no_leaks(&network_id, &bridge, &ids);

    // Monitors killed at points spread over setup: whatever they left,
    // `rm -f` and `network prune` repair.
    let root = engine.root.to_str().unwrap().to_owned();
    for i in 0..20u64 {
        let mut child = engine
            .cmd()
            .args([
                "run",
                "-d",
                "--name",
                &format!("k{i}"),
                "--network",
                &name,
                "-p",
                "80",
                "busybox",
                "sleep",
                "600",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(i * 3));
        let _ = Command::new("pkill")
            .args(["-9", "-f", &format!("__monitor {root} ")])
            .status();
        let _ = child.wait();
    }
    let all = engine.ok(&["ps", "-aq", "--no-trunc"]);
    let killed: Vec<String> = all.split_whitespace().map(str::to_owned).collect();
    for id in &killed {
        engine.ok(&["rm", "-f", id]);
    }
    engine.ok(&["network", "prune", "-f"]);
    net.names.clear();
    assert_no_leaks(&network_id, &bridge, &killed);
    let records = fs_err::read_to_string(engine.root.join("dns").join(format!("{name}.json")))
        .unwrap_or_default();
    assert!(!records.contains("\"svc\""), "{records}");
}

#[test]
fn create_options_static_addresses_and_shared_namespaces() {
    require!(Root, Busybox, Overlay, Registry, Skopeo);
    let env = TestEnv::new();
    let engine = Engine::with_busybox(&env);
    let mut net = Net::new(&engine);
    let name = env.name();
    let n = net.create(
        &name,
        &[
            "--subnet",
            "10.251.7.0/24",
            "--gateway",
            "10.251.7.254",
            "--ip-range",
            "10.251.7.128/25",
            "--opt",
            "mtu=1400",
            "--opt",
            "big_tcp=false",
            "--label",
            "team=net",
        ],
    );
    assert_eq!(n["IPAM"]["Config"][0]["Subnet"], "10.251.7.0/24");
    assert_eq!(n["IPAM"]["Config"][0]["Gateway"], "10.251.7.254");
    assert_eq!(n["IPAM"]["Config"][0]["IPRange"], "10.251.7.128/25");
    assert_eq!(n["Labels"]["team"], "net");
    let ls = engine.ok(&["network", "ls", "--filter", "label=team=net", "-q"]);
    assert_eq!(ls.trim(), &n["Id"].as_str().unwrap()[..12]);

    // Automatic addresses come from the ip-range; --ip and --mac-address
    // are honoured; the MTU reaches the container's interface.
    let auto = engine.ok(&[
        "run",
        "--rm",
        "--network",
        &name,
        "busybox",
        "ip",
        "-o",
        "-4",
        "addr",
        "show",
        "eth0",
    ]);
    assert!(auto.contains("inet 10.251.7.128/24"), "{auto}");
    let fixed = engine.ok(&[
        "run",
        "--rm",
        "--network",
        &name,
        "--ip",
        "10.251.7.9",
        "--mac-address",
        "02:42:00:00:be:ef",
        "--dns",
        "192.0.2.53",
        "--dns-search",
        "corp.example",
        "--add-host",
        "db:10.9.9.9",
        "busybox",
        "sh",
        "-c",
        "ip -o link show eth0; ip -o -4 addr show eth0; cat /etc/resolv.conf /etc/hosts",
    ]);
    for want in [
        "mtu 1400",
        "02:42:00:00:be:ef",
        "inet 10.251.7.9/24",
        "nameserver 192.0.2.53",
        "search corp.example",
        "10.9.9.9\tdb",
    ] {
        assert!(fixed.contains(want), "{want:?} in {fixed}");
    }
    // A taken address is refused; an address outside the subnet too.
    engine.ok(&[
        "run",
        "-d",
        "--name",
        "holder",
        "--network",
        &name,
        "--ip",
        "10.251.7.9",
        "busybox",
        "sleep",
        "600",
    ]);
    let (code, err) = engine.fails(&[
        "run",
        "--rm",
        "--network",
        &name,
        "--ip",
        "10.251.7.9",
        "busybox",
        "true",
    ]);
    assert_eq!(code, 125, "{err}");
    assert!(
        err.contains("10.251.7.9") && err.contains("in use"),
        "{err}"
    );
    let (_, err) = engine.fails(&[
        "run",
        "--rm",
        "--network",
        &name,
        "--ip",
        "10.1.1.1",
        "busybox",
        "true",
    ]);
    assert!(err.contains("10.1.1.1"), "{err}");
    // big_tcp=false: the holder's link and the bridge keep 64 KiB.
    let bridge = n["Options"]["com.docker.network.bridge.name"]
        .as_str()
        .unwrap()
        .to_owned();
    let limits = gso_limits(&bridge);
    assert_eq!(limits.len(), 2, "{limits:?}");
    for (link, size) in limits {
        assert!(size.is_none() || size == Some(65536), "{link}: {size:?}");
    }
    let (code, err) = engine.fails(&["network", "create", "--opt", "big_tcp=maybe", "bad"]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("big_tcp=maybe"), "{err}");

    // --network container: shares the holder's namespace: same address,
    // its localhost.
    engine.ok(&["exec", "-d", "holder", "sh", "-c", &httpd("shared-ns")]);
    let shared = engine.ok(&[
        "run",
        "--rm",
        "--network",
        "container:holder",
        "busybox",
        "sh",
        "-c",
        "ip -o -4 addr show eth0; sleep 0.5; timeout 5 wget -qO- http://127.0.0.1/",
    ]);
    assert!(
        shared.contains("inet 10.251.7.9/24") && shared.contains("shared-ns"),
        "{shared}"
    );
    // Flags that need a network of their own are refused with it.
    let (_, err) = engine.fails(&[
        "run",
        "--rm",
        "--network",
        "container:holder",
        "-p",
        "80",
        "busybox",
        "true",
    ]);
    assert!(err.contains("publish"), "{err}");

    // Bad requests: a clear error, nothing made.
    let (_, err) = engine.fails(&[
        "network",
        "create",
        "--subnet",
        "10.251.7.0/24",
        &format!("{name}x"),
    ]);
    assert!(err.contains("overlaps"), "{err}");
    let (_, err) = engine.fails(&[
        "network",
        "create",
        "--subnet",
        "10.251.8.1/24",
        &format!("{name}y"),
    ]);
    assert!(err.contains("host bits"), "{err}");
    let (_, err) = engine.fails(&["run", "--rm", "--network", "no-such-net", "busybox", "true"]);
    assert!(
        err.contains("no-such-net") && err.contains("not found"),
        "{err}"
    );
    let (_, err) = engine.fails(&["network", "rm", "bridge"]);
    assert!(err.contains("default network"), "{err}");
}
