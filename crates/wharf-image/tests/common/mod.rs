//! Helpers shared by the component tests: tar building (including names the
//! `tar` crate refuses to write), tree snapshots, image fixtures.

#![allow(dead_code, reason = "each test binary uses a subset")]

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use wharf_image::{Compression, Digest};

/// A tar under construction.
pub struct Tar {
    b: tar::Builder<Vec<u8>>,
}

impl Default for Tar {
    fn default() -> Self {
        Self::new()
    }
}

impl Tar {
    pub fn new() -> Tar {
        let mut b = tar::Builder::new(Vec::new());
        b.mode(tar::HeaderMode::Complete);
        Tar { b }
    }

    /// An entry with a raw name (and link name) written straight into the
    /// header, bypassing the crate's checks (hostile names).
    pub fn raw(
        &mut self,
        name: &[u8],
        kind: tar::EntryType,
        link: Option<&[u8]>,
        data: &[u8],
        mode: u32,
    ) -> &mut Tar {
        let mut h = tar::Header::new_gnu();
        {
            let old = h.as_old_mut();
            old.name[..name.len()].copy_from_slice(name);
            if let Some(l) = link {
                old.linkname[..l.len()].copy_from_slice(l);
            }
        }
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_mtime(1_600_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h.set_cksum();
        self.b.append(&h, data).unwrap();
        self
    }

    pub fn file(&mut self, name: &str, data: &[u8], mode: u32) -> &mut Tar {
        self.raw(name.as_bytes(), tar::EntryType::Regular, None, data, mode)
    }

    pub fn dir(&mut self, name: &str, mode: u32) -> &mut Tar {
        self.raw(name.as_bytes(), tar::EntryType::Directory, None, b"", mode)
    }

    pub fn symlink(&mut self, name: &str, target: &str) -> &mut Tar {
        self.raw(
            name.as_bytes(),
            tar::EntryType::Symlink,
            Some(target.as_bytes()),
            b"",
            0o777,
        )
    }

    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut Tar {
        self.raw(
            name.as_bytes(),
            tar::EntryType::Link,
            Some(target.as_bytes()),
            b"",
            0o644,
        )
    }

    /// A full-featured entry through the crate's API (long names, PAX).
    pub fn builder(&mut self) -> &mut tar::Builder<Vec<u8>> {
        &mut self.b
    }

    pub fn finish(&mut self) -> Vec<u8> {
        let b = std::mem::replace(&mut self.b, tar::Builder::new(Vec::new()));
        b.into_inner().unwrap()
    }
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).unwrap()
}

pub fn compress(data: &[u8], c: Compression) -> Vec<u8> {
    match c {
        Compression::None => data.to_vec(),
        Compression::Gzip => gzip(data),
        Compression::Zstd => zstd(data),
    }
}

/// Everything about a tree: path → (kind, mode, size, content or target).
pub fn snapshot_tree(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
    let mut entries: Vec<_> = fs_err::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        let m = fs_err::symlink_metadata(&p).unwrap();
        let rel = p.strip_prefix(root).unwrap().to_path_buf();
        let ft = m.file_type();
        let desc = if ft.is_dir() {
            walk(root, &p, out);
            format!("dir {:o}", m.mode() & 0o7777)
        } else if ft.is_symlink() {
            format!("symlink -> {}", fs_err::read_link(&p).unwrap().display())
        } else if ft.is_file() {
            let data = fs_err::read(&p).unwrap();
            format!(
                "file {:o} {}:{} {}",
                m.mode() & 0o7777,
                m.uid(),
                m.gid(),
                Digest::sha256_of(&data).short()
            )
        } else if ft.is_char_device() {
            format!(
                "char {}:{}",
                rustix::fs::major(m.rdev()),
                rustix::fs::minor(m.rdev())
            )
        } else if ft.is_block_device() {
            "block".to_string()
        } else if ft.is_fifo() {
            format!("fifo {:o}", m.mode() & 0o7777)
        } else {
            "other".to_string()
        };
        out.insert(rel, desc);
    }
}

/// A layer dir with a sentinel directory next to it.
pub struct Arena {
    pub dir: tempfile::TempDir,
}

impl Arena {
    pub fn new() -> Arena {
        let dir = tempfile::tempdir().unwrap();
        fs_err::create_dir(dir.path().join("layer")).unwrap();
        let s = dir.path().join("sentinel");
        fs_err::create_dir_all(s.join("sub")).unwrap();
        fs_err::write(s.join("hello.txt"), b"untouched\n").unwrap();
        fs_err::write(s.join("sub/nested.txt"), b"nested\n").unwrap();
        Arena { dir }
    }

    pub fn layer(&self) -> PathBuf {
        self.dir.path().join("layer")
    }

    pub fn sentinel(&self) -> PathBuf {
        self.dir.path().join("sentinel")
    }

    /// Everything outside the layer dir.
    pub fn outside(&self) -> BTreeMap<PathBuf, String> {
        let mut all = snapshot_tree(self.dir.path());
        all.retain(|p, _| !p.starts_with("layer"));
        all.insert(PathBuf::from("layer"), "dir".into());
        all
    }
}

/// An image as a registry would serve it.
pub struct Fixture {
    pub manifest: Vec<u8>,
    pub manifest_digest: Digest,
    pub config: Vec<u8>,
    pub config_digest: Digest,
    /// (blob, media type, diff id, chain id)
    pub layers: Vec<(Vec<u8>, &'static str, Digest, Digest)>,
}

/// Builds manifest, config and compressed layers from layer tars.
pub fn image(layers: &[(Vec<u8>, Compression)], created_by: &str) -> Fixture {
    let diff_ids: Vec<Digest> = layers.iter().map(|(t, _)| Digest::sha256_of(t)).collect();
    let chains = wharf_image::chain_ids(&diff_ids);
    let blobs: Vec<(Vec<u8>, &'static str, Digest, Digest)> = layers
        .iter()
        .zip(diff_ids.iter().zip(chains))
        .map(|((t, c), (d, ch))| {
            (
                compress(t, *c),
                wharf_image::media::oci_layer_media_type(*c),
                d.clone(),
                ch,
            )
        })
        .collect();
    let history: Vec<serde_json::Value> = layers
        .iter()
        .enumerate()
        .map(|(i, _)| serde_json::json!({"created": "2024-01-01T00:00:00Z", "created_by": format!("{created_by} {i}")}))
        .chain([serde_json::json!({"created_by": "CMD [\"sh\"]", "empty_layer": true})])
        .collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids.iter().map(|d| d.to_string()).collect::<Vec<_>>()},
        "history": history,
    }))
    .unwrap();
    let config_digest = Digest::sha256_of(&config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": wharf_image::media::OCI_MANIFEST,
        "config": {"mediaType": wharf_image::media::OCI_CONFIG, "digest": config_digest.to_string(), "size": config.len()},
        "layers": blobs.iter().map(|(b, mt, _, _)| serde_json::json!({
            "mediaType": mt, "digest": Digest::sha256_of(b).to_string(), "size": b.len()
        })).collect::<Vec<_>>(),
    }))
    .unwrap();
    Fixture {
        manifest_digest: Digest::sha256_of(&manifest),
        manifest,
        config,
        config_digest,
        layers: blobs,
    }
}

pub fn descriptor(media_type: &str, bytes: &[u8]) -> wharf_image::Descriptor {
    serde_json::from_value(serde_json::json!({
        "mediaType": media_type,
        "digest": Digest::sha256_of(bytes).to_string(),
        "size": bytes.len(),
    }))
    .unwrap()
}

/// Writes one blob through the `Ingest` trait in small chunks; returns
/// whether it was downloaded (false: present).
pub fn ingest(
    store: &dyn wharf_image::Ingest,
    media_type: &str,
    bytes: &[u8],
    target: &wharf_image::BlobTarget,
) -> Result<bool, wharf_image::ImageError> {
    match store.begin(&descriptor(media_type, bytes), target)? {
        wharf_image::Begin::Present => Ok(false),
        wharf_image::Begin::Write(mut w) => {
            let offset = w.offset() as usize;
            for chunk in bytes[offset..].chunks(4096) {
                w.write_all(chunk)
                    .map_err(|e| wharf_image::ImageError::InvalidArgument {
                        reason: e.to_string(),
                    })?;
            }
            w.commit()?;
            Ok(true)
        }
    }
}

/// A pull as the registry client does it, then the image is recorded.
pub fn pull(
    store: &wharf_image::Store,
    f: &Fixture,
    name: &str,
) -> Result<Digest, wharf_image::ImageError> {
    use wharf_image::BlobTarget;
    let _lease = store.lease()?;
    ingest(
        store,
        wharf_image::media::OCI_MANIFEST,
        &f.manifest,
        &BlobTarget::Manifest,
    )?;
    ingest(
        store,
        wharf_image::media::OCI_CONFIG,
        &f.config,
        &BlobTarget::Config,
    )?;
    for (blob, mt, diff_id, chain_id) in &f.layers {
        ingest(
            store,
            mt,
            blob,
            &BlobTarget::Layer {
                diff_id: diff_id.clone(),
                chain_id: chain_id.clone(),
            },
        )?;
    }
    store.record_image(&wharf_image::ImageRef::parse(name)?, &f.manifest_digest)
}

/// A base layer, and the two-layer stack used by the rootfs tests.
pub fn base_layer() -> Vec<u8> {
    Tar::new()
        .dir("bin/", 0o755)
        .file("bin/x", b"x", 0o755)
        .dir("etc/", 0o755)
        .file("etc/motd", b"hello", 0o644)
        .file("etc/keep", b"keep", 0o644)
        .dir("var/", 0o755)
        .dir("var/cache/", 0o755)
        .file("var/cache/old", b"old", 0o644)
        .finish()
}

pub fn top_layer() -> Vec<u8> {
    Tar::new()
        .dir("bin/", 0o755)
        .file("bin/y", b"y", 0o755)
        .dir("etc/", 0o755)
        .file("etc/.wh.motd", b"", 0o644)
        .dir("var/cache/", 0o755)
        .file("var/cache/.wh..wh..opq", b"", 0o644)
        .file("var/cache/new", b"new", 0o644)
        .finish()
}
