//! Runtime state: one directory per container under the state root.
//!
//! ```text
//! <root>/<id>/state.json   the container record, replaced atomically (rename)
//! <root>/<id>/exec.fifo    present from create until start
//! ```
//! The status is never stored: it is derived from the init process (alive,
//! and the same process, by its start time) and the exec fifo, so `state` is
//! right even when the init died with nobody watching.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use crate::error::{Result, RuntimeError};
use crate::id::ContainerId;

const STATE_FILE: &str = "state.json";
/// The cgroup of a container being created (see [`StateRoot::note_cgroup`]).
const CGROUP_NOTE: &str = "cgroup.json";
pub(crate) const FIFO_FILE: &str = "exec.fifo";

/// A container's status, as the OCI runtime spec names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Created, its init waiting for `start`.
    Created,
    /// The user process runs.
    Running,
    /// The container's cgroup is frozen (`pause`).
    Paused,
    /// The init has exited.
    Stopped,
}

impl Status {
    /// The spec's word for the status.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

/// What the runtime keeps about a container between commands.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) id: String,
    pub(crate) pid: i32,
    /// Start time of the init (clock ticks since boot, `/proc/<pid>/stat`
    /// field 22), to tell our init from a process that reused its pid.
    pub(crate) pid_start: u64,
    pub(crate) bundle: PathBuf,
    pub(crate) rootfs: PathBuf,
    pub(crate) created: String,
    pub(crate) owner: String,
    pub(crate) config: Spec,
    /// The container's cgroup, resolved at create.
    #[serde(default)]
    pub(crate) cgroup: Option<wharf_cgroups::Location>,
}

/// The state of a container as reported to callers (`state`, `list`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerState {
    /// The container id.
    pub id: String,
    /// Pid of the init in the runtime's pid namespace (0 once stopped).
    pub pid: i32,
    /// Derived status.
    pub status: Status,
    /// Absolute bundle path.
    pub bundle: PathBuf,
    /// Absolute rootfs path.
    pub rootfs: PathBuf,
    /// Creation time, RFC 3339 with nanoseconds.
    pub created: String,
    /// Owner's user name (empty for root, as runc).
    pub owner: String,
    /// The config's annotations.
    pub annotations: HashMap<String, String>,
}

/// The state root directory (`--root`).
#[derive(Debug, Clone)]
pub(crate) struct StateRoot {
    dir: PathBuf,
}

impl StateRoot {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn container_dir(&self, id: &ContainerId) -> PathBuf {
        self.dir.join(id.as_str())
    }

    /// Creates the directory of a new container; fails if it exists.
    pub(crate) fn create_container_dir(&self, id: &ContainerId) -> Result<PathBuf> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(&self.dir)
            .map_err(|e| RuntimeError::host("create state root", &self.dir, e))?;
        // Containers' state directories are unrelated: spread them over the
        // filesystem's block groups (ext4; a no-op on tmpfs).
        wharf_sys::inode::spread_subdirectories(&self.dir);
        let dir = self.container_dir(id);
        match std::fs::DirBuilder::new().mode(0o711).create(&dir) {
            Ok(()) => Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(RuntimeError::AlreadyExists { id: id.to_string() })
            }
            Err(e) => Err(RuntimeError::host("create state directory", &dir, e)),
        }
    }

    pub(crate) fn load(&self, id: &ContainerId) -> Result<Record> {
        let path = self.container_dir(id).join(STATE_FILE);
        let data = match fs_err::read(&path) {
            Ok(data) => data,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(RuntimeError::NotFound { id: id.to_string() })
            }
            Err(e) => return Err(RuntimeError::host("read state", &path, e)),
        };
        serde_json::from_slice(&data)
            .map_err(|e| RuntimeError::host("parse state", &path, std::io::Error::other(e)))
    }

    /// Writes the record atomically: a temporary file renamed over the old.
    pub(crate) fn save(&self, record: &Record) -> Result<()> {
        let dir = self.dir.join(&record.id);
        let tmp = dir.join(".state.json.tmp");
        let path = dir.join(STATE_FILE);
        let data = serde_json::to_vec(record)
            .map_err(|e| RuntimeError::host("serialize state", &path, std::io::Error::other(e)))?;
        let mut file =
            fs_err::File::create(&tmp).map_err(|e| RuntimeError::host("write state", &tmp, e))?;
        file.write_all(&data)
            .map_err(|e| RuntimeError::host("write state", &tmp, e))?;
        drop(file);
        fs_err::rename(&tmp, &path).map_err(|e| RuntimeError::host("write state", &path, e))
    }

    /// Ids of every container directory under the root, sorted.
    pub(crate) fn ids(&self) -> Result<Vec<ContainerId>> {
        let entries = match fs_err::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(RuntimeError::host("list state root", &self.dir, e)),
        };
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| RuntimeError::host("list state root", &self.dir, e))?;
            if let Some(id) = entry
                .file_name()
                .to_str()
                .and_then(|s| ContainerId::parse(s).ok())
            {
                if entry.path().join(STATE_FILE).exists() {
                    ids.push(id);
                }
            }
        }
        ids.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        Ok(ids)
    }

    /// Records where a container being created has its cgroup, before the
    /// cgroup exists: a `create` killed before it saves the state leaves
    /// this, and `delete` removes that cgroup. Best effort (a create whose
    /// note cannot be written still works; only that repair is lost).
    pub(crate) fn note_cgroup(&self, id: &ContainerId, location: &wharf_cgroups::Location) {
        let path = self.container_dir(id).join(CGROUP_NOTE);
        if let Err(e) = serde_json::to_vec(location)
            .map_err(std::io::Error::other)
            .and_then(|data| fs_err::write(&path, data))
        {
            tracing::warn!(path = %path.display(), error = %e, "note the cgroup of a container being created");
        }
    }

    /// The cgroup noted by [`StateRoot::note_cgroup`] for a container
    /// without state, if any.
    pub(crate) fn noted_cgroup(&self, id: &ContainerId) -> Option<wharf_cgroups::Location> {
        let data = fs_err::read(self.container_dir(id).join(CGROUP_NOTE)).ok()?;
        serde_json::from_slice(&data).ok()
    }

    pub(crate) fn remove(&self, id: &ContainerId) -> Result<()> {
        let dir = self.container_dir(id);
        match fs_err::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(RuntimeError::host("remove state directory", &dir, e)),
        }
    }
}

impl Record {
    /// The container's cgroup, if it has one.
    pub(crate) fn cgroup(&self) -> Option<crate::cgroup::ContainerCgroup> {
        self.cgroup.as_ref().map(crate::cgroup::ContainerCgroup::at)
    }

    /// Whether the init recorded is still alive (and is the same process).
    pub(crate) fn init_alive(&self) -> bool {
        self.pid > 0 && process_start(self.pid).is_some_and(|start| start == self.pid_start)
    }

    pub(crate) fn status(&self, root: &StateRoot) -> Status {
        if !self.init_alive() {
            return Status::Stopped;
        }
        let fifo = root.dir().join(&self.id).join(FIFO_FILE);
        if fifo.exists() {
            Status::Created
        } else if self.cgroup().is_some_and(|c| c.frozen()) {
            Status::Paused
        } else {
            Status::Running
        }
    }

    pub(crate) fn to_state(&self, root: &StateRoot) -> ContainerState {
        let status = self.status(root);
        ContainerState {
            id: self.id.clone(),
            pid: if status == Status::Stopped {
                0
            } else {
                self.pid
            },
            status,
            bundle: self.bundle.clone(),
            rootfs: self.rootfs.clone(),
            created: self.created.clone(),
            owner: self.owner.clone(),
            annotations: self.config.annotations().clone().unwrap_or_default(),
        }
    }

    /// The OCI state document handed to hooks on stdin.
    pub(crate) fn oci_state_json(&self, status: &str) -> String {
        let state = serde_json::json!({
            "ociVersion": crate::OCI_VERSION,
            "id": self.id,
            "status": status,
            "pid": self.pid,
            "bundle": self.bundle,
            "annotations": self.config.annotations().clone().unwrap_or_default(),
        });
        state.to_string()
    }
}

/// Start time of a live, non-zombie process, from `/proc/<pid>/stat`.
pub(crate) fn process_start(pid: i32) -> Option<u64> {
    let stat = fs_err::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat).and_then(|(state, start)| (state != 'Z' && state != 'X').then_some(start))
}

/// Parses the state letter and start time out of a `/proc/<pid>/stat` line.
/// The command name may contain spaces and parentheses: fields are counted
/// from the last ')'.
fn parse_stat(stat: &str) -> Option<(char, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // Field 3 is the state; starttime is field 22, i.e. 19 further on.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_stat_handles_odd_command_names() {
        let line =
            "123 (a) b (c)) S 1 123 123 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 98765 1000 10";
        assert_eq!(parse_stat(line), Some(('S', 98765)));
    }

    #[test]
    fn own_process_is_alive() {
        let pid = std::process::id() as i32;
        assert!(process_start(pid).is_some());
        assert!(process_start(i32::MAX).is_none());
    }
}
