//! The use cases of the outbox, for the delivery workers: what a queued send
//! becomes as an SMS (if it should still go out), and recording how it went.

use std::time::Duration;

use tracing::{info, warn};

use super::{Error, Otp, Service};
use crate::carrier::{Message, Outgoing};
use crate::domain::{CarrierReceipt, Receipt};
use crate::domain::{Channel, Phone, Status, Timestamp, VerificationId};
use crate::store::{Claimed, DeliveryStatus, Finish, Record, Watch};
use crate::voice::Speech;

/// A send ready to go.
pub struct Prepared {
    pub message: Outgoing,
    pub expires_at: Timestamp,
    /// The service's fallback step, watched once the message is out.
    pub fallback: Option<Watch>,
    /// That step's channel, which takes the code at once if every route
    /// of this one fails.
    pub fallback_channel: Option<Channel>,
}

/// What a claimed send comes to before any carrier is asked.
pub enum Preparation {
    Ready(Box<Prepared>),
    /// It must not go out: the verification expired, finished, or was
    /// resent since (a stale code is never sent).
    Skip,
    /// A fallback call its limits refuse: not placed, recorded as failed.
    Refuse,
}

/// How long a carrier's message id leads back to its send.
const MESSAGE_INDEX_TTL: Duration = Duration::from_secs(86_400);

impl Otp {
    /// Up to `max` queued sends for this replica, waiting up to `wait`.
    pub async fn claim_sends(
        &self,
        consumer: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Claimed>, Error> {
        Ok(self.stores.outbox.claim(consumer, max, wait).await?)
    }

    /// Sends a dead replica held for `idle`, now this replica's.
    pub async fn reclaim_sends(
        &self,
        consumer: &str,
        idle: Duration,
        max: usize,
    ) -> Result<Vec<Claimed>, Error> {
        Ok(self.stores.outbox.reclaim(consumer, idle, max).await?)
    }

    /// Keeps a send this replica is still working on from being taken over;
    /// false if another replica took it over meanwhile.
    pub async fn keep_claimed(&self, consumer: &str, claimed: &Claimed) -> Result<bool, Error> {
        Ok(self.stores.outbox.keep(consumer, claimed).await?)
    }

    /// The receipt use case, for every carrier and way in (HTTP callbacks
    /// already authenticated by their carrier, SMPP receipts): finds the
    /// send, records the receipt if that send is still the latest, and
    /// counts it; a duplicate, a superseded send or an unknown message id
    /// is counted `ignored` and changes nothing.
    pub async fn record_receipt(&self, from: &CarrierReceipt) -> Result<(), Error> {
        let now = self.clock.now();
        let carrier = from.carrier.as_str();
        let send = match from.send {
            Some(send) => Some(send),
            None => {
                self.stores
                    .verifications
                    .find_message(carrier, &from.message_id, now)
                    .await?
            }
        };
        let Some((verification, send)) = send else {
            self.metrics.receipt(carrier, "ignored", None);
            return Ok(());
        };
        let receipt = Receipt {
            verification,
            send,
            message_id: from.message_id.clone(),
            delivered: from.delivered,
        };
        let sent_at = self
            .stores
            .verifications
            .receipt(carrier, &receipt, now)
            .await?;
        let status = match (sent_at, receipt.delivered) {
            (None, _) => "ignored",
            (Some(_), true) => "delivered",
            (Some(_), false) => "undelivered",
        };
        let took = sent_at.map(|at| now.millis().saturating_sub(at.millis()) as f64 / 1000.0);
        self.metrics.receipt(carrier, status, took);
        info!(verification_id = %receipt.verification, send = receipt.send, carrier, status, "receipt");
        Ok(())
    }

    /// Remembers the send a carrier's message id belongs to, for receipts
    /// that name only that id (kept a day: receipts may come late).
    pub async fn index_message(
        &self,
        carrier: &str,
        message_id: &str,
        send: (VerificationId, u32),
    ) -> Result<(), Error> {
        let now = self.clock.now();
        Ok(self
            .stores
            .verifications
            .index_message(carrier, message_id, send, MESSAGE_INDEX_TTL, now)
            .await?)
    }

    /// Queues once more, for the next carrier, up to `max` watched sends
    /// whose receipt is overdue (REL-4); how many.
    pub async fn reroute_overdue(&self, max: usize) -> Result<usize, Error> {
        Ok(self
            .stores
            .outbox
            .reroute_overdue(self.clock.now(), max)
            .await?)
    }

    /// When the oldest send still in the outbox was queued.
    pub async fn outbox_oldest(&self) -> Result<Option<Timestamp>, Error> {
        Ok(self.stores.outbox.oldest().await?)
    }

    pub async fn outbox_depth(&self) -> Result<u64, Error> {
        Ok(self.stores.outbox.depth().await?)
    }

    /// The SMS or call for a queued send, when its code expires, and the
    /// service's fallback to watch for once it is out. A call otpd places
    /// by itself (a fallback, a re-route) takes the call's own limits first,
    /// as a start asking for a call would (its countries, per number, per
    /// range, its budget).
    pub async fn prepare_send(&self, claimed: &Claimed) -> Result<Preparation, Error> {
        let send = &claimed.send;
        let Ok(service) = self.service(&send.service) else {
            return Ok(Preparation::Skip);
        };
        let record = self
            .stores
            .verifications
            .get(&service.name, &send.id, self.clock.now())
            .await?;
        // A send already out (taken over after its carrier accepted it) is
        // not sent again.
        let Some(record) = record.filter(|r| {
            r.status == Status::Pending
                && r.sends == send.number
                && r.delivery.status == DeliveryStatus::Queued
        }) else {
            return Ok(Preparation::Skip);
        };
        let code = self.keyring.open_code(
            &send.key_id,
            &send.id,
            &send.sealed_code,
            service.code_length,
        );
        let e164 = self
            .keyring
            .open(&record.key_id, &send.id, &record.sealed_to);
        let reach = service.reach(record.channel);
        let phone =
            e164.and_then(|e164| Phone::parse_for(&e164, service.default_region, reach).ok());
        let (Some(code), Some(to)) = (code, phone) else {
            // The secret it was sealed with is gone: it can never be sent.
            warn!(verification_id = %send.id, "queued send cannot be opened; dropped");
            return Ok(Preparation::Skip);
        };
        if send.reroute.is_some() && !self.may_call(service, &to, &record).await? {
            warn!(verification_id = %send.id, "fallback call refused by the call limits");
            return Ok(Preparation::Refuse);
        }
        let valid_for = self.clock.now().until(record.expires_at);
        let name = service.name_for(record.display_name.as_ref());
        let message = match record.channel {
            Channel::Sms => Outgoing::Sms(Message {
                body: service.body(&record.locale, name, &code, record.app_hash.as_ref()),
                to,
                service: service.name.clone(),
                verification: send.id,
                send: send.number,
                step: record.fallback_steps,
                valid_for,
            }),
            Channel::Voice => Outgoing::Call(Message {
                body: Speech::new(&record.locale, name.as_str(), &code),
                to,
                service: service.name.clone(),
                verification: send.id,
                send: send.number,
                step: record.fallback_steps,
                valid_for,
            }),
        };
        // The service's next fallback step for this code: the first one
        // (to another channel) watches the send of the start or resend,
        // each later one the send the step before it queued; each is timed
        // from its send by the difference of their `after`s.
        let done = record.fallback_steps as usize;
        let step = service.fallback.get(done).filter(|step| {
            done > 0 || (step.channel != record.channel && record.delivery.rerouted.is_none())
        });
        let since = done
            .checked_sub(1)
            .map_or(Duration::ZERO, |before| service.fallback[before].after);
        let fallback = step
            .map(|step| Watch {
                until: send.queued_at.plus(step.after.saturating_sub(since)),
                then: Some(step.channel),
            })
            .filter(|watch| watch.until < record.expires_at);
        Ok(Preparation::Ready(Box::new(Prepared {
            message,
            expires_at: record.expires_at,
            fallback,
            fallback_channel: step.filter(|_| done == 0).map(|step| step.channel),
        })))
    }

    /// Whether a fallback to `record`'s channel may go to `to`: a call
    /// passes `limits.voice` (its countries, per number, per range).
    async fn may_call(
        &self,
        service: &Service,
        to: &Phone,
        record: &Record,
    ) -> Result<bool, Error> {
        if record.channel != Channel::Voice {
            return Ok(true);
        }
        if self.allow_country(service, to, Channel::Voice).is_err() {
            return Ok(false);
        }
        let safe = self.is_safe(service, to).await?;
        let groups = service.limits.voice_groups(
            &self.keyring,
            service.name.as_str(),
            to,
            safe,
            record.number.0,
            self.clock.now(),
        );
        match self.take_limits(service, groups).await {
            Ok(_) => Ok(true),
            Err(Error::RateLimited(_) | Error::BudgetExhausted(_)) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Removes the send from the outbox and records the outcome on its
    /// verification.
    pub async fn finish_send(&self, claimed: &Claimed, finish: &Finish) -> Result<(), Error> {
        Ok(self
            .stores
            .outbox
            .finish(claimed, finish, self.clock.now())
            .await?)
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }
}
