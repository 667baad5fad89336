//! The outbox: sends queued with their verification, claimed by one
//! replica's workers until finished, taken over when a replica dies.

use std::time::Duration;

use async_trait::async_trait;

use super::{Error, KeyId};
use crate::domain::{Channel, ServiceName, Timestamp, VerificationId};

/// What a start or resend puts in the outbox with the verification.
#[derive(Clone, Debug)]
pub struct Enqueue {
    /// The code, encrypted under `key_id` (never in clear at rest, SEC-11).
    pub sealed_code: Vec<u8>,
    pub key_id: KeyId,
    /// The most sends a shard may hold; past it the start is refused.
    pub shard_cap: u64,
}

/// One SMS waiting in the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedSend {
    pub id: VerificationId,
    pub service: ServiceName,
    /// Which send of the verification (1 for the first).
    pub number: u32,
    pub sealed_code: Vec<u8>,
    pub key_id: KeyId,
    pub queued_at: Timestamp,
    /// Set when this is the send once more after a carrier accepted it
    /// (REL-4, or a fallback).
    pub reroute: Option<Reroute>,
    /// Whether that send moved to another channel (a fallback step).
    pub switched: bool,
}

/// Why an accepted send goes once more through the next carrier (REL-4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RerouteReason {
    /// Its receipt said it did not reach the phone.
    Undelivered,
    /// No receipt came within `delivery.receipt_timeout`.
    NoReceipt,
    /// The service's fallback step came due with the verification still
    /// pending: the code goes once more on the step's channel.
    Fallback,
    /// Every route of the channel failed and the service has a fallback
    /// step: the code goes on the step's channel at once.
    SendFailed,
}

impl RerouteReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RerouteReason::Undelivered => "undelivered",
            RerouteReason::NoReceipt => "no_receipt",
            RerouteReason::Fallback => "fallback",
            RerouteReason::SendFailed => "send_failed",
        }
    }
}

impl std::str::FromStr for RerouteReason {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "undelivered" => Ok(RerouteReason::Undelivered),
            "no_receipt" => Ok(RerouteReason::NoReceipt),
            "fallback" => Ok(RerouteReason::Fallback),
            "send_failed" => Ok(RerouteReason::SendFailed),
            other => Err(format!("unknown reroute reason {other:?}")),
        }
    }
}

/// A send going once more: which carrier accepted it first (or, for
/// `SendFailed`, was tried last), and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reroute {
    pub from: String,
    pub reason: RerouteReason,
}

impl Reroute {
    /// The route of a send that stays on its channel starts after `from`
    /// (it did not deliver); a fallback step's send (to another channel, or
    /// the same channel again when its time came) starts from the route's
    /// first carrier.
    pub fn skips(&self, switched: bool) -> Option<&str> {
        (!switched && self.reason != RerouteReason::Fallback).then_some(self.from.as_str())
    }
}

/// A send handed to one worker, until it finishes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claimed {
    /// The outbox entry (a stream id in Redis).
    pub entry: String,
    pub send: QueuedSend,
}

/// How a worker finished a send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finish {
    Sent {
        carrier: String,
        message_id: String,
        /// Watch it (`Watch`): an `undelivered` receipt, or the watch's
        /// end, queues the send once more (`Outbox::reroute_overdue`,
        /// `Verifications::receipt`).
        watch: Option<Watch>,
    },
    /// Gave up: recorded as failed, and the send is taken back (the user
    /// may resend at once). `dead` keeps a copy in the dead-letter stream.
    /// With `switch`, a fallback step's channel takes the same code at
    /// once instead (while the verification is pending and lives).
    Failed { dead: bool, switch: Option<Switch> },
    /// Not sent and nothing to record: the verification expired, finished
    /// or was resent since (a newer send supersedes it).
    Skipped,
}

/// Where a failed send's code goes at once: the service's fallback
/// channel, after the carrier tried last.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Switch {
    pub from: String,
    pub channel: Channel,
}

/// How long an accepted send is watched, and where it goes next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Watch {
    pub until: Timestamp,
    /// The channel a fallback step switches to; none: the same channel's
    /// next carrier (REL-4).
    pub then: Option<Channel>,
}

/// Where queued sends wait for a worker.
#[async_trait]
pub trait Outbox: Send + Sync + 'static {
    /// Up to `max` queued sends for `consumer`, waiting up to `wait` for the
    /// first. Each stays claimed until `finish`ed or reclaimed.
    async fn claim(
        &self,
        consumer: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Claimed>, Error>;

    /// Up to `max` sends in all claimed by any consumer but not finished
    /// for `idle` (a replica died holding them), now claimed by `consumer`.
    async fn reclaim(
        &self,
        consumer: &str,
        idle: Duration,
        max: usize,
    ) -> Result<Vec<Claimed>, Error>;

    /// Marks a send `consumer` is still working on (retries, slow carriers)
    /// as fresh, so that no replica takes it over while it lives; false if
    /// `consumer` no longer holds it (taken over, or finished), which never
    /// takes it back.
    async fn keep(&self, consumer: &str, claimed: &Claimed) -> Result<bool, Error>;

    /// Removes the send from the outbox and records how it went on its
    /// verification, if that send is still the latest, in one step.
    async fn finish(&self, claimed: &Claimed, finish: &Finish, now: Timestamp)
        -> Result<(), Error>;

    /// Queues once more, for the next carrier, up to `max` watched sends
    /// whose watch ended by `now` without a receipt (REL-4); how many. A
    /// send is queued again at most once, and only while its verification
    /// is pending and its code lives.
    async fn reroute_overdue(&self, now: Timestamp, max: usize) -> Result<usize, Error>;

    /// When the oldest send queued or claimed, not finished, was queued.
    async fn oldest(&self) -> Result<Option<Timestamp>, Error>;

    /// Sends queued or claimed, not finished.
    async fn depth(&self) -> Result<u64, Error>;
}
