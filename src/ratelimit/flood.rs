//! The in-process flood shedder: token buckets per client (IPv6 per
//! prefix) in memory, refusing floods before they reach Redis. A first line
//! only: the Redis limits are the truth. Both transports ask it.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::network_of;

pub struct Flood {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    ipv6_prefix: u8,
    seen: AtomicU64,
}

/// Forget idle clients every this many requests.
const RETAIN_EVERY: u64 = 10_000;

impl Flood {
    pub fn new(per_second: u32, burst: u32, ipv6_prefix: u8) -> Self {
        let per_second = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        let limiter = RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst));
        Flood {
            limiter,
            ipv6_prefix,
            seen: AtomicU64::new(0),
        }
    }

    /// One request from `client`: admitted, or the wait until one would be.
    pub fn admit(&self, client: IpAddr) -> Result<(), Duration> {
        if self.seen.fetch_add(1, Ordering::Relaxed) % RETAIN_EVERY == RETAIN_EVERY - 1 {
            self.limiter.retain_recent();
        }
        self.limiter
            .check_key(&network_of(client, self.ipv6_prefix))
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}
