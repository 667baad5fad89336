//! A carrier that accepts every message and sends nothing: for benchmarks
//! and load tests, where no SMS may leave.

use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;

use super::{Accepted, Carrier, SendError, Sms};

#[derive(Default)]
pub struct NullCarrier {
    accepted: AtomicU64,
}

#[async_trait]
impl Carrier for NullCarrier {
    fn name(&self) -> &str {
        "null"
    }

    async fn send(&self, sms: &Sms) -> Result<Accepted, SendError> {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        Ok(Accepted {
            message_id: format!("null-{}-{}", sms.verification, sms.send),
        })
    }
}
