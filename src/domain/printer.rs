//! Printer identity.

use serde::{Deserialize, Serialize};

/// An operator-chosen printer id: a slug of 1–64 lowercase letters, digits, `-` or `_`,
/// starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PrinterId(String);

impl PrinterId {
    pub fn parse(raw: &str) -> Result<PrinterId, InvalidPrinterId> {
        let ok_len = (1..=64).contains(&raw.len());
        let ok_first = raw
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let ok_chars = raw
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if ok_len && ok_first && ok_chars {
            Ok(PrinterId(raw.to_owned()))
        } else {
            Err(InvalidPrinterId(raw.chars().take(64).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A printer id that is not a slug; the text shows (at most 64 characters of) what was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "printer id `{0}` must be 1-64 characters of a-z, 0-9, `-` or `_`, starting with a letter or digit"
)]
pub struct InvalidPrinterId(String);

impl TryFrom<String> for PrinterId {
    type Error = InvalidPrinterId;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        PrinterId::parse(&value)
    }
}

impl From<PrinterId> for String {
    fn from(value: PrinterId) -> String {
        value.0
    }
}

impl std::fmt::Display for PrinterId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A backend's registry name (`lianke`, `zhimu`, `wecom`, or a test backend's).
pub type BackendName = String;

#[cfg(test)]
mod tests {
    use super::PrinterId;

    #[test]
    fn slugs_are_accepted_and_everything_else_refused() {
        assert!(PrinterId::parse("office-3f_a4").is_ok());
        for bad in ["", "Office", "-lead", "a b", "é", &"x".repeat(65)] {
            assert!(PrinterId::parse(bad).is_err(), "{bad:?}");
        }
    }
}
