//! A local HTTP server that answers like Twilio's Messages API, the Vonage
//! SMS API and an operator's webhook gateway (`/sms`, JSON): it records
//! every request and plays a script of answers (success when the script is
//! empty), so each error class can be shown.

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
}

#[derive(Clone, Default)]
pub struct FakeProvider {
    script: Arc<Mutex<VecDeque<Reply>>>,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl FakeProvider {
    /// Serves on a free port; the base URL to configure as `api_url`.
    pub fn start(&self) -> String {
        serve_posts(self.clone(), answer)
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
    let form: BTreeMap<String, String> = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(fields)) => fields
            .into_iter()
            .filter_map(|(name, value)| Some((name, value.as_str()?.to_owned())))
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
            authorization,
            form,
        });
        requests.len()
    };
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
