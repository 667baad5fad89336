//! HTTP API v1 on actix-web. Handlers turn requests into domain values, call
//! one use case in `otp`, and shape the answer; no rule lives here.

mod answer;
mod auth;
mod client;
mod dto;
mod observe;
mod problem;
mod receipts;

use actix_web::error::JsonPayloadError;
use actix_web::http::StatusCode;
use actix_web::middleware::from_fn;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

pub use self::auth::{authorize, ApiKeys, Authorized};
pub use self::client::{shed_floods, Flood};
pub use self::dto::{verification_id, CheckBody, CheckByNumberBody, StartBody, VerificationView};
pub use self::observe::{observe, REQUEST_ID};
pub use self::problem::Problem;

use self::answer::{idempotent, Answer, IdempotencyHeader};
use self::client::ClientIp;
use self::dto::CheckView;
use crate::metrics::Metrics;
use crate::otp::Otp;

/// Registers every route, with JSON limits and problem answers for bad
/// bodies, unknown routes and wrong methods.
pub fn configure(
    max_body_bytes: usize,
    public_metrics: bool,
) -> impl FnOnce(&mut web::ServiceConfig) {
    move |config| {
        let json = web::JsonConfig::default()
            .limit(max_body_bytes)
            .error_handler(json_problem);
        let v1 = web::scope("/v1/services/{service}")
            .wrap(from_fn(auth::authenticate))
            .app_data(json)
            .service(resource("/verifications").route(web::post().to(start)))
            .service(resource("/verifications/{id}").route(web::get().to(status)))
            .service(resource("/verifications/{id}/check").route(web::post().to(check)))
            .service(resource("/verifications/{id}/resend").route(web::post().to(resend)))
            .service(resource("/verifications/{id}/cancel").route(web::post().to(cancel)))
            .service(resource("/checks").route(web::post().to(check_by_number)));
        if public_metrics {
            config.service(resource("/metrics").route(web::get().to(metrics)));
        }
        config
            .service(resource("/healthz").route(web::get().to(healthz)))
            .service(resource("/readyz").route(web::get().to(readyz)))
            .service(
                resource("/v1/carriers/{carrier}/receipts")
                    .app_data(web::PayloadConfig::new(max_body_bytes))
                    .route(web::post().to(receipts::receive)),
            )
            .service(v1)
            .default_service(web::to(|| async { not_found() }));
    }
}

fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(|| async {
        let detail = "this endpoint does not take that method";
        Answer::problem(&Problem::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            detail,
        ))
    }))
}

fn json_problem(error: JsonPayloadError, _: &HttpRequest) -> actix_web::Error {
    let problem = match &error {
        JsonPayloadError::OverflowKnownLength { .. } | JsonPayloadError::Overflow { .. } => {
            Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "the body is larger than this API accepts",
            )
        }
        JsonPayloadError::ContentType => Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "send Content-Type: application/json",
        ),
        JsonPayloadError::Deserialize(inner) if inner.is_data() => {
            // serde names the field but may quote the value: keep the name only.
            let message = inner.to_string();
            match message.split('`').nth(1) {
                Some(field) if message.starts_with("unknown field") => {
                    Problem::bad_request("unknown-field", format!("unknown field {field:?}"))
                }
                Some(field) if message.starts_with("missing field") => {
                    Problem::bad_request("missing-field", format!("missing field {field:?}"))
                }
                _ => Problem::bad_request("invalid-body", "a field has the wrong type"),
            }
        }
        _ => Problem::bad_request("malformed-json", "the body is not valid JSON"),
    };
    problem.into()
}

/// The canonical bytes of a request, for idempotency fingerprints.
fn request_bytes(operation: &str, auth: &Authorized, id: &str, body: &impl Serialize) -> Vec<u8> {
    let body = serde_json::to_vec(body).expect("request bodies serialize");
    [
        operation.as_bytes(),
        auth.service.name.as_str().as_bytes(),
        id.as_bytes(),
        &body,
    ]
    .join(&b'\0')
}

async fn start(
    request: HttpRequest,
    auth: Authorized,
    client: ClientIp,
    key: IdempotencyHeader,
    body: web::Json<StartBody>,
    otp: web::Data<Otp>,
) -> Result<Answer, Problem> {
    let accept_language = request
        .headers()
        .get("accept-language")
        .and_then(|value| value.to_str().ok());
    let request = body.to_request(&auth.service, client.0, accept_language)?;
    let bytes = request_bytes("start", &auth, "", &body.0);
    Ok(idempotent(&otp, &auth, key, &bytes, async {
        let outcome = otp.start(request).await?;
        let view = VerificationView::from(&outcome.verification);
        if !outcome.created {
            return Ok(Answer::json(StatusCode::OK, &view));
        }
        let location = format!(
            "/v1/services/{}/verifications/{}",
            auth.service.name, view.id
        );
        Ok(Answer::json(StatusCode::CREATED, &view).with_location(location))
    })
    .await)
}

async fn check(
    auth: Authorized,
    client: ClientIp,
    path: web::Path<(String, String)>,
    body: web::Json<CheckBody>,
    otp: web::Data<Otp>,
) -> Result<Answer, Problem> {
    let request = body.to_request(&auth.service, verification_id(&path.1)?, client.0)?;
    checked(&otp, request).await
}

async fn check_by_number(
    auth: Authorized,
    client: ClientIp,
    body: web::Json<CheckByNumberBody>,
    otp: web::Data<Otp>,
) -> Result<Answer, Problem> {
    checked(&otp, body.to_request(&auth.service, client.0)?).await
}

async fn checked(otp: &Otp, request: crate::otp::CheckRequest) -> Result<Answer, Problem> {
    let outcome = otp.check(request).await?;
    let view = CheckView {
        verification: VerificationView::from(&outcome.verification),
        valid: outcome.valid,
    };
    Ok(Answer::json(StatusCode::OK, &view))
}

async fn resend(
    auth: Authorized,
    key: IdempotencyHeader,
    path: web::Path<(String, String)>,
    otp: web::Data<Otp>,
) -> Result<Answer, Problem> {
    let id = verification_id(&path.1)?;
    let bytes = request_bytes("resend", &auth, &path.1, &());
    Ok(idempotent(&otp, &auth, key, &bytes, async {
        let verification = otp.resend(&auth.service.name, &id).await?;
        Ok(Answer::json(
            StatusCode::OK,
            &VerificationView::from(&verification),
        ))
    })
    .await)
}

async fn cancel(
    auth: Authorized,
    key: IdempotencyHeader,
    path: web::Path<(String, String)>,
    otp: web::Data<Otp>,
) -> Result<Answer, Problem> {
    let id = verification_id(&path.1)?;
    let bytes = request_bytes("cancel", &auth, &path.1, &());
    Ok(idempotent(&otp, &auth, key, &bytes, async {
        let verification = otp.cancel(&auth.service.name, &id).await?;
        Ok(Answer::json(
            StatusCode::OK,
            &VerificationView::from(&verification),
        ))
    })
    .await)
}

async fn status(
    auth: Authorized,
    path: web::Path<(String, String)>,
    otp: web::Data<Otp>,
) -> Result<Answer, Problem> {
    let verification = otp
        .get(&auth.service.name, &verification_id(&path.1)?)
        .await?;
    Ok(Answer::json(
        StatusCode::OK,
        &VerificationView::from(&verification),
    ))
}

async fn healthz() -> Answer {
    Answer::json(StatusCode::OK, &serde_json::json!({ "status": "ok" }))
}

async fn readyz(otp: web::Data<Otp>) -> Result<Answer, Problem> {
    otp.ready().await?;
    Ok(Answer::json(
        StatusCode::OK,
        &serde_json::json!({ "status": "ready" }),
    ))
}

/// The routes of the separate metrics listener: `/metrics` only.
pub fn metrics_only(config: &mut web::ServiceConfig) {
    config
        .service(resource("/metrics").route(web::get().to(metrics)))
        .default_service(web::to(|| async { not_found() }));
}

fn not_found() -> Answer {
    Answer::problem(&Problem::new(
        StatusCode::NOT_FOUND,
        "not-found",
        "no such endpoint",
    ))
}

async fn metrics(metrics: web::Data<Metrics>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(metrics.render())
}
