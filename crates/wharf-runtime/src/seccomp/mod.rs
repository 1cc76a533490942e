//! Seccomp: the OCI `linux.seccomp` object → a [`FilterPlan`] (plain data,
//! validated in the runtime before it forks) → a BPF filter compiled and
//! loaded by libseccomp in the container's process ([`Seccomp::install`]).
//!
//! Semantics follow runc: syscall names libseccomp does not know are skipped
//! (debug log); rules whose action equals the default action are skipped
//! (libseccomp refuses them); when one syscall entry has several conditions
//! on the same argument, each condition becomes a rule of its own (so they
//! match as "any of", runc's long-standing behaviour), otherwise all
//! conditions form one rule (they match as "all of").
//!
//! Not done: runc's `-ENOSYS` stub for syscalls newer than the profile.
//! runc patches the BPF libseccomp generates; libseccomp 2.5 has no option
//! for it, so syscalls unknown to a profile get its default action.

mod default_profile;

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator, Spec,
};
use rustix::fs::OFlags;

pub use default_profile::default_seccomp;

use crate::error::{step_err, Result, RuntimeError, Step, StepError};

/// `errnoRet` when an ERRNO or TRACE action gives none (runtime-spec).
const EPERM: u16 = 1;

/// The kernel passes at most six syscall arguments.
const MAX_ARGS: usize = 6;

/// What the filter does when a rule (or no rule) matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    KillThread,
    KillProcess,
    Trap,
    Errno(u16),
    Trace(u16),
    Allow,
    Log,
    Notify,
}

impl Action {
    fn from_oci(action: LinuxSeccompAction, errno_ret: Option<u32>) -> Result<Self, String> {
        let ret = || {
            errno_ret.map_or(Ok(EPERM), |v| {
                u16::try_from(v).map_err(|_| format!("errnoRet {v} does not fit in 16 bits"))
            })
        };
        Ok(match action {
            LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
                Action::KillThread
            }
            LinuxSeccompAction::ScmpActKillProcess => Action::KillProcess,
            LinuxSeccompAction::ScmpActTrap => Action::Trap,
            LinuxSeccompAction::ScmpActErrno => Action::Errno(ret()?),
            LinuxSeccompAction::ScmpActTrace => Action::Trace(ret()?),
            LinuxSeccompAction::ScmpActAllow => Action::Allow,
            LinuxSeccompAction::ScmpActLog => Action::Log,
            LinuxSeccompAction::ScmpActNotify => Action::Notify,
        })
    }

    fn to_scmp(self) -> ScmpAction {
        match self {
            Action::KillThread => ScmpAction::KillThread,
            Action::KillProcess => ScmpAction::KillProcess,
            Action::Trap => ScmpAction::Trap,
            Action::Errno(e) => ScmpAction::Errno(i32::from(e)),
            Action::Trace(m) => ScmpAction::Trace(m),
            Action::Allow => ScmpAction::Allow,
            Action::Log => ScmpAction::Log,
            Action::Notify => ScmpAction::Notify,
        }
    }
}

/// One comparison of a syscall argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Condition {
    pub(crate) arg: u32,
    pub(crate) op: LinuxSeccompOperator,
    pub(crate) value: u64,
    pub(crate) value_two: u64,
}

impl Condition {
    fn to_scmp(self) -> ScmpArgCompare {
        let op = match self.op {
            LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
            LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
            LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
            LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
            LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
            LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
            // runtime-spec: `value` is the mask, `valueTwo` the datum.
            LinuxSeccompOperator::ScmpCmpMaskedEq => {
                return ScmpArgCompare::new(
                    self.arg,
                    ScmpCompareOp::MaskedEqual(self.value),
                    self.value_two,
                )
            }
        };
        ScmpArgCompare::new(self.arg, op, self.value)
    }
}

/// One libseccomp rule: `syscall` with every condition true → `action`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rule {
    pub(crate) syscall: String,
    pub(crate) action: Action,
    pub(crate) conditions: Vec<Condition>,
}

/// The filter as plain data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FilterPlan {
    pub(crate) default_action: Action,
    pub(crate) arches: Vec<ScmpArch>,
    pub(crate) tsync: bool,
    pub(crate) log: bool,
    pub(crate) spec_allow: bool,
    pub(crate) wait_killable_recv: bool,
    pub(crate) rules: Vec<Rule>,
}

fn arch(a: Arch) -> ScmpArch {
    match a {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchParisc => ScmpArch::Parisc,
        Arch::ScmpArchParisc64 => ScmpArch::Parisc64,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        Arch::ScmpArchLoongarch64 => ScmpArch::Loongarch64,
        Arch::ScmpArchM68k => ScmpArch::M68k,
        Arch::ScmpArchSh => ScmpArch::Sh,
        Arch::ScmpArchSheb => ScmpArch::Sheb,
    }
}

impl FilterPlan {
    /// Converts and validates the OCI object; the error says what is wrong.
    pub(crate) fn from_oci(s: &LinuxSeccomp) -> Result<Self, String> {
        let default_action = Action::from_oci(s.default_action(), s.default_errno_ret())?;
        if default_action == Action::Notify {
            return Err("SCMP_ACT_NOTIFY cannot be the default action".into());
        }
        let mut plan = FilterPlan {
            default_action,
            arches: s
                .architectures()
                .iter()
                .flatten()
                .map(|a| arch(*a))
                .collect(),
            tsync: false,
            log: false,
            spec_allow: false,
            wait_killable_recv: false,
            rules: Vec::new(),
        };
        for flag in s.flags().iter().flatten() {
            match flag {
                LinuxSeccompFilterFlag::SeccompFilterFlagTsync => plan.tsync = true,
                LinuxSeccompFilterFlag::SeccompFilterFlagLog => plan.log = true,
                LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => plan.spec_allow = true,
                LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
                    plan.wait_killable_recv = true
                }
            }
        }
        for entry in s.syscalls().iter().flatten() {
            let action = Action::from_oci(entry.action(), entry.errno_ret())?;
            if action == default_action {
                continue;
            }
            let mut per_arg = [0usize; MAX_ARGS];
            let mut conditions = Vec::new();
            for a in entry.args().iter().flatten() {
                if a.index() >= MAX_ARGS {
                    return Err(format!(
                        "argument index {} of {:?} is out of range 0..{MAX_ARGS}",
                        a.index(),
                        entry.names()
                    ));
                }
                per_arg[a.index()] += 1;
                conditions.push(Condition {
                    arg: a.index() as u32,
                    op: a.op(),
                    value: a.value(),
                    value_two: a.value_two().unwrap_or(0),
                });
            }
            let groups: Vec<Vec<Condition>> = if per_arg.iter().any(|n| *n > 1) {
                conditions.into_iter().map(|c| vec![c]).collect()
            } else {
                vec![conditions]
            };
            for name in entry.names() {
                for conditions in &groups {
                    plan.rules.push(Rule {
                        syscall: name.clone(),
                        action,
                        conditions: conditions.clone(),
                    });
                }
            }
        }
        Ok(plan)
    }

    pub(crate) fn uses_notify(&self) -> bool {
        self.rules.iter().any(|r| r.action == Action::Notify)
    }

    /// The seccomp(2) flags the plan asks for.
    pub(crate) fn flags(&self) -> u32 {
        use wharf_sys::seccomp as f;
        let mut flags = 0;
        if self.tsync {
            flags |= f::FLAG_TSYNC;
        }
        if self.log {
            flags |= f::FLAG_LOG;
        }
        if self.spec_allow {
            flags |= f::FLAG_SPEC_ALLOW;
        }
        if self.wait_killable_recv {
            flags |= f::FLAG_WAIT_KILLABLE_RECV;
        }
        if self.uses_notify() {
            flags |= f::FLAG_NEW_LISTENER;
        }
        flags
    }

    /// The compiled BPF program: from `cache_dir` when this plan (with this
    /// libseccomp) was compiled before, else compiled now and stored there.
    /// Compiling a Docker-sized profile takes tens of milliseconds; a start
    /// then only installs the program. The cache is best effort: a missing
    /// or unusable directory just means compiling every time.
    pub(crate) fn program(&self, cache_dir: Option<&Path>) -> Result<Vec<u8>> {
        use sha2::Digest;
        let version = libseccomp::ScmpVersion::current()
            .map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
            .unwrap_or_default();
        let digest =
            sha2::Sha256::digest(format!("wharf-seccomp-v2 {version} {self:?}").as_bytes());
        let name: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        let cache_dir = cache_dir.filter(|dir| ensure_private_dir(dir));
        if let Some(cache_dir) = cache_dir {
            let cached = cache_dir.join(format!("{name}.bpf"));
            if let Ok(program) = fs_err::read(&cached) {
                if !program.is_empty() && program.len().is_multiple_of(8) {
                    return Ok(program);
                }
            }
        }
        let ctx = self
            .compile()
            .map_err(|e| RuntimeError::config(format!("linux.seccomp: {e}")))?;
        let export = |path: &Path| -> std::io::Result<Vec<u8>> {
            let file = fs_err::File::create(path)?;
            ctx.export_bpf(file.file()).map_err(std::io::Error::other)?;
            fs_err::read(path)
        };
        if let Some(cache_dir) = cache_dir {
            let cached = cache_dir.join(format!("{name}.bpf"));
            let tmp = cache_dir.join(format!(".{name}.{}", std::process::id()));
            if let Ok(program) = export(&tmp) {
                let _ = fs_err::rename(&tmp, &cached);
                return Ok(program);
            }
            let _ = fs_err::remove_file(&tmp);
        }
        let memfd = rustix::fs::memfd_create("wharf-seccomp", rustix::fs::MemfdFlags::CLOEXEC)
            .map_err(|e| {
                RuntimeError::sys(
                    "create memfd for the seccomp program",
                    std::io::Error::from(e),
                )
            })?;
        ctx.export_bpf(&memfd)
            .map_err(|e| RuntimeError::sys("export seccomp program", std::io::Error::other(e)))?;
        let mut file = File::from(memfd);
        let mut program = Vec::new();
        std::io::Seek::rewind(&mut file)
            .and_then(|_| std::io::Read::read_to_end(&mut file, &mut program))
            .map_err(|e| RuntimeError::sys("read seccomp program", e))?;
        Ok(program)
    }

    /// Builds the libseccomp filter (not loaded).
    pub(crate) fn compile(&self) -> Result<ScmpFilterContext, libseccomp::error::SeccompError> {
        let mut ctx = ScmpFilterContext::new(self.default_action.to_scmp())?;
        // libseccomp sets no_new_privs on load by default; the config decides.
        ctx.set_ctl_nnp(false)?;
        // A binary tree over the syscall numbers instead of a list of
        // comparisons: the kernel runs the filter once per syscall number
        // and architecture when it is installed (to build its cache of
        // syscalls that are always allowed), and a Docker-sized list made
        // that 1.4 ms of every container start here. libseccomp before
        // 2.5 has only the list.
        if let Err(e) = ctx.set_ctl_optimize(2) {
            tracing::debug!(error = %e, "seccomp binary tree optimization unavailable");
        }
        for arch in &self.arches {
            if !ctx.is_arch_present(*arch)? {
                ctx.add_arch(*arch)?;
            }
        }
        if self.tsync {
            ctx.set_ctl_tsync(true)?;
        }
        if self.log {
            ctx.set_ctl_log(true)?;
        }
        if self.spec_allow {
            ctx.set_ctl_ssb(true)?;
        }
        if self.wait_killable_recv {
            ctx.set_ctl_waitkill(true)?;
        }
        for rule in &self.rules {
            let Ok(syscall) = libseccomp::ScmpSyscall::from_name(&rule.syscall) else {
                tracing::debug!(syscall = %rule.syscall, "unknown seccomp syscall ignored");
                continue;
            };
            if rule.conditions.is_empty() {
                ctx.add_rule(rule.action.to_scmp(), syscall)?;
            } else {
                let conditions: Vec<ScmpArgCompare> =
                    rule.conditions.iter().map(|c| c.to_scmp()).collect();
                ctx.add_rule_conditional(rule.action.to_scmp(), syscall, &conditions)?;
            }
        }
        Ok(ctx)
    }
}

/// The BPF program (raw `sock_filter` array) a runtime installs for
/// `seccomp`: validated, compiled by libseccomp, and taken from or stored in
/// `cache_dir` when one is given (see [`FilterPlan::program`]); with none it
/// is compiled every time. For tools and benchmarks: a container start does
/// the same through its config.
pub fn compile_program(seccomp: &LinuxSeccomp, cache_dir: Option<&Path>) -> Result<Vec<u8>> {
    let plan = FilterPlan::from_oci(seccomp)
        .map_err(|reason| RuntimeError::config(format!("linux.seccomp: {reason}")))?;
    plan.program(cache_dir)
}

/// Where a NOTIFY filter's listener fd goes, and the state sent with it.
#[derive(Debug, Clone)]
struct Listener {
    path: PathBuf,
    /// Connected in the runtime, on the host: the listener path is a host
    /// path, unreachable once the process has pivoted into the rootfs.
    socket: Arc<OwnedFd>,
    /// A procfs of the runtime's pid namespace: its `self` names the
    /// process's pid as the runtime sees it (the spec's `pid`), which the
    /// process cannot learn from inside a new pid namespace.
    procfs: Arc<File>,
    metadata: Option<String>,
    id: String,
    bundle: PathBuf,
    status: &'static str,
    annotations: HashMap<String, String>,
}

/// Creates `dir` (0700) if needed; true when it is a directory owned by
/// us that nobody else may write, so its contents can be trusted.
fn ensure_private_dir(dir: &Path) -> bool {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let _ = std::fs::DirBuilder::new().mode(0o700).create(dir);
    fs_err::symlink_metadata(dir).is_ok_and(|m| {
        m.is_dir() && m.uid() == rustix::process::geteuid().as_raw() && m.mode() & 0o022 == 0
    })
}

/// A prepared seccomp filter: the compiled program, its flags, and the
/// listener when it notifies.
#[derive(Debug, Clone)]
pub(crate) struct Seccomp {
    program: Arc<Vec<u8>>,
    flags: u32,
    listener: Option<Listener>,
}

impl Seccomp {
    /// Validates `linux.seccomp` and, for SCMP_ACT_NOTIFY, connects to its
    /// `listenerPath`. Runs in the runtime before it forks; `status` is the
    /// container's status in the state sent to the listener.
    pub(crate) fn prepare(
        seccomp: Option<&LinuxSeccomp>,
        id: &str,
        bundle: &Path,
        spec: &Spec,
        status: &'static str,
        cache_dir: &Path,
    ) -> Result<Option<Self>> {
        let Some(s) = seccomp else {
            return Ok(None);
        };
        let plan = FilterPlan::from_oci(s)
            .map_err(|reason| RuntimeError::config(format!("linux.seccomp: {reason}")))?;
        let program = Arc::new(plan.program(Some(cache_dir))?);
        let flags = plan.flags();
        if !plan.uses_notify() {
            return Ok(Some(Seccomp {
                program,
                flags,
                listener: None,
            }));
        }
        let path = s
            .listener_path()
            .clone()
            .filter(|p| !p.as_os_str().is_empty())
            .ok_or_else(|| {
                RuntimeError::config("linux.seccomp: SCMP_ACT_NOTIFY needs a listenerPath")
            })?;
        let socket = connect(&path)
            .map_err(|e| RuntimeError::host("connect to seccomp listener", &path, e))?;
        let procfs = wharf_sys::procfs::open(".", OFlags::PATH | OFlags::DIRECTORY)
            .map_err(|e| RuntimeError::sys("open procfs for the seccomp listener state", e))?;
        Ok(Some(Seccomp {
            program,
            flags,
            listener: Some(Listener {
                path,
                socket: Arc::new(socket),
                procfs: Arc::new(procfs),
                metadata: s.listener_metadata().clone(),
                id: id.to_owned(),
                bundle: bundle.to_owned(),
                status,
                annotations: spec.annotations().clone().unwrap_or_default(),
            }),
        }))
    }

    /// Installs the filter into the calling process, then hands a NOTIFY
    /// filter's fd to the listener (our copy is closed: when the listener
    /// goes away, pending calls fail with ENOSYS).
    pub(crate) fn install(&self) -> Result<(), StepError> {
        let notify = wharf_sys::seccomp::install_filter(&self.program, self.flags)
            .step(|| "load seccomp filter".into())?;
        if let Some(listener) = &self.listener {
            let fd =
                notify.ok_or_else(|| step_err("load seccomp filter", "no notify fd returned"))?;
            listener.send(std::os::fd::AsRawFd::as_raw_fd(&fd))?;
        }
        Ok(())
    }
}

fn connect(path: &Path) -> std::io::Result<OwnedFd> {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let sock = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )?;
    rustix::net::connect(&sock, &SocketAddrUnix::new(path)?)?;
    Ok(sock)
}

impl Listener {
    /// The OCI `ContainerProcessState` document.
    fn state(&self, pid: i32) -> Vec<u8> {
        let mut doc = serde_json::json!({
            "ociVersion": crate::OCI_VERSION,
            "fds": [oci_spec::runtime::SECCOMP_FD_NAME],
            "pid": pid,
            "state": {
                "ociVersion": crate::OCI_VERSION,
                "id": self.id,
                "status": self.status,
                "pid": pid,
                "bundle": self.bundle,
                "annotations": self.annotations,
            }
        });
        if let Some(m) = &self.metadata {
            doc["metadata"] = m.clone().into();
        }
        doc.to_string().into_bytes()
    }

    fn send(&self, notify_fd: std::os::fd::RawFd) -> Result<(), StepError> {
        let link = rustix::fs::readlinkat(self.procfs.as_fd(), "self", Vec::new())
            .step(|| "read own pid in the runtime's pid namespace".into())?;
        let pid: i32 = link
            .to_str()
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| step_err("read own pid", format!("procfs self is {link:?}")))?;
        let payload = self.state(pid);
        // nix takes the fd as a RawFd, which libseccomp hands out without
        // ownership; rustix would need an unsafe BorrowedFd::borrow_raw.
        let fds = [notify_fd];
        let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&fds)];
        let iov = [std::io::IoSlice::new(&payload)];
        nix::sys::socket::sendmsg::<nix::sys::socket::UnixAddr>(
            std::os::fd::AsRawFd::as_raw_fd(&*self.socket),
            &iov,
            &cmsg,
            nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
            None,
        )
        .step(|| format!("send seccomp notify fd to listener {}", self.path.display()))?;
        Ok(())
    }
}

/// The `linux.seccomp` part of the features document.
pub(crate) fn features() -> serde_json::Value {
    let waitkill = libseccomp::ScmpVersion::current().is_ok_and(|v| (v.major, v.minor) >= (2, 6));
    let mut supported = vec![
        "SECCOMP_FILTER_FLAG_TSYNC",
        "SECCOMP_FILTER_FLAG_LOG",
        "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
    ];
    if waitkill {
        supported.push("SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV");
    }
    serde_json::json!({
        "enabled": true,
        "actions": [
            "SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
            "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY", "SCMP_ACT_TRACE",
            "SCMP_ACT_TRAP"
        ],
        "operators": [
            "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT",
            "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"
        ],
        "archs": [
            "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM", "SCMP_ARCH_LOONGARCH64", "SCMP_ARCH_M68K",
            "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32", "SCMP_ARCH_MIPSEL",
            "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PARISC",
            "SCMP_ARCH_PARISC64", "SCMP_ARCH_PPC", "SCMP_ARCH_PPC64", "SCMP_ARCH_PPC64LE",
            "SCMP_ARCH_RISCV64", "SCMP_ARCH_S390", "SCMP_ARCH_S390X", "SCMP_ARCH_SH",
            "SCMP_ARCH_SHEB", "SCMP_ARCH_X32", "SCMP_ARCH_X86", "SCMP_ARCH_X86_64"
        ],
        "knownFlags": [
            "SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
            "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"
        ],
        "supportedFlags": supported,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> LinuxSeccomp {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn actions_errno_defaults_and_skipped_default_rules() {
        let plan = FilterPlan::from_oci(&parse(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":38,
                "architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86","SCMP_ARCH_X32"],
                "flags":["SECCOMP_FILTER_FLAG_TSYNC","SECCOMP_FILTER_FLAG_LOG"],
                "syscalls":[
                  {"names":["read","write"],"action":"SCMP_ACT_ALLOW"},
                  {"names":["mkdir"],"action":"SCMP_ACT_ERRNO"},
                  {"names":["rmdir"],"action":"SCMP_ACT_ERRNO","errnoRet":38},
                  {"names":["kill"],"action":"SCMP_ACT_KILL"},
                  {"names":["getpid"],"action":"SCMP_ACT_TRACE"},
                  {"names":["uname"],"action":"SCMP_ACT_NOTIFY"}]}"#,
        ))
        .unwrap();
        assert_eq!(plan.default_action, Action::Errno(38));
        assert_eq!(plan.arches, [ScmpArch::X8664, ScmpArch::X86, ScmpArch::X32]);
        assert!(plan.tsync && plan.log && !plan.spec_allow && !plan.wait_killable_recv);
        let got: Vec<(&str, Action)> = plan
            .rules
            .iter()
            .map(|r| (r.syscall.as_str(), r.action))
            .collect();
        assert_eq!(
            got,
            [
                ("read", Action::Allow),
                ("write", Action::Allow),
                ("mkdir", Action::Errno(1)),
                ("kill", Action::KillThread),
                ("getpid", Action::Trace(1)),
                ("uname", Action::Notify),
            ]
        );
        assert!(plan.uses_notify());
    }

    #[test]
    fn conditions_on_one_argument_become_separate_rules() {
        let plan = FilterPlan::from_oci(&parse(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
                {"names":["personality"],"action":"SCMP_ACT_ALLOW","args":[
                  {"index":0,"value":0,"op":"SCMP_CMP_EQ"},
                  {"index":0,"value":8,"op":"SCMP_CMP_EQ"}]},
                {"names":["clone"],"action":"SCMP_ACT_ALLOW","args":[
                  {"index":0,"value":2114060288,"valueTwo":0,"op":"SCMP_CMP_MASKED_EQ"},
                  {"index":1,"value":5,"op":"SCMP_CMP_NE"}]}]}"#,
        ))
        .unwrap();
        assert_eq!(plan.rules.len(), 3);
        assert_eq!(plan.rules[0].conditions.len(), 1);
        assert_eq!(plan.rules[1].conditions[0].value, 8);
        assert_eq!(plan.rules[2].conditions.len(), 2);
        assert_eq!(
            plan.rules[2].conditions[0],
            Condition {
                arg: 0,
                op: LinuxSeccompOperator::ScmpCmpMaskedEq,
                value: 0x7E02_0000,
                value_two: 0
            }
        );
        plan.compile().unwrap();
    }

    #[test]
    fn invalid_objects_are_refused() {
        for json in [
            r#"{"defaultAction":"SCMP_ACT_NOTIFY"}"#,
            r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":70000}"#,
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],
                "action":"SCMP_ACT_ERRNO","args":[{"index":6,"value":0,"op":"SCMP_CMP_EQ"}]}]}"#,
        ] {
            assert!(FilterPlan::from_oci(&parse(json)).is_err(), "{json}");
        }
    }

    #[test]
    fn unknown_syscalls_are_skipped_when_compiling() {
        let plan = FilterPlan::from_oci(&parse(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
                {"names":["no_such_syscall_wharf","mkdir"],"action":"SCMP_ACT_ERRNO"}]}"#,
        ))
        .unwrap();
        plan.compile().unwrap();
    }

    #[test]
    fn notify_without_listener_path_is_refused() {
        let s = parse(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
                {"names":["mkdir"],"action":"SCMP_ACT_NOTIFY"}]}"#,
        );
        let cache = tempfile::tempdir().unwrap();
        let err = Seccomp::prepare(
            Some(&s),
            "c",
            Path::new("/b"),
            &Spec::default(),
            "creating",
            cache.path(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("listenerPath"), "{err}");
    }

    #[test]
    fn compiled_program_is_cached_by_plan() {
        let cache = tempfile::tempdir().unwrap();
        let dir = cache.path().join("seccomp");
        let plan = FilterPlan::from_oci(&default_seccomp(&[])).unwrap();
        let first = plan.program(Some(&dir)).unwrap();
        assert!(!first.is_empty() && first.len().is_multiple_of(8));
        let files: Vec<_> = fs_err::read_dir(&dir).unwrap().collect();
        assert_eq!(files.len(), 1, "one cached program");
        // A second call reads the cache: same bytes.
        assert_eq!(plan.program(Some(&dir)).unwrap(), first);
        // Another plan, another entry.
        let other = FilterPlan::from_oci(&default_seccomp(&["CAP_SYS_ADMIN".to_string()])).unwrap();
        assert_ne!(other.program(Some(&dir)).unwrap(), first);
        assert_eq!(fs_err::read_dir(&dir).unwrap().count(), 2);
    }

    #[test]
    fn filters_compile_to_a_binary_tree_where_libseccomp_can() {
        let plan = FilterPlan::from_oci(&default_seccomp(&[])).unwrap();
        let ctx = plan.compile().unwrap();
        let v = libseccomp::ScmpVersion::current().unwrap();
        if (v.major, v.minor) >= (2, 5) {
            assert_eq!(ctx.get_ctl_optimize().unwrap(), 2);
        }
    }
}
