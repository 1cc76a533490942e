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
}

impl NetError {
    /// The kind of failure, for exit codes and API status mapping.
    pub fn kind(&self) -> ErrorKind {
        match self {
            NetError::InvalidName { .. }
            | NetError::InvalidSubnet { .. }
            | NetError::InvalidAddress { .. } => ErrorKind::InvalidArgument,
            NetError::AddressInUse { .. } => ErrorKind::Conflict,
            NetError::PoolExhausted { .. } => ErrorKind::Unavailable,
            NetError::LinkNotFound { .. } => ErrorKind::NotFound,
            NetError::ParseIpam { .. } => ErrorKind::Internal,
            NetError::IpamState { source, .. }
            | NetError::Netlink { source, .. }
            | NetError::Netns { source, .. }
            | NetError::Sysctl { source, .. } => kind_of_io(source),
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
}
