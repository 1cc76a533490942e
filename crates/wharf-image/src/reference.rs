//! Image references: `[registry/]repository[:tag][@digest]`, the grammar of
//! `distribution/reference`, normalised as Docker does (`busybox` →
//! `docker.io/library/busybox:latest`).

use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use crate::digest::Digest;
use crate::error::ImageError;

/// The registry short names expand to.
pub const DOCKER_HUB: &str = "docker.io";
/// The tag a reference without tag or digest gets.
pub const DEFAULT_TAG: &str = "latest";
/// distribution/reference's limit on `registry/repository`.
const NAME_TOTAL_LENGTH_MAX: usize = 255;
/// Longest tag: `[\w][\w.-]{0,127}`.
const TAG_MAX: usize = 128;

/// A validated image reference.
///
/// Equality and hashing look at registry, repository, tag and digest only
/// (`busybox` and `docker.io/library/busybox` are the same image).
#[derive(Debug, Clone)]
pub struct ImageRef {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
    /// The user named the registry.
    qualified: bool,
    /// The repository path as the user typed it when unqualified (before
    /// Docker Hub's `library/`), to rebase onto a search registry.
    typed_path: String,
}

impl ImageRef {
    /// Parses and normalises a reference. A reference with neither tag nor
    /// digest gets the tag `latest`.
    pub fn parse(s: &str) -> Result<ImageRef, ImageError> {
        let invalid = |reason| ImageError::InvalidReference {
            reference: s.to_string(),
            reason,
        };
        if s.is_empty() {
            return Err(invalid("empty reference"));
        }
        if s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(invalid(
                "a 64-digit hexadecimal string is an image id, not a repository name",
            ));
        }
        let (name_tag, digest) = match s.split_once('@') {
            Some((n, d)) => {
                let digest = Digest::parse(d).map_err(|_| {
                    invalid("the digest must be sha256:<64 hex digits> or sha512:<128 hex digits>")
                })?;
                (n, Some(digest))
            }
            None => (s, None),
        };
        let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_tag[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                (&name_tag[..at], Some(&name_tag[at + 1..]))
            }
            None => (name_tag, None),
        };
        if let Some(tag) = tag {
            validate_tag(tag).map_err(invalid)?;
        }
        if name.is_empty() {
            return Err(invalid("missing repository name"));
        }
        let (registry, path, qualified) = split_registry(name);
        validate_registry(registry).map_err(invalid)?;
        if path.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(invalid("repository name must be lowercase"));
        }
        validate_path(path).map_err(invalid)?;
        let registry = if registry == "index.docker.io" {
            DOCKER_HUB
        } else {
            registry
        };
        let repository = hub_repository(registry, path);
        if registry.len() + 1 + repository.len() > NAME_TOTAL_LENGTH_MAX {
            return Err(invalid(
                "repository name must not be more than 255 characters",
            ));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_TAG.to_string()),
        };
        Ok(ImageRef {
            registry: registry.to_string(),
            repository,
            tag,
            digest,
            qualified,
            typed_path: path.to_string(),
        })
    }

    /// The registry host (and port): `docker.io`, `127.0.0.1:5000`, `localhost`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository path inside the registry: `library/busybox`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if any.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if the reference pins one.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// Whether the user named a registry (an unqualified name is tried
    /// against the unqualified-search registries).
    pub fn is_qualified(&self) -> bool {
        self.qualified
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same image at another registry (a search registry or a mirror).
    /// An unqualified name is rebased as typed (`busybox` on `quay.io` is
    /// `quay.io/busybox`, on Docker Hub `docker.io/library/busybox`); a
    /// qualified one keeps its repository path.
    pub fn with_registry(&self, registry: &str) -> ImageRef {
        let repository = if self.qualified {
            self.repository.clone()
        } else {
            hub_repository(registry, &self.typed_path)
        };
        ImageRef {
            registry: registry.to_string(),
            repository,
            tag: self.tag.clone(),
            digest: self.digest.clone(),
            qualified: true,
            typed_path: self.typed_path.clone(),
        }
    }

    /// The same repository pinned to `d` (the tag is kept for display).
    pub fn with_digest(&self, d: Digest) -> ImageRef {
        ImageRef {
            digest: Some(d),
            ..self.clone()
        }
    }

    /// The same repository with tag `tag` and no digest. `tag` must be valid.
    pub fn with_tag(&self, tag: &str) -> Result<ImageRef, ImageError> {
        validate_tag(tag).map_err(|reason| ImageError::InvalidReference {
            reference: format!("{}:{tag}", self.name()),
            reason,
        })?;
        Ok(ImageRef {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        })
    }

    /// The short form Docker prints: `busybox:latest`, `quay.io/a/b:1`.
    pub fn familiar(&self) -> String {
        let mut out = if self.registry == DOCKER_HUB {
            match self.repository.strip_prefix("library/") {
                Some(rest) if !rest.contains('/') => rest.to_string(),
                _ => self.repository.clone(),
            }
        } else {
            self.name()
        };
        if let Some(tag) = &self.tag {
            out.push(':');
            out.push_str(tag);
        }
        if let Some(d) = &self.digest {
            out.push('@');
            out.push_str(d.as_str());
        }
        out
    }
}

impl PartialEq for ImageRef {
    fn eq(&self, other: &Self) -> bool {
        self.registry == other.registry
            && self.repository == other.repository
            && self.tag == other.tag
            && self.digest == other.digest
    }
}

impl Eq for ImageRef {}

impl Hash for ImageRef {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.registry.hash(state);
        self.repository.hash(state);
        self.tag.hash(state);
        self.digest.hash(state);
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl FromStr for ImageRef {
    type Err = ImageError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ImageRef::parse(s)
    }
}

/// Docker's rule: the first component is a registry when it contains `.`
/// or `:`, is `localhost`, or has an uppercase letter (repository paths are
/// lowercase). Returns (registry, path, qualified).
fn split_registry(name: &str) -> (&str, &str, bool) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (first, rest, true)
        }
        _ => (DOCKER_HUB, name, false),
    }
}

/// Docker Hub's official images live under `library/`.
fn hub_repository(registry: &str, path: &str) -> String {
    if registry == DOCKER_HUB && !path.contains('/') {
        format!("library/{path}")
    } else {
        path.to_string()
    }
}

fn validate_tag(tag: &str) -> Result<(), &'static str> {
    let bytes = tag.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    match bytes.first() {
        None => Err("empty tag"),
        Some(&b) if !word(b) => Err("a tag starts with a letter, digit or '_'"),
        _ if bytes.len() > TAG_MAX => Err("a tag has at most 128 characters"),
        _ if !bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-') => {
            Err("a tag has only letters, digits, '_', '.' and '-'")
        }
        _ => Ok(()),
    }
}

/// `host[:port]` where host is a domain name, an IPv4 address or `[IPv6]`.
fn validate_registry(registry: &str) -> Result<(), &'static str> {
    const BAD: &str = "invalid registry host (expected host[:port])";
    let (host, port) = if let Some(rest) = registry.strip_prefix('[') {
        let (v6, after) = rest.split_once(']').ok_or(BAD)?;
        if v6.is_empty() || !v6.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return Err(BAD);
        }
        match after {
            "" => (None, None),
            p => (None, Some(p.strip_prefix(':').ok_or(BAD)?)),
        }
    } else {
        match registry.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(registry), None),
        }
    };
    if let Some(host) = host {
        let component_ok = |c: &str| {
            let b = c.as_bytes();
            !b.is_empty()
                && b.iter().all(|&x| x.is_ascii_alphanumeric() || x == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        };
        if !host.split('.').all(component_ok) {
            return Err(BAD);
        }
    }
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err("invalid registry port (expected digits)");
        }
    }
    Ok(())
}

/// Each component: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn validate_path(path: &str) -> Result<(), &'static str> {
    const BAD: &str = "invalid repository path (components are lowercase letters and digits, separated by '.', '_', '__' or '-')";
    for component in path.split('/') {
        let b = component.as_bytes();
        if b.is_empty() {
            return Err(BAD);
        }
        let mut i = 0;
        let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
        loop {
            let start = i;
            while i < b.len() && alnum(b[i]) {
                i += 1;
            }
            if i == start {
                return Err(BAD);
            }
            if i == b.len() {
                break;
            }
            let sep_start = i;
            while i < b.len() && !alnum(b[i]) {
                i += 1;
            }
            let sep = &component[sep_start..i];
            let sep_ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|x| x == b'-');
            if !sep_ok || i == b.len() {
                return Err(BAD);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn full(s: &str) -> String {
        ImageRef::parse(s).unwrap().to_string()
    }

    #[test]
    fn normalises_docker_hub_names() {
        assert_eq!(full("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(full("ubuntu:22.04"), "docker.io/library/ubuntu:22.04");
        assert_eq!(full("library/ubuntu"), "docker.io/library/ubuntu:latest");
        assert_eq!(full("foo/bar"), "docker.io/foo/bar:latest");
        assert_eq!(
            full("docker.io/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            full("index.docker.io/busybox:1"),
            "docker.io/library/busybox:1"
        );
        let r = ImageRef::parse("busybox").unwrap();
        assert!(!r.is_qualified());
        assert_eq!(r.registry(), "docker.io");
        assert_eq!(r.repository(), "library/busybox");
        assert_eq!(r.tag(), Some("latest"));
        assert_eq!(r.familiar(), "busybox:latest");
        assert!(ImageRef::parse("docker.io/busybox").unwrap().is_qualified());
        assert_eq!(r, ImageRef::parse("docker.io/library/busybox").unwrap());
    }

    #[test]
    fn registries_with_ports_and_localhost() {
        let r = ImageRef::parse("localhost:5000/foo/bar:v1").unwrap();
        assert_eq!(r.registry(), "localhost:5000");
        assert_eq!(r.repository(), "foo/bar");
        assert_eq!(r.tag(), Some("v1"));
        let r = ImageRef::parse("localhost/foo").unwrap();
        assert_eq!(r.registry(), "localhost");
        assert_eq!(r.repository(), "foo");
        assert_eq!(r.familiar(), "localhost/foo:latest");
        let r = ImageRef::parse("127.0.0.1:5000/a/b").unwrap();
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "a/b");
        let r = ImageRef::parse("[::1]:5000/x").unwrap();
        assert_eq!(r.registry(), "[::1]:5000");
        // Without a slash, ":5000" is a tag (Docker reads it the same way).
        assert_eq!(full("localhost:5000"), "docker.io/library/localhost:5000");
        // An uppercase first component is a registry, not a Hub path.
        assert_eq!(
            ImageRef::parse("Example.COM/foo").unwrap().registry(),
            "Example.COM"
        );
    }

    #[test]
    fn tag_and_digest() {
        let r = ImageRef::parse(&format!("quay.io/a/b:1.0@{D}")).unwrap();
        assert_eq!(r.tag(), Some("1.0"));
        assert_eq!(r.digest().unwrap().as_str(), D);
        assert_eq!(r.to_string(), format!("quay.io/a/b:1.0@{D}"));
        let r = ImageRef::parse(&format!("busybox@{D}")).unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.to_string(), format!("docker.io/library/busybox@{D}"));
        assert_eq!(r.familiar(), format!("busybox@{D}"));
    }

    #[test]
    fn rebases_onto_search_registries_and_mirrors() {
        let r = ImageRef::parse("busybox:1").unwrap();
        assert_eq!(r.with_registry("quay.io").to_string(), "quay.io/busybox:1");
        assert_eq!(
            r.with_registry("docker.io").to_string(),
            "docker.io/library/busybox:1"
        );
        let q = ImageRef::parse("docker.io/library/busybox:1").unwrap();
        assert_eq!(
            q.with_registry("mirror.local:5000").to_string(),
            "mirror.local:5000/library/busybox:1"
        );
        let d = Digest::parse(D).unwrap();
        assert_eq!(r.with_digest(d.clone()).digest(), Some(&d));
        assert_eq!(
            r.with_tag("2").unwrap().to_string(),
            "docker.io/library/busybox:2"
        );
        assert!(r.with_tag("-x").is_err());
    }

    #[test]
    fn rejects_invalid_references_with_reasons() {
        let cases: &[(&str, &str)] = &[
            ("", "empty reference"),
            ("Busybox", "repository name must be lowercase"),
            ("foo/Bar", "repository name must be lowercase"),
            ("foo:", "empty tag"),
            ("foo:-x", "a tag starts with a letter, digit or '_'"),
            (
                "foo:a+b",
                "a tag has only letters, digits, '_', '.' and '-'",
            ),
            (
                "foo@sha256:abc",
                "the digest must be sha256:<64 hex digits> or sha512:<128 hex digits>",
            ),
            (
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                "a 64-digit hexadecimal string is an image id, not a repository name",
            ),
            (
                "example.com:port/foo",
                "invalid registry port (expected digits)",
            ),
            (
                "-bad.com/foo",
                "invalid registry host (expected host[:port])",
            ),
            (":tag", "missing repository name"),
        ];
        for (input, reason) in cases {
            let err = ImageRef::parse(input).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("invalid reference {input:?}: {reason}"),
                "{input}"
            );
        }
        for bad_path in [
            "foo//bar",
            "foo/bar/",
            "foo/-bar",
            "foo/bar-",
            "foo/bar..baz",
            "foo/bar___baz",
            "foo/.bar",
            "a/b c",
        ] {
            assert!(ImageRef::parse(bad_path).is_err(), "{bad_path}");
        }
        for good in ["foo/bar__baz", "foo/bar--baz", "foo/a.b_c-d", "a0/b1"] {
            assert!(ImageRef::parse(good).is_ok(), "{good}");
        }
        let long = format!("example.com/{}", "a".repeat(250));
        assert_eq!(
            ImageRef::parse(&long).unwrap_err().to_string(),
            format!(
                "invalid reference {long:?}: repository name must not be more than 255 characters"
            )
        );
        let long_tag = format!("foo:{}", "a".repeat(129));
        assert!(ImageRef::parse(&long_tag).is_err());
        assert!(ImageRef::parse(&format!("foo:{}", "a".repeat(128))).is_ok());
    }
}
