//! Rooted path resolution: every path inside a container rootfs is hostile.
//!
//! [`Root`] wraps `pathrs::Root` (libpathrs: `openat2(RESOLVE_IN_ROOT |
//! RESOLVE_NO_MAGICLINKS)` with a hardened fallback). Paths are resolved with
//! chroot semantics, so a symlink can never lead out of the tree, and every
//! operation returns or acts on a file descriptor, never on a joined path.
//!
//! Where the kernel has `openat2(2)`, the lookups a container start makes by
//! the hundred (resolve, resolve without following, `mkdir -p`, create a file)
//! issue that one system call themselves, exactly as libpathrs' openat2
//! resolver does, and fall back to libpathrs only where it is missing.
//! libpathrs builds every error with the descriptor's path read back from a
//! verified procfs and reopens each `mkdir -p` parent through it: 8 to 40
//! system calls more per lookup, about 800 of the 2000 an init made to set up
//! Docker's default mounts, masked and read-only paths.

use std::fs::{File, Permissions};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};

use pathrs::flags::OpenFlags;
use pathrs::InodeType;
use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// Converts a libpathrs error into an `io::Error`, keeping the errno where the
/// failure came from a syscall so callers can match on `EEXIST`/`ENOENT`.
fn to_io(err: pathrs::error::Error) -> io::Error {
    match err.kind() {
        pathrs::error::ErrorKind::OsError(Some(errno)) => io::Error::from_raw_os_error(errno),
        _ => io::Error::other(err),
    }
}

/// How many dangling symlinks [`Root::mkdir_all`] follows before ELOOP.
const MAX_SYMLINK_EXPANSIONS: usize = 40;

/// Whether `openat2(2)` is usable: unknown, yes, or no (older kernel, or a
/// seccomp filter that refuses it); learnt from the first lookup.
static OPENAT2: AtomicU8 = AtomicU8::new(OPENAT2_UNKNOWN);
const OPENAT2_UNKNOWN: u8 = 0;
const OPENAT2_YES: u8 = 1;
const OPENAT2_NO: u8 = 2;

/// How often a scoped lookup is retried when a rename or mount anywhere on
/// the system made the kernel answer `EAGAIN` (libpathrs retries as often).
const OPENAT2_RETRIES: u32 = 128;

/// `openat2(root, path, flags | O_CLOEXEC, RESOLVE_IN_ROOT |
/// RESOLVE_NO_MAGICLINKS)`; `None` when the kernel has no `openat2` (the
/// caller falls back to libpathrs).
fn openat2_in_root(
    root: BorrowedFd<'_>,
    path: &Path,
    flags: OFlags,
) -> Option<io::Result<OwnedFd>> {
    if OPENAT2.load(Ordering::Relaxed) == OPENAT2_NO {
        return None;
    }
    // An empty path names the root itself (`openat2` refuses "").
    let path = if path.as_os_str().is_empty() {
        Path::new("/")
    } else {
        path
    };
    let mut tries = 0;
    loop {
        match rustix::fs::openat2(
            root,
            path,
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        ) {
            Err(Errno::AGAIN) if tries < OPENAT2_RETRIES => tries += 1,
            // ENOSYS: no openat2; E2BIG/EINVAL: a kernel that does not know
            // this `open_how`; EPERM: a seccomp filter that refuses it (as
            // runtimes that predate openat2 do). Only the first answer
            // decides; later errors are the lookup's own.
            Err(e @ (Errno::NOSYS | Errno::TOOBIG | Errno::INVAL | Errno::PERM))
                if OPENAT2.load(Ordering::Relaxed) == OPENAT2_UNKNOWN =>
            {
                tracing::debug!(error = %e, "openat2 unusable; resolving through libpathrs");
                OPENAT2.store(OPENAT2_NO, Ordering::Relaxed);
                return None;
            }
            result => {
                OPENAT2.store(OPENAT2_YES, Ordering::Relaxed);
                return Some(result.map_err(io::Error::from));
            }
        }
    }
}

/// The last component of `path` when it is a plain name (not `/`, `.` or
/// `..`).
fn split_name(path: &Path) -> Option<&std::ffi::OsStr> {
    match path.components().next_back() {
        Some(Component::Normal(name)) => Some(name),
        _ => None,
    }
}

/// `path` made absolute with `.` and `..` applied lexically; `..` never
/// climbs above `/` (how a path inside a root reads once chrooted).
pub fn lexically_clean(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for comp in path.components() {
        match comp {
            Component::Normal(c) => out.push(c),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// A directory tree whose contents are not trusted (a container rootfs).
#[derive(Debug)]
pub struct Root {
    inner: pathrs::Root,
}

/// The kind of node [`Root::mknod`] creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    /// A character device.
    Char,
    /// A block device.
    Block,
    /// A named pipe.
    Fifo,
}

impl Root {
    /// Opens `path` (a trusted host path) as the root of a hostile tree.
    pub fn open(path: &Path) -> io::Result<Root> {
        pathrs::Root::open(path)
            .map(|inner| Root { inner })
            .map_err(to_io)
    }

    /// Resolves `path` inside the root, following symlinks with chroot
    /// semantics, and returns an `O_PATH` descriptor of what it names.
    pub fn resolve(&self, path: &Path) -> io::Result<OwnedFd> {
        if let Some(result) = openat2_in_root(self.as_fd(), path, OFlags::PATH) {
            return result;
        }
        self.inner.resolve(path).map(OwnedFd::from).map_err(to_io)
    }

    /// Like [`Root::resolve`], but a trailing symlink is returned itself
    /// rather than followed.
    pub fn resolve_nofollow(&self, path: &Path) -> io::Result<OwnedFd> {
        if let Some(result) = openat2_in_root(self.as_fd(), path, OFlags::PATH | OFlags::NOFOLLOW) {
            return result;
        }
        self.inner
            .resolve_nofollow(path)
            .map(OwnedFd::from)
            .map_err(to_io)
    }

    /// Opens `path` inside the root with `flags` (`O_CLOEXEC` is always added;
    /// magic links are never followed).
    pub fn open_file(&self, path: &Path, flags: rustix::fs::OFlags) -> io::Result<File> {
        let flags =
            OpenFlags::from_bits_retain(u64::from((flags | rustix::fs::OFlags::CLOEXEC).bits()));
        self.inner.open_subpath(path, flags).map_err(to_io)
    }

    /// Creates every missing directory of `path` inside the root with `mode`
    /// and returns an `O_PATH|O_DIRECTORY` descriptor of the last one.
    ///
    /// A dangling symlink on the way is followed with chroot semantics and
    /// its target created inside the root, as a chroot'ed `mkdir -p` would
    /// (images have `/var/run -> /run` with no `/run`).
    pub fn mkdir_all(&self, path: &Path, mode: u32) -> io::Result<OwnedFd> {
        let mut path = path.to_path_buf();
        for _ in 0..MAX_SYMLINK_EXPANSIONS {
            let made = match self.mkdir_all_openat2(&path, mode) {
                Some(made) => made,
                None => self
                    .inner
                    .mkdir_all(&path, &Permissions::from_mode(mode))
                    .map(OwnedFd::from)
                    .map_err(to_io),
            };
            match made {
                Ok(fd) => return Ok(fd),
                Err(err) => match self.expand_dangling(&path)? {
                    Some(expanded) => path = expanded,
                    None => return Err(err),
                },
            }
        }
        Err(io::Error::from_raw_os_error(libc::ELOOP))
    }

    /// `mkdir -p` with `openat2`: the longest existing prefix of `path` is
    /// resolved inside the root, then each missing directory is made with
    /// `mkdirat` and opened with `O_NOFOLLOW | O_DIRECTORY` from its parent's
    /// descriptor (whatever raced in its place is refused, never followed).
    /// A `..` among the missing components is refused with `ENOENT`, as
    /// libpathrs does. `None` without `openat2`.
    fn mkdir_all_openat2(&self, path: &Path, mode: u32) -> Option<io::Result<OwnedFd>> {
        let dir = OFlags::PATH | OFlags::DIRECTORY;
        match openat2_in_root(self.as_fd(), path, dir)? {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            done => return Some(done),
        }
        let components: Vec<Component<'_>> = path.components().collect();
        let mut existing = components.len();
        let mut current = loop {
            if existing == 0 {
                // Not even the root resolved.
                return Some(Err(io::Error::from_raw_os_error(libc::ENOENT)));
            }
            existing -= 1;
            let prefix: PathBuf = components[..existing].iter().collect();
            match openat2_in_root(self.as_fd(), &prefix, dir)? {
                Ok(fd) => break fd,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Some(Err(e)),
            }
        };
        for comp in &components[existing..] {
            let name = match comp {
                Component::Normal(name) => name,
                Component::CurDir | Component::RootDir | Component::Prefix(_) => continue,
                Component::ParentDir => {
                    return Some(Err(io::Error::from_raw_os_error(libc::ENOENT)));
                }
            };
            match rustix::fs::mkdirat(&current, *name, Mode::from_raw_mode(mode)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Some(Err(e.into())),
            }
            current = match rustix::fs::openat(
                &current,
                *name,
                dir | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                Ok(fd) => fd,
                Err(e) => return Some(Err(e.into())),
            };
        }
        Some(Ok(current))
    }

    /// Rewrites `path` by replacing the first component that is a dangling
    /// symlink with its target (resolved lexically inside the root).
    /// `None` when no component is a dangling symlink.
    fn expand_dangling(&self, path: &Path) -> io::Result<Option<PathBuf>> {
        let components: Vec<Component<'_>> = path.components().collect();
        let mut prefix = PathBuf::from("/");
        for (i, comp) in components.iter().enumerate() {
            let Component::Normal(name) = comp else {
                if *comp == Component::ParentDir {
                    prefix.pop();
                }
                continue;
            };
            let candidate = prefix.join(name);
            let fd = match self.resolve_nofollow(&candidate) {
                Ok(fd) => fd,
                Err(_) => return Ok(None),
            };
            let st = rustix::fs::fstat(&fd)?;
            if rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Symlink
                && self.resolve(&candidate).is_err()
            {
                let target = self.inner.readlink(&candidate).map_err(to_io)?;
                let mut expanded = if target.is_absolute() {
                    PathBuf::from("/")
                } else {
                    prefix.clone()
                };
                expanded.push(target);
                for rest in &components[i + 1..] {
                    expanded.push(rest);
                }
                return Ok(Some(lexically_clean(&expanded)));
            }
            prefix = candidate;
        }
        Ok(None)
    }

    /// Creates (or opens, if it exists) a regular file at `path` inside the
    /// root, creating missing parents, and returns a descriptor of exactly the
    /// inode created or found. An existing inode of another type (a symlink
    /// included) is returned unfollowed: the caller checks its type.
    pub fn ensure_file(&self, path: &Path, mode: u32) -> io::Result<OwnedFd> {
        let (Some(parent), Some(name)) = (path.parent(), split_name(path)) else {
            // `/`, or a path ending in `..`: whatever is there.
            return self.resolve_nofollow(path);
        };
        let parent = self.mkdir_all(parent, 0o755)?;
        // One name in a directory already resolved inside the root. O_EXCL:
        // an inode already there (a fifo, a device, a symlink) is never
        // opened (a fifo would wait for a writer), only resolved unfollowed.
        match rustix::fs::openat(
            &parent,
            name,
            OFlags::CREATE | OFlags::EXCL | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        ) {
            Ok(fd) => Ok(fd),
            Err(Errno::EXIST) => self.resolve_nofollow(path),
            Err(e) => Err(e.into()),
        }
    }

    /// Creates a device node or fifo at `path` inside the root.
    pub fn mknod(&self, path: &Path, kind: NodeKind, mode: u32, dev: u64) -> io::Result<()> {
        let perm = Permissions::from_mode(mode);
        let inode = match kind {
            NodeKind::Char => InodeType::CharacterDevice(perm, dev),
            NodeKind::Block => InodeType::BlockDevice(perm, dev),
            NodeKind::Fifo => InodeType::Fifo(perm),
        };
        self.inner.create(path, &inode).map_err(to_io)
    }

    /// Creates a symlink at `path` inside the root pointing at `target`
    /// (stored verbatim; it is data, resolved later inside the root).
    pub fn symlink(&self, path: &Path, target: &Path) -> io::Result<()> {
        self.inner
            .create(path, &InodeType::Symlink(target.to_path_buf()))
            .map_err(to_io)
    }

    /// Removes the file (not directory) at `path` inside the root.
    pub fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_file(path).map_err(to_io)
    }

    /// Uses a directory descriptor (from [`Root::resolve`] of another root,
    /// or of a trusted path) as the root of a hostile tree.
    pub fn from_fd(fd: OwnedFd) -> Root {
        Root {
            inner: pathrs::Root::from_fd(fd),
        }
    }

    /// The target of the symlink at `path` inside the root (stored text,
    /// not resolved).
    pub fn readlink(&self, path: &Path) -> io::Result<PathBuf> {
        self.inner.readlink(path).map_err(to_io)
    }
}

/// Reopens `fd` (an `O_PATH` descriptor from [`Root::resolve`]) for I/O with
/// `flags` through libpathrs' safe procfs handle: the result is the very
/// inode `fd` names, whatever has been renamed or swapped since. The caller
/// checks the inode's type first (never reopen a device or fifo it did not
/// mean to open).
pub fn reopen(fd: BorrowedFd<'_>, flags: rustix::fs::OFlags) -> io::Result<File> {
    let flags =
        OpenFlags::from_bits_retain(u64::from((flags | rustix::fs::OFlags::CLOEXEC).bits()));
    pathrs::HandleRef::from_fd(fd).reopen(flags).map_err(to_io)
}

impl AsFd for Root {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file type bits of what `fd` names.
    fn kind(fd: &OwnedFd) -> libc::mode_t {
        rustix::fs::fstat(fd).unwrap().st_mode & libc::S_IFMT
    }

    /// Runs `check` through `openat2`, then through libpathrs' fallback (as
    /// on a kernel without `openat2`). Forcing the fallback is a process-
    /// wide switch: concurrent tests of this module then take the fallback
    /// too, which must behave the same.
    fn both_resolvers(check: fn()) {
        check();
        assert_eq!(
            OPENAT2.load(Ordering::Relaxed),
            OPENAT2_YES,
            "openat2 was used"
        );
        OPENAT2.store(OPENAT2_NO, Ordering::Relaxed);
        check();
        OPENAT2.store(OPENAT2_UNKNOWN, Ordering::Relaxed);
    }

    #[test]
    fn symlink_to_host_resolves_inside_root() {
        both_resolvers(|| {
            let dir = tempfile::tempdir().unwrap();
            let root = Root::open(dir.path()).unwrap();
            root.mkdir_all(Path::new("etc"), 0o755).unwrap();
            root.symlink(Path::new("escape"), Path::new("/")).unwrap();
            root.symlink(Path::new("up"), Path::new("../../../../.."))
                .unwrap();
            // Creating through the symlinks must land inside the root.
            root.mkdir_all(Path::new("escape/created-a"), 0o755)
                .unwrap();
            root.mkdir_all(Path::new("up/created-b"), 0o755).unwrap();
            assert!(dir.path().join("created-a").is_dir());
            assert!(dir.path().join("created-b").is_dir());
            assert!(!Path::new("/created-a").exists());
            let fd = root
                .ensure_file(Path::new("escape/etc/file"), 0o644)
                .unwrap();
            assert_eq!(kind(&fd), libc::S_IFREG);
            assert!(dir.path().join("etc/file").is_file());
            // Resolving follows symlinks inside the root; without following,
            // the link itself.
            let fd = root.resolve(Path::new("escape/etc/file")).unwrap();
            assert_eq!(kind(&fd), libc::S_IFREG);
            let fd = root.resolve_nofollow(Path::new("escape")).unwrap();
            assert_eq!(kind(&fd), libc::S_IFLNK);
        });
    }

    #[test]
    fn mkdir_all_follows_dangling_symlinks_inside_the_root() {
        both_resolvers(|| {
            let dir = tempfile::tempdir().unwrap();
            let root = Root::open(dir.path()).unwrap();
            let unique = dir
                .path()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let host = format!("/var/tmp/not-in-root-{unique}");
            let rel = format!("made-rel-{unique}");
            root.mkdir_all(Path::new("var"), 0o755).unwrap();
            root.symlink(Path::new("var/run"), Path::new("/run"))
                .unwrap();
            root.symlink(Path::new("host"), Path::new(&host)).unwrap();
            root.symlink(Path::new("rel"), Path::new(&format!("../../../{rel}")))
                .unwrap();
            root.mkdir_all(Path::new("var/run/x"), 0o755).unwrap();
            root.mkdir_all(Path::new("host/y"), 0o755).unwrap();
            root.mkdir_all(Path::new("rel/z"), 0o755).unwrap();
            assert!(dir.path().join("run/x").is_dir());
            assert!(dir.path().join(&host[1..]).join("y").is_dir());
            assert!(dir.path().join(&rel).join("z").is_dir());
            assert!(!Path::new(&host).exists());
            assert!(!Path::new("/").join(&rel).exists());
            // A `..` among the missing components is refused, not applied.
            let err = root
                .mkdir_all(Path::new("new/../other"), 0o755)
                .unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::ENOENT), "{err}");
            assert!(!dir.path().join("other").exists());
        });
    }

    #[test]
    fn ensure_file_returns_existing_symlink_unfollowed() {
        both_resolvers(|| {
            let dir = tempfile::tempdir().unwrap();
            let root = Root::open(dir.path()).unwrap();
            root.symlink(Path::new("null"), Path::new("/etc/hostname"))
                .unwrap();
            let fd = root.ensure_file(Path::new("null"), 0o644).unwrap();
            assert_eq!(kind(&fd), libc::S_IFLNK);
        });
    }

    #[test]
    fn ensure_file_never_opens_an_existing_fifo() {
        // Opening a fifo for reading would block until a writer came.
        both_resolvers(|| {
            let dir = tempfile::tempdir().unwrap();
            let root = Root::open(dir.path()).unwrap();
            root.mknod(Path::new("pipe"), NodeKind::Fifo, 0o644, 0)
                .unwrap();
            let fd = root.ensure_file(Path::new("pipe"), 0o644).unwrap();
            assert_eq!(kind(&fd), libc::S_IFIFO);
            let flags = rustix::fs::fcntl_getfl(&fd).unwrap();
            assert!(flags.contains(rustix::fs::OFlags::PATH), "{flags:?}");
        });
    }
}
