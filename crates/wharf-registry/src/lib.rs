//! Wharf's OCI distribution client: registries.conf (search registries, mirrors,
//! insecure and blocked registries), credentials (Podman's `auth.json`, Docker's
//! `config.json`, credential helpers, `login`/`logout`), authentication
//! challenges and Bearer tokens, TLS with per-registry CAs, retries, and the pull
//! and push protocols with progress events.
//!
//! Pulled blobs are written through `wharf-image`'s [`Ingest`](wharf_image::Ingest)
//! trait and pushed blobs are read through [`PushSource`]: this crate must not
//! know the store's disk layout, and nothing here touches it. Async (tokio)
//! lives here, at the network edge; the store's writers are driven from
//! blocking threads.

mod auth;
mod client;
mod compress;
mod config;
mod credentials;
mod error;
mod progress;
mod pull;
mod push;
mod session;
mod transport;

pub use client::{Client, ClientOptions};
pub use compress::{compress_layer, CompressedLayer};
pub use config::{
    ConfigPaths, Endpoint, Mirror, RegistryConfig, RegistryEntry, DEFAULT_SEARCH_REGISTRY,
};
pub use credentials::{remove_credential, store_credential, AuthSources, Credential};
pub use error::{ErrorKind, RegistryError};
pub use progress::{BlobKind, NoProgress, Progress};
pub use pull::{PullOptions, Pulled, PulledLayer};
pub use push::{PushOptions, PushSource};
pub use transport::{RetryPolicy, DEFAULT_CERT_DIRS};
