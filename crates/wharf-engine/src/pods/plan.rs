//! The pure parts of pods: `--share` lists, the plan of namespace paths a
//! member's runtime spec gets at each start, and Podman's pod status.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::state::ContainerState;
use crate::EngineError;

/// A namespace a pod's members share with its infra container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Share {
    /// The network namespace (addresses, ports, localhost).
    Net,
    /// The IPC namespace (System V IPC, POSIX message queues).
    Ipc,
    /// The UTS namespace (hostname).
    Uts,
    /// The PID namespace (members see each other's processes).
    Pid,
}

/// Podman's default `--share`.
pub const DEFAULT_SHARES: [Share; 3] = [Share::Net, Share::Ipc, Share::Uts];

impl Share {
    /// Podman's word (`net`, `ipc`, `uts`, `pid`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Net => "net",
            Self::Ipc => "ipc",
            Self::Uts => "uts",
            Self::Pid => "pid",
        }
    }

    /// The OCI runtime spec's namespace type.
    pub fn oci_type(self) -> &'static str {
        match self {
            Self::Net => "network",
            Self::Ipc => "ipc",
            Self::Uts => "uts",
            Self::Pid => "pid",
        }
    }

    fn parse(word: &str, whole: &str) -> Result<Self, EngineError> {
        Ok(match word {
            "net" => Self::Net,
            "ipc" => Self::Ipc,
            "uts" => Self::Uts,
            "pid" => Self::Pid,
            _ => {
                return Err(EngineError::invalid(format!(
                    "invalid --share {whole:?}: {word:?} is not a namespace a pod can share (use a comma list of net, ipc, uts and pid, +pid to add to the default, or none)"
                )))
            }
        })
    }
}

impl fmt::Display for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses `--share`: a comma list of `net`, `ipc`, `uts`, `pid`; `none`
/// (or empty) for nothing; a list starting with `+` adds to
/// [`DEFAULT_SHARES`] (Podman's `--share +pid`). Sorted, without repeats.
///
/// # Errors
///
/// An unknown word.
pub fn parse_shares(text: &str) -> Result<Vec<Share>, EngineError> {
    let trimmed = text.trim();
    let (mut out, list) = match trimmed.strip_prefix('+') {
        Some(rest) => (DEFAULT_SHARES.to_vec(), rest),
        None => (Vec::new(), trimmed),
    };
    if list != "none" {
        for word in list.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            out.push(Share::parse(word, text)?);
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// One namespace a member's spec enters: OCI type and path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NamespaceJoin {
    /// The spec's namespace type (`network`, `ipc`, `uts`, `pid`).
    pub(crate) kind: &'static str,
    /// `/proc/<pid>/ns/<ns>` of the infra container's init.
    pub(crate) path: String,
}

/// The paths of `namespaces` of the process `pid` (a number, or `self` for
/// a placeholder until the process is known).
pub(crate) fn join_plan(namespaces: &[Share], pid: impl fmt::Display) -> Vec<NamespaceJoin> {
    namespaces
        .iter()
        .map(|s| NamespaceJoin {
            kind: s.oci_type(),
            path: format!("/proc/{pid}/ns/{}", s.as_str()),
        })
        .collect()
}

/// Sets each planned namespace's path in a runtime spec document
/// (`linux.namespaces`), adding the entry when the spec has none of that
/// type; the others are left as they are.
pub(crate) fn apply_join_plan(spec: &mut Value, plan: &[NamespaceJoin]) {
    if plan.is_empty() {
        return;
    }
    if !spec["linux"]["namespaces"].is_array() {
        spec["linux"]["namespaces"] = json!([]);
    }
    let Some(namespaces) = spec["linux"]["namespaces"].as_array_mut() else {
        return;
    };
    for join in plan {
        match namespaces
            .iter_mut()
            .find(|ns| ns.get("type").and_then(Value::as_str) == Some(join.kind))
        {
            Some(ns) => ns["path"] = json!(join.path),
            None => namespaces.push(json!({"type": join.kind, "path": join.path})),
        }
    }
}

/// A pod's status, Podman's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodStatus {
    /// No container ever ran (or none exists).
    Created,
    /// Every container runs.
    Running,
    /// Some containers run, others do not.
    Degraded,
    /// Every container is paused.
    Paused,
    /// Some containers stopped, none runs.
    Stopped,
    /// Every container stopped.
    Exited,
    /// A container is dead (its removal failed half way).
    Error,
}

impl PodStatus {
    /// Podman's word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "Created",
            Self::Running => "Running",
            Self::Degraded => "Degraded",
            Self::Paused => "Paused",
            Self::Stopped => "Stopped",
            Self::Exited => "Exited",
            Self::Error => "Error",
        }
    }
}

impl fmt::Display for PodStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Podman's rule: all running → Running, some → Degraded; all paused →
/// Paused; all stopped → Exited, some → Stopped; a dead one → Error; else
/// Created (a pod with no containers included).
pub fn pod_status(states: impl IntoIterator<Item = ContainerState>) -> PodStatus {
    let (mut total, mut running, mut paused, mut stopped, mut dead) = (0, 0, 0, 0, 0);
    for s in states {
        total += 1;
        match s {
            ContainerState::Running | ContainerState::Restarting => running += 1,
            ContainerState::Paused => paused += 1,
            ContainerState::Exited => stopped += 1,
            ContainerState::Dead | ContainerState::Removing => dead += 1,
            ContainerState::Created => {}
        }
    }
    match () {
        _ if total == 0 => PodStatus::Created,
        _ if running == total => PodStatus::Running,
        _ if running > 0 => PodStatus::Degraded,
        _ if paused == total => PodStatus::Paused,
        _ if stopped == total => PodStatus::Exited,
        _ if stopped > 0 => PodStatus::Stopped,
        _ if dead > 0 => PodStatus::Error,
        _ => PodStatus::Created,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_lists_parse_as_podman() {
        use Share::*;
        assert_eq!(parse_shares("net,ipc,uts").unwrap(), vec![Net, Ipc, Uts]);
        assert_eq!(parse_shares("pid, net,net").unwrap(), vec![Net, Pid]);
        assert_eq!(parse_shares("+pid").unwrap(), vec![Net, Ipc, Uts, Pid]);
        assert_eq!(parse_shares("none").unwrap(), Vec::<Share>::new());
        assert_eq!(parse_shares("").unwrap(), Vec::<Share>::new());
        let e = parse_shares("net,mnt").unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument);
        assert!(
            e.to_string()
                .starts_with("invalid --share \"net,mnt\": \"mnt\" is not"),
            "{e}"
        );
        assert_eq!(
            serde_json::to_value(DEFAULT_SHARES).unwrap(),
            json!(["net", "ipc", "uts"])
        );
    }

    #[test]
    fn the_join_plan_points_shared_namespaces_at_the_infra() {
        let plan = join_plan(&[Share::Net, Share::Pid], 42);
        assert_eq!(
            plan,
            vec![
                NamespaceJoin {
                    kind: "network",
                    path: "/proc/42/ns/net".into()
                },
                NamespaceJoin {
                    kind: "pid",
                    path: "/proc/42/ns/pid".into()
                },
            ]
        );
        let mut spec = json!({"linux": {"namespaces": [
            {"type": "mount"},
            {"type": "network", "path": "/proc/7/ns/net"},
            {"type": "uts"},
            {"type": "ipc"},
        ]}});
        apply_join_plan(&mut spec, &plan);
        assert_eq!(
            spec["linux"]["namespaces"],
            json!([
                {"type": "mount"},
                {"type": "network", "path": "/proc/42/ns/net"},
                {"type": "uts"},
                {"type": "ipc"},
                {"type": "pid", "path": "/proc/42/ns/pid"},
            ])
        );
        // Nothing planned, nothing touched.
        let before = spec.clone();
        apply_join_plan(&mut spec, &[]);
        assert_eq!(spec, before);
    }

    #[test]
    fn pod_status_follows_podman() {
        use ContainerState as S;
        assert_eq!(pod_status([]), PodStatus::Created);
        assert_eq!(pod_status([S::Created, S::Created]), PodStatus::Created);
        assert_eq!(pod_status([S::Running, S::Running]), PodStatus::Running);
        assert_eq!(pod_status([S::Running, S::Exited]), PodStatus::Degraded);
        assert_eq!(pod_status([S::Running, S::Created]), PodStatus::Degraded);
        assert_eq!(pod_status([S::Paused, S::Paused]), PodStatus::Paused);
        assert_eq!(pod_status([S::Exited, S::Exited]), PodStatus::Exited);
        assert_eq!(pod_status([S::Exited, S::Created]), PodStatus::Stopped);
        assert_eq!(pod_status([S::Dead, S::Created]), PodStatus::Error);
    }
}
