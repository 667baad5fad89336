//! The outbox on Redis Streams: one stream per shard (`p:{T}:outbox`), read
//! by the consumer group `otpd` of every replica. Every stream is its own
//! slot, so each is read, taken over, measured and created with a command
//! of its own, all sent together (`run_all`): one pipeline on one server,
//! concurrent requests on Cluster, on whichever primary holds the slot now.
//! Reads do not block: a replica polls the shards, at once when it queued
//! a send itself (`queued`), else after the worker's wait. A read asks
//! `max` shards at a time for one send each, the next shards in turn, so it
//! never claims more than its caller can take. A worker keeps what it is still sending fresh with XCLAIM JUSTID; sends a
//! dead replica held are taken over with XAUTOCLAIM; `finish.lua` acks,
//! deletes and records in one step, keeps exhausted sends in `p:{T}:dead`
//! and watched ones in `p:{T}:watched`, which `reroute.lua` and
//! `receipt.lua` read (REL-4).

use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use redis::streams::{
    StreamClaimReply, StreamId, StreamPendingCountReply, StreamRangeReply, StreamReadReply,
};
use redis::{Cmd, FromRedisValue, RedisResult, Value};

use super::{millis, unavailable, RedisStore};
use crate::domain::{Timestamp, VerificationId};
use crate::store::{Claimed, Error, Finish, Outbox, QueuedSend, Reroute, SHARDS};

const GROUP: &str = "otpd";
/// How long an idle outbox stream (and its group) is kept.
const STREAM_TTL: Duration = Duration::from_secs(86_400);

impl RedisStore {
    fn shard_streams(&self) -> Vec<String> {
        (0..SHARDS)
            .map(|shard| self.outbox_key([0, shard]))
            .collect()
    }

    /// Creates the consumer group on every shard (from the start of the
    /// stream, so nothing queued before is missed). Idempotent: a group that
    /// exists answers BUSYGROUP, which is fine.
    async fn create_groups(&self) -> Result<(), Error> {
        let mut commands = Vec::new();
        for stream in self.shard_streams() {
            let mut create = redis::cmd("XGROUP");
            create
                .arg("CREATE")
                .arg(&stream)
                .arg(GROUP)
                .arg("0")
                .arg("MKSTREAM");
            let mut expire = redis::cmd("PEXPIRE");
            expire.arg(&stream).arg(millis(STREAM_TTL));
            commands.extend([create, expire]);
        }
        let results = self.run_all("create_groups", &commands).await?;
        match results
            .into_iter()
            .find_map(|result| result.err().filter(|e| e.code() != Some("BUSYGROUP")))
        {
            Some(error) => Err(unavailable(error)),
            None => Ok(()),
        }
    }

    pub(super) async fn read_new(
        &self,
        consumer: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Claimed>, Error> {
        // Registered before the read, so a send queued meanwhile wakes us.
        let queued = self.queued.notified();
        tokio::pin!(queued);
        queued.as_mut().enable();
        let found = self.read_shards(consumer, max).await?;
        if !found.is_empty() {
            return Ok(found);
        }
        let _ = tokio::time::timeout(wait, queued).await;
        self.read_shards(consumer, max).await
    }

    /// Notes a send this replica queued to `shard` and wakes its workers.
    pub(super) fn queued_locally(&self, shard: [u8; 2]) {
        if let Ok(mut shards) = self.queued_shards.lock() {
            shards.insert(shard[1]);
        }
        self.queued.notify_waiters();
    }

    /// New sends, at most one from each of `max` shards at a time: first
    /// the shards this replica queued to, then round the others until some
    /// are found or every shard was asked.
    async fn read_shards(&self, consumer: &str, max: usize) -> Result<Vec<Claimed>, Error> {
        let batch = max.clamp(1, usize::from(SHARDS));
        let local: Vec<u8> = match self.queued_shards.lock() {
            Ok(mut shards) => std::mem::take(&mut *shards)
                .into_iter()
                .take(batch)
                .collect(),
            Err(_) => Vec::new(),
        };
        if !local.is_empty() {
            let found = self.read_from(consumer, &local).await?;
            if !found.is_empty() {
                return Ok(found);
            }
        }
        for _ in 0..usize::from(SHARDS).div_ceil(batch) {
            let first = self.next_shard.fetch_add(batch, Ordering::Relaxed);
            let shards: Vec<u8> = (first..first + batch)
                .map(|shard| (shard % usize::from(SHARDS)) as u8)
                .collect();
            let found = self.read_from(consumer, &shards).await?;
            if !found.is_empty() {
                return Ok(found);
            }
        }
        Ok(Vec::new())
    }

    /// At most one new send from each of `shards`.
    async fn read_from(&self, consumer: &str, shards: &[u8]) -> Result<Vec<Claimed>, Error> {
        let commands: Vec<Cmd> = shards
            .iter()
            .map(|shard| {
                let mut read = redis::cmd("XREADGROUP");
                read.arg("GROUP")
                    .arg(GROUP)
                    .arg(consumer)
                    .arg("COUNT")
                    .arg(1)
                    .arg("STREAMS")
                    .arg(self.outbox_key([0, *shard]))
                    .arg(">");
                read
            })
            .collect();
        let replies: Vec<Option<StreamReadReply>> =
            self.each_shard("read_outbox", &commands).await?;
        Ok(replies
            .into_iter()
            .flatten()
            .flat_map(|reply| reply.keys)
            .flat_map(|key| key.ids)
            .filter_map(claimed)
            .collect())
    }

    /// Runs one command per shard; if a shard has no group yet (a new or
    /// flushed Redis), creates the groups and runs them once more.
    async fn each_shard<T: FromRedisValue>(
        &self,
        operation: &'static str,
        commands: &[Cmd],
    ) -> Result<Vec<T>, Error> {
        for attempt in 0..2 {
            let replies = self.run_all(operation, commands).await?;
            let replies: RedisResult<Vec<T>> = replies
                .into_iter()
                .map(|reply| {
                    reply.and_then(|value| redis::from_redis_value(value).map_err(Into::into))
                })
                .collect();
            match replies {
                Err(error) if attempt == 0 && error.code() == Some("NOGROUP") => {
                    self.create_groups().await?
                }
                outcome => return outcome.map_err(unavailable),
            }
        }
        Err(Error::Corrupt(
            "the outbox groups could not be created".into(),
        ))
    }

    /// Up to `max` sends in all, idle for `idle`, now `consumer`'s: one
    /// round trip finds the idle entries of every shard (`XPENDING IDLE`),
    /// another claims at most `max` of them (`XCLAIM` with the same idle
    /// time, so an entry kept meanwhile stays with its holder).
    pub(super) async fn take_over(
        &self,
        consumer: &str,
        idle: Duration,
        max: usize,
    ) -> Result<Vec<Claimed>, Error> {
        let streams = self.shard_streams();
        let finds: Vec<Cmd> = streams
            .iter()
            .map(|stream| {
                let mut pending = redis::cmd("XPENDING");
                pending
                    .arg(stream)
                    .arg(GROUP)
                    .arg("IDLE")
                    .arg(millis(idle))
                    .arg("-")
                    .arg("+")
                    .arg(max);
                pending
            })
            .collect();
        let found: Vec<StreamPendingCountReply> = self.each_shard("take_over", &finds).await?;
        let mut left = max;
        let mut claims = Vec::new();
        for (stream, pending) in streams.iter().zip(found) {
            let ids: Vec<String> = pending.ids.into_iter().take(left).map(|p| p.id).collect();
            if ids.is_empty() {
                continue;
            }
            left -= ids.len();
            let mut claim = redis::cmd("XCLAIM");
            claim
                .arg(stream)
                .arg(GROUP)
                .arg(consumer)
                .arg(millis(idle))
                .arg(&ids);
            claims.push(claim);
            if left == 0 {
                break;
            }
        }
        if claims.is_empty() {
            return Ok(Vec::new());
        }
        let replies: Vec<StreamClaimReply> = self.each_shard("take_over", &claims).await?;
        Ok(replies
            .into_iter()
            .flat_map(|reply| reply.ids)
            .filter_map(claimed)
            .collect())
    }

    /// Resets the idle time of a send `consumer` still holds (`keep.lua`);
    /// whether it does.
    pub(super) async fn keep_claimed(
        &self,
        consumer: &str,
        claimed: &Claimed,
    ) -> Result<bool, Error> {
        let mut invocation = self.scripts.keep.prepare_invoke();
        invocation
            .key(self.outbox_key(claimed.send.id.tag()))
            .arg(GROUP)
            .arg(consumer)
            .arg(&claimed.entry);
        let kept = self.invoke("keep_claimed", invocation).await?;
        Ok(matches!(kept, Value::Int(1)))
    }

    pub(super) async fn finish_send(
        &self,
        claimed: &Claimed,
        finish: &Finish,
        now: Timestamp,
    ) -> Result<(), Error> {
        let tag = claimed.send.id.tag();
        let (outcome, carrier, message_id, dead, watch) = match finish {
            Finish::Sent {
                carrier,
                message_id,
                watch,
            } => ("sent", carrier.as_str(), message_id.as_str(), false, *watch),
            Finish::Failed { dead, .. } => ("failed", "", "", *dead, None),
            Finish::Skipped => ("skipped", "", "", false, None),
        };
        let until = watch.map(|watch| watch.until.millis().to_string());
        let switch = match finish {
            Finish::Failed {
                switch: Some(switch),
                ..
            } => Some(switch),
            _ => None,
        };
        let then = watch
            .and_then(|watch| watch.then)
            .or(switch.map(|switch| switch.channel))
            .map_or("", |c| c.as_str());
        let tried_last = switch.map_or("", |switch| switch.from.as_str());
        let mut invocation = self.scripts.finish.prepare_invoke();
        invocation
            .key(self.outbox_key(tag))
            .key(self.verification_key(&claimed.send.id))
            .key(format!("{}:dead", self.slot(tag)))
            .key(self.watched_key(tag))
            .key(self.event_keys(tag))
            .arg(GROUP)
            .arg(&claimed.entry)
            .arg(claimed.send.number)
            .arg(outcome)
            .arg(carrier)
            .arg(message_id)
            .arg(if dead { "1" } else { "0" })
            .arg(now.millis())
            .arg(until.unwrap_or_default())
            .arg(then)
            .arg(tried_last);
        self.invoke("finish_send", invocation).await.map(drop)
    }

    /// One round trip finds up to `max` overdue watched sends on every
    /// shard; each is then queued again by `reroute.lua` (which checks it
    /// still should go).
    pub(super) async fn reroute_watched(&self, now: Timestamp, max: usize) -> Result<usize, Error> {
        let shards: Vec<[u8; 2]> = (0..SHARDS).map(|shard| [0, shard]).collect();
        let finds: Vec<Cmd> = shards
            .iter()
            .map(|tag| {
                let mut due = redis::cmd("ZRANGEBYSCORE");
                due.arg(self.watched_key(*tag))
                    .arg("-inf")
                    .arg(now.millis())
                    .arg("LIMIT")
                    .arg(0)
                    .arg(max);
                due
            })
            .collect();
        let mut found = Vec::new();
        for reply in self.run_all("watched", &finds).await? {
            let members: Vec<String> = reply
                .and_then(|value| redis::from_redis_value(value).map_err(Into::into))
                .map_err(unavailable)?;
            found.extend(members);
        }
        let mut rerouted = 0;
        for member in found.into_iter().take(max) {
            let Some((id, number)) = member.rsplit_once('.') else {
                continue;
            };
            let (Ok(id), Ok(number)) = (id.parse::<VerificationId>(), number.parse::<u32>()) else {
                continue;
            };
            let tag = id.tag();
            let mut invocation = self.scripts.reroute.prepare_invoke();
            invocation
                .key(self.verification_key(&id))
                .key(self.outbox_key(tag))
                .key(self.watched_key(tag))
                .key(self.event_keys(tag))
                .arg(number)
                .arg(now.millis());
            if matches!(self.invoke("reroute", invocation).await?, Value::Int(1)) {
                rerouted += 1;
            }
        }
        Ok(rerouted)
    }

    /// The first entry of every stream (entries leave a stream only when
    /// finished), oldest by its queue time.
    pub(super) async fn oldest(&self) -> Result<Option<Timestamp>, Error> {
        let commands: Vec<Cmd> = self
            .shard_streams()
            .into_iter()
            .map(|stream| {
                let mut range = redis::cmd("XRANGE");
                range.arg(stream).arg("-").arg("+").arg("COUNT").arg(1);
                range
            })
            .collect();
        let firsts: Vec<StreamRangeReply> = self.each_shard("oldest", &commands).await?;
        Ok(firsts
            .into_iter()
            .flat_map(|reply| reply.ids)
            .filter_map(claimed)
            .map(|claimed| claimed.send.queued_at)
            .min())
    }

    pub(super) async fn depth(&self) -> Result<u64, Error> {
        let commands: Vec<Cmd> = self
            .shard_streams()
            .into_iter()
            .map(|stream| {
                let mut length = redis::cmd("XLEN");
                length.arg(stream);
                length
            })
            .collect();
        let lengths: Vec<u64> = self.each_shard("depth", &commands).await?;
        Ok(lengths.into_iter().sum())
    }
}

#[async_trait]
impl Outbox for RedisStore {
    async fn claim(
        &self,
        consumer: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Claimed>, Error> {
        self.read_new(consumer, max, wait).await
    }

    async fn reclaim(
        &self,
        consumer: &str,
        idle: Duration,
        max: usize,
    ) -> Result<Vec<Claimed>, Error> {
        self.take_over(consumer, idle, max).await
    }

    async fn keep(&self, consumer: &str, claimed: &Claimed) -> Result<bool, Error> {
        self.keep_claimed(consumer, claimed).await
    }

    async fn finish(
        &self,
        claimed: &Claimed,
        finish: &Finish,
        now: Timestamp,
    ) -> Result<(), Error> {
        self.finish_send(claimed, finish, now).await
    }

    async fn reroute_overdue(&self, now: Timestamp, max: usize) -> Result<usize, Error> {
        self.reroute_watched(now, max).await
    }

    async fn oldest(&self) -> Result<Option<Timestamp>, Error> {
        self.oldest().await
    }

    async fn depth(&self) -> Result<u64, Error> {
        self.depth().await
    }
}

/// The send in a stream entry; a malformed entry is skipped (and stays
/// pending, to be seen in XPENDING).
fn claimed(entry: StreamId) -> Option<Claimed> {
    let text = |field: &str| entry.get::<String>(field);
    let send = QueuedSend {
        id: text("v")?.parse().ok()?,
        service: text("sv")?.parse().ok()?,
        number: text("n")?.parse().ok()?,
        sealed_code: match entry.map.get("c")? {
            Value::BulkString(bytes) => bytes.clone(),
            _ => return None,
        },
        key_id: text("k")?,
        queued_at: Timestamp::from_millis(text("q")?.parse().ok()?),
        switched: text("rs").is_some_and(|switched| switched == "1"),
        reroute: match (text("rf"), text("rw")) {
            (Some(from), Some(reason)) => Some(Reroute {
                from,
                reason: reason.parse().ok()?,
            }),
            _ => None,
        },
    };
    Some(Claimed {
        entry: entry.id,
        send,
    })
}
