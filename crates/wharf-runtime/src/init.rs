//! The container's init: what runs in the forked child from `clone(2)` up to
//! `execve` of the user's program. See docs/runtime-create.md for the
//! ordered sequence and what the parent does at each sync point.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};
use wharf_cgroups::{Entry, Location};
use wharf_sys::process::{exit_now, fork_with, Forked};
use wharf_sys::Root;

use crate::cgroup;
use crate::cgroupfs::CgroupView;
use crate::config::{ns_flag, NamespacePlan};
use crate::error::{render_chain, step_err, Step, StepError};
use crate::hooks::{self, Phase};
use crate::process::ProcessPlan;
use crate::rootfs::{self, RootfsSetup};
use crate::sync::{Message, SyncSocket};

/// What the init needs; everything was opened by the parent before fork.
#[derive(Debug)]
pub(crate) struct InitArgs<'a> {
    pub(crate) spec: &'a Spec,
    pub(crate) rootfs: PathBuf,
    pub(crate) plan: NamespacePlan,
    pub(crate) process: ProcessPlan,
    pub(crate) sync: SyncSocket,
    /// The exec fifo, opened read-write: the init blocks reading it until
    /// `start` writes a byte.
    pub(crate) fifo: OwnedFd,
    /// Unix socket to send the terminal's master to.
    pub(crate) console_socket: Option<OwnedFd>,
    pub(crate) no_pivot: bool,
    /// The container's cgroup (the runtime made it before the fork).
    pub(crate) cgroup: Option<Location>,
    /// What the init (or the intermediate process) enters that cgroup with,
    /// first thing (`cgroup::enter`).
    pub(crate) cgroup_entry: Option<Entry>,
}

/// Whether the init must be in its cgroup before it does anything else.
/// (It enters the v1 hierarchies itself, first thing; this is about the v2
/// directory where it could not be created in it, see
/// `cgroup::fork_entering`.) It must when it makes a cgroup namespace
/// (whose root is the cgroup it is in) or joins namespaces through an
/// intermediate process (which the init, forked from it, inherits the
/// cgroup from). Otherwise the runtime moves it while it mounts: the move
/// waits for an RCU grace period (several milliseconds), which the mounts
/// then overlap; the init waits for `Placed` before it reports its mounts
/// done, so it is in its cgroup before any hook or container code runs.
pub(crate) fn placed_first(plan: &NamespacePlan) -> bool {
    !plan.single_clone() || plan.creates(LinuxNamespaceType::Cgroup)
}

/// Runs the init; never returns. Errors go to the parent over the sync
/// socket as a rendered chain.
pub(crate) fn run(mut args: InitArgs<'_>) -> ! {
    match cgroup::enter(args.cgroup_entry.take()).and_then(|()| setup(&args)) {
        Ok(never) => match never {},
        Err(err) => {
            let chain = render_chain(&err);
            if args.sync.send(&Message::Error(chain.clone())).is_err() {
                // The runtime is gone (the container was started): the log
                // is all that is left.
                tracing::error!(error = %chain, "container init failed after start");
            }
            exit_now(127)
        }
    }
}

/// Receives the idmapped mount trees the runtime prepared (one per idmapped
/// bind mount, in config order), then `MapsWritten`.
fn recv_maps(args: &InitArgs<'_>) -> Result<Vec<OwnedFd>, StepError> {
    let count = crate::mounts::idmapped_binds(args.spec)
        .map_err(|e| step_err("plan idmapped mounts", e.to_string()))?
        .len();
    let mut trees = Vec::with_capacity(count);
    for _ in 0..count {
        let mut buf = [0u8; 16];
        let (fd, _) = wharf_sys::console::recv_fd(args.sync.as_fd(), &mut buf)
            .step(|| "receive an idmapped mount from the runtime".into())?;
        trees.push(fd);
    }
    recv_expect(&args.sync, &Message::MapsWritten)?;
    Ok(trees)
}

fn recv_expect(sync: &SyncSocket, expected: &Message) -> Result<(), StepError> {
    sync.expect(expected).map_err(|f| {
        step_err(
            format!("wait for {expected:?} from the runtime"),
            f.describe(),
        )
    })
}

fn setup(args: &InitArgs<'_>) -> Result<std::convert::Infallible, StepError> {
    // Nobody (not even a process in the container's pid namespace) may
    // ptrace or open /proc/<pid>/ of the init before it execs.
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .step(|| "set non-dumpable".into())?;
    rustix::process::umask(rustix::fs::Mode::empty());
    let placed_first = placed_first(&args.plan);
    if placed_first {
        recv_expect(&args.sync, &Message::Placed)?;
    }

    let creates_user = args.plan.creates(LinuxNamespaceType::User);
    let idmapped = if args.plan.single_clone() {
        if creates_user {
            recv_maps(args)?
        } else {
            Vec::new()
        }
    } else {
        join_and_unshare(args)?
    };
    if args.plan.single_clone() && args.plan.creates(LinuxNamespaceType::Cgroup) {
        // Now that the init is in its cgroup, that cgroup is the root of
        // the new cgroup namespace.
        wharf_sys::process::unshare(libc::CLONE_NEWCGROUP as u64)
            .step(|| "create the cgroup namespace".into())?;
    }
    let in_userns = args.plan.has(LinuxNamespaceType::User);
    if in_userns {
        // Become root of the new user namespace (the maps are written).
        wharf_sys::process::set_res_gid(0).step(|| "become gid 0 in the user namespace".into())?;
        wharf_sys::process::set_res_uid(0).step(|| "become uid 0 in the user namespace".into())?;
    }
    rustix::process::setsid().step(|| "setsid".into())?;

    let setup = RootfsSetup {
        spec: args.spec,
        rootfs: &args.rootfs,
        in_userns,
        idmapped,
        cgroups: CgroupView {
            ns: args.plan.has(LinuxNamespaceType::Cgroup),
            container: args.cgroup.as_ref(),
        },
    };
    // Without a mount namespace of its own nothing may be mounted (it would
    // land in the runtime's namespace): the init only chroots into the rootfs.
    let prepared = if args.plan.has(LinuxNamespaceType::Mount) {
        Some(rootfs::prepare(setup)?)
    } else {
        tracing::warn!(
            "no mount namespace: the rootfs, mounts, masked and read-only paths are not set up"
        );
        None
    };
    let tty = if args.process.terminal {
        Some(setup_console(prepared.as_ref().map(|p| &p.root), args)?)
    } else {
        None
    };

    if !placed_first {
        recv_expect(&args.sync, &Message::Placed)?;
    }
    args.sync
        .send(&Message::MountsDone)
        .step(|| "report mounts done".into())?;
    let state_json = match args.sync.recv() {
        Ok(Some(Message::HooksDone(state))) => state,
        Ok(Some(Message::Error(e))) => return Err(step_err("runtime hooks", e)),
        Ok(other) => {
            return Err(step_err(
                "wait for the runtime's hooks",
                format!("got {other:?}"),
            ))
        }
        Err(e) => return Err(e).step(|| "wait for the runtime's hooks".into()),
    };
    hooks::run(&Phase::CreateContainer.hooks(args.spec), &state_json).map_err(|f| {
        step_err(
            format!("createContainer hook {}", f.path.display()),
            f.reason,
        )
    })?;

    let devnull = match prepared {
        Some(prepared) => {
            drop(prepared.root);
            rootfs::enter(&args.rootfs, args.no_pivot, prepared.on_initramfs)?;
            Some(prepared.devnull)
        }
        None => {
            // The root is still the config's root: chroot into it.
            rustix::process::chdir(&args.rootfs)
                .step(|| format!("chdir to {}", args.rootfs.display()))?;
            rustix::process::chroot(".").step(|| "chroot into the rootfs".into())?;
            rustix::process::chdir("/").step(|| "chdir to /".into())?;
            None
        }
    };

    let linux = args.spec.linux().as_ref();
    if let Some(hostname) = args.spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        rustix::system::sethostname(hostname.as_bytes())
            .step(|| format!("set hostname {hostname:?}"))?;
    }
    if let Some(domain) = args.spec.domainname().as_deref().filter(|h| !h.is_empty()) {
        rustix::system::setdomainname(domain.as_bytes())
            .step(|| format!("set domainname {domain:?}"))?;
    }
    let mut sysctls: Vec<_> = linux
        .and_then(|l| l.sysctl().clone())
        .unwrap_or_default()
        .into_iter()
        .collect();
    sysctls.sort();
    for (key, value) in sysctls {
        crate::sysctl::write(&key, &value).step(|| format!("set sysctl {key}={value}"))?;
    }
    if let Some(devnull) = devnull {
        let root = Root::open(Path::new("/")).step(|| "open container root".into())?;
        if let Some(paths) = linux.and_then(|l| l.readonly_paths().as_ref()) {
            rootfs::readonly_paths(&root, paths)?;
        }
        if let Some(paths) = linux.and_then(|l| l.masked_paths().as_ref()) {
            rootfs::mask_paths(&root, devnull.as_fd(), paths)?;
        }
        if args
            .spec
            .root()
            .as_ref()
            .and_then(|r| r.readonly())
            .unwrap_or(false)
        {
            rootfs::readonly_root()?;
        }
    }

    let prepared = args.process.apply(in_userns)?;
    args.sync
        .send(&Message::Ready)
        .step(|| "report ready".into())?;
    // Only a recorded container may wait: if the runtime dies before saving
    // its state, this gets EOF and the init exits rather than wait forever
    // for a start nobody can give (holding the caller's descriptors).
    recv_expect(&args.sync, &Message::Created)?;

    // Block until `start` writes to the exec fifo.
    let mut byte = [0u8; 1];
    loop {
        match rustix::io::read(&args.fifo, &mut byte) {
            Ok(1) => break,
            Ok(_) => return Err(step_err("wait for start", "exec fifo closed")),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e).step(|| "wait for start".into()),
        }
    }
    hooks::run(
        &Phase::StartContainer.hooks(args.spec),
        &state_json.replace("\"creating\"", "\"running\""),
    )
    .map_err(|f| {
        step_err(
            format!("startContainer hook {}", f.path.display()),
            f.reason,
        )
    })?;
    Err(prepared.exec(tty))
}

/// Joins namespaces by path, creates the rest with `unshare`, has the parent
/// write the id maps, and forks once more so the init lands in the new (or
/// joined) pid and time namespaces. The intermediate process reports the
/// init's pid and exits.
fn join_and_unshare(args: &InitArgs<'_>) -> Result<Vec<OwnedFd>, StepError> {
    for (typ, path) in &args.plan.join {
        let file = rustix::fs::open(
            path,
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .step(|| format!("open namespace {}", path.display()))?;
        wharf_sys::process::setns(file.as_fd(), ns_flag(*typ))
            .step(|| format!("join {typ:?} namespace {}", path.display()))?;
    }
    if args.plan.create != 0 {
        wharf_sys::process::unshare(args.plan.create).step(|| "unshare namespaces".into())?;
    }
    let mut idmapped = Vec::new();
    if args.plan.creates(LinuxNamespaceType::User) {
        args.sync
            .send(&Message::UsernsReady)
            .step(|| "report user namespace".into())?;
        idmapped = recv_maps(args)?;
    }
    if let Some(offsets) = args
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.time_offsets().clone())
    {
        let mut text = String::new();
        for (clock, off) in offsets {
            text.push_str(&format!(
                "{clock} {} {}\n",
                off.secs().unwrap_or(0),
                off.nanosecs().unwrap_or(0)
            ));
        }
        let mut f =
            wharf_sys::procfs::open_process_self("timens_offsets", rustix::fs::OFlags::WRONLY)
                .step(|| "open timens_offsets".into())?;
        std::io::Write::write_all(&mut f, text.as_bytes()).step(|| "write time offsets".into())?;
    }
    // The intermediate only reports the init's pid and exits.
    fork_reporting_pid(&args.sync, "fork the init")?;
    Ok(idmapped)
}

/// Forks (`CLONE_PARENT`, so the runtime is the child's parent) the process
/// that carries on; this one reports the child's pid over `sync` and exits.
/// Returns in the child once that report is sent: both write to the same
/// socket, and the runtime reads the pid first, so the child must not send
/// before it (a fast init's `MountsDone` otherwise could).
pub(crate) fn fork_reporting_pid(sync: &SyncSocket, what: &'static str) -> Result<(), StepError> {
    let (wait, sent) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .step(|| format!("{what}: pipe"))?;
    match fork_with(libc::CLONE_PARENT as u64).step(|| what.into())? {
        Forked::Child => {
            drop(sent);
            // One byte once the pid is sent, or end of file if the parent
            // died first (the runtime then fails on the missing pid).
            let mut byte = [0u8; 1];
            loop {
                match rustix::io::read(&wait, &mut byte) {
                    Err(rustix::io::Errno::INTR) => continue,
                    Ok(_) => return Ok(()),
                    Err(e) => return Err(e).step(|| format!("{what}: wait for the pid report")),
                }
            }
        }
        Forked::Parent(pid) => {
            drop(wait);
            let _ = sync.send(&Message::Pid(pid.as_raw_nonzero().get()));
            let _ = rustix::io::write(&sent, &[1]);
            exit_now(0)
        }
    }
}

/// Creates the terminal in the container's devpts, sends the master to the
/// console socket and bind-mounts the slave over `/dev/console`.
fn setup_console(root: Option<&Root>, args: &InitArgs<'_>) -> Result<OwnedFd, StepError> {
    let socket = args.console_socket.as_ref().ok_or_else(|| {
        step_err(
            "set up terminal",
            "process.terminal is set but no console socket was given",
        )
    })?;
    let host_root;
    let (root, ptmx_path) = match root {
        Some(root) => (root, "/dev/pts/ptmx"),
        None => {
            host_root = Root::open(Path::new("/")).step(|| "open /".into())?;
            (&host_root, "/dev/ptmx")
        }
    };
    let ptmx = root
        .resolve(Path::new(ptmx_path))
        .step(|| format!("open {ptmx_path} in the container (is devpts mounted?)"))?;
    let (master, slave) =
        wharf_sys::console::open_pty(ptmx.as_fd()).step(|| "open pseudo-terminal".into())?;
    if let Some(size) = args.spec.process().as_ref().and_then(|p| p.console_size()) {
        wharf_sys::console::set_window_size(&master, size.height() as u16, size.width() as u16)
            .step(|| "set console size".into())?;
    }
    if ptmx_path == "/dev/ptmx" {
        // The runtime's own mount namespace: /dev/console is the host's.
        wharf_sys::console::send_fd(socket.as_fd(), master.as_fd(), b"/dev/ptmx")
            .step(|| "send terminal master to the console socket".into())?;
        return Ok(slave);
    }
    let console = root
        .ensure_file(Path::new("/dev/console"), 0o666)
        .step(|| "create /dev/console".into())?;
    let st = rustix::fs::fstat(&console).step(|| "stat /dev/console".into())?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Symlink {
        return Err(step_err(
            "create /dev/console",
            "it is a symlink in the rootfs",
        ));
    }
    let tree = wharf_sys::mount::clone_tree(slave.as_fd(), Path::new(""), false)
        .step(|| "clone terminal for /dev/console".into())?;
    wharf_sys::mount::attach(tree.as_fd(), console.as_fd())
        .step(|| "bind terminal onto /dev/console".into())?;
    wharf_sys::console::send_fd(socket.as_fd(), master.as_fd(), b"/dev/ptmx")
        .step(|| "send terminal master to the console socket".into())?;
    Ok(slave)
}
