//! The in-process store: dev mode's default and a real implementation of
//! `Store` (not a mock). State lives in one mutex-guarded map; entries expire
//! by the injected clock and are swept as time passes.

mod outbox;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use super::{
    rules, Candidate, Changed, Checked, Claimed, Digest, Enqueue, Error, Finish, IdempotencyKey,
    NewVerification, NumberKey, QueuedSend, Record, ResendPolicy, Resent, Reservation, Started,
    Store,
};
use crate::carrier::Receipt;
use crate::domain::{ServiceName, Timestamp, VerificationId};
use crate::ratelimit::{Check, FailurePolicy, Group, Outcome, Verdict};

/// How long a verification's record outlives its expiry, as in Redis.
pub(super) const RETENTION: Duration = Duration::from_secs(60);
const SWEEP_EVERY: Duration = Duration::from_secs(30);

#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
    /// Wakes workers waiting for a send.
    queued: tokio::sync::Notify,
}

#[derive(Default)]
struct State {
    verifications: HashMap<VerificationId, Expiring<Record>>,
    numbers: HashMap<NumberKey, Expiring<VerificationId>>,
    idempotency: HashMap<IdempotencyKey, Expiring<Idempotent>>,
    /// GCRA arrival times and quota counts, by (tag, key).
    limits: HashMap<([u8; 2], [u8; 16]), Expiring<i64>>,
    /// Consecutive wrong codes, by number.
    failures: HashMap<NumberKey, Expiring<rules::Failures>>,
    /// Blocked-until instants, by (tag, key).
    blocks: HashMap<([u8; 2], [u8; 16]), Timestamp>,
    /// Carrier message ids → (verification, send), by (carrier, id).
    messages: HashMap<(String, String), Expiring<(VerificationId, u32)>>,
    outbox: outbox::Outbox,
    next_sweep: Option<Timestamp>,
}

struct Expiring<T> {
    value: T,
    until: Timestamp,
}

struct Idempotent {
    fingerprint: Digest,
    answer: Option<Vec<u8>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Entries held, expired or not (tests watch the sweep with it).
    pub fn len(&self) -> usize {
        let state = self.lock();
        state.verifications.len() + state.numbers.len() + state.idempotency.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves no half-written entry (every
        // change is a single assignment), so the state stays usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `change` on a visible record and keeps its expiry in step.
    fn update<T>(
        &self,
        service: &ServiceName,
        id: &VerificationId,
        now: Timestamp,
        change: impl FnOnce(&mut Record) -> T,
    ) -> Option<T> {
        let mut state = self.lock();
        state.sweep(now);
        let entry = state
            .verifications
            .get_mut(id)
            .filter(|entry| entry.value.is_visible(service, now))?;
        let outcome = change(&mut entry.value);
        entry.until = entry.value.expires_at.plus(RETENTION);
        Some(outcome)
    }
}

impl State {
    /// Drops what has expired, at most every `SWEEP_EVERY`.
    fn sweep(&mut self, now: Timestamp) {
        if self.next_sweep.is_some_and(|next| now < next) {
            return;
        }
        self.verifications.retain(|_, entry| now < entry.until);
        self.numbers.retain(|_, entry| now < entry.until);
        self.idempotency.retain(|_, entry| now < entry.until);
        self.limits.retain(|_, entry| now < entry.until);
        self.blocks.retain(|_, until| now < *until);
        self.failures.retain(|_, entry| now < entry.until);
        self.messages.retain(|_, entry| now < entry.until);
        self.next_sweep = Some(now.plus(SWEEP_EVERY));
    }

    /// Whether the shard's part of the outbox is at its cap.
    fn outbox_full(&self, shard: [u8; 2], enqueue: &Enqueue) -> bool {
        self.outbox.shard_depth(shard) as u64 >= enqueue.shard_cap
    }

    /// The twin of `limits` in `lua/common.lua`.
    fn take(&mut self, group: &Group, now: Timestamp) -> Verdict {
        let mut writes = Vec::new();
        let mut allowed = true;
        let mut outcomes = Vec::new();
        for item in &group.items {
            let slot = (group.tag, item.key);
            let current = self
                .limits
                .get(&slot)
                .filter(|entry| now < entry.until)
                .map(|entry| entry.value);
            let mut outcome = Outcome {
                denied: None,
                remaining: 0,
                used_before: 0,
            };
            let blocked = self
                .blocks
                .get(&slot)
                .filter(|until| now < **until)
                .copied();
            match (blocked, item.check) {
                (Some(until), _) => outcome.denied = Some(now.until(until)),
                (None, Check::Rate(gcra)) => match gcra.take(current, now.millis(), item.cost) {
                    (_, Some(wait)) => outcome.denied = Some(wait),
                    (tat, None) => {
                        outcome.remaining = gcra.remaining(tat, now.millis());
                        writes.push((slot, tat, Timestamp::from_millis(tat)));
                    }
                },
                (None, Check::Quota { cap, until }) => {
                    let used = current.unwrap_or(0) as u64;
                    outcome.used_before = used;
                    if used + item.cost > cap {
                        outcome.denied = Some(now.until(until));
                    } else {
                        outcome.remaining = cap - used - item.cost;
                        writes.push((slot, (used + item.cost) as i64, until));
                    }
                }
            }
            if outcome.denied.is_some() && !item.monitor {
                allowed = false;
                if let Some(block) = item.block.filter(|_| blocked.is_none()) {
                    self.blocks.insert(slot, now.plus(block));
                    outcome.denied = Some(block);
                }
            }
            outcomes.push(outcome);
        }
        if allowed {
            for (slot, value, until) in writes {
                self.limits.insert(slot, Expiring { value, until });
            }
        }
        Verdict { outcomes }
    }

    fn live_record(&self, id: &VerificationId, now: Timestamp) -> Option<&Record> {
        self.verifications
            .get(id)
            .map(|entry| &entry.value)
            .filter(|record| now < record.expires_at)
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn start(&self, new: &NewVerification, now: Timestamp) -> Result<Started, Error> {
        let mut state = self.lock();
        state.sweep(now);
        if state.outbox_full(new.record.id.tag(), &new.enqueue) {
            return Ok(Started::Full);
        }
        let existing = state
            .numbers
            .get(&new.record.number)
            .filter(|entry| now < entry.until)
            .map(|entry| entry.value);
        let mut replaced = None;
        if let Some(old_id) = existing {
            let pending = state
                .live_record(&old_id, now)
                .filter(|old| old.status == crate::domain::Status::Pending);
            if let Some(old) = pending {
                if rules::bindings_match(old, new.record.binding_digest.as_ref()) {
                    return Ok(Started::Pending(old_id));
                }
                if let Some(entry) = state.verifications.get_mut(&old_id) {
                    rules::cancel(&mut entry.value);
                }
                replaced = Some(old_id);
            }
        }
        let record = new.record.clone();
        state.outbox.push(queued_send(&record, &new.enqueue, now));
        self.queued.notify_waiters();
        let until = record.expires_at.plus(RETENTION);
        state.numbers.insert(
            record.number,
            Expiring {
                value: record.id,
                until: now.plus(new.index_ttl),
            },
        );
        state.verifications.insert(
            record.id,
            Expiring {
                value: record,
                until,
            },
        );
        Ok(Started::Created { replaced })
    }

    async fn get(
        &self,
        service: &ServiceName,
        id: &VerificationId,
        now: Timestamp,
    ) -> Result<Option<Record>, Error> {
        Ok(self.update(service, id, now, |record| record.clone()))
    }

    async fn find(
        &self,
        number: &NumberKey,
        now: Timestamp,
    ) -> Result<Option<VerificationId>, Error> {
        let state = self.lock();
        Ok(state
            .numbers
            .get(number)
            .filter(|entry| now < entry.until)
            .map(|entry| entry.value))
    }

    async fn check(
        &self,
        service: &ServiceName,
        id: &VerificationId,
        candidates: &[Candidate],
        failures: &FailurePolicy,
        now: Timestamp,
    ) -> Result<Checked, Error> {
        let mut state = self.lock();
        state.sweep(now);
        let State {
            verifications,
            failures: by_number,
            ..
        } = &mut *state;
        let Some(entry) = verifications
            .get_mut(id)
            .filter(|entry| entry.value.is_visible(service, now))
        else {
            return Ok(Checked::NotFound);
        };
        let number = entry.value.number;
        let mut number_failures = by_number
            .get(&number)
            .filter(|e| now < e.until)
            .map(|e| e.value);
        let checked = rules::check(
            &mut entry.value,
            candidates,
            &mut number_failures,
            failures,
            now,
        );
        match number_failures {
            Some(kept) => by_number.insert(
                number,
                Expiring {
                    value: kept,
                    until: kept.last.plus(failures.decay),
                },
            ),
            None => by_number.remove(&number),
        };
        Ok(checked)
    }

    async fn resend(
        &self,
        service: &ServiceName,
        id: &VerificationId,
        candidates: &[Candidate],
        policy: ResendPolicy,
        enqueue: &Enqueue,
        now: Timestamp,
    ) -> Result<Resent, Error> {
        let mut state = self.lock();
        state.sweep(now);
        let full = state.outbox_full(id.tag(), enqueue);
        let State {
            verifications,
            outbox,
            ..
        } = &mut *state;
        let Some(entry) = verifications
            .get_mut(id)
            .filter(|entry| entry.value.is_visible(service, now))
        else {
            return Ok(Resent::NotFound);
        };
        // Decided on a copy: a full outbox changes nothing.
        let mut changed = entry.value.clone();
        let outcome = rules::resend(&mut changed, candidates, policy, now);
        if !matches!(outcome, Resent::Resent(_)) {
            return Ok(outcome);
        }
        if full {
            return Ok(Resent::Full);
        }
        outbox.push(queued_send(&changed, enqueue, now));
        entry.until = changed.expires_at.plus(RETENTION);
        entry.value = changed;
        drop(state);
        self.queued.notify_waiters();
        Ok(outcome)
    }

    async fn cancel(
        &self,
        service: &ServiceName,
        id: &VerificationId,
        now: Timestamp,
    ) -> Result<Changed, Error> {
        Ok(self
            .update(service, id, now, rules::cancel)
            .unwrap_or(Changed::NotFound))
    }

    async fn reserve(
        &self,
        key: &IdempotencyKey,
        fingerprint: &Digest,
        lock: Duration,
        now: Timestamp,
    ) -> Result<Reservation, Error> {
        let mut state = self.lock();
        state.sweep(now);
        if let Some(entry) = state.idempotency.get(key).filter(|entry| now < entry.until) {
            let taken = &entry.value;
            return Ok(Reservation::Taken {
                fingerprint: taken.fingerprint,
                answer: taken.answer.clone(),
            });
        }
        let value = Idempotent {
            fingerprint: *fingerprint,
            answer: None,
        };
        state.idempotency.insert(
            *key,
            Expiring {
                value,
                until: now.plus(lock),
            },
        );
        Ok(Reservation::Reserved)
    }

    async fn complete(
        &self,
        key: &IdempotencyKey,
        answer: &[u8],
        keep: Duration,
        now: Timestamp,
    ) -> Result<(), Error> {
        let mut state = self.lock();
        if let Some(entry) = state.idempotency.get_mut(key) {
            entry.value.answer = Some(answer.to_vec());
            entry.until = now.plus(keep);
        }
        Ok(())
    }

    async fn release(&self, key: &IdempotencyKey) -> Result<(), Error> {
        self.lock().idempotency.remove(key);
        Ok(())
    }

    async fn limit(&self, groups: &[Group], now: Timestamp) -> Result<Vec<Verdict>, Error> {
        let mut state = self.lock();
        state.sweep(now);
        Ok(groups.iter().map(|group| state.take(group, now)).collect())
    }

    async fn refund(&self, groups: &[Group], _now: Timestamp) -> Result<(), Error> {
        let mut state = self.lock();
        for group in groups {
            for item in &group.items {
                if let Some(entry) = state.limits.get_mut(&(group.tag, item.key)) {
                    entry.value -= match item.check {
                        Check::Rate(gcra) => (gcra.interval_ms * item.cost) as i64,
                        Check::Quota { .. } => item.cost as i64,
                    };
                }
            }
        }
        Ok(())
    }

    async fn claim(
        &self,
        _consumer: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Claimed>, Error> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let queued = self.queued.notified();
            tokio::pin!(queued);
            queued.as_mut().enable();
            let taken = self.lock().outbox.take(max);
            if !taken.is_empty() {
                return Ok(taken);
            }
            if tokio::time::timeout_at(deadline, queued).await.is_err() {
                return Ok(Vec::new());
            }
        }
    }

    async fn reclaim(
        &self,
        _consumer: &str,
        idle: Duration,
        max: usize,
    ) -> Result<Vec<Claimed>, Error> {
        Ok(self.lock().outbox.take_over(idle, max))
    }

    async fn keep(&self, _consumer: &str, claimed: &Claimed) -> Result<(), Error> {
        self.lock().outbox.keep(&claimed.entry);
        Ok(())
    }

    async fn finish(
        &self,
        claimed: &Claimed,
        finish: &Finish,
        now: Timestamp,
    ) -> Result<(), Error> {
        let mut state = self.lock();
        if !state.outbox.remove(&claimed.entry, finish) {
            return Ok(());
        }
        if let Some(entry) = state.verifications.get_mut(&claimed.send.id) {
            rules::finish(&mut entry.value, claimed.send.number, finish, now);
        }
        Ok(())
    }

    async fn receipt(
        &self,
        carrier: &str,
        receipt: &Receipt,
        now: Timestamp,
    ) -> Result<Option<Timestamp>, Error> {
        let mut state = self.lock();
        Ok(state
            .verifications
            .get_mut(&receipt.verification)
            .and_then(|entry| rules::receipt(&mut entry.value, carrier, receipt, now)))
    }

    async fn index_message(
        &self,
        carrier: &str,
        message_id: &str,
        send: (VerificationId, u32),
        ttl: Duration,
        now: Timestamp,
    ) -> Result<(), Error> {
        let entry = Expiring {
            value: send,
            until: now.plus(ttl),
        };
        let key = (carrier.to_owned(), message_id.to_owned());
        self.lock().messages.insert(key, entry);
        Ok(())
    }

    async fn find_message(
        &self,
        carrier: &str,
        message_id: &str,
        now: Timestamp,
    ) -> Result<Option<(VerificationId, u32)>, Error> {
        let key = (carrier.to_owned(), message_id.to_owned());
        let state = self.lock();
        Ok(state
            .messages
            .get(&key)
            .filter(|entry| now < entry.until)
            .map(|entry| entry.value))
    }

    async fn outbox_oldest(&self) -> Result<Option<Timestamp>, Error> {
        Ok(self.lock().outbox.oldest())
    }

    async fn outbox_depth(&self) -> Result<u64, Error> {
        Ok(self.lock().outbox.depth() as u64)
    }

    async fn ping(&self) -> Result<(), Error> {
        Ok(())
    }
}

/// The outbox entry for the record's latest send.
fn queued_send(record: &Record, enqueue: &Enqueue, now: Timestamp) -> QueuedSend {
    QueuedSend {
        id: record.id,
        service: record.service.clone(),
        number: record.sends,
        sealed_code: enqueue.sealed_code.clone(),
        key_id: enqueue.key_id.clone(),
        queued_at: now,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::otp::{Clock, ManualClock};
    use crate::store::conformance::{self, Fixture};

    async fn memory_fixture() -> Fixture {
        Fixture::new(Arc::new(MemoryStore::new()), ManualClock::new(), ())
    }

    crate::store_conformance!(memory_fixture);

    #[tokio::test]
    async fn expired_entries_are_swept() {
        let store = MemoryStore::new();
        let clock = ManualClock::new();
        let new = conformance::new_verification(&clock, "demo", None);
        store.start(&new, clock.now()).await.expect("start");
        assert_eq!(store.len(), 2);
        clock.advance(new.index_ttl + RETENTION + SWEEP_EVERY);
        store
            .reserve(
                &IdempotencyKey([7; 16]),
                &[0; 32],
                Duration::from_secs(1),
                clock.now(),
            )
            .await
            .expect("reserve");
        assert_eq!(store.len(), 1, "only the new idempotency entry is left");
    }
}
