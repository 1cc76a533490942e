//! Docker's default hardening values (SECURITY-CASES.md §2): capabilities,
//! masked and read-only paths, the default mounts, the device cgroup
//! allow-list, namespaces and rlimits. Sources: moby `daemon/pkg/oci/
//! defaults.go`, `caps/defaults.go`, `daemon/oci_linux.go`; Podman's
//! `define.RLimitDefaultValue` and `DefaultPidsLimit`.

use serde_json::{json, Value};

/// Docker's 14 default capabilities (`caps.DefaultCapabilities()`), given as
/// bounding = effective = permitted; inheritable and ambient stay empty
/// (CVE-2022-29162 class).
pub(crate) const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Docker's masked paths (2026). The per-CPU `thermal_throttle` directories
/// Docker adds depend on the host's CPUs; the caller may append them.
pub(crate) const MASKED_PATHS: [&str; 12] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/devices/virtual/powercap",
    "/sys/firmware",
];

/// Docker's read-only paths.
pub(crate) const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// PATH when the image sets none (moby `oci.DefaultPathEnv`).
pub(crate) const DEFAULT_PATH_ENV: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `/dev/shm` size without `--shm-size` (Docker's `DefaultShmSize`).
pub(crate) const DEFAULT_SHM_SIZE: u64 = 64 << 20;

/// Pids limit without `--pids-limit` (Podman's `DefaultPidsLimit`).
pub(crate) const DEFAULT_PIDS_LIMIT: i64 = 2048;

/// RLIMIT_NOFILE and RLIMIT_NPROC without `--ulimit` (Podman's
/// `define.RLimitDefaultValue`, soft = hard), clamped to the host's hard limit.
pub(crate) const DEFAULT_RLIMIT: u64 = 1_048_576;

/// Destinations `--read-only` leaves writable (moby `WithMounts`).
const WRITABLE_WHEN_READ_ONLY: [&str; 5] = ["/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue"];

fn mount(destination: &str, typ: &str, source: &str, options: &[&str]) -> Value {
    json!({"destination": destination, "type": typ, "source": source, "options": options})
}

/// The default mounts, in moby's order. `--privileged` leaves /sys and
/// /sys/fs/cgroup writable; `--read-only` adds `ro` to every default mount
/// but /proc and the /dev family.
pub(crate) fn default_mounts(privileged: bool, read_only: bool, shm_size: u64) -> Vec<Value> {
    let sys_ro = !privileged || read_only;
    let shm_size = format!("size={shm_size}");
    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            if sys_ro {
                &["nosuid", "noexec", "nodev", "ro"]
            } else {
                &["nosuid", "noexec", "nodev"]
            },
        ),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &[
                "nosuid",
                "noexec",
                "nodev",
                if sys_ro { "ro" } else { "rw" },
            ],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", &shm_size],
        ),
    ];
    if read_only {
        for m in &mut mounts {
            let writable = WRITABLE_WHEN_READ_ONLY
                .iter()
                .any(|d| m["destination"] == *d);
            if let Some(options) = m["options"].as_array_mut() {
                if !writable && !options.iter().any(|o| o == "ro") {
                    options.push(json!("ro"));
                }
            }
        }
    }
    mounts
}

fn device_rule(allow: bool, major: i64, minor: i64) -> Value {
    json!({"allow": allow, "type": "c", "major": major, "minor": minor, "access": "rwm"})
}

/// The device cgroup rules, Docker's: deny all, allow zero, null, urandom,
/// random, tty and console, and an explicit deny of fuse (10:229). The runtime appends what it needs itself (full, ptmx, pts
/// and `linux.devices`). `--privileged` allows every device (`a *:* rwm`).
pub(crate) fn device_cgroup(privileged: bool) -> Vec<Value> {
    if privileged {
        return vec![json!({"allow": true, "access": "rwm"})];
    }
    vec![
        json!({"allow": false, "access": "rwm"}),
        device_rule(true, 1, 5),
        device_rule(true, 1, 3),
        device_rule(true, 1, 9),
        device_rule(true, 1, 8),
        device_rule(true, 5, 0),
        device_rule(true, 5, 1),
        device_rule(false, 10, 229),
    ]
}
