//! NAT, isolation between networks and published ports, with nftables.
//!
//! Everything Wharf installs lives in one table, `inet wharf` (IPv4 and IPv6
//! together): `nft delete table inet wharf` removes all of it, and nothing
//! of the host's own rules is touched. The host's own chains still see every
//! packet: an `accept` here only ends Wharf's chain, so the host's policy
//! decides whatever Wharf does not drop.
//!
//! # Layout
//!
//! Shared by every network and container (the "skeleton", re-declared by
//! every call that adds, so the base chains always hold exactly the current
//! rules):
//!
//! - set `bridges` (`ifname`): every Wharf bridge.
//! - verdict maps keyed by bridge (`ifname : verdict`): `forward-from`,
//!   `forward-to`, `nat-from`, `nat-to`, `raw-from`, pointing at the
//!   per-network chains.
//! - verdict maps keyed by published port: `ports-any`
//!   (`inet_proto . inet_service`, every local address), `ports-ip`
//!   (`inet_proto . ipv4_addr . inet_service`), `ports-ip6`
//!   (`inet_proto . ipv6_addr . inet_service`), each element a
//!   `goto c-<owner12>`.
//! - base chains `prerouting` (nat, dstnat) and `output` (nat, -100) jump to
//!   the regular chain `published`, which looks the packet up in the three
//!   port maps; `postrouting` (nat, srcnat) masquerades `127.0.0.0/8` going
//!   into a Wharf bridge and dispatches by input bridge through `nat-from`
//!   and by output bridge through `nat-to`;
//!   `forward` (filter, policy accept) accepts established traffic,
//!   dispatches by output then input bridge, and accepts DNAT'd traffic into
//!   a Wharf bridge.
//!
//! Per network (`<id12>` is the first 12 characters of the network id):
//!
//! - `n-<id12>-from`, reached from `forward-from[bridge]`: traffic within the
//!   bridge is accepted, published traffic too, and traffic into another
//!   Wharf bridge is dropped (isolation). For an internal network: anything
//!   leaving the bridge is dropped.
//! - `n-<id12>-to`, internal networks only, reached from
//!   `forward-to[bridge]`: anything entering the bridge from elsewhere is
//!   dropped.
//! - `n-<id12>-nat`, not for internal networks, reached from
//!   `nat-from[bridge]`: masquerade of each subnet towards anything outside
//!   it.
//! - `n-<id12>-raw`, reached from `raw-from[bridge]` in the base chain
//!   `raw-prerouting` (filter, raw): traffic between two addresses of one
//!   subnet that is not for the host goes untracked (no NAT applies to it
//!   and it is accepted whole; with br_netfilter every bridged frame would
//!   otherwise pay a conntrack lookup).
//! - `n-<id12>-hairpin`, not for internal networks, reached from
//!   `nat-to[bridge]`: masquerade of DNAT'd traffic from the bridge's own
//!   subnets going back into it (a container reaching its own or a
//!   neighbour's published port through a host address). Dispatched by the
//!   output bridge because bridged packets (`br_netfilter`) reach
//!   postrouting with no input interface.
//!
//! Per port owner (a container; `<owner12>` is the first 12 characters of
//! its id): chain `c-<owner12>` holding one `dnat` rule per mapping and
//! family, reached from its elements in the port maps.
//!
//! # Removal without handles, and conflicts
//!
//! Every call is one `nft -j -f -` transaction (atomic: nothing is half
//! applied) and none lists the ruleset on success. Removal relies on two
//! kernel rules: adding what exists is accepted (an element only if its data
//! is the same), and deleting what is absent is an error. So a removal adds
//! each object first and deletes it in the same transaction: an empty chain,
//! then `flush` and `delete`; a port element `key : goto c-<owner12>`, then
//! `delete` by key. That is idempotent, and owner-safe: the key of another
//! owner has other data, so the add fails and the transaction with it, never
//! deleting someone else's mapping. Only when that fast path fails (the
//! table is absent, a key belongs to someone else, the caller's list differs
//! from what was installed) is the table listed once, and exactly what
//! points at the owner's chains removed.
//!
//! The same rule refuses conflicts: publishing a key that another owner
//! holds fails with `EEXIST`, and [`NetError::PortConflict`] names the
//! holder. Conflicts are checked per key: `0.0.0.0:80/tcp` of one owner and
//! `127.0.0.1:80/tcp` of another are not detected here (the engine binds the
//! host port too, which catches them).

mod nft;
mod plan;

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use ipnet::IpNet;

use crate::error::NetError;

/// A transport protocol a port is published for.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// The lowercase name, as nft and Docker write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

impl FromStr for Protocol {
    type Err = NetError;

    /// Parses `tcp`, `udp` or `sctp` (lowercase only, as Docker accepts).
    fn from_str(s: &str) -> Result<Protocol, NetError> {
        match s {
            "tcp" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            "sctp" => Ok(Protocol::Sctp),
            other => Err(NetError::InvalidProtocol {
                protocol: other.to_owned(),
            }),
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One published port: traffic to `host_ip:host_port` over `protocol` goes
/// to the container's `container_port`. Ranges are expanded by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct PortMapping {
    /// The host address; `None` is every local address, both families.
    /// `0.0.0.0` is every local IPv4 address, `::` every local IPv6 one.
    pub host_ip: Option<IpAddr>,
    /// The host port (not 0: a random port is chosen by the caller).
    pub host_port: u16,
    /// The port inside the container (not 0).
    pub container_port: u16,
    /// The protocol.
    pub protocol: Protocol,
}

impl fmt::Display for PortMapping {
    /// Docker's notation: `0.0.0.0:8080->80/tcp`, `[::1]:8080->80/udp`;
    /// every local address is written `*:8080->80/tcp`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host_ip {
            None => write!(f, "*")?,
            Some(IpAddr::V4(ip)) => write!(f, "{ip}")?,
            Some(IpAddr::V6(ip)) => write!(f, "[{ip}]")?,
        }
        write!(
            f,
            ":{}->{}/{}",
            self.host_port, self.container_port, self.protocol
        )
    }
}

/// What the firewall installs for one network.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NetworkRules {
    /// The network id (lowercase hex); its first 12 characters name its
    /// chains.
    pub id: String,
    /// The network's bridge.
    pub bridge: String,
    /// The network's subnets (any mix of IPv4 and IPv6).
    pub subnets: Vec<IpNet>,
    /// The host's addresses on the bridge (the gateways). Traffic within a
    /// subnet that is not for one of them goes untracked; without them a
    /// per-packet route lookup (`fib daddr type local`) decides.
    #[serde(default)]
    pub gateways: Vec<IpAddr>,
    /// An internal network: no masquerade, and nothing leaves or enters its
    /// bridge except within it.
    pub internal: bool,
}

/// The published ports of one owner (a container) on one network.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PortRules {
    /// The owner's id (lowercase hex); its first 12 characters name its
    /// chain.
    pub owner: String,
    /// The bridge of the network the owner is attached to.
    pub bridge: String,
    /// That network's subnets; the owner's addresses must lie in them.
    pub subnets: Vec<IpNet>,
    /// Whether that network is internal: then nothing is published (as
    /// Docker does, the ports are ignored) and [`Firewall::add_ports`]
    /// succeeds without a change.
    #[serde(default)]
    pub internal: bool,
    /// The owner's IPv4 address on the network, if it has one.
    pub ipv4: Option<Ipv4Addr>,
    /// The owner's IPv6 address on the network, if it has one.
    pub ipv6: Option<Ipv6Addr>,
    /// The ports to publish.
    pub ports: Vec<PortMapping>,
}

/// What is installed in the table `inet wharf`, from its chains' names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FirewallState {
    /// Whether the table exists at all.
    pub table: bool,
    /// Networks with chains (first 12 characters of their ids).
    pub networks: BTreeSet<String>,
    /// Port owners with chains (first 12 characters of their ids).
    pub port_owners: BTreeSet<String>,
    /// Bridges in the `bridges` set.
    pub bridges: BTreeSet<String>,
}

/// The nftables firewall: one handle on the `nft` binary. Every method is
/// one `nft` run (about 4 ms) acting in the network namespace of the calling
/// thread (the child inherits it), so wrap calls in
/// [`crate::netns::run_in`] to act elsewhere.
///
/// Callers: the engine calls [`ensure_network`](Firewall::ensure_network)
/// when a network is created or Wharf starts, [`add_ports`](Firewall::add_ports)
/// when a container with published ports starts and
/// [`remove_ports`](Firewall::remove_ports) when it stops,
/// [`remove_network`](Firewall::remove_network) when a network is removed,
/// and [`reload`](Firewall::reload) when the table was lost (`nft flush
/// ruleset` by a firewall manager). Calls for different owners and networks
/// may run concurrently: each is one kernel transaction.
#[derive(Debug, Clone)]
pub struct Firewall {
    nft: PathBuf,
}

/// Where `nft` is looked for before `$PATH` (services often run with a
/// trimmed `$PATH`).
const NFT_CANDIDATES: &[&str] = &["/usr/sbin/nft", "/sbin/nft"];

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    fs_err::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

impl Firewall {
    /// Finds `nft`: `/usr/sbin/nft`, `/sbin/nft`, then `$PATH`. Runs nothing.
    ///
    /// # Errors
    ///
    /// [`NetError::NftMissing`] (kind `Unavailable`): install nftables.
    pub fn new() -> Result<Firewall, NetError> {
        let from_path = std::env::var_os("PATH")
            .map(|path| {
                std::env::split_paths(&path)
                    .map(|dir| dir.join("nft"))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        NFT_CANDIDATES
            .iter()
            .map(PathBuf::from)
            .chain(from_path)
            .find(|candidate| is_executable(candidate))
            .map(|nft| Firewall { nft })
            .ok_or(NetError::NftMissing)
    }

    /// The `nft` binary in use.
    pub fn nft_path(&self) -> &Path {
        &self.nft
    }

    /// Installs the rules of `net` (and the table, sets, maps and base chains
    /// if missing) in one transaction, replacing the network's previous
    /// rules. Idempotent.
    ///
    /// # Errors
    ///
    /// [`NetError::InvalidFirewallRules`] for a malformed id or bridge name,
    /// [`NetError::BridgeInUse`] when another network's rules hold the
    /// bridge, [`NetError::Nft`].
    pub fn ensure_network(&self, net: &NetworkRules) -> Result<(), NetError> {
        let network = plan::Network::check(net)?;
        let commands = plan::ensure_network(&network);
        match nft::apply(&self.nft, &commands) {
            Ok(()) => Ok(()),
            Err(failure) => {
                if failure.is_exists() {
                    let installed = self.installed()?;
                    if let Some(holder) = installed.bridge_holder(network.bridge, network.id12) {
                        return Err(NetError::BridgeInUse {
                            bridge: network.bridge.to_owned(),
                            network: network.id12.to_owned(),
                            holder,
                        });
                    }
                }
                Err(nft_err(
                    "set up firewall for network",
                    network.id12,
                    failure,
                ))
            }
        }
    }

    /// Removes the rules of `net`: its chains, its bridge's elements and its
    /// bridge from the `bridges` set. Idempotent: an absent network or table
    /// is fine. The bridge's elements are only removed if they point at this
    /// network's chains.
    ///
    /// # Errors
    ///
    /// [`NetError::InvalidFirewallRules`], [`NetError::Nft`].
    pub fn remove_network(&self, net: &NetworkRules) -> Result<(), NetError> {
        let network = plan::Network::check(net)?;
        let fast = plan::remove_network(
            network.id12,
            &plan::network_elements(&network),
            &[network.bridge],
        );
        if nft::apply(&self.nft, &fast).is_ok() {
            return Ok(());
        }
        // Absent table, a bridge held by another network, or elements under
        // another bridge: remove exactly what the table says is ours.
        let installed = self.installed()?;
        if !installed.table {
            return Ok(());
        }
        let elements = installed.network_elements(network.id12);
        let bridges = installed.network_bridges(network.id12, network.bridge);
        let slow = plan::remove_network(network.id12, &elements, &bridges);
        nft::apply(&self.nft, &slow)
            .map_err(|failure| nft_err("remove firewall of network", network.id12, failure))
    }

    /// Publishes the ports of `p.owner` in one transaction, replacing that
    /// owner's previous rules; sets `route_localnet` on the bridge when a
    /// port is reachable at `127.0.0.1`
    /// ([`crate::sysctl::enable_route_localnet`]). Idempotent for the same
    /// owner. Nothing is published on an internal network (see
    /// [`PortRules::internal`]); an empty port list changes nothing (use
    /// [`remove_ports`](Firewall::remove_ports) to withdraw ports).
    ///
    /// The start path: normally one `nft` run that only creates objects (the
    /// owner's chain, its rules, its map elements), so the kernel commits
    /// without waiting for an RCU grace period. When that fails (no table
    /// yet because [`ensure_network`](Firewall::ensure_network) was not
    /// called, the owner's chain exists already, a conflict) a second run
    /// declares the table and replaces the owner's chain, and on `EEXIST` a
    /// listing finds the conflicting owner.
    ///
    /// # Errors
    ///
    /// [`NetError::PortConflict`] when another owner publishes one of the
    /// keys (nothing is changed), [`NetError::InvalidPortMapping`],
    /// [`NetError::InvalidFirewallRules`], [`NetError::Sysctl`],
    /// [`NetError::Nft`].
    pub fn add_ports(&self, p: &PortRules) -> Result<(), NetError> {
        let owner = plan::Owner::check(p)?;
        if p.internal {
            tracing::warn!(
                owner = owner.id12,
                bridge = p.bridge,
                "ports are not published on an internal network"
            );
            return Ok(());
        }
        if owner.dnats.is_empty() {
            return Ok(());
        }
        if owner.needs_route_localnet() {
            crate::sysctl::enable_route_localnet(&p.bridge)?;
        }
        let started = std::time::Instant::now();
        // One run on the fast path; the slow path covers a missing skeleton,
        // an existing chain (a repeated call) and conflicts.
        if nft::apply(&self.nft, &plan::add_ports(&owner)).is_ok() {
            tracing::debug!(owner = owner.id12, elapsed = ?started.elapsed(), "published ports");
            return Ok(());
        }
        match nft::apply(&self.nft, &plan::replace_ports(&owner)) {
            Ok(()) => {
                tracing::debug!(owner = owner.id12, elapsed = ?started.elapsed(), "replaced published ports");
                Ok(())
            }
            Err(failure) => {
                if failure.is_exists() {
                    let installed = self.installed()?;
                    if let Some((mapping, holder)) = installed.port_conflict(&owner) {
                        return Err(NetError::PortConflict {
                            mapping: mapping.to_string(),
                            owner: owner.id12.to_owned(),
                            holder,
                        });
                    }
                }
                Err(nft_err("publish ports of", owner.id12, failure))
            }
        }
    }

    /// Removes the published ports of `p.owner`: its chain and the port
    /// elements pointing at it. Idempotent, and safe with a list that names
    /// another owner's ports (those are left alone) or misses some of the
    /// owner's (the table is then listed to find them).
    ///
    /// One `nft` run normally; as it deletes, the kernel waits for an RCU
    /// grace period before nft exits (a few ms, more on `HZ=250` kernels).
    ///
    /// # Errors
    ///
    /// [`NetError::InvalidFirewallRules`], [`NetError::Nft`].
    pub fn remove_ports(&self, p: &PortRules) -> Result<(), NetError> {
        let owner = plan::Owner::check_owner(p)?;
        let keys = plan::Owner::check(p).map(|o| o.keys()).unwrap_or_default();
        let fast = plan::remove_ports(owner, &keys);
        if nft::apply(&self.nft, &fast).is_ok() {
            return Ok(());
        }
        let installed = self.installed()?;
        if !installed.table {
            return Ok(());
        }
        let keys = installed.owner_keys(owner);
        let slow = plan::remove_ports(owner, &keys);
        nft::apply(&self.nft, &slow)
            .map_err(|failure| nft_err("remove published ports of", owner, failure))
    }

    /// Rebuilds the whole table from `nets` and `ports` in one transaction:
    /// the old table (if any) is deleted and the new one created atomically,
    /// so traffic never sees a half-built table. For after `nft flush
    /// ruleset`, or to drop whatever a crash left behind.
    ///
    /// # Errors
    ///
    /// As [`ensure_network`](Firewall::ensure_network) and
    /// [`add_ports`](Firewall::add_ports); a conflict between two entries
    /// of `ports` fails the whole reload and leaves the table as it was.
    pub fn reload(&self, nets: &[NetworkRules], ports: &[PortRules]) -> Result<(), NetError> {
        let networks = nets
            .iter()
            .map(plan::Network::check)
            .collect::<Result<Vec<_>, _>>()?;
        let owners = ports
            .iter()
            .filter(|p| !p.internal)
            .map(plan::Owner::check)
            .collect::<Result<Vec<_>, _>>()?;
        for (p, owner) in ports.iter().filter(|p| !p.internal).zip(&owners) {
            if owner.needs_route_localnet() {
                crate::sysctl::enable_route_localnet(&p.bridge)?;
            }
        }
        let commands = plan::reload(&networks, &owners);
        nft::apply(&self.nft, &commands).map_err(|failure| {
            nft_err(
                "reload firewall table",
                format!("inet {}", plan::TABLE),
                failure,
            )
        })
    }

    /// What is installed: networks, port owners and bridges present. Lists
    /// the table (a few ms; for leak checks and `network prune`, not for the
    /// container start path).
    ///
    /// # Errors
    ///
    /// [`NetError::Nft`].
    pub fn state(&self) -> Result<FirewallState, NetError> {
        Ok(self.installed()?.state())
    }

    /// Deletes the table `inet wharf` if present. Idempotent.
    ///
    /// # Errors
    ///
    /// [`NetError::Nft`].
    pub fn remove_all(&self) -> Result<(), NetError> {
        nft::apply(&self.nft, &plan::remove_all()).map_err(|failure| {
            nft_err(
                "delete firewall table",
                format!("inet {}", plan::TABLE),
                failure,
            )
        })
    }

    fn installed(&self) -> Result<nft::Installed, NetError> {
        nft::list(&self.nft)
            .map_err(|failure| nft_err("list table", format!("inet {}", plan::TABLE), failure))
    }
}

fn nft_err(
    operation: &'static str,
    object: impl Into<String>,
    source: crate::error::NftFailure,
) -> NetError {
    NetError::Nft {
        operation,
        object: object.into(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_parses_displays_and_serializes_lowercase() {
        for (text, protocol) in [
            ("tcp", Protocol::Tcp),
            ("udp", Protocol::Udp),
            ("sctp", Protocol::Sctp),
        ] {
            assert_eq!(text.parse::<Protocol>().unwrap(), protocol);
            assert_eq!(protocol.to_string(), text);
            assert_eq!(
                serde_json::to_string(&protocol).unwrap(),
                format!("\"{text}\"")
            );
        }
        let e = "TCP".parse::<Protocol>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid protocol \"TCP\": expected tcp, udp or sctp"
        );
    }

    #[test]
    fn port_mapping_round_trips_through_json_and_displays_like_docker() {
        let mapping = PortMapping {
            host_ip: Some("::1".parse().unwrap()),
            host_port: 8080,
            container_port: 80,
            protocol: Protocol::Udp,
        };
        let json = serde_json::to_string(&mapping).unwrap();
        assert_eq!(
            json,
            r#"{"host_ip":"::1","host_port":8080,"container_port":80,"protocol":"udp"}"#
        );
        assert_eq!(serde_json::from_str::<PortMapping>(&json).unwrap(), mapping);
        assert_eq!(mapping.to_string(), "[::1]:8080->80/udp");
        let any = PortMapping {
            host_ip: None,
            ..mapping
        };
        assert_eq!(any.to_string(), "*:8080->80/udp");
    }
}
