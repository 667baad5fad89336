//! Mobile phone numbers in E.164 form, read from E.164 or national input.
//!
//! Validity and number type come from libphonenumber's metadata (the
//! `phonenumber` crate); Japan adds the explicit mobile allow-list of JP-1,
//! which leaves out M2M (020), IP phones (050) and the unallocated 060 range.

use std::fmt;
use std::str::FromStr;

use phonenumber::country::Id;
use phonenumber::metadata::DATABASE;
use phonenumber::{Mode, PhoneNumber, Type};

/// An SMS-capable mobile number. Only `Phone::parse` makes one.
///
/// There is deliberately no `Display`: callers choose `e164()` (carriers and
/// keyed hashes only) or `masked()` (logs and answers).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Phone {
    e164: String,
    masked: String,
    country_code: u16,
    region: String,
}

/// The region used to read national-format numbers (ISO 3166-1 alpha-2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region(Id);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PhoneError {
    #[error("not a phone number")]
    Unreadable,
    #[error("not a valid number for its country")]
    Invalid,
    #[error("not a mobile number that can receive SMS")]
    NotMobile,
    #[error("not a personal number that can take a call (premium, shared-cost, toll-free and M2M numbers are refused)")]
    NotPersonal,
}

/// Which numbers a verification may go to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// Mobiles only: what SMS reaches (JP-1).
    Mobile,
    /// Mobiles, fixed lines and IP phones (050 in Japan): what a call
    /// reaches. Premium, shared-cost, toll-free, M2M and pager numbers
    /// never.
    Personal,
}

impl FromStr for Region {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        text.parse::<Id>()
            .map(Region)
            .map_err(|_| format!("{text:?} is not an ISO 3166-1 alpha-2 region"))
    }
}

impl Region {
    pub fn as_str(&self) -> &str {
        self.0.as_ref()
    }
}

impl Phone {
    /// Reads `raw` as E.164 (`+819012345678`) or, without a leading `+`, as a
    /// national number of `region` (`090-1234-5678`). Full-width digits and
    /// punctuation, common in Japanese input, are accepted (JP-1).
    pub fn parse(raw: &str, region: Region) -> Result<Self, PhoneError> {
        Self::parse_for(raw, region, Reach::Mobile)
    }

    /// As `parse`, for the numbers `reach` allows.
    pub fn parse_for(raw: &str, region: Region, reach: Reach) -> Result<Self, PhoneError> {
        let text = to_half_width(raw);
        if text.len() > 32
            || !text
                .chars()
                .all(|c| c.is_ascii_digit() || "+-() .".contains(c))
        {
            return Err(PhoneError::Unreadable);
        }
        let number =
            phonenumber::parse(Some(region.0), &text).map_err(|_| PhoneError::Unreadable)?;
        if number.extension().is_some() || !number.is_valid() {
            return Err(PhoneError::Invalid);
        }
        match reach {
            Reach::Mobile if !is_mobile(&number) => return Err(PhoneError::NotMobile),
            Reach::Personal if !is_mobile(&number) && !is_personal_line(&number) => {
                return Err(PhoneError::NotPersonal)
            }
            _ => {}
        }
        let international = number.format().mode(Mode::International).to_string();
        Ok(Phone {
            e164: number.format().mode(Mode::E164).to_string(),
            masked: mask(&international),
            country_code: number.code().value(),
            region: number
                .country()
                .id()
                .map_or_else(|| "ZZ".to_owned(), |id| id.as_ref().to_owned()),
        })
    }

    /// The country calling code of `region`, e.g. 81 for `JP`.
    pub fn calling_code(region: &str) -> Option<u16> {
        DATABASE
            .by_id(region)
            .map(|metadata| metadata.country_code())
    }

    /// Decodes the numbering metadata now rather than in the first request.
    pub fn load_metadata() {
        let _ = DATABASE.by_id("JP");
    }

    /// `+819012345678`: for carriers and keyed hashes, never for logs.
    pub fn e164(&self) -> &str {
        &self.e164
    }

    /// `+81 90-****-5678`: safe for logs and answers.
    pub fn masked(&self) -> &str {
        &self.masked
    }

    /// The region (ISO 3166-1 alpha-2) the number belongs to, e.g. `JP`.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The country calling code, e.g. 81: a low-cardinality metric label.
    pub fn country_code(&self) -> u16 {
        self.country_code
    }
}

impl fmt::Debug for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Phone({})", self.masked)
    }
}

fn is_mobile(number: &PhoneNumber) -> bool {
    let kind = number.number_type(&DATABASE);
    let mobile = matches!(kind, Type::Mobile | Type::FixedLineOrMobile);
    if number.code().value() == 81 {
        // JP-1: 070/080/090, a non-zero digit, seven more digits.
        let national = number.national().value().to_string();
        let jp_mobile = national.len() == 10
            && matches!(national.as_bytes()[0], b'7' | b'8' | b'9')
            && national.as_bytes()[1] == b'0'
            && national.as_bytes()[2] != b'0';
        return mobile && jp_mobile;
    }
    mobile
}

/// A fixed line or an IP phone (050 in Japan): people answer it, and a
/// call costs what a call to a person costs.
fn is_personal_line(number: &PhoneNumber) -> bool {
    matches!(
        number.number_type(&DATABASE),
        Type::FixedLine | Type::FixedLineOrMobile | Type::Voip
    )
}

/// NFKC for the characters a phone number may hold: full-width digits,
/// plus, hyphens, parentheses and the ideographic space.
fn to_half_width(raw: &str) -> String {
    raw.trim()
        .chars()
        .map(|c| match c {
            '０'..='９' => char::from(b'0' + (c as u32 - '０' as u32) as u8),
            '＋' => '+',
            '－' | 'ー' | '‐' | '‑' | '–' | '−' => '-',
            '（' => '(',
            '）' => ')',
            '　' => ' ',
            other => other,
        })
        .collect()
}

/// Keeps the country code, the first national group and the last four
/// digits; every other digit becomes `*`.
fn mask(international: &str) -> String {
    let (country, national) = international.split_once(' ').unwrap_or((international, ""));
    let first_group_end = national.find(|c: char| !c.is_ascii_digit()).unwrap_or(0);
    let total_digits = national.bytes().filter(u8::is_ascii_digit).count();
    let mut seen = 0;
    let masked: String = national
        .char_indices()
        .map(|(at, c)| {
            if !c.is_ascii_digit() {
                return c;
            }
            seen += 1;
            if at < first_group_end || seen > total_digits.saturating_sub(4) {
                c
            } else {
                '*'
            }
        })
        .collect();
    format!("{country} {masked}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jp() -> Region {
        "JP".parse().expect("JP")
    }

    #[test]
    fn reads_e164_and_national_forms_jp_1() {
        for raw in [
            "+819012345678",
            "090-1234-5678",
            "09012345678",
            "０９０－１２３４－５６７８",
            " +81 90 1234 5678 ",
        ] {
            let phone = Phone::parse(raw, jp()).unwrap_or_else(|e| panic!("{raw}: {e}"));
            assert_eq!(phone.e164(), "+819012345678", "{raw}");
            assert_eq!(phone.masked(), "+81 90-****-5678", "{raw}");
            assert_eq!((phone.country_code(), phone.region()), (81, "JP"));
        }
    }

    #[test]
    fn accepts_the_three_japanese_mobile_ranges_jp_1() {
        for raw in ["07012345678", "08012345678", "09012345678"] {
            assert!(Phone::parse(raw, jp()).is_ok(), "{raw}");
        }
    }

    /// SEC-15, ABU-2, JP-1: fixed lines, IP phones, M2M, free dial, premium.
    #[test]
    fn rejects_numbers_that_are_not_sms_capable_mobiles() {
        for raw in [
            "0312345678",
            "05012345678",
            "02012345678",
            "0120123456",
            "0570123456",
            "0990123456",
        ] {
            assert!(Phone::parse(raw, jp()).is_err(), "{raw} was accepted");
        }
    }

    /// Issue 15: a call may go to a fixed line or an 050 IP phone, never
    /// to M2M (020), free dial (0120), shared-cost (0570) or premium (0990).
    #[test]
    fn calls_reach_fixed_lines_and_ip_phones_only() {
        for raw in ["0312345678", "05012345678", "09012345678"] {
            let phone = Phone::parse_for(raw, jp(), Reach::Personal);
            assert!(phone.is_ok(), "{raw}: {phone:?}");
        }
        for raw in ["02012345678", "0120123456", "0570123456", "0990123456"] {
            let refused = Phone::parse_for(raw, jp(), Reach::Personal);
            assert_eq!(refused, Err(PhoneError::NotPersonal), "{raw}");
        }
    }

    #[test]
    fn rejects_garbage() {
        for raw in [
            "",
            "abc",
            "+",
            "090-1234-567",
            "0901234567890",
            "+81 90 1234 5678 ext. 9",
            "090-1234-5678;",
        ] {
            assert!(Phone::parse(raw, jp()).is_err(), "{raw:?} was accepted");
        }
    }

    #[test]
    fn reads_other_countries_in_e164() {
        let uk = Phone::parse("+447400123456", jp()).expect("UK mobile");
        assert_eq!((uk.masked(), uk.region()), ("+44 7400 **3456", "GB"));
        let us = Phone::parse("+12015550123", jp()).expect("US number");
        assert_eq!(us.country_code(), 1);
        assert!(!us.masked().contains("555"));
    }

    #[test]
    fn debug_is_masked() {
        let phone = Phone::parse("+819012345678", jp()).expect("valid");
        assert_eq!(format!("{phone:?}"), "Phone(+81 90-****-5678)");
    }
}
