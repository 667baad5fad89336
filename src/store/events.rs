//! Lifecycle events: what happened to a verification, queued for the
//! relying party by the same atomic step as the change itself, in a queue
//! per shard and service (so one failing endpoint holds back only its own
//! service). One replica at a time holds a queue's lease and delivers it in
//! order; it also records `expired` for the queue's verifications whose
//! time ran out (the schedule lives beside the queue).

use std::time::Duration;

use async_trait::async_trait;

use super::Error;
use crate::domain::{Channel, ServiceName, Timestamp, VerificationId};

/// What happened (`verification.<kind>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    Started,
    /// A carrier accepted a send.
    Sent,
    Delivered,
    /// The receipt said it did not arrive, or every route failed.
    Undelivered,
    Approved,
    /// The attempts ran out.
    Failed,
    Expired,
    Canceled,
    /// A start was refused by a limit (no verification exists).
    Blocked,
    /// The code went again on the fallback channel.
    Fallback,
}

impl EventKind {
    pub const ALL: [EventKind; 10] = [
        EventKind::Started,
        EventKind::Sent,
        EventKind::Delivered,
        EventKind::Undelivered,
        EventKind::Approved,
        EventKind::Failed,
        EventKind::Expired,
        EventKind::Canceled,
        EventKind::Blocked,
        EventKind::Fallback,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Started => "started",
            EventKind::Sent => "sent",
            EventKind::Delivered => "delivered",
            EventKind::Undelivered => "undelivered",
            EventKind::Approved => "approved",
            EventKind::Failed => "failed",
            EventKind::Expired => "expired",
            EventKind::Canceled => "canceled",
            EventKind::Blocked => "blocked",
            EventKind::Fallback => "fallback",
        }
    }
}

impl std::str::FromStr for EventKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        EventKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| format!("unknown event kind {text:?}"))
    }
}

/// One event as queued. It never holds a code or a full number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// `<verification id>.<n>`, n counting the verification's events from
    /// 1 (a blocked start: a random id): the same on every try, so the
    /// receiver drops duplicates and orders a verification's events.
    pub id: String,
    pub kind: EventKind,
    /// Absent for `blocked`.
    pub verification: Option<VerificationId>,
    pub service: ServiceName,
    /// `+81 90-****-5678`.
    pub masked_to: String,
    pub channel: Channel,
    /// The carrier of the latest send, once one accepted it.
    pub carrier: Option<String>,
    /// ISO 3166-1 alpha-2.
    pub country: String,
    pub at: Timestamp,
    /// `blocked`: the limit's scope; `undelivered`: `receipt` or
    /// `send_failed`; `canceled`: `request` or `replaced`; `fallback`:
    /// `timeout` or `undelivered`.
    pub reason: Option<String>,
}

/// An event in its queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Queued {
    /// Its place in the queue.
    pub entry: String,
    pub event: Event,
}

/// One replica's hold on one queue (shard × service).
#[derive(Clone, Debug)]
pub struct Lease {
    pub shard: [u8; 2],
    pub service: ServiceName,
    pub holder: String,
    /// How long the hold lasts without renewal: a replica that dies
    /// gives its queues up this long after its last renewal.
    pub ttl: Duration,
}

/// What a poll of a held queue found.
#[derive(Debug, Default)]
pub struct Polled {
    /// The oldest events, in order.
    pub events: Vec<Queued>,
    /// Verifications whose expiry has come, for `expire`.
    pub expiring: Vec<VerificationId>,
}

/// What a failed try came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tried {
    /// Tried this many times; stays first in its queue.
    Again(u32),
    /// Out of tries: moved to the dead letters.
    DeadLettered,
    /// The lease was lost; nothing changed.
    NotHeld,
}

#[async_trait]
pub trait Events: Send + Sync {
    /// Queues `event` (a `blocked` start, which changes no verification)
    /// in `shard` if its service has events.
    async fn blocked(&self, shard: [u8; 2], event: &Event) -> Result<(), Error>;

    /// Takes or renews `lease` and, if held, reads up to `max` events and
    /// the verifications due to expire by `now`; `None` when another
    /// replica holds the queue.
    async fn poll(
        &self,
        lease: &Lease,
        max: usize,
        now: Timestamp,
    ) -> Result<Option<Polled>, Error>;

    /// Queues `expired` for those of `due` still pending and expired at
    /// `now`, each once; how many.
    async fn expire(
        &self,
        lease: &Lease,
        due: &[VerificationId],
        now: Timestamp,
    ) -> Result<usize, Error>;

    /// Removes delivered events, if the lease is still held (if not, the
    /// next holder delivers them again: at least once).
    async fn delivered(&self, lease: &Lease, entries: &[String]) -> Result<bool, Error>;

    /// Counts a failed try of the queue's first event; its `max_tries`th
    /// moves it to the shard's dead letters.
    async fn failed(
        &self,
        lease: &Lease,
        entry: &str,
        max_tries: u32,
        now: Timestamp,
    ) -> Result<Tried, Error>;
}
