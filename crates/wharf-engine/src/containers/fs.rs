//! A container's filesystem from the host: `cp` in both directions,
//! `diff`, `export` and `commit`.
//!
//! Everything inside a container is hostile and may change under us (the
//! container runs, or another one shares a volume): CVE-2018-15664 was
//! `docker cp` resolving a path, then using it. Here every path inside a
//! rootfs is resolved through [`wharf_sys::Root`] (`RESOLVE_IN_ROOT`) at
//! the moment it is used, and the work is done on the descriptor it gives:
//! a symlink, absolute or relative, can only ever lead to another place in
//! the same tree. Below a resolved directory, names are single components
//! opened with `O_NOFOLLOW`; a file is read through a reopen of the very
//! `O_PATH` descriptor whose type was checked (never a swapped-in fifo or
//! device). Nothing of the container is ever executed or `dlopen`ed
//! (CVE-2019-14271): owners are numbers, never names.
//!
//! `cp` follows Docker's archive protocol: the source becomes a tar whose
//! top entry is named after the source's last component (`.` for `dir/.`:
//! "the contents of"), and the destination side decides, from what exists
//! there, into which directory to extract and whether to rename the top
//! entry (moby's `PrepareArchiveCopy`). Both the container and the host
//! side use the same [`Tree`]: a tar coming out of a container is as
//! hostile on the host as one going in.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};
use wharf_sys::Root;

use super::Container;
use crate::state::{ContainerLock, ContainerState};
use crate::{Engine, EngineError};

/// What a path names (Docker's `ContainerPathStat`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathStat {
    /// The last component of the path as given.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// `st_mode`: type and permission bits.
    pub mode: u32,
    /// Modification time (unix seconds).
    pub mtime: i64,
    /// A symlink's target as stored; empty otherwise.
    pub link_target: String,
}

impl PathStat {
    fn file_type(&self) -> FileType {
        FileType::from_raw_mode(self.mode)
    }

    /// Whether it is a directory.
    pub fn is_dir(&self) -> bool {
        self.file_type() == FileType::Directory
    }

    /// Whether it is a symlink (only when looked up without following).
    pub fn is_symlink(&self) -> bool {
        self.file_type() == FileType::Symlink
    }
}

/// The source of a `cp`, as its destination needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopySource {
    /// The source path as the user gave it (a trailing `/.` means "the
    /// contents of").
    pub path: String,
    /// Whether it is a directory.
    pub is_dir: bool,
}

/// Who owns what a `cp` creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    /// The uid and gid recorded in the tar (`cp -a`).
    Keep,
    /// These (`cp` into a container: its root; out of it: the caller).
    Set {
        /// Owner.
        uid: u32,
        /// Group.
        gid: u32,
    },
}

/// A tree of hostile content: a container's rootfs, or the host's side of
/// a `cp` (whose tar came out of a container).
#[derive(Debug)]
pub struct Tree {
    root: Root,
    /// The container's name; `None` for the host.
    container: Option<String>,
}

/// The container files Wharf itself creates as mount targets at create
/// (Docker keeps them in its "init" layer): not changes of the container.
const INIT_FILES: [&str; 3] = ["/etc/hostname", "/etc/hosts", "/etc/resolv.conf"];

fn io_at(operation: &'static str, path: &Path) -> impl FnOnce(io::Error) -> EngineError {
    let path = path.to_path_buf();
    move |source| EngineError::Io {
        operation,
        path,
        source,
    }
}

fn errno_at(operation: &'static str, path: &Path) -> impl FnOnce(rustix::io::Errno) -> EngineError {
    let path = path.to_path_buf();
    move |e| EngineError::Io {
        operation,
        path,
        source: e.into(),
    }
}

/// Whether a path says it names a directory (ends with `/` or `/.`).
fn asserts_directory(path: &str) -> bool {
    path.ends_with('/') || path.ends_with("/.") || path == "."
}

/// Docker's `SplitPathDirEntry`: `(dir, base)` of the cleaned path, with
/// `base` `.` for a path ending in `/.` (and for the root).
fn split_dir_entry(path: &str) -> (PathBuf, OsString) {
    let clean = wharf_sys::root::lexically_clean(Path::new(path));
    let current = path.ends_with("/.") || path == ".";
    if current || clean == Path::new("/") {
        return (clean, OsString::from("."));
    }
    let base = clean
        .file_name()
        .map(OsStr::to_os_string)
        .unwrap_or_else(|| OsString::from("."));
    let dir = clean
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    (dir, base)
}

fn to_stat(name: &OsStr, st: &rustix::fs::Stat, link_target: String) -> PathStat {
    PathStat {
        name: name.to_string_lossy().into_owned(),
        size: u64::try_from(st.st_size).unwrap_or(0),
        mode: st.st_mode,
        mtime: st.st_mtime,
        link_target,
    }
}

fn is_not_found(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR))
}

impl Tree {
    /// The host's side of a `cp`: paths as the caller gives them
    /// (relative ones from the working directory).
    ///
    /// # Errors
    ///
    /// `/` cannot be opened.
    pub fn host() -> Result<Tree, EngineError> {
        let root = Root::open(Path::new("/")).map_err(io_at("open", Path::new("/")))?;
        Ok(Tree {
            root,
            container: None,
        })
    }

    /// `path` made absolute (host: from the working directory; container:
    /// from its root), a trailing `/` or `/.` kept.
    fn absolute(&self, path: &str) -> Result<String, EngineError> {
        if path.starts_with('/') {
            return Ok(path.to_owned());
        }
        if self.container.is_some() {
            return Ok(format!("/{path}"));
        }
        let cwd = std::env::current_dir().map_err(io_at("read", Path::new(".")))?;
        Ok(format!("{}/{path}", cwd.display()))
    }

    fn not_found(&self, path: &str) -> EngineError {
        match &self.container {
            Some(container) => EngineError::PathNotFound {
                path: path.to_owned(),
                container: container.clone(),
            },
            None => EngineError::Io {
                operation: "stat",
                path: PathBuf::from(path),
                source: io::Error::from_raw_os_error(libc::ENOENT),
            },
        }
    }

    /// Resolves `path` (absolute) inside the tree; `None` when it does not
    /// exist. A trailing symlink is followed when `follow` (or the path ends
    /// with `/`), inside the tree.
    fn lookup(
        &self,
        path: &str,
        follow: bool,
    ) -> Result<Option<(OwnedFd, rustix::fs::Stat)>, EngineError> {
        let resolved = if follow || asserts_directory(path) {
            self.root.resolve(Path::new(path))
        } else {
            self.root.resolve_nofollow(Path::new(path))
        };
        let fd = match resolved {
            Ok(fd) => fd,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(io_at("resolve", Path::new(path))(e)),
        };
        let st = rustix::fs::fstat(&fd).map_err(errno_at("stat", Path::new(path)))?;
        if asserts_directory(path) && FileType::from_raw_mode(st.st_mode) != FileType::Directory {
            return Err(io_at("resolve", Path::new(path))(
                io::Error::from_raw_os_error(libc::ENOTDIR),
            ));
        }
        Ok(Some((fd, st)))
    }

    /// What `path` names (`None`: nothing). `follow`: a trailing symlink is
    /// followed (inside the tree).
    ///
    /// # Errors
    ///
    /// A lookup failed other than for a missing name.
    pub fn stat(&self, path: &str, follow: bool) -> Result<Option<PathStat>, EngineError> {
        let path = self.absolute(path)?;
        let Some((fd, st)) = self.lookup(&path, follow)? else {
            return Ok(None);
        };
        let target = if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
            read_link(fd.as_fd(), Path::new(&path))?
        } else {
            String::new()
        };
        Ok(Some(to_stat(&split_dir_entry(&path).1, &st, target)))
    }

    /// What `path` names, which must exist ([`Tree::stat`] otherwise).
    ///
    /// # Errors
    ///
    /// Nothing at `path` ([`EngineError::PathNotFound`] in a container); a
    /// lookup failed.
    pub fn require(&self, path: &str, follow: bool) -> Result<PathStat, EngineError> {
        let absolute = self.absolute(path)?;
        self.stat(path, follow)?
            .ok_or_else(|| self.not_found(&absolute))
    }

    /// Writes `path` as a tar to `out`, its top entry named after the
    /// path's last component (`.` for `dir/.`). Symlinks below it are
    /// archived as symlinks; a trailing one is followed when `follow`.
    ///
    /// # Errors
    ///
    /// Nothing at `path` ([`EngineError::PathNotFound`] in a container);
    /// reading or writing failed.
    pub fn archive(
        &self,
        path: &str,
        follow: bool,
        out: impl Write,
    ) -> Result<PathStat, EngineError> {
        let path = self.absolute(path)?;
        let (fd, st) = self
            .lookup(&path, follow)?
            .ok_or_else(|| self.not_found(&path))?;
        let base = PathBuf::from(split_dir_entry(&path).1);
        let mut archiver = Archiver::new(out);
        let target = archiver.entry(fd, &st, &base, Path::new(&path))?;
        archiver.finish(Path::new(&path))?;
        Ok(to_stat(base.as_os_str(), &st, target))
    }

    /// Writes the whole tree as a tar (entries relative to its root, the
    /// root itself left out): `export`.
    ///
    /// # Errors
    ///
    /// Reading or writing failed.
    pub fn archive_all(&self, out: impl Write) -> Result<(), EngineError> {
        let root = Path::new("/");
        let fd = self.root.resolve(root).map_err(io_at("resolve", root))?;
        let dir = open_dir(fd.as_fd(), root)?;
        let mut archiver = Archiver::new(out);
        archiver.children(dir.as_fd(), Path::new(""), root)?;
        archiver.finish(root)
    }

    /// Extracts the tar `input` at `dest`, as `cp` does: with a `source`
    /// (a tar made by [`Tree::archive`]) by Docker's rules (into `dest` if
    /// it is a directory, else as `dest`, renaming the top entry); without
    /// one (`cp -`) into `dest`, which must be a directory. A symlink at
    /// `dest` is followed once, inside the tree.
    ///
    /// Entries are created relative to descriptors, never following a
    /// symlink out of the tree; names with `..` are refused; a directory is
    /// never replaced by a non-directory nor the reverse.
    ///
    /// # Errors
    ///
    /// The destination does not fit the source (Docker's "cannot copy a
    /// directory to a file" and friends); an entry is refused; a creation
    /// failed.
    pub fn extract(
        &self,
        dest: &str,
        source: Option<&CopySource>,
        owner: Ownership,
        input: impl Read,
    ) -> Result<(), EngineError> {
        let given = dest;
        let mut dest = self.absolute(dest)?;
        let mut stat = self.stat(&dest, false)?;
        if let Some(s) = stat.as_ref().filter(|s| s.is_symlink()) {
            let target = if s.link_target.starts_with('/') {
                s.link_target.clone()
            } else {
                let (parent, _) = split_dir_entry(&dest);
                format!("{}/{}", parent.display(), s.link_target)
            };
            dest = self.absolute(&target)?;
            stat = self.stat(&dest, false)?;
        }
        if let Some(s) = &stat {
            let kind = s.file_type();
            if kind != FileType::Directory && kind != FileType::RegularFile {
                return Err(EngineError::invalid(format!(
                    "destination {} must be a directory or a regular file",
                    self.describe(given)
                )));
            }
        }
        let exists = stat.is_some();
        let dest_is_dir = stat.as_ref().is_some_and(PathStat::is_dir);
        let Some(source) = source else {
            if !dest_is_dir {
                return Err(EngineError::invalid(format!(
                    "destination {} must be a directory",
                    self.describe(given)
                )));
            }
            return self.extract_into(&dest, None, owner, input);
        };
        let (dest_dir, dest_base) = split_dir_entry(&dest);
        let (_, source_base) = split_dir_entry(&source.path);
        let rebase = Some((source_base, dest_base));
        let dest_dir = dest_dir.to_string_lossy().into_owned();
        if exists && dest_is_dir {
            self.extract_into(&dest, None, owner, input)
        } else if exists && source.is_dir {
            Err(EngineError::invalid(format!(
                "cannot copy directory {} onto file {}",
                source.path,
                self.describe(given)
            )))
        } else if exists || source.is_dir {
            self.extract_into(&dest_dir, rebase, owner, input)
        } else if asserts_directory(&dest) {
            Err(EngineError::invalid(format!(
                "no such directory {}",
                self.describe(given)
            )))
        } else {
            self.extract_into(&dest_dir, rebase, owner, input)
        }
    }

    fn describe(&self, path: &str) -> String {
        match &self.container {
            Some(c) => format!("\"{c}:{path}\""),
            None => format!("\"{path}\""),
        }
    }

    /// Extracts into the existing directory `dir`, renaming a top entry
    /// `rebase.0` to `rebase.1`.
    fn extract_into(
        &self,
        dir: &str,
        rebase: Option<(OsString, OsString)>,
        owner: Ownership,
        input: impl Read,
    ) -> Result<(), EngineError> {
        let (fd, st) = self.lookup(dir, true)?.ok_or_else(|| self.not_found(dir))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
            return Err(EngineError::invalid(format!(
                "extraction point {} is not a directory",
                self.describe(dir)
            )));
        }
        // In a container, entries resolve inside the whole rootfs (a
        // `/var/run -> /run` in the image works as Docker's chroot'ed untar
        // would); on the host, inside the destination directory only.
        let (root, base) = match &self.container {
            Some(_) => (None, PathBuf::from(dir)),
            None => (Some(Root::from_fd(fd)), PathBuf::from("/")),
        };
        let mut unpacker = Unpacker {
            root: root.as_ref().unwrap_or(&self.root),
            base,
            owner,
            dirs: Vec::new(),
        };
        let mut archive = tar::Archive::new(input);
        let entries = archive
            .entries()
            .map_err(io_at("read the tar for", Path::new(dir)))?;
        for entry in entries {
            let mut entry = entry.map_err(io_at("read the tar for", Path::new(dir)))?;
            unpacker.entry(&mut entry, rebase.as_ref())?;
        }
        unpacker.finish()
    }
}

/// The components of a tar entry's name after `rebase`, with `.` and a
/// leading `/` dropped. `..` is refused: nothing in a `cp` archive climbs.
fn entry_components(
    name: &Path,
    rebase: Option<&(OsString, OsString)>,
) -> Result<Vec<OsString>, String> {
    let mut parts: Vec<OsString> = Vec::new();
    for c in name.components() {
        match c {
            Component::Normal(n) => parts.push(n.to_os_string()),
            Component::ParentDir => return Err("it contains \"..\"".into()),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    if let Some((from, to)) = rebase {
        if from == "." {
            parts.insert(0, to.clone());
        } else if parts.first() == Some(from) {
            parts[0] = to.clone();
        }
        parts.retain(|p| p != ".");
    }
    Ok(parts)
}

fn read_link(fd: BorrowedFd<'_>, path: &Path) -> Result<String, EngineError> {
    let target = rustix::fs::readlinkat(fd, "", Vec::new()).map_err(errno_at("readlink", path))?;
    Ok(String::from_utf8_lossy(target.as_bytes()).into_owned())
}

fn open_dir(fd: BorrowedFd<'_>, path: &Path) -> Result<OwnedFd, EngineError> {
    rustix::fs::openat(
        fd,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(errno_at("open directory", path))
}

fn list_sorted(dir: BorrowedFd<'_>, path: &Path) -> Result<Vec<OsString>, EngineError> {
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir).map_err(errno_at("read directory", path))? {
        let entry = entry.map_err(errno_at("read directory", path))?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(OsStr::from_bytes(name).to_os_string());
        }
    }
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

/// Writes tar entries from descriptors.
struct Archiver<W: Write> {
    builder: tar::Builder<W>,
    links: HashMap<(u64, u64), PathBuf>,
}

impl<W: Write> Archiver<W> {
    fn new(out: W) -> Self {
        let mut builder = tar::Builder::new(out);
        builder.follow_symlinks(false);
        Archiver {
            builder,
            links: HashMap::new(),
        }
    }

    fn finish(self, path: &Path) -> Result<(), EngineError> {
        self.builder
            .into_inner()
            .and_then(|mut out| out.flush())
            .map_err(io_at("write the tar of", path))
    }

    fn header(st: &rustix::fs::Stat, kind: tar::EntryType) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(st.st_mode & 0o7777);
        h.set_uid(u64::from(st.st_uid));
        h.set_gid(u64::from(st.st_gid));
        h.set_mtime(u64::try_from(st.st_mtime).unwrap_or(0));
        h.set_size(0);
        h
    }

    /// Appends what the `O_PATH` descriptor `fd` names (and, for a
    /// directory, everything below) as `name`; `path` is for errors.
    /// Returns a symlink's target.
    fn entry(
        &mut self,
        fd: OwnedFd,
        st: &rustix::fs::Stat,
        name: &Path,
        path: &Path,
    ) -> Result<String, EngineError> {
        let write = io_at("write the tar of", path);
        let kind = FileType::from_raw_mode(st.st_mode);
        if kind != FileType::Directory && st.st_nlink > 1 {
            let id = (st.st_dev, st.st_ino);
            if let Some(first) = self.links.get(&id) {
                let first = first.clone();
                let mut h = Self::header(st, tar::EntryType::Link);
                self.builder
                    .append_link(&mut h, name, first)
                    .map_err(write)?;
                return Ok(String::new());
            }
            self.links.insert(id, name.to_path_buf());
        }
        match kind {
            FileType::Directory => {
                let dir = open_dir(fd.as_fd(), path)?;
                let mut h = Self::header(st, tar::EntryType::Directory);
                self.builder
                    .append_data(&mut h, name, io::empty())
                    .map_err(write)?;
                self.children(dir.as_fd(), name, path)?;
            }
            FileType::RegularFile => {
                // The very inode whose type was checked.
                let file = wharf_sys::root::reopen(fd.as_fd(), OFlags::RDONLY)
                    .map_err(io_at("open", path))?;
                let size = u64::try_from(st.st_size).unwrap_or(0);
                let mut h = Self::header(st, tar::EntryType::Regular);
                h.set_size(size);
                // Exactly `size` bytes whatever the file does meanwhile: a
                // tar whose header lies is corrupt.
                let data = io::Read::take(io::Read::chain(file.take(size), io::repeat(0)), size);
                self.builder
                    .append_data(&mut h, name, data)
                    .map_err(write)?;
            }
            FileType::Symlink => {
                let target = read_link(fd.as_fd(), path)?;
                let mut h = Self::header(st, tar::EntryType::Symlink);
                self.builder
                    .append_link(&mut h, name, &target)
                    .map_err(write)?;
                return Ok(target);
            }
            FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo => {
                let entry = match kind {
                    FileType::CharacterDevice => tar::EntryType::Char,
                    FileType::BlockDevice => tar::EntryType::Block,
                    _ => tar::EntryType::Fifo,
                };
                let mut h = Self::header(st, entry);
                if kind != FileType::Fifo {
                    h.set_device_major(rustix::fs::major(st.st_rdev))
                        .map_err(io_at("write the tar of", path))?;
                    h.set_device_minor(rustix::fs::minor(st.st_rdev))
                        .map_err(io_at("write the tar of", path))?;
                }
                self.builder
                    .append_data(&mut h, name, io::empty())
                    .map_err(write)?;
            }
            _ => tracing::warn!(path = %path.display(), "skipping a socket"),
        }
        Ok(String::new())
    }

    /// Appends the entries of the directory `dir` (open for reading) under
    /// `name`, never following a symlink.
    fn children(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &Path,
        path: &Path,
    ) -> Result<(), EngineError> {
        for child in list_sorted(dir, path)? {
            let child_path = path.join(&child);
            let fd = match rustix::fs::openat(
                dir,
                &child,
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                Ok(fd) => fd,
                // Removed since listed (the container runs).
                Err(rustix::io::Errno::NOENT) => continue,
                Err(e) => return Err(errno_at("open", &child_path)(e)),
            };
            let st = rustix::fs::fstat(&fd).map_err(errno_at("stat", &child_path))?;
            self.entry(fd, &st, &name.join(&child), &child_path)?;
        }
        Ok(())
    }
}

/// Creates tar entries under `base` inside `root`, through descriptors.
struct Unpacker<'r> {
    root: &'r Root,
    base: PathBuf,
    owner: Ownership,
    /// Directories made or updated, with their mtime, set last (creating
    /// their entries changes it).
    dirs: Vec<(PathBuf, i64)>,
}

fn timestamps(mtime: i64) -> Timestamps {
    let t = Timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

impl Unpacker<'_> {
    fn entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        rebase: Option<&(OsString, OsString)>,
    ) -> Result<(), EngineError> {
        let raw = entry
            .path()
            .map_err(io_at("read the tar for", &self.base))?
            .into_owned();
        let refuse = |reason: String| {
            EngineError::invalid(format!("refusing tar entry {}: {reason}", raw.display()))
        };
        let parts = entry_components(&raw, rebase).map_err(refuse)?;
        let Some((name, parents)) = parts.split_last() else {
            // The extraction directory itself: left as it is.
            return Ok(());
        };
        let header = entry.header().clone();
        let kind = header.entry_type();
        let (uid, gid) = match self.owner {
            Ownership::Set { uid, gid } => (uid, gid),
            Ownership::Keep => {
                let id = |v: io::Result<u64>| {
                    v.ok()
                        .and_then(|v| u32::try_from(v).ok())
                        .filter(|v| *v != u32::MAX)
                };
                match (id(header.uid()), id(header.gid())) {
                    (Some(u), Some(g)) => (u, g),
                    _ => return Err(refuse("invalid uid or gid".into())),
                }
            }
        };
        let mode = header.mode().unwrap_or(0o644) & 0o7777;
        let mtime = header
            .mtime()
            .ok()
            .and_then(|m| i64::try_from(m).ok())
            .unwrap_or(0);
        let mut parent_path = self.base.clone();
        parents.iter().for_each(|p| parent_path.push(p));
        let path = parent_path.join(name);
        let parent = self
            .root
            .mkdir_all(&parent_path, 0o755)
            .map_err(io_at("create directory", &parent_path))?;
        let parent = parent.as_fd();
        let existing = match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Some(FileType::from_raw_mode(st.st_mode)),
            Err(rustix::io::Errno::NOENT) => None,
            Err(e) => return Err(errno_at("stat", &path)(e)),
        };
        let is_dir = kind == tar::EntryType::Directory;
        match existing {
            Some(FileType::Directory) if !is_dir => {
                return Err(EngineError::invalid(format!(
                    "cannot overwrite directory {} with non-directory",
                    path.display()
                )))
            }
            Some(FileType::Directory) | None => {}
            Some(_) if is_dir => {
                return Err(EngineError::invalid(format!(
                    "cannot overwrite non-directory {} with directory",
                    path.display()
                )))
            }
            Some(_) => rustix::fs::unlinkat(parent, name, AtFlags::empty())
                .map_err(errno_at("remove", &path))?,
        }
        let owner = (
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
        );
        match kind {
            tar::EntryType::Directory => {
                if existing.is_none() {
                    rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o700))
                        .map_err(errno_at("create directory", &path))?;
                }
                let dir = rustix::fs::openat(
                    parent,
                    name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(errno_at("open directory", &path))?;
                rustix::fs::fchown(&dir, owner.0, owner.1).map_err(errno_at("chown", &path))?;
                rustix::fs::fchmod(&dir, Mode::from_raw_mode(mode))
                    .map_err(errno_at("chmod", &path))?;
                self.dirs.push((path, mtime));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let fd = rustix::fs::openat(
                    parent,
                    name,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(errno_at("create", &path))?;
                let mut file = std::fs::File::from(fd);
                io::copy(entry, &mut file).map_err(io_at("write", &path))?;
                rustix::fs::fchown(&file, owner.0, owner.1).map_err(errno_at("chown", &path))?;
                // After chown, which clears setuid and setgid.
                rustix::fs::fchmod(&file, Mode::from_raw_mode(mode))
                    .map_err(errno_at("chmod", &path))?;
                rustix::fs::futimens(&file, &timestamps(mtime))
                    .map_err(errno_at("set the times of", &path))?;
            }
            tar::EntryType::Symlink => {
                let target = header
                    .link_name()
                    .map_err(io_at("read the tar for", &path))?
                    .ok_or_else(|| refuse("a symlink without a target".into()))?;
                // Data, stored verbatim: resolved later inside the tree.
                rustix::fs::symlinkat(target.as_os_str(), parent, name)
                    .map_err(errno_at("create symlink", &path))?;
                rustix::fs::chownat(parent, name, owner.0, owner.1, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(errno_at("chown", &path))?;
                rustix::fs::utimensat(parent, name, &timestamps(mtime), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(errno_at("set the times of", &path))?;
            }
            tar::EntryType::Link => {
                let target = header
                    .link_name()
                    .map_err(io_at("read the tar for", &path))?
                    .ok_or_else(|| refuse("a hardlink without a target".into()))?;
                let target = entry_components(&target, rebase).map_err(refuse)?;
                let Some((target_name, target_parents)) = target.split_last() else {
                    return Err(refuse("a hardlink to the extraction directory".into()));
                };
                let mut target_dir = self.base.clone();
                target_parents.iter().for_each(|p| target_dir.push(p));
                let target_parent = self
                    .root
                    .resolve(&target_dir)
                    .map_err(io_at("resolve", &target_dir))?;
                // linkat never follows a symlink at the old name.
                rustix::fs::linkat(&target_parent, target_name, parent, name, AtFlags::empty())
                    .map_err(errno_at("create hardlink", &path))?;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let (file_type, dev) = match kind {
                    tar::EntryType::Fifo => (FileType::Fifo, 0),
                    other => {
                        let major = header.device_major().ok().flatten().unwrap_or(0);
                        let minor = header.device_minor().ok().flatten().unwrap_or(0);
                        let t = if other == tar::EntryType::Char {
                            FileType::CharacterDevice
                        } else {
                            FileType::BlockDevice
                        };
                        (t, rustix::fs::makedev(major, minor))
                    }
                };
                rustix::fs::mknodat(parent, name, file_type, Mode::from_raw_mode(0o600), dev)
                    .map_err(errno_at("create node", &path))?;
                let node = rustix::fs::openat(
                    parent,
                    name,
                    OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(errno_at("open", &path))?;
                rustix::fs::chownat(&node, "", owner.0, owner.1, AtFlags::EMPTY_PATH)
                    .map_err(errno_at("chown", &path))?;
                wharf_sys::inode::chmod(node.as_fd(), mode).map_err(io_at("chmod", &path))?;
            }
            other => {
                tracing::warn!(path = %path.display(), kind = ?other, "skipping a tar entry of this type");
            }
        }
        Ok(())
    }

    /// Sets directory times, deepest last-made first.
    fn finish(self) -> Result<(), EngineError> {
        for (path, mtime) in self.dirs.iter().rev() {
            let fd = match self.root.resolve_nofollow(path) {
                Ok(fd) => fd,
                Err(e) if is_not_found(&e) => continue,
                Err(e) => return Err(io_at("resolve", path)(e)),
            };
            let st = rustix::fs::fstat(&fd).map_err(errno_at("stat", path))?;
            if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                continue;
            }
            let dir = open_dir(fd.as_fd(), path)?;
            rustix::fs::futimens(&dir, &timestamps(*mtime))
                .map_err(errno_at("set the times of", path))?;
        }
        Ok(())
    }
}

/// Keeps a stopped container's rootfs mounted while it is used.
#[derive(Debug)]
struct MountGuard<'a> {
    engine: &'a Engine,
    key: String,
    unmount: bool,
}

impl Drop for MountGuard<'_> {
    fn drop(&mut self) {
        if self.unmount {
            if let Err(e) = self.engine.images.unmount_rootfs(&self.key) {
                tracing::warn!(container = %self.key, error = %e, "unmount the rootfs after a copy");
            }
        }
    }
}

/// A container's filesystem, mounted and locked for a `cp` or `export`:
/// a stopped container's rootfs is mounted for as long as this lives (and
/// unmounted after), and the container's lock is held, so a `start` waits
/// (the monitor mounts at start).
#[derive(Debug)]
pub struct ContainerFs<'a> {
    // Fields drop in order: the tree's descriptor, the mount, the lock.
    tree: Tree,
    _mount: MountGuard<'a>,
    _lock: ContainerLock,
}

impl std::ops::Deref for ContainerFs<'_> {
    type Target = Tree;

    fn deref(&self) -> &Tree {
        &self.tree
    }
}

/// What a change of `diff` is (Docker's order of kinds: C, A, D).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// Changed (`C`).
    Modified,
    /// Added (`A`).
    Added,
    /// Deleted (`D`).
    Deleted,
}

impl ChangeKind {
    /// Docker's letter.
    pub fn letter(self) -> char {
        match self {
            Self::Modified => 'C',
            Self::Added => 'A',
            Self::Deleted => 'D',
        }
    }
}

/// One line of `diff`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// What happened.
    pub kind: ChangeKind,
    /// The absolute path in the container.
    pub path: String,
}

/// `commit`'s request.
#[derive(Debug, Clone, Default)]
pub struct CommitRequest {
    /// `REPO[:TAG]`; none: a dangling image.
    pub reference: Option<String>,
    /// `--author`.
    pub author: Option<String>,
    /// `--message`.
    pub message: Option<String>,
    /// `--change`: Dockerfile instructions applied to the config.
    pub changes: Vec<String>,
    /// `--pause`: freeze a running container while its layer is read.
    pub pause: bool,
}

/// The image layers below a rootfs, top first, as open directories.
struct Lower {
    layers: Vec<OwnedFd>,
}

/// What a layer holds at a path.
enum InLayer {
    /// Nothing; lower layers decide.
    Absent,
    /// Nothing, and nothing below either (a whiteout, a file over a
    /// parent, an opaque parent).
    Hidden,
    /// This inode.
    Present(rustix::fs::Stat, Option<OwnedFd>),
}

fn is_whiteout(st: &rustix::fs::Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::CharacterDevice && st.st_rdev == 0
}

fn is_opaque(dir: BorrowedFd<'_>) -> bool {
    let mut value = [0u8; 2];
    matches!(
        rustix::fs::fgetxattr(dir, "trusted.overlay.opaque", &mut value[..]),
        Ok(1) if value[0] == b'y'
    )
}

impl Lower {
    /// Looks `parts` up in one layer, never following a symlink.
    fn in_layer(layer: BorrowedFd<'_>, parts: &[&OsStr], want_dir: bool) -> InLayer {
        let mut dir: Option<OwnedFd> = None;
        let mut hidden_below = false;
        for (i, part) in parts.iter().enumerate() {
            let at = dir.as_ref().map_or(layer, |d| d.as_fd());
            let st = match rustix::fs::statat(at, *part, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(_) if hidden_below => return InLayer::Hidden,
                Err(_) => return InLayer::Absent,
            };
            if is_whiteout(&st) {
                return InLayer::Hidden;
            }
            let last = i + 1 == parts.len();
            let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
            if last {
                let fd = if is_dir && want_dir {
                    rustix::fs::openat(
                        at,
                        *part,
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .ok()
                } else {
                    None
                };
                return InLayer::Present(st, fd);
            }
            if !is_dir {
                return InLayer::Hidden;
            }
            let Ok(next) = rustix::fs::openat(
                at,
                *part,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            ) else {
                return InLayer::Absent;
            };
            hidden_below |= is_opaque(next.as_fd());
            dir = Some(next);
        }
        InLayer::Absent
    }

    /// The topmost inode at `path` in the image (`None`: not there).
    fn stat(&self, path: &str) -> Option<rustix::fs::Stat> {
        let parts: Vec<&OsStr> = Path::new(path)
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n),
                _ => None,
            })
            .collect();
        for layer in &self.layers {
            match Self::in_layer(layer.as_fd(), &parts, false) {
                InLayer::Absent => continue,
                InLayer::Hidden => return None,
                InLayer::Present(st, _) => return Some(st),
            }
        }
        None
    }

    /// The names the image has in the directory `path`.
    fn names(&self, path: &str) -> Vec<OsString> {
        let parts: Vec<&OsStr> = Path::new(path)
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n),
                _ => None,
            })
            .collect();
        let mut seen: HashSet<OsString> = HashSet::new();
        let mut out = Vec::new();
        for layer in &self.layers {
            let dir = if parts.is_empty() {
                rustix::fs::openat(
                    layer,
                    ".",
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .ok()
            } else {
                match Self::in_layer(layer.as_fd(), &parts, true) {
                    InLayer::Absent => continue,
                    InLayer::Hidden => break,
                    InLayer::Present(_, None) => break,
                    InLayer::Present(_, Some(fd)) => Some(fd),
                }
            };
            let Some(dir) = dir else { break };
            for name in list_sorted(dir.as_fd(), Path::new(path)).unwrap_or_default() {
                if !seen.insert(name.clone()) {
                    continue;
                }
                let whiteout = rustix::fs::statat(&dir, &name, AtFlags::SYMLINK_NOFOLLOW)
                    .is_ok_and(|st| is_whiteout(&st));
                if !whiteout {
                    out.push(name);
                }
            }
            if is_opaque(dir.as_fd()) {
                break;
            }
        }
        out
    }
}

/// Docker's `sameFsTime`.
fn same_time(a: &rustix::fs::Stat, b: &rustix::fs::Stat) -> bool {
    a.st_mtime == b.st_mtime
        && (a.st_mtime_nsec == b.st_mtime_nsec || a.st_mtime_nsec == 0 || b.st_mtime_nsec == 0)
}

/// Walks an upper directory as moby's `changes()` walks a layer (names in
/// byte order, a directory before what it holds).
struct ChangeWalker<'a> {
    lower: &'a Lower,
    changes: Vec<Change>,
    changed_dirs: HashSet<String>,
}

impl ChangeWalker<'_> {
    fn record(&mut self, path: String, kind: ChangeKind) {
        // If /foo/bar/file.txt is added or deleted, /foo/bar is changed.
        if kind != ChangeKind::Modified {
            let parent = Path::new(&path)
                .parent()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            if parent != "/" && !parent.is_empty() && !self.changed_dirs.contains(&parent) {
                self.changes.push(Change {
                    kind: ChangeKind::Modified,
                    path: parent.clone(),
                });
                self.changed_dirs.insert(parent);
            }
        }
        self.changes.push(Change { kind, path });
    }

    fn dir(&mut self, dir: BorrowedFd<'_>, rel: &str) -> Result<(), EngineError> {
        let names = list_sorted(dir, Path::new(rel))?;
        let opaque_deleted: Vec<OsString> = if rel != "/" && is_opaque(dir) {
            self.lower
                .names(rel)
                .into_iter()
                .filter(|n| !names.contains(n))
                .collect()
        } else {
            Vec::new()
        };
        let mut all: Vec<(OsString, bool)> = names.into_iter().map(|n| (n, false)).collect();
        all.extend(opaque_deleted.into_iter().map(|n| (n, true)));
        all.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        for (name, gone) in all {
            let path = if rel == "/" {
                format!("/{}", name.to_string_lossy())
            } else {
                format!("{rel}/{}", name.to_string_lossy())
            };
            if gone {
                self.record(path, ChangeKind::Deleted);
                continue;
            }
            let st = match rustix::fs::statat(dir, &name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(rustix::io::Errno::NOENT) => continue,
                Err(e) => return Err(errno_at("stat", Path::new(&path))(e)),
            };
            if is_whiteout(&st) {
                self.record(path, ChangeKind::Deleted);
                continue;
            }
            let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
            let lower = self.lower.stat(&path);
            if INIT_FILES.contains(&path.as_str())
                && lower.is_none()
                && FileType::from_raw_mode(st.st_mode) == FileType::RegularFile
                && st.st_size == 0
            {
                continue;
            }
            let sub = if is_dir {
                match rustix::fs::openat(
                    dir,
                    &name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                ) {
                    Ok(fd) => Some(fd),
                    Err(rustix::io::Errno::NOENT) => continue,
                    Err(e) => return Err(errno_at("open directory", Path::new(&path))(e)),
                }
            } else {
                None
            };
            let kind = match &lower {
                None => Some(ChangeKind::Added),
                Some(l) => {
                    let both_dirs =
                        is_dir && FileType::from_raw_mode(l.st_mode) == FileType::Directory;
                    let same = both_dirs
                        && st.st_size == l.st_size
                        && st.st_mode == l.st_mode
                        && same_time(&st, l);
                    let only_init =
                        both_dirs && sub.as_ref().is_some_and(|d| self.init_only(d, &path));
                    (!same && !only_init).then_some(ChangeKind::Modified)
                }
            };
            if let Some(kind) = kind {
                if is_dir {
                    self.changed_dirs.insert(path.clone());
                }
                self.record(path.clone(), kind);
            }
            if let Some(sub) = sub {
                self.dir(sub.as_fd(), &path)?;
            }
        }
        Ok(())
    }

    /// Whether the upper directory `dir` holds nothing but Wharf's own
    /// mount targets (then it is not a change of the container's).
    fn init_only(&self, dir: &OwnedFd, path: &str) -> bool {
        let Ok(names) = list_sorted(dir.as_fd(), Path::new(path)) else {
            return false;
        };
        !names.is_empty()
            && names.iter().all(|n| {
                let full = format!("{path}/{}", n.to_string_lossy());
                INIT_FILES.contains(&full.as_str())
                    && rustix::fs::statat(dir, n, AtFlags::SYMLINK_NOFOLLOW).is_ok_and(|st| {
                        FileType::from_raw_mode(st.st_mode) == FileType::RegularFile
                            && st.st_size == 0
                    })
                    && self.lower.stat(&full).is_none()
            })
    }
}

/// Pauses a running container for as long as it lives.
struct PauseGuard {
    runtime: wharf_runtime::Runtime,
    id: wharf_runtime::ContainerId,
}

impl Drop for PauseGuard {
    fn drop(&mut self) {
        if let Err(e) = self.runtime.resume(&self.id) {
            tracing::warn!(container = %self.id, error = %e, "resume the container after commit");
        }
    }
}

/// A pod's infra container has no image filesystem: `cp`, `export`, `diff`
/// and `commit` refuse it by name rather than fail on a missing rootfs.
fn refuse_infra(c: &Container, what: &str) -> Result<(), EngineError> {
    if c.config.infra {
        return Err(EngineError::invalid(format!(
            "container {} is a pod's infra container: it has no image filesystem to {what}",
            c.record.name
        )));
    }
    Ok(())
}

impl Engine {
    /// Opens a container's filesystem for `cp`: takes its lock and mounts
    /// its rootfs if it is not (a stopped container's), for as long as the
    /// result lives.
    ///
    /// Only the rootfs is seen: volumes and bind mounts live in the running
    /// container's mount namespace.
    ///
    /// # Errors
    ///
    /// No such container; its rootfs cannot be mounted.
    pub fn container_fs(&self, reference: &str) -> Result<ContainerFs<'_>, EngineError> {
        let store = self.containers()?;
        let record = store.get(reference)?;
        let lock = store.lock(&record.id)?;
        let record = self.reconcile(store.get_by_id(&record.id)?, true)?;
        refuse_infra(&self.container_from(record.clone())?, "copy from or into")?;
        let key = record.id.as_str().to_owned();
        let mounted = self.images.rootfs_mounted(&key)?;
        let rootfs = self.images.remount_rootfs(&key)?;
        let mount = MountGuard {
            engine: self,
            key,
            unmount: !mounted,
        };
        let root = Root::open(&rootfs.path).map_err(io_at("open rootfs", &rootfs.path))?;
        Ok(ContainerFs {
            tree: Tree {
                root,
                container: Some(record.name.to_string()),
            },
            _mount: mount,
            _lock: lock,
        })
    }

    /// `export`: the container's whole filesystem as a tar.
    ///
    /// # Errors
    ///
    /// No such container; reading or writing failed.
    pub fn export_container(&self, reference: &str, out: impl Write) -> Result<(), EngineError> {
        self.container_fs(reference)?.archive_all(out)
    }

    /// `diff`: the changes of the container's writable layer against its
    /// image, in Docker's order.
    ///
    /// # Errors
    ///
    /// No such container; the vfs driver keeps no separate layer; a layer
    /// cannot be read.
    pub fn container_changes(&self, reference: &str) -> Result<Vec<Change>, EngineError> {
        let c = self.container(reference)?;
        refuse_infra(&c, "diff")?;
        let rootfs = self.images.rootfs(c.record.id.as_str())?;
        let upper = rootfs.upper.ok_or_else(|| {
            EngineError::invalid(format!(
                "container {}: the vfs storage driver keeps no separate writable layer to diff",
                c.record.name
            ))
        })?;
        let image = self.images.resolve(&c.record.image_id)?;
        let mut layers = Vec::new();
        for chain in image.chain_ids.iter().rev() {
            let path = self.images.layer_path(chain)?;
            let fd = rustix::fs::open(
                &path,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(errno_at("open layer", &path))?;
            layers.push(fd);
        }
        let lower = Lower { layers };
        let top = rustix::fs::open(
            &upper,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno_at("open", &upper))?;
        let mut walker = ChangeWalker {
            lower: &lower,
            changes: Vec::new(),
            changed_dirs: HashSet::new(),
        };
        walker.dir(top.as_fd(), "/")?;
        Ok(walker.changes)
    }

    /// `commit`: a new image of the container's image layers, its writable
    /// layer on top (none if it is empty), and the image's config with the
    /// container's command, entrypoint, environment, working directory,
    /// user and labels, then `changes` applied. A running container is
    /// paused while its layer is read when `pause`.
    ///
    /// # Errors
    ///
    /// No such container; its image is gone; a change or the name does not
    /// parse; the vfs driver keeps no separate layer; storing failed.
    pub fn commit_container(
        &self,
        reference: &str,
        request: &CommitRequest,
    ) -> Result<wharf_image::ImageId, EngineError> {
        let names = request
            .reference
            .iter()
            .map(|n| wharf_image::ImageRef::parse(n))
            .collect::<Result<Vec<_>, _>>()?;
        let store = self.containers()?;
        let record = store.get(reference)?;
        let container = self.container_from(record.clone())?;
        refuse_infra(&container, "commit")?;
        let base = self.images.resolve(&record.image_id)?;
        let mut image_config = base.configuration()?;
        let mut config = image_config.config().clone().unwrap_or_default();
        commit_config(&mut config, &container, container.record.labels.clone());
        crate::images::apply_changes(&mut config, &request.changes)?;

        let _lease = self.images.lease()?;
        let scratch = self.images.scratch_dir()?;
        let tar_path = scratch.path().join("layer.tar");
        let stats = {
            let _lock = store.lock(&record.id)?;
            let record = self.reconcile(store.get_by_id(&record.id)?, true)?;
            let _pause = if request.pause && record.state == ContainerState::Running {
                let runtime = self.runtime();
                let id = Self::runtime_id(&record.id);
                runtime
                    .pause(&id)
                    .map_err(|e| EngineError::ContainerRuntime {
                        operation: "pause",
                        id: record.id.short().to_owned(),
                        source: Box::new(e),
                    })?;
                Some(PauseGuard { runtime, id })
            } else {
                None
            };
            let file = fs_err::File::create(&tar_path).map_err(io_at("create", &tar_path))?;
            let mut out = io::BufWriter::new(file);
            let stats = self.images.diff_rootfs(record.id.as_str(), &mut out)?;
            out.flush().map_err(io_at("write", &tar_path))?;
            stats
        };
        let layer = if stats.entries == 0 {
            None
        } else {
            let file = fs_err::File::open(&tar_path).map_err(io_at("open", &tar_path))?;
            Some(self.images.import_layer(
                io::BufReader::new(file),
                wharf_image::Compression::None,
                base.chain_ids.last(),
            )?)
        };

        let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let internal =
            |e: oci_spec::OciSpecError| EngineError::invalid(format!("image config: {e}"));
        let mut history = oci_spec::image::HistoryBuilder::default()
            .created(now.clone())
            .created_by(container.config.args.join(" "))
            .empty_layer(layer.is_none())
            .build()
            .map_err(internal)?;
        history.set_author(request.author.clone());
        history.set_comment(request.message.clone());
        let mut all_history = image_config.history().clone().unwrap_or_default();
        all_history.push(history);
        image_config.set_history(Some(all_history));
        image_config.set_created(Some(now));
        image_config.set_author(request.author.clone());
        image_config.set_config(Some(config));
        let id = self
            .images
            .commit_child(&base, image_config, layer.as_ref(), &names)?;
        let mut attributes = std::collections::BTreeMap::new();
        attributes.insert("imageID".to_owned(), id.to_string());
        if let Err(e) = store.append_event(&record.id, &record.name, "commit", &attributes) {
            tracing::warn!(container = %record.id, error = %e, "record the commit event");
        }
        Ok(id)
    }
}

/// The image config's `config` as the container runs (Docker's commit
/// merges the container's config into the image's).
fn commit_config(
    config: &mut oci_spec::image::Config,
    container: &super::Container,
    labels: std::collections::BTreeMap<String, String>,
) {
    let c = &container.config;
    let image_env = config.env().clone().unwrap_or_default();
    let image_has = |key: &str| image_env.iter().any(|e| e.starts_with(&format!("{key}=")));
    // The engine's own variables (HOSTNAME; TERM for a tty; HOME, added
    // last when nothing set it) are not the container's configuration.
    let last = c.env.len().saturating_sub(1);
    let env: Vec<String> = c
        .env
        .iter()
        .enumerate()
        .filter(|(_, e)| !e.starts_with("HOSTNAME="))
        .filter(|(_, e)| !(c.tty && *e == "TERM=xterm" && !image_has("TERM")))
        .filter(|(i, e)| !(*i == last && e.starts_with("HOME=") && !image_has("HOME")))
        .map(|(_, e)| e.clone())
        .collect();
    config.set_env((!env.is_empty()).then_some(env));
    config.set_cmd((!c.cmd.is_empty()).then(|| c.cmd.clone()));
    config.set_entrypoint((!c.entrypoint.is_empty()).then(|| c.entrypoint.clone()));
    if !(c.working_dir.is_empty() || c.working_dir == "/" && config.working_dir().is_none()) {
        config.set_working_dir(Some(c.working_dir.clone()));
    }
    config.set_user((!c.user.is_empty()).then(|| c.user.clone()));
    if !labels.is_empty() {
        let mut all = config.labels().clone().unwrap_or_default();
        all.extend(labels);
        config.set_labels(Some(all));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_dir_entry_is_dockers() {
        let s = |p: &str| {
            let (d, b) = split_dir_entry(p);
            (d.display().to_string(), b.to_string_lossy().into_owned())
        };
        assert_eq!(s("/foo/bar"), ("/foo".into(), "bar".into()));
        assert_eq!(s("/foo/bar/"), ("/foo".into(), "bar".into()));
        assert_eq!(s("/foo/bar/."), ("/foo/bar".into(), ".".into()));
        assert_eq!(s("/"), ("/".into(), ".".into()));
        assert_eq!(s("/a/../b"), ("/".into(), "b".into()));
    }

    #[test]
    fn entry_names_are_rebased_and_dotdot_refused() {
        let r = Some((OsString::from("src"), OsString::from("dst")));
        let c = |n: &str, r: Option<&(OsString, OsString)>| {
            entry_components(Path::new(n), r).map(|v| {
                v.iter()
                    .map(|p| p.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/")
            })
        };
        assert_eq!(c("src/a/b", r.as_ref()).unwrap(), "dst/a/b");
        assert_eq!(c("./src", r.as_ref()).unwrap(), "dst");
        assert_eq!(c("/other/x", r.as_ref()).unwrap(), "other/x");
        let dot = Some((OsString::from("."), OsString::from("new")));
        assert_eq!(c(".", dot.as_ref()).unwrap(), "new");
        assert_eq!(c("x/y", dot.as_ref()).unwrap(), "new/x/y");
        assert!(c("a/../../etc/passwd", None).is_err());
        assert!(c("../x", r.as_ref()).is_err());
        assert_eq!(c("./", None).unwrap(), "");
    }

    #[test]
    fn assertions_of_directories() {
        assert!(asserts_directory("/a/"));
        assert!(asserts_directory("/a/."));
        assert!(!asserts_directory("/a"));
    }
}
