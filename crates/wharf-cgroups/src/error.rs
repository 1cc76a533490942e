//! The crate's one public error, [`CgroupError`], and its [`ErrorKind`].

use std::io;
use std::path::PathBuf;

/// What kind of failure a [`CgroupError`] is, for callers that map errors to
/// statuses (the API's HTTP codes, the CLI's exit codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The resources or the cgroup path are malformed, or ask for something the
    /// cgroup version cannot do.
    InvalidArgument,
    /// The cgroup, a controller or a cgroup file does not exist.
    NotFound,
    /// The cgroup is in a state that refuses the operation (busy, over the limit).
    Conflict,
    /// The kernel or the caller's privileges refused the operation.
    PermissionDenied,
    /// A failure inside the kernel or this crate.
    Internal,
}

/// Every failure of the cgroup managers.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// `/proc/self/mountinfo` or `/proc/self/cgroup` could not be read.
    #[error("read {path}")]
    ReadProc {
        /// The proc file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// No cgroup hierarchy is mounted.
    #[error("no cgroup hierarchy is mounted (no cgroup or cgroup2 entry in {path})")]
    NoHierarchy {
        /// The mountinfo file searched.
        path: PathBuf,
    },
    /// The caller's own cgroup (for a relative path) is not listed.
    #[error("find the caller's own cgroup for {controller:?} in /proc/self/cgroup")]
    OwnCgroup {
        /// The v1 controller, or `""` for the v2 hierarchy.
        controller: String,
    },
    /// The cgroup path is malformed.
    #[error("invalid cgroup path {path:?}: {reason}")]
    InvalidPath {
        /// The rejected path.
        path: PathBuf,
        /// Why it is rejected.
        reason: &'static str,
    },
    /// A resource value is out of range or inconsistent with another.
    #[error("invalid resources: {reason}")]
    InvalidResources {
        /// What is wrong, naming the field and value.
        reason: String,
    },
    /// The resources ask for something this cgroup version or host cannot do.
    #[error("{what} is not supported on {version}")]
    Unsupported {
        /// The field or feature.
        what: String,
        /// `cgroup v1` or `cgroup v2`.
        version: &'static str,
    },
    /// A resource needs a v1 controller that is not mounted.
    #[error("write {file} = {value:?}: the {controller} controller is not mounted")]
    ControllerMissing {
        /// The controller.
        controller: String,
        /// The file the write was for.
        file: String,
        /// The value to write.
        value: String,
    },
    /// `checkBeforeUpdate` and the new memory limit is below the current usage.
    #[error("memory limit {limit} is below the current usage {usage} of {path}")]
    LimitBelowUsage {
        /// The cgroup directory.
        path: PathBuf,
        /// The requested limit in bytes.
        limit: i64,
        /// The usage in bytes.
        usage: u64,
    },
    /// A cgroup directory could not be created.
    #[error("create cgroup {path}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// A cgroup directory could not be removed.
    #[error("remove cgroup {path}")]
    RemoveDir {
        /// The directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// A cgroup file could not be written.
    #[error("write {value:?} to {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The value.
        value: String,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// A cgroup file could not be read.
    #[error("read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// A cgroup file holds text that does not parse.
    #[error("parse {path}: unexpected content {content:?}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The content, or the offending part of it.
        content: String,
    },
    /// A process could not be signalled.
    #[error("signal process {pid} in {path}")]
    Signal {
        /// The process.
        pid: i32,
        /// The cgroup directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// A state change (freeze, thaw, empty) was not reached in time.
    #[error("{operation} {path}: not reached after {waited_ms} ms")]
    Timeout {
        /// What was waited for (`freeze`, `thaw`, `kill all processes in`).
        operation: &'static str,
        /// The cgroup directory.
        path: PathBuf,
        /// How long it waited.
        waited_ms: u64,
    },
    /// Loading or attaching the cgroup v2 device program failed.
    #[error("{operation} device program for {path}")]
    DeviceProgram {
        /// `load` or `attach`.
        operation: &'static str,
        /// The cgroup directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

impl CgroupError {
    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::InvalidPath { .. }
            | Self::InvalidResources { .. }
            | Self::Unsupported { .. }
            | Self::Parse { .. } => ErrorKind::InvalidArgument,
            Self::NoHierarchy { .. } | Self::OwnCgroup { .. } | Self::ControllerMissing { .. } => {
                ErrorKind::NotFound
            }
            Self::LimitBelowUsage { .. } | Self::Timeout { .. } => ErrorKind::Conflict,
            Self::DeviceProgram { .. } => ErrorKind::Internal,
            Self::ReadProc { source, .. }
            | Self::CreateDir { source, .. }
            | Self::RemoveDir { source, .. }
            | Self::Write { source, .. }
            | Self::Read { source, .. }
            | Self::Signal { source, .. } => match source.kind() {
                io::ErrorKind::NotFound => ErrorKind::NotFound,
                io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
                io::ErrorKind::ResourceBusy => ErrorKind::Conflict,
                io::ErrorKind::InvalidInput => ErrorKind::InvalidArgument,
                _ => ErrorKind::Internal,
            },
        }
    }

    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        Self::InvalidResources {
            reason: reason.into(),
        }
    }
}
