//! The image metadata database (`<root>/image.db`): schema and numbered
//! migrations. Only this crate writes it.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

use crate::error::ImageError;

/// Migrations, applied in order; the database's `user_version` is the
/// number applied. Never edit one that shipped: append.
const MIGRATIONS: &[&str] = &[
    // 1: images, their names, layers and which image uses which layer,
    // and the root filesystems made from images.
    "CREATE TABLE images (
        id TEXT PRIMARY KEY,              -- config digest
        manifest_digest TEXT NOT NULL,
        manifest_media_type TEXT NOT NULL,
        created INTEGER NOT NULL,         -- unix seconds, when recorded
        size INTEGER NOT NULL             -- uncompressed bytes of its layers
    );
    CREATE TABLE names (
        name TEXT PRIMARY KEY,            -- full reference: registry/repo:tag or @digest
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        kind TEXT NOT NULL CHECK (kind IN ('tag', 'digest')),
        created INTEGER NOT NULL
    );
    CREATE INDEX names_image ON names(image_id);
    CREATE TABLE layers (
        chain_id TEXT PRIMARY KEY,
        diff_id TEXT NOT NULL,
        parent TEXT,                      -- chain id below, NULL at the bottom
        size INTEGER NOT NULL,            -- uncompressed bytes
        state TEXT NOT NULL CHECK (state IN ('committed')),
        created INTEGER NOT NULL
    );
    CREATE TABLE image_layers (
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        position INTEGER NOT NULL,        -- 0 = bottom
        chain_id TEXT NOT NULL REFERENCES layers(chain_id),
        blob TEXT NOT NULL,               -- the compressed blob in the manifest
        blob_size INTEGER NOT NULL,
        PRIMARY KEY (image_id, position)
    );
    CREATE INDEX image_layers_chain ON image_layers(chain_id);
    CREATE TABLE rootfs (
        key TEXT PRIMARY KEY,
        image_id TEXT NOT NULL REFERENCES images(id),
        driver TEXT NOT NULL,
        created INTEGER NOT NULL
    );",
];

/// WAL pages after which a commit checkpoints.
const WAL_AUTOCHECKPOINT: i64 = 128;

/// Opens (creating) the database and brings its schema up to date.
pub(crate) fn open(path: &Path) -> Result<Connection, ImageError> {
    let mut conn = Connection::open(path).map_err(ImageError::db("open"))?;
    conn.busy_timeout(Duration::from_secs(60))
        .map_err(ImageError::db("set busy timeout"))?;
    // WAL with synchronous=FULL: a committed transaction is durable.
    set_wal(&conn)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(ImageError::db("set synchronous"))?;
    // Every command is a short-lived process: without this, the last one
    // to close checkpoints and deletes the WAL and the next recreates it,
    // paying three extra fsyncs per process. The WAL stays, and
    // checkpoints run when it grows, as in a daemon.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
        true,
    )
    .map_err(ImageError::db("keep the WAL on close"))?;
    // But each process that opens it first rebuilds the WAL's index by
    // reading every frame (about 3 µs each here): at SQLite's default of
    // 1000 pages that is up to 3 ms per command. Checkpoint sooner.
    conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT)
        .map_err(ImageError::db("set wal_autocheckpoint"))?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(ImageError::db("enable foreign keys"))?;
    migrate(&mut conn, path)?;
    Ok(conn)
}

/// Switches to WAL. The switch needs an exclusive lock, and SQLite answers
/// `SQLITE_BUSY` at once, without the busy handler, while another process
/// opens or migrates a fresh database (two first pulls at once); so retry
/// within the busy timeout.
fn set_wal(conn: &Connection) -> Result<(), ImageError> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Err(rusqlite::Error::SqliteFailure(f, _))
                if f.code == rusqlite::ErrorCode::DatabaseBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            result => return result.map(drop).map_err(ImageError::db("set journal mode")),
        }
    }
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<(), ImageError> {
    let known = MIGRATIONS.len() as i64;
    // Up to date (every open but the first after an upgrade): a plain
    // read, so that opening never takes the write lock.
    let current: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(ImageError::db("read schema version"))?;
    if current == known {
        return Ok(());
    }
    // Read again under the write lock: another process may be migrating.
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(ImageError::db("begin migration"))?;
    let version: i64 = tx
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(ImageError::db("read schema version"))?;
    if version > known {
        return Err(ImageError::SchemaTooNew {
            path: path.to_path_buf(),
            found: version,
            known,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.execute_batch(sql)
            .map_err(ImageError::db("apply migration"))?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)
            .map_err(ImageError::db("write schema version"))?;
        tracing::info!(version = i + 1, "image database migrated");
    }
    tx.commit().map_err(ImageError::db("commit migration"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_once_and_refuses_newer_schemas() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("image.db");
        let conn = open(&path).unwrap();
        let v: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, MIGRATIONS.len() as i64);
        drop(conn);
        // Re-opening applies nothing.
        drop(open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let err = open(&path).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "image database {} has schema version 99, this Wharf knows up to 1",
                path.display()
            )
        );
    }
}
