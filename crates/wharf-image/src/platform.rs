//! Platforms (`os/arch[/variant]`) and the choice of one manifest from an
//! OCI index or a Docker manifest list, with containerd's fallbacks: an
//! arm64 host also runs arm v7/v6/v5 images, an amd64 v3 host runs v2 and
//! v1 images and 386 ones.

use std::fmt;
use std::str::FromStr;

use oci_spec::image::{Descriptor, ImageIndex};

use crate::error::ImageError;
use crate::media;

/// An image platform.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    /// GOOS name (`linux`).
    pub os: String,
    /// GOARCH name (`amd64`, `arm64`, `arm`, `386`, …).
    pub architecture: String,
    /// CPU variant (`v7`, `v8`, `v3`), normalised with a `v`.
    pub variant: Option<String>,
}

impl Platform {
    /// Parses `os/arch[/variant]`, `arch` alone (os `linux`), with the usual
    /// aliases (`x86_64`, `aarch64`, `armhf`, `i686`) normalised.
    pub fn parse(s: &str) -> Result<Platform, ImageError> {
        let invalid = |reason| ImageError::InvalidPlatform {
            platform: s.to_string(),
            reason,
        };
        let parts: Vec<&str> = s.split('/').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(invalid("empty component (expected os/arch[/variant])"));
        }
        let ok = |p: &str| {
            p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        };
        if !parts.iter().all(|p| ok(p)) {
            return Err(invalid(
                "components have only letters, digits, '_', '-' and '.'",
            ));
        }
        let lower: Vec<String> = parts.iter().map(|p| p.to_ascii_lowercase()).collect();
        let (os, arch, variant) = match lower.as_slice() {
            [arch] if !is_known_os(arch) => ("linux".to_string(), arch.clone(), None),
            [os] => (os.clone(), host_arch().to_string(), None),
            [os, arch] => (os.clone(), arch.clone(), None),
            [os, arch, variant] => (os.clone(), arch.clone(), Some(variant.clone())),
            _ => return Err(invalid("too many components (expected os/arch[/variant])")),
        };
        Ok(Platform::normalized(&os, &arch, variant.as_deref()))
    }

    /// The platform this process runs on.
    pub fn host() -> Platform {
        Platform::normalized(std::env::consts::OS, host_arch(), host_variant())
    }

    /// A platform with aliases and variant spellings normalised.
    pub fn normalized(os: &str, arch: &str, variant: Option<&str>) -> Platform {
        let os = match os {
            "macos" => "darwin".to_string(),
            other => other.to_ascii_lowercase(),
        };
        let variant = variant.filter(|v| !v.is_empty()).map(|v| {
            let v = v.to_ascii_lowercase();
            if v.starts_with('v') {
                v
            } else {
                format!("v{v}")
            }
        });
        let (architecture, variant) = match arch.to_ascii_lowercase().as_str() {
            "x86_64" | "x86-64" | "amd64" => ("amd64".to_string(), variant),
            "i386" | "i486" | "i586" | "i686" | "x86" | "386" => ("386".to_string(), None),
            "aarch64" | "arm64" => (
                "arm64".to_string(),
                match variant.as_deref() {
                    None | Some("v8.0") => Some("v8".to_string()),
                    _ => variant,
                },
            ),
            "armhf" => ("arm".to_string(), Some("v7".to_string())),
            "armel" => ("arm".to_string(), Some("v6".to_string())),
            "arm" => (
                "arm".to_string(),
                variant.or_else(|| Some("v7".to_string())),
            ),
            other => (other.to_string(), variant),
        };
        Platform {
            os,
            architecture,
            variant,
        }
    }

    /// The platform a descriptor declares, normalised.
    pub fn of_descriptor(desc: &Descriptor) -> Option<Platform> {
        desc.platform().as_ref().map(|p| {
            Platform::normalized(
                &p.os().to_string(),
                &p.architecture().to_string(),
                p.variant().as_deref(),
            )
        })
    }

    /// How well an image for `candidate` runs here: `Some(rank)` (0 best) or
    /// `None` when it cannot run.
    pub fn rank(&self, candidate: &Platform) -> Option<usize> {
        if candidate.os != self.os {
            return None;
        }
        self.compatible().iter().position(|(arch, variant)| {
            candidate.architecture == *arch && variant_matches(variant, &candidate.variant)
        })
    }

    /// Architectures and variants this platform runs, best first.
    fn compatible(&self) -> Vec<(String, Option<String>)> {
        let level = |v: &Option<String>, default: u32| {
            v.as_deref()
                .and_then(|v| v.strip_prefix('v'))
                .and_then(|n| n.split('.').next())
                .and_then(|n| n.parse::<u32>().ok())
                .unwrap_or(default)
        };
        let arm_down_from = |top: u32| -> Vec<(String, Option<String>)> {
            (5..=top.min(8))
                .rev()
                .map(|n| ("arm".to_string(), Some(format!("v{n}"))))
                .collect()
        };
        match self.architecture.as_str() {
            "amd64" => {
                let top = level(&self.variant, 1).clamp(1, 4);
                let mut out: Vec<_> = (1..=top)
                    .rev()
                    .map(|n| ("amd64".to_string(), Some(format!("v{n}"))))
                    .collect();
                out.push(("386".to_string(), None));
                out
            }
            "arm64" => {
                let mut out = vec![("arm64".to_string(), self.variant.clone())];
                if self.variant.as_deref() != Some("v8") {
                    out.push(("arm64".to_string(), Some("v8".to_string())));
                }
                out.extend(arm_down_from(7));
                out
            }
            "arm" => arm_down_from(level(&self.variant, 7)),
            other => vec![(other.to_string(), self.variant.clone())],
        }
    }
}

/// A wanted variant matches a candidate's; a candidate without variant is
/// the baseline (`amd64` = `v1`, `arm64` = `v8`).
fn variant_matches(wanted: &Option<String>, candidate: &Option<String>) -> bool {
    match (wanted.as_deref(), candidate.as_deref()) {
        (w, c) if w == c => true,
        (Some("v1") | Some("v8") | None, None) => true,
        _ => false,
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl FromStr for Platform {
    type Err = ImageError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Platform::parse(s)
    }
}

fn is_known_os(s: &str) -> bool {
    matches!(
        s,
        "linux" | "windows" | "darwin" | "freebsd" | "netbsd" | "openbsd" | "solaris" | "illumos"
    )
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "riscv64" => "riscv64",
        "s390x" => "s390x",
        "loongarch64" => "loong64",
        other => other,
    }
}

fn host_variant() -> Option<&'static str> {
    match std::env::consts::ARCH {
        "aarch64" => Some("v8"),
        "arm" => Some("v7"),
        _ => None,
    }
}

/// Whether an index entry is something to skip rather than an image for a
/// platform: BuildKit attestation manifests, artifacts and nested indexes,
/// and `unknown/unknown` platforms.
fn is_skipped(desc: &Descriptor) -> bool {
    let attestation = desc.annotations().as_ref().is_some_and(|a| {
        a.get(media::ANNOTATION_REFERENCE_TYPE)
            .is_some_and(|v| v == media::ATTESTATION_MANIFEST)
    });
    let unknown = desc.platform().as_ref().is_some_and(|p| {
        p.os().to_string() == "unknown" || p.architecture().to_string() == "unknown"
    });
    attestation
        || unknown
        || desc.artifact_type().is_some()
        || !media::is_manifest(desc.media_type().as_ref())
}

/// Chooses the manifest for `wanted` among an index's entries: the best
/// ranked platform, the first in index order among equals. An entry without
/// platform matches with the lowest rank.
pub fn select_manifest<'a>(
    manifests: &'a [Descriptor],
    wanted: &Platform,
) -> Result<&'a Descriptor, ImageError> {
    let mut best: Option<(usize, &Descriptor)> = None;
    for desc in manifests.iter().filter(|d| !is_skipped(d)) {
        let rank = match Platform::of_descriptor(desc) {
            Some(p) => wanted.rank(&p),
            None => Some(usize::MAX),
        };
        if let Some(rank) = rank {
            if best.is_none_or(|(r, _)| rank < r) {
                best = Some((rank, desc));
            }
        }
    }
    best.map(|(_, d)| d).ok_or_else(|| {
        let available: Vec<String> = manifests
            .iter()
            .filter(|d| !is_skipped(d))
            .filter_map(Platform::of_descriptor)
            .map(|p| p.to_string())
            .collect();
        ImageError::NoMatchingPlatform {
            platform: wanted.to_string(),
            available: if available.is_empty() {
                "none".to_string()
            } else {
                available.join(", ")
            },
        }
    })
}

/// [`select_manifest`] over a parsed index.
pub fn select_from_index<'a>(
    index: &'a ImageIndex,
    wanted: &Platform,
) -> Result<&'a Descriptor, ImageError> {
    select_manifest(index.manifests(), wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        Platform::parse(s).unwrap()
    }

    fn index(entries: &[(&str, Option<&str>, &str)]) -> Vec<Descriptor> {
        // (platform, annotation reference type, media type)
        entries
            .iter()
            .enumerate()
            .map(|(i, (plat, refty, mt))| {
                let mut json = serde_json::json!({
                    "mediaType": mt,
                    "digest": format!("sha256:{:064x}", i + 1),
                    "size": 100 + i,
                });
                if !plat.is_empty() {
                    let parts: Vec<&str> = plat.split('/').collect();
                    let mut platform =
                        serde_json::json!({"os": parts[0], "architecture": parts[1]});
                    if let Some(v) = parts.get(2) {
                        platform["variant"] = serde_json::json!(v);
                    }
                    json["platform"] = platform;
                }
                if let Some(r) = refty {
                    json["annotations"] = serde_json::json!({ "vnd.docker.reference.type": r });
                }
                serde_json::from_value(json).unwrap()
            })
            .collect()
    }

    fn chosen(entries: &[Descriptor], wanted: &str) -> Option<usize> {
        select_manifest(entries, &p(wanted))
            .ok()
            .map(|d| entries.iter().position(|e| e == d).unwrap())
    }

    #[test]
    fn parses_and_normalises() {
        assert_eq!(p("linux/arm64/v8").to_string(), "linux/arm64/v8");
        assert_eq!(p("linux/arm64").to_string(), "linux/arm64/v8");
        assert_eq!(p("linux/aarch64").to_string(), "linux/arm64/v8");
        assert_eq!(p("linux/x86_64").to_string(), "linux/amd64");
        assert_eq!(p("linux/arm").to_string(), "linux/arm/v7");
        assert_eq!(p("linux/arm/7").to_string(), "linux/arm/v7");
        assert_eq!(p("linux/armhf").to_string(), "linux/arm/v7");
        assert_eq!(p("linux/i686").to_string(), "linux/386");
        assert_eq!(p("arm64").to_string(), "linux/arm64/v8");
        assert_eq!(p("linux/amd64/v3").variant.as_deref(), Some("v3"));
        assert_eq!(Platform::host().os, "linux");
        for (bad, reason) in [
            ("linux//v7", "empty component (expected os/arch[/variant])"),
            (
                "a/b/c/d",
                "too many components (expected os/arch[/variant])",
            ),
            (
                "linux/am d64",
                "components have only letters, digits, '_', '-' and '.'",
            ),
        ] {
            assert_eq!(
                Platform::parse(bad).unwrap_err().to_string(),
                format!("invalid platform {bad:?}: {reason}")
            );
        }
    }

    #[test]
    fn exact_matches_win() {
        use media::OCI_MANIFEST as M;
        let idx = index(&[
            ("linux/amd64", None, M),
            ("linux/arm64/v8", None, M),
            ("linux/arm/v7", None, M),
            ("linux/arm/v6", None, M),
            ("linux/386", None, M),
        ]);
        assert_eq!(chosen(&idx, "linux/amd64"), Some(0));
        assert_eq!(chosen(&idx, "linux/arm64"), Some(1));
        assert_eq!(chosen(&idx, "linux/arm/v7"), Some(2));
        assert_eq!(chosen(&idx, "linux/arm/v6"), Some(3));
        assert_eq!(chosen(&idx, "linux/386"), Some(4));
        assert_eq!(chosen(&idx, "linux/s390x"), None);
    }

    #[test]
    fn fallbacks() {
        use media::DOCKER_MANIFEST as M;
        // arm64 without an arm64 image runs arm v7 before v6.
        let idx = index(&[("linux/arm/v6", None, M), ("linux/arm/v7", None, M)]);
        assert_eq!(chosen(&idx, "linux/arm64/v8"), Some(1));
        // arm v7 runs v6 and v5, never v8.
        let idx = index(&[("linux/arm/v8", None, M), ("linux/arm/v5", None, M)]);
        assert_eq!(chosen(&idx, "linux/arm/v7"), Some(1));
        // arm64 without variant in the index is v8.
        let idx = index(&[("linux/arm64", None, M)]);
        assert_eq!(chosen(&idx, "linux/arm64/v8"), Some(0));
        // amd64 v3 prefers v3, then v2, then the baseline, then 386.
        let idx = index(&[
            ("linux/386", None, M),
            ("linux/amd64", None, M),
            ("linux/amd64/v2", None, M),
        ]);
        assert_eq!(chosen(&idx, "linux/amd64/v3"), Some(2));
        assert_eq!(chosen(&idx, "linux/amd64"), Some(1));
        let idx = index(&[("linux/386", None, M)]);
        assert_eq!(chosen(&idx, "linux/amd64"), Some(0));
        // A v2-only index does not run on a baseline amd64.
        let idx = index(&[("linux/amd64/v2", None, M)]);
        assert_eq!(chosen(&idx, "linux/amd64"), None);
        // Another os never matches.
        let idx = index(&[("windows/amd64", None, M)]);
        assert_eq!(chosen(&idx, "linux/amd64"), None);
    }

    #[test]
    fn skips_attestations_artifacts_and_unknown() {
        use media::OCI_MANIFEST as M;
        let idx = index(&[
            ("unknown/unknown", Some("attestation-manifest"), M),
            ("linux/amd64", Some("attestation-manifest"), M),
            ("linux/amd64", None, "application/vnd.example.artifact+json"),
            ("linux/amd64", None, media::OCI_INDEX),
            ("linux/amd64", None, M),
        ]);
        assert_eq!(chosen(&idx, "linux/amd64"), Some(4));
        let err = select_manifest(&idx[..4], &p("linux/amd64")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no image for platform linux/amd64 (available: none)"
        );
        let idx = index(&[("linux/arm64", None, M), ("linux/ppc64le", None, M)]);
        assert_eq!(
            select_manifest(&idx, &p("linux/amd64"))
                .unwrap_err()
                .to_string(),
            "no image for platform linux/amd64 (available: linux/arm64/v8, linux/ppc64le)"
        );
    }

    #[test]
    fn entry_without_platform_is_last_resort() {
        use media::OCI_MANIFEST as M;
        let idx = index(&[("", None, M), ("linux/amd64", None, M)]);
        assert_eq!(chosen(&idx, "linux/amd64"), Some(1));
        let idx = index(&[("", None, M)]);
        assert_eq!(chosen(&idx, "linux/arm64"), Some(0));
    }
}
