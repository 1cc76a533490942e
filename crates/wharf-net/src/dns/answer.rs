//! What the server says to one query, as pure functions over a network's
//! entries: answer it from the records, say it does not exist, or forward it.
//!
//! Our names are the entries' names, alone or under [`DOMAIN`] (the search
//! domain the engine puts in containers' resolv.conf), matched
//! case-insensitively with or without the trailing dot. For them: `A` and
//! `AAAA` from the entries' addresses (a type with no address is NOERROR
//! with no answers, never NXDOMAIN, or resolvers would stop asking for the
//! other family), authoritative, with TTL [`TTL`]. A name under
//! [`DOMAIN`] that no entry has is NXDOMAIN; any other unknown name, single
//! label included, is forwarded (the upstream answers NXDOMAIN for what does
//! not exist). Reverse names (`in-addr.arpa`, `ip6.arpa`) of the network's
//! addresses get a `PTR` to the entry's first name under [`DOMAIN`], which
//! resolves forward again through this server; other reverse names are
//! forwarded.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::op::{Edns, Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use super::DnsEntry;

/// The search domain of containers on user networks: `web.dns.wharf` is
/// `web`.
pub(crate) const DOMAIN: &str = "dns.wharf";

/// Our answers are not to be cached: containers come and go.
pub(crate) const TTL: u32 = 0;

/// The largest answer sent over UDP; bigger ones set TC (RFC 1035 §4.2.1),
/// and the client asks again over TCP.
pub(crate) const UDP_LIMIT: usize = 512;

/// How a query arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    Udp,
    Tcp,
}

/// The decision for one name and type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// Ours: NOERROR, authoritative, with these answers (maybe none).
    Records(Vec<RData>),
    /// Under our domain but nobody's name: NXDOMAIN, authoritative.
    NxDomain,
    /// Not ours: ask the upstreams.
    Forward,
}

/// The decision for one packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    /// Send this message back.
    Answer(Vec<u8>),
    /// Forward the packet as it is to the upstreams.
    Forward,
    /// Malformed or not a query: say nothing.
    Drop,
}

/// The lookup of `name` (as asked, any case, with or without the trailing
/// dot) for `record_type` in `entries`.
pub(crate) fn lookup(entries: &[DnsEntry], name: &str, record_type: RecordType) -> Lookup {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if let Some(address) = parse_reverse(&name) {
        let Some(entry) = entries.iter().find(|e| e.addresses.contains(&address)) else {
            return Lookup::Forward;
        };
        if !matches!(record_type, RecordType::PTR | RecordType::ANY) {
            return Lookup::Records(Vec::new());
        }
        let target = entry
            .names
            .first()
            .and_then(|first| Name::from_ascii(format!("{first}.{DOMAIN}.")).ok());
        return Lookup::Records(target.map(|t| RData::PTR(PTR(t))).into_iter().collect());
    }
    let (short, in_domain) = match name.strip_suffix(DOMAIN) {
        Some("") => ("", true),
        Some(rest) => match rest.strip_suffix('.') {
            Some(short) => (short, true),
            None => (name.as_str(), false),
        },
        None => (name.as_str(), false),
    };
    let mut matched = entries
        .iter()
        .filter(|e| e.names.iter().any(|n| n.eq_ignore_ascii_case(short)))
        .peekable();
    if short.is_empty() || matched.peek().is_none() {
        return if in_domain {
            Lookup::NxDomain
        } else {
            Lookup::Forward
        };
    }
    let mut addresses: Vec<IpAddr> = Vec::new();
    for address in matched.flat_map(|e| e.addresses.iter().copied()) {
        if !addresses.contains(&address) {
            addresses.push(address);
        }
    }
    let records = addresses
        .into_iter()
        .filter_map(|address| match (address, record_type) {
            (IpAddr::V4(v4), RecordType::A | RecordType::ANY) => Some(RData::A(A(v4))),
            (IpAddr::V6(v6), RecordType::AAAA | RecordType::ANY) => Some(RData::AAAA(AAAA(v6))),
            _ => None,
        })
        .collect();
    Lookup::Records(records)
}

/// The address a full reverse name stands for (`4.3.2.10.in-addr.arpa` is
/// 10.2.3.4; `ip6.arpa` takes all 32 nibbles); partial names are not
/// addresses.
fn parse_reverse(name: &str) -> Option<IpAddr> {
    if let Some(rest) = name.strip_suffix(".in-addr.arpa") {
        let mut octets = [0u8; 4];
        let labels: Vec<&str> = rest.split('.').collect();
        if labels.len() != 4 {
            return None;
        }
        for (octet, label) in octets.iter_mut().rev().zip(labels) {
            if label.is_empty() || (label.len() > 1 && label.starts_with('0')) {
                return None;
            }
            *octet = label.parse().ok()?;
        }
        return Some(IpAddr::V4(Ipv4Addr::from(octets)));
    }
    let rest = name.strip_suffix(".ip6.arpa")?;
    let labels: Vec<&str> = rest.split('.').collect();
    if labels.len() != 32 {
        return None;
    }
    let mut value: u128 = 0;
    for label in labels.iter().rev() {
        let mut chars = label.chars();
        let (Some(c), None) = (chars.next(), chars.next()) else {
            return None;
        };
        value = (value << 4) | u128::from(c.to_digit(16)?);
    }
    Some(IpAddr::V6(Ipv6Addr::from(value)))
}

/// What to do with `packet`, received over `transport` on a listener of the
/// network whose entries are `entries`.
pub(crate) fn respond(entries: &[DnsEntry], packet: &[u8], transport: Transport) -> Reply {
    let Ok(request) = Message::from_vec(packet) else {
        return Reply::Drop;
    };
    if request.metadata.message_type != MessageType::Query {
        return Reply::Drop;
    }
    let mut response = response_to(&request);
    if request.metadata.op_code != OpCode::Query {
        response.metadata.response_code = ResponseCode::NotImp;
        return encode(response, transport);
    }
    let [query] = request.queries.as_slice() else {
        response.metadata.response_code = ResponseCode::FormErr;
        return encode(response, transport);
    };
    if query.query_class() != DNSClass::IN {
        return Reply::Forward;
    }
    match lookup(entries, &query.name().to_ascii(), query.query_type()) {
        Lookup::Forward => Reply::Forward,
        Lookup::NxDomain => {
            response.metadata.authoritative = true;
            response.metadata.response_code = ResponseCode::NXDomain;
            encode(response, transport)
        }
        Lookup::Records(data) => {
            response.metadata.authoritative = true;
            for rdata in data {
                response.add_answer(Record::from_rdata(query.name().clone(), TTL, rdata));
            }
            encode(response, transport)
        }
    }
}

/// A SERVFAIL answer to `packet` (when no upstream answered), or `None` for
/// a packet that is not a query.
pub(crate) fn servfail(packet: &[u8]) -> Option<Vec<u8>> {
    let request = Message::from_vec(packet).ok()?;
    if request.metadata.message_type != MessageType::Query {
        return None;
    }
    let mut response = response_to(&request);
    response.metadata.response_code = ResponseCode::ServFail;
    response.to_vec().ok()
}

/// An empty response echoing the request's id, flags and question, with an
/// OPT record when the request had one (RFC 6891 §6.1.1).
fn response_to(request: &Message) -> Message {
    let mut response = Message::new(request.metadata.id, MessageType::Response, OpCode::Query);
    response.metadata = Metadata::response_from_request(&request.metadata);
    response.metadata.recursion_available = true;
    response.add_queries(request.queries.iter().cloned());
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(UDP_LIMIT as u16);
        response.set_edns(edns);
    }
    response
}

fn encode(response: Message, transport: Transport) -> Reply {
    let Ok(bytes) = response.to_vec() else {
        return Reply::Drop;
    };
    if transport == Transport::Udp && bytes.len() > UDP_LIMIT {
        return match response.truncate().to_vec() {
            Ok(bytes) => Reply::Answer(bytes),
            Err(_) => Reply::Drop,
        };
    }
    Reply::Answer(bytes)
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::Query;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn entries() -> Vec<DnsEntry> {
        vec![
            DnsEntry {
                owner: "c1".into(),
                names: vec!["Web".into(), "frontend".into(), "4f2a9c".into()],
                addresses: vec![ip("10.88.0.2"), ip("fd00:88::2")],
            },
            DnsEntry {
                owner: "c2".into(),
                names: vec!["db".into()],
                addresses: vec![ip("fd00:88::3")],
            },
            DnsEntry {
                owner: "c3".into(),
                names: vec!["frontend".into()],
                addresses: vec![ip("10.88.0.4")],
            },
        ]
    }

    fn a(s: &str) -> RData {
        match ip(s) {
            IpAddr::V4(v4) => RData::A(A(v4)),
            IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
        }
    }

    #[test]
    fn names_match_any_case_dot_and_search_domain() {
        let e = entries();
        for name in [
            "web",
            "WEB.",
            "web.dns.wharf",
            "Web.DNS.Wharf.",
            "4f2a9c",
            "4F2A9C.dns.wharf.",
        ] {
            assert_eq!(
                lookup(&e, name, RecordType::A),
                Lookup::Records(vec![a("10.88.0.2")]),
                "{name}"
            );
        }
        assert_eq!(
            lookup(&e, "web", RecordType::AAAA),
            Lookup::Records(vec![a("fd00:88::2")])
        );
        assert_eq!(
            lookup(&e, "web", RecordType::ANY),
            Lookup::Records(vec![a("10.88.0.2"), a("fd00:88::2")])
        );
        // An alias shared by two containers gives both addresses.
        assert_eq!(
            lookup(&e, "frontend", RecordType::A),
            Lookup::Records(vec![a("10.88.0.2"), a("10.88.0.4")])
        );
    }

    #[test]
    fn missing_family_is_nodata_not_nxdomain() {
        let e = entries();
        assert_eq!(lookup(&e, "db", RecordType::A), Lookup::Records(vec![]));
        assert_eq!(lookup(&e, "db", RecordType::MX), Lookup::Records(vec![]));
        assert_eq!(
            lookup(&e, "db.dns.wharf.", RecordType::AAAA),
            Lookup::Records(vec![a("fd00:88::3")])
        );
    }

    #[test]
    fn unknown_names_forward_unless_under_our_domain() {
        let e = entries();
        for name in ["example.com.", "nobody", "web.example.com", "webdns.wharf"] {
            assert_eq!(lookup(&e, name, RecordType::A), Lookup::Forward, "{name}");
        }
        for name in ["nobody.dns.wharf.", "dns.wharf", "x.web.dns.wharf"] {
            assert_eq!(lookup(&e, name, RecordType::A), Lookup::NxDomain, "{name}");
        }
        assert_eq!(lookup(&[], "web", RecordType::A), Lookup::Forward);
    }

    #[test]
    fn reverse_names_of_our_addresses_point_to_the_first_name() {
        let e = entries();
        let web = RData::PTR(PTR(Name::from_ascii("Web.dns.wharf.").unwrap()));
        assert_eq!(
            lookup(&e, "2.0.88.10.in-addr.arpa.", RecordType::PTR),
            Lookup::Records(vec![web.clone()])
        );
        let v6: Name = ip("fd00:88::2").into();
        assert_eq!(
            lookup(&e, &v6.to_ascii().to_uppercase(), RecordType::PTR),
            Lookup::Records(vec![web])
        );
        assert_eq!(
            lookup(&e, "2.0.88.10.in-addr.arpa", RecordType::A),
            Lookup::Records(vec![])
        );
        for name in [
            "9.0.88.10.in-addr.arpa.",
            "0.88.10.in-addr.arpa.",
            "02.0.88.10.in-addr.arpa.",
            "1.1.ip6.arpa.",
        ] {
            assert_eq!(lookup(&e, name, RecordType::PTR), Lookup::Forward, "{name}");
        }
        assert_eq!(parse_reverse("4.3.2.10.in-addr.arpa"), Some(ip("10.2.3.4")));
    }

    fn query(name: &str, record_type: RecordType) -> Message {
        let mut m = Message::new(0x4242, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), record_type));
        m
    }

    fn answer(entries: &[DnsEntry], request: &Message, transport: Transport) -> Message {
        match respond(entries, &request.to_vec().unwrap(), transport) {
            Reply::Answer(bytes) => Message::from_vec(&bytes).unwrap(),
            other => panic!("expected an answer, got {other:?}"),
        }
    }

    #[test]
    fn answers_carry_id_question_and_authority() {
        let e = entries();
        let m = answer(&e, &query("WEB.dns.wharf.", RecordType::A), Transport::Udp);
        assert_eq!(m.metadata.id, 0x4242);
        assert_eq!(m.metadata.message_type, MessageType::Response);
        assert!(m.metadata.authoritative && m.metadata.recursion_desired);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(m.queries.len(), 1);
        assert_eq!(m.answers.len(), 1);
        assert_eq!(m.answers[0].name.to_ascii(), "WEB.dns.wharf.");
        assert_eq!(m.answers[0].ttl, TTL);
        assert_eq!(m.answers[0].data, a("10.88.0.2"));

        let m = answer(&e, &query("gone.dns.wharf.", RecordType::A), Transport::Udp);
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert!(m.metadata.authoritative);
        let m = answer(&e, &query("db.", RecordType::A), Transport::Udp);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty());

        let unknown = query("example.com.", RecordType::A).to_vec().unwrap();
        assert_eq!(respond(&e, &unknown, Transport::Udp), Reply::Forward);
    }

    #[test]
    fn malformed_and_odd_packets() {
        let e = entries();
        assert_eq!(respond(&e, b"", Transport::Udp), Reply::Drop);
        assert_eq!(respond(&e, &[0xff; 11], Transport::Udp), Reply::Drop);
        let mut cut = query("web.", RecordType::A).to_vec().unwrap();
        cut.truncate(cut.len() - 3);
        assert_eq!(respond(&e, &cut, Transport::Tcp), Reply::Drop);
        assert_eq!(servfail(&cut), None);
        // Responses are never answered (no loops between servers).
        let mut response = query("web.", RecordType::A);
        response.metadata.message_type = MessageType::Response;
        assert_eq!(
            respond(&e, &response.to_vec().unwrap(), Transport::Udp),
            Reply::Drop
        );
        let mut two = query("web.", RecordType::A);
        two.add_query(Query::query(
            Name::from_ascii("db.").unwrap(),
            RecordType::A,
        ));
        let m = answer(&e, &two, Transport::Udp);
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
        let mut notify = query("web.", RecordType::A);
        notify.metadata.op_code = OpCode::Notify;
        let m = answer(&e, &notify, Transport::Udp);
        assert_eq!(m.metadata.response_code, ResponseCode::NotImp);
    }

    #[test]
    fn big_udp_answers_are_truncated_tcp_ones_are_not() {
        let many = vec![DnsEntry {
            owner: "c".into(),
            names: vec!["many".into()],
            addresses: (1..=60u8).map(|i| IpAddr::from([10, 0, 0, i])).collect(),
        }];
        let q = query("many.", RecordType::A);
        let udp = answer(&many, &q, Transport::Udp);
        assert!(udp.metadata.truncation);
        assert!(udp.answers.is_empty());
        assert_eq!(udp.queries.len(), 1);
        let tcp = answer(&many, &q, Transport::Tcp);
        assert!(!tcp.metadata.truncation);
        assert_eq!(tcp.answers.len(), 60);
    }

    #[test]
    fn servfail_echoes_the_question() {
        let q = query("example.com.", RecordType::AAAA);
        let m = Message::from_vec(&servfail(&q.to_vec().unwrap()).unwrap()).unwrap();
        assert_eq!(m.metadata.id, 0x4242);
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
        assert_eq!(m.queries, q.queries);
    }

    #[test]
    fn edns_queries_get_an_opt_record() {
        let mut q = query("web.", RecordType::A);
        q.set_edns(Edns::new());
        let m = answer(&entries(), &q, Transport::Udp);
        assert_eq!(m.edns.map(|e| e.max_payload()), Some(512));
    }
}
