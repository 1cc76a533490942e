//! The changes in a writable overlay layer as an OCI layer tar.
//!
//! The upper directory is walked through descriptors in bytewise name
//! order (so the same tree always gives the same tar): overlayfs whiteouts
//! (character device 0:0) become `.wh.<name>` entries, an opaque directory
//! (`trusted.overlay.opaque=y`) is followed by `<dir>/.wh..wh..opq`, a
//! second name of an inode becomes a hardlink entry, xattrs go in PAX
//! records (overlayfs' own `trusted.overlay.*` are left out).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use crate::digest::{Algorithm, Digest, Digester};
use crate::error::ImageError;
use crate::tree;
use crate::unpack::{WHITEOUT_OPAQUE, WHITEOUT_PREFIX};

/// What a diff produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffStats {
    /// Digest of the tar written (the layer's diff id).
    pub diff_id: Digest,
    /// Bytes written.
    pub size: u64,
    /// Tar entries written (whiteouts included).
    pub entries: u64,
}

struct HashingWriter<W> {
    inner: W,
    digester: Digester,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.digester.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

struct Walker<W: Write> {
    builder: tar::Builder<HashingWriter<W>>,
    links: HashMap<(u64, u64), PathBuf>,
    entries: u64,
}

/// Writes the changes in `upper` (an overlay upper directory, trusted
/// path, hostile content) to `out` as an uncompressed layer tar.
pub fn write_diff(upper: &Path, out: impl Write) -> Result<DiffStats, ImageError> {
    let root =
        tree::open_dir(upper).map_err(|e| ImageError::io("open upper directory", upper, e))?;
    let mut walker = Walker {
        builder: tar::Builder::new(HashingWriter {
            inner: out,
            digester: Digester::new(Algorithm::Sha256),
        }),
        links: HashMap::new(),
        entries: 0,
    };
    walker.builder.mode(tar::HeaderMode::Complete);
    walker.builder.follow_symlinks(false);
    walker
        .dir(root.as_fd(), Path::new(""))
        .map_err(|(path, e)| ImageError::io("diff", upper.join(path), e))?;
    let entries = walker.entries;
    let hashing = walker
        .builder
        .into_inner()
        .map_err(|e| ImageError::io("write diff", upper, e))?;
    let size = hashing.digester.written();
    Ok(DiffStats {
        diff_id: hashing.digester.finish(),
        size,
        entries,
    })
}

type WalkError = (PathBuf, io::Error);

fn at(path: &Path) -> impl Fn(io::Error) -> WalkError + '_ {
    move |e| (path.to_path_buf(), e)
}

fn errno_at(path: &Path) -> impl Fn(rustix::io::Errno) -> WalkError + '_ {
    move |e| (path.to_path_buf(), e.into())
}

impl<W: Write> Walker<W> {
    fn header(&self, st: &rustix::fs::Stat, kind: tar::EntryType) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(st.st_mode & 0o7777);
        h.set_uid(u64::from(st.st_uid));
        h.set_gid(u64::from(st.st_gid));
        h.set_mtime(u64::try_from(st.st_mtime).unwrap_or(0));
        h.set_size(0);
        h
    }

    fn pax(&mut self, fd: BorrowedFd<'_>, path: &Path) -> Result<(), WalkError> {
        let xattrs: Vec<(String, Vec<u8>)> = tree::xattrs(fd)
            .map_err(at(path))?
            .into_iter()
            .filter(|(k, _)| !k.starts_with("trusted.overlay.") && !k.starts_with("user.overlay."))
            .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v))
            .collect();
        if !xattrs.is_empty() {
            self.builder
                .append_pax_extensions(xattrs.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
                .map_err(at(path))?;
        }
        Ok(())
    }

    fn dir(&mut self, dir: BorrowedFd<'_>, rel: &Path) -> Result<(), WalkError> {
        for name in tree::list_sorted(dir).map_err(at(rel))? {
            let path = rel.join(&name);
            let st = rustix::fs::statat(dir, &name, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(errno_at(&path))?;
            if tree::is_whiteout(&st) {
                let mut wh_name = WHITEOUT_PREFIX.as_bytes().to_vec();
                wh_name.extend_from_slice(name.as_bytes());
                let mut h = self.header(&st, tar::EntryType::Regular);
                h.set_mode(0o644);
                self.builder
                    .append_data(&mut h, rel.join(OsStr::from_bytes(&wh_name)), io::empty())
                    .map_err(at(&path))?;
                self.entries += 1;
                continue;
            }
            match FileType::from_raw_mode(st.st_mode) {
                FileType::Directory => {
                    let sub = tree::open_dir_at(dir, &name).map_err(at(&path))?;
                    self.pax(sub.as_fd(), &path)?;
                    let mut h = self.header(&st, tar::EntryType::Directory);
                    self.builder
                        .append_data(&mut h, &path, io::empty())
                        .map_err(at(&path))?;
                    self.entries += 1;
                    if tree::is_opaque(sub.as_fd()).map_err(at(&path))? {
                        let mut h = self.header(&st, tar::EntryType::Regular);
                        h.set_mode(0o644);
                        self.builder
                            .append_data(&mut h, path.join(WHITEOUT_OPAQUE), io::empty())
                            .map_err(at(&path))?;
                        self.entries += 1;
                    }
                    self.dir(sub.as_fd(), &path)?;
                }
                kind => {
                    if st.st_nlink > 1 {
                        let id = (st.st_dev, st.st_ino);
                        if let Some(first) = self.links.get(&id) {
                            let first = first.clone();
                            let mut h = self.header(&st, tar::EntryType::Link);
                            self.builder
                                .append_link(&mut h, &path, &first)
                                .map_err(at(&path))?;
                            self.entries += 1;
                            continue;
                        }
                        self.links.insert(id, path.clone());
                    }
                    if self.leaf(dir, &name, &path, &st, kind)? {
                        self.entries += 1;
                    }
                }
            }
        }
        Ok(())
    }

    fn leaf(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        path: &Path,
        st: &rustix::fs::Stat,
        kind: FileType,
    ) -> Result<bool, WalkError> {
        match kind {
            FileType::RegularFile => {
                let fd = rustix::fs::openat(
                    dir,
                    name,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(errno_at(path))?;
                self.pax(fd.as_fd(), path)?;
                let mut h = self.header(st, tar::EntryType::Regular);
                h.set_size(st.st_size as u64);
                let file = std::fs::File::from(fd);
                self.builder
                    .append_data(&mut h, path, file)
                    .map_err(at(path))?;
                Ok(true)
            }
            FileType::Symlink => {
                let target =
                    rustix::fs::readlinkat(dir, name, Vec::new()).map_err(errno_at(path))?;
                let mut h = self.header(st, tar::EntryType::Symlink);
                self.builder
                    .append_link(&mut h, path, OsStr::from_bytes(target.as_bytes()))
                    .map_err(at(path))?;
                Ok(true)
            }
            FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo => {
                let entry = match kind {
                    FileType::CharacterDevice => tar::EntryType::Char,
                    FileType::BlockDevice => tar::EntryType::Block,
                    _ => tar::EntryType::Fifo,
                };
                let mut h = self.header(st, entry);
                if kind != FileType::Fifo {
                    h.set_device_major(rustix::fs::major(st.st_rdev))
                        .map_err(at(path))?;
                    h.set_device_minor(rustix::fs::minor(st.st_rdev))
                        .map_err(at(path))?;
                }
                self.builder
                    .append_data(&mut h, path, io::empty())
                    .map_err(at(path))?;
                Ok(true)
            }
            _ => {
                tracing::warn!(path = %path.display(), "skipping socket in diff");
                Ok(false)
            }
        }
    }
}
