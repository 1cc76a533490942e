//! Wharf's images: references, digests, media types and platforms; a
//! crash-safe content-addressed blob store; layer snapshots keyed by chain
//! id, unpacked from hostile tars while they download; overlay (or vfs)
//! root filesystems; diffs of a writable layer; SQLite image metadata,
//! verification and garbage collection.
//!
//! This crate is synchronous and knows no HTTP: the registry client
//! (`wharf-registry`) writes through [`Ingest`]. It knows nothing of
//! containers beyond an opaque key naming a writable rootfs.

mod content;
mod db;
mod error;
mod tree;
mod writer;

pub mod archive;
pub mod diff;
pub mod digest;
pub mod ingest;
pub mod media;
pub mod platform;
pub mod reference;
pub mod snapshot;
pub mod store;
pub mod unpack;

pub use archive::{ArchiveFormat, LoadOptions, LoadedImage};
pub use diff::DiffStats;
pub use digest::{Algorithm, Digest, Digester};
pub use error::{ErrorKind, ImageError};
pub use ingest::{Begin, BlobTarget, BlobWriter, Descriptor, Ingest};
pub use media::Compression;
pub use platform::Platform;
pub use reference::ImageRef;
pub use snapshot::{chain_ids, Driver, LayerInfo, Rootfs};
pub use store::{
    DiskUsage, GcReport, HistoryEntry, Image, ImageId, ImportedLayer, Lease, RemoveReport,
    RootfsOptions, Store, StoreOptions, VerifyReport,
};
pub use unpack::{DeviceNodes, UnpackOptions, UnpackedLayer};
