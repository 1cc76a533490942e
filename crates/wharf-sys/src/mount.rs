//! Mounts made on file descriptors with the new mount API.
//!
//! Targets are always `O_PATH` descriptors obtained by resolving inside a
//! rootfs ([`crate::Root`]), so the kernel mounts exactly onto the inode that
//! was checked: a symlink swapped in after resolution changes nothing
//! (CVE-2021-30465 class). Sources are detached mount trees: clones of a host
//! path (`open_tree`), or fresh filesystems (`fsopen` + `fsmount`).

#![allow(unsafe_code, reason = "mount_setattr(2) has no wrapper in rustix")]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::mount::{
    fsconfig_create, fsconfig_set_flag, fsconfig_set_string, fsmount, fsopen, move_mount,
    open_tree, FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags, OpenTreeFlags,
};

/// Per-mount attributes (`MOUNT_ATTR_*`), set with `mount_setattr(2)` or
/// `fsmount(2)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MountAttrs {
    /// Bits to set.
    pub set: u64,
    /// Bits to clear.
    pub clear: u64,
    /// Propagation (`MS_SHARED`, `MS_SLAVE`, `MS_PRIVATE`, `MS_UNBINDABLE`),
    /// or 0 to leave it.
    pub propagation: u64,
}

/// `MOUNT_ATTR_RDONLY`.
pub const ATTR_RDONLY: u64 = libc::MOUNT_ATTR_RDONLY;
/// `MOUNT_ATTR_NOSUID`.
pub const ATTR_NOSUID: u64 = libc::MOUNT_ATTR_NOSUID;
/// `MOUNT_ATTR_NODEV`.
pub const ATTR_NODEV: u64 = libc::MOUNT_ATTR_NODEV;
/// `MOUNT_ATTR_NOEXEC`.
pub const ATTR_NOEXEC: u64 = libc::MOUNT_ATTR_NOEXEC;
/// `MOUNT_ATTR_NOSYMFOLLOW`.
pub const ATTR_NOSYMFOLLOW: u64 = libc::MOUNT_ATTR_NOSYMFOLLOW;
/// `MOUNT_ATTR_NODIRATIME`.
pub const ATTR_NODIRATIME: u64 = libc::MOUNT_ATTR_NODIRATIME;
/// The atime field mask (`MOUNT_ATTR__ATIME`).
pub const ATTR_ATIME_MASK: u64 = libc::MOUNT_ATTR__ATIME;
/// `MOUNT_ATTR_RELATIME`.
pub const ATTR_RELATIME: u64 = libc::MOUNT_ATTR_RELATIME;
/// `MOUNT_ATTR_NOATIME`.
pub const ATTR_NOATIME: u64 = libc::MOUNT_ATTR_NOATIME;
/// `MOUNT_ATTR_STRICTATIME`.
pub const ATTR_STRICTATIME: u64 = libc::MOUNT_ATTR_STRICTATIME;
/// `MOUNT_ATTR_IDMAP`.
pub const ATTR_IDMAP: u64 = libc::MOUNT_ATTR_IDMAP;

/// Clones the mount (tree, when `recursive`) at `path` relative to `dirfd`
/// into a detached mount: `open_tree(OPEN_TREE_CLONE)`. An empty `path`
/// clones what `dirfd` itself refers to.
pub fn clone_tree(dirfd: BorrowedFd<'_>, path: &Path, recursive: bool) -> io::Result<OwnedFd> {
    let mut flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC;
    if recursive {
        flags |= OpenTreeFlags::AT_RECURSIVE;
    }
    if path.as_os_str().is_empty() {
        flags |= OpenTreeFlags::AT_EMPTY_PATH;
    }
    Ok(open_tree(dirfd, path, flags)?)
}

/// Applies `attrs` to the mount `mount_fd` refers to (and, when
/// `recursive`, every mount below it). `userns` is the user namespace for
/// an idmapped mount (`attrs.set` must contain [`ATTR_IDMAP`]).
pub fn set_attrs(
    mount_fd: BorrowedFd<'_>,
    recursive: bool,
    attrs: MountAttrs,
    userns: Option<BorrowedFd<'_>>,
) -> io::Result<()> {
    let mut attr = libc::mount_attr {
        attr_set: attrs.set,
        attr_clr: attrs.clear,
        propagation: attrs.propagation,
        userns_fd: userns.map_or(0, |fd| fd.as_raw_fd() as u64),
    };
    let mut flags = libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    let empty = c"";
    // SAFETY: mount_fd is a live descriptor borrowed for the call; `empty` is
    // a NUL-terminated string and `attr` a properly sized, initialised
    // mount_attr that outlives the call; the kernel only reads them.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            mount_fd.as_raw_fd(),
            empty.as_ptr(),
            flags,
            &mut attr as *mut libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// One filesystem option for [`new_fs`]: `key` or `key=value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsOption {
    /// The option name.
    pub key: String,
    /// Its value; `None` for a flag.
    pub value: Option<String>,
}

/// Creates a new, detached filesystem of `fstype` with `source` and
/// `options`, mounted with `attrs` (`fsopen` + `fsconfig` + `fsmount`).
///
/// On failure the kernel's own message from the filesystem context log is
/// appended, since EINVAL alone rarely says which option was wrong.
pub fn new_fs(
    fstype: &str,
    source: Option<&str>,
    options: &[FsOption],
    attrs: u64,
) -> io::Result<OwnedFd> {
    let fs = fsopen(fstype, FsOpenFlags::FSOPEN_CLOEXEC)?;
    let configure = || -> io::Result<()> {
        if let Some(source) = source {
            fsconfig_set_string(fs.as_fd(), "source", source)?;
        }
        for opt in options {
            match &opt.value {
                Some(value) => fsconfig_set_string(fs.as_fd(), opt.key.as_str(), value.as_str())?,
                None => fsconfig_set_flag(fs.as_fd(), opt.key.as_str())?,
            }
        }
        fsconfig_create(fs.as_fd())?;
        Ok(())
    };
    if let Err(err) = configure() {
        return Err(with_fs_log(fs.as_fd(), err));
    }
    let mount = fsmount(
        fs.as_fd(),
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::from_bits_retain(attrs as u32),
    )
    .map_err(|e| with_fs_log(fs.as_fd(), e.into()))?;
    Ok(mount)
}

/// Reads the messages a filesystem context logged (the fd is readable).
fn with_fs_log(fs: BorrowedFd<'_>, err: io::Error) -> io::Error {
    let mut log = String::new();
    let mut buf = [0u8; 512];
    // Each read returns one message; a failing read ends the log.
    for _ in 0..8 {
        match rustix::io::read(fs, &mut buf) {
            Ok(n) if n > 0 => {
                let msg = String::from_utf8_lossy(&buf[..n]);
                if !log.is_empty() {
                    log.push_str("; ");
                }
                log.push_str(msg.trim_end());
            }
            _ => break,
        }
    }
    if log.is_empty() {
        err
    } else {
        io::Error::new(err.kind(), format!("{err} ({log})"))
    }
}

/// Attaches the detached mount `mount_fd` onto the inode `target` refers to
/// (`move_mount` with empty paths on both sides).
pub fn attach(mount_fd: BorrowedFd<'_>, target: BorrowedFd<'_>) -> io::Result<()> {
    Ok(move_mount(
        mount_fd,
        "",
        target,
        "",
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
    )?)
}

/// Makes a classic `mount(2)` call with the target given as a descriptor,
/// through `/proc/thread-self/fd/N`: for the few operations the new API lacks
/// (changing propagation of the rootfs parent, `MS_MOVE` onto `/`).
pub fn mount_on_fd(
    source: Option<&str>,
    target: BorrowedFd<'_>,
    fstype: Option<&str>,
    flags: u64,
    data: Option<&str>,
) -> io::Result<()> {
    let path = format!("/proc/thread-self/fd/{}", target.as_raw_fd());
    mount_path(source, Path::new(&path), fstype, flags, data)
}

/// A classic `mount(2)` on a trusted path.
pub fn mount_path(
    source: Option<&str>,
    target: &Path,
    fstype: Option<&str>,
    flags: u64,
    data: Option<&str>,
) -> io::Result<()> {
    let flags = rustix::mount::MountFlags::from_bits_retain(flags as _);
    let data_c = data.map(CString::new).transpose()?;
    Ok(rustix::mount::mount(
        source.unwrap_or(""),
        target,
        fstype.unwrap_or(""),
        flags,
        data_c.as_deref(),
    )?)
}

/// Sets the propagation of the mount at `path` (and below, when recursive):
/// `flags` is one of `MS_SHARED`, `MS_SLAVE`, `MS_PRIVATE`, `MS_UNBINDABLE`,
/// optionally with `MS_REC`.
pub fn set_propagation(path: &Path, flags: u64) -> io::Result<()> {
    mount_path(None, path, None, flags, None)
}

/// Detaches the mount at `path` (`umount2(MNT_DETACH)`).
pub fn detach(path: &Path) -> io::Result<()> {
    Ok(rustix::mount::unmount(
        path,
        rustix::mount::UnmountFlags::DETACH,
    )?)
}

/// Opens `path` (trusted) as an `O_PATH` descriptor.
pub fn open_path(path: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        path,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?)
}
