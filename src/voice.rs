//! What a verification call says, in Japanese or English: a short lead-in
//! with the service's name, then the code digit by digit with a pause
//! after each, then the whole code once more. Rendered as TwiML (Twilio),
//! SSML (the webhook gateway and Vonage's NCCO `talk`) and plain text
//! (the console). Japanese digits use the readings speech engines never
//! misread: 4 is よん and 7 is なな (never し or しち), 9 is きゅう.

use std::fmt;

use zeroize::Zeroizing;

use crate::domain::{Code, Locale};

/// The readings of 0–9 in Japanese.
pub const JA_DIGITS: [&str; 10] = [
    "ぜろ",
    "いち",
    "に",
    "さん",
    "よん",
    "ご",
    "ろく",
    "なな",
    "はち",
    "きゅう",
];
const EN_DIGITS: [&str; 10] = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
];
/// The pause after each digit.
const DIGIT_PAUSE_MS: u32 = 600;

/// A call's script. It holds the code, so `Debug` hides it and its memory
/// is wiped on drop.
pub struct Speech {
    /// BCP 47, as speech engines take it: `ja-JP` or `en-US`.
    language: &'static str,
    lead_in: String,
    again: &'static str,
    readings: &'static [&'static str; 10],
    /// The code's digits, 0–9.
    digits: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for Speech {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Speech({}, [redacted])", self.language)
    }
}

impl Speech {
    /// The script for `code` in `locale` (Japanese for `ja`, else English).
    pub fn new(locale: &Locale, service: &str, code: &Code) -> Self {
        let japanese = locale.as_str() == "ja";
        let readings = if japanese { &JA_DIGITS } else { &EN_DIGITS };
        let digits = code.digits().bytes().map(|digit| digit - b'0').collect();
        let (language, lead_in, again) = if japanese {
            (
                "ja-JP",
                format!("こちらは{service}です。認証コードをお知らせします。"),
                "もう一度繰り返します。",
            )
        } else {
            (
                "en-US",
                format!("This is {service}. Your verification code is:"),
                "Once again, your code is:",
            )
        };
        Speech {
            language,
            lead_in,
            again,
            readings,
            digits: Zeroizing::new(digits),
        }
    }

    pub fn language(&self) -> &'static str {
        self.language
    }

    /// The script as plain text, digits separated by commas.
    pub fn text(&self) -> Zeroizing<String> {
        let separator = if self.language == "ja-JP" {
            "、"
        } else {
            ", "
        };
        let code = self.spoken(separator, str::to_owned);
        let end = if self.language == "ja-JP" { "。" } else { "." };
        Zeroizing::new(format!(
            "{} {code}{end} {} {code}{end}",
            self.lead_in,
            self.again,
            code = code.as_str()
        ))
    }

    /// SSML: a `<break>` after every digit.
    pub fn ssml(&self) -> Zeroizing<String> {
        let code = self.spoken("", |digit| {
            format!("<s>{digit}</s><break time=\"{DIGIT_PAUSE_MS}ms\"/>")
        });
        Zeroizing::new(format!(
            "<speak xml:lang=\"{lang}\"><p>{lead}</p><p>{code}</p><p>{again}</p><p>{code}</p></speak>",
            lang = self.language,
            lead = escape(&self.lead_in),
            again = self.again,
            code = code.as_str(),
        ))
    }

    /// TwiML: one `<Say>` per digit, each followed by a one-second
    /// `<Pause>`.
    pub fn twiml(&self) -> Zeroizing<String> {
        let say = |text: &str| format!("<Say language=\"{}\">{text}</Say>", self.language);
        let code = self.spoken("", |digit| format!("{}<Pause length=\"1\"/>", say(digit)));
        Zeroizing::new(format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response>{lead}{code}{again}{code}</Response>",
            lead = say(&escape(&self.lead_in)),
            again = say(self.again),
            code = code.as_str(),
        ))
    }

    /// Each digit's reading rendered by `each`, joined by `separator`.
    fn spoken(&self, separator: &str, each: impl Fn(&str) -> String) -> Zeroizing<String> {
        let readings: Zeroizing<Vec<String>> = Zeroizing::new(
            self.digits
                .iter()
                .map(|&digit| each(self.readings[usize::from(digit)]))
                .collect(),
        );
        Zeroizing::new(readings.join(separator))
    }
}

/// XML text escaping, for the service's name.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn speech(locale: &str, service: &str, code: &str) -> Speech {
        let code = Code::parse(code, code.len()).expect("a code");
        Speech::new(&locale.parse().expect("locale"), service, &code)
    }

    /// Issue 15: Japanese digits are read so no engine misreads them: 4
    /// as よん and 7 as なな, never し or しち; the code is said twice,
    /// after a lead-in naming the service.
    #[test]
    fn japanese_digits_are_read_as_yon_and_nana() {
        let text = speech("ja", "Demo", "470947").text();
        assert_eq!(
            text.as_str(),
            "こちらはDemoです。認証コードをお知らせします。 よん、なな、ぜろ、きゅう、よん、なな。 もう一度繰り返します。 よん、なな、ぜろ、きゅう、よん、なな。"
        );
        for misread in ["、し、", "しち", " し、"] {
            assert!(!text.contains(misread), "{}", text.as_str());
        }
    }

    #[test]
    fn english_digits_one_by_one_twice() {
        let text = speech("en", "Demo", "123456").text();
        assert_eq!(
            text.as_str(),
            "This is Demo. Your verification code is: one, two, three, four, five, six. Once again, your code is: one, two, three, four, five, six."
        );
    }

    /// TwiML: a `<Say>` in the caller's language per digit, a pause after
    /// each, the service name escaped.
    #[test]
    fn twiml_says_each_digit_then_pauses() {
        let twiml = speech("ja", "A&B", "407").twiml();
        assert!(twiml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Say language=\"ja-JP\">こちらはA&amp;Bです。"));
        let digits = "<Say language=\"ja-JP\">よん</Say><Pause length=\"1\"/><Say language=\"ja-JP\">ぜろ</Say><Pause length=\"1\"/><Say language=\"ja-JP\">なな</Say><Pause length=\"1\"/>";
        assert_eq!(twiml.matches(digits).count(), 2, "{}", twiml.as_str());
        assert!(twiml.ends_with("</Response>"));
    }

    #[test]
    fn ssml_breaks_after_each_digit() {
        let ssml = speech("en", "Demo", "12").ssml();
        assert_eq!(
            ssml.as_str(),
            "<speak xml:lang=\"en-US\"><p>This is Demo. Your verification code is:</p><p><s>one</s><break time=\"600ms\"/><s>two</s><break time=\"600ms\"/></p><p>Once again, your code is:</p><p><s>one</s><break time=\"600ms\"/><s>two</s><break time=\"600ms\"/></p></speak>"
        );
    }

    #[test]
    fn debug_hides_the_code() {
        assert_eq!(
            format!("{:?}", speech("ja", "Demo", "123456")),
            "Speech(ja-JP, [redacted])"
        );
    }
}
