//! The engine's error type.

/// What kind of failure an error is (STYLE.md §3): the CLI's exit codes and
/// the API's status codes come from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed.
    InvalidArgument,
    /// The object does not exist.
    NotFound,
    /// The object exists already.
    AlreadyExists,
    /// The object's state forbids the operation.
    Conflict,
    /// Nothing had to be done.
    NotModified,
    /// Refused for lack of privilege or credentials.
    PermissionDenied,
    /// A resource or remote service is unavailable.
    Unavailable,
    /// A failure inside Wharf or the kernel.
    Internal,
}

/// Every failure of the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The image store failed.
    #[error(transparent)]
    Image(Box<wharf_image::ImageError>),
    /// The registry client failed.
    #[error(transparent)]
    Registry(Box<wharf_registry::RegistryError>),
    /// A network operation failed.
    #[error(transparent)]
    Net(Box<wharf_net::NetError>),
    /// A host port to publish cannot be bound (taken by a process or
    /// another container).
    #[error("publish port {port}: cannot reserve the host port")]
    PortUnavailable {
        /// `ip:port/proto`.
        port: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A request is malformed.
    #[error("{reason}")]
    InvalidArgument {
        /// What is wrong.
        reason: String,
    },
    /// The async runtime for network operations could not start.
    #[error("start the network runtime")]
    Runtime(#[source] std::io::Error),
    /// A blocking task of a network operation failed to complete.
    #[error("{operation}: worker task failed")]
    Task {
        /// The operation.
        operation: &'static str,
        /// Why the task ended.
        #[source]
        source: tokio::task::JoinError,
    },
    /// Neither the request nor the image gives a command to run.
    #[error("no command specified: the image has no entrypoint or cmd and none was given")]
    NoCommand,
    /// A `--user` name has no entry in the image's /etc/passwd.
    #[error("unable to find user {user:?}: no matching entry in the image's /etc/passwd")]
    UnknownUser {
        /// The name asked for.
        user: String,
    },
    /// A group name has no entry in the image's /etc/group.
    #[error("unable to find group {group:?}: no matching entry in the image's /etc/group")]
    UnknownGroup {
        /// The name asked for.
        group: String,
    },
    /// A numeric uid or gid is out of range (runc's 0-2147483647) or does not parse.
    #[error("invalid uid or gid {value:?}: must be a number from 0 to 2147483647 or a name")]
    InvalidId {
        /// The value given.
        value: String,
    },
    /// A file of the image (/etc/passwd, /etc/group) could not be read.
    #[error("read {path} in the image")]
    ReadImageFile {
        /// The path inside the rootfs.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A capability name is not known.
    #[error("unknown capability {name:?}")]
    UnknownCapability {
        /// The name given.
        name: String,
    },
    /// The planned runtime spec does not form a valid OCI document (a bug).
    #[error("assemble the runtime spec")]
    AssembleSpec(#[source] serde_json::Error),
    /// A container name is taken (the name's UNIQUE constraint decided).
    #[error("name \"{name}\" is already in use by container {holder}")]
    NameInUse {
        /// The name asked for.
        name: String,
        /// The short id of the container that has it.
        holder: String,
    },
    /// No container has this id, name or id prefix.
    #[error("no such container: {reference}")]
    NotFound {
        /// What was looked up.
        reference: String,
    },
    /// An id prefix matches several containers.
    #[error("container id prefix \"{prefix}\" matches more than one container")]
    Ambiguous {
        /// The prefix given.
        prefix: String,
    },
    /// The container database failed.
    #[error("{operation}")]
    Database {
        /// The operation, naming the object (`insert a container`).
        operation: &'static str,
        /// Why.
        #[source]
        source: rusqlite::Error,
    },
    /// A container name breaks Docker's rule.
    #[error("invalid container name \"{name}\": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")]
    InvalidContainerName {
        /// The name given.
        name: String,
    },
    /// A container id is not 64 lowercase hex digits.
    #[error("invalid container id \"{id}\": expected 64 lowercase hex digits")]
    InvalidContainerId {
        /// The id given.
        id: String,
    },
    /// A container's state does not allow the change asked for.
    #[error("container {id} is {from}: cannot make it {to}")]
    InvalidTransition {
        /// The short id.
        id: String,
        /// Its state.
        from: crate::state::ContainerState,
        /// The state asked for.
        to: crate::state::ContainerState,
    },
    /// The container database is newer than this Wharf.
    #[error("container database {} has schema version {found}, this Wharf knows up to {known}", path.display())]
    SchemaTooNew {
        /// The database file.
        path: std::path::PathBuf,
        /// Its version.
        found: i64,
        /// The newest this Wharf knows.
        known: i64,
    },
    /// The container runtime failed.
    #[error("{operation} container {id}")]
    ContainerRuntime {
        /// The operation (`create`, `start`, `kill`).
        operation: &'static str,
        /// The short id.
        id: String,
        /// Why.
        #[source]
        source: Box<wharf_runtime::RuntimeError>,
    },
    /// The container's command does not exist in the image.
    #[error("{chain}")]
    CommandNotFound {
        /// The runtime's rendered error chain.
        chain: String,
    },
    /// The container's command cannot be executed (permission denied).
    #[error("{chain}")]
    CommandNotExecutable {
        /// The runtime's rendered error chain.
        chain: String,
    },
    /// A record's `config` is not a container config.
    #[error("read the container's configuration")]
    ReadConfig(#[source] serde_json::Error),
    /// The container is not running (or paused) for an operation that
    /// needs it to be.
    #[error("container {id}: {reason}")]
    NotRunning {
        /// The short id.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// The container runs and the operation needs it stopped.
    #[error("cannot remove container {id}: container is {state}: stop the container before removing or force remove")]
    ContainerRunning {
        /// The short id.
        id: String,
        /// Its state.
        state: crate::state::ContainerState,
    },
    /// The container's monitor reported a failure to start it.
    #[error("start container {id}: {reason}")]
    StartFailed {
        /// The short id.
        id: String,
        /// The monitor's rendered error chain.
        reason: String,
    },
    /// The journald log driver needs journald's native socket.
    #[error("journald is not running on this host: {} not found", path.display())]
    JournaldNotRunning {
        /// The socket looked for.
        path: std::path::PathBuf,
    },
    /// A log entry could not be sent to journald.
    #[error("send a log entry to journald at {}", path.display())]
    SendJournal {
        /// journald's socket.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The container's logging driver keeps nothing to read back (`none`).
    #[error("configured logging driver does not support reading")]
    LogsNotReadable {
        /// The driver.
        driver: crate::logs::LogDriver,
    },
    /// Wharf does not read journald's journal back (yet).
    #[error("reading logs back from journald is not supported: use journalctl CONTAINER_ID_FULL=<container id>")]
    JournaldNotReadable,
    /// The consumer of a container's logs failed (its output was closed).
    #[error("forward the logs read from {}", path.display())]
    ForwardLogs {
        /// The log file being read.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A path a `cp` reads does not exist in the container.
    #[error("could not find the file {path} in container {container}")]
    PathNotFound {
        /// The path inside the container.
        path: String,
        /// The container's name.
        container: String,
    },
    /// A file or directory of the engine's state failed.
    #[error("{operation} {path}")]
    Io {
        /// The operation (`create directory`, `lock`).
        operation: &'static str,
        /// The path.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A volume name breaks Docker's rule.
    #[error("invalid volume name \"{name}\": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed, at least two characters (to mount a host directory, use an absolute path)")]
    InvalidVolumeName {
        /// The name given.
        name: String,
    },
    /// A volume driver other than `local` was asked for.
    #[error("volume driver {driver} is not supported: only local")]
    UnsupportedVolumeDriver {
        /// The driver given.
        driver: String,
    },
    /// A `local` driver option is unknown or incomplete.
    #[error("invalid volume option {option:?}: {reason}")]
    InvalidVolumeOption {
        /// The option's key.
        option: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A volume filter is unknown or malformed.
    #[error("invalid volume filter {filter:?}: {reason}")]
    InvalidVolumeFilter {
        /// The filter given.
        filter: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A volume of this name exists with other driver options.
    #[error("create volume {name}: it exists with different options")]
    VolumeOptionsConflict {
        /// The volume's name.
        name: String,
    },
    /// No volume has this name.
    #[error("no such volume: {name}")]
    VolumeNotFound {
        /// The name looked up.
        name: String,
    },
    /// A volume that containers use cannot be removed.
    #[error("volume {name} is in use by container(s) {}", containers.join(", "))]
    VolumeInUse {
        /// The volume's name.
        name: String,
        /// Short ids of the containers using it.
        containers: Vec<String>,
    },
    /// A volume's filesystem could not be mounted on its data directory.
    #[error("mount volume {name} ({fstype}) at {}", target.display())]
    MountVolume {
        /// The volume's name.
        name: String,
        /// The filesystem type (`tmpfs`, `none` for a bind mount).
        fstype: String,
        /// The data directory.
        target: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A volume's filesystem could not be unmounted.
    #[error("unmount volume {name} at {}", target.display())]
    UnmountVolume {
        /// The volume's name.
        name: String,
        /// The data directory.
        target: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The image's content at a mount destination could not be copied into
    /// a volume.
    #[error("copy {path} of the image into volume {name}")]
    CopyUp {
        /// The volume's name.
        name: String,
        /// The path inside the rootfs that failed.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A pod name breaks the container name rule.
    #[error("invalid pod name \"{name}\": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")]
    InvalidPodName {
        /// The name given.
        name: String,
    },
    /// A pod id is not 64 lowercase hex digits.
    #[error("invalid pod id \"{id}\": expected 64 lowercase hex digits")]
    InvalidPodId {
        /// The id given.
        id: String,
    },
    /// No pod has this id, name or id prefix.
    #[error("no such pod: {reference}")]
    PodNotFound {
        /// What was looked up.
        reference: String,
    },
    /// An id prefix matches several pods.
    #[error("pod id prefix \"{prefix}\" matches more than one pod")]
    PodAmbiguous {
        /// The prefix given.
        prefix: String,
    },
    /// A pod name is taken (the name's UNIQUE constraint decided).
    #[error("pod name \"{name}\" is already in use by pod {holder}")]
    PodNameInUse {
        /// The name asked for.
        name: String,
        /// The short id of the pod that has it.
        holder: String,
    },
    /// A pod still has containers where it must have none.
    #[error("pod {name} still has {count} container(s)")]
    PodHasContainers {
        /// The pod's name.
        name: String,
        /// How many.
        count: usize,
    },
    /// A pod has running containers and the operation needs them stopped.
    #[error("cannot remove pod {name}: it has {running} running container(s): stop the pod before removing or force remove (pod rm -f)")]
    PodRunning {
        /// The pod's name.
        name: String,
        /// How many containers run (its infra included).
        running: usize,
    },
    /// A pod's infra container is removed with its pod only.
    #[error("container {id} is the infra container of pod {pod}{}: remove the pod instead (pod rm)", if *members > 0 { format!(", which has {members} other container(s)") } else { String::new() })]
    InfraContainer {
        /// The short id.
        id: String,
        /// The pod's name.
        pod: String,
        /// How many other containers are in the pod.
        members: usize,
    },
}

impl From<wharf_image::ImageError> for EngineError {
    fn from(e: wharf_image::ImageError) -> Self {
        Self::Image(Box::new(e))
    }
}

impl From<wharf_registry::RegistryError> for EngineError {
    fn from(e: wharf_registry::RegistryError) -> Self {
        Self::Registry(Box::new(e))
    }
}

impl EngineError {
    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            reason: reason.into(),
        }
    }

    /// Classifies the error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Image(e) => match e.kind() {
                wharf_image::ErrorKind::InvalidArgument => ErrorKind::InvalidArgument,
                wharf_image::ErrorKind::NotFound => ErrorKind::NotFound,
                wharf_image::ErrorKind::AlreadyExists => ErrorKind::AlreadyExists,
                wharf_image::ErrorKind::Conflict => ErrorKind::Conflict,
                wharf_image::ErrorKind::NotModified => ErrorKind::NotModified,
                wharf_image::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
                wharf_image::ErrorKind::Unavailable => ErrorKind::Unavailable,
                wharf_image::ErrorKind::Internal => ErrorKind::Internal,
            },
            Self::Registry(e) => match e.kind() {
                wharf_registry::ErrorKind::InvalidArgument => ErrorKind::InvalidArgument,
                wharf_registry::ErrorKind::NotFound => ErrorKind::NotFound,
                wharf_registry::ErrorKind::AlreadyExists => ErrorKind::AlreadyExists,
                wharf_registry::ErrorKind::Conflict => ErrorKind::Conflict,
                wharf_registry::ErrorKind::NotModified => ErrorKind::NotModified,
                wharf_registry::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
                wharf_registry::ErrorKind::Unavailable => ErrorKind::Unavailable,
                wharf_registry::ErrorKind::Internal => ErrorKind::Internal,
            },
            Self::Net(e) => match e.kind() {
                wharf_net::ErrorKind::InvalidArgument => ErrorKind::InvalidArgument,
                wharf_net::ErrorKind::NotFound => ErrorKind::NotFound,
                wharf_net::ErrorKind::AlreadyExists => ErrorKind::AlreadyExists,
                wharf_net::ErrorKind::Conflict => ErrorKind::Conflict,
                wharf_net::ErrorKind::NotModified => ErrorKind::NotModified,
                wharf_net::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
                wharf_net::ErrorKind::Unavailable => ErrorKind::Unavailable,
                wharf_net::ErrorKind::Internal => ErrorKind::Internal,
            },
            Self::PortUnavailable { .. } => ErrorKind::Conflict,
            Self::InvalidArgument { .. } => ErrorKind::InvalidArgument,
            Self::Runtime(_) | Self::Task { .. } => ErrorKind::Internal,
            Self::NoCommand
            | Self::UnknownUser { .. }
            | Self::UnknownGroup { .. }
            | Self::InvalidId { .. }
            | Self::UnknownCapability { .. } => ErrorKind::InvalidArgument,
            Self::ReadImageFile { .. } | Self::AssembleSpec(_) => ErrorKind::Internal,
            Self::NameInUse { .. } => ErrorKind::AlreadyExists,
            Self::NotFound { .. } | Self::PathNotFound { .. } => ErrorKind::NotFound,
            Self::Ambiguous { .. } | Self::InvalidTransition { .. } => ErrorKind::Conflict,
            Self::InvalidContainerName { .. } | Self::InvalidContainerId { .. } => {
                ErrorKind::InvalidArgument
            }
            Self::Database { .. } | Self::SchemaTooNew { .. } | Self::Io { .. } => {
                ErrorKind::Internal
            }
            Self::JournaldNotRunning { .. } | Self::SendJournal { .. } => ErrorKind::Unavailable,
            Self::LogsNotReadable { .. } | Self::JournaldNotReadable => ErrorKind::InvalidArgument,
            Self::ForwardLogs { .. } => ErrorKind::Internal,
            Self::InvalidVolumeName { .. }
            | Self::UnsupportedVolumeDriver { .. }
            | Self::InvalidVolumeOption { .. }
            | Self::InvalidVolumeFilter { .. } => ErrorKind::InvalidArgument,
            Self::VolumeOptionsConflict { .. } | Self::VolumeInUse { .. } => ErrorKind::Conflict,
            Self::VolumeNotFound { .. } => ErrorKind::NotFound,
            Self::MountVolume { .. } | Self::UnmountVolume { .. } | Self::CopyUp { .. } => {
                ErrorKind::Internal
            }
            Self::ContainerRuntime { source, .. } => match source.kind() {
                wharf_runtime::ErrorKind::NotFound => ErrorKind::NotFound,
                wharf_runtime::ErrorKind::InvalidArgument => ErrorKind::InvalidArgument,
                _ => ErrorKind::Internal,
            },
            Self::CommandNotFound { .. } | Self::CommandNotExecutable { .. } => {
                ErrorKind::InvalidArgument
            }
            Self::StartFailed { .. } | Self::ReadConfig(_) => ErrorKind::Internal,
            Self::NotRunning { .. } | Self::ContainerRunning { .. } => ErrorKind::Conflict,
            Self::InvalidPodName { .. } | Self::InvalidPodId { .. } => ErrorKind::InvalidArgument,
            Self::PodNotFound { .. } => ErrorKind::NotFound,
            Self::PodNameInUse { .. } => ErrorKind::AlreadyExists,
            Self::PodAmbiguous { .. }
            | Self::PodHasContainers { .. }
            | Self::PodRunning { .. }
            | Self::InfraContainer { .. } => ErrorKind::Conflict,
        }
    }
}
