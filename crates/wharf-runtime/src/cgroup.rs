//! The container's cgroup, through `wharf-cgroups`: created and configured
//! before the init runs any container code, joined by exec'd processes,
//! frozen by `pause`, updated by `update`, and killed and removed with the
//! container. Its resolved location is kept in the container's state, so
//! later commands manage it whatever their own cgroup is.

use std::path::PathBuf;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, LinuxResources, Spec};
use wharf_cgroups::{Entry, FreezerState, Hierarchy, Location, Manager, Stats};
use wharf_sys::process::{fork_into_cgroup, fork_with, Forked};

use crate::error::{render_chain, step_err, Result, RuntimeError, StepError};
use crate::id::ContainerId;

/// A container's cgroup.
#[derive(Debug)]
pub(crate) struct ContainerCgroup {
    manager: Box<dyn Manager>,
}

fn err(op: &'static str) -> impl FnOnce(wharf_cgroups::CgroupError) -> RuntimeError {
    move |source| RuntimeError::Cgroup { op, source }
}

impl ContainerCgroup {
    /// Where the cgroup at `linux.cgroupsPath` (default: the container id,
    /// below the runtime's own cgroup) goes, without making it. `None`
    /// when the host has no cgroup hierarchy at all.
    pub(crate) fn plan(spec: &Spec, id: &ContainerId) -> Result<Option<Self>> {
        let hierarchy = match Hierarchy::detect() {
            Ok(h) => h,
            Err(wharf_cgroups::CgroupError::NoHierarchy { .. }) => return Ok(None),
            Err(e) => return Err(err("detect cgroup hierarchies")(e)),
        };
        let linux = spec.linux().as_ref();
        let path = linux
            .and_then(|l| l.cgroups_path().clone())
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from(id.as_str()));
        let manager =
            wharf_cgroups::manager_for(&hierarchy, &path).map_err(err("resolve cgroupsPath"))?;
        Ok(Some(ContainerCgroup { manager }))
    }

    /// Creates the planned cgroup and applies `linux.resources`; on failure
    /// nothing is left.
    pub(crate) fn create(&self, spec: &Spec) -> Result<()> {
        self.manager.create().map_err(err("create cgroup"))?;
        let resources = spec
            .linux()
            .as_ref()
            .and_then(|l| l.resources().clone())
            .unwrap_or_default();
        let resources = self.with_runtime_devices(resources, spec);
        if let Err(e) = self.manager.apply(&resources) {
            let _ = self.manager.destroy();
            return Err(err("apply linux.resources")(e));
        }
        Ok(())
    }

    /// Appends, after the config's device rules, the rules the runtime needs
    /// and users cannot remove (as runc does): the OCI default devices, the
    /// configured `linux.devices`, and the terminal devices (pts, ptmx,
    /// console, tty), all `rwm`. Unlike runc, no wildcard `mknod` rule. On
    /// cgroup v2 the same rules become the cgroup's eBPF device program.
    fn with_runtime_devices(&self, mut resources: LinuxResources, spec: &Spec) -> LinuxResources {
        let mut rules = resources.devices().clone().unwrap_or_default();
        if rules.is_empty() {
            // No rule, no restriction: a new cgroup allows every device.
            return resources;
        }
        let rule = |typ: LinuxDeviceType, major: Option<i64>, minor: Option<i64>| {
            let mut r = LinuxDeviceCgroup::default();
            r.set_allow(true);
            r.set_typ(Some(typ));
            r.set_major(major);
            r.set_minor(minor);
            r.set_access(Some("rwm".into()));
            r
        };
        for (major, minor) in [
            (1, 3),
            (1, 5),
            (1, 7),
            (1, 8),
            (1, 9),
            (5, 0),
            (5, 1),
            (5, 2),
        ] {
            rules.push(rule(LinuxDeviceType::C, Some(major), Some(minor)));
        }
        rules.push(rule(LinuxDeviceType::C, Some(136), None));
        for dev in spec
            .linux()
            .as_ref()
            .and_then(|l| l.devices().as_ref())
            .into_iter()
            .flatten()
        {
            let typ = match dev.typ() {
                LinuxDeviceType::B => LinuxDeviceType::B,
                _ => LinuxDeviceType::C,
            };
            if dev.typ() != LinuxDeviceType::P {
                rules.push(rule(typ, Some(dev.major()), Some(dev.minor())));
            }
        }
        resources.set_devices(Some(rules));
        resources
    }

    /// The cgroup recorded in a container's state.
    pub(crate) fn at(location: &Location) -> Self {
        ContainerCgroup {
            manager: location.manager(),
        }
    }

    pub(crate) fn location(&self) -> Location {
        self.manager.location()
    }

    /// Opens what a child needs to enter the cgroup itself (see
    /// [`fork_entering`]), before the fork.
    pub(crate) fn entry(&self) -> Result<Entry> {
        self.manager
            .entry()
            .map_err(err("open the cgroup for a process to enter"))
    }

    pub(crate) fn pids(&self) -> Result<Vec<i32>> {
        let mut pids = self.manager.pids().map_err(err("list cgroup processes"))?;
        pids.sort_unstable();
        Ok(pids)
    }

    pub(crate) fn frozen(&self) -> bool {
        matches!(self.manager.freezer_state(), Ok(FreezerState::Frozen))
    }

    pub(crate) fn freeze(&self) -> Result<()> {
        self.manager.freeze().map_err(err("freeze cgroup"))
    }

    pub(crate) fn thaw(&self) -> Result<()> {
        self.manager.thaw().map_err(err("thaw cgroup"))
    }

    /// Applies new resources (with the runtime's device rules, as at create).
    pub(crate) fn update(&self, resources: &LinuxResources, spec: &Spec) -> Result<()> {
        let resources = self.with_runtime_devices(resources.clone(), spec);
        self.manager
            .apply(&resources)
            .map_err(err("update resources"))
    }

    pub(crate) fn stats(&self) -> Result<Stats> {
        self.manager.stats().map_err(err("read cgroup stats"))
    }

    /// Kills whatever is left inside and removes the cgroup.
    pub(crate) fn destroy(&self) -> Result<()> {
        if !self.pids().unwrap_or_default().is_empty() {
            // A frozen cgroup cannot die.
            let _ = self.manager.thaw();
            self.manager
                .kill_all()
                .map_err(err("kill cgroup processes"))?;
        }
        self.manager.destroy().map_err(err("remove cgroup"))
    }
}

/// Forks with `flags` (as [`fork_with`]) a child that is to run in the
/// cgroup `entry` opens, without the move by pid that waits for the
/// cgroup-wide lock: the child is created in the v2 directory where the
/// kernel allows (`clone3`, returns `true`), and enters the v1 hierarchies
/// itself, first thing ([`enter`]). Returns `false` when the parent must
/// still move it into the v2 directory ([`Entry::add_v2`]).
pub(crate) fn fork_entering(flags: u64, entry: Option<&Entry>) -> std::io::Result<(Forked, bool)> {
    if let Some(dir) = entry.and_then(Entry::v2_dir) {
        match fork_into_cgroup(flags, dir) {
            Ok(forked) => return Ok((forked, true)),
            Err(e) => {
                tracing::debug!(error = %e, "clone3 into the cgroup failed; forking and moving the child")
            }
        }
    }
    Ok((fork_with(flags)?, false))
}

/// In the child of [`fork_entering`], before anything else: enters the
/// cgroup's v1 hierarchies (the child is single-threaded) and closes the
/// descriptors.
pub(crate) fn enter(entry: Option<Entry>) -> std::result::Result<(), StepError> {
    let Some(entry) = entry else {
        return Ok(());
    };
    entry
        .join_self()
        .map_err(|e| step_err("enter the container's cgroup", render_chain(&e)))
}
