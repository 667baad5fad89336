//! A local HTTP server that answers like Twilio's Messages and Calls APIs,
//! the Vonage SMS API, the Vonage Voice API (`/v1/calls`, refused with 401
//! unless its bearer JWT verifies with the application's public key) and
//! an operator's webhook gateway (`/sms`, JSON): it records every request
//! and plays a script of answers (success when the script is empty), so
//! each error class can be shown.

use std::collections::{BTreeMap, VecDeque};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

/// One scripted answer.
#[derive(Clone)]
pub enum Reply {
    /// The provider's success answer.
    Accept,
    /// This status and JSON body.
    Answer(u16, Value),
    /// Success, but only after this long (past the carrier's timeout).
    Slow(Duration),
}

#[derive(Clone, Debug)]
pub struct Request {
    pub path: String,
    pub authorization: Option<String>,
    pub form: BTreeMap<String, String>,
    /// The body, when it was JSON.
    pub json: Value,
}

#[derive(Clone, Default)]
pub struct FakeProvider {
    script: Arc<Mutex<VecDeque<Reply>>>,
    requests: Arc<Mutex<Vec<Request>>>,
    /// The Voice API application's public key (PEM) calls must be signed for.
    voice_key: Option<Arc<Vec<u8>>>,
}

impl FakeProvider {
    /// Serves on a free port; the base URL to configure as `api_url`.
    pub fn start(&self) -> String {
        serve_posts(self.clone(), answer)
    }

    /// A Voice API that takes only calls whose JWT `public_pem` verifies.
    pub fn verifying_calls_with(mut self, public_pem: Vec<u8>) -> Self {
        self.voice_key = Some(Arc::new(public_pem));
        self
    }

    pub fn then(&self, replies: impl IntoIterator<Item = Reply>) {
        self.script.lock().expect("script").extend(replies);
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("requests").clone()
    }
}

/// Serves `handler` for every POST on a free port, with `state` as its
/// `web::Data`; returns the base URL.
pub fn serve_posts<S, F, Args>(state: S, handler: F) -> String
where
    S: Send + Sync + 'static,
    F: actix_web::Handler<Args> + Clone + Send + 'static,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").expect("a port");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let state = web::Data::new(state);
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(state.clone())
            .default_service(web::post().to(handler.clone()))
    })
    .workers(1)
    .listen(listener)
    .expect("listens")
    .run();
    tokio::spawn(server);
    base
}

async fn answer(
    request: HttpRequest,
    body: web::Bytes,
    fake: web::Data<FakeProvider>,
) -> HttpResponse {
    let path = request.path().to_owned();
    // A form (Twilio, Vonage), or the top-level strings of a JSON body.
    let json = serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null);
    let form: BTreeMap<String, String> = match &json {
        Value::Object(fields) => fields
            .iter()
            .filter_map(|(name, value)| Some((name.clone(), value.as_str()?.to_owned())))
            .collect(),
        _ => serde_urlencoded::from_bytes(&body).expect("a form body"),
    };
    let authorization = request
        .headers()
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let count = {
        let mut requests = fake.requests.lock().expect("requests");
        requests.push(Request {
            path: path.clone(),
            authorization: authorization.clone(),
            form,
            json,
        });
        requests.len()
    };
    if path == "/v1/calls" && !signed_by(fake.voice_key.as_deref(), authorization.as_deref()) {
        return HttpResponse::Unauthorized().json(json!({
            "type": "https://developer.nexmo.com/api-errors#unauthorized",
            "title": "Unauthorized",
        }));
    }
    let reply = fake
        .script
        .lock()
        .expect("script")
        .pop_front()
        .unwrap_or(Reply::Accept);
    if let Reply::Slow(delay) = reply {
        tokio::time::sleep(delay).await;
    }
    match reply {
        Reply::Answer(status, body) => HttpResponse::build(
            actix_web::http::StatusCode::from_u16(status).expect("a status"),
        )
        .json(body),
        Reply::Accept | Reply::Slow(_) if path == "/sms" => {
            HttpResponse::Ok().json(json!({ "message_id": format!("gw-{count}") }))
        }
        Reply::Accept | Reply::Slow(_) if path == "/v1/calls" => HttpResponse::Created().json(json!({
            "uuid": format!("63f61863-4a51-4f6b-86e1-{count:012}"),
            "status": "started",
            "direction": "outbound",
            "conversation_uuid": format!("CON-{count}"),
        })),
        Reply::Accept | Reply::Slow(_) if path.ends_with("/Calls.json") => {
            HttpResponse::Created().json(json!({ "sid": format!("CA{count:032}"), "status": "queued" }))
        }
        Reply::Accept | Reply::Slow(_) if path.ends_with("/Messages.json") => {
            HttpResponse::Created().json(json!({ "sid": format!("SM{count:032}"), "status": "queued" }))
        }
        Reply::Accept | Reply::Slow(_) => HttpResponse::Ok().json(json!({
            "message-count": "1",
            "messages": [{ "message-id": format!("VN{count:016}"), "status": "0", "remaining-balance": "10.0" }],
        })),
    }
}

/// Whether `authorization` is a bearer JWT (RS256) that `public_pem`
/// verifies, naming an application.
fn signed_by(public_pem: Option<&Vec<u8>>, authorization: Option<&str>) -> bool {
    let (Some(pem), Some(token)) = (
        public_pem,
        authorization.and_then(|value| value.strip_prefix("Bearer ")),
    ) else {
        return false;
    };
    let Ok(key) = jsonwebtoken::DecodingKey::from_rsa_pem(pem) else {
        return false;
    };
    let validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .is_ok_and(|data| data.claims["application_id"].is_string())
}
