//! What the HTTP provider adapters (webhook, Twilio, Vonage) share: the
//! client, how transport failures and statuses are classified, the
//! callback URL receipts come back to, and reading form callbacks.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Message, ReceiptError, SendError};

/// How far a signed callback's timestamp may be from our clock (replays).
pub const TOLERANCE_SECS: u64 = 300;

pub fn client(timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|e| e.to_string())
}

/// Timeouts and connection failures: another try may work. The URL is
/// dropped from the error (it may carry credentials).
pub fn transport(error: reqwest::Error) -> SendError {
    SendError::Temporary(Box::new(error.without_url()))
}

/// An HTTP failure: 429 throttles, 408 and 5xx are worth another try,
/// any other status rejects the message.
pub fn failure(status: reqwest::StatusCode, reason: String) -> SendError {
    match status.as_u16() {
        429 => SendError::Throttled { reason },
        408 | 500..=599 => SendError::Temporary(reason.into()),
        _ => SendError::Rejected { reason },
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Whether a signed timestamp is within the tolerance of our clock.
pub fn fresh(timestamp: u64) -> bool {
    unix_now().abs_diff(timestamp) <= TOLERANCE_SECS
}

/// Where `carrier` posts its receipts, under otpd's public base URL.
pub fn receipts_url(public_url: &str, carrier: &str) -> String {
    format!(
        "{}/v1/carriers/{carrier}/receipts",
        public_url.trim_end_matches('/')
    )
}

/// `"<verification id>.<send>"`: how a receipt names its send.
pub fn reference<B>(message: &Message<B>) -> String {
    format!("{}.{}", message.verification, message.send)
}

/// The verification and send named by the `ref` query parameter of a
/// callback URL (`?ref=<reference>`, as `reference` writes it).
pub fn query_reference(
    path_and_query: &str,
) -> Result<(crate::domain::VerificationId, u32), ReceiptError> {
    let query = path_and_query.split_once('?').map_or("", |(_, q)| q);
    let reference = form(query.as_bytes())?
        .remove("ref")
        .ok_or_else(|| ReceiptError::Malformed("ref".into()))?;
    parse_reference(&reference)
}

/// The verification and send a `reference` names.
pub fn parse_reference(
    reference: &str,
) -> Result<(crate::domain::VerificationId, u32), ReceiptError> {
    let malformed = || ReceiptError::Malformed("reference".into());
    let (id, send) = reference.split_once('.').ok_or_else(malformed)?;
    Ok((
        id.parse().map_err(|_| malformed())?,
        send.parse().map_err(|_| malformed())?,
    ))
}

/// An `application/x-www-form-urlencoded` body (or query) as a map.
pub fn form(encoded: &[u8]) -> Result<BTreeMap<String, String>, ReceiptError> {
    serde_urlencoded::from_bytes(encoded).map_err(|e| ReceiptError::Malformed(e.to_string()))
}
