//! Instants as milliseconds since the Unix epoch: what the stores compare
//! and what Redis scripts receive, printed as RFC 3339 UTC.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    pub fn from_millis(millis: i64) -> Self {
        Timestamp(millis)
    }

    pub fn from_system(time: SystemTime) -> Self {
        let millis = time
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        Timestamp(millis)
    }

    pub fn millis(self) -> i64 {
        self.0
    }

    pub fn plus(self, duration: Duration) -> Self {
        Timestamp(self.0.saturating_add(duration.as_millis() as i64))
    }

    /// How long from `self` until `later`; zero if `later` has passed.
    pub fn until(self, later: Timestamp) -> Duration {
        Duration::from_millis(later.0.saturating_sub(self.0).max(0) as u64)
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC with whole seconds, e.g. `2026-11-21T21:30:00Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let time = UNIX_EPOCH + Duration::from_millis(self.0.max(0) as u64);
        write!(f, "{}", humantime::format_rfc3339_seconds(time))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_rfc3339_utc() {
        assert_eq!(
            Timestamp::from_millis(1_795_296_600_999).to_string(),
            "2026-11-21T21:30:00Z"
        );
    }

    #[test]
    fn until_never_goes_negative() {
        let now = Timestamp::from_millis(10_000);
        assert_eq!(
            now.until(Timestamp::from_millis(12_500)),
            Duration::from_millis(2_500)
        );
        assert_eq!(now.until(Timestamp::from_millis(5_000)), Duration::ZERO);
    }
}
