#![allow(dead_code, reason = "each test binary uses part of the shared support")]
#![allow(
    clippy::unwrap_used,
    reason = "test support: a failure here is a test failure"
)]

//! Test support shared by the registry tests: a directory-backed [`Ingest`] that
//! keeps partial downloads for resume and verifies on commit (what the store
//! does, without unpacking), and a recording [`Progress`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use wharf_image::{Begin, BlobTarget, BlobWriter, Descriptor, Digest, ImageError, Ingest};
use wharf_registry::{BlobKind, Progress};

/// Blobs in `<dir>/blobs/<hex>`, partial ones in `<dir>/ingest/<hex>`.
#[derive(Debug)]
pub struct DirIngest {
    pub dir: PathBuf,
    pub targets: Mutex<HashMap<String, BlobTarget>>,
}

impl DirIngest {
    pub fn new(dir: &Path) -> Arc<Self> {
        fs_err::create_dir_all(dir.join("blobs")).unwrap();
        fs_err::create_dir_all(dir.join("ingest")).unwrap();
        Arc::new(Self {
            dir: dir.to_owned(),
            targets: Mutex::new(HashMap::new()),
        })
    }

    pub fn blob(&self, digest: &str) -> Option<Vec<u8>> {
        let hex = digest.split_once(':').map_or(digest, |(_, h)| h);
        fs_err::read(self.dir.join("blobs").join(hex)).ok()
    }

    pub fn target(&self, digest: &str) -> Option<BlobTarget> {
        self.targets.lock().unwrap().get(digest).cloned()
    }

    pub fn blob_count(&self) -> usize {
        fs_err::read_dir(self.dir.join("blobs")).unwrap().count()
    }
}

struct DirWriter {
    partial: PathBuf,
    done: PathBuf,
    file: fs_err::File,
    digest: Digest,
    size: u64,
}

impl std::io::Write for DirWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl BlobWriter for DirWriter {
    fn offset(&self) -> u64 {
        self.file.metadata().map(|m| m.len()).unwrap_or(0)
    }
    fn restart(&mut self) -> Result<(), ImageError> {
        self.file.file().set_len(0).unwrap();
        std::io::Seek::seek(&mut self.file.file(), std::io::SeekFrom::Start(0)).unwrap();
        Ok(())
    }
    fn commit(self: Box<Self>) -> Result<(), ImageError> {
        let bytes = fs_err::read(&self.partial).unwrap();
        if bytes.len() as u64 != self.size || Digest::sha256_of(&bytes) != self.digest {
            return Err(ImageError::InvalidArgument {
                reason: format!("blob {} does not verify", self.digest),
            });
        }
        fs_err::rename(&self.partial, &self.done).unwrap();
        Ok(())
    }
}

impl Ingest for DirIngest {
    fn begin(&self, desc: &Descriptor, target: &BlobTarget) -> Result<Begin, ImageError> {
        let digest = Digest::try_from(desc.digest())?;
        self.targets
            .lock()
            .unwrap()
            .insert(digest.to_string(), target.clone());
        let done = self.dir.join("blobs").join(digest.hex());
        if done.exists() {
            return Ok(Begin::Present);
        }
        let partial = self.dir.join("ingest").join(digest.hex());
        let file = fs_err::OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&partial)
            .unwrap();
        Ok(Begin::Write(Box::new(DirWriter {
            partial,
            done,
            file,
            digest,
            size: desc.size(),
        })))
    }
}

/// Records events as lines.
#[derive(Debug, Default)]
pub struct Recorder {
    pub events: Mutex<Vec<String>>,
}

impl Progress for Recorder {
    fn started(&self, digest: &Digest, _kind: BlobKind, size: u64, offset: u64) {
        self.push(format!("started {digest} {size} {offset}"));
    }
    fn done(&self, digest: &Digest) {
        self.push(format!("done {digest}"));
    }
    fn skipped(&self, digest: &Digest, _kind: BlobKind, _size: u64) {
        self.push(format!("skipped {digest}"));
    }
    fn retrying(&self, digest: &Digest, attempt: u32, reason: &str) {
        self.push(format!("retrying {digest} {attempt} {reason}"));
    }
}

impl Recorder {
    fn push(&self, line: String) {
        self.events.lock().unwrap().push(line);
    }
    pub fn lines(&self) -> Vec<String> {
        self.events.lock().unwrap().clone()
    }
}
