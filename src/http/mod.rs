//! HTTP API v1 on actix-web. Handlers turn requests into domain values, call
//! one use case in `otp`, and shape the answer; no rule lives here.

mod admin;
mod answer;
mod answering;
mod auth;
mod body;
mod client;
mod observe;
mod openapi;
mod problem;
mod receipts;
mod server;
mod verify_v2;

use actix_web::dev::HttpServiceFactory;
use actix_web::error::JsonPayloadError;
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::from_fn;
use actix_web::{web, FromRequest, Handler, HttpRequest, HttpResponse, Responder};
use serde::Serialize;

pub use self::answer::idempotency_key;
pub use self::answering::Refusals;
pub use self::body::BodyLimits;
pub use self::client::shed_floods;
pub use self::observe::{observe, RejectionLog, REJECTIONS_LOGGED_PER_SECOND, REQUEST_ID};
pub use self::openapi::document as openapi_document;
pub use self::problem::ratelimit_fields;
pub use self::server::{serve, ConnectionLimits};
pub use self::verify_v2::answer_as_twilio;

use self::openapi::{CommonProblems, ProblemDoc};

use self::answer::{idempotent, Answer, IdempotencyHeader};
use self::client::ClientIp;
use crate::api::{
    verification_id, Authorized, CheckBody, CheckByNumberBody, CheckView, Kind, Problem,
    ResendBody, StartBody, VerificationView,
};
use crate::metrics::{Metrics, Surface};
use crate::otp::Otp;

/// Registers every route (the Twilio Verify v2 surface when `verify` is
/// configured), with problem answers for bad bodies, unknown routes and
/// wrong methods. Bodies are read by `body::read_bodies` first.
pub fn configure(
    public_metrics: bool,
    verify: Option<std::sync::Arc<crate::config::TwilioVerify>>,
) -> impl FnOnce(&mut web::ServiceConfig) {
    move |config| {
        if let Some(verify) = verify {
            config.service(verify_v2::scope(verify));
        }
        let json = web::JsonConfig::default().error_handler(json_problem);
        // Checks first: the most frequent route, matched with the fewest
        // patterns tried.
        let v1 = web::scope(V1)
            .wrap(from_fn(auth::authenticate))
            .app_data(json)
            .service(resource(
                V1,
                "/verifications/{id}/check",
                Method::POST,
                check,
            ))
            .service(resource(V1, "/verifications", Method::POST, start))
            .service(resource(V1, "/verifications/{id}", Method::GET, status))
            .service(resource(
                V1,
                "/verifications/{id}/resend",
                Method::POST,
                resend,
            ))
            .service(resource(
                V1,
                "/verifications/{id}/cancel",
                Method::POST,
                cancel,
            ))
            .service(resource(V1, "/checks", Method::POST, check_by_number));
        let admin = web::scope(ADMIN)
            .wrap(from_fn(auth::authenticate))
            .app_data(web::JsonConfig::default().error_handler(json_problem))
            .service(resource(
                ADMIN,
                "/numbers/state",
                Method::POST,
                admin::state,
            ))
            .service(resource(ADMIN, "/numbers/lift", Method::POST, admin::lift))
            .service(resource(
                ADMIN,
                "/numbers/safe-list",
                Method::POST,
                admin::safe_list,
            ));
        if public_metrics {
            config.service(resource("", "/metrics", Method::GET, metrics));
        }
        config
            .service(resource("", "/openapi.json", Method::GET, openapi_json))
            .service(resource("", "/healthz", Method::GET, healthz))
            .service(resource("", "/readyz", Method::GET, readyz))
            .service(resource(
                "",
                "/v1/carriers/{carrier}/receipts",
                Method::POST,
                receipts::receive,
            ))
            .service(v1)
            .service(admin)
            .default_service(web::to(|| async { not_found() }));
    }
}

/// The scope of API v1.
const V1: &str = "/v1/services/{service}";
/// The scope of the admin API (admin keys only).
const ADMIN: &str = "/admin/v1/services/{service}";

/// `handler` for `method` at `path` within `scope`, labelled with its whole
/// pattern for metrics and logs (`observe::Route`), its body read in time
/// (`body::read_bodies`), answering 405 `method-not-allowed` with `Allow`
/// (RFC 9110 §15.5.6) to any other method.
fn resource<F, Args>(scope: &str, path: &str, method: Method, handler: F) -> impl HttpServiceFactory
where
    F: Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    let allow = method.to_string();
    web::resource(path)
        .app_data(observe::Route(format!("{scope}{path}")))
        .route(web::method(method).to(handler))
        .default_service(web::to(move || {
            let allow = allow.clone();
            async move { Err::<Answer, _>(method_not_allowed(allow)) }
        }))
        .wrap(from_fn(body::read_bodies))
}

/// Any method a resource does not take: 405 with `Allow` (RFC 9110
/// §15.5.6), answered as an `Err` so the response carries the problem (as
/// `/v2` answers it in Twilio's shape).
fn method_not_allowed(allow: String) -> Problem {
    let detail = "this endpoint does not take that method";
    Problem::new(Kind::MethodNotAllowed, "method-not-allowed", detail).with_header("allow", allow)
}

fn json_problem(error: JsonPayloadError, _: &HttpRequest) -> actix_web::Error {
    json_error(&error).into()
}

/// The problem for a body that is not the JSON an endpoint takes.
fn json_error(error: &JsonPayloadError) -> Problem {
    // Sizes are `body::read_bodies`' to refuse.
    match error {
        JsonPayloadError::ContentType => Problem::new(
            Kind::UnsupportedMediaType,
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
    }
}

/// An optional JSON body: empty reads as the default.
fn optional_json<T: serde::de::DeserializeOwned + Default>(
    request: &HttpRequest,
    body: &[u8],
) -> Result<T, Problem> {
    if body.is_empty() {
        return Ok(T::default());
    }
    if actix_web::HttpMessage::content_type(request) != "application/json" {
        return Err(json_error(&JsonPayloadError::ContentType));
    }
    serde_json::from_slice(body).map_err(|error| json_error(&JsonPayloadError::Deserialize(error)))
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

#[utoipa::path(
    post,
    path = "/v1/services/{service}/verifications",
    tag = "verifications",
    summary = "Start a verification (send a code)",
    params(("service" = String, Path, description = "The service, e.g. `demo`", example = "demo"), ("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$", description = "Makes a retry of this request answer what the first one did (24 h): 1 to 255 visible ASCII characters")),
    request_body = StartBody,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "A new verification; its SMS is queued", body = VerificationView,
            headers(("location" = String, description = "The verification's URL"))),
        (status = 200, description = "The number had a pending verification with this binding: resent", body = VerificationView),
        (status = 400, description = "`malformed-json`, `unknown-field`, `missing-field`, `invalid-body`, `invalid-phone-number`, `unsupported-channel`, `invalid-locale`, `invalid-binding`, `invalid-app-hash`, `invalid-idempotency-key`, `invalid-end-user`, `invalid-attestation`", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported-media-type`: send `Content-Type: application/json`", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "`service-not-found`", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "`idempotency-key-in-use`", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "`country-not-allowed`, `message-too-long`, `idempotency-key-reused`", body = ProblemDoc, content_type = "application/problem+json"),
        CommonProblems
    ),
)]
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
    let client = crate::api::client(&auth, body.end_user.as_ref(), client.0)?;
    let request = body.to_request(&auth.service, client, Surface::Http, accept_language)?;
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

#[utoipa::path(
    post,
    path = "/v1/services/{service}/verifications/{id}/check",
    tag = "verifications",
    summary = "Check a code",
    params(("service" = String, Path, description = "The service, e.g. `demo`", example = "demo"), ("id" = String, Path, description = "The verification id (24 URL-safe characters)")),
    request_body = CheckBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Checked: `valid` says whether the code was right", body = CheckView),
        (status = 400, description = "`malformed-json`, `unknown-field`, `missing-field`, `invalid-body`, `invalid-code`, `invalid-binding`, `invalid-end-user`", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported-media-type`: send `Content-Type: application/json`", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "`verification-not-found`, `service-not-found`", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "`verification-approved`, `verification-failed`, `verification-canceled`", body = ProblemDoc, content_type = "application/problem+json"),
        CommonProblems
    ),
)]
async fn check(
    auth: Authorized,
    client: ClientIp,
    path: web::Path<(String, String)>,
    body: web::Json<CheckBody>,
    otp: web::Data<Otp>,
) -> Result<Answer, Problem> {
    let client = crate::api::client(&auth, body.end_user.as_ref(), client.0)?;
    let request = body.to_request(
        &auth.service,
        verification_id(&path.1)?,
        client,
        Surface::Http,
    )?;
    checked(&otp, request).await
}

#[utoipa::path(
    post,
    path = "/v1/services/{service}/checks",
    tag = "verifications",
    summary = "Check a code by number",
    params(("service" = String, Path, description = "The service, e.g. `demo`", example = "demo")),
    request_body = CheckByNumberBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Checked: `valid` says whether the code was right", body = CheckView),
        (status = 400, description = "`malformed-json`, `unknown-field`, `missing-field`, `invalid-body`, `invalid-phone-number`, `invalid-code`, `invalid-binding`, `invalid-end-user`", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported-media-type`: send `Content-Type: application/json`", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "`verification-not-found` (no pending verification for the number: none, or its last one finished), `service-not-found`", body = ProblemDoc, content_type = "application/problem+json"),
        CommonProblems
    ),
)]
async fn check_by_number(
    auth: Authorized,
    client: ClientIp,
    body: web::Json<CheckByNumberBody>,
    otp: web::Data<Otp>,
) -> Result<Answer, Problem> {
    let client = crate::api::client(&auth, body.end_user.as_ref(), client.0)?;
    checked(&otp, body.to_request(&auth.service, client, Surface::Http)?).await
}

async fn checked(otp: &Otp, request: crate::otp::CheckRequest) -> Result<Answer, Problem> {
    let outcome = otp.check(request).await?;
    let view = CheckView {
        verification: VerificationView::from(&outcome.verification),
        valid: outcome.valid,
    };
    Ok(Answer::json(StatusCode::OK, &view))
}

#[utoipa::path(
    post,
    path = "/v1/services/{service}/verifications/{id}/resend",
    tag = "verifications",
    summary = "Resend (new code)",
    params(("service" = String, Path, description = "The service, e.g. `demo`", example = "demo"), ("id" = String, Path, description = "The verification id (24 URL-safe characters)"), ("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$", description = "Makes a retry of this request answer what the first one did (24 h): 1 to 255 visible ASCII characters")),
    request_body(content = Option<ResendBody>, description = "Optional: the channel to resend on (else the verification's)", content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A new code and a new SMS or call; attempts are not reset", body = VerificationView),
        (status = 400, description = "`malformed-json`, `unknown-field`, `invalid-body`, `unsupported-channel`, `invalid-idempotency-key`", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported-media-type`: a body needs `Content-Type: application/json`", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "`verification-not-found`, `service-not-found`", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "`verification-approved`, `verification-failed`, `verification-canceled`, `idempotency-key-in-use`", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "`channel-unreachable` (the number takes no message on that channel), `idempotency-key-reused`", body = ProblemDoc, content_type = "application/problem+json"),
        CommonProblems
    ),
)]
async fn resend(
    request: HttpRequest,
    auth: Authorized,
    key: IdempotencyHeader,
    path: web::Path<(String, String)>,
    body: web::Bytes,
    otp: web::Data<Otp>,
) -> Result<Answer, Problem> {
    let id = verification_id(&path.1)?;
    let body: ResendBody = optional_json(&request, &body)?;
    let channel = body.channel(&auth.service)?;
    let bytes = request_bytes("resend", &auth, &path.1, &body);
    Ok(idempotent(&otp, &auth, key, &bytes, async {
        let verification = otp
            .resend(&auth.service.name, &id, channel, Surface::Http)
            .await?;
        Ok(Answer::json(
            StatusCode::OK,
            &VerificationView::from(&verification),
        ))
    })
    .await)
}

#[utoipa::path(
    post,
    path = "/v1/services/{service}/verifications/{id}/cancel",
    tag = "verifications",
    summary = "Cancel",
    params(("service" = String, Path, description = "The service, e.g. `demo`", example = "demo"), ("id" = String, Path, description = "The verification id (24 URL-safe characters)"), ("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$", description = "Makes a retry of this request answer what the first one did (24 h): 1 to 255 visible ASCII characters")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Canceled", body = VerificationView),
        (status = 400, description = "`invalid-idempotency-key`", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "`verification-not-found`, `service-not-found`", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "`verification-approved`, `verification-failed`, `verification-canceled`, `idempotency-key-in-use`", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "`idempotency-key-reused`", body = ProblemDoc, content_type = "application/problem+json"),
        CommonProblems
    ),
)]
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

#[utoipa::path(
    get,
    path = "/v1/services/{service}/verifications/{id}",
    tag = "verifications",
    summary = "Read a verification",
    params(("service" = String, Path, description = "The service, e.g. `demo`", example = "demo"), ("id" = String, Path, description = "The verification id (24 URL-safe characters)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The verification's current state", body = VerificationView),
        (status = 404, description = "`verification-not-found`, `service-not-found`", body = ProblemDoc, content_type = "application/problem+json"),
        CommonProblems
    ),
)]
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

#[utoipa::path(get, path = "/healthz", tag = "operations", summary = "Liveness",
    responses((status = 200, description = "The process answers", body = serde_json::Value, example = json!({"status": "ok"}))))]
async fn healthz() -> Answer {
    Answer::json(StatusCode::OK, &serde_json::json!({ "status": "ok" }))
}

#[utoipa::path(get, path = "/readyz", tag = "operations", summary = "Readiness",
    responses(
        (status = 200, description = "otpd can write to its store (every shard's primary takes a write), and its clock is within `redis.max_clock_skew` of Redis's", body = serde_json::Value, example = json!({"status": "ready"})),
        (status = 503, description = "`store-unavailable`, `clock-skew`", body = ProblemDoc, content_type = "application/problem+json"),
    ))]
async fn readyz(otp: web::Data<Otp>) -> Result<Answer, Problem> {
    otp.ready().await?;
    Ok(Answer::json(
        StatusCode::OK,
        &serde_json::json!({ "status": "ready" }),
    ))
}

#[utoipa::path(get, path = "/openapi.json", tag = "operations", summary = "This document",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", body = serde_json::Value)))]
async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(openapi_document())
}

/// The routes of the separate metrics listener: `/metrics` only.
pub fn metrics_only(config: &mut web::ServiceConfig) {
    config
        .service(resource("", "/metrics", Method::GET, metrics))
        .default_service(web::to(|| async { not_found() }));
}

/// No route: an `Err`, so the response carries the problem (as `/v2`
/// answers it in Twilio's shape).
fn not_found() -> Result<Answer, Problem> {
    Err(Problem::new(
        Kind::NotFound,
        "not-found",
        "no such endpoint",
    ))
}

#[utoipa::path(get, path = "/metrics", tag = "operations", summary = "Prometheus metrics",
    description = "Served here unless `http.metrics_listen` moves it to a listener of its own.",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain; version=0.0.4; charset=utf-8")))]
async fn metrics(metrics: web::Data<Metrics>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(metrics.render())
}
