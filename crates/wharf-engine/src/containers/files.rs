//! The files a container gets from its directory: `hosts`, `hostname` and
//! `resolv.conf`, bind-mounted on the same paths under /etc (plan in
//! `spec::mounts`). Written once at create, atomically.

use std::path::Path;

use crate::spec::NetworkMode;
use crate::EngineError;

/// What the files are made from.
#[derive(Debug, Clone)]
pub(crate) struct EtcFiles<'a> {
    pub(crate) hostname: &'a str,
    pub(crate) network: NetworkMode,
    /// `--add-host name:ip` entries.
    pub(crate) extra_hosts: &'a [(String, String)],
    /// The host's /etc/hosts text (for `--network host`).
    pub(crate) host_hosts: &'a str,
    /// The host's /etc/resolv.conf text.
    pub(crate) host_resolv: &'a str,
}

impl EtcFiles<'_> {
    /// Docker's /etc/hosts: the host's own with `--network host`, else the
    /// loopback entries; then `--add-host` entries.
    pub(crate) fn hosts(&self) -> String {
        let mut out = match &self.network {
            NetworkMode::Host => {
                let mut s = self.host_hosts.to_owned();
                if !s.is_empty() && !s.ends_with('\n') {
                    s.push('\n');
                }
                s
            }
            NetworkMode::None | NetworkMode::Bridge | NetworkMode::Join(_) => concat!(
                "127.0.0.1\tlocalhost\n",
                "::1\tlocalhost ip6-localhost ip6-loopback\n",
                "fe00::0\tip6-localnet\n",
                "ff00::0\tip6-mcastprefix\n",
                "ff02::1\tip6-allnodes\n",
                "ff02::2\tip6-allrouters\n",
            )
            .to_owned(),
        };
        for (name, ip) in self.extra_hosts {
            out.push_str(&format!("{ip}\t{name}\n"));
        }
        out
    }

    pub(crate) fn hostname_file(&self) -> String {
        format!("{}\n", self.hostname)
    }

    /// The host's resolv.conf (Docker copies it for `none` and `host`).
    pub(crate) fn resolv_conf(&self) -> String {
        let mut s = self.host_resolv.to_owned();
        if !s.is_empty() && !s.ends_with('\n') {
            s.push('\n');
        }
        s
    }

    /// Writes the three files into `dir`.
    pub(crate) fn write(&self, dir: &Path) -> Result<(), EngineError> {
        for (name, text) in [
            ("hosts", self.hosts()),
            ("hostname", self.hostname_file()),
            ("resolv.conf", self.resolv_conf()),
        ] {
            write_file(&dir.join(name), text.as_bytes())?;
        }
        Ok(())
    }
}

/// Writes `path` through a temporary file and a rename, mode 0644.
pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> Result<(), EngineError> {
    use std::io::Write as _;
    use std::os::unix::fs::PermissionsExt as _;
    let io = |operation| {
        move |source| EngineError::Io {
            operation,
            path: path.to_path_buf(),
            source,
        }
    };
    let tmp = path.with_extension("tmp");
    let mut f = fs_err::File::create(&tmp).map_err(io("create"))?;
    f.write_all(bytes).map_err(io("write"))?;
    f.set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(io("chmod"))?;
    drop(f);
    fs_err::rename(&tmp, path).map_err(io("rename into place"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_with_no_network_has_loopback_and_added_hosts() {
        let extra = vec![("db".to_owned(), "10.0.0.5".to_owned())];
        let files = EtcFiles {
            hostname: "abc",
            network: NetworkMode::None,
            extra_hosts: &extra,
            host_hosts: "1.2.3.4 hosty\n",
            host_resolv: "nameserver 1.1.1.1",
        };
        let hosts = files.hosts();
        assert!(hosts.starts_with("127.0.0.1\tlocalhost\n"), "{hosts}");
        assert!(hosts.ends_with("10.0.0.5\tdb\n"), "{hosts}");
        assert!(!hosts.contains("hosty"));
        assert_eq!(files.resolv_conf(), "nameserver 1.1.1.1\n");
        assert_eq!(files.hostname_file(), "abc\n");
        let host = EtcFiles {
            network: NetworkMode::Host,
            ..files
        };
        assert!(host.hosts().starts_with("1.2.3.4 hosty\n"));
    }
}
