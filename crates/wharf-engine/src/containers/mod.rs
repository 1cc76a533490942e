//! Containers on images: create, start (through the per-container
//! monitor), stop, kill, remove, list, inspect, wait, exec, attach.
//!
//! Every command is its own short-lived process. What must outlive a
//! command runs in the container's monitor ([`crate::monitor`]), a re-exec
//! of the Wharf binary that is the container's parent. Commands on one
//! container serialise on its lock (`state::ContainerStore::lock`); the
//! monitor never takes it, so a command may wait for the monitor while
//! holding it.
//!
//! A container's directory `<root>/containers/<id>/` holds `config.json`
//! (the runtime spec; its bundle), `hosts`, `hostname`, `resolv.conf`,
//! `container.log` (json-file logs), `monitor.lock` (a POSIX lock the
//! monitor holds while it lives), `monitor.log` (its own errors) and
//! `attach.sock`. Its rootfs is the image store's rootfs keyed by the id,
//! mounted only while the container runs.

pub mod attach;
mod config;
mod exec;
mod files;
pub(crate) use files::{write_file, EtcFiles};
mod fs;
mod lifecycle;
mod prune;
mod stats;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub use crate::monitor::{HealthResult, HealthState};
pub use config::{ContainerConfig, HealthConfig, MountPoint, PullPolicy, RestartPolicy};
pub(crate) use exec::start_failure_code;
pub use exec::ExecOptions;
pub use fs::{
    Change, ChangeKind, CommitRequest, ContainerFs, CopySource, Ownership, PathStat, Tree,
};
pub(crate) use lifecycle::{attach_socket_path, open_monitor_log, READY_OK};
pub use lifecycle::{AttachStream, EarlyMonitor, StartOptions, EARLY_MONITOR_ID};
pub use prune::ContainerPruneReport;
pub use stats::{cpu_percent, StatsSample};

use crate::logs::LogConfig;
use crate::networks::exposed_ports;
use crate::networks::{DnsSettings, NetworkRequest, PortSpec};
use crate::spec::{self, ContainerRequest, HostFacts};
use crate::state::{
    ContainerId, ContainerName, ContainerRecord, ContainerStore, ListFilter, NewContainer,
    Transition,
};
use crate::volumes::{CreateVolumeRequest, VolumeName, VolumeStore, ANONYMOUS_LABEL};
use crate::{Engine, EngineError};

/// A `create`/`run` request, validated by the caller's parser.
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    /// The image as the user named it (it must be in the store: pulling is
    /// the caller's step, per `--pull`).
    pub image: String,
    /// `--name`; a random Docker-style name otherwise.
    pub name: Option<ContainerName>,
    /// What shapes the runtime spec.
    pub spec: ContainerRequest,
    /// `--restart`.
    pub restart: RestartPolicy,
    /// `--rm`.
    pub auto_remove: bool,
    /// `--stop-signal`.
    pub stop_signal: Option<String>,
    /// `--stop-timeout`.
    pub stop_timeout: Option<u32>,
    /// `--label`.
    pub labels: BTreeMap<String, String>,
    /// `--annotation`.
    pub annotations: BTreeMap<String, String>,
    /// `--add-host name:ip`.
    pub extra_hosts: Vec<(String, String)>,
    /// `--network` and its flags (`--ip`, `--mac-address`, aliases).
    pub network: NetworkRequest,
    /// `-p`.
    pub ports: Vec<PortSpec>,
    /// `-P`.
    pub publish_all: bool,
    /// `--expose`, parsed.
    pub expose: Vec<(u16, wharf_net::firewall::Protocol)>,
    /// `--dns`, `--dns-search`, `--dns-option`.
    pub dns: DnsSettings,
    /// `--log-driver`, `--log-opt`.
    pub log: LogConfig,
    /// `--init`.
    pub init: bool,
    /// `--init-path`: the init binary to use (statically linked).
    pub init_path: Option<PathBuf>,
    /// `-v NAME:/dst`, `-v /dst` and `--mount type=volume`.
    pub volumes: Vec<VolumeMount>,
    /// `--health-*` flags, over the image's HEALTHCHECK.
    pub health: HealthRequest,
    /// The caller starts the container right after (`run`): its rootfs
    /// stays mounted for the monitor instead of being unmounted and
    /// mounted again (`rm` unmounts it if the start never comes).
    pub start_next: bool,
    /// `--pod`: the pod to join (its shared namespaces and cgroup).
    pub pod: Option<String>,
}

/// `--health-cmd`, `--health-interval`, … and `--no-healthcheck`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthRequest {
    /// `--no-healthcheck`: none, whatever the image says.
    pub disable: bool,
    /// `--health-cmd` (run with `/bin/sh -c`).
    pub cmd: Option<String>,
    /// `--health-interval`.
    pub interval: Option<std::time::Duration>,
    /// `--health-timeout`.
    pub timeout: Option<std::time::Duration>,
    /// `--health-retries`.
    pub retries: Option<u32>,
    /// `--health-start-period`.
    pub start_period: Option<std::time::Duration>,
}

/// Docker's defaults: 30 s interval and timeout, 3 retries.
const HEALTH_DEFAULT_NS: u64 = 30_000_000_000;
const HEALTH_DEFAULT_RETRIES: u32 = 3;

/// The image's `config.Healthcheck` (a Docker extension the OCI types do
/// not carry) merged with the flags; `None` without a check.
fn health_config(image_config: &[u8], request: &HealthRequest) -> Option<HealthConfig> {
    if request.disable {
        return None;
    }
    let raw: serde_json::Value = serde_json::from_slice(image_config).unwrap_or_default();
    let image = &raw["config"]["Healthcheck"];
    let ns = |v: &serde_json::Value| v.as_u64().filter(|n| *n > 0);
    let test: Vec<String> = match &request.cmd {
        Some(cmd) => vec!["CMD-SHELL".into(), cmd.clone()],
        None => image["Test"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
    };
    if test.is_empty() || test[0] == "NONE" {
        return None;
    }
    let dur = |flag: Option<std::time::Duration>, key: &str, default: u64| {
        flag.map(|d| d.as_nanos() as u64)
            .filter(|n| *n > 0)
            .or_else(|| ns(&image[key]))
            .unwrap_or(default)
    };
    Some(HealthConfig {
        test,
        interval_ns: dur(request.interval, "Interval", HEALTH_DEFAULT_NS),
        timeout_ns: dur(request.timeout, "Timeout", HEALTH_DEFAULT_NS),
        retries: request
            .retries
            .filter(|r| *r > 0)
            .or_else(|| {
                image["Retries"]
                    .as_u64()
                    .map(|r| r as u32)
                    .filter(|r| *r > 0)
            })
            .unwrap_or(HEALTH_DEFAULT_RETRIES),
        start_period_ns: dur(request.start_period, "StartPeriod", 0),
    })
}

/// A volume mounted into a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeMount {
    /// The named volume (created if missing); `None` for an anonymous one.
    pub name: Option<VolumeName>,
    /// Absolute path in the container.
    pub destination: String,
    /// `ro`.
    pub read_only: bool,
    /// `nocopy`: do not copy the image's content into an empty volume.
    pub no_copy: bool,
}

/// A container as `inspect` and `ps` see it.
#[derive(Debug, Clone)]
pub struct Container {
    /// Its record (state, pids, times).
    pub record: ContainerRecord,
    /// Its settings.
    pub config: ContainerConfig,
    /// Its directory.
    pub dir: PathBuf,
}

/// How long `stop` waits by default before SIGKILL (Docker's 10 s).
pub const DEFAULT_STOP_TIMEOUT: u32 = 10;

/// The cgroup every container's cgroup is made under.
pub(crate) const CGROUP_PARENT: &str = "/wharf";

/// Removes what a failed create made, in reverse, unless committed.
struct CreateGuard<'a> {
    engine: &'a Engine,
    id: &'a ContainerId,
    dir: PathBuf,
    rootfs: bool,
    /// Volumes were acquired for the container.
    volumes: bool,
    /// Anonymous volumes made for it.
    anonymous: Vec<VolumeName>,
    armed: bool,
}

impl Drop for CreateGuard<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if self.volumes {
            if let Ok(store) = self.engine.volumes() {
                if let Err(e) = store.release(self.id) {
                    tracing::warn!(container = %self.id, error = %e, "release the volumes of a failed create");
                }
                for name in &self.anonymous {
                    if let Err(e) = store.remove(name, true) {
                        tracing::warn!(volume = %name, error = %e, "remove an anonymous volume of a failed create");
                    }
                }
            }
        }
        if self.rootfs {
            if let Err(e) = self.engine.images.remove_rootfs(self.id.as_str()) {
                tracing::warn!(container = %self.id, error = %e, "roll back the rootfs of a failed create");
            }
        }
        if let Err(e) = fs_err::remove_dir_all(&self.dir) {
            tracing::warn!(container = %self.id, error = %e, "roll back the directory of a failed create");
        }
    }
}

fn io_err(operation: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> EngineError {
    let path = path.to_path_buf();
    move |source| EngineError::Io {
        operation,
        path,
        source,
    }
}

/// The host facts the spec needs, read from this process.
pub(crate) fn host_facts() -> HostFacts {
    let hard = |r| rustix::process::getrlimit(r).maximum.unwrap_or(u64::MAX);
    HostFacts {
        rlimit_nofile_hard: hard(rustix::process::Resource::Nofile),
        rlimit_nproc_hard: hard(rustix::process::Resource::Nproc),
        cgroup_v2: rustix::fs::statfs("/sys/fs/cgroup")
            .map(|s| s.f_type == libc::CGROUP2_SUPER_MAGIC)
            .unwrap_or(false),
        bounding_caps: bounding_caps(),
    }
}

/// This process's bounding set from /proc/self/status (`CapBnd`).
pub(crate) fn bounding_caps() -> Option<u64> {
    let status = fs_err::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapBnd:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

pub(crate) fn read_host_file(path: &str) -> String {
    fs_err::read_to_string(path).unwrap_or_default()
}

impl Engine {
    pub(crate) fn containers(&self) -> Result<&ContainerStore, EngineError> {
        if let Some(store) = self.containers.get() {
            return Ok(store);
        }
        let store = ContainerStore::open(&self.root)?;
        Ok(self.containers.get_or_init(|| store))
    }

    pub(crate) fn volumes(&self) -> Result<&VolumeStore, EngineError> {
        if let Some(store) = self.volumes.get() {
            return Ok(store);
        }
        let store = VolumeStore::with_connection(&self.root, self.containers()?.connection())?;
        Ok(self.volumes.get_or_init(|| store))
    }

    /// Creates missing named volumes and the anonymous ones (the request's
    /// and the image's `Volumes` not covered by another mount), records
    /// the container as their user, and copies the image's content into
    /// empty ones (Docker's copy-up); the mounts for the spec and inspect.
    fn attach_volumes(
        &self,
        request: &CreateRequest,
        image_config: &oci_spec::image::ImageConfiguration,
        id: &ContainerId,
        rootfs: &Path,
        guard: &mut CreateGuard<'_>,
    ) -> Result<Vec<MountPoint>, EngineError> {
        let clean = |d: &str| wharf_sys::root::lexically_clean(Path::new(d));
        let mut wanted = request.volumes.clone();
        let image_volumes: Vec<String> = image_config
            .config()
            .as_ref()
            .and_then(|c| c.volumes().clone())
            .unwrap_or_default();
        for dest in image_volumes {
            let taken = request
                .spec
                .binds
                .iter()
                .map(|b| clean(&b.destination))
                .chain(request.spec.tmpfs.iter().map(|t| clean(&t.destination)))
                .chain(wanted.iter().map(|v| clean(&v.destination)))
                .any(|d| d == clean(&dest));
            if !taken {
                wanted.push(VolumeMount {
                    name: None,
                    destination: dest,
                    read_only: false,
                    no_copy: false,
                });
            }
        }
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let store = self.volumes()?;
        let mut out = Vec::new();
        for v in wanted {
            if !v.destination.starts_with('/') {
                return Err(EngineError::invalid(format!(
                    "invalid volume destination {:?}: it must be an absolute path",
                    v.destination
                )));
            }
            let name = match &v.name {
                Some(name) => {
                    // Docker creates a named volume on first use;
                    // `create` is idempotent for the same options.
                    store
                        .create(&CreateVolumeRequest {
                            name: Some(name.clone()),
                            ..CreateVolumeRequest::default()
                        })
                        .or_else(|e| match e {
                            EngineError::VolumeOptionsConflict { .. } => store.inspect(name),
                            e => Err(e),
                        })?;
                    name.clone()
                }
                None => {
                    let mut labels = BTreeMap::new();
                    labels.insert(ANONYMOUS_LABEL.to_owned(), String::new());
                    let created = store.create(&CreateVolumeRequest {
                        name: None,
                        labels,
                        ..CreateVolumeRequest::default()
                    })?;
                    guard.anonymous.push(created.name.clone());
                    created.name
                }
            };
            guard.volumes = true;
            let source = store.acquire(id, &name)?;
            if !v.no_copy {
                store.copy_up(&name, rootfs, &v.destination)?;
            }
            out.push(MountPoint {
                kind: "volume".into(),
                name: Some(name.to_string()),
                source: source.display().to_string(),
                destination: v.destination.clone(),
                rw: !v.read_only,
                propagation: String::new(),
            });
        }
        Ok(out)
    }

    pub(crate) fn runtime(&self) -> wharf_runtime::Runtime {
        wharf_runtime::Runtime::new(self.root.join("runtime"))
    }

    /// The runtime's id of a container (the same hex).
    pub(crate) fn runtime_id(id: &ContainerId) -> wharf_runtime::ContainerId {
        wharf_runtime::ContainerId::parse(id.as_str())
            .expect("64 hex digits are a valid runtime id")
    }

    /// `create`: makes the container's rootfs, runtime spec and files, then
    /// records it (last: a crash or failure before leaves no record, and
    /// the rollback removes the rest).
    ///
    /// # Errors
    ///
    /// The image is not in the store; the request does not fit the image
    /// (no command, unknown user); the name is taken (the record's UNIQUE
    /// constraint decides a race); a host operation failed.
    pub fn create_container(&self, request: &CreateRequest) -> Result<Container, EngineError> {
        let store = self.containers()?;
        if let Some(name) = &request.name {
            // A friendly early answer; the insert below decides races.
            if let Ok(holder) = store.get_by_name(name) {
                return Err(EngineError::NameInUse {
                    name: name.to_string(),
                    holder: holder.id.short().to_owned(),
                });
            }
        }
        let placement = match &request.pod {
            Some(pod) => Some(self.place_in_pod(pod, request)?),
            None => None,
        };
        let image = self.images.resolve(&request.image)?;
        let image_config = image.configuration()?;
        let id = ContainerId::random()?;
        let dir = store.container_dir(&id);
        if let Some(parent) = dir.parent() {
            fs_err::create_dir_all(parent).map_err(io_err("create directory", parent))?;
            // Containers' directories are unrelated: spread them over the
            // filesystem's block groups.
            wharf_sys::inode::spread_subdirectories(parent);
        }
        fs_err::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
        let mut guard = CreateGuard {
            engine: self,
            id: &id,
            dir: dir.clone(),
            rootfs: false,
            volumes: false,
            anonymous: Vec::new(),
            armed: true,
        };
        // `run --rm`: the writable layer goes when the container exits and
        // is never mounted again, so it need not survive a crash; a volatile
        // overlay spares the unmount its sync of the whole upper filesystem.
        let options = wharf_image::RootfsOptions {
            volatile: request.auto_remove && request.start_next,
        };
        let rootfs = self
            .images
            .mount_image_rootfs(&image, id.as_str(), options)?;
        guard.rootfs = true;

        let mut spec_request = request.spec.clone();
        let network = match placement.as_ref().and_then(|p| p.network.clone()) {
            Some(shared) => shared,
            None => self.plan_network(request)?,
        };
        spec_request.network = network.mode.clone();
        if let Some(hostname) = placement.as_ref().and_then(|p| p.hostname.clone()) {
            spec_request.hostname = hostname;
        }
        if spec_request.hostname.is_empty() {
            spec_request.hostname = id.short().to_owned();
        }
        if request.init {
            spec_request.init = Some(init_binary(&self.root, request.init_path.as_deref())?);
        }
        let volume_mounts =
            self.attach_volumes(request, &image_config, &id, &rootfs.path, &mut guard)?;
        for v in &volume_mounts {
            spec_request.binds.push(crate::spec::BindMount {
                source: PathBuf::from(&v.source),
                destination: v.destination.clone(),
                read_only: !v.rw,
                propagation: None,
            });
        }
        let plan = spec::build_spec(
            &image_config,
            &spec_request,
            &rootfs.path,
            &dir,
            &host_facts(),
        )?;
        let mut spec = plan.spec;
        let cgroup_parent = placement
            .as_ref()
            .map_or(CGROUP_PARENT, |p| p.cgroup_parent.as_str());
        if let Some(linux) = spec.linux_mut() {
            linux.set_cgroups_path(Some(PathBuf::from(format!("{cgroup_parent}/{id}"))));
        }
        if !request.annotations.is_empty() {
            spec.set_annotations(Some(request.annotations.clone().into_iter().collect()));
        }
        let process = spec
            .process()
            .clone()
            .expect("build_spec always sets process");
        ensure_working_dir(&rootfs.path, &process.cwd().display().to_string())?;

        let files = files::EtcFiles {
            hostname: &spec_request.hostname,
            network: spec_request.network.clone(),
            extra_hosts: &request.extra_hosts,
            host_hosts: &read_host_file("/etc/hosts"),
            host_resolv: &network
                .resolv_from
                .clone()
                .unwrap_or_else(|| read_host_file("/etc/resolv.conf")),
        };
        files.write(&dir)?;
        let mut spec_doc = serde_json::to_value(&spec).map_err(EngineError::AssembleSpec)?;
        if let Some(join) = placement.as_ref().and_then(|p| p.join.as_ref()) {
            // Placeholders: the infra's pid is set at each start.
            crate::pods::apply_join_plan(
                &mut spec_doc,
                &crate::pods::join_plan(&join.namespaces, "self"),
            );
        }
        let spec_json = serde_json::to_vec_pretty(&spec_doc).map_err(EngineError::AssembleSpec)?;
        files::write_file(&dir.join("config.json"), &spec_json)?;
        // Mounted again by the monitor at each start.
        if !request.start_next {
            self.images.unmount_rootfs(id.as_str())?;
        }

        let config_section = image_config.config().clone().unwrap_or_default();
        let (entrypoint, cmd) = split_command(
            config_section.entrypoint().as_deref(),
            config_section.cmd().as_deref(),
            &request.spec,
        );
        let mut labels: BTreeMap<String, String> = config_section
            .labels()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        labels.extend(request.labels.clone());
        let config = ContainerConfig {
            image: request.image.clone(),
            args: process.args().clone().unwrap_or_default(),
            entrypoint,
            cmd,
            env: process.env().clone().unwrap_or_default(),
            working_dir: process.cwd().display().to_string(),
            user: request
                .spec
                .user
                .clone()
                .or_else(|| config_section.user().clone())
                .unwrap_or_default(),
            hostname: spec_request.hostname.clone(),
            tty: request.spec.tty,
            open_stdin: request.spec.stdin_open,
            stop_signal: request.stop_signal.clone().unwrap_or(plan.stop_signal),
            stop_timeout: request.stop_timeout,
            restart: request.restart,
            auto_remove: request.auto_remove,
            log: request.log.clone(),
            network: network.name,
            networks: network.attach,
            ports: request.ports.clone(),
            publish_all: request.publish_all,
            exposed_ports: exposed_ports(&image_config, &request.expose)?,
            dns: request.dns.clone(),
            init: request.init,
            privileged: request.spec.privileged,
            read_only: request.spec.read_only,
            mounts: mount_points(&request.spec)
                .into_iter()
                .chain(volume_mounts)
                .collect(),
            anonymous_volumes: guard.anonymous.iter().map(ToString::to_string).collect(),
            annotations: request.annotations.clone(),
            health: health_config(&image.config, &request.health),
            platform: format!("{}/{}", image_config.os(), image_config.architecture()),
            infra: false,
            pod: placement.as_ref().and_then(|p| p.join.clone()),
        };
        let new = NewContainer {
            id: id.clone(),
            // Without --name, create_with_random_name draws names from
            // this first one on, retrying on a clash.
            name: match &request.name {
                Some(name) => name.clone(),
                None => ContainerName::random(0)?,
            },
            image_id: image.id.to_string(),
            image_name: request.image.clone(),
            config: config.to_value(),
            labels,
            pod_id: placement.as_ref().map(|p| p.pod.clone()),
        };
        if request.name.is_some() {
            store.create(&new)?;
        } else {
            store.create_with_random_name(&new)?;
        }
        guard.armed = false;
        let record = store.get_by_id(&id)?;
        Ok(Container {
            record,
            config,
            dir,
        })
    }

    /// A container by id, name or unique id prefix, its state brought up
    /// to date (a running container whose monitor died is recorded as
    /// exited with an unknown code, and its leftovers removed).
    ///
    /// # Errors
    ///
    /// No such container; an ambiguous prefix; the database failed.
    pub fn container(&self, reference: &str) -> Result<Container, EngineError> {
        let record = self.containers()?.get(reference)?;
        let record = self.reconcile(record, false)?;
        self.container_from(record)
    }

    pub(crate) fn container_from(&self, record: ContainerRecord) -> Result<Container, EngineError> {
        let config = ContainerConfig::from_value(&record.config)?;
        let dir = self.containers()?.container_dir(&record.id);
        Ok(Container {
            record,
            config,
            dir,
        })
    }

    /// `ps`: all containers (`all`) or those up, newest first, states
    /// brought up to date (their `record.config` JSON is left out: it is
    /// parsed into `config`).
    ///
    /// # Errors
    ///
    /// The database failed.
    pub fn list_containers(&self, all: bool) -> Result<Vec<Container>, EngineError> {
        let filter = if all { ListFilter::All } else { ListFilter::Up };
        let store = self.containers()?;
        // Each record's JSON is parsed into its config as it is read and
        // then dropped: a list of hundreds never holds all of them.
        let mut read = Vec::new();
        store.list_with(filter, |mut record| {
            let config = ContainerConfig::from_value(&record.config)?;
            record.config = serde_json::Value::Null;
            read.push((record, config));
            Ok(())
        })?;
        let mut out = Vec::with_capacity(read.len());
        for (record, config) in read {
            // The config does not change on a reconcile: only the state.
            let mut record = if record.state.is_up() {
                self.reconcile(record, false)?
            } else {
                record
            };
            if !all && !record.state.is_up() {
                continue;
            }
            record.config = serde_json::Value::Null;
            let dir = store.container_dir(&record.id);
            out.push(Container {
                record,
                config,
                dir,
            });
        }
        Ok(out)
    }

    /// Brings a record whose monitor died up to date: kills what is left of
    /// the container, removes its runtime state and unmounts its rootfs,
    /// and records it exited with an unknown code. `locked`: the caller
    /// holds the container's lock; otherwise it is taken if free (if busy,
    /// another command is acting on the container and the record is
    /// returned as is).
    pub(crate) fn reconcile(
        &self,
        record: ContainerRecord,
        locked: bool,
    ) -> Result<ContainerRecord, EngineError> {
        if !record.state.is_up() {
            return Ok(record);
        }
        let store = self.containers()?;
        let dir = store.container_dir(&record.id);
        if monitor_alive(&dir)? {
            return Ok(record);
        }
        let _lock = if locked {
            None
        } else {
            match store.try_lock(&record.id)? {
                Some(l) => Some(l),
                None => return Ok(record),
            }
        };
        // Re-read under the lock: the monitor may just have recorded the exit.
        let record = store.get_by_id(&record.id)?;
        if !record.state.is_up() || monitor_alive(&dir)? {
            return Ok(record);
        }
        tracing::info!(container = %record.id, "the container's monitor is gone: recording an unknown exit");
        self.release_runtime(&record.id);
        let attributes = BTreeMap::from([("exitCode".to_owned(), "-1".to_owned())]);
        store.transition_recorded(
            &record.id,
            Transition::Exit { exit_code: None },
            "die",
            &attributes,
        )
    }

    /// Checkpoints both databases' WALs (best effort): for a process whose
    /// answer is given, so that no command's commit has to.
    pub(crate) fn checkpoint(&self) {
        if let Err(e) = self.images.checkpoint() {
            tracing::warn!(error = %e, "checkpoint the image database");
        }
        if let Some(store) = self.containers.get() {
            if let Err(e) = store.checkpoint() {
                tracing::warn!(error = %e, "checkpoint the container database");
            }
        }
    }

    /// Kills and deletes the container's runtime instance (if any) and
    /// unmounts its rootfs. Best effort: failures are logged.
    pub(crate) fn release_runtime(&self, id: &ContainerId) {
        let runtime = self.runtime();
        let rid = Self::runtime_id(id);
        // Forced: kills what still runs in it first. Also what a monitor
        // killed while it created the container left: no state, maybe a
        // cgroup.
        match runtime.delete(&rid, true) {
            Ok(()) => {}
            Err(e) if e.kind() == wharf_runtime::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(container = %id, error = %e, "delete the runtime container"),
        }
        self.network_down(id);
        if let Err(e) = self.images.unmount_rootfs(id.as_str()) {
            tracing::warn!(container = %id, error = %e, "unmount the rootfs");
        }
    }

    /// `rm`: removes a container that is not running (with `force`, kills
    /// it first), its rootfs, directory and record.
    ///
    /// # Errors
    ///
    /// No such container; it is running or paused without `force`
    /// ([`EngineError::ContainerRunning`]); a host operation failed (the
    /// record is then left `dead`, for another `rm`).
    pub fn remove_container(
        &self,
        reference: &str,
        force: bool,
        volumes: bool,
    ) -> Result<ContainerRecord, EngineError> {
        let store = self.containers()?;
        let record = store.get(reference)?;
        if let Some(pod_id) = &record.pod_id {
            let infra = ContainerConfig::from_value(&record.config).is_ok_and(|c| c.infra);
            if infra {
                if let Ok(pod) = store.get_pod(pod_id.as_str()) {
                    let members = store.pod_members(pod_id)?.len().saturating_sub(1);
                    return Err(EngineError::InfraContainer {
                        id: record.id.short().to_owned(),
                        pod: pod.name.to_string(),
                        members,
                    });
                }
            }
        }
        self.remove_container_unchecked(reference, force, volumes)
    }

    /// `rm` without the infra check (`pod rm` removes its infra).
    pub(crate) fn remove_container_unchecked(
        &self,
        reference: &str,
        force: bool,
        volumes: bool,
    ) -> Result<ContainerRecord, EngineError> {
        let store = self.containers()?;
        let record = store.get(reference)?;
        let _lock = store.lock(&record.id)?;
        let record = self.reconcile(store.get_by_id(&record.id)?, true)?;
        if record.state.is_up() {
            if !force {
                return Err(EngineError::ContainerRunning {
                    id: record.id.short().to_owned(),
                    state: record.state,
                });
            }
            self.kill_and_wait(&record)?;
        }
        let record = store.get_by_id(&record.id)?;
        self.destroy(&record, volumes)?;
        Ok(record)
    }

    /// Removes a stopped container's leftovers and record (the caller holds
    /// its lock); with `volumes`, also its anonymous volumes (`rm -v`,
    /// `--rm`).
    pub(crate) fn destroy(
        &self,
        record: &ContainerRecord,
        volumes: bool,
    ) -> Result<(), EngineError> {
        self.destroy_deferred(record, volumes).map(drop)
    }

    /// [`Engine::destroy`], except that the container's directory and
    /// writable layer are only moved into trash directories (a rename
    /// each): their files are deleted when the returned [`Leftovers`] is
    /// dropped. The monitor of a `--rm` container drops it after it has
    /// told its clients, who wait for the removal (`docker run --rm`
    /// does), so they do not wait for the disk. Everything observable is
    /// done when this returns: the record, the name, the mounts, the
    /// runtime container and the volumes' users are gone.
    pub(crate) fn destroy_deferred(
        &self,
        record: &ContainerRecord,
        volumes: bool,
    ) -> Result<Leftovers, EngineError> {
        let store = self.containers()?;
        store.transition(&record.id, Transition::Remove)?;
        self.release_runtime(&record.id);
        let result = match self.images.remove_rootfs_deferred(record.id.as_str()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == wharf_image::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(EngineError::from(e)),
        };
        if let Err(e) = result {
            let _ = store.transition(&record.id, Transition::Die);
            return Err(e);
        }
        let leftovers = Leftovers {
            images: self.images.clone(),
            trash: self.root.join(TRASH),
        };
        let dir = store.container_dir(&record.id);
        let moved = fs_err::create_dir_all(&leftovers.trash)
            .and_then(|()| fs_err::rename(&dir, leftovers.trash.join(record.id.as_str())));
        match moved {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                let _ = store.transition(&record.id, Transition::Die);
                return Err(io_err("move to the trash", &dir)(e));
            }
        }
        let volume_store = self.volumes()?;
        volume_store.release(&record.id)?;
        if volumes {
            let config = ContainerConfig::from_value(&record.config)?;
            for name in &config.anonymous_volumes {
                let Ok(name) = VolumeName::parse(name) else {
                    continue;
                };
                match volume_store.remove(&name, true) {
                    Ok(()) => {}
                    // Another container uses it too: it stays (Docker).
                    Err(EngineError::VolumeInUse { .. }) => {}
                    Err(e) => {
                        tracing::warn!(volume = %name, error = %e, "remove an anonymous volume")
                    }
                }
            }
        }
        store.remove(&record.id)?;
        Ok(leftovers)
    }

    /// `rename`.
    ///
    /// # Errors
    ///
    /// No such container; the new name is taken.
    pub fn rename_container(
        &self,
        reference: &str,
        name: &ContainerName,
    ) -> Result<(), EngineError> {
        let store = self.containers()?;
        let record = store.get(reference)?;
        let _lock = store.lock(&record.id)?;
        store.rename(&record.id, name)?;
        let mut attributes = BTreeMap::new();
        attributes.insert("oldName".to_owned(), record.name.to_string());
        if let Err(e) = store.append_event(&record.id, name, "rename", &attributes) {
            tracing::warn!(container = %record.id, error = %e, "record the rename event");
        }
        Ok(())
    }

    /// The event journal from `since` (and after `after_seq`).
    ///
    /// # Errors
    ///
    /// The database failed.
    pub fn container_events(
        &self,
        since: Option<SystemTime>,
        after_seq: i64,
    ) -> Result<Vec<crate::state::Event>, EngineError> {
        self.containers()?.events(since, after_seq)
    }
}

/// Whether the container's monitor lives (holds `monitor.lock`).
pub(crate) fn monitor_alive(dir: &Path) -> Result<bool, EngineError> {
    let Some((file, path)) = open_monitor_lock(dir)? else {
        return Ok(false);
    };
    let holder = wharf_sys::plock::holder(&file).map_err(io_err("test the lock", &path))?;
    Ok(holder.is_some())
}

/// The container's `monitor.lock` opened for testing or taking the lock;
/// `None` when no monitor ever ran.
pub(crate) fn open_monitor_lock(
    dir: &Path,
) -> Result<Option<(fs_err::File, PathBuf)>, EngineError> {
    let path = dir.join("monitor.lock");
    match fs_err::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
    {
        Ok(f) => Ok(Some((f, path))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("open", &path)(e)),
    }
}

/// Docker's `Config.Entrypoint` and `Config.Cmd` as `inspect` shows them.
fn split_command(
    image_entrypoint: Option<&[String]>,
    image_cmd: Option<&[String]>,
    request: &ContainerRequest,
) -> (Vec<String>, Vec<String>) {
    match &request.entrypoint {
        Some(e) => (e.clone(), request.cmd.clone()),
        None if request.cmd.is_empty() => (
            image_entrypoint.unwrap_or_default().to_vec(),
            image_cmd.unwrap_or_default().to_vec(),
        ),
        None => (
            image_entrypoint.unwrap_or_default().to_vec(),
            request.cmd.clone(),
        ),
    }
}

fn mount_points(request: &ContainerRequest) -> Vec<MountPoint> {
    let mut out: Vec<MountPoint> = request
        .binds
        .iter()
        .map(|b| MountPoint {
            kind: "bind".into(),
            name: None,
            source: b.source.display().to_string(),
            destination: b.destination.clone(),
            rw: !b.read_only,
            propagation: b.propagation.clone().unwrap_or_else(|| "rprivate".into()),
        })
        .collect();
    out.extend(request.tmpfs.iter().map(|t| MountPoint {
        kind: "tmpfs".into(),
        name: None,
        source: String::new(),
        destination: t.destination.clone(),
        rw: !t.options.iter().any(|o| o == "ro"),
        propagation: String::new(),
    }));
    out
}

/// Docker creates a missing WorkingDir (through the root: the image is
/// hostile, a symlink must not lead out).
fn ensure_working_dir(rootfs: &Path, cwd: &str) -> Result<(), EngineError> {
    if cwd == "/" {
        return Ok(());
    }
    let root = wharf_sys::Root::open(rootfs).map_err(io_err("open rootfs", rootfs))?;
    root.mkdir_all(Path::new(cwd), 0o755)
        .map_err(|source| EngineError::Io {
            operation: "create the working directory",
            path: PathBuf::from(cwd),
            source,
        })?;
    Ok(())
}

/// `--init`'s binary: `--init-path`, else `wharf-init` beside the running
/// binary (as scripts/install.sh installs it), else the running binary
/// itself (its `__init` entry). It runs inside images without a C library,
/// so it must be statically linked. It is copied under the engine root and
/// the copy bound read-only as /sbin/wharf-init: never the host's binary
/// itself, so a privileged container that remounts it writable changes
/// only the copy. One copy per binary version, written once (temp+rename).
pub(crate) fn init_binary(root: &Path, requested: Option<&Path>) -> Result<PathBuf, EngineError> {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let exe =
        fs_err::read_link("/proc/self/exe").unwrap_or_else(|_| PathBuf::from("/proc/self/exe"));
    let beside = exe.with_file_name("wharf-init");
    let source = match requested {
        Some(p) => p.to_path_buf(),
        None if beside.is_file() => beside,
        None => exe,
    };
    if !crate::elf::is_static(&source).map_err(io_err("read the init binary", &source))? {
        return Err(EngineError::invalid(format!(
            "--init needs a statically linked init, and {} is dynamically linked: install Wharf with scripts/install.sh (which installs a static wharf-init) or give --init-path",
            source.display()
        )));
    }
    let meta = fs_err::metadata(&source).map_err(io_err("stat", &source))?;
    let dir = root.join("init");
    fs_err::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
    let dest = dir.join(format!(
        "wharf-init-{:x}-{:x}-{:x}-{:x}",
        meta.dev(),
        meta.ino(),
        meta.size(),
        meta.mtime()
    ));
    if dest.exists() {
        return Ok(dest);
    }
    let tmp = dir.join(format!(".tmp-{}", std::process::id()));
    fs_err::copy(&source, &tmp).map_err(io_err("copy the init binary to", &tmp))?;
    fs_err::set_permissions(&tmp, std::fs::Permissions::from_mode(0o555))
        .map_err(io_err("chmod", &tmp))?;
    fs_err::rename(&tmp, &dest).map_err(io_err("rename into place", &dest))?;
    Ok(dest)
}

impl Engine {
    /// Whether `reference` names an image in the store.
    ///
    /// # Errors
    ///
    /// The store failed (a missing image is `Ok(false)`).
    pub fn has_image(&self, reference: &str) -> Result<bool, EngineError> {
        match self.images.resolve_image_id(reference) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == wharf_image::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The id of the image `reference` names.
    ///
    /// # Errors
    ///
    /// No such image.
    pub fn image_id_of(&self, reference: &str) -> Result<String, EngineError> {
        Ok(self.images.resolve_image_id(reference)?)
    }

    /// Where the container's rootfs is mounted while it runs.
    pub fn container_rootfs_path(&self, c: &Container) -> PathBuf {
        if c.config.infra {
            return c.dir.join("rootfs");
        }
        self.images
            .rootfs(c.record.id.as_str())
            .map(|r| r.path)
            .unwrap_or_default()
    }

    /// `(writable layer bytes, image bytes + writable layer)` (`ps -s`).
    ///
    /// # Errors
    ///
    /// The image or rootfs is gone.
    pub fn container_size(&self, c: &Container) -> Result<(u64, u64), EngineError> {
        let rootfs = self.images.rootfs(c.record.id.as_str())?;
        let rw = match &rootfs.upper {
            Some(upper) => tree_size(upper),
            None => tree_size(&rootfs.path),
        };
        let image = self
            .images
            .resolve(&c.record.image_id)
            .map(|i| i.size)
            .unwrap_or(0);
        Ok((rw, image + rw))
    }

    /// `logs`: reads the container's log through its driver, following
    /// while `is_running` says it runs.
    ///
    /// # Errors
    ///
    /// The driver keeps nothing readable; the file cannot be read; `sink`
    /// failed.
    pub fn read_container_logs(
        &self,
        c: &Container,
        options: &crate::logs::ReadOptions,
        is_running: impl FnMut() -> bool,
        sink: impl FnMut(crate::logs::LogLine) -> std::io::Result<()>,
    ) -> Result<(), EngineError> {
        crate::logs::read_logs(
            &c.config.log,
            &c.dir.join("container.log"),
            options,
            is_running,
            sink,
        )
    }

    /// Pids (host pid namespace) of the container's processes (`top`).
    ///
    /// # Errors
    ///
    /// No such container; it is not running.
    pub fn container_pids(&self, reference: &str) -> Result<Vec<i32>, EngineError> {
        let c = self.container(reference)?;
        if !c.record.state.is_up() {
            return Err(EngineError::NotRunning {
                id: c.record.id.short().to_owned(),
                reason: "container is not running".into(),
            });
        }
        self.runtime()
            .pids(&Self::runtime_id(&c.record.id))
            .map_err(|e| EngineError::ContainerRuntime {
                operation: "list the processes of",
                id: c.record.id.short().to_owned(),
                source: Box::new(e),
            })
    }
}

/// Bytes of the regular files under `dir` (not following symlinks).
fn tree_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs_err::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(meta) = e.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                stack.push(e.path());
            } else if meta.is_file() {
                total += meta.len();
            }
        }
    }
    total
}

/// Where removed containers' directories wait to be deleted, in the root.
const TRASH: &str = "trash";

/// What [`Engine::destroy_deferred`] moved aside; deleted on drop, with
/// anything a process that died before deleting its own left there.
#[derive(Debug)]
pub(crate) struct Leftovers {
    images: wharf_image::Store,
    trash: PathBuf,
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        if let Ok(entries) = fs_err::read_dir(&self.trash) {
            for entry in entries.flatten() {
                let path = entry.path();
                match fs_err::remove_dir_all(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => tracing::warn!(error = %e, "empty the container trash"),
                }
            }
        }
        if let Err(e) = self.images.empty_trash() {
            tracing::warn!(error = %e, "empty the rootfs trash");
        }
    }
}
