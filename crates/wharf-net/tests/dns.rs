//! The DNS server against the real kernel: real UDP and TCP queries to its
//! listeners, per-network scoping, forwarding to a fake upstream, SERVFAIL,
//! its exit after the last record, and the spawn decision of `add`.
//!
//! Each test runs in a child forked into a fresh network namespace that acts
//! as the host: the listen addresses and the fake upstreams live on its `lo`,
//! port 53 is free there, and everything dies with the child whatever
//! happens. The server runs on a thread of the child and each test waits for
//! it to exit by itself; fake upstreams are threads stopped and joined at the
//! end.

// The workspace lints want tests inside a `#[cfg(test)]` module, even here.
#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};
    use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{mpsc, Arc};
    use std::thread::JoinHandle;
    use std::time::{Duration, Instant};

    use anyhow::{bail, ensure, Context as _};
    use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
    use hickory_proto::rr::rdata::{A, AAAA, PTR};
    use hickory_proto::rr::{Name, RData, Record, RecordType};
    use nix::sched::CloneFlags;
    use wharf_net::{dns, DnsEntry, DnsRecords, Netlink};
    use wharf_testkit::{in_child_unshare, require, TestEnv};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn entry(owner: &str, names: &[&str], addresses: &[&str]) -> DnsEntry {
        DnsEntry {
            owner: owner.into(),
            names: names.iter().map(|n| (*n).to_owned()).collect(),
            addresses: addresses.iter().map(|a| ip(a)).collect(),
        }
    }

    /// Brings `lo` up and gives it `addresses` (the gateways and upstreams
    /// of the test).
    fn set_up_lo(addresses: &[&str]) -> anyhow::Result<()> {
        let netlink = Netlink::open()?;
        let lo = netlink.link_index("lo")?.context("no lo")?;
        netlink.set_up(lo, "lo")?;
        for address in addresses {
            let ip = ip(address);
            let prefix = if ip.is_ipv4() { 32 } else { 128 };
            netlink.add_address(lo, ipnet::IpNet::new(ip, prefix)?)?;
        }
        Ok(())
    }

    /// The server on a thread; `wait` joins it.
    struct Server {
        thread: JoinHandle<()>,
        done: mpsc::Receiver<Result<(), wharf_net::NetError>>,
    }

    impl Server {
        fn start(dir: &Path, upstream: &[SocketAddr]) -> Server {
            let (tx, done) = mpsc::channel();
            let (dir, upstream) = (dir.to_owned(), upstream.to_vec());
            let thread = std::thread::spawn(move || {
                let _ = tx.send(dns::serve(&dir, &upstream));
            });
            Server { thread, done }
        }

        /// Waits for the server to return by itself.
        fn wait(self, limit: Duration) -> anyhow::Result<()> {
            let result = self
                .done
                .recv_timeout(limit)
                .context("server did not exit by itself")?;
            self.thread.join().ok().context("server thread panicked")?;
            Ok(result?)
        }
    }

    fn query(id: u16, name: &str, record_type: RecordType) -> Vec<u8> {
        let mut m = Message::new(id, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), record_type));
        m.to_vec().unwrap()
    }

    /// One UDP exchange with `server:53`, waiting at most `limit`.
    fn udp(server: IpAddr, packet: &[u8], limit: Duration) -> anyhow::Result<Message> {
        let any: IpAddr = if server.is_ipv4() {
            ip("0.0.0.0")
        } else {
            ip("::")
        };
        let socket = UdpSocket::bind((any, 0))?;
        socket.set_read_timeout(Some(limit))?;
        socket.send_to(packet, (server, 53))?;
        let mut buf = [0u8; 65535];
        let len = socket
            .recv(&mut buf)
            .with_context(|| format!("no udp answer from {server}"))?;
        Ok(Message::from_vec(&buf[..len])?)
    }

    /// A UDP query, repeated until the listener is up (the server opens it
    /// within a tick of the record file appearing).
    fn udp_query(server: IpAddr, name: &str, record_type: RecordType) -> anyhow::Result<Message> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match udp(
                server,
                &query(0x5151, name, record_type),
                Duration::from_millis(300),
            ) {
                Ok(m) => {
                    ensure!(m.metadata.id == 0x5151, "wrong id {}", m.metadata.id);
                    return Ok(m);
                }
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    fn tcp_query(server: IpAddr, name: &str, record_type: RecordType) -> anyhow::Result<Message> {
        let mut stream =
            TcpStream::connect_timeout(&SocketAddr::new(server, 53), Duration::from_secs(2))
                .with_context(|| format!("connect to {server}:53"))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        // Two queries on one connection.
        let mut answers = Vec::new();
        for id in [0x7001, 0x7002] {
            let packet = query(id, name, record_type);
            let mut framed = (packet.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(&packet);
            stream.write_all(&framed)?;
            let mut len = [0u8; 2];
            stream.read_exact(&mut len)?;
            let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
            stream.read_exact(&mut buf)?;
            let m = Message::from_vec(&buf)?;
            ensure!(m.metadata.id == id, "wrong id {}", m.metadata.id);
            answers.push(m);
        }
        ensure!(answers[0].answers == answers[1].answers, "answers differ");
        Ok(answers.remove(1))
    }

    fn data(m: &Message) -> Vec<RData> {
        m.answers.iter().map(|r| r.data.clone()).collect()
    }

    fn a(s: &str) -> RData {
        match ip(s) {
            IpAddr::V4(v4) => RData::A(A(v4)),
            IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
        }
    }

    /// A fake upstream on `address:53`, UDP and TCP: `example.test` is
    /// 192.0.2.7, anything else NXDOMAIN. Stopped and joined on drop.
    struct Upstream {
        stop: Arc<AtomicBool>,
        threads: Vec<JoinHandle<()>>,
    }

    fn upstream_answer(packet: &[u8]) -> Option<Vec<u8>> {
        let request = Message::from_vec(packet).ok()?;
        let query = request.queries.first()?.clone();
        let mut response = Message::new(request.metadata.id, MessageType::Response, OpCode::Query);
        response.metadata.recursion_available = true;
        response.add_query(query.clone());
        if query
            .name()
            .to_ascii()
            .eq_ignore_ascii_case("example.test.")
        {
            response.add_answer(Record::from_rdata(
                query.name().clone(),
                60,
                RData::A(A("192.0.2.7".parse().unwrap())),
            ));
        } else {
            response.metadata.response_code = ResponseCode::NXDomain;
        }
        response.to_vec().ok()
    }

    impl Upstream {
        fn start(address: IpAddr) -> anyhow::Result<Upstream> {
            let stop = Arc::new(AtomicBool::new(false));
            let udp = UdpSocket::bind((address, 53))?;
            udp.set_read_timeout(Some(Duration::from_millis(50)))?;
            let tcp = TcpListener::bind((address, 53))?;
            tcp.set_nonblocking(true)?;
            let stop_udp = stop.clone();
            let udp_thread = std::thread::spawn(move || {
                let mut buf = [0u8; 65535];
                while !stop_udp.load(Ordering::Relaxed) {
                    if let Ok((len, peer)) = udp.recv_from(&mut buf) {
                        if let Some(reply) = upstream_answer(&buf[..len]) {
                            let _ = udp.send_to(&reply, peer);
                        }
                    }
                }
            });
            let stop_tcp = stop.clone();
            let tcp_thread = std::thread::spawn(move || {
                while !stop_tcp.load(Ordering::Relaxed) {
                    let Ok((mut stream, _)) = tcp.accept() else {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    };
                    let _ = stream.set_nonblocking(false);
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                    let mut len = [0u8; 2];
                    while stream.read_exact(&mut len).is_ok() {
                        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
                        if stream.read_exact(&mut buf).is_err() {
                            break;
                        }
                        let Some(reply) = upstream_answer(&buf) else {
                            break;
                        };
                        let mut framed = (reply.len() as u16).to_be_bytes().to_vec();
                        framed.extend_from_slice(&reply);
                        if stream.write_all(&framed).is_err() {
                            break;
                        }
                    }
                }
            });
            Ok(Upstream {
                stop,
                threads: vec![udp_thread, tcp_thread],
            })
        }
    }

    impl Drop for Upstream {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            for thread in self.threads.drain(..) {
                let _ = thread.join();
            }
        }
    }

    fn dns_dir(env: &TestEnv) -> PathBuf {
        env.root().join("networks").join("dns")
    }

    #[test]
    fn answers_names_of_its_network_over_udp_and_tcp() {
        require!(Root);
        let env = TestEnv::new();
        let dir = dns_dir(&env);
        in_child_unshare(CloneFlags::CLONE_NEWNET, || {
            set_up_lo(&["10.53.1.1", "fd53:1::1"])?;
            let records = DnsRecords::new(&dir);
            let listen = [ip("10.53.1.1"), ip("fd53:1::1")];
            let spawn = records.add(
                "front",
                &listen,
                &entry("c1", &["web", "www", "4f2a9c"], &["10.53.1.2", "fd53:1::2"]),
            )?;
            ensure!(spawn, "no server runs yet");
            records.add("front", &listen, &entry("c2", &["db"], &["fd53:1::3"]))?;
            let many: Vec<String> = (1..=60).map(|i| format!("10.53.3.{i}")).collect();
            let many: Vec<&str> = many.iter().map(String::as_str).collect();
            records.add("front", &listen, &entry("c3", &["many"], &many))?;
            let server = Server::start(&dir, &[]);
            let v4 = ip("10.53.1.1");

            let m = udp_query(v4, "web.", RecordType::A)?;
            ensure!(m.metadata.response_code == ResponseCode::NoError, "{m:?}");
            ensure!(m.metadata.authoritative, "not authoritative: {m:?}");
            ensure!(data(&m) == [a("10.53.1.2")], "{m:?}");
            let m = udp_query(v4, "WWW.Dns.Wharf.", RecordType::A)?;
            ensure!(data(&m) == [a("10.53.1.2")], "{m:?}");
            ensure!(m.answers[0].name.to_ascii() == "WWW.Dns.Wharf.", "{m:?}");
            let m = udp_query(ip("fd53:1::1"), "4f2a9c", RecordType::AAAA)?;
            ensure!(data(&m) == [a("fd53:1::2")], "{m:?}");
            // Only IPv6: no error, no answer.
            let m = udp_query(v4, "db.", RecordType::A)?;
            ensure!(m.metadata.response_code == ResponseCode::NoError, "{m:?}");
            ensure!(m.answers.is_empty(), "{m:?}");
            let m = udp_query(v4, "db.dns.wharf.", RecordType::AAAA)?;
            ensure!(data(&m) == [a("fd53:1::3")], "{m:?}");
            let m = udp_query(v4, "nobody.dns.wharf.", RecordType::A)?;
            ensure!(m.metadata.response_code == ResponseCode::NXDomain, "{m:?}");

            let web = RData::PTR(PTR(Name::from_ascii("web.dns.wharf.")?));
            let m = udp_query(v4, "2.1.53.10.in-addr.arpa.", RecordType::PTR)?;
            ensure!(data(&m) == [web.clone()], "{m:?}");
            let reverse = Name::from(ip("fd53:1::2")).to_ascii();
            let m = udp_query(v4, &reverse, RecordType::PTR)?;
            ensure!(data(&m) == [web], "{m:?}");

            // Garbage is dropped and the server keeps answering.
            let socket = UdpSocket::bind("0.0.0.0:0")?;
            socket.send_to(b"\x01\x02garbage", (v4, 53))?;
            socket.send_to(&[0u8; 3], (v4, 53))?;
            let m = udp_query(v4, "web", RecordType::A)?;
            ensure!(data(&m) == [a("10.53.1.2")], "{m:?}");

            let m = tcp_query(v4, "web.", RecordType::A)?;
            ensure!(data(&m) == [a("10.53.1.2")], "{m:?}");
            ensure!(m.metadata.authoritative, "{m:?}");
            let m = tcp_query(ip("fd53:1::1"), "web.", RecordType::AAAA)?;
            ensure!(data(&m) == [a("fd53:1::2")], "{m:?}");

            // 60 addresses do not fit in 512 bytes: TC over UDP, all over TCP.
            let m = udp_query(v4, "many.", RecordType::A)?;
            ensure!(m.metadata.truncation && m.answers.is_empty(), "{m:?}");
            let m = tcp_query(v4, "many.", RecordType::A)?;
            ensure!(!m.metadata.truncation && m.answers.len() == 60, "{m:?}");

            for owner in ["c1", "c2", "c3"] {
                ensure!(records.remove("front", owner)?, "{owner} missing");
            }
            server.wait(Duration::from_secs(5))?;
            ensure!(!records.server_running()?, "server lock still held");
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn queries_see_only_their_own_network() {
        require!(Root);
        let env = TestEnv::new();
        let dir = dns_dir(&env);
        in_child_unshare(CloneFlags::CLONE_NEWNET, || {
            // b's gateway is not configured yet.
            set_up_lo(&["10.53.1.1", "10.53.9.1"])?;
            let _upstream = Upstream::start(ip("10.53.9.1"))?;
            let records = DnsRecords::new(&dir);
            let (gw_a, gw_b) = (ip("10.53.1.1"), ip("10.53.2.1"));
            records.add("a", &[gw_a], &entry("c1", &["web"], &["10.53.1.2"]))?;
            let server = Server::start(&dir, &["10.53.9.1:53".parse()?]);

            let m = udp_query(gw_a, "web.", RecordType::A)?;
            ensure!(data(&m) == [a("10.53.1.2")], "{m:?}");
            // Network b appears while the server runs: its listener opens,
            // even before the bridge has the gateway address (IP_FREEBIND).
            records.add("b", &[gw_b], &entry("c2", &["api"], &["10.53.2.2"]))?;
            let deadline = Instant::now() + Duration::from_secs(3);
            // 10.53.2.1:53 as /proc/net/udp writes it (host byte order).
            while !fs_err::read_to_string("/proc/net/udp")?.contains("0102350A:0035") {
                ensure!(Instant::now() < deadline, "no listener on b's gateway");
                std::thread::sleep(Duration::from_millis(50));
            }
            set_up_lo(&["10.53.2.1"])?;
            let m = udp_query(gw_b, "api.", RecordType::A)?;
            ensure!(data(&m) == [a("10.53.2.2")], "{m:?}");
            // a's name is not b's: forwarded, and the upstream knows nothing.
            let m = udp_query(gw_b, "web.", RecordType::A)?;
            ensure!(m.metadata.response_code == ResponseCode::NXDomain, "{m:?}");
            ensure!(!m.metadata.authoritative, "answered locally: {m:?}");
            let m = udp_query(gw_a, "api.dns.wharf.", RecordType::A)?;
            ensure!(m.metadata.response_code == ResponseCode::NXDomain, "{m:?}");
            let m = udp_query(gw_b, "2.1.53.10.in-addr.arpa.", RecordType::PTR)?;
            ensure!(m.answers.is_empty(), "{m:?}");
            let m = tcp_query(gw_b, "web.", RecordType::A)?;
            ensure!(m.metadata.response_code == ResponseCode::NXDomain, "{m:?}");

            // b goes away: its address is free again soon.
            records.remove_network("b")?;
            let deadline = Instant::now() + Duration::from_secs(3);
            loop {
                match UdpSocket::bind((gw_b, 53)) {
                    Ok(_) => break,
                    Err(e) if Instant::now() > deadline => bail!("b's listener stayed: {e}"),
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
            let m = udp_query(gw_a, "web", RecordType::A)?;
            ensure!(data(&m) == [a("10.53.1.2")], "{m:?}");

            records.remove_network("a")?;
            server.wait(Duration::from_secs(5))?;
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn other_names_are_forwarded_over_udp_and_tcp() {
        require!(Root);
        let env = TestEnv::new();
        let dir = dns_dir(&env);
        in_child_unshare(CloneFlags::CLONE_NEWNET, || {
            set_up_lo(&["10.53.1.1", "10.53.9.1", "10.53.9.2"])?;
            let _upstream = Upstream::start(ip("10.53.9.1"))?;
            let records = DnsRecords::new(&dir);
            let gw = ip("10.53.1.1");
            records.add("a", &[gw], &entry("c1", &["web"], &["10.53.1.2"]))?;
            // The first upstream is dead (nothing on its port): the next one
            // answers.
            let server = Server::start(&dir, &["10.53.9.2:53".parse()?, "10.53.9.1:53".parse()?]);

            let m = udp_query(gw, "example.test.", RecordType::A)?;
            ensure!(m.metadata.response_code == ResponseCode::NoError, "{m:?}");
            ensure!(data(&m) == [a("192.0.2.7")], "{m:?}");
            ensure!(m.answers[0].ttl == 60, "{m:?}");
            let m = udp_query(gw, "elsewhere", RecordType::A)?;
            ensure!(m.metadata.response_code == ResponseCode::NXDomain, "{m:?}");
            let m = tcp_query(gw, "EXAMPLE.test.", RecordType::A)?;
            ensure!(data(&m) == [a("192.0.2.7")], "{m:?}");

            records.remove("a", "c1")?;
            server.wait(Duration::from_secs(5))?;
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn dead_or_slow_upstreams_give_servfail_without_blocking_local_answers() {
        require!(Root);
        let env = TestEnv::new();
        let dir = dns_dir(&env);
        in_child_unshare(CloneFlags::CLONE_NEWNET, || {
            set_up_lo(&["10.53.1.1", "10.53.9.2", "10.53.9.3"])?;
            // Reads queries and never answers.
            let silent = UdpSocket::bind("10.53.9.3:53")?;
            let records = DnsRecords::new(&dir);
            let gw = ip("10.53.1.1");
            records.add("a", &[gw], &entry("c1", &["web"], &["10.53.1.2"]))?;
            let server = Server::start(&dir, &["10.53.9.3:53".parse()?, "10.53.9.2:53".parse()?]);
            udp_query(gw, "web", RecordType::A)?;

            let slow = UdpSocket::bind("0.0.0.0:0")?;
            slow.set_read_timeout(Some(Duration::from_secs(6)))?;
            let started = Instant::now();
            slow.send_to(&query(0x0a0a, "example.test.", RecordType::A), (gw, 53))?;
            // The forward waits on the silent upstream; local names do not.
            let local_started = Instant::now();
            let m = udp(
                gw,
                &query(0x0b0b, "web.", RecordType::A),
                Duration::from_secs(1),
            )?;
            ensure!(data(&m) == [a("10.53.1.2")], "{m:?}");
            ensure!(
                local_started.elapsed() < Duration::from_millis(500),
                "local answer took {:?}",
                local_started.elapsed()
            );
            let mut buf = [0u8; 512];
            let len = slow.recv(&mut buf).context("no answer to the forward")?;
            let m = Message::from_vec(&buf[..len])?;
            ensure!(m.metadata.id == 0x0a0a, "{m:?}");
            ensure!(m.metadata.response_code == ResponseCode::ServFail, "{m:?}");
            ensure!(
                started.elapsed() >= Duration::from_millis(1900),
                "the silent upstream was not waited for: {:?}",
                started.elapsed()
            );
            let mut seen = [0u8; 512];
            ensure!(silent.recv(&mut seen)? > 12, "silent upstream got nothing");

            records.remove("a", "c1")?;
            server.wait(Duration::from_secs(5))?;
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn no_upstream_is_servfail() {
        require!(Root);
        let env = TestEnv::new();
        let dir = dns_dir(&env);
        in_child_unshare(CloneFlags::CLONE_NEWNET, || {
            set_up_lo(&["10.53.1.1"])?;
            let records = DnsRecords::new(&dir);
            let gw = ip("10.53.1.1");
            records.add("a", &[gw], &entry("c1", &["web"], &["10.53.1.2"]))?;
            let server = Server::start(&dir, &[]);
            let m = udp_query(gw, "example.test.", RecordType::A)?;
            ensure!(m.metadata.response_code == ResponseCode::ServFail, "{m:?}");
            let m = tcp_query(gw, "example.test.", RecordType::A)?;
            ensure!(m.metadata.response_code == ResponseCode::ServFail, "{m:?}");
            records.remove_network("a")?;
            server.wait(Duration::from_secs(5))?;
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn add_says_spawn_exactly_when_no_server_runs_and_server_exits_when_empty() {
        require!(Root);
        let env = TestEnv::new();
        let dir = dns_dir(&env);
        in_child_unshare(CloneFlags::CLONE_NEWNET, || {
            set_up_lo(&["10.53.1.1", "10.53.2.1"])?;
            let records = DnsRecords::new(&dir);
            let (gw_a, gw_b) = (ip("10.53.1.1"), ip("10.53.2.1"));
            ensure!(!records.server_running()?, "server before any");
            ensure!(
                records.add("a", &[gw_a], &entry("c1", &["web"], &["10.53.1.2"]))?,
                "first add must spawn"
            );
            let server = Server::start(&dir, &[]);
            let deadline = Instant::now() + Duration::from_secs(5);
            while !records.server_running()? {
                ensure!(Instant::now() < deadline, "server never took its lock");
                std::thread::sleep(Duration::from_millis(20));
            }
            // A second server gives way at once.
            Server::start(&dir, &[]).wait(Duration::from_secs(2))?;
            ensure!(
                !records.add("b", &[gw_b], &entry("c2", &["api"], &["10.53.2.2"]))?,
                "add with a server running must not spawn"
            );
            ensure!(
                !records.add("a", &[gw_a], &entry("c3", &["db"], &["10.53.1.3"]))?,
                "add with a server running must not spawn"
            );
            let m = udp_query(gw_b, "api", RecordType::A)?;
            ensure!(data(&m) == [a("10.53.2.2")], "{m:?}");

            // Records left: the server stays.
            records.remove("a", "c1")?;
            records.remove_network("b")?;
            std::thread::sleep(Duration::from_millis(1200));
            ensure!(records.server_running()?, "server left with records");
            let m = udp_query(gw_a, "db", RecordType::A)?;
            ensure!(data(&m) == [a("10.53.1.3")], "{m:?}");

            records.remove("a", "c3")?;
            let exited = Instant::now();
            server.wait(Duration::from_secs(5))?;
            ensure!(
                exited.elapsed() < Duration::from_secs(2),
                "exit took {:?}",
                exited.elapsed()
            );
            ensure!(!records.server_running()?, "server lock still held");
            ensure!(records.list()?.is_empty(), "records left");

            // The next add must spawn again, and the new server can bind.
            ensure!(
                records.add("a", &[gw_a], &entry("c4", &["web"], &["10.53.1.4"]))?,
                "add after the exit must spawn"
            );
            let server = Server::start(&dir, &[]);
            let m = udp_query(gw_a, "web", RecordType::A)?;
            ensure!(data(&m) == [a("10.53.1.4")], "{m:?}");
            records.remove("a", "c4")?;
            server.wait(Duration::from_secs(5))?;
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn a_server_with_nothing_to_serve_exits_at_once() {
        require!(Root);
        let env = TestEnv::new();
        let dir = dns_dir(&env);
        in_child_unshare(CloneFlags::CLONE_NEWNET, || {
            Server::start(&dir, &[]).wait(Duration::from_secs(2))?;
            let records = DnsRecords::new(&dir);
            ensure!(!records.server_running()?, "server lock still held");
            Ok(())
        })
        .unwrap();
    }
}
