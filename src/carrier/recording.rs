//! A carrier for tests: keeps every message so a test can read the code the
//! way a user would, and fails on demand.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::{Accepted, Carrier, SendError, Sms};

/// Clones share the same outbox.
#[derive(Clone, Default)]
pub struct RecordingCarrier {
    sent: Arc<Mutex<Vec<(String, String)>>>,
    failures: Arc<AtomicUsize>,
}

impl RecordingCarrier {
    pub fn new() -> Self {
        Self::default()
    }

    /// The bodies sent to `e164`, oldest first.
    pub fn bodies_to(&self, e164: &str) -> Vec<String> {
        let sent = self
            .sent
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        sent.iter()
            .filter(|(to, _)| to == e164)
            .map(|(_, body)| body.clone())
            .collect()
    }

    /// Every body sent to anyone.
    pub fn count(&self) -> usize {
        self.sent
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .len()
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
        sent.push((sms.to.e164().to_owned(), sms.body.text().to_owned()));
        Ok(Accepted {
            message_id: format!("recorded-{}", sent.len()),
        })
    }
}
