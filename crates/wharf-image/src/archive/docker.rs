//! docker-archive: `manifest.json` lists each image as `{Config, RepoTags,
//! Layers}`, paths of members holding the config and one tar per layer.
//! Docker before 25 names them `<hex>.json` and `<id>/layer.tar` (with
//! symlinks between layer directories), Podman `<hex>.json` and `<hex>.tar`
//! (with `<id>/layer.tar` symlinks), Docker 25 and later `blobs/sha256/<hex>`
//! inside an OCI layout; all are read through the paths `manifest.json`
//! gives. Wharf writes `<config hex>.json` and `<diff id hex>/layer.tar`,
//! layers uncompressed as Docker's are.

use std::collections::BTreeMap;
use std::io::Write;

use serde::Deserialize;

use super::{
    diff_ids, sniff_blob, ArchiveWriter, Contents, Layers, Planned, SaveItem, MANIFEST_JSON,
    REPOSITORIES,
};
use crate::digest::Digest;
use crate::error::{ErrorKind, ImageError};
use crate::media::{self, Compression};
use crate::reference::ImageRef;
use crate::snapshot::chain_ids;
use crate::store::Store;
use crate::unpack;

/// One image of `manifest.json`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ManifestItem {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

/// Checks and unpacks every image `manifest.json` lists; records nothing.
pub(super) fn plan(
    layers: &mut Layers<'_>,
    contents: &Contents,
    manifest_json: &[u8],
) -> Result<Vec<Planned>, ImageError> {
    let items: Vec<ManifestItem> = serde_json::from_slice(manifest_json).map_err(|source| {
        ImageError::ParseArchiveDocument {
            document: MANIFEST_JSON,
            source,
        }
    })?;
    if items.is_empty() {
        return Err(ImageError::InvalidArchive {
            reason: "manifest.json lists no image".to_string(),
        });
    }
    items
        .iter()
        .map(|item| plan_image(layers, contents, item))
        .collect()
}

fn plan_image(
    layers: &mut Layers<'_>,
    contents: &Contents,
    item: &ManifestItem,
) -> Result<Planned, ImageError> {
    let store = layers.store;
    let names = item
        .repo_tags
        .iter()
        .flatten()
        .map(|t| repo_tag(t))
        .collect::<Result<Vec<_>, _>>()?;
    let wrap = |entry: &str| {
        let entry = entry.to_string();
        move |source: ImageError| ImageError::LoadArchiveEntry {
            entry,
            source: Box::new(source),
        }
    };
    let config_member = contents.resolve(MANIFEST_JSON, &item.config)?;
    let config_bytes = store
        .read_blob(&config_member.digest)
        .map_err(wrap(&item.config))?;
    let diff_ids = crate::store::config_diff_ids(&config_member.digest, &config_bytes)?;
    if diff_ids.len() != item.layers.len() {
        return Err(ImageError::InvalidDocument {
            what: "image config",
            digest: config_member.digest.clone(),
            reason: format!(
                "it has {} diff ids, manifest.json lists {} layers",
                diff_ids.len(),
                item.layers.len()
            ),
        });
    }
    let chains = chain_ids(&diff_ids);
    let mut descriptors = Vec::with_capacity(item.layers.len());
    for ((path, diff_id), chain_id) in item.layers.iter().zip(&diff_ids).zip(&chains) {
        let member = contents.resolve(MANIFEST_JSON, path)?;
        let compression = sniff_blob(store, &member.digest).map_err(wrap(path))?;
        let media_type = layer_media_type(compression);
        layers
            .ensure(
                &member.digest,
                member.size,
                media_type,
                compression,
                diff_id,
                chain_id,
            )
            .map_err(wrap(path))?;
        descriptors.push(serde_json::json!({
            "mediaType": media_type,
            "size": member.size,
            "digest": member.digest.as_str(),
        }));
    }
    // An image already here keeps its manifest (a registry's, with its
    // compressed blobs); the archive only adds names.
    match store.resolve(config_member.digest.as_str()) {
        Ok(existing) if existing.chain_ids == chains => {
            return Ok(Planned {
                manifest: existing.manifest_digest,
                id: config_member.digest.clone(),
                names,
            });
        }
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::DOCKER_MANIFEST,
        "config": {
            "mediaType": media::DOCKER_CONFIG,
            "size": config_member.size,
            "digest": config_member.digest.as_str(),
        },
        "layers": descriptors,
    });
    let manifest = serde_json::to_vec(&manifest).expect("a JSON value always serialises");
    let manifest_digest = store.put_blob(&manifest)?;
    Ok(Planned {
        manifest: manifest_digest,
        id: config_member.digest.clone(),
        names,
    })
}

/// A `RepoTags` entry, normalised; it must be a tag, not a digest.
fn repo_tag(tag: &str) -> Result<ImageRef, ImageError> {
    let r = ImageRef::parse(tag)?;
    if r.digest().is_some() {
        return Err(ImageError::InvalidArchive {
            reason: format!(
                "manifest.json: RepoTags entry {tag:?} is a digest reference, not a tag"
            ),
        });
    }
    Ok(r)
}

/// The Docker schema 2 media type of a layer as found in the archive.
fn layer_media_type(c: Compression) -> &'static str {
    match c {
        Compression::None => media::DOCKER_LAYER_TAR,
        Compression::Gzip => media::DOCKER_LAYER_GZIP,
        Compression::Zstd => media::DOCKER_LAYER_ZSTD,
    }
}

/// Writes the images as a docker-archive.
pub(super) fn write<W: Write>(
    store: &Store,
    items: &[SaveItem],
    w: &mut ArchiveWriter<W>,
) -> Result<(), ImageError> {
    let mut manifest = Vec::with_capacity(items.len());
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for item in items {
        let image = &item.image;
        let diff_ids = diff_ids(image)?;
        let mut layer_paths = Vec::with_capacity(diff_ids.len());
        for (i, diff_id) in diff_ids.iter().enumerate() {
            let dir = diff_id.hex();
            let path = format!("{dir}/layer.tar");
            if !w.contains(&path) {
                write_layer(store, w, image, i, diff_id, dir, &path)?;
            }
            layer_paths.push(path);
        }
        let config_path = format!("{}.json", image.id.hex());
        w.bytes(&config_path, &image.config)?;
        let tags: Vec<String> = item.names.iter().map(ImageRef::familiar).collect();
        if let Some(top) = diff_ids.last() {
            for n in &item.names {
                if let Some(tag) = n.tag() {
                    repositories
                        .entry(familiar_repository(n))
                        .or_default()
                        .insert(tag.to_string(), top.hex().to_string());
                }
            }
        }
        manifest.push(serde_json::json!({
            "Config": config_path,
            "RepoTags": if tags.is_empty() { serde_json::Value::Null } else { tags.into() },
            "Layers": layer_paths,
        }));
    }
    let manifest = serde_json::to_vec(&manifest).expect("a JSON value always serialises");
    w.bytes(MANIFEST_JSON, &manifest)?;
    if !repositories.is_empty() {
        let repositories =
            serde_json::to_vec(&repositories).expect("a JSON value always serialises");
        w.bytes(REPOSITORIES, &repositories)?;
    }
    Ok(())
}

/// Writes layer `i` of `image` uncompressed, checking it against `diff_id`.
fn write_layer<W: Write>(
    store: &Store,
    w: &mut ArchiveWriter<W>,
    image: &crate::store::Image,
    i: usize,
    diff_id: &Digest,
    dir: &str,
    path: &str,
) -> Result<(), ImageError> {
    let info = store.layer(&image.chain_ids[i])?;
    let desc = &image.layers[i];
    let blob = Digest::try_from(desc.digest())?;
    if info.diff_id != *diff_id {
        return Err(ImageError::DiffIdMismatch {
            blob,
            expected: diff_id.clone(),
            actual: info.diff_id,
        });
    }
    let media_type = desc.media_type().to_string();
    let compression =
        media::layer_compression(&media_type).ok_or_else(|| ImageError::UnsupportedMediaType {
            media_type: media_type.clone(),
            hint: Some("not a layer media type Wharf can unpack"),
        })?;
    let blob_path = store.blob_path(&blob);
    let (file, _) = store.open_blob(&blob)?;
    let reader = unpack::decompressor(file, compression)
        .map_err(|e| ImageError::io("read blob", &blob_path, e))?;
    w.dir(&format!("{dir}/"))?;
    // A stored uncompressed blob is verified content with this digest.
    let verify = !(compression == Compression::None && blob == *diff_id);
    let written = w.file(path, info.size, reader, &blob_path, verify)?;
    match written {
        Some(actual) if actual != *diff_id => Err(ImageError::DiffIdMismatch {
            blob,
            expected: diff_id.clone(),
            actual,
        }),
        _ => Ok(()),
    }
}

/// `busybox` for `docker.io/library/busybox:1`, `quay.io/a/b` for
/// `quay.io/a/b:1` (the keys of Docker's `repositories` file).
fn familiar_repository(r: &ImageRef) -> String {
    let familiar = r.familiar();
    match r.tag() {
        Some(tag) => familiar
            .strip_suffix(&format!(":{tag}"))
            .unwrap_or(&familiar)
            .to_string(),
        None => familiar,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_items_parse_as_docker_writes_them() {
        let items: Vec<ManifestItem> = serde_json::from_str(
            r#"[{"Config":"a.json","RepoTags":null,"Layers":["b/layer.tar"]},
                {"Config":"blobs/sha256/c","RepoTags":["busybox:latest"],"Layers":[],"LayerSources":{}}]"#,
        )
        .unwrap();
        assert_eq!(items[0].repo_tags, None);
        assert_eq!(items[1].layers.len(), 0);
        assert_eq!(
            repo_tag("busybox").unwrap().to_string(),
            "docker.io/library/busybox:latest"
        );
        let pinned = format!("busybox@{}", Digest::sha256_of(b"x"));
        assert!(repo_tag(&pinned).is_err());
    }

    #[test]
    fn repository_keys_are_familiar() {
        let r = ImageRef::parse("busybox:1").unwrap();
        assert_eq!(familiar_repository(&r), "busybox");
        let r = ImageRef::parse("localhost/a/b:2").unwrap();
        assert_eq!(familiar_repository(&r), "localhost/a/b");
    }
}
