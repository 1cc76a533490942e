//! The bridge backend against the real kernel: a bridge, two namespaces joined
//! to it by veth pairs, real traffic between them, teardown.
//!
//! Everything runs in a child forked into a fresh network namespace that acts
//! as the host, so the real host's links are never touched; that namespace
//! (and all links in it) dies with the child whatever happens. Guards still
//! delete what they own, and the test checks that nothing with its prefix is
//! left.

// The workspace lints want tests inside a `#[cfg(test)]` module, even here.
#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::os::fd::{AsFd as _, AsRawFd as _, OwnedFd};
    use std::process::Command;

    use anyhow::{ensure, Context as _};
    use nix::sched::CloneFlags;
    use wharf_net::{
        attach_veth, netns, sysctl, ErrorKind, Ipam, NetError, Netlink, NetworkName, Subnet,
        VethPlan,
    };
    use wharf_testkit::{in_child_unshare, require, TestEnv};

    /// Deletes a link on drop.
    struct LinkGuard<'a> {
        netlink: &'a Netlink,
        name: String,
    }

    impl Drop for LinkGuard<'_> {
        fn drop(&mut self) {
            let _ = self.netlink.delete_link(&self.name);
        }
    }

    /// `nsenter --net=<fd path> <args>`: the namespace is reached through this
    /// process's fd table.
    fn in_netns(ns: &OwnedFd, args: &[&str]) -> anyhow::Result<String> {
        let path = format!("/proc/{}/fd/{}", std::process::id(), ns.as_raw_fd());
        let out = Command::new("nsenter")
            .arg(format!("--net={path}"))
            .args(args)
            .output()
            .with_context(|| format!("run nsenter {args:?}"))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        ensure!(
            out.status.success(),
            "{args:?} failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(text)
    }

    fn links_with_prefix(prefix: &str) -> anyhow::Result<Vec<String>> {
        let out = Command::new("ip").args(["-o", "link", "show"]).output()?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains(prefix))
            .map(str::to_owned)
            .collect())
    }

    fn plan(bridge: &str, host_name: &str, subnet: &Subnet, address: IpAddr) -> VethPlan {
        VethPlan {
            bridge: bridge.to_owned(),
            host_name: host_name.to_owned(),
            peer_name: "eth0".to_owned(),
            addresses: vec![subnet.with_prefix(address)],
            gateways: vec![subnet.gateway()],
            mtu: None,
            big_tcp: true,
            mac: None,
        }
    }

    #[test]
    fn two_namespaces_ping_each_other_over_a_bridge() {
        require!(Root, Busybox);
        let env = TestEnv::new();
        let prefix = format!("wt{}x", std::process::id());
        let (bridge, veth_a, veth_b) = (env.name(), env.name(), env.name());
        let state = env.root();
        in_child_unshare(CloneFlags::CLONE_NEWNET, || {
            let netlink = Netlink::open()?;
            // ip_forward is per network namespace: this is the private "host".
            sysctl::enable_forwarding(false)?;
            ensure!(
                !sysctl::ensure("net.ipv4.ip_forward", "1")?,
                "second write not skipped"
            );

            let subnet = Subnet::new("10.231.7.0/24".parse()?, None, None)?;
            let _bridge_guard = LinkGuard {
                netlink: &netlink,
                name: bridge.clone(),
            };
            let gateway = subnet.with_prefix(subnet.gateway());
            let index = netlink.ensure_bridge(&bridge, Some(1500), &[gateway])?;
            ensure!(
                netlink.ensure_bridge(&bridge, Some(1500), &[gateway])? == index,
                "bridge not reused"
            );

            let network = NetworkName::new(&bridge)?;
            let ipam = Ipam::new(&state.join("networks").join(network.as_str()), network);
            let ip_a = ipam.allocate(&subnet, "a", None)?;
            let ip_b = ipam.allocate(&subnet, "b", None)?;

            let ns_a = netns::create()?;
            // The second namespace is reached by path, as the engine does with
            // /proc/<pid>/ns/net.
            let created_b = netns::create()?;
            let ns_b = netns::open(format!("/proc/self/fd/{}", created_b.as_raw_fd()).as_ref())?;
            drop(created_b);

            let _guard_a = LinkGuard {
                netlink: &netlink,
                name: veth_a.clone(),
            };
            let _guard_b = LinkGuard {
                netlink: &netlink,
                name: veth_b.clone(),
            };
            attach_veth(
                &netlink,
                ns_a.as_fd(),
                &plan(&bridge, &veth_a, &subnet, ip_a),
            )?;
            attach_veth(
                &netlink,
                ns_b.as_fd(),
                &plan(&bridge, &veth_b, &subnet, ip_b),
            )?;

            // Both ends of each pair and, once it has ports, the bridge take
            // IPv4 segments up to BIG_TCP_MAX_SIZE (kernels from 6.3 report it).
            if netlink.gso_ipv4_max_size("lo")?.is_some() {
                let big = Some(wharf_net::BIG_TCP_MAX_SIZE);
                for link in [&veth_a, &veth_b, &bridge] {
                    ensure!(netlink.gso_ipv4_max_size(link)? == big, "{link}");
                }
                let inside = netns::run_in(ns_a.as_fd(), "ns a", || {
                    Netlink::open()?.gso_ipv4_max_size("eth0")
                })?;
                ensure!(inside == big, "eth0 in ns a: {inside:?}");
                // Without big_tcp a pair keeps the kernel's 64 KiB.
                let veth_c = format!("{veth_a}c");
                let _guard_c = LinkGuard {
                    netlink: &netlink,
                    name: veth_c.clone(),
                };
                let ns_c = netns::create()?;
                let ip_c = ipam.allocate(&subnet, "c", None)?;
                attach_veth(
                    &netlink,
                    ns_c.as_fd(),
                    &VethPlan {
                        big_tcp: false,
                        ..plan(&bridge, &veth_c, &subnet, ip_c)
                    },
                )?;
                ensure!(netlink.gso_ipv4_max_size(&veth_c)? == Some(65536));
                ensure!(netlink.delete_link(&veth_c)?, "veth c was missing");
                ipam.release_owner("c")?;
            }

            let addr = in_netns(&ns_a, &["ip", "-o", "-4", "addr", "show", "dev", "eth0"])?;
            ensure!(addr.contains(&format!("inet {ip_a}/24")), "{addr}");
            let route = in_netns(&ns_a, &["ip", "route", "show", "default"])?;
            ensure!(
                route.contains(&format!("default via {} dev eth0", subnet.gateway())),
                "{route}"
            );
            let lo = in_netns(&ns_b, &["ip", "-o", "link", "show", "lo"])?;
            ensure!(lo.contains("UP"), "{lo}");

            in_netns(
                &ns_a,
                &["/bin/busybox", "ping", "-c1", "-W2", &ip_b.to_string()],
            )?;
            in_netns(
                &ns_b,
                &["/bin/busybox", "ping", "-c1", "-W2", &ip_a.to_string()],
            )?;
            in_netns(
                &ns_a,
                &[
                    "/bin/busybox",
                    "ping",
                    "-c1",
                    "-W2",
                    &subnet.gateway().to_string(),
                ],
            )?;

            // Teardown, repeatable.
            ensure!(netlink.delete_link(&veth_a)?, "veth a was missing");
            ensure!(!netlink.delete_link(&veth_a)?, "veth a deleted twice");
            let gone = in_netns(&ns_a, &["ip", "-o", "link", "show"])?;
            ensure!(!gone.contains("eth0"), "peer survived its host end: {gone}");
            ensure!(netlink.delete_link(&veth_b)?, "veth b was missing");
            ensure!(netlink.delete_link(&bridge)?, "bridge was missing");
            ipam.release_owner("a")?;
            ipam.release_owner("b")?;
            ensure!(ipam.list()?.is_empty(), "allocations left");
            let left = links_with_prefix(&prefix)?;
            ensure!(left.is_empty(), "links left: {left:?}");
            Ok(())
        })
        .unwrap();
        assert_eq!(links_with_prefix(&prefix).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn failed_attach_rolls_back_the_veth() {
        require!(Root);
        let env = TestEnv::new();
        let (bridge, veth) = (env.name(), env.name());
        in_child_unshare(CloneFlags::CLONE_NEWNET, || {
            let netlink = Netlink::open()?;
            let ns = netns::create()?;
            let subnet = Subnet::new("10.231.8.0/24".parse()?, None, None)?;

            let missing = attach_veth(
                &netlink,
                ns.as_fd(),
                &plan(&bridge, &veth, &subnet, "10.231.8.2".parse()?),
            );
            match missing {
                Err(e @ NetError::LinkNotFound { .. }) => {
                    ensure!(e.kind() == ErrorKind::NotFound, "{e}")
                }
                other => anyhow::bail!("expected a missing bridge, got {other:?}"),
            }

            let _bridge_guard = LinkGuard {
                netlink: &netlink,
                name: bridge.clone(),
            };
            let _veth_guard = LinkGuard {
                netlink: &netlink,
                name: veth.clone(),
            };
            netlink.ensure_bridge(&bridge, None, &[subnet.with_prefix(subnet.gateway())])?;
            // A gateway outside the address's subnet: the route cannot be added.
            let mut bad = plan(&bridge, &veth, &subnet, "10.231.8.2".parse()?);
            bad.gateways = vec!["192.0.2.1".parse()?];
            let e = attach_veth(&netlink, ns.as_fd(), &bad)
                .expect_err("route via an unreachable gateway");
            ensure!(e.to_string() == "add default route via 192.0.2.1", "{e}");
            ensure!(netlink.link_index(&veth)?.is_none(), "veth not rolled back");
            let inside = in_netns(&ns, &["ip", "-o", "link", "show"])?;
            ensure!(!inside.contains("eth0"), "peer not rolled back: {inside}");

            // A link of another kind under the bridge's name is refused.
            let dummy = format!("{veth}v");
            let _dummy_guard = LinkGuard {
                netlink: &netlink,
                name: dummy.clone(),
            };
            let out = Command::new("ip")
                .args(["link", "add", &dummy, "type", "veth"])
                .output()?;
            ensure!(out.status.success(), "ip link add {dummy} type veth");
            let e = netlink
                .ensure_bridge(&dummy, None, &[])
                .expect_err("a veth is not a bridge");
            ensure!(e.kind() == ErrorKind::AlreadyExists, "{e}");
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn ipv6_addresses_are_usable_at_once() {
        require!(Root, Busybox);
        let env = TestEnv::new();
        let (bridge, veth_a, veth_b) = (env.name(), env.name(), env.name());
        in_child_unshare(CloneFlags::CLONE_NEWNET, || {
            let netlink = Netlink::open()?;
            let subnet = Subnet::new("fd00:231::/64".parse()?, None, None)?;
            let _bridge_guard = LinkGuard {
                netlink: &netlink,
                name: bridge.clone(),
            };
            netlink.ensure_bridge(&bridge, None, &[subnet.with_prefix(subnet.gateway())])?;
            let (ns_a, ns_b) = (netns::create()?, netns::create()?);
            let _guard_a = LinkGuard {
                netlink: &netlink,
                name: veth_a.clone(),
            };
            let _guard_b = LinkGuard {
                netlink: &netlink,
                name: veth_b.clone(),
            };
            let ip_a: IpAddr = "fd00:231::2".parse()?;
            let ip_b: IpAddr = "fd00:231::3".parse()?;
            attach_veth(
                &netlink,
                ns_a.as_fd(),
                &plan(&bridge, &veth_a, &subnet, ip_a),
            )?;
            attach_veth(
                &netlink,
                ns_b.as_fd(),
                &plan(&bridge, &veth_b, &subnet, ip_b),
            )?;
            let route = in_netns(&ns_a, &["ip", "-6", "route", "show", "default"])?;
            ensure!(
                route.contains("default via fd00:231::1 dev eth0"),
                "{route}"
            );
            in_netns(
                &ns_a,
                &["/bin/busybox", "ping", "-c1", "-W3", &ip_b.to_string()],
            )?;
            Ok(())
        })
        .unwrap();
    }
}
