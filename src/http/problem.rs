//! RFC 9457 problem documents: every error answer is
//! `application/problem+json` with `type`, `title`, `status`, `detail` and a
//! stable `code` (DESIGN invariant 8). Limits add `scope`, `Retry-After` and
//! the IETF RateLimit fields (RL-4).

use std::time::Duration;

use actix_web::body::EitherBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::otp::{self, Kind, Limited};

pub const CONTENT_TYPE: &str = "application/problem+json";

#[derive(Debug)]
pub struct Problem {
    status: StatusCode,
    detail: String,
    code: &'static str,
    /// Which limit refused (429 `rate-limited` / `budget-exhausted`).
    scope: Option<&'static str>,
    headers: Vec<(&'static str, String)>,
}

/// `type` and `title` follow from `code` and `status`.
impl Serialize for Problem {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("type", &format!("urn:otpd:problem:{}", self.code))?;
        map.serialize_entry("title", self.status.canonical_reason().unwrap_or("Error"))?;
        map.serialize_entry("status", &self.status.as_u16())?;
        map.serialize_entry("detail", &self.detail)?;
        map.serialize_entry("code", self.code)?;
        if let Some(scope) = self.scope {
            map.serialize_entry("scope", scope)?;
        }
        map.end()
    }
}

/// Whole seconds, rounded up, at least one (RFC 9110 §10.2.3): a retry at
/// that time passes the limit.
pub fn seconds(wait: Duration) -> u64 {
    (wait.as_millis().div_ceil(1000) as u64).max(1)
}

impl Problem {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Problem {
            status,
            detail: detail.into(),
            code,
            scope: None,
            headers: Vec::new(),
        }
    }

    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }

    /// 401 with `WWW-Authenticate: Bearer`.
    pub fn unauthorized() -> Self {
        let detail = "send a valid API key as Authorization: Bearer <key>";
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
            .with_header("www-authenticate", "Bearer".into())
    }

    /// 429 from the in-process flood shedder.
    pub fn flood(wait: Duration) -> Self {
        let mut problem = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            "too many requests from this client",
        );
        problem.scope = Some("ip");
        problem.with_header("retry-after", seconds(wait).to_string())
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    /// `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers-11).
    fn with_limit(mut self, limited: &Limited) -> Self {
        self.scope = Some(limited.scope.as_str());
        let policy = format!(
            "\"{}\";q={};w={}",
            limited.policy,
            limited.quota,
            seconds(limited.window)
        );
        let state = format!(
            "\"{}\";r=0;t={}",
            limited.policy,
            seconds(limited.retry_after)
        );
        self.with_header("ratelimit-policy", policy)
            .with_header("ratelimit", state)
    }

    pub fn detail(&self) -> &str {
        &self.detail
    }

    pub fn code(&self) -> &'static str {
        self.code
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn headers(&self) -> &[(&'static str, String)] {
        &self.headers
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.detail)
    }
}

impl From<otp::Error> for Problem {
    fn from(error: otp::Error) -> Self {
        let (status, retry_after) = match error.kind() {
            Kind::NotFound => (StatusCode::NOT_FOUND, None),
            Kind::Conflict => (StatusCode::CONFLICT, None),
            Kind::Unprocessable => (StatusCode::UNPROCESSABLE_ENTITY, None),
            Kind::Limited { retry_after } => (StatusCode::TOO_MANY_REQUESTS, Some(retry_after)),
            Kind::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                Some(Duration::from_secs(1)),
            ),
        };
        if status.is_server_error() {
            // Logged once here, with the cause chain; the body stays opaque.
            tracing::error!(code = error.code(), error = %ErrorChain(&error), "request failed");
        }
        let mut problem = Problem::new(status, error.code(), error.to_string());
        if let Some(wait) = retry_after {
            problem = problem.with_header("retry-after", seconds(wait).to_string());
        }
        match error.limit() {
            Some(limited) => problem.with_limit(limited),
            None => problem,
        }
    }
}

/// An error and its sources, `: `-separated.
struct ErrorChain<'a>(&'a dyn std::error::Error);

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// Middleware's answer of `problem` to `request` instead of calling the
/// next service: a response, so that the outer middleware sees, counts
/// and ids it like any other (an `Err` would pass them by).
pub fn refuse<B>(request: ServiceRequest, problem: &Problem) -> ServiceResponse<EitherBody<B>> {
    request
        .into_response(problem.error_response())
        .map_into_right_body()
}

impl ResponseError for Problem {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        response.insert_header(("content-type", CONTENT_TYPE));
        for (name, value) in &self.headers {
            response.insert_header((*name, value.as_str()));
        }
        response.body(serde_json::to_vec(self).expect("a problem serializes"))
    }
}
