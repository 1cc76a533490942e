//! The `local` driver's options (`type`, `device`, `o`), as Docker's, and
//! the mount they describe: validated at create, planned here, applied by
//! [`super::VolumeStore::acquire`].

use std::collections::BTreeMap;

use rustix::mount::MountFlags;

use crate::error::EngineError;

/// The option keys the local driver takes.
const KEYS: [&str; 3] = ["type", "device", "o"];

/// Validates driver options (`-o k=v`, later ones win as in Docker's map)
/// with Docker's rules: only `type`, `device` and `o`; `type` and `device`
/// go together; `o` needs `device`.
pub(crate) fn validate(
    options: &[(String, String)],
) -> Result<BTreeMap<String, String>, EngineError> {
    let mut map = BTreeMap::new();
    for (key, value) in options {
        if key == "size" {
            return Err(EngineError::InvalidVolumeOption {
                option: key.clone(),
                reason: "quota size requested but no quota support",
            });
        }
        if !KEYS.contains(&key.as_str()) {
            return Err(EngineError::InvalidVolumeOption {
                option: key.clone(),
                reason: "the local driver takes only type, device and o",
            });
        }
        map.insert(key.clone(), value.clone());
    }
    for (key, needs, reason) in [
        ("device", "type", "needs the type option too"),
        ("type", "device", "needs the device option too"),
        ("o", "device", "needs the device option too"),
    ] {
        if map.contains_key(key) && !map.contains_key(needs) {
            return Err(EngineError::InvalidVolumeOption {
                option: key.to_owned(),
                reason,
            });
        }
    }
    Ok(map)
}

/// What `mount(2)` call a volume's options ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MountPlan {
    /// `device`: a filesystem source, or the host path of a bind mount.
    pub(crate) source: String,
    /// `type`; `none` for bind mounts.
    pub(crate) fstype: String,
    /// The flag words of `o` (`ro`, `nosuid`, `bind`, …).
    pub(crate) flags: MountFlags,
    /// The other words of `o`, passed to the filesystem (`size=64m,uid=1000`).
    pub(crate) data: String,
}

impl MountPlan {
    /// Whether it is a bind mount of a host path.
    pub(crate) fn is_bind(&self) -> bool {
        self.flags.contains(MountFlags::BIND)
    }
}

/// The mount a volume's options describe; `None` for a plain directory.
/// Splits `o` as moby's `mount.ParseOptions`: known flag words become
/// `MS_*` flags (their negations clear them), the rest is filesystem data.
pub(crate) fn mount_plan(options: &BTreeMap<String, String>) -> Option<MountPlan> {
    let fstype = options.get("type")?;
    let source = options.get("device")?;
    let mut flags = MountFlags::empty();
    let mut data: Vec<&str> = Vec::new();
    for word in options
        .get("o")
        .map(String::as_str)
        .unwrap_or("")
        .split(',')
        .filter(|w| !w.is_empty())
    {
        match flag_word(word) {
            Some((true, flag)) => flags.insert(flag),
            Some((false, flag)) => flags.remove(flag),
            None => data.push(word),
        }
    }
    Some(MountPlan {
        source: source.clone(),
        fstype: fstype.clone(),
        flags,
        data: data.join(","),
    })
}

/// `(set, flag)` for a mount flag word of `o`.
fn flag_word(word: &str) -> Option<(bool, MountFlags)> {
    Some(match word {
        "defaults" => (true, MountFlags::empty()),
        "ro" => (true, MountFlags::RDONLY),
        "rw" => (false, MountFlags::RDONLY),
        "nosuid" => (true, MountFlags::NOSUID),
        "suid" => (false, MountFlags::NOSUID),
        "nodev" => (true, MountFlags::NODEV),
        "dev" => (false, MountFlags::NODEV),
        "noexec" => (true, MountFlags::NOEXEC),
        "exec" => (false, MountFlags::NOEXEC),
        "sync" => (true, MountFlags::SYNCHRONOUS),
        "async" => (false, MountFlags::SYNCHRONOUS),
        "dirsync" => (true, MountFlags::DIRSYNC),
        "noatime" => (true, MountFlags::NOATIME),
        "atime" => (false, MountFlags::NOATIME),
        "nodiratime" => (true, MountFlags::NODIRATIME),
        "diratime" => (false, MountFlags::NODIRATIME),
        "relatime" => (true, MountFlags::RELATIME),
        "norelatime" => (false, MountFlags::RELATIME),
        "strictatime" => (true, MountFlags::STRICTATIME),
        "nostrictatime" => (false, MountFlags::STRICTATIME),
        "bind" => (true, MountFlags::BIND),
        "rbind" => (true, MountFlags::BIND | MountFlags::REC),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn only_type_device_and_o_are_taken_together() {
        let ok = validate(&opts(&[
            ("type", "tmpfs"),
            ("device", "tmpfs"),
            ("o", "size=64m,uid=1000"),
        ]))
        .unwrap();
        assert_eq!(ok.len(), 3);
        assert!(validate(&[]).unwrap().is_empty());
        assert_eq!(
            validate(&opts(&[("foo", "bar")])).unwrap_err().to_string(),
            "invalid volume option \"foo\": the local driver takes only type, device and o"
        );
        assert_eq!(
            validate(&opts(&[("type", "tmpfs")]))
                .unwrap_err()
                .to_string(),
            "invalid volume option \"type\": needs the device option too"
        );
        assert_eq!(
            validate(&opts(&[("o", "size=1m")]))
                .unwrap_err()
                .to_string(),
            "invalid volume option \"o\": needs the device option too"
        );
        let err = validate(&opts(&[("size", "1g")])).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument);
        // Later values win, as in Docker's map.
        let last = validate(&opts(&[
            ("type", "tmpfs"),
            ("device", "a"),
            ("device", "tmpfs"),
        ]))
        .unwrap();
        assert_eq!(last["device"], "tmpfs");
    }

    #[test]
    fn o_splits_into_flags_and_filesystem_data() {
        let map = validate(&opts(&[
            ("type", "tmpfs"),
            ("device", "tmpfs"),
            ("o", "size=64m,uid=1000,ro,nosuid,noexec,exec"),
        ]))
        .unwrap();
        let plan = mount_plan(&map).unwrap();
        assert_eq!(plan.fstype, "tmpfs");
        assert_eq!(plan.source, "tmpfs");
        assert_eq!(plan.data, "size=64m,uid=1000");
        assert_eq!(plan.flags, MountFlags::RDONLY | MountFlags::NOSUID);
        assert!(!plan.is_bind());

        let bind = validate(&opts(&[
            ("type", "none"),
            ("o", "bind"),
            ("device", "/srv/data"),
        ]))
        .unwrap();
        let plan = mount_plan(&bind).unwrap();
        assert!(plan.is_bind());
        assert_eq!(plan.source, "/srv/data");
        assert_eq!(plan.data, "");

        assert_eq!(mount_plan(&BTreeMap::new()), None);
    }
}
