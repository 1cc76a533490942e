//! A pod's infra container: Wharf's own pause process, with no image.
//!
//! Its rootfs is `<container dir>/rootfs`, a directory holding only the
//! mount points the runtime needs (`proc`, `sys`, `dev`, `etc/hosts`, …)
//! and an empty `sbin/wharf-init` on which the static init (the copy
//! `--init` uses, see `containers::init_binary`) is bind-mounted read-only;
//! the root is read-only too. It runs `wharf-init --pause`, which sleeps,
//! reaps what the shared PID namespace orphans, and exits 0 on SIGTERM. Its
//! config carries the pod's networks and ports, so the monitor connects it
//! as any container. The image store knows nothing of it: the commands
//! that work on an image rootfs refuse it.

use std::path::{Path, PathBuf};

use super::{PodConfig, PodId, PodName};
use crate::containers::{ContainerConfig, RestartPolicy};
use crate::networks::PlannedNetwork;
use crate::spec::{self, BindMount, ContainerRequest, INIT_PATH};
use crate::state::{ContainerId, ContainerName, NewContainer};
use crate::{Engine, EngineError};

/// The mount points of an infra rootfs: directories, then files.
const ROOTFS_DIRS: [&str; 6] = ["proc", "sys", "dev", "etc", "sbin", "tmp"];
const ROOTFS_FILES: [&str; 4] = [
    "etc/hosts",
    "etc/hostname",
    "etc/resolv.conf",
    "sbin/wharf-init",
];

/// The infra container's command.
pub(crate) fn pause_command() -> Vec<String> {
    vec![INIT_PATH.to_owned(), "--pause".to_owned()]
}

/// Removes a failed `pod create`'s infra directory unless committed.
pub(super) struct InfraGuard {
    dir: PathBuf,
    armed: bool,
}

impl InfraGuard {
    pub(super) fn commit(mut self) {
        self.armed = false;
    }
}

impl Drop for InfraGuard {
    fn drop(&mut self) {
        if self.armed {
            if let Err(e) = fs_err::remove_dir_all(&self.dir) {
                tracing::warn!(path = %self.dir.display(), error = %e, "roll back an infra container's directory");
            }
        }
    }
}

fn io(operation: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> EngineError {
    let path = path.to_path_buf();
    move |source| EngineError::Io {
        operation,
        path,
        source,
    }
}

/// Makes the mount points of an infra rootfs under `rootfs` (a new,
/// private directory: plain paths are safe here).
fn make_rootfs(rootfs: &Path) -> Result<(), EngineError> {
    use std::os::unix::fs::PermissionsExt as _;
    for d in std::iter::once("").chain(ROOTFS_DIRS) {
        let path = rootfs.join(d);
        fs_err::create_dir_all(&path).map_err(io("create directory", &path))?;
        fs_err::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .map_err(io("chmod", &path))?;
    }
    for f in ROOTFS_FILES {
        let path = rootfs.join(f);
        fs_err::File::create(&path).map_err(io("create", &path))?;
    }
    Ok(())
}

/// What `pod create` asks of the infra container.
pub(super) struct InfraRequest<'a> {
    pub(super) pod: &'a PodId,
    pub(super) pod_name: &'a PodName,
    pub(super) config: &'a PodConfig,
    pub(super) network: PlannedNetwork,
    pub(super) name: Option<ContainerName>,
    pub(super) init_path: Option<&'a Path>,
}

impl Engine {
    /// Writes the infra container's directory, rootfs, runtime spec and
    /// files; the record to insert with the pod, and the guard that removes
    /// the directory unless the pod is recorded.
    pub(super) fn create_infra(
        &self,
        request: InfraRequest<'_>,
    ) -> Result<(NewContainer, ContainerConfig, InfraGuard), EngineError> {
        let store = self.containers()?;
        let id = ContainerId::random()?;
        let dir = store.container_dir(&id);
        fs_err::create_dir_all(&dir).map_err(io("create directory", &dir))?;
        let guard = InfraGuard {
            dir: dir.clone(),
            armed: true,
        };
        let rootfs = dir.join("rootfs");
        make_rootfs(&rootfs)?;
        let init = crate::containers::init_binary(self.root(), request.init_path)?;
        let config = request.config;
        let spec_request = ContainerRequest {
            entrypoint: Some(pause_command()),
            hostname: config.hostname.clone(),
            read_only: true,
            binds: vec![BindMount {
                source: init,
                destination: INIT_PATH.to_owned(),
                read_only: true,
                propagation: None,
            }],
            network: request.network.mode.clone(),
            ..ContainerRequest::default()
        };
        let image_config = oci_spec::image::ImageConfiguration::default();
        let plan = spec::build_spec(
            &image_config,
            &spec_request,
            &rootfs,
            &dir,
            &crate::containers::host_facts(),
        )?;
        let mut spec = plan.spec;
        if let Some(linux) = spec.linux_mut() {
            linux.set_cgroups_path(Some(PathBuf::from(format!(
                "{}/{id}",
                super::cgroup_parent(request.pod)
            ))));
        }
        let process = spec
            .process()
            .clone()
            .expect("build_spec always sets process");
        crate::containers::EtcFiles {
            hostname: &config.hostname,
            network: request.network.mode.clone(),
            extra_hosts: &[],
            host_hosts: &crate::containers::read_host_file("/etc/hosts"),
            host_resolv: &crate::containers::read_host_file("/etc/resolv.conf"),
        }
        .write(&dir)?;
        let spec_json = serde_json::to_vec_pretty(&spec).map_err(EngineError::AssembleSpec)?;
        crate::containers::write_file(&dir.join("config.json"), &spec_json)?;

        let mut networks = request.network.attach.clone();
        for attach in &mut networks {
            // Other containers on a user network reach the pod by its name.
            if !self.resolve_network(&attach.network)?.is_default() {
                attach.aliases.push(request.pod_name.to_string());
            }
        }
        let container_config = ContainerConfig {
            image: String::new(),
            args: process.args().clone().unwrap_or_default(),
            entrypoint: pause_command(),
            cmd: Vec::new(),
            env: process.env().clone().unwrap_or_default(),
            working_dir: "/".to_owned(),
            user: String::new(),
            hostname: config.hostname.clone(),
            tty: false,
            open_stdin: false,
            stop_signal: "SIGTERM".to_owned(),
            stop_timeout: None,
            restart: RestartPolicy::No,
            auto_remove: false,
            log: crate::logs::LogConfig::default(),
            network: request.network.name.clone(),
            networks,
            ports: config.ports.clone(),
            publish_all: false,
            exposed_ports: Vec::new(),
            dns: crate::networks::DnsSettings::default(),
            init: false,
            privileged: false,
            read_only: true,
            mounts: Vec::new(),
            anonymous_volumes: Vec::new(),
            annotations: Default::default(),
            health: None,
            platform: format!("linux/{}", std::env::consts::ARCH),
            infra: true,
            pod: None,
        };
        let name = match request.name {
            Some(n) => n,
            None => ContainerName::parse(&format!("{}-infra", request.pod.short()))?,
        };
        let new = NewContainer {
            id,
            name,
            image_id: String::new(),
            image_name: String::new(),
            config: container_config.to_value(),
            labels: Default::default(),
            pod_id: Some(request.pod.clone()),
        };
        Ok((new, container_config, guard))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_infra_rootfs_holds_only_mount_points() {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        make_rootfs(&rootfs).unwrap();
        let mut found = Vec::new();
        for d in ROOTFS_DIRS {
            assert!(rootfs.join(d).is_dir(), "{d}");
            for e in fs_err::read_dir(rootfs.join(d)).unwrap() {
                let e = e.unwrap();
                assert_eq!(e.metadata().unwrap().len(), 0);
                found.push(format!("{d}/{}", e.file_name().to_string_lossy()));
            }
        }
        found.sort();
        let mut files = ROOTFS_FILES.to_vec();
        files.sort();
        assert_eq!(found, files);
        assert_eq!(pause_command(), vec!["/sbin/wharf-init", "--pause"]);
    }
}
