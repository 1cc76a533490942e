//! Running the Wharf binary from a sealed, read-only image (CVE-2019-5736).
//!
//! A process that enters a container must not be executing the host's
//! writable binary: a container could reopen `/proc/<pid>/exe` (or exec a
//! `#!/proc/self/exe` script) and overwrite the runtime on the host. Before a
//! runtime verb forks into a container, [`ensure_sealed`] re-executes the
//! binary from a detached, read-only clone of its own mount (`open_tree` +
//! `mount_setattr(MOUNT_ATTR_RDONLY)`). The clone is in no mount namespace, so
//! nobody can remount it writable, and no byte is copied; a sealed `memfd`
//! copy is the fallback where the mount API is unavailable (rootless).

#![allow(
    unsafe_code,
    reason = "execveat(2) with AT_EMPTY_PATH replaces the process image"
)]

use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{Mode, OFlags, SealFlags};

use crate::mount::{clone_tree, set_attrs, MountAttrs, ATTR_NODEV, ATTR_NOSUID, ATTR_RDONLY};

/// Set in the environment of the sealed re-exec to detect a re-exec that did
/// not take effect (it is never trusted as proof of sealing).
const REEXEC_MARKER: &str = "_WHARF_SEALED_REEXEC";

/// How the running binary is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealState {
    /// Executing from a read-only mount.
    ReadOnlyMount,
    /// Executing from a memfd sealed against writes.
    SealedMemfd,
    /// Executing from a writable file.
    Writable,
}

/// Reports whether the running executable can be written through
/// `/proc/self/exe`.
pub fn seal_state() -> io::Result<SealState> {
    let exe = rustix::fs::open(
        "/proc/self/exe",
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let vfs = rustix::fs::fstatvfs(&exe)?;
    if vfs.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY) {
        return Ok(SealState::ReadOnlyMount);
    }
    match rustix::fs::fcntl_get_seals(&exe) {
        Ok(seals) if seals.contains(SealFlags::WRITE | SealFlags::SEAL) => {
            Ok(SealState::SealedMemfd)
        }
        _ => Ok(SealState::Writable),
    }
}

/// Makes sure the process runs from a sealed image, re-executing itself with
/// the same arguments and environment when it does not. Returns only when
/// the image is sealed (or with an error).
pub fn ensure_sealed() -> io::Result<SealState> {
    let state = seal_state()?;
    if state != SealState::Writable {
        return Ok(state);
    }
    if std::env::var_os(REEXEC_MARKER).is_some() {
        return Err(io::Error::other(
            "re-executed from a sealed image, but /proc/self/exe is still writable",
        ));
    }
    let sealed = sealed_image()?;
    let args: Vec<OsString> = std::env::args_os().collect();
    let mut env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    env.push((REEXEC_MARKER.into(), "1".into()));
    Err(exec_fd(sealed.as_fd(), &args, &env))
}

/// Builds a sealed image of the running binary: a read-only detached clone
/// of the file's mount, or a sealed memfd copy (close-on-exec). A process
/// spawned from it (`/proc/self/fd/N` as the program) starts sealed, so
/// [`ensure_sealed`] in it has nothing to re-execute.
///
/// A process that already runs sealed (a monitor spawned from a sealed
/// image) gets its own image back: it cannot be written, and cloning a
/// detached mount or copying across mounts would fail.
pub fn sealed_image() -> io::Result<OwnedFd> {
    if seal_state()? != SealState::Writable {
        return Ok(rustix::fs::open(
            "/proc/self/exe",
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
        )?);
    }
    sealed_image_of(Path::new("/proc/self/exe"))
}

/// A sealed image of the executable at `path`, as [`sealed_image`].
pub fn sealed_image_of(path: &Path) -> io::Result<OwnedFd> {
    let exe = rustix::fs::open(path, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())?;
    match readonly_clone(exe.as_fd()) {
        Ok(fd) => Ok(fd),
        Err(err) => {
            tracing::debug!(error = %err, "read-only clone of the binary failed; copying to a sealed memfd");
            memfd_copy(exe.as_fd())
        }
    }
}

fn readonly_clone(exe: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let tree = clone_tree(exe, Path::new(""), false)?;
    set_attrs(
        tree.as_fd(),
        false,
        MountAttrs {
            set: ATTR_RDONLY | ATTR_NOSUID | ATTR_NODEV,
            ..MountAttrs::default()
        },
        None,
    )?;
    // The tree is an O_PATH descriptor of the file on the read-only clone;
    // it is executed directly. When the exec closes it (CLOEXEC) the detached
    // mount dissolves: the running image keeps it alive but unreachable.
    Ok(tree)
}

fn memfd_copy(exe: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let src = rustix::fs::open(
        format!("/proc/self/fd/{}", exe.as_raw_fd()),
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let memfd = rustix::fs::memfd_create(
        "wharf",
        rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING,
    )?;
    let len = rustix::fs::fstat(&src)?.st_size as usize;
    let mut copied = 0usize;
    while copied < len {
        let n = match rustix::fs::copy_file_range(&src, None, &memfd, None, len - copied) {
            Ok(n) => n,
            // Older kernels refuse copies between file systems.
            Err(rustix::io::Errno::XDEV) if copied == 0 => {
                let mut from = std::fs::File::from(src);
                let mut to = std::fs::File::from(rustix::io::dup(&memfd)?);
                std::io::copy(&mut from, &mut to)?;
                break;
            }
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            break;
        }
        copied += n;
    }
    rustix::fs::fcntl_add_seals(
        &memfd,
        SealFlags::SEAL | SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE,
    )?;
    Ok(memfd)
}

/// Executes the file `fd` refers to (`execveat(AT_EMPTY_PATH)`). Returns only
/// on failure.
pub fn exec_fd(fd: BorrowedFd<'_>, args: &[OsString], env: &[(OsString, OsString)]) -> io::Error {
    let to_c = |bytes: &[u8]| {
        CString::new(bytes).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
    };
    let argv: io::Result<Vec<CString>> = args.iter().map(|a| to_c(a.as_bytes())).collect();
    let envp: io::Result<Vec<CString>> = env
        .iter()
        .map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            to_c(&kv)
        })
        .collect();
    let (argv, envp) = match (argv, envp) {
        (Ok(a), Ok(e)) => (a, e),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let mut argv_ptrs: Vec<*mut libc::c_char> =
        argv.iter().map(|a| a.as_ptr().cast_mut()).collect();
    argv_ptrs.push(std::ptr::null_mut());
    let mut envp_ptrs: Vec<*mut libc::c_char> =
        envp.iter().map(|e| e.as_ptr().cast_mut()).collect();
    envp_ptrs.push(std::ptr::null_mut());
    // SAFETY: fd is a live descriptor; argv/envp are NULL-terminated arrays
    // of pointers into CStrings that outlive the call; on success the call
    // does not return, on failure nothing was changed.
    unsafe {
        libc::execveat(
            fd.as_raw_fd(),
            c"".as_ptr(),
            argv_ptrs.as_ptr(),
            envp_ptrs.as_ptr(),
            libc::AT_EMPTY_PATH,
        );
    }
    io::Error::last_os_error()
}
