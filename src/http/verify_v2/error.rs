//! Twilio's errors, as Verify v2 answers them: `{code, message, more_info,
//! status}` with the HTTP status, mapped from otpd's problems (so the
//! `/v1` and `/v2` surfaces refuse the same things for the same reasons).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::api::{Kind, Problem};
use crate::http::problem::mark_limit;
use crate::otp::Limited;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TwilioError {
    pub code: u32,
    pub message: String,
    pub more_info: String,
    pub status: u16,
    #[serde(skip)]
    #[schema(ignore)]
    retry_after: Option<u64>,
    /// The limit that refused, for the RateLimit fields (RL-4).
    #[serde(skip)]
    #[schema(ignore)]
    limited: Option<Box<Limited>>,
}

impl TwilioError {
    pub fn new(status: u16, code: u32, message: impl Into<String>) -> Self {
        TwilioError {
            code,
            message: message.into(),
            more_info: format!("https://www.twilio.com/docs/errors/{code}"),
            status,
            retry_after: None,
            limited: None,
        }
    }

    /// 400 60200: a parameter otpd cannot take (invalid, unsupported,
    /// unknown, repeated, or missing).
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(400, 60200, format!("Invalid parameter: {}", message.into()))
    }

    /// 401 20003.
    pub fn authenticate() -> Self {
        Self::new(401, 20003, "Authenticate")
    }

    /// 404 20404.
    pub fn not_found() -> Self {
        Self::new(404, 20404, "The requested resource was not found")
    }

    /// 405 20004.
    pub fn method_not_allowed() -> Self {
        Self::new(405, 20004, "Method not allowed")
    }
}

impl std::fmt::Display for TwilioError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code, self.message)
    }
}

impl ResponseError for TwilioError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if let Some(seconds) = self.retry_after {
            response.insert_header(("retry-after", seconds.to_string()));
        }
        if self.status == 401 {
            response.insert_header(("www-authenticate", "Basic realm=\"Twilio API\""));
        }
        let mut response = response.json(self);
        mark_limit(&mut response, self.limited.as_deref());
        response
    }
}

impl From<crate::otp::Error> for TwilioError {
    fn from(error: crate::otp::Error) -> Self {
        Problem::from(error).into()
    }
}

impl From<Problem> for TwilioError {
    fn from(problem: Problem) -> Self {
        Self::of(&problem)
    }
}

impl TwilioError {
    /// otpd's problem as Twilio's error: finished, expired and unknown
    /// verifications, and unknown paths, are 20404; the attempts used up
    /// 60202; too many sends 60203; a country not allowed 60605; fraud
    /// rules (range, conversion, attestation) 60410; an SMS to a landline
    /// 60205; other limits 20429; a body too large 20413; a body that did
    /// not arrive in time 408 60401 (Twilio has no code for a 408: 60401 is
    /// Verify's "network error, retry"); bad input 60200; otpd unavailable
    /// 20503.
    pub fn of(problem: &Problem) -> Self {
        let retry_after = problem
            .headers()
            .iter()
            .find(|(name, _)| *name == "retry-after")
            .and_then(|(_, value)| value.parse().ok());
        let mut error = match (problem.code(), problem.scope()) {
            ("verification-failed", _) | ("rate-limited", Some("check-failures")) => {
                Self::new(429, 60202, "Max check attempts reached")
            }
            ("max-sends-reached", _) | ("rate-limited", Some("number")) => {
                Self::new(429, 60203, "Max send attempts reached")
            }
            ("country-not-allowed", _) => Self::new(
                403,
                60605,
                "Verification delivery attempt blocked: the country is not allowed",
            ),
            ("rate-limited", Some("range" | "conversion"))
            | ("attestation-failed" | "attestation-required", _) => {
                Self::new(403, 60410, "Verification delivery attempt blocked")
            }
            ("channel-unreachable", _) => Self::new(
                400,
                60205,
                "The number cannot take a message on this channel",
            ),
            (
                "verification-not-found"
                | "verification-approved"
                | "verification-canceled"
                | "service-not-found",
                _,
            ) => Self::not_found(),
            ("unauthorized", _) => Self::authenticate(),
            _ => match problem.kind() {
                Kind::NotFound => Self::not_found(),
                Kind::Unauthorized => Self::authenticate(),
                Kind::MethodNotAllowed => Self::method_not_allowed(),
                Kind::PayloadTooLarge => Self::new(413, 20413, "Request Entity Too Large"),
                Kind::RequestTimeout => Self::new(
                    408,
                    60401,
                    "Network error: the request's body did not arrive in time; retry",
                ),
                Kind::TooManyRequests => Self::new(429, 20429, "Too many requests"),
                Kind::Unavailable | Kind::Internal => Self::new(503, 20503, "Service unavailable"),
                Kind::Forbidden => Self::new(403, 20403, "Forbidden"),
                _ => Self::invalid(problem.detail()),
            },
        };
        error.retry_after = retry_after;
        error.limited = problem.limited().cloned().map(Box::new);
        error
    }
}
