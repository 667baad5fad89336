//! Idempotent retries: the first answer to a request with an
//! `Idempotency-Key` is stored and replayed to every retry of the same
//! request (REL-6). Keys are scoped per API key and kept at least as long as
//! any verification.

use std::time::Duration;

use tracing::warn;

use super::{Error, Otp};
use crate::store::{IdempotencyKey, Reservation};

/// How long a request may run before its key counts as abandoned.
const LOCK: Duration = Duration::from_secs(30);

/// What to do with a request that carries an `Idempotency-Key`.
pub enum Begun {
    /// First time: run it, then `finish` with the ticket.
    Run(Ticket),
    /// Seen before: answer with these bytes.
    Replay(Vec<u8>),
}

/// A reservation held by one running request.
pub struct Ticket(IdempotencyKey);

impl Otp {
    /// Reserves `key` (scoped to `api_key`) for `request`, the canonical bytes
    /// of what the caller asked; a different request under the same key is
    /// refused.
    pub async fn begin_idempotent(
        &self,
        api_key: &str,
        key: &str,
        request: &[u8],
    ) -> Result<Begun, Error> {
        let scoped = self.keyring.idempotency_key(api_key, key);
        let fingerprint = self.keyring.fingerprint(request);
        match self
            .stores
            .idempotency
            .reserve(&scoped, &fingerprint, LOCK, self.clock.now())
            .await?
        {
            Reservation::Reserved => Ok(Begun::Run(Ticket(scoped))),
            Reservation::Taken {
                fingerprint: first, ..
            } if first != fingerprint => Err(Error::IdempotencyKeyReused),
            Reservation::Taken {
                answer: Some(answer),
                ..
            } => Ok(Begun::Replay(answer)),
            Reservation::Taken { answer: None, .. } => Err(Error::IdempotencyKeyInUse),
        }
    }

    /// Stores `answer` for replays, or with `None` frees the key so a retry
    /// runs again (for answers that say "try later").
    pub async fn finish_idempotent(&self, ticket: Ticket, answer: Option<&[u8]>) {
        let stored = match answer {
            Some(answer) => {
                self.stores
                    .idempotency
                    .complete(
                        &ticket.0,
                        answer,
                        self.idempotency_retention,
                        self.clock.now(),
                    )
                    .await
            }
            None => self.stores.idempotency.release(&ticket.0).await,
        };
        if let Err(error) = stored {
            warn!(error = %error, "idempotency record not updated; a retry may run again");
        }
    }
}
