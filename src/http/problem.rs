//! Problems over HTTP: RFC 9457 documents, `application/problem+json` with
//! `type`, `title`, `status`, `detail`, `code` (and `scope` for limits), the
//! status chosen by the problem's `Kind`, one for each.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse, ResponseError};
use serde::Serialize;

use crate::api::seconds;
pub use crate::api::{Kind, Problem};
use crate::config::RateLimitFields;
use crate::otp::Limited;
use crate::ratelimit::Scope;

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
/// and ids it like any other (an `Err` would pass them by). The response
/// carries the problem, as a handler's `Err` does, for the middleware that
/// answers `/v2` in Twilio's shape.
pub fn refuse<B>(request: ServiceRequest, problem: Problem) -> ServiceResponse<EitherBody<B>> {
    // (`ServiceRequest::into_response` would drop the error.)
    let (request, _) = request.into_parts();
    ServiceResponse::new(request, HttpResponse::from_error(problem)).map_into_right_body()
}

/// A refusing limit, carried on a response for `ratelimit_fields`.
#[derive(Clone)]
struct Refusing(Limited);

/// Marks `response` with the limit that refused it, if any.
pub fn mark_limit<B>(response: &mut HttpResponse<B>, limited: Option<&Limited>) {
    if let Some(limited) = limited {
        response.extensions_mut().insert(Refusing(limited.clone()));
    }
}

/// Middleware: the draft RateLimit fields (draft-ietf-httpapi-ratelimit-
/// headers-11) on a response a limit refused, as `http.ratelimit_fields`
/// says (RL-4, RL-5).
pub async fn ratelimit_fields(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let fields = *request
        .app_data::<web::Data<RateLimitFields>>()
        .expect("RateLimitFields are registered")
        .get_ref();
    let mut response = next.call(request).await?;
    let refusing = response.response().extensions().get::<Refusing>().cloned();
    if let Some(Refusing(limited)) = refusing {
        for (name, value) in field_values(&limited, fields) {
            if let Ok(value) = HeaderValue::try_from(value) {
                response
                    .headers_mut()
                    .insert(HeaderName::from_static(name), value);
            }
        }
    }
    Ok(response)
}

/// `RateLimit-Policy` and `RateLimit` for `limited` under `fields`.
fn field_values(limited: &Limited, fields: RateLimitFields) -> Vec<(&'static str, String)> {
    let t = seconds(limited.retry_after);
    let tenant = matches!(limited.scope, Scope::Budget | Scope::ApiKey);
    match fields {
        RateLimitFields::Off => Vec::new(),
        RateLimitFields::Names if !tenant => {
            let name = limited.scope.as_str();
            vec![
                ("ratelimit-policy", format!("\"{name}\"")),
                ("ratelimit", format!("\"{name}\";t={t}")),
            ]
        }
        RateLimitFields::Names | RateLimitFields::Full => {
            let (name, q, w) = (&limited.policy, limited.quota, seconds(limited.window));
            vec![
                ("ratelimit-policy", format!("\"{name}\";q={q};w={w}")),
                ("ratelimit", format!("\"{name}\";r=0;t={t}")),
            ]
        }
    }
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
        let mut response = response.body(body(self));
        mark_limit(&mut response, self.limited());
        response
    }
}
