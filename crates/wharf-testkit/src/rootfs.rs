//! The busybox rootfs every runtime test boots: built once from the host's static
//! busybox, cached on disk under the target dir keyed by the binary's sha256, and
//! copied into each bundle.

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Component, Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use anyhow::{bail, ensure, Context as _};
use sha2::{Digest as _, Sha256};

/// The busybox the rootfs is built from (Debian's `busybox-static`).
pub(crate) const HOST_BUSYBOX: &str = "/bin/busybox";

/// Where applet symlinks point, inside the rootfs.
const BUSYBOX_IN_ROOTFS: &str = "/bin/busybox";

const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
wharf:x:1000:1000::/home/wharf:/bin/sh
";

const GROUP: &str = "\
root:x:0:
wheel:x:10:root
wharf:x:1000:
users:x:100:wharf
nogroup:x:65534:
";

/// Directories of the rootfs with their modes, parents first.
const DIRS: &[(&str, u32)] = &[
    ("bin", 0o755),
    ("etc", 0o755),
    ("proc", 0o755),
    ("sys", 0o755),
    ("dev", 0o755),
    ("tmp", 0o1777),
    ("root", 0o700),
    ("home", 0o755),
    ("home/wharf", 0o755),
];

/// uid/gid owning `home/wharf` (the `wharf` user of `etc/passwd`).
const WHARF_USER_ID: u32 = 1000;

/// The cached busybox rootfs, building it on first use in this process.
///
/// Lives at `<target dir>/wharf-test/busybox-<sha256 of /bin/busybox, 16 hex>/rootfs`,
/// where the target dir is `$CARGO_TARGET_DIR` (relative to the workspace root when
/// relative) or the workspace's `target`. It holds `bin/busybox` (checked static,
/// mode 0755), a symlink to `/bin/busybox` per applet of `busybox --list-full`,
/// `etc/passwd` and `etc/group` (root, nobody, wharf:1000), and empty `proc sys dev
/// tmp root home/wharf` (`tmp` 1777). Concurrent test processes build into temporary
/// directories and rename; the loser of the rename uses the winner's tree.
///
/// Do not modify the returned tree: copy it with [`copy_rootfs`].
///
/// # Errors
///
/// `/bin/busybox` is missing, not a static ELF, or the cache cannot be written.
pub fn busybox_rootfs() -> anyhow::Result<&'static Path> {
    static ROOTFS: OnceLock<PathBuf> = OnceLock::new();
    static BUILDING: Mutex<()> = Mutex::new(());
    if let Some(rootfs) = ROOTFS.get() {
        return Ok(rootfs);
    }
    // A panicking builder leaves nothing half-visible, so a poisoned lock is fine.
    let _guard = BUILDING.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(rootfs) = ROOTFS.get() {
        return Ok(rootfs);
    }
    let built = build_cached().context("build the busybox test rootfs")?;
    Ok(ROOTFS.get_or_init(|| built))
}

/// Copies the cached busybox rootfs (see [`busybox_rootfs`]) into `dest`, creating
/// it. Symlinks stay symlinks; modes and, when running as root, owners are kept.
///
/// # Errors
///
/// The rootfs cannot be built, or a file cannot be created under `dest`.
pub fn copy_rootfs(dest: &Path) -> anyhow::Result<()> {
    let src = busybox_rootfs()?;
    copy_tree(src, dest).with_context(|| format!("copy busybox rootfs to {}", dest.display()))
}

/// Recursively copies `src` to `dest` (created if missing).
pub(crate) fn copy_tree(src: &Path, dest: &Path) -> anyhow::Result<()> {
    let meta = fs_err::symlink_metadata(src)?;
    ensure!(meta.is_dir(), "{} is not a directory", src.display());
    fs_err::create_dir_all(dest)?;
    for entry in fs_err::read_dir(src)? {
        let entry = entry?;
        let from = entry.path();
        let to = dest.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree(&from, &to)?;
        } else if kind.is_symlink() {
            let target = fs_err::read_link(&from)?;
            fs_err::os::unix::fs::symlink(&target, &to)?;
            copy_owner(&fs_err::symlink_metadata(&from)?, &to)?;
        } else if kind.is_file() {
            fs_err::copy(&from, &to)?;
            let file_meta = fs_err::symlink_metadata(&from)?;
            fs_err::set_permissions(&to, file_meta.permissions())?;
            copy_owner(&file_meta, &to)?;
        } else {
            bail!(
                "{} is neither a file, a directory nor a symlink",
                from.display()
            );
        }
    }
    // Last, so that a read-only directory does not block filling it.
    fs_err::set_permissions(dest, meta.permissions())?;
    copy_owner(&meta, dest)
}

/// Gives `to` the owner of `from` when running as root (a no-op otherwise, where it
/// would fail and the caller owns everything anyway).
fn copy_owner(from: &std::fs::Metadata, to: &Path) -> anyhow::Result<()> {
    if nix::unistd::geteuid().is_root() {
        std::os::unix::fs::lchown(to, Some(from.uid()), Some(from.gid()))
            .with_context(|| format!("chown {}", to.display()))?;
    }
    Ok(())
}

/// Checks that the ELF file at `path` is statically linked.
pub(crate) fn check_static(path: &Path) -> anyhow::Result<()> {
    let bytes = fs_err::read(path)?;
    check_static_elf(&bytes).with_context(|| format!("check {} is a static ELF", path.display()))
}

/// Fails unless `bytes` is an ELF image without a `PT_INTERP` program header (no
/// dynamic loader: static or static-pie, which runs in an empty rootfs).
pub(crate) fn check_static_elf(bytes: &[u8]) -> anyhow::Result<()> {
    const PT_INTERP: u32 = 3;
    ensure!(bytes.get(..4) == Some(b"\x7fELF"), "not an ELF file");
    let big_endian = match bytes.get(5) {
        Some(1) => false,
        Some(2) => true,
        other => bail!("unknown ELF data encoding {other:?}"),
    };
    let read = |offset: usize, len: usize| -> anyhow::Result<u64> {
        let end = offset.checked_add(len).context("ELF offset overflows")?;
        let field = bytes.get(offset..end).context("ELF file is truncated")?;
        let value = if big_endian {
            field.iter().fold(0u64, |acc, b| acc << 8 | u64::from(*b))
        } else {
            field
                .iter()
                .rev()
                .fold(0u64, |acc, b| acc << 8 | u64::from(*b))
        };
        Ok(value)
    };
    let to_usize = |v: u64| usize::try_from(v).context("ELF offset does not fit in memory");
    let (phoff, phentsize, phnum) = match bytes.get(4) {
        Some(1) => (read(0x1c, 4)?, read(0x2a, 2)?, read(0x2c, 2)?),
        Some(2) => (read(0x20, 8)?, read(0x36, 2)?, read(0x38, 2)?),
        other => bail!("unknown ELF class {other:?}"),
    };
    ensure!(phnum > 0, "ELF file has no program headers");
    for index in 0..phnum {
        let header = phoff
            .checked_add(index * phentsize)
            .context("ELF program header offset overflows")?;
        if read(to_usize(header)?, 4)? == u64::from(PT_INTERP) {
            bail!(
                "it is dynamically linked (has a PT_INTERP program header); install busybox-static"
            );
        }
    }
    Ok(())
}

/// Parses `busybox --list-full`: one applet path per line, relative to `/`
/// (`usr/bin/env`). Sorted and deduplicated; anything but plain relative paths
/// is rejected.
pub(crate) fn parse_applet_list(text: &str) -> anyhow::Result<Vec<PathBuf>> {
    let mut applets = BTreeSet::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let path = PathBuf::from(line);
        let plain = path.components().all(|c| matches!(c, Component::Normal(_)));
        ensure!(plain, "applet path {line:?} is not a plain relative path");
        applets.insert(path);
    }
    ensure!(!applets.is_empty(), "busybox lists no applets");
    Ok(applets.into_iter().collect())
}

/// The target dir: `$CARGO_TARGET_DIR` or the workspace's `target`.
fn target_dir() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(Path::parent)
        .expect("wharf-testkit lives at <workspace>/crates/wharf-testkit");
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => workspace.join(dir),
        _ => workspace.join("target"),
    }
}

fn build_cached() -> anyhow::Result<PathBuf> {
    let busybox = fs_err::read(HOST_BUSYBOX)?;
    check_static_elf(&busybox).with_context(|| format!("check {HOST_BUSYBOX} is a static ELF"))?;
    let digest = Sha256::digest(&busybox);
    let key: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let cache = target_dir()
        .join("wharf-test")
        .join(format!("busybox-{key}"));
    let rootfs = cache.join("rootfs");
    if rootfs.is_dir() {
        return Ok(rootfs);
    }
    fs_err::create_dir_all(&cache)?;
    let staging = tempfile::Builder::new()
        .prefix(".rootfs-")
        .tempdir_in(&cache)
        .with_context(|| format!("create a staging dir in {}", cache.display()))?;
    populate(staging.path(), &busybox)?;
    match fs_err::rename(staging.path(), &rootfs) {
        Ok(()) => {
            let _renamed = staging.keep();
        }
        // Another test process won the race; its tree is complete (rename is atomic).
        Err(_) if rootfs.is_dir() => {}
        Err(e) => return Err(e.into()),
    }
    Ok(rootfs)
}

/// Writes the rootfs into the empty directory `root`.
fn populate(root: &Path, busybox: &[u8]) -> anyhow::Result<()> {
    fs_err::set_permissions(root, std::fs::Permissions::from_mode(0o755))?;
    for (dir, mode) in DIRS {
        let path = root.join(dir);
        fs_err::create_dir(&path)?;
        fs_err::set_permissions(&path, std::fs::Permissions::from_mode(*mode))?;
    }
    let home = root.join("home/wharf");
    std::os::unix::fs::chown(&home, Some(WHARF_USER_ID), Some(WHARF_USER_ID))
        .or_else(|e| {
            if nix::unistd::geteuid().is_root() {
                Err(e)
            } else {
                Ok(())
            }
        })
        .with_context(|| format!("chown {}", home.display()))?;

    let bin = root.join("bin/busybox");
    fs_err::write(&bin, busybox)?;
    fs_err::set_permissions(&bin, std::fs::Permissions::from_mode(0o755))?;

    let output = Command::new(HOST_BUSYBOX)
        .arg("--list-full")
        .output()
        .with_context(|| format!("run {HOST_BUSYBOX} --list-full"))?;
    ensure!(
        output.status.success(),
        "{HOST_BUSYBOX} --list-full failed with {}",
        output.status
    );
    let list = String::from_utf8(output.stdout).context("busybox applet list is not UTF-8")?;
    for applet in parse_applet_list(&list)? {
        if applet == Path::new("bin/busybox") {
            continue;
        }
        let link = root.join(&applet);
        if let Some(parent) = link.parent() {
            if !parent.exists() {
                fs_err::create_dir_all(parent)?;
                fs_err::set_permissions(parent, std::fs::Permissions::from_mode(0o755))?;
            }
        }
        fs_err::os::unix::fs::symlink(BUSYBOX_IN_ROOTFS, &link)?;
    }

    for (name, text) in [("etc/passwd", PASSWD), ("etc/group", GROUP)] {
        let path = root.join(name);
        fs_err::write(&path, text)?;
        fs_err::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applet_list_is_sorted_and_deduplicated() {
        let list = "usr/bin/env\nbin/sh\n\n  sbin/ip  \nbin/sh\nusr/bin/[\n";
        let applets = parse_applet_list(list).unwrap();
        assert_eq!(
            applets,
            ["bin/sh", "sbin/ip", "usr/bin/[", "usr/bin/env"]
                .map(PathBuf::from)
                .to_vec()
        );
    }

    #[test]
    fn applet_list_rejects_escaping_paths() {
        assert!(parse_applet_list("bin/../../etc/x\n").is_err());
        assert!(parse_applet_list("/bin/sh\n").is_err());
        assert!(parse_applet_list("\n").is_err());
    }

    /// A minimal 64-bit little-endian ELF header with one program header of `p_type`.
    fn elf64(p_type: u32) -> Vec<u8> {
        let mut image = vec![0u8; 64 + 56];
        image[..4].copy_from_slice(b"\x7fELF");
        image[4] = 2;
        image[5] = 1;
        image[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        image[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        image[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        image[64..68].copy_from_slice(&p_type.to_le_bytes());
        image
    }

    #[test]
    fn elf_with_interpreter_is_not_static() {
        assert!(check_static_elf(&elf64(1)).is_ok());
        let err = check_static_elf(&elf64(3)).unwrap_err();
        assert!(format!("{err:#}").contains("PT_INTERP"), "{err:#}");
    }

    #[test]
    fn truncated_or_foreign_files_are_rejected() {
        assert!(check_static_elf(b"#!/bin/sh\n").is_err());
        // Cut inside the program header's p_type.
        assert!(check_static_elf(&elf64(1)[..66]).is_err());
    }

    #[test]
    fn host_dynamic_binary_is_detected() {
        // /proc/self/exe is this test binary, dynamically linked against glibc.
        let err = check_static(Path::new("/proc/self/exe")).unwrap_err();
        assert!(format!("{err:#}").contains("dynamically linked"), "{err:#}");
    }

    #[test]
    fn copy_tree_keeps_symlinks_and_modes() {
        let src = tempfile::tempdir().unwrap();
        let dest = tempfile::tempdir().unwrap();
        fs_err::create_dir(src.path().join("tmp")).unwrap();
        fs_err::set_permissions(
            src.path().join("tmp"),
            std::fs::Permissions::from_mode(0o1777),
        )
        .unwrap();
        fs_err::write(src.path().join("tool"), "x").unwrap();
        fs_err::set_permissions(
            src.path().join("tool"),
            std::fs::Permissions::from_mode(0o751),
        )
        .unwrap();
        fs_err::os::unix::fs::symlink("/bin/tool", src.path().join("link")).unwrap();

        let out = dest.path().join("copy");
        copy_tree(src.path(), &out).unwrap();
        let mode = |p: &str| fs_err::symlink_metadata(out.join(p)).unwrap().mode() & 0o7777;
        assert_eq!(mode("tmp"), 0o1777);
        assert_eq!(mode("tool"), 0o751);
        assert_eq!(
            fs_err::read_link(out.join("link")).unwrap(),
            Path::new("/bin/tool")
        );
    }
}
