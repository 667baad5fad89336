//! Delivery receipts over HTTP: a receipt signed by the carrier updates the
//! send's state and the metrics once; an unsigned, forged or stale one is
//! refused with 401 and changes nothing (REQUIREMENTS.md: receipts are
//! authenticated like any other input).

use std::time::Duration;

use otpd::carrier::WebhookSettings;
use otpd::config::{CarrierSettings, Settings};
use serde_json::Value;

use crate::gateway::{
    receipt_body, signed_headers, start_gateway, unix_now, Gateway, Headers, SECRET,
};
use crate::support::{assert_has_lines, json_of, problem, Backend, TestApp, PHONE};

crate::on_redis_and_cluster!(
    a_signed_receipt_records_delivery_once,
    an_undelivered_receipt_lets_the_user_ask_again_at_once,
    forged_receipts_are_refused_and_change_nothing,
    receipts_for_unknown_carriers_or_malformed_ones_are_refused,
);

const RECEIPTS: &str = "/v1/carriers/gateway/receipts";

fn with_gateway(settings: &mut Settings, url: String) {
    settings.carriers.insert(
        "gateway".into(),
        CarrierSettings::Webhook(WebhookSettings {
            url,
            secret: SECRET.into(),
            timeout: Duration::from_secs(2),
        }),
    );
    settings.routing.default = vec!["gateway".into()];
}

/// otpd sending through the webhook carrier to an open gateway, and one
/// verification whose send the gateway accepted.
async fn sent_through_gateway(backend: &Backend) -> (TestApp, String, String) {
    let gateway = Gateway::default();
    gateway
        .open
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let mut settings = backend.settings();
    with_gateway(&mut settings, start_gateway(gateway));
    let app = TestApp::spawn_configured(&settings).await;
    let id = app.started(PHONE).await;
    app.settled().await;
    let delivery = json_of(app.status(&id).await).await["delivery"].clone();
    assert_eq!(
        (delivery["status"].as_str(), delivery["carrier"].as_str()),
        (Some("sent"), Some("gateway"))
    );
    let message_id = delivery["message_id"]
        .as_str()
        .expect("message id")
        .to_owned();
    (app, id, message_id)
}

async fn post_receipt(
    app: &TestApp,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> reqwest::Response {
    let mut request = app.http.post(app.url(RECEIPTS)).body(body);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    request.send().await.expect("sent")
}

async fn delivery_status(app: &TestApp, id: &str) -> Value {
    json_of(app.status(id).await).await["delivery"]["status"].clone()
}

async fn a_signed_receipt_records_delivery_once(backend: &Backend) {
    let (app, id, message_id) = sent_through_gateway(backend).await;
    app.clock.advance(Duration::from_secs(3));
    let body = receipt_body(&id, &message_id, "delivered");
    let headers = signed_headers(SECRET, unix_now(), &body);
    assert_eq!(
        post_receipt(&app, &headers, body.clone()).await.status(),
        204
    );
    assert_eq!(delivery_status(&app, &id).await, "delivered");
    // The carrier retries its callback: harmless.
    assert_eq!(post_receipt(&app, &headers, body).await.status(), 204);
    assert_eq!(delivery_status(&app, &id).await, "delivered");
    let metrics = app.metrics().await;
    assert_has_lines(
        &metrics,
        [
            r#"otpd_delivery_receipts_total{carrier="gateway",status="delivered"} 1"#,
            r#"otpd_delivery_receipts_total{carrier="gateway",status="ignored"} 1"#,
            r#"otpd_send_to_delivery_seconds_sum{carrier="gateway"} 3"#,
            r#"otpd_send_to_delivery_seconds_count{carrier="gateway"} 1"#,
        ],
    );
}

async fn an_undelivered_receipt_lets_the_user_ask_again_at_once(backend: &Backend) {
    let (app, id, message_id) = sent_through_gateway(backend).await;
    let body = receipt_body(&id, &message_id, "undelivered");
    let headers = signed_headers(SECRET, unix_now(), &body);
    assert_eq!(post_receipt(&app, &headers, body).await.status(), 204);
    assert_eq!(delivery_status(&app, &id).await, "undelivered");
    assert_eq!(
        app.resend(&id).await.status(),
        200,
        "no cooldown after a lost code"
    );
}

/// Unsigned, signed with another key, tampered with after signing, or
/// replayed after the five-minute window: 401, and the state stays `sent`.
async fn forged_receipts_are_refused_and_change_nothing(backend: &Backend) {
    let (app, id, message_id) = sent_through_gateway(backend).await;
    let body = receipt_body(&id, &message_id, "delivered");
    let now = unix_now();
    let tampered = receipt_body(&id, &message_id, "undelivered");
    let other_key = "whsec_".to_owned() + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=";
    let forgeries: Vec<(&str, Headers, Vec<u8>)> = vec![
        ("unsigned", Vec::new(), body.clone()),
        (
            "another key",
            signed_headers(&other_key, now, &body),
            body.clone(),
        ),
        (
            "tampered body",
            signed_headers(SECRET, now, &body),
            tampered,
        ),
        (
            "replayed late",
            signed_headers(SECRET, now - 600, &body),
            body.clone(),
        ),
        (
            "from the future",
            signed_headers(SECRET, now + 600, &body),
            body.clone(),
        ),
    ];
    for (what, headers, body) in forgeries {
        let refused = post_receipt(&app, &headers, body).await;
        let answer = problem(refused, 401, "bad-signature").await;
        assert!(answer["detail"].is_string(), "{what}");
        assert_eq!(delivery_status(&app, &id).await, "sent", "{what}");
    }
    assert!(!app
        .metrics()
        .await
        .contains("otpd_delivery_receipts_total{"));
}

async fn receipts_for_unknown_carriers_or_malformed_ones_are_refused(backend: &Backend) {
    let (app, id, _) = sent_through_gateway(backend).await;
    let unknown = app
        .http
        .post(app.url("/v1/carriers/nobody/receipts"))
        .body("{}")
        .send()
        .await
        .expect("sent");
    problem(unknown, 404, "unknown-carrier").await;
    let body = br#"{"type": "sms.receipt", "status": "delivered"}"#.to_vec();
    let headers = signed_headers(SECRET, unix_now(), &body);
    problem(
        post_receipt(&app, &headers, body).await,
        400,
        "malformed-receipt",
    )
    .await;
    assert_eq!(delivery_status(&app, &id).await, "sent");
}
