//! IPAM across processes: concurrent allocators re-exec'd from this test
//! binary never get the same address, and an allocation survives its
//! allocator dying right after it returned.

// The workspace lints want tests inside a `#[cfg(test)]` module, even here.
#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::net::IpAddr;
    use std::path::Path;
    use std::process::{Command, Stdio};

    use wharf_net::{Ipam, NetworkName, Subnet};

    const WORKER_DIR: &str = "WHARF_NET_IPAM_WORKER_DIR";
    const WORKER_MODE: &str = "WHARF_NET_IPAM_WORKER_MODE";
    const PER_WORKER: usize = 25;
    const WORKERS: usize = 6;

    fn subnet() -> Subnet {
        Subnet::new("10.77.0.0/24".parse().unwrap(), None, None).unwrap()
    }

    fn ipam(dir: &Path) -> Ipam {
        Ipam::new(dir, NetworkName::new("procs").unwrap())
    }

    /// In a worker process: allocate and print, then exit or die.
    fn run_worker(dir: &Path, mode: &str) {
        let ipam = ipam(dir);
        let count = if mode == "crash" { 1 } else { PER_WORKER };
        for i in 0..count {
            let address = ipam
                .allocate(&subnet(), &format!("{}-{i}", std::process::id()), None)
                .unwrap();
            println!("ALLOC {address}");
        }
        if mode == "crash" {
            // Dies without unwinding, closing nothing in order: what a SIGKILL
            // right after the call returned leaves.
            std::process::abort();
        }
    }

    fn spawn_worker(test: &str, dir: &Path, mode: &str) -> std::process::Child {
        Command::new(std::env::current_exe().unwrap())
            .args([test, "--exact", "--nocapture", "--test-threads=1"])
            .env(WORKER_DIR, dir)
            .env(WORKER_MODE, mode)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    fn addresses_in(output: &[u8]) -> Vec<IpAddr> {
        String::from_utf8_lossy(output)
            .lines()
            // libtest prints `test <name> ... ` without a newline before the
            // first line a test writes.
            .filter_map(|l| l.split_once("ALLOC ").map(|(_, a)| a))
            .map(|a| a.parse().unwrap())
            .collect()
    }

    #[test]
    fn concurrent_processes_never_share_an_address() {
        if let Some(dir) = std::env::var_os(WORKER_DIR) {
            run_worker(Path::new(&dir), &std::env::var(WORKER_MODE).unwrap());
            return;
        }
        let state = tempfile::tempdir().unwrap();
        let dir = state.path().join("networks/procs");
        let workers: Vec<_> = (0..WORKERS)
            .map(|_| {
                spawn_worker(
                    "tests::concurrent_processes_never_share_an_address",
                    &dir,
                    "normal",
                )
            })
            .collect();
        let mut returned = Vec::new();
        for worker in workers {
            let out = worker.wait_with_output().unwrap();
            assert!(out.status.success(), "worker failed: {:?}", out.status);
            returned.extend(addresses_in(&out.stdout));
        }
        assert_eq!(returned.len(), WORKERS * PER_WORKER);
        let unique: HashSet<_> = returned.iter().collect();
        assert_eq!(
            unique.len(),
            returned.len(),
            "an address was handed out twice"
        );
        let listed = ipam(&dir).list().unwrap();
        let listed: HashSet<_> = listed.iter().map(|a| a.address).collect();
        assert_eq!(listed, returned.iter().copied().collect::<HashSet<_>>());
        let gateway = subnet().gateway();
        assert!(!listed.contains(&gateway));
    }

    #[test]
    fn allocation_survives_a_crash_after_return() {
        if let Some(dir) = std::env::var_os(WORKER_DIR) {
            run_worker(Path::new(&dir), &std::env::var(WORKER_MODE).unwrap());
            return;
        }
        let state = tempfile::tempdir().unwrap();
        let dir = state.path().join("networks/procs");
        let out = spawn_worker(
            "tests::allocation_survives_a_crash_after_return",
            &dir,
            "crash",
        )
        .wait_with_output()
        .unwrap();
        assert!(!out.status.success(), "the worker was meant to abort");
        let returned = addresses_in(&out.stdout);
        assert_eq!(
            returned.len(),
            1,
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let ipam = ipam(&dir);
        assert_eq!(ipam.list().unwrap()[0].address, returned[0]);
        // A temp file left by a crash mid-write is ignored and replaced.
        fs_err::write(dir.join("ipam.json.tmp"), "{garbage").unwrap();
        let next = ipam.allocate(&subnet(), "after", None).unwrap();
        assert_ne!(next, returned[0]);
        assert_eq!(ipam.list().unwrap().len(), 2);
    }
}
