//! The runtime side of the lifecycle: create, start, state, kill, delete.

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use oci_spec::runtime::LinuxNamespaceType;
use rustix::fs::{Mode, OFlags};
use wharf_sys::process::Forked;

use crate::cgroup::{fork_entering, ContainerCgroup};
use crate::config::{self, NamespacePlan};
use crate::error::{Result, RuntimeError};
use crate::hooks::{self, Phase};
use crate::id::ContainerId;
use crate::init::{self, InitArgs};
use crate::process::ProcessPlan;
use crate::state::{self, Record, StateRoot, Status, FIFO_FILE};
use crate::sync::{self, Message, SyncSocket};

/// A request to create a container from a bundle.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    /// The new container's id.
    pub id: ContainerId,
    /// The bundle directory (holding `config.json`).
    pub bundle: PathBuf,
    /// Where to write the init's pid.
    pub pid_file: Option<PathBuf>,
    /// Unix socket to send the terminal master to (`process.terminal`).
    pub console_socket: Option<PathBuf>,
    /// How many descriptors after stdio to pass on (`--preserve-fds`, plus
    /// `LISTEN_FDS`).
    pub preserve_fds: i32,
    /// Use `MS_MOVE` + chroot instead of pivot_root.
    pub no_pivot: bool,
}

/// Removes what a failed create made: kills the init, removes the state
/// directory. Disarmed by [`CreateGuard::commit`].
struct CreateGuard<'a> {
    root: &'a StateRoot,
    id: &'a ContainerId,
    pids: Vec<i32>,
    cgroup: Option<ContainerCgroup>,
    armed: bool,
}

impl CreateGuard<'_> {
    fn commit(mut self) {
        self.armed = false;
    }
}

impl Drop for CreateGuard<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        for pid in &self.pids {
            if let Some(pid) = rustix::process::Pid::from_raw(*pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                let _ = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty());
            }
        }
        if let Some(cgroup) = &self.cgroup {
            if let Err(e) = cgroup.destroy() {
                tracing::warn!(container = %self.id, error = %e, "cgroup cleanup after failed create");
            }
        }
        if let Err(e) = self.root.remove(self.id) {
            tracing::warn!(container = %self.id, error = %e, "cleanup after failed create");
        }
    }
}

/// What [`create`] leaves running.
#[derive(Debug)]
pub(crate) struct Created {
    pub(crate) record: Record,
    /// With `relay_terminal`: the socket the terminal master arrives on.
    pub(crate) console: Option<OwnedFd>,
}

fn absolute(path: &Path) -> Result<PathBuf> {
    let path = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| RuntimeError::host("get current directory", ".", e))?
            .join(path)
    };
    fs_err::canonicalize(&path).map_err(|e| RuntimeError::host("resolve", &path, e))
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string()
}

fn owner_name() -> String {
    let uid = rustix::process::getuid();
    if uid.is_root() {
        return String::new();
    }
    uid.as_raw().to_string()
}

fn init_failure(f: sync::SyncFailure) -> RuntimeError {
    RuntimeError::Init {
        chain: f.describe(),
    }
}

/// Creates a container: everything up to the init waiting on the exec fifo.
pub(crate) fn create(
    root: &StateRoot,
    req: &CreateRequest,
    relay_terminal: bool,
) -> Result<Created> {
    let bundle = absolute(&req.bundle)?;
    let spec = config::load(&bundle)?;
    let rootfs = config::rootfs_path(&bundle, &spec)?;
    let rootfs = fs_err::canonicalize(&rootfs)
        .map_err(|e| RuntimeError::host("resolve rootfs", &rootfs, e))?;
    if !rootfs.is_dir() {
        return Err(RuntimeError::config(format!(
            "rootfs {} is not a directory",
            rootfs.display()
        )));
    }
    let plan = NamespacePlan::from_spec(&spec);
    let linux = spec.linux().as_ref();
    let mut process = ProcessPlan::from_spec(
        spec.process().as_ref().expect("validated by config::load"),
        linux.and_then(|l| l.personality().clone()),
    );
    process.preserve_fds = req.preserve_fds;
    process.seccomp = crate::seccomp::Seccomp::prepare(
        linux.and_then(|l| l.seccomp().as_ref()),
        req.id.as_str(),
        &bundle,
        &spec,
        "creating",
        &root.dir().join(".seccomp"),
    )?;
    let mut local_console = None;
    let console = match (process.terminal, relay_terminal, &req.console_socket) {
        (true, _, Some(path)) => Some(connect_console(path)?),
        (true, true, None) => {
            let (theirs, ours) = console_pair()?;
            local_console = Some(ours);
            Some(theirs)
        }
        (true, false, None) => {
            return Err(RuntimeError::InvalidArgument {
                reason: "process.terminal is set: --console-socket is required".into(),
            })
        }
        (false, _, Some(_)) => {
            return Err(RuntimeError::InvalidArgument {
                reason: "--console-socket given, but process.terminal is false".into(),
            })
        }
        (false, _, None) => None,
    };

    let dir = root.create_container_dir(&req.id)?;
    let mut guard = CreateGuard {
        root,
        id: &req.id,
        pids: Vec::new(),
        cgroup: None,
        armed: true,
    };
    if let Some(cgroup) = ContainerCgroup::plan(&spec, &req.id)? {
        // Noted first: a create killed from here on leaves no state, and
        // `delete` finds the cgroup by this note.
        root.note_cgroup(&req.id, &cgroup.location());
        cgroup.create(&spec)?;
        guard.cgroup = Some(cgroup);
    }
    let fifo_path = dir.join(FIFO_FILE);
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo_path,
        rustix::fs::FileType::Fifo,
        Mode::from_raw_mode(0o622),
        0,
    )
    .map_err(|e| RuntimeError::host("create exec fifo", &fifo_path, e.into()))?;
    let fifo = rustix::fs::open(&fifo_path, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| RuntimeError::host("open exec fifo", &fifo_path, e.into()))?;
    let (parent, child) = sync::pair().map_err(|e| RuntimeError::sys("create sync socket", e))?;

    // The cgroup namespace is made by the init once it is in its cgroup, so
    // that the namespace's root is the container's cgroup.
    let clone_flags = if plan.single_clone() {
        plan.create & !(libc::CLONE_NEWCGROUP as u64)
    } else {
        0
    };
    let entry = guard
        .cgroup
        .as_ref()
        .map(ContainerCgroup::entry)
        .transpose()?;
    // The child only runs `init::run`, which ends in exec or _exit.
    let (forked, in_v2) = fork_entering(clone_flags, entry.as_ref())
        .map_err(|e| RuntimeError::sys("clone the container's init", e))?;
    let pid = match forked {
        Forked::Child => {
            drop(parent);
            init::run(InitArgs {
                cgroup_entry: entry,
                spec: &spec,
                rootfs: rootfs.clone(),
                plan: plan.clone(),
                process,
                sync: child,
                fifo,
                console_socket: console,
                no_pivot: req.no_pivot,
                cgroup: guard.cgroup.as_ref().map(ContainerCgroup::location),
            })
        }
        Forked::Parent(pid) => pid.as_raw_nonzero().get(),
    };
    drop(child);
    drop(fifo);
    drop(console);
    guard.pids.push(pid);
    // The child entered the v1 hierarchies itself, first thing, and was
    // created in the v2 directory where the kernel allows. Where it was not,
    // it is moved there before it runs any container code (the
    // intermediate's fork, the init, inherits it): first thing, or while the
    // init mounts (see `init::placed_first`).
    let place = || -> Result<()> {
        let placed = match &entry {
            Some(entry) if !in_v2 => entry.add_v2(pid).map_err(|source| RuntimeError::Cgroup {
                op: "move the init into the cgroup",
                source,
            }),
            _ => Ok(()),
        }
        .and_then(|()| send(&parent, &Message::Placed));
        // An init that failed while it mounted has said why: that is the
        // error, not the move or the send its exit broke.
        placed.map_err(|e| match parent.pending_error() {
            Some(chain) => RuntimeError::Init { chain },
            None => e,
        })
    };
    let placed_first = init::placed_first(&plan);
    if placed_first {
        place()?;
    }

    let uid_maps = linux
        .and_then(|l| l.uid_mappings().clone())
        .unwrap_or_default();
    let gid_maps = linux
        .and_then(|l| l.gid_mappings().clone())
        .unwrap_or_default();
    let mut init_pid = pid;
    if plan.single_clone() {
        if plan.creates(LinuxNamespaceType::User) {
            crate::idmap::write_maps(pid, &uid_maps, &gid_maps)?;
            send_idmapped_mounts(&parent, &spec, pid)?;
            send(&parent, &Message::MapsWritten)?;
        }
        if !placed_first {
            place()?;
        }
    } else {
        if plan.creates(LinuxNamespaceType::User) {
            parent.expect(&Message::UsernsReady).map_err(init_failure)?;
            crate::idmap::write_maps(pid, &uid_maps, &gid_maps)?;
            send_idmapped_mounts(&parent, &spec, pid)?;
            send(&parent, &Message::MapsWritten)?;
        }
        match parent.recv() {
            Ok(Some(Message::Pid(p))) => init_pid = p,
            Ok(Some(Message::Error(chain))) => return Err(RuntimeError::Init { chain }),
            Ok(other) => {
                return Err(RuntimeError::Init {
                    chain: format!("expected the init's pid, got {other:?}"),
                })
            }
            Err(e) => return Err(RuntimeError::sys("read sync socket", e)),
        }
        // The intermediate process exits right after reporting.
        if let Some(p) = rustix::process::Pid::from_raw(pid) {
            let _ = rustix::process::waitpid(Some(p), rustix::process::WaitOptions::empty());
        }
        guard.pids = vec![init_pid];
    }

    let mut record = Record {
        id: req.id.to_string(),
        pid: init_pid,
        pid_start: state::process_start(init_pid).unwrap_or(0),
        bundle: bundle.clone(),
        rootfs: rootfs.clone(),
        created: now_rfc3339(),
        owner: owner_name(),
        config: spec.clone(),
        cgroup: guard.cgroup.as_ref().map(ContainerCgroup::location),
    };
    parent.expect(&Message::MountsDone).map_err(init_failure)?;
    let state_json = record.oci_state_json("creating");
    for phase in [Phase::Prestart, Phase::CreateRuntime] {
        if let Err(f) = hooks::run(&phase.hooks(&spec), &state_json) {
            let _ = parent.send(&Message::Error(format!("{} hook failed", phase.name())));
            return Err(RuntimeError::Hook {
                phase: phase.name(),
                path: f.path,
                reason: f.reason,
            });
        }
    }
    send(&parent, &Message::HooksDone(state_json))?;
    parent.expect(&Message::Ready).map_err(init_failure)?;
    // Re-read: in the two-stage path the start time is only stable now.
    record.pid_start = state::process_start(init_pid).ok_or_else(|| RuntimeError::Init {
        chain: "the init exited during setup".into(),
    })?;
    root.save(&record)?;
    if let Some(path) = &req.pid_file {
        write_pid_file(path, init_pid)?;
    }
    send(&parent, &Message::Created)?;
    guard.commit();
    Ok(Created {
        record,
        console: local_console,
    })
}

/// Clones each idmapped bind source on the host, idmaps it with the
/// container's user namespace, and sends the detached trees to the init in
/// config order (before `MapsWritten`).
fn send_idmapped_mounts(sock: &SyncSocket, spec: &oci_spec::runtime::Spec, pid: i32) -> Result<()> {
    let plans = crate::mounts::idmapped_binds(spec)?;
    if plans.is_empty() {
        return Ok(());
    }
    let userns_path = PathBuf::from(format!("/proc/{pid}/ns/user"));
    let userns = rustix::fs::open(
        &userns_path,
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| RuntimeError::host("open user namespace", &userns_path, e.into()))?;
    for plan in plans {
        let crate::mounts::Kind::Bind { source, recursive } = &plan.kind else {
            continue;
        };
        let tree = wharf_sys::mount::clone_tree(rustix::fs::CWD, source, *recursive)
            .map_err(|e| RuntimeError::host("clone idmapped mount source", source, e))?;
        wharf_sys::mount::set_attrs(
            tree.as_fd(),
            *recursive,
            wharf_sys::mount::MountAttrs {
                set: wharf_sys::mount::ATTR_IDMAP,
                ..Default::default()
            },
            Some(userns.as_fd()),
        )
        .map_err(|e| RuntimeError::host("idmap mount", source, e))?;
        wharf_sys::console::send_fd(sock.as_fd(), tree.as_fd(), b"idmap")
            .map_err(|e| RuntimeError::sys("send idmapped mount to the init", e))?;
    }
    Ok(())
}

fn send(sock: &SyncSocket, msg: &Message) -> Result<()> {
    sock.send(msg)
        .map_err(|e| RuntimeError::sys("write sync socket", e))
}

/// A connected pair for a terminal the runtime relays itself: the init
/// sends the master on one end, the runtime receives it on the other.
pub(crate) fn console_pair() -> Result<(OwnedFd, OwnedFd)> {
    rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::STREAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| RuntimeError::sys("create console socket pair", std::io::Error::from(e)))
}

pub(crate) fn connect_console(path: &Path) -> Result<OwnedFd> {
    let sock = rustix::net::socket_with(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::STREAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| RuntimeError::host("create console socket", path, e.into()))?;
    let addr = rustix::net::SocketAddrUnix::new(path)
        .map_err(|e| RuntimeError::host("console socket address", path, e.into()))?;
    rustix::net::connect(&sock, &addr)
        .map_err(|e| RuntimeError::host("connect to console socket", path, e.into()))?;
    Ok(sock)
}

/// Writes `pid` to `path` atomically, as runc does.
pub(crate) fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let path = if path.is_absolute() {
        path.to_path_buf()
    } else {
        absolute_parent(path)?
    };
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    let mut f =
        fs_err::File::create(&tmp).map_err(|e| RuntimeError::host("write pid file", &tmp, e))?;
    f.write_all(pid.to_string().as_bytes())
        .map_err(|e| RuntimeError::host("write pid file", &tmp, e))?;
    drop(f);
    fs_err::rename(&tmp, &path).map_err(|e| RuntimeError::host("write pid file", &path, e))
}

fn absolute_parent(path: &Path) -> Result<PathBuf> {
    Ok(std::env::current_dir()
        .map_err(|e| RuntimeError::host("get current directory", ".", e))?
        .join(path))
}

/// Releases a created container's init: writes to the exec fifo.
pub(crate) fn start(root: &StateRoot, id: &ContainerId) -> Result<Record> {
    let record = root.load(id)?;
    let status = record.status(root);
    if status != Status::Created {
        return Err(RuntimeError::WrongStatus {
            op: "start",
            id: id.to_string(),
            status: status.as_str(),
        });
    }
    let fifo_path = root.container_dir(id).join(FIFO_FILE);
    let fifo = rustix::fs::open(
        &fifo_path,
        OFlags::WRONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| RuntimeError::host("open exec fifo", &fifo_path, e.into()))?;
    rustix::io::write(&fifo, &[0])
        .map_err(|e| RuntimeError::host("write exec fifo", &fifo_path, e.into()))?;
    drop(fifo);
    fs_err::remove_file(&fifo_path)
        .map_err(|e| RuntimeError::host("remove exec fifo", &fifo_path, e))?;
    let state_json = record.oci_state_json("running");
    if let Err(f) = hooks::run(&Phase::Poststart.hooks(&record.config), &state_json) {
        tracing::warn!(container = %id, hook = %f.path.display(), reason = %f.reason, "poststart hook failed");
    }
    Ok(record)
}

/// Opens a pidfd of the container's init, checking it is still the same
/// process (not a reused pid).
pub(crate) fn init_pidfd(record: &Record) -> Option<OwnedFd> {
    let pid = rustix::process::Pid::from_raw(record.pid)?;
    let fd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()?;
    (state::process_start(record.pid) == Some(record.pid_start)).then_some(fd)
}

/// Sends `signal` to the init (and with `all`, to every process of the
/// container).
pub(crate) fn kill(root: &StateRoot, id: &ContainerId, signal: i32, all: bool) -> Result<()> {
    let record = root.load(id)?;
    let status = record.status(root);
    if status == Status::Stopped {
        return Err(RuntimeError::WrongStatus {
            op: "kill",
            id: id.to_string(),
            status: status.as_str(),
        });
    }
    let init = init_pidfd(&record).ok_or_else(|| RuntimeError::WrongStatus {
        op: "kill",
        id: id.to_string(),
        status: Status::Stopped.as_str(),
    })?;
    // With --all, pin every process with a pidfd before signalling any: a
    // process that exits meanwhile is fine, a reused pid is never hit.
    let others: Vec<OwnedFd> = if all {
        pids(&record)?
            .into_iter()
            .filter(|pid| *pid != record.pid)
            .filter_map(rustix::process::Pid::from_raw)
            .filter_map(|p| {
                rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok()
            })
            .collect()
    } else {
        Vec::new()
    };
    let sent = wharf_sys::process::pidfd_send_signal(init.as_fd(), signal);
    for fd in &others {
        let _ = wharf_sys::process::pidfd_send_signal(fd.as_fd(), signal);
    }
    match sent {
        Ok(()) => Ok(()),
        // The init exited after the status check; with --all the others
        // were still signalled.
        Err(e) if all && e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
        Err(source) => Err(RuntimeError::Signal {
            id: id.to_string(),
            signal,
            source,
        }),
    }
}

/// What a killed `create` left: the directory, maybe a cgroup (its init
/// exits on its own once the sync socket closes; anything still inside is
/// killed with the cgroup).
fn delete_unrecorded(root: &StateRoot, id: &ContainerId) -> Result<()> {
    if let Some(location) = root.noted_cgroup(id) {
        ContainerCgroup::at(&location).destroy()?;
    }
    root.remove(id)
}

/// Waits until the process `pidfd` refers to has exited.
fn wait_exit(pidfd: &OwnedFd, timeout: Duration) -> bool {
    let mut fds = [rustix::event::PollFd::new(
        pidfd,
        rustix::event::PollFlags::IN,
    )];
    let ts = rustix::event::Timespec {
        tv_sec: timeout.as_secs() as i64,
        tv_nsec: i64::from(timeout.subsec_nanos()),
    };
    matches!(rustix::event::poll(&mut fds, Some(&ts)), Ok(n) if n > 0)
}

/// Deletes a container: kills a created (or, with `force`, running) one,
/// runs the poststop hooks, removes its state. With `force`, also a
/// container whose `create` was killed before it saved any state: its
/// noted cgroup (whatever is left in it is killed) and directory go.
pub(crate) fn delete(root: &StateRoot, id: &ContainerId, force: bool) -> Result<()> {
    let record = match root.load(id) {
        Err(RuntimeError::NotFound { .. }) if force && root.container_dir(id).is_dir() => {
            return delete_unrecorded(root, id);
        }
        other => other?,
    };
    let status = record.status(root);
    let cgroup = record.cgroup();
    match status {
        Status::Running | Status::Paused if !force => {
            return Err(RuntimeError::WrongStatus {
                op: "delete",
                id: id.to_string(),
                status: status.as_str(),
            })
        }
        Status::Created | Status::Running | Status::Paused => {
            if let Some(cgroup) = &cgroup {
                // A frozen process cannot act on SIGKILL.
                cgroup.thaw()?;
            }
            if let Some(pidfd) = init_pidfd(&record) {
                if !plan_has_pidns(&record) {
                    for pid in pids(&record)? {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                }
                let _ = wharf_sys::process::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL);
                if !wait_exit(&pidfd, Duration::from_secs(10)) {
                    return Err(RuntimeError::sys(
                        format!("wait for container {id} to exit after SIGKILL"),
                        std::io::Error::from(std::io::ErrorKind::TimedOut),
                    ));
                }
            }
        }
        Status::Stopped => {}
    }
    if let Some(cgroup) = &cgroup {
        cgroup.destroy()?;
    }
    let state_json = record.oci_state_json("stopped");
    if let Err(f) = hooks::run(&Phase::Poststop.hooks(&record.config), &state_json) {
        tracing::warn!(container = %id, hook = %f.path.display(), reason = %f.reason, "poststop hook failed");
    }
    root.remove(id)
}

fn plan_has_pidns(record: &Record) -> bool {
    NamespacePlan::from_spec(&record.config).has(LinuxNamespaceType::Pid)
}

/// Pids of the container's processes (in the runtime's pid namespace): its
/// cgroup's processes; without a cgroup, the members of its pid namespace,
/// or, when it shares the host's, the init and its descendants.
pub(crate) fn pids(record: &Record) -> Result<Vec<i32>> {
    if let Some(cgroup) = record.cgroup() {
        return cgroup.pids();
    }
    if !record.init_alive() {
        return Ok(Vec::new());
    }
    let procs = list_processes()?;
    if plan_has_pidns(record) {
        let ns = |pid: i32| fs_err::read_link(format!("/proc/{pid}/ns/pid")).ok();
        let Some(init_ns) = ns(record.pid) else {
            return Ok(Vec::new());
        };
        let mut out: Vec<i32> = procs
            .iter()
            .map(|(pid, _)| *pid)
            .filter(|pid| ns(*pid).as_ref() == Some(&init_ns))
            .collect();
        out.sort_unstable();
        return Ok(out);
    }
    let mut out = vec![record.pid];
    let mut i = 0;
    while i < out.len() {
        let parent = out[i];
        out.extend(
            procs
                .iter()
                .filter(|(_, ppid)| *ppid == parent)
                .map(|(pid, _)| *pid),
        );
        i += 1;
    }
    out.sort_unstable();
    Ok(out)
}

/// (pid, ppid) of every process.
fn list_processes() -> Result<Vec<(i32, i32)>> {
    let mut out = Vec::new();
    let entries = fs_err::read_dir("/proc").map_err(|e| RuntimeError::host("list", "/proc", e))?;
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = fs_err::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let ppid = rest
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        out.push((pid, ppid));
    }
    Ok(out)
}

/// Freezes every process of a running container.
pub(crate) fn pause(root: &StateRoot, id: &ContainerId) -> Result<()> {
    let record = root.load(id)?;
    let status = record.status(root);
    if status != Status::Running {
        return Err(RuntimeError::WrongStatus {
            op: "pause",
            id: id.to_string(),
            status: status.as_str(),
        });
    }
    no_cgroup(&record, id)?.freeze()
}

/// Thaws a paused container.
pub(crate) fn resume(root: &StateRoot, id: &ContainerId) -> Result<()> {
    let record = root.load(id)?;
    let status = record.status(root);
    if status != Status::Paused {
        return Err(RuntimeError::WrongStatus {
            op: "resume",
            id: id.to_string(),
            status: status.as_str(),
        });
    }
    no_cgroup(&record, id)?.thaw()
}

/// Applies new resources to a live container and records them.
pub(crate) fn update(
    root: &StateRoot,
    id: &ContainerId,
    resources: &oci_spec::runtime::LinuxResources,
) -> Result<()> {
    let mut record = root.load(id)?;
    let status = record.status(root);
    if status == Status::Stopped {
        return Err(RuntimeError::WrongStatus {
            op: "update",
            id: id.to_string(),
            status: status.as_str(),
        });
    }
    no_cgroup(&record, id)?.update(resources, &record.config)?;
    if let Some(linux) = record.config.linux_mut() {
        linux.set_resources(Some(resources.clone()));
    }
    root.save(&record)
}

/// Resource usage of a container.
pub(crate) fn stats(root: &StateRoot, id: &ContainerId) -> Result<wharf_cgroups::Stats> {
    let record = root.load(id)?;
    no_cgroup(&record, id)?.stats()
}

fn no_cgroup(record: &Record, id: &ContainerId) -> Result<ContainerCgroup> {
    record
        .cgroup()
        .ok_or_else(|| RuntimeError::InvalidArgument {
            reason: format!("container {id} has no cgroup (the host has no cgroup hierarchy)"),
        })
}
