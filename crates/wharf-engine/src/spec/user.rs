//! `--user`, `--group-add` and the image's `User` resolved against the
//! image's own /etc/passwd and /etc/group (CVE-2019-14271 class: never libc
//! lookups, never a symlink out of the rootfs; CVE-2024-40635: a number that
//! overflows is an error, never uid 0).

use std::io::{self, Read};
use std::path::Path;

use rustix::fs::OFlags;
use wharf_sys::Root;

use crate::EngineError;

/// The largest uid or gid accepted: runc's range is 0-2147483647, so
/// 2147483648 and `u32::MAX` (the kernel's "no id") are refused.
const MAX_ID: u32 = i32::MAX as u32;

/// How much of /etc/passwd or /etc/group is read (CVE-2024-9676 class:
/// `/etc/passwd -> /dev/zero` must not exhaust memory).
const MAX_FILE_SIZE: u64 = 1 << 20;

/// The identity the container process runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResolvedUser {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    /// The primary gid, the groups listing the user in /etc/group (when no
    /// group was given explicitly), then `--group-add`; no duplicates.
    pub(crate) additional_gids: Vec<u32>,
    /// HOME from the passwd entry, else `/`.
    pub(crate) home: String,
}

#[derive(Debug)]
struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

#[derive(Debug)]
struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// Resolves `user` (`name|uid[:group|gid]`, empty for root) and
/// `group_add` (names or gids) in the image at `rootfs`.
pub(crate) fn resolve(
    rootfs: &Path,
    user: &str,
    group_add: &[String],
) -> Result<ResolvedUser, EngineError> {
    let root = Root::open(rootfs).map_err(|source| EngineError::ReadImageFile {
        path: "/".into(),
        source,
    })?;
    let passwd = parse_passwd(&read_image_file(&root, "/etc/passwd")?.unwrap_or_default());
    let groups = parse_group(&read_image_file(&root, "/etc/group")?.unwrap_or_default());
    resolve_in(&passwd, &groups, user, group_add)
}

fn resolve_in(
    passwd: &[PasswdEntry],
    groups: &[GroupEntry],
    user: &str,
    group_add: &[String],
) -> Result<ResolvedUser, EngineError> {
    let (user_arg, group_arg) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let user_arg = if user_arg.is_empty() { "0" } else { user_arg };

    let (uid, mut gid, home, name) = match parse_id(user_arg)? {
        Some(uid) => match passwd.iter().find(|e| e.uid == uid) {
            Some(e) => (e.uid, e.gid, e.home.clone(), Some(e.name.as_str())),
            // A numeric uid without a passwd entry is allowed, as Docker: gid 0.
            None => (uid, 0, String::new(), None),
        },
        None => {
            let e = passwd.iter().find(|e| e.name == user_arg).ok_or_else(|| {
                EngineError::UnknownUser {
                    user: user_arg.to_owned(),
                }
            })?;
            (e.uid, e.gid, e.home.clone(), Some(e.name.as_str()))
        }
    };

    let mut supplementary = Vec::new();
    match group_arg {
        Some(g) if !g.is_empty() => gid = resolve_group(groups, g)?,
        Some(_) => {}
        None => {
            if let Some(name) = name {
                supplementary.extend(
                    groups
                        .iter()
                        .filter(|g| g.members.iter().any(|m| m == name))
                        .map(|g| g.gid),
                );
            }
        }
    }
    for g in group_add {
        supplementary.push(resolve_group(groups, g)?);
    }

    let mut additional_gids = vec![gid];
    for g in supplementary {
        if !additional_gids.contains(&g) {
            additional_gids.push(g);
        }
    }
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
        home: if home.is_empty() { "/".into() } else { home },
    })
}

fn resolve_group(groups: &[GroupEntry], group: &str) -> Result<u32, EngineError> {
    match parse_id(group)? {
        Some(gid) => Ok(gid),
        None => groups
            .iter()
            .find(|g| g.name == group)
            .map(|g| g.gid)
            .ok_or_else(|| EngineError::UnknownGroup {
                group: group.to_owned(),
            }),
    }
}

/// `Some(id)` for a number in range, `None` for a name; an error for
/// anything numeric-looking that is out of range (`-1`, `+5`,
/// `4294967296`, `2147483648`).
fn parse_id(value: &str) -> Result<Option<u32>, EngineError> {
    let digits = value.strip_prefix(['-', '+']).unwrap_or(value);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    let invalid = || EngineError::InvalidId {
        value: value.to_owned(),
    };
    if digits.len() != value.len() {
        return Err(invalid());
    }
    match value.parse::<u32>() {
        Ok(id) if id <= MAX_ID => Ok(Some(id)),
        _ => Err(invalid()),
    }
}

/// Reads `path` inside the rootfs, `None` when it does not exist. Only a
/// regular file is read (a fifo or device would block or never end), and at
/// most [`MAX_FILE_SIZE`] of it.
fn read_image_file(root: &Root, path: &str) -> Result<Option<String>, EngineError> {
    let err = |source: io::Error| EngineError::ReadImageFile {
        path: path.to_owned(),
        source,
    };
    let file = match root.open_file(
        Path::new(path),
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY,
    ) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(err(e)),
    };
    let meta = file.metadata().map_err(err)?;
    if !meta.is_file() {
        return Err(err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a regular file",
        )));
    }
    let mut buf = Vec::new();
    file.take(MAX_FILE_SIZE + 1)
        .read_to_end(&mut buf)
        .map_err(err)?;
    if buf.len() as u64 > MAX_FILE_SIZE {
        return Err(err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {MAX_FILE_SIZE} bytes"),
        )));
    }
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

/// Lines of `name:password:uid:gid:gecos:home:shell`; malformed lines and
/// out-of-range ids are skipped, as runc's parser does.
fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            let uid = f.get(2)?.parse::<u32>().ok().filter(|id| *id <= MAX_ID)?;
            let gid = f.get(3)?.parse::<u32>().ok().filter(|id| *id <= MAX_ID)?;
            Some(PasswdEntry {
                name: (*f.first()?).to_owned(),
                uid,
                gid,
                home: f.get(5).copied().unwrap_or_default().to_owned(),
            })
        })
        .collect()
}

/// Lines of `name:password:gid:member,member`.
fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            let gid = f.get(2)?.parse::<u32>().ok().filter(|id| *id <= MAX_ID)?;
            Some(GroupEntry {
                name: (*f.first()?).to_owned(),
                gid,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        alice:x:1000:1000:Alice:/home/alice:/bin/sh\n\
        nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
    const GROUP: &str = "root:x:0:\n\
        alice:x:1000:\n\
        audio:x:29:alice,bob\n\
        video:x:44:bob\n\
        staff:x:50:alice\n";

    fn rootfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs_err::create_dir_all(dir.path().join("etc")).unwrap();
        fs_err::write(dir.path().join("etc/passwd"), PASSWD).unwrap();
        fs_err::write(dir.path().join("etc/group"), GROUP).unwrap();
        dir
    }

    fn user(rootfs: &Path, spec: &str) -> Result<ResolvedUser, EngineError> {
        resolve(rootfs, spec, &[])
    }

    #[test]
    fn empty_user_is_root_with_home_from_passwd() {
        let dir = rootfs();
        let u = user(dir.path(), "").unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (0, 0, "/root"));
        assert_eq!(u.additional_gids, vec![0]);
    }

    #[test]
    fn name_resolves_uid_gid_home_and_member_groups() {
        let dir = rootfs();
        let u = user(dir.path(), "alice").unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (1000, 1000, "/home/alice"));
        assert_eq!(u.additional_gids, vec![1000, 29, 50]);
    }

    #[test]
    fn uid_with_an_entry_takes_its_gid_and_groups() {
        let dir = rootfs();
        let u = user(dir.path(), "1000").unwrap();
        assert_eq!((u.uid, u.gid), (1000, 1000));
        assert_eq!(u.additional_gids, vec![1000, 29, 50]);
    }

    #[test]
    fn uid_without_an_entry_is_allowed_with_gid_zero() {
        let dir = rootfs();
        let u = user(dir.path(), "4242").unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (4242, 0, "/"));
    }

    #[test]
    fn uid_colon_gid_and_name_colon_group() {
        let dir = rootfs();
        let u = user(dir.path(), "1:2").unwrap();
        assert_eq!((u.uid, u.gid), (1, 2));
        assert_eq!(u.additional_gids, vec![2]);
        let u = user(dir.path(), "alice:video").unwrap();
        assert_eq!((u.uid, u.gid), (1000, 44));
        // An explicit group replaces the membership list, as runc.
        assert_eq!(u.additional_gids, vec![44]);
    }

    #[test]
    fn group_add_merges_names_and_gids() {
        let dir = rootfs();
        let u = resolve(
            dir.path(),
            "alice",
            &["video".into(), "29".into(), "777".into()],
        )
        .unwrap();
        assert_eq!(u.additional_gids, vec![1000, 29, 50, 44, 777]);
        let err = resolve(dir.path(), "alice", &["nosuch".into()]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unable to find group \"nosuch\": no matching entry in the image's /etc/group"
        );
    }

    #[test]
    fn unknown_names_are_errors_naming_them() {
        let dir = rootfs();
        let err = user(dir.path(), "mallory").unwrap_err();
        assert_eq!(
            err.to_string(),
            "unable to find user \"mallory\": no matching entry in the image's /etc/passwd"
        );
        assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument);
        let err = user(dir.path(), "alice:nogroup").unwrap_err();
        assert!(matches!(err, EngineError::UnknownGroup { ref group } if group == "nogroup"));
    }

    #[test]
    fn out_of_range_ids_are_errors_never_root() {
        let dir = rootfs();
        for bad in [
            "4294967296",
            "-1",
            "+1",
            "2147483648",
            "4294967295",
            "99999999999999999999",
            "0:-1",
            "alice:4294967296",
        ] {
            let err = user(dir.path(), bad).unwrap_err();
            assert!(
                matches!(err, EngineError::InvalidId { .. }),
                "{bad}: {err:?}"
            );
        }
        let err = user(dir.path(), "4294967296").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid uid or gid \"4294967296\": must be a number from 0 to 2147483647 or a name"
        );
        assert!(resolve(dir.path(), "", &["-5".into()]).is_err());
    }

    #[test]
    fn no_passwd_allows_numbers_but_not_names() {
        let dir = tempfile::tempdir().unwrap();
        let u = user(dir.path(), "").unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (0, 0, "/"));
        assert_eq!(user(dir.path(), "5:6").unwrap().gid, 6);
        assert!(matches!(
            user(dir.path(), "alice"),
            Err(EngineError::UnknownUser { .. })
        ));
    }

    #[test]
    fn symlinked_passwd_pointing_out_of_the_rootfs_is_not_read() {
        let host = tempfile::tempdir().unwrap();
        let secret = host.path().join("passwd");
        fs_err::write(&secret, "mallory:x:4321:4321:HOSTSECRET:/host:/bin/sh\n").unwrap();
        let dir = tempfile::tempdir().unwrap();
        fs_err::create_dir_all(dir.path().join("etc")).unwrap();
        std::os::unix::fs::symlink(&secret, dir.path().join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink(
            "../../../../../../../../..".to_owned() + secret.to_str().unwrap(),
            dir.path().join("etc/group"),
        )
        .unwrap();

        let err = resolve(dir.path(), "mallory", &[]).unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(matches!(err, EngineError::UnknownUser { .. }), "{text}");
        assert!(
            !text.contains("HOSTSECRET") && !text.contains("4321"),
            "{text}"
        );
        let err = resolve(dir.path(), "", &["mallory".into()]).unwrap_err();
        assert!(matches!(err, EngineError::UnknownGroup { .. }));
        let u = user(dir.path(), "").unwrap();
        assert_eq!(u.home, "/");
    }

    #[test]
    fn passwd_that_is_not_a_regular_file_or_too_big_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::create_dir_all(dir.path().join("etc/passwd")).unwrap();
        let err = user(dir.path(), "").unwrap_err();
        assert_eq!(err.to_string(), "read /etc/passwd in the image");

        let dir = tempfile::tempdir().unwrap();
        fs_err::create_dir_all(dir.path().join("etc")).unwrap();
        let big = "x".repeat(usize::try_from(MAX_FILE_SIZE).unwrap() + 10);
        fs_err::write(dir.path().join("etc/passwd"), big).unwrap();
        assert!(matches!(
            user(dir.path(), ""),
            Err(EngineError::ReadImageFile { .. })
        ));
    }

    #[test]
    fn passwd_as_fifo_or_device_link_neither_blocks_nor_reads_the_host() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::create_dir_all(dir.path().join("etc")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            dir.path().join("etc/passwd"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        assert!(matches!(
            user(dir.path(), ""),
            Err(EngineError::ReadImageFile { .. })
        ));
        // `/dev/zero` resolves inside the rootfs, where it does not exist.
        std::os::unix::fs::symlink("/dev/zero", dir.path().join("etc/group")).unwrap();
        assert!(matches!(
            resolve(dir.path(), "0", &["audio".into()]),
            Err(EngineError::ReadImageFile { .. } | EngineError::UnknownGroup { .. })
        ));
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let entries =
            parse_passwd("bad\nx:x:notanumber:0::/:\nok:x:7:8::/h:\nbig:x:4294967295:0::/:\n");
        assert_eq!(entries.len(), 1);
        assert_eq!((entries[0].uid, entries[0].gid), (7, 8));
    }
}
