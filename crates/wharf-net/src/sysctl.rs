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
    let parts: Vec<&str> = key.split('.').collect();
    ensure_parts(&parts, value)
}

/// [`ensure`] for a key given as its path components, so that a component
/// may itself contain dots (an interface named `br.100` in
/// `net.ipv4.conf.br.100.route_localnet`). A component must be non-empty,
/// not `.` or `..`, and made of ASCII letters, digits, `_`, `-` and `.`.
fn ensure_parts(parts: &[&str], value: &str) -> Result<bool, NetError> {
    let path = parts
        .iter()
        .fold(PathBuf::from("/proc/sys"), |path, part| path.join(part));
    let valid = !parts.is_empty()
        && parts.iter().all(|part| {
            !part.is_empty()
                && *part != "."
                && *part != ".."
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
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
    tracing::debug!(key = parts.join("."), value, "set sysctl");
    Ok(true)
}

/// Sets `net.ipv4.conf.<bridge>.route_localnet=1`: lets the kernel route
/// packets with a `127.0.0.0/8` source out of `bridge`, which a published
/// port reached at `127.0.0.1` needs (the output hook DNATs the packet to the
/// container before it is routed, and the source is then masqueraded).
/// Returns whether it was written.
///
/// # Errors
///
/// [`NetError::Sysctl`] (kind `NotFound` when the bridge does not exist).
pub fn enable_route_localnet(bridge: &str) -> Result<bool, NetError> {
    ensure_parts(&["net", "ipv4", "conf", bridge, "route_localnet"], "1")
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
        for bad in ["", ".", "..", "a/b", "a b"] {
            assert!(enable_route_localnet(bad).is_err(), "{bad}");
        }
    }
}
