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
