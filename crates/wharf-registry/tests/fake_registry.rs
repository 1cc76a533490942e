//! Protocol edge cases against an in-process fake registry (a tokio HTTP/1.1
//! server on 127.0.0.1): token auth with insufficient_scope, 401/404/429 with
//! Retry-After, a blob redirect to another host (which must never see
//! credentials), a connection dropped mid-blob (resumed with Range), a server
//! ignoring Range, and a blob with a wrong digest.

mod common;

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
    use tokio::net::TcpListener;
    use wharf_image::{BlobTarget, Digest, ImageRef};
    use wharf_registry::{
        AuthSources, Client, ClientOptions, Credential, ErrorKind, PullOptions, RegistryError,
        RetryPolicy,
    };
    use wharf_testkit::{LayerCompression, LayerContent, OciLayout, TestImage, TestPlatform};

    use crate::common::{DirIngest, Recorder};

    /// A request as the fake saw it.
    #[derive(Debug, Clone)]
    struct Seen {
        method: String,
        path: String,
        headers: HashMap<String, String>,
    }

    /// What the fake answers.
    struct Reply {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        /// Send only this many body bytes (with the full Content-Length), then
        /// close: a dropped connection.
        cut_at: Option<usize>,
    }

    impl Reply {
        fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
            Self {
                status,
                headers: Vec::new(),
                body: body.into(),
                cut_at: None,
            }
        }
        fn header(mut self, name: &str, value: &str) -> Self {
            self.headers.push((name.into(), value.into()));
            self
        }
    }

    type Handler = Arc<dyn Fn(&Seen) -> Reply + Send + Sync>;

    /// A fake server on `ip`; returns its address and the requests log.
    async fn serve(ip: &str, handler: Handler) -> (String, Arc<Mutex<Vec<Seen>>>) {
        let listener = TcpListener::bind((ip, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let log = Arc::new(Mutex::new(Vec::new()));
        let task_log = Arc::clone(&log);
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let handler = Arc::clone(&handler);
                let log = Arc::clone(&task_log);
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut reader = BufReader::new(read);
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let mut parts = line.split_whitespace();
                        let method = parts.next().unwrap_or("").to_owned();
                        let path = parts.next().unwrap_or("").to_owned();
                        let mut headers = HashMap::new();
                        loop {
                            let mut h = String::new();
                            if reader.read_line(&mut h).await.unwrap_or(0) == 0 {
                                return;
                            }
                            let h = h.trim_end();
                            if h.is_empty() {
                                break;
                            }
                            if let Some((k, v)) = h.split_once(':') {
                                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
                            }
                        }
                        let len: usize = headers
                            .get("content-length")
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0);
                        let mut body = vec![0; len];
                        reader.read_exact(&mut body).await.unwrap();
                        let seen = Seen {
                            method: method.clone(),
                            path,
                            headers,
                        };
                        log.lock().unwrap().push(seen.clone());
                        let reply = handler(&seen);
                        let mut head = format!(
                            "HTTP/1.1 {} X\r\nContent-Length: {}\r\n",
                            reply.status,
                            reply.body.len()
                        );
                        for (k, v) in &reply.headers {
                            head.push_str(&format!("{k}: {v}\r\n"));
                        }
                        head.push_str("\r\n");
                        write.write_all(head.as_bytes()).await.unwrap();
                        let body = match reply.cut_at {
                            Some(n) => &reply.body[..n],
                            None => &reply.body[..],
                        };
                        if method != "HEAD" {
                            write.write_all(body).await.unwrap();
                        }
                        write.flush().await.unwrap();
                        if reply.cut_at.is_some() {
                            return;
                        }
                    }
                });
            }
        });
        (addr, log)
    }

    /// A one-layer image (gzip) written to a layout; blobs by digest.
    fn image(dir: &std::path::Path, payload: &[u8]) -> (TestImage, HashMap<String, Vec<u8>>) {
        let layout = OciLayout::create(dir).unwrap();
        let image = layout
            .add_image(
                &[LayerContent::Files(vec![(
                    "data/file".into(),
                    payload.to_vec(),
                )])],
                LayerCompression::Gzip,
                &TestPlatform::host(),
            )
            .unwrap();
        let mut blobs = HashMap::new();
        for b in [&image.manifest, &image.config]
            .into_iter()
            .chain(image.layers.iter())
        {
            blobs.insert(
                b.digest.clone(),
                fs_err::read(layout.blob_path(&b.digest)).unwrap(),
            );
        }
        (image, blobs)
    }

    /// Serves the image's manifest (tag `v1`) and blobs under `/v2/test/img/`.
    fn registry_reply(seen: &Seen, image: &TestImage, blobs: &HashMap<String, Vec<u8>>) -> Reply {
        let path = seen.path.split('?').next().unwrap_or("");
        if path == "/v2/" {
            return Reply::new(200, "{}");
        }
        if let Some(reference) = path.strip_prefix("/v2/test/img/manifests/") {
            if reference == "v1" || reference == image.manifest.digest {
                return Reply::new(200, blobs[&image.manifest.digest].clone())
                    .header("Content-Type", &image.manifest.media_type)
                    .header("Docker-Content-Digest", &image.manifest.digest);
            }
            return Reply::new(
                404,
                r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
            );
        }
        if let Some(digest) = path.strip_prefix("/v2/test/img/blobs/") {
            if let Some(blob) = blobs.get(digest) {
                return Reply::new(200, blob.clone());
            }
        }
        Reply::new(404, "{}")
    }

    fn fast_retries() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            initial_delay: Duration::from_millis(10),
            max_delay: Duration::from_secs(3),
        }
    }

    fn client(auth: AuthSources) -> Client {
        Client::new(ClientOptions {
            auth,
            tls_verify: Some(false),
            cert_dirs: Vec::new(),
            retry: fast_retries(),
            ..ClientOptions::default()
        })
    }

    fn creds(user: &str, password: &str) -> AuthSources {
        AuthSources {
            creds: Some(Credential::Basic {
                username: user.into(),
                password: password.into(),
            }),
            ..AuthSources::default()
        }
    }

    async fn pull(
        client: &Client,
        addr: &str,
        tag: &str,
        dir: &std::path::Path,
    ) -> (
        Result<wharf_registry::Pulled, RegistryError>,
        Arc<DirIngest>,
        Arc<Recorder>,
    ) {
        let ingest = DirIngest::new(dir);
        let progress = Arc::new(Recorder::default());
        let reference = ImageRef::parse(&format!("{addr}/test/img:{tag}")).unwrap();
        let result = client
            .pull(
                &reference,
                &PullOptions::default(),
                ingest.clone(),
                progress.clone(),
            )
            .await;
        (result, ingest, progress)
    }

    #[tokio::test]
    async fn pull_stores_every_blob_with_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let (image, blobs) = image(&dir.path().join("layout"), b"hello");
        let handler_image = image.clone();
        let (addr, _) = serve(
            "127.0.0.1",
            Arc::new(move |seen| registry_reply(seen, &handler_image, &blobs)),
        )
        .await;
        let (result, ingest, _) = pull(
            &client(AuthSources::default()),
            &addr,
            "v1",
            &dir.path().join("store"),
        )
        .await;
        let pulled = result.unwrap();
        assert_eq!(pulled.manifest_digest.as_str(), image.manifest.digest);
        assert_eq!(pulled.config_digest.as_str(), image.config.digest);
        assert_eq!(pulled.layers[0].diff_id.as_str(), image.diff_ids[0]);
        assert_eq!(
            pulled.reference.to_string(),
            format!("{addr}/test/img:v1@{}", image.manifest.digest)
        );
        assert_eq!(ingest.blob_count(), 3);
        assert_eq!(
            ingest.target(&image.config.digest),
            Some(BlobTarget::Config)
        );
        assert_eq!(
            ingest.target(&image.manifest.digest),
            Some(BlobTarget::Manifest)
        );
        let diff_id = Digest::parse(&image.diff_ids[0]).unwrap();
        assert_eq!(
            ingest.target(&image.layers[0].digest),
            Some(BlobTarget::Layer {
                diff_id: diff_id.clone(),
                chain_id: diff_id
            })
        );

        // A second pull finds everything present.
        let (again, _, progress) = pull(
            &client(AuthSources::default()),
            &addr,
            "v1",
            &dir.path().join("store"),
        )
        .await;
        again.unwrap();
        assert!(
            progress.lines().iter().all(|l| l.starts_with("skipped")),
            "{:?}",
            progress.lines()
        );
    }

    #[tokio::test]
    async fn missing_manifest_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let (image, blobs) = image(&dir.path().join("layout"), b"x");
        let (addr, _) = serve(
            "127.0.0.1",
            Arc::new(move |s| registry_reply(s, &image, &blobs)),
        )
        .await;
        let (result, _, _) = pull(
            &client(AuthSources::default()),
            &addr,
            "nope",
            &dir.path().join("s"),
        )
        .await;
        let err = result.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
        assert_eq!(
            err.to_string(),
            format!("manifest nope not found in {addr}/test/img")
        );
    }

    #[tokio::test]
    async fn rate_limit_is_retried_after_retry_after() {
        let dir = tempfile::tempdir().unwrap();
        let (image, blobs) = image(&dir.path().join("layout"), b"x");
        let limited = Arc::new(Mutex::new(0));
        let (addr, log) = serve(
            "127.0.0.1",
            Arc::new(move |s| {
                if s.path.contains("/manifests/") && s.method == "GET" {
                    let mut n = limited.lock().unwrap();
                    *n += 1;
                    if *n == 1 {
                        return Reply::new(429, "slow down").header("Retry-After", "1");
                    }
                }
                registry_reply(s, &image, &blobs)
            }),
        )
        .await;
        let start = Instant::now();
        let (result, _, _) = pull(
            &client(AuthSources::default()),
            &addr,
            "v1",
            &dir.path().join("s"),
        )
        .await;
        result.unwrap();
        assert!(
            start.elapsed() >= Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );
        let gets = log
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.method == "GET" && s.path.contains("/manifests/"))
            .count();
        assert_eq!(gets, 2);
    }

    #[tokio::test]
    async fn basic_auth_denied_is_permission_denied() {
        let dir = tempfile::tempdir().unwrap();
        let (addr, log) = serve(
            "127.0.0.1",
            Arc::new(|s: &Seen| {
                if s.headers.get("authorization").map(String::as_str) == Some("Basic dTpw") {
                    return Reply::new(200, "{}");
                }
                Reply::new(401, "{}").header("WWW-Authenticate", r#"Basic realm="fake""#)
            }),
        )
        .await;
        let (result, _, _) = pull(
            &client(creds("u", "wrong")),
            &addr,
            "v1",
            &dir.path().join("s"),
        )
        .await;
        let err = result.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
        assert!(log
            .lock()
            .unwrap()
            .iter()
            .any(|s| s.headers.contains_key("authorization")));
    }

    #[tokio::test]
    async fn insufficient_scope_asks_for_a_wider_token() {
        let dir = tempfile::tempdir().unwrap();
        let (image, blobs) = image(&dir.path().join("layout"), b"scoped");
        let realm_addr = Arc::new(Mutex::new(String::new()));
        let (token_addr, token_log) = serve(
            "127.0.0.1",
            Arc::new(|s: &Seen| {
                assert_eq!(
                    s.headers.get("authorization").map(String::as_str),
                    Some("Basic dTpw")
                );
                let scopes: Vec<String> = url::Url::parse(&format!("http://x{}", s.path))
                    .unwrap()
                    .query_pairs()
                    .filter(|(k, _)| k == "scope")
                    .map(|(_, v)| v.into_owned())
                    .collect();
                let token = scopes.join("+").replace([':', '/', ','], "_");
                Reply::new(200, format!(r#"{{"token":"{token}","expires_in":300}}"#))
            }),
        )
        .await;
        *realm_addr.lock().unwrap() = token_addr.clone();
        let challenge = move |extra: &str| {
            format!(
                r#"Bearer realm="http://{}/token",service="fake"{extra}"#,
                realm_addr.lock().unwrap()
            )
        };
        let (addr, _) = serve(
            "127.0.0.1",
            Arc::new(move |s| {
                let auth = s.headers.get("authorization").cloned().unwrap_or_default();
                if s.path == "/v2/" {
                    return Reply::new(401, "{}").header("WWW-Authenticate", &challenge(""));
                }
                if s.path.contains("/manifests/") && !auth.contains("repository_test_other_pull") {
                    return Reply::new(401, "{}").header(
                        "WWW-Authenticate",
                        &challenge(
                            r#",scope="repository:test/other:pull",error="insufficient_scope""#,
                        ),
                    );
                }
                if !auth.starts_with("Bearer repository_test_img_pull") {
                    return Reply::new(401, "{}").header("WWW-Authenticate", &challenge(""));
                }
                registry_reply(s, &image, &blobs)
            }),
        )
        .await;
        let (result, _, _) =
            pull(&client(creds("u", "p")), &addr, "v1", &dir.path().join("s")).await;
        result.unwrap();
        let scopes: Vec<String> = token_log
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.path.clone())
            .collect();
        assert_eq!(scopes.len(), 2, "{scopes:?}");
        assert!(
            scopes[1].contains("scope=repository%3Atest%2Fother%3Apull"),
            "{scopes:?}"
        );
    }

    #[tokio::test]
    async fn blob_redirect_to_another_host_carries_no_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let (image, blobs) = image(&dir.path().join("layout"), b"redirected");
        let layer = image.layers[0].digest.clone();
        let storage_blobs = blobs.clone();
        // The storage host answers the blob only without credentials, and
        // challenges otherwise (a client must not answer that challenge).
        let (storage, storage_log) = serve(
            "127.0.0.2",
            Arc::new(move |s: &Seen| {
                let digest = s.path.trim_start_matches("/storage/");
                match storage_blobs.get(digest) {
                    Some(b) if !s.headers.contains_key("authorization") => {
                        Reply::new(200, b.clone())
                    }
                    _ => Reply::new(401, "{}").header("WWW-Authenticate", r#"Basic realm="s3""#),
                }
            }),
        )
        .await;
        let (addr, _) = serve(
            "127.0.0.1",
            Arc::new(move |s| {
                if s.headers.get("authorization").map(String::as_str) != Some("Basic dTpw") {
                    return Reply::new(401, "{}")
                        .header("WWW-Authenticate", r#"Basic realm="fake""#);
                }
                if s.path.ends_with(&format!("/blobs/{layer}")) {
                    return Reply::new(307, "")
                        .header("Location", &format!("http://{storage}/storage/{layer}"));
                }
                registry_reply(s, &image, &blobs)
            }),
        )
        .await;
        let (result, ingest, _) =
            pull(&client(creds("u", "p")), &addr, "v1", &dir.path().join("s")).await;
        result.unwrap();
        assert_eq!(ingest.blob_count(), 3);
        let log = storage_log.lock().unwrap();
        assert!(!log.is_empty());
        assert!(
            log.iter().all(|s| !s.headers.contains_key("authorization")),
            "{log:?}"
        );
    }

    #[tokio::test]
    async fn redirect_target_challenge_is_not_answered() {
        let dir = tempfile::tempdir().unwrap();
        let (image, blobs) = image(&dir.path().join("layout"), b"denied");
        let layer = image.layers[0].digest.clone();
        let (storage, storage_log) = serve(
            "127.0.0.2",
            Arc::new(|_: &Seen| {
                Reply::new(401, "{}").header("WWW-Authenticate", r#"Basic realm="s3""#)
            }),
        )
        .await;
        let (addr, _) = serve(
            "127.0.0.1",
            Arc::new(move |s| {
                if s.headers.get("authorization").map(String::as_str) != Some("Basic dTpw") {
                    return Reply::new(401, "{}")
                        .header("WWW-Authenticate", r#"Basic realm="fake""#);
                }
                if s.path.ends_with(&format!("/blobs/{layer}")) {
                    return Reply::new(302, "")
                        .header("Location", &format!("http://{storage}/storage/{layer}"));
                }
                registry_reply(s, &image, &blobs)
            }),
        )
        .await;
        let (result, _, _) =
            pull(&client(creds("u", "p")), &addr, "v1", &dir.path().join("s")).await;
        let err = result.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
        let log = storage_log.lock().unwrap();
        assert_eq!(log.len(), 1, "one try, no re-authentication: {log:?}");
        assert!(!log[0].headers.contains_key("authorization"));
    }

    #[tokio::test]
    async fn dropped_connection_resumes_with_range() {
        let dir = tempfile::tempdir().unwrap();
        let payload: Vec<u8> = (0..300_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let (image, blobs) = image(&dir.path().join("layout"), &payload);
        let layer = image.layers[0].digest.clone();
        let layer_bytes = blobs[&layer].clone();
        let cut = layer_bytes.len() / 2;
        let (addr, log) = serve(
            "127.0.0.1",
            Arc::new(move |s| {
                if s.path.ends_with(&format!("/blobs/{layer}")) {
                    return match s.headers.get("range") {
                        None => Reply {
                            cut_at: Some(cut),
                            ..Reply::new(200, layer_bytes.clone())
                        },
                        Some(range) => {
                            let start: usize = range
                                .trim_start_matches("bytes=")
                                .trim_end_matches('-')
                                .parse()
                                .unwrap();
                            let total = layer_bytes.len();
                            Reply::new(206, layer_bytes[start..].to_vec()).header(
                                "Content-Range",
                                &format!("bytes {start}-{}/{total}", total - 1),
                            )
                        }
                    };
                }
                registry_reply(s, &image, &blobs)
            }),
        )
        .await;
        let (result, ingest, progress) = pull(
            &client(AuthSources::default()),
            &addr,
            "v1",
            &dir.path().join("s"),
        )
        .await;
        let pulled = result.unwrap();
        assert!(ingest.blob(pulled.layers[0].digest.as_str()).is_some());
        let ranges: Vec<String> = log
            .lock()
            .unwrap()
            .iter()
            .filter_map(|s| s.headers.get("range").cloned())
            .collect();
        assert_eq!(ranges, [format!("bytes={cut}-")]);
        assert!(
            progress.lines().iter().any(|l| l.starts_with("retrying")),
            "{:?}",
            progress.lines()
        );
    }

    #[tokio::test]
    async fn range_ignored_restarts_from_zero_and_partial_ingest_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let payload: Vec<u8> = (0..100_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let (image, blobs) = image(&dir.path().join("layout"), &payload);
        let layer = image.layers[0].digest.clone();
        let layer_bytes = blobs[&layer].clone();
        // An earlier interrupted ingest left the first 1000 bytes.
        let store = dir.path().join("s");
        let ingest = DirIngest::new(&store);
        fs_err::write(
            store
                .join("ingest")
                .join(layer.trim_start_matches("sha256:")),
            &layer_bytes[..1000],
        )
        .unwrap();
        let (addr, log) = serve(
            "127.0.0.1",
            Arc::new(move |s| registry_reply(s, &image, &blobs)),
        )
        .await;
        let reference = ImageRef::parse(&format!("{addr}/test/img:v1")).unwrap();
        let progress = Arc::new(Recorder::default());
        client(AuthSources::default())
            .pull(
                &reference,
                &PullOptions::default(),
                ingest.clone(),
                progress.clone(),
            )
            .await
            .unwrap();
        assert_eq!(ingest.blob(&layer).unwrap(), layer_bytes);
        assert!(log
            .lock()
            .unwrap()
            .iter()
            .any(|s| s.headers.get("range").map(String::as_str) == Some("bytes=1000-")));
        assert!(
            progress.lines().iter().any(|l| l.contains("ignored Range")),
            "{:?}",
            progress.lines()
        );
    }

    #[tokio::test]
    async fn blob_with_wrong_digest_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let (image, mut blobs) = image(&dir.path().join("layout"), b"honest");
        let layer = image.layers[0].digest.clone();
        let mut evil = blobs[&layer].clone();
        let last = evil.len() - 1;
        evil[last] ^= 0xff;
        blobs.insert(layer.clone(), evil);
        let (addr, _) = serve(
            "127.0.0.1",
            Arc::new(move |s| registry_reply(s, &image, &blobs)),
        )
        .await;
        let (result, ingest, _) = pull(
            &client(AuthSources::default()),
            &addr,
            "v1",
            &dir.path().join("s"),
        )
        .await;
        let err = result.unwrap_err();
        assert!(matches!(err, RegistryError::DigestMismatch { .. }), "{err}");
        assert!(ingest.blob(&layer).is_none());
    }

    #[tokio::test]
    async fn manifest_with_wrong_digest_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let (image, blobs) = image(&dir.path().join("layout"), b"m");
        let (addr, _) = serve(
            "127.0.0.1",
            Arc::new(move |s| {
                let mut r = registry_reply(s, &image, &blobs);
                if s.path.contains("/manifests/") {
                    r.headers.retain(|(k, _)| k != "Docker-Content-Digest");
                    r.headers.push((
                        "Docker-Content-Digest".into(),
                        format!("sha256:{}", "0".repeat(64)),
                    ));
                }
                r
            }),
        )
        .await;
        let (result, _, _) = pull(
            &client(AuthSources::default()),
            &addr,
            "v1",
            &dir.path().join("s"),
        )
        .await;
        let err = result.unwrap_err();
        assert!(
            matches!(
                err,
                RegistryError::DigestMismatch {
                    what: "manifest",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[tokio::test]
    async fn schema1_is_refused_clearly() {
        let (addr, _) = serve(
            "127.0.0.1",
            Arc::new(|s: &Seen| {
                if s.path.contains("/manifests/") {
                    return Reply::new(
                        200,
                        r#"{"schemaVersion":1,"name":"test/img","tag":"v1","fsLayers":[]}"#,
                    )
                    .header(
                        "Content-Type",
                        "application/vnd.docker.distribution.manifest.v1+prettyjws",
                    );
                }
                Reply::new(200, "{}")
            }),
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let (result, _, _) = pull(&client(AuthSources::default()), &addr, "v1", dir.path()).await;
        let err = result.unwrap_err();
        assert!(
            err.to_string()
                .contains("schema 1 manifests are not supported"),
            "{err}"
        );
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    }
}
