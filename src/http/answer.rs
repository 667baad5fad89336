//! Answers that can be stored and replayed: JSON bodies with their status
//! and `Location`, and the `Idempotency-Key` handling around them.

use std::future::{ready, Future, Ready};

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, Responder};
use serde::{Deserialize, Serialize};

use super::problem::{self, Kind, Problem};
use crate::api::Authorized;
use crate::otp::{Begun, Limited, Otp};

/// A JSON (or problem+json) answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct Answer {
    status: u16,
    problem: bool,
    body: String,
    /// `Location`, `Retry-After` …
    #[serde(default)]
    headers: Vec<(String, String)>,
    /// The limit that refused a 429 (never stored: 429s are not final).
    #[serde(skip)]
    limited: Option<Limited>,
}

impl Answer {
    pub fn json(status: StatusCode, body: &impl Serialize) -> Self {
        let body = serde_json::to_string(body).expect("answers serialize");
        Answer {
            status: status.as_u16(),
            problem: false,
            body,
            headers: Vec::new(),
            limited: None,
        }
    }

    pub fn problem(problem: &Problem) -> Self {
        let body = problem::body(problem);
        let headers = problem
            .headers()
            .iter()
            .map(|(name, value)| ((*name).to_owned(), value.clone()))
            .collect();
        Answer {
            status: problem::status(problem.kind()).as_u16(),
            problem: true,
            body,
            headers,
            limited: problem.limited().cloned(),
        }
    }

    pub fn with_location(mut self, location: String) -> Self {
        self.headers.push(("location".into(), location));
        self
    }

    /// Answers worth replaying: not "try later" (429, 5xx).
    fn is_final(&self) -> bool {
        self.status < 500 && self.status != 429
    }
}

impl Responder for Answer {
    type Body = String;

    fn respond_to(self, _: &HttpRequest) -> HttpResponse<String> {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let content_type = if self.problem {
            problem::CONTENT_TYPE
        } else {
            "application/json"
        };
        let mut response = HttpResponse::with_body(status, self.body);
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        for (name, value) in self.headers {
            if let (Ok(name), Ok(value)) = (
                header::HeaderName::try_from(name),
                HeaderValue::try_from(value),
            ) {
                headers.insert(name, value);
            }
        }
        problem::mark_limit(&mut response, self.limited.as_ref());
        response
    }
}

/// The `Idempotency-Key` header: a Structured Field string
/// (`"8e03978e-…"`) or the same text bare, 1 to 255 visible ASCII characters.
pub struct IdempotencyHeader(Option<String>);

impl actix_web::FromRequest for IdempotencyHeader {
    type Error = Problem;
    type Future = Ready<Result<Self, Problem>>;

    fn from_request(request: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let mut values = request.headers().get_all("idempotency-key");
        let bad = || {
            Problem::bad_request(
                "invalid-idempotency-key",
                "Idempotency-Key: one value of 1 to 255 visible ASCII characters",
            )
        };
        let parsed = match (values.next(), values.next()) {
            (None, _) => Ok(IdempotencyHeader(None)),
            (Some(value), None) => idempotency_key(value.as_bytes())
                .map(|key| IdempotencyHeader(Some(key.to_owned())))
                .ok_or_else(bad),
            (Some(_), Some(_)) => Err(bad()),
        };
        ready(parsed)
    }
}

/// The key in one `Idempotency-Key` value: 1 to 255 visible ASCII
/// characters, bare or as a Structured Field string.
pub fn idempotency_key(value: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(value).ok()?;
    let key = text
        .strip_prefix('"')
        .and_then(|quoted| quoted.strip_suffix('"'))
        .unwrap_or(text);
    ((1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic())).then_some(key)
}

/// Runs `work` once per `Idempotency-Key`: retries of the same request get
/// the first answer back; the key with another request is refused (422);
/// while the first still runs, retries get 409.
pub async fn idempotent(
    otp: &Otp,
    auth: &Authorized,
    key: IdempotencyHeader,
    request: &[u8],
    work: impl Future<Output = Result<Answer, crate::otp::Error>>,
) -> Answer {
    let answer_of = |outcome: Result<Answer, crate::otp::Error>| {
        outcome.unwrap_or_else(|e| Answer::problem(&e.into()))
    };
    let Some(key) = key.0 else {
        return answer_of(work.await);
    };
    let ticket = match otp.begin_idempotent(&auth.api_key, &key, request).await {
        Ok(Begun::Run(ticket)) => ticket,
        Ok(Begun::Replay(stored)) => {
            return serde_json::from_slice(&stored).unwrap_or_else(|_| {
                Answer::problem(&Problem::new(
                    Kind::Internal,
                    "internal",
                    "stored answer unreadable",
                ))
            })
        }
        Err(error) => return Answer::problem(&error.into()),
    };
    let answer = answer_of(work.await);
    let stored = answer
        .is_final()
        .then(|| serde_json::to_vec(&answer).expect("answers serialize"));
    otp.finish_idempotent(ticket, stored.as_deref()).await;
    answer
}
