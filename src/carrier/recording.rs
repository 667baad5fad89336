//! A carrier for tests: keeps every message so a test can read the code the
//! way a user would, and fails on demand.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::{Accepted, Carrier, SendError, Sms};

/// Clones share the same outbox.
#[derive(Clone, Default)]
pub struct RecordingCarrier {
    sent: Arc<Mutex<Vec<Recorded>>>,
    failures: Arc<AtomicUsize>,
    hangs: Arc<AtomicUsize>,
    hanging: Arc<AtomicUsize>,
}

struct Recorded {
    to: String,
    verification: String,
    body: String,
}

impl RecordingCarrier {
    pub fn new() -> Self {
        Self::default()
    }

    /// The bodies sent to `e164`, in the order the carrier took them.
    pub fn bodies_to(&self, e164: &str) -> Vec<String> {
        self.bodies_where(|sms| sms.to == e164)
    }

    /// The bodies sent for one verification (its id as text).
    pub fn bodies_for(&self, verification: &str) -> Vec<String> {
        self.bodies_where(|sms| sms.verification == verification)
    }

    fn bodies_where(&self, keep: impl Fn(&Recorded) -> bool) -> Vec<String> {
        let sent = self
            .sent
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        sent.iter()
            .filter(|sms| keep(sms))
            .map(|sms| sms.body.clone())
            .collect()
    }

    /// Every body sent to anyone.
    pub fn count(&self) -> usize {
        self.sent
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .len()
    }

    /// The next `times` sends never return, like a replica that died
    /// mid-send.
    pub fn hang_next(&self, times: usize) {
        self.hangs.store(times, Ordering::SeqCst);
    }

    /// Sends that are hanging now.
    pub fn hanging(&self) -> usize {
        self.hanging.load(Ordering::SeqCst)
    }

    /// The next `times` sends fail as temporary errors.
    pub fn fail_next(&self, times: usize) {
        self.failures.store(times, Ordering::SeqCst);
    }
}

#[async_trait]
impl Carrier for RecordingCarrier {
    fn name(&self) -> &str {
        "recording"
    }

    async fn send(&self, sms: &Sms) -> Result<Accepted, SendError> {
        if self
            .hangs
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            })
            .is_ok()
        {
            self.hanging.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<()>().await;
        }
        let failing = self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            });
        if failing.is_ok() {
            return Err(SendError::Temporary(
                "the recording carrier was told to fail".into(),
            ));
        }
        let mut sent = self
            .sent
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let verification = sms.verification.to_string();
        sent.push(Recorded {
            to: sms.to.e164().to_owned(),
            verification,
            body: sms.body.text().to_owned(),
        });
        Ok(Accepted {
            message_id: format!("recorded-{}", sent.len()),
        })
    }
}
