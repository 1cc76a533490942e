//! The hostile-layer corpus (SECURITY-CASES §1.4, §1.5): nothing is ever
//! written outside the layer directory, and a refused layer names its entry.

// The workspace lints want tests inside a `#[cfg(test)]` module, even here.
#[cfg(test)]
mod common;

#[cfg(test)]
mod tests {

    use super::common::{self, Arena, Tar};
    use wharf_image::unpack::{unpack_layer, DeviceNodes, UnpackOptions};
    use wharf_image::{Compression, Digest, ImageError};
    use wharf_testkit::{require, Sentinel};

    fn opts() -> UnpackOptions {
        UnpackOptions {
            devices: DeviceNodes::Refuse,
            ..UnpackOptions::default()
        }
    }

    fn unpack(arena: &Arena, tar: &[u8], o: &UnpackOptions) -> Result<(), ImageError> {
        unpack_layer(
            tar,
            Compression::None,
            &arena.layer(),
            &Digest::sha256_of(tar),
            o,
        )
        .map(|_| ())
    }

    /// Unpacks `tar`, expects a refusal naming `entry`, and checks that the
    /// sentinel next to the layer (and the host sentinel) did not change.
    fn expect_refused(tar: &[u8], entry: &str, host: Option<&Sentinel>) -> String {
        let arena = Arena::new();
        let before = arena.outside();
        let err = unpack(&arena, tar, &opts()).expect_err("the layer must be refused");
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("layer entry {entry:?}")),
            "error does not name {entry:?}: {msg}"
        );
        assert_eq!(
            arena.outside(),
            before,
            "something was written outside the layer"
        );
        if let Some(s) = host {
            s.assert_unchanged();
        }
        msg
    }

    #[test]
    fn dotdot_escape_is_refused() {
        require!(Root);
        let tar = Tar::new()
            .file("ok", b"x", 0o644)
            .file("../sentinel/pwned", b"x", 0o644)
            .finish();
        let msg = expect_refused(&tar, "../sentinel/pwned", None);
        assert!(
            msg.ends_with("name escapes the layer directory through '..'"),
            "{msg}"
        );
        let tar = Tar::new()
            .file("a/../../sentinel/hello.txt", b"evil", 0o644)
            .finish();
        expect_refused(&tar, "a/../../sentinel/hello.txt", None);
    }

    #[test]
    fn absolute_names_stay_inside() {
        require!(Root);
        let host = Sentinel::new("abs-name");
        let target = format!("{}/pwned", host.path().display());
        let arena = Arena::new();
        let before = arena.outside();
        let tar = Tar::new().file(&target, b"contained", 0o644).finish();
        unpack(&arena, &tar, &opts()).unwrap();
        assert!(arena.layer().join(target.trim_start_matches('/')).is_file());
        host.assert_unchanged();
        assert_eq!(arena.outside(), before);
    }

    #[test]
    fn symlink_then_write_through_it_is_refused() {
        require!(Root);
        let host = Sentinel::new("write-through");
        let abs = host.path().display().to_string();
        let tar = Tar::new()
            .symlink("link", "../sentinel")
            .file("link/pwned", b"x", 0o644)
            .finish();
        expect_refused(&tar, "link/pwned", Some(&host));
        let tar = Tar::new()
            .symlink("abs", &abs)
            .file("abs/hello.txt", b"evil", 0o644)
            .finish();
        let msg = expect_refused(&tar, "abs/hello.txt", Some(&host));
        assert!(
            msg.ends_with("parent directory abs is a symlink in this layer"),
            "{msg}"
        );
        // The CVE-2021-38511 shape: symlink to .., then a deep path through it.
        let tar = Tar::new()
            .symlink("up", "..")
            .file("up/sentinel/x/y", b"x", 0o644)
            .finish();
        expect_refused(&tar, "up/sentinel/x/y", Some(&host));
    }

    #[test]
    fn symlinked_parent_directory_is_refused() {
        require!(Root);
        let host = Sentinel::new("symlinked-parent");
        let tar = Tar::new()
            .dir("etc/", 0o755)
            .symlink("etc/conf", &host.path().display().to_string())
            .dir("etc/conf/sub/", 0o777)
            .finish();
        expect_refused(&tar, "etc/conf/sub/", Some(&host));
    }

    #[test]
    fn directory_entry_replaces_a_symlink_instead_of_chmodding_its_target() {
        require!(Root);
        // CVE-2026-33056 / CVE-2021-32760: symlink, then a directory of the same
        // name with another mode.
        let host = Sentinel::new("dir-over-symlink");
        let arena = Arena::new();
        let before = arena.outside();
        let tar = Tar::new()
            .symlink("d", "../sentinel")
            .dir("d/", 0o777)
            .symlink("h", &host.path().display().to_string())
            .dir("h", 0o700)
            .finish();
        unpack(&arena, &tar, &opts()).unwrap();
        let d = fs_err::symlink_metadata(arena.layer().join("d")).unwrap();
        assert!(d.is_dir());
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&d.permissions()) & 0o7777,
            0o777
        );
        assert!(fs_err::symlink_metadata(arena.layer().join("h"))
            .unwrap()
            .is_dir());
        assert_eq!(arena.outside(), before);
        host.assert_unchanged();
    }

    #[test]
    fn hardlink_to_outside_is_refused() {
        require!(Root);
        let tar = Tar::new().hardlink("h", "../sentinel/hello.txt").finish();
        let msg = expect_refused(&tar, "h", None);
        assert!(
            msg.contains("hardlink target: name escapes the layer directory"),
            "{msg}"
        );
        // An absolute target is read inside the layer, where it does not exist.
        let tar = Tar::new().hardlink("h", "/etc/passwd").finish();
        let msg = expect_refused(&tar, "h", None);
        assert!(msg.contains("resolve hardlink target"), "{msg}");
    }

    #[test]
    fn hardlink_to_a_symlink_pointing_outside_stays_a_symlink() {
        require!(Root);
        let host = Sentinel::new("hardlink-symlink");
        let target = format!("{}/hello.txt", host.path().display());
        let arena = Arena::new();
        let before = arena.outside();
        // A hardlink to the symlink, then content written to the hardlink's
        // name: the name is replaced, never written through.
        let tar = Tar::new()
            .symlink("s", &target)
            .hardlink("h", "s")
            .file("h", b"evil", 0o644)
            .hardlink("h2", "s")
            .finish();
        unpack(&arena, &tar, &opts()).unwrap();
        let h2 = fs_err::symlink_metadata(arena.layer().join("h2")).unwrap();
        assert!(h2.file_type().is_symlink());
        assert_eq!(fs_err::read(arena.layer().join("h")).unwrap(), b"evil");
        host.assert_unchanged();
        assert_eq!(arena.outside(), before);
        // Writing through a hardlinked symlink is writing through a symlink.
        let tar = Tar::new()
            .symlink("s", "../sentinel")
            .hardlink("h", "s")
            .file("h/pwned", b"x", 0o644)
            .finish();
        expect_refused(&tar, "h/pwned", Some(&host));
    }

    #[test]
    fn whiteout_of_dotdot_is_refused() {
        require!(Root);
        let tar = Tar::new()
            .dir("a/", 0o755)
            .file("a/.wh...", b"", 0o644)
            .finish();
        let msg = expect_refused(&tar, "a/.wh...", None);
        assert!(
            msg.ends_with("whiteout of '.', '..' or an empty name"),
            "{msg}"
        );
        let tar = Tar::new().file(".wh..", b"", 0o644).finish();
        expect_refused(&tar, ".wh..", None);
    }

    #[test]
    fn device_nodes_follow_the_policy() {
        require!(Root);
        let mut t = Tar::new();
        {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Char);
            h.set_device_major(1).unwrap();
            h.set_device_minor(3).unwrap();
            h.set_uid(0);
            h.set_gid(0);
            h.set_mode(0o666);
            h.set_size(0);
            t.builder()
                .append_data(&mut h, "dev/null", std::io::empty())
                .unwrap();
        }
        let tar = t.finish();
        let msg = expect_refused(&tar, "dev/null", None);
        assert!(msg.ends_with("device nodes are not allowed here"), "{msg}");
        let arena = Arena::new();
        let skip = UnpackOptions {
            devices: DeviceNodes::Skip,
            ..UnpackOptions::default()
        };
        unpack(&arena, &tar, &skip).unwrap();
        assert!(!arena.layer().join("dev/null").exists());
    }

    #[test]
    fn hundred_thousand_tiny_files_unpack_and_the_entry_cap_holds() {
        require!(Root);
        let mut t = Tar::new();
        for d in 0..100 {
            t.dir(&format!("d{d:03}/"), 0o755);
            for f in 0..1000 {
                t.file(&format!("d{d:03}/f{f:04}"), b"x", 0o644);
            }
        }
        let tar = t.finish();
        let arena = Arena::new();
        let start = std::time::Instant::now();
        let layer = unpack_layer(
            &tar[..],
            Compression::None,
            &arena.layer(),
            &Digest::sha256_of(&tar),
            &opts(),
        )
        .unwrap();
        eprintln!("100k files unpacked in {:?}", start.elapsed());
        assert_eq!(layer.entries, 100_100);
        assert_eq!(
            fs_err::read_dir(arena.layer().join("d042"))
                .unwrap()
                .count(),
            1000
        );
        let capped = UnpackOptions {
            max_entries: 5000,
            ..opts()
        };
        let arena = Arena::new();
        let err = unpack(&arena, &tar, &capped).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "layer {}: entry count exceeds the limit of 5000",
                Digest::sha256_of(&tar)
            )
        );
    }

    #[test]
    fn gzip_bomb_hits_the_size_cap() {
        require!(Root);
        let mut t = Tar::new();
        {
            let mut h = tar::Header::new_gnu();
            h.set_size(64 << 20);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            t.builder()
                .append_data(
                    &mut h,
                    "zeros",
                    std::io::Read::take(std::io::repeat(0), 64 << 20),
                )
                .unwrap();
        }
        let tar = t.finish();
        let gz = common::gzip(&tar);
        assert!(gz.len() < 1 << 20, "the bomb is small: {}", gz.len());
        let arena = Arena::new();
        let capped = UnpackOptions {
            max_size: 4 << 20,
            ..opts()
        };
        let blob = Digest::sha256_of(&gz);
        let err =
            unpack_layer(&gz[..], Compression::Gzip, &arena.layer(), &blob, &capped).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("layer {blob}: uncompressed size exceeds the limit of 4194304")
        );
        // What was written before the cap stays inside the layer directory.
        let size = fs_err::metadata(arena.layer().join("zeros"))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(size <= 4 << 20);
    }

    #[test]
    fn huge_pax_header_is_refused_before_it_is_buffered() {
        require!(Root);
        let mut t = Tar::new();
        let big = vec![b'a'; 8 << 20];
        t.builder()
            .append_pax_extensions([("comment", big.as_slice())])
            .unwrap();
        t.file("f", b"x", 0o644);
        let tar = t.finish();
        let arena = Arena::new();
        let err = unpack(&arena, &tar, &opts()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "layer {}: extended header exceeds the limit of 1048576",
                Digest::sha256_of(&tar)
            )
        );
        assert!(!arena.layer().join("f").exists());
    }

    #[test]
    fn overlay_control_xattrs_from_the_tar_are_ignored() {
        require!(Root);
        let mut t = Tar::new();
        t.builder()
            .append_pax_extensions([("SCHILY.xattr.trusted.overlay.redirect", b"/etc".as_slice())])
            .unwrap();
        t.dir("d/", 0o755);
        let tar = t.finish();
        let arena = Arena::new();
        unpack(&arena, &tar, &opts()).unwrap();
        let mut buf = [0u8; 64];
        let r = rustix::fs::lgetxattr(
            arena.layer().join("d"),
            "trusted.overlay.redirect",
            &mut buf[..],
        );
        assert!(r.is_err());
    }
}
