//! The `Publisher`: one task per queue (shard × service with events) in
//! every replica. A task that holds its queue's lease posts the queue's
//! events in order, records `expired` for the queue's verifications whose
//! time came, and after a failed post waits (renewing the lease) before
//! trying the same event again: a verification's events never overtake
//! one another. A task without the lease tries to take it every poll, so
//! a dead replica's queues move on within `lease`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

use super::{EventSettings, Payload};
use crate::carrier::SignedEndpoint;
use crate::domain::{Clock, ServiceName};
use crate::metrics::Metrics;
use crate::store::events::{Events, Lease, Queued, Tried};
use crate::store::SHARDS;

/// Events read from a queue at a time.
const BATCH: usize = 50;

pub struct Publisher {
    events: Arc<dyn Events>,
    endpoints: BTreeMap<ServiceName, SignedEndpoint>,
    settings: EventSettings,
    clock: Arc<dyn Clock>,
    metrics: Metrics,
    /// This replica, as lease holder.
    holder: String,
}

/// What a queue's task does next.
enum Next {
    /// Read the queue again at once: it may hold more.
    Again,
    /// Wait for the next poll.
    Poll,
    /// The first event failed: try it again at this instant.
    RetryAt(Instant),
}

impl Publisher {
    pub fn new(
        events: Arc<dyn Events>,
        endpoints: BTreeMap<ServiceName, SignedEndpoint>,
        settings: EventSettings,
        clock: Arc<dyn Clock>,
        metrics: Metrics,
        holder: String,
    ) -> Self {
        Publisher {
            events,
            endpoints,
            settings,
            clock,
            metrics,
            holder,
        }
    }

    /// Runs every queue's task until `stopped`.
    pub async fn run(self: Arc<Self>, stopped: watch::Receiver<bool>) {
        let mut tasks = tokio::task::JoinSet::new();
        for service in self.endpoints.keys() {
            for shard in 0..SHARDS {
                let lease = Lease {
                    shard: [0, shard],
                    service: service.clone(),
                    holder: self.holder.clone(),
                    ttl: self.settings.lease,
                };
                // Spread over one poll, so the queues are not read in bursts.
                let offset = self.settings.poll * u32::from(shard) / u32::from(SHARDS);
                tasks.spawn(self.clone().serve(lease, offset, stopped.clone()));
            }
        }
        info!(queues = tasks.len(), holder = %self.holder, "events publisher started");
        while tasks.join_next().await.is_some() {}
    }

    async fn serve(
        self: Arc<Self>,
        lease: Lease,
        offset: Duration,
        mut stopped: watch::Receiver<bool>,
    ) {
        let mut wake = Instant::now() + offset;
        let mut retry_at: Option<Instant> = None;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                _ = stopped.changed() => return,
            }
            if *stopped.borrow() {
                return;
            }
            let next = match self.round(&lease, retry_at).await {
                Ok(next) => next,
                Err(error) => {
                    warn!(%error, service = %lease.service, "events queue unreadable");
                    Next::Poll
                }
            };
            let now = Instant::now();
            (wake, retry_at) = match next {
                Next::Again => (now, None),
                Next::Poll => (now + self.settings.poll, None),
                // Renew the lease while waiting to retry.
                Next::RetryAt(at) => (at.min(now + self.settings.poll), Some(at)),
            };
        }
    }

    /// One look at the queue: take or renew its lease, record expiries,
    /// post what is due.
    async fn round(
        &self,
        lease: &Lease,
        retry_at: Option<Instant>,
    ) -> Result<Next, crate::store::Error> {
        let now = self.clock.now();
        let Some(polled) = self.events.poll(lease, BATCH, now).await? else {
            return Ok(Next::Poll);
        };
        if !polled.expiring.is_empty()
            && self.events.expire(lease, &polled.expiring, now).await? > 0
        {
            return Ok(Next::Again);
        }
        if let Some(at) = retry_at.filter(|at| Instant::now() < *at) {
            return Ok(Next::RetryAt(at));
        }
        let full = polled.events.len() == BATCH;
        let mut delivered = Vec::new();
        let mut next = if full { Next::Again } else { Next::Poll };
        for queued in &polled.events {
            match self.post(queued).await {
                Ok(()) => delivered.push(queued.entry.clone()),
                Err(reason) => {
                    next = self.failed(lease, queued, &reason).await?;
                    break;
                }
            }
        }
        self.events.delivered(lease, &delivered).await?;
        Ok(next)
    }

    async fn post(&self, queued: &Queued) -> Result<(), String> {
        let event = &queued.event;
        let endpoint = self
            .endpoints
            .get(&event.service)
            .ok_or_else(|| "the service has no events endpoint".to_owned())?;
        let body = serde_json::to_vec(&Payload::of(event)).expect("a payload serializes");
        endpoint
            .post(&event.id, &body)
            .await
            .map_err(|error| error.to_string())?;
        let waited = event.at.until(self.clock.now()).as_secs_f64();
        self.metrics.event(
            event.service.as_str(),
            event.kind.as_str(),
            "delivered",
            Some(waited),
        );
        Ok(())
    }

    async fn failed(
        &self,
        lease: &Lease,
        queued: &Queued,
        reason: &str,
    ) -> Result<Next, crate::store::Error> {
        let event = &queued.event;
        let (service, kind) = (event.service.as_str(), event.kind.as_str());
        let now = self.clock.now();
        Ok(
            match self
                .events
                .failed(lease, &queued.entry, self.settings.max_tries, now)
                .await?
            {
                Tried::Again(tries) => {
                    self.metrics.event(service, kind, "retried", None);
                    let wait = self.settings.backoff(tries);
                    warn!(event_id = %event.id, tries, wait_ms = wait.as_millis() as u64, reason, "event not delivered; retrying");
                    Next::RetryAt(Instant::now() + wait)
                }
                Tried::DeadLettered => {
                    self.metrics.event(service, kind, "dead_lettered", None);
                    warn!(event_id = %event.id, reason, "event dead-lettered after its last try");
                    Next::Again
                }
                Tried::NotHeld => Next::Poll,
            },
        )
    }
}
