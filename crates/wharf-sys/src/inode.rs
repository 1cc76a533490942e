//! Metadata changes on inodes that cannot be opened for I/O (symlinks,
//! device nodes, fifos): the mode of an `O_PATH` descriptor
//! (`fchmodat2(AT_EMPTY_PATH)`), and extended attributes of one name in a
//! directory descriptor, never following a symlink (`setxattrat`).
//! Callers resolve the directory once (inside a [`crate::Root`]) and pass a
//! single path component.

#![allow(
    unsafe_code,
    reason = "fchmodat2(2) and setxattrat(2) have no wrapper in rustix"
)]

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;

/// `setxattrat(2)` (Linux 6.13); the number is the same on every
/// architecture since the syscall tables were unified.
const SYS_SETXATTRAT: libc::c_long = 463;

/// `struct xattr_args` of `setxattrat(2)`.
#[repr(C)]
struct XattrArgs {
    value: u64,
    size: u32,
    flags: u32,
}

/// Sets the permission bits (and setuid/setgid/sticky) of the inode `fd`
/// refers to: `fchmodat2(fd, "", mode, AT_EMPTY_PATH)` (Linux 6.6). Works on
/// `O_PATH` descriptors; `ENOSYS` on older kernels.
pub fn chmod(fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
    let empty = c"";
    // SAFETY: fd is a live descriptor borrowed for the call; `empty` is a
    // NUL-terminated static string; the kernel reads nothing else.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fchmodat2,
            fd.as_raw_fd(),
            empty.as_ptr(),
            mode as libc::mode_t,
            libc::AT_EMPTY_PATH,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets the extended attribute `key` to `value` on `name` in the directory
/// `dir`, never following a symlink: `setxattrat(dir, name,
/// AT_SYMLINK_NOFOLLOW, …)` (Linux 6.13; `ENOSYS` before). `name` must be a
/// single path component (`EINVAL` otherwise), so nothing but the directory
/// descriptor takes part in the lookup.
pub fn set_xattr_at(dir: BorrowedFd<'_>, name: &OsStr, key: &str, value: &[u8]) -> io::Result<()> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.contains(&b'/') || bytes == b"." || bytes == b".." {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    let path = CString::new(bytes).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let key = CString::new(key).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let size = u32::try_from(value.len()).map_err(|_| io::Error::from_raw_os_error(libc::E2BIG))?;
    let args = XattrArgs {
        value: value.as_ptr() as u64,
        size,
        flags: 0,
    };
    // SAFETY: dir is a live descriptor borrowed for the call; `path` and
    // `key` are NUL-terminated strings, `args` points at `value` with its
    // exact length; all outlive the call and the kernel only reads them.
    let rc = unsafe {
        libc::syscall(
            SYS_SETXATTRAT,
            dir.as_raw_fd(),
            path.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
            key.as_ptr(),
            &args as *const XattrArgs,
            std::mem::size_of::<XattrArgs>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Marks the directory `dir` as the top of unrelated directory trees
/// (`FS_TOPDIR_FL`, `chattr +T`): ext2/3/4's Orlov allocator then spreads
/// its new subdirectories over the block groups (the emptiest, from a
/// point hashed from the name) instead of keeping them in the parent's.
/// For directories of containers, each made and deleted with its files in
/// a second: kept in one group, every new inode there is found only after
/// the scan skips the inodes freed in the last minute (a journal-less ext4
/// does not reuse those; `recently_deleted` in fs/ext4/ialloc.c). Best
/// effort: other filesystems (tmpfs, btrfs, xfs) refuse the flag and
/// nothing changes. Whether the flag is set.
pub fn spread_subdirectories(dir: &std::path::Path) -> bool {
    use rustix::fs::{IFlags, Mode, OFlags};
    let Ok(fd) = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return false;
    };
    match rustix::fs::ioctl_getflags(&fd) {
        Ok(flags) if flags.contains(IFlags::TOPDIR) => true,
        Ok(flags) => rustix::fs::ioctl_setflags(&fd, flags | IFlags::TOPDIR).is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn spread_subdirectories_sets_the_topdir_flag_where_the_filesystem_has_it() {
        let dir = tempfile::tempdir().unwrap();
        let ext4 = rustix::fs::statfs(dir.path()).unwrap().f_type == 0xEF53;
        let set = spread_subdirectories(dir.path());
        assert!(set || !ext4, "ext4 has the flag");
        if set {
            let fd = rustix::fs::open(
                dir.path(),
                rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY,
                rustix::fs::Mode::empty(),
            )
            .unwrap();
            let flags = rustix::fs::ioctl_getflags(&fd).unwrap();
            assert!(flags.contains(rustix::fs::IFlags::TOPDIR));
            // Again: already set.
            assert!(spread_subdirectories(dir.path()));
        }
        // A missing directory, a file: nothing happens.
        assert!(!spread_subdirectories(&dir.path().join("missing")));
        fs_err::write(dir.path().join("file"), b"").unwrap();
        assert!(!spread_subdirectories(&dir.path().join("file")));
    }

    #[test]
    fn chmod_through_o_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs_err::write(&path, b"x").unwrap();
        let fd = rustix::fs::open(
            &path,
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .unwrap();
        match chmod(fd.as_fd(), 0o4711) {
            Ok(()) => {
                let mode = fs_err::metadata(&path).unwrap().permissions().mode();
                assert_eq!(mode & 0o7777, 0o4711);
            }
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::ENOSYS)),
        }
    }

    #[test]
    fn xattr_on_a_symlink_itself() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        fs_err::write(&target, b"x").unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join("l")).unwrap();
        let dirfd = rustix::fs::open(
            dir.path(),
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .unwrap();
        assert_eq!(
            set_xattr_at(dirfd.as_fd(), OsStr::new("a/b"), "trusted.x", b"1")
                .unwrap_err()
                .kind(),
            io::ErrorKind::InvalidInput
        );
        match set_xattr_at(dirfd.as_fd(), OsStr::new("l"), "trusted.wharf", b"1") {
            Ok(()) => {
                let mut buf = [0u8; 8];
                let n = rustix::fs::lgetxattr(dir.path().join("l"), "trusted.wharf", &mut buf[..])
                    .unwrap();
                assert_eq!(&buf[..n], b"1");
                // The symlink's target was not touched.
                assert!(rustix::fs::getxattr(&target, "trusted.wharf", &mut buf[..]).is_err());
            }
            // Not root, or a kernel before 6.13.
            Err(e) => assert!(
                matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::ENOSYS)),
                "{e}"
            ),
        }
    }
}
