//! Pods (Podman's `pod` commands): containers that share namespaces, made,
//! started, stopped and removed together.
//!
//! A pod is a record in `engine.db` (`pods`, migration 5: id, unique name,
//! created, labels, this module's [`PodConfig`] as JSON, infra container
//! id). Membership is the `containers.pod_id` column rather than part of a
//! container's opaque config JSON: "the members of pod X" (`pod ps`'s
//! count, `pod rm`, refusing `rm` of an infra) is then one indexed query,
//! and a member's insert checks that its pod exists in the same
//! transaction, so a racing `pod rm` can never leave a member of a pod that
//! is gone. How a member joins the pod at each start (whose namespaces,
//! which ones) is in its config ([`PodJoin`]), beside `--network
//! container:`'s target, because the monitor reads it from there.
//!
//! The infra container ([`infra`]) is Wharf's own pause process, with no
//! image: a container record whose rootfs is `<container dir>/rootfs`, a
//! directory of empty mount points, on which the static `wharf-init` is
//! bind-mounted read-only and run as `wharf-init --pause`. It owns the
//! pod's namespaces (network, IPC, UTS, PID), and gets the pod's networks
//! and published ports in its config, so the monitor connects it exactly
//! like any container. Members join its namespaces by path
//! (`/proc/<infra pid>/ns/<ns>`), patched into their runtime spec at each
//! start ([`Engine::refresh_joined_namespaces`]), so a member started after
//! the infra restarted joins the new namespaces; starting a member starts
//! the infra first. Members on its network namespace get its /etc/hosts
//! and /etc/resolv.conf; on its UTS namespace, the pod's hostname.
//!
//! Cgroups: each container of a pod lives at `/wharf/pod-<pod id>/<id>`;
//! `pod rm` removes the pod's cgroup once its containers are gone.

mod infra;
mod join;
mod ops;
mod plan;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub(crate) use ops::default_attach;
pub(crate) use plan::{apply_join_plan, join_plan};
pub use plan::{parse_shares, pod_status, PodStatus, Share, DEFAULT_SHARES};

use crate::containers::Container;
use crate::networks::{NetworkRequest, PortSpec};
use crate::state::{ContainerId, ContainerName, PodRecord};
use crate::EngineError;

/// A pod id: 64 lowercase hex digits, as container ids.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PodId(String);

impl PodId {
    /// Validates a full id.
    ///
    /// # Errors
    ///
    /// [`EngineError::InvalidPodId`] unless `s` is 64 lowercase hex digits.
    pub fn parse(s: &str) -> Result<Self, EngineError> {
        ContainerId::parse(s)
            .map(|id| Self(id.as_str().to_owned()))
            .map_err(|_| EngineError::InvalidPodId { id: s.to_owned() })
    }

    /// A fresh random id.
    ///
    /// # Errors
    ///
    /// The kernel's random source cannot be read.
    pub fn random() -> Result<Self, EngineError> {
        Ok(Self(ContainerId::random()?.as_str().to_owned()))
    }

    /// The full id.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 hex digits.
    pub fn short(&self) -> &str {
        &self.0[..ContainerId::SHORT_LEN]
    }
}

impl fmt::Display for PodId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A pod name: the container name rule, unique among pods.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PodName(String);

impl PodName {
    /// Validates a name.
    ///
    /// # Errors
    ///
    /// [`EngineError::InvalidPodName`] when it breaks the rule.
    pub fn parse(s: &str) -> Result<Self, EngineError> {
        ContainerName::parse(s)
            .map(|n| Self(n.as_str().to_owned()))
            .map_err(|_| EngineError::InvalidPodName { name: s.to_owned() })
    }

    /// A random `adjective_surname` name (`retry` > 0 adds a digit).
    ///
    /// # Errors
    ///
    /// The kernel's random source cannot be read.
    pub fn random(retry: u32) -> Result<Self, EngineError> {
        Ok(Self(ContainerName::random(retry)?.as_str().to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PodName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a pod was made with (the record's `config`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodConfig {
    /// The namespaces members share with the infra container.
    pub shares: Vec<Share>,
    /// Whether the pod has an infra container.
    pub infra: bool,
    /// The hostname members sharing the UTS namespace get.
    pub hostname: String,
    /// The network mode: `bridge`, a network's name, `none` or `host`.
    pub network: String,
    /// The networks the infra container joins.
    #[serde(default)]
    pub networks: Vec<String>,
    /// `-p`, published by the infra container.
    #[serde(default)]
    pub ports: Vec<PortSpec>,
}

impl PodConfig {
    /// Reads a record's `config`.
    ///
    /// # Errors
    ///
    /// The JSON is not a pod config.
    pub fn from_value(v: &serde_json::Value) -> Result<Self, EngineError> {
        serde_json::from_value(v.clone()).map_err(EngineError::ReadConfig)
    }

    /// The record's `config` JSON.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("a PodConfig always serialises")
    }

    /// Whether members share the infra container's network namespace (so
    /// ports and networks belong to the pod).
    pub fn shares_network(&self) -> bool {
        self.infra && self.shares.contains(&Share::Net)
    }
}

/// How a member joins its pod at each start: the infra container whose
/// namespaces it enters, and which (a member config's `pod`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodJoin {
    /// The infra container's id.
    pub infra: String,
    /// The namespaces entered (the pod's shares, without `net` on a pod
    /// on the host's network).
    pub namespaces: Vec<Share>,
}

/// A `pod create` request, validated by the caller's parser.
#[derive(Debug, Clone, Default)]
pub struct CreatePodRequest {
    /// `--name`; a random name otherwise.
    pub name: Option<PodName>,
    /// `--label`.
    pub labels: BTreeMap<String, String>,
    /// `--hostname`; the pod's name otherwise.
    pub hostname: Option<String>,
    /// `--share`; `None` is [`DEFAULT_SHARES`].
    pub shares: Option<Vec<Share>>,
    /// `--infra` (the caller's default is true).
    pub infra: bool,
    /// `--infra-name`; `<pod id 12>-infra` otherwise.
    pub infra_name: Option<ContainerName>,
    /// `--network`: none, host, or networks; `None` is the default
    /// network.
    pub network: Option<NetworkRequest>,
    /// `-p`.
    pub ports: Vec<PortSpec>,
    /// The static init the infra container runs in pause mode; `wharf-init`
    /// beside the running binary otherwise (as `--init-path`).
    pub init_path: Option<PathBuf>,
}

/// A pod as `pod inspect` and `pod ps` see it.
#[derive(Debug, Clone)]
pub struct Pod {
    /// Its record.
    pub record: PodRecord,
    /// Its settings.
    pub config: PodConfig,
    /// Its containers, the infra included, oldest first, their states
    /// brought up to date.
    pub containers: Vec<Container>,
}

impl Pod {
    /// Podman's pod status from the containers' states.
    pub fn status(&self) -> PodStatus {
        pod_status(self.containers.iter().map(|c| c.record.state))
    }

    /// The infra container.
    pub fn infra(&self) -> Option<&Container> {
        let id = self.record.infra_id.as_ref()?;
        self.containers.iter().find(|c| &c.record.id == id)
    }

    /// The containers but the infra.
    pub fn members(&self) -> impl Iterator<Item = &Container> {
        self.containers
            .iter()
            .filter(|c| Some(&c.record.id) != self.record.infra_id.as_ref())
    }

    /// The pod's cgroup (its containers' cgroups are below it).
    pub fn cgroup_parent(&self) -> String {
        cgroup_parent(&self.record.id)
    }
}

/// `/wharf/pod-<id>`: where a pod's containers' cgroups are made.
pub(crate) fn cgroup_parent(id: &PodId) -> String {
    format!("{}/pod-{id}", crate::containers::CGROUP_PARENT)
}
