//! Process creation and the per-process kernel settings rustix lacks.

#![allow(
    unsafe_code,
    reason = "clone(2) with fork semantics and a few prctl/ioprio/sched syscalls"
)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use rustix::process::Pid;

/// Which side of a [`fork_with`] the caller is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    /// In the parent; the child's pid.
    Parent(Pid),
    /// In the child.
    Child,
}

/// Forks with extra `clone(2)` flags (`CLONE_NEW*`, `CLONE_PARENT`): the
/// child gets a copy of the address space, as with `fork(2)`, and is created
/// directly in the new namespaces.
///
/// Refuses to run in a multi-threaded process: the child would only have the
/// calling thread, and locks held by the others would never be released.
/// The child should end with `exec` or [`exit_now`].
pub fn fork_with(flags: u64) -> io::Result<Forked> {
    refuse_threaded()?;
    let flags = flags | libc::SIGCHLD as u64;
    // SAFETY: clone with a NULL stack behaves as fork: the child resumes here
    // on a copy of the parent's stack. No tid pointers or TLS are passed. The
    // process was checked to be single-threaded just above, and nothing in
    // between starts a thread.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_int>(),
            std::ptr::null_mut::<libc::c_int>(),
            0usize,
        )
    };
    forked(rc)
}

/// Fails in a multi-threaded process (see [`fork_with`]).
fn refuse_threaded() -> io::Result<()> {
    if thread_count()? != 1 {
        return Err(io::Error::other(
            "refusing to fork a multi-threaded process",
        ));
    }
    Ok(())
}

/// The side of a fork a `clone`/`clone3` return value says the caller is on.
fn forked(rc: libc::c_long) -> io::Result<Forked> {
    match rc {
        rc if rc < 0 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(
            Pid::from_raw(pid as i32).expect("clone returned a positive pid"),
        )),
    }
}

/// `CLONE_INTO_CGROUP` (Linux 5.7): `clone3` places the child in the cgroup
/// v2 directory `clone_args.cgroup` names. (libc's constant is an `int` that
/// overflows.)
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `struct clone_args` as of Linux 5.7 (`CLONE_ARGS_SIZE_VER2`).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// [`fork_with`], with the child created directly in the cgroup v2
/// directory `cgroup` (`clone3` with `CLONE_INTO_CGROUP`): it never runs
/// outside it, and no process is moved afterwards, which on a busy
/// hierarchy waits for the cgroup-wide lock that a move by pid takes.
///
/// Fails (and creates nothing) where `clone3` or `CLONE_INTO_CGROUP` is
/// unavailable (before Linux 5.7, or filtered by seccomp) or the kernel
/// refuses the cgroup; the caller then forks with [`fork_with`] and moves
/// the child.
pub fn fork_into_cgroup(flags: u64, cgroup: BorrowedFd<'_>) -> io::Result<Forked> {
    refuse_threaded()?;
    let args = CloneArgs {
        flags: flags | CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup.as_raw_fd() as u64,
        ..CloneArgs::default()
    };
    // SAFETY: clone3 with no stack behaves as fork: the child resumes here on
    // a copy of the parent's stack. `args` is a valid clone_args of the size
    // passed, read by the kernel before the call returns; it sets no tid
    // pointers, pidfd or TLS. The process was checked to be single-threaded
    // just above, and nothing in between starts a thread.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    forked(rc)
}

/// Number of threads of the calling process (`/proc/self/stat` field 20).
pub fn thread_count() -> io::Result<usize> {
    let stat = fs_err::read_to_string("/proc/self/stat")?;
    let rest = stat.rfind(')').map(|i| &stat[i + 1..]).unwrap_or_default();
    rest.split_whitespace()
        .nth(17)
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| io::Error::other("unparsable /proc/self/stat"))
}

/// Ends the calling process immediately with `code`, running no destructors
/// or atexit handlers (for forked children).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit takes no pointers and never returns.
    unsafe { libc::_exit(code) }
}

/// Replaces the process image: `execve(path, argv, envp)`. Returns only on
/// failure.
pub fn execve(path: &CString, argv: &[CString], envp: &[CString]) -> io::Error {
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut envp_ptrs: Vec<*const libc::c_char> = envp.iter().map(|e| e.as_ptr()).collect();
    envp_ptrs.push(std::ptr::null());
    // SAFETY: path is NUL-terminated; argv/envp are NULL-terminated arrays of
    // pointers into CStrings that outlive the call.
    unsafe {
        libc::execve(path.as_ptr(), argv_ptrs.as_ptr(), envp_ptrs.as_ptr());
    }
    io::Error::last_os_error()
}

/// Sets the supplementary groups of the calling process.
pub fn set_groups(gids: &[u32]) -> io::Result<()> {
    // SAFETY: the pointer and length describe a live slice of gid_t (u32).
    let rc = unsafe { libc::setgroups(gids.len(), gids.as_ptr()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets real, effective and saved uid of the process (glibc applies it to
/// every thread).
pub fn set_res_uid(uid: u32) -> io::Result<()> {
    // SAFETY: plain integer arguments.
    let rc = unsafe { libc::setresuid(uid, uid, uid) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets real, effective and saved gid of the process.
pub fn set_res_gid(gid: u32) -> io::Result<()> {
    // SAFETY: plain integer arguments.
    let rc = unsafe { libc::setresgid(gid, gid, gid) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets the execution domain (`personality(2)`).
pub fn set_personality(persona: u64) -> io::Result<()> {
    // SAFETY: plain integer argument.
    let rc = unsafe { libc::personality(persona as libc::c_ulong) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets the I/O priority of the calling process (`ioprio_set(IOPRIO_WHO_PROCESS, 0, …)`).
pub fn set_ioprio(class: u32, priority: u32) -> io::Result<()> {
    const IOPRIO_WHO_PROCESS: libc::c_int = 1;
    const IOPRIO_CLASS_SHIFT: u32 = 13;
    let value = (class << IOPRIO_CLASS_SHIFT) | priority;
    // SAFETY: integer arguments only.
    let rc = unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, value) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Scheduling attributes for [`set_sched_attr`] (`struct sched_attr`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchedAttr {
    /// `SCHED_*` policy.
    pub policy: u32,
    /// `SCHED_FLAG_*`.
    pub flags: u64,
    /// Nice value (SCHED_OTHER, SCHED_BATCH).
    pub nice: i32,
    /// Static priority (SCHED_FIFO, SCHED_RR).
    pub priority: u32,
    /// SCHED_DEADLINE runtime, ns.
    pub runtime: u64,
    /// SCHED_DEADLINE deadline, ns.
    pub deadline: u64,
    /// SCHED_DEADLINE period, ns.
    pub period: u64,
}

/// Sets the scheduling policy of the calling process (`sched_setattr(2)`).
pub fn set_sched_attr(attr: SchedAttr) -> io::Result<()> {
    let mut raw = libc::sched_attr {
        size: std::mem::size_of::<libc::sched_attr>() as u32,
        sched_policy: attr.policy,
        sched_flags: attr.flags,
        sched_nice: attr.nice,
        sched_priority: attr.priority,
        sched_runtime: attr.runtime,
        sched_deadline: attr.deadline,
        sched_period: attr.period,
    };
    // SAFETY: `raw` is an initialised sched_attr whose size field matches
    // its type; it outlives the call and the kernel only reads it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_sched_setattr,
            0,
            &mut raw as *mut libc::sched_attr,
            0,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Asks for `signal` when the parent dies (`PR_SET_PDEATHSIG`).
pub fn set_parent_death_signal(signal: i32) -> io::Result<()> {
    let sig = if signal == 0 {
        None
    } else {
        Some(
            rustix::process::Signal::from_named_raw(signal)
                .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?,
        )
    };
    Ok(rustix::process::set_parent_process_death_signal(sig)?)
}

/// Makes the process `cmd` spawns get SIGKILL when the spawning thread dies
/// (`PR_SET_PDEATHSIG`, set in the child before exec; a child whose parent
/// is already gone by then does not exec). For helpers whose work must not
/// outlive a killed caller, such as a firewall transaction the caller's
/// cleanup would otherwise race.
pub fn kill_with_parent(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt as _;
    let parent = rustix::process::getpid();
    // SAFETY: the closure runs in the forked child before exec and only
    // makes async-signal-safe calls (prctl, getppid); it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() != parent.as_raw_nonzero().get() {
                return Err(io::Error::other("the parent exited before the exec"));
            }
            Ok(())
        });
    }
}

/// Unblocks every signal and restores the default disposition of each one
/// that is ignored or caught (Rust ignores SIGPIPE at start-up; ignored
/// signals survive `execve`). The ignored/caught sets come from one read of
/// `/proc/thread-self/status`; without procfs every signal is reset.
pub fn reset_signals() -> io::Result<()> {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset before use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable sigset_t.
    unsafe { libc::sigemptyset(&mut set) };
    // SAFETY: `set` is initialised; the old mask is not requested.
    let rc = unsafe { libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let changed = changed_dispositions().unwrap_or(u64::MAX);
    for sig in 1..=libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP || changed & (1u64 << (sig - 1)) == 0 {
            continue;
        }
        // glibc refuses the two real-time signals it reserves (32, 33), yet a
        // caller may have ignored them: use the raw syscall.
        let action = KernelSigaction {
            handler: libc::SIG_DFL,
            flags: 0,
            restorer: 0,
            mask: 0,
        };
        // SAFETY: `action` is a kernel `struct sigaction` (handler, flags,
        // restorer, 64-bit mask) that outlives the call; SIG_DFL installs no
        // handler code; the old action is not requested.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                &action as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                std::mem::size_of::<u64>(),
            )
        };
    }
    Ok(())
}

/// The kernel's `struct sigaction` on x86_64 and aarch64.
#[repr(C)]
struct KernelSigaction {
    handler: libc::sighandler_t,
    flags: libc::c_ulong,
    restorer: usize,
    mask: u64,
}

/// The signals whose disposition is not the default (`SigIgn | SigCgt`).
fn changed_dispositions() -> Option<u64> {
    // A plain read: without procfs in view (a container with no mount
    // namespace has none after chroot) every signal is reset instead, and a
    // fake file could only make the reset do less for this very process.
    let status = fs_err::read_to_string("/proc/thread-self/status").ok()?;
    parse_sig_masks(&status)
}

fn parse_sig_masks(status: &str) -> Option<u64> {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
    };
    Some(field("SigIgn:")? | field("SigCgt:")?)
}

/// Namespace flags [`unshare`] and [`setns`] accept.
const NS_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWTIME) as u64;

/// Moves the calling process into new namespaces (`unshare(2)`); only
/// `CLONE_NEW*` flags are accepted.
pub fn unshare(flags: u64) -> io::Result<()> {
    if flags & !NS_FLAGS != 0 {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: only namespace flags are passed (checked above), which do not
    // change the descriptor table or memory the process relies on.
    let rc = unsafe { libc::unshare(flags as libc::c_int) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Joins the namespaces `flags` of what `fd` refers to: a namespace file
/// (one flag) or a pidfd (several at once, atomically).
pub fn setns(fd: std::os::fd::BorrowedFd<'_>, flags: u64) -> io::Result<()> {
    if flags & !NS_FLAGS != 0 {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    Ok(rustix::thread::move_into_thread_name_spaces(
        fd,
        rustix::thread::ThreadNameSpaceType::from_bits_retain(flags as u32),
    )?)
}

/// Sends `signal` (any number, real-time included) to the process `pidfd`
/// refers to.
pub fn pidfd_send_signal(pidfd: std::os::fd::BorrowedFd<'_>, signal: i32) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: pidfd is a live descriptor; no siginfo pointer is passed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Starts `program` with `args` as the leader of a new session, with an
/// environment of exactly `env`, stdin and stdout on /dev/null, stderr on
/// `stderr`, and each `(fd, number)` of `fds` as that descriptor number
/// (3, 4, …; without close-on-exec). Everything else stays close-on-exec;
/// the signal mask is empty and SIGPIPE has its default action, as for
/// `std::process::Command`. Returns the child's pid; the caller need not
/// wait for it (it is reaped by whoever inherits it if the caller exits
/// first).
///
/// `posix_spawn(3)`: glibc's shares the caller's memory until the exec
/// (`CLONE_VM | CLONE_VFORK`), so nothing of the caller's address space is
/// copied, as a fork would for the few hundred microseconds until the exec
/// (and every page either side wrote meanwhile). Safe from a
/// multi-threaded process.
pub fn spawn_session(
    program: &std::path::Path,
    args: &[std::ffi::OsString],
    env: &[(std::ffi::OsString, std::ffi::OsString)],
    stderr: BorrowedFd<'_>,
    fds: &[(BorrowedFd<'_>, i32)],
) -> io::Result<u32> {
    use nix::spawn::{PosixSpawnAttr, PosixSpawnFileActions, PosixSpawnFlags};
    use std::os::unix::ffi::OsStrExt;
    let cstr = |bytes: &[u8]| {
        CString::new(bytes).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
    };
    let path = cstr(program.as_os_str().as_bytes())?;
    // argv[0] is the program, as `Command` makes it.
    let argv = std::iter::once(Ok(path.clone()))
        .chain(args.iter().map(|a| cstr(a.as_bytes())))
        .collect::<io::Result<Vec<_>>>()?;
    let envp = env
        .iter()
        .map(|(k, v)| cstr(&[k.as_bytes(), b"=", v.as_bytes()].concat()))
        .collect::<io::Result<Vec<_>>>()?;
    // The child's descriptors are dup2'd from copies numbered above every
    // target (close-on-exec here, closed again below): a source numbered
    // like an earlier target is then never overwritten before it is used.
    let high = |fd: BorrowedFd<'_>| rustix::io::fcntl_dupfd_cloexec(fd, 64);
    let null = rustix::fs::open(
        "/dev/null",
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    let mut moves = vec![
        (high(null.as_fd())?, 0),
        (high(null.as_fd())?, 1),
        (high(stderr)?, 2),
    ];
    for (fd, target) in fds {
        moves.push((high(*fd)?, *target));
    }
    let mut actions = PosixSpawnFileActions::init()?;
    for (source, target) in &moves {
        actions.add_dup2(source.as_raw_fd(), *target)?;
    }
    let mut attr = PosixSpawnAttr::init()?;
    attr.set_flags(PosixSpawnFlags::from_bits_retain(
        libc::c_int::from(libc::POSIX_SPAWN_SETSID)
            | libc::POSIX_SPAWN_SETSIGMASK
            | libc::POSIX_SPAWN_SETSIGDEF,
    ))?;
    attr.set_sigmask(&nix::sys::signal::SigSet::empty())?;
    let mut pipe = nix::sys::signal::SigSet::empty();
    pipe.add(nix::sys::signal::Signal::SIGPIPE);
    attr.set_sigdefault(&pipe)?;
    let pid = nix::spawn::posix_spawn(path.as_c_str(), &actions, &attr, &argv, &envp)?;
    Ok(pid.as_raw().unsigned_abs())
}

/// What a long-lived process kept resident from its setup and can give
/// back while it waits: its mappings of its own executable's read-only
/// pages (code and constants) and the part of the main thread's stack its
/// setup's deeper calls used. Planned from `/proc/self/smaps` by
/// [`ResidentTrim::plan`], dropped by [`ResidentTrim::trim_and_poll`] right
/// before the process blocks.
///
/// Meant for the per-container monitor once its container runs: it maps
/// most of its binary while it sets the container up, then sits in a poll
/// loop that needs a few pages of it.
#[derive(Debug)]
pub struct ResidentTrim {
    regions: Vec<Region>,
    stack: Option<(usize, usize)>,
}

impl ResidentTrim {
    /// Finds the executable's private, read-only file mappings with no
    /// anonymous (copied-on-write) pages, and the main thread's stack. A
    /// process that maps no new code can keep the plan for every later
    /// trim.
    ///
    /// # Errors
    ///
    /// Reading `/proc/self/exe` or `/proc/self/smaps`.
    pub fn plan() -> io::Result<ResidentTrim> {
        let exe = rustix::fs::stat("/proc/self/exe")?;
        let smaps = fs_err::read_to_string("/proc/self/smaps")?;
        Ok(ResidentTrim {
            regions: exe_regions(&smaps, exe.st_dev, exe.st_ino),
            stack: main_stack(&smaps),
        })
    }

    /// The bytes of executable mappings the trim drops.
    pub fn exe_bytes(&self) -> u64 {
        self.regions.iter().map(|r| r.len as u64).sum()
    }

    /// Gives the memory back, then waits in `poll(2)` on `fds` for at most
    /// `timeout`: free heap memory goes to the kernel (`malloc_trim`), the
    /// planned executable mappings' page-table entries are dropped
    /// (`MADV_DONTNEED`), and so is the stack more than 16 KiB below this
    /// frame when called on the main thread.
    ///
    /// The dropped pages stay in the page cache, shared with every process
    /// running the binary; what the process runs again faults back in
    /// (minor faults). Dropping and waiting in one function matters: code
    /// that ran between the drop and the wait would fault its pages back in
    /// and keep them while the process sleeps. Here only this function's
    /// own pages come back (`madvise` and `poll` are rustix's inline
    /// system calls).
    ///
    /// # Errors
    ///
    /// `poll(2)`'s; a failed `madvise` is ignored (the memory stays
    /// resident, nothing else changes).
    #[inline(never)]
    pub fn trim_and_poll(
        &self,
        fds: &mut [rustix::event::PollFd<'_>],
        timeout: Option<&rustix::event::Timespec>,
    ) -> rustix::io::Result<usize> {
        // SAFETY: malloc_trim takes no pointers; it only returns free memory.
        unsafe {
            libc::malloc_trim(0);
        }
        for region in &self.regions {
            // SAFETY: the range is a whole private, read-only file mapping
            // of the executable with no anonymous (copied-on-write) pages,
            // as /proc/self/smaps listed it: MADV_DONTNEED only drops its
            // page table entries, and every later access reads the same
            // bytes back from the file. It is a separate VMA, so no
            // writable or private data shares the range. The process maps
            // no new code, so the plan still describes it.
            let _ = unsafe {
                rustix::mm::madvise(
                    region.start as *mut std::ffi::c_void,
                    region.len,
                    rustix::mm::Advice::LinuxDontNeed,
                )
            };
        }
        // The stack below this frame is dead: what the setup's deeper calls
        // left there goes too. A margin well above what the calls below
        // this frame (none but system calls) use is kept.
        let here = std::ptr::addr_of!(fds) as usize;
        let page = rustix::param::page_size();
        if let Some((bottom, end)) = self.stack.filter(|(b, e)| (*b..*e).contains(&here)) {
            let top = here.saturating_sub(STACK_MARGIN) & !(page - 1);
            if top > bottom && top < end {
                // SAFETY: [bottom, top) is the part of this thread's stack
                // more than STACK_MARGIN below this frame: no frame or red
                // zone is live there, and a page touched again reads back
                // as zeros, which is all a fresh stack page holds.
                let _ = unsafe {
                    rustix::mm::madvise(
                        bottom as *mut std::ffi::c_void,
                        top - bottom,
                        rustix::mm::Advice::LinuxDontNeed,
                    )
                };
            }
        }
        rustix::event::poll(fds, timeout)
    }
}

/// How much of the stack below [`ResidentTrim::trim_and_poll`]'s frame it
/// keeps.
const STACK_MARGIN: usize = 16 << 10;

/// The main thread's stack mapping (start, end), from smaps.
fn main_stack(smaps: &str) -> Option<(usize, usize)> {
    let line = smaps.lines().find(|l| l.ends_with("[stack]"))?;
    address_range(line.split_whitespace().next()?)
}

/// `start-end` in hex, as smaps begins a mapping's line.
fn address_range(text: &str) -> Option<(usize, usize)> {
    let (start, end) = text.split_once('-')?;
    Some((
        usize::from_str_radix(start, 16).ok()?,
        usize::from_str_radix(end, 16).ok()?,
    ))
}

/// One mapping to drop, from smaps.
#[derive(Debug, PartialEq, Eq)]
struct Region {
    start: usize,
    len: usize,
}

/// The read-only private mappings of the file `dev`:`ino` with no anonymous
/// pages, from the text of /proc/self/smaps.
fn exe_regions(smaps: &str, dev: u64, ino: u64) -> Vec<Region> {
    let mut out = Vec::new();
    let mut current: Option<Region> = None;
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or_default();
        if let Some((start, end)) = address_range(first) {
            let perms = fields.next().unwrap_or_default();
            let _offset = fields.next();
            let map_dev = fields.next().unwrap_or_default();
            let map_ino = fields.next().and_then(|i| i.parse::<u64>().ok());
            let same_file = map_ino == Some(ino) && parse_dev(map_dev) == Some(dev);
            current = (same_file
                && perms.starts_with('r')
                && !perms.contains('w')
                && perms.ends_with('p'))
            .then_some(Region {
                start,
                len: end - start,
            });
            continue;
        }
        if first == "Anonymous:" {
            if let Some(region) = current.take() {
                if fields.next() == Some("0") {
                    out.push(region);
                }
            }
        }
    }
    out
}

/// `major:minor` in hex, as /proc/<pid>/maps writes a device, to `dev_t`.
fn parse_dev(text: &str) -> Option<u64> {
    let (major, minor) = text.split_once(':')?;
    let major = u32::from_str_radix(major, 16).ok()?;
    let minor = u32::from_str_radix(minor, 16).ok()?;
    Some(libc::makedev(major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_masks_parse() {
        let status = "Name:\tx\nSigBlk:\t0000000000000000\nSigIgn:\t0000000000001000\nSigCgt:\t0000000180000002\n";
        assert_eq!(parse_sig_masks(status), Some(0x0000_0001_8000_1002));
        assert_eq!(parse_sig_masks("Name:\tx\n"), None);
    }

    #[test]
    fn this_process_ignores_sigpipe() {
        // The Rust runtime ignores SIGPIPE (bit 13).
        assert_ne!(
            changed_dispositions().unwrap() & (1 << (libc::SIGPIPE - 1)),
            0
        );
    }

    #[test]
    fn exe_regions_are_the_read_only_unmodified_mappings_of_the_file() {
        let smaps = "\
00200000-003bf000 r--p 00000000 fe:00 2286109                            /
Size:               1788 kB
Anonymous:             0 kB
003bf000-0086d000 r-xp 001be000 fe:00 2286109                            /
Size:               4792 kB
Anonymous:             0 kB
0086d000-00875000 r--p 0066b000 fe:00 2286109                            /
Size:                 32 kB
Anonymous:            32 kB
00875000-0087d000 rw-p 00672000 fe:00 2286109                            /
Anonymous:            32 kB
0087d000-00884000 r--p 00000000 fe:00 99                                 /other
Anonymous:             0 kB
7f4944763000-7f494476b000 rw-s 00000000 fe:00 2171451                    /x.db-shm
Anonymous:             0 kB
";
        let dev = libc::makedev(0xfe, 0);
        assert_eq!(
            exe_regions(smaps, dev, 2_286_109),
            vec![
                Region {
                    start: 0x20_0000,
                    len: 0x1b_f000
                },
                Region {
                    start: 0x3b_f000,
                    len: 0x4a_e000
                },
            ]
        );
        assert!(exe_regions(smaps, libc::makedev(0xfe, 1), 2_286_109).is_empty());
        assert_eq!(main_stack(smaps), None);
        let with_stack =
            format!("{smaps}7ffcb66da000-7ffcb66fb000 rw-p 00000000 00:00 0    [stack]\n");
        assert_eq!(
            main_stack(&with_stack),
            Some((0x7ffc_b66d_a000, 0x7ffc_b66f_b000))
        );
    }

    #[test]
    fn a_trimmed_process_runs_on() {
        let trim = ResidentTrim::plan().unwrap();
        assert!(
            trim.exe_bytes() > 0,
            "the test binary's code is a read-only mapping"
        );
        let (r, w) = rustix::pipe::pipe().unwrap();
        rustix::io::write(&w, b"x").unwrap();
        let mut fds = [rustix::event::PollFd::new(&r, rustix::event::PollFlags::IN)];
        let timeout = rustix::event::Timespec {
            tv_sec: 5,
            tv_nsec: 0,
        };
        assert_eq!(trim.trim_and_poll(&mut fds, Some(&timeout)).unwrap(), 1);
        assert!(fds[0].revents().contains(rustix::event::PollFlags::IN));
        // The code runs again from the page cache, and can trim again.
        assert_eq!(thread_count().map(|n| n >= 1).ok(), Some(true));
        let zero = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let mut none: [rustix::event::PollFd<'_>; 0] = [];
        assert_eq!(trim.trim_and_poll(&mut none, Some(&zero)).unwrap(), 0);
    }

    fn read_all(fd: std::os::fd::OwnedFd) -> String {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::fs::File::from(fd), &mut text).unwrap();
        text
    }

    #[test]
    fn spawn_session_hands_over_exactly_the_descriptors_and_environment_asked_for() {
        let (report_r, report_w) =
            rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        let (err_r, err_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        // Numbered like a target: must land on 4 although 3 is set first.
        let swapped = rustix::io::fcntl_dupfd_cloexec(&report_w, 3).unwrap();
        let (extra_r, extra_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        // Close-on-exec, as every descriptor Wharf opens: must not reach the child.
        let probe = rustix::io::fcntl_dupfd_cloexec(&extra_r, 300).unwrap();
        let script = r#"read -r pid _ _ _ _ sid _ < /proc/self/stat
echo "$0 $1" >&4
echo "$pid $sid ${X:-unset} ${HOME:-unset} $(readlink /proc/self/fd/0) $(ls /proc/self/fd | tr '\n' ,)" >&4
grep -E '^Sig(Blk|Ign)' /proc/$$/status >&4
echo extra >&3
echo to-stderr >&2"#;
        let args: Vec<std::ffi::OsString> =
            vec!["-c".into(), script.into(), "zero".into(), "one".into()];
        let env = vec![("X".into(), "1".into())];
        let pid = spawn_session(
            std::path::Path::new("/bin/sh"),
            &args,
            &env,
            err_w.as_fd(),
            &[(extra_w.as_fd(), 3), (swapped.as_fd(), 4)],
        )
        .unwrap();
        drop((report_w, err_w, extra_w, swapped));
        let report = read_all(report_r);
        assert_eq!(read_all(extra_r), "extra\n");
        assert_eq!(read_all(err_r), "to-stderr\n");
        let child = Pid::from_raw(pid as i32).unwrap();
        let status = rustix::process::waitpid(Some(child), rustix::process::WaitOptions::empty())
            .unwrap()
            .unwrap();
        assert_eq!(status.1.exit_status(), Some(0));
        let lines: Vec<&str> = report.lines().collect();
        assert_eq!(
            lines[0], "zero one",
            "the arguments after argv[0]: {report}"
        );
        let first: Vec<&str> = lines[1].split(' ').collect();
        assert_eq!(
            first[0], first[1],
            "the child leads its own session: {report}"
        );
        assert_eq!(&first[2..5], ["1", "unset", "/dev/null"], "{report}");
        // 0-4 as asked; not the caller's other (close-on-exec) ones.
        let fds: Vec<i32> = first[5]
            .split(',')
            .filter(|f| !f.is_empty())
            .map(|f| f.parse().unwrap())
            .collect();
        for fd in 0..=4 {
            assert!(fds.contains(&fd), "{fd} missing: {report}");
        }
        assert!(!fds.contains(&probe.as_raw_fd()), "leaked: {report}");
        let mask = |name: &str| {
            let line = lines.iter().find(|l| l.starts_with(name)).unwrap();
            u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
        };
        assert_eq!(mask("SigBlk:"), 0, "{report}");
        assert_eq!(mask("SigIgn:") & (1 << (libc::SIGPIPE - 1)), 0, "{report}");
    }
}
