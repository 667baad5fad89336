//! `Store` on Redis: one server, Sentinel or Cluster (`connection`). Each
//! method is one Lua script called by EVALSHA (`redis::Script` falls back to
//! loading it on NOSCRIPT, e.g. after a Redis restart, on every Cluster
//! primary). Keys of one verification share a `{tag}`, so each script
//! touches one slot and declares every key it touches in KEYS (slot
//! migration depends on it); every key has a TTL; no key or value holds a
//! raw number or code.
//!
//! Layout, with `p` the configured prefix and `T` the 4-hex-digit tag:
//! `p:{T}:v:<id>` the verification (a hash, see `lua/common.lua`),
//! `p:{T}:n:<number key>` the id of the number's latest verification,
//! `p:{T}:i:<idempotency key>` an idempotency record,
//! `p:{m:<carrier>:<message id>}` the send a carrier's message id belongs
//! to (`<id>.<send>.<until>`), for receipts that name only that id (its own slot).

use std::time::Duration;

use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use redis::{Script, ScriptInvocation, Value};

mod connection;
mod outbox;
mod settings;

use self::connection::Connection;
pub use self::settings::{ClusterSettings, RedisSettings, SentinelSettings, Topology};

use super::memory::RETENTION;
use super::{
    Candidate, Changed, Checked, Claimed, Delivery, Digest, Enqueue, Error, Finish, IdempotencyKey,
    NewVerification, NumberKey, Record, ResendPolicy, Resent, Reservation, Started, Store, SHARDS,
};
use crate::carrier::Receipt;
use crate::domain::{ServiceName, Status, Timestamp, VerificationId, TAG_LEN};
use crate::metrics::Metrics;
use crate::ratelimit::{Check, FailurePolicy, Group, Outcome, Verdict};
use crate::sms::AppHash;
use tracing::Instrument;

pub struct RedisStore {
    connection: Connection,
    /// Checks and their `WAIT`, when approvals must reach replicas: a
    /// connection of their own, since `WAIT` holds the connection it is
    /// sent on until the replicas answer.
    durable: Option<(Connection, u32)>,
    /// Wakes this replica's workers when it queues a send (other
    /// replicas find it at their next poll).
    queued: tokio::sync::Notify,
    /// The shard the next outbox read starts at (reads go round them).
    next_shard: std::sync::atomic::AtomicUsize,
    topology: Topology,
    prefix: String,
    timeout: Duration,
    /// Duration and errors of every operation.
    metrics: Metrics,
    scripts: Scripts,
}

struct Scripts {
    start: Script,
    check: Script,
    resend: Script,
    change: Script,
    reserve: Script,
    limit: Script,
    finish: Script,
    receipt: Script,
}

/// Prepended to every script by `declared_keys_only`: each `redis.call`
/// checks that its key is one of KEYS.
#[cfg(any(test, feature = "test-support"))]
const DECLARED_KEYS_ONLY: &str = r#"
local declared = {}
for _, key in ipairs(KEYS) do declared[key] = true end
local function declared_call(command, key, ...)
  if key ~= nil and not declared[key] then
    error(redis.error_reply('UNDECLARED ' .. command .. ' touched a key not in KEYS: ' .. key))
  end
  return redis.call(command, key, ...)
end
"#;

impl Scripts {
    /// The scripts, each after `common.lua`; with a `guard`, every
    /// `redis.call` goes through it.
    fn new(guard: &str) -> Self {
        let script = |body: &str| {
            let source = format!("{}{body}", include_str!("../lua/common.lua"));
            if guard.is_empty() {
                Script::new(&source)
            } else {
                let guarded = source.replace("redis.call(", "declared_call(");
                Script::new(&format!("{guard}{guarded}"))
            }
        };
        Scripts {
            start: script(include_str!("../lua/start.lua")),
            check: script(include_str!("../lua/check.lua")),
            resend: script(include_str!("../lua/resend.lua")),
            change: script(include_str!("../lua/change.lua")),
            reserve: script(include_str!("../lua/reserve.lua")),
            limit: script(include_str!("../lua/limit.lua")),
            finish: script(include_str!("../lua/finish.lua")),
            receipt: script(include_str!("../lua/receipt.lua")),
        }
    }
}

impl RedisStore {
    /// Connects lazily: otpd starts (and reports not ready) while Redis is
    /// down, and connects by itself when it comes back or fails over.
    pub fn connect(settings: &RedisSettings, metrics: Metrics) -> Result<Self, Error> {
        let connection = Connection::open(settings, settings.timeout).map_err(unavailable)?;
        let replicas = settings.replicas_ack();
        let durable = if replicas > 0 {
            // Its replies may wait for the replicas as well.
            let connection =
                Connection::open(settings, settings.timeout * 2).map_err(unavailable)?;
            Some((connection, replicas))
        } else {
            None
        };
        Ok(RedisStore {
            connection,
            durable,
            queued: tokio::sync::Notify::new(),
            next_shard: std::sync::atomic::AtomicUsize::new(0),
            topology: settings.topology(),
            prefix: settings.key_prefix.clone(),
            timeout: settings.timeout,
            metrics,
            scripts: Scripts::new(""),
        })
    }

    /// The same store, its scripts failing on any key they touch without
    /// declaring it in KEYS (what Cluster's slot migration needs). Tests
    /// run the store suite this way.
    #[cfg(any(test, feature = "test-support"))]
    pub fn declared_keys_only(mut self) -> Self {
        self.scripts = Scripts::new(DECLARED_KEYS_ONLY);
        self
    }

    fn slot(&self, tag: [u8; TAG_LEN]) -> String {
        format!("{}:{{{:02x}{:02x}}}", self.prefix, tag[0], tag[1])
    }

    fn message_key(&self, carrier: &str, message_id: &str) -> String {
        format!("{}:{{m:{carrier}:{message_id}}}", self.prefix)
    }

    fn outbox_key(&self, tag: [u8; TAG_LEN]) -> String {
        format!("{}:outbox", self.slot(tag))
    }

    fn verification_prefix(&self, tag: [u8; TAG_LEN]) -> String {
        format!("{}:v:", self.slot(tag))
    }

    fn verification_key(&self, id: &VerificationId) -> String {
        format!("{}{id}", self.verification_prefix(id.tag()))
    }

    fn number_key(&self, number: &NumberKey) -> String {
        format!(
            "{}:n:{}",
            self.slot(number.shard()),
            URL_SAFE_NO_PAD.encode(number.0)
        )
    }

    fn idempotency_key(&self, key: &IdempotencyKey) -> String {
        format!(
            "{}:i:{}",
            self.slot([key.0[0], key.0[1]]),
            URL_SAFE_NO_PAD.encode(key.0)
        )
    }

    /// Runs one script within the timeout; every failure is "unavailable",
    /// so a caller can only ever fail closed.
    async fn invoke(
        &self,
        operation: &'static str,
        invocation: ScriptInvocation<'_>,
    ) -> Result<Value, Error> {
        let mut connection = self.connection.clone();
        self.timed(operation, invocation.invoke_async::<Value>(&mut connection))
            .await
    }

    /// Runs a script whose writes must survive a failover: with
    /// `replicas_ack`, over the durable connection and then `WAIT`, and an
    /// answer only once that many replicas hold the writes. Past the
    /// timeout the write may be lost with the primary, so the caller gets
    /// "unavailable" (503), never an answer a failover could undo.
    async fn invoke_durably(
        &self,
        operation: &'static str,
        key: &str,
        invocation: ScriptInvocation<'_>,
    ) -> Result<Value, Error> {
        let Some((durable, replicas)) = &self.durable else {
            return self.invoke(operation, invocation).await;
        };
        let mut connection = durable.clone();
        let reply = self
            .timed(operation, invocation.invoke_async::<Value>(&mut connection))
            .await?;
        let acknowledged = async {
            let count = durable
                .wait_for_replicas(key, *replicas, self.timeout / 2)
                .await?;
            if count < *replicas {
                let detail = format!("{count} of {replicas} acknowledged in time");
                return Err(redis::RedisError::from((
                    redis::ErrorKind::Client,
                    "replicas did not acknowledge",
                    detail,
                )));
            }
            Ok(())
        };
        self.timed("replicas_ack", acknowledged).await?;
        Ok(reply)
    }

    async fn pipeline<T: redis::FromRedisValue>(
        &self,
        operation: &'static str,
        pipe: &redis::Pipeline,
    ) -> Result<T, Error> {
        let mut connection = self.connection.clone();
        self.timed(operation, pipe.query_async::<T>(&mut connection))
            .await
    }

    async fn command<T: redis::FromRedisValue>(
        &self,
        operation: &'static str,
        command: &redis::Cmd,
    ) -> Result<T, Error> {
        let mut connection = self.connection.clone();
        self.timed(operation, command.query_async::<T>(&mut connection))
            .await
    }

    /// One call within the timeout, any failure "unavailable", measured
    /// under `operation`.
    async fn timed<T>(
        &self,
        operation: &'static str,
        call: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, Error> {
        let started = std::time::Instant::now();
        let span = tracing::debug_span!("redis", operation);
        let result = tokio::time::timeout(self.timeout, call)
            .instrument(span)
            .await
            .map_err(unavailable)
            .and_then(|reply| reply.map_err(unavailable));
        self.metrics
            .redis(operation, started.elapsed().as_secs_f64(), result.is_err());
        result
    }

    /// Decodes `{outcome, field, value, …}` for the record `id`.
    fn outcome(id: &VerificationId, reply: Value) -> Result<(String, Option<Record>), Error> {
        let mut items = match reply {
            Value::Array(items) => items.into_iter(),
            other => return Err(Error::Corrupt(format!("unexpected reply {other:?}"))),
        };
        let outcome: String = items.next().map(text).transpose()?.unwrap_or_default();
        let fields: Vec<Value> = items.collect();
        let record = if fields.is_empty() {
            None
        } else {
            Some(decode(id, fields)?)
        };
        Ok((outcome, record))
    }
}

fn unavailable(error: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::Unavailable(Box::new(error))
}

fn bytes(value: Value) -> Result<Vec<u8>, Error> {
    match value {
        Value::BulkString(bytes) => Ok(bytes),
        Value::SimpleString(text) => Ok(text.into_bytes()),
        Value::Int(number) => Ok(number.to_string().into_bytes()),
        other => Err(Error::Corrupt(format!("expected a string, got {other:?}"))),
    }
}

fn text(value: Value) -> Result<String, Error> {
    String::from_utf8(bytes(value)?).map_err(|_| Error::Corrupt("text is not UTF-8".into()))
}

fn digest(bytes: Vec<u8>) -> Result<Digest, Error> {
    bytes
        .try_into()
        .map_err(|_| Error::Corrupt("a digest is not 32 bytes".into()))
}

fn parsed<T: std::str::FromStr>(field: &str, value: Option<Vec<u8>>) -> Result<T, Error> {
    let raw = value.ok_or_else(|| Error::Corrupt(format!("field {field} missing")))?;
    std::str::from_utf8(&raw)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| Error::Corrupt(format!("field {field} unreadable")))
}

/// The record from its hash fields (see `lua/common.lua` for the names).
fn decode(id: &VerificationId, fields: Vec<Value>) -> Result<Record, Error> {
    let mut map = std::collections::HashMap::new();
    let mut pairs = fields.into_iter();
    while let (Some(name), Some(value)) = (pairs.next(), pairs.next()) {
        map.insert(text(name)?, bytes(value)?);
    }
    let mut take = |name: &str| map.remove(name);
    let binding = take("b")
        .filter(|b| !b.is_empty())
        .map(digest)
        .transpose()?;
    Ok(Record {
        id: *id,
        service: parsed("sv", take("sv"))?,
        status: parsed::<Status>("s", take("s"))?,
        masked_to: parsed("mt", take("mt"))?,
        sealed_to: take("st").ok_or_else(|| Error::Corrupt("field st missing".into()))?,
        locale: parsed("lc", take("lc"))?,
        created_at: Timestamp::from_millis(parsed("c", take("c"))?),
        expires_at: Timestamp::from_millis(parsed("e", take("e"))?),
        resend_after: Timestamp::from_millis(parsed("r", take("r"))?),
        sends: parsed("n", take("n"))?,
        attempts_left: parsed("a", take("a"))?,
        key_id: parsed("k", take("k"))?,
        code_digest: digest(take("d").ok_or_else(|| Error::Corrupt("field d missing".into()))?)?,
        binding_digest: binding,
        number: take("nk")
            .and_then(|nk| URL_SAFE_NO_PAD.decode(nk).ok())
            .and_then(|nk| nk.try_into().ok())
            .map(NumberKey)
            .ok_or_else(|| Error::Corrupt("field nk unreadable".into()))?,
        country_code: parsed("cc", take("cc"))?,
        app_hash: take("ah").and_then(|hash| AppHash::parse(std::str::from_utf8(&hash).ok()?).ok()),
        delivery: Delivery {
            status: parsed("ds", take("ds"))?,
            carrier: take("dc")
                .filter(|c| !c.is_empty())
                .and_then(|c| String::from_utf8(c).ok()),
            message_id: take("dm")
                .filter(|m| !m.is_empty())
                .and_then(|m| String::from_utf8(m).ok()),
            sent_at: take("da")
                .and_then(|at| std::str::from_utf8(&at).ok()?.parse().ok())
                .map(Timestamp::from_millis),
        },
    })
}

/// The record as `HSET` field/value pairs.
fn encode(record: &Record) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("sv", record.service.as_str().into()),
        ("s", record.status.as_str().into()),
        ("mt", record.masked_to.clone().into_bytes()),
        ("st", record.sealed_to.clone()),
        ("lc", record.locale.as_str().into()),
        ("c", record.created_at.millis().to_string().into_bytes()),
        ("e", record.expires_at.millis().to_string().into_bytes()),
        ("r", record.resend_after.millis().to_string().into_bytes()),
        ("n", record.sends.to_string().into_bytes()),
        ("a", record.attempts_left.to_string().into_bytes()),
        ("k", record.key_id.clone().into_bytes()),
        ("d", record.code_digest.to_vec()),
        (
            "b",
            record
                .binding_digest
                .map(|b| b.to_vec())
                .unwrap_or_default(),
        ),
        ("nk", URL_SAFE_NO_PAD.encode(record.number.0).into_bytes()),
        ("cc", record.country_code.to_string().into_bytes()),
        (
            "ah",
            record
                .app_hash
                .as_ref()
                .map(|hash| hash.as_str().as_bytes().to_vec())
                .unwrap_or_default(),
        ),
        ("ds", record.delivery.status.as_str().into()),
        (
            "dc",
            record
                .delivery
                .carrier
                .clone()
                .unwrap_or_default()
                .into_bytes(),
        ),
        (
            "dm",
            record
                .delivery
                .message_id
                .clone()
                .unwrap_or_default()
                .into_bytes(),
        ),
        (
            "da",
            record
                .delivery
                .sent_at
                .map(|at| at.millis().to_string().into_bytes())
                .unwrap_or_default(),
        ),
    ]
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

/// Starts tried before giving up on a number whose index keeps moving
/// (each try loses only to another start of the same number).
const START_TRIES: usize = 5;

/// How long a readiness probe key lives.
const READY_PROBE_TTL: Duration = Duration::from_secs(60);

fn millis(duration: Duration) -> u64 {
    duration.as_millis() as u64
}

fn corrupt(outcome: &str) -> Error {
    Error::Corrupt(format!("unexpected script outcome {outcome:?}"))
}

#[async_trait]
impl Store for RedisStore {
    async fn start(&self, new: &NewVerification, now: Timestamp) -> Result<Started, Error> {
        // The script must name the verification the index points at, so it
        // reads the index first and tries again if a concurrent start moved it.
        for _ in 0..START_TRIES {
            let current = self.find(&new.record.number, now).await?;
            if let Some(started) = self.start_after(new, current, now).await? {
                self.queued.notify_waiters();
                return Ok(started);
            }
        }
        Err(Error::Corrupt(
            "the number's index kept moving during a start".into(),
        ))
    }

    async fn get(
        &self,
        service: &ServiceName,
        id: &VerificationId,
        now: Timestamp,
    ) -> Result<Option<Record>, Error> {
        let fields: Vec<Value> = self
            .command("get", redis::cmd("HGETALL").arg(self.verification_key(id)))
            .await?;
        if fields.is_empty() {
            return Ok(None);
        }
        let record = decode(id, fields)?;
        Ok(record.is_visible(service, now).then_some(record))
    }

    async fn find(
        &self,
        number: &NumberKey,
        _now: Timestamp,
    ) -> Result<Option<VerificationId>, Error> {
        let id: Option<String> = self
            .command(
                "pending_for",
                redis::cmd("GET").arg(self.number_key(number)),
            )
            .await?;
        Ok(id.and_then(|id| id.parse().ok()))
    }

    async fn check(
        &self,
        service: &ServiceName,
        id: &VerificationId,
        candidates: &[Candidate],
        failures: &FailurePolicy,
        now: Timestamp,
    ) -> Result<Checked, Error> {
        // The script must name the number's failure key, which the record
        // holds: read it first (it never changes for a verification).
        let key = self.verification_key(id);
        let number: Option<String> = self
            .command("check_number", redis::cmd("HGET").arg(&key).arg("nk"))
            .await?;
        let Some(number) = number else {
            return Ok(Checked::NotFound);
        };
        let mut invocation = self.scripts.check.prepare_invoke();
        invocation
            .key(&key)
            .key(format!("{}:f:{number}", self.slot(id.tag())))
            .arg(service.as_str())
            .arg(now.millis())
            .arg(&number)
            .arg(failures.max)
            .arg(failures.free)
            .arg(millis(failures.delay))
            .arg(millis(failures.max_delay))
            .arg(millis(failures.decay));
        for candidate in candidates {
            let binding = candidate.binding.map(|b| b.to_vec()).unwrap_or_default();
            invocation
                .arg(candidate.key_id.as_str())
                .arg(candidate.code.to_vec())
                .arg(binding);
        }
        let reply = self.invoke_durably("check", &key, invocation).await?;
        if let Value::Array(items) = &reply {
            if let [Value::BulkString(outcome), Value::Int(wait)] = items.as_slice() {
                if outcome == b"throttled" {
                    let retry_after = Duration::from_millis((*wait).max(0) as u64);
                    return Ok(Checked::Throttled { retry_after });
                }
            }
        }
        match Self::outcome(id, reply)? {
            (outcome, None) if outcome == "missing" => Ok(Checked::NotFound),
            (outcome, Some(record)) => match outcome.as_str() {
                "approved" => Ok(Checked::Approved(record)),
                "wrong" => Ok(Checked::Wrong(record)),
                "finished" => Ok(Checked::Finished(record)),
                other => Err(corrupt(other)),
            },
            (other, None) => Err(corrupt(&other)),
        }
    }

    async fn resend(
        &self,
        service: &ServiceName,
        id: &VerificationId,
        candidates: &[Candidate],
        policy: ResendPolicy,
        enqueue: &Enqueue,
        now: Timestamp,
    ) -> Result<Resent, Error> {
        let mut invocation = self.scripts.resend.prepare_invoke();
        invocation
            .key(self.verification_key(id))
            .key(self.outbox_key(id.tag()))
            .arg(service.as_str())
            .arg(now.millis())
            .arg(millis(policy.cooldown))
            .arg(policy.max_sends)
            .arg(millis(policy.ttl))
            .arg(millis(RETENTION))
            .arg(millis(policy.max_cooldown))
            .arg(enqueue.shard_cap)
            .arg(enqueue.sealed_code.as_slice())
            .arg(enqueue.key_id.as_str());
        for candidate in candidates {
            invocation
                .arg(candidate.key_id.as_str())
                .arg(candidate.code.to_vec());
        }
        match Self::outcome(id, self.invoke("resend", invocation).await?)? {
            (outcome, None) if outcome == "missing" => Ok(Resent::NotFound),
            (outcome, None) if outcome == "full" => Ok(Resent::Full),
            (outcome, Some(record)) => match outcome.as_str() {
                "resent" => {
                    self.queued.notify_waiters();
                    Ok(Resent::Resent(record))
                }
                "too_soon" => Ok(Resent::TooSoon(record)),
                "max_sends" => Ok(Resent::MaxSends(record)),
                "finished" => Ok(Resent::Finished(record)),
                other => Err(corrupt(other)),
            },
            (other, None) => Err(corrupt(&other)),
        }
    }

    async fn cancel(
        &self,
        service: &ServiceName,
        id: &VerificationId,
        now: Timestamp,
    ) -> Result<Changed, Error> {
        let mut invocation = self.scripts.change.prepare_invoke();
        invocation
            .key(self.verification_key(id))
            .arg(service.as_str())
            .arg(now.millis());
        match Self::outcome(id, self.invoke("cancel", invocation).await?)? {
            (outcome, None) if outcome == "missing" => Ok(Changed::NotFound),
            (outcome, Some(record)) if outcome == "changed" => Ok(Changed::Changed(record)),
            (outcome, Some(record)) if outcome == "finished" => Ok(Changed::Finished(record)),
            (other, _) => Err(corrupt(&other)),
        }
    }

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

    async fn keep(&self, consumer: &str, claimed: &Claimed) -> Result<(), Error> {
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

    async fn receipt(
        &self,
        carrier: &str,
        receipt: &Receipt,
        now: Timestamp,
    ) -> Result<Option<Timestamp>, Error> {
        let mut invocation = self.scripts.receipt.prepare_invoke();
        invocation
            .key(self.verification_key(&receipt.verification))
            .arg(receipt.send)
            .arg(carrier)
            .arg(&receipt.message_id)
            .arg(if receipt.delivered {
                "delivered"
            } else {
                "undelivered"
            })
            .arg(now.millis());
        let sent_at: i64 = redis::from_redis_value(self.invoke("receipt", invocation).await?)
            .map_err(|e| Error::Corrupt(e.to_string()))?;
        Ok((sent_at >= 0).then(|| Timestamp::from_millis(sent_at)))
    }

    async fn index_message(
        &self,
        carrier: &str,
        message_id: &str,
        send: (VerificationId, u32),
        ttl: Duration,
        now: Timestamp,
    ) -> Result<(), Error> {
        let until = now.plus(ttl).millis();
        let mut command = redis::cmd("SET");
        command
            .arg(self.message_key(carrier, message_id))
            .arg(format!("{}.{}.{until}", send.0, send.1))
            .arg("PX")
            .arg(millis(ttl));
        self.command::<()>("index_message", &command).await
    }

    async fn find_message(
        &self,
        carrier: &str,
        message_id: &str,
        now: Timestamp,
    ) -> Result<Option<(VerificationId, u32)>, Error> {
        let mut command = redis::cmd("GET");
        command.arg(self.message_key(carrier, message_id));
        let found: Option<String> = self.command("find_message", &command).await?;
        // `<id>.<send>.<until ms>`: expired by the caller's clock, like a record.
        Ok(found.and_then(|text| {
            let mut fields = text.splitn(3, '.');
            let (id, send, until) = (fields.next()?, fields.next()?, fields.next()?);
            let until: i64 = until.parse().ok()?;
            (now.millis() < until).then_some(())?;
            Some((id.parse().ok()?, send.parse().ok()?))
        }))
    }

    async fn outbox_oldest(&self) -> Result<Option<Timestamp>, Error> {
        self.oldest().await
    }

    async fn outbox_depth(&self) -> Result<u64, Error> {
        self.depth().await
    }

    async fn reserve(
        &self,
        key: &IdempotencyKey,
        fingerprint: &Digest,
        lock: Duration,
        now: Timestamp,
    ) -> Result<Reservation, Error> {
        let mut invocation = self.scripts.reserve.prepare_invoke();
        invocation
            .key(self.idempotency_key(key))
            .arg(fingerprint.to_vec())
            .arg(now.millis())
            .arg(millis(lock));
        let reply: Vec<Option<Vec<u8>>> =
            redis::from_redis_value(self.invoke("reserve", invocation).await?)
                .map_err(unavailable)?;
        let mut reply = reply.into_iter();
        match reply.next().flatten() {
            None => Ok(Reservation::Reserved),
            Some(fingerprint) => Ok(Reservation::Taken {
                fingerprint: digest(fingerprint)?,
                answer: reply.next().flatten(),
            }),
        }
    }

    async fn complete(
        &self,
        key: &IdempotencyKey,
        answer: &[u8],
        keep: Duration,
        _now: Timestamp,
    ) -> Result<(), Error> {
        let name = self.idempotency_key(key);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hset(&name, "a", answer)
            .ignore()
            .pexpire(&name, millis(keep) as i64)
            .ignore();
        self.pipeline("complete", &pipe).await
    }

    async fn release(&self, key: &IdempotencyKey) -> Result<(), Error> {
        self.command::<()>("release", redis::cmd("DEL").arg(self.idempotency_key(key)))
            .await
    }

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

    /// Ready only if otpd can write where it writes: a probe key in every
    /// shard's slot is written (so a replica, a primary cut off from its
    /// replicas by `min-replicas-to-write`, or a Cluster slot without a
    /// primary all fail it), and on Cluster the cluster says it is whole.
    async fn ping(&self) -> Result<(), Error> {
        let probes: Vec<redis::Cmd> = (0..SHARDS)
            .map(|shard| {
                let mut probe = redis::cmd("SET");
                probe
                    .arg(format!("{}:ready", self.slot([0, shard])))
                    .arg(1)
                    .arg("PX")
                    .arg(millis(READY_PROBE_TTL));
                probe
            })
            .collect();
        if let Some(error) = self
            .run_all("ready", &probes)
            .await?
            .into_iter()
            .find_map(Result::err)
        {
            return Err(unavailable(error));
        }
        if self.topology == Topology::Cluster {
            let info: String = self
                .command("ready", redis::cmd("CLUSTER").arg("INFO"))
                .await?;
            if !info.lines().any(|line| line.trim() == "cluster_state:ok") {
                return Err(Error::Unavailable("the cluster is not ok".into()));
            }
        }
        Ok(())
    }
}

impl RedisStore {
    /// `EVALSHA limit.lua` for one group: every state and block key in KEYS.
    fn limit_command(&self, group: &Group, now: Timestamp, action: &str) -> redis::Cmd {
        let prefix = self.slot(group.tag);
        let mut command = redis::cmd("EVALSHA");
        command
            .arg(self.scripts.limit.get_hash())
            .arg(2 * group.items.len());
        for item in &group.items {
            let key = URL_SAFE_NO_PAD.encode(item.key);
            command
                .arg(format!("{prefix}:l:{key}"))
                .arg(format!("{prefix}:b:{key}"));
        }
        command.arg(now.millis()).arg(action);
        for item in &group.items {
            let (kind, a, b) = match item.check {
                Check::Rate(gcra) => ("r", gcra.interval_ms as i64, gcra.burst as i64),
                Check::Quota { cap, until } => ("q", cap as i64, until.millis()),
            };
            let block = item.block.map_or(0, millis);
            command
                .arg(kind)
                .arg(item.cost)
                .arg(u8::from(item.monitor))
                .arg(block)
                .arg(a)
                .arg(b);
        }
        command
    }

    /// Sends `commands` (each of one slot) together, measured as one call
    /// of `operation`, which fails if any command failed.
    async fn run_all(
        &self,
        operation: &'static str,
        commands: &[redis::Cmd],
    ) -> Result<Vec<redis::RedisResult<Value>>, Error> {
        let started = std::time::Instant::now();
        let span = tracing::debug_span!("redis", operation);
        let result = tokio::time::timeout(self.timeout, self.connection.run_all(commands))
            .instrument(span)
            .await
            .map_err(unavailable)
            .and_then(|reply| reply.map_err(unavailable));
        let failed = result
            .as_ref()
            .map_or(true, |replies| replies.iter().any(Result::is_err));
        self.metrics
            .redis(operation, started.elapsed().as_secs_f64(), failed);
        result
    }

    /// One try of `start`, with `current` the id the index held when read:
    /// `None` if the index moved since.
    async fn start_after(
        &self,
        new: &NewVerification,
        current: Option<VerificationId>,
        now: Timestamp,
    ) -> Result<Option<Started>, Error> {
        let record = &new.record;
        let record_ttl = now.until(record.expires_at) + RETENTION;
        let mut invocation = self.scripts.start.prepare_invoke();
        invocation
            .key(self.number_key(&record.number))
            .key(self.verification_key(&record.id))
            .key(self.outbox_key(record.id.tag()));
        if let Some(current) = &current {
            invocation.key(self.verification_key(current));
        }
        invocation
            .arg(current.map(|id| id.to_string()).unwrap_or_default())
            .arg(now.millis())
            .arg(
                record
                    .binding_digest
                    .map(|b| b.to_vec())
                    .unwrap_or_default(),
            )
            .arg(record.id.to_string())
            .arg(millis(new.index_ttl))
            .arg(millis(record_ttl))
            .arg(new.enqueue.shard_cap)
            .arg(record.service.as_str())
            .arg(new.enqueue.sealed_code.as_slice())
            .arg(new.enqueue.key_id.as_str());
        for (field, value) in encode(record) {
            invocation.arg(field).arg(value);
        }
        let reply = self.invoke("start", invocation).await?;
        let (outcome, other): (String, String) =
            redis::from_redis_value(reply).map_err(unavailable)?;
        let other = (!other.is_empty())
            .then(|| {
                other
                    .parse::<VerificationId>()
                    .map_err(|_| Error::Corrupt("index holds a bad id".into()))
            })
            .transpose()?;
        match (outcome.as_str(), other) {
            ("created", replaced) => Ok(Some(Started::Created { replaced })),
            ("pending", Some(id)) => Ok(Some(Started::Pending(id))),
            ("full", None) => Ok(Some(Started::Full)),
            ("moved", None) => Ok(None),
            (other, _) => Err(corrupt(other)),
        }
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
