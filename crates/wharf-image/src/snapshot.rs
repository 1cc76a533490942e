//! Layer snapshots and container root filesystems.
//!
//! Each layer is unpacked once into `<root>/overlay/<chain hex>/diff`,
//! keyed by its chain id, with `layer.json` beside it. An unpack happens in
//! `<root>/staging/<chain hex>-<unique>/`, is synced (`syncfs`), and then
//! renamed into place and the directory fsynced: a snapshot directory that
//! exists is complete and durable.
//!
//! A root filesystem (`<root>/rootfs/<key>/`) is an overlay mount of an
//! image's snapshots (top first) with a writable `upper/` and `work/`,
//! mounted on `merged/`; or, with the vfs driver, a full copy of the stack
//! with whiteouts applied in `rootfs/`.

use std::collections::HashMap;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};

use crate::content::sync_dir;
use crate::digest::Digest;
use crate::error::ImageError;
use crate::tree;

/// What is recorded next to an unpacked layer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LayerInfo {
    /// Key of the layer stack ending with this layer.
    pub chain_id: Digest,
    /// Digest of the uncompressed layer tar.
    pub diff_id: Digest,
    /// Chain id of the stack below, if any.
    pub parent: Option<Digest>,
    /// The compressed blob it was unpacked from (none for an import).
    pub blob: Option<Digest>,
    /// Uncompressed size in bytes.
    pub size: u64,
    /// Tar entries.
    pub entries: u64,
}

/// The chain ids of a stack of diff ids (bottom first): `chain(0) = diff(0)`,
/// `chain(n) = sha256(chain(n-1) + " " + diff(n))`.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(parent) => Digest::sha256_of(format!("{parent} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

/// How a root filesystem is assembled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    /// An overlay mount of the snapshots with a writable upper dir.
    #[default]
    Overlay,
    /// A full copy of the stack (filesystems where overlay cannot work).
    Vfs,
}

impl Driver {
    /// Parses `overlay` or `vfs`.
    pub fn parse(s: &str) -> Result<Driver, ImageError> {
        match s {
            "overlay" | "overlay2" | "overlayfs" => Ok(Driver::Overlay),
            "vfs" => Ok(Driver::Vfs),
            other => Err(ImageError::InvalidArgument {
                reason: format!("unknown storage driver {other:?} (use overlay or vfs)"),
            }),
        }
    }
}

/// A container's root filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rootfs {
    /// The caller's key.
    pub key: String,
    /// How it was assembled.
    pub driver: Driver,
    /// The directory to use as the container's rootfs.
    pub path: PathBuf,
    /// The writable layer (overlay only): what [`crate::diff`] reads.
    pub upper: Option<PathBuf>,
}

static STAGING_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The layer and rootfs directories under a store root.
#[derive(Debug, Clone)]
pub(crate) struct Snapshots {
    root: PathBuf,
}

/// An unpack in progress; removed on drop unless published.
#[derive(Debug)]
pub(crate) struct Staging {
    dir: PathBuf,
    published: bool,
}

impl Staging {
    /// Where the layer's files go.
    pub(crate) fn diff(&self) -> PathBuf {
        self.dir.join("diff")
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.published {
            if let Err(e) = fs_err::remove_dir_all(&self.dir) {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(path = %self.dir.display(), error = %e, "remove staging directory");
                }
            }
        }
    }
}

impl Snapshots {
    pub(crate) fn new(root: &Path) -> Result<Snapshots, ImageError> {
        for dir in ["overlay", "staging", "rootfs"] {
            let path = root.join(dir);
            fs_err::create_dir_all(&path)
                .map_err(|e| ImageError::io("create directory", &path, e))?;
        }
        Ok(Snapshots {
            root: root.to_path_buf(),
        })
    }

    fn layers_dir(&self) -> PathBuf {
        self.root.join("overlay")
    }

    pub(crate) fn layer_dir(&self, chain: &Digest) -> PathBuf {
        self.layers_dir().join(chain.hex())
    }

    /// The unpacked files of a layer.
    pub(crate) fn diff_dir(&self, chain: &Digest) -> PathBuf {
        self.layer_dir(chain).join("diff")
    }

    pub(crate) fn has(&self, chain: &Digest) -> bool {
        fs_err::symlink_metadata(self.layer_dir(chain).join("layer.json"))
            .is_ok_and(|m| m.is_file())
    }

    pub(crate) fn info(&self, chain: &Digest) -> Result<LayerInfo, ImageError> {
        let path = self.layer_dir(chain).join("layer.json");
        let bytes = fs_err::read(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                ImageError::LayerNotFound {
                    chain_id: chain.clone(),
                }
            } else {
                ImageError::io("read layer record", &path, e)
            }
        })?;
        serde_json::from_slice(&bytes).map_err(|e| ImageError::InvalidArgument {
            reason: format!("layer record {}: {e}", path.display()),
        })
    }

    /// A fresh staging directory for unpacking `chain`.
    pub(crate) fn begin(&self, chain: &Digest) -> Result<Staging, ImageError> {
        let n = STAGING_COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir =
            self.root
                .join("staging")
                .join(format!("{}-{}-{n}", chain.hex(), std::process::id()));
        let staging = Staging {
            dir,
            published: false,
        };
        fs_err::create_dir(&staging.dir)
            .map_err(|e| ImageError::io("create staging directory", &staging.dir, e))?;
        let diff = staging.diff();
        fs_err::create_dir(&diff)
            .map_err(|e| ImageError::io("create staging directory", &diff, e))?;
        fs_err::set_permissions(&diff, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .map_err(|e| ImageError::io("chmod staging directory", &diff, e))?;
        Ok(staging)
    }

    /// Records `info` in the staging directory, syncs the filesystem, and
    /// renames it into place. If another process published the same chain
    /// meanwhile, that one wins and this staging is removed.
    pub(crate) fn publish(&self, mut staging: Staging, info: &LayerInfo) -> Result<(), ImageError> {
        let record = staging.dir.join("layer.json");
        let json = serde_json::to_vec_pretty(info).map_err(|e| ImageError::InvalidArgument {
            reason: format!("encode layer record: {e}"),
        })?;
        let mut file = fs_err::File::create(&record)
            .map_err(|e| ImageError::io("write layer record", &record, e))?;
        file.write_all(&json)
            .and_then(|()| file.sync_all())
            .map_err(|e| ImageError::io("write layer record", &record, e))?;
        // One syncfs covers every file, directory and inode of the unpack.
        let dirfd =
            tree::open_dir(&staging.dir).map_err(|e| ImageError::io("open", &staging.dir, e))?;
        rustix::fs::syncfs(&dirfd).map_err(|e| ImageError::io("syncfs", &staging.dir, e.into()))?;
        let target = self.layer_dir(&info.chain_id);
        match fs_err::rename(&staging.dir, &target) {
            Ok(()) => {
                staging.published = true;
            }
            Err(e) if self.has(&info.chain_id) => {
                tracing::debug!(chain_id = %info.chain_id, error = %e, "layer published concurrently");
                return Ok(());
            }
            Err(e) => return Err(ImageError::io("publish layer", &target, e)),
        }
        sync_dir(&self.layers_dir())?;
        tracing::debug!(chain_id = %info.chain_id, "layer published");
        Ok(())
    }

    /// Removes a layer snapshot: renamed out of place first, so a half
    /// removal never looks like a snapshot.
    pub(crate) fn remove(&self, chain: &Digest) -> Result<(), ImageError> {
        let dir = self.layer_dir(chain);
        let n = STAGING_COUNTER.fetch_add(1, Ordering::Relaxed);
        let doomed = self.root.join("staging").join(format!(
            "{}-{}-{n}-removed",
            chain.hex(),
            std::process::id()
        ));
        match fs_err::rename(&dir, &doomed) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(ImageError::io("remove layer", &dir, e)),
        }
        fs_err::remove_dir_all(&doomed).map_err(|e| ImageError::io("remove layer", &doomed, e))
    }

    /// Every published layer's chain id.
    pub(crate) fn list(&self) -> Result<Vec<Digest>, ImageError> {
        let dir = self.layers_dir();
        let mut out = Vec::new();
        for entry in fs_err::read_dir(&dir).map_err(|e| ImageError::io("list layers", &dir, e))? {
            let entry = entry.map_err(|e| ImageError::io("list layers", &dir, e))?;
            match entry
                .file_name()
                .to_str()
                .map(|n| Digest::parse(&format!("sha256:{n}")))
            {
                Some(Ok(d)) => out.push(d),
                _ => {
                    tracing::warn!(path = %entry.path().display(), "stray entry in the layer store")
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Removes staging directories no live process of this store owns
    /// (left by a crash). Returns how many.
    pub(crate) fn clean_staging(&self) -> Result<usize, ImageError> {
        let dir = self.root.join("staging");
        let mut removed = 0;
        for entry in fs_err::read_dir(&dir).map_err(|e| ImageError::io("list", &dir, e))? {
            let entry = entry.map_err(|e| ImageError::io("list", &dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let pid = name.split('-').nth(1).and_then(|p| p.parse::<i32>().ok());
            let alive = pid.is_some_and(|p| p != 0 && Path::new(&format!("/proc/{p}")).exists());
            if alive {
                continue;
            }
            fs_err::remove_dir_all(entry.path())
                .map_err(|e| ImageError::io("remove", entry.path(), e))?;
            removed += 1;
        }
        Ok(removed)
    }

    fn rootfs_dir(&self, key: &str) -> PathBuf {
        self.root.join("rootfs").join(key)
    }

    /// Assembles the root filesystem `key` from `layers` (chain ids, bottom
    /// first). On failure nothing is left behind.
    pub(crate) fn create_rootfs(
        &self,
        key: &str,
        layers: &[Digest],
        driver: Driver,
        volatile: bool,
    ) -> Result<Rootfs, ImageError> {
        validate_key(key)?;
        for chain in layers {
            if !self.has(chain) {
                return Err(ImageError::LayerNotFound {
                    chain_id: chain.clone(),
                });
            }
        }
        let dir = self.rootfs_dir(key);
        // Each rootfs is made and deleted whole: spread them over the
        // filesystem's block groups.
        if let Some(parent) = dir.parent() {
            wharf_sys::inode::spread_subdirectories(parent);
        }
        match fs_err::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(ImageError::RootfsExists {
                    key: key.to_string(),
                })
            }
            Err(e) => return Err(ImageError::io("create rootfs directory", &dir, e)),
        }
        let result = match driver {
            Driver::Overlay => self.mount_overlay(key, &dir, layers, volatile),
            Driver::Vfs => self.copy_vfs(key, &dir, layers),
        };
        if result.is_err() {
            if let Err(e) = fs_err::remove_dir_all(&dir) {
                tracing::warn!(path = %dir.display(), error = %e, "roll back rootfs directory");
            }
        }
        result
    }

    fn mount_overlay(
        &self,
        key: &str,
        dir: &Path,
        layers: &[Digest],
        volatile: bool,
    ) -> Result<Rootfs, ImageError> {
        let upper = dir.join("upper");
        let work = dir.join("work");
        let merged = dir.join("merged");
        for d in [&upper, &work, &merged] {
            fs_err::create_dir(d).map_err(|e| ImageError::io("create directory", d, e))?;
        }
        fs_err::set_permissions(&upper, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .map_err(|e| ImageError::io("chmod", &upper, e))?;
        self.attach_overlay(key, dir, layers, volatile)
    }

    /// Mounts the overlay of `layers` with the existing `upper/` and `work/`
    /// of `dir` on its `merged/`; `volatile`: overlayfs never syncs the
    /// upper layer (falls back to a plain mount on kernels before 5.10).
    fn attach_overlay(
        &self,
        key: &str,
        dir: &Path,
        layers: &[Digest],
        volatile: bool,
    ) -> Result<Rootfs, ImageError> {
        let upper = dir.join("upper");
        let work = dir.join("work");
        let merged = dir.join("merged");
        let mut lowers: Vec<PathBuf> = layers.iter().rev().map(|c| self.diff_dir(c)).collect();
        if lowers.is_empty() {
            let empty = dir.join("empty");
            fs_err::create_dir(&empty)
                .map_err(|e| ImageError::io("create directory", &empty, e))?;
            lowers.push(empty);
        }
        let mount = match new_overlay(&lowers, &upper, &work, volatile) {
            Ok(m) => Ok(m),
            Err(e) if volatile && e.raw_os_error() == Some(libc::EINVAL) => {
                tracing::debug!(key, "no volatile overlay on this kernel: a synchronous one");
                new_overlay(&lowers, &upper, &work, false)
            }
            Err(e) => Err(e),
        }
        .map_err(|e| ImageError::Mount {
            what: "overlay",
            target: merged.clone(),
            source: e,
        })?;
        let target =
            wharf_sys::mount::open_path(&merged).map_err(|e| ImageError::io("open", &merged, e))?;
        wharf_sys::mount::attach(mount.as_fd(), target.as_fd()).map_err(|e| ImageError::Mount {
            what: "overlay",
            target: merged.clone(),
            source: e,
        })?;
        tracing::debug!(key, layers = layers.len(), "overlay rootfs mounted");
        Ok(Rootfs {
            key: key.to_string(),
            driver: Driver::Overlay,
            path: merged,
            upper: Some(upper),
        })
    }

    fn copy_vfs(&self, key: &str, dir: &Path, layers: &[Digest]) -> Result<Rootfs, ImageError> {
        let rootfs = dir.join("rootfs");
        fs_err::create_dir(&rootfs).map_err(|e| ImageError::io("create directory", &rootfs, e))?;
        fs_err::set_permissions(&rootfs, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .map_err(|e| ImageError::io("chmod", &rootfs, e))?;
        let dst = tree::open_dir(&rootfs).map_err(|e| ImageError::io("open", &rootfs, e))?;
        for chain in layers {
            let diff = self.diff_dir(chain);
            let src = tree::open_dir(&diff).map_err(|e| ImageError::io("open", &diff, e))?;
            let mut links = HashMap::new();
            apply_layer(src.as_fd(), dst.as_fd(), &mut links)
                .map_err(|e| ImageError::io("copy layer", &diff, e))?;
        }
        Ok(Rootfs {
            key: key.to_string(),
            driver: Driver::Vfs,
            path: rootfs,
            upper: None,
        })
    }

    /// The root filesystem `key` as created.
    pub(crate) fn rootfs(&self, key: &str) -> Result<Rootfs, ImageError> {
        validate_key(key)?;
        let dir = self.rootfs_dir(key);
        if dir.join("merged").is_dir() {
            Ok(Rootfs {
                key: key.to_string(),
                driver: Driver::Overlay,
                path: dir.join("merged"),
                upper: Some(dir.join("upper")),
            })
        } else if dir.join("rootfs").is_dir() {
            Ok(Rootfs {
                key: key.to_string(),
                driver: Driver::Vfs,
                path: dir.join("rootfs"),
                upper: None,
            })
        } else {
            Err(ImageError::RootfsNotFound {
                key: key.to_string(),
            })
        }
    }

    /// Mounts the overlay root filesystem `key` again after
    /// [`Snapshots::unmount_rootfs`], keeping its writable layer; a no-op
    /// when it is mounted or uses the vfs driver.
    pub(crate) fn remount_rootfs(
        &self,
        key: &str,
        layers: &[Digest],
    ) -> Result<Rootfs, ImageError> {
        let rootfs = self.rootfs(key)?;
        if rootfs.driver == Driver::Vfs || self.is_mounted(key)? {
            return Ok(rootfs);
        }
        for chain in layers {
            if !self.has(chain) {
                return Err(ImageError::LayerNotFound {
                    chain_id: chain.clone(),
                });
            }
        }
        let dir = self.rootfs_dir(key);
        // Left by a volatile mount: overlayfs refuses to mount the layer
        // again, since nothing says its writes reached the disk.
        if dir.join("work/work/incompat/volatile").exists() {
            return Err(ImageError::InvalidArgument {
                reason: format!(
                    "root filesystem {key} was mounted volatile (for a container removed when it \
                     exits, its writes never synced) and cannot be mounted again; remove it"
                ),
            });
        }
        self.attach_overlay(key, &dir, layers, false)
    }

    /// Whether the overlay of `key` is mounted on its `merged/`.
    pub(crate) fn is_mounted(&self, key: &str) -> Result<bool, ImageError> {
        validate_key(key)?;
        let dir = self.rootfs_dir(key);
        let merged = dir.join("merged");
        let inner = match fs_err::metadata(&merged) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(ImageError::io("stat", &merged, e)),
        };
        let outer = fs_err::metadata(&dir).map_err(|e| ImageError::io("stat", &dir, e))?;
        Ok(inner.dev() != outer.dev())
    }

    /// Unmounts the overlay root filesystem `key`, keeping its directories
    /// and writable layer; a no-op when it is not mounted.
    pub(crate) fn unmount_rootfs(&self, key: &str) -> Result<(), ImageError> {
        while self.is_mounted(key)? {
            let merged = self.rootfs_dir(key).join("merged");
            match wharf_sys::mount::detach(&merged) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Ok(()),
                Err(e) => {
                    return Err(ImageError::Mount {
                        what: "unmount overlay",
                        target: merged,
                        source: e,
                    })
                }
            }
        }
        Ok(())
    }

    /// Whether the root filesystem `key` has its directory (false for a
    /// key that is not valid).
    pub(crate) fn has_rootfs(&self, key: &str) -> bool {
        validate_key(key).is_ok() && self.rootfs_dir(key).is_dir()
    }

    /// Unmounts (overlay) and removes the root filesystem `key`.
    pub(crate) fn remove_rootfs(&self, key: &str) -> Result<(), ImageError> {
        let dir = self.detach_rootfs(key)?;
        fs_err::remove_dir_all(&dir).map_err(|e| ImageError::io("remove rootfs", &dir, e))
    }

    /// Unmounts the root filesystem `key` and moves its directory into the
    /// trash (one rename), for [`Snapshots::empty_trash`] to delete.
    pub(crate) fn trash_rootfs(&self, key: &str) -> Result<(), ImageError> {
        let dir = self.detach_rootfs(key)?;
        let trash = self.root.join(TRASH);
        fs_err::create_dir_all(&trash)
            .map_err(|e| ImageError::io("create directory", &trash, e))?;
        let target = trash.join(key);
        if target.exists() {
            fs_err::remove_dir_all(&target)
                .map_err(|e| ImageError::io("remove rootfs", &target, e))?;
        }
        fs_err::rename(&dir, &target).map_err(|e| ImageError::io("move to the trash", &dir, e))
    }

    /// Deletes whatever is in the trash: what [`Snapshots::trash_rootfs`]
    /// moved there, by this process or one that died before it emptied it.
    /// Entries another process deletes meanwhile are fine.
    pub(crate) fn empty_trash(&self) -> Result<(), ImageError> {
        let trash = self.root.join(TRASH);
        let entries = match fs_err::read_dir(&trash) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(ImageError::io("list", &trash, e)),
        };
        for entry in entries {
            let path = entry.map_err(|e| ImageError::io("list", &trash, e))?.path();
            match fs_err::remove_dir_all(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(ImageError::io("remove rootfs", &path, e)),
            }
        }
        Ok(())
    }

    /// Unmounts the root filesystem `key` (refusing to go on while anything
    /// is still mounted there) and returns its directory.
    fn detach_rootfs(&self, key: &str) -> Result<PathBuf, ImageError> {
        validate_key(key)?;
        let dir = self.rootfs_dir(key);
        if !dir.exists() {
            return Err(ImageError::RootfsNotFound {
                key: key.to_string(),
            });
        }
        let merged = dir.join("merged");
        if merged.exists() {
            match wharf_sys::mount::detach(&merged) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
                Err(e) => {
                    return Err(ImageError::Mount {
                        what: "unmount overlay",
                        target: merged,
                        source: e,
                    })
                }
            }
            let still =
                fs_err::metadata(&merged).map_err(|e| ImageError::io("stat", &merged, e))?;
            let parent = fs_err::metadata(&dir).map_err(|e| ImageError::io("stat", &dir, e))?;
            if still.dev() != parent.dev() {
                return Err(ImageError::Mount {
                    what: "unmount overlay",
                    target: merged,
                    source: io::Error::from_raw_os_error(libc::EBUSY),
                });
            }
        }
        Ok(dir)
    }
}

/// Where removed root filesystems wait to be deleted, in the snapshots root.
const TRASH: &str = "trash";

/// A detached overlay of `lowers` (top first) with `upper` and `work`.
fn new_overlay(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    volatile: bool,
) -> io::Result<OwnedFd> {
    let opt = |key: &str, value: Option<String>| wharf_sys::mount::FsOption {
        key: key.to_string(),
        value,
    };
    // No redirects or metacopy-only files in the upper dir: a diff of it
    // must be the complete change set.
    let mut tail = vec![
        opt("upperdir", Some(upper.display().to_string())),
        opt("workdir", Some(work.display().to_string())),
        opt("redirect_dir", Some("off".into())),
        opt("metacopy", Some("off".into())),
    ];
    if volatile {
        tail.push(opt("volatile", None));
    }
    let mut options: Vec<_> = lowers
        .iter()
        .map(|l| opt("lowerdir+", Some(l.display().to_string())))
        .collect();
    options.extend(tail.iter().cloned());
    match wharf_sys::mount::new_fs("overlay", Some("wharf"), &options, 0) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) && lowers.len() < 100 => {
            // Kernels before 6.8 have no `lowerdir+`: one colon list.
            // Store paths are hex digests, never containing ':' or ','.
            let list = lowers
                .iter()
                .map(|l| l.display().to_string())
                .collect::<Vec<_>>()
                .join(":");
            let mut legacy = vec![opt("lowerdir", Some(list))];
            legacy.extend(tail);
            wharf_sys::mount::new_fs("overlay", Some("wharf"), &legacy, 0)
        }
        other => other,
    }
}

/// A key names a directory: one safe path component.
fn validate_key(key: &str) -> Result<(), ImageError> {
    let ok = !key.is_empty()
        && key.len() <= 128
        && !key.starts_with('.')
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(ImageError::InvalidKey {
            key: key.to_string(),
        })
    }
}

fn stat_times(st: &rustix::fs::Stat) -> Timestamps {
    Timestamps {
        last_access: Timespec {
            tv_sec: st.st_atime,
            tv_nsec: st.st_atime_nsec as _,
        },
        last_modification: Timespec {
            tv_sec: st.st_mtime,
            tv_nsec: st.st_mtime_nsec as _,
        },
    }
}

/// Copies the layer `src` over the tree `dst` with overlay semantics:
/// whiteouts remove, opaque directories replace, a directory replaces a
/// non-directory and the other way round. Only descriptor-relative,
/// non-following operations touch `dst`.
fn apply_layer(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    links: &mut HashMap<(u64, u64), (OwnedFd, std::ffi::OsString)>,
) -> io::Result<()> {
    for name in tree::list_sorted(src)? {
        let st = rustix::fs::statat(src, &name, AtFlags::SYMLINK_NOFOLLOW)?;
        if tree::is_whiteout(&st) {
            tree::remove_at(dst, &name)?;
            continue;
        }
        let existing = tree::type_at(dst, &name)?;
        let kind = FileType::from_raw_mode(st.st_mode);
        if kind == FileType::Directory {
            let sub_src = tree::open_dir_at(src, &name)?;
            match existing {
                Some(e) if tree::is_dir(&e) => {
                    if tree::is_opaque(sub_src.as_fd())? {
                        let sub = tree::open_dir_at(dst, &name)?;
                        tree::clear_dir(sub.as_fd())?;
                    }
                }
                Some(_) => {
                    tree::remove_at(dst, &name)?;
                    rustix::fs::mkdirat(dst, &name, Mode::from_raw_mode(0o700))?;
                }
                None => rustix::fs::mkdirat(dst, &name, Mode::from_raw_mode(0o700))?,
            }
            let sub_dst = tree::open_dir_at(dst, &name)?;
            copy_meta(sub_src.as_fd(), sub_dst.as_fd(), &st, true)?;
            apply_layer(sub_src.as_fd(), sub_dst.as_fd(), links)?;
            rustix::fs::futimens(&sub_dst, &stat_times(&st))?;
            continue;
        }
        if existing.is_some() {
            tree::remove_at(dst, &name)?;
        }
        if st.st_nlink > 1 && kind != FileType::Directory {
            let id = (st.st_dev, st.st_ino);
            if let Some((first_dir, first_name)) = links.get(&id) {
                rustix::fs::linkat(
                    first_dir,
                    first_name.as_os_str(),
                    dst,
                    &name,
                    AtFlags::empty(),
                )?;
                continue;
            }
        }
        match kind {
            FileType::RegularFile => {
                let from = rustix::fs::openat(
                    src,
                    &name,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                let to = rustix::fs::openat(
                    dst,
                    &name,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )?;
                let mut from = std::fs::File::from(from);
                let mut to = std::fs::File::from(to);
                io::copy(&mut from, &mut to)?;
                copy_meta(from.as_fd(), to.as_fd(), &st, true)?;
                rustix::fs::futimens(&to, &stat_times(&st))?;
            }
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(src, &name, Vec::new())?;
                rustix::fs::symlinkat(target.as_c_str(), dst, &name)?;
                let fd = rustix::fs::openat(
                    dst,
                    &name,
                    OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                copy_meta(fd.as_fd(), fd.as_fd(), &st, false)?;
                rustix::fs::utimensat(&fd, "", &stat_times(&st), AtFlags::EMPTY_PATH)?;
            }
            FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo => {
                rustix::fs::mknodat(dst, &name, kind, Mode::from_raw_mode(0o600), st.st_rdev)?;
                let fd = rustix::fs::openat(
                    dst,
                    &name,
                    OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                copy_meta(fd.as_fd(), fd.as_fd(), &st, false)?;
                match wharf_sys::inode::chmod(fd.as_fd(), st.st_mode & 0o7777) {
                    Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                        rustix::fs::chmodat(
                            dst,
                            &name,
                            Mode::from_raw_mode(st.st_mode & 0o7777),
                            AtFlags::empty(),
                        )?;
                    }
                    other => other?,
                }
                rustix::fs::utimensat(&fd, "", &stat_times(&st), AtFlags::EMPTY_PATH)?;
            }
            _ => {
                tracing::warn!(name = %name.to_string_lossy(), "skipping socket in layer");
                continue;
            }
        }
        if st.st_nlink > 1 {
            let dir_copy = rustix::io::fcntl_dupfd_cloexec(dst, 0)?;
            links.insert((st.st_dev, st.st_ino), (dir_copy, name.clone()));
        }
    }
    Ok(())
}

/// Owner, mode and xattrs (but not overlayfs' own) from `st`/`src` onto
/// `dst`. `open` says both are real (not `O_PATH`) descriptors.
fn copy_meta(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    st: &rustix::fs::Stat,
    open: bool,
) -> io::Result<()> {
    rustix::fs::chownat(
        dst,
        "",
        Some(rustix::fs::Uid::from_raw(st.st_uid)),
        Some(rustix::fs::Gid::from_raw(st.st_gid)),
        AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW,
    )?;
    if open {
        rustix::fs::fchmod(dst, Mode::from_raw_mode(st.st_mode & 0o7777))?;
        for (name, value) in tree::xattrs(src)? {
            if name.starts_with("trusted.overlay.") {
                continue;
            }
            rustix::fs::fsetxattr(dst, name.as_str(), &value, rustix::fs::XattrFlags::empty())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_spec() {
        let a = Digest::sha256_of(b"a");
        let b = Digest::sha256_of(b"b");
        let c = Digest::sha256_of(b"c");
        let chain = chain_ids(&[a.clone(), b.clone(), c.clone()]);
        assert_eq!(chain[0], a);
        let ab = Digest::sha256_of(format!("{a} {b}").as_bytes());
        assert_eq!(chain[1], ab);
        assert_eq!(chain[2], Digest::sha256_of(format!("{ab} {c}").as_bytes()));
        assert!(chain_ids(&[]).is_empty());
    }

    #[test]
    fn keys_are_single_safe_components() {
        for good in ["c1", "wt123x4", "a.b-c_d"] {
            assert!(validate_key(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", ".hidden", "a/b", "a b", &"x".repeat(129)] {
            assert!(validate_key(bad).is_err(), "{bad}");
        }
        assert_eq!(Driver::parse("vfs").unwrap(), Driver::Vfs);
        assert!(Driver::parse("btrfs").is_err());
    }
}
