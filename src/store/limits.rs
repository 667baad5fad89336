//! The store behind the abuse limits: groups of items decided atomically
//! (the policies themselves are in `ratelimit`).

use async_trait::async_trait;

use super::Error;
use crate::domain::Timestamp;
use crate::ratelimit::{Group, Verdict};

/// Where limit state lives (GCRA arrival times, quota counts, blocks).
#[async_trait]
pub trait Limits: Send + Sync + 'static {
    /// Decides each group of limits atomically, recording a group only if
    /// it allows; groups are independent (see `Group`).
    async fn limit(&self, groups: &[Group], now: Timestamp) -> Result<Vec<Verdict>, Error>;

    /// Gives back what `limit` recorded for these (allowed) groups.
    async fn refund(&self, groups: &[Group], now: Timestamp) -> Result<(), Error>;

    /// Counts an approval in the groups' conversion items.
    async fn approve(&self, groups: &[Group], now: Timestamp) -> Result<(), Error>;

    /// Until when the group is blocked (its latest item block), if it is.
    async fn blocked(&self, group: &Group, now: Timestamp) -> Result<Option<Timestamp>, Error>;

    /// Lifts the group's blocks and forgets its counts (so that what was
    /// counted does not block again at once).
    async fn lift(&self, group: &Group) -> Result<(), Error>;

    /// The safe list's entries (keyed hashes of numbers and ranges) that
    /// have not expired.
    async fn safe_list(&self, now: Timestamp) -> Result<Vec<[u8; 16]>, Error>;

    /// Lists `entry` until `until`, or takes it off (`None`).
    async fn set_safe(
        &self,
        entry: [u8; 16],
        until: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<(), Error>;
}
