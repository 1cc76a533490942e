//! `pod …` commands with Podman's names, flags and output: create, start,
//! stop, restart, kill, rm, ps (ls), inspect, top, stats, logs.

use std::io::Write as _;
use std::time::SystemTime;

use anyhow::{anyhow, bail};
use wharf_engine::containers::Container;
use wharf_engine::logs::{format_timestamp, Stream};
use wharf_engine::networks::{NetworkAttach, NetworkName, NetworkRequest, PortSpec};
use wharf_engine::pods::{parse_shares, CreatePodRequest, Pod, PodName};
use wharf_engine::state::ContainerName;
use wharf_engine::{Engine, EngineError};

use crate::output::{human_duration, Table};

/// `pod …`.
#[derive(Debug, clap::Subcommand)]
#[command(defer = true)]
pub(crate) enum PodCommand {
    /// Create a pod (and its infra container); prints its id.
    Create(CreateArgs),
    /// Start pods: the infra container, then the others.
    Start(PodsArgs),
    /// Stop pods: their containers, then the infra container.
    Stop(StopArgs),
    /// Restart pods.
    Restart(StopArgs),
    /// Send a signal to the containers of pods.
    Kill(KillArgs),
    /// Remove pods and their containers.
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// List pods.
    #[command(name = "ps", visible_aliases = ["ls", "list"])]
    Ps(PsArgs),
    /// Show pods as JSON.
    Inspect(InspectArgs),
    /// Display the running processes of a pod's containers.
    Top(TopArgs),
    /// Resource usage of a pod's containers.
    Stats(StatsArgs),
    /// Fetch the logs of a pod's containers.
    Logs(LogsArgs),
}

/// `pod create`.
#[derive(Debug, clap::Args)]
pub(crate) struct CreateArgs {
    /// Name the pod (a generated name otherwise).
    #[arg(short, long)]
    name: Option<String>,
    /// The pod's name, as a positional argument.
    #[arg(value_name = "NAME", conflicts_with = "name")]
    positional_name: Option<String>,
    /// Publish a port of the pod to the host
    /// (`[ip:][hostport[-end]:]port[-end][/tcp|udp|sctp]`).
    #[arg(short = 'p', long)]
    publish: Vec<String>,
    /// Network of the pod: `bridge` (the default network), a network's
    /// name (repeat for several), `none` or `host`.
    #[arg(long, visible_alias = "net")]
    network: Vec<String>,
    /// Namespaces the containers share: a comma list of net, ipc, uts and
    /// pid (`+pid` adds to the default), or none.
    #[arg(long, default_value = "net,ipc,uts")]
    share: String,
    /// Make an infra container, which owns the shared namespaces
    /// (`--infra=false`: none, and nothing is shared).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    infra: bool,
    /// Name of the infra container (`<pod id>-infra` otherwise).
    #[arg(long)]
    infra_name: Option<String>,
    /// The pod's hostname (its name otherwise).
    #[arg(long)]
    hostname: Option<String>,
    /// Set metadata on the pod (`KEY[=VALUE]`).
    #[arg(short, long)]
    label: Vec<String>,
    /// The statically linked init the infra container runs as its pause
    /// process (default: `wharf-init` beside `wharf`).
    #[arg(long)]
    init_path: Option<std::path::PathBuf>,
}

/// Commands taking only pod references.
#[derive(Debug, clap::Args)]
pub(crate) struct PodsArgs {
    /// Pods.
    #[arg(required = true)]
    pods: Vec<String>,
}

/// `pod stop` and `pod restart`.
#[derive(Debug, clap::Args)]
pub(crate) struct StopArgs {
    /// Seconds to wait before killing the containers.
    #[arg(short, long = "time", visible_alias = "timeout")]
    time: Option<u32>,
    /// Pods.
    #[arg(required = true)]
    pods: Vec<String>,
}

/// `pod kill`.
#[derive(Debug, clap::Args)]
pub(crate) struct KillArgs {
    /// Signal to send.
    #[arg(short, long, default_value = "KILL")]
    signal: String,
    /// Pods.
    #[arg(required = true)]
    pods: Vec<String>,
}

/// `pod rm`.
#[derive(Debug, clap::Args)]
pub(crate) struct RmArgs {
    /// Remove running pods too, killing their containers.
    #[arg(short, long)]
    force: bool,
    /// Pods.
    #[arg(required = true)]
    pods: Vec<String>,
}

/// `pod ps`.
#[derive(Debug, clap::Args)]
pub(crate) struct PsArgs {
    /// Only pod ids.
    #[arg(short, long)]
    quiet: bool,
    /// Full ids.
    #[arg(long)]
    no_trunc: bool,
    /// `table` (default) or `json`.
    #[arg(long)]
    format: Option<String>,
}

/// `pod inspect`.
#[derive(Debug, clap::Args)]
pub(crate) struct InspectArgs {
    /// A Go template (`{{.State}}`) or `json`.
    #[arg(short, long)]
    format: Option<String>,
    /// Pods.
    #[arg(required = true)]
    pods: Vec<String>,
}

/// `pod top`.
#[derive(Debug, clap::Args)]
pub(crate) struct TopArgs {
    /// The pod.
    pod: String,
    /// `ps` options (accepted; Wharf prints `top`'s columns).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    ps_args: Vec<String>,
}

/// `pod stats`.
#[derive(Debug, clap::Args)]
pub(crate) struct StatsArgs {
    /// One sample, no streaming.
    #[arg(long)]
    no_stream: bool,
    /// Full ids.
    #[arg(long)]
    no_trunc: bool,
    /// As `stats --format`.
    #[arg(long)]
    format: Option<String>,
    /// The pod.
    pod: String,
}

/// `pod logs`.
#[derive(Debug, clap::Args)]
pub(crate) struct LogsArgs {
    /// Follow log output.
    #[arg(short, long)]
    follow: bool,
    /// Show logs since a timestamp or relative time (`42m`).
    #[arg(long)]
    since: Option<String>,
    /// Show logs before a timestamp or relative time.
    #[arg(long)]
    until: Option<String>,
    /// Show timestamps.
    #[arg(short, long)]
    timestamps: bool,
    /// Number of lines to show from the end of each container's log.
    #[arg(long, default_value = "all")]
    tail: String,
    /// Only this container of the pod.
    #[arg(short, long)]
    container: Option<String>,
    /// The pod.
    pod: String,
}

/// Runs `pod …`.
pub(crate) fn run(engine: &Engine, command: PodCommand) -> anyhow::Result<i32> {
    match command {
        PodCommand::Create(a) => {
            let pod = engine.create_pod(&create_request(&a)?)?;
            println!("{}", pod.record.id);
            Ok(0)
        }
        PodCommand::Start(a) => each(&a.pods, |r| engine.start_pod(r)),
        PodCommand::Stop(a) => each(&a.pods, |r| engine.stop_pod(r, a.time)),
        PodCommand::Restart(a) => each(&a.pods, |r| engine.restart_pod(r, a.time)),
        PodCommand::Kill(a) => {
            let signal = wharf_runtime::signal::parse(&a.signal)
                .map_err(|e| anyhow!("invalid signal {:?}: {e}", a.signal))?;
            each(&a.pods, |r| engine.kill_pod(r, signal))
        }
        PodCommand::Rm(a) => each(&a.pods, |r| engine.remove_pod(r, a.force)),
        PodCommand::Ps(a) => ps(engine, &a),
        PodCommand::Inspect(a) => inspect(engine, &a),
        PodCommand::Top(a) => top(engine, &a),
        PodCommand::Stats(a) => {
            let pod = engine.pod(&a.pod)?;
            let running: Vec<String> = pod
                .containers
                .iter()
                .filter(|c| c.record.state.is_up())
                .map(|c| c.record.id.to_string())
                .collect();
            if running.is_empty() {
                bail!("pod {} has no running container", pod.record.name);
            }
            crate::system_cli::stats(
                engine,
                crate::system_cli::StatsArgs::of(running, a.no_stream, a.no_trunc, a.format),
            )
        }
        PodCommand::Logs(a) => logs(engine, &a),
    }
}

/// Applies `f` to each pod, printing its id on success and the error on
/// failure; exit 1 when any failed (Podman's multi-pod commands).
fn each(
    references: &[String],
    mut f: impl FnMut(&str) -> Result<Pod, EngineError>,
) -> anyhow::Result<i32> {
    let mut failed = false;
    for r in references {
        match f(r) {
            Ok(pod) => println!("{}", pod.record.id),
            Err(e) => {
                failed = true;
                eprintln!("wharf: error: {}", crate::chain(&e));
            }
        }
    }
    Ok(i32::from(failed))
}

/// `pod create` flags → the engine's request.
fn create_request(a: &CreateArgs) -> anyhow::Result<CreatePodRequest> {
    let name = a.name.as_ref().or(a.positional_name.as_ref());
    let network = match a.network.first().map(String::as_str) {
        None => None,
        Some(mode @ ("none" | "host")) => {
            if a.network.len() > 1 {
                bail!("--network {mode} cannot be combined with other networks");
            }
            Some(if mode == "none" {
                NetworkRequest::None
            } else {
                NetworkRequest::Host
            })
        }
        Some(_) => {
            let mut list = Vec::new();
            for n in &a.network {
                if n == "none" || n == "host" || n.contains(':') {
                    bail!("invalid --network {n:?}: a pod's network is bridge, a network's name, none or host");
                }
                let n = if n == "default" { "bridge" } else { n.as_str() };
                if n != "bridge" {
                    NetworkName::new(n)?;
                }
                list.push(NetworkAttach {
                    network: n.to_owned(),
                    ..NetworkAttach::default()
                });
            }
            Some(NetworkRequest::Networks(list))
        }
    };
    let labels = crate::run_flags::labels(&a.label);
    Ok(CreatePodRequest {
        name: name.map(|n| PodName::parse(n)).transpose()?,
        labels,
        hostname: a.hostname.clone(),
        shares: if a.infra {
            Some(parse_shares(&a.share)?)
        } else {
            // `--infra=false`: the default list does not apply.
            (a.share != "net,ipc,uts")
                .then(|| parse_shares(&a.share))
                .transpose()?
        },
        infra: a.infra,
        infra_name: a
            .infra_name
            .as_deref()
            .map(ContainerName::parse)
            .transpose()?,
        network,
        ports: a
            .publish
            .iter()
            .map(|p| PortSpec::parse(p))
            .collect::<Result<_, _>>()?,
        init_path: a.init_path.clone(),
    })
}

fn ago(t: SystemTime) -> String {
    let elapsed = SystemTime::now().duration_since(t).unwrap_or_default();
    format!("{} ago", human_duration(elapsed))
}

fn ps(engine: &Engine, a: &PsArgs) -> anyhow::Result<i32> {
    let pods = engine.list_pods()?;
    let id = |full: &str| {
        if a.no_trunc {
            full.to_owned()
        } else {
            full.chars().take(12).collect()
        }
    };
    let mut out = String::new();
    if a.quiet {
        for p in &pods {
            out.push_str(&id(p.record.id.as_str()));
            out.push('\n');
        }
        print!("{out}");
        return Ok(0);
    }
    match a.format.as_deref() {
        None | Some("") | Some("table") => {
            let mut t = Table::new(&[
                "POD ID",
                "NAME",
                "STATUS",
                "CREATED",
                "INFRA ID",
                "# OF CONTAINERS",
            ]);
            for p in &pods {
                let infra = p
                    .record
                    .infra_id
                    .as_ref()
                    .map(|i| id(i.as_str()))
                    .unwrap_or_default();
                t.row(vec![
                    id(p.record.id.as_str()),
                    p.record.name.to_string(),
                    p.status().to_string(),
                    ago(p.record.created),
                    infra,
                    p.containers.len().to_string(),
                ]);
            }
            out = t.render();
        }
        Some("json") => {
            let list: Vec<serde_json::Value> =
                pods.iter().map(wharf_api::pods::list_entry).collect();
            out = serde_json::to_string_pretty(&list)? + "\n";
        }
        Some(other) => bail!("unsupported --format {other:?}: use table or json"),
    }
    print!("{out}");
    Ok(0)
}

fn inspect(engine: &Engine, a: &InspectArgs) -> anyhow::Result<i32> {
    let mut values = Vec::new();
    let mut failed = false;
    for r in &a.pods {
        match engine.pod(r) {
            Ok(p) => values.push(wharf_api::pods::inspect(&p)),
            Err(e) => {
                failed = true;
                eprintln!("wharf: error: {}", crate::chain(&e));
            }
        }
    }
    match a.format.as_deref() {
        None | Some("") => println!("{}", serde_json::to_string_pretty(&values)?),
        Some("json") => println!("{}", serde_json::to_string(&values)?),
        Some(template) => {
            for v in &values {
                println!("{}", crate::format::render_value(template, v)?);
            }
        }
    }
    Ok(i32::from(failed))
}

fn top(engine: &Engine, a: &TopArgs) -> anyhow::Result<i32> {
    let _ = &a.ps_args;
    let pod = engine.pod(&a.pod)?;
    let running: Vec<&Container> = pod
        .containers
        .iter()
        .filter(|c| c.record.state.is_up())
        .collect();
    if running.is_empty() {
        bail!("pod {} has no running container", pod.record.name);
    }
    let mut t = Table::new(&["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]);
    for c in running {
        let pids = match engine.container_pids(c.record.id.as_str()) {
            Ok(p) => p,
            // Stopped since it was listed.
            Err(e) if e.kind() == wharf_engine::ErrorKind::Conflict => continue,
            Err(e) => return Err(e.into()),
        };
        for pid in pids {
            if let Some(row) = crate::proc_info::ps_row(pid) {
                t.row(row);
            }
        }
    }
    print!("{}", t.render());
    Ok(0)
}

fn logs(engine: &Engine, a: &LogsArgs) -> anyhow::Result<i32> {
    let pod = engine.pod(&a.pod)?;
    let mut containers: Vec<&Container> = pod.members().collect();
    if let Some(only) = &a.container {
        containers.retain(|c| {
            c.record.name.as_str() == only || c.record.id.as_str().starts_with(only.as_str())
        });
        if containers.is_empty() {
            bail!("pod {} has no container {only}", pod.record.name);
        }
    }
    let options = crate::containers_cli::read_options(
        a.since.as_deref(),
        a.until.as_deref(),
        &a.tail,
        a.timestamps,
        a.follow,
    )?;
    let several = containers.len() > 1;
    let read = |c: &Container| -> Result<(), EngineError> {
        let prefix = if several {
            format!("{} ", c.record.name)
        } else {
            String::new()
        };
        let id = c.record.id.to_string();
        let is_running = || {
            engine
                .container(&id)
                .map(|c| c.record.state.is_up())
                .unwrap_or(false)
        };
        engine.read_container_logs(c, &options, is_running, |line| {
            let mut head = prefix.clone();
            if a.timestamps {
                head.push_str(&format_timestamp(line.time));
                head.push(' ');
            }
            let mut bytes = head.into_bytes();
            bytes.extend_from_slice(&line.bytes);
            match line.stream {
                Stream::Stdout => {
                    let mut o = std::io::stdout().lock();
                    o.write_all(&bytes)?;
                    o.flush()
                }
                Stream::Stderr => {
                    let mut e = std::io::stderr().lock();
                    e.write_all(&bytes)?;
                    e.flush()
                }
            }
        })
    };
    if a.follow {
        // Every log at once, each on its own thread.
        let results: Vec<Result<(), EngineError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = containers.iter().map(|c| scope.spawn(|| read(c))).collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or(Ok(())))
                .collect()
        });
        for r in results {
            r?;
        }
    } else {
        for c in &containers {
            read(c)?;
        }
    }
    Ok(0)
}
