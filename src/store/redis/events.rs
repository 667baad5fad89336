//! Lifecycle events on Redis: a stream per shard and service
//! (`p:{T}:e:<service>`) written by the scripts that change verifications
//! (`emit` in `lua/common.lua`), the expiry schedule beside it
//! (`p:{T}:x:<service>`), and the lease, tries and dead letters read and
//! written here, each step one script on the queue's slot.

use async_trait::async_trait;
use redis::streams::{StreamId, StreamRangeReply};
use redis::{FromRedisValue, Value};

use super::{unavailable, RedisStore};
use crate::domain::{Channel, Timestamp, VerificationId};
use crate::store::events::{Event, Events, Lease, Polled, Queued, Tried};
use crate::store::Error;

impl RedisStore {
    fn lease_keys(&self, lease: &Lease) -> [String; 3] {
        [
            self.events_key(lease.shard, "el", &lease.service),
            self.events_key(lease.shard, "e", &lease.service),
            self.events_key(lease.shard, "et", &lease.service),
        ]
    }
}

fn field(entry: &StreamId, name: &str) -> Result<String, Error> {
    entry
        .get::<String>(name)
        .ok_or_else(|| Error::Corrupt(format!("event field {name} missing")))
}

fn parsed<T: std::str::FromStr>(entry: &StreamId, name: &str) -> Result<T, Error> {
    field(entry, name)?
        .parse()
        .map_err(|_| Error::Corrupt(format!("event field {name} unreadable")))
}

/// An event from its stream entry (fields as `emit` writes them).
fn decode(entry: &StreamId) -> Result<Queued, Error> {
    let nonempty = |name: &str| field(entry, name).ok().filter(|value| !value.is_empty());
    let verification = nonempty("v")
        .map(|id| {
            id.parse::<VerificationId>()
                .map_err(|_| Error::Corrupt("event field v unreadable".into()))
        })
        .transpose()?;
    Ok(Queued {
        entry: entry.id.clone(),
        event: Event {
            id: field(entry, "i")?,
            kind: parsed(entry, "t")?,
            verification,
            service: parsed(entry, "sv")?,
            masked_to: field(entry, "mt")?,
            channel: parsed::<Channel>(entry, "ch")?,
            carrier: nonempty("dc"),
            country: field(entry, "co")?,
            at: Timestamp::from_millis(parsed(entry, "at")?),
            reason: nonempty("x"),
        },
    })
}

/// An event as `emit` writes it, for `blocked.lua`.
fn encode(event: &Event) -> Vec<(&'static str, String)> {
    vec![
        ("i", event.id.clone()),
        ("t", event.kind.as_str().into()),
        (
            "v",
            event
                .verification
                .map(|id| id.to_string())
                .unwrap_or_default(),
        ),
        ("sv", event.service.to_string()),
        ("mt", event.masked_to.clone()),
        ("ch", event.channel.as_str().into()),
        ("dc", event.carrier.clone().unwrap_or_default()),
        ("co", event.country.clone()),
        ("at", event.at.millis().to_string()),
        ("x", event.reason.clone().unwrap_or_default()),
    ]
}

#[async_trait]
impl Events for RedisStore {
    async fn blocked(&self, shard: [u8; 2], event: &Event) -> Result<(), Error> {
        if !self.event_services.contains(&event.service) {
            return Ok(());
        }
        let mut invocation = self.scripts.blocked.prepare_invoke();
        invocation.key(self.events_key(shard, "e", &event.service));
        for (name, value) in encode(event) {
            invocation.arg(name).arg(value);
        }
        self.invoke("event_blocked", invocation).await?;
        Ok(())
    }

    async fn poll(
        &self,
        lease: &Lease,
        max: usize,
        now: Timestamp,
    ) -> Result<Option<Polled>, Error> {
        let [held, queue, _] = self.lease_keys(lease);
        let mut invocation = self.scripts.poll_events.prepare_invoke();
        invocation
            .key(held)
            .key(queue)
            .key(self.events_key(lease.shard, "x", &lease.service))
            .arg(&lease.holder)
            .arg(super::millis(lease.ttl))
            .arg(max)
            .arg(now.millis());
        let reply = self.invoke("events_poll", invocation).await?;
        let Value::Array(mut parts) = reply else {
            return Err(Error::Corrupt("unexpected events poll reply".into()));
        };
        if parts.len() < 3 {
            return Ok(None);
        }
        let due: Vec<String> =
            FromRedisValue::from_redis_value(parts.pop().expect("three")).map_err(unavailable)?;
        let range: StreamRangeReply =
            FromRedisValue::from_redis_value(parts.pop().expect("three")).map_err(unavailable)?;
        let events = range.ids.iter().map(decode).collect::<Result<_, _>>()?;
        let expiring = due.iter().filter_map(|id| id.parse().ok()).collect();
        Ok(Some(Polled { events, expiring }))
    }

    async fn expire(
        &self,
        lease: &Lease,
        due: &[VerificationId],
        now: Timestamp,
    ) -> Result<usize, Error> {
        let [held, queue, _] = self.lease_keys(lease);
        let mut invocation = self.scripts.expire.prepare_invoke();
        invocation
            .key(held)
            .key(self.events_key(lease.shard, "x", &lease.service));
        for id in due.iter().filter(|id| id.tag() == lease.shard) {
            invocation.key(self.verification_key(id));
        }
        invocation.key(queue).arg(&lease.holder).arg(now.millis());
        let expired: i64 =
            FromRedisValue::from_redis_value(self.invoke("events_expire", invocation).await?)
                .map_err(unavailable)?;
        Ok(expired.max(0) as usize)
    }

    async fn delivered(&self, lease: &Lease, entries: &[String]) -> Result<bool, Error> {
        if entries.is_empty() {
            return Ok(true);
        }
        let [held, queue, tries] = self.lease_keys(lease);
        let mut invocation = self.scripts.events_delivered.prepare_invoke();
        invocation
            .key(held)
            .key(queue)
            .key(tries)
            .arg(&lease.holder)
            .arg(entries);
        let removed: i64 =
            FromRedisValue::from_redis_value(self.invoke("events_delivered", invocation).await?)
                .map_err(unavailable)?;
        Ok(removed == 1)
    }

    async fn failed(
        &self,
        lease: &Lease,
        entry: &str,
        max_tries: u32,
        now: Timestamp,
    ) -> Result<Tried, Error> {
        let [held, queue, tries] = self.lease_keys(lease);
        let mut invocation = self.scripts.event_failed.prepare_invoke();
        invocation
            .key(held)
            .key(queue)
            .key(tries)
            .key(format!("{}:ed", self.slot(lease.shard)))
            .arg(&lease.holder)
            .arg(entry)
            .arg(max_tries)
            .arg(now.millis());
        let tried: i64 =
            FromRedisValue::from_redis_value(self.invoke("event_failed", invocation).await?)
                .map_err(unavailable)?;
        Ok(match tried {
            -1 => Tried::NotHeld,
            0 => Tried::DeadLettered,
            tries => Tried::Again(tries as u32),
        })
    }
}
