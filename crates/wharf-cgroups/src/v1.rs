//! The cgroup v1 manager: one directory per controller hierarchy.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;

use crate::error::CgroupError;
use crate::files;
use crate::hierarchy::{self, OwnCgroups, V1Mount};
use crate::manager::{
    kill_pids, optional_keyed_u64, optional_u64, wait_until, CpuStats, FreezerState, IoStats,
    Manager, MemoryStats, PidsStats, Stats,
};
use crate::plan::{self, Write, UNIFIED};
use crate::Entry;

/// v1 reports "no limit" as the largest page-aligned counter value; anything
/// this large is no limit.
const V1_UNLIMITED: u64 = 1 << 62;

/// A cgroup on a v1 (or hybrid) host: one directory per mounted controller
/// (co-mounted controllers share one), plus the unified hierarchy's directory
/// on a hybrid host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Manager {
    dirs: BTreeMap<String, PathBuf>,
    unified: Option<PathBuf>,
}

impl V1Manager {
    /// A manager for the given directories: controller (`memory`,
    /// `name=systemd`) → the cgroup's directory in that hierarchy, and on a
    /// hybrid host the directory in the unified hierarchy.
    pub fn with_dirs(dirs: BTreeMap<String, PathBuf>, unified: Option<PathBuf>) -> V1Manager {
        V1Manager { dirs, unified }
    }

    pub(crate) fn new(
        mounts: &BTreeMap<String, V1Mount>,
        unified_mount: Option<&Path>,
        cgroups_path: &Path,
        own: &OwnCgroups,
    ) -> Result<V1Manager, CgroupError> {
        hierarchy::validate_cgroups_path(cgroups_path)?;
        let mut dirs = BTreeMap::new();
        for (controller, mount) in mounts {
            let path =
                hierarchy::cgroup_path(cgroups_path, own_for(own, controller, cgroups_path)?);
            dirs.insert(
                controller.clone(),
                hierarchy::dir_in_mount(&mount.mount_point, &mount.root, &path),
            );
        }
        let unified = match unified_mount {
            Some(mount) => {
                let path = hierarchy::cgroup_path(cgroups_path, own_for(own, "", cgroups_path)?);
                Some(hierarchy::dir_in_mount(mount, "/", &path))
            }
            None => None,
        };
        Ok(V1Manager { dirs, unified })
    }

    /// Controller → the cgroup's directory in its hierarchy.
    pub fn dirs(&self) -> &BTreeMap<String, PathBuf> {
        &self.dirs
    }

    /// The directory in the unified hierarchy, on a hybrid host.
    pub fn unified_dir(&self) -> Option<&Path> {
        self.unified.as_deref()
    }

    /// Every distinct directory, the unified one last.
    fn all_dirs(&self) -> Vec<&Path> {
        let mut seen = BTreeSet::new();
        let mut out: Vec<&Path> = self
            .dirs
            .values()
            .filter(|d| seen.insert(d.as_path()))
            .map(PathBuf::as_path)
            .collect();
        out.extend(self.unified.as_deref());
        out
    }

    fn dir(&self, controller: &str, file: &str, value: &str) -> Result<&Path, CgroupError> {
        let dir = if controller == UNIFIED {
            self.unified.as_deref()
        } else {
            self.dirs.get(controller).map(PathBuf::as_path)
        };
        dir.ok_or_else(|| CgroupError::ControllerMissing {
            controller: if controller == UNIFIED {
                "unified (cgroup v2)".to_owned()
            } else {
                controller.to_owned()
            },
            file: file.to_owned(),
            value: value.to_owned(),
        })
    }

    /// The directory whose `cgroup.procs` lists the cgroup's processes.
    fn procs_dir(&self) -> Result<&Path, CgroupError> {
        ["pids", "freezer", "memory", "cpu"]
            .iter()
            .find_map(|c| self.dirs.get(*c))
            .or_else(|| self.dirs.values().next())
            .map(PathBuf::as_path)
            .ok_or_else(|| CgroupError::ControllerMissing {
                controller: "any".to_owned(),
                file: "cgroup.procs".to_owned(),
                value: String::new(),
            })
    }

    fn facts(&self) -> Result<V1Facts, CgroupError> {
        let mut facts = V1Facts::default();
        if let Some(dir) = self.dirs.get("memory") {
            facts.memory_limit = optional_u64(&dir.join("memory.limit_in_bytes"))?;
            facts.memory_usage = optional_u64(&dir.join("memory.usage_in_bytes"))?;
        }
        if let Some(dir) = self.dirs.get("blkio") {
            facts.blkio_bfq =
                !dir.join("blkio.weight").exists() && dir.join("blkio.bfq.weight").exists();
        }
        facts.has_unified = self.unified.is_some();
        Ok(facts)
    }

    fn freezer_file(&self, value: &str) -> Result<PathBuf, CgroupError> {
        Ok(self
            .dir("freezer", "freezer.state", value)?
            .join("freezer.state"))
    }

    /// Gives a new cpuset cgroup its parent's cpus and mems: the kernel starts
    /// them empty, and a task cannot join a cpuset without both.
    fn fill_cpuset(&self, created: &[PathBuf]) -> Result<(), CgroupError> {
        let Some(leaf) = self.dirs.get("cpuset") else {
            return Ok(());
        };
        for dir in created.iter().chain(std::iter::once(leaf)) {
            let Some(parent) = dir.parent() else { continue };
            for file in ["cpuset.cpus", "cpuset.mems"] {
                let path = dir.join(file);
                if files::read(&path)?.trim().is_empty() {
                    let value = files::read(&parent.join(file))?;
                    files::write(&path, value.trim())?;
                }
            }
        }
        Ok(())
    }
}

fn own_for<'a>(
    own: &'a OwnCgroups,
    controller: &str,
    cgroups_path: &Path,
) -> Result<&'a str, CgroupError> {
    if cgroups_path.is_absolute() {
        Ok("/")
    } else {
        own.get(controller)
    }
}

impl Manager for V1Manager {
    fn location(&self) -> crate::Location {
        crate::Location::V1 {
            dirs: self.dirs.clone(),
            unified: self.unified.clone(),
        }
    }

    fn create(&self) -> Result<(), CgroupError> {
        let mut created: Vec<PathBuf> = Vec::new();
        let result = (|| {
            let mut cpuset_created = Vec::new();
            for dir in self.all_dirs() {
                let new = files::create_dir_all(dir)?;
                if self.dirs.get("cpuset").is_some_and(|d| d == dir) {
                    cpuset_created.clone_from(&new);
                }
                created.extend(new);
            }
            self.fill_cpuset(&cpuset_created)
        })();
        if result.is_err() {
            // Undo in reverse: what this call created, deepest first.
            for dir in created.iter().rev() {
                if let Err(e) = files::remove_dir_tree(dir) {
                    tracing::warn!(path = %dir.display(), error = %e, "roll back cgroup creation");
                }
            }
        }
        result
    }

    fn apply(&self, resources: &LinuxResources) -> Result<(), CgroupError> {
        let leaf = self.procs_dir()?.to_path_buf();
        for write in plan_v1(resources, &self.facts()?, &leaf)? {
            let dir = self.dir(write.controller, &write.file, &write.value)?;
            files::write(&dir.join(&write.file), &write.value)?;
        }
        Ok(())
    }

    fn add_process(&self, pid: i32) -> Result<(), CgroupError> {
        for dir in self.all_dirs() {
            files::write(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    fn entry(&self) -> Result<Entry, CgroupError> {
        let mut seen = BTreeSet::new();
        let v1 = self
            .dirs
            .values()
            .filter(|d| seen.insert(d.as_path()))
            .map(PathBuf::as_path);
        Entry::open(v1, self.unified.as_deref())
    }

    fn freeze(&self) -> Result<(), CgroupError> {
        let path = self.freezer_file("FROZEN")?;
        let dir = path.parent().unwrap_or(&path).to_path_buf();
        // Writing FROZEN again nudges tasks that were between states (runc
        // retries the same way).
        wait_until("freeze", &dir, || {
            files::write(&path, "FROZEN")?;
            Ok(parse_freezer_state(&path, &files::read(&path)?)? == FreezerState::Frozen)
        })
    }

    fn thaw(&self) -> Result<(), CgroupError> {
        let path = self.freezer_file("THAWED")?;
        let dir = path.parent().unwrap_or(&path).to_path_buf();
        wait_until("thaw", &dir, || {
            files::write(&path, "THAWED")?;
            Ok(parse_freezer_state(&path, &files::read(&path)?)? == FreezerState::Thawed)
        })
    }

    fn freezer_state(&self) -> Result<FreezerState, CgroupError> {
        let path = self.freezer_file("")?;
        parse_freezer_state(&path, &files::read(&path)?)
    }

    fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        files::read_pids(self.procs_dir()?)
    }

    fn kill_all(&self) -> Result<(), CgroupError> {
        let dir = self.procs_dir()?.to_path_buf();
        // Frozen, nothing can fork between reading the pids and killing them.
        let frozen = self.dirs.contains_key("freezer") && self.freeze().is_ok();
        let killed = self.pids().and_then(|pids| kill_pids(&dir, &pids));
        if frozen {
            self.thaw()?;
        }
        killed?;
        wait_until("kill all processes in", &dir, || {
            let pids = self.pids()?;
            kill_pids(&dir, &pids)?;
            Ok(pids.is_empty())
        })
    }

    fn stats(&self) -> Result<Stats, CgroupError> {
        let mut stats = Stats::default();
        let limited = |v: Option<u64>| v.filter(|v| *v < V1_UNLIMITED);
        if let Some(dir) = self.dirs.get("memory") {
            stats.memory = MemoryStats {
                usage: optional_u64(&dir.join("memory.usage_in_bytes"))?,
                limit: limited(optional_u64(&dir.join("memory.limit_in_bytes"))?),
                max_usage: optional_u64(&dir.join("memory.max_usage_in_bytes"))?,
                oom_kills: optional_keyed_u64(&dir.join("memory.oom_control"), "oom_kill")?,
                inactive_file: optional_keyed_u64(&dir.join("memory.stat"), "total_inactive_file")?,
            };
        }
        if let Some(dir) = self.dirs.get("blkio") {
            stats.io = blkio_stats(dir)?;
        }
        if let Some(dir) = self.dirs.get("pids") {
            stats.pids = PidsStats {
                current: optional_u64(&dir.join("pids.current"))?,
                limit: optional_u64(&dir.join("pids.max"))?,
            };
        }
        if let Some(dir) = self.dirs.get("cpuacct") {
            stats.cpu = CpuStats {
                usage_ns: optional_u64(&dir.join("cpuacct.usage"))?,
                user_ns: optional_u64(&dir.join("cpuacct.usage_user"))?,
                system_ns: optional_u64(&dir.join("cpuacct.usage_sys"))?,
            };
        }
        Ok(stats)
    }

    fn destroy(&self) -> Result<(), CgroupError> {
        let mut first_error = None;
        for dir in self.all_dirs() {
            if let Err(e) = files::remove_dir_tree(dir) {
                tracing::warn!(path = %dir.display(), error = %e, "remove cgroup");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// blkio's byte counters, from the first file (in runc's order: BFQ, CFQ,
/// throttle) that has per-device entries: the scheduler's files count only
/// I/O it scheduled, the throttle files all of it.
fn blkio_stats(dir: &Path) -> Result<IoStats, CgroupError> {
    const FILES: [&str; 4] = [
        "blkio.bfq.io_service_bytes_recursive",
        "blkio.io_service_bytes_recursive",
        "blkio.throttle.io_service_bytes_recursive",
        "blkio.throttle.io_service_bytes",
    ];
    let mut any = false;
    for name in FILES {
        let path = dir.join(name);
        if !path.exists() {
            continue;
        }
        any = true;
        if let Some((read, write)) = parse_blkio_bytes(&files::read(&path)?) {
            return Ok(IoStats {
                read_bytes: Some(read),
                write_bytes: Some(write),
            });
        }
    }
    Ok(if any {
        IoStats {
            read_bytes: Some(0),
            write_bytes: Some(0),
        }
    } else {
        IoStats::default()
    })
}

/// Sums the `Read` and `Write` entries of a blkio `io_service_bytes` file
/// (`MAJ:MIN Op VALUE` lines and a `Total VALUE` line); `None` when it has
/// no device entries.
fn parse_blkio_bytes(text: &str) -> Option<(u64, u64)> {
    let mut sums = None;
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let (Some(_device), Some(op), Some(value), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let Ok(value) = value.parse::<u64>() else {
            continue;
        };
        let (read, write) = sums.get_or_insert((0u64, 0u64));
        if op.eq_ignore_ascii_case("read") {
            *read = read.saturating_add(value);
        } else if op.eq_ignore_ascii_case("write") {
            *write = write.saturating_add(value);
        }
    }
    sums
}

fn parse_freezer_state(path: &Path, text: &str) -> Result<FreezerState, CgroupError> {
    match text.trim() {
        "THAWED" => Ok(FreezerState::Thawed),
        "FREEZING" => Ok(FreezerState::Freezing),
        "FROZEN" => Ok(FreezerState::Frozen),
        other => Err(CgroupError::Parse {
            path: path.to_path_buf(),
            content: other.to_owned(),
        }),
    }
}

/// What the v1 plan needs to know about the cgroup as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct V1Facts {
    /// `memory.limit_in_bytes` now.
    pub(crate) memory_limit: Option<u64>,
    /// `memory.usage_in_bytes` now.
    pub(crate) memory_usage: Option<u64>,
    /// The blkio controller offers BFQ's weight files instead of CFQ's.
    pub(crate) blkio_bfq: bool,
    /// A hybrid host: `unified` keys go to the v2 directory.
    pub(crate) has_unified: bool,
}

/// The v1 writes for `r`, in order. `dir` only names the cgroup in errors.
pub(crate) fn plan_v1(
    r: &LinuxResources,
    facts: &V1Facts,
    dir: &Path,
) -> Result<Vec<Write>, CgroupError> {
    let mut out = Vec::new();
    if let Some(memory) = r.memory() {
        let limit = memory.limit();
        let mut swap = memory.swap();
        // An unlimited memory limit without a swap value lifts memsw too, or the
        // kernel refuses memory > memsw (runc does the same).
        if limit == Some(-1) && swap.is_none() {
            swap = Some(-1);
        }
        if let (Some(l), Some(s)) = (limit, swap) {
            if l > 0 && s > 0 && s < l {
                return Err(CgroupError::invalid(format!(
                    "memory.swap {s} (memory+swap) is below memory.limit {l}"
                )));
            }
        }
        if let (Some(true), Some(l), Some(usage)) =
            (memory.check_before_update(), limit, facts.memory_usage)
        {
            if l > 0 && usage > l.unsigned_abs() {
                return Err(CgroupError::LimitBelowUsage {
                    path: dir.to_path_buf(),
                    limit: l,
                    usage,
                });
            }
        }
        let limit_write = limit.map(|l| Write::new("memory", "memory.limit_in_bytes", l));
        let swap_write = swap.map(|s| Write::new("memory", "memory.memsw.limit_in_bytes", s));
        // The kernel keeps memory <= memsw at every step: raise memsw first
        // when the new memsw is above the current memory limit.
        let current = facts.memory_limit.unwrap_or(u64::MAX);
        let swap_first = match (limit, swap) {
            (Some(_), Some(s)) => s == -1 || current < s.unsigned_abs(),
            _ => false,
        };
        if swap_first {
            out.extend(swap_write.clone());
            out.extend(limit_write);
        } else {
            out.extend(limit_write);
            out.extend(swap_write);
        }
        if let Some(reservation) = memory.reservation() {
            out.push(Write::new(
                "memory",
                "memory.soft_limit_in_bytes",
                reservation,
            ));
        }
        if memory.kernel().is_some() {
            tracing::debug!("memory.kernel is deprecated by the kernel; ignored");
        }
        if let Some(tcp) = memory.kernel_tcp() {
            out.push(Write::new("memory", "memory.kmem.tcp.limit_in_bytes", tcp));
        }
        if let Some(swappiness) = memory.swappiness() {
            if swappiness > 100 {
                return Err(CgroupError::invalid(format!(
                    "memory.swappiness {swappiness}: use 0 to 100"
                )));
            }
            out.push(Write::new("memory", "memory.swappiness", swappiness));
        }
        if memory.disable_oom_killer() == Some(true) {
            out.push(Write::new("memory", "memory.oom_control", 1));
        }
    }
    if let Some(cpu) = r.cpu() {
        if let Some(shares) = cpu.shares() {
            out.push(Write::new("cpu", "cpu.shares", shares));
        }
        if let Some(period) = cpu.period() {
            out.push(Write::new("cpu", "cpu.cfs_period_us", period));
        }
        if let Some(quota) = cpu.quota() {
            out.push(Write::new("cpu", "cpu.cfs_quota_us", quota));
        }
        if let Some(burst) = cpu.burst() {
            out.push(Write::new("cpu", "cpu.cfs_burst_us", burst));
        }
        if let Some(period) = cpu.realtime_period() {
            out.push(Write::new("cpu", "cpu.rt_period_us", period));
        }
        if let Some(runtime) = cpu.realtime_runtime() {
            out.push(Write::new("cpu", "cpu.rt_runtime_us", runtime));
        }
        if let Some(idle) = cpu.idle() {
            out.push(Write::new("cpu", "cpu.idle", idle));
        }
        if let Some(cpus) = cpu.cpus().as_deref().filter(|s| !s.is_empty()) {
            out.push(Write::new("cpuset", "cpuset.cpus", cpus));
        }
        if let Some(mems) = cpu.mems().as_deref().filter(|s| !s.is_empty()) {
            out.push(Write::new("cpuset", "cpuset.mems", mems));
        }
    }
    if let Some(pids) = r.pids() {
        out.push(Write::new("pids", "pids.max", plan::pids_max(pids.limit())));
    }
    if let Some(io) = r.block_io() {
        let (weight, weight_device) = if facts.blkio_bfq {
            ("blkio.bfq.weight", "blkio.bfq.weight_device")
        } else {
            ("blkio.weight", "blkio.weight_device")
        };
        if let Some(w) = io.weight() {
            out.push(Write::new("blkio", weight, w));
        }
        if let Some(w) = io.leaf_weight() {
            out.push(Write::new("blkio", "blkio.leaf_weight", w));
        }
        for device in io.weight_device().iter().flatten() {
            let id = format!("{}:{}", device.major(), device.minor());
            if let Some(w) = device.weight() {
                out.push(Write::new("blkio", weight_device, format!("{id} {w}")));
            }
            if let Some(w) = device.leaf_weight() {
                out.push(Write::new(
                    "blkio",
                    "blkio.leaf_weight_device",
                    format!("{id} {w}"),
                ));
            }
        }
        for (file, devices) in [
            (
                "blkio.throttle.read_bps_device",
                io.throttle_read_bps_device(),
            ),
            (
                "blkio.throttle.write_bps_device",
                io.throttle_write_bps_device(),
            ),
            (
                "blkio.throttle.read_iops_device",
                io.throttle_read_iops_device(),
            ),
            (
                "blkio.throttle.write_iops_device",
                io.throttle_write_iops_device(),
            ),
        ] {
            for device in devices.iter().flatten() {
                out.push(Write::new(
                    "blkio",
                    file,
                    format!("{}:{} {}", device.major(), device.minor(), device.rate()),
                ));
            }
        }
    }
    for hugepage in r.hugepage_limits().iter().flatten() {
        out.push(Write::new(
            "hugetlb",
            format!("hugetlb.{}.limit_in_bytes", hugepage.page_size()),
            hugepage.limit(),
        ));
    }
    if let Some(network) = r.network() {
        if let Some(class_id) = network.class_id() {
            out.push(Write::new("net_cls", "net_cls.classid", class_id));
        }
        for priority in network.priorities().iter().flatten() {
            out.push(Write::new(
                "net_prio",
                "net_prio.ifpriomap",
                format!("{} {}", priority.name(), priority.priority()),
            ));
        }
    }
    if let Some(rdma) = r.rdma() {
        out.extend(plan::rdma_writes(rdma));
    }
    for rule in r.devices().iter().flatten() {
        let file = if rule.allow() {
            "devices.allow"
        } else {
            "devices.deny"
        };
        out.push(Write::new("devices", file, plan::device_rule(rule)?));
    }
    if let Some(unified) = r.unified().as_ref().filter(|u| !u.is_empty()) {
        if !facts.has_unified {
            return Err(CgroupError::Unsupported {
                what: "linux.resources.unified".to_owned(),
                version: "cgroup v1 without a unified hierarchy",
            });
        }
        out.extend(plan::unified_writes(unified, UNIFIED)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blkio_bytes_sum_reads_and_writes_over_devices() {
        let text = "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\n8:0 Total 12288\n\
                    8:16 Read 1000\n8:16 Write 0\n8:16 Total 1000\nTotal 13288\n";
        assert_eq!(parse_blkio_bytes(text), Some((5096, 8192)));
        assert_eq!(parse_blkio_bytes("Total 0\n"), None);
        assert_eq!(parse_blkio_bytes(""), None);
    }

    fn resources(json: &str) -> LinuxResources {
        serde_json::from_str(json).unwrap()
    }

    fn writes(list: &[(&'static str, &str, &str)]) -> Vec<Write> {
        list.iter().map(|(c, f, v)| Write::new(c, *f, v)).collect()
    }

    const EVERYTHING: &str = r#"{
        "devices": [
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}
        ],
        "memory": {"limit": 1048576, "reservation": 524288, "swap": 2097152,
                   "kernel": 1, "kernelTCP": 4096, "swappiness": 10,
                   "disableOOMKiller": true, "useHierarchy": true},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "burst": 1000,
                "realtimeRuntime": 950, "realtimePeriod": 1000, "cpus": "0-1",
                "mems": "0", "idle": 1},
        "pids": {"limit": 32},
        "blockIO": {"weight": 500, "leafWeight": 300,
                    "weightDevice": [{"major": 8, "minor": 0, "weight": 600, "leafWeight": 200}],
                    "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1000}],
                    "throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": 2000}],
                    "throttleReadIOPSDevice": [{"major": 8, "minor": 0, "rate": 30}],
                    "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 40}]},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}],
        "network": {"classID": 1048577, "priorities": [{"name": "eth0", "priority": 5}]},
        "rdma": {"mlx5_0": {"hcaHandles": 3, "hcaObjects": 10}}
    }"#;

    #[test]
    fn every_field_in_order() {
        let facts = V1Facts::default();
        let plan = plan_v1(&resources(EVERYTHING), &facts, Path::new("/cg")).unwrap();
        assert_eq!(
            plan,
            writes(&[
                ("memory", "memory.limit_in_bytes", "1048576"),
                ("memory", "memory.memsw.limit_in_bytes", "2097152"),
                ("memory", "memory.soft_limit_in_bytes", "524288"),
                ("memory", "memory.kmem.tcp.limit_in_bytes", "4096"),
                ("memory", "memory.swappiness", "10"),
                ("memory", "memory.oom_control", "1"),
                ("cpu", "cpu.shares", "512"),
                ("cpu", "cpu.cfs_period_us", "100000"),
                ("cpu", "cpu.cfs_quota_us", "50000"),
                ("cpu", "cpu.cfs_burst_us", "1000"),
                ("cpu", "cpu.rt_period_us", "1000"),
                ("cpu", "cpu.rt_runtime_us", "950"),
                ("cpu", "cpu.idle", "1"),
                ("cpuset", "cpuset.cpus", "0-1"),
                ("cpuset", "cpuset.mems", "0"),
                ("pids", "pids.max", "32"),
                ("blkio", "blkio.weight", "500"),
                ("blkio", "blkio.leaf_weight", "300"),
                ("blkio", "blkio.weight_device", "8:0 600"),
                ("blkio", "blkio.leaf_weight_device", "8:0 200"),
                ("blkio", "blkio.throttle.read_bps_device", "8:0 1000"),
                ("blkio", "blkio.throttle.write_bps_device", "8:0 2000"),
                ("blkio", "blkio.throttle.read_iops_device", "8:0 30"),
                ("blkio", "blkio.throttle.write_iops_device", "8:0 40"),
                ("hugetlb", "hugetlb.2MB.limit_in_bytes", "4194304"),
                ("net_cls", "net_cls.classid", "1048577"),
                ("net_prio", "net_prio.ifpriomap", "eth0 5"),
                ("rdma", "rdma.max", "mlx5_0 hca_handle=3 hca_object=10"),
                ("devices", "devices.deny", "a *:* rwm"),
                ("devices", "devices.allow", "c 1:3 rwm"),
            ])
        );
    }

    #[test]
    fn empty_resources_write_nothing() {
        let plan = plan_v1(&resources("{}"), &V1Facts::default(), Path::new("/cg")).unwrap();
        assert!(plan.is_empty());
    }

    #[test]
    fn memsw_goes_first_when_raising_above_the_current_limit() {
        let facts = V1Facts {
            memory_limit: Some(1000),
            ..V1Facts::default()
        };
        let r = resources(r#"{"memory": {"limit": 2000, "swap": 4000}}"#);
        assert_eq!(
            plan_v1(&r, &facts, Path::new("/cg")).unwrap(),
            writes(&[
                ("memory", "memory.memsw.limit_in_bytes", "4000"),
                ("memory", "memory.limit_in_bytes", "2000"),
            ])
        );
    }

    #[test]
    fn unlimited_memory_lifts_memsw_too() {
        let r = resources(r#"{"memory": {"limit": -1}}"#);
        assert_eq!(
            plan_v1(&r, &V1Facts::default(), Path::new("/cg")).unwrap(),
            writes(&[
                ("memory", "memory.memsw.limit_in_bytes", "-1"),
                ("memory", "memory.limit_in_bytes", "-1"),
            ])
        );
    }

    #[test]
    fn invalid_memory_values_are_refused() {
        let r = resources(r#"{"memory": {"limit": 2000, "swap": 1000}}"#);
        assert_eq!(
            plan_v1(&r, &V1Facts::default(), Path::new("/cg"))
                .unwrap_err()
                .to_string(),
            "invalid resources: memory.swap 1000 (memory+swap) is below memory.limit 2000"
        );
        let r = resources(r#"{"memory": {"swappiness": 101}}"#);
        assert!(plan_v1(&r, &V1Facts::default(), Path::new("/cg")).is_err());
    }

    #[test]
    fn check_before_update_compares_with_usage() {
        let facts = V1Facts {
            memory_usage: Some(5000),
            ..V1Facts::default()
        };
        let r = resources(r#"{"memory": {"limit": 4096, "checkBeforeUpdate": true}}"#);
        let err = plan_v1(&r, &facts, Path::new("/cg")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "memory limit 4096 is below the current usage 5000 of /cg"
        );
        assert_eq!(err.kind(), crate::ErrorKind::Conflict);
        let r = resources(r#"{"memory": {"limit": 8192, "checkBeforeUpdate": true}}"#);
        assert!(plan_v1(&r, &facts, Path::new("/cg")).is_ok());
    }

    #[test]
    fn bfq_weight_files_replace_cfq_ones() {
        let facts = V1Facts {
            blkio_bfq: true,
            ..V1Facts::default()
        };
        let r = resources(
            r#"{"blockIO": {"weight": 100, "weightDevice": [{"major": 8, "minor": 16, "weight": 200}]}}"#,
        );
        assert_eq!(
            plan_v1(&r, &facts, Path::new("/cg")).unwrap(),
            writes(&[
                ("blkio", "blkio.bfq.weight", "100"),
                ("blkio", "blkio.bfq.weight_device", "8:16 200"),
            ])
        );
    }

    #[test]
    fn pids_limit_zero_is_max() {
        let r = resources(r#"{"pids": {"limit": 0}}"#);
        assert_eq!(
            plan_v1(&r, &V1Facts::default(), Path::new("/cg")).unwrap(),
            writes(&[("pids", "pids.max", "max")])
        );
    }

    #[test]
    fn unified_keys_need_a_hybrid_host() {
        let r = resources(r#"{"unified": {"memory.high": "100"}}"#);
        let err = plan_v1(&r, &V1Facts::default(), Path::new("/cg")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "linux.resources.unified is not supported on cgroup v1 without a unified hierarchy"
        );
        let facts = V1Facts {
            has_unified: true,
            ..V1Facts::default()
        };
        assert_eq!(
            plan_v1(&r, &facts, Path::new("/cg")).unwrap(),
            writes(&[(UNIFIED, "memory.high", "100")])
        );
    }

    #[test]
    fn freezer_states_parse() {
        let p = Path::new("/f/freezer.state");
        assert_eq!(
            parse_freezer_state(p, "FROZEN\n").unwrap(),
            FreezerState::Frozen
        );
        assert_eq!(
            parse_freezer_state(p, "THAWED\n").unwrap(),
            FreezerState::Thawed
        );
        assert_eq!(
            parse_freezer_state(p, "FREEZING\n").unwrap(),
            FreezerState::Freezing
        );
        assert!(parse_freezer_state(p, "x").is_err());
    }

    #[test]
    fn dirs_follow_the_own_cgroup_for_relative_paths() {
        let mut mounts = BTreeMap::new();
        for (c, point) in [
            ("memory", "/sys/fs/cgroup/memory"),
            ("cpu", "/sys/fs/cgroup/cpu,cpuacct"),
            ("cpuacct", "/sys/fs/cgroup/cpu,cpuacct"),
        ] {
            mounts.insert(
                c.to_owned(),
                V1Mount {
                    mount_point: point.into(),
                    root: "/".into(),
                },
            );
        }
        let own = OwnCgroups::parse("4:memory:/user/1\n2:cpu,cpuacct:/\n0::/u\n");
        let m = V1Manager::new(
            &mounts,
            Some(Path::new("/sys/fs/cgroup/unified")),
            Path::new("ctr"),
            &own,
        )
        .unwrap();
        assert_eq!(
            m.dirs()["memory"],
            Path::new("/sys/fs/cgroup/memory/user/1/ctr")
        );
        assert_eq!(m.dirs()["cpu"], Path::new("/sys/fs/cgroup/cpu,cpuacct/ctr"));
        assert_eq!(
            m.unified_dir(),
            Some(Path::new("/sys/fs/cgroup/unified/u/ctr"))
        );
        assert_eq!(m.all_dirs().len(), 3);
        let abs = V1Manager::new(&mounts, None, Path::new("/a/b"), &own).unwrap();
        assert_eq!(abs.dirs()["memory"], Path::new("/sys/fs/cgroup/memory/a/b"));
    }
}
