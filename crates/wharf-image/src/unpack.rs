//! Unpacking a layer tar into a snapshot directory. Every layer is hostile.
//!
//! The tar is parsed with the `tar` crate (`Archive::entries`, never its
//! unpack functions); Wharf's own loop creates each entry:
//!
//! - a name is cleaned lexically; one whose `..` climbs above the layer root
//!   is refused, as is a hardlink target that does, and any entry whose
//!   parent path runs through a symlink this layer created (symlink then
//!   write through it); an absolute name is read relative to the layer root;
//! - the parent directory is resolved inside the layer with
//!   [`wharf_sys::Root`] (`RESOLVE_IN_ROOT`), and the entry is created
//!   relative to that directory descriptor with a single-component name and
//!   `O_NOFOLLOW`/`O_EXCL`/`AT_SYMLINK_NOFOLLOW`; an existing non-directory is
//!   unlinked first, never written through (CVE-2026-33056, CVE-2021-32760);
//! - ownership, mode (setuid included, after chown), xattrs and times are set
//!   on the descriptor; directory times last, deepest first;
//! - OCI whiteouts become overlayfs whiteouts: `.wh.name` a `0:0` character
//!   device `name`, `.wh..wh..opq` the `trusted.overlay.opaque=y` xattr;
//! - device nodes only under [`DeviceNodes::Create`];
//! - extended headers (PAX, GNU long names) are bounded before the `tar`
//!   crate buffers them, xattr values and names are bounded, and so are the
//!   total uncompressed bytes and the number of entries (decompression
//!   bombs).

use std::collections::HashSet;
use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};

use crate::digest::{Algorithm, Digest, Digester};
use crate::error::ImageError;
use crate::media::Compression;

/// The OCI whiteout prefix.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// The OCI opaque-directory marker.
pub const WHITEOUT_OPAQUE: &str = ".wh..wh..opq";
/// The xattr overlayfs reads to make a directory opaque.
pub const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// Longest entry name (PATH_MAX).
const MAX_NAME: usize = 4096;
/// Longest path component (NAME_MAX).
const MAX_COMPONENT: usize = 255;
/// Longest symlink target.
const MAX_LINK_TARGET: usize = 4096;
/// Largest zstd window accepted (128 MiB).
const ZSTD_WINDOW_LOG_MAX: u32 = 27;
const COPY_BUFFER: usize = 256 * 1024;

/// What to do with character and block device entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceNodes {
    /// Create them (needs `CAP_MKNOD` in the initial user namespace).
    Create,
    /// Leave them out silently (rootless engines do the same).
    Skip,
    /// Fail the layer, naming the entry.
    Refuse,
}

/// Limits and policies of an unpack.
#[derive(Debug, Clone)]
pub struct UnpackOptions {
    /// Most uncompressed bytes a layer may have.
    pub max_size: u64,
    /// Most tar entries a layer may have.
    pub max_entries: u64,
    /// Largest PAX or GNU long-name extended header.
    pub max_extended_header: u64,
    /// Largest xattr value.
    pub max_xattr_value: usize,
    /// Device node policy.
    pub devices: DeviceNodes,
    /// Set the owners the tar names (root only).
    pub chown: bool,
}

impl Default for UnpackOptions {
    /// Limits from SECURITY-CASES §1.5; devices and ownership as the caller
    /// may: created when the process is root in the initial user namespace
    /// with `CAP_MKNOD`, skipped otherwise.
    fn default() -> Self {
        let root = rustix::process::geteuid().is_root();
        let may_mknod = root && in_initial_userns() && has_cap_mknod();
        UnpackOptions {
            max_size: 256 << 30,
            max_entries: 4_000_000,
            max_extended_header: 1 << 20,
            max_xattr_value: 64 << 10,
            devices: if may_mknod {
                DeviceNodes::Create
            } else {
                DeviceNodes::Skip
            },
            chown: root,
        }
    }
}

fn in_initial_userns() -> bool {
    fs_err::read_to_string("/proc/self/uid_map").is_ok_and(|m| {
        let fields: Vec<&str> = m.split_whitespace().collect();
        fields == ["0", "0", "4294967295"]
    })
}

fn has_cap_mknod() -> bool {
    const CAP_MKNOD: u32 = 27;
    fs_err::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .is_some_and(|caps| caps & (1 << CAP_MKNOD) != 0)
    })
}

/// What an unpack produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackedLayer {
    /// Digest of the uncompressed tar stream.
    pub diff_id: Digest,
    /// Uncompressed size in bytes.
    pub size: u64,
    /// Tar entries read.
    pub entries: u64,
}

/// A limit passed, carried inside an `io::Error` through the tar crate.
#[derive(Debug)]
struct LimitExceeded {
    what: &'static str,
    limit: u64,
}

impl std::fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} exceeds the limit of {}", self.what, self.limit)
    }
}

impl std::error::Error for LimitExceeded {}

fn limit_error(what: &'static str, limit: u64) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, LimitExceeded { what, limit })
}

/// Turns a read error into [`ImageError::LayerLimit`] when a limit caused it.
fn read_error(blob: &Digest, err: io::Error) -> ImageError {
    if let Some(l) = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<LimitExceeded>())
    {
        return ImageError::LayerLimit {
            blob: blob.clone(),
            what: l.what,
            limit: l.limit,
        };
    }
    ImageError::ReadLayer {
        blob: blob.clone(),
        source: err,
    }
}

/// Hashes and counts the uncompressed stream, failing past `max`.
struct Hashing<R> {
    inner: R,
    digester: Digester,
    max: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if self.digester.written() + n as u64 > self.max {
            return Err(limit_error("uncompressed size", self.max));
        }
        self.digester.update(&buf[..n]);
        Ok(n)
    }
}

/// Follows the tar framing exactly as the `tar` crate does and refuses a
/// PAX (`x`) or GNU long-name (`L`/`K`) extended header larger than the
/// limit before the crate reads it into memory.
struct ExtendedHeaderGuard<R> {
    inner: R,
    limit: u64,
    state: GuardState,
    block: Vec<u8>,
    pax: Option<Vec<u8>>,
    pending_pax_size: Option<u64>,
    /// Size and padding of a sparse entry's data, after its extension blocks.
    pending_data: Option<(u64, u64)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GuardState {
    Header,
    SparseExtension,
    Data {
        payload: u64,
        padding: u64,
    },
    /// End of archive or a header the crate will refuse: stop following.
    Done,
}

impl<R> ExtendedHeaderGuard<R> {
    fn new(inner: R, limit: u64) -> Self {
        ExtendedHeaderGuard {
            inner,
            limit,
            state: GuardState::Header,
            block: Vec::with_capacity(512),
            pax: None,
            pending_pax_size: None,
            pending_data: None,
        }
    }

    fn into_inner(self) -> R {
        self.inner
    }

    fn observe(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            match self.state {
                GuardState::Done => return Ok(()),
                GuardState::Header | GuardState::SparseExtension => {
                    let take = (512 - self.block.len()).min(bytes.len());
                    self.block.extend_from_slice(&bytes[..take]);
                    bytes = &bytes[take..];
                    if self.block.len() == 512 {
                        if self.state == GuardState::Header {
                            self.on_header()?;
                        } else {
                            self.on_sparse_extension();
                        }
                        self.block.clear();
                    }
                }
                GuardState::Data { payload, padding } => {
                    if payload > 0 {
                        let take = (payload.min(bytes.len() as u64)) as usize;
                        if let Some(pax) = &mut self.pax {
                            pax.extend_from_slice(&bytes[..take]);
                        }
                        bytes = &bytes[take..];
                        let payload = payload - take as u64;
                        self.state = GuardState::Data { payload, padding };
                        if payload == 0 {
                            if let Some(pax) = self.pax.take() {
                                self.pending_pax_size = pax_size(&pax);
                            }
                        }
                    } else {
                        let take = (padding.min(bytes.len() as u64)) as usize;
                        bytes = &bytes[take..];
                        let padding = padding - take as u64;
                        self.state = if padding == 0 {
                            GuardState::Header
                        } else {
                            GuardState::Data { payload, padding }
                        };
                    }
                }
            }
        }
        Ok(())
    }

    fn on_header(&mut self) -> io::Result<()> {
        if self.block.iter().all(|&b| b == 0) {
            self.state = GuardState::Done;
            return Ok(());
        }
        let header = tar::Header::from_byte_slice(&self.block);
        let Ok(mut size) = header.entry_size() else {
            self.state = GuardState::Done;
            return Ok(());
        };
        let recognized = header.as_ustar().is_some() || header.as_gnu().is_some();
        let kind = header.entry_type();
        let extended = kind.is_gnu_longname()
            || kind.is_gnu_longlink()
            || kind.is_pax_local_extensions()
            || kind.is_pax_global_extensions();
        if !extended {
            if let Some(pax) = self.pending_pax_size.take() {
                size = pax;
            }
        }
        let buffered = recognized
            && (kind.is_gnu_longname() || kind.is_gnu_longlink() || kind.is_pax_local_extensions());
        if buffered && size > self.limit {
            return Err(limit_error("extended header", self.limit));
        }
        if recognized && kind.is_pax_local_extensions() {
            self.pax = Some(Vec::with_capacity(size as usize));
        }
        let padding = (512 - size % 512) % 512;
        let sparse_extended =
            kind.is_gnu_sparse() && header.as_gnu().is_some_and(|g| g.is_extended());
        self.state = if sparse_extended {
            // The crate reads the extension blocks before the data.
            self.pending_data = Some((size, padding));
            GuardState::SparseExtension
        } else {
            GuardState::Data {
                payload: size,
                padding,
            }
        };
        if !sparse_extended && size == 0 {
            if let Some(pax) = self.pax.take() {
                self.pending_pax_size = pax_size(&pax);
            }
        }
        Ok(())
    }

    fn on_sparse_extension(&mut self) {
        // `isextended` is the byte after 21 sparse entries of 24 bytes.
        if self.block[504] == 0 {
            let (payload, padding) = self.pending_data.take().unwrap_or((0, 0));
            self.state = GuardState::Data { payload, padding };
        }
    }
}

/// The `size` record of a PAX header, read as the `tar` crate reads it.
fn pax_size(pax: &[u8]) -> Option<u64> {
    for ext in tar::PaxExtensions::new(pax) {
        let ext = ext.ok()?;
        if ext.key() == Ok("size") {
            return ext.value().ok()?.parse().ok();
        }
    }
    None
}

impl<R: Read> Read for ExtendedHeaderGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.observe(&buf[..n])?;
        Ok(n)
    }
}

/// A decompressing reader for `compression`.
pub(crate) fn decompressor<'a, R: Read + 'a>(
    reader: R,
    compression: Compression,
) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match compression {
        Compression::None => Box::new(reader),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(reader)),
        Compression::Zstd => {
            let mut d = zstd::stream::read::Decoder::new(reader)?;
            d.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
            Box::new(d)
        }
    })
}

/// Reads a layer to its end, checking limits, and returns the digest and
/// size of its uncompressed stream without extracting anything.
pub fn digest_layer(
    reader: impl Read,
    compression: Compression,
    blob: &Digest,
    opts: &UnpackOptions,
) -> Result<(Digest, u64), ImageError> {
    let inner = decompressor(reader, compression).map_err(|e| read_error(blob, e))?;
    let mut hashing = Hashing {
        inner,
        digester: Digester::new(Algorithm::Sha256),
        max: opts.max_size,
    };
    io::copy(&mut hashing, &mut io::sink()).map_err(|e| read_error(blob, e))?;
    let size = hashing.digester.written();
    Ok((hashing.digester.finish(), size))
}

/// Unpacks the layer read from `reader` into `dest` (an existing, empty,
/// trusted directory), converting whiteouts. `blob` names the layer in
/// errors.
pub fn unpack_layer(
    reader: impl Read,
    compression: Compression,
    dest: &Path,
    blob: &Digest,
    opts: &UnpackOptions,
) -> Result<UnpackedLayer, ImageError> {
    let inner = decompressor(reader, compression).map_err(|e| read_error(blob, e))?;
    let hashing = Hashing {
        inner,
        digester: Digester::new(Algorithm::Sha256),
        max: opts.max_size,
    };
    let guard = ExtendedHeaderGuard::new(hashing, opts.max_extended_header);
    let mut archive = tar::Archive::new(guard);
    let root =
        wharf_sys::Root::open(dest).map_err(|e| ImageError::io("open layer directory", dest, e))?;
    let mut extractor = Extractor {
        root,
        opts,
        symlinks: HashSet::new(),
        dir_times: Vec::new(),
        parent_cache: None,
        buffer: vec![0u8; COPY_BUFFER],
    };
    let mut entries = 0u64;
    for entry in archive.entries().map_err(|e| read_error(blob, e))? {
        let mut entry = entry.map_err(|e| read_error(blob, e))?;
        entries += 1;
        if entries > opts.max_entries {
            return Err(ImageError::LayerLimit {
                blob: blob.clone(),
                what: "entry count",
                limit: opts.max_entries,
            });
        }
        extractor.entry(&mut entry, blob)?;
    }
    extractor.finish()?;
    // The diff id covers the whole stream: end-of-archive blocks and
    // anything after them.
    let mut hashing = archive.into_inner().into_inner();
    io::copy(&mut hashing, &mut io::sink()).map_err(|e| read_error(blob, e))?;
    let size = hashing.digester.written();
    Ok(UnpackedLayer {
        diff_id: hashing.digester.finish(),
        size,
        entries,
    })
}

/// What an entry name means once cleaned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WhiteoutPlan {
    /// Not a whiteout: create the entry at this path.
    Create(PathBuf),
    /// `.wh.name`: an overlay whiteout (char 0:0) at this path.
    Whiteout(PathBuf),
    /// `.wh..wh..opq`: mark this directory opaque.
    Opaque(PathBuf),
    /// Other `.wh..wh.` names (AUFS metadata): ignored.
    Ignore,
}

/// Cleans an entry name: drops empty and `.` components, applies `..`
/// lexically and refuses one that climbs above the root; a leading `/` is
/// read relative to the layer root.
pub(crate) fn clean_name(name: &[u8]) -> Result<PathBuf, String> {
    if name.len() > MAX_NAME {
        return Err(format!("name is longer than {MAX_NAME} bytes"));
    }
    let mut out: Vec<&[u8]> = Vec::new();
    for comp in name.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                if out.pop().is_none() {
                    return Err("name escapes the layer directory through '..'".to_string());
                }
            }
            c if c.len() > MAX_COMPONENT => {
                return Err(format!(
                    "a name component is longer than {MAX_COMPONENT} bytes"
                ));
            }
            c => out.push(c),
        }
    }
    let mut path = PathBuf::new();
    for c in out {
        path.push(OsStr::from_bytes(c));
    }
    Ok(path)
}

/// Decides what a cleaned entry path is: a plain entry, a whiteout or an
/// opaque marker.
pub(crate) fn plan_whiteout(path: &Path) -> Result<WhiteoutPlan, String> {
    let Some(base) = path.file_name() else {
        return Ok(WhiteoutPlan::Create(path.to_path_buf()));
    };
    let base = base.as_bytes();
    let parent = path.parent().map(Path::to_path_buf).unwrap_or_default();
    if base == WHITEOUT_OPAQUE.as_bytes() {
        return Ok(WhiteoutPlan::Opaque(parent));
    }
    if base.starts_with(b".wh..wh.") {
        return Ok(WhiteoutPlan::Ignore);
    }
    match base.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
        None => Ok(WhiteoutPlan::Create(path.to_path_buf())),
        Some(b"") | Some(b".") | Some(b"..") => {
            Err("whiteout of '.', '..' or an empty name".to_string())
        }
        Some(name) if name.contains(&b'/') => Err("whiteout name contains '/'".to_string()),
        Some(name) => Ok(WhiteoutPlan::Whiteout(parent.join(OsStr::from_bytes(name)))),
    }
}

/// Sub-second times from a PAX `mtime`/`atime` record (`secs[.frac]`).
pub(crate) fn parse_pax_time(value: &str) -> Option<Timespec> {
    let (neg, v) = match value.strip_prefix('-') {
        Some(v) => (true, v),
        None => (false, value),
    };
    let (secs, frac) = v.split_once('.').unwrap_or((v, ""));
    let secs: i64 = secs.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut digits: String = frac.chars().take(9).collect();
    while digits.len() < 9 {
        digits.push('0');
    }
    let nanos: i64 = digits.parse().ok()?;
    Some(if neg {
        if nanos == 0 {
            Timespec {
                tv_sec: -secs,
                tv_nsec: 0,
            }
        } else {
            Timespec {
                tv_sec: -secs - 1,
                tv_nsec: 1_000_000_000 - nanos,
            }
        }
    } else {
        Timespec {
            tv_sec: secs,
            tv_nsec: nanos,
        }
    })
}

/// What the loop knows of an entry besides its content.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    times: Timestamps,
    xattrs: Vec<(String, Vec<u8>)>,
}

struct Extractor<'a> {
    root: wharf_sys::Root,
    opts: &'a UnpackOptions,
    /// Symlinks this layer created: no later entry may pass through them.
    symlinks: HashSet<PathBuf>,
    /// Directories whose times are set at the end.
    dir_times: Vec<(PathBuf, Timestamps)>,
    /// The last parent directory resolved.
    parent_cache: Option<(PathBuf, OwnedFd)>,
    buffer: Vec<u8>,
}

fn errno(e: rustix::io::Errno) -> io::Error {
    e.into()
}

impl Extractor<'_> {
    fn entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        blob: &Digest,
    ) -> Result<(), ImageError> {
        let raw_name = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw_name).into_owned();
        let refuse = |reason: String| ImageError::UnsafeEntry {
            entry: name.clone(),
            reason,
        };
        let path = clean_name(&raw_name).map_err(&refuse)?;
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            return Ok(());
        }
        let plan = plan_whiteout(&path).map_err(&refuse)?;
        let target_path = match &plan {
            WhiteoutPlan::Create(p) | WhiteoutPlan::Whiteout(p) => p.clone(),
            WhiteoutPlan::Opaque(p) => p.join("x"),
            WhiteoutPlan::Ignore => return Ok(()),
        };
        if let Some(link) = self.through_symlink(&target_path) {
            return Err(refuse(format!(
                "parent directory {} is a symlink in this layer",
                link.display()
            )));
        }
        let meta = self.meta(entry, blob, &name)?;
        let op_err = |op: &'static str| {
            let name = name.clone();
            move |source: io::Error| ImageError::UnpackEntry {
                entry: name,
                op,
                source,
            }
        };
        match plan {
            WhiteoutPlan::Ignore => Ok(()),
            WhiteoutPlan::Opaque(dir) => {
                let fd = if dir.as_os_str().is_empty() {
                    self.root.resolve(Path::new("/"))
                } else {
                    self.root.mkdir_all(&dir, 0o755)
                }
                .map_err(op_err("create directory"))?;
                let dirfd = rustix::fs::openat(
                    &fd,
                    ".",
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| op_err("open directory")(errno(e)))?;
                rustix::fs::fsetxattr(
                    &dirfd,
                    OVERLAY_OPAQUE_XATTR,
                    b"y",
                    rustix::fs::XattrFlags::empty(),
                )
                .map_err(|e| op_err("set opaque xattr")(errno(e)))
            }
            WhiteoutPlan::Whiteout(target) => {
                let (parent, base) = self
                    .parent_of(&target)
                    .map_err(op_err("create parent directory"))?;
                self.symlinks.remove(&target);
                self.create_replacing(parent.as_fd(), &base, || {
                    rustix::fs::mknodat(&parent, &base, FileType::CharacterDevice, Mode::empty(), 0)
                })
                .map_err(op_err("create whiteout"))?;
                self.parent_cache = Some((
                    target.parent().map(Path::to_path_buf).unwrap_or_default(),
                    parent,
                ));
                Ok(())
            }
            WhiteoutPlan::Create(path) => {
                if path.as_os_str().is_empty() {
                    return if kind.is_dir() {
                        Ok(())
                    } else {
                        Err(refuse(
                            "a non-directory entry names the layer root".to_string(),
                        ))
                    };
                }
                self.create(entry, &path, kind, meta, &name, blob)
            }
        }
    }

    /// The first ancestor of `path` that is a symlink this layer created.
    fn through_symlink(&self, path: &Path) -> Option<PathBuf> {
        if self.symlinks.is_empty() {
            return None;
        }
        let mut prefix = PathBuf::new();
        let comps: Vec<Component<'_>> = path.components().collect();
        for comp in comps.iter().take(comps.len().saturating_sub(1)) {
            prefix.push(comp);
            if self.symlinks.contains(&prefix) {
                return Some(prefix);
            }
        }
        None
    }

    fn meta<R: Read>(
        &self,
        entry: &mut tar::Entry<'_, R>,
        blob: &Digest,
        name: &str,
    ) -> Result<Meta, ImageError> {
        let refuse = |reason: String| ImageError::UnsafeEntry {
            entry: name.to_string(),
            reason,
        };
        let header = entry.header();
        let bad = |what: &str| refuse(format!("invalid {what} in the tar header"));
        // A numeric field left blank (all NULs or spaces, as some writers
        // emit) reads as 0, as Go's archive/tar (containerd, moby) reads it.
        let old = header.as_old();
        let blank = |field: &[u8]| field.iter().all(|b| *b == 0 || *b == b' ');
        let mode = header
            .mode()
            .or_else(|e| if blank(&old.mode) { Ok(0) } else { Err(e) })
            .map_err(|_| bad("mode"))?
            & 0o7777;
        let uid = header
            .uid()
            .or_else(|e| if blank(&old.uid) { Ok(0) } else { Err(e) })
            .map_err(|_| bad("uid"))?;
        let gid = header
            .gid()
            .or_else(|e| if blank(&old.gid) { Ok(0) } else { Err(e) })
            .map_err(|_| bad("gid"))?;
        let uid = u32::try_from(uid)
            .ok()
            .filter(|&u| u != u32::MAX)
            .ok_or_else(|| refuse(format!("uid {uid} is out of range")))?;
        let gid = u32::try_from(gid)
            .ok()
            .filter(|&g| g != u32::MAX)
            .ok_or_else(|| refuse(format!("gid {gid} is out of range")))?;
        let mtime_secs = header
            .mtime()
            .or_else(|e| if blank(&old.mtime) { Ok(0) } else { Err(e) })
            .map_err(|_| bad("mtime"))?;
        let mut mtime = Timespec {
            tv_sec: i64::try_from(mtime_secs).unwrap_or(i64::MAX),
            tv_nsec: 0,
        };
        let mut atime = None;
        let mut xattrs = Vec::new();
        if let Some(pax) = entry.pax_extensions().map_err(|e| read_error(blob, e))? {
            for ext in pax {
                let ext = ext.map_err(|_| refuse("malformed PAX record".to_string()))?;
                let Ok(key) = ext.key() else { continue };
                if key == "mtime" {
                    if let Some(t) = ext.value().ok().and_then(parse_pax_time) {
                        mtime = t;
                    }
                } else if key == "atime" {
                    atime = ext.value().ok().and_then(parse_pax_time);
                } else if let Some(xname) = key.strip_prefix("SCHILY.xattr.") {
                    let value = ext.value_bytes();
                    if value.len() > self.opts.max_xattr_value {
                        return Err(ImageError::LayerLimit {
                            blob: blob.clone(),
                            what: "xattr value",
                            limit: self.opts.max_xattr_value as u64,
                        });
                    }
                    if xname.is_empty() || xname.len() > 255 {
                        return Err(refuse(format!("invalid xattr name {xname:?}")));
                    }
                    if xname.starts_with("trusted.overlay.") || xname.starts_with("user.overlay.") {
                        // Only Wharf's own whiteout conversion may set
                        // overlayfs' control xattrs (redirect, metacopy…).
                        tracing::warn!(
                            entry = name,
                            xattr = xname,
                            "ignoring overlayfs xattr in layer"
                        );
                        continue;
                    }
                    xattrs.push((xname.to_string(), value.to_vec()));
                }
            }
        }
        Ok(Meta {
            mode,
            uid,
            gid,
            times: Timestamps {
                last_access: atime.unwrap_or(Timespec {
                    tv_sec: mtime.tv_sec,
                    tv_nsec: mtime.tv_nsec,
                }),
                last_modification: mtime,
            },
            xattrs,
        })
    }

    /// The parent directory of `path` (created if missing, resolved inside
    /// the layer) and the final component.
    fn parent_of(&mut self, path: &Path) -> io::Result<(OwnedFd, PathBuf)> {
        let parent = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let base = PathBuf::from(
            path.file_name()
                .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?,
        );
        if let Some((cached, fd)) = self.parent_cache.take() {
            if cached == parent {
                return Ok((fd, base));
            }
        }
        let fd = if parent.as_os_str().is_empty() {
            self.root.resolve(Path::new("/"))?
        } else {
            self.root.mkdir_all(&parent, 0o755)?
        };
        Ok((fd, base))
    }

    /// Runs `make`, a create of `name` in `parent`; when the name exists
    /// (a later entry replaces an earlier one), removes it without
    /// following it and runs `make` once more.
    fn create_replacing<T>(
        &self,
        parent: BorrowedFd<'_>,
        name: &Path,
        mut make: impl FnMut() -> rustix::io::Result<T>,
    ) -> io::Result<T> {
        match make() {
            Err(rustix::io::Errno::EXIST) => {
                self.clear(parent, name)?;
                Ok(make()?)
            }
            other => Ok(other?),
        }
    }

    /// Removes whatever is at `parent/name`: a file, a symlink (never
    /// followed) or an empty directory.
    fn clear(&self, parent: BorrowedFd<'_>, name: &Path) -> io::Result<()> {
        match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => {
                let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
                let flags = if is_dir {
                    AtFlags::REMOVEDIR
                } else {
                    AtFlags::empty()
                };
                rustix::fs::unlinkat(parent, name, flags)?;
                Ok(())
            }
            Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn create<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        path: &Path,
        kind: tar::EntryType,
        meta: Meta,
        name: &str,
        blob: &Digest,
    ) -> Result<(), ImageError> {
        let op_err = |op: &'static str| {
            let name = name.to_string();
            move |source: io::Error| ImageError::UnpackEntry {
                entry: name,
                op,
                source,
            }
        };
        let refuse = |reason: String| ImageError::UnsafeEntry {
            entry: name.to_string(),
            reason,
        };
        let parent_path = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let (parent, base) = self
            .parent_of(path)
            .map_err(op_err("create parent directory"))?;
        let result = (|| -> Result<(), ImageError> {
            if kind.is_dir() {
                match rustix::fs::mkdirat(&parent, &base, Mode::from_raw_mode(0o700)) {
                    Ok(()) => {}
                    Err(rustix::io::Errno::EXIST) => {
                        let st = rustix::fs::statat(&parent, &base, AtFlags::SYMLINK_NOFOLLOW)
                            .map_err(|e| op_err("stat existing entry")(errno(e)))?;
                        if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                            self.clear(parent.as_fd(), &base)
                                .map_err(op_err("replace existing entry"))?;
                            rustix::fs::mkdirat(&parent, &base, Mode::from_raw_mode(0o700))
                                .map_err(|e| op_err("create directory")(errno(e)))?;
                        }
                    }
                    Err(e) => return Err(op_err("create directory")(errno(e))),
                }
                self.symlinks.remove(path);
                let fd = rustix::fs::openat(
                    &parent,
                    &base,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| op_err("open directory")(errno(e)))?;
                self.apply_fd(fd.as_fd(), &meta, name)?;
                self.dir_times.push((path.to_path_buf(), meta.times));
                return Ok(());
            }
            self.symlinks.remove(path);
            if kind.is_file() || kind == tar::EntryType::Continuous || kind.is_gnu_sparse() {
                let fd = self
                    .create_replacing(parent.as_fd(), &base, || {
                        rustix::fs::openat(
                            &parent,
                            &base,
                            OFlags::WRONLY
                                | OFlags::CREATE
                                | OFlags::EXCL
                                | OFlags::NOFOLLOW
                                | OFlags::CLOEXEC,
                            Mode::from_raw_mode(0o600),
                        )
                    })
                    .map_err(op_err("create file"))?;
                let mut file = std::fs::File::from(fd);
                loop {
                    let n = entry
                        .read(&mut self.buffer)
                        .map_err(|e| read_error(blob, e))?;
                    if n == 0 {
                        break;
                    }
                    file.write_all(&self.buffer[..n])
                        .map_err(op_err("write content"))?;
                }
                self.apply_fd(file.as_fd(), &meta, name)?;
                rustix::fs::futimens(&file, &meta.times)
                    .map_err(|e| op_err("set times")(errno(e)))?;
                return Ok(());
            }
            if kind.is_symlink() {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| refuse("symlink without a target".to_string()))?
                    .into_owned();
                if target.is_empty() || target.len() > MAX_LINK_TARGET {
                    return Err(refuse("symlink target is empty or too long".to_string()));
                }
                self.create_replacing(parent.as_fd(), &base, || {
                    rustix::fs::symlinkat(OsStr::from_bytes(&target), &parent, &base)
                })
                .map_err(op_err("create symlink"))?;
                self.symlinks.insert(path.to_path_buf());
                let fd = self
                    .open_path(parent.as_fd(), &base)
                    .map_err(op_err("open symlink"))?;
                if self.opts.chown {
                    chown_fd(fd.as_fd(), meta.uid, meta.gid).map_err(op_err("change owner"))?;
                }
                self.set_xattrs_at(parent.as_fd(), &base, &meta, name);
                rustix::fs::utimensat(&fd, "", &meta.times, AtFlags::EMPTY_PATH)
                    .map_err(|e| op_err("set times")(errno(e)))?;
                return Ok(());
            }
            if kind.is_hard_link() {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| refuse("hardlink without a target".to_string()))?
                    .into_owned();
                let target =
                    clean_name(&target).map_err(|r| refuse(format!("hardlink target: {r}")))?;
                if target.as_os_str().is_empty() {
                    return Err(refuse("hardlink to the layer root".to_string()));
                }
                if let Some(link) = self.through_symlink(&target) {
                    return Err(refuse(format!(
                        "hardlink target passes through symlink {} of this layer",
                        link.display()
                    )));
                }
                let target_parent = target.parent().map(Path::to_path_buf).unwrap_or_default();
                let target_base = target.file_name().map(PathBuf::from).unwrap_or_default();
                let tparent = self
                    .root
                    .resolve(&Path::new("/").join(&target_parent))
                    .map_err(op_err("resolve hardlink target"))?;
                self.create_replacing(parent.as_fd(), &base, || {
                    rustix::fs::linkat(&tparent, &target_base, &parent, &base, AtFlags::empty())
                })
                .map_err(op_err("create hardlink"))?;
                if self.symlinks.contains(&target) {
                    self.symlinks.insert(path.to_path_buf());
                }
                return Ok(());
            }
            let node = if kind.is_character_special() {
                Some(FileType::CharacterDevice)
            } else if kind.is_block_special() {
                Some(FileType::BlockDevice)
            } else if kind.is_fifo() {
                Some(FileType::Fifo)
            } else {
                None
            };
            let Some(node) = node else {
                return Err(refuse(format!(
                    "unsupported tar entry type {:?}",
                    kind.as_byte() as char
                )));
            };
            let mut dev = 0;
            if node != FileType::Fifo {
                match self.opts.devices {
                    DeviceNodes::Create => {}
                    DeviceNodes::Skip => {
                        tracing::debug!(entry = name, "skipping device node");
                        return Ok(());
                    }
                    DeviceNodes::Refuse => {
                        return Err(refuse("device nodes are not allowed here".to_string()));
                    }
                }
                let major = entry.header().device_major().ok().flatten().unwrap_or(0);
                let minor = entry.header().device_minor().ok().flatten().unwrap_or(0);
                dev = rustix::fs::makedev(major, minor);
            }
            self.create_replacing(parent.as_fd(), &base, || {
                rustix::fs::mknodat(&parent, &base, node, Mode::from_raw_mode(0o600), dev)
            })
            .map_err(op_err("create device node"))?;
            let fd = self
                .open_path(parent.as_fd(), &base)
                .map_err(op_err("open device node"))?;
            if self.opts.chown {
                chown_fd(fd.as_fd(), meta.uid, meta.gid).map_err(op_err("change owner"))?;
            }
            match wharf_sys::inode::chmod(fd.as_fd(), meta.mode) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                    // Before Linux 6.6: the node was created by this thread
                    // a moment ago in a private staging directory.
                    rustix::fs::chmodat(
                        &parent,
                        &base,
                        Mode::from_raw_mode(meta.mode),
                        AtFlags::empty(),
                    )
                    .map_err(|e| op_err("change mode")(errno(e)))?;
                }
                Err(e) => return Err(op_err("change mode")(e)),
            }
            self.set_xattrs_at(parent.as_fd(), &base, &meta, name);
            rustix::fs::utimensat(&fd, "", &meta.times, AtFlags::EMPTY_PATH)
                .map_err(|e| op_err("set times")(errno(e)))?;
            Ok(())
        })();
        self.parent_cache = Some((parent_path, parent));
        result
    }

    fn open_path(&self, parent: BorrowedFd<'_>, base: &Path) -> io::Result<OwnedFd> {
        Ok(rustix::fs::openat(
            parent,
            base,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?)
    }

    /// Owner, then mode (chown clears setuid), then xattrs, on an open
    /// file or directory.
    fn apply_fd(&self, fd: BorrowedFd<'_>, meta: &Meta, name: &str) -> Result<(), ImageError> {
        let op_err = |op: &'static str| {
            let name = name.to_string();
            move |source: io::Error| ImageError::UnpackEntry {
                entry: name,
                op,
                source,
            }
        };
        if self.opts.chown {
            rustix::fs::fchown(
                fd,
                Some(rustix::fs::Uid::from_raw(meta.uid)),
                Some(rustix::fs::Gid::from_raw(meta.gid)),
            )
            .map_err(|e| op_err("change owner")(errno(e)))?;
        }
        rustix::fs::fchmod(fd, Mode::from_raw_mode(meta.mode))
            .map_err(|e| op_err("change mode")(errno(e)))?;
        for (key, value) in &meta.xattrs {
            match rustix::fs::fsetxattr(fd, key.as_str(), value, rustix::fs::XattrFlags::empty()) {
                Ok(()) => {}
                Err(rustix::io::Errno::OPNOTSUPP) => {
                    tracing::warn!(
                        entry = name,
                        xattr = key.as_str(),
                        "filesystem does not support this xattr"
                    );
                }
                Err(e) => return Err(op_err("set xattr")(errno(e))),
            }
        }
        Ok(())
    }

    /// Xattrs on a symlink or device node, named by one component in its
    /// directory and never followed; a refusal (`user.*` on symlinks,
    /// kernels before 6.13) is logged.
    fn set_xattrs_at(&self, parent: BorrowedFd<'_>, base: &Path, meta: &Meta, name: &str) {
        for (key, value) in &meta.xattrs {
            if let Err(e) = wharf_sys::inode::set_xattr_at(parent, base.as_os_str(), key, value) {
                tracing::warn!(entry = name, xattr = key.as_str(), error = %e, "xattr not set");
            }
        }
    }

    /// Sets directory times, deepest first, once nothing else will change
    /// them.
    fn finish(&mut self) -> Result<(), ImageError> {
        self.parent_cache = None;
        let mut dirs = std::mem::take(&mut self.dir_times);
        dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
        for (path, times) in dirs {
            let fd = match self.root.resolve_nofollow(&Path::new("/").join(&path)) {
                Ok(fd) => fd,
                // Replaced or whited out by a later entry.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(ImageError::UnpackEntry {
                        entry: path.display().to_string(),
                        op: "open directory",
                        source: e,
                    })
                }
            };
            rustix::fs::utimensat(&fd, "", &times, AtFlags::EMPTY_PATH).map_err(|e| {
                ImageError::UnpackEntry {
                    entry: path.display().to_string(),
                    op: "set times",
                    source: e.into(),
                }
            })?;
        }
        Ok(())
    }
}

fn chown_fd(fd: BorrowedFd<'_>, uid: u32, gid: u32) -> io::Result<()> {
    Ok(rustix::fs::chownat(
        fd,
        "",
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(gid)),
        AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_names() {
        assert_eq!(clean_name(b"./a/b/").unwrap(), PathBuf::from("a/b"));
        assert_eq!(
            clean_name(b"/etc/passwd").unwrap(),
            PathBuf::from("etc/passwd")
        );
        assert_eq!(clean_name(b"a/../b").unwrap(), PathBuf::from("b"));
        assert_eq!(clean_name(b"./").unwrap(), PathBuf::new());
        assert_eq!(
            clean_name(b"../etc/passwd").unwrap_err(),
            "name escapes the layer directory through '..'"
        );
        assert_eq!(
            clean_name(b"a/../../b").unwrap_err(),
            "name escapes the layer directory through '..'"
        );
        assert!(clean_name(&[b'a'; 300]).is_err());
        assert!(clean_name(&b"a/".repeat(2100)).is_err());
    }

    #[test]
    fn whiteout_plans() {
        let p = |s: &str| plan_whiteout(Path::new(s));
        assert_eq!(p("a/b").unwrap(), WhiteoutPlan::Create("a/b".into()));
        assert_eq!(p("a/.wh.b").unwrap(), WhiteoutPlan::Whiteout("a/b".into()));
        assert_eq!(p(".wh.top").unwrap(), WhiteoutPlan::Whiteout("top".into()));
        assert_eq!(
            p("a/.wh..wh..opq").unwrap(),
            WhiteoutPlan::Opaque("a".into())
        );
        assert_eq!(p(".wh..wh..opq").unwrap(), WhiteoutPlan::Opaque("".into()));
        assert_eq!(p("a/.wh..wh.plnk").unwrap(), WhiteoutPlan::Ignore);
        assert_eq!(
            p("a/.wh...").unwrap_err(),
            "whiteout of '.', '..' or an empty name"
        );
        assert_eq!(
            p("a/.wh.").unwrap_err(),
            "whiteout of '.', '..' or an empty name"
        );
        assert_eq!(
            p("a/.wh..").unwrap_err(),
            "whiteout of '.', '..' or an empty name"
        );
        assert_eq!(p("a/.whx").unwrap(), WhiteoutPlan::Create("a/.whx".into()));
    }

    #[test]
    fn pax_times() {
        let t = parse_pax_time("1700000000.123456789").unwrap();
        assert_eq!((t.tv_sec, t.tv_nsec), (1_700_000_000, 123_456_789));
        let t = parse_pax_time("1700000000.5").unwrap();
        assert_eq!((t.tv_sec, t.tv_nsec), (1_700_000_000, 500_000_000));
        let t = parse_pax_time("12").unwrap();
        assert_eq!((t.tv_sec, t.tv_nsec), (12, 0));
        let t = parse_pax_time("-1.25").unwrap();
        assert_eq!((t.tv_sec, t.tv_nsec), (-2, 750_000_000));
        assert!(parse_pax_time("1.2x").is_none());
        assert!(parse_pax_time("x").is_none());
    }

    fn tar_with_pax(pax_len: usize) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::XHeader);
        let record = {
            let body = format!("comment={}\n", "x".repeat(pax_len));
            let mut len = body.len() + 3;
            loop {
                let s = format!("{len} {body}");
                if s.len() == len {
                    break s;
                }
                len = s.len();
            }
        };
        h.set_size(record.len() as u64);
        h.set_cksum();
        b.append(&h, record.as_bytes()).unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_path("f").unwrap();
        h.set_size(3);
        h.set_mode(0o644);
        h.set_cksum();
        b.append(&h, &b"abc"[..]).unwrap();
        b.into_inner().unwrap()
    }

    #[test]
    fn extended_header_guard_refuses_large_pax_before_buffering() {
        let opts = UnpackOptions {
            max_extended_header: 4096,
            ..UnpackOptions::default()
        };
        let blob = Digest::sha256_of(b"label");
        let small = tar_with_pax(100);
        let (d, size) = digest_layer(&small[..], Compression::None, &blob, &opts).unwrap();
        assert_eq!(d, Digest::sha256_of(&small));
        assert_eq!(size, small.len() as u64);
        let big = tar_with_pax(10_000);
        let mut archive = tar::Archive::new(ExtendedHeaderGuard::new(&big[..], 4096));
        let err = archive
            .entries()
            .unwrap()
            .map(|e| e.map(|_| ()))
            .collect::<io::Result<Vec<()>>>()
            .unwrap_err();
        assert_eq!(err.to_string(), "extended header exceeds the limit of 4096");
        // The guard follows PAX size overrides like the crate does.
        let mut archive = tar::Archive::new(ExtendedHeaderGuard::new(&small[..], 4096));
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, vec!["f"]);
    }

    #[test]
    fn decompression_bomb_hits_the_size_limit() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&vec![0u8; 8 << 20]).unwrap();
        let gz = enc.finish().unwrap();
        let opts = UnpackOptions {
            max_size: 1 << 20,
            ..UnpackOptions::default()
        };
        let blob = Digest::sha256_of(&gz);
        let err = digest_layer(&gz[..], Compression::Gzip, &blob, &opts).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("layer {blob}: uncompressed size exceeds the limit of 1048576")
        );
    }

    #[test]
    fn multi_member_gzip_and_multi_frame_zstd() {
        let mut all = Vec::new();
        let mut expected = Vec::new();
        for part in [b"hello ".as_slice(), b"world".as_slice()] {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(part).unwrap();
            all.extend(enc.finish().unwrap());
            expected.extend_from_slice(part);
        }
        let blob = Digest::sha256_of(&all);
        let opts = UnpackOptions::default();
        let (d, n) = digest_layer(&all[..], Compression::Gzip, &blob, &opts).unwrap();
        assert_eq!((d, n), (Digest::sha256_of(&expected), 11));
        let mut z = zstd::encode_all(&b"hello "[..], 3).unwrap();
        z.extend(zstd::encode_all(&b"world"[..], 3).unwrap());
        let (d, _) = digest_layer(&z[..], Compression::Zstd, &blob, &opts).unwrap();
        assert_eq!(d, Digest::sha256_of(b"hello world"));
    }

    /// Go's archive/tar reads blank numeric fields as 0 and some writers
    /// emit them; garbage in the same field is still refused.
    #[test]
    fn blank_numeric_header_fields_read_as_zero() {
        let layer = |uid: [u8; 8]| {
            let mut h = tar::Header::new_gnu();
            h.set_path("f").unwrap();
            h.set_size(2);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            h.as_old_mut().uid = uid;
            h.set_cksum();
            let mut b = tar::Builder::new(Vec::new());
            b.append(&h, &b"hi"[..]).unwrap();
            b.into_inner().unwrap()
        };
        let unpack = |tar: &[u8]| {
            let dir = tempfile::tempdir().unwrap();
            let dest = dir.path().join("layer");
            fs_err::create_dir(&dest).unwrap();
            let blob = Digest::sha256_of(tar);
            let r = unpack_layer(
                tar,
                Compression::None,
                &dest,
                &blob,
                &UnpackOptions::default(),
            );
            let content = fs_err::read(dest.join("f")).ok();
            (r, content)
        };
        let (r, content) = unpack(&layer([0; 8]));
        r.unwrap();
        assert_eq!(content.as_deref(), Some(&b"hi"[..]));
        let (r, _) = unpack(&layer(*b"zzzzzzz\0"));
        assert!(r.unwrap_err().to_string().contains("invalid uid"));
    }
}
