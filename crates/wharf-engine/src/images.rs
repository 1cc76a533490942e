//! Images: pull and push (through `wharf-registry`), login and logout, and
//! the store operations behind `images`, `inspect`, `history`, `tag`, `rmi`,
//! `image prune`, `system df`, `import`, `save` and `load`.
//!
//! Network operations run on a small tokio runtime made for the call; the
//! store is synchronous and is driven from the registry client's blocking
//! threads.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use wharf_image::Platform;
use wharf_registry::{AuthSources, Client, ClientOptions, ConfigPaths, Credential, RegistryConfig};

pub use wharf_image::archive::{ArchiveFormat, LoadedImage};
pub use wharf_image::{
    Compression, Digest, DiskUsage, GcReport, HistoryEntry, Image, ImageId, ImageRef, LayerInfo,
    RemoveReport, VerifyReport,
};
pub use wharf_registry::{BlobKind, NoProgress, Progress};

use crate::{Engine, EngineError};

mod changes;
mod source;

pub use changes::apply_changes;

/// How to reach registries: the flags `pull`, `push` and `login` share.
#[derive(Debug, Clone, Default)]
pub struct RegistryAccess {
    /// `--tls-verify`: `Some(false)` allows plain HTTP and unverified TLS for
    /// every registry; `None` follows registries.conf.
    pub tls_verify: Option<bool>,
    /// `--creds user:password`.
    pub creds: Option<String>,
    /// `--authfile`.
    pub authfile: Option<PathBuf>,
    /// `--cert-dir`: a directory of `*.crt` CA certificates (certs.d layout:
    /// `<dir>/<host:port>/ca.crt`, or certificates directly in it).
    pub cert_dir: Option<PathBuf>,
    /// A registries.conf to use instead of the system's
    /// (`CONTAINERS_REGISTRIES_CONF`).
    pub registries_conf: Option<PathBuf>,
}

impl RegistryAccess {
    fn client(&self) -> Result<Client, EngineError> {
        let paths = match &self.registries_conf {
            Some(file) => ConfigPaths {
                system: file.clone(),
                drop_ins: file.with_extension("conf.d"),
                wharf: file.with_extension("wharf.conf"),
            },
            None => ConfigPaths::default(),
        };
        let config = RegistryConfig::load(&paths)?;
        let auth = AuthSources::from_env(self.creds.as_deref(), self.authfile.as_deref())?;
        let mut options = ClientOptions {
            config,
            auth,
            tls_verify: self.tls_verify,
            ..ClientOptions::default()
        };
        if let Some(dir) = &self.cert_dir {
            options.cert_dirs.insert(0, dir.clone());
        }
        Ok(Client::new(options))
    }
}

/// Parses an image reference (`busybox`, `host:5000/a/b:tag`, `b@sha256:…`).
///
/// # Errors
///
/// It does not follow the reference grammar.
pub fn parse_reference(s: &str) -> Result<ImageRef, EngineError> {
    Ok(ImageRef::parse(s)?)
}

/// A validated `pull`.
#[derive(Debug, Clone)]
pub struct PullRequest {
    /// What to pull.
    pub reference: ImageRef,
    /// `--platform`; the host's when `None`.
    pub platform: Option<Platform>,
    /// Registry access.
    pub access: RegistryAccess,
    /// Layers downloaded at once.
    pub parallel: usize,
}

impl PullRequest {
    /// Validates `reference` and `platform` (`os/arch[/variant]`).
    ///
    /// # Errors
    ///
    /// Either does not parse.
    pub fn new(
        reference: &str,
        platform: Option<&str>,
        access: RegistryAccess,
    ) -> Result<Self, EngineError> {
        Ok(Self {
            reference: ImageRef::parse(reference)?,
            platform: platform.map(Platform::parse).transpose()?,
            access,
            parallel: 6,
        })
    }
}

/// What a pull stored.
#[derive(Debug, Clone)]
pub struct PulledImage {
    /// The name it was recorded under (registry actually used, user's tag,
    /// or the digest when pulled by digest).
    pub name: ImageRef,
    /// The image id (config digest).
    pub id: ImageId,
    /// The manifest digest.
    pub manifest_digest: Digest,
    /// Layers downloaded (the rest were in the store).
    pub downloaded: usize,
    /// Layers of the image.
    pub layers: usize,
}

/// A validated `push`.
#[derive(Debug, Clone)]
pub struct PushRequest {
    /// The local image (name, id or id prefix).
    pub image: String,
    /// Where to push.
    pub destination: ImageRef,
    /// Registry access.
    pub access: RegistryAccess,
    /// `--compression-format`: compress uncompressed layers with this.
    pub compression: Option<Compression>,
    /// Upload in chunks of this many bytes (`None`: one request per blob).
    pub chunk_size: Option<u64>,
}

/// Filters of `images` (`--filter`, `-a`).
#[derive(Debug, Clone, Default)]
pub struct ImageFilter {
    /// `dangling=true|false`: images without (with) a name.
    pub dangling: Option<bool>,
    /// `reference=PATTERN`: a name matches (`*` wildcards; a pattern without
    /// a registry matches the familiar name).
    pub reference: Vec<String>,
    /// `label=KEY` or `label=KEY=VALUE`.
    pub label: Vec<String>,
}

impl ImageFilter {
    /// Parses `--filter` values.
    ///
    /// # Errors
    ///
    /// An unknown key or a malformed value.
    pub fn parse(filters: &[String]) -> Result<Self, EngineError> {
        let mut filter = ImageFilter::default();
        for f in filters {
            let (key, value) = f
                .split_once('=')
                .ok_or_else(|| EngineError::invalid(format!("bad filter {f:?}: want KEY=VALUE")))?;
            match key {
                "dangling" => {
                    filter.dangling = Some(match value {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => {
                            return Err(EngineError::invalid(format!(
                                "bad filter {f:?}: dangling is true or false"
                            )))
                        }
                    })
                }
                "reference" => filter.reference.push(value.to_owned()),
                "label" => filter.label.push(value.to_owned()),
                _ => {
                    return Err(EngineError::invalid(format!(
                        "bad filter {f:?}: unknown key {key:?} (dangling, reference, label)"
                    )))
                }
            }
        }
        Ok(filter)
    }

    fn matches(&self, image: &Image) -> bool {
        if let Some(dangling) = self.dangling {
            if image.names.is_empty() != dangling {
                return false;
            }
        }
        if !self.reference.is_empty()
            && !self.reference.iter().any(|pattern| {
                image.names.iter().any(|name| {
                    let full = name.to_string();
                    let familiar = name.familiar();
                    glob(pattern, &full)
                        || glob(pattern, &familiar)
                        || glob(pattern, familiar.split(':').next().unwrap_or(&familiar))
                })
            })
        {
            return false;
        }
        if !self.label.is_empty() {
            let labels = image
                .configuration()
                .ok()
                .and_then(|c| c.config().clone())
                .and_then(|c| c.labels().clone())
                .unwrap_or_default();
            for want in &self.label {
                let ok = match want.split_once('=') {
                    Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
                    None => labels.contains_key(want.as_str()),
                };
                if !ok {
                    return false;
                }
            }
        }
        true
    }
}

/// `*` matches any run of characters; everything else literally.
fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let mut rest = text;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            let Some(pos) = rest.find(part) else {
                return false;
            };
            rest = &rest[pos + part.len()..];
        }
    }
    true
}

/// A tokio runtime for one network operation.
fn network_runtime() -> Result<tokio::runtime::Runtime, EngineError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(16)
        .enable_all()
        .build()
        .map_err(EngineError::Runtime)
}

impl Engine {
    /// Pulls an image and records it under its name.
    ///
    /// # Errors
    ///
    /// The registry client or the store failed; nothing is recorded then.
    pub fn pull(
        &self,
        request: &PullRequest,
        progress: Arc<dyn Progress>,
    ) -> Result<PulledImage, EngineError> {
        let client = request.access.client()?;
        // Held until the image is recorded: GC must not collect what this
        // pull wrote but has not named yet.
        let _lease = self.images.lease()?;
        let ingest: Arc<dyn wharf_image::Ingest> = Arc::new(self.images.clone());
        let options = wharf_registry::PullOptions {
            platform: request.platform.clone(),
            parallel: request.parallel.max(1),
            ..wharf_registry::PullOptions::default()
        };
        let pulled = network_runtime()?.block_on(client.pull(
            &request.reference,
            &options,
            ingest,
            progress,
        ))?;
        let name = match (request.reference.digest(), request.reference.tag()) {
            (None, Some(tag)) => ImageRef::parse(&format!("{}:{tag}", pulled.reference.name()))?,
            _ => pulled.reference.clone(),
        };
        let id = self
            .images
            .record(&pulled.manifest_digest, std::slice::from_ref(&name))?;
        tracing::info!(image = %name, id = %id, "pulled");
        Ok(PulledImage {
            name,
            id,
            manifest_digest: pulled.manifest_digest,
            downloaded: pulled.layers.iter().filter(|l| l.downloaded).count(),
            layers: pulled.layers.len(),
        })
    }

    /// Pushes a local image; returns the manifest digest the registry has.
    ///
    /// # Errors
    ///
    /// The image is unknown, a layer cannot be compressed, or the registry
    /// refused.
    pub fn push(
        &self,
        request: &PushRequest,
        progress: Arc<dyn Progress>,
    ) -> Result<Digest, EngineError> {
        let image = self.images.resolve(&request.image)?;
        let client = request.access.client()?;
        // Keeps GC from removing the compressed layers' scratch dir (and
        // the image's blobs) while the push reads them.
        let _lease = self.images.lease()?;
        let source = source::StoreSource::new(&self.images, image, request.compression)?;
        let options = wharf_registry::PushOptions {
            chunk_size: request.chunk_size,
            ..wharf_registry::PushOptions::default()
        };
        let digest = network_runtime()?.block_on(client.push(
            Arc::new(source),
            &request.destination,
            &options,
            progress,
        ))?;
        Ok(digest)
    }

    /// Checks `username`/`password` against `registry` and stores them.
    ///
    /// # Errors
    ///
    /// The registry refused them or cannot be reached.
    pub fn login(
        &self,
        registry: &str,
        username: &str,
        password: &str,
        access: &RegistryAccess,
    ) -> Result<(), EngineError> {
        if username.is_empty() {
            return Err(EngineError::invalid("login needs a user name"));
        }
        let client = access.client()?;
        let credential = Credential::Basic {
            username: username.to_owned(),
            password: password.to_owned(),
        };
        network_runtime()?.block_on(client.login(registry, &credential))?;
        Ok(())
    }

    /// Removes the stored credentials of `registry`.
    ///
    /// # Errors
    ///
    /// None are stored, or the auth file cannot be written.
    pub fn logout(&self, registry: &str, access: &RegistryAccess) -> Result<(), EngineError> {
        access.client()?.logout(registry)?;
        Ok(())
    }

    /// The images matching `filter`, newest first.
    ///
    /// # Errors
    ///
    /// The store cannot be read.
    pub fn images(&self, filter: &ImageFilter) -> Result<Vec<Image>, EngineError> {
        let mut images: Vec<Image> = self
            .images
            .list()?
            .into_iter()
            .filter(|i| filter.matches(i))
            .collect();
        images.sort_by(|a, b| b.recorded.cmp(&a.recorded).then(a.id.cmp(&b.id)));
        Ok(images)
    }

    /// An image with its parsed config and its layers.
    ///
    /// # Errors
    ///
    /// No such image.
    pub fn inspect_image(
        &self,
        name: &str,
    ) -> Result<(Image, oci_spec::image::ImageConfiguration, Vec<LayerInfo>), EngineError> {
        Ok(self.images.inspect(name)?)
    }

    /// An image's history, newest step first (as `docker history`).
    ///
    /// # Errors
    ///
    /// No such image.
    pub fn history(&self, name: &str) -> Result<Vec<HistoryEntry>, EngineError> {
        let mut steps = self.images.history(name)?;
        steps.reverse();
        Ok(steps)
    }

    /// Gives `source` the name `target`.
    ///
    /// # Errors
    ///
    /// No such image, or `target` is not a tag name.
    pub fn tag(&self, source: &str, target: &str) -> Result<(), EngineError> {
        let target = ImageRef::parse(target)?;
        self.images.tag(source, &target)?;
        Ok(())
    }

    /// Removes images as `docker rmi` does.
    ///
    /// # Errors
    ///
    /// No such image, or it is in use (without `force`).
    pub fn remove_image(&self, name: &str, force: bool) -> Result<RemoveReport, EngineError> {
        Ok(self.images.remove(name, force)?)
    }

    /// `image prune`: removes dangling images (with `all`, every image no
    /// container uses), then collects unreferenced layers and blobs.
    ///
    /// # Errors
    ///
    /// The store failed.
    pub fn prune_images(&self, all: bool) -> Result<(Vec<RemoveReport>, GcReport), EngineError> {
        self.prune_images_matching(all, &crate::system::PruneFilter::default())
    }

    /// [`Self::prune_images`] of the images `filter` selects (`until`
    /// compares the time the image was recorded in the store; labels are
    /// the config's).
    ///
    /// # Errors
    ///
    /// The store failed.
    pub fn prune_images_matching(
        &self,
        all: bool,
        filter: &crate::system::PruneFilter,
    ) -> Result<(Vec<RemoveReport>, GcReport), EngineError> {
        let mut reports = Vec::new();
        for image in self.images.list()? {
            if !all && !image.names.is_empty() {
                continue;
            }
            if !filter.is_empty() {
                let recorded = std::time::UNIX_EPOCH
                    + std::time::Duration::from_secs(u64::try_from(image.recorded).unwrap_or(0));
                let labels: BTreeMap<String, String> = image
                    .configuration()?
                    .config()
                    .as_ref()
                    .and_then(|c| c.labels().clone())
                    .unwrap_or_default()
                    .into_iter()
                    .collect();
                if !filter.matches(recorded, &labels) {
                    continue;
                }
            }
            match self.images.remove(image.id.as_str(), false) {
                Ok(report) => reports.push(report),
                // In use by a root filesystem: kept, as Docker keeps it.
                Err(e) if e.kind() == wharf_image::ErrorKind::Conflict => {
                    tracing::debug!(image = %image.id, error = %e, "kept: in use");
                }
                Err(e) => return Err(e.into()),
            }
        }
        let gc = self.images.gc()?;
        Ok((reports, gc))
    }

    /// Sizes for `system df`.
    ///
    /// # Errors
    ///
    /// The store cannot be read.
    pub fn disk_usage(&self) -> Result<DiskUsage, EngineError> {
        Ok(self.images.disk_usage()?)
    }

    /// Re-hashes every blob and checks every layer (`system check`).
    ///
    /// # Errors
    ///
    /// The store cannot be read.
    pub fn verify_images(&self) -> Result<VerifyReport, EngineError> {
        Ok(self.images.verify()?)
    }

    /// Removes unreferenced blobs, layers and stale partial downloads.
    ///
    /// # Errors
    ///
    /// A pull holds the store, or removal failed.
    pub fn collect_garbage(&self) -> Result<GcReport, EngineError> {
        Ok(self.images.gc()?)
    }

    /// `import`: a root filesystem tar (plain, gzip or zstd) becomes a
    /// one-layer image; `changes` are Dockerfile instructions (`CMD`, `ENV`,
    /// …) applied to its config.
    ///
    /// # Errors
    ///
    /// A change does not parse, the tar is hostile or malformed.
    pub fn import(
        &self,
        mut reader: impl Read,
        changes: &[String],
        message: Option<&str>,
        names: &[String],
    ) -> Result<ImageId, EngineError> {
        let names = names
            .iter()
            .map(|n| ImageRef::parse(n))
            .collect::<Result<Vec<_>, _>>()?;
        let config = changes::import_config(changes, message)?;
        // Sniff the compression from the first bytes.
        let mut head = [0u8; 4];
        let mut filled = 0;
        while filled < head.len() {
            let n = reader
                .read(&mut head[filled..])
                .map_err(|e| EngineError::invalid(format!("read the import tar: {e}")))?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        let compression = match head {
            [0x1f, 0x8b, ..] => Compression::Gzip,
            [0x28, 0xb5, 0x2f, 0xfd] => Compression::Zstd,
            _ => Compression::None,
        };
        let reader = std::io::Cursor::new(head[..filled].to_vec()).chain(reader);
        Ok(self.images.import(reader, compression, config, &names)?)
    }

    /// `save`: writes `images` (names or ids) as one archive.
    ///
    /// # Errors
    ///
    /// An image is unknown, or writing fails.
    pub fn save(
        &self,
        images: &[String],
        format: ArchiveFormat,
        out: impl Write,
    ) -> Result<(), EngineError> {
        let names: Vec<&str> = images.iter().map(String::as_str).collect();
        wharf_image::archive::save(&self.images, &names, format, out)?;
        Ok(())
    }

    /// `load`: reads a docker-archive or oci-archive (plain, gzip or zstd)
    /// and records its images; nothing is recorded unless all are complete.
    ///
    /// # Errors
    ///
    /// The archive is malformed or hostile, or a digest does not match.
    pub fn load(
        &self,
        input: impl Read,
        platform: Option<&str>,
    ) -> Result<Vec<LoadedImage>, EngineError> {
        let options = wharf_image::archive::LoadOptions {
            platform: platform.map(Platform::parse).transpose()?,
            ..wharf_image::archive::LoadOptions::default()
        };
        Ok(wharf_image::archive::load(&self.images, input, &options)?)
    }

    /// The directories of an image's layers, bottom first.
    ///
    /// # Errors
    ///
    /// A layer is not in the store.
    pub fn layer_dirs(&self, image: &Image) -> Result<Vec<PathBuf>, EngineError> {
        image
            .chain_ids
            .iter()
            .map(|c| Ok(self.images.layer_path(c)?))
            .collect()
    }

    /// Writes the layer diff of a writable root filesystem (for `commit`,
    /// `diff`, `export` later).
    ///
    /// # Errors
    ///
    /// No such root filesystem.
    pub fn diff_rootfs(&self, key: &str, out: impl Write) -> Result<(), EngineError> {
        self.images.diff_rootfs(key, out)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_wildcards() {
        assert!(glob("busybox", "busybox"));
        assert!(glob("busy*", "busybox"));
        assert!(glob("*box", "busybox"));
        assert!(glob("b*s*x", "busybox"));
        assert!(!glob("b*z", "busybox"));
        assert!(!glob("busy", "busybox"));
    }

    #[test]
    fn filters_parse_and_reject_unknown_keys() {
        let f = ImageFilter::parse(&["dangling=true".into(), "reference=busy*".into()]).unwrap();
        assert_eq!(f.dangling, Some(true));
        assert_eq!(f.reference, vec!["busy*"]);
        let e = ImageFilter::parse(&["colour=red".into()]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "bad filter \"colour=red\": unknown key \"colour\" (dangling, reference, label)"
        );
        assert!(ImageFilter::parse(&["dangling=maybe".into()]).is_err());
        assert!(ImageFilter::parse(&["dangling".into()]).is_err());
    }
}
