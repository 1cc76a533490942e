//! The content-addressed blob store: `<root>/blobs/<alg>/<hex>`.
//!
//! A blob is written to `<root>/ingest/<alg>-<hex>` under a per-digest file
//! lock (`<root>/ingest/<alg>-<hex>.lock`), fsynced, checked against the
//! descriptor's size and digest, renamed into `blobs/` and the directory
//! fsynced. Nothing under `blobs/` is ever unverified or non-durable. A
//! partial ingest file survives an interruption; the next ingest of the same
//! digest re-hashes it and resumes at its length.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use fs_err::File;
use rustix::fs::FlockOperation;

use crate::digest::{Digest, Digester};
use crate::error::ImageError;

static IMPORT_COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Largest manifest, index or config read into memory (c/image's limit).
pub const MAX_DOCUMENT_SIZE: u64 = 4 << 20;

/// The blob store under a store root.
#[derive(Debug, Clone)]
pub(crate) struct ContentStore {
    root: PathBuf,
}

impl ContentStore {
    pub(crate) fn new(root: &Path) -> Result<ContentStore, ImageError> {
        for dir in ["blobs/sha256", "blobs/sha512", "ingest"] {
            let path = root.join(dir);
            fs_err::create_dir_all(&path)
                .map_err(|e| ImageError::io("create directory", &path, e))?;
        }
        Ok(ContentStore {
            root: root.to_path_buf(),
        })
    }

    /// Where a published blob lives.
    pub(crate) fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(d.algorithm().name())
            .join(d.hex())
    }

    pub(crate) fn ingest_dir(&self) -> PathBuf {
        self.root.join("ingest")
    }

    fn ingest_path(&self, d: &Digest) -> PathBuf {
        self.ingest_dir()
            .join(format!("{}-{}", d.algorithm().name(), d.hex()))
    }

    fn lock_path(&self, d: &Digest) -> PathBuf {
        self.ingest_dir()
            .join(format!("{}-{}.lock", d.algorithm().name(), d.hex()))
    }

    /// Whether the blob is published.
    pub(crate) fn has(&self, d: &Digest) -> bool {
        fs_err::symlink_metadata(self.blob_path(d)).is_ok_and(|m| m.is_file())
    }

    /// Opens a published blob and returns it with its size.
    pub(crate) fn open(&self, d: &Digest) -> Result<(File, u64), ImageError> {
        let path = self.blob_path(d);
        let file = File::open(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                ImageError::BlobNotFound { digest: d.clone() }
            } else {
                ImageError::io("open blob", &path, e)
            }
        })?;
        let size = file
            .metadata()
            .map_err(|e| ImageError::io("stat blob", &path, e))?
            .len();
        Ok((file, size))
    }

    /// Reads a small published blob (manifest, config) into memory, bounded
    /// by [`MAX_DOCUMENT_SIZE`], and checks its digest again.
    pub(crate) fn read(&self, d: &Digest) -> Result<Vec<u8>, ImageError> {
        let (file, size) = self.open(d)?;
        if size > MAX_DOCUMENT_SIZE {
            return Err(ImageError::InvalidArgument {
                reason: format!(
                    "blob {d} has {size} bytes, more than the {MAX_DOCUMENT_SIZE} allowed for a document"
                ),
            });
        }
        let mut bytes = Vec::with_capacity(size as usize);
        file.take(MAX_DOCUMENT_SIZE)
            .read_to_end(&mut bytes)
            .map_err(|e| ImageError::io("read blob", self.blob_path(d), e))?;
        let mut digester = Digester::new(d.algorithm());
        digester.update(&bytes);
        let actual = digester.finish();
        if actual != *d {
            return Err(ImageError::DigestMismatch {
                expected: d.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Stores `bytes` as a blob (for documents Wharf writes itself) and
    /// returns its digest. Idempotent.
    pub(crate) fn put(&self, bytes: &[u8]) -> Result<Digest, ImageError> {
        let digest = Digest::sha256_of(bytes);
        if let Some(mut ingest) = self.begin(&digest, bytes.len() as u64)? {
            ingest.restart()?;
            ingest
                .write_all(bytes)
                .map_err(|e| ImageError::io("write", ingest.path.clone(), e))?;
            ingest.commit()?;
        }
        Ok(digest)
    }

    /// Stores a stream of unknown digest (an imported layer): written to a
    /// private ingest file under its own lock, fsynced, then published
    /// under the digest it hashed to. Returns the digest and size.
    pub(crate) fn put_stream(&self, mut reader: impl Read) -> Result<(Digest, u64), ImageError> {
        let n = IMPORT_COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("import-{}-{n}", std::process::id());
        let path = self.ingest_dir().join(&name);
        let own_lock = BlobLock::acquire(&self.ingest_dir().join(format!("{name}.lock")))?;
        let mut file =
            File::create(&path).map_err(|e| ImageError::io("create ingest file", &path, e))?;
        let mut digester = Digester::new(crate::digest::Algorithm::Sha256);
        let mut buf = vec![0u8; 256 * 1024];
        let result = (|| -> io::Result<()> {
            loop {
                let n = reader.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                file.write_all(&buf[..n])?;
                digester.update(&buf[..n]);
            }
            file.sync_all()
        })();
        drop(file);
        let cleanup = |path: &Path| {
            if let Err(e) = fs_err::remove_file(path) {
                tracing::warn!(path = %path.display(), error = %e, "remove ingest file");
            }
        };
        if let Err(e) = result {
            cleanup(&path);
            own_lock.remove_and_release();
            return Err(ImageError::io("write ingest file", &path, e));
        }
        let size = digester.written();
        let digest = digester.finish();
        let lock = BlobLock::acquire(&self.lock_path(&digest))?;
        if self.has(&digest) {
            cleanup(&path);
        } else {
            let target = self.blob_path(&digest);
            fs_err::rename(&path, &target)
                .map_err(|e| ImageError::io("publish blob", &target, e))?;
            sync_dir(target.parent().expect("a blob path has a parent directory"))?;
        }
        lock.remove_and_release();
        own_lock.remove_and_release();
        Ok((digest, size))
    }

    /// Starts ingesting `digest` of `size` bytes. Blocks while another
    /// process holds the digest's lock; returns `None` when the blob is
    /// already published.
    pub(crate) fn begin(
        &self,
        digest: &Digest,
        size: u64,
    ) -> Result<Option<Ingesting>, ImageError> {
        let lock = BlobLock::acquire(&self.lock_path(digest))?;
        if self.has(digest) {
            lock.remove_and_release();
            return Ok(None);
        }
        let path = self.ingest_path(digest);
        let mut file = fs_err::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| ImageError::io("open ingest file", &path, e))?;
        let mut ingesting = Ingesting {
            lock: Some(lock),
            path,
            blob_path: self.blob_path(digest),
            expected: digest.clone(),
            size,
            digester: Digester::new(digest.algorithm()),
            written: 0,
            file: None,
        };
        let existing = file
            .metadata()
            .map_err(|e| ImageError::io("stat ingest file", &ingesting.path, e))?
            .len();
        if existing > size {
            // Not a prefix of this blob: start over.
            file.set_len(0)
                .map_err(|e| ImageError::io("truncate ingest file", &ingesting.path, e))?;
        } else if existing > 0 {
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                let n = file
                    .read(&mut buf)
                    .map_err(|e| ImageError::io("read ingest file", &ingesting.path, e))?;
                if n == 0 {
                    break;
                }
                ingesting.digester.update(&buf[..n]);
            }
            ingesting.written = ingesting.digester.written();
            tracing::debug!(digest = %digest, offset = ingesting.written, "resuming ingest");
        }
        file.seek(SeekFrom::Start(ingesting.written))
            .map_err(|e| ImageError::io("seek ingest file", &ingesting.path, e))?;
        ingesting.file = Some(file);
        Ok(Some(ingesting))
    }

    /// Removes a published blob.
    pub(crate) fn remove(&self, d: &Digest) -> Result<(), ImageError> {
        let path = self.blob_path(d);
        match fs_err::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ImageError::io("remove blob", &path, e)),
        }
    }

    /// Every published blob.
    pub(crate) fn list(&self) -> Result<Vec<Digest>, ImageError> {
        let mut out = Vec::new();
        for alg in ["sha256", "sha512"] {
            let dir = self.root.join("blobs").join(alg);
            let entries = match fs_err::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(ImageError::io("list blobs", &dir, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| ImageError::io("list blobs", &dir, e))?;
                let name = entry.file_name();
                match name.to_str().map(|n| Digest::parse(&format!("{alg}:{n}"))) {
                    Some(Ok(d)) => out.push(d),
                    _ => {
                        tracing::warn!(path = %entry.path().display(), "stray file in the blob store")
                    }
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Re-hashes a published blob; returns the digest its content has.
    pub(crate) fn rehash(&self, d: &Digest) -> Result<Digest, ImageError> {
        let (mut file, _) = self.open(d)?;
        let mut digester = Digester::new(d.algorithm());
        io::copy(&mut file, &mut digester)
            .map_err(|e| ImageError::io("read blob", self.blob_path(d), e))?;
        Ok(digester.finish())
    }

    /// Removes ingest files and locks nobody holds. Returns how many.
    pub(crate) fn clean_ingest(&self) -> Result<usize, ImageError> {
        let dir = self.ingest_dir();
        let mut removed = 0;
        let entries = fs_err::read_dir(&dir).map_err(|e| ImageError::io("list", &dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| ImageError::io("list", &dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let lock_name = if name.ends_with(".lock") {
                name.clone()
            } else {
                format!("{name}.lock")
            };
            let lock_path = dir.join(&lock_name);
            if let Some(lock) = BlobLock::try_acquire(&lock_path)? {
                let path = entry.path();
                if path != lock_path {
                    match fs_err::remove_file(&path) {
                        Ok(()) => removed += 1,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(ImageError::io("remove ingest file", &path, e)),
                    }
                }
                lock.remove_and_release();
            }
        }
        Ok(removed)
    }
}

/// An exclusive `flock` on a lock file, re-checked to be the file still at
/// the path (a holder may remove it when done, see [`BlobLock::remove_and_release`]).
#[derive(Debug)]
pub(crate) struct BlobLock {
    file: File,
    path: PathBuf,
}

impl BlobLock {
    pub(crate) fn acquire(path: &Path) -> Result<BlobLock, ImageError> {
        loop {
            let file = open_lock(path)?;
            rustix::fs::flock(file.as_fd(), FlockOperation::LockExclusive)
                .map_err(|e| ImageError::io("lock", path, e.into()))?;
            if same_file(&file, path)? {
                return Ok(BlobLock {
                    file,
                    path: path.to_path_buf(),
                });
            }
        }
    }

    /// `None` when another process holds the lock.
    pub(crate) fn try_acquire(path: &Path) -> Result<Option<BlobLock>, ImageError> {
        let file = open_lock(path)?;
        match rustix::fs::flock(file.as_fd(), FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => return Ok(None),
            Err(e) => return Err(ImageError::io("lock", path, e.into())),
        }
        if same_file(&file, path)? {
            Ok(Some(BlobLock {
                file,
                path: path.to_path_buf(),
            }))
        } else {
            Ok(None)
        }
    }

    /// Removes the lock file, then releases the lock: a waiter holding the
    /// old inode sees it is gone and retries on a fresh one.
    pub(crate) fn remove_and_release(self) {
        if let Err(e) = fs_err::remove_file(&self.path) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(path = %self.path.display(), error = %e, "remove lock file");
            }
        }
        drop(self.file);
    }
}

fn open_lock(path: &Path) -> Result<File, ImageError> {
    fs_err::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| ImageError::io("open lock file", path, e))
}

fn same_file(file: &File, path: &Path) -> Result<bool, ImageError> {
    use std::os::unix::fs::MetadataExt;
    let held = file
        .metadata()
        .map_err(|e| ImageError::io("stat lock file", path, e))?;
    match fs_err::metadata(path) {
        Ok(now) => Ok(now.dev() == held.dev() && now.ino() == held.ino()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(ImageError::io("stat lock file", path, e)),
    }
}

/// A blob being written, holding its digest's lock.
#[derive(Debug)]
pub(crate) struct Ingesting {
    lock: Option<BlobLock>,
    path: PathBuf,
    blob_path: PathBuf,
    expected: Digest,
    size: u64,
    digester: Digester,
    written: u64,
    file: Option<File>,
}

impl Ingesting {
    /// Bytes already in the ingest file.
    pub(crate) fn offset(&self) -> u64 {
        self.written
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Truncates the ingest file and starts at offset 0.
    pub(crate) fn restart(&mut self) -> Result<(), ImageError> {
        let file = self.file_mut()?;
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)).map(|_| ()))
            .map_err(|e| ImageError::io("truncate ingest file", self.path.clone(), e))?;
        self.digester = Digester::new(self.expected.algorithm());
        self.written = 0;
        Ok(())
    }

    fn file_mut(&mut self) -> Result<&mut File, ImageError> {
        self.file
            .as_mut()
            .ok_or_else(|| ImageError::InvalidArgument {
                reason: format!("ingest of {} is finished", self.expected),
            })
    }

    /// Checks size and digest and fsyncs the ingest file; does not publish.
    pub(crate) fn verify(&mut self) -> Result<(), ImageError> {
        if self.written != self.size {
            return Err(ImageError::SizeMismatch {
                digest: self.expected.clone(),
                expected: self.size,
                actual: self.written,
            });
        }
        let actual = self.digester.clone().finish();
        if actual != self.expected {
            return Err(ImageError::DigestMismatch {
                expected: self.expected.clone(),
                actual,
            });
        }
        let path = self.path.clone();
        self.file_mut()?
            .sync_all()
            .map_err(|e| ImageError::io("fsync ingest file", path, e))
    }

    /// Verifies, then publishes: rename into `blobs/` and fsync the directory.
    /// On a verification failure the ingest file is removed (its content is
    /// wrong, resuming it would fail again).
    pub(crate) fn commit(mut self) -> Result<(), ImageError> {
        if let Err(e) = self.verify() {
            self.discard();
            return Err(e);
        }
        self.publish()
    }

    /// Renames the verified ingest file into `blobs/` and fsyncs the
    /// directory. Only after [`Ingesting::verify`].
    pub(crate) fn publish(mut self) -> Result<(), ImageError> {
        self.file = None;
        fs_err::rename(&self.path, &self.blob_path)
            .map_err(|e| ImageError::io("publish blob", &self.blob_path, e))?;
        let dir = self
            .blob_path
            .parent()
            .expect("a blob path has a parent directory");
        sync_dir(dir)?;
        tracing::debug!(digest = %self.expected, "blob published");
        if let Some(lock) = self.lock.take() {
            lock.remove_and_release();
        }
        Ok(())
    }

    /// Removes the ingest file (its content is known to be wrong).
    pub(crate) fn discard(&mut self) {
        self.file = None;
        if let Err(e) = fs_err::remove_file(&self.path) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(path = %self.path.display(), error = %e, "remove ingest file");
            }
        }
    }
}

impl Write for Ingesting {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.written + buf.len() as u64 > self.size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "blob {} is longer than its descriptor's {} bytes",
                    self.expected, self.size
                ),
            ));
        }
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("ingest is finished"))?;
        let n = file.write(buf)?;
        self.digester.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// fsyncs a directory (after a rename into it).
pub(crate) fn sync_dir(dir: &Path) -> Result<(), ImageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ImageError::io("fsync directory", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_read_and_list() {
        let dir = tempfile::tempdir().unwrap();
        let cs = ContentStore::new(dir.path()).unwrap();
        let d = cs.put(b"{}").unwrap();
        assert!(cs.has(&d));
        assert_eq!(cs.read(&d).unwrap(), b"{}");
        assert_eq!(cs.list().unwrap(), vec![d.clone()]);
        assert_eq!(cs.rehash(&d).unwrap(), d);
        // Idempotent.
        assert_eq!(cs.put(b"{}").unwrap(), d);
        assert!(cs.begin(&d, 2).unwrap().is_none());
        cs.remove(&d).unwrap();
        assert!(!cs.has(&d));
    }

    #[test]
    fn wrong_digest_publishes_nothing_and_drops_the_partial_file() {
        let dir = tempfile::tempdir().unwrap();
        let cs = ContentStore::new(dir.path()).unwrap();
        let d = Digest::sha256_of(b"good");
        let mut ing = cs.begin(&d, 4).unwrap().unwrap();
        ing.write_all(b"evil").unwrap();
        let path = ing.path().to_path_buf();
        let err = ing.commit().unwrap_err();
        assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
        assert!(!cs.has(&d));
        assert!(!path.exists());
    }

    #[test]
    fn too_many_bytes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cs = ContentStore::new(dir.path()).unwrap();
        let d = Digest::sha256_of(b"abc");
        let mut ing = cs.begin(&d, 3).unwrap().unwrap();
        assert!(ing.write_all(b"abcd").is_err());
    }

    #[test]
    fn interrupted_ingest_resumes_at_its_length() {
        let dir = tempfile::tempdir().unwrap();
        let cs = ContentStore::new(dir.path()).unwrap();
        let data = b"0123456789abcdef".repeat(1000);
        let d = Digest::sha256_of(&data);
        {
            let mut ing = cs.begin(&d, data.len() as u64).unwrap().unwrap();
            ing.write_all(&data[..7000]).unwrap();
            // Dropped without commit: the partial file stays.
        }
        let mut ing = cs.begin(&d, data.len() as u64).unwrap().unwrap();
        assert_eq!(ing.offset(), 7000);
        ing.write_all(&data[7000..]).unwrap();
        ing.commit().unwrap();
        assert_eq!(cs.read(&d).unwrap(), data);
    }
}
