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

/// A receipt that names only the carrier's message id (SMPP): otpd finds
/// the send by the index it kept when the carrier accepted the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageReceipt {
    pub carrier: String,
    pub message_id: String,
    pub delivered: bool,
}
