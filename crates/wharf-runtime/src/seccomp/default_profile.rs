//! The default seccomp profile: Wharf's own tables, equivalent in effect to
//! Docker's default profile (moby/profiles `seccomp/default.json`; see
//! SECURITY-CASES.md 2.2).
//!
//! - Default action: EPERM.
//! - [`ALLOW`]: allowed for every container.
//! - [`BY_CAPABILITY`]: allowed when the process holds the capability (the
//!   kernel still checks it; the filter just stops blocking the call).
//! - `ptrace` and `process_vm_*` are allowed on kernels from 4.8, where
//!   ptrace can no longer be used to bypass seccomp.
//! - Without CAP_SYS_ADMIN: `clone` only without namespace flags (the mask
//!   `0x7E020000` is CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET),
//!   and `clone3` — whose flags live in memory the filter cannot read — fails
//!   with ENOSYS so libc falls back to `clone`.
//! - `personality` only with PER_LINUX, PER_LINUX32, UNAME26 (+PER_LINUX32)
//!   or the query value 0xffffffff.
//! - `socket` for every domain except AF_ALG (38) and AF_VSOCK (40).
//! - io_uring, keyrings, userfaultfd, kexec, modules, bpf and the mount API
//!   are not in the tables, so they get EPERM.

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompBuilder, LinuxSeccompOperator, LinuxSyscall, LinuxSyscallBuilder,
};

/// Syscalls every container may make.
const ALLOW: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "cachestat",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_requeue",
    "futex_time64",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "getxattrat",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listmount",
    "listxattr",
    "listxattrat",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "map_shadow_stack",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "mseal",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "removexattrat",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setuid32",
    "setxattr",
    "setxattrat",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statmount",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "uretprobe",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
];

/// Syscalls specific to the architecture this runtime is built for.
#[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
const ARCH_ALLOW: &[&str] = &["arch_prctl", "modify_ldt"];
#[cfg(any(target_arch = "aarch64", target_arch = "arm"))]
const ARCH_ALLOW: &[&str] = &[
    "arm_fadvise64_64",
    "arm_sync_file_range",
    "sync_file_range2",
    "breakpoint",
    "cacheflush",
    "set_tls",
];
#[cfg(target_arch = "s390x")]
const ARCH_ALLOW: &[&str] = &[
    "s390_pci_mmio_read",
    "s390_pci_mmio_write",
    "s390_runtime_instr",
];
#[cfg(target_arch = "riscv64")]
const ARCH_ALLOW: &[&str] = &["riscv_flush_icache"];
#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "x86",
    target_arch = "aarch64",
    target_arch = "arm",
    target_arch = "s390x",
    target_arch = "riscv64"
)))]
const ARCH_ALLOW: &[&str] = &[];

/// The filter's architectures: the native one and the ABIs its kernel also
/// runs (a 64-bit x86 kernel runs x86 and x32 binaries).
fn architectures() -> Vec<Arch> {
    if cfg!(target_arch = "x86_64") {
        vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
    } else if cfg!(target_arch = "aarch64") {
        vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm]
    } else if cfg!(target_arch = "s390x") {
        vec![Arch::ScmpArchS390x, Arch::ScmpArchS390]
    } else if cfg!(target_arch = "riscv64") {
        vec![Arch::ScmpArchRiscv64]
    } else {
        Vec::new()
    }
}

/// Syscalls a capability unlocks.
const BY_CAPABILITY: &[(&str, &[&str])] = &[
    ("CAP_DAC_READ_SEARCH", &["open_by_handle_at"]),
    (
        "CAP_SYS_ADMIN",
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "lsm_get_self_attr",
            "lsm_list_modules",
            "lsm_set_self_attr",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    ("CAP_SYS_BOOT", &["reboot"]),
    ("CAP_SYS_CHROOT", &["chroot"]),
    (
        "CAP_SYS_MODULE",
        &["delete_module", "init_module", "finit_module"],
    ),
    ("CAP_SYS_PACCT", &["acct"]),
    (
        "CAP_SYS_PTRACE",
        &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
        ],
    ),
    ("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
    (
        "CAP_SYS_TIME",
        &["settimeofday", "stime", "clock_settime", "clock_settime64"],
    ),
    ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
    (
        "CAP_SYS_NICE",
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    ("CAP_SYSLOG", &["syslog"]),
    ("CAP_BPF", &["bpf"]),
    ("CAP_PERFMON", &["perf_event_open"]),
];

/// Allowed from Linux 4.8 on.
const FROM_LINUX_4_8: &[&str] = &["process_vm_readv", "process_vm_writev", "ptrace"];

/// `personality` values allowed.
const PERSONALITIES: &[u64] = &[0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// Namespace flags of `clone`.
const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;

const AF_ALG: u64 = 38;
const AF_VSOCK: u64 = 40;
const ENOSYS: u32 = 38;
const EPERM: u32 = 1;

fn arg(index: usize, op: LinuxSeccompOperator, value: u64, value_two: u64) -> LinuxSeccompArg {
    LinuxSeccompArgBuilder::default()
        .index(index)
        .op(op)
        .value(value)
        .value_two(value_two)
        .build()
        .expect("every field of the argument is set")
}

fn rule(names: &[&str], action: LinuxSeccompAction, args: Vec<LinuxSeccompArg>) -> LinuxSyscall {
    let mut b = LinuxSyscallBuilder::default()
        .names(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .action(action);
    if !args.is_empty() {
        b = b.args(args);
    }
    b.build().expect("names and action are set")
}

fn kernel_at_least(major: u32, minor: u32) -> bool {
    let uname = rustix::system::uname();
    let release = uname.release().to_string_lossy();
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (ma, mi) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (ma, mi) >= (major, minor)
}

/// The default seccomp profile for a process holding `caps` (capability
/// names such as `CAP_SYS_ADMIN`; the bounding set is the usual input).
/// Equivalent in effect to Docker's default profile: EPERM for everything
/// not allowed, an allow-list, groups unlocked by capabilities, `clone`
/// without namespace flags and `clone3` → ENOSYS unless CAP_SYS_ADMIN,
/// `personality` restricted to its common values, and `socket` refused for
/// AF_ALG and AF_VSOCK.
pub fn default_seccomp(caps: &[String]) -> LinuxSeccomp {
    use LinuxSeccompAction::{ScmpActAllow as Allow, ScmpActErrno as Errno};
    use LinuxSeccompOperator::{ScmpCmpEq, ScmpCmpGt, ScmpCmpLt, ScmpCmpMaskedEq};
    let has = |cap: &str| caps.iter().any(|c| c == cap);

    let mut allowed: Vec<&str> = ALLOW.iter().chain(ARCH_ALLOW).copied().collect();
    for (cap, names) in BY_CAPABILITY {
        if has(cap) {
            allowed.extend_from_slice(names);
        }
    }
    if kernel_at_least(4, 8) {
        allowed.extend_from_slice(FROM_LINUX_4_8);
    }
    allowed.sort_unstable();
    allowed.dedup();

    let mut syscalls = vec![rule(&allowed, Allow, Vec::new())];
    for p in PERSONALITIES {
        syscalls.push(rule(
            &["personality"],
            Allow,
            vec![arg(0, ScmpCmpEq, *p, 0)],
        ));
    }
    // Three rules, not one with two "!=" conditions on argument 0: such
    // conditions are split into alternatives (see the module docs).
    syscalls.push(rule(&["socket"], Allow, vec![arg(0, ScmpCmpLt, AF_ALG, 0)]));
    syscalls.push(rule(
        &["socket"],
        Allow,
        vec![arg(0, ScmpCmpEq, AF_ALG + 1, 0)],
    ));
    syscalls.push(rule(
        &["socket"],
        Allow,
        vec![arg(0, ScmpCmpGt, AF_VSOCK, 0)],
    ));
    if !has("CAP_SYS_ADMIN") {
        // s390 passes the clone flags as the second argument.
        let flags_arg = if cfg!(target_arch = "s390x") { 1 } else { 0 };
        syscalls.push(rule(
            &["clone"],
            Allow,
            vec![arg(flags_arg, ScmpCmpMaskedEq, CLONE_NAMESPACE_FLAGS, 0)],
        ));
        let mut clone3 = rule(&["clone3"], Errno, Vec::new());
        clone3.set_errno_ret(Some(ENOSYS));
        syscalls.push(clone3);
    }

    LinuxSeccompBuilder::default()
        .default_action(Errno)
        .default_errno_ret(EPERM)
        .architectures(architectures())
        .syscalls(syscalls)
        .build()
        .expect("default action and syscalls are set")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seccomp::{Action, FilterPlan};

    fn plan(caps: &[&str]) -> FilterPlan {
        let caps: Vec<String> = caps.iter().map(|s| s.to_string()).collect();
        FilterPlan::from_oci(&default_seccomp(&caps)).unwrap()
    }

    fn unconditional(plan: &FilterPlan, name: &str) -> Option<Action> {
        plan.rules
            .iter()
            .find(|r| r.syscall == name && r.conditions.is_empty())
            .map(|r| r.action)
    }

    #[test]
    fn compiles_into_a_filter_with_and_without_capabilities() {
        for caps in [&[][..], &["CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_BPF"][..]] {
            let ctx = plan(caps).compile().unwrap();
            // Generating the BPF program checks the whole filter.
            let out = tempfile::tempfile().unwrap();
            ctx.export_bpf(&out).unwrap();
            assert!(out.metadata().unwrap().len() > 0);
        }
    }

    #[test]
    fn typical_shell_syscalls_are_allowed() {
        let p = plan(&[]);
        assert_eq!(p.default_action, Action::Errno(1));
        for name in [
            "read",
            "write",
            "openat",
            "close",
            "execve",
            "mmap",
            "brk",
            "rt_sigaction",
            "wait4",
            "fork",
            "vfork",
            "getdents64",
            "newfstatat",
            "statx",
            "mkdir",
            "dup2",
            "pipe2",
            "exit_group",
            "setresuid",
            "capset",
            "prctl",
            "umask",
        ] {
            assert_eq!(unconditional(&p, name), Some(Action::Allow), "{name}");
        }
        for name in [
            "io_uring_setup",
            "keyctl",
            "add_key",
            "userfaultfd",
            "kexec_load",
        ] {
            assert_eq!(unconditional(&p, name), None, "{name}");
        }
    }

    #[test]
    fn capability_gates_are_honoured() {
        let plain = plan(&["CAP_CHOWN", "CAP_KILL"]);
        for name in [
            "unshare", "mount", "setns", "bpf", "reboot", "chroot", "clone",
        ] {
            assert_eq!(unconditional(&plain, name), None, "{name}");
        }
        let clone = plain.rules.iter().find(|r| r.syscall == "clone").unwrap();
        assert_eq!(clone.conditions[0].value, CLONE_NAMESPACE_FLAGS);
        assert_eq!(unconditional(&plain, "clone3"), Some(Action::Errno(38)));

        let admin = plan(&["CAP_SYS_ADMIN", "CAP_SYS_CHROOT"]);
        for name in ["unshare", "mount", "setns", "clone", "clone3", "chroot"] {
            assert_eq!(unconditional(&admin, name), Some(Action::Allow), "{name}");
        }
        assert!(!admin
            .rules
            .iter()
            .any(|r| r.syscall == "clone" && !r.conditions.is_empty()));
    }

    #[test]
    fn personality_and_socket_have_argument_rules() {
        let p = plan(&[]);
        let values: Vec<u64> = p
            .rules
            .iter()
            .filter(|r| r.syscall == "personality")
            .map(|r| r.conditions[0].value)
            .collect();
        assert_eq!(values, PERSONALITIES);
        let socket: Vec<_> = p.rules.iter().filter(|r| r.syscall == "socket").collect();
        assert_eq!(socket.len(), 3);
        assert!(socket.iter().all(|r| r.conditions.len() == 1));
    }
}
