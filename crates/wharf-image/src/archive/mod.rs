//! Image archives: `save` and `load` of docker-archives (what `docker save`
//! and `podman save --format docker-archive` write) and oci-archives (a tar
//! of an OCI image layout, as `podman save --format oci-archive` and skopeo's
//! `oci-archive:` write). Synchronous and streaming: no layer is ever held in
//! memory.
//!
//! Load reads the tar once, front to back, from any [`Read`] (a file, a pipe;
//! gzip or zstd compressed or not). The documents that say what the archive
//! holds (`manifest.json`, `index.json`) may come after the layers, so every
//! member is stored in the content store as it streams by, before it is known
//! what it is: members named `blobs/<alg>/<hex>` through the [`Ingest`]
//! trait, which verifies their digest; any other member under the digest it
//! hashes to. Then the format is decided by content (`manifest.json`: a
//! docker-archive, else `index.json` and `oci-layout`: an oci-archive), each
//! image's config is read (bounded), every layer is unpacked from its stored
//! blob and checked against the config's diff id, and only when every image
//! of the archive is complete are the images recorded with their names. A
//! failed load records nothing; the blobs and snapshots it left are
//! unreferenced, and [`Store::gc`] removes them (a lease keeps GC away while
//! the load runs).
//!
//! Member names and the paths `manifest.json` names are hostile: an absolute
//! name, a `..` component or a link target that leaves the archive is
//! refused with an error naming it; links between members are followed inside
//! the archive only. `manifest.json` (1 MiB), `index.json` (4 MiB), configs
//! and manifests (4 MiB) and the extended tar headers before each member
//! (4 MiB) are read under size limits (SECURITY-CASES §1.5).
//!
//! Save writes a docker-archive as Docker does, with uncompressed layers
//! (stored gzip or zstd blobs are decompressed while they stream, and checked
//! against the config's diff ids), and an oci-archive with the stored blobs
//! as they are.

mod docker;
mod oci;

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;
use std::rc::Rc;
use std::str::FromStr;

use oci_spec::image::{Descriptor, MediaType};

use crate::content::ContentStore;
use crate::digest::{Algorithm, Digest, Digester};
use crate::error::ImageError;
use crate::ingest::{Begin, BlobTarget, Ingest};
use crate::media::Compression;
use crate::platform::Platform;
use crate::reference::ImageRef;
use crate::store::{Image, ImageId, Store};
use crate::unpack::{self, UnpackOptions};

/// Largest `manifest.json` read into memory (c/image's limit).
pub const MAX_MANIFEST_JSON: u64 = 1 << 20;
/// Largest `index.json` read into memory.
pub const MAX_INDEX_JSON: u64 = 4 << 20;
/// Largest `oci-layout` file.
const MAX_OCI_LAYOUT: u64 = 64 << 10;
/// Largest legacy `repositories` file (read and ignored).
const MAX_REPOSITORIES: u64 = 1 << 20;
/// Most bytes of headers (PAX records, GNU long names) before one member;
/// the `tar` crate buffers them.
const MAX_HEADER_BYTES: u64 = 4 << 20;
/// Longest member name.
const MAX_NAME: usize = 4096;
/// Most members (files, directories, links) an archive may have; Docker's
/// and Podman's have a few per layer.
const MAX_MEMBERS: u64 = 100_000;
/// Most links followed to reach a member.
const MAX_LINK_HOPS: usize = 16;
/// Most bytes read after the end-of-archive marker (tar's blocking padding),
/// so a writer at the other end of a pipe does not see it closed early.
const MAX_TRAILER: u64 = 1 << 20;
const COPY_BUFFER: usize = 256 * 1024;

const MANIFEST_JSON: &str = "manifest.json";
const INDEX_JSON: &str = "index.json";
const OCI_LAYOUT: &str = "oci-layout";
const REPOSITORIES: &str = "repositories";
/// The media type given to a member stored before its role is known.
const OCTET_STREAM: &str = "application/octet-stream";

/// An image archive format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// What `docker save` writes: `manifest.json`, a config and an
    /// uncompressed tar per layer.
    DockerArchive,
    /// A tar of an OCI image layout: `oci-layout`, `index.json`, `blobs/`.
    OciArchive,
}

impl ArchiveFormat {
    /// Parses the names Podman uses: `docker-archive`, `oci-archive`.
    pub fn parse(s: &str) -> Result<ArchiveFormat, ImageError> {
        match s {
            "docker-archive" => Ok(ArchiveFormat::DockerArchive),
            "oci-archive" => Ok(ArchiveFormat::OciArchive),
            _ => Err(ImageError::InvalidArgument {
                reason: format!("unknown archive format {s:?} (use docker-archive or oci-archive)"),
            }),
        }
    }

    /// The format's name (`docker-archive`, `oci-archive`).
    pub fn name(self) -> &'static str {
        match self {
            ArchiveFormat::DockerArchive => "docker-archive",
            ArchiveFormat::OciArchive => "oci-archive",
        }
    }
}

impl fmt::Display for ArchiveFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ArchiveFormat {
    type Err = ImageError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ArchiveFormat::parse(s)
    }
}

/// How [`load`] chooses among the manifests of an index in an oci-archive
/// (a docker-archive has one manifest per image and ignores these).
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// The platform to load from an index; the host's when `None`.
    pub platform: Option<Platform>,
    /// Load the image of every platform an index offers. The name the index
    /// gives still goes to one image only: the one [`LoadOptions::platform`]
    /// selects.
    pub all_platforms: bool,
}

/// An image [`load`] recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedImage {
    /// The image id (its config's digest).
    pub id: ImageId,
    /// The tags the archive gave it (normalised), in archive order.
    pub names: Vec<ImageRef>,
}

/// Loads every image of a docker-archive or oci-archive read from `input`
/// into `store`, detecting the format by content, and tags them with the
/// archive's names (`RepoTags`; the `io.containerd.image.name` or
/// `org.opencontainers.image.ref.name` annotations), as `docker load` does:
/// a tag another image had moves to the loaded one.
///
/// Every digest is verified, every layer is unpacked and checked against its
/// config's diff id before anything is recorded. On error nothing is
/// recorded (see the module documentation).
pub fn load(
    store: &Store,
    input: impl Read,
    options: &LoadOptions,
) -> Result<Vec<LoadedImage>, ImageError> {
    // Everything stored below is unreferenced until the images are recorded.
    let _lease = store.lease()?;
    let contents = read_archive(store, input)?;
    let mut layers = Layers::new(store);
    let planned = if let Some(manifest) = &contents.manifest_json {
        docker::plan(&mut layers, &contents, manifest)?
    } else if let Some(index) = &contents.index_json {
        oci::plan(&mut layers, &contents, index, options)?
    } else {
        return Err(ImageError::InvalidArchive {
            reason: "it has neither manifest.json (docker-archive) nor index.json (oci-archive)"
                .to_string(),
        });
    };
    record_all(store, planned)
}

/// Writes the images `images` (names, ids or id prefixes, as
/// [`Store::resolve`] takes them) to `out` as one archive of `format`.
///
/// An image named by one of its tags carries that name (`RepoTags`, or the
/// `org.opencontainers.image.ref.name` annotation), in the order given; one
/// named by id or digest carries none. An image named several times is
/// written once with all those names; blobs shared between images are
/// written once.
pub fn save(
    store: &Store,
    images: &[&str],
    format: ArchiveFormat,
    out: impl Write,
) -> Result<(), ImageError> {
    let items = plan_save(store, images)?;
    let mut writer = ArchiveWriter::new(out);
    match format {
        ArchiveFormat::DockerArchive => docker::write(store, &items, &mut writer)?,
        ArchiveFormat::OciArchive => oci::write(store, &items, &mut writer)?,
    }
    writer.finish()
}

/// A regular member of the archive, stored as a blob.
#[derive(Debug, Clone)]
struct Member {
    digest: Digest,
    size: u64,
}

/// What reading an archive left: its regular members (stored as blobs), the
/// links between members, and the top-level documents.
#[derive(Debug, Default)]
struct Contents {
    files: HashMap<String, Member>,
    /// Link name → the member it names (both cleaned, inside the archive).
    links: HashMap<String, String>,
    manifest_json: Option<Vec<u8>>,
    index_json: Option<Vec<u8>>,
    oci_layout: Option<Vec<u8>>,
}

impl Contents {
    /// The member at `path` as `document` names it, following links.
    fn resolve(&self, document: &'static str, path: &str) -> Result<&Member, ImageError> {
        let refuse = |reason: &str| ImageError::InvalidArchivePath {
            document,
            path: path.to_string(),
            reason: reason.to_string(),
        };
        let clean = clean_name(path.as_bytes()).map_err(refuse)?;
        let mut current = clean.as_str();
        for _ in 0..=MAX_LINK_HOPS {
            if let Some(member) = self.files.get(current) {
                return Ok(member);
            }
            match self.links.get(current) {
                Some(target) => current = target,
                None => return Err(refuse("no such file in the archive")),
            }
        }
        Err(refuse("too many levels of links"))
    }
}

/// An image the archive describes, verified and ready to record.
#[derive(Debug)]
struct Planned {
    manifest: Digest,
    id: ImageId,
    names: Vec<ImageRef>,
}

/// Reads the whole archive, storing each regular member.
fn read_archive(store: &Store, input: impl Read) -> Result<Contents, ImageError> {
    let input = open_input(input)?;
    let budget = Rc::new(Cell::new(None));
    let mut archive = tar::Archive::new(HeaderBudget {
        inner: input,
        budget: Rc::clone(&budget),
    });
    let content = ContentStore::new(store.root())?;
    let mut contents = Contents::default();
    let mut seen: HashSet<String> = HashSet::new();
    let mut count = 0u64;
    let mut entries = archive
        .entries()
        .map_err(|source| ImageError::ReadArchive { source })?;
    loop {
        budget.set(Some(MAX_HEADER_BYTES));
        let next = entries.next();
        budget.set(None);
        let Some(entry) = next else { break };
        let mut entry = entry.map_err(|source| ImageError::ReadArchive { source })?;
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let refuse = |reason: &str| ImageError::UnsafeArchiveEntry {
            entry: shown.clone(),
            reason: reason.to_string(),
        };
        count += 1;
        if count > MAX_MEMBERS {
            return Err(refuse(&format!(
                "the archive has more than {MAX_MEMBERS} members"
            )));
        }
        let name = clean_name(&raw).map_err(refuse)?;
        let kind = entry.header().entry_type();
        match kind {
            tar::EntryType::Directory | tar::EntryType::XGlobalHeader => {
                drain(&mut entry)?;
                continue;
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| refuse("link without a target"))?;
                let target =
                    link_target(&name, &target, kind == tar::EntryType::Link).map_err(refuse)?;
                if !seen.insert(name.clone()) {
                    return Err(refuse("appears twice in the archive"));
                }
                contents.links.insert(name, target);
                continue;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {}
            _ => {
                return Err(refuse(
                    "unsupported entry type (an image archive holds files, directories and links)",
                ))
            }
        }
        if name.is_empty() {
            return Err(refuse("a file without a name"));
        }
        if !seen.insert(name.clone()) {
            return Err(refuse("appears twice in the archive"));
        }
        let size = entry.size();
        match name.as_str() {
            MANIFEST_JSON => {
                contents.manifest_json =
                    Some(read_document(&mut entry, &shown, size, MAX_MANIFEST_JSON)?);
            }
            INDEX_JSON => {
                contents.index_json =
                    Some(read_document(&mut entry, &shown, size, MAX_INDEX_JSON)?);
            }
            OCI_LAYOUT => {
                contents.oci_layout =
                    Some(read_document(&mut entry, &shown, size, MAX_OCI_LAYOUT)?);
            }
            // Pre-1.10 Docker metadata: manifest.json says the same.
            REPOSITORIES => {
                read_document(&mut entry, &shown, size, MAX_REPOSITORIES)?;
            }
            _ => {
                let member = store_member(store, &content, &mut entry, &shown, &name, size)?;
                contents.files.insert(name, member);
            }
        }
    }
    let mut rest = archive.into_inner().inner;
    if let Err(e) = io::copy(&mut (&mut rest).take(MAX_TRAILER), &mut io::sink()) {
        tracing::debug!(error = %e, "reading past the end of the archive");
    }
    Ok(contents)
}

/// The input, decompressed when it starts with a gzip or zstd magic number
/// (`docker load` takes compressed archives too).
fn open_input<'a>(mut input: impl Read + 'a) -> Result<Box<dyn Read + 'a>, ImageError> {
    let mut magic = Vec::with_capacity(4);
    (&mut input)
        .take(4)
        .read_to_end(&mut magic)
        .map_err(|source| ImageError::ReadArchive { source })?;
    let compression = sniff(&magic);
    if compression != Compression::None {
        tracing::debug!(compression = compression.name(), "compressed archive");
    }
    unpack::decompressor(io::Cursor::new(magic).chain(input), compression)
        .map_err(|source| ImageError::ReadArchive { source })
}

/// The compression a stream starting with `magic` uses.
fn sniff(magic: &[u8]) -> Compression {
    if magic.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// The compression of a stored blob, from its first bytes.
fn sniff_blob(store: &Store, digest: &Digest) -> Result<Compression, ImageError> {
    let (file, _) = store.open_blob(digest)?;
    let mut magic = Vec::with_capacity(4);
    file.take(4)
        .read_to_end(&mut magic)
        .map_err(|e| ImageError::io("read blob", store.blob_path(digest), e))?;
    Ok(sniff(&magic))
}

/// Counts what the `tar` crate reads while it looks for the next member,
/// which includes the extended headers it buffers, and fails past a budget.
/// `None`: not counting (a member's data is being read).
struct HeaderBudget<R> {
    inner: R,
    budget: Rc<Cell<Option<u64>>>,
}

impl<R: Read> Read for HeaderBudget<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(left) = self.budget.get() {
            let left = left.checked_sub(n as u64).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("the headers of a member exceed {MAX_HEADER_BYTES} bytes"),
                )
            })?;
            self.budget.set(Some(left));
        }
        Ok(n)
    }
}

/// Keeps the error of the archive stream so that a failure inside a
/// consumer (the content store) is reported as the read error it was.
struct Tracked<R> {
    inner: R,
    error: Option<io::Error>,
}

impl<R: Read> Read for Tracked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => Ok(n),
            Err(e) => {
                let shown = io::Error::new(e.kind(), e.to_string());
                self.error = Some(e);
                Err(shown)
            }
        }
    }
}

fn drain(entry: &mut impl Read) -> Result<(), ImageError> {
    io::copy(entry, &mut io::sink())
        .map(|_| ())
        .map_err(|source| ImageError::ReadArchive { source })
}

/// Reads a top-level document, refusing one over `limit` bytes.
fn read_document(
    entry: &mut impl Read,
    shown: &str,
    size: u64,
    limit: u64,
) -> Result<Vec<u8>, ImageError> {
    if size > limit {
        return Err(ImageError::UnsafeArchiveEntry {
            entry: shown.to_string(),
            reason: format!("{size} bytes, more than the {limit} allowed"),
        });
    }
    let mut bytes = Vec::with_capacity(size as usize);
    entry
        .take(limit)
        .read_to_end(&mut bytes)
        .map_err(|source| ImageError::ReadArchive { source })?;
    Ok(bytes)
}

/// Stores a regular member: a `blobs/<alg>/<hex>` one verified against its
/// name through [`Ingest`], any other under the digest it hashes to.
fn store_member(
    store: &Store,
    content: &ContentStore,
    entry: &mut impl Read,
    shown: &str,
    name: &str,
    size: u64,
) -> Result<Member, ImageError> {
    let wrap = |source: ImageError| ImageError::LoadArchiveEntry {
        entry: shown.to_string(),
        source: Box::new(source),
    };
    let mut reader = Tracked {
        inner: entry,
        error: None,
    };
    let Some(digest) = blob_name(name) else {
        return match content.put_stream(&mut reader) {
            Ok((digest, size)) => Ok(Member { digest, size }),
            Err(e) => Err(match reader.error.take() {
                Some(source) => ImageError::ReadArchive { source },
                None => wrap(e),
            }),
        };
    };
    let desc = Descriptor::new(MediaType::Other(OCTET_STREAM.to_string()), size, &digest);
    match store.begin(&desc, &BlobTarget::Other).map_err(wrap)? {
        Begin::Present => drain(&mut reader)?,
        Begin::Write(mut writer) => {
            // An interrupted ingest of the same digest left a prefix; the
            // archive's bytes are the ones to verify.
            if writer.offset() > 0 {
                writer.restart().map_err(wrap)?;
            }
            let mut buf = vec![0u8; COPY_BUFFER];
            loop {
                let n = reader
                    .read(&mut buf)
                    .map_err(|source| ImageError::ReadArchive { source })?;
                if n == 0 {
                    break;
                }
                writer
                    .write_all(&buf[..n])
                    .map_err(|e| wrap(ImageError::io("write blob", store.root(), e)))?;
            }
            writer.commit().map_err(wrap)?;
        }
    }
    Ok(Member { digest, size })
}

/// The digest a member named `blobs/<alg>/<hex>` must have.
fn blob_name(name: &str) -> Option<Digest> {
    let mut parts = name.splitn(3, '/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("blobs"), Some(alg), Some(hex)) => Digest::parse(&format!("{alg}:{hex}")).ok(),
        _ => None,
    }
}

/// Where a blob lives in an OCI layout.
fn blob_entry(d: &Digest) -> String {
    format!("blobs/{}/{}", d.algorithm().name(), d.hex())
}

/// Cleans a member name (or a path a document names): drops empty and `.`
/// components; refuses absolute names, `..` and NUL bytes.
fn clean_name(raw: &[u8]) -> Result<String, &'static str> {
    if raw.len() > MAX_NAME {
        return Err("the name is longer than 4096 bytes");
    }
    let s = std::str::from_utf8(raw).map_err(|_| "the name is not UTF-8")?;
    if s.contains('\0') {
        return Err("the name contains a NUL byte");
    }
    if s.starts_with('/') {
        return Err("absolute name: the path leaves the archive");
    }
    let mut parts = Vec::new();
    for c in s.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err("the path escapes the archive through '..'"),
            c => parts.push(c),
        }
    }
    Ok(parts.join("/"))
}

/// The member a link names: a symlink's target is relative to its
/// directory, a hardlink's to the archive root; neither may leave it.
fn link_target(name: &str, target: &[u8], hard: bool) -> Result<String, &'static str> {
    let t = std::str::from_utf8(target).map_err(|_| "the link target is not UTF-8")?;
    if t.starts_with('/') || t.contains('\0') {
        return Err("the link target is absolute: it leaves the archive");
    }
    let mut parts: Vec<&str> = if hard {
        Vec::new()
    } else {
        let mut p: Vec<&str> = name.split('/').collect();
        p.pop();
        p
    };
    for c in t.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err("the link target escapes the archive through '..'");
                }
            }
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        return Err("the link names the archive root");
    }
    Ok(parts.join("/"))
}

/// The layers of one load: each unpacked once and checked once.
struct Layers<'a> {
    store: &'a Store,
    /// (blob, diff id) pairs this load verified.
    verified: HashSet<(Digest, Digest)>,
}

impl<'a> Layers<'a> {
    fn new(store: &'a Store) -> Self {
        Layers {
            store,
            verified: HashSet::new(),
        }
    }

    /// Makes sure the stored layer `blob` is unpacked as `chain_id` and
    /// decompresses to `diff_id`.
    fn ensure(
        &mut self,
        blob: &Digest,
        size: u64,
        media_type: &str,
        compression: Compression,
        diff_id: &Digest,
        chain_id: &Digest,
    ) -> Result<(), ImageError> {
        let key = (blob.clone(), diff_id.clone());
        if self.verified.contains(&key) && self.store.layer(chain_id).is_ok() {
            return Ok(());
        }
        if !self.store.has_blob(blob) {
            return Err(ImageError::BlobNotFound {
                digest: blob.clone(),
            });
        }
        let unpacked_before = self.store.layer(chain_id).is_ok();
        let desc = Descriptor::new(MediaType::from(media_type), size, blob);
        let target = BlobTarget::Layer {
            diff_id: diff_id.clone(),
            chain_id: chain_id.clone(),
        };
        // The blob is stored: the store unpacks it and checks the diff id.
        if let Begin::Write(_) = self.store.begin(&desc, &target)? {
            return Err(ImageError::BlobNotFound {
                digest: blob.clone(),
            });
        }
        // A snapshot that existed came from some blob with this diff id;
        // whether this blob is one was not checked. An uncompressed blob is
        // its own diff id.
        let is_its_diff_id = compression == Compression::None && blob == diff_id;
        if unpacked_before && !is_its_diff_id {
            let (file, _) = self.store.open_blob(blob)?;
            let (actual, _) =
                unpack::digest_layer(file, compression, blob, &UnpackOptions::default())?;
            if actual != *diff_id {
                return Err(ImageError::DiffIdMismatch {
                    blob: blob.clone(),
                    expected: diff_id.clone(),
                    actual,
                });
            }
        }
        self.verified.insert(key);
        Ok(())
    }
}

/// Records the planned images (one record per manifest, with every name
/// the archive gives it). A name claimed twice goes to the later image.
fn record_all(store: &Store, planned: Vec<Planned>) -> Result<Vec<LoadedImage>, ImageError> {
    let mut merged: Vec<Planned> = Vec::new();
    for p in planned {
        match merged.iter_mut().find(|m| m.manifest == p.manifest) {
            Some(m) => {
                for n in p.names {
                    if !m.names.contains(&n) {
                        m.names.push(n);
                    }
                }
            }
            None => merged.push(p),
        }
    }
    let mut loaded: Vec<LoadedImage> = Vec::new();
    for p in merged {
        let id = store.record(&p.manifest, &p.names)?;
        if id != p.id {
            return Err(ImageError::InvalidDocument {
                what: "manifest",
                digest: p.manifest,
                reason: format!("it names config {id}, expected {}", p.id),
            });
        }
        for earlier in &mut loaded {
            earlier.names.retain(|n| !p.names.contains(n));
        }
        match loaded.iter_mut().find(|l| l.id == id) {
            Some(l) => {
                for n in p.names {
                    if !l.names.contains(&n) {
                        l.names.push(n);
                    }
                }
            }
            None => loaded.push(LoadedImage { id, names: p.names }),
        }
    }
    Ok(loaded)
}

/// An image to save with the names it carries.
#[derive(Debug)]
struct SaveItem {
    image: Image,
    names: Vec<ImageRef>,
}

fn plan_save(store: &Store, images: &[&str]) -> Result<Vec<SaveItem>, ImageError> {
    if images.is_empty() {
        return Err(ImageError::InvalidArgument {
            reason: "no image to save".to_string(),
        });
    }
    let mut items: Vec<SaveItem> = Vec::new();
    for s in images {
        let image = store.resolve(s)?;
        let name = given_name(s, &image);
        let index = match items.iter().position(|i| i.image.id == image.id) {
            Some(i) => i,
            None => {
                items.push(SaveItem {
                    image,
                    names: Vec::new(),
                });
                items.len() - 1
            }
        };
        if let Some(n) = name {
            if !items[index].names.contains(&n) {
                items[index].names.push(n);
            }
        }
    }
    Ok(items)
}

/// The tag `s` names when it is one of `image`'s tags (not an id, an id
/// prefix or a digest reference).
fn given_name(s: &str, image: &Image) -> Option<ImageRef> {
    if Digest::parse(s).is_ok() {
        return None;
    }
    let r = ImageRef::parse(s).ok()?;
    (r.digest().is_none() && image.names.contains(&r)).then_some(r)
}

/// The config's diff ids, checked against the image's layers.
fn diff_ids(image: &Image) -> Result<Vec<Digest>, ImageError> {
    let config = image.configuration()?;
    let diff_ids = config
        .rootfs()
        .diff_ids()
        .iter()
        .map(|d| Digest::parse(d))
        .collect::<Result<Vec<_>, _>>()?;
    if diff_ids.len() != image.layers.len() || diff_ids.len() != image.chain_ids.len() {
        return Err(ImageError::InvalidDocument {
            what: "image",
            digest: image.id.clone(),
            reason: format!(
                "the config has {} diff ids, the manifest {} layers",
                diff_ids.len(),
                image.layers.len()
            ),
        });
    }
    Ok(diff_ids)
}

/// The output tar. Each path is written once.
struct ArchiveWriter<W: Write> {
    builder: tar::Builder<BufWriter<W>>,
    written: HashSet<String>,
}

impl<W: Write> ArchiveWriter<W> {
    fn new(out: W) -> Self {
        ArchiveWriter {
            builder: tar::Builder::new(BufWriter::with_capacity(COPY_BUFFER, out)),
            written: HashSet::new(),
        }
    }

    fn contains(&self, path: &str) -> bool {
        self.written.contains(path)
    }

    fn header(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h
    }

    /// A directory entry (`blobs/`).
    fn dir(&mut self, path: &str) -> Result<(), ImageError> {
        if !self.written.insert(path.to_string()) {
            return Ok(());
        }
        let mut h = Self::header(tar::EntryType::Directory, 0, 0o755);
        self.builder
            .append_data(&mut h, path, io::empty())
            .map_err(|source| ImageError::WriteArchive { source })
    }

    /// A file with the given content.
    fn bytes(&mut self, path: &str, data: &[u8]) -> Result<(), ImageError> {
        if !self.written.insert(path.to_string()) {
            return Ok(());
        }
        let mut h = Self::header(tar::EntryType::Regular, data.len() as u64, 0o644);
        self.builder
            .append_data(&mut h, path, data)
            .map_err(|source| ImageError::WriteArchive { source })
    }

    /// A file of exactly `size` bytes streamed from `reader` (read from the
    /// blob at `source_path`); returns the digest of what was written when
    /// `hash`.
    fn file(
        &mut self,
        path: &str,
        size: u64,
        reader: impl Read,
        source_path: &Path,
        hash: bool,
    ) -> Result<Option<Digest>, ImageError> {
        if !self.written.insert(path.to_string()) {
            return Ok(None);
        }
        let mut exact = Exact {
            inner: reader,
            left: size,
            digester: hash.then(|| Digester::new(Algorithm::Sha256)),
            failed: false,
        };
        let mut h = Self::header(tar::EntryType::Regular, size, 0o644);
        match self.builder.append_data(&mut h, path, &mut exact) {
            Ok(()) => Ok(exact.digester.map(Digester::finish)),
            Err(e) if exact.failed => Err(ImageError::io("read blob", source_path, e)),
            Err(source) => Err(ImageError::WriteArchive { source }),
        }
    }

    /// Writes the end-of-archive marker and flushes.
    fn finish(self) -> Result<(), ImageError> {
        let mut out = self
            .builder
            .into_inner()
            .map_err(|source| ImageError::WriteArchive { source })?;
        out.flush()
            .map_err(|source| ImageError::WriteArchive { source })
    }

    /// Writes `blobs/<alg>/` entries before the first blob of an algorithm.
    fn blob_dirs(&mut self, d: &Digest) -> Result<(), ImageError> {
        self.dir("blobs/")?;
        self.dir(&format!("blobs/{}/", d.algorithm().name()))
    }

    /// A blob of the layout with the given content.
    fn blob_bytes(&mut self, d: &Digest, data: &[u8]) -> Result<(), ImageError> {
        self.blob_dirs(d)?;
        self.bytes(&blob_entry(d), data)
    }
}

/// Yields exactly `left` bytes of `inner` (a tar entry's header promised
/// that many), failing when it has fewer or more; hashes what it yields.
struct Exact<R> {
    inner: R,
    left: u64,
    digester: Option<Digester>,
    failed: bool,
}

impl<R: Read> Exact<R> {
    fn read_exact_part(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the content is longer than its recorded size",
                )),
            };
        }
        let want = usize::try_from(self.left).map_or(buf.len(), |l| l.min(buf.len()));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the content is shorter than its recorded size",
            ));
        }
        self.left -= n as u64;
        if let Some(d) = &mut self.digester {
            d.update(&buf[..n]);
        }
        Ok(n)
    }
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let result = self.read_exact_part(buf);
        if result.is_err() {
            self.failed = true;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_names_are_cleaned_or_refused() {
        assert_eq!(clean_name(b"./manifest.json").unwrap(), "manifest.json");
        assert_eq!(clean_name(b"blobs//sha256/./x").unwrap(), "blobs/sha256/x");
        assert_eq!(clean_name(b"./").unwrap(), "");
        assert_eq!(
            clean_name(b"../x").unwrap_err(),
            "the path escapes the archive through '..'"
        );
        assert!(clean_name(b"a/../../etc/passwd").is_err());
        assert!(clean_name(b"a/../b").is_err());
        assert_eq!(
            clean_name(b"/etc/passwd").unwrap_err(),
            "absolute name: the path leaves the archive"
        );
        assert!(clean_name(b"\xff").is_err());
        assert!(clean_name(&[b'a'; 5000]).is_err());
    }

    #[test]
    fn link_targets_stay_inside() {
        assert_eq!(
            link_target("238a/layer.tar", b"../2cc6.tar", false).unwrap(),
            "2cc6.tar"
        );
        assert_eq!(link_target("a/b/c", b"../d", false).unwrap(), "a/d");
        assert_eq!(link_target("x", b"a/b", true).unwrap(), "a/b");
        assert!(link_target("a/layer.tar", b"../../etc/passwd", false).is_err());
        assert!(link_target("layer.tar", b"/etc/passwd", false).is_err());
        assert!(link_target("a/b", b"..", false).is_err());
        assert!(link_target("x", b"../y", true).is_err());
    }

    #[test]
    fn links_resolve_with_a_hop_limit() {
        let mut c = Contents::default();
        let d = Digest::sha256_of(b"x");
        c.files.insert(
            "2cc6.tar".into(),
            Member {
                digest: d.clone(),
                size: 1,
            },
        );
        c.links.insert("238a/layer.tar".into(), "2cc6.tar".into());
        assert_eq!(
            c.resolve(MANIFEST_JSON, "238a/layer.tar").unwrap().digest,
            d
        );
        c.links.insert("loop1".into(), "loop2".into());
        c.links.insert("loop2".into(), "loop1".into());
        let e = c.resolve(MANIFEST_JSON, "loop1").unwrap_err();
        assert_eq!(
            e.to_string(),
            "manifest.json names \"loop1\": too many levels of links"
        );
        let e = c.resolve(MANIFEST_JSON, "../../etc/passwd").unwrap_err();
        assert_eq!(
            e.to_string(),
            "manifest.json names \"../../etc/passwd\": the path escapes the archive through '..'"
        );
        let e = c.resolve(MANIFEST_JSON, "missing.tar").unwrap_err();
        assert_eq!(
            e.to_string(),
            "manifest.json names \"missing.tar\": no such file in the archive"
        );
    }

    #[test]
    fn blob_names_parse_as_digests() {
        let d = Digest::sha256_of(b"x");
        assert_eq!(blob_name(&blob_entry(&d)), Some(d));
        assert_eq!(blob_name("blobs/sha256/zz"), None);
        assert_eq!(blob_name("blobs/sha256"), None);
        assert_eq!(blob_name("x/sha256/abc"), None);
    }

    #[test]
    fn compression_is_sniffed() {
        assert_eq!(sniff(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
        assert_eq!(sniff(&[0x28, 0xb5, 0x2f, 0xfd]), Compression::Zstd);
        assert_eq!(sniff(b"mani"), Compression::None);
        assert_eq!(sniff(b""), Compression::None);
    }

    #[test]
    fn exact_reader_refuses_short_and_long_content() {
        let mut out = Vec::new();
        let mut e = Exact {
            inner: &b"abcd"[..],
            left: 4,
            digester: Some(Digester::new(Algorithm::Sha256)),
            failed: false,
        };
        io::copy(&mut e, &mut out).unwrap();
        assert_eq!(e.digester.unwrap().finish(), Digest::sha256_of(b"abcd"));
        let mut e = Exact {
            inner: &b"abc"[..],
            left: 4,
            digester: None,
            failed: false,
        };
        assert!(io::copy(&mut e, &mut io::sink()).is_err());
        assert!(e.failed);
        let mut e = Exact {
            inner: &b"abcde"[..],
            left: 4,
            digester: None,
            failed: false,
        };
        assert!(io::copy(&mut e, &mut io::sink()).is_err());
    }

    #[test]
    fn header_budget_stops_oversized_headers() {
        let budget = Rc::new(Cell::new(Some(10)));
        let mut r = HeaderBudget {
            inner: &[0u8; 64][..],
            budget: Rc::clone(&budget),
        };
        let mut buf = [0u8; 8];
        assert_eq!(r.read(&mut buf).unwrap(), 8);
        assert!(r.read(&mut buf).is_err());
        budget.set(None);
        assert_eq!(r.read(&mut buf).unwrap(), 8);
    }

    #[test]
    fn formats_parse() {
        assert_eq!(
            ArchiveFormat::parse("docker-archive").unwrap(),
            ArchiveFormat::DockerArchive
        );
        assert_eq!(ArchiveFormat::OciArchive.to_string(), "oci-archive");
        assert!(ArchiveFormat::parse("tar").is_err());
    }
}
