//! Content digests (`sha256:<hex>`), validated at the boundary: a [`Digest`]
//! is the only thing that ever becomes a path in the store (CVE-2024-3727).

use std::fmt;
use std::io;
use std::str::FromStr;

use sha2::Digest as _;

use crate::error::ImageError;

/// A digest algorithm Wharf verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Algorithm {
    /// SHA-256, 64 hex digits (what every registry uses).
    Sha256,
    /// SHA-512, 128 hex digits.
    Sha512,
}

impl Algorithm {
    /// The algorithm's name as it appears before the `:`.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

/// A validated content digest: `sha256:` + 64 lowercase hex digits, or
/// `sha512:` + 128.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest {
    algorithm: Algorithm,
    text: String,
}

impl Digest {
    /// Parses and validates `algorithm:hex`.
    pub fn parse(s: &str) -> Result<Digest, ImageError> {
        let invalid = |reason| ImageError::InvalidDigest {
            digest: s.to_string(),
            reason,
        };
        let (alg, hex) = s
            .split_once(':')
            .ok_or_else(|| invalid("expected algorithm:hex"))?;
        let algorithm = match alg {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            _ => return Err(invalid("unsupported algorithm (use sha256 or sha512)")),
        };
        if hex.len() != algorithm.hex_len() {
            return Err(invalid(match algorithm {
                Algorithm::Sha256 => "a sha256 digest has 64 hex digits",
                Algorithm::Sha512 => "a sha512 digest has 128 hex digits",
            }));
        }
        if !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(invalid("hex digits must be 0-9 or a-f (lowercase)"));
        }
        Ok(Digest {
            algorithm,
            text: s.to_string(),
        })
    }

    /// The SHA-256 digest of `bytes`.
    pub fn sha256_of(bytes: &[u8]) -> Digest {
        let mut d = Digester::new(Algorithm::Sha256);
        d.update(bytes);
        d.finish()
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The hex digits (what names the blob on disk).
    pub fn hex(&self) -> &str {
        &self.text[self.algorithm.name().len() + 1..]
    }

    /// The full `algorithm:hex` string.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The first 12 hex digits, as `docker images` prints ids.
    pub fn short(&self) -> &str {
        &self.hex()[..12]
    }

    fn from_parts(algorithm: Algorithm, hex: &str) -> Digest {
        Digest {
            algorithm,
            text: format!("{}:{hex}", algorithm.name()),
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.text)
    }
}

impl FromStr for Digest {
    type Err = ImageError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl TryFrom<&oci_spec::image::Digest> for Digest {
    type Error = ImageError;

    fn try_from(d: &oci_spec::image::Digest) -> Result<Self, Self::Error> {
        Digest::parse(d.as_ref())
    }
}

impl From<&Digest> for oci_spec::image::Digest {
    fn from(d: &Digest) -> Self {
        oci_spec::image::Digest::from_str(d.as_str())
            .expect("a validated sha256/sha512 digest is a valid OCI digest")
    }
}

#[derive(Clone)]
enum Hasher {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

/// Computes a [`Digest`] over bytes written to it.
#[derive(Clone)]
pub struct Digester {
    hasher: Hasher,
    written: u64,
}

impl fmt::Debug for Digester {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Digester")
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

impl Digester {
    /// A digester for `a`.
    pub fn new(a: Algorithm) -> Self {
        let hasher = match a {
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        };
        Digester { hasher, written: 0 }
    }

    /// Feeds `bytes`.
    pub fn update(&mut self, bytes: &[u8]) {
        match &mut self.hasher {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
        self.written += bytes.len() as u64;
    }

    /// How many bytes were fed.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// The digest of everything fed.
    pub fn finish(self) -> Digest {
        match self.hasher {
            Hasher::Sha256(h) => Digest::from_parts(Algorithm::Sha256, &hex::encode(h.finalize())),
            Hasher::Sha512(h) => Digest::from_parts(Algorithm::Sha512, &hex::encode(h.finalize())),
        }
    }
}

impl io::Write for Digester {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn sha256_of_empty() {
        assert_eq!(Digest::sha256_of(b"").to_string(), EMPTY);
        let d = Digest::parse(EMPTY).unwrap();
        assert_eq!(d.algorithm(), Algorithm::Sha256);
        assert_eq!(d.hex().len(), 64);
        assert_eq!(d.short(), "e3b0c44298fc");
    }

    #[test]
    fn digester_matches_one_shot_and_counts() {
        let mut d = Digester::new(Algorithm::Sha256);
        d.write_all(b"hello ").unwrap();
        d.write_all(b"world").unwrap();
        assert_eq!(d.written(), 11);
        assert_eq!(d.finish(), Digest::sha256_of(b"hello world"));
        let mut d = Digester::new(Algorithm::Sha512);
        d.update(b"");
        let s = d.finish();
        assert_eq!(s.algorithm(), Algorithm::Sha512);
        assert!(s.to_string().starts_with("sha512:cf83e1357eefb8bd"));
    }

    #[test]
    fn rejects_path_traversal_and_bad_forms() {
        for (s, reason) in [
            (
                "sha256:../../etc/passwd",
                "a sha256 digest has 64 hex digits",
            ),
            ("sha256", "expected algorithm:hex"),
            (
                "md5:d41d8cd98f00b204e9800998ecf8427e",
                "unsupported algorithm (use sha256 or sha512)",
            ),
            (
                "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
                "hex digits must be 0-9 or a-f (lowercase)",
            ),
            (
                "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85/",
                "hex digits must be 0-9 or a-f (lowercase)",
            ),
        ] {
            let err = Digest::parse(s).unwrap_err();
            assert_eq!(err.to_string(), format!("invalid digest {s:?}: {reason}"));
        }
    }

    #[test]
    fn serde_round_trip_validates() {
        let d = Digest::parse(EMPTY).unwrap();
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{EMPTY}\""));
        let back: Digest = serde_json::from_str(&json).unwrap();
        assert_eq!(back, d);
        assert!(serde_json::from_str::<Digest>("\"sha256:abc\"").is_err());
    }

    #[test]
    fn converts_to_and_from_oci_digest() {
        let d = Digest::parse(EMPTY).unwrap();
        let o = oci_spec::image::Digest::from(&d);
        assert_eq!(Digest::try_from(&o).unwrap(), d);
    }
}
