//! IP address management: which addresses of a network's subnets are handed out.
//!
//! State is one JSON file per network, `<dir>/ipam.json`, where `dir` is the
//! network's state directory chosen by the caller (the engine uses
//! `<root>/networks/<name>/`). JSON rather than SQLite: a network holds at most
//! a few thousand allocations, the file is read and rewritten whole under a lock
//! in well under a millisecond, stays readable with `cat` when debugging, and
//! needs no schema migrations.
//!
//! Concurrency and crashes: every operation holds an exclusive `flock` on
//! `<dir>/ipam.lock` (a separate file, because the JSON file is replaced by
//! rename and a lock on a replaced inode protects nothing) from read to write.
//! A change is written to `ipam.json.tmp` and renamed over `ipam.json` before
//! the call returns: an address is recorded before anyone can use it, and a
//! process killed at any point leaves the old or the new file, never a torn
//! one. Nothing is fsynced: the directory is a run directory (`/run`, tmpfs
//! on most hosts) that a reboot clears together with every container the
//! addresses belonged to, so surviving a power loss would buy nothing and
//! cost two disk flushes per allocation and per release. A crash after
//! allocating and before using an address leaks it until its owner is
//! released (`release_owner`), never hands it out twice.
//!
//! Addresses are picked round-robin after the last one handed out in that
//! subnet (as CNI's host-local does), so a just-released address is not reused
//! at once by the next container.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;

use crate::error::NetError;
use crate::name::NetworkName;

const STATE_FILE: &str = "ipam.json";
const TEMP_FILE: &str = "ipam.json.tmp";
const LOCK_FILE: &str = "ipam.lock";

/// A subnet addresses are allocated from: its gateway and the range handed out
/// automatically. Validated on construction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subnet {
    net: IpNet,
    gateway: IpAddr,
    range: IpNet,
}

impl Subnet {
    /// Validates a subnet (`10.88.0.0/16`, `fd00::/64`; host bits must be
    /// zero), its gateway (default: the first host address) and an optional
    /// ip-range inside it for automatic allocation.
    ///
    /// IPv4 subnets must leave room for a gateway and a container (`/30` or
    /// shorter); IPv6 subnets `/126` or shorter.
    ///
    /// # Errors
    ///
    /// [`NetError::InvalidSubnet`] (kind `InvalidArgument`).
    pub fn new(
        net: IpNet,
        gateway: Option<IpAddr>,
        range: Option<IpNet>,
    ) -> Result<Subnet, NetError> {
        let invalid = |reason: String| NetError::InvalidSubnet {
            subnet: net,
            reason,
        };
        if net.trunc() != net {
            return Err(invalid(format!(
                "host bits set (did you mean {}?)",
                net.trunc()
            )));
        }
        if net.prefix_len() + 2 > net.max_prefix_len() {
            return Err(invalid("too small for a gateway and a container".into()));
        }
        let gateway = match gateway {
            Some(g) => g,
            None => first_host(net),
        };
        if !net.contains(&gateway) || is_reserved(net, gateway) {
            return Err(invalid(format!(
                "gateway {gateway} is not a host address of it"
            )));
        }
        let range = range.unwrap_or(net);
        if range.trunc() != range || !net.contains(&range) {
            return Err(invalid(format!(
                "ip-range {range} is not a network inside it"
            )));
        }
        Ok(Subnet {
            net,
            gateway,
            range,
        })
    }

    /// The subnet.
    pub fn net(&self) -> IpNet {
        self.net
    }

    /// The gateway address (the bridge's address).
    pub fn gateway(&self) -> IpAddr {
        self.gateway
    }

    /// The range automatic allocation picks from.
    pub fn range(&self) -> IpNet {
        self.range
    }

    /// `address` with this subnet's prefix length, as put on an interface.
    pub fn with_prefix(&self, address: IpAddr) -> IpNet {
        IpNet::new_assert(address, self.net.prefix_len())
    }
}

/// One handed-out address.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Allocation {
    /// The address.
    pub address: IpAddr,
    /// The subnet it belongs to.
    pub subnet: IpNet,
    /// Who holds it: an opaque handle chosen by the caller (the engine uses the
    /// container id).
    pub owner: String,
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct State {
    version: u32,
    allocations: Vec<Allocation>,
    /// Last address handed out automatically, per subnet.
    #[serde(default)]
    last: BTreeMap<IpNet, IpAddr>,
}

/// The allocations of one network, in its state directory.
#[derive(Debug, Clone)]
pub struct Ipam {
    dir: PathBuf,
    network: NetworkName,
}

impl Ipam {
    /// The IPAM of `network`, keeping its files in `dir` (created on first
    /// write). Opening does no I/O.
    pub fn new(dir: &Path, network: NetworkName) -> Ipam {
        Ipam {
            dir: dir.to_owned(),
            network,
        }
    }

    /// Allocates an address of `subnet` to `owner`: `requested` if given (it
    /// may lie outside the ip-range, as Docker's `--ip`), otherwise the next
    /// free address of the range, skipping the network address, the IPv4
    /// broadcast address and the gateway. The allocation is on disk before
    /// this returns.
    ///
    /// # Errors
    ///
    /// `InvalidAddress` for a requested address outside the subnet or
    /// reserved, `AddressInUse` (kind `Conflict`), `PoolExhausted` (kind
    /// `Unavailable`), `IpamState`/`ParseIpam` for the state file.
    pub fn allocate(
        &self,
        subnet: &Subnet,
        owner: &str,
        requested: Option<IpAddr>,
    ) -> Result<IpAddr, NetError> {
        self.locked(|state| {
            let taken = |a: IpAddr| state.allocations.iter().any(|x| x.address == a);
            let address = match requested {
                Some(address) => {
                    check_requested(subnet, address)?;
                    if taken(address) {
                        return Err(NetError::AddressInUse {
                            address,
                            network: self.network.to_string(),
                        });
                    }
                    address
                }
                None => {
                    let last = state.last.get(&subnet.net).copied();
                    let in_subnet = state
                        .allocations
                        .iter()
                        .filter(|a| a.subnet == subnet.net)
                        .count();
                    next_free(subnet, last, in_subnet, taken).ok_or_else(|| {
                        NetError::PoolExhausted {
                            pool: subnet.range,
                            network: self.network.to_string(),
                        }
                    })?
                }
            };
            if requested.is_none() {
                state.last.insert(subnet.net, address);
            }
            state.allocations.push(Allocation {
                address,
                subnet: subnet.net,
                owner: owner.to_owned(),
            });
            Ok((true, address))
        })
    }

    /// Releases `address`. Returns whether it was allocated (releasing twice
    /// is not an error, so that teardown can be repeated after a crash).
    ///
    /// # Errors
    ///
    /// `IpamState`/`ParseIpam` for the state file.
    pub fn release(&self, address: IpAddr) -> Result<bool, NetError> {
        self.locked(|state| {
            let before = state.allocations.len();
            state.allocations.retain(|a| a.address != address);
            let changed = state.allocations.len() != before;
            Ok((changed, changed))
        })
    }

    /// Releases every address held by `owner` and returns them.
    ///
    /// # Errors
    ///
    /// `IpamState`/`ParseIpam` for the state file.
    pub fn release_owner(&self, owner: &str) -> Result<Vec<IpAddr>, NetError> {
        self.locked(|state| {
            let released: Vec<IpAddr> = state
                .allocations
                .iter()
                .filter(|a| a.owner == owner)
                .map(|a| a.address)
                .collect();
            state.allocations.retain(|a| a.owner != owner);
            Ok((!released.is_empty(), released))
        })
    }

    /// The current allocations, in allocation order.
    ///
    /// # Errors
    ///
    /// `IpamState`/`ParseIpam` for the state file.
    pub fn list(&self) -> Result<Vec<Allocation>, NetError> {
        self.locked(|state| Ok((false, state.allocations.clone())))
    }

    /// Runs `f` on the state under the lock; writes the state back durably
    /// when `f` says it changed it.
    fn locked<T>(
        &self,
        f: impl FnOnce(&mut State) -> Result<(bool, T), NetError>,
    ) -> Result<T, NetError> {
        fs_err::create_dir_all(&self.dir).map_err(|source| NetError::IpamState {
            operation: "create ipam dir",
            path: self.dir.clone(),
            source,
        })?;
        let lock_path = self.dir.join(LOCK_FILE);
        let lock_err = |source| NetError::IpamState {
            operation: "lock ipam",
            path: lock_path.clone(),
            source,
        };
        let lock = fs_err::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(lock_err)?;
        // Released when `lock` is closed, also if this process dies.
        loop {
            match rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive) {
                Err(rustix::io::Errno::INTR) => continue,
                other => break other.map_err(|e| lock_err(e.into()))?,
            }
        }
        let mut state = self.read()?;
        let (changed, out) = f(&mut state)?;
        if changed {
            state.version = 1;
            self.write(&state)?;
        }
        drop(lock);
        Ok(out)
    }

    fn read(&self) -> Result<State, NetError> {
        let path = self.dir.join(STATE_FILE);
        match fs_err::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| NetError::ParseIpam { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(source) => Err(NetError::IpamState {
                operation: "read ipam",
                path,
                source,
            }),
        }
    }

    fn write(&self, state: &State) -> Result<(), NetError> {
        let temp = self.dir.join(TEMP_FILE);
        let path = self.dir.join(STATE_FILE);
        let err = |path: &Path| {
            let path = path.to_owned();
            move |source| NetError::IpamState {
                operation: "write ipam",
                path,
                source,
            }
        };
        let json = serde_json::to_vec(state).map_err(|e| err(&temp)(e.into()))?;
        let mut file = fs_err::File::create(&temp).map_err(err(&temp))?;
        file.write_all(&json).map_err(err(&temp))?;
        drop(file);
        fs_err::rename(&temp, &path).map_err(err(&path))?;
        Ok(())
    }
}

fn first_host(net: IpNet) -> IpAddr {
    offset(net.network(), 1)
}

/// The network address, and the broadcast address of an IPv4 subnet, are
/// never handed out.
fn is_reserved(net: IpNet, address: IpAddr) -> bool {
    address == net.network() || (matches!(net, IpNet::V4(_)) && address == net.broadcast())
}

fn check_requested(subnet: &Subnet, address: IpAddr) -> Result<(), NetError> {
    let invalid = |reason| NetError::InvalidAddress {
        address,
        subnet: subnet.net,
        reason,
    };
    if !subnet.net.contains(&address) {
        return Err(invalid("outside the subnet"));
    }
    if is_reserved(subnet.net, address) {
        return Err(invalid("reserved (network or broadcast address)"));
    }
    if address == subnet.gateway {
        return Err(invalid("it is the gateway"));
    }
    Ok(())
}

fn to_u128(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn offset(base: IpAddr, n: u128) -> IpAddr {
    let v = to_u128(base).wrapping_add(n);
    match base {
        // Offsets stay inside the base's subnet, so the value fits.
        IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::from(v as u32)),
        IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::from(v)),
    }
}

/// The next free address of the range after `last` (wrapping), or `None`
/// when the range is full. At most `in_subnet + 4` candidates are looked at:
/// every candidate skipped is allocated or one of three reserved addresses, so
/// this is exact without walking a huge IPv6 range.
fn next_free(
    subnet: &Subnet,
    last: Option<IpAddr>,
    in_subnet: usize,
    taken: impl Fn(IpAddr) -> bool,
) -> Option<IpAddr> {
    let range = subnet.range;
    let start = to_u128(range.network());
    let size = (to_u128(range.broadcast()) - start).saturating_add(1);
    let first = match last {
        Some(l) if range.contains(&l) => (to_u128(l) - start).wrapping_add(1) % size.max(1),
        _ => 0,
    };
    let tries = size.min(in_subnet as u128 + 4);
    (0..tries)
        .map(|i| offset(range.network(), (first + i) % size))
        .find(|&a| !is_reserved(subnet.net, a) && a != subnet.gateway && !taken(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn ipam() -> (tempfile::TempDir, Ipam) {
        let dir = tempfile::tempdir().unwrap();
        let ipam = Ipam::new(&dir.path().join("net"), NetworkName::new("n").unwrap());
        (dir, ipam)
    }

    #[test]
    fn subnet_validation() {
        let s = Subnet::new(net("10.88.0.0/16"), None, None).unwrap();
        assert_eq!(s.gateway(), ip("10.88.0.1"));
        assert_eq!(s.with_prefix(ip("10.88.0.7")), net("10.88.0.7/16"));
        let e = Subnet::new(net("10.88.0.1/16"), None, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid subnet 10.88.0.1/16: host bits set (did you mean 10.88.0.0/16?)"
        );
        assert!(Subnet::new(net("10.0.0.0/31"), None, None).is_err());
        assert!(Subnet::new(net("10.0.0.0/24"), Some(ip("10.0.1.1")), None).is_err());
        assert!(Subnet::new(net("10.0.0.0/24"), Some(ip("10.0.0.255")), None).is_err());
        assert!(Subnet::new(net("10.0.0.0/24"), None, Some(net("10.0.1.0/28"))).is_err());
        let v6 = Subnet::new(net("fd00:1::/64"), None, None).unwrap();
        assert_eq!(v6.gateway(), ip("fd00:1::1"));
    }

    #[test]
    fn allocates_in_order_skipping_reserved() {
        let (_d, ipam) = ipam();
        let s = Subnet::new(net("10.0.0.0/30"), None, None).unwrap();
        assert_eq!(ipam.allocate(&s, "a", None).unwrap(), ip("10.0.0.2"));
        let e = ipam.allocate(&s, "b", None).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Unavailable);
        assert_eq!(
            e.to_string(),
            "allocate an address from 10.0.0.0/30 on network n: no free address"
        );
        assert!(ipam.release(ip("10.0.0.2")).unwrap());
        assert!(!ipam.release(ip("10.0.0.2")).unwrap());
        assert_eq!(ipam.allocate(&s, "b", None).unwrap(), ip("10.0.0.2"));
    }

    #[test]
    fn round_robin_does_not_reuse_at_once() {
        let (_d, ipam) = ipam();
        let s = Subnet::new(net("10.1.0.0/24"), None, None).unwrap();
        let a = ipam.allocate(&s, "a", None).unwrap();
        assert_eq!(a, ip("10.1.0.2"));
        ipam.release(a).unwrap();
        assert_eq!(ipam.allocate(&s, "b", None).unwrap(), ip("10.1.0.3"));
    }

    #[test]
    fn honours_range_and_requested() {
        let (_d, ipam) = ipam();
        let s = Subnet::new(net("10.2.0.0/16"), None, Some(net("10.2.5.0/30"))).unwrap();
        let got: Vec<_> = (0..4)
            .map(|i| ipam.allocate(&s, &format!("c{i}"), None).unwrap())
            .collect();
        assert_eq!(
            got,
            [
                ip("10.2.5.0"),
                ip("10.2.5.1"),
                ip("10.2.5.2"),
                ip("10.2.5.3")
            ]
        );
        assert!(ipam.allocate(&s, "x", None).is_err());
        // --ip may lie outside the range but inside the subnet.
        assert_eq!(
            ipam.allocate(&s, "r", Some(ip("10.2.9.9"))).unwrap(),
            ip("10.2.9.9")
        );
        let e = ipam.allocate(&s, "r2", Some(ip("10.2.9.9"))).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Conflict);
        for bad in ["10.3.0.1", "10.2.0.0", "10.2.255.255", "10.2.0.1"] {
            let e = ipam.allocate(&s, "r3", Some(ip(bad))).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument, "{bad}");
        }
    }

    #[test]
    fn ipv6_and_dual_stack_in_one_file() {
        let (_d, ipam) = ipam();
        let v4 = Subnet::new(net("10.3.0.0/24"), None, None).unwrap();
        let v6 = Subnet::new(net("fd00:3::/64"), None, None).unwrap();
        assert_eq!(ipam.allocate(&v6, "a", None).unwrap(), ip("fd00:3::2"));
        assert_eq!(ipam.allocate(&v4, "a", None).unwrap(), ip("10.3.0.2"));
        assert_eq!(ipam.allocate(&v6, "b", None).unwrap(), ip("fd00:3::3"));
        let mut released = ipam.release_owner("a").unwrap();
        released.sort();
        assert_eq!(released, [ip("10.3.0.2"), ip("fd00:3::2")]);
        let left = ipam.list().unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].owner, "b");
    }

    #[test]
    fn state_survives_reopen_and_is_json() {
        let (d, ipam) = ipam();
        let s = Subnet::new(net("10.4.0.0/24"), None, None).unwrap();
        ipam.allocate(&s, "a", None).unwrap();
        let again = Ipam::new(&d.path().join("net"), NetworkName::new("n").unwrap());
        assert_eq!(again.allocate(&s, "b", None).unwrap(), ip("10.4.0.3"));
        let text = fs_err::read_to_string(d.path().join("net/ipam.json")).unwrap();
        assert!(text.contains("\"10.4.0.2\""), "{text}");
        assert!(!d.path().join("net/ipam.json.tmp").exists());
    }

    #[test]
    fn corrupt_state_is_an_error_naming_the_file() {
        let (d, ipam) = ipam();
        fs_err::create_dir_all(d.path().join("net")).unwrap();
        fs_err::write(d.path().join("net/ipam.json"), "{").unwrap();
        let e = ipam.list().unwrap_err();
        assert!(e.to_string().starts_with("parse ipam state "), "{e}");
        assert!(e.to_string().ends_with("net/ipam.json"), "{e}");
    }
}
