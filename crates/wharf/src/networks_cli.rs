//! `network …` commands with Docker's names, flags and output: create, ls,
//! inspect, rm, prune, connect, disconnect, and Podman's reload.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail};
use wharf_engine::networks::{CreateNetwork, Network, NetworkAttach, NetworkName, Subnet};
use wharf_engine::Engine;

use crate::output::Table;

/// `network …`.
#[derive(Debug, clap::Subcommand)]
#[command(defer = true)]
pub(crate) enum NetworkCommand {
    /// Create a network.
    Create(CreateArgs),
    /// List networks.
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Show networks as JSON.
    Inspect(InspectArgs),
    /// Remove networks.
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Remove networks no container uses, and what crashed commands left.
    Prune(PruneArgs),
    /// Connect a container to a network.
    Connect(ConnectArgs),
    /// Disconnect a container from a network.
    Disconnect(DisconnectArgs),
    /// Re-apply Wharf's firewall rules (after a firewall flush).
    Reload,
}

/// `network create`.
#[derive(Debug, clap::Args)]
pub(crate) struct CreateArgs {
    /// The name; `wharfN` when omitted.
    name: Option<String>,
    /// Driver: only `bridge`.
    #[arg(short, long, default_value = "bridge")]
    driver: String,
    /// Subnet in CIDR form; repeat for dual stack.
    #[arg(long)]
    subnet: Vec<String>,
    /// Gateway of the subnet given at the same position.
    #[arg(long)]
    gateway: Vec<String>,
    /// Allocate container addresses from this range of the subnet at the
    /// same position.
    #[arg(long)]
    ip_range: Vec<String>,
    /// Add an IPv6 subnet (one is picked unless given).
    #[arg(long)]
    ipv6: bool,
    /// No outbound route, no published ports.
    #[arg(long)]
    internal: bool,
    /// No name resolution between the containers.
    #[arg(long)]
    disable_dns: bool,
    /// Driver option `KEY=VALUE`: `mtu=1400`; `big_tcp=false` keeps the
    /// kernel's 64 KiB limit on IPv4 segments over the network's links.
    #[arg(short = 'o', long = "opt", value_name = "KEY=VALUE")]
    opts: Vec<String>,
    /// Label `KEY=VALUE`.
    #[arg(long, value_name = "KEY=VALUE")]
    label: Vec<String>,
}

/// `network ls`.
#[derive(Debug, clap::Args)]
pub(crate) struct LsArgs {
    /// Only network ids.
    #[arg(short, long)]
    quiet: bool,
    /// Full ids.
    #[arg(long)]
    no_trunc: bool,
    /// `name=`, `id=`, `driver=`, `label=KEY[=VALUE]`.
    #[arg(short, long, value_name = "FILTER")]
    filter: Vec<String>,
    /// `table` (default) or `json` (one object per line).
    #[arg(long)]
    format: Option<String>,
}

/// `network inspect`.
#[derive(Debug, clap::Args)]
pub(crate) struct InspectArgs {
    /// Networks.
    #[arg(required = true)]
    names: Vec<String>,
}

/// `network rm`.
#[derive(Debug, clap::Args)]
pub(crate) struct RmArgs {
    /// Networks.
    #[arg(required = true)]
    names: Vec<String>,
    /// A missing network is no error.
    #[arg(short, long)]
    force: bool,
}

/// `network prune`.
#[derive(Debug, clap::Args)]
pub(crate) struct PruneArgs {
    /// Do not ask for confirmation.
    #[arg(short, long)]
    force: bool,
}

/// `network connect`.
#[derive(Debug, clap::Args)]
pub(crate) struct ConnectArgs {
    /// The network.
    network: String,
    /// The container.
    container: String,
    /// IPv4 address.
    #[arg(long)]
    ip: Option<std::net::Ipv4Addr>,
    /// IPv6 address.
    #[arg(long)]
    ip6: Option<std::net::Ipv6Addr>,
    /// Another name for the container on this network.
    #[arg(long)]
    alias: Vec<String>,
    /// MAC address.
    #[arg(long)]
    mac_address: Option<String>,
}

/// `network disconnect`.
#[derive(Debug, clap::Args)]
pub(crate) struct DisconnectArgs {
    /// The network.
    network: String,
    /// The container.
    container: String,
}

/// Runs `network …`.
pub(crate) fn run(engine: &Engine, command: NetworkCommand) -> anyhow::Result<i32> {
    match command {
        NetworkCommand::Create(a) => {
            let network = engine.create_network(&create_request(&a)?)?;
            println!("{}", network.id);
            Ok(0)
        }
        NetworkCommand::Ls(a) => ls(engine, &a),
        NetworkCommand::Inspect(a) => {
            let mut out = Vec::new();
            let mut failed = false;
            for name in &a.names {
                match engine.network(name) {
                    Ok(info) => out.push(wharf_api::networks::inspect(&info)),
                    Err(e) => {
                        eprintln!("wharf: error: {}", crate::chain(&e));
                        failed = true;
                    }
                }
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(if failed { 1 } else { 0 })
        }
        NetworkCommand::Rm(a) => {
            let mut failed = false;
            for name in &a.names {
                match engine.remove_network(name) {
                    Ok(_) => println!("{name}"),
                    Err(e) if a.force && e.kind() == wharf_engine::ErrorKind::NotFound => {}
                    Err(e) => {
                        eprintln!("wharf: error: {}", crate::chain(&e));
                        failed = true;
                    }
                }
            }
            Ok(if failed { 1 } else { 0 })
        }
        NetworkCommand::Prune(a) => {
            if !a.force
                && !crate::system_cli::confirm(
                    "network prune",
                    "WARNING! This will remove all custom networks not used by at least one container.",
                )?
            {
                return Ok(0);
            }
            let report = engine.prune_networks()?;
            if !report.removed.is_empty() {
                println!("Deleted Networks:");
                for name in &report.removed {
                    println!("{name}");
                }
            }
            Ok(0)
        }
        NetworkCommand::Connect(a) => {
            engine.connect_network(
                &a.container,
                &NetworkAttach {
                    network: a.network.clone(),
                    ipv4: a.ip,
                    ipv6: a.ip6,
                    mac: a.mac_address.clone(),
                    aliases: a.alias.clone(),
                },
            )?;
            Ok(0)
        }
        NetworkCommand::Disconnect(a) => {
            engine.disconnect_network(&a.container, &a.network)?;
            Ok(0)
        }
        NetworkCommand::Reload => {
            let n = engine.reload_networks()?;
            eprintln!("reloaded the firewall rules of {n} networks");
            Ok(0)
        }
    }
}

fn key_values(flag: &str, values: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    values
        .iter()
        .map(|v| match v.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => Err(anyhow!("invalid {flag} {v:?}: expected KEY=VALUE")),
        })
        .collect()
}

/// `network create` flags → the engine's request.
fn create_request(a: &CreateArgs) -> anyhow::Result<CreateNetwork> {
    if a.driver != "bridge" {
        bail!("invalid --driver {:?}: only bridge is supported", a.driver);
    }
    if a.gateway.len() > a.subnet.len() || a.ip_range.len() > a.subnet.len() {
        bail!("--gateway and --ip-range each need a --subnet (matched by position)");
    }
    let mut subnets = Vec::new();
    for (i, s) in a.subnet.iter().enumerate() {
        let net = s
            .parse()
            .map_err(|_| anyhow!("invalid --subnet {s:?}: expected CIDR like 10.1.0.0/24"))?;
        let gateway = a
            .gateway
            .get(i)
            .map(|g| {
                g.parse()
                    .map_err(|_| anyhow!("invalid --gateway {g:?}: not an IP address"))
            })
            .transpose()?;
        let range = a
            .ip_range
            .get(i)
            .map(|r| {
                r.parse()
                    .map_err(|_| anyhow!("invalid --ip-range {r:?}: expected CIDR"))
            })
            .transpose()?;
        subnets.push(Subnet::new(net, gateway, range)?);
    }
    let options = key_values("--opt", &a.opts)?;
    let mut mtu = None;
    let mut big_tcp = None;
    for (k, v) in &options {
        match k.as_str() {
            "mtu" | "com.docker.network.driver.mtu" => {
                let m: u32 = v
                    .parse()
                    .ok()
                    .filter(|m| (68..=65535).contains(m))
                    .ok_or_else(|| anyhow!("invalid --opt {k}={v}: the MTU must be 68-65535"))?;
                mtu = Some(m);
            }
            "big_tcp" => {
                big_tcp = Some(match v.as_str() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => bail!("invalid --opt {k}={v}: expected true or false"),
                });
            }
            other => bail!("invalid --opt {other:?}: the bridge driver knows mtu and big_tcp"),
        }
    }
    Ok(CreateNetwork {
        name: a.name.as_deref().map(NetworkName::new).transpose()?,
        subnets,
        ipv6: a.ipv6,
        internal: a.internal,
        dns: !a.disable_dns,
        mtu,
        big_tcp,
        labels: key_values("--label", &a.label)?,
        options,
    })
}

fn matches(n: &Network, filters: &[(String, String)]) -> bool {
    filters.iter().all(|(k, v)| match k.as_str() {
        "name" => n.name.contains(v.as_str()),
        "id" => n.id.starts_with(v.as_str()),
        "driver" => &n.driver == v,
        "label" => match v.split_once('=') {
            Some((lk, lv)) => n.labels.get(lk).is_some_and(|x| x == lv),
            None => n.labels.contains_key(v.as_str()),
        },
        _ => false,
    })
}

fn ls(engine: &Engine, a: &LsArgs) -> anyhow::Result<i32> {
    let mut filters = Vec::new();
    for f in &a.filter {
        let (k, v) = f
            .split_once('=')
            .ok_or_else(|| anyhow!("invalid --filter {f:?}: expected KEY=VALUE"))?;
        if !["name", "id", "driver", "label"].contains(&k) {
            bail!("invalid --filter {f:?}: use name, id, driver or label");
        }
        filters.push((k.to_owned(), v.to_owned()));
    }
    let networks: Vec<Network> = engine
        .networks()?
        .into_iter()
        .filter(|n| matches(n, &filters))
        .collect();
    let id = |n: &Network| {
        if a.no_trunc {
            n.id.clone()
        } else {
            n.id[..12].to_owned()
        }
    };
    if a.quiet {
        for n in &networks {
            println!("{}", id(n));
        }
        return Ok(0);
    }
    match a.format.as_deref() {
        None | Some("table") => {
            let mut table = Table::new(&["NETWORK ID", "NAME", "DRIVER", "SCOPE"]);
            for n in &networks {
                table.row(vec![
                    id(n),
                    n.name.clone(),
                    n.driver.clone(),
                    "local".into(),
                ]);
            }
            print!("{}", table.render());
        }
        Some("json") => {
            for n in &networks {
                println!(
                    "{}",
                    serde_json::to_string(&wharf_api::networks::list_entry(n))?
                );
            }
        }
        Some(other) => bail!("unsupported --format {other:?}: use table or json"),
    }
    Ok(0)
}
