//! `Idempotency` in process.

use std::time::Duration;

use async_trait::async_trait;

use super::{Expiring, Idempotent, MemoryStore};
use crate::domain::Timestamp;
use crate::store::{Digest, Error, Idempotency, IdempotencyKey, Reservation};

#[async_trait]
impl Idempotency for MemoryStore {
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
}
