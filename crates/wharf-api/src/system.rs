//! The engine as Docker's API shows it: `GET /info` (`docker info`) and
//! `GET /version` (the `Server` half of `docker version`).

use std::collections::BTreeMap;

use serde::Serialize;
use wharf_engine::system::{SystemInfo, RUNTIME_NAME};

/// The Docker Engine API version Wharf speaks.
pub const API_VERSION: &str = "1.43";

/// The oldest API version Docker 24 still accepts.
pub const MIN_API_VERSION: &str = "1.12";

/// Docker's `GOARCH` for this build's architecture (`amd64`, `arm64`).
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "arm" => "arm",
        other => other,
    }
}

/// Plugins `info` lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Plugins {
    /// Volume drivers.
    pub volume: Vec<String>,
    /// Network drivers.
    pub network: Vec<String>,
    /// Authorization plugins: `null`, as Docker without any.
    pub authorization: Option<Vec<String>>,
    /// Log drivers.
    pub log: Vec<String>,
}

/// A runtime of `info`'s `Runtimes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuntimeEntry {
    /// The runtime's binary.
    pub path: String,
}

/// `GET /info` (the fields Wharf has; Docker's names and casing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Info {
    /// The host's name (Docker's daemon ID is a UUID; Wharf has no daemon).
    #[serde(rename = "ID")]
    pub id: String,
    /// Containers in any state.
    pub containers: usize,
    /// Running ones.
    pub containers_running: usize,
    /// Paused ones.
    pub containers_paused: usize,
    /// Stopped ones.
    pub containers_stopped: usize,
    /// Images.
    pub images: usize,
    /// The storage driver.
    pub driver: String,
    /// Driver facts as `[name, value]` pairs.
    pub driver_status: Vec<[String; 2]>,
    /// Plugins.
    pub plugins: Plugins,
    /// Always true: memory limits are cgroup limits.
    pub memory_limit: bool,
    /// Always true.
    pub swap_limit: bool,
    /// Always true.
    pub cpu_cfs_period: bool,
    /// Always true.
    pub cpu_cfs_quota: bool,
    /// Always true.
    #[serde(rename = "CPUShares")]
    pub cpu_shares: bool,
    /// Always true.
    #[serde(rename = "CPUSet")]
    pub cpu_set: bool,
    /// Always true.
    pub pids_limit: bool,
    /// Always true.
    #[serde(rename = "IPv4Forwarding")]
    pub ipv4_forwarding: bool,
    /// Always false.
    pub debug: bool,
    /// `cgroupfs`: Wharf writes cgroupfs itself.
    pub cgroup_driver: String,
    /// `1` or `2`.
    pub cgroup_version: String,
    /// `uname -r`.
    pub kernel_version: String,
    /// `PRETTY_NAME` of os-release.
    pub operating_system: String,
    /// `VERSION_ID` of os-release.
    #[serde(rename = "OSVersion")]
    pub os_version: String,
    /// `linux`.
    #[serde(rename = "OSType")]
    pub os_type: String,
    /// `uname -m`.
    pub architecture: String,
    /// Online CPUs.
    #[serde(rename = "NCPU")]
    pub ncpu: u32,
    /// Bytes of memory.
    pub mem_total: u64,
    /// The store and state root.
    pub docker_root_dir: String,
    /// The host's name.
    pub name: String,
    /// Engine labels: none.
    pub labels: Vec<String>,
    /// Always false.
    pub experimental_build: bool,
    /// Wharf's version.
    pub server_version: String,
    /// The runtimes: Wharf's own.
    pub runtimes: BTreeMap<String, RuntimeEntry>,
    /// `wharf`.
    pub default_runtime: String,
    /// `json-file`.
    pub logging_driver: String,
    /// `name=seccomp,profile=default` (and `name=cgroupns` on cgroup v2).
    pub security_options: Vec<String>,
    /// Always false.
    pub live_restore_enabled: bool,
    /// `docker-init`'s counterpart: `wharf-init`.
    pub init_binary: String,
}

/// Renders `info` as Docker's `GET /info`. `version` is Wharf's.
pub fn info(info: &SystemInfo, version: &str) -> Info {
    let host = &info.host;
    let mut security_options = vec!["name=seccomp,profile=default".to_owned()];
    if host.cgroup_version == 2 {
        security_options.push("name=cgroupns".to_owned());
    }
    let strings = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect();
    Info {
        id: host.hostname.clone(),
        containers: info.containers,
        containers_running: info.running,
        containers_paused: info.paused,
        containers_stopped: info.stopped,
        images: info.images,
        driver: info.storage_driver.clone(),
        driver_status: Vec::new(),
        plugins: Plugins {
            volume: strings(&["local"]),
            network: strings(&["host", "null"]),
            authorization: None,
            log: strings(&["journald", "json-file"]),
        },
        memory_limit: true,
        swap_limit: true,
        cpu_cfs_period: true,
        cpu_cfs_quota: true,
        cpu_shares: true,
        cpu_set: true,
        pids_limit: true,
        ipv4_forwarding: true,
        debug: false,
        cgroup_driver: "cgroupfs".to_owned(),
        cgroup_version: host.cgroup_version.to_string(),
        kernel_version: host.kernel_version.clone(),
        operating_system: host.operating_system.clone(),
        os_version: host.os_version.clone(),
        os_type: "linux".to_owned(),
        architecture: host.architecture.clone(),
        ncpu: host.cpus,
        mem_total: host.total_memory,
        docker_root_dir: info.root.display().to_string(),
        name: host.hostname.clone(),
        labels: Vec::new(),
        experimental_build: false,
        server_version: version.to_owned(),
        runtimes: BTreeMap::from([(
            RUNTIME_NAME.to_owned(),
            RuntimeEntry {
                path: RUNTIME_NAME.to_owned(),
            },
        )]),
        default_runtime: RUNTIME_NAME.to_owned(),
        logging_driver: "json-file".to_owned(),
        security_options,
        live_restore_enabled: false,
        init_binary: "wharf-init".to_owned(),
    }
}

/// A component of `GET /version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Component {
    /// `Engine`, or the runtime's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Other facts (`GitCommit`, `Spec`).
    pub details: BTreeMap<String, String>,
}

/// The platform's name in `GET /version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PlatformName {
    /// `Wharf Engine`.
    pub name: String,
}

/// `GET /version`. Docker's `GoVersion` is Wharf's `RustVersion`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Version {
    /// The platform.
    pub platform: PlatformName,
    /// The engine and the OCI runtime.
    pub components: Vec<Component>,
    /// Wharf's version.
    pub version: String,
    /// [`API_VERSION`].
    pub api_version: String,
    /// [`MIN_API_VERSION`].
    #[serde(rename = "MinAPIVersion")]
    pub min_api_version: String,
    /// The commit built, when the build knew it.
    pub git_commit: String,
    /// `rustc --version` of the build, when known.
    pub rust_version: String,
    /// `linux`.
    pub os: String,
    /// [`go_arch`].
    pub arch: String,
    /// `uname -r`.
    pub kernel_version: String,
}

/// The `Client` half of `docker version` (the CLI's own facts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ClientVersion {
    /// `Wharf`.
    pub platform: PlatformName,
    /// Wharf's version.
    pub version: String,
    /// [`API_VERSION`].
    pub api_version: String,
    /// [`API_VERSION`].
    #[serde(rename = "DefaultAPIVersion")]
    pub default_api_version: String,
    /// The commit built, when the build knew it.
    pub git_commit: String,
    /// `rustc --version` of the build, when known.
    pub rust_version: String,
    /// `linux`.
    pub os: String,
    /// [`go_arch`].
    pub arch: String,
    /// `default`: Wharf has no contexts.
    pub context: String,
}

/// Renders the client's half of `docker version`.
pub fn client_version(build: &BuildFacts) -> ClientVersion {
    ClientVersion {
        platform: PlatformName {
            name: "Wharf".to_owned(),
        },
        version: build.version.clone(),
        api_version: API_VERSION.to_owned(),
        default_api_version: API_VERSION.to_owned(),
        git_commit: build.git_commit.clone(),
        rust_version: build.rust_version.clone(),
        os: "linux".to_owned(),
        arch: go_arch().to_owned(),
        context: "default".to_owned(),
    }
}

/// What the build knows about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildFacts {
    /// `CARGO_PKG_VERSION`.
    pub version: String,
    /// The commit, or empty.
    pub git_commit: String,
    /// The compiler's version, or empty.
    pub rust_version: String,
}

/// Renders `GET /version`; `oci_version` is the runtime's OCI spec version.
pub fn version(build: &BuildFacts, kernel_version: &str, oci_version: &str) -> Version {
    let mut engine_details = BTreeMap::new();
    engine_details.insert("ApiVersion".to_owned(), API_VERSION.to_owned());
    engine_details.insert("MinAPIVersion".to_owned(), MIN_API_VERSION.to_owned());
    engine_details.insert("GitCommit".to_owned(), build.git_commit.clone());
    engine_details.insert("Os".to_owned(), "linux".to_owned());
    engine_details.insert("Arch".to_owned(), go_arch().to_owned());
    engine_details.insert("KernelVersion".to_owned(), kernel_version.to_owned());
    engine_details.insert("Experimental".to_owned(), "false".to_owned());
    let mut runtime_details = BTreeMap::new();
    if !build.git_commit.is_empty() {
        runtime_details.insert("GitCommit".to_owned(), build.git_commit.clone());
    }
    runtime_details.insert("Spec".to_owned(), oci_version.to_owned());
    Version {
        platform: PlatformName {
            name: "Wharf Engine".to_owned(),
        },
        components: vec![
            Component {
                name: "Engine".to_owned(),
                version: build.version.clone(),
                details: engine_details,
            },
            Component {
                name: RUNTIME_NAME.to_owned(),
                version: build.version.clone(),
                details: runtime_details,
            },
        ],
        version: build.version.clone(),
        api_version: API_VERSION.to_owned(),
        min_api_version: MIN_API_VERSION.to_owned(),
        git_commit: build.git_commit.clone(),
        rust_version: build.rust_version.clone(),
        os: "linux".to_owned(),
        arch: go_arch().to_owned(),
        kernel_version: kernel_version.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_engine::system::HostInfo;

    #[test]
    fn info_has_dockers_field_names() {
        let sys = SystemInfo {
            containers: 3,
            running: 1,
            paused: 1,
            stopped: 1,
            images: 2,
            storage_driver: "overlay".into(),
            root: "/var/lib/wharf".into(),
            host: HostInfo {
                kernel_version: "6.1.0".into(),
                operating_system: "Debian GNU/Linux 12 (bookworm)".into(),
                os_version: "12".into(),
                architecture: "x86_64".into(),
                cpus: 2,
                total_memory: 4 << 30,
                cgroup_version: 1,
                hostname: "box".into(),
            },
        };
        let v = serde_json::to_value(info(&sys, "0.1.0")).unwrap();
        assert_eq!(v["Containers"], 3);
        assert_eq!(v["ContainersRunning"], 1);
        assert_eq!(v["ContainersPaused"], 1);
        assert_eq!(v["ContainersStopped"], 1);
        assert_eq!(v["Images"], 2);
        assert_eq!(v["Driver"], "overlay");
        assert_eq!(v["NCPU"], 2);
        assert_eq!(v["MemTotal"], 4u64 << 30);
        assert_eq!(v["OSType"], "linux");
        assert_eq!(v["CgroupVersion"], "1");
        assert_eq!(v["CgroupDriver"], "cgroupfs");
        assert_eq!(v["DockerRootDir"], "/var/lib/wharf");
        assert_eq!(v["Runtimes"]["wharf"]["path"], "wharf");
        assert_eq!(v["DefaultRuntime"], "wharf");
        assert_eq!(
            v["SecurityOptions"],
            serde_json::json!(["name=seccomp,profile=default"])
        );
        assert_eq!(v["Plugins"]["Authorization"], serde_json::Value::Null);
    }

    #[test]
    fn version_lists_engine_and_runtime() {
        let build = BuildFacts {
            version: "0.1.0".into(),
            git_commit: String::new(),
            rust_version: "1.86.0".into(),
        };
        let v = serde_json::to_value(version(&build, "6.1.0", "1.2.0")).unwrap();
        assert_eq!(v["Version"], "0.1.0");
        assert_eq!(v["ApiVersion"], "1.43");
        assert_eq!(v["MinAPIVersion"], "1.12");
        assert_eq!(v["Os"], "linux");
        assert_eq!(v["Components"][1]["Name"], "wharf");
        assert_eq!(
            v["Components"][1]["Details"],
            serde_json::json!({"Spec": "1.2.0"})
        );
    }
}
