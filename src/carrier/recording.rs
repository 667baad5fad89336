//! A carrier for tests: keeps every message so a test can read the code the
//! way a user would, and fails on demand.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::{Accepted, Call, Carrier, Message, Receipts, SendError, Sms};

/// Clones share the same outbox.
#[derive(Clone)]
pub struct RecordingCarrier {
    name: Arc<str>,
    sent: Arc<Mutex<Vec<Recorded>>>,
    calls: Arc<AtomicUsize>,
    failures: Arc<AtomicUsize>,
    rejections: Arc<AtomicUsize>,
    throttles: Arc<AtomicUsize>,
    hangs: Arc<AtomicUsize>,
    hanging: Arc<AtomicUsize>,
    /// The next sends take this long, each (`slow_next`).
    slow: Arc<Mutex<(usize, std::time::Duration)>>,
    /// Whether it gives receipts naming its message ids (`with_receipts`).
    receipts: Receipts,
}

struct Recorded {
    to: String,
    verification: String,
    send: u32,
    body: String,
}

impl Default for RecordingCarrier {
    fn default() -> Self {
        Self::named("recording")
    }
}

impl RecordingCarrier {
    pub fn new() -> Self {
        Self::default()
    }

    /// A recording carrier under another name (routes tell them apart).
    pub fn named(name: &str) -> Self {
        RecordingCarrier {
            name: name.into(),
            sent: Arc::default(),
            calls: Arc::default(),
            failures: Arc::default(),
            rejections: Arc::default(),
            throttles: Arc::default(),
            hangs: Arc::default(),
            hanging: Arc::default(),
            slow: Arc::default(),
            receipts: Receipts::None,
        }
    }

    /// The same carrier, giving receipts by message id like an SMSC (the
    /// test hands them to otpd).
    pub fn with_receipts(mut self) -> Self {
        self.receipts = Receipts::ByMessageId;
        self
    }

    /// Every call to `send`, whatever it answered.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
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

    /// The next `times` sends answer only after `delay`, like a carrier
    /// under load.
    pub fn slow_next(&self, times: usize, delay: std::time::Duration) {
        *self
            .slow
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = (times, delay);
    }

    /// Sends that are hanging now.
    pub fn hanging(&self) -> usize {
        self.hanging.load(Ordering::SeqCst)
    }

    /// The next `times` sends fail as temporary errors.
    pub fn fail_next(&self, times: usize) {
        self.failures.store(times, Ordering::SeqCst);
    }

    /// The next `times` sends are throttled (the carrier asks to slow down).
    pub fn throttle_next(&self, times: usize) {
        self.throttles.store(times, Ordering::SeqCst);
    }

    /// The next `times` sends are rejected, as for an invalid number.
    pub fn reject_next(&self, times: usize) {
        self.rejections.store(times, Ordering::SeqCst);
    }
}

/// Takes one from `left` if it is above zero.
fn take_one(left: &AtomicUsize) -> bool {
    left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
        left.checked_sub(1)
    })
    .is_ok()
}

#[async_trait]
impl Carrier for RecordingCarrier {
    fn name(&self) -> &str {
        &self.name
    }

    fn receipts(&self) -> Receipts {
        self.receipts
    }

    async fn send(&self, sms: &Sms) -> Result<Accepted, SendError> {
        self.take(sms, sms.body.text()).await
    }

    /// Records a call's script as its text.
    async fn call(&self, call: &Call) -> Result<Accepted, SendError> {
        self.take(call, &call.body.text()).await
    }
}

impl RecordingCarrier {
    /// Plays the scripted failures, then keeps what `message` says.
    async fn take<B>(&self, sms: &Message<B>, says: &str) -> Result<Accepted, SendError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if take_one(&self.hangs) {
            self.hanging.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<()>().await;
        }
        let delay = {
            let mut slow = self
                .slow
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            (slow.0 > 0).then(|| {
                slow.0 -= 1;
                slow.1
            })
        };
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        if take_one(&self.failures) {
            return Err(SendError::Temporary(
                "the recording carrier was told to fail".into(),
            ));
        }
        if take_one(&self.throttles) {
            return Err(SendError::Throttled {
                reason: "the recording carrier was told to throttle".into(),
            });
        }
        if take_one(&self.rejections) {
            return Err(SendError::Rejected {
                reason: "the recording carrier was told to reject".into(),
            });
        }
        let mut sent = self
            .sent
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let verification = sms.verification.to_string();
        // Sends of one verification in their order, even when a superseded
        // send reached the carrier after a newer one (as a handset would
        // show them by their codes' age): the latest body is the live code.
        let at = sent
            .iter()
            .position(|newer| newer.verification == verification && newer.send > sms.send)
            .unwrap_or(sent.len());
        sent.insert(
            at,
            Recorded {
                to: sms.to.e164().to_owned(),
                verification,
                send: sms.send,
                body: says.to_owned(),
            },
        );
        Ok(Accepted {
            message_id: format!("recorded-{}", sent.len()),
        })
    }
}
