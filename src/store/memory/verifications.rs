//! `Verifications` in process: records, number indexes, the failure gate
//! and receipts, decided by the same `rules` as the Lua scripts.

use std::time::Duration;

use async_trait::async_trait;

use super::outbox::queued_send;
use super::{Expiring, MemoryStore, State, RETENTION};
use crate::domain::{Receipt, ServiceName, Status, Timestamp, VerificationId};
use crate::ratelimit::FailurePolicy;
use crate::store::events::EventKind;
use crate::store::{
    rules, Candidate, Changed, Checked, Error, Failures, NewCode, NewVerification, NumberKey,
    Record, ResendPolicy, Resent, Started, Verifications,
};

#[async_trait]
impl Verifications for MemoryStore {
    async fn start(&self, new: &NewVerification, now: Timestamp) -> Result<Started, Error> {
        let mut state = self.lock();
        state.sweep(now);
        let full = new
            .enqueue
            .as_ref()
            .is_some_and(|enqueue| state.outbox_full(new.record.id.tag(), enqueue));
        if full {
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
                let State {
                    verifications,
                    events,
                    ..
                } = &mut *state;
                if let Some(entry) = verifications.get_mut(&old_id) {
                    rules::cancel(&mut entry.value);
                    events.emit(&entry.value, EventKind::Canceled, Some("replaced"), now);
                }
                replaced = Some(old_id);
            }
        }
        let record = new.record.clone();
        if let Some(enqueue) = &new.enqueue {
            state.outbox.push(queued_send(&record, enqueue, now));
            self.queued.notify_waiters();
        }
        let until = record.expires_at.plus(RETENTION);
        state.events.emit(&record, EventKind::Started, None, now);
        state.events.schedule_expiry(&record);
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

    async fn number_of(&self, id: &VerificationId) -> Result<Option<NumberKey>, Error> {
        let state = self.lock();
        Ok(state.verifications.get(id).map(|entry| entry.value.number))
    }

    async fn check(
        &self,
        service: &ServiceName,
        id: &VerificationId,
        number: &NumberKey,
        candidates: &[Candidate],
        failures: &FailurePolicy,
        now: Timestamp,
    ) -> Result<Checked, Error> {
        let mut state = self.lock();
        state.sweep(now);
        let State {
            verifications,
            failures: by_number,
            events,
            ..
        } = &mut *state;
        let Some(entry) = verifications
            .get_mut(id)
            .filter(|entry| entry.value.is_visible(service, now) && entry.value.number == *number)
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
        match &checked {
            Checked::Approved(record) => events.emit(record, EventKind::Approved, None, now),
            Checked::Wrong(record) if record.status == Status::Failed => {
                events.emit(record, EventKind::Failed, None, now);
            }
            _ => {}
        }
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
        code: NewCode<'_>,
        policy: ResendPolicy,
        now: Timestamp,
    ) -> Result<Resent, Error> {
        let NewCode {
            channel,
            candidates,
            enqueue,
        } = code;
        let mut state = self.lock();
        state.sweep(now);
        let full = enqueue.is_some_and(|enqueue| state.outbox_full(id.tag(), enqueue));
        let State {
            verifications,
            outbox,
            events,
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
        let outcome = rules::resend(&mut changed, channel, candidates, policy, now);
        if !matches!(outcome, Resent::Resent(_)) {
            return Ok(outcome);
        }
        if full {
            return Ok(Resent::Full);
        }
        if let Some(enqueue) = enqueue {
            outbox.push(queued_send(&changed, enqueue, now));
        }
        entry.until = changed.expires_at.plus(RETENTION);
        events.schedule_expiry(&changed);
        entry.value = changed;
        drop(state);
        if enqueue.is_some() {
            self.queued.notify_waiters();
        }
        Ok(outcome)
    }

    async fn cancel(
        &self,
        service: &ServiceName,
        id: &VerificationId,
        now: Timestamp,
    ) -> Result<Changed, Error> {
        let mut state = self.lock();
        state.sweep(now);
        let State {
            verifications,
            events,
            ..
        } = &mut *state;
        let Some(entry) = verifications
            .get_mut(id)
            .filter(|entry| entry.value.is_visible(service, now))
        else {
            return Ok(Changed::NotFound);
        };
        let changed = rules::cancel(&mut entry.value);
        if matches!(changed, Changed::Changed(_)) {
            events.emit(&entry.value, EventKind::Canceled, Some("request"), now);
        }
        Ok(changed)
    }

    async fn failures(
        &self,
        number: &NumberKey,
        now: Timestamp,
    ) -> Result<Option<Failures>, Error> {
        let state = self.lock();
        Ok(state
            .failures
            .get(number)
            .filter(|entry| now < entry.until)
            .map(|entry| entry.value))
    }

    async fn forget_failures(&self, number: &NumberKey) -> Result<bool, Error> {
        Ok(self.lock().failures.remove(number).is_some())
    }

    async fn receipt(
        &self,
        carrier: &str,
        receipt: &Receipt,
        now: Timestamp,
    ) -> Result<Option<Timestamp>, Error> {
        let mut state = self.lock();
        let State {
            verifications,
            events,
            ..
        } = &mut *state;
        let sent_at = verifications
            .get_mut(&receipt.verification)
            .and_then(|entry| {
                let sent_at = rules::receipt(&mut entry.value, carrier, receipt, now)?;
                let (kind, reason) = if receipt.delivered {
                    (EventKind::Delivered, None)
                } else {
                    (EventKind::Undelivered, Some("receipt"))
                };
                events.emit(&entry.value, kind, reason, now);
                Some(sent_at)
            });
        if sent_at.is_some() {
            state.receipt_watched(receipt.verification, receipt.send, receipt.delivered, now);
        }
        Ok(sent_at)
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

    async fn time(&self) -> Result<Option<Timestamp>, Error> {
        Ok(None)
    }

    async fn ping(&self) -> Result<(), Error> {
        Ok(())
    }
}
