//! Test support for Wharf (dev-only): requirement gates ([`require!`]), a cached
//! busybox rootfs, an OCI bundle builder, per-test environments ([`TestEnv`]) whose
//! `Drop` kills, unmounts and removes what a test left behind, [`in_child`] to run
//! privileged code in a forked child (optionally in fresh namespaces) with its error
//! chain sent back, host-tree sentinels and a leak sweep, a real local registry
//! ([`LocalRegistry`]: Debian's `docker-registry` over HTTP or TLS, with htpasswd or
//! token auth) and OCI image layouts to seed it ([`OciLayout`]).
//!
//! This crate depends on no Wharf crate, so every Wharf crate can use it as a
//! dev-dependency without cycles; `tests/layering.rs` enforces the crate graph.

mod bundle;
mod child;
mod containers_tools;
mod debian;
mod env;
mod mounts;
mod oci_layout;
mod processes;
mod registry;
mod requirement;
mod rootfs;
mod sentinel;

pub use bundle::{Bundle, BundleBuilder};
pub use child::{in_child, in_child_unshare};
pub use containers_tools::{isolated, Podman};
pub use debian::{debian_minbase, DebianMinbase};
pub use env::TestEnv;
pub use mounts::leaked_mounts;
pub use oci_layout::{
    busybox_layout, media, BlobInfo, LayerCompression, LayerContent, OciLayout, TestImage,
    TestPlatform,
};
pub use processes::leaked_processes;
pub use registry::{
    free_port, LocalRegistry, RegistryAuth, RegistryOptions, REFRESH_TOKEN, TOKEN_SERVICE,
};
pub use requirement::{check_requirements, Requirement, ABSENT_ON_CI};
pub use rootfs::{busybox_rootfs, copy_rootfs};
pub use sentinel::Sentinel;

#[doc(hidden)]
pub use requirement::test_name_from_fn_path as __test_name_from_fn_path;
