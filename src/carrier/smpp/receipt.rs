//! SMPP delivery receipts (SMPP-6, SMPP-7): the `id:… stat:…` text of a
//! `deliver_sm` read tolerantly, message states mapped, and message ids
//! normalised so that a hex id answered by `submit_sm_resp` matches the
//! decimal one some SMSCs put in their receipts (and the reverse).

/// What a receipt says became of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// `DELIVRD` (2).
    Delivered,
    /// `EXPIRED` (3), `DELETED` (4), `UNDELIV` (5), `REJECTD` (8).
    Failed,
    /// `ENROUTE` (1), `ACCEPTD` (6), `UNKNOWN` (7): not final.
    Pending,
}

impl State {
    /// From the text form's `stat:` value.
    pub fn from_stat(stat: &str) -> Option<State> {
        Some(match stat.to_ascii_uppercase().as_str() {
            "DELIVRD" => State::Delivered,
            "EXPIRED" | "DELETED" | "UNDELIV" | "REJECTD" => State::Failed,
            "ENROUTE" | "ACCEPTD" | "UNKNOWN" => State::Pending,
            _ => return None,
        })
    }

    /// From the `message_state` TLV (SMPP 3.4 §5.3.2.35).
    pub fn from_message_state(state: u8) -> Option<State> {
        Some(match state {
            2 => State::Delivered,
            3 | 4 | 5 | 8 => State::Failed,
            1 | 6 | 7 => State::Pending,
            _ => return None,
        })
    }
}

/// The message id and state of a receipt's text, keys matched without
/// regard to case; `None` for a layout this does not know.
pub fn parse(text: &str) -> Option<(String, State)> {
    let lower = text.to_ascii_lowercase();
    let value_of = |key: &str| {
        let start = lower.find(key)? + key.len();
        let rest = &text[start..];
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        Some(rest[..end].to_owned())
    };
    let id = value_of("id:")?;
    let state = State::from_stat(&value_of("stat:")?)?;
    (!id.is_empty()).then_some((id, state))
}

/// A message id as otpd keeps it: trimmed, lower case, no leading zeros.
pub fn normalise(id: &str) -> String {
    let id = id.trim().to_ascii_lowercase();
    let trimmed = id.trim_start_matches('0');
    if trimmed.is_empty() && !id.is_empty() {
        "0".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// How an SMSC writes the message ids of its receipts, against the ids
/// its `submit_sm_resp` gave: the same (the norm), or the same number in
/// the other base. Never guessed: a guess can match another send.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReceiptIds {
    #[default]
    Exact,
    /// Answers in hex, receipts in decimal.
    DecimalOfHex,
    /// Answers in decimal, receipts in hex.
    HexOfDecimal,
}

impl ReceiptIds {
    /// The id a receipt's id was answered as, as otpd indexed it; `None`
    /// when it cannot be read in the configured base.
    pub fn answered_as(self, id: &str) -> Option<String> {
        let id = normalise(id);
        match self {
            ReceiptIds::Exact => Some(id),
            ReceiptIds::DecimalOfHex => id.parse::<u128>().ok().map(|n| format!("{n:x}")),
            ReceiptIds::HexOfDecimal => u128::from_str_radix(&id, 16).ok().map(|n| n.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SMPP-7: all eight message states.
    #[test]
    fn maps_every_message_state_smpp_7() {
        let table = [
            ("ENROUTE", 1, State::Pending),
            ("DELIVRD", 2, State::Delivered),
            ("EXPIRED", 3, State::Failed),
            ("DELETED", 4, State::Failed),
            ("UNDELIV", 5, State::Failed),
            ("ACCEPTD", 6, State::Pending),
            ("UNKNOWN", 7, State::Pending),
            ("REJECTD", 8, State::Failed),
        ];
        for (stat, value, state) in table {
            assert_eq!(State::from_stat(stat), Some(state), "{stat}");
            assert_eq!(State::from_message_state(value), Some(state), "{value}");
        }
        assert_eq!(State::from_stat("WHATEVER"), None);
    }

    /// SMPP-6: the text form, with case and missing fields tolerated.
    #[test]
    fn reads_receipt_texts_smpp_6() {
        let corpus = [
            ("id:0A1B2C sub:001 dlvrd:001 submit date:2611220400 done date:2611220401 stat:DELIVRD err:000 text:", Some(("0A1B2C", State::Delivered))),
            ("ID:77 SUB:001 DLVRD:000 SUBMIT DATE:261122040012 DONE DATE:261122040112 STAT:UNDELIV ERR:001 Text:hello", Some(("77", State::Failed))),
            ("id:5 stat:ACCEPTD", Some(("5", State::Pending))),
            ("id:5 stat:", None),
            ("5;DELIVRD;000", None),
        ];
        for (text, expected) in corpus {
            let parsed = parse(text);
            assert_eq!(
                parsed.as_ref().map(|(id, s)| (id.as_str(), *s)),
                expected,
                "{text}"
            );
        }
    }

    #[test]
    fn receipt_ids_are_read_as_configured_never_guessed() {
        assert_eq!(normalise("000A1B"), "a1b");
        assert_eq!(normalise("0000"), "0");
        let answered = |ids: ReceiptIds, id: &str| ids.answered_as(id);
        assert_eq!(answered(ReceiptIds::Exact, "0000001F"), Some("1f".into()));
        assert_eq!(answered(ReceiptIds::Exact, "31"), Some("31".into()));
        // submit_sm_resp said "0000001F"; the receipt says "31".
        assert_eq!(
            answered(ReceiptIds::DecimalOfHex, "31"),
            Some(normalise("0000001F"))
        );
        assert_eq!(answered(ReceiptIds::DecimalOfHex, "1f"), None);
        // And the other way round.
        assert_eq!(answered(ReceiptIds::HexOfDecimal, "1f"), Some("31".into()));
    }
}
