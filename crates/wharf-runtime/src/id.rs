//! Container ids.

use std::fmt;

use crate::error::RuntimeError;

/// A validated container id: `^[\w+.-]+$`, not `.` or `..`, at most 1024
/// bytes. Being a single path component, it is safe to join to the state root.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContainerId(String);

impl ContainerId {
    /// Validates `id`.
    pub fn parse(id: &str) -> Result<Self, RuntimeError> {
        let valid = !id.is_empty()
            && id.len() <= 1024
            && id != "."
            && id != ".."
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-' | b'.'));
        if valid {
            Ok(Self(id.to_owned()))
        } else {
            Err(RuntimeError::InvalidId { id: id.to_owned() })
        }
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_runc_ids() {
        for id in ["a", "web-1", "x.y_z+1", "..a", "0123456789abcdef"] {
            assert!(ContainerId::parse(id).is_ok(), "{id}");
        }
    }

    #[test]
    fn rejects_paths_and_odd_characters() {
        for id in [
            "",
            ".",
            "..",
            "a/b",
            "../x",
            "a b",
            "a\0",
            "é",
            &"x".repeat(1025),
        ] {
            assert!(ContainerId::parse(id).is_err(), "{id:?}");
        }
    }
}
