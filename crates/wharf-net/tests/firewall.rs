//! The nftables firewall against the real kernel and the real `nft`.
//!
//! Each test runs in a child forked into a fresh network namespace that acts
//! as the host: `nft` (a child of that child) inherits the namespace, so the
//! real host's ruleset is never touched, and the namespace's ruleset, links
//! and sockets die with the child whatever happens.

// The workspace lints want tests inside a `#[cfg(test)]` module, even here.
#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};
    use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
    use std::os::fd::{AsFd as _, OwnedFd};
    use std::process::Command;
    use std::time::{Duration, Instant};

    use anyhow::{bail, ensure, Context as _};
    use nix::sched::CloneFlags;
    use wharf_net::{
        attach_veth, netns, sysctl, ErrorKind, Firewall, NetError, Netlink, NetworkRules,
        PortMapping, PortRules, Protocol, Subnet, VethPlan,
    };
    use wharf_testkit::{in_child_unshare, require, TestEnv};

    const NET_A: &str = "0a0a0a0a0a0a0a0a0a0a";
    const NET_B: &str = "0b0b0b0b0b0b0b0b0b0b";
    const OWNER_A: &str = "aaaaaaaaaaaaaaaaaaaa";
    const OWNER_B: &str = "bbbbbbbbbbbbbbbbbbbb";

    /// `nft` is found, or the test skips (fails under `WHARF_TEST_STRICT=1`).
    fn firewall(test: &str) -> Option<Firewall> {
        match Firewall::new() {
            Ok(firewall) => Some(firewall),
            Err(e) => {
                assert!(
                    std::env::var_os("WHARF_TEST_STRICT").is_none(),
                    "{test}: {e}"
                );
                eprintln!("SKIP {test}: needs nft (nftables)");
                None
            }
        }
    }

    fn nft(args: &[&str]) -> anyhow::Result<String> {
        let out = Command::new("nft")
            .args(args)
            .output()
            .with_context(|| format!("run nft {args:?}"))?;
        ensure!(
            out.status.success(),
            "nft {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `nft -j list ruleset` without the handles (which change whenever a
    /// chain is flushed and refilled) and the metainfo: what is installed,
    /// exactly.
    fn ruleset() -> anyhow::Result<serde_json::Value> {
        fn strip(value: &mut serde_json::Value) {
            match value {
                serde_json::Value::Object(map) => {
                    map.remove("handle");
                    map.values_mut().for_each(strip);
                }
                serde_json::Value::Array(items) => items.iter_mut().for_each(strip),
                _ => {}
            }
        }
        let mut value: serde_json::Value = serde_json::from_str(&nft(&["-j", "list", "ruleset"])?)?;
        if let Some(objects) = value["nftables"].as_array_mut() {
            objects.retain(|o| o.get("metainfo").is_none());
        }
        strip(&mut value);
        Ok(value)
    }

    fn network(id: &str, bridge: &str, subnet: &str, internal: bool) -> NetworkRules {
        NetworkRules {
            id: id.to_owned(),
            bridge: bridge.to_owned(),
            subnets: vec![subnet.parse().expect("test subnet")],
            gateways: Vec::new(),
            internal,
        }
    }

    fn tcp(host_ip: Option<&str>, host_port: u16, container_port: u16) -> PortMapping {
        PortMapping {
            host_ip: host_ip.map(|ip| ip.parse().expect("test address")),
            host_port,
            container_port,
            protocol: Protocol::Tcp,
        }
    }

    fn ports(owner: &str, net: &NetworkRules, ipv4: &str, ports: Vec<PortMapping>) -> PortRules {
        PortRules {
            owner: owner.to_owned(),
            bridge: net.bridge.clone(),
            subnets: net.subnets.clone(),
            internal: net.internal,
            ipv4: Some(ipv4.parse().expect("test address")),
            ipv6: None,
            ports,
        }
    }

    /// A bridge with the network's gateway, so that sysctls under its name exist.
    fn bridge(netlink: &Netlink, net: &NetworkRules) -> anyhow::Result<Subnet> {
        let subnet = Subnet::new(net.subnets[0], None, None)?;
        netlink.ensure_bridge(&net.bridge, None, &[subnet.with_prefix(subnet.gateway())])?;
        Ok(subnet)
    }

    #[test]
    fn ensure_and_remove_network_are_idempotent() {
        require!(Root);
        let Some(fw) = firewall("ensure_and_remove_network_are_idempotent") else {
            return;
        };
        in_child_unshare(CloneFlags::CLONE_NEWNET, || {
            let empty = ruleset()?;
            // Removing what was never there changes nothing, not even a table.
            let a = network(NET_A, "wfa0", "10.231.20.0/24", false);
            fw.remove_network(&a)?;
            fw.remove_all()?;
            ensure!(ruleset()? == empty, "removal created something");
            ensure!(!fw.state()?.table, "table after removal");

            fw.ensure_network(&a)?;
            let once = ruleset()?;
            fw.ensure_network(&a)?;
            ensure!(ruleset()? == once, "second ensure changed the ruleset");
            let text = nft(&["list", "table", "inet", "wharf"])?;
            for expected in [
                "ip saddr 10.231.20.0/24 ip daddr != 10.231.20.0/24 masquerade",
                "ip saddr 10.231.20.0/24 ct status dnat masquerade",
                "oifname vmap @nat-to",
                "oifname @bridges drop",
                "ct state established,related accept",
            ] {
                ensure!(text.contains(expected), "{expected:?} missing:\n{text}");
            }

            let b = network(NET_B, "wfb0", "10.231.21.0/24", true);
            fw.ensure_network(&b)?;
            let text = nft(&["list", "chain", "inet", "wharf", "n-0b0b0b0b0b0b-to"])?;
            ensure!(text.contains("iifname != \"wfb0\" drop"), "{text}");
            let state = fw.state()?;
            ensure!(
                state.networks.iter().collect::<Vec<_>>() == ["0a0a0a0a0a0a", "0b0b0b0b0b0b"],
                "{state:?}"
            );
            ensure!(state.bridges.len() == 2, "{state:?}");

            fw.remove_network(&b)?;
            ensure!(ruleset()? == once, "removing b left something");
            fw.remove_network(&b)?;
            ensure!(
                ruleset()? == once,
                "second removal of b changed the ruleset"
            );
            fw.remove_network(&a)?;
            let state = fw.state()?;
            ensure!(
                state.networks.is_empty() && state.bridges.is_empty(),
                "{state:?}"
            );
            fw.remove_all()?;
            fw.remove_all()?;
            ensure!(ruleset()? == empty, "table left after remove_all");
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn bridge_of_another_network_is_refused() {
        require!(Root);
        let Some(fw) = firewall("bridge_of_another_network_is_refused") else {
            return;
        };
        in_child_unshare(CloneFlags::CLONE_NEWNET, || {
            let a = network(NET_A, "wfa0", "10.231.22.0/24", false);
            fw.ensure_network(&a)?;
            let before = ruleset()?;
            let b = network(NET_B, "wfa0", "10.231.23.0/24", false);
            match fw.ensure_network(&b) {
                Err(e @ NetError::BridgeInUse { .. }) => {
                    ensure!(e.kind() == ErrorKind::Conflict, "{e}");
                    ensure!(
                        e.to_string()
                            == "set up firewall for network 0b0b0b0b0b0b on bridge wfa0: \
                                bridge belongs to network 0a0a0a0a0a0a",
                        "{e}"
                    );
                }
                other => bail!("expected BridgeInUse, got {other:?}"),
            }
            ensure!(
                ruleset()? == before,
                "a refused network changed the ruleset"
            );
            // Removing b (as a rollback would) leaves a's bridge alone.
            fw.remove_network(&b)?;
            ensure!(ruleset()? == before, "removing b touched a");
            Ok(())
        })
        .unwrap();
    }

    #[test]
    #[allow(
        clippy::print_stderr,
        reason = "the measured time is for the person running the test"
    )]
    fn add_and_remove_ports_leave_the_ruleset_as_before() {
        require!(Root);
        let Some(fw) = firewall("add_and_remove_ports_leave_the_ruleset_as_before") else {
            return;
        };
        in_child_unshare(CloneFlags::CLONE_NEWNET, || {
            let netlink = Netlink::open()?;
            let a = network(NET_A, "wfa0", "10.231.24.0/24", false);
            bridge(&netlink, &a)?;
            fw.ensure_network(&a)?;
            let before = ruleset()?;
            let p = ports(
                OWNER_A,
                &a,
                "10.231.24.2",
                vec![
                    tcp(None, 8080, 80),
                    tcp(Some("127.0.0.1"), 8081, 81),
                    PortMapping {
                        protocol: Protocol::Udp,
                        ..tcp(None, 5353, 53)
                    },
                    PortMapping {
                        protocol: Protocol::Sctp,
                        ..tcp(None, 3868, 3868)
                    },
                ],
            );
            fw.add_ports(&p)?;
            let added = ruleset()?;
            ensure!(added != before, "add_ports changed nothing");
            fw.add_ports(&p)?;
            ensure!(ruleset()? == added, "second add_ports changed the ruleset");
            let text = nft(&["list", "table", "inet", "wharf"])?;
            for expected in [
                "meta nfproto ipv4 fib daddr type local tcp dport 8080 dnat ip to 10.231.24.2:80",
                "ip daddr 127.0.0.1 tcp dport 8081 dnat ip to 10.231.24.2:81",
                "udp dport 5353 dnat ip to 10.231.24.2:53",
                "sctp dport 3868 dnat ip to 10.231.24.2:3868",
                "tcp . 8080 : goto c-aaaaaaaaaaaa",
                "tcp . 127.0.0.1 . 8081 : goto c-aaaaaaaaaaaa",
            ] {
                ensure!(text.contains(expected), "{expected:?} missing:\n{text}");
            }
            ensure!(
                fw.state()?.port_owners.iter().collect::<Vec<_>>() == ["aaaaaaaaaaaa"],
                "owner not reported"
            );
            let localnet = fs_err::read_to_string("/proc/sys/net/ipv4/conf/wfa0/route_localnet")?;
            ensure!(localnet.trim() == "1", "route_localnet is {localnet}");

            fw.remove_ports(&p)?;
            ensure!(ruleset()? == before, "remove_ports left something");
            fw.remove_ports(&p)?;
            ensure!(
                ruleset()? == before,
                "second remove_ports changed the ruleset"
            );

            // A removal with a list that misses ports still removes them all.
            fw.add_ports(&p)?;
            fw.remove_ports(&PortRules {
                ports: vec![],
                ..p.clone()
            })?;
            ensure!(
                ruleset()? == before,
                "remove_ports with a short list left something"
            );

            // The time of one call, for the ≤10 ms budget of `run`.
            let rounds = 20;
            let (mut add, mut remove) = (Duration::ZERO, Duration::ZERO);
            let one = ports(OWNER_B, &a, "10.231.24.3", vec![tcp(None, 9090, 90)]);
            for _ in 0..rounds {
                let started = Instant::now();
                fw.add_ports(&one)?;
                add += started.elapsed();
                let started = Instant::now();
                fw.remove_ports(&one)?;
                remove += started.elapsed();
            }
            eprintln!(
                "add_ports: {:?}, remove_ports: {:?} (mean of {rounds})",
                add / rounds,
                remove / rounds
            );
            ensure!(ruleset()? == before, "timing rounds left something");
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn conflicting_port_is_refused_and_nothing_changes() {
        require!(Root);
        let Some(fw) = firewall("conflicting_port_is_refused_and_nothing_changes") else {
            return;
        };
        in_child_unshare(CloneFlags::CLONE_NEWNET, || {
            let netlink = Netlink::open()?;
            let a = network(NET_A, "wfa0", "10.231.25.0/24", false);
            bridge(&netlink, &a)?;
            fw.ensure_network(&a)?;
            let pa = ports(OWNER_A, &a, "10.231.25.2", vec![tcp(None, 8080, 80)]);
            fw.add_ports(&pa)?;
            let before = ruleset()?;

            let pb = ports(
                OWNER_B,
                &a,
                "10.231.25.3",
                vec![tcp(None, 9090, 90), tcp(None, 8080, 80)],
            );
            match fw.add_ports(&pb) {
                Err(e @ NetError::PortConflict { .. }) => {
                    ensure!(e.kind() == ErrorKind::Conflict, "{e}");
                    ensure!(
                        e.to_string()
                            == "publish *:8080->80/tcp for bbbbbbbbbbbb: \
                                already published by aaaaaaaaaaaa",
                        "{e}"
                    );
                }
                other => bail!("expected PortConflict, got {other:?}"),
            }
            ensure!(
                ruleset()? == before,
                "a refused add_ports changed the ruleset"
            );

            // The loser's rollback must not take the winner's port.
            fw.remove_ports(&pb)?;
            ensure!(ruleset()? == before, "removing b touched a's port");

            // The same port on another address, or another protocol, is fine.
            let other = ports(
                OWNER_B,
                &a,
                "10.231.25.3",
                vec![
                    tcp(Some("192.0.2.1"), 8080, 80),
                    PortMapping {
                        protocol: Protocol::Udp,
                        ..tcp(None, 8080, 80)
                    },
                ],
            );
            fw.add_ports(&other)?;
            fw.remove_ports(&other)?;
            fw.remove_ports(&pa)?;
            ensure!(fw.state()?.port_owners.is_empty(), "owners left");
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn reload_after_flush_ruleset_restores_everything() {
        require!(Root);
        let Some(fw) = firewall("reload_after_flush_ruleset_restores_everything") else {
            return;
        };
        in_child_unshare(CloneFlags::CLONE_NEWNET, || {
            let netlink = Netlink::open()?;
            let a = network(NET_A, "wfa0", "10.231.26.0/24", false);
            let b = network(NET_B, "wfb0", "10.231.27.0/24", true);
            bridge(&netlink, &a)?;
            bridge(&netlink, &b)?;
            let pa = ports(OWNER_A, &a, "10.231.26.2", vec![tcp(None, 8080, 80)]);
            fw.ensure_network(&a)?;
            fw.ensure_network(&b)?;
            fw.add_ports(&pa)?;
            let installed = ruleset()?;
            let state = fw.state()?;

            nft(&["flush", "ruleset"])?;
            ensure!(!fw.state()?.table, "table survived the flush");
            fw.reload(&[a.clone(), b.clone()], std::slice::from_ref(&pa))?;
            ensure!(
                ruleset()? == installed,
                "reload did not restore the ruleset"
            );
            ensure!(fw.state()? == state, "state differs after reload");
            // Reloading over an existing table replaces it, unchanged.
            fw.reload(&[a.clone(), b.clone()], std::slice::from_ref(&pa))?;
            ensure!(ruleset()? == installed, "second reload changed the ruleset");

            // A reload with a conflict fails whole and keeps the old table.
            let pb = ports(OWNER_B, &a, "10.231.26.3", vec![tcp(None, 8080, 80)]);
            let e = fw
                .reload(std::slice::from_ref(&a), &[pa.clone(), pb])
                .expect_err("conflicting reload");
            ensure!(e.kind() == ErrorKind::Conflict, "{e:?}");
            ensure!(ruleset()? == installed, "failed reload changed the ruleset");
            Ok(())
        })
        .unwrap();
    }

    /// Accepts one connection on `listener` at a time, answering each with
    /// the peer address it sees.
    fn serve(listener: TcpListener) {
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let peer = stream.peer_addr().map(|a| a.ip().to_string());
                let _ = stream.write_all(peer.unwrap_or_default().as_bytes());
            }
        });
    }

    /// Connects to `address` and returns what the server says: the client
    /// address it saw.
    fn ask(address: SocketAddr) -> anyhow::Result<String> {
        let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(3))
            .with_context(|| format!("connect to {address}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(3)))?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer)
    }

    fn attach(
        netlink: &Netlink,
        net: &NetworkRules,
        subnet: &Subnet,
        host_name: &str,
        address: &str,
    ) -> anyhow::Result<OwnedFd> {
        let ns = netns::create()?;
        attach_veth(
            netlink,
            ns.as_fd(),
            &VethPlan {
                bridge: net.bridge.clone(),
                host_name: host_name.to_owned(),
                peer_name: "eth0".to_owned(),
                addresses: vec![subnet.with_prefix(address.parse()?)],
                gateways: vec![subnet.gateway()],
                mtu: None,
                big_tcp: true,
                mac: None,
            },
        )?;
        Ok(ns)
    }

    #[test]
    fn published_port_reaches_the_container_from_host_loopback_and_neighbours() {
        require!(Root);
        let Some(fw) =
            firewall("published_port_reaches_the_container_from_host_loopback_and_neighbours")
        else {
            return;
        };
        let env = TestEnv::new();
        let (veth_a, veth_b, veth_c) = (env.name(), env.name(), env.name());
        in_child_unshare(CloneFlags::CLONE_NEWNET, || {
            let netlink = Netlink::open()?;
            let lo = netlink.link_index("lo")?.context("lo")?;
            netlink.set_up(lo, "lo")?;
            sysctl::enable_forwarding(false)?;

            let a = network(NET_A, "wfa0", "10.231.28.0/24", false);
            let b = network(NET_B, "wfb0", "10.231.29.0/24", false);
            let subnet_a = bridge(&netlink, &a)?;
            let subnet_b = bridge(&netlink, &b)?;
            fw.ensure_network(&a)?;
            fw.ensure_network(&b)?;
            let server_ns = attach(&netlink, &a, &subnet_a, &veth_a, "10.231.28.2")?;
            let neighbour_ns = attach(&netlink, &a, &subnet_a, &veth_b, "10.231.28.3")?;
            let other_ns = attach(&netlink, &b, &subnet_b, &veth_c, "10.231.29.2")?;

            // Sockets keep the namespace they were created in.
            let (listener, udp) = netns::run_in(server_ns.as_fd(), "server", || {
                Ok((
                    TcpListener::bind("10.231.28.2:80"),
                    UdpSocket::bind("10.231.28.2:53"),
                ))
            })?;
            serve(listener.context("bind tcp 10.231.28.2:80")?);
            let udp = udp.context("bind udp 10.231.28.2:53")?;

            fw.add_ports(&ports(
                OWNER_A,
                &a,
                "10.231.28.2",
                vec![
                    tcp(None, 8080, 80),
                    PortMapping {
                        protocol: Protocol::Udp,
                        ..tcp(None, 5353, 53)
                    },
                ],
            ))?;

            // Without br_netfilter's calls into the IP hooks for bridged
            // packets (absent, or turned off) the hairpin answer would skip
            // conntrack: the masquerade is what makes it work.
            let bridge_nf = std::path::Path::new("/proc/sys/net/bridge/bridge-nf-call-iptables");
            if bridge_nf.exists() {
                sysctl::ensure("net.bridge.bridge-nf-call-iptables", "0")?;
            }
            let gateway_a = IpAddr::V4(Ipv4Addr::new(10, 231, 28, 1));
            // From the host, through loopback: the source is masqueraded to
            // the bridge's address, since the container cannot answer 127.0.0.1.
            let seen = ask(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 8080))?;
            ensure!(seen == "10.231.28.1", "via 127.0.0.1 the server saw {seen}");
            // From the host, through one of its addresses.
            let seen = ask(SocketAddr::new(gateway_a, 8080))?;
            ensure!(
                seen == "10.231.28.1",
                "via the host address the server saw {seen}"
            );
            // Hairpin: a neighbour on the same bridge through the host's address.
            let seen = netns::run_in(neighbour_ns.as_fd(), "neighbour", || {
                Ok(ask(SocketAddr::new(gateway_a, 8080)).map_err(|e| format!("{e:#}")))
            })?
            .map_err(anyhow::Error::msg)?;
            ensure!(seen == "10.231.28.1", "hairpin: the server saw {seen}");
            if bridge_nf.exists() {
                // With br_netfilter on (Docker hosts load it), hairpin still works.
                sysctl::ensure("net.bridge.bridge-nf-call-iptables", "1")?;
                netns::run_in(neighbour_ns.as_fd(), "neighbour", || {
                    Ok(ask(SocketAddr::new(gateway_a, 8080)).map_err(|e| format!("{e:#}")))
                })?
                .map_err(anyhow::Error::msg)?;
                sysctl::ensure("net.bridge.bridge-nf-call-iptables", "0")?;
            }
            // Another network reaches the published port through the host
            // (DNAT'd traffic is accepted into the bridge; leaving its own
            // subnet, the source is masqueraded) but not the container's own
            // address (isolation).
            let (published, direct) = netns::run_in(other_ns.as_fd(), "other network", || {
                let published = ask(SocketAddr::new("10.231.29.1".parse().expect("ip"), 8080))
                    .map_err(|e| format!("{e:#}"));
                let direct =
                    ask("10.231.28.2:80".parse().expect("address")).map_err(|e| format!("{e:#}"));
                Ok((published, direct))
            })?;
            ensure!(
                published.as_deref() == Ok("10.231.28.1"),
                "published from another network: {published:?}"
            );
            ensure!(
                direct.is_err(),
                "isolation: direct access answered {direct:?}"
            );

            // UDP from the host.
            let client = UdpSocket::bind("127.0.0.1:0")?;
            client.send_to(b"ping", "127.0.0.1:5353")?;
            udp.set_read_timeout(Some(Duration::from_secs(3)))?;
            let mut buf = [0; 16];
            let (n, from) = udp.recv_from(&mut buf).context("udp through DNAT")?;
            ensure!(&buf[..n] == b"ping", "udp payload");
            ensure!(from.ip() == gateway_a, "udp source {from}");

            // After removal the port is closed again.
            fw.remove_ports(&ports(OWNER_A, &a, "10.231.28.2", vec![]))?;
            ensure!(
                ask(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 8080)).is_err(),
                "port still published after remove_ports"
            );
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn internal_network_is_cut_off() {
        require!(Root);
        let Some(fw) = firewall("internal_network_is_cut_off") else {
            return;
        };
        let env = TestEnv::new();
        let (veth_a, veth_b) = (env.name(), env.name());
        in_child_unshare(CloneFlags::CLONE_NEWNET, || {
            let netlink = Netlink::open()?;
            sysctl::enable_forwarding(false)?;
            let internal = network(NET_A, "wfa0", "10.231.30.0/24", true);
            let public = network(NET_B, "wfb0", "10.231.31.0/24", false);
            let subnet_i = bridge(&netlink, &internal)?;
            let subnet_p = bridge(&netlink, &public)?;
            fw.ensure_network(&internal)?;
            fw.ensure_network(&public)?;
            let ns_i = attach(&netlink, &internal, &subnet_i, &veth_a, "10.231.30.2")?;
            let ns_p = attach(&netlink, &public, &subnet_p, &veth_b, "10.231.31.2")?;
            let listener = netns::run_in(ns_p.as_fd(), "public", || {
                Ok(TcpListener::bind("10.231.31.2:80"))
            })?;
            serve(listener.context("bind tcp 10.231.31.2:80")?);
            // Reachable from the host (the host is not forwarded traffic)...
            ask("10.231.31.2:80".parse()?)?;
            // ...not from the internal network, which cannot leave its bridge.
            let from_internal = netns::run_in(ns_i.as_fd(), "internal", || {
                Ok(ask("10.231.31.2:80".parse().expect("address")).is_ok())
            })?;
            ensure!(
                !from_internal,
                "an internal network reached another network"
            );
            // Published ports are ignored on an internal network.
            fw.add_ports(&ports(
                OWNER_A,
                &internal,
                "10.231.30.2",
                vec![tcp(None, 8080, 80)],
            ))?;
            ensure!(
                fw.state()?.port_owners.is_empty(),
                "ports published on an internal network"
            );
            Ok(())
        })
        .unwrap();
    }
}
