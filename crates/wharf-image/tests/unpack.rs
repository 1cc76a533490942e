//! Unpacking real layer tars: metadata is preserved, whiteouts become
//! overlayfs whiteouts, compressed streams unpack with the right diff id.

// The workspace lints want tests inside a `#[cfg(test)]` module, even here.
#[cfg(test)]
mod common;

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

    use super::common::{self, Arena, Tar};
    use wharf_image::unpack::{unpack_layer, DeviceNodes, UnpackOptions};
    use wharf_image::{Compression, Digest};
    use wharf_testkit::require;

    fn full_featured_tar() -> Vec<u8> {
        let mut t = Tar::new();
        let b = t.builder();
        // A PAX long name (past 100 and 255 bytes) with sub-second mtime,
        // a large uid/gid and an xattr.
        let long = format!("{}/{}", "d".repeat(120), "f".repeat(200));
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o750);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_000_000_000);
        h.set_size(0);
        b.append_data(&mut h, "d".repeat(120), std::io::empty())
            .unwrap();
        b.append_pax_extensions([
            ("path", long.as_bytes()),
            ("mtime", b"1700000000.123456789".as_slice()),
            ("uid", b"3000000000".as_slice()),
            ("gid", b"3000000001".as_slice()),
            ("SCHILY.xattr.user.wharf", b"hello".as_slice()),
        ])
        .unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o640);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1);
        h.set_size(5);
        // The ustar name; the PAX `path` record above overrides it.
        h.set_path("short-name").unwrap();
        h.set_cksum();
        b.append(&h, &b"long!"[..]).unwrap();
        // setuid binary owned by 1000:1000.
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o4755);
        h.set_uid(1000);
        h.set_gid(1000);
        h.set_mtime(1_500_000_000);
        h.set_size(3);
        b.append_data(&mut h, "bin/su", &b"ELF"[..]).unwrap();
        b.append_pax_extensions([("SCHILY.xattr.trusted.wharf-link", b"l".as_slice())])
            .unwrap();
        t.symlink("bin/sh", "busybox")
            .hardlink("bin/su2", "bin/su")
            .raw(b"run/fifo", tar::EntryType::Fifo, None, b"", 0o620);
        let b = t.builder();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Char);
        h.set_device_major(1).unwrap();
        h.set_device_minor(3).unwrap();
        h.set_mode(0o666);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(0);
        b.append_data(&mut h, "dev/null", std::io::empty()).unwrap();
        // Whiteouts: a file and an opaque directory.
        t.dir("etc/", 0o755)
            .file("etc/.wh.motd", b"", 0o644)
            .dir("var/cache/", 0o755)
            .file("var/cache/.wh..wh..opq", b"", 0o644)
            .file("var/cache/new", b"n", 0o644)
            .file(".wh..wh.plnk", b"", 0o644);
        // A directory whose time must survive files created in it later.
        let b = t.builder();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_234_567_890);
        h.set_size(0);
        b.append_data(&mut h, "late", std::io::empty()).unwrap();
        t.file("late/child", b"c", 0o644);
        t.finish()
    }

    #[test]
    fn metadata_is_preserved() {
        require!(Root);
        let tar = full_featured_tar();
        let arena = Arena::new();
        let opts = UnpackOptions {
            devices: DeviceNodes::Create,
            ..UnpackOptions::default()
        };
        let layer = unpack_layer(
            &tar[..],
            Compression::None,
            &arena.layer(),
            &Digest::sha256_of(&tar),
            &opts,
        )
        .unwrap();
        assert_eq!(layer.diff_id, Digest::sha256_of(&tar));
        assert_eq!(layer.size, tar.len() as u64);
        let root = arena.layer();
        let long = root.join(format!("{}/{}", "d".repeat(120), "f".repeat(200)));
        let m = fs_err::symlink_metadata(&long).unwrap();
        assert_eq!(fs_err::read(&long).unwrap(), b"long!");
        assert_eq!((m.uid(), m.gid()), (3_000_000_000, 3_000_000_001));
        assert_eq!((m.mtime(), m.mtime_nsec()), (1_700_000_000, 123_456_789));
        let mut buf = [0u8; 16];
        let n = rustix::fs::getxattr(&long, "user.wharf", &mut buf[..]).unwrap();
        assert_eq!(&buf[..n], b"hello");
        let su = fs_err::metadata(root.join("bin/su")).unwrap();
        assert_eq!(
            su.permissions().mode() & 0o7777,
            0o4755,
            "setuid survives chown"
        );
        assert_eq!((su.uid(), su.gid()), (1000, 1000));
        assert_eq!(su.mtime(), 1_500_000_000);
        assert_eq!(su.nlink(), 2);
        assert_eq!(
            fs_err::metadata(root.join("bin/su2")).unwrap().ino(),
            su.ino()
        );
        assert_eq!(
            fs_err::read_link(root.join("bin/sh")).unwrap().to_str(),
            Some("busybox")
        );
        let fifo = fs_err::symlink_metadata(root.join("run/fifo")).unwrap();
        assert!(fifo.file_type().is_fifo());
        assert_eq!(fifo.permissions().mode() & 0o7777, 0o620);
        let null = fs_err::symlink_metadata(root.join("dev/null")).unwrap();
        assert!(null.file_type().is_char_device());
        assert_eq!(null.rdev(), rustix::fs::makedev(1, 3));
        // Whiteouts.
        let wh = fs_err::symlink_metadata(root.join("etc/motd")).unwrap();
        assert!(wh.file_type().is_char_device());
        assert_eq!(wh.rdev(), 0);
        assert!(!root.join("etc/.wh.motd").exists());
        let n = rustix::fs::getxattr(
            root.join("var/cache"),
            "trusted.overlay.opaque",
            &mut buf[..],
        )
        .unwrap();
        assert_eq!(&buf[..n], b"y");
        assert!(!root.join("var/cache/.wh..wh..opq").exists());
        assert!(root.join("var/cache/new").is_file());
        assert!(!root.join(".wh..wh.plnk").exists());
        // Directory times are set last.
        assert_eq!(
            fs_err::metadata(root.join("late")).unwrap().mtime(),
            1_234_567_890
        );
        let dmode = fs_err::metadata(root.join("d".repeat(120)))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dmode & 0o7777, 0o750);
    }

    #[test]
    fn gzip_and_zstd_layers_unpack_to_the_same_tree() {
        require!(Root);
        let tar = full_featured_tar();
        let mut trees = Vec::new();
        for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let blob = common::compress(&tar, c);
            let arena = Arena::new();
            let opts = UnpackOptions {
                devices: DeviceNodes::Create,
                ..UnpackOptions::default()
            };
            let layer = unpack_layer(
                &blob[..],
                c,
                &arena.layer(),
                &Digest::sha256_of(&blob),
                &opts,
            )
            .unwrap();
            assert_eq!(layer.diff_id, Digest::sha256_of(&tar), "{c:?}");
            trees.push(common::snapshot_tree(&arena.layer()));
        }
        assert_eq!(trees[0], trees[1]);
        assert_eq!(trees[0], trees[2]);
    }
}
