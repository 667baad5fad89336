//! One replica's delivery loop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::{watch, Semaphore};
use tracing::{info, warn};

use super::DeliverySettings;
use crate::carrier::{Carrier, SendError, Sms};
use crate::domain::Timestamp;
use crate::metrics::Metrics;
use crate::otp::Otp;
use crate::store::{Claimed, Finish};

/// Sends claimed per read.
const BATCH: usize = 16;
/// The longest a read waits for a new send before looking around again.
const POLL: Duration = Duration::from_secs(1);
/// Pause after the store failed, before trying again.
const STORE_PAUSE: Duration = Duration::from_millis(500);

pub struct Worker {
    otp: Arc<Otp>,
    carrier: Arc<dyn Carrier>,
    metrics: Metrics,
    settings: DeliverySettings,
    /// This replica's name in the consumer group.
    consumer: String,
}

impl Worker {
    pub fn new(
        otp: Arc<Otp>,
        carrier: Arc<dyn Carrier>,
        metrics: Metrics,
        settings: DeliverySettings,
        consumer: String,
    ) -> Self {
        Worker {
            otp,
            carrier,
            metrics,
            settings,
            consumer,
        }
    }

    /// Delivers until `stop` turns true, then lets the sends in flight finish.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let permits = Arc::new(Semaphore::new(self.settings.concurrency.max(1)));
        // Take over what a dead replica left straight away, then regularly.
        let mut next_takeover = Instant::now();
        while !*stop.borrow() {
            let batch = tokio::select! {
                batch = self.next_batch(&mut next_takeover) => batch,
                _ = stop.changed() => break,
            };
            for claimed in batch {
                let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                    return;
                };
                let worker = Arc::clone(&self);
                tokio::spawn(async move {
                    worker.deliver(claimed).await;
                    drop(permit);
                });
            }
        }
        let all = u32::try_from(self.settings.concurrency.max(1)).unwrap_or(u32::MAX);
        let _drained = permits.acquire_many(all).await;
        info!(consumer = %self.consumer, "delivery stopped");
    }

    async fn next_batch(&self, next_takeover: &mut Instant) -> Vec<Claimed> {
        let batch = if Instant::now() >= *next_takeover {
            *next_takeover = Instant::now() + self.settings.claim_idle / 2;
            self.report_depth().await;
            self.otp
                .reclaim_sends(&self.consumer, self.settings.claim_idle, BATCH)
                .await
        } else {
            self.otp.claim_sends(&self.consumer, BATCH, POLL).await
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
    }

    /// One send, start to finish. If the store fails on the way, the send
    /// stays claimed and is taken over later: at least once, never lost.
    async fn deliver(&self, claimed: Claimed) {
        let finish = match self.otp.prepare_send(&claimed).await {
            Ok(Some((sms, expires_at))) => self.send_with_retries(&sms, expires_at).await,
            Ok(None) => Finish::Skipped,
            Err(error) => {
                warn!(verification_id = %claimed.send.id, error = %error, "send left for a retry");
                return;
            }
        };
        if let Err(error) = self.otp.finish_send(&claimed, &finish).await {
            warn!(verification_id = %claimed.send.id, error = %error, "send outcome not recorded; it will be retried");
        }
    }

    async fn send_with_retries(&self, sms: &Sms, expires_at: Timestamp) -> Finish {
        let carrier = self.carrier.name();
        for attempt in 1..=self.settings.attempts.max(1) {
            let started = Instant::now();
            let result = self.carrier.send(sms).await;
            self.metrics
                .carrier_request(carrier, started.elapsed().as_secs_f64());
            let outcome = match &result {
                Ok(_) => "accepted",
                Err(SendError::Temporary(_)) => "temporary",
                Err(SendError::Rejected { .. }) => "rejected",
            };
            self.metrics.sent(
                sms.service.as_str(),
                carrier,
                sms.to.country_code(),
                outcome,
            );
            match result {
                Ok(accepted) => {
                    info!(verification_id = %sms.verification, send = sms.send, carrier, message_id = %accepted.message_id, "message accepted");
                    return Finish::Sent {
                        carrier: carrier.to_owned(),
                        message_id: accepted.message_id,
                    };
                }
                Err(error @ SendError::Rejected { .. }) => {
                    warn!(verification_id = %sms.verification, carrier, error = %error, "message rejected");
                    break;
                }
                Err(error) => {
                    let wait = self.backoff(attempt);
                    warn!(verification_id = %sms.verification, carrier, attempt, error = %error, "send failed, will retry");
                    let last = attempt == self.settings.attempts;
                    if last || self.otp.now().plus(wait) >= expires_at {
                        break;
                    }
                    tokio::time::sleep(wait).await;
                }
            }
        }
        self.metrics.dead_letter();
        Finish::Failed { dead: true }
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
