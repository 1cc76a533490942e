//! Volume names: Docker's rule for the local driver, and the random names
//! of anonymous volumes.

use std::fmt;

use crate::error::EngineError;
use crate::state::names::random_bytes;

/// A volume name, Docker's rule `^[a-zA-Z0-9][a-zA-Z0-9_.-]+$` (so at
/// least two characters). It is also the name of the volume's directory
/// under `<root>/volumes`, which the rule keeps to one plain component.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VolumeName(String);

impl VolumeName {
    /// Validates a name.
    ///
    /// # Errors
    ///
    /// [`EngineError::InvalidVolumeName`] when it breaks Docker's rule.
    pub fn parse(s: &str) -> Result<Self, EngineError> {
        let mut chars = s.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
        let rest: Vec<char> = chars.collect();
        let rest_ok = !rest.is_empty()
            && rest
                .iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if first_ok && rest_ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(EngineError::InvalidVolumeName { name: s.to_owned() })
        }
    }

    /// Parses a name the user looks up: one that breaks the rule names no
    /// volume, as Docker answers.
    ///
    /// # Errors
    ///
    /// [`EngineError::VolumeNotFound`] when it breaks Docker's rule.
    pub fn lookup(s: &str) -> Result<Self, EngineError> {
        Self::parse(s).map_err(|_| EngineError::VolumeNotFound { name: s.to_owned() })
    }

    /// A fresh anonymous volume name: 64 lowercase hex digits from the
    /// kernel's random source, as Docker's.
    ///
    /// # Errors
    ///
    /// [`EngineError::Io`] when `/dev/urandom` cannot be read.
    pub fn random() -> Result<Self, EngineError> {
        let bytes: [u8; 32] = random_bytes()?;
        Ok(Self(bytes.iter().map(|b| format!("{b:02x}")).collect()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for VolumeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dockers_rule() {
        for ok in ["data", "a1", "my-vol_1.2", "0x", "A-", "x..", "pg.data"] {
            assert_eq!(VolumeName::parse(ok).unwrap().as_str(), ok);
        }
        for bad in [
            "", "a", "-data", "_data", ".data", "..", "da ta", "da/ta", "/data", "dåta", "x$",
        ] {
            let err = VolumeName::parse(bad).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::InvalidArgument, "{bad:?}");
        }
        assert_eq!(
            VolumeName::parse("x$").unwrap_err().to_string(),
            "invalid volume name \"x$\": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed, \
             at least two characters (to mount a host directory, use an absolute path)"
        );
    }

    #[test]
    fn lookups_of_invalid_names_find_nothing() {
        let err = VolumeName::lookup("a").unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::NotFound);
        assert_eq!(err.to_string(), "no such volume: a");
        assert_eq!(VolumeName::lookup("ab").unwrap().as_str(), "ab");
    }

    #[test]
    fn random_names_are_64_hex_valid_and_distinct() {
        let a = VolumeName::random().unwrap();
        let b = VolumeName::random().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 64);
        assert!(crate::state::names::is_lower_hex(a.as_str()));
        assert_eq!(VolumeName::parse(a.as_str()).unwrap(), a);
    }
}
