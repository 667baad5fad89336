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
//! `p:{T}:outbox` and `p:{T}:dead` the shard's outbox and dead letters,
//! `p:{T}:watched` its sends watched for a receipt (`<id>.<send>` by the
//! end of the watch),
//! `p:{T}:e:<service>` the service's lifecycle events queue (a stream),
//! `p:{T}:x:<service>` its verifications by expiry (for `expired`),
//! `p:{T}:el:<service>` the replica holding the queue, `p:{T}:et:<service>`
//! its events' failed tries, `p:{T}:ed` the shard's dead-lettered events,
//! `p:{m:<carrier>:<message id>}` the send a carrier's message id belongs
//! to (`<id>.<send>.<until>`), for receipts that name only that id (its own slot).

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use redis::{Script, ScriptInvocation, Value};
use tracing::Instrument;

mod connection;
mod events;
mod idempotency;
mod limits;
mod outbox;
mod record;
mod settings;
mod verifications;

use self::connection::Connection;
pub use self::settings::{ClusterSettings, RedisSettings, SentinelSettings, Topology};

use super::{Error, IdempotencyKey, NumberKey};
use crate::domain::{ServiceName, VerificationId, TAG_LEN};
use crate::metrics::Metrics;

pub struct RedisStore {
    connection: Connection,
    /// Checks and their `WAIT`, when approvals must reach replicas: a
    /// connection of their own, since `WAIT` holds the connection it is
    /// sent on until the replicas answer.
    durable: Option<(Connection, u32)>,
    /// Wakes this replica's workers when it queues a send (other
    /// replicas find it at their next poll) …
    queued: tokio::sync::Notify,
    /// … and the shards it queued to, read first.
    queued_shards: std::sync::Mutex<std::collections::BTreeSet<u8>>,
    /// The shard the next outbox read starts at (reads go round them).
    next_shard: std::sync::atomic::AtomicUsize,
    topology: Topology,
    prefix: String,
    /// The services with lifecycle events: scripts that change a
    /// verification declare their queues.
    event_services: Vec<ServiceName>,
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
    reroute: Script,
    keep: Script,
    blocked: Script,
    poll_events: Script,
    expire: Script,
    events_delivered: Script,
    event_failed: Script,
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
            reroute: script(include_str!("../lua/reroute.lua")),
            keep: script(include_str!("../lua/keep.lua")),
            blocked: script(include_str!("../lua/blocked.lua")),
            poll_events: script(include_str!("../lua/poll_events.lua")),
            expire: script(include_str!("../lua/expire.lua")),
            events_delivered: script(include_str!("../lua/events_delivered.lua")),
            event_failed: script(include_str!("../lua/event_failed.lua")),
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
            queued_shards: std::sync::Mutex::new(std::collections::BTreeSet::new()),
            next_shard: std::sync::atomic::AtomicUsize::new(0),
            topology: settings.topology(),
            prefix: settings.key_prefix.clone(),
            event_services: Vec::new(),
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

    /// The same store, queueing lifecycle events for `services`.
    pub fn with_events(mut self, services: impl IntoIterator<Item = ServiceName>) -> Self {
        self.event_services = services.into_iter().collect();
        self
    }

    /// The events queues and expiry schedules of the slot `tag`, for a
    /// script that changes a verification to declare (`lua/common.lua`).
    fn event_keys(&self, tag: [u8; TAG_LEN]) -> Vec<String> {
        self.event_services
            .iter()
            .flat_map(|service| {
                [
                    self.events_key(tag, "e", service),
                    self.events_key(tag, "x", service),
                ]
            })
            .collect()
    }

    /// The events key `kind` (`e` queue, `x` expiry schedule, `el` lease,
    /// `et` tries) of `service` in the slot `tag`.
    fn events_key(&self, tag: [u8; TAG_LEN], kind: &str, service: &ServiceName) -> String {
        format!("{}:{kind}:{service}", self.slot(tag))
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

    /// The shard's sends watched for their receipt (REL-4).
    fn watched_key(&self, tag: [u8; TAG_LEN]) -> String {
        format!("{}:watched", self.slot(tag))
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

    /// The number's consecutive wrong codes (`lua/check.lua`), in the
    /// slot `tag` of its verifications.
    fn failures_key(&self, tag: [u8; TAG_LEN], number: &NumberKey) -> String {
        format!("{}:f:{}", self.slot(tag), URL_SAFE_NO_PAD.encode(number.0))
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
        self.measured(operation, call, |_| false).await
    }

    /// `call` within the timeout, any failure "unavailable", measured under
    /// `operation`: a failure if it failed or `failed` says so of its answer.
    async fn measured<T>(
        &self,
        operation: &'static str,
        call: impl std::future::Future<Output = redis::RedisResult<T>>,
        failed: impl Fn(&T) -> bool,
    ) -> Result<T, Error> {
        let started = std::time::Instant::now();
        let span = tracing::debug_span!("redis", operation);
        let result = tokio::time::timeout(self.timeout, call)
            .instrument(span)
            .await
            .map_err(unavailable)
            .and_then(|reply| reply.map_err(unavailable));
        let failed = result.as_ref().map_or(true, failed);
        self.metrics
            .redis(operation, started.elapsed().as_secs_f64(), failed);
        result
    }

    /// Sends `commands` (each of one slot) together, measured as one call
    /// of `operation`, which fails if any command failed.
    async fn run_all(
        &self,
        operation: &'static str,
        commands: &[redis::Cmd],
    ) -> Result<Vec<redis::RedisResult<Value>>, Error> {
        let call = self.connection.run_all(commands);
        self.measured(
            operation,
            call,
            |replies: &Vec<redis::RedisResult<Value>>| replies.iter().any(Result::is_err),
        )
        .await
    }
}

fn unavailable(error: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::Unavailable(Box::new(error))
}

fn millis(duration: Duration) -> u64 {
    duration.as_millis() as u64
}
