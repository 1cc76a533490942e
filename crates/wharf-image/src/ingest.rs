//! The contract the registry client writes through: [`Ingest`] hands out a
//! [`BlobWriter`] per blob, which verifies and publishes it on `commit`.
//!
//! The store implements [`Ingest`]. A pull calls [`Ingest::begin`] for each
//! descriptor it is about to download; [`Begin::Present`] means the blob is
//! already durable (and, for a layer, unpacked into its snapshot) and nothing
//! needs fetching. Otherwise the returned writer receives the bytes from
//! [`BlobWriter::offset`] onwards (an earlier interrupted ingest left that
//! many verified-to-be-written bytes), and [`BlobWriter::commit`] checks
//! size and digest (and, for a layer, the diff id of the uncompressed
//! stream), makes the blob durable and publishes it. Dropping a writer
//! without committing keeps the partial file for a later resume and
//! publishes nothing.
//!
//! Writes are synchronous: the registry calls them from a blocking thread.

use std::fmt;

pub use oci_spec::image::Descriptor;

use crate::digest::Digest;
use crate::error::ImageError;

/// What a blob is for, which decides what `commit` does besides storing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobTarget {
    /// Manifest or index bytes.
    Manifest,
    /// An image config.
    Config,
    /// A layer, unpacked into the snapshot `chain_id` while it streams in.
    Layer {
        /// The uncompressed digest from the config's `rootfs.diff_ids`.
        diff_id: Digest,
        /// The chain id of the layer stack ending with this layer.
        chain_id: Digest,
    },
    /// Anything stored but not unpacked.
    Other,
}

/// The answer to [`Ingest::begin`].
pub enum Begin {
    /// Already durable (and, for a layer, unpacked): skip the download.
    Present,
    /// Write the blob through this writer, starting at its offset.
    Write(Box<dyn BlobWriter>),
}

impl fmt::Debug for Begin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Begin::Present => f.write_str("Present"),
            Begin::Write(w) => f
                .debug_struct("Write")
                .field("offset", &w.offset())
                .finish(),
        }
    }
}

/// Where blobs are written (implemented by the store).
pub trait Ingest: Send + Sync {
    /// Starts the ingest of `desc`. Blocks (file lock) while another process
    /// ingests the same digest; afterwards returns [`Begin::Present`] if that
    /// one finished it.
    fn begin(&self, desc: &Descriptor, target: &BlobTarget) -> Result<Begin, ImageError>;
}

/// One blob being written. Holds the per-digest lock until dropped or
/// committed.
pub trait BlobWriter: std::io::Write + Send {
    /// Bytes already written by an earlier interrupted ingest of this digest
    /// (the registry asks the server for `Range: bytes=<offset>-`).
    fn offset(&self) -> u64;
    /// Drops what was written so far and starts again at offset 0 (the
    /// server ignored `Range`).
    fn restart(&mut self) -> Result<(), ImageError>;
    /// Verifies size and digest (and the diff id for layers), makes the blob
    /// durable and publishes it.
    fn commit(self: Box<Self>) -> Result<(), ImageError>;
}
