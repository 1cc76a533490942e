//! Docker's container JSON: `docker inspect` of a container.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use wharf_engine::containers::Container;
use wharf_engine::state::ContainerState;

/// Go's zero time, which Docker shows for times that never happened.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn rfc3339(t: Option<SystemTime>) -> String {
    match t {
        Some(t) if t > UNIX_EPOCH => humantime::format_rfc3339_nanos(t).to_string(),
        _ => ZERO_TIME.to_owned(),
    }
}

/// Docker's `State.Status` word.
pub fn status_word(state: ContainerState) -> &'static str {
    state.as_str()
}

/// `docker inspect CONTAINER`: one element of the array. `image_id` is the
/// image's full id; `rootfs` where its rootfs is (or would be) mounted;
/// `log_path` the json-file log.
pub fn inspect(c: &Container, rootfs: &str, log_path: &str, driver: &str) -> Value {
    let r = &c.record;
    let cfg = &c.config;
    let state = r.state;
    let (path, args) = match cfg.args.split_first() {
        Some((p, rest)) => (p.clone(), rest.to_vec()),
        None => (String::new(), Vec::new()),
    };
    let mounts: Vec<Value> = cfg
        .mounts
        .iter()
        .map(|m| {
            let mut v = json!({
                "Type": m.kind,
                "Source": m.source,
                "Destination": m.destination,
                "Mode": "",
                "RW": m.rw,
                "Propagation": m.propagation,
            });
            if let Some(name) = &m.name {
                v["Name"] = json!(name);
                v["Driver"] = json!("local");
            }
            v
        })
        .collect();
    let health = r.health.clone();
    let labels: serde_json::Map<String, Value> = r
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    json!({
        "Id": r.id.as_str(),
        "Created": rfc3339(Some(r.created)),
        "Path": path,
        "Args": args,
        "State": {
            "Status": status_word(state),
            "Running": matches!(state, ContainerState::Running | ContainerState::Paused),
            "Paused": state == ContainerState::Paused,
            "Restarting": state == ContainerState::Restarting,
            "OOMKilled": false,
            "Dead": state == ContainerState::Dead,
            "Pid": r.pid.unwrap_or(0),
            "ExitCode": match state {
                ContainerState::Created => 0,
                _ => r.exit_code.unwrap_or(if r.finished_at.is_some() { -1 } else { 0 }),
            },
            "Error": "",
            "StartedAt": rfc3339(r.started_at),
            "FinishedAt": rfc3339(r.finished_at),
            "Health": health,
        },
        "Image": r.image_id,
        "ResolvConfPath": c.dir.join("resolv.conf"),
        "HostnamePath": c.dir.join("hostname"),
        "HostsPath": c.dir.join("hosts"),
        "LogPath": log_path,
        "Name": format!("/{}", r.name),
        "RestartCount": r.restart_count,
        "Driver": driver,
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "HostConfig": {
            "NetworkMode": cfg.network,
            "RestartPolicy": {
                "Name": cfg.restart.name(),
                "MaximumRetryCount": cfg.restart.max_retries(),
            },
            "AutoRemove": cfg.auto_remove,
            "LogConfig": {
                "Type": cfg.log.driver.as_str(),
                "Config": log_options(cfg),
            },
            "Privileged": cfg.privileged,
            "ReadonlyRootfs": cfg.read_only,
            "Init": cfg.init,
            "Annotations": cfg.annotations,
        },
        "GraphDriver": {
            "Name": driver,
            "Data": {"MergedDir": rootfs},
        },
        "Mounts": mounts,
        "Config": {
            "Hostname": cfg.hostname,
            "User": cfg.user,
            "AttachStdin": false,
            "Tty": cfg.tty,
            "OpenStdin": cfg.open_stdin,
            "Env": cfg.env,
            "Cmd": cfg.cmd,
            "Image": cfg.image,
            "WorkingDir": if cfg.working_dir == "/" { "" } else { cfg.working_dir.as_str() },
            "Entrypoint": if cfg.entrypoint.is_empty() { Value::Null } else { json!(cfg.entrypoint) },
            "Labels": labels,
            "StopSignal": cfg.stop_signal,
            "StopTimeout": cfg.stop_timeout,
        },
        "NetworkSettings": network_settings(c),
    })
}

/// `NetworkSettings`: each configured network with the addresses it has
/// while the container runs, and the published ports.
fn network_settings(c: &Container) -> Value {
    let state = wharf_engine::networks::NetworkState::read(&c.dir)
        .ok()
        .flatten()
        .filter(|_| c.record.state.is_up())
        .unwrap_or_default();
    let mut networks = serde_json::Map::new();
    for attach in &c.config.networks {
        let e = state
            .endpoints
            .iter()
            .find(|e| e.endpoint.network == attach.network);
        let addr = |v6: bool| {
            e.and_then(|e| {
                e.endpoint
                    .addresses
                    .iter()
                    .find(|a| a.addr().is_ipv6() == v6)
            })
        };
        let gw = |v6: bool| {
            e.and_then(|e| e.endpoint.gateways.iter().find(|g| g.is_ipv6() == v6))
                .map(ToString::to_string)
                .unwrap_or_default()
        };
        networks.insert(
            attach.network.clone(),
            json!({
                "IPAMConfig": if attach.ipv4.is_some() || attach.ipv6.is_some() {
                    json!({"IPv4Address": attach.ipv4.map(|a| a.to_string()).unwrap_or_default(),
                           "IPv6Address": attach.ipv6.map(|a| a.to_string()).unwrap_or_default()})
                } else { Value::Null },
                "Aliases": e.map(|e| e.aliases.clone()).unwrap_or_else(|| attach.aliases.clone()),
                "NetworkID": e.map(|e| e.endpoint.network_id.clone()).unwrap_or_default(),
                "EndpointID": e.map(|e| e.endpoint.host_veth.clone()).unwrap_or_default(),
                "Gateway": gw(false),
                "IPAddress": addr(false).map(|a| a.addr().to_string()).unwrap_or_default(),
                "IPPrefixLen": addr(false).map_or(0, |a| a.prefix_len()),
                "IPv6Gateway": gw(true),
                "GlobalIPv6Address": addr(true).map(|a| a.addr().to_string()).unwrap_or_default(),
                "GlobalIPv6PrefixLen": addr(true).map_or(0, |a| a.prefix_len()),
                "MacAddress": e.map(|e| e.endpoint.mac.clone()).unwrap_or_default(),
            }),
        );
    }
    let primary = networks.values().next().cloned().unwrap_or(json!({}));
    let field = |k: &str| primary.get(k).cloned().unwrap_or(json!(""));
    json!({
        "SandboxKey": match (c.record.state.is_up(), c.record.pid) {
            (true, Some(pid)) if !c.config.networks.is_empty() => format!("/proc/{pid}/ns/net"),
            _ => String::new(),
        },
        "Ports": ports(&state.ports),
        "IPAddress": field("IPAddress"),
        "IPPrefixLen": primary.get("IPPrefixLen").cloned().unwrap_or(json!(0)),
        "Gateway": field("Gateway"),
        "GlobalIPv6Address": field("GlobalIPv6Address"),
        "IPv6Gateway": field("IPv6Gateway"),
        "MacAddress": field("MacAddress"),
        "Networks": networks,
    })
}

/// Docker's `Ports`: `{"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}`.
pub fn ports(published: &[wharf_engine::networks::PublishedPort]) -> Value {
    let mut m: std::collections::BTreeMap<String, Vec<Value>> = std::collections::BTreeMap::new();
    for p in published {
        let host_ip = p.host_ip.map_or("0.0.0.0".to_owned(), |ip| ip.to_string());
        m.entry(format!("{}/{}", p.container_port, p.protocol))
            .or_default()
            .push(json!({"HostIp": host_ip, "HostPort": p.host_port.to_string()}));
    }
    json!(m)
}

fn log_options(cfg: &wharf_engine::containers::ContainerConfig) -> Value {
    let mut m = serde_json::Map::new();
    if let Some(size) = cfg.log.max_size {
        m.insert("max-size".into(), json!(size.to_string()));
        m.insert("max-file".into(), json!(cfg.log.max_file.to_string()));
    }
    Value::Object(m)
}
