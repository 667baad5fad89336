//! Carriers hand one SMS to one provider. Adapters translate; what to do on
//! failure is decided once, by the caller, for every carrier.

mod console;
mod null;
mod provider;
#[cfg(any(test, feature = "test-support"))]
mod recording;
mod route;
mod smpp;
mod twilio;
mod vonage;
mod webhook;

use async_trait::async_trait;

pub use self::console::{ConsoleCarrier, DEV_BANNER, PRODUCTION_BANNER};
pub use self::null::NullCarrier;
pub use self::provider::form as receipt_form;
#[cfg(any(test, feature = "test-support"))]
pub use self::recording::RecordingCarrier;
pub use self::route::{Admission, CircuitSettings, Hop, Router};
pub use self::smpp::{read_receipt, ReceiptIds, ReceiptState, SmppCarrier, SmppSettings};
pub use self::twilio::{twilio_signature, TwilioCarrier, TwilioSettings};
pub use self::vonage::{vonage_signature, VonageCarrier, VonageSettings};
pub use self::webhook::{
    signature as webhook_signature, webhook_key, SignedEndpoint, WebhookCarrier, WebhookError,
    WebhookSettings,
};

use crate::domain::{Channel, Phone, Receipt, ServiceName, VerificationId};
use crate::sms::Body;
use crate::voice::Speech;

/// One message for one verification: an SMS (`Sms`, its body the text)
/// or a call (`Call`, its body the script read out).
#[derive(Debug)]
pub struct Message<B> {
    pub to: Phone,
    pub body: B,
    pub service: ServiceName,
    pub verification: VerificationId,
    /// Which send of the verification: with its id, the idempotency key
    /// towards the carrier.
    pub send: u32,
    /// The fallback steps that ran before it for this send (0: the send
    /// as started or resent; 1: the first step's call …): what tells
    /// one send's messages apart (an SMS and the call after it).
    pub step: u32,
    /// The code's remaining life when this try starts: carriers that can
    /// drop a message not delivered in time are told so, and a stale code
    /// is never delivered.
    pub valid_for: std::time::Duration,
}

pub type Sms = Message<Body>;
pub type Call = Message<Speech>;

/// What a worker hands to a carrier: an SMS or a call.
#[derive(Debug)]
pub enum Outgoing {
    Sms(Sms),
    Call(Call),
}

impl Outgoing {
    pub fn channel(&self) -> Channel {
        match self {
            Outgoing::Sms(_) => Channel::Sms,
            Outgoing::Call(_) => Channel::Voice,
        }
    }

    pub fn to(&self) -> &Phone {
        match self {
            Outgoing::Sms(sms) => &sms.to,
            Outgoing::Call(call) => &call.to,
        }
    }

    pub fn service(&self) -> &ServiceName {
        match self {
            Outgoing::Sms(sms) => &sms.service,
            Outgoing::Call(call) => &call.service,
        }
    }

    /// The verification and which of its sends this is.
    pub fn send(&self) -> (VerificationId, u32) {
        match self {
            Outgoing::Sms(sms) => (sms.verification, sms.send),
            Outgoing::Call(call) => (call.verification, call.send),
        }
    }

    pub fn set_valid_for(&mut self, valid_for: std::time::Duration) {
        match self {
            Outgoing::Sms(sms) => sms.valid_for = valid_for,
            Outgoing::Call(call) => call.valid_for = valid_for,
        }
    }

    /// Hands it to `carrier`.
    pub async fn via(&self, carrier: &dyn Carrier) -> Result<Accepted, SendError> {
        match self {
            Outgoing::Sms(sms) => carrier.send(sms).await,
            Outgoing::Call(call) => carrier.call(call).await,
        }
    }
}

/// The carrier took the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    pub message_id: String,
}

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Timeouts, 5xx, a lost link: another try may work; counts toward
    /// the carrier's circuit breaker.
    #[error("temporary carrier failure")]
    Temporary(#[source] BoxError),
    /// The carrier is alive but asks us to slow down (429, SMPP
    /// `ESME_RTHROTTLED`): try later or elsewhere; not a failure.
    #[error("carrier throttled: {reason}")]
    Throttled { reason: String },
    /// The carrier refused this message; retrying will not help.
    #[error("carrier rejected the message: {reason}")]
    Rejected { reason: String },
}

/// A delivery-receipt callback as it reached otpd: what the carrier signed.
pub struct Callback<'a> {
    /// The path and query as requested (some providers sign the URL).
    pub path_and_query: &'a str,
    /// Header names in lower case.
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

impl Callback<'_> {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReceiptError {
    #[error("this carrier takes no receipts over HTTP")]
    NotSupported,
    /// Unsigned, badly signed or too old: nothing is read.
    #[error("the receipt's signature does not verify")]
    BadSignature,
    #[error("the receipt is malformed: {0}")]
    Malformed(String),
}

/// How a carrier's delivery receipts name the send they are about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Receipts {
    /// It gives none (console, null).
    None,
    /// They echo otpd's reference to the send (HTTP providers).
    ByReference,
    /// They name only the carrier's message id, so otpd indexes the id of
    /// every accepted message (SMPP).
    ByMessageId,
}

#[async_trait]
pub trait Carrier: Send + Sync + 'static {
    /// Config key and metric label: "console", …
    fn name(&self) -> &str;
    async fn send(&self, sms: &Sms) -> Result<Accepted, SendError>;

    /// Places a call that reads the code out; carriers without voice
    /// refuse it.
    async fn call(&self, _call: &Call) -> Result<Accepted, SendError> {
        Err(SendError::Rejected {
            reason: format!("{} places no calls", self.name()),
        })
    }

    /// Reads a receipt callback once its signature verifies; `None` for a
    /// status that is not final (queued, sent …).
    fn receipt(&self, _callback: &Callback<'_>) -> Result<Option<Receipt>, ReceiptError> {
        Err(ReceiptError::NotSupported)
    }

    /// Whether the carrier reports delivery, and how its receipts name
    /// the send.
    fn receipts(&self) -> Receipts {
        Receipts::None
    }

    /// Keeps the carrier's link (an SMPP bind) until `stop` turns true,
    /// then closes it gracefully. HTTP carriers have none.
    async fn connect(&self, _stop: tokio::sync::watch::Receiver<bool>) {}
}
