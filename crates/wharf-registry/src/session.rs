//! A session with one repository on one registry endpoint: the scheme chosen by
//! pinging `/v2/` (HTTPS, or for an insecure registry unverified HTTPS then plain
//! HTTP), the auth scheme learnt from its challenge, and requests that carry the
//! right `Authorization`, re-authenticate once on 401 (widening the token scope on
//! `insufficient_scope`), and follow redirects by hand so that credentials never
//! reach another origin (scheme, host or port), not even after a later hop
//! comes back.

use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt as _;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_LENGTH, LOCATION};
use reqwest::{Method, Response, StatusCode};
use url::Url;

use crate::auth::{self, AuthScheme, TokenRequest};
use crate::client::Inner;
use crate::credentials::Credential;
use crate::error::RegistryError;
use crate::transport::Body;

/// Redirect hops followed for one request.
const MAX_REDIRECTS: usize = 10;

/// Largest error body read from a registry.
const ERROR_BODY_LIMIT: u64 = 1 << 20;

/// What a ping of `/v2/` found.
#[derive(Debug, Clone)]
pub(crate) struct PingResult {
    /// `https://host/` or `http://host/`.
    pub(crate) base: Url,
    /// Whether TLS is verified.
    pub(crate) verify: bool,
    /// The auth scheme of the challenge, if `/v2/` wanted one.
    pub(crate) scheme: Option<AuthScheme>,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Session {
    inner: Arc<Inner>,
    /// The registry as named in references (`docker.io`, `127.0.0.1:5000`).
    pub(crate) registry: String,
    /// The repository.
    pub(crate) repository: String,
    base: Url,
    http: reqwest::Client,
    insecure: bool,
    credential: Option<Credential>,
    scheme: Mutex<Option<AuthScheme>>,
    scopes: Mutex<Vec<String>>,
}

/// The host to connect to for `registry` (Docker Hub's API lives elsewhere).
pub(crate) fn api_host(registry: &str) -> &str {
    if registry == "docker.io" {
        "registry-1.docker.io"
    } else {
        registry
    }
}

/// `scheme://host:port` of a URL, for same-origin checks.
fn origin(url: &Url) -> (String, Option<String>, Option<u16>) {
    (
        url.scheme().to_owned(),
        url.host_str().map(str::to_ascii_lowercase),
        url.port_or_known_default(),
    )
}

impl Session {
    pub(crate) fn new(
        inner: Arc<Inner>,
        registry: &str,
        repository: &str,
        ping: PingResult,
        insecure: bool,
        credential: Option<Credential>,
        scopes: Vec<String>,
    ) -> Result<Self, RegistryError> {
        let http = inner.transport.client(api_host(registry), ping.verify)?;
        Ok(Self {
            inner,
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            base: ping.base,
            http,
            insecure,
            credential,
            scheme: Mutex::new(ping.scheme),
            scopes: Mutex::new(scopes),
        })
    }

    /// `<base>v2/<repository>/<tail>`.
    pub(crate) fn url(&self, tail: &str) -> Result<Url, RegistryError> {
        self.base
            .join(&format!("v2/{}/{tail}", self.repository))
            .map_err(|e| RegistryError::invalid(format!("bad URL for {}: {e}", self.repository)))
    }

    /// Resolves a `Location` header value against `base` (relative or absolute).
    pub(crate) fn resolve(&self, base: &Url, location: &str) -> Result<Url, RegistryError> {
        base.join(location).map_err(|e| {
            RegistryError::invalid(format!(
                "registry {} sent an invalid Location {location:?}: {e}",
                self.registry
            ))
        })
    }

    /// Adds scopes the next token must cover (a cross-repository mount source).
    pub(crate) fn add_scope(&self, scope: String) {
        let mut scopes = self.scopes.lock().unwrap_or_else(|p| p.into_inner());
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }

    fn scopes(&self) -> Vec<String> {
        self.scopes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn scheme(&self) -> Option<AuthScheme> {
        self.scheme
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The `Authorization` value for the registry, if any is needed and known.
    async fn authorization(&self) -> Result<Option<HeaderValue>, RegistryError> {
        let value = match self.scheme() {
            None => None,
            Some(AuthScheme::Basic) => self.credential.as_ref().and_then(Credential::basic_header),
            Some(AuthScheme::Bearer { realm, service }) => {
                let scopes = self.scopes();
                let token = auth::token(
                    &self.inner.transport,
                    &self.http,
                    &self.inner.tokens,
                    &TokenRequest {
                        registry: &self.registry,
                        realm: &realm,
                        service: service.as_deref(),
                        scopes: &scopes,
                        credential: self.credential.as_ref(),
                        insecure: self.insecure,
                    },
                )
                .await?;
                Some(format!("Bearer {token}"))
            }
        };
        value
            .map(|v| {
                let mut header = HeaderValue::from_str(&v).map_err(|_| {
                    RegistryError::invalid(format!(
                        "credentials for {} are not a valid HTTP header",
                        self.registry
                    ))
                })?;
                header.set_sensitive(true);
                Ok(header)
            })
            .transpose()
    }

    /// Sends a request with authentication, re-authenticating on 401 and following
    /// redirects. Returns the final response whatever its status.
    pub(crate) async fn send(
        &self,
        method: Method,
        url: Url,
        headers: HeaderMap,
        body: Body,
    ) -> Result<Response, RegistryError> {
        let mut reauthenticated = 0;
        loop {
            let authorization = self.authorization().await?;
            let sent_auth = authorization.is_some();
            let (response, left_origin) = self
                .follow(
                    method.clone(),
                    url.clone(),
                    &headers,
                    body.clone(),
                    authorization,
                )
                .await?;
            // A 401 from a redirect target is never answered with credentials.
            if response.status() != StatusCode::UNAUTHORIZED || left_origin || reauthenticated >= 2
            {
                return Ok(response);
            }
            let challenges = auth::challenges_of(response.headers());
            let Some(scheme) = AuthScheme::from_challenges(&self.registry, &challenges)? else {
                return Ok(response);
            };
            match &scheme {
                AuthScheme::Basic => {
                    if self.credential.is_none() || sent_auth {
                        return Ok(response);
                    }
                }
                AuthScheme::Bearer { .. } => {
                    let bearer = challenges.iter().find(|c| c.scheme == "bearer");
                    let wider = bearer.and_then(|c| c.param("scope")).map(str::to_owned);
                    let old_key = self.scopes().join(" ");
                    let mut grew = false;
                    if let Some(scope) = wider {
                        for s in scope.split(' ').filter(|s| !s.is_empty()) {
                            let before = self.scopes().len();
                            self.add_scope(s.to_owned());
                            grew |= self.scopes().len() != before;
                        }
                    }
                    if sent_auth && !grew && reauthenticated > 0 {
                        return Ok(response);
                    }
                    self.inner.tokens.forget(&self.registry, &old_key);
                }
            }
            *self.scheme.lock().unwrap_or_else(|p| p.into_inner()) = Some(scheme);
            reauthenticated += 1;
            drop(response);
        }
    }

    /// Sends and follows redirects; returns the response and whether it came from
    /// another origin than the request's (credentials were dropped).
    async fn follow(
        &self,
        mut method: Method,
        mut url: Url,
        headers: &HeaderMap,
        mut body: Body,
        mut authorization: Option<HeaderValue>,
    ) -> Result<(Response, bool), RegistryError> {
        let start = origin(&url);
        let mut left_origin = false;
        for _ in 0..=MAX_REDIRECTS {
            let mut request_headers = headers.clone();
            if let Some(a) = &authorization {
                request_headers.insert(AUTHORIZATION, a.clone());
            }
            let response = self
                .inner
                .transport
                .send(&self.http, &method, &url, &request_headers, &body)
                .await?;
            let status = response.status();
            if !status.is_redirection() || status == StatusCode::NOT_MODIFIED {
                return Ok((response, left_origin));
            }
            let Some(location) = response
                .headers()
                .get(LOCATION)
                .and_then(|l| l.to_str().ok())
            else {
                return Ok((response, left_origin));
            };
            let next = self.resolve(&url, location)?;
            if url.scheme() == "https" && next.scheme() != "https" && !self.insecure {
                return Err(RegistryError::invalid(format!(
                    "registry {} redirected {url} to insecure {next}",
                    self.registry
                )));
            }
            if !matches!(next.scheme(), "https" | "http") {
                return Err(RegistryError::invalid(format!(
                    "registry {} redirected to unsupported URL {next}",
                    self.registry
                )));
            }
            if origin(&next) != start || left_origin {
                // Once dropped, credentials stay dropped for the rest of the chain.
                authorization = None;
                left_origin = true;
            }
            if status == StatusCode::SEE_OTHER && method != Method::HEAD {
                method = Method::GET;
                body = Body::Empty;
            }
            tracing::debug!(from = %url, to = %next, "following redirect");
            url = next;
        }
        Err(RegistryError::invalid(format!(
            "registry {} redirected more than {MAX_REDIRECTS} times for {url}",
            self.registry
        )))
    }

    /// An error for an unexpected response: `Denied` for 401/403, else `Status`,
    /// with the registry's error code and message when its body has them.
    pub(crate) async fn status_error(&self, op: &'static str, response: Response) -> RegistryError {
        let status = response.status().as_u16();
        let url = response.url().to_string();
        let detail = match read_limited(response, ERROR_BODY_LIMIT, "error body", &url).await {
            Ok(body) => error_detail(&body),
            Err(_) => String::new(),
        };
        if status == 401 || status == 403 {
            return RegistryError::Denied {
                registry: self.registry.clone(),
                repository: self.repository.clone(),
                url,
                status,
                detail,
            };
        }
        RegistryError::Status {
            op,
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            url,
            status,
            detail,
        }
    }
}

/// `: CODE: message` from a distribution error body, or empty.
fn error_detail(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorEntry>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorEntry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let Ok(parsed) = serde_json::from_slice::<Errors>(body) else {
        return String::new();
    };
    parsed
        .errors
        .first()
        .map(|e| {
            let text = format!("{}: {}", e.code, e.message);
            let text: String = text.chars().take(300).collect();
            format!(
                ": {}",
                text.trim_matches(|c: char| c == ':' || c.is_whitespace())
            )
        })
        .unwrap_or_default()
}

/// Reads a whole body, refusing more than `limit` bytes.
pub(crate) async fn read_limited(
    response: Response,
    limit: u64,
    what: &'static str,
    url: &str,
) -> Result<Bytes, RegistryError> {
    let too_large = || RegistryError::TooLarge {
        what,
        url: url.to_owned(),
        limit,
    };
    let declared = response
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let mut out = BytesMut::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|source| RegistryError::Request {
            method: "read".into(),
            url: url.to_owned(),
            source,
        })?;
        if out.len() as u64 + chunk.len() as u64 > limit {
            return Err(too_large());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_details_are_extracted_and_bounded() {
        let body =
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#;
        assert_eq!(error_detail(body), ": MANIFEST_UNKNOWN: manifest unknown");
        assert_eq!(error_detail(b"<html>"), "");
        let long = format!(
            r#"{{"errors":[{{"code":"X","message":"{}"}}]}}"#,
            "a".repeat(1000)
        );
        assert!(error_detail(long.as_bytes()).len() < 310);
    }

    #[test]
    fn origins_compare_scheme_host_and_port() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert_eq!(
            origin(&u("https://a.io/x")),
            origin(&u("https://A.io:443/y"))
        );
        assert_ne!(origin(&u("https://a.io/x")), origin(&u("http://a.io/x")));
        assert_ne!(
            origin(&u("http://127.0.0.1:80/")),
            origin(&u("http://127.0.0.1:81/"))
        );
        assert_eq!(api_host("docker.io"), "registry-1.docker.io");
    }
}
