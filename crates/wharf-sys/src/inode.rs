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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::fs::PermissionsExt;

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
