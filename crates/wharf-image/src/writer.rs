//! The store's [`BlobWriter`]s. A layer's compressed bytes go both into
//! the content ingest file and, through a bounded channel, to an unpack
//! thread that decompresses, hashes (diff id) and untars them into a
//! staging snapshot, so download, decompression and unpack overlap and the
//! slowest bounds the time. Memory stays bounded by the channel depth.

use std::io::{self, Read, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::content::Ingesting;
use crate::digest::Digest;
use crate::error::ImageError;
use crate::ingest::BlobWriter;
use crate::media::Compression;
use crate::snapshot::{LayerInfo, Snapshots, Staging};
use crate::store::Lease;
use crate::unpack::{self, UnpackOptions, UnpackedLayer};

/// Chunks in flight between the writer and the unpack thread.
const PIPE_DEPTH: usize = 8;

/// A blob that is only stored (manifest, config, other).
pub(crate) struct PlainWriter {
    pub(crate) ingest: Ingesting,
    pub(crate) _lease: Lease,
}

impl Write for PlainWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.ingest.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl BlobWriter for PlainWriter {
    fn offset(&self) -> u64 {
        self.ingest.offset()
    }

    fn restart(&mut self) -> Result<(), ImageError> {
        self.ingest.restart()
    }

    fn commit(self: Box<Self>) -> Result<(), ImageError> {
        let this = *self;
        this.ingest.commit()
    }
}

/// What the unpack thread does with the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Unpack into a new snapshot.
    Unpack,
    /// The snapshot exists: only check the diff id.
    Verify,
}

/// Everything the unpack thread needs.
#[derive(Debug, Clone)]
pub(crate) struct LayerJob {
    pub(crate) blob: Digest,
    pub(crate) diff_id: Digest,
    pub(crate) chain_id: Digest,
    pub(crate) compression: Compression,
    pub(crate) mode: Mode,
    pub(crate) snapshots: Snapshots,
    pub(crate) options: Arc<UnpackOptions>,
}

type Outcome = Result<(UnpackedLayer, Option<Staging>), ImageError>;

/// The receiving side of the pipe, as a reader.
struct ChannelReader {
    rx: Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            match self.rx.recv() {
                Ok(chunk) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                // The writer is done (commit) or gone: end of stream.
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Runs a layer job over `reader` to the end of the stream.
pub(crate) fn run_job(job: &LayerJob, mut reader: impl Read) -> Outcome {
    let outcome = match job.mode {
        Mode::Unpack => {
            let staging = job.snapshots.begin(&job.chain_id)?;
            let layer = unpack::unpack_layer(
                &mut reader,
                job.compression,
                &staging.diff(),
                &job.blob,
                &job.options,
            )?;
            (layer, Some(staging))
        }
        Mode::Verify => {
            let (diff_id, size) =
                unpack::digest_layer(&mut reader, job.compression, &job.blob, &job.options)?;
            (
                UnpackedLayer {
                    diff_id,
                    size,
                    entries: 0,
                },
                None,
            )
        }
    };
    // Whatever follows the compressed stream is still part of the blob;
    // consume it so the writer never blocks on a full pipe.
    io::copy(&mut reader, &mut io::sink()).map_err(|e| ImageError::ReadLayer {
        blob: job.blob.clone(),
        source: e,
    })?;
    Ok(outcome)
}

/// Checks the diff id and publishes the snapshot (before the blob: a crash
/// between leaves a snapshot whose blob a later pull fetches again).
pub(crate) fn finish_job(
    job: &LayerJob,
    outcome: (UnpackedLayer, Option<Staging>),
) -> Result<(), ImageError> {
    let (layer, staging) = outcome;
    if layer.diff_id != job.diff_id {
        return Err(ImageError::DiffIdMismatch {
            blob: job.blob.clone(),
            expected: job.diff_id.clone(),
            actual: layer.diff_id,
        });
    }
    if let Some(staging) = staging {
        let info = LayerInfo {
            chain_id: job.chain_id.clone(),
            diff_id: layer.diff_id,
            parent: None,
            blob: Some(job.blob.clone()),
            size: layer.size,
            entries: layer.entries,
        };
        job.snapshots.publish(staging, &info)?;
    }
    Ok(())
}

struct Pipe {
    tx: Option<SyncSender<Vec<u8>>>,
    handle: Option<JoinHandle<Outcome>>,
}

impl Pipe {
    fn spawn(job: &LayerJob) -> Result<Pipe, ImageError> {
        let (tx, rx) = sync_channel::<Vec<u8>>(PIPE_DEPTH);
        let thread_job = job.clone();
        let handle = std::thread::Builder::new()
            .name(format!("unpack-{}", &job.blob.hex()[..12]))
            .spawn(move || {
                let reader = ChannelReader {
                    rx,
                    chunk: Vec::new(),
                    pos: 0,
                };
                run_job(&thread_job, reader)
            })
            .map_err(|e| ImageError::io("spawn unpack thread", job.snapshots_root_hint(), e))?;
        Ok(Pipe {
            tx: Some(tx),
            handle: Some(handle),
        })
    }

    fn send(&mut self, chunk: Vec<u8>, blob: &Digest) -> Result<(), ImageError> {
        let Some(tx) = &self.tx else {
            return Err(ImageError::UnpackAborted { blob: blob.clone() });
        };
        if tx.send(chunk).is_ok() {
            return Ok(());
        }
        // The thread stopped early: it failed. Report its error.
        match self.join(blob) {
            Err(e) => Err(e),
            Ok(_) => Err(ImageError::UnpackAborted { blob: blob.clone() }),
        }
    }

    /// Ends the stream and waits for the thread's outcome.
    fn join(&mut self, blob: &Digest) -> Outcome {
        self.tx = None;
        match self.handle.take() {
            Some(h) => h
                .join()
                .unwrap_or_else(|_| Err(ImageError::UnpackAborted { blob: blob.clone() })),
            None => Err(ImageError::UnpackAborted { blob: blob.clone() }),
        }
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        // Closing the channel ends the thread's stream; its staging
        // directory is dropped (removed) with its outcome.
        self.tx = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// A layer blob streamed to disk and to the unpack thread.
pub(crate) struct LayerWriter {
    ingest: Ingesting,
    job: LayerJob,
    pipe: Pipe,
    _lease: Lease,
}

impl LayerWriter {
    /// Starts the unpack thread and replays what an interrupted ingest
    /// already wrote, so the thread sees the stream from byte 0.
    pub(crate) fn new(
        ingest: Ingesting,
        job: LayerJob,
        lease: Lease,
    ) -> Result<LayerWriter, ImageError> {
        let mut pipe = Pipe::spawn(&job)?;
        if ingest.offset() > 0 {
            let path = ingest.path().to_path_buf();
            let file = fs_err::File::open(&path)
                .map_err(|e| ImageError::io("open ingest file", &path, e))?;
            let mut partial = file.take(ingest.offset());
            loop {
                let mut chunk = vec![0u8; 256 * 1024];
                let n = partial
                    .read(&mut chunk)
                    .map_err(|e| ImageError::io("read ingest file", &path, e))?;
                if n == 0 {
                    break;
                }
                chunk.truncate(n);
                pipe.send(chunk, &job.blob)?;
            }
        }
        Ok(LayerWriter {
            ingest,
            job,
            pipe,
            _lease: lease,
        })
    }
}

impl Write for LayerWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.ingest.write_all(buf)?;
        self.pipe
            .send(buf.to_vec(), &self.job.blob)
            .map_err(io::Error::other)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl BlobWriter for LayerWriter {
    fn offset(&self) -> u64 {
        self.ingest.offset()
    }

    fn restart(&mut self) -> Result<(), ImageError> {
        // The old thread saw a stream that is being thrown away.
        let _ = self.pipe.join(&self.job.blob);
        self.ingest.restart()?;
        self.pipe = Pipe::spawn(&self.job)?;
        Ok(())
    }

    fn commit(self: Box<Self>) -> Result<(), ImageError> {
        let mut this = *self;
        if let Err(e) = this.ingest.verify() {
            this.ingest.discard();
            return Err(e);
        }
        let outcome = this.pipe.join(&this.job.blob);
        let result = outcome.and_then(|o| finish_job(&this.job, o));
        if let Err(e) = result {
            // The blob matches its digest but not the layer it claims to be
            // (or cannot be unpacked): keep nothing of it.
            this.ingest.discard();
            return Err(e);
        }
        this.ingest.publish()
    }
}

impl LayerJob {
    fn snapshots_root_hint(&self) -> std::path::PathBuf {
        self.snapshots.layer_dir(&self.chain_id)
    }
}
