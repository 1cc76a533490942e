//! The cgroup v2 manager: one directory in the unified hierarchy.

use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;

use crate::error::CgroupError;
use crate::files;
use crate::hierarchy::{self, OwnCgroups};
use crate::manager::{
    kill_pids, optional_keyed_u64, optional_u64, wait_until, CpuStats, FreezerState, IoStats,
    Manager, MemoryStats, PidsStats, Stats,
};
use crate::plan::{self, Write};
use crate::Entry;

const VERSION: &str = "cgroup v2";

/// A cgroup in the unified (v2) hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V2Manager {
    /// The hierarchy's mount point; ancestors between it and `dir` get their
    /// controllers delegated on create.
    mount_point: PathBuf,
    dir: PathBuf,
}

impl V2Manager {
    /// A manager for the cgroup directory `dir` in the v2 hierarchy mounted at
    /// `mount_point` (`dir` must lie below it).
    pub fn with_dir(mount_point: impl Into<PathBuf>, dir: impl Into<PathBuf>) -> V2Manager {
        V2Manager {
            mount_point: mount_point.into(),
            dir: dir.into(),
        }
    }

    pub(crate) fn new(
        mount_point: &Path,
        cgroups_path: &Path,
        own: &OwnCgroups,
    ) -> Result<V2Manager, CgroupError> {
        hierarchy::validate_cgroups_path(cgroups_path)?;
        // A relative path lands beside the caller's own cgroup, below its
        // parent, as runc's fs2 driver does: the own cgroup holds the caller,
        // and v2's no-internal-processes rule forbids enabling controllers
        // for children of a cgroup with processes in it.
        let own_parent = if cgroups_path.is_absolute() {
            std::path::PathBuf::from("/")
        } else {
            let own_path = Path::new(own.get("")?);
            own_path.parent().unwrap_or(own_path).to_path_buf()
        };
        let own_parent = own_parent.to_string_lossy();
        let path = hierarchy::cgroup_path(cgroups_path, &own_parent);
        Ok(V2Manager::with_dir(
            mount_point,
            hierarchy::dir_in_mount(mount_point, "/", &path),
        ))
    }

    /// The cgroup's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn facts(&self) -> Result<V2Facts, CgroupError> {
        Ok(V2Facts {
            memory_usage: optional_u64(&self.dir.join("memory.current"))?,
            io_bfq: self.dir.join("io.bfq.weight").exists(),
            swap_file: self.dir.join("memory.swap.max").exists(),
        })
    }

    /// Enables in each ancestor's `cgroup.subtree_control` every controller
    /// it offers, from the mount point down to the parent, so the new cgroup
    /// has the controllers' files (runc and crun delegate the same way).
    fn delegate_controllers(&self) -> Result<(), CgroupError> {
        let Ok(below) = self.dir.strip_prefix(&self.mount_point) else {
            return Ok(());
        };
        let mut ancestor = self.mount_point.clone();
        let components: Vec<_> = below.components().collect();
        for component in components.iter().take(components.len().saturating_sub(1)) {
            enable_all_controllers(&ancestor)?;
            ancestor.push(component);
        }
        enable_all_controllers(&ancestor)
    }

    fn events_key(&self, key: &str) -> Result<Option<String>, CgroupError> {
        let text = files::read(&self.dir.join("cgroup.events"))?;
        Ok(files::keyed(&text, key).map(str::to_owned))
    }
}

fn enable_all_controllers(dir: &Path) -> Result<(), CgroupError> {
    let offered = files::read(&dir.join("cgroup.controllers"))?;
    let enabled = files::read(&dir.join("cgroup.subtree_control"))?;
    let missing: Vec<String> = offered
        .split_whitespace()
        .filter(|c| !enabled.split_whitespace().any(|e| e == *c))
        .map(|c| format!("+{c}"))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    files::write(&dir.join("cgroup.subtree_control"), &missing.join(" "))
}

impl V2Manager {
    /// Loads the program for `rules` and attaches it to the cgroup,
    /// replacing the one attached before.
    fn attach_device_program(
        &self,
        rules: &[oci_spec::runtime::LinuxDeviceCgroup],
    ) -> Result<(), CgroupError> {
        let insns = crate::devices_bpf::program(rules)?;
        let err = |operation: &'static str| {
            let path = self.dir.clone();
            move |source: std::io::Error| CgroupError::DeviceProgram {
                operation,
                path,
                source,
            }
        };
        let program = wharf_sys::bpf::load_device_program(&insns).map_err(err("load"))?;
        let dir = rustix::fs::open(
            &self.dir,
            rustix::fs::OFlags::RDONLY
                | rustix::fs::OFlags::DIRECTORY
                | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| err("open cgroup for")(e.into()))?;
        use std::os::fd::AsFd;
        wharf_sys::bpf::attach_device_program(dir.as_fd(), program.as_fd()).map_err(err("attach"))
    }
}

impl Manager for V2Manager {
    fn location(&self) -> crate::Location {
        crate::Location::V2 {
            mount_point: self.mount_point.clone(),
            dir: self.dir.clone(),
        }
    }

    fn create(&self) -> Result<(), CgroupError> {
        let created = files::create_dir_all(&self.dir)?;
        let result = self.delegate_controllers();
        if result.is_err() {
            for dir in created.iter().rev() {
                if let Err(e) = files::remove_dir_tree(dir) {
                    tracing::warn!(path = %dir.display(), error = %e, "roll back cgroup creation");
                }
            }
        }
        result
    }

    fn apply(&self, resources: &LinuxResources) -> Result<(), CgroupError> {
        for write in plan_v2(resources, &self.facts()?, &self.dir)? {
            files::write(&self.dir.join(&write.file), &write.value)?;
        }
        if let Some(rules) = resources.devices().as_ref().filter(|d| !d.is_empty()) {
            self.attach_device_program(rules)?;
        }
        Ok(())
    }

    fn add_process(&self, pid: i32) -> Result<(), CgroupError> {
        files::write(&self.dir.join("cgroup.procs"), &pid.to_string())
    }

    fn entry(&self) -> Result<Entry, CgroupError> {
        Entry::open([], Some(&self.dir))
    }

    fn freeze(&self) -> Result<(), CgroupError> {
        files::write(&self.dir.join("cgroup.freeze"), "1")?;
        wait_until("freeze", &self.dir, || {
            Ok(self.events_key("frozen")?.as_deref() == Some("1"))
        })
    }

    fn thaw(&self) -> Result<(), CgroupError> {
        files::write(&self.dir.join("cgroup.freeze"), "0")?;
        wait_until("thaw", &self.dir, || {
            Ok(self.events_key("frozen")?.as_deref() != Some("1"))
        })
    }

    fn freezer_state(&self) -> Result<FreezerState, CgroupError> {
        let asked = files::read(&self.dir.join("cgroup.freeze"))?;
        let frozen = self.events_key("frozen")?.as_deref() == Some("1");
        Ok(match (asked.trim() == "1", frozen) {
            (_, true) => FreezerState::Frozen,
            (true, false) => FreezerState::Freezing,
            (false, false) => FreezerState::Thawed,
        })
    }

    fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        files::read_pids(&self.dir)
    }

    fn kill_all(&self) -> Result<(), CgroupError> {
        let kill_file = self.dir.join("cgroup.kill");
        if kill_file.exists() {
            // cgroup.kill (5.14) kills atomically, forks included.
            files::write(&kill_file, "1")?;
        } else {
            // Older kernels: freeze so nothing forks between reading and killing.
            let frozen = self.freeze().is_ok();
            let killed = self.pids().and_then(|pids| kill_pids(&self.dir, &pids));
            if frozen {
                self.thaw()?;
            }
            killed?;
        }
        wait_until("kill all processes in", &self.dir, || {
            let pids = self.pids()?;
            kill_pids(&self.dir, &pids)?;
            Ok(pids.is_empty())
        })
    }

    fn stats(&self) -> Result<Stats, CgroupError> {
        let cpu = files::read(&self.dir.join("cpu.stat"))?;
        let usec = |key: &str| {
            files::keyed(&cpu, key)
                .and_then(|v| v.parse::<u64>().ok())
                .map(|v| v.saturating_mul(1000))
        };
        Ok(Stats {
            memory: MemoryStats {
                usage: optional_u64(&self.dir.join("memory.current"))?,
                limit: optional_u64(&self.dir.join("memory.max"))?,
                max_usage: optional_u64(&self.dir.join("memory.peak"))?,
                oom_kills: optional_keyed_u64(&self.dir.join("memory.events"), "oom_kill")?,
                inactive_file: optional_keyed_u64(&self.dir.join("memory.stat"), "inactive_file")?,
            },
            pids: PidsStats {
                current: optional_u64(&self.dir.join("pids.current"))?,
                limit: optional_u64(&self.dir.join("pids.max"))?,
            },
            cpu: CpuStats {
                usage_ns: usec("usage_usec"),
                user_ns: usec("user_usec"),
                system_ns: usec("system_usec"),
            },
            io: {
                let path = self.dir.join("io.stat");
                if path.exists() {
                    let (read, write) = parse_io_stat(&files::read(&path)?);
                    IoStats {
                        read_bytes: Some(read),
                        write_bytes: Some(write),
                    }
                } else {
                    IoStats::default()
                }
            },
        })
    }

    fn destroy(&self) -> Result<(), CgroupError> {
        files::remove_dir_tree(&self.dir)
    }
}

/// Sums `rbytes` and `wbytes` of `io.stat` (`MAJ:MIN key=value …` per
/// device) over its devices.
fn parse_io_stat(text: &str) -> (u64, u64) {
    let (mut read, mut write) = (0u64, 0u64);
    for (key, value) in text
        .split_whitespace()
        .filter_map(|field| field.split_once('='))
    {
        let Ok(value) = value.parse::<u64>() else {
            continue;
        };
        match key {
            "rbytes" => read = read.saturating_add(value),
            "wbytes" => write = write.saturating_add(value),
            _ => {}
        }
    }
    (read, write)
}

/// What the v2 plan needs to know about the cgroup as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct V2Facts {
    /// `memory.current` now.
    pub(crate) memory_usage: Option<u64>,
    /// `io.bfq.weight` exists (BFQ takes v1-range weights directly).
    pub(crate) io_bfq: bool,
    /// `memory.swap.max` exists (swap accounting is on).
    pub(crate) swap_file: bool,
}

/// cpu.shares (2..262144) → cpu.weight (1..10000), as runc and crun convert.
pub(crate) fn cpu_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

/// blkio.weight (10..1000) → io.weight (1..10000), as runc and crun convert.
pub(crate) fn io_weight(weight: u16) -> u64 {
    let weight = u64::from(weight.clamp(10, 1000));
    1 + (weight - 10) * 9999 / 990
}

/// OCI `memory.swap` is memory+swap (v1 memsw); v2's `memory.swap.max` is swap
/// alone. Returns the v2 value: `None` to leave it, `Some(-1)` for `max`.
pub(crate) fn swap_max(swap: Option<i64>, limit: Option<i64>) -> Result<Option<i64>, CgroupError> {
    match swap {
        None | Some(0) => Ok(None),
        Some(-1) => Ok(Some(-1)),
        Some(s) => match limit {
            None | Some(0) | Some(-1) => Err(CgroupError::invalid(format!(
                "memory.swap {s} needs a memory.limit on cgroup v2 (swap there is memory+swap minus memory)"
            ))),
            Some(l) if l < 0 => Err(CgroupError::invalid(format!("memory.limit {l}"))),
            Some(l) if s < l => Err(CgroupError::invalid(format!(
                "memory.swap {s} (memory+swap) is below memory.limit {l}"
            ))),
            Some(l) => Ok(Some(s - l)),
        },
    }
}

/// `-1` → `max`, else the number.
fn max_or(value: i64) -> String {
    if value == -1 {
        "max".to_owned()
    } else {
        value.to_string()
    }
}

/// The v2 writes for `r`, in order; `unified` keys last so they override.
/// `dir` only names the cgroup in errors.
pub(crate) fn plan_v2(
    r: &LinuxResources,
    facts: &V2Facts,
    dir: &Path,
) -> Result<Vec<Write>, CgroupError> {
    let mut out = Vec::new();
    if let Some(memory) = r.memory() {
        let limit = memory.limit().filter(|l| *l != 0);
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
        if let Some(swap) = swap_max(memory.swap(), limit)? {
            // Without swap accounting there is no file; "no swap limit" needs none.
            if facts.swap_file || swap > 0 {
                out.push(Write::new("memory", "memory.swap.max", max_or(swap)));
            }
        }
        if let Some(l) = limit {
            out.push(Write::new("memory", "memory.max", max_or(l)));
        }
        if let Some(reservation) = memory.reservation().filter(|r| *r != 0) {
            out.push(Write::new("memory", "memory.low", max_or(reservation)));
        }
        if memory.kernel().is_some() || memory.kernel_tcp().is_some() {
            tracing::debug!("memory.kernel and memory.kernelTCP have no cgroup v2 file; ignored");
        }
        if memory.swappiness().is_some() || memory.disable_oom_killer().is_some() {
            tracing::debug!(
                "memory.swappiness and disableOOMKiller have no cgroup v2 file; ignored"
            );
        }
    }
    if let Some(cpu) = r.cpu() {
        if let Some(shares) = cpu.shares().filter(|s| *s != 0) {
            out.push(Write::new("cpu", "cpu.weight", cpu_weight(shares)));
        }
        let quota = cpu.quota().filter(|q| *q != 0);
        let period = cpu.period().filter(|p| *p != 0);
        if quota.is_some() || period.is_some() {
            let mut value = match quota {
                Some(q) if q > 0 => q.to_string(),
                _ => "max".to_owned(),
            };
            if let Some(p) = period {
                value.push_str(&format!(" {p}"));
            }
            out.push(Write::new("cpu", "cpu.max", value));
        }
        if let Some(burst) = cpu.burst() {
            out.push(Write::new("cpu", "cpu.max.burst", burst));
        }
        if cpu.realtime_period().is_some() || cpu.realtime_runtime().is_some() {
            return Err(CgroupError::Unsupported {
                what: "cpu.realtimePeriod and cpu.realtimeRuntime".to_owned(),
                version: VERSION,
            });
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
        if let Some(w) = io.weight().filter(|w| *w != 0) {
            if facts.io_bfq {
                out.push(Write::new("io", "io.bfq.weight", w));
            } else {
                out.push(Write::new("io", "io.weight", io_weight(w)));
            }
        }
        for device in io.weight_device().iter().flatten() {
            let Some(w) = device.weight() else { continue };
            let id = format!("{}:{}", device.major(), device.minor());
            if facts.io_bfq {
                out.push(Write::new("io", "io.bfq.weight", format!("{id} {w}")));
            } else {
                out.push(Write::new(
                    "io",
                    "io.weight",
                    format!("{id} {}", io_weight(w)),
                ));
            }
        }
        for (key, devices) in [
            ("rbps", io.throttle_read_bps_device()),
            ("wbps", io.throttle_write_bps_device()),
            ("riops", io.throttle_read_iops_device()),
            ("wiops", io.throttle_write_iops_device()),
        ] {
            for device in devices.iter().flatten() {
                let rate = match device.rate() {
                    0 => "max".to_owned(),
                    rate => rate.to_string(),
                };
                out.push(Write::new(
                    "io",
                    "io.max",
                    format!("{}:{} {key}={rate}", device.major(), device.minor()),
                ));
            }
        }
    }
    for hugepage in r.hugepage_limits().iter().flatten() {
        out.push(Write::new(
            "hugetlb",
            format!("hugetlb.{}.max", hugepage.page_size()),
            hugepage.limit(),
        ));
    }
    if let Some(network) = r.network() {
        if network.class_id().is_some()
            || network.priorities().as_ref().is_some_and(|p| !p.is_empty())
        {
            return Err(CgroupError::Unsupported {
                what: "linux.resources.network (net_cls, net_prio)".to_owned(),
                version: VERSION,
            });
        }
    }
    if let Some(rdma) = r.rdma() {
        out.extend(plan::rdma_writes(rdma));
    }
    // Device rules are not files on v2: `apply` attaches an eBPF program.
    if let Some(unified) = r.unified() {
        out.extend(plan::unified_writes(unified, "unified")?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_stat_sums_bytes_over_devices() {
        let text = "8:0 rbytes=4096 wbytes=512 rios=1 wios=1 dbytes=0 dios=0\n\
                    8:16 rbytes=100 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n";
        assert_eq!(parse_io_stat(text), (4196, 512));
        assert_eq!(parse_io_stat(""), (0, 0));
    }

    fn resources(json: &str) -> LinuxResources {
        serde_json::from_str(json).unwrap()
    }

    fn writes(list: &[(&'static str, &str, &str)]) -> Vec<Write> {
        list.iter().map(|(c, f, v)| Write::new(c, *f, v)).collect()
    }

    fn plan(json: &str, facts: &V2Facts) -> Result<Vec<Write>, CgroupError> {
        plan_v2(&resources(json), facts, Path::new("/cg"))
    }

    const EVERYTHING: &str = r#"{
        "memory": {"limit": 1048576, "reservation": 524288, "swap": 3145728,
                   "kernel": 1, "kernelTCP": 1, "swappiness": 10, "disableOOMKiller": true},
        "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "burst": 1000,
                "cpus": "0-1", "mems": "0", "idle": 1},
        "pids": {"limit": -1},
        "blockIO": {"weight": 500, "leafWeight": 300,
                    "weightDevice": [{"major": 8, "minor": 0, "weight": 1000}],
                    "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1000}],
                    "throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": 0}],
                    "throttleReadIOPSDevice": [{"major": 8, "minor": 0, "rate": 30}],
                    "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 40}]},
        "hugepageLimits": [{"pageSize": "1GB", "limit": 1073741824}],
        "rdma": {"mlx5_0": {"hcaHandles": 3}},
        "unified": {"memory.high": "900000", "cpu.weight": "7"}
    }"#;

    #[test]
    fn every_field_in_order_with_conversions() {
        let facts = V2Facts {
            swap_file: true,
            ..V2Facts::default()
        };
        assert_eq!(
            plan(EVERYTHING, &facts).unwrap(),
            writes(&[
                ("memory", "memory.swap.max", "2097152"),
                ("memory", "memory.max", "1048576"),
                ("memory", "memory.low", "524288"),
                ("cpu", "cpu.weight", "39"),
                ("cpu", "cpu.max", "50000 100000"),
                ("cpu", "cpu.max.burst", "1000"),
                ("cpu", "cpu.idle", "1"),
                ("cpuset", "cpuset.cpus", "0-1"),
                ("cpuset", "cpuset.mems", "0"),
                ("pids", "pids.max", "max"),
                ("io", "io.weight", "4950"),
                ("io", "io.weight", "8:0 10000"),
                ("io", "io.max", "8:0 rbps=1000"),
                ("io", "io.max", "8:0 wbps=max"),
                ("io", "io.max", "8:0 riops=30"),
                ("io", "io.max", "8:0 wiops=40"),
                ("hugetlb", "hugetlb.1GB.max", "1073741824"),
                ("rdma", "rdma.max", "mlx5_0 hca_handle=3"),
                ("unified", "cpu.weight", "7"),
                ("unified", "memory.high", "900000"),
            ])
        );
    }

    #[test]
    fn empty_resources_write_nothing() {
        assert!(plan("{}", &V2Facts::default()).unwrap().is_empty());
    }

    #[test]
    fn conversions_match_runc() {
        assert_eq!(cpu_weight(2), 1);
        assert_eq!(cpu_weight(1024), 39);
        assert_eq!(cpu_weight(262_144), 10_000);
        assert_eq!(cpu_weight(1), 1);
        assert_eq!(io_weight(10), 1);
        assert_eq!(io_weight(500), 4950);
        assert_eq!(io_weight(1000), 10_000);
    }

    #[test]
    fn swap_semantics() {
        assert_eq!(swap_max(None, Some(100)).unwrap(), None);
        assert_eq!(swap_max(Some(0), Some(100)).unwrap(), None);
        assert_eq!(swap_max(Some(-1), None).unwrap(), Some(-1));
        assert_eq!(swap_max(Some(300), Some(100)).unwrap(), Some(200));
        assert_eq!(swap_max(Some(100), Some(100)).unwrap(), Some(0));
        assert!(swap_max(Some(50), Some(100)).is_err());
        assert!(swap_max(Some(300), None).is_err());
        assert!(swap_max(Some(300), Some(-1)).is_err());
    }

    #[test]
    fn swap_equal_to_memory_disables_swap() {
        let facts = V2Facts {
            swap_file: true,
            ..V2Facts::default()
        };
        assert_eq!(
            plan(r#"{"memory": {"limit": 4096, "swap": 4096}}"#, &facts).unwrap(),
            writes(&[
                ("memory", "memory.swap.max", "0"),
                ("memory", "memory.max", "4096"),
            ])
        );
    }

    #[test]
    fn unlimited_swap_without_swap_accounting_is_skipped() {
        assert_eq!(
            plan(
                r#"{"memory": {"limit": -1, "swap": -1}}"#,
                &V2Facts::default()
            )
            .unwrap(),
            writes(&[("memory", "memory.max", "max")])
        );
    }

    #[test]
    fn quota_without_period_and_unlimited_quota() {
        let facts = V2Facts::default();
        assert_eq!(
            plan(r#"{"cpu": {"quota": 20000}}"#, &facts).unwrap(),
            writes(&[("cpu", "cpu.max", "20000")])
        );
        assert_eq!(
            plan(r#"{"cpu": {"quota": -1, "period": 50000}}"#, &facts).unwrap(),
            writes(&[("cpu", "cpu.max", "max 50000")])
        );
    }

    #[test]
    fn bfq_takes_v1_weights() {
        let facts = V2Facts {
            io_bfq: true,
            ..V2Facts::default()
        };
        assert_eq!(
            plan(
                r#"{"blockIO": {"weight": 500, "weightDevice": [{"major": 8, "minor": 0, "weight": 100}]}}"#,
                &facts
            )
            .unwrap(),
            writes(&[
                ("io", "io.bfq.weight", "500"),
                ("io", "io.bfq.weight", "8:0 100"),
            ])
        );
    }

    #[test]
    fn v1_only_fields_are_unsupported() {
        let facts = V2Facts::default();
        let err = plan(r#"{"cpu": {"realtimeRuntime": 5}}"#, &facts).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cpu.realtimePeriod and cpu.realtimeRuntime is not supported on cgroup v2"
        );
        assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument);
        assert!(plan(r#"{"network": {"classID": 1}}"#, &facts).is_err());
        // Device rules are no file writes: apply attaches a program.
        let writes = plan(
            r#"{"devices": [{"allow": false, "access": "rwm"}]}"#,
            &facts,
        )
        .unwrap();
        assert!(writes.is_empty());
    }

    #[test]
    fn check_before_update_compares_with_memory_current() {
        let facts = V2Facts {
            memory_usage: Some(10_000),
            ..V2Facts::default()
        };
        assert!(plan(
            r#"{"memory": {"limit": 4096, "checkBeforeUpdate": true}}"#,
            &facts
        )
        .is_err());
        assert!(plan(r#"{"memory": {"limit": 4096}}"#, &facts).is_ok());
    }

    #[test]
    fn relative_path_lands_beside_the_own_cgroup() {
        let own = OwnCgroups::parse("0::/user.slice/me\n");
        let m = V2Manager::new(Path::new("/sys/fs/cgroup"), Path::new("ctr"), &own).unwrap();
        assert_eq!(m.dir(), Path::new("/sys/fs/cgroup/user.slice/ctr"));
        let own = OwnCgroups::parse("0::/\n");
        let m = V2Manager::new(Path::new("/sys/fs/cgroup"), Path::new("ctr"), &own).unwrap();
        assert_eq!(m.dir(), Path::new("/sys/fs/cgroup/ctr"));
        let m = V2Manager::new(Path::new("/sys/fs/cgroup"), Path::new("/a/ctr"), &own).unwrap();
        assert_eq!(m.dir(), Path::new("/sys/fs/cgroup/a/ctr"));
    }
}
