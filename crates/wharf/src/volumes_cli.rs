//! `volume …` commands with Docker's names, flags and output: create, ls,
//! inspect, rm, prune. Flags become engine requests here; output is
//! rendered here.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};

use anyhow::bail;
use wharf_engine::volumes::{
    prune_filters, CreateVolumeRequest, Volume, VolumeFilters, VolumeName, VolumeStore,
    LOCAL_DRIVER,
};
use wharf_engine::Engine;

use crate::output::{human_size, Table};

/// `volume …`.
#[derive(Debug, clap::Subcommand)]
#[command(defer = true)]
pub(crate) enum VolumeCommand {
    /// Create a volume.
    Create(CreateArgs),
    /// List volumes.
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Show volumes as JSON.
    Inspect(InspectArgs),
    /// Remove volumes.
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Remove volumes no container uses.
    Prune(PruneArgs),
}

/// `volume create`.
#[derive(Debug, clap::Args)]
pub(crate) struct CreateArgs {
    /// The name; without one, a random name (an anonymous volume).
    name: Option<String>,
    /// Volume driver: only `local`.
    #[arg(short, long, default_value = LOCAL_DRIVER)]
    driver: String,
    /// Driver option `KEY=VALUE`: `type`, `device`, `o` (as mount(8)).
    #[arg(short = 'o', long = "opt", value_name = "KEY=VALUE")]
    opts: Vec<String>,
    /// Label `KEY=VALUE`.
    #[arg(long, value_name = "KEY=VALUE")]
    label: Vec<String>,
}

/// `volume ls`.
#[derive(Debug, clap::Args)]
pub(crate) struct LsArgs {
    /// Only volume names.
    #[arg(short, long)]
    quiet: bool,
    /// `name=`, `label=KEY[=VALUE]`, `dangling=true|false`, `driver=`.
    #[arg(short, long, value_name = "FILTER")]
    filter: Vec<String>,
    /// `table` (default), `json` (one object per line) or `{{.Name}}`.
    #[arg(long)]
    format: Option<String>,
}

/// `volume inspect`.
#[derive(Debug, clap::Args)]
pub(crate) struct InspectArgs {
    /// Volumes.
    #[arg(required = true)]
    names: Vec<String>,
    /// Omitted: a JSON array; `json`: one object per line; `{{.Name}}`.
    #[arg(short, long)]
    format: Option<String>,
}

/// `volume rm`.
#[derive(Debug, clap::Args)]
pub(crate) struct RmArgs {
    /// Volumes.
    #[arg(required = true)]
    names: Vec<String>,
    /// A missing volume is no error (a volume in use is still refused).
    #[arg(short, long)]
    force: bool,
}

/// `volume prune`.
#[derive(Debug, clap::Args)]
pub(crate) struct PruneArgs {
    /// Remove all unused volumes, not only anonymous ones.
    #[arg(short, long)]
    all: bool,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    force: bool,
    /// `label=KEY[=VALUE]`, `label!=KEY[=VALUE]`.
    #[arg(long, value_name = "FILTER")]
    filter: Vec<String>,
}

/// Runs `volume …`.
pub(crate) fn run(engine: &Engine, command: VolumeCommand) -> anyhow::Result<i32> {
    let store = VolumeStore::open(engine.root())?;
    match command {
        VolumeCommand::Create(a) => create(&store, a),
        VolumeCommand::Ls(a) => ls(&store, a),
        VolumeCommand::Inspect(a) => inspect(&store, a),
        VolumeCommand::Rm(a) => rm(&store, a),
        VolumeCommand::Prune(a) => prune(&store, a),
    }
}

/// `KEY=VALUE` pairs in order; a bare `KEY` has an empty value (Docker's
/// map options).
fn key_values(values: &[String]) -> Vec<(String, String)> {
    values
        .iter()
        .map(|v| match v.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (v.clone(), String::new()),
        })
        .collect()
}

/// `volume create` flags → the engine's request.
fn create_request(a: &CreateArgs) -> anyhow::Result<CreateVolumeRequest> {
    Ok(CreateVolumeRequest {
        name: a.name.as_deref().map(VolumeName::parse).transpose()?,
        driver: a.driver.clone(),
        options: key_values(&a.opts),
        labels: key_values(&a.label).into_iter().collect::<BTreeMap<_, _>>(),
    })
}

fn create(store: &VolumeStore, a: CreateArgs) -> anyhow::Result<i32> {
    let volume = store.create(&create_request(&a)?)?;
    println!("{}", volume.name);
    Ok(0)
}

/// Renders `volume ls` output for `--format`: omitted or `table`, `json`
/// (one object per line), or exactly `{{.Name}}`. A Go-template engine
/// replaces this function.
fn render_list(volumes: &[Volume], format: Option<&str>) -> anyhow::Result<String> {
    let mut out = String::new();
    match format {
        None | Some("table") => {
            let mut table = Table::new(&["DRIVER", "VOLUME NAME"]);
            for v in volumes {
                table.row(vec![v.driver.clone(), v.name.to_string()]);
            }
            out = table.render();
        }
        Some("json") => {
            for v in volumes {
                out.push_str(&serde_json::to_string(&wharf_api::volumes::list_entry(v))?);
                out.push('\n');
            }
        }
        Some("{{.Name}}") => {
            for v in volumes {
                out.push_str(v.name.as_str());
                out.push('\n');
            }
        }
        Some(other) => bail!("unsupported --format {other:?}: use table, json or {{{{.Name}}}}"),
    }
    Ok(out)
}

fn ls(store: &VolumeStore, a: LsArgs) -> anyhow::Result<i32> {
    let filters = VolumeFilters::parse(&a.filter)?;
    let volumes = store.list(&filters)?;
    let format = if a.quiet {
        Some("{{.Name}}")
    } else {
        a.format.as_deref()
    };
    print!("{}", render_list(&volumes, format)?);
    Ok(0)
}

fn inspect(store: &VolumeStore, a: InspectArgs) -> anyhow::Result<i32> {
    if let Some(f) = a
        .format
        .as_deref()
        .filter(|f| !matches!(*f, "json" | "{{.Name}}"))
    {
        bail!("unsupported --format {f:?}: use json or {{{{.Name}}}}");
    }
    let mut found = Vec::new();
    let mut failed = false;
    for name in &a.names {
        match VolumeName::lookup(name).and_then(|n| store.inspect(&n)) {
            Ok(v) => found.push(v),
            Err(e) => {
                eprintln!("wharf: error: {}", crate::chain(&e));
                failed = true;
            }
        }
    }
    match a.format.as_deref() {
        None => {
            let out: Vec<_> = found.iter().map(wharf_api::volumes::inspect).collect();
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        Some("json") => {
            for v in &found {
                println!(
                    "{}",
                    serde_json::to_string(&wharf_api::volumes::inspect(v))?
                );
            }
        }
        Some(_) => {
            for v in &found {
                println!("{}", v.name);
            }
        }
    }
    Ok(i32::from(failed))
}

fn rm(store: &VolumeStore, a: RmArgs) -> anyhow::Result<i32> {
    let mut failed = false;
    for name in &a.names {
        let removed = VolumeName::lookup(name).and_then(|n| store.remove(&n, a.force));
        match removed {
            Ok(()) => println!("{name}"),
            Err(e) if a.force && e.kind() == wharf_engine::ErrorKind::NotFound => {
                println!("{name}");
            }
            Err(e) => {
                eprintln!("wharf: error: {}", crate::chain(&e));
                failed = true;
            }
        }
    }
    Ok(i32::from(failed))
}

fn prune(store: &VolumeStore, a: PruneArgs) -> anyhow::Result<i32> {
    let labels = prune_filters(&a.filter)?;
    if !a.force {
        if !std::io::stdin().is_terminal() {
            bail!("volume prune asks for confirmation and stdin is not a terminal: use --force");
        }
        let what = if a.all {
            "all local volumes"
        } else {
            "anonymous local volumes"
        };
        eprint!(
            "WARNING! This will remove {what} not used by at least one container.\n\
             Are you sure you want to continue? [y/N] "
        );
        std::io::stderr().flush()?;
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Ok(0);
        }
    }
    let report = store.prune(a.all, &labels)?;
    if !report.removed.is_empty() {
        println!("Deleted Volumes:");
        for name in &report.removed {
            println!("{name}");
        }
        println!();
    }
    println!("Total reclaimed space: {}", human_size(report.reclaimed));
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        command: VolumeCommand,
    }

    fn parse(args: &[&str]) -> VolumeCommand {
        Cli::try_parse_from(std::iter::once("volume").chain(args.iter().copied()))
            .unwrap()
            .command
    }

    #[test]
    fn create_flags_become_a_request() {
        let VolumeCommand::Create(a) = parse(&[
            "create",
            "data",
            "-o",
            "type=tmpfs",
            "--opt",
            "device=tmpfs",
            "-o",
            "o=size=64m,uid=1000",
            "--label",
            "env=prod",
            "--label",
            "bare",
        ]) else {
            panic!("not create");
        };
        let r = create_request(&a).unwrap();
        assert_eq!(r.name.unwrap().as_str(), "data");
        assert_eq!(r.driver, "local");
        assert_eq!(
            r.options,
            [
                ("type".to_owned(), "tmpfs".to_owned()),
                ("device".to_owned(), "tmpfs".to_owned()),
                ("o".to_owned(), "size=64m,uid=1000".to_owned()),
            ]
        );
        assert_eq!(r.labels["env"], "prod");
        assert_eq!(r.labels["bare"], "");
        let VolumeCommand::Create(a) = parse(&["create", "-d", "nfs"]) else {
            panic!("not create");
        };
        let r = create_request(&a).unwrap();
        assert!(r.name.is_none());
        assert_eq!(r.driver, "nfs");
    }

    #[test]
    fn list_renders_dockers_table_json_and_names() {
        let v = Volume {
            name: VolumeName::parse("data").unwrap(),
            driver: "local".into(),
            mountpoint: "/x/_data".into(),
            created: std::time::UNIX_EPOCH,
            labels: BTreeMap::new(),
            options: BTreeMap::new(),
            scope: "local",
            anonymous: false,
        };
        assert_eq!(
            render_list(std::slice::from_ref(&v), None).unwrap(),
            "DRIVER    VOLUME NAME\nlocal     data\n"
        );
        assert_eq!(render_list(&[], None).unwrap(), "DRIVER    VOLUME NAME\n");
        assert_eq!(
            render_list(std::slice::from_ref(&v), Some("{{.Name}}")).unwrap(),
            "data\n"
        );
        let json = render_list(std::slice::from_ref(&v), Some("json")).unwrap();
        let parsed: serde_json::Value = serde_json::from_str(json.trim_end()).unwrap();
        assert_eq!(parsed["Name"], "data");
        assert!(render_list(&[v], Some("{{.Driver}}")).is_err());
        assert!(matches!(parse(&["list", "-q"]), VolumeCommand::Ls(_)));
        assert!(matches!(parse(&["remove", "x1"]), VolumeCommand::Rm(_)));
    }
}
