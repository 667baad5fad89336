//! The use cases: start, check, resend, cancel and look up verifications,
//! and replay of idempotent requests. No HTTP and no Redis types here: the
//! stores and the carrier are traits, time comes from a `Clock`.

mod admin;
mod error;
mod idempotency;
mod keyring;
mod limits;
mod outbox;
mod safe;
mod service;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

pub use self::admin::{Block, Lift, Lockout, NumberState};
pub use self::error::{Error, Kind, Limited};
pub use self::idempotency::{Begun, Ticket};
pub use self::keyring::{Keyring, Secret};
pub use self::outbox::{Preparation, Prepared};
pub use self::safe::Listed;
pub use self::service::Service;

use crate::attestation::{Attestation, Verdict, Verifier};
use crate::domain::{
    Binding, Channel, Clock, Code, DisplayName, Locale, Phone, ServiceName, Status, Timestamp,
    VerificationId,
};
use crate::metrics::{CheckOutcome, Metrics, Surface};
use crate::ratelimit::{Client, Scope, Subject};
use crate::sms::AppHash;
use crate::store::events::{Event, EventKind};
use crate::store::{
    self, Checked, DeliveryStatus, Enqueue, NewCode, NewVerification, NumberKey, Record,
    ResendPolicy, Resent, Started, Stores,
};

/// A verification as callers see it: no digests, no sealed number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verification {
    pub id: VerificationId,
    pub service: ServiceName,
    pub masked_to: String,
    pub channel: Channel,
    pub status: Status,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub resend_after: Timestamp,
    pub sends: u32,
    pub attempts_left: u32,
    /// How the latest send is doing.
    pub delivery: store::Delivery,
}

impl From<Record> for Verification {
    fn from(record: Record) -> Self {
        Verification {
            id: record.id,
            service: record.service,
            masked_to: record.masked_to,
            channel: record.channel,
            status: record.status,
            created_at: record.created_at,
            expires_at: record.expires_at,
            resend_after: record.resend_after,
            sends: record.sends,
            attempts_left: record.attempts_left,
            delivery: record.delivery,
        }
    }
}

pub struct StartRequest {
    pub service: ServiceName,
    pub to: Phone,
    pub channel: Channel,
    /// The end user (ABU-5), as far as known.
    pub client: Client,
    /// Adds the Android SMS Retriever line (AUTO-4).
    pub app_hash: Option<AppHash>,
    pub locale: Option<Locale>,
    pub binding: Option<Binding>,
    /// A bot challenge's or app attestation's token (ABU-8).
    pub attestation: Option<Attestation>,
    /// What this verification's messages call the service, instead of its
    /// display name (Twilio's `CustomFriendlyName`).
    pub display_name: Option<DisplayName>,
    pub surface: Surface,
}

/// `created` is false when the start resent a pending verification.
pub struct StartOutcome {
    pub verification: Verification,
    pub created: bool,
}

pub enum CheckTarget {
    Id(VerificationId),
    /// The pending verification of this number.
    Number(Phone),
}

pub struct CheckRequest {
    pub service: ServiceName,
    pub client: Client,
    pub target: CheckTarget,
    pub code: Code,
    pub binding: Option<Binding>,
    pub surface: Surface,
}

pub struct CheckOutcomeView {
    pub verification: Verification,
    pub valid: bool,
    /// For the approvals-per-country metric.
    country_code: u16,
}

/// Everything the use cases need, built once by `startup`.
pub struct Otp {
    stores: Stores,
    clock: Arc<dyn Clock>,
    keyring: Keyring,
    services: BTreeMap<ServiceName, Arc<Service>>,
    metrics: Metrics,
    idempotency_retention: Duration,
    shard_cap: u64,
    attestations: Verifier,
    safe: safe::SafeList,
    max_clock_skew: Duration,
    receipt_timeout: Duration,
    receipt_carriers: BTreeSet<String>,
}

/// Settings of the use cases that are not a service's.
#[derive(Clone, Debug)]
pub struct Options {
    /// How long an Idempotency-Key and its answer are kept.
    pub idempotency_retention: Duration,
    /// Sends the outbox may hold in all; past it starts answer 503.
    pub max_queued: u64,
    /// How far our clock may be from the store's (readiness).
    pub max_clock_skew: Duration,
    /// How long a receipt may take (`delivery.receipt_timeout`).
    pub receipt_timeout: Duration,
    /// The carriers that give receipts: only their sends become
    /// `delivery_unknown`.
    pub receipt_carriers: BTreeSet<String>,
}

/// A start that finds a pending verification resends it; if that one
/// finishes in between, the start tries again this many times.
const START_RACES: usize = 3;
/// How long a number's index may outlive the verification's own expiry.
const INDEX_SLACK: Duration = Duration::from_secs(60);

impl Otp {
    pub fn new(
        stores: Stores,
        clock: Arc<dyn Clock>,
        keyring: Keyring,
        services: BTreeMap<ServiceName, Service>,
        metrics: Metrics,
        options: Options,
    ) -> Self {
        let services = services
            .into_iter()
            .map(|(name, service)| (name, Arc::new(service)))
            .collect();
        Otp {
            stores,
            clock,
            keyring,
            services,
            metrics,
            idempotency_retention: options.idempotency_retention,
            shard_cap: options.max_queued.div_ceil(u64::from(store::SHARDS)).max(1),
            attestations: Verifier::default(),
            safe: safe::SafeList::default(),
            max_clock_skew: options.max_clock_skew,
            receipt_timeout: options.receipt_timeout,
            receipt_carriers: options.receipt_carriers,
        }
    }

    /// Whether any service has a fallback step (so that watched sends
    /// come due).
    pub fn falls_back(&self) -> bool {
        self.services
            .values()
            .any(|service| !service.fallback.is_empty())
    }

    pub fn service(&self, name: &ServiceName) -> Result<&Arc<Service>, Error> {
        self.services.get(name).ok_or(Error::ServiceNotFound)
    }

    /// Whether otpd can write to its store, and its clock agrees with the
    /// store's (readiness; RL-2).
    pub async fn ready(&self) -> Result<(), Error> {
        self.stores.verifications.ping().await?;
        let asked = self.clock.now();
        let Some(theirs) = self.stores.verifications.time().await? else {
            return Ok(());
        };
        // Ours at the middle of the call, when Redis read its clock.
        let answered = self.clock.now();
        let ours = (asked.millis() + answered.millis()) / 2;
        let skew_ms = ours - theirs.millis();
        self.metrics.clock_skew(skew_ms as f64 / 1000.0);
        let skew = Duration::from_millis(skew_ms.unsigned_abs());
        if skew > self.max_clock_skew {
            return Err(Error::ClockSkew(skew));
        }
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(service = %request.service, to = %request.to.masked()))]
    pub async fn start(&self, request: StartRequest) -> Result<StartOutcome, Error> {
        let service = self.service(&request.service)?;
        let locale = service.locale_for(request.locale.as_ref());
        let name = service.name_for(request.display_name.as_ref());
        if !service.fits(&locale, name, request.app_hash.as_ref()) {
            return Err(Error::MessageTooLong);
        }
        let number = self.keyring.number_key(&service.name, &request.to);
        let taken = match self.admit(service, &request, number).await {
            Ok(taken) => taken,
            Err(refused) => {
                self.report_blocked(service, &request, number, &refused)
                    .await;
                return Err(refused);
            }
        };
        let started = self.start_verification(service, &request, number).await;
        if started.is_err() {
            self.give_back(taken).await;
        }
        started
    }

    /// The checks before a start may send: the country, the attestation,
    /// the limits (taken, to give back if the start fails).
    async fn admit(
        &self,
        service: &Service,
        request: &StartRequest,
        number: store::NumberKey,
    ) -> Result<limits::Taken, Error> {
        self.allow_country(service, &request.to, request.channel)?;
        self.attest(service, request).await?;
        let subject = Subject {
            service: service.name.as_str(),
            phone: &request.to,
            client: &request.client,
            sends_sms: service.test_code(&request.to).is_none(),
            safe: self.is_safe(service, &request.to).await?,
            channel: request.channel,
        };
        let groups =
            service
                .limits
                .send_groups(&self.keyring, &subject, number.0, true, self.clock.now());
        self.take_limits(service, groups).await
    }

    /// A refused start's `blocked` event, with the refusal's scope, for a
    /// service with events; a store that cannot take it is logged (the
    /// refusal stands either way).
    async fn report_blocked(
        &self,
        service: &Service,
        request: &StartRequest,
        number: store::NumberKey,
        refused: &Error,
    ) {
        let scope = match refused {
            Error::RateLimited(limited) | Error::BudgetExhausted(limited) => limited.scope.as_str(),
            Error::CountryNotAllowed => "country",
            Error::AttestationRefused(_) => "attestation",
            _ => return,
        };
        let event = Event {
            id: VerificationId::generate(number.shard()).to_string(),
            kind: EventKind::Blocked,
            verification: None,
            service: service.name.clone(),
            masked_to: request.to.masked().to_owned(),
            channel: request.channel,
            carrier: None,
            country: request.to.region().to_owned(),
            at: self.clock.now(),
            reason: Some(scope.to_owned()),
        };
        if let Err(error) = self.stores.events.blocked(number.shard(), &event).await {
            warn!(%error, "blocked event not queued");
        }
    }

    /// ABU-8: the start's attestation, as the service requires; monitor
    /// mode reports a refusal and goes on.
    async fn attest(&self, service: &Service, request: &StartRequest) -> Result<(), Error> {
        let rules = &service.attestation;
        let verdict = self
            .attestations
            .verify(rules, request.attestation.as_ref(), request.client.ip)
            .await;
        let provider = request
            .attestation
            .as_ref()
            .map_or("none", |attestation| attestation.provider.as_str());
        let name = service.name.as_str();
        let error = match verdict {
            Verdict::NotAsked => return Ok(()),
            Verdict::Passed => {
                self.metrics.attested(name, provider, "passed", false);
                return Ok(());
            }
            Verdict::Refused(refusal) => {
                self.metrics
                    .attested(name, provider, refusal.as_str(), rules.monitor);
                Error::AttestationRefused(refusal)
            }
            Verdict::Unavailable(reason) => {
                self.metrics
                    .attested(name, provider, "unavailable", rules.monitor);
                warn!(provider, reason, "attestation provider unavailable");
                Error::AttestationUnavailable
            }
        };
        if rules.monitor {
            warn!(
                provider,
                code = error.code(),
                "attestation refused (monitor mode: allowed)"
            );
            return Ok(());
        }
        Err(error)
    }

    /// ABU-1: a service sends only to the countries it lists, and calls
    /// only to those `limits.voice` lists.
    fn allow_country(
        &self,
        service: &Service,
        phone: &Phone,
        channel: Channel,
    ) -> Result<(), Error> {
        let limits = &service.limits;
        let listed = |regions: &[String]| regions.iter().any(|region| region == phone.region());
        let voice_listed = channel != Channel::Voice || listed(&limits.voice.countries);
        if listed(&limits.countries) && voice_listed {
            return Ok(());
        }
        let monitor = service.limits.monitor.contains(&Scope::Country);
        self.metrics
            .blocked(service.name.as_str(), "country", monitor);
        if monitor {
            warn!(
                region = phone.region(),
                "country not allowed (monitor mode: sending anyway)"
            );
            return Ok(());
        }
        Err(Error::CountryNotAllowed)
    }

    async fn start_verification(
        &self,
        service: &Service,
        request: &StartRequest,
        number: store::NumberKey,
    ) -> Result<StartOutcome, Error> {
        let test_code = service.test_code(&request.to);
        for _ in 0..START_RACES {
            let now = self.clock.now();
            let code = test_code
                .cloned()
                .unwrap_or_else(|| Code::generate(service.code_length));
            let new = self.new_verification(service, request, number, &code, now);
            match self.stores.verifications.start(&new, now).await? {
                Started::Created { replaced } => {
                    if let Some(old) = replaced {
                        info!(verification_id = %old, "pending verification replaced by one with another binding");
                    }
                    let kind = if test_code.is_some() { "test" } else { "new" };
                    self.metrics.started(
                        service.name.as_str(),
                        kind,
                        request.channel,
                        request.to.country_code(),
                        request.surface,
                    );
                    info!(verification_id = %new.record.id, "verification started, send queued");
                    return Ok(StartOutcome {
                        verification: new.record.into(),
                        created: true,
                    });
                }
                Started::Full => return Err(Error::OutboxFull),
                Started::Pending(id) => match self
                    .resend_to(service, &id, request.channel, test_code, request.surface)
                    .await
                {
                    Err(Error::NotFound | Error::Finished(_)) => continue,
                    resent => {
                        return resent.map(|verification| StartOutcome {
                            verification,
                            created: false,
                        });
                    }
                },
            }
        }
        Err(Error::Store(store::Error::Corrupt(
            "the number's verification kept changing".into(),
        )))
    }

    fn new_verification(
        &self,
        service: &Service,
        request: &StartRequest,
        number: store::NumberKey,
        code: &Code,
        now: Timestamp,
    ) -> NewVerification {
        let id = VerificationId::generate(number.shard());
        let record = Record {
            id,
            service: service.name.clone(),
            status: Status::Pending,
            masked_to: request.to.masked().to_owned(),
            channel: request.channel,
            sealed_to: self.keyring.seal(&id, &request.to),
            locale: service.locale_for(request.locale.as_ref()),
            created_at: now,
            expires_at: now.plus(service.ttl),
            resend_after: now.plus(service.resend_cooldown),
            other_resend_after: None,
            sends: 1,
            attempts_left: service.max_attempts,
            key_id: self.keyring.current_id().clone(),
            code_digest: self.keyring.code_digest(&id, code),
            binding_digest: request
                .binding
                .as_ref()
                .map(|b| self.keyring.binding_digest(&service.name, b)),
            number,
            country_code: request.to.country_code(),
            country: request.to.region().to_owned(),
            app_hash: request.app_hash.clone(),
            display_name: request.display_name.clone(),
            delivery: store::Delivery::queued(),
            fallback_steps: 0,
        };
        NewVerification {
            enqueue: service
                .test_code(&request.to)
                .is_none()
                .then(|| self.enqueue(&id, code)),
            record,
            index_ttl: service.ttl * service.max_sends + INDEX_SLACK,
        }
    }

    #[tracing::instrument(skip_all, fields(service = %request.service))]
    pub async fn check(&self, request: CheckRequest) -> Result<CheckOutcomeView, Error> {
        let service = self.service(&request.service)?;
        let groups =
            service
                .limits
                .check_groups(&self.keyring, service.name.as_str(), &request.client);
        // The verification is looked up while the limits are taken: one
        // round trip of latency for both.
        let (taken, target) = tokio::join!(
            self.take_limits(service, groups),
            self.locate(service, &request)
        );
        let taken = taken?;
        let outcome = match target {
            Ok((id, number)) => self.check_located(service, &request, id, number).await,
            Err(error) => Err(error),
        };
        // By number, a finished verification is none: whether a number
        // verified, gave up or was canceled is nobody's business.
        let outcome = match (&request.target, outcome) {
            (CheckTarget::Number(_), Err(Error::Finished(_))) => Err(Error::NotFound),
            (_, outcome) => outcome,
        };
        let label = match &outcome {
            Ok(view) if view.valid => Some(CheckOutcome::Approved),
            Ok(view) if view.verification.status == Status::Failed => Some(CheckOutcome::Failed),
            Ok(_) => Some(CheckOutcome::Wrong),
            Err(Error::NotFound) => Some(CheckOutcome::NotFound),
            Err(Error::Finished(_)) => Some(CheckOutcome::Conflict),
            Err(Error::RateLimited(_)) => {
                // Refused before any code was compared: it costs the client nothing.
                self.give_back(taken).await;
                None
            }
            Err(_) => None,
        };
        if let Some(label) = label {
            self.metrics
                .checked(service.name.as_str(), label, request.surface);
        }
        if let Ok(view) = &outcome {
            if view.valid {
                let took = view.verification.created_at.until(self.clock.now());
                self.metrics
                    .approved(service.name.as_str(), view.country_code, took.as_secs_f64());
            }
            info!(verification_id = %view.verification.id, valid = view.valid, attempts_left = view.verification.attempts_left, "code checked");
        }
        outcome
    }

    /// The verification a check is for, and its number key. For a number
    /// with no verification, a fresh id in its shard: the check then runs
    /// on a verification that does not exist and finds nothing, with the
    /// same HMAC work and the same Redis calls as a real one, so that the
    /// answer and its timing tell an enumerator of numbers nothing.
    async fn locate(
        &self,
        service: &Service,
        request: &CheckRequest,
    ) -> Result<(VerificationId, NumberKey), Error> {
        let verifications = &self.stores.verifications;
        match &request.target {
            CheckTarget::Id(id) => match verifications.number_of(id).await? {
                Some(number) => Ok((*id, number)),
                None => {
                    self.keyring.candidates(
                        &service.name,
                        id,
                        &request.code,
                        request.binding.as_ref(),
                    );
                    Err(Error::NotFound)
                }
            },
            CheckTarget::Number(phone) => {
                let number = self.keyring.number_key(&service.name, phone);
                let id = verifications.find(&number, self.clock.now()).await?;
                Ok((
                    id.unwrap_or_else(|| VerificationId::generate(number.shard())),
                    number,
                ))
            }
        }
    }

    async fn check_located(
        &self,
        service: &Service,
        request: &CheckRequest,
        id: VerificationId,
        number: NumberKey,
    ) -> Result<CheckOutcomeView, Error> {
        let now = self.clock.now();
        let candidates =
            self.keyring
                .candidates(&service.name, &id, &request.code, request.binding.as_ref());
        match self
            .stores
            .verifications
            .check(
                &service.name,
                &id,
                &number,
                &candidates,
                &service.limits.failed_checks,
                now,
            )
            .await?
        {
            Checked::Approved(record) => {
                self.count_approval(service, &record).await;
                Ok(CheckOutcomeView {
                    country_code: record.country_code,
                    verification: record.into(),
                    valid: true,
                })
            }
            Checked::Wrong(record) => Ok(CheckOutcomeView {
                country_code: record.country_code,
                verification: record.into(),
                valid: false,
            }),
            Checked::Finished(record) => Err(Error::Finished(record.status)),
            Checked::NotFound => Err(Error::NotFound),
            Checked::Throttled { retry_after } => {
                let policy = &service.limits.failed_checks;
                Err(Error::RateLimited(Limited {
                    scope: Scope::CheckFailures,
                    retry_after,
                    policy: "check-failures".into(),
                    quota: u64::from(policy.max),
                    window: policy.decay,
                }))
            }
        }
    }

    /// Counts an approval towards its destination's conversion (ABU-6);
    /// a lost count only makes the destination look worse, so it is logged.
    async fn count_approval(&self, service: &Service, record: &Record) {
        let phone = self
            .keyring
            .open(&record.key_id, &record.id, &record.sealed_to)
            .and_then(|e164| Phone::parse(&e164, service.default_region).ok());
        let Some(phone) = phone.filter(|phone| service.test_code(phone).is_none()) else {
            return;
        };
        // A safe destination's sends were not counted either.
        if self.is_safe(service, &phone).await.unwrap_or(false) {
            return;
        }
        let groups = service
            .limits
            .conversion_groups(&self.keyring, service.name.as_str(), &phone);
        if let Err(error) = self.stores.limits.approve(&groups, self.clock.now()).await {
            warn!(error = %error, "approval not counted towards conversion");
        }
    }

    /// A new code for a pending verification, sent to its number.
    #[tracing::instrument(skip_all, fields(service = %service_name, verification_id = %id))]
    /// A new code for a pending verification, on `channel` (its own
    /// channel when none): a call after an SMS, or the other way round,
    /// kills the old code and has its own cooldown.
    pub async fn resend(
        &self,
        service_name: &ServiceName,
        id: &VerificationId,
        channel: Option<Channel>,
        surface: Surface,
    ) -> Result<Verification, Error> {
        let service = self.service(service_name)?;
        let now = self.clock.now();
        let record = self
            .stores
            .verifications
            .get(&service.name, id, now)
            .await?
            .ok_or(Error::NotFound)?;
        if record.status != Status::Pending {
            return Err(Error::Finished(record.status));
        }
        let e164 = self
            .keyring
            .open(&record.key_id, id, &record.sealed_to)
            .ok_or(Error::NotFound)?;
        let channel = channel.unwrap_or(record.channel);
        let phone = Phone::parse_for(&e164, service.default_region, service.reach(channel))
            .map_err(|_| Error::Unreachable(channel))?;
        let test_code = service.test_code(&phone);
        let subject = Subject {
            service: service.name.as_str(),
            phone: &phone,
            client: &Client::default(),
            sends_sms: test_code.is_none(),
            safe: self.is_safe(service, &phone).await?,
            channel,
        };
        let groups =
            service
                .limits
                .send_groups(&self.keyring, &subject, record.number.0, false, now);
        let taken = self.take_limits(service, groups).await?;
        let resent = self
            .resend_to(service, id, channel, test_code, surface)
            .await;
        if resent.is_err() {
            self.give_back(taken).await;
        }
        resent
    }

    /// A new code for the pending verification `id`, queued with its send;
    /// for a test number its fixed code, and nothing queued.
    async fn resend_to(
        &self,
        service: &Service,
        id: &VerificationId,
        channel: Channel,
        test_code: Option<&Code>,
        surface: Surface,
    ) -> Result<Verification, Error> {
        let now = self.clock.now();
        let code = test_code
            .cloned()
            .unwrap_or_else(|| Code::generate(service.code_length));
        let candidates = self.keyring.candidates(&service.name, id, &code, None);
        let policy = ResendPolicy {
            cooldown: service.resend_cooldown,
            max_cooldown: service.max_resend_cooldown,
            max_sends: service.max_sends,
            ttl: service.ttl,
        };
        let enqueue = test_code.is_none().then(|| self.enqueue(id, &code));
        let record = match self
            .stores
            .verifications
            .resend(
                &service.name,
                id,
                NewCode {
                    channel,
                    candidates: &candidates,
                    enqueue: enqueue.as_ref(),
                },
                policy,
                now,
            )
            .await?
        {
            Resent::Resent(record) => record,
            Resent::TooSoon(record) => {
                let due = record.resend_after_for(channel);
                return Err(Error::ResendTooSoon(now.until(due)));
            }
            Resent::MaxSends(record) => return Err(Error::MaxSends(now.until(record.expires_at))),
            Resent::Finished(record) => return Err(Error::Finished(record.status)),
            Resent::NotFound => return Err(Error::NotFound),
            Resent::Full => return Err(Error::OutboxFull),
        };
        self.metrics.started(
            service.name.as_str(),
            if test_code.is_some() {
                "test"
            } else {
                "resend"
            },
            record.channel,
            record.country_code,
            surface,
        );
        info!(verification_id = %id, to = %record.masked_to, sends = record.sends, "code resent, send queued");
        Ok(record.into())
    }

    /// The outbox entry for `code`: sealed, never in clear (SEC-11).
    fn enqueue(&self, id: &VerificationId, code: &Code) -> Enqueue {
        Enqueue {
            sealed_code: self.keyring.seal_code(id, code),
            key_id: self.keyring.current_id().clone(),
            shard_cap: self.shard_cap,
        }
    }

    #[tracing::instrument(skip_all, fields(service = %service_name, verification_id = %id))]
    pub async fn cancel(
        &self,
        service_name: &ServiceName,
        id: &VerificationId,
    ) -> Result<Verification, Error> {
        let service = self.service(service_name)?;
        match self
            .stores
            .verifications
            .cancel(&service.name, id, self.clock.now())
            .await?
        {
            store::Changed::Changed(record) => {
                info!("verification canceled");
                Ok(record.into())
            }
            store::Changed::Finished(record) => Err(Error::Finished(record.status)),
            store::Changed::NotFound => Err(Error::NotFound),
        }
    }

    pub async fn get(
        &self,
        service_name: &ServiceName,
        id: &VerificationId,
    ) -> Result<Verification, Error> {
        let service = self.service(service_name)?;
        let record = self
            .stores
            .verifications
            .get(&service.name, id, self.clock.now())
            .await?;
        let mut verification = record.map(Verification::from).ok_or(Error::NotFound)?;
        if self.receipt_overdue(&verification.delivery) {
            verification.delivery.status = DeliveryStatus::Unknown;
        }
        Ok(verification)
    }

    /// The number's pending verification (what a Twilio Verify create
    /// answers while its resend waits for the cooldown).
    pub async fn pending_for(
        &self,
        service_name: &ServiceName,
        to: &Phone,
    ) -> Result<Verification, Error> {
        let service = self.service(service_name)?;
        let number = self.keyring.number_key(&service.name, to);
        let now = self.clock.now();
        let id = self
            .stores
            .verifications
            .find(&number, now)
            .await?
            .ok_or(Error::NotFound)?;
        let record = self
            .stores
            .verifications
            .get(&service.name, &id, now)
            .await?
            .filter(|record| record.status == Status::Pending)
            .ok_or(Error::NotFound)?;
        Ok(record.into())
    }

    /// The verification and the number it was started for, in E.164 (the
    /// Twilio Verify surface answers with it, as Twilio does: the caller
    /// sent it).
    pub async fn get_with_recipient(
        &self,
        service_name: &ServiceName,
        id: &VerificationId,
    ) -> Result<(Verification, String), Error> {
        let service = self.service(service_name)?;
        let record = self
            .stores
            .verifications
            .get(&service.name, id, self.clock.now())
            .await?
            .ok_or(Error::NotFound)?;
        let to = self
            .keyring
            .open(&record.key_id, id, &record.sealed_to)
            .ok_or(Error::NotFound)?;
        Ok((record.into(), to.to_string()))
    }

    /// Whether a carrier that gives receipts accepted the send more than
    /// `receipt_timeout` ago and no receipt came (SMPP-7).
    fn receipt_overdue(&self, delivery: &store::Delivery) -> bool {
        let from_receipt_carrier = delivery
            .carrier
            .as_ref()
            .is_some_and(|carrier| self.receipt_carriers.contains(carrier));
        let overdue = delivery
            .sent_at
            .is_some_and(|at| at.plus(self.receipt_timeout) <= self.clock.now());
        delivery.status == DeliveryStatus::Sent && from_receipt_carrier && overdue
    }
}
