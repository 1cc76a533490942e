//! The store end to end without a registry: ingest through the `Ingest`
//! trait (as a pull does), crash safety of ingest, records, names, removal,
//! verification and garbage collection.

// The workspace lints want tests inside a `#[cfg(test)]` module, even here.
#[cfg(test)]
mod common;

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Barrier};

    use super::common::{self, Tar};
    use wharf_image::{
        media, BlobTarget, Compression, ErrorKind, ImageError, ImageRef, Ingest, Store,
    };
    use wharf_testkit::require;

    fn two_images() -> (common::Fixture, common::Fixture) {
        let base = common::base_layer();
        let a1 = Tar::new().file("a", b"a", 0o644).finish();
        let b1 = Tar::new().file("b", b"b", 0o644).finish();
        (
            common::image(
                &[(base.clone(), Compression::Gzip), (a1, Compression::Zstd)],
                "A",
            ),
            common::image(&[(base, Compression::Gzip), (b1, Compression::None)], "B"),
        )
    }

    #[test]
    fn pull_record_resolve_tag_remove_and_collect() {
        require!(Root);
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (a, b) = two_images();
        let id_a = common::pull(&store, &a, "localhost/a:1").unwrap();
        let id_b = common::pull(&store, &b, "quay.io/b/b:2").unwrap();
        assert_eq!(id_a, a.config_digest);
        // The shared base layer is stored once: 3 snapshots, 3 layer blobs.
        let v = store.verify().unwrap();
        assert!(v.is_clean(), "{v:?}");
        assert!(
            v.dangling_layers.is_empty() && v.unreferenced_blobs.is_empty(),
            "{v:?}"
        );
        assert_eq!(v.blobs_checked, 2 + 2 + 3);
        assert_eq!(
            fs_err::read_dir(dir.path().join("overlay"))
                .unwrap()
                .count(),
            3
        );
        // Pulling again downloads nothing.
        for (blob, mt, diff_id, chain_id) in &a.layers {
            let target = BlobTarget::Layer {
                diff_id: diff_id.clone(),
                chain_id: chain_id.clone(),
            };
            assert!(!common::ingest(&store, mt, blob, &target).unwrap());
        }
        // Resolution by name, id, prefix and digest reference.
        assert_eq!(store.resolve("localhost/a:1").unwrap().id, id_a);
        assert_eq!(
            store.resolve("localhost/a").unwrap_err().kind(),
            ErrorKind::NotFound
        );
        assert_eq!(store.resolve(id_a.as_str()).unwrap().id, id_a);
        assert_eq!(store.resolve(id_a.hex()).unwrap().id, id_a);
        assert_eq!(store.resolve(&id_a.hex()[..12]).unwrap().id, id_a);
        assert_eq!(
            store
                .resolve(&format!("sha256:{}", &id_b.hex()[..8]))
                .unwrap()
                .id,
            id_b
        );
        let pinned = format!("localhost/a@{}", a.manifest_digest);
        assert_eq!(store.resolve(&pinned).unwrap().id, id_a);
        assert!(store.resolve(&id_a.hex()[..2]).is_err());
        let img = store.resolve("quay.io/b/b:2").unwrap();
        assert_eq!(img.names, vec![ImageRef::parse("quay.io/b/b:2").unwrap()]);
        assert_eq!(img.layers.len(), 2);
        assert_eq!(
            img.chain_ids,
            b.layers.iter().map(|l| l.3.clone()).collect::<Vec<_>>()
        );
        assert_eq!(store.list().unwrap().len(), 2);
        // Inspect and history.
        let (_, config, layers) = store.inspect("localhost/a:1").unwrap();
        assert_eq!(config.rootfs().diff_ids().len(), 2);
        assert_eq!(layers[0].diff_id, a.layers[0].2);
        let history = store.history("localhost/a:1").unwrap();
        assert_eq!(history.len(), 3);
        assert!(history[0].empty_layer);
        assert_eq!(history[1].created_by.as_deref(), Some("A 1"));
        assert_eq!(history[1].layer.as_ref().unwrap().0, a.layers[1].3);
        let df = store.disk_usage().unwrap();
        assert_eq!(df.images, 2);
        assert_eq!(df.per_image.len(), 2);
        assert!(df
            .per_image
            .iter()
            .all(|(_, size, shared)| *shared > 0 && size > shared));
        // Tags.
        store
            .tag("localhost/a:1", &ImageRef::parse("localhost/c:2").unwrap())
            .unwrap();
        assert_eq!(store.resolve("localhost/c:2").unwrap().id, id_a);
        // Removing one of two names only untags.
        let r = store.remove("localhost/c:2", false).unwrap();
        assert_eq!(r.untagged, vec!["localhost/c:2".to_string()]);
        assert!(r.deleted.is_empty());
        assert_eq!(store.resolve("localhost/a:1").unwrap().id, id_a);
        store
            .untag(&ImageRef::parse("localhost/a:1").unwrap())
            .unwrap();
        assert_eq!(
            store
                .untag(&ImageRef::parse("localhost/a:1").unwrap())
                .unwrap_err()
                .kind(),
            ErrorKind::NotFound
        );
        // Dangling now, still there by id.
        assert!(store.resolve(id_a.as_str()).unwrap().names.is_empty());
        // Removing B removes its own layer and blobs, keeps the shared base.
        let r = store.remove("quay.io/b/b:2", false).unwrap();
        assert_eq!(r.deleted, vec![id_b.clone()]);
        assert!(!store.has_blob(&b.config_digest));
        assert!(store.has_blob(&a.config_digest));
        assert_eq!(
            fs_err::read_dir(dir.path().join("overlay"))
                .unwrap()
                .count(),
            2
        );
        let v = store.verify().unwrap();
        assert!(
            v.is_clean() && v.dangling_layers.is_empty() && v.unreferenced_blobs.is_empty(),
            "{v:?}"
        );
        store.remove(&id_a.hex()[..12], false).unwrap();
        assert!(store.list().unwrap().is_empty());
        assert_eq!(
            fs_err::read_dir(dir.path().join("overlay"))
                .unwrap()
                .count(),
            0
        );
        assert_eq!(
            fs_err::read_dir(dir.path().join("blobs/sha256"))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn ambiguous_prefixes_and_names_in_several_repositories_are_conflicts() {
        require!(Root);
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (a, b) = two_images();
        common::pull(&store, &a, "localhost/a:1").unwrap();
        common::pull(&store, &b, "localhost/b:1").unwrap();
        let err = store.resolve("zzz").unwrap_err();
        assert_eq!(err.to_string(), "image zzz not found");
        // Two records whose ids share a prefix (written directly: real ids
        // rarely collide on 3 digits).
        {
            let db = rusqlite::Connection::open(dir.path().join("image.db")).unwrap();
            for id in ["abcd", "abce"] {
                db.execute(
                    "INSERT INTO images (id, manifest_digest, manifest_media_type, created, size) VALUES (?1, ?2, 'x', 0, 0)",
                    [format!("sha256:{id}{}", "0".repeat(60)), a.manifest_digest.to_string()],
                )
                .unwrap();
            }
        }
        let err = store.resolve("abc").unwrap_err();
        assert_eq!(
            err.to_string(),
            "image id prefix abc is ambiguous: it matches 2 images"
        );
        assert_eq!(err.kind(), ErrorKind::Conflict);
        assert!(store.resolve("abcd").is_err_and(
            |e| e.kind() == ErrorKind::InvalidArgument || e.kind() == ErrorKind::NotFound
        ));
        store
            .tag("localhost/a:1", &ImageRef::parse("quay.io/x/a:1").unwrap())
            .unwrap();
        let err = store.remove(a.config_digest.as_str(), false).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict);
        assert!(
            err.to_string().contains("referenced by several names"),
            "{err}"
        );
    }

    #[test]
    fn interrupted_ingest_resumes_where_it_stopped() {
        require!(Root);
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let big = Tar::new()
            .file("big", &vec![7u8; 3 << 20], 0o644)
            .file("small", b"s", 0o600)
            .finish();
        let f = common::image(&[(big, Compression::Gzip)], "R");
        let (blob, mt, diff_id, chain_id) = &f.layers[0];
        let target = BlobTarget::Layer {
            diff_id: diff_id.clone(),
            chain_id: chain_id.clone(),
        };
        let half = blob.len() / 2;
        match store.begin(&common::descriptor(mt, blob), &target).unwrap() {
            wharf_image::Begin::Write(mut w) => {
                assert_eq!(w.offset(), 0);
                w.write_all(&blob[..half]).unwrap();
                // The connection drops: the writer goes away uncommitted.
            }
            wharf_image::Begin::Present => panic!("nothing is present yet"),
        }
        assert!(!store.has_blob(&wharf_image::Digest::sha256_of(blob)));
        assert!(store.layer(chain_id).is_err());
        match store.begin(&common::descriptor(mt, blob), &target).unwrap() {
            wharf_image::Begin::Write(mut w) => {
                assert_eq!(w.offset(), half as u64);
                w.write_all(&blob[half..]).unwrap();
                w.commit().unwrap();
            }
            wharf_image::Begin::Present => panic!("the blob was not complete"),
        }
        let layer = store.layer_path(chain_id).unwrap();
        assert_eq!(fs_err::read(layer.join("small")).unwrap(), b"s");
        assert_eq!(fs_err::metadata(layer.join("big")).unwrap().len(), 3 << 20);
        // A server ignoring Range: restart from zero.
        let other = common::image(
            &[(
                Tar::new().file("z", b"z", 0o644).finish(),
                Compression::Zstd,
            )],
            "Z",
        );
        let (blob, mt, diff_id, chain_id) = &other.layers[0];
        let target = BlobTarget::Layer {
            diff_id: diff_id.clone(),
            chain_id: chain_id.clone(),
        };
        let wharf_image::Begin::Write(mut w) =
            store.begin(&common::descriptor(mt, blob), &target).unwrap()
        else {
            panic!("nothing is present yet");
        };
        w.write_all(&blob[..5]).unwrap();
        w.restart().unwrap();
        assert_eq!(w.offset(), 0);
        w.write_all(blob).unwrap();
        w.commit().unwrap();
        assert!(store.layer_path(chain_id).unwrap().join("z").is_file());
    }

    #[test]
    fn corrupted_or_lying_layers_publish_nothing() {
        require!(Root);
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let tar = Tar::new().file("f", &vec![1u8; 100_000], 0o644).finish();
        let f = common::image(&[(tar, Compression::Gzip)], "C");
        let (blob, mt, diff_id, chain_id) = &f.layers[0];
        let target = BlobTarget::Layer {
            diff_id: diff_id.clone(),
            chain_id: chain_id.clone(),
        };
        // Same size, one byte flipped in the middle.
        let mut bad = blob.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0xff;
        let wharf_image::Begin::Write(mut w) =
            store.begin(&common::descriptor(mt, blob), &target).unwrap()
        else {
            panic!("nothing is present yet");
        };
        let written = w.write_all(&bad);
        let err = match written {
            Err(e) => e.to_string(),
            Ok(()) => w.commit().unwrap_err().to_string(),
        };
        assert!(
            err.contains("digest") || err.contains("read layer"),
            "{err}"
        );
        let digest = wharf_image::Digest::sha256_of(blob);
        assert!(!store.has_blob(&digest));
        assert!(store.layer(chain_id).is_err());
        // Nothing of it is left but possibly its ingest file, which a
        // resume would re-hash; GC clears it.
        store.gc().unwrap();
        assert_eq!(
            fs_err::read_dir(dir.path().join("staging"))
                .unwrap()
                .count(),
            0
        );
        assert_eq!(
            fs_err::read_dir(dir.path().join("ingest")).unwrap().count(),
            0
        );
        // A config that lies about the diff id.
        let lie = wharf_image::Digest::sha256_of(b"not this layer");
        let target = BlobTarget::Layer {
            diff_id: lie.clone(),
            chain_id: lie,
        };
        let err = common::ingest(&store, mt, blob, &target).unwrap_err();
        assert!(matches!(err, ImageError::DiffIdMismatch { .. }), "{err}");
        assert!(!store.has_blob(&digest));
        assert_eq!(
            fs_err::read_dir(dir.path().join("overlay"))
                .unwrap()
                .count(),
            0
        );
        // And the honest pull still works afterwards.
        common::pull(&store, &f, "localhost/c:1").unwrap();
        assert!(store.verify().unwrap().is_clean());
    }

    #[test]
    fn two_threads_ingesting_the_same_layer_download_it_once() {
        require!(Root);
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let tar = Tar::new().file("f", &vec![3u8; 1 << 20], 0o644).finish();
        let f = Arc::new(common::image(&[(tar, Compression::Gzip)], "T"));
        let barrier = Arc::new(Barrier::new(2));
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let (store, f, barrier) = (store.clone(), f.clone(), barrier.clone());
                std::thread::spawn(move || {
                    let (blob, mt, diff_id, chain_id) = &f.layers[0];
                    let target = BlobTarget::Layer {
                        diff_id: diff_id.clone(),
                        chain_id: chain_id.clone(),
                    };
                    barrier.wait();
                    match store.begin(&common::descriptor(mt, blob), &target).unwrap() {
                        wharf_image::Begin::Present => false,
                        wharf_image::Begin::Write(mut w) => {
                            for chunk in blob.chunks(1024) {
                                w.write_all(chunk).unwrap();
                                std::thread::sleep(std::time::Duration::from_micros(200));
                            }
                            w.commit().unwrap();
                            true
                        }
                    }
                })
            })
            .collect();
        let downloads: Vec<bool> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(downloads.iter().filter(|d| **d).count(), 1, "{downloads:?}");
        common::pull(&store, &f, "localhost/t:1").unwrap();
    }

    /// Run as a child process by `two_processes_ingesting_the_same_layer_download_it_once`.
    #[test]
    fn ingest_child() {
        let Some(root) = std::env::var_os("WHARF_IMAGE_TEST_CHILD_ROOT") else {
            return;
        };
        let store = Store::open(std::path::Path::new(&root)).unwrap();
        let tar = Tar::new().file("f", &vec![5u8; 2 << 20], 0o644).finish();
        let f = common::image(&[(tar, Compression::Gzip)], "P");
        let (blob, mt, diff_id, chain_id) = &f.layers[0];
        let target = BlobTarget::Layer {
            diff_id: diff_id.clone(),
            chain_id: chain_id.clone(),
        };
        let outcome = match store.begin(&common::descriptor(mt, blob), &target).unwrap() {
            wharf_image::Begin::Present => "present",
            wharf_image::Begin::Write(mut w) => {
                for chunk in blob.chunks(4096) {
                    w.write_all(chunk).unwrap();
                    std::thread::sleep(std::time::Duration::from_micros(300));
                }
                w.commit().unwrap();
                "downloaded"
            }
        };
        let out = std::path::Path::new(&root).join(format!("outcome-{}", std::process::id()));
        fs_err::write(out, outcome).unwrap();
    }

    #[test]
    fn two_processes_ingesting_the_same_layer_download_it_once() {
        require!(Root);
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path()).unwrap());
        let exe = std::env::current_exe().unwrap();
        let children: Vec<_> = (0..2)
            .map(|_| {
                std::process::Command::new(&exe)
                    .args([
                        "--exact",
                        "tests::ingest_child",
                        "--nocapture",
                        "--test-threads=1",
                    ])
                    .env("WHARF_IMAGE_TEST_CHILD_ROOT", dir.path())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for mut c in children {
            assert!(c.wait().unwrap().success());
        }
        let mut outcomes: Vec<String> = fs_err::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_name().to_string_lossy().starts_with("outcome-"))
            .map(|e| fs_err::read_to_string(e.path()).unwrap())
            .collect();
        outcomes.sort();
        assert_eq!(outcomes, vec!["downloaded", "present"]);
        let store = Store::open(dir.path()).unwrap();
        assert!(store.verify().unwrap().is_clean());
    }

    #[test]
    fn verify_finds_damage_and_gc_clears_crash_leftovers() {
        require!(Root);
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (a, b) = two_images();
        common::pull(&store, &a, "localhost/a:1").unwrap();
        // A crash after unpacking B's layers but before recording B: its
        // snapshots and blobs exist, nothing names them.
        {
            let _lease = store.lease().unwrap();
            for (blob, mt, diff_id, chain_id) in &b.layers {
                let target = BlobTarget::Layer {
                    diff_id: diff_id.clone(),
                    chain_id: chain_id.clone(),
                };
                common::ingest(&store, mt, blob, &target).unwrap();
            }
            // GC refuses while a pull holds a lease.
            assert_eq!(store.gc().unwrap_err().kind(), ErrorKind::Unavailable);
        }
        // Leftovers of a dead process.
        fs_err::write(
            dir.path()
                .join("ingest/sha256-".to_string() + &"ab".repeat(32)),
            b"partial",
        )
        .unwrap();
        fs_err::create_dir_all(dir.path().join("staging/abc-999999999-0/diff")).unwrap();
        let v = store.verify().unwrap();
        assert!(v.is_clean(), "{v:?}");
        assert_eq!(v.dangling_layers, vec![b.layers[1].3.clone()]);
        assert_eq!(v.unreferenced_blobs.len(), 1);
        assert_eq!(v.ingest_files, 1);
        // Damage: a blob's bytes change, a snapshot disappears.
        let config = store.blob_path(&a.config_digest);
        let mut bytes = fs_err::read(&config).unwrap();
        bytes[0] ^= 1;
        fs_err::write(&config, &bytes).unwrap();
        fs_err::remove_dir_all(dir.path().join("overlay").join(a.layers[1].3.hex())).unwrap();
        let v = store.verify().unwrap();
        assert!(!v.is_clean());
        assert_eq!(v.corrupt_blobs.len(), 1);
        assert_eq!(v.corrupt_blobs[0].0, a.config_digest);
        assert_eq!(v.missing_layers, vec![a.layers[1].3.clone()]);
        let gc = store.gc().unwrap();
        assert_eq!(gc.layers, vec![b.layers[1].3.clone()]);
        assert_eq!(gc.blobs.len(), 1);
        assert_eq!(gc.ingest_files, 1);
        assert_eq!(gc.staging_dirs, 1);
    }

    #[test]
    fn import_makes_an_image_without_a_registry() {
        require!(Root);
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let tar = common::base_layer();
        let config: oci_spec::image::ImageConfiguration =
            serde_json::from_value(serde_json::json!({
                "architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/x"]},
                "rootfs": {"type": "layers", "diff_ids": []}
            }))
            .unwrap();
        let name = ImageRef::parse("localhost/imported:1").unwrap();
        let id = store
            .import(
                &tar[..],
                Compression::None,
                config,
                std::slice::from_ref(&name),
            )
            .unwrap();
        let img = store.resolve("localhost/imported:1").unwrap();
        assert_eq!(img.id, id);
        assert_eq!(img.layers[0].media_type().to_string(), media::OCI_LAYER_TAR);
        let (_, config, layers) = store.inspect(id.as_str()).unwrap();
        assert_eq!(
            config.rootfs().diff_ids(),
            &vec![wharf_image::Digest::sha256_of(&tar).to_string()]
        );
        assert_eq!(layers[0].size, tar.len() as u64);
        assert!(store.verify().unwrap().is_clean());
        // The manifest written by import is a valid pull source.
        let (mut file, size) = store.open_blob(&img.manifest_digest).unwrap();
        let mut manifest = Vec::new();
        std::io::Read::read_to_end(&mut file, &mut manifest).unwrap();
        assert_eq!(manifest.len() as u64, size);
    }

    #[test]
    fn index_and_schema1_are_refused_on_record() {
        require!(Root);
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": []
        }))
        .unwrap();
        let d = store.put_blob(&index).unwrap();
        let err = store
            .record_image(&ImageRef::parse("x").unwrap(), &d)
            .unwrap_err();
        assert!(
            err.to_string()
                .ends_with("it is an index: select a platform's manifest first"),
            "{err}"
        );
        let s1 = serde_json::to_vec(
            &serde_json::json!({"schemaVersion": 1, "name": "x", "fsLayers": []}),
        )
        .unwrap();
        let d = store.put_blob(&s1).unwrap();
        let err = store
            .record_image(&ImageRef::parse("x").unwrap(), &d)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "unsupported media type \"application/vnd.docker.distribution.manifest.v1+json\": Docker schema 1 images are not supported"
        );
        // Blobs Wharf cannot unpack as layers are refused at begin.
        let desc = common::descriptor("application/vnd.in-toto+json", b"{}");
        let d = wharf_image::Digest::sha256_of(b"{}");
        let err = store
            .begin(
                &desc,
                &BlobTarget::Layer {
                    diff_id: d.clone(),
                    chain_id: d,
                },
            )
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    }
}
