//! API keys over HTTP: the `/v1` middleware that admits a caller with a
//! valid key, and the `Authorized` extractor for the path's service.

use std::future::{ready, Ready};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};

use super::problem::{refuse, Problem};
use crate::api::{authorize, authorize_admin, ApiKeys, Authorized};
use crate::config::ApiKey;
use crate::otp::Otp;

/// The authenticated caller, put in request extensions by `authenticate`.
#[derive(Clone, Debug)]
struct Caller(ApiKey);

/// Middleware for `/v1`: no valid key, no further work (401).
pub async fn authenticate(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let keys = request
        .app_data::<web::Data<ApiKeys>>()
        .expect("ApiKeys are registered");
    let otp = request
        .app_data::<web::Data<Otp>>()
        .expect("Otp is registered");
    let authorization = request
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok());
    match keys.caller(otp, authorization).await {
        Ok(key) => {
            request.extensions_mut().insert(Caller(key));
            Ok(next.call(request).await?.map_into_left_body())
        }
        Err(problem) => Ok(refuse(request, problem)),
    }
}

impl FromRequest for Authorized {
    type Error = Problem;
    type Future = Ready<Result<Self, Problem>>;

    fn from_request(request: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        ready(authorize_request(request))
    }
}

fn authorize_request(request: &HttpRequest) -> Result<Authorized, Problem> {
    authorized_by(request, authorize)
}

/// The path's service for an admin key (the `/admin` routes).
pub fn authorize_admin_request(request: &HttpRequest) -> Result<Authorized, Problem> {
    authorized_by(request, authorize_admin)
}

/// The caller `authenticate` admitted, and the path's `{service}`, as
/// `check` judges them.
fn authorized_by(
    request: &HttpRequest,
    check: fn(&Otp, &ApiKey, &str) -> Result<Authorized, Problem>,
) -> Result<Authorized, Problem> {
    let caller = request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(Problem::unauthorized)?;
    let otp = request
        .app_data::<web::Data<Otp>>()
        .expect("Otp is registered");
    let raw = request.match_info().get("service").unwrap_or_default();
    check(otp, &caller.0, raw)
}
