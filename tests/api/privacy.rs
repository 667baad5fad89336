//! Nothing at rest or in telemetry holds a code or a full number
//! (DESIGN invariants 1 and 6; SEC-11, SEC-13, RL-6, OBS-1).

use serde_json::json;

use crate::support::{json_of, settings, wrong, CapturedLogs, RedisServer, TestApp, PHONE};
use crate::verify_v2::{verifying, ACCOUNT, SERVICE, TOKEN};

const NATIONAL: &str = "9012345678";
const OTHER_PHONE: &str = "+819087654321";

/// Runs a full lifecycle for two numbers and returns the codes sent.
async fn exercise(app: &TestApp) -> Vec<String> {
    let id = app.started(PHONE).await;
    let code = app.sent_code(PHONE).await;
    app.check(&id, &wrong(&code)).await;
    app.check(&id, &code).await;
    let body = json!({ "to": OTHER_PHONE, "channel": "sms", "binding": "session-1" });
    let other = json_of(app.post("/v1/services/demo/verifications", body).await).await;
    let other_code = app.sent_code(OTHER_PHONE).await;
    app.post(
        "/v1/services/demo/checks",
        json!({ "to": OTHER_PHONE, "code": wrong(&other_code) }),
    )
    .await;
    app.get(&format!(
        "/v1/services/demo/verifications/{}",
        other["id"].as_str().expect("id")
    ))
    .await;
    vec![wrong(&code), code, other_code]
}

/// Whether `code` stands alone in `haystack` (not inside a longer digit run,
/// such as a millisecond timestamp).
fn holds_code(haystack: &[u8], code: &str) -> bool {
    haystack
        .windows(code.len())
        .enumerate()
        .any(|(at, window)| {
            let before = at.checked_sub(1).map(|b| haystack[b]);
            let after = haystack.get(at + code.len()).copied();
            window == code.as_bytes()
                && !before.is_some_and(|b| b.is_ascii_digit())
                && !after.is_some_and(|b| b.is_ascii_digit())
        })
}

fn holds_number(haystack: &[u8]) -> bool {
    let contains = |needle: &str| {
        haystack
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
    };
    contains(NATIONAL) || contains("9087654321") || contains("090-1234-5678")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_holds_no_number_and_no_code_and_every_key_expires() {
    let redis = RedisServer::start();
    let app = TestApp::spawn(&settings(Some(&redis))).await;
    let codes = exercise(&app).await;
    let dump = redis.dump();
    assert!(
        dump.len() >= 4,
        "verifications and indexes: {:?}",
        dump.iter().map(|d| &d.0).collect::<Vec<_>>()
    );
    for (key, value, ttl) in dump {
        assert_ne!(ttl, -1, "{key} has no TTL");
        let stored = [key.as_bytes(), b"\n", &value].concat();
        assert!(!holds_number(&stored), "{key} holds a phone number");
        for code in &codes {
            assert!(!holds_code(&stored, code), "{key} holds a code");
        }
    }
}

/// SEC-13: every log line at every level, from otpd and its libraries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_at_trace_level_hold_no_number_and_no_code() {
    let captured = CapturedLogs::install();
    let redis = RedisServer::start();
    let app = TestApp::spawn(&settings(Some(&redis))).await;
    let codes = exercise(&app).await;
    let text = captured.text();
    let logs = text.as_bytes();
    assert!(
        text.contains("verification started") && text.contains("+81 90-****-5678"),
        "logs were captured"
    );
    assert!(text.contains("request_id"), "requests carry their id");
    assert!(!holds_number(logs), "a log line holds a phone number");
    for code in &codes {
        assert!(!holds_code(logs, code), "a log line holds a code");
    }
}

/// OBS-1: metric labels are bounded; no number, id or code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_the_funnel_without_numbers_or_ids() {
    let app = TestApp::spawn(&settings(None)).await;
    let codes = exercise(&app).await;
    let metrics = app.public("/metrics").await;
    assert_eq!(metrics.status(), 200);
    assert!(metrics.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .starts_with("text/plain"));
    let text = metrics.text().await.expect("body");
    for expected in [
        r#"otpd_verifications_started_total{channel="sms",country="81",kind="new",service="demo",surface="http"} 2"#,
        r#"otpd_checks_total{outcome="approved",service="demo",surface="http"} 1"#,
        r#"otpd_checks_total{outcome="wrong",service="demo",surface="http"} 2"#,
        r#"otpd_sends_total{carrier="recording",country="81",outcome="accepted",service="demo"} 2"#,
        r#"otpd_http_requests_total{route="/v1/services/{service}/verifications/{id}/check",status="200"} 2"#,
        r#"otpd_http_request_duration_seconds_count{route="/v1/services/{service}/verifications"} 2"#,
        "otpd_build_info{version=",
        "process_resident_memory_bytes",
    ] {
        assert!(text.contains(expected), "missing {expected}\n{text}");
    }
    assert!(!holds_number(text.as_bytes()));
    for code in &codes {
        assert!(!holds_code(text.as_bytes(), code));
    }
    assert!(!text.contains("+81"), "no number prefixes in labels");
}

/// The Twilio Verify surface answers `to` in full to the backend that sent
/// it, and nowhere else: no log line at any level and no Redis key holds
/// the number or a code (SEC-11, SEC-13).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_twilio_surface_logs_and_stores_no_number_and_no_code() {
    let captured = CapturedLogs::install();
    let redis = RedisServer::start();
    let app = TestApp::spawn(&verifying(&redis)).await;
    let form = |body: String| {
        app.http
            .post(app.url(&format!("/v2/Services/{SERVICE}/{body}")))
            .basic_auth(ACCOUNT, Some(TOKEN))
            .header("content-type", "application/x-www-form-urlencoded")
    };
    let send = |path: &str, body: String| form(path.to_owned()).body(body).send();
    let created = send(
        "Verifications",
        format!("To={PHONE}&Channel=sms").replace('+', "%2B"),
    )
    .await
    .expect("sent");
    let created: serde_json::Value = created.json().await.expect("json");
    assert_eq!(created["to"], PHONE, "the backend gets its number back");
    let sid = created["sid"].as_str().expect("sid").to_owned();
    let code = app.sent_code(PHONE).await;
    for body in [
        format!("To=%2B{}&Code={}", &PHONE[1..], wrong(&code)),
        format!("VerificationSid={sid}&Code={code}"),
    ] {
        let answer = send("VerificationCheck", body).await.expect("sent");
        assert_eq!(answer.status(), 200);
    }
    let text = captured.text();
    assert!(text.contains("+81 90-****-5678"), "logs were captured");
    assert!(
        !holds_number(text.as_bytes()),
        "a log line holds a phone number"
    );
    for (key, value, _) in redis.dump() {
        let stored = [key.as_bytes(), b"\n", &value].concat();
        assert!(!holds_number(&stored), "{key} holds a phone number");
        assert!(!holds_code(&stored, &code), "{key} holds a code");
    }
    for code in [wrong(&code), code] {
        assert!(
            !holds_code(text.as_bytes(), &code),
            "a log line holds a code"
        );
    }
}
