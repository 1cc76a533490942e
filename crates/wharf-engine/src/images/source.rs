//! What a push reads: a stored image's manifest and blobs, with
//! uncompressed layers compressed first when `--compression-format` asks.

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;

use wharf_image::{media, Compression, Digest, Image, Store};
use wharf_registry::PushSource;

use crate::EngineError;

/// A stored image as a [`PushSource`].
#[derive(Debug)]
pub(crate) struct StoreSource {
    store: Store,
    manifest: Vec<u8>,
    media_type: String,
    /// Compressed layers made for this push, by their new digest; removed
    /// with the directory when the source is dropped.
    compressed: HashMap<Digest, PathBuf>,
    _scratch: Option<tempfile::TempDir>,
}

impl StoreSource {
    /// The source for `image`; with `compression`, each uncompressed layer
    /// is compressed into a scratch directory of the store and the manifest
    /// rewritten (as an OCI manifest) to name the compressed blobs.
    pub(crate) fn new(
        store: &Store,
        image: Image,
        compression: Option<Compression>,
    ) -> Result<Self, EngineError> {
        let plain =
            |media_type: &str| media::layer_compression(media_type) == Some(Compression::None);
        let wanted = compression.filter(|c| *c != Compression::None);
        let Some(format) =
            wanted.filter(|_| image.layers.iter().any(|l| plain(l.media_type().as_ref())))
        else {
            return Ok(Self {
                store: store.clone(),
                manifest: image.manifest,
                media_type: image.manifest_media_type,
                compressed: HashMap::new(),
                _scratch: None,
            });
        };
        let scratch = store.scratch_dir()?;
        let mut manifest: serde_json::Value = serde_json::from_slice(&image.manifest)
            .map_err(|e| EngineError::invalid(format!("stored manifest of {}: {e}", image.id)))?;
        let mut compressed = HashMap::new();
        let layers = manifest
            .get_mut("layers")
            .and_then(|l| l.as_array_mut())
            .ok_or_else(|| {
                EngineError::invalid(format!("stored manifest of {} has no layers", image.id))
            })?;
        for layer in layers.iter_mut() {
            let media_type = layer["mediaType"].as_str().unwrap_or_default().to_owned();
            let digest = Digest::parse(layer["digest"].as_str().unwrap_or_default())?;
            if !plain(&media_type) {
                // Docker's gzip type has an OCI twin; the manifest becomes OCI.
                if media_type == media::DOCKER_LAYER_GZIP {
                    layer["mediaType"] = media::OCI_LAYER_GZIP.into();
                }
                continue;
            }
            let (blob, _) = store.open_blob(&digest)?;
            let path = scratch.path().join(digest.hex());
            let out = fs_err::File::create(&path)
                .map_err(|e| EngineError::invalid(format!("compress layer {digest}: {e}")))?;
            let made = wharf_registry::compress_layer(blob, out, format)?;
            if made.diff_id != digest {
                return Err(EngineError::invalid(format!(
                    "layer {digest} of {} has diff id {} when read back",
                    image.id, made.diff_id
                )));
            }
            layer["mediaType"] = made.media_type.into();
            layer["digest"] = made.digest.to_string().into();
            layer["size"] = made.size.into();
            compressed.insert(made.digest, path);
        }
        manifest["mediaType"] = media::OCI_MANIFEST.into();
        if manifest["config"]["mediaType"] == media::DOCKER_CONFIG {
            manifest["config"]["mediaType"] = media::OCI_CONFIG.into();
        }
        let manifest = serde_json::to_vec(&manifest)
            .map_err(|e| EngineError::invalid(format!("rewrite manifest of {}: {e}", image.id)))?;
        Ok(Self {
            store: store.clone(),
            manifest,
            media_type: media::OCI_MANIFEST.to_owned(),
            compressed,
            _scratch: Some(scratch),
        })
    }
}

impl PushSource for StoreSource {
    fn manifest(&self) -> &[u8] {
        &self.manifest
    }

    fn manifest_media_type(&self) -> &str {
        &self.media_type
    }

    fn open_blob(&self, digest: &Digest) -> std::io::Result<Box<dyn Read + Send>> {
        if let Some(path) = self.compressed.get(digest) {
            return Ok(Box::new(fs_err::File::open(path)?));
        }
        let (file, _) = self
            .store
            .open_blob(digest)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::NotFound, e.to_string()))?;
        Ok(Box::new(file))
    }
}
