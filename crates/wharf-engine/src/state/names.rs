//! Container ids and names: validated newtypes, random ids, and Docker-like
//! generated names (`adjective_surname`).

use std::fmt;
use std::io::Read;

use crate::error::EngineError;

/// A container id: 64 lowercase hex digits (256 random bits), as Docker's.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContainerId(String);

impl ContainerId {
    /// Number of hex digits in a full id.
    pub const LEN: usize = 64;
    /// Number of hex digits in a short id (`ps`, messages).
    pub const SHORT_LEN: usize = 12;

    /// Validates a full id.
    ///
    /// # Errors
    ///
    /// [`EngineError::InvalidId`] unless `s` is 64 lowercase hex digits.
    pub fn parse(s: &str) -> Result<Self, EngineError> {
        if s.len() == Self::LEN && is_lower_hex(s) {
            Ok(Self(s.to_owned()))
        } else {
            Err(EngineError::InvalidContainerId { id: s.to_owned() })
        }
    }

    /// A fresh random id from the kernel's random source. Like Docker, it
    /// never is all digits (so a short id cannot be read as a number).
    ///
    /// # Errors
    ///
    /// [`EngineError::Io`] when `/dev/urandom` cannot be read.
    pub fn random() -> Result<Self, EngineError> {
        loop {
            let bytes: [u8; 32] = random_bytes()?;
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            if !hex[..Self::SHORT_LEN].bytes().all(|c| c.is_ascii_digit()) {
                return Ok(Self(hex));
            }
        }
    }

    /// The full id.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 hex digits, as `ps` shows.
    pub fn short(&self) -> &str {
        &self.0[..Self::SHORT_LEN]
    }
}

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A container name, Docker's rule `^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$`; stored
/// and shown without the leading slash.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContainerName(String);

impl ContainerName {
    /// Validates a name, dropping one leading `/`.
    ///
    /// # Errors
    ///
    /// [`EngineError::InvalidName`] when it breaks Docker's rule.
    pub fn parse(s: &str) -> Result<Self, EngineError> {
        let bare = s.strip_prefix('/').unwrap_or(s);
        let mut chars = bare.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
        let rest: Vec<char> = chars.collect();
        let rest_ok = !rest.is_empty()
            && rest
                .iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if first_ok && rest_ok {
            Ok(Self(bare.to_owned()))
        } else {
            Err(EngineError::InvalidContainerName { name: s.to_owned() })
        }
    }

    /// A random `adjective_surname` name, Docker style. `retry` > 0 appends
    /// a random digit, as Docker does after a collision.
    ///
    /// # Errors
    ///
    /// [`EngineError::Io`] when `/dev/urandom` cannot be read.
    pub fn random(retry: u32) -> Result<Self, EngineError> {
        let r: [u8; 3] = random_bytes()?;
        Ok(Self(generated_name(r, retry)))
    }

    /// The name, without a slash.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ContainerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub(crate) fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether `s` could be a prefix of a container id (1..=64 lowercase hex).
pub(crate) fn is_id_prefix(s: &str) -> bool {
    !s.is_empty() && s.len() <= ContainerId::LEN && is_lower_hex(s)
}

const ADJECTIVES: &[&str] = &[
    "agile", "bold", "brave", "bright", "calm", "clever", "cool", "crisp", "eager", "fair", "fond",
    "gentle", "happy", "jolly", "keen", "kind", "lucid", "merry", "modest", "nimble", "noble",
    "proud", "quick", "quiet", "sharp", "steady", "sunny", "swift", "tender", "vivid", "witty",
    "zealous",
];

const SURNAMES: &[&str] = &[
    "babbage", "bohr", "curie", "darwin", "dijkstra", "einstein", "euler", "faraday", "fermi",
    "gauss", "hamilton", "hopper", "hypatia", "kepler", "knuth", "lamarr", "liskov", "lovelace",
    "maxwell", "meitner", "newton", "noether", "pascal", "planck", "ritchie", "shannon", "tesla",
    "thompson", "torvalds", "turing", "volta", "wozniak",
];

fn generated_name(r: [u8; 3], retry: u32) -> String {
    let adjective = ADJECTIVES[usize::from(r[0]) % ADJECTIVES.len()];
    let mut surname = SURNAMES[usize::from(r[1]) % SURNAMES.len()];
    // Docker's one rule: Steve Wozniak is not boring (nor dull here).
    if adjective == "modest" && surname == "wozniak" {
        surname = "turing";
    }
    if retry > 0 {
        format!("{adjective}_{surname}{}", r[2] % 10)
    } else {
        format!("{adjective}_{surname}")
    }
}

/// Reads `N` bytes from the kernel's random source.
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], EngineError> {
    const PATH: &str = "/dev/urandom";
    let mut buf = [0u8; N];
    fs_err::File::open(PATH)
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(|source| EngineError::Io {
            operation: "read random bytes from",
            path: PATH.into(),
            source,
        })?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_must_be_64_lowercase_hex() {
        let ok = "a".repeat(64);
        assert_eq!(ContainerId::parse(&ok).unwrap().as_str(), ok);
        for bad in [
            "",
            &"a".repeat(63),
            &"a".repeat(65),
            &"A".repeat(64),
            &"g".repeat(64),
        ] {
            let err = ContainerId::parse(bad).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument);
        }
        assert_eq!(
            ContainerId::parse("xyz").unwrap_err().to_string(),
            "invalid container id \"xyz\": expected 64 lowercase hex digits"
        );
    }

    #[test]
    fn random_ids_are_valid_distinct_and_short_is_12() {
        let a = ContainerId::random().unwrap();
        let b = ContainerId::random().unwrap();
        assert_ne!(a, b);
        assert_eq!(ContainerId::parse(a.as_str()).unwrap(), a);
        assert_eq!(a.short(), &a.as_str()[..12]);
        assert!(!a.short().bytes().all(|c| c.is_ascii_digit()));
    }

    #[test]
    fn names_follow_dockers_rule_and_drop_the_slash() {
        for ok in ["web", "/web", "a1", "my-app_1.2", "0x", "A-"] {
            let n = ContainerName::parse(ok).unwrap();
            assert_eq!(n.as_str(), ok.trim_start_matches('/'));
        }
        for bad in [
            "", "/", "a", "/a", "-web", "_web", ".web", "we b", "web/1", "//web", "wéb",
        ] {
            let err = ContainerName::parse(bad).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument, "{bad:?}");
        }
        assert_eq!(
            ContainerName::parse("-x").unwrap_err().to_string(),
            "invalid container name \"-x\": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        );
    }

    #[test]
    fn id_prefixes_are_lowercase_hex_up_to_64() {
        assert!(is_id_prefix("a"));
        assert!(is_id_prefix(&"0".repeat(64)));
        assert!(!is_id_prefix(""));
        assert!(!is_id_prefix("web"));
        assert!(!is_id_prefix(&"0".repeat(65)));
    }

    #[test]
    fn generated_names_are_valid_adjective_surname() {
        for a in 0..=255u8 {
            for b in [0u8, 7, 31, 200, 255] {
                let name = generated_name([a, b, 9], 0);
                let parsed = ContainerName::parse(&name).unwrap();
                let (adj, sur) = parsed.as_str().split_once('_').unwrap();
                assert!(ADJECTIVES.contains(&adj), "{name}");
                assert!(SURNAMES.contains(&sur), "{name}");
                assert_ne!(name, "modest_wozniak");
            }
        }
        assert!(generated_name([0, 0, 13], 1).ends_with('3'));
        let random = ContainerName::random(0).unwrap();
        assert!(random.as_str().contains('_'));
    }
}
