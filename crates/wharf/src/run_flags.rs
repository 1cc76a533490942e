//! `run`/`create` flags (Docker's names and defaults) and their parsing
//! into the engine's [`CreateRequest`]: every value is validated here, with
//! an error naming the flag, before anything is created.

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use wharf_engine::containers::{
    CreateRequest, HealthRequest, PullPolicy, RestartPolicy, VolumeMount,
};
use wharf_engine::logs::LogConfig;
use wharf_engine::networks::{
    parse_exposed, DnsSettings, NetworkAttach, NetworkName, NetworkRequest, PortSpec,
};
use wharf_engine::spec::{
    BindMount, ContainerRequest, DeviceMapping, NetworkMode, Resources, SeccompOption,
    SecurityOptions, TmpfsMount, Ulimit,
};
use wharf_engine::state::ContainerName;
use wharf_engine::volumes::VolumeName;

/// Flags shared by `run` and `create`.
#[derive(Debug, Clone, clap::Args)]
pub struct CreateFlags {
    /// Keep STDIN open even if not attached.
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY.
    #[arg(short, long)]
    pub tty: bool,
    /// Remove the container when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Name the container.
    #[arg(long)]
    pub name: Option<String>,
    /// Set environment variables (`KEY=VALUE`, or `KEY` to pass the
    /// caller's value).
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Read environment variables from a file.
    #[arg(long)]
    pub env_file: Vec<PathBuf>,
    /// Working directory inside the container.
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// `name|uid[:group|gid]`.
    #[arg(short, long)]
    pub user: Option<String>,
    /// Additional groups to join.
    #[arg(long)]
    pub group_add: Vec<String>,
    /// Overwrite the image's ENTRYPOINT (`""` clears it).
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Container host name.
    #[arg(short = 'h', long)]
    pub hostname: Option<String>,
    /// Add a custom host-to-IP mapping (`host:ip`).
    #[arg(long)]
    pub add_host: Vec<String>,
    /// Bind mount a volume (`/host:/ctr[:ro]`).
    #[arg(short, long)]
    pub volume: Vec<String>,
    /// Attach a filesystem mount (`type=bind|tmpfs,source=…,target=…`).
    #[arg(long)]
    pub mount: Vec<String>,
    /// Mount a tmpfs (`/path[:options]`).
    #[arg(long)]
    pub tmpfs: Vec<String>,
    /// Mount the container's root filesystem read-only.
    #[arg(long)]
    pub read_only: bool,
    /// Add Linux capabilities.
    #[arg(long)]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities.
    #[arg(long)]
    pub cap_drop: Vec<String>,
    /// Give extended privileges to this container.
    #[arg(long)]
    pub privileged: bool,
    /// Security options.
    #[arg(long)]
    pub security_opt: Vec<String>,
    /// Add a host device (`/dev/x[:/dev/y[:rwm]]`).
    #[arg(long)]
    pub device: Vec<String>,
    /// Memory limit.
    #[arg(short, long)]
    pub memory: Option<String>,
    /// Memory + swap limit (-1: unlimited swap).
    #[arg(long)]
    pub memory_swap: Option<String>,
    /// Memory soft limit.
    #[arg(long)]
    pub memory_reservation: Option<String>,
    /// Number of CPUs.
    #[arg(long)]
    pub cpus: Option<f64>,
    /// CPU shares (relative weight).
    #[arg(short = 'c', long)]
    pub cpu_shares: Option<u64>,
    /// CPUs in which to allow execution (`0-3`, `0,1`).
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    /// Tune the container's pids limit (-1: unlimited).
    #[arg(long, allow_negative_numbers = true)]
    pub pids_limit: Option<i64>,
    /// Ulimit options (`nofile=1024:2048`).
    #[arg(long)]
    pub ulimit: Vec<String>,
    /// Size of /dev/shm.
    #[arg(long)]
    pub shm_size: Option<String>,
    /// Sysctl options.
    #[arg(long)]
    pub sysctl: Vec<String>,
    /// Tune the host's OOM preferences (-1000 to 1000).
    #[arg(long, allow_negative_numbers = true)]
    pub oom_score_adj: Option<i32>,
    /// Restart policy (`no`, `on-failure[:N]`, `always`, `unless-stopped`).
    #[arg(long, default_value = "no")]
    pub restart: String,
    /// Seconds to wait for `stop` before killing the container.
    #[arg(long)]
    pub stop_timeout: Option<u32>,
    /// Signal to stop the container.
    #[arg(long)]
    pub stop_signal: Option<String>,
    /// Run an init inside the container that forwards signals and reaps
    /// processes.
    #[arg(long)]
    pub init: bool,
    /// The init binary for `--init` (statically linked; default:
    /// `wharf-init` beside `wharf`).
    #[arg(long)]
    pub init_path: Option<PathBuf>,
    /// Logging driver (`json-file`, `journald`, `none`).
    #[arg(long, default_value = "json-file")]
    pub log_driver: String,
    /// Log driver options (`max-size=10m`, `max-file=3`).
    #[arg(long)]
    pub log_opt: Vec<String>,
    /// Set metadata on the container.
    #[arg(short, long)]
    pub label: Vec<String>,
    /// Add an annotation to the container (passed to the runtime).
    #[arg(long)]
    pub annotation: Vec<String>,
    /// Pull the image before running (`always`, `missing`, `never`).
    #[arg(long, default_value = "missing")]
    pub pull: String,
    /// Platform of the image to pull (`os/arch[/variant]`).
    #[arg(long)]
    pub platform: Option<String>,
    /// Write the container id to the file.
    #[arg(long)]
    pub cidfile: Option<PathBuf>,
    /// Network: `bridge` (the default network), a network's name, `none`,
    /// `host`, `container:<name|id>` or `ns:<path>`; repeat to join
    /// several networks.
    #[arg(long, visible_alias = "net")]
    pub network: Vec<String>,
    /// Run in this pod (name or id): share its namespaces and cgroup.
    #[arg(long)]
    pub pod: Option<String>,
    /// Publish a container's port to the host
    /// (`[ip:][hostport[-end]:]port[-end][/tcp|udp|sctp]`).
    #[arg(short = 'p', long)]
    pub publish: Vec<String>,
    /// Publish every exposed port to a free host port.
    #[arg(short = 'P', long)]
    pub publish_all: bool,
    /// Expose a port or a range of ports (`80`, `8000-8010/udp`).
    #[arg(long)]
    pub expose: Vec<String>,
    /// IPv4 address on the (first) network.
    #[arg(long)]
    pub ip: Option<std::net::Ipv4Addr>,
    /// IPv6 address on the (first) network.
    #[arg(long)]
    pub ip6: Option<std::net::Ipv6Addr>,
    /// MAC address on the (first) network (`02:42:0a:00:00:02`).
    #[arg(long)]
    pub mac_address: Option<String>,
    /// Another name for the container on the (first) network.
    #[arg(long, visible_alias = "net-alias")]
    pub network_alias: Vec<String>,
    /// Nameserver for /etc/resolv.conf.
    #[arg(long)]
    pub dns: Vec<std::net::IpAddr>,
    /// Search domain for /etc/resolv.conf (`.` for none).
    #[arg(long)]
    pub dns_search: Vec<String>,
    /// Option for /etc/resolv.conf (`ndots:2`).
    #[arg(long, visible_alias = "dns-opt")]
    pub dns_option: Vec<String>,
    /// Command to run to check health (`/bin/sh -c`).
    #[arg(long)]
    pub health_cmd: Option<String>,
    /// Time between health checks.
    #[arg(long)]
    pub health_interval: Option<String>,
    /// Maximum time of one check.
    #[arg(long)]
    pub health_timeout: Option<String>,
    /// Failures needed to report unhealthy.
    #[arg(long)]
    pub health_retries: Option<u32>,
    /// Start period for the container to initialize.
    #[arg(long)]
    pub health_start_period: Option<String>,
    /// Disable any container-specified HEALTHCHECK.
    #[arg(long)]
    pub no_healthcheck: bool,
    /// The image, then the command and its arguments (options end at the
    /// image, as Docker's: `run busybox ls -l`).
    #[arg(value_name = "IMAGE [COMMAND [ARG...]]", required = true, num_args = 1.., trailing_var_arg = true, allow_hyphen_values = true)]
    pub image_and_command: Vec<String>,
}

/// Docker's `RAMInBytes`: a number with an optional binary unit (`b`, `k`,
/// `m`, `g`, `t`, `p`; `kb`, `mib` … alike).
pub fn parse_ram(flag: &str, s: &str) -> anyhow::Result<i64> {
    let t = s.trim().to_ascii_lowercase();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| anyhow!("invalid {flag} {s:?}: expected a size like 512m or 1g"))?;
    let unit = unit.trim_end_matches("ib").trim_end_matches('b');
    let mult: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => bail!("invalid {flag} {s:?}: unknown unit {unit:?}"),
    };
    Ok((value * mult) as i64)
}

fn key_value(flag: &str, s: &str) -> anyhow::Result<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => bail!("invalid {flag} {s:?}: expected KEY=VALUE"),
    }
}

/// `-e KEY` takes the caller's value (and drops the variable when unset),
/// as Docker.
fn env_entry(s: &str) -> Option<String> {
    if s.contains('=') {
        return Some(s.to_owned());
    }
    std::env::var(s).ok().map(|v| format!("{s}={v}"))
}

fn env_file(path: &Path) -> anyhow::Result<Vec<String>> {
    let text = fs_err::read_to_string(path).context("read --env-file")?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(env_entry)
        .collect())
}

fn bool_option(flag: &str, value: Option<&str>) -> anyhow::Result<bool> {
    match value {
        None | Some("true") | Some("1") => Ok(true),
        Some("false") | Some("0") => Ok(false),
        Some(v) => bail!("invalid {flag} value {v:?}: expected true or false"),
    }
}

fn security(opts: &[String]) -> anyhow::Result<SecurityOptions> {
    let mut sec = SecurityOptions::default();
    for opt in opts {
        let (key, value) = match opt.split_once(['=', ':']) {
            Some((k, v)) => (k, Some(v)),
            None => (opt.as_str(), None),
        };
        match key {
            "no-new-privileges" => {
                sec.no_new_privileges = bool_option("--security-opt no-new-privileges", value)?
            }
            "seccomp" => match value {
                Some("unconfined") => sec.seccomp = SeccompOption::Unconfined,
                Some(file) => {
                    let text = fs_err::read_to_string(file).context("read the seccomp profile")?;
                    let profile = serde_json::from_str(&text)
                        .with_context(|| format!("parse the seccomp profile {file}"))?;
                    sec.seccomp = SeccompOption::Profile(Box::new(profile));
                }
                None => bail!("invalid --security-opt {opt:?}: seccomp needs unconfined or a file"),
            },
            "apparmor" => sec.apparmor = value.map(str::to_owned),
            "label" => {
                if value == Some("disable") {
                    sec.label_disable = true;
                }
            }
            "systempaths" => match value {
                Some("unconfined") => sec.systempaths_unconfined = true,
                _ => bail!("invalid --security-opt {opt:?}: use systempaths=unconfined"),
            },
            _ => bail!("invalid --security-opt {opt:?}: use seccomp=, no-new-privileges, apparmor=, label= or systempaths="),
        }
    }
    Ok(sec)
}

fn ulimit(s: &str) -> anyhow::Result<Ulimit> {
    let (name, limits) = s
        .split_once('=')
        .ok_or_else(|| anyhow!("invalid --ulimit {s:?}: expected NAME=SOFT[:HARD]"))?;
    let parse = |v: &str| -> anyhow::Result<u64> {
        if v == "-1" || v == "unlimited" {
            return Ok(u64::MAX);
        }
        v.parse()
            .map_err(|_| anyhow!("invalid --ulimit {s:?}: {v:?} is not a number"))
    };
    let (soft, hard) = match limits.split_once(':') {
        Some((a, b)) => (parse(a)?, parse(b)?),
        None => {
            let v = parse(limits)?;
            (v, v)
        }
    };
    if soft > hard {
        bail!("invalid --ulimit {s:?}: soft limit {soft} is above hard limit {hard}");
    }
    Ok(Ulimit {
        name: name.to_owned(),
        soft,
        hard,
    })
}

fn device(s: &str) -> anyhow::Result<DeviceMapping> {
    let parts: Vec<&str> = s.split(':').collect();
    let (host, dest, access) = match parts.as_slice() {
        [h] => (*h, *h, "rwm"),
        [h, d] if d.chars().all(|c| "rwm".contains(c)) && !d.starts_with('/') => (*h, *h, *d),
        [h, d] => (*h, *d, "rwm"),
        [h, d, a] => (*h, *d, *a),
        _ => bail!("invalid --device {s:?}: expected HOST[:CONTAINER[:PERMISSIONS]]"),
    };
    if access.is_empty() || !access.chars().all(|c| "rwm".contains(c)) {
        bail!("invalid --device {s:?}: permissions must be a combination of r, w and m");
    }
    let meta = fs_err::metadata(host).with_context(|| format!("--device {s}"))?;
    let ft = meta.file_type();
    if !ft.is_char_device() && !ft.is_block_device() {
        bail!("invalid --device {s:?}: {host} is not a device node");
    }
    let rdev = meta.rdev();
    Ok(DeviceMapping {
        destination: dest.to_owned(),
        block: ft.is_block_device(),
        major: i64::from(rustix::fs::major(rdev)),
        minor: i64::from(rustix::fs::minor(rdev)),
        file_mode: meta.mode() & 0o7777,
        access: access.to_owned(),
    })
}

/// `-v SRC:DST[:OPTS]` (a host path, created if missing as Docker does,
/// or a volume name) or `-v DST` (an anonymous volume).
fn volume_flag(s: &str) -> anyhow::Result<MountSpec> {
    let parts: Vec<&str> = s.split(':').collect();
    let (source, dest, opts) = match parts.as_slice() {
        [dst] => ("", *dst, ""),
        [src, dst] => (*src, *dst, ""),
        [src, dst, opts] => (*src, *dst, *opts),
        _ => bail!("invalid -v {s:?}: expected [SOURCE:]DESTINATION[:OPTIONS]"),
    };
    if !dest.starts_with('/') {
        bail!("invalid -v {s:?}: the destination must be an absolute path");
    }
    let mut read_only = false;
    let mut propagation = None;
    let mut no_copy = false;
    for opt in opts.split(',').filter(|o| !o.is_empty()) {
        match opt {
            "ro" => read_only = true,
            "rw" => read_only = false,
            "nocopy" => no_copy = true,
            "z" | "Z" | "consistent" | "cached" | "delegated" => {}
            "rprivate" | "private" | "rshared" | "shared" | "rslave" | "slave" => {
                propagation = Some(opt.to_owned())
            }
            _ => bail!("invalid -v {s:?}: unknown option {opt:?}"),
        }
    }
    if source.is_empty() || !source.starts_with('/') {
        let name = if source.is_empty() {
            None
        } else {
            Some(VolumeName::parse(source)?)
        };
        return Ok(MountSpec::Volume(VolumeMount {
            name,
            destination: dest.to_owned(),
            read_only,
            no_copy,
        }));
    }
    let bind = BindMount {
        source: PathBuf::from(source),
        destination: dest.to_owned(),
        read_only,
        propagation,
    };
    if !bind.source.exists() {
        fs_err::create_dir_all(&bind.source)
            .with_context(|| format!("create the bind source of -v {s}"))?;
    }
    Ok(MountSpec::Bind(bind))
}

enum MountSpec {
    Bind(BindMount),
    Tmpfs(TmpfsMount),
    Volume(VolumeMount),
}

/// `--mount type=bind|tmpfs,source=…,target=…[,readonly][,bind-propagation=…][,tmpfs-size=…][,tmpfs-mode=…]`.
fn mount(s: &str) -> anyhow::Result<MountSpec> {
    let mut kind = "volume";
    let mut source = None;
    let mut target = None;
    let mut read_only = false;
    let mut propagation = None;
    let mut tmpfs_opts = Vec::new();
    let mut no_copy = false;
    for field in s.split(',') {
        let (k, v) = match field.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (field, None),
        };
        match (k, v) {
            ("type", Some(t)) => kind = t,
            ("source" | "src", Some(v)) => source = Some(v),
            ("target" | "destination" | "dst", Some(v)) => target = Some(v),
            ("readonly" | "ro", v) => read_only = bool_option("--mount readonly", v)?,
            ("bind-propagation", Some(v)) => propagation = Some(v.to_owned()),
            ("tmpfs-size", Some(v)) => {
                tmpfs_opts.push(format!("size={}", parse_ram("--mount tmpfs-size", v)?))
            }
            ("tmpfs-mode", Some(v)) => tmpfs_opts.push(format!("mode={v}")),
            ("volume-nocopy", v) => no_copy = bool_option("--mount volume-nocopy", v)?,
            ("consistency" | "bind-nonrecursive" | "volume-driver", _) => {}
            _ => bail!("invalid --mount {s:?}: unknown field {k:?}"),
        }
    }
    let target = target.ok_or_else(|| anyhow!("invalid --mount {s:?}: target is required"))?;
    if !target.starts_with('/') {
        bail!("invalid --mount {s:?}: target must be an absolute path");
    }
    match kind {
        "bind" => {
            let source = source.ok_or_else(|| {
                anyhow!("invalid --mount {s:?}: source is required for a bind mount")
            })?;
            if !Path::new(source).exists() {
                bail!("invalid --mount {s:?}: bind source path does not exist: {source}");
            }
            Ok(MountSpec::Bind(BindMount {
                source: PathBuf::from(source),
                destination: target.to_owned(),
                read_only,
                propagation,
            }))
        }
        "tmpfs" => {
            if read_only {
                tmpfs_opts.push("ro".into());
            }
            Ok(MountSpec::Tmpfs(TmpfsMount {
                destination: target.to_owned(),
                options: tmpfs_opts,
            }))
        }
        "volume" => Ok(MountSpec::Volume(VolumeMount {
            name: source.map(VolumeName::parse).transpose()?,
            destination: target.to_owned(),
            read_only,
            no_copy,
        })),
        other => bail!("invalid --mount {s:?}: unknown type {other:?} (use bind, volume or tmpfs)"),
    }
}

impl CreateFlags {
    /// The image as named.
    pub fn image(&self) -> &str {
        &self.image_and_command[0]
    }

    /// The command after the image.
    pub fn command(&self) -> &[String] {
        &self.image_and_command[1..]
    }

    /// The pull policy.
    pub fn pull_policy(&self) -> anyhow::Result<PullPolicy> {
        Ok(PullPolicy::parse(&self.pull)?)
    }

    /// `--network` and the flags that go with the first network.
    fn network_request(&self) -> anyhow::Result<NetworkRequest> {
        if self.pod.is_some() && self.network.is_empty() {
            if self.ip.is_some()
                || self.ip6.is_some()
                || self.mac_address.is_some()
                || !self.network_alias.is_empty()
            {
                bail!("--ip, --ip6, --mac-address and --network-alias set a container's own network: with --pod they need --network (in a pod that does not share its network)");
            }
            return Ok(NetworkRequest::Pod);
        }
        let first = self.network.first().map(String::as_str).unwrap_or("bridge");
        let single = |mode: &str| -> anyhow::Result<()> {
            if self.network.len() > 1 {
                bail!("--network {mode} cannot be combined with other networks");
            }
            if self.ip.is_some()
                || self.ip6.is_some()
                || self.mac_address.is_some()
                || !self.network_alias.is_empty()
            {
                bail!("--ip, --ip6, --mac-address and --network-alias need a bridge or user network, not --network {mode}");
            }
            Ok(())
        };
        let request = if first == "none" || first == "host" {
            single(first)?;
            if first == "none" {
                NetworkRequest::None
            } else {
                NetworkRequest::Host
            }
        } else if let Some(target) = first.strip_prefix("container:") {
            single(first)?;
            if target.is_empty() {
                bail!("invalid --network {first:?}: name the container");
            }
            NetworkRequest::Container(target.to_owned())
        } else if let Some(path) = first.strip_prefix("ns:") {
            single(first)?;
            if !path.starts_with('/') {
                bail!("invalid --network {first:?}: the namespace path must be absolute");
            }
            NetworkRequest::Namespace(PathBuf::from(path))
        } else {
            let mut list = Vec::new();
            let names: Vec<&str> = if self.network.is_empty() {
                vec!["bridge"]
            } else {
                self.network.iter().map(String::as_str).collect()
            };
            for (i, name) in names.into_iter().enumerate() {
                if ["none", "host"].contains(&name) || name.contains(':') {
                    bail!(
                        "invalid --network {name:?}: {name} cannot be combined with other networks"
                    );
                }
                let name = if name == "default" { "bridge" } else { name };
                if name != "bridge" {
                    NetworkName::new(name)?;
                }
                let mut attach = NetworkAttach {
                    network: name.to_owned(),
                    ..NetworkAttach::default()
                };
                if i == 0 {
                    attach.ipv4 = self.ip;
                    attach.ipv6 = self.ip6;
                    attach.mac = self.mac_address.clone();
                    attach.aliases = self.network_alias.clone();
                }
                list.push(attach);
            }
            NetworkRequest::Networks(list)
        };
        Ok(request)
    }

    /// Validates every flag into the engine's request.
    pub fn request(&self) -> anyhow::Result<CreateRequest> {
        let mut env = Vec::new();
        for f in &self.env_file {
            env.extend(env_file(f)?);
        }
        env.extend(self.env.iter().filter_map(|e| env_entry(e)));
        let network = self.network_request()?;
        let mut binds = Vec::new();
        let mut tmpfs = Vec::new();
        let mut volumes = Vec::new();
        for spec in self
            .volume
            .iter()
            .map(|v| volume_flag(v))
            .chain(self.mount.iter().map(|m| mount(m)))
        {
            match spec? {
                MountSpec::Bind(b) => binds.push(b),
                MountSpec::Tmpfs(t) => tmpfs.push(t),
                MountSpec::Volume(v) => volumes.push(v),
            }
        }
        for t in &self.tmpfs {
            let (dest, opts) = t.split_once(':').unwrap_or((t.as_str(), ""));
            if !dest.starts_with('/') {
                bail!("invalid --tmpfs {t:?}: the destination must be an absolute path");
            }
            tmpfs.push(TmpfsMount {
                destination: dest.to_owned(),
                options: opts
                    .split(',')
                    .filter(|o| !o.is_empty())
                    .map(str::to_owned)
                    .collect(),
            });
        }
        let resources = Resources {
            memory: self
                .memory
                .as_deref()
                .map(|m| parse_ram("--memory", m))
                .transpose()?,
            memory_swap: self
                .memory_swap
                .as_deref()
                .map(|m| {
                    if m == "-1" {
                        Ok(-1)
                    } else {
                        parse_ram("--memory-swap", m)
                    }
                })
                .transpose()?,
            memory_reservation: self
                .memory_reservation
                .as_deref()
                .map(|m| parse_ram("--memory-reservation", m))
                .transpose()?,
            cpus: self.cpus,
            cpu_shares: self.cpu_shares,
            cpuset_cpus: self.cpuset_cpus.clone(),
            pids_limit: self.pids_limit,
            ulimits: self
                .ulimit
                .iter()
                .map(|u| ulimit(u))
                .collect::<anyhow::Result<_>>()?,
            shm_size: self
                .shm_size
                .as_deref()
                .map(|m| parse_ram("--shm-size", m).map(|v| v as u64))
                .transpose()?,
        };
        if let Some(cpus) = self.cpus {
            if cpus.is_nan() || cpus <= 0.0 {
                bail!("invalid --cpus {cpus}: it must be a positive number");
            }
        }
        let spec = ContainerRequest {
            cmd: self.command().to_vec(),
            entrypoint: self.entrypoint.as_ref().map(|e| {
                if e.is_empty() {
                    Vec::new()
                } else {
                    vec![e.clone()]
                }
            }),
            env,
            workdir: self.workdir.clone(),
            user: self.user.clone(),
            group_add: self.group_add.clone(),
            hostname: self.hostname.clone().unwrap_or_default(),
            privileged: self.privileged,
            read_only: self.read_only,
            cap_add: self.cap_add.clone(),
            cap_drop: self.cap_drop.clone(),
            security: security(&self.security_opt)?,
            tmpfs,
            binds,
            devices: self
                .device
                .iter()
                .map(|d| device(d))
                .collect::<anyhow::Result<_>>()?,
            resources,
            sysctls: self
                .sysctl
                .iter()
                .map(|s| key_value("--sysctl", s))
                .collect::<anyhow::Result<_>>()?,
            oom_score_adj: self.oom_score_adj,
            init: None,
            tty: self.tty,
            stdin_open: self.interactive,
            network: NetworkMode::None,
        };
        let mut extra_hosts = Vec::new();
        for h in &self.add_host {
            let (name, ip) = h
                .split_once(':')
                .or_else(|| h.split_once('='))
                .ok_or_else(|| anyhow!("invalid --add-host {h:?}: expected HOST:IP"))?;
            let ip = if ip == "host-gateway" {
                "127.0.0.1"
            } else {
                ip
            };
            ip.parse::<std::net::IpAddr>()
                .map_err(|_| anyhow!("invalid --add-host {h:?}: {ip:?} is not an IP address"))?;
            extra_hosts.push((name.to_owned(), ip.to_owned()));
        }
        let log_opts: Vec<(String, String)> = self
            .log_opt
            .iter()
            .map(|o| key_value("--log-opt", o))
            .collect::<anyhow::Result<_>>()?;
        if let Some(sig) = &self.stop_signal {
            wharf_runtime::signal::parse(sig)
                .map_err(|e| anyhow!("invalid --stop-signal {sig:?}: {e}"))?;
        }
        let labels = labels(&self.label);
        let annotations: BTreeMap<String, String> = self
            .annotation
            .iter()
            .map(|a| key_value("--annotation", a))
            .collect::<anyhow::Result<_>>()?;
        let duration = |flag: &str, v: &Option<String>| {
            v.as_deref()
                .map(|s| wharf_engine::logs::parse_duration_arg(flag, s))
                .transpose()
        };
        let health = HealthRequest {
            disable: self.no_healthcheck,
            cmd: self.health_cmd.clone(),
            interval: duration("--health-interval", &self.health_interval)?,
            timeout: duration("--health-timeout", &self.health_timeout)?,
            retries: self.health_retries,
            start_period: duration("--health-start-period", &self.health_start_period)?,
        };
        if health.disable && health.cmd.is_some() {
            bail!("--no-healthcheck conflicts with --health-* options");
        }
        Ok(CreateRequest {
            image: self.image().to_owned(),
            name: self.name.as_deref().map(ContainerName::parse).transpose()?,
            spec,
            restart: RestartPolicy::parse(&self.restart)?,
            auto_remove: self.rm,
            stop_signal: self.stop_signal.clone(),
            stop_timeout: self.stop_timeout,
            labels,
            annotations,
            extra_hosts,
            network,
            ports: self
                .publish
                .iter()
                .map(|p| PortSpec::parse(p))
                .collect::<Result<_, _>>()?,
            publish_all: self.publish_all,
            expose: {
                let mut out = Vec::new();
                for e in &self.expose {
                    out.extend(parse_exposed(e)?);
                }
                out
            },
            dns: DnsSettings {
                servers: self.dns.clone(),
                search: self.dns_search.clone(),
                options: self.dns_option.clone(),
            },
            log: LogConfig::parse(&self.log_driver, &log_opts)?,
            init: self.init || self.init_path.is_some(),
            init_path: self.init_path.clone(),
            volumes,
            health,
            start_next: false,
            pod: self.pod.clone(),
        })
    }
}

/// `--label KEY=VALUE` (a bare `KEY` has an empty value, as Docker's).
pub(crate) fn labels(values: &[String]) -> BTreeMap<String, String> {
    values
        .iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (l.clone(), String::new()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ram_sizes_are_binary() {
        assert_eq!(parse_ram("-m", "512m").unwrap(), 512 << 20);
        assert_eq!(parse_ram("-m", "1g").unwrap(), 1 << 30);
        assert_eq!(parse_ram("-m", "1.5k").unwrap(), 1536);
        assert_eq!(parse_ram("-m", "100").unwrap(), 100);
        assert_eq!(parse_ram("-m", "64MiB").unwrap(), 64 << 20);
        assert!(parse_ram("-m", "lots").is_err());
        assert!(parse_ram("-m", "5x").is_err());
    }

    #[test]
    fn ulimits_parse_and_check_order() {
        let u = ulimit("nofile=1024:2048").unwrap();
        assert_eq!((u.soft, u.hard), (1024, 2048));
        assert!(ulimit("nofile=4096:1024").is_err());
        assert!(ulimit("nofile").is_err());
    }

    #[test]
    fn mounts_follow_docker_rules() {
        let e = mount("type=bind,source=/nonexistent-wharf,target=/x")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("does not exist"), "{e}");
        assert!(matches!(
            mount("type=tmpfs,target=/t,tmpfs-size=1m").unwrap(),
            MountSpec::Tmpfs(_)
        ));
        assert!(mount("type=bind,source=/tmp,target=rel").is_err());
    }
}
