//! Name DNS on user networks: the containers' records for `wharf-net`'s
//! embedded DNS server, and the server's process.
//!
//! One server runs per state root, detached in its own session like a
//! monitor, started by whichever start first finds none running (the
//! records decide that under their lock, so a start never races a server
//! that is exiting) and exiting by itself once no network has records.

use std::ffi::OsString;
use std::net::IpAddr;
use std::os::fd::AsFd as _;
use std::path::{Path, PathBuf};

use wharf_net::dns::{DnsEntry, DnsRecords};
use wharf_net::Network;

use super::net_err;
use super::EndpointState;
use crate::state::ContainerId;
use crate::{Engine, EngineError};

/// The entry point the server's process runs: `<exe> __dns <dir>`.
pub const DNS_ENTRY: &str = "__dns";

/// Runs the DNS server over the records in `dir` until none is left,
/// forwarding other names to the host's resolvers (the process entry of
/// `__dns`).
///
/// # Errors
///
/// The records or the listeners failed.
pub fn serve_dns(dir: &Path) -> Result<(), EngineError> {
    let upstream =
        wharf_net::dns::host_resolvers(Path::new("/etc/resolv.conf")).map_err(net_err)?;
    wharf_net::dns::serve(dir, &upstream).map_err(net_err)
}

impl Engine {
    fn dns_records(&self) -> DnsRecords {
        DnsRecords::new(&self.dns_dir())
    }

    fn dns_dir(&self) -> PathBuf {
        self.root().join("dns")
    }

    /// Registers a container's names and addresses on `network` and starts
    /// the server if none runs.
    pub(crate) fn dns_add(
        &self,
        id: &ContainerId,
        network: &Network,
        name: &str,
        endpoint: &EndpointState,
    ) -> Result<(), EngineError> {
        let mut names = vec![name.to_owned()];
        names.extend(endpoint.aliases.iter().cloned());
        names.dedup();
        let entry = DnsEntry {
            owner: id.to_string(),
            names,
            addresses: endpoint
                .endpoint
                .addresses
                .iter()
                .map(ipnet::IpNet::addr)
                .collect(),
        };
        let listen: Vec<IpAddr> = endpoint.endpoint.gateways.clone();
        let spawn = self
            .dns_records()
            .add(&network.name, &listen, &entry)
            .map_err(net_err)?;
        if spawn {
            self.spawn_dns_server()?;
        }
        Ok(())
    }

    pub(crate) fn dns_remove(
        &self,
        id: &ContainerId,
        network: &Network,
    ) -> Result<(), EngineError> {
        self.dns_records()
            .remove(&network.name, id.as_str())
            .map_err(net_err)?;
        Ok(())
    }

    pub(crate) fn dns_remove_network(&self, network: &Network) -> Result<(), EngineError> {
        self.dns_records()
            .remove_network(&network.name)
            .map_err(net_err)
    }

    /// Removes the records of this root's containers that are not running.
    pub(crate) fn repair_dns(
        &self,
        stopped: &std::collections::BTreeSet<String>,
    ) -> Result<(), EngineError> {
        let records = self.dns_records();
        for (network, entries) in records.list().map_err(net_err)? {
            for entry in entries {
                if stopped.contains(&entry.owner) {
                    records.remove(&network, &entry.owner).map_err(net_err)?;
                }
            }
        }
        Ok(())
    }

    /// Starts the server detached, from a sealed image of this executable
    /// (it serves from the host's namespace and outlives the caller).
    fn spawn_dns_server(&self) -> Result<(), EngineError> {
        let dir = self.dns_dir();
        let io = |operation| {
            let dir = dir.clone();
            move |source| EngineError::Io {
                operation,
                path: dir,
                source,
            }
        };
        let log_path = dir.join("server.log");
        let log = fs_err::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io("open the DNS server log in"))?;
        let sealed = wharf_sys::exe::sealed_image()
            .and_then(|fd| Ok(rustix::io::fcntl_dupfd_cloexec(&fd, 100)?))
            .map_err(io("seal the binary for the DNS server of"))?;
        use std::os::fd::AsRawFd as _;
        let exe = PathBuf::from(format!("/proc/self/fd/{}", sealed.as_raw_fd()));
        let args: Vec<OsString> = vec![DNS_ENTRY.into(), dir.clone().into_os_string()];
        let env: Vec<(OsString, OsString)> = Vec::new();
        wharf_sys::process::spawn_session(&exe, &args, &env, log.as_fd(), &[])
            .map_err(io("spawn the DNS server of"))?;
        Ok(())
    }
}
