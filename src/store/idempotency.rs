//! Idempotency records: a request's fingerprint and its stored answer,
//! under the keyed hash of (API key, `Idempotency-Key`).

use std::time::Duration;

use async_trait::async_trait;

use super::{Digest, Error};
use crate::domain::Timestamp;

/// The keyed hash of (API key, `Idempotency-Key` value).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(pub [u8; 16]);

/// The stored answer of a request made with an `Idempotency-Key`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reservation {
    /// First use: the caller runs the request, then completes or releases.
    Reserved,
    /// Another request with this key is running or finished.
    Taken {
        fingerprint: Digest,
        answer: Option<Vec<u8>>,
    },
}

/// Where idempotency records live, each reserved by one request at a time.
#[async_trait]
pub trait Idempotency: Send + Sync + 'static {
    /// Claims `key` for a request with `fingerprint` for `lock` at most.
    async fn reserve(
        &self,
        key: &IdempotencyKey,
        fingerprint: &Digest,
        lock: Duration,
        now: Timestamp,
    ) -> Result<Reservation, Error>;

    /// Stores the answer of a reserved request for `keep`.
    async fn complete(
        &self,
        key: &IdempotencyKey,
        answer: &[u8],
        keep: Duration,
        now: Timestamp,
    ) -> Result<(), Error>;

    /// Gives a reserved key back unanswered (the request failed transiently).
    async fn release(&self, key: &IdempotencyKey) -> Result<(), Error>;
}
