//! Validated network names.

use std::fmt;

use crate::error::NetError;

/// The longest network name; it ends up in paths and in default bridge names.
const MAX_LEN: usize = 64;

/// A network's name, validated like Docker's and Podman's:
/// `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, at most 64 bytes. Safe as a path component.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct NetworkName(String);

impl NetworkName {
    /// Validates `name`.
    ///
    /// # Errors
    ///
    /// [`NetError::InvalidName`] (kind `InvalidArgument`).
    pub fn new(name: &str) -> Result<NetworkName, NetError> {
        let invalid = |reason| NetError::InvalidName {
            name: name.to_owned(),
            reason,
        };
        let mut bytes = name.bytes();
        match bytes.next() {
            None => return Err(invalid("empty")),
            Some(b) if !b.is_ascii_alphanumeric() => {
                return Err(invalid("must start with a letter or digit"))
            }
            Some(_) => {}
        }
        if name.len() > MAX_LEN {
            return Err(invalid("longer than 64 bytes"));
        }
        if !bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')) {
            return Err(invalid(
                "only letters, digits, '_', '.' and '-' are allowed",
            ));
        }
        Ok(NetworkName(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NetworkName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for NetworkName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        NetworkName::new(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_docker_names() {
        for ok in ["podman", "my-net_1.x", "0abc"] {
            assert_eq!(NetworkName::new(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_bad_names() {
        for bad in ["", "-x", ".", "..", "a/b", "a b", &"a".repeat(65)] {
            let e = NetworkName::new(bad).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument, "{bad}");
        }
        assert_eq!(
            NetworkName::new("a/b").unwrap_err().to_string(),
            "invalid network name \"a/b\": only letters, digits, '_', '.' and '-' are allowed"
        );
    }
}
