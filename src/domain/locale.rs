//! Message locales: the primary language subtag of a BCP 47 tag.

use std::fmt;
use std::str::FromStr;

/// A lower-case language code such as `en` or `ja`. `ja-JP` and `JA` read
/// as `ja`; templates are chosen by language only.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Locale(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a locale is a language tag such as \"ja\" or \"en-US\"")]
pub struct LocaleError;

impl FromStr for Locale {
    type Err = LocaleError;

    fn from_str(text: &str) -> Result<Self, LocaleError> {
        let language = text.split(['-', '_']).next().unwrap_or_default();
        let valid =
            (2..=3).contains(&language.len()) && language.bytes().all(|b| b.is_ascii_alphabetic());
        let rest_valid = text.len() <= 35
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if valid && rest_valid {
            Ok(Locale(language.to_ascii_lowercase()))
        } else {
            Err(LocaleError)
        }
    }
}

impl Locale {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Locale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_language_subtag() {
        assert_eq!(
            "ja-JP".parse::<Locale>().map(|l| l.to_string()),
            Ok("ja".into())
        );
        assert_eq!(
            "EN".parse::<Locale>().map(|l| l.to_string()),
            Ok("en".into())
        );
        assert_eq!("e".parse::<Locale>(), Err(LocaleError));
        assert_eq!("日本".parse::<Locale>(), Err(LocaleError));
    }
}
