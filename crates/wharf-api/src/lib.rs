//! Wharf's Docker Engine API. The socket server comes later; what lives here
//! now are Docker's JSON shapes, which the CLI prints as `docker` does
//! (`image inspect`, `images --format json`, `volume inspect`) and the server will return,
//! and Podman's for pods (`pod inspect`, `pod ps --format json`): Docker's
//! and Podman's field names and casing exist in this crate only.
//!
//! It must not know how containers or images are made: it renders the
//! engine's domain types.

pub mod containers;
pub mod images;
pub mod networks;
pub mod pods;
pub mod system;
pub mod volumes;
