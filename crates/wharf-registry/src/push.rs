//! Push: each blob (layers, then the config) is skipped when the registry has it
//! (HEAD), mounted from another repository of the same registry when the caller
//! names one, or uploaded (POST, then one PUT, or PATCH chunks following
//! `Location` and a closing PUT); the manifest goes last.

use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{StreamExt as _, TryStreamExt as _};
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{Method, Response, StatusCode};
use serde::Deserialize;
use url::Url;
use wharf_image::{media, Descriptor, Digest, Digester, ImageRef};

use crate::auth::repository_scope;
use crate::client::Client;
use crate::error::RegistryError;
use crate::progress::{BlobKind, Progress};
use crate::session::Session;
use crate::transport::Body;

/// Bytes read from the source per streamed body chunk.
const READ_CHUNK: usize = 256 << 10;

/// What a push reads: the manifest and the blobs it references.
pub trait PushSource: Send + Sync {
    /// The image manifest (OCI or Docker schema 2) exactly as it will be pushed.
    fn manifest(&self) -> &[u8];
    /// Its media type (sent as `Content-Type`).
    fn manifest_media_type(&self) -> &str;
    /// Opens the blob `digest` (the config or a layer, as the manifest describes
    /// it: compressed layers are pushed as they are). Called once per upload
    /// attempt, from a blocking thread.
    ///
    /// # Errors
    ///
    /// The blob cannot be opened.
    fn open_blob(&self, digest: &Digest) -> std::io::Result<Box<dyn Read + Send>>;
}

/// How to push.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// Upload in PATCH chunks of this many bytes; `None` uploads each blob with
    /// one PUT.
    pub chunk_size: Option<u64>,
    /// Repositories on the same registry known to hold a blob: tried as a
    /// cross-repository mount before uploading.
    pub mount_from: Vec<(Digest, String)>,
    /// Blobs uploaded at once (at least 1).
    pub parallel: usize,
}

impl Default for PushOptions {
    fn default() -> Self {
        Self {
            chunk_size: None,
            mount_from: Vec::new(),
            parallel: 3,
        }
    }
}

#[derive(Debug, Deserialize)]
struct ManifestBlobs {
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

/// How a blob got to the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pushed {
    Exists,
    Mounted,
    Uploaded,
}

impl Client {
    /// Pushes the image of `source` to `reference` (its primary location; never a
    /// mirror) and returns the manifest's digest.
    ///
    /// # Errors
    ///
    /// The manifest is not an image manifest, the registry is blocked or refuses
    /// the push, the source cannot supply a blob, or the network fails.
    pub async fn push(
        &self,
        source: Arc<dyn PushSource>,
        reference: &ImageRef,
        options: &PushOptions,
        progress: Arc<dyn Progress>,
    ) -> Result<Digest, RegistryError> {
        let endpoint = self.config().push_endpoint(reference)?;
        let media_type = source.manifest_media_type().to_owned();
        if !media::is_manifest(&media_type) {
            return Err(RegistryError::invalid(format!(
                "cannot push {reference}: {media_type} is not an image manifest type"
            )));
        }
        let manifest = Bytes::copy_from_slice(source.manifest());
        let manifest_digest = Digest::sha256_of(&manifest);
        let blobs: ManifestBlobs =
            serde_json::from_slice(&manifest).map_err(|e| RegistryError::InvalidDocument {
                what: "manifest",
                registry: endpoint.registry().to_owned(),
                repository: endpoint.repository().to_owned(),
                digest: manifest_digest.clone(),
                reason: e.to_string(),
            })?;
        let session = self.session(&endpoint, &["pull", "push"]).await?;
        for (_, from) in &options.mount_from {
            if from != endpoint.repository() {
                session.add_scope(repository_scope(from, &["pull"]));
            }
        }
        let mut all: Vec<(Descriptor, BlobKind)> = blobs
            .layers
            .into_iter()
            .map(|d| (d, BlobKind::Layer))
            .collect();
        all.push((blobs.config, BlobKind::Config));
        let jobs = all.into_iter().map(|(desc, kind)| {
            let session = &session;
            let source = Arc::clone(&source);
            let progress = Arc::clone(&progress);
            async move {
                let digest =
                    Digest::try_from(desc.digest()).map_err(|source| RegistryError::Image {
                        op: format!("parse descriptor digest {}", desc.digest()),
                        source: Box::new(source),
                    })?;
                push_blob(session, &desc, &digest, kind, source, options, progress).await
            }
        });
        futures_util::stream::iter(jobs)
            .buffer_unordered(options.parallel.max(1))
            .try_collect::<Vec<()>>()
            .await?;

        let tag_or_digest = match (reference.tag(), reference.digest()) {
            (Some(tag), _) => tag.to_owned(),
            (None, Some(d)) => d.to_string(),
            (None, None) => "latest".to_owned(),
        };
        let url = session.url(&format!("manifests/{tag_or_digest}"))?;
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_str(&media_type)
                .map_err(|_| RegistryError::invalid(format!("bad media type {media_type:?}")))?,
        );
        let response = session
            .send(Method::PUT, url, headers, Body::Bytes(manifest))
            .await?;
        if response.status() != StatusCode::CREATED && !response.status().is_success() {
            return Err(session.status_error("push manifest", response).await);
        }
        if let Some(returned) = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Digest::parse(v).ok())
        {
            if returned != manifest_digest {
                return Err(RegistryError::DigestMismatch {
                    what: "pushed manifest",
                    registry: session.registry.clone(),
                    repository: session.repository.clone(),
                    expected: Box::new(manifest_digest),
                    actual: Box::new(returned),
                });
            }
        }
        Ok(manifest_digest)
    }
}

async fn push_blob(
    session: &Session,
    desc: &Descriptor,
    digest: &Digest,
    kind: BlobKind,
    source: Arc<dyn PushSource>,
    options: &PushOptions,
    progress: Arc<dyn Progress>,
) -> Result<(), RegistryError> {
    let size = desc.size();
    let outcome = push_blob_inner(session, digest, size, kind, source, options, &progress).await?;
    match outcome {
        Pushed::Exists | Pushed::Mounted => progress.skipped(digest, kind, size),
        Pushed::Uploaded => progress.done(digest),
    }
    tracing::debug!(%digest, ?outcome, "pushed blob");
    Ok(())
}

async fn push_blob_inner(
    session: &Session,
    digest: &Digest,
    size: u64,
    kind: BlobKind,
    source: Arc<dyn PushSource>,
    options: &PushOptions,
    progress: &Arc<dyn Progress>,
) -> Result<Pushed, RegistryError> {
    let blob_url = session.url(&format!("blobs/{digest}"))?;
    let head = session
        .send(Method::HEAD, blob_url, HeaderMap::new(), Body::Empty)
        .await?;
    if head.status().is_success() {
        return Ok(Pushed::Exists);
    }
    let mut location = None;
    for (_, from) in options
        .mount_from
        .iter()
        .filter(|(d, from)| d == digest && from != &session.repository)
    {
        let mut url = session.url("blobs/uploads/")?;
        url.query_pairs_mut()
            .append_pair("mount", digest.as_str())
            .append_pair("from", from);
        let response = session
            .send(Method::POST, url.clone(), HeaderMap::new(), Body::Empty)
            .await?;
        match response.status() {
            StatusCode::CREATED => return Ok(Pushed::Mounted),
            StatusCode::ACCEPTED => {
                location = Some(upload_location(session, &url, &response)?);
                break;
            }
            _ => {
                tracing::debug!(%digest, from, status = response.status().as_u16(), "mount refused");
            }
        }
    }
    let location = match location {
        Some(l) => l,
        None => {
            let url = session.url("blobs/uploads/")?;
            let response = session
                .send(Method::POST, url.clone(), HeaderMap::new(), Body::Empty)
                .await?;
            if response.status() != StatusCode::ACCEPTED {
                return Err(session.status_error("start blob upload", response).await);
            }
            upload_location(session, &url, &response)?
        }
    };
    progress.started(digest, kind, size, 0);
    match options.chunk_size {
        None => upload_monolithic(session, location, digest, size, source, progress).await?,
        Some(chunk) => {
            upload_chunked(
                session,
                location,
                digest,
                size,
                chunk.max(1),
                source,
                progress,
            )
            .await?
        }
    }
    Ok(Pushed::Uploaded)
}

fn upload_location(
    session: &Session,
    base: &Url,
    response: &Response,
) -> Result<Url, RegistryError> {
    let location = response
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            RegistryError::invalid(format!(
                "registry {} started an upload without a Location",
                session.registry
            ))
        })?;
    session.resolve(base, location)
}

fn with_digest(mut url: Url, digest: &Digest) -> Url {
    url.query_pairs_mut().append_pair("digest", digest.as_str());
    url
}

/// One PUT with the whole blob streamed from the source.
async fn upload_monolithic(
    session: &Session,
    location: Url,
    digest: &Digest,
    size: u64,
    source: Arc<dyn PushSource>,
    progress: &Arc<dyn Progress>,
) -> Result<(), RegistryError> {
    let open = {
        let digest = digest.clone();
        let progress = Arc::clone(progress);
        move || -> Result<reqwest::Body, RegistryError> {
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
            let source = Arc::clone(&source);
            let digest = digest.clone();
            let progress = Arc::clone(&progress);
            tokio::task::spawn_blocking(move || {
                let mut reader = match source.open_blob(&digest) {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                };
                let mut digester = Digester::new(digest.algorithm());
                loop {
                    let mut buf = vec![0; READ_CHUNK];
                    match reader.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            buf.truncate(n);
                            digester.update(&buf);
                            progress.advanced(&digest, n as u64);
                            if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                                return;
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            let _ = tx.blocking_send(Err(e));
                            return;
                        }
                    }
                }
                // A source whose bytes do not hash to the digest must not be
                // published: fail the body so the registry never completes it.
                let actual = digester.finish();
                if actual != digest {
                    let _ = tx.blocking_send(Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("source blob hashes to {actual}, not {digest}"),
                    )));
                }
            });
            let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|item| (item, rx))
            });
            Ok(reqwest::Body::wrap_stream(stream))
        }
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(CONTENT_LENGTH, HeaderValue::from(size));
    let response = session
        .send(
            Method::PUT,
            with_digest(location, digest),
            headers,
            Body::Stream(Arc::new(open)),
        )
        .await
        .map_err(|e| match e {
            RegistryError::Request { .. } => RegistryError::ReadSource {
                digest: digest.clone(),
                source: std::io::Error::other(e.to_string()),
            },
            other => other,
        })?;
    if response.status() != StatusCode::CREATED {
        return Err(session.status_error("upload blob", response).await);
    }
    Ok(())
}

/// PATCH chunks, each to the `Location` the previous answer gave, then a PUT.
async fn upload_chunked(
    session: &Session,
    mut location: Url,
    digest: &Digest,
    size: u64,
    chunk_size: u64,
    source: Arc<dyn PushSource>,
    progress: &Arc<dyn Progress>,
) -> Result<(), RegistryError> {
    let read_err = |source| RegistryError::ReadSource {
        digest: digest.clone(),
        source,
    };
    let reader = {
        let source = Arc::clone(&source);
        let digest = digest.clone();
        tokio::task::spawn_blocking(move || source.open_blob(&digest))
            .await
            .map_err(|source| RegistryError::Task {
                op: "open a blob",
                source,
            })?
            .map_err(read_err)?
    };
    let mut reader = Some(reader);
    let mut digester = Digester::new(digest.algorithm());
    let mut offset = 0u64;
    let chunk_len = usize::try_from(chunk_size)
        .unwrap_or(usize::MAX)
        .min(64 << 20);
    loop {
        let Some(r) = reader.take() else { break };
        let (r, chunk) = tokio::task::spawn_blocking(move || {
            let mut r = r;
            let mut buf = Vec::with_capacity(chunk_len);
            let result = (&mut r).take(chunk_len as u64).read_to_end(&mut buf);
            (r, result.map(|_| buf))
        })
        .await
        .map_err(|source| RegistryError::Task {
            op: "read a blob",
            source,
        })?;
        let chunk = chunk.map_err(read_err)?;
        if chunk.is_empty() {
            break;
        }
        reader = Some(r);
        digester.update(&chunk);
        let len = chunk.len() as u64;
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
        let range = HeaderValue::from_str(&format!("{offset}-{}", offset + len - 1))
            .expect("a numeric range is a valid header");
        headers.insert("content-range", range);
        let response = session
            .send(
                Method::PATCH,
                location.clone(),
                headers,
                Body::Bytes(chunk.into()),
            )
            .await?;
        if response.status() != StatusCode::ACCEPTED {
            return Err(session.status_error("upload blob chunk", response).await);
        }
        location = upload_location(session, &location, &response)?;
        offset += len;
        progress.advanced(digest, len);
    }
    let actual = digester.finish();
    if actual != *digest || offset != size {
        return Err(RegistryError::ReadSource {
            digest: digest.clone(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("source blob is {offset} bytes hashing to {actual}, expected {size} bytes"),
            ),
        });
    }
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_LENGTH, HeaderValue::from(0u64));
    let response = session
        .send(
            Method::PUT,
            with_digest(location, digest),
            headers,
            Body::Empty,
        )
        .await?;
    if response.status() != StatusCode::CREATED {
        return Err(session.status_error("finish blob upload", response).await);
    }
    Ok(())
}
