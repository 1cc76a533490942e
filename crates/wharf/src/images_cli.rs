//! Image commands with Docker's names and flags (Podman's where Docker has
//! none): pull, push, login, logout, images, image …, tag, rmi, history,
//! import, save, load, system df/check. Flags become engine requests here;
//! output is rendered here.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use wharf_engine::images::{ImageFilter, PullRequest, PushRequest, RegistryAccess};
use wharf_engine::Engine;

use crate::format::{render_rows, render_value, Format};
use crate::output::{created_at, human_size, since, Table};
use crate::progress::CliProgress;

/// Flags shared by commands that talk to registries.
#[derive(Debug, Clone, clap::Args)]
pub struct AccessArgs {
    /// Require HTTPS and verify certificates (`--tls-verify=false` for a
    /// registry on plain HTTP or with a self-signed certificate).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    tls_verify: Option<bool>,
    /// Credentials `USERNAME:PASSWORD` for the registry.
    #[arg(long, value_name = "USER:PASS")]
    creds: Option<String>,
    /// Auth file (default: `$REGISTRY_AUTH_FILE`, then
    /// `$XDG_RUNTIME_DIR/containers/auth.json`, then `~/.docker/config.json`).
    #[arg(long)]
    authfile: Option<PathBuf>,
    /// Directory of CA certificates (`*.crt`, or `<host:port>/ca.crt`).
    #[arg(long)]
    cert_dir: Option<PathBuf>,
}

impl AccessArgs {
    fn access(&self) -> RegistryAccess {
        RegistryAccess {
            tls_verify: self.tls_verify,
            creds: self.creds.clone(),
            authfile: self.authfile.clone(),
            cert_dir: self.cert_dir.clone(),
            registries_conf: std::env::var_os("CONTAINERS_REGISTRIES_CONF")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
        }
    }
}

/// `pull`.
#[derive(Debug, clap::Args)]
pub struct PullArgs {
    /// `NAME[:TAG|@DIGEST]`.
    image: String,
    /// Platform to select from a multi-platform image (`os/arch[/variant]`).
    #[arg(long)]
    platform: Option<String>,
    /// Suppress progress output.
    #[arg(short, long)]
    quiet: bool,
    /// Layers downloaded at once.
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u16).range(1..=64))]
    max_concurrent_downloads: u16,
    #[command(flatten)]
    access: AccessArgs,
}

/// `push`.
#[derive(Debug, clap::Args)]
pub struct PushArgs {
    /// The local image.
    image: String,
    /// Destination `NAME[:TAG]` (default: the image's name).
    destination: Option<String>,
    /// Compress uncompressed layers with `gzip` or `zstd`.
    #[arg(long, value_parser = ["gzip", "zstd"])]
    compression_format: Option<String>,
    /// Upload in chunks of this many bytes instead of one request per blob.
    #[arg(long, hide = true)]
    chunk_size: Option<u64>,
    /// Suppress progress output.
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    access: AccessArgs,
}

/// `login`.
#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// Registry (`host[:port]`).
    server: String,
    /// User name.
    #[arg(short, long)]
    username: Option<String>,
    /// Password (visible in the process list: prefer `--password-stdin`).
    #[arg(short, long)]
    password: Option<String>,
    /// Read the password from stdin.
    #[arg(long)]
    password_stdin: bool,
    #[command(flatten)]
    access: AccessArgs,
}

/// `logout`.
#[derive(Debug, clap::Args)]
pub struct LogoutArgs {
    /// Registry (`host[:port]`).
    server: String,
    /// Auth file.
    #[arg(long)]
    authfile: Option<PathBuf>,
}

/// `images` / `image ls`.
#[derive(Debug, clap::Args)]
pub struct ImagesArgs {
    /// Only images of this repository (`NAME[:TAG]`, `*` wildcards).
    repository: Option<String>,
    /// Show all images (default hides none: there are no intermediate images).
    #[arg(short, long)]
    all: bool,
    /// Only image ids.
    #[arg(short, long)]
    quiet: bool,
    /// Show digests.
    #[arg(long)]
    digests: bool,
    /// Do not truncate ids.
    #[arg(long)]
    no_trunc: bool,
    /// `dangling=true|false`, `reference=PATTERN`, `label=KEY[=VALUE]`.
    #[arg(short, long)]
    filter: Vec<String>,
    /// `table` (default), `table TEMPLATE`, `json` (one object per line)
    /// or a Go template (`{{.Repository}}:{{.Tag}}`), as Docker.
    #[arg(long)]
    format: Option<String>,
}

/// `image inspect`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// Images.
    #[arg(required = true)]
    images: Vec<String>,
    /// A Go template rendered for each image (`{{.Id}}`,
    /// `{{json .Config}}`) instead of the JSON array.
    #[arg(short, long)]
    format: Option<String>,
}

/// `rmi` / `image rm`.
#[derive(Debug, clap::Args)]
pub struct RmiArgs {
    /// Images.
    #[arg(required = true)]
    images: Vec<String>,
    /// Remove even if in use or named in several repositories.
    #[arg(short, long)]
    force: bool,
}

/// `tag`.
#[derive(Debug, clap::Args)]
pub struct TagArgs {
    /// Source image.
    source: String,
    /// New name.
    target: String,
}

/// `history`.
#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    /// Image.
    image: String,
    /// Do not truncate output.
    #[arg(long)]
    no_trunc: bool,
    /// Only layer ids.
    #[arg(short, long)]
    quiet: bool,
    /// `table` or `json`.
    #[arg(long)]
    format: Option<String>,
}

/// `image prune`.
#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// Remove all images no container uses, not only dangling ones.
    #[arg(short, long)]
    all: bool,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    force: bool,
}

/// `import`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// A root filesystem tar (plain, gzip or zstd), or `-` for stdin.
    file: String,
    /// Name for the image.
    reference: Option<String>,
    /// Dockerfile instruction to apply (`CMD`, `ENV`, `ENTRYPOINT`, …).
    #[arg(short, long)]
    change: Vec<String>,
    /// Commit message.
    #[arg(short, long)]
    message: Option<String>,
}

/// `save`.
#[derive(Debug, clap::Args)]
pub struct SaveArgs {
    /// Images (names or ids).
    #[arg(required = true)]
    images: Vec<String>,
    /// Write to this file instead of stdout.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// `docker-archive` (default) or `oci-archive`.
    #[arg(long, default_value = "docker-archive")]
    format: String,
}

/// `load`.
#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// Read from this file instead of stdin.
    #[arg(short, long)]
    input: Option<PathBuf>,
    /// Print only the loaded names or ids.
    #[arg(short, long)]
    quiet: bool,
    /// Platform to load from a multi-platform oci-archive.
    #[arg(long)]
    platform: Option<String>,
}

/// `system …`.
#[derive(Debug, clap::Subcommand)]
#[command(defer = true)]
pub enum SystemCommand {
    /// Disk usage of images.
    Df {
        /// `table` or `json`.
        #[arg(long)]
        format: Option<String>,
    },
    /// Re-hash every stored blob and check every layer; `--repair` then
    /// removes what nothing references.
    Check {
        /// Collect garbage after checking.
        #[arg(long)]
        repair: bool,
    },
    /// Remove stopped containers, dangling images and (with --volumes)
    /// unused anonymous volumes.
    Prune(crate::system_cli::SystemPruneArgs),
}

/// `image …`.
#[derive(Debug, clap::Subcommand)]
#[command(defer = true)]
pub enum ImageCommand {
    /// List images.
    #[command(alias = "list")]
    Ls(ImagesArgs),
    /// Show images as JSON.
    Inspect(InspectArgs),
    /// Remove images.
    #[command(alias = "remove")]
    Rm(RmiArgs),
    /// Remove unused images.
    Prune(PruneArgs),
    /// Name an image.
    Tag(TagArgs),
    /// Show an image's history.
    History(HistoryArgs),
    /// Pull an image.
    Pull(PullArgs),
    /// Push an image.
    Push(PushArgs),
    /// Make an image from a root filesystem tar.
    Import(ImportArgs),
    /// Write images to an archive.
    Save(SaveArgs),
    /// Read images from an archive.
    Load(LoadArgs),
}

/// Runs `image …`.
pub fn image(engine: &Engine, command: ImageCommand) -> anyhow::Result<i32> {
    match command {
        ImageCommand::Ls(a) => images(engine, a),
        ImageCommand::Inspect(a) => inspect(engine, a),
        ImageCommand::Rm(a) => rmi(engine, a),
        ImageCommand::Prune(a) => prune(engine, a),
        ImageCommand::Tag(a) => tag(engine, a),
        ImageCommand::History(a) => history(engine, a),
        ImageCommand::Pull(a) => pull(engine, a),
        ImageCommand::Push(a) => push(engine, a),
        ImageCommand::Import(a) => import(engine, a),
        ImageCommand::Save(a) => save(engine, a),
        ImageCommand::Load(a) => load(engine, a),
    }
}

/// Runs `pull`.
pub fn pull(engine: &Engine, a: PullArgs) -> anyhow::Result<i32> {
    let mut request = PullRequest::new(&a.image, a.platform.as_deref(), a.access.access())?;
    request.parallel = usize::from(a.max_concurrent_downloads);
    let progress = Arc::new(CliProgress::new(a.quiet, "Copying"));
    let pulled = engine.pull(&request, progress)?;
    if !a.quiet {
        eprintln!("Writing manifest {}", pulled.manifest_digest);
        eprintln!(
            "Stored {} ({} of {} layers downloaded)",
            pulled.name, pulled.downloaded, pulled.layers
        );
    }
    println!("{}", pulled.id);
    Ok(0)
}

/// Runs `push`.
pub fn push(engine: &Engine, a: PushArgs) -> anyhow::Result<i32> {
    let destination = a.destination.as_deref().unwrap_or(&a.image);
    let destination = wharf_engine::images::parse_reference(destination)?;
    let compression = match a.compression_format.as_deref() {
        Some("gzip") => Some(wharf_engine::images::Compression::Gzip),
        Some("zstd") => Some(wharf_engine::images::Compression::Zstd),
        _ => None,
    };
    let request = PushRequest {
        image: a.image.clone(),
        destination,
        access: a.access.access(),
        compression,
        chunk_size: a.chunk_size,
    };
    let progress = Arc::new(CliProgress::new(a.quiet, "Pushing"));
    let digest = engine.push(&request, progress)?;
    if !a.quiet {
        eprintln!("Writing manifest {digest}");
    }
    println!("{digest}");
    Ok(0)
}

/// Runs `login`.
pub fn login(engine: &Engine, a: LoginArgs) -> anyhow::Result<i32> {
    let username = match a.username {
        Some(u) => u,
        None => bail!("login needs --username (interactive prompts are not supported)"),
    };
    let password = match (a.password, a.password_stdin) {
        (Some(_), true) => bail!("--password and --password-stdin are mutually exclusive"),
        (Some(p), false) => p,
        (None, true) => {
            let mut p = String::new();
            std::io::stdin()
                .read_to_string(&mut p)
                .context("read the password from stdin")?;
            p.trim_end_matches(['\n', '\r']).to_owned()
        }
        (None, false) => bail!("login needs --password or --password-stdin"),
    };
    engine.login(&a.server, &username, &password, &a.access.access())?;
    println!("Login Succeeded!");
    Ok(0)
}

/// Runs `logout`.
pub fn logout(engine: &Engine, a: LogoutArgs) -> anyhow::Result<i32> {
    let access = RegistryAccess {
        authfile: a.authfile,
        ..RegistryAccess::default()
    };
    engine.logout(&a.server, &access)?;
    println!("Removed login credentials for {}", a.server);
    Ok(0)
}

fn short_id(id: &wharf_engine::images::Digest, no_trunc: bool) -> String {
    if no_trunc {
        id.to_string()
    } else {
        id.short().to_owned()
    }
}

/// Splits a familiar name `repo:tag` into its two columns.
fn repo_tag(familiar: &str) -> (String, String) {
    match familiar.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo.to_owned(), tag.to_owned()),
        _ => (familiar.to_owned(), "<none>".to_owned()),
    }
}

/// Column headers of `images` (Docker's).
const IMAGE_HEADERS: &[(&str, &str)] = &[
    ("Containers", "CONTAINERS"),
    ("CreatedAt", "CREATED AT"),
    ("CreatedSince", "CREATED"),
    ("Digest", "DIGEST"),
    ("ID", "IMAGE ID"),
    ("Repository", "REPOSITORY"),
    ("SharedSize", "SHARED SIZE"),
    ("Size", "SIZE"),
    ("Tag", "TAG"),
    ("UniqueSize", "UNIQUE SIZE"),
    ("VirtualSize", "SIZE"),
];

/// Runs `images`.
pub fn images(engine: &Engine, a: ImagesArgs) -> anyhow::Result<i32> {
    let _ = a.all;
    let mut filters = a.filter.clone();
    if let Some(r) = &a.repository {
        filters.push(format!("reference={r}"));
    }
    let list = engine.images(&ImageFilter::parse(&filters)?)?;
    if a.quiet {
        let mut seen = std::collections::HashSet::new();
        for image in &list {
            if seen.insert(image.id.clone()) {
                println!("{}", short_id(&image.id, a.no_trunc));
            }
        }
        return Ok(0);
    }
    // One row per name (Docker), or one `<none>` row for a dangling image.
    let mut rows = Vec::new();
    for image in &list {
        let digest = image
            .digests
            .first()
            .and_then(|d| d.digest().map(ToString::to_string))
            .unwrap_or_else(|| "<none>".into());
        if image.names.is_empty() {
            rows.push(("<none>".to_owned(), "<none>".to_owned(), digest, image));
        } else {
            for name in &image.names {
                let (repo, tag) = repo_tag(&name.familiar());
                rows.push((repo, tag, digest.clone(), image));
            }
        }
    }
    let rows = rows
        .into_iter()
        .map(|(repository, tag, digest, image)| {
            serde_json::to_value(wharf_api::images::ImageLine {
                containers: "N/A".into(),
                created_at: created_at(image.recorded),
                created_since: since(image.recorded),
                digest,
                id: short_id(&image.id, a.no_trunc),
                repository,
                shared_size: "N/A".into(),
                size: human_size(image.size),
                tag,
                unique_size: "N/A".into(),
                virtual_size: human_size(image.size),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let default_table = if a.digests {
        "{{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    } else {
        "{{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    };
    let format = Format::parse(a.format.as_deref().unwrap_or_default());
    print!(
        "{}",
        render_rows(&format, default_table, IMAGE_HEADERS, &rows)?
    );
    Ok(0)
}

/// The registry access of a command without access flags (`run --pull`).
pub fn default_access() -> RegistryAccess {
    AccessArgs {
        tls_verify: None,
        creds: None,
        authfile: None,
        cert_dir: None,
    }
    .access()
}

/// `image inspect` JSON of one image.
pub fn inspect_value(engine: &Engine, name: &str) -> anyhow::Result<serde_json::Value> {
    let (image, config, layers) = engine.inspect_image(name)?;
    let dirs: Vec<String> = engine
        .layer_dirs(&image)?
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    Ok(serde_json::to_value(wharf_api::images::inspect(
        &image,
        &config,
        &layers,
        &dirs,
        engine.storage_driver(),
    ))?)
}

/// Runs `image inspect`.
pub fn inspect(engine: &Engine, a: InspectArgs) -> anyhow::Result<i32> {
    let mut out = Vec::new();
    let mut failed = None;
    for name in &a.images {
        match inspect_value(engine, name) {
            Ok(v) => out.push(v),
            Err(e) => failed = Some(e),
        }
    }
    match a.format.as_deref().filter(|f| !f.is_empty()) {
        Some(template) => {
            for value in &out {
                println!("{}", render_value(template, value)?);
            }
        }
        None => println!("{}", serde_json::to_string_pretty(&out)?),
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(0),
    }
}

/// Runs `rmi`.
pub fn rmi(engine: &Engine, a: RmiArgs) -> anyhow::Result<i32> {
    let mut failed = None;
    for name in &a.images {
        match engine.remove_image(name, a.force) {
            Ok(report) => {
                for n in &report.untagged {
                    println!("Untagged: {n}");
                }
                for id in &report.deleted {
                    println!("Deleted: {id}");
                }
            }
            Err(e) => {
                eprintln!("wharf: error: {}", crate::chain(&e));
                failed = Some(e);
            }
        }
    }
    Ok(if failed.is_some() { 125 } else { 0 })
}

/// Runs `tag`.
pub fn tag(engine: &Engine, a: TagArgs) -> anyhow::Result<i32> {
    engine.tag(&a.source, &a.target)?;
    Ok(0)
}

/// Runs `history`.
pub fn history(engine: &Engine, a: HistoryArgs) -> anyhow::Result<i32> {
    let steps = engine.history(&a.image)?;
    let (image, ..) = engine.inspect_image(&a.image)?;
    if a.quiet {
        for step in &steps {
            match &step.layer {
                Some((chain, _)) => println!("{}", short_id(chain, a.no_trunc)),
                None => println!("<missing>"),
            }
        }
        return Ok(0);
    }
    let json = a.format.as_deref() == Some("json");
    if let Some(f) = a
        .format
        .as_deref()
        .filter(|f| *f != "json" && *f != "table")
    {
        bail!("unsupported --format {f:?}: use table or json");
    }
    let mut table = Table::new(&["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]);
    for (i, step) in steps.iter().enumerate() {
        let id = if i == 0 {
            short_id(&image.id, a.no_trunc)
        } else {
            "<missing>".into()
        };
        let created = step
            .created
            .as_deref()
            .and_then(|c| humantime::parse_rfc3339_weak(c.trim_end_matches('Z')).ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| since(i64::try_from(d.as_secs()).unwrap_or(0)))
            .unwrap_or_else(|| "N/A".into());
        let mut by = step.created_by.clone().unwrap_or_default();
        if !a.no_trunc && by.chars().count() > 45 {
            by = by.chars().take(44).collect::<String>() + "…";
        }
        let size = human_size(step.layer.as_ref().map_or(0, |(_, s)| *s));
        let comment = step.comment.clone().unwrap_or_default();
        if json {
            println!(
                "{}",
                serde_json::json!({"ID": id, "CreatedSince": created, "CreatedBy": by, "Size": size, "Comment": comment})
            );
        } else {
            table.row(vec![id, created, by, size, comment]);
        }
    }
    if !json {
        print!("{}", table.render());
    }
    Ok(0)
}

/// Runs `image prune`.
pub fn prune(engine: &Engine, a: PruneArgs) -> anyhow::Result<i32> {
    if !a.force && std::io::stdin().is_terminal() {
        let what = if a.all {
            "all images without at least one container associated to them"
        } else {
            "all dangling images"
        };
        eprint!("WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] ");
        std::io::stderr().flush()?;
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Ok(0);
        }
    }
    let (reports, gc) = engine.prune_images(a.all)?;
    let mut any = false;
    for report in &reports {
        for n in &report.untagged {
            if !any {
                println!("Deleted Images:");
                any = true;
            }
            println!("untagged: {n}");
        }
        for id in &report.deleted {
            if !any {
                println!("Deleted Images:");
                any = true;
            }
            println!("deleted: {id}");
        }
    }
    if any {
        println!();
    }
    println!("Total reclaimed space: {}", human_size(gc.blob_bytes));
    Ok(0)
}

/// Runs `import`.
pub fn import(engine: &Engine, a: ImportArgs) -> anyhow::Result<i32> {
    let names: Vec<String> = a.reference.iter().cloned().collect();
    let id = if a.file == "-" {
        engine.import(
            std::io::stdin().lock(),
            &a.change,
            a.message.as_deref(),
            &names,
        )?
    } else {
        let file = fs_err::File::open(&a.file)?;
        engine.import(file, &a.change, a.message.as_deref(), &names)?
    };
    println!("{id}");
    Ok(0)
}

/// Runs `save`.
pub fn save(engine: &Engine, a: SaveArgs) -> anyhow::Result<i32> {
    let format: wharf_engine::images::ArchiveFormat = a.format.parse().map_err(|_| {
        anyhow::anyhow!(
            "unknown --format {:?}: docker-archive or oci-archive",
            a.format
        )
    })?;
    match &a.output {
        Some(path) => {
            // Written beside the target and renamed: a failed save leaves
            // no truncated archive behind.
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            let mut tmp = tempfile::NamedTempFile::new_in(dir)
                .with_context(|| format!("create a temporary file in {}", dir.display()))?;
            engine.save(
                &a.images,
                format,
                std::io::BufWriter::new(tmp.as_file_mut()),
            )?;
            tmp.as_file().sync_all().context("sync the archive")?;
            tmp.persist(path)
                .with_context(|| format!("write {}", path.display()))?;
        }
        None => {
            if std::io::stdout().is_terminal() {
                bail!("refusing to write an archive to a terminal: use -o FILE or redirect stdout");
            }
            let stdout = std::io::stdout().lock();
            let mut out = std::io::BufWriter::new(stdout);
            engine.save(&a.images, format, &mut out)?;
            out.flush().context("write the archive to stdout")?;
        }
    }
    Ok(0)
}

/// Runs `load`.
pub fn load(engine: &Engine, a: LoadArgs) -> anyhow::Result<i32> {
    let loaded = match &a.input {
        Some(path) => engine.load(
            std::io::BufReader::new(fs_err::File::open(path)?),
            a.platform.as_deref(),
        )?,
        None => engine.load(std::io::stdin().lock(), a.platform.as_deref())?,
    };
    for image in &loaded {
        if image.names.is_empty() {
            println!("Loaded image ID: {}", image.id);
        }
        for name in &image.names {
            if a.quiet {
                println!("{}", name.familiar());
            } else {
                println!("Loaded image: {}", name.familiar());
            }
        }
    }
    Ok(0)
}

/// Runs `system …`.
pub fn system(engine: &Engine, command: SystemCommand) -> anyhow::Result<i32> {
    match command {
        SystemCommand::Df { format } => {
            let usage = engine.disk_usage()?;
            match format.as_deref() {
                Some("json") => println!(
                    "{}",
                    serde_json::json!({
                        "Type": "Images",
                        "TotalCount": usage.images,
                        "Active": usage.active,
                        "Size": human_size(usage.layers_size),
                        "Reclaimable": human_size(usage.reclaimable),
                    })
                ),
                None | Some("table") => {
                    let mut t = Table::new(&["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]);
                    let percent = (usage.reclaimable * 100)
                        .checked_div(usage.layers_size)
                        .unwrap_or(0);
                    t.row(vec![
                        "Images".into(),
                        usage.images.to_string(),
                        usage.active.to_string(),
                        human_size(usage.layers_size),
                        format!("{} ({percent}%)", human_size(usage.reclaimable)),
                    ]);
                    print!("{}", t.render());
                }
                Some(other) => bail!("unsupported --format {other:?}: use table or json"),
            }
            Ok(0)
        }
        SystemCommand::Check { repair } => {
            let report = engine.verify_images()?;
            println!("blobs checked: {}", report.blobs_checked);
            for (name, actual) in &report.corrupt_blobs {
                println!("corrupt blob: {name} (content hashes to {actual})");
            }
            for d in &report.missing_blobs {
                println!("missing blob: {d}");
            }
            for d in &report.missing_layers {
                println!("missing layer: {d}");
            }
            for d in &report.dangling_layers {
                println!("unreferenced layer: {d}");
            }
            for d in &report.unreferenced_blobs {
                println!("unreferenced blob: {d}");
            }
            if report.ingest_files > 0 {
                println!("partial downloads: {}", report.ingest_files);
            }
            if repair {
                let gc = engine.collect_garbage()?;
                println!(
                    "removed {} blobs ({}), {} layers, {} partial downloads",
                    gc.blobs.len(),
                    human_size(gc.blob_bytes),
                    gc.layers.len(),
                    gc.ingest_files
                );
            }
            Ok(if report.is_clean() { 0 } else { 1 })
        }
        SystemCommand::Prune(a) => crate::system_cli::system_prune(engine, a),
    }
}
