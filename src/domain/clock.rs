//! Where "now" comes from. Use cases and stores compare instants from a
//! `Clock`, so tests cross a ten-minute expiry instantly instead of sleeping.

#[cfg(any(test, feature = "test-support"))]
use std::sync::atomic::{AtomicI64, Ordering};
#[cfg(any(test, feature = "test-support"))]
use std::sync::Arc;
use std::time::SystemTime;

use super::Timestamp;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// The wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_system(SystemTime::now())
    }
}

/// A clock that moves only when told; clones share the same time.
#[cfg(any(test, feature = "test-support"))]
#[derive(Clone)]
pub struct ManualClock(Arc<AtomicI64>);

#[cfg(any(test, feature = "test-support"))]
impl ManualClock {
    /// Starts at the wall clock's now, so Redis TTLs stay meaningful.
    pub fn new() -> Self {
        ManualClock(Arc::new(AtomicI64::new(SystemClock.now().millis())))
    }

    pub fn advance(&self, by: std::time::Duration) {
        self.0.fetch_add(by.as_millis() as i64, Ordering::SeqCst);
    }

    /// Jumps to `at` (forwards or back).
    pub fn set(&self, at: Timestamp) {
        self.0.store(at.millis(), Ordering::SeqCst);
    }
}

#[cfg(any(test, feature = "test-support"))]
impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(any(test, feature = "test-support"))]
impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.0.load(Ordering::SeqCst))
    }
}
