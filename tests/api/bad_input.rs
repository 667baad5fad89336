//! Bad input gets a problem document with its own code and changes nothing
//! (DESIGN invariant 8): Redis holds no new key afterwards.

use reqwest::{Method, RequestBuilder};
use serde_json::json;

use crate::support::{problem, settings, RedisServer, TestApp, API_KEY, DEMO_ONLY_KEY, PHONE};

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
