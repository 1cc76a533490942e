//! The bridge backend: a network is a Linux bridge on the host with the
//! gateways' addresses; an endpoint is a veth pair from the bridge into a
//! network namespace, with addresses from the network's IPAM.
//!
//! Everything here is idempotent and named after its owner, so that a crash
//! at any point leaves state the next call repairs: the bridge is ensured
//! (made if missing, addresses added if missing), the host end of an
//! endpoint's veth is named from the owner and the network
//! ([`veth_name`]), so [`NetworkBackend::disconnect`] finds it without any
//! record, and the IPAM releases by owner. A namespace that dies takes its
//! veth pair with it.
//!
//! [`NetworkBackend`] is the seam for other backends (user-mode networking
//! for rootless containers comes later); the engine only talks to it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::BorrowedFd;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::error::NetError;
use crate::link::{attach_veth, Netlink, VethPlan};
use crate::store::{Network, NetworkStore};

/// What a namespace got on one network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// The network's name.
    pub network: String,
    /// The network's id.
    pub network_id: String,
    /// The interface in the namespace (`eth0`).
    pub interface: String,
    /// The host end of the veth pair.
    pub host_veth: String,
    /// The interface's MAC address, `aa:bb:…`.
    pub mac: String,
    /// Its addresses, with the subnets' prefixes.
    pub addresses: Vec<IpNet>,
    /// The gateways of the subnets (default routes go through them when the
    /// endpoint carries the default route).
    pub gateways: Vec<IpAddr>,
}

impl Endpoint {
    /// The IPv4 address, if any.
    pub fn ipv4(&self) -> Option<Ipv4Addr> {
        self.addresses.iter().find_map(|a| match a.addr() {
            IpAddr::V4(v4) => Some(v4),
            IpAddr::V6(_) => None,
        })
    }

    /// The IPv6 address, if any.
    pub fn ipv6(&self) -> Option<Ipv6Addr> {
        self.addresses.iter().find_map(|a| match a.addr() {
            IpAddr::V6(v6) => Some(v6),
            IpAddr::V4(_) => None,
        })
    }
}

/// What [`NetworkBackend::connect`] is asked for.
#[derive(Debug, Clone)]
pub struct EndpointRequest<'a> {
    /// Who holds the endpoint: random hex (the engine passes the container
    /// id), used for the IPAM and the veth's name.
    pub owner: &'a str,
    /// The interface name in the namespace (`eth0`, `eth1`, …).
    pub interface: &'a str,
    /// `--ip`.
    pub ipv4: Option<Ipv4Addr>,
    /// `--ip6`.
    pub ipv6: Option<Ipv6Addr>,
    /// `--mac-address`.
    pub mac: Option<[u8; 6]>,
    /// Whether the default routes go through this network (the first
    /// network of a container).
    pub default_route: bool,
}

/// A way of connecting network namespaces to networks.
pub trait NetworkBackend {
    /// Makes the network's host side ready (idempotent). Returns whether
    /// it had to be made (the bridge was missing: first use, or after a
    /// reboot), so that the caller installs the network's firewall rules
    /// then and not on every connect.
    ///
    /// # Errors
    ///
    /// A netlink or sysctl failure.
    fn prepare(&self, network: &Network) -> Result<bool, NetError>;

    /// Connects the namespace `netns` to `network`.
    ///
    /// # Errors
    ///
    /// An address cannot be allocated; a netlink failure. Nothing is left
    /// behind on error.
    fn connect(
        &self,
        store: &NetworkStore,
        network: &Network,
        netns: BorrowedFd<'_>,
        request: &EndpointRequest<'_>,
    ) -> Result<Endpoint, NetError>;

    /// Removes what `owner` has on `network`: its veth (if its namespace is
    /// still alive) and its addresses. Idempotent.
    ///
    /// # Errors
    ///
    /// A netlink or IPAM state failure.
    fn disconnect(
        &self,
        store: &NetworkStore,
        network: &Network,
        owner: &str,
    ) -> Result<(), NetError>;

    /// Releases what `owner` holds on `network` when its namespace is gone
    /// or going (its last process exited): its addresses. The kernel
    /// removes the veth with the namespace, asynchronously; deleting it here
    /// would wait for RCU grace periods (milliseconds) for nothing. A veth
    /// still there when the owner connects again is deleted then.
    /// Idempotent.
    ///
    /// # Errors
    ///
    /// An IPAM state failure.
    fn release(&self, store: &NetworkStore, network: &Network, owner: &str)
        -> Result<(), NetError>;

    /// Removes the network's host side (its bridge). Idempotent.
    ///
    /// # Errors
    ///
    /// A netlink failure.
    fn teardown(&self, network: &Network) -> Result<(), NetError>;
}

/// The host end of `owner`'s veth on the network `network_id`: `wh` and 7
/// hex digits of each (15 bytes, the kernel's limit).
pub fn veth_name(owner: &str, network_id: &str) -> String {
    let part = |s: &str| {
        s.chars()
            .filter(char::is_ascii_alphanumeric)
            .take(7)
            .collect::<String>()
    };
    format!(
        "wh{}{}",
        part(owner),
        part(network_id).get(..6).unwrap_or("")
    )
}

/// The bridge backend, over one netlink connection in the host's namespace.
#[derive(Debug)]
pub struct BridgeBackend {
    netlink: Netlink,
}

impl BridgeBackend {
    /// Opens the netlink connection (in the calling thread's namespace).
    ///
    /// # Errors
    ///
    /// [`NetError::Netlink`].
    pub fn open() -> Result<BridgeBackend, NetError> {
        Ok(BridgeBackend {
            netlink: Netlink::open()?,
        })
    }

    /// The netlink connection.
    pub fn netlink(&self) -> &Netlink {
        &self.netlink
    }
}

impl NetworkBackend for BridgeBackend {
    fn prepare(&self, network: &Network) -> Result<bool, NetError> {
        if self.netlink.link_index(&network.bridge)?.is_some() {
            return Ok(false);
        }
        let subnets = network.subnets()?;
        let gateways: Vec<IpNet> = subnets.iter().map(|s| s.with_prefix(s.gateway())).collect();
        self.netlink
            .ensure_bridge(&network.bridge, network.mtu, &gateways)?;
        if !network.internal {
            crate::sysctl::enable_forwarding(network.ipv6)?;
        }
        Ok(true)
    }

    fn connect(
        &self,
        store: &NetworkStore,
        network: &Network,
        netns: BorrowedFd<'_>,
        request: &EndpointRequest<'_>,
    ) -> Result<Endpoint, NetError> {
        let ipam = store.ipam(network)?;
        let subnets = network.subnets()?;
        let mut addresses = Vec::new();
        let mut gateways = Vec::new();
        let release = |ipam: &crate::Ipam| {
            if let Err(e) = ipam.release_owner(request.owner) {
                tracing::warn!(network = network.name, error = %e, "release addresses");
            }
        };
        for subnet in &subnets {
            let requested = match subnet.net() {
                IpNet::V4(_) => request.ipv4.map(IpAddr::V4),
                IpNet::V6(_) => request.ipv6.map(IpAddr::V6),
            };
            match ipam.allocate(subnet, request.owner, requested) {
                Ok(a) => {
                    addresses.push(subnet.with_prefix(a));
                    gateways.push(subnet.gateway());
                }
                Err(e) => {
                    release(&ipam);
                    return Err(e);
                }
            }
        }
        for (family, asked) in [
            ("IPv4", request.ipv4.map(IpAddr::V4)),
            ("IPv6", request.ipv6.map(IpAddr::V6)),
        ] {
            if let Some(address) = asked {
                if !addresses.iter().any(|a| a.addr() == address) {
                    release(&ipam);
                    return Err(NetError::NoSubnetFor {
                        address,
                        family,
                        network: network.name.clone(),
                    });
                }
            }
        }
        let host_veth = veth_name(request.owner, &network.id);
        let mac = request.mac.unwrap_or_else(|| mac_for(&addresses));
        let plan = VethPlan {
            bridge: network.bridge.clone(),
            host_name: host_veth.clone(),
            peer_name: request.interface.to_owned(),
            addresses: addresses.clone(),
            gateways: if request.default_route && !network.internal {
                gateways.clone()
            } else {
                Vec::new()
            },
            mtu: network.mtu,
            big_tcp: network.big_tcp(),
            mac: Some(mac),
        };
        // A veth of this owner left by a crash would make the create fail.
        let _ = self.netlink.delete_link(&host_veth);
        if let Err(e) = attach_veth(&self.netlink, netns, &plan) {
            release(&ipam);
            return Err(e);
        }
        // Hairpin: a container reaching its own published port through the
        // host's address gets the packets back on the port they left by.
        let hairpin = format!("/sys/class/net/{host_veth}/brport/hairpin_mode");
        if let Err(e) = fs_err::write(&hairpin, "1") {
            tracing::warn!(link = host_veth, error = %e, "set hairpin mode");
        }
        Ok(Endpoint {
            network: network.name.clone(),
            network_id: network.id.clone(),
            interface: request.interface.to_owned(),
            host_veth,
            mac: format_mac(mac),
            addresses,
            gateways,
        })
    }

    fn disconnect(
        &self,
        store: &NetworkStore,
        network: &Network,
        owner: &str,
    ) -> Result<(), NetError> {
        self.netlink.delete_link(&veth_name(owner, &network.id))?;
        store.ipam(network)?.release_owner(owner)?;
        Ok(())
    }

    fn release(
        &self,
        store: &NetworkStore,
        network: &Network,
        owner: &str,
    ) -> Result<(), NetError> {
        store.ipam(network)?.release_owner(owner)?;
        Ok(())
    }

    fn teardown(&self, network: &Network) -> Result<(), NetError> {
        self.netlink.delete_link(&network.bridge)?;
        Ok(())
    }
}

/// A locally administered MAC derived from the first IPv4 address (as
/// Docker does: `02:42:` and the four bytes), so that an address keeps its
/// MAC across restarts and neighbours' ARP caches stay right; random bytes
/// for an IPv6-only endpoint.
fn mac_for(addresses: &[IpNet]) -> [u8; 6] {
    for a in addresses {
        if let IpAddr::V4(v4) = a.addr() {
            let o = v4.octets();
            return [0x02, 0x42, o[0], o[1], o[2], o[3]];
        }
    }
    let mut bytes = [0u8; 6];
    if let Ok(mut f) = fs_err::File::open("/dev/urandom") {
        use std::io::Read as _;
        let _ = f.read_exact(&mut bytes);
    }
    bytes[0] = (bytes[0] & 0xfe) | 0x02;
    bytes
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parses `aa:bb:cc:dd:ee:ff` (a unicast address).
///
/// # Errors
///
/// [`NetError::InvalidMac`].
pub fn parse_mac(text: &str) -> Result<[u8; 6], NetError> {
    let invalid = || NetError::InvalidMac {
        mac: text.to_owned(),
    };
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() != 6 {
        return Err(invalid());
    }
    let mut mac = [0u8; 6];
    for (slot, part) in mac.iter_mut().zip(parts) {
        if part.len() != 2 {
            return Err(invalid());
        }
        *slot = u8::from_str_radix(part, 16).map_err(|_| invalid())?;
    }
    if mac[0] & 1 == 1 {
        return Err(invalid());
    }
    Ok(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_names_fit_and_differ() {
        let a = veth_name(&"ab".repeat(32), &"cd".repeat(32));
        assert_eq!(a, "whabababacdcdcd");
        assert_eq!(a.len(), 15);
        assert_ne!(a, veth_name(&"ab".repeat(32), &"ce".repeat(32)));
    }

    #[test]
    fn macs() {
        let m = mac_for(&["10.88.0.5/16".parse().unwrap()]);
        assert_eq!(format_mac(m), "02:42:0a:58:00:05");
        assert_eq!(parse_mac("02:42:0a:58:00:05").unwrap(), m);
        for bad in [
            "01:00:00:00:00:00",
            "02:42:0a:58:00",
            "zz:42:0a:58:00:05",
            "2:42:0a:58:00:05:",
        ] {
            assert!(parse_mac(bad).is_err(), "{bad}");
        }
        let v6only = mac_for(&["fd00::2/64".parse().unwrap()]);
        assert_eq!(v6only[0] & 3, 2);
    }
}
