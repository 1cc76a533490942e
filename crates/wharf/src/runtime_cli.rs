//! The runc-compatible command line: runc's global flags, verbs, flags,
//! output formats and exit codes (1 on error; a foreground container's own
//! status for `run` and `exec`).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use clap::{Args, Parser, Subcommand};
use wharf_runtime::{
    Attach, ContainerId, ContainerState, CreateRequest, ExecOverrides, ExecProcess, ExecRequest,
    Runtime,
};

use crate::log::{LogFormat, Logger};

/// runc-compatible OCI runtime.
#[derive(Debug, Parser)]
#[command(
    name = "wharf-runc",
    version,
    about = "Wharf's runc-compatible OCI runtime"
)]
pub struct RuntimeCli {
    /// Root directory for container state.
    #[arg(long, global = true, default_value = "/run/wharf/runtime")]
    root: PathBuf,
    /// Log file (default: stderr).
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    /// Log format.
    #[arg(long = "log-format", global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Debug logging.
    #[arg(long, global = true)]
    debug: bool,
    /// Use systemd for cgroups (not implemented: a clear error for verbs
    /// that create processes).
    #[arg(long = "systemd-cgroup")]
    systemd_cgroup: bool,
    /// Rootless mode: true, false or auto (accepted for compatibility).
    #[arg(long)]
    rootless: Option<String>,
    /// Path to criu (checkpointing is not supported; accepted for compatibility).
    #[arg(long, hide = true)]
    criu: Option<PathBuf>,
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Debug, Subcommand)]
#[command(defer = true)]
enum Verb {
    /// Create a container.
    Create(CreateArgs),
    /// Start a created container.
    Start { id: String },
    /// Create and start a container.
    Run(Box<RunArgs>),
    /// Output the state of a container.
    State { id: String },
    /// Send a signal to a container's init.
    Kill {
        id: String,
        /// Signal name or number.
        #[arg(default_value = "SIGTERM")]
        signal: String,
        /// Signal every process of the container.
        #[arg(short, long)]
        all: bool,
    },
    /// Delete a container.
    Delete {
        id: String,
        /// Kill it first if it is running.
        #[arg(short, long)]
        force: bool,
    },
    /// Run a process in a container.
    Exec(Box<ExecArgs>),
    /// List containers.
    List {
        /// table or json.
        #[arg(short, long, default_value = "table")]
        format: String,
        /// Only ids.
        #[arg(short, long)]
        quiet: bool,
    },
    /// List a container's processes.
    Ps {
        /// table or json.
        #[arg(short, long, default_value = "table")]
        format: String,
        id: String,
        /// Arguments for ps(1).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Freeze every process of a container.
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
    /// Change a running container's resource limits.
    Update(Box<UpdateArgs>),
    /// Show resource usage (`--stats` once, or every `--interval`).
    Events {
        id: String,
        /// Print stats once and exit.
        #[arg(long)]
        stats: bool,
        /// Interval between stats, e.g. 5s, 500ms.
        #[arg(long, default_value = "5s")]
        interval: String,
    },
    /// Write a default config.json.
    Spec {
        /// Bundle directory.
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
        /// A spec for an unprivileged user.
        #[arg(long)]
        rootless: bool,
        /// Include Wharf's default seccomp profile (Docker-equivalent, for
        /// the spec's bounding capabilities). Not a runc flag.
        #[arg(long = "seccomp-default")]
        seccomp_default: bool,
    },
    /// Output the OCI features document.
    Features,
}

#[derive(Debug, Args)]
struct CreateArgs {
    id: String,
    /// Bundle directory.
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    /// Unix socket to send the terminal master to.
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// File to write the init's pid to.
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// Use MS_MOVE + chroot instead of pivot_root.
    #[arg(long = "no-pivot")]
    no_pivot: bool,
    /// Do not create a new session keyring (accepted; Wharf creates none).
    #[arg(long = "no-new-keyring")]
    no_new_keyring: bool,
    /// Pass this many descriptors after stdio to the container.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,
}

#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    create: CreateArgs,
    /// Return once started.
    #[arg(short, long)]
    detach: bool,
    /// Accepted for compatibility.
    #[arg(long = "no-subreaper")]
    no_subreaper: bool,
    /// Keep the container's state after it exits.
    #[arg(long)]
    keep: bool,
}

#[derive(Debug, Args)]
struct UpdateArgs {
    id: String,
    /// A linux.resources JSON file ("-" for stdin); flags override it.
    #[arg(short, long)]
    resources: Option<PathBuf>,
    /// Memory limit, bytes.
    #[arg(long, short = 'm')]
    memory: Option<i64>,
    /// Memory + swap limit, bytes (-1 unlimited).
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    memory_swap: Option<i64>,
    /// Memory soft limit, bytes.
    #[arg(long = "memory-reservation")]
    memory_reservation: Option<i64>,
    /// CPU shares (relative weight).
    #[arg(long = "cpu-shares")]
    cpu_shares: Option<u64>,
    /// CFS quota, microseconds per period (-1 unlimited).
    #[arg(long = "cpu-quota", allow_hyphen_values = true)]
    cpu_quota: Option<i64>,
    /// CFS period, microseconds.
    #[arg(long = "cpu-period")]
    cpu_period: Option<u64>,
    /// CPUs allowed (e.g. 0-1).
    #[arg(long = "cpuset-cpus")]
    cpuset_cpus: Option<String>,
    /// Memory nodes allowed.
    #[arg(long = "cpuset-mems")]
    cpuset_mems: Option<String>,
    /// Maximum number of processes (-1 unlimited).
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pids_limit: Option<i64>,
    /// Block IO weight (10-1000).
    #[arg(long = "blkio-weight")]
    blkio_weight: Option<u16>,
}

#[derive(Debug, Args)]
struct ExecArgs {
    id: String,
    /// Command and arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
    /// Unix socket to send the terminal master to.
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// Working directory.
    #[arg(long)]
    cwd: Option<PathBuf>,
    /// KEY=VALUE environment entries.
    #[arg(short, long)]
    env: Vec<String>,
    /// Allocate a terminal.
    #[arg(short, long)]
    tty: bool,
    /// uid[:gid].
    #[arg(short, long, allow_hyphen_values = true)]
    user: Option<String>,
    /// Extra supplementary group ids.
    #[arg(short = 'g', long = "additional-gids")]
    additional_gids: Vec<u32>,
    /// A process.json describing the process.
    #[arg(short, long)]
    process: Option<PathBuf>,
    /// Return once started.
    #[arg(short, long)]
    detach: bool,
    /// File to write the process's pid to.
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// SELinux label (accepted; SELinux is not supported).
    #[arg(long = "process-label")]
    process_label: Option<String>,
    /// AppArmor profile.
    #[arg(long)]
    apparmor: Option<String>,
    /// Set no_new_privs.
    #[arg(long = "no-new-privs")]
    no_new_privs: bool,
    /// Extra capabilities.
    #[arg(short, long)]
    cap: Vec<String>,
    /// Pass this many descriptors after stdio.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,
    /// Run even if the container is paused (the process starts frozen).
    #[arg(long = "ignore-paused")]
    ignore_paused: bool,
    /// Accepted for compatibility (cgroups come with the confinement work).
    #[arg(long)]
    cgroup: Option<String>,
}

/// Parses `uid[:gid]` strictly: decimal u32 values only, never a fallback
/// to 0 (CVE-2024-40635, CVE-2026-30892 classes).
fn parse_user(s: &str) -> anyhow::Result<(u32, Option<u32>)> {
    let num = |v: &str, what: &str| -> anyhow::Result<u32> {
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
            bail!("invalid {what} {v:?} in --user {s:?}: expected a decimal number");
        }
        v.parse::<u32>()
            .ok()
            .filter(|n| *n != u32::MAX)
            .ok_or_else(|| anyhow!("{what} {v} in --user {s:?} is out of range"))
    };
    match s.split_once(':') {
        Some((u, g)) => Ok((num(u, "uid")?, Some(num(g, "gid")?))),
        None => Ok((num(s, "uid")?, None)),
    }
}

/// Descriptors to pass: `--preserve-fds` plus systemd's `LISTEN_FDS`.
fn preserved(flag: u32) -> anyhow::Result<i32> {
    let listen = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(0);
    i32::try_from(u64::from(flag) + u64::from(listen)).context("--preserve-fds is too large")
}

/// Runs the command line; returns the process exit status.
pub fn main(cli: RuntimeCli) -> i32 {
    let logger = match Logger::open(cli.log.as_deref(), cli.log_format) {
        Ok(l) => Arc::new(l),
        Err(e) => {
            eprintln!(
                "wharf-runc: open log {}: {e}",
                cli.log
                    .as_deref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            );
            return 1;
        }
    };
    crate::log::install(
        logger.clone(),
        if cli.debug {
            tracing::Level::DEBUG
        } else {
            tracing::Level::WARN
        },
    );
    match dispatch(&cli) {
        Ok(code) => code,
        Err(err) => {
            let msg = format!("{err:#}");
            logger.line("error", &msg, &[]);
            if cli.log.is_some() {
                eprintln!("wharf-runc: {msg}");
            }
            1
        }
    }
}

fn spawning(verb: &Verb) -> Option<u32> {
    match verb {
        Verb::Create(a) => Some(a.preserve_fds),
        Verb::Run(a) => Some(a.create.preserve_fds),
        Verb::Exec(a) => Some(a.preserve_fds),
        _ => None,
    }
}

fn dispatch(cli: &RuntimeCli) -> anyhow::Result<i32> {
    if let Some(preserve) = spawning(&cli.verb) {
        // Nothing the caller leaked may reach the container; then run from
        // a sealed image before forking into it (CVE-2019-5736).
        let keep = 3 + preserved(preserve)?;
        wharf_sys::fd::cloexec_from(keep).context("mark inherited descriptors close-on-exec")?;
        let seal = wharf_sys::exe::ensure_sealed().context("re-execute from a sealed image")?;
        tracing::debug!(?seal, "running from a sealed image");
    }
    if cli.systemd_cgroup && spawning(&cli.verb).is_some() {
        // Placing a container with the cgroupfs driver under a systemd
        // that believes it owns the tree would fight systemd; refuse.
        if std::path::Path::new("/run/systemd/system").is_dir() {
            bail!("--systemd-cgroup: the systemd cgroup driver is not implemented yet; use the cgroupfs driver (drop the flag)");
        }
        bail!("--systemd-cgroup: systemd is not running on this host (no /run/systemd/system); use the cgroupfs driver (drop the flag)");
    }
    let rt = Runtime::new(cli.root.clone());
    let id = |s: &str| ContainerId::parse(s).map_err(anyhow::Error::from);
    match &cli.verb {
        Verb::Create(a) => {
            rt.create(&create_request(a)?)?;
            Ok(0)
        }
        Verb::Start { id: i } => {
            rt.start(&id(i)?)?;
            Ok(0)
        }
        Verb::Run(a) => {
            let req = create_request(&a.create)?;
            let attach = if a.detach {
                Attach::Detach
            } else {
                Attach::Foreground
            };
            if a.keep && attach == Attach::Foreground {
                bail!("--keep is not supported yet");
            }
            Ok(rt.run(&req, attach)?)
        }
        Verb::State { id: i } => {
            let state = rt.state(&id(i)?)?;
            print_json_pretty(&state_json(&state))?;
            Ok(0)
        }
        Verb::Kill { id: i, signal, all } => {
            let sig = wharf_runtime::signal::parse(signal).map_err(|e| anyhow!(e))?;
            rt.kill(&id(i)?, sig, *all)?;
            Ok(0)
        }
        Verb::Delete { id: i, force } => {
            let id = id(i)?;
            match rt.delete(&id, *force) {
                // runc: deleting a missing container with --force succeeds.
                Err(wharf_runtime::RuntimeError::NotFound { .. }) if *force => Ok(0),
                other => other.map(|()| 0).map_err(Into::into),
            }
        }
        Verb::Exec(a) => exec(&rt, a),
        Verb::List { format, quiet } => list(&rt, format, *quiet),
        Verb::Ps {
            format,
            id: i,
            ps_args,
        } => ps(&rt, &id(i)?, format, ps_args),
        Verb::Pause { id: i } => {
            rt.pause(&id(i)?)?;
            Ok(0)
        }
        Verb::Resume { id: i } => {
            rt.resume(&id(i)?)?;
            Ok(0)
        }
        Verb::Update(a) => {
            let id = id(&a.id)?;
            let resources = update_resources(&rt, &id, a)?;
            rt.update(&id, &resources)?;
            Ok(0)
        }
        Verb::Events {
            id: i,
            stats,
            interval,
        } => events(&rt, &id(i)?, *stats, interval),
        Verb::Spec {
            bundle,
            rootless,
            seccomp_default,
        } => {
            let path = bundle.join("config.json");
            if path.exists() {
                bail!("File {} exists. Remove it first", path.display());
            }
            let ids = rootless.then(|| {
                (
                    rustix::process::getuid().as_raw(),
                    rustix::process::getgid().as_raw(),
                )
            });
            let mut spec = wharf_runtime::default_spec(ids);
            if *seccomp_default {
                let caps: Vec<String> = spec["process"]["capabilities"]["bounding"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|c| c.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                spec["linux"]["seccomp"] =
                    serde_json::to_value(wharf_runtime::default_seccomp(&caps))?;
            }
            let data = serde_json::to_vec_pretty(&spec)?;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .and_then(|mut f| f.write_all(&data))
                .with_context(|| format!("write {}", path.display()))?;
            Ok(0)
        }
        Verb::Features => {
            print_json_pretty(&wharf_runtime::features())?;
            Ok(0)
        }
    }
}

/// The resources `update` applies: the container's current ones, replaced
/// by `-r` if given, then the flags on top.
fn update_resources(
    rt: &Runtime,
    id: &ContainerId,
    a: &UpdateArgs,
) -> anyhow::Result<oci_spec::runtime::LinuxResources> {
    use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxPids};
    let mut r = match &a.resources {
        Some(path) if path.as_os_str() == "-" => serde_json::from_reader(std::io::stdin().lock())
            .context("parse resources from stdin")?,
        Some(path) => serde_json::from_reader(fs_err::File::open(path)?)
            .with_context(|| format!("parse {}", path.display()))?,
        None => rt.resources(id)?,
    };
    if a.memory.is_some() || a.memory_swap.is_some() || a.memory_reservation.is_some() {
        let mut m = r.memory().unwrap_or_default();
        if let Some(v) = a.memory {
            m.set_limit(Some(v));
        }
        if let Some(v) = a.memory_swap {
            m.set_swap(Some(v));
        }
        if let Some(v) = a.memory_reservation {
            m.set_reservation(Some(v));
        }
        r.set_memory(Some(m));
    }
    if a.cpu_shares.is_some()
        || a.cpu_quota.is_some()
        || a.cpu_period.is_some()
        || a.cpuset_cpus.is_some()
        || a.cpuset_mems.is_some()
    {
        let mut c = r.cpu().clone().unwrap_or_else(LinuxCpu::default);
        if let Some(v) = a.cpu_shares {
            c.set_shares(Some(v));
        }
        if let Some(v) = a.cpu_quota {
            c.set_quota(Some(v));
        }
        if let Some(v) = a.cpu_period {
            c.set_period(Some(v));
        }
        if let Some(v) = &a.cpuset_cpus {
            c.set_cpus(Some(v.clone()));
        }
        if let Some(v) = &a.cpuset_mems {
            c.set_mems(Some(v.clone()));
        }
        r.set_cpu(Some(c));
    }
    if let Some(v) = a.pids_limit {
        let mut p = LinuxPids::default();
        p.set_limit(v);
        r.set_pids(Some(p));
    }
    if let Some(v) = a.blkio_weight {
        let mut b = r.block_io().clone().unwrap_or_else(LinuxBlockIo::default);
        b.set_weight(Some(v));
        r.set_block_io(Some(b));
    }
    Ok(r)
}

/// runc's `events --stats` document (the fields a cgroup reports).
fn stats_json(id: &ContainerId, s: &wharf_runtime::Stats) -> serde_json::Value {
    serde_json::json!({
        "type": "stats",
        "id": id.as_str(),
        "data": {
            "cpu": {"usage": {"total": s.cpu.usage_ns, "user": s.cpu.user_ns, "kernel": s.cpu.system_ns}},
            "memory": {"usage": {"usage": s.memory.usage, "limit": s.memory.limit, "max": s.memory.max_usage}, "oom_kills": s.memory.oom_kills},
            "pids": {"current": s.pids.current, "limit": s.pids.limit}
        }
    })
}

/// `events`: stats once (`--stats`), or a stream: stats every `interval`
/// and an `oom` event as soon as the cgroup's OOM-kill count grows (checked
/// every 100 ms), until the container stops.
fn events(rt: &Runtime, id: &ContainerId, once: bool, interval: &str) -> anyhow::Result<i32> {
    let every = humantime::parse_duration(interval)
        .with_context(|| format!("invalid --interval {interval:?}"))?;
    let emit = |v: &serde_json::Value| -> anyhow::Result<()> {
        let mut out = std::io::stdout().lock();
        serde_json::to_writer(&mut out, v)?;
        writeln!(out)?;
        out.flush()?;
        Ok(())
    };
    let stats = rt.stats(id)?;
    emit(&stats_json(id, &stats))?;
    if once {
        return Ok(0);
    }
    let tick = std::time::Duration::from_millis(100).min(every);
    let mut ooms = stats.memory.oom_kills.unwrap_or(0);
    let mut last = std::time::Instant::now();
    loop {
        std::thread::sleep(tick);
        if rt.state(id)?.status == wharf_runtime::Status::Stopped {
            return Ok(0);
        }
        let stats = rt.stats(id)?;
        let now = stats.memory.oom_kills.unwrap_or(0);
        if now > ooms {
            emit(&serde_json::json!({"type": "oom", "id": id.as_str()}))?;
            ooms = now;
        }
        if last.elapsed() >= every {
            emit(&stats_json(id, &stats))?;
            last = std::time::Instant::now();
        }
    }
}

fn create_request(a: &CreateArgs) -> anyhow::Result<CreateRequest> {
    let _ = a.no_new_keyring;
    Ok(CreateRequest {
        id: ContainerId::parse(&a.id)?,
        bundle: a.bundle.clone(),
        pid_file: a.pid_file.clone(),
        console_socket: a.console_socket.clone(),
        preserve_fds: preserved(a.preserve_fds)?,
        no_pivot: a.no_pivot,
    })
}

fn exec(rt: &Runtime, a: &ExecArgs) -> anyhow::Result<i32> {
    if a.process_label.as_deref().is_some_and(|l| !l.is_empty()) {
        bail!("--process-label: SELinux is not enabled on this host");
    }
    let _ = &a.cgroup;
    let process = match &a.process {
        Some(path) => {
            let data = fs_err::File::open(path)?;
            let p: oci_spec::runtime::Process = serde_json::from_reader(data)
                .with_context(|| format!("parse {}", path.display()))?;
            ExecProcess::Full(Box::new(p))
        }
        None => {
            if a.command.is_empty() {
                bail!("exec needs a command, or --process");
            }
            for kv in &a.env {
                if !kv.contains('=') {
                    bail!("invalid --env {kv:?}: expected KEY=VALUE");
                }
            }
            ExecProcess::Overrides(ExecOverrides {
                args: a.command.clone(),
                env: a.env.clone(),
                cwd: a.cwd.clone(),
                user: a.user.as_deref().map(parse_user).transpose()?,
                additional_gids: a.additional_gids.clone(),
                caps: a.cap.clone(),
                tty: a.tty,
                no_new_privs: a.no_new_privs,
                apparmor: a.apparmor.clone(),
            })
        }
    };
    let req = ExecRequest {
        id: ContainerId::parse(&a.id)?,
        process,
        pid_file: a.pid_file.clone(),
        console_socket: a.console_socket.clone(),
        preserve_fds: preserved(a.preserve_fds)?,
        ignore_paused: a.ignore_paused,
    };
    let attach = if a.detach {
        Attach::Detach
    } else {
        Attach::Foreground
    };
    Ok(rt.exec(&req, attach)?)
}

fn state_json(s: &ContainerState) -> serde_json::Value {
    let mut v = serde_json::json!({
        "ociVersion": wharf_runtime::OCI_VERSION,
        "id": s.id,
        "pid": s.pid,
        "status": s.status.as_str(),
        "bundle": s.bundle,
        "rootfs": s.rootfs,
        "created": s.created,
        "owner": s.owner,
    });
    if !s.annotations.is_empty() {
        v["annotations"] = serde_json::json!(s.annotations);
    }
    v
}

fn print_json_pretty(v: &serde_json::Value) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}

fn list(rt: &Runtime, format: &str, quiet: bool) -> anyhow::Result<i32> {
    let states = rt.list()?;
    let mut out = std::io::stdout().lock();
    if quiet {
        for s in &states {
            writeln!(out, "{}", s.id)?;
        }
        return Ok(0);
    }
    match format {
        "json" => {
            let all: Vec<_> = states.iter().map(state_json).collect();
            serde_json::to_writer(&mut out, &all)?;
            writeln!(out)?;
        }
        "table" => {
            let rows: Vec<[String; 6]> = states
                .iter()
                .map(|s| {
                    [
                        s.id.clone(),
                        s.pid.to_string(),
                        s.status.as_str().to_owned(),
                        s.bundle.display().to_string(),
                        s.created.clone(),
                        s.owner.clone(),
                    ]
                })
                .collect();
            write_table(
                &mut out,
                ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"],
                &rows,
            )?;
        }
        other => bail!("invalid format {other:?}: use table or json"),
    }
    Ok(0)
}

fn write_table<const N: usize>(
    out: &mut impl Write,
    header: [&str; N],
    rows: &[[String; N]],
) -> std::io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == N {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}   ", w = *w));
            }
        }
        s
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for row in rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

fn ps(rt: &Runtime, id: &ContainerId, format: &str, ps_args: &[String]) -> anyhow::Result<i32> {
    let pids = rt.pids(id)?;
    match format {
        "json" => {
            println!("{}", serde_json::to_string(&pids)?);
            Ok(0)
        }
        "table" => {
            let args: Vec<String> = if ps_args.is_empty() {
                vec!["-ef".into()]
            } else {
                ps_args.to_vec()
            };
            let output = std::process::Command::new("ps")
                .args(&args)
                .output()
                .context("run ps")?;
            if !output.status.success() {
                bail!(
                    "ps {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&output.stderr).trim()
                );
            }
            let text = String::from_utf8_lossy(&output.stdout);
            let mut lines = text.lines();
            let header = lines.next().unwrap_or_default();
            let pid_col = header
                .split_whitespace()
                .position(|h| h == "PID")
                .ok_or_else(|| anyhow!("ps output has no PID column"))?;
            let mut out = std::io::stdout().lock();
            writeln!(out, "{header}")?;
            for line in lines {
                if let Some(pid) = line
                    .split_whitespace()
                    .nth(pid_col)
                    .and_then(|p| p.parse::<i32>().ok())
                {
                    if pids.contains(&pid) {
                        writeln!(out, "{line}")?;
                    }
                }
            }
            Ok(0)
        }
        other => bail!("invalid format {other:?}: use table or json"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_parsing_is_strict() {
        assert_eq!(parse_user("1").unwrap(), (1, None));
        assert_eq!(parse_user("1:2").unwrap(), (1, Some(2)));
        for bad in [
            "",
            "-1",
            "4294967296",
            "4294967295",
            "2147483648x",
            "99999999999999999999",
            "root",
            "1:",
            ":1",
            "1:-1",
            " 1",
        ] {
            assert!(parse_user(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_user("2147483648").unwrap(), (2_147_483_648, None));
    }
}
