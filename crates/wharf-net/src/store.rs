//! Network definitions: what `network create` made, one directory per
//! network under the store's directory (the engine uses `<root>/networks/`):
//! `<name>/network.json` with the definition.
//!
//! The addresses handed out ([`crate::ipam`]) live apart, in a run
//! directory keyed by the network's id (the engine uses
//! `/run/wharf/networks/<id>/`): they only matter while containers run, a
//! reboot rightly forgets them (as Podman keeps its IPAM under `/run`), and
//! they are shared by every state root on the host. That matters for the
//! default network, whose id, bridge and subnet are the same for every root:
//! two roots' containers on `wharf0` draw from one pool and never get one
//! address twice.
//!
//! Creating and removing hold an exclusive `flock` on
//! `<run dir>/networks.lock`, so that two `network create` cannot take one
//! name or one subnet. A
//! definition is written to a temporary file, fsynced and renamed into place,
//! so readers take no lock and never see a torn file; a crash leaves the
//! network defined or not, never half.
//!
//! The default network, `bridge` (Docker's name; `--network bridge` or no
//! `--network`), is made on first use by [`NetworkStore::default_network`]:
//! bridge `wharf0`, subnet [`DEFAULT_SUBNET`], no name DNS (as Docker's and
//! Podman's default networks). Networks made without `--subnet` get the next
//! free /24 of [`AUTO_POOL_V4`] (and a /64 of [`AUTO_POOL_V6`] with IPv6) that
//! overlaps neither another network nor a route of the host.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

use crate::error::NetError;
use crate::ipam::{Ipam, Subnet};
use crate::name::NetworkName;

/// The default network's name.
pub const DEFAULT_NETWORK: &str = "bridge";
/// The default network's bridge.
pub const DEFAULT_BRIDGE: &str = "wharf0";
/// The default network's subnet.
pub const DEFAULT_SUBNET: &str = "10.90.0.0/16";
/// Where automatic IPv4 subnets (/24) come from.
pub const AUTO_POOL_V4: &str = "10.91.0.0/16";
/// Where automatic IPv6 subnets (/64) come from (a ULA prefix).
pub const AUTO_POOL_V6: &str = "fd77:6861:7266::/48";

const DEFINITION: &str = "network.json";
const LOCK_FILE: &str = "networks.lock";

/// One subnet of a network as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubnetConfig {
    /// The subnet.
    pub subnet: IpNet,
    /// Its gateway, the bridge's address.
    pub gateway: IpAddr,
    /// The range automatic allocation picks from.
    pub ip_range: IpNet,
}

impl From<&Subnet> for SubnetConfig {
    fn from(s: &Subnet) -> Self {
        SubnetConfig {
            subnet: s.net(),
            gateway: s.gateway(),
            ip_range: s.range(),
        }
    }
}

/// A network's definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    /// The name.
    pub name: String,
    /// 64 hex digits.
    pub id: String,
    /// `bridge` (the only driver so far).
    pub driver: String,
    /// The host bridge.
    pub bridge: String,
    /// Its subnets (IPv4 first).
    pub subnets: Vec<SubnetConfig>,
    /// IPv6 enabled (it has an IPv6 subnet).
    pub ipv6: bool,
    /// `--internal`: no route out, no published ports.
    pub internal: bool,
    /// Containers on it resolve each other's names.
    pub dns: bool,
    /// `--opt mtu=`.
    pub mtu: Option<u32>,
    /// `--opt big_tcp=false` turns off the large IPv4 segments Wharf's links
    /// take by default ([`crate::link::BIG_TCP_MAX_SIZE`]); absent in
    /// definitions written before the option existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub big_tcp: Option<bool>,
    /// `--label`.
    pub labels: BTreeMap<String, String>,
    /// `--opt`, as given.
    pub options: BTreeMap<String, String>,
    /// Creation time, nanoseconds since the epoch.
    pub created_ns: u64,
}

impl Network {
    /// The first 12 hex digits of the id.
    pub fn short_id(&self) -> &str {
        &self.id[..12]
    }

    /// Whether this is the default network.
    pub fn is_default(&self) -> bool {
        self.name == DEFAULT_NETWORK
    }

    /// Whether its links take large IPv4 segments (BIG TCP): unless
    /// `--opt big_tcp=false`.
    pub fn big_tcp(&self) -> bool {
        self.big_tcp != Some(false)
    }

    /// The subnets, validated again (the file may have been edited).
    ///
    /// # Errors
    ///
    /// [`NetError::InvalidSubnet`].
    pub fn subnets(&self) -> Result<Vec<Subnet>, NetError> {
        self.subnets
            .iter()
            .map(|s| Subnet::new(s.subnet, Some(s.gateway), Some(s.ip_range)))
            .collect()
    }
}

/// What `network create` asks for, validated by its constructors.
#[derive(Debug, Clone, Default)]
pub struct CreateNetwork {
    /// The name.
    pub name: Option<NetworkName>,
    /// `--subnet` (with `--gateway`, `--ip-range`); empty: one is picked.
    pub subnets: Vec<Subnet>,
    /// `--ipv6`: add an IPv6 subnet when none is given.
    pub ipv6: bool,
    /// `--internal`.
    pub internal: bool,
    /// `--disable-dns` turns this off; on for user networks.
    pub dns: bool,
    /// `--opt mtu=`.
    pub mtu: Option<u32>,
    /// `--opt big_tcp=`; `None` is the default, on.
    pub big_tcp: Option<bool>,
    /// `--label`.
    pub labels: BTreeMap<String, String>,
    /// `--opt`.
    pub options: BTreeMap<String, String>,
}

/// The default network's id: the same for every state root, so that they
/// share its address pool.
pub const DEFAULT_NETWORK_ID: &str =
    "77686172666272696467656e6574776f726b000000000000000000000000d3f1";

/// The network definitions under one directory, and their address pools
/// under a run directory.
#[derive(Debug, Clone)]
pub struct NetworkStore {
    dir: PathBuf,
    run_dir: PathBuf,
}

fn state_err(operation: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> NetError {
    let path = path.to_path_buf();
    move |source| NetError::NetworkState {
        operation,
        path,
        source,
    }
}

impl NetworkStore {
    /// The store of definitions in `dir`, address pools in `run_dir`
    /// (both created on first write). Opening does no I/O.
    pub fn new(dir: &Path, run_dir: &Path) -> NetworkStore {
        NetworkStore {
            dir: dir.to_path_buf(),
            run_dir: run_dir.to_path_buf(),
        }
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The IPAM of `network`.
    pub fn ipam(&self, network: &Network) -> Result<Ipam, NetError> {
        Ok(Ipam::new(
            &self.run_dir.join(&network.id),
            NetworkName::new(&network.name)?,
        ))
    }

    /// Every network, by name.
    ///
    /// # Errors
    ///
    /// [`NetError::NetworkState`], [`NetError::ParseNetwork`].
    pub fn list(&self) -> Result<Vec<Network>, NetError> {
        let entries = match fs_err::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(state_err("list networks in", &self.dir)(e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(state_err("list networks in", &self.dir))?;
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let path = entry.path().join(DEFINITION);
            if let Some(n) = read_definition(&path)? {
                out.push(n);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// A network by name, full id or unique id prefix.
    ///
    /// # Errors
    ///
    /// [`NetError::NetworkNotFound`], [`NetError::AmbiguousNetwork`], or the
    /// state failed.
    pub fn get(&self, reference: &str) -> Result<Network, NetError> {
        if NetworkName::new(reference).is_ok() {
            if let Some(n) = read_definition(&self.dir.join(reference).join(DEFINITION))? {
                return Ok(n);
            }
        }
        let is_hex = !reference.is_empty() && reference.bytes().all(|b| b.is_ascii_hexdigit());
        if is_hex {
            let found: Vec<Network> = self
                .list()?
                .into_iter()
                .filter(|n| n.id.starts_with(reference))
                .collect();
            match found.len() {
                1 => return Ok(found.into_iter().next().expect("one")),
                0 => {}
                _ => {
                    return Err(NetError::AmbiguousNetwork {
                        reference: reference.to_owned(),
                    })
                }
            }
        }
        Err(NetError::NetworkNotFound {
            reference: reference.to_owned(),
        })
    }

    /// The default network, made on first use.
    ///
    /// # Errors
    ///
    /// As [`NetworkStore::create`].
    pub fn default_network(&self) -> Result<Network, NetError> {
        if let Some(n) = read_definition(&self.dir.join(DEFAULT_NETWORK).join(DEFINITION))? {
            return Ok(n);
        }
        let subnet = Subnet::new(DEFAULT_SUBNET.parse().expect("valid"), None, None)?;
        let request = CreateNetwork {
            name: Some(NetworkName::new(DEFAULT_NETWORK)?),
            subnets: vec![subnet],
            ..CreateNetwork::default()
        };
        match self.create_locked(&request, true) {
            Ok(n) => Ok(n),
            // Another process made it meanwhile.
            Err(NetError::NetworkExists { .. }) => self.get(DEFAULT_NETWORK),
            Err(e) => Err(e),
        }
    }

    /// `network create`: validates the request against the other networks
    /// (name free, subnets not overlapping) and writes the definition.
    ///
    /// # Errors
    ///
    /// [`NetError::NetworkExists`], [`NetError::SubnetOverlap`],
    /// [`NetError::PoolExhausted`] (no free automatic subnet),
    /// [`NetError::InvalidSubnet`], or the state failed.
    pub fn create(&self, request: &CreateNetwork) -> Result<Network, NetError> {
        self.create_locked(request, false)
    }

    fn create_locked(&self, request: &CreateNetwork, default: bool) -> Result<Network, NetError> {
        let _lock = self.lock()?;
        let existing = self.list()?;
        let name = match &request.name {
            Some(n) => n.to_string(),
            None => (1..)
                .map(|i| format!("wharf{i}"))
                .find(|n| !existing.iter().any(|e| &e.name == n))
                .expect("an unbounded search finds a name"),
        };
        if name == DEFAULT_NETWORK && !default || existing.iter().any(|n| n.name == name) {
            return Err(NetError::NetworkExists { name });
        }
        if ["host", "none"].contains(&name.as_str()) {
            return Err(NetError::NetworkExists { name });
        }
        let taken: Vec<IpNet> = existing
            .iter()
            .flat_map(|n| n.subnets.iter().map(|s| s.subnet))
            .collect();
        let mut subnets = request.subnets.clone();
        for s in &subnets {
            if let Some(other) = existing
                .iter()
                .find(|n| n.subnets.iter().any(|o| overlaps(o.subnet, s.net())))
            {
                return Err(NetError::SubnetOverlap {
                    subnet: s.net(),
                    network: other.name.clone(),
                });
            }
        }
        let routes = host_routes();
        if !subnets.iter().any(|s| s.net().addr().is_ipv4()) {
            let net = free_subnet(AUTO_POOL_V4, 24, &taken, &routes)?;
            subnets.insert(0, Subnet::new(net, None, None)?);
        }
        if request.ipv6 && !subnets.iter().any(|s| s.net().addr().is_ipv6()) {
            let net = free_subnet(AUTO_POOL_V6, 64, &taken, &routes)?;
            subnets.push(Subnet::new(net, None, None)?);
        }
        subnets.sort_by_key(|s| s.net().addr().is_ipv6());
        for (i, a) in subnets.iter().enumerate() {
            if let Some(b) = subnets[i + 1..].iter().find(|b| overlaps(a.net(), b.net())) {
                return Err(NetError::InvalidSubnet {
                    subnet: b.net(),
                    reason: format!("overlaps {} of the same network", a.net()),
                });
            }
        }
        let id = if default {
            DEFAULT_NETWORK_ID.to_owned()
        } else {
            random_id().map_err(state_err("draw a network id for", &self.dir))?
        };
        let network = Network {
            bridge: if default {
                DEFAULT_BRIDGE.to_owned()
            } else {
                format!("wh-{}", &id[..12])
            },
            name,
            id,
            driver: "bridge".to_owned(),
            ipv6: subnets.iter().any(|s| s.net().addr().is_ipv6()),
            subnets: subnets.iter().map(SubnetConfig::from).collect(),
            internal: request.internal,
            dns: request.dns && !default,
            mtu: request.mtu,
            big_tcp: request.big_tcp,
            labels: request.labels.clone(),
            options: request.options.clone(),
            created_ns: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
                .unwrap_or(0),
        };
        self.write(&network)?;
        Ok(network)
    }

    /// Removes `network`'s definition and address pool. The caller has
    /// disconnected everything and torn down its links and rules.
    ///
    /// # Errors
    ///
    /// [`NetError::NetworkState`].
    pub fn remove(&self, network: &Network) -> Result<(), NetError> {
        let _lock = self.lock()?;
        for dir in [self.dir.join(&network.name), self.run_dir.join(&network.id)] {
            match fs_err::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(state_err("remove network directory", &dir)(e)),
            }
        }
        Ok(())
    }

    /// The lock is in the run directory, shared by every root, so that two
    /// roots never pick one automatic subnet at once.
    fn lock(&self) -> Result<fs_err::File, NetError> {
        fs_err::create_dir_all(&self.dir).map_err(state_err("create", &self.dir))?;
        fs_err::create_dir_all(&self.run_dir).map_err(state_err("create", &self.run_dir))?;
        let path = self.run_dir.join(LOCK_FILE);
        let file = fs_err::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(state_err("open", &path))?;
        loop {
            match rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive) {
                Err(rustix::io::Errno::INTR) => continue,
                other => break other.map_err(|e| state_err("lock", &path)(e.into()))?,
            }
        }
        Ok(file)
    }

    fn write(&self, network: &Network) -> Result<(), NetError> {
        let dir = self.dir.join(&network.name);
        fs_err::create_dir_all(&dir).map_err(state_err("create", &dir))?;
        let path = dir.join(DEFINITION);
        let tmp = dir.join("network.json.tmp");
        let bytes = serde_json::to_vec_pretty(network).expect("a network always serialises");
        let mut f = fs_err::File::create(&tmp).map_err(state_err("create", &tmp))?;
        f.write_all(&bytes).map_err(state_err("write", &tmp))?;
        f.sync_all().map_err(state_err("sync", &tmp))?;
        drop(f);
        fs_err::rename(&tmp, &path).map_err(state_err("rename into place", &path))?;
        fs_err::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(state_err("sync", &dir))
    }
}

fn read_definition(path: &Path) -> Result<Option<Network>, NetError> {
    match fs_err::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| NetError::ParseNetwork {
                    path: path.to_path_buf(),
                    source,
                })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(state_err("read", path)(e)),
    }
}

/// Whether two networks share an address.
pub(crate) fn overlaps(a: IpNet, b: IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The first `prefix`-long subnet of `pool` that overlaps none of `taken`
/// and no host route but the default routes.
fn free_subnet(
    pool: &str,
    prefix: u8,
    taken: &[IpNet],
    routes: &[IpNet],
) -> Result<IpNet, NetError> {
    let pool: IpNet = pool.parse().expect("a valid pool");
    let candidates: Box<dyn Iterator<Item = IpNet>> = match pool {
        IpNet::V4(p) => Box::new(
            p.subnets(prefix)
                .expect("prefix inside the pool")
                .map(IpNet::V4),
        ),
        IpNet::V6(p) => Box::new(
            p.subnets(prefix)
                .expect("prefix inside the pool")
                .take(4096)
                .map(IpNet::V6),
        ),
    };
    let mut candidates = candidates;
    candidates
        .find(|c| {
            !taken.iter().any(|t| overlaps(*t, *c))
                && !routes
                    .iter()
                    .any(|r| r.prefix_len() > 0 && overlaps(*r, *c))
        })
        .ok_or(NetError::PoolExhausted {
            pool,
            network: "(new network)".to_owned(),
        })
}

/// The destinations of the host's routes, from `/proc/net/route` and
/// `/proc/net/ipv6_route` (unreadable files count as no routes).
fn host_routes() -> Vec<IpNet> {
    let mut out = Vec::new();
    if let Ok(text) = fs_err::read_to_string("/proc/net/route") {
        out.extend(parse_routes_v4(&text));
    }
    if let Ok(text) = fs_err::read_to_string("/proc/net/ipv6_route") {
        out.extend(parse_routes_v6(&text));
    }
    out
}

/// `/proc/net/route`: destination and mask as little-endian hex.
pub(crate) fn parse_routes_v4(text: &str) -> Vec<IpNet> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let dest = u32::from_str_radix(f.get(1)?, 16).ok()?;
            let mask = u32::from_str_radix(f.get(7)?, 16).ok()?;
            let addr = std::net::Ipv4Addr::from(dest.to_le_bytes());
            let prefix = u8::try_from(mask.count_ones()).ok()?;
            Ipv4Net::new(addr, prefix).ok().map(IpNet::V4)
        })
        .collect()
}

/// `/proc/net/ipv6_route`: destination as 32 hex digits, prefix as hex.
pub(crate) fn parse_routes_v6(text: &str) -> Vec<IpNet> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let dest = u128::from_str_radix(f.first()?, 16).ok()?;
            let prefix = u8::from_str_radix(f.get(1)?, 16).ok()?;
            Ipv6Net::new(dest.into(), prefix).ok().map(IpNet::V6)
        })
        .collect()
}

fn random_id() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    fs_err::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(name: &str) -> CreateNetwork {
        CreateNetwork {
            name: Some(NetworkName::new(name).unwrap()),
            dns: true,
            ..CreateNetwork::default()
        }
    }

    #[test]
    fn routes_parse() {
        let v4 =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                  eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                  eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
        let routes = parse_routes_v4(v4);
        assert_eq!(
            routes,
            vec![
                "0.0.0.0/0".parse::<IpNet>().unwrap(),
                "192.0.2.0/24".parse().unwrap()
            ]
        );
        let v6 = "fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0\n";
        assert_eq!(
            parse_routes_v6(v6),
            vec!["fe80::/64".parse::<IpNet>().unwrap()]
        );
    }

    #[test]
    fn create_picks_free_subnets_and_refuses_clashes() {
        let dir = tempfile::tempdir().unwrap();
        let store = NetworkStore::new(&dir.path().join("defs"), &dir.path().join("run"));
        let a = store.create(&request("a")).unwrap();
        let b = store
            .create(&CreateNetwork {
                ipv6: true,
                ..request("b")
            })
            .unwrap();
        assert_eq!(a.subnets.len(), 1);
        assert!(a.dns && !a.internal && a.bridge.starts_with("wh-") && a.bridge.len() == 15);
        assert_eq!(b.subnets.len(), 2);
        assert!(!overlaps(a.subnets[0].subnet, b.subnets[0].subnet));
        assert!(b.subnets[1].subnet.addr().is_ipv6() && b.ipv6);
        let e = store.create(&request("a")).unwrap_err();
        assert!(matches!(e, NetError::NetworkExists { .. }), "{e}");
        let clash = CreateNetwork {
            subnets: vec![Subnet::new(a.subnets[0].subnet, None, None).unwrap()],
            ..request("c")
        };
        let e = store.create(&clash).unwrap_err().to_string();
        assert!(e.contains("overlaps") && e.contains("network a"), "{e}");
        assert_eq!(store.list().unwrap().len(), 2);
        assert_eq!(store.get(&a.id[..8]).unwrap(), a);
        assert_eq!(store.get("b").unwrap(), b);
        assert!(matches!(
            store.get("nope").unwrap_err(),
            NetError::NetworkNotFound { .. }
        ));
        store.remove(&a).unwrap();
        store.remove(&a).unwrap();
        assert_eq!(store.list().unwrap(), vec![b]);
    }

    #[test]
    fn default_network_is_made_once_and_reserved() {
        let dir = tempfile::tempdir().unwrap();
        let store = NetworkStore::new(&dir.path().join("defs"), &dir.path().join("run"));
        let d = store.default_network().unwrap();
        assert_eq!(d.name, DEFAULT_NETWORK);
        assert_eq!(d.bridge, DEFAULT_BRIDGE);
        assert!(!d.dns);
        assert_eq!(store.default_network().unwrap(), d);
        let e = store.create(&request("bridge")).unwrap_err();
        assert!(matches!(e, NetError::NetworkExists { .. }), "{e}");
        let e = store.create(&request("host")).unwrap_err();
        assert!(matches!(e, NetError::NetworkExists { .. }), "{e}");
    }
}
