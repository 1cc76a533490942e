//! Running another process in an existing container (`exec`).
//!
//! The runtime forks a child that joins the init's namespaces atomically
//! through a pidfd (`setns(pidfd, flags)`: no `/proc/<pid>/ns` paths, no
//! host directory descriptor kept), forks once more to enter the pid
//! namespace, then applies the process settings and execs. The joining
//! process is non-dumpable until its exec (CVE-2016-9962).

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Process};
use wharf_sys::process::{exit_now, Forked};
use wharf_sys::Root;

use crate::cgroup::{self, fork_entering, ContainerCgroup};
use crate::config::{ns_flag, NamespacePlan};
use crate::container::{init_pidfd, write_pid_file};
use crate::error::{render_chain, Result, RuntimeError, Step, StepError};
use crate::id::ContainerId;
use crate::process::ProcessPlan;
use crate::state::{StateRoot, Status};
use crate::sync::{self, Message, SyncSocket};

/// The process to run: a full OCI `process` document, or overrides of the
/// container's own `process` (the command-line form).
#[derive(Debug, Clone)]
pub enum ExecProcess {
    /// `--process process.json`.
    Full(Box<Process>),
    /// Command-line form.
    Overrides(ExecOverrides),
}

/// Command-line overrides of the container's `process`.
#[derive(Debug, Clone, Default)]
pub struct ExecOverrides {
    /// The command and its arguments.
    pub args: Vec<String>,
    /// Extra `KEY=VALUE` entries (replacing same-named ones).
    pub env: Vec<String>,
    /// Working directory.
    pub cwd: Option<PathBuf>,
    /// `uid[:gid]`, already parsed.
    pub user: Option<(u32, Option<u32>)>,
    /// Extra supplementary groups.
    pub additional_gids: Vec<u32>,
    /// Extra capabilities (added to bounding, effective, permitted, inheritable).
    pub caps: Vec<String>,
    /// Allocate a terminal.
    pub tty: bool,
    /// Set no_new_privs.
    pub no_new_privs: bool,
    /// AppArmor profile.
    pub apparmor: Option<String>,
}

/// A request to run a process in a container.
#[derive(Debug, Clone)]
pub struct ExecRequest {
    /// The container.
    pub id: ContainerId,
    /// What to run.
    pub process: ExecProcess,
    /// Where to write its pid.
    pub pid_file: Option<PathBuf>,
    /// Unix socket to send its terminal master to.
    pub console_socket: Option<PathBuf>,
    /// Descriptors after stdio to pass on.
    pub preserve_fds: i32,
    /// Run in a paused container too (the process starts frozen).
    pub ignore_paused: bool,
}

fn merge(base: &Process, o: &ExecOverrides) -> Result<(Process, Vec<String>)> {
    let mut p = base.clone();
    if o.args.is_empty() {
        return Err(RuntimeError::InvalidArgument {
            reason: "exec needs a command".into(),
        });
    }
    p.set_args(Some(o.args.clone()));
    let mut env = p.env().clone().unwrap_or_default();
    for kv in &o.env {
        let key = kv.split('=').next().unwrap_or_default();
        env.retain(|e| e.split('=').next() != Some(key));
        env.push(kv.clone());
    }
    p.set_env(Some(env));
    if let Some(cwd) = &o.cwd {
        p.set_cwd(cwd.clone());
    }
    if let Some((uid, gid)) = o.user {
        let mut user = p.user().clone();
        user.set_uid(uid);
        if let Some(gid) = gid {
            user.set_gid(gid);
        }
        p.set_user(user);
    }
    if !o.additional_gids.is_empty() {
        let mut user = p.user().clone();
        let mut gids = user.additional_gids().clone().unwrap_or_default();
        gids.extend(&o.additional_gids);
        user.set_additional_gids(Some(gids));
        p.set_user(user);
    }
    p.set_terminal(Some(o.tty));
    if o.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if let Some(profile) = &o.apparmor {
        p.set_apparmor_profile(Some(profile.clone()));
    }
    Ok((p, o.caps.clone()))
}

/// Starts the process; the caller waits for it (foreground) or not.
pub(crate) fn exec(
    root: &StateRoot,
    req: &ExecRequest,
    relay_terminal: bool,
) -> Result<ExecStarted> {
    let record = root.load(&req.id)?;
    let status = record.status(root);
    // A process joining a frozen cgroup freezes before it execs: refuse
    // unless asked, as runc does.
    if status == Status::Stopped || (status == Status::Paused && !req.ignore_paused) {
        return Err(RuntimeError::WrongStatus {
            op: "exec in",
            id: req.id.to_string(),
            status: status.as_str(),
        });
    }
    let base = record.config.process().clone().unwrap_or_default();
    let (process, extra_caps) = match &req.process {
        ExecProcess::Full(p) => ((**p).clone(), Vec::new()),
        ExecProcess::Overrides(o) => merge(&base, o)?,
    };
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(RuntimeError::InvalidArgument {
            reason: "process.args must not be empty".into(),
        });
    }
    if !process.cwd().is_absolute() {
        return Err(RuntimeError::InvalidArgument {
            reason: format!("cwd {} must be absolute", process.cwd().display()),
        });
    }
    let linux = record.config.linux().as_ref();
    let mut plan = ProcessPlan::from_spec(&process, linux.and_then(|l| l.personality().clone()));
    plan.preserve_fds = req.preserve_fds;
    plan.seccomp = crate::seccomp::Seccomp::prepare(
        linux.and_then(|l| l.seccomp().as_ref()),
        &record.id,
        &record.bundle,
        &record.config,
        "running",
        &root.dir().join(".seccomp"),
    )?;
    if !extra_caps.is_empty() {
        let extra = crate::caps::parse_names(&extra_caps)
            .map_err(|reason| RuntimeError::InvalidArgument { reason })?;
        plan.caps.add(&extra);
    }
    let mut local_console = None;
    let console = match (plan.terminal, relay_terminal, &req.console_socket) {
        (true, _, Some(path)) => Some(crate::container::connect_console(path)?),
        (true, true, None) => {
            let (theirs, ours) = crate::container::console_pair()?;
            local_console = Some(ours);
            Some(theirs)
        }
        (true, false, None) => {
            return Err(RuntimeError::InvalidArgument {
                reason: "a terminal needs --console-socket when detached".into(),
            })
        }
        (false, _, _) => None,
    };
    let ns = NamespacePlan::from_spec(&record.config);
    let mut flags = 0u64;
    for typ in [
        LinuxNamespaceType::User,
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Cgroup,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Network,
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Time,
    ] {
        if ns.has(typ) {
            flags |= ns_flag(typ);
        }
    }
    let in_userns = ns.has(LinuxNamespaceType::User);
    let pidfd = init_pidfd(&record).ok_or_else(|| RuntimeError::WrongStatus {
        op: "exec in",
        id: req.id.to_string(),
        status: Status::Stopped.as_str(),
    })?;
    let (parent, child) = sync::pair().map_err(|e| RuntimeError::sys("create sync socket", e))?;

    let cgroup = record.cgroup();
    let entry = cgroup.as_ref().map(ContainerCgroup::entry).transpose()?;
    let (forked, in_v2) =
        fork_entering(0, entry.as_ref()).map_err(|e| RuntimeError::sys("fork exec process", e))?;
    let first = match forked {
        Forked::Child => {
            drop(parent);
            let joined = cgroup::enter(entry).and_then(|()| join(&pidfd, flags, &child));
            let err = match joined {
                Ok(()) => run_child(&plan, console, in_userns, &child),
                Err(e) => e,
            };
            let _ = child.send(&Message::Error(render_chain(&err)));
            exit_now(127)
        }
        Forked::Parent(pid) => pid.as_raw_nonzero().get(),
    };
    drop(child);
    drop(console);
    let mut pid = first;
    if flags & libc::CLONE_NEWPID as u64 != 0 {
        match parent.recv() {
            Ok(Some(Message::Pid(p))) => pid = p,
            Ok(Some(Message::Error(chain))) => {
                reap(first);
                return Err(RuntimeError::Exec { chain });
            }
            other => {
                reap(first);
                return Err(RuntimeError::Exec {
                    chain: format!("expected the process's pid, got {other:?}"),
                });
            }
        }
        reap(first);
    }
    // The process entered the cgroup's v1 hierarchies itself, first thing,
    // and was created in its v2 directory where the kernel allows. Where it
    // was not, it is moved there before it runs anything of its own: it
    // sets itself up meanwhile (the move waits for an RCU grace period) and
    // waits for `Placed` before it reports ready.
    let moved = match &entry {
        Some(entry) if !in_v2 => entry.add_v2(pid).map_err(|source| RuntimeError::Cgroup {
            op: "move the process into the container's cgroup",
            source,
        }),
        _ => Ok(()),
    };
    drop(entry);
    if let Err(e) = moved {
        // A process that failed while it set up has said why.
        let pending = parent.pending_error();
        let _ = parent.send(&Message::Error("not placed in the cgroup".into()));
        reap(pid);
        return Err(match pending {
            Some(chain) => RuntimeError::Exec { chain },
            None => e,
        });
    }
    if let Err(e) = parent.send(&Message::Placed) {
        reap(pid);
        return Err(match parent.pending_error() {
            Some(chain) => RuntimeError::Exec { chain },
            None => RuntimeError::sys("write sync socket", e),
        });
    }
    // The process reports Ready just before execve; a failing execve
    // reports an Error; a successful one closes the socket (CLOEXEC).
    match parent.recv() {
        Ok(Some(Message::Ready)) => {}
        Ok(Some(Message::Error(chain))) => {
            reap(pid);
            return Err(RuntimeError::Exec { chain });
        }
        other => {
            reap(pid);
            return Err(RuntimeError::Exec {
                chain: format!("exec process: unexpected {other:?}"),
            });
        }
    }
    match parent.recv() {
        Ok(None) => {}
        Ok(Some(Message::Error(chain))) => {
            reap(pid);
            return Err(RuntimeError::Exec { chain });
        }
        other => {
            reap(pid);
            return Err(RuntimeError::Exec {
                chain: format!("exec process: unexpected {other:?}"),
            });
        }
    }
    if let Some(path) = &req.pid_file {
        write_pid_file(path, pid)?;
    }
    Ok(ExecStarted {
        pid,
        console: local_console,
    })
}

/// The started process.
#[derive(Debug)]
pub(crate) struct ExecStarted {
    pub(crate) pid: i32,
    /// With `relay_terminal`: the socket the terminal master arrives on.
    pub(crate) console: Option<OwnedFd>,
}

fn reap(pid: i32) {
    if let Some(p) = rustix::process::Pid::from_raw(pid) {
        let _ = rustix::process::waitpid(Some(p), rustix::process::WaitOptions::empty());
    }
}

/// In the first child: become non-dumpable, join the init's user and pid
/// namespaces (the pid namespace only applies to children), fork into it,
/// then join the rest at once. Forking before the mount namespace is joined
/// keeps the runtime's own /proc in view for the fork's checks.
fn join(pidfd: &OwnedFd, flags: u64, sync: &SyncSocket) -> Result<(), StepError> {
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .step(|| "set non-dumpable".into())?;
    let first = flags & (libc::CLONE_NEWUSER | libc::CLONE_NEWPID | libc::CLONE_NEWTIME) as u64;
    if first != 0 {
        wharf_sys::process::setns(pidfd.as_fd(), first)
            .step(|| "join the container's user and pid namespaces".into())?;
    }
    if flags & libc::CLONE_NEWPID as u64 != 0 {
        crate::init::fork_reporting_pid(sync, "fork into the pid namespace")?;
    }
    let rest = flags & !first;
    if rest != 0 {
        wharf_sys::process::setns(pidfd.as_fd(), rest)
            .step(|| "join the container's namespaces".into())?;
    }
    Ok(())
}

fn run_child(
    plan: &ProcessPlan,
    console: Option<OwnedFd>,
    in_userns: bool,
    sync: &SyncSocket,
) -> StepError {
    let result = (|| -> Result<StepError, StepError> {
        rustix::process::setsid().step(|| "setsid".into())?;
        let tty = match console {
            Some(socket) => Some(open_terminal(&socket, plan)?),
            None => None,
        };
        let prepared = plan.apply(in_userns)?;
        sync.expect(&Message::Placed).map_err(|f| {
            crate::error::step_err("wait to be placed in the container's cgroup", f.describe())
        })?;
        sync.send(&Message::Ready).step(|| "report ready".into())?;
        Ok(prepared.exec(tty))
    })();
    match result {
        Ok(e) | Err(e) => e,
    }
}

fn open_terminal(socket: &OwnedFd, _plan: &ProcessPlan) -> Result<OwnedFd, StepError> {
    let root = Root::open(Path::new("/")).step(|| "open container root".into())?;
    let ptmx = root
        .resolve(Path::new("/dev/pts/ptmx"))
        .step(|| "open /dev/pts/ptmx in the container".into())?;
    let (master, slave) =
        wharf_sys::console::open_pty(ptmx.as_fd()).step(|| "open pseudo-terminal".into())?;
    wharf_sys::console::send_fd(socket.as_fd(), master.as_fd(), b"/dev/ptmx")
        .step(|| "send terminal master to the console socket".into())?;
    Ok(slave)
}
