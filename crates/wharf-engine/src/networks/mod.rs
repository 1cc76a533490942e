//! Networks (`network create|ls|inspect|rm|prune|connect|disconnect`) and the
//! containers' places on them.
//!
//! The definitions, addresses, links and rules belong to `wharf-net`, under
//! `<root>/networks/`; the engine decides which container joins which
//! network and when. A container on networks gets a new network namespace
//! from the runtime; the monitor connects it ([`Engine::network_up`]) after
//! the runtime's create, before its start, and everything is undone
//! ([`Engine::network_down`]) when the container stops, from the record of
//! it kept in the container's `network.json`. That record is written before
//! anything is made, and every step is idempotent and named after the
//! container, so a crash anywhere is repaired by the next start, `rm`, or
//! `network prune`.

mod endpoint;
mod names;
mod ports;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use wharf_net::{NetworkBackend as _, NetworkStore};

pub(crate) use endpoint::NetworkHold;
pub use endpoint::{EndpointState, NetworkState};
pub use names::{serve_dns, DNS_ENTRY};
pub use ports::{parse_exposed, PortSpec, PublishedPort};
pub use wharf_net::firewall::Protocol;
pub use wharf_net::{CreateNetwork, Network, NetworkName, Subnet};

use crate::containers::ContainerConfig;
use crate::spec::NetworkMode;
use crate::state::{ContainerId, ListFilter};
use crate::{Engine, EngineError};

/// `--network` and the flags that go with it, as `create` is asked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum NetworkRequest {
    /// `none`.
    #[default]
    None,
    /// `host`.
    Host,
    /// `bridge` (the default network) or user networks; the first carries
    /// the default route.
    Networks(Vec<NetworkAttach>),
    /// `container:<name|id>`: share that container's network namespace.
    Container(String),
    /// `ns:<path>`: join the network namespace at this path.
    Namespace(PathBuf),
    /// The pod's (`run --pod` without `--network`): the infra container's
    /// namespace when the pod shares it, else the default network.
    Pod,
}

/// One network a container is to join, and its settings there.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkAttach {
    /// The network's name (`bridge` for the default one).
    pub network: String,
    /// `--ip`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<Ipv4Addr>,
    /// `--ip6`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<Ipv6Addr>,
    /// `--mac-address`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// `--network-alias`: further names other containers resolve.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
}

/// `--dns`, `--dns-search`, `--dns-option`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsSettings {
    /// Nameservers instead of the host's (or the network's).
    #[serde(default)]
    pub servers: Vec<IpAddr>,
    /// Search domains.
    #[serde(default)]
    pub search: Vec<String>,
    /// resolv.conf options.
    #[serde(default)]
    pub options: Vec<String>,
}

/// A network and the containers on it, for `network inspect`.
#[derive(Debug, Clone)]
pub struct NetworkInfo {
    /// The definition.
    pub network: Network,
    /// The running containers connected to it: id, name and endpoint.
    pub containers: Vec<(ContainerId, String, EndpointState)>,
}

/// What `network prune` removed.
#[derive(Debug, Clone, Default)]
pub struct NetworkPruneReport {
    /// The names of the removed networks.
    pub removed: Vec<String>,
}

/// How `create` resolved the network request.
#[derive(Debug, Clone)]
pub(crate) struct PlannedNetwork {
    /// What the runtime spec gets.
    pub(crate) mode: NetworkMode,
    /// The config's `network`.
    pub(crate) name: String,
    /// The networks to join at start.
    pub(crate) attach: Vec<NetworkAttach>,
    /// The resolv.conf text to start from (a shared namespace's).
    pub(crate) resolv_from: Option<String>,
}

/// Where address pools live: `/run/wharf/networks` for root, shared by
/// every state root (see `wharf_net::store`); under `$XDG_RUNTIME_DIR` for
/// other users.
fn network_run_dir() -> PathBuf {
    if rustix::process::geteuid().is_root() {
        return PathBuf::from("/run/wharf/networks");
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) => PathBuf::from(dir).join("wharf/networks"),
        None => std::env::temp_dir().join(format!(
            "wharf-{}/networks",
            rustix::process::geteuid().as_raw()
        )),
    }
}

pub(crate) fn net_err(e: wharf_net::NetError) -> EngineError {
    EngineError::Net(Box::new(e))
}

/// The image's `ExposedPorts` and `--expose`, deduplicated.
pub(crate) fn exposed_ports(
    image: &oci_spec::image::ImageConfiguration,
    expose: &[(u16, wharf_net::firewall::Protocol)],
) -> Result<Vec<(u16, wharf_net::firewall::Protocol)>, EngineError> {
    let mut out = Vec::new();
    let image_ports = image
        .config()
        .as_ref()
        .and_then(|c| c.exposed_ports().clone())
        .unwrap_or_default();
    for p in &image_ports {
        out.extend(parse_exposed(p)?);
    }
    out.extend_from_slice(expose);
    out.sort();
    out.dedup();
    Ok(out)
}

impl Engine {
    /// Resolves `create`'s network request: the networks must exist, a
    /// shared namespace must be there.
    pub(crate) fn plan_network(
        &self,
        request: &crate::containers::CreateRequest,
    ) -> Result<PlannedNetwork, EngineError> {
        let publishing = !request.ports.is_empty() || request.publish_all;
        self.plan_network_request(&request.network, publishing)
    }

    /// [`Engine::plan_network`] for a network request alone (`pod create`).
    pub(crate) fn plan_network_request(
        &self,
        network: &NetworkRequest,
        publishing: bool,
    ) -> Result<PlannedNetwork, EngineError> {
        // A pod member not on the pod's network (`place_in_pod` plans the
        // shared case) is on the default one.
        let pod_default;
        let network = if *network == NetworkRequest::Pod {
            pod_default = NetworkRequest::Networks(vec![crate::pods::default_attach()]);
            &pod_default
        } else {
            network
        };
        let plain = |mode: NetworkMode, name: String| PlannedNetwork {
            mode,
            name,
            attach: Vec::new(),
            resolv_from: None,
        };
        let planned = match network {
            NetworkRequest::None => plain(NetworkMode::None, "none".into()),
            NetworkRequest::Host => plain(NetworkMode::Host, "host".into()),
            NetworkRequest::Networks(list) => {
                let mut attach = Vec::new();
                for a in list {
                    let network = self.resolve_network(&a.network)?;
                    if attach
                        .iter()
                        .any(|x: &NetworkAttach| x.network == network.name)
                    {
                        return Err(EngineError::invalid(format!(
                            "invalid --network {}: given twice",
                            network.name
                        )));
                    }
                    if let Some(mac) = &a.mac {
                        wharf_net::bridge::parse_mac(mac).map_err(net_err)?;
                    }
                    if network.is_default() && !a.aliases.is_empty() {
                        return Err(EngineError::invalid(
                            "network-scoped aliases are only supported for user-defined networks",
                        ));
                    }
                    attach.push(NetworkAttach {
                        network: network.name.clone(),
                        ..a.clone()
                    });
                }
                let Some(first) = attach.first() else {
                    return Err(EngineError::invalid("no network given"));
                };
                PlannedNetwork {
                    mode: NetworkMode::Bridge,
                    name: first.network.clone(),
                    attach,
                    resolv_from: None,
                }
            }
            NetworkRequest::Pod => unreachable!("replaced by the default network above"),
            NetworkRequest::Container(reference) => {
                let target = self.containers()?.get(reference)?;
                self.shared_network(&target.id)?
            }
            NetworkRequest::Namespace(path) => {
                wharf_net::netns::open(path).map_err(net_err)?;
                plain(
                    NetworkMode::Join(path.clone()),
                    format!("ns:{}", path.display()),
                )
            }
        };
        if publishing && planned.attach.is_empty() {
            return Err(EngineError::invalid(format!(
                "cannot publish ports with --network {}: only on bridge and user networks",
                planned.name
            )));
        }
        Ok(planned)
    }

    /// The plan of a container that joins `target`'s network namespace
    /// (`--network container:`, pod members): the path is set at each start
    /// from the target's pid; resolv.conf starts from the target's.
    pub(crate) fn shared_network(
        &self,
        target: &ContainerId,
    ) -> Result<PlannedNetwork, EngineError> {
        let dir = self.containers()?.container_dir(target);
        Ok(PlannedNetwork {
            mode: NetworkMode::Join(PathBuf::from("/proc/self/ns/net")),
            name: format!("container:{target}"),
            attach: Vec::new(),
            resolv_from: fs_err::read_to_string(dir.join("resolv.conf")).ok(),
        })
    }

    /// The network definitions.
    pub(crate) fn network_store(&self) -> NetworkStore {
        NetworkStore::new(&self.root().join("networks"), &network_run_dir())
    }

    /// Resolves a `--network` name: `bridge`/`default` is the default
    /// network (made on first use).
    pub(crate) fn resolve_network(&self, name: &str) -> Result<Network, EngineError> {
        let store = self.network_store();
        if name == wharf_net::store::DEFAULT_NETWORK || name == "default" {
            store.default_network().map_err(net_err)
        } else {
            store.get(name).map_err(net_err)
        }
    }

    /// `network create`.
    ///
    /// # Errors
    ///
    /// The name is taken; a subnet overlaps another network's; the state
    /// failed.
    pub fn create_network(&self, request: &CreateNetwork) -> Result<Network, EngineError> {
        // The default network exists before any other, so that automatic
        // subnets never take what it would.
        self.network_store().default_network().map_err(net_err)?;
        let network = self.network_store().create(request).map_err(net_err)?;
        // The bridge now (as Docker does), so that its route keeps other
        // roots' automatic subnets off this one.
        let prepared = wharf_net::BridgeBackend::open()
            .and_then(|b| b.prepare(&network))
            .map_err(net_err)
            .and_then(|_| self.firewall_ensure_network(&network));
        if let Err(e) = prepared {
            let _ = self.teardown_network(&network);
            let _ = self.network_store().remove(&network);
            return Err(e);
        }
        Ok(network)
    }

    /// `network ls`: every network, the default one included.
    ///
    /// # Errors
    ///
    /// The state failed.
    pub fn networks(&self) -> Result<Vec<Network>, EngineError> {
        let store = self.network_store();
        store.default_network().map_err(net_err)?;
        store.list().map_err(net_err)
    }

    /// `network inspect`.
    ///
    /// # Errors
    ///
    /// No such network; the state failed.
    pub fn network(&self, reference: &str) -> Result<NetworkInfo, EngineError> {
        let network = self.resolve_network(reference)?;
        let mut containers = Vec::new();
        for record in self.containers()?.list(ListFilter::All)? {
            if !record.state.is_up() {
                continue;
            }
            let dir = self.containers()?.container_dir(&record.id);
            if let Some(state) = NetworkState::read(&dir)? {
                for e in state.endpoints {
                    if e.endpoint.network_id == network.id {
                        containers.push((record.id.clone(), record.name.to_string(), e));
                    }
                }
            }
        }
        Ok(NetworkInfo {
            network,
            containers,
        })
    }

    /// The containers (any state) whose configuration names `network`.
    fn network_users(&self, network: &Network) -> Result<Vec<String>, EngineError> {
        let mut users = Vec::new();
        for record in self.containers()?.list(ListFilter::All)? {
            let Ok(config) = ContainerConfig::from_value(&record.config) else {
                continue;
            };
            let uses = config.networks.iter().any(|a| {
                a.network == network.name || (network.is_default() && a.network == "default")
            });
            if uses {
                users.push(record.name.to_string());
            }
        }
        Ok(users)
    }

    /// `network rm`: removes a network no container uses, with its bridge
    /// and rules.
    ///
    /// # Errors
    ///
    /// No such network; it is the default network; a container uses it.
    pub fn remove_network(&self, reference: &str) -> Result<Network, EngineError> {
        let store = self.network_store();
        let network = store.get(reference).map_err(net_err)?;
        if network.is_default() {
            return Err(EngineError::invalid(format!(
                "network {} is the default network and cannot be removed",
                network.name
            )));
        }
        let users = self.network_users(&network)?;
        if !users.is_empty() {
            return Err(net_err(wharf_net::NetError::NetworkInUse {
                name: network.name.clone(),
                count: users.len(),
            }));
        }
        self.teardown_network(&network)?;
        store.remove(&network).map_err(net_err)?;
        Ok(network)
    }

    /// Removes a network's host side: bridge, rules, DNS records.
    fn teardown_network(&self, network: &Network) -> Result<(), EngineError> {
        let backend = wharf_net::BridgeBackend::open().map_err(net_err)?;
        self.firewall_remove_network(network)?;
        self.dns_remove_network(network)?;
        backend.teardown(network).map_err(net_err)
    }

    /// `network prune`: removes every user network no container uses, and
    /// repairs what crashed processes left: addresses, links, rules and
    /// DNS records of containers that are not running.
    ///
    /// # Errors
    ///
    /// The state failed.
    pub fn prune_networks(&self) -> Result<NetworkPruneReport, EngineError> {
        let mut report = NetworkPruneReport::default();
        self.repair_networks()?;
        for network in self.network_store().list().map_err(net_err)? {
            if network.is_default() || !self.network_users(&network)?.is_empty() {
                continue;
            }
            self.teardown_network(&network)?;
            self.network_store().remove(&network).map_err(net_err)?;
            report.removed.push(network.name);
        }
        Ok(report)
    }

    /// Releases what this root's containers that are not running hold on
    /// networks. Address pools and rules are shared with other roots: what
    /// belongs to no container of this root is left alone.
    pub(crate) fn repair_networks(&self) -> Result<(), EngineError> {
        let store = self.containers()?;
        let mut stopped = std::collections::BTreeSet::new();
        for record in store.list(ListFilter::All)? {
            let record = self.reconcile(record, false)?;
            if record.state.is_up() {
                continue;
            }
            if NetworkState::read(&store.container_dir(&record.id))?.is_some() {
                self.network_down(&record.id);
            }
            stopped.insert(record.id.to_string());
        }
        let backend = wharf_net::BridgeBackend::open().map_err(net_err)?;
        let networks = self.network_store();
        for network in networks.list().map_err(net_err)? {
            let ipam = networks.ipam(&network).map_err(net_err)?;
            for allocation in ipam.list().map_err(net_err)? {
                if stopped.contains(&allocation.owner) {
                    backend
                        .disconnect(&networks, &network, &allocation.owner)
                        .map_err(net_err)?;
                }
            }
        }
        self.repair_firewall(&stopped)?;
        self.repair_dns(&stopped)?;
        Ok(())
    }
}
