//! Namespaced sysctls, written through a verified procfs handle
//! (CVE-2025-52881 class: never `open("/proc/sys/…")` by path).

use std::io::Write;

use oci_spec::runtime::LinuxNamespaceType;

use crate::config::NamespacePlan;
use crate::error::{Result, RuntimeError};

/// Checks that `key` is a well-formed sysctl that lives in a namespace the
/// container has its own copy of.
pub(crate) fn check(key: &str, plan: &NamespacePlan) -> Result<()> {
    if key.is_empty()
        || key
            .split(['.', '/'])
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(RuntimeError::config(format!("invalid sysctl name {key:?}")));
    }
    const IPC: &[&str] = &[
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    let needs = if IPC.contains(&key) || key.starts_with("fs.mqueue.") {
        LinuxNamespaceType::Ipc
    } else if key.starts_with("net.") {
        LinuxNamespaceType::Network
    } else if key == "kernel.hostname" || key == "kernel.domainname" {
        LinuxNamespaceType::Uts
    } else {
        return Err(RuntimeError::config(format!(
            "sysctl {key:?} is not in a separate kernel namespace"
        )));
    };
    if !plan.has(needs) {
        return Err(RuntimeError::config(format!(
            "sysctl {key:?} needs a private {needs:?} namespace"
        )));
    }
    Ok(())
}

/// The path of `key` under `/proc/sys`.
fn proc_path(key: &str) -> String {
    format!("sys/{}", key.replace('.', "/"))
}

/// Writes `value` to the sysctl `key` of the calling process's namespaces.
pub(crate) fn write(key: &str, value: &str) -> std::io::Result<()> {
    let mut file = wharf_sys::procfs::open(&proc_path(key), rustix::fs::OFlags::WRONLY)?;
    file.write_all(value.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(flags: u64) -> NamespacePlan {
        NamespacePlan {
            create: flags,
            join: vec![],
        }
    }

    #[test]
    fn accepts_namespaced_and_rejects_host_sysctls() {
        let all = plan((libc::CLONE_NEWNET | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS) as u64);
        assert!(check("net.ipv4.ip_forward", &all).is_ok());
        assert!(check("kernel.shmmax", &all).is_ok());
        assert!(check("fs.mqueue.msg_max", &all).is_ok());
        assert!(check("kernel.core_pattern", &all).is_err());
        assert!(check("net.ipv4.ip_forward", &plan(0)).is_err());
        assert!(check("net...x", &all).is_err());
        assert!(check("net/../../kernel/core_pattern", &all).is_err());
    }

    #[test]
    fn key_maps_to_proc_sys_path() {
        assert_eq!(proc_path("net.ipv4.ip_forward"), "sys/net/ipv4/ip_forward");
    }
}
