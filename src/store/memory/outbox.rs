//! The in-process outbox: the same semantics as the Redis streams (queued,
//! claimed by a consumer until finished, taken over after being idle), in
//! one queue (`Queue`), and `Outbox` over it. Claims wait on a `Notify`
//! rather than polling.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::MemoryStore;
use crate::domain::Timestamp;
use crate::store::{rules, Claimed, Enqueue, Error, Finish, Outbox, QueuedSend, Record};

#[derive(Default)]
pub(super) struct Queue {
    queued: VecDeque<Claimed>,
    /// By entry: since when, by whom.
    claimed: HashMap<String, Held>,
    /// Sends that exhausted their attempts, newest last.
    dead: VecDeque<QueuedSend>,
    next_entry: u64,
}

/// A claimed send: since when (its idle time), by which consumer.
struct Held {
    since: Instant,
    consumer: String,
    claimed: Claimed,
}

/// Dead letters kept, as the Redis stream's MAXLEN.
const DEAD_LETTERS: usize = 10_000;

impl Queue {
    pub fn depth(&self) -> usize {
        self.queued.len() + self.claimed.len()
    }

    /// When the oldest send still here was queued.
    pub fn oldest(&self) -> Option<Timestamp> {
        let claimed = self.claimed.values().map(|held| &held.claimed);
        self.queued
            .iter()
            .chain(claimed)
            .map(|claimed| claimed.send.queued_at)
            .min()
    }

    /// Sends of one shard, as one Redis stream would hold them.
    pub fn shard_depth(&self, shard: [u8; 2]) -> usize {
        let queued = self
            .queued
            .iter()
            .filter(|claimed| claimed.send.id.tag() == shard)
            .count();
        queued
            + self
                .claimed
                .values()
                .filter(|held| held.claimed.send.id.tag() == shard)
                .count()
    }

    pub fn push(&mut self, send: QueuedSend) {
        self.next_entry += 1;
        self.queued.push_back(Claimed {
            entry: self.next_entry.to_string(),
            send,
        });
    }

    /// Up to `max` queued sends, now claimed by `consumer`.
    pub fn take(&mut self, consumer: &str, max: usize) -> Vec<Claimed> {
        let count = max.min(self.queued.len());
        let taken: Vec<Claimed> = self.queued.drain(..count).collect();
        for claimed in &taken {
            let held = Held {
                since: Instant::now(),
                consumer: consumer.to_owned(),
                claimed: claimed.clone(),
            };
            self.claimed.insert(claimed.entry.clone(), held);
        }
        taken
    }

    /// Up to `max` sends claimed at least `idle` ago, now `consumer`'s.
    pub fn take_over(&mut self, consumer: &str, idle: Duration, max: usize) -> Vec<Claimed> {
        let now = Instant::now();
        self.claimed
            .values_mut()
            .filter(|held| now.duration_since(held.since) >= idle)
            .take(max)
            .map(|held| {
                held.since = now;
                held.consumer = consumer.to_owned();
                held.claimed.clone()
            })
            .collect()
    }

    /// Restarts the idle time of a send `consumer` holds; whether it does.
    pub fn keep(&mut self, consumer: &str, entry: &str) -> bool {
        match self.claimed.get_mut(entry) {
            Some(held) if held.consumer == consumer => {
                held.since = Instant::now();
                true
            }
            _ => false,
        }
    }

    /// Removes a finished send, keeping a dead letter if asked; whether it
    /// was still in the outbox (a finish is idempotent).
    pub fn remove(&mut self, entry: &str, finish: &Finish) -> bool {
        let Some(held) = self.claimed.remove(entry) else {
            return false;
        };
        if matches!(finish, Finish::Failed { dead: true }) {
            if self.dead.len() == DEAD_LETTERS {
                self.dead.pop_front();
            }
            self.dead.push_back(held.claimed.send);
        }
        true
    }
}

#[async_trait]
impl Outbox for MemoryStore {
    async fn claim(
        &self,
        consumer: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Claimed>, Error> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let queued = self.queued.notified();
            tokio::pin!(queued);
            queued.as_mut().enable();
            let taken = self.lock().outbox.take(consumer, max);
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
        consumer: &str,
        idle: Duration,
        max: usize,
    ) -> Result<Vec<Claimed>, Error> {
        Ok(self.lock().outbox.take_over(consumer, idle, max))
    }

    async fn keep(&self, consumer: &str, claimed: &Claimed) -> Result<bool, Error> {
        Ok(self.lock().outbox.keep(consumer, &claimed.entry))
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

    async fn oldest(&self) -> Result<Option<Timestamp>, Error> {
        Ok(self.lock().outbox.oldest())
    }

    async fn depth(&self) -> Result<u64, Error> {
        Ok(self.lock().outbox.depth() as u64)
    }
}

/// The outbox entry for the record's latest send.
pub(super) fn queued_send(record: &Record, enqueue: &Enqueue, now: Timestamp) -> QueuedSend {
    QueuedSend {
        id: record.id,
        service: record.service.clone(),
        number: record.sends,
        sealed_code: enqueue.sealed_code.clone(),
        key_id: enqueue.key_id.clone(),
        queued_at: now,
    }
}
