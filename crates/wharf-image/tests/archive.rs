//! Image archives: save → load round trips in both formats, multi-image
//! docker-archives, platform selection from an oci-archive index, the
//! shapes other tools write, interoperability with Podman both ways (in a
//! private Podman store), and hostile archives (SECURITY-CASES §1.4, §1.5:
//! CVE-2014-9358, CVE-2023-25153) that must be refused without changing
//! the store.

// The workspace lints want tests inside a `#[cfg(test)]` module, even here.
#[cfg(test)]
mod common;

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::io::{Read, Write};
    use std::path::{Path, PathBuf};

    use super::common::{self, Tar};
    use wharf_image::archive::{self, ArchiveFormat, LoadOptions, LoadedImage};
    use wharf_image::{
        media, Compression, Digest, ErrorKind, ImageError, ImageRef, Platform, Store,
    };
    use wharf_testkit::require;

    fn open_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        (dir, store)
    }

    fn r(s: &str) -> ImageRef {
        ImageRef::parse(s).unwrap()
    }

    /// The error and its sources joined by ": ", as the CLI prints them.
    fn chain(e: &ImageError) -> String {
        let mut out = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            out.push_str(": ");
            out.push_str(&s.to_string());
            source = s.source();
        }
        out
    }

    /// Every image with its tags, sorted: what a failed load must not change.
    fn state(store: &Store) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = store
            .list()
            .unwrap()
            .into_iter()
            .map(|i| {
                let mut names: Vec<String> = i.names.iter().map(ToString::to_string).collect();
                names.sort();
                (i.id.to_string(), names)
            })
            .collect();
        out.sort();
        out
    }

    /// After garbage collection nothing a failed load left remains.
    fn assert_collectable(store: &Store) {
        store.gc().unwrap();
        let report = store.verify().unwrap();
        assert!(report.is_clean(), "{report:?}");
        assert!(report.unreferenced_blobs.is_empty(), "{report:?}");
        assert!(report.dangling_layers.is_empty(), "{report:?}");
        assert_eq!(report.ingest_files, 0, "{report:?}");
    }

    fn save(store: &Store, images: &[&str], format: ArchiveFormat) -> Vec<u8> {
        let mut out = Vec::new();
        archive::save(store, images, format, &mut out).unwrap();
        out
    }

    fn load(store: &Store, tar: &[u8]) -> Result<Vec<LoadedImage>, ImageError> {
        archive::load(store, tar, &LoadOptions::default())
    }

    /// The regular members of a tar and their content (small test archives).
    fn members(tar: &[u8]) -> BTreeMap<String, Vec<u8>> {
        let mut a = tar::Archive::new(tar);
        let mut out = BTreeMap::new();
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            if e.header().entry_type() != tar::EntryType::Regular {
                continue;
            }
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            assert!(out.insert(name.clone(), data).is_none(), "{name} twice");
        }
        out
    }

    fn json(bytes: &[u8]) -> serde_json::Value {
        serde_json::from_slice(bytes).unwrap()
    }

    fn layer_tar(name: &str, content: &[u8]) -> Vec<u8> {
        Tar::new()
            .dir("data/", 0o755)
            .file(&format!("data/{name}"), content, 0o644)
            .finish()
    }

    /// A two-layer image with gzip and zstd layers (as a registry serves it).
    fn two_layer_image(tag: &str) -> (common::Fixture, Vec<Vec<u8>>) {
        let tars = vec![common::base_layer(), layer_tar(tag, tag.as_bytes())];
        let f = common::image(
            &[
                (tars[0].clone(), Compression::Gzip),
                (tars[1].clone(), Compression::Zstd),
            ],
            tag,
        );
        (f, tars)
    }

    fn diff_ids(store: &Store, name: &str) -> Vec<String> {
        let (_, config, layers) = store.inspect(name).unwrap();
        let ids = config.rootfs().diff_ids().clone();
        let from_layers: Vec<String> = layers.iter().map(|l| l.diff_id.to_string()).collect();
        assert_eq!(ids, from_layers);
        ids
    }

    #[test]
    fn docker_archive_round_trip_keeps_id_names_and_diff_ids() {
        require!(Root);
        let (_a, a) = open_store();
        let (f, tars) = two_layer_image("one");
        let id = common::pull(&a, &f, "localhost/rt:1").unwrap();
        a.tag("localhost/rt:1", &r("localhost/rt:2")).unwrap();

        let tar = save(&a, &["localhost/rt:1"], ArchiveFormat::DockerArchive);
        let m = members(&tar);
        let diffs: Vec<Digest> = tars.iter().map(|t| Digest::sha256_of(t)).collect();
        assert_eq!(
            json(&m["manifest.json"]),
            serde_json::json!([{
                "Config": format!("{}.json", id.hex()),
                "RepoTags": ["localhost/rt:1"],
                "Layers": diffs.iter().map(|d| format!("{}/layer.tar", d.hex())).collect::<Vec<_>>(),
            }])
        );
        assert_eq!(
            json(&m["repositories"]),
            serde_json::json!({"localhost/rt": {"1": diffs[1].hex()}})
        );
        // Layers are written uncompressed, as Docker writes them.
        for (d, t) in diffs.iter().zip(&tars) {
            assert_eq!(&m[&format!("{}/layer.tar", d.hex())], t);
        }
        assert_eq!(m[&format!("{}.json", id.hex())], f.config);

        let (_b, b) = open_store();
        let loaded = load(&b, &tar).unwrap();
        assert_eq!(
            loaded,
            vec![LoadedImage {
                id: id.clone(),
                names: vec![r("localhost/rt:1")]
            }]
        );
        let image = b.resolve("localhost/rt:1").unwrap();
        assert_eq!(image.id, id);
        assert_eq!(image.names, vec![r("localhost/rt:1")]);
        assert_eq!(image.manifest_media_type, media::DOCKER_MANIFEST);
        assert_eq!(
            diff_ids(&b, "localhost/rt:1"),
            diff_ids(&a, "localhost/rt:1")
        );
        assert!(b.verify().unwrap().is_clean());

        // Loading it again (everything present) changes nothing.
        let again = load(&b, &tar).unwrap();
        assert_eq!(again, loaded);
        assert_eq!(b.list().unwrap().len(), 1);
        // Loaded into the store it came from, the image keeps its registry
        // manifest (and compressed blobs).
        load(&a, &tar).unwrap();
        let image = a.resolve("localhost/rt:1").unwrap();
        assert_eq!(image.id, id);
        assert_eq!(image.manifest_digest, f.manifest_digest);
        a.gc().unwrap();
        assert!(a.verify().unwrap().is_clean());
    }

    #[test]
    fn oci_archive_round_trip_keeps_blobs_as_stored() {
        require!(Root);
        let (_a, a) = open_store();
        let (f, _) = two_layer_image("two");
        let id = common::pull(&a, &f, "localhost/oci:1").unwrap();

        let tar = save(&a, &["localhost/oci:1"], ArchiveFormat::OciArchive);
        let m = members(&tar);
        assert_eq!(json(&m["oci-layout"])["imageLayoutVersion"], "1.0.0");
        let index = json(&m["index.json"]);
        assert_eq!(index["manifests"].as_array().unwrap().len(), 1);
        assert_eq!(index["manifests"][0]["digest"], f.manifest_digest.as_str());
        assert_eq!(
            index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
            "localhost/oci:1"
        );
        let blob = |d: &Digest| m[&format!("blobs/sha256/{}", d.hex())].clone();
        assert_eq!(blob(&f.manifest_digest), f.manifest);
        assert_eq!(blob(&f.config_digest), f.config);
        for (layer, _, _, _) in &f.layers {
            // Compressed blobs are kept as they are.
            assert_eq!(&blob(&Digest::sha256_of(layer)), layer);
        }

        let (_b, b) = open_store();
        let loaded = load(&b, &tar).unwrap();
        assert_eq!(
            loaded,
            vec![LoadedImage {
                id: id.clone(),
                names: vec![r("localhost/oci:1")]
            }]
        );
        let image = b.resolve("localhost/oci:1").unwrap();
        assert_eq!(image.manifest_digest, f.manifest_digest);
        assert_eq!(
            diff_ids(&b, "localhost/oci:1"),
            diff_ids(&a, "localhost/oci:1")
        );

        // A docker-archive load (Docker schema 2 manifest, uncompressed
        // layers) saves as an OCI manifest with the same config.
        let docker = save(&a, &["localhost/oci:1"], ArchiveFormat::DockerArchive);
        let (_c, c) = open_store();
        load(&c, &docker).unwrap();
        let oci = save(&c, &[id.as_str()], ArchiveFormat::OciArchive);
        let m = members(&oci);
        let index = json(&m["index.json"]);
        assert!(
            index["manifests"][0].get("annotations").is_none(),
            "{index}"
        );
        let manifest_digest =
            Digest::parse(index["manifests"][0]["digest"].as_str().unwrap()).unwrap();
        let manifest = json(&m[&format!("blobs/sha256/{}", manifest_digest.hex())]);
        assert_eq!(manifest["mediaType"], media::OCI_MANIFEST);
        assert_eq!(manifest["layers"][0]["mediaType"], media::OCI_LAYER_TAR);
        let (_d, d) = open_store();
        let loaded = load(&d, &oci).unwrap();
        assert_eq!(loaded[0].id, id);
        assert!(loaded[0].names.is_empty());
    }

    #[test]
    fn multi_image_docker_archive_writes_shared_layers_once() {
        require!(Root);
        let (_a, a) = open_store();
        let base = common::base_layer();
        let fa = common::image(
            &[
                (base.clone(), Compression::Gzip),
                (layer_tar("a", b"a"), Compression::None),
            ],
            "A",
        );
        let fb = common::image(
            &[
                (base.clone(), Compression::Gzip),
                (layer_tar("b", b"b"), Compression::Zstd),
            ],
            "B",
        );
        let id_a = common::pull(&a, &fa, "localhost/multi-a:1").unwrap();
        a.tag("localhost/multi-a:1", &r("busybox:edge")).unwrap();
        let id_b = common::pull(&a, &fb, "quay.io/multi/b:2").unwrap();

        let tar = save(
            &a,
            &["localhost/multi-a:1", "busybox:edge", id_b.short()],
            ArchiveFormat::DockerArchive,
        );
        let m = members(&tar);
        let manifest = json(&m["manifest.json"]);
        assert_eq!(manifest.as_array().unwrap().len(), 2);
        assert_eq!(
            manifest[0]["RepoTags"],
            serde_json::json!(["localhost/multi-a:1", "busybox:edge"])
        );
        // Named by id: no RepoTags.
        assert_eq!(manifest[1]["RepoTags"], serde_json::Value::Null);
        let base_path = format!("{}/layer.tar", Digest::sha256_of(&base).hex());
        assert_eq!(manifest[0]["Layers"][0], base_path.as_str());
        assert_eq!(manifest[1]["Layers"][0], base_path.as_str());
        assert_eq!(m.keys().filter(|k| k.ends_with("/layer.tar")).count(), 3);

        let (_b, b) = open_store();
        let loaded = load(&b, &tar).unwrap();
        assert_eq!(
            loaded,
            vec![
                LoadedImage {
                    id: id_a.clone(),
                    names: vec![
                        r("localhost/multi-a:1"),
                        r("docker.io/library/busybox:edge")
                    ],
                },
                LoadedImage {
                    id: id_b.clone(),
                    names: vec![],
                },
            ]
        );
        let mut names = b.resolve(id_a.as_str()).unwrap().names;
        names.sort_by_key(ToString::to_string);
        assert_eq!(names, vec![r("busybox:edge"), r("localhost/multi-a:1")]);
        assert!(b.resolve(id_b.as_str()).unwrap().names.is_empty());
        assert_eq!(diff_ids(&b, id_b.as_str()), diff_ids(&a, id_b.as_str()));
        assert!(b.verify().unwrap().is_clean());
    }

    /// An OCI archive built by hand: `refs` name top-level entries of
    /// `index.json` (a manifest or an index) with optional ref names;
    /// `blobs` are written first.
    fn oci_archive(blobs: &[&[u8]], refs: &[(serde_json::Value, Option<&str>)]) -> Vec<u8> {
        let mut t = Tar::new();
        for b in blobs {
            t.file(
                &format!("blobs/sha256/{}", Digest::sha256_of(b).hex()),
                b,
                0o644,
            );
        }
        let manifests: Vec<serde_json::Value> = refs
            .iter()
            .map(|(desc, name)| {
                let mut d = desc.clone();
                if let Some(n) = name {
                    d["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": n});
                }
                d
            })
            .collect();
        let index =
            serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": manifests}))
                .unwrap();
        t.file("index.json", &index, 0o644);
        t.file("oci-layout", br#"{"imageLayoutVersion": "1.0.0"}"#, 0o644);
        t.finish()
    }

    fn fixture_blobs(f: &common::Fixture) -> Vec<&[u8]> {
        let mut out: Vec<&[u8]> = f.layers.iter().map(|(b, _, _, _)| b.as_slice()).collect();
        out.push(&f.config);
        out.push(&f.manifest);
        out
    }

    fn manifest_descriptor(f: &common::Fixture, platform: Option<&Platform>) -> serde_json::Value {
        let mut d = serde_json::json!({
            "mediaType": media::OCI_MANIFEST,
            "digest": f.manifest_digest.as_str(),
            "size": f.manifest.len(),
        });
        if let Some(p) = platform {
            d["platform"] = serde_json::json!({"os": p.os, "architecture": p.architecture});
            if let Some(v) = &p.variant {
                d["platform"]["variant"] = v.clone().into();
            }
        }
        d
    }

    #[test]
    fn oci_archive_index_selects_the_platform() {
        require!(Root);
        let host = Platform::host();
        let other = Platform::parse("linux/s390x").unwrap();
        let here = common::image(&[(layer_tar("here", b"here"), Compression::Gzip)], "here");
        let there = common::image(
            &[(layer_tar("there", b"there"), Compression::Zstd)],
            "there",
        );
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_INDEX,
            "manifests": [
                manifest_descriptor(&there, Some(&other)),
                manifest_descriptor(&here, Some(&host)),
            ],
        }))
        .unwrap();
        let mut blobs = fixture_blobs(&here);
        blobs.extend(fixture_blobs(&there));
        blobs.push(&index);
        let index_desc = serde_json::json!({
            "mediaType": media::OCI_INDEX,
            "digest": Digest::sha256_of(&index).as_str(),
            "size": index.len(),
        });
        let tar = oci_archive(&blobs, &[(index_desc, Some("localhost/multi-arch:1"))]);

        let (_a, a) = open_store();
        let loaded = load(&a, &tar).unwrap();
        assert_eq!(
            loaded,
            vec![LoadedImage {
                id: here.config_digest.clone(),
                names: vec![r("localhost/multi-arch:1")]
            }]
        );
        assert_eq!(a.list().unwrap().len(), 1);

        let (_b, b) = open_store();
        let opts = LoadOptions {
            platform: Some(other.clone()),
            all_platforms: false,
        };
        let loaded = archive::load(&b, &tar[..], &opts).unwrap();
        assert_eq!(loaded[0].id, there.config_digest);

        let (_c, c) = open_store();
        let opts = LoadOptions {
            platform: None,
            all_platforms: true,
        };
        let mut loaded = archive::load(&c, &tar[..], &opts).unwrap();
        loaded.sort_by_key(|l| l.names.len());
        assert_eq!(loaded.len(), 2);
        assert_eq!(loaded[0].id, there.config_digest);
        assert!(loaded[0].names.is_empty());
        assert_eq!(loaded[1].id, here.config_digest);
        assert_eq!(
            c.resolve("localhost/multi-arch:1").unwrap().id,
            here.config_digest
        );
    }

    #[test]
    fn podman_shaped_docker_archive_with_links_and_late_manifest_loads() {
        require!(Root);
        // What `podman save --format docker-archive` writes: layers as
        // `<diff id>.tar` at the top, legacy `<id>/layer.tar` symlinks,
        // `<id>/json` and `VERSION`; here manifest.json comes last and
        // names the symlinks, and the whole stream is gzip-compressed.
        let tars = [common::base_layer(), layer_tar("p", b"p")];
        let diffs: Vec<Digest> = tars.iter().map(|t| Digest::sha256_of(t)).collect();
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": diffs.iter().map(ToString::to_string).collect::<Vec<_>>()},
        }))
        .unwrap();
        let id = Digest::sha256_of(&config);
        let mut t = Tar::new();
        let mut layer_paths = Vec::new();
        for (i, (d, tar)) in diffs.iter().zip(&tars).enumerate() {
            let legacy = format!("{:064x}", i + 1);
            t.file(&format!("{}.tar", d.hex()), tar, 0o444);
            t.dir(&format!("{legacy}/"), 0o755);
            t.symlink(
                &format!("{legacy}/layer.tar"),
                &format!("../{}.tar", d.hex()),
            );
            t.file(&format!("{legacy}/VERSION"), b"1.0", 0o444);
            t.file(&format!("{legacy}/json"), b"{}", 0o444);
            layer_paths.push(format!("./{legacy}/layer.tar"));
        }
        t.file(&format!("{}.json", id.hex()), &config, 0o444);
        t.file(
            "repositories",
            br#"{"localhost/podman-shaped":{"1":"0000000000000000000000000000000000000000000000000000000000000002"}}"#,
            0o444,
        );
        let manifest = serde_json::to_vec(&serde_json::json!([{
            "Config": format!("{}.json", id.hex()),
            "RepoTags": ["localhost/podman-shaped:1", "short"],
            "Layers": layer_paths,
        }]))
        .unwrap();
        t.file("manifest.json", &manifest, 0o444);
        let tar = common::gzip(&t.finish());

        let (_a, a) = open_store();
        let loaded = load(&a, &tar).unwrap();
        assert_eq!(
            loaded,
            vec![LoadedImage {
                id: id.clone(),
                names: vec![
                    r("localhost/podman-shaped:1"),
                    r("docker.io/library/short:latest")
                ]
            }]
        );
        assert_eq!(a.resolve("short").unwrap().id, id);
        let image = a.resolve("localhost/podman-shaped:1").unwrap();
        let blobs: Vec<String> = image
            .layers
            .iter()
            .map(|l| l.digest().to_string())
            .collect();
        assert_eq!(
            blobs,
            diffs.iter().map(ToString::to_string).collect::<Vec<_>>()
        );
        // Saved again, it is a docker-archive Docker would write.
        let again = save(&a, &["short"], ArchiveFormat::DockerArchive);
        assert_eq!(
            json(&members(&again)["manifest.json"])[0]["RepoTags"],
            serde_json::json!(["short:latest"])
        );
    }

    #[test]
    fn docker_25_shaped_archive_loads_through_manifest_json() {
        require!(Root);
        // Docker 25 and later: an OCI layout (uncompressed layers) plus
        // manifest.json naming `blobs/sha256/...`; index.json's ref name is
        // only a tag, so manifest.json's RepoTags decide.
        let layer = layer_tar("d25", b"d25");
        let diff = Digest::sha256_of(&layer);
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [diff.to_string()]},
        }))
        .unwrap();
        let id = Digest::sha256_of(&config);
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media::OCI_MANIFEST,
            "config": {"mediaType": media::OCI_CONFIG, "digest": id.as_str(), "size": config.len()},
            "layers": [{"mediaType": media::OCI_LAYER_TAR, "digest": diff.as_str(), "size": layer.len()}],
        }))
        .unwrap();
        let desc = serde_json::json!({
            "mediaType": media::OCI_MANIFEST,
            "digest": Digest::sha256_of(&manifest).as_str(),
            "size": manifest.len(),
        });
        let mut t = Tar::new();
        t.dir("blobs/", 0o755).dir("blobs/sha256/", 0o755);
        for b in [&layer, &config, &manifest] {
            t.file(
                &format!("blobs/sha256/{}", Digest::sha256_of(b).hex()),
                b,
                0o644,
            );
        }
        let mut named = desc.clone();
        named["annotations"] = serde_json::json!({
            "io.containerd.image.name": "docker.io/library/d25:1",
            "org.opencontainers.image.ref.name": "1",
        });
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [named]});
        t.file("index.json", &serde_json::to_vec(&index).unwrap(), 0o644);
        t.file(
            "manifest.json",
            &serde_json::to_vec(&serde_json::json!([{
                "Config": format!("blobs/sha256/{}", id.hex()),
                "RepoTags": ["d25:1"],
                "Layers": [format!("blobs/sha256/{}", diff.hex())],
            }]))
            .unwrap(),
            0o644,
        );
        t.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#, 0o644);
        t.file("repositories", br#"{"d25":{"1":"x"}}"#, 0o644);
        let tar = t.finish();
        let (_a, a) = open_store();
        let loaded = load(&a, &tar).unwrap();
        assert_eq!(
            loaded,
            vec![LoadedImage {
                id: id.clone(),
                names: vec![r("d25:1")]
            }]
        );
        assert_eq!(diff_ids(&a, "d25:1"), vec![diff.to_string()]);
    }

    /// A store holding one image.
    fn store_with_an_image() -> (tempfile::TempDir, Store) {
        let (dir, store) = open_store();
        let (f, _) = two_layer_image("resident");
        common::pull(&store, &f, "localhost/resident:1").unwrap();
        (dir, store)
    }

    fn expect_refused(store: &Store, tar: &[u8]) -> ImageError {
        let before = state(store);
        let err = load(store, tar).expect_err("the archive must be refused");
        assert_eq!(state(store), before, "a refused load changed the store");
        assert_collectable(store);
        assert_eq!(state(store), before);
        err
    }

    #[test]
    fn member_names_that_leave_the_archive_are_refused() {
        require!(Root);
        let (_d, store) = store_with_an_image();
        let (f, _) = two_layer_image("hostile");
        let blobs = fixture_blobs(&f);
        for (name, reason) in [
            ("../x", "the path escapes the archive through '..'"),
            ("blobs/../../x", "the path escapes the archive through '..'"),
            ("/etc/x", "absolute name: the path leaves the archive"),
        ] {
            let mut t = Tar::new();
            for b in &blobs {
                t.file(
                    &format!("blobs/sha256/{}", Digest::sha256_of(b).hex()),
                    b,
                    0o644,
                );
            }
            t.file(name, b"evil", 0o644);
            let tar = t.finish();
            let err = expect_refused(&store, &tar);
            assert_eq!(err.to_string(), format!("archive entry {name:?}: {reason}"));
            assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        }
        // Links may not point out of the archive either.
        for (name, target) in [
            ("a/layer.tar", "../../etc/passwd"),
            ("layer.tar", "/etc/passwd"),
        ] {
            let tar = Tar::new().symlink(name, target).finish();
            let err = expect_refused(&store, &tar);
            assert!(
                err.to_string()
                    .starts_with(&format!("archive entry {name:?}: the link target")),
                "{err}"
            );
        }
        // Nothing was written where the names point.
        assert!(!Path::new("/etc/x").exists());
    }

    fn docker_archive(
        config: &serde_json::Value,
        layers: &[(&str, &[u8])],
        manifest: serde_json::Value,
    ) -> Vec<u8> {
        let config = serde_json::to_vec(config).unwrap();
        let mut t = Tar::new();
        for (path, data) in layers {
            t.file(path, data, 0o644);
        }
        t.file("config.json", &config, 0o644);
        t.file(
            "manifest.json",
            &serde_json::to_vec(&manifest).unwrap(),
            0o644,
        );
        t.finish()
    }

    #[test]
    fn manifest_json_paths_that_leave_the_archive_are_refused() {
        require!(Root);
        let (_d, store) = store_with_an_image();
        let layer = layer_tar("x", b"x");
        let config = serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [Digest::sha256_of(&layer).to_string()]},
        });
        for (config_path, layer_path, bad) in [
            ("../../etc/passwd", "l/layer.tar", "../../etc/passwd"),
            ("config.json", "/etc/passwd", "/etc/passwd"),
            (
                "config.json",
                "l/../../../etc/shadow",
                "l/../../../etc/shadow",
            ),
        ] {
            let tar = docker_archive(
                &config,
                &[("l/layer.tar", &layer)],
                serde_json::json!([{"Config": config_path, "RepoTags": ["localhost/evil:1"], "Layers": [layer_path]}]),
            );
            let err = expect_refused(&store, &tar);
            let msg = err.to_string();
            assert!(
                msg.starts_with(&format!("manifest.json names {bad:?}: ")),
                "{msg}"
            );
            assert!(
                msg.contains("leaves the archive") || msg.contains("escapes the archive"),
                "{msg}"
            );
        }
        // A path that is simply absent.
        let tar = docker_archive(
            &config,
            &[("l/layer.tar", &layer)],
            serde_json::json!([{"Config": "config.json", "RepoTags": null, "Layers": ["nope/layer.tar"]}]),
        );
        let err = expect_refused(&store, &tar);
        assert_eq!(
            err.to_string(),
            "manifest.json names \"nope/layer.tar\": no such file in the archive"
        );
    }

    #[test]
    fn layers_that_do_not_match_their_digests_are_refused() {
        require!(Root);
        let (_d, store) = store_with_an_image();
        // docker-archive: the layer is not what the config's diff id says.
        let layer = layer_tar("x", b"x");
        let other = layer_tar("x", b"not x");
        let config = serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [Digest::sha256_of(&layer).to_string()]},
        });
        let tar = docker_archive(
            &config,
            &[("l/layer.tar", &other)],
            serde_json::json!([{"Config": "config.json", "RepoTags": ["localhost/evil:1"], "Layers": ["l/layer.tar"]}]),
        );
        let err = expect_refused(&store, &tar);
        let msg = chain(&err);
        assert!(
            msg.starts_with("load archive entry \"l/layer.tar\": layer sha256:"),
            "{msg}"
        );
        assert!(msg.contains("does not match the config's diff id"), "{msg}");

        // oci-archive: a blob whose content is not its name's digest.
        let (f, _) = two_layer_image("tampered");
        let good_layer = &f.layers[1].0;
        let mut t = Tar::new();
        for (b, _, _, _) in &f.layers[..1] {
            t.file(
                &format!("blobs/sha256/{}", Digest::sha256_of(b).hex()),
                b,
                0o644,
            );
        }
        let tampered_name = format!("blobs/sha256/{}", Digest::sha256_of(good_layer).hex());
        let mut tampered = good_layer.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 0xff;
        t.file(&tampered_name, &tampered, 0o644);
        for b in [&f.config, &f.manifest] {
            t.file(
                &format!("blobs/sha256/{}", Digest::sha256_of(b).hex()),
                b,
                0o644,
            );
        }
        let index =
            serde_json::json!({"schemaVersion": 2, "manifests": [manifest_descriptor(&f, None)]});
        t.file("index.json", &serde_json::to_vec(&index).unwrap(), 0o644);
        t.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#, 0o644);
        let err = expect_refused(&store, &t.finish());
        assert_eq!(
            chain(&err),
            format!(
                "load archive entry {tampered_name:?}: blob content has digest {}, expected {}",
                Digest::sha256_of(&tampered),
                Digest::sha256_of(good_layer)
            )
        );
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);

        // oci-archive: an intact layer whose manifest lies about its size.
        let mut manifest = json(&f.manifest);
        manifest["layers"][0]["size"] = (f.layers[0].0.len() + 1).into();
        let manifest = serde_json::to_vec(&manifest).unwrap();
        let mut blobs = fixture_blobs(&f);
        blobs.pop();
        blobs.push(&manifest);
        let desc = serde_json::json!({
            "mediaType": media::OCI_MANIFEST,
            "digest": Digest::sha256_of(&manifest).as_str(),
            "size": manifest.len(),
        });
        let err = expect_refused(
            &store,
            &oci_archive(&blobs, &[(desc, Some("localhost/evil:2"))]),
        );
        assert!(chain(&err).contains("size"), "{}", chain(&err));
    }

    #[test]
    fn documents_over_their_limits_and_non_archives_are_refused() {
        require!(Root);
        let (_d, store) = store_with_an_image();
        let big = vec![b' '; (archive::MAX_MANIFEST_JSON + 1) as usize];
        let tar = Tar::new().file("manifest.json", &big, 0o644).finish();
        let err = expect_refused(&store, &tar);
        assert_eq!(
            err.to_string(),
            format!(
                "archive entry \"manifest.json\": {} bytes, more than the {} allowed",
                big.len(),
                archive::MAX_MANIFEST_JSON
            )
        );
        let tar = Tar::new().file("hello.txt", b"hello", 0o644).finish();
        let err = expect_refused(&store, &tar);
        assert_eq!(
            err.to_string(),
            "invalid image archive: it has neither manifest.json (docker-archive) nor index.json (oci-archive)"
        );
        let err = expect_refused(&store, b"this is not a tar at all, not even close to one");
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{}", chain(&err));
        // A GNU long name bigger than the header budget.
        let mut long = Tar::new();
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_entry_type(tar::EntryType::Regular);
        let name = "a/".repeat(3 << 20);
        long.builder().append_data(&mut h, &name, &[][..]).unwrap();
        let err = expect_refused(&store, &long.finish());
        assert!(
            chain(&err).contains("headers of a member exceed"),
            "{}",
            chain(&err)
        );
    }

    /// Podman on a private store: `--root`, `--runroot`, `--tmpdir` and the
    /// network config under `dir`, inside a mount namespace whose `/run` and
    /// `/var/lib/containers` are fresh tmpfs mounts, so nothing of the
    /// host's Podman state (blob-info cache, `/run/libpod`) is touched.
    /// The testkit's isolated podman, failing the test on error.
    struct Podman {
        inner: wharf_testkit::Podman,
    }

    impl Podman {
        fn new() -> Podman {
            Podman {
                inner: wharf_testkit::Podman::new(),
            }
        }

        fn path(&self, p: &str) -> PathBuf {
            self.inner.path(p)
        }

        fn run(&self, args: &[&str]) -> String {
            self.inner.run(args).unwrap()
        }

        /// `(id, repository:tag)` of every image.
        fn images(&self) -> Vec<(String, String)> {
            self.run(&[
                "images",
                "--no-trunc",
                "--format",
                "{{.ID}} {{.Repository}}:{{.Tag}}",
            ])
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
        }

        fn diff_ids(&self, name: &str) -> Vec<String> {
            let out = self.run(&[
                "image",
                "inspect",
                "--format",
                "{{json .RootFS.Layers}}",
                name,
            ]);
            serde_json::from_str(out.trim()).unwrap()
        }
    }

    /// The busybox rootfs of the testkit as an image in `store`, loaded from
    /// an oci-archive of the testkit's OCI layout (gzip layer).
    fn busybox_image(store: &Store, name: &str) -> Digest {
        let dir = tempfile::tempdir().unwrap();
        let layout_dir = dir.path().join("layout");
        let (_, image) =
            wharf_testkit::busybox_layout(&layout_dir, name, wharf_testkit::LayerCompression::Gzip)
                .unwrap();
        let mut b = tar::Builder::new(Vec::new());
        b.append_dir_all(".", &layout_dir).unwrap();
        let tar = b.into_inner().unwrap();
        let loaded = load(store, &tar).unwrap();
        assert_eq!(loaded[0].names, vec![r(name)]);
        assert_eq!(loaded[0].id.as_str(), image.config.digest);
        loaded[0].id.clone()
    }

    #[test]
    fn wharf_saved_archives_load_in_podman() {
        require!(Root, Busybox, Podman);
        let (dir, store) = open_store();
        let name = "localhost/wharf-saved:1";
        let id = busybox_image(&store, name);
        let ours = diff_ids(&store, name);
        for format in [ArchiveFormat::DockerArchive, ArchiveFormat::OciArchive] {
            let path = dir.path().join(format!("{format}.tar"));
            let mut file = fs_err::File::create(&path).unwrap();
            archive::save(&store, &[name], format, &mut file).unwrap();
            file.flush().unwrap();
            let podman = Podman::new();
            let out = podman.run(&["load", "-i", path.to_str().unwrap()]);
            assert!(out.contains(name), "{format}: {out}");
            assert_eq!(
                podman.images(),
                vec![(id.to_string(), name.to_string())],
                "{format}"
            );
            assert_eq!(podman.diff_ids(name), ours, "{format}");
        }
    }

    #[test]
    fn podman_saved_archives_load_in_wharf() {
        require!(Root, Busybox, Podman);
        let podman = Podman::new();
        let rootfs_tar = podman.path("rootfs.tar");
        {
            let mut b = tar::Builder::new(fs_err::File::create(&rootfs_tar).unwrap());
            b.follow_symlinks(false);
            b.append_dir_all(".", wharf_testkit::busybox_rootfs().unwrap())
                .unwrap();
            b.into_inner().unwrap().flush().unwrap();
        }
        let name = "localhost/podman-made:1";
        podman.run(&["import", rootfs_tar.to_str().unwrap(), name]);
        let images = podman.images();
        assert_eq!(images.len(), 1, "{images:?}");
        let podman_id = images[0].0.clone();
        let podman_diffs = podman.diff_ids(name);
        for format in ["docker-archive", "oci-archive"] {
            let path = podman.path(&format!("{format}.tar"));
            podman.run(&[
                "save",
                "--format",
                format,
                "-o",
                path.to_str().unwrap(),
                name,
            ]);
            let (_d, store) = open_store();
            let file = fs_err::File::open(&path).unwrap();
            let loaded = archive::load(&store, file, &LoadOptions::default()).unwrap();
            assert_eq!(
                loaded,
                vec![LoadedImage {
                    id: Digest::parse(&podman_id).unwrap(),
                    names: vec![r(name)]
                }],
                "{format}"
            );
            assert_eq!(diff_ids(&store, name), podman_diffs, "{format}");
            let image = store.resolve(name).unwrap();
            let layer = store.layer_path(&image.chain_ids[0]).unwrap();
            assert!(
                layer.join("bin/busybox").is_file(),
                "{format}: {}",
                layer.display()
            );
        }
    }
}
