//! Health checks, run by the monitor: every `interval` the check's command
//! runs in the container (as `exec` does), its exit status and first 4 KiB
//! of output are kept (the last five results), and the container is
//! `healthy` after a success, `unhealthy` after `retries` failures in a row
//! (failures within `start_period` of the start do not count), `starting`
//! until then. A check running past `timeout` is killed and fails.

use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::containers::HealthConfig;

/// Output kept per result (Docker's limit).
const MAX_OUTPUT: usize = 4096;
/// Results kept (Docker's).
const MAX_LOG: usize = 5;

/// One check's result, as `inspect` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthResult {
    /// RFC 3339.
    pub start: String,
    /// RFC 3339.
    pub end: String,
    /// The check's exit code (-1: it could not run or timed out).
    pub exit_code: i32,
    /// Its output, truncated.
    pub output: String,
}

/// The health state, stored as the record's `health` JSON in Docker's
/// `State.Health` shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthState {
    /// `starting`, `healthy` or `unhealthy`.
    pub status: String,
    /// Failures in a row.
    pub failing_streak: u32,
    /// The last results, oldest first.
    pub log: Vec<HealthResult>,
}

impl HealthState {
    fn starting() -> Self {
        Self {
            status: "starting".into(),
            failing_streak: 0,
            log: Vec::new(),
        }
    }

    /// Applies a result; `counts`: a failure counts toward `retries`
    /// (false within the start period).
    fn record(&mut self, result: HealthResult, retries: u32, counts: bool) {
        if result.exit_code == 0 {
            self.status = "healthy".into();
            self.failing_streak = 0;
        } else if counts {
            self.failing_streak += 1;
            if self.failing_streak >= retries.max(1) {
                self.status = "unhealthy".into();
            }
        }
        self.log.push(result);
        if self.log.len() > MAX_LOG {
            self.log.remove(0);
        }
    }
}

/// A check in flight.
pub(super) struct Probe {
    pub(super) pid: i32,
    pub(super) output: OwnedFd,
    buf: Vec<u8>,
    start: SystemTime,
    deadline: Instant,
    timed_out: bool,
}

/// The schedule and state of one container instance's checks.
pub(super) struct Prober {
    pub(super) config: HealthConfig,
    started: Instant,
    next: Instant,
    pub(super) probe: Option<Probe>,
    pub(super) state: HealthState,
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_nanos(t).to_string()
}

impl Prober {
    pub(super) fn new(config: HealthConfig) -> Prober {
        let now = Instant::now();
        Prober {
            next: now + Duration::from_nanos(config.interval_ns),
            started: now,
            config,
            probe: None,
            state: HealthState::starting(),
        }
    }

    /// How long the monitor may sleep before the next check or deadline.
    pub(super) fn timeout(&self) -> Duration {
        let now = Instant::now();
        let at = match &self.probe {
            Some(p) if !p.timed_out => p.deadline,
            Some(_) => now + Duration::from_millis(200),
            None => self.next,
        };
        at.saturating_duration_since(now)
    }

    /// Whether a check is due now.
    pub(super) fn due(&self) -> bool {
        self.probe.is_none() && Instant::now() >= self.next
    }

    /// A check started with its process and output pipe.
    pub(super) fn started(&mut self, pid: i32, output: OwnedFd) {
        self.probe = Some(Probe {
            pid,
            output,
            buf: Vec::new(),
            start: SystemTime::now(),
            deadline: Instant::now() + Duration::from_nanos(self.config.timeout_ns),
            timed_out: false,
        });
    }

    /// A check could not start: a failed result.
    pub(super) fn failed_to_start(&mut self, reason: &str) {
        let now = SystemTime::now();
        self.finish_with(HealthResult {
            start: rfc3339(now),
            end: rfc3339(now),
            exit_code: -1,
            output: reason.chars().take(MAX_OUTPUT).collect(),
        });
    }

    /// Reads the running check's output; call when its pipe is readable.
    pub(super) fn read_output(&mut self) {
        let Some(p) = &mut self.probe else { return };
        let mut chunk = [0u8; 4096];
        while let Ok(n) = rustix::io::read(p.output.as_fd(), &mut chunk) {
            if n == 0 {
                break;
            }
            let room = MAX_OUTPUT.saturating_sub(p.buf.len());
            p.buf.extend_from_slice(&chunk[..n.min(room)]);
        }
    }

    /// The pid to kill when the running check passed its deadline (once).
    pub(super) fn overdue(&mut self) -> Option<i32> {
        let p = self.probe.as_mut()?;
        if p.timed_out || Instant::now() < p.deadline {
            return None;
        }
        p.timed_out = true;
        Some(p.pid)
    }

    /// The check's process ended with `code`: records the result.
    pub(super) fn exited(&mut self, code: i32) {
        self.read_output();
        let Some(p) = self.probe.take() else { return };
        let output = if p.timed_out {
            format!(
                "Health check exceeded timeout ({})",
                humantime::format_duration(Duration::from_nanos(self.config.timeout_ns))
            )
        } else {
            String::from_utf8_lossy(&p.buf).into_owned()
        };
        self.finish_with(HealthResult {
            start: rfc3339(p.start),
            end: rfc3339(SystemTime::now()),
            exit_code: if p.timed_out { -1 } else { code },
            output,
        });
    }

    fn finish_with(&mut self, result: HealthResult) {
        let in_start_period =
            self.started.elapsed() < Duration::from_nanos(self.config.start_period_ns);
        self.state
            .record(result, self.config.retries, !in_start_period);
        self.next = Instant::now() + Duration::from_nanos(self.config.interval_ns);
    }

    /// The command line of the check (`CMD-SHELL` runs through `/bin/sh -c`).
    pub(super) fn command(&self) -> Vec<String> {
        match self.config.test.split_first() {
            Some((kind, rest)) if kind == "CMD-SHELL" => {
                vec!["/bin/sh".into(), "-c".into(), rest.join(" ")]
            }
            Some((kind, rest)) if kind == "CMD" => rest.to_vec(),
            _ => self.config.test.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(code: i32) -> HealthResult {
        HealthResult {
            start: String::new(),
            end: String::new(),
            exit_code: code,
            output: String::new(),
        }
    }

    #[test]
    fn status_follows_dockers_rules() {
        let mut s = HealthState::starting();
        s.record(result(1), 3, false);
        assert_eq!((s.status.as_str(), s.failing_streak), ("starting", 0));
        s.record(result(1), 3, true);
        s.record(result(1), 3, true);
        assert_eq!(s.status, "starting");
        s.record(result(1), 3, true);
        assert_eq!((s.status.as_str(), s.failing_streak), ("unhealthy", 3));
        s.record(result(0), 3, true);
        assert_eq!((s.status.as_str(), s.failing_streak), ("healthy", 0));
        for _ in 0..10 {
            s.record(result(0), 3, true);
        }
        assert_eq!(s.log.len(), MAX_LOG);
    }

    #[test]
    fn commands_of_both_forms() {
        let mut config = HealthConfig {
            test: vec!["CMD-SHELL".into(), "test -f /ok".into()],
            interval_ns: 1,
            timeout_ns: 1,
            retries: 3,
            start_period_ns: 0,
        };
        assert_eq!(
            Prober::new(config.clone()).command(),
            ["/bin/sh", "-c", "test -f /ok"]
        );
        config.test = vec!["CMD".into(), "true".into()];
        assert_eq!(Prober::new(config).command(), ["true"]);
    }
}
