//! `Verifications` on Redis: one script per step (`lua/`), each on the
//! verification's slot; a start first reads the number's index and a check
//! the record's number key, so that their scripts can declare every key.

use std::time::Duration;

use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use redis::Value;

use super::record::{decode, encode, number_key, outcome};
use super::{millis, unavailable, RedisStore, Topology};
use crate::domain::{Receipt, ServiceName, Timestamp, VerificationId};
use crate::ratelimit::FailurePolicy;
use crate::store::memory::RETENTION;
use crate::store::{
    Candidate, Changed, Checked, Enqueue, Error, Failures, NewCode, NewVerification, NumberKey,
    Record, ResendPolicy, Resent, Started, Verifications, SHARDS,
};

/// Starts tried before giving up on a number whose index keeps moving
/// (each try loses only to another start of the same number).
const START_TRIES: usize = 5;

/// How long a readiness probe key lives.
const READY_PROBE_TTL: Duration = Duration::from_secs(60);

fn corrupt(outcome: &str) -> Error {
    Error::Corrupt(format!("unexpected script outcome {outcome:?}"))
}

#[async_trait]
impl Verifications for RedisStore {
    async fn start(&self, new: &NewVerification, now: Timestamp) -> Result<Started, Error> {
        // The script must name the verification the index points at, so it
        // reads the index first and tries again if a concurrent start moved it.
        for _ in 0..START_TRIES {
            let current = self.find(&new.record.number, now).await?;
            if let Some(started) = self.start_after(new, current, now).await? {
                if matches!(started, Started::Created { .. }) {
                    self.queued_locally(new.record.id.tag());
                }
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

    async fn number_of(&self, id: &VerificationId) -> Result<Option<NumberKey>, Error> {
        let number: Option<Vec<u8>> = self
            .command(
                "number_of",
                redis::cmd("HGET").arg(self.verification_key(id)).arg("nk"),
            )
            .await?;
        number.map(number_key).transpose()
    }

    async fn check(
        &self,
        service: &ServiceName,
        id: &VerificationId,
        number: &NumberKey,
        candidates: &[Candidate],
        failures: &FailurePolicy,
        now: Timestamp,
    ) -> Result<Checked, Error> {
        // The script names the number's failure counter in KEYS, from the
        // number key the caller read (`number_of`); it checks that it is
        // the record's.
        let key = self.verification_key(id);
        // In the verification's slot even if `number` is not its number
        // (the script then finds it is not).
        let failures_key = self.failures_key(id.tag(), number);
        let number = URL_SAFE_NO_PAD.encode(number.0);
        let mut invocation = self.scripts.check.prepare_invoke();
        invocation
            .key(&key)
            .key(failures_key)
            .key(self.event_keys(id.tag()))
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
        match outcome(id, reply)? {
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
        code: NewCode<'_>,
        policy: ResendPolicy,
        now: Timestamp,
    ) -> Result<Resent, Error> {
        let NewCode {
            channel,
            candidates,
            enqueue,
        } = code;
        let mut invocation = self.scripts.resend.prepare_invoke();
        invocation
            .key(self.verification_key(id))
            .key(self.outbox_key(id.tag()))
            .key(self.event_keys(id.tag()))
            .arg(service.as_str())
            .arg(now.millis())
            .arg(millis(policy.cooldown))
            .arg(policy.max_sends)
            .arg(millis(policy.ttl))
            .arg(millis(RETENTION))
            .arg(millis(policy.max_cooldown));
        enqueue_args(&mut invocation, enqueue);
        invocation.arg(channel.as_str());
        for candidate in candidates {
            invocation
                .arg(candidate.key_id.as_str())
                .arg(candidate.code.to_vec());
        }
        match outcome(id, self.invoke("resend", invocation).await?)? {
            (outcome, None) if outcome == "missing" => Ok(Resent::NotFound),
            (outcome, None) if outcome == "full" => Ok(Resent::Full),
            (outcome, Some(record)) => match outcome.as_str() {
                "resent" => {
                    self.queued_locally(id.tag());
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
            .key(self.event_keys(id.tag()))
            .arg(service.as_str())
            .arg(now.millis());
        match outcome(id, self.invoke("cancel", invocation).await?)? {
            (outcome, None) if outcome == "missing" => Ok(Changed::NotFound),
            (outcome, Some(record)) if outcome == "changed" => Ok(Changed::Changed(record)),
            (outcome, Some(record)) if outcome == "finished" => Ok(Changed::Finished(record)),
            (other, _) => Err(corrupt(&other)),
        }
    }

    async fn receipt(
        &self,
        carrier: &str,
        receipt: &Receipt,
        now: Timestamp,
    ) -> Result<Option<Timestamp>, Error> {
        let tag = receipt.verification.tag();
        let mut invocation = self.scripts.receipt.prepare_invoke();
        invocation
            .key(self.verification_key(&receipt.verification))
            .key(self.outbox_key(tag))
            .key(self.watched_key(tag))
            .key(self.event_keys(tag))
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

    async fn time(&self) -> Result<Option<Timestamp>, Error> {
        let (seconds, micros): (i64, i64) = self.command("time", &redis::cmd("TIME")).await?;
        Ok(Some(Timestamp::from_millis(seconds * 1000 + micros / 1000)))
    }

    async fn failures(
        &self,
        number: &NumberKey,
        _now: Timestamp,
    ) -> Result<Option<Failures>, Error> {
        // The hash expires when its failures decay (check.lua).
        let fields: (Option<u32>, Option<i64>, Option<i64>) = self
            .command(
                "failures",
                redis::cmd("HMGET")
                    .arg(self.failures_key(number.shard(), number))
                    .arg("n")
                    .arg("l")
                    .arg("w"),
            )
            .await?;
        Ok(match fields {
            (Some(count), Some(last), Some(wait_until)) => Some(Failures {
                count,
                last: Timestamp::from_millis(last),
                wait_until: Timestamp::from_millis(wait_until),
            }),
            _ => None,
        })
    }

    async fn forget_failures(&self, number: &NumberKey) -> Result<bool, Error> {
        let deleted: u32 = self
            .command(
                "forget_failures",
                redis::cmd("DEL").arg(self.failures_key(number.shard(), number)),
            )
            .await?;
        Ok(deleted > 0)
    }
}

impl RedisStore {
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
        invocation.key(self.event_keys(record.id.tag()));
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
            .arg(record.service.as_str());
        enqueue_args(&mut invocation, new.enqueue.as_ref());
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
}

/// A send's script arguments: shard cap, sealed code, code key id; an empty
/// sealed code queues nothing (a test number).
fn enqueue_args(invocation: &mut redis::ScriptInvocation<'_>, enqueue: Option<&Enqueue>) {
    match enqueue {
        Some(enqueue) => invocation
            .arg(enqueue.shard_cap)
            .arg(enqueue.sealed_code.as_slice())
            .arg(enqueue.key_id.as_str()),
        None => invocation.arg(0).arg("").arg(""),
    };
}
