//! After a carrier accepted a message (REL-4, SMPP-7): a send whose receipt
//! is overdue shows `delivery_unknown`; with `delivery.reroute` the same
//! code goes once more through the next carrier of the route when the
//! receipt says `undelivered` or none comes within
//! `delivery.receipt_timeout`, while the code lives.

use std::time::Duration;

use otpd::carrier::RecordingCarrier;
use otpd::config::Settings;
use otpd::domain::ManualClock;
use serde_json::Value;

use crate::support::{
    assert_has_lines, code_in, holds, json_of, settings, until, RedisServer, TestApp, PHONE,
};

const RECEIPT_TIMEOUT: Duration = Duration::from_secs(60);

/// A primary that gives receipts, then a backup that gives none.
async fn routed(settings: &Settings) -> (TestApp, RecordingCarrier, RecordingCarrier) {
    let primary = RecordingCarrier::named("primary").with_receipts();
    let backup = RecordingCarrier::named("backup");
    let app = TestApp::spawn_routed(
        settings,
        vec![primary.clone(), backup.clone()],
        ManualClock::new(),
    )
    .await;
    (app, primary, backup)
}

fn rerouting(redis: &RedisServer) -> Settings {
    let mut settings = settings(Some(redis));
    settings.delivery.reroute = true;
    settings.delivery.receipt_timeout = RECEIPT_TIMEOUT;
    settings
}

async fn delivery_of(app: &TestApp, id: &str) -> Value {
    json_of(app.status(id).await).await["delivery"].clone()
}

/// Waits until `carrier` took `count` messages for `id`.
async fn sent_by(carrier: &RecordingCarrier, id: &str, count: usize) -> Vec<String> {
    until(
        "the carrier to take the message",
        Duration::from_secs(10),
        async || carrier.bodies_for(id).len() >= count,
    )
    .await;
    carrier.bodies_for(id)
}

/// REL-4: the primary accepted the code and its receipt says
/// `undelivered`: the same code goes through the backup at once, the
/// delivery names both, and it is counted. It happens once: the backup's
/// own failure does not send a third SMS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undelivered_code_goes_once_more_through_the_next_carrier() {
    let redis = RedisServer::start();
    let (app, primary, backup) = routed(&rerouting(&redis)).await;
    let id = app.started(PHONE).await;
    let first = sent_by(&primary, &id, 1).await;
    app.settled().await;
    let sent = delivery_of(&app, &id).await;
    assert_eq!(
        (sent["status"].as_str(), sent["carrier"].as_str()),
        (Some("sent"), Some("primary"))
    );
    app.receipt("primary", sent["message_id"].as_str().expect("id"), false)
        .await;
    let again = sent_by(&backup, &id, 1).await;
    assert_eq!(code_in(&again[0]), code_in(&first[0]), "the same code");
    app.settled().await;
    let delivery = delivery_of(&app, &id).await;
    assert_eq!(delivery["status"], "sent", "{delivery}");
    assert_eq!(delivery["carrier"], "backup");
    assert_eq!(delivery["rerouted_from"], "primary");
    assert_eq!(delivery["reroute_reason"], "undelivered");
    assert_has_lines(
        &app.metrics().await,
        [r#"otpd_delivery_reroutes_total{from="primary",outcome="sent",reason="undelivered"} 1"#],
    );
    app.clock.advance(RECEIPT_TIMEOUT * 2);
    holds("no third SMS", Duration::from_millis(300), async || {
        primary.count() + backup.count() == 2
    })
    .await;
    let checked = json_of(app.check(&id, &code_in(&first[0])).await).await;
    assert_eq!(checked["valid"], true);
}

/// REL-4, SMPP-7: no receipt within `receipt_timeout`: the send is
/// `delivery_unknown`, and then goes through the backup; a send whose
/// receipt said `delivered` in time never does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_receipt_reroutes_after_the_receipt_timeout() {
    let redis = RedisServer::start();
    let (app, primary, backup) = routed(&rerouting(&redis)).await;
    let delivered = app.started("+819011112222").await;
    let lost = app.started(PHONE).await;
    sent_by(&primary, &lost, 1).await;
    sent_by(&primary, &delivered, 1).await;
    app.settled().await;
    let message_id = delivery_of(&app, &delivered).await["message_id"].clone();
    app.receipt("primary", message_id.as_str().expect("id"), true)
        .await;
    app.clock.advance(RECEIPT_TIMEOUT + Duration::from_secs(1));
    sent_by(&backup, &lost, 1).await;
    app.settled().await;
    let delivery = delivery_of(&app, &lost).await;
    assert_eq!(delivery["carrier"], "backup", "{delivery}");
    assert_eq!(delivery["reroute_reason"], "no_receipt");
    holds(
        "the delivered code is not sent again",
        Duration::from_millis(300),
        async || backup.bodies_for(&delivered).is_empty(),
    )
    .await;
    assert_eq!(delivery_of(&app, &delivered).await["status"], "delivered");
}

/// SMPP-7 with re-routing off (the default): an overdue receipt shows as
/// `delivery_unknown` and nothing more is sent; a carrier that gives no
/// receipts stays `sent`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overdue_receipt_is_delivery_unknown() {
    let redis = RedisServer::start();
    let mut settings = settings(Some(&redis));
    settings.delivery.receipt_timeout = RECEIPT_TIMEOUT;
    let (app, primary, backup) = routed(&settings).await;
    let id = app.started(PHONE).await;
    sent_by(&primary, &id, 1).await;
    app.settled().await;
    app.clock.advance(RECEIPT_TIMEOUT - Duration::from_secs(1));
    assert_eq!(delivery_of(&app, &id).await["status"], "sent");
    app.clock.advance(Duration::from_secs(2));
    assert_eq!(delivery_of(&app, &id).await["status"], "delivery_unknown");
    holds(
        "nothing more is sent",
        Duration::from_millis(300),
        async || backup.count() == 0 && primary.count() == 1,
    )
    .await;

    app.stop_and_wait().await;
    let quiet = RecordingCarrier::named("quiet");
    let app = TestApp::spawn_with(&settings, quiet.clone(), ManualClock::new()).await;
    let id = app.started("+819011112222").await;
    sent_by(&quiet, &id, 1).await;
    app.settled().await;
    app.clock.advance(RECEIPT_TIMEOUT * 2);
    assert_eq!(delivery_of(&app, &id).await["status"], "sent");
}
