//! HTTP transport: one reqwest client per (registry, verification) with the
//! registry's extra CA certificates from `certs.d`, redirects never followed by
//! reqwest (the session follows them itself, see `session.rs`), and retries with
//! exponential backoff and jitter on connection errors, 408, 429 and 5xx,
//! honouring `Retry-After`.

use std::collections::HashMap;
use std::hash::{BuildHasher as _, Hasher as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Method, Response, StatusCode};
use url::Url;

use crate::error::RegistryError;

/// Where per-registry CA certificates are looked up by default
/// (`<dir>/<host[:port]>/*.crt`).
pub const DEFAULT_CERT_DIRS: &[&str] = &["/etc/containers/certs.d", "/etc/docker/certs.d"];

/// How often and how patiently failed requests are retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// Delay before the first retry; doubled each time, with jitter.
    pub initial_delay: Duration,
    /// Upper bound of one delay, `Retry-After` included.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

/// A request body that can be produced again for each attempt.
#[derive(Clone)]
pub(crate) enum Body {
    /// No body.
    Empty,
    /// Bytes in memory (cheap to clone).
    Bytes(Bytes),
    /// A stream opened afresh per attempt (a blob read from the push source).
    Stream(Arc<dyn Fn() -> Result<reqwest::Body, RegistryError> + Send + Sync>),
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Empty => f.write_str("Empty"),
            Self::Bytes(b) => write!(f, "Bytes({})", b.len()),
            Self::Stream(_) => f.write_str("Stream"),
        }
    }
}

/// Builds and caches HTTP clients and sends requests with retries.
#[derive(Debug)]
pub(crate) struct Transport {
    cert_dirs: Vec<PathBuf>,
    retry: RetryPolicy,
    user_agent: String,
    clients: Mutex<HashMap<(String, bool), reqwest::Client>>,
}

impl Transport {
    pub(crate) fn new(cert_dirs: Vec<PathBuf>, retry: RetryPolicy, user_agent: String) -> Self {
        Self {
            cert_dirs,
            retry,
            user_agent,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The client for `host` (`host[:port]`): verifying TLS with the system roots
    /// plus the host's `certs.d` CAs, or accepting any certificate.
    pub(crate) fn client(
        &self,
        host: &str,
        verify: bool,
    ) -> Result<reqwest::Client, RegistryError> {
        let key = (host.to_owned(), verify);
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(self.user_agent.clone())
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(120))
            .pool_idle_timeout(Duration::from_secs(90));
        if verify {
            for cert in ca_certificates(&self.cert_dirs, host)? {
                builder = builder.add_root_certificate(cert);
            }
        } else {
            builder = builder.danger_accept_invalid_certs(true);
        }
        let client = builder
            .build()
            .map_err(|source| RegistryError::BuildClient {
                registry: host.to_owned(),
                source,
            })?;
        clients.insert(key, client.clone());
        Ok(client)
    }

    /// Sends one request, retrying connection failures and retryable statuses.
    /// Returns the last response (whatever its status) or the last error.
    pub(crate) async fn send(
        &self,
        client: &reqwest::Client,
        method: &Method,
        url: &Url,
        headers: &HeaderMap,
        body: &Body,
    ) -> Result<Response, RegistryError> {
        let attempts = self.retry.max_attempts.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = client
                .request(method.clone(), url.clone())
                .headers(headers.clone());
            request = match body {
                Body::Empty => request,
                Body::Bytes(bytes) => request.body(bytes.clone()),
                Body::Stream(open) => request.body(open()?),
            };
            let last = attempt >= attempts;
            match request.send().await {
                Ok(response) if !last && is_retryable(response.status()) => {
                    let delay = retry_after(response.headers())
                        .unwrap_or_else(|| self.backoff(attempt))
                        .min(self.retry.max_delay);
                    tracing::debug!(%url, status = response.status().as_u16(), ?delay, attempt, "retrying");
                    drop(response);
                    tokio::time::sleep(delay).await;
                }
                Ok(response) => return Ok(response),
                Err(e)
                    if !last
                        && (e.is_connect() || e.is_timeout() || e.is_request())
                        && !is_tls_refusal(&e) =>
                {
                    let delay = self.backoff(attempt);
                    tracing::debug!(%url, error = %e, ?delay, attempt, "retrying");
                    tokio::time::sleep(delay).await;
                }
                Err(source) => {
                    return Err(RegistryError::Request {
                        method: method.to_string(),
                        url: url.to_string(),
                        source,
                    })
                }
            }
        }
    }

    /// Delay before retry number `attempt` (1-based): `initial * 2^(attempt-1)`,
    /// capped, scaled by a random factor in [0.5, 1).
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .retry
            .initial_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.retry.max_delay);
        exp.mul_f64(0.5 + jitter() / 2.0)
    }
}

/// A number in [0, 1) that differs between calls and processes.
fn jitter() -> f64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// 408, 429 and 5xx other than 501 and 505 (which will not change).
/// A certificate the client refused (unknown CA, wrong name, expired): it
/// will be refused again, so it is not retried.
fn is_tls_refusal(e: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(mut err) = source {
        // io::Error's source() skips the error it wraps (and hyper-rustls
        // nests two): look inside.
        while let Some(inner) = err
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            err = inner;
        }
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return matches!(
                tls,
                rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented
            );
        }
        source = err.source();
    }
    false
}

pub(crate) fn is_retryable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 429)
        || (status.is_server_error()
            && status != StatusCode::NOT_IMPLEMENTED
            && status != StatusCode::HTTP_VERSION_NOT_SUPPORTED)
}

/// `Retry-After` as seconds or an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// The CA certificates for `host` under each of `dirs` (`<dir>/<host>/*.crt`).
pub(crate) fn ca_certificates(
    dirs: &[PathBuf],
    host: &str,
) -> Result<Vec<reqwest::Certificate>, RegistryError> {
    let mut out = Vec::new();
    for dir in dirs {
        let host_dir = dir.join(host);
        let entries = match fs_err::read_dir(&host_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(RegistryError::ReadCertificate {
                    path: host_dir,
                    source,
                })
            }
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "crt"))
            .collect();
        files.sort();
        for file in files {
            out.extend(read_certificates(&file)?);
        }
    }
    Ok(out)
}

fn read_certificates(path: &Path) -> Result<Vec<reqwest::Certificate>, RegistryError> {
    let pem = fs_err::read(path).map_err(|source| RegistryError::ReadCertificate {
        path: path.to_owned(),
        source,
    })?;
    let invalid = |reason: String| RegistryError::ParseCertificate {
        path: path.to_owned(),
        reason,
    };
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| invalid(e.to_string()))?;
    if certs.is_empty() {
        return Err(invalid("no PEM certificate in the file".into()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retryable_statuses() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(is_retryable(StatusCode::from_u16(s).unwrap()), "{s}");
        }
        for s in [200, 401, 404, 501, 505] {
            assert!(!is_retryable(StatusCode::from_u16(s).unwrap()), "{s}");
        }
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        let future = SystemTime::now() + Duration::from_secs(120);
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_str(&httpdate::fmt_http_date(future)).unwrap(),
        );
        let d = retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(100) && d <= Duration::from_secs(120),
            "{d:?}"
        );
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        let t = Transport::new(
            Vec::new(),
            RetryPolicy {
                max_attempts: 5,
                initial_delay: Duration::from_millis(100),
                max_delay: Duration::from_millis(350),
            },
            "t".into(),
        );
        for _ in 0..20 {
            let first = t.backoff(1);
            assert!(first >= Duration::from_millis(50) && first < Duration::from_millis(100));
            let third = t.backoff(3);
            assert!(third >= Duration::from_millis(175) && third < Duration::from_millis(350));
            assert!(t.backoff(30) < Duration::from_millis(350));
        }
    }

    #[test]
    fn certificates_are_read_per_host() {
        let dir = tempfile::tempdir().unwrap();
        assert!(ca_certificates(&[dir.path().to_owned()], "h:1")
            .unwrap()
            .is_empty());
        let host = dir.path().join("h:1");
        fs_err::create_dir(&host).unwrap();
        fs_err::write(host.join("ca.crt"), "not a certificate").unwrap();
        let err = ca_certificates(&[dir.path().to_owned()], "h:1").unwrap_err();
        assert!(err.to_string().starts_with("parse certificate"), "{err}");
    }
}
