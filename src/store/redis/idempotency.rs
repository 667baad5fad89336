//! `Idempotency` on Redis: one hash per key (`p:{T}:i:<key hash>`),
//! reserved by `reserve.lua`.

use std::time::Duration;

use async_trait::async_trait;

use super::record::digest;
use super::{millis, unavailable, RedisStore};
use crate::domain::Timestamp;
use crate::store::{Digest, Error, Idempotency, IdempotencyKey, Reservation};

#[async_trait]
impl Idempotency for RedisStore {
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
}
