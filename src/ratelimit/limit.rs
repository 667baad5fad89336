//! Limits as the stores see them: a `Group` of items whose keys share one
//! Redis slot, decided and recorded in one atomic step, all or nothing.
//!
//! An item is a GCRA rate (RL-1: one "theoretical arrival time" per key) or
//! a quota counted in a calendar window. A denied item in `monitor` mode is
//! reported but does not refuse the group.

use std::time::Duration;

use crate::domain::Timestamp;

/// Which limit refused a request: the `scope` of a 429 and a metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    Number,
    Ip,
    Device,
    User,
    Range,
    Conversion,
    Country,
    Global,
    ApiKey,
    CheckFailures,
    Budget,
}

impl Scope {
    pub const ALL: [Scope; 11] = [
        Scope::Number,
        Scope::Ip,
        Scope::Device,
        Scope::User,
        Scope::Range,
        Scope::Conversion,
        Scope::Country,
        Scope::Global,
        Scope::ApiKey,
        Scope::CheckFailures,
        Scope::Budget,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Number => "number",
            Scope::Ip => "ip",
            Scope::Device => "device",
            Scope::User => "user",
            Scope::Range => "range",
            Scope::Conversion => "conversion",
            Scope::Country => "country",
            Scope::Global => "global",
            Scope::ApiKey => "api-key",
            Scope::CheckFailures => "check-failures",
            Scope::Budget => "budget",
        }
    }
}

/// The generic cell rate algorithm for `count` per `period`: one cell every
/// `period / count`, and up to `count` at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gcra {
    pub interval_ms: u64,
    pub burst: u64,
}

impl Gcra {
    pub fn new(count: u32, period: Duration) -> Self {
        let count = u64::from(count.max(1));
        Gcra {
            interval_ms: (period.as_millis() as u64 / count).max(1),
            burst: count,
        }
    }

    /// The arrival time after taking `cost` cells at `now` from `tat`, and
    /// how long to wait if that is too far ahead (RL-1).
    pub fn take(self, tat: Option<i64>, now: i64, cost: u64) -> (i64, Option<Duration>) {
        let start = tat.unwrap_or(now).max(now);
        let new_tat = start + (self.interval_ms * cost) as i64;
        let ahead = new_tat - now;
        let allowed_ahead = (self.interval_ms * self.burst) as i64;
        let wait =
            (ahead > allowed_ahead).then(|| Duration::from_millis((ahead - allowed_ahead) as u64));
        (new_tat, wait)
    }

    /// Cells left at `now` once `tat` is recorded.
    pub fn remaining(self, tat: i64, now: i64) -> u64 {
        let ahead = (tat - now).max(0) as u64;
        (self.interval_ms * self.burst).saturating_sub(ahead) / self.interval_ms
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    Rate(Gcra),
    /// At most `cap` in the window that closes at `until`.
    Quota {
        cap: u64,
        until: Timestamp,
    },
    /// Sends to a destination that its approvals do not follow (ABU-6).
    Conversion(Conversion),
}

/// A destination is refused once it has `min_sends` sends in the sliding
/// `window` and fewer than `min_permille` approvals per thousand of them.
/// Sends and approvals are counted in `BUCKETS` buckets of the window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conversion {
    pub min_sends: u64,
    pub min_permille: u64,
    pub window_ms: u64,
}

impl Conversion {
    pub const BUCKETS: i64 = 12;

    /// The bucket `now` falls in.
    pub fn bucket(self, now: i64) -> i64 {
        now / (self.window_ms as i64 / Self::BUCKETS).max(1)
    }

    /// Whether a destination with these live counts is refused.
    pub fn refuses(self, sends: u64, approvals: u64) -> bool {
        sends >= self.min_sends && approvals * 1000 < self.min_permille * sends
    }
}

/// One limit on one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    /// Keyed hash of what is limited (a number, an IP, a range …).
    pub key: [u8; 16],
    pub check: Check,
    pub cost: u64,
    /// Report, do not refuse.
    pub monitor: bool,
    /// On an enforced denial, block the key for this long (range blocks).
    pub block: Option<Duration>,
    pub scope: Scope,
    /// The policy name shown in RateLimit headers, e.g. `number-15m`.
    pub policy: String,
    /// The window shown in RateLimit-Policy.
    pub window: Duration,
}

/// A destination's sends and approvals, per bucket (the in-process twin
/// of the Redis hash `lua/common.lua` keeps).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConversionCounts {
    sends: std::collections::BTreeMap<i64, i64>,
    approvals: std::collections::BTreeMap<i64, i64>,
}

impl ConversionCounts {
    /// Sends and approvals in the window that ends at `now`; older buckets
    /// are dropped.
    pub fn live(&mut self, conversion: Conversion, now: i64) -> (u64, u64) {
        let oldest = conversion.bucket(now) - Conversion::BUCKETS;
        let sum = |counts: &mut std::collections::BTreeMap<i64, i64>| {
            counts.retain(|bucket, _| *bucket > oldest);
            counts.values().sum::<i64>().max(0) as u64
        };
        (sum(&mut self.sends), sum(&mut self.approvals))
    }

    /// Adds `count` sends (negative: a refund) in the bucket of `now`.
    pub fn send(&mut self, conversion: Conversion, now: i64, count: i64) {
        *self.sends.entry(conversion.bucket(now)).or_default() += count;
    }

    pub fn approve(&mut self, conversion: Conversion, now: i64) {
        *self.approvals.entry(conversion.bucket(now)).or_default() += 1;
    }
}

/// Items decided together; every key shares `tag`, hence one Redis slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub tag: [u8; 2],
    pub items: Vec<Item>,
}

/// What one item came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// `Some(wait)` if over the limit (or blocked): a retry after `wait` passes.
    pub denied: Option<Duration>,
    pub remaining: u64,
    /// Quota used before this request (for budget thresholds).
    pub used_before: u64,
}

/// The group's outcomes, item by item; recorded only if `allowed`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub outcomes: Vec<Outcome>,
}

impl Group {
    /// Whether an enforced item refused.
    pub fn allowed(&self, verdict: &Verdict) -> bool {
        self.items
            .iter()
            .zip(&verdict.outcomes)
            .all(|(item, outcome)| item.monitor || outcome.denied.is_none())
    }

    /// The items that were recorded, for a refund.
    pub fn recorded(&self, verdict: &Verdict) -> Group {
        let items = self
            .items
            .iter()
            .zip(&verdict.outcomes)
            .filter(|(_, outcome)| outcome.denied.is_none())
            .map(|(item, _)| item.clone())
            .collect();
        Group {
            tag: self.tag,
            items,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RL-1: `count` at once, the next one interval later, and an honest wait.
    #[test]
    fn gcra_allows_the_burst_then_one_per_interval() {
        let gcra = Gcra::new(5, Duration::from_secs(15 * 60));
        let mut tat = None;
        for taken in 1..=5 {
            let (next, wait) = gcra.take(tat, 0, 1);
            assert_eq!(wait, None, "request {taken}");
            tat = Some(next);
            assert_eq!(gcra.remaining(next, 0), 5 - taken);
        }
        let (_, wait) = gcra.take(tat, 0, 1);
        assert_eq!(wait, Some(Duration::from_secs(180)));
        let (_, wait) = gcra.take(tat, 179_999, 1);
        assert!(wait.is_some());
        let (_, wait) = gcra.take(tat, 180_000, 1);
        assert_eq!(wait, None, "a retry after Retry-After passes");
    }
}
