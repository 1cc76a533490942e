//! registries.conf (version 2, as Podman's `containers-registries.conf(5)`):
//! unqualified-search registries, and per-prefix `[[registry]]` entries with a
//! location, `insecure`, `blocked` and mirrors. Read from
//! `/etc/containers/registries.conf`, then `/etc/containers/registries.conf.d/*.conf`
//! in name order, then Wharf's own `/etc/wharf/registries.conf`; a later file's
//! `unqualified-search-registries` replaces earlier ones, and its entry for a prefix
//! replaces an earlier entry for the same prefix.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use wharf_image::ImageRef;

use crate::error::RegistryError;

/// The registry short names resolve to when nothing is configured.
pub const DEFAULT_SEARCH_REGISTRY: &str = "docker.io";

/// Where the configuration is read from.
#[derive(Debug, Clone)]
pub struct ConfigPaths {
    /// `/etc/containers/registries.conf`.
    pub system: PathBuf,
    /// `/etc/containers/registries.conf.d` (`*.conf`, name order).
    pub drop_ins: PathBuf,
    /// `/etc/wharf/registries.conf`, read last.
    pub wharf: PathBuf,
}

impl Default for ConfigPaths {
    fn default() -> Self {
        Self {
            system: PathBuf::from("/etc/containers/registries.conf"),
            drop_ins: PathBuf::from("/etc/containers/registries.conf.d"),
            wharf: PathBuf::from("/etc/wharf/registries.conf"),
        }
    }
}

/// A mirror of a registry entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    /// `host[:port][/path]`.
    pub location: String,
    /// Plain HTTP or unverified TLS allowed.
    pub insecure: bool,
}

/// A `[[registry]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryEntry {
    /// `host[:port][/path]` or `*.domain`: the references it applies to.
    pub prefix: String,
    /// Where references under `prefix` are really fetched (`host[:port][/path]`).
    pub location: String,
    /// Plain HTTP or unverified TLS allowed.
    pub insecure: bool,
    /// Pulls and pushes are refused.
    pub blocked: bool,
    /// Mirrors, tried in order before `location` when pulling.
    pub mirrors: Vec<Mirror>,
}

/// One place to try for a reference: a mirror or the primary location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The reference rewritten for this location (registry and repository as the
    /// server sees them).
    pub reference: ImageRef,
    /// Plain HTTP or unverified TLS allowed.
    pub insecure: bool,
    /// Whether this is a mirror (pull only).
    pub mirror: bool,
}

impl Endpoint {
    /// `host[:port]` to connect to.
    pub fn registry(&self) -> &str {
        self.reference.registry()
    }

    /// The repository on that registry.
    pub fn repository(&self) -> &str {
        self.reference.repository()
    }
}

/// The merged registries configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryConfig {
    /// Registries tried, in order, for short names.
    pub unqualified_search: Vec<String>,
    /// `[[registry]]` entries.
    pub registries: Vec<RegistryEntry>,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            unqualified_search: vec![DEFAULT_SEARCH_REGISTRY.to_owned()],
            registries: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct FileV2 {
    unqualified_search_registries: Option<Vec<String>>,
    #[serde(default)]
    registry: Vec<FileRegistry>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct FileRegistry {
    prefix: Option<String>,
    location: Option<String>,
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    blocked: bool,
    #[serde(default)]
    mirror: Vec<FileMirror>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct FileMirror {
    location: String,
    #[serde(default)]
    insecure: bool,
}

impl RegistryConfig {
    /// Reads the files at `paths` (missing files are skipped) and merges them.
    ///
    /// # Errors
    ///
    /// A file exists but cannot be read, is not TOML, or has an invalid entry.
    pub fn load(paths: &ConfigPaths) -> Result<Self, RegistryError> {
        let mut files = vec![paths.system.clone()];
        match fs_err::read_dir(&paths.drop_ins) {
            Ok(entries) => {
                let mut drop_ins: Vec<PathBuf> = entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|e| e == "conf"))
                    .collect();
                drop_ins.sort();
                files.extend(drop_ins);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(RegistryError::ReadConfig {
                    path: paths.drop_ins.clone(),
                    source,
                })
            }
        }
        files.push(paths.wharf.clone());
        let mut config = Self::default();
        for file in files {
            match fs_err::read_to_string(&file) {
                Ok(text) => config.merge_text(&text, &file)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(RegistryError::ReadConfig { path: file, source }),
            }
        }
        Ok(config)
    }

    /// Merges one file's text (named `path` in errors) over this configuration.
    ///
    /// # Errors
    ///
    /// The text is not TOML of the v2 shape, or an entry has neither prefix nor
    /// location.
    pub fn merge_text(&mut self, text: &str, path: &Path) -> Result<(), RegistryError> {
        let file: FileV2 = toml::from_str(text).map_err(|source| RegistryError::ParseConfig {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
        if let Some(search) = file.unqualified_search_registries {
            self.unqualified_search = search;
        }
        for entry in file.registry {
            let invalid = |reason: String| RegistryError::InvalidConfig {
                path: path.to_owned(),
                reason,
            };
            let (prefix, location) = match (entry.prefix, entry.location) {
                (Some(p), Some(l)) => (p, l),
                (Some(p), None) => (p.clone(), p),
                (None, Some(l)) => (l.clone(), l),
                (None, None) => {
                    return Err(invalid(
                        "a [[registry]] entry needs a prefix or a location".into(),
                    ))
                }
            };
            let prefix = prefix.trim_end_matches('/').to_owned();
            if prefix.starts_with("*.") && location != prefix && !entry.blocked {
                return Err(invalid(format!(
                    "wildcard prefix {prefix:?} cannot set a location"
                )));
            }
            let entry = RegistryEntry {
                location: location.trim_end_matches('/').to_owned(),
                insecure: entry.insecure,
                blocked: entry.blocked,
                mirrors: entry
                    .mirror
                    .into_iter()
                    .map(|m| Mirror {
                        location: m.location.trim_end_matches('/').to_owned(),
                        insecure: m.insecure,
                    })
                    .collect(),
                prefix,
            };
            self.registries.retain(|r| r.prefix != entry.prefix);
            self.registries.push(entry);
        }
        Ok(())
    }

    /// The entry whose prefix matches `name` (`registry/repository`) longest.
    pub fn entry_for(&self, name: &str) -> Option<&RegistryEntry> {
        self.registries
            .iter()
            .filter(|r| prefix_matches(&r.prefix, name))
            .max_by_key(|r| r.prefix.len())
    }

    /// Whether the registry `host` is configured insecure.
    pub fn is_insecure(&self, host: &str) -> bool {
        self.entry_for(host).is_some_and(|r| r.insecure)
    }

    /// Where to pull `reference` from, in order: for a short name each
    /// unqualified-search registry in turn, and for each of those its mirrors then
    /// its primary location. Blocked registries are left out of a search; a
    /// qualified reference to a blocked registry is an error.
    ///
    /// # Errors
    ///
    /// The reference's registry is blocked, every search registry is, or a
    /// rewritten reference is invalid.
    pub fn candidates(&self, reference: &ImageRef) -> Result<Vec<Endpoint>, RegistryError> {
        let bases: Vec<ImageRef> = if reference.is_qualified() {
            vec![reference.clone()]
        } else {
            let search = if self.unqualified_search.is_empty() {
                vec![DEFAULT_SEARCH_REGISTRY.to_owned()]
            } else {
                self.unqualified_search.clone()
            };
            search.iter().map(|r| reference.with_registry(r)).collect()
        };
        let mut out = Vec::new();
        let mut blocked = None;
        for base in &bases {
            match self.endpoints_for(base, true) {
                Ok(endpoints) => out.extend(endpoints),
                Err(e @ RegistryError::Blocked { .. }) => blocked = Some(e),
                Err(e) => return Err(e),
            }
        }
        match blocked {
            Some(e) if out.is_empty() || reference.is_qualified() => Err(e),
            _ => Ok(out),
        }
    }

    /// Where to push `reference`: its primary location (never a mirror).
    ///
    /// # Errors
    ///
    /// The registry is blocked or the rewritten reference is invalid.
    pub fn push_endpoint(&self, reference: &ImageRef) -> Result<Endpoint, RegistryError> {
        let endpoints = self.endpoints_for(reference, false)?;
        endpoints
            .into_iter()
            .next()
            .ok_or_else(|| RegistryError::invalid(format!("no location for {reference}")))
    }

    fn endpoints_for(
        &self,
        reference: &ImageRef,
        with_mirrors: bool,
    ) -> Result<Vec<Endpoint>, RegistryError> {
        let name = reference.name();
        let Some(entry) = self.entry_for(&name) else {
            return Ok(vec![Endpoint {
                reference: reference.clone(),
                insecure: false,
                mirror: false,
            }]);
        };
        if entry.blocked {
            return Err(RegistryError::Blocked {
                registry: entry.prefix.clone(),
                reference: reference.to_string(),
            });
        }
        let mut out = Vec::new();
        if with_mirrors {
            for mirror in &entry.mirrors {
                out.push(Endpoint {
                    reference: rewrite(reference, &entry.prefix, &mirror.location)?,
                    insecure: mirror.insecure,
                    mirror: true,
                });
            }
        }
        let location = if entry.prefix.starts_with("*.") {
            name.clone()
        } else {
            entry.location.clone()
        };
        out.push(Endpoint {
            reference: rewrite(reference, &entry.prefix, &location)?,
            insecure: entry.insecure,
            mirror: false,
        });
        Ok(out)
    }
}

/// Whether a registries.conf prefix applies to `name` (`registry/repository`):
/// equal, or followed by `/`; `*.example.com` matches any subdomain's names.
fn prefix_matches(prefix: &str, name: &str) -> bool {
    if let Some(domain) = prefix.strip_prefix("*.") {
        let host = name.split('/').next().unwrap_or(name);
        let host = host.split(':').next().unwrap_or(host);
        return host.ends_with(&format!(".{domain}"));
    }
    name == prefix
        || name
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// `reference` with its `prefix` replaced by `location`.
fn rewrite(reference: &ImageRef, prefix: &str, location: &str) -> Result<ImageRef, RegistryError> {
    let name = reference.name();
    if prefix.starts_with("*.") || location == prefix {
        return Ok(reference.clone());
    }
    let rest = name.strip_prefix(prefix).unwrap_or("");
    let mut text = format!("{location}{rest}");
    if let Some(tag) = reference.tag() {
        text.push(':');
        text.push_str(tag);
    }
    if let Some(digest) = reference.digest() {
        text.push('@');
        text.push_str(digest.as_str());
    }
    // A location without a dot, colon or "localhost" would parse as a Docker Hub
    // path; registries.conf locations always name a host.
    let parsed = ImageRef::parse(&text).map_err(|source| RegistryError::Image {
        op: format!("rewrite {reference} for location {location}"),
        source: Box::new(source),
    })?;
    let host = location.split('/').next().unwrap_or(location);
    if parsed.registry() != host {
        return Err(RegistryError::invalid(format!(
            "registries config location {location:?} does not name a registry host"
        )));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> RegistryConfig {
        let mut c = RegistryConfig::default();
        c.merge_text(text, Path::new("test.conf")).unwrap();
        c
    }

    fn names(endpoints: &[Endpoint]) -> Vec<String> {
        endpoints.iter().map(|e| e.reference.to_string()).collect()
    }

    #[test]
    fn short_names_search_in_order_and_skip_blocked() {
        let c = config(
            r#"
unqualified-search-registries = ["quay.io", "blocked.example", "docker.io"]
[[registry]]
prefix = "blocked.example"
blocked = true
"#,
        );
        let r = ImageRef::parse("busybox").unwrap();
        assert_eq!(
            names(&c.candidates(&r).unwrap()),
            ["quay.io/busybox:latest", "docker.io/library/busybox:latest"]
        );
    }

    #[test]
    fn default_search_is_docker_hub() {
        let c = RegistryConfig::default();
        let r = ImageRef::parse("alpine:3").unwrap();
        assert_eq!(
            names(&c.candidates(&r).unwrap()),
            ["docker.io/library/alpine:3"]
        );
    }

    #[test]
    fn mirrors_come_first_then_primary_location() {
        let c = config(
            r#"
[[registry]]
prefix = "docker.io"
location = "registry-1.docker.io"
[[registry.mirror]]
location = "mirror.local:5000/hub"
insecure = true
[[registry.mirror]]
location = "second.mirror"
"#,
        );
        let r = ImageRef::parse("docker.io/library/busybox:1").unwrap();
        let endpoints = c.candidates(&r).unwrap();
        assert_eq!(
            names(&endpoints),
            [
                "mirror.local:5000/hub/library/busybox:1",
                "second.mirror/library/busybox:1",
                "registry-1.docker.io/library/busybox:1"
            ]
        );
        assert!(endpoints[0].insecure && endpoints[0].mirror);
        assert!(!endpoints[2].mirror && !endpoints[2].insecure);
        // Pushes go to the primary only.
        assert_eq!(
            c.push_endpoint(&r).unwrap().reference.to_string(),
            "registry-1.docker.io/library/busybox:1"
        );
    }

    #[test]
    fn blocked_qualified_reference_is_an_error() {
        let c = config("[[registry]]\nlocation = \"evil.example\"\nblocked = true\n");
        let r = ImageRef::parse("evil.example/x").unwrap();
        let err = c.candidates(&r).unwrap_err();
        assert!(matches!(err, RegistryError::Blocked { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "registry evil.example is blocked in the registries configuration (pulling evil.example/x:latest)"
        );
        assert!(c.push_endpoint(&r).is_err());
    }

    #[test]
    fn longest_prefix_wins_and_respects_path_boundaries() {
        let c = config(
            r#"
[[registry]]
location = "example.com"
insecure = true
[[registry]]
prefix = "example.com/team"
location = "internal.example:8443/team"
[[registry]]
prefix = "*.corp.example"
insecure = true
"#,
        );
        let r = ImageRef::parse("example.com/team/app:v2").unwrap();
        let e = c.candidates(&r).unwrap();
        assert_eq!(names(&e), ["internal.example:8443/team/app:v2"]);
        assert!(!e[0].insecure);
        let r = ImageRef::parse("example.com/teammate/app").unwrap();
        let e = c.candidates(&r).unwrap();
        assert_eq!(names(&e), ["example.com/teammate/app:latest"]);
        assert!(e[0].insecure);
        assert!(c.is_insecure("reg.corp.example"));
        assert!(!c.is_insecure("corp.example.org"));
    }

    #[test]
    fn digests_survive_rewrites() {
        let c = config("[[registry]]\nprefix = \"a.io\"\nlocation = \"b.io/x\"\n");
        let digest = format!("sha256:{}", "ab".repeat(32));
        let r = ImageRef::parse(&format!("a.io/img@{digest}")).unwrap();
        let e = c.candidates(&r).unwrap();
        assert_eq!(e[0].reference.digest().unwrap().as_str(), digest);
        assert_eq!(e[0].registry(), "b.io");
        assert_eq!(e[0].repository(), "x/img");
    }

    #[test]
    fn later_files_override_earlier_ones() {
        let dir = tempfile::tempdir().unwrap();
        let paths = ConfigPaths {
            system: dir.path().join("registries.conf"),
            drop_ins: dir.path().join("registries.conf.d"),
            wharf: dir.path().join("wharf.conf"),
        };
        fs_err::write(
            &paths.system,
            "unqualified-search-registries = [\"quay.io\"]\n[[registry]]\nlocation = \"a.io\"\n",
        )
        .unwrap();
        fs_err::create_dir(&paths.drop_ins).unwrap();
        fs_err::write(
            paths.drop_ins.join("10-a.conf"),
            "[[registry]]\nlocation = \"a.io\"\ninsecure = true\n",
        )
        .unwrap();
        fs_err::write(paths.drop_ins.join("ignored.txt"), "not toml [").unwrap();
        fs_err::write(
            &paths.wharf,
            "unqualified-search-registries = [\"docker.io\"]\n",
        )
        .unwrap();
        let c = RegistryConfig::load(&paths).unwrap();
        assert_eq!(c.unqualified_search, ["docker.io"]);
        assert_eq!(c.registries.len(), 1);
        assert!(c.is_insecure("a.io"));

        fs_err::write(&paths.wharf, "[[registry]]\nblocked = \"yes\"\n").unwrap();
        let err = RegistryConfig::load(&paths).unwrap_err();
        assert!(
            err.to_string().starts_with("parse registries config"),
            "{err}"
        );
    }

    #[test]
    fn missing_files_give_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let paths = ConfigPaths {
            system: dir.path().join("none"),
            drop_ins: dir.path().join("none.d"),
            wharf: dir.path().join("none2"),
        };
        assert_eq!(
            RegistryConfig::load(&paths).unwrap(),
            RegistryConfig::default()
        );
    }

    #[test]
    fn entry_without_prefix_or_location_is_rejected() {
        let mut c = RegistryConfig::default();
        let err = c
            .merge_text("[[registry]]\ninsecure = true\n", Path::new("x.conf"))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid registries config x.conf: a [[registry]] entry needs a prefix or a location"
        );
    }
}
