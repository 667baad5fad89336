//! Who is calling: API keys in `Authorization: Bearer`, each bound to the
//! services it may use (DESIGN invariant 9).

use std::collections::HashMap;
use std::future::{ready, Ready};
use std::sync::Arc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use sha2::{Digest, Sha256};

use super::problem::{refuse, Problem};
use crate::config::ApiKey;
use crate::domain::ServiceName;
use crate::metrics::Metrics;
use crate::otp::{Otp, Service};

/// The configured keys, by the SHA-256 of the key. Looking up a hash of a
/// high-entropy key leaks nothing useful through timing.
pub struct ApiKeys {
    by_hash: HashMap<[u8; 32], ApiKey>,
    metrics: Metrics,
}

impl ApiKeys {
    pub fn new(keys: Vec<ApiKey>, metrics: Metrics) -> Self {
        let by_hash = keys.into_iter().map(|key| (key.sha256, key)).collect();
        ApiKeys { by_hash, metrics }
    }

    fn find(&self, presented: &str) -> Option<&ApiKey> {
        let hash: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        self.by_hash.get(&hash)
    }

    /// The configured id a refused key claims by its form `otpd_<id>_…`
    /// (`otpd new-api-key` makes them so), else `unknown`: a label with
    /// one value per configured key at most, never the key.
    fn claimed_id(&self, presented: &str) -> &str {
        self.by_hash
            .values()
            .map(|key| key.id.as_str())
            .filter(|id| {
                presented
                    .strip_prefix("otpd_")
                    .and_then(|rest| rest.strip_prefix(id))
                    .is_some_and(|rest| rest.starts_with('_'))
            })
            .max_by_key(|id| id.len())
            .unwrap_or("unknown")
    }

    /// The key presented as `authorization: Bearer <key>` (HTTP header or
    /// gRPC metadata), if configured and within its own rate.
    pub async fn caller(&self, otp: &Otp, authorization: Option<&str>) -> Result<ApiKey, Problem> {
        let presented = authorization
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim)
            .unwrap_or_default();
        let Some(key) = self.find(presented).cloned() else {
            self.metrics.unauthorized(self.claimed_id(presented));
            return Err(Problem::unauthorized());
        };
        tracing::Span::current().record("api_key", key.id.as_str());
        if let Some(per_second) = key.requests_per_second {
            otp.limit_api_key(&key.id, per_second)
                .await
                .map_err(Problem::from)?;
        }
        Ok(key)
    }
}

/// The authenticated caller, put in request extensions by `authenticate`.
#[derive(Clone, Debug)]
pub struct Caller(ApiKey);

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
        Err(problem) => Ok(refuse(request, &problem)),
    }
}

/// The `{service}` of the path, known to exist and allowed for the caller.
pub struct Authorized {
    pub service: Arc<Service>,
    /// The API key's id, which scopes idempotency keys.
    pub api_key: String,
}

impl FromRequest for Authorized {
    type Error = Problem;
    type Future = Ready<Result<Self, Problem>>;

    fn from_request(request: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        ready(authorize_request(request))
    }
}

fn authorize_request(request: &HttpRequest) -> Result<Authorized, Problem> {
    let caller = request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(Problem::unauthorized)?;
    let otp = request
        .app_data::<web::Data<Otp>>()
        .expect("Otp is registered");
    let raw = request.match_info().get("service").unwrap_or_default();
    authorize(otp, &caller.0, raw)
}

/// `raw` names a service that exists and `key` may use.
pub fn authorize(otp: &Otp, key: &ApiKey, raw: &str) -> Result<Authorized, Problem> {
    let not_found = || {
        Problem::new(
            actix_web::http::StatusCode::NOT_FOUND,
            "service-not-found",
            "no such service",
        )
    };
    let service: ServiceName = raw.parse().map_err(|_| not_found())?;
    let found = Arc::clone(otp.service(&service).map_err(|_| not_found())?);
    let allowed = key
        .services
        .as_ref()
        .is_none_or(|services| services.contains(&service));
    if !allowed {
        let detail = "this API key may not use this service";
        return Err(Problem::new(
            actix_web::http::StatusCode::FORBIDDEN,
            "service-forbidden",
            detail,
        ));
    }
    Ok(Authorized {
        service: found,
        api_key: key.id.clone(),
    })
}
