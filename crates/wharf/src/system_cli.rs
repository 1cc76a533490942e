//! Whole-engine commands with Docker's names, flags and output: `stats`,
//! `version`, `info`, `system prune` and `port`.

use std::collections::HashMap;
use std::io::{IsTerminal as _, Write as _};
use std::time::{Duration, SystemTime};

use anyhow::bail;
use wharf_api::system::{BuildFacts, Info};
use wharf_engine::containers::{cpu_percent, Container, StatsSample};
use wharf_engine::logs::parse_time_arg;
use wharf_engine::system::PruneFilter;
use wharf_engine::volumes::{LabelFilter, VolumeStore};
use wharf_engine::Engine;

use crate::format::{render_rows, render_value, Format};
use crate::output::{bytes_size, human_size};

/// `stats`.
#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    /// Show all containers (default shows just running).
    #[arg(short, long)]
    all: bool,
    /// Disable streaming stats and only pull the first result.
    #[arg(long)]
    no_stream: bool,
    /// Do not truncate output.
    #[arg(long)]
    no_trunc: bool,
    /// `table`, `table TEMPLATE`, `json` or a Go template.
    #[arg(long)]
    format: Option<String>,
    /// Containers (default: all running, or all with `-a`).
    containers: Vec<String>,
}

impl StatsArgs {
    /// `stats` of these containers (`pod stats`).
    pub(crate) fn of(
        containers: Vec<String>,
        no_stream: bool,
        no_trunc: bool,
        format: Option<String>,
    ) -> StatsArgs {
        StatsArgs {
            all: false,
            no_stream,
            no_trunc,
            format,
            containers,
        }
    }
}

/// `version`.
#[derive(Debug, clap::Args)]
pub struct VersionArgs {
    /// `json` or a Go template over `{Client, Server}`.
    #[arg(short, long)]
    format: Option<String>,
}

/// `info`.
#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    /// `json` or a Go template over Docker's info object.
    #[arg(short, long)]
    format: Option<String>,
}

/// `system prune`.
#[derive(Debug, clap::Args)]
pub struct SystemPruneArgs {
    /// Remove all unused images, not just dangling ones.
    #[arg(short, long)]
    all: bool,
    /// Do not prompt for confirmation.
    #[arg(short, long)]
    force: bool,
    /// Prune anonymous volumes.
    #[arg(long)]
    volumes: bool,
    /// Filters (`label=`, `label!=`, `until=`).
    #[arg(long)]
    filter: Vec<String>,
}

/// `port`.
#[derive(Debug, clap::Args)]
pub struct PortArgs {
    /// The container.
    container: String,
    /// `PRIVATE_PORT[/PROTO]`.
    private_port: Option<String>,
}

/// Parses prune `--filter` values: `until=` (a timestamp or a duration
/// before now), `label=KEY[=VALUE]`, `label!=KEY[=VALUE]`.
pub(crate) fn prune_filter(filters: &[String]) -> anyhow::Result<PruneFilter> {
    let mut filter = PruneFilter::default();
    for f in filters {
        match f.split_once('=') {
            Some(("until", v)) => filter.until = Some(parse_time_arg(v, SystemTime::now())?),
            Some(("label", v)) => filter.labels.push(LabelFilter::parse(v, false)),
            Some(("label!", v)) => filter.labels.push(LabelFilter::parse(v, true)),
            _ => bail!("invalid filter {f:?}: use until=, label= or label!="),
        }
    }
    Ok(filter)
}

/// `Deleted TITLE:` then one item per line and a blank line; nothing when
/// there are no items (Docker's prune output).
pub(crate) fn deleted_section(title: &str, items: &[impl std::fmt::Display]) -> String {
    if items.is_empty() {
        return String::new();
    }
    let mut out = format!("Deleted {title}:\n");
    for item in items {
        out.push_str(&item.to_string());
        out.push('\n');
    }
    out.push('\n');
    out
}

/// Asks Docker's `WARNING! This will remove …` question on a terminal;
/// refuses without one. Returns whether to go on.
pub(crate) fn confirm(command: &str, warning: &str) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!("{command} asks for confirmation and stdin is not a terminal: use --force (-f)");
    }
    eprint!("{warning}\nAre you sure you want to continue? [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

/// Runs `system prune`: stopped containers, then (with `--volumes`)
/// anonymous volumes no container uses, then dangling images (all unused
/// ones with `-a`) and the layers and blobs they leave.
pub fn system_prune(engine: &Engine, a: SystemPruneArgs) -> anyhow::Result<i32> {
    let filter = prune_filter(&a.filter)?;
    if a.volumes && filter.until.is_some() {
        bail!("the \"until\" filter is not supported with \"--volumes\"");
    }
    if !a.force {
        let mut warning = String::from("WARNING! This will remove:\n  - all stopped containers\n");
        if a.volumes {
            warning.push_str("  - all anonymous volumes not used by at least one container\n");
        }
        warning.push_str(if a.all {
            "  - all images without at least one container associated to them\n"
        } else {
            "  - all dangling images\n"
        });
        if !confirm("system prune", &warning)? {
            return Ok(0);
        }
    }
    let mut out = String::new();
    let containers = engine.prune_containers(&filter)?;
    for (id, e) in &containers.failed {
        eprintln!(
            "wharf: error: remove container {}: {}",
            id.short(),
            crate::chain(e)
        );
    }
    out.push_str(&deleted_section("Containers", &containers.removed));
    let mut reclaimed = containers.reclaimed;
    if a.volumes {
        let report = VolumeStore::open(engine.root())?.prune(false, &filter.labels)?;
        out.push_str(&deleted_section("Volumes", &report.removed));
        reclaimed += report.reclaimed;
    }
    let (reports, gc) = engine.prune_images_matching(a.all, &filter)?;
    let images: Vec<String> = reports
        .iter()
        .flat_map(|r| {
            let untagged = r.untagged.iter().map(|n| format!("untagged: {n}"));
            let deleted = r.deleted.iter().map(|id| format!("deleted: {id}"));
            untagged.chain(deleted)
        })
        .collect();
    out.push_str(&deleted_section("Images", &images));
    reclaimed += gc.blob_bytes;
    print!("{out}");
    println!("Total reclaimed space: {}", human_size(reclaimed));
    Ok(0)
}

/// Runs `port`: no container publishes ports yet (no bridge networking), so
/// an existing container has none.
pub fn port(engine: &Engine, a: PortArgs) -> anyhow::Result<i32> {
    let c = engine.container(&a.container)?;
    let published = if c.record.state.is_up() {
        wharf_engine::networks::NetworkState::read(&c.dir)?
            .map(|s| s.ports)
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let host = |p: &wharf_engine::networks::PublishedPort| match p.host_ip {
        None => format!("0.0.0.0:{}", p.host_port),
        Some(std::net::IpAddr::V6(ip)) => format!("[{ip}]:{}", p.host_port),
        Some(ip) => format!("{ip}:{}", p.host_port),
    };
    if let Some(port) = a.private_port {
        let port = if port.contains('/') {
            port
        } else {
            format!("{port}/tcp")
        };
        let found: Vec<_> = published
            .iter()
            .filter(|p| format!("{}/{}", p.container_port, p.protocol) == port)
            .collect();
        if found.is_empty() {
            bail!(
                "no public port '{port}' published for {}",
                c.record.name.as_str()
            );
        }
        for p in found {
            println!("{}", host(p));
        }
        return Ok(0);
    }
    for p in &published {
        println!("{}/{} -> {}", p.container_port, p.protocol, host(p));
    }
    Ok(0)
}

/// `stats` column headers (Docker's).
const STATS_HEADERS: &[(&str, &str)] = &[
    ("Container", "CONTAINER"),
    ("ID", "CONTAINER ID"),
    ("Name", "NAME"),
    ("CPUPerc", "CPU %"),
    ("MemUsage", "MEM USAGE / LIMIT"),
    ("MemPerc", "MEM %"),
    ("NetIO", "NET I/O"),
    ("BlockIO", "BLOCK I/O"),
    ("PIDs", "PIDS"),
];

/// Docker's default `stats` table.
const STATS_TABLE: &str =
    "{{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}";

/// How long `stats` waits between its first two samples (CPU% needs two).
const FIRST_INTERVAL: Duration = Duration::from_millis(500);

/// How often live `stats` redraws.
const INTERVAL: Duration = Duration::from_secs(1);

/// One `stats` row as Docker's formatter sees it. `sample` is `None` for a
/// container that does not run (all zeros, as Docker).
pub(crate) fn stats_row(
    container: &str,
    name: &str,
    id: &str,
    sample: Option<&StatsSample>,
    cpu: f64,
) -> serde_json::Value {
    let s = sample.cloned().unwrap_or_default();
    let (cpu, mem_percent) = if sample.is_some() {
        (cpu, s.memory_percent())
    } else {
        (0.0, 0.0)
    };
    serde_json::json!({
        "Container": container,
        "ID": id,
        "Name": name,
        "CPUPerc": format!("{cpu:.2}%"),
        "MemUsage": format!("{} / {}", bytes_size(s.memory_used()), bytes_size(s.memory_limit)),
        "MemPerc": format!("{mem_percent:.2}%"),
        "NetIO": format!("{} / {}", human_size(s.net_rx), human_size(s.net_tx)),
        "BlockIO": format!("{} / {}", human_size(s.block_read), human_size(s.block_write)),
        "PIDs": s.pids.to_string(),
    })
}

/// Runs `stats`: samples the containers twice (CPU% compares samples),
/// prints a table, and without `--no-stream` redraws it every second until
/// interrupted.
pub fn stats(engine: &Engine, a: StatsArgs) -> anyhow::Result<i32> {
    let format = Format::parse(a.format.as_deref().unwrap_or(""));
    // The containers to show, as (what the user called it, container).
    let targets = || -> anyhow::Result<Vec<(String, Container)>> {
        if a.containers.is_empty() {
            Ok(engine
                .list_containers(a.all)?
                .into_iter()
                .map(|c| (c.record.id.short().to_owned(), c))
                .collect())
        } else {
            a.containers
                .iter()
                .map(|r| Ok((r.clone(), engine.container(r)?)))
                .collect()
        }
    };
    let mut previous: HashMap<String, StatsSample> = HashMap::new();
    for (_, c) in targets()? {
        if let Some(s) = engine.container_stats(&c)? {
            previous.insert(c.record.id.as_str().to_owned(), s);
        }
    }
    std::thread::sleep(FIRST_INTERVAL);
    let terminal = std::io::stdout().is_terminal();
    loop {
        let mut rows = Vec::new();
        let mut current = HashMap::new();
        for (reference, c) in targets()? {
            let id = c.record.id.as_str();
            let sample = engine.container_stats(&c)?;
            let cpu = match (previous.get(id), &sample) {
                (Some(before), Some(now)) => cpu_percent(before, now),
                _ => 0.0,
            };
            let shown_id = if a.no_trunc { id } else { c.record.id.short() };
            rows.push(stats_row(
                &reference,
                c.record.name.as_str(),
                shown_id,
                sample.as_ref(),
                cpu,
            ));
            if let Some(s) = sample {
                current.insert(id.to_owned(), s);
            }
        }
        previous = current;
        let text = render_rows(&format, STATS_TABLE, STATS_HEADERS, &rows)?;
        let mut stdout = std::io::stdout().lock();
        if a.no_stream {
            stdout.write_all(text.as_bytes())?;
            return Ok(0);
        }
        if terminal {
            // Docker's redraw: clear the screen, cursor home.
            stdout.write_all(b"\x1b[2J\x1b[H")?;
        }
        stdout.write_all(text.as_bytes())?;
        stdout.flush()?;
        drop(stdout);
        std::thread::sleep(INTERVAL);
    }
}

/// What this build knows about itself.
fn build_facts() -> BuildFacts {
    BuildFacts {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        git_commit: option_env!("WHARF_GIT_COMMIT")
            .unwrap_or_default()
            .to_owned(),
        rust_version: option_env!("WHARF_RUSTC_VERSION")
            .and_then(|v| v.split_whitespace().nth(1))
            .unwrap_or_default()
            .to_owned(),
    }
}

/// `Key:` padded so values start in one column, as Docker's version
/// template (through a tabwriter) aligns them.
fn field(out: &mut String, indent: usize, key: &str, value: &str) {
    const VALUE_COLUMN: usize = 20;
    let label = format!("{:indent$}{key}:", "");
    let pad = VALUE_COLUMN.saturating_sub(label.len()).max(1);
    out.push_str(&format!("{label}{:pad$}{value}\n", ""));
}

/// `version`'s text: Docker's Client and Server sections.
pub(crate) fn render_version(
    client: &wharf_api::system::ClientVersion,
    server: &wharf_api::system::Version,
) -> String {
    let mut out = String::from("Client:\n");
    field(&mut out, 1, "Version", &client.version);
    field(&mut out, 1, "API version", &client.api_version);
    if !client.rust_version.is_empty() {
        field(&mut out, 1, "Rust version", &client.rust_version);
    }
    if !client.git_commit.is_empty() {
        field(&mut out, 1, "Git commit", &client.git_commit);
    }
    field(
        &mut out,
        1,
        "OS/Arch",
        &format!("{}/{}", client.os, client.arch),
    );
    field(&mut out, 1, "Context", &client.context);
    out.push_str(&format!("\nServer: {}\n", server.platform.name));
    for component in &server.components {
        out.push_str(&format!(" {}:\n", component.name));
        field(&mut out, 2, "Version", &component.version);
        if component.name == "Engine" {
            field(
                &mut out,
                2,
                "API version",
                &format!(
                    "{} (minimum version {})",
                    server.api_version, server.min_api_version
                ),
            );
            if !server.rust_version.is_empty() {
                field(&mut out, 2, "Rust version", &server.rust_version);
            }
            if !server.git_commit.is_empty() {
                field(&mut out, 2, "Git commit", &server.git_commit);
            }
            field(
                &mut out,
                2,
                "OS/Arch",
                &format!("{}/{}", server.os, server.arch),
            );
            field(&mut out, 2, "Experimental", "false");
        } else {
            for (key, value) in &component.details {
                field(&mut out, 2, key, value);
            }
        }
    }
    out
}

/// Runs `version` (before the engine opens: it needs no store).
pub fn version(a: VersionArgs) -> anyhow::Result<i32> {
    let build = build_facts();
    let kernel = rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned();
    let client = wharf_api::system::client_version(&build);
    let server = wharf_api::system::version(&build, &kernel, wharf_runtime::OCI_VERSION);
    let value = serde_json::json!({ "Client": client, "Server": server });
    match a.format.as_deref().map(str::trim) {
        None | Some("") => print!("{}", render_version(&client, &server)),
        Some("json") => println!("{}", serde_json::to_string(&value)?),
        Some(template) => println!("{}", render_value(template, &value)?),
    }
    Ok(0)
}

/// `info`'s text: Docker's Client and Server sections.
pub(crate) fn render_info(info: &Info) -> String {
    let mut out = String::new();
    out.push_str("Client:\n");
    out.push_str(&format!(" Version:    {}\n", info.server_version));
    out.push_str(" Context:    default\n Debug Mode: false\n\nServer:\n");
    let mut line = |indent: usize, text: String| {
        out.push_str(&format!("{:indent$}{text}\n", ""));
    };
    line(1, format!("Containers: {}", info.containers));
    line(2, format!("Running: {}", info.containers_running));
    line(2, format!("Paused: {}", info.containers_paused));
    line(2, format!("Stopped: {}", info.containers_stopped));
    line(1, format!("Images: {}", info.images));
    line(1, format!("Server Version: {}", info.server_version));
    line(1, format!("Storage Driver: {}", info.driver));
    for [k, v] in &info.driver_status {
        line(2, format!("{k}: {v}"));
    }
    line(1, format!("Logging Driver: {}", info.logging_driver));
    line(1, format!("Cgroup Driver: {}", info.cgroup_driver));
    line(1, format!("Cgroup Version: {}", info.cgroup_version));
    line(1, "Plugins:".to_owned());
    line(2, format!("Volume: {}", info.plugins.volume.join(" ")));
    line(2, format!("Network: {}", info.plugins.network.join(" ")));
    line(2, format!("Log: {}", info.plugins.log.join(" ")));
    let runtimes: Vec<&str> = info.runtimes.keys().map(String::as_str).collect();
    line(1, format!("Runtimes: {}", runtimes.join(" ")));
    line(1, format!("Default Runtime: {}", info.default_runtime));
    line(1, format!("Init Binary: {}", info.init_binary));
    line(1, "Security Options:".to_owned());
    for option in &info.security_options {
        // `name=seccomp,profile=default` → `seccomp` / `Profile: default`.
        let mut name = option.as_str();
        let mut details = Vec::new();
        for part in option.split(',') {
            match part.split_once('=') {
                Some(("name", n)) => name = n,
                Some((k, v)) => details.push((k, v)),
                None => {}
            }
        }
        line(2, name.to_owned());
        for (k, v) in details {
            let mut key = k.to_owned();
            if let Some(first) = key.get_mut(0..1) {
                first.make_ascii_uppercase();
            }
            line(3, format!("{key}: {v}"));
        }
    }
    line(1, format!("Kernel Version: {}", info.kernel_version));
    line(1, format!("Operating System: {}", info.operating_system));
    line(1, format!("OSType: {}", info.os_type));
    line(1, format!("Architecture: {}", info.architecture));
    line(1, format!("CPUs: {}", info.ncpu));
    line(1, format!("Total Memory: {}", bytes_size(info.mem_total)));
    line(1, format!("Name: {}", info.name));
    line(1, format!("ID: {}", info.id));
    line(1, format!("Docker Root Dir: {}", info.docker_root_dir));
    line(1, format!("Debug Mode: {}", info.debug));
    line(1, format!("Experimental: {}", info.experimental_build));
    line(
        1,
        format!("Live Restore Enabled: {}", info.live_restore_enabled),
    );
    out
}

/// Runs `info`.
pub fn info(engine: &Engine, a: InfoArgs) -> anyhow::Result<i32> {
    let info = wharf_api::system::info(&engine.info()?, env!("CARGO_PKG_VERSION"));
    let mut value = serde_json::to_value(&info)?;
    if let Some(object) = value.as_object_mut() {
        object.insert(
            "ClientInfo".to_owned(),
            serde_json::json!({
                "Version": env!("CARGO_PKG_VERSION"),
                "Context": "default",
                "Debug": false,
            }),
        );
    }
    match a.format.as_deref().map(str::trim) {
        None | Some("") => print!("{}", render_info(&info)),
        Some("json") => println!("{}", serde_json::to_string(&value)?),
        Some(template) => println!("{}", render_value(template, &value)?),
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_rows_render_as_docker() {
        let sample = StatsSample {
            memory_usage: 600 << 10,
            memory_inactive_file: Some(140 << 10),
            memory_limit: 2 << 30,
            net_rx: 1_500,
            net_tx: 0,
            block_read: 4_096_000,
            block_write: 12_288,
            pids: 1,
            ..StatsSample::default()
        };
        let rows = vec![
            stats_row("abc", "web", "0123456789ab", Some(&sample), 12.345),
            stats_row("def", "db", "ba9876543210", None, 0.0),
        ];
        let text = render_rows(&Format::Table, STATS_TABLE, STATS_HEADERS, &rows).unwrap();
        assert_eq!(
            text,
            "CONTAINER ID   NAME      CPU %     MEM USAGE / LIMIT   MEM %     NET I/O      BLOCK I/O        PIDS\n\
             0123456789ab   web       12.35%    460KiB / 2GiB       0.02%     1.5kB / 0B   4.1MB / 12.3kB   1\n\
             ba9876543210   db        0.00%     0B / 0B             0.00%     0B / 0B      0B / 0B          0\n"
        );
        let text = render_rows(
            &Format::parse("{{.Container}} {{.PIDs}} {{.CPUPerc}}"),
            STATS_TABLE,
            STATS_HEADERS,
            &rows,
        )
        .unwrap();
        assert_eq!(text, "abc 1 12.35%\ndef 0 0.00%\n");
        let json = render_rows(&Format::Json, STATS_TABLE, STATS_HEADERS, &rows[..1]).unwrap();
        let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
        assert_eq!(v["MemUsage"], "460KiB / 2GiB");
        assert_eq!(v["BlockIO"], "4.1MB / 12.3kB");
    }

    #[test]
    fn version_text_has_client_and_server_sections() {
        let build = BuildFacts {
            version: "0.1.0".into(),
            git_commit: String::new(),
            rust_version: "1.86.0".into(),
        };
        let client = wharf_api::system::client_version(&build);
        let server = wharf_api::system::version(&build, "6.1.0", "1.2.0");
        let arch = wharf_api::system::go_arch();
        assert_eq!(
            render_version(&client, &server),
            format!(
                "Client:\n \
                 Version:           0.1.0\n \
                 API version:       1.43\n \
                 Rust version:      1.86.0\n \
                 OS/Arch:           linux/{arch}\n \
                 Context:           default\n\
                 \n\
                 Server: Wharf Engine\n \
                 Engine:\n  \
                 Version:          0.1.0\n  \
                 API version:      1.43 (minimum version 1.12)\n  \
                 Rust version:     1.86.0\n  \
                 OS/Arch:          linux/{arch}\n  \
                 Experimental:     false\n \
                 wharf:\n  \
                 Version:          0.1.0\n  \
                 Spec:             1.2.0\n"
            )
        );
    }

    #[test]
    fn info_text_is_dockers_layout() {
        let sys = wharf_engine::system::SystemInfo {
            containers: 2,
            running: 1,
            paused: 0,
            stopped: 1,
            images: 1,
            storage_driver: "overlay".into(),
            root: "/var/lib/wharf".into(),
            host: wharf_engine::system::HostInfo {
                kernel_version: "6.1.0".into(),
                operating_system: "Debian GNU/Linux 12 (bookworm)".into(),
                os_version: "12".into(),
                architecture: "x86_64".into(),
                cpus: 2,
                total_memory: 4_114_612_224,
                cgroup_version: 1,
                hostname: "box".into(),
            },
        };
        let info = wharf_api::system::info(&sys, "0.1.0");
        assert_eq!(
            render_info(&info),
            "Client:\n Version:    0.1.0\n Context:    default\n Debug Mode: false\n\n\
             Server:\n Containers: 2\n  Running: 1\n  Paused: 0\n  Stopped: 1\n Images: 1\n \
             Server Version: 0.1.0\n Storage Driver: overlay\n Logging Driver: json-file\n \
             Cgroup Driver: cgroupfs\n Cgroup Version: 1\n Plugins:\n  Volume: local\n  \
             Network: host null\n  Log: journald json-file\n Runtimes: wharf\n \
             Default Runtime: wharf\n Init Binary: wharf-init\n Security Options:\n  seccomp\n   \
             Profile: default\n Kernel Version: 6.1.0\n \
             Operating System: Debian GNU/Linux 12 (bookworm)\n OSType: linux\n \
             Architecture: x86_64\n CPUs: 2\n Total Memory: 3.832GiB\n Name: box\n ID: box\n \
             Docker Root Dir: /var/lib/wharf\n Debug Mode: false\n Experimental: false\n \
             Live Restore Enabled: false\n"
        );
    }

    #[test]
    fn prune_filters_and_sections() {
        let f = prune_filter(&["label=a=b".into(), "label!=c".into()]).unwrap();
        assert_eq!(f.labels.len(), 2);
        assert!(f.until.is_none());
        assert!(prune_filter(&["until=1h".into()]).unwrap().until.is_some());
        assert_eq!(
            prune_filter(&["name=x".into()]).unwrap_err().to_string(),
            "invalid filter \"name=x\": use until=, label= or label!="
        );
        assert_eq!(deleted_section("Containers", &[] as &[String]), "");
        assert_eq!(
            deleted_section("Containers", &["a", "b"]),
            "Deleted Containers:\na\nb\n\n"
        );
    }
}
