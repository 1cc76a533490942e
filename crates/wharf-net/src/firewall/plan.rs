//! The plan: validated rules turned into nft JSON commands, without running
//! anything. The layout is described in the module above.
//!
//! Commands are the `nftables` crate's typed objects, except the declaration
//! of verdict maps: its `SetType` has no `verdict` (nftables 0.6.3), so
//! [`Command::AddVerdictMap`] renders that one object itself.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use nftables::expr::{
    Expression, Fib, FibFlag, FibResult, Meta, MetaKey, NamedExpression, Payload, PayloadField,
    Prefix, Verdict, CT,
};
use nftables::schema::{
    Chain, Element, FlushObject, NfCmd, NfListObject, Rule, Set, SetType, SetTypeValue, Table,
};
use nftables::stmt::{JumpTarget, Match, NATFamily, Operator, Statement, VerdictMap, NAT};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use super::{NetworkRules, PortMapping, PortRules, Protocol};
use crate::error::NetError;

/// The table holding everything Wharf installs (family `inet`).
pub(crate) const TABLE: &str = "wharf";
/// Set of every Wharf bridge (`ifname`).
pub(crate) const BRIDGES: &str = "bridges";
/// Verdict map: input bridge → `jump n-<id12>-from` (forward hook).
pub(crate) const FORWARD_FROM: &str = "forward-from";
/// Verdict map: output bridge → `jump n-<id12>-to` (forward hook, internal networks).
pub(crate) const FORWARD_TO: &str = "forward-to";
/// Verdict map: input bridge → `jump n-<id12>-nat` (postrouting).
pub(crate) const NAT_FROM: &str = "nat-from";
/// Verdict map: output bridge → `jump n-<id12>-hairpin` (postrouting). By
/// output, because bridged packets (`br_netfilter`) reach postrouting with
/// no input interface.
pub(crate) const NAT_TO: &str = "nat-to";
/// Verdict map: input bridge → `jump n-<id12>-raw` (prerouting, raw).
pub(crate) const RAW_FROM: &str = "raw-from";
/// Verdict map: `l4proto . dport` → `goto c-<owner12>`, for every local address.
pub(crate) const PORTS_ANY: &str = "ports-any";
/// Verdict map: `l4proto . ip daddr . dport` → `goto c-<owner12>`.
pub(crate) const PORTS_IP: &str = "ports-ip";
/// Verdict map: `l4proto . ip6 daddr . dport` → `goto c-<owner12>`.
pub(crate) const PORTS_IP6: &str = "ports-ip6";
/// Regular chain looking packets up in the port maps.
const PUBLISHED: &str = "published";

/// The bridge-keyed verdict maps.
pub(crate) const BRIDGE_MAPS: [&str; 5] = [FORWARD_FROM, FORWARD_TO, NAT_FROM, NAT_TO, RAW_FROM];

/// Suffixes of a network's chains, `n-<id12>-<suffix>`, in the order of
/// [`BRIDGE_MAPS`].
const NETWORK_CHAINS: [&str; 5] = ["from", "to", "nat", "hairpin", "raw"];

/// One command of a transaction.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Command {
    /// A command the `nftables` crate models.
    Nft(NfCmd<'static>),
    /// `add map inet wharf <name> { type <key> : verdict; }`.
    AddVerdictMap {
        name: &'static str,
        key: &'static [&'static str],
    },
    /// `add rule inet wharf <chain> <statements> notrack`: the crate
    /// renders its `notrack` statement as a bare string, which nft 1.0
    /// refuses (it wants `{"notrack": null}`).
    AddNotrackRule {
        chain: String,
        statements: Vec<Statement<'static>>,
    },
}

/// Renders a transaction as nft's JSON input (`{"nftables": [...]}`).
pub(crate) fn render(commands: &[Command]) -> String {
    let objects: Vec<serde_json::Value> = commands
        .iter()
        .map(|command| match command {
            Command::Nft(cmd) => {
                serde_json::to_value(cmd).expect("nftables schema types serialize to JSON")
            }
            Command::AddNotrackRule { chain, statements } => {
                let mut expr: Vec<serde_json::Value> = statements
                    .iter()
                    .map(|st| {
                        serde_json::to_value(st).expect("nftables schema types serialize to JSON")
                    })
                    .collect();
                expr.push(serde_json::json!({"notrack": null}));
                serde_json::json!({
                    "add": { "rule": {
                        "family": "inet",
                        "table": TABLE,
                        "chain": chain,
                        "expr": expr,
                    }}
                })
            }
            Command::AddVerdictMap { name, key } => {
                // One type is a plain string; a JSON array is a concatenation.
                let key = match key {
                    [single] => serde_json::json!(single),
                    several => serde_json::json!(several),
                };
                serde_json::json!({
                    "add": { "map": {
                        "family": "inet",
                        "table": TABLE,
                        "name": name,
                        "type": key,
                        "map": "verdict",
                    }}
                })
            }
        })
        .collect();
    serde_json::json!({ "nftables": objects }).to_string()
}

/// The first 12 characters of a lowercase hex id.
fn short_id<'a>(what: &'static str, id: &'a str) -> Result<&'a str, NetError> {
    let invalid = |reason| NetError::InvalidFirewallRules {
        what,
        value: id.to_owned(),
        reason,
    };
    if id.is_empty() {
        return Err(invalid("empty"));
    }
    if !id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(invalid("not lowercase hexadecimal"));
    }
    Ok(&id[..id.len().min(12)])
}

/// A kernel interface name: 1 to 15 bytes, no `/`, whitespace, quotes or
/// control characters, not `.` or `..`.
fn check_bridge(bridge: &str) -> Result<&str, NetError> {
    let invalid = |reason| NetError::InvalidFirewallRules {
        what: "bridge name",
        value: bridge.to_owned(),
        reason,
    };
    if bridge.is_empty() || bridge.len() > 15 {
        return Err(invalid("must be 1 to 15 bytes"));
    }
    if bridge == "." || bridge == ".." {
        return Err(invalid("not an interface name"));
    }
    if bridge.bytes().any(|b| {
        b == b'/'
            || b == b'"'
            || b == b'\''
            || b == b'\\'
            || b.is_ascii_whitespace()
            || b.is_ascii_control()
            || !b.is_ascii()
    }) {
        return Err(invalid(
            "only printable ASCII without '/', quotes or spaces",
        ));
    }
    Ok(bridge)
}

/// A network's rules, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Network<'a> {
    pub(crate) id12: &'a str,
    pub(crate) bridge: &'a str,
    pub(crate) subnets: &'a [IpNet],
    pub(crate) gateways: &'a [IpAddr],
    pub(crate) internal: bool,
}

impl<'a> Network<'a> {
    pub(crate) fn check(net: &'a NetworkRules) -> Result<Network<'a>, NetError> {
        Ok(Network {
            id12: short_id("network id", &net.id)?,
            bridge: check_bridge(&net.bridge)?,
            subnets: &net.subnets,
            gateways: &net.gateways,
            internal: net.internal,
        })
    }
}

/// Where a published port is looked up: the element key in one of the port
/// maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum PortKey {
    /// Every local address (`ports-any`).
    Any(Protocol, u16),
    /// One IPv4 address (`ports-ip`).
    V4(Protocol, Ipv4Addr, u16),
    /// One IPv6 address (`ports-ip6`).
    V6(Protocol, Ipv6Addr, u16),
}

impl PortKey {
    pub(crate) fn map(self) -> &'static str {
        match self {
            PortKey::Any(..) => PORTS_ANY,
            PortKey::V4(..) => PORTS_IP,
            PortKey::V6(..) => PORTS_IP6,
        }
    }

    fn expr(self) -> Expression<'static> {
        let items = match self {
            PortKey::Any(protocol, port) => vec![text(protocol.as_str()), number(port)],
            PortKey::V4(protocol, ip, port) => {
                vec![text(protocol.as_str()), text(ip.to_string()), number(port)]
            }
            PortKey::V6(protocol, ip, port) => {
                vec![text(protocol.as_str()), text(ip.to_string()), number(port)]
            }
        };
        Expression::Named(NamedExpression::Concat(items))
    }
}

/// One DNAT rule of an owner: a mapping, for one address family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Dnat {
    pub(crate) mapping: PortMapping,
    pub(crate) key: PortKey,
    /// The container's address of that family.
    pub(crate) target: IpAddr,
}

/// An owner's published ports, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Owner<'a> {
    pub(crate) id12: &'a str,
    pub(crate) dnats: Vec<Dnat>,
}

impl<'a> Owner<'a> {
    /// Only the owner id, for removal (which must work whatever the list).
    pub(crate) fn check_owner(p: &'a PortRules) -> Result<&'a str, NetError> {
        short_id("owner id", &p.owner)
    }

    pub(crate) fn check(p: &'a PortRules) -> Result<Owner<'a>, NetError> {
        let id12 = Self::check_owner(p)?;
        check_bridge(&p.bridge)?;
        for address in [p.ipv4.map(IpAddr::V4), p.ipv6.map(IpAddr::V6)]
            .into_iter()
            .flatten()
        {
            if !p.subnets.is_empty() && !p.subnets.iter().any(|s| s.contains(&address)) {
                return Err(NetError::InvalidFirewallRules {
                    what: "container address",
                    value: address.to_string(),
                    reason: "outside the network's subnets",
                });
            }
        }
        let mut dnats = Vec::new();
        for mapping in &p.ports {
            let invalid = |reason| NetError::InvalidPortMapping {
                mapping: mapping.to_string(),
                reason,
            };
            if mapping.host_port == 0 || mapping.container_port == 0 {
                return Err(invalid("port 0 (the caller picks a free port)"));
            }
            let (protocol, port) = (mapping.protocol, mapping.host_port);
            let (v4, v6) = (p.ipv4.map(IpAddr::V4), p.ipv6.map(IpAddr::V6));
            let targets: Vec<(PortKey, IpAddr)> = match mapping.host_ip {
                None => {
                    let any = PortKey::Any(protocol, port);
                    let targets: Vec<_> =
                        [v4, v6].into_iter().flatten().map(|t| (any, t)).collect();
                    if targets.is_empty() {
                        return Err(invalid("the container has no address"));
                    }
                    targets
                }
                Some(IpAddr::V4(host)) => {
                    let target = v4.ok_or_else(|| invalid("the container has no IPv4 address"))?;
                    let key = if host.is_unspecified() {
                        PortKey::Any(protocol, port)
                    } else {
                        PortKey::V4(protocol, host, port)
                    };
                    vec![(key, target)]
                }
                Some(IpAddr::V6(host)) => {
                    let target = v6.ok_or_else(|| invalid("the container has no IPv6 address"))?;
                    let key = if host.is_unspecified() {
                        PortKey::Any(protocol, port)
                    } else {
                        PortKey::V6(protocol, host, port)
                    };
                    vec![(key, target)]
                }
            };
            dnats.extend(targets.into_iter().map(|(key, target)| Dnat {
                mapping: *mapping,
                key,
                target,
            }));
        }
        Ok(Owner { id12, dnats })
    }

    /// The port map keys, each once, in order.
    pub(crate) fn keys(&self) -> Vec<PortKey> {
        let mut seen = HashSet::new();
        self.dnats
            .iter()
            .map(|d| d.key)
            .filter(|key| seen.insert(*key))
            .collect()
    }

    /// Whether a port is reachable at `127.0.0.1`, so that the bridge must
    /// route packets from `127.0.0.0/8`.
    pub(crate) fn needs_route_localnet(&self) -> bool {
        self.dnats.iter().any(|d| {
            d.target.is_ipv4()
                && match d.key {
                    PortKey::Any(..) => true,
                    PortKey::V4(_, host, _) => host.is_loopback(),
                    PortKey::V6(..) => false,
                }
        })
    }
}

/// `c-<owner12>`.
pub(crate) fn owner_chain(id12: &str) -> String {
    format!("c-{id12}")
}

/// The owner of a chain named `c-<owner12>`.
pub(crate) fn owner_of_chain(chain: &str) -> Option<&str> {
    chain.strip_prefix("c-")
}

/// `n-<id12>-<suffix>`.
fn network_chain(id12: &str, suffix: &str) -> String {
    format!("n-{id12}-{suffix}")
}

/// The network of a chain named `n-<id12>-{from,to,nat}`.
pub(crate) fn network_of_chain(chain: &str) -> Option<&str> {
    let (id12, suffix) = chain.strip_prefix("n-")?.rsplit_once('-')?;
    NETWORK_CHAINS.contains(&suffix).then_some(id12)
}

/// An element of a bridge-keyed verdict map: `bridge : jump chain`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct BridgeElement {
    pub(crate) map: &'static str,
    pub(crate) bridge: String,
    pub(crate) chain: String,
}

/// The bridge elements a network installs.
pub(crate) fn network_elements(net: &Network<'_>) -> Vec<BridgeElement> {
    let element = |map, suffix| BridgeElement {
        map,
        bridge: net.bridge.to_owned(),
        chain: network_chain(net.id12, suffix),
    };
    let mut elements = vec![element(FORWARD_FROM, "from"), element(RAW_FROM, "raw")];
    if net.internal {
        elements.push(element(FORWARD_TO, "to"));
    } else {
        elements.push(element(NAT_FROM, "nat"));
        elements.push(element(NAT_TO, "hairpin"));
    }
    elements
}

// --- expression and statement helpers ---------------------------------------

fn text(s: impl Into<String>) -> Expression<'static> {
    Expression::String(s.into().into())
}

fn number(n: u16) -> Expression<'static> {
    Expression::Number(u32::from(n))
}

fn payload(protocol: &'static str, field: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: protocol.into(),
            field: field.into(),
        },
    )))
}

fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

fn ct(key: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::CT(CT {
        key: key.into(),
        family: None,
        dir: None,
    }))
}

fn prefix(net: IpNet) -> Expression<'static> {
    Expression::Named(NamedExpression::Prefix(Prefix {
        addr: Box::new(text(net.network().to_string())),
        len: u32::from(net.prefix_len()),
    }))
}

fn matches(
    left: Expression<'static>,
    op: Operator,
    right: Expression<'static>,
) -> Statement<'static> {
    Statement::Match(Match { left, right, op })
}

fn eq(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    matches(left, Operator::EQ, right)
}

/// `fib daddr type local`.
fn daddr_is_local() -> Statement<'static> {
    eq(
        Expression::Named(NamedExpression::Fib(Fib {
            result: FibResult::Type,
            flags: HashSet::from([FibFlag::Daddr]),
        })),
        text("local"),
    )
}

/// `fib daddr type != local`.
fn daddr_is_not_local() -> Statement<'static> {
    matches(
        Expression::Named(NamedExpression::Fib(Fib {
            result: FibResult::Type,
            flags: HashSet::from([FibFlag::Daddr]),
        })),
        Operator::NEQ,
        text("local"),
    )
}

/// `meta nfproto ipv4|ipv6`.
fn nfproto(v6: bool) -> Statement<'static> {
    eq(
        meta(MetaKey::Nfproto),
        text(if v6 { "ipv6" } else { "ipv4" }),
    )
}

fn vmap(key: Vec<Expression<'static>>, map: &str) -> Statement<'static> {
    let key = if key.len() == 1 {
        key.into_iter().next().expect("one key expression")
    } else {
        Expression::Named(NamedExpression::Concat(key))
    };
    Statement::VerdictMap(VerdictMap {
        key,
        data: text(format!("@{map}")),
    })
}

fn masquerade() -> Statement<'static> {
    Statement::Masquerade(None)
}

fn accept() -> Statement<'static> {
    Statement::Accept(None)
}

fn drop() -> Statement<'static> {
    Statement::Drop(None)
}

// --- object helpers -----------------------------------------------------------

fn table() -> Table<'static> {
    Table {
        family: NfFamily::INet,
        name: TABLE.into(),
        handle: None,
    }
}

fn chain(name: impl Into<String>) -> Chain<'static> {
    Chain {
        family: NfFamily::INet,
        table: TABLE.into(),
        name: name.into().into(),
        ..Chain::default()
    }
}

fn base_chain(name: &'static str, kind: NfChainType, hook: NfHook, prio: i32) -> Chain<'static> {
    Chain {
        _type: Some(kind),
        hook: Some(hook),
        prio: Some(prio),
        policy: Some(NfChainPolicy::Accept),
        ..chain(name)
    }
}

fn add(object: NfListObject<'static>) -> Command {
    Command::Nft(NfCmd::Add(object))
}

fn delete(object: NfListObject<'static>) -> Command {
    Command::Nft(NfCmd::Delete(object))
}

fn flush_chain(name: impl Into<String>) -> Command {
    Command::Nft(NfCmd::Flush(FlushObject::Chain(chain(name))))
}

fn add_rule(chain: impl Into<String>, statements: Vec<Statement<'static>>) -> Command {
    add(NfListObject::Rule(Rule {
        family: NfFamily::INet,
        table: TABLE.into(),
        chain: chain.into().into(),
        expr: statements.into(),
        handle: None,
        index: None,
        comment: None,
    }))
}

fn element(map: &str, item: Expression<'static>) -> NfListObject<'static> {
    NfListObject::Element(Element {
        family: NfFamily::INet,
        table: TABLE.into(),
        name: map.to_owned().into(),
        elem: vec![item].into(),
    })
}

/// `key : jump|goto chain`.
fn mapping(key: Expression<'static>, verdict: Verdict<'static>) -> Expression<'static> {
    Expression::List(vec![key, Expression::Verdict(verdict)])
}

fn jump(chain: &str) -> Verdict<'static> {
    Verdict::Jump(JumpTarget {
        target: chain.to_owned().into(),
    })
}

fn goto(chain: &str) -> Verdict<'static> {
    Verdict::Goto(JumpTarget {
        target: chain.to_owned().into(),
    })
}

// --- plans ----------------------------------------------------------------------

/// The table, its sets and maps, and the base chains with exactly their
/// rules (flushed and re-added, so a repeated call leaves one copy).
pub(crate) fn skeleton() -> Vec<Command> {
    let mut c = vec![
        add(NfListObject::Table(table())),
        add(NfListObject::Set(Box::new(Set {
            family: NfFamily::INet,
            table: TABLE.into(),
            name: BRIDGES.into(),
            set_type: SetTypeValue::Single(SetType::Ifname),
            ..Set::default()
        }))),
    ];
    for map in BRIDGE_MAPS {
        c.push(Command::AddVerdictMap {
            name: map,
            key: &["ifname"],
        });
    }
    c.push(Command::AddVerdictMap {
        name: PORTS_ANY,
        key: &["inet_proto", "inet_service"],
    });
    c.push(Command::AddVerdictMap {
        name: PORTS_IP,
        key: &["inet_proto", "ipv4_addr", "inet_service"],
    });
    c.push(Command::AddVerdictMap {
        name: PORTS_IP6,
        key: &["inet_proto", "ipv6_addr", "inet_service"],
    });

    // Published ports: a specific address first, then every local address.
    c.push(add(NfListObject::Chain(chain(PUBLISHED))));
    c.push(flush_chain(PUBLISHED));
    let l4proto = || meta(MetaKey::L4proto);
    let dport = || payload("th", "dport");
    c.push(add_rule(
        PUBLISHED,
        vec![vmap(
            vec![l4proto(), payload("ip", "daddr"), dport()],
            PORTS_IP,
        )],
    ));
    c.push(add_rule(
        PUBLISHED,
        vec![vmap(
            vec![l4proto(), payload("ip6", "daddr"), dport()],
            PORTS_IP6,
        )],
    ));
    c.push(add_rule(
        PUBLISHED,
        vec![daddr_is_local(), vmap(vec![l4proto(), dport()], PORTS_ANY)],
    ));

    // DNAT for traffic arriving (other hosts, containers: hairpin) and for
    // the host's own traffic, 127.0.0.1 included.
    for (name, hook) in [
        ("prerouting", NfHook::Prerouting),
        ("output", NfHook::Output),
    ] {
        c.push(add(NfListObject::Chain(base_chain(
            name,
            NfChainType::NAT,
            hook,
            -100,
        ))));
        c.push(flush_chain(name));
        c.push(add_rule(
            name,
            vec![Statement::Jump(JumpTarget {
                target: PUBLISHED.into(),
            })],
        ));
    }

    // Traffic between two containers of one network needs no connection
    // tracking (no NAT, accepted whole): with br_netfilter on, every
    // bridged frame would otherwise pay a conntrack lookup.
    c.push(add(NfListObject::Chain(base_chain(
        "raw-prerouting",
        NfChainType::Filter,
        NfHook::Prerouting,
        -300,
    ))));
    c.push(flush_chain("raw-prerouting"));
    c.push(add_rule(
        "raw-prerouting",
        vec![vmap(vec![meta(MetaKey::Iifname)], RAW_FROM)],
    ));

    c.push(add(NfListObject::Chain(base_chain(
        "postrouting",
        NfChainType::NAT,
        NfHook::Postrouting,
        100,
    ))));
    c.push(flush_chain("postrouting"));
    // 127.0.0.1:<port> DNAT'd into a bridge: the container cannot answer
    // 127.0.0.1, so the source becomes the bridge's address.
    c.push(add_rule(
        "postrouting",
        vec![
            eq(meta(MetaKey::Oifname), text(format!("@{BRIDGES}"))),
            eq(
                payload("ip", "saddr"),
                prefix("127.0.0.0/8".parse().expect("constant prefix")),
            ),
            masquerade(),
        ],
    ));
    c.push(add_rule(
        "postrouting",
        vec![vmap(vec![meta(MetaKey::Iifname)], NAT_FROM)],
    ));
    c.push(add_rule(
        "postrouting",
        vec![vmap(vec![meta(MetaKey::Oifname)], NAT_TO)],
    ));

    c.push(add(NfListObject::Chain(base_chain(
        "forward",
        NfChainType::Filter,
        NfHook::Forward,
        0,
    ))));
    c.push(flush_chain("forward"));
    c.push(add_rule(
        "forward",
        vec![
            matches(
                ct("state"),
                Operator::IN,
                Expression::List(vec![text("established"), text("related")]),
            ),
            accept(),
        ],
    ));
    // Drops first (internal networks, isolation), accepts after: an accept
    // ends this chain.
    c.push(add_rule(
        "forward",
        vec![vmap(vec![meta(MetaKey::Oifname)], FORWARD_TO)],
    ));
    c.push(add_rule(
        "forward",
        vec![vmap(vec![meta(MetaKey::Iifname)], FORWARD_FROM)],
    ));
    c.push(add_rule(
        "forward",
        vec![
            eq(meta(MetaKey::Oifname), text(format!("@{BRIDGES}"))),
            matches(ct("status"), Operator::IN, text("dnat")),
            accept(),
        ],
    ));
    c
}

/// The chains and elements of one network, after the skeleton.
fn network(c: &mut Vec<Command>, net: &Network<'_>) {
    let bridge = || text(net.bridge);
    // Container to container within a subnet: untracked. Not when the
    // destination is the host (the gateway): replies to masqueraded
    // hairpin traffic go there and must meet their connection.
    let raw = network_chain(net.id12, "raw");
    c.push(add(NfListObject::Chain(chain(raw.clone()))));
    c.push(flush_chain(raw.clone()));
    for subnet in net.subnets {
        let family = if subnet.addr().is_ipv4() { "ip" } else { "ip6" };
        let mut statements = vec![
            eq(payload(family, "saddr"), prefix(*subnet)),
            eq(payload(family, "daddr"), prefix(*subnet)),
        ];
        let gateways: Vec<IpAddr> = net
            .gateways
            .iter()
            .copied()
            .filter(|g| subnet.contains(g))
            .collect();
        match gateways.as_slice() {
            // A compare instead of a route lookup per packet.
            [gateway] => statements.push(matches(
                payload(family, "daddr"),
                Operator::NEQ,
                text(gateway.to_string()),
            )),
            _ => statements.push(daddr_is_not_local()),
        }
        c.push(Command::AddNotrackRule {
            chain: raw.clone(),
            statements,
        });
    }
    let from = network_chain(net.id12, "from");
    c.push(add(NfListObject::Chain(chain(from.clone()))));
    c.push(flush_chain(from.clone()));
    if net.internal {
        c.push(add_rule(
            from.clone(),
            vec![
                matches(meta(MetaKey::Oifname), Operator::NEQ, bridge()),
                drop(),
            ],
        ));
        let to = network_chain(net.id12, "to");
        c.push(add(NfListObject::Chain(chain(to.clone()))));
        c.push(flush_chain(to.clone()));
        c.push(add_rule(
            to,
            vec![
                matches(meta(MetaKey::Iifname), Operator::NEQ, bridge()),
                drop(),
            ],
        ));
    } else {
        c.push(add_rule(
            from.clone(),
            vec![eq(meta(MetaKey::Oifname), bridge()), accept()],
        ));
        c.push(add_rule(
            from.clone(),
            vec![matches(ct("status"), Operator::IN, text("dnat")), accept()],
        ));
        c.push(add_rule(
            from,
            vec![
                eq(meta(MetaKey::Oifname), text(format!("@{BRIDGES}"))),
                drop(),
            ],
        ));
        let nat = network_chain(net.id12, "nat");
        c.push(add(NfListObject::Chain(chain(nat.clone()))));
        c.push(flush_chain(nat.clone()));
        // Hairpin: a container reaching a published port of its own bridge
        // (its own included) through a host address; without the
        // masquerade the answer would go straight back over the bridge (or
        // stay inside the container), bypassing the DNAT's reversal.
        // Matched on the way into the bridge, from its own subnets only:
        // clients from elsewhere keep their address.
        let hairpin = network_chain(net.id12, "hairpin");
        c.push(add(NfListObject::Chain(chain(hairpin.clone()))));
        c.push(flush_chain(hairpin.clone()));
        for subnet in net.subnets {
            let family = if subnet.addr().is_ipv4() { "ip" } else { "ip6" };
            c.push(add_rule(
                hairpin.clone(),
                vec![
                    eq(payload(family, "saddr"), prefix(*subnet)),
                    matches(ct("status"), Operator::IN, text("dnat")),
                    masquerade(),
                ],
            ));
        }
        for subnet in net.subnets {
            let family = if subnet.addr().is_ipv4() { "ip" } else { "ip6" };
            c.push(add_rule(
                nat.clone(),
                vec![
                    eq(payload(family, "saddr"), prefix(*subnet)),
                    matches(payload(family, "daddr"), Operator::NEQ, prefix(*subnet)),
                    masquerade(),
                ],
            ));
        }
    }
    c.push(add(element(BRIDGES, bridge())));
    for e in network_elements(net) {
        c.push(add(element(e.map, mapping(text(e.bridge), jump(&e.chain)))));
    }
}

/// The chain and elements of one owner, after the skeleton. With
/// `replace`, an existing chain is flushed and refilled; without, the chain
/// is created and the transaction fails if it exists.
fn ports(c: &mut Vec<Command>, owner: &Owner<'_>, replace: bool) {
    let name = owner_chain(owner.id12);
    if replace {
        c.push(add(NfListObject::Chain(chain(name.clone()))));
        c.push(flush_chain(name.clone()));
    } else {
        c.push(Command::Nft(NfCmd::Create(NfListObject::Chain(chain(
            name.clone(),
        )))));
    }
    for d in &owner.dnats {
        let v6 = d.target.is_ipv6();
        let mut rule = match d.key {
            PortKey::Any(..) => vec![nfproto(v6), daddr_is_local()],
            PortKey::V4(_, host, _) => vec![eq(payload("ip", "daddr"), text(host.to_string()))],
            PortKey::V6(_, host, _) => vec![eq(payload("ip6", "daddr"), text(host.to_string()))],
        };
        rule.push(eq(
            payload(d.mapping.protocol.as_str(), "dport"),
            number(d.mapping.host_port),
        ));
        rule.push(Statement::DNAT(Some(NAT {
            addr: Some(text(d.target.to_string())),
            family: Some(if v6 { NATFamily::IP6 } else { NATFamily::IP }),
            port: Some(number(d.mapping.container_port)),
            flags: None,
        })));
        c.push(add_rule(name.clone(), rule));
    }
    for key in owner.keys() {
        c.push(add(element(key.map(), mapping(key.expr(), goto(&name)))));
    }
}

/// [`Firewall::ensure_network`](super::Firewall::ensure_network).
pub(crate) fn ensure_network(net: &Network<'_>) -> Vec<Command> {
    let mut c = skeleton();
    network(&mut c, net);
    c
}

/// Removes a network's three chains, `elements` (each added first with the
/// same data, then deleted: a no-op when absent, a failure when another
/// network holds the key) and `bridges` from the `bridges` set.
pub(crate) fn remove_network(
    id12: &str,
    elements: &[BridgeElement],
    bridges: &[&str],
) -> Vec<Command> {
    let mut c = Vec::new();
    for suffix in NETWORK_CHAINS {
        c.push(add(NfListObject::Chain(chain(network_chain(id12, suffix)))));
    }
    for e in elements {
        let item = || mapping(text(e.bridge.clone()), jump(&e.chain));
        c.push(add(element(e.map, item())));
        c.push(delete(element(e.map, text(e.bridge.clone()))));
    }
    for bridge in bridges {
        c.push(add(element(BRIDGES, text(*bridge))));
        c.push(delete(element(BRIDGES, text(*bridge))));
    }
    for suffix in NETWORK_CHAINS {
        let name = network_chain(id12, suffix);
        c.push(flush_chain(name.clone()));
        c.push(delete(NfListObject::Chain(chain(name))));
    }
    c
}

/// [`Firewall::add_ports`](super::Firewall::add_ports).
///
/// The fast path, for a container start: it only creates (a new chain, new
/// rules, new elements), which commits without waiting. Anything that
/// flushes, updates or deletes (the skeleton's base chains included) makes
/// the kernel wait for an RCU grace period when nft closes its netlink
/// socket (about 12 ms with `HZ=250`). It fails when the skeleton is
/// missing, when the owner's chain exists, or on a conflict; then
/// [`replace_ports`] runs.
pub(crate) fn add_ports(owner: &Owner<'_>) -> Vec<Command> {
    let mut c = Vec::new();
    ports(&mut c, owner, false);
    c
}

/// The slow path of [`add_ports`]: the skeleton, then the owner's chain
/// flushed and refilled.
pub(crate) fn replace_ports(owner: &Owner<'_>) -> Vec<Command> {
    let mut c = skeleton();
    ports(&mut c, owner, true);
    c
}

/// Removes an owner's chain and its elements under `keys` (each added
/// first with the same data, then deleted).
pub(crate) fn remove_ports(id12: &str, keys: &[PortKey]) -> Vec<Command> {
    let name = owner_chain(id12);
    let mut c = vec![add(NfListObject::Chain(chain(name.clone())))];
    for key in keys {
        c.push(add(element(key.map(), mapping(key.expr(), goto(&name)))));
        c.push(delete(element(key.map(), key.expr())));
    }
    c.push(flush_chain(name.clone()));
    c.push(delete(NfListObject::Chain(chain(name))));
    c
}

/// Deletes the table if present.
pub(crate) fn remove_all() -> Vec<Command> {
    vec![
        add(NfListObject::Table(table())),
        delete(NfListObject::Table(table())),
    ]
}

/// The whole table from scratch: the old one is deleted in the same
/// transaction.
pub(crate) fn reload(networks: &[Network<'_>], owners: &[Owner<'_>]) -> Vec<Command> {
    let mut c = remove_all();
    c.extend(skeleton());
    for net in networks {
        network(&mut c, net);
    }
    for owner in owners {
        ports(&mut c, owner, true);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(internal: bool) -> NetworkRules {
        NetworkRules {
            id: "0123456789abcdef0123".into(),
            bridge: "wharf0".into(),
            subnets: vec![
                "10.88.0.0/16".parse().unwrap(),
                "fd00:88::/64".parse().unwrap(),
            ],
            gateways: Vec::new(),
            internal,
        }
    }

    fn port(
        host_ip: Option<&str>,
        host_port: u16,
        container_port: u16,
        protocol: Protocol,
    ) -> PortMapping {
        PortMapping {
            host_ip: host_ip.map(|ip| ip.parse().unwrap()),
            host_port,
            container_port,
            protocol,
        }
    }

    fn rules(ports: Vec<PortMapping>) -> PortRules {
        PortRules {
            owner: "c0ffee0123456789".into(),
            bridge: "wharf0".into(),
            subnets: net(false).subnets,
            internal: false,
            ipv4: Some("10.88.0.2".parse().unwrap()),
            ipv6: Some("fd00:88::2".parse().unwrap()),
            ports,
        }
    }

    /// The JSON objects of a plan, one per command, for exact comparisons.
    fn objects(commands: &[Command]) -> Vec<serde_json::Value> {
        let rendered: serde_json::Value = serde_json::from_str(&render(commands)).unwrap();
        rendered["nftables"].as_array().unwrap().clone()
    }

    fn contains(commands: &[Command], expected: serde_json::Value) {
        let objects = objects(commands);
        assert!(
            objects.contains(&expected),
            "{expected} not in\n{}",
            objects
                .iter()
                .map(|o| o.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    fn rule(chain: &str, expr: serde_json::Value) -> serde_json::Value {
        serde_json::json!({"add": {"rule": {
            "family": "inet", "table": "wharf", "chain": chain, "expr": expr
        }}})
    }

    #[test]
    fn skeleton_declares_table_maps_and_base_chains() {
        let c = skeleton();
        contains(
            &c,
            serde_json::json!({"add": {"table": {"family": "inet", "name": "wharf"}}}),
        );
        contains(
            &c,
            serde_json::json!({"add": {"set": {
                "family": "inet", "table": "wharf", "name": "bridges", "type": "ifname"
            }}}),
        );
        contains(
            &c,
            serde_json::json!({"add": {"map": {
                "family": "inet", "table": "wharf", "name": "ports-ip",
                "type": ["inet_proto", "ipv4_addr", "inet_service"], "map": "verdict"
            }}}),
        );
        contains(
            &c,
            serde_json::json!({"add": {"map": {
                "family": "inet", "table": "wharf", "name": "forward-from",
                "type": "ifname", "map": "verdict"
            }}}),
        );
        contains(
            &c,
            serde_json::json!({"add": {"chain": {
                "family": "inet", "table": "wharf", "name": "prerouting",
                "type": "nat", "hook": "prerouting", "prio": -100, "policy": "accept"
            }}}),
        );
        contains(
            &c,
            serde_json::json!({"add": {"chain": {
                "family": "inet", "table": "wharf", "name": "forward",
                "type": "filter", "hook": "forward", "prio": 0, "policy": "accept"
            }}}),
        );
        contains(
            &c,
            rule(
                "output",
                serde_json::json!([{"jump": {"target": "published"}}]),
            ),
        );
        // fib daddr type local meta l4proto . th dport vmap @ports-any
        contains(
            &c,
            rule(
                "published",
                serde_json::json!([
                    {"match": {"op": "==", "left": {"fib": {"result": "type", "flags": ["daddr"]}}, "right": "local"}},
                    {"vmap": {"key": {"concat": [
                        {"meta": {"key": "l4proto"}},
                        {"payload": {"protocol": "th", "field": "dport"}}
                    ]}, "data": "@ports-any"}}
                ]),
            ),
        );
        // ct state established,related accept
        contains(
            &c,
            rule(
                "forward",
                serde_json::json!([
                    {"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["established", "related"]}},
                    {"accept": null}
                ]),
            ),
        );
        // oifname @bridges ct status dnat accept
        contains(
            &c,
            rule(
                "forward",
                serde_json::json!([
                    {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "@bridges"}},
                    {"match": {"op": "in", "left": {"ct": {"key": "status"}}, "right": "dnat"}},
                    {"accept": null}
                ]),
            ),
        );
        // oifname @bridges ip saddr 127.0.0.0/8 masquerade
        contains(
            &c,
            rule(
                "postrouting",
                serde_json::json!([
                    {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "@bridges"}},
                    {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}},
                               "right": {"prefix": {"addr": "127.0.0.0", "len": 8}}}},
                    {"masquerade": null}
                ]),
            ),
        );
        // Every base chain is flushed before its rules are added again.
        let objects = objects(&c);
        for name in [
            "prerouting",
            "output",
            "postrouting",
            "forward",
            "published",
        ] {
            let flush = serde_json::json!({"flush": {"chain": {"family": "inet", "table": "wharf", "name": name}}});
            let flushed = objects.iter().position(|o| *o == flush).unwrap();
            let first_rule = objects
                .iter()
                .position(|o| o["add"]["rule"]["chain"] == name)
                .unwrap();
            assert!(flushed < first_rule, "{name}");
        }
    }

    #[test]
    fn traffic_within_a_subnet_is_untracked_except_to_the_host() {
        let rules = net(false);
        let c = ensure_network(&Network::check(&rules).unwrap());
        let rendered: serde_json::Value = serde_json::from_str(&render(&c)).unwrap();
        let objects = rendered["nftables"].as_array().unwrap();
        let want = serde_json::json!({"add": {"rule": {"family": "inet", "table": "wharf",
        "chain": "n-0123456789ab-raw", "expr": [
            {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}},
                       "right": {"prefix": {"addr": "10.88.0.0", "len": 16}}}},
            {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                       "right": {"prefix": {"addr": "10.88.0.0", "len": 16}}}},
            {"match": {"op": "!=", "left": {"fib": {"result": "type", "flags": ["daddr"]}},
                       "right": "local"}},
            {"notrack": null}
        ]}}});
        assert!(objects.contains(&want), "{rendered:#}");
        let dispatch = serde_json::json!({"add": {"element": {"family": "inet", "table": "wharf",
            "name": "raw-from", "elem": [["wharf0", {"jump": {"target": "n-0123456789ab-raw"}}]]}}});
        assert!(objects.contains(&dispatch), "{rendered:#}");
    }

    #[test]
    fn with_known_gateways_the_untracked_rule_compares_instead_of_routing() {
        let mut rules = net(false);
        rules.gateways = vec!["10.88.0.1".parse().unwrap(), "fd00:88::1".parse().unwrap()];
        let c = ensure_network(&Network::check(&rules).unwrap());
        let rendered: serde_json::Value = serde_json::from_str(&render(&c)).unwrap();
        let objects = rendered["nftables"].as_array().unwrap();
        let want = serde_json::json!({"add": {"rule": {"family": "inet", "table": "wharf",
        "chain": "n-0123456789ab-raw", "expr": [
            {"match": {"op": "==", "left": {"payload": {"protocol": "ip6", "field": "saddr"}},
                       "right": {"prefix": {"addr": "fd00:88::", "len": 64}}}},
            {"match": {"op": "==", "left": {"payload": {"protocol": "ip6", "field": "daddr"}},
                       "right": {"prefix": {"addr": "fd00:88::", "len": 64}}}},
            {"match": {"op": "!=", "left": {"payload": {"protocol": "ip6", "field": "daddr"}},
                       "right": "fd00:88::1"}},
            {"notrack": null}
        ]}}});
        assert!(objects.contains(&want), "{rendered:#}");
        let raw_rules: Vec<&serde_json::Value> = objects
            .iter()
            .filter(|o| o["add"]["rule"]["chain"] == "n-0123456789ab-raw")
            .collect();
        assert_eq!(raw_rules.len(), 2, "{rendered:#}");
        for rule in raw_rules {
            assert!(
                !rule.to_string().contains("\"fib\""),
                "a route lookup: {rule}"
            );
        }
    }

    #[test]
    fn network_masquerades_outbound_and_hairpin_and_isolates() {
        let rules = net(false);
        let c = ensure_network(&Network::check(&rules).unwrap());
        // ip saddr 10.88.0.0/16 ip daddr != 10.88.0.0/16 masquerade
        contains(
            &c,
            rule(
                "n-0123456789ab-nat",
                serde_json::json!([
                    {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}},
                               "right": {"prefix": {"addr": "10.88.0.0", "len": 16}}}},
                    {"match": {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "daddr"}},
                               "right": {"prefix": {"addr": "10.88.0.0", "len": 16}}}},
                    {"masquerade": null}
                ]),
            ),
        );
        contains(
            &c,
            rule(
                "n-0123456789ab-nat",
                serde_json::json!([
                    {"match": {"op": "==", "left": {"payload": {"protocol": "ip6", "field": "saddr"}},
                               "right": {"prefix": {"addr": "fd00:88::", "len": 64}}}},
                    {"match": {"op": "!=", "left": {"payload": {"protocol": "ip6", "field": "daddr"}},
                               "right": {"prefix": {"addr": "fd00:88::", "len": 64}}}},
                    {"masquerade": null}
                ]),
            ),
        );
        // ip saddr 10.88.0.0/16 ct status dnat masquerade
        contains(
            &c,
            rule(
                "n-0123456789ab-hairpin",
                serde_json::json!([
                    {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}},
                               "right": {"prefix": {"addr": "10.88.0.0", "len": 16}}}},
                    {"match": {"op": "in", "left": {"ct": {"key": "status"}}, "right": "dnat"}},
                    {"masquerade": null}
                ]),
            ),
        );
        contains(
            &c,
            rule(
                "n-0123456789ab-from",
                serde_json::json!([
                    {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "@bridges"}},
                    {"drop": null}
                ]),
            ),
        );
        contains(
            &c,
            serde_json::json!({"add": {"element": {"family": "inet", "table": "wharf", "name": "nat-from",
                "elem": [["wharf0", {"jump": {"target": "n-0123456789ab-nat"}}]]}}}),
        );
        contains(
            &c,
            serde_json::json!({"add": {"element": {"family": "inet", "table": "wharf", "name": "bridges",
                "elem": ["wharf0"]}}}),
        );
        let text = render(&c);
        assert!(!text.contains("n-0123456789ab-to"), "{text}");
    }

    #[test]
    fn internal_network_drops_what_crosses_its_bridge_and_never_masquerades() {
        let rules = net(true);
        let c = ensure_network(&Network::check(&rules).unwrap());
        contains(
            &c,
            rule(
                "n-0123456789ab-from",
                serde_json::json!([
                    {"match": {"op": "!=", "left": {"meta": {"key": "oifname"}}, "right": "wharf0"}},
                    {"drop": null}
                ]),
            ),
        );
        contains(
            &c,
            rule(
                "n-0123456789ab-to",
                serde_json::json!([
                    {"match": {"op": "!=", "left": {"meta": {"key": "iifname"}}, "right": "wharf0"}},
                    {"drop": null}
                ]),
            ),
        );
        contains(
            &c,
            serde_json::json!({"add": {"element": {"family": "inet", "table": "wharf", "name": "forward-to",
                "elem": [["wharf0", {"jump": {"target": "n-0123456789ab-to"}}]]}}}),
        );
        let text = render(&c);
        assert!(!text.contains("n-0123456789ab-nat"), "{text}");
    }

    #[test]
    fn ports_dnat_per_family_and_dispatch_by_key() {
        let p = rules(vec![
            port(None, 8080, 80, Protocol::Tcp),
            port(Some("127.0.0.1"), 5353, 53, Protocol::Udp),
            port(Some("fd00::5"), 9000, 9, Protocol::Sctp),
        ]);
        let owner = Owner::check(&p).unwrap();
        assert!(owner.needs_route_localnet());
        assert_eq!(
            owner.keys(),
            vec![
                PortKey::Any(Protocol::Tcp, 8080),
                PortKey::V4(Protocol::Udp, "127.0.0.1".parse().unwrap(), 5353),
                PortKey::V6(Protocol::Sctp, "fd00::5".parse().unwrap(), 9000),
            ]
        );
        let c = add_ports(&owner);
        // meta nfproto ipv4 fib daddr type local tcp dport 8080 dnat ip to 10.88.0.2:80
        contains(
            &c,
            rule(
                "c-c0ffee012345",
                serde_json::json!([
                    {"match": {"op": "==", "left": {"meta": {"key": "nfproto"}}, "right": "ipv4"}},
                    {"match": {"op": "==", "left": {"fib": {"result": "type", "flags": ["daddr"]}}, "right": "local"}},
                    {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 8080}},
                    {"dnat": {"addr": "10.88.0.2", "family": "ip", "port": 80}}
                ]),
            ),
        );
        contains(
            &c,
            rule(
                "c-c0ffee012345",
                serde_json::json!([
                    {"match": {"op": "==", "left": {"meta": {"key": "nfproto"}}, "right": "ipv6"}},
                    {"match": {"op": "==", "left": {"fib": {"result": "type", "flags": ["daddr"]}}, "right": "local"}},
                    {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 8080}},
                    {"dnat": {"addr": "fd00:88::2", "family": "ip6", "port": 80}}
                ]),
            ),
        );
        // ip daddr 127.0.0.1 udp dport 5353 dnat ip to 10.88.0.2:53
        contains(
            &c,
            rule(
                "c-c0ffee012345",
                serde_json::json!([
                    {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "127.0.0.1"}},
                    {"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}}, "right": 5353}},
                    {"dnat": {"addr": "10.88.0.2", "family": "ip", "port": 53}}
                ]),
            ),
        );
        contains(
            &c,
            rule(
                "c-c0ffee012345",
                serde_json::json!([
                    {"match": {"op": "==", "left": {"payload": {"protocol": "ip6", "field": "daddr"}}, "right": "fd00::5"}},
                    {"match": {"op": "==", "left": {"payload": {"protocol": "sctp", "field": "dport"}}, "right": 9000}},
                    {"dnat": {"addr": "fd00:88::2", "family": "ip6", "port": 9}}
                ]),
            ),
        );
        contains(
            &c,
            serde_json::json!({"add": {"element": {"family": "inet", "table": "wharf", "name": "ports-any",
                "elem": [[{"concat": ["tcp", 8080]}, {"goto": {"target": "c-c0ffee012345"}}]]}}}),
        );
        contains(
            &c,
            serde_json::json!({"add": {"element": {"family": "inet", "table": "wharf", "name": "ports-ip",
                "elem": [[{"concat": ["udp", "127.0.0.1", 5353]}, {"goto": {"target": "c-c0ffee012345"}}]]}}}),
        );
        contains(
            &c,
            serde_json::json!({"add": {"element": {"family": "inet", "table": "wharf", "name": "ports-ip6",
                "elem": [[{"concat": ["sctp", "fd00::5", 9000]}, {"goto": {"target": "c-c0ffee012345"}}]]}}}),
        );
    }

    #[test]
    fn fast_add_ports_only_creates() {
        let p = rules(vec![port(None, 8080, 80, Protocol::Tcp)]);
        let owner = Owner::check(&p).unwrap();
        let listed = objects(&add_ports(&owner));
        assert_eq!(
            listed[0],
            serde_json::json!({"create": {"chain": {
                "family": "inet", "table": "wharf", "name": "c-c0ffee012345"
            }}})
        );
        for object in &listed[1..] {
            let add = object["add"].as_object().unwrap();
            assert!(
                add.contains_key("rule") || add.contains_key("element"),
                "{object}"
            );
        }
        let listed = objects(&replace_ports(&owner));
        assert!(listed.contains(&serde_json::json!({"flush": {"chain": {
            "family": "inet", "table": "wharf", "name": "c-c0ffee012345"
        }}})));
        assert_eq!(
            listed[0],
            serde_json::json!({"add": {"table": {"family": "inet", "name": "wharf"}}})
        );
    }

    #[test]
    fn unspecified_host_address_is_every_local_address_of_its_family() {
        let p = rules(vec![port(Some("0.0.0.0"), 80, 80, Protocol::Tcp)]);
        let owner = Owner::check(&p).unwrap();
        assert_eq!(owner.dnats.len(), 1);
        assert_eq!(owner.dnats[0].key, PortKey::Any(Protocol::Tcp, 80));
        assert!(owner.dnats[0].target.is_ipv4());
        let p = rules(vec![port(Some("::"), 80, 80, Protocol::Tcp)]);
        let owner = Owner::check(&p).unwrap();
        assert_eq!(owner.dnats.len(), 1);
        assert!(owner.dnats[0].target.is_ipv6());
        assert!(!owner.needs_route_localnet());
    }

    #[test]
    fn mappings_the_container_cannot_serve_are_refused() {
        let mut p = rules(vec![port(Some("::1"), 80, 80, Protocol::Tcp)]);
        p.ipv6 = None;
        let e = Owner::check(&p).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid port mapping [::1]:80->80/tcp: the container has no IPv6 address"
        );
        p.ipv4 = None;
        p.ports = vec![port(None, 80, 80, Protocol::Tcp)];
        let e = Owner::check(&p).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid port mapping *:80->80/tcp: the container has no address"
        );
        let p = rules(vec![port(None, 0, 80, Protocol::Tcp)]);
        assert!(Owner::check(&p).is_err());
        let mut p = rules(vec![]);
        p.ipv4 = Some("192.0.2.1".parse().unwrap());
        let e = Owner::check(&p).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid firewall container address \"192.0.2.1\": outside the network's subnets"
        );
    }

    #[test]
    fn ids_and_bridges_are_validated() {
        let mut n = net(false);
        n.id = "0123".into();
        assert_eq!(Network::check(&n).unwrap().id12, "0123");
        for bad in ["", "ABC", "01-23", "xyz"] {
            n.id = bad.into();
            assert!(Network::check(&n).is_err(), "{bad}");
        }
        n.id = "ab".into();
        for bad in ["", "a/b", "a b", "abcdefghijklmnop", "..", "a\"b"] {
            n.bridge = bad.into();
            assert!(Network::check(&n).is_err(), "{bad:?}");
        }
        n.bridge = "br.100".into();
        assert!(Network::check(&n).is_ok());
    }

    #[test]
    fn removal_adds_each_object_before_deleting_it() {
        let c = remove_ports("c0ffee012345", &[PortKey::Any(Protocol::Tcp, 8080)]);
        let chain =
            serde_json::json!({"family": "inet", "table": "wharf", "name": "c-c0ffee012345"});
        assert_eq!(
            objects(&c),
            vec![
                serde_json::json!({"add": {"chain": chain}}),
                serde_json::json!({"add": {"element": {"family": "inet", "table": "wharf", "name": "ports-any",
                    "elem": [[{"concat": ["tcp", 8080]}, {"goto": {"target": "c-c0ffee012345"}}]]}}}),
                serde_json::json!({"delete": {"element": {"family": "inet", "table": "wharf", "name": "ports-any",
                    "elem": [{"concat": ["tcp", 8080]}]}}}),
                serde_json::json!({"flush": {"chain": chain}}),
                serde_json::json!({"delete": {"chain": chain}}),
            ]
        );

        let rules = net(false);
        let n = Network::check(&rules).unwrap();
        let c = remove_network(n.id12, &network_elements(&n), &[n.bridge]);
        let listed = objects(&c);
        for suffix in ["from", "to", "nat", "hairpin", "raw"] {
            let chain = serde_json::json!({"family": "inet", "table": "wharf",
                "name": format!("n-0123456789ab-{suffix}")});
            let added = listed
                .iter()
                .position(|o| *o == serde_json::json!({"add": {"chain": chain}}));
            let deleted = listed
                .iter()
                .position(|o| *o == serde_json::json!({"delete": {"chain": chain}}));
            assert!(added.unwrap() < deleted.unwrap(), "{suffix}");
        }
        assert!(listed.contains(
            &serde_json::json!({"delete": {"element": {"family": "inet", "table": "wharf",
            "name": "bridges", "elem": ["wharf0"]}}})
        ));
        assert_eq!(
            objects(&remove_all()),
            vec![
                serde_json::json!({"add": {"table": {"family": "inet", "name": "wharf"}}}),
                serde_json::json!({"delete": {"table": {"family": "inet", "name": "wharf"}}}),
            ]
        );
    }

    #[test]
    fn reload_replaces_the_table_in_one_transaction() {
        let n = net(false);
        let p = rules(vec![port(None, 8080, 80, Protocol::Tcp)]);
        let c = reload(&[Network::check(&n).unwrap()], &[Owner::check(&p).unwrap()]);
        let objects = objects(&c);
        assert_eq!(
            objects[1],
            serde_json::json!({"delete": {"table": {"family": "inet", "name": "wharf"}}})
        );
        assert_eq!(
            objects[2],
            serde_json::json!({"add": {"table": {"family": "inet", "name": "wharf"}}})
        );
        let text = render(&c);
        assert!(
            text.contains("n-0123456789ab-from") && text.contains("c-c0ffee012345"),
            "{text}"
        );
    }

    #[test]
    fn chain_names_give_back_their_ids() {
        assert_eq!(
            network_of_chain("n-0123456789ab-from"),
            Some("0123456789ab")
        );
        assert_eq!(network_of_chain("n-0123456789ab-nat"), Some("0123456789ab"));
        assert_eq!(network_of_chain("n-0123456789ab-x"), None);
        assert_eq!(network_of_chain("forward"), None);
        assert_eq!(owner_of_chain("c-c0ffee012345"), Some("c0ffee012345"));
        assert_eq!(owner_of_chain("published"), None);
    }
}
