//! Authentication challenges and Bearer tokens: `WWW-Authenticate` parsing (RFC
//! 7235: several challenges, quoted and escaped parameters), token requests (GET
//! with Basic credentials, or an OAuth2 POST with a refresh token when an
//! identity token is stored), and a token cache per (registry, scope) with expiry.
//!
//! Stored credentials go only to a realm on the registry's own host (or Docker
//! Hub's known token host) and only over HTTPS unless the registry itself is
//! insecure; token requests never follow redirects.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::Method;
use url::Url;

use crate::credentials::Credential;
use crate::error::RegistryError;
use crate::transport::{Body, Transport};

/// Largest token response read (c/image's limit).
const TOKEN_LIMIT: u64 = 1 << 20;

/// Lifetime of a token whose response gives none (distribution's token spec).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// Tokens are dropped this long before they expire.
const EXPIRY_MARGIN: Duration = Duration::from_secs(5);

/// Token hosts known to serve a registry on another host.
const KNOWN_REALMS: &[(&str, &str)] = &[("docker.io", "auth.docker.io")];

/// One challenge of a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Challenge {
    /// Lowercase scheme: `basic`, `bearer`.
    pub(crate) scheme: String,
    /// Parameters with lowercase names.
    pub(crate) params: BTreeMap<String, String>,
}

impl Challenge {
    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
}

/// Parses every challenge of a `WWW-Authenticate` value. Unparseable tails are
/// dropped; a token68 value (`Basic abc==`) is kept under the name `token68`.
pub(crate) fn parse_challenges(header: &str) -> Vec<Challenge> {
    let bytes = header.as_bytes();
    let mut pos = 0;
    let mut out: Vec<Challenge> = Vec::new();
    let skip = |pos: &mut usize, set: &[u8]| {
        while *pos < bytes.len() && set.contains(&bytes[*pos]) {
            *pos += 1;
        }
    };
    let is_tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    let token = |pos: &mut usize| {
        let start = *pos;
        while *pos < bytes.len() && is_tchar(bytes[*pos]) {
            *pos += 1;
        }
        &header[start..*pos]
    };
    loop {
        skip(&mut pos, b" \t,");
        if pos >= bytes.len() {
            break;
        }
        let scheme = token(&mut pos);
        if scheme.is_empty() {
            break;
        }
        let mut challenge = Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params: BTreeMap::new(),
        };
        loop {
            skip(&mut pos, b" \t");
            let mark = pos;
            if challenge.params.is_empty() {
                // token68 (`Basic dXNlcjpwYXNz==`): base64-ish text ending in '='.
                let rest = &header[mark..];
                let end = rest.find(',').unwrap_or(rest.len());
                let candidate = rest[..end].trim();
                let body = candidate.trim_end_matches('=');
                let token68 = candidate.ends_with('=')
                    && !body.is_empty()
                    && body
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b));
                if token68 {
                    challenge
                        .params
                        .insert("token68".into(), candidate.to_owned());
                    pos = mark + end;
                    break;
                }
            }
            let name = token(&mut pos);
            skip(&mut pos, b" \t");
            if name.is_empty() || pos >= bytes.len() || bytes[pos] != b'=' {
                // The next challenge's scheme.
                pos = mark;
                break;
            }
            pos += 1;
            skip(&mut pos, b" \t");
            let value = if pos < bytes.len() && bytes[pos] == b'"' {
                pos += 1;
                let mut value = String::new();
                let mut chars = header[pos..].char_indices();
                let mut closed = false;
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, escaped)) = chars.next() {
                                value.push(escaped);
                            }
                        }
                        '"' => {
                            pos += i + 1;
                            closed = true;
                            break;
                        }
                        c => value.push(c),
                    }
                }
                if !closed {
                    pos = bytes.len();
                }
                value
            } else {
                token(&mut pos).to_owned()
            };
            challenge.params.insert(name.to_ascii_lowercase(), value);
            skip(&mut pos, b" \t");
            if pos < bytes.len() && bytes[pos] == b',' {
                pos += 1;
            } else if pos < bytes.len() && !is_tchar(bytes[pos]) {
                // Garbage: stop rather than loop.
                pos = bytes.len();
            }
        }
        out.push(challenge);
    }
    out
}

/// The challenges of every `WWW-Authenticate` header of a response.
pub(crate) fn challenges_of(headers: &HeaderMap) -> Vec<Challenge> {
    headers
        .get_all(reqwest::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(parse_challenges)
        .collect()
}

/// How a registry wants to be authenticated, learnt from its challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AuthScheme {
    /// `Basic`: send the stored credentials with every request.
    Basic,
    /// `Bearer`: get tokens from `realm` for `service`.
    Bearer {
        /// Token endpoint.
        realm: Url,
        /// `service` parameter, if the registry named one.
        service: Option<String>,
    },
}

impl AuthScheme {
    /// The scheme of the first challenge Wharf supports (Bearer before Basic).
    pub(crate) fn from_challenges(
        registry: &str,
        challenges: &[Challenge],
    ) -> Result<Option<Self>, RegistryError> {
        if let Some(bearer) = challenges.iter().find(|c| c.scheme == "bearer") {
            let realm = bearer
                .param("realm")
                .ok_or_else(|| RegistryError::Challenge {
                    registry: registry.to_owned(),
                    challenge: "Bearer challenge without realm".into(),
                })?;
            let realm = Url::parse(realm).map_err(|e| RegistryError::Challenge {
                registry: registry.to_owned(),
                challenge: format!("realm {realm:?} is not a URL: {e}"),
            })?;
            if !matches!(realm.scheme(), "https" | "http") {
                return Err(RegistryError::Challenge {
                    registry: registry.to_owned(),
                    challenge: format!("realm {realm} is not http(s)"),
                });
            }
            return Ok(Some(Self::Bearer {
                realm,
                service: bearer.param("service").map(str::to_owned),
            }));
        }
        if challenges.iter().any(|c| c.scheme == "basic") {
            return Ok(Some(Self::Basic));
        }
        match challenges.first() {
            Some(other) => Err(RegistryError::Challenge {
                registry: registry.to_owned(),
                challenge: format!("scheme {}", other.scheme),
            }),
            None => Ok(None),
        }
    }
}

/// `repository:<name>:<actions>`.
pub(crate) fn repository_scope(repository: &str, actions: &[&str]) -> String {
    format!("repository:{repository}:{}", actions.join(","))
}

/// A cached token.
#[derive(Debug, Clone)]
struct CachedToken {
    token: String,
    expires: Instant,
}

/// Tokens per (registry, scopes).
#[derive(Debug, Default)]
pub(crate) struct TokenCache {
    tokens: Mutex<HashMap<(String, String), CachedToken>>,
}

impl TokenCache {
    pub(crate) fn get(&self, registry: &str, scopes: &str) -> Option<String> {
        let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens
            .get(&(registry.to_owned(), scopes.to_owned()))
            .filter(|t| t.expires > Instant::now())
            .map(|t| t.token.clone())
    }

    fn put(&self, registry: &str, scopes: &str, token: String, lifetime: Duration) {
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens.insert(
            (registry.to_owned(), scopes.to_owned()),
            CachedToken {
                token,
                expires: Instant::now() + lifetime.saturating_sub(EXPIRY_MARGIN),
            },
        );
    }

    pub(crate) fn forget(&self, registry: &str, scopes: &str) {
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens.remove(&(registry.to_owned(), scopes.to_owned()));
    }
}

#[derive(Debug, serde::Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
    issued_at: Option<String>,
}

/// How long a token stays usable: `expires_in` (default 60 s), counted from
/// `issued_at` when the server gives one.
fn token_lifetime(expires_in: Option<u64>, issued_at: Option<&str>, now: SystemTime) -> Duration {
    let lifetime = expires_in
        .filter(|s| *s > 0)
        .map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs);
    let Some(issued) = issued_at.and_then(parse_rfc3339) else {
        return lifetime;
    };
    match (issued + lifetime).duration_since(now) {
        Ok(left) => left.min(lifetime),
        Err(_) => Duration::ZERO,
    }
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`.
fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let h = rest.get(1..3)?.parse::<i64>().ok()?;
            let m = rest.get(4..6)?.parse::<i64>().ok()?;
            sign * (h * 3600 + m * 60)
        }
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
    let secs = u64::try_from(secs).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

/// Whether stored credentials may be sent to `realm` for `registry`.
pub(crate) fn realm_may_see_credentials(registry: &str, realm: &Url, insecure: bool) -> bool {
    let registry_host = registry
        .rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(registry, |(host, _)| host);
    let Some(realm_host) = realm.host_str() else {
        return false;
    };
    let realm_host = realm_host.trim_start_matches('[').trim_end_matches(']');
    let registry_host = registry_host.trim_start_matches('[').trim_end_matches(']');
    let same = realm_host.eq_ignore_ascii_case(registry_host)
        || KNOWN_REALMS
            .iter()
            .any(|(r, t)| *r == registry_host && realm_host.eq_ignore_ascii_case(t));
    same && (realm.scheme() == "https" || insecure)
}

/// A token request's parameters.
#[derive(Debug)]
pub(crate) struct TokenRequest<'a> {
    pub(crate) registry: &'a str,
    pub(crate) realm: &'a Url,
    pub(crate) service: Option<&'a str>,
    pub(crate) scopes: &'a [String],
    pub(crate) credential: Option<&'a Credential>,
    pub(crate) insecure: bool,
}

/// Gets a token for `req.scopes`, from the cache or the realm.
pub(crate) async fn token(
    transport: &Transport,
    http: &reqwest::Client,
    cache: &TokenCache,
    req: &TokenRequest<'_>,
) -> Result<String, RegistryError> {
    let key = req.scopes.join(" ");
    if let Some(token) = cache.get(req.registry, &key) {
        return Ok(token);
    }
    let fail = |reason: String| RegistryError::Token {
        registry: req.registry.to_owned(),
        realm: req.realm.to_string(),
        reason,
    };
    if req.realm.scheme() != "https" && !req.insecure {
        return Err(fail(
            "the realm is not HTTPS and the registry is not configured insecure".into(),
        ));
    }
    let credential = req
        .credential
        .filter(|_| realm_may_see_credentials(req.registry, req.realm, req.insecure));
    if req.credential.is_some() && credential.is_none() {
        tracing::warn!(
            registry = req.registry,
            realm = %req.realm,
            "token realm is on another host: asking for an anonymous token"
        );
    }
    let response = match credential {
        Some(Credential::IdentityToken { token, .. }) => {
            let mut form = vec![
                ("grant_type", "refresh_token".to_owned()),
                ("refresh_token", token.clone()),
                ("client_id", "wharf".to_owned()),
            ];
            if let Some(service) = req.service {
                form.push(("service", service.to_owned()));
            }
            form.extend(req.scopes.iter().map(|s| ("scope", s.clone())));
            let body = form
                .iter()
                .map(|(k, v)| format!("{k}={}", form_encode(v)))
                .collect::<Vec<_>>()
                .join("&");
            let mut headers = HeaderMap::new();
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded; charset=utf-8"),
            );
            transport
                .send(
                    http,
                    &Method::POST,
                    req.realm,
                    &headers,
                    &Body::Bytes(body.into()),
                )
                .await?
        }
        _ => {
            let mut url = req.realm.clone();
            {
                let mut query = url.query_pairs_mut();
                if let Some(service) = req.service {
                    query.append_pair("service", service);
                }
                for scope in req.scopes {
                    query.append_pair("scope", scope);
                }
                if let Some(c) = credential {
                    query.append_pair("account", c.username());
                }
            }
            let mut headers = HeaderMap::new();
            if let Some(basic) = credential.and_then(Credential::basic_header) {
                let mut value = HeaderValue::from_str(&basic)
                    .map_err(|_| fail("credentials are not a valid header".into()))?;
                value.set_sensitive(true);
                headers.insert(AUTHORIZATION, value);
            }
            transport
                .send(http, &Method::GET, &url, &headers, &Body::Empty)
                .await?
        }
    };
    let status = response.status();
    let url = response.url().to_string();
    let body = crate::session::read_limited(response, TOKEN_LIMIT, "token response", &url).await?;
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body);
        let text: String = text.chars().take(200).collect();
        return Err(if status.as_u16() == 401 || status.as_u16() == 403 {
            RegistryError::Denied {
                registry: req.registry.to_owned(),
                repository: req.scopes.join(" "),
                url,
                status: status.as_u16(),
                detail: format!(": token server: {}", text.trim()),
            }
        } else {
            fail(format!("status {status}: {}", text.trim()))
        });
    }
    let parsed: TokenResponse =
        serde_json::from_slice(&body).map_err(|e| fail(format!("parse the response: {e}")))?;
    let token = parsed
        .token
        .filter(|t| !t.is_empty())
        .or(parsed.access_token.filter(|t| !t.is_empty()))
        .ok_or_else(|| fail("the response has no token".into()))?;
    let lifetime = token_lifetime(
        parsed.expires_in,
        parsed.issued_at.as_deref(),
        SystemTime::now(),
    );
    cache.put(req.registry, &key, token.clone(), lifetime);
    Ok(token)
}

/// Percent-encodes a form value.
fn form_encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(c: &Challenge) -> Vec<(&str, &str)> {
        c.params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn bearer_challenge_with_quoted_params() {
        let c = parse_challenges(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push",error="insufficient_scope""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(
            params(&c[0]),
            [
                ("error", "insufficient_scope"),
                ("realm", "https://auth.example/token"),
                ("scope", "repository:a/b:pull,push"),
                ("service", "registry.example"),
            ]
        );
    }

    #[test]
    fn several_challenges_escapes_and_spacing() {
        let c = parse_challenges(
            r#"Basic realm="say \"hi\", ok" , Bearer  realm = "https://a/t" , service=unquoted, Newauth"#,
        );
        assert_eq!(c.len(), 3, "{c:?}");
        assert_eq!(c[0].scheme, "basic");
        assert_eq!(c[0].param("realm"), Some(r#"say "hi", ok"#));
        assert_eq!(c[1].param("realm"), Some("https://a/t"));
        assert_eq!(c[1].param("service"), Some("unquoted"));
        assert_eq!(c[2].scheme, "newauth");
        assert!(c[2].params.is_empty());
    }

    #[test]
    fn token68_and_garbage_do_not_hang() {
        let c = parse_challenges("Basic dXNlcjpwYXNz==, Bearer realm=\"x\"");
        assert_eq!(c[0].param("token68"), Some("dXNlcjpwYXNz=="));
        assert_eq!(c[1].param("realm"), Some("x"));
        assert!(parse_challenges("").is_empty());
        let _ = parse_challenges("Bearer realm=\"unterminated");
        let _ = parse_challenges("Bearer realm=x;;;{}");
        let _ = parse_challenges("=,=,\"\"");
    }

    #[test]
    fn scheme_prefers_bearer_and_needs_a_realm() {
        let c = parse_challenges(r#"Basic realm="r", Bearer realm="https://h/token",service="s""#);
        assert_eq!(
            AuthScheme::from_challenges("h", &c).unwrap(),
            Some(AuthScheme::Bearer {
                realm: Url::parse("https://h/token").unwrap(),
                service: Some("s".into())
            })
        );
        let c = parse_challenges("Bearer service=\"s\"");
        assert!(AuthScheme::from_challenges("h", &c).is_err());
        let c = parse_challenges("Basic realm=\"r\"");
        assert_eq!(
            AuthScheme::from_challenges("h", &c).unwrap(),
            Some(AuthScheme::Basic)
        );
        assert_eq!(AuthScheme::from_challenges("h", &[]).unwrap(), None);
        let c = parse_challenges("Negotiate");
        assert!(AuthScheme::from_challenges("h", &c).is_err());
    }

    #[test]
    fn credentials_go_only_to_the_registry_host_over_https() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert!(realm_may_see_credentials(
            "reg.example:5000",
            &u("https://reg.example/token"),
            false
        ));
        assert!(!realm_may_see_credentials(
            "reg.example",
            &u("http://reg.example/token"),
            false
        ));
        assert!(realm_may_see_credentials(
            "127.0.0.1:5000",
            &u("http://127.0.0.1:9/token"),
            true
        ));
        assert!(!realm_may_see_credentials(
            "reg.example",
            &u("https://attacker.example/t"),
            false
        ));
        assert!(!realm_may_see_credentials(
            "reg.example",
            &u("https://reg.example.attacker/t"),
            false
        ));
        assert!(realm_may_see_credentials(
            "docker.io",
            &u("https://auth.docker.io/token"),
            false
        ));
    }

    #[test]
    fn token_lifetime_uses_expires_in_and_issued_at() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_100);
        assert_eq!(token_lifetime(None, None, now), Duration::from_secs(60));
        assert_eq!(
            token_lifetime(Some(300), None, now),
            Duration::from_secs(300)
        );
        // 2023-11-14T22:13:20Z is 1_700_000_000.
        assert_eq!(
            token_lifetime(Some(300), Some("2023-11-14T22:13:20Z"), now),
            Duration::from_secs(200)
        );
        assert_eq!(
            token_lifetime(Some(300), Some("2023-11-14T23:13:20.123+01:00"), now),
            Duration::from_secs(200)
        );
        assert_eq!(
            token_lifetime(Some(60), Some("2020-01-01T00:00:00Z"), now),
            Duration::ZERO
        );
        assert_eq!(
            token_lifetime(Some(60), Some("garbage"), now),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn cache_expires_and_forgets() {
        let cache = TokenCache::default();
        cache.put("r", "s", "t".into(), Duration::from_secs(60));
        assert_eq!(cache.get("r", "s").as_deref(), Some("t"));
        assert_eq!(cache.get("r", "other"), None);
        cache.forget("r", "s");
        assert_eq!(cache.get("r", "s"), None);
        cache.put("r", "s", "t".into(), Duration::from_secs(1));
        assert_eq!(
            cache.get("r", "s"),
            None,
            "shorter than the margin: expired"
        );
    }
}
