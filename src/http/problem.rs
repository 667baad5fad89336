//! RFC 9457 problem documents: every error answer is
//! `application/problem+json` with `type`, `title`, `status`, `detail` and a
//! stable `code` (DESIGN invariant 8).

use std::time::Duration;

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::otp::{self, Kind};

pub const CONTENT_TYPE: &str = "application/problem+json";

#[derive(Debug, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    kind: String,
    title: &'static str,
    #[serde(serialize_with = "as_u16")]
    status: StatusCode,
    detail: String,
    code: &'static str,
    #[serde(skip)]
    retry_after: Option<Duration>,
    #[serde(skip)]
    challenge: bool,
}

fn as_u16<S: serde::Serializer>(status: &StatusCode, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u16(status.as_u16())
}

impl Problem {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Problem {
            kind: format!("urn:otpd:problem:{code}"),
            title: status.canonical_reason().unwrap_or("Error"),
            status,
            detail: detail.into(),
            code,
            retry_after: None,
            challenge: false,
        }
    }

    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }

    /// 401 with `WWW-Authenticate: Bearer`.
    pub fn unauthorized() -> Self {
        let mut problem = Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send a valid API key as Authorization: Bearer <key>",
        );
        problem.challenge = true;
        problem
    }

    pub fn code(&self) -> &'static str {
        self.code
    }

    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
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
            Kind::BadGateway => (StatusCode::BAD_GATEWAY, None),
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
        problem.retry_after = retry_after;
        problem
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

impl ResponseError for Problem {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        response.insert_header((header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE)));
        if let Some(wait) = self.retry_after {
            // Whole seconds, rounded up, at least one (RFC 9110 §10.2.3).
            let seconds = wait.as_millis().div_ceil(1000).max(1);
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        if self.challenge {
            response.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
        }
        response.body(serde_json::to_vec(self).expect("a problem serializes"))
    }
}
