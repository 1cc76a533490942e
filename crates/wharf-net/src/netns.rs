//! Network namespaces held by file descriptors, and running code inside one.
//!
//! Work inside another network namespace happens on a short-lived helper
//! thread that calls `setns(CLONE_NEWNET)` on itself: a network namespace is a
//! per-thread attribute, so the caller's threads (a tokio runtime, the API
//! server) never change namespace, and the helper's namespace dies with it.
//! Sockets (netlink included) belong to the namespace current when they are
//! created, so the closure opens its own [`crate::Netlink`]. The main thread
//! of a multi-threaded process is never moved, and nothing forks.

use std::os::fd::{AsFd as _, BorrowedFd, OwnedFd};
use std::path::Path;

use crate::error::NetError;

const CLONE_NEWNET: u64 = 0x4000_0000;

/// Opens a network namespace file (`/proc/<pid>/ns/net`, a bind-mounted netns
/// under `/run/netns`, `/proc/<pid>/fd/<n>`), read-only and close-on-exec.
///
/// # Errors
///
/// [`NetError::Netns`] `open netns`.
pub fn open(path: &Path) -> Result<OwnedFd, NetError> {
    let file = fs_err::File::open(path).map_err(|source| NetError::Netns {
        operation: "open netns",
        object: path.display().to_string(),
        source,
    })?;
    Ok(OwnedFd::from(file.into_parts().0))
}

/// Creates a new, empty network namespace (only `lo`, down) that lives as
/// long as the returned descriptor or anything else (a process, a link moved
/// into it while it is referenced) holds it.
///
/// # Errors
///
/// [`NetError::Netns`] `create netns` (needs `CAP_SYS_ADMIN`).
pub fn create() -> Result<OwnedFd, NetError> {
    let err = |source| NetError::Netns {
        operation: "create netns",
        object: "new network namespace".to_owned(),
        source,
    };
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name("wharf-netns".to_owned())
            .spawn_scoped(scope, || -> std::io::Result<OwnedFd> {
                wharf_sys::process::unshare(CLONE_NEWNET)?;
                let file = fs_err::File::open("/proc/thread-self/ns/net")?;
                Ok(OwnedFd::from(file.into_parts().0))
            })
            .map_err(err)?;
        match worker.join() {
            Ok(result) => result.map_err(err),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Runs `f` on a helper thread that has joined the network namespace `netns`
/// (see the module documentation), and returns its result. `what` names the
/// namespace in errors.
///
/// # Errors
///
/// [`NetError::Netns`] `spawn netns thread` or `enter netns`, or what `f`
/// returns.
pub fn run_in<T: Send>(
    netns: BorrowedFd<'_>,
    what: &str,
    f: impl FnOnce() -> Result<T, NetError> + Send,
) -> Result<T, NetError> {
    let err = |operation| {
        move |source| NetError::Netns {
            operation,
            object: what.to_owned(),
            source,
        }
    };
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name("wharf-netns".to_owned())
            .spawn_scoped(scope, move || {
                wharf_sys::process::setns(netns.as_fd(), CLONE_NEWNET)
                    .map_err(err("enter netns"))?;
                f()
            })
            .map_err(err("spawn netns thread"))?;
        match worker.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}
