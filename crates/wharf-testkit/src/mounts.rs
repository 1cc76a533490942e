//! `/proc/self/mountinfo`: parsing, mounts under a directory (deepest first), lazy
//! unmount and the mount half of the leak sweep.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// One line of `/proc/self/mountinfo` (proc(5)), the fields the testkit uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MountInfo {
    /// Unique id of the mount.
    pub(crate) mount_id: u64,
    /// Where it is mounted, octal escapes (`\040`) decoded.
    pub(crate) mount_point: PathBuf,
    /// Filesystem type (`tmpfs`, `overlay`, `cgroup2`).
    pub(crate) fs_type: String,
}

/// Reads and parses `/proc/self/mountinfo`.
pub(crate) fn read_mountinfo() -> anyhow::Result<Vec<MountInfo>> {
    let raw = fs_err::read("/proc/self/mountinfo")?;
    parse_mountinfo(&raw)
}

/// Parses mountinfo text. Paths are kept as bytes: mount points need not be UTF-8.
pub(crate) fn parse_mountinfo(raw: &[u8]) -> anyhow::Result<Vec<MountInfo>> {
    raw.split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| {
            parse_mountinfo_line(line).with_context(|| {
                format!("parse mountinfo line {:?}", String::from_utf8_lossy(line))
            })
        })
        .collect()
}

fn parse_mountinfo_line(line: &[u8]) -> anyhow::Result<MountInfo> {
    // 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
    let fields: Vec<&[u8]> = line.split(|b| *b == b' ').collect();
    let mount_id = std::str::from_utf8(fields.first().context("missing mount id")?)
        .context("mount id is not text")?
        .parse::<u64>()
        .context("mount id is not a number")?;
    let mount_point = fields.get(4).context("missing mount point")?;
    let separator = fields
        .iter()
        .skip(6)
        .position(|f| *f == b"-")
        .context("missing ' - ' separator")?;
    let fs_type = fields
        .get(6 + separator + 1)
        .context("missing filesystem type")?;
    Ok(MountInfo {
        mount_id,
        mount_point: PathBuf::from(OsStr::from_bytes(&unescape_octal(mount_point))),
        fs_type: String::from_utf8_lossy(&unescape_octal(fs_type)).into_owned(),
    })
}

/// Decodes the kernel's `\ooo` escapes (space, tab, newline, backslash).
fn unescape_octal(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\' {
            if let Some(digits) = field.get(i + 1..i + 4) {
                if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                    let value = digits
                        .iter()
                        .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                    if let Ok(byte) = u8::try_from(value) {
                        out.push(byte);
                        i += 4;
                        continue;
                    }
                }
            }
        }
        out.push(field[i]);
        i += 1;
    }
    out
}

/// Mount points at or under `dir`, deepest first so that unmounting them in order
/// never hits a busy parent. A path mounted several times (stacked) appears once per
/// mount, so each unmount peels one layer.
pub(crate) fn mounts_under(mounts: &[MountInfo], dir: &Path) -> Vec<PathBuf> {
    let mut under: Vec<&MountInfo> = mounts
        .iter()
        .filter(|m| m.mount_point.starts_with(dir))
        .collect();
    // Deeper first; among equal depth, later (higher id, usually on top) first.
    under.sort_by(|a, b| {
        let depth = |m: &MountInfo| m.mount_point.components().count();
        depth(b)
            .cmp(&depth(a))
            .then_with(|| b.mount_id.cmp(&a.mount_id))
    });
    under.into_iter().map(|m| m.mount_point.clone()).collect()
}

/// Lazily unmounts (`MNT_DETACH`) every mount at or under `dir`, deepest first,
/// ignoring errors (best effort cleanup).
pub(crate) fn detach_mounts_under(dir: &Path) {
    let Ok(mounts) = read_mountinfo() else {
        return;
    };
    for mount_point in mounts_under(&mounts, dir) {
        // Errors are expected for mounts a detached parent already took away.
        let _ = nix::mount::umount2(&mount_point, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Lines of `/proc/self/mountinfo` whose mount point contains `prefix`: mounts a
/// test leaked. Used by the leak sweep at the end of a CI run.
pub fn leaked_mounts(prefix: &str) -> Vec<String> {
    let Ok(raw) = fs_err::read("/proc/self/mountinfo") else {
        return Vec::new();
    };
    raw.split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .filter(|line| {
            parse_mountinfo_line(line).is_ok_and(|m| {
                crate::processes::contains_bytes(
                    m.mount_point.as_os_str().as_bytes(),
                    prefix.as_bytes(),
                )
            })
        })
        .map(|line| String::from_utf8_lossy(line).into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &[u8] = b"\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
36 22 0:32 / /var/tmp/wharf-test-a rw shared:2 master:1 - tmpfs tmpfs rw
37 36 0:33 / /var/tmp/wharf-test-a/bundles/b/rootfs/proc rw - proc proc rw
38 36 0:34 / /var/tmp/wharf-test-a/bundles/b/rootfs rw - overlay overlay rw,lowerdir=/x
39 38 0:35 / /var/tmp/wharf-test-a/bundles/b/rootfs rw - tmpfs tmpfs rw
40 22 0:36 / /var/tmp/wharf-test-ab rw - tmpfs tmpfs rw
41 22 0:37 / /mnt/with\\040space rw - tmpfs tmpfs rw
";

    #[test]
    fn parses_fields_and_octal_escapes() {
        let mounts = parse_mountinfo(SAMPLE).unwrap();
        assert_eq!(mounts.len(), 7);
        assert_eq!(mounts[0].mount_point, Path::new("/"));
        assert_eq!(mounts[0].fs_type, "ext4");
        assert_eq!(mounts[1].mount_id, 36);
        assert_eq!(mounts[1].fs_type, "tmpfs");
        assert_eq!(mounts[3].fs_type, "overlay");
        assert_eq!(mounts[6].mount_point, Path::new("/mnt/with space"));
    }

    #[test]
    fn rejects_a_line_without_separator() {
        assert!(parse_mountinfo(b"22 1 254:0 / / rw ext4 /dev/vda rw\n").is_err());
    }

    #[test]
    fn unescape_handles_backslash_and_trailing_escape() {
        assert_eq!(unescape_octal(br"a\134b"), b"a\\b");
        assert_eq!(unescape_octal(br"a\011"), b"a\t");
        assert_eq!(unescape_octal(br"a\01"), br"a\01");
        assert_eq!(unescape_octal(br"a\"), br"a\");
    }

    #[test]
    fn mounts_under_is_deepest_first_and_component_wise() {
        let mounts = parse_mountinfo(SAMPLE).unwrap();
        let under = mounts_under(&mounts, Path::new("/var/tmp/wharf-test-a"));
        assert_eq!(
            under,
            vec![
                PathBuf::from("/var/tmp/wharf-test-a/bundles/b/rootfs/proc"),
                PathBuf::from("/var/tmp/wharf-test-a/bundles/b/rootfs"),
                PathBuf::from("/var/tmp/wharf-test-a/bundles/b/rootfs"),
                PathBuf::from("/var/tmp/wharf-test-a"),
            ]
        );
    }
}
