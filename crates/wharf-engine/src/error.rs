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
            Self::InvalidArgument { .. } => ErrorKind::InvalidArgument,
            Self::Runtime(_) | Self::Task { .. } => ErrorKind::Internal,
        }
    }
}
