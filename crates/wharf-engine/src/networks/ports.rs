//! Published ports: `-p`/`--publish` parsed into [`PortSpec`]s at the
//! boundary, expanded at start into single mappings, host ports reserved by
//! binding them (the monitor holds the sockets while the container runs, so
//! neither a host process nor another container can take them, and `-P`
//! gets free ports from the kernel), then handed to the firewall.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::str::FromStr as _;

use serde::{Deserialize, Serialize};
use wharf_net::firewall::{NetworkRules, PortMapping, PortRules, Protocol};
use wharf_net::{Endpoint, Network};

use super::net_err;
use super::NetworkState;
use crate::containers::ContainerConfig;
use crate::state::ContainerId;
use crate::{Engine, EngineError};

/// A published port as a resolved mapping.
pub type PublishedPort = PortMapping;

/// One `-p [ip:][hostport[-end]:]containerport[-end][/proto]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSpec {
    /// The host address; every address when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<IpAddr>,
    /// The host ports (a range of one for a single port); `None`: a free
    /// port picked at start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ports: Option<(u16, u16)>,
    /// The container ports (first, last).
    pub container_ports: (u16, u16),
    /// The protocol.
    pub protocol: Protocol,
}

fn bad(text: &str, why: impl std::fmt::Display) -> EngineError {
    EngineError::invalid(format!("invalid --publish {text:?}: {why}"))
}

fn port_range(text: &str, whole: &str, what: &str) -> Result<(u16, u16), EngineError> {
    let one = |s: &str| -> Result<u16, EngineError> {
        match s.parse::<u16>() {
            Ok(0) | Err(_) => Err(bad(whole, format!("{what} {s:?} is not a port (1-65535)"))),
            Ok(p) => Ok(p),
        }
    };
    match text.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (one(a)?, one(b)?);
            if a > b {
                return Err(bad(
                    whole,
                    format!("{what} range {text} ends before it starts"),
                ));
            }
            Ok((a, b))
        }
        None => {
            let p = one(text)?;
            Ok((p, p))
        }
    }
}

impl PortSpec {
    /// Parses Docker's `-p` forms: `80`, `8080:80`, `127.0.0.1:8080:80`,
    /// `127.0.0.1::80`, `[::1]:8080:80`, `8000-8009:80-89`, `8000-8009:80`
    /// (one free port of the range), each with an optional `/tcp`, `/udp`
    /// or `/sctp`.
    ///
    /// # Errors
    ///
    /// [`EngineError::InvalidArgument`] naming what is wrong.
    pub fn parse(text: &str) -> Result<PortSpec, EngineError> {
        let (rest, protocol) = match text.rsplit_once('/') {
            Some((r, p)) => (
                r,
                Protocol::from_str(p)
                    .map_err(|_| bad(text, format!("unknown protocol {p:?} (tcp, udp or sctp)")))?,
            ),
            None => (text, Protocol::Tcp),
        };
        // The host address may be a bracketed IPv6 address with colons.
        let (host_ip, rest) = if let Some(after) = rest.strip_prefix('[') {
            let (ip, tail) = after
                .split_once(']')
                .ok_or_else(|| bad(text, "unclosed [ in the host address"))?;
            let tail = tail
                .strip_prefix(':')
                .ok_or_else(|| bad(text, "expected :hostport:containerport after the address"))?;
            let ip: IpAddr = ip
                .parse()
                .map_err(|_| bad(text, format!("{ip:?} is not an IP address")))?;
            (Some(ip), tail.to_owned())
        } else {
            let parts: Vec<&str> = rest.split(':').collect();
            match parts.len() {
                1 | 2 => (None, rest.to_owned()),
                3 => {
                    let ip: IpAddr = parts[0]
                        .parse()
                        .map_err(|_| bad(text, format!("{:?} is not an IP address", parts[0])))?;
                    (Some(ip), format!("{}:{}", parts[1], parts[2]))
                }
                _ => return Err(bad(text, "too many colons (write IPv6 addresses in [ ])")),
            }
        };
        let (host, container) = match rest.split_once(':') {
            Some((h, c)) => (Some(h), c),
            None => (None, rest.as_str()),
        };
        if host_ip.is_some() && host.is_none() {
            return Err(bad(text, "expected ip:hostport:containerport"));
        }
        let container_ports = port_range(container, text, "container port")?;
        let host_ports = match host {
            None | Some("") => None,
            Some(h) => Some(port_range(h, text, "host port")?),
        };
        if let Some((a, b)) = host_ports {
            let (ca, cb) = container_ports;
            if ca != cb && b - a != cb - ca {
                return Err(bad(
                    text,
                    "the host and container port ranges differ in length",
                ));
            }
        }
        if host_ports.is_none() && container_ports.0 != container_ports.1 && host.is_some() {
            return Err(bad(text, "a container port range needs a host port range"));
        }
        let host_ip = host_ip.filter(|ip| !matches!(ip, IpAddr::V4(v4) if v4.is_unspecified()));
        Ok(PortSpec {
            host_ip,
            host_ports,
            container_ports,
            protocol,
        })
    }
}

/// `EXPOSE`/`--expose` entries: `80`, `80/udp`, `8000-8010/tcp`.
///
/// # Errors
///
/// [`EngineError::InvalidArgument`].
pub fn parse_exposed(text: &str) -> Result<Vec<(u16, Protocol)>, EngineError> {
    let (ports, protocol) = match text.rsplit_once('/') {
        Some((p, proto)) => (
            p,
            Protocol::from_str(proto).map_err(|_| {
                EngineError::invalid(format!("invalid --expose {text:?}: unknown protocol"))
            })?,
        ),
        None => (text, Protocol::Tcp),
    };
    let (a, b) = port_range(ports, text, "port").map_err(|_| {
        EngineError::invalid(format!("invalid --expose {text:?}: not a port or range"))
    })?;
    Ok((a..=b).map(|p| (p, protocol)).collect())
}

/// One mapping to make at start: the host ports it may take (`None`: any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Wanted {
    host_ip: Option<IpAddr>,
    host_ports: Option<(u16, u16)>,
    container_port: u16,
    protocol: Protocol,
}

/// Expands the container's `-p` (and `-P` over its exposed ports) into
/// single mappings.
pub(crate) fn plan(config: &ContainerConfig) -> Result<Vec<Wanted>, EngineError> {
    let mut out = Vec::new();
    for spec in &config.ports {
        let (ca, cb) = spec.container_ports;
        for (i, port) in (ca..=cb).enumerate() {
            let host_ports = match spec.host_ports {
                Some((ha, hb)) if ca != cb => {
                    let p = ha + u16::try_from(i).expect("ranges fit u16");
                    let _ = hb;
                    Some((p, p))
                }
                other => other,
            };
            out.push(Wanted {
                host_ip: spec.host_ip,
                host_ports,
                container_port: port,
                protocol: spec.protocol,
            });
        }
    }
    if config.publish_all {
        for (port, protocol) in &config.exposed_ports {
            let taken = out
                .iter()
                .any(|w| w.container_port == *port && w.protocol == *protocol);
            if !taken {
                out.push(Wanted {
                    host_ip: None,
                    host_ports: None,
                    container_port: *port,
                    protocol: *protocol,
                });
            }
        }
    }
    Ok(out)
}

/// Binds a socket on each wanted host port (a free one for `None` and for
/// ranges) and returns the sockets with the mappings they reserve.
pub(crate) fn reserve(wanted: &[Wanted]) -> Result<(Vec<OwnedFd>, Vec<PortMapping>), EngineError> {
    let mut fds = Vec::new();
    let mut out = Vec::new();
    for w in wanted {
        let ip = w.host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let candidates: Vec<u16> = match w.host_ports {
            None => vec![0],
            Some((a, b)) => (a..=b).collect(),
        };
        let mut last_err = None;
        let mut bound = None;
        for port in candidates {
            match bind(SocketAddr::new(ip, port), w.protocol) {
                Ok(found) => {
                    bound = Some(found);
                    break;
                }
                Err(e) => last_err = Some((port, e)),
            }
        }
        let (fd, port) = match bound {
            Some(b) => b,
            None => {
                let (port, e) = last_err.expect("at least one candidate was tried");
                let what = match w.host_ports {
                    Some((a, b)) if a != b => format!("{ip}:{a}-{b}/{}", w.protocol),
                    _ => format!("{}/{}", SocketAddr::new(ip, port), w.protocol),
                };
                return Err(EngineError::PortUnavailable {
                    port: what,
                    source: e,
                });
            }
        };
        if let Some(fd) = fd {
            fds.push(fd);
        }
        out.push(PortMapping {
            host_ip: w.host_ip,
            host_port: port,
            container_port: w.container_port,
            protocol: w.protocol,
        });
    }
    Ok((fds, out))
}

/// Binds (without listening) `addr` for `protocol`; returns the socket and
/// the port bound. SCTP cannot be reserved where the kernel has no SCTP
/// (the mapping is still made).
fn bind(addr: SocketAddr, protocol: Protocol) -> std::io::Result<(Option<OwnedFd>, u16)> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    let family = if addr.is_ipv4() {
        AddressFamily::INET
    } else {
        AddressFamily::INET6
    };
    let (kind, proto) = match protocol {
        Protocol::Tcp => (SocketType::STREAM, None),
        Protocol::Udp => (SocketType::DGRAM, None),
        Protocol::Sctp => (SocketType::STREAM, Some(rustix::net::ipproto::SCTP)),
    };
    let fd = match rustix::net::socket_with(family, kind, SocketFlags::CLOEXEC, proto) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::PROTONOSUPPORT) if protocol == Protocol::Sctp => {
            return Ok((None, addr.port()));
        }
        Err(e) => return Err(e.into()),
    };
    if addr.is_ipv6() {
        rustix::net::sockopt::set_ipv6_v6only(&fd, true)?;
    }
    rustix::net::bind(&fd, &addr)?;
    let port =
        SocketAddr::try_from(rustix::net::getsockname(&fd)?).map_or(addr.port(), |a| a.port());
    Ok((Some(fd), port))
}

fn network_rules(network: &Network) -> NetworkRules {
    NetworkRules {
        id: network.id.clone(),
        bridge: network.bridge.clone(),
        subnets: network.subnets.iter().map(|s| s.subnet).collect(),
        gateways: network.subnets.iter().map(|s| s.gateway).collect(),
        internal: network.internal,
    }
}

fn port_rules(
    id: &ContainerId,
    network: &Network,
    endpoint: &Endpoint,
    ports: &[PortMapping],
) -> PortRules {
    PortRules {
        owner: id.to_string(),
        bridge: network.bridge.clone(),
        subnets: network.subnets.iter().map(|s| s.subnet).collect(),
        internal: network.internal,
        ipv4: endpoint.ipv4(),
        ipv6: endpoint.ipv6(),
        ports: ports.to_vec(),
    }
}

fn firewall() -> Result<wharf_net::firewall::Firewall, EngineError> {
    wharf_net::firewall::Firewall::new().map_err(net_err)
}

impl Engine {
    pub(crate) fn firewall_ensure_network(&self, network: &Network) -> Result<(), EngineError> {
        firewall()?
            .ensure_network(&network_rules(network))
            .map_err(net_err)
    }

    pub(crate) fn firewall_remove_network(&self, network: &Network) -> Result<(), EngineError> {
        firewall()?
            .remove_network(&network_rules(network))
            .map_err(net_err)
    }

    pub(crate) fn firewall_add_ports(
        &self,
        id: &ContainerId,
        network: &Network,
        endpoint: &Endpoint,
        ports: &[PortMapping],
    ) -> Result<(), EngineError> {
        firewall()?
            .add_ports(&port_rules(id, network, endpoint, ports))
            .map_err(net_err)
    }

    pub(crate) fn firewall_remove_ports(
        &self,
        id: &ContainerId,
        network: &Network,
        state: &NetworkState,
    ) -> Result<(), EngineError> {
        let Some(first) = state.endpoints.first() else {
            return Ok(());
        };
        firewall()?
            .remove_ports(&port_rules(id, network, &first.endpoint, &state.ports))
            .map_err(net_err)
    }

    /// Removes port rules of this root's containers that are not running
    /// (left by a crash).
    pub(crate) fn repair_firewall(
        &self,
        stopped: &std::collections::BTreeSet<String>,
    ) -> Result<(), EngineError> {
        let fw = firewall()?;
        let installed = fw.state().map_err(net_err)?;
        for owner in installed.port_owners {
            let Some(owner) = stopped.iter().find(|s| s.starts_with(&owner)).cloned() else {
                continue;
            };
            fw.remove_ports(&PortRules {
                owner,
                bridge: String::new(),
                subnets: Vec::new(),
                internal: false,
                ipv4: None,
                ipv6: None,
                ports: Vec::new(),
            })
            .map_err(net_err)?;
        }
        Ok(())
    }

    /// `network reload`: installs again the rules of this root's networks
    /// and of its running containers' ports (after a firewall flush). Each
    /// step is idempotent and leaves other roots' rules alone.
    ///
    /// # Errors
    ///
    /// The state failed; nft refused the rules.
    pub fn reload_networks(&self) -> Result<usize, EngineError> {
        let networks = self.network_store().list().map_err(net_err)?;
        let nets: Vec<NetworkRules> = networks.iter().map(network_rules).collect();
        let mut ports = Vec::new();
        let store = self.containers()?;
        for record in store.list(crate::state::ListFilter::All)? {
            let record = self.reconcile(record, false)?;
            if !record.state.is_up() {
                continue;
            }
            let Some(state) = NetworkState::read(&store.container_dir(&record.id))? else {
                continue;
            };
            let (Some(first), false) = (state.endpoints.first(), state.ports.is_empty()) else {
                continue;
            };
            if let Some(network) = networks.iter().find(|n| n.id == first.endpoint.network_id) {
                ports.push(port_rules(
                    &record.id,
                    network,
                    &first.endpoint,
                    &state.ports,
                ));
            }
        }
        let fw = firewall()?;
        for n in &nets {
            fw.ensure_network(n).map_err(net_err)?;
        }
        for p in &ports {
            fw.add_ports(p).map_err(net_err)?;
        }
        Ok(nets.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PortSpec {
        PortSpec::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn publish_forms() {
        assert_eq!(
            p("8080:80"),
            PortSpec {
                host_ip: None,
                host_ports: Some((8080, 8080)),
                container_ports: (80, 80),
                protocol: Protocol::Tcp
            }
        );
        assert_eq!(p("80").host_ports, None);
        assert_eq!(
            p("127.0.0.1:8080:80/udp").host_ip,
            Some("127.0.0.1".parse().unwrap())
        );
        assert_eq!(p("127.0.0.1:8080:80/udp").protocol, Protocol::Udp);
        assert_eq!(p("127.0.0.1::80").host_ports, None);
        assert_eq!(p("[::1]:8080:80").host_ip, Some("::1".parse().unwrap()));
        assert_eq!(p("0.0.0.0:8080:80").host_ip, None);
        assert_eq!(p("8000-8009:80-89").host_ports, Some((8000, 8009)));
        assert_eq!(p("8000-8009:80").container_ports, (80, 80));
        assert_eq!(p("53:53/sctp").protocol, Protocol::Sctp);
        for (bad, why) in [
            ("8080:0", "not a port"),
            ("70000:80", "not a port"),
            ("8080:80/icmp", "unknown protocol"),
            ("8000-8001:80-89", "differ in length"),
            ("1.2.3.4:5:6:7", "too many colons"),
            ("host:8080:80", "not an IP address"),
            ("[::1:8080:80", "unclosed"),
            ("90-80:80", "ends before"),
        ] {
            let e = PortSpec::parse(bad).unwrap_err().to_string();
            assert!(e.contains(why) && e.contains(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn plan_expands_ranges_and_publish_all() {
        let mut config: ContainerConfig = serde_json::from_value(serde_json::json!({
            "image": "x", "args": [], "entrypoint": [], "cmd": [], "env": [],
            "working_dir": "/", "user": "", "hostname": "h", "tty": false,
            "open_stdin": false, "stop_signal": "SIGTERM", "stop_timeout": null,
            "restart": "no", "auto_remove": false, "log": {"driver": "none", "opts": {}},
            "network": "bridge", "init": false, "privileged": false, "read_only": false,
            "mounts": [], "anonymous_volumes": [], "annotations": {}, "health": null,
            "platform": "linux/amd64"
        }))
        .expect("a minimal config");
        config.ports = vec![p("8000-8001:80-81"), p("9000-9005:90/udp")];
        config.publish_all = true;
        config.exposed_ports = vec![(80, Protocol::Tcp), (443, Protocol::Tcp)];
        let plan = plan(&config).unwrap();
        assert_eq!(plan.len(), 4, "{plan:?}");
        assert_eq!(plan[0].host_ports, Some((8000, 8000)));
        assert_eq!(plan[1].host_ports, Some((8001, 8001)));
        assert_eq!(plan[1].container_port, 81);
        assert_eq!(plan[2].host_ports, Some((9000, 9005)));
        assert_eq!((plan[3].container_port, plan[3].host_ports), (443, None));
    }

    #[test]
    fn reserve_binds_and_reports_conflicts() {
        let (fds, got) = reserve(&[Wanted {
            host_ip: Some("127.0.0.1".parse().unwrap()),
            host_ports: None,
            container_port: 80,
            protocol: Protocol::Tcp,
        }])
        .unwrap();
        assert_eq!(fds.len(), 1);
        let port = got[0].host_port;
        assert_ne!(port, 0);
        let e = reserve(&[Wanted {
            host_ip: Some("127.0.0.1".parse().unwrap()),
            host_ports: Some((port, port)),
            container_port: 80,
            protocol: Protocol::Tcp,
        }])
        .unwrap_err()
        .to_string();
        assert!(e.contains(&format!("127.0.0.1:{port}/tcp")), "{e}");
        // A range skips the taken port.
        let (_fds2, got2) = reserve(&[Wanted {
            host_ip: Some("127.0.0.1".parse().unwrap()),
            host_ports: Some((port, port.saturating_add(5))),
            container_port: 80,
            protocol: Protocol::Tcp,
        }])
        .unwrap();
        assert_ne!(got2[0].host_port, port);
    }
}
