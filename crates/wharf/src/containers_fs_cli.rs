//! Commands on a container's filesystem, with Docker's names, flags and
//! messages: cp, diff, export, commit.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{bail, Context};
use wharf_engine::containers::{CommitRequest, CopySource, Ownership, Tree};
use wharf_engine::{Engine, EngineError};

/// `cp`.
#[derive(Debug, clap::Args)]
pub struct CpArgs {
    /// Archive mode (copy all uid/gid information).
    #[arg(short, long)]
    archive: bool,
    /// Always follow a symbolic link in SRC_PATH.
    #[arg(short = 'L', long)]
    follow_link: bool,
    /// Suppress progress output during copy.
    #[arg(short, long)]
    quiet: bool,
    /// CONTAINER:SRC_PATH, a host path, or `-` (a tar on stdin).
    source: String,
    /// CONTAINER:DEST_PATH, a host path, or `-` (a tar on stdout).
    destination: String,
}

/// `diff`.
#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    /// The container.
    container: String,
}

/// `export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Write to a file, instead of stdout.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// The container.
    container: String,
}

/// `commit`.
#[derive(Debug, clap::Args)]
pub struct CommitArgs {
    /// Author (e.g. "John Hannibal Smith <hannibal@a-team.com>").
    #[arg(short, long)]
    author: Option<String>,
    /// Apply a Dockerfile instruction to the created image.
    #[arg(short, long)]
    change: Vec<String>,
    /// Commit message.
    #[arg(short, long)]
    message: Option<String>,
    /// Pause the container during commit.
    #[arg(short, long, default_value_t = true, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pause: bool,
    /// The container.
    container: String,
    /// `REPOSITORY[:TAG]` of the new image.
    reference: Option<String>,
}

/// One side of a `cp`.
#[derive(Debug, PartialEq, Eq)]
enum Side {
    /// A path in a container.
    Container { container: String, path: String },
    /// A host path, or `-`.
    Host(String),
}

/// Docker's `splitCpArg`: `CONTAINER:PATH` unless the argument is an
/// absolute path or its part before `:` starts with `.`.
fn side(arg: &str) -> Side {
    if arg.starts_with('/') {
        return Side::Host(arg.to_owned());
    }
    match arg.split_once(':') {
        Some((container, path)) if !container.starts_with('.') && !container.is_empty() => {
            Side::Container {
                container: container.to_owned(),
                path: path.to_owned(),
            }
        }
        _ => Side::Host(arg.to_owned()),
    }
}

/// Counts what passes through.
struct Counting<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Whether an error is the writer's end of a pipe seeing its reader gone
/// (then the reader's error is the one to report).
fn is_broken_pipe(e: &EngineError) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::BrokenPipe {
                return true;
            }
        }
        next = err.source();
    }
    false
}

/// Runs `produce` (writing a tar) and `consume` (reading it) at once
/// through a pipe, `consume` on a thread of its own; returns the bytes
/// passed, or the error that caused the failure.
fn stream(
    produce: impl FnOnce(&mut Counting<std::io::PipeWriter>) -> Result<(), EngineError>,
    consume: impl FnOnce(std::io::PipeReader) -> Result<(), EngineError> + Send,
) -> anyhow::Result<u64> {
    let (reader, writer) = std::io::pipe().context("create a pipe")?;
    std::thread::scope(|s| {
        let consumer = s.spawn(move || consume(reader));
        let mut out = Counting {
            inner: writer,
            bytes: 0,
        };
        let produced = produce(&mut out);
        let bytes = out.bytes;
        drop(out);
        let consumed = consumer
            .join()
            .map_err(|_| anyhow::anyhow!("the copy thread panicked"))?;
        match (produced, consumed) {
            (Ok(()), Ok(())) => Ok(bytes),
            (Err(p), Err(c)) if is_broken_pipe(&p) => Err(c.into()),
            (Err(p), _) => Err(p.into()),
            (Ok(()), Err(c)) => Err(c.into()),
        }
    })
}

/// Runs `cp`.
pub fn cp(engine: &Engine, a: CpArgs) -> anyhow::Result<i32> {
    if a.source.is_empty() || a.destination.is_empty() {
        bail!("source and destination cannot be empty");
    }
    let copied = match (side(&a.source), side(&a.destination)) {
        (Side::Container { .. }, Side::Container { .. }) => {
            bail!("copying between containers is not supported")
        }
        (Side::Host(_), Side::Host(_)) => {
            bail!("must specify at least one container source")
        }
        (Side::Container { container, path }, Side::Host(dest)) => {
            let fs = engine.container_fs(&container)?;
            if dest == "-" {
                let mut out = std::io::BufWriter::new(std::io::stdout().lock());
                fs.archive(&path, a.follow_link, &mut out)?;
                out.flush().context("write the tar to stdout")?;
                return Ok(0);
            }
            let stat = fs.require(&path, a.follow_link)?;
            let source = CopySource {
                path: path.clone(),
                is_dir: stat.is_dir(),
            };
            let owner = if a.archive {
                Ownership::Keep
            } else {
                Ownership::Set {
                    uid: rustix::process::getuid().as_raw(),
                    gid: rustix::process::getgid().as_raw(),
                }
            };
            let host = Tree::host()?;
            let bytes = stream(
                |out| fs.archive(&path, a.follow_link, out).map(drop),
                |input| host.extract(&dest, Some(&source), owner, input),
            )?;
            (bytes, dest)
        }
        (Side::Host(src), Side::Container { container, path }) => {
            let fs = engine.container_fs(&container)?;
            // Docker's rule: what is copied in belongs to the container's
            // root unless -a keeps the source's owners.
            let owner = if a.archive {
                Ownership::Keep
            } else {
                Ownership::Set { uid: 0, gid: 0 }
            };
            let target = format!("{container}:{path}");
            if src == "-" {
                fs.extract(&path, None, owner, std::io::stdin().lock())?;
                return Ok(0);
            }
            let host = Tree::host()?;
            let stat = host.require(&src, a.follow_link)?;
            let source = CopySource {
                path: src.clone(),
                is_dir: stat.is_dir(),
            };
            let bytes = stream(
                |out| host.archive(&src, a.follow_link, out).map(drop),
                |input| fs.extract(&path, Some(&source), owner, input),
            )?;
            (bytes, target)
        }
    };
    if !a.quiet && std::io::stderr().is_terminal() {
        eprintln!(
            "Successfully copied {} to {}",
            crate::output::human_size(copied.0),
            copied.1
        );
    }
    Ok(0)
}

/// Runs `diff`.
pub fn diff(engine: &Engine, a: DiffArgs) -> anyhow::Result<i32> {
    let changes = engine.container_changes(&a.container)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for c in changes {
        writeln!(out, "{} {}", c.kind.letter(), c.path).context("write to stdout")?;
    }
    out.flush().context("write to stdout")?;
    Ok(0)
}

/// Runs `export`.
pub fn export(engine: &Engine, a: ExportArgs) -> anyhow::Result<i32> {
    match &a.output {
        Some(path) => {
            let file = fs_err::File::create(path)?;
            let mut out = std::io::BufWriter::new(file);
            engine.export_container(&a.container, &mut out)?;
            out.flush()
                .with_context(|| format!("write {}", path.display()))?;
        }
        None => {
            if std::io::stdout().is_terminal() {
                bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
            }
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            engine.export_container(&a.container, &mut out)?;
            out.flush().context("write the tar to stdout")?;
        }
    }
    Ok(0)
}

/// Runs `commit`.
pub fn commit(engine: &Engine, a: CommitArgs) -> anyhow::Result<i32> {
    let request = CommitRequest {
        reference: a.reference,
        author: a.author,
        message: a.message,
        changes: a.change,
        pause: a.pause,
    };
    let id = engine.commit_container(&a.container, &request)?;
    println!("{id}");
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cp_arguments_split_like_dockers() {
        let c = |c: &str, p: &str| Side::Container {
            container: c.into(),
            path: p.into(),
        };
        assert_eq!(side("web:/etc/hosts"), c("web", "/etc/hosts"));
        assert_eq!(side("web:rel"), c("web", "rel"));
        assert_eq!(
            side("/abs:with:colons"),
            Side::Host("/abs:with:colons".into())
        );
        assert_eq!(side("./file:name"), Side::Host("./file:name".into()));
        assert_eq!(side("plain"), Side::Host("plain".into()));
        assert_eq!(side("-"), Side::Host("-".into()));
    }
}
