//! The last steps before the user's program runs: identity, limits,
//! capabilities, working directory, descriptors, and `execve`.
//!
//! The plan is built from the config's `process` (plus `exec` overrides);
//! [`Prepared::apply`] runs in the container (init or exec'd process), in
//! this order: oom_score_adj, rlimits, personality, I/O priority, scheduler,
//! AppArmor, HOME lookup, chdir (+ getcwd check), bounding set, groups and
//! ids (keeping permitted caps), effective/permitted/inheritable/ambient,
//! no_new_privs, seccomp (before the bounding set when no_new_privs is
//! off), umask, executable lookup. Only `execve` is left for
//! [`Prepared::exec`].

use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    IOPriorityClass, LinuxSchedulerFlag, LinuxSchedulerPolicy, PosixRlimitType, Process,
};
use rustix::fs::{Mode, OFlags};
use wharf_sys::Root;

use crate::caps::CapPlan;
use crate::error::{step_err, Step, StepError};

type StepResult<T = ()> = Result<T, StepError>;

/// Everything needed to become the user's process.
#[derive(Debug, Clone)]
pub(crate) struct ProcessPlan {
    pub(crate) args: Vec<String>,
    pub(crate) env: Vec<String>,
    pub(crate) cwd: PathBuf,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) additional_gids: Vec<u32>,
    pub(crate) umask: u32,
    pub(crate) caps: CapPlan,
    pub(crate) no_new_privileges: bool,
    pub(crate) rlimits: Vec<(PosixRlimitType, u64, u64)>,
    pub(crate) oom_score_adj: Option<i32>,
    pub(crate) apparmor_profile: Option<String>,
    pub(crate) io_priority: Option<(IOPriorityClass, i64)>,
    pub(crate) scheduler: Option<oci_spec::runtime::Scheduler>,
    pub(crate) personality: Option<oci_spec::runtime::LinuxPersonality>,
    pub(crate) terminal: bool,
    /// The seccomp filter, prepared by the runtime (`linux.seccomp`).
    pub(crate) seccomp: Option<crate::seccomp::Seccomp>,
    /// Descriptors 3.. 3+n of the runtime's caller passed on.
    pub(crate) preserve_fds: i32,
}

impl ProcessPlan {
    pub(crate) fn from_spec(
        process: &Process,
        personality: Option<oci_spec::runtime::LinuxPersonality>,
    ) -> Self {
        let user = process.user();
        ProcessPlan {
            args: process.args().clone().unwrap_or_default(),
            env: process.env().clone().unwrap_or_default(),
            cwd: process.cwd().clone(),
            uid: user.uid(),
            gid: user.gid(),
            additional_gids: user.additional_gids().clone().unwrap_or_default(),
            umask: user.umask().unwrap_or(0o022),
            caps: CapPlan::from_spec(process.capabilities().as_ref()),
            no_new_privileges: process.no_new_privileges().unwrap_or(false),
            rlimits: process
                .rlimits()
                .iter()
                .flatten()
                .map(|r| (r.typ(), r.soft(), r.hard()))
                .collect(),
            oom_score_adj: process.oom_score_adj(),
            apparmor_profile: process.apparmor_profile().clone().filter(|p| !p.is_empty()),
            io_priority: process
                .io_priority()
                .as_ref()
                .map(|p| (p.class(), p.priority())),
            scheduler: process.scheduler().clone(),
            personality,
            terminal: process.terminal().unwrap_or(false),
            seccomp: None,
            preserve_fds: 0,
        }
    }
}

/// A process ready to `execve`.
#[derive(Debug)]
pub(crate) struct Prepared {
    path: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
}

fn rlimit_resource(typ: PosixRlimitType) -> rustix::process::Resource {
    use rustix::process::Resource as R;
    match typ {
        PosixRlimitType::RlimitCpu => R::Cpu,
        PosixRlimitType::RlimitFsize => R::Fsize,
        PosixRlimitType::RlimitData => R::Data,
        PosixRlimitType::RlimitStack => R::Stack,
        PosixRlimitType::RlimitCore => R::Core,
        PosixRlimitType::RlimitRss => R::Rss,
        PosixRlimitType::RlimitNproc => R::Nproc,
        PosixRlimitType::RlimitNofile => R::Nofile,
        PosixRlimitType::RlimitMemlock => R::Memlock,
        PosixRlimitType::RlimitAs => R::As,
        PosixRlimitType::RlimitLocks => R::Locks,
        PosixRlimitType::RlimitSigpending => R::Sigpending,
        PosixRlimitType::RlimitMsgqueue => R::Msgqueue,
        PosixRlimitType::RlimitNice => R::Nice,
        PosixRlimitType::RlimitRtprio => R::Rtprio,
        PosixRlimitType::RlimitRttime => R::Rttime,
    }
}

impl ProcessPlan {
    /// Applies everything up to (not including) `execve`. `in_userns`: the
    /// process is in a user namespace where setgroups may be denied.
    pub(crate) fn apply(&self, in_userns: bool) -> StepResult<Prepared> {
        // Descriptors and signals first: the seccomp filter installed below
        // may deny close_range or openat2 (runc-era profiles do), and
        // everything opened from here on is close-on-exec anyway.
        let keep = 3 + self.preserve_fds.max(0);
        for fd in 3..keep {
            wharf_sys::fd::inherit_raw(fd).step(|| format!("pass descriptor {fd}"))?;
        }
        wharf_sys::fd::cloexec_from(keep).step(|| "mark descriptors close-on-exec".into())?;
        wharf_sys::process::reset_signals().step(|| "reset signal mask and dispositions".into())?;
        if let Some(adj) = self.oom_score_adj {
            let mut f = wharf_sys::procfs::open_self("oom_score_adj", OFlags::WRONLY)
                .step(|| "open oom_score_adj".into())?;
            std::io::Write::write_all(&mut f, adj.to_string().as_bytes())
                .step(|| format!("set oom_score_adj to {adj}"))?;
        }
        for (typ, soft, hard) in &self.rlimits {
            let limit = rustix::process::Rlimit {
                current: (*soft != u64::MAX).then_some(*soft),
                maximum: (*hard != u64::MAX).then_some(*hard),
            };
            rustix::process::setrlimit(rlimit_resource(*typ), limit).step(|| {
                format!("set {typ} to {soft}:{hard} (raising a hard limit needs CAP_SYS_RESOURCE)")
            })?;
        }
        if let Some(p) = &self.personality {
            let domain = match p.domain() {
                oci_spec::runtime::LinuxPersonalityDomain::PerLinux => 0x0000,
                oci_spec::runtime::LinuxPersonalityDomain::PerLinux32 => 0x0008,
            };
            wharf_sys::process::set_personality(domain).step(|| "set personality".into())?;
        }
        if let Some((class, priority)) = self.io_priority {
            let class = match class {
                IOPriorityClass::IoprioClassRt => 1,
                IOPriorityClass::IoprioClassBe => 2,
                IOPriorityClass::IoprioClassIdle => 3,
            };
            let priority = u32::try_from(priority)
                .ok()
                .filter(|p| *p <= 7)
                .ok_or_else(|| {
                    step_err(
                        "set I/O priority",
                        format!("priority {priority} is not in 0..=7"),
                    )
                })?;
            wharf_sys::process::set_ioprio(class, priority).step(|| "set I/O priority".into())?;
        }
        if let Some(s) = &self.scheduler {
            apply_scheduler(s)?;
        }
        if let Some(profile) = &self.apparmor_profile {
            apply_apparmor(profile)?;
        }

        let root = Root::open(Path::new("/")).step(|| "open container root".into())?;
        let mut env = self.env.clone();
        if !env.iter().any(|e| e.starts_with("HOME=")) {
            let home = home_dir(&root, self.uid).unwrap_or_else(|| "/".into());
            env.push(format!("HOME={home}"));
        }
        let path = find_executable(&root, &self.args[0], &env)?;
        drop(root);

        rustix::process::chdir(&self.cwd).step(|| format!("chdir to {}", self.cwd.display()))?;
        check_cwd()?;

        // Loading a filter without no_new_privs needs CAP_SYS_ADMIN, which a
        // non-root user loses at the uid switch below; so, as runc does, the
        // filter then goes in before the switch and the filter must allow
        // the remaining setup calls. With no_new_privs it goes in last.
        if !self.no_new_privileges {
            self.install_seccomp()?;
        }
        self.caps.apply_bounding()?;
        rustix::thread::set_keep_capabilities(true)
            .step(|| "keep capabilities across setuid".into())?;
        let setgroups_denied = in_userns
            && fs_err::read_to_string("/proc/self/setgroups").is_ok_and(|s| s.trim() == "deny");
        if !setgroups_denied {
            wharf_sys::process::set_groups(&self.additional_gids)
                .step(|| format!("set supplementary groups {:?}", self.additional_gids))?;
        } else if !self.additional_gids.is_empty() {
            return Err(step_err(
                "set supplementary groups",
                "setgroups is denied in this user namespace",
            ));
        }
        wharf_sys::process::set_res_gid(self.gid).step(|| format!("set gid {}", self.gid))?;
        wharf_sys::process::set_res_uid(self.uid).step(|| format!("set uid {}", self.uid))?;
        rustix::thread::set_keep_capabilities(false).step(|| "reset keep-capabilities".into())?;
        self.caps.apply_sets()?;
        if self.no_new_privileges {
            rustix::thread::set_no_new_privs(true).step(|| "set no_new_privs".into())?;
            self.install_seccomp()?;
        }
        rustix::process::umask(Mode::from_bits_retain(self.umask & 0o777));

        let cstr = |s: &str, what: &str| {
            CString::new(s)
                .map_err(|_| step_err("prepare exec", format!("{what} contains a NUL byte")))
        };
        Ok(Prepared {
            path: cstr(&path.to_string_lossy(), "path")?,
            argv: self
                .args
                .iter()
                .map(|a| cstr(a, "argument"))
                .collect::<Result<_, _>>()?,
            envp: env
                .iter()
                .map(|e| cstr(e, "environment variable"))
                .collect::<Result<_, _>>()?,
        })
    }
}

impl ProcessPlan {
    fn install_seccomp(&self) -> StepResult {
        match &self.seccomp {
            Some(s) => s.install(),
            None => Ok(()),
        }
    }
}

impl Prepared {
    /// Attaches the terminal and executes the program (the descriptors it
    /// inherits and its signal state were settled by `apply`). Returns only
    /// on failure.
    pub(crate) fn exec(self, tty: Option<OwnedFd>) -> StepError {
        if let Some(tty) = tty {
            if let Err(e) = attach_tty(tty) {
                return e;
            }
        }
        let err = wharf_sys::process::execve(&self.path, &self.argv, &self.envp);
        StepError {
            step: format!("exec {}", self.path.to_string_lossy()),
            source: err,
        }
    }
}

fn attach_tty(tty: OwnedFd) -> StepResult {
    wharf_sys::console::set_controlling_terminal(&tty)
        .step(|| "set controlling terminal".into())?;
    for target in 0..3 {
        wharf_sys::fd::dup_onto(tty.as_fd(), target)
            .step(|| format!("dup terminal onto fd {target}"))?;
    }
    if tty.as_raw_fd() > 2 {
        drop(tty);
    } else {
        std::mem::forget(tty);
    }
    Ok(())
}

/// CVE-2024-21626: a cwd reached through a leaked descriptor lies outside
/// the root; the kernel reports it as "(unreachable)…", not an absolute path.
fn check_cwd() -> StepResult {
    let cwd = rustix::process::getcwd(Vec::new()).step(|| "getcwd after chdir".into())?;
    if !cwd.to_bytes().starts_with(b"/") {
        return Err(step_err(
            "check working directory",
            "it lies outside the container's root",
        ));
    }
    Ok(())
}

/// Looks `name` up in the container's PATH (from the process env).
fn find_executable(root: &Root, name: &str, env: &[String]) -> StepResult<PathBuf> {
    let is_exec = |p: &Path| {
        root.resolve(p)
            .ok()
            .and_then(|fd| rustix::fs::fstat(&fd).ok())
            .is_some_and(|st| {
                rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::RegularFile
                    && st.st_mode & 0o111 != 0
            })
    };
    if name.contains('/') {
        let path = PathBuf::from(name);
        // A relative path is relative to the cwd, which is not entered yet.
        if !path.is_absolute() || is_exec(&path) {
            return Ok(path);
        }
        // A file that exists but cannot be run is "permission denied"
        // (Docker's exit 126), one that does not exist is "not found" (127).
        let exists = root.resolve(&path).is_ok();
        return Err(step_err(
            format!("exec {name:?}"),
            if exists {
                "permission denied: the file is not an executable regular file"
            } else {
                "no such executable file in the container"
            },
        ));
    }
    let path = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(name);
        if candidate.is_absolute() && is_exec(&candidate) {
            return Ok(candidate);
        }
    }
    Err(step_err(
        format!("exec {name:?}"),
        "executable file not found in $PATH",
    ))
}

/// The home directory of `uid` from the container's `/etc/passwd`, read
/// through the root with a size bound (CVE-2024-9676: it may be a symlink to
/// /dev/zero or a fifo).
fn home_dir(root: &Root, uid: u32) -> Option<String> {
    let file = root
        .open_file(Path::new("/etc/passwd"), OFlags::RDONLY | OFlags::NONBLOCK)
        .ok()?;
    let st = rustix::fs::fstat(&file).ok()?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
        return None;
    }
    let mut data = String::new();
    file.take(1 << 20).read_to_string(&mut data).ok()?;
    data.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() >= 7 && fields[2].parse::<u32>().ok() == Some(uid))
            .then(|| fields[5].to_owned())
    })
}

fn apply_scheduler(s: &oci_spec::runtime::Scheduler) -> StepResult {
    let policy = match s.policy() {
        LinuxSchedulerPolicy::SchedOther => 0,
        LinuxSchedulerPolicy::SchedFifo => 1,
        LinuxSchedulerPolicy::SchedRr => 2,
        LinuxSchedulerPolicy::SchedBatch => 3,
        LinuxSchedulerPolicy::SchedIso => 4,
        LinuxSchedulerPolicy::SchedIdle => 5,
        LinuxSchedulerPolicy::SchedDeadline => 6,
    };
    let mut flags = 0u64;
    for f in s.flags().iter().flatten() {
        flags |= match f {
            LinuxSchedulerFlag::SchedResetOnFork => 0x01,
            LinuxSchedulerFlag::SchedFlagReclaim => 0x02,
            LinuxSchedulerFlag::SchedFlagDLOverrun => 0x04,
            LinuxSchedulerFlag::SchedFlagKeepPolicy => 0x08,
            LinuxSchedulerFlag::SchedFlagKeepParams => 0x10,
            LinuxSchedulerFlag::SchedFlagUtilClampMin => 0x20,
            LinuxSchedulerFlag::SchedFlagUtilClampMax => 0x40,
        };
    }
    wharf_sys::process::set_sched_attr(wharf_sys::process::SchedAttr {
        policy,
        flags,
        nice: s.nice().unwrap_or(0),
        priority: u32::try_from(s.priority().unwrap_or(0)).unwrap_or(0),
        runtime: s.runtime().unwrap_or(0),
        deadline: s.deadline().unwrap_or(0),
        period: s.period().unwrap_or(0),
    })
    .step(|| "set scheduler".into())
}

/// Whether AppArmor is enabled on this kernel.
pub(crate) fn apparmor_enabled() -> bool {
    fs_err::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.starts_with('Y'))
}

fn apply_apparmor(profile: &str) -> StepResult {
    if !apparmor_enabled() {
        return Err(step_err(
            format!("apply AppArmor profile {profile:?}"),
            "AppArmor is not enabled on this host",
        ));
    }
    let mut f = wharf_sys::procfs::open_self("attr/apparmor/exec", OFlags::WRONLY)
        .or_else(|_| wharf_sys::procfs::open_self("attr/exec", OFlags::WRONLY))
        .step(|| "open AppArmor exec attribute".into())?;
    std::io::Write::write_all(&mut f, format!("exec {profile}").as_bytes())
        .step(|| format!("apply AppArmor profile {profile:?}"))
}
