//! Kernel settings under `/proc/sys`, written only when they differ.
//!
//! Sysctls under `net/` belong to the network namespace of the thread that
//! opens the file, so these calls act on the caller's namespace (wrap them in
//! [`crate::netns::run_in`] for another one).

use std::io;
use std::path::PathBuf;

use crate::error::NetError;

/// Sets the sysctl `key` (dotted, as `net.ipv4.ip_forward`) to `value` unless
/// it already has it. Returns whether it was written.
///
/// # Errors
///
/// [`NetError::Sysctl`]: a malformed key (kind `Internal`, it is a
/// programming error), or the file cannot be read or written.
pub fn ensure(key: &str, value: &str) -> Result<bool, NetError> {
    let path = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
    let valid = !key.is_empty()
        && key.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        });
    if !valid {
        return Err(NetError::Sysctl {
            operation: "read",
            path,
            source: io::Error::from(io::ErrorKind::InvalidInput),
        });
    }
    let current = fs_err::read_to_string(&path).map_err(|source| NetError::Sysctl {
        operation: "read",
        path: path.clone(),
        source,
    })?;
    if current.trim() == value {
        return Ok(false);
    }
    fs_err::write(&path, value).map_err(|source| NetError::Sysctl {
        operation: "write",
        path,
        source,
    })?;
    tracing::debug!(key, value, "set sysctl");
    Ok(true)
}

/// Turns on IPv4 forwarding (`net.ipv4.ip_forward`), and IPv6 forwarding
/// (`net.ipv6.conf.all.forwarding`) when `ipv6` is set: what routing between
/// a bridge and other interfaces needs. Traffic between containers on one
/// bridge needs neither; `bridge-nf-call-*` is left alone (Wharf filters
/// with nftables in the bridge family when it needs to, not through
/// `br_netfilter`).
///
/// # Errors
///
/// [`NetError::Sysctl`].
pub fn enable_forwarding(ipv6: bool) -> Result<(), NetError> {
    ensure("net.ipv4.ip_forward", "1")?;
    if ipv6 {
        ensure("net.ipv6.conf.all.forwarding", "1")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_keys_are_refused() {
        for bad in ["", "net..ipv4", "net.ipv4/../x", "net.ipv4.ip forward"] {
            assert!(ensure(bad, "1").is_err(), "{bad}");
        }
    }
}
