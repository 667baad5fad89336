//! Lifecycle events in memory: the twin of the events parts of
//! `lua/common.lua` and the `*events*`, `expire` and `blocked` scripts.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::Instant;

use async_trait::async_trait;

use super::MemoryStore;
use crate::domain::{ServiceName, Status, Timestamp, VerificationId};
use crate::store::events::{Event, EventKind, Events, Lease, Polled, Queued, Tried};
use crate::store::{Error, Record};

type Queue = ([u8; 2], ServiceName);

/// Dead-lettered events kept, as `MAXLEN` in Redis.
const DEAD_LETTERS: usize = 10_000;

#[derive(Default)]
pub(super) struct Log {
    /// The services with events.
    pub services: BTreeSet<ServiceName>,
    queues: HashMap<Queue, VecDeque<Queued>>,
    /// Verifications by expiry, per queue.
    schedules: HashMap<Queue, HashMap<VerificationId, Timestamp>>,
    /// Events queued so far, by verification.
    counts: HashMap<VerificationId, u32>,
    leases: HashMap<Queue, (String, Instant)>,
    tries: HashMap<String, u32>,
    dead: Vec<Queued>,
    entries: u64,
}

impl Log {
    /// Queues `kind` for `record` as it is now, if its service has events.
    pub fn emit(&mut self, record: &Record, kind: EventKind, reason: Option<&str>, now: Timestamp) {
        if !self.services.contains(&record.service) {
            return;
        }
        let count = self.counts.entry(record.id).or_default();
        *count += 1;
        let event = Event {
            id: format!("{}.{count}", record.id),
            kind,
            verification: Some(record.id),
            service: record.service.clone(),
            masked_to: record.masked_to.clone(),
            channel: record.channel,
            carrier: record.delivery.carrier.clone(),
            country: record.country.clone(),
            at: now,
            reason: reason.map(str::to_owned),
        };
        self.push(record.id.tag(), event);
    }

    /// Schedules `record`'s `expired` for its expiry.
    pub fn schedule_expiry(&mut self, record: &Record) {
        if self.services.contains(&record.service) {
            self.schedules
                .entry((record.id.tag(), record.service.clone()))
                .or_default()
                .insert(record.id, record.expires_at);
        }
    }

    /// Forgets the counts of verifications no longer kept.
    pub fn retain(&mut self, kept: impl Fn(&VerificationId) -> bool) {
        self.counts.retain(|id, _| kept(id));
    }

    fn push(&mut self, shard: [u8; 2], event: Event) {
        self.entries += 1;
        let entry = format!("{}-0", self.entries);
        self.queues
            .entry((shard, event.service.clone()))
            .or_default()
            .push_back(Queued { entry, event });
    }

    /// Takes or renews `lease`; whether it is held.
    fn hold(&mut self, lease: &Lease) -> bool {
        let queue = (lease.shard, lease.service.clone());
        let now = Instant::now();
        match self.leases.get(&queue) {
            Some((holder, until)) if holder != &lease.holder && now < *until => false,
            _ => {
                self.leases
                    .insert(queue, (lease.holder.clone(), now + lease.ttl));
                true
            }
        }
    }

    fn held(&self, lease: &Lease) -> bool {
        self.leases
            .get(&(lease.shard, lease.service.clone()))
            .is_some_and(|(holder, until)| holder == &lease.holder && Instant::now() < *until)
    }
}

#[async_trait]
impl Events for MemoryStore {
    async fn blocked(&self, shard: [u8; 2], event: &Event) -> Result<(), Error> {
        let mut state = self.lock();
        if state.events.services.contains(&event.service) {
            state.events.push(shard, event.clone());
        }
        Ok(())
    }

    async fn poll(
        &self,
        lease: &Lease,
        max: usize,
        now: Timestamp,
    ) -> Result<Option<Polled>, Error> {
        let mut state = self.lock();
        let log = &mut state.events;
        if !log.hold(lease) {
            return Ok(None);
        }
        let queue = (lease.shard, lease.service.clone());
        let events = log
            .queues
            .get(&queue)
            .map(|events| events.iter().take(max).cloned().collect())
            .unwrap_or_default();
        let mut expiring: Vec<(Timestamp, VerificationId)> = log
            .schedules
            .get(&queue)
            .map(|due| {
                due.iter()
                    .filter(|(_, at)| **at <= now)
                    .map(|(id, at)| (*at, *id))
                    .collect()
            })
            .unwrap_or_default();
        expiring.sort_by_key(|(at, _)| *at);
        expiring.truncate(max);
        Ok(Some(Polled {
            events,
            expiring: expiring.into_iter().map(|(_, id)| id).collect(),
        }))
    }

    async fn expire(
        &self,
        lease: &Lease,
        due: &[VerificationId],
        now: Timestamp,
    ) -> Result<usize, Error> {
        let mut state = self.lock();
        if !state.events.held(lease) {
            return Ok(0);
        }
        let queue = (lease.shard, lease.service.clone());
        let mut expired = 0;
        for id in due {
            let record = state.verifications.get(id).map(|entry| entry.value.clone());
            let log = &mut state.events;
            let schedule = log.schedules.entry(queue.clone()).or_default();
            match record {
                Some(record) if record.status == Status::Pending => {
                    if record.expires_at <= now && schedule.remove(id).is_some() {
                        log.emit(&record, EventKind::Expired, None, now);
                        expired += 1;
                    }
                }
                _ => {
                    schedule.remove(id);
                }
            }
        }
        Ok(expired)
    }

    async fn delivered(&self, lease: &Lease, entries: &[String]) -> Result<bool, Error> {
        let mut state = self.lock();
        let log = &mut state.events;
        if !log.held(lease) {
            return Ok(false);
        }
        if let Some(queue) = log.queues.get_mut(&(lease.shard, lease.service.clone())) {
            queue.retain(|queued| !entries.contains(&queued.entry));
        }
        for entry in entries {
            log.tries.remove(entry);
        }
        Ok(true)
    }

    async fn failed(
        &self,
        lease: &Lease,
        entry: &str,
        max_tries: u32,
        _now: Timestamp,
    ) -> Result<Tried, Error> {
        let mut state = self.lock();
        let log = &mut state.events;
        if !log.held(lease) {
            return Ok(Tried::NotHeld);
        }
        let tries = log.tries.entry(entry.to_owned()).or_default();
        *tries += 1;
        if *tries < max_tries {
            return Ok(Tried::Again(*tries));
        }
        log.tries.remove(entry);
        if let Some(queue) = log.queues.get_mut(&(lease.shard, lease.service.clone())) {
            if let Some(at) = queue.iter().position(|queued| queued.entry == entry) {
                let dead = queue.remove(at).expect("present");
                if log.dead.len() >= DEAD_LETTERS {
                    log.dead.remove(0);
                }
                log.dead.push(dead);
            }
        }
        Ok(Tried::DeadLettered)
    }
}
