//! The safe list: numbers and ranges the relying party vouches for (its
//! own test devices, a corporate range), exempt from the rules that judge
//! a destination (range limit and conversion), never from the attempt
//! limits. Entries live in the store with an expiry; each replica reads
//! them at most every `REFRESH`, so a start costs no extra round trip.

use std::collections::HashSet;
use std::sync::RwLock;
use std::time::Duration;

use super::{Error, Otp, Service};
use crate::domain::{Phone, Timestamp};

/// How stale this replica's copy may be (changes made through this
/// replica apply at once).
const REFRESH: Duration = Duration::from_secs(5);

/// This replica's copy of the safe list.
#[derive(Default)]
pub struct SafeList {
    copy: RwLock<Copy>,
}

#[derive(Default)]
struct Copy {
    read_at: Option<Timestamp>,
    entries: HashSet<[u8; 16]>,
}

impl SafeList {
    fn forget(&self) {
        if let Ok(mut copy) = self.copy.write() {
            copy.read_at = None;
        }
    }
}

/// Whether `phone` itself and its range are listed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listed {
    pub number: bool,
    pub range: bool,
}

impl Otp {
    /// Whether the safe list covers `phone` (its number or its range).
    pub(super) async fn is_safe(&self, service: &Service, phone: &Phone) -> Result<bool, Error> {
        let now = self.clock.now();
        let stale = self.safe.copy.read().map_or(true, |copy| {
            copy.read_at
                .is_none_or(|at| now < at || now >= at.plus(REFRESH))
        });
        if stale {
            let entries = self.stores.limits.safe_list(now).await?;
            if let Ok(mut copy) = self.safe.copy.write() {
                *copy = Copy {
                    read_at: Some(now),
                    entries: entries.into_iter().collect(),
                };
            }
        }
        let entries = service
            .limits
            .safe_entries(&self.keyring, service.name.as_str(), phone);
        Ok(self
            .safe
            .copy
            .read()
            .is_ok_and(|copy| entries.iter().any(|entry| copy.entries.contains(entry))))
    }

    /// What the store lists for `phone`, read afresh.
    pub(super) async fn listed(&self, service: &Service, phone: &Phone) -> Result<Listed, Error> {
        let listed = self.stores.limits.safe_list(self.clock.now()).await?;
        let [number, range] =
            service
                .limits
                .safe_entries(&self.keyring, service.name.as_str(), phone);
        Ok(Listed {
            number: listed.contains(&number),
            range: listed.contains(&range),
        })
    }

    /// Lists `phone` (or its whole range) for `period`, or takes it off
    /// (`None`).
    pub(super) async fn set_safe(
        &self,
        service: &Service,
        phone: &Phone,
        range: bool,
        period: Option<Duration>,
    ) -> Result<(), Error> {
        let now = self.clock.now();
        let [number_entry, range_entry] =
            service
                .limits
                .safe_entries(&self.keyring, service.name.as_str(), phone);
        let entry = if range { range_entry } else { number_entry };
        let until = period.map(|period| now.plus(period));
        self.stores.limits.set_safe(entry, until, now).await?;
        self.safe.forget();
        Ok(())
    }
}
