//! What the engine keeps about a container beside its runtime spec: the
//! settings `inspect` shows and the monitor applies (restart policy, log
//! driver, auto-remove, stop signal), stored as the record's `config` JSON.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::logs::LogConfig;
use crate::EngineError;

/// `--restart`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// `no`: never restart.
    #[default]
    No,
    /// `on-failure[:N]`: restart after a non-zero exit, at most N times
    /// (0: no limit).
    OnFailure {
        /// The limit; 0 means none.
        max_retries: u32,
    },
    /// `always`: restart after any exit not asked for by `stop`/`kill`.
    Always,
    /// `unless-stopped`: as `always` (the two differ only when a daemon
    /// restarts, and Wharf has none).
    UnlessStopped,
}

impl RestartPolicy {
    /// Parses Docker's `--restart` value.
    ///
    /// # Errors
    ///
    /// An unknown policy, a count on another policy than `on-failure`, or a
    /// count that is not a non-negative number.
    pub fn parse(s: &str) -> Result<Self, EngineError> {
        let (name, count) = match s.split_once(':') {
            Some((n, c)) => (n, Some(c)),
            None => (s, None),
        };
        let policy = match name {
            "" | "no" => Self::No,
            "always" => Self::Always,
            "unless-stopped" => Self::UnlessStopped,
            "on-failure" => {
                let max_retries = match count {
                    None => 0,
                    Some(c) => c.parse::<u32>().map_err(|_| {
                        EngineError::invalid(format!(
                            "invalid restart policy {s:?}: maximum retry count must be a non-negative number"
                        ))
                    })?,
                };
                return Ok(Self::OnFailure { max_retries });
            }
            _ => {
                return Err(EngineError::invalid(format!(
                    "invalid restart policy {s:?}: use no, always, unless-stopped or on-failure[:max-retries]"
                )))
            }
        };
        if count.is_some() {
            return Err(EngineError::invalid(format!(
                "invalid restart policy {s:?}: maximum retry count can only be used with on-failure"
            )));
        }
        Ok(policy)
    }

    /// Docker's name (`no`, `on-failure`, `always`, `unless-stopped`).
    pub fn name(self) -> &'static str {
        match self {
            Self::No => "no",
            Self::OnFailure { .. } => "on-failure",
            Self::Always => "always",
            Self::UnlessStopped => "unless-stopped",
        }
    }

    /// The on-failure limit (0 otherwise).
    pub fn max_retries(self) -> u32 {
        match self {
            Self::OnFailure { max_retries } => max_retries,
            _ => 0,
        }
    }

    /// Whether an exit with `exit_code` after `restart_count` restarts is
    /// followed by another start. An exit asked for (`stop_requested`) is
    /// never restarted; an unknown exit code counts as a failure.
    pub fn should_restart(
        self,
        exit_code: Option<i32>,
        restart_count: u32,
        stop_requested: bool,
    ) -> bool {
        if stop_requested {
            return false;
        }
        match self {
            Self::No => false,
            Self::Always | Self::UnlessStopped => true,
            Self::OnFailure { max_retries } => {
                exit_code != Some(0) && (max_retries == 0 || restart_count < max_retries)
            }
        }
    }
}

/// `--pull`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PullPolicy {
    /// Pull even when the image is present.
    Always,
    /// Pull only when it is missing (the default).
    #[default]
    Missing,
    /// Never pull: a missing image is an error.
    Never,
}

impl PullPolicy {
    /// Parses `always`, `missing` or `never`.
    ///
    /// # Errors
    ///
    /// Any other word.
    pub fn parse(s: &str) -> Result<Self, EngineError> {
        match s {
            "always" => Ok(Self::Always),
            "missing" => Ok(Self::Missing),
            "never" => Ok(Self::Never),
            _ => Err(EngineError::invalid(format!(
                "invalid --pull {s:?}: use always, missing or never"
            ))),
        }
    }
}

/// A mount as `inspect` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountPoint {
    /// `bind`, `volume` or `tmpfs`.
    pub kind: String,
    /// The volume's name (volumes only).
    pub name: Option<String>,
    /// The host path (empty for tmpfs).
    pub source: String,
    /// The path in the container.
    pub destination: String,
    /// Writable.
    pub rw: bool,
    /// Bind propagation (binds only).
    pub propagation: String,
}

/// `--health-*` as applied (the image's HEALTHCHECK merged with the flags).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthConfig {
    /// Docker's `Test`: `["CMD", ...]`, `["CMD-SHELL", "..."]`.
    pub test: Vec<String>,
    /// Between checks.
    pub interval_ns: u64,
    /// Per check.
    pub timeout_ns: u64,
    /// Failures in a row that make it unhealthy.
    pub retries: u32,
    /// Failures during this time after start do not count.
    pub start_period_ns: u64,
}

/// The engine's settings of one container (the record's `config`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerConfig {
    /// The image as the user named it.
    pub image: String,
    /// The process's command line (entrypoint + cmd), as run.
    pub args: Vec<String>,
    /// `--entrypoint` or the image's.
    pub entrypoint: Vec<String>,
    /// The cmd part.
    pub cmd: Vec<String>,
    /// The process environment.
    pub env: Vec<String>,
    /// The working directory.
    pub working_dir: String,
    /// `-u` or the image's User.
    pub user: String,
    /// The hostname.
    pub hostname: String,
    /// `-t`.
    pub tty: bool,
    /// `-i`.
    pub open_stdin: bool,
    /// Signal `stop` sends first.
    pub stop_signal: String,
    /// Seconds `stop` waits before SIGKILL (`--stop-timeout`; default 10).
    pub stop_timeout: Option<u32>,
    /// `--restart`.
    pub restart: RestartPolicy,
    /// `--rm`.
    pub auto_remove: bool,
    /// `--log-driver`, `--log-opt`.
    pub log: LogConfig,
    /// The network mode: `none`, `host`, a network's name (the first of
    /// [`ContainerConfig::networks`]), `container:<id>` or `ns:<path>`.
    pub network: String,
    /// The networks joined at each start, the first carrying the default
    /// route (empty unless the mode is a network).
    #[serde(default)]
    pub networks: Vec<crate::networks::NetworkAttach>,
    /// `-p`.
    #[serde(default)]
    pub ports: Vec<crate::networks::PortSpec>,
    /// `-P`: publish every exposed port on a free host port.
    #[serde(default)]
    pub publish_all: bool,
    /// The image's `EXPOSE` and `--expose`.
    #[serde(default)]
    pub exposed_ports: Vec<(u16, wharf_net::firewall::Protocol)>,
    /// `--dns`, `--dns-search`, `--dns-option`.
    #[serde(default)]
    pub dns: crate::networks::DnsSettings,
    /// `--init`.
    pub init: bool,
    /// `--privileged`.
    pub privileged: bool,
    /// `--read-only`.
    pub read_only: bool,
    /// Mounts besides the image's rootfs.
    pub mounts: Vec<MountPoint>,
    /// Names of anonymous volumes made for this container (`rm -v`, `--rm`).
    pub anonymous_volumes: Vec<String>,
    /// `--annotation`.
    pub annotations: BTreeMap<String, String>,
    /// The health check, if any.
    pub health: Option<HealthConfig>,
    /// Image platform (`os/arch`).
    pub platform: String,
    /// A pod's infra container: no image, its rootfs is `<dir>/rootfs`
    /// (see `pods`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub infra: bool,
    /// The pod namespaces it enters at each start (`run --pod`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<crate::pods::PodJoin>,
}

impl ContainerConfig {
    /// Reads a record's `config`.
    ///
    /// # Errors
    ///
    /// The JSON is not a container config (a record written by another
    /// version).
    pub fn from_value(v: &serde_json::Value) -> Result<Self, EngineError> {
        serde_json::from_value(v.clone()).map_err(EngineError::ReadConfig)
    }

    /// The record's `config` JSON.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("a ContainerConfig always serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_policy_parses_dockers_forms() {
        assert_eq!(RestartPolicy::parse("no").unwrap(), RestartPolicy::No);
        assert_eq!(
            RestartPolicy::parse("always").unwrap(),
            RestartPolicy::Always
        );
        assert_eq!(
            RestartPolicy::parse("unless-stopped").unwrap(),
            RestartPolicy::UnlessStopped
        );
        assert_eq!(
            RestartPolicy::parse("on-failure:3").unwrap(),
            RestartPolicy::OnFailure { max_retries: 3 }
        );
        assert_eq!(
            RestartPolicy::parse("on-failure").unwrap(),
            RestartPolicy::OnFailure { max_retries: 0 }
        );
        let e = RestartPolicy::parse("always:3").unwrap_err().to_string();
        assert!(e.contains("only be used with on-failure"), "{e}");
        let e = RestartPolicy::parse("on-failure:-1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("non-negative"), "{e}");
        let e = RestartPolicy::parse("sometimes").unwrap_err().to_string();
        assert!(e.contains("\"sometimes\""), "{e}");
    }

    #[test]
    fn restart_decisions_follow_docker() {
        let of3 = RestartPolicy::OnFailure { max_retries: 3 };
        assert!(of3.should_restart(Some(1), 0, false));
        assert!(of3.should_restart(Some(1), 2, false));
        assert!(!of3.should_restart(Some(1), 3, false));
        assert!(!of3.should_restart(Some(0), 0, false));
        assert!(of3.should_restart(None, 0, false));
        assert!(RestartPolicy::Always.should_restart(Some(0), 100, false));
        assert!(!RestartPolicy::Always.should_restart(Some(137), 0, true));
        assert!(!RestartPolicy::No.should_restart(Some(1), 0, false));
    }
}
