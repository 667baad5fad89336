//! Refusals as both transports give them: a `Kind` (what sort of refusal,
//! which each transport maps to its own status, exhaustively: HTTP in
//! `http::problem`, gRPC in `grpc::status`), a stable `code` (DESIGN
//! invariant 8), a detail, and for limits the `scope`, the wait and the
//! IETF RateLimit fields (RL-4).

use std::time::Duration;

use crate::otp::{self, Limited};

/// What sort of refusal a problem is. A new kind does not compile until
/// every transport has said how it answers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    Conflict,
    PayloadTooLarge,
    UnsupportedMediaType,
    Unprocessable,
    TooManyRequests,
    HeadersTooLarge,
    /// otpd's own fault (an unreadable stored answer).
    Internal,
    Unavailable,
}

#[derive(Debug)]
pub struct Problem {
    kind: Kind,
    detail: String,
    code: &'static str,
    /// Which limit refused (429 `rate-limited` / `budget-exhausted`).
    scope: Option<&'static str>,
    limited: Option<Box<Limited>>,
    headers: Vec<(&'static str, String)>,
}

/// Whole seconds, rounded up, at least one (RFC 9110 §10.2.3): a retry at
/// that time passes the limit.
pub fn seconds(wait: Duration) -> u64 {
    (wait.as_millis().div_ceil(1000) as u64).max(1)
}

impl Problem {
    pub fn new(kind: Kind, code: &'static str, detail: impl Into<String>) -> Self {
        Problem {
            kind,
            detail: detail.into(),
            code,
            scope: None,
            limited: None,
            headers: Vec::new(),
        }
    }

    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(Kind::BadRequest, code, detail)
    }

    /// 401 with `WWW-Authenticate: Bearer`.
    pub fn unauthorized() -> Self {
        let detail = "send a valid API key as Authorization: Bearer <key>";
        Self::new(Kind::Unauthorized, "unauthorized", detail)
            .with_header("www-authenticate", "Bearer".into())
    }

    /// 429 from the in-process flood shedder.
    pub fn flood(wait: Duration) -> Self {
        let mut problem = Self::new(
            Kind::TooManyRequests,
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

    /// The limit that refused: its scope goes into the document; what a
    /// transport tells of its policy is the transport's (HTTP:
    /// `http.ratelimit_fields`).
    fn with_limit(mut self, limited: &Limited) -> Self {
        self.scope = Some(limited.scope.as_str());
        self.limited = Some(Box::new(limited.clone()));
        self
    }

    /// The limit that refused, for a 429 from one.
    pub fn limited(&self) -> Option<&Limited> {
        self.limited.as_deref()
    }

    pub fn detail(&self) -> &str {
        &self.detail
    }

    pub fn code(&self) -> &'static str {
        self.code
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn scope(&self) -> Option<&'static str> {
        self.scope
    }

    pub fn headers(&self) -> &[(&'static str, String)] {
        &self.headers
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} {}: {}", self.kind, self.code, self.detail)
    }
}

impl From<otp::Error> for Problem {
    fn from(error: otp::Error) -> Self {
        let (kind, retry_after) = match error.kind() {
            otp::Kind::Forbidden => (Kind::Forbidden, None),
            otp::Kind::NotFound => (Kind::NotFound, None),
            otp::Kind::Conflict => (Kind::Conflict, None),
            otp::Kind::Unprocessable => (Kind::Unprocessable, None),
            otp::Kind::Limited { retry_after } => (Kind::TooManyRequests, Some(retry_after)),
            otp::Kind::Unavailable => (Kind::Unavailable, Some(Duration::from_secs(1))),
        };
        if kind == Kind::Unavailable {
            // Logged once here, with the cause chain; the body stays opaque.
            tracing::error!(code = error.code(), error = %ErrorChain(&error), "request failed");
        }
        let mut problem = Problem::new(kind, error.code(), error.to_string());
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
