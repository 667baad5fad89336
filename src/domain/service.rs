//! Service names: the tenant part of every path and key.

use std::fmt;
use std::str::FromStr;

/// Lower-case ASCII letters, digits and `-`, 1 to 32 characters, so a name is
/// safe in URLs, Redis keys and metric labels alike.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceName(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a service name is 1 to 32 of a-z, 0-9 and '-'")]
pub struct ServiceNameError;

impl FromStr for ServiceName {
    type Err = ServiceNameError;

    fn from_str(text: &str) -> Result<Self, ServiceNameError> {
        let valid = (1..=32).contains(&text.len())
            && text
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if valid {
            Ok(ServiceName(text.to_owned()))
        } else {
            Err(ServiceNameError)
        }
    }
}

impl ServiceName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
