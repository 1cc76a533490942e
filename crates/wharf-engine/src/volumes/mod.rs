//! Named volumes with Docker's semantics and the `local` driver: a
//! directory `<root>/volumes/<name>/_data`, or a filesystem (`type`,
//! `device`, `o`) mounted there while containers use the volume. Records
//! live in `engine.db` (`volumes`, `volume_users`); only this module writes
//! them and the `<root>/volumes` tree.
//!
//! Crash safety: a volume's directories are made (and synced) before its
//! row is committed; removal deletes the row first. A crash leaves at worst
//! a directory without a row, which is garbage: `prune` removes every such
//! directory, `create` the one of its name. Never a row without its
//! directory.
//!
//! Concurrency: every command is its own process. `create`, `remove` and
//! `prune` hold an `flock` on `<root>/volumes` for their whole run, so the
//! directory work after a commit cannot interleave with another of them;
//! their database work, and all of `acquire` and `release`, are `IMMEDIATE`
//! transactions. `remove` checks for users and deletes the row in one
//! transaction, `acquire` checks the row and records its user in one: a
//! volume in use is never removed. `copy_up` holds an `flock` on the
//! volume's own directory. Lock order: the volumes lock, then a volume's
//! lock, then database transactions.
//!
//! Callers: the CLI (and later the API) for create/ls/inspect/rm/prune;
//! the container paths for [`VolumeStore::acquire`],
//! [`VolumeStore::copy_up`] and [`VolumeStore::release`].

mod filter;
mod name;
mod options;
mod tree;

use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use rustix::fs::{FlockOperation, Mode, OFlags};

pub use filter::{prune_filters, LabelFilter, VolumeFilters};
pub use name::VolumeName;

use crate::error::EngineError;
use crate::state::db::{self, db};
use crate::state::{nanos, time, ContainerId};
use options::MountPlan;

/// The only volume driver.
pub const LOCAL_DRIVER: &str = "local";

/// The label Docker puts on volumes created without a name.
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";

/// What `volume create` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateVolumeRequest {
    /// The name; `None` makes an anonymous volume with a random name.
    pub name: Option<VolumeName>,
    /// The driver: only `local`.
    pub driver: String,
    /// Driver options, in order (`-o k=v`): `type`, `device`, `o`.
    pub options: Vec<(String, String)>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
}

impl Default for CreateVolumeRequest {
    fn default() -> Self {
        Self {
            name: None,
            driver: LOCAL_DRIVER.to_owned(),
            options: Vec::new(),
            labels: BTreeMap::new(),
        }
    }
}

/// A volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// Its name.
    pub name: VolumeName,
    /// Its driver (`local`).
    pub driver: String,
    /// The host directory containers mount: `<root>/volumes/<name>/_data`.
    pub mountpoint: PathBuf,
    /// When it was created.
    pub created: SystemTime,
    /// Its labels (an anonymous volume has [`ANONYMOUS_LABEL`]).
    pub labels: BTreeMap<String, String>,
    /// Its driver options.
    pub options: BTreeMap<String, String>,
    /// `local`: it exists on this host only.
    pub scope: &'static str,
    /// Whether it was created without a name.
    pub anonymous: bool,
}

/// What [`VolumeStore::prune`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// The removed volumes, by name.
    pub removed: Vec<VolumeName>,
    /// Bytes their data used.
    pub reclaimed: u64,
}

/// The volumes under one engine root. Separate processes each open their
/// own.
#[derive(Debug)]
pub struct VolumeStore {
    root: PathBuf,
    conn: db::SharedConnection,
}

const COLUMNS: &str = "name, driver, created, labels, options, anonymous";

impl VolumeStore {
    /// Opens (creating) `<root>/engine.db`, migrating it, and
    /// `<root>/volumes` (mode 0701, as Docker's: containers' users may
    /// traverse to a volume's data, not list the volumes).
    ///
    /// # Errors
    ///
    /// [`EngineError::Io`] when the directories cannot be made; database
    /// errors as `ContainerStore::open`.
    pub fn open(root: &Path) -> Result<Self, EngineError> {
        fs_err::create_dir_all(root).map_err(io("create directory", root))?;
        let conn = db::open(&root.join("engine.db"))?;
        Self::with_connection(root, Arc::new(Mutex::new(conn)))
    }

    /// [`VolumeStore::open`] over a connection the process already has.
    pub(crate) fn with_connection(
        root: &Path,
        conn: db::SharedConnection,
    ) -> Result<Self, EngineError> {
        mkdir(&root.join("volumes"), 0o701)?;
        Ok(Self {
            root: root.to_path_buf(),
            conn,
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        db::lock(&self.conn)
    }

    fn volumes_dir(&self) -> PathBuf {
        self.root.join("volumes")
    }

    fn volume_dir(&self, name: &VolumeName) -> PathBuf {
        self.volumes_dir().join(name.as_str())
    }

    /// `<root>/volumes/<name>/_data`, what containers mount.
    pub fn data_dir(&self, name: &VolumeName) -> PathBuf {
        self.volume_dir(name).join("_data")
    }

    /// Takes the lock of the whole volumes tree (released on drop).
    fn lock_volumes(&self) -> Result<OwnedFd, EngineError> {
        lock_dir(&self.volumes_dir())
    }

    /// Creates a volume, or returns the existing one of that name (Docker's
    /// create is idempotent; labels of a later create are ignored).
    ///
    /// # Errors
    ///
    /// [`EngineError::UnsupportedVolumeDriver`],
    /// [`EngineError::InvalidVolumeOption`];
    /// [`EngineError::VolumeOptionsConflict`] when the name exists with
    /// other options; [`EngineError::Io`], [`EngineError::Database`].
    pub fn create(&self, request: &CreateVolumeRequest) -> Result<Volume, EngineError> {
        if request.driver != LOCAL_DRIVER {
            return Err(EngineError::UnsupportedVolumeDriver {
                driver: request.driver.clone(),
            });
        }
        let options = options::validate(&request.options)?;
        let (name, anonymous) = match &request.name {
            Some(name) => (name.clone(), false),
            None => (VolumeName::random()?, true),
        };
        let mut labels = request.labels.clone();
        if anonymous {
            labels.insert(ANONYMOUS_LABEL.to_owned(), String::new());
        }

        let _lock = self.lock_volumes()?;
        let mut conn = self.conn();
        let tx = immediate(&mut conn, "begin creating a volume")?;
        if let Some(existing) = self.query(&tx, &name)? {
            if existing.options != options {
                return Err(EngineError::VolumeOptionsConflict {
                    name: name.to_string(),
                });
            }
            return Ok(existing);
        }
        // No row: a directory of this name is garbage from a crash.
        let dir = self.volume_dir(&name);
        if exists(&dir)? {
            remove_tree(&name, &dir)?;
        }
        let created = SystemTime::now();
        let made = DirGuard::new(name.clone(), dir.clone());
        mkdir(&dir, 0o755)?;
        mkdir(&dir.join("_data"), 0o755)?;
        sync_dir(&dir)?;
        sync_dir(&self.volumes_dir())?;
        tx.execute(
            "INSERT INTO volumes (name, driver, created, labels, options, anonymous)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                name.as_str(),
                LOCAL_DRIVER,
                nanos(created),
                json(&labels),
                json(&options),
                anonymous
            ],
        )
        .map_err(db("insert a volume"))?;
        tx.commit().map_err(db("commit a new volume"))?;
        made.commit();
        tracing::info!(volume = %name, "volume created");
        Ok(Volume {
            mountpoint: self.data_dir(&name),
            name,
            driver: LOCAL_DRIVER.to_owned(),
            created: time(nanos(created)),
            labels,
            options,
            scope: LOCAL_DRIVER,
            anonymous,
        })
    }

    fn query(&self, conn: &Connection, name: &VolumeName) -> Result<Option<Volume>, EngineError> {
        conn.prepare_cached(&format!("SELECT {COLUMNS} FROM volumes WHERE name = ?1"))
            .map_err(db("look up a volume"))?
            .query_row([name.as_str()], |r| self.read_row(r))
            .optional()
            .map_err(db("read a volume"))
    }

    fn read_row(&self, r: &rusqlite::Row<'_>) -> rusqlite::Result<Volume> {
        let name: String = r.get(0)?;
        let name = VolumeName::parse(&name).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
        })?;
        Ok(Volume {
            mountpoint: self.data_dir(&name),
            name,
            driver: r.get(1)?,
            created: time(r.get(2)?),
            labels: json_column(r, 3)?,
            options: json_column(r, 4)?,
            scope: LOCAL_DRIVER,
            anonymous: r.get(5)?,
        })
    }

    /// The volume of this name.
    ///
    /// # Errors
    ///
    /// [`EngineError::VolumeNotFound`], [`EngineError::Database`].
    pub fn inspect(&self, name: &VolumeName) -> Result<Volume, EngineError> {
        let conn = self.conn();
        self.query(&conn, name)?
            .ok_or_else(|| not_found(name.as_str()))
    }

    /// The volumes `filters` select, by name.
    ///
    /// # Errors
    ///
    /// [`EngineError::Database`].
    pub fn list(&self, filters: &VolumeFilters) -> Result<Vec<Volume>, EngineError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS}, EXISTS (SELECT 1 FROM volume_users u WHERE u.volume = v.name)
                 FROM volumes v ORDER BY name"
            ))
            .map_err(db("list volumes"))?;
        let rows = stmt
            .query_map([], |r| Ok((self.read_row(r)?, r.get::<_, bool>(6)?)))
            .map_err(db("list volumes"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(db("read a volume"))?;
        Ok(rows
            .into_iter()
            .filter(|(v, in_use)| filters.matches(v.name.as_str(), &v.driver, &v.labels, *in_use))
            .map(|(v, _)| v)
            .collect())
    }

    /// The containers using a volume, by id.
    ///
    /// # Errors
    ///
    /// [`EngineError::Database`].
    pub fn users(&self, name: &VolumeName) -> Result<Vec<ContainerId>, EngineError> {
        users(&self.conn(), name)
    }

    /// Removes a volume no container uses, its data with it. `force`
    /// makes a missing volume no error (Docker's `rm -f`); a volume in use
    /// is refused either way.
    ///
    /// # Errors
    ///
    /// [`EngineError::VolumeNotFound`] (unless `force`),
    /// [`EngineError::VolumeInUse`], [`EngineError::UnmountVolume`],
    /// [`EngineError::Io`], [`EngineError::Database`].
    pub fn remove(&self, name: &VolumeName, force: bool) -> Result<(), EngineError> {
        let _lock = self.lock_volumes()?;
        {
            let mut conn = self.conn();
            let tx = immediate(&mut conn, "begin removing a volume")?;
            if self.query(&tx, name)?.is_none() {
                return if force {
                    Ok(())
                } else {
                    Err(not_found(name.as_str()))
                };
            }
            let users = users(&tx, name)?;
            if !users.is_empty() {
                return Err(in_use(name, &users));
            }
            // A mount left by a crashed release goes before the row.
            unmount_if_mounted(name, &self.data_dir(name))?;
            tx.execute("DELETE FROM volumes WHERE name = ?1", [name.as_str()])
                .map_err(db("remove a volume"))?;
            tx.commit().map_err(db("commit removing a volume"))?;
        }
        tracing::info!(volume = %name, "volume removed");
        remove_tree(name, &self.volume_dir(name))
    }

    /// Removes the volumes no container uses: only anonymous ones unless
    /// `all` (Docker 23+), and only those every label filter passes. Also
    /// removes directories left without a row by a crash.
    ///
    /// # Errors
    ///
    /// [`EngineError::UnmountVolume`], [`EngineError::Io`],
    /// [`EngineError::Database`]; volumes removed before the failure stay
    /// removed.
    pub fn prune(&self, all: bool, labels: &[LabelFilter]) -> Result<PruneReport, EngineError> {
        let _lock = self.lock_volumes()?;
        let mut doomed = Vec::new();
        let known: Vec<String> = {
            let mut conn = self.conn();
            let tx = immediate(&mut conn, "begin pruning volumes")?;
            let candidates: Vec<Volume> = {
                let mut stmt = tx
                    .prepare_cached(&format!(
                        "SELECT {COLUMNS} FROM volumes v WHERE NOT EXISTS
                         (SELECT 1 FROM volume_users u WHERE u.volume = v.name) ORDER BY name"
                    ))
                    .map_err(db("list unused volumes"))?;
                let rows = stmt
                    .query_map([], |r| self.read_row(r))
                    .map_err(db("list unused volumes"))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(db("read a volume"))?;
                rows
            };
            for volume in candidates {
                if (all || volume.anonymous) && labels.iter().all(|l| l.matches(&volume.labels)) {
                    unmount_if_mounted(&volume.name, &volume.mountpoint)?;
                    tx.execute(
                        "DELETE FROM volumes WHERE name = ?1",
                        [volume.name.as_str()],
                    )
                    .map_err(db("remove a volume"))?;
                    doomed.push(volume.name);
                }
            }
            let known = tx
                .prepare_cached("SELECT name FROM volumes")
                .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
                .map_err(db("list volumes"))?;
            tx.commit().map_err(db("commit pruning volumes"))?;
            known
        };
        let mut report = PruneReport::default();
        for name in doomed {
            report.reclaimed += self.data_usage(&name).unwrap_or_else(|e| {
                tracing::warn!(volume = %name, error = %e, "size of a pruned volume unknown");
                0
            });
            remove_tree(&name, &self.volume_dir(&name))?;
            report.removed.push(name);
        }
        self.remove_garbage(&known)?;
        Ok(report)
    }

    /// Removes directories under `<root>/volumes` that have no row.
    /// Called with the volumes lock held.
    fn remove_garbage(&self, known: &[String]) -> Result<(), EngineError> {
        let dir = self.volumes_dir();
        for entry in fs_err::read_dir(&dir).map_err(io("read directory", &dir))? {
            let entry = entry.map_err(io("read directory", &dir))?;
            let file_name = entry.file_name();
            let Some(name) = file_name.to_str().and_then(|n| VolumeName::parse(n).ok()) else {
                continue;
            };
            if !known.iter().any(|k| k == name.as_str()) {
                tracing::info!(volume = %name, "removing a volume directory without a record");
                remove_tree(&name, &entry.path())?;
            }
        }
        Ok(())
    }

    /// Records that `container` uses the volume and returns the host
    /// directory to bind-mount into it. For a volume with a `type` option,
    /// the first user mounts its filesystem on that directory. Idempotent
    /// per container and volume. Undo with [`Self::release`].
    ///
    /// # Errors
    ///
    /// [`EngineError::VolumeNotFound`], [`EngineError::MountVolume`],
    /// [`EngineError::Database`].
    pub fn acquire(
        &self,
        container: &ContainerId,
        name: &VolumeName,
    ) -> Result<PathBuf, EngineError> {
        let mut conn = self.conn();
        let tx = immediate(&mut conn, "begin using a volume")?;
        let volume = self
            .query(&tx, name)?
            .ok_or_else(|| not_found(name.as_str()))?;
        tx.execute(
            "INSERT OR IGNORE INTO volume_users (volume, container_id) VALUES (?1, ?2)",
            params![name.as_str(), container.as_str()],
        )
        .map_err(db("record a volume's user"))?;
        let mut mounted = false;
        if let Some(plan) = options::mount_plan(&volume.options) {
            if !is_mount_root(&volume.mountpoint).map_err(io("inspect", &volume.mountpoint))? {
                mount(name, &plan, &volume.mountpoint)?;
                mounted = true;
            }
        }
        if let Err(e) = tx.commit() {
            if mounted {
                if let Err(undo) = unmount(name, &volume.mountpoint) {
                    tracing::warn!(volume = %name, error = %undo, "undo a volume mount");
                }
            }
            return Err(db("commit using a volume")(e));
        }
        Ok(volume.mountpoint)
    }

    /// Drops every use `container` recorded, unmounting the filesystems of
    /// volumes left without users. Idempotent.
    ///
    /// # Errors
    ///
    /// [`EngineError::UnmountVolume`] (the uses are dropped all the same),
    /// [`EngineError::Database`].
    pub fn release(&self, container: &ContainerId) -> Result<(), EngineError> {
        let mut conn = self.conn();
        let tx = immediate(&mut conn, "begin releasing volumes")?;
        let names: Vec<String> = tx
            .prepare_cached("SELECT volume FROM volume_users WHERE container_id = ?1")
            .and_then(|mut s| s.query_map([container.as_str()], |r| r.get(0))?.collect())
            .map_err(db("list a container's volumes"))?;
        tx.execute(
            "DELETE FROM volume_users WHERE container_id = ?1",
            [container.as_str()],
        )
        .map_err(db("drop a container's volume uses"))?;
        let mut failed = None;
        for name in names {
            let Ok(name) = VolumeName::parse(&name) else {
                continue;
            };
            let Some(volume) = self.query(&tx, &name)? else {
                continue;
            };
            if options::mount_plan(&volume.options).is_none() || !users(&tx, &name)?.is_empty() {
                continue;
            }
            if let Err(e) = unmount_if_mounted(&name, &volume.mountpoint) {
                tracing::warn!(volume = %name, error = %e, "unmount a volume");
                failed.get_or_insert(e);
            }
        }
        tx.commit().map_err(db("commit releasing volumes"))?;
        failed.map_or(Ok(()), Err)
    }

    /// Copies the image's content at `destination` (a path inside `rootfs`)
    /// into the volume, as Docker does the first time a volume is mounted:
    /// only when the destination is a directory in the image and the volume
    /// is empty, and at most once per volume (recorded in its row). The
    /// volume root takes the destination's owner and mode. Call it after
    /// [`Self::acquire`], so a typed volume is mounted. Returns whether it
    /// copied.
    ///
    /// `destination` is resolved inside `rootfs` with chroot semantics
    /// ([`wharf_sys::Root`]): a symlink in the image never leads to the host.
    /// Entries are copied without following symlinks: regular files,
    /// directories and symlinks, with mode, owner and times.
    ///
    /// # Errors
    ///
    /// [`EngineError::VolumeNotFound`], [`EngineError::CopyUp`],
    /// [`EngineError::Io`], [`EngineError::Database`].
    pub fn copy_up(
        &self,
        name: &VolumeName,
        rootfs: &Path,
        destination: &str,
    ) -> Result<bool, EngineError> {
        let dir = self.volume_dir(name);
        let _lock = match lock_dir(&dir) {
            Err(EngineError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return Err(not_found(name.as_str()));
            }
            other => other?,
        };
        let copied: Option<bool> = self
            .conn()
            .query_row(
                "SELECT copied_up FROM volumes WHERE name = ?1",
                [name.as_str()],
                |r| r.get(0),
            )
            .optional()
            .map_err(db("read a volume"))?;
        match copied {
            None => return Err(not_found(name.as_str())),
            Some(true) => return Ok(false),
            Some(false) => {}
        }
        let copy_error = |path: &Path, source: std::io::Error| EngineError::CopyUp {
            name: name.to_string(),
            path: path.display().to_string(),
            source,
        };
        let root = wharf_sys::Root::open(rootfs).map_err(io("open rootfs", rootfs))?;
        let dest = Path::new(destination);
        let src: OwnedFd = match root.open_file(dest, OFlags::RDONLY | OFlags::DIRECTORY) {
            Ok(file) => file.into(),
            Err(e)
                if matches!(
                    rustix::io::Errno::from_io_error(&e),
                    Some(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR)
                ) =>
            {
                return Ok(false);
            }
            Err(e) => return Err(copy_error(dest, e)),
        };
        let data = self.data_dir(name);
        let dst =
            rustix::fs::open(&data, DIR_FLAGS, Mode::empty()).map_err(|e| EngineError::Io {
                operation: "open",
                path: data.clone(),
                source: e.into(),
            })?;
        if !tree::is_empty(dst.as_fd()).map_err(|e| EngineError::Io {
            operation: "read directory",
            path: data.clone(),
            source: e.into(),
        })? {
            return Ok(false);
        }
        tree::copy_dir(src.as_fd(), dst.as_fd(), dest)
            .map_err(|e| copy_error(&e.path, e.source))?;
        let st = rustix::fs::fstat(&src).map_err(|e| copy_error(dest, e.into()))?;
        tree::copy_metadata(dst.as_fd(), &st).map_err(|e| EngineError::Io {
            operation: "set owner and mode of",
            path: data.clone(),
            source: e.into(),
        })?;
        let mut conn = self.conn();
        let tx = immediate(&mut conn, "begin recording a copy-up")?;
        tx.execute(
            "UPDATE volumes SET copied_up = 1 WHERE name = ?1",
            [name.as_str()],
        )
        .map_err(db("record a copy-up"))?;
        tx.commit().map_err(db("commit recording a copy-up"))?;
        tracing::info!(volume = %name, destination, "copied image content into volume");
        Ok(true)
    }

    /// Bytes the volume's data uses (regular files, symlinks; hard links
    /// once).
    ///
    /// # Errors
    ///
    /// [`EngineError::VolumeNotFound`], [`EngineError::Io`].
    pub fn usage(&self, name: &VolumeName) -> Result<u64, EngineError> {
        self.inspect(name)?;
        self.data_usage(name)
    }

    fn data_usage(&self, name: &VolumeName) -> Result<u64, EngineError> {
        let data = self.data_dir(name);
        let fd =
            rustix::fs::open(&data, DIR_FLAGS, Mode::empty()).map_err(|e| EngineError::Io {
                operation: "open",
                path: data.clone(),
                source: e.into(),
            })?;
        tree::usage(fd.as_fd(), &data).map_err(|e| EngineError::Io {
            operation: "measure",
            path: e.path,
            source: e.source,
        })
    }
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Removes the directory a failed create made, unless committed.
struct DirGuard {
    name: VolumeName,
    dir: PathBuf,
    armed: bool,
}

impl DirGuard {
    fn new(name: VolumeName, dir: PathBuf) -> Self {
        Self {
            name,
            dir,
            armed: true,
        }
    }

    fn commit(mut self) {
        self.armed = false;
    }
}

impl Drop for DirGuard {
    fn drop(&mut self) {
        if self.armed && self.dir.exists() {
            if let Err(e) = remove_tree(&self.name, &self.dir) {
                tracing::warn!(volume = %self.name, error = %e, "undo a volume directory");
            }
        }
    }
}

fn immediate<'c>(
    conn: &'c mut Connection,
    operation: &'static str,
) -> Result<Transaction<'c>, EngineError> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db(operation))
}

fn users(conn: &Connection, name: &VolumeName) -> Result<Vec<ContainerId>, EngineError> {
    let ids: Vec<String> = conn
        .prepare_cached(
            "SELECT container_id FROM volume_users WHERE volume = ?1 ORDER BY container_id",
        )
        .and_then(|mut s| s.query_map([name.as_str()], |r| r.get(0))?.collect())
        .map_err(db("list a volume's users"))?;
    Ok(ids
        .iter()
        .filter_map(|id| ContainerId::parse(id).ok())
        .collect())
}

fn in_use(name: &VolumeName, users: &[ContainerId]) -> EngineError {
    EngineError::VolumeInUse {
        name: name.to_string(),
        containers: users.iter().map(|u| u.short().to_owned()).collect(),
    }
}

fn not_found(name: &str) -> EngineError {
    EngineError::VolumeNotFound {
        name: name.to_owned(),
    }
}

fn io<'a>(
    operation: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> EngineError + 'a {
    move |source| EngineError::Io {
        operation,
        path: path.to_path_buf(),
        source,
    }
}

fn json(map: &BTreeMap<String, String>) -> String {
    serde_json::to_string(map).expect("a map of strings always serializes")
}

fn json_column(r: &rusqlite::Row<'_>, column: usize) -> rusqlite::Result<BTreeMap<String, String>> {
    let text: String = r.get(column)?;
    serde_json::from_str(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, e.into())
    })
}

/// Makes a directory with exactly `mode` (not masked); an existing one is
/// left as it is.
fn mkdir(path: &Path, mode: u32) -> Result<(), EngineError> {
    match rustix::fs::mkdir(path, Mode::RWXU) {
        Ok(()) => rustix::fs::chmod(path, Mode::from_raw_mode(mode)),
        Err(rustix::io::Errno::EXIST) => Ok(()),
        Err(e) => Err(e),
    }
    .map_err(|e| EngineError::Io {
        operation: "create directory",
        path: path.to_path_buf(),
        source: e.into(),
    })
}

fn exists(path: &Path) -> Result<bool, EngineError> {
    fs_err::symlink_metadata(path)
        .map(|_| true)
        .or_else(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Ok(false)
            } else {
                Err(e)
            }
        })
        .map_err(io("inspect", path))
}

fn sync_dir(path: &Path) -> Result<(), EngineError> {
    rustix::fs::open(path, DIR_FLAGS, Mode::empty())
        .and_then(rustix::fs::fsync)
        .map_err(|e| EngineError::Io {
            operation: "sync directory",
            path: path.to_path_buf(),
            source: e.into(),
        })
}

/// Takes an exclusive `flock` on a directory, waiting for it; the lock
/// lives as long as the returned fd (and dies with the process).
fn lock_dir(path: &Path) -> Result<OwnedFd, EngineError> {
    let fd = rustix::fs::open(path, DIR_FLAGS, Mode::empty()).map_err(|e| EngineError::Io {
        operation: "open",
        path: path.to_path_buf(),
        source: e.into(),
    })?;
    rustix::fs::flock(&fd, FlockOperation::LockExclusive).map_err(|e| EngineError::Io {
        operation: "lock",
        path: path.to_path_buf(),
        source: e.into(),
    })?;
    Ok(fd)
}

/// Whether `path` is the root of a mount (`STATX_ATTR_MOUNT_ROOT`).
fn is_mount_root(path: &Path) -> std::io::Result<bool> {
    let st = rustix::fs::statx(
        rustix::fs::CWD,
        path,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        rustix::fs::StatxFlags::empty(),
    )?;
    let attr = rustix::fs::StatxAttributes::MOUNT_ROOT;
    Ok(st.stx_attributes_mask.contains(attr) && st.stx_attributes.contains(attr))
}

/// Mounts a volume's filesystem on its data directory, as Docker's local
/// driver: `mount(device, _data, type, o)`; a read-only (or otherwise
/// restricted) bind mount takes a second, remounting call.
fn mount(name: &VolumeName, plan: &MountPlan, target: &Path) -> Result<(), EngineError> {
    let error = |source: rustix::io::Errno| EngineError::MountVolume {
        name: name.to_string(),
        fstype: plan.fstype.clone(),
        target: target.to_path_buf(),
        source: source.into(),
    };
    let data =
        std::ffi::CString::new(plan.data.as_str()).map_err(|_| error(rustix::io::Errno::INVAL))?;
    rustix::mount::mount(
        plan.source.as_str(),
        target,
        plan.fstype.as_str(),
        plan.flags,
        Some(data.as_c_str()),
    )
    .map_err(error)?;
    let restrictions =
        plan.flags & !(rustix::mount::MountFlags::BIND | rustix::mount::MountFlags::REC);
    if plan.is_bind() && !restrictions.is_empty() {
        if let Err(e) = rustix::mount::mount_remount(
            target,
            rustix::mount::MountFlags::BIND | restrictions,
            c"",
        ) {
            let _ = unmount(name, target);
            return Err(error(e));
        }
    }
    tracing::info!(volume = %name, fstype = %plan.fstype, "volume mounted");
    Ok(())
}

fn unmount(name: &VolumeName, target: &Path) -> Result<(), EngineError> {
    rustix::mount::unmount(target, rustix::mount::UnmountFlags::DETACH).map_err(|e| {
        EngineError::UnmountVolume {
            name: name.to_string(),
            target: target.to_path_buf(),
            source: e.into(),
        }
    })
}

fn unmount_if_mounted(name: &VolumeName, data: &Path) -> Result<(), EngineError> {
    match is_mount_root(data) {
        Ok(true) => unmount(name, data),
        Ok(false) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(EngineError::Io {
            operation: "inspect",
            path: data.to_path_buf(),
            source: e,
        }),
    }
}

/// Removes a volume's directory. A filesystem still mounted on its data
/// (a crashed release) is detached first, and removal is refused if it
/// stays: deleting through a bind mount would delete the host's files.
fn remove_tree(name: &VolumeName, dir: &Path) -> Result<(), EngineError> {
    let data = dir.join("_data");
    unmount_if_mounted(name, &data)?;
    if is_mount_root(&data).unwrap_or(false) {
        return Err(EngineError::Io {
            operation: "remove",
            path: dir.to_path_buf(),
            source: std::io::Error::from_raw_os_error(rustix::io::Errno::BUSY.raw_os_error()),
        });
    }
    match fs_err::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(EngineError::Io {
            operation: "remove",
            path: dir.to_path_buf(),
            source: e,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn store() -> (tempfile::TempDir, VolumeStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = VolumeStore::open(dir.path()).unwrap();
        (dir, store)
    }

    fn named(name: &str) -> CreateVolumeRequest {
        CreateVolumeRequest {
            name: Some(VolumeName::parse(name).unwrap()),
            ..CreateVolumeRequest::default()
        }
    }

    fn with_options(name: &str, options: &[(&str, &str)]) -> CreateVolumeRequest {
        CreateVolumeRequest {
            options: options
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..named(name)
        }
    }

    fn container(n: u8) -> ContainerId {
        ContainerId::parse(&format!("{n:02x}").repeat(32)).unwrap()
    }

    fn vol(name: &str) -> VolumeName {
        VolumeName::parse(name).unwrap()
    }

    fn names(volumes: &[Volume]) -> Vec<&str> {
        volumes.iter().map(|v| v.name.as_str()).collect()
    }

    fn is_root() -> bool {
        rustix::process::geteuid().is_root()
    }

    #[test]
    fn create_makes_a_0755_data_dir_and_is_idempotent() {
        let (dir, store) = store();
        let mut request = named("data");
        request.labels.insert("env".into(), "prod".into());
        let created = store.create(&request).unwrap();
        assert_eq!(created.mountpoint, dir.path().join("volumes/data/_data"));
        assert_eq!((created.driver.as_str(), created.scope), ("local", "local"));
        assert!(!created.anonymous);
        let meta = fs_err::metadata(&created.mountpoint).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o755);
        assert_eq!(
            fs_err::metadata(dir.path().join("volumes")).unwrap().mode() & 0o7777,
            0o701
        );
        // Again, from another "process", labels ignored: the same volume.
        let other = VolumeStore::open(dir.path()).unwrap();
        let again = other.create(&named("data")).unwrap();
        assert_eq!(again, created);
        assert_eq!(store.inspect(&vol("data")).unwrap(), created);
        assert_eq!(store.list(&VolumeFilters::default()).unwrap().len(), 1);
    }

    #[test]
    fn create_with_other_options_is_conflict() {
        let (_dir, store) = store();
        let tmpfs = [("type", "tmpfs"), ("device", "tmpfs"), ("o", "size=1m")];
        store.create(&with_options("data", &tmpfs)).unwrap();
        store.create(&with_options("data", &tmpfs)).unwrap();
        let err = store.create(&named("data")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict);
        assert_eq!(
            err.to_string(),
            "create volume data: it exists with different options"
        );
    }

    #[test]
    fn create_refuses_other_drivers_and_unknown_options() {
        let (dir, store) = store();
        let request = CreateVolumeRequest {
            driver: "nfs".into(),
            ..named("data")
        };
        let err = store.create(&request).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        assert_eq!(
            err.to_string(),
            "volume driver nfs is not supported: only local"
        );
        let err = store
            .create(&with_options("data", &[("colour", "blue")]))
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        assert!(!dir.path().join("volumes/data").exists());
    }

    #[test]
    fn anonymous_volumes_get_random_names_and_dockers_label() {
        let (_dir, store) = store();
        let a = store.create(&CreateVolumeRequest::default()).unwrap();
        let b = store.create(&CreateVolumeRequest::default()).unwrap();
        assert_ne!(a.name, b.name);
        assert_eq!(a.name.as_str().len(), 64);
        assert!(a.anonymous);
        assert_eq!(a.labels.get(ANONYMOUS_LABEL).map(String::as_str), Some(""));
        assert!(a.mountpoint.is_dir());
    }

    #[test]
    fn a_directory_without_a_row_is_garbage_for_create() {
        let (dir, store) = store();
        let garbage = dir.path().join("volumes/data/_data");
        fs_err::create_dir_all(&garbage).unwrap();
        fs_err::write(garbage.join("left-over"), b"x").unwrap();
        let v = store.create(&named("data")).unwrap();
        assert!(!v.mountpoint.join("left-over").exists());
    }

    #[test]
    fn concurrent_creates_of_one_name_all_succeed_with_one_row() {
        let (dir, _store) = store();
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let root = dir.path().to_path_buf();
                std::thread::spawn(move || {
                    let store = VolumeStore::open(&root).unwrap();
                    store.create(&named("shared")).unwrap()
                })
            })
            .collect();
        let created: Vec<Volume> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert!(created.windows(2).all(|w| w[0] == w[1]));
        let store = VolumeStore::open(dir.path()).unwrap();
        assert_eq!(
            names(&store.list(&VolumeFilters::default()).unwrap()),
            ["shared"]
        );
    }

    #[test]
    fn list_applies_dockers_filters() {
        let (_dir, store) = store();
        let mut web = named("web-data");
        web.labels.insert("env".into(), "prod".into());
        store.create(&web).unwrap();
        let mut db = named("db-data");
        db.labels.insert("env".into(), "dev".into());
        store.create(&db).unwrap();
        store.create(&named("cache")).unwrap();
        store.acquire(&container(1), &vol("cache")).unwrap();

        let list = |filters: &[&str]| {
            let f =
                VolumeFilters::parse(&filters.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
                    .unwrap();
            names(&store.list(&f).unwrap())
                .into_iter()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert_eq!(list(&[]), ["cache", "db-data", "web-data"]);
        assert_eq!(list(&["name=data"]), ["db-data", "web-data"]);
        assert_eq!(list(&["label=env"]), ["db-data", "web-data"]);
        assert_eq!(list(&["label=env=prod"]), ["web-data"]);
        assert_eq!(list(&["dangling=true"]), ["db-data", "web-data"]);
        assert_eq!(list(&["dangling=false"]), ["cache"]);
        assert_eq!(list(&["driver=local", "name=cac"]), ["cache"]);
        assert!(list(&["driver=nfs"]).is_empty());
    }

    #[test]
    fn rm_of_a_volume_in_use_is_conflict_until_released() {
        let (dir, store) = store();
        let v = store.create(&named("data")).unwrap();
        let path = store.acquire(&container(1), &vol("data")).unwrap();
        assert_eq!(path, v.mountpoint);
        store.acquire(&container(1), &vol("data")).unwrap();
        store.acquire(&container(2), &vol("data")).unwrap();
        assert_eq!(
            store.users(&vol("data")).unwrap(),
            [container(1), container(2)]
        );
        // Another process's rm, even forced.
        let other = VolumeStore::open(dir.path()).unwrap();
        for force in [false, true] {
            let err = other.remove(&vol("data"), force).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Conflict);
            assert_eq!(
                err.to_string(),
                "volume data is in use by container(s) 010101010101, 020202020202"
            );
        }
        assert!(v.mountpoint.is_dir());
        store.release(&container(1)).unwrap();
        store.release(&container(1)).unwrap();
        assert!(other.remove(&vol("data"), false).is_err());
        store.release(&container(2)).unwrap();
        other.remove(&vol("data"), false).unwrap();
        assert!(!dir.path().join("volumes/data").exists());
        let err = store.inspect(&vol("data")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert_eq!(err.to_string(), "no such volume: data");
        assert_eq!(
            store.remove(&vol("data"), false).unwrap_err().kind(),
            ErrorKind::NotFound
        );
        store.remove(&vol("data"), true).unwrap();
        assert_eq!(
            store
                .acquire(&container(1), &vol("data"))
                .unwrap_err()
                .kind(),
            ErrorKind::NotFound
        );
    }

    #[test]
    fn prune_removes_unused_anonymous_volumes_unless_all() {
        let (dir, store) = store();
        let anon = store.create(&CreateVolumeRequest::default()).unwrap();
        let busy = store.create(&CreateVolumeRequest::default()).unwrap();
        store.acquire(&container(1), &busy.name).unwrap();
        let mut kept = named("kept");
        kept.labels.insert("keep".into(), "yes".into());
        store.create(&kept).unwrap();
        let plain = store.create(&named("plain")).unwrap();
        fs_err::write(plain.mountpoint.join("f"), vec![0u8; 100]).unwrap();
        fs_err::write(anon.mountpoint.join("f"), vec![0u8; 10]).unwrap();
        fs_err::create_dir_all(dir.path().join("volumes/crashed/_data")).unwrap();

        let report = store.prune(false, &[]).unwrap();
        assert_eq!(report.removed, std::slice::from_ref(&anon.name));
        assert_eq!(report.reclaimed, 10);
        assert!(!anon.mountpoint.exists());
        assert!(!dir.path().join("volumes/crashed").exists());

        let keep = prune_filters(&["label!=keep".into()]).unwrap();
        let report = store.prune(true, &keep).unwrap();
        assert_eq!(report.removed, [vol("plain")]);
        assert_eq!(report.reclaimed, 100);
        let left = store.list(&VolumeFilters::default()).unwrap();
        let mut expect = vec![busy.name.as_str(), "kept"];
        expect.sort_unstable();
        assert_eq!(names(&left), expect);
    }

    #[test]
    fn copy_up_copies_the_image_directory_once_inside_the_rootfs() {
        let (dir, store) = store();
        let rootfs = dir.path().join("rootfs");
        fs_err::create_dir_all(rootfs.join("etc")).unwrap();
        fs_err::write(rootfs.join("etc/image-file"), b"from the image").unwrap();
        fs_err::create_dir_all(rootfs.join("srv/app/sub")).unwrap();
        fs_err::write(rootfs.join("srv/app/sub/conf"), b"conf").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", rootfs.join("srv/app/passwd-link")).unwrap();
        fs_err::set_permissions(
            rootfs.join("srv/app"),
            std::fs::Permissions::from_mode(0o750),
        )
        .unwrap();
        // The image points the mount destination at /etc: inside the rootfs.
        std::os::unix::fs::symlink("/etc", rootfs.join("data")).unwrap();
        std::os::unix::fs::symlink("../../../../../../etc", rootfs.join("up")).unwrap();

        let escape = store.create(&named("escape")).unwrap();
        assert!(store.copy_up(&escape.name, &rootfs, "/data").unwrap());
        let copied: Vec<String> = fs_err::read_dir(&escape.mountpoint)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(copied, ["image-file"], "host /etc must not be copied");
        let up = store.create(&named("up-escape")).unwrap();
        assert!(store.copy_up(&up.name, &rootfs, "/up").unwrap());
        assert!(!up.mountpoint.join("passwd").exists());
        assert!(up.mountpoint.join("image-file").exists());

        let app = store.create(&named("app")).unwrap();
        assert!(store.copy_up(&app.name, &rootfs, "/srv/app").unwrap());
        assert_eq!(
            fs_err::read(app.mountpoint.join("sub/conf")).unwrap(),
            b"conf"
        );
        assert_eq!(
            fs_err::read_link(app.mountpoint.join("passwd-link")).unwrap(),
            Path::new("/etc/passwd")
        );
        assert_eq!(
            fs_err::metadata(&app.mountpoint).unwrap().mode() & 0o7777,
            0o750
        );
        assert_eq!(
            store.usage(&app.name).unwrap(),
            4 + "/etc/passwd".len() as u64
        );
        // Once: emptied by a container, it is not filled again.
        fs_err::remove_dir_all(app.mountpoint.join("sub")).unwrap();
        fs_err::remove_file(app.mountpoint.join("passwd-link")).unwrap();
        assert!(!store.copy_up(&app.name, &rootfs, "/srv/app").unwrap());
        assert!(!app.mountpoint.join("sub").exists());

        // Nothing at the destination, or a non-empty volume: no copy, and a
        // later mount may still copy.
        let empty = store.create(&named("empty")).unwrap();
        assert!(!store.copy_up(&empty.name, &rootfs, "/missing").unwrap());
        fs_err::write(empty.mountpoint.join("mine"), b"").unwrap();
        assert!(!store.copy_up(&empty.name, &rootfs, "/srv/app").unwrap());
        fs_err::remove_file(empty.mountpoint.join("mine")).unwrap();
        assert!(store.copy_up(&empty.name, &rootfs, "/srv/app").unwrap());
        assert_eq!(
            store
                .copy_up(&vol("nope"), &rootfs, "/srv/app")
                .unwrap_err()
                .kind(),
            ErrorKind::NotFound
        );
    }

    #[test]
    fn copy_up_keeps_owners() {
        if !is_root() {
            return;
        }
        let (dir, store) = store();
        let rootfs = dir.path().join("rootfs");
        fs_err::create_dir_all(rootfs.join("home/user")).unwrap();
        fs_err::write(rootfs.join("home/user/file"), b"x").unwrap();
        std::os::unix::fs::symlink("file", rootfs.join("home/user/link")).unwrap();
        for p in ["home/user", "home/user/file"] {
            rustix::fs::chown(
                rootfs.join(p).as_path(),
                Some(rustix::fs::Uid::from_raw(1000)),
                Some(rustix::fs::Gid::from_raw(1001)),
            )
            .unwrap();
        }
        rustix::fs::chownat(
            rustix::fs::CWD,
            rootfs.join("home/user/link").as_path(),
            Some(rustix::fs::Uid::from_raw(1002)),
            Some(rustix::fs::Gid::from_raw(1003)),
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .unwrap();
        let v = store.create(&named("home")).unwrap();
        assert!(store.copy_up(&v.name, &rootfs, "home/user").unwrap());
        let owner = |p: &Path| {
            let m = fs_err::symlink_metadata(p).unwrap();
            (m.uid(), m.gid())
        };
        assert_eq!(owner(&v.mountpoint), (1000, 1001));
        assert_eq!(owner(&v.mountpoint.join("file")), (1000, 1001));
        assert_eq!(owner(&v.mountpoint.join("link")), (1002, 1003));
    }

    #[test]
    fn tmpfs_volume_is_mounted_by_the_first_user_and_unmounted_by_the_last() {
        if !is_root() {
            return;
        }
        let (dir, store) = store();
        let v = store
            .create(&with_options(
                "scratch",
                &[
                    ("type", "tmpfs"),
                    ("device", "tmpfs"),
                    ("o", "size=1m,uid=1000,mode=0710"),
                ],
            ))
            .unwrap();
        assert!(!is_mount_root(&v.mountpoint).unwrap());
        let path = store.acquire(&container(1), &v.name).unwrap();
        assert!(is_mount_root(&path).unwrap());
        let st = rustix::fs::statfs(path.as_path()).unwrap();
        assert_eq!(st.f_type as i64, 0x0102_1994, "tmpfs magic");
        let meta = fs_err::metadata(&path).unwrap();
        assert_eq!((meta.uid(), meta.mode() & 0o7777), (1000, 0o710));
        fs_err::write(path.join("f"), b"in tmpfs").unwrap();
        // A second user shares the same mount.
        store.acquire(&container(2), &v.name).unwrap();
        assert!(path.join("f").exists());
        store.release(&container(1)).unwrap();
        assert!(is_mount_root(&path).unwrap());
        store.release(&container(2)).unwrap();
        assert!(!is_mount_root(&path).unwrap());
        assert!(!path.join("f").exists());
        // Remounted fresh on the next first use; rm after release.
        store.acquire(&container(3), &v.name).unwrap();
        assert!(is_mount_root(&path).unwrap());
        store.release(&container(3)).unwrap();
        store.remove(&v.name, false).unwrap();
        assert!(!dir.path().join("volumes/scratch").exists());
    }

    #[test]
    fn bind_volume_mounts_the_device_and_rm_never_deletes_it() {
        if !is_root() {
            return;
        }
        let (dir, store) = store();
        let host = dir.path().join("host");
        fs_err::create_dir(&host).unwrap();
        fs_err::write(host.join("keep"), b"host data").unwrap();
        let device = host.to_str().unwrap();
        let v = store
            .create(&with_options(
                "bound",
                &[("type", "none"), ("o", "bind,ro"), ("device", device)],
            ))
            .unwrap();
        let path = store.acquire(&container(1), &v.name).unwrap();
        assert_eq!(fs_err::read(path.join("keep")).unwrap(), b"host data");
        assert!(fs_err::write(path.join("new"), b"").is_err(), "read-only");
        // A crash before release: the mount stays, rm must detach it first.
        store
            .conn()
            .execute("DELETE FROM volume_users", [])
            .unwrap();
        store.remove(&v.name, false).unwrap();
        assert_eq!(fs_err::read(host.join("keep")).unwrap(), b"host data");
    }

    #[test]
    fn mount_failures_leave_no_user() {
        if !is_root() {
            return;
        }
        let (_dir, store) = store();
        let v = store
            .create(&with_options(
                "broken",
                &[("type", "tmpfs"), ("device", "tmpfs"), ("o", "nonsense=1")],
            ))
            .unwrap();
        let err = store.acquire(&container(1), &v.name).unwrap_err();
        assert!(matches!(err, EngineError::MountVolume { .. }), "{err}");
        assert!(store.users(&v.name).unwrap().is_empty());
        store.remove(&v.name, false).unwrap();
    }
}
