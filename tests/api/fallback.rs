//! Automatic fallback (issue 15): a service with
//! `fallback = [{ channel = "voice", after = "45s" }]` calls with the same
//! code when the SMS's code is not entered within 45 s, or at once when the
//! SMS's receipt says undelivered; once, whichever replica is alive.

use std::sync::atomic::Ordering;
use std::time::Duration;

use otpd::config::{FallbackStep, RateSetting, Settings};
use otpd::domain::Channel;
use serde_json::{json, Value};

use crate::events::{by_verification, with_events};
use crate::fake_provider::{FakeProvider, Reply};
use crate::gateway::{start_gateway, Gateway};
use crate::http_carriers::{twilio, twilio_callback};
use crate::support::{
    assert_has_lines, code_in, holds, json_of, settings, until, RedisServer, TestApp, PHONE,
};
use crate::voice::code_heard;

const AFTER: Duration = Duration::from_secs(45);

/// SMS and calls through one Twilio-like server; a call 45 s after an SMS
/// whose code is not entered.
fn falling_back(redis: &RedisServer, fake: &FakeProvider) -> Settings {
    let mut settings = settings(Some(redis));
    settings
        .carriers
        .insert("provider".into(), twilio(fake.start()));
    settings.routing.default = vec!["provider".into()];
    settings.routing.voice = vec!["provider".into()];
    let demo = settings.services.get_mut("demo").expect("demo");
    demo.channels = vec![Channel::Sms, Channel::Voice];
    demo.fallback = vec![FallbackStep {
        channel: Channel::Voice,
        after: AFTER,
    }];
    settings
}

async fn start_sms(app: &TestApp) -> String {
    let body = json!({ "to": PHONE, "channel": "sms", "locale": "ja" });
    let started = json_of(app.post("/v1/services/demo/verifications", body).await).await;
    started["id"].as_str().expect("id").to_owned()
}

/// Waits until the provider got `count` requests.
async fn requests(fake: &FakeProvider, count: usize) -> Vec<crate::fake_provider::Request> {
    until(
        "the provider's requests",
        Duration::from_secs(10),
        async || fake.requests().len() >= count,
    )
    .await;
    fake.requests()
}

async fn view(app: &TestApp, id: &str) -> Value {
    json_of(app.status(id).await).await
}

/// Once its send is out, Twilio's signed status callback says `id`'s SMS
/// was undelivered.
async fn undelivered(app: &TestApp, id: &str) {
    app.settled().await;
    let sid = view(app, id).await["delivery"]["message_id"]
        .as_str()
        .expect("sid")
        .to_owned();
    let params = [
        ("MessageSid", sid.as_str()),
        ("MessageStatus", "undelivered"),
    ];
    assert_eq!(twilio_callback(app, id, &params).await.status(), 204);
}

/// The code is not entered within 45 s of the SMS: a call reads the same
/// code; the verification now shows the call, and it approves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_follows_an_sms_not_entered_in_time() {
    let redis = RedisServer::start();
    let fake = FakeProvider::default();
    let app = TestApp::spawn_configured(&falling_back(&redis, &fake)).await;
    let id = start_sms(&app).await;
    let sms = requests(&fake, 1).await;
    let code = code_in(&sms[0].form["Body"]);
    app.settled().await;
    app.clock.advance(AFTER - Duration::from_secs(1));
    holds(
        "no call before 45 s",
        Duration::from_millis(300),
        async || fake.requests().len() == 1,
    )
    .await;
    app.clock.advance(Duration::from_secs(1));
    let all = requests(&fake, 2).await;
    assert!(all[1].path.ends_with("/Calls.json"), "{}", all[1].path);
    assert_eq!(code_heard(&all[1].form["Twiml"]), code, "the same code");
    app.settled().await;
    let shown = view(&app, &id).await;
    assert_eq!(shown["channel"], "voice", "{shown}");
    assert_eq!(shown["delivery"]["rerouted_from"], "provider");
    assert_eq!(shown["delivery"]["reroute_reason"], "fallback");
    assert_has_lines(
        &app.metrics().await,
        [r#"otpd_delivery_reroutes_total{from="provider",outcome="sent",reason="fallback"} 1"#],
    );
    let checked = json_of(app.check(&id, &code).await).await;
    assert_eq!(checked["valid"], true);
    app.clock.advance(AFTER * 2);
    holds("one call", Duration::from_millis(300), async || {
        fake.requests().len() == 2
    })
    .await;
}

/// A code entered in time never falls back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_verification_never_falls_back() {
    let redis = RedisServer::start();
    let fake = FakeProvider::default();
    let app = TestApp::spawn_configured(&falling_back(&redis, &fake)).await;
    let id = start_sms(&app).await;
    let code = code_in(&requests(&fake, 1).await[0].form["Body"]);
    app.settled().await;
    assert_eq!(json_of(app.check(&id, &code).await).await["valid"], true);
    app.clock.advance(AFTER * 2);
    holds("no call", Duration::from_millis(300), async || {
        fake.requests().len() == 1
    })
    .await;
}

/// The SMS's receipt says undelivered: the call follows at once, without
/// waiting for the 45 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undelivered_sms_falls_back_at_once() {
    let redis = RedisServer::start();
    let fake = FakeProvider::default();
    let receiver = Gateway::default();
    receiver.open.store(true, Ordering::SeqCst);
    let events = start_gateway(receiver.clone());
    let app = TestApp::spawn_configured(&with_events(falling_back(&redis, &fake), &events)).await;
    let id = start_sms(&app).await;
    requests(&fake, 1).await;
    undelivered(&app, &id).await;
    let all = requests(&fake, 2).await;
    assert!(all[1].path.ends_with("/Calls.json"), "{}", all[1].path);
    app.settled().await;
    assert_eq!(
        view(&app, &id).await["delivery"]["reroute_reason"],
        "undelivered"
    );
    // The relying party hears of it: undelivered, then the fallback to a
    // call, then the call placed.
    let bodies = || receiver.bodies.lock().expect("receiver").clone();
    until("the events", Duration::from_secs(10), async || {
        bodies().len() >= 5
    })
    .await;
    let heard = &by_verification(&bodies())[&id];
    let expected = [
        ("started", ""),
        ("sent", ""),
        ("undelivered", "receipt"),
        ("fallback", "undelivered"),
        ("sent", ""),
    ]
    .map(|(kind, reason)| (kind.to_owned(), reason.to_owned()));
    assert_eq!(heard, &expected);
    assert_eq!(bodies()[4]["data"]["channel"], "voice");
}

/// Issue 15: the fallback is in Redis, not in a replica's memory. The
/// replica that sent the SMS is stopped before the fallback is due; the
/// other one places the call, once, and a third replica finds nothing
/// left to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_replica_falls_back_when_the_first_is_gone() {
    let redis = RedisServer::start();
    let fake = FakeProvider::default();
    let settings = falling_back(&redis, &fake);
    let first = TestApp::spawn_configured(&settings).await;
    start_sms(&first).await;
    requests(&fake, 1).await;
    first.settled().await;
    first.stop_and_wait().await;
    let second = TestApp::spawn_configured(&settings).await;
    let third = TestApp::spawn_configured(&settings).await;
    second.clock.advance(AFTER);
    third.clock.advance(AFTER);
    let all = requests(&fake, 2).await;
    assert!(all[1].path.ends_with("/Calls.json"), "{}", all[1].path);
    holds(
        "one call across replicas",
        Duration::from_millis(500),
        async || fake.requests().len() == 2,
    )
    .await;
}

/// Issue 15: no carrier takes the SMS (Twilio refuses it: 21610, the
/// number opted out of SMS): the same code goes by call at once, instead
/// of never reaching the user (a failed SMS is never watched).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sms_no_carrier_takes_goes_by_call_at_once() {
    let redis = RedisServer::start();
    let fake = FakeProvider::default();
    let app = TestApp::spawn_configured(&falling_back(&redis, &fake)).await;
    let refused = json!({ "code": 21610, "message": "Attempt to send to unsubscribed recipient", "status": 400 });
    fake.then([Reply::Answer(400, refused)]);
    let id = start_sms(&app).await;
    let all = requests(&fake, 2).await;
    assert!(all[0].path.ends_with("/Messages.json"), "{}", all[0].path);
    assert!(all[1].path.ends_with("/Calls.json"), "{}", all[1].path);
    app.settled().await;
    let delivery = view(&app, &id).await["delivery"].clone();
    assert_eq!(delivery["status"], "sent", "{delivery}");
    assert_eq!(delivery["reroute_reason"], "send_failed");
    assert_eq!(delivery["rerouted_from"], "provider");
    let code = code_heard(&all[1].form["Twiml"]);
    let checked = json_of(app.check(&id, &code).await).await;
    assert_eq!(checked["valid"], true, "{checked}");
}

/// Issue 15: a fallback call takes the call's own limits, as a start
/// asking for a call would: with one call an hour per number, the second
/// verification's fallback is not placed (its delivery has failed), and a
/// country calls may not go to gets no fallback call either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fallback_call_takes_the_call_limits() {
    let redis = RedisServer::start();
    let fake = FakeProvider::default();
    let mut settings = falling_back(&redis, &fake);
    let demo = settings.services.get_mut("demo").expect("demo");
    demo.limits.voice.number_sends = vec![RateSetting {
        count: 1,
        period: Duration::from_secs(3600),
    }];
    demo.limits.countries = vec!["JP".into(), "GB".into()];
    let app = TestApp::spawn_configured(&settings).await;
    let first = start_sms(&app).await;
    undelivered(&app, &first).await;
    assert!(requests(&fake, 2).await[1].path.ends_with("/Calls.json"));
    assert_eq!(app.cancel(&first).await.status(), 200);
    let second = start_sms(&app).await;
    requests(&fake, 3).await;
    undelivered(&app, &second).await;
    let abroad = json!({ "to": "+447400123456", "channel": "sms", "locale": "en" });
    let abroad = json_of(app.post("/v1/services/demo/verifications", abroad).await).await;
    let abroad = abroad["id"].as_str().expect("id").to_owned();
    requests(&fake, 4).await;
    undelivered(&app, &abroad).await;
    app.settled().await;
    for id in [&second, &abroad] {
        let delivery = view(&app, id).await["delivery"].clone();
        assert_eq!(delivery["status"], "failed", "{delivery}");
    }
    let calls = fake
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/Calls.json"))
        .count();
    assert_eq!(calls, 1);
}

/// Issue 15: a workflow of two steps, a call at 45 s and another at 90 s:
/// each runs once, with the same code, timed from the start; the code
/// then approves and nothing more is called.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_step_of_a_workflow_runs_once() {
    let redis = RedisServer::start();
    let fake = FakeProvider::default();
    let mut settings = falling_back(&redis, &fake);
    let demo = settings.services.get_mut("demo").expect("demo");
    demo.fallback.push(FallbackStep {
        channel: Channel::Voice,
        after: AFTER * 2,
    });
    let app = TestApp::spawn_configured(&settings).await;
    let id = start_sms(&app).await;
    let code = code_in(&requests(&fake, 1).await[0].form["Body"]);
    for step in 1..=2 {
        app.settled().await;
        app.clock.advance(AFTER - Duration::from_secs(1));
        holds(
            "no call before the step",
            Duration::from_millis(300),
            async || fake.requests().len() == step,
        )
        .await;
        app.clock.advance(Duration::from_secs(1));
        let call = &requests(&fake, step + 1).await[step];
        assert!(call.path.ends_with("/Calls.json"), "{}", call.path);
        assert_eq!(code_heard(&call.form["Twiml"]), code, "step {step}");
    }
    app.settled().await;
    let checked = json_of(app.check(&id, &code).await).await;
    assert_eq!(checked["valid"], true, "{checked}");
    app.clock.advance(AFTER);
    holds("no third call", Duration::from_millis(300), async || {
        fake.requests().len() == 3
    })
    .await;
}
