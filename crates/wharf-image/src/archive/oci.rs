//! oci-archive: a tar of an OCI image layout. `index.json` lists manifests
//! (or indexes of manifests for several platforms), each named by an
//! `org.opencontainers.image.ref.name` annotation (containerd and Docker
//! also write `io.containerd.image.name`, which wins). Blobs stay as they
//! are stored, compressed or not; a Docker schema 2 manifest is written as
//! its OCI equivalent (same config, so the same image id).

use std::io::Write;

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use serde::de::IgnoredAny;
use serde::Deserialize;

use super::{
    blob_entry, diff_ids, ArchiveWriter, Contents, Layers, LoadOptions, Planned, SaveItem,
    INDEX_JSON, OCI_LAYOUT,
};
use crate::digest::Digest;
use crate::error::ImageError;
use crate::media;
use crate::platform::{select_manifest, Platform};
use crate::reference::ImageRef;
use crate::snapshot::chain_ids;
use crate::store::{Image, Store};

/// The annotation naming an image in an OCI layout.
const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// containerd's (and Docker's) annotation with the full image name.
const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// The only layout version there is.
const LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
/// How deep indexes may nest below `index.json`.
const MAX_INDEX_DEPTH: usize = 4;

#[derive(Deserialize)]
struct Layout {
    #[serde(rename = "imageLayoutVersion")]
    version: String,
}

/// What a manifest or index document says it is (CVE-2021-41190: a
/// document must not be readable as both).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    media_type: Option<String>,
    manifests: Option<IgnoredAny>,
    layers: Option<IgnoredAny>,
    config: Option<IgnoredAny>,
}

/// Checks and unpacks the images `index.json` names (one platform per
/// index unless `options.all_platforms`); records nothing.
pub(super) fn plan(
    layers: &mut Layers<'_>,
    contents: &Contents,
    index_json: &[u8],
    options: &LoadOptions,
) -> Result<Vec<Planned>, ImageError> {
    let layout = contents
        .oci_layout
        .as_deref()
        .ok_or_else(|| ImageError::InvalidArchive {
            reason: "it has index.json but no oci-layout file".to_string(),
        })?;
    let layout: Layout =
        serde_json::from_slice(layout).map_err(|source| ImageError::ParseArchiveDocument {
            document: OCI_LAYOUT,
            source,
        })?;
    if !layout.version.starts_with("1.") {
        return Err(ImageError::InvalidArchive {
            reason: format!("unsupported image layout version {:?}", layout.version),
        });
    }
    let index: ImageIndex =
        serde_json::from_slice(index_json).map_err(|source| ImageError::ParseArchiveDocument {
            document: INDEX_JSON,
            source,
        })?;
    let wanted = options.platform.clone().unwrap_or_else(Platform::host);
    let mut found: Vec<(Descriptor, Vec<ImageRef>)> = Vec::new();
    for desc in index.manifests() {
        let names = ref_names(desc)?;
        collect(
            layers.store,
            desc,
            names,
            &wanted,
            options.all_platforms,
            0,
            &mut found,
        )?;
    }
    // One plan per manifest, however many names it has.
    let mut merged: Vec<(Descriptor, Vec<ImageRef>)> = Vec::new();
    for (desc, names) in found {
        match merged.iter_mut().find(|(d, _)| d.digest() == desc.digest()) {
            Some((_, all)) => {
                for n in names {
                    if !all.contains(&n) {
                        all.push(n);
                    }
                }
            }
            None => merged.push((desc, names)),
        }
    }
    if merged.is_empty() {
        return Err(ImageError::InvalidArchive {
            reason: "index.json lists no image manifest".to_string(),
        });
    }
    merged
        .into_iter()
        .map(|(desc, names)| plan_manifest(layers, &desc, names))
        .collect()
}

/// The names an `index.json` entry gives its image.
fn ref_names(desc: &Descriptor) -> Result<Vec<ImageRef>, ImageError> {
    let Some(annotations) = desc.annotations() else {
        return Ok(Vec::new());
    };
    match annotations
        .get(ANNOTATION_IMAGE_NAME)
        .or_else(|| annotations.get(ANNOTATION_REF_NAME))
    {
        Some(name) => Ok(vec![ImageRef::parse(name)?]),
        None => Ok(Vec::new()),
    }
}

/// Whether an index entry is not an image for a platform (attestations,
/// artifacts, `unknown/unknown`) when every platform is loaded.
fn skipped(desc: &Descriptor) -> bool {
    let attestation = desc.annotations().as_ref().is_some_and(|a| {
        a.get(media::ANNOTATION_REFERENCE_TYPE)
            .is_some_and(|v| v == media::ATTESTATION_MANIFEST)
    });
    let unknown = desc.platform().as_ref().is_some_and(|p| {
        p.os().to_string() == "unknown" || p.architecture().to_string() == "unknown"
    });
    attestation || unknown || desc.artifact_type().is_some()
}

/// Adds the manifests `desc` stands for to `out`: itself, or the platform's
/// (every platform's) manifest of an index.
fn collect(
    store: &Store,
    desc: &Descriptor,
    names: Vec<ImageRef>,
    wanted: &Platform,
    all: bool,
    depth: usize,
    out: &mut Vec<(Descriptor, Vec<ImageRef>)>,
) -> Result<(), ImageError> {
    let media_type = desc.media_type().to_string();
    if media::is_manifest(&media_type) {
        out.push((desc.clone(), names));
        return Ok(());
    }
    if media::is_schema1(&media_type) {
        return Err(ImageError::UnsupportedMediaType {
            media_type,
            hint: Some("Docker schema 1 images are not supported"),
        });
    }
    if !media::is_index(&media_type) {
        tracing::warn!(%media_type, digest = %desc.digest(), "skipping an index entry that is not an image");
        return Ok(());
    }
    if depth >= MAX_INDEX_DEPTH {
        return Err(ImageError::InvalidArchive {
            reason: format!("indexes nest more than {MAX_INDEX_DEPTH} levels deep"),
        });
    }
    let (digest, bytes) = read_described(store, desc, "index")?;
    check_document(&digest, &bytes, &media_type, "index")?;
    let index: ImageIndex =
        serde_json::from_slice(&bytes).map_err(|source| ImageError::ParseDocument {
            what: "index",
            digest: digest.clone(),
            source,
        })?;
    if all {
        let named = select_manifest(index.manifests(), wanted)
            .ok()
            .map(|d| d.digest().clone());
        for child in index.manifests().iter().filter(|d| !skipped(d)) {
            let child_names = if named.as_ref() == Some(child.digest()) {
                names.clone()
            } else {
                Vec::new()
            };
            collect(store, child, child_names, wanted, all, depth + 1, out)?;
        }
    } else {
        let child = select_manifest(index.manifests(), wanted)?;
        collect(store, child, names, wanted, all, depth + 1, out)?;
    }
    Ok(())
}

/// Reads the (small) document a descriptor names, checking that it is in
/// the archive with the descriptor's size; the store checks its digest.
fn read_described(
    store: &Store,
    desc: &Descriptor,
    what: &str,
) -> Result<(Digest, Vec<u8>), ImageError> {
    let digest = Digest::try_from(desc.digest())?;
    if !store.has_blob(&digest) {
        return Err(ImageError::InvalidArchive {
            reason: format!("the {what} {digest} is not in the archive"),
        });
    }
    let (_, size) = store.open_blob(&digest)?;
    if size != desc.size() {
        return Err(ImageError::SizeMismatch {
            digest,
            expected: desc.size(),
            actual: size,
        });
    }
    let bytes = store.read_blob(&digest)?;
    Ok((digest, bytes))
}

/// Refuses a document whose own media type or shape disagrees with the
/// descriptor that led to it.
fn check_document(
    digest: &Digest,
    bytes: &[u8],
    media_type: &str,
    what: &'static str,
) -> Result<(), ImageError> {
    let probe: Probe =
        serde_json::from_slice(bytes).map_err(|source| ImageError::ParseDocument {
            what,
            digest: digest.clone(),
            source,
        })?;
    let invalid = |reason: String| ImageError::InvalidDocument {
        what,
        digest: digest.clone(),
        reason,
    };
    if probe.manifests.is_some() && (probe.layers.is_some() || probe.config.is_some()) {
        return Err(invalid(
            "it has both manifests and layers or a config".to_string(),
        ));
    }
    if let Some(own) = &probe.media_type {
        if own != media_type {
            return Err(invalid(format!(
                "its media type {own} disagrees with the descriptor's {media_type}"
            )));
        }
    }
    if media::is_index(media_type) && probe.manifests.is_none() {
        return Err(invalid("it has no manifests".to_string()));
    }
    if media::is_manifest(media_type) && probe.config.is_none() {
        return Err(invalid("it has no config".to_string()));
    }
    Ok(())
}

/// Checks one image manifest and unpacks its layers.
fn plan_manifest(
    layers: &mut Layers<'_>,
    desc: &Descriptor,
    names: Vec<ImageRef>,
) -> Result<Planned, ImageError> {
    let store = layers.store;
    let media_type = desc.media_type().to_string();
    let (digest, bytes) = read_described(store, desc, "manifest")?;
    check_document(&digest, &bytes, &media_type, "manifest")?;
    let manifest: ImageManifest =
        serde_json::from_slice(&bytes).map_err(|source| ImageError::ParseDocument {
            what: "manifest",
            digest: digest.clone(),
            source,
        })?;
    let config_type = manifest.config().media_type().to_string();
    if !media::is_config(&config_type) {
        return Err(ImageError::UnsupportedMediaType {
            media_type: config_type,
            hint: Some("the manifest is not a container image's"),
        });
    }
    let (config_digest, config_bytes) = read_described(store, manifest.config(), "image config")?;
    let diff_ids = crate::store::config_diff_ids(&config_digest, &config_bytes)?;
    if diff_ids.len() != manifest.layers().len() {
        return Err(ImageError::InvalidDocument {
            what: "manifest",
            digest,
            reason: format!(
                "it has {} layers, its config {} diff ids",
                manifest.layers().len(),
                diff_ids.len()
            ),
        });
    }
    let chains = chain_ids(&diff_ids);
    for ((layer, diff_id), chain_id) in manifest.layers().iter().zip(&diff_ids).zip(&chains) {
        let blob = Digest::try_from(layer.digest())?;
        let layer_type = layer.media_type().to_string();
        let compression = media::layer_compression(&layer_type).ok_or_else(|| {
            ImageError::UnsupportedMediaType {
                media_type: layer_type.clone(),
                hint: Some("not a layer media type Wharf can unpack"),
            }
        })?;
        let check = || -> Result<(), ImageError> {
            let (_, size) = store.open_blob(&blob)?;
            if size != layer.size() {
                return Err(ImageError::SizeMismatch {
                    digest: blob.clone(),
                    expected: layer.size(),
                    actual: size,
                });
            }
            Ok(())
        };
        check()
            .and_then(|()| {
                layers.ensure(
                    &blob,
                    layer.size(),
                    &layer_type,
                    compression,
                    diff_id,
                    chain_id,
                )
            })
            .map_err(|source| ImageError::LoadArchiveEntry {
                entry: blob_entry(&blob),
                source: Box::new(source),
            })?;
    }
    Ok(Planned {
        manifest: digest,
        id: config_digest,
        names,
    })
}

/// Writes the images as an oci-archive.
pub(super) fn write<W: Write>(
    store: &Store,
    items: &[SaveItem],
    w: &mut ArchiveWriter<W>,
) -> Result<(), ImageError> {
    w.bytes(OCI_LAYOUT, LAYOUT)?;
    let mut entries = Vec::new();
    for item in items {
        let image = &item.image;
        // The config and manifest must agree with what is written.
        diff_ids(image)?;
        for desc in &image.layers {
            let blob = Digest::try_from(desc.digest())?;
            let path = blob_entry(&blob);
            if w.contains(&path) {
                continue;
            }
            let (file, size) = store.open_blob(&blob)?;
            if size != desc.size() {
                return Err(ImageError::SizeMismatch {
                    digest: blob,
                    expected: desc.size(),
                    actual: size,
                });
            }
            w.blob_dirs(&blob)?;
            w.file(&path, size, file, &store.blob_path(&blob), false)?;
        }
        w.blob_bytes(&image.id, &image.config)?;
        let (manifest_digest, manifest) = if image.manifest_media_type == media::OCI_MANIFEST {
            (image.manifest_digest.clone(), image.manifest.clone())
        } else {
            let m = to_oci_manifest(image)?;
            (Digest::sha256_of(&m), m)
        };
        w.blob_bytes(&manifest_digest, &manifest)?;
        let entry = serde_json::json!({
            "mediaType": media::OCI_MANIFEST,
            "digest": manifest_digest.as_str(),
            "size": manifest.len(),
        });
        for name in &item.names {
            let mut named = entry.clone();
            named["annotations"] = serde_json::json!({ ANNOTATION_REF_NAME: name.to_string() });
            entries.push(named);
        }
        if item.names.is_empty() {
            entries.push(entry);
        }
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_INDEX,
        "manifests": entries,
    });
    let index = serde_json::to_vec(&index).expect("a JSON value always serialises");
    w.bytes(INDEX_JSON, &index)
}

/// A Docker schema 2 manifest with OCI media types: same config and layer
/// blobs.
fn to_oci_manifest(image: &Image) -> Result<Vec<u8>, ImageError> {
    let mut m: serde_json::Value =
        serde_json::from_slice(&image.manifest).map_err(|source| ImageError::ParseDocument {
            what: "manifest",
            digest: image.manifest_digest.clone(),
            source,
        })?;
    m["mediaType"] = media::OCI_MANIFEST.into();
    m["config"]["mediaType"] = media::OCI_CONFIG.into();
    let layers = m["layers"]
        .as_array_mut()
        .ok_or_else(|| ImageError::InvalidDocument {
            what: "manifest",
            digest: image.manifest_digest.clone(),
            reason: "it has no layers array".to_string(),
        })?;
    for layer in layers {
        let media_type = layer["mediaType"].as_str().unwrap_or_default().to_string();
        let compression = media::layer_compression(&media_type).ok_or_else(|| {
            ImageError::UnsupportedMediaType {
                media_type,
                hint: Some("not a layer media type Wharf can unpack"),
            }
        })?;
        layer["mediaType"] = media::oci_layer_media_type(compression).into();
    }
    Ok(serde_json::to_vec(&m).expect("a JSON value always serialises"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(json: serde_json::Value) -> Descriptor {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn names_come_from_annotations() {
        let d = Digest::sha256_of(b"m");
        let base =
            serde_json::json!({"mediaType": media::OCI_MANIFEST, "digest": d.as_str(), "size": 1});
        assert!(ref_names(&desc(base.clone())).unwrap().is_empty());
        let mut named = base.clone();
        named["annotations"] = serde_json::json!({ANNOTATION_REF_NAME: "localhost/bb:1"});
        assert_eq!(
            ref_names(&desc(named)).unwrap(),
            vec![ImageRef::parse("localhost/bb:1").unwrap()]
        );
        let mut both = base.clone();
        both["annotations"] = serde_json::json!({
            ANNOTATION_REF_NAME: "latest",
            ANNOTATION_IMAGE_NAME: "docker.io/library/busybox:latest",
        });
        assert_eq!(
            ref_names(&desc(both)).unwrap()[0].to_string(),
            "docker.io/library/busybox:latest"
        );
        let mut bad = base;
        bad["annotations"] = serde_json::json!({ANNOTATION_REF_NAME: "no spaces allowed"});
        assert!(ref_names(&desc(bad)).is_err());
    }

    #[test]
    fn ambiguous_documents_are_refused() {
        let d = Digest::sha256_of(b"x");
        let both = br#"{"schemaVersion":2,"manifests":[],"layers":[],"config":{}}"#;
        let e = check_document(&d, both, media::OCI_MANIFEST, "manifest").unwrap_err();
        assert!(
            e.to_string()
                .ends_with("it has both manifests and layers or a config"),
            "{e}"
        );
        let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
        assert!(check_document(&d, index, media::OCI_MANIFEST, "manifest").is_err());
        assert!(check_document(&d, index, media::OCI_INDEX, "index").is_ok());
        let manifest = br#"{"schemaVersion":2,"config":{},"layers":[]}"#;
        assert!(check_document(&d, manifest, media::OCI_MANIFEST, "manifest").is_ok());
        assert!(check_document(&d, manifest, media::OCI_INDEX, "index").is_err());
    }

    #[test]
    fn docker_manifests_become_oci_ones() {
        let config = br#"{"rootfs":{"type":"layers","diff_ids":[]}}"#.to_vec();
        let layer = Digest::sha256_of(b"l");
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media::DOCKER_MANIFEST,
            "config": {"mediaType": media::DOCKER_CONFIG, "digest": Digest::sha256_of(&config).as_str(), "size": config.len()},
            "layers": [{"mediaType": media::DOCKER_LAYER_GZIP, "digest": layer.as_str(), "size": 1}],
        }))
        .unwrap();
        let image = Image {
            id: Digest::sha256_of(&config),
            manifest_digest: Digest::sha256_of(&manifest),
            manifest_media_type: media::DOCKER_MANIFEST.to_string(),
            manifest,
            config,
            names: Vec::new(),
            digests: Vec::new(),
            layers: Vec::new(),
            chain_ids: Vec::new(),
            recorded: 0,
            size: 0,
        };
        let oci: serde_json::Value =
            serde_json::from_slice(&to_oci_manifest(&image).unwrap()).unwrap();
        assert_eq!(oci["mediaType"], media::OCI_MANIFEST);
        assert_eq!(oci["config"]["mediaType"], media::OCI_CONFIG);
        assert_eq!(oci["config"]["digest"], image.id.as_str());
        assert_eq!(oci["layers"][0]["mediaType"], media::OCI_LAYER_GZIP);
        assert_eq!(oci["layers"][0]["digest"], layer.as_str());
    }
}
