//! OCI bundles for runtime tests: a runc-`spec`-like config over the busybox rootfs.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use oci_spec::runtime::{
    Capabilities, Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxIdMappingBuilder,
    LinuxNamespace, LinuxNamespaceBuilder, LinuxNamespaceType, Mount, MountBuilder,
    PosixRlimitBuilder, PosixRlimitType, Process, ProcessBuilder, Root, RootBuilder, Spec,
    UserBuilder,
};

/// The `PATH` of the default process, as `runc spec` writes it.
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `maskedPaths` of `runc spec`.
const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
];

/// `readonlyPaths` of `runc spec`.
const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Builds an OCI bundle (`config.json` plus a copy of the busybox rootfs).
///
/// Starts from a config like `runc spec`'s: `sh` as uid 0 with PATH and TERM, no
/// terminal, the capabilities CAP_AUDIT_WRITE, CAP_KILL and CAP_NET_BIND_SERVICE,
/// RLIMIT_NOFILE 1024, no_new_privileges, a read-only `rootfs`, hostname
/// `wharf-test`, the proc/dev/devpts/shm/mqueue/sysfs mounts, pid, network, ipc, uts
/// and mount namespaces, and runc's masked and read-only paths. Unlike runc it has no
/// cgroup namespace, no cgroup mount and no `linux.resources`.
#[derive(Debug, Clone)]
pub struct BundleBuilder {
    spec: Spec,
}

impl Default for BundleBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl BundleBuilder {
    /// A builder holding the default config described on [`BundleBuilder`].
    pub fn new() -> Self {
        Self {
            spec: default_spec(),
        }
    }

    /// Sets the process's arguments (`args[0]` is looked up in the container's PATH).
    #[must_use]
    pub fn args(mut self, args: &[&str]) -> Self {
        self.process()
            .set_args(Some(args.iter().map(|a| (*a).to_owned()).collect()));
        self
    }

    /// Appends `KEY=value` entries to the process's environment.
    #[must_use]
    pub fn env(mut self, env: &[&str]) -> Self {
        let process = self.process();
        let mut all = process.env().clone().unwrap_or_default();
        all.extend(env.iter().map(|e| (*e).to_owned()));
        process.set_env(Some(all));
        self
    }

    /// Sets the process's working directory (absolute, inside the container).
    #[must_use]
    pub fn cwd(mut self, cwd: impl Into<PathBuf>) -> Self {
        self.process().set_cwd(cwd.into());
        self
    }

    /// Sets the process's uid and gid (inside the container).
    #[must_use]
    pub fn user(mut self, uid: u32, gid: u32) -> Self {
        let user = self.process().user_mut();
        user.set_uid(uid);
        user.set_gid(gid);
        self
    }

    /// Whether the process gets a terminal (`process.terminal`).
    #[must_use]
    pub fn terminal(mut self, terminal: bool) -> Self {
        self.process().set_terminal(Some(terminal));
        self
    }

    /// Whether the rootfs is mounted read-only (`root.readonly`).
    #[must_use]
    pub fn readonly_root(mut self, readonly: bool) -> Self {
        self.root().set_readonly(Some(readonly));
        self
    }

    /// Sets the container's hostname.
    #[must_use]
    pub fn hostname(mut self, hostname: &str) -> Self {
        self.spec.set_hostname(Some(hostname.to_owned()));
        self
    }

    /// Sets `process.noNewPrivileges`.
    #[must_use]
    pub fn no_new_privileges(mut self, no_new_privileges: bool) -> Self {
        self.process()
            .set_no_new_privileges(Some(no_new_privileges));
        self
    }

    /// Adds a user namespace mapping container ids `0..size` to host ids
    /// `host_uid_start..host_uid_start + size`, for uids and gids alike.
    #[must_use]
    pub fn with_user_namespace(mut self, host_uid_start: u32, size: u32) -> Self {
        let mapping = LinuxIdMappingBuilder::default()
            .container_id(0u32)
            .host_id(host_uid_start)
            .size(size)
            .build()
            .expect("an id mapping with every field set is complete");
        let linux = self
            .spec
            .linux_mut()
            .get_or_insert_with(oci_spec::runtime::Linux::default);
        let mut namespaces = linux.namespaces().clone().unwrap_or_default();
        if !namespaces
            .iter()
            .any(|ns| ns.typ() == LinuxNamespaceType::User)
        {
            namespaces.push(namespace(LinuxNamespaceType::User));
        }
        linux.set_namespaces(Some(namespaces));
        linux.set_uid_mappings(Some(vec![mapping]));
        linux.set_gid_mappings(Some(vec![mapping]));
        self
    }

    /// Applies an arbitrary edit to the spec. oci-spec's setters return `&mut Spec`,
    /// so end them with `;`: `.spec_mut(|s| { s.set_hostname(None); })`.
    #[must_use]
    pub fn spec_mut(mut self, edit: impl FnOnce(&mut Spec)) -> Self {
        edit(&mut self.spec);
        self
    }

    /// The spec built so far.
    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    /// Creates the bundle at `dir` (created if missing): `dir/rootfs` as a copy of the
    /// busybox rootfs and `dir/config.json` as pretty JSON.
    ///
    /// # Errors
    ///
    /// The rootfs cannot be built or copied, or the config cannot be written.
    pub fn build(&self, dir: &Path) -> anyhow::Result<Bundle> {
        fs_err::create_dir_all(dir)?;
        let bundle = Bundle {
            dir: dir.to_owned(),
            rootfs: dir.join("rootfs"),
        };
        crate::copy_rootfs(&bundle.rootfs)?;
        bundle.write_spec(&self.spec)?;
        Ok(bundle)
    }

    fn process(&mut self) -> &mut Process {
        self.spec.process_mut().get_or_insert_with(Process::default)
    }

    fn root(&mut self) -> &mut Root {
        self.spec.root_mut().get_or_insert_with(Root::default)
    }
}

/// An OCI bundle on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// The bundle directory (what `--bundle` takes).
    pub dir: PathBuf,
    /// The rootfs directory, `dir/rootfs`.
    pub rootfs: PathBuf,
}

impl Bundle {
    /// `dir/config.json`.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    /// Writes `spec` to `config.json` as pretty JSON, replacing it.
    ///
    /// # Errors
    ///
    /// The file cannot be written.
    pub fn write_spec(&self, spec: &Spec) -> anyhow::Result<()> {
        let mut json = serde_json::to_string_pretty(spec).context("serialize the OCI spec")?;
        json.push('\n');
        fs_err::write(self.config_path(), json)?;
        Ok(())
    }

    /// Reads and parses `config.json`.
    ///
    /// # Errors
    ///
    /// The file cannot be read or is not a valid OCI runtime spec.
    pub fn read_spec(&self) -> anyhow::Result<Spec> {
        let path = self.config_path();
        let raw = fs_err::read(&path)?;
        serde_json::from_slice(&raw).with_context(|| format!("parse {}", path.display()))
    }
}

fn namespace(typ: LinuxNamespaceType) -> LinuxNamespace {
    LinuxNamespaceBuilder::default()
        .typ(typ)
        .build()
        .expect("a namespace needs only its type")
}

fn mount(destination: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
    let mut builder = MountBuilder::default()
        .destination(destination)
        .typ(typ)
        .source(source);
    if !options.is_empty() {
        builder = builder.options(options.iter().map(|o| (*o).to_owned()).collect::<Vec<_>>());
    }
    builder
        .build()
        .expect("a mount with every field set is complete")
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// The config described on [`BundleBuilder`]. Every field is set explicitly: the
/// builders' defaults (oci-spec's `Default` impls) carry youki's choices.
fn default_spec() -> Spec {
    let caps: Capabilities = [
        Capability::AuditWrite,
        Capability::Kill,
        Capability::NetBindService,
    ]
    .into_iter()
    .collect();
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .inheritable(Capabilities::new())
        .ambient(Capabilities::new())
        .build()
        .expect("capabilities with every set given are complete");
    let nofile = PosixRlimitBuilder::default()
        .typ(PosixRlimitType::RlimitNofile)
        .hard(1024u64)
        .soft(1024u64)
        .build()
        .expect("an rlimit with every field set is complete");
    let user = UserBuilder::default()
        .uid(0u32)
        .gid(0u32)
        .build()
        .expect("a user with uid and gid is complete");
    let process = ProcessBuilder::default()
        .terminal(false)
        .user(user)
        .args(strings(&["sh"]))
        .env(strings(&[DEFAULT_PATH, "TERM=xterm"]))
        .cwd("/")
        .capabilities(capabilities)
        .rlimits(vec![nofile])
        .no_new_privileges(true)
        .build()
        .expect("a process with every field set is complete");
    let root = RootBuilder::default()
        .path("rootfs")
        .readonly(true)
        .build()
        .expect("a root with path and readonly is complete");
    let mounts = vec![
        mount("/proc", "proc", "proc", &[]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        ),
    ];
    let mut linux = LinuxBuilder::default()
        .namespaces(
            [
                LinuxNamespaceType::Pid,
                LinuxNamespaceType::Network,
                LinuxNamespaceType::Ipc,
                LinuxNamespaceType::Uts,
                LinuxNamespaceType::Mount,
            ]
            .map(namespace)
            .to_vec(),
        )
        .masked_paths(strings(MASKED_PATHS))
        .readonly_paths(strings(READONLY_PATHS))
        .build()
        .expect("linux with namespaces and paths is complete");
    // Unset fields come from oci-spec's Linux::default, which has empty resources.
    linux.set_resources(None);
    linux.set_uid_mappings(None);
    linux.set_gid_mappings(None);
    linux.set_devices(None);
    linux.set_seccomp(None);
    linux.set_sysctl(None);
    linux.set_cgroups_path(None);

    let mut spec = Spec::default();
    spec.set_version(oci_spec::runtime::VERSION.to_owned());
    spec.set_process(Some(process));
    spec.set_root(Some(root));
    spec.set_hostname(Some("wharf-test".to_owned()));
    spec.set_domainname(None);
    spec.set_mounts(Some(mounts));
    spec.set_annotations(None);
    spec.set_hooks(None);
    spec.set_linux(Some(linux));
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(builder: &BundleBuilder) -> serde_json::Value {
        serde_json::to_value(builder.spec()).unwrap()
    }

    #[test]
    fn default_config_matches_runc_spec_minus_cgroups() {
        let v = json(&BundleBuilder::new());
        assert_eq!(v["process"]["args"], serde_json::json!(["sh"]));
        assert_eq!(
            v["process"]["env"],
            serde_json::json!([DEFAULT_PATH, "TERM=xterm"])
        );
        assert_eq!(v["process"]["cwd"], "/");
        assert_eq!(v["process"]["terminal"], false);
        assert_eq!(v["process"]["noNewPrivileges"], true);
        assert_eq!(v["process"]["user"]["uid"], 0);
        let mut bounding: Vec<String> =
            serde_json::from_value(v["process"]["capabilities"]["bounding"].clone()).unwrap();
        bounding.sort();
        assert_eq!(
            bounding,
            ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
        );
        assert_eq!(
            v["process"]["capabilities"]["ambient"],
            serde_json::json!([])
        );
        assert_eq!(
            v["process"]["rlimits"],
            serde_json::json!([{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}])
        );
        assert_eq!(
            v["root"],
            serde_json::json!({"path": "rootfs", "readonly": true})
        );
        assert_eq!(v["hostname"], "wharf-test");
        let destinations: Vec<&str> = v["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        assert_eq!(
            destinations,
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/dev/shm",
                "/dev/mqueue",
                "/sys"
            ]
        );
        assert!(v["mounts"][0].get("options").is_none());
        assert_eq!(
            v["mounts"][5]["options"],
            serde_json::json!(["nosuid", "noexec", "nodev", "ro"])
        );
        assert_eq!(
            v["linux"]["namespaces"],
            serde_json::json!([
                {"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                {"type": "uts"}, {"type": "mount"}
            ])
        );
        assert!(v["linux"].get("resources").is_none(), "{v:#}");
        assert!(v["linux"].get("uidMappings").is_none());
        assert_eq!(v["linux"]["maskedPaths"], serde_json::json!(MASKED_PATHS));
        assert_eq!(
            v["linux"]["readonlyPaths"],
            serde_json::json!(READONLY_PATHS)
        );
    }

    #[test]
    fn setters_edit_the_spec() {
        let v = json(
            &BundleBuilder::new()
                .args(&["id", "-u"])
                .env(&["A=1"])
                .cwd("/tmp")
                .user(1000, 100)
                .terminal(true)
                .readonly_root(false)
                .hostname("h")
                .no_new_privileges(false)
                .spec_mut(|s| {
                    s.set_domainname(Some("d".to_owned()));
                }),
        );
        assert_eq!(v["process"]["args"], serde_json::json!(["id", "-u"]));
        assert_eq!(v["process"]["env"][2], "A=1");
        assert_eq!(v["process"]["cwd"], "/tmp");
        assert_eq!(v["process"]["user"]["uid"], 1000);
        assert_eq!(v["process"]["user"]["gid"], 100);
        assert_eq!(v["process"]["terminal"], true);
        assert_eq!(v["process"]["noNewPrivileges"], false);
        assert_eq!(v["root"]["readonly"], false);
        assert_eq!(v["hostname"], "h");
        assert_eq!(v["domainname"], "d");
    }

    #[test]
    fn user_namespace_maps_container_root() {
        let builder = BundleBuilder::new()
            .with_user_namespace(100_000, 65536)
            .with_user_namespace(200_000, 1000);
        let v = json(&builder);
        let user_ns = v["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|ns| ns["type"] == "user")
            .count();
        assert_eq!(user_ns, 1);
        let mapping = serde_json::json!([{"containerID": 0, "hostID": 200_000, "size": 1000}]);
        assert_eq!(v["linux"]["uidMappings"], mapping);
        assert_eq!(v["linux"]["gidMappings"], mapping);
    }

    #[test]
    fn config_round_trips_through_disk() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = Bundle {
            dir: dir.path().to_owned(),
            rootfs: dir.path().join("rootfs"),
        };
        let spec = BundleBuilder::new().args(&["true"]).spec().clone();
        bundle.write_spec(&spec).unwrap();
        assert_eq!(bundle.read_spec().unwrap(), spec);
        let text = fs_err::read_to_string(bundle.config_path()).unwrap();
        assert!(text.contains("\n  \"ociVersion\""), "{text}");
    }
}
