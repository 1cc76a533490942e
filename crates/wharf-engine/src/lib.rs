//! Wharf's engine: the operations users ask for, on domain types, shared by
//! the command line and (later) the API server. The image side: pulling and
//! pushing through `wharf-registry` into and out of `wharf-image`'s store,
//! login, listing, tagging, removal, pruning, disk usage, import, save and
//! load. Containers ([`containers`]): create, start through the
//! per-container [`monitor`], stop, kill, remove, exec, attach, logs
//! ([`logs`]), named volumes ([`volumes`]: records, data directories, mounts
//! and users), pods ([`pods`]: containers sharing an infra container's
//! namespaces); [`spec`] turns an image config and a `docker run`-style
//! request into the OCI runtime spec with Docker's defaults, and [`state`]
//! keeps container records and the event journal in `engine.db` with
//! per-container locks.
//!
//! It must not know clap, HTTP servers or Docker's JSON shapes: requests come
//! in as validated types ([`images::PullRequest`], …), results go out as
//! domain types the callers render.

pub mod containers;
mod elf;
mod error;
pub mod images;
pub mod logs;
pub mod monitor;
pub mod networks;
pub mod pods;
pub mod spec;
pub mod state;
pub mod system;
pub mod volumes;

use std::path::{Path, PathBuf};

pub use error::{EngineError, ErrorKind};

/// The default store and state root for root (Podman's `--root`).
pub const DEFAULT_ROOT: &str = "/var/lib/wharf";

/// How an [`Engine`] is opened.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Store and state root (`--root`).
    pub root: PathBuf,
    /// Storage driver (`overlay`, `vfs`); `None` picks overlay.
    pub storage_driver: Option<String>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            root: PathBuf::from(DEFAULT_ROOT),
            storage_driver: None,
        }
    }
}

/// The engine over one store root.
#[derive(Debug)]
pub struct Engine {
    root: PathBuf,
    images: wharf_image::Store,
    driver: wharf_image::Driver,
    containers: std::sync::OnceLock<state::ContainerStore>,
    volumes: std::sync::OnceLock<volumes::VolumeStore>,
}

impl Engine {
    /// Opens (creating) the store under `options.root`: images live in
    /// `<root>/image` (layout in docs/store.md).
    ///
    /// # Errors
    ///
    /// The root cannot be created or the image store cannot be opened.
    pub fn open(options: &EngineOptions) -> Result<Engine, EngineError> {
        let mut store_options = wharf_image::StoreOptions::default();
        if let Some(driver) = &options.storage_driver {
            store_options.driver = wharf_image::Driver::parse(driver)?;
        }
        let driver = store_options.driver;
        let images = wharf_image::Store::open_with(&options.root.join("image"), store_options)?;
        Ok(Engine {
            root: options.root.clone(),
            images,
            driver,
            containers: std::sync::OnceLock::new(),
            volumes: std::sync::OnceLock::new(),
        })
    }

    /// The store and state root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The storage driver's name (`overlay`, `vfs`).
    pub fn storage_driver(&self) -> &'static str {
        match self.driver {
            wharf_image::Driver::Overlay => "overlay",
            wharf_image::Driver::Vfs => "vfs",
        }
    }
}
