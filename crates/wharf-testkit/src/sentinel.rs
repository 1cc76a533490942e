//! Sentinels: a small host tree whose every detail is recorded, so that a test can
//! prove a container (a hostile path, a bind mount, a bad cleanup) left it alone.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context as _;
use sha2::{Digest as _, Sha256};

/// Sentinel directories alive in this process, to refuse a tag used twice at once.
static LIVE: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// Files of a fresh sentinel: (relative path, content, mode).
const FILES: &[(&str, &str, u32)] = &[
    (
        "hello.txt",
        "sentinel: a container must never change this\n",
        0o644,
    ),
    ("script.sh", "#!/bin/sh\necho sentinel\n", 0o755),
    ("secret", "only root reads this\n", 0o600),
    ("sub/nested.txt", "nested sentinel\n", 0o644),
];

/// A host directory `/var/tmp/wharf-sentinel-<tag>-<pid>/` holding a few files, a
/// subdirectory and a symlink, with a digest of every entry (relative path, type,
/// mode, size, mtime, content sha256, symlink target) taken at creation.
/// [`Sentinel::assert_unchanged`] compares the tree with it. Dropping it removes
/// the directory.
#[derive(Debug)]
pub struct Sentinel {
    dir: PathBuf,
    digest: TreeDigest,
}

impl Sentinel {
    /// Creates the sentinel tree and records its digest. A leftover directory of the
    /// same name (an earlier run with a recycled pid) is replaced.
    ///
    /// # Panics
    ///
    /// When `tag` is empty or contains `/`, when a live sentinel of this process
    /// already uses `tag`, or when the tree cannot be written.
    pub fn new(tag: &str) -> Sentinel {
        Self::create(tag).unwrap_or_else(|e| panic!("create sentinel {tag:?}: {e:#}"))
    }

    fn create(tag: &str) -> anyhow::Result<Sentinel> {
        anyhow::ensure!(
            !tag.is_empty() && !tag.contains('/'),
            "the tag must be a non-empty file name part"
        );
        let dir = PathBuf::from(format!(
            "/var/tmp/wharf-sentinel-{tag}-{}",
            std::process::id()
        ));
        let fresh = LIVE
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(dir.clone());
        anyhow::ensure!(fresh, "the tag is already in use in this process");
        // From here on, Drop unregisters and removes the directory.
        let mut sentinel = Sentinel {
            dir,
            digest: TreeDigest::default(),
        };
        create_tree(&sentinel.dir)?;
        sentinel.digest = digest_tree(&sentinel.dir)?;
        Ok(sentinel)
    }

    /// The sentinel's directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Checks the tree against the digest taken at creation.
    ///
    /// # Panics
    ///
    /// When anything was added, removed or changed (the message lists each
    /// difference), or the tree cannot be read.
    pub fn assert_unchanged(&self) {
        let changes = self
            .changes()
            .unwrap_or_else(|e| panic!("read sentinel {}: {e:#}", self.dir.display()));
        assert!(
            changes.is_empty(),
            "sentinel {} changed:\n  {}",
            self.dir.display(),
            changes.join("\n  ")
        );
    }

    /// Differences between the tree now and at creation, one line each.
    fn changes(&self) -> anyhow::Result<Vec<String>> {
        Ok(diff(&self.digest, &digest_tree(&self.dir)?))
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        crate::mounts::detach_mounts_under(&self.dir);
        let _ = crate::env::remove_tree(&self.dir);
        LIVE.lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.dir);
    }
}

fn create_tree(dir: &Path) -> anyhow::Result<()> {
    if fs_err::symlink_metadata(dir).is_ok() {
        crate::env::remove_tree(dir).context("remove a leftover sentinel")?;
    }
    fs_err::create_dir(dir)?;
    fs_err::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    fs_err::create_dir(dir.join("sub"))?;
    fs_err::set_permissions(dir.join("sub"), std::fs::Permissions::from_mode(0o755))?;
    for (name, content, mode) in FILES {
        let path = dir.join(name);
        fs_err::write(&path, content)?;
        fs_err::set_permissions(&path, std::fs::Permissions::from_mode(*mode))?;
    }
    fs_err::os::unix::fs::symlink("hello.txt", dir.join("link"))?;
    Ok(())
}

/// Every entry of a tree by path relative to its root (the root itself is `""`).
type TreeDigest = BTreeMap<PathBuf, EntryDigest>;

/// What is recorded of one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct EntryDigest {
    kind: EntryKind,
    mode: u32,
    size: u64,
    mtime: (i64, i64),
    /// Hex sha256 of a regular file's content.
    content: Option<String>,
    /// A symlink's target.
    target: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EntryKind {
    File,
    Dir,
    Symlink,
    Other,
}

impl fmt::Display for EntryDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} mode {:o} size {} mtime {}.{:09}",
            self.kind, self.mode, self.size, self.mtime.0, self.mtime.1
        )?;
        if let Some(content) = &self.content {
            write!(f, " sha256 {content}")?;
        }
        if let Some(target) = &self.target {
            write!(f, " -> {}", target.display())?;
        }
        Ok(())
    }
}

/// Digests the tree at `root`, not following symlinks.
fn digest_tree(root: &Path) -> anyhow::Result<TreeDigest> {
    let mut digest = TreeDigest::new();
    digest_into(root, Path::new(""), &mut digest)?;
    Ok(digest)
}

fn digest_into(root: &Path, rel: &Path, digest: &mut TreeDigest) -> anyhow::Result<()> {
    let path = root.join(rel);
    let meta = fs_err::symlink_metadata(&path)?;
    let kind = if meta.is_file() {
        EntryKind::File
    } else if meta.is_dir() {
        EntryKind::Dir
    } else if meta.file_type().is_symlink() {
        EntryKind::Symlink
    } else {
        EntryKind::Other
    };
    let content = match kind {
        EntryKind::File => {
            let bytes = fs_err::read(&path)?;
            Some(
                Sha256::digest(&bytes)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect(),
            )
        }
        _ => None,
    };
    let target = match kind {
        EntryKind::Symlink => Some(fs_err::read_link(&path)?),
        _ => None,
    };
    digest.insert(
        rel.to_owned(),
        EntryDigest {
            kind,
            mode: meta.permissions().mode(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            content,
            target,
        },
    );
    if kind == EntryKind::Dir {
        let mut names: Vec<_> = fs_err::read_dir(&path)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        names.sort();
        for name in names {
            digest_into(root, &rel.join(name), digest)?;
        }
    }
    Ok(())
}

/// Differences from `before` to `after`, one line each, in path order.
fn diff(before: &TreeDigest, after: &TreeDigest) -> Vec<String> {
    let paths: BTreeSet<&PathBuf> = before.keys().chain(after.keys()).collect();
    let show = |p: &Path| format!("/{}", p.display());
    paths
        .into_iter()
        .filter_map(|p| match (before.get(p), after.get(p)) {
            (Some(old), Some(new)) if old != new => {
                Some(format!("changed {}: {old} => {new}", show(p)))
            }
            (Some(old), None) => Some(format!("removed {}: {old}", show(p))),
            (None, Some(new)) => Some(format!("added {}: {new}", show(p))),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_detects_content_mode_and_new_entries() {
        let dir = tempfile::tempdir().unwrap();
        create_tree(&dir.path().join("s")).unwrap();
        let root = dir.path().join("s");
        let before = digest_tree(&root).unwrap();
        assert!(diff(&before, &digest_tree(&root).unwrap()).is_empty());
        assert_eq!(before.len(), 1 + FILES.len() + 2);

        // Same size, different bytes: only the content hash (and mtime) can tell.
        let mut f = fs_err::OpenOptions::new()
            .write(true)
            .open(root.join("secret"))
            .unwrap();
        std::io::Write::write_all(&mut f, b"O").unwrap();
        drop(f);
        let changes = diff(&before, &digest_tree(&root).unwrap());
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert!(changes[0].starts_with("changed /secret:"), "{changes:?}");
    }

    #[test]
    fn digest_detects_mode_symlink_and_additions() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("s");
        create_tree(&root).unwrap();
        let before = digest_tree(&root).unwrap();
        fs_err::set_permissions(
            root.join("hello.txt"),
            std::fs::Permissions::from_mode(0o666),
        )
        .unwrap();
        fs_err::remove_file(root.join("link")).unwrap();
        fs_err::os::unix::fs::symlink("/etc/shadow", root.join("link")).unwrap();
        fs_err::write(root.join("sub/new"), "").unwrap();
        let changes = diff(&before, &digest_tree(&root).unwrap());
        let text = changes.join("\n");
        assert!(text.contains("changed /hello.txt"), "{text}");
        assert!(text.contains("-> /etc/shadow"), "{text}");
        assert!(text.contains("added /sub/new"), "{text}");
        assert!(text.contains("changed /sub:"), "{text}");
    }

    // Deliberately without panics: a panic printing a backtrace on this thread
    // while another test forks (`in_child`) could deadlock that child.
    #[test]
    fn sentinel_lifecycle() {
        let sentinel = Sentinel::create("unit-lifecycle").unwrap();
        let dir = sentinel.path().to_owned();
        assert!(dir.join("sub/nested.txt").is_file());
        assert_eq!(sentinel.changes().unwrap(), Vec::<String>::new());
        let duplicate = Sentinel::create("unit-lifecycle").unwrap_err();
        assert_eq!(
            format!("{duplicate:#}"),
            "the tag is already in use in this process"
        );
        assert!(
            dir.exists(),
            "a refused duplicate must not remove the live one"
        );
        assert!(Sentinel::create("a/b").is_err());
        fs_err::write(dir.join("hello.txt"), "tampered").unwrap();
        let changes = sentinel.changes().unwrap();
        assert!(
            changes.iter().any(|c| c.starts_with("changed /hello.txt")),
            "{changes:?}"
        );
        drop(sentinel);
        assert!(!dir.exists());
        // The tag is free again.
        drop(Sentinel::create("unit-lifecycle").unwrap());
    }
}
