//! What a use case can refuse, with a stable `code` and a transport-free
//! `kind` that `http/problem.rs` (and later gRPC) maps to a status.

use std::time::Duration;

use crate::carrier::SendError;
use crate::domain::Status;
use crate::store;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no such service")]
    ServiceNotFound,
    #[error("no pending verification with that id")]
    NotFound,
    #[error("the verification is already {0}")]
    Finished(Status),
    #[error("a new code can be sent in {} s", .0.as_secs())]
    ResendTooSoon(Duration),
    #[error("no more codes can be sent for this verification")]
    MaxSends(Duration),
    #[error("the carrier did not take the message; try again")]
    SendFailed(#[source] SendError),
    #[error("this Idempotency-Key was used with a different request")]
    IdempotencyKeyReused,
    #[error("a request with this Idempotency-Key is still in progress")]
    IdempotencyKeyInUse,
    #[error("verification store unavailable")]
    Store(#[from] store::Error),
}

/// How an error should be answered, whatever the transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    NotFound,
    Conflict,
    Unprocessable,
    Limited { retry_after: Duration },
    BadGateway,
    Unavailable,
}

impl Error {
    pub fn code(&self) -> &'static str {
        match self {
            Error::ServiceNotFound => "service-not-found",
            Error::NotFound => "verification-not-found",
            Error::Finished(Status::Approved) => "verification-approved",
            Error::Finished(Status::Failed) => "verification-failed",
            Error::Finished(Status::Canceled) => "verification-canceled",
            // A pending verification never answers `Finished`; if one did,
            // calling it a conflict is the safe reading.
            Error::Finished(Status::Pending) => "verification-pending",
            Error::ResendTooSoon(_) => "resend-too-soon",
            Error::MaxSends(_) => "max-sends-reached",
            Error::SendFailed(_) => "send-failed",
            Error::IdempotencyKeyReused => "idempotency-key-reused",
            Error::IdempotencyKeyInUse => "idempotency-key-in-use",
            Error::Store(_) => "store-unavailable",
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            Error::ServiceNotFound | Error::NotFound => Kind::NotFound,
            Error::Finished(_) | Error::IdempotencyKeyInUse => Kind::Conflict,
            Error::IdempotencyKeyReused => Kind::Unprocessable,
            Error::ResendTooSoon(wait) | Error::MaxSends(wait) => {
                Kind::Limited { retry_after: *wait }
            }
            Error::SendFailed(_) => Kind::BadGateway,
            Error::Store(_) => Kind::Unavailable,
        }
    }
}
