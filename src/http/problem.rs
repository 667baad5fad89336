//! Problems over HTTP: RFC 9457 documents, `application/problem+json` with
//! `type`, `title`, `status`, `detail`, `code` (and `scope` for limits), the
//! status chosen by the problem's `Kind`, one for each.

use actix_web::body::EitherBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

pub use crate::api::{Kind, Problem};

pub const CONTENT_TYPE: &str = "application/problem+json";

/// The HTTP status of each kind of problem.
pub fn status(kind: Kind) -> StatusCode {
    match kind {
        Kind::BadRequest => StatusCode::BAD_REQUEST,
        Kind::Unauthorized => StatusCode::UNAUTHORIZED,
        Kind::Forbidden => StatusCode::FORBIDDEN,
        Kind::NotFound => StatusCode::NOT_FOUND,
        Kind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        Kind::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
        Kind::Conflict => StatusCode::CONFLICT,
        Kind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        Kind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        Kind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
        Kind::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
        Kind::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        Kind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        Kind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// The problem document: `type` and `title` follow from `code` and the
/// status.
struct Document<'a>(&'a Problem);

impl Serialize for Document<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let problem = self.0;
        let status = status(problem.kind());
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("type", &format!("urn:otpd:problem:{}", problem.code()))?;
        map.serialize_entry("title", status.canonical_reason().unwrap_or("Error"))?;
        map.serialize_entry("status", &status.as_u16())?;
        map.serialize_entry("detail", problem.detail())?;
        map.serialize_entry("code", problem.code())?;
        if let Some(scope) = problem.scope() {
            map.serialize_entry("scope", scope)?;
        }
        map.end()
    }
}

/// The JSON body of `problem`.
pub fn body(problem: &Problem) -> String {
    serde_json::to_string(&Document(problem)).expect("problems serialize")
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
        status(self.kind())
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        response.insert_header(("content-type", CONTENT_TYPE));
        for (name, value) in self.headers() {
            response.insert_header((*name, value.as_str()));
        }
        response.body(body(self))
    }
}
