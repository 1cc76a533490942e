//! Which cgroup hierarchies the host mounts (v1, v2 or hybrid), and where a
//! `cgroupsPath` lands in each.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use crate::error::CgroupError;
use crate::files;

const MOUNTINFO: &str = "/proc/self/mountinfo";
const PROC_SELF_CGROUP: &str = "/proc/self/cgroup";

/// One mounted cgroup v1 hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Mount {
    /// Where it is mounted (`/sys/fs/cgroup/memory`).
    pub mount_point: PathBuf,
    /// The cgroup shown at the mount point (`/` unless a cgroup namespace or a
    /// bind mount shows a sub-tree).
    pub root: String,
}

/// The cgroup hierarchies mounted on the host, as seen from this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hierarchy {
    /// Only cgroup v1: one mount per controller (or co-mounted set).
    V1 {
        /// Controller (`memory`, `cpu`, `name=systemd`) → its mount.
        mounts: BTreeMap<String, V1Mount>,
    },
    /// Only the unified cgroup v2 hierarchy.
    V2 {
        /// Its mount point (`/sys/fs/cgroup`).
        root: PathBuf,
    },
    /// v1 controllers plus a (usually controller-less) v2 hierarchy, as systemd's
    /// "hybrid" layout mounts at `/sys/fs/cgroup/unified`.
    Hybrid {
        /// Controller → its v1 mount.
        mounts: BTreeMap<String, V1Mount>,
        /// The v2 mount point.
        unified: PathBuf,
    },
}

impl Hierarchy {
    /// Reads `/proc/self/mountinfo` and classifies the cgroup mounts.
    pub fn detect() -> Result<Hierarchy, CgroupError> {
        let text =
            files::read_io(Path::new(MOUNTINFO)).map_err(|source| CgroupError::ReadProc {
                path: MOUNTINFO.into(),
                source,
            })?;
        Hierarchy::from_mountinfo(&text).ok_or_else(|| CgroupError::NoHierarchy {
            path: MOUNTINFO.into(),
        })
    }

    /// Classifies the cgroup mounts in mountinfo `text`; `None` when there are
    /// none. A later mount over the same mount point hides an earlier one.
    pub fn from_mountinfo(text: &str) -> Option<Hierarchy> {
        let mut mounts = BTreeMap::new();
        let mut unified = None;
        for entry in parse_mountinfo(text) {
            if entry.fstype == "cgroup2" {
                unified = Some(entry.mount_point);
            } else {
                for controller in entry.controllers {
                    mounts.insert(
                        controller,
                        V1Mount {
                            mount_point: entry.mount_point.clone(),
                            root: entry.root.clone(),
                        },
                    );
                }
            }
        }
        match (mounts.is_empty(), unified) {
            (true, None) => None,
            (true, Some(root)) => Some(Hierarchy::V2 { root }),
            (false, None) => Some(Hierarchy::V1 { mounts }),
            (false, Some(unified)) => Some(Hierarchy::Hybrid { mounts, unified }),
        }
    }
}

/// A `cgroup` or `cgroup2` line of mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMount {
    /// The cgroup shown at the mount point (`/` unless a namespace or bind
    /// mount shows a sub-tree).
    pub root: String,
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// `cgroup` or `cgroup2`.
    pub fstype: String,
    /// v1 controllers and `name=` from the super options; empty for cgroup2.
    pub controllers: Vec<String>,
}

/// The v1 super options that are not controllers.
const NOT_CONTROLLERS: &[&str] = &[
    "rw",
    "ro",
    "noprefix",
    "xattr",
    "clone_children",
    "cpuset_v2_mode",
    "favordynmods",
];

/// Every cgroup mount listed in `/proc/<pid>/mountinfo` text.
pub fn parse_mountinfo(text: &str) -> Vec<CgroupMount> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        let (Some(root), Some(point), Some(fstype)) = (left.get(3), left.get(4), right.first())
        else {
            continue;
        };
        if *fstype != "cgroup" && *fstype != "cgroup2" {
            continue;
        }
        let controllers = if *fstype == "cgroup" {
            right
                .get(2)
                .map(|opts| {
                    opts.split(',')
                        .filter(|o| {
                            !NOT_CONTROLLERS.contains(o) && !o.starts_with("release_agent=")
                        })
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        out.push(CgroupMount {
            root: unescape(root),
            mount_point: PathBuf::from(unescape(point)),
            fstype: (*fstype).to_owned(),
            controllers,
        });
    }
    out
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            if let Some(octal) = field.get(i + 1..i + 4) {
                if let Ok(byte) = u8::from_str_radix(octal, 8) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// This process's own cgroups from `/proc/self/cgroup`: v1 controller → path,
/// and `""` → the v2 path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct OwnCgroups(pub(crate) BTreeMap<String, String>);

impl OwnCgroups {
    pub(crate) fn read() -> Result<OwnCgroups, CgroupError> {
        let text = files::read_io(Path::new(PROC_SELF_CGROUP)).map_err(|source| {
            CgroupError::ReadProc {
                path: PROC_SELF_CGROUP.into(),
                source,
            }
        })?;
        Ok(OwnCgroups::parse(&text))
    }

    /// Parses `/proc/<pid>/cgroup`: `id:controller,controller:path` per line,
    /// `0::path` for v2.
    pub(crate) fn parse(text: &str) -> OwnCgroups {
        let mut map = BTreeMap::new();
        for line in text.lines() {
            let mut fields = line.splitn(3, ':');
            let (Some(_id), Some(controllers), Some(path)) =
                (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            if controllers.is_empty() {
                map.insert(String::new(), path.to_owned());
            } else {
                for controller in controllers.split(',') {
                    map.insert(controller.to_owned(), path.to_owned());
                }
            }
        }
        OwnCgroups(map)
    }

    /// The own cgroup path for `controller` (`""` for v2).
    pub(crate) fn get(&self, controller: &str) -> Result<&str, CgroupError> {
        self.0
            .get(controller)
            .map(String::as_str)
            .ok_or_else(|| CgroupError::OwnCgroup {
                controller: controller.to_owned(),
            })
    }
}

/// Checks a `cgroupsPath`: no `..`, not empty.
pub(crate) fn validate_cgroups_path(path: &Path) -> Result<(), CgroupError> {
    let invalid = |reason| CgroupError::InvalidPath {
        path: path.to_path_buf(),
        reason,
    };
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(invalid("it must not contain '..'"));
    }
    if !path.components().any(|c| matches!(c, Component::Normal(_))) {
        return Err(invalid("it must name a cgroup below the root"));
    }
    Ok(())
}

/// The cgroup path (absolute in the hierarchy) for `cgroups_path`: itself when
/// absolute, else below `own` (the caller's cgroup), as runc does.
pub(crate) fn cgroup_path(cgroups_path: &Path, own: &str) -> PathBuf {
    if cgroups_path.is_absolute() {
        cgroups_path.to_path_buf()
    } else {
        Path::new("/").join(own).join(cgroups_path)
    }
}

/// The directory of cgroup `path` in a hierarchy mounted at `mount_point`
/// showing the cgroup `mount_root`.
pub(crate) fn dir_in_mount(mount_point: &Path, mount_root: &str, path: &Path) -> PathBuf {
    let relative = path.strip_prefix(mount_root).unwrap_or(path);
    let relative = relative.strip_prefix("/").unwrap_or(relative);
    mount_point.join(relative)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This CI host: v1 controllers plus a controller-less unified hierarchy.
    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    const V2: &str = "\
22 1 259:1 / / rw,relatime shared:1 - ext4 /dev/root rw
28 24 0:25 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    const V1_COMOUNTED: &str = "\
30 24 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,xattr,cpu,cpuacct
31 24 0:27 /docker/abc /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
32 24 0:28 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,release_agent=/x,name=systemd
";

    fn mount(point: &str, root: &str) -> V1Mount {
        V1Mount {
            mount_point: point.into(),
            root: root.into(),
        }
    }

    #[test]
    fn this_hosts_layout_is_hybrid() {
        let Some(Hierarchy::Hybrid { mounts, unified }) = Hierarchy::from_mountinfo(HYBRID) else {
            panic!("not hybrid");
        };
        assert_eq!(unified, Path::new("/sys/fs/cgroup/unified"));
        let names: Vec<&str> = mounts.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "blkio",
                "cpu",
                "cpuacct",
                "cpuset",
                "devices",
                "freezer",
                "memory",
                "name=systemd",
                "pids"
            ]
        );
        assert_eq!(mounts["memory"], mount("/sys/fs/cgroup/memory", "/"));
    }

    #[test]
    fn pure_v2() {
        assert_eq!(
            Hierarchy::from_mountinfo(V2),
            Some(Hierarchy::V2 {
                root: "/sys/fs/cgroup".into()
            })
        );
    }

    #[test]
    fn v1_with_comounted_controllers_and_sub_tree_roots() {
        let Some(Hierarchy::V1 { mounts }) = Hierarchy::from_mountinfo(V1_COMOUNTED) else {
            panic!("not v1");
        };
        assert_eq!(mounts["cpu"], mount("/sys/fs/cgroup/cpu,cpuacct", "/"));
        assert_eq!(mounts["cpuacct"], mount("/sys/fs/cgroup/cpu,cpuacct", "/"));
        assert_eq!(
            mounts["memory"],
            mount("/sys/fs/cgroup/memory", "/docker/abc")
        );
        assert!(mounts.contains_key("name=systemd"));
        assert_eq!(mounts.len(), 4);
    }

    #[test]
    fn no_cgroup_mounts() {
        let text = "22 1 259:1 / / rw,relatime shared:1 - ext4 /dev/root rw\n";
        assert_eq!(Hierarchy::from_mountinfo(text), None);
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        let text = "41 31 0:38 / /sys/fs/cgroup/with\\040space rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            parse_mountinfo(text)[0].mount_point,
            Path::new("/sys/fs/cgroup/with space")
        );
    }

    #[test]
    fn proc_self_cgroup_on_this_host() {
        let text = "9:name=systemd:/\n4:memory:/process_api/b748\n2:cpu,cpuacct:/x\n0::/\n";
        let own = OwnCgroups::parse(text);
        assert_eq!(own.get("memory").unwrap(), "/process_api/b748");
        assert_eq!(own.get("cpuacct").unwrap(), "/x");
        assert_eq!(own.get("name=systemd").unwrap(), "/");
        assert_eq!(own.get("").unwrap(), "/");
        assert_eq!(
            own.get("hugetlb").unwrap_err().to_string(),
            "find the caller's own cgroup for \"hugetlb\" in /proc/self/cgroup"
        );
    }

    #[test]
    fn cgroups_path_absolute_or_relative_to_own_cgroup() {
        assert_eq!(cgroup_path(Path::new("/a/b"), "/own"), Path::new("/a/b"));
        assert_eq!(cgroup_path(Path::new("a/b"), "/own"), Path::new("/own/a/b"));
        assert_eq!(cgroup_path(Path::new("a"), "/"), Path::new("/a"));
    }

    #[test]
    fn cgroups_path_validation() {
        assert!(validate_cgroups_path(Path::new("/a/b")).is_ok());
        assert!(validate_cgroups_path(Path::new("a")).is_ok());
        assert_eq!(
            validate_cgroups_path(Path::new("/a/../b"))
                .unwrap_err()
                .to_string(),
            "invalid cgroup path \"/a/../b\": it must not contain '..'"
        );
        assert!(validate_cgroups_path(Path::new("/")).is_err());
        assert!(validate_cgroups_path(Path::new("")).is_err());
    }

    #[test]
    fn dir_in_mount_strips_the_mount_root() {
        let point = Path::new("/sys/fs/cgroup/memory");
        assert_eq!(
            dir_in_mount(point, "/", Path::new("/a/b")),
            Path::new("/sys/fs/cgroup/memory/a/b")
        );
        assert_eq!(
            dir_in_mount(point, "/docker/abc", Path::new("/docker/abc/c")),
            Path::new("/sys/fs/cgroup/memory/c")
        );
        assert_eq!(
            dir_in_mount(point, "/docker/abc", Path::new("/other")),
            Path::new("/sys/fs/cgroup/memory/other")
        );
    }
}
