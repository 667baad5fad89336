//! The in-process outbox: the same semantics as the Redis streams (queued,
//! claimed by a consumer until finished, taken over after being idle), in
//! one queue (`Queue`), and `Outbox` over it. Claims wait on a `Notify`
//! rather than polling.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::MemoryStore;
use super::State;
use crate::domain::{Channel, Timestamp, VerificationId};
use crate::store::events::EventKind;
use crate::store::{
    rules, Claimed, Enqueue, Error, Finish, KeyId, Outbox, QueuedSend, Record, Reroute,
    RerouteReason, Watch,
};

#[derive(Default)]
pub(super) struct Queue {
    queued: VecDeque<Claimed>,
    /// By entry: since when, by whom.
    claimed: HashMap<String, Held>,
    /// Sends that exhausted their attempts, newest last.
    dead: VecDeque<QueuedSend>,
    /// Accepted sends watched for their receipt, by (verification, send).
    watched: HashMap<(VerificationId, u32), Watched>,
    next_entry: u64,
}

/// A send watched for its receipt until `until`, with its code sealed as
/// it was queued, to queue it once more (REL-4).
struct Watched {
    until: Timestamp,
    /// The fallback channel; none: the same channel's next carrier.
    then: Option<Channel>,
    sealed_code: Vec<u8>,
    key_id: KeyId,
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

    /// Removes a finished send, keeping a dead letter if asked; the send if
    /// it was still in the outbox (a finish is idempotent).
    pub fn remove(&mut self, entry: &str, finish: &Finish) -> Option<QueuedSend> {
        let held = self.claimed.remove(entry)?;
        if matches!(finish, Finish::Failed { dead: true, .. }) {
            if self.dead.len() == DEAD_LETTERS {
                self.dead.pop_front();
            }
            self.dead.push_back(held.claimed.send.clone());
        }
        Some(held.claimed.send)
    }

    /// Watches an accepted send until `watch.until`.
    fn watch(&mut self, send: QueuedSend, watch: Watch) {
        let watched = Watched {
            until: watch.until,
            then: watch.then,
            sealed_code: send.sealed_code,
            key_id: send.key_id,
        };
        self.watched.insert((send.id, send.number), watched);
    }

    /// Stops watching a send; what was kept to queue it again, if it was
    /// watched.
    fn unwatch(&mut self, id: VerificationId, number: u32) -> Option<Watched> {
        self.watched.remove(&(id, number))
    }

    /// Up to `max` watched sends whose watch ended by `now`, and why they
    /// go again.
    fn overdue(&self, now: Timestamp, max: usize) -> Vec<(VerificationId, u32, RerouteReason)> {
        self.watched
            .iter()
            .filter(|(_, watched)| watched.until <= now)
            .map(|(&(id, number), watched)| (id, number, timed_out(watched.then)))
            .take(max)
            .collect()
    }
}

/// Why a watch that ended sends again: a fallback step, or a missing
/// receipt.
fn timed_out(then: Option<Channel>) -> RerouteReason {
    match then {
        Some(_) => RerouteReason::Fallback,
        None => RerouteReason::NoReceipt,
    }
}

impl State {
    /// Queues a watched send once more, for the next carrier or on its
    /// fallback channel, if it still should go (the twin of `reroute` in
    /// `lua/common.lua`); whether it was.
    pub(super) fn reroute(
        &mut self,
        id: VerificationId,
        number: u32,
        reason: RerouteReason,
        now: Timestamp,
    ) -> bool {
        let Some(watched) = self.outbox.unwatch(id, number) else {
            return false;
        };
        let Some(entry) = self.verifications.get_mut(&id) else {
            return false;
        };
        let channel = entry.value.channel;
        let Some(from) = rules::reroute(&mut entry.value, number, reason, watched.then, now) else {
            return false;
        };
        let switched = entry.value.channel != channel;
        if switched {
            let why = match reason {
                RerouteReason::Undelivered => "undelivered",
                RerouteReason::NoReceipt | RerouteReason::Fallback => "timeout",
                RerouteReason::SendFailed => "send_failed",
            };
            self.events
                .emit(&entry.value, EventKind::Fallback, Some(why), now);
        }
        let send = QueuedSend {
            id,
            service: entry.value.service.clone(),
            number,
            sealed_code: watched.sealed_code,
            key_id: watched.key_id,
            queued_at: now,
            reroute: Some(Reroute { from, reason }),
            switched,
        };
        self.outbox.push(send);
        true
    }

    /// What a receipt means for a watched send: delivered ends a watch for
    /// the receipt (a fallback watch goes on: the code is not entered
    /// yet), undelivered queues it once more.
    pub(super) fn receipt_watched(
        &mut self,
        id: VerificationId,
        number: u32,
        delivered: bool,
        now: Timestamp,
    ) {
        let receipt_watch = self
            .outbox
            .watched
            .get(&(id, number))
            .is_some_and(|watched| watched.then.is_none());
        if delivered {
            if receipt_watch {
                self.outbox.unwatch(id, number);
            }
        } else {
            self.reroute(id, number, RerouteReason::Undelivered, now);
        }
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
        let Some(send) = state.outbox.remove(&claimed.entry, finish) else {
            return Ok(());
        };
        let State {
            verifications,
            events,
            outbox,
            ..
        } = &mut *state;
        let switch = match finish {
            Finish::Failed {
                switch: Some(switch),
                ..
            } => Some(switch),
            _ => None,
        };
        if let (Some(switch), Some(entry)) = (switch, verifications.get_mut(&claimed.send.id)) {
            let before = entry.value.clone();
            if rules::switch(&mut entry.value, send.number, switch, now) {
                events.emit(&before, EventKind::Undelivered, Some("send_failed"), now);
                events.emit(&entry.value, EventKind::Fallback, Some("send_failed"), now);
                outbox.push(QueuedSend {
                    queued_at: now,
                    reroute: entry.value.delivery.rerouted.clone(),
                    switched: true,
                    ..send
                });
                return Ok(());
            }
        }
        let recorded = verifications
            .get_mut(&claimed.send.id)
            .is_some_and(|entry| {
                let recorded = rules::finish(&mut entry.value, send.number, finish, now);
                let event = match finish {
                    Finish::Sent { .. } => Some((EventKind::Sent, None)),
                    Finish::Failed { .. } => Some((EventKind::Undelivered, Some("send_failed"))),
                    Finish::Skipped => None,
                };
                if let (true, Some((kind, reason))) = (recorded, event) {
                    events.emit(&entry.value, kind, reason, now);
                }
                recorded
            });
        if let (
            true,
            Finish::Sent {
                watch: Some(watch), ..
            },
        ) = (recorded, finish)
        {
            state.outbox.watch(send, *watch);
        }
        Ok(())
    }

    async fn reroute_overdue(&self, now: Timestamp, max: usize) -> Result<usize, Error> {
        let mut state = self.lock();
        let overdue = state.outbox.overdue(now, max);
        Ok(overdue
            .into_iter()
            .filter(|(id, number, reason)| state.reroute(*id, *number, *reason, now))
            .count())
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
        reroute: None,
        switched: false,
    }
}
