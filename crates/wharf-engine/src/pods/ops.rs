//! `pod create|start|stop|restart|kill|rm|ps|inspect`, and where a
//! `run --pod` container goes.

use std::path::PathBuf;

use super::infra::InfraRequest;
use super::{CreatePodRequest, Pod, PodConfig, PodId, PodJoin, PodName, Share, DEFAULT_SHARES};
use crate::containers::{Container, CreateRequest, StartOptions};
use crate::networks::{NetworkAttach, NetworkRequest, PlannedNetwork};
use crate::spec::NetworkMode;
use crate::state::{NewPod, PodRecord};
use crate::{Engine, EngineError};

/// How many generated names `pod create` tries.
const NAME_ATTEMPTS: u32 = 16;

/// Where a `--pod` container goes: its pod, cgroup, and what it takes from
/// the pod instead of from its own flags.
#[derive(Debug, Clone)]
pub(crate) struct PodPlacement {
    /// The pod.
    pub(crate) pod: PodId,
    /// Its cgroup parent.
    pub(crate) cgroup_parent: String,
    /// The infra's namespaces it enters at each start.
    pub(crate) join: Option<PodJoin>,
    /// The pod's network, when the container shares it.
    pub(crate) network: Option<PlannedNetwork>,
    /// The pod's hostname, when the container shares its UTS namespace.
    pub(crate) hostname: Option<String>,
}

impl Engine {
    /// `pod create`: records the pod and (unless `--infra=false`) its infra
    /// container, which owns the shared namespaces, networks and published
    /// ports. Nothing starts. A failure leaves nothing: the records are
    /// written last, together, and the infra's directory is removed.
    ///
    /// # Errors
    ///
    /// The name is taken; a network does not exist; the request does not
    /// fit a pod without infra; the init binary is not static; a host
    /// operation failed.
    pub fn create_pod(&self, request: &CreatePodRequest) -> Result<Pod, EngineError> {
        let store = self.containers()?;
        let shares = if request.infra {
            request
                .shares
                .clone()
                .unwrap_or_else(|| DEFAULT_SHARES.to_vec())
        } else {
            if request.shares.as_ref().is_some_and(|s| !s.is_empty()) {
                return Err(EngineError::invalid(
                    "a pod without an infra container shares no namespaces: --share needs --infra",
                ));
            }
            if request.network.is_some() || !request.ports.is_empty() {
                return Err(EngineError::invalid(
                    "a pod without an infra container has no network of its own: --network and --publish need --infra",
                ));
            }
            Vec::new()
        };
        let network_request = request
            .network
            .clone()
            .unwrap_or_else(|| NetworkRequest::Networks(vec![default_attach()]));
        if !shares.contains(&Share::Net) && (request.network.is_some() || !request.ports.is_empty())
        {
            return Err(EngineError::invalid(
                "--network and --publish set the pod's shared network namespace: they need net in --share",
            ));
        }
        if request.hostname.is_some() && !shares.contains(&Share::Uts) {
            return Err(EngineError::invalid(
                "--hostname sets the pod's shared UTS namespace: it needs uts in --share",
            ));
        }
        if matches!(
            network_request,
            NetworkRequest::Container(_) | NetworkRequest::Namespace(_) | NetworkRequest::Pod
        ) {
            return Err(EngineError::invalid(
                "a pod's --network is bridge, a network's name, none or host",
            ));
        }
        if let Some(name) = &request.name {
            if let Ok(holder) = store.get_pod(name.as_str()) {
                if holder.name == *name {
                    return Err(EngineError::PodNameInUse {
                        name: name.to_string(),
                        holder: holder.id.short().to_owned(),
                    });
                }
            }
        }
        let planned = match (request.infra, shares.contains(&Share::Net)) {
            (false, _) => None,
            (true, true) => {
                Some(self.plan_network_request(&network_request, !request.ports.is_empty())?)
            }
            // Nobody would use the infra's network: it gets none.
            (true, false) => Some(self.plan_network_request(&NetworkRequest::None, false)?),
        };
        let id = PodId::random()?;
        let mut attempt = 0;
        loop {
            let name = match &request.name {
                Some(n) => n.clone(),
                None => PodName::random(attempt)?,
            };
            let hostname = request.hostname.clone().unwrap_or_else(|| name.to_string());
            let config = PodConfig {
                shares: shares.clone(),
                infra: request.infra,
                hostname: if shares.contains(&Share::Uts) {
                    hostname
                } else {
                    String::new()
                },
                network: planned
                    .as_ref()
                    .map(|p| match &p.mode {
                        NetworkMode::Bridge => p
                            .attach
                            .iter()
                            .map(|a| a.network.clone())
                            .collect::<Vec<_>>()
                            .join(","),
                        _ => p.name.clone(),
                    })
                    .unwrap_or_default(),
                networks: planned
                    .as_ref()
                    .map(|p| p.attach.iter().map(|a| a.network.clone()).collect())
                    .unwrap_or_default(),
                ports: request.ports.clone(),
            };
            let infra = match &planned {
                Some(network) => Some(self.create_infra(InfraRequest {
                    pod: &id,
                    pod_name: &name,
                    config: &config,
                    network: network.clone(),
                    name: request.infra_name.clone(),
                    init_path: request.init_path.as_deref(),
                })?),
                None => None,
            };
            let new = NewPod {
                id: id.clone(),
                name,
                labels: request.labels.clone(),
                config: config.to_value(),
                infra_id: infra.as_ref().map(|(c, _, _)| c.id.clone()),
            };
            match store.create_pod(&new, infra.as_ref().map(|(c, _, _)| c)) {
                Ok(()) => {
                    if let Some((_, _, guard)) = infra {
                        guard.commit();
                    }
                    break;
                }
                Err(EngineError::PodNameInUse { .. })
                    if request.name.is_none() && attempt + 1 < NAME_ATTEMPTS =>
                {
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
        self.pod(id.as_str())
    }

    /// A pod by id, name or unique id prefix, with its containers.
    ///
    /// # Errors
    ///
    /// No such pod; an ambiguous prefix; the database failed.
    pub fn pod(&self, reference: &str) -> Result<Pod, EngineError> {
        let record = self.containers()?.get_pod(reference)?;
        self.pod_from(record)
    }

    fn pod_from(&self, record: PodRecord) -> Result<Pod, EngineError> {
        let config = PodConfig::from_value(&record.config)?;
        let mut containers = Vec::new();
        for member in self.containers()?.pod_members(&record.id)? {
            let member = self.reconcile(member, false)?;
            containers.push(self.container_from(member)?);
        }
        Ok(Pod {
            record,
            config,
            containers,
        })
    }

    /// `pod ps`: every pod, newest first.
    ///
    /// # Errors
    ///
    /// The database failed.
    pub fn list_pods(&self) -> Result<Vec<Pod>, EngineError> {
        self.containers()?
            .list_pods()?
            .into_iter()
            .map(|r| self.pod_from(r))
            .collect()
    }

    /// `pod start`: the infra container first, then every member that is
    /// not running. A member that fails does not stop the others; the
    /// first failure is returned once all were tried.
    ///
    /// # Errors
    ///
    /// No such pod; the infra or a member failed to start.
    pub fn start_pod(&self, reference: &str) -> Result<Pod, EngineError> {
        let pod = self.pod(reference)?;
        if let Some(infra) = pod.infra() {
            self.start_container(infra.record.id.as_str(), &StartOptions::default())?;
        }
        let mut first_error = None;
        for c in pod.members() {
            if c.record.state.is_up() {
                continue;
            }
            if let Err(e) = self.start_container(c.record.id.as_str(), &StartOptions::default()) {
                tracing::warn!(pod = %pod.record.name, container = %c.record.id, error = %e, "start a pod's container");
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => self.pod(pod.record.id.as_str()),
        }
    }

    /// `pod stop`: the members (all at once, each with `timeout` or its
    /// own stop timeout), then the infra container.
    ///
    /// # Errors
    ///
    /// No such pod; a container could not be stopped (the others are).
    pub fn stop_pod(&self, reference: &str, timeout: Option<u32>) -> Result<Pod, EngineError> {
        let pod = self.pod(reference)?;
        let members: Vec<&Container> = pod.members().filter(|c| c.record.state.is_up()).collect();
        let results: Vec<Result<(), EngineError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = members
                .iter()
                .map(|c| {
                    let id = c.record.id.as_str();
                    scope.spawn(move || self.stop_container(id, timeout).map(drop))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(EngineError::invalid("a stop panicked")))
                })
                .collect()
        });
        let mut first_error = results.into_iter().find_map(Result::err);
        if let Some(infra) = pod.infra() {
            if let Err(e) = self.stop_container(infra.record.id.as_str(), timeout) {
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => self.pod(pod.record.id.as_str()),
        }
    }

    /// `pod restart`: stop, then start.
    ///
    /// # Errors
    ///
    /// As [`Engine::stop_pod`] and [`Engine::start_pod`].
    pub fn restart_pod(&self, reference: &str, timeout: Option<u32>) -> Result<Pod, EngineError> {
        let pod = self.stop_pod(reference, timeout)?;
        self.start_pod(pod.record.id.as_str())
    }

    /// `pod kill`: `signal` to every running member, then to the infra.
    ///
    /// # Errors
    ///
    /// No such pod; none of its containers runs; signalling failed.
    pub fn kill_pod(&self, reference: &str, signal: i32) -> Result<Pod, EngineError> {
        let pod = self.pod(reference)?;
        let running: Vec<&Container> = pod
            .members()
            .chain(pod.infra())
            .filter(|c| c.record.state.is_up())
            .collect();
        if running.is_empty() {
            return Err(EngineError::NotRunning {
                id: pod.record.id.short().to_owned(),
                reason: format!("no container of pod {} is running", pod.record.name),
            });
        }
        let mut first_error = None;
        for c in running {
            if let Err(e) = self.kill_container(c.record.id.as_str(), signal) {
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => self.pod(pod.record.id.as_str()),
        }
    }

    /// `pod rm`: removes the members, the infra container, the pod's cgroup
    /// and its record. Without `force`, a pod with a running container
    /// (its infra included) is refused and nothing is removed; with it,
    /// running containers are killed first.
    ///
    /// # Errors
    ///
    /// No such pod; it runs and `force` is not set
    /// ([`EngineError::PodRunning`]); a container could not be removed (the
    /// pod then stays, with what is left).
    pub fn remove_pod(&self, reference: &str, force: bool) -> Result<Pod, EngineError> {
        let pod = self.pod(reference)?;
        let running = pod
            .containers
            .iter()
            .filter(|c| c.record.state.is_up())
            .count();
        if running > 0 && !force {
            return Err(EngineError::PodRunning {
                name: pod.record.name.to_string(),
                running,
            });
        }
        for c in pod.members() {
            match self.remove_container_unchecked(c.record.id.as_str(), force, true) {
                Ok(_) | Err(EngineError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        if let Some(infra) = pod.infra() {
            match self.remove_container_unchecked(infra.record.id.as_str(), force, true) {
                Ok(_) | Err(EngineError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        self.containers()?.remove_pod(&pod.record.id)?;
        remove_pod_cgroup(&pod);
        Ok(pod)
    }

    /// Where a `create --pod` container goes and what it takes from the
    /// pod; refuses what the pod owns (`--network`, `-p`, `--hostname` on
    /// shared namespaces).
    pub(crate) fn place_in_pod(
        &self,
        reference: &str,
        request: &CreateRequest,
    ) -> Result<PodPlacement, EngineError> {
        let store = self.containers()?;
        let pod = store.get_pod(reference)?;
        let config = PodConfig::from_value(&pod.config)?;
        let name = &pod.name;
        let mut placement = PodPlacement {
            pod: pod.id.clone(),
            cgroup_parent: super::cgroup_parent(&pod.id),
            join: None,
            network: None,
            hostname: None,
        };
        let (true, Some(infra)) = (config.infra, &pod.infra_id) else {
            return Ok(placement);
        };
        let mut namespaces = config.shares.clone();
        if config.shares.contains(&Share::Net) {
            if request.network != NetworkRequest::Pod {
                return Err(EngineError::invalid(format!(
                    "--network cannot be set on a container in pod {name}: it shares the pod's network namespace, whose networks `pod create --network` sets"
                )));
            }
            if !request.ports.is_empty() || request.publish_all {
                return Err(EngineError::invalid(format!(
                    "--publish cannot be used on a container in pod {name}: it shares the pod's network namespace, whose ports `pod create -p` publishes"
                )));
            }
            if config.network == "host" {
                namespaces.retain(|s| *s != Share::Net);
                placement.network = Some(PlannedNetwork {
                    mode: NetworkMode::Host,
                    name: "host".into(),
                    attach: Vec::new(),
                    resolv_from: None,
                });
            } else {
                placement.network = Some(self.shared_network(infra)?);
            }
        }
        if config.shares.contains(&Share::Uts) {
            if !request.spec.hostname.is_empty() {
                return Err(EngineError::invalid(format!(
                    "--hostname cannot be set on a container in pod {name}: it shares the pod's UTS namespace (`pod create --hostname` sets it)"
                )));
            }
            placement.hostname = Some(config.hostname.clone());
        }
        placement.join = Some(PodJoin {
            infra: infra.to_string(),
            namespaces,
        });
        Ok(placement)
    }
}

/// The default network's attachment (`bridge`).
pub(crate) fn default_attach() -> NetworkAttach {
    NetworkAttach {
        network: wharf_net::store::DEFAULT_NETWORK.to_owned(),
        ..NetworkAttach::default()
    }
}

/// Removes the pod's (now empty) cgroup in every hierarchy. Best effort.
fn remove_pod_cgroup(pod: &Pod) {
    let hierarchy = match wharf_cgroups::Hierarchy::detect() {
        Ok(h) => h,
        Err(_) => return,
    };
    let path = PathBuf::from(pod.cgroup_parent());
    match wharf_cgroups::manager_for(&hierarchy, &path) {
        Ok(manager) => {
            if let Err(e) = manager.destroy() {
                tracing::warn!(pod = %pod.record.name, error = %e, "remove the pod's cgroup");
            }
        }
        Err(e) => tracing::warn!(pod = %pod.record.name, error = %e, "resolve the pod's cgroup"),
    }
}
