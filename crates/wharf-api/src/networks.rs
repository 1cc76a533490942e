//! Networks as Docker's API shows them: `GET /networks/{id}` (`docker
//! network inspect`) and the line `docker network ls --format json` prints.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{json, Value};
use wharf_engine::networks::{Network, NetworkInfo};

fn created(network: &Network) -> String {
    let t = UNIX_EPOCH + Duration::from_nanos(network.created_ns);
    humantime::format_rfc3339_nanos(t).to_string()
}

/// Renders a network as `docker network inspect` does.
pub fn inspect(info: &NetworkInfo) -> Value {
    let n = &info.network;
    let config: Vec<Value> = n
        .subnets
        .iter()
        .map(|s| {
            let mut c = json!({"Subnet": s.subnet.to_string(), "Gateway": s.gateway.to_string()});
            if s.ip_range != s.subnet {
                c["IPRange"] = json!(s.ip_range.to_string());
            }
            c
        })
        .collect();
    let containers: BTreeMap<String, Value> = info
        .containers
        .iter()
        .map(|(id, name, e)| {
            let addr = |v6: bool| {
                e.endpoint
                    .addresses
                    .iter()
                    .find(|a| a.addr().is_ipv6() == v6)
                    .map(ToString::to_string)
                    .unwrap_or_default()
            };
            (
                id.to_string(),
                json!({
                    "Name": name,
                    "EndpointID": e.endpoint.host_veth,
                    "MacAddress": e.endpoint.mac,
                    "IPv4Address": addr(false),
                    "IPv6Address": addr(true),
                }),
            )
        })
        .collect();
    let mut options = n.options.clone();
    options.insert(
        "com.docker.network.bridge.name".to_owned(),
        n.bridge.clone(),
    );
    json!({
        "Name": n.name,
        "Id": n.id,
        "Created": created(n),
        "Scope": "local",
        "Driver": n.driver,
        "EnableIPv6": n.ipv6,
        "IPAM": {"Driver": "default", "Options": {}, "Config": config},
        "Internal": n.internal,
        "Attachable": false,
        "Ingress": false,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": false,
        "Containers": containers,
        "Options": options,
        "Labels": n.labels,
        "DNSEnabled": n.dns,
    })
}

/// `docker network ls --format json`'s line.
pub fn list_entry(n: &Network) -> Value {
    let labels: Vec<String> = n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    json!({
        "CreatedAt": created(n),
        "Driver": n.driver,
        "ID": &n.id[..12],
        "IPv6": n.ipv6.to_string(),
        "Internal": n.internal.to_string(),
        "Labels": labels.join(","),
        "Name": n.name,
        "Scope": "local",
    })
}
