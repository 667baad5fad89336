//! Verifications as stored: the record, what each step on it comes to, and
//! `Verifications`, the store of records, number indexes, receipts and the
//! message-id index. Every method is one atomic step.

use std::time::Duration;

use async_trait::async_trait;

use super::{Digest, Enqueue, Error, Failures, KeyId, NumberKey, Reroute};
use crate::domain::{
    Channel, DisplayName, Locale, Receipt, ServiceName, Status, Timestamp, VerificationId,
};
use crate::ratelimit::FailurePolicy;
use crate::sms::AppHash;

/// One way to prove a code (and binding): its digests under one secret.
/// Checks pass one candidate per configured secret, so a rotation never
/// strands a pending code; the store uses the one named by the record.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub key_id: KeyId,
    pub code: Digest,
    /// Absent when the request carries no binding.
    pub binding: Option<Digest>,
}

/// A verification as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub id: VerificationId,
    pub service: ServiceName,
    pub status: Status,
    /// `+81 90-****-5678`.
    pub masked_to: String,
    /// How its codes reach the user.
    pub channel: Channel,
    /// The E.164 number, encrypted under `key_id` (for resends).
    pub sealed_to: Vec<u8>,
    pub locale: Locale,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    /// When the channel in use may send again.
    pub resend_after: Timestamp,
    /// When the other channel may send again, once this verification has
    /// switched channels (`resend_after` is per channel).
    pub other_resend_after: Option<Timestamp>,
    pub sends: u32,
    pub attempts_left: u32,
    pub key_id: KeyId,
    pub code_digest: Digest,
    pub binding_digest: Option<Digest>,
    /// The number's index key: also keys its consecutive failures.
    pub number: NumberKey,
    pub country_code: u16,
    /// Its country (ISO 3166-1 alpha-2, e.g. `JP`; empty on records from
    /// before events), for lifecycle events.
    pub country: String,
    /// The Android app hash the start asked for, for every send's body.
    pub app_hash: Option<AppHash>,
    /// The name the start gave the service, for every send's body.
    pub display_name: Option<DisplayName>,
    /// How the latest send is doing.
    pub delivery: Delivery,
    /// The service's fallback steps that have run for the current code.
    pub fallback_steps: u32,
}

impl Record {
    /// When a send on `channel` is allowed.
    pub fn resend_after_for(&self, channel: Channel) -> Timestamp {
        if channel == self.channel {
            self.resend_after
        } else {
            self.other_resend_after.unwrap_or(self.created_at)
        }
    }

    /// Whether this record answers for `service` at `now`: expired records
    /// and other services' records are indistinguishable from absent ones.
    pub fn is_visible(&self, service: &ServiceName, now: Timestamp) -> bool {
        &self.service == service && now < self.expires_at
    }
}

/// What became of a verification's latest send (what `GET` shows).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Waiting in the outbox.
    Queued,
    /// A carrier accepted it.
    Sent,
    /// The carrier's receipt says it reached the phone.
    Delivered,
    /// The carrier's receipt says it did not (expired, unreachable …).
    Undelivered,
    /// Every attempt on every route failed.
    Failed,
    /// Sent by a carrier that gives receipts, and none came within
    /// `delivery.receipt_timeout` (SMPP-7): shown, never stored.
    Unknown,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Queued => "queued",
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Undelivered => "undelivered",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Unknown => "delivery_unknown",
        }
    }
}

impl std::str::FromStr for DeliveryStatus {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "queued" => Ok(DeliveryStatus::Queued),
            "sent" => Ok(DeliveryStatus::Sent),
            "delivered" => Ok(DeliveryStatus::Delivered),
            "undelivered" => Ok(DeliveryStatus::Undelivered),
            "failed" => Ok(DeliveryStatus::Failed),
            other => Err(format!("unknown delivery status {other:?}")),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub status: DeliveryStatus,
    /// The carrier that took it, and its message id.
    pub carrier: Option<String>,
    pub message_id: Option<String>,
    /// When the carrier accepted it.
    pub sent_at: Option<Timestamp>,
    /// Set when the send went once more through another carrier (REL-4).
    pub rerouted: Option<Reroute>,
}

impl Delivery {
    pub fn queued() -> Self {
        Delivery {
            status: DeliveryStatus::Queued,
            carrier: None,
            message_id: None,
            sent_at: None,
            rerouted: None,
        }
    }
}

/// A resend's new code: on which channel, its digests under each secret,
/// and its send (none for a test number).
#[derive(Clone, Copy, Debug)]
pub struct NewCode<'a> {
    pub channel: Channel,
    pub candidates: &'a [Candidate],
    pub enqueue: Option<&'a Enqueue>,
}

/// What `start` stores for a new verification.
#[derive(Clone, Debug)]
pub struct NewVerification {
    pub record: Record,
    /// The first send; none for a test number, which is never sent.
    pub enqueue: Option<Enqueue>,
    /// How long the number index may point at this verification: the longest
    /// it can live with every resend extending it.
    pub index_ttl: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Started {
    /// Stored. `replaced` names a pending verification of the same number
    /// with another binding, now canceled.
    Created { replaced: Option<VerificationId> },
    /// The number already has a pending verification with the same binding;
    /// nothing changed. The caller resends it.
    Pending(VerificationId),
    /// The outbox shard is full: nothing stored.
    Full,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Checked {
    /// The right code (and binding): now approved.
    Approved(Record),
    /// A wrong code or binding: one attempt spent (`failed` at zero).
    Wrong(Record),
    /// Already approved, canceled or failed: nothing changed.
    Finished(Record),
    NotFound,
    /// The number has too many consecutive wrong codes: no check until
    /// `retry_after` (SEC-8, SEC-9). Nothing was spent.
    Throttled {
        retry_after: Duration,
    },
}

/// Settings a resend obeys, from the service.
#[derive(Clone, Copy, Debug)]
pub struct ResendPolicy {
    /// The wait after the first send; it doubles with each send …
    pub cooldown: Duration,
    /// … up to this.
    pub max_cooldown: Duration,
    pub max_sends: u32,
    pub ttl: Duration,
}

impl ResendPolicy {
    /// The wait after send number `sends` (1-based).
    pub fn cooldown_after(&self, sends: u32) -> Duration {
        self.cooldown
            .saturating_mul(1 << sends.saturating_sub(1).min(31))
            .min(self.max_cooldown)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resent {
    /// The new code replaced the old one; `sends` and `resend_after` moved on.
    Resent(Record),
    TooSoon(Record),
    MaxSends(Record),
    Finished(Record),
    NotFound,
    /// The outbox shard is full: nothing changed.
    Full,
}

/// Outcome of a state change with no other preconditions (cancel, send failure).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Changed {
    Changed(Record),
    Finished(Record),
    NotFound,
}

/// Where verifications live. `start` and `resend` queue their send in the
/// same step (see `Outbox`).
#[async_trait]
pub trait Verifications: Send + Sync + 'static {
    /// Stores a new verification and points the number's index at it, unless
    /// the number has a pending verification with the same binding digest.
    async fn start(&self, new: &NewVerification, now: Timestamp) -> Result<Started, Error>;

    /// The verification, if it exists, is not expired, and is `service`'s.
    async fn get(
        &self,
        service: &ServiceName,
        id: &VerificationId,
        now: Timestamp,
    ) -> Result<Option<Record>, Error>;

    /// The id the number's index points at, if any (it may be finished).
    async fn find(
        &self,
        number: &NumberKey,
        now: Timestamp,
    ) -> Result<Option<VerificationId>, Error>;

    /// The number key of the verification, if it exists (whatever its
    /// state): what `check` needs. A check reads it while its limits are
    /// taken, so that it costs no round trip of its own.
    async fn number_of(&self, id: &VerificationId) -> Result<Option<NumberKey>, Error>;

    /// Approves at most once; a wrong code or binding spends exactly one
    /// attempt and counts one failure for the number under `failures`.
    /// `number` is the verification's number key (`number_of`); another
    /// is not found.
    async fn check(
        &self,
        service: &ServiceName,
        id: &VerificationId,
        number: &NumberKey,
        candidates: &[Candidate],
        failures: &FailurePolicy,
        now: Timestamp,
    ) -> Result<Checked, Error>;

    /// Replaces the code (`candidates` holds the new code's digests), keeping
    /// `attempts_left`, if the cooldown has passed and sends remain, and
    /// queues `enqueue` (none for a test number).
    async fn resend(
        &self,
        service: &ServiceName,
        id: &VerificationId,
        code: NewCode<'_>,
        policy: ResendPolicy,
        now: Timestamp,
    ) -> Result<Resent, Error>;

    async fn cancel(
        &self,
        service: &ServiceName,
        id: &VerificationId,
        now: Timestamp,
    ) -> Result<Changed, Error>;

    /// The number's consecutive wrong codes while they count (SEC-8): its
    /// lockout, as an operator reads it.
    async fn failures(&self, number: &NumberKey, now: Timestamp)
        -> Result<Option<Failures>, Error>;

    /// Forgets the number's wrong codes, lifting its lockout and delay;
    /// whether there were any.
    async fn forget_failures(&self, number: &NumberKey) -> Result<bool, Error>;

    /// Records a carrier's receipt if the verification still holds that
    /// send as sent by `carrier` under that message id; when it changed
    /// something, the time the send was accepted (a duplicate, or a receipt
    /// for a superseded send, changes nothing). An undelivered message lifts
    /// the resend cooldown and, if the send was watched
    /// (`Finish::Sent::watch`), queues it once more for the next
    /// carrier (REL-4); a delivered one ends the watch.
    async fn receipt(
        &self,
        carrier: &str,
        receipt: &Receipt,
        now: Timestamp,
    ) -> Result<Option<Timestamp>, Error>;

    /// Remembers which send a carrier's message id belongs to, for carriers
    /// whose receipts name only their message id (SMPP), for `ttl`.
    async fn index_message(
        &self,
        carrier: &str,
        message_id: &str,
        send: (VerificationId, u32),
        ttl: Duration,
        now: Timestamp,
    ) -> Result<(), Error>;

    /// The send `index_message` remembered, if it has not expired.
    async fn find_message(
        &self,
        carrier: &str,
        message_id: &str,
        now: Timestamp,
    ) -> Result<Option<(VerificationId, u32)>, Error>;

    /// Whether otpd can write where it writes (readiness): not on a
    /// replica, a node refusing writes, or a cluster that is not whole.
    async fn ping(&self) -> Result<(), Error>;

    /// The store's own clock, if it has one (Redis `TIME`), to check
    /// otpd's against.
    async fn time(&self) -> Result<Option<Timestamp>, Error>;
}
