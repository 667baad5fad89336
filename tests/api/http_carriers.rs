//! The Twilio and Vonage adapters against a local server that answers like
//! each provider: the exact request, its auth, success, every error class
//! (rejections, throttling, 5xx, a slow answer, bad credentials), and the
//! provider's signed receipts.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use otpd::carrier::{twilio_signature, vonage_signature, TwilioSettings, VonageSettings};
use otpd::config::{CarrierSettings, Settings};
use serde_json::{json, Value};

use crate::fake_provider::{FakeProvider, Reply};
use crate::gateway::unix_now;
use crate::support::{
    assert_has_lines, code_in, json_of, problem, settings, RedisServer, TestApp, PHONE,
};

pub const PUBLIC_URL: &str = "https://otpd.example.com";
const TOKEN: &str = "twilio-auth-token-for-tests";
pub const SIGNATURE_SECRET: &str = "vonage-signature-secret";

/// otpd routing every send to `carrier`, served by a fake provider.
async fn app_with(redis: &RedisServer, carrier: CarrierSettings) -> TestApp {
    let mut settings: Settings = settings(Some(redis));
    settings.carriers.insert("provider".into(), carrier);
    settings.routing.default = vec!["provider".into()];
    TestApp::spawn_configured(&settings).await
}

pub fn twilio(api_url: String) -> CarrierSettings {
    CarrierSettings::Twilio(TwilioSettings {
        account_sid: "AC0123456789".into(),
        auth_token: TOKEN.into(),
        from: Some("+15005550006".into()),
        messaging_service_sid: None,
        public_url: PUBLIC_URL.into(),
        api_url,
        timeout: Duration::from_millis(300),
    })
}

pub fn vonage(api_url: String) -> CarrierSettings {
    CarrierSettings::Vonage(VonageSettings {
        api_key: "vonage-key".into(),
        api_secret: "vonage-secret".into(),
        signature_secret: SIGNATURE_SECRET.into(),
        from: "Demo".into(),
        public_url: PUBLIC_URL.into(),
        voice_url: api_url.clone(),
        api_url,
        timeout: Duration::from_millis(300),
        application_id: None,
        private_key_file: None,
    })
}

/// The code in the body the provider got is the one that approves.
async fn assert_approves(app: &TestApp, id: &str, body: &str) {
    let checked = json_of(app.check(id, &code_in(body)).await).await;
    assert_eq!(checked["valid"], true, "{body}");
}

/// The send's delivery state once the outbox drained.
async fn delivery(app: &TestApp, id: &str) -> Value {
    app.settled().await;
    json_of(app.status(id).await).await["delivery"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_gets_the_documented_request() {
    let redis = RedisServer::start();
    let fake = FakeProvider::default();
    let app = app_with(&redis, twilio(fake.start())).await;
    let id = app.started(PHONE).await;
    let delivery = delivery(&app, &id).await;
    assert_eq!(
        (delivery["status"].as_str(), delivery["carrier"].as_str()),
        (Some("sent"), Some("provider"))
    );
    let requests = fake.requests();
    let [request] = requests.as_slice() else {
        panic!("one request: {requests:?}")
    };
    assert_eq!(
        request.path,
        "/2010-04-01/Accounts/AC0123456789/Messages.json"
    );
    let basic = format!("Basic {}", STANDARD.encode(format!("AC0123456789:{TOKEN}")));
    assert_eq!(request.authorization.as_deref(), Some(basic.as_str()));
    let form = &request.form;
    assert_eq!(form["To"], PHONE);
    assert_eq!(form["From"], "+15005550006");
    assert_approves(&app, &id, &form["Body"]).await;
    let validity: u64 = form["ValidityPeriod"].parse().expect("seconds");
    assert!(
        (1..=300).contains(&validity),
        "no longer than the code lives: {validity}"
    );
    assert_eq!(
        form["StatusCallback"],
        format!("{PUBLIC_URL}/v1/carriers/provider/receipts?ref={id}.1")
    );
    assert_eq!(delivery["message_id"], format!("SM{:032}", 1));
}

/// Throttling (429: `throttled`, not a carrier failure) and a slow answer
/// (past the timeout) are retried and the third call succeeds; 5xx and bad
/// credentials (401) are temporary, and three of them use up the three
/// attempts the tests allow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_temporary_errors_are_retried() {
    let redis = RedisServer::start();
    let fake = FakeProvider::default();
    let app = app_with(&redis, twilio(fake.start())).await;
    fake.then([
        Reply::Answer(
            429,
            json!({ "code": 20429, "message": "Too Many Requests", "status": 429 }),
        ),
        Reply::Slow(Duration::from_secs(1)),
    ]);
    let id = app.started(PHONE).await;
    assert_eq!(delivery(&app, &id).await["status"], "sent");
    assert_eq!(fake.requests().len(), 3);
    fake.then([
        Reply::Answer(
            500,
            json!({ "code": 20500, "message": "Internal Server Error", "status": 500 }),
        ),
        Reply::Answer(
            503,
            json!({ "code": 20503, "message": "Service Unavailable", "status": 503 }),
        ),
        Reply::Answer(
            401,
            json!({ "code": 20003, "message": "Authenticate", "status": 401 }),
        ),
    ]);
    let id = app.started("+819011112222").await;
    assert_eq!(
        delivery(&app, &id).await["status"],
        "failed",
        "three temporary failures use up the attempts"
    );
    let metrics = app.metrics().await;
    let sends = [("throttled", 1), ("temporary", 4), ("accepted", 1)].map(|(outcome, count)| {
        format!(r#"otpd_sends_total{{carrier="provider",country="81",outcome="{outcome}",service="demo"}} {count}"#)
    });
    assert_has_lines(&metrics, sends);
}

/// An invalid number (21211) or an opted-out one (21610) is final: one
/// call, no retry, `failed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_rejections_are_final() {
    let redis = RedisServer::start();
    let fake = FakeProvider::default();
    let app = app_with(&redis, twilio(fake.start())).await;
    for (n, code) in [21211, 21610].into_iter().enumerate() {
        fake.then([Reply::Answer(
            400,
            json!({ "code": code, "message": "The 'To' number is not valid.", "status": 400 }),
        )]);
        let id = app.started(&format!("+8190{:04}0000", 2000 + n)).await;
        assert_eq!(delivery(&app, &id).await["status"], "failed", "{code}");
        assert_eq!(fake.requests().len(), n + 1, "{code}: not retried");
    }
}

pub async fn post_form(
    app: &TestApp,
    path_and_query: &str,
    headers: &[(&str, String)],
    form: &BTreeMap<String, String>,
) -> reqwest::Response {
    let mut request = app.http.post(app.url(path_and_query)).form(form);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    request.send().await.expect("sent")
}

/// Twilio's status callback for send 1 of `id`, signed as Twilio signs
/// it, posted to otpd's receipts endpoint for the carrier `provider`.
pub async fn twilio_callback(
    app: &TestApp,
    id: &str,
    params: &[(&str, &str)],
) -> reqwest::Response {
    let path = format!("/v1/carriers/provider/receipts?ref={id}.1");
    let form = strings(params);
    let signature = twilio_signature(
        TOKEN,
        &format!("{PUBLIC_URL}{path}"),
        form.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    );
    post_form(app, &path, &[("x-twilio-signature", signature)], &form).await
}

/// Posts a Vonage Voice API call event for send 1 of `id`, signed as Vonage
/// signs them: a JWT (HS256, keyed by `secret`) whose `payload_hash` is the
/// body's SHA-256, as the bearer token; `tamper` changes the body after
/// signing.
pub async fn vonage_call_event(
    app: &TestApp,
    id: &str,
    event: Value,
    secret: &str,
    tamper: bool,
) -> reqwest::Response {
    let mut body = serde_json::to_vec(&event).expect("json");
    let claims = json!({
        "iat": unix_now(),
        "jti": format!("event-{id}"),
        "iss": "Vonage",
        "payload_hash": otpd::config::sha256_hex(&body),
        "application_id": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab",
    });
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("a JWT");
    if tamper {
        body.extend_from_slice(b" ");
    }
    app.http
        .post(app.url(&format!("/v1/carriers/provider/receipts?ref={id}.1")))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("sent")
}

pub fn strings(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_status_callbacks_are_verified() {
    let redis = RedisServer::start();
    let fake = FakeProvider::default();
    let app = app_with(&redis, twilio(fake.start())).await;
    let id = app.started(PHONE).await;
    let sid = delivery(&app, &id).await["message_id"]
        .as_str()
        .expect("sid")
        .to_owned();
    let path = format!("/v1/carriers/provider/receipts?ref={id}.1");
    let form = strings(&[
        ("MessageSid", &sid),
        ("MessageStatus", "delivered"),
        ("AccountSid", "AC0123456789"),
        ("ErrorCode", ""),
    ]);
    let sign = |token: &str, url: &str| {
        twilio_signature(
            token,
            url,
            form.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )
    };
    let forged = [
        (
            "x-twilio-signature",
            sign("another-token", &format!("{PUBLIC_URL}{path}")),
        ),
        (
            "x-twilio-signature",
            sign(
                TOKEN,
                &format!("{PUBLIC_URL}/v1/carriers/provider/receipts?ref={id}.2"),
            ),
        ),
    ];
    for header in forged {
        problem(
            post_form(&app, &path, &[header], &form).await,
            401,
            "bad-signature",
        )
        .await;
    }
    problem(
        post_form(&app, &path, &[], &form).await,
        401,
        "bad-signature",
    )
    .await;
    assert_eq!(delivery(&app, &id).await["status"], "sent");
    let signed = (
        "x-twilio-signature",
        sign(TOKEN, &format!("{PUBLIC_URL}{path}")),
    );
    assert_eq!(post_form(&app, &path, &[signed], &form).await.status(), 204);
    assert_eq!(delivery(&app, &id).await["status"], "delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vonage_gets_the_documented_request() {
    let redis = RedisServer::start();
    let fake = FakeProvider::default();
    let app = app_with(&redis, vonage(fake.start())).await;
    let id = app.started(PHONE).await;
    let delivery = delivery(&app, &id).await;
    assert_eq!(delivery["status"], "sent");
    assert_eq!(delivery["message_id"], format!("VN{:016}", 1));
    let requests = fake.requests();
    let [request] = requests.as_slice() else {
        panic!("one request: {requests:?}")
    };
    assert_eq!(request.path, "/sms/json");
    let form = &request.form;
    for (field, value) in [
        ("api_key", "vonage-key"),
        ("api_secret", "vonage-secret"),
        ("from", "Demo"),
        ("to", PHONE.trim_start_matches('+')),
        ("type", "unicode"),
        ("status-report-req", "1"),
    ] {
        assert_eq!(form[field], value, "{field}");
    }
    assert_eq!(form["client-ref"], format!("{id}.1"));
    assert_eq!(
        form["callback"],
        format!("{PUBLIC_URL}/v1/carriers/provider/receipts")
    );
    let ttl: u64 = form["ttl"].parse().expect("ms");
    assert!((20_000..=300_000).contains(&ttl), "{ttl}");
    assert_approves(&app, &id, &form["text"]).await;
}

/// Vonage answers 200 with a status per part: 1 (throttled) is retried,
/// 3 (invalid parameters, e.g. the number) is final; HTTP 5xx is retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vonage_statuses_are_classified() {
    let redis = RedisServer::start();
    let fake = FakeProvider::default();
    let app = app_with(&redis, vonage(fake.start())).await;
    let part = |status: &str| json!({ "message-count": "1", "messages": [{ "status": status, "error-text": "…" }] });
    fake.then([Reply::Answer(200, part("1")), Reply::Answer(502, json!({}))]);
    let id = app.started(PHONE).await;
    assert_eq!(delivery(&app, &id).await["status"], "sent");
    assert_eq!(fake.requests().len(), 3);
    fake.then([Reply::Answer(200, part("3"))]);
    let id = app.started("+819011112222").await;
    assert_eq!(delivery(&app, &id).await["status"], "failed");
    assert_eq!(fake.requests().len(), 4, "a rejection is not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vonage_delivery_receipts_are_verified() {
    let redis = RedisServer::start();
    let fake = FakeProvider::default();
    let app = app_with(&redis, vonage(fake.start())).await;
    let id = app.started(PHONE).await;
    let message_id = delivery(&app, &id).await["message_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let reference = format!("{id}.1");
    let timestamp = unix_now().to_string();
    let mut dlr = strings(&[
        ("msisdn", "819012345678"),
        ("messageId", &message_id),
        ("status", "delivered"),
        ("err-code", "0"),
        ("client-ref", &reference),
        ("timestamp", &timestamp),
    ]);
    let path = "/v1/carriers/provider/receipts";
    let mut forged = dlr.clone();
    forged.insert(
        "sig".into(),
        vonage_signature("wrong-signature-secret", &dlr),
    );
    problem(
        post_form(&app, path, &[], &forged).await,
        401,
        "bad-signature",
    )
    .await;
    let mut stale = dlr.clone();
    stale.insert("timestamp".into(), (unix_now() - 900).to_string());
    stale.insert("sig".into(), vonage_signature(SIGNATURE_SECRET, &stale));
    problem(
        post_form(&app, path, &[], &stale).await,
        401,
        "bad-signature",
    )
    .await;
    assert_eq!(delivery(&app, &id).await["status"], "sent");
    dlr.insert("sig".into(), vonage_signature(SIGNATURE_SECRET, &dlr));
    // Vonage may post JSON as well as a form.
    let json_receipt = app
        .http
        .post(app.url(path))
        .json(&dlr)
        .send()
        .await
        .expect("sent");
    assert_eq!(json_receipt.status(), 204);
    assert_eq!(delivery(&app, &id).await["status"], "delivered");
    assert!(app
        .metrics()
        .await
        .contains(r#"otpd_delivery_receipts_total{carrier="provider",status="delivered"} 1"#));
}
