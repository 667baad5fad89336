//! The `smpp` carrier: an SMPP 3.4 ESME, the direct link to a carrier's
//! SMSC (rusmpp's codec and rusmppc's client underneath).
//!
//! One `bind_transceiver` per replica (SMPP-1), kept by `connect`: bound
//! again with jittered back-off after any loss, `enquire_link` every
//! `enquire_link_interval` (SMPP-5), `unbind` on shutdown (SMPP-8). A send
//! is one `submit_sm` per segment (SMPP-2): TON/NPI 1/1 and the number
//! without `+`, `data_coding` 0x00 (GSM-7, unpacked) or 0x08 (UCS-2), UDH
//! concatenation with `esm_class` 0x40 when the body needs several
//! segments, `registered_delivery` 0x01, and a relative `validity_period`
//! no longer than the code's remaining life. At most `window` PDUs are
//! outstanding, and `submit_sm` PDUs are paced evenly to the bind's `tps`
//! when one is set (SMPP-4). `submit_sm_resp` statuses are classified
//! (SMPP-3): throttled (0x58) pauses the bind; queue full, system error and
//! no answer are temporary; bad addresses and submit failures reject. A
//! multi-part message is all or nothing: once a part is accepted, a later
//! part's failure makes the send final (rejected), never resent in part.
//!
//! Every `deliver_sm` is answered at once (SMPP-6); receipts (TLVs first,
//! then the `id:… stat:…` text) go to otpd, which finds the send by the
//! message id it indexed. While otpd is behind on receipts the link waits
//! (back-pressure), and otpd records every receipt read before shutdown. PDUs are never logged: they carry the code.

mod receipt;

use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::StreamExt;
use governor::clock::Clock as _;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use rand::Rng;
use rusmpp::extra::concatenation::SubmitSmMultipartExt;
use rusmpp::extra::encoding::ucs2::Ucs2;
use rusmpp::pdus::{BindTransceiver, DeliverSmResp, SubmitSm};
use rusmpp::tlvs::TlvValue;
use rusmpp::types::{COctetString, EmptyOrFullCOctetString};
use rusmpp::values::{EsmClass, InterfaceVersion, MessageType, Npi, RegisteredDelivery, Ton};
use rusmpp::{Command, CommandId, CommandStatus, Pdu};
use rusmppc::{Client, ConnectionBuilder, Event};
use serde::Deserialize;
use tokio::sync::{mpsc, watch, Semaphore};
use tracing::{info, warn};

use super::{Accepted, Carrier, Receipts, SendError, Sms};
use crate::domain::{CarrierReceipt, Clock};
use crate::sms::{segments, Encoding};

pub use self::receipt::ReceiptIds;
pub use self::receipt::State as ReceiptState;

/// The message id and state a delivery receipt reports: from its TLVs
/// (`receipted_message_id` and `message_state`) when it has both, else from
/// its text (`id:… stat:…`); `None` for a layout otpd does not read.
pub fn read_receipt(deliver: &rusmpp::pdus::DeliverSm) -> Option<(String, ReceiptState)> {
    let mut id = None;
    let mut state = None;
    for tlv in deliver.tlvs() {
        match tlv.value() {
            Some(TlvValue::ReceiptedMessageId(value)) => id = Some(value.as_str().to_owned()),
            Some(TlvValue::MessageState(value)) => {
                state = receipt::State::from_message_state(u8::from(*value))
            }
            _ => {}
        }
    }
    match (id, state) {
        (Some(id), Some(state)) => Some((id, state)),
        _ => receipt::parse(&String::from_utf8_lossy(deliver.short_message().as_ref())),
    }
}

/// What the SMSC sends us on one connection.
type Events = std::pin::Pin<Box<dyn futures_util::Stream<Item = Event> + Send>>;

/// `[carriers.<name>]` with `kind = "smpp"`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmppSettings {
    /// `smpp://host:port`, or `smpps://host:port` for TLS (SMPP-9).
    pub url: String,
    pub system_id: String,
    pub password: String,
    #[serde(default)]
    pub system_type: String,
    /// The sender: a number or an alphanumeric ID, as the carrier assigns.
    pub source_addr: String,
    /// 5 (alphanumeric) by default; 1 for an international number.
    #[serde(default = "alphanumeric")]
    pub source_addr_ton: u8,
    #[serde(default)]
    pub source_addr_npi: u8,
    /// PDUs outstanding at once on the bind (carrier-agreed).
    #[serde(default = "default_window")]
    pub window: usize,
    /// The bind's contracted throughput: `submit_sm` PDUs per second,
    /// evenly paced (SMPP-4); none for no limit.
    #[serde(default)]
    pub tps: Option<u32>,
    #[serde(default = "thirty_seconds", with = "humantime_serde")]
    pub enquire_link_interval: Duration,
    #[serde(default = "ten_seconds", with = "humantime_serde")]
    pub response_timeout: Duration,
    /// Back-off between binds grows from `reconnect_min` to `reconnect_max`.
    #[serde(default = "one_second", with = "humantime_serde")]
    pub reconnect_min: Duration,
    #[serde(default = "one_minute", with = "humantime_serde")]
    pub reconnect_max: Duration,
    /// How long the bind pauses after `ESME_RTHROTTLED`.
    #[serde(default = "one_second", with = "humantime_serde")]
    pub throttle_pause: Duration,
    /// How the SMSC writes receipt ids (`exact`, `decimal-of-hex`,
    /// `hex-of-decimal`).
    #[serde(default)]
    pub receipt_ids: ReceiptIds,
}

fn alphanumeric() -> u8 {
    5
}
fn default_window() -> usize {
    10
}
fn one_second() -> Duration {
    Duration::from_secs(1)
}
fn ten_seconds() -> Duration {
    Duration::from_secs(10)
}
fn thirty_seconds() -> Duration {
    Duration::from_secs(30)
}
fn one_minute() -> Duration {
    Duration::from_secs(60)
}

impl std::fmt::Debug for SmppSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmppSettings")
            .field("url", &self.url)
            .field("system_id", &self.system_id)
            .field("source_addr", &self.source_addr)
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

/// otpd's clock as the TPS limiter's time source, so that tests pace a
/// bind with the manual clock.
#[derive(Clone)]
struct PaceClock(Arc<dyn Clock>);

impl governor::clock::Clock for PaceClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        Duration::from_millis(u64::try_from(self.0.now().millis()).unwrap_or(0))
    }
}

type Pace = RateLimiter<NotKeyed, InMemoryState, PaceClock, NoOpMiddleware<Duration>>;

pub struct SmppCarrier {
    name: String,
    settings: SmppSettings,
    /// The bound client, while there is one.
    bound: watch::Sender<Option<Client>>,
    window: Semaphore,
    /// One `submit_sm` at a time, `tps` a second (SMPP-4).
    pace: Option<Pace>,
    clock: PaceClock,
    throttled_until: Mutex<Option<Instant>>,
    receipts: mpsc::Sender<CarrierReceipt>,
}

impl SmppCarrier {
    pub fn new(
        name: &str,
        settings: &SmppSettings,
        receipts: mpsc::Sender<CarrierReceipt>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, String> {
        if !(settings.url.starts_with("smpp://") || settings.url.starts_with("smpps://")) {
            return Err("url: use smpp://host:port or smpps://host:port".into());
        }
        if settings.system_id.len() > 15 || settings.password.len() > 8 {
            return Err("system_id is at most 15 characters and password at most 8".into());
        }
        if settings.window == 0 {
            return Err("window: at least 1".into());
        }
        let clock = PaceClock(clock);
        let pace = match settings.tps.map(NonZeroU32::new) {
            None => None,
            Some(None) => return Err("tps: at least 1 (or leave it out for no limit)".into()),
            Some(Some(tps)) => Some(RateLimiter::direct_with_clock(
                Quota::per_second(tps).allow_burst(NonZeroU32::MIN),
                clock.clone(),
            )),
        };
        Ok(SmppCarrier {
            name: name.to_owned(),
            settings: settings.clone(),
            bound: watch::channel(None).0,
            window: Semaphore::new(settings.window),
            pace,
            clock,
            throttled_until: Mutex::new(None),
            receipts,
        })
    }

    async fn bind(&self) -> Result<(Client, Events), rusmppc::error::Error> {
        let (client, events) = ConnectionBuilder::new()
            .enquire_link_interval(self.settings.enquire_link_interval)
            .response_timeout(self.settings.response_timeout)
            .disable_interface_version_check()
            .connect(&self.settings.url)
            .await?;
        let bind = BindTransceiver::builder()
            .system_id(c_text(&self.settings.system_id))
            .password(c_text(&self.settings.password))
            .system_type(c_text(&self.settings.system_type))
            .interface_version(InterfaceVersion::Smpp3_4)
            .addr_ton(Ton::Unknown)
            .addr_npi(Npi::Unknown)
            .address_range(COctetString::empty())
            .build();
        if let Err(error) = client.bind_transceiver(bind).await {
            let _ = client.close().await;
            return Err(error);
        }
        Ok((client, Box::pin(events)))
    }

    /// Serves one bound connection until it closes or `stop`; whether the
    /// link is still up (so it should be unbound).
    async fn serve(
        &self,
        client: &Client,
        mut events: Events,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        loop {
            let event = tokio::select! {
                event = events.next() => event,
                _ = stop.changed() => return true,
            };
            match event {
                None => return false,
                Some(Event::Incoming(command)) => {
                    if !self.incoming(client, command).await {
                        return false;
                    }
                }
                Some(Event::Error(error)) => {
                    warn!(carrier = %self.name, error = %error, "smpp link error");
                    if client.is_closed() {
                        return false;
                    }
                }
            }
        }
    }

    /// Answers what the SMSC sent; false when it unbound us.
    async fn incoming(&self, client: &Client, command: Command) -> bool {
        match command.id() {
            CommandId::DeliverSm => {
                // Answer first (SMPP-6), whatever becomes of the receipt.
                let _ = client
                    .deliver_sm_resp(command.sequence_number(), DeliverSmResp::default())
                    .await;
                if let Some(Pdu::DeliverSm(deliver)) = command.pdu() {
                    self.receipt(deliver).await;
                }
                true
            }
            CommandId::Unbind => {
                let _ = client.unbind_resp(command.sequence_number()).await;
                info!(carrier = %self.name, "the SMSC unbound");
                false
            }
            _ => true,
        }
    }

    /// Hands a receipt to otpd; while otpd is behind, waits (the SMSC's
    /// further PDUs wait in the link) rather than dropping it.
    async fn receipt(&self, deliver: &rusmpp::pdus::DeliverSm) {
        if deliver.esm_class.message_type != MessageType::ShortMessageContainsMCDeliveryReceipt {
            return; // A mobile-originated message: not handled here.
        }
        let Some((message_id, state)) = read_receipt(deliver) else {
            warn!(carrier = %self.name, "a receipt in a layout otpd does not read");
            return;
        };
        let delivered = match state {
            receipt::State::Delivered => true,
            receipt::State::Failed => false,
            receipt::State::Pending => return,
        };
        let Some(message_id) = self.settings.receipt_ids.answered_as(&message_id) else {
            warn!(carrier = %self.name, "a receipt id not in the configured base; ignored");
            return;
        };
        let receipt = CarrierReceipt {
            carrier: self.name.clone(),
            message_id,
            delivered,
            send: None,
        };
        if self.receipts.send(receipt).await.is_err() {
            warn!(carrier = %self.name, "receipt dropped: otpd has stopped recording receipts");
        }
    }

    /// Jittered exponential back-off between binds.
    fn backoff(&self, failures: u32) -> Duration {
        let ceiling = self
            .settings
            .reconnect_min
            .saturating_mul(1 << failures.min(16))
            .min(self.settings.reconnect_max);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::rng().random_range(millis / 2..=millis))
    }

    /// The `submit_sm` PDUs of one SMS: one per segment.
    fn submits(&self, sms: &Sms) -> Result<Vec<SubmitSm>, SendError> {
        let text = sms.body.text();
        let encoding = Encoding::for_text(text);
        let invalid = |what: &str| SendError::Rejected {
            reason: format!("smpp: {what}"),
        };
        let destination = COctetString::from_str(sms.to.e164().trim_start_matches('+'))
            .map_err(|_| invalid("destination"))?;
        let source = COctetString::from_str(&self.settings.source_addr)
            .map_err(|_| invalid("source_addr"))?;
        let validity = EmptyOrFullCOctetString::from_str(&relative_validity(sms.valid_for))
            .map_err(|_| invalid("validity_period"))?;
        let template = SubmitSm::builder()
            .source_addr_ton(Ton::from(self.settings.source_addr_ton))
            .source_addr_npi(Npi::from(self.settings.source_addr_npi))
            .source_addr(source)
            .dest_addr_ton(Ton::International)
            .dest_addr_npi(Npi::Isdn)
            .destination_addr(destination)
            .esm_class(EsmClass::from(0x00))
            .validity_period(validity)
            .registered_delivery(RegisteredDelivery::from(0x01))
            .build();
        // Unpacked GSM-7 takes a byte per septet: 160 alone, 153 + the
        // 6-byte UDH per part; UCS-2 takes 140 bytes either way.
        let parts = match encoding {
            Encoding::Gsm7 => {
                let size = if segments(text) == 1 { 160 } else { 159 };
                template
                    .multipart(text)
                    .max_short_message_size(size)
                    .reference_u16(reference(sms))
                    .gsm7bit_unpacked()
                    .build()
                    .map_err(|e| invalid(&e.to_string()))
            }
            Encoding::Ucs2 => template
                .multipart(text)
                .max_short_message_size(140)
                .reference_u16(reference(sms))
                .encoder(Ucs2::new())
                .build()
                .map_err(|e| invalid(&e.to_string())),
        };
        parts
    }

    /// Waits for the bind's next `submit_sm` slot under its TPS.
    async fn paced(&self) {
        let Some(pace) = &self.pace else {
            return;
        };
        while let Err(not_until) = pace.check() {
            tokio::time::sleep(not_until.wait_time_from(self.clock.now())).await;
        }
    }

    fn throttled(&self) -> bool {
        let until = *self
            .throttled_until
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        until.is_some_and(|until| Instant::now() < until)
    }

    fn classify(&self, error: rusmppc::error::Error) -> SendError {
        let rusmppc::error::Error::UnexpectedResponse { response } = &error else {
            // Timeouts, a lost link: the outcome is unknown; try again (SMPP-3).
            return SendError::Temporary(Box::new(error));
        };
        let status = response.status();
        let code = u32::from(status);
        let reason = format!("smpp command_status 0x{code:02X}");
        match status {
            CommandStatus::EsmeRthrottled => {
                *self
                    .throttled_until
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) =
                    Some(Instant::now() + self.settings.throttle_pause);
                SendError::Throttled { reason }
            }
            CommandStatus::EsmeRmsgqful | CommandStatus::EsmeRsyserr => {
                SendError::Temporary(reason.into())
            }
            _ if code == 0x0A || code == 0x0B || code == 0x45 || (0x48..=0x51).contains(&code) => {
                SendError::Rejected { reason }
            }
            _ => SendError::Rejected { reason },
        }
    }
}

/// A C-octet string field (lengths were checked in `new`).
fn c_text<const MIN: usize, const MAX: usize>(value: &str) -> COctetString<MIN, MAX> {
    COctetString::from_str(value).unwrap_or_else(|_| COctetString::empty())
}

/// A concatenation reference per verification and send, so parts of
/// different messages never mix on the handset.
fn reference(sms: &Sms) -> u16 {
    let id = sms.verification.to_string();
    let mut hash: u16 = 0;
    for byte in id.bytes() {
        hash = hash.wrapping_mul(31).wrapping_add(u16::from(byte));
    }
    hash.wrapping_add(sms.send as u16)
}

/// SMPP relative time (`YYMMDDhhmmss000R`) for `duration`, rounded down to
/// the second so the SMSC never holds the message past the code's life.
fn relative_validity(duration: Duration) -> String {
    let total = duration.as_secs().max(1);
    let (days, rest) = (total / 86_400, total % 86_400);
    let (hours, rest) = (rest / 3_600, rest % 3_600);
    let (minutes, seconds) = (rest / 60, rest % 60);
    format!("0000{days:02}{hours:02}{minutes:02}{seconds:02}000R")
}

#[async_trait]
impl Carrier for SmppCarrier {
    fn name(&self) -> &str {
        &self.name
    }

    fn receipts(&self) -> Receipts {
        Receipts::ByMessageId
    }

    async fn send(&self, sms: &Sms) -> Result<Accepted, SendError> {
        if self.throttled() {
            return Err(SendError::Throttled {
                reason: "smpp: the bind is paused after ESME_RTHROTTLED".into(),
            });
        }
        let client = self
            .bound
            .borrow()
            .clone()
            .ok_or_else(|| SendError::Temporary("smpp: not bound".into()))?;
        let submits = self.submits(sms)?;
        let _window = self
            .window
            .acquire()
            .await
            .map_err(|_| SendError::Temporary("smpp: closing".into()))?;
        let parts = submits.len();
        let mut first = None;
        for (part, submit) in submits.into_iter().enumerate() {
            self.paced().await;
            let response = client.submit_sm(submit).await.map_err(|e| {
                let error = self.classify(e);
                if part == 0 {
                    return error;
                }
                // Some parts are on their way: all or nothing, so this
                // message is final, never resent in part.
                SendError::Rejected {
                    reason: format!(
                        "smpp: part {} of {parts} failed after the first were accepted ({error})",
                        part + 1
                    ),
                }
            })?;
            first.get_or_insert_with(|| receipt::normalise(response.message_id().as_str()));
        }
        let message_id =
            first.ok_or_else(|| SendError::Temporary("smpp: nothing to send".into()))?;
        Ok(Accepted { message_id })
    }

    async fn connect(&self, mut stop: watch::Receiver<bool>) {
        let mut failures = 0;
        while !*stop.borrow() {
            match self.bind().await {
                Ok((client, events)) => {
                    failures = 0;
                    info!(carrier = %self.name, "bound to the SMSC");
                    self.bound.send_replace(Some(client.clone()));
                    let up = self.serve(&client, events, &mut stop).await;
                    self.bound.send_replace(None);
                    if up {
                        let unbound =
                            tokio::time::timeout(self.settings.response_timeout, client.unbind())
                                .await;
                        info!(carrier = %self.name, unbound = matches!(unbound, Ok(Ok(()))), "unbound from the SMSC");
                    }
                    let _ = client.close().await;
                }
                Err(error) => {
                    failures += 1;
                    warn!(carrier = %self.name, error = %error, failures, "bind failed; retrying");
                }
            }
            let wait = self.backoff(failures);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SMPP-2: relative validity, e.g. five minutes.
    #[test]
    fn validity_is_relative_and_never_longer_than_the_code() {
        assert_eq!(
            relative_validity(Duration::from_secs(300)),
            "000000000500000R"
        );
        assert_eq!(
            relative_validity(Duration::from_millis(299_900)),
            "000000000459000R"
        );
        assert_eq!(
            relative_validity(Duration::from_secs(90_061)),
            "000001010101000R"
        );
    }
}
