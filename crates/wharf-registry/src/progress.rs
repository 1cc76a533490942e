//! Progress reporting: per-blob events a pull or push emits. The binary renders
//! them (progress bars on a terminal, plain lines otherwise); libraries and tests
//! use [`NoProgress`].

use wharf_image::Digest;

/// What a blob is, for display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobKind {
    /// A manifest or index.
    Manifest,
    /// An image config.
    Config,
    /// A layer.
    Layer,
}

/// Receives progress events. Called from async tasks: implementations must be
/// quick and must not block.
pub trait Progress: Send + Sync {
    /// The reference is being resolved to a manifest.
    fn resolving(&self, reference: &str) {
        let _ = reference;
    }
    /// A blob transfer starts; `size` is its total, `offset` what an earlier
    /// interrupted transfer already has.
    fn started(&self, digest: &Digest, kind: BlobKind, size: u64, offset: u64) {
        let _ = (digest, kind, size, offset);
    }
    /// `bytes` more bytes of the blob were transferred.
    fn advanced(&self, digest: &Digest, bytes: u64) {
        let _ = (digest, bytes);
    }
    /// The blob is complete (verified and stored, or accepted by the registry).
    fn done(&self, digest: &Digest) {
        let _ = digest;
    }
    /// The blob was already there (in the store when pulling, on the registry or
    /// mounted from another repository when pushing).
    fn skipped(&self, digest: &Digest, kind: BlobKind, size: u64) {
        let _ = (digest, kind, size);
    }
    /// The transfer is retried or resumed after a failure.
    fn retrying(&self, digest: &Digest, attempt: u32, reason: &str) {
        let _ = (digest, attempt, reason);
    }
}

/// A [`Progress`] that ignores every event.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}
