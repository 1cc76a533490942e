//! The engine as a whole (`info`) and the host under it: kernel, operating
//! system, CPUs, memory and cgroup version, read from `/proc`, `/etc` and
//! `/sys/fs/cgroup`; the host CPU time `stats` divides by; the filter
//! `system prune` and `container prune` select with.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::SystemTime;

use crate::containers::Container;
use crate::state::ContainerState;
use crate::volumes::LabelFilter;
use crate::{Engine, EngineError};

/// The OCI runtime the engine runs containers with (its own).
pub const RUNTIME_NAME: &str = "wharf";

/// Facts about the host, as `info` shows them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostInfo {
    /// `uname -r`.
    pub kernel_version: String,
    /// `PRETTY_NAME` of `/etc/os-release` (`Debian GNU/Linux 12 (bookworm)`).
    pub operating_system: String,
    /// `VERSION_ID` of `/etc/os-release`.
    pub os_version: String,
    /// `uname -m` (`x86_64`).
    pub architecture: String,
    /// Online CPUs.
    pub cpus: u32,
    /// `MemTotal` of `/proc/meminfo`, in bytes.
    pub total_memory: u64,
    /// 2 when `/sys/fs/cgroup` is the unified hierarchy, else 1.
    pub cgroup_version: u8,
    /// `uname -n`.
    pub hostname: String,
}

/// What `info` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemInfo {
    /// Containers, in any state.
    pub containers: usize,
    /// Of which running (or restarting).
    pub running: usize,
    /// Of which paused.
    pub paused: usize,
    /// Of which stopped (created, exited, dead).
    pub stopped: usize,
    /// Images in the store.
    pub images: usize,
    /// The storage driver (`overlay`, `vfs`).
    pub storage_driver: String,
    /// The store and state root.
    pub root: PathBuf,
    /// The host.
    pub host: HostInfo,
}

/// Which stopped containers (or unused images) a prune removes: Docker's
/// `until=` and `label=`/`label!=` filters, all of which must pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneFilter {
    /// Only what was created before this time.
    pub until: Option<SystemTime>,
    /// Label conditions.
    pub labels: Vec<LabelFilter>,
}

impl PruneFilter {
    /// Whether an object created at `created` with `labels` passes.
    pub fn matches(&self, created: SystemTime, labels: &BTreeMap<String, String>) -> bool {
        self.until.is_none_or(|until| created < until)
            && self.labels.iter().all(|l| l.matches(labels))
    }

    /// Whether the filter has no conditions.
    pub fn is_empty(&self) -> bool {
        self.until.is_none() && self.labels.is_empty()
    }
}

impl Engine {
    /// `info`: container counts by state, image count and host facts.
    ///
    /// # Errors
    ///
    /// The container database or the image store cannot be read.
    pub fn info(&self) -> Result<SystemInfo, EngineError> {
        let containers = self.list_containers(true)?;
        let count = |pred: fn(&Container) -> bool| containers.iter().filter(|c| pred(c)).count();
        let running = count(|c| {
            matches!(
                c.record.state,
                ContainerState::Running | ContainerState::Restarting
            )
        });
        let paused = count(|c| c.record.state == ContainerState::Paused);
        Ok(SystemInfo {
            containers: containers.len(),
            running,
            paused,
            stopped: containers.len() - running - paused,
            images: self.images.list()?.len(),
            storage_driver: self.storage_driver().to_owned(),
            root: self.root.clone(),
            host: host_info(),
        })
    }
}

/// Reads the host's facts; what cannot be read is left empty (0).
pub fn host_info() -> HostInfo {
    let uname = rustix::system::uname();
    let os_release = read_host("/etc/os-release")
        .or_else(|| read_host("/usr/lib/os-release"))
        .unwrap_or_default();
    let cpu = read_host("/proc/stat")
        .and_then(|t| parse_proc_stat(&t))
        .unwrap_or_default();
    HostInfo {
        kernel_version: uname.release().to_string_lossy().into_owned(),
        operating_system: os_release_value(&os_release, "PRETTY_NAME")
            .unwrap_or_else(|| "Linux".to_owned()),
        os_version: os_release_value(&os_release, "VERSION_ID").unwrap_or_default(),
        architecture: uname.machine().to_string_lossy().into_owned(),
        cpus: cpu.online_cpus,
        total_memory: read_host("/proc/meminfo")
            .and_then(|t| parse_mem_total(&t))
            .unwrap_or(0),
        cgroup_version: cgroup_version(),
        hostname: uname.nodename().to_string_lossy().into_owned(),
    }
}

/// 2 when `/sys/fs/cgroup` is a cgroup2 mount (a unified host), else 1 (v1
/// or hybrid: containers get v1 controllers).
pub fn cgroup_version() -> u8 {
    match rustix::fs::statfs("/sys/fs/cgroup") {
        Ok(s) if s.f_type == libc::CGROUP2_SUPER_MAGIC => 2,
        _ => 1,
    }
}

/// The host's CPU time, from the `cpu` lines of `/proc/stat`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostCpu {
    /// Time all CPUs spent in any state since boot, in nanoseconds (as
    /// Docker's `system_cpu_usage`: user, nice, system, idle, iowait, irq
    /// and softirq).
    pub total_ns: u64,
    /// CPUs with a `cpuN` line (the online ones).
    pub online_cpus: u32,
}

/// Reads `/proc/stat`.
///
/// # Errors
///
/// [`EngineError::Io`] when it cannot be read or has no `cpu` line.
pub fn host_cpu() -> Result<HostCpu, EngineError> {
    let path = "/proc/stat";
    let text = fs_err::read_to_string(path).map_err(|source| EngineError::Io {
        operation: "read",
        path: path.into(),
        source,
    })?;
    parse_proc_stat(&text).ok_or_else(|| EngineError::Io {
        operation: "parse",
        path: path.into(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, "no cpu line"),
    })
}

/// Clock ticks per second of `/proc/stat` (`USER_HZ`: 100 on every Linux
/// architecture Wharf runs on, as Docker assumes).
const CLOCK_TICKS: u64 = 100;

fn parse_proc_stat(text: &str) -> Option<HostCpu> {
    let mut total = None;
    let mut online_cpus = 0;
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        match fields.next() {
            Some("cpu") => {
                let ticks: u64 = fields
                    .take(7)
                    .filter_map(|f| f.parse::<u64>().ok())
                    .fold(0, u64::saturating_add);
                total = Some(ticks.saturating_mul(1_000_000_000 / CLOCK_TICKS));
            }
            Some(name) if name.starts_with("cpu") => online_cpus += 1,
            _ => {}
        }
    }
    total.map(|total_ns| HostCpu {
        total_ns,
        online_cpus,
    })
}

/// `MemTotal` in bytes.
pub(crate) fn parse_mem_total(text: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix("MemTotal:")?;
        let kib: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kib.saturating_mul(1024))
    })
}

/// The host's `MemTotal` in bytes (0 when unreadable).
pub(crate) fn host_mem_total() -> u64 {
    read_host("/proc/meminfo")
        .and_then(|t| parse_mem_total(&t))
        .unwrap_or(0)
}

fn os_release_value(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(key)?.strip_prefix('=')?.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(value);
        Some(value.to_owned())
    })
}

fn read_host(path: &str) -> Option<String> {
    fs_err::read_to_string(path).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn proc_stat_sums_seven_fields_and_counts_cpus() {
        let text = "cpu  100 2 30 400 5 6 7 8 0 0\n\
                    cpu0 50 1 15 200 2 3 3 4 0 0\n\
                    cpu1 50 1 15 200 3 3 4 4 0 0\n\
                    intr 12345\nctxt 99\n";
        let cpu = parse_proc_stat(text).unwrap();
        // 550 ticks of 10 ms; steal (8) is not counted, as in Docker.
        assert_eq!(cpu.total_ns, 550 * 10_000_000);
        assert_eq!(cpu.online_cpus, 2);
        assert_eq!(parse_proc_stat("intr 1\n"), None);
    }

    #[test]
    fn mem_total_is_bytes() {
        let text = "MemTotal:       16303428 kB\nMemFree:         1000 kB\n";
        assert_eq!(parse_mem_total(text), Some(16_303_428 * 1024));
        assert_eq!(parse_mem_total("MemFree: 1 kB\n"), None);
    }

    #[test]
    fn os_release_values_lose_their_quotes() {
        let text = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME='Debian'\nVERSION_ID=12\n";
        assert_eq!(
            os_release_value(text, "PRETTY_NAME").as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(os_release_value(text, "NAME").as_deref(), Some("Debian"));
        assert_eq!(os_release_value(text, "VERSION_ID").as_deref(), Some("12"));
        assert_eq!(os_release_value(text, "ID"), None);
    }

    #[test]
    fn prune_filter_needs_every_condition() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let labels: BTreeMap<String, String> = [("env".to_owned(), "dev".to_owned())].into();
        assert!(PruneFilter::default().matches(t0, &labels));
        let f = PruneFilter {
            until: Some(t0 + Duration::from_secs(1)),
            labels: vec![LabelFilter::parse("env=dev", false)],
        };
        assert!(f.matches(t0, &labels));
        assert!(!f.matches(t0 + Duration::from_secs(2), &labels));
        assert!(!f.matches(t0, &BTreeMap::new()));
        let not_dev = PruneFilter {
            until: None,
            labels: vec![LabelFilter::parse("env=dev", true)],
        };
        assert!(!not_dev.matches(t0, &labels));
    }
}
