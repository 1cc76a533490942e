//! Image config + container request → OCI runtime spec: a pure plan, no
//! processes. [`build_spec`] applies Docker's merge rules (Env, Entrypoint,
//! Cmd, WorkingDir, User) and Docker's default hardening
//! (SECURITY-CASES.md §2), which `--privileged` turns off as §2.5 says.
//!
//! The spec is assembled as a `config.json` document and then parsed into
//! [`Spec`], so the OCI types validate it; the golden tests below pin it.

mod defaults;
mod resources;
pub(crate) mod user;

use std::path::{Path, PathBuf};

use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::{LinuxSeccomp, Spec};
use serde_json::{json, Value};
use wharf_sys::root::lexically_clean;

use crate::EngineError;
use defaults::{
    DEFAULT_CAPABILITIES, DEFAULT_PATH_ENV, DEFAULT_SHM_SIZE, MASKED_PATHS, READONLY_PATHS,
};

/// Where `--init`'s binary is bind-mounted in the container (read-only).
pub const INIT_PATH: &str = "/sbin/wharf-init";

/// What `docker run` flags ask for, as far as the spec is concerned; plain
/// data validated by the caller's parser (names and numbers are re-checked
/// here only where the image is needed to resolve them).
#[derive(Debug, Clone, Default)]
pub struct ContainerRequest {
    /// Arguments after the image: replace the image's Cmd when non-empty.
    pub cmd: Vec<String>,
    /// `--entrypoint`: `Some(vec![])` (`--entrypoint ""`) clears the image's;
    /// any `Some` also drops the image's Cmd, as Docker.
    pub entrypoint: Option<Vec<String>>,
    /// `-e`: `KEY=VALUE`, overriding the image's per key; a bare `KEY`
    /// removes it.
    pub env: Vec<String>,
    /// `-w`: absolute path.
    pub workdir: Option<String>,
    /// `-u name|uid[:group|gid]`; `None` takes the image's User.
    pub user: Option<String>,
    /// `--group-add`: group names or gids.
    pub group_add: Vec<String>,
    /// `--hostname` (the caller defaults it to the short container id).
    pub hostname: String,
    /// `--privileged`.
    pub privileged: bool,
    /// `--read-only`.
    pub read_only: bool,
    /// `--cap-add` names (`NET_ADMIN`, `CAP_NET_ADMIN`, `ALL`).
    pub cap_add: Vec<String>,
    /// `--cap-drop` names.
    pub cap_drop: Vec<String>,
    /// `--security-opt`.
    pub security: SecurityOptions,
    /// `--tmpfs` and `--mount type=tmpfs`.
    pub tmpfs: Vec<TmpfsMount>,
    /// `-v` and `--mount type=bind` (host paths already checked or created).
    pub binds: Vec<BindMount>,
    /// `--device`, already stat'ed on the host.
    pub devices: Vec<DeviceMapping>,
    /// Cgroup limits and rlimits.
    pub resources: Resources,
    /// `--sysctl`.
    pub sysctls: Vec<(String, String)>,
    /// `--oom-score-adj` (-1000 to 1000).
    pub oom_score_adj: Option<i32>,
    /// `--init`: the host path of Wharf's init binary, mounted at
    /// [`INIT_PATH`] and run as PID 1 in front of the command.
    pub init: Option<PathBuf>,
    /// `-t`.
    pub tty: bool,
    /// `-i`: does not change the spec (stdin is the monitor's business);
    /// kept so the request mirrors the flags.
    pub stdin_open: bool,
    /// `--network`.
    pub network: NetworkMode,
}

/// `--security-opt` values.
#[derive(Debug, Clone, Default)]
pub struct SecurityOptions {
    /// `seccomp=`.
    pub seccomp: SeccompOption,
    /// `no-new-privileges`.
    pub no_new_privileges: bool,
    /// `systempaths=unconfined`: no masked or read-only paths.
    pub systempaths_unconfined: bool,
    /// `apparmor=PROFILE`; `unconfined` or `None` sets no profile (this
    /// host has no LSM; the runtime must tolerate its absence).
    pub apparmor: Option<String>,
    /// `label=disable`: no SELinux label (none is set anyway).
    pub label_disable: bool,
}

/// `--security-opt seccomp=`.
#[derive(Debug, Clone, Default)]
pub enum SeccompOption {
    /// Wharf's default profile for the effective capabilities (none when
    /// privileged).
    #[default]
    Default,
    /// `seccomp=unconfined`.
    Unconfined,
    /// `seccomp=FILE`, already read and parsed; applies even when privileged.
    Profile(Box<LinuxSeccomp>),
}

/// `--network`, as the runtime sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum NetworkMode {
    /// `none`: a new, empty network namespace.
    #[default]
    None,
    /// `host`: no network namespace is created.
    Host,
    /// A new network namespace that the engine connects to its networks
    /// between the runtime's create and start.
    Bridge,
    /// Join the network namespace at this path (`ns:<path>`, or
    /// `/proc/<pid>/ns/net` of the container named by `container:<name>`,
    /// set again at each start).
    Join(PathBuf),
}

/// A `--tmpfs` mount.
#[derive(Debug, Clone)]
pub struct TmpfsMount {
    /// Absolute path in the container.
    pub destination: String,
    /// Mount options (`size=64m`, `mode=1777`); added after Docker's
    /// `nosuid,noexec,nodev`.
    pub options: Vec<String>,
}

/// A bind mount from the host.
#[derive(Debug, Clone)]
pub struct BindMount {
    /// Host path.
    pub source: PathBuf,
    /// Absolute path in the container.
    pub destination: String,
    /// `ro`.
    pub read_only: bool,
    /// `rprivate` (Docker's default), `rshared`, `rslave`, `private`,
    /// `shared`, `slave`; `None` is `rprivate`.
    pub propagation: Option<String>,
}

/// A `--device`, with the host node's numbers.
#[derive(Debug, Clone)]
pub struct DeviceMapping {
    /// Path in the container.
    pub destination: String,
    /// `c` or `b`.
    pub block: bool,
    /// Major number.
    pub major: i64,
    /// Minor number.
    pub minor: i64,
    /// Permission bits of the node.
    pub file_mode: u32,
    /// Cgroup access (`rwm` by default).
    pub access: String,
}

/// Cgroup and rlimit flags.
#[derive(Debug, Clone, Default)]
pub struct Resources {
    /// `--memory` in bytes.
    pub memory: Option<i64>,
    /// `--memory-swap` in bytes (memory + swap); -1 unlimited; unset → 2 × memory.
    pub memory_swap: Option<i64>,
    /// `--memory-reservation` in bytes.
    pub memory_reservation: Option<i64>,
    /// `--cpus`.
    pub cpus: Option<f64>,
    /// `--cpu-shares`.
    pub cpu_shares: Option<u64>,
    /// `--cpuset-cpus`.
    pub cpuset_cpus: Option<String>,
    /// `--pids-limit`: unset → 2048 (Podman's); 0 or -1 → unlimited.
    pub pids_limit: Option<i64>,
    /// `--ulimit`.
    pub ulimits: Vec<Ulimit>,
    /// `--shm-size` in bytes; unset → 64 MiB.
    pub shm_size: Option<u64>,
}

/// A `--ulimit name=soft:hard`.
#[derive(Debug, Clone)]
pub struct Ulimit {
    /// `nofile`, `nproc`, `core`, …
    pub name: String,
    /// Soft limit.
    pub soft: u64,
    /// Hard limit.
    pub hard: u64,
}

/// What the caller read from the host.
#[derive(Debug, Clone, Copy)]
pub struct HostFacts {
    /// getrlimit(RLIMIT_NOFILE) hard limit of the engine process.
    pub rlimit_nofile_hard: u64,
    /// getrlimit(RLIMIT_NPROC) hard limit.
    pub rlimit_nproc_hard: u64,
    /// Whether /sys/fs/cgroup is cgroup v2 (cgroupns is private only there,
    /// as Docker).
    pub cgroup_v2: bool,
    /// The engine's bounding set as a mask (bit n: capability n), when
    /// known: `--privileged` and `--cap-add ALL` grant only what the host
    /// lets it grant (a host without CAP_SYS_RESOURCE, for one).
    pub bounding_caps: Option<u64>,
}

/// The planned container: its runtime spec and what the engine keeps
/// beside it.
#[derive(Debug, Clone)]
pub struct SpecPlan {
    /// The OCI runtime spec (`config.json`).
    pub spec: Spec,
    /// The image's StopSignal, else `SIGTERM`.
    pub stop_signal: String,
}

/// Builds the runtime spec for `request` on an image with `image_config`,
/// whose rootfs is at `rootfs` (only its /etc/passwd and /etc/group are read,
/// through `wharf_sys::Root`). `container_dir` holds the `hosts`, `hostname`
/// and `resolv.conf` files the caller writes; they are bind-mounted on
/// /etc/hosts, /etc/hostname and /etc/resolv.conf.
///
/// `--privileged` grants every capability, drops seccomp (unless a profile
/// was given), masked and read-only paths, leaves /sys and /sys/fs/cgroup
/// writable and allows every device in the device cgroup; `/dev` is still a
/// fresh tmpfs (the host's device nodes are not listed in `linux.devices`:
/// the caller adds them if it wants Docker's full `/dev`).
///
/// # Errors
///
/// No command at all ([`EngineError::NoCommand`]); a user or group missing
/// from the image, a bad uid/gid, an unreadable /etc/passwd; an unknown
/// capability; a bad resource value or path (`InvalidArgument`).
pub fn build_spec(
    image_config: &ImageConfiguration,
    request: &ContainerRequest,
    rootfs: &Path,
    container_dir: &Path,
    host: &HostFacts,
) -> Result<SpecPlan, EngineError> {
    let config = image_config.config().as_ref();
    let image_env = config.and_then(|c| c.env().clone()).unwrap_or_default();
    let image_entrypoint = config.and_then(|c| c.entrypoint().clone());
    let image_cmd = config.and_then(|c| c.cmd().clone());
    let image_workdir = config.and_then(|c| c.working_dir().clone());
    let image_user = config.and_then(|c| c.user().clone());
    let stop_signal = config
        .and_then(|c| c.stop_signal().clone())
        .unwrap_or_else(|| "SIGTERM".into());

    let mut args = command(
        image_entrypoint.as_deref(),
        image_cmd.as_deref(),
        request.entrypoint.as_deref(),
        &request.cmd,
    )?;
    let cwd = working_dir(request.workdir.as_deref(), image_workdir.as_deref())?;
    let user_spec = request.user.clone().or(image_user).unwrap_or_default();
    let user = user::resolve(rootfs, &user_spec, &request.group_add)?;
    let env = environment(
        &image_env,
        &request.env,
        &request.hostname,
        request.tty,
        &user.home,
    );

    let caps = capabilities(request, host.bounding_caps)?;
    let seccomp = match &request.security.seccomp {
        SeccompOption::Profile(p) => {
            Some(serde_json::to_value(p).map_err(EngineError::AssembleSpec)?)
        }
        SeccompOption::Unconfined => None,
        SeccompOption::Default if request.privileged => None,
        SeccompOption::Default => Some(
            serde_json::to_value(wharf_runtime::default_seccomp(&caps))
                .map_err(EngineError::AssembleSpec)?,
        ),
    };

    let mut mounts = mounts(request, container_dir)?;
    if let Some(init) = &request.init {
        mounts.push(
            json!({"destination": INIT_PATH, "type": "bind", "source": init,
            "options": ["rbind", "rprivate", "ro"]}),
        );
        args.splice(0..0, [INIT_PATH.to_owned(), "--".to_owned()]);
    }

    let mut resources = resources::linux_resources(&request.resources)?;
    let mut device_rules = defaults::device_cgroup(request.privileged);
    let mut devices = Vec::new();
    for d in &request.devices {
        let destination = absolute(&d.destination, "--device")?;
        let typ = if d.block { "b" } else { "c" };
        devices.push(json!({"path": destination, "type": typ, "major": d.major,
            "minor": d.minor, "fileMode": d.file_mode, "uid": 0, "gid": 0}));
        device_rules.push(json!({"allow": true, "type": typ, "major": d.major,
            "minor": d.minor, "access": d.access}));
    }
    resources.insert("devices".into(), Value::Array(device_rules));

    let mut namespaces = vec![json!({"type": "mount"})];
    match &request.network {
        NetworkMode::None | NetworkMode::Bridge => namespaces.push(json!({"type": "network"})),
        NetworkMode::Join(path) => {
            namespaces.push(json!({"type": "network", "path": path}));
        }
        NetworkMode::Host => {}
    }
    namespaces.extend([
        json!({"type": "uts"}),
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
    ]);
    if host.cgroup_v2 {
        namespaces.push(json!({"type": "cgroup"}));
    }

    let confined_paths = !request.privileged && !request.security.systempaths_unconfined;
    let (masked, readonly): (&[&str], &[&str]) = if confined_paths {
        (&MASKED_PATHS, &READONLY_PATHS)
    } else {
        (&[], &[])
    };

    if let Some(adj) = request.oom_score_adj {
        if !(-1000..=1000).contains(&adj) {
            return Err(EngineError::invalid(format!(
                "invalid --oom-score-adj {adj}: it must be between -1000 and 1000"
            )));
        }
    }
    let apparmor = match &request.security.apparmor {
        Some(p) if p != "unconfined" && !request.privileged => Some(p.clone()),
        _ => None,
    };
    if let Some((key, _)) = request
        .sysctls
        .iter()
        .find(|(k, _)| request.network == NetworkMode::Host && k.starts_with("net."))
    {
        return Err(EngineError::invalid(format!(
            "invalid --sysctl {key}: net.* sysctls are not allowed with --network host"
        )));
    }
    let sysctl: serde_json::Map<String, Value> = request
        .sysctls
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();

    let mut process = json!({
        "terminal": request.tty,
        "user": {"uid": user.uid, "gid": user.gid, "additionalGids": user.additional_gids},
        "args": args,
        "env": env,
        "cwd": cwd,
        "capabilities": {
            "bounding": caps, "effective": caps, "permitted": caps,
            "inheritable": [], "ambient": []
        },
        "rlimits": resources::rlimits(&request.resources.ulimits, host)?,
        "noNewPrivileges": request.security.no_new_privileges,
    });
    if let Some(adj) = request.oom_score_adj {
        process["oomScoreAdj"] = json!(adj);
    }
    if let Some(profile) = apparmor {
        process["apparmorProfile"] = json!(profile);
    }
    let mut linux = json!({
        "resources": resources,
        "namespaces": namespaces,
        "devices": devices,
        "maskedPaths": masked,
        "readonlyPaths": readonly,
        "sysctl": sysctl,
    });
    if let Some(seccomp) = seccomp {
        linux["seccomp"] = seccomp;
    }
    let document = json!({
        "ociVersion": wharf_runtime::OCI_VERSION,
        "process": process,
        "root": {"path": rootfs, "readonly": request.read_only},
        "hostname": request.hostname,
        "mounts": mounts,
        "linux": linux,
    });
    let spec = serde_json::from_value(document).map_err(EngineError::AssembleSpec)?;
    Ok(SpecPlan { spec, stop_signal })
}

/// Docker's Entrypoint/Cmd rules: a request entrypoint (even empty) replaces
/// the image's and drops the image's Cmd; request args replace Cmd.
fn command(
    image_entrypoint: Option<&[String]>,
    image_cmd: Option<&[String]>,
    entrypoint: Option<&[String]>,
    cmd: &[String],
) -> Result<Vec<String>, EngineError> {
    let (entrypoint, cmd) = match entrypoint {
        Some(e) => (e, cmd),
        None if cmd.is_empty() => (
            image_entrypoint.unwrap_or_default(),
            image_cmd.unwrap_or_default(),
        ),
        None => (image_entrypoint.unwrap_or_default(), cmd),
    };
    let args: Vec<String> = entrypoint.iter().chain(cmd).cloned().collect();
    if args.is_empty() {
        return Err(EngineError::NoCommand);
    }
    Ok(args)
}

/// `-w` must be absolute; the image's WorkingDir is taken from `/`.
fn working_dir(request: Option<&str>, image: Option<&str>) -> Result<String, EngineError> {
    match (request, image) {
        (Some(w), _) => absolute(w, "--workdir"),
        (None, Some(w)) if !w.is_empty() => Ok(lexically_clean(Path::new(w)).display().to_string()),
        _ => Ok("/".into()),
    }
}

fn absolute(path: &str, flag: &str) -> Result<String, EngineError> {
    if !path.starts_with('/') {
        return Err(EngineError::invalid(format!(
            "invalid {flag} {path:?}: it must be an absolute path"
        )));
    }
    Ok(lexically_clean(Path::new(path)).display().to_string())
}

/// Docker's `CreateDaemonEnvironment`: PATH, HOSTNAME and (with a tty) TERM
/// first, overridden per key by the image's Env, then by `-e`; HOME from the
/// passwd entry when nobody set it (what runc adds).
fn environment(
    image: &[String],
    request: &[String],
    hostname: &str,
    tty: bool,
    home: &str,
) -> Vec<String> {
    let mut env = vec![DEFAULT_PATH_ENV.to_owned(), format!("HOSTNAME={hostname}")];
    if tty {
        env.push("TERM=xterm".into());
    }
    let key = |e: &str| e.split_once('=').map_or(e, |(k, _)| k).to_owned();
    for entry in image.iter().chain(request) {
        let k = key(entry);
        let pos = env.iter().position(|e| key(e) == k);
        match (pos, entry.contains('=')) {
            (Some(i), true) => env[i].clone_from(entry),
            (None, true) => env.push(entry.clone()),
            (Some(i), false) => {
                env.remove(i);
            }
            (None, false) => {}
        }
    }
    if !env.iter().any(|e| key(e) == "HOME") {
        env.push(format!("HOME={home}"));
    }
    env
}

/// Docker's `TweakCapabilities`: privileged → all; `--cap-add ALL` → all but
/// the dropped; `--cap-drop ALL` → only the added; else defaults − drop + add.
/// Every capability the `caps` crate knows, in kernel order (`--privileged`
/// and `--cap-add ALL`); the runtime skips those the running kernel lacks,
/// as Docker's `GetAllCapabilities`.
pub(crate) fn all_capabilities(bounding: Option<u64>) -> Vec<String> {
    let mut all: Vec<caps::Capability> = caps::all()
        .into_iter()
        .filter(|c| bounding.is_none_or(|mask| mask & (1u64 << c.index()) != 0))
        .collect();
    all.sort_by_key(|c| c.index());
    all.iter().map(ToString::to_string).collect()
}

fn capabilities(
    request: &ContainerRequest,
    bounding: Option<u64>,
) -> Result<Vec<String>, EngineError> {
    let all = all_capabilities(bounding);
    if request.privileged {
        return Ok(all);
    }
    // `NET_ADMIN`, `cap_net_admin`, `CAP_NET_ADMIN` or `ALL`.
    let normalize = |names: &[String]| -> Result<Vec<String>, EngineError> {
        names
            .iter()
            .map(|n| {
                if n.eq_ignore_ascii_case("ALL") {
                    return Ok("ALL".to_owned());
                }
                wharf_runtime::parse_capabilities(std::slice::from_ref(n))
                    .ok()
                    .and_then(|set| set.into_iter().next())
                    .map(|c| c.to_string())
                    .ok_or_else(|| EngineError::UnknownCapability { name: n.clone() })
            })
            .collect()
    };
    let add = normalize(&request.cap_add)?;
    let drop = normalize(&request.cap_drop)?;
    let has_all = |v: &[String]| v.iter().any(|c| c == "ALL");
    let mut caps: Vec<String> = if has_all(&add) {
        all.into_iter().filter(|c| !drop.contains(c)).collect()
    } else if has_all(&drop) {
        add
    } else {
        let mut caps: Vec<String> = DEFAULT_CAPABILITIES
            .iter()
            .filter(|c| !drop.iter().any(|d| d == *c))
            .map(|c| (*c).to_owned())
            .collect();
        caps.extend(add);
        caps
    };
    let mut seen = Vec::new();
    caps.retain(|c| {
        let new = !seen.contains(c);
        seen.push(c.clone());
        new
    });
    Ok(caps)
}

/// Default mounts, then `--tmpfs`, binds and the network files; a user mount
/// replaces a default one at the same destination.
fn mounts(request: &ContainerRequest, container_dir: &Path) -> Result<Vec<Value>, EngineError> {
    let shm = request.resources.shm_size.unwrap_or(DEFAULT_SHM_SIZE);
    let mut user = Vec::new();
    for t in &request.tmpfs {
        let destination = absolute(&t.destination, "--tmpfs")?;
        let mut options = vec!["nosuid".to_owned(), "noexec".to_owned(), "nodev".to_owned()];
        options.extend(t.options.iter().cloned());
        user.push(
            json!({"destination": destination, "type": "tmpfs", "source": "tmpfs",
            "options": options}),
        );
    }
    for b in &request.binds {
        let destination = absolute(&b.destination, "--volume")?;
        if destination == "/" {
            return Err(EngineError::invalid(format!(
                "invalid --volume {}:/: the destination cannot be /",
                b.source.display()
            )));
        }
        let propagation = b.propagation.as_deref().unwrap_or("rprivate");
        if ![
            "private", "rprivate", "shared", "rshared", "slave", "rslave",
        ]
        .contains(&propagation)
        {
            return Err(EngineError::invalid(format!(
                "invalid bind propagation {propagation:?} for {destination}"
            )));
        }
        let mut options = vec!["rbind".to_owned(), propagation.to_owned()];
        if b.read_only {
            options.push("ro".into());
        }
        user.push(
            json!({"destination": destination, "type": "bind", "source": b.source,
            "options": options}),
        );
    }
    let taken = |dest: &Value| user.iter().any(|m| m["destination"] == *dest);
    let mut out: Vec<Value> = defaults::default_mounts(request.privileged, request.read_only, shm)
        .into_iter()
        .filter(|m| !taken(&m["destination"]))
        .collect();
    for (file, destination) in [
        ("hosts", "/etc/hosts"),
        ("hostname", "/etc/hostname"),
        ("resolv.conf", "/etc/resolv.conf"),
    ] {
        if taken(&json!(destination)) {
            continue;
        }
        let mut options = vec!["rbind", "rprivate"];
        if request.read_only {
            options.push("ro");
        }
        out.push(json!({"destination": destination, "type": "bind",
            "source": container_dir.join(file), "options": options}));
    }
    out.extend(user);
    Ok(out)
}

#[cfg(test)]
mod tests;
