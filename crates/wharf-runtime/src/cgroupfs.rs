//! `mounts` entries of type `cgroup` and `cgroup2`: the container sees its
//! own cgroup directories, never the host's whole tree.
//!
//! On a cgroup v1 (or hybrid) host, a `cgroup` mount becomes a tmpfs with
//! one directory per hierarchy, each a bind mount of the init's own cgroup
//! in that hierarchy, as runc does. On a pure v2 host the container's
//! cgroup directory is bind-mounted (or, with a cgroup namespace, cgroup2
//! is mounted fresh, and the kernel shows the namespace's root).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use wharf_cgroups::{CgroupMount, Location};
use wharf_sys::mount::{self as sysmount, FsOption, MountAttrs};
use wharf_sys::Root;

use crate::error::{Step, StepError};
use crate::mounts::Plan;

/// The calling process's cgroup path in the hierarchy with `controllers`
/// (v1) or the unified hierarchy (`controllers` empty).
fn own_cgroup(proc_cgroup: &str, controllers: &[String]) -> Option<String> {
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        let listed: Vec<&str> = ctrls.split(',').filter(|c| !c.is_empty()).collect();
        let matches = if controllers.is_empty() {
            listed.is_empty()
        } else {
            controllers.iter().all(|c| listed.contains(&c.as_str()))
                && listed.len() == controllers.len()
        };
        if matches {
            return Some(path.to_owned());
        }
    }
    None
}

/// How the init sees cgroups when it mounts them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CgroupView<'a> {
    /// The container has its own cgroup namespace (already entered).
    pub(crate) ns: bool,
    /// The container's cgroup. The init mounts its cgroups before the
    /// runtime has finished moving it there (that move waits for an RCU
    /// grace period, which the mounts overlap), so its directories come
    /// from here rather than from `/proc/self/cgroup`.
    pub(crate) container: Option<&'a Location>,
}

/// The container's directory in hierarchy `h`, when its cgroup has one.
fn container_dir(location: &Location, h: &CgroupMount) -> Option<PathBuf> {
    let dir = match location {
        Location::V1 { dirs, unified } => {
            if h.fstype == "cgroup2" {
                unified.clone()
            } else {
                h.controllers.iter().find_map(|c| dirs.get(c).cloned())
            }
        }
        Location::V2 { dir, .. } => (h.fstype == "cgroup2").then(|| dir.clone()),
    }?;
    // Only a directory of this very mount (the runtime resolved it from
    // the same mount table).
    dir.starts_with(&h.mount_point).then_some(dir)
}

/// Host directory of the caller's cgroup in `h`.
fn host_dir(h: &CgroupMount, cgroup: &str) -> PathBuf {
    let rel = cgroup
        .strip_prefix(h.root.trim_end_matches('/'))
        .unwrap_or(cgroup)
        .trim_start_matches('/');
    h.mount_point.join(rel)
}

/// The mount showing the caller's own cgroup in hierarchy `h`. In a cgroup
/// namespace a fresh instance of the filesystem has the namespace's root —
/// the container's cgroup — as its root; without one, the host directory of
/// the caller's cgroup is bind-mounted.
fn source_tree(
    h: &CgroupMount,
    proc_cgroup: &str,
    view: CgroupView<'_>,
    attrs: u64,
) -> Result<OwnedFd, StepError> {
    if view.ns {
        let options: Vec<FsOption> = h
            .controllers
            .iter()
            .map(|c| match c.split_once('=') {
                Some((k, v)) => FsOption {
                    key: k.into(),
                    value: Some(v.into()),
                },
                None => FsOption {
                    key: c.clone(),
                    value: None,
                },
            })
            .collect();
        return sysmount::new_fs(&h.fstype, Some("cgroup"), &options, attrs)
            .step(|| format!("mount {} {}", h.fstype, h.controllers.join(",")));
    }
    let dir = match view.container.and_then(|l| container_dir(l, h)) {
        Some(dir) => dir,
        None => {
            let cgroup = own_cgroup(proc_cgroup, &h.controllers).unwrap_or_else(|| "/".into());
            host_dir(h, &cgroup)
        }
    };
    let tree = sysmount::clone_tree(rustix::fs::CWD, &dir, false)
        .step(|| format!("clone cgroup {}", dir.display()))?;
    sysmount::set_attrs(
        tree.as_fd(),
        false,
        MountAttrs {
            set: attrs,
            ..MountAttrs::default()
        },
        None,
    )
    .step(|| "set cgroup mount attributes".into())?;
    Ok(tree)
}

/// Mounts a `cgroup`/`cgroup2` entry at `dest` (resolved to `target`).
pub(crate) fn mount(
    root: &Root,
    dest: &Path,
    target: BorrowedFd<'_>,
    plan: &Plan,
    view: CgroupView<'_>,
) -> Result<(), StepError> {
    let mountinfo =
        fs_err::read_to_string("/proc/self/mountinfo").step(|| "read mountinfo".into())?;
    let proc_cgroup =
        fs_err::read_to_string("/proc/self/cgroup").step(|| "read /proc/self/cgroup".into())?;
    let all = wharf_cgroups::parse_mountinfo(&mountinfo);
    let ro = plan.attrs.set & sysmount::ATTR_RDONLY != 0;
    let bind_attrs = MountAttrs {
        set: plan.attrs.set & !sysmount::ATTR_ATIME_MASK
            | sysmount::ATTR_NOSUID
            | sysmount::ATTR_NODEV
            | sysmount::ATTR_NOEXEC,
        ..MountAttrs::default()
    };
    let pure_v2 = all.iter().all(|h| h.fstype == "cgroup2")
        && all
            .iter()
            .any(|h| h.mount_point == Path::new("/sys/fs/cgroup"));
    if pure_v2 {
        let h = all
            .iter()
            .find(|h| h.mount_point == Path::new("/sys/fs/cgroup"))
            .expect("checked above");
        let tree = source_tree(h, &proc_cgroup, view, bind_attrs.set)?;
        return sysmount::attach(tree.as_fd(), target).step(|| "attach cgroup2".into());
    }

    // v1 / hybrid: a tmpfs holding one bind per hierarchy.
    let opts = [FsOption {
        key: "mode".into(),
        value: Some("755".into()),
    }];
    let tmpfs = sysmount::new_fs(
        "tmpfs",
        Some("tmpfs"),
        &opts,
        sysmount::ATTR_NOSUID | sysmount::ATTR_NODEV | sysmount::ATTR_NOEXEC,
    )
    .step(|| "create cgroup tmpfs".into())?;
    sysmount::attach(tmpfs.as_fd(), target).step(|| "attach cgroup tmpfs".into())?;
    let cgroup_root = Path::new("/sys/fs/cgroup");
    for h in &all {
        let Ok(name) = h.mount_point.strip_prefix(cgroup_root) else {
            continue;
        };
        if name.as_os_str().is_empty() || name.components().count() != 1 {
            continue;
        }
        if own_cgroup(&proc_cgroup, &h.controllers).is_none() {
            continue;
        }
        let dir = root
            .mkdir_all(&dest.join(name), 0o755)
            .step(|| format!("create {}", dest.join(name).display()))?;
        let tree = source_tree(h, &proc_cgroup, view, bind_attrs.set)?;
        sysmount::attach(tree.as_fd(), dir.as_fd())
            .step(|| format!("attach cgroup {}", name.display()))?;
    }
    if ro {
        sysmount::set_attrs(
            tmpfs.as_fd(),
            false,
            MountAttrs {
                set: sysmount::ATTR_RDONLY,
                ..MountAttrs::default()
            },
            None,
        )
        .step(|| "make cgroup tmpfs read-only".into())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:5 - cgroup2 cgroup2 rw,nsdelegate
33 30 0:29 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
34 30 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
35 30 0:31 / /sys/fs/cgroup/systemd rw,nosuid - cgroup cgroup rw,xattr,name=systemd
";

    const PROC_CGROUP: &str = "\
5:memory:/user.slice
4:cpu,cpuacct:/user.slice/x
1:name=systemd:/user.slice/session-1.scope
0::/user.slice/session-1.scope
";

    #[test]
    fn finds_hierarchies_and_own_cgroups() {
        let hs = wharf_cgroups::parse_mountinfo(MOUNTINFO);
        assert_eq!(hs.len(), 4);
        assert_eq!(hs[1].controllers, vec!["memory".to_string()]);
        assert_eq!(
            hs[2].controllers,
            vec!["cpu".to_string(), "cpuacct".to_string()]
        );
        assert_eq!(
            own_cgroup(PROC_CGROUP, &hs[2].controllers).as_deref(),
            Some("/user.slice/x")
        );
        assert_eq!(
            own_cgroup(PROC_CGROUP, &hs[3].controllers).as_deref(),
            Some("/user.slice/session-1.scope")
        );
        assert_eq!(
            own_cgroup(PROC_CGROUP, &[]).as_deref(),
            Some("/user.slice/session-1.scope")
        );
        assert_eq!(
            host_dir(&hs[1], "/user.slice"),
            PathBuf::from("/sys/fs/cgroup/memory/user.slice")
        );
    }
}
