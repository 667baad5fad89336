//! Who is calling: API keys (HTTP `Authorization: Bearer`, gRPC
//! `authorization` metadata), each bound to the services it may use
//! (DESIGN invariant 9).

use std::collections::HashMap;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::problem::{Kind, Problem};
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

/// The `{service}` of the path, known to exist and allowed for the caller.
pub struct Authorized {
    pub service: Arc<Service>,
    /// The API key's id, which scopes idempotency keys.
    pub api_key: String,
    /// The key may assert the end user's context.
    pub asserts_end_user: bool,
}

/// `raw` names a service that exists and `key`, an API key (not an admin
/// key), may use.
pub fn authorize(otp: &Otp, key: &ApiKey, raw: &str) -> Result<Authorized, Problem> {
    if key.admin {
        let detail = "an admin key may call only /admin";
        return Err(Problem::new(Kind::Forbidden, "admin-key", detail));
    }
    Ok(Authorized {
        service: allowed_service(otp, key, raw)?,
        api_key: key.id.clone(),
        asserts_end_user: key.assert_end_user,
    })
}

/// `raw` names a service that exists and `key`, an admin key, may use.
pub fn authorize_admin(otp: &Otp, key: &ApiKey, raw: &str) -> Result<Authorized, Problem> {
    if !key.admin {
        let detail = "this needs an admin key ([[api_keys]] admin = true)";
        return Err(Problem::new(Kind::Forbidden, "admin-key-required", detail));
    }
    Ok(Authorized {
        service: allowed_service(otp, key, raw)?,
        api_key: key.id.clone(),
        asserts_end_user: false,
    })
}

fn allowed_service(otp: &Otp, key: &ApiKey, raw: &str) -> Result<Arc<Service>, Problem> {
    let not_found = || Problem::new(Kind::NotFound, "service-not-found", "no such service");
    let service: ServiceName = raw.parse().map_err(|_| not_found())?;
    let found = Arc::clone(otp.service(&service).map_err(|_| not_found())?);
    let allowed = key
        .services
        .as_ref()
        .is_none_or(|services| services.contains(&service));
    if !allowed {
        let detail = "this API key may not use this service";
        return Err(Problem::new(Kind::Forbidden, "service-forbidden", detail));
    }
    Ok(found)
}
