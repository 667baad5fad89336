//! One replica's delivery loop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tracing::{info, warn, Instrument};

use super::DeliverySettings;
use crate::carrier::{Admission, Hop, Outgoing, Receipts, Router, SendError};
use crate::domain::{Channel, Timestamp};
use crate::metrics::Metrics;
use crate::otp::{Otp, Preparation, Prepared};
use crate::store::{Claimed, Finish, Reroute, Switch, Watch};

/// The most sends claimed per read (fewer when fewer permits are free).
const BATCH: usize = 16;
/// The longest a read waits for a new send before looking around again.
const POLL: Duration = Duration::from_secs(1);
/// Pause after the store failed, before trying again.
const STORE_PAUSE: Duration = Duration::from_millis(500);
/// How often a replica looks for watched sends whose receipt is overdue.
const OVERDUE_EVERY: Duration = Duration::from_secs(1);

pub struct Worker {
    otp: Arc<Otp>,
    router: Arc<Router>,
    metrics: Metrics,
    settings: DeliverySettings,
    /// This replica's name in the consumer group.
    consumer: String,
}

impl Worker {
    pub fn new(
        otp: Arc<Otp>,
        router: Arc<Router>,
        metrics: Metrics,
        settings: DeliverySettings,
        consumer: String,
    ) -> Self {
        Worker {
            otp,
            router,
            metrics,
            settings,
            consumer,
        }
    }

    /// Delivers until `stop` turns true, then gives the sends in flight
    /// `claim_idle / 2` to finish; those still running are abandoned, left
    /// claimed for another replica to take over.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let permits = Arc::new(Semaphore::new(self.settings.concurrency.max(1)));
        let mut sending = JoinSet::new();
        // Take over what a dead replica left straight away, then regularly.
        let mut next_takeover = Instant::now();
        let mut next_overdue = Instant::now();
        // Watched sends come due only with re-routing or a fallback on.
        let watching = self.settings.reroute || self.otp.falls_back();
        while !*stop.borrow() {
            // Permits first: a send is claimed only when it can start at
            // once, so that no claim waits unkept for another replica to
            // take over.
            let first = tokio::select! {
                permit = Arc::clone(&permits).acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => return,
                },
                _ = stop.changed() => break,
            };
            let mut free = vec![first];
            while free.len() < BATCH {
                match Arc::clone(&permits).try_acquire_owned() {
                    Ok(permit) => free.push(permit),
                    Err(_) => break,
                }
            }
            if watching && Instant::now() >= next_overdue {
                next_overdue = Instant::now() + OVERDUE_EVERY;
                if let Err(error) = self.otp.reroute_overdue(BATCH).await {
                    warn!(error = ?error, "overdue receipts not looked at; retrying");
                }
            }
            let batch = tokio::select! {
                batch = self.next_batch(&mut next_takeover, free.len()) => batch,
                _ = stop.changed() => break,
            };
            for (claimed, permit) in batch.into_iter().zip(free) {
                let worker = Arc::clone(&self);
                sending.spawn(async move {
                    worker.deliver(claimed).await;
                    drop(permit);
                });
            }
            while sending.try_join_next().is_some() {}
        }
        let drained = async { while sending.join_next().await.is_some() {} };
        if tokio::time::timeout(self.settings.claim_idle / 2, drained)
            .await
            .is_err()
        {
            warn!(consumer = %self.consumer, abandoned = sending.len(), "sends still in flight are left to other replicas");
            sending.abort_all();
        }
        info!(consumer = %self.consumer, "delivery stopped");
    }

    /// At most `max` sends: taken over from a dead replica now and then,
    /// else new ones.
    async fn next_batch(&self, next_takeover: &mut Instant, max: usize) -> Vec<Claimed> {
        let batch = if Instant::now() >= *next_takeover {
            *next_takeover = Instant::now() + self.settings.claim_idle / 2;
            self.report_depth().await;
            self.otp
                .reclaim_sends(&self.consumer, self.settings.claim_idle, max)
                .await
        } else {
            self.otp.claim_sends(&self.consumer, max, POLL).await
        };
        match batch {
            Ok(batch) => batch,
            Err(error) => {
                warn!(error = ?error, "outbox unreachable");
                tokio::time::sleep(STORE_PAUSE).await;
                Vec::new()
            }
        }
    }

    async fn report_depth(&self) {
        if let Ok(depth) = self.otp.outbox_depth().await {
            self.metrics.outbox_depth(depth);
        }
        if let Ok(oldest) = self.otp.outbox_oldest().await {
            let now = self.otp.now().millis();
            let age = oldest.map_or(0, |at| now.saturating_sub(at.millis()));
            self.metrics.outbox_oldest_age(age as f64 / 1000.0);
        }
    }

    /// One send, start to finish. If the store fails on the way, the send
    /// stays claimed and is taken over later: at least once, never lost.
    async fn deliver(&self, claimed: Claimed) {
        let reroute = claimed.send.reroute.as_ref();
        let finish = match self.otp.prepare_send(&claimed).await {
            Ok(Preparation::Ready(mut prepared)) => {
                let sending = self.send_with_retries(&mut prepared, reroute, claimed.send.switched);
                self.keeping(&claimed, sending).await
            }
            Ok(Preparation::Skip) => Finish::Skipped,
            Ok(Preparation::Refuse) => Finish::Failed {
                dead: false,
                switch: None,
            },
            Err(error) => {
                warn!(verification_id = %claimed.send.id, error = %error, "send left for a retry");
                return;
            }
        };
        if let Err(error) = self.otp.finish_send(&claimed, &finish).await {
            warn!(verification_id = %claimed.send.id, error = %error, "send outcome not recorded; it will be retried");
            return;
        }
        if let Some(reroute) = reroute {
            let outcome = match finish {
                Finish::Sent { .. } => "sent",
                Finish::Failed { .. } => "failed",
                Finish::Skipped => "skipped",
            };
            self.metrics
                .reroute(&reroute.from, reroute.reason.as_str(), outcome);
        }
    }

    /// Runs `sending`, keeping its claim fresh meanwhile (every third of
    /// `claim_idle`) so that no live replica takes over a slow send.
    async fn keeping(
        &self,
        claimed: &Claimed,
        sending: impl std::future::Future<Output = Finish>,
    ) -> Finish {
        tokio::pin!(sending);
        let mut beat = tokio::time::interval(self.settings.claim_idle / 3);
        beat.tick().await;
        loop {
            tokio::select! {
                finish = &mut sending => return finish,
                _ = beat.tick() => {
                    match self.otp.keep_claimed(&self.consumer, claimed).await {
                        Ok(true) => {}
                        Ok(false) => warn!(verification_id = %claimed.send.id, "the send was taken over by another replica; it may be sent twice"),
                        Err(error) => warn!(verification_id = %claimed.send.id, error = %error, "claim not kept; another replica may take the send over"),
                    }
                }
            }
        }
    }

    /// Tries the route's carriers in turn (a temporary error moves on to the
    /// next at once); when a whole pass fails, backs off and tries again,
    /// while attempts and the code's life last. While every carrier of the
    /// route has its circuit open, waits without spending an attempt. A
    /// re-routed send's route starts after the carrier it was accepted by
    /// (a fallback's, on its new channel, from the start).
    async fn send_with_retries(
        &self,
        prepared: &mut Prepared,
        reroute: Option<&Reroute>,
        switched: bool,
    ) -> Finish {
        let (expires_at, fallback) = (prepared.expires_at, prepared.fallback);
        let fallback_channel = prepared.fallback_channel;
        let message = &mut prepared.message;
        let mut route = self.router.route(message.channel(), message.to().region());
        if let Some(skipped) = reroute.and_then(|reroute| reroute.skips(switched)) {
            let after = route.iter().position(|hop| hop.name == skipped);
            route.drain(..after.map_or(0, |at| at + 1));
        }
        let mut attempt = 0;
        // The carrier tried last (the route's first until one is tried).
        let mut tried_last = route
            .first()
            .map(|hop| hop.name.clone())
            .unwrap_or_default();
        loop {
            let mut tried = false;
            for (at, hop) in route.iter().enumerate() {
                // Admitted only now: a carrier never tried keeps its probe.
                let Some(admission) = self.router.admit(hop.at) else {
                    continue;
                };
                tried_last.clone_from(&hop.name);
                if !tried {
                    tried = true;
                    attempt += 1;
                }
                message.set_valid_for(self.otp.now().until(expires_at));
                match self.try_carrier(hop, admission, message).await {
                    Ok(message_id) => {
                        let has_next = at + 1 < route.len();
                        return Finish::Sent {
                            carrier: hop.name.clone(),
                            message_id,
                            watch: fallback.or_else(|| {
                                self.receipt_watch(hop, has_next && reroute.is_none(), expires_at)
                            }),
                        };
                    }
                    Err(SendError::Rejected { .. }) if !self.router.failover_on_rejection => {
                        return self.give_up(&hop.name, fallback_channel);
                    }
                    Err(_) => {}
                }
            }
            let wait = if tried {
                self.backoff(attempt)
            } else {
                self.settings.retry_max
            };
            if attempt >= self.settings.attempts || self.otp.now().plus(wait) >= expires_at {
                break;
            }
            tokio::time::sleep(wait).await;
        }
        self.give_up(&tried_last, fallback_channel)
    }

    /// How a send `hop` accepted is watched for its receipt, to go once
    /// more through the next carrier (REL-4): only with `reroute` on, a
    /// carrier that gives receipts, a next carrier to go to, and a code that
    /// still lives then. (A service's fallback step takes precedence.)
    fn receipt_watch(&self, hop: &Hop, has_next: bool, expires_at: Timestamp) -> Option<Watch> {
        let until = self.otp.now().plus(self.settings.receipt_timeout);
        let watched = self.settings.reroute
            && has_next
            && hop.carrier.receipts() != Receipts::None
            && until < expires_at;
        watched.then_some(Watch { until, then: None })
    }

    /// Every route gave up (`tried_last` the carrier tried last): the send
    /// goes to the dead letters, and its code to the fallback channel if
    /// the service has one.
    fn give_up(&self, tried_last: &str, fallback: Option<Channel>) -> Finish {
        self.metrics.dead_letter();
        Finish::Failed {
            dead: true,
            switch: fallback.map(|channel| Switch {
                from: tried_last.to_owned(),
                channel,
            }),
        }
    }

    /// One call to one carrier, with its metrics, logs and circuit (the
    /// admission is settled by the answer).
    async fn try_carrier(
        &self,
        hop: &Hop,
        admission: Admission<'_>,
        message: &Outgoing,
    ) -> Result<String, SendError> {
        let started = Instant::now();
        let span = tracing::info_span!("carrier", carrier = %hop.name);
        let result = tokio::time::timeout(
            self.settings.carrier_timeout,
            message.via(hop.carrier.as_ref()),
        )
        .instrument(span)
        .await
        .unwrap_or_else(|_| {
            Err(SendError::Temporary(
                "no answer within delivery.carrier_timeout".into(),
            ))
        });
        self.metrics
            .carrier_request(&hop.name, started.elapsed().as_secs_f64());
        let outcome = match &result {
            Ok(_) => "accepted",
            Err(SendError::Temporary(_)) => "temporary",
            Err(SendError::Throttled { .. }) => "throttled",
            Err(SendError::Rejected { .. }) => "rejected",
        };
        self.metrics.sent(
            message.service().as_str(),
            &hop.name,
            message.to().country_code(),
            outcome,
        );
        let (verification, send) = message.send();
        let carrier = hop.name.as_str();
        match &result {
            Ok(accepted) => {
                admission.succeeded();
                if hop.carrier.receipts() == Receipts::ByMessageId {
                    if let Err(error) = self
                        .otp
                        .index_message(&hop.name, &accepted.message_id, message.send())
                        .await
                    {
                        warn!(verification_id = %verification, carrier, error = %error, "message id not indexed: its receipt will be ignored");
                    }
                }
                info!(verification_id = %verification, send, carrier, message_id = %accepted.message_id, "message accepted");
            }
            Err(error @ SendError::Rejected { .. }) => {
                admission.succeeded();
                warn!(verification_id = %verification, carrier, error = %error, "message rejected");
            }
            Err(error @ SendError::Throttled { .. }) => {
                drop(admission);
                info!(verification_id = %verification, carrier, error = %error, "carrier throttled; next carrier or retry");
            }
            Err(error) => {
                admission.failed();
                warn!(verification_id = %verification, carrier, error = %error, "send failed; next carrier or retry");
            }
        }
        for (name, open) in self.router.open_circuits() {
            self.metrics.circuit_open(name, open);
        }
        result.map(|accepted| accepted.message_id)
    }

    /// Full jitter: uniform in `[0, min(retry_max, retry_base · 2^(attempt-1))]`.
    fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self
            .settings
            .retry_base
            .saturating_mul(1 << (attempt - 1).min(16))
            .min(self.settings.retry_max);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::rng().random_range(0..=millis))
    }
}
