//! The client's IP for limits over HTTP (ABU-5), and the middleware that
//! sheds floods from it (`ratelimit::Flood`).

use std::future::{ready, Ready};
use std::net::IpAddr;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};

use super::problem::{refuse, Problem};
use crate::ratelimit::{Flood, TrustedProxies};

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

/// Middleware: resolves the client once and sheds floods from it.
pub async fn shed_floods(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let client = client_of(request.request());
    if let (Some(ip), Some(flood)) = (client.0, request.app_data::<web::Data<Flood>>()) {
        if let Err(wait) = flood.admit(ip) {
            return Ok(refuse(request, Problem::flood(wait)));
        }
    }
    request.extensions_mut().insert(client);
    Ok(next.call(request).await?.map_into_left_body())
}
