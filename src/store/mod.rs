//! Where otpd's state lives, by concern: `Verifications` (records, number
//! indexes, receipts), `Idempotency`, `Limits`, the `Outbox` and the
//! lifecycle `Events`. Each trait
//! has its own suite in `conformance`, which every backend passes: `memory`
//! (dev mode, tests) and `redis` (production: one server, Sentinel or
//! Cluster), each implementing all five. `Stores` hands them to the use
//! cases.
//!
//! A store keeps only what DESIGN allows at rest: keyed digests of codes and
//! bindings, the keyed hash of the number (`NumberKey`), the number sealed
//! for resends, and its masked form. Every method is one atomic step.

pub mod events;
mod idempotency;
mod limits;
mod memory;
mod outbox;
mod redis;
mod rules;
mod verification;

#[cfg(any(test, feature = "test-support"))]
pub mod conformance;

use std::sync::Arc;

pub use self::idempotency::{Idempotency, IdempotencyKey, Reservation};
pub use self::limits::Limits;
pub use self::memory::MemoryStore;
pub use self::outbox::{
    Claimed, Enqueue, Finish, Outbox, QueuedSend, Reroute, RerouteReason, Switch, Watch,
};
pub use self::redis::{ClusterSettings, RedisSettings, RedisStore, SentinelSettings, Topology};
pub use self::rules::Failures;
pub use self::verification::{
    Candidate, Changed, Checked, Delivery, DeliveryStatus, NewCode, NewVerification, Record,
    ResendPolicy, Resent, Started, Verifications,
};

/// HMAC-SHA256 output.
pub type Digest = [u8; 32];

/// The keyed hash of (service, number): what indexes a number's pending
/// verification without storing the number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NumberKey(pub [u8; 16]);

/// Verifications are spread over this many shards; each shard is one Redis
/// slot holding its verifications, number indexes and outbox stream.
pub const SHARDS: u8 = 64;

impl NumberKey {
    /// The tag of the number's shard, shared by its verification ids.
    pub fn shard(&self) -> [u8; 2] {
        [0, self.0[0] % SHARDS]
    }
}

/// The name of the secret a verification's digests were made with.
pub type KeyId = String;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("store unreachable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("store holds a record it cannot read: {0}")]
    Corrupt(String),
}

/// One backend seen through each of its five concerns.
#[derive(Clone)]
pub struct Stores {
    pub verifications: Arc<dyn Verifications>,
    pub idempotency: Arc<dyn Idempotency>,
    pub limits: Arc<dyn Limits>,
    pub outbox: Arc<dyn Outbox>,
    pub events: Arc<dyn events::Events>,
}

impl Stores {
    /// Every concern kept by `backend`.
    pub fn of<B: Verifications + Idempotency + Limits + Outbox + events::Events>(
        backend: Arc<B>,
    ) -> Self {
        Stores {
            verifications: backend.clone(),
            idempotency: backend.clone(),
            limits: backend.clone(),
            outbox: backend.clone(),
            events: backend,
        }
    }
}
