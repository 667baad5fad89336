//! Lines that let phones fill the code in by themselves: the origin-bound
//! line of WebOTP and Apple's domain-bound codes (`@example.com #123456`,
//! AUTO-1..3) and the Android SMS Retriever app hash (AUTO-4).

use std::fmt;

/// An Android app's 11-character SMS Retriever hash (base64 of 9 bytes).
#[derive(Clone, PartialEq, Eq)]
pub struct AppHash(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("app_hash is the 11-character SMS Retriever hash of the app (A-Z, a-z, 0-9, + and /)")]
pub struct AppHashError;

impl AppHash {
    pub fn parse(raw: &str) -> Result<Self, AppHashError> {
        let valid = raw.len() == 11
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/');
        if valid {
            Ok(AppHash(raw.to_owned()))
        } else {
            Err(AppHashError)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AppHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AppHash({})", self.0)
    }
}

/// A host for the origin-bound line: a DNS name, no scheme, port or path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("origin is a host name such as \"example.com\" (no scheme, port or path)")]
pub struct OriginError;

impl Origin {
    pub fn parse(raw: &str) -> Result<Self, OriginError> {
        let labels_ok = raw.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
        if raw.len() <= 253 && raw.contains('.') && labels_ok {
            Ok(Origin(raw.to_ascii_lowercase()))
        } else {
            Err(OriginError)
        }
    }
}

/// Appends the autofill lines to `body`: the app hash on its own line, and
/// the origin-bound line last, as WebOTP requires (AUTO-1: nothing after it).
pub fn append(body: &mut String, code: &str, app_hash: Option<&AppHash>, origin: Option<&Origin>) {
    if let Some(hash) = app_hash {
        body.push('\n');
        body.push_str(hash.as_str());
    }
    if let Some(origin) = origin {
        body.push_str("\n@");
        body.push_str(&origin.0);
        body.push_str(" #");
        body.push_str(code);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_hashes_are_eleven_base64_characters_auto_4() {
        assert!(AppHash::parse("FA+9qCX9VSu").is_ok());
        for bad in [
            "FA+9qCX9VS",
            "FA+9qCX9VSuu",
            "FA+9qCX9VS!",
            "",
            "FA 9qCX9VSu",
        ] {
            assert_eq!(AppHash::parse(bad), Err(AppHashError), "{bad:?}");
        }
    }

    #[test]
    fn origins_are_bare_host_names() {
        assert_eq!(
            Origin::parse("Example.COM").map(|o| o.0),
            Ok("example.com".into())
        );
        for bad in [
            "https://example.com",
            "example.com:443",
            "example.com/x",
            "localhost",
            "-a.com",
            "a..com",
        ] {
            assert_eq!(Origin::parse(bad), Err(OriginError), "{bad:?}");
        }
    }

    /// AUTO-1, AUTO-4: exact strings.
    #[test]
    fn the_lines_come_in_a_fixed_order_with_the_origin_line_last() {
        let hash = AppHash::parse("FA+9qCX9VSu").expect("hash");
        let origin = Origin::parse("example.com").expect("origin");
        let mut body = "Your code is 123456.".to_owned();
        append(&mut body, "123456", None, Some(&origin));
        assert_eq!(body, "Your code is 123456.\n@example.com #123456");
        let mut body = "Your code is 123456.".to_owned();
        append(&mut body, "123456", Some(&hash), None);
        assert_eq!(body, "Your code is 123456.\nFA+9qCX9VSu");
        let mut body = "Your code is 123456.".to_owned();
        append(&mut body, "123456", Some(&hash), Some(&origin));
        assert_eq!(
            body,
            "Your code is 123456.\nFA+9qCX9VSu\n@example.com #123456"
        );
    }
}
