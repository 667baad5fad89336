//! Verification ids: opaque, URL-safe, 120 random bits plus a 2-byte tag
//! (and a zero byte, so that each maps both ways to a Twilio Verify sid,
//! `VE` + 32 hex digits, with no lookup: `twilio_sid`).
//!
//! The tag comes from the keyed hash of the phone number, so the Redis keys
//! of one verification (by id and by number) share one `{tag}` and one
//! Redis Cluster slot (DESIGN invariant 7) without any lookup.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::rngs::OsRng;
use rand::TryRngCore;

/// Bytes of the slot tag at the front of an id.
pub const TAG_LEN: usize = 2;
const RANDOM_LEN: usize = 16;
const ID_LEN: usize = TAG_LEN + RANDOM_LEN;
/// 18 bytes are exactly 24 base64url characters, no padding.
const TEXT_LEN: usize = 24;

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct VerificationId([u8; ID_LEN]);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a verification id")]
pub struct IdError;

impl VerificationId {
    /// A new id carrying `tag`, with 120 bits from the OS CSPRNG and a
    /// last byte of zero.
    pub fn generate(tag: [u8; TAG_LEN]) -> Self {
        let mut bytes = [0u8; ID_LEN];
        bytes[..TAG_LEN].copy_from_slice(&tag);
        OsRng
            .unwrap_err()
            .try_fill_bytes(&mut bytes[TAG_LEN..ID_LEN - 1])
            .expect("OS RNG");
        VerificationId(bytes)
    }

    /// The Twilio Verify sid of this id: `VE` and the hex of its shard and
    /// random bytes. Ids from before sids (a first tag byte or a last byte
    /// other than zero) have none.
    pub fn twilio_sid(&self) -> Option<String> {
        if self.0[0] != 0 || self.0[ID_LEN - 1] != 0 {
            return None;
        }
        let hex: String = self.0[1..ID_LEN - 1]
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        Some(format!("VE{hex}"))
    }

    /// The id a Twilio Verify sid names (`VE` and 32 hex digits).
    pub fn from_twilio_sid(sid: &str) -> Result<Self, IdError> {
        let hex = sid.strip_prefix("VE").ok_or(IdError)?;
        if hex.len() != 2 * (ID_LEN - 2) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(IdError);
        }
        let mut bytes = [0u8; ID_LEN];
        for (at, pair) in hex.as_bytes().chunks(2).enumerate() {
            let text = std::str::from_utf8(pair).map_err(|_| IdError)?;
            bytes[at + 1] = u8::from_str_radix(text, 16).map_err(|_| IdError)?;
        }
        Ok(VerificationId(bytes))
    }

    pub fn tag(&self) -> [u8; TAG_LEN] {
        [self.0[0], self.0[1]]
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl FromStr for VerificationId {
    type Err = IdError;

    /// Accepts exactly the 24-character form; anything else is not an id,
    /// so junk never reaches the store.
    fn from_str(text: &str) -> Result<Self, IdError> {
        if text.len() != TEXT_LEN {
            return Err(IdError);
        }
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| IdError)?;
        let bytes: [u8; ID_LEN] = bytes.try_into().map_err(|_| IdError)?;
        let id = VerificationId(bytes);
        // Only the canonical spelling round-trips (base64 has spare bits).
        if id.to_string() != text {
            return Err(IdError);
        }
        Ok(id)
    }
}

impl fmt::Display for VerificationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&URL_SAFE_NO_PAD.encode(self.0))
    }
}

impl fmt::Debug for VerificationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerificationId({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 16: an id and its Twilio Verify sid map both ways, with no
    /// lookup; a sid in upper case is the same sid, junk is not an id.
    #[test]
    fn ids_map_both_ways_to_twilio_sids() {
        let id = VerificationId::generate([0, 37]);
        let sid = id.twilio_sid().expect("a sid");
        assert!(sid.starts_with("VE25") && sid.len() == 34, "{sid}");
        assert_eq!(VerificationId::from_twilio_sid(&sid), Ok(id));
        let upper = format!("VE{}", sid[2..].to_uppercase());
        assert_eq!(VerificationId::from_twilio_sid(&upper), Ok(id));
        for junk in [
            "VE",
            "VA25",
            &sid[..33],
            &format!("{sid}0"),
            "VE+5aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        ] {
            assert_eq!(
                VerificationId::from_twilio_sid(junk),
                Err(IdError),
                "{junk}"
            );
        }
    }

    #[test]
    fn ids_round_trip_and_keep_their_tag() {
        let id = VerificationId::generate([0xab, 0xcd]);
        let text = id.to_string();
        assert_eq!(text.len(), TEXT_LEN);
        assert!(text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        let parsed: VerificationId = text.parse().expect("round trip");
        assert_eq!(parsed, id);
        assert_eq!(parsed.tag(), [0xab, 0xcd]);
    }

    #[test]
    fn ids_differ() {
        assert_ne!(
            VerificationId::generate([0, 0]),
            VerificationId::generate([0, 0])
        );
    }

    #[test]
    fn junk_is_not_an_id() {
        for junk in [
            "",
            "abc",
            "x".repeat(25).as_str(),
            "!!!!!!!!!!!!!!!!!!!!!!!!",
            "AAAAAAAAAAAAAAAAAAAAAAA=",
        ] {
            assert_eq!(junk.parse::<VerificationId>(), Err(IdError), "{junk:?}");
        }
    }
}
