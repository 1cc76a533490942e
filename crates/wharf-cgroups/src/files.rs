//! Reading and writing cgroupfs files, with errors that name the file.
//!
//! cgroup files are written with one `write(2)` each (the kernel parses one
//! value per write) and read whole; errors carry the path in [`CgroupError`]
//! fields, so the plain `io::Error` underneath is kept without a path.

use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, CWD};

use crate::error::CgroupError;

/// Reads a whole cgroup (or proc) file.
pub(crate) fn read(path: &Path) -> Result<String, CgroupError> {
    read_io(path).map_err(|source| CgroupError::Read {
        path: path.to_path_buf(),
        source,
    })
}

pub(crate) fn read_io(path: &Path) -> io::Result<String> {
    let mut text = String::new();
    std::fs::OpenOptions::new()
        .read(true)
        .open(path)?
        .read_to_string(&mut text)?;
    Ok(text)
}

/// Reads a file holding one unsigned number; `max` reads as `None`.
pub(crate) fn read_u64(path: &Path) -> Result<Option<u64>, CgroupError> {
    let text = read(path)?;
    let value = text.trim();
    if value == "max" {
        return Ok(None);
    }
    value.parse().map(Some).map_err(|_| CgroupError::Parse {
        path: path.to_path_buf(),
        content: value.to_owned(),
    })
}

/// Writes `value` to the cgroup file `path` in one write.
pub(crate) fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    let result = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut file| file.write_all(value.as_bytes()));
    result.map_err(|source| CgroupError::Write {
        path: path.to_path_buf(),
        value: value.to_owned(),
        source,
    })
}

/// Creates `path` and any missing parents (mode 0755); an existing directory is
/// fine (a container whose cgroup already exists reuses it, as runc does).
/// Returns the directories it created, outermost first.
pub(crate) fn create_dir_all(path: &Path) -> Result<Vec<PathBuf>, CgroupError> {
    let mut missing = Vec::new();
    let mut cursor = Some(path);
    while let Some(dir) = cursor {
        if dir.is_dir() {
            break;
        }
        missing.push(dir.to_path_buf());
        cursor = dir.parent();
    }
    missing.reverse();
    for dir in &missing {
        match rustix::fs::mkdir(dir, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(errno) => {
                return Err(CgroupError::CreateDir {
                    path: dir.clone(),
                    source: errno.into(),
                })
            }
        }
    }
    Ok(missing)
}

/// The names of the subdirectories of `dir` (child cgroups).
fn subdirs(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let fd = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut out = Vec::new();
    for entry in rustix::fs::Dir::read_from(&fd)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy();
        if entry.file_type() == FileType::Directory && name != "." && name != ".." {
            out.push(dir.join(name.as_ref()));
        }
    }
    Ok(out)
}

/// How long [`remove_dir_tree`] retries a busy cgroup (processes still exiting).
const REMOVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Removes the cgroup `dir` and its child cgroups, deepest first. cgroupfs only
/// allows `rmdir` (its files cannot be unlinked); a cgroup whose processes are
/// still exiting answers EBUSY for a moment, so that is retried. A missing
/// directory is already removed. The usual cgroup has no children: its
/// `rmdir` is tried before anything is listed.
pub(crate) fn remove_dir_tree(dir: &Path) -> Result<(), CgroupError> {
    let rmdir = || rustix::fs::unlinkat(CWD, dir, AtFlags::REMOVEDIR);
    match rmdir() {
        Ok(()) | Err(rustix::io::Errno::NOENT) => return Ok(()),
        // Child cgroups (or processes still exiting): EBUSY, as for a
        // non-empty directory.
        Err(rustix::io::Errno::BUSY | rustix::io::Errno::NOTEMPTY) => {}
        Err(errno) => {
            return Err(CgroupError::RemoveDir {
                path: dir.to_path_buf(),
                source: errno.into(),
            })
        }
    }
    let children = match subdirs(dir) {
        Ok(children) => children,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(CgroupError::RemoveDir {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    for child in children {
        remove_dir_tree(&child)?;
    }
    let start = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        match rmdir() {
            Ok(()) | Err(rustix::io::Errno::NOENT) => return Ok(()),
            Err(rustix::io::Errno::BUSY | rustix::io::Errno::AGAIN)
                if start.elapsed() < REMOVE_TIMEOUT =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            Err(errno) => {
                return Err(CgroupError::RemoveDir {
                    path: dir.to_path_buf(),
                    source: errno.into(),
                })
            }
        }
    }
}

/// Parses a `cgroup.procs` file: one pid per line.
pub(crate) fn parse_pids(path: &Path, text: &str) -> Result<Vec<i32>, CgroupError> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(|line| {
            line.parse().map_err(|_| CgroupError::Parse {
                path: path.to_path_buf(),
                content: line.to_owned(),
            })
        })
        .collect()
}

/// Reads the pids in `dir/cgroup.procs`.
pub(crate) fn read_pids(dir: &Path) -> Result<Vec<i32>, CgroupError> {
    let path = dir.join("cgroup.procs");
    let text = read(&path)?;
    parse_pids(&path, &text)
}

/// Parses a flat-keyed file (`cpu.stat`, `cgroup.events`, `memory.stat`):
/// `key value` per line; returns the value for `key`.
pub(crate) fn keyed<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pids_parse_one_per_line() {
        let path = Path::new("/x/cgroup.procs");
        assert_eq!(
            parse_pids(path, "1\n23\n\n456\n").unwrap(),
            vec![1, 23, 456]
        );
        assert_eq!(parse_pids(path, "").unwrap(), Vec::<i32>::new());
        let err = parse_pids(path, "1\nx\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "parse /x/cgroup.procs: unexpected content \"x\""
        );
    }

    #[test]
    fn keyed_finds_exact_keys() {
        let text = "populated 1\nfrozen 0\n";
        assert_eq!(keyed(text, "frozen"), Some("0"));
        assert_eq!(keyed(text, "populated"), Some("1"));
        assert_eq!(keyed(text, "froze"), None);
    }

    #[test]
    fn create_and_remove_tree_on_a_plain_directory() {
        let tmp = std::env::temp_dir().join(format!("wharf-cgroups-files-{}", std::process::id()));
        let leaf = tmp.join("a/b");
        let created = create_dir_all(&leaf).unwrap();
        assert_eq!(created.last(), Some(&leaf));
        assert!(create_dir_all(&leaf).unwrap().is_empty());
        std::fs::DirBuilder::new().create(leaf.join("c")).unwrap();
        remove_dir_tree(&tmp).unwrap();
        assert!(!tmp.exists());
        remove_dir_tree(&tmp).unwrap();
    }
}
