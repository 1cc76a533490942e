//! The engine's container records: `<root>/engine.db` (SQLite, WAL), its
//! event journal, and per-container locks. No processes here: callers (the
//! `run`/`start`/`rm` paths, the monitor) decide what happened and record it.
//!
//! Concurrency: every command is its own process. Each write is one
//! `IMMEDIATE` transaction, and a busy database makes a writer wait (up to a
//! minute), never fail. Name races are decided by the `UNIQUE` constraint on
//! `containers.name`: of two `run --name x` at once exactly one inserts, the
//! other gets [`EngineError::NameInUse`]. Commands on one container
//! serialise on [`ContainerStore::lock`]; lock order is the container lock
//! first, then database transactions, never the reverse.

pub(crate) mod db;
mod lock;
pub(crate) mod names;
mod pods;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

pub use lock::ContainerLock;
pub use names::{ContainerId, ContainerName};
pub use pods::{NewPod, PodRecord};

use crate::error::EngineError;
use db::db;

/// A container's state, Docker's vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContainerState {
    /// Created, never started (or its start failed).
    Created,
    /// Its process runs.
    Running,
    /// Its cgroup is frozen.
    Paused,
    /// Its monitor restarts it per the restart policy.
    Restarting,
    /// Its process ended (or its monitor died: exit code unknown).
    Exited,
    /// `rm` is under way.
    Removing,
    /// Removal failed half way; only `rm` applies.
    Dead,
}

impl ContainerState {
    /// The stored and displayed word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Restarting => "restarting",
            Self::Exited => "exited",
            Self::Removing => "removing",
            Self::Dead => "dead",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "created" => Self::Created,
            "running" => Self::Running,
            "paused" => Self::Paused,
            "restarting" => Self::Restarting,
            "exited" => Self::Exited,
            "removing" => Self::Removing,
            "dead" => Self::Dead,
            _ => return None,
        })
    }

    /// Whether `ps` without `-a` lists it (running, paused, restarting).
    pub fn is_up(self) -> bool {
        matches!(self, Self::Running | Self::Paused | Self::Restarting)
    }
}

impl fmt::Display for ContainerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What `create` records.
#[derive(Debug, Clone, PartialEq)]
pub struct NewContainer {
    /// The id, from [`ContainerId::random`].
    pub id: ContainerId,
    /// The name (`--name`, or [`ContainerStore::create_with_random_name`]).
    pub name: ContainerName,
    /// The image's id (config digest).
    pub image_id: String,
    /// The image as the user named it.
    pub image_name: String,
    /// The container's configuration: opaque JSON to this module.
    pub config: serde_json::Value,
    /// `--label`s and the image's labels.
    pub labels: BTreeMap<String, String>,
    /// The pod it joins (`--pod`), which must exist when it is recorded.
    pub pod_id: Option<crate::pods::PodId>,
}

/// A container's record.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerRecord {
    /// The id.
    pub id: ContainerId,
    /// The current name.
    pub name: ContainerName,
    /// The image's id.
    pub image_id: String,
    /// The image as the user named it.
    pub image_name: String,
    /// When it was created (nanosecond precision).
    pub created: SystemTime,
    /// Its configuration, as given to `create`.
    pub config: serde_json::Value,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its state.
    pub state: ContainerState,
    /// The init's pid while running or paused.
    pub pid: Option<i32>,
    /// The exit code once exited; `None` when unknown (the monitor died).
    pub exit_code: Option<i32>,
    /// When it last started.
    pub started_at: Option<SystemTime>,
    /// When it last ended.
    pub finished_at: Option<SystemTime>,
    /// How many times the restart policy restarted it.
    pub restart_count: u32,
    /// Its monitor's pid while one runs.
    pub monitor_pid: Option<i32>,
    /// `stop`, `kill` or `rm -f` asked for the current exit: the restart
    /// policy does not apply to it (cleared by `start`).
    pub stop_requested: bool,
    /// The health check's state as JSON (opaque here), when it has one.
    pub health: Option<serde_json::Value>,
    /// The pod it is in.
    pub pod_id: Option<crate::pods::PodId>,
}

/// A state change, applied by [`ContainerStore::transition`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// created, exited or restarting → running; sets `started_at`, clears
    /// the exit code.
    Start {
        /// The container's init.
        pid: i32,
        /// Its monitor.
        monitor_pid: Option<i32>,
    },
    /// running → paused.
    Pause,
    /// paused → running.
    Unpause,
    /// running or exited → restarting; counts a restart.
    Restart,
    /// running, paused or restarting → exited; sets `finished_at`, clears
    /// the pids. `exit_code: None` records an unknown code.
    Exit {
        /// The exit code, if known.
        exit_code: Option<i32>,
    },
    /// Anything but removing → removing (`rm` begins).
    Remove,
    /// Anything → dead (removal failed half way).
    Die,
}

impl Transition {
    /// The state it leads to.
    pub fn target(self) -> ContainerState {
        match self {
            Self::Start { .. } | Self::Unpause => ContainerState::Running,
            Self::Pause => ContainerState::Paused,
            Self::Restart => ContainerState::Restarting,
            Self::Exit { .. } => ContainerState::Exited,
            Self::Remove => ContainerState::Removing,
            Self::Die => ContainerState::Dead,
        }
    }

    fn allowed_from(self, from: ContainerState) -> bool {
        use ContainerState as S;
        match self {
            Self::Start { .. } => matches!(from, S::Created | S::Exited | S::Restarting),
            Self::Pause => from == S::Running,
            Self::Unpause => from == S::Paused,
            Self::Restart => matches!(from, S::Running | S::Exited),
            Self::Exit { .. } => matches!(from, S::Running | S::Paused | S::Restarting),
            Self::Remove => from != S::Removing,
            Self::Die => true,
        }
    }
}

/// Which containers [`ContainerStore::list`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListFilter {
    /// All (`ps -a`).
    All,
    /// Running, paused or restarting (`ps`).
    Up,
}

/// One entry of the event journal.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Position in the journal, increasing.
    pub seq: i64,
    /// When it was recorded.
    pub time: SystemTime,
    /// The container's id.
    pub container: ContainerId,
    /// The container's name at the time.
    pub name: String,
    /// Docker's action word (`create`, `start`, `die`, `destroy`, ...).
    pub action: String,
    /// Extra attributes (`exitCode`, `image`, ...).
    pub attributes: BTreeMap<String, String>,
}

/// The container records under one engine root. Cheap to share between
/// threads; separate processes each open their own.
#[derive(Debug)]
pub struct ContainerStore {
    root: PathBuf,
    conn: db::SharedConnection,
}

const COLUMNS: &str = "id, name, image_id, image_name, created, config, labels, state, pid, \
     exit_code, started_at, finished_at, restart_count, monitor_pid, stop_requested, health, pod_id";

/// How many names [`ContainerStore::create_with_random_name`] tries.
const NAME_ATTEMPTS: u32 = 16;

impl ContainerStore {
    /// Opens (creating) `<root>/engine.db` and migrates it.
    ///
    /// # Errors
    ///
    /// The root cannot be created, or the database cannot be opened or is
    /// newer than this Wharf.
    pub fn open(root: &Path) -> Result<Self, EngineError> {
        fs_err::create_dir_all(root).map_err(|source| EngineError::Io {
            operation: "create directory",
            path: root.to_path_buf(),
            source,
        })?;
        let conn = db::open(&root.join("engine.db"))?;
        Ok(Self {
            root: root.to_path_buf(),
            conn: std::sync::Arc::new(Mutex::new(conn)),
        })
    }

    /// Copies what the WAL holds into `engine.db` without waiting for
    /// anyone (PASSIVE): see `wharf_image::Store::checkpoint`.
    ///
    /// # Errors
    ///
    /// [`EngineError::Database`].
    pub fn checkpoint(&self) -> Result<(), EngineError> {
        self.conn()
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
            .map_err(db("checkpoint the container database's WAL"))
    }

    /// The connection, for another store of the same process.
    pub(crate) fn connection(&self) -> db::SharedConnection {
        self.conn.clone()
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        db::lock(&self.conn)
    }

    /// `<root>/containers/<id>`, the container's directory (made by
    /// [`Self::lock`]).
    pub fn container_dir(&self, id: &ContainerId) -> PathBuf {
        lock::container_dir(&self.root, id)
    }

    /// Records a new container in state `created`.
    ///
    /// # Errors
    ///
    /// [`EngineError::NameInUse`] when another container has the name,
    /// [`EngineError::Database`] otherwise.
    pub fn create(&self, new: &NewContainer) -> Result<(), EngineError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db("begin creating a container"))?;
        if let Some(pod) = &new.pod_id {
            // Checked in the insert's transaction: a `pod rm` cannot slip
            // in between and leave a member of a pod that is gone.
            if pods::read_pod(&tx, "id", pod.as_str())?.is_none() {
                return Err(EngineError::PodNotFound {
                    reference: pod.to_string(),
                });
            }
        }
        insert_container(&tx, new)?;
        tx.commit().map_err(db("commit a new container"))
    }

    /// Records a new container under a generated `adjective_surname` name,
    /// retrying on collisions; returns the name.
    ///
    /// # Errors
    ///
    /// As [`Self::create`]; [`EngineError::NameInUse`] only when every
    /// attempt collided.
    pub fn create_with_random_name(
        &self,
        new: &NewContainer,
    ) -> Result<ContainerName, EngineError> {
        let mut new = new.clone();
        let mut attempt = 0;
        loop {
            new.name = ContainerName::random(attempt)?;
            match self.create(&new) {
                Ok(()) => return Ok(new.name),
                Err(EngineError::NameInUse { .. }) if attempt + 1 < NAME_ATTEMPTS => attempt += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// The container with this id.
    ///
    /// # Errors
    ///
    /// [`EngineError::NotFound`], [`EngineError::Database`].
    pub fn get_by_id(&self, id: &ContainerId) -> Result<ContainerRecord, EngineError> {
        self.query_one("id", id.as_str())?
            .ok_or_else(|| EngineError::NotFound {
                reference: id.to_string(),
            })
    }

    /// The container with this name.
    ///
    /// # Errors
    ///
    /// [`EngineError::NotFound`], [`EngineError::Database`].
    pub fn get_by_name(&self, name: &ContainerName) -> Result<ContainerRecord, EngineError> {
        self.query_one("name", name.as_str())?
            .ok_or_else(|| EngineError::NotFound {
                reference: name.to_string(),
            })
    }

    /// Resolves what a user typed, as Docker does: a full id, else a name
    /// (with or without `/`), else a unique id prefix of at least one
    /// character.
    ///
    /// # Errors
    ///
    /// [`EngineError::NotFound`]; [`EngineError::Ambiguous`] when the
    /// prefix matches several containers; [`EngineError::Database`].
    pub fn get(&self, reference: &str) -> Result<ContainerRecord, EngineError> {
        if let Ok(id) = ContainerId::parse(reference) {
            if let Some(r) = self.query_one("id", id.as_str())? {
                return Ok(r);
            }
        }
        if let Ok(name) = ContainerName::parse(reference) {
            if let Some(r) = self.query_one("name", name.as_str())? {
                return Ok(r);
            }
        }
        let not_found = || EngineError::NotFound {
            reference: reference.to_owned(),
        };
        if !names::is_id_prefix(reference) {
            return Err(not_found());
        }
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM containers WHERE substr(id, 1, ?2) = ?1 LIMIT 2"
            ))
            .map_err(db("look up a container by id prefix"))?;
        let mut found: Vec<ContainerRecord> = stmt
            .query_map(params![reference, reference.len() as i64], read_row)
            .map_err(db("look up a container by id prefix"))?
            .collect::<Result<_, _>>()
            .map_err(db("read a container"))?;
        match found.len() {
            0 => Err(not_found()),
            1 => Ok(found.remove(0)),
            _ => Err(EngineError::Ambiguous {
                prefix: reference.to_owned(),
            }),
        }
    }

    fn query_one(&self, column: &str, value: &str) -> Result<Option<ContainerRecord>, EngineError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM containers WHERE {column} = ?1"
            ))
            .map_err(db("look up a container"))?;
        let found = stmt
            .query_row([value], read_row)
            .optional()
            .map_err(db("read a container"))?;
        Ok(found)
    }

    /// Containers, newest first.
    ///
    /// # Errors
    ///
    /// [`EngineError::Database`].
    pub fn list(&self, filter: ListFilter) -> Result<Vec<ContainerRecord>, EngineError> {
        let mut out = Vec::new();
        self.list_with(filter, |r| {
            out.push(r);
            Ok(())
        })?;
        Ok(out)
    }

    /// [`ContainerStore::list`], handing each record to `f` as it is read
    /// (so a caller keeping only part of each never holds all of them).
    /// `f` must not call back into the store.
    ///
    /// # Errors
    ///
    /// The database failed, or `f` did.
    pub fn list_with(
        &self,
        filter: ListFilter,
        mut f: impl FnMut(ContainerRecord) -> Result<(), EngineError>,
    ) -> Result<(), EngineError> {
        let condition = match filter {
            ListFilter::All => "",
            ListFilter::Up => "WHERE state IN ('running', 'paused', 'restarting')",
        };
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM containers {condition} ORDER BY created DESC, rowid DESC"
            ))
            .map_err(db("list containers"))?;
        let rows = stmt
            .query_map([], read_row)
            .map_err(db("list containers"))?;
        for row in rows {
            f(row.map_err(db("read a container"))?)?;
        }
        Ok(())
    }

    /// Applies a state change in one transaction and returns the new
    /// record. Call it holding the container's [`Self::lock`].
    ///
    /// # Errors
    ///
    /// [`EngineError::NotFound`]; [`EngineError::InvalidTransition`] when
    /// the current state does not allow it; [`EngineError::Database`].
    pub fn transition(
        &self,
        id: &ContainerId,
        transition: Transition,
    ) -> Result<ContainerRecord, EngineError> {
        self.transition_inner(id, transition, None)
    }

    /// [`ContainerStore::transition`] and its event (`start`, `die`, …) in
    /// one transaction.
    ///
    /// # Errors
    ///
    /// As [`ContainerStore::transition`].
    pub fn transition_recorded(
        &self,
        id: &ContainerId,
        transition: Transition,
        action: &str,
        attributes: &BTreeMap<String, String>,
    ) -> Result<ContainerRecord, EngineError> {
        self.transition_inner(id, transition, Some((action, attributes)))
    }

    fn transition_inner(
        &self,
        id: &ContainerId,
        transition: Transition,
        event: Option<(&str, &BTreeMap<String, String>)>,
    ) -> Result<ContainerRecord, EngineError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db("begin a container state change"))?;
        let current: Option<String> = tx
            .query_row(
                "SELECT state FROM containers WHERE id = ?1",
                [id.as_str()],
                |r| r.get(0),
            )
            .optional()
            .map_err(db("read a container's state"))?;
        let Some(current) = current else {
            return Err(EngineError::NotFound {
                reference: id.to_string(),
            });
        };
        let from = ContainerState::parse(&current).ok_or_else(|| EngineError::Database {
            operation: "read a container's state",
            source: conversion_error(7, format!("unknown container state {current:?}")),
        })?;
        let to = transition.target();
        if !transition.allowed_from(from) {
            return Err(EngineError::InvalidTransition {
                id: id.short().to_owned(),
                from,
                to,
            });
        }
        let now = nanos(SystemTime::now());
        let state = to.as_str();
        let key = id.as_str();
        let result = match transition {
            Transition::Start { pid, monitor_pid } => tx.execute(
                "UPDATE containers SET state = ?2, pid = ?3, monitor_pid = ?4, started_at = ?5,
                 exit_code = NULL WHERE id = ?1",
                params![key, state, pid, monitor_pid, now],
            ),
            Transition::Restart => tx.execute(
                "UPDATE containers SET state = ?2, restart_count = restart_count + 1
                 WHERE id = ?1",
                params![key, state],
            ),
            Transition::Exit { exit_code } => tx.execute(
                "UPDATE containers SET state = ?2, exit_code = ?3, finished_at = ?4,
                 pid = NULL, monitor_pid = NULL WHERE id = ?1",
                params![key, state, exit_code, now],
            ),
            Transition::Pause | Transition::Unpause | Transition::Remove | Transition::Die => tx
                .execute(
                    "UPDATE containers SET state = ?2 WHERE id = ?1",
                    params![key, state],
                ),
        };
        result.map_err(db("update a container's state"))?;
        let record = tx
            .query_row(
                &format!("SELECT {COLUMNS} FROM containers WHERE id = ?1"),
                [key],
                read_row,
            )
            .map_err(db("read a container"))?;
        if let Some((action, attributes)) = event {
            insert_event(&tx, id, record.name.as_str(), action, attributes)?;
        }
        tx.commit().map_err(db("commit a container state change"))?;
        Ok(record)
    }

    /// Renames a container.
    ///
    /// # Errors
    ///
    /// [`EngineError::NotFound`]; [`EngineError::NameInUse`] when another
    /// container has the name; [`EngineError::Database`].
    /// Records whether the container's next exit was asked for (`stop`,
    /// `kill`, `rm -f`), so that its monitor does not restart it.
    ///
    /// # Errors
    ///
    /// No such container, or the database failed.
    pub fn set_stop_requested(&self, id: &ContainerId, requested: bool) -> Result<(), EngineError> {
        let conn = self.conn();
        let n = conn
            .execute(
                "UPDATE containers SET stop_requested = ?2 WHERE id = ?1",
                params![id.as_str(), requested],
            )
            .map_err(db("record a stop request"))?;
        if n == 0 {
            return Err(EngineError::NotFound {
                reference: id.to_string(),
            });
        }
        Ok(())
    }

    /// Records the health check's state (`None` clears it).
    ///
    /// # Errors
    ///
    /// The database failed.
    pub fn set_health(
        &self,
        id: &ContainerId,
        health: Option<&serde_json::Value>,
    ) -> Result<(), EngineError> {
        let conn = self.conn();
        conn.execute(
            "UPDATE containers SET health = ?2 WHERE id = ?1",
            params![id.as_str(), health.map(ToString::to_string)],
        )
        .map_err(db("record a health check"))?;
        Ok(())
    }

    /// Replaces a container's `config` (`network connect`/`disconnect`).
    ///
    /// # Errors
    ///
    /// [`EngineError::NotFound`], [`EngineError::Database`].
    pub fn set_config(
        &self,
        id: &ContainerId,
        config: &serde_json::Value,
    ) -> Result<(), EngineError> {
        let conn = self.conn();
        let changed = conn
            .execute(
                "UPDATE containers SET config = ?2 WHERE id = ?1",
                params![id.as_str(), config.to_string()],
            )
            .map_err(db("update a container's configuration"))?;
        if changed == 0 {
            return Err(EngineError::NotFound {
                reference: id.to_string(),
            });
        }
        Ok(())
    }

    /// Renames a container; the name's UNIQUE constraint decides races.
    ///
    /// # Errors
    ///
    /// [`EngineError::NotFound`], [`EngineError::NameInUse`],
    /// [`EngineError::Database`].
    pub fn rename(&self, id: &ContainerId, name: &ContainerName) -> Result<(), EngineError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db("begin renaming a container"))?;
        match tx.execute(
            "UPDATE containers SET name = ?2 WHERE id = ?1",
            params![id.as_str(), name.as_str()],
        ) {
            Ok(0) => {
                return Err(EngineError::NotFound {
                    reference: id.to_string(),
                });
            }
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => return Err(name_in_use(&tx, name)?),
            Err(e) => return Err(db("rename a container")(e)),
        }
        tx.commit().map_err(db("commit renaming a container"))
    }

    /// Deletes a container's record (its directory is the caller's).
    ///
    /// # Errors
    ///
    /// [`EngineError::NotFound`], [`EngineError::Database`].
    pub fn remove(&self, id: &ContainerId) -> Result<(), EngineError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db("begin removing a container"))?;
        let name: Option<String> = tx
            .query_row(
                "SELECT name FROM containers WHERE id = ?1",
                [id.as_str()],
                |r| r.get(0),
            )
            .optional()
            .map_err(db("read a container's name"))?;
        let Some(name) = name else {
            return Err(EngineError::NotFound {
                reference: id.to_string(),
            });
        };
        tx.execute("DELETE FROM containers WHERE id = ?1", [id.as_str()])
            .map_err(db("remove a container"))?;
        insert_event(&tx, id, &name, "destroy", &BTreeMap::new())?;
        tx.commit().map_err(db("commit removing a container"))
    }

    /// Appends to the event journal; returns the event's sequence number.
    ///
    /// # Errors
    ///
    /// [`EngineError::Database`].
    pub fn append_event(
        &self,
        id: &ContainerId,
        name: &ContainerName,
        action: &str,
        attributes: &BTreeMap<String, String>,
    ) -> Result<i64, EngineError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db("begin recording an event"))?;
        let seq = insert_event(&tx, id, name.as_str(), action, attributes)?;
        tx.commit().map_err(db("commit an event"))?;
        Ok(seq)
    }

    /// Events recorded at or after `since` (all with `None`) and with a
    /// sequence number above `after_seq` (for following), oldest first.
    ///
    /// # Errors
    ///
    /// [`EngineError::Database`].
    pub fn events(
        &self,
        since: Option<SystemTime>,
        after_seq: i64,
    ) -> Result<Vec<Event>, EngineError> {
        let since = since.map_or(i64::MIN, nanos);
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT seq, time, container_id, name, action, attributes FROM events
                 WHERE time >= ?1 AND seq > ?2 ORDER BY seq",
            )
            .map_err(db("list events"))?;
        let events = stmt
            .query_map(params![since, after_seq], |r| {
                Ok(Event {
                    seq: r.get(0)?,
                    time: time(r.get(1)?),
                    container: ContainerId::parse(&r.get::<_, String>(2)?)
                        .map_err(|e| conversion_error(2, e.to_string()))?,
                    name: r.get(3)?,
                    action: r.get(4)?,
                    attributes: json_column(r, 5)?,
                })
            })
            .map_err(db("list events"))?
            .collect::<Result<_, _>>()
            .map_err(db("read an event"))?;
        Ok(events)
    }

    /// Takes the container's lock, waiting while another command (in any
    /// process) holds it. Creates `<root>/containers/<id>/` (0700). Take it
    /// before any database transaction on the container, never while one
    /// is open.
    ///
    /// # Errors
    ///
    /// [`EngineError::Io`] when the directory or lock file cannot be made
    /// or locked.
    pub fn lock(&self, id: &ContainerId) -> Result<ContainerLock, EngineError> {
        lock::acquire(&self.root, id, true)?.ok_or_else(|| EngineError::Io {
            operation: "lock",
            path: self.container_dir(id).join("lock"),
            source: std::io::Error::from(std::io::ErrorKind::WouldBlock),
        })
    }

    /// As [`Self::lock`], but `None` at once when another holds it.
    ///
    /// # Errors
    ///
    /// As [`Self::lock`].
    pub fn try_lock(&self, id: &ContainerId) -> Result<Option<ContainerLock>, EngineError> {
        lock::acquire(&self.root, id, false)
    }
}

/// Inserts a new container and its `create` event in the caller's
/// transaction.
fn insert_container(tx: &rusqlite::Transaction<'_>, new: &NewContainer) -> Result<(), EngineError> {
    let config = new.config.to_string();
    let labels = labels_json(&new.labels);
    let inserted = tx.execute(
        "INSERT INTO containers (id, name, image_id, image_name, created, config, labels, state,
         pod_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'created', ?8)",
        params![
            new.id.as_str(),
            new.name.as_str(),
            new.image_id,
            new.image_name,
            nanos(SystemTime::now()),
            config,
            labels,
            new.pod_id.as_ref().map(|p| p.as_str())
        ],
    );
    match inserted {
        Ok(_) => {}
        Err(e) if is_unique_violation(&e) => {
            return Err(name_in_use(tx, &new.name)?);
        }
        Err(e) => return Err(db("insert a container")(e)),
    }
    let attributes = BTreeMap::from([("image".to_owned(), new.image_name.clone())]);
    insert_event(tx, &new.id, new.name.as_str(), "create", &attributes)?;
    Ok(())
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    // Only `name` is UNIQUE; an id collision is a PRIMARYKEY violation and
    // stays a database error.
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
    )
}

/// The error for a taken name, naming its holder (read in the same
/// transaction, so the holder exists).
fn name_in_use(conn: &Connection, name: &ContainerName) -> Result<EngineError, EngineError> {
    let holder: Option<String> = conn
        .query_row(
            "SELECT id FROM containers WHERE name = ?1",
            [name.as_str()],
            |r| r.get(0),
        )
        .optional()
        .map_err(db("look up a container by name"))?;
    Ok(EngineError::NameInUse {
        name: name.to_string(),
        holder: holder
            .map(|h| h.chars().take(ContainerId::SHORT_LEN).collect())
            .unwrap_or_default(),
    })
}

fn labels_json(labels: &BTreeMap<String, String>) -> String {
    serde_json::to_string(labels).expect("a map of strings always serializes")
}

pub(crate) fn nanos(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_nanos()).map_or(i64::MIN, |n| -n),
    }
}

pub(crate) fn time(nanos: i64) -> SystemTime {
    if nanos >= 0 {
        UNIX_EPOCH + Duration::from_nanos(nanos.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_nanos(nanos.unsigned_abs())
    }
}

fn conversion_error(column: usize, message: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, message.into())
}

fn json_column<T: serde::de::DeserializeOwned>(
    r: &rusqlite::Row<'_>,
    column: usize,
) -> rusqlite::Result<T> {
    let text: String = r.get(column)?;
    serde_json::from_str(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, e.into())
    })
}

/// Appends an event inside the caller's transaction (one commit, one fsync,
/// for a state change and its event).
fn insert_event(
    tx: &rusqlite::Transaction<'_>,
    id: &ContainerId,
    name: &str,
    action: &str,
    attributes: &BTreeMap<String, String>,
) -> Result<i64, EngineError> {
    tx.execute(
        "INSERT INTO events (time, container_id, name, action, attributes)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            nanos(SystemTime::now()),
            id.as_str(),
            name,
            action,
            labels_json(attributes)
        ],
    )
    .map_err(db("record an event"))?;
    Ok(tx.last_insert_rowid())
}

fn read_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ContainerRecord> {
    let id: String = r.get(0)?;
    let name: String = r.get(1)?;
    let state: String = r.get(7)?;
    Ok(ContainerRecord {
        id: ContainerId::parse(&id).map_err(|e| conversion_error(0, e.to_string()))?,
        name: ContainerName::parse(&name).map_err(|e| conversion_error(1, e.to_string()))?,
        image_id: r.get(2)?,
        image_name: r.get(3)?,
        created: time(r.get(4)?),
        config: json_column(r, 5)?,
        labels: json_column(r, 6)?,
        state: ContainerState::parse(&state)
            .ok_or_else(|| conversion_error(7, format!("unknown container state {state:?}")))?,
        pid: r.get(8)?,
        exit_code: r.get(9)?,
        started_at: r.get::<_, Option<i64>>(10)?.map(time),
        finished_at: r.get::<_, Option<i64>>(11)?.map(time),
        restart_count: r.get(12)?,
        monitor_pid: r.get(13)?,
        stop_requested: r.get(14)?,
        health: r
            .get::<_, Option<String>>(15)?
            .map(|s| serde_json::from_str(&s))
            .transpose()
            .map_err(|e| conversion_error(15, e.to_string()))?,
        pod_id: r
            .get::<_, Option<String>>(16)?
            .map(|p| crate::pods::PodId::parse(&p))
            .transpose()
            .map_err(|e| conversion_error(16, e.to_string()))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_follow_dockers_state_machine() {
        use ContainerState as S;
        let start = Transition::Start {
            pid: 1,
            monitor_pid: None,
        };
        assert!(start.allowed_from(S::Created));
        assert!(start.allowed_from(S::Exited));
        assert!(!start.allowed_from(S::Running));
        assert!(!start.allowed_from(S::Removing));
        assert!(Transition::Pause.allowed_from(S::Running));
        assert!(!Transition::Pause.allowed_from(S::Paused));
        assert!(!Transition::Unpause.allowed_from(S::Running));
        assert!(Transition::Exit { exit_code: None }.allowed_from(S::Paused));
        assert!(!Transition::Exit { exit_code: None }.allowed_from(S::Created));
        assert!(!Transition::Remove.allowed_from(S::Removing));
        assert!(Transition::Die.allowed_from(S::Removing));
    }

    #[test]
    fn states_round_trip_through_their_words() {
        for s in [
            ContainerState::Created,
            ContainerState::Running,
            ContainerState::Paused,
            ContainerState::Restarting,
            ContainerState::Exited,
            ContainerState::Removing,
            ContainerState::Dead,
        ] {
            assert_eq!(ContainerState::parse(s.as_str()), Some(s));
        }
        assert_eq!(ContainerState::parse("up"), None);
    }

    #[test]
    fn times_round_trip_at_nanosecond_precision() {
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        assert_eq!(time(nanos(t)), t);
        let before = UNIX_EPOCH - Duration::from_secs(5);
        assert_eq!(time(nanos(before)), before);
    }
}
