//! User namespace id maps: written directly when the runtime may, through
//! the setuid `newuidmap`/`newgidmap` helpers otherwise (rootless).

use std::io::Write;
use std::process::Command;

use oci_spec::runtime::LinuxIdMapping;
use rustix::fs::OFlags;

use crate::error::{Result, RuntimeError};

fn render(maps: &[LinuxIdMapping]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

fn write_direct(pid: i32, file: &str, content: &str) -> std::io::Result<()> {
    let mut f = wharf_sys::procfs::open_pid(pid, file, OFlags::WRONLY)?;
    f.write_all(content.as_bytes())
}

fn helper(tool: &str, pid: i32, maps: &[LinuxIdMapping]) -> Result<()> {
    let mut cmd = Command::new(tool);
    cmd.arg(pid.to_string());
    for m in maps {
        cmd.args([
            m.container_id().to_string(),
            m.host_id().to_string(),
            m.size().to_string(),
        ]);
    }
    let out = cmd
        .output()
        .map_err(|e| RuntimeError::host("run", tool, e))?;
    if !out.status.success() {
        return Err(RuntimeError::sys(
            format!(
                "{tool} {pid}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            std::io::Error::other(out.status.to_string()),
        ));
    }
    Ok(())
}

/// Writes the uid and gid maps of the process `pid`.
pub(crate) fn write_maps(
    pid: i32,
    uid_maps: &[LinuxIdMapping],
    gid_maps: &[LinuxIdMapping],
) -> Result<()> {
    let privileged = rustix::process::geteuid().is_root();
    for (file, tool, maps) in [
        ("uid_map", "newuidmap", uid_maps),
        ("gid_map", "newgidmap", gid_maps),
    ] {
        match write_direct(pid, file, &render(maps)) {
            Ok(()) => {}
            Err(e) if !privileged && e.kind() == std::io::ErrorKind::PermissionDenied => {
                helper(tool, pid, maps)?
            }
            Err(e) => {
                return Err(RuntimeError::sys(format!("write /proc/{pid}/{file}"), e));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_one_line_per_mapping() {
        let maps: Vec<LinuxIdMapping> = serde_json::from_value(serde_json::json!([
            {"containerID": 0, "hostID": 100000, "size": 65536},
            {"containerID": 65536, "hostID": 1000, "size": 1}
        ]))
        .unwrap();
        assert_eq!(render(&maps), "0 100000 65536\n65536 1000 1\n");
    }
}
