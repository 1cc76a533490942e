//! Loading a bundle's `config.json` and checking it before anything is
//! created, so that a bad config fails with a specific error and leaves
//! nothing behind.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::error::{Result, RuntimeError};

/// Reads and validates `<bundle>/config.json`.
pub(crate) fn load(bundle: &Path) -> Result<Spec> {
    let path = bundle.join("config.json");
    let data = fs_err::read(&path).map_err(|source| RuntimeError::ReadConfig {
        path: path.clone(),
        source,
    })?;
    let spec: Spec = serde_json::from_slice(&data)
        .map_err(|source| RuntimeError::ParseConfig { path, source })?;
    validate(&spec)?;
    Ok(spec)
}

/// The rootfs path of `spec`, absolute (relative paths are relative to the
/// bundle).
pub(crate) fn rootfs_path(bundle: &Path, spec: &Spec) -> Result<PathBuf> {
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| RuntimeError::config("root is missing"))?;
    let path = root.path();
    Ok(if path.is_absolute() {
        path.clone()
    } else {
        bundle.join(path)
    })
}

/// Namespace flag of a namespace type.
pub(crate) fn ns_flag(typ: LinuxNamespaceType) -> u64 {
    (match typ {
        LinuxNamespaceType::Mount => libc::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => libc::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => libc::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => libc::CLONE_NEWIPC,
        LinuxNamespaceType::User => libc::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => libc::CLONE_NEWPID,
        LinuxNamespaceType::Network => libc::CLONE_NEWNET,
        LinuxNamespaceType::Time => libc::CLONE_NEWTIME,
    }) as u64
}

/// How the container's namespaces are made: created by clone/unshare, or
/// joined by path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct NamespacePlan {
    /// `CLONE_NEW*` flags of the namespaces to create.
    pub(crate) create: u64,
    /// Namespaces to join, user namespace first, mount namespace last.
    pub(crate) join: Vec<(LinuxNamespaceType, PathBuf)>,
}

impl NamespacePlan {
    pub(crate) fn from_spec(spec: &Spec) -> Self {
        let mut plan = NamespacePlan::default();
        let namespaces = spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().clone())
            .unwrap_or_default();
        for ns in namespaces {
            match ns.path() {
                Some(path) if !path.as_os_str().is_empty() => {
                    plan.join.push((ns.typ(), path.clone()))
                }
                _ => plan.create |= ns_flag(ns.typ()),
            }
        }
        let rank = |t: &LinuxNamespaceType| match t {
            LinuxNamespaceType::User => 0,
            LinuxNamespaceType::Mount => 2,
            _ => 1,
        };
        plan.join.sort_by_key(|(t, _)| rank(t));
        plan
    }

    pub(crate) fn creates(&self, typ: LinuxNamespaceType) -> bool {
        self.create & ns_flag(typ) != 0
    }

    pub(crate) fn joins(&self, typ: LinuxNamespaceType) -> bool {
        self.join.iter().any(|(t, _)| *t == typ)
    }

    /// Whether the container gets a namespace of `typ` other than the
    /// runtime's own.
    pub(crate) fn has(&self, typ: LinuxNamespaceType) -> bool {
        self.creates(typ) || self.joins(typ)
    }

    /// One `clone(2)` with all flags is enough: nothing to join, and no time
    /// namespace (which only `unshare` + fork can create).
    pub(crate) fn single_clone(&self) -> bool {
        self.join.is_empty() && !self.creates(LinuxNamespaceType::Time)
    }
}

/// Checks what the kernel would otherwise reject halfway through setup.
pub(crate) fn validate(spec: &Spec) -> Result<()> {
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| RuntimeError::config("process is missing"))?;
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(RuntimeError::config("process.args must not be empty"));
    }
    if !process.cwd().is_absolute() {
        return Err(RuntimeError::config(format!(
            "process.cwd {:?} must be an absolute path",
            process.cwd()
        )));
    }
    if spec.root().is_none() {
        return Err(RuntimeError::config("root is missing"));
    }
    let linux = spec
        .linux()
        .as_ref()
        .ok_or_else(|| RuntimeError::config("linux is missing"))?;

    let mut seen = HashSet::new();
    for ns in linux.namespaces().as_deref().unwrap_or_default() {
        if !seen.insert(ns.typ()) {
            return Err(RuntimeError::config(format!(
                "namespace {:?} is listed twice",
                ns.typ()
            )));
        }
        if let Some(path) = ns.path() {
            if !path.as_os_str().is_empty() && !path.is_absolute() {
                return Err(RuntimeError::config(format!(
                    "namespace path {} must be absolute",
                    path.display()
                )));
            }
        }
    }
    let plan = NamespacePlan::from_spec(spec);
    let has_maps = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
        || linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty());
    if has_maps && !plan.creates(LinuxNamespaceType::User) {
        return Err(RuntimeError::config(
            "uidMappings/gidMappings need a new user namespace",
        ));
    }
    if plan.creates(LinuxNamespaceType::User) {
        for (what, maps) in [("uid", linux.uid_mappings()), ("gid", linux.gid_mappings())] {
            let maps = maps.as_deref().unwrap_or_default();
            if maps.is_empty() {
                return Err(RuntimeError::config(format!(
                    "a new user namespace needs {what}Mappings"
                )));
            }
            if maps.len() > 340 {
                return Err(RuntimeError::config(format!(
                    "{what}Mappings has {} entries; the kernel allows 340",
                    maps.len()
                )));
            }
            for m in maps {
                if m.size() == 0
                    || m.container_id().checked_add(m.size()).is_none()
                    || m.host_id().checked_add(m.size()).is_none()
                {
                    return Err(RuntimeError::config(format!(
                        "{what} mapping {}:{}:{} overflows",
                        m.container_id(),
                        m.host_id(),
                        m.size()
                    )));
                }
            }
        }
    }
    if linux.time_offsets().as_ref().is_some_and(|t| !t.is_empty())
        && !plan.creates(LinuxNamespaceType::Time)
    {
        return Err(RuntimeError::config(
            "timeOffsets need a new time namespace",
        ));
    }
    if spec.hostname().as_ref().is_some_and(|h| !h.is_empty()) && !plan.has(LinuxNamespaceType::Uts)
    {
        return Err(RuntimeError::config(
            "hostname needs a private UTS namespace",
        ));
    }
    if spec.domainname().as_ref().is_some_and(|h| !h.is_empty())
        && !plan.has(LinuxNamespaceType::Uts)
    {
        return Err(RuntimeError::config(
            "domainname needs a private UTS namespace",
        ));
    }
    if let Some(h) = spec.hostname() {
        if h.len() > 64 {
            return Err(RuntimeError::config("hostname is longer than 64 bytes"));
        }
    }
    for (key, _) in linux.sysctl().as_ref().into_iter().flatten() {
        crate::sysctl::check(key, &plan)?;
    }
    for mount in spec.mounts().as_deref().unwrap_or_default() {
        crate::mounts::check(mount)?;
    }
    if !crate::mounts::idmapped_binds(spec)?.is_empty() && !plan.creates(LinuxNamespaceType::User) {
        return Err(RuntimeError::config(
            "idmapped mounts map to the container's user namespace: it needs a new one",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> Spec {
        serde_json::from_value(json).unwrap()
    }

    fn base() -> serde_json::Value {
        serde_json::json!({
            "ociVersion": "1.2.0",
            "root": {"path": "rootfs"},
            "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "linux": {"namespaces": [{"type": "mount"}, {"type": "pid"}, {"type": "uts"}]}
        })
    }

    #[test]
    fn plan_orders_joins_user_first_mount_last() {
        let mut j = base();
        j["linux"]["namespaces"] = serde_json::json!([
            {"type": "mount", "path": "/proc/1/ns/mnt"},
            {"type": "network", "path": "/run/netns/x"},
            {"type": "user", "path": "/proc/1/ns/user"},
            {"type": "pid"}
        ]);
        let plan = NamespacePlan::from_spec(&spec(j));
        let order: Vec<_> = plan.join.iter().map(|(t, _)| *t).collect();
        assert_eq!(
            order,
            vec![
                LinuxNamespaceType::User,
                LinuxNamespaceType::Network,
                LinuxNamespaceType::Mount
            ]
        );
        assert!(plan.creates(LinuxNamespaceType::Pid));
        assert!(!plan.single_clone());
    }

    #[test]
    fn rejects_maps_without_userns_and_hostname_without_uts() {
        let mut j = base();
        j["linux"]["uidMappings"] =
            serde_json::json!([{"containerID": 0, "hostID": 1000, "size": 1}]);
        let err = validate(&spec(j)).unwrap_err().to_string();
        assert!(err.contains("need a new user namespace"), "{err}");

        let mut j = base();
        j["linux"]["namespaces"] = serde_json::json!([{"type": "mount"}]);
        j["hostname"] = "x".into();
        let err = validate(&spec(j)).unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid config: hostname needs a private UTS namespace"
        );
    }

    #[test]
    fn rejects_empty_args_and_relative_cwd() {
        let mut j = base();
        j["process"]["args"] = serde_json::json!([]);
        assert!(validate(&spec(j)).is_err());
        let mut j = base();
        j["process"]["cwd"] = "tmp".into();
        assert!(validate(&spec(j)).is_err());
    }

    #[test]
    fn rejects_overflowing_mapping() {
        let mut j = base();
        j["linux"]["namespaces"] = serde_json::json!([{"type": "mount"}, {"type": "user"}]);
        j["linux"]["uidMappings"] =
            serde_json::json!([{"containerID": 0, "hostID": 4294967295u32, "size": 2}]);
        j["linux"]["gidMappings"] = serde_json::json!([{"containerID": 0, "hostID": 0, "size": 1}]);
        let err = validate(&spec(j)).unwrap_err().to_string();
        assert!(err.contains("overflows"), "{err}");
    }
}
