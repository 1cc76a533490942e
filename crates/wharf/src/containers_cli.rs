//! Container commands with Docker's names, flags, output and exit codes:
//! run, create, start, stop, kill, restart, rm, pause, unpause, wait, ps,
//! logs, exec, attach, inspect, rename, top, container prune, events.

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use wharf_engine::containers::attach::Streams;
use wharf_engine::containers::{Container, ExecOptions, PullPolicy, StartOptions};
use wharf_engine::logs::{format_timestamp, parse_time_arg, ReadOptions, Stream};
use wharf_engine::state::{ContainerName, ContainerState};
use wharf_engine::{Engine, EngineError, ErrorKind};

use crate::attach::{parse_detach_keys, relay, End};
use crate::output::{human_duration, human_size, Table};
use crate::run_flags::CreateFlags;

/// Docker's default detach keys.
const DEFAULT_DETACH_KEYS: &str = "ctrl-p,ctrl-q";

/// `run`.
#[derive(Debug, clap::Args)]
#[command(disable_help_flag = true)]
pub struct RunArgs {
    /// Run in the background and print the container id.
    #[arg(short, long)]
    detach: bool,
    /// Key sequence for detaching.
    #[arg(long, default_value = DEFAULT_DETACH_KEYS)]
    detach_keys: String,
    /// Proxy received signals to the process (no terminal).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    sig_proxy: bool,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
    #[command(flatten)]
    flags: CreateFlags,
}

/// `create`.
#[derive(Debug, clap::Args)]
#[command(disable_help_flag = true)]
pub struct CreateArgs {
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
    #[command(flatten)]
    flags: CreateFlags,
}

/// `start`.
#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// Attach stdout/stderr and forward signals.
    #[arg(short, long)]
    attach: bool,
    /// Attach stdin.
    #[arg(short, long)]
    interactive: bool,
    /// Key sequence for detaching.
    #[arg(long, default_value = DEFAULT_DETACH_KEYS)]
    detach_keys: String,
    /// Containers.
    #[arg(required = true)]
    containers: Vec<String>,
}

/// `stop` and `restart`.
#[derive(Debug, clap::Args)]
pub struct StopArgs {
    /// Seconds to wait before killing the container.
    #[arg(short, long = "time", visible_alias = "timeout")]
    time: Option<u32>,
    /// Containers.
    #[arg(required = true)]
    containers: Vec<String>,
}

/// `kill`.
#[derive(Debug, clap::Args)]
pub struct KillArgs {
    /// Signal to send.
    #[arg(short, long, default_value = "KILL")]
    signal: String,
    /// Containers.
    #[arg(required = true)]
    containers: Vec<String>,
}

/// `rm`.
#[derive(Debug, clap::Args)]
pub struct RmArgs {
    /// Force the removal of a running container (SIGKILL).
    #[arg(short, long)]
    force: bool,
    /// Remove anonymous volumes associated with the container.
    #[arg(short, long)]
    volumes: bool,
    /// Containers.
    #[arg(required = true)]
    containers: Vec<String>,
}

/// Commands taking only container references.
#[derive(Debug, clap::Args)]
pub struct ContainersArgs {
    /// Containers.
    #[arg(required = true)]
    containers: Vec<String>,
}

/// `ps`.
#[derive(Debug, clap::Args)]
pub struct PsArgs {
    /// Show all containers (default shows just running).
    #[arg(short, long)]
    all: bool,
    /// Only display container ids.
    #[arg(short, long)]
    quiet: bool,
    /// Show n last created containers (includes all states).
    #[arg(short = 'n', long)]
    last: Option<usize>,
    /// Show the latest created container (includes all states).
    #[arg(short, long)]
    latest: bool,
    /// Filter output (`name=`, `id=`, `status=`, `label=`, `ancestor=`,
    /// `exited=`).
    #[arg(short, long)]
    filter: Vec<String>,
    /// Don't truncate output.
    #[arg(long)]
    no_trunc: bool,
    /// Display total file sizes.
    #[arg(short, long)]
    size: bool,
    /// Output format: `table`, `json`, or a Go template.
    #[arg(long)]
    format: Option<String>,
}

/// `logs`.
#[derive(Debug, clap::Args)]
pub struct LogsArgs {
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
    /// Number of lines to show from the end (`all`).
    #[arg(short = 'n', long, default_value = "all")]
    tail: String,
    /// The container.
    container: String,
}

/// `exec`.
#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// Keep STDIN open.
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a pseudo-TTY.
    #[arg(short, long)]
    tty: bool,
    /// Run the command in the background.
    #[arg(short, long)]
    detach: bool,
    /// Set environment variables.
    #[arg(short, long = "env")]
    env: Vec<String>,
    /// `name|uid[:group|gid]`.
    #[arg(short, long)]
    user: Option<String>,
    /// Working directory inside the container.
    #[arg(short, long)]
    workdir: Option<String>,
    /// Give extended privileges to the command.
    #[arg(long)]
    privileged: bool,
    /// Key sequence for detaching (accepted for compatibility).
    #[arg(long)]
    detach_keys: Option<String>,
    /// The container, then the command and its arguments (options end at
    /// the container: `exec web ps -e`).
    #[arg(value_name = "CONTAINER COMMAND [ARG...]", required = true, num_args = 2.., trailing_var_arg = true, allow_hyphen_values = true)]
    container_and_command: Vec<String>,
}

/// `attach`.
#[derive(Debug, clap::Args)]
pub struct AttachArgs {
    /// Do not attach STDIN.
    #[arg(long)]
    no_stdin: bool,
    /// Proxy received signals to the process.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    sig_proxy: bool,
    /// Key sequence for detaching.
    #[arg(long, default_value = DEFAULT_DETACH_KEYS)]
    detach_keys: String,
    /// The container.
    container: String,
}

/// `inspect`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// Format the output using a Go template (`{{.State.Status}}`) or `json`.
    #[arg(short, long)]
    format: Option<String>,
    /// Only inspect objects of this type (`container`, `image`).
    #[arg(long = "type")]
    kind: Option<String>,
    /// Display total file sizes (accepted).
    #[arg(short, long)]
    size: bool,
    /// Containers or images.
    #[arg(required = true)]
    names: Vec<String>,
}

/// `rename`.
#[derive(Debug, clap::Args)]
pub struct RenameArgs {
    /// The container.
    container: String,
    /// Its new name.
    new_name: String,
}

/// `top`.
#[derive(Debug, clap::Args)]
pub struct TopArgs {
    /// The container.
    container: String,
    /// `ps` options (accepted; Wharf prints Docker's default columns).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    ps_args: Vec<String>,
}

/// `container prune`.
#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// Do not prompt for confirmation.
    #[arg(short, long)]
    force: bool,
    /// Filters (`label=`, `until=`).
    #[arg(long)]
    filter: Vec<String>,
}

/// `events`.
#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    /// Show events created since this timestamp or relative time.
    #[arg(long)]
    since: Option<String>,
    /// Stream events until this timestamp or relative time.
    #[arg(long)]
    until: Option<String>,
    /// Filter (`container=`, `event=`, `type=container`).
    #[arg(short, long)]
    filter: Vec<String>,
    /// `json` or the default text.
    #[arg(long)]
    format: Option<String>,
}

/// `container …`.
#[derive(Debug, clap::Subcommand)]
#[command(defer = true)]
pub enum ContainerCommand {
    /// Create and run a new container from an image.
    Run(RunArgs),
    /// Create a new container.
    Create(CreateArgs),
    /// Start stopped containers.
    Start(StartArgs),
    /// Stop running containers.
    Stop(StopArgs),
    /// Kill running containers.
    Kill(KillArgs),
    /// Restart containers.
    Restart(StopArgs),
    /// Remove containers.
    #[command(visible_alias = "remove")]
    Rm(RmArgs),
    /// Pause all processes within containers.
    Pause(ContainersArgs),
    /// Unpause all processes within containers.
    Unpause(ContainersArgs),
    /// Block until containers stop, then print their exit codes.
    Wait(ContainersArgs),
    /// List containers.
    #[command(visible_aliases = ["ps", "list"])]
    Ls(PsArgs),
    /// Fetch the logs of a container.
    Logs(LogsArgs),
    /// Execute a command in a running container.
    Exec(ExecArgs),
    /// Attach to a running container.
    Attach(AttachArgs),
    /// Display detailed information on containers.
    Inspect(InspectArgs),
    /// Rename a container.
    Rename(RenameArgs),
    /// Display the running processes of a container.
    Top(TopArgs),
    /// Remove all stopped containers.
    Prune(PruneArgs),
    /// Copy files between a container and the host.
    Cp(crate::containers_fs_cli::CpArgs),
    /// Inspect changes to files on a container's filesystem.
    Diff(crate::containers_fs_cli::DiffArgs),
    /// Export a container's filesystem as a tar archive.
    Export(crate::containers_fs_cli::ExportArgs),
    /// Create a new image from a container's changes.
    Commit(crate::containers_fs_cli::CommitArgs),
}

/// Runs a `container …` command.
pub fn container(engine: &Engine, cmd: ContainerCommand) -> anyhow::Result<i32> {
    match cmd {
        ContainerCommand::Run(a) => run(engine, a),
        ContainerCommand::Create(a) => create(engine, a),
        ContainerCommand::Start(a) => start(engine, a),
        ContainerCommand::Stop(a) => stop(engine, a),
        ContainerCommand::Kill(a) => kill(engine, a),
        ContainerCommand::Restart(a) => restart(engine, a),
        ContainerCommand::Rm(a) => rm(engine, a),
        ContainerCommand::Pause(a) => pause(engine, a, true),
        ContainerCommand::Unpause(a) => pause(engine, a, false),
        ContainerCommand::Wait(a) => wait(engine, a),
        ContainerCommand::Ls(a) => ps(engine, a),
        ContainerCommand::Logs(a) => logs(engine, a),
        ContainerCommand::Exec(a) => exec(engine, a),
        ContainerCommand::Attach(a) => attach(engine, a),
        ContainerCommand::Inspect(a) => inspect(engine, a),
        ContainerCommand::Rename(a) => rename(engine, a),
        ContainerCommand::Top(a) => top(engine, a),
        ContainerCommand::Prune(a) => prune(engine, a),
        ContainerCommand::Cp(a) => crate::containers_fs_cli::cp(engine, a),
        ContainerCommand::Diff(a) => crate::containers_fs_cli::diff(engine, a),
        ContainerCommand::Export(a) => crate::containers_fs_cli::export(engine, a),
        ContainerCommand::Commit(a) => crate::containers_fs_cli::commit(engine, a),
    }
}

/// The exit status for an engine error: 125, or Docker's 126/127 for a
/// command that cannot be run.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    match err.downcast_ref::<EngineError>() {
        Some(EngineError::CommandNotFound { .. }) => 127,
        Some(EngineError::CommandNotExecutable { .. }) => 126,
        _ => 125,
    }
}

/// Makes sure the image is in the store per `--pull`.
fn ensure_image(engine: &Engine, flags: &CreateFlags) -> anyhow::Result<()> {
    // The image takes hyphens (`run busybox ls -l` stops option parsing at
    // the image), so an unknown option lands here; Docker refuses it.
    if flags.image().starts_with('-') {
        bail!(
            "unknown flag: {} (options go before the image)",
            flags.image()
        );
    }
    let policy = flags.pull_policy()?;
    let present = engine.has_image(flags.image())?;
    match (policy, present) {
        (PullPolicy::Never, false) => bail!(
            "image {:?} is not in the store and --pull never forbids pulling it: run `wharf pull {}` first",
            flags.image(),
            flags.image()
        ),
        (PullPolicy::Missing, true) | (PullPolicy::Never, true) => Ok(()),
        _ => {
            if !present {
                eprintln!("Unable to find image '{}' locally", flags.image());
            }
            let request = wharf_engine::images::PullRequest::new(
                flags.image(),
                flags.platform.as_deref(),
                crate::images_cli::default_access(),
            )?;
            let progress = Arc::new(crate::progress::CliProgress::new(false, "Copying"));
            engine
                .pull(&request, progress)
                .with_context(|| format!("pull {}", flags.image()))?;
            Ok(())
        }
    }
}

fn write_cidfile(flags: &CreateFlags, c: &Container) -> anyhow::Result<()> {
    if let Some(path) = &flags.cidfile {
        let mut f = fs_err::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .with_context(|| format!("--cidfile {}: the file must not exist", path.display()))?;
        f.write_all(c.record.id.as_str().as_bytes())?;
    }
    Ok(())
}

fn create_container(
    engine: &Engine,
    flags: &CreateFlags,
    start_next: bool,
) -> anyhow::Result<Container> {
    let mut request = flags.request()?;
    request.start_next = start_next;
    ensure_image(engine, flags)?;
    let container = engine.create_container(&request)?;
    if let Err(e) = write_cidfile(flags, &container) {
        let _ = engine.remove_container(container.record.id.as_str(), true, true);
        return Err(e);
    }
    Ok(container)
}

/// Runs `create`.
pub fn create(engine: &Engine, a: CreateArgs) -> anyhow::Result<i32> {
    let c = create_container(engine, &a.flags, false)?;
    println!("{}", c.record.id);
    Ok(0)
}

/// Runs `run`.
pub fn run(engine: &Engine, a: RunArgs) -> anyhow::Result<i32> {
    let detach_keys = parse_detach_keys(&a.detach_keys)?;
    let attach = (!a.detach).then_some(Streams {
        stdin: a.flags.interactive,
        stdout: true,
        stderr: true,
    });
    // The monitor starts up while the container is created (a failed
    // create lets it go and waits for it).
    let early = engine.early_monitor(attach)?;
    let container = create_container(engine, &a.flags, true)?;
    let id = container.record.id.to_string();
    let started = engine.start_container_with(&id, &StartOptions { attach }, Some(early));
    let (_, stream) = match started {
        Ok(s) => s,
        Err(e) => {
            // A failed run leaves nothing behind.
            if let Err(cleanup) = engine.remove_container(&id, true, true) {
                eprintln!("wharf: warning: remove the container after the failed start: {cleanup}");
            }
            return Err(e.into());
        }
    };
    let Some(stream) = stream else {
        println!("{id}");
        return Ok(0);
    };
    attached(
        engine,
        &id,
        stream,
        a.flags.interactive,
        &detach_keys,
        a.sig_proxy,
    )
}

/// Relays an attachment and turns its end into the exit status.
fn attached(
    engine: &Engine,
    id: &str,
    stream: wharf_engine::containers::AttachStream,
    stdin: bool,
    detach_keys: &[u8],
    sig_proxy: bool,
) -> anyhow::Result<i32> {
    let mut forward = |signal: i32| {
        let _ = engine.kill_container(id, signal);
    };
    let proxy: Option<&mut dyn FnMut(i32)> = if sig_proxy { Some(&mut forward) } else { None };
    match relay(stream, stdin, detach_keys, proxy)? {
        End::Exited(code) => Ok(code.unwrap_or(-1) & 0xff),
        End::Detached => Ok(0),
        End::Closed => Ok(engine.wait_container(id)?.unwrap_or(-1) & 0xff),
    }
}

/// Runs `start`.
pub fn start(engine: &Engine, a: StartArgs) -> anyhow::Result<i32> {
    if a.attach || a.interactive {
        if a.containers.len() > 1 {
            bail!("you cannot start and attach multiple containers at once");
        }
        let detach_keys = parse_detach_keys(&a.detach_keys)?;
        let reference = &a.containers[0];
        let streams = Streams {
            stdin: a.interactive,
            stdout: a.attach,
            stderr: a.attach,
        };
        let (c, stream) = engine.start_container(
            reference,
            &StartOptions {
                attach: Some(streams),
            },
        )?;
        let stream = stream.context("the monitor gave no attach stream")?;
        return attached(
            engine,
            c.record.id.as_str(),
            stream,
            a.interactive,
            &detach_keys,
            true,
        );
    }
    each(&a.containers, |r| {
        engine.start_container(r, &StartOptions::default())?;
        Ok(())
    })
}

/// Applies `f` to each reference, printing it on success and the error on
/// failure; exit 1 when any failed (Docker's multi-container commands).
fn each(
    references: &[String],
    mut f: impl FnMut(&str) -> Result<(), EngineError>,
) -> anyhow::Result<i32> {
    let mut failed = false;
    for r in references {
        match f(r) {
            Ok(()) => println!("{r}"),
            Err(e) => {
                failed = true;
                eprintln!("wharf: error: {}", crate::chain(&e));
            }
        }
    }
    Ok(i32::from(failed))
}

/// Runs `stop`.
pub fn stop(engine: &Engine, a: StopArgs) -> anyhow::Result<i32> {
    each(&a.containers, |r| {
        engine.stop_container(r, a.time).map(drop)
    })
}

/// Runs `restart`.
pub fn restart(engine: &Engine, a: StopArgs) -> anyhow::Result<i32> {
    each(&a.containers, |r| {
        engine.stop_container(r, a.time)?;
        engine
            .start_container(r, &StartOptions::default())
            .map(drop)
    })
}

/// Runs `kill`.
pub fn kill(engine: &Engine, a: KillArgs) -> anyhow::Result<i32> {
    let signal = wharf_runtime::signal::parse(&a.signal)
        .map_err(|e| anyhow::anyhow!("invalid signal {:?}: {e}", a.signal))?;
    each(&a.containers, |r| {
        engine.kill_container(r, signal).map(drop)
    })
}

/// Runs `rm`.
pub fn rm(engine: &Engine, a: RmArgs) -> anyhow::Result<i32> {
    each(&a.containers, |r| {
        engine.remove_container(r, a.force, a.volumes).map(drop)
    })
}

/// Runs `pause` or `unpause`.
pub fn pause(engine: &Engine, a: ContainersArgs, pause: bool) -> anyhow::Result<i32> {
    each(&a.containers, |r| {
        engine.pause_container(r, pause).map(drop)
    })
}

/// Runs `wait`.
pub fn wait(engine: &Engine, a: ContainersArgs) -> anyhow::Result<i32> {
    let mut failed = false;
    for r in &a.containers {
        match engine.wait_container(r) {
            Ok(code) => println!("{}", code.unwrap_or(-1)),
            Err(e) => {
                failed = true;
                eprintln!("wharf: error: {}", crate::chain(&e));
            }
        }
    }
    Ok(i32::from(failed))
}

fn unix_seconds(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn ago(t: Option<SystemTime>) -> String {
    let elapsed = t
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .unwrap_or_default();
    human_duration(elapsed)
}

/// Docker's `ps` STATUS column.
pub fn status_text(c: &Container) -> String {
    let r = &c.record;
    let code = r.exit_code.map_or("unknown".to_owned(), |c| c.to_string());
    match r.state {
        ContainerState::Created => "Created".into(),
        ContainerState::Running => {
            let health = match r.health.as_ref().and_then(|h| h["Status"].as_str()) {
                Some("starting") => " (health: starting)",
                Some("healthy") => " (healthy)",
                Some("unhealthy") => " (unhealthy)",
                _ => "",
            };
            format!("Up {}{health}", ago(r.started_at))
        }
        ContainerState::Paused => format!("Up {} (Paused)", ago(r.started_at)),
        ContainerState::Restarting => format!("Restarting ({code}) {} ago", ago(r.finished_at)),
        ContainerState::Exited => format!("Exited ({code}) {} ago", ago(r.finished_at)),
        ContainerState::Removing => "Removal In Progress".into(),
        ContainerState::Dead => "Dead".into(),
    }
}

/// Docker's quoted, shortened COMMAND column.
fn command_text(c: &Container, no_trunc: bool) -> String {
    let joined = c.config.args.join(" ");
    let quoted = format!("{joined:?}");
    if no_trunc || quoted.chars().count() <= 20 {
        return quoted;
    }
    let mut s: String = quoted.chars().take(19).collect();
    s.push('…');
    s
}

/// One `ps --filter`.
enum PsFilter {
    Name(String),
    Id(String),
    Status(String),
    Label(String, Option<String>),
    Ancestor(String),
    Exited(i32),
    Health(String),
}

fn ps_filter(s: &str) -> anyhow::Result<PsFilter> {
    let (k, v) = s
        .split_once('=')
        .with_context(|| format!("invalid filter {s:?}: expected KEY=VALUE"))?;
    Ok(match k {
        "name" => PsFilter::Name(v.to_owned()),
        "id" => PsFilter::Id(v.to_owned()),
        "status" => {
            const STATES: [&str; 7] = [
                "created",
                "restarting",
                "running",
                "removing",
                "paused",
                "exited",
                "dead",
            ];
            if !STATES.contains(&v) {
                bail!(
                    "invalid filter 'status={v}': use one of {}",
                    STATES.join(", ")
                );
            }
            PsFilter::Status(v.to_owned())
        }
        "label" => match v.split_once('=') {
            Some((lk, lv)) => PsFilter::Label(lk.to_owned(), Some(lv.to_owned())),
            None => PsFilter::Label(v.to_owned(), None),
        },
        "ancestor" => PsFilter::Ancestor(v.to_owned()),
        "health" => {
            if !["starting", "healthy", "unhealthy", "none"].contains(&v) {
                bail!("invalid filter 'health={v}': use starting, healthy, unhealthy or none");
            }
            PsFilter::Health(v.to_owned())
        }
        "exited" => PsFilter::Exited(
            v.parse()
                .map_err(|_| anyhow::anyhow!("invalid filter 'exited={v}': not a number"))?,
        ),
        _ => bail!("invalid filter {k:?}: use name, id, status, label, ancestor, exited or health"),
    })
}

fn matches(engine: &Engine, c: &Container, f: &PsFilter) -> bool {
    let r = &c.record;
    match f {
        PsFilter::Name(n) => r.name.as_str().contains(n.trim_start_matches('/')),
        PsFilter::Id(p) => r.id.as_str().starts_with(p.as_str()),
        PsFilter::Status(s) => r.state.as_str() == s,
        PsFilter::Label(k, v) => r
            .labels
            .get(k)
            .is_some_and(|lv| v.as_ref().is_none_or(|v| v == lv)),
        PsFilter::Ancestor(a) => {
            r.image_name == *a
                || r.image_id
                    .trim_start_matches("sha256:")
                    .starts_with(a.trim_start_matches("sha256:"))
                || engine.image_id_of(a).is_ok_and(|id| id == r.image_id)
        }
        PsFilter::Exited(code) => r.state == ContainerState::Exited && r.exit_code == Some(*code),
        PsFilter::Health(h) => {
            let status = r
                .health
                .as_ref()
                .and_then(|v| v["Status"].as_str())
                .unwrap_or("none");
            status == h
        }
    }
}

/// `ps` column headers (Docker's).
const PS_HEADERS: &[(&str, &str)] = &[
    ("ID", "CONTAINER ID"),
    ("Image", "IMAGE"),
    ("Command", "COMMAND"),
    ("CreatedAt", "CREATED AT"),
    ("RunningFor", "CREATED"),
    ("Status", "STATUS"),
    ("State", "STATE"),
    ("Ports", "PORTS"),
    ("Names", "NAMES"),
    ("Labels", "LABELS"),
    ("Size", "SIZE"),
    ("Mounts", "MOUNTS"),
    ("Networks", "NETWORKS"),
];

/// Runs `ps`.
pub fn ps(engine: &Engine, a: PsArgs) -> anyhow::Result<i32> {
    let filters: Vec<PsFilter> = a
        .filter
        .iter()
        .map(|f| ps_filter(f))
        .collect::<anyhow::Result<_>>()?;
    let all = a.all
        || a.last.is_some()
        || a.latest
        || filters
            .iter()
            .any(|f| matches!(f, PsFilter::Status(_) | PsFilter::Exited(_)));
    let mut list: Vec<Container> = engine
        .list_containers(all)?
        .into_iter()
        .filter(|c| filters.iter().all(|f| matches(engine, c, f)))
        .collect();
    if a.latest {
        list.truncate(1);
    } else if let Some(n) = a.last {
        list.truncate(n);
    }
    let mut out = String::new();
    if a.quiet {
        for c in &list {
            let id = if a.no_trunc {
                c.record.id.as_str()
            } else {
                c.record.id.short()
            };
            out.push_str(id);
            out.push('\n');
        }
        print!("{out}");
        return Ok(0);
    }
    let size = |c: &Container| {
        if a.size {
            engine
                .container_size(c)
                .map(|(rw, virt)| format!("{} (virtual {})", human_size(rw), human_size(virt)))
                .unwrap_or_default()
        } else {
            String::new()
        }
    };
    /// Docker's PORTS cell: `0.0.0.0:8080->80/tcp, 0.0.0.0:5353->5353/udp`.
    fn ports_text(c: &Container) -> String {
        if c.config.networks.is_empty() || !c.record.state.is_up() {
            return String::new();
        }
        let Ok(Some(state)) = wharf_engine::networks::NetworkState::read(&c.dir) else {
            return String::new();
        };
        state
            .ports
            .iter()
            .map(|p| {
                let ip = match p.host_ip {
                    None => "0.0.0.0".to_owned(),
                    Some(std::net::IpAddr::V6(ip)) => format!("[{ip}]"),
                    Some(ip) => ip.to_string(),
                };
                format!("{ip}:{}->{}/{}", p.host_port, p.container_port, p.protocol)
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
    let id = |c: &Container| {
        if a.no_trunc {
            c.record.id.as_str().to_owned()
        } else {
            c.record.id.short().to_owned()
        }
    };
    let format = crate::format::Format::parse(a.format.as_deref().unwrap_or(""));
    out = if format == crate::format::Format::Table {
        // The default table: cells straight from the records, no template
        // engine or JSON rows (cheaper with many containers).
        let mut header = vec![
            "CONTAINER ID",
            "IMAGE",
            "COMMAND",
            "CREATED",
            "STATUS",
            "PORTS",
            "NAMES",
        ];
        if a.size {
            header.push("SIZE");
        }
        let mut t = Table::new(&header);
        for c in &list {
            let mut cells = vec![
                id(c),
                c.record.image_name.clone(),
                command_text(c, a.no_trunc),
                format!("{} ago", ago(Some(c.record.created))),
                status_text(c),
                ports_text(c),
                c.record.name.to_string(),
            ];
            if a.size {
                cells.push(size(c));
            }
            t.row(cells);
        }
        t.render()
    } else {
        let rows: Vec<serde_json::Value> = list
            .iter()
            .map(|c| {
                serde_json::json!({
                    "ID": id(c),
                    "Image": c.record.image_name,
                    "Command": command_text(c, a.no_trunc),
                    "CreatedAt": crate::output::created_at(unix_seconds(c.record.created)),
                    "RunningFor": format!("{} ago", ago(Some(c.record.created))),
                    "Status": status_text(c),
                    "State": c.record.state.as_str(),
                    "Ports": ports_text(c),
                    "Names": c.record.name.as_str(),
                    "Labels": c.record.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
                    "Size": size(c),
                    "Mounts": c.config.mounts.iter().map(|m| m.destination.clone()).collect::<Vec<_>>().join(","),
                    "Networks": c.config.network,
                })
            })
            .collect();
        let mut table = String::from(
            "{{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}",
        );
        if a.size {
            table.push_str("\t{{.Size}}");
        }
        crate::format::render_rows(&format, &table, PS_HEADERS, &rows)?
    };
    print!("{out}");
    Ok(0)
}

/// `--since`, `--until` (relative to now), `--tail` (a number or `all`),
/// `-t` and `-f` → what the log reader takes (`logs`, `pod logs`).
pub(crate) fn read_options(
    since: Option<&str>,
    until: Option<&str>,
    tail: &str,
    timestamps: bool,
    follow: bool,
) -> anyhow::Result<ReadOptions> {
    let now = SystemTime::now();
    Ok(ReadOptions {
        since: since.map(|s| parse_time_arg(s, now)).transpose()?,
        until: until.map(|s| parse_time_arg(s, now)).transpose()?,
        tail: match tail {
            "all" | "" => None,
            n => Some(
                n.parse()
                    .map_err(|_| anyhow::anyhow!("invalid --tail {n:?}: a number or all"))?,
            ),
        },
        timestamps,
        follow,
    })
}

/// Runs `logs`.
pub fn logs(engine: &Engine, a: LogsArgs) -> anyhow::Result<i32> {
    let c = engine.container(&a.container)?;
    let options = read_options(
        a.since.as_deref(),
        a.until.as_deref(),
        &a.tail,
        a.timestamps,
        a.follow,
    )?;
    let id = c.record.id.to_string();
    let is_running = || {
        engine
            .container(&id)
            .map(|c| c.record.state.is_up())
            .unwrap_or(false)
    };
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let timestamps = a.timestamps;
    engine.read_container_logs(&c, &options, is_running, |line| {
        let prefix = if timestamps {
            format!("{} ", format_timestamp(line.time))
        } else {
            String::new()
        };
        match line.stream {
            Stream::Stdout => {
                let mut o = stdout.lock();
                o.write_all(prefix.as_bytes())?;
                o.write_all(&line.bytes)?;
                o.flush()
            }
            Stream::Stderr => {
                let mut e = stderr.lock();
                e.write_all(prefix.as_bytes())?;
                e.write_all(&line.bytes)?;
                e.flush()
            }
        }
    })?;
    Ok(0)
}

/// Runs `exec`.
pub fn exec(engine: &Engine, a: ExecArgs) -> anyhow::Result<i32> {
    // The process about to fork into the container must not be running a
    // writable host binary (CVE-2019-5736).
    wharf_sys::exe::ensure_sealed().context("seal the wharf binary before exec")?;
    let container = a.container_and_command[0].clone();
    let options = ExecOptions {
        cmd: a.container_and_command[1..].to_vec(),
        env: a
            .env
            .iter()
            .filter_map(|e| {
                if e.contains('=') {
                    Some(e.clone())
                } else {
                    std::env::var(e).ok().map(|v| format!("{e}={v}"))
                }
            })
            .collect(),
        user: a.user,
        workdir: a.workdir,
        tty: a.tty,
        detach: a.detach,
        privileged: a.privileged,
    };
    let _ = a.interactive;
    Ok(engine.exec_container(&container, &options)?)
}

/// Runs `attach`.
pub fn attach(engine: &Engine, a: AttachArgs) -> anyhow::Result<i32> {
    let detach_keys = parse_detach_keys(&a.detach_keys)?;
    let streams = Streams {
        stdin: !a.no_stdin,
        stdout: true,
        stderr: true,
    };
    let (c, stream) = engine.attach_container(&a.container, streams)?;
    let stdin = !a.no_stdin && c.config.open_stdin;
    attached(
        engine,
        c.record.id.as_str(),
        stream,
        stdin,
        &detach_keys,
        a.sig_proxy,
    )
}

/// `inspect` JSON of a container.
pub fn inspect_json(engine: &Engine, c: &Container) -> serde_json::Value {
    let rootfs = engine.container_rootfs_path(c);
    let log = c.dir.join("container.log");
    wharf_api::containers::inspect(
        c,
        &rootfs.display().to_string(),
        &log.display().to_string(),
        engine.storage_driver(),
    )
}

/// Runs `inspect` (containers first, then images, unless `--type`).
pub fn inspect(engine: &Engine, a: InspectArgs) -> anyhow::Result<i32> {
    let _ = a.size;
    let mut values = Vec::new();
    let mut failed = false;
    for name in &a.names {
        let container = match a.kind.as_deref() {
            Some("image") => None,
            Some("container") | None => match engine.container(name) {
                Ok(c) => Some(c),
                Err(e) if e.kind() == ErrorKind::NotFound && a.kind.is_none() => None,
                Err(e) => {
                    eprintln!("wharf: error: {}", crate::chain(&e));
                    failed = true;
                    continue;
                }
            },
            Some(other) => bail!("invalid --type {other:?}: use container or image"),
        };
        if let Some(c) = container {
            values.push(inspect_json(engine, &c));
            continue;
        }
        match crate::images_cli::inspect_value(engine, name) {
            Ok(v) => values.push(v),
            Err(_) => {
                eprintln!("wharf: error: no such object: {name}");
                failed = true;
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

/// Runs `rename`.
pub fn rename(engine: &Engine, a: RenameArgs) -> anyhow::Result<i32> {
    let name = ContainerName::parse(a.new_name.trim_start_matches('/'))?;
    engine.rename_container(&a.container, &name)?;
    Ok(0)
}

/// Runs `top`: Docker's default `ps -ef` columns, read from /proc.
pub fn top(engine: &Engine, a: TopArgs) -> anyhow::Result<i32> {
    let _ = a.ps_args;
    let pids = engine.container_pids(&a.container)?;
    let mut t = Table::new(&["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]);
    for pid in pids {
        if let Some(row) = crate::proc_info::ps_row(pid) {
            t.row(row);
        }
    }
    print!("{}", t.render());
    Ok(0)
}

/// Runs `container prune`.
pub fn prune(engine: &Engine, a: PruneArgs) -> anyhow::Result<i32> {
    let filter = crate::system_cli::prune_filter(&a.filter)?;
    if !a.force {
        use std::io::IsTerminal as _;
        if !std::io::stdin().is_terminal() {
            bail!("container prune asks for confirmation: use --force (-f) when stdin is not a terminal");
        }
        eprint!("WARNING! This will remove all stopped containers.\nAre you sure you want to continue? [y/N] ");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Ok(0);
        }
    }
    let report = engine.prune_containers(&filter)?;
    for (id, e) in &report.failed {
        eprintln!(
            "wharf: error: remove container {}: {}",
            id.short(),
            crate::chain(e)
        );
    }
    print!(
        "{}",
        crate::system_cli::deleted_section("Containers", &report.removed)
    );
    println!("Total reclaimed space: {}", human_size(report.reclaimed));
    Ok(0)
}

/// Runs `events`: the journal, then (without `--until`) new events as they
/// are recorded.
pub fn events(engine: &Engine, a: EventsArgs) -> anyhow::Result<i32> {
    let now = SystemTime::now();
    let since = a
        .since
        .as_deref()
        .map(|s| parse_time_arg(s, now))
        .transpose()?;
    let until = a
        .until
        .as_deref()
        .map(|s| parse_time_arg(s, now))
        .transpose()?;
    let mut filters: Vec<(String, String)> = Vec::new();
    for f in &a.filter {
        let (k, v) = f
            .split_once('=')
            .with_context(|| format!("invalid filter {f:?}: expected KEY=VALUE"))?;
        if !matches!(k, "container" | "event" | "type" | "image" | "label") {
            bail!("invalid filter {k:?}: use container, event, image, label or type");
        }
        filters.push((k.to_owned(), v.to_owned()));
    }
    // Without --since, only events from now on (Docker).
    let since = since.or(Some(now));
    let mut after = 0;
    let stdout = std::io::stdout();
    loop {
        for e in engine.container_events(since, after)? {
            after = e.seq;
            if until.is_some_and(|u| e.time > u) {
                return Ok(0);
            }
            let keep = filters.iter().all(|(k, v)| match k.as_str() {
                "container" => e.name == *v || e.container.as_str().starts_with(v.as_str()),
                "event" => e.action == *v,
                "type" => v == "container",
                "image" => e.attributes.get("image").is_some_and(|i| i == v),
                _ => true,
            });
            if !keep {
                continue;
            }
            let mut out = stdout.lock();
            if a.format.as_deref() == Some("json") {
                let mut attrs = e.attributes.clone();
                attrs.insert("name".into(), e.name.clone());
                let nanos = e.time.duration_since(UNIX_EPOCH).unwrap_or_default();
                writeln!(
                    out,
                    "{}",
                    serde_json::json!({
                        "status": e.action, "id": e.container.as_str(), "Type": "container",
                        "Action": e.action, "Actor": {"ID": e.container.as_str(), "Attributes": attrs},
                        "scope": "local", "time": nanos.as_secs(), "timeNano": nanos.as_nanos() as u64,
                    })
                )?;
            } else {
                let mut attrs: Vec<String> = e
                    .attributes
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                attrs.push(format!("name={}", e.name));
                writeln!(
                    out,
                    "{} container {} {} ({})",
                    format_timestamp(e.time),
                    e.action,
                    e.container,
                    attrs.join(", ")
                )?;
            }
            out.flush()?;
        }
        if until.is_some_and(|u| SystemTime::now() > u) {
            return Ok(0);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
