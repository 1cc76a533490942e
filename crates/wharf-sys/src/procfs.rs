//! Access to `/proc` through a verified procfs handle.
//!
//! Writes to procfs (sysctls, `oom_score_adj`, id maps, LSM labels) are
//! security-relevant: a container can bind-mount files or symlinks over
//! `/proc` paths to redirect them (CVE-2019-16884, CVE-2025-52881). All of
//! them go through libpathrs' `ProcfsHandle`: a private procfs instance (or
//! the host's, checked to be procfs), with resolution that never crosses a
//! mount or follows a magic link.

use std::fs::File;
use std::io;
use std::path::Path;

use pathrs::flags::OpenFlags;
use pathrs::procfs::{ProcfsBase, ProcfsHandle, ProcfsHandleBuilder};

fn flags(flags: rustix::fs::OFlags) -> OpenFlags {
    OpenFlags::from_bits_retain(u64::from((flags | rustix::fs::OFlags::CLOEXEC).bits()))
}

fn to_io(err: pathrs::error::Error) -> io::Error {
    match err.kind() {
        pathrs::error::ErrorKind::OsError(Some(errno)) => io::Error::from_raw_os_error(errno),
        _ => io::Error::other(err),
    }
}

/// Opens `subpath` relative to the procfs root (e.g. `sys/net/ipv4/ip_forward`).
/// The handle sees all of procfs (no `subset=pid`), as `/proc/sys` needs.
pub fn open(subpath: &str, oflags: rustix::fs::OFlags) -> io::Result<File> {
    let proc = ProcfsHandleBuilder::new()
        .subset_pid(false)
        .build()
        .map_err(to_io)?;
    proc.open(ProcfsBase::ProcRoot, Path::new(subpath), flags(oflags))
        .map_err(to_io)
}

/// Opens `subpath` relative to `/proc/thread-self` (e.g. `oom_score_adj`).
pub fn open_self(subpath: &str, oflags: rustix::fs::OFlags) -> io::Result<File> {
    let proc = ProcfsHandle::new().map_err(to_io)?;
    proc.open(
        ProcfsBase::ProcThreadSelf,
        Path::new(subpath),
        flags(oflags),
    )
    .map_err(to_io)
}

/// Opens `subpath` relative to `/proc/self`, for files that exist per
/// process but not per thread (e.g. `timens_offsets`).
pub fn open_process_self(subpath: &str, oflags: rustix::fs::OFlags) -> io::Result<File> {
    let proc = ProcfsHandle::new().map_err(to_io)?;
    proc.open(ProcfsBase::ProcSelf, Path::new(subpath), flags(oflags))
        .map_err(to_io)
}

/// Opens `subpath` relative to `/proc/<pid>` (e.g. `uid_map`).
pub fn open_pid(pid: i32, subpath: &str, oflags: rustix::fs::OFlags) -> io::Result<File> {
    let proc = ProcfsHandle::new().map_err(to_io)?;
    let pid = u32::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    proc.open(ProcfsBase::ProcPid(pid), Path::new(subpath), flags(oflags))
        .map_err(to_io)
}
