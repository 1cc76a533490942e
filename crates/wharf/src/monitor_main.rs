//! `wharf __monitor ROOT DRIVER ID`: the entry of the per-container
//! monitor (`wharf_engine::monitor`), spawned by `start` with the ready pipe
//! on fd 3 and, when attaching, a socket on fd 4; by `run` with `-` for ID
//! before the container exists, reading its id from fd 5. The same code is the
//! lean `wharf-monitor` executable (`src/bin/wharf-monitor.rs`), which the
//! engine prefers when it is installed beside `wharf`: it runs for every
//! running container, so it links only what the monitor uses.

use std::ffi::OsString;
use std::path::Path;

/// Runs the monitor, or the DNS server of user networks (`__dns DIR`,
/// spawned the same way by the monitor that first needs it); the process
/// exit status.
pub fn main(args: Vec<OsString>) -> i32 {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::WARN)
        .with_target(false)
        .try_init();
    if args
        .get(1)
        .is_some_and(|a| a == wharf_engine::networks::DNS_ENTRY)
    {
        let [_, _, dir] = args.as_slice() else {
            eprintln!("wharf dns: usage: wharf __dns DIR");
            return 2;
        };
        return match wharf_engine::networks::serve_dns(Path::new(dir)) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("wharf dns: {}", wharf_runtime::render_chain(&e));
                1
            }
        };
    }
    // The monitor forks the container's init: it must not run a writable
    // host binary (CVE-2019-5736). `start` spawns it from a sealed image;
    // otherwise this re-executes sealed (fds 3 and 4 survive the exec).
    if let Err(e) = wharf_sys::exe::ensure_sealed() {
        eprintln!("wharf monitor: seal the binary: {e}");
        return 1;
    }
    let [_, _, root, driver, id] = args.as_slice() else {
        eprintln!("wharf monitor: usage: wharf __monitor ROOT DRIVER ID");
        return 2;
    };
    let Some(ready) = wharf_sys::fd::take_inherited(3) else {
        eprintln!("wharf monitor: no ready pipe on fd 3");
        return 2;
    };
    let attach = wharf_sys::fd::take_inherited(4);
    if id == wharf_engine::containers::EARLY_MONITOR_ID {
        // Spawned by `run` before the container exists: the id comes on fd 5.
        let Some(go) = wharf_sys::fd::take_inherited(5) else {
            eprintln!("wharf monitor: no start pipe on fd 5");
            return 2;
        };
        return wharf_engine::monitor::run_early(
            Path::new(root),
            &driver.to_string_lossy(),
            go,
            ready,
            attach,
        );
    }
    wharf_engine::monitor::run(
        Path::new(root),
        &driver.to_string_lossy(),
        &id.to_string_lossy(),
        ready,
        attach,
    )
}
