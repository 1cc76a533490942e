//! Pull: resolve the reference to a manifest (HEAD for the digest, GET with the
//! full Accept list, digest verified), pick the platform from an index, fetch and
//! verify the config, then download the layers in parallel, each streamed through
//! a bounded channel into the store's [`BlobWriter`] on a blocking thread (so
//! network, hashing and the store's unpacking overlap), resuming with `Range`
//! after a dropped connection. Manifest and config are stored last.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::{StreamExt as _, TryStreamExt as _};
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, CONTENT_RANGE, CONTENT_TYPE, RANGE};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use wharf_image::platform::{select_manifest, Platform};
use wharf_image::{
    media, Begin, BlobTarget, BlobWriter, Descriptor, Digest, Digester, ImageRef, Ingest,
};

use crate::client::Client;
use crate::config::Endpoint;
use crate::error::RegistryError;
use crate::progress::{BlobKind, Progress};
use crate::session::{read_limited, Session};
use crate::transport::Body;

/// Largest manifest or index accepted (c/image's limit).
pub(crate) const MANIFEST_LIMIT: u64 = 4 << 20;
/// Largest image config accepted (c/image's limit).
pub(crate) const CONFIG_LIMIT: u64 = 4 << 20;
/// Chunks buffered between the network and the store per layer.
const CHANNEL_DEPTH: usize = 8;

/// How to pull.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// The platform to select from an index (`--platform`); the host's if `None`.
    pub platform: Option<Platform>,
    /// Layers downloaded at once (at least 1).
    pub parallel: usize,
    /// Resumes of one blob after a dropped connection.
    pub max_resumes: u32,
}

impl Default for PullOptions {
    fn default() -> Self {
        Self {
            platform: None,
            parallel: 6,
            max_resumes: 5,
        }
    }
}

/// A layer of a pulled image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PulledLayer {
    /// The blob's digest.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// The uncompressed digest (from the config).
    pub diff_id: Digest,
    /// The chain id of the stack ending with this layer.
    pub chain_id: Digest,
    /// Whether it was downloaded (false: the store had it).
    pub downloaded: bool,
}

/// What a pull stored.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The reference as resolved: the registry and repository actually used
    /// (a search registry, not a mirror's rewrite), pinned to the manifest digest.
    pub reference: ImageRef,
    /// The digest of the index the reference named, if it named one.
    pub index_digest: Option<Digest>,
    /// The image manifest's digest.
    pub manifest_digest: Digest,
    /// The config's digest (the image id).
    pub config_digest: Digest,
    /// The layers, base first.
    pub layers: Vec<PulledLayer>,
}

/// A manifest or index as fetched.
#[derive(Debug)]
pub(crate) struct Fetched {
    pub(crate) bytes: Bytes,
    pub(crate) digest: Digest,
    pub(crate) media_type: String,
}

#[derive(Debug, Deserialize)]
struct Document {
    #[serde(rename = "schemaVersion")]
    schema_version: Option<u32>,
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
}

/// A parsed and classified manifest document.
#[derive(Debug)]
pub(crate) enum Parsed {
    Index(Vec<Descriptor>),
    Manifest {
        config: Box<Descriptor>,
        layers: Vec<Descriptor>,
    },
}

#[derive(Debug, Deserialize)]
struct ImageConfigRootfs {
    rootfs: Rootfs,
    #[serde(default)]
    os: Option<String>,
    #[serde(default)]
    architecture: Option<String>,
    #[serde(default)]
    variant: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Rootfs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

enum WriterMsg {
    Data(Bytes),
    Restart,
    Finish,
}

impl Client {
    /// Pulls `reference` into `ingest`: for each candidate of the registries
    /// configuration (search registries for a short name; mirrors, then the
    /// primary location) until one succeeds.
    ///
    /// # Errors
    ///
    /// The registry is blocked, every candidate failed (the last failure is
    /// returned), a digest or size does not match, the manifest is schema 1 or of
    /// an unknown type, no platform matches, or the store failed.
    pub async fn pull(
        &self,
        reference: &ImageRef,
        options: &PullOptions,
        ingest: Arc<dyn Ingest>,
        progress: Arc<dyn Progress>,
    ) -> Result<Pulled, RegistryError> {
        let candidates = self.config().candidates(reference)?;
        let mut last_error = None;
        for endpoint in &candidates {
            progress.resolving(&endpoint.reference.to_string());
            match self.pull_from(endpoint, options, &ingest, &progress).await {
                Ok(mut pulled) => {
                    if endpoint.mirror {
                        // Name the image as the user's reference, not the mirror.
                        let primary = candidates
                            .iter()
                            .find(|c| !c.mirror && c.reference.name() == reference.name())
                            .map_or(reference, |c| &c.reference);
                        pulled.reference = primary.with_digest(pulled.manifest_digest.clone());
                    }
                    return Ok(pulled);
                }
                Err(e) => {
                    tracing::info!(reference = %endpoint.reference, error = %e, "pull candidate failed");
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| {
            RegistryError::invalid(format!("no registry to pull {reference} from"))
        }))
    }

    async fn pull_from(
        &self,
        endpoint: &Endpoint,
        options: &PullOptions,
        ingest: &Arc<dyn Ingest>,
        progress: &Arc<dyn Progress>,
    ) -> Result<Pulled, RegistryError> {
        let session = self.session(endpoint, &["pull"]).await?;
        let reference = &endpoint.reference;
        let tag_or_digest = match (reference.digest(), reference.tag()) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.to_owned(),
            (None, None) => "latest".to_owned(),
        };
        let top = fetch_manifest(&session, &tag_or_digest, reference.digest()).await?;
        let mut index = None;
        let (manifest, config, layers) =
            match parse_document(&session, &top, &reference.to_string())? {
                Parsed::Manifest { config, layers } => (top, *config, layers),
                Parsed::Index(manifests) => {
                    let wanted = options.platform.clone().unwrap_or_else(Platform::host);
                    let chosen = select_manifest(&manifests, &wanted).map_err(|e| match e {
                        wharf_image::ImageError::NoMatchingPlatform {
                            platform,
                            available,
                        } => RegistryError::NoMatchingPlatform {
                            reference: reference.to_string(),
                            platform,
                            available,
                        },
                        other => RegistryError::Image {
                            op: format!("select a platform from {reference}"),
                            source: Box::new(other),
                        },
                    })?;
                    let digest = descriptor_digest(chosen)?;
                    let child = fetch_manifest(&session, digest.as_str(), Some(&digest)).await?;
                    if child.bytes.len() as u64 != chosen.size() {
                        return Err(RegistryError::SizeMismatch {
                            what: "manifest",
                            registry: session.registry.clone(),
                            repository: session.repository.clone(),
                            digest,
                            expected: chosen.size(),
                            actual: child.bytes.len() as u64,
                        });
                    }
                    let parsed = parse_document(&session, &child, &reference.to_string())?;
                    let Parsed::Manifest { config, layers } = parsed else {
                        return Err(invalid_document(
                            &session,
                            "manifest",
                            &child.digest,
                            "an index inside an index",
                        ));
                    };
                    index = Some(top);
                    (child, *config, layers)
                }
            };

        let config_digest = descriptor_digest(&config)?;
        let config_bytes = fetch_small_blob(
            &session,
            &config_digest,
            config.size(),
            CONFIG_LIMIT,
            "config",
        )
        .await?;
        let parsed_config: ImageConfigRootfs = serde_json::from_slice(&config_bytes)
            .map_err(|e| invalid_document(&session, "config", &config_digest, &e.to_string()))?;
        let diff_ids = parsed_config
            .rootfs
            .diff_ids
            .iter()
            .map(|d| Digest::parse(d))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid_document(&session, "config", &config_digest, &e.to_string()))?;
        // A single-platform image pulled with an explicit --platform must be
        // for that platform (as Docker refuses it); without one, any goes.
        if let (None, Some(wanted)) = (&index, &options.platform) {
            let image = Platform::normalized(
                parsed_config.os.as_deref().unwrap_or("linux"),
                parsed_config.architecture.as_deref().unwrap_or_default(),
                parsed_config.variant.as_deref(),
            );
            if wanted.rank(&image).is_none() {
                return Err(RegistryError::NoMatchingPlatform {
                    reference: reference.to_string(),
                    platform: wanted.to_string(),
                    available: image.to_string(),
                });
            }
        }
        if diff_ids.len() != layers.len() {
            return Err(invalid_document(
                &session,
                "config",
                &config_digest,
                &format!(
                    "{} diff ids for {} layers in manifest {}",
                    diff_ids.len(),
                    layers.len(),
                    manifest.digest
                ),
            ));
        }
        for layer in &layers {
            let media_type = layer.media_type().to_string();
            if media::layer_compression(&media_type).is_none() {
                return Err(RegistryError::UnsupportedManifest {
                    reference: reference.to_string(),
                    reason: format!("layer media type {media_type} is not supported"),
                });
            }
        }
        let chain_ids = wharf_image::chain_ids(&diff_ids);

        let parallel = options.parallel.max(1);
        let jobs = layers
            .iter()
            .zip(diff_ids.iter().zip(chain_ids.iter()))
            .enumerate()
            .map(|(i, (desc, (diff_id, chain_id)))| {
                let session = &session;
                let target = BlobTarget::Layer {
                    diff_id: diff_id.clone(),
                    chain_id: chain_id.clone(),
                };
                async move {
                    let digest = descriptor_digest(desc)?;
                    let downloaded = fetch_blob_into(
                        session,
                        desc,
                        &digest,
                        target,
                        BlobKind::Layer,
                        Arc::clone(ingest),
                        progress,
                        options.max_resumes,
                    )
                    .await?;
                    Ok::<_, RegistryError>((
                        i,
                        PulledLayer {
                            digest,
                            size: desc.size(),
                            diff_id: diff_id.clone(),
                            chain_id: chain_id.clone(),
                            downloaded,
                        },
                    ))
                }
            });
        let mut pulled_layers: Vec<(usize, PulledLayer)> = futures_util::stream::iter(jobs)
            .buffer_unordered(parallel)
            .try_collect()
            .await?;
        pulled_layers.sort_by_key(|(i, _)| *i);

        store_bytes(
            ingest,
            &config,
            &config_digest,
            BlobTarget::Config,
            config_bytes,
            progress,
            BlobKind::Config,
        )
        .await?;
        let manifest_desc = document_descriptor(&manifest)?;
        store_bytes(
            ingest,
            &manifest_desc,
            &manifest.digest,
            BlobTarget::Manifest,
            manifest.bytes.clone(),
            progress,
            BlobKind::Manifest,
        )
        .await?;
        let index_digest = match &index {
            Some(index) => {
                let desc = document_descriptor(index)?;
                store_bytes(
                    ingest,
                    &desc,
                    &index.digest,
                    BlobTarget::Manifest,
                    index.bytes.clone(),
                    progress,
                    BlobKind::Manifest,
                )
                .await?;
                Some(index.digest.clone())
            }
            None => None,
        };
        Ok(Pulled {
            reference: reference.with_digest(manifest.digest.clone()),
            index_digest,
            manifest_digest: manifest.digest,
            config_digest,
            layers: pulled_layers.into_iter().map(|(_, l)| l).collect(),
        })
    }
}

fn descriptor_digest(desc: &Descriptor) -> Result<Digest, RegistryError> {
    Digest::try_from(desc.digest()).map_err(|source| RegistryError::Image {
        op: format!("parse descriptor digest {}", desc.digest()),
        source: Box::new(source),
    })
}

fn document_descriptor(doc: &Fetched) -> Result<Descriptor, RegistryError> {
    Ok(Descriptor::new(
        doc.media_type.as_str().into(),
        doc.bytes.len() as u64,
        oci_spec::image::Digest::from(&doc.digest),
    ))
}

fn invalid_document(
    session: &Session,
    what: &'static str,
    digest: &Digest,
    reason: &str,
) -> RegistryError {
    RegistryError::InvalidDocument {
        what,
        registry: session.registry.clone(),
        repository: session.repository.clone(),
        digest: digest.clone(),
        reason: reason.to_owned(),
    }
}

/// The `Accept` header for manifests.
pub(crate) fn manifest_accept() -> HeaderValue {
    HeaderValue::from_str(&media::MANIFEST_ACCEPT.join(", "))
        .expect("media type constants are valid header text")
}

/// Fetches a manifest or index by tag or digest and verifies its digest: against
/// the reference's digest, else the `Docker-Content-Digest` of a HEAD (or of the
/// GET), else computes sha256.
pub(crate) async fn fetch_manifest(
    session: &Session,
    reference: &str,
    pinned: Option<&Digest>,
) -> Result<Fetched, RegistryError> {
    let url = session.url(&format!("manifests/{reference}"))?;
    let mut headers = HeaderMap::new();
    headers.insert(ACCEPT, manifest_accept());
    let not_found = || RegistryError::ManifestNotFound {
        registry: session.registry.clone(),
        repository: session.repository.clone(),
        reference: reference.to_owned(),
    };
    let mut expected = pinned.cloned();
    if expected.is_none() {
        let head = session
            .send(Method::HEAD, url.clone(), headers.clone(), Body::Empty)
            .await?;
        match head.status() {
            StatusCode::NOT_FOUND => return Err(not_found()),
            s if s.is_success() => expected = content_digest(head.headers()),
            // Some registries do not answer HEAD; the GET decides.
            _ => {}
        }
    }
    let response = session.send(Method::GET, url, headers, Body::Empty).await?;
    match response.status() {
        StatusCode::NOT_FOUND => return Err(not_found()),
        s if !s.is_success() => return Err(session.status_error("fetch manifest", response).await),
        _ => {}
    }
    if expected.is_none() {
        expected = content_digest(response.headers());
    }
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned())
        .unwrap_or_default();
    let url = response.url().to_string();
    let bytes = read_limited(response, MANIFEST_LIMIT, "manifest", &url).await?;
    let algorithm = expected
        .as_ref()
        .map_or(wharf_image::Algorithm::Sha256, Digest::algorithm);
    let mut digester = Digester::new(algorithm);
    digester.update(&bytes);
    let actual = digester.finish();
    if let Some(expected) = expected {
        if expected != actual {
            return Err(RegistryError::DigestMismatch {
                what: "manifest",
                registry: session.registry.clone(),
                repository: session.repository.clone(),
                expected: Box::new(expected),
                actual: Box::new(actual),
            });
        }
    }
    Ok(Fetched {
        bytes,
        digest: actual,
        media_type: content_type,
    })
}

fn content_digest(headers: &HeaderMap) -> Option<Digest> {
    headers
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Digest::parse(v.trim()).ok())
}

/// Classifies a fetched document; refuses schema 1, ambiguous documents
/// (CVE-2021-41190: both `manifests` and `config`/`layers`) and a `mediaType`
/// that contradicts the `Content-Type`. Sets `doc.media_type` to the effective
/// type.
pub(crate) fn parse_document(
    session: &Session,
    doc: &Fetched,
    reference: &str,
) -> Result<Parsed, RegistryError> {
    let content_type = doc.media_type.as_str();
    if media::is_schema1(content_type) && content_type != "application/json" {
        return Err(schema1(reference));
    }
    let parsed: Document = serde_json::from_slice(&doc.bytes)
        .map_err(|e| invalid_document(session, "manifest", &doc.digest, &e.to_string()))?;
    if parsed.schema_version == Some(1) {
        return Err(schema1(reference));
    }
    let declared = parsed.media_type.as_deref().unwrap_or("");
    if media::is_schema1(declared) && !declared.is_empty() && declared != "application/json" {
        return Err(schema1(reference));
    }
    if parsed.manifests.is_some() && (parsed.config.is_some() || parsed.layers.is_some()) {
        return Err(invalid_document(
            session,
            "manifest",
            &doc.digest,
            "it has both manifests and config/layers (ambiguous, CVE-2021-41190)",
        ));
    }
    let known = |t: &str| media::is_index(t) || media::is_manifest(t);
    if !declared.is_empty() && known(content_type) && declared != content_type {
        return Err(invalid_document(
            session,
            "manifest",
            &doc.digest,
            &format!("mediaType {declared} contradicts Content-Type {content_type}"),
        ));
    }
    let effective = if declared.is_empty() {
        content_type
    } else {
        declared
    };
    if let Some(manifests) = parsed.manifests {
        if !effective.is_empty() && !media::is_index(effective) {
            return Err(unsupported(reference, effective));
        }
        return Ok(Parsed::Index(manifests));
    }
    if let Some(config) = parsed.config {
        if !effective.is_empty() && !media::is_manifest(effective) {
            return Err(unsupported(reference, effective));
        }
        let config_type = config.media_type().to_string();
        if !media::is_config(&config_type) {
            return Err(RegistryError::UnsupportedManifest {
                reference: reference.to_owned(),
                reason: format!(
                    "config media type {config_type} is not an image config (an artifact?)"
                ),
            });
        }
        return Ok(Parsed::Manifest {
            config: Box::new(config),
            layers: parsed.layers.unwrap_or_default(),
        });
    }
    Err(unsupported(reference, effective))
}

fn schema1(reference: &str) -> RegistryError {
    RegistryError::UnsupportedManifest {
        reference: reference.to_owned(),
        reason:
            "Docker schema 1 manifests are not supported; push the image again with a current tool"
                .into(),
    }
}

fn unsupported(reference: &str, media_type: &str) -> RegistryError {
    RegistryError::UnsupportedManifest {
        reference: reference.to_owned(),
        reason: format!("unsupported manifest media type {media_type:?}"),
    }
}

/// Fetches a small blob whole (a config), checking size and digest.
pub(crate) async fn fetch_small_blob(
    session: &Session,
    digest: &Digest,
    size: u64,
    limit: u64,
    what: &'static str,
) -> Result<Bytes, RegistryError> {
    let url = session.url(&format!("blobs/{digest}"))?;
    if size > limit {
        return Err(RegistryError::TooLarge {
            what,
            url: url.to_string(),
            limit,
        });
    }
    let response = session
        .send(Method::GET, url, HeaderMap::new(), Body::Empty)
        .await?;
    if response.status() == StatusCode::NOT_FOUND {
        return Err(RegistryError::BlobNotFound {
            registry: session.registry.clone(),
            repository: session.repository.clone(),
            digest: digest.clone(),
        });
    }
    if !response.status().is_success() {
        return Err(session.status_error("fetch blob", response).await);
    }
    let url = response.url().to_string();
    let bytes = read_limited(response, size, what, &url).await?;
    if bytes.len() as u64 != size {
        return Err(RegistryError::SizeMismatch {
            what,
            registry: session.registry.clone(),
            repository: session.repository.clone(),
            digest: digest.clone(),
            expected: size,
            actual: bytes.len() as u64,
        });
    }
    let mut digester = Digester::new(digest.algorithm());
    digester.update(&bytes);
    let actual = digester.finish();
    if actual != *digest {
        return Err(RegistryError::DigestMismatch {
            what,
            registry: session.registry.clone(),
            repository: session.repository.clone(),
            expected: Box::new(digest.clone()),
            actual: Box::new(actual),
        });
    }
    Ok(bytes)
}

/// Stores bytes already in memory (manifest, index, config) through `ingest`.
async fn store_bytes(
    ingest: &Arc<dyn Ingest>,
    desc: &Descriptor,
    digest: &Digest,
    target: BlobTarget,
    bytes: Bytes,
    progress: &Arc<dyn Progress>,
    kind: BlobKind,
) -> Result<(), RegistryError> {
    let ingest = Arc::clone(ingest);
    let desc = desc.clone();
    let owned = digest.clone();
    let present = tokio::task::spawn_blocking(move || -> Result<bool, RegistryError> {
        let ingest_err = |source| RegistryError::Ingest {
            digest: owned.clone(),
            source: Box::new(source),
        };
        match ingest.begin(&desc, &target).map_err(ingest_err)? {
            Begin::Present => Ok(true),
            Begin::Write(mut writer) => {
                let offset = writer.offset();
                let start = if offset as usize <= bytes.len() {
                    offset as usize
                } else {
                    writer.restart().map_err(ingest_err)?;
                    0
                };
                writer
                    .write_all(&bytes[start..])
                    .map_err(|source| RegistryError::WriteBlob {
                        digest: owned.clone(),
                        source,
                    })?;
                writer.commit().map_err(ingest_err)?;
                Ok(false)
            }
        }
    })
    .await
    .map_err(|source| RegistryError::Task {
        op: "store a blob",
        source,
    })??;
    if present {
        progress.skipped(digest, kind, 0);
    } else {
        progress.done(digest);
    }
    Ok(())
}

/// Downloads a blob into the store unless it is present. Returns whether it was
/// downloaded.
#[allow(
    clippy::too_many_arguments,
    reason = "one call site; a struct would only rename them"
)]
pub(crate) async fn fetch_blob_into(
    session: &Session,
    desc: &Descriptor,
    digest: &Digest,
    target: BlobTarget,
    kind: BlobKind,
    ingest: Arc<dyn Ingest>,
    progress: &Arc<dyn Progress>,
    max_resumes: u32,
) -> Result<bool, RegistryError> {
    let size = desc.size();
    let begin = {
        let desc = desc.clone();
        let owned = digest.clone();
        tokio::task::spawn_blocking(move || {
            ingest
                .begin(&desc, &target)
                .map_err(|source| RegistryError::Ingest {
                    digest: owned,
                    source: Box::new(source),
                })
        })
        .await
        .map_err(|source| RegistryError::Task {
            op: "begin a blob",
            source,
        })??
    };
    let writer = match begin {
        Begin::Present => {
            progress.skipped(digest, kind, size);
            return Ok(false);
        }
        Begin::Write(writer) => writer,
    };
    let mut offset = writer.offset();
    let (tx, rx) = tokio::sync::mpsc::channel::<WriterMsg>(CHANNEL_DEPTH);
    if offset > size {
        // More than the blob holds: the partial file is not this blob's prefix.
        offset = 0;
        tx.send(WriterMsg::Restart).await.ok();
    }
    progress.started(digest, kind, size, offset);
    let writer_task = {
        let digest = digest.clone();
        let initial = offset;
        let names = (session.registry.clone(), session.repository.clone());
        tokio::task::spawn_blocking(move || write_loop(writer, rx, names, &digest, size, initial))
    };
    let downloaded = download(session, digest, size, offset, &tx, progress, max_resumes).await;
    let finished = match downloaded {
        Ok(()) => tx.send(WriterMsg::Finish).await.is_ok(),
        Err(_) => false,
    };
    drop(tx);
    let written = writer_task.await.map_err(|source| RegistryError::Task {
        op: "write a blob",
        source,
    })?;
    // The writer's own error (digest, size, store) explains a failure best.
    let committed = written?;
    downloaded?;
    if !finished || !committed {
        return Err(RegistryError::invalid(format!(
            "blob {digest} was not committed"
        )));
    }
    progress.done(digest);
    Ok(true)
}

/// Streams the blob from `offset` into `tx`, resuming with `Range` after a
/// dropped connection or a short body.
async fn download(
    session: &Session,
    digest: &Digest,
    size: u64,
    mut offset: u64,
    tx: &tokio::sync::mpsc::Sender<WriterMsg>,
    progress: &Arc<dyn Progress>,
    max_resumes: u32,
) -> Result<(), RegistryError> {
    let mut resumes = 0;
    loop {
        if offset == size {
            return Ok(());
        }
        let url = session.url(&format!("blobs/{digest}"))?;
        let mut headers = HeaderMap::new();
        if offset > 0 {
            let range = HeaderValue::from_str(&format!("bytes={offset}-"))
                .expect("a numeric range is a valid header");
            headers.insert(RANGE, range);
        }
        let response = session.send(Method::GET, url, headers, Body::Empty).await?;
        match response.status() {
            StatusCode::PARTIAL_CONTENT if offset > 0 => {
                let range = response
                    .headers()
                    .get(CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if !range.starts_with(&format!("bytes {offset}-")) {
                    return Err(RegistryError::invalid(format!(
                        "registry {} answered Range bytes={offset}- with Content-Range {range:?}",
                        session.registry
                    )));
                }
            }
            StatusCode::OK => {
                if offset > 0 {
                    progress.retrying(digest, resumes, "the registry ignored Range; starting over");
                    if tx.send(WriterMsg::Restart).await.is_err() {
                        return Ok(());
                    }
                    offset = 0;
                }
            }
            StatusCode::NOT_FOUND => {
                return Err(RegistryError::BlobNotFound {
                    registry: session.registry.clone(),
                    repository: session.repository.clone(),
                    digest: digest.clone(),
                })
            }
            _ => return Err(session.status_error("fetch blob", response).await),
        }
        let url = response.url().to_string();
        let mut stream = response.bytes_stream();
        let mut failure = None;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(chunk) => {
                    let len = chunk.len() as u64;
                    if offset + len > size {
                        return Err(RegistryError::SizeMismatch {
                            what: "blob",
                            registry: session.registry.clone(),
                            repository: session.repository.clone(),
                            digest: digest.clone(),
                            expected: size,
                            actual: offset + len,
                        });
                    }
                    offset += len;
                    if tx.send(WriterMsg::Data(chunk)).await.is_err() {
                        // The writer stopped; its error is reported by the caller.
                        return Ok(());
                    }
                    progress.advanced(digest, len);
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if offset == size {
            return Ok(());
        }
        resumes += 1;
        let reason = match &failure {
            Some(e) => format!("connection lost at byte {offset}: {e}"),
            None => format!("body ended at byte {offset} of {size}"),
        };
        if resumes > max_resumes {
            return Err(match failure {
                Some(source) => RegistryError::Request {
                    method: "GET".into(),
                    url,
                    source,
                },
                None => RegistryError::SizeMismatch {
                    what: "blob",
                    registry: session.registry.clone(),
                    repository: session.repository.clone(),
                    digest: digest.clone(),
                    expected: size,
                    actual: offset,
                },
            });
        }
        tracing::debug!(%digest, offset, resumes, %reason, "resuming blob download");
        progress.retrying(digest, resumes, &reason);
    }
}

/// The blocking side: writes chunks into the store's writer, hashing them when
/// the whole blob passes through here, and commits on `Finish`. Returns whether
/// it committed (false: the network side gave up and dropped the channel).
fn write_loop(
    mut writer: Box<dyn BlobWriter>,
    mut rx: tokio::sync::mpsc::Receiver<WriterMsg>,
    (registry, repository): (String, String),
    digest: &Digest,
    size: u64,
    initial: u64,
) -> Result<bool, RegistryError> {
    let write_err = |source| RegistryError::WriteBlob {
        digest: digest.clone(),
        source,
    };
    let ingest_err = |source| RegistryError::Ingest {
        digest: digest.clone(),
        source: Box::new(source),
    };
    // Bytes an earlier ingest wrote are not seen here: the store's commit checks
    // the whole blob then.
    let mut digester = (initial == 0).then(|| Digester::new(digest.algorithm()));
    let mut written = initial;
    while let Some(msg) = rx.blocking_recv() {
        match msg {
            WriterMsg::Data(chunk) => {
                if let Some(d) = digester.as_mut() {
                    d.update(&chunk);
                }
                writer.write_all(&chunk).map_err(write_err)?;
                written += chunk.len() as u64;
            }
            WriterMsg::Restart => {
                writer.restart().map_err(ingest_err)?;
                digester = Some(Digester::new(digest.algorithm()));
                written = 0;
            }
            WriterMsg::Finish => {
                if written != size {
                    return Err(RegistryError::invalid(format!(
                        "blob {digest}: wrote {written} of {size} bytes"
                    )));
                }
                if let Some(d) = digester {
                    let actual = d.finish();
                    if actual != *digest {
                        return Err(RegistryError::DigestMismatch {
                            what: "blob",
                            registry,
                            repository,
                            expected: Box::new(digest.clone()),
                            actual: Box::new(actual),
                        });
                    }
                }
                writer.commit().map_err(ingest_err)?;
                return Ok(true);
            }
        }
    }
    Ok(false)
}
