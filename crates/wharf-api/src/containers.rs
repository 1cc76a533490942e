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
        "NetworkSettings": {
            "Networks": {},
        },
    })
}

fn log_options(cfg: &wharf_engine::containers::ContainerConfig) -> Value {
    let mut m = serde_json::Map::new();
    if let Some(size) = cfg.log.max_size {
        m.insert("max-size".into(), json!(size.to_string()));
        m.insert("max-file".into(), json!(cfg.log.max_file.to_string()));
    }
    Value::Object(m)
}
