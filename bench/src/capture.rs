//! Preparation: starts verifications through otpd's API and learns their
//! codes the way a gateway would, from otpd's `webhook` carrier posting to
//! a receiver here. Codes never come from an API answer.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use futures_util::StreamExt;
use serde::Deserialize;

use crate::process::{free_port, wait_until};
use crate::servers::{API_KEY, SERVICE};

/// The webhook carrier's message (README, "Carriers").
#[derive(Deserialize)]
struct Message {
    body: String,
    verification_id: String,
}

type Codes = Arc<Mutex<Vec<(String, String)>>>;

/// The receiver: (verification id, code) of every SMS otpd sent it.
pub struct Capture {
    pub port: u16,
    codes: Codes,
    server: actix_web::dev::ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Capture {
    pub fn start() -> anyhow::Result<Capture> {
        let port = free_port()?;
        let codes: Codes = Arc::default();
        let state = web::Data::new(codes.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .route("/sms", web::post().to(receive))
        })
        .workers(2)
        .bind(("127.0.0.1", port))?
        .run();
        let handle = server.handle();
        let thread = std::thread::spawn(move || {
            let _ = actix_web::rt::System::new().block_on(server);
        });
        Ok(Capture {
            port,
            codes,
            server: handle,
            thread: Some(thread),
        })
    }

    /// Everything received so far, emptying the receiver.
    pub fn take(&self) -> Vec<(String, String)> {
        std::mem::take(&mut self.codes.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn count(&self) -> usize {
        self.codes.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let stopping = self.server.stop(false);
        actix_web::rt::System::new().block_on(stopping);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn receive(message: web::Json<Message>, codes: web::Data<Codes>) -> HttpResponse {
    match code_in(&message.body) {
        Some(code) => {
            codes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((message.verification_id.clone(), code));
            HttpResponse::Ok().finish()
        }
        None => HttpResponse::UnprocessableEntity().finish(),
    }
}

/// The code in a message: its one run of exactly six digits.
fn code_in(text: &str) -> Option<String> {
    text.split(|c: char| !c.is_ascii_digit())
        .find(|run| run.len() == 6)
        .map(str::to_string)
}

/// Starts `count` verifications to consecutive numbers after
/// +81 `prefix` 1000 0000 + `first`, 64 at a time, each retried while otpd
/// answers 503 (its outbox full); returns how many otpd created (201).
pub fn start_many(base: &str, prefix: &str, first: u64, count: u64) -> anyhow::Result<u64> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = reqwest::Client::new();
    let url = format!("{base}/v1/services/{SERVICE}/verifications");
    let created = runtime.block_on(async {
        futures_util::stream::iter(first..first + count)
            .map(|n| start_one(&client, &url, format!("+81{prefix}{:08}", 10_000_000 + n)))
            .buffer_unordered(64)
            .filter(|created| std::future::ready(*created))
            .count()
            .await
    });
    Ok(created as u64)
}

async fn start_one(client: &reqwest::Client, url: &str, to: String) -> bool {
    let body = serde_json::json!({"to": to, "channel": "sms"});
    for _ in 0..100 {
        let request = client.post(url).bearer_auth(API_KEY).json(&body).send();
        match request.await.map(|response| response.status().as_u16()) {
            Ok(201) => return true,
            Ok(503) => tokio::time::sleep(Duration::from_millis(50)).await,
            _ => return false,
        }
    }
    false
}

/// Waits until the receiver holds `count` codes (otpd's workers deliver in
/// the background).
pub fn wait_for(capture: &Capture, count: usize) -> anyhow::Result<()> {
    wait_until("codes from the webhook", Duration::from_secs(600), || {
        capture.count() >= count
    })
}
