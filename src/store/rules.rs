//! The state changes of a verification as plain functions on a `Record`.
//! `MemoryStore` runs them under its lock; `lua/*.lua` are their Redis twins,
//! and the conformance suite holds the two to the same behaviour.

use subtle::ConstantTimeEq;

use super::{
    Candidate, Changed, Checked, Delivery, DeliveryStatus, Digest, Finish, Record, Reroute,
    RerouteReason, ResendPolicy, Resent, Switch,
};
use crate::domain::Receipt;
use crate::domain::{Channel, Status, Timestamp};
use crate::ratelimit::FailurePolicy;

/// Constant-time equality of optional digests (SEC-12): absent equals absent only.
fn same(stored: Option<&Digest>, given: Option<&Digest>) -> bool {
    match (stored, given) {
        (Some(stored), Some(given)) => stored.ct_eq(given).into(),
        (None, None) => true,
        (Some(_), None) | (None, Some(_)) => false,
    }
}

/// The candidate made with the record's secret, if that secret is still configured.
fn candidate_for<'a>(record: &Record, candidates: &'a [Candidate]) -> Option<&'a Candidate> {
    candidates
        .iter()
        .find(|candidate| candidate.key_id == record.key_id)
}

pub(super) fn bindings_match(record: &Record, binding: Option<&Digest>) -> bool {
    same(record.binding_digest.as_ref(), binding)
}

/// A number's consecutive wrong codes, across its verifications.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failures {
    pub count: u32,
    pub last: Timestamp,
    pub wait_until: Timestamp,
}

/// The check, behind the number's failure gate (SEC-8, SEC-9); `failures`
/// is the number's state, updated in place.
pub(super) fn check(
    record: &mut Record,
    candidates: &[Candidate],
    failures: &mut Option<Failures>,
    policy: &FailurePolicy,
    now: Timestamp,
) -> Checked {
    if record.status != Status::Pending {
        return Checked::Finished(record.clone());
    }
    let current = failures.filter(|f| now < f.last.plus(policy.decay));
    if let Some(f) = current {
        if f.count >= policy.max {
            return Checked::Throttled {
                retry_after: now.until(f.last.plus(policy.decay)),
            };
        }
        if now < f.wait_until {
            return Checked::Throttled {
                retry_after: now.until(f.wait_until),
            };
        }
    }
    let right = candidate_for(record, candidates).is_some_and(|candidate| {
        // Both comparisons always run, so a wrong binding costs the same time.
        let code = same(Some(&record.code_digest), Some(&candidate.code));
        let binding = bindings_match(record, candidate.binding.as_ref());
        code & binding
    });
    if right {
        record.status = Status::Approved;
        *failures = None;
        return Checked::Approved(record.clone());
    }
    let count = current.map_or(0, |f| f.count) + 1;
    *failures = Some(Failures {
        count,
        last: now,
        wait_until: now.plus(policy.delay_after(count)),
    });
    record.attempts_left = record.attempts_left.saturating_sub(1);
    if record.attempts_left == 0 {
        record.status = Status::Failed;
    }
    Checked::Wrong(record.clone())
}

pub(super) fn resend(
    record: &mut Record,
    channel: Channel,
    candidates: &[Candidate],
    policy: ResendPolicy,
    now: Timestamp,
) -> Resent {
    if record.status != Status::Pending {
        return Resent::Finished(record.clone());
    }
    if record.sends >= policy.max_sends {
        return Resent::MaxSends(record.clone());
    }
    if now < record.resend_after_for(channel) {
        return Resent::TooSoon(record.clone());
    }
    let Some(candidate) = candidate_for(record, candidates) else {
        // The secret this verification was made with is gone: it cannot be
        // checked any more, so it is as good as expired.
        return Resent::NotFound;
    };
    record.code_digest = candidate.code;
    record.sends += 1;
    if channel != record.channel {
        record.other_resend_after = Some(record.resend_after);
        record.channel = channel;
    }
    record.resend_after = now.plus(policy.cooldown_after(record.sends));
    record.delivery = Delivery::queued();
    record.fallback_steps = 0;
    record.expires_at = now.plus(policy.ttl);
    Resent::Resent(record.clone())
}

pub(super) fn cancel(record: &mut Record) -> Changed {
    if record.status != Status::Pending {
        return Changed::Finished(record.clone());
    }
    record.status = Status::Canceled;
    Changed::Changed(record.clone())
}

/// Records how send number `number` went, if it is still the latest send
/// of a pending verification (the twin of `lua/finish.lua`); whether it was.
pub(super) fn finish(record: &mut Record, number: u32, finish: &Finish, now: Timestamp) -> bool {
    if record.sends != number || record.status != Status::Pending {
        return false;
    }
    match finish {
        Finish::Sent {
            carrier,
            message_id,
            ..
        } => {
            record.delivery = Delivery {
                status: DeliveryStatus::Sent,
                carrier: Some(carrier.clone()),
                message_id: Some(message_id.clone()),
                sent_at: Some(now),
                rerouted: record.delivery.rerouted.take(),
            };
        }
        Finish::Failed { .. } => {
            // Taken back: the user may ask again at once.
            record.delivery.status = DeliveryStatus::Failed;
            record.sends = record.sends.saturating_sub(1);
            record.resend_after = now;
        }
        Finish::Skipped => {}
    }
    true
}

/// Marks send `number` as queued once more, for the carrier after the one
/// that accepted it or on the fallback channel `then`, if it is still the latest send of a pending, living
/// verification and was not re-routed before (the twin of `reroute` in
/// `lua/common.lua`); the carrier that accepted it.
pub(super) fn reroute(
    record: &mut Record,
    number: u32,
    reason: RerouteReason,
    then: Option<Channel>,
    now: Timestamp,
) -> Option<String> {
    let delivery = &record.delivery;
    // A fallback step runs once per watch; a carrier re-route once per code.
    let eligible = record.status == Status::Pending
        && record.sends == number
        && now < record.expires_at
        && matches!(
            delivery.status,
            DeliveryStatus::Sent | DeliveryStatus::Undelivered | DeliveryStatus::Delivered
        )
        && (then.is_some() || delivery.rerouted.is_none());
    let from = delivery.carrier.clone().filter(|_| eligible)?;
    if then.is_some() {
        record.fallback_steps += 1;
    }
    if let Some(channel) = then.filter(|channel| *channel != record.channel) {
        record.other_resend_after = Some(record.resend_after);
        record.channel = channel;
    }
    record.delivery = Delivery {
        rerouted: Some(Reroute {
            from: from.clone(),
            reason,
        }),
        ..Delivery::queued()
    };
    Some(from)
}

/// Moves failed send `number` to `switch`'s channel, if it is still the
/// latest send of a pending, living verification on another channel that
/// was not re-routed before (the twin of the switch in `lua/finish.lua`);
/// whether it did.
pub(super) fn switch(record: &mut Record, number: u32, switch: &Switch, now: Timestamp) -> bool {
    let eligible = record.status == Status::Pending
        && record.sends == number
        && now < record.expires_at
        && record.channel != switch.channel
        && record.delivery.rerouted.is_none();
    if eligible {
        record.fallback_steps += 1;
        record.other_resend_after = Some(record.resend_after);
        record.channel = switch.channel;
        record.delivery = Delivery {
            rerouted: Some(Reroute {
                from: switch.from.clone(),
                reason: RerouteReason::SendFailed,
            }),
            ..Delivery::queued()
        };
    }
    eligible
}

/// Records a receipt on the send it names (the twin of `lua/receipt.lua`);
/// when it changed something, the time the send was accepted.
pub(super) fn receipt(
    record: &mut Record,
    carrier: &str,
    receipt: &Receipt,
    now: Timestamp,
) -> Option<Timestamp> {
    let delivery = &mut record.delivery;
    let names_this_send = record.sends == receipt.send
        && delivery.status == DeliveryStatus::Sent
        && delivery.carrier.as_deref() == Some(carrier)
        && delivery.message_id.as_deref() == Some(receipt.message_id.as_str());
    if !names_this_send {
        return None;
    }
    if receipt.delivered {
        delivery.status = DeliveryStatus::Delivered;
    } else {
        delivery.status = DeliveryStatus::Undelivered;
        if record.status == Status::Pending {
            record.resend_after = record.resend_after.min(now);
        }
    }
    Some(delivery.sent_at.unwrap_or(now))
}
