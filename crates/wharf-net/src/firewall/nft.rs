//! Running the plan: `nft -j -f -` for a transaction, `nft -j list table`
//! for what is installed.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::process::{Command as Process, Stdio};

use serde_json::Value;

use super::plan::{self, BridgeElement, Command, Owner, PortKey};
use super::{FirewallState, PortMapping, Protocol};
use crate::error::NftFailure;

/// Runs `nft` with `args`, feeding `input` on stdin; returns its stdout.
fn run(nft: &Path, args: &[&str], input: &str) -> Result<String, NftFailure> {
    let mut command = Process::new(nft);
    command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // A transaction must not commit after its caller was killed: the
    // caller's cleanup (`rm -f` of a container whose monitor died while it
    // published ports) would have removed the rules before they land.
    wharf_sys::process::kill_with_parent(&mut command);
    let mut child = command.spawn().map_err(NftFailure::Run)?;
    let mut stdin = child.stdin.take().expect("stdin was piped");
    // nft reads its whole input before it answers, so writing first cannot
    // deadlock; a write error means nft died, which its status tells better.
    let written = stdin.write_all(input.as_bytes());
    drop(stdin);
    let output = child.wait_with_output().map_err(NftFailure::Run)?;
    if !output.status.success() {
        return Err(NftFailure::Exit {
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    written.map_err(NftFailure::Run)?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Applies `commands` as one transaction.
pub(super) fn apply(nft: &Path, commands: &[Command]) -> Result<(), NftFailure> {
    if commands.is_empty() {
        return Ok(());
    }
    let input = plan::render(commands);
    tracing::trace!(input, "nft -j -f -");
    run(nft, &["-j", "-f", "-"], &input).map(drop)
}

/// Lists the table; an absent table is an empty [`Installed`].
pub(super) fn list(nft: &Path) -> Result<Installed, NftFailure> {
    match run(nft, &["-j", "list", "table", "inet", plan::TABLE], "") {
        Ok(output) => {
            let value: Value = serde_json::from_str(&output).map_err(NftFailure::Output)?;
            Ok(Installed::parse(&value))
        }
        Err(failure) if failure.is_not_found() => Ok(Installed::default()),
        Err(failure) => Err(failure),
    }
}

/// What the table holds, as far as Wharf's bookkeeping goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Installed {
    pub(crate) table: bool,
    pub(crate) chains: BTreeSet<String>,
    pub(crate) bridges: BTreeSet<String>,
    pub(crate) bridge_elements: Vec<BridgeElement>,
    /// Port map elements and the chain each one goes to.
    pub(crate) port_elements: Vec<(PortKey, String)>,
}

/// The target chain of a `{"jump": {"target": ...}}` or `{"goto": ...}`.
fn verdict_target(value: &Value) -> Option<&str> {
    ["jump", "goto"]
        .iter()
        .find_map(|kind| value.get(kind)?.get("target")?.as_str())
}

fn parse_port_key(map: &str, key: &Value) -> Option<PortKey> {
    let items = key.get("concat")?.as_array()?;
    let protocol: Protocol = items.first()?.as_str()?.parse().ok()?;
    let port = u16::try_from(items.last()?.as_u64()?).ok()?;
    match (map, items.len()) {
        (plan::PORTS_ANY, 2) => Some(PortKey::Any(protocol, port)),
        (plan::PORTS_IP, 3) => Some(PortKey::V4(
            protocol,
            items[1].as_str()?.parse::<Ipv4Addr>().ok()?,
            port,
        )),
        (plan::PORTS_IP6, 3) => Some(PortKey::V6(
            protocol,
            items[1].as_str()?.parse::<Ipv6Addr>().ok()?,
            port,
        )),
        _ => None,
    }
}

impl Installed {
    /// Parses `nft -j list table inet wharf`; what Wharf did not write is
    /// ignored.
    pub(crate) fn parse(listing: &Value) -> Installed {
        let mut installed = Installed::default();
        let objects = listing
            .get("nftables")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for object in objects {
            if object.get("table").is_some() {
                installed.table = true;
            }
            if let Some(name) = object
                .get("chain")
                .and_then(|c| c.get("name"))
                .and_then(Value::as_str)
            {
                installed.chains.insert(name.to_owned());
            }
            let Some(set) = object.get("set").or_else(|| object.get("map")) else {
                continue;
            };
            let name = set.get("name").and_then(Value::as_str).unwrap_or_default();
            let elements = set
                .get("elem")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default();
            for element in elements {
                if name == plan::BRIDGES {
                    if let Some(bridge) = element.as_str() {
                        installed.bridges.insert(bridge.to_owned());
                    }
                    continue;
                }
                let Some([key, data]) = element.as_array().map(Vec::as_slice) else {
                    continue;
                };
                let Some(target) = verdict_target(data) else {
                    continue;
                };
                if let Some(map) = plan::BRIDGE_MAPS.into_iter().find(|m| *m == name) {
                    if let Some(bridge) = key.as_str() {
                        installed.bridge_elements.push(BridgeElement {
                            map,
                            bridge: bridge.to_owned(),
                            chain: target.to_owned(),
                        });
                    }
                } else if let Some(key) = parse_port_key(name, key) {
                    installed.port_elements.push((key, target.to_owned()));
                }
            }
        }
        installed
    }

    pub(crate) fn state(&self) -> FirewallState {
        FirewallState {
            table: self.table,
            networks: self
                .chains
                .iter()
                .filter_map(|c| plan::network_of_chain(c))
                .map(str::to_owned)
                .collect(),
            port_owners: self
                .chains
                .iter()
                .filter_map(|c| plan::owner_of_chain(c))
                .map(str::to_owned)
                .collect(),
            bridges: self.bridges.clone(),
        }
    }

    /// The network other than `id12` whose chains `bridge`'s elements point at.
    pub(crate) fn bridge_holder(&self, bridge: &str, id12: &str) -> Option<String> {
        self.bridge_elements
            .iter()
            .filter(|e| e.bridge == bridge)
            .filter_map(|e| plan::network_of_chain(&e.chain))
            .find(|holder| *holder != id12)
            .map(str::to_owned)
    }

    /// The bridge elements pointing at the chains of network `id12`.
    pub(crate) fn network_elements(&self, id12: &str) -> Vec<BridgeElement> {
        self.bridge_elements
            .iter()
            .filter(|e| plan::network_of_chain(&e.chain) == Some(id12))
            .cloned()
            .collect()
    }

    /// The bridges network `id12` may take out of the `bridges` set: those
    /// of its elements, and `bridge` unless another network holds it.
    pub(crate) fn network_bridges<'a>(&'a self, id12: &str, bridge: &'a str) -> Vec<&'a str> {
        let mut bridges: BTreeSet<&str> = self
            .network_elements(id12)
            .iter()
            .filter_map(|e| self.bridges.get(&e.bridge).map(String::as_str))
            .collect();
        if self.bridges.contains(bridge) && self.bridge_holder(bridge, id12).is_none() {
            bridges.insert(bridge);
        }
        bridges.into_iter().collect()
    }

    /// The first of `owner`'s mappings whose key another owner holds, and
    /// that owner.
    pub(crate) fn port_conflict(&self, owner: &Owner<'_>) -> Option<(PortMapping, String)> {
        let own = plan::owner_chain(owner.id12);
        owner.dnats.iter().find_map(|dnat| {
            self.port_elements
                .iter()
                .find(|(key, chain)| *key == dnat.key && *chain != own)
                .map(|(_, chain)| {
                    let holder = plan::owner_of_chain(chain).unwrap_or(chain);
                    (dnat.mapping, holder.to_owned())
                })
        })
    }

    /// The port keys going to owner `id12`'s chain.
    pub(crate) fn owner_keys(&self, id12: &str) -> Vec<PortKey> {
        let own = plan::owner_chain(id12);
        self.port_elements
            .iter()
            .filter(|(_, chain)| *chain == own)
            .map(|(key, _)| *key)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Trimmed from `nft -j list table inet wharf` (nft 1.0.6).
    const LISTING: &str = r#"{"nftables": [
        {"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}},
        {"table": {"family": "inet", "name": "wharf", "handle": 2}},
        {"set": {"family": "inet", "name": "bridges", "table": "wharf", "type": "ifname", "handle": 1,
                 "elem": ["wharf0", "wharf1"]}},
        {"map": {"family": "inet", "name": "forward-from", "table": "wharf", "type": "ifname", "handle": 2,
                 "map": "verdict",
                 "elem": [["wharf0", {"jump": {"target": "n-0123456789ab-from"}}],
                          ["wharf1", {"jump": {"target": "n-ba9876543210-from"}}]]}},
        {"map": {"family": "inet", "name": "ports-any", "table": "wharf",
                 "type": ["inet_proto", "inet_service"], "handle": 3, "map": "verdict",
                 "elem": [[{"concat": ["tcp", 8080]}, {"goto": {"target": "c-c0ffee012345"}}]]}},
        {"map": {"family": "inet", "name": "ports-ip", "table": "wharf",
                 "type": ["inet_proto", "ipv4_addr", "inet_service"], "handle": 4, "map": "verdict",
                 "elem": [[{"concat": ["udp", "127.0.0.1", 53]}, {"goto": {"target": "c-beef00112233"}}]]}},
        {"chain": {"family": "inet", "table": "wharf", "name": "published", "handle": 5}},
        {"chain": {"family": "inet", "table": "wharf", "name": "n-0123456789ab-from", "handle": 6}},
        {"chain": {"family": "inet", "table": "wharf", "name": "n-0123456789ab-nat", "handle": 7}},
        {"chain": {"family": "inet", "table": "wharf", "name": "c-c0ffee012345", "handle": 8}},
        {"chain": {"family": "inet", "table": "wharf", "name": "c-beef00112233", "handle": 9}},
        {"rule": {"family": "inet", "table": "wharf", "chain": "published", "handle": 10,
                  "expr": [{"jump": {"target": "x"}}]}}
    ]}"#;

    fn installed() -> Installed {
        Installed::parse(&serde_json::from_str(LISTING).unwrap())
    }

    #[test]
    fn listing_gives_networks_owners_and_bridges() {
        let state = installed().state();
        assert!(state.table);
        assert_eq!(state.networks, BTreeSet::from(["0123456789ab".to_owned()]));
        assert_eq!(
            state.port_owners,
            BTreeSet::from(["beef00112233".to_owned(), "c0ffee012345".to_owned()])
        );
        assert_eq!(
            state.bridges,
            BTreeSet::from(["wharf0".to_owned(), "wharf1".to_owned()])
        );
        assert_eq!(
            Installed::parse(&serde_json::json!({})).state(),
            FirewallState::default()
        );
    }

    #[test]
    fn listing_finds_port_owners_and_conflicts() {
        let installed = installed();
        assert_eq!(
            installed.owner_keys("beef00112233"),
            vec![PortKey::V4(Protocol::Udp, "127.0.0.1".parse().unwrap(), 53)]
        );
        assert_eq!(installed.owner_keys("000000000000"), vec![]);
        let rules = super::super::PortRules {
            owner: "dddd".into(),
            bridge: "wharf0".into(),
            subnets: vec![],
            internal: false,
            ipv4: Some("10.88.0.3".parse().unwrap()),
            ipv6: None,
            ports: vec![PortMapping {
                host_ip: None,
                host_port: 8080,
                container_port: 80,
                protocol: Protocol::Tcp,
            }],
        };
        let owner = Owner::check(&rules).unwrap();
        let (mapping, holder) = installed.port_conflict(&owner).unwrap();
        assert_eq!(mapping.to_string(), "*:8080->80/tcp");
        assert_eq!(holder, "c0ffee012345");
    }

    #[test]
    fn listing_finds_bridge_holders() {
        let installed = installed();
        assert_eq!(
            installed.bridge_holder("wharf1", "0123456789ab").as_deref(),
            Some("ba9876543210")
        );
        assert_eq!(installed.bridge_holder("wharf0", "0123456789ab"), None);
        assert_eq!(installed.network_elements("0123456789ab").len(), 1);
        // wharf1 belongs to the other network: it stays in the set.
        assert_eq!(
            installed.network_bridges("0123456789ab", "wharf1"),
            vec!["wharf0"]
        );
    }
}
