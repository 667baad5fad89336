//! The Twilio Verify v2 surface (`/v2`, when `[twilio_verify]` has
//! credentials): the resources a login flow uses, with Twilio's field
//! names, statuses and error codes, over the same use cases, limits and
//! metrics as `/v1` (its routes are labelled `/v2/…`). Apps written for
//! Twilio Verify and its official SDKs move to otpd by changing the base
//! URL and the credentials. A verification's `sid` (`VE…`) is its otpd id
//! written another way (`VerificationId::twilio_sid`).

mod error;
mod form;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{HttpServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use actix_web::http::StatusCode;
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub use self::error::TwilioError;
use self::form::Form;
use super::client::ClientIp;
use super::{body, observe};
use crate::api::{
    authorize, Authorized, CheckBody, CheckByNumberBody, EndUser, Problem, StartBody,
};
use crate::config::TwilioVerify;
use crate::domain::{Channel, Status, Timestamp, VerificationId};
use crate::metrics::{Metrics, Surface};
use crate::otp::{Otp, Verification};

const SCOPE: &str = "/v2/Services/{ServiceSid}";

/// Create: what otpd takes, and what Twilio documents that it refuses.
const CREATE: &[&str] = &[
    "To",
    "Channel",
    "Locale",
    "AppHash",
    "CustomFriendlyName",
    "RateLimits",
    "DeviceIp",
];
const CREATE_UNSUPPORTED: &[&str] = &[
    "CustomMessage",
    "SendDigits",
    "CustomCode",
    "Amount",
    "Payee",
    "ChannelConfiguration",
    "TemplateSid",
    "TemplateCustomSubstitutions",
    "RiskCheck",
    "Tags",
    "EnableSnaClientToken",
];
const CHECK: &[&str] = &["Code", "To", "VerificationSid"];
const CHECK_UNSUPPORTED: &[&str] = &["Amount", "Payee", "SnaClientToken"];
const UPDATE: &[&str] = &["Status"];

/// The form of a create (`application/x-www-form-urlencoded`).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // documentation only: the form is read by `Form`
#[schema(title = "CreateVerificationForm")]
pub struct CreateForm {
    /// E.164 or national.
    #[schema(rename = "To", example = "+819012345678")]
    to: String,
    /// `sms`, or `call` where the service offers voice.
    #[schema(rename = "Channel", example = "sms")]
    channel: String,
    #[schema(rename = "Locale")]
    locale: Option<String>,
    /// The Android SMS Retriever hash (11 characters).
    #[schema(rename = "AppHash")]
    app_hash: Option<String>,
    /// What this verification's messages call the service, instead of its
    /// display name: 1 to 20 characters, no control characters or braces.
    #[schema(rename = "CustomFriendlyName", example = "Example Bank")]
    custom_friendly_name: Option<String>,
    /// JSON: `{"end_user_ip_address": "203.0.113.7"}`.
    #[schema(rename = "RateLimits")]
    rate_limits: Option<String>,
    #[schema(rename = "DeviceIp")]
    device_ip: Option<String>,
}

/// The form of a check: `Code` and exactly one of `To` or
/// `VerificationSid`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // documentation only
#[schema(title = "VerificationCheckForm")]
pub struct CheckForm {
    #[schema(rename = "Code", example = "123456")]
    code: String,
    #[schema(rename = "To")]
    to: Option<String>,
    #[schema(rename = "VerificationSid")]
    verification_sid: Option<String>,
}

/// The form of an update: `Status=canceled`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // documentation only
#[schema(title = "UpdateVerificationForm")]
pub struct UpdateForm {
    #[schema(rename = "Status", example = "canceled")]
    status: String,
}

/// The `/v2` routes, each labelled and with its body read in time as in
/// `/v1`.
pub fn scope(verify: std::sync::Arc<TwilioVerify>) -> impl HttpServiceFactory {
    // Any other method: 405 with `Allow`, as on /v1 (20004 once
    // `answer_as_twilio` has put it in Twilio's shape).
    let route = |path: &str, allow: &'static str| {
        web::resource(path)
            .app_data(observe::Route(format!("{SCOPE}{path}")))
            .default_service(web::to(move || async move {
                Err::<HttpResponse, _>(super::method_not_allowed(allow.to_owned()))
            }))
            .wrap(from_fn(body::read_bodies))
    };
    web::scope(SCOPE)
        .app_data(web::Data::from(verify))
        .service(route("/VerificationCheck", "POST").route(web::post().to(check)))
        .service(route("/Verifications", "POST").route(web::post().to(create)))
        .service(
            route("/Verifications/{Sid}", "GET, POST")
                .route(web::get().to(fetch))
                .route(web::post().to(update)),
        )
        .service(route("", "GET").route(web::get().to(service)))
}

/// What every `/v2` operation may answer besides its own errors (the
/// OpenAPI document's part: never built).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // documentation only
pub enum TwilioCommon {
    #[response(
        status = 401,
        description = "20003: no or unknown credential (with `WWW-Authenticate: Basic`)"
    )]
    Unauthenticated(TwilioError),
    #[response(status = 405, description = "20004: another method (with `Allow`)")]
    MethodNotAllowed(TwilioError),
    #[response(
        status = 408,
        description = "60401: the body did not arrive within `http.request_timeout`; the connection is closed"
    )]
    TimedOut(TwilioError),
    #[response(status = 413, description = "20413: a body over `http.max_body_bytes`")]
    TooLarge(TwilioError),
    #[response(
        status = 431,
        description = "`headers-too-large`, refused before any route, so as an otpd problem",
        content_type = "application/problem+json"
    )]
    HeadersTooLarge(super::openapi::ProblemDoc),
    #[response(
        status = 503,
        description = "20503: otpd cannot answer now (never an approval)"
    )]
    Unavailable(TwilioError),
}

/// Middleware, with the surface on: what otpd refuses under `/v2` before a
/// handler runs (no such path, a body too large or too slow, a flood)
/// answers in Twilio's error shape, not as a problem: the SDKs raise another exception class
/// for an RFC 9457 problem, which an app catching `TwilioRestException`
/// would not catch. The problem's headers (`Retry-After`, `Allow`, the
/// RateLimit fields) are kept.
pub async fn answer_as_twilio(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let twilio = request.path().starts_with("/v2/");
    let response = next.call(request).await?;
    let problem = response
        .response()
        .error()
        .and_then(|error| error.as_error::<Problem>());
    let Some(problem) = problem.filter(|_| twilio) else {
        return Ok(response.map_into_left_body());
    };
    let mut answer = TwilioError::of(problem).error_response();
    for (name, value) in response.headers() {
        if name != CONTENT_TYPE && name != CONTENT_LENGTH {
            answer.headers_mut().insert(name.clone(), value.clone());
        }
    }
    let (request, _) = response.into_parts();
    Ok(ServiceResponse::new(request, answer).map_into_right_body())
}

/// The caller: HTTP Basic with a configured credential (constant-time),
/// standing for an otpd API key that may use the path's service SID.
async fn authenticate(request: &HttpRequest) -> Result<Authorized, TwilioError> {
    let verify = request
        .app_data::<web::Data<TwilioVerify>>()
        .expect("the surface is registered with its settings");
    let otp = request
        .app_data::<web::Data<Otp>>()
        .expect("Otp is registered");
    let presented = request
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Basic "))
        .and_then(|encoded| STANDARD.decode(encoded.trim()).ok())
        .and_then(|decoded| String::from_utf8(decoded).ok());
    let (sid, secret) = presented
        .as_deref()
        .and_then(|pair| pair.split_once(':'))
        .unwrap_or_default();
    let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
    let credential = verify.credentials.iter().find(|credential| {
        credential.sid == sid && bool::from(credential.secret_sha256.ct_eq(&digest))
    });
    let Some(credential) = credential else {
        if let Some(metrics) = request.app_data::<web::Data<Metrics>>() {
            metrics.unauthorized("twilio-verify");
        }
        return Err(TwilioError::authenticate());
    };
    let key = &credential.key;
    if let Some(per_second) = key.requests_per_second {
        otp.limit_api_key(&key.id, per_second)
            .await
            .map_err(|error| TwilioError::from(crate::api::Problem::from(error)))?;
    }
    let service_sid = request.match_info().get("ServiceSid").unwrap_or_default();
    let name = verify
        .services
        .get(service_sid)
        .ok_or_else(TwilioError::not_found)?;
    authorize(otp, key, name.as_str()).map_err(TwilioError::from)
}

/// A verification as Twilio's Verification resource.
#[derive(Serialize, utoipa::ToSchema)]
pub struct VerificationResource {
    sid: String,
    service_sid: String,
    account_sid: String,
    /// E.164, as the caller sent it: the one place otpd returns a full
    /// number.
    to: String,
    channel: &'static str,
    status: &'static str,
    valid: bool,
    #[schema(value_type = Object)]
    lookup: serde_json::Value,
    amount: Option<String>,
    payee: Option<String>,
    send_code_attempts: Vec<SendCodeAttempt>,
    /// Silent network auth: never used by otpd (null).
    #[schema(value_type = Option<Object>)]
    sna: Option<serde_json::Value>,
    date_created: String,
    date_updated: String,
    url: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct SendCodeAttempt {
    attempt_sid: String,
    channel: &'static str,
    time: String,
}

/// Twilio's spelling of a channel.
fn channel_name(channel: Channel) -> &'static str {
    match channel {
        Channel::Sms => "sms",
        Channel::Voice => "call",
    }
}

/// Twilio's spelling of a status.
fn status_name(status: Status) -> &'static str {
    match status {
        Status::Pending => "pending",
        Status::Approved => "approved",
        Status::Canceled => "canceled",
        Status::Failed => "max_attempts_reached",
    }
}

/// A resource's absolute URL on the otpd that answered (as the caller
/// reached it), never Twilio's host: a client that follows it stays here.
fn url(request: &HttpRequest, path: &str) -> String {
    let origin = request.connection_info();
    format!("{}://{}{path}", origin.scheme(), origin.host())
}

fn iso(at: Timestamp) -> String {
    at.to_string()
}

impl VerificationResource {
    fn of(
        request: &HttpRequest,
        verification: &Verification,
        to: String,
    ) -> Result<Self, TwilioError> {
        let verify = request
            .app_data::<web::Data<TwilioVerify>>()
            .expect("the surface is registered with its settings");
        let service_sid = request
            .match_info()
            .get("ServiceSid")
            .unwrap_or_default()
            .to_owned();
        // A verification made before sids existed has none: Verify never
        // saw it.
        let sid = verification
            .id
            .twilio_sid()
            .ok_or_else(TwilioError::not_found)?;
        let channel = channel_name(verification.channel);
        let attempts = (1..=verification.sends)
            .map(|send| SendCodeAttempt {
                attempt_sid: format!("VL{}{send:02x}", &sid[2..32]),
                channel,
                time: iso(verification.created_at),
            })
            .collect();
        Ok(VerificationResource {
            url: url(
                request,
                &format!("/v2/Services/{service_sid}/Verifications/{sid}"),
            ),
            sid,
            service_sid,
            account_sid: verify.account_sid.clone(),
            to,
            channel,
            status: status_name(verification.status),
            valid: verification.status == Status::Approved,
            lookup: serde_json::json!({}),
            amount: None,
            payee: None,
            send_code_attempts: attempts,
            sna: None,
            date_created: iso(verification.created_at),
            date_updated: iso(verification.created_at),
        })
    }
}

fn json(status: StatusCode, body: &impl Serialize) -> HttpResponse {
    HttpResponse::build(status).json(body)
}

/// The end user a backend names in `RateLimits` (`end_user_ip_address`)
/// or `DeviceIp`: their limits apply, as `end_user.client_ip` in `/v1`.
fn end_user(form: &Form) -> Result<Option<EndUser>, TwilioError> {
    let from_limits = match form.get("RateLimits") {
        Some(raw) => {
            let limits: serde_json::Map<String, serde_json::Value> = serde_json::from_str(raw)
                .map_err(|_| TwilioError::invalid("RateLimits is not a JSON object"))?;
            if let Some(unknown) = limits.keys().find(|key| *key != "end_user_ip_address") {
                return Err(TwilioError::invalid(format!(
                    "RateLimits.{unknown} is unknown"
                )));
            }
            match limits.get("end_user_ip_address") {
                Some(serde_json::Value::String(ip)) => Some(ip.clone()),
                Some(_) => return Err(TwilioError::invalid("RateLimits.end_user_ip_address")),
                None => None,
            }
        }
        None => None,
    };
    let device_ip = form.get("DeviceIp").map(str::to_owned);
    let ip = match (from_limits, device_ip) {
        (Some(a), Some(b)) if a != b => {
            return Err(TwilioError::invalid(
                "RateLimits and DeviceIp name different addresses",
            ))
        }
        (a, b) => a.or(b),
    };
    Ok(ip.map(|client_ip| EndUser {
        client_ip,
        device_id: None,
        user_id: None,
    }))
}

/// `POST /Verifications`: a new verification (201), or the number's
/// pending one (resent, 201 as Twilio answers).
#[utoipa::path(
    post,
    path = "/v2/Services/{ServiceSid}/Verifications",
    operation_id = "CreateVerification",
    tag = "twilio-verify",
    summary = "Create a verification (Twilio Verify v2)",
    params(("ServiceSid" = String, Path, description = "A configured service SID (`VA…`)")),
    request_body(content = CreateForm, content_type = "application/x-www-form-urlencoded"),
    security(("basic" = [])),
    responses(
        (status = 201, description = "Created, or the number's pending verification", body = VerificationResource),
        (status = 400, description = "60200 (a parameter invalid, unsupported, unknown or repeated; an invalid number), 60205", body = TwilioError),
        (status = 403, description = "60410, 60605, 20403", body = TwilioError),
        (status = 404, description = "20404: unknown service SID", body = TwilioError),
        (status = 429, description = "60203, 20429", body = TwilioError),
        TwilioCommon,
    ),
)]
async fn create(
    request: HttpRequest,
    client: ClientIp,
    body: web::Bytes,
    otp: web::Data<Otp>,
) -> Result<HttpResponse, TwilioError> {
    let auth = authenticate(&request).await?;
    let form = Form::parse(&request, &body, CREATE, CREATE_UNSUPPORTED)?;
    let channel = match form.required("Channel")? {
        "sms" => "sms",
        "call" => "voice",
        other => {
            return Err(TwilioError::invalid(format!(
                "Channel {other:?} is not offered"
            )))
        }
    };
    let start = StartBody {
        to: form.required("To")?.to_owned(),
        channel: channel.to_owned(),
        locale: form.get("Locale").map(str::to_owned),
        binding: None,
        app_hash: form.get("AppHash").map(str::to_owned),
        end_user: end_user(&form)?,
        attestation: None,
    };
    let client = crate::api::client(&auth, start.end_user.as_ref(), client.0)?;
    let mut start = start.to_request(&auth.service, client, Surface::TwilioVerify, None)?;
    start.display_name = form
        .get("CustomFriendlyName")
        .map(|name| {
            name.parse()
                .map_err(|error| TwilioError::invalid(format!("CustomFriendlyName: {error}")))
        })
        .transpose()?;
    let (to, phone) = (start.to.e164().to_owned(), start.to.clone());
    // A number's pending verification is resent, as by Twilio; before the
    // resend cooldown it is answered as it is.
    let verification = match otp.start(start).await {
        Ok(outcome) => outcome.verification,
        Err(crate::otp::Error::ResendTooSoon(_)) => {
            otp.pending_for(&auth.service.name, &phone).await?
        }
        Err(error) => return Err(error.into()),
    };
    let resource = VerificationResource::of(&request, &verification, to)?;
    Ok(json(StatusCode::CREATED, &resource))
}

/// The id a path's `{Sid}` names (else 20404: no such verification).
fn sid(request: &HttpRequest) -> Result<VerificationId, TwilioError> {
    let raw = request.match_info().get("Sid").unwrap_or_default();
    VerificationId::from_twilio_sid(raw).map_err(|_| TwilioError::not_found())
}

/// `GET /Verifications/{Sid}`.
#[utoipa::path(
    get,
    path = "/v2/Services/{ServiceSid}/Verifications/{Sid}",
    operation_id = "FetchVerification",
    tag = "twilio-verify",
    summary = "Fetch a verification (Twilio Verify v2)",
    params(("ServiceSid" = String, Path, description = "A configured service SID (`VA…`)"), ("Sid" = String, Path, description = "The verification's sid (`VE…`)")),
    security(("basic" = [])),
    responses(
        (status = 200, description = "The verification", body = VerificationResource),
        (status = 403, description = "20403", body = TwilioError),
        (status = 404, description = "20404: unknown, expired or never seen", body = TwilioError),
        (status = 429, description = "20429", body = TwilioError),
        TwilioCommon,
    ),
)]
async fn fetch(request: HttpRequest, otp: web::Data<Otp>) -> Result<HttpResponse, TwilioError> {
    let auth = authenticate(&request).await?;
    let (verification, to) = otp
        .get_with_recipient(&auth.service.name, &sid(&request)?)
        .await?;
    let resource = VerificationResource::of(&request, &verification, to)?;
    Ok(json(StatusCode::OK, &resource))
}

/// `POST /Verifications/{Sid}` with `Status=canceled`. `approved` (which
/// Twilio allows without a code) is refused: it would approve what no one
/// proved.
#[utoipa::path(
    post,
    path = "/v2/Services/{ServiceSid}/Verifications/{Sid}",
    operation_id = "UpdateVerification",
    tag = "twilio-verify",
    summary = "Cancel a verification (Twilio Verify v2)",
    params(("ServiceSid" = String, Path, description = "A configured service SID (`VA…`)"), ("Sid" = String, Path, description = "The verification's sid (`VE…`)")),
    request_body(content = UpdateForm, content_type = "application/x-www-form-urlencoded"),
    security(("basic" = [])),
    responses(
        (status = 200, description = "Canceled", body = VerificationResource),
        (status = 400, description = "60200 (`Status=approved` is refused)", body = TwilioError),
        (status = 403, description = "20403", body = TwilioError),
        (status = 404, description = "20404: unknown, finished or expired", body = TwilioError),
        (status = 429, description = "20429", body = TwilioError),
        TwilioCommon,
    ),
)]
async fn update(
    request: HttpRequest,
    body: web::Bytes,
    otp: web::Data<Otp>,
) -> Result<HttpResponse, TwilioError> {
    let auth = authenticate(&request).await?;
    let form = Form::parse(&request, &body, UPDATE, &[])?;
    match form.required("Status")? {
        "canceled" => {}
        "approved" => {
            return Err(TwilioError::invalid(
                "Status=approved is not supported by otpd (a code must be checked)",
            ))
        }
        other => return Err(TwilioError::invalid(format!("Status {other:?}"))),
    }
    let id = sid(&request)?;
    let (_, to) = otp.get_with_recipient(&auth.service.name, &id).await?;
    let verification = otp.cancel(&auth.service.name, &id).await?;
    let resource = VerificationResource::of(&request, &verification, to)?;
    Ok(json(StatusCode::OK, &resource))
}

/// Twilio's VerificationCheck resource.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CheckResource {
    #[serde(flatten)]
    verification: VerificationResource,
    sna_attempts_error_codes: Vec<String>,
}

/// `POST /VerificationCheck` with `Code` and one of `To` or
/// `VerificationSid`: 200 whether the code was right or not (`valid`).
#[utoipa::path(
    post,
    path = "/v2/Services/{ServiceSid}/VerificationCheck",
    operation_id = "CreateVerificationCheck",
    tag = "twilio-verify",
    summary = "Check a code (Twilio Verify v2)",
    params(("ServiceSid" = String, Path, description = "A configured service SID (`VA…`)")),
    request_body(content = CheckForm, content_type = "application/x-www-form-urlencoded"),
    security(("basic" = [])),
    responses(
        (status = 200, description = "Checked: `valid` says whether the code was right", body = CheckResource),
        (status = 400, description = "60200", body = TwilioError),
        (status = 403, description = "20403", body = TwilioError),
        (status = 404, description = "20404: unknown, approved, canceled or expired", body = TwilioError),
        (status = 429, description = "60202 (attempts used up), 20429", body = TwilioError),
        TwilioCommon,
    ),
)]
async fn check(
    request: HttpRequest,
    client: ClientIp,
    body: web::Bytes,
    otp: web::Data<Otp>,
) -> Result<HttpResponse, TwilioError> {
    let auth = authenticate(&request).await?;
    let form = Form::parse(&request, &body, CHECK, CHECK_UNSUPPORTED)?;
    let code = form.required("Code")?.to_owned();
    let client = crate::api::client(&auth, None, client.0)?;
    let (checking, to) = match (form.get("To"), form.get("VerificationSid")) {
        (Some(to), None) => {
            let body = CheckByNumberBody {
                to: to.to_owned(),
                code,
                binding: None,
                end_user: None,
            };
            let checking = body.to_request(&auth.service, client, Surface::TwilioVerify)?;
            let to = crate::api::phone(to, &auth.service)?.e164().to_owned();
            (checking, to)
        }
        (None, Some(raw)) => {
            let id = VerificationId::from_twilio_sid(raw).map_err(|_| TwilioError::not_found())?;
            let (_, to) = otp.get_with_recipient(&auth.service.name, &id).await?;
            let body = CheckBody {
                code,
                binding: None,
                end_user: None,
            };
            (
                body.to_request(&auth.service, id, client, Surface::TwilioVerify)?,
                to,
            )
        }
        _ => return Err(TwilioError::invalid("give one of To or VerificationSid")),
    };
    let outcome = otp.check(checking).await?;
    let mut verification = VerificationResource::of(&request, &outcome.verification, to)?;
    verification.valid = outcome.valid;
    let resource = CheckResource {
        verification,
        sna_attempts_error_codes: Vec::new(),
    };
    Ok(json(StatusCode::OK, &resource))
}

/// `GET /v2/Services/{ServiceSid}`: the service, for SDK code that reads it.
#[utoipa::path(
    get,
    path = "/v2/Services/{ServiceSid}",
    operation_id = "FetchService",
    tag = "twilio-verify",
    summary = "Fetch a service (Twilio Verify v2)",
    params(("ServiceSid" = String, Path, description = "A configured service SID (`VA…`)")),
    security(("basic" = [])),
    responses(
        (status = 200, description = "The service", body = ServiceResource),
        (status = 403, description = "20403", body = TwilioError),
        (status = 404, description = "20404", body = TwilioError),
        (status = 429, description = "20429", body = TwilioError),
        TwilioCommon,
    ),
)]
async fn service(request: HttpRequest) -> Result<HttpResponse, TwilioError> {
    let auth = authenticate(&request).await?;
    let verify = request
        .app_data::<web::Data<TwilioVerify>>()
        .expect("the surface is registered with its settings");
    let sid = request.match_info().get("ServiceSid").unwrap_or_default();
    let service = &auth.service;
    let resource = ServiceResource {
        sid: sid.to_owned(),
        account_sid: verify.account_sid.clone(),
        friendly_name: service.display_name.as_str().to_owned(),
        code_length: service.code_length,
        lookup_enabled: false,
        psd2_enabled: false,
        skip_sms_to_landlines: true,
        dtmf_input_required: false,
        do_not_share_warning_enabled: true,
        custom_code_enabled: false,
        url: url(&request, &format!("/v2/Services/{sid}")),
    };
    Ok(json(StatusCode::OK, &resource))
}

/// Twilio's Service resource, as far as otpd has it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ServiceResource {
    sid: String,
    account_sid: String,
    friendly_name: String,
    code_length: usize,
    lookup_enabled: bool,
    psd2_enabled: bool,
    skip_sms_to_landlines: bool,
    dtmf_input_required: bool,
    do_not_share_warning_enabled: bool,
    custom_code_enabled: bool,
    url: String,
}
