//! Images as Docker's API shows them: `GET /images/{name}/json`
//! (`docker image inspect`) and the line `docker images --format json`
//! prints per image.

use std::collections::BTreeMap;

use oci_spec::image::ImageConfiguration;
use serde::Serialize;
use wharf_image::{Image, LayerInfo};

/// `docker image inspect`'s object.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageInspect {
    /// `sha256:…` of the config.
    pub id: String,
    /// Tagged names, Docker's familiar form (`busybox:latest`).
    pub repo_tags: Vec<String>,
    /// `name@sha256:…` of the manifest.
    pub repo_digests: Vec<String>,
    /// Always empty: images from registries have no local parent.
    pub parent: String,
    /// The last history step's comment.
    pub comment: String,
    /// The config's creation time.
    pub created: String,
    /// Docker version that built it (not recorded by OCI images).
    pub docker_version: String,
    /// The config's author.
    pub author: String,
    /// The container config, in Docker's casing.
    pub config: ContainerConfig,
    /// `amd64`, …
    pub architecture: String,
    /// CPU variant, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// `linux`.
    pub os: String,
    /// Uncompressed size of its layers.
    pub size: u64,
    /// Same as `Size` (Docker's field, kept for old clients).
    pub virtual_size: u64,
    /// Storage driver and its directories.
    pub graph_driver: GraphDriver,
    /// Layer diff ids.
    #[serde(rename = "RootFS")]
    pub root_fs: RootFs,
    /// When it was last tagged.
    pub metadata: Metadata,
}

/// The image's runtime config, Docker's field names.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    /// `user[:group]`.
    pub user: String,
    /// `"80/tcp": {}` entries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    /// `KEY=VALUE` entries.
    pub env: Option<Vec<String>>,
    /// Default command.
    pub cmd: Option<Vec<String>>,
    /// Volumes as a set.
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
    /// Working directory.
    pub working_dir: String,
    /// Entrypoint.
    pub entrypoint: Option<Vec<String>>,
    /// Labels.
    pub labels: Option<BTreeMap<String, String>>,
    /// Stop signal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
}

/// Storage driver data.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GraphDriver {
    /// `overlay2`-style directory names.
    pub data: BTreeMap<String, String>,
    /// Driver name.
    pub name: String,
}

/// The layers.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RootFs {
    /// `layers`.
    #[serde(rename = "Type")]
    pub typ: String,
    /// Diff ids, bottom first.
    pub layers: Vec<String>,
}

/// Metadata.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Metadata {
    /// RFC 3339 time the image was recorded.
    pub last_tag_time: String,
}

/// Builds the inspect object; `layer_dirs` are the layers' directories
/// (bottom first) and `driver` the store's driver name.
pub fn inspect(
    image: &Image,
    config: &ImageConfiguration,
    layers: &[LayerInfo],
    layer_dirs: &[String],
    driver: &str,
) -> ImageInspect {
    let c = config.config().clone().unwrap_or_default();
    let set = |v: Option<Vec<String>>| {
        v.map(|items| {
            items
                .into_iter()
                .map(|k| (k, serde_json::json!({})))
                .collect::<BTreeMap<_, _>>()
        })
    };
    let mut data = BTreeMap::new();
    if let Some((top, lower)) = layer_dirs.split_last() {
        data.insert("UpperDir".to_owned(), top.clone());
        if !lower.is_empty() {
            let lower: Vec<&str> = lower.iter().rev().map(String::as_str).collect();
            data.insert("LowerDir".to_owned(), lower.join(":"));
        }
    }
    let comment = config
        .history()
        .as_ref()
        .and_then(|h| h.last())
        .and_then(|h| h.comment().clone())
        .unwrap_or_default();
    ImageInspect {
        id: image.id.to_string(),
        repo_tags: image.names.iter().map(|n| n.familiar()).collect(),
        repo_digests: image.digests.iter().map(|n| n.familiar()).collect(),
        parent: String::new(),
        comment,
        created: config.created().clone().unwrap_or_default(),
        docker_version: String::new(),
        author: config.author().clone().unwrap_or_default(),
        config: ContainerConfig {
            user: c.user().clone().unwrap_or_default(),
            exposed_ports: set(c.exposed_ports().clone()),
            env: c.env().clone(),
            cmd: c.cmd().clone(),
            volumes: set(c.volumes().clone()),
            working_dir: c.working_dir().clone().unwrap_or_default(),
            entrypoint: c.entrypoint().clone(),
            labels: c.labels().clone().map(|l| l.into_iter().collect()),
            stop_signal: c.stop_signal().clone(),
        },
        architecture: config.architecture().to_string(),
        variant: config.variant().clone(),
        os: config.os().to_string(),
        size: image.size,
        virtual_size: image.size,
        graph_driver: GraphDriver {
            data,
            name: driver.to_owned(),
        },
        root_fs: RootFs {
            typ: "layers".to_owned(),
            layers: layers.iter().map(|l| l.diff_id.to_string()).collect(),
        },
        metadata: Metadata {
            last_tag_time: humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH
                    + std::time::Duration::from_secs(u64::try_from(image.recorded).unwrap_or(0)),
            )
            .to_string(),
        },
    }
}

/// One line of `docker images --format json`: every value a string, as the
/// Docker CLI prints them.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageLine {
    /// Always `N/A` (container counting is not requested).
    pub containers: String,
    /// `2026-11-27 12:00:00 +0000 UTC`.
    pub created_at: String,
    /// `2 hours ago`.
    pub created_since: String,
    /// Manifest digest or `<none>`.
    pub digest: String,
    /// Short id (12 hex digits) unless untruncated.
    #[serde(rename = "ID")]
    pub id: String,
    /// Repository or `<none>`.
    pub repository: String,
    /// `N/A`.
    pub shared_size: String,
    /// Human size (`4.26MB`).
    pub size: String,
    /// Tag or `<none>`.
    pub tag: String,
    /// `N/A`.
    pub unique_size: String,
    /// Human size.
    pub virtual_size: String,
}
