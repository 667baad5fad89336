//! Channel `voice` (issue 15): a call through a local server that answers
//! like Twilio Programmable Voice, its TwiML read back to the code, its
//! status callback as the receipt; which numbers may take a call; services
//! that do not offer voice.

use std::time::Duration;

use otpd::config::Settings;
use otpd::domain::Channel;
use serde_json::{json, Value};

use crate::fake_provider::FakeProvider;
use crate::http_carriers::{twilio, twilio_callback};
use crate::support::{json_of, problem, settings, until, RedisServer, TestApp, PHONE};

/// otpd whose `demo` service offers SMS and voice, calls going through a
/// Twilio-like server.
async fn calling(redis: &RedisServer, fake: &FakeProvider, change: fn(&mut Settings)) -> TestApp {
    let mut settings = settings(Some(redis));
    settings
        .carriers
        .insert("provider".into(), twilio(fake.start()));
    settings.routing.voice = vec!["provider".into()];
    let demo = settings.services.get_mut("demo").expect("demo");
    demo.channels = vec![Channel::Sms, Channel::Voice];
    change(&mut settings);
    TestApp::spawn_configured(&settings).await
}

/// Calls may also go to fixed lines and IP phones.
fn landlines(settings: &mut Settings) {
    let demo = settings.services.get_mut("demo").expect("demo");
    demo.voice_landlines = true;
}

async fn start(app: &TestApp, to: &str, channel: &str) -> reqwest::Response {
    let body = json!({ "to": to, "channel": channel, "locale": "ja" });
    app.post("/v1/services/demo/verifications", body).await
}

/// The code a Japanese call script reads out: each digit once, before
/// "もう一度".
pub fn code_heard(twiml: &str) -> String {
    let first_time = twiml.split("もう一度").next().unwrap_or_default();
    first_time
        .split("<Say language=\"ja-JP\">")
        .filter_map(|say| say.split("</Say>").next())
        .filter_map(|said| {
            otpd::voice::JA_DIGITS
                .iter()
                .position(|reading| *reading == said)
        })
        .map(|digit| char::from(b'0' + digit as u8))
        .collect()
}

/// A voice verification end to end: the call's TwiML reads the code (よん
/// and なな, never し or しち), the code approves, and Twilio's signed call
/// status is the receipt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_reads_the_code_and_its_status_is_the_receipt() {
    let redis = RedisServer::start();
    let fake = FakeProvider::default();
    let app = calling(&redis, &fake, |_| {}).await;
    let started = json_of(start(&app, PHONE, "voice").await).await;
    let id = started["id"].as_str().expect("id").to_owned();
    assert_eq!(started["channel"], "voice");
    app.settled().await;
    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    let call = &requests[0];
    assert!(
        call.path.ends_with("/Accounts/AC0123456789/Calls.json"),
        "{}",
        call.path
    );
    assert_eq!(call.form["To"], PHONE);
    assert_eq!(call.form["From"], "+15005550006");
    let twiml = &call.form["Twiml"];
    assert!(twiml.contains("こちらはDemoです。"), "{twiml}");
    assert!(
        !twiml.contains(">し<") && !twiml.contains("しち"),
        "{twiml}"
    );
    let code = code_heard(twiml);
    assert_eq!(code.len(), 6, "{twiml}");

    let sid = json_of(app.status(&id).await).await["delivery"]["message_id"]
        .as_str()
        .expect("sid")
        .to_owned();
    let params = [("CallSid", sid.as_str()), ("CallStatus", "completed")];
    let posted = twilio_callback(&app, &id, &params).await;
    assert_eq!(posted.status(), 204);
    let view: Value = json_of(app.status(&id).await).await;
    assert_eq!(view["delivery"]["status"], "delivered", "{view}");

    let checked = json_of(app.check(&id, &code).await).await;
    assert_eq!(checked["valid"], true, "{checked}");
}

/// Issue 15: with `voice_landlines` a fixed line (03) and an IP phone
/// (050) take a call, never an SMS; M2M (020) and free dial (0120) take
/// neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_landline_takes_a_call_never_an_sms() {
    let redis = RedisServer::start();
    let fake = FakeProvider::default();
    let app = calling(&redis, &fake, landlines).await;
    for landline in ["0312345678", "05012345678"] {
        assert_eq!(
            start(&app, landline, "voice").await.status(),
            201,
            "{landline}"
        );
        problem(
            start(&app, landline, "sms").await,
            400,
            "invalid-phone-number",
        )
        .await;
    }
    for never in ["02012345678", "0120123456"] {
        problem(
            start(&app, never, "voice").await,
            400,
            "invalid-phone-number",
        )
        .await;
    }
}

/// Without `voice_landlines` calls reach mobiles only; a service that does
/// not offer voice refuses it, and nothing is called.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voice_goes_only_where_it_is_offered() {
    let redis = RedisServer::start();
    let fake = FakeProvider::default();
    let app = calling(&redis, &fake, |_| {}).await;
    problem(
        start(&app, "0312345678", "voice").await,
        400,
        "invalid-phone-number",
    )
    .await;
    let body = json!({ "to": PHONE, "channel": "voice" });
    let other = app.post("/v1/services/other/verifications", body).await;
    problem(other, 400, "unsupported-channel").await;
    problem(start(&app, PHONE, "fax").await, 400, "unsupported-channel").await;
    app.settled().await;
    assert!(fake.requests().is_empty());
}

async fn resend(app: &TestApp, id: &str, body: Option<Value>) -> reqwest::Response {
    let url = app.url(&format!("/v1/services/demo/verifications/{id}/resend"));
    let request = app.http.post(url).bearer_auth(crate::support::API_KEY);
    let request = match body {
        Some(body) => request.json(&body),
        None => request,
    };
    request.send().await.expect("sent")
}

/// Issue 15: a resend may switch channels. A call right after the SMS
/// does not wait for the SMS cooldown; its code approves; each channel
/// then waits for its own cooldown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resend_may_switch_to_a_call() {
    let redis = RedisServer::start();
    let fake = FakeProvider::default();
    let app = calling(&redis, &fake, |_| {}).await;
    let id = json_of(start(&app, PHONE, "sms").await).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let switched = resend(&app, &id, Some(json!({ "channel": "voice" }))).await;
    assert_eq!(switched.status(), 200);
    assert_eq!(json_of(switched).await["channel"], "voice");
    app.settled().await;
    let code = code_heard(&fake.requests()[0].form["Twiml"]);
    problem(resend(&app, &id, None).await, 429, "resend-too-soon").await;
    let sms = resend(&app, &id, Some(json!({ "channel": "sms" }))).await;
    problem(sms, 429, "resend-too-soon").await;
    let checked = json_of(app.check(&id, &code).await).await;
    assert_eq!(checked["valid"], true, "{checked}");
}

/// A voice verification to a landline can be resent by call, never by
/// SMS; bad resend bodies are refused and change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_landline_is_resent_by_call_only() {
    let redis = RedisServer::start();
    let fake = FakeProvider::default();
    let app = calling(&redis, &fake, landlines).await;
    let id = json_of(start(&app, "0312345678", "voice").await).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    app.clock.advance(std::time::Duration::from_secs(60));
    assert_eq!(resend(&app, &id, None).await.status(), 200);
    let sms = resend(&app, &id, Some(json!({ "channel": "sms" }))).await;
    problem(sms, 422, "channel-unreachable").await;
    let fax = resend(&app, &id, Some(json!({ "channel": "fax" }))).await;
    problem(fax, 400, "unsupported-channel").await;
    let typo = resend(&app, &id, Some(json!({ "chanel": "voice" }))).await;
    problem(typo, 400, "unknown-field").await;
    app.settled().await;
    assert_eq!(fake.requests().len(), 2, "two calls, nothing else");
    let view = json_of(app.status(&id).await).await;
    assert_eq!(
        (view["channel"].as_str(), view["sends"].as_u64()),
        (Some("voice"), Some(2))
    );
}

/// Issue 15: calls have limits of their own on top of SMS's: three calls
/// an hour per number by default (an SMS still goes), and only to the
/// countries `limits.voice.countries` lists (JP by default) even where the
/// service sends SMS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_have_limits_of_their_own() {
    let redis = RedisServer::start();
    let fake = FakeProvider::default();
    let app = calling(&redis, &fake, |settings| {
        let demo = settings.services.get_mut("demo").expect("demo");
        demo.limits.countries = vec!["JP".into(), "GB".into()];
    })
    .await;
    let calls = || {
        fake.requests()
            .iter()
            .filter(|r| r.path.ends_with("/Calls.json"))
            .count()
    };
    for placed in 1..=3 {
        let started = json_of(start(&app, PHONE, "voice").await).await;
        let id = started["id"].as_str().expect("a call").to_owned();
        // Canceled before its call went out, a verification is never called.
        until("the call", Duration::from_secs(10), async || {
            calls() == placed
        })
        .await;
        assert_eq!(app.cancel(&id).await.status(), 200);
    }
    let refused = problem(start(&app, PHONE, "voice").await, 429, "rate-limited").await;
    assert_eq!(refused["scope"], "number", "{refused}");
    assert_eq!(start(&app, PHONE, "sms").await.status(), 201);
    problem(
        start(&app, "+447400123456", "voice").await,
        422,
        "country-not-allowed",
    )
    .await;
    let sms = json_of(start(&app, "+447400123456", "sms").await).await;
    assert!(sms["id"].is_string(), "{sms}");
    app.settled().await;
    assert_eq!(calls(), 3);
}
