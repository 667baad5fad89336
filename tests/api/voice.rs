//! Channel `voice` (issue 15): a call through a local server that answers
//! like Twilio Programmable Voice, its TwiML read back to the code, its
//! status callback as the receipt; which numbers may take a call; services
//! that do not offer voice.

use std::time::Duration;

use otpd::config::{CarrierSettings, Settings};
use otpd::domain::Channel;
use serde_json::{json, Value};

use crate::fake_provider::FakeProvider;
use crate::http_carriers::{
    twilio, twilio_callback, vonage, vonage_call_event, PUBLIC_URL, SIGNATURE_SECRET,
};
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

/// A Vonage application's key pair, made with openssl in `dir`: the
/// private key's file (for otpd) and the public key (for the Voice API).
fn application_keys(dir: &std::path::Path) -> (std::path::PathBuf, Vec<u8>) {
    let private = dir.join("application.key");
    let public = dir.join("application.pub");
    let openssl = |args: &[&str]| {
        let status = std::process::Command::new("openssl")
            .args(args)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl runs");
        assert!(status.success(), "openssl {args:?}");
    };
    let (private_path, public_path) = (
        private.to_str().expect("path"),
        public.to_str().expect("path"),
    );
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        private_path,
    ]);
    openssl(&["pkey", "-in", private_path, "-pubout", "-out", public_path]);
    (private, std::fs::read(public).expect("public key"))
}

/// otpd calling through the Vonage Voice API of `fake` as application
/// `app-1` with the private key in `key`.
async fn calling_by_vonage(
    redis: &RedisServer,
    fake: &FakeProvider,
    key: std::path::PathBuf,
) -> TestApp {
    let mut settings = settings(Some(redis));
    let CarrierSettings::Vonage(mut vonage) = vonage(fake.start()) else {
        unreachable!("vonage settings")
    };
    vonage.from = "81312345678".into();
    vonage.application_id = Some("app-1".into());
    vonage.private_key_file = Some(key);
    settings
        .carriers
        .insert("provider".into(), CarrierSettings::Vonage(vonage));
    settings.routing.voice = vec!["provider".into()];
    let demo = settings.services.get_mut("demo").expect("demo");
    demo.channels = vec![Channel::Sms, Channel::Voice];
    TestApp::spawn_configured(&settings).await
}

/// The code an SSML script reads out: each digit once, before "もう一度".
fn code_in_ssml(ssml: &str) -> String {
    let first_time = ssml.split("もう一度").next().unwrap_or_default();
    first_time
        .split("<s>")
        .filter_map(|sentence| sentence.split("</s>").next())
        .filter_map(|said| {
            otpd::voice::JA_DIGITS
                .iter()
                .position(|reading| *reading == said)
        })
        .map(|digit| char::from(b'0' + digit as u8))
        .collect()
}

/// Issue 15: the Vonage Voice API gets `POST /v1/calls` with the
/// application's JWT (the local server refuses any other), an NCCO `talk`
/// reading the code as SSML (よん/なな), and our receipts URL as its
/// `event_url`; the call's signed events are its receipts (a forged or
/// tampered one is refused): completed is delivered, unanswered is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vonage_places_the_call_with_an_ncco_and_application_auth() {
    let redis = RedisServer::start();
    let keys = tempfile::tempdir().expect("temp dir");
    let (private, public) = application_keys(keys.path());
    let fake = FakeProvider::default().verifying_calls_with(public);
    let app = calling_by_vonage(&redis, &fake, private).await;
    let started = json_of(start(&app, PHONE, "voice").await).await;
    let id = started["id"].as_str().expect("id").to_owned();
    app.settled().await;
    let requests = fake.requests();
    let [call] = requests.as_slice() else {
        panic!("one call: {requests:?}")
    };
    assert_eq!(call.path, "/v1/calls");
    let body = &call.json;
    assert_eq!(
        body["to"][0],
        json!({ "type": "phone", "number": "819012345678" })
    );
    assert_eq!(
        body["from"],
        json!({ "type": "phone", "number": "81312345678" })
    );
    assert_eq!(
        body["event_url"][0],
        format!("{PUBLIC_URL}/v1/carriers/provider/receipts?ref={id}.1")
    );
    let talk = &body["ncco"][0];
    assert_eq!(
        (talk["action"].as_str(), talk["language"].as_str()),
        (Some("talk"), Some("ja-JP"))
    );
    let ssml = talk["text"].as_str().expect("ssml");
    assert!(
        ssml.starts_with("<speak") && ssml.contains("こちらはDemoです。"),
        "{ssml}"
    );
    assert!(
        !ssml.contains("<s>し</s>") && !ssml.contains("しち"),
        "{ssml}"
    );
    let code = code_in_ssml(ssml);
    assert_eq!(code.len(), 6, "{ssml}");
    let view = json_of(app.status(&id).await).await;
    let uuid = view["delivery"]["message_id"]
        .as_str()
        .expect("uuid")
        .to_owned();
    assert!(uuid.starts_with("63f61863-"), "{view}");

    let completed = json!({ "uuid": uuid, "status": "completed", "direction": "outbound" });
    let forged = vonage_call_event(
        &app,
        &id,
        completed.clone(),
        "not-the-signature-secret",
        false,
    );
    assert_eq!(forged.await.status(), 401);
    let tampered = vonage_call_event(&app, &id, completed.clone(), SIGNATURE_SECRET, true);
    assert_eq!(tampered.await.status(), 401);
    let ringing = json!({ "uuid": uuid, "status": "ringing" });
    let posted = vonage_call_event(&app, &id, ringing, SIGNATURE_SECRET, false).await;
    assert_eq!(posted.status(), 204);
    assert_eq!(
        json_of(app.status(&id).await).await["delivery"]["status"],
        "sent"
    );
    let posted = vonage_call_event(&app, &id, completed, SIGNATURE_SECRET, false).await;
    assert_eq!(posted.status(), 204);
    assert_eq!(
        json_of(app.status(&id).await).await["delivery"]["status"],
        "delivered"
    );
    let checked = json_of(app.check(&id, &code).await).await;
    assert_eq!(checked["valid"], true, "{checked}");

    let other = json_of(start(&app, "+819011112222", "voice").await).await;
    let other = other["id"].as_str().expect("id").to_owned();
    app.settled().await;
    let uuid = json_of(app.status(&other).await).await["delivery"]["message_id"].clone();
    let unanswered = json!({ "uuid": uuid, "status": "unanswered" });
    let posted = vonage_call_event(&app, &other, unanswered, SIGNATURE_SECRET, false).await;
    assert_eq!(posted.status(), 204);
    assert_eq!(
        json_of(app.status(&other).await).await["delivery"]["status"],
        "undelivered"
    );
}

/// A call signed with a key the application does not have is refused
/// (401): temporary, so it is tried again, and after the attempts the
/// delivery has failed; nothing was placed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vonage_call_the_api_refuses_fails_after_its_attempts() {
    let redis = RedisServer::start();
    let keys = tempfile::tempdir().expect("temp dir");
    let (private, _) = application_keys(keys.path());
    let other_keys = tempfile::tempdir().expect("temp dir");
    let (_, other_public) = application_keys(other_keys.path());
    let fake = FakeProvider::default().verifying_calls_with(other_public);
    let app = calling_by_vonage(&redis, &fake, private).await;
    let started = json_of(start(&app, PHONE, "voice").await).await;
    let id = started["id"].as_str().expect("id").to_owned();
    app.settled().await;
    assert_eq!(
        json_of(app.status(&id).await).await["delivery"]["status"],
        "failed"
    );
    assert_eq!(fake.requests().len(), 3, "three attempts");
}

/// Issue 15: calls have a budget of their own, in money at a call's price
/// (`[voice_pricing]`), on top of the service's: with calls at 40 a day of
/// 100 takes two calls; the third is refused (429 `budget-exhausted`)
/// while SMS still go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_have_a_budget_of_their_own() {
    let redis = RedisServer::start();
    let fake = FakeProvider::default();
    let app = calling(&redis, &fake, |settings| {
        settings.pricing.insert("JP".into(), 3.0);
        settings.voice_pricing.insert("JP".into(), 40.0);
        let demo = settings.services.get_mut("demo").expect("demo");
        demo.limits.voice.budget.daily_cost = Some(100.0);
    })
    .await;
    for to in ["+819011110001", "+819011110002"] {
        assert_eq!(start(&app, to, "voice").await.status(), 201, "{to}");
    }
    let refused = problem(
        start(&app, "+819011110003", "voice").await,
        429,
        "budget-exhausted",
    )
    .await;
    assert_eq!(refused["scope"], "budget", "{refused}");
    assert_eq!(start(&app, "+819011110003", "sms").await.status(), 201);
}
