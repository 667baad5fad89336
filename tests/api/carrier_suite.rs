//! The `Carrier` conformance suite (STYLE.md: one suite per trait): the
//! same cases, written once, run against every adapter through otpd and
//! its local peer: the SMPP SMSC (node-smpp), the Twilio-like, Vonage-like
//! and webhook servers, console and null. Accept, temporary, throttle,
//! reject, timeout, multi-part and receipt correlation for the carriers
//! that can fail and give receipts; accept and multi-part for console and
//! null, which never fail and give none. `carrier_suite!` turns each case
//! into a named test per peer.

use std::time::Duration;

use otpd::carrier::WebhookSettings;
use otpd::config::{CarrierSettings, Settings};
use serde_json::{json, Value};

use crate::fake_provider::{FakeProvider, Reply};
use crate::gateway::{receipt_body, signed_headers, unix_now, SECRET};
use crate::http_carriers::{post_form, strings, twilio, twilio_callback, vonage, SIGNATURE_SECRET};
use crate::smsc::Smsc;
use crate::support::{code_in, holds, json_of, settings, until, RedisServer, TestApp, PHONE};

/// How a peer fails the next message.
#[derive(Clone, Copy, Debug)]
pub enum Failure {
    Temporary,
    Throttle,
    Reject,
    /// No answer within the adapter's timeout.
    Timeout,
}

/// An adapter's local peer, and the carrier configured against it.
pub trait Peer {
    /// Adds the carrier under `provider` and routes every send to it.
    fn configure(&self, settings: &mut Settings);
    /// The next message is answered with `failure`.
    fn fail_next(&mut self, failure: Failure);
    /// The texts the peer received so far, one per request (or SMPP
    /// segment); read them through `received`.
    fn texts(&self) -> Vec<String>;
    /// Whether the peer keeps what it receives (console and null do not).
    fn keeps_texts(&self) -> bool {
        true
    }
    /// The peer reports the message `message_id` of send 1 of `id` as
    /// delivered, the carrier's way (a signed callback, a `deliver_sm`).
    async fn delivered(&mut self, app: &TestApp, id: &str, message_id: &str);
}

pub struct Twilio(FakeProvider);
pub struct Vonage(FakeProvider);
pub struct Webhook(FakeProvider, String);
pub struct Smpp(Smsc);
/// Console and null keep nothing a test can read, and never fail.
pub struct Silent(CarrierSettings);

const RECEIPTS: &str = "/v1/carriers/provider/receipts";

fn http_failure(failure: Failure, throttled: Reply) -> Reply {
    match failure {
        Failure::Temporary => Reply::Answer(503, json!({})),
        Failure::Throttle => throttled,
        Failure::Reject => Reply::Answer(400, json!({ "code": 21211, "message": "invalid" })),
        Failure::Timeout => Reply::Slow(Duration::from_secs(1)),
    }
}

fn field(fake: &FakeProvider, name: &str) -> Vec<String> {
    fake.requests()
        .into_iter()
        .map(|request| request.form.get(name).cloned().unwrap_or_default())
        .collect()
}

impl Twilio {
    pub fn start() -> Self {
        Twilio(FakeProvider::default())
    }
}

impl Peer for Twilio {
    fn configure(&self, settings: &mut Settings) {
        settings
            .carriers
            .insert("provider".into(), twilio(self.0.start()));
    }

    fn fail_next(&mut self, failure: Failure) {
        let throttled = Reply::Answer(429, json!({ "code": 20429 }));
        self.0.then([http_failure(failure, throttled)]);
    }

    fn texts(&self) -> Vec<String> {
        field(&self.0, "Body")
    }

    async fn delivered(&mut self, app: &TestApp, id: &str, message_id: &str) {
        let params = [
            ("MessageSid", message_id),
            ("MessageStatus", "delivered"),
            ("AccountSid", "AC0123456789"),
        ];
        assert_eq!(twilio_callback(app, id, &params).await.status(), 204);
    }
}

impl Vonage {
    pub fn start() -> Self {
        Vonage(FakeProvider::default())
    }
}

impl Peer for Vonage {
    fn configure(&self, settings: &mut Settings) {
        settings
            .carriers
            .insert("provider".into(), vonage(self.0.start()));
    }

    fn fail_next(&mut self, failure: Failure) {
        let throttled = Reply::Answer(
            200,
            json!({ "message-count": "1", "messages": [{ "status": "1", "error-text": "Throttled" }] }),
        );
        self.0.then([http_failure(failure, throttled)]);
    }

    fn texts(&self) -> Vec<String> {
        field(&self.0, "text")
    }

    async fn delivered(&mut self, app: &TestApp, id: &str, message_id: &str) {
        let reference = format!("{id}.1");
        let timestamp = unix_now().to_string();
        let mut dlr = strings(&[
            ("msisdn", "819012345678"),
            ("messageId", message_id),
            ("status", "delivered"),
            ("err-code", "0"),
            ("client-ref", &reference),
            ("timestamp", &timestamp),
        ]);
        let sig = otpd::carrier::vonage_signature(SIGNATURE_SECRET, &dlr);
        dlr.insert("sig".into(), sig);
        assert_eq!(post_form(app, RECEIPTS, &[], &dlr).await.status(), 204);
    }
}

impl Webhook {
    pub fn start() -> Self {
        let fake = FakeProvider::default();
        let url = format!("{}/sms", fake.start());
        Webhook(fake, url)
    }
}

impl Peer for Webhook {
    fn configure(&self, settings: &mut Settings) {
        let webhook = WebhookSettings {
            url: self.1.clone(),
            secret: SECRET.into(),
            timeout: Duration::from_millis(300),
        };
        settings
            .carriers
            .insert("provider".into(), CarrierSettings::Webhook(webhook));
    }

    fn fail_next(&mut self, failure: Failure) {
        let throttled = Reply::Answer(429, json!({}));
        self.0.then([http_failure(failure, throttled)]);
    }

    fn texts(&self) -> Vec<String> {
        field(&self.0, "body")
    }

    async fn delivered(&mut self, app: &TestApp, id: &str, message_id: &str) {
        let body = receipt_body(id, message_id, "delivered");
        let mut request = app
            .http
            .post(app.url(RECEIPTS))
            .header("content-type", "application/json");
        for (name, value) in signed_headers(SECRET, unix_now(), &body) {
            request = request.header(name, value);
        }
        let answer = request.body(body).send().await.expect("sent");
        assert_eq!(answer.status(), 204);
    }
}

impl Smpp {
    pub fn start() -> Self {
        Smpp(Smsc::start())
    }
}

impl Peer for Smpp {
    fn configure(&self, settings: &mut Settings) {
        let mut smpp = crate::smpp::smsc_settings(&self.0);
        if let CarrierSettings::Smpp(link) = &mut smpp {
            link.response_timeout = Duration::from_millis(500);
        }
        settings.carriers.insert("provider".into(), smpp);
        // Sends that come before the bind wait for it.
        settings.delivery.attempts = 100;
    }

    fn fail_next(&mut self, failure: Failure) {
        let status = match failure {
            Failure::Temporary => 0x14,
            Failure::Throttle => 0x58,
            Failure::Reject => 0x0B,
            Failure::Timeout => -1,
        };
        self.0
            .command(json!({ "cmd": "statuses", "statuses": [status] }));
    }

    fn texts(&self) -> Vec<String> {
        self.0
            .events("submit_sm")
            .iter()
            .map(|submit| submit["text"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    async fn delivered(&mut self, _app: &TestApp, _id: &str, message_id: &str) {
        let before = self.0.events("deliver_sm_resp").len();
        self.0
            .command(json!({ "cmd": "receipt", "message_id": message_id, "stat": "DELIVRD" }));
        self.0.until("deliver_sm_resp", before + 1).await;
    }
}

impl Silent {
    pub fn console() -> Self {
        Silent(CarrierSettings::Console)
    }

    pub fn null() -> Self {
        Silent(CarrierSettings::Null)
    }
}

impl Peer for Silent {
    fn configure(&self, settings: &mut Settings) {
        settings.carriers.insert("provider".into(), self.0.clone());
    }

    fn fail_next(&mut self, failure: Failure) {
        unreachable!("console and null never fail ({failure:?})")
    }

    fn texts(&self) -> Vec<String> {
        Vec::new()
    }

    fn keeps_texts(&self) -> bool {
        false
    }

    async fn delivered(&mut self, _app: &TestApp, _id: &str, _message_id: &str) {
        unreachable!("console and null give no receipts")
    }
}

/// otpd on a private Redis, sending everything through `peer`'s carrier.
async fn otpd_with(peer: &impl Peer, redis: &RedisServer, configure: fn(&mut Settings)) -> TestApp {
    let mut settings = settings(Some(redis));
    peer.configure(&mut settings);
    settings.routing.default = vec!["provider".into()];
    configure(&mut settings);
    TestApp::spawn_configured(&settings).await
}

/// The peer's texts once `done` holds for them (none from a peer that
/// keeps nothing). otpd can learn a send's outcome before the peer has
/// reported the text: the SMSC writes its events through a pipe.
async fn received(peer: &impl Peer, done: impl Fn(&[String]) -> bool) -> Vec<String> {
    if !peer.keeps_texts() {
        return Vec::new();
    }
    until("the peer's texts", Duration::from_secs(10), async || {
        done(&peer.texts())
    })
    .await;
    peer.texts()
}

async fn delivery(app: &TestApp, id: &str) -> Value {
    app.settled().await;
    json_of(app.status(id).await).await["delivery"].clone()
}

/// The text the peer received last approves `id`.
async fn assert_approves(app: &TestApp, peer: &impl Peer, id: &str) {
    let texts = received(peer, |texts| !texts.is_empty()).await;
    let Some(text) = texts.last() else {
        return; // console and null keep nothing to read
    };
    let checked = json_of(app.check(id, &code_in(text)).await).await;
    assert_eq!(checked["valid"], true, "{text}");
}

/// Accepted: `sent` by this carrier with its message id, and the code the
/// peer got approves.
pub async fn accepts(peer: impl Peer) {
    let redis = RedisServer::start();
    let app = otpd_with(&peer, &redis, |_| {}).await;
    let id = app.started(PHONE).await;
    let delivery = delivery(&app, &id).await;
    assert_eq!(delivery["status"], "sent", "{delivery}");
    assert_eq!(delivery["carrier"], "provider");
    assert!(delivery["message_id"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
    let texts = received(&peer, |texts| !texts.is_empty()).await;
    assert!(texts.len() <= 1, "one message: {texts:?}");
    assert_approves(&app, &peer, &id).await;
}

/// A failure the adapter classifies as worth another try (temporary,
/// throttled, no answer in time): the same code goes again and is sent.
async fn retried_after(mut peer: impl Peer, failure: Failure) {
    let redis = RedisServer::start();
    let app = otpd_with(&peer, &redis, |_| {}).await;
    peer.fail_next(failure);
    let id = app.started(PHONE).await;
    let delivery = delivery(&app, &id).await;
    assert_eq!(delivery["status"], "sent", "{failure:?}: {delivery}");
    let texts = received(&peer, |texts| texts.len() >= 2).await;
    assert_eq!(texts.len(), 2, "{failure:?}: {texts:?}");
    assert_eq!(code_in(&texts[0]), code_in(&texts[1]), "the same code");
    assert_approves(&app, &peer, &id).await;
}

pub async fn temporary(peer: impl Peer) {
    retried_after(peer, Failure::Temporary).await;
}

pub async fn throttle(peer: impl Peer) {
    retried_after(peer, Failure::Throttle).await;
}

pub async fn timeout(peer: impl Peer) {
    retried_after(peer, Failure::Timeout).await;
}

/// A rejection is final: `failed`, never tried again.
pub async fn reject(mut peer: impl Peer) {
    let redis = RedisServer::start();
    let app = otpd_with(&peer, &redis, |_| {}).await;
    peer.fail_next(Failure::Reject);
    let id = app.started(PHONE).await;
    assert_eq!(delivery(&app, &id).await["status"], "failed");
    received(&peer, |texts| !texts.is_empty()).await;
    holds("not retried", Duration::from_millis(300), async || {
        peer.texts().len() == 1
    })
    .await;
}

/// A body of three segments reaches the peer whole (one request, or three
/// concatenated SMPP segments) and its code approves.
pub async fn multi_part(peer: impl Peer) {
    let redis = RedisServer::start();
    let app = otpd_with(&peer, &redis, crate::smpp::three_segment_english).await;
    let body = json!({ "to": PHONE, "channel": "sms", "locale": "en" });
    let started = json_of(app.post("/v1/services/demo/verifications", body).await).await;
    let id = started["id"].as_str().expect("id");
    assert_eq!(delivery(&app, id).await["status"], "sent");
    let whole = received(&peer, |texts| {
        texts.concat().matches("Keep it to yourself.").count() >= 8
    })
    .await
    .concat();
    if peer.keeps_texts() {
        assert_eq!(whole.matches("Keep it to yourself.").count(), 8, "{whole}");
        let checked = json_of(app.check(id, &code_in(&whole)).await).await;
        assert_eq!(checked["valid"], true, "{whole}");
    }
}

/// A receipt marks the send it names, and only that one: of two sends,
/// the one reported is `delivered` and the other stays `sent`.
pub async fn receipt_correlation(mut peer: impl Peer) {
    let redis = RedisServer::start();
    let app = otpd_with(&peer, &redis, |_| {}).await;
    let reported = app.started(PHONE).await;
    let other = app.started("+819011112222").await;
    let message_id = delivery(&app, &reported).await["message_id"]
        .as_str()
        .expect("message id")
        .to_owned();
    peer.delivered(&app, &reported, &message_id).await;
    until("the receipt", Duration::from_secs(10), async || {
        delivery(&app, &reported).await["status"] == "delivered"
    })
    .await;
    assert_eq!(delivery(&app, &other).await["status"], "sent");
}

#[macro_export]
macro_rules! carrier_suite {
    ($peer:ident, $start:expr; $($case:ident),+) => {
        mod $peer {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    $crate::carrier_suite::$case($start).await;
                }
            )+
        }
    };
}

mod every_adapter {
    use super::{Silent, Smpp, Twilio, Vonage, Webhook};

    carrier_suite!(smpp, Smpp::start();
        accepts, temporary, throttle, reject, timeout, multi_part, receipt_correlation);
    carrier_suite!(twilio, Twilio::start();
        accepts, temporary, throttle, reject, timeout, multi_part, receipt_correlation);
    carrier_suite!(vonage, Vonage::start();
        accepts, temporary, throttle, reject, timeout, multi_part, receipt_correlation);
    carrier_suite!(webhook, Webhook::start();
        accepts, temporary, throttle, reject, timeout, multi_part, receipt_correlation);
    carrier_suite!(console, Silent::console(); accepts, multi_part);
    carrier_suite!(null, Silent::null(); accepts, multi_part);
}
