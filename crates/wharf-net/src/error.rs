//! The network crate's error type.

use std::io;
use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;

/// What kind of failure an error is, for exit codes and API status mapping
/// (the same vocabulary as every Wharf crate, see STYLE.md §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request (a name, a subnet, an address) is malformed.
    InvalidArgument,
    /// The network, link or allocation does not exist.
    NotFound,
    /// The object exists already.
    AlreadyExists,
    /// The object is in a state that forbids the operation (an address in use).
    Conflict,
    /// Nothing had to be done.
    NotModified,
    /// The kernel or the caller's privileges refused the operation.
    PermissionDenied,
    /// A resource is temporarily or permanently short (a subnet is full).
    Unavailable,
    /// A failure inside the state files or the kernel.
    Internal,
}

/// Every failure of the network crate.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A network name does not follow `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
    #[error("invalid network name {name:?}: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A subnet, gateway or ip-range is unusable.
    #[error("invalid subnet {subnet}: {reason}")]
    InvalidSubnet {
        /// The subnet.
        subnet: IpNet,
        /// What is wrong.
        reason: String,
    },
    /// A requested address cannot be handed out from this subnet.
    #[error("invalid address {address} for subnet {subnet}: {reason}")]
    InvalidAddress {
        /// The requested address.
        address: IpAddr,
        /// The subnet it was requested from.
        subnet: IpNet,
        /// What is wrong.
        reason: &'static str,
    },
    /// A requested address is already allocated.
    #[error("allocate {address} on network {network}: address in use")]
    AddressInUse {
        /// The address.
        address: IpAddr,
        /// The network.
        network: String,
    },
    /// Every address of the pool is allocated.
    #[error("allocate an address from {pool} on network {network}: no free address")]
    PoolExhausted {
        /// The pool (the ip-range, or the subnet).
        pool: IpNet,
        /// The network.
        network: String,
    },
    /// An IPAM state file or its lock could not be used.
    #[error("{operation} {path}")]
    IpamState {
        /// What was done (`lock ipam`, `read ipam`, `write ipam`, `create ipam dir`).
        operation: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// An IPAM state file does not parse.
    #[error("parse ipam state {path}")]
    ParseIpam {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A netlink request failed.
    #[error("{operation} {object}")]
    Netlink {
        /// What was asked (`create bridge`, `add address`, `delete link`, …).
        operation: &'static str,
        /// The link, address or route it was asked for.
        object: String,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },
    /// A link that must exist does not.
    #[error("find link {name}: no such link")]
    LinkNotFound {
        /// The link name.
        name: String,
    },
    /// A network namespace could not be created, opened or entered, or the
    /// thread working in it could not be run.
    #[error("{operation} {object}")]
    Netns {
        /// What was done (`open netns`, `enter netns`, `create netns`, `spawn netns thread`).
        operation: &'static str,
        /// The path or description of the namespace.
        object: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A network definition or the store's lock could not be used.
    #[error("{operation} {path}")]
    NetworkState {
        /// What was done (`read`, `write`, `lock`, `list networks in`, …).
        operation: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A network definition does not parse.
    #[error("parse network definition {path}")]
    ParseNetwork {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// No network has this name or id.
    #[error("network {reference} not found")]
    NetworkNotFound {
        /// The name or id asked for.
        reference: String,
    },
    /// An id prefix matches several networks.
    #[error("network id prefix {reference} is ambiguous: give more of it or the name")]
    AmbiguousNetwork {
        /// The prefix.
        reference: String,
    },
    /// The name is taken (or reserved: `bridge`, `host`, `none`).
    #[error("network with name {name} already exists")]
    NetworkExists {
        /// The name.
        name: String,
    },
    /// A requested subnet overlaps one of another network.
    #[error("invalid subnet {subnet}: overlaps a subnet of network {network}")]
    SubnetOverlap {
        /// The requested subnet.
        subnet: IpNet,
        /// The network that has it.
        network: String,
    },
    /// The network still has containers attached.
    #[error("network {name} has active endpoints ({count})")]
    NetworkInUse {
        /// The network.
        name: String,
        /// How many.
        count: usize,
    },
    /// `--ip`/`--ip6` asks for a family the network has no subnet of.
    #[error("invalid address {address}: network {network} has no {family} subnet")]
    NoSubnetFor {
        /// The requested address.
        address: IpAddr,
        /// `IPv4` or `IPv6`.
        family: &'static str,
        /// The network.
        network: String,
    },
    /// A MAC address is malformed or multicast.
    #[error("invalid MAC address {mac:?}: want six hex pairs like 02:42:0a:00:00:02, unicast")]
    InvalidMac {
        /// What was given.
        mac: String,
    },
    /// A sysctl could not be read or written.
    #[error("{operation} sysctl {path}")]
    Sysctl {
        /// `read` or `write`.
        operation: &'static str,
        /// The `/proc/sys` file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A DNS record file, a DNS lock file or the resolv.conf could not be used.
    #[error("{operation} {path}")]
    DnsState {
        /// What was done (`lock dns records`, `read dns records`, `write dns
        /// records`, `lock dns server`, `read resolv.conf`, …).
        operation: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A DNS record file does not parse.
    #[error("parse dns records {path}")]
    ParseDnsRecords {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// The DNS server could not set itself up.
    #[error("{operation} {address}")]
    DnsServe {
        /// What was done (`start dns runtime`, `bind dns listener`, …).
        operation: &'static str,
        /// The address (or runtime) it was done for.
        address: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// No `nft` binary was found.
    #[error("find nft: not in /usr/sbin, /sbin or PATH (install nftables)")]
    NftMissing,
    /// An `nft` run failed; its stderr is in the source.
    #[error("{operation} {object}")]
    Nft {
        /// What was done (`set up firewall for network`, `publish ports of`,
        /// `list table`, …).
        operation: &'static str,
        /// The network, the port owner or the table.
        object: String,
        /// How nft failed.
        #[source]
        source: NftFailure,
    },
    /// A host address, port and protocol is already published by another owner.
    #[error("publish {mapping} for {owner}: already published by {holder}")]
    PortConflict {
        /// The mapping asked for (`0.0.0.0:8080->80/tcp`).
        mapping: String,
        /// The owner that asked (first 12 characters of its id).
        owner: String,
        /// The owner holding it (first 12 characters of its id).
        holder: String,
    },
    /// A bridge already carries the firewall rules of another network.
    #[error("set up firewall for network {network} on bridge {bridge}: bridge belongs to network {holder}")]
    BridgeInUse {
        /// The bridge.
        bridge: String,
        /// The network that asked (first 12 characters of its id).
        network: String,
        /// The network holding the bridge (first 12 characters of its id).
        holder: String,
    },
    /// A port mapping cannot be published.
    #[error("invalid port mapping {mapping}: {reason}")]
    InvalidPortMapping {
        /// The mapping (`127.0.0.1:8080->80/tcp`).
        mapping: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A protocol name is not `tcp`, `udp` or `sctp`.
    #[error("invalid protocol {protocol:?}: expected tcp, udp or sctp")]
    InvalidProtocol {
        /// The rejected name.
        protocol: String,
    },
    /// An id or bridge name given to the firewall is unusable.
    #[error("invalid firewall {what} {value:?}: {reason}")]
    InvalidFirewallRules {
        /// `network id`, `owner id` or `bridge name`.
        what: &'static str,
        /// The rejected value.
        value: String,
        /// What is wrong.
        reason: &'static str,
    },
}

/// How an `nft` run failed: the source of [`NetError::Nft`].
#[derive(Debug, thiserror::Error)]
pub enum NftFailure {
    /// nft could not be started, fed or waited for.
    #[error("run nft")]
    Run(#[source] io::Error),
    /// nft exited unsuccessfully; `stderr` is what it printed, trimmed.
    #[error("nft exited with {status}: {stderr}")]
    Exit {
        /// The exit status, as the process reports it (`exit status: 1`).
        status: String,
        /// nft's stderr, trimmed (it names the failing command and the
        /// kernel's errno text, as `Could not process rule: File exists`).
        stderr: String,
    },
    /// nft's JSON output does not parse.
    #[error("parse nft output")]
    Output(#[source] serde_json::Error),
}

impl NftFailure {
    /// Whether nft reported the kernel's `ENOENT` (a table, chain, set or
    /// element that does not exist).
    pub(crate) fn is_not_found(&self) -> bool {
        matches!(self, NftFailure::Exit { stderr, .. } if stderr.contains("No such file or directory"))
    }

    /// Whether nft reported the kernel's `EEXIST` (an element whose key is
    /// taken with other data, a chain of another type).
    pub(crate) fn is_exists(&self) -> bool {
        matches!(self, NftFailure::Exit { stderr, .. } if stderr.contains("File exists"))
    }

    fn kind(&self) -> ErrorKind {
        match self {
            NftFailure::Run(source) => kind_of_io(source),
            NftFailure::Output(_) => ErrorKind::Internal,
            NftFailure::Exit { stderr, .. } => {
                if self.is_exists() || stderr.contains("Device or resource busy") {
                    ErrorKind::Conflict
                } else if self.is_not_found() {
                    ErrorKind::NotFound
                } else if stderr.contains("Operation not permitted")
                    || stderr.contains("Permission denied")
                {
                    ErrorKind::PermissionDenied
                } else {
                    ErrorKind::Internal
                }
            }
        }
    }
}

impl NetError {
    /// The kind of failure, for exit codes and API status mapping.
    pub fn kind(&self) -> ErrorKind {
        match self {
            NetError::InvalidName { .. }
            | NetError::InvalidSubnet { .. }
            | NetError::InvalidAddress { .. }
            | NetError::NoSubnetFor { .. }
            | NetError::InvalidMac { .. }
            | NetError::AmbiguousNetwork { .. }
            | NetError::InvalidPortMapping { .. }
            | NetError::InvalidProtocol { .. }
            | NetError::InvalidFirewallRules { .. } => ErrorKind::InvalidArgument,
            NetError::AddressInUse { .. }
            | NetError::SubnetOverlap { .. }
            | NetError::NetworkInUse { .. }
            | NetError::PortConflict { .. }
            | NetError::BridgeInUse { .. } => ErrorKind::Conflict,
            NetError::NetworkNotFound { .. } => ErrorKind::NotFound,
            NetError::NetworkExists { .. } => ErrorKind::AlreadyExists,
            NetError::ParseNetwork { .. } => ErrorKind::Internal,
            NetError::NftMissing => ErrorKind::Unavailable,
            NetError::Nft { source, .. } => source.kind(),
            NetError::PoolExhausted { .. } => ErrorKind::Unavailable,
            NetError::LinkNotFound { .. } => ErrorKind::NotFound,
            NetError::ParseIpam { .. } | NetError::ParseDnsRecords { .. } => ErrorKind::Internal,
            NetError::IpamState { source, .. }
            | NetError::NetworkState { source, .. }
            | NetError::Netlink { source, .. }
            | NetError::Netns { source, .. }
            | NetError::Sysctl { source, .. }
            | NetError::DnsState { source, .. }
            | NetError::DnsServe { source, .. } => kind_of_io(source),
        }
    }
}

fn kind_of_io(error: &io::Error) -> ErrorKind {
    match error.raw_os_error() {
        Some(e) if e == rustix::io::Errno::EXIST.raw_os_error() => ErrorKind::AlreadyExists,
        Some(e) if e == rustix::io::Errno::NODEV.raw_os_error() => ErrorKind::NotFound,
        Some(e) if e == rustix::io::Errno::NOENT.raw_os_error() => ErrorKind::NotFound,
        Some(e)
            if e == rustix::io::Errno::PERM.raw_os_error()
                || e == rustix::io::Errno::ACCESS.raw_os_error() =>
        {
            ErrorKind::PermissionDenied
        }
        Some(e)
            if e == rustix::io::Errno::BUSY.raw_os_error()
                || e == rustix::io::Errno::NOSPC.raw_os_error() =>
        {
            ErrorKind::Unavailable
        }
        _ => ErrorKind::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_operation_and_object() {
        let e = NetError::Netlink {
            operation: "create bridge",
            object: "wharf0".into(),
            source: io::Error::from_raw_os_error(1),
        };
        assert_eq!(e.to_string(), "create bridge wharf0");
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        let e = NetError::AddressInUse {
            address: "10.0.0.2".parse().unwrap(),
            network: "web".into(),
        };
        assert_eq!(
            e.to_string(),
            "allocate 10.0.0.2 on network web: address in use"
        );
        assert_eq!(e.kind(), ErrorKind::Conflict);
    }

    #[test]
    fn dns_errors_name_operation_and_object() {
        let e = NetError::DnsState {
            operation: "write dns records",
            path: "/var/lib/wharf/networks/dns/web.json".into(),
            source: io::Error::from_raw_os_error(28),
        };
        assert_eq!(
            e.to_string(),
            "write dns records /var/lib/wharf/networks/dns/web.json"
        );
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        let e = NetError::ParseDnsRecords {
            path: "/d/web.json".into(),
            source: serde_json::from_str::<u32>("{").unwrap_err(),
        };
        assert_eq!(e.to_string(), "parse dns records /d/web.json");
        assert_eq!(e.kind(), ErrorKind::Internal);
        let e = NetError::DnsServe {
            operation: "bind dns listener",
            address: "10.88.0.1:53 (udp)".into(),
            source: io::Error::from_raw_os_error(98),
        };
        assert_eq!(e.to_string(), "bind dns listener 10.88.0.1:53 (udp)");
        assert_eq!(e.kind(), ErrorKind::Internal);
        let e = NetError::DnsServe {
            operation: "bind dns listener",
            address: "10.88.0.1:53 (tcp)".into(),
            source: io::Error::from_raw_os_error(13),
        };
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    }

    /// The chain as the binary prints it.
    fn chain(e: &dyn std::error::Error) -> String {
        let mut text = e.to_string();
        let mut cause = e.source();
        while let Some(c) = cause {
            text.push_str(": ");
            text.push_str(&c.to_string());
            cause = c.source();
        }
        text
    }

    #[test]
    fn firewall_errors_name_operation_object_and_nft_stderr() {
        let e = NetError::Nft {
            operation: "publish ports of",
            object: "c0ffee123456".into(),
            source: NftFailure::Exit {
                status: "exit status: 1".into(),
                stderr: "internal:0:0-0: Error: Could not process rule: File exists".into(),
            },
        };
        assert_eq!(e.to_string(), "publish ports of c0ffee123456");
        assert_eq!(
            chain(&e),
            "publish ports of c0ffee123456: nft exited with exit status: 1: \
             internal:0:0-0: Error: Could not process rule: File exists"
        );
        assert_eq!(e.kind(), ErrorKind::Conflict);

        let e = NetError::Nft {
            operation: "list table",
            object: "inet wharf".into(),
            source: NftFailure::Exit {
                status: "exit status: 1".into(),
                stderr: "Error: Could not process rule: Operation not permitted".into(),
            },
        };
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        let e = NetError::Nft {
            operation: "list table",
            object: "inet wharf".into(),
            source: NftFailure::Run(io::Error::from_raw_os_error(2)),
        };
        assert_eq!(
            chain(&e),
            "list table inet wharf: run nft: No such file or directory (os error 2)"
        );
        assert_eq!(e.kind(), ErrorKind::NotFound);

        let e = NetError::NftMissing;
        assert_eq!(
            e.to_string(),
            "find nft: not in /usr/sbin, /sbin or PATH (install nftables)"
        );
        assert_eq!(e.kind(), ErrorKind::Unavailable);

        let e = NetError::PortConflict {
            mapping: "0.0.0.0:8080->80/tcp".into(),
            owner: "c0ffee123456".into(),
            holder: "beef00112233".into(),
        };
        assert_eq!(
            e.to_string(),
            "publish 0.0.0.0:8080->80/tcp for c0ffee123456: already published by beef00112233"
        );
        assert_eq!(e.kind(), ErrorKind::Conflict);

        let e = NetError::BridgeInUse {
            bridge: "wharf0".into(),
            network: "0123456789ab".into(),
            holder: "ba9876543210".into(),
        };
        assert_eq!(
            e.to_string(),
            "set up firewall for network 0123456789ab on bridge wharf0: \
             bridge belongs to network ba9876543210"
        );
        assert_eq!(e.kind(), ErrorKind::Conflict);

        let e = NetError::InvalidPortMapping {
            mapping: "[::1]:80->80/tcp".into(),
            reason: "the container has no IPv6 address",
        };
        assert_eq!(
            e.to_string(),
            "invalid port mapping [::1]:80->80/tcp: the container has no IPv6 address"
        );
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        let e = NetError::InvalidProtocol {
            protocol: "icmp".into(),
        };
        assert_eq!(
            e.to_string(),
            "invalid protocol \"icmp\": expected tcp, udp or sctp"
        );
        let e = NetError::InvalidFirewallRules {
            what: "owner id",
            value: "xyz".into(),
            reason: "not hexadecimal",
        };
        assert_eq!(
            e.to_string(),
            "invalid firewall owner id \"xyz\": not hexadecimal"
        );
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    }
}
