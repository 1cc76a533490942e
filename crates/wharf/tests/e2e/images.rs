//! Image commands end to end against Debian's docker-registry on 127.0.0.1:
//! pull of skopeo-pushed images (busybox, umoci-built, multi-arch index),
//! inspect, tag, push read back by skopeo and podman, import, rmi, prune,
//! bad input that leaves the store as it was.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use wharf_testkit::{
    busybox_layout, require, LayerCompression, LayerContent, LocalRegistry, OciLayout,
    RegistryOptions, TestEnv, TestPlatform,
};

/// The `wharf` command line over a test's own store root.
struct Wharf(crate::Cli);

impl std::ops::Deref for Wharf {
    type Target = crate::Cli;
    fn deref(&self) -> &crate::Cli {
        &self.0
    }
}

impl Wharf {
    fn new(env: &TestEnv) -> Self {
        Self(crate::Cli {
            root: env.path().join("store"),
        })
    }

    fn run_stdin(&self, args: &[&str], input: &str) -> (i32, String, String) {
        use std::io::Write;
        let mut child = Command::new(env!("CARGO_BIN_EXE_wharf"))
            .arg("--root")
            .arg(&self.root)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn wharf");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn inspect(&self, image: &str) -> serde_json::Value {
        let v: serde_json::Value =
            serde_json::from_str(&self.ok(&["image", "inspect", image])).unwrap();
        v[0].clone()
    }
}

fn registry() -> LocalRegistry {
    LocalRegistry::start(RegistryOptions::plain()).expect("start docker-registry")
}

/// `skopeo inspect --config` of an image in the registry: its diff ids.
fn registry_diff_ids(registry: &LocalRegistry, name: &str) -> Vec<String> {
    let out = wharf_testkit::isolated("skopeo")
        .args(["inspect", "--config", "--tls-verify=false"])
        .arg(format!("docker://{}/{name}", registry.host()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    config["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_owned())
        .collect()
}

fn layers_of(inspect: &serde_json::Value) -> Vec<String> {
    inspect["RootFS"]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn pull_inspect_tag_push_and_read_back_with_skopeo() {
    require!(Root, Busybox, Overlay, Registry, Skopeo);
    let env = TestEnv::new();
    let registry = registry();
    let wharf = Wharf::new(&env);
    let (layout, image) =
        busybox_layout(&env.path().join("layout"), "v1", LayerCompression::Gzip).unwrap();
    registry
        .skopeo_copy_in(&layout.reference("v1"), "test/busybox:v1", false)
        .unwrap();
    let name = format!("{}/test/busybox:v1", registry.host());

    let id = wharf.ok(&["pull", "-q", "--tls-verify=false", &name]);
    assert_eq!(
        id.trim(),
        image.config.digest,
        "the image id is the config digest"
    );
    let inspect = wharf.inspect(&name);
    assert_eq!(inspect["Id"], image.config.digest);
    assert_eq!(layers_of(&inspect), image.diff_ids);
    assert_eq!(
        layers_of(&inspect),
        registry_diff_ids(&registry, "test/busybox:v1")
    );
    assert_eq!(inspect["RepoTags"][0], name);
    assert_eq!(inspect["Os"], "linux");

    // A second pull downloads nothing.
    let (_, _, err) = wharf.run(&["pull", "--tls-verify=false", &name]);
    assert!(err.contains("(0 of 1 layers downloaded)"), "{err}");

    let listed = wharf.ok(&["images", "--format", "json"]);
    let line: serde_json::Value = serde_json::from_str(listed.lines().next().unwrap()).unwrap();
    assert_eq!(
        line["Repository"],
        format!("{}/test/busybox", registry.host())
    );
    assert_eq!(line["Tag"], "v1");
    assert_eq!(line["ID"], &image.config.digest["sha256:".len()..][..12]);
    let table = wharf.ok(&["images"]);
    assert!(table.starts_with("REPOSITORY"), "{table}");

    let copy = format!("{}/test/copy:v2", registry.host());
    wharf.ok(&["tag", &name, &copy]);
    let digest = wharf.ok(&["push", "-q", "--tls-verify=false", &copy]);
    assert_eq!(
        digest.trim(),
        image.manifest.digest,
        "pushed as stored: same manifest"
    );
    let remote = registry.skopeo_inspect("test/copy:v2", false).unwrap();
    assert_eq!(remote["Digest"], image.manifest.digest);
    assert_eq!(registry_diff_ids(&registry, "test/copy:v2"), image.diff_ids);
    registry
        .skopeo_copy_out(
            "test/copy:v2",
            &format!("oci:{}:v2", env.path().join("out").display()),
        )
        .unwrap();

    let removed = wharf.ok(&["rmi", &copy]);
    assert_eq!(removed, format!("Untagged: {copy}\n"), "one of two names");
    let removed = wharf.ok(&["rmi", &name]);
    assert!(
        removed.contains(&format!("Deleted: {}", image.config.digest)),
        "{removed}"
    );
    assert_eq!(wharf.ok(&["images", "-q"]), "");
    assert!(wharf.ok(&["system", "check"]).contains("blobs checked"));
}

/// An image built by umoci (its own tar writer) and pushed by skopeo pulls
/// with the same diff ids.
#[test]
fn umoci_built_image_pulls_with_the_same_diff_ids() {
    require!(Root, Busybox, Overlay, Registry, Skopeo, Umoci);
    let env = TestEnv::new();
    let registry = registry();
    let wharf = Wharf::new(&env);
    let layout = env.path().join("umoci");
    let bundle = env.path().join("bundle");
    let image = format!("{}:t", layout.display());
    umoci(&["init", "--layout", path(&layout)]);
    umoci(&["new", "--image", &image]);
    umoci(&["unpack", "--rootless", "--image", &image, path(&bundle)]);
    let rootfs = wharf_testkit::busybox_rootfs().unwrap();
    let status = Command::new("cp")
        .args(["-a", &format!("{}/.", rootfs.display())])
        .arg(bundle.join("rootfs"))
        .status()
        .unwrap();
    assert!(status.success());
    fs_err::write(bundle.join("rootfs/etc/motd"), "built by umoci\n").unwrap();
    umoci(&["repack", "--image", &image, path(&bundle)]);
    registry
        .skopeo_copy_in(&format!("oci:{image}"), "umoci/busybox:t", false)
        .unwrap();
    let name = format!("{}/umoci/busybox:t", registry.host());
    wharf.ok(&["pull", "-q", "--tls-verify=false", &name]);
    assert_eq!(
        layers_of(&wharf.inspect(&name)),
        registry_diff_ids(&registry, "umoci/busybox:t")
    );
}

/// A multi-platform index: the host's platform by default, another with
/// `--platform`, and a clear error for a platform it lacks.
#[test]
fn multi_platform_index_selects_the_platform() {
    require!(Root, Busybox, Overlay, Registry, Skopeo);
    let env = TestEnv::new();
    let registry = registry();
    let wharf = Wharf::new(&env);
    let layout = OciLayout::create(&env.path().join("layout")).unwrap();
    let host = TestPlatform::host();
    let other = if host.architecture == "arm64" {
        TestPlatform::linux("amd64", None)
    } else {
        TestPlatform::linux("arm64", Some("v8"))
    };
    let mut images = Vec::new();
    for platform in [&host, &other] {
        let files = vec![(
            "etc/platform".to_owned(),
            format!("{}\n", platform.architecture).into_bytes(),
        )];
        images.push(
            layout
                .add_image(
                    &[LayerContent::Files(files)],
                    LayerCompression::Zstd,
                    platform,
                )
                .unwrap(),
        );
    }
    let index = layout.add_index(&images).unwrap();
    layout.tag("multi", &index).unwrap();
    registry
        .skopeo_copy_in(&layout.reference("multi"), "test/multi:1", true)
        .unwrap();
    let name = format!("{}/test/multi:1", registry.host());

    let id = wharf.ok(&["pull", "-q", "--tls-verify=false", &name]);
    assert_eq!(id.trim(), images[0].config.digest);
    let platform = format!(
        "linux/{}{}",
        other.architecture,
        other
            .variant
            .as_deref()
            .map(|v| format!("/{v}"))
            .unwrap_or_default()
    );
    let id = wharf.ok(&[
        "pull",
        "-q",
        "--tls-verify=false",
        "--platform",
        &platform,
        &name,
    ]);
    assert_eq!(id.trim(), images[1].config.digest);
    assert_eq!(wharf.inspect(&name)["Architecture"], other.architecture);

    let (code, _, err) = wharf.run(&[
        "pull",
        "--tls-verify=false",
        "--platform",
        "linux/s390x",
        &name,
    ]);
    assert_eq!(code, 125);
    assert!(err.contains("linux/s390x"), "{err}");
}

/// Failures name what went wrong and leave the store as it was.
#[test]
fn bad_pulls_fail_clearly_and_leave_the_store_unchanged() {
    require!(Root, Busybox, Overlay, Registry, Skopeo);
    let env = TestEnv::new();
    let registry = registry();
    let wharf = Wharf::new(&env);
    let (layout, _) =
        busybox_layout(&env.path().join("layout"), "v1", LayerCompression::Zstd).unwrap();
    registry
        .skopeo_copy_in(&layout.reference("v1"), "test/busybox:v1", false)
        .unwrap();
    wharf.ok(&[
        "pull",
        "-q",
        "--tls-verify=false",
        &format!("{}/test/busybox:v1", registry.host()),
    ]);
    // What `images` shows, without the relative "created … ago".
    let listing = || -> Vec<serde_json::Value> {
        wharf
            .ok(&["images", "--no-trunc", "--format", "json"])
            .lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                v.as_object_mut().unwrap().remove("CreatedSince");
                v
            })
            .collect()
    };
    let before = listing();

    let (code, _, err) = wharf.run(&[
        "pull",
        "--tls-verify=false",
        &format!("{}/test/busybox:nope", registry.host()),
    ]);
    assert_eq!(code, 125, "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with("wharf: error: "), "{err}");
    assert!(
        last.contains("nope") && last.contains("test/busybox") && last.contains("not found"),
        "names the reference: {err}"
    );
    // A single-platform image and an explicit --platform it does not match.
    let (code, _, err) = wharf.run(&[
        "pull",
        "--tls-verify=false",
        "--platform",
        "linux/s390x",
        &format!("{}/test/busybox:v1", registry.host()),
    ]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("linux/s390x"), "{err}");
    let (code, _, err) = wharf.run(&["pull", "Not A Reference"]);
    assert_eq!(code, 125);
    assert!(err.contains("invalid reference"), "{err}");
    let (code, _, err) = wharf.run(&["rmi", "sha256:0000"]);
    assert_eq!(code, 125);
    assert!(err.contains("sha256:0000"), "{err}");

    assert_eq!(listing(), before);
    let (code, out, _) = wharf.run(&["system", "check"]);
    assert_eq!(code, 0, "{out}");
}

/// `import` of a rootfs tar with changes, then push with zstd compression:
/// skopeo reads it back and podman pulls it.
#[test]
fn import_then_push_compressed_reads_back_in_skopeo_and_podman() {
    require!(Root, Busybox, Overlay, Registry, Skopeo, Podman);
    let env = TestEnv::new();
    let registry = registry();
    let wharf = Wharf::new(&env);
    let rootfs = wharf_testkit::busybox_rootfs().unwrap();
    let tar = env.path().join("rootfs.tar");
    let status = Command::new("tar")
        .arg("-C")
        .arg(rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    let name = format!("{}/test/imported:1", registry.host());
    let id = wharf.ok(&[
        "import",
        "-c",
        "CMD [\"/bin/sh\"]",
        "-c",
        "ENV HELLO=world",
        "-m",
        "from busybox",
        path(&tar),
        &name,
    ]);
    let inspect = wharf.inspect(&name);
    assert_eq!(inspect["Id"], id.trim());
    assert_eq!(inspect["Config"]["Cmd"], serde_json::json!(["/bin/sh"]));
    assert_eq!(inspect["Config"]["Env"], serde_json::json!(["HELLO=world"]));
    assert_eq!(inspect["Comment"], "from busybox");

    wharf.ok(&[
        "push",
        "-q",
        "--tls-verify=false",
        "--compression-format",
        "zstd",
        &name,
    ]);
    let raw = registry.skopeo_inspect("test/imported:1", true).unwrap();
    assert_eq!(
        raw["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    assert_eq!(
        registry_diff_ids(&registry, "test/imported:1"),
        layers_of(&inspect)
    );

    let podman = wharf_testkit::Podman::new();
    let pulled = podman
        .run(&["pull", "-q", "--tls-verify=false", &name])
        .unwrap();
    assert_eq!(pulled.trim(), &id.trim()["sha256:".len()..]);
}

/// A Debian minbase rootfs (debootstrap) as a three-layer image: `usr/`,
/// the rest, and a top layer deleting one file (OCI whiteout) and adding
/// another. It pulls with the registry's diff ids; the layers hold what
/// the rootfs holds, the whiteout as overlayfs' 0:0 character device.
#[test]
fn debian_minbase_three_layer_image() {
    require!(Root, Overlay, Registry, Skopeo, Debootstrap);
    let env = TestEnv::new();
    let registry = registry();
    let wharf = Wharf::new(&env);
    let debian = wharf_testkit::debian_minbase().unwrap();
    let layout = OciLayout::create(&env.path().join("layout")).unwrap();
    let image = layout
        .add_image(
            &[
                LayerContent::Dir(debian.usr_layer.clone()),
                LayerContent::Dir(debian.rest_layer.clone()),
                LayerContent::Files(vec![
                    ("etc/.wh.debian_version".into(), Vec::new()),
                    ("etc/wharf-release".into(), b"layered\n".to_vec()),
                ]),
            ],
            LayerCompression::Gzip,
            &TestPlatform::host(),
        )
        .unwrap();
    layout.tag("min", &image.manifest).unwrap();
    registry
        .skopeo_copy_in(&layout.reference("min"), "debian/minbase:1", false)
        .unwrap();
    let name = format!("{}/debian/minbase:1", registry.host());
    let id = wharf.ok(&["pull", "-q", "--tls-verify=false", &name]);
    assert_eq!(id.trim(), image.config.digest);
    let inspect = wharf.inspect(&name);
    assert_eq!(
        layers_of(&inspect),
        registry_diff_ids(&registry, "debian/minbase:1")
    );
    let upper = PathBuf::from(inspect["GraphDriver"]["Data"]["UpperDir"].as_str().unwrap());
    let lower: Vec<PathBuf> = inspect["GraphDriver"]["Data"]["LowerDir"]
        .as_str()
        .unwrap()
        .split(':')
        .map(PathBuf::from)
        .collect();
    // LowerDir lists the layers below the top one, nearest first.
    let (rest, usr) = (&lower[0], &lower[1]);
    assert!(usr.join("usr/bin/dpkg").is_file());
    assert!(!usr.join("etc").exists());
    assert_eq!(
        fs_err::read_to_string(rest.join("etc/debian_version")).unwrap(),
        fs_err::read_to_string(debian.rootfs.join("etc/debian_version")).unwrap()
    );
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let whiteout = fs_err::symlink_metadata(upper.join("etc/debian_version")).unwrap();
    assert!(whiteout.file_type().is_char_device() && whiteout.rdev() == 0);
    assert_eq!(
        fs_err::read_to_string(upper.join("etc/wharf-release")).unwrap(),
        "layered\n"
    );
    let (code, out, _) = wharf.run(&["system", "check"]);
    assert_eq!(code, 0, "{out}");
}

/// `history`, `system df`, `images` filters and `image prune`: dangling
/// images go with a plain prune, named ones only with `-a`; the store is
/// empty and checks clean afterwards.
#[test]
fn history_df_filters_and_prune() {
    require!(Root, Busybox, Overlay, Registry, Skopeo);
    let env = TestEnv::new();
    let registry = registry();
    let wharf = Wharf::new(&env);
    let (layout, _) =
        busybox_layout(&env.path().join("layout"), "v1", LayerCompression::Gzip).unwrap();
    registry
        .skopeo_copy_in(&layout.reference("v1"), "test/busybox:v1", false)
        .unwrap();
    let name = format!("{}/test/busybox:v1", registry.host());
    wharf.ok(&["pull", "-q", "--tls-verify=false", &name]);
    let rootfs = wharf_testkit::busybox_rootfs().unwrap();
    let tar = env.path().join("rootfs.tar");
    assert!(Command::new("tar")
        .arg("-C")
        .arg(rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap()
        .success());
    let dangling = wharf.ok(&["import", "-m", "no name", path(&tar)]);

    let history = wharf.ok(&["history", &name]);
    assert!(history.starts_with("IMAGE"), "{history}");
    assert!(history.lines().count() >= 2, "{history}");
    let df = wharf.ok(&["system", "df"]);
    assert!(df.lines().nth(1).unwrap().starts_with("Images"), "{df}");
    let json: serde_json::Value =
        serde_json::from_str(&wharf.ok(&["system", "df", "--format", "json"])).unwrap();
    assert_eq!(json["TotalCount"], 2);

    let only_dangling = wharf.ok(&["images", "-q", "--no-trunc", "--filter", "dangling=true"]);
    assert_eq!(only_dangling.trim(), dangling.trim());
    let by_ref = wharf.ok(&[
        "images",
        "--format",
        "json",
        "--filter",
        "reference=*busybox*",
    ]);
    assert_eq!(by_ref.lines().count(), 1, "{by_ref}");
    let (code, _, err) = wharf.run(&["images", "--filter", "colour=red"]);
    assert_eq!(code, 125);
    assert!(err.contains("unknown key \"colour\""), "{err}");

    let out = wharf.ok(&["image", "prune", "-f"]);
    assert!(
        out.contains(&format!("deleted: {}", dangling.trim())),
        "{out}"
    );
    assert_eq!(wharf.ok(&["images", "-q"]).lines().count(), 1);
    wharf.ok(&["image", "prune", "-a", "-f"]);
    assert_eq!(wharf.ok(&["images", "-q"]), "");
    let (code, out, _) = wharf.run(&["system", "check"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        !out.contains("unreferenced"),
        "prune collected everything: {out}"
    );
}

/// `login` against htpasswd Basic auth stores the credentials in the auth
/// file (0600); pulls use them and fail clearly without; `logout` removes
/// them.
#[test]
fn login_pull_logout_with_basic_auth() {
    require!(Root, Busybox, Overlay, Registry, Skopeo);
    let env = TestEnv::new();
    let registry =
        LocalRegistry::start(RegistryOptions::plain().basic_auth("alice", "s3cret")).unwrap();
    let wharf = Wharf::new(&env);
    let (layout, image) =
        busybox_layout(&env.path().join("layout"), "v1", LayerCompression::Gzip).unwrap();
    registry
        .skopeo_copy_in(&layout.reference("v1"), "private/busybox:v1", false)
        .unwrap();
    let name = format!("{}/private/busybox:v1", registry.host());
    let auth = env.path().join("auth.json");
    let authfile = path(&auth);
    let host = registry.host();

    let (code, _, err) = wharf.run(&["pull", "--tls-verify=false", "--authfile", authfile, &name]);
    assert_eq!(code, 125, "{err}");
    assert!(err.contains(&host), "names the registry: {err}");

    let login = [
        "login",
        "-u",
        "alice",
        "--password-stdin",
        "--tls-verify=false",
        "--authfile",
        authfile,
        host.as_str(),
    ];
    let (code, _, err) = wharf.run_stdin(&login, "wrong\n");
    assert_eq!(code, 125, "{err}");
    assert!(!auth.exists(), "a refused login stores nothing");
    let (code, out, err) = wharf.run_stdin(&login, "s3cret\n");
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "Login Succeeded!\n");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs_err::metadata(&auth).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let stored: serde_json::Value =
        serde_json::from_str(&fs_err::read_to_string(&auth).unwrap()).unwrap();
    assert!(stored["auths"][&host]["auth"].is_string(), "{stored}");

    let id = wharf.ok(&[
        "pull",
        "-q",
        "--tls-verify=false",
        "--authfile",
        authfile,
        &name,
    ]);
    assert_eq!(id.trim(), image.config.digest);
    wharf.ok(&["logout", "--authfile", authfile, &host]);
    let (code, _, err) = wharf.run(&["pull", "--tls-verify=false", "--authfile", authfile, &name]);
    assert_eq!(code, 125, "credentials are gone: {err}");
}

/// A TLS registry with its own CA: refused without the CA, pulled with
/// `--cert-dir`.
#[test]
fn tls_registry_needs_its_ca() {
    require!(Root, Busybox, Overlay, Registry, Skopeo);
    let env = TestEnv::new();
    let registry = LocalRegistry::start(RegistryOptions::plain().tls()).unwrap();
    let wharf = Wharf::new(&env);
    let (layout, image) =
        busybox_layout(&env.path().join("layout"), "v1", LayerCompression::Zstd).unwrap();
    registry
        .skopeo_copy_in(&layout.reference("v1"), "tls/busybox:v1", false)
        .unwrap();
    let name = format!("{}/tls/busybox:v1", registry.host());
    let (code, _, err) = wharf.run(&["pull", &name]);
    assert_eq!(code, 125, "an unknown CA is refused: {err}");
    assert!(err.contains("invalid peer certificate"), "{err}");
    let certs = registry.certs_d();
    let id = wharf.ok(&["pull", "-q", "--cert-dir", path(&certs), &name]);
    assert_eq!(id.trim(), image.config.digest);
}

/// `save` then `load` through the command line, both formats: the same
/// image id and names come back.
#[test]
fn save_and_load_round_trip() {
    require!(Root, Busybox, Overlay, Registry, Skopeo);
    let env = TestEnv::new();
    let registry = registry();
    let wharf = Wharf::new(&env);
    let (layout, image) =
        busybox_layout(&env.path().join("layout"), "v1", LayerCompression::Gzip).unwrap();
    registry
        .skopeo_copy_in(&layout.reference("v1"), "test/busybox:v1", false)
        .unwrap();
    let name = format!("{}/test/busybox:v1", registry.host());
    wharf.ok(&["pull", "-q", "--tls-verify=false", &name]);
    wharf.ok(&["tag", &name, "local/second:2"]);
    for format in ["docker-archive", "oci-archive"] {
        let archive = env.path().join(format!("{format}.tar"));
        wharf.ok(&[
            "save",
            "--format",
            format,
            "-o",
            path(&archive),
            &name,
            "local/second:2",
        ]);
        wharf.ok(&["rmi", "-f", &name, "local/second:2"]);
        assert_eq!(wharf.ok(&["images", "-q"]), "");
        let out = wharf.ok(&["load", "-i", path(&archive)]);
        assert!(out.contains("Loaded image: "), "{out}");
        assert_eq!(wharf.inspect(&name)["Id"], image.config.digest);
        assert_eq!(wharf.inspect("local/second:2")["Id"], image.config.digest);
    }
    let (code, _, err) = wharf.run(&["save", "-o", path(&env.path().join("x.tar")), "nope:1"]);
    assert_eq!(code, 125);
    assert!(err.contains("nope"), "{err}");
    assert!(
        !env.path().join("x.tar").exists(),
        "a failed save leaves no file"
    );
}

/// The kill points of a crash test: 12 points spread over the time an
/// uninterrupted run of `args` takes (measured first, then undone by
/// `reset`), from the first request to the final metadata write.
fn kill_points(wharf: &Wharf, args: &[&str], reset: impl Fn()) -> Vec<u64> {
    let start = std::time::Instant::now();
    wharf.ok(args);
    let full = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    reset();
    (0..12).map(|k| full * k / 12).collect()
}

/// Runs `wharf ARGS` and SIGKILLs it after `ms`; true if it finished first.
fn run_killed(wharf: &Wharf, args: &[&str], ms: u64) -> bool {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wharf"))
        .arg("--root")
        .arg(&wharf.root)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(ms));
    if let Some(status) = child.try_wait().unwrap() {
        assert!(
            status.success(),
            "wharf {args:?} failed without being killed"
        );
        return true;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    false
}

/// An image of four 3 MB layers of random bytes (plus busybox), slow enough
/// to be killed in the middle of its transfer.
fn seed_random_image(env: &TestEnv, registry: &LocalRegistry, name: &str) {
    let layout = OciLayout::create(&env.path().join("random-layout")).unwrap();
    let mut layers = vec![LayerContent::Dir(
        wharf_testkit::busybox_rootfs().unwrap().to_owned(),
    )];
    for i in 0..4 {
        let mut bytes = vec![0u8; 3 << 20];
        std::io::Read::read_exact(&mut fs_err::File::open("/dev/urandom").unwrap(), &mut bytes)
            .unwrap();
        layers.push(LayerContent::Files(vec![(format!("data/{i}"), bytes)]));
    }
    let image = layout
        .add_image(&layers, LayerCompression::Gzip, &TestPlatform::host())
        .unwrap();
    layout.tag("r", &image.manifest).unwrap();
    registry
        .skopeo_copy_in(&layout.reference("r"), name, false)
        .unwrap();
}

/// A pull and a push SIGKILLed at many points: after each kill the store
/// checks clean (no corrupt blob, no missing layer of a recorded image),
/// the registry holds either nothing or the whole image, and the next
/// pull or push completes.
#[test]
fn killed_pulls_and_pushes_leave_the_store_consistent() {
    require!(Root, Busybox, Overlay, Registry, Skopeo);
    let env = TestEnv::new();
    let registry = registry();
    let wharf = Wharf::new(&env);
    seed_random_image(&env, &registry, "test/random:1");
    let name = format!("{}/test/random:1", registry.host());
    let pull = ["pull", "-q", "--tls-verify=false", name.as_str()];

    let reset = || {
        wharf.ok(&["rmi", &name]);
        wharf.ok(&["system", "check", "--repair"]);
        assert_eq!(wharf.ok(&["images", "-q"]), "");
    };
    let mut kills = 0;
    for ms in kill_points(&wharf, &pull, reset) {
        let finished = run_killed(&wharf, &pull, ms);
        let (code, out, err) = wharf.run(&["system", "check"]);
        assert_eq!(code, 0, "after a kill at {ms} ms: {out} {err}");
        if finished {
            break;
        }
        kills += 1;
        // The next pull completes (resuming what the killed one left), then
        // everything goes so the next kill point downloads again.
        wharf.ok(&pull);
        wharf.ok(&["rmi", &name]);
        wharf.ok(&["system", "check", "--repair"]);
        assert_eq!(wharf.ok(&["images", "-q"]), "");
    }
    assert!(
        kills >= 5,
        "only {kills} pulls were killed before one finished"
    );
    wharf.ok(&pull);
    let id = wharf.inspect(&name)["Id"].clone();

    let first = format!("{}/test/pushed-first:1", registry.host());
    wharf.ok(&["tag", &name, &first]);
    let points = kill_points(&wharf, &["push", "-q", "--tls-verify=false", &first], || {});
    let mut kills = 0;
    for (i, ms) in points.into_iter().enumerate() {
        let dest = format!("{}/test/pushed-{i}:1", registry.host());
        wharf.ok(&["tag", &name, &dest]);
        let finished = run_killed(&wharf, &["push", "-q", "--tls-verify=false", &dest], ms);
        let (code, out, err) = wharf.run(&["system", "check"]);
        assert_eq!(code, 0, "after a push killed at {ms} ms: {out} {err}");
        // Nothing or everything: the manifest goes last.
        let remote = registry.skopeo_inspect(&format!("test/pushed-{i}:1"), false);
        if let Ok(remote) = &remote {
            assert_eq!(
                registry_diff_ids(&registry, &format!("test/pushed-{i}:1")).len(),
                5
            );
            assert!(remote["Digest"].is_string());
        }
        if finished {
            assert!(remote.is_ok());
            break;
        }
        kills += 1;
        wharf.ok(&["push", "-q", "--tls-verify=false", &dest]);
        assert_eq!(
            registry_diff_ids(&registry, &format!("test/pushed-{i}:1")).len(),
            5
        );
    }
    assert!(
        kills >= 3,
        "only {kills} pushes were killed before one finished"
    );
    assert_eq!(wharf.inspect(&name)["Id"], id);
}

fn umoci(args: &[&str]) {
    let out = Command::new("umoci").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "umoci {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}
