//! A container's network setup at start and its teardown, recorded in the
//! container's `network.json`.

use std::net::IpAddr;
use std::os::fd::{AsFd as _, OwnedFd};
use std::path::Path;

use serde::{Deserialize, Serialize};
use wharf_net::bridge::{parse_mac, Endpoint};
use wharf_net::{EndpointRequest, NetworkBackend as _};

use super::ports::{self, PublishedPort};
use super::{net_err, DnsSettings};
use crate::containers::ContainerConfig;
use crate::state::ContainerId;
use crate::{Engine, EngineError};

const STATE_FILE: &str = "network.json";

/// One network a running container is on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointState {
    /// What the backend made.
    pub endpoint: Endpoint,
    /// Names other containers resolve it by on this network.
    #[serde(default)]
    pub aliases: Vec<String>,
}

/// A started container's networking: its endpoints and published ports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkState {
    /// The networks it is to be on (name, id), written before anything is
    /// made so that teardown after a crash knows where to look.
    pub networks: Vec<(String, String)>,
    /// The endpoints made.
    pub endpoints: Vec<EndpointState>,
    /// The ports published, host ports resolved.
    pub ports: Vec<PublishedPort>,
}

impl NetworkState {
    /// Reads `<dir>/network.json`; `None` when the container has no
    /// networking set up.
    ///
    /// # Errors
    ///
    /// The file cannot be read or parsed.
    pub fn read(dir: &Path) -> Result<Option<NetworkState>, EngineError> {
        let path = dir.join(STATE_FILE);
        match fs_err::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| EngineError::Io {
                    operation: "parse",
                    path,
                    source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(EngineError::Io {
                operation: "read",
                path,
                source,
            }),
        }
    }

    fn write(&self, dir: &Path) -> Result<(), EngineError> {
        let bytes = serde_json::to_vec(self).expect("a network state always serialises");
        crate::containers::write_file(&dir.join(STATE_FILE), &bytes)
    }
}

/// What a started container's networking holds while it runs: the sockets
/// that reserve its published host ports (the monitor keeps them).
#[derive(Debug, Default)]
pub(crate) struct NetworkHold {
    _reservations: Vec<OwnedFd>,
}

impl Engine {
    /// Connects a created container (its init `pid` waits for start) to its
    /// networks, publishes its ports, registers its names, and writes its
    /// /etc/hosts and /etc/resolv.conf. Nothing for other network modes.
    ///
    /// # Errors
    ///
    /// A network is gone; an address or port is taken; a host operation
    /// failed. What was made is undone.
    pub(crate) fn network_up(
        &self,
        id: &ContainerId,
        config: &ContainerConfig,
        pid: i32,
    ) -> Result<NetworkHold, EngineError> {
        if config.networks.is_empty() {
            return Ok(NetworkHold::default());
        }
        let dir = self.containers()?.container_dir(id);
        if NetworkState::read(&dir)?.is_some() {
            self.network_down(id);
        }
        let result = self.connect_all(id, config, pid, &dir);
        if result.is_err() {
            self.network_down(id);
        }
        result
    }

    fn connect_all(
        &self,
        id: &ContainerId,
        config: &ContainerConfig,
        pid: i32,
        dir: &Path,
    ) -> Result<NetworkHold, EngineError> {
        let mut networks = Vec::new();
        for attach in &config.networks {
            networks.push(self.resolve_network(&attach.network)?);
        }
        let mut state = NetworkState {
            networks: networks
                .iter()
                .map(|n| (n.name.clone(), n.id.clone()))
                .collect(),
            ..NetworkState::default()
        };
        let published = ports::plan(config)?;
        state.write(dir)?;

        let netns_path = format!("/proc/{pid}/ns/net");
        let netns: OwnedFd = wharf_net::netns::open(Path::new(&netns_path)).map_err(net_err)?;
        let backend = wharf_net::BridgeBackend::open().map_err(net_err)?;
        for (i, (network, attach)) in networks.iter().zip(&config.networks).enumerate() {
            let interface = format!("eth{i}");
            let endpoint = self.connect_endpoint(
                &backend,
                network,
                netns.as_fd(),
                id,
                attach,
                &interface,
                i == 0,
            )?;
            state.endpoints.push(endpoint);
            state.write(dir)?;
        }

        // Ports go to the first network (Docker publishes on the network
        // the container was started on).
        let (reservations, resolved) = ports::reserve(&published)?;
        state.ports = resolved;
        state.write(dir)?;
        if !state.ports.is_empty() {
            let first = &networks[0];
            if first.internal {
                return Err(EngineError::invalid(format!(
                    "cannot publish ports on internal network {}",
                    first.name
                )));
            }
            self.firewall_add_ports(id, first, &state.endpoints[0].endpoint, &state.ports)?;
        }

        if networks.iter().any(|n| n.dns) {
            let name = self.containers()?.get_by_id(id)?.name;
            for (network, e) in networks.iter().zip(&state.endpoints) {
                if network.dns {
                    self.dns_add(id, network, name.as_str(), e)?;
                }
            }
        }
        self.write_network_files(dir, config, &networks, &state)?;
        Ok(NetworkHold {
            _reservations: reservations,
        })
    }

    /// Prepares `network`'s host side (its firewall rules when the bridge
    /// had to be made) and connects the namespace `netns` to it as
    /// `interface`.
    #[allow(
        clippy::too_many_arguments,
        reason = "one endpoint's settings, from two callers"
    )]
    fn connect_endpoint(
        &self,
        backend: &wharf_net::BridgeBackend,
        network: &wharf_net::Network,
        netns: std::os::fd::BorrowedFd<'_>,
        id: &ContainerId,
        attach: &super::NetworkAttach,
        interface: &str,
        default_route: bool,
    ) -> Result<EndpointState, EngineError> {
        if backend.prepare(network).map_err(net_err)? {
            self.firewall_ensure_network(network)?;
        }
        let mac = attach
            .mac
            .as_deref()
            .map(parse_mac)
            .transpose()
            .map_err(net_err)?;
        let endpoint = backend
            .connect(
                &self.network_store(),
                network,
                netns,
                &EndpointRequest {
                    owner: id.as_str(),
                    interface,
                    ipv4: attach.ipv4,
                    ipv6: attach.ipv6,
                    mac,
                    default_route,
                },
            )
            .map_err(net_err)?;
        let mut aliases = attach.aliases.clone();
        aliases.push(id.short().to_owned());
        Ok(EndpointState { endpoint, aliases })
    }

    /// Undoes [`Engine::network_up`] from the container's `network.json`:
    /// endpoints, ports, names. Best effort and idempotent: failures are
    /// logged, the record is removed once everything is gone.
    pub(crate) fn network_down(&self, id: &ContainerId) {
        let Ok(store) = self.containers() else {
            return;
        };
        let dir = store.container_dir(id);
        let state = match NetworkState::read(&dir) {
            Ok(Some(s)) => s,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(container = %id, error = %e, "read the network state");
                return;
            }
        };
        let mut clean = true;
        let mut warn = |what: &str, e: &dyn std::fmt::Display| {
            clean = false;
            tracing::warn!(container = %id, error = %e, "{what}");
        };
        // The namespace dies with the container unless another container
        // joined it: then its links must go now.
        let shared = self.netns_joined_by_others(id);
        let networks = self.network_store();
        let backend = match wharf_net::BridgeBackend::open() {
            Ok(b) => Some(b),
            Err(e) => {
                warn("open netlink", &e);
                None
            }
        };
        for (name, network_id) in &state.networks {
            let network = match networks.get(network_id) {
                Ok(n) => n,
                // The network is gone, and with it its addresses.
                Err(_) => continue,
            };
            if !state.ports.is_empty()
                && state.endpoints.first().map(|e| &e.endpoint.network_id) == Some(network_id)
            {
                if let Err(e) = self.firewall_remove_ports(id, &network, &state) {
                    warn("unpublish ports", &e);
                }
            }
            if network.dns {
                if let Err(e) = self.dns_remove(id, &network) {
                    warn("remove DNS names", &e);
                }
            }
            if let Some(backend) = &backend {
                let done = if shared {
                    backend.disconnect(&networks, &network, id.as_str())
                } else {
                    backend.release(&networks, &network, id.as_str())
                };
                if let Err(e) = done {
                    warn(&format!("disconnect from {name}"), &e);
                }
            }
        }
        if clean {
            let _ = fs_err::remove_file(dir.join(STATE_FILE));
        }
    }

    /// Whether a running container joined `id`'s network namespace
    /// (`--network container:<id>`); when unsure, yes.
    fn netns_joined_by_others(&self, id: &ContainerId) -> bool {
        let Ok(store) = self.containers() else {
            return true;
        };
        let Ok(records) = store.list(crate::state::ListFilter::Up) else {
            return true;
        };
        // Only the mode is needed: read it from the record's JSON rather
        // than decoding every running container's whole configuration.
        let mode = format!("container:{id}");
        records.iter().any(|r| {
            &r.id != id
                && r.config
                    .get("network")
                    .and_then(serde_json::Value::as_str)
                    .is_none_or(|m| m == mode)
        })
    }

    /// `network connect`: adds a network to a container's configuration and,
    /// when it runs, connects it now (on the next free `ethN`, without the
    /// default route).
    ///
    /// # Errors
    ///
    /// No such container or network; the container shares another's
    /// namespace or has none; it is connected already; the connection
    /// failed (the configuration is then unchanged).
    pub fn connect_network(
        &self,
        container: &str,
        attach: &super::NetworkAttach,
    ) -> Result<(), EngineError> {
        let store = self.containers()?;
        let record = store.get(container)?;
        let _lock = store.lock(&record.id)?;
        let record = self.reconcile(store.get_by_id(&record.id)?, true)?;
        let mut config = ContainerConfig::from_value(&record.config)?;
        if config.networks.is_empty() {
            return Err(EngineError::invalid(format!(
                "container {} cannot be connected to networks: its network mode is {}",
                record.name, config.network
            )));
        }
        let network = self.resolve_network(&attach.network)?;
        if config.networks.iter().any(|a| a.network == network.name) {
            return Err(EngineError::invalid(format!(
                "container {} is already connected to network {}",
                record.name, network.name
            )));
        }
        let attach = super::NetworkAttach {
            network: network.name.clone(),
            ..attach.clone()
        };
        let dir = store.container_dir(&record.id);
        if let (true, Some(pid)) = (record.state.is_up(), record.pid) {
            let mut state = NetworkState::read(&dir)?.unwrap_or_default();
            let used: Vec<&str> = state
                .endpoints
                .iter()
                .map(|e| e.endpoint.interface.as_str())
                .collect();
            let interface = (0..)
                .map(|i| format!("eth{i}"))
                .find(|n| !used.contains(&n.as_str()))
                .expect("an unbounded search finds a name");
            state
                .networks
                .push((network.name.clone(), network.id.clone()));
            state.write(&dir)?;
            let netns = wharf_net::netns::open(Path::new(&format!("/proc/{pid}/ns/net")))
                .map_err(net_err)?;
            let backend = wharf_net::BridgeBackend::open().map_err(net_err)?;
            let e = self.connect_endpoint(
                &backend,
                &network,
                netns.as_fd(),
                &record.id,
                &attach,
                &interface,
                false,
            )?;
            if network.dns {
                self.dns_add(&record.id, &network, record.name.as_str(), &e)?;
            }
            state.endpoints.push(e);
            state.write(&dir)?;
        }
        config.networks.push(attach);
        store.set_config(&record.id, &config.to_value())
    }

    /// `network disconnect`: removes a network from a container's
    /// configuration and, when it runs, disconnects it now.
    ///
    /// # Errors
    ///
    /// No such container or network; it is not connected to it.
    pub fn disconnect_network(&self, container: &str, network: &str) -> Result<(), EngineError> {
        let store = self.containers()?;
        let record = store.get(container)?;
        let _lock = store.lock(&record.id)?;
        let record = self.reconcile(store.get_by_id(&record.id)?, true)?;
        let mut config = ContainerConfig::from_value(&record.config)?;
        let network = self.resolve_network(network)?;
        let Some(index) = config
            .networks
            .iter()
            .position(|a| a.network == network.name)
        else {
            return Err(EngineError::invalid(format!(
                "container {} is not connected to network {}",
                record.name, network.name
            )));
        };
        let dir = store.container_dir(&record.id);
        if let Some(mut state) = NetworkState::read(&dir)? {
            if state.endpoints.first().map(|e| &e.endpoint.network_id) == Some(&network.id)
                && !state.ports.is_empty()
            {
                self.firewall_remove_ports(&record.id, &network, &state)?;
                state.ports.clear();
            }
            if network.dns {
                self.dns_remove(&record.id, &network)?;
            }
            wharf_net::BridgeBackend::open()
                .and_then(|b| b.disconnect(&self.network_store(), &network, record.id.as_str()))
                .map_err(net_err)?;
            state
                .endpoints
                .retain(|e| e.endpoint.network_id != network.id);
            state.networks.retain(|(_, id)| id != &network.id);
            state.write(&dir)?;
        }
        config.networks.remove(index);
        if let Some(first) = config.networks.first() {
            config.network = first.network.clone();
        } else {
            config.network = "none".to_owned();
        }
        store.set_config(&record.id, &config.to_value())
    }

    /// Rewrites /etc/hosts and /etc/resolv.conf of a started container in
    /// place (they are already bind-mounted: a rename would not be seen).
    fn write_network_files(
        &self,
        dir: &Path,
        config: &ContainerConfig,
        networks: &[wharf_net::Network],
        state: &NetworkState,
    ) -> Result<(), EngineError> {
        let hosts_path = dir.join("hosts");
        let mut hosts = fs_err::read_to_string(&hosts_path).map_err(|source| EngineError::Io {
            operation: "read",
            path: hosts_path.clone(),
            source,
        })?;
        for e in &state.endpoints {
            for a in &e.endpoint.addresses {
                hosts.push_str(&format!("{}\t{}\n", a.addr(), config.hostname));
            }
        }
        write_in_place(&hosts_path, hosts.as_bytes())?;
        let dns_gateways: Vec<IpAddr> = networks
            .iter()
            .zip(&state.endpoints)
            .filter(|(n, _)| n.dns)
            .filter_map(|(_, e)| e.endpoint.gateways.first().copied())
            .collect();
        let resolv = resolv_conf(&read_host_resolv(), &config.dns, &dns_gateways);
        write_in_place(&dir.join("resolv.conf"), resolv.as_bytes())
    }
}

fn read_host_resolv() -> String {
    fs_err::read_to_string("/etc/resolv.conf").unwrap_or_default()
}

/// The search domain of the names Wharf's DNS answers.
pub(crate) const DNS_DOMAIN: &str = "dns.wharf";

/// A container's resolv.conf: `--dns*` win; on networks with name DNS the
/// networks' servers (which forward the rest to the host's); otherwise the
/// host's, without loopback nameservers (unreachable from the container's
/// namespace), falling back to none.
pub(crate) fn resolv_conf(host: &str, dns: &DnsSettings, network_servers: &[IpAddr]) -> String {
    let mut servers: Vec<String> = Vec::new();
    let mut search: Vec<String> = Vec::new();
    let mut options: Vec<String> = Vec::new();
    for line in host.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                if let Some(s) = words.next() {
                    let loopback = s
                        .split('%')
                        .next()
                        .and_then(|a| a.parse::<IpAddr>().ok())
                        .is_some_and(|a| a.is_loopback());
                    if !loopback {
                        servers.push(s.to_owned());
                    }
                }
            }
            Some("search") | Some("domain") => search.extend(words.map(str::to_owned)),
            Some("options") => options.extend(words.map(str::to_owned)),
            _ => {}
        }
    }
    if !network_servers.is_empty() {
        servers = network_servers.iter().map(ToString::to_string).collect();
        search.insert(0, DNS_DOMAIN.to_owned());
    }
    if !dns.servers.is_empty() {
        servers = dns.servers.iter().map(ToString::to_string).collect();
    }
    if !dns.search.is_empty() {
        search = dns
            .search
            .iter()
            .filter(|s| s.as_str() != ".")
            .cloned()
            .collect();
    }
    if !dns.options.is_empty() {
        options = dns.options.clone();
    }
    let mut out = String::new();
    for s in &servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    out
}

/// Replaces a file's contents without replacing the file.
fn write_in_place(path: &Path, bytes: &[u8]) -> Result<(), EngineError> {
    use std::io::Write as _;
    let io = |operation| {
        move |source| EngineError::Io {
            operation,
            path: path.to_path_buf(),
            source,
        }
    };
    let mut f = fs_err::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(io("open"))?;
    f.write_all(bytes).map_err(io("write"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_drops_loopback_and_prefers_flags_then_networks() {
        let host = "# comment\nnameserver 127.0.0.53\nnameserver 192.0.2.1\nsearch example.org\noptions edns0\n";
        let none = DnsSettings::default();
        assert_eq!(
            resolv_conf(host, &none, &[]),
            "nameserver 192.0.2.1\nsearch example.org\noptions edns0\n"
        );
        let gw: IpAddr = "10.91.0.1".parse().unwrap();
        assert_eq!(
            resolv_conf(host, &none, &[gw]),
            "nameserver 10.91.0.1\nsearch dns.wharf example.org\noptions edns0\n"
        );
        let flags = DnsSettings {
            servers: vec!["9.9.9.9".parse().unwrap()],
            search: vec!["corp".into()],
            options: vec!["ndots:2".into()],
        };
        assert_eq!(
            resolv_conf(host, &flags, &[gw]),
            "nameserver 9.9.9.9\nsearch corp\noptions ndots:2\n"
        );
        assert_eq!(resolv_conf("nameserver 127.0.0.1\n", &none, &[]), "");
    }
}
