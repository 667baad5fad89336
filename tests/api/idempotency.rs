//! `Idempotency-Key` on start, resend and cancel (REL-6).

use serde_json::json;

use crate::support::{json_of, problem, Backend, TestApp, API_KEY, DEMO_ONLY_KEY, PHONE};

crate::on_redis_and_cluster!(
    a_retried_start_with_the_same_key_sends_once_and_replays_the_answer,
    the_same_key_with_another_request_is_refused,
    keys_are_scoped_per_api_key,
    retries_of_try_later_answers_run_again,
    a_retried_cancel_replays_instead_of_conflicting,
);

async fn start_with_key(app: &TestApp, api_key: &str, key: &str, to: &str) -> reqwest::Response {
    app.http
        .post(app.url("/v1/services/demo/verifications"))
        .bearer_auth(api_key)
        .header("idempotency-key", key)
        .json(&json!({ "to": to, "channel": "sms" }))
        .send()
        .await
        .expect("sent")
}

async fn a_retried_start_with_the_same_key_sends_once_and_replays_the_answer(backend: &Backend) {
    let app = TestApp::spawn(&backend.settings()).await;
    let first = start_with_key(
        &app,
        API_KEY,
        "\"8e03978e-40d5-43e8-bc93-6894a57f9324\"",
        PHONE,
    )
    .await;
    assert_eq!(first.status(), 201);
    let location = first.headers()["location"].clone();
    let first = first.text().await.expect("body");
    for _ in 0..3 {
        let retry = start_with_key(
            &app,
            API_KEY,
            "\"8e03978e-40d5-43e8-bc93-6894a57f9324\"",
            PHONE,
        )
        .await;
        assert_eq!(retry.status(), 201);
        assert_eq!(retry.headers()["location"], location);
        assert_eq!(retry.text().await.expect("body"), first);
    }
    // The bare form of the same key is the same key.
    let bare = start_with_key(&app, API_KEY, "8e03978e-40d5-43e8-bc93-6894a57f9324", PHONE).await;
    assert_eq!(bare.text().await.expect("body"), first);
    assert_eq!(app.sent_to(PHONE).await.len(), 1);
}

async fn the_same_key_with_another_request_is_refused(backend: &Backend) {
    let app = TestApp::spawn(&backend.settings()).await;
    assert_eq!(
        start_with_key(&app, API_KEY, "key-1", PHONE).await.status(),
        201
    );
    let reused = start_with_key(&app, API_KEY, "key-1", "+819087654321").await;
    problem(reused, 422, "idempotency-key-reused").await;
    assert_eq!(app.sent_to("+819087654321").await.len(), 0);
}

async fn keys_are_scoped_per_api_key(backend: &Backend) {
    let app = TestApp::spawn(&backend.settings()).await;
    assert_eq!(
        start_with_key(&app, API_KEY, "shared", PHONE)
            .await
            .status(),
        201
    );
    let other = start_with_key(&app, DEMO_ONLY_KEY, "shared", "+819087654321").await;
    assert_eq!(other.status(), 201, "another API key's key is another key");
}

async fn retries_of_try_later_answers_run_again(backend: &Backend) {
    let mut settings = backend.settings();
    let limits = &mut settings.services.get_mut("demo").expect("demo").limits;
    limits.number_sends = vec![otpd::config::RateSetting {
        count: 1,
        period: std::time::Duration::from_secs(60),
    }];
    let app = TestApp::spawn(&settings).await;
    assert_eq!(
        start_with_key(&app, API_KEY, "first", PHONE).await.status(),
        201
    );
    let body = json!({ "to": PHONE, "channel": "sms", "binding": "another-session" });
    let again = || {
        app.http
            .post(app.url("/v1/services/demo/verifications"))
            .bearer_auth(API_KEY)
            .header("idempotency-key", "retry-me")
            .json(&body)
            .send()
    };
    let limited = again().await.expect("sent");
    assert_eq!(limited.status(), 429, "a 429 is not kept");
    app.clock.advance(std::time::Duration::from_secs(60));
    assert_eq!(
        again().await.expect("sent").status(),
        201,
        "the retry ran again"
    );
    assert_eq!(app.sent_to(PHONE).await.len(), 2);
}

async fn a_retried_cancel_replays_instead_of_conflicting(backend: &Backend) {
    let app = TestApp::spawn(&backend.settings()).await;
    let id = app.started(PHONE).await;
    let cancel = || {
        app.http
            .post(app.url(&format!("/v1/services/demo/verifications/{id}/cancel")))
            .bearer_auth(API_KEY)
            .header("idempotency-key", "cancel-1")
            .json(&json!({}))
            .send()
    };
    let first = cancel().await.expect("sent");
    assert_eq!(first.status(), 200);
    let first = json_of(first).await;
    let again = cancel().await.expect("sent");
    assert_eq!(again.status(), 200);
    assert_eq!(json_of(again).await, first);
    problem(app.cancel(&id).await, 409, "verification-canceled").await;
}
