//! Per-container locks: `flock` on `<root>/containers/<id>/lock`.
//!
//! Lock order: a command takes the container's lock first, then opens
//! database transactions while holding it; never the reverse (a
//! transaction is never held open while waiting for a container lock), so
//! two commands cannot deadlock. Commands on different containers take
//! different locks and proceed in parallel; `create` needs no container
//! lock, as the name's UNIQUE constraint decides races.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, Mode};

use super::names::ContainerId;
use crate::error::EngineError;

/// Holds a container's lock until dropped (the kernel releases an `flock`
/// when its file is closed, also when the process dies).
#[derive(Debug)]
pub struct ContainerLock {
    _file: fs_err::File,
    path: PathBuf,
}

impl ContainerLock {
    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// `<root>/containers/<id>`: the container's directory.
pub(crate) fn container_dir(root: &Path, id: &ContainerId) -> PathBuf {
    root.join("containers").join(id.as_str())
}

fn mkdir_0700(path: &Path) -> Result<(), EngineError> {
    match rustix::fs::mkdir(path, Mode::RWXU) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => Ok(()),
        Err(e) => Err(EngineError::Io {
            operation: "create directory",
            path: path.to_path_buf(),
            source: e.into(),
        }),
    }
}

/// Takes the lock, waiting (`blocking`) or not.
pub(crate) fn acquire(
    root: &Path,
    id: &ContainerId,
    blocking: bool,
) -> Result<Option<ContainerLock>, EngineError> {
    let dir = container_dir(root, id);
    if let Some(parent) = dir.parent() {
        mkdir_0700(parent)?;
    }
    mkdir_0700(&dir)?;
    let path = dir.join("lock");
    let file = fs_err::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|source| EngineError::Io {
            operation: "open",
            path: path.clone(),
            source,
        })?;
    let op = if blocking {
        FlockOperation::LockExclusive
    } else {
        FlockOperation::NonBlockingLockExclusive
    };
    match rustix::fs::flock(file.as_fd(), op) {
        Ok(()) => Ok(Some(ContainerLock { _file: file, path })),
        Err(rustix::io::Errno::WOULDBLOCK) if !blocking => Ok(None),
        Err(e) => Err(EngineError::Io {
            operation: "lock",
            path,
            source: e.into(),
        }),
    }
}
