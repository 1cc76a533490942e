//! Wharf's networks, the host side of container networking: network
//! definitions ([`store`]), the bridge backend that connects namespaces to
//! them ([`bridge`]), validated network names ([`NetworkName`]), IP address management that never hands out an
//! address twice across processes and crashes ([`ipam`]), bridges, veth pairs,
//! addresses and routes over rtnetlink ([`link`]), network namespaces held by
//! fds and code run inside them ([`netns`]), the sysctls routing needs
//! ([`sysctl`]), the nftables firewall: outbound NAT, isolation between
//! networks and published ports, all in one table `inet wharf`
//! ([`firewall`]), and the embedded DNS server of user networks with its
//! record files ([`dns`]).
//!
//! This crate must not know containers: it works on names, subnets, opaque
//! allocation owners and namespace file descriptors that the engine hands it.
//! It depends on no Wharf crate but `wharf-sys`.
//!
//! The API is synchronous. Netlink goes through the async `rtnetlink` crate,
//! driven by a current-thread tokio runtime inside [`Netlink`] (no threads,
//! no runtime leaks into callers). Work inside another namespace runs on a
//! helper thread that joins it (`setns` is per thread for network
//! namespaces); the calling thread never changes namespace. The one child
//! process is the firewall's: each [`Firewall`] call runs `nft -j -f -` once
//! (nftables' JSON interface, one atomic transaction), spawned, not forked
//! into running Rust.
//! The one long-lived runtime is [`dns::serve`]'s, a network edge: it
//! blocks on its own current-thread runtime for the life of the DNS server
//! process.

pub mod bridge;
pub mod dns;
mod error;
pub mod firewall;
pub mod ipam;
pub mod link;
mod name;
pub mod netns;
pub mod store;
pub mod sysctl;

pub use bridge::{BridgeBackend, Endpoint, EndpointRequest, NetworkBackend};
pub use dns::{host_resolvers, DnsEntry, DnsNetwork, DnsRecords};
pub use error::{ErrorKind, NetError, NftFailure};
pub use firewall::{Firewall, FirewallState, NetworkRules, PortMapping, PortRules, Protocol};
pub use ipam::{Allocation, Ipam, Subnet};
pub use link::{attach_veth, Netlink, VethPlan, BIG_TCP_MAX_SIZE};
pub use name::NetworkName;
pub use store::{CreateNetwork, Network, NetworkStore};
