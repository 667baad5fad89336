//! The in-process store: dev mode's default and a real implementation of
//! `Store` (not a mock). State lives in one mutex-guarded map; entries expire
//! by the injected clock and are swept as time passes.

mod events;
mod idempotency;
mod limits;
mod outbox;
mod verifications;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use super::{rules, Digest, Enqueue, IdempotencyKey, NumberKey, Record};
use crate::domain::{ServiceName, Timestamp, VerificationId};
use crate::ratelimit::{Check, ConversionCounts, Group, Outcome, Verdict};

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
    /// Conversion counts, by (tag, key).
    conversions: HashMap<([u8; 2], [u8; 16]), ConversionCounts>,
    /// The safe list: entries and when they expire.
    safe: HashMap<[u8; 16], Timestamp>,
    /// Blocked-until instants, by (tag, key).
    blocks: HashMap<([u8; 2], [u8; 16]), Timestamp>,
    /// Carrier message ids → (verification, send), by (carrier, id).
    messages: HashMap<(String, String), Expiring<(VerificationId, u32)>>,
    outbox: outbox::Queue,
    events: events::Log,
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

    /// The same store, queueing lifecycle events for `services`.
    pub fn with_events(self, services: impl IntoIterator<Item = ServiceName>) -> Self {
        self.lock().events.services = services.into_iter().collect();
        self
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
        let verifications = &self.verifications;
        self.events.retain(|id| verifications.contains_key(id));
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
        let mut conversions = Vec::new();
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
                (None, Check::Conversion(conversion)) => {
                    let counts = self.conversions.entry(slot).or_default();
                    let (sends, approvals) = counts.live(conversion, now.millis());
                    outcome.used_before = sends;
                    if conversion.refuses(sends, approvals) {
                        outcome.denied = Some(Duration::from_millis(conversion.window_ms));
                    } else {
                        conversions.push((slot, conversion));
                    }
                }
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
            if let (Some(_), Check::Conversion(conversion), false) =
                (outcome.denied, item.check, item.monitor)
            {
                // As in Lua: a refused send still counts towards conversion.
                let counts = self.conversions.entry(slot).or_default();
                counts.send(conversion, now.millis(), item.cost as i64);
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
            for (slot, conversion) in conversions {
                let counts = self.conversions.entry(slot).or_default();
                counts.send(conversion, now.millis(), 1);
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::domain::{Clock, ManualClock};
    use crate::store::conformance::{self, Fixture};
    use crate::store::{Idempotency, Stores, Verifications};

    async fn memory_fixture() -> Fixture {
        Fixture::new(
            Stores::of(Arc::new(
                MemoryStore::new().with_events(conformance::with_events()),
            )),
            ManualClock::new(),
            (),
        )
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
