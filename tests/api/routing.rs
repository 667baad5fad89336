//! Routing between carriers: a failing primary hands the send to the next
//! carrier, an open circuit skips a dead one, and a rejection is not paid
//! for twice unless the operator asks for it.

use otpd::carrier::RecordingCarrier;
use otpd::config::Settings;
use otpd::domain::ManualClock;

use crate::support::{assert_has_lines, json_of, settings, RedisServer, TestApp, PHONE};

async fn routed(settings: &Settings) -> (TestApp, RecordingCarrier, RecordingCarrier) {
    let (primary, secondary) = (
        RecordingCarrier::named("primary"),
        RecordingCarrier::named("secondary"),
    );
    let app = TestApp::spawn_routed(
        settings,
        vec![primary.clone(), secondary.clone()],
        ManualClock::new(),
    )
    .await;
    (app, primary, secondary)
}

/// Circuits that open at the first failure and let a probe through at
/// once.
fn tripping_at_once(redis: &RedisServer) -> Settings {
    let mut settings = settings(Some(redis));
    settings.routing.circuit_failures = 1;
    settings.routing.circuit_cooldown = std::time::Duration::ZERO;
    settings
}

async fn assert_metrics(app: &TestApp, lines: &[&str]) {
    assert_has_lines(&app.metrics().await, lines);
}

async fn delivery_of(app: &TestApp, id: &str) -> serde_json::Value {
    app.settled().await;
    json_of(app.status(id).await).await["delivery"].clone()
}

/// A primary failing temporarily (5xx, timeout, throttled) → the secondary
/// delivers at once, and the state names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_primary_fails_over_to_the_secondary() {
    let redis = RedisServer::start();
    let (app, primary, secondary) = routed(&settings(Some(&redis))).await;
    primary.fail_next(1);
    let id = app.started(PHONE).await;
    let delivery = delivery_of(&app, &id).await;
    assert_eq!(delivery["status"], "sent");
    assert_eq!(delivery["carrier"], "secondary");
    assert_eq!((primary.calls(), primary.count()), (1, 0));
    assert_eq!(secondary.bodies_for(&id).len(), 1);
    assert_metrics(
        &app,
        &[
            r#"otpd_sends_total{carrier="primary",country="81",outcome="temporary",service="demo"} 1"#,
            r#"otpd_sends_total{carrier="secondary",country="81",outcome="accepted",service="demo"} 1"#,
        ],
    )
    .await;
}

/// A primary that never answers is given up after `carrier_timeout` and
/// the secondary delivers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_timing_out_fails_over_to_the_secondary() {
    let redis = RedisServer::start();
    let mut settings = settings(Some(&redis));
    settings.delivery.carrier_timeout = std::time::Duration::from_millis(100);
    let (app, primary, secondary) = routed(&settings).await;
    primary.hang_next(1);
    let id = app.started(PHONE).await;
    assert_eq!(delivery_of(&app, &id).await["carrier"], "secondary");
    assert_eq!((primary.hanging(), primary.count()), (1, 0));
    assert_eq!(secondary.bodies_for(&id).len(), 1);
}

/// After `circuit_failures` failures in a row the primary's circuit opens:
/// later sends go straight to the secondary without calling the primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_circuit_skips_the_dead_carrier() {
    let redis = RedisServer::start();
    let mut settings = settings(Some(&redis));
    settings.routing.circuit_failures = 2;
    settings.routing.circuit_cooldown = std::time::Duration::from_secs(600);
    let (app, primary, secondary) = routed(&settings).await;
    primary.fail_next(usize::MAX);
    for n in 0..5 {
        let id = app.started(&format!("+8190{:04}0000", 1300 + n)).await;
        assert_eq!(delivery_of(&app, &id).await["carrier"], "secondary");
    }
    assert_eq!(primary.calls(), 2, "the circuit opened after two failures");
    assert_eq!(secondary.count(), 5);
    assert_metrics(
        &app,
        &[
            r#"otpd_carrier_circuit_open{carrier="primary"} 1"#,
            r#"otpd_carrier_circuit_open{carrier="secondary"} 0"#,
        ],
    )
    .await;
}

/// Once the cool-down is over one probe goes to the primary; its success
/// closes the circuit and the primary takes the traffic again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successful_probe_closes_the_circuit() {
    let redis = RedisServer::start();
    let settings = tripping_at_once(&redis);
    let (app, primary, secondary) = routed(&settings).await;
    primary.fail_next(1);
    let first = app.started(PHONE).await;
    assert_eq!(delivery_of(&app, &first).await["carrier"], "secondary");
    let second = app.started("+819011110000").await;
    assert_eq!(delivery_of(&app, &second).await["carrier"], "primary");
    assert!(app
        .metrics()
        .await
        .contains(r#"otpd_carrier_circuit_open{carrier="primary"} 0"#));
    assert_eq!(secondary.count(), 1);
}

/// A rejection (invalid number, blocked …) is final by default: no second
/// paid attempt on another carrier, and the send is dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejection_does_not_fail_over_by_default() {
    let redis = RedisServer::start();
    let (app, primary, secondary) = routed(&settings(Some(&redis))).await;
    primary.reject_next(1);
    let id = app.started(PHONE).await;
    assert_eq!(delivery_of(&app, &id).await["status"], "failed");
    assert_eq!(primary.calls(), 1, "a rejection is not retried");
    assert_eq!(secondary.calls(), 0);
    assert!(app.metrics().await.contains("otpd_dead_letters_total 1"));
}

/// With `failover_on_rejection` the operator pays for a second try.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejection_fails_over_when_configured() {
    let redis = RedisServer::start();
    let mut settings = settings(Some(&redis));
    settings.routing.failover_on_rejection = true;
    let (app, primary, secondary) = routed(&settings).await;
    primary.reject_next(1);
    let id = app.started(PHONE).await;
    assert_eq!(delivery_of(&app, &id).await["carrier"], "secondary");
    assert_eq!(secondary.bodies_for(&id).len(), 1);
}

/// The incident of issue 14: both carriers fail, the primary recovers
/// first and ends the send. The backup's probe was never settled, so the
/// next primary outage had no failover; now the backup takes the send.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_skipped_while_half_open_still_takes_the_next_outage() {
    let redis = RedisServer::start();
    let settings = tripping_at_once(&redis);
    let (app, primary, secondary) = routed(&settings).await;
    primary.fail_next(1);
    secondary.fail_next(1);
    let first = app.started(PHONE).await;
    assert_eq!(delivery_of(&app, &first).await["carrier"], "primary");
    primary.fail_next(100);
    let second = app.started("+819011110000").await;
    let delivery = delivery_of(&app, &second).await;
    assert_eq!(
        (delivery["status"].clone(), delivery["carrier"].clone()),
        (serde_json::json!("sent"), serde_json::json!("secondary")),
        "{delivery}"
    );
}

/// A throttled probe is settled too: the primary gets the next probe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_probe_does_not_shut_the_carrier_out() {
    let redis = RedisServer::start();
    let settings = tripping_at_once(&redis);
    let (app, primary, _secondary) = routed(&settings).await;
    primary.fail_next(1);
    let first = app.started(PHONE).await;
    assert_eq!(delivery_of(&app, &first).await["carrier"], "secondary");
    primary.throttle_next(1);
    let second = app.started("+819011110000").await;
    assert_eq!(delivery_of(&app, &second).await["carrier"], "secondary");
    let third = app.started("+819022220000").await;
    assert_eq!(delivery_of(&app, &third).await["carrier"], "primary");
}
