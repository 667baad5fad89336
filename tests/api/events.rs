//! Lifecycle events (issue 15): a service's events endpoint, here a local
//! receiver that refuses any body whose Standard Webhooks signature does
//! not verify, gets every transition of every verification in order, never
//! a code or a full number; a failing endpoint gets the same events again,
//! in order, until its last try dead-letters them.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use otpd::carrier::WebhookSettings;
use otpd::config::Settings;
use serde_json::{json, Value};

use crate::gateway::{start_gateway, Gateway, SECRET};
use crate::support::{
    assert_has_lines, json_of, problem, settings, until, wrong, RedisServer, TestApp, PHONE,
};

/// `settings` with the `demo` service's events going to `url`, polled every
/// 50 ms, retried after 20 ms doubling to 100 ms.
pub fn with_events(mut settings: Settings, url: &str) -> Settings {
    let demo = settings.services.get_mut("demo").expect("demo");
    demo.events = Some(WebhookSettings {
        url: url.into(),
        secret: SECRET.into(),
        timeout: Duration::from_secs(2),
    });
    let events = &mut settings.events;
    events.poll = Duration::from_millis(50);
    events.lease = Duration::from_millis(300);
    events.retry_base = Duration::from_millis(20);
    events.retry_max = Duration::from_millis(100);
    settings
}

/// The events the receiver took, by verification (`blocked` under ""), each
/// as (type, reason), in the order they arrived.
pub fn by_verification(bodies: &[Value]) -> BTreeMap<String, Vec<(String, String)>> {
    let mut grouped: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for body in bodies {
        let data = &body["data"];
        let id = data["verification_id"].as_str().unwrap_or_default();
        let kind = body["type"].as_str().expect("type");
        let reason = data["reason"].as_str().unwrap_or_default();
        grouped.entry(id.to_owned()).or_default().push((
            kind.trim_start_matches("verification.").into(),
            reason.into(),
        ));
    }
    grouped
}

/// Each verification's events arrived in the order they happened.
pub fn assert_in_order(bodies: &[Value]) {
    let mut last: BTreeMap<&str, u64> = BTreeMap::new();
    for body in bodies {
        let data = &body["data"];
        let Some(id) = data["verification_id"].as_str() else {
            continue;
        };
        let sequence = data["sequence"].as_u64().expect("sequence");
        let before = last.insert(id, sequence).unwrap_or(0);
        assert!(sequence > before, "{id}: event {sequence} after {before}");
    }
}

fn kinds(events: &[(String, String)]) -> Vec<&str> {
    events.iter().map(|(kind, _)| kind.as_str()).collect()
}

/// Every transition, each verification's in order, signed (the receiver
/// refuses anything else, and an undelivered event would never arrive):
/// started, sent, delivered, approved; canceled; failed (attempts used
/// up); expired; blocked (country, no verification). No body holds a code
/// or the full number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transition_reaches_the_endpoint_signed_and_in_order() {
    let redis = RedisServer::start();
    let receiver = Gateway::default();
    receiver.open.store(true, Ordering::SeqCst);
    let url = start_gateway(receiver.clone());
    let mut settings = with_events(settings(Some(&redis)), &url);
    let demo = settings.services.get_mut("demo").expect("demo");
    demo.max_attempts = 2;
    demo.limits.countries = vec!["JP".into()];
    let carrier = otpd::carrier::RecordingCarrier::new().with_receipts();
    let app = TestApp::spawn_with(&settings, carrier, Default::default()).await;

    let approved = app.started(PHONE).await;
    app.delivered_to(PHONE, 1).await;
    let code = app.code_for(&approved).await;
    let sent = json_of(app.status(&approved).await).await;
    let message_id = sent["delivery"]["message_id"].as_str().expect("message id");
    app.receipt("recording", message_id, true).await;
    app.check(&approved, &wrong(&code)).await;
    assert_eq!(
        json_of(app.check(&approved, &code).await).await["valid"],
        true
    );

    let canceled = app.started("+819011110001").await;
    app.delivered_to("+819011110001", 1).await;
    assert_eq!(app.cancel(&canceled).await.status(), 200);

    let failed = app.started("+819011110002").await;
    app.delivered_to("+819011110002", 1).await;
    let failed_code = app.code_for(&failed).await;
    for _ in 0..2 {
        app.check(&failed, &wrong(&failed_code)).await;
    }

    let expired = app.started("+819011110003").await;
    app.delivered_to("+819011110003", 1).await;
    app.clock.advance(Duration::from_secs(301));

    let body = json!({ "to": "+447400123456", "channel": "sms" });
    problem(
        app.post("/v1/services/demo/verifications", body).await,
        422,
        "country-not-allowed",
    )
    .await;

    let bodies = || receiver.bodies.lock().expect("receiver").clone();
    until("every event", Duration::from_secs(20), async || {
        bodies().len() >= 14
    })
    .await;
    let bodies = bodies();
    let grouped = by_verification(&bodies);
    assert_eq!(
        kinds(&grouped[&approved]),
        ["started", "sent", "delivered", "approved"]
    );
    assert_eq!(grouped[&canceled][2], ("canceled".into(), "request".into()));
    assert_eq!(kinds(&grouped[&failed]), ["started", "sent", "failed"]);
    assert_eq!(kinds(&grouped[&expired]), ["started", "sent", "expired"]);
    assert_eq!(grouped[""], [("blocked".to_owned(), "country".to_owned())]);
    assert_eq!(bodies.len(), 14, "each once: {bodies:?}");
    assert_in_order(&bodies);
    let sent_event = bodies
        .iter()
        .find(|body| body["type"] == "verification.sent")
        .expect("a sent event");
    assert_eq!(sent_event["data"]["carrier"], "recording");
    assert_eq!(sent_event["data"]["country"], "JP");
    assert_eq!(sent_event["data"]["channel"], "sms");
    let text = serde_json::to_string(&bodies).expect("json");
    assert!(
        !text.contains(&code) && !text.contains(&failed_code),
        "{text}"
    );
    assert!(
        !text.contains("12345678") && !text.contains("7400123456"),
        "{text}"
    );
    let metrics = app.metrics().await;
    assert_has_lines(
        &metrics,
        [r#"otpd_events_total{outcome="delivered",service="demo",type="approved"} 1"#],
    );
}

/// The endpoint answers 503 for a while: the same events come again, in
/// order, and every one arrives once it recovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_endpoint_gets_the_events_again_in_order() {
    let redis = RedisServer::start();
    let receiver = Gateway::default();
    let url = start_gateway(receiver.clone());
    let app = TestApp::spawn(&with_events(settings(Some(&redis)), &url)).await;
    let ids = [app.started(PHONE).await, app.started("+819011110001").await];
    app.settled().await;
    until("retries", Duration::from_secs(10), async || {
        receiver.attempts.load(Ordering::SeqCst) >= 6
    })
    .await;
    receiver.open.store(true, Ordering::SeqCst);
    let bodies = || receiver.bodies.lock().expect("receiver").clone();
    until("every event", Duration::from_secs(10), async || {
        bodies().len() >= 4
    })
    .await;
    let grouped = by_verification(&bodies());
    for id in &ids {
        assert_eq!(kinds(&grouped[id]), ["started", "sent"], "{id}");
    }
    assert_in_order(&bodies());
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(r#"otpd_events_total{outcome="retried",service="demo",type="started"}"#),
        "{metrics}"
    );
}

/// An endpoint that never answers 2xx: each event is tried `max_tries`
/// times, then dead-lettered, and the queue moves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_an_endpoint_keeps_refusing_are_dead_lettered() {
    let redis = RedisServer::start();
    let receiver = Gateway::default();
    let url = start_gateway(receiver.clone());
    let mut settings = with_events(settings(Some(&redis)), &url);
    settings.events.max_tries = 2;
    let app = TestApp::spawn(&settings).await;
    app.started(PHONE).await;
    app.settled().await;
    until(
        "both events dead-lettered",
        Duration::from_secs(10),
        async || {
            let metrics = app.metrics().await;
            ["started", "sent"].iter().all(|kind| {
                metrics.contains(&format!(
                    r#"otpd_events_total{{outcome="dead_lettered",service="demo",type="{kind}"}} 1"#
                ))
            })
        },
    )
    .await;
    assert_eq!(
        receiver.attempts.load(Ordering::SeqCst),
        4,
        "two tries each"
    );
    let dead: usize = redis
        .keys()
        .iter()
        .filter(|key| key.ends_with(":ed"))
        .map(|key| {
            redis
                .query::<usize>(redis::cmd("XLEN").arg(key))
                .expect("XLEN")
        })
        .sum();
    assert_eq!(dead, 2);
}
