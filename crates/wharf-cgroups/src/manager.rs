//! The [`Manager`] trait both cgroup versions implement, what it reports, and
//! [`manager_for`], which picks the implementation for the host.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oci_spec::runtime::LinuxResources;

use crate::error::CgroupError;
use crate::hierarchy::{Hierarchy, OwnCgroups};
use crate::{files, Entry, V1Manager, V2Manager};

/// One cgroup (one directory per v1 controller, or one v2 directory) and the
/// operations a runtime performs on it.
///
/// Lifecycle: [`create`](Manager::create) → [`apply`](Manager::apply) →
/// [`add_process`](Manager::add_process) → … ([`freeze`](Manager::freeze),
/// [`stats`](Manager::stats), `apply` again for an update) →
/// [`kill_all`](Manager::kill_all) → [`destroy`](Manager::destroy). Every
/// operation may run in a different process from the one that created the
/// cgroup: a manager holds only paths. Errors name the file and value that
/// failed.
pub trait Manager: std::fmt::Debug {
    /// Creates the cgroup directories (and missing parents). An existing
    /// cgroup is reused, as runc does for containers whose cgroup exists.
    fn create(&self) -> Result<(), CgroupError>;

    /// Writes every set field of `resources`; unset fields keep their values,
    /// so this also serves `update`. Fields the version cannot honour are
    /// [`CgroupError::Unsupported`]; deprecated ones (kernel memory) are
    /// accepted and ignored.
    fn apply(&self, resources: &LinuxResources) -> Result<(), CgroupError>;

    /// Moves process `pid` (all its threads) into the cgroup.
    fn add_process(&self, pid: i32) -> Result<(), CgroupError>;

    /// Opens what a child needs to enter the cgroup without a move by pid
    /// ([`Entry`]).
    fn entry(&self) -> Result<Entry, CgroupError>;

    /// Freezes every process in the cgroup and returns once the kernel reports
    /// the cgroup frozen.
    fn freeze(&self) -> Result<(), CgroupError>;

    /// Thaws the cgroup and returns once it is no longer frozen.
    fn thaw(&self) -> Result<(), CgroupError>;

    /// Whether the cgroup is frozen now.
    fn freezer_state(&self) -> Result<FreezerState, CgroupError>;

    /// The processes in the cgroup (`cgroup.procs`).
    fn pids(&self) -> Result<Vec<i32>, CgroupError>;

    /// SIGKILLs every process in the cgroup and waits until it is empty.
    fn kill_all(&self) -> Result<(), CgroupError>;

    /// Current usage and limits; fields of controllers the host lacks are `None`.
    fn stats(&self) -> Result<Stats, CgroupError>;

    /// Removes the cgroup directories (and child cgroups), retrying while the
    /// last processes exit. A cgroup already gone is not an error.
    fn destroy(&self) -> Result<(), CgroupError>;

    /// Where the cgroup is, resolved: what another process needs to manage
    /// it again ([`Location::manager`]).
    fn location(&self) -> Location;
}

/// A cgroup's resolved directories. Serializable, so that the caller can
/// keep it (the runtime stores it in a container's state) and manage the
/// cgroup from another process, whatever that process's own cgroup is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Location {
    /// A v1 (or hybrid) host: controller → directory, and the directory in
    /// the unified hierarchy on a hybrid host.
    V1 {
        /// Controller (`memory`, `name=systemd`) → the cgroup's directory.
        dirs: BTreeMap<String, PathBuf>,
        /// The cgroup's directory in the unified hierarchy, if any.
        unified: Option<PathBuf>,
    },
    /// A pure v2 host.
    V2 {
        /// The hierarchy's mount point.
        mount_point: PathBuf,
        /// The cgroup's directory.
        dir: PathBuf,
    },
}

impl Location {
    /// A manager for the cgroup at this location.
    pub fn manager(&self) -> Box<dyn Manager> {
        match self {
            Location::V1 { dirs, unified } => {
                Box::new(V1Manager::with_dirs(dirs.clone(), unified.clone()))
            }
            Location::V2 { mount_point, dir } => Box::new(V2Manager::with_dir(mount_point, dir)),
        }
    }
}

/// The freezer's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreezerState {
    /// Processes run.
    Thawed,
    /// The freeze was asked for and is not complete yet (v1 `FREEZING`).
    Freezing,
    /// Every process is frozen.
    Frozen,
}

/// Usage and limits of a cgroup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Memory.
    pub memory: MemoryStats,
    /// Process numbers.
    pub pids: PidsStats,
    /// CPU time.
    pub cpu: CpuStats,
    /// Block I/O.
    pub io: IoStats,
}

/// Memory usage in bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// Current usage.
    pub usage: Option<u64>,
    /// The limit; `None` when unlimited or unknown.
    pub limit: Option<u64>,
    /// Highest usage seen (v1 `memory.max_usage_in_bytes`, v2 `memory.peak`).
    pub max_usage: Option<u64>,
    /// Processes the OOM killer killed in the cgroup (`oom_kill` of v1
    /// `memory.oom_control`, v2 `memory.events`).
    pub oom_kills: Option<u64>,
    /// Page cache not recently used, which the kernel reclaims first (v1
    /// `total_inactive_file`, v2 `inactive_file` of `memory.stat`); Docker
    /// subtracts it from `usage`.
    pub inactive_file: Option<u64>,
}

/// Bytes read from and written to block devices, summed over devices.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IoStats {
    /// Read (v1 `Read` of blkio's `io_service_bytes`, v2 `rbytes` of `io.stat`).
    pub read_bytes: Option<u64>,
    /// Written (v1 `Write`, v2 `wbytes`).
    pub write_bytes: Option<u64>,
}

/// Process counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PidsStats {
    /// Processes (and threads) in the cgroup.
    pub current: Option<u64>,
    /// The limit; `None` when unlimited or unknown.
    pub limit: Option<u64>,
}

/// CPU time consumed, in nanoseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuStats {
    /// Total.
    pub usage_ns: Option<u64>,
    /// In user mode.
    pub user_ns: Option<u64>,
    /// In kernel mode.
    pub system_ns: Option<u64>,
}

/// The manager for `cgroups_path` (OCI `linux.cgroupsPath`: absolute, or
/// relative to the caller's own cgroup as read from `/proc/self/cgroup` — on
/// v2 to that cgroup's parent, as runc does, since the own cgroup holds
/// processes and so cannot delegate controllers) on
/// `hierarchy`: [`V2Manager`] on a pure v2 host, else [`V1Manager`] (which on a
/// hybrid host also places the process in the unified hierarchy).
pub fn manager_for(
    hierarchy: &Hierarchy,
    cgroups_path: &Path,
) -> Result<Box<dyn Manager>, CgroupError> {
    let own = OwnCgroups::read()?;
    Ok(match hierarchy {
        Hierarchy::V2 { root } => Box::new(V2Manager::new(root, cgroups_path, &own)?),
        Hierarchy::V1 { mounts } => Box::new(V1Manager::new(mounts, None, cgroups_path, &own)?),
        Hierarchy::Hybrid { mounts, unified } => {
            Box::new(V1Manager::new(mounts, Some(unified), cgroups_path, &own)?)
        }
    })
}

/// How long freeze, thaw and kill wait for the kernel.
pub(crate) const STATE_TIMEOUT: Duration = Duration::from_secs(10);

/// Polls `check` with a growing pause until it returns true or
/// [`STATE_TIMEOUT`] passes.
pub(crate) fn wait_until(
    operation: &'static str,
    dir: &Path,
    mut check: impl FnMut() -> Result<bool, CgroupError>,
) -> Result<(), CgroupError> {
    let start = Instant::now();
    let mut pause = Duration::from_micros(500);
    loop {
        if check()? {
            return Ok(());
        }
        if start.elapsed() >= STATE_TIMEOUT {
            return Err(CgroupError::Timeout {
                operation,
                path: dir.to_path_buf(),
                waited_ms: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
            });
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// SIGKILLs each of `pids`; a process that is already gone is fine.
pub(crate) fn kill_pids(dir: &Path, pids: &[i32]) -> Result<(), CgroupError> {
    for &pid in pids {
        let Some(target) = rustix::process::Pid::from_raw(pid) else {
            continue;
        };
        match rustix::process::kill_process(target, rustix::process::Signal::KILL) {
            Ok(()) | Err(rustix::io::Errno::SRCH) => {}
            Err(errno) => {
                return Err(CgroupError::Signal {
                    pid,
                    path: dir.to_path_buf(),
                    source: errno.into(),
                })
            }
        }
    }
    Ok(())
}

/// Reads an optional number file: a missing file (controller absent) is `None`.
/// The number after `key` in a keyed file (`memory.oom_control`,
/// `memory.events`), if the file and the key exist.
pub(crate) fn optional_keyed_u64(path: &Path, key: &str) -> Result<Option<u64>, CgroupError> {
    if !path.exists() {
        return Ok(None);
    }
    let text = files::read(path)?;
    Ok(files::keyed(&text, key).and_then(|v| v.trim().parse().ok()))
}

pub(crate) fn optional_u64(path: &Path) -> Result<Option<u64>, CgroupError> {
    if !path.exists() {
        return Ok(None);
    }
    files::read_u64(path)
}
