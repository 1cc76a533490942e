//! Volumes as Docker's API shows them: `GET /volumes/{name}`
//! (`docker volume inspect`) and the line `docker volume ls --format json`
//! prints per volume.

use std::collections::BTreeMap;

use serde::Serialize;
use wharf_engine::volumes::Volume;

/// `docker volume inspect`'s object (the API's `Volume`, without the
/// optional `Status`, `ClusterVolume` and `UsageData`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct VolumeInspect {
    /// RFC 3339, seconds.
    pub created_at: String,
    /// `local`.
    pub driver: String,
    /// `null` when there are none, as Docker.
    pub labels: Option<BTreeMap<String, String>>,
    /// The host directory containers mount.
    pub mountpoint: String,
    /// The name.
    pub name: String,
    /// Driver options; `null` when there are none, as Docker.
    pub options: Option<BTreeMap<String, String>>,
    /// `local`.
    pub scope: String,
}

/// Renders a volume as `docker volume inspect` does.
pub fn inspect(volume: &Volume) -> VolumeInspect {
    let non_empty = |m: &BTreeMap<String, String>| (!m.is_empty()).then(|| m.clone());
    VolumeInspect {
        created_at: humantime::format_rfc3339_seconds(volume.created).to_string(),
        driver: volume.driver.clone(),
        labels: non_empty(&volume.labels),
        mountpoint: volume.mountpoint.display().to_string(),
        name: volume.name.to_string(),
        options: non_empty(&volume.options),
        scope: volume.scope.to_owned(),
    }
}

/// The object `docker volume ls --format json` prints per line: every
/// value a string, labels as `k=v,k=v`, `N/A` for cluster fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct VolumeListEntry {
    /// Cluster volumes only: `N/A`.
    pub availability: String,
    /// `local`.
    pub driver: String,
    /// Cluster volumes only: `N/A`.
    pub group: String,
    /// `k=v` pairs joined by commas.
    pub labels: String,
    /// Containers using it: `N/A` (Docker computes it only for `system df`).
    pub links: String,
    /// The host directory containers mount.
    pub mountpoint: String,
    /// The name.
    pub name: String,
    /// `local`.
    pub scope: String,
    /// `N/A` (Docker computes it only for `system df`).
    pub size: String,
    /// Cluster volumes only: `N/A`.
    pub status: String,
}

/// Renders a volume as a `docker volume ls --format json` line.
pub fn list_entry(volume: &Volume) -> VolumeListEntry {
    let na = || "N/A".to_owned();
    VolumeListEntry {
        availability: na(),
        driver: volume.driver.clone(),
        group: na(),
        labels: volume
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
        links: na(),
        mountpoint: volume.mountpoint.display().to_string(),
        name: volume.name.to_string(),
        scope: volume.scope.to_owned(),
        size: na(),
        status: na(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};
    use wharf_engine::volumes::VolumeName;

    fn volume() -> Volume {
        Volume {
            name: VolumeName::parse("data").unwrap(),
            driver: "local".into(),
            mountpoint: "/var/lib/wharf/volumes/data/_data".into(),
            created: UNIX_EPOCH + Duration::new(1_700_000_000, 5),
            labels: BTreeMap::new(),
            options: BTreeMap::new(),
            scope: "local",
            anonymous: false,
        }
    }

    #[test]
    fn inspect_has_dockers_fields_and_nulls() {
        let json = serde_json::to_value(inspect(&volume())).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "CreatedAt": "2023-11-14T22:13:20Z",
                "Driver": "local",
                "Labels": null,
                "Mountpoint": "/var/lib/wharf/volumes/data/_data",
                "Name": "data",
                "Options": null,
                "Scope": "local",
            })
        );
        let mut v = volume();
        v.labels.insert("a".into(), "b".into());
        v.options.insert("type".into(), "tmpfs".into());
        let json = serde_json::to_value(inspect(&v)).unwrap();
        assert_eq!(json["Labels"], serde_json::json!({"a": "b"}));
        assert_eq!(json["Options"], serde_json::json!({"type": "tmpfs"}));
    }

    #[test]
    fn list_entry_joins_labels() {
        let mut v = volume();
        v.labels.insert("a".into(), "b".into());
        v.labels.insert("c".into(), String::new());
        let json = serde_json::to_value(list_entry(&v)).unwrap();
        assert_eq!(json["Labels"], "a=b,c=");
        assert_eq!(json["Name"], "data");
        assert_eq!(json["Size"], "N/A");
    }
}
