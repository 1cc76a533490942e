//! The registry client: configuration, credentials, HTTP clients, token and ping
//! caches shared by every pull, push and login.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use url::Url;

use crate::auth::{self, AuthScheme, TokenCache, TokenRequest};
use crate::config::{Endpoint, RegistryConfig};
use crate::credentials::{self, AuthSources, Credential};
use crate::error::RegistryError;
use crate::session::{api_host, PingResult, Session};
use crate::transport::{Body, RetryPolicy, Transport, DEFAULT_CERT_DIRS};

/// How a [`Client`] is set up.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// registries.conf: search registries, mirrors, insecure and blocked registries.
    pub config: RegistryConfig,
    /// Where credentials come from and where `login` stores them.
    pub auth: AuthSources,
    /// `--tls-verify`: `Some(false)` treats every registry as insecure (unverified
    /// HTTPS, then HTTP); `Some(true)` verifies even registries configured
    /// insecure; `None` follows the configuration.
    pub tls_verify: Option<bool>,
    /// `certs.d`-style directories with per-registry CA certificates.
    pub cert_dirs: Vec<PathBuf>,
    /// Retries of failed requests.
    pub retry: RetryPolicy,
    /// `User-Agent`.
    pub user_agent: String,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            config: RegistryConfig::default(),
            auth: AuthSources::default(),
            tls_verify: None,
            cert_dirs: DEFAULT_CERT_DIRS.iter().map(PathBuf::from).collect(),
            retry: RetryPolicy::default(),
            user_agent: format!("wharf/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// State shared by a client's sessions.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) config: RegistryConfig,
    pub(crate) auth: AuthSources,
    pub(crate) tls_verify: Option<bool>,
    pub(crate) transport: Transport,
    pub(crate) tokens: TokenCache,
    pings: tokio::sync::Mutex<HashMap<(String, bool), PingResult>>,
    credentials: Mutex<HashMap<(String, String), Option<Credential>>>,
}

/// An OCI distribution client (pull, push, login). Cheap to clone; clones share
/// their caches. All methods are async and must run inside a tokio runtime.
#[derive(Debug, Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

impl Client {
    /// A client with `options`.
    pub fn new(options: ClientOptions) -> Self {
        Self {
            inner: Arc::new(Inner {
                config: options.config,
                auth: options.auth,
                tls_verify: options.tls_verify,
                transport: Transport::new(options.cert_dirs, options.retry, options.user_agent),
                tokens: TokenCache::default(),
                pings: tokio::sync::Mutex::new(HashMap::new()),
                credentials: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The registries configuration in use.
    pub fn config(&self) -> &RegistryConfig {
        &self.inner.config
    }

    /// Whether `endpoint` may use unverified TLS or plain HTTP.
    pub(crate) fn insecure(&self, endpoint_insecure: bool) -> bool {
        match self.inner.tls_verify {
            Some(verify) => !verify,
            None => endpoint_insecure,
        }
    }

    /// Credentials for a repository (helpers run once per client).
    fn credential(
        &self,
        registry: &str,
        repository: &str,
    ) -> Result<Option<Credential>, RegistryError> {
        let key = (registry.to_owned(), repository.to_owned());
        if let Some(found) = self
            .inner
            .credentials
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(found.clone());
        }
        let found = self.inner.auth.lookup(registry, repository)?;
        self.inner
            .credentials
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, found.clone());
        Ok(found)
    }

    /// Pings `/v2/` of `registry`: HTTPS (verified unless insecure), then for an
    /// insecure registry plain HTTP. Cached per client.
    pub(crate) async fn ping(
        &self,
        registry: &str,
        insecure: bool,
    ) -> Result<PingResult, RegistryError> {
        let key = (registry.to_owned(), insecure);
        let mut pings = self.inner.pings.lock().await;
        if let Some(found) = pings.get(&key) {
            return Ok(found.clone());
        }
        let host = api_host(registry);
        let attempts: &[(&str, bool)] = if insecure {
            &[("https", false), ("http", false)]
        } else {
            &[("https", true)]
        };
        let mut last_error = None;
        for (scheme, verify) in attempts {
            let base = Url::parse(&format!("{scheme}://{host}/"))
                .map_err(|e| RegistryError::invalid(format!("bad registry host {host:?}: {e}")))?;
            let url = base
                .join("v2/")
                .map_err(|e| RegistryError::invalid(e.to_string()))?;
            let http = self.inner.transport.client(host, *verify)?;
            let response = if insecure {
                // Probing: a refused TLS handshake means "try HTTP", not "retry".
                http.get(url.clone())
                    .send()
                    .await
                    .map_err(|source| RegistryError::Request {
                        method: "GET".into(),
                        url: url.to_string(),
                        source,
                    })
            } else {
                self.inner
                    .transport
                    .send(&http, &Method::GET, &url, &HeaderMap::new(), &Body::Empty)
                    .await
            };
            let response = match response {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(registry, %url, error = %e, "ping failed");
                    last_error = Some(e);
                    continue;
                }
            };
            let scheme = match response.status() {
                StatusCode::UNAUTHORIZED => {
                    AuthScheme::from_challenges(registry, &auth::challenges_of(response.headers()))?
                }
                s if s.is_success() => None,
                s => {
                    last_error = Some(RegistryError::Status {
                        op: "ping",
                        registry: registry.to_owned(),
                        repository: String::new(),
                        url: url.to_string(),
                        status: s.as_u16(),
                        detail: String::new(),
                    });
                    continue;
                }
            };
            let result = PingResult {
                base,
                verify: *verify,
                scheme,
            };
            pings.insert(key, result.clone());
            return Ok(result);
        }
        Err(last_error
            .unwrap_or_else(|| RegistryError::invalid(format!("cannot reach {registry}"))))
    }

    /// A session with `endpoint`'s repository, asking for `actions` (`pull`,
    /// `push`).
    pub(crate) async fn session(
        &self,
        endpoint: &Endpoint,
        actions: &[&str],
    ) -> Result<Session, RegistryError> {
        let registry = endpoint.registry();
        let repository = endpoint.repository();
        let insecure = self.insecure(endpoint.insecure);
        let ping = self.ping(registry, insecure).await?;
        let credential = self.credential(registry, repository)?;
        Session::new(
            Arc::clone(&self.inner),
            registry,
            repository,
            ping,
            insecure,
            credential,
            vec![auth::repository_scope(repository, actions)],
        )
    }

    /// Checks `credential` against `registry` (Basic: `/v2/` answers 200 with it;
    /// Bearer: the realm issues a token for it), then stores it in the login file
    /// of [`AuthSources`]. A registry that needs no authentication accepts any.
    ///
    /// # Errors
    ///
    /// The registry is unreachable, refuses the credentials
    /// ([`RegistryError::Denied`]), or the auth file cannot be written.
    pub async fn login(
        &self,
        registry: &str,
        credential: &Credential,
    ) -> Result<(), RegistryError> {
        let registry = registry
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .trim_end_matches('/');
        let insecure = self.insecure(self.inner.config.is_insecure(registry));
        let ping = self.ping(registry, insecure).await?;
        let url = ping
            .base
            .join("v2/")
            .map_err(|e| RegistryError::invalid(e.to_string()))?;
        let http = self
            .inner
            .transport
            .client(api_host(registry), ping.verify)?;
        match &ping.scheme {
            None => {}
            Some(AuthScheme::Basic) => {
                let mut headers = HeaderMap::new();
                if let Some(basic) = credential.basic_header() {
                    let value = reqwest::header::HeaderValue::from_str(&basic).map_err(|_| {
                        RegistryError::invalid("credentials are not a valid header")
                    })?;
                    headers.insert(reqwest::header::AUTHORIZATION, value);
                }
                let response = self
                    .inner
                    .transport
                    .send(&http, &Method::GET, &url, &headers, &Body::Empty)
                    .await?;
                if !response.status().is_success() {
                    return Err(RegistryError::Denied {
                        registry: registry.to_owned(),
                        repository: String::new(),
                        url: url.to_string(),
                        status: response.status().as_u16(),
                        detail: ": login refused".into(),
                    });
                }
            }
            Some(AuthScheme::Bearer { realm, service }) => {
                if !auth::realm_may_see_credentials(registry, realm, insecure) {
                    return Err(RegistryError::Token {
                        registry: registry.to_owned(),
                        realm: realm.to_string(),
                        reason: "the realm is on another host or not HTTPS: credentials are not sent there".into(),
                    });
                }
                // A fresh token proves the credentials; nothing is cached.
                let cache = TokenCache::default();
                auth::token(
                    &self.inner.transport,
                    &http,
                    &cache,
                    &TokenRequest {
                        registry,
                        realm,
                        service: service.as_deref(),
                        scopes: &[],
                        credential: Some(credential),
                        insecure,
                    },
                )
                .await?;
            }
        }
        credentials::store_credential(&self.inner.auth.login_file, registry, credential)?;
        self.inner
            .credentials
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(r, _), _| r != registry);
        Ok(())
    }

    /// Removes the stored credentials for `registry` from the login file.
    ///
    /// # Errors
    ///
    /// [`RegistryError::NotLoggedIn`] when there are none; the file cannot be
    /// read or written.
    pub fn logout(&self, registry: &str) -> Result<(), RegistryError> {
        credentials::remove_credential(&self.inner.auth.login_file, registry)
    }
}
