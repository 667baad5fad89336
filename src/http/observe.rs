//! Per-request telemetry: a request id (`X-Request-Id`, honoured when
//! sane, else generated, always returned), one span per request, and the
//! HTTP metrics. Paths are labelled by route pattern, never by value. Every
//! answer passes here as a response (inner middleware answers refusals
//! rather than failing, see `refuse`); 401, 403 and 429 are logged at most
//! `REJECTIONS_LOGGED_PER_SECOND` lines a second, each saying how many were
//! left out before it.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web;
use tracing::Instrument;

use crate::metrics::Metrics;

/// Rejection lines a replica writes per second at most: a
/// credential-stuffing run would otherwise write one per attempt.
pub const REJECTIONS_LOGGED_PER_SECOND: u32 = 10;

/// The log of refused requests, rate-limited.
pub struct RejectionLog {
    limiter: governor::DefaultDirectRateLimiter,
    left_out: AtomicU64,
}

impl Default for RejectionLog {
    fn default() -> Self {
        let per_second = NonZeroU32::new(REJECTIONS_LOGGED_PER_SECOND).expect("not zero");
        RejectionLog {
            limiter: governor::RateLimiter::direct(governor::Quota::per_second(per_second)),
            left_out: AtomicU64::new(0),
        }
    }
}

impl RejectionLog {
    pub fn record(&self, status: u16) {
        if self.limiter.check().is_err() {
            self.left_out.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let left_out = self.left_out.swap(0, Ordering::Relaxed);
        tracing::warn!(status, left_out, "request rejected");
    }
}

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
    let rejections = request
        .app_data::<web::Data<RejectionLog>>()
        .expect("the RejectionLog is registered")
        .clone();
    let mut response = next.call(request).instrument(span.clone()).await?;
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    let millis = elapsed.as_millis() as u64;
    // Refused before its resource ran (key check, flood shedding): the
    // pattern its path matches.
    let matched = response.request().match_pattern();
    let route = response
        .request()
        .app_data::<Route>()
        .map(|route| route.0.as_str())
        .or(matched.as_deref())
        .unwrap_or("unmatched");
    span.record("route", route);
    metrics.http_request(route, status, elapsed.as_secs_f64());
    span.in_scope(|| match status {
        401 | 403 | 429 => rejections.record(status),
        _ => tracing::info!(status, millis, "request answered"),
    });
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    Ok(response)
}
