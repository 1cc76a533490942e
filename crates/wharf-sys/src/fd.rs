//! File descriptor hygiene: what a container inherits is an explicit list.

#![allow(unsafe_code, reason = "close_range(2) has no wrapper in rustix")]

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

/// Marks every descriptor from `first` upwards close-on-exec
/// (`close_range(first, ~0, CLOSE_RANGE_CLOEXEC)`), so nothing opened by the
/// runtime or leaked by its caller survives an exec.
pub fn cloexec_from(first: RawFd) -> io::Result<()> {
    let first = u32::try_from(first).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets a flag on
    // descriptors; it closes nothing and touches no memory.
    let rc =
        unsafe { libc::close_range(first, u32::MAX, libc::CLOSE_RANGE_CLOEXEC as libc::c_int) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Clears close-on-exec on `fd`: it is part of what the next exec passes on.
pub fn inherit<Fd: AsFd>(fd: Fd) -> io::Result<()> {
    Ok(rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())?)
}

/// Returns the descriptor numbers open in this process (from `/proc/self/fd`).
pub fn open_fds() -> io::Result<Vec<RawFd>> {
    let mut fds = Vec::new();
    for entry in fs_err::read_dir("/proc/self/fd")? {
        let entry = entry?;
        if let Some(fd) = entry.file_name().to_str().and_then(|s| s.parse().ok()) {
            fds.push(fd);
        }
    }
    Ok(fds)
}

/// Clears close-on-exec on the descriptor number `fd` (a descriptor the
/// caller of the runtime passed on, e.g. `--preserve-fds`).
pub fn inherit_raw(fd: RawFd) -> io::Result<()> {
    // SAFETY: F_SETFD on a descriptor number only changes its flags; an
    // unused number fails with EBADF and nothing else happens.
    let rc = unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes descriptor number `target` a duplicate of `fd` (without
/// close-on-exec), closing what `target` was.
pub fn dup_onto(fd: BorrowedFd<'_>, target: RawFd) -> io::Result<()> {
    if fd.as_raw_fd() == target {
        return inherit(fd);
    }
    // SAFETY: dup2 takes two descriptor numbers; `fd` is live for the call,
    // and replacing `target` is the intent (it is one of stdio).
    let rc = unsafe { libc::dup2(fd.as_raw_fd(), target) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Takes ownership of descriptor number `n` if it is open, marking it
/// close-on-exec: for a process spawned with descriptors placed at fixed
/// numbers for it alone (the engine's monitor). Call once per number, before
/// anything else could open it.
pub fn take_inherited(n: RawFd) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd as _;
    // SAFETY: F_GETFD on a descriptor number only reads its flags; an
    // unused number fails with EBADF.
    let rc = unsafe { libc::fcntl(n, libc::F_GETFD) };
    if rc < 0 {
        return None;
    }
    // SAFETY: the number is open (above) and, by this function's contract,
    // owned by nothing else in the process.
    let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(n) };
    let _ = rustix::io::fcntl_setfd(&fd, rustix::io::FdFlags::CLOEXEC);
    Some(fd)
}
