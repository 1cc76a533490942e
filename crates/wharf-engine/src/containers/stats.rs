//! `stats`: one sample of a running container's resource use, from its
//! cgroup (CPU time, memory, block I/O, pids), its init's network
//! namespace (`/proc/<pid>/net/dev`) and the host (`/proc/stat`,
//! `/proc/meminfo`); and Docker's arithmetic over samples.

use super::Container;
use crate::system::{host_cpu, host_mem_total};
use crate::{Engine, EngineError};

/// One sample of a container's resource use. Counters are cumulative;
/// [`cpu_percent`] compares two samples.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsSample {
    /// CPU time the container's cgroup used, in nanoseconds.
    pub cpu_usage_ns: u64,
    /// CPU time all the host's CPUs spent, in nanoseconds (Docker's
    /// `system_cpu_usage`).
    pub system_cpu_ns: u64,
    /// The host's online CPUs.
    pub online_cpus: u32,
    /// Memory the cgroup charges, page cache included.
    pub memory_usage: u64,
    /// The cgroup's inactive file cache, when the kernel reports it.
    pub memory_inactive_file: Option<u64>,
    /// The cgroup's memory limit, or the host's memory without one.
    pub memory_limit: u64,
    /// Bytes received on the container's interfaces (loopback excluded).
    pub net_rx: u64,
    /// Bytes sent on them.
    pub net_tx: u64,
    /// Bytes read from block devices.
    pub block_read: u64,
    /// Bytes written to them.
    pub block_write: u64,
    /// Processes and threads in the cgroup.
    pub pids: u64,
}

impl StatsSample {
    /// Memory in use as Docker counts it (cgroup v1 and v2 alike): the
    /// usage less the inactive file cache, which the kernel reclaims first.
    pub fn memory_used(&self) -> u64 {
        match self.memory_inactive_file {
            Some(inactive) if inactive < self.memory_usage => self.memory_usage - inactive,
            _ => self.memory_usage,
        }
    }

    /// [`Self::memory_used`] as a percentage of the limit (0 without one).
    pub fn memory_percent(&self) -> f64 {
        if self.memory_limit == 0 {
            return 0.0;
        }
        self.memory_used() as f64 / self.memory_limit as f64 * 100.0
    }
}

/// The CPU use between two samples as Docker computes it: the container's
/// share of the host's CPU time, times the online CPUs (so one busy CPU
/// reads 100%). 0 when either delta is not positive.
pub fn cpu_percent(previous: &StatsSample, current: &StatsSample) -> f64 {
    let container = current.cpu_usage_ns.saturating_sub(previous.cpu_usage_ns);
    let system = current.system_cpu_ns.saturating_sub(previous.system_cpu_ns);
    if container == 0 || system == 0 {
        return 0.0;
    }
    container as f64 / system as f64 * f64::from(current.online_cpus) * 100.0
}

impl Engine {
    /// A sample of `container`'s resource use; `None` when it does not run
    /// (never started, exited, or it exited while being read).
    ///
    /// # Errors
    ///
    /// Its cgroup or the host's `/proc/stat` cannot be read.
    pub fn container_stats(
        &self,
        container: &Container,
    ) -> Result<Option<StatsSample>, EngineError> {
        let record = &container.record;
        let (true, Some(pid)) = (record.state.is_up(), record.pid) else {
            return Ok(None);
        };
        let runtime = self.runtime();
        let rid = Self::runtime_id(&record.id);
        if runtime.state(&rid).is_err() {
            return Ok(None);
        }
        let stats = match runtime.stats(&rid) {
            Ok(stats) => stats,
            // Gone between the two calls: it exited.
            Err(_) if runtime.state(&rid).is_err() => return Ok(None),
            Err(e) => {
                return Err(EngineError::ContainerRuntime {
                    operation: "read the stats of",
                    id: record.id.short().to_owned(),
                    source: Box::new(e),
                })
            }
        };
        let host = host_cpu()?;
        // The host network namespace's counters are the host's, not the
        // container's: Docker shows none.
        let (net_rx, net_tx) = if container.config.network == "host" {
            (0, 0)
        } else {
            fs_err::read_to_string(format!("/proc/{pid}/net/dev"))
                .map(|text| parse_net_dev(&text))
                .unwrap_or((0, 0))
        };
        Ok(Some(StatsSample {
            cpu_usage_ns: stats.cpu.usage_ns.unwrap_or(0),
            system_cpu_ns: host.total_ns,
            online_cpus: host.online_cpus,
            memory_usage: stats.memory.usage.unwrap_or(0),
            memory_inactive_file: stats.memory.inactive_file,
            memory_limit: stats.memory.limit.unwrap_or_else(host_mem_total),
            net_rx,
            net_tx,
            block_read: stats.io.read_bytes.unwrap_or(0),
            block_write: stats.io.write_bytes.unwrap_or(0),
            pids: stats.pids.current.unwrap_or(0),
        }))
    }
}

/// Received and sent bytes summed over the interfaces of a
/// `/proc/<pid>/net/dev`, loopback excluded (Docker counts the container's
/// networks only).
fn parse_net_dev(text: &str) -> (u64, u64) {
    let (mut rx, mut tx) = (0u64, 0u64);
    for line in text.lines().skip(2) {
        let Some((name, counters)) = line.split_once(':') else {
            continue;
        };
        if name.trim() == "lo" {
            continue;
        }
        let fields: Vec<u64> = counters
            .split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        // Receive: bytes packets errs drop fifo frame compressed multicast;
        // then transmit: bytes …
        rx = rx.saturating_add(fields.first().copied().unwrap_or(0));
        tx = tx.saturating_add(fields.get(8).copied().unwrap_or(0));
    }
    (rx, tx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(cpu: u64, system: u64) -> StatsSample {
        StatsSample {
            cpu_usage_ns: cpu,
            system_cpu_ns: system,
            online_cpus: 4,
            ..StatsSample::default()
        }
    }

    #[test]
    fn cpu_percent_is_the_share_of_host_time_times_cpus() {
        // 4 CPUs ran 4 s in all; the container used 1 s: one CPU, 100%.
        let pct = cpu_percent(&sample(0, 0), &sample(1_000_000_000, 4_000_000_000));
        assert!((pct - 100.0).abs() < 1e-9, "{pct}");
        let pct = cpu_percent(&sample(500, 1000), &sample(600, 3000));
        assert!((pct - 20.0).abs() < 1e-9, "{pct}");
        // No container or no host time: 0, never NaN.
        assert_eq!(cpu_percent(&sample(5, 5), &sample(5, 10)), 0.0);
        assert_eq!(cpu_percent(&sample(5, 5), &sample(10, 5)), 0.0);
        // Counters going backwards (a restart) read as 0.
        assert_eq!(cpu_percent(&sample(10, 10), &sample(5, 20)), 0.0);
    }

    #[test]
    fn memory_used_drops_inactive_file_when_smaller() {
        let mut s = StatsSample {
            memory_usage: 10 << 20,
            memory_inactive_file: Some(4 << 20),
            memory_limit: 24 << 20,
            ..StatsSample::default()
        };
        assert_eq!(s.memory_used(), 6 << 20);
        assert!((s.memory_percent() - 25.0).abs() < 1e-9);
        // Docker keeps the usage when inactive_file is not smaller.
        s.memory_inactive_file = Some(10 << 20);
        assert_eq!(s.memory_used(), 10 << 20);
        s.memory_inactive_file = None;
        assert_eq!(s.memory_used(), 10 << 20);
        s.memory_limit = 0;
        assert_eq!(s.memory_percent(), 0.0);
    }

    #[test]
    fn net_dev_sums_interfaces_but_loopback() {
        let text = "Inter-|   Receive                                                |  Transmit\n \
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
 lo:    1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0\n  \
 eth0:    2048      20    0    0    0     0          0         0      512       5    0    0    0     0       0          0\n  \
 eth1:       2       1    0    0    0     0          0         0        3       1    0    0    0     0       0          0\n";
        assert_eq!(parse_net_dev(text), (2050, 515));
        assert_eq!(parse_net_dev(""), (0, 0));
    }
}
