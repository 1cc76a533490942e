//! The `wharf` binary: the command line over Wharf's libraries.
//!
//! Invoked as `wharf-runc` (a link to this binary) it is the runc-compatible
//! OCI runtime command line; `wharf runtime …` is the same command line.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::exit,
    reason = "the binary owns stdout, stderr and the exit status"
)]

mod attach;
mod containers_cli;
mod containers_fs_cli;
mod format;
mod images_cli;
mod init;
mod log;
mod monitor_main;
mod networks_cli;
mod output;
mod pods_cli;
mod proc_info;
mod progress;
mod run_flags;
mod runtime_cli;
mod system_cli;
mod volumes_cli;

use std::ffi::OsString;
use std::path::Path;

use clap::Parser;

/// Wharf: a daemonless Linux container engine with its own OCI runtime.
#[derive(Debug, Parser)]
#[command(name = "wharf", version, about)]
struct Cli {
    /// Store and state root (default: /var/lib/wharf for root,
    /// $XDG_DATA_HOME/wharf, else ~/.local/share/wharf, for a user).
    #[arg(long, global = true)]
    root: Option<std::path::PathBuf>,
    /// Storage driver: overlay (default) or vfs.
    #[arg(long, global = true)]
    storage_driver: Option<String>,
    /// Log level of Wharf's own messages on stderr.
    #[arg(long, global = true, default_value = "warn", value_parser = ["error", "warn", "info", "debug", "trace"])]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

// `defer`: a subcommand's arguments are built only when it is the one
// invoked (here and in every subcommand enum). Building all of them took
// about 1 ms of every command's start, `wharf run` included.
/// Subcommands built with the rest of the command line: `runtime` has a
/// `--root` of its own, which a global `--root` must not be propagated
/// next to (clap propagates globals before a deferred subcommand is built).
#[derive(Debug, clap::Subcommand)]
enum EagerCommand {
    /// The runc-compatible OCI runtime (`wharf runtime run …`); also
    /// available as `wharf-runc`.
    #[command(disable_help_flag = false)]
    Runtime(runtime_cli::RuntimeCli),
}

#[derive(Debug, clap::Subcommand)]
#[command(defer = true)]
enum Command {
    #[command(flatten)]
    Eager(EagerCommand),
    /// Pull an image from a registry.
    Pull(images_cli::PullArgs),
    /// Push an image to a registry.
    Push(images_cli::PushArgs),
    /// Log in to a registry.
    Login(images_cli::LoginArgs),
    /// Log out of a registry.
    Logout(images_cli::LogoutArgs),
    /// List images.
    Images(images_cli::ImagesArgs),
    /// Manage images.
    #[command(subcommand)]
    Image(images_cli::ImageCommand),
    /// Name an image.
    Tag(images_cli::TagArgs),
    /// Remove images.
    Rmi(images_cli::RmiArgs),
    /// Show an image's history.
    History(images_cli::HistoryArgs),
    /// Make an image from a root filesystem tar.
    Import(images_cli::ImportArgs),
    /// Write images to a docker-archive or oci-archive.
    Save(images_cli::SaveArgs),
    /// Read images from an archive (file or stdin).
    Load(images_cli::LoadArgs),
    /// Disk usage, store checks and pruning.
    #[command(subcommand)]
    System(images_cli::SystemCommand),
    /// Manage volumes.
    #[command(subcommand)]
    Volume(volumes_cli::VolumeCommand),
    /// Manage networks.
    #[command(subcommand)]
    Network(networks_cli::NetworkCommand),
    /// Manage pods: containers sharing namespaces.
    #[command(subcommand)]
    Pod(pods_cli::PodCommand),
    /// Create and run a new container from an image.
    Run(containers_cli::RunArgs),
    /// Create a new container.
    Create(containers_cli::CreateArgs),
    /// Start stopped containers.
    Start(containers_cli::StartArgs),
    /// Stop running containers.
    Stop(containers_cli::StopArgs),
    /// Kill running containers.
    Kill(containers_cli::KillArgs),
    /// Restart containers.
    Restart(containers_cli::StopArgs),
    /// Remove containers.
    Rm(containers_cli::RmArgs),
    /// Pause all processes within containers.
    Pause(containers_cli::ContainersArgs),
    /// Unpause all processes within containers.
    Unpause(containers_cli::ContainersArgs),
    /// Block until containers stop, then print their exit codes.
    Wait(containers_cli::ContainersArgs),
    /// List containers.
    Ps(containers_cli::PsArgs),
    /// Fetch the logs of a container.
    Logs(containers_cli::LogsArgs),
    /// Execute a command in a running container.
    Exec(containers_cli::ExecArgs),
    /// Attach to a running container.
    Attach(containers_cli::AttachArgs),
    /// Display detailed information on containers or images.
    Inspect(containers_cli::InspectArgs),
    /// Rename a container.
    Rename(containers_cli::RenameArgs),
    /// Display the running processes of a container.
    Top(containers_cli::TopArgs),
    /// Manage containers.
    #[command(subcommand)]
    Container(containers_cli::ContainerCommand),
    /// Real-time events from the container journal.
    Events(containers_cli::EventsArgs),
    /// Live resource usage of containers.
    Stats(system_cli::StatsArgs),
    /// Show the Wharf version information.
    Version(system_cli::VersionArgs),
    /// Display system-wide information.
    Info(system_cli::InfoArgs),
    /// List port mappings of a container.
    Port(system_cli::PortArgs),
    /// Copy files between a container and the host.
    Cp(containers_fs_cli::CpArgs),
    /// Inspect changes to files on a container's filesystem.
    Diff(containers_fs_cli::DiffArgs),
    /// Export a container's filesystem as a tar archive.
    Export(containers_fs_cli::ExportArgs),
    /// Create a new image from a container's changes.
    Commit(containers_fs_cli::CommitArgs),
}

/// Podman's defaults: the system root for root, the XDG data directory for
/// a user.
fn default_root() -> std::path::PathBuf {
    if rustix::process::geteuid().is_root() {
        return std::path::PathBuf::from(wharf_engine::DEFAULT_ROOT);
    }
    let data = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".local/share"))
        })
        .unwrap_or_else(|| std::path::PathBuf::from(wharf_engine::DEFAULT_ROOT));
    data.join("wharf")
}

/// The error chain joined by ": ", each cause once (STYLE.md §3).
pub(crate) fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if parts.last().is_none_or(|last| !last.ends_with(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

/// Runs an engine command; errors are printed once with their chain and
/// exit 125 (Wharf itself failed).
fn engine_main(cli: Cli) -> i32 {
    let level = cli
        .log_level
        .parse::<tracing::Level>()
        .unwrap_or(tracing::Level::WARN);
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_target(false)
        .without_time()
        .try_init();
    let options = wharf_engine::EngineOptions {
        root: cli.root.clone().unwrap_or_else(default_root),
        storage_driver: cli.storage_driver.clone(),
    };
    let result = wharf_engine::Engine::open(&options)
        .map_err(anyhow::Error::from)
        .and_then(|engine| {
            use containers_cli as c;
            use images_cli as i;
            match cli.command {
                Command::Eager(EagerCommand::Runtime(_)) => {
                    unreachable!("dispatched before the engine opens")
                }
                Command::Pull(a) => i::pull(&engine, a),
                Command::Push(a) => i::push(&engine, a),
                Command::Login(a) => i::login(&engine, a),
                Command::Logout(a) => i::logout(&engine, a),
                Command::Images(a) => i::images(&engine, a),
                Command::Image(c) => i::image(&engine, c),
                Command::Tag(a) => i::tag(&engine, a),
                Command::Rmi(a) => i::rmi(&engine, a),
                Command::History(a) => i::history(&engine, a),
                Command::Import(a) => i::import(&engine, a),
                Command::Save(a) => i::save(&engine, a),
                Command::Load(a) => i::load(&engine, a),
                Command::System(c) => i::system(&engine, c),
                Command::Volume(c) => volumes_cli::run(&engine, c),
                Command::Network(c) => networks_cli::run(&engine, c),
                Command::Pod(c) => pods_cli::run(&engine, c),
                Command::Run(a) => c::run(&engine, a),
                Command::Create(a) => c::create(&engine, a),
                Command::Start(a) => c::start(&engine, a),
                Command::Stop(a) => c::stop(&engine, a),
                Command::Kill(a) => c::kill(&engine, a),
                Command::Restart(a) => c::restart(&engine, a),
                Command::Rm(a) => c::rm(&engine, a),
                Command::Pause(a) => c::pause(&engine, a, true),
                Command::Unpause(a) => c::pause(&engine, a, false),
                Command::Wait(a) => c::wait(&engine, a),
                Command::Ps(a) => c::ps(&engine, a),
                Command::Logs(a) => c::logs(&engine, a),
                Command::Exec(a) => c::exec(&engine, a),
                Command::Attach(a) => c::attach(&engine, a),
                Command::Inspect(a) => c::inspect(&engine, a),
                Command::Rename(a) => c::rename(&engine, a),
                Command::Top(a) => c::top(&engine, a),
                Command::Container(cmd) => c::container(&engine, cmd),
                Command::Events(a) => c::events(&engine, a),
                Command::Stats(a) => system_cli::stats(&engine, a),
                Command::Version(_) => unreachable!("dispatched before the engine opens"),
                Command::Info(a) => system_cli::info(&engine, a),
                Command::Port(a) => system_cli::port(&engine, a),
                Command::Cp(a) => containers_fs_cli::cp(&engine, a),
                Command::Diff(a) => containers_fs_cli::diff(&engine, a),
                Command::Export(a) => containers_fs_cli::export(&engine, a),
                Command::Commit(a) => containers_fs_cli::commit(&engine, a),
            }
        });
    match result {
        Ok(code) => code,
        Err(err) => {
            let root: &(dyn std::error::Error + 'static) = err.as_ref();
            eprintln!("wharf: error: {}", chain(root));
            containers_cli::exit_code(&err)
        }
    }
}

fn main() {
    let args: Vec<OsString> = std::env::args_os().collect();
    let invoked_as = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Hidden re-exec entry points, before any parsing.
    if args.get(1).is_some_and(|a| a == "__init") || invoked_as == "wharf-init" {
        std::process::exit(init::main(args));
    }
    if args
        .get(1)
        .is_some_and(|a| a == "__monitor" || a == wharf_engine::networks::DNS_ENTRY)
    {
        std::process::exit(monitor_main::main(args));
    }
    let code = if invoked_as == "wharf-runc" || invoked_as == "runc" {
        let cli = runtime_cli::RuntimeCli::parse_from(args);
        runtime_cli::main(cli)
    } else {
        let cli = Cli::parse_from(args);
        match cli.command {
            Command::Eager(EagerCommand::Runtime(rt)) => runtime_cli::main(rt),
            Command::Version(a) => system_cli::version(a).unwrap_or_else(|err| {
                eprintln!("wharf: error: {}", chain(err.as_ref()));
                125
            }),
            _ => engine_main(cli),
        }
    };
    std::process::exit(code);
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// clap checks a command line's consistency (unique names, valid
    /// defaults, global options against each subcommand's own) only when a
    /// subcommand is built; deferred ones are built here, every one of them.
    #[test]
    fn every_subcommand_builds() {
        super::Cli::command().debug_assert();
        crate::runtime_cli::RuntimeCli::command().debug_assert();
    }
}
