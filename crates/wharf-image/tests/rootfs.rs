//! Root filesystems from a two-layer image with a whiteout and an opaque
//! directory: the overlay merged view, the vfs copy, and the diff of the
//! writable layer round-tripping through unpack.

// The workspace lints want tests inside a `#[cfg(test)]` module, even here.
#[cfg(test)]
mod common;

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    use std::path::{Path, PathBuf};

    use super::common::{self, Arena};
    use wharf_image::unpack::{unpack_layer, UnpackOptions};
    use wharf_image::{Compression, Digest, Driver, ErrorKind, RootfsOptions, Store, StoreOptions};
    use wharf_testkit::require;

    /// Unmounts and removes the rootfs however the test ends.
    struct RootfsGuard<'a> {
        store: &'a Store,
        key: &'static str,
    }

    impl Drop for RootfsGuard<'_> {
        fn drop(&mut self) {
            if let Ok(r) = self.store.rootfs(self.key) {
                if r.driver == Driver::Overlay {
                    let _ = rustix::mount::unmount(&r.path, rustix::mount::UnmountFlags::DETACH);
                }
            }
            let _ = self.store.remove_rootfs(self.key);
        }
    }

    fn store(dir: &Path, driver: Driver) -> Store {
        let store = Store::open_with(
            dir,
            StoreOptions {
                driver,
                ..StoreOptions::default()
            },
        )
        .unwrap();
        let f = common::image(
            &[
                (common::base_layer(), Compression::Gzip),
                (common::top_layer(), Compression::Zstd),
            ],
            "R",
        );
        common::pull(&store, &f, "localhost/stack:1").unwrap();
        store
    }

    fn view(root: &Path) -> BTreeMap<PathBuf, String> {
        common::snapshot_tree(root)
            .into_iter()
            .map(|(p, d)| (p, d.split(' ').next().unwrap_or("").to_string()))
            .collect()
    }

    fn expected_view() -> BTreeMap<PathBuf, String> {
        [
            ("bin", "dir"),
            ("bin/x", "file"),
            ("bin/y", "file"),
            ("etc", "dir"),
            ("etc/keep", "file"),
            ("var", "dir"),
            ("var/cache", "dir"),
            ("var/cache/new", "file"),
        ]
        .into_iter()
        .map(|(p, k)| (PathBuf::from(p), k.to_string()))
        .collect()
    }

    #[test]
    fn overlay_merged_view_applies_whiteouts_and_opaque_dirs() {
        require!(Root, Overlay);
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path(), Driver::Overlay);
        let rootfs = store.mount_rootfs("localhost/stack:1", "c1").unwrap();
        let _guard = RootfsGuard {
            store: &store,
            key: "c1",
        };
        assert_eq!(rootfs.driver, Driver::Overlay);
        assert_eq!(view(&rootfs.path), expected_view());
        assert_eq!(
            fs_err::read(rootfs.path.join("var/cache/new")).unwrap(),
            b"new"
        );
        // A second rootfs with the same key is refused; the image is in use.
        assert_eq!(
            store
                .mount_rootfs("localhost/stack:1", "c1")
                .unwrap_err()
                .kind(),
            ErrorKind::AlreadyExists
        );
        let err = store.remove("localhost/stack:1", false).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict);
        assert!(
            err.to_string().contains("in use by root filesystem c1"),
            "{err}"
        );
        assert_eq!(store.disk_usage().unwrap().active, 1);
    }

    #[test]
    fn vfs_copy_has_the_same_view() {
        require!(Root);
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path(), Driver::Vfs);
        let rootfs = store.mount_rootfs("localhost/stack:1", "v1").unwrap();
        let _guard = RootfsGuard {
            store: &store,
            key: "v1",
        };
        assert_eq!(rootfs.driver, Driver::Vfs);
        assert_eq!(view(&rootfs.path), expected_view());
        // No whiteout devices or overlay xattrs leak into the copy.
        let mut buf = [0u8; 8];
        assert!(rustix::fs::lgetxattr(
            rootfs.path.join("var/cache"),
            "trusted.overlay.opaque",
            &mut buf[..]
        )
        .is_err());
        store.remove_rootfs("v1").unwrap();
        assert!(!rootfs.path.exists());
    }

    #[test]
    fn a_volatile_rootfs_works_and_is_never_mounted_again() {
        require!(Root, Overlay);
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path(), Driver::Overlay);
        let rootfs = store
            .mount_rootfs_with("localhost/stack:1", "vol", RootfsOptions { volatile: true })
            .unwrap();
        let _guard = RootfsGuard {
            store: &store,
            key: "vol",
        };
        assert_eq!(view(&rootfs.path), expected_view());
        fs_err::write(rootfs.path.join("etc/new"), b"x").unwrap();
        let mountinfo = fs_err::read_to_string("/proc/self/mountinfo").unwrap();
        let line = mountinfo
            .lines()
            .find(|l| l.contains(rootfs.path.to_str().unwrap()))
            .expect("the rootfs is mounted");
        assert!(line.contains("volatile"), "{line}");
        // Unmounted, its writes were never synced: mounting it again is
        // refused by name, not with overlayfs' bare EINVAL.
        store.unmount_rootfs("vol").unwrap();
        let err = store.remount_rootfs("vol").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
        assert!(err.to_string().contains("volatile"), "{err}");
        store.remove_rootfs("vol").unwrap();
        assert!(!rootfs.path.exists());
    }

    #[test]
    fn records_of_vanished_root_filesystems_are_dropped() {
        require!(Root);
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path(), Driver::Vfs);
        // A removal whose commit an OS crash lost: the directory is gone,
        // the record stays and pins the image.
        store.mount_rootfs("localhost/stack:1", "gone").unwrap();
        fs_err::remove_dir_all(dir.path().join("rootfs/gone")).unwrap();
        assert_eq!(
            store.remove("localhost/stack:1", false).unwrap_err().kind(),
            ErrorKind::Conflict
        );
        // Removing it again drops the record; a third time finds nothing.
        store.remove_rootfs("gone").unwrap();
        assert_eq!(
            store.remove_rootfs("gone").unwrap_err().kind(),
            ErrorKind::NotFound
        );
        // GC drops such records by itself, and then the image can go.
        store.mount_rootfs("localhost/stack:1", "gone2").unwrap();
        fs_err::remove_dir_all(dir.path().join("rootfs/gone2")).unwrap();
        store.gc().unwrap();
        store.remove("localhost/stack:1", false).unwrap();
    }

    #[test]
    fn a_deferred_removal_keeps_the_files_until_the_trash_is_emptied() {
        require!(Root, Overlay);
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path(), Driver::Overlay);
        let rootfs = store.mount_rootfs("localhost/stack:1", "t1").unwrap();
        fs_err::write(rootfs.path.join("written"), b"upper").unwrap();
        store.remove_rootfs_deferred("t1").unwrap();
        // Gone for everyone at once: no record, no mount, no directory.
        assert_eq!(store.rootfs("t1").unwrap_err().kind(), ErrorKind::NotFound);
        assert!(!dir.path().join("rootfs/t1").exists());
        let mounts = fs_err::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains("rootfs/t1"), "{mounts}");
        // The files wait in the trash, with what a dead process left there.
        let trash = dir.path().join("trash");
        assert!(trash.join("t1/upper/written").is_file());
        fs_err::create_dir_all(trash.join("left/upper")).unwrap();
        store.empty_trash().unwrap();
        assert_eq!(fs_err::read_dir(&trash).unwrap().count(), 0);
        store.empty_trash().unwrap();
        // GC empties it too (an image removal runs it).
        store.mount_rootfs("localhost/stack:1", "t2").unwrap();
        store.remove_rootfs_deferred("t2").unwrap();
        store.remove("localhost/stack:1", false).unwrap();
        assert_eq!(fs_err::read_dir(&trash).unwrap().count(), 0);
    }

    #[test]
    fn diff_of_the_upper_dir_round_trips() {
        require!(Root, Overlay);
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path(), Driver::Overlay);
        let rootfs = store.mount_rootfs("localhost/stack:1", "d1").unwrap();
        let _guard = RootfsGuard {
            store: &store,
            key: "d1",
        };
        let m = &rootfs.path;
        // Changes: a new file, a removed file, a directory replaced
        // (opaque), a modified file, a symlink, a hardlink pair.
        fs_err::write(m.join("new.txt"), b"fresh").unwrap();
        fs_err::remove_file(m.join("etc/keep")).unwrap();
        fs_err::remove_dir_all(m.join("var/cache")).unwrap();
        fs_err::create_dir(m.join("var/cache")).unwrap();
        fs_err::write(m.join("var/cache/z"), b"z").unwrap();
        fs_err::write(m.join("bin/x"), b"changed").unwrap();
        std::os::unix::fs::symlink("/bin/x", m.join("link")).unwrap();
        fs_err::write(m.join("h1"), b"same inode").unwrap();
        fs_err::hard_link(m.join("h1"), m.join("h2")).unwrap();
        let mut tar = Vec::new();
        let stats = store.diff_rootfs("d1", &mut tar).unwrap();
        assert_eq!(stats.diff_id, Digest::sha256_of(&tar));
        let mut again = Vec::new();
        assert_eq!(
            store.diff_rootfs("d1", &mut again).unwrap().diff_id,
            stats.diff_id,
            "deterministic"
        );
        // The tar speaks OCI: whiteout files, the opaque marker.
        let names: Vec<String> = tar::Archive::new(&tar[..])
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        for expected in [
            "etc/.wh.keep",
            "var/cache/.wh..wh..opq",
            "var/cache/z",
            "new.txt",
            "bin/x",
            "link",
            "h1",
            "h2",
        ] {
            assert!(
                names.iter().any(|n| n == expected),
                "{expected} missing from {names:?}"
            );
        }
        let mut sorted = names.clone();
        sorted.sort();
        // Unpacked again, it is the upper directory.
        let arena = Arena::new();
        unpack_layer(
            &tar[..],
            Compression::None,
            &arena.layer(),
            &stats.diff_id,
            &UnpackOptions::default(),
        )
        .unwrap();
        let upper = rootfs.upper.clone().unwrap();
        let mut want = common::snapshot_tree(&upper);
        let mut got = common::snapshot_tree(&arena.layer());
        // Overlay's work bookkeeping is not part of the change set.
        want.retain(|p, _| !p.starts_with("work"));
        got.retain(|p, _| !p.starts_with("work"));
        assert_eq!(got, want);
        let wh = fs_err::symlink_metadata(arena.layer().join("etc/keep")).unwrap();
        assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
        let mut buf = [0u8; 8];
        let n = rustix::fs::lgetxattr(
            arena.layer().join("var/cache"),
            "trusted.overlay.opaque",
            &mut buf[..],
        )
        .unwrap();
        assert_eq!(&buf[..n], b"y");
        assert_eq!(
            fs_err::metadata(arena.layer().join("h1")).unwrap().ino(),
            fs_err::metadata(arena.layer().join("h2")).unwrap().ino()
        );
        // Unmount and removal leave nothing mounted.
        store.remove_rootfs("d1").unwrap();
        let mounts = fs_err::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(&dir.path().display().to_string()));
    }
}
