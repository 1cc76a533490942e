//! Building the container's root filesystem inside its mount namespace.
//!
//! Runs in the container's init, in this order (see docs/runtime-create.md):
//! propagation of `/`, the rootfs bind-mounted onto itself, every `mounts`
//! entry in config order, `/dev` (devices, symlinks, ptmx), the console,
//! then — after the runtime-namespace hooks — pivot_root, sysctls,
//! read-only and masked paths, and a read-only `/`.
//!
//! Every path inside the rootfs is resolved with [`wharf_sys::Root`] and
//! every mount is attached onto a descriptor of the resolved inode.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Spec};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use wharf_sys::mount::{self as sysmount, FsOption, MountAttrs};
use wharf_sys::root::NodeKind;
use wharf_sys::Root;

use crate::cgroupfs::CgroupView;
use crate::error::{step_err, Step, StepError};
use crate::mounts::{self, Kind, Plan};

type StepResult<T = ()> = Result<T, StepError>;

/// The OCI default devices every container gets.
const DEFAULT_DEVICES: &[(&str, u64, u64)] = &[
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

/// Inputs of the rootfs setup.
#[derive(Debug)]
pub(crate) struct RootfsSetup<'a> {
    pub(crate) spec: &'a Spec,
    pub(crate) rootfs: &'a Path,
    /// The container has a user namespace of its own: device nodes cannot
    /// be created, host devices are bind-mounted instead.
    pub(crate) in_userns: bool,
    /// Idmapped bind mounts prepared by the runtime, in config order.
    pub(crate) idmapped: Vec<OwnedFd>,
    /// How cgroup mounts find the container's cgroup.
    pub(crate) cgroups: CgroupView<'a>,
}

/// The result of [`prepare`]: the rootfs, opened.
#[derive(Debug)]
pub(crate) struct PreparedRoot {
    pub(crate) root: Root,
    /// Host `/dev/null`, verified to be char 1:3, cloned as a detached mount
    /// for masking files after pivot_root.
    pub(crate) devnull: OwnedFd,
    /// `/` is the initramfs (`rootfs`), where pivot_root cannot work.
    pub(crate) on_initramfs: bool,
}

/// Mounts everything up to (not including) pivot_root.
pub(crate) fn prepare(setup: RootfsSetup<'_>) -> StepResult<PreparedRoot> {
    let linux = setup.spec.linux().as_ref();
    let propagation = match linux.and_then(|l| l.rootfs_propagation().as_deref()) {
        None | Some("") => libc::MS_SLAVE | libc::MS_REC,
        Some(p) => propagation_flags(p)?,
    };
    sysmount::set_propagation(Path::new("/"), propagation)
        .step(|| "set propagation of / in the container's mount namespace".into())?;
    let on_initramfs = make_parent_private(setup.rootfs)?;
    sysmount::mount_path(
        Some(&setup.rootfs.to_string_lossy()),
        setup.rootfs,
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )
    .step(|| format!("bind-mount rootfs {} onto itself", setup.rootfs.display()))?;
    let root =
        Root::open(setup.rootfs).step(|| format!("open rootfs {}", setup.rootfs.display()))?;
    let devnull = open_devnull()?;

    let mut dev_mounted = false;
    let mut idmapped = setup.idmapped.into_iter();
    for mount in setup.spec.mounts().as_deref().unwrap_or_default() {
        let plan = mounts::plan(mount).map_err(|e| step_err("plan mount", e.to_string()))?;
        let prepared = match plan.kind {
            Kind::Bind { .. } if plan.idmap => Some(idmapped.next().ok_or_else(|| {
                step_err(
                    "idmapped mount",
                    "the runtime sent fewer idmapped mounts than configured",
                )
            })?),
            _ => None,
        };
        mount_entry(&root, &plan, setup.in_userns, prepared, setup.cgroups)
            .map_err(|e| prefix(e, &format!("mount {}", plan.destination.display())))?;
        dev_mounted |= plan.destination == Path::new("/dev");
    }
    create_devices(&root, setup.spec, setup.in_userns, dev_mounted)?;
    Ok(PreparedRoot {
        root,
        devnull,
        on_initramfs,
    })
}

fn prefix(err: StepError, what: &str) -> StepError {
    StepError {
        step: format!("{what}: {}", err.step),
        source: err.source,
    }
}

fn propagation_flags(p: &str) -> StepResult<u64> {
    Ok(match p {
        "shared" => libc::MS_SHARED,
        "rshared" => libc::MS_SHARED | libc::MS_REC,
        "slave" => libc::MS_SLAVE,
        "rslave" => libc::MS_SLAVE | libc::MS_REC,
        "private" => libc::MS_PRIVATE,
        "rprivate" => libc::MS_PRIVATE | libc::MS_REC,
        "unbindable" => libc::MS_UNBINDABLE,
        "runbindable" => libc::MS_UNBINDABLE | libc::MS_REC,
        other => {
            return Err(step_err(
                "rootfsPropagation",
                format!("unknown value {other:?}"),
            ))
        }
    })
}

/// pivot_root(2) refuses a new root whose parent mount is shared: make the
/// mount that contains the rootfs private (in our namespace only). From the
/// same read of mountinfo: whether `/` is the initramfs.
fn make_parent_private(rootfs: &Path) -> StepResult<bool> {
    let mountinfo = fs_err::read_to_string("/proc/self/mountinfo")
        .step(|| "read /proc/self/mountinfo".into())?;
    let mut best: Option<(PathBuf, bool)> = None;
    let mut on_initramfs = false;
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(point) = fields.get(4) else { continue };
        on_initramfs |= *point == "/" && line.contains(" - rootfs ");
        let point = PathBuf::from(unescape_mountinfo(point));
        if rootfs.starts_with(&point)
            && best
                .as_ref()
                .is_none_or(|(b, _)| point.as_os_str().len() >= b.as_os_str().len())
        {
            let shared = fields
                .iter()
                .skip(6)
                .take_while(|f| **f != "-")
                .any(|f| f.starts_with("shared:"));
            best = Some((point, shared));
        }
    }
    if let Some((point, true)) = best {
        sysmount::set_propagation(&point, libc::MS_PRIVATE)
            .step(|| format!("make {} private", point.display()))?;
    }
    Ok(on_initramfs)
}

fn unescape_mountinfo(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Opens host `/dev/null` and checks it really is the null device (a
/// container cannot have swapped it: we are still on the host's tree).
fn open_devnull() -> StepResult<OwnedFd> {
    let fd = sysmount::open_path(Path::new("/dev/null")).step(|| "open /dev/null".into())?;
    let st = rustix::fs::fstat(&fd).step(|| "stat /dev/null".into())?;
    if FileType::from_raw_mode(st.st_mode) != FileType::CharacterDevice
        || rustix::fs::major(st.st_rdev) != 1
        || rustix::fs::minor(st.st_rdev) != 3
    {
        return Err(step_err("verify /dev/null", "not the character device 1:3"));
    }
    sysmount::clone_tree(fd.as_fd(), Path::new(""), false).step(|| "clone /dev/null mount".into())
}

/// Resolves (or creates) the mount point of an entry inside the root.
fn mount_point(root: &Root, dest: &Path, is_dir: bool) -> StepResult<OwnedFd> {
    match root.resolve(dest) {
        Ok(fd) => Ok(fd),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if is_dir {
                root.mkdir_all(dest, 0o755)
                    .step(|| "create mount point".into())
            } else {
                root.ensure_file(dest, 0o644)
                    .step(|| "create mount point".into())
            }
        }
        Err(e) => Err(e).step(|| "resolve mount point in rootfs".into()),
    }
}

/// `/proc` and `/sys` must be real directories in the rootfs, never
/// symlinks (CVE-2019-19921, CVE-2023-27561).
fn refuse_symlink(root: &Root, dest: &Path) -> StepResult {
    match root.resolve_nofollow(dest) {
        Ok(fd) => {
            let st = rustix::fs::fstat(&fd).step(|| "stat mount point".into())?;
            let ft = FileType::from_raw_mode(st.st_mode);
            if ft != FileType::Directory {
                return Err(step_err(
                    "check mount point",
                    format!(
                        "{} in the rootfs is a {ft:?}, not a directory",
                        dest.display()
                    ),
                ));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).step(|| "resolve mount point in rootfs".into()),
    }
}

fn mount_entry(
    root: &Root,
    plan: &Plan,
    in_userns: bool,
    idmapped: Option<OwnedFd>,
    cgroups: CgroupView<'_>,
) -> StepResult {
    let tree = match &plan.kind {
        Kind::Bind { source, recursive } => {
            let st = rustix::fs::stat(source)
                .step(|| format!("stat bind source {}", source.display()))?;
            let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
            let target = mount_point(root, &plan.destination, is_dir)?;
            let tree = match idmapped {
                Some(tree) => tree,
                None => sysmount::clone_tree(rustix::fs::CWD, source, *recursive)
                    .step(|| format!("clone bind source {}", source.display()))?,
            };
            apply_attrs(tree.as_fd(), plan)?;
            sysmount::attach(tree.as_fd(), target.as_fd()).step(|| "attach bind mount".into())?;
            tree
        }
        Kind::Fs { fstype, source } => {
            if plan.destination == Path::new("/proc") || plan.destination == Path::new("/sys") {
                refuse_symlink(root, &plan.destination)?;
            }
            if fstype == "cgroup" || fstype == "cgroup2" {
                let target = mount_point(root, &plan.destination, true)?;
                return crate::cgroupfs::mount(
                    root,
                    &plan.destination,
                    target.as_fd(),
                    plan,
                    cgroups,
                );
            }
            let target = mount_point(root, &plan.destination, true)?;
            let tree = match sysmount::new_fs(fstype, source.as_deref(), &plan.data, plan.attrs.set)
            {
                Ok(tree) => tree,
                // sysfs cannot be mounted in a user namespace that does not
                // own the network namespace: bind the host's, as runc does.
                Err(e)
                    if fstype == "sysfs" && in_userns && e.raw_os_error() == Some(libc::EPERM) =>
                {
                    let tree = sysmount::clone_tree(rustix::fs::CWD, Path::new("/sys"), true)
                        .step(|| "clone /sys".into())?;
                    sysmount::set_attrs(
                        tree.as_fd(),
                        true,
                        MountAttrs {
                            set: plan.attrs.set & !sysmount::ATTR_ATIME_MASK,
                            ..MountAttrs::default()
                        },
                        None,
                    )
                    .step(|| "set /sys attributes".into())?;
                    tree
                }
                Err(e) => return Err(e).step(|| format!("create {fstype} filesystem")),
            };
            if plan.recursive_attrs != MountAttrs::default() {
                sysmount::set_attrs(tree.as_fd(), true, plan.recursive_attrs, None)
                    .step(|| "set recursive mount attributes".into())?;
            }
            sysmount::attach(tree.as_fd(), target.as_fd()).step(|| "attach mount".into())?;
            tree
        }
    };
    if let Some((flag, recursive)) = plan.propagation {
        sysmount::set_attrs(
            tree.as_fd(),
            recursive,
            MountAttrs {
                propagation: flag,
                ..MountAttrs::default()
            },
            None,
        )
        .step(|| "set mount propagation".into())?;
    }
    Ok(())
}

fn apply_attrs(tree: BorrowedFd<'_>, plan: &Plan) -> StepResult {
    if plan.attrs != MountAttrs::default() {
        sysmount::set_attrs(tree, false, plan.attrs, None)
            .step(|| "set mount attributes".into())?;
    }
    if plan.recursive_attrs != MountAttrs::default() {
        sysmount::set_attrs(tree, true, plan.recursive_attrs, None)
            .step(|| "set recursive mount attributes".into())?;
    }
    Ok(())
}

/// Creates the default and configured devices and the `/dev` symlinks.
fn create_devices(root: &Root, spec: &Spec, in_userns: bool, dev_mounted: bool) -> StepResult {
    let configured = spec
        .linux()
        .as_ref()
        .and_then(|l| l.devices().clone())
        .unwrap_or_default();
    let mut devices: Vec<(PathBuf, NodeKind, u64, u64, u32, u32, u32)> = Vec::new();
    if dev_mounted {
        for (path, major, minor) in DEFAULT_DEVICES {
            if !configured.iter().any(|d| d.path() == Path::new(path)) {
                devices.push((
                    PathBuf::from(path),
                    NodeKind::Char,
                    *major,
                    *minor,
                    0o666,
                    0,
                    0,
                ));
            }
        }
    }
    for dev in &configured {
        devices.push(device_entry(dev)?);
    }
    for (path, kind, major, minor, mode, uid, gid) in devices {
        let path = mounts::clean_destination(&path);
        if in_userns {
            bind_host_device(root, &path)?;
        } else {
            make_device(root, &path, kind, major, minor, mode, uid, gid)?;
        }
    }
    if dev_mounted {
        let mut links = vec![
            ("/dev/fd", "/proc/self/fd"),
            ("/dev/stdin", "/proc/self/fd/0"),
            ("/dev/stdout", "/proc/self/fd/1"),
            ("/dev/stderr", "/proc/self/fd/2"),
        ];
        if Path::new("/proc/kcore").exists() {
            links.push(("/dev/core", "/proc/kcore"));
        }
        for (link, target) in links {
            match root.symlink(Path::new(link), Path::new(target)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e).step(|| format!("create symlink {link}")),
            }
        }
        // /dev/ptmx must be the container's devpts ptmx.
        if root.resolve(Path::new("/dev/pts/ptmx")).is_ok() {
            match root.remove_file(Path::new("/dev/ptmx")) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).step(|| "remove /dev/ptmx".into()),
            }
            root.symlink(Path::new("/dev/ptmx"), Path::new("pts/ptmx"))
                .step(|| "create symlink /dev/ptmx".into())?;
        }
    }
    Ok(())
}

type DeviceEntry = (PathBuf, NodeKind, u64, u64, u32, u32, u32);

fn device_entry(dev: &LinuxDevice) -> StepResult<DeviceEntry> {
    let kind = match dev.typ() {
        LinuxDeviceType::C | LinuxDeviceType::U => NodeKind::Char,
        LinuxDeviceType::B => NodeKind::Block,
        LinuxDeviceType::P => NodeKind::Fifo,
        LinuxDeviceType::A => {
            return Err(step_err(
                format!("device {}", dev.path().display()),
                "type 'a' is only valid in the device cgroup",
            ))
        }
    };
    let number = |n: i64, what: &str| {
        u64::try_from(n).map_err(|_| {
            step_err(
                format!("device {}", dev.path().display()),
                format!("negative {what} number"),
            )
        })
    };
    Ok((
        dev.path().clone(),
        kind,
        number(dev.major(), "major")?,
        number(dev.minor(), "minor")?,
        dev.file_mode().unwrap_or(0o666) & 0o7777,
        dev.uid().unwrap_or(0),
        dev.gid().unwrap_or(0),
    ))
}

#[allow(
    clippy::too_many_arguments,
    reason = "one device's fields, passed through from the plan"
)]
fn make_device(
    root: &Root,
    path: &Path,
    kind: NodeKind,
    major: u64,
    minor: u64,
    mode: u32,
    uid: u32,
    gid: u32,
) -> StepResult {
    let what = || format!("create device {}", path.display());
    if let Some(parent) = path.parent() {
        root.mkdir_all(parent, 0o755).step(what)?;
    }
    let dev = rustix::fs::makedev(major as u32, minor as u32);
    match root.mknod(path, kind, mode, dev) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            root.remove_file(path).step(what)?;
            root.mknod(path, kind, mode, dev).step(what)?;
        }
        Err(e) => return Err(e).step(what),
    }
    let fd = root.resolve_nofollow(path).step(what)?;
    rustix::fs::chownat(
        &fd,
        "",
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(gid)),
        AtFlags::EMPTY_PATH,
    )
    .step(|| format!("chown device {}", path.display()))
}

/// In a user namespace mknod is refused: bind-mount the host's node.
fn bind_host_device(root: &Root, path: &Path) -> StepResult {
    let host = sysmount::open_path(path).step(|| format!("open host device {}", path.display()))?;
    let target = root
        .ensure_file(path, 0o644)
        .step(|| format!("create mount point for device {}", path.display()))?;
    let st = rustix::fs::fstat(&target).step(|| "stat device mount point".into())?;
    if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
        return Err(step_err(
            format!("device {}", path.display()),
            "mount point is a symlink",
        ));
    }
    let tree = sysmount::clone_tree(host.as_fd(), Path::new(""), false)
        .step(|| format!("clone host device {}", path.display()))?;
    sysmount::attach(tree.as_fd(), target.as_fd())
        .step(|| format!("bind host device {}", path.display()))
}

/// Moves into the rootfs: `pivot_root(".", ".")` and a lazy unmount of the
/// old root, or `MS_MOVE` + chroot where pivot_root cannot work (a rootfs on
/// the initramfs, or when asked).
pub(crate) fn enter(rootfs: &Path, no_pivot: bool, on_initramfs: bool) -> StepResult {
    let dir = rustix::fs::open(
        rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .step(|| format!("open rootfs {}", rootfs.display()))?;
    rustix::process::fchdir(&dir).step(|| "chdir to rootfs".into())?;
    if no_pivot || on_initramfs {
        sysmount::mount_path(Some("."), Path::new("/"), None, libc::MS_MOVE, None)
            .step(|| "move rootfs onto /".into())?;
        rustix::process::chroot(".").step(|| "chroot into rootfs".into())?;
    } else {
        rustix::process::pivot_root(".", ".").step(|| "pivot_root".into())?;
        // The old root is now stacked under "."; keep its unmount from
        // propagating to the host, then detach it.
        sysmount::set_propagation(Path::new("."), libc::MS_SLAVE | libc::MS_REC)
            .step(|| "make old root a slave".into())?;
        sysmount::detach(Path::new(".")).step(|| "detach old root".into())?;
    }
    rustix::process::chdir("/").step(|| "chdir to /".into())
}

/// Makes `/` read-only (after pivot_root).
pub(crate) fn readonly_root() -> StepResult {
    let fd = sysmount::open_path(Path::new("/")).step(|| "open /".into())?;
    sysmount::set_attrs(
        fd.as_fd(),
        false,
        MountAttrs {
            set: sysmount::ATTR_RDONLY,
            ..MountAttrs::default()
        },
        None,
    )
    .step(|| "remount / read-only".into())
}

/// Makes each existing path read-only by a recursive bind onto itself.
pub(crate) fn readonly_paths(root: &Root, paths: &[String]) -> StepResult {
    for path in paths {
        let dest = mounts::clean_destination(Path::new(path));
        let fd = match root.resolve(&dest) {
            Ok(fd) => fd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).step(|| format!("resolve readonly path {path}")),
        };
        let tree = sysmount::clone_tree(fd.as_fd(), Path::new(""), true)
            .step(|| format!("clone readonly path {path}"))?;
        sysmount::set_attrs(
            tree.as_fd(),
            true,
            MountAttrs {
                set: sysmount::ATTR_RDONLY,
                ..MountAttrs::default()
            },
            None,
        )
        .step(|| format!("make {path} read-only"))?;
        sysmount::attach(tree.as_fd(), fd.as_fd())
            .step(|| format!("attach readonly path {path}"))?;
    }
    Ok(())
}

/// Masks each existing path: files get the verified `/dev/null`,
/// directories an empty read-only tmpfs (CVE-2025-31133: never a node taken
/// from the container's own `/dev`).
pub(crate) fn mask_paths(root: &Root, devnull: BorrowedFd<'_>, paths: &[String]) -> StepResult {
    let mut empty_dir: Option<OwnedFd> = None;
    for path in paths {
        let dest = mounts::clean_destination(Path::new(path));
        let fd = match root.resolve(&dest) {
            Ok(fd) => fd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).step(|| format!("resolve masked path {path}")),
        };
        let st = rustix::fs::fstat(&fd).step(|| format!("stat masked path {path}"))?;
        let source = if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            if empty_dir.is_none() {
                let opts = [
                    FsOption {
                        key: "nr_blocks".into(),
                        value: Some("1".into()),
                    },
                    FsOption {
                        key: "nr_inodes".into(),
                        value: Some("1".into()),
                    },
                    FsOption {
                        key: "mode".into(),
                        value: Some("0".into()),
                    },
                ];
                empty_dir = Some(
                    sysmount::new_fs(
                        "tmpfs",
                        Some("tmpfs"),
                        &opts,
                        sysmount::ATTR_RDONLY
                            | sysmount::ATTR_NOSUID
                            | sysmount::ATTR_NODEV
                            | sysmount::ATTR_NOEXEC,
                    )
                    .step(|| "create masking tmpfs".into())?,
                );
            }
            empty_dir
                .as_ref()
                .map(|f| f.as_fd())
                .expect("created above")
        } else {
            devnull
        };
        let tree = sysmount::clone_tree(source, Path::new(""), false)
            .step(|| format!("clone mask for {path}"))?;
        sysmount::attach(tree.as_fd(), fd.as_fd()).step(|| format!("mask {path}"))?;
    }
    Ok(())
}
