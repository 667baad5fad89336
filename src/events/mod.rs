//! Lifecycle events for the relying party: each state change of a
//! verification (and each refused start) is queued by the store in the
//! same atomic step (`store::events`); the `Publisher` in every replica
//! posts them, in order per queue, to the service's events endpoint,
//! signed per Standard Webhooks, retried with backoff, dead-lettered
//! after `max_tries`. At least once: the `webhook-id` (the event id) is
//! the receiver's key for dropping duplicates.

mod publisher;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{invalid, ConfigError};
use crate::store::events::Event;

pub use self::publisher::Publisher;

/// `[events]`: how every replica delivers the events of the services
/// that have an endpoint (`services.<name>.events`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventSettings {
    /// How often a replica reads the queues it holds, and tries to take
    /// those no replica holds.
    #[serde(with = "humantime_serde")]
    pub poll: Duration,
    /// How long a replica holds a queue without renewing it: a replica
    /// that dies gives its queues up after this.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// Wait after a failed post, doubling per try up to `retry_max`.
    #[serde(with = "humantime_serde")]
    pub retry_base: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_max: Duration,
    /// Tries per event before it is dead-lettered.
    pub max_tries: u32,
}

impl EventSettings {
    /// Timings under which events still flow: a lease renewed several
    /// times before it lapses, a backoff that grows.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.poll.is_zero() || self.lease < self.poll * 3 {
            return Err(invalid(
                "events.lease",
                "at least three times events.poll (> 0)",
            ));
        }
        if self.retry_base.is_zero() || self.retry_max < self.retry_base {
            return Err(invalid(
                "events.retry_base",
                "more than 0, and at most retry_max",
            ));
        }
        if self.max_tries == 0 {
            return Err(invalid("events.max_tries", "at least 1"));
        }
        Ok(())
    }

    /// The wait after the `tries`th failed post.
    pub fn backoff(&self, tries: u32) -> Duration {
        let doubled = self
            .retry_base
            .saturating_mul(2u32.saturating_pow(tries.saturating_sub(1)));
        doubled.min(self.retry_max)
    }
}

/// The JSON body of one event, Standard Webhooks' `type`, `timestamp`,
/// `data`. Never a code or a full number.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Payload {
    /// `verification.started`, `.sent`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// When it happened (RFC 3339).
    pub timestamp: String,
    pub data: PayloadData,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PayloadData {
    /// Also the `webhook-id`: the same on every try.
    pub event_id: String,
    /// Absent for `blocked` (no verification exists).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification_id: Option<String>,
    /// The verification's events count from 1 in the order they happened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sequence: Option<u32>,
    pub service: String,
    /// Masked: `+81 90-****-5678`.
    pub to: String,
    pub channel: String,
    /// The carrier of the latest send, once one accepted it.
    pub carrier: Option<String>,
    /// ISO 3166-1 alpha-2.
    pub country: String,
    /// `blocked`: the limit's scope; `undelivered`: `receipt` or
    /// `send_failed`; `canceled`: `request` or `replaced`; `fallback`:
    /// `timeout` or `undelivered`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Payload {
    pub fn of(event: &Event) -> Self {
        let sequence = event
            .verification
            .and_then(|_| event.id.rsplit_once('.'))
            .and_then(|(_, n)| n.parse().ok());
        Payload {
            kind: format!("verification.{}", event.kind.as_str()),
            timestamp: event.at.to_string(),
            data: PayloadData {
                event_id: event.id.clone(),
                verification_id: event.verification.map(|id| id.to_string()),
                sequence,
                service: event.service.to_string(),
                to: event.masked_to.clone(),
                channel: event.channel.as_str().into(),
                carrier: event.carrier.clone(),
                country: event.country.clone(),
                reason: event.reason.clone(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Channel, Timestamp, VerificationId};
    use crate::store::events::EventKind;

    #[test]
    fn a_payload_names_the_event_and_never_the_number() {
        let id = VerificationId::generate([0, 7]);
        let event = Event {
            id: format!("{id}.3"),
            kind: EventKind::Delivered,
            verification: Some(id),
            service: "demo".parse().expect("service"),
            masked_to: "+81 90-****-5678".into(),
            channel: Channel::Sms,
            carrier: Some("smsc".into()),
            country: "JP".into(),
            at: Timestamp::from_millis(1_764_806_400_000),
            reason: None,
        };
        let json = serde_json::to_value(Payload::of(&event)).expect("json");
        assert_eq!(json["type"], "verification.delivered");
        assert_eq!(json["timestamp"], "2025-12-04T00:00:00Z");
        assert_eq!(json["data"]["sequence"], 3);
        assert_eq!(json["data"]["to"], "+81 90-****-5678");
        assert!(json["data"].get("reason").is_none());
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let settings = EventSettings {
            poll: Duration::from_secs(1),
            lease: Duration::from_secs(10),
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(5),
            max_tries: 4,
        };
        let waits: Vec<u64> = (1..=5).map(|n| settings.backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 5, 5]);
        assert!(settings.validate().is_ok());
        let short_lease = EventSettings {
            lease: Duration::from_secs(2),
            ..settings
        };
        assert!(short_lease.validate().is_err());
    }
}
