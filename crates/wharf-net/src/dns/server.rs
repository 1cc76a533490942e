//! The server loop: listeners on every network's gateways, local answers,
//! forwarding, reloading the record files, and exiting when they are empty.
//!
//! One current-thread tokio runtime. Each listener address has one task for
//! UDP and one for TCP, each the only owner of its socket, so that closing a
//! listener (abort, then wait for the task) frees the address at once for a
//! successor. A query that must be forwarded runs in its own task (a slow
//! upstream never holds up local answers) and hands its reply back to the
//! UDP task over a channel; each TCP connection is its own task.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustix::net::{AddressFamily, SocketFlags, SocketType};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;

use super::answer::{self, Reply, Transport};
use super::records::{DnsNetwork, DnsRecords, Fingerprint, ServerLock};
use super::DnsEntry;
use crate::error::NetError;

/// The DNS port: containers' resolv.conf cannot name another.
const PORT: u16 = 53;
/// How often the files are checked when no query arrives.
const TICK: Duration = Duration::from_millis(500);
/// How long one upstream gets to answer.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// How long an idle TCP connection is kept (RFC 7766 suggests seconds).
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Forwards in flight at once; beyond, UDP queries are dropped (the client
/// retries) and TCP ones get SERVFAIL.
const MAX_FORWARDS: usize = 512;

/// Runs the DNS server for the records in `dir` until no network has
/// records left; blocks the calling thread. `upstream` are the resolvers
/// queries for other names go to, tried in order (see
/// [`crate::dns::host_resolvers`]).
///
/// Lifecycle: the server holds `<dir>/server.lock` (`flock`) for its whole
/// life as its liveness token; when another server holds it already, this
/// returns `Ok(())` at once. It rereads the record files when they change
/// (checked on every query and every 500 ms), and opens and closes UDP and
/// TCP listeners on each network's listen addresses, port 53, as networks
/// appear and disappear (bound with `IP_FREEBIND`, so a gateway need not be
/// configured yet). A listener that cannot be bound is retried on the next
/// check. When no network has entries, it takes the records lock, checks
/// again, closes its listeners and releases `server.lock` while still
/// holding the records lock, then returns: see [`DnsRecords::add`] for why
/// an add never races this exit.
///
/// Runs in the host's network namespace (where the gateways are), normally
/// in its own process (`wharf __dns <dir>`, spawned detached by the engine
/// when [`DnsRecords::add`] says so).
///
/// # Errors
///
/// `DnsState` for the lock files and the records directory, `DnsServe`
/// `start dns runtime`. Malformed packets, unusable listen addresses,
/// unreadable network files and failing upstreams are logged, not errors.
pub fn serve(dir: &Path, upstream: &[SocketAddr]) -> Result<(), NetError> {
    let records = DnsRecords::new(dir);
    let Some(server_lock) = records.try_lock_server()? else {
        tracing::info!(dir = %dir.display(), "another dns server is running");
        return Ok(());
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| NetError::DnsServe {
            operation: "start dns runtime",
            address: dir.display().to_string(),
            source,
        })?;
    let shared = Arc::new(Shared {
        records,
        upstream: upstream.to_vec(),
        loaded: Mutex::new(None),
        forwards: Arc::new(Semaphore::new(MAX_FORWARDS)),
    });
    tracing::info!(dir = %dir.display(), upstream = ?upstream, "dns server started");
    let result = runtime.block_on(run(shared, server_lock));
    tracing::info!(dir = %dir.display(), "dns server stopped");
    result
}

/// The records as last read, by listen address.
#[derive(Debug, Default)]
struct Zones {
    networks: Vec<DnsNetwork>,
    by_address: HashMap<IpAddr, usize>,
}

impl Zones {
    fn new(networks: Vec<DnsNetwork>) -> Zones {
        let networks: Vec<DnsNetwork> = networks
            .into_iter()
            .filter(|n| !n.entries.is_empty())
            .collect();
        let mut by_address = HashMap::new();
        for (i, network) in networks.iter().enumerate() {
            for &address in &network.listen {
                // Two networks claiming one gateway is the engine's bug;
                // the first (by name) keeps it.
                by_address.entry(address).or_insert(i);
            }
        }
        Zones {
            networks,
            by_address,
        }
    }

    /// The entries a query arriving at `local` from `client` sees: those of
    /// the listener's network, then those of every other network the
    /// client's container is on too (as Docker's resolver answers for all
    /// the networks a container shares with others).
    fn entries_for(&self, local: IpAddr, client: IpAddr) -> std::borrow::Cow<'_, [DnsEntry]> {
        use std::borrow::Cow;
        let Some(&i) = self.by_address.get(&local) else {
            return Cow::Borrowed(&[]);
        };
        let here = &self.networks[i].entries;
        let Some(owner) = here
            .iter()
            .find(|e| e.addresses.contains(&client))
            .map(|e| e.owner.as_str())
        else {
            return Cow::Borrowed(here);
        };
        let mut others = self
            .networks
            .iter()
            .enumerate()
            .filter(|(j, n)| *j != i && n.entries.iter().any(|e| e.owner == owner))
            .peekable();
        if others.peek().is_none() {
            return Cow::Borrowed(here);
        }
        let mut all = here.clone();
        for (_, n) in others {
            all.extend(n.entries.iter().cloned());
        }
        Cow::Owned(all)
    }
}

#[derive(Debug)]
struct Shared {
    records: DnsRecords,
    upstream: Vec<SocketAddr>,
    loaded: Mutex<Option<(Fingerprint, Arc<Zones>)>>,
    forwards: Arc<Semaphore>,
}

impl Shared {
    /// The current records, reread first if the files changed.
    fn zones(&self) -> Arc<Zones> {
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        let fingerprint = match self.records.fingerprint() {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %error_chain(&e), "check dns records");
                return loaded
                    .as_ref()
                    .map_or_else(Default::default, |(_, z)| z.clone());
            }
        };
        if let Some((seen, zones)) = loaded.as_ref() {
            if *seen == fingerprint {
                return zones.clone();
            }
        }
        let networks = match self.records.read_all() {
            Ok(all) => all
                .into_iter()
                .filter_map(|n| {
                    n.map_err(|e| tracing::warn!(error = %error_chain(&e), "skipping dns records"))
                        .ok()
                })
                .collect(),
            Err(e) => {
                tracing::warn!(error = %error_chain(&e), "read dns records");
                return loaded
                    .as_ref()
                    .map_or_else(Default::default, |(_, z)| z.clone());
            }
        };
        let zones = Arc::new(Zones::new(networks));
        tracing::debug!(networks = zones.networks.len(), "dns records loaded");
        *loaded = Some((fingerprint, zones.clone()));
        zones
    }

    /// The upstreams, less any that is one of our own listeners (a host
    /// whose resolv.conf points at a gateway would loop).
    fn upstreams(&self) -> Vec<SocketAddr> {
        let zones = self.zones();
        self.upstream
            .iter()
            .filter(|u| !(u.port() == PORT && zones.by_address.contains_key(&u.ip())))
            .copied()
            .collect()
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The UDP and TCP tasks of one listen address.
#[derive(Debug)]
struct Listener {
    udp: JoinHandle<()>,
    tcp: JoinHandle<()>,
}

impl Listener {
    fn open(address: IpAddr, shared: &Arc<Shared>) -> Result<Listener, NetError> {
        let at = SocketAddr::new(address, PORT);
        let udp = bound_socket(at, SocketType::DGRAM)
            .and_then(|fd| UdpSocket::from_std(std::net::UdpSocket::from(fd)))
            .map_err(|source| NetError::DnsServe {
                operation: "bind dns listener",
                address: format!("{at} (udp)"),
                source,
            })?;
        let tcp = bound_socket(at, SocketType::STREAM)
            .and_then(|fd| {
                rustix::net::listen(&fd, 128)?;
                TcpListener::from_std(std::net::TcpListener::from(fd))
            })
            .map_err(|source| NetError::DnsServe {
                operation: "bind dns listener",
                address: format!("{at} (tcp)"),
                source,
            })?;
        Ok(Listener {
            udp: tokio::spawn(serve_udp(udp, address, shared.clone())),
            tcp: tokio::spawn(serve_tcp(tcp, address, shared.clone())),
        })
    }

    /// Closes both sockets; they are gone when this returns.
    async fn close(self) {
        self.udp.abort();
        self.tcp.abort();
        let _ = self.udp.await;
        let _ = self.tcp.await;
    }
}

/// A non-blocking, close-on-exec socket bound to `at` with `IP_FREEBIND`
/// (the address may not be configured yet: the bridge gets its gateway when
/// the first container attaches, maybe after the server started).
fn bound_socket(at: SocketAddr, socket_type: SocketType) -> io::Result<OwnedFd> {
    let family = match at {
        SocketAddr::V4(_) => AddressFamily::INET,
        SocketAddr::V6(_) => AddressFamily::INET6,
    };
    let fd = rustix::net::socket_with(
        family,
        socket_type,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )?;
    match at {
        SocketAddr::V4(_) => rustix::net::sockopt::set_ip_freebind(&fd, true)?,
        SocketAddr::V6(_) => {
            rustix::net::sockopt::set_ipv6_v6only(&fd, true)?;
            rustix::net::sockopt::set_ipv6_freebind(&fd, true)?;
        }
    }
    if socket_type == SocketType::STREAM {
        // A successor can listen while connections of ours linger.
        rustix::net::sockopt::set_socket_reuseaddr(&fd, true)?;
    }
    rustix::net::bind(&fd, &at)?;
    Ok(fd)
}

async fn run(shared: Arc<Shared>, server_lock: ServerLock) -> Result<(), NetError> {
    let mut listeners: BTreeMap<IpAddr, Listener> = BTreeMap::new();
    let mut failing: BTreeSet<IpAddr> = BTreeSet::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let zones = shared.zones();
        let gone: Vec<IpAddr> = listeners
            .keys()
            .filter(|a| !zones.by_address.contains_key(a))
            .copied()
            .collect();
        for address in gone {
            if let Some(listener) = listeners.remove(&address) {
                listener.close().await;
                tracing::info!(%address, "dns listener closed");
            }
        }
        failing.retain(|a| zones.by_address.contains_key(a));
        for &address in zones.by_address.keys() {
            if listeners.contains_key(&address) {
                continue;
            }
            match Listener::open(address, &shared) {
                Ok(listener) => {
                    listeners.insert(address, listener);
                    failing.remove(&address);
                    tracing::info!(%address, "dns listener opened");
                }
                Err(e) => {
                    if failing.insert(address) {
                        tracing::warn!(error = %error_chain(&e), "dns listener, retrying");
                    }
                }
            }
        }
        if zones.networks.is_empty() {
            let records_lock = shared.records.lock()?;
            if shared.records.is_empty_locked()? {
                for (_, listener) in std::mem::take(&mut listeners) {
                    listener.close().await;
                }
                // While the records lock is still held: an add after this
                // sees no server and spawns one.
                server_lock.release();
                drop(records_lock);
                return Ok(());
            }
        }
    }
}

async fn serve_udp(socket: UdpSocket, local: IpAddr, shared: Arc<Shared>) {
    let (replies, mut to_send) = mpsc::channel::<(Vec<u8>, SocketAddr)>(64);
    let mut buf = vec![0u8; 65535];
    loop {
        tokio::select! {
            received = socket.recv_from(&mut buf) => {
                let (len, peer) = match received {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::debug!(%local, error = %e, "dns udp receive");
                        continue;
                    }
                };
                let packet = &buf[..len];
                let zones = shared.zones();
                match answer::respond(&zones.entries_for(local, peer.ip()), packet, Transport::Udp) {
                    Reply::Answer(bytes) => {
                        let _ = socket.send_to(&bytes, peer).await;
                    }
                    Reply::Forward => {
                        let Ok(permit) = shared.forwards.clone().try_acquire_owned() else {
                            continue;
                        };
                        let packet = packet.to_vec();
                        let shared = shared.clone();
                        let replies = replies.clone();
                        tokio::spawn(async move {
                            let reply = forward(&shared, &packet, Transport::Udp).await;
                            drop(permit);
                            if let Some(reply) = reply {
                                let _ = replies.send((reply, peer)).await;
                            }
                        });
                    }
                    Reply::Drop => {}
                }
            }
            Some((reply, peer)) = to_send.recv() => {
                let _ = socket.send_to(&reply, peer).await;
            }
        }
    }
}

async fn serve_tcp(listener: TcpListener, local: IpAddr, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve_tcp_connection(stream, local, shared.clone()));
            }
            Err(e) => {
                // Out of fds, most likely: let connections finish.
                tracing::debug!(%local, error = %e, "dns tcp accept");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve_tcp_connection(mut stream: TcpStream, local: IpAddr, shared: Arc<Shared>) {
    loop {
        let packet = match tokio::time::timeout(TCP_IDLE, read_frame(&mut stream)).await {
            Ok(Ok(packet)) => packet,
            _ => return,
        };
        let zones = shared.zones();
        let client = stream
            .peer_addr()
            .map_or(IpAddr::from([0, 0, 0, 0]), |a| a.ip());
        let reply =
            match answer::respond(&zones.entries_for(local, client), &packet, Transport::Tcp) {
                Reply::Answer(bytes) => bytes,
                Reply::Forward => {
                    let permit = shared.forwards.clone().try_acquire_owned();
                    let reply = match permit {
                        Ok(_permit) => forward(&shared, &packet, Transport::Tcp).await,
                        Err(_) => answer::servfail(&packet),
                    };
                    match reply {
                        Some(reply) => reply,
                        None => return,
                    }
                }
                Reply::Drop => return,
            };
        if write_frame(&mut stream, &reply).await.is_err() {
            return;
        }
    }
}

/// RFC 1035 §4.2.2: each message is preceded by its length, two bytes.
async fn read_frame<S: AsyncRead + Unpin>(stream: &mut S) -> io::Result<Vec<u8>> {
    let len = stream.read_u16().await?;
    let mut packet = vec![0u8; usize::from(len)];
    stream.read_exact(&mut packet).await?;
    Ok(packet)
}

async fn write_frame<S: AsyncWrite + Unpin>(stream: &mut S, packet: &[u8]) -> io::Result<()> {
    let len = u16::try_from(packet.len()).map_err(io::Error::other)?;
    let mut framed = Vec::with_capacity(packet.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(packet);
    stream.write_all(&framed).await
}

/// The first upstream answer to `packet`, relayed as it came (it carries the
/// client's id); SERVFAIL when none answered in time. `None` only for a
/// packet that is not a query.
async fn forward(shared: &Shared, packet: &[u8], transport: Transport) -> Option<Vec<u8>> {
    for upstream in shared.upstreams() {
        let exchange = async {
            match transport {
                Transport::Udp => exchange_udp(upstream, packet).await,
                Transport::Tcp => exchange_tcp(upstream, packet).await,
            }
        };
        match tokio::time::timeout(UPSTREAM_TIMEOUT, exchange).await {
            Ok(Ok(reply)) => return Some(reply),
            Ok(Err(e)) => tracing::debug!(%upstream, error = %e, "dns upstream failed"),
            Err(_) => tracing::debug!(%upstream, "dns upstream timed out"),
        }
    }
    answer::servfail(packet)
}

async fn exchange_udp(upstream: SocketAddr, packet: &[u8]) -> io::Result<Vec<u8>> {
    let any = match upstream {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let socket = UdpSocket::bind(SocketAddr::new(any, 0)).await?;
    // Connected: only the upstream's datagrams arrive, and a dead one
    // reports ECONNREFUSED at once instead of a timeout.
    socket.connect(upstream).await?;
    socket.send(packet).await?;
    let mut buf = vec![0u8; 65535];
    loop {
        let len = socket.recv(&mut buf).await?;
        if is_reply_to(&buf[..len], packet) {
            buf.truncate(len);
            return Ok(buf);
        }
    }
}

async fn exchange_tcp(upstream: SocketAddr, packet: &[u8]) -> io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(upstream).await?;
    write_frame(&mut stream, packet).await?;
    loop {
        let reply = read_frame(&mut stream).await?;
        if is_reply_to(&reply, packet) {
            return Ok(reply);
        }
    }
}

/// A response (QR set) with the query's id.
fn is_reply_to(reply: &[u8], query: &[u8]) -> bool {
    reply.len() >= 12 && query.len() >= 2 && reply[..2] == query[..2] && reply[2] & 0x80 != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn network(name: &str, listen: &[&str], owners: &[&str]) -> DnsNetwork {
        DnsNetwork {
            name: name.into(),
            listen: listen.iter().map(|a| ip(a)).collect(),
            entries: owners
                .iter()
                .map(|o| DnsEntry {
                    owner: (*o).into(),
                    names: vec![(*o).into()],
                    addresses: vec![],
                })
                .collect(),
        }
    }

    #[test]
    fn zones_scope_entries_by_listen_address() {
        let zones = Zones::new(vec![
            network("a", &["10.1.0.1", "fd00:1::1"], &["x"]),
            network("b", &["10.2.0.1", "10.1.0.1"], &["y"]),
            network("empty", &["10.3.0.1"], &[]),
        ]);
        assert_eq!(zones.networks.len(), 2);
        let anyone = ip("192.0.2.9");
        assert_eq!(zones.entries_for(ip("10.1.0.1"), anyone)[0].owner, "x");
        assert_eq!(zones.entries_for(ip("fd00:1::1"), anyone)[0].owner, "x");
        assert_eq!(zones.entries_for(ip("10.2.0.1"), anyone)[0].owner, "y");
        assert!(zones.entries_for(ip("10.3.0.1"), anyone).is_empty());
        let mut listen: Vec<_> = zones.by_address.keys().copied().collect();
        listen.sort();
        assert_eq!(listen, [ip("10.1.0.1"), ip("10.2.0.1"), ip("fd00:1::1")]);
    }

    #[test]
    fn a_client_on_several_networks_sees_the_names_of_all_of_them() {
        let entry = |owner: &str, address: &str| DnsEntry {
            owner: owner.into(),
            names: vec![owner.into()],
            addresses: vec![ip(address)],
        };
        let net = |name: &str, listen: &str, entries: Vec<DnsEntry>| DnsNetwork {
            name: name.into(),
            listen: vec![ip(listen)],
            entries,
        };
        let zones = Zones::new(vec![
            net(
                "a",
                "10.1.0.1",
                vec![entry("srv", "10.1.0.2"), entry("cli", "10.1.0.3")],
            ),
            net(
                "b",
                "10.2.0.1",
                vec![entry("cli", "10.2.0.2"), entry("lone", "10.2.0.3")],
            ),
        ]);
        let owners = |local: &str, client: &str| -> Vec<String> {
            zones
                .entries_for(ip(local), ip(client))
                .iter()
                .map(|e| e.owner.clone())
                .collect()
        };
        // cli asks through b's gateway and also sees a's srv.
        assert_eq!(
            owners("10.2.0.1", "10.2.0.2"),
            ["cli", "lone", "srv", "cli"]
        );
        // lone is only on b.
        assert_eq!(owners("10.2.0.1", "10.2.0.3"), ["cli", "lone"]);
    }

    #[test]
    fn replies_must_match_the_query_id_and_be_responses() {
        let query = [0x12, 0x34, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        let mut reply = query;
        reply[2] |= 0x80;
        assert!(is_reply_to(&reply, &query));
        assert!(!is_reply_to(&query, &query));
        reply[1] = 0x35;
        assert!(!is_reply_to(&reply, &query));
        assert!(!is_reply_to(&reply[..11], &query));
    }

    #[test]
    fn frames_are_length_prefixed() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut out = Vec::new();
            write_frame(&mut out, b"abc").await.unwrap();
            assert_eq!(out, b"\x00\x03abc");
            let mut input: &[u8] = &out;
            assert_eq!(read_frame(&mut input).await.unwrap(), b"abc");
            let mut short: &[u8] = b"\x00\x05ab";
            assert!(read_frame(&mut short).await.is_err());
        });
    }
}
