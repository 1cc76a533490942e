//! Entering a cgroup without a move by pid.
//!
//! Moving a process by writing its pid to `cgroup.procs` takes the
//! cgroup-wide threadgroup lock for writing, and the first such write after
//! a quiet spell waits for an RCU grace period: 5 to 20 ms on a small host,
//! on the critical path of every container start. Two ways in skip that
//! lock, and an [`Entry`] opens what both need, in the runtime, before it
//! forks:
//!
//! - cgroup v1: a thread writing `0` (itself) to a hierarchy's `tasks` file
//!   moves alone, without the lock. A single-threaded process that does it
//!   in each hierarchy ([`Entry::join_self`]) is wholly in the cgroup. The
//!   write is checked against the credentials of whoever opened the file
//!   (the runtime), not the writer's.
//! - cgroup v2 (the unified hierarchy, also on hybrid hosts): the child is
//!   created in the cgroup (`clone3` with `CLONE_INTO_CGROUP`, from the
//!   directory descriptor [`Entry::v2_dir`]); where that is unavailable the
//!   parent moves it with [`Entry::add_v2`].

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};

use crate::error::CgroupError;
use crate::files;

/// Descriptors of one cgroup for a process to enter it (module docs).
#[derive(Debug)]
pub struct Entry {
    /// Each v1 hierarchy's `tasks` file, opened for writing.
    tasks: Vec<(PathBuf, OwnedFd)>,
    /// The v2 directory, opened as a directory.
    v2: Option<(PathBuf, OwnedFd)>,
}

impl Entry {
    /// Opens the `tasks` files of the v1 directories `v1` and the v2
    /// directory `v2` (all close-on-exec).
    pub(crate) fn open<'a>(
        v1: impl IntoIterator<Item = &'a Path>,
        v2: Option<&Path>,
    ) -> Result<Entry, CgroupError> {
        let mut tasks = Vec::new();
        for dir in v1 {
            let path = dir.join("tasks");
            let fd = rustix::fs::open(&path, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty())
                .map_err(|e| CgroupError::Write {
                    path: path.clone(),
                    value: "0".to_owned(),
                    source: e.into(),
                })?;
            tasks.push((path, fd));
        }
        let v2 = match v2 {
            Some(dir) => {
                let fd = rustix::fs::open(
                    dir,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| CgroupError::Read {
                    path: dir.to_path_buf(),
                    source: e.into(),
                })?;
                Some((dir.to_path_buf(), fd))
            }
            None => None,
        };
        Ok(Entry { tasks, v2 })
    }

    /// Moves the calling thread into the cgroup in every v1 hierarchy: the
    /// whole process when it has one thread, which the caller must ensure.
    /// Nothing to do on a v2-only host.
    pub fn join_self(&self) -> Result<(), CgroupError> {
        for (path, fd) in &self.tasks {
            match rustix::io::write(fd, b"0") {
                Ok(1) => {}
                written => {
                    return Err(CgroupError::Write {
                        path: path.clone(),
                        value: "0".to_owned(),
                        source: written
                            .map_or_else(io::Error::from, |_| io::ErrorKind::WriteZero.into()),
                    })
                }
            }
        }
        Ok(())
    }

    /// The v2 directory, for `clone3(CLONE_INTO_CGROUP)`; `None` on a host
    /// with cgroup v1 only.
    pub fn v2_dir(&self) -> Option<BorrowedFd<'_>> {
        self.v2.as_ref().map(|(_, fd)| fd.as_fd())
    }

    /// Moves process `pid` into the v2 directory by pid (the slow way, for
    /// a child that could not be created in it).
    pub fn add_v2(&self, pid: i32) -> Result<(), CgroupError> {
        match &self.v2 {
            Some((dir, _)) => files::write(&dir.join("cgroup.procs"), &pid.to_string()),
            None => Ok(()),
        }
    }
}
