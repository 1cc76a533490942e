//! The write plan: `linux.resources` turned into the list of cgroup file
//! writes that apply it, in order. Built by [`crate::v1`] and [`crate::v2`] as
//! pure functions over the resources and a few facts read from the cgroup, then
//! executed in one place ([`Write`]s are applied by the managers).

use std::collections::HashMap;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, LinuxRdma};

use crate::error::CgroupError;

/// The pseudo-controller naming the v2 directory of a v1 manager on a hybrid
/// host (where `unified` keys go).
pub(crate) const UNIFIED: &str = "";

/// One write of `value` to `file` in the directory of `controller` (v1; on v2
/// the controller only names whom the file belongs to).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Write {
    pub(crate) controller: &'static str,
    pub(crate) file: String,
    pub(crate) value: String,
}

impl Write {
    pub(crate) fn new(
        controller: &'static str,
        file: impl Into<String>,
        value: impl ToString,
    ) -> Self {
        Write {
            controller,
            file: file.into(),
            value: value.to_string(),
        }
    }
}

/// A device rule as the v1 devices controller reads it: `c 1:3 rwm`, `*`
/// for a missing major or minor.
pub(crate) fn device_rule(rule: &LinuxDeviceCgroup) -> Result<String, CgroupError> {
    let typ = rule.typ().unwrap_or(LinuxDeviceType::A);
    let number = |n: Option<i64>| n.map_or_else(|| "*".to_owned(), |n| n.to_string());
    let access = rule.access().as_deref().unwrap_or("rwm");
    if access.is_empty() || !access.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
        return Err(CgroupError::invalid(format!(
            "device rule access {access:?}: use letters from \"rwm\""
        )));
    }
    if matches!(typ, LinuxDeviceType::U | LinuxDeviceType::P) {
        return Err(CgroupError::invalid(format!(
            "device rule type {:?}: the devices controller knows a, b and c",
            typ.as_str()
        )));
    }
    Ok(format!(
        "{} {}:{} {access}",
        typ.as_str(),
        number(rule.major()),
        number(rule.minor())
    ))
}

/// `rdma.max` lines, one per device, sorted by device name.
pub(crate) fn rdma_writes(rdma: &HashMap<String, LinuxRdma>) -> Vec<Write> {
    let mut devices: Vec<_> = rdma.iter().collect();
    devices.sort_by(|a, b| a.0.cmp(b.0));
    devices
        .into_iter()
        .filter_map(|(device, limits)| {
            let mut line = device.clone();
            if let Some(handles) = limits.hca_handles() {
                line.push_str(&format!(" hca_handle={handles}"));
            }
            if let Some(objects) = limits.hca_objects() {
                line.push_str(&format!(" hca_object={objects}"));
            }
            (line.len() > device.len()).then(|| Write::new("rdma", "rdma.max", line))
        })
        .collect()
}

/// The `pids.max` value: a positive limit, else `max` (0 and -1 mean none).
pub(crate) fn pids_max(limit: i64) -> String {
    if limit > 0 {
        limit.to_string()
    } else {
        "max".to_owned()
    }
}

/// `unified` key/values sorted by key, each key checked to be a file name.
pub(crate) fn unified_writes(
    unified: &HashMap<String, String>,
    controller: &'static str,
) -> Result<Vec<Write>, CgroupError> {
    let mut keys: Vec<_> = unified.iter().collect();
    keys.sort_by(|a, b| a.0.cmp(b.0));
    keys.into_iter()
        .map(|(key, value)| {
            if key.is_empty() || key.contains('/') || key == "." || key == ".." {
                return Err(CgroupError::invalid(format!(
                    "unified key {key:?}: it must be a cgroup file name"
                )));
            }
            Ok(Write::new(controller, key.clone(), value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxDeviceCgroupBuilder, LinuxRdmaBuilder};

    #[test]
    fn device_rules_format_like_the_devices_controller() {
        let all = LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .build()
            .unwrap();
        assert_eq!(device_rule(&all).unwrap(), "a *:* rwm");
        let null = LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(LinuxDeviceType::C)
            .major(1)
            .minor(3)
            .access("rw")
            .build()
            .unwrap();
        assert_eq!(device_rule(&null).unwrap(), "c 1:3 rw");
        let any_minor = LinuxDeviceCgroupBuilder::default()
            .typ(LinuxDeviceType::B)
            .major(8)
            .access("m")
            .build()
            .unwrap();
        assert_eq!(device_rule(&any_minor).unwrap(), "b 8:* m");
        let bad = LinuxDeviceCgroupBuilder::default()
            .access("rx")
            .build()
            .unwrap();
        assert_eq!(
            device_rule(&bad).unwrap_err().to_string(),
            "invalid resources: device rule access \"rx\": use letters from \"rwm\""
        );
        let fifo = LinuxDeviceCgroupBuilder::default()
            .typ(LinuxDeviceType::P)
            .build()
            .unwrap();
        assert!(device_rule(&fifo).is_err());
    }

    #[test]
    fn rdma_lines_name_only_set_limits() {
        let mut rdma = HashMap::new();
        rdma.insert(
            "mlx5_1".to_owned(),
            LinuxRdmaBuilder::default()
                .hca_objects(7u32)
                .build()
                .unwrap(),
        );
        rdma.insert(
            "mlx5_0".to_owned(),
            LinuxRdmaBuilder::default()
                .hca_handles(3u32)
                .hca_objects(4u32)
                .build()
                .unwrap(),
        );
        rdma.insert(
            "idle".to_owned(),
            LinuxRdmaBuilder::default().build().unwrap(),
        );
        assert_eq!(
            rdma_writes(&rdma),
            [
                Write::new("rdma", "rdma.max", "mlx5_0 hca_handle=3 hca_object=4"),
                Write::new("rdma", "rdma.max", "mlx5_1 hca_object=7"),
            ]
        );
    }

    #[test]
    fn pids_max_values() {
        assert_eq!(pids_max(10), "10");
        assert_eq!(pids_max(0), "max");
        assert_eq!(pids_max(-1), "max");
    }

    #[test]
    fn unified_keys_must_be_file_names() {
        let mut unified = HashMap::new();
        unified.insert("memory.high".to_owned(), "1000".to_owned());
        unified.insert("cpu.weight".to_owned(), "50".to_owned());
        assert_eq!(
            unified_writes(&unified, "").unwrap(),
            [
                Write::new("", "cpu.weight", "50"),
                Write::new("", "memory.high", "1000"),
            ]
        );
        unified.insert("../escape".to_owned(), "1".to_owned());
        assert_eq!(
            unified_writes(&unified, "").unwrap_err().to_string(),
            "invalid resources: unified key \"../escape\": it must be a cgroup file name"
        );
    }
}
