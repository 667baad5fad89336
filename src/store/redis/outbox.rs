//! The outbox on Redis Streams: one stream per shard (`p:{T}:outbox`), read
//! by the consumer group `otpd` of every replica. New sends come from one
//! blocking XREADGROUP over all shards (a connection of its own); a worker
//! keeps what it is still sending fresh with XCLAIM JUSTID; sends a dead
//! replica held are taken over with XAUTOCLAIM; `finish.lua` acks,
//! deletes and records in one step, and keeps exhausted sends in
//! `p:{T}:dead`.

use std::time::Duration;

use redis::streams::{StreamAutoClaimReply, StreamId, StreamRangeReply, StreamReadReply};
use redis::Value;

use super::{millis, unavailable, RedisStore};
use crate::domain::Timestamp;
use crate::store::{Claimed, Error, Finish, QueuedSend, SHARDS};

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
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for stream in self.shard_streams() {
            pipe.cmd("XGROUP")
                .arg("CREATE")
                .arg(&stream)
                .arg(GROUP)
                .arg("0")
                .arg("MKSTREAM");
            pipe.cmd("PEXPIRE").arg(&stream).arg(millis(STREAM_TTL));
        }
        let mut connection = self.connection.clone();
        let call = pipe.query_async::<Vec<redis::RedisResult<Value>>>(&mut connection);
        let results = self.timed("create_groups", call).await?;
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
        for attempt in 0..2 {
            match self.xreadgroup(consumer, max, wait).await {
                Err(error) if attempt == 0 && error.code() == Some("NOGROUP") => {
                    self.create_groups().await?
                }
                Err(error) => return Err(unavailable(error)),
                Ok(reply) => {
                    let entries = reply
                        .into_iter()
                        .flat_map(|reply| reply.keys)
                        .flat_map(|key| key.ids);
                    return Ok(entries.filter_map(claimed).collect());
                }
            }
        }
        Err(Error::Corrupt(
            "the outbox groups could not be created".into(),
        ))
    }

    async fn xreadgroup(
        &self,
        consumer: &str,
        max: usize,
        wait: Duration,
    ) -> redis::RedisResult<Option<StreamReadReply>> {
        let mut reader = self.reader.lock().await;
        if reader.is_none() {
            let config = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(self.timeout))
                .set_response_timeout(Some(wait + self.timeout));
            *reader = Some(
                self.client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?,
            );
        }
        let streams = self.shard_streams();
        let mut command = redis::cmd("XREADGROUP");
        command
            .arg("GROUP")
            .arg(GROUP)
            .arg(consumer)
            .arg("COUNT")
            .arg(max)
            .arg("BLOCK")
            .arg(millis(wait));
        command
            .arg("STREAMS")
            .arg(&streams)
            .arg(vec![">"; streams.len()]);
        let connection = reader.as_mut().expect("connected above");
        let reply = command
            .query_async::<Option<StreamReadReply>>(connection)
            .await;
        if reply
            .as_ref()
            .is_err_and(|error| error.is_io_error() || error.is_timeout())
        {
            *reader = None;
        }
        reply
    }

    pub(super) async fn take_over(
        &self,
        consumer: &str,
        idle: Duration,
        max: usize,
    ) -> Result<Vec<Claimed>, Error> {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for stream in self.shard_streams() {
            pipe.cmd("XAUTOCLAIM")
                .arg(stream)
                .arg(GROUP)
                .arg(consumer)
                .arg(millis(idle))
                .arg("0-0")
                .arg("COUNT")
                .arg(max);
        }
        for attempt in 0..2 {
            let mut connection = self.connection.clone();
            let call =
                pipe.query_async::<Vec<redis::RedisResult<StreamAutoClaimReply>>>(&mut connection);
            let replies = self.timed("take_over", call).await?;
            let replies: redis::RedisResult<Vec<StreamAutoClaimReply>> =
                replies.into_iter().collect();
            match replies {
                Err(error) if attempt == 0 && error.code() == Some("NOGROUP") => {
                    self.create_groups().await?
                }
                Err(error) => return Err(unavailable(error)),
                Ok(replies) => {
                    return Ok(replies
                        .into_iter()
                        .flat_map(|reply| reply.claimed)
                        .filter_map(claimed)
                        .collect())
                }
            }
        }
        Err(Error::Corrupt(
            "the outbox groups could not be created".into(),
        ))
    }

    /// XCLAIM … JUSTID by the same consumer: resets the entry's idle time
    /// (an entry already finished is not brought back).
    pub(super) async fn keep_claimed(
        &self,
        consumer: &str,
        claimed: &Claimed,
    ) -> Result<(), Error> {
        let mut command = redis::cmd("XCLAIM");
        command
            .arg(self.outbox_key(claimed.send.id.tag()))
            .arg(GROUP)
            .arg(consumer)
            .arg(0)
            .arg(&claimed.entry)
            .arg("JUSTID");
        self.command::<Value>("keep_claimed", &command)
            .await
            .map(drop)
    }

    pub(super) async fn finish_send(
        &self,
        claimed: &Claimed,
        finish: &Finish,
        now: Timestamp,
    ) -> Result<(), Error> {
        let tag = claimed.send.id.tag();
        let (outcome, carrier, message_id, dead) = match finish {
            Finish::Sent {
                carrier,
                message_id,
            } => ("sent", carrier.as_str(), message_id.as_str(), false),
            Finish::Failed { dead } => ("failed", "", "", *dead),
            Finish::Skipped => ("skipped", "", "", false),
        };
        let mut invocation = self.scripts.finish.prepare_invoke();
        invocation
            .key(self.outbox_key(tag))
            .key(self.verification_key(&claimed.send.id))
            .key(format!("{}:dead", self.slot(tag)))
            .arg(GROUP)
            .arg(&claimed.entry)
            .arg(claimed.send.number)
            .arg(outcome)
            .arg(carrier)
            .arg(message_id)
            .arg(if dead { "1" } else { "0" })
            .arg(now.millis());
        self.invoke("finish_send", invocation).await.map(drop)
    }

    /// The first entry of every stream (entries leave a stream only when
    /// finished), oldest by its queue time.
    pub(super) async fn oldest(&self) -> Result<Option<Timestamp>, Error> {
        let mut pipe = redis::pipe();
        for stream in self.shard_streams() {
            pipe.cmd("XRANGE")
                .arg(stream)
                .arg("-")
                .arg("+")
                .arg("COUNT")
                .arg(1);
        }
        let firsts: Vec<StreamRangeReply> = self.pipeline("oldest", &pipe).await?;
        Ok(firsts
            .into_iter()
            .flat_map(|reply| reply.ids)
            .filter_map(claimed)
            .map(|claimed| claimed.send.queued_at)
            .min())
    }

    pub(super) async fn depth(&self) -> Result<u64, Error> {
        let mut pipe = redis::pipe();
        for stream in self.shard_streams() {
            pipe.cmd("XLEN").arg(stream);
        }
        let lengths: Vec<u64> = self.pipeline("depth", &pipe).await?;
        Ok(lengths.into_iter().sum())
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
    };
    Some(Claimed {
        entry: entry.id,
        send,
    })
}
