//! Faults: Redis going away must never approve a code (REL-1), and otpd
//! recovers by itself when Redis is back.

use std::time::Duration;

use crate::support::{assert_has_lines, json_of, problem, settings, RedisServer, TestApp, PHONE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_answers_503_and_recovers_without_a_restart() {
    let mut redis = RedisServer::start();
    let app = TestApp::spawn(&settings(Some(&redis))).await;
    let id = app.started(PHONE).await;
    let code = app.sent_code(PHONE).await;
    assert_eq!(app.public("/readyz").await.status(), 200);

    redis.stop();
    let check = app.check(&id, &code).await;
    assert_eq!(check.headers()["retry-after"], "1");
    problem(check, 503, "store-unavailable").await;
    problem(app.start("+819087654321").await, 503, "store-unavailable").await;
    problem(app.status(&id).await, 503, "store-unavailable").await;
    problem(app.public("/readyz").await, 503, "store-unavailable").await;
    let metrics = app.metrics().await;
    let errors = ["limit", "get", "ready"]
        .map(|operation| format!(r#"otpd_redis_errors_total{{operation="{operation}"}}"#));
    assert_has_lines(&metrics, errors);
    assert_eq!(app.public("/healthz").await.status(), 200);
    assert_eq!(
        app.carrier.bodies_to("+819087654321").len(),
        0,
        "nothing sent while the store is down"
    );

    // Back, empty (no persistence), and without the scripts: EVALSHA must
    // fall back on NOSCRIPT.
    redis.start_again();
    let ready = app.becomes_ready(Duration::from_secs(10)).await;
    assert!(ready, "otpd did not reconnect");
    problem(app.check(&id, &code).await, 404, "verification-not-found").await;
    let id = app.started(PHONE).await;
    let code = app.sent_code(PHONE).await;
    assert_eq!(json_of(app.check(&id, &code).await).await["valid"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otpd_starts_while_redis_is_down_and_serves_once_it_is_up() {
    let mut redis = RedisServer::start();
    redis.stop();
    let app = TestApp::spawn(&settings(Some(&redis))).await;
    problem(app.public("/readyz").await, 503, "store-unavailable").await;
    redis.start_again();
    let ready = app.becomes_ready(Duration::from_secs(10)).await;
    assert!(ready);
    app.started(PHONE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flushed_scripts_are_reloaded() {
    let redis = RedisServer::start();
    let app = TestApp::spawn(&settings(Some(&redis))).await;
    let id = app.started(PHONE).await;
    let mut connection = redis.client().get_connection().expect("connection");
    redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query::<()>(&mut connection)
        .expect("SCRIPT FLUSH");
    let code = app.sent_code(PHONE).await;
    assert_eq!(json_of(app.check(&id, &code).await).await["valid"], true);
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut connection)
        .expect("INFO");
    assert!(
        stats.contains("cmdstat_evalsha:"),
        "scripts run by EVALSHA: {stats}"
    );
    assert!(
        stats.contains("cmdstat_script|load:"),
        "NOSCRIPT made otpd load the script: {stats}"
    );
    assert!(
        !stats.contains("cmdstat_eval:"),
        "the script body is never sent with EVAL: {stats}"
    );
}
