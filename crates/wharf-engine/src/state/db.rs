//! The engine's state database (`<root>/engine.db`): schema and numbered
//! migrations. Only this module writes it.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rusqlite::{Connection, TransactionBehavior};

use crate::error::EngineError;

/// Migrations, applied in order; the database's `user_version` is the
/// number applied. Never edit one that shipped: append.
const MIGRATIONS: &[&str] = &[
    // 1: container records and the event journal.
    "CREATE TABLE containers (
        id TEXT PRIMARY KEY,              -- 64 lowercase hex
        name TEXT UNIQUE NOT NULL,        -- without the leading slash
        image_id TEXT NOT NULL,
        image_name TEXT NOT NULL,         -- as the user asked for it
        created INTEGER NOT NULL,         -- unix nanoseconds
        config TEXT NOT NULL,             -- JSON, opaque to the state module
        state TEXT NOT NULL CHECK (state IN ('created', 'running', 'paused',
            'restarting', 'exited', 'removing', 'dead')),
        pid INTEGER,                      -- the container's init, while running
        exit_code INTEGER,                -- NULL: not exited, or unknown
        started_at INTEGER,               -- unix nanoseconds
        finished_at INTEGER,              -- unix nanoseconds
        restart_count INTEGER NOT NULL DEFAULT 0,
        monitor_pid INTEGER,
        labels TEXT NOT NULL DEFAULT '{}' -- JSON object of strings
    );
    CREATE INDEX containers_created ON containers(created);
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        time INTEGER NOT NULL,            -- unix nanoseconds
        container_id TEXT NOT NULL,
        name TEXT NOT NULL,               -- the container's name at the time
        action TEXT NOT NULL,             -- create, start, die, destroy, ...
        attributes TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX events_time ON events(time);",
    // 2: named volumes and which containers use them (owned by `volumes`).
    "CREATE TABLE volumes (
        name TEXT PRIMARY KEY,            -- [a-zA-Z0-9][a-zA-Z0-9_.-]+
        driver TEXT NOT NULL,             -- 'local'
        created INTEGER NOT NULL,         -- unix nanoseconds
        labels TEXT NOT NULL DEFAULT '{}',  -- JSON object of strings
        options TEXT NOT NULL DEFAULT '{}', -- JSON object: type, device, o
        anonymous INTEGER NOT NULL DEFAULT 0 CHECK (anonymous IN (0, 1)),
        copied_up INTEGER NOT NULL DEFAULT 0 CHECK (copied_up IN (0, 1))
    );
    CREATE TABLE volume_users (
        volume TEXT NOT NULL,             -- volumes.name
        container_id TEXT NOT NULL,       -- 64 lowercase hex
        PRIMARY KEY (volume, container_id)
    );
    CREATE INDEX volume_users_container ON volume_users(container_id);",
    // 3: `stop`/`kill`/`rm -f` ask the monitor not to apply the restart
    // policy to the exit they cause (Docker's HasBeenManuallyStopped).
    "ALTER TABLE containers ADD COLUMN stop_requested INTEGER NOT NULL DEFAULT 0;",
    // 4: the health check's state (JSON: status, failing streak, last
    // results), written by the monitor.
    "ALTER TABLE containers ADD COLUMN health TEXT;",
    // 5: pods (owned by `pods`) and the pod each container is in. The
    // membership is a column, not part of the opaque config, so that "the
    // members of pod X" is one indexed query and a member's insert checks
    // its pod in the same transaction (see `state::pods`).
    "CREATE TABLE pods (
        id TEXT PRIMARY KEY,              -- 64 lowercase hex
        name TEXT UNIQUE NOT NULL,        -- container name rules
        created INTEGER NOT NULL,         -- unix nanoseconds
        labels TEXT NOT NULL DEFAULT '{}',  -- JSON object of strings
        config TEXT NOT NULL,             -- JSON, opaque to the state module
        infra_id TEXT                     -- containers.id; NULL without infra
    );
    ALTER TABLE containers ADD COLUMN pod_id TEXT;  -- pods.id, NULL outside pods
    CREATE INDEX containers_pod ON containers(pod_id);",
];

/// How long a connection waits for another process's write lock before it
/// gives up: long, since every engine command is a separate process.
const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) fn db(operation: &'static str) -> impl FnOnce(rusqlite::Error) -> EngineError {
    move |source| EngineError::Database { operation, source }
}

/// One connection to `engine.db`, shared by the stores of one process
/// (containers, volumes): each store opening its own would parse the
/// schema again and rebuild nothing the first did not.
pub(crate) type SharedConnection = Arc<Mutex<Connection>>;

/// Locks a shared connection. A panic while holding it leaves no open
/// transaction (rusqlite's Transaction rolls back on drop).
pub(crate) fn lock(conn: &SharedConnection) -> MutexGuard<'_, Connection> {
    conn.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Opens (creating) the database and brings its schema up to date.
pub(crate) fn open(path: &Path) -> Result<Connection, EngineError> {
    let mut conn = Connection::open(path).map_err(db("open the container database"))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(db("set the container database's busy timeout"))?;
    // WAL: readers never block the writer. synchronous=NORMAL: a commit is
    // not fsynced on its own (checkpoints are). The database is never
    // corrupted, and an application crash loses nothing; a power loss or OS
    // crash may lose the last commits, which only describe processes that
    // such a crash ended anyway. Writers order their work for that: files
    // before the row that names them on create, the row last on removal,
    // so a lost commit leaves orphans for prune/GC, never a record of
    // something missing. (The image store's image.db, which names content,
    // stays synchronous=FULL.) Every commit on the `run` path would
    // otherwise wait for the disk: about a third of its time here.
    set_wal(&conn)?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(db("set the container database's synchronous mode"))?;
    // Every command is a short-lived process: keep the WAL when the last
    // connection closes rather than checkpointing and deleting it for the
    // next process to recreate (extra fsyncs each time); checkpoints run
    // as it grows.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
        true,
    )
    .map_err(db("keep the container database's WAL on close"))?;
    // The first process to open it rebuilds the WAL's index from every
    // frame (about 3 µs each here; a `run` adds about 25): checkpoint at
    // 128 pages rather than SQLite's 1000, so that costs at most ~0.4 ms.
    conn.pragma_update(None, "wal_autocheckpoint", 128)
        .map_err(db("set the container database's wal_autocheckpoint"))?;
    // Short-lived commands read a few rows (or a `ps -a` pass over all of
    // them); SQLite's default 2 MiB page cache would only grow the client's
    // and every monitor's memory. The OS page cache still holds the file.
    conn.pragma_update(None, "cache_size", -256)
        .map_err(db("set the container database's cache size"))?;
    migrate(&mut conn, path)?;
    Ok(conn)
}

/// Switches to WAL. Switching needs an exclusive lock and SQLite answers
/// `SQLITE_BUSY` at once, without the busy handler, while another process
/// opens or migrates a fresh database; so retry within the busy timeout.
fn set_wal(conn: &Connection) -> Result<(), EngineError> {
    let deadline = Instant::now() + BUSY_TIMEOUT;
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Err(rusqlite::Error::SqliteFailure(f, _))
                if f.code == rusqlite::ErrorCode::DatabaseBusy && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            result => return result.map_err(db("set the container database's journal mode")),
        }
    }
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<(), EngineError> {
    let known = MIGRATIONS.len() as i64;
    // Up to date (every open but the first after an upgrade): a plain
    // read, so that opening never takes the write lock.
    let current: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(db("read the container database's schema version"))?;
    if current == known {
        return Ok(());
    }
    // Read again under the write lock: another process may be migrating.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db("begin the container database migration"))?;
    let version: i64 = tx
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(db("read the container database's schema version"))?;
    if version > known {
        return Err(EngineError::SchemaTooNew {
            path: path.to_path_buf(),
            found: version,
            known,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.execute_batch(sql)
            .map_err(db("migrate the container database"))?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)
            .map_err(db("write the container database's schema version"))?;
        tracing::info!(version = i + 1, "container database migrated");
    }
    tx.commit()
        .map_err(db("commit the container database migration"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_once_and_refuses_newer_schemas() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("engine.db");
        let conn = open(&path).unwrap();
        let v: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, MIGRATIONS.len() as i64);
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        drop(conn);
        drop(open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        assert_eq!(
            open(&path).unwrap_err().to_string(),
            format!(
                "container database {} has schema version 99, this Wharf knows up to {}",
                path.display(),
                MIGRATIONS.len()
            )
        );
    }
}
