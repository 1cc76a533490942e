//! Test images written as OCI image layouts (`oci-layout`, `index.json`,
//! `blobs/sha256/…`): layers from a directory (the busybox rootfs) or from a list of
//! files, compressed with gzip or zstd or left as plain tar, single-platform images
//! and multi-platform indexes. `skopeo copy oci:<dir>:<tag> docker://…` seeds a
//! registry from them (see [`crate::LocalRegistry::skopeo_copy_in`]).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use sha2::{Digest as _, Sha256};

/// OCI media types the layouts use.
pub mod media {
    /// OCI image manifest.
    pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// OCI image index.
    pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// OCI image config.
    pub const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    /// Uncompressed layer.
    pub const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
    /// gzip layer.
    pub const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    /// zstd layer.
    pub const LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
}

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerCompression {
    /// Plain tar.
    None,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
}

impl LayerCompression {
    fn media_type(self) -> &'static str {
        match self {
            Self::None => media::LAYER_TAR,
            Self::Gzip => media::LAYER_GZIP,
            Self::Zstd => media::LAYER_ZSTD,
        }
    }
}

/// What a layer holds.
#[derive(Debug, Clone)]
pub enum LayerContent {
    /// Every file under a directory (symlinks kept), rooted at the directory.
    Dir(PathBuf),
    /// Regular files (mode 0644) at the given relative paths; parents are added.
    Files(Vec<(String, Vec<u8>)>),
}

/// The platform an image is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestPlatform {
    /// `linux`.
    pub os: String,
    /// GOARCH: `amd64`, `arm64`, …
    pub architecture: String,
    /// `v8`, `v7`, … or none.
    pub variant: Option<String>,
}

impl TestPlatform {
    /// `linux/<architecture>[/<variant>]`.
    pub fn linux(architecture: &str, variant: Option<&str>) -> Self {
        Self {
            os: "linux".to_owned(),
            architecture: architecture.to_owned(),
            variant: variant.map(str::to_owned),
        }
    }

    /// The platform of the machine running the tests.
    pub fn host() -> Self {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        let variant = (architecture == "arm64").then_some("v8");
        Self::linux(architecture, variant)
    }

    fn json(&self) -> serde_json::Value {
        let mut platform = serde_json::json!({"os": self.os, "architecture": self.architecture});
        if let Some(variant) = &self.variant {
            platform["variant"] = variant.clone().into();
        }
        platform
    }
}

/// A blob written to a layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    /// Media type.
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
}

impl BlobInfo {
    fn descriptor(&self) -> serde_json::Value {
        serde_json::json!({"mediaType": self.media_type, "digest": self.digest, "size": self.size})
    }
}

/// An image manifest written to a layout.
#[derive(Debug, Clone)]
pub struct TestImage {
    /// The manifest blob.
    pub manifest: BlobInfo,
    /// The config blob.
    pub config: BlobInfo,
    /// The layer blobs, base first.
    pub layers: Vec<BlobInfo>,
    /// The uncompressed layers' digests (`rootfs.diff_ids` of the config).
    pub diff_ids: Vec<String>,
    /// Its platform.
    pub platform: TestPlatform,
}

/// An OCI image layout directory being written.
#[derive(Debug)]
pub struct OciLayout {
    dir: PathBuf,
}

impl OciLayout {
    /// Creates the layout at `dir` (made if missing) with an empty `index.json`.
    ///
    /// # Errors
    ///
    /// The directory or its files cannot be written.
    pub fn create(dir: &Path) -> anyhow::Result<Self> {
        fs_err::create_dir_all(dir.join("blobs/sha256"))?;
        fs_err::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)?;
        let layout = Self {
            dir: dir.to_owned(),
        };
        layout.write_index(&serde_json::json!({"schemaVersion": 2, "manifests": []}))?;
        Ok(layout)
    }

    /// The layout directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// `oci:<dir>:<tag>`, a skopeo transport reference.
    pub fn reference(&self, tag: &str) -> String {
        format!("oci:{}:{tag}", self.dir.display())
    }

    /// Writes `bytes` as a blob.
    ///
    /// # Errors
    ///
    /// The blob cannot be written.
    pub fn write_blob(&self, media_type: &str, bytes: &[u8]) -> anyhow::Result<BlobInfo> {
        let hex = hex_of(&Sha256::digest(bytes));
        fs_err::write(self.dir.join("blobs/sha256").join(&hex), bytes)?;
        Ok(BlobInfo {
            media_type: media_type.to_owned(),
            digest: format!("sha256:{hex}"),
            size: bytes.len() as u64,
        })
    }

    /// Path of the blob `digest` (`sha256:<hex>`).
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.dir.join("blobs/sha256").join(hex)
    }

    /// Writes an image (layers, config, manifest) for `platform` and returns it;
    /// [`tag`](Self::tag) names it.
    ///
    /// # Errors
    ///
    /// A layer cannot be read or a blob cannot be written.
    pub fn add_image(
        &self,
        layers: &[LayerContent],
        compression: LayerCompression,
        platform: &TestPlatform,
    ) -> anyhow::Result<TestImage> {
        let mut blobs = Vec::new();
        let mut diff_ids = Vec::new();
        for layer in layers {
            let tar = layer_tar(layer)?;
            diff_ids.push(format!("sha256:{}", hex_of(&Sha256::digest(&tar))));
            let blob = compress(&tar, compression)?;
            blobs.push(self.write_blob(compression.media_type(), &blob)?);
        }
        let mut config = serde_json::json!({
            "created": "2024-01-01T00:00:00Z",
            "architecture": platform.architecture,
            "os": platform.os,
            "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": layers.iter().map(|_| serde_json::json!({"created_by": "wharf-testkit"})).collect::<Vec<_>>(),
        });
        if let Some(variant) = &platform.variant {
            config["variant"] = variant.clone().into();
        }
        let config = self.write_blob(media::CONFIG, &serde_json::to_vec(&config)?)?;
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media::MANIFEST,
            "config": config.descriptor(),
            "layers": blobs.iter().map(BlobInfo::descriptor).collect::<Vec<_>>(),
        });
        let manifest = self.write_blob(media::MANIFEST, &serde_json::to_vec(&manifest)?)?;
        Ok(TestImage {
            manifest,
            config,
            layers: blobs,
            diff_ids,
            platform: platform.clone(),
        })
    }

    /// Writes an index over `images` (each with its platform) and returns its blob.
    ///
    /// # Errors
    ///
    /// The blob cannot be written.
    pub fn add_index(&self, images: &[TestImage]) -> anyhow::Result<BlobInfo> {
        let manifests: Vec<serde_json::Value> = images
            .iter()
            .map(|image| {
                let mut d = image.manifest.descriptor();
                d["platform"] = image.platform.json();
                d
            })
            .collect();
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media::INDEX,
            "manifests": manifests,
        });
        self.write_blob(media::INDEX, &serde_json::to_vec(&index)?)
    }

    /// Names the manifest or index `blob` `tag` in `index.json` (replacing an
    /// earlier entry of that name).
    ///
    /// # Errors
    ///
    /// `index.json` cannot be read or written.
    pub fn tag(&self, tag: &str, blob: &BlobInfo) -> anyhow::Result<()> {
        const REF_NAME: &str = "org.opencontainers.image.ref.name";
        let path = self.dir.join("index.json");
        let mut index: serde_json::Value = serde_json::from_slice(&fs_err::read(&path)?)
            .with_context(|| format!("parse {}", path.display()))?;
        let manifests = index["manifests"]
            .as_array_mut()
            .context("index.json has no manifests array")?;
        manifests.retain(|m| m["annotations"][REF_NAME] != tag);
        let mut entry = blob.descriptor();
        entry["annotations"] = serde_json::json!({ REF_NAME: tag });
        manifests.push(entry);
        self.write_index(&index)
    }

    fn write_index(&self, index: &serde_json::Value) -> anyhow::Result<()> {
        fs_err::write(self.dir.join("index.json"), serde_json::to_vec(index)?)?;
        Ok(())
    }
}

/// Builds a layout at `dir` holding the busybox rootfs as a one-layer image for the
/// host's platform, tagged `tag`.
///
/// # Errors
///
/// The rootfs cannot be built or the layout cannot be written.
pub fn busybox_layout(
    dir: &Path,
    tag: &str,
    compression: LayerCompression,
) -> anyhow::Result<(OciLayout, TestImage)> {
    let layout = OciLayout::create(dir)?;
    let rootfs = crate::busybox_rootfs()?;
    let image = layout.add_image(
        &[LayerContent::Dir(rootfs.to_owned())],
        compression,
        &TestPlatform::host(),
    )?;
    layout.tag(tag, &image.manifest)?;
    Ok((layout, image))
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The layer as an uncompressed tar with deterministic headers.
fn layer_tar(layer: &LayerContent) -> anyhow::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.mode(tar::HeaderMode::Deterministic);
    builder.follow_symlinks(false);
    match layer {
        LayerContent::Dir(dir) => {
            append_dir_sorted(&mut builder, dir, Path::new(""))
                .with_context(|| format!("tar {}", dir.display()))?;
        }
        LayerContent::Files(files) => {
            let mut dirs = std::collections::BTreeSet::new();
            for (path, _) in files {
                let mut parent = Path::new(path).parent();
                while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
                    dirs.insert(p.to_owned());
                    parent = p.parent();
                }
            }
            for dir in dirs {
                let mut header = tar::Header::new_gnu();
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_uid(0);
                header.set_gid(0);
                header.set_mtime(0);
                header.set_size(0);
                builder.append_data(&mut header, &dir, std::io::empty())?;
            }
            for (path, bytes) in files {
                let mut header = tar::Header::new_gnu();
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(0o644);
                header.set_uid(0);
                header.set_gid(0);
                header.set_mtime(0);
                header.set_size(bytes.len() as u64);
                builder.append_data(&mut header, path, bytes.as_slice())?;
            }
        }
    }
    Ok(builder.into_inner()?)
}

/// Appends `dir`'s entries under `prefix`, in name order (stable digests).
fn append_dir_sorted(
    builder: &mut tar::Builder<Vec<u8>>,
    dir: &Path,
    prefix: &Path,
) -> anyhow::Result<()> {
    let mut entries: Vec<_> = fs_err::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = prefix.join(entry.file_name());
        builder.append_path_with_name(&path, &name)?;
        if entry.file_type()?.is_dir() {
            append_dir_sorted(builder, &path, &name)?;
        }
    }
    Ok(())
}

fn compress(tar: &[u8], compression: LayerCompression) -> anyhow::Result<Vec<u8>> {
    Ok(match compression {
        LayerCompression::None => tar.to_vec(),
        LayerCompression::Gzip => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            encoder.write_all(tar)?;
            encoder.finish()?
        }
        LayerCompression::Zstd => zstd::encode_all(tar, 3)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_and_index_are_consistent() {
        let dir = tempfile::tempdir().unwrap();
        let layout = OciLayout::create(dir.path()).unwrap();
        let files = LayerContent::Files(vec![("etc/arch".into(), b"arm64\n".to_vec())]);
        let image = layout
            .add_image(
                &[files],
                LayerCompression::Gzip,
                &TestPlatform::linux("arm64", Some("v8")),
            )
            .unwrap();
        let index = layout.add_index(std::slice::from_ref(&image)).unwrap();
        layout.tag("multi", &index).unwrap();

        let manifest: serde_json::Value = serde_json::from_slice(
            &fs_err::read(layout.blob_path(&image.manifest.digest)).unwrap(),
        )
        .unwrap();
        assert_eq!(manifest["config"]["digest"], image.config.digest);
        assert_eq!(manifest["layers"][0]["mediaType"], media::LAYER_GZIP);
        let config: serde_json::Value =
            serde_json::from_slice(&fs_err::read(layout.blob_path(&image.config.digest)).unwrap())
                .unwrap();
        assert_eq!(config["rootfs"]["diff_ids"][0], image.diff_ids[0]);
        assert_eq!(config["variant"], "v8");
        let index_json: serde_json::Value =
            serde_json::from_slice(&fs_err::read(dir.path().join("index.json")).unwrap()).unwrap();
        assert_eq!(index_json["manifests"][0]["digest"], index.digest);

        // The layer decompresses to the tar whose digest is the diff id.
        let blob = fs_err::read(layout.blob_path(&image.layers[0].digest)).unwrap();
        let mut tar = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&blob[..]), &mut tar).unwrap();
        assert_eq!(
            format!("sha256:{}", hex_of(&Sha256::digest(&tar))),
            image.diff_ids[0]
        );
    }
}
