//! Requirement gates: a privileged test declares what it needs and skips (or, under
//! `WHARF_TEST_STRICT=1`, fails) when the host lacks it.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use nix::sched::CloneFlags;

/// Something a test needs from the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Requirement {
    /// Effective uid 0.
    Root,
    /// The process can create a user namespace.
    UserNs,
    /// The kernel knows overlayfs.
    Overlay,
    /// `/bin/busybox` exists and is statically linked (Debian's `busybox-static`).
    Busybox,
    /// `newuidmap` and `newgidmap` (shadow's setuid helpers) are installed.
    Newuidmap,
    /// `runc` is installed (reference runtime for side-by-side tests).
    Runc,
    /// `crun` is installed (reference runtime for side-by-side tests).
    Crun,
    /// `containerd` is installed.
    Containerd,
    /// Debian's `docker-registry` (`/usr/bin/docker-registry`), plus `openssl` and
    /// `htpasswd` that [`LocalRegistry`](crate::LocalRegistry) uses for certificates,
    /// tokens and passwords.
    Registry,
    /// `skopeo` is installed (run through [`isolated`](crate::isolated), so
    /// `unshare` too).
    Skopeo,
    /// `umoci` is installed.
    Umoci,
    /// `debootstrap` is installed (Debian rootfs fixtures).
    Debootstrap,
    /// `podman` is installed (tests give it a private store), and `unshare`
    /// to keep it off the host's `/run` and `/var/lib/containers`.
    Podman,
    /// `tmux`, to drive a real terminal.
    Tmux,
    /// `/sys/fs/cgroup` is a cgroup v2 hierarchy offering the cpu, memory, io and pids
    /// controllers.
    CgroupV2Controllers,
}

/// Requirements that CI hosts lack: under `WHARF_TEST_STRICT=1` these still skip
/// instead of failing. Run such tests on a full cgroup-v2 host.
pub const ABSENT_ON_CI: &[Requirement] = &[Requirement::CgroupV2Controllers];

/// Controllers [`Requirement::CgroupV2Controllers`] looks for.
const CGROUP_V2_CONTROLLERS: &[&str] = &["cpu", "memory", "io", "pids"];

/// Where binaries are looked for besides `$PATH` (test runners often trim `$PATH`).
const STANDARD_BIN_DIRS: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

impl Requirement {
    /// Whether the host meets this requirement. Checks that fork or read large files
    /// are done once per process and cached.
    pub fn is_met(&self) -> bool {
        match self {
            Self::Root => nix::unistd::geteuid().is_root(),
            Self::UserNs => {
                static MET: OnceLock<bool> = OnceLock::new();
                *MET.get_or_init(|| {
                    crate::in_child_unshare(CloneFlags::CLONE_NEWUSER, || Ok(())).is_ok()
                })
            }
            Self::Overlay => fs_err::read_to_string("/proc/filesystems")
                .map(|text| filesystems_list_has(&text, "overlay"))
                .unwrap_or(false),
            Self::Busybox => {
                static MET: OnceLock<bool> = OnceLock::new();
                *MET.get_or_init(|| {
                    crate::rootfs::check_static(Path::new(crate::rootfs::HOST_BUSYBOX)).is_ok()
                })
            }
            Self::Newuidmap => {
                find_binary("newuidmap").is_some() && find_binary("newgidmap").is_some()
            }
            Self::Runc => find_binary("runc").is_some(),
            Self::Crun => find_binary("crun").is_some(),
            Self::Containerd => find_binary("containerd").is_some(),
            Self::Registry => {
                Path::new(crate::registry::REGISTRY_BIN).is_file()
                    && find_binary("openssl").is_some()
                    && find_binary("htpasswd").is_some()
            }
            Self::Skopeo => find_binary("skopeo").is_some() && find_binary("unshare").is_some(),
            Self::Umoci => find_binary("umoci").is_some(),
            Self::Debootstrap => find_binary("debootstrap").is_some(),
            Self::Podman => find_binary("podman").is_some() && find_binary("unshare").is_some(),
            Self::Tmux => find_binary("tmux").is_some(),
            Self::CgroupV2Controllers => cgroup_v2_controllers_available(),
        }
    }

    /// What the requirement is, as it appears after `needs` in a SKIP line.
    pub fn describe(&self) -> &'static str {
        match self {
            Self::Root => "root",
            Self::UserNs => "user namespaces",
            Self::Overlay => "overlayfs",
            Self::Busybox => "a static /bin/busybox (busybox-static)",
            Self::Newuidmap => "newuidmap and newgidmap (uidmap)",
            Self::Runc => "runc",
            Self::Crun => "crun",
            Self::Containerd => "containerd",
            Self::Registry => {
                "/usr/bin/docker-registry, openssl and htpasswd (docker-registry, openssl, apache2-utils)"
            }
            Self::Skopeo => "skopeo and unshare",
            Self::Umoci => "umoci",
            Self::Debootstrap => "debootstrap",
            Self::Podman => "podman and unshare",
            Self::Tmux => "tmux",
            Self::CgroupV2Controllers => {
                "cgroup v2 at /sys/fs/cgroup with the cpu, memory, io and pids controllers"
            }
        }
    }
}

/// Checks `reqs` for the test named `test`.
///
/// Returns true when all are met. Otherwise prints `SKIP <test>: needs <what>` to
/// stderr and returns false, except under `WHARF_TEST_STRICT=1`, where an unmet
/// requirement not in [`ABSENT_ON_CI`] panics with that message.
///
/// # Panics
///
/// Under `WHARF_TEST_STRICT=1` when a requirement outside [`ABSENT_ON_CI`] is unmet.
#[allow(
    clippy::print_stderr,
    reason = "the SKIP line is the test's report to the person running it"
)]
pub fn check_requirements(test: &str, reqs: &[Requirement]) -> bool {
    let unmet: Vec<Requirement> = reqs.iter().copied().filter(|r| !r.is_met()).collect();
    if unmet.is_empty() {
        return true;
    }
    let needs: Vec<&str> = unmet.iter().map(Requirement::describe).collect();
    let message = format!("SKIP {test}: needs {}", needs.join(", "));
    let strict = std::env::var_os("WHARF_TEST_STRICT").is_some_and(|v| v == "1");
    if strict && unmet.iter().any(|r| !ABSENT_ON_CI.contains(r)) {
        panic!("{message} (WHARF_TEST_STRICT=1 makes unmet requirements fail)");
    }
    eprintln!("{message}");
    false
}

/// Turns the type name of a function item declared inside a test
/// (`my_crate::tests::runs_busybox::f`) into the test's path
/// (`my_crate::tests::runs_busybox`). Used by [`require!`](crate::require).
pub fn test_name_from_fn_path(path: &'static str) -> &'static str {
    let mut name = path.strip_suffix("::f").unwrap_or(path);
    while let Some(outer) = name.strip_suffix("::{{closure}}") {
        name = outer;
    }
    name
}

/// Skips the calling test (returns from it) unless every named [`Requirement`] is
/// met; see [`check_requirements`]. Use as the first line of a test returning `()`:
///
/// ```no_run
/// # fn runs_busybox() {
/// wharf_testkit::require!(Root, Busybox);
/// # }
/// ```
#[macro_export]
macro_rules! require {
    ($($requirement:ident),* $(,)?) => {{
        fn f() {}
        fn type_name_of<T>(_: T) -> &'static str {
            ::core::any::type_name::<T>()
        }
        let test = $crate::__test_name_from_fn_path(type_name_of(f));
        if !$crate::check_requirements(test, &[$($crate::Requirement::$requirement),*]) {
            return;
        }
    }};
}

/// Whether `/proc/filesystems` text lists `fs` (lines are `[nodev]\t<name>`).
fn filesystems_list_has(text: &str, fs: &str) -> bool {
    text.lines()
        .any(|line| line.split_whitespace().last() == Some(fs))
}

/// Finds an executable named `name` in `$PATH` or the standard bin directories.
fn find_binary(name: &str) -> Option<PathBuf> {
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path_var)
        .chain(STANDARD_BIN_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| {
            fs_err::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

fn cgroup_v2_controllers_available() -> bool {
    let is_cgroup2 = crate::mounts::read_mountinfo().is_ok_and(|mounts| {
        mounts
            .iter()
            .rev()
            .find(|m| m.mount_point == Path::new("/sys/fs/cgroup"))
            .is_some_and(|m| m.fs_type == "cgroup2")
    });
    if !is_cgroup2 {
        return false;
    }
    fs_err::read_to_string("/sys/fs/cgroup/cgroup.controllers").is_ok_and(|text| {
        let offered: Vec<&str> = text.split_whitespace().collect();
        CGROUP_V2_CONTROLLERS.iter().all(|c| offered.contains(c))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_name_strips_marker_fn_and_closures() {
        assert_eq!(
            test_name_from_fn_path("wharf_runtime::tests::runs::f"),
            "wharf_runtime::tests::runs"
        );
        assert_eq!(
            test_name_from_fn_path("crate_a::t::{{closure}}::{{closure}}::f"),
            "crate_a::t"
        );
    }

    #[test]
    fn require_macro_names_the_enclosing_test() {
        fn f() {}
        fn type_name_of<T>(_: T) -> &'static str {
            core::any::type_name::<T>()
        }
        assert_eq!(
            test_name_from_fn_path(type_name_of(f)),
            "wharf_testkit::requirement::tests::require_macro_names_the_enclosing_test"
        );
    }

    #[test]
    fn filesystems_list_parsing() {
        let text = "nodev\tsysfs\nnodev\ttmpfs\n\text4\nnodev\toverlay\n";
        assert!(filesystems_list_has(text, "overlay"));
        assert!(filesystems_list_has(text, "ext4"));
        assert!(!filesystems_list_has(text, "btrfs"));
    }

    #[test]
    fn met_requirements_pass_without_skip() {
        // An empty requirement list is always met, whatever the host.
        assert!(check_requirements("t", &[]));
    }

    #[test]
    fn every_requirement_is_described() {
        for r in [
            Requirement::Root,
            Requirement::UserNs,
            Requirement::Overlay,
            Requirement::Busybox,
            Requirement::Newuidmap,
            Requirement::Runc,
            Requirement::Crun,
            Requirement::Containerd,
            Requirement::Registry,
            Requirement::Skopeo,
            Requirement::Umoci,
            Requirement::Debootstrap,
            Requirement::Podman,
            Requirement::CgroupV2Controllers,
        ] {
            assert!(!r.describe().is_empty());
        }
    }
}
