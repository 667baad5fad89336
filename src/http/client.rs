//! The client's IP for limits (ABU-5), and the in-process flood shedder
//! that refuses floods per client before they reach Redis.

use std::future::{ready, Ready};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::problem::{refuse, Problem};
use crate::ratelimit::{network_of, TrustedProxies};

/// The end user's IP: the TCP peer, or what trusted proxies say it is.
#[derive(Clone, Copy, Debug)]
pub struct ClientIp(pub Option<IpAddr>);

fn header_values<'a>(request: &'a HttpRequest, name: &str) -> Vec<&'a str> {
    request
        .headers()
        .get_all(name)
        .filter_map(|value| value.to_str().ok())
        .collect()
}

fn client_of(request: &HttpRequest) -> ClientIp {
    let Some(peer) = request.peer_addr().map(|addr| addr.ip()) else {
        return ClientIp(None);
    };
    let proxies = request
        .app_data::<web::Data<TrustedProxies>>()
        .expect("TrustedProxies are registered");
    let forwarded = header_values(request, "forwarded");
    let x_forwarded_for = header_values(request, "x-forwarded-for");
    ClientIp(Some(proxies.client(peer, &forwarded, &x_forwarded_for)))
}

impl FromRequest for ClientIp {
    type Error = Problem;
    type Future = Ready<Result<Self, Problem>>;

    fn from_request(request: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let known = request.extensions().get::<ClientIp>().copied();
        ready(Ok(known.unwrap_or_else(|| client_of(request))))
    }
}

/// Per-client token buckets in process memory (a first line only: the
/// Redis limits are the truth).
pub struct Flood {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    ipv6_prefix: u8,
    seen: AtomicU64,
}

/// Forget idle clients every this many requests.
const RETAIN_EVERY: u64 = 10_000;

impl Flood {
    pub fn new(per_second: u32, burst: u32, ipv6_prefix: u8) -> Self {
        let per_second = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        let limiter = RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst));
        Flood {
            limiter,
            ipv6_prefix,
            seen: AtomicU64::new(0),
        }
    }
}

/// Middleware: resolves the client once and sheds floods from it.
pub async fn shed_floods(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let client = client_of(request.request());
    if let (Some(ip), Some(flood)) = (client.0, request.app_data::<web::Data<Flood>>()) {
        if flood.seen.fetch_add(1, Ordering::Relaxed) % RETAIN_EVERY == RETAIN_EVERY - 1 {
            flood.limiter.retain_recent();
        }
        if let Err(not_until) = flood.limiter.check_key(&network_of(ip, flood.ipv6_prefix)) {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            return Ok(refuse(request, &Problem::flood(wait)));
        }
    }
    request.extensions_mut().insert(client);
    Ok(next.call(request).await?.map_into_left_body())
}
