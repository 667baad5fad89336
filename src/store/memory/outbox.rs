//! The in-process outbox: the same semantics as the Redis streams (queued,
//! claimed by a consumer until finished, taken over after being idle), in
//! one queue. Claims wait on a `Notify` rather than polling.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::domain::Timestamp;
use crate::store::{Claimed, Finish, QueuedSend};

#[derive(Default)]
pub(super) struct Outbox {
    queued: VecDeque<Claimed>,
    claimed: HashMap<String, (Instant, Claimed)>,
    /// Sends that exhausted their attempts, newest last.
    dead: VecDeque<QueuedSend>,
    next_entry: u64,
}

/// Dead letters kept, as the Redis stream's MAXLEN.
const DEAD_LETTERS: usize = 10_000;

impl Outbox {
    pub fn depth(&self) -> usize {
        self.queued.len() + self.claimed.len()
    }

    /// When the oldest send still here was queued.
    pub fn oldest(&self) -> Option<Timestamp> {
        let claimed = self.claimed.values().map(|(_, claimed)| claimed);
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
                .filter(|(_, claimed)| claimed.send.id.tag() == shard)
                .count()
    }

    pub fn push(&mut self, send: QueuedSend) {
        self.next_entry += 1;
        self.queued.push_back(Claimed {
            entry: self.next_entry.to_string(),
            send,
        });
    }

    /// Up to `max` queued sends, now claimed.
    pub fn take(&mut self, max: usize) -> Vec<Claimed> {
        let count = max.min(self.queued.len());
        let taken: Vec<Claimed> = self.queued.drain(..count).collect();
        for claimed in &taken {
            self.claimed
                .insert(claimed.entry.clone(), (Instant::now(), claimed.clone()));
        }
        taken
    }

    /// Up to `max` sends claimed at least `idle` ago, claimed afresh.
    pub fn take_over(&mut self, idle: Duration, max: usize) -> Vec<Claimed> {
        let now = Instant::now();
        let mut stale: Vec<&mut (Instant, Claimed)> = self
            .claimed
            .values_mut()
            .filter(|(since, _)| now.duration_since(*since) >= idle)
            .take(max)
            .collect();
        stale
            .iter_mut()
            .map(|(since, claimed)| {
                *since = now;
                claimed.clone()
            })
            .collect()
    }

    /// Restarts the idle time of a claimed send.
    pub fn keep(&mut self, entry: &str) {
        if let Some((since, _)) = self.claimed.get_mut(entry) {
            *since = Instant::now();
        }
    }

    /// Removes a finished send, keeping a dead letter if asked; whether it
    /// was still in the outbox (a finish is idempotent).
    pub fn remove(&mut self, entry: &str, finish: &Finish) -> bool {
        let Some((_, claimed)) = self.claimed.remove(entry) else {
            return false;
        };
        if matches!(finish, Finish::Failed { dead: true }) {
            if self.dead.len() == DEAD_LETTERS {
                self.dead.pop_front();
            }
            self.dead.push_back(claimed.send);
        }
        true
    }
}
