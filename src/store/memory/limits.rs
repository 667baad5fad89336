//! `Limits` in process: each group decided under the store's lock.

use async_trait::async_trait;

use super::MemoryStore;
use crate::domain::Timestamp;
use crate::ratelimit::{Check, Group, Verdict};
use crate::store::{Error, Limits};

#[async_trait]
impl Limits for MemoryStore {
    async fn limit(&self, groups: &[Group], now: Timestamp) -> Result<Vec<Verdict>, Error> {
        let mut state = self.lock();
        state.sweep(now);
        Ok(groups.iter().map(|group| state.take(group, now)).collect())
    }

    async fn refund(&self, groups: &[Group], now: Timestamp) -> Result<(), Error> {
        let mut state = self.lock();
        for group in groups {
            for item in &group.items {
                let slot = (group.tag, item.key);
                let back = match item.check {
                    Check::Rate(gcra) => (gcra.interval_ms * item.cost) as i64,
                    Check::Quota { .. } => item.cost as i64,
                    Check::Conversion(conversion) => {
                        let counts = state.conversions.entry(slot).or_default();
                        counts.send(conversion, now.millis(), -(item.cost as i64));
                        continue;
                    }
                };
                if let Some(entry) = state.limits.get_mut(&slot) {
                    entry.value -= back;
                }
            }
        }
        Ok(())
    }

    async fn approve(&self, groups: &[Group], now: Timestamp) -> Result<(), Error> {
        let mut state = self.lock();
        for group in groups {
            for item in &group.items {
                if let Check::Conversion(conversion) = item.check {
                    let counts = state.conversions.entry((group.tag, item.key)).or_default();
                    counts.approve(conversion, now.millis());
                }
            }
        }
        Ok(())
    }

    async fn blocked(&self, group: &Group, now: Timestamp) -> Result<Option<Timestamp>, Error> {
        let state = self.lock();
        Ok(group
            .items
            .iter()
            .filter_map(|item| state.blocks.get(&(group.tag, item.key)).copied())
            .filter(|until| now < *until)
            .max())
    }

    async fn safe_list(&self, now: Timestamp) -> Result<Vec<[u8; 16]>, Error> {
        let state = self.lock();
        Ok(state
            .safe
            .iter()
            .filter(|(_, until)| now < **until)
            .map(|(entry, _)| *entry)
            .collect())
    }

    async fn set_safe(
        &self,
        entry: [u8; 16],
        until: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<(), Error> {
        let mut state = self.lock();
        state.safe.retain(|_, listed| now < *listed);
        match until {
            Some(until) => state.safe.insert(entry, until),
            None => state.safe.remove(&entry),
        };
        Ok(())
    }

    async fn lift(&self, group: &Group) -> Result<(), Error> {
        let mut state = self.lock();
        for item in &group.items {
            let key = (group.tag, item.key);
            state.blocks.remove(&key);
            state.limits.remove(&key);
            state.conversions.remove(&key);
        }
        Ok(())
    }
}
