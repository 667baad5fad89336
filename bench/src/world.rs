//! The carriers of the deliverability simulation and the handsets they
//! reach: a Twilio-like API that fails half its calls for a window, a
//! webhook gateway that loses some receipts, and the log of the test SMSC
//! (node-smpp with faults, tests/smsc). Every message a carrier delivers
//! lands in the `Ledger`, the phones' side of the story; every lifecycle
//! event the relying party's endpoint takes lands in the `EventLog`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, HttpRequest, HttpResponse};
use anyhow::Context;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::Rng;
use serde_json::{json, Value};

/// Which carrier a message went through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Via {
    Smsc,
    Twilio,
    Gateway,
}

impl Via {
    pub fn name(self) -> &'static str {
        match self {
            Via::Smsc => "smsc",
            Via::Twilio => "twilio",
            Via::Gateway => "gateway",
        }
    }
}

/// One message a carrier accepted for a number.
#[derive(Clone, Debug)]
pub struct Arrival {
    pub via: Via,
    pub code: String,
    pub accepted_at: Instant,
    /// Whether it reached the phone.
    pub delivered: bool,
    /// When the carrier sent its receipt (none: lost, or not yet).
    pub receipt_at: Option<Instant>,
    /// Whether otpd could hear the accept (an SMSC whose bind dropped
    /// meanwhile keeps the message but loses the answer).
    pub answered: bool,
    pub message_id: String,
}

/// One lifecycle event as the relying party's endpoint took it.
#[derive(Clone, Debug)]
pub struct Heard {
    pub id: String,
    pub kind: String,
    pub verification: Option<String>,
    pub sequence: Option<u64>,
    pub at: Instant,
}

/// Every event the endpoint took (2xx), in the order it took them.
#[derive(Clone, Default)]
pub struct EventLog(Arc<Mutex<Vec<Heard>>>);

impl EventLog {
    pub fn all(&self) -> Vec<Heard> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Every number's messages, in the order the carriers accepted them.
#[derive(Clone, Default)]
pub struct Ledger(Arc<Mutex<HashMap<String, Vec<Arrival>>>>);

impl Ledger {
    fn accepted(&self, number: &str, arrival: Arrival) {
        let mut numbers = self.0.lock().unwrap_or_else(|p| p.into_inner());
        numbers.entry(digits(number)).or_default().push(arrival);
    }

    fn receipt_sent(&self, via: Via, message_id: &str, at: Instant) {
        let mut numbers = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let found = numbers
            .values_mut()
            .flatten()
            .find(|arrival| arrival.via == via && arrival.message_id == message_id);
        if let Some(arrival) = found {
            arrival.receipt_at = Some(at);
        }
    }

    /// The messages `number` got.
    pub fn of(&self, number: &str) -> Vec<Arrival> {
        let numbers = self.0.lock().unwrap_or_else(|p| p.into_inner());
        numbers.get(&digits(number)).cloned().unwrap_or_default()
    }

    /// Messages accepted so far, by every carrier.
    pub fn count(&self) -> usize {
        let numbers = self.0.lock().unwrap_or_else(|p| p.into_inner());
        numbers.values().map(Vec::len).sum()
    }
}

fn digits(number: &str) -> String {
    number.trim_start_matches('+').to_owned()
}

/// The six-digit code in an SMS body.
fn code_in(body: &str) -> String {
    body.split(|c: char| !c.is_ascii_digit())
        .find(|run| run.len() == 6)
        .unwrap_or_default()
        .to_owned()
}

/// The otpd replicas up now, for carriers posting receipts (a load
/// balancer's job in production).
#[derive(Clone, Default)]
pub struct Replicas(Arc<Mutex<Vec<String>>>);

impl Replicas {
    pub fn set(&self, bases: Vec<String>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = bases;
    }

    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// POSTs a receipt to the first replica that answers; whether one did.
    async fn post(&self, client: &reqwest::Client, path: &str, request: Receipt) -> bool {
        for base in self.all() {
            let mut call = client.post(format!("{base}{path}"));
            for (name, value) in &request.headers {
                call = call.header(name.as_str(), value.as_str());
            }
            let sent = call
                .body(request.body.clone())
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if sent.is_ok_and(|answer| answer.status().is_success()) {
                return true;
            }
        }
        false
    }
}

struct Receipt {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Carrier behaviour shared by the HTTP peers.
pub struct HttpWorld {
    pub ledger: Ledger,
    pub replicas: Replicas,
    pub started: Instant,
    /// The Twilio-like API fails half its calls in this window of the run.
    pub twilio_outage: (Duration, Duration),
    /// The share of receipts the gateway loses.
    pub gateway_lost: f64,
    pub twilio_token: String,
    pub gateway_key: Vec<u8>,
    pub public_url: String,
    /// The relying party's events endpoint: what it took, and the share
    /// of posts it fails (503).
    pub events: EventLog,
    pub events_failing: f64,
    client: reqwest::Client,
    next_id: Mutex<u64>,
}

impl HttpWorld {
    pub fn new(
        ledger: Ledger,
        replicas: Replicas,
        twilio_outage: (Duration, Duration),
        gateway_lost: f64,
        twilio_token: &str,
        gateway_secret: &str,
        public_url: &str,
    ) -> anyhow::Result<Self> {
        let key = gateway_secret
            .strip_prefix("whsec_")
            .context("a whsec_ secret")?;
        Ok(HttpWorld {
            ledger,
            replicas,
            started: Instant::now(),
            twilio_outage,
            gateway_lost,
            twilio_token: twilio_token.to_owned(),
            gateway_key: STANDARD.decode(key)?,
            public_url: public_url.to_owned(),
            events: EventLog::default(),
            events_failing: 0.1,
            client: reqwest::Client::new(),
            next_id: Mutex::new(0),
        })
    }

    fn message_id(&self, prefix: &str) -> String {
        let mut next = self.next_id.lock().unwrap_or_else(|p| p.into_inner());
        *next += 1;
        format!("{prefix}{:016}", *next)
    }

    fn in_outage(&self) -> bool {
        let elapsed = self.started.elapsed();
        elapsed >= self.twilio_outage.0 && elapsed < self.twilio_outage.1
    }
}

/// Serves the Twilio-like API and the webhook gateway on one free port;
/// returns its base URL.
pub fn serve(world: Arc<HttpWorld>) -> anyhow::Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let base = format!("http://{}", listener.local_addr()?);
    let state = web::Data::from(world);
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(state.clone())
            .route("/sms", web::post().to(gateway))
            .route("/events", web::post().to(events))
            .default_service(web::post().to(twilio))
    })
    .workers(2)
    .listen(listener)?
    .run();
    tokio::spawn(server);
    Ok(base)
}

/// Twilio's Messages API: 201 with a `sid`, or 503 for half the calls in
/// the outage window; the message reaches the phone and a signed status
/// callback follows.
async fn twilio(body: web::Bytes, world: web::Data<HttpWorld>) -> HttpResponse {
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    if world.in_outage() && rand::rng().random_bool(0.5) {
        return HttpResponse::ServiceUnavailable().json(json!({ "code": 20500 }));
    }
    let sid = world.message_id("SM");
    let to = form.get("To").cloned().unwrap_or_default();
    world.ledger.accepted(
        &to,
        Arrival {
            via: Via::Twilio,
            code: code_in(form.get("Body").map_or("", String::as_str)),
            accepted_at: Instant::now(),
            delivered: true,
            receipt_at: None,
            answered: true,
            message_id: sid.clone(),
        },
    );
    let callback = form.get("StatusCallback").cloned().unwrap_or_default();
    let world = world.into_inner();
    let answer_sid = sid.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let params = [
            ("MessageSid", sid.as_str()),
            ("MessageStatus", "delivered"),
            ("AccountSid", "ACdeliverability"),
        ];
        let signature = twilio_signature(&world.twilio_token, &callback, &params);
        let path = callback.trim_start_matches(world.public_url.as_str());
        let receipt = Receipt {
            headers: vec![
                ("x-twilio-signature".into(), signature),
                (
                    "content-type".into(),
                    "application/x-www-form-urlencoded".into(),
                ),
            ],
            body: serde_urlencoded::to_string(params)
                .unwrap_or_default()
                .into_bytes(),
        };
        if world.replicas.post(&world.client, path, receipt).await {
            world.ledger.receipt_sent(Via::Twilio, &sid, Instant::now());
        }
    });
    HttpResponse::Created().json(json!({ "sid": answer_sid, "status": "queued" }))
}

/// The relying party's events endpoint: refuses a body whose Standard
/// Webhooks signature (the gateway's key) does not verify, fails a share
/// of posts with 503, and logs the others.
async fn events(
    request: HttpRequest,
    body: web::Bytes,
    world: web::Data<HttpWorld>,
) -> HttpResponse {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let id = header("webhook-id");
    let timestamp = header("webhook-timestamp").parse().unwrap_or(0);
    if header("webhook-signature") != webhook_signature(&world.gateway_key, &id, timestamp, &body) {
        return HttpResponse::Unauthorized().finish();
    }
    if rand::rng().random_bool(world.events_failing) {
        return HttpResponse::ServiceUnavailable().finish();
    }
    let event: Value = serde_json::from_slice(&body).unwrap_or_default();
    let data = &event["data"];
    let heard = Heard {
        id,
        kind: event["type"].as_str().unwrap_or_default().to_owned(),
        verification: data["verification_id"].as_str().map(str::to_owned),
        sequence: data["sequence"].as_u64(),
        at: Instant::now(),
    };
    world
        .events
        .0
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(heard);
    HttpResponse::NoContent().finish()
}

/// The operator's gateway (webhook carrier): takes every message, and
/// posts a signed receipt back for all but `gateway_lost` of them.
async fn gateway(
    request: HttpRequest,
    body: web::Bytes,
    world: web::Data<HttpWorld>,
) -> HttpResponse {
    let message: Value = serde_json::from_slice(&body).unwrap_or_default();
    let text = |field: &str| message[field].as_str().unwrap_or_default().to_owned();
    let message_id = world.message_id("gw-");
    world.ledger.accepted(
        &text("to"),
        Arrival {
            via: Via::Gateway,
            code: code_in(&text("body")),
            accepted_at: Instant::now(),
            delivered: true,
            receipt_at: None,
            answered: true,
            message_id: message_id.clone(),
        },
    );
    let lost = rand::rng().random_bool(world.gateway_lost);
    let receipt = json!({
        "type": "sms.receipt",
        "verification_id": text("verification_id"),
        "send": message["send"],
        "message_id": message_id,
        "status": "delivered",
    });
    drop(request);
    let world = world.into_inner();
    let answer_id = message_id.clone();
    if !lost {
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let body = serde_json::to_vec(&receipt).unwrap_or_default();
            let timestamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let id = format!("receipt-{message_id}");
            let receipt = Receipt {
                headers: vec![
                    ("content-type".into(), "application/json".into()),
                    ("webhook-id".into(), id.clone()),
                    ("webhook-timestamp".into(), timestamp.to_string()),
                    (
                        "webhook-signature".into(),
                        webhook_signature(&world.gateway_key, &id, timestamp, &body),
                    ),
                ],
                body,
            };
            if world
                .replicas
                .post(&world.client, "/v1/carriers/gateway/receipts", receipt)
                .await
            {
                world
                    .ledger
                    .receipt_sent(Via::Gateway, &message_id, Instant::now());
            }
        });
    }
    HttpResponse::Ok().json(json!({ "message_id": answer_id }))
}

/// `X-Twilio-Signature`: base64(HMAC-SHA1(token, url + sorted name+value)).
fn twilio_signature(token: &str, url: &str, params: &[(&str, &str)]) -> String {
    let mut sorted = params.to_vec();
    sorted.sort();
    let mut mac = <Hmac<sha1::Sha1> as Mac>::new_from_slice(token.as_bytes()).expect("any key");
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    STANDARD.encode(mac.finalize().into_bytes())
}

/// Standard Webhooks: `v1,` base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")).
fn webhook_signature(key: &[u8], id: &str, timestamp: u64, body: &[u8]) -> String {
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).expect("any key");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The test SMSC (tests/smsc/smsc.js) in its faulty-world mode; its
/// accepted messages and receipts go to the ledger as it reports them.
pub struct Smsc {
    child: Child,
    /// Kept open: the SMSC reads commands until it exits.
    _commands: std::process::ChildStdin,
    pub port: u16,
    binds: Arc<Mutex<usize>>,
    dropped_binds: Arc<Mutex<usize>>,
}

impl Smsc {
    pub fn start(repository: &Path, ledger: Ledger, faults: Value) -> anyhow::Result<Smsc> {
        let dir = repository.join("tests/smsc");
        anyhow::ensure!(
            dir.join("node_modules/smpp").exists(),
            "the test SMSC is not installed: npm ci --prefix tests/smsc"
        );
        let port = crate::process::free_port()?;
        let mut child = Command::new("node")
            .arg(dir.join("smsc.js"))
            .args([port.to_string().as_str(), "otpd", "secret"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("node")?;
        let mut stdin = child.stdin.take().context("stdin")?;
        let stdout = child.stdout.take().context("stdout")?;
        let (binds, dropped_binds) = (Arc::new(Mutex::new(0)), Arc::new(Mutex::new(0)));
        let (listening_tx, listening) = std::sync::mpsc::channel();
        let (bound, dropped) = (Arc::clone(&binds), Arc::clone(&dropped_binds));
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let Ok(event) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                let text = |field: &str| event[field].as_str().unwrap_or_default().to_owned();
                match event["event"].as_str() {
                    Some("listening") => {
                        let _ = listening_tx.send(());
                    }
                    Some("bind") => *bound.lock().unwrap_or_else(|p| p.into_inner()) += 1,
                    Some("bind_dropped") => *dropped.lock().unwrap_or_else(|p| p.into_inner()) += 1,
                    Some("accepted") => ledger.accepted(
                        &text("destination_addr"),
                        Arrival {
                            via: Via::Smsc,
                            code: code_in(&text("text")),
                            accepted_at: Instant::now(),
                            delivered: event["stat"] == "DELIVRD",
                            receipt_at: None,
                            answered: event["answered"] != false,
                            message_id: text("message_id"),
                        },
                    ),
                    Some("receipt_sent") => {
                        ledger.receipt_sent(Via::Smsc, &text("message_id"), Instant::now())
                    }
                    _ => {}
                }
            }
        });
        listening
            .recv_timeout(Duration::from_secs(10))
            .context("the SMSC did not listen")?;
        use std::io::Write;
        let mut command = faults;
        command["cmd"] = json!("world");
        writeln!(stdin, "{command}")?;
        Ok(Smsc {
            child,
            _commands: stdin,
            port,
            binds,
            dropped_binds,
        })
    }

    /// Binds the SMSC dropped so far (a fault it injects).
    pub fn dropped_binds(&self) -> usize {
        *self.dropped_binds.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Binds so far (every replica's, first and again).
    pub fn binds(&self) -> usize {
        *self.binds.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Smsc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
