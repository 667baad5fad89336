//! GSM 03.38 versus UCS-2, and segment counts (SMS-1, SMS-2, SMS-3, SMS-4).

/// The GSM 03.38 basic character set, in table order.
const GSM7_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\u{1b}ÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
/// The extension table: each costs an escape plus itself (SMS-2).
const GSM7_EXTENSION: &str = "\u{c}^{}\\[~]|€";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Gsm7,
    Ucs2,
}

impl Encoding {
    /// GSM-7 when every character is in its tables, else UCS-2 (SMS-1).
    pub fn for_text(text: &str) -> Self {
        let gsm = text
            .chars()
            .all(|c| GSM7_BASIC.contains(c) || GSM7_EXTENSION.contains(c));
        if gsm {
            Encoding::Gsm7
        } else {
            Encoding::Ucs2
        }
    }
}

/// Septets (GSM-7) or UTF-16 code units (UCS-2) of each character.
fn units(text: &str, encoding: Encoding) -> Vec<usize> {
    text.chars()
        .map(|c| match encoding {
            Encoding::Gsm7 if GSM7_EXTENSION.contains(c) => 2,
            Encoding::Gsm7 => 1,
            Encoding::Ucs2 => c.len_utf16(),
        })
        .collect()
}

/// Segments `text` needs: one if it fits 160 septets / 70 code units, else
/// 153 / 67 per segment (8-bit concatenation header), never splitting an
/// escape pair or a surrogate pair across segments.
pub fn segments(text: &str) -> usize {
    let encoding = Encoding::for_text(text);
    let (single, multi) = match encoding {
        Encoding::Gsm7 => (160, 153),
        Encoding::Ucs2 => (70, 67),
    };
    let units = units(text, encoding);
    if units.iter().sum::<usize>() <= single {
        return 1;
    }
    let (mut count, mut used) = (1, 0);
    for width in units {
        if used + width > multi {
            count += 1;
            used = 0;
        }
        used += width;
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chooses_the_encoding_sms_1() {
        assert_eq!(Encoding::for_text("Your code is 123456"), Encoding::Gsm7);
        assert_eq!(Encoding::for_text("Price: 5€ [ok]"), Encoding::Gsm7);
        assert_eq!(Encoding::for_text("認証コード123456"), Encoding::Ucs2);
    }

    #[test]
    fn extension_characters_count_twice_sms_2() {
        assert_eq!(segments(&"€".repeat(80)), 1);
        assert_eq!(segments(&"€".repeat(81)), 2);
    }

    #[test]
    fn segment_arithmetic_sms_3() {
        assert_eq!(segments(&"a".repeat(160)), 1);
        assert_eq!(segments(&"a".repeat(161)), 2);
        assert_eq!(segments(&"a".repeat(306)), 2);
        assert_eq!(segments(&"a".repeat(307)), 3);
        assert_eq!(segments(&"あ".repeat(70)), 1);
        assert_eq!(segments(&"あ".repeat(71)), 2);
        assert_eq!(segments(&"あ".repeat(670)), 10);
    }

    #[test]
    fn surrogate_pairs_are_never_split_sms_4() {
        assert_eq!(segments(&"あ".repeat(69)), 1);
        assert_eq!(segments(&format!("{}😀", "あ".repeat(68))), 1);
        assert_eq!(segments(&format!("{}😀", "あ".repeat(69))), 2);
        // 66 + an emoji is 68 units: the emoji moves to the second segment.
        assert_eq!(
            segments(&format!("{}😀{}", "あ".repeat(66), "あ".repeat(67))),
            3
        );
    }
}

/// Properties over generated texts (SMS-1 … SMS-4): exact counts where no
/// pair can straddle a segment boundary, tight bounds where one can.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    fn ceil_div(a: usize, b: usize) -> usize {
        a.div_ceil(b)
    }

    /// Any text of GSM-7 characters, extension ones included.
    fn gsm_text() -> impl Strategy<Value = String> {
        let alphabet: Vec<char> = GSM7_BASIC.chars().chain(GSM7_EXTENSION.chars()).collect();
        proptest::collection::vec(proptest::sample::select(alphabet), 0..400)
            .prop_map(|chars| chars.into_iter().collect())
    }

    /// Japanese, ASCII and emoji mixed: always UCS-2 once one is not GSM-7.
    fn mixed_text() -> impl Strategy<Value = String> {
        let pieces = prop_oneof![
            "[ぁ-んァ-ン一-龥]{1,5}",
            "[a-zA-Z0-9 ]{1,8}",
            "[😀-🙏]{1,2}",
        ];
        proptest::collection::vec(pieces, 1..40).prop_map(|parts| parts.concat())
    }

    proptest! {
        #[test]
        fn plain_gsm_counts_exactly(text in "[A-Za-z0-9 .,:!?@]{0,500}") {
            prop_assert_eq!(Encoding::for_text(&text), Encoding::Gsm7);
            let expected = if text.len() <= 160 { 1 } else { ceil_div(text.len(), 153) };
            prop_assert_eq!(segments(&text), expected);
        }

        #[test]
        fn gsm_with_extensions_stays_within_bounds(text in gsm_text()) {
            prop_assert_eq!(Encoding::for_text(&text), Encoding::Gsm7);
            let septets: usize = units(&text, Encoding::Gsm7).iter().sum();
            let count = segments(&text);
            if septets <= 160 {
                prop_assert_eq!(count, 1);
            } else {
                // An escape pair is never split: a segment loses at most one septet.
                prop_assert!(count >= ceil_div(septets, 153) && count <= ceil_div(septets, 152));
            }
        }

        #[test]
        fn basic_multilingual_ucs2_counts_exactly(text in "[ぁ-んァ-ン一-龥a-z0-9]{1,300}") {
            prop_assume!(Encoding::for_text(&text) == Encoding::Ucs2);
            let units = text.chars().count();
            let expected = if units <= 70 { 1 } else { ceil_div(units, 67) };
            prop_assert_eq!(segments(&text), expected);
        }

        #[test]
        fn mixed_text_with_emoji_stays_within_bounds(text in mixed_text()) {
            prop_assume!(Encoding::for_text(&text) == Encoding::Ucs2);
            let code_units = text.encode_utf16().count();
            let count = segments(&text);
            if code_units <= 70 {
                prop_assert_eq!(count, 1);
            } else {
                // A surrogate pair is never split.
                prop_assert!(count >= ceil_div(code_units, 67) && count <= ceil_div(code_units, 66));
            }
        }

        #[test]
        fn appending_never_needs_fewer_segments(text in mixed_text(), more in "[a-zあ😀€]{1,3}") {
            let longer = format!("{text}{more}");
            prop_assert!(segments(&longer) >= segments(&text));
        }
    }
}
