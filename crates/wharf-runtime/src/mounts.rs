//! OCI `mounts` entries: checking them, turning their options into a plan,
//! and mounting one onto a descriptor inside the rootfs.

use std::path::{Path, PathBuf};

use oci_spec::runtime::Mount;
use wharf_sys::mount::{self as sysmount, FsOption};

use crate::error::{Result, RuntimeError};

/// Mount points under `/proc` that may be bind-mounted over (lxcfs and
/// friends); anything else under `/proc` is refused (CVE-2019-16884 class).
const PROC_BIND_ALLOWED: &[&str] = &[
    "/proc/cpuinfo",
    "/proc/diskstats",
    "/proc/meminfo",
    "/proc/stat",
    "/proc/swaps",
    "/proc/uptime",
    "/proc/loadavg",
    "/proc/slabinfo",
    "/proc/net/dev",
    "/proc/sys/kernel/ns_last_pid",
];

/// What kind of mount an entry makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A bind mount of a host path.
    Bind { source: PathBuf, recursive: bool },
    /// A new filesystem instance.
    Fs {
        fstype: String,
        source: Option<String>,
    },
}

/// A mount entry turned into what the kernel needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Destination inside the rootfs, normalised to an absolute path.
    pub(crate) destination: PathBuf,
    pub(crate) kind: Kind,
    /// `MOUNT_ATTR_*` for the mount itself.
    pub(crate) attrs: sysmount::MountAttrs,
    /// `MOUNT_ATTR_*` for the mount and every mount below it (`rro`, …).
    pub(crate) recursive_attrs: sysmount::MountAttrs,
    /// Propagation (`MS_SHARED`…) and whether it applies recursively.
    pub(crate) propagation: Option<(u64, bool)>,
    /// Filesystem options handed to `fsconfig`.
    pub(crate) data: Vec<FsOption>,
    /// Whether the mount is idmapped (`idmap`/`ridmap` or mappings given).
    pub(crate) idmap: bool,
}

/// The idmapped bind mounts of a config, in order: the runtime prepares
/// them on the host side (setting an idmap needs privilege over the source
/// filesystem, which the container's root lacks) and hands them to the init.
pub(crate) fn idmapped_binds(spec: &oci_spec::runtime::Spec) -> Result<Vec<Plan>> {
    let mut out = Vec::new();
    for mount in spec.mounts().as_deref().unwrap_or_default() {
        let plan = plan(mount)?;
        if plan.idmap && matches!(plan.kind, Kind::Bind { .. }) {
            out.push(plan);
        }
    }
    Ok(out)
}

/// Makes `dest` absolute and lexically clean (`..` cannot climb above `/`).
pub(crate) fn clean_destination(dest: &Path) -> PathBuf {
    wharf_sys::root::lexically_clean(dest)
}

/// Checks a mount entry before anything is created.
pub(crate) fn check(mount: &Mount) -> Result<()> {
    let plan = plan(mount)?;
    let dest = &plan.destination;
    let fstype = match &plan.kind {
        Kind::Fs { fstype, .. } => fstype.as_str(),
        Kind::Bind { .. } => "bind",
    };
    if dest == Path::new("/") {
        return Err(RuntimeError::config(
            "a mount over / is not allowed; use root.path",
        ));
    }
    if dest.starts_with("/proc") {
        let allowed = (dest == Path::new("/proc") && fstype == "proc")
            || (fstype == "bind" && PROC_BIND_ALLOWED.iter().any(|p| dest == Path::new(p)));
        if !allowed {
            return Err(RuntimeError::config(format!(
                "mount of type {fstype} at {} is not allowed: only procfs may be mounted at /proc, and only a few files under it may be bind-mounted",
                dest.display()
            )));
        }
    }
    Ok(())
}

/// Turns an entry's type and options into a [`Plan`].
pub(crate) fn plan(mount: &Mount) -> Result<Plan> {
    let options = mount.options().clone().unwrap_or_default();
    let typ = mount.typ().clone().unwrap_or_default();
    let is_bind = typ == "bind" || options.iter().any(|o| o == "bind" || o == "rbind");
    let recursive_bind = options.iter().any(|o| o == "rbind");
    let mut attrs = sysmount::MountAttrs::default();
    let mut rattrs = sysmount::MountAttrs::default();
    let mut propagation = None;
    let mut data = Vec::new();
    let mut idmap = mount.uid_mappings().is_some() || mount.gid_mappings().is_some();

    for opt in &options {
        let (set, clear, recursive): (u64, u64, bool) = match opt.as_str() {
            "defaults" | "bind" | "rbind" | "remount" | "rw" | "suid" | "dev" | "exec"
            | "async" | "nomand" | "symfollow" => (0, 0, false),
            "ro" => (sysmount::ATTR_RDONLY, 0, false),
            "nosuid" => (sysmount::ATTR_NOSUID, 0, false),
            "nodev" => (sysmount::ATTR_NODEV, 0, false),
            "noexec" => (sysmount::ATTR_NOEXEC, 0, false),
            "nosymfollow" => (sysmount::ATTR_NOSYMFOLLOW, 0, false),
            "nodiratime" => (sysmount::ATTR_NODIRATIME, 0, false),
            "diratime" => (0, sysmount::ATTR_NODIRATIME, false),
            "noatime" => (sysmount::ATTR_NOATIME, sysmount::ATTR_ATIME_MASK, false),
            "relatime" => (sysmount::ATTR_RELATIME, sysmount::ATTR_ATIME_MASK, false),
            "strictatime" => (sysmount::ATTR_STRICTATIME, sysmount::ATTR_ATIME_MASK, false),
            "atime" | "norelatime" | "nostrictatime" => (0, 0, false),
            "rro" => (sysmount::ATTR_RDONLY, 0, true),
            "rrw" => (0, sysmount::ATTR_RDONLY, true),
            "rnosuid" => (sysmount::ATTR_NOSUID, 0, true),
            "rsuid" => (0, sysmount::ATTR_NOSUID, true),
            "rnodev" => (sysmount::ATTR_NODEV, 0, true),
            "rdev" => (0, sysmount::ATTR_NODEV, true),
            "rnoexec" => (sysmount::ATTR_NOEXEC, 0, true),
            "rexec" => (0, sysmount::ATTR_NOEXEC, true),
            "rnosymfollow" => (sysmount::ATTR_NOSYMFOLLOW, 0, true),
            "rsymfollow" => (0, sysmount::ATTR_NOSYMFOLLOW, true),
            "rnodiratime" => (sysmount::ATTR_NODIRATIME, 0, true),
            "rdiratime" => (0, sysmount::ATTR_NODIRATIME, true),
            "rnoatime" => (sysmount::ATTR_NOATIME, sysmount::ATTR_ATIME_MASK, true),
            "rrelatime" => (sysmount::ATTR_RELATIME, sysmount::ATTR_ATIME_MASK, true),
            "rstrictatime" => (sysmount::ATTR_STRICTATIME, sysmount::ATTR_ATIME_MASK, true),
            "ratime" | "rnorelatime" | "rnostrictatime" => (0, 0, true),
            "idmap" | "ridmap" => {
                idmap = true;
                (0, 0, false)
            }
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
            | "runbindable" => {
                let recursive = opt.starts_with('r');
                let base = opt.trim_start_matches('r');
                let flag = match base {
                    "private" => libc::MS_PRIVATE,
                    "shared" => libc::MS_SHARED,
                    "slave" => libc::MS_SLAVE,
                    _ => libc::MS_UNBINDABLE,
                };
                propagation = Some((flag, recursive));
                (0, 0, false)
            }
            "sync" | "dirsync" | "mand" | "lazytime" if !is_bind => {
                data.push(FsOption {
                    key: opt.clone(),
                    value: None,
                });
                (0, 0, false)
            }
            "sync" | "dirsync" | "mand" | "lazytime" | "tmpcopyup" => (0, 0, false),
            other => {
                if is_bind {
                    // The kernel ignores filesystem data on a bind mount;
                    // so does runc.
                    tracing::debug!(option = other, destination = %mount.destination().display(), "filesystem option ignored on a bind mount");
                    continue;
                }
                let (key, value) = match other.split_once('=') {
                    Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
                    None => (other.to_owned(), None),
                };
                data.push(FsOption { key, value });
                (0, 0, false)
            }
        };
        let target = if recursive { &mut rattrs } else { &mut attrs };
        if clear & sysmount::ATTR_ATIME_MASK != 0 {
            target.set &= !sysmount::ATTR_ATIME_MASK;
        }
        target.set |= set;
        target.clear |= clear;
        if clear & sysmount::ATTR_ATIME_MASK == 0 {
            target.set &= !clear;
        }
    }

    let kind = if is_bind {
        let source = mount.source().clone().ok_or_else(|| {
            RuntimeError::config(format!(
                "bind mount at {} has no source",
                mount.destination().display()
            ))
        })?;
        Kind::Bind {
            source,
            recursive: recursive_bind,
        }
    } else {
        if typ.is_empty() {
            return Err(RuntimeError::config(format!(
                "mount at {} has no type",
                mount.destination().display()
            )));
        }
        Kind::Fs {
            fstype: typ,
            source: mount
                .source()
                .as_ref()
                .map(|s| s.to_string_lossy().into_owned()),
        }
    };
    Ok(Plan {
        destination: clean_destination(mount.destination()),
        kind,
        attrs,
        recursive_attrs: rattrs,
        propagation,
        data,
        idmap,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(json: serde_json::Value) -> Mount {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn tmpfs_options_split_into_attrs_and_data() {
        let m = mount(serde_json::json!({
            "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]
        }));
        let p = plan(&m).unwrap();
        assert_eq!(
            p.attrs.set,
            sysmount::ATTR_NOSUID | sysmount::ATTR_STRICTATIME
        );
        assert_eq!(p.attrs.clear, sysmount::ATTR_ATIME_MASK);
        assert_eq!(
            p.data,
            vec![
                FsOption {
                    key: "mode".into(),
                    value: Some("755".into())
                },
                FsOption {
                    key: "size".into(),
                    value: Some("65536k".into())
                },
            ]
        );
        assert_eq!(
            p.kind,
            Kind::Fs {
                fstype: "tmpfs".into(),
                source: Some("tmpfs".into())
            }
        );
    }

    #[test]
    fn rbind_with_recursive_ro_and_propagation() {
        let m = mount(serde_json::json!({
            "destination": "data/../x", "type": "none", "source": "/srv",
            "options": ["rbind", "rro", "nosuid", "rslave"]
        }));
        let p = plan(&m).unwrap();
        assert_eq!(p.destination, PathBuf::from("/x"));
        assert_eq!(
            p.kind,
            Kind::Bind {
                source: "/srv".into(),
                recursive: true
            }
        );
        assert_eq!(p.recursive_attrs.set, sysmount::ATTR_RDONLY);
        assert_eq!(p.attrs.set, sysmount::ATTR_NOSUID);
        assert_eq!(p.propagation, Some((libc::MS_SLAVE, true)));
    }

    #[test]
    fn refuses_mounts_over_proc_except_procfs_and_allowed_files() {
        let proc_ok =
            mount(serde_json::json!({"destination": "/proc", "type": "proc", "source": "proc"}));
        assert!(check(&proc_ok).is_ok());
        let bind_proc = mount(
            serde_json::json!({"destination": "/proc", "type": "bind", "source": "/tmp", "options": ["bind"]}),
        );
        assert!(check(&bind_proc).is_err());
        let attr = mount(
            serde_json::json!({"destination": "/proc/self/attr", "type": "tmpfs", "source": "tmpfs"}),
        );
        assert!(check(&attr).is_err());
        let cpuinfo = mount(
            serde_json::json!({"destination": "/proc/cpuinfo", "type": "bind", "source": "/tmp/x", "options": ["bind"]}),
        );
        assert!(check(&cpuinfo).is_ok());
        let sneaky = mount(
            serde_json::json!({"destination": "/x/../proc/sys", "type": "tmpfs", "source": "tmpfs"}),
        );
        assert!(check(&sneaky).is_err());
    }

    #[test]
    fn filesystem_data_on_a_bind_mount_is_ignored() {
        let m = mount(serde_json::json!({
            "destination": "/x", "type": "bind", "source": "/tmp", "options": ["bind", "mode=755", "ro"]
        }));
        let p = plan(&m).unwrap();
        assert!(p.data.is_empty());
        assert_eq!(p.attrs.set, sysmount::ATTR_RDONLY);
    }
}
