//! Environment names.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::validation::FieldError;

/// Longest name accepted: the name is embedded in AWS resource names (EKS cluster and
/// node group names, target group names of at most 32 characters with a suffix).
pub const MAX_NAME_LEN: usize = 40;

/// A validated environment name: a lowercase DNS label of at most [`MAX_NAME_LEN`] characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EnvName(String);

impl EnvName {
    /// Parses a name, explaining what is wrong with it.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() {
            return Err("must not be empty".into());
        }
        if raw.len() > MAX_NAME_LEN {
            return Err(format!(
                "must be at most {MAX_NAME_LEN} characters, got {}",
                raw.len()
            ));
        }
        if let Some(bad) = raw
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Err(format!(
                "may only contain lowercase letters, digits and '-', found {bad:?}"
            ));
        }
        if !raw.starts_with(|c: char| c.is_ascii_lowercase()) {
            return Err("must start with a lowercase letter".into());
        }
        if raw.ends_with('-') {
            return Err("must not end with '-'".into());
        }
        Ok(Self(raw.to_owned()))
    }

    /// Parses a name, reporting a failure against `field`.
    pub fn parse_field(raw: &str, field: &str) -> Result<Self, FieldError> {
        Self::parse(raw).map_err(|detail| FieldError::new(field, detail))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for EnvName {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<EnvName> for String {
    fn from(value: EnvName) -> Self {
        value.0
    }
}

impl fmt::Display for EnvName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_dns_labels() {
        for ok in ["dev", "qa", "pr-123", "a", "x1", &"a".repeat(40)] {
            assert!(EnvName::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_what_aws_names_cannot_carry() {
        for bad in [
            "",
            "Dev",
            "1dev",
            "-dev",
            "dev-",
            "dev_1",
            "dév",
            "a.b",
            &"a".repeat(41),
        ] {
            assert!(EnvName::parse(bad).is_err(), "{bad}");
        }
    }
}
