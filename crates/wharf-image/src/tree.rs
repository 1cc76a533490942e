//! Directory trees walked and changed through descriptors only: every
//! name is one component relative to an open directory, never followed if
//! it is a symlink. Used on snapshot contents, which came from hostile tars.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};

/// Opens the directory `name` in `parent` for reading, refusing a symlink.
pub(crate) fn open_dir_at(parent: BorrowedFd<'_>, name: &OsStr) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Opens a trusted directory path for reading.
pub(crate) fn open_dir(path: &std::path::Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// The names in a directory (opened for reading), sorted bytewise, without
/// `.` and `..`.
pub(crate) fn list_sorted(dir: BorrowedFd<'_>) -> io::Result<Vec<OsString>> {
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        names.push(OsStr::from_bytes(name).to_os_string());
    }
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

/// The type of `name` in `parent`, not following a symlink; `None` if absent.
pub(crate) fn type_at(
    parent: BorrowedFd<'_>,
    name: &OsStr,
) -> io::Result<Option<rustix::fs::Stat>> {
    match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Whether a stat is of a directory.
pub(crate) fn is_dir(st: &rustix::fs::Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::Directory
}

/// Removes `name` in `parent` and, for a directory, everything below it.
/// Symlinks are removed, never followed. Absent is fine.
pub(crate) fn remove_at(parent: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    let Some(st) = type_at(parent, name)? else {
        return Ok(());
    };
    if is_dir(&st) {
        let dir = open_dir_at(parent, name)?;
        clear_dir(dir.as_fd())?;
        rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR)?;
    } else {
        rustix::fs::unlinkat(parent, name, AtFlags::empty())?;
    }
    Ok(())
}

/// Removes everything inside the directory `dir`.
pub(crate) fn clear_dir(dir: BorrowedFd<'_>) -> io::Result<()> {
    for name in list_sorted(dir)? {
        remove_at(dir, &name)?;
    }
    Ok(())
}

/// The extended attributes of an open file or directory (not symlinks).
pub(crate) fn xattrs(fd: BorrowedFd<'_>) -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut list = vec![0u8; 64 * 1024];
    let n = match rustix::fs::flistxattr(fd, &mut list[..]) {
        Ok(n) => n,
        Err(rustix::io::Errno::OPNOTSUPP) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    let mut value = vec![0u8; 64 * 1024];
    for name in list[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let Ok(name) = std::str::from_utf8(name) else {
            continue;
        };
        match rustix::fs::fgetxattr(fd, name, &mut value[..]) {
            Ok(len) => out.push((name.to_string(), value[..len].to_vec())),
            Err(rustix::io::Errno::NODATA) => {}
            Err(e) => return Err(e.into()),
        }
    }
    out.sort();
    Ok(out)
}

/// Whether a directory carries overlayfs' opaque marker.
pub(crate) fn is_opaque(dir: BorrowedFd<'_>) -> io::Result<bool> {
    let mut value = [0u8; 8];
    match rustix::fs::fgetxattr(dir, crate::unpack::OVERLAY_OPAQUE_XATTR, &mut value[..]) {
        Ok(n) => Ok(&value[..n] == b"y"),
        Err(rustix::io::Errno::NODATA | rustix::io::Errno::OPNOTSUPP) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Whether a stat is of an overlayfs whiteout (character device 0:0).
pub(crate) fn is_whiteout(st: &rustix::fs::Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::CharacterDevice && st.st_rdev == 0
}
