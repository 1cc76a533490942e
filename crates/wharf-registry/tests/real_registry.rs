//! Against Debian's docker-registry (from the testkit): pulls of skopeo-pushed
//! images over plain HTTP, TLS with the test CA, htpasswd Basic auth and the token
//! flow; login/logout; a push read back by skopeo; multi-arch index selection.

mod common;

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::path::PathBuf;
    use std::sync::Arc;

    use wharf_image::platform::Platform;
    use wharf_image::{Digest, ImageRef};
    use wharf_registry::{
        AuthSources, Client, ClientOptions, Credential, ErrorKind, NoProgress, PullOptions,
        PushOptions, PushSource,
    };
    use wharf_testkit::{
        busybox_layout, LayerCompression, LayerContent, LocalRegistry, OciLayout, RegistryOptions,
        TestImage, TestPlatform,
    };

    use crate::common::DirIngest;

    fn client_for(registry: &LocalRegistry, auth: AuthSources) -> Client {
        Client::new(ClientOptions {
            auth,
            tls_verify: if registry.is_tls() { None } else { Some(false) },
            cert_dirs: vec![registry.certs_d()],
            ..ClientOptions::default()
        })
    }

    fn creds_of(registry: &LocalRegistry) -> AuthSources {
        let (user, password) = registry.credentials().unwrap();
        AuthSources {
            creds: Some(Credential::Basic {
                username: user.into(),
                password: password.into(),
            }),
            ..AuthSources::default()
        }
    }

    /// Seeds busybox as `test/busybox:v1` and pulls it with `client`.
    async fn seed_and_pull(registry: &LocalRegistry, client: &Client) -> TestImage {
        let dir = tempfile::tempdir().unwrap();
        let (layout, image) =
            busybox_layout(&dir.path().join("layout"), "v1", LayerCompression::Gzip).unwrap();
        registry
            .skopeo_copy_in(&layout.reference("v1"), "test/busybox:v1", false)
            .unwrap();
        let ingest = DirIngest::new(&dir.path().join("store"));
        let reference = ImageRef::parse(&format!("{}/test/busybox:v1", registry.host())).unwrap();
        let pulled = client
            .pull(
                &reference,
                &PullOptions::default(),
                ingest.clone(),
                Arc::new(NoProgress),
            )
            .await
            .unwrap();
        assert_eq!(pulled.manifest_digest.as_str(), image.manifest.digest);
        assert_eq!(pulled.config_digest.as_str(), image.config.digest);
        assert_eq!(pulled.layers.len(), 1);
        assert_eq!(pulled.layers[0].diff_id.as_str(), image.diff_ids[0]);
        assert_eq!(
            ingest.blob(&image.layers[0].digest).unwrap(),
            fs_err::read(layout.blob_path(&image.layers[0].digest)).unwrap()
        );
        image
    }

    #[tokio::test]
    async fn pulls_over_plain_http() {
        wharf_testkit::require!(Registry, Skopeo, Busybox);
        let registry = LocalRegistry::start(RegistryOptions::plain()).unwrap();
        seed_and_pull(&registry, &client_for(&registry, AuthSources::default())).await;
    }

    #[tokio::test]
    async fn pulls_over_tls_with_the_test_ca() {
        wharf_testkit::require!(Registry, Skopeo, Busybox);
        let registry = LocalRegistry::start(RegistryOptions::plain().tls()).unwrap();
        seed_and_pull(&registry, &client_for(&registry, AuthSources::default())).await;

        // Without the CA, verification fails: unavailable, not a silent fallback.
        let strict = Client::new(ClientOptions {
            cert_dirs: Vec::new(),
            ..ClientOptions::default()
        });
        let dir = tempfile::tempdir().unwrap();
        let reference = ImageRef::parse(&format!("{}/test/busybox:v1", registry.host())).unwrap();
        let err = strict
            .pull(
                &reference,
                &PullOptions::default(),
                DirIngest::new(dir.path()),
                Arc::new(NoProgress),
            )
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    }

    #[tokio::test]
    async fn pulls_with_basic_auth_and_refuses_anonymous() {
        wharf_testkit::require!(Registry, Skopeo, Busybox);
        let registry =
            LocalRegistry::start(RegistryOptions::plain().basic_auth("alice", "s3cret")).unwrap();
        seed_and_pull(&registry, &client_for(&registry, creds_of(&registry))).await;
        let dir = tempfile::tempdir().unwrap();
        let reference = ImageRef::parse(&format!("{}/test/busybox:v1", registry.host())).unwrap();
        let err = client_for(&registry, AuthSources::default())
            .pull(
                &reference,
                &PullOptions::default(),
                DirIngest::new(dir.path()),
                Arc::new(NoProgress),
            )
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    }

    #[tokio::test]
    async fn pulls_with_the_token_flow() {
        wharf_testkit::require!(Registry, Skopeo, Busybox);
        let registry =
            LocalRegistry::start(RegistryOptions::plain().token_auth("bob", "hunter2")).unwrap();
        seed_and_pull(&registry, &client_for(&registry, creds_of(&registry))).await;
        let requests = registry.token_requests();
        assert!(
            requests
                .iter()
                .any(|r| r == "GET repository:test/busybox:pull"),
            "{requests:?}"
        );
    }

    #[tokio::test]
    async fn login_stores_verified_credentials_and_logout_removes_them() {
        wharf_testkit::require!(Registry);
        for options in [
            RegistryOptions::plain().basic_auth("alice", "s3cret"),
            RegistryOptions::plain().token_auth("bob", "hunter2"),
        ] {
            let registry = LocalRegistry::start(options).unwrap();
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("auth.json");
            let auth = AuthSources {
                files: vec![file.clone()],
                login_file: file.clone(),
                ..AuthSources::default()
            };
            let client = client_for(&registry, auth.clone());
            let (user, password) = registry.credentials().unwrap();
            let wrong = Credential::Basic {
                username: user.into(),
                password: "wrong".into(),
            };
            let err = client.login(&registry.host(), &wrong).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
            assert!(!file.exists());
            let right = Credential::Basic {
                username: user.into(),
                password: password.into(),
            };
            client.login(&registry.host(), &right).await.unwrap();
            assert_eq!(auth.lookup(&registry.host(), "x").unwrap(), Some(right));
            client.logout(&registry.host()).unwrap();
            assert_eq!(auth.lookup(&registry.host(), "x").unwrap(), None);
            assert_eq!(
                client.logout(&registry.host()).unwrap_err().kind(),
                ErrorKind::NotFound
            );
        }
    }

    /// A push source over an OCI layout's blobs.
    struct LayoutSource {
        manifest: Vec<u8>,
        media_type: String,
        blobs: PathBuf,
    }

    impl PushSource for LayoutSource {
        fn manifest(&self) -> &[u8] {
            &self.manifest
        }
        fn manifest_media_type(&self) -> &str {
            &self.media_type
        }
        fn open_blob(&self, digest: &Digest) -> std::io::Result<Box<dyn Read + Send>> {
            let file = fs_err::File::open(self.blobs.join(digest.hex()))?;
            Ok(Box::new(file))
        }
    }

    #[tokio::test]
    async fn pushed_image_reads_back_with_skopeo() {
        wharf_testkit::require!(Registry, Skopeo, Busybox);
        let registry =
            LocalRegistry::start(RegistryOptions::plain().token_auth("bob", "hunter2")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let layout = OciLayout::create(&dir.path().join("layout")).unwrap();
        let image = layout
            .add_image(
                &[
                    LayerContent::Dir(wharf_testkit::busybox_rootfs().unwrap().to_owned()),
                    LayerContent::Files(vec![("etc/motd".into(), b"pushed by wharf\n".to_vec())]),
                ],
                LayerCompression::Zstd,
                &TestPlatform::host(),
            )
            .unwrap();
        let source = Arc::new(LayoutSource {
            manifest: fs_err::read(layout.blob_path(&image.manifest.digest)).unwrap(),
            media_type: image.manifest.media_type.clone(),
            blobs: dir.path().join("layout/blobs/sha256"),
        });
        let client = client_for(&registry, creds_of(&registry));
        let chunked = PushOptions {
            chunk_size: Some(300 << 10),
            ..PushOptions::default()
        };
        let reference = ImageRef::parse(&format!("{}/pushed/one:v1", registry.host())).unwrap();
        let digest = client
            .push(source.clone(), &reference, &chunked, Arc::new(NoProgress))
            .await
            .unwrap();
        assert_eq!(digest.as_str(), image.manifest.digest);

        // Monolithic upload to a second repository, mounting the base layer.
        let mount = PushOptions {
            mount_from: vec![(
                Digest::parse(&image.layers[0].digest).unwrap(),
                "pushed/one".into(),
            )],
            ..PushOptions::default()
        };
        let second = ImageRef::parse(&format!("{}/pushed/two:v1", registry.host())).unwrap();
        client
            .push(source, &second, &mount, Arc::new(NoProgress))
            .await
            .unwrap();

        for name in ["pushed/one:v1", "pushed/two:v1"] {
            let raw = registry.skopeo_inspect(name, true).unwrap();
            assert_eq!(raw["config"]["digest"], image.config.digest);
            assert_eq!(raw["layers"][1]["digest"], image.layers[1].digest);
        }
        let out = dir.path().join("copied");
        registry
            .skopeo_copy_out("pushed/two:v1", &format!("oci:{}:v1", out.display()))
            .unwrap();
        for layer in &image.layers {
            assert!(out
                .join("blobs/sha256")
                .join(layer.digest.trim_start_matches("sha256:"))
                .is_file());
        }
    }

    #[tokio::test]
    async fn index_selects_the_requested_platform() {
        wharf_testkit::require!(Registry, Skopeo);
        let registry = LocalRegistry::start(RegistryOptions::plain()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let layout = OciLayout::create(&dir.path().join("layout")).unwrap();
        let images: Vec<TestImage> = [("amd64", None), ("arm64", Some("v8")), ("arm", Some("v7"))]
            .into_iter()
            .map(|(arch, variant)| {
                layout
                    .add_image(
                        &[LayerContent::Files(vec![(
                            "etc/arch".into(),
                            arch.as_bytes().to_vec(),
                        )])],
                        LayerCompression::Gzip,
                        &TestPlatform::linux(arch, variant),
                    )
                    .unwrap()
            })
            .collect();
        let index = layout.add_index(&images).unwrap();
        layout.tag("multi", &index).unwrap();
        registry
            .skopeo_copy_in(&layout.reference("multi"), "test/multi:v1", true)
            .unwrap();
        let client = client_for(&registry, AuthSources::default());
        let reference = ImageRef::parse(&format!("{}/test/multi:v1", registry.host())).unwrap();
        for (platform, expected) in [("linux/arm64", 1), ("linux/arm/v7", 2), ("linux/amd64", 0)] {
            let store = dir.path().join(format!("store-{expected}"));
            let options = PullOptions {
                platform: Some(Platform::parse(platform).unwrap()),
                ..PullOptions::default()
            };
            let pulled = client
                .pull(
                    &reference,
                    &options,
                    DirIngest::new(&store),
                    Arc::new(NoProgress),
                )
                .await
                .unwrap();
            assert_eq!(
                pulled.manifest_digest.as_str(),
                images[expected].manifest.digest,
                "{platform}"
            );
            assert_eq!(pulled.index_digest.as_ref().unwrap().as_str(), index.digest);
        }
        let options = PullOptions {
            platform: Some(Platform::parse("linux/s390x").unwrap()),
            ..PullOptions::default()
        };
        let err = client
            .pull(
                &reference,
                &options,
                DirIngest::new(&dir.path().join("none")),
                Arc::new(NoProgress),
            )
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
        assert!(err.to_string().contains("linux/arm64"), "{err}");
    }
}
