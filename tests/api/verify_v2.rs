//! The Twilio Verify v2 surface (issue 16): the official `twilio` package
//! from PyPI, unmodified, runs a login flow against otpd on Redis through
//! its documented base-URL override; raw form requests cover what the SDK
//! hides.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use otpd::config::{self, CredentialSettings, RateSetting, Settings};
use serde_json::Value;

use crate::grpc::{python, root};
use crate::support::{settings, RedisServer, TestApp};

pub(crate) const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
pub(crate) const TOKEN: &str = "the-auth-token-of-the-test-account";
pub(crate) const SERVICE: &str = "VA0123456789abcdef0123456789abcdef";
const TEST_NUMBER: &str = "+819099990001";
const TEST_CODE: &str = "424242";

/// otpd with the Verify surface: the account's token stands for the `all`
/// API key, `SERVICE` is `demo`, a test number with a fixed code, and four
/// starts a minute per client IP.
pub(crate) fn verifying(redis: &RedisServer) -> Settings {
    let mut settings = settings(Some(redis));
    let verify = &mut settings.twilio_verify;
    verify.account_sid = ACCOUNT.into();
    verify.credentials = vec![CredentialSettings {
        sid: ACCOUNT.into(),
        secret_sha256: config::sha256_hex(TOKEN),
        api_key: "all".into(),
    }];
    verify.services = BTreeMap::from([(SERVICE.into(), "demo".into())]);
    let demo = settings.services.get_mut("demo").expect("demo");
    demo.test_numbers = BTreeMap::from([(TEST_NUMBER.into(), TEST_CODE.into())]);
    demo.allow_test_numbers = true;
    demo.limits.ip_starts = vec![RateSetting {
        count: 4,
        period: Duration::from_secs(60),
    }];
    settings
}

/// The app of tests/twilio/verify.py, unmodified SDK calls; its report by
/// scenario.
fn sdk_run(base: &str) -> BTreeMap<String, Value> {
    let output = Command::new(python())
        .arg(root().join("tests/twilio/verify.py"))
        .env("OTPD_URL", base)
        .env("ACCOUNT_SID", ACCOUNT)
        .env("AUTH_TOKEN", TOKEN)
        .env("SERVICE_SID", SERVICE)
        .env("TEST_NUMBER", TEST_NUMBER)
        .env("TEST_CODE", TEST_CODE)
        .env("OTHER_NUMBER", "+819012345678")
        .output()
        .expect("python runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .lines()
        .map(|line| {
            let report: Value = serde_json::from_str(line).expect("a JSON line");
            (report["name"].as_str().expect("name").to_owned(), report)
        })
        .collect()
}

/// Issue 16: a login flow written with the official SDK runs unmodified:
/// create, fetch, a wrong then a right code, the replay refused (20404),
/// the attempts used up (60202), cancel, a bad token (401 20003), an
/// invalid number (60200) and a rate limit (20429), each judged on the
/// SDK's own objects and `TwilioRestException` fields.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_sdk_runs_a_login_flow() {
    let redis = RedisServer::start();
    let app = TestApp::spawn(&verifying(&redis)).await;
    let base = app.base.clone();
    let run = tokio::task::spawn_blocking(move || sdk_run(&base));
    let report = run.await.expect("the SDK ran");
    let ok = |name: &str| {
        let line = &report[name];
        assert_eq!(line["ok"], true, "{name}: {line}");
        line.clone()
    };
    let refused = |name: &str, status: u64, code: u64| {
        let line = &report[name];
        assert_eq!(
            (
                line["ok"].as_bool(),
                line["status"].as_u64(),
                line["code"].as_u64()
            ),
            (Some(false), Some(status), Some(code)),
            "{name}: {line}"
        );
    };
    let created = ok("create");
    assert_eq!(created["status"], "pending");
    assert_eq!(created["to"], TEST_NUMBER);
    assert_eq!(created["channel"], "sms");
    assert_eq!(
        (
            created["service_sid"].as_str(),
            created["account_sid"].as_str()
        ),
        (Some(SERVICE), Some(ACCOUNT))
    );
    let sid = created["sid"].as_str().expect("sid");
    assert!(sid.starts_with("VE") && sid.len() == 34, "{sid}");
    assert_eq!(
        ok("fetch")["sid"],
        sid,
        "a create for a pending number answers it"
    );
    let wrong = ok("check-wrong");
    assert_eq!(
        (wrong["status"].as_str(), wrong["valid"].as_bool()),
        (Some("pending"), Some(false))
    );
    let right = ok("check-right");
    assert_eq!(
        (right["status"].as_str(), right["valid"].as_bool()),
        (Some("approved"), Some(true))
    );
    refused("replay", 404, 20404);
    for attempt in 1..=4 {
        assert_eq!(ok(&format!("attempt-{attempt}"))["valid"], false);
    }
    refused("max-attempts", 429, 60202);
    assert_eq!(ok("cancel")["status"], "canceled");
    refused("bad-token", 401, 20003);
    refused("invalid-number", 400, 60200);
    ok("burst-1");
    for n in 2..=4 {
        refused(&format!("burst-{n}"), 429, 20429);
    }
    refused("rate-limit", 404, 20404);
    // The same metrics as /v1, labelled with the surface: two starts of
    // the test number (the second create while pending answered the first),
    // two of other numbers, one approval.
    let metrics = app.metrics().await;
    for series in [
        r#"otpd_verifications_started_total{channel="sms",country="81",kind="test",service="demo",surface="twilio_verify"} 2"#,
        r#"otpd_verifications_started_total{channel="sms",country="81",kind="new",service="demo",surface="twilio_verify"} 2"#,
        r#"otpd_checks_total{outcome="approved",service="demo",surface="twilio_verify"} 1"#,
        r#"otpd_checks_total{outcome="approved",service="demo",surface="http"} 0"#,
    ] {
        assert!(metrics.contains(series), "{series} in\n{metrics}");
    }
}

/// A raw form request to the surface, as `ACCOUNT` unless `token` says
/// otherwise; its status and Twilio error body.
async fn post(
    app: &TestApp,
    path: &str,
    token: &str,
    content_type: &str,
    body: &str,
) -> (u16, Value, Option<String>) {
    post_as(app, ACCOUNT, path, token, content_type, body).await
}

/// As `post`, signed in as `user` (an account or API key SID).
async fn post_as(
    app: &TestApp,
    user: &str,
    path: &str,
    token: &str,
    content_type: &str,
    body: &str,
) -> (u16, Value, Option<String>) {
    let answer = app
        .http
        .post(app.url(&format!("/v2/Services/{path}")))
        .header(
            "authorization",
            format!("Basic {}", STANDARD.encode(format!("{user}:{token}"))),
        )
        .header("content-type", content_type)
        .body(body.to_owned())
        .send()
        .await
        .expect("sent");
    let status = answer.status().as_u16();
    let challenge = answer
        .headers()
        .get("www-authenticate")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    (status, answer.json().await.unwrap_or_default(), challenge)
}

const FORM: &str = "application/x-www-form-urlencoded";

/// What the SDK never sends: unknown and unsupported parameters, a
/// repeated one, both `To` and `VerificationSid`, a JSON body, an unknown
/// service or verification, a bad token, a method the resource does not
/// take: each refused with Twilio's code, and nothing sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_requests_the_sdk_hides_are_refused_with_twilios_codes() {
    let redis = RedisServer::start();
    let app = TestApp::spawn(&verifying(&redis)).await;
    let create = format!("{SERVICE}/Verifications");
    let check = format!("{SERVICE}/VerificationCheck");
    let to = "To=%2B819012345678&Channel=sms";
    let invalid = |answer: &(u16, Value, Option<String>), says: &str| {
        assert_eq!(
            (answer.0, answer.1["code"].as_u64()),
            (400, Some(60200)),
            "{}",
            answer.1
        );
        let message = answer.1["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{message}");
        assert_eq!(
            answer.1["more_info"],
            "https://www.twilio.com/docs/errors/60200"
        );
        assert_eq!(answer.1["status"], 400);
    };
    let unknown = post(&app, &create, TOKEN, FORM, &format!("{to}&Foo=1")).await;
    invalid(&unknown, "Foo is unknown");
    let custom = post(
        &app,
        &create,
        TOKEN,
        FORM,
        &format!("{to}&CustomCode=123456"),
    )
    .await;
    invalid(&custom, "CustomCode is not supported by otpd");
    let twice = post(
        &app,
        &create,
        TOKEN,
        FORM,
        &format!("{to}&To=%2B819011112222"),
    )
    .await;
    invalid(&twice, "To is given more than once");
    let json = r#"{"To": "+819012345678", "Channel": "sms"}"#;
    let typed = post(&app, &create, TOKEN, "application/json", json).await;
    invalid(&typed, "application/x-www-form-urlencoded");
    let both = format!(
        "Code=123456&To=%2B819012345678&VerificationSid=VE{}",
        "0".repeat(32)
    );
    invalid(
        &post(&app, &check, TOKEN, FORM, &both).await,
        "one of To or VerificationSid",
    );
    let whatsapp = post(
        &app,
        &create,
        TOKEN,
        FORM,
        "To=%2B819012345678&Channel=whatsapp",
    )
    .await;
    invalid(&whatsapp, "Channel");
    let elsewhere = format!("VA{}/Verifications", "f".repeat(32));
    let (status, body, _) = post(&app, &elsewhere, TOKEN, FORM, to).await;
    assert_eq!(
        (status, body["code"].as_u64()),
        (404, Some(20404)),
        "{body}"
    );
    let nobody = format!("{SERVICE}/Verifications/VE{}", "0".repeat(32));
    let (status, body, _) = post(&app, &nobody, TOKEN, FORM, "Status=canceled").await;
    assert_eq!(
        (status, body["code"].as_u64()),
        (404, Some(20404)),
        "{body}"
    );
    let (status, body, challenge) = post(&app, &create, "wrong", FORM, to).await;
    assert_eq!(
        (status, body["code"].as_u64()),
        (401, Some(20003)),
        "{body}"
    );
    assert_eq!(challenge.as_deref(), Some("Basic realm=\"Twilio API\""));
    let deleted = app
        .http
        .delete(app.url(&format!("/v2/Services/{nobody}")))
        .basic_auth(ACCOUNT, Some(TOKEN))
        .send()
        .await
        .expect("sent");
    assert_eq!(deleted.status(), 405);
    assert_eq!(deleted.headers()["allow"], "GET, POST");
    let body: Value = deleted.json().await.expect("json");
    assert_eq!(
        (body["code"].as_u64(), body["status"].as_u64()),
        (Some(20004), Some(405))
    );
    assert_eq!(app.sent_count().await, 0, "nothing was sent");
}

/// An API key (`SK…` and its secret) stands for the otpd key it is mapped
/// to, with that key's services: the `demo-only` key starts on the demo
/// service's SID, is refused (403 20403) on the SID of a service it does
/// not hold, and its SID with another key's secret is 401 20003.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_key_sid_stands_for_its_otpd_key_and_its_services() {
    const KEY_SID: &str = "SKfedcba9876543210fedcba9876543210";
    const KEY_SECRET: &str = "the-secret-of-the-demo-only-key";
    const OTHER_SERVICE: &str = "VAfedcba9876543210fedcba9876543210";
    let redis = RedisServer::start();
    let mut settings = verifying(&redis);
    let verify = &mut settings.twilio_verify;
    verify.credentials.push(CredentialSettings {
        sid: KEY_SID.into(),
        secret_sha256: config::sha256_hex(KEY_SECRET),
        api_key: "demo-only".into(),
    });
    verify.services.insert(OTHER_SERVICE.into(), "other".into());
    let app = TestApp::spawn(&settings).await;
    let to = "To=%2B819012345678&Channel=sms";
    let create = |service: &str| format!("{service}/Verifications");
    let (status, body, _) = post_as(&app, KEY_SID, &create(SERVICE), KEY_SECRET, FORM, to).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["service_sid"], SERVICE);
    // Twilio's Verification resource, field for field.
    let fields: Vec<&str> = body
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    let mut twilio = vec![
        "sid",
        "service_sid",
        "account_sid",
        "to",
        "channel",
        "status",
        "valid",
        "lookup",
        "amount",
        "payee",
        "send_code_attempts",
        "sna",
        "date_created",
        "date_updated",
        "url",
    ];
    twilio.sort_unstable();
    assert_eq!(fields, twilio);
    assert_eq!(
        (&body["sna"], &body["amount"], &body["payee"]),
        (&Value::Null, &Value::Null, &Value::Null)
    );
    // Its url is otpd's, where the caller found it (never Twilio's host).
    let sid = body["sid"].as_str().expect("sid");
    let url = app.url(&format!("/v2/Services/{SERVICE}/Verifications/{sid}"));
    assert_eq!(body["url"], url);
    let (status, body, _) =
        post_as(&app, KEY_SID, &create(OTHER_SERVICE), KEY_SECRET, FORM, to).await;
    assert_eq!(
        (status, body["code"].as_u64()),
        (403, Some(20403)),
        "{body}"
    );
    let (status, body, _) = post_as(&app, KEY_SID, &create(SERVICE), TOKEN, FORM, to).await;
    assert_eq!(
        (status, body["code"].as_u64()),
        (401, Some(20003)),
        "{body}"
    );
    let (status, body, _) = post(&app, &create(OTHER_SERVICE), TOKEN, FORM, to).await;
    assert_eq!(status, 201, "the account's key holds every service: {body}");
    assert_eq!(app.sent_count().await, 2, "two sends, one per service");
}

/// `CustomFriendlyName` names the service in that verification's messages
/// (and in its resends), instead of the service's display name; a name with
/// a line break or a placeholder, or one whose message would not fit the
/// service's segments, is refused (60200) and nothing is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_friendly_name_names_the_service_in_its_messages() {
    let redis = RedisServer::start();
    let app = TestApp::spawn(&verifying(&redis)).await;
    let create = format!("{SERVICE}/Verifications");
    let named = "To=%2B819012345678&Channel=sms&Locale=en&CustomFriendlyName=Example%20Bank";
    let (status, body, _) = post(&app, &create, TOKEN, FORM, named).await;
    assert_eq!(status, 201, "{body}");
    let (status, body, _) = post(
        &app,
        &create,
        TOKEN,
        FORM,
        "To=%2B819012345679&Channel=sms&Locale=en",
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let named = app.sent_to("+819012345678").await;
    assert!(
        named[0].starts_with("Your Example Bank code is "),
        "{named:?}"
    );
    let plain = app.sent_to("+819012345679").await;
    assert!(plain[0].starts_with("Your Demo code is "), "{plain:?}");
    for (name, says) in [
        ("Bank%0ACall%20us", "CustomFriendlyName"),
        ("%7Bcode%7D", "CustomFriendlyName"),
        (&"%E3%81%82".repeat(20), "max_segments"),
    ] {
        let form = format!("To=%2B819012345670&Channel=sms&Locale=en&CustomFriendlyName={name}");
        let (status, body, _) = post(&app, &create, TOKEN, FORM, &form).await;
        assert_eq!(
            (status, body["code"].as_u64()),
            (400, Some(60200)),
            "{name}: {body}"
        );
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{name}: {message}");
    }
    assert_eq!(
        app.sent_count().await,
        2,
        "nothing sent for the refused names"
    );
}

/// What otpd refuses before a `/v2` handler runs (a body over
/// `http.max_body_bytes`, a path it does not serve) answers in Twilio's
/// shape too: an app catching `TwilioRestException` must catch it (the SDK
/// raises another class for an RFC 9457 problem).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_before_the_handler_have_twilios_shape() {
    let redis = RedisServer::start();
    let mut settings = verifying(&redis);
    settings.http.max_body_bytes = 256;
    let app = TestApp::spawn(&settings).await;
    let create = format!("{SERVICE}/Verifications");
    let large = format!("To=%2B819012345678&Channel=sms&Locale={}", "e".repeat(300));
    let (status, body, _) = post(&app, &create, TOKEN, FORM, &large).await;
    assert_eq!(
        (status, body["code"].as_u64(), body["status"].as_u64()),
        (413, Some(20413), Some(413)),
        "{body}"
    );
    let (status, body, _) = post(&app, &format!("{SERVICE}/Messages"), TOKEN, FORM, "").await;
    assert_eq!(
        (status, body["code"].as_u64(), body["more_info"].as_str()),
        (
            404,
            Some(20404),
            Some("https://www.twilio.com/docs/errors/20404")
        ),
        "{body}"
    );
    assert_eq!(app.sent_count().await, 0);
}

/// A limit's refusal on `/v2` carries what `/v1`'s does: `Retry-After` and
/// the RateLimit fields naming the limit (RL-4), in Twilio's body (20429).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limits_refusal_carries_retry_after_and_the_ratelimit_fields() {
    let redis = RedisServer::start();
    let app = TestApp::spawn(&verifying(&redis)).await;
    let create = app.url(&format!("/v2/Services/{SERVICE}/Verifications"));
    let mut last = None;
    for n in 0..5 {
        last = Some(
            app.http
                .post(&create)
                .basic_auth(ACCOUNT, Some(TOKEN))
                .header("content-type", FORM)
                .body(format!("To=%2B8190555511{n:02}&Channel=sms"))
                .send()
                .await
                .expect("sent"),
        );
    }
    let refused = last.expect("five starts");
    assert_eq!(refused.status(), 429);
    let headers = refused.headers().clone();
    assert!(headers.contains_key("retry-after"), "{headers:?}");
    assert_eq!(headers["ratelimit-policy"], "\"ip\"", "{headers:?}");
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["code"], 20429);
}
