//! Wharf's OCI runtime: turns a bundle (`config.json` + rootfs) into a
//! running container process, and manages it through the lifecycle of the
//! OCI runtime spec (create, start, state, kill, delete) plus `exec`.
//!
//! It builds containers from kernel primitives: namespaces (new or joined),
//! id maps, the rootfs in a private mount namespace with every mount made on
//! a descriptor inside the root, pivot_root, masked and read-only paths,
//! devices, capabilities, no_new_privs, seccomp, rlimits and hooks.
//!
//! It must not know images, registries, networks (beyond joining a netns by
//! path) or SQLite. Its callers are the runc-compatible command line in the
//! `wharf` binary and, later, the engine. All entry points must be called
//! from a single-threaded process: they fork.

mod caps;
mod cgroup;
mod cgroupfs;
mod config;
mod container;
mod default_spec;
mod error;
mod exec;
mod features;
mod foreground;
mod hooks;
mod id;
mod idmap;
mod init;
mod mounts;
mod process;
mod rootfs;
mod seccomp;
pub mod signal;
mod state;
mod sync;
mod sysctl;

use std::os::fd::OwnedFd;
use std::path::PathBuf;

pub use caps::parse_names as parse_capabilities;
pub use container::CreateRequest;
pub use default_spec::default_spec;
pub use error::{render_chain, ErrorKind, Result, RuntimeError};
pub use exec::{ExecOverrides, ExecProcess, ExecRequest};
pub use features::features;
pub use id::ContainerId;
pub use seccomp::{compile_program as compile_seccomp_program, default_seccomp};
pub use state::{ContainerState, Status};
pub use wharf_cgroups::Stats;

use state::StateRoot;

/// The OCI runtime spec version this runtime implements.
pub const OCI_VERSION: &str = "1.2.0";

/// The runtime, over one state root (`--root`).
#[derive(Debug, Clone)]
pub struct Runtime {
    root: StateRoot,
}

/// How `run` and `exec` relate to their process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attach {
    /// Return once the process runs.
    Detach,
    /// Stay its parent: forward signals, relay the terminal, return its
    /// exit status.
    Foreground,
}

impl Runtime {
    /// A runtime keeping its state under `root`.
    pub fn new(root: PathBuf) -> Self {
        Self {
            root: StateRoot::new(root),
        }
    }

    /// Creates a container; its init waits for [`Runtime::start`].
    pub fn create(&self, req: &CreateRequest) -> Result<ContainerState> {
        let created = container::create(&self.root, req, false)?;
        Ok(created.record.to_state(&self.root))
    }

    /// Creates a container for a caller that relays the container's
    /// terminal itself (the engine's monitor): with `process.terminal` and no
    /// `console_socket`, returns the terminal's master; otherwise as
    /// [`Runtime::create`]. The init inherits the caller's stdio otherwise.
    pub fn create_with_terminal(
        &self,
        req: &CreateRequest,
    ) -> Result<(ContainerState, Option<OwnedFd>)> {
        let created = container::create(&self.root, req, true)?;
        let master = match &created.console {
            Some(sock) => match receive_master(sock) {
                Ok(m) => Some(m),
                Err(e) => {
                    let _ = container::delete(&self.root, &req.id, true);
                    return Err(e);
                }
            },
            None => None,
        };
        Ok((created.record.to_state(&self.root), master))
    }

    /// Starts a created container's user process.
    pub fn start(&self, id: &ContainerId) -> Result<()> {
        container::start(&self.root, id).map(|_| ())
    }

    /// Creates and starts a container. In the foreground, waits for it,
    /// deletes it, and returns its exit status; detached, returns 0.
    pub fn run(&self, req: &CreateRequest, attach: Attach) -> Result<i32> {
        if attach == Attach::Detach {
            container::create(&self.root, req, false)?;
            if let Err(e) = container::start(&self.root, &req.id) {
                let _ = container::delete(&self.root, &req.id, true);
                return Err(e);
            }
            return Ok(0);
        }
        let block = foreground::SignalBlock::new()?;
        let created = container::create(&self.root, req, true)?;
        let master = match &created.console {
            Some(sock) => Some(receive_master(sock)?),
            None => None,
        };
        if let Err(e) = container::start(&self.root, &req.id) {
            let _ = container::delete(&self.root, &req.id, true);
            return Err(e);
        }
        let status = foreground::wait(created.record.pid, master, &block);
        let deleted = container::delete(&self.root, &req.id, true);
        let status = status?;
        deleted?;
        Ok(status)
    }

    /// The state of one container.
    pub fn state(&self, id: &ContainerId) -> Result<ContainerState> {
        Ok(self.root.load(id)?.to_state(&self.root))
    }

    /// Every container under the state root.
    pub fn list(&self) -> Result<Vec<ContainerState>> {
        let mut out = Vec::new();
        for id in self.root.ids()? {
            match self.root.load(&id) {
                Ok(record) => out.push(record.to_state(&self.root)),
                Err(RuntimeError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Sends `signal` to the container's init (and, with `all`, to all its
    /// processes).
    pub fn kill(&self, id: &ContainerId, signal: i32, all: bool) -> Result<()> {
        container::kill(&self.root, id, signal, all)
    }

    /// Deletes a stopped or created container (a running one with `force`).
    pub fn delete(&self, id: &ContainerId, force: bool) -> Result<()> {
        container::delete(&self.root, id, force)
    }

    /// Freezes every process of a running container (its cgroup).
    pub fn pause(&self, id: &ContainerId) -> Result<()> {
        container::pause(&self.root, id)
    }

    /// Thaws a paused container.
    pub fn resume(&self, id: &ContainerId) -> Result<()> {
        container::resume(&self.root, id)
    }

    /// Applies new `linux.resources` to a live container.
    pub fn update(
        &self,
        id: &ContainerId,
        resources: &oci_spec::runtime::LinuxResources,
    ) -> Result<()> {
        container::update(&self.root, id, resources)
    }

    /// The container's current resources (for `update` to start from).
    pub fn resources(&self, id: &ContainerId) -> Result<oci_spec::runtime::LinuxResources> {
        let record = self.root.load(id)?;
        Ok(record
            .config
            .linux()
            .as_ref()
            .and_then(|l| l.resources().clone())
            .unwrap_or_default())
    }

    /// Resource usage from the container's cgroup.
    pub fn stats(&self, id: &ContainerId) -> Result<Stats> {
        container::stats(&self.root, id)
    }

    /// Pids of the container's processes, in the runtime's pid namespace.
    pub fn pids(&self, id: &ContainerId) -> Result<Vec<i32>> {
        container::pids(&self.root.load(id)?)
    }

    /// Runs another process in the container; returns its exit status in
    /// the foreground, 0 detached.
    pub fn exec(&self, req: &ExecRequest, attach: Attach) -> Result<i32> {
        if attach == Attach::Detach {
            exec::exec(&self.root, req, false)?;
            return Ok(0);
        }
        let block = foreground::SignalBlock::new()?;
        let started = exec::exec(&self.root, req, true)?;
        let master = match &started.console {
            Some(sock) => Some(receive_master(sock)?),
            None => None,
        };
        foreground::wait(started.pid, master, &block)
    }
}

fn receive_master(sock: &OwnedFd) -> Result<OwnedFd> {
    use std::os::fd::AsFd;
    let mut buf = [0u8; 64];
    wharf_sys::console::recv_fd(sock.as_fd(), &mut buf)
        .map(|(fd, _)| fd)
        .map_err(|e| RuntimeError::sys("receive the terminal master", e))
}
