//! Per-request telemetry: a request id (`X-Request-Id`, honoured when
//! sane, else generated, always returned), one span per request, and the
//! HTTP metrics. Paths are labelled by route pattern, never by value.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web;
use tracing::Instrument;

use crate::metrics::Metrics;

/// The pattern of the route a resource serves (set by `http::resource`):
/// read after routing, so labels cost no second match of the path.
pub struct Route(pub String);

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The caller's id if it is 1 to 64 of `[A-Za-z0-9._-]` (anything else could
/// forge log lines), else a fresh random one.
fn request_id(request: &ServiceRequest) -> String {
    request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|id| {
            (1..=64).contains(&id.len())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        })
        .map_or_else(|| crate::config::random_token(12), str::to_owned)
}

pub async fn observe(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let id = request_id(&request);
    let metrics = request
        .app_data::<web::Data<Metrics>>()
        .expect("Metrics are registered")
        .clone();
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %request.method(),
        route = tracing::field::Empty,
        api_key = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    if let Some(trace_id) = span.in_scope(crate::telemetry::trace_id) {
        span.record("trace_id", trace_id);
    }
    let mut response = next.call(request).instrument(span.clone()).await?;
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    let route = response
        .request()
        .app_data::<Route>()
        .map_or("unmatched", |route| route.0.as_str());
    span.record("route", route);
    metrics.http_request(route, status, elapsed.as_secs_f64());
    span.in_scope(|| {
        tracing::info!(
            status,
            millis = elapsed.as_millis() as u64,
            "request answered"
        )
    });
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    Ok(response)
}
