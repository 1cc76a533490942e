//! Process-owned file locks (POSIX `fcntl(F_SETLK)` record locks).
//!
//! Unlike `flock(2)` and OFD locks, a POSIX record lock belongs to the
//! process, not to the open file description: a child forked while it is
//! held does not share it, and it is released when the process exits,
//! however it dies. That makes it a liveness token for a long-lived process
//! (the engine's per-container monitor) that others can test without
//! trusting a pid, which could have been reused.

#![allow(
    unsafe_code,
    reason = "fcntl(2) F_SETLK/F_GETLK take a struct flock pointer; rustix only offers flock-style locks"
)]

use std::io;
use std::os::fd::{AsFd, AsRawFd};

fn whole_file(kind: libc::c_short) -> libc::flock {
    libc::flock {
        l_type: kind,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    }
}

/// Takes a write lock on the whole of `file` for this process without
/// waiting; `Ok(false)` when another process holds a lock on it. `file` must
/// be open for writing. The lock lasts until the process exits or closes any
/// descriptor of the file.
pub fn try_lock(file: impl AsFd) -> io::Result<bool> {
    let mut lock = whole_file(libc::F_WRLCK as libc::c_short);
    let fd = file.as_fd().as_raw_fd();
    // SAFETY: fd is open for the duration of the call (borrowed); `lock` is
    // a valid, initialised struct flock that outlives the call.
    let rc = unsafe { libc::fcntl(fd, libc::F_SETLK, &mut lock as *mut libc::flock) };
    if rc == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EACCES) => Ok(false),
        _ => Err(err),
    }
}

/// The pid of a process holding a lock on `file`, or `None` when no other
/// process holds one (a lock of the calling process itself is not seen).
pub fn holder(file: impl AsFd) -> io::Result<Option<i32>> {
    let mut lock = whole_file(libc::F_WRLCK as libc::c_short);
    let fd = file.as_fd().as_raw_fd();
    // SAFETY: fd is open for the duration of the call (borrowed); `lock` is
    // a valid struct flock the kernel overwrites with the conflicting lock.
    let rc = unsafe { libc::fcntl(fd, libc::F_GETLK, &mut lock as *mut libc::flock) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    if lock.l_type == libc::F_UNLCK as libc::c_short {
        Ok(None)
    } else {
        Ok(Some(lock.l_pid))
    }
}

/// Waits until no other process holds a lock on `file`, then takes (and
/// keeps) a write lock on it for this process.
pub fn lock_wait(file: impl AsFd) -> io::Result<()> {
    let mut lock = whole_file(libc::F_WRLCK as libc::c_short);
    let fd = file.as_fd().as_raw_fd();
    loop {
        // SAFETY: as in try_lock; F_SETLKW blocks until the lock is granted.
        let rc = unsafe { libc::fcntl(fd, libc::F_SETLKW, &mut lock as *mut libc::flock) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::exit_now;

    #[test]
    fn the_lock_is_the_process_and_a_forked_child_does_not_share_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let file = fs_err::File::create(&path).unwrap();
        assert!(try_lock(&file).unwrap());
        // Our own lock is invisible to us.
        assert_eq!(holder(&file).unwrap(), None);
        let me = std::process::id() as i32;
        // The child only calls fcntl and _exit: safe after fork in a
        // multi-threaded test binary.
        // SAFETY: the child only calls fcntl and _exit, both
        // async-signal-safe, so forking a multi-threaded test binary is sound.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
        if pid == 0 {
            let seen = holder(&file).ok().flatten() == Some(me);
            let refused = try_lock(&file).ok() == Some(false);
            exit_now(i32::from(!seen) + 2 * i32::from(!refused));
        }
        let pid = rustix::process::Pid::from_raw(pid).unwrap();
        let status = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty())
            .unwrap()
            .unwrap();
        assert_eq!(status.1.exit_status(), Some(0));
    }
}
