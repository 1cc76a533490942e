//! Pods as Podman shows them: `podman pod inspect` and the objects of
//! `podman pod ps --format json`.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde_json::{json, Value};
use wharf_engine::networks::PortSpec;
use wharf_engine::pods::Pod;

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_nanos(t).to_string()
}

/// Podman's `InfraConfig.PortBindings`: `"80/tcp": [{"HostIp": "",
/// "HostPort": "8080"}]`, one key per container port.
pub fn port_bindings(ports: &[PortSpec]) -> BTreeMap<String, Vec<Value>> {
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for p in ports {
        let (first, last) = p.container_ports;
        let host_ip = p.host_ip.map(|ip| ip.to_string()).unwrap_or_default();
        for (i, port) in (first..=last).enumerate() {
            let host_port = match p.host_ports {
                None => String::new(),
                // One host port per container port.
                Some((a, b)) if b - a == last - first => (a + i as u16).to_string(),
                // One free port of the range.
                Some((a, b)) if a == b => a.to_string(),
                Some((a, b)) => format!("{a}-{b}"),
            };
            out.entry(format!("{port}/{}", p.protocol))
                .or_default()
                .push(json!({"HostIp": host_ip, "HostPort": host_port}));
        }
    }
    out
}

/// Renders a pod as `podman pod inspect` does.
pub fn inspect(pod: &Pod) -> Value {
    let config = &pod.config;
    let containers: Vec<Value> = pod
        .containers
        .iter()
        .map(|c| {
            json!({
                "Id": c.record.id.as_str(),
                "Name": c.record.name.as_str(),
                "State": c.record.state.as_str(),
            })
        })
        .collect();
    let shared: Vec<&str> = config.shares.iter().map(|s| s.as_str()).collect();
    let mut out = json!({
        "Id": pod.record.id.as_str(),
        "Name": pod.record.name.as_str(),
        "Created": rfc3339(pod.record.created),
        "ExitPolicy": "continue",
        "State": pod.status().as_str(),
        "Hostname": config.hostname,
        "Labels": pod.record.labels,
        "CreateCgroup": true,
        "CgroupParent": pod.cgroup_parent(),
        "CreateInfra": config.infra,
        "SharedNamespaces": shared,
        "NumContainers": pod.containers.len(),
        "Containers": containers,
    });
    if let Some(infra) = &pod.record.infra_id {
        out["InfraContainerID"] = json!(infra.as_str());
        // The infra container's own namespaces: always new ones.
        out["InfraConfig"] = json!({
            "PortBindings": port_bindings(&config.ports),
            "HostNetwork": config.network == "host",
            "StaticIP": "",
            "StaticMAC": "",
            "NoManageResolvConf": false,
            "NoManageHosts": false,
            "Networks": config.networks,
            "pid_ns": "private",
            "uts_ns": "private",
            "userns": "host",
        });
    }
    out
}

/// One pod of `podman pod ps --format json`.
pub fn list_entry(pod: &Pod) -> Value {
    let containers: Vec<Value> = pod
        .containers
        .iter()
        .map(|c| {
            json!({
                "Id": c.record.id.as_str(),
                "Names": c.record.name.as_str(),
                "Status": c.record.state.as_str(),
                "RestartCount": c.record.restart_count,
            })
        })
        .collect();
    json!({
        "Cgroup": pod.cgroup_parent(),
        "Containers": containers,
        "Created": rfc3339(pod.record.created),
        "Id": pod.record.id.as_str(),
        "InfraId": pod.record.infra_id.as_ref().map(|i| i.as_str()).unwrap_or_default(),
        "Name": pod.record.name.as_str(),
        "Namespace": "",
        "Networks": pod.config.networks,
        "Status": pod.status().as_str(),
        "Labels": pod.record.labels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_engine::pods::{PodConfig, PodId, PodName, Share};
    use wharf_engine::state::PodRecord;

    fn pod() -> Pod {
        let config = PodConfig {
            shares: vec![Share::Net, Share::Ipc, Share::Uts],
            infra: true,
            hostname: "web".into(),
            network: "bridge".into(),
            networks: vec!["bridge".into()],
            ports: vec![
                PortSpec::parse("8080:80").unwrap(),
                PortSpec::parse("127.0.0.1:5353:53/udp").unwrap(),
                PortSpec::parse("9000").unwrap(),
            ],
        };
        Pod {
            record: PodRecord {
                id: PodId::parse(&"ab".repeat(32)).unwrap(),
                name: PodName::parse("web").unwrap(),
                created: std::time::UNIX_EPOCH,
                labels: BTreeMap::from([("app".to_owned(), "x".to_owned())]),
                config: config.to_value(),
                infra_id: Some(wharf_engine::state::ContainerId::parse(&"cd".repeat(32)).unwrap()),
            },
            config,
            containers: Vec::new(),
        }
    }

    #[test]
    fn inspect_has_podmans_shape() {
        let v = inspect(&pod());
        assert_eq!(v["Id"], "ab".repeat(32));
        assert_eq!(v["Name"], "web");
        assert_eq!(v["Created"], "1970-01-01T00:00:00.000000000Z");
        assert_eq!(v["State"], "Created");
        assert_eq!(v["Hostname"], "web");
        assert_eq!(v["Labels"], json!({"app": "x"}));
        assert_eq!(v["CreateInfra"], true);
        assert_eq!(v["InfraContainerID"], "cd".repeat(32));
        assert_eq!(v["SharedNamespaces"], json!(["net", "ipc", "uts"]));
        assert_eq!(v["NumContainers"], 0);
        assert_eq!(v["Containers"], json!([]));
        assert_eq!(
            v["InfraConfig"]["PortBindings"],
            json!({
                "80/tcp": [{"HostIp": "", "HostPort": "8080"}],
                "53/udp": [{"HostIp": "127.0.0.1", "HostPort": "5353"}],
                "9000/tcp": [{"HostIp": "", "HostPort": ""}],
            })
        );
        assert_eq!(v["InfraConfig"]["Networks"], json!(["bridge"]));
        assert_eq!(v["InfraConfig"]["HostNetwork"], false);
        assert_eq!(v["InfraConfig"]["uts_ns"], "private");
        let e = list_entry(&pod());
        assert_eq!(e["Status"], "Created");
        assert_eq!(e["InfraId"], "cd".repeat(32));
        assert_eq!(e["Networks"], json!(["bridge"]));
    }

    #[test]
    fn port_ranges_bind_pairwise() {
        let b = port_bindings(&[PortSpec::parse("8000-8001:80-81").unwrap()]);
        assert_eq!(b["80/tcp"][0]["HostPort"], "8000");
        assert_eq!(b["81/tcp"][0]["HostPort"], "8001");
        let b = port_bindings(&[PortSpec::parse("8000-8009:80").unwrap()]);
        assert_eq!(b["80/tcp"][0]["HostPort"], "8000-8009");
    }
}
