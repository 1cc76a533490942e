//! Links over rtnetlink: bridges, veth pairs, addresses, routes.
//!
//! `rtnetlink` is async; this module drives it with a current-thread tokio
//! runtime owned by each [`Netlink`] handle, so the crate's API stays
//! synchronous (STYLE.md §4 keeps async at network edges; a netlink socket is
//! a local kernel channel where every request is one round trip). The runtime
//! uses no extra threads, and the socket belongs to the network namespace of
//! the thread that opened the handle.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd as _, BorrowedFd};

use futures_util::TryStreamExt as _;
use ipnet::IpNet;
use netlink_packet_route::address::{AddressAttribute, AddressFlags};
use netlink_packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkInfo};
use rtnetlink::{LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};

use crate::error::NetError;

const ENODEV: i32 = 19;
const EEXIST: i32 = 17;

/// The largest IPv4 GSO and GRO packet Wharf's veth ends and bridges accept
/// ("BIG TCP", Linux 6.3 and later): the kernel's largest GRO size,
/// `GRO_MAX_SIZE`, eight times its default of 64 KiB.
///
/// Every packet that crosses a bridge pays a fixed cost (the bridge hop and,
/// with `br_netfilter`, the IP hooks and conntrack) which a plain veth pair
/// does not; larger TCP segments pay it less often. Measured here (2 CPUs):
/// one TCP stream over a bridge went from 0.83-0.87 x a plain veth pair's
/// throughput to above it (BENCHMARKS.md, "Networking"). A socket still sends
/// only as large as its route's device allows and TCP sizes its segments by
/// its pacing rate; a packet forwarded to a device with a smaller limit (a
/// NIC) is segmented by the kernel on the way out.
///
/// Kernels before 6.3 do not know the attributes and ignore them (`IFLA_*`
/// attributes are parsed leniently): links there keep 64 KiB. IPv6 BIG TCP
/// (`IFLA_GSO_MAX_SIZE`) is left alone: kernels before 5.19 take a larger
/// value there without being able to build such packets.
pub const BIG_TCP_MAX_SIZE: u32 = 8 * 65_535;

/// Adds the IPv4 GSO and GRO limits of [`BIG_TCP_MAX_SIZE`] to a link request.
fn big_tcp<T>(builder: LinkMessageBuilder<T>) -> LinkMessageBuilder<T> {
    builder
        .append_extra_attribute(LinkAttribute::GsoIpv4MaxSize(BIG_TCP_MAX_SIZE))
        .append_extra_attribute(LinkAttribute::GroIpv4MaxSize(BIG_TCP_MAX_SIZE))
}

/// What [`Netlink::get_link`] reports of a link.
#[derive(Debug)]
struct LinkFacts {
    index: u32,
    kind: Option<InfoKind>,
    /// `IFLA_GSO_IPV4_MAX_SIZE`; `None` from kernels before 6.3.
    gso_ipv4_max_size: Option<u32>,
}

/// A netlink connection in the network namespace of the thread that opened
/// it; it keeps acting there whichever thread uses it later. To act in
/// another namespace, open one inside [`crate::netns::run_in`].
#[derive(Debug)]
pub struct Netlink {
    runtime: tokio::runtime::Runtime,
    handle: rtnetlink::Handle,
}

fn to_io(error: rtnetlink::Error) -> io::Error {
    match error {
        rtnetlink::Error::NetlinkError(message) => message.to_io(),
        other => io::Error::other(other.to_string()),
    }
}

fn netlink_err(
    operation: &'static str,
    object: impl Into<String>,
) -> impl FnOnce(io::Error) -> NetError {
    let object = object.into();
    move |source| NetError::Netlink {
        operation,
        object,
        source,
    }
}

/// Ok for "already exists", so that setup can be repeated.
fn allow_exists(result: Result<(), rtnetlink::Error>) -> Result<(), io::Error> {
    match result.map_err(to_io) {
        Err(e) if e.raw_os_error() == Some(EEXIST) => Ok(()),
        other => other,
    }
}

impl Netlink {
    /// Opens a connection in the calling thread's network namespace.
    ///
    /// # Errors
    ///
    /// [`NetError::Netlink`] `open netlink socket`.
    pub fn open() -> Result<Netlink, NetError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(netlink_err("open netlink socket", "rtnetlink"))?;
        let (connection, handle, _) = {
            // The socket registers with the runtime's reactor.
            let _context = runtime.enter();
            rtnetlink::new_connection().map_err(netlink_err("open netlink socket", "rtnetlink"))?
        };
        runtime.spawn(connection);
        Ok(Netlink { runtime, handle })
    }

    /// The index of the link `name`, or `None` when there is none.
    ///
    /// # Errors
    ///
    /// [`NetError::Netlink`] `get link`.
    pub fn link_index(&self, name: &str) -> Result<Option<u32>, NetError> {
        Ok(self.get_link(name)?.map(|link| link.index))
    }

    /// The link `name`'s IPv4 GSO limit (`IFLA_GSO_IPV4_MAX_SIZE`): `None`
    /// when there is no such link or the kernel (before 6.3) does not report
    /// one.
    ///
    /// # Errors
    ///
    /// [`NetError::Netlink`] `get link`.
    pub fn gso_ipv4_max_size(&self, name: &str) -> Result<Option<u32>, NetError> {
        Ok(self.get_link(name)?.and_then(|link| link.gso_ipv4_max_size))
    }

    fn get_link(&self, name: &str) -> Result<Option<LinkFacts>, NetError> {
        let request = self
            .handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute();
        let found = self.runtime.block_on(async {
            futures_util::pin_mut!(request);
            request.try_next().await
        });
        match found.map_err(to_io) {
            Ok(Some(message)) => {
                let mut link = LinkFacts {
                    index: message.header.index,
                    kind: None,
                    gso_ipv4_max_size: None,
                };
                for attribute in &message.attributes {
                    match attribute {
                        LinkAttribute::LinkInfo(infos) => {
                            link.kind = infos.iter().find_map(|i| match i {
                                LinkInfo::Kind(kind) => Some(kind.clone()),
                                _ => None,
                            });
                        }
                        LinkAttribute::GsoIpv4MaxSize(size) => {
                            link.gso_ipv4_max_size = Some(*size);
                        }
                        _ => {}
                    }
                }
                Ok(Some(link))
            }
            Ok(None) => Ok(None),
            Err(e) if e.raw_os_error() == Some(ENODEV) => Ok(None),
            Err(e) => Err(netlink_err("get link", name)(e)),
        }
    }

    fn require_link(&self, name: &str) -> Result<LinkFacts, NetError> {
        self.get_link(name)?.ok_or_else(|| NetError::LinkNotFound {
            name: name.to_owned(),
        })
    }

    /// Raises the bridge `bridge`'s IPv4 GSO and GRO limits to
    /// [`BIG_TCP_MAX_SIZE`] once a port allows it: what the host sends into
    /// its containers through the bridge is then as large as what they send
    /// out. A bridge's limit cannot be raised before it has such a port (it
    /// starts at the kernel's 64 KiB and follows its ports'), so this runs
    /// after a veth joined it, once per bridge. A failure only costs
    /// throughput and is logged.
    fn raise_bridge_gso(&self, bridge: &LinkFacts, name: &str) {
        if bridge
            .gso_ipv4_max_size
            .is_none_or(|size| size >= BIG_TCP_MAX_SIZE)
        {
            return;
        }
        let message = big_tcp(LinkUnspec::new_with_index(bridge.index)).build();
        let request = self.handle.link().set(message).execute();
        if let Err(error) = self.runtime.block_on(request) {
            tracing::debug!(bridge = name, error = %to_io(error), "raise GSO limit");
        }
    }

    /// Creates the bridge `name` unless it exists (a link of another kind with
    /// that name is an error), adds `addresses` (the gateways, with the
    /// subnet's prefix) unless present, and sets it up. Returns its index.
    ///
    /// # Errors
    ///
    /// [`NetError::Netlink`] `create bridge`, `add address`, `set link up`;
    /// `create bridge` with `EEXIST` (kind `AlreadyExists`) when `name` is not
    /// a bridge.
    pub fn ensure_bridge(
        &self,
        name: &str,
        mtu: Option<u32>,
        addresses: &[IpNet],
    ) -> Result<u32, NetError> {
        let index = match self.get_link(name)? {
            Some(LinkFacts {
                index,
                kind: Some(InfoKind::Bridge),
                ..
            }) => index,
            Some(_) => {
                return Err(netlink_err("create bridge", name)(
                    io::Error::from_raw_os_error(EEXIST),
                ))
            }
            None => {
                let mut builder = LinkBridge::new(name);
                if let Some(mtu) = mtu {
                    builder = builder.mtu(mtu);
                }
                let request = self.handle.link().add(builder.build()).execute();
                allow_exists(self.runtime.block_on(request))
                    .map_err(netlink_err("create bridge", name))?;
                tracing::debug!(bridge = name, "created bridge");
                self.require_link(name)?.index
            }
        };
        for address in addresses {
            self.add_address(index, *address)?;
        }
        self.set_up(index, name)?;
        Ok(index)
    }

    /// Adds `address` to the link `index` unless it is there. IPv6 addresses
    /// skip duplicate address detection (`IFA_F_NODAD`, as Podman does): the
    /// IPAM guarantees uniqueness, and DAD would leave the address unusable
    /// for a second or two.
    ///
    /// # Errors
    ///
    /// [`NetError::Netlink`] `add address`.
    pub fn add_address(&self, index: u32, address: IpNet) -> Result<(), NetError> {
        let mut request = self
            .handle
            .address()
            .add(index, address.addr(), address.prefix_len());
        if address.addr().is_ipv6() {
            request
                .message_mut()
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        allow_exists(self.runtime.block_on(request.execute())).map_err(netlink_err(
            "add address",
            format!("{address} to link {index}"),
        ))
    }

    /// Sets the link `index` up; `name` is for errors.
    ///
    /// # Errors
    ///
    /// [`NetError::Netlink`] `set link up`.
    pub fn set_up(&self, index: u32, name: &str) -> Result<(), NetError> {
        let message = LinkUnspec::new_with_index(index).up().build();
        let request = self.handle.link().set(message).execute();
        self.runtime
            .block_on(request)
            .map_err(to_io)
            .map_err(netlink_err("set link up", name))
    }

    /// Adds a default route through `gateway` on the link `index` unless one
    /// exists.
    ///
    /// # Errors
    ///
    /// [`NetError::Netlink`] `add default route`.
    pub fn add_default_route(&self, index: u32, gateway: IpAddr) -> Result<(), NetError> {
        let message = match gateway {
            IpAddr::V4(gw) => RouteMessageBuilder::<Ipv4Addr>::new()
                .gateway(gw)
                .output_interface(index)
                .build(),
            IpAddr::V6(gw) => RouteMessageBuilder::<Ipv6Addr>::new()
                .gateway(gw)
                .output_interface(index)
                .build(),
        };
        let request = self.handle.route().add(message).execute();
        allow_exists(self.runtime.block_on(request))
            .map_err(netlink_err("add default route", format!("via {gateway}")))
    }

    /// Deletes the link `name` (for a veth, both ends). Returns whether it
    /// existed, so that teardown can be repeated.
    ///
    /// # Errors
    ///
    /// [`NetError::Netlink`] `delete link`.
    pub fn delete_link(&self, name: &str) -> Result<bool, NetError> {
        let Some(index) = self.link_index(name)? else {
            return Ok(false);
        };
        let request = self.handle.link().del(index).execute();
        match self.runtime.block_on(request).map_err(to_io) {
            Ok(()) => {
                tracing::debug!(link = name, "deleted link");
                Ok(true)
            }
            Err(e) if e.raw_os_error() == Some(ENODEV) => Ok(false),
            Err(e) => Err(netlink_err("delete link", name)(e)),
        }
    }

    /// Creates a veth pair: `plan.host_name` attached to the bridge
    /// `bridge_index` here, its peer created directly in the namespace
    /// `netns` as `plan.peer_name`, with the plan's MTU, MAC and segment
    /// limit. Creating the peer in its namespace (veth's peer
    /// `IFLA_NET_NS_FD`, what `ip link add … peer name eth0 netns …` does)
    /// rather than creating it here, moving and renaming it means the name
    /// cannot clash with a host interface and the peer is never visible on the
    /// host.
    fn create_veth(
        &self,
        plan: &VethPlan,
        netns: BorrowedFd<'_>,
        bridge_index: u32,
    ) -> Result<(), NetError> {
        // The raw fd only travels in the request; `netns` outlives the call.
        let mut peer = LinkMessageBuilder::<LinkUnspec>::new()
            .name(plan.peer_name.clone())
            .setns_by_fd(netns.as_raw_fd());
        let mut host = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
            .name(plan.host_name.clone())
            .controller(bridge_index);
        if plan.big_tcp {
            peer = big_tcp(peer);
            host = big_tcp(host);
        }
        if let Some(mtu) = plan.mtu {
            peer = peer.mtu(mtu);
            host = host.mtu(mtu);
        }
        if let Some(mac) = plan.mac {
            peer = peer.address(mac.to_vec());
        }
        let message = host
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())))
            .build();
        let request = self.handle.link().add(message).execute();
        self.runtime
            .block_on(request)
            .map_err(to_io)
            .map_err(netlink_err("create veth", &plan.host_name))
    }
}

/// What [`attach_veth`] sets up for one interface of one namespace.
#[derive(Debug, Clone)]
pub struct VethPlan {
    /// The bridge the host end joins (it must exist: [`Netlink::ensure_bridge`]).
    pub bridge: String,
    /// The host end's name (at most 15 bytes, unique on the host).
    pub host_name: String,
    /// The name inside the namespace (`eth0`).
    pub peer_name: String,
    /// Addresses of the namespace end, with their subnet's prefix.
    pub addresses: Vec<IpNet>,
    /// Default route gateways, at most one per address family.
    pub gateways: Vec<IpAddr>,
    /// MTU of both ends, if not the kernel's default.
    pub mtu: Option<u32>,
    /// Both ends, and the bridge once it has such a port, take IPv4
    /// segments up to [`BIG_TCP_MAX_SIZE`] rather than the kernel's 64 KiB.
    pub big_tcp: bool,
    /// MAC address of the namespace end, if not a random one.
    pub mac: Option<[u8; 6]>,
}

/// Connects the network namespace `netns` to a bridge, in the caller's
/// namespace (the host side): creates the veth pair (host end on the bridge,
/// peer created inside `netns`), sets the host end up, then inside `netns`
/// (on a helper thread, see [`crate::netns`]) adds the addresses, sets `lo`
/// and the peer up and adds the default routes.
///
/// On failure the pair is deleted again (deleting the host end removes the
/// peer) and the original error returned; a failure to delete is logged.
///
/// # Errors
///
/// [`NetError::LinkNotFound`] for a missing bridge, [`NetError::Netlink`],
/// [`NetError::Netns`].
pub fn attach_veth(
    netlink: &Netlink,
    netns: BorrowedFd<'_>,
    plan: &VethPlan,
) -> Result<(), NetError> {
    let bridge = netlink.require_link(&plan.bridge)?;
    netlink.create_veth(plan, netns, bridge.index)?;
    let result = netlink
        .require_link(&plan.host_name)
        .and_then(|link| netlink.set_up(link.index, &plan.host_name))
        .and_then(|()| {
            crate::netns::run_in(netns, "container network namespace", || {
                configure_inside(plan)
            })
        });
    if let Err(error) = result {
        if let Err(cleanup) = netlink.delete_link(&plan.host_name) {
            tracing::warn!(link = plan.host_name, error = %cleanup, "roll back veth");
        }
        return Err(error);
    }
    if plan.big_tcp {
        netlink.raise_bridge_gso(&bridge, &plan.bridge);
    }
    Ok(())
}

/// Runs on a thread inside the container's namespace.
fn configure_inside(plan: &VethPlan) -> Result<(), NetError> {
    let netlink = Netlink::open()?;
    let lo = netlink.require_link("lo")?.index;
    netlink.set_up(lo, "lo")?;
    let index = netlink.require_link(&plan.peer_name)?.index;
    for address in &plan.addresses {
        netlink.add_address(index, *address)?;
    }
    netlink.set_up(index, &plan.peer_name)?;
    for gateway in &plan.gateways {
        netlink.add_default_route(index, *gateway)?;
    }
    Ok(())
}
