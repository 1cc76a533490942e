//! Walks over volume and image trees on file descriptors: copy-up of an
//! image directory into a volume, and a volume's disk usage. Both trees are
//! hostile (image content, or what containers wrote into the volume): every
//! entry is opened relative to its parent's fd with `O_NOFOLLOW`, so a
//! symlink is never followed and a swapped-in one fails the open.

use std::collections::HashSet;
use std::ffi::{CStr, OsStr};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, Stat, Timespec, Timestamps};

/// An I/O failure and the path (inside the walked tree) it happened at.
#[derive(Debug)]
pub(crate) struct WalkError {
    pub(crate) path: PathBuf,
    pub(crate) source: io::Error,
}

fn at(path: &Path) -> impl FnOnce(rustix::io::Errno) -> WalkError + '_ {
    move |e| WalkError {
        path: path.to_path_buf(),
        source: e.into(),
    }
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Opens the directory `name` in `dir`, never following a symlink.
pub(crate) fn open_dir(dir: BorrowedFd<'_>, name: &CStr) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(dir, name, DIR_FLAGS, Mode::empty())
}

/// The names in `dir`, without `.` and `..`.
fn entries(dir: BorrowedFd<'_>) -> rustix::io::Result<Vec<std::ffi::CString>> {
    let mut out = Vec::new();
    let mut iter = Dir::read_from(dir)?;
    while let Some(entry) = iter.read() {
        let entry = entry?;
        let name = entry.file_name();
        if name != c"." && name != c".." {
            out.push(name.to_owned());
        }
    }
    Ok(out)
}

/// Whether the directory `dir` has no entries.
pub(crate) fn is_empty(dir: BorrowedFd<'_>) -> rustix::io::Result<bool> {
    Ok(entries(dir)?.is_empty())
}

fn child(path: &Path, name: &CStr) -> PathBuf {
    path.join(OsStr::from_bytes(name.to_bytes()))
}

fn times(st: &Stat) -> Timestamps {
    Timestamps {
        last_access: Timespec {
            tv_sec: st.st_atime as _,
            tv_nsec: st.st_atime_nsec as _,
        },
        last_modification: Timespec {
            tv_sec: st.st_mtime as _,
            tv_nsec: st.st_mtime_nsec as _,
        },
    }
}

/// Gives the inode `fd` the owner, mode and times of `st`. Owner first:
/// `chown` clears set-id bits.
pub(crate) fn copy_metadata(fd: BorrowedFd<'_>, st: &Stat) -> rustix::io::Result<()> {
    rustix::fs::fchown(
        fd,
        Some(rustix::fs::Uid::from_raw(st.st_uid)),
        Some(rustix::fs::Gid::from_raw(st.st_gid)),
    )?;
    rustix::fs::fchmod(fd, Mode::from_raw_mode(st.st_mode & 0o7777))?;
    rustix::fs::futimens(fd, &times(st))
}

/// Copies the contents of directory `src` into directory `dst`: regular
/// files, directories and symlinks (as links), with mode, owner and times.
/// Other file types (devices, fifos, sockets) are skipped. `path` names
/// `src` in error messages.
pub(crate) fn copy_dir(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    path: &Path,
) -> Result<(), WalkError> {
    for name in entries(src).map_err(at(path))? {
        let path = child(path, &name);
        let st = rustix::fs::statat(src, name.as_c_str(), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(at(&path))?;
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => {
                let from = open_dir(src, &name).map_err(at(&path))?;
                let st = rustix::fs::fstat(&from).map_err(at(&path))?;
                rustix::fs::mkdirat(dst, name.as_c_str(), Mode::RWXU).map_err(at(&path))?;
                let to = open_dir(dst, &name).map_err(at(&path))?;
                copy_dir(from.as_fd(), to.as_fd(), &path)?;
                // After the children: adding them changed the mtime.
                copy_metadata(to.as_fd(), &st).map_err(at(&path))?;
            }
            FileType::RegularFile => {
                // NONBLOCK: a fifo swapped in after statat must not hang us.
                let from = rustix::fs::openat(
                    src,
                    name.as_c_str(),
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(at(&path))?;
                let st = rustix::fs::fstat(&from).map_err(at(&path))?;
                if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
                    continue;
                }
                let to = rustix::fs::openat(
                    dst,
                    name.as_c_str(),
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::RUSR | Mode::WUSR,
                )
                .map_err(at(&path))?;
                let mut reader = std::fs::File::from(from);
                let mut writer = std::fs::File::from(to);
                io::copy(&mut reader, &mut writer).map_err(|source| WalkError {
                    path: path.clone(),
                    source,
                })?;
                copy_metadata(writer.as_fd(), &st).map_err(at(&path))?;
            }
            FileType::Symlink => {
                let target =
                    rustix::fs::readlinkat(src, name.as_c_str(), Vec::new()).map_err(at(&path))?;
                rustix::fs::symlinkat(target.as_c_str(), dst, name.as_c_str())
                    .map_err(at(&path))?;
                rustix::fs::chownat(
                    dst,
                    name.as_c_str(),
                    Some(rustix::fs::Uid::from_raw(st.st_uid)),
                    Some(rustix::fs::Gid::from_raw(st.st_gid)),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(at(&path))?;
                rustix::fs::utimensat(dst, name.as_c_str(), &times(&st), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(at(&path))?;
            }
            _ => tracing::warn!(path = %path.display(), "copy-up skips a special file"),
        }
    }
    Ok(())
}

/// Bytes used by the tree under directory `dir`: the sizes of everything
/// but directories, each hard-linked inode once (Docker's `du`).
pub(crate) fn usage(dir: BorrowedFd<'_>, path: &Path) -> Result<u64, WalkError> {
    let mut seen = HashSet::new();
    usage_in(dir, path, &mut seen)
}

fn usage_in(
    dir: BorrowedFd<'_>,
    path: &Path,
    seen: &mut HashSet<(u64, u64)>,
) -> Result<u64, WalkError> {
    let mut total = 0u64;
    for name in entries(dir).map_err(at(path))? {
        let path = child(path, &name);
        let st = match rustix::fs::statat(dir, name.as_c_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            // Removed by a container while we walk.
            Err(rustix::io::Errno::NOENT) => continue,
            Err(e) => return Err(at(&path)(e)),
        };
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            match open_dir(dir, &name) {
                Ok(sub) => total += usage_in(sub.as_fd(), &path, seen)?,
                Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) => {}
                Err(e) => return Err(at(&path)(e)),
            }
        } else if st.st_nlink <= 1 || seen.insert((st.st_dev, st.st_ino)) {
            total += u64::try_from(st.st_size).unwrap_or(0);
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn open(path: &Path) -> OwnedFd {
        rustix::fs::open(path, DIR_FLAGS, Mode::empty()).unwrap()
    }

    #[test]
    fn copies_files_dirs_and_links_with_mode_and_mtime() {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        fs_err::create_dir(src.path().join("sub")).unwrap();
        fs_err::write(src.path().join("sub/file"), b"hello").unwrap();
        fs_err::set_permissions(
            src.path().join("sub/file"),
            std::fs::Permissions::from_mode(0o640),
        )
        .unwrap();
        std::os::unix::fs::symlink("/etc/passwd", src.path().join("link")).unwrap();
        let old = Timestamps {
            last_access: Timespec {
                tv_sec: 1_000_000,
                tv_nsec: 0,
            },
            last_modification: Timespec {
                tv_sec: 1_000_000,
                tv_nsec: 5,
            },
        };
        rustix::fs::utimensat(
            rustix::fs::CWD,
            src.path().join("sub/file"),
            &old,
            AtFlags::empty(),
        )
        .unwrap();
        rustix::fs::utimensat(
            rustix::fs::CWD,
            src.path().join("sub"),
            &old,
            AtFlags::empty(),
        )
        .unwrap();

        copy_dir(
            open(src.path()).as_fd(),
            open(dst.path()).as_fd(),
            Path::new("/data"),
        )
        .unwrap();

        let file = fs_err::metadata(dst.path().join("sub/file")).unwrap();
        assert_eq!(fs_err::read(dst.path().join("sub/file")).unwrap(), b"hello");
        assert_eq!(file.mode() & 0o7777, 0o640);
        assert_eq!((file.mtime(), file.mtime_nsec()), (1_000_000, 5));
        assert_eq!(
            fs_err::metadata(dst.path().join("sub")).unwrap().mtime(),
            1_000_000
        );
        assert_eq!(
            fs_err::read_link(dst.path().join("link")).unwrap(),
            Path::new("/etc/passwd")
        );
        assert_eq!(
            usage(open(dst.path()).as_fd(), dst.path()).unwrap(),
            5 + "/etc/passwd".len() as u64
        );
        assert!(!is_empty(open(dst.path()).as_fd()).unwrap());
    }

    #[test]
    fn usage_counts_hard_links_once() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::write(dir.path().join("a"), vec![0u8; 1000]).unwrap();
        fs_err::hard_link(dir.path().join("a"), dir.path().join("b")).unwrap();
        fs_err::create_dir(dir.path().join("d")).unwrap();
        fs_err::write(dir.path().join("d/c"), vec![0u8; 24]).unwrap();
        assert_eq!(usage(open(dir.path()).as_fd(), dir.path()).unwrap(), 1024);
    }
}
