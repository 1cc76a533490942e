//! The registry client's error type.

use std::io;
use std::path::PathBuf;

use wharf_image::{Digest, ImageError};

/// What kind of failure an error is, for exit codes and API status mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A reference, a flag, a config file or a document from the registry is malformed.
    InvalidArgument,
    /// The registry has no such manifest or blob, or no credentials are stored.
    NotFound,
    /// The object exists already.
    AlreadyExists,
    /// The operation conflicts with the object's state.
    Conflict,
    /// Nothing had to be done.
    NotModified,
    /// The registry refused the credentials (401/403 after authenticating), or the
    /// registry is blocked by configuration.
    PermissionDenied,
    /// The network or the registry failed (connection, TLS, 5xx, retries spent).
    Unavailable,
    /// A failure inside Wharf.
    Internal,
}

/// Every failure of the registry client.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A request argument is invalid.
    #[error("{reason}")]
    InvalidArgument {
        /// What is wrong.
        reason: String,
    },
    /// A registries.conf file could not be read.
    #[error("read registries config {path}")]
    ReadConfig {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// A registries.conf file is not valid TOML or has wrong types.
    #[error("parse registries config {path}")]
    ParseConfig {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: Box<toml::de::Error>,
    },
    /// A registries.conf entry is invalid.
    #[error("invalid registries config {path}: {reason}")]
    InvalidConfig {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The configuration blocks the registry.
    #[error(
        "registry {registry} is blocked in the registries configuration (pulling {reference})"
    )]
    Blocked {
        /// The blocked registry (or prefix).
        registry: String,
        /// The reference being resolved.
        reference: String,
    },
    /// A credentials file could not be read or written.
    #[error("{op} credentials file {path}")]
    AuthFile {
        /// `read`, `write`, `replace`…
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// A credentials file is not valid JSON of the expected shape.
    #[error("parse credentials file {path}")]
    ParseAuthFile {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
    /// A credentials entry is malformed (bad base64, no `user:password`).
    #[error("invalid credentials for {registry} in {source_name}: {reason}")]
    InvalidCredentials {
        /// The registry.
        registry: String,
        /// Where they came from (a file, `--creds`, a helper).
        source_name: String,
        /// What is wrong.
        reason: String,
    },
    /// A docker credential helper failed.
    #[error("credential helper docker-credential-{helper} for {registry}: {reason}")]
    CredentialHelper {
        /// The helper's suffix (`pass`, `secretservice`, …).
        helper: String,
        /// The registry asked for.
        registry: String,
        /// What went wrong (exit status and stderr, or the parse failure).
        reason: String,
    },
    /// `logout` found no stored credentials for the registry.
    #[error("not logged in to {registry}")]
    NotLoggedIn {
        /// The registry.
        registry: String,
    },
    /// A CA certificate could not be read.
    #[error("read certificate {path}")]
    ReadCertificate {
        /// The file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// A CA certificate is not valid PEM.
    #[error("parse certificate {path}: {reason}")]
    ParseCertificate {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The HTTP client for a registry could not be built.
    #[error("set up the HTTP client for {registry}")]
    BuildClient {
        /// The registry.
        registry: String,
        /// Cause.
        #[source]
        source: reqwest::Error,
    },
    /// A request failed without an HTTP answer (connection, TLS, timeout), after
    /// retries.
    #[error("{method} {url}")]
    Request {
        /// HTTP method.
        method: String,
        /// The URL.
        url: String,
        /// Cause.
        #[source]
        source: reqwest::Error,
    },
    /// The registry answered with an unexpected status.
    #[error("{op} {url}: registry answered {status}{detail}")]
    Status {
        /// What was being done (`fetch manifest`, `upload blob`, …).
        op: &'static str,
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// The URL.
        url: String,
        /// HTTP status code.
        status: u16,
        /// `: <code>: <message>` from the registry's error body, or empty.
        detail: String,
    },
    /// The registry has no such manifest.
    #[error("manifest {reference} not found in {registry}/{repository}")]
    ManifestNotFound {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// The tag or digest.
        reference: String,
    },
    /// The registry has no such blob.
    #[error("blob {digest} not found in {registry}/{repository}")]
    BlobNotFound {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// The blob.
        digest: Digest,
    },
    /// The registry refused access after authentication (401/403).
    #[error("access to {registry}/{repository} denied ({status}) at {url}{detail}")]
    Denied {
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// The URL.
        url: String,
        /// HTTP status code.
        status: u16,
        /// `: <code>: <message>` from the registry's error body, or empty.
        detail: String,
    },
    /// A `WWW-Authenticate` challenge could not be understood.
    #[error("unsupported authentication challenge from {registry}: {challenge:?}")]
    Challenge {
        /// The registry.
        registry: String,
        /// The header value.
        challenge: String,
    },
    /// A token could not be obtained from the realm.
    #[error("get a token for {registry} from {realm}: {reason}")]
    Token {
        /// The registry.
        registry: String,
        /// The token endpoint.
        realm: String,
        /// What went wrong.
        reason: String,
    },
    /// A body exceeded its limit (a hostile or broken registry).
    #[error("{what} from {url} exceeds {limit} bytes")]
    TooLarge {
        /// What was being read.
        what: &'static str,
        /// The URL.
        url: String,
        /// The limit.
        limit: u64,
    },
    /// Content did not match its digest.
    #[error("{what} from {registry}/{repository} has digest {actual}, expected {expected}")]
    DigestMismatch {
        /// `manifest`, `config`, `blob`.
        what: &'static str,
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// The digest the descriptor or reference promised.
        expected: Box<Digest>,
        /// What the content hashes to.
        actual: Box<Digest>,
    },
    /// Content did not match its size.
    #[error(
        "{what} {digest} from {registry}/{repository} has {actual} bytes, expected {expected}"
    )]
    SizeMismatch {
        /// `manifest`, `config`, `blob`.
        what: &'static str,
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// The blob.
        digest: Digest,
        /// Size from the descriptor.
        expected: u64,
        /// Bytes received.
        actual: u64,
    },
    /// A manifest type Wharf does not pull.
    #[error("{reference}: {reason}")]
    UnsupportedManifest {
        /// The reference.
        reference: String,
        /// Why (schema 1, unknown media type, artifact).
        reason: String,
    },
    /// A manifest, index or config is malformed.
    #[error("invalid {what} {digest} from {registry}/{repository}: {reason}")]
    InvalidDocument {
        /// `manifest`, `index`, `config`.
        what: &'static str,
        /// The registry.
        registry: String,
        /// The repository.
        repository: String,
        /// Its digest.
        digest: Digest,
        /// What is wrong.
        reason: String,
    },
    /// An index has no manifest for the requested platform.
    #[error("{reference}: no image for platform {platform} (available: {available})")]
    NoMatchingPlatform {
        /// The reference.
        reference: String,
        /// The platform asked for.
        platform: String,
        /// The index's platforms, comma-separated.
        available: String,
    },
    /// The store refused or failed to ingest a blob.
    #[error("store {digest}")]
    Ingest {
        /// The blob.
        digest: Digest,
        /// Cause.
        #[source]
        source: Box<ImageError>,
    },
    /// Writing a blob into the store failed.
    #[error("write {digest} into the store")]
    WriteBlob {
        /// The blob.
        digest: Digest,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// A Wharf image type rejected a value from the registry or the caller.
    #[error("{op}")]
    Image {
        /// What was being parsed.
        op: String,
        /// Cause.
        #[source]
        source: Box<ImageError>,
    },
    /// The push source could not supply a blob.
    #[error("read blob {digest} to push")]
    ReadSource {
        /// The blob.
        digest: Digest,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// Compressing a layer failed.
    #[error("compress layer with {format}")]
    Compress {
        /// `gzip` or `zstd`.
        format: &'static str,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// A background task panicked or was cancelled.
    #[error("{op}: background task failed")]
    Task {
        /// What the task did.
        op: &'static str,
        /// Cause.
        #[source]
        source: tokio::task::JoinError,
    },
}

impl RegistryError {
    /// Classifies the error for exit codes and API status mapping.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::InvalidArgument { .. }
            | Self::ParseConfig { .. }
            | Self::InvalidConfig { .. }
            | Self::ParseAuthFile { .. }
            | Self::InvalidCredentials { .. }
            | Self::ParseCertificate { .. }
            | Self::UnsupportedManifest { .. }
            | Self::InvalidDocument { .. }
            | Self::Challenge { .. } => ErrorKind::InvalidArgument,
            Self::ReadConfig { source, .. }
            | Self::AuthFile { source, .. }
            | Self::ReadCertificate { source, .. }
            | Self::ReadSource { source, .. }
            | Self::WriteBlob { source, .. }
            | Self::Compress { source, .. } => io_kind(source),
            Self::Blocked { .. } | Self::Denied { .. } => ErrorKind::PermissionDenied,
            Self::NotLoggedIn { .. }
            | Self::ManifestNotFound { .. }
            | Self::BlobNotFound { .. }
            | Self::NoMatchingPlatform { .. } => ErrorKind::NotFound,
            Self::Status { status, .. } => status_kind(*status),
            Self::Request { .. }
            | Self::Token { .. }
            | Self::TooLarge { .. }
            | Self::DigestMismatch { .. }
            | Self::SizeMismatch { .. }
            | Self::CredentialHelper { .. } => ErrorKind::Unavailable,
            Self::Ingest { source, .. } | Self::Image { source, .. } => image_kind(source.kind()),
            Self::BuildClient { .. } | Self::Task { .. } => ErrorKind::Internal,
        }
    }

    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            reason: reason.into(),
        }
    }
}

fn io_kind(e: &io::Error) -> ErrorKind {
    match e.kind() {
        io::ErrorKind::NotFound => ErrorKind::NotFound,
        io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
        io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput => ErrorKind::InvalidArgument,
        _ => ErrorKind::Internal,
    }
}

/// The kind of an unexpected HTTP status.
pub(crate) fn status_kind(status: u16) -> ErrorKind {
    match status {
        401 | 403 => ErrorKind::PermissionDenied,
        404 => ErrorKind::NotFound,
        409 => ErrorKind::Conflict,
        400 | 405 | 411 | 413 | 414 | 415 | 416 => ErrorKind::InvalidArgument,
        408 | 429 | 500..=599 => ErrorKind::Unavailable,
        _ => ErrorKind::Internal,
    }
}

fn image_kind(kind: wharf_image::ErrorKind) -> ErrorKind {
    match kind {
        wharf_image::ErrorKind::InvalidArgument => ErrorKind::InvalidArgument,
        wharf_image::ErrorKind::NotFound => ErrorKind::NotFound,
        wharf_image::ErrorKind::AlreadyExists => ErrorKind::AlreadyExists,
        wharf_image::ErrorKind::Conflict => ErrorKind::Conflict,
        wharf_image::ErrorKind::NotModified => ErrorKind::NotModified,
        wharf_image::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
        wharf_image::ErrorKind::Unavailable => ErrorKind::Unavailable,
        wharf_image::ErrorKind::Internal => ErrorKind::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_kinds() {
        assert_eq!(status_kind(404), ErrorKind::NotFound);
        assert_eq!(status_kind(403), ErrorKind::PermissionDenied);
        assert_eq!(status_kind(503), ErrorKind::Unavailable);
        assert_eq!(status_kind(429), ErrorKind::Unavailable);
        assert_eq!(status_kind(400), ErrorKind::InvalidArgument);
    }

    #[test]
    fn display_is_lowercase_and_names_the_object() {
        let e = RegistryError::ManifestNotFound {
            registry: "127.0.0.1:5000".into(),
            repository: "a/b".into(),
            reference: "v1".into(),
        };
        assert_eq!(e.to_string(), "manifest v1 not found in 127.0.0.1:5000/a/b");
        assert_eq!(e.kind(), ErrorKind::NotFound);
        let e = RegistryError::Blocked {
            registry: "evil.example".into(),
            reference: "evil.example/x:latest".into(),
        };
        assert!(e
            .to_string()
            .starts_with("registry evil.example is blocked"));
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
    }
}
