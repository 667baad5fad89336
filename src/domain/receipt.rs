//! What a carrier says of a message it took (its delivery receipt): shared
//! by the carriers that read receipts, the use case that records them, and
//! the stores that keep them.

use super::VerificationId;

/// A carrier's word on a message it took, from its delivery receipt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    pub verification: VerificationId,
    pub send: u32,
    pub message_id: String,
    pub delivered: bool,
}

/// A carrier's receipt as it reached otpd, whatever the way in (an HTTP
/// callback, an SMPP `deliver_sm`): the one input of the receipt use case
/// (`Otp::record_receipt`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CarrierReceipt {
    pub carrier: String,
    pub message_id: String,
    pub delivered: bool,
    /// The send it is about when the carrier echoes otpd's reference (the
    /// HTTP providers); else otpd finds it by the index of message ids it
    /// kept when the carrier accepted the message (SMPP).
    pub send: Option<(VerificationId, u32)>,
}

impl CarrierReceipt {
    /// What an HTTP provider's callback said of one of otpd's sends.
    pub fn for_send(carrier: &str, receipt: Receipt) -> Self {
        CarrierReceipt {
            carrier: carrier.to_owned(),
            message_id: receipt.message_id,
            delivered: receipt.delivered,
            send: Some((receipt.verification, receipt.send)),
        }
    }
}
