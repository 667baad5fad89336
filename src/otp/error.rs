//! What a use case can refuse, with a stable `code` and a transport-free
//! `kind` that `http/problem.rs` (and later gRPC) maps to a status.

use std::time::Duration;

use crate::attestation::Refusal;
use crate::domain::{Channel, Status};
use crate::ratelimit::Scope;
use crate::store;

/// Which limit refused, and when a retry passes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limited {
    pub scope: Scope,
    pub retry_after: Duration,
    /// Its name in the RateLimit header fields.
    pub policy: String,
    pub quota: u64,
    pub window: Duration,
}

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
    #[error("too many messages are waiting to be sent; try again shortly")]
    OutboxFull,
    #[error("too many requests ({} limit); retry in {} s", .0.scope.as_str(), .0.retry_after.as_secs().max(1))]
    RateLimited(Limited),
    #[error("the sending budget is used up; retry in {} s", .0.retry_after.as_secs().max(1))]
    BudgetExhausted(Limited),
    #[error("this service does not send to that country")]
    CountryNotAllowed,
    #[error("this verification's number cannot take a message on {0}")]
    Unreachable(Channel),
    #[error("the message would not fit the service's max_segments with this app_hash or name; use a shorter template, name or locale")]
    MessageTooLong,
    #[error("{}", .0.detail())]
    AttestationRefused(Refusal),
    #[error("the attestation provider could not be asked; try again shortly")]
    AttestationUnavailable,
    #[error("this Idempotency-Key was used with a different request")]
    IdempotencyKeyReused,
    #[error("a request with this Idempotency-Key is still in progress")]
    IdempotencyKeyInUse,
    #[error("this replica's clock is {} ms from Redis's, past redis.max_clock_skew", .0.as_millis())]
    ClockSkew(Duration),
    #[error("verification store unavailable")]
    Store(#[from] store::Error),
}

/// How an error should be answered, whatever the transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Forbidden,
    NotFound,
    Conflict,
    Unprocessable,
    Limited { retry_after: Duration },
    Unavailable,
}

impl Error {
    /// The limit behind a 429 from a limit, for its headers and `scope`.
    pub fn limit(&self) -> Option<&Limited> {
        match self {
            Error::RateLimited(limited) | Error::BudgetExhausted(limited) => Some(limited),
            _ => None,
        }
    }

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
            Error::OutboxFull => "outbox-full",
            Error::RateLimited(_) => "rate-limited",
            Error::BudgetExhausted(_) => "budget-exhausted",
            Error::CountryNotAllowed => "country-not-allowed",
            Error::Unreachable(_) => "channel-unreachable",
            Error::MessageTooLong => "message-too-long",
            Error::AttestationRefused(Refusal::Missing) => "attestation-required",
            Error::AttestationRefused(_) => "attestation-failed",
            Error::AttestationUnavailable => "attestation-unavailable",
            Error::IdempotencyKeyReused => "idempotency-key-reused",
            Error::IdempotencyKeyInUse => "idempotency-key-in-use",
            Error::ClockSkew(_) => "clock-skew",
            Error::Store(_) => "store-unavailable",
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            Error::ServiceNotFound | Error::NotFound => Kind::NotFound,
            Error::Finished(_) | Error::IdempotencyKeyInUse => Kind::Conflict,
            Error::IdempotencyKeyReused
            | Error::CountryNotAllowed
            | Error::MessageTooLong
            | Error::Unreachable(_) => Kind::Unprocessable,
            Error::RateLimited(limited) | Error::BudgetExhausted(limited) => Kind::Limited {
                retry_after: limited.retry_after,
            },
            Error::ResendTooSoon(wait) | Error::MaxSends(wait) => {
                Kind::Limited { retry_after: *wait }
            }
            Error::AttestationRefused(_) => Kind::Forbidden,
            Error::Store(_)
            | Error::OutboxFull
            | Error::AttestationUnavailable
            | Error::ClockSkew(_) => Kind::Unavailable,
        }
    }
}
