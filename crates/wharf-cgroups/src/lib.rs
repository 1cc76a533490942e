//! cgroup v1 and v2 managers behind one [`Manager`] trait: detecting the
//! host's hierarchies ([`Hierarchy::detect`]), creating a cgroup for an OCI
//! `cgroupsPath`, applying `linux.resources` (with runc's v1→v2 conversions),
//! moving processes in (by pid, or [`Entry`] for a child to enter without the
//! cgroup-wide wait a move by pid costs), freezing, killing everything inside, reading stats and
//! removing the cgroup.
//!
//! Resources become a plan first (the list of file writes, per version, unit
//! tested), then one function writes it and names the file and value that
//! failed.
//!
//! This crate must not know containers or bundles: it sees an OCI
//! `LinuxResources` and a cgroup path, never a container id, a config or a
//! state directory. Its callers (`wharf-runtime`) own that vocabulary.

mod devices_bpf;
mod entry;
mod error;
mod files;
mod hierarchy;
mod manager;
mod plan;
mod v1;
mod v2;

pub use entry::Entry;
pub use error::{CgroupError, ErrorKind};
pub use hierarchy::{parse_mountinfo, CgroupMount, Hierarchy, V1Mount};
pub use manager::{
    manager_for, CpuStats, FreezerState, IoStats, Location, Manager, MemoryStats, PidsStats, Stats,
};
pub use v1::V1Manager;
pub use v2::V2Manager;
