//! Pull and push progress on stderr: a bar per blob on a terminal
//! (indicatif), one line per blob event otherwise, nothing with `--quiet`.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use wharf_engine::images::{BlobKind, Digest, Progress};

/// How progress is shown.
#[derive(Debug)]
pub enum CliProgress {
    /// Bars on a terminal.
    Bars {
        multi: MultiProgress,
        bars: Mutex<HashMap<Digest, ProgressBar>>,
        verb: &'static str,
    },
    /// Plain lines (not a terminal).
    Lines { verb: &'static str },
    /// `--quiet`.
    Quiet,
}

impl CliProgress {
    /// The renderer for this stderr; `verb` is "Copying" or "Pushing".
    pub fn new(quiet: bool, verb: &'static str) -> Self {
        if quiet {
            Self::Quiet
        } else if std::io::stderr().is_terminal()
            && std::env::var_os("TERM").is_some_and(|t| t != "dumb")
        {
            Self::Bars {
                multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
                bars: Mutex::new(HashMap::new()),
                verb,
            }
        } else {
            Self::Lines { verb }
        }
    }
}

fn kind_name(kind: BlobKind) -> &'static str {
    match kind {
        BlobKind::Manifest => "manifest",
        BlobKind::Config => "config",
        BlobKind::Layer => "blob",
    }
}

impl Progress for CliProgress {
    fn resolving(&self, reference: &str) {
        match self {
            Self::Quiet => {}
            Self::Bars { multi, .. } => {
                let _ = multi.println(format!("Trying {reference}..."));
            }
            Self::Lines { .. } => eprintln!("Trying {reference}..."),
        }
    }

    fn started(&self, digest: &Digest, kind: BlobKind, size: u64, offset: u64) {
        match self {
            Self::Quiet => {}
            Self::Lines { verb } => {
                let resumed = if offset > 0 {
                    format!(" (resuming at {offset})")
                } else {
                    String::new()
                };
                eprintln!("{verb} {} {}{resumed}", kind_name(kind), digest.short());
            }
            Self::Bars { multi, bars, verb } => {
                let bar = multi.add(ProgressBar::new(size));
                let style = ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
                bar.set_style(style);
                bar.set_prefix(format!("{verb} {} {}", kind_name(kind), digest.short()));
                bar.set_position(offset);
                bars.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(digest.clone(), bar);
            }
        }
    }

    fn advanced(&self, digest: &Digest, bytes: u64) {
        if let Self::Bars { bars, .. } = self {
            if let Some(bar) = bars.lock().unwrap_or_else(|p| p.into_inner()).get(digest) {
                bar.inc(bytes);
            }
        }
    }

    fn done(&self, digest: &Digest) {
        match self {
            Self::Quiet => {}
            Self::Lines { .. } => eprintln!("{} done", digest.short()),
            Self::Bars { bars, .. } => {
                if let Some(bar) = bars.lock().unwrap_or_else(|p| p.into_inner()).get(digest) {
                    bar.finish();
                }
            }
        }
    }

    fn skipped(&self, digest: &Digest, kind: BlobKind, _size: u64) {
        match self {
            Self::Quiet => {}
            Self::Lines { .. } => {
                eprintln!("{} {} already exists", kind_name(kind), digest.short())
            }
            Self::Bars { multi, .. } => {
                let _ = multi.println(format!(
                    "{} {} already exists",
                    kind_name(kind),
                    digest.short()
                ));
            }
        }
    }

    fn retrying(&self, digest: &Digest, attempt: u32, reason: &str) {
        match self {
            Self::Quiet => {}
            Self::Lines { .. } => eprintln!("{} retry {attempt}: {reason}", digest.short()),
            Self::Bars { multi, .. } => {
                let _ = multi.println(format!("{} retry {attempt}: {reason}", digest.short()));
            }
        }
    }
}
