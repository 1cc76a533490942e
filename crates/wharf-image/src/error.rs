//! The image crate's error type.

use std::io;
use std::path::PathBuf;

use crate::digest::Digest;

/// What kind of failure an error is, for exit codes and API status mapping
/// (the same vocabulary as every Wharf crate, see STYLE.md §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request, a reference, a digest or an image document is malformed.
    InvalidArgument,
    /// The image, blob or layer does not exist.
    NotFound,
    /// The object exists already.
    AlreadyExists,
    /// The object is in a state that forbids the operation (an image in use,
    /// an ambiguous id prefix).
    Conflict,
    /// Nothing had to be done.
    NotModified,
    /// The kernel or the caller's privileges refused the operation.
    PermissionDenied,
    /// A resource is temporarily unavailable (a lock, disk space).
    Unavailable,
    /// A failure inside the store or the kernel.
    Internal,
}

/// Every failure of the image crate.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A digest string does not follow `algorithm:hex`.
    #[error("invalid digest {digest:?}: {reason}")]
    InvalidDigest {
        /// The rejected string.
        digest: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// An image reference does not follow the distribution grammar.
    #[error("invalid reference {reference:?}: {reason}")]
    InvalidReference {
        /// The rejected string.
        reference: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A platform string (`os/arch[/variant]`) is malformed.
    #[error("invalid platform {platform:?}: {reason}")]
    InvalidPlatform {
        /// The rejected string.
        platform: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// No manifest of an index matches the wanted platform.
    #[error("no image for platform {platform} (available: {available})")]
    NoMatchingPlatform {
        /// The wanted platform.
        platform: String,
        /// The platforms the index offers.
        available: String,
    },
    /// A media type Wharf does not handle where it appeared.
    #[error("unsupported media type {media_type:?}{}", hint.map(|h| format!(": {h}")).unwrap_or_default())]
    UnsupportedMediaType {
        /// The media type.
        media_type: String,
        /// Why, when there is more to say.
        hint: Option<&'static str>,
    },
    /// A document (manifest, index, config) does not parse.
    #[error("parse {what} {digest}")]
    ParseDocument {
        /// What the document is.
        what: &'static str,
        /// Its digest.
        digest: Digest,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
    /// A document is well-formed JSON but wrong for what it claims to be.
    #[error("invalid {what} {digest}: {reason}")]
    InvalidDocument {
        /// What the document is.
        what: &'static str,
        /// Its digest.
        digest: Digest,
        /// What is wrong.
        reason: String,
    },
    /// A host-side file operation failed.
    #[error("{op} {}", path.display())]
    Io {
        /// The operation.
        op: &'static str,
        /// Its object.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// Content had another size than its descriptor said.
    #[error("blob {digest}: size {actual} bytes, expected {expected}")]
    SizeMismatch {
        /// The blob.
        digest: Digest,
        /// The descriptor's size.
        expected: u64,
        /// The bytes received.
        actual: u64,
    },
    /// Content hashed to another digest than expected.
    #[error("blob content has digest {actual}, expected {expected}")]
    DigestMismatch {
        /// What the descriptor named.
        expected: Digest,
        /// What the content hashed to.
        actual: Digest,
    },
    /// A layer's uncompressed content does not match the config's diff id.
    #[error("layer {blob} does not match the config's diff id: uncompressed digest {actual}, expected {expected}")]
    DiffIdMismatch {
        /// The compressed blob.
        blob: Digest,
        /// The diff id from the image config.
        expected: Digest,
        /// What the uncompressed stream hashed to.
        actual: Digest,
    },
    /// A layer tar entry was refused (escape attempt, forbidden type, limit).
    #[error("layer entry {entry:?}: {reason}")]
    UnsafeEntry {
        /// The entry's name as it appears in the tar.
        entry: String,
        /// Why it was refused.
        reason: String,
    },
    /// Creating a layer tar entry on disk failed.
    #[error("layer entry {entry:?}: {op}")]
    UnpackEntry {
        /// The entry's name as it appears in the tar.
        entry: String,
        /// The operation.
        op: &'static str,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// Reading the layer stream (decompression, tar headers) failed.
    #[error("read layer {blob}")]
    ReadLayer {
        /// The blob being read (or its diff id for an uncompressed import).
        blob: Digest,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// A layer exceeded a configured limit (size or entry count).
    #[error("layer {blob}: {what} exceeds the limit of {limit}")]
    LayerLimit {
        /// The blob.
        blob: Digest,
        /// The limited quantity.
        what: &'static str,
        /// The limit.
        limit: u64,
    },
    /// The unpack thread of a streamed layer stopped unexpectedly.
    #[error("unpack of layer {blob} stopped")]
    UnpackAborted {
        /// The blob.
        blob: Digest,
    },
    /// A metadata database operation failed.
    #[error("image database: {op}")]
    Database {
        /// The operation.
        op: &'static str,
        /// Cause.
        #[source]
        source: rusqlite::Error,
    },
    /// The database was written by a newer Wharf.
    #[error("image database {} has schema version {found}, this Wharf knows up to {known}", path.display())]
    SchemaTooNew {
        /// The database file.
        path: PathBuf,
        /// Its version.
        found: i64,
        /// The newest this build knows.
        known: i64,
    },
    /// No image matches a name, id or id prefix.
    #[error("image {name} not found")]
    ImageNotFound {
        /// What was looked up.
        name: String,
    },
    /// An id prefix matches several images.
    #[error("image id prefix {prefix} is ambiguous: it matches {count} images")]
    AmbiguousId {
        /// The prefix.
        prefix: String,
        /// How many images it matches.
        count: usize,
    },
    /// An image is referenced and removal was not forced.
    #[error("image {id} is in use by {by}")]
    ImageInUse {
        /// The image.
        id: Digest,
        /// Who uses it.
        by: String,
    },
    /// An image has several names and removal by id was not forced.
    #[error("image {id} is referenced by several names ({names}): remove them by name or force")]
    ImageHasNames {
        /// The image.
        id: Digest,
        /// The names.
        names: String,
    },
    /// A blob is not in the content store.
    #[error("blob {digest} not found")]
    BlobNotFound {
        /// The blob.
        digest: Digest,
    },
    /// A layer snapshot is not in the layer store.
    #[error("layer {chain_id} not found (unpack it first)")]
    LayerNotFound {
        /// The chain id.
        chain_id: Digest,
    },
    /// A rootfs (container snapshot) with this key exists already.
    #[error("rootfs {key} already exists")]
    RootfsExists {
        /// The container key.
        key: String,
    },
    /// No rootfs with this key.
    #[error("rootfs {key} not found")]
    RootfsNotFound {
        /// The container key.
        key: String,
    },
    /// A container key is not a safe single path component.
    #[error(
        "invalid rootfs key {key:?}: use letters, digits, '_', '-' and '.', not starting with '.'"
    )]
    InvalidKey {
        /// The rejected key.
        key: String,
    },
    /// Mounting a rootfs failed.
    #[error("mount {what} at {}", target.display())]
    Mount {
        /// What was mounted.
        what: &'static str,
        /// Where.
        target: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// A request argument is invalid.
    #[error("{reason}")]
    InvalidArgument {
        /// What is wrong.
        reason: String,
    },
    /// An image archive is malformed, incomplete, or neither a
    /// docker-archive nor an oci-archive.
    #[error("invalid image archive: {reason}")]
    InvalidArchive {
        /// What is wrong.
        reason: String,
    },
    /// An archive member was refused: an unsafe name or link target, an
    /// unsupported type, a duplicate, a document over its size limit.
    #[error("archive entry {entry:?}: {reason}")]
    UnsafeArchiveEntry {
        /// The member's name as it appears in the archive.
        entry: String,
        /// Why it was refused.
        reason: String,
    },
    /// A path that an archive document (`manifest.json`) names was refused.
    #[error("{document} names {path:?}: {reason}")]
    InvalidArchivePath {
        /// The document.
        document: &'static str,
        /// The path as the document spells it.
        path: String,
        /// Why it was refused.
        reason: String,
    },
    /// An archive document (`manifest.json`, `index.json`) does not parse.
    #[error("parse {document}")]
    ParseArchiveDocument {
        /// The document.
        document: &'static str,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
    /// Storing or verifying an archive member failed.
    #[error("load archive entry {entry:?}")]
    LoadArchiveEntry {
        /// The member's name in the archive.
        entry: String,
        /// Cause.
        #[source]
        source: Box<ImageError>,
    },
    /// Reading the archive stream failed.
    #[error("read image archive")]
    ReadArchive {
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// Writing the archive stream failed.
    #[error("write image archive")]
    WriteArchive {
        /// Cause.
        #[source]
        source: io::Error,
    },
}

impl ImageError {
    /// Classifies the error for exit codes and API status mapping.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::InvalidDigest { .. }
            | Self::InvalidReference { .. }
            | Self::InvalidPlatform { .. }
            | Self::UnsupportedMediaType { .. }
            | Self::ParseDocument { .. }
            | Self::InvalidDocument { .. }
            | Self::SizeMismatch { .. }
            | Self::DigestMismatch { .. }
            | Self::DiffIdMismatch { .. }
            | Self::UnsafeEntry { .. }
            | Self::LayerLimit { .. }
            | Self::InvalidKey { .. }
            | Self::InvalidArgument { .. } => ErrorKind::InvalidArgument,
            Self::NoMatchingPlatform { .. }
            | Self::ImageNotFound { .. }
            | Self::BlobNotFound { .. }
            | Self::LayerNotFound { .. }
            | Self::RootfsNotFound { .. } => ErrorKind::NotFound,
            Self::RootfsExists { .. } => ErrorKind::AlreadyExists,
            Self::AmbiguousId { .. } | Self::ImageInUse { .. } | Self::ImageHasNames { .. } => {
                ErrorKind::Conflict
            }
            Self::Io { source, .. }
            | Self::UnpackEntry { source, .. }
            | Self::ReadLayer { source, .. }
            | Self::Mount { source, .. } => io_kind(source),
            Self::Database { source, .. } => match source.sqlite_error_code() {
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                    ErrorKind::Unavailable
                }
                Some(rusqlite::ErrorCode::PermissionDenied | rusqlite::ErrorCode::ReadOnly) => {
                    ErrorKind::PermissionDenied
                }
                _ => ErrorKind::Internal,
            },
            Self::SchemaTooNew { .. } | Self::UnpackAborted { .. } => ErrorKind::Internal,
            Self::InvalidArchive { .. }
            | Self::UnsafeArchiveEntry { .. }
            | Self::InvalidArchivePath { .. }
            | Self::ParseArchiveDocument { .. } => ErrorKind::InvalidArgument,
            Self::LoadArchiveEntry { source, .. } => source.kind(),
            // A stream that is not a tar is the caller's input, not a failure.
            Self::ReadArchive { source } => match io_kind(source) {
                ErrorKind::Internal => ErrorKind::InvalidArgument,
                kind => kind,
            },
            Self::WriteArchive { source } => io_kind(source),
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn db(op: &'static str) -> impl FnOnce(rusqlite::Error) -> Self {
        move |source| Self::Database { op, source }
    }
}

fn io_kind(err: &io::Error) -> ErrorKind {
    match err.kind() {
        io::ErrorKind::NotFound => ErrorKind::NotFound,
        io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
        io::ErrorKind::AlreadyExists => ErrorKind::AlreadyExists,
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded | io::ErrorKind::WouldBlock => {
            ErrorKind::Unavailable
        }
        _ => ErrorKind::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_lowercase_without_trailing_period() {
        let d = Digest::sha256_of(b"x");
        let errors = [
            ImageError::InvalidDigest {
                digest: "sha256:zz".into(),
                reason: "hex must be lowercase",
            },
            ImageError::SizeMismatch {
                digest: d.clone(),
                expected: 3,
                actual: 4,
            },
            ImageError::UnsafeEntry {
                entry: "../x".into(),
                reason: "name escapes the layer".into(),
            },
            ImageError::ImageNotFound {
                name: "busybox".into(),
            },
        ];
        for e in errors {
            let s = e.to_string();
            assert!(!s.ends_with('.'), "{s}");
            assert!(s.chars().next().is_some_and(|c| !c.is_uppercase()), "{s}");
        }
    }

    #[test]
    fn exact_error_strings() {
        let e = ImageError::UnsafeEntry {
            entry: "../evil".into(),
            reason: "name escapes the layer directory".into(),
        };
        assert_eq!(
            e.to_string(),
            "layer entry \"../evil\": name escapes the layer directory"
        );
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        let e = ImageError::UnsupportedMediaType {
            media_type: "application/vnd.docker.distribution.manifest.v1+json".into(),
            hint: Some("Docker schema 1 images are not supported"),
        };
        assert_eq!(
            e.to_string(),
            "unsupported media type \"application/vnd.docker.distribution.manifest.v1+json\": Docker schema 1 images are not supported"
        );
        let e = ImageError::io(
            "open",
            "/x",
            io::Error::from(io::ErrorKind::PermissionDenied),
        );
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        assert_eq!(e.to_string(), "open /x");
    }
}
