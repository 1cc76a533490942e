//! The image store: blobs, layer snapshots, root filesystems, and the
//! SQLite metadata that names images (`<root>/image.db`).
//!
//! Commit order (see `docs/store.md`): blobs are published only verified
//! and durable; a layer snapshot is synced before it is renamed into place;
//! image and name rows are written last, in one transaction, and only
//! after every layer they reference exists. A crash leaves at most
//! unreferenced blobs, snapshots, staging and ingest files, which
//! [`Store::gc`] removes.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use oci_spec::image::{Descriptor, ImageConfiguration, ImageManifest};
use rusqlite::{params, Connection, OptionalExtension};
use rustix::fs::FlockOperation;

use crate::content::ContentStore;
use crate::diff::{self, DiffStats};
use crate::digest::Digest;
use crate::error::ImageError;
use crate::ingest::{Begin, BlobTarget, Ingest};
use crate::media::{self, Compression};
use crate::reference::ImageRef;
use crate::snapshot::{self, Driver, LayerInfo, Rootfs, Snapshots};
use crate::unpack::UnpackOptions;
use crate::writer::{self, LayerJob, LayerWriter, Mode, PlainWriter};

/// An image id: the digest of its config.
pub type ImageId = Digest;

/// How a store behaves.
#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    /// How root filesystems are assembled.
    pub driver: Driver,
    /// Limits and policies of layer unpacking.
    pub unpack: UnpackOptions,
}

/// An image as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The config digest.
    pub id: ImageId,
    /// The manifest's digest.
    pub manifest_digest: Digest,
    /// The manifest's media type (OCI or Docker schema 2).
    pub manifest_media_type: String,
    /// The manifest bytes.
    pub manifest: Vec<u8>,
    /// The config bytes.
    pub config: Vec<u8>,
    /// Tagged names (`docker.io/library/busybox:latest`).
    pub names: Vec<ImageRef>,
    /// Digest names (`docker.io/library/busybox@sha256:…`).
    pub digests: Vec<ImageRef>,
    /// The manifest's layer descriptors, bottom first.
    pub layers: Vec<Descriptor>,
    /// Chain ids of the layers, bottom first.
    pub chain_ids: Vec<Digest>,
    /// When it was recorded (unix seconds).
    pub recorded: i64,
    /// Uncompressed size of all its layers.
    pub size: u64,
}

impl Image {
    /// The parsed config.
    pub fn configuration(&self) -> Result<ImageConfiguration, ImageError> {
        serde_json::from_slice(&self.config).map_err(|source| ImageError::ParseDocument {
            what: "image config",
            digest: self.id.clone(),
            source,
        })
    }
}

/// One step of an image's history (`docker history`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// The config's `created` timestamp.
    pub created: Option<String>,
    /// The command that made it.
    pub created_by: Option<String>,
    /// A comment.
    pub comment: Option<String>,
    /// Whether it made no layer.
    pub empty_layer: bool,
    /// The layer it made (its chain id) and that layer's size.
    pub layer: Option<(Digest, u64)>,
}

/// Sizes for `system df`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiskUsage {
    /// Images recorded.
    pub images: usize,
    /// Images some root filesystem uses.
    pub active: usize,
    /// Uncompressed bytes of all distinct layers.
    pub layers_size: u64,
    /// Bytes of layers no root filesystem uses.
    pub reclaimable: u64,
    /// Bytes of all blobs.
    pub blobs_size: u64,
    /// Root filesystems.
    pub rootfs: usize,
    /// Per image: id, its size, and the part shared with other images.
    pub per_image: Vec<(ImageId, u64, u64)>,
}

/// What [`Store::verify`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Blobs re-hashed.
    pub blobs_checked: usize,
    /// Blobs whose content has another digest: (name, actual).
    pub corrupt_blobs: Vec<(Digest, Digest)>,
    /// Blobs an image references that are absent.
    pub missing_blobs: Vec<Digest>,
    /// Layers an image references without a snapshot.
    pub missing_layers: Vec<Digest>,
    /// Snapshots no image references.
    pub dangling_layers: Vec<Digest>,
    /// Blobs no image references.
    pub unreferenced_blobs: Vec<Digest>,
    /// Ingest files (partial downloads) present.
    pub ingest_files: usize,
}

impl VerifyReport {
    /// No corruption and nothing referenced is missing (dangling and
    /// unreferenced items are garbage, not damage).
    pub fn is_clean(&self) -> bool {
        self.corrupt_blobs.is_empty()
            && self.missing_blobs.is_empty()
            && self.missing_layers.is_empty()
    }
}

/// What [`Store::gc`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Blobs removed.
    pub blobs: Vec<Digest>,
    /// Layer snapshots removed (chain ids).
    pub layers: Vec<Digest>,
    /// Stale ingest and lock files removed.
    pub ingest_files: usize,
    /// Stale staging directories removed.
    pub staging_dirs: usize,
    /// Bytes of blobs freed.
    pub blob_bytes: u64,
}

/// How [`Store::mount_rootfs_with`] mounts a root filesystem.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RootfsOptions {
    /// Overlay only: overlayfs never syncs the writable layer (`volatile`,
    /// as Podman mounts `--rm` containers). Unmounting skips the sync of
    /// the whole upper filesystem (several ms), and `fsync` inside is a
    /// no-op. Such a layer cannot be mounted again once unmounted: for
    /// root filesystems removed with their container when it exits.
    pub volatile: bool,
}

/// What [`Store::remove`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoveReport {
    /// Names removed.
    pub untagged: Vec<String>,
    /// Images deleted.
    pub deleted: Vec<ImageId>,
}

/// A layer brought in without a registry ([`Store::import_layer`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedLayer {
    /// The stored blob (the uncompressed tar).
    pub blob: Digest,
    /// Its size.
    pub blob_size: u64,
    /// Its diff id (equal to `blob`: the blob is not compressed).
    pub diff_id: Digest,
    /// Its chain id on top of the given parent.
    pub chain_id: Digest,
}

/// Held while a pull or import is in progress: [`Store::gc`] waits for no
/// lease (it refuses to run while one is held), so nothing written but not
/// yet recorded is collected.
#[derive(Debug)]
pub struct Lease {
    _file: fs_err::File,
}

struct Inner {
    root: PathBuf,
    content: ContentStore,
    snapshots: Snapshots,
    db: Mutex<Connection>,
    options: Arc<UnpackOptions>,
    driver: Driver,
}

/// The image store under a root directory.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("root", &self.inner.root)
            .finish_non_exhaustive()
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn parse_stored(s: &str) -> Result<Digest, ImageError> {
    Digest::parse(s).map_err(|_| ImageError::InvalidArgument {
        reason: format!("image database holds an invalid digest {s:?}"),
    })
}

/// The kind of JSON document a manifest blob is.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    schema_version: Option<u32>,
    media_type: Option<String>,
    manifests: Option<serde_json::Value>,
    config: Option<serde_json::Value>,
}

impl Store {
    /// Opens (creating) the store at `root` with default options.
    pub fn open(root: &Path) -> Result<Store, ImageError> {
        Store::open_with(root, StoreOptions::default())
    }

    /// Opens (creating) the store at `root`.
    pub fn open_with(root: &Path, options: StoreOptions) -> Result<Store, ImageError> {
        fs_err::create_dir_all(root)
            .map_err(|e| ImageError::io("create store directory", root, e))?;
        let content = ContentStore::new(root)?;
        let snapshots = Snapshots::new(root)?;
        let db = crate::db::open(&root.join("image.db"))?;
        Ok(Store {
            inner: Arc::new(Inner {
                root: root.to_path_buf(),
                content,
                snapshots,
                db: Mutex::new(db),
                options: Arc::new(options.unpack),
                driver: options.driver,
            }),
        })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// A scratch directory inside the store (same filesystem, so its files
    /// can be renamed into place), removed when dropped. If the process dies
    /// first, [`Store::gc`] removes it with the other stale staging dirs.
    pub fn scratch_dir(&self) -> Result<tempfile::TempDir, ImageError> {
        let staging = self.inner.root.join("staging");
        tempfile::Builder::new()
            .prefix(&format!("scratch-{}-", std::process::id()))
            .tempdir_in(&staging)
            .map_err(|e| ImageError::io("create scratch directory in", &staging, e))
    }

    fn db(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves a connection whose last
        // transaction rolled back; it is still usable.
        self.inner.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn gc_lock_path(&self) -> PathBuf {
        self.inner.root.join("gc.lock")
    }

    /// Takes a lease (a shared lock GC respects) for the duration of a pull
    /// or import, up to and including [`Store::record_image`].
    pub fn lease(&self) -> Result<Lease, ImageError> {
        let path = self.gc_lock_path();
        let file = fs_err::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| ImageError::io("open", &path, e))?;
        rustix::fs::flock(file.as_fd(), FlockOperation::LockShared)
            .map_err(|e| ImageError::io("lock", &path, e.into()))?;
        Ok(Lease { _file: file })
    }

    /// Path of a published blob (for readers that want the file).
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.inner.content.blob_path(d)
    }

    /// Opens a published blob: the file and its size.
    pub fn open_blob(&self, d: &Digest) -> Result<(fs_err::File, u64), ImageError> {
        self.inner.content.open(d)
    }

    /// Whether a blob is published.
    pub fn has_blob(&self, d: &Digest) -> bool {
        self.inner.content.has(d)
    }

    /// Reads a published document blob (manifest, index, config; at most
    /// 4 MiB), its digest checked again.
    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>, ImageError> {
        self.inner.content.read(d)
    }

    /// Stores a document Wharf made itself (a manifest, a config).
    pub fn put_blob(&self, bytes: &[u8]) -> Result<Digest, ImageError> {
        self.inner.content.put(bytes)
    }

    /// The record of an unpacked layer.
    pub fn layer(&self, chain_id: &Digest) -> Result<LayerInfo, ImageError> {
        self.inner.snapshots.info(chain_id)
    }

    /// The directory holding a layer's unpacked files.
    pub fn layer_path(&self, chain_id: &Digest) -> Result<PathBuf, ImageError> {
        if self.inner.snapshots.has(chain_id) {
            Ok(self.inner.snapshots.diff_dir(chain_id))
        } else {
            Err(ImageError::LayerNotFound {
                chain_id: chain_id.clone(),
            })
        }
    }

    /// Records `manifest_digest` (a manifest, not an index, whose config and
    /// layers are all in the store) under `name`. Returns the image id.
    pub fn record_image(
        &self,
        name: &ImageRef,
        manifest_digest: &Digest,
    ) -> Result<ImageId, ImageError> {
        self.record(manifest_digest, std::slice::from_ref(name))
    }

    /// Records a manifest under any number of names (none: a dangling
    /// image). Tags move from the image that had them; for each name's
    /// repository the `repo@manifest-digest` name is recorded too.
    pub fn record(
        &self,
        manifest_digest: &Digest,
        names: &[ImageRef],
    ) -> Result<ImageId, ImageError> {
        let manifest_bytes = self.inner.content.read(manifest_digest)?;
        let (media_type, manifest) = parse_manifest(manifest_digest, &manifest_bytes)?;
        let config_digest = Digest::try_from(manifest.config().digest())?;
        let config_bytes = self.inner.content.read(&config_digest)?;
        let diff_ids = config_diff_ids(&config_digest, &config_bytes)?;
        if diff_ids.len() != manifest.layers().len() {
            return Err(ImageError::InvalidDocument {
                what: "image",
                digest: manifest_digest.clone(),
                reason: format!(
                    "the manifest has {} layers, the config {} diff ids",
                    manifest.layers().len(),
                    diff_ids.len()
                ),
            });
        }
        let chains = snapshot::chain_ids(&diff_ids);
        let mut infos = Vec::with_capacity(chains.len());
        for (i, chain) in chains.iter().enumerate() {
            let info = self.inner.snapshots.info(chain)?;
            if info.diff_id != diff_ids[i] {
                return Err(ImageError::DiffIdMismatch {
                    blob: Digest::try_from(manifest.layers()[i].digest())?,
                    expected: diff_ids[i].clone(),
                    actual: info.diff_id,
                });
            }
            infos.push(info);
        }
        let size: u64 = infos.iter().map(|i| i.size).sum();
        let created = now();
        let mut db = self.db();
        let tx = db
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(ImageError::db("begin"))?;
        for (i, info) in infos.iter().enumerate() {
            let parent = if i == 0 {
                None
            } else {
                Some(chains[i - 1].to_string())
            };
            tx.execute(
                "INSERT OR IGNORE INTO layers (chain_id, diff_id, parent, size, state, created)
                 VALUES (?1, ?2, ?3, ?4, 'committed', ?5)",
                params![
                    info.chain_id.as_str(),
                    info.diff_id.as_str(),
                    parent,
                    info.size as i64,
                    created
                ],
            )
            .map_err(ImageError::db("insert layer"))?;
        }
        let existed: bool = tx
            .query_row(
                "SELECT 1 FROM images WHERE id = ?1",
                [config_digest.as_str()],
                |_| Ok(()),
            )
            .optional()
            .map_err(ImageError::db("look up image"))?
            .is_some();
        if existed {
            tx.execute(
                "UPDATE images SET manifest_digest = ?2, manifest_media_type = ?3, size = ?4 WHERE id = ?1",
                params![config_digest.as_str(), manifest_digest.as_str(), media_type, size as i64],
            )
            .map_err(ImageError::db("update image"))?;
            tx.execute(
                "DELETE FROM image_layers WHERE image_id = ?1",
                [config_digest.as_str()],
            )
            .map_err(ImageError::db("replace image layers"))?;
        } else {
            tx.execute(
                "INSERT INTO images (id, manifest_digest, manifest_media_type, created, size)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    config_digest.as_str(),
                    manifest_digest.as_str(),
                    media_type,
                    created,
                    size as i64
                ],
            )
            .map_err(ImageError::db("insert image"))?;
        }
        for (i, (chain, desc)) in chains.iter().zip(manifest.layers()).enumerate() {
            tx.execute(
                "INSERT INTO image_layers (image_id, position, chain_id, blob, blob_size)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    config_digest.as_str(),
                    i as i64,
                    chain.as_str(),
                    desc.digest().to_string(),
                    desc.size() as i64
                ],
            )
            .map_err(ImageError::db("insert image layer"))?;
        }
        for name in names {
            if name.tag().is_some() {
                let tagged = ImageRef::parse(&format!(
                    "{}:{}",
                    name.name(),
                    name.tag().expect("checked above")
                ))?;
                tx.execute(
                    "INSERT OR REPLACE INTO names (name, image_id, kind, created) VALUES (?1, ?2, 'tag', ?3)",
                    params![tagged.to_string(), config_digest.as_str(), created],
                )
                .map_err(ImageError::db("insert name"))?;
            }
            let pinned = format!("{}@{}", name.name(), manifest_digest);
            tx.execute(
                "INSERT OR REPLACE INTO names (name, image_id, kind, created) VALUES (?1, ?2, 'digest', ?3)",
                params![pinned, config_digest.as_str(), created],
            )
            .map_err(ImageError::db("insert name"))?;
        }
        tx.commit().map_err(ImageError::db("commit image"))?;
        tracing::info!(image = %config_digest, manifest = %manifest_digest, "image recorded");
        Ok(config_digest)
    }

    fn load(&self, db: &Connection, id: &str) -> Result<Image, ImageError> {
        let row = db
            .query_row(
                "SELECT manifest_digest, manifest_media_type, created, size FROM images WHERE id = ?1",
                [id],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?, r.get::<_, i64>(3)?)),
            )
            .optional()
            .map_err(ImageError::db("read image"))?
            .ok_or_else(|| ImageError::ImageNotFound { name: id.to_string() })?;
        let id = parse_stored(id)?;
        let manifest_digest = parse_stored(&row.0)?;
        let manifest = self.inner.content.read(&manifest_digest)?;
        let config = self.inner.content.read(&id)?;
        let (_, parsed) = parse_manifest(&manifest_digest, &manifest)?;
        let mut stmt = db
            .prepare_cached("SELECT name, kind FROM names WHERE image_id = ?1 ORDER BY name")
            .map_err(ImageError::db("read names"))?;
        let mut names = Vec::new();
        let mut digests = Vec::new();
        let rows = stmt
            .query_map([id.as_str()], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(ImageError::db("read names"))?;
        for row in rows {
            let (name, kind) = row.map_err(ImageError::db("read names"))?;
            let r = ImageRef::parse(&name)?;
            if kind == "tag" {
                names.push(r);
            } else {
                digests.push(r);
            }
        }
        let mut stmt = db
            .prepare_cached(
                "SELECT chain_id FROM image_layers WHERE image_id = ?1 ORDER BY position",
            )
            .map_err(ImageError::db("read image layers"))?;
        let chain_ids = stmt
            .query_map([id.as_str()], |r| r.get::<_, String>(0))
            .map_err(ImageError::db("read image layers"))?
            .map(|r| {
                r.map_err(ImageError::db("read image layers"))
                    .and_then(|s| parse_stored(&s))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Image {
            id,
            manifest_digest,
            manifest_media_type: row.1,
            manifest,
            config,
            names,
            digests,
            layers: parsed.layers().clone(),
            chain_ids,
            recorded: row.2,
            size: row.3 as u64,
        })
    }

    /// Finds an image by name (`busybox`, `quay.io/a/b:1`, `b@sha256:…`),
    /// full id (`sha256:…` or 64 hex digits) or unique id prefix (at least
    /// 3 hex digits).
    pub fn resolve(&self, s: &str) -> Result<Image, ImageError> {
        let db = self.db();
        let id = self.resolve_id(&db, s)?;
        self.load(&db, &id)
    }

    /// The id (`sha256:…`) of the image `s` names, as [`Store::resolve`]
    /// finds it, without reading its manifest and configuration.
    pub fn resolve_image_id(&self, s: &str) -> Result<String, ImageError> {
        self.resolve_id(&self.db(), s)
    }

    fn resolve_id(&self, db: &Connection, s: &str) -> Result<String, ImageError> {
        let not_found = || ImageError::ImageNotFound {
            name: s.to_string(),
        };
        if let Ok(d) = Digest::parse(s) {
            return self.id_exists(db, d.as_str())?.ok_or_else(not_found);
        }
        if let Ok(r) = ImageRef::parse(s) {
            if let Some(d) = r.digest() {
                let pinned = format!("{}@{}", r.name(), d);
                if let Some(id) = lookup_name(db, &pinned)? {
                    return Ok(id);
                }
                let by_manifest: Option<String> = db
                    .query_row(
                        "SELECT id FROM images WHERE manifest_digest = ?1",
                        [d.as_str()],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(ImageError::db("look up image"))?;
                return by_manifest.ok_or_else(not_found);
            }
            if let Some(id) = lookup_name(db, &r.to_string())? {
                return Ok(id);
            }
        }
        let hex = s.strip_prefix("sha256:").unwrap_or(s);
        if hex.len() >= 3
            && hex.len() <= 64
            && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            let mut stmt = db
                .prepare_cached("SELECT id FROM images WHERE id >= ?1 AND id < ?2 LIMIT 2")
                .map_err(ImageError::db("look up id prefix"))?;
            let low = format!("sha256:{hex}");
            let high = format!("sha256:{hex}\u{7f}");
            let ids = stmt
                .query_map([low, high], |r| r.get::<_, String>(0))
                .map_err(ImageError::db("look up id prefix"))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(ImageError::db("look up id prefix"))?;
            match ids.len() {
                0 => {}
                1 => return Ok(ids.into_iter().next().expect("one id")),
                _ => {
                    let count: i64 = db
                        .query_row(
                            "SELECT COUNT(*) FROM images WHERE substr(id, 8, ?2) = ?1",
                            params![hex, hex.len() as i64],
                            |r| r.get(0),
                        )
                        .map_err(ImageError::db("count id prefix"))?;
                    return Err(ImageError::AmbiguousId {
                        prefix: hex.to_string(),
                        count: count as usize,
                    });
                }
            }
        }
        Err(not_found())
    }

    fn id_exists(&self, db: &Connection, id: &str) -> Result<Option<String>, ImageError> {
        db.query_row("SELECT id FROM images WHERE id = ?1", [id], |r| r.get(0))
            .optional()
            .map_err(ImageError::db("look up image"))
    }

    /// Every image, most recently recorded first.
    pub fn list(&self) -> Result<Vec<Image>, ImageError> {
        let db = self.db();
        let ids: Vec<String> = {
            let mut stmt = db
                .prepare_cached("SELECT id FROM images ORDER BY created DESC, id")
                .map_err(ImageError::db("list images"))?;
            let rows = stmt
                .query_map([], |r| r.get(0))
                .map_err(ImageError::db("list images"))?;
            rows.collect::<Result<_, _>>()
                .map_err(ImageError::db("list images"))?
        };
        ids.iter().map(|id| self.load(&db, id)).collect()
    }

    /// Gives the image `source` resolves to the name `target` (which must
    /// carry a tag, not a digest). The tag moves if another image had it.
    pub fn tag(&self, source: &str, target: &ImageRef) -> Result<(), ImageError> {
        if target.digest().is_some() || target.tag().is_none() {
            return Err(ImageError::InvalidArgument {
                reason: format!("cannot tag with {target}: a tag name has no digest"),
            });
        }
        let db = self.db();
        let id = self.resolve_id(&db, source)?;
        db.execute(
            "INSERT OR REPLACE INTO names (name, image_id, kind, created) VALUES (?1, ?2, 'tag', ?3)",
            params![target.to_string(), id, now()],
        )
        .map_err(ImageError::db("tag image"))?;
        Ok(())
    }

    /// Removes the name `name`; the image stays (dangling if it was its last).
    pub fn untag(&self, name: &ImageRef) -> Result<(), ImageError> {
        let db = self.db();
        let n = db
            .execute("DELETE FROM names WHERE name = ?1", [name.to_string()])
            .map_err(ImageError::db("untag image"))?;
        if n == 0 {
            return Err(ImageError::ImageNotFound {
                name: name.to_string(),
            });
        }
        Ok(())
    }

    /// Root filesystems using an image.
    fn users(&self, db: &Connection, id: &str) -> Result<Vec<String>, ImageError> {
        let mut stmt = db
            .prepare_cached("SELECT key FROM rootfs WHERE image_id = ?1 ORDER BY key")
            .map_err(ImageError::db("read rootfs"))?;
        let rows = stmt
            .query_map([id], |r| r.get(0))
            .map_err(ImageError::db("read rootfs"))?;
        rows.collect::<Result<_, _>>()
            .map_err(ImageError::db("read rootfs"))
    }

    /// Removes an image as `docker rmi` does: by a name that is one of
    /// several, only that name goes; otherwise the image and its names go,
    /// then what nothing references any more (layers, blobs) is collected
    /// unless a pull holds a lease. An image used by a root filesystem, or
    /// named in several repositories when removed by id, is refused unless
    /// `force` (an image in use then loses its names but stays).
    pub fn remove(&self, s: &str, force: bool) -> Result<RemoveReport, ImageError> {
        let mut report = RemoveReport::default();
        {
            let mut db = self.db();
            let id = self.resolve_id(&db, s)?;
            let digest = parse_stored(&id)?;
            let tx = db
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(ImageError::db("begin"))?;
            let names: Vec<(String, String)> = {
                let mut stmt = tx
                    .prepare("SELECT name, kind FROM names WHERE image_id = ?1 ORDER BY name")
                    .map_err(ImageError::db("read names"))?;
                let rows = stmt
                    .query_map([id.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
                    .map_err(ImageError::db("read names"))?;
                rows.collect::<Result<_, _>>()
                    .map_err(ImageError::db("read names"))?
            };
            let tags: Vec<&String> = names
                .iter()
                .filter(|(_, k)| k == "tag")
                .map(|(n, _)| n)
                .collect();
            // Removal by one of several tags: untag only.
            let by_tag = ImageRef::parse(s)
                .ok()
                .map(|r| r.to_string())
                .filter(|n| tags.contains(&n));
            if let Some(name) = by_tag {
                if tags.len() > 1 {
                    tx.execute("DELETE FROM names WHERE name = ?1", [&name])
                        .map_err(ImageError::db("untag image"))?;
                    tx.commit().map_err(ImageError::db("commit"))?;
                    report.untagged.push(name);
                    return Ok(report);
                }
            } else if !force {
                let repos: BTreeSet<String> = tags
                    .iter()
                    .filter_map(|t| ImageRef::parse(t).ok())
                    .map(|r| r.name())
                    .collect();
                if repos.len() > 1 {
                    return Err(ImageError::ImageHasNames {
                        id: digest,
                        names: tags
                            .iter()
                            .map(|t| t.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    });
                }
            }
            let users = self.users(&tx, &id)?;
            if !users.is_empty() {
                if !force {
                    return Err(ImageError::ImageInUse {
                        id: digest,
                        by: format!("root filesystem {}", users.join(", ")),
                    });
                }
                tx.execute("DELETE FROM names WHERE image_id = ?1", [id.as_str()])
                    .map_err(ImageError::db("untag image"))?;
                tx.commit().map_err(ImageError::db("commit"))?;
                report.untagged = names.into_iter().map(|(n, _)| n).collect();
                return Ok(report);
            }
            tx.execute("DELETE FROM names WHERE image_id = ?1", [id.as_str()])
                .map_err(ImageError::db("remove names"))?;
            tx.execute(
                "DELETE FROM image_layers WHERE image_id = ?1",
                [id.as_str()],
            )
            .map_err(ImageError::db("remove image layers"))?;
            tx.execute("DELETE FROM images WHERE id = ?1", [id.as_str()])
                .map_err(ImageError::db("remove image"))?;
            delete_unreferenced_layers(&tx)?;
            tx.commit()
                .map_err(ImageError::db("commit image removal"))?;
            report.untagged = names.into_iter().map(|(n, _)| n).collect();
            report.deleted.push(digest);
        }
        match self.try_gc()? {
            Some(gc) => tracing::debug!(
                blobs = gc.blobs.len(),
                layers = gc.layers.len(),
                "collected after removal"
            ),
            None => tracing::debug!("collection deferred: a pull holds a lease"),
        }
        Ok(report)
    }

    /// Inspect data: the image with its config and manifest parsed and its
    /// layers' records.
    pub fn inspect(
        &self,
        s: &str,
    ) -> Result<(Image, ImageConfiguration, Vec<LayerInfo>), ImageError> {
        let image = self.resolve(s)?;
        let config = image.configuration()?;
        let layers = image
            .chain_ids
            .iter()
            .map(|c| self.inner.snapshots.info(c))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((image, config, layers))
    }

    /// The config's history, each non-empty step paired with its layer.
    pub fn history(&self, s: &str) -> Result<Vec<HistoryEntry>, ImageError> {
        let (image, config, layers) = self.inspect(s)?;
        let mut layer_iter = image.chain_ids.iter().zip(layers.iter().map(|l| l.size));
        let mut out = Vec::new();
        for h in config.history().clone().unwrap_or_default() {
            let empty = h.empty_layer().unwrap_or(false);
            let layer = if empty {
                None
            } else {
                layer_iter.next().map(|(c, size)| (c.clone(), size))
            };
            out.push(HistoryEntry {
                created: h.created().clone(),
                created_by: h.created_by().clone(),
                comment: h.comment().clone(),
                empty_layer: empty,
                layer,
            });
        }
        // Layers the history does not mention (imported images).
        for (c, size) in layer_iter {
            out.push(HistoryEntry {
                created: None,
                created_by: None,
                comment: None,
                empty_layer: false,
                layer: Some((c.clone(), size)),
            });
        }
        out.reverse();
        Ok(out)
    }

    /// Sizes for `system df`.
    pub fn disk_usage(&self) -> Result<DiskUsage, ImageError> {
        let db = self.db();
        let mut usage = DiskUsage::default();
        let layer_sizes: HashMap<String, u64> = {
            let mut stmt = db
                .prepare("SELECT chain_id, size FROM layers")
                .map_err(ImageError::db("read layers"))?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
                })
                .map_err(ImageError::db("read layers"))?;
            rows.collect::<Result<_, _>>()
                .map_err(ImageError::db("read layers"))?
        };
        let mut image_layers: BTreeMap<String, Vec<String>> = BTreeMap::new();
        {
            let mut stmt = db
                .prepare("SELECT images.id, image_layers.chain_id FROM images LEFT JOIN image_layers ON image_layers.image_id = images.id")
                .map_err(ImageError::db("read image layers"))?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
                })
                .map_err(ImageError::db("read image layers"))?;
            for row in rows {
                let (id, chain) = row.map_err(ImageError::db("read image layers"))?;
                let entry = image_layers.entry(id).or_default();
                if let Some(c) = chain {
                    entry.push(c);
                }
            }
        }
        let active: BTreeSet<String> = {
            let mut stmt = db
                .prepare("SELECT DISTINCT image_id FROM rootfs")
                .map_err(ImageError::db("read rootfs"))?;
            let rows = stmt
                .query_map([], |r| r.get(0))
                .map_err(ImageError::db("read rootfs"))?;
            rows.collect::<Result<_, _>>()
                .map_err(ImageError::db("read rootfs"))?
        };
        let mut users: HashMap<&str, usize> = HashMap::new();
        for chains in image_layers.values() {
            for c in chains {
                *users.entry(c.as_str()).or_default() += 1;
            }
        }
        let active_layers: BTreeSet<&str> = image_layers
            .iter()
            .filter(|(id, _)| active.contains(*id))
            .flat_map(|(_, cs)| cs.iter().map(String::as_str))
            .collect();
        usage.images = image_layers.len();
        usage.active = active.len();
        usage.layers_size = layer_sizes.values().sum();
        usage.reclaimable = layer_sizes
            .iter()
            .filter(|(c, _)| !active_layers.contains(c.as_str()))
            .map(|(_, s)| s)
            .sum();
        for (id, chains) in &image_layers {
            let size: u64 = chains.iter().filter_map(|c| layer_sizes.get(c)).sum();
            let shared: u64 = chains
                .iter()
                .filter(|c| users.get(c.as_str()).copied().unwrap_or(0) > 1)
                .filter_map(|c| layer_sizes.get(c))
                .sum();
            usage.per_image.push((parse_stored(id)?, size, shared));
        }
        usage.rootfs = db
            .query_row("SELECT COUNT(*) FROM rootfs", [], |r| r.get::<_, i64>(0))
            .map_err(ImageError::db("count rootfs"))? as usize;
        drop(db);
        for d in self.inner.content.list()? {
            if let Ok(m) = fs_err::metadata(self.inner.content.blob_path(&d)) {
                usage.blobs_size += m.len();
            }
        }
        Ok(usage)
    }

    /// What the recorded images reference: blobs and chain ids.
    fn referenced(&self) -> Result<(BTreeSet<Digest>, BTreeSet<Digest>), ImageError> {
        let db = self.db();
        let mut blobs = BTreeSet::new();
        let mut layers = BTreeSet::new();
        let mut stmt = db
            .prepare("SELECT id, manifest_digest FROM images")
            .map_err(ImageError::db("read images"))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(ImageError::db("read images"))?;
        for row in rows {
            let (id, manifest) = row.map_err(ImageError::db("read images"))?;
            blobs.insert(parse_stored(&id)?);
            blobs.insert(parse_stored(&manifest)?);
        }
        let mut stmt = db
            .prepare("SELECT chain_id, blob FROM image_layers")
            .map_err(ImageError::db("read image layers"))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(ImageError::db("read image layers"))?;
        for row in rows {
            let (chain, blob) = row.map_err(ImageError::db("read image layers"))?;
            layers.insert(parse_stored(&chain)?);
            blobs.insert(parse_stored(&blob)?);
        }
        Ok((blobs, layers))
    }

    /// Re-hashes every blob and cross-checks the records against the disk.
    pub fn verify(&self) -> Result<VerifyReport, ImageError> {
        let (ref_blobs, ref_layers) = self.referenced()?;
        let mut report = VerifyReport::default();
        let present = self.inner.content.list()?;
        for d in &present {
            report.blobs_checked += 1;
            let actual = self.inner.content.rehash(d)?;
            if actual != *d {
                tracing::warn!(digest = %d, actual = %actual, "corrupt blob");
                report.corrupt_blobs.push((d.clone(), actual));
            }
            if !ref_blobs.contains(d) {
                report.unreferenced_blobs.push(d.clone());
            }
        }
        let present: BTreeSet<Digest> = present.into_iter().collect();
        report.missing_blobs = ref_blobs.difference(&present).cloned().collect();
        let snapshots: BTreeSet<Digest> = self.inner.snapshots.list()?.into_iter().collect();
        let complete: BTreeSet<Digest> = snapshots
            .iter()
            .filter(|c| self.inner.snapshots.has(c))
            .cloned()
            .collect();
        report.missing_layers = ref_layers.difference(&complete).cloned().collect();
        report.dangling_layers = snapshots.difference(&ref_layers).cloned().collect();
        let ingest = self.inner.content.ingest_dir();
        report.ingest_files = fs_err::read_dir(&ingest)
            .map_err(|e| ImageError::io("list", &ingest, e))?
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| !e.file_name().to_string_lossy().ends_with(".lock"))
            })
            .count();
        Ok(report)
    }

    /// Removes blobs and snapshots no image references, layer records no
    /// image uses, and stale ingest and staging files. Refused (Unavailable)
    /// while a lease is held.
    pub fn gc(&self) -> Result<GcReport, ImageError> {
        self.try_gc()?.ok_or_else(|| ImageError::Io {
            op: "lock for garbage collection (a pull or import holds a lease)",
            path: self.gc_lock_path(),
            source: io::Error::from(io::ErrorKind::WouldBlock),
        })
    }

    fn try_gc(&self) -> Result<Option<GcReport>, ImageError> {
        let path = self.gc_lock_path();
        let file = fs_err::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| ImageError::io("open", &path, e))?;
        match rustix::fs::flock(file.as_fd(), FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => return Ok(None),
            Err(e) => return Err(ImageError::io("lock", &path, e.into())),
        }
        {
            let db = self.db();
            delete_unreferenced_layers(&db)?;
        }
        self.drop_stale_rootfs_records()?;
        self.empty_trash()?;
        let (ref_blobs, ref_layers) = self.referenced()?;
        let rootfs_layers = self.rootfs_layers()?;
        let mut report = GcReport::default();
        for d in self.inner.content.list()? {
            if !ref_blobs.contains(&d) {
                if let Ok(m) = fs_err::metadata(self.inner.content.blob_path(&d)) {
                    report.blob_bytes += m.len();
                }
                self.inner.content.remove(&d)?;
                report.blobs.push(d);
            }
        }
        for c in self.inner.snapshots.list()? {
            if !ref_layers.contains(&c) && !rootfs_layers.contains(&c) {
                self.inner.snapshots.remove(&c)?;
                report.layers.push(c);
            }
        }
        report.ingest_files = self.inner.content.clean_ingest()?;
        report.staging_dirs = self.inner.snapshots.clean_staging()?;
        drop(file);
        tracing::info!(
            blobs = report.blobs.len(),
            layers = report.layers.len(),
            "garbage collected"
        );
        Ok(Some(report))
    }

    /// Deletes the records of root filesystems whose directory is gone
    /// (see [`Store::relaxed`]), so they no longer pin their image's layers.
    /// Directories are made before their record and removed before it, so a
    /// record without one is never a root filesystem being made.
    fn drop_stale_rootfs_records(&self) -> Result<(), ImageError> {
        let keys: Vec<String> = {
            let db = self.db();
            let mut stmt = db
                .prepare("SELECT key FROM rootfs")
                .map_err(ImageError::db("read rootfs records"))?;
            let rows = stmt
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(ImageError::db("read rootfs records"))?;
            rows.collect::<Result<_, _>>()
                .map_err(ImageError::db("read rootfs records"))?
        };
        for key in keys {
            if !self.inner.snapshots.has_rootfs(&key) {
                tracing::info!(key, "dropping the record of a root filesystem that is gone");
                self.relaxed(|db| db.execute("DELETE FROM rootfs WHERE key = ?1", [&key]))
                    .map_err(ImageError::db("remove rootfs record"))?;
            }
        }
        Ok(())
    }

    fn rootfs_layers(&self) -> Result<BTreeSet<Digest>, ImageError> {
        let db = self.db();
        let mut stmt = db
            .prepare("SELECT image_layers.chain_id FROM rootfs JOIN image_layers ON image_layers.image_id = rootfs.image_id")
            .map_err(ImageError::db("read rootfs layers"))?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(ImageError::db("read rootfs layers"))?;
        let mut out = BTreeSet::new();
        for r in rows {
            out.insert(parse_stored(
                &r.map_err(ImageError::db("read rootfs layers"))?,
            )?);
        }
        Ok(out)
    }

    /// Imports an uncompressed or compressed layer tar on top of the stack
    /// `parent` (a chain id): stores it as a blob (as given), unpacks it,
    /// checks nothing else. Hold a [`Lease`] until the image is recorded.
    pub fn import_layer(
        &self,
        reader: impl Read,
        compression: Compression,
        parent: Option<&Digest>,
    ) -> Result<ImportedLayer, ImageError> {
        // Pass 1: the blob, hashed while written to a private ingest file.
        let (blob, blob_size) = self.inner.content.put_stream(reader)?;
        // Pass 2: unpack from the stored blob.
        let (file, _) = self.inner.content.open(&blob)?;
        let staging_key = Digest::sha256_of(format!("import {blob} {parent:?}").as_bytes());
        let staging = self.inner.snapshots.begin(&staging_key)?;
        let layer = crate::unpack::unpack_layer(
            file,
            compression,
            &staging.diff(),
            &blob,
            &self.inner.options,
        )?;
        let chain_id = match parent {
            None => layer.diff_id.clone(),
            Some(p) => Digest::sha256_of(format!("{p} {}", layer.diff_id).as_bytes()),
        };
        if self.inner.snapshots.has(&chain_id) {
            drop(staging);
        } else {
            let info = LayerInfo {
                chain_id: chain_id.clone(),
                diff_id: layer.diff_id.clone(),
                parent: parent.cloned(),
                blob: Some(blob.clone()),
                size: layer.size,
                entries: layer.entries,
            };
            self.inner.snapshots.publish(staging, &info)?;
        }
        Ok(ImportedLayer {
            blob,
            blob_size,
            diff_id: layer.diff_id,
            chain_id,
        })
    }

    /// Makes an image of imported layers (bottom first) and `config`
    /// (whose `rootfs.diff_ids` are set from the layers): writes the config
    /// and an OCI manifest, then records it under `names`.
    pub fn commit_image(
        &self,
        mut config: ImageConfiguration,
        layers: &[ImportedLayer],
        compression: Compression,
        names: &[ImageRef],
    ) -> Result<ImageId, ImageError> {
        config
            .rootfs_mut()
            .set_diff_ids(layers.iter().map(|l| l.diff_id.to_string()).collect());
        let config_bytes =
            serde_json::to_vec(&config).map_err(|e| ImageError::InvalidArgument {
                reason: format!("encode image config: {e}"),
            })?;
        let layer_descs: Vec<serde_json::Value> = layers
            .iter()
            .map(|l| {
                serde_json::json!({
                    "mediaType": media::oci_layer_media_type(compression),
                    "digest": l.blob.as_str(),
                    "size": l.blob_size,
                })
            })
            .collect();
        self.write_image(&config_bytes, layer_descs, names)
    }

    /// `commit`: an image of `base`'s layers (their blobs and media types
    /// as recorded) and, on top, `layer` (imported uncompressed on top of
    /// `base`'s last chain id; `None` when there was no change), with
    /// `config`, whose `rootfs.diff_ids` are set here. Records it under
    /// `names` (none: a dangling image). Hold a [`Lease`] from before the
    /// layer was imported.
    pub fn commit_child(
        &self,
        base: &Image,
        mut config: ImageConfiguration,
        layer: Option<&ImportedLayer>,
        names: &[ImageRef],
    ) -> Result<ImageId, ImageError> {
        let mut diff_ids = config_diff_ids(&base.id, &base.config)?;
        let mut layer_descs = base
            .layers
            .iter()
            .map(|d| {
                serde_json::to_value(d).map_err(|e| ImageError::InvalidArgument {
                    reason: format!("encode layer descriptor: {e}"),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(l) = layer {
            diff_ids.push(l.diff_id.clone());
            layer_descs.push(serde_json::json!({
                "mediaType": media::oci_layer_media_type(Compression::None),
                "digest": l.blob.as_str(),
                "size": l.blob_size,
            }));
        }
        config
            .rootfs_mut()
            .set_diff_ids(diff_ids.iter().map(ToString::to_string).collect());
        let config_bytes =
            serde_json::to_vec(&config).map_err(|e| ImageError::InvalidArgument {
                reason: format!("encode image config: {e}"),
            })?;
        self.write_image(&config_bytes, layer_descs, names)
    }

    /// Stores `config_bytes` and an OCI manifest of it and `layer_descs`,
    /// then records the manifest under `names`.
    fn write_image(
        &self,
        config_bytes: &[u8],
        layer_descs: Vec<serde_json::Value>,
        names: &[ImageRef],
    ) -> Result<ImageId, ImageError> {
        let config_digest = self.inner.content.put(config_bytes)?;
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_MANIFEST,
            "config": {
                "mediaType": media::OCI_CONFIG,
                "digest": config_digest.as_str(),
                "size": config_bytes.len(),
            },
            "layers": layer_descs,
        });
        let manifest_bytes =
            serde_json::to_vec(&manifest).map_err(|e| ImageError::InvalidArgument {
                reason: format!("encode manifest: {e}"),
            })?;
        let manifest_digest = self.inner.content.put(&manifest_bytes)?;
        self.record(&manifest_digest, names)
    }

    /// `wharf import`: one rootfs tar (as given, possibly compressed) and a
    /// config make an image.
    pub fn import(
        &self,
        reader: impl Read,
        compression: Compression,
        config: ImageConfiguration,
        names: &[ImageRef],
    ) -> Result<ImageId, ImageError> {
        let _lease = self.lease()?;
        let layer = self.import_layer(reader, compression, None)?;
        self.commit_image(config, &[layer], compression, names)
    }

    /// Assembles a writable root filesystem `key` from the image `image`
    /// (name, id or prefix) with the store's driver, and records it.
    pub fn mount_rootfs(&self, image: &str, key: &str) -> Result<Rootfs, ImageError> {
        self.mount_rootfs_with(image, key, RootfsOptions::default())
    }

    /// [`Store::mount_rootfs`] with options.
    pub fn mount_rootfs_with(
        &self,
        image: &str,
        key: &str,
        options: RootfsOptions,
    ) -> Result<Rootfs, ImageError> {
        self.mount_image_rootfs(&self.resolve(image)?, key, options)
    }

    /// [`Store::mount_rootfs_with`] for an image already resolved.
    pub fn mount_image_rootfs(
        &self,
        img: &Image,
        key: &str,
        options: RootfsOptions,
    ) -> Result<Rootfs, ImageError> {
        let rootfs = self.inner.snapshots.create_rootfs(
            key,
            &img.chain_ids,
            self.inner.driver,
            options.volatile,
        )?;
        let driver = match rootfs.driver {
            Driver::Overlay => "overlay",
            Driver::Vfs => "vfs",
        };
        let recorded = self.relaxed(|db| {
            db.execute(
                "INSERT INTO rootfs (key, image_id, driver, created) VALUES (?1, ?2, ?3, ?4)",
                params![key, img.id.as_str(), driver, now()],
            )
        });
        if let Err(e) = recorded {
            if let Err(cleanup) = self.inner.snapshots.remove_rootfs(key) {
                tracing::warn!(key, error = %cleanup, "roll back rootfs");
            }
            return Err(ImageError::db("record rootfs")(e));
        }
        Ok(rootfs)
    }

    /// The root filesystem `key`.
    pub fn rootfs(&self, key: &str) -> Result<Rootfs, ImageError> {
        self.inner.snapshots.rootfs(key)
    }

    /// Mounts the root filesystem `key` again (after
    /// [`Store::unmount_rootfs`]) with its writable layer as it was.
    pub fn remount_rootfs(&self, key: &str) -> Result<Rootfs, ImageError> {
        let image_id: Option<String> = self
            .db()
            .query_row("SELECT image_id FROM rootfs WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()
            .map_err(ImageError::db("read rootfs record"))?;
        let image_id = image_id.ok_or_else(|| ImageError::RootfsNotFound {
            key: key.to_string(),
        })?;
        // Still mounted (`run` mounts it while it creates the container):
        // the image's layers are not needed.
        if self.inner.snapshots.is_mounted(key)? {
            return self.inner.snapshots.rootfs(key);
        }
        let img = self.resolve(&image_id)?;
        self.inner.snapshots.remount_rootfs(key, &img.chain_ids)
    }

    /// Unmounts the root filesystem `key`, keeping its writable layer.
    pub fn unmount_rootfs(&self, key: &str) -> Result<(), ImageError> {
        self.inner.snapshots.unmount_rootfs(key)
    }

    /// Whether the root filesystem `key` is mounted.
    pub fn rootfs_mounted(&self, key: &str) -> Result<bool, ImageError> {
        self.inner.snapshots.is_mounted(key)
    }

    /// Unmounts and removes the root filesystem `key` and its record. A
    /// record whose directory is gone (an OS crash lost the commit that
    /// removed it) is removed too; `NotFound` only when neither exists.
    pub fn remove_rootfs(&self, key: &str) -> Result<(), ImageError> {
        self.remove_rootfs_with(key, false)
    }

    /// [`Store::remove_rootfs`], with the directory only moved into the
    /// store's trash (one rename) instead of deleted: the files go with
    /// [`Store::empty_trash`], which the caller runs once nobody waits for
    /// the removal. A process that dies in between leaves them to the next
    /// `empty_trash` or GC.
    pub fn remove_rootfs_deferred(&self, key: &str) -> Result<(), ImageError> {
        self.remove_rootfs_with(key, true)
    }

    /// Copies what the WAL holds into `image.db`, without waiting for
    /// readers or writers (SQLite's PASSIVE checkpoint). Otherwise the
    /// commit that crosses the auto-checkpoint threshold does it, with
    /// its fsyncs, on that command's path: a process with nothing left to
    /// answer (a monitor whose clients are told) calls this instead.
    pub fn checkpoint(&self) -> Result<(), ImageError> {
        self.db()
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
            .map_err(ImageError::db("checkpoint the WAL"))
    }

    /// Deletes the root filesystems [`Store::remove_rootfs_deferred`] moved
    /// aside, this process's and any a dead process left.
    pub fn empty_trash(&self) -> Result<(), ImageError> {
        self.inner.snapshots.empty_trash()
    }

    fn remove_rootfs_with(&self, key: &str, deferred: bool) -> Result<(), ImageError> {
        let removed = if deferred {
            self.inner.snapshots.trash_rootfs(key)
        } else {
            self.inner.snapshots.remove_rootfs(key)
        };
        let removed = match removed {
            Ok(()) => true,
            Err(ImageError::RootfsNotFound { .. }) => false,
            Err(e) => return Err(e),
        };
        let deleted = self
            .relaxed(|db| db.execute("DELETE FROM rootfs WHERE key = ?1", [key]))
            .map_err(ImageError::db("remove rootfs record"))?;
        if !removed && deleted == 0 {
            return Err(ImageError::RootfsNotFound {
                key: key.to_string(),
            });
        }
        Ok(())
    }

    /// Runs `f` with the connection at `synchronous=NORMAL`, for the records
    /// of root filesystems: they name a container's writable layer, not
    /// content, and are written twice per `run --rm`, where a synchronous
    /// commit (WAL and directory fsyncs) costs 1-10 ms on a VM disk. Such a
    /// commit survives any process crash; an OS crash or power loss may roll
    /// it back, as for the engine's container records. A lost insert leaves
    /// a directory without a record, which `remove_rootfs` still removes; a
    /// lost delete leaves a record without a directory, which
    /// `remove_rootfs` and GC drop. Everything else stays synchronous.
    fn relaxed<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        let db = self.db();
        db.pragma_update(None, "synchronous", "NORMAL")?;
        let result = f(&db);
        // Back to FULL before anything else uses the connection; should
        // that fail, fail this call too rather than go on unsynchronized.
        db.pragma_update(None, "synchronous", "FULL")?;
        result
    }

    /// Writes the changes of the overlay root filesystem `key` as an OCI
    /// layer tar (uncompressed).
    pub fn diff_rootfs(&self, key: &str, out: impl Write) -> Result<DiffStats, ImageError> {
        let rootfs = self.rootfs(key)?;
        let upper = rootfs.upper.ok_or_else(|| ImageError::InvalidArgument {
            reason: format!(
                "rootfs {key} uses the vfs driver: it has no separate writable layer to diff"
            ),
        })?;
        diff::write_diff(&upper, out)
    }
}

/// Deletes layer rows no image uses.
fn delete_unreferenced_layers(db: &Connection) -> Result<usize, ImageError> {
    db.execute(
        "DELETE FROM layers WHERE chain_id NOT IN (SELECT chain_id FROM image_layers)",
        [],
    )
    .map_err(ImageError::db("remove unreferenced layers"))
}

fn lookup_name(db: &Connection, name: &str) -> Result<Option<String>, ImageError> {
    db.query_row("SELECT image_id FROM names WHERE name = ?1", [name], |r| {
        r.get(0)
    })
    .optional()
    .map_err(ImageError::db("look up name"))
}

/// Parses an image config blob; its `rootfs.diff_ids`.
pub(crate) fn config_diff_ids(digest: &Digest, bytes: &[u8]) -> Result<Vec<Digest>, ImageError> {
    let config: ImageConfiguration =
        serde_json::from_slice(bytes).map_err(|source| ImageError::ParseDocument {
            what: "image config",
            digest: digest.clone(),
            source,
        })?;
    let diff_ids = config
        .rootfs()
        .diff_ids()
        .iter()
        .map(|d| Digest::parse(d))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(diff_ids)
}

/// Parses a manifest blob, refusing indexes and schema 1 with clear errors.
fn parse_manifest(digest: &Digest, bytes: &[u8]) -> Result<(String, ImageManifest), ImageError> {
    let probe: Probe =
        serde_json::from_slice(bytes).map_err(|source| ImageError::ParseDocument {
            what: "manifest",
            digest: digest.clone(),
            source,
        })?;
    if probe.schema_version == Some(1) || probe.media_type.as_deref().is_some_and(media::is_schema1)
    {
        return Err(ImageError::UnsupportedMediaType {
            media_type: probe
                .media_type
                .unwrap_or_else(|| media::DOCKER_SCHEMA1_MANIFEST.to_string()),
            hint: Some("Docker schema 1 images are not supported"),
        });
    }
    if probe.manifests.is_some() || probe.media_type.as_deref().is_some_and(media::is_index) {
        return Err(ImageError::InvalidDocument {
            what: "manifest",
            digest: digest.clone(),
            reason: "it is an index: select a platform's manifest first".to_string(),
        });
    }
    if probe.config.is_none() {
        return Err(ImageError::InvalidDocument {
            what: "manifest",
            digest: digest.clone(),
            reason: "it has no config".to_string(),
        });
    }
    let media_type = probe
        .media_type
        .unwrap_or_else(|| media::OCI_MANIFEST.to_string());
    if !media::is_manifest(&media_type) {
        return Err(ImageError::UnsupportedMediaType {
            media_type,
            hint: None,
        });
    }
    let manifest: ImageManifest =
        serde_json::from_slice(bytes).map_err(|source| ImageError::ParseDocument {
            what: "manifest",
            digest: digest.clone(),
            source,
        })?;
    Ok((media_type, manifest))
}

impl Ingest for Store {
    fn begin(&self, desc: &Descriptor, target: &BlobTarget) -> Result<Begin, ImageError> {
        let digest = Digest::try_from(desc.digest())?;
        let size = desc.size();
        let lease = self.lease()?;
        let BlobTarget::Layer { diff_id, chain_id } = target else {
            return Ok(match self.inner.content.begin(&digest, size)? {
                None => Begin::Present,
                Some(ingest) => Begin::Write(Box::new(PlainWriter {
                    ingest,
                    _lease: lease,
                })),
            });
        };
        let media_type = desc.media_type().to_string();
        let compression = media::layer_compression(&media_type).ok_or_else(|| {
            ImageError::UnsupportedMediaType {
                media_type: media_type.clone(),
                hint: Some("not a layer media type Wharf can unpack"),
            }
        })?;
        let mut job = LayerJob {
            blob: digest.clone(),
            diff_id: diff_id.clone(),
            chain_id: chain_id.clone(),
            compression,
            mode: Mode::Unpack,
            snapshots: self.inner.snapshots.clone(),
            options: self.inner.options.clone(),
        };
        match self.inner.content.begin(&digest, size)? {
            None => {
                if !self.inner.snapshots.has(chain_id) {
                    // The blob is here (another image, or an earlier pull
                    // that crashed after publishing it): unpack it locally.
                    let (file, _) = self.inner.content.open(&digest)?;
                    let outcome = writer::run_job(&job, file)?;
                    writer::finish_job(&job, outcome)?;
                }
                Ok(Begin::Present)
            }
            Some(ingest) => {
                if self.inner.snapshots.has(chain_id) {
                    job.mode = Mode::Verify;
                }
                Ok(Begin::Write(Box::new(LayerWriter::new(
                    ingest, job, lease,
                )?)))
            }
        }
    }
}
