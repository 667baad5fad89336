//! Carriers hand one SMS to one provider. Adapters translate; what to do on
//! failure is decided once, by the caller, for every carrier.

mod console;
mod null;
#[cfg(any(test, feature = "test-support"))]
mod recording;
mod route;
mod webhook;

use async_trait::async_trait;

pub use self::console::ConsoleCarrier;
pub use self::null::NullCarrier;
#[cfg(any(test, feature = "test-support"))]
pub use self::recording::RecordingCarrier;
pub use self::route::{CircuitSettings, Hop, Router};
pub use self::webhook::{
    signature as webhook_signature, webhook_key, WebhookCarrier, WebhookError, WebhookSettings,
};

use crate::domain::{Phone, ServiceName, VerificationId};
use crate::sms::Body;

/// One message for one verification.
#[derive(Debug)]
pub struct Sms {
    pub to: Phone,
    pub body: Body,
    pub service: ServiceName,
    pub verification: VerificationId,
    /// Which send of the verification: with its id, the idempotency key
    /// towards the carrier.
    pub send: u32,
}

/// The carrier took the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    pub message_id: String,
}

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Timeouts, throttling, 5xx: another try may work.
    #[error("temporary carrier failure")]
    Temporary(#[source] BoxError),
    /// The carrier refused this message; retrying will not help.
    #[error("carrier rejected the message: {reason}")]
    Rejected { reason: String },
}

#[async_trait]
pub trait Carrier: Send + Sync + 'static {
    /// Config key and metric label: "console", …
    fn name(&self) -> &str;
    async fn send(&self, sms: &Sms) -> Result<Accepted, SendError>;
}
