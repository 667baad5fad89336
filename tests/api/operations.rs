//! What operators rely on: request ids, health endpoints, and the metrics
//! listener with the funnel and Redis metrics.

use std::time::Duration;

use crate::support::{assert_has_lines, json_of, settings, RedisServer, TestApp, PHONE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_honoured_when_sane_and_generated_otherwise() {
    let app = TestApp::spawn(&settings(None)).await;
    let with_id = |id: &'static str| {
        app.http
            .get(app.url("/healthz"))
            .header("x-request-id", id)
            .send()
    };
    let kept = with_id("checkout-42.retry_1").await.expect("sent");
    assert_eq!(kept.headers()["x-request-id"], "checkout-42.retry_1");
    for forged in ["has spaces", "{\"json\":1}", "x"] {
        let id = if forged == "x" {
            "x".repeat(65).leak() as &str
        } else {
            forged
        };
        let response = app
            .http
            .get(app.url("/healthz"))
            .header("x-request-id", id)
            .send()
            .await
            .expect("sent");
        let replaced = response.headers()["x-request-id"]
            .to_str()
            .expect("ascii")
            .to_owned();
        assert_ne!(replaced, id);
        assert!(replaced.len() >= 16, "{replaced}");
    }
    let generated = app.public("/healthz").await;
    assert!(!generated.headers()["x-request-id"].is_empty());
    assert_eq!(json_of(generated).await["status"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_reports_the_store() {
    let app = TestApp::spawn(&settings(None)).await;
    let ready = app.public("/readyz").await;
    assert_eq!(ready.status(), 200);
    assert_eq!(json_of(ready).await["status"], "ready");
}

/// With `http.metrics_listen`, `/metrics` leaves the public listener; the
/// time to approval and every Redis operation are measured there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_have_a_listener_of_their_own() {
    let redis = RedisServer::start();
    let mut settings = settings(Some(&redis));
    settings.http.metrics_listen = Some("127.0.0.1:0".parse().expect("address"));
    let app = TestApp::spawn(&settings).await;
    assert_eq!(app.public("/metrics").await.status(), 404);
    let id = app.started(PHONE).await;
    app.clock.advance(Duration::from_secs(25));
    let code = app.code_for(&id).await;
    assert_eq!(json_of(app.check(&id, &code).await).await["valid"], true);
    let base = app.metrics_base.as_ref().expect("a metrics listener");
    let metrics = app
        .http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("sent");
    assert_eq!(metrics.status(), 200);
    let metrics = metrics.text().await.expect("text");
    assert_has_lines(
        &metrics,
        [
            r#"otpd_time_to_approve_seconds_sum{service="demo"} 25"#,
            r#"otpd_time_to_approve_seconds_count{service="demo"} 1"#,
            r#"otpd_redis_duration_seconds_count{operation="start"} 1"#,
            r#"otpd_redis_duration_seconds_count{operation="check"} 1"#,
        ],
    );
    let elsewhere = app
        .http
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect("sent");
    assert_eq!(
        elsewhere.status(),
        404,
        "the metrics listener serves /metrics only"
    );
}

/// Series whose labels are known at start exist at 0 before their first
/// event, so that rates and ratios over them (the pumping alert's
/// conversion, rate-limit surges) have data from the start.
#[tokio::test]
async fn known_series_start_at_zero() {
    let redis = RedisServer::start();
    let app = TestApp::spawn(&settings(Some(&redis))).await;
    assert_has_lines(
        &app.metrics().await,
        [
            r#"otpd_checks_total{outcome="not-found",service="demo",surface="http"} 0"#,
            r#"otpd_checks_total{outcome="approved",service="other",surface="http"} 0"#,
            r#"otpd_rate_limited_total{mode="enforce",scope="range",service="demo"} 0"#,
            r#"otpd_rate_limited_total{mode="enforce",scope="check-failures",service="demo"} 0"#,
            r#"otpd_blocked_total{mode="enforce",reason="country",service="demo"} 0"#,
            r#"otpd_approvals_total{country="81",service="demo"} 0"#,
            r#"otpd_verifications_started_total{channel="sms",country="81",kind="new",service="demo",surface="http"} 0"#,
        ],
    );
    app.public("/readyz").await;
    assert_has_lines(
        &app.metrics().await,
        [r#"otpd_redis_errors_total{operation="ready"} 0"#],
    );
}
