//! The DNS record files: who answers to which name on which network, shared
//! between the engine (which writes them) and the DNS server (which reads
//! them).
//!
//! Layout of the directory (the engine uses `<root>/networks/dns/`):
//!
//! - `<network>.json`: one file per network that has records, written whole:
//!   `{"version":1,"listen":["10.88.0.1"],"entries":[{"owner":"<id>",
//!   "names":["web","alias","4f2a…"],"addresses":["10.88.0.2"]}]}`. A network
//!   file exists exactly while the network has entries: removing the last
//!   entry removes the file.
//! - `records.lock`: every change (and [`DnsRecords::list`]) holds an
//!   exclusive `flock` on it from read to write. A change is written to
//!   `<network>.json.tmp` and renamed over `<network>.json`, so the server,
//!   which reads without the lock, never sees a torn file. Nothing is
//!   fsynced (as [`crate::ipam`]): records only matter while their
//!   containers run, which a power loss ends too; what it could leave stale
//!   the engine's repair (`network prune`, the next start) removes.
//! - `server.lock`: held (`flock`, exclusive) by the running server for its
//!   whole life; its liveness token. Nobody else ever holds it for longer than
//!   a non-blocking probe.
//!
//! The spawn decision: [`DnsRecords::add`] probes `server.lock` while it
//! still holds `records.lock`, and the server releases `server.lock` only
//! while it holds `records.lock` and has seen that no entry is left. So an
//! add either lands before the server's last check (the server sees the entry
//! and stays) or after the server let go (the probe succeeds and the caller
//! spawns a new one); it never lands in between.

use std::fs::File;
use std::io::Write as _;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use crate::error::NetError;
use crate::name::NetworkName;

const RECORDS_LOCK: &str = "records.lock";
const SERVER_LOCK: &str = "server.lock";
const SUFFIX: &str = ".json";
const TEMP_SUFFIX: &str = ".json.tmp";

/// What one container contributes to a network's DNS: the names it answers
/// to and its addresses on that network.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DnsEntry {
    /// Who the entry belongs to: an opaque handle chosen by the caller (the
    /// engine uses the container id). One entry per owner and network.
    pub owner: String,
    /// The names it answers to: the container name, its aliases, its short
    /// id. Single names without a domain; matched case-insensitively.
    pub names: Vec<String>,
    /// Its addresses on the network: IPv4 for `A`, IPv6 for `AAAA`, both for
    /// `PTR`.
    pub addresses: Vec<IpAddr>,
}

/// One network's records as stored: where its server listens and its
/// entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsNetwork {
    /// The network's name.
    pub name: String,
    /// The addresses the server listens on for this network (its gateways),
    /// port 53; queries arriving there see only this network's entries.
    pub listen: Vec<IpAddr>,
    /// The entries, in the order they were added.
    pub entries: Vec<DnsEntry>,
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct NetworkFile {
    version: u32,
    listen: Vec<IpAddr>,
    entries: Vec<DnsEntry>,
}

/// The records of every DNS-enabled network, in one directory (the engine
/// uses `<root>/networks/dns/`): one JSON file per network,
/// `<network-name>.json`. See the module documentation for the files and
/// their locking.
#[derive(Debug, Clone)]
pub struct DnsRecords {
    dir: PathBuf,
}

/// An exclusive `flock` on a lock file, released when dropped (also if the
/// process dies).
#[derive(Debug)]
pub(crate) struct FileLock {
    file: File,
}

/// The server's hold on `server.lock`.
#[derive(Debug)]
pub(crate) struct ServerLock {
    lock: FileLock,
}

impl ServerLock {
    /// Lets go of the lock explicitly (`LOCK_UN` acts on the open file
    /// description, so a copy of the fd inherited by a forked child cannot
    /// keep it held), then closes it.
    pub(crate) fn release(self) {
        let _ = rustix::fs::flock(&self.lock.file, rustix::fs::FlockOperation::Unlock);
    }
}

/// What the server compares to notice that the files changed: per network
/// file its name, inode (a rename makes a new one), mtime and size.
pub(crate) type Fingerprint = Vec<(String, u64, i64, i64, u64)>;

impl DnsRecords {
    /// The records kept in `dir` (created on first write). Does no I/O.
    pub fn new(dir: &Path) -> DnsRecords {
        DnsRecords {
            dir: dir.to_owned(),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Adds `owner`'s entry on `network` (replacing the entry it had there),
    /// and records that the network's server listens on `listen` (the
    /// network's gateways). The entry is on disk before this returns.
    ///
    /// Returns true when no server holds the server lock, i.e. the caller
    /// must spawn one (`wharf __dns <dir>`). The answer is decided under the
    /// same lock a server takes before it exits, so an add never races a
    /// server's exit (see the module documentation). Two racing adds may
    /// both return true; the second server then finds the lock held and
    /// returns at once from [`crate::dns::serve`].
    ///
    /// # Errors
    ///
    /// `InvalidName` for a bad network name, `DnsState`/`ParseDnsRecords` for
    /// the files.
    pub fn add(
        &self,
        network: &str,
        listen: &[IpAddr],
        entry: &DnsEntry,
    ) -> Result<bool, NetError> {
        let network = NetworkName::new(network)?;
        let _lock = self.lock()?;
        let mut file = self.read(&network)?.unwrap_or_default();
        file.listen = listen.to_vec();
        file.entries.retain(|e| e.owner != entry.owner);
        file.entries.push(entry.clone());
        self.write(&network, &file)?;
        Ok(!self.server_held()?)
    }

    /// Removes `owner`'s entry from `network`; the network's file goes with
    /// its last entry. Returns whether there was one (removing twice is not
    /// an error, so that teardown can be repeated after a crash).
    ///
    /// # Errors
    ///
    /// `InvalidName` for a bad network name, `DnsState`/`ParseDnsRecords` for
    /// the files.
    pub fn remove(&self, network: &str, owner: &str) -> Result<bool, NetError> {
        let network = NetworkName::new(network)?;
        let _lock = self.lock()?;
        let Some(mut file) = self.read(&network)? else {
            return Ok(false);
        };
        let before = file.entries.len();
        file.entries.retain(|e| e.owner != owner);
        if file.entries.len() == before {
            return Ok(false);
        }
        if file.entries.is_empty() {
            self.delete(&network)?;
        } else {
            self.write(&network, &file)?;
        }
        Ok(true)
    }

    /// Removes every entry of `network` (when the network is deleted).
    /// Idempotent.
    ///
    /// # Errors
    ///
    /// `InvalidName` for a bad network name, `DnsState` for the files.
    pub fn remove_network(&self, network: &str) -> Result<(), NetError> {
        let network = NetworkName::new(network)?;
        let _lock = self.lock()?;
        self.delete(&network)
    }

    /// Every network that has entries, by name, with its entries in the order
    /// they were added.
    ///
    /// # Errors
    ///
    /// `DnsState`/`ParseDnsRecords` for the files.
    pub fn list(&self) -> Result<Vec<(String, Vec<DnsEntry>)>, NetError> {
        Ok(self
            .networks()?
            .into_iter()
            .map(|n| (n.name, n.entries))
            .collect())
    }

    /// Like [`DnsRecords::list`], with the listen addresses.
    ///
    /// # Errors
    ///
    /// `DnsState`/`ParseDnsRecords` for the files.
    pub fn networks(&self) -> Result<Vec<DnsNetwork>, NetError> {
        if !self.dir.exists() {
            return Ok(Vec::new());
        }
        let _lock = self.lock()?;
        self.read_all()?.into_iter().collect()
    }

    /// Whether a server holds the server lock (is running for this
    /// directory).
    ///
    /// # Errors
    ///
    /// `DnsState` `lock dns server`.
    pub fn server_running(&self) -> Result<bool, NetError> {
        if !self.dir.exists() {
            return Ok(false);
        }
        self.server_held()
    }

    /// Takes the records lock, waiting for it.
    pub(crate) fn lock(&self) -> Result<FileLock, NetError> {
        let path = self.dir.join(RECORDS_LOCK);
        let file = self.open_lock(&path, "lock dns records")?;
        flock(&file, rustix::fs::FlockOperation::LockExclusive).map_err(|source| {
            NetError::DnsState {
                operation: "lock dns records",
                path,
                source,
            }
        })?;
        Ok(FileLock { file })
    }

    /// Takes the server lock unless another server holds it.
    pub(crate) fn try_lock_server(&self) -> Result<Option<ServerLock>, NetError> {
        let path = self.dir.join(SERVER_LOCK);
        let file = self.open_lock(&path, "lock dns server")?;
        match flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(ServerLock {
                lock: FileLock { file },
            })),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
            Err(source) => Err(NetError::DnsState {
                operation: "lock dns server",
                path,
                source,
            }),
        }
    }

    /// Whether the server lock is held, by a non-blocking probe.
    fn server_held(&self) -> Result<bool, NetError> {
        // The probe's lock (if it got it) goes with the descriptor at once.
        Ok(self.try_lock_server()?.is_none())
    }

    /// Whether no network has entries, checked strictly (a file that does
    /// not parse counts as records left). Call under [`DnsRecords::lock`].
    pub(crate) fn is_empty_locked(&self) -> Result<bool, NetError> {
        Ok(self
            .read_all()?
            .iter()
            .all(|n| n.as_ref().is_ok_and(|n| n.entries.is_empty())))
    }

    /// Every network file, each parsed on its own so that one bad file does
    /// not hide the others. Reads without the lock (files are replaced by
    /// rename), so the server can call it at any time.
    pub(crate) fn read_all(&self) -> Result<Vec<Result<DnsNetwork, NetError>>, NetError> {
        let mut networks = Vec::new();
        for name in self.network_names()? {
            let network = NetworkName::new(&name)?;
            match self.read(&network) {
                Ok(Some(file)) => networks.push(Ok(DnsNetwork {
                    name,
                    listen: file.listen,
                    entries: file.entries,
                })),
                // Removed since the directory was read.
                Ok(None) => {}
                Err(e) => networks.push(Err(e)),
            }
        }
        Ok(networks)
    }

    /// The current [`Fingerprint`] of the network files.
    pub(crate) fn fingerprint(&self) -> Result<Fingerprint, NetError> {
        let mut out = Vec::new();
        for name in self.network_names()? {
            let path = self.file_path(&name);
            match fs_err::metadata(&path) {
                Ok(m) => out.push((name, m.ino(), m.mtime(), m.mtime_nsec(), m.size())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(NetError::DnsState {
                        operation: "read dns records",
                        path,
                        source,
                    })
                }
            }
        }
        Ok(out)
    }

    /// The names of the networks that have a file, sorted.
    fn network_names(&self) -> Result<Vec<String>, NetError> {
        let err = |source| NetError::DnsState {
            operation: "read dns records dir",
            path: self.dir.clone(),
            source,
        };
        let entries = match fs_err::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(err(e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(err)?;
            let file_name = entry.file_name();
            let Some(file_name) = file_name.to_str() else {
                continue;
            };
            // Temp files end in `.json.tmp`; anything else is not ours.
            if let Some(name) = file_name.strip_suffix(SUFFIX) {
                if NetworkName::new(name).is_ok() {
                    names.push(name.to_owned());
                }
            }
        }
        names.sort();
        Ok(names)
    }

    fn file_path(&self, network: &str) -> PathBuf {
        self.dir.join(format!("{network}{SUFFIX}"))
    }

    fn open_lock(&self, path: &Path, operation: &'static str) -> Result<File, NetError> {
        let err = |path: &Path| {
            let path = path.to_owned();
            move |source| NetError::DnsState {
                operation,
                path,
                source,
            }
        };
        fs_err::create_dir_all(&self.dir).map_err(err(&self.dir))?;
        let file = fs_err::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(err(path))?;
        Ok(file.into_parts().0)
    }

    fn read(&self, network: &NetworkName) -> Result<Option<NetworkFile>, NetError> {
        let path = self.file_path(network.as_str());
        match fs_err::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| NetError::ParseDnsRecords { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(NetError::DnsState {
                operation: "read dns records",
                path,
                source,
            }),
        }
    }

    fn write(&self, network: &NetworkName, file: &NetworkFile) -> Result<(), NetError> {
        let temp = self.dir.join(format!("{network}{TEMP_SUFFIX}"));
        let path = self.file_path(network.as_str());
        let err = |path: &Path| {
            let path = path.to_owned();
            move |source| NetError::DnsState {
                operation: "write dns records",
                path,
                source,
            }
        };
        let file = NetworkFile {
            version: 1,
            listen: file.listen.clone(),
            entries: file.entries.clone(),
        };
        let json = serde_json::to_vec_pretty(&file).map_err(|e| err(&temp)(e.into()))?;
        let mut out = fs_err::File::create(&temp).map_err(err(&temp))?;
        out.write_all(&json).map_err(err(&temp))?;
        drop(out);
        fs_err::rename(&temp, &path).map_err(err(&path))
    }

    fn delete(&self, network: &NetworkName) -> Result<(), NetError> {
        let path = self.file_path(network.as_str());
        match fs_err::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(NetError::DnsState {
                operation: "remove dns records",
                path,
                source,
            }),
        }
    }
}

fn flock(file: &File, operation: rustix::fs::FlockOperation) -> std::io::Result<()> {
    loop {
        match rustix::fs::flock(file, operation) {
            Err(rustix::io::Errno::INTR) => continue,
            other => return other.map_err(Into::into),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn entry(owner: &str, names: &[&str], addresses: &[&str]) -> DnsEntry {
        DnsEntry {
            owner: owner.into(),
            names: names.iter().map(|n| (*n).to_owned()).collect(),
            addresses: addresses.iter().map(|a| ip(a)).collect(),
        }
    }

    fn records() -> (tempfile::TempDir, DnsRecords) {
        let dir = tempfile::tempdir().unwrap();
        let records = DnsRecords::new(&dir.path().join("dns"));
        (dir, records)
    }

    #[test]
    fn new_does_no_io_and_empty_dir_lists_nothing() {
        let (d, records) = records();
        assert!(records.list().unwrap().is_empty());
        assert!(!records.server_running().unwrap());
        assert!(!records.remove("web", "a").unwrap());
        assert!(!d.path().join("dns/web.json").exists());
    }

    #[test]
    fn add_replace_remove_list() {
        let (d, records) = records();
        let gw = [ip("10.88.0.1")];
        assert!(records
            .add("web", &gw, &entry("a", &["api"], &["10.88.0.2"]))
            .unwrap());
        records
            .add("web", &gw, &entry("b", &["db"], &["10.88.0.3"]))
            .unwrap();
        records
            .add(
                "other",
                &[ip("10.89.0.1")],
                &entry("a", &["api"], &["10.89.0.2"]),
            )
            .unwrap();
        // Replacing keeps one entry per owner, the new one last.
        records
            .add("web", &gw, &entry("a", &["api", "x"], &["10.88.0.9"]))
            .unwrap();
        let list = records.list().unwrap();
        assert_eq!(
            list,
            vec![
                (
                    "other".to_owned(),
                    vec![entry("a", &["api"], &["10.89.0.2"])]
                ),
                (
                    "web".to_owned(),
                    vec![
                        entry("b", &["db"], &["10.88.0.3"]),
                        entry("a", &["api", "x"], &["10.88.0.9"])
                    ]
                ),
            ]
        );
        assert_eq!(records.networks().unwrap()[1].listen, gw);
        let text = fs_err::read_to_string(d.path().join("dns/web.json")).unwrap();
        assert!(text.contains("\"version\": 1"), "{text}");
        assert!(text.contains("\"10.88.0.9\""), "{text}");
        assert!(!d.path().join("dns/web.json.tmp").exists());

        assert!(records.remove("web", "a").unwrap());
        assert!(!records.remove("web", "a").unwrap());
        assert!(records.remove("web", "b").unwrap());
        // The last entry takes the file with it.
        assert!(!d.path().join("dns/web.json").exists());
        records.remove_network("other").unwrap();
        records.remove_network("other").unwrap();
        assert!(records.list().unwrap().is_empty());
        assert!(records.is_empty_locked().unwrap());
    }

    #[test]
    fn bad_network_names_are_refused() {
        let (_d, records) = records();
        let e = records
            .add("../x", &[], &entry("a", &["a"], &[]))
            .unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument);
        assert!(records.remove_network("a/b").is_err());
    }

    #[test]
    fn corrupt_file_is_an_error_naming_it_and_keeps_the_server() {
        let (d, records) = records();
        fs_err::create_dir_all(d.path().join("dns")).unwrap();
        fs_err::write(d.path().join("dns/web.json"), "{").unwrap();
        let e = records.list().unwrap_err();
        assert!(e.to_string().starts_with("parse dns records "), "{e}");
        assert!(e.to_string().ends_with("dns/web.json"), "{e}");
        assert!(!records.is_empty_locked().unwrap());
        // Temp files and foreign files are not networks.
        fs_err::remove_file(d.path().join("dns/web.json")).unwrap();
        fs_err::write(d.path().join("dns/web.json.tmp"), "{").unwrap();
        fs_err::write(d.path().join("dns/notes.txt"), "x").unwrap();
        assert!(records.list().unwrap().is_empty());
        assert!(records.is_empty_locked().unwrap());
    }

    #[test]
    fn add_says_spawn_exactly_when_no_server_holds_the_lock() {
        let (_d, records) = records();
        let e = entry("a", &["api"], &["10.88.0.2"]);
        assert!(records.add("web", &[], &e).unwrap());
        let server = records.try_lock_server().unwrap().expect("no server yet");
        assert!(records.server_running().unwrap());
        assert!(!records.add("web", &[], &e).unwrap());
        // A second server gives way to the first.
        assert!(records.try_lock_server().unwrap().is_none());
        server.release();
        assert!(!records.server_running().unwrap());
        assert!(records.add("web", &[], &e).unwrap());
    }

    #[test]
    fn fingerprint_changes_with_every_write() {
        let (_d, records) = records();
        assert!(records.fingerprint().unwrap().is_empty());
        records
            .add("web", &[], &entry("a", &["api"], &["10.88.0.2"]))
            .unwrap();
        let first = records.fingerprint().unwrap();
        // Same size, same second: the inode still differs after a rename.
        records
            .add("web", &[], &entry("a", &["apj"], &["10.88.0.2"]))
            .unwrap();
        assert_ne!(records.fingerprint().unwrap(), first);
    }
}
