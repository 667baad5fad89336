//! The operator's SMS gateway for the webhook carrier, as a real HTTP
//! server: it checks every signature, and signs the receipts it sends back.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::{web, HttpRequest, HttpResponse};
use otpd::carrier::{webhook_key, webhook_signature};
use serde_json::{json, Value};

pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// The operator's SMS gateway (or a service's events endpoint): verifies
/// each signature, answers 503 until opened, then records the message once
/// per `webhook-id` and every body in the order they arrived.
#[derive(Clone, Default)]
pub struct Gateway {
    pub open: Arc<AtomicBool>,
    pub attempts: Arc<AtomicUsize>,
    pub delivered: Arc<Mutex<HashMap<String, usize>>>,
    pub bodies: Arc<Mutex<Vec<Value>>>,
}

async fn receive(
    request: HttpRequest,
    body: web::Bytes,
    gateway: web::Data<Gateway>,
) -> HttpResponse {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (id, timestamp) = (
        header("webhook-id"),
        header("webhook-timestamp").parse::<u64>().unwrap_or(0),
    );
    let key = webhook_key(SECRET).expect("key");
    if header("webhook-signature") != webhook_signature(&key, &id, timestamp, &body) {
        return HttpResponse::Unauthorized().finish();
    }
    gateway.attempts.fetch_add(1, Ordering::SeqCst);
    if !gateway.open.load(Ordering::SeqCst) {
        return HttpResponse::ServiceUnavailable().finish();
    }
    *gateway
        .delivered
        .lock()
        .expect("gateway")
        .entry(id.clone())
        .or_default() += 1;
    let parsed = serde_json::from_slice(&body).unwrap_or(Value::Null);
    gateway.bodies.lock().expect("gateway").push(parsed);
    HttpResponse::Ok().json(json!({ "message_id": format!("gw-{id}") }))
}

pub fn start_gateway(gateway: Gateway) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a port");
    let url = format!("http://{}/sms", listener.local_addr().expect("address"));
    let state = web::Data::new(gateway);
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(state.clone())
            .route("/sms", web::post().to(receive))
    })
    .workers(1)
    .listen(listener)
    .expect("listens")
    .run();
    tokio::spawn(server);
    url
}

/// The headers of a receipt signed with `key` at `timestamp`, as the gateway
/// would post it back.
pub type Headers = Vec<(&'static str, String)>;

pub fn signed_headers(secret: &str, timestamp: u64, body: &[u8]) -> Headers {
    let key = webhook_key(secret).expect("key");
    let id = format!("receipt-{timestamp}");
    let signature = webhook_signature(&key, &id, timestamp, body);
    vec![
        ("webhook-id", id),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", signature),
    ]
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// The receipt body the gateway posts for a message.
pub fn receipt_body(id: &str, message_id: &str, status: &str) -> Vec<u8> {
    let body: Value = json!({
        "type": "sms.receipt",
        "verification_id": id,
        "send": 1,
        "message_id": message_id,
        "status": status,
    });
    serde_json::to_vec(&body).expect("json")
}
