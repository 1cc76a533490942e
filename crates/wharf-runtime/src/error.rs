//! The runtime's error type.

use std::io;
use std::path::PathBuf;

/// What kind of failure an error is, for exit codes and API status mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request or the bundle is malformed.
    InvalidArgument,
    /// The container (or a file the request names) does not exist.
    NotFound,
    /// A container with that id already exists.
    AlreadyExists,
    /// The container is in the wrong state for the operation.
    Conflict,
    /// The kernel or the caller's privileges refused the operation.
    PermissionDenied,
    /// A failure inside the runtime or the kernel.
    Internal,
}

/// Every failure of the OCI runtime.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The container id does not match `^[\w+.-]+$`.
    #[error("invalid container id {id:?}: use letters, digits, '_', '+', '-' and '.', not only dots, at most 1024 characters")]
    InvalidId {
        /// The rejected id.
        id: String,
    },
    /// `config.json` could not be read.
    #[error("read {path}")]
    ReadConfig {
        /// Path of the config.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// `config.json` is not a valid OCI runtime config.
    #[error("parse {path}")]
    ParseConfig {
        /// Path of the config.
        path: PathBuf,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
    /// The config is well-formed but asks for something invalid.
    #[error("invalid config: {reason}")]
    InvalidConfig {
        /// What is wrong.
        reason: String,
    },
    /// A request argument is invalid.
    #[error("{reason}")]
    InvalidArgument {
        /// What is wrong.
        reason: String,
    },
    /// No container with this id under the state root.
    #[error("container {id} does not exist")]
    NotFound {
        /// The id.
        id: String,
    },
    /// A container with this id exists already.
    #[error("container {id} already exists")]
    AlreadyExists {
        /// The id.
        id: String,
    },
    /// The container's status does not allow the operation.
    #[error("cannot {op} container {id}: it is {status}")]
    WrongStatus {
        /// The operation.
        op: &'static str,
        /// The container.
        id: String,
        /// Its status.
        status: &'static str,
    },
    /// A host-side operation failed.
    #[error("{op} {}", path.display())]
    Host {
        /// The operation.
        op: &'static str,
        /// Its object.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// A step of the container's setup failed inside the container's init
    /// (the message is the init's rendered error chain).
    #[error("container init: {chain}")]
    Init {
        /// The error chain, rendered by the init.
        chain: String,
    },
    /// Setting up or starting an exec'd process failed inside the container
    /// (the message is that process's rendered error chain).
    #[error("exec in container: {chain}")]
    Exec {
        /// The error chain, rendered by the process.
        chain: String,
    },
    /// A hook failed or timed out.
    #[error("{phase} hook {}: {reason}", path.display())]
    Hook {
        /// The hook phase (`prestart`, `createRuntime`, …).
        phase: &'static str,
        /// The hook binary.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// Sending a signal failed.
    #[error("send signal {signal} to container {id}")]
    Signal {
        /// The container.
        id: String,
        /// The signal number.
        signal: i32,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// A cgroup operation failed.
    #[error("cgroup: {op}")]
    Cgroup {
        /// The operation.
        op: &'static str,
        /// Cause.
        #[source]
        source: wharf_cgroups::CgroupError,
    },
    /// A syscall on the container's behalf failed.
    #[error("{op}")]
    Sys {
        /// The operation.
        op: String,
        /// Cause.
        #[source]
        source: io::Error,
    },
}

impl RuntimeError {
    /// Classifies the error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::InvalidId { .. }
            | Self::ParseConfig { .. }
            | Self::InvalidConfig { .. }
            | Self::InvalidArgument { .. } => ErrorKind::InvalidArgument,
            Self::ReadConfig { source, .. } if source.kind() == io::ErrorKind::NotFound => {
                ErrorKind::NotFound
            }
            Self::ReadConfig { .. } => ErrorKind::InvalidArgument,
            Self::NotFound { .. } => ErrorKind::NotFound,
            Self::AlreadyExists { .. } => ErrorKind::AlreadyExists,
            Self::WrongStatus { .. } => ErrorKind::Conflict,
            Self::Host { source, .. } | Self::Sys { source, .. } | Self::Signal { source, .. }
                if source.kind() == io::ErrorKind::PermissionDenied =>
            {
                ErrorKind::PermissionDenied
            }
            Self::Cgroup { source, .. } => match source.kind() {
                wharf_cgroups::ErrorKind::InvalidArgument => ErrorKind::InvalidArgument,
                wharf_cgroups::ErrorKind::NotFound => ErrorKind::NotFound,
                wharf_cgroups::ErrorKind::Conflict => ErrorKind::Conflict,
                wharf_cgroups::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
                wharf_cgroups::ErrorKind::Internal => ErrorKind::Internal,
            },
            Self::Host { .. }
            | Self::Sys { .. }
            | Self::Signal { .. }
            | Self::Init { .. }
            | Self::Exec { .. }
            | Self::Hook { .. } => ErrorKind::Internal,
        }
    }

    pub(crate) fn host(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Host {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn sys(op: impl Into<String>, source: impl Into<io::Error>) -> Self {
        Self::Sys {
            op: op.into(),
            source: source.into(),
        }
    }

    pub(crate) fn config(reason: impl Into<String>) -> Self {
        Self::InvalidConfig {
            reason: reason.into(),
        }
    }
}

/// Result alias of the runtime.
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// Renders an error and its sources as one line joined by ": ".
pub fn render_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

/// An error inside the container's init or an exec'd process before its
/// `execve`: the setup step that failed and why. Sent to the parent over the
/// sync socket as a rendered chain.
#[derive(Debug, thiserror::Error)]
#[error("{step}")]
pub(crate) struct StepError {
    pub(crate) step: String,
    #[source]
    pub(crate) source: io::Error,
}

/// Attaches the name of a setup step to an io result.
pub(crate) trait Step<T> {
    fn step(self, step: impl FnOnce() -> String) -> Result<T, StepError>;
}

impl<T, E: Into<io::Error>> Step<T> for std::result::Result<T, E> {
    fn step(self, step: impl FnOnce() -> String) -> Result<T, StepError> {
        self.map_err(|e| StepError {
            step: step(),
            source: e.into(),
        })
    }
}

/// Shorthand to build a [`StepError`] with no OS cause.
pub(crate) fn step_err(step: impl Into<String>, why: impl Into<String>) -> StepError {
    StepError {
        step: step.into(),
        source: io::Error::other(why.into()),
    }
}
