//! Bad input gets a problem document with its own code and changes nothing
//! (DESIGN invariant 8): Redis holds no new key afterwards.

use reqwest::{Method, RequestBuilder};
use serde_json::json;

use crate::support::{
    assert_has_lines, problem, settings, RedisServer, TestApp, API_KEY, DEMO_ONLY_KEY, PHONE,
};

struct Case {
    label: &'static str,
    status: u16,
    code: &'static str,
    request: fn(&TestApp, &str) -> RequestBuilder,
}

fn post(app: &TestApp, path: &str) -> RequestBuilder {
    app.http
        .request(Method::POST, app.url(path))
        .bearer_auth(API_KEY)
}

fn start(app: &TestApp) -> RequestBuilder {
    post(app, "/v1/services/demo/verifications")
}

const CASES: &[Case] = &[
    Case {
        label: "malformed JSON",
        status: 400,
        code: "malformed-json",
        request: |app, _| {
            start(app)
                .header("content-type", "application/json")
                .body("{\"to\": ")
        },
    },
    Case {
        label: "unknown field",
        status: 400,
        code: "unknown-field",
        request: |app, _| start(app).json(&json!({ "to": PHONE, "channel": "sms", "admin": true })),
    },
    Case {
        label: "missing field",
        status: 400,
        code: "missing-field",
        request: |app, _| start(app).json(&json!({ "channel": "sms" })),
    },
    Case {
        label: "wrong type",
        status: 400,
        code: "invalid-body",
        request: |app, _| start(app).json(&json!({ "to": 819012345678u64, "channel": "sms" })),
    },
    Case {
        label: "not a number",
        status: 400,
        code: "invalid-phone-number",
        request: |app, _| start(app).json(&json!({ "to": "call me", "channel": "sms" })),
    },
    Case {
        label: "fixed line (SEC-15)",
        status: 400,
        code: "invalid-phone-number",
        request: |app, _| start(app).json(&json!({ "to": "03-1234-5678", "channel": "sms" })),
    },
    Case {
        label: "IP phone 050 (SEC-15, JP-1)",
        status: 400,
        code: "invalid-phone-number",
        request: |app, _| start(app).json(&json!({ "to": "050-1234-5678", "channel": "sms" })),
    },
    Case {
        label: "unsupported channel",
        status: 400,
        code: "unsupported-channel",
        request: |app, _| start(app).json(&json!({ "to": PHONE, "channel": "carrier-pigeon" })),
    },
    Case {
        label: "bad locale",
        status: 400,
        code: "invalid-locale",
        request: |app, _| {
            start(app).json(&json!({ "to": PHONE, "channel": "sms", "locale": "日本語" }))
        },
    },
    Case {
        label: "bad app hash",
        status: 400,
        code: "invalid-app-hash",
        request: |app, _| {
            start(app).json(&json!({ "to": PHONE, "channel": "sms", "app_hash": "short" }))
        },
    },
    Case {
        label: "binding over 256 bytes",
        status: 400,
        code: "invalid-binding",
        request: |app, _| {
            start(app).json(&json!({ "to": PHONE, "channel": "sms", "binding": "b".repeat(257) }))
        },
    },
    Case {
        label: "code too short",
        status: 400,
        code: "invalid-code",
        request: |app, id| {
            post(app, &format!("/v1/services/demo/verifications/{id}/check"))
                .json(&json!({ "code": "12345" }))
        },
    },
    Case {
        label: "code with letters",
        status: 400,
        code: "invalid-code",
        request: |app, id| {
            post(app, &format!("/v1/services/demo/verifications/{id}/check"))
                .json(&json!({ "code": "12345a" }))
        },
    },
    Case {
        label: "code by number, bad number",
        status: 400,
        code: "invalid-phone-number",
        request: |app, _| {
            post(app, "/v1/services/demo/checks").json(&json!({ "to": "12", "code": "123456" }))
        },
    },
    Case {
        label: "unknown service",
        status: 404,
        code: "service-not-found",
        request: |app, _| {
            post(app, "/v1/services/nope/verifications")
                .json(&json!({ "to": PHONE, "channel": "sms" }))
        },
    },
    Case {
        label: "body over the limit",
        status: 413,
        code: "payload-too-large",
        request: |app, _| {
            start(app).json(&json!({ "to": PHONE, "channel": "sms", "locale": "x".repeat(5000) }))
        },
    },
    Case {
        label: "wrong content type",
        status: 415,
        code: "unsupported-media-type",
        request: |app, _| {
            start(app)
                .header("content-type", "text/plain")
                .body("to=+819012345678")
        },
    },
    Case {
        label: "no API key",
        status: 401,
        code: "unauthorized",
        request: |app, _| {
            app.http
                .post(app.url("/v1/services/demo/verifications"))
                .json(&json!({ "to": PHONE, "channel": "sms" }))
        },
    },
    Case {
        label: "unknown API key",
        status: 401,
        code: "unauthorized",
        request: |app, _| {
            app.http
                .post(app.url("/v1/services/demo/verifications"))
                .bearer_auth("otpd_guess")
                .json(&json!({ "to": PHONE, "channel": "sms" }))
        },
    },
    Case {
        label: "API key not allowed for the service",
        status: 403,
        code: "service-forbidden",
        request: |app, _| {
            let path = app.url("/v1/services/other/verifications");
            app.http
                .post(path)
                .bearer_auth(DEMO_ONLY_KEY)
                .json(&json!({ "to": PHONE, "channel": "sms" }))
        },
    },
    Case {
        label: "malformed id",
        status: 404,
        code: "verification-not-found",
        request: |app, _| {
            post(app, "/v1/services/demo/verifications/not-an-id/check")
                .json(&json!({ "code": "123456" }))
        },
    },
    Case {
        label: "bad Idempotency-Key",
        status: 400,
        code: "invalid-idempotency-key",
        request: |app, _| {
            start(app)
                .header("idempotency-key", "")
                .json(&json!({ "to": PHONE, "channel": "sms" }))
        },
    },
    Case {
        label: "wrong method",
        status: 405,
        code: "method-not-allowed",
        request: |app, _| {
            app.http
                .delete(app.url("/v1/services/demo/verifications"))
                .bearer_auth(API_KEY)
        },
    },
    Case {
        label: "unknown route",
        status: 404,
        code: "not-found",
        request: |app, _| app.http.get(app.url("/v2/anything")).bearer_auth(API_KEY),
    },
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_gets_its_problem_and_changes_nothing() {
    let redis = RedisServer::start();
    let app = TestApp::spawn(&settings(Some(&redis))).await;
    let id = app.started("+819011112222").await;
    let keys = redis.keys();
    for case in CASES {
        let response = (case.request)(&app, &id).send().await.expect("sent");
        let label = case.label;
        assert_eq!(response.status(), case.status, "{label}");
        if case.status == 401 {
            assert_eq!(response.headers()["www-authenticate"], "Bearer", "{label}");
        }
        problem(response, case.status, case.code).await;
        redis.assert_no_new_keys(&keys, label);
    }
    assert_eq!(app.sent_count().await, 1, "no bad input sent an SMS");
    let status = crate::support::json_of(app.status(&id).await).await;
    assert_eq!(status["attempts_left"], 5, "invalid codes spend no attempt");
}

/// Requests that HTTP/1.1 itself refuses, sent as raw bytes (no client
/// library sends them), each with the status and `code` of its answer.
const MALFORMED: &[(&str, u16, &str, &str)] = &[
    (
        "DEL byte in Idempotency-Key",
        400,
        "malformed-request",
        "Idempotency-Key: abc\x7fdef\r\nContent-Length: 2\r\n\r\n{}",
    ),
    (
        "NUL byte in a header",
        400,
        "malformed-request",
        "X-Note: a\x00b\r\nContent-Length: 2\r\n\r\n{}",
    ),
    (
        "Transfer-Encoding with Content-Length",
        400,
        "malformed-request",
        "Transfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    ),
];

/// The answer to raw `request`, read until otpd closes the connection.
async fn raw_answer(app: &TestApp, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = app.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connects");
    stream.write_all(request).await.expect("writes");
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(20),
        stream.read_to_end(&mut answer),
    )
    .await
    .expect("otpd answers and closes")
    .expect("reads");
    String::from_utf8_lossy(&answer).into_owned()
}

fn assert_problem_answer(answer: &str, status: u16, code: &str, label: &str) {
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    let head = head.to_ascii_lowercase();
    assert!(
        head.starts_with(&format!("http/1.1 {status} ")),
        "{label}: {answer}"
    );
    assert!(
        head.contains("content-type: application/problem+json"),
        "{label}: {answer}"
    );
    assert!(head.contains("\r\nx-request-id: "), "{label}: {answer}");
    let body: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
    assert_eq!(body["code"], code, "{label}");
    assert_eq!(body["status"], status, "{label}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_http_refuses_get_problems_too() {
    let redis = RedisServer::start();
    let app = TestApp::spawn(&settings(Some(&redis))).await;
    let keys = redis.keys();
    let head = format!(
        "POST /v1/services/demo/verifications HTTP/1.1\r\nHost: otpd\r\n\
         Authorization: Bearer {API_KEY}\r\nContent-Type: application/json\r\n"
    );
    for (label, status, code, rest) in MALFORMED {
        let answer = raw_answer(&app, format!("{head}{rest}").as_bytes()).await;
        assert_problem_answer(&answer, *status, code, label);
    }
    let many: String = (0..500).map(|n| format!("X-Header-{n}: {n}\r\n")).collect();
    let answer = raw_answer(&app, format!("{head}{many}\r\n").as_bytes()).await;
    assert_problem_answer(&answer, 431, "headers-too-large", "500 headers");
    redis.assert_no_new_keys(&keys, "malformed requests");
    assert_has_lines(
        &app.metrics().await,
        [
            r#"otpd_http_requests_total{route="unparsed",status="400"} 3"#,
            r#"otpd_http_requests_total{route="unparsed",status="431"} 1"#,
        ],
    );
}

#[tokio::test]
async fn headers_that_never_end_get_a_408_problem() {
    let mut settings = settings(None);
    settings.http.request_timeout = std::time::Duration::from_secs(1);
    let app = TestApp::spawn(&settings).await;
    let answer = raw_answer(&app, b"GET /healthz HTTP/1.1\r\nHost: otpd\r\n").await;
    assert_problem_answer(&answer, 408, "request-timeout", "slow headers");
}
