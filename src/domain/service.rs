//! Service names (the tenant part of every path and key) and display names
//! (what a message calls the service).

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

/// What a message calls the service (`{service}` in templates, the lead-in
/// of calls): 1 to 20 characters, no control characters (a line break
/// would start a line of its own in the SMS) and no braces (a template's
/// placeholders are not a name's to fill).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DisplayName(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a display name is 1 to 20 characters, without control characters or braces")]
pub struct DisplayNameError;

impl FromStr for DisplayName {
    type Err = DisplayNameError;

    fn from_str(text: &str) -> Result<Self, DisplayNameError> {
        let valid = (1..=20).contains(&text.chars().count())
            && !text.chars().any(|c| c.is_control() || c == '{' || c == '}');
        if valid {
            Ok(DisplayName(text.to_owned()))
        } else {
            Err(DisplayNameError)
        }
    }
}

impl DisplayName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_display_name_is_short_and_plain() {
        for good in ["Demo", "A&B Bank", "認証サービス", &"x".repeat(20)] {
            assert!(good.parse::<DisplayName>().is_ok(), "{good}");
        }
        for bad in ["", &"x".repeat(21), "Bank\nCall +1 555", "{code}", "a\u{7}"] {
            assert_eq!(bad.parse::<DisplayName>(), Err(DisplayNameError), "{bad:?}");
        }
    }
}
