//! Delivery: workers in every replica take queued sends from the outbox,
//! hand them to the carrier with retries (exponential backoff with full
//! jitter, never past the code's expiry), take over the sends a dead replica
//! left, and record each outcome. Retries, send metrics and send logging
//! happen here, once, for every carrier.

mod worker;

use std::time::Duration;

use serde::Deserialize;

pub use self::worker::Worker;

/// `[delivery]` in the configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliverySettings {
    /// Sends the outbox may hold; past it starts answer 503 `outbox-full`.
    pub max_queued: u64,
    /// Tries per send before it is dead-lettered.
    pub attempts: u32,
    /// Backoff before the second try; it doubles per try, up to `retry_max`.
    #[serde(with = "humantime_serde")]
    pub retry_base: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_max: Duration,
    /// A send claimed this long without finishing is taken over (its
    /// replica died; a live one keeps its claims fresh).
    #[serde(with = "humantime_serde")]
    pub claim_idle: Duration,
    /// The longest one carrier call may take, whatever the adapter's own
    /// timeouts: then it counts as a temporary failure and the route moves on.
    #[serde(with = "humantime_serde")]
    pub carrier_timeout: Duration,
    /// Sends in flight per replica.
    pub concurrency: usize,
}
