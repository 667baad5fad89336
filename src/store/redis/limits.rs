//! `Limits` on Redis: one `limit.lua` call per group (one slot each, every
//! state and block key declared), all groups sent together.

use std::time::Duration;

use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use super::{millis, unavailable, RedisStore};
use crate::domain::Timestamp;
use crate::ratelimit::{Check, Group, Outcome, Verdict};
use crate::store::{Error, Limits};

#[async_trait]
impl Limits for RedisStore {
    async fn limit(&self, groups: &[Group], now: Timestamp) -> Result<Vec<Verdict>, Error> {
        let replies = self.run_limits(groups, now, "take").await?;
        groups
            .iter()
            .zip(replies)
            .map(|(group, reply)| verdict(group, reply))
            .collect()
    }

    async fn refund(&self, groups: &[Group], now: Timestamp) -> Result<(), Error> {
        self.run_limits(groups, now, "refund").await.map(drop)
    }

    async fn approve(&self, groups: &[Group], now: Timestamp) -> Result<(), Error> {
        self.run_limits(groups, now, "approve").await.map(drop)
    }

    async fn blocked(&self, group: &Group, now: Timestamp) -> Result<Option<Timestamp>, Error> {
        let mut latest = None;
        for item in &group.items {
            let (_, block) = self.item_keys(group.tag, &item.key);
            let until: Option<i64> = self
                .command("blocked", redis::cmd("GET").arg(block))
                .await?;
            let until = until
                .map(Timestamp::from_millis)
                .filter(|until| now < *until);
            latest = latest.max(until);
        }
        Ok(latest)
    }

    async fn safe_list(&self, now: Timestamp) -> Result<Vec<[u8; 16]>, Error> {
        let members: Vec<String> = self
            .command(
                "safe_list",
                redis::cmd("ZRANGEBYSCORE")
                    .arg(self.safe_key())
                    .arg(format!("({}", now.millis()))
                    .arg("+inf"),
            )
            .await?;
        Ok(members
            .iter()
            .filter_map(|member| URL_SAFE_NO_PAD.decode(member).ok())
            .filter_map(|bytes| bytes.try_into().ok())
            .collect())
    }

    async fn set_safe(
        &self,
        entry: [u8; 16],
        until: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<(), Error> {
        // A sorted set scored by expiry; the key lives as long as its
        // latest entry.
        let key = self.safe_key();
        let member = URL_SAFE_NO_PAD.encode(entry);
        let mut pipe = redis::pipe();
        pipe.cmd("ZREMRANGEBYSCORE")
            .arg(&key)
            .arg("-inf")
            .arg(now.millis())
            .ignore();
        match until {
            Some(until) => {
                pipe.cmd("ZADD")
                    .arg(&key)
                    .arg(until.millis())
                    .arg(&member)
                    .ignore();
                for option in ["NX", "GT"] {
                    pipe.cmd("PEXPIREAT")
                        .arg(&key)
                        .arg(until.millis())
                        .arg(option)
                        .ignore();
                }
            }
            None => {
                pipe.cmd("ZREM").arg(&key).arg(&member).ignore();
            }
        }
        self.pipeline("set_safe", &pipe).await
    }

    async fn lift(&self, group: &Group) -> Result<(), Error> {
        let mut command = redis::cmd("DEL");
        for item in &group.items {
            let (state, block) = self.item_keys(group.tag, &item.key);
            command.arg(state).arg(block);
        }
        self.command::<()>("lift", &command).await
    }
}

impl RedisStore {
    /// The safe list (one key, its own slot).
    fn safe_key(&self) -> String {
        format!("{}:{{safe}}", self.prefix)
    }

    /// An item's state and block keys, in the slot of its group's `tag`.
    fn item_keys(&self, tag: [u8; 2], key: &[u8; 16]) -> (String, String) {
        let prefix = self.slot(tag);
        let key = URL_SAFE_NO_PAD.encode(key);
        (format!("{prefix}:l:{key}"), format!("{prefix}:b:{key}"))
    }

    /// `EVALSHA limit.lua` for one group: every state and block key in KEYS.
    fn limit_command(&self, group: &Group, now: Timestamp, action: &str) -> redis::Cmd {
        let mut command = redis::cmd("EVALSHA");
        command
            .arg(self.scripts.limit.get_hash())
            .arg(2 * group.items.len());
        for item in &group.items {
            let (state, block) = self.item_keys(group.tag, &item.key);
            command.arg(state).arg(block);
        }
        command.arg(now.millis()).arg(action);
        for item in &group.items {
            let (kind, a, b, c) = match item.check {
                Check::Rate(gcra) => ("r", gcra.interval_ms as i64, gcra.burst as i64, 0),
                Check::Quota { cap, until } => ("q", cap as i64, until.millis(), 0),
                Check::Conversion(conversion) => (
                    "c",
                    conversion.min_sends as i64,
                    conversion.min_permille as i64,
                    conversion.window_ms,
                ),
            };
            let block = item.block.map_or(0, millis);
            command
                .arg(kind)
                .arg(item.cost)
                .arg(u8::from(item.monitor))
                .arg(block)
                .arg(a)
                .arg(b)
                .arg(c);
        }
        command
    }

    /// One EVALSHA per group, sent together: one round trip for all groups
    /// (each group is one slot, and atomic on its own). On NOSCRIPT (a
    /// restarted Redis, a new Cluster primary) the script is loaded and the
    /// groups sent again.
    async fn run_limits(
        &self,
        groups: &[Group],
        now: Timestamp,
        action: &str,
    ) -> Result<Vec<Vec<i64>>, Error> {
        let commands: Vec<redis::Cmd> = groups
            .iter()
            .filter(|group| !group.items.is_empty())
            .map(|group| self.limit_command(group, now, action))
            .collect();
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        let no_script = redis::ErrorKind::Server(redis::ServerErrorKind::NoScript);
        for attempt in 0..2 {
            let replies = self.run_all("limit", &commands).await?;
            let replies: redis::RedisResult<Vec<Vec<i64>>> = replies
                .into_iter()
                .map(|reply| {
                    reply.and_then(|value| redis::from_redis_value(value).map_err(Into::into))
                })
                .collect();
            match replies {
                Err(error) if attempt == 0 && error.kind() == no_script => {
                    let mut connection = self.connection.clone();
                    let invocation = self.scripts.limit.prepare_invoke();
                    let load = invocation.load_async(&mut connection);
                    self.timed("load_script", load).await?;
                }
                outcome => return outcome.map_err(unavailable),
            }
        }
        Err(Error::Corrupt(
            "the limit script could not be loaded".into(),
        ))
    }
}

/// `{allowed, denied ms, remaining, used before, …}` as a verdict.
fn verdict(group: &Group, reply: Vec<i64>) -> Result<Verdict, Error> {
    if reply.len() != 1 + 3 * group.items.len() {
        return Err(Error::Corrupt("limit reply of the wrong length".into()));
    }
    let outcomes = reply[1..]
        .chunks(3)
        .map(|values| Outcome {
            denied: (values[0] >= 0).then(|| Duration::from_millis(values[0] as u64)),
            remaining: values[1].max(0) as u64,
            used_before: values[2].max(0) as u64,
        })
        .collect();
    Ok(Verdict { outcomes })
}
