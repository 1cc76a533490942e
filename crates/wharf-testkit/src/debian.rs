//! A Debian bookworm minbase root filesystem made by `debootstrap` (from
//! Debian's archive, the one network source tests may use), built once per
//! machine and kept under `/var/tmp/wharf-fixtures` across clones and runs
//! (about 200 MB; a build takes a few minutes), plus the layer trees tests cut
//! from it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

use anyhow::{ensure, Context as _};

/// The cache directory, outside any checkout.
const CACHE: &str = "/var/tmp/wharf-fixtures/debian-bookworm-minbase";

/// The cached minbase trees: `rootfs/` (the whole system) and two layer
/// trees cut from it with hardlinks, `layers/usr/` (holding `usr/`) and
/// `layers/rest/` (everything but `usr/`).
#[derive(Debug)]
pub struct DebianMinbase {
    /// The whole root filesystem.
    pub rootfs: PathBuf,
    /// A tree holding only `usr/`.
    pub usr_layer: PathBuf,
    /// A tree holding everything but `usr/`.
    pub rest_layer: PathBuf,
}

/// The cached minbase, building it on first use on this machine. Do not
/// modify the trees.
///
/// # Errors
///
/// `debootstrap` is missing or fails (no access to Debian's archive), or the
/// cache cannot be written.
pub fn debian_minbase() -> anyhow::Result<&'static DebianMinbase> {
    static TREES: OnceLock<DebianMinbase> = OnceLock::new();
    static BUILDING: Mutex<()> = Mutex::new(());
    if let Some(t) = TREES.get() {
        return Ok(t);
    }
    let _guard = BUILDING.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(t) = TREES.get() {
        return Ok(t);
    }
    let built = build().context("build the Debian minbase test rootfs")?;
    Ok(TREES.get_or_init(|| built))
}

fn build() -> anyhow::Result<DebianMinbase> {
    let cache = Path::new(CACHE);
    let trees = DebianMinbase {
        rootfs: cache.join("rootfs"),
        usr_layer: cache.join("layers/usr"),
        rest_layer: cache.join("layers/rest"),
    };
    let done = cache.join("done.v2");
    if done.exists() {
        return Ok(trees);
    }
    fs_err::create_dir_all(cache)?;
    // One builder per machine: test processes wait on this lock.
    let lock = fs_err::File::create(cache.join("lock"))?;
    let _lock = nix::fcntl::Flock::lock(lock.into_parts().0, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .context("lock the Debian rootfs cache")?;
    if done.exists() {
        return Ok(trees);
    }
    for dir in [&trees.rootfs, &cache.join("layers")] {
        if dir.exists() {
            fs_err::remove_dir_all(dir)?;
        }
    }
    let staging = cache.join("rootfs.tmp");
    if staging.exists() {
        fs_err::remove_dir_all(&staging)?;
    }
    run(Command::new("debootstrap")
        .args(["--variant=minbase", "bookworm"])
        .arg(&staging))?;
    fs_err::rename(&staging, &trees.rootfs)?;
    fs_err::create_dir_all(&trees.usr_layer)?;
    run(Command::new("cp")
        .arg("-al")
        .arg(trees.rootfs.join("usr"))
        .arg(trees.usr_layer.join("usr")))?;
    run(Command::new("cp")
        .arg("-al")
        .arg(&trees.rootfs)
        .arg(&trees.rest_layer))?;
    fs_err::remove_dir_all(trees.rest_layer.join("usr"))?;
    // Image layers carry an empty /dev (the runtime makes the nodes), as
    // registry images do; debootstrap's device nodes stay in `rootfs/`.
    for entry in fs_err::read_dir(trees.rest_layer.join("dev"))? {
        let path = entry?.path();
        if path.is_dir() && !path.is_symlink() {
            fs_err::remove_dir_all(&path)?;
        } else {
            fs_err::remove_file(&path)?;
        }
    }
    fs_err::write(&done, "")?;
    Ok(trees)
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run {cmd:?}"))?;
    ensure!(
        out.status.success(),
        "{cmd:?} failed with {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}
