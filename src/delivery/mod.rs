//! Delivery: workers in every replica take queued sends from the outbox,
//! hand them to the carrier with retries (exponential backoff with full
//! jitter, never past the code's expiry), take over the sends a dead replica
//! left, record each outcome, and send once more through the next carrier
//! what a carrier accepted but did not deliver (REL-4, when configured). Retries, send metrics and send logging
//! happen here, once, for every carrier.

mod worker;

use std::time::Duration;

use serde::Deserialize;

use crate::config::{invalid, ConfigError};

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
    /// How long after a carrier that gives receipts accepted a message
    /// its receipt may take; past it the delivery is `delivery_unknown`
    /// (SMPP-7).
    #[serde(with = "humantime_serde")]
    pub receipt_timeout: Duration,
    /// Whether a send accepted by a carrier that gives receipts goes once
    /// more through the next carrier of its route when the receipt says
    /// `undelivered` or none comes within `receipt_timeout`, while the code
    /// lives (REL-4).
    pub reroute: bool,
}

impl DeliverySettings {
    /// Every count at least 1 and every timing one that lets sends go out:
    /// a claim kept fresh (every third of `claim_idle`, at least 1 s), a
    /// backoff that grows, a carrier given time to answer.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_queued == 0 || self.attempts == 0 || self.concurrency == 0 {
            return Err(invalid(
                "delivery",
                "max_queued, attempts and concurrency must be at least 1",
            ));
        }
        if self.claim_idle < Duration::from_secs(1) {
            return Err(invalid("delivery.claim_idle", "at least 1s"));
        }
        if self.retry_base.is_zero() || self.retry_max < self.retry_base {
            return Err(invalid(
                "delivery.retry_base",
                "more than 0, and at most retry_max",
            ));
        }
        if self.carrier_timeout.is_zero() {
            return Err(invalid("delivery.carrier_timeout", "more than 0"));
        }
        if self.receipt_timeout < Duration::from_secs(1) {
            return Err(invalid("delivery.receipt_timeout", "at least 1s"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    /// Issue 14: `claim_idle = "0s"` was accepted, and then no SMS was ever
    /// sent. Every timing that stops delivery is refused at start-up.
    #[test]
    fn timings_that_stop_delivery_are_refused() {
        let shipped = crate::config::Settings::dev("k").expect("dev").delivery;
        assert!(shipped.validate().is_ok());
        let refused = |change: fn(&mut super::DeliverySettings)| {
            let mut settings = shipped.clone();
            change(&mut settings);
            settings.validate().expect_err("refused").to_string()
        };
        assert!(refused(|s| s.claim_idle = Duration::ZERO).contains("delivery.claim_idle"));
        assert!(refused(|s| s.retry_base = Duration::ZERO).contains("delivery.retry_base"));
        assert!(refused(|s| s.retry_max = s.retry_base / 2).contains("delivery.retry_base"));
        assert!(refused(|s| s.carrier_timeout = Duration::ZERO).contains("carrier_timeout"));
        assert!(refused(|s| s.concurrency = 0).contains("concurrency"));
        assert!(refused(|s| s.receipt_timeout = Duration::ZERO).contains("receipt_timeout"));
    }
}
