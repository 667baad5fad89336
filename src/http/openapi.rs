//! The OpenAPI 3.1 document of HTTP API v1 and of the Twilio Verify v2
//! surface, generated from the handlers' and DTOs' annotations (utoipa),
//! served at `/openapi.json` and committed as `openapi.json` (a test fails
//! when they differ).

use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::api::{
    CheckBody, CheckByNumberBody, CheckView, DeliveryView, StartBody, VerificationView,
};

/// An RFC 9457 problem, as every error of the API is answered
/// (`application/problem+json`).
#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "type": "urn:otpd:problem:invalid-phone-number",
    "title": "Bad Request",
    "status": 400,
    "detail": "to: not a valid mobile number; use E.164 (+819012345678) or a national number",
    "code": "invalid-phone-number"
}))]
pub struct ProblemDoc {
    /// `urn:otpd:problem:<code>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The HTTP status's reason phrase.
    pub title: String,
    pub status: u16,
    /// What went wrong, for people; never holds a number or a code.
    pub detail: String,
    /// The stable, machine-readable error code (see the README's table).
    pub code: String,
    /// Which limit refused (`number`, `ip`, `range`, `country`, `global`,
    /// `api-key`, `check-failures`, `budget`), on 429.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// The problems every `/v1/services` route can answer: authentication,
/// size, limits and the store. Each route lists its own problems, then
/// these.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // documentation only: never built
pub enum CommonProblems {
    #[response(
        status = 401,
        description = "`unauthorized`: no or unknown API key",
        content_type = "application/problem+json"
    )]
    Unauthorized(ProblemDoc),
    #[response(
        status = 403,
        description = "`service-forbidden`: the key may not use this service; `end-user-not-allowed`: it may not assert an end user; `admin-key`: an admin key on `/v1`, `admin-key-required`: an API key on `/admin`; `attestation-required`, `attestation-failed` (start): the service requires an attestation, nothing was sent",
        content_type = "application/problem+json"
    )]
    Forbidden(ProblemDoc),
    #[response(
        status = 408,
        description = "`request-timeout`: the headers or the body did not arrive within `http.request_timeout`; the connection is closed",
        content_type = "application/problem+json"
    )]
    TimedOut(ProblemDoc),
    #[response(
        status = 413,
        description = "`payload-too-large`",
        content_type = "application/problem+json"
    )]
    TooLarge(ProblemDoc),
    #[response(status = 429, description = "`rate-limited` (a limit refused; `scope` names it), `budget-exhausted`, `resend-too-soon`, `max-sends-reached` (start, resend), `check-failures` (check)", content_type = "application/problem+json",
        headers(("retry-after" = u64, description = "Seconds until a retry can pass"),
                ("ratelimit-policy" = String, description = "The limit that refused (draft-ietf-httpapi-ratelimit-headers), as `http.ratelimit_fields` says: by default the fraud limits by scope name only, the tenant quotas with quota and window"),
                ("ratelimit" = String, description = "Its state")))]
    Limited(ProblemDoc),
    #[response(
        status = 431,
        description = "`headers-too-large`: more than 96 headers, or a head over 128 KiB",
        content_type = "application/problem+json"
    )]
    HeadersTooLarge(ProblemDoc),
    #[response(status = 503, description = "`store-unavailable` (never an approval), `outbox-full`, `attestation-unavailable` (start: the attestation provider did not answer; nothing was sent)", content_type = "application/problem+json",
        headers(("retry-after" = u64, description = "Seconds until a retry")))]
    Unavailable(ProblemDoc),
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key from `otpd new-api-key`, bound to services.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some(
                        "The Twilio Verify v2 surface: a `[twilio_verify]` credential (`AC…` or `SK…` and its secret).",
                    ))
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "otpd",
        description = "One-time-code verification over SMS: start a verification for a phone number, then check the code the user typed.",
        license(name = "Apache-2.0"),
    ),
    paths(
        super::start,
        super::check,
        super::check_by_number,
        super::resend,
        super::cancel,
        super::status,
        super::healthz,
        super::readyz,
        super::metrics,
        super::openapi_json,
        super::receipts::receive,
        super::admin::state,
        super::admin::lift,
        super::admin::safe_list,
        super::verify_v2::create,
        super::verify_v2::fetch,
        super::verify_v2::update,
        super::verify_v2::check,
        super::verify_v2::service,
    ),
    components(schemas(StartBody, CheckBody, CheckByNumberBody, VerificationView, DeliveryView, CheckView, ProblemDoc,
        super::verify_v2::CreateForm, super::verify_v2::CheckForm, super::verify_v2::UpdateForm,
        super::verify_v2::VerificationResource, super::verify_v2::CheckResource, super::verify_v2::ServiceResource,
        super::verify_v2::TwilioError)),
    modifiers(&BearerAuth),
    tags(
        (name = "verifications", description = "Start, check, resend, cancel and read verifications."),
        (name = "operations", description = "Health and readiness."),
        (name = "admin", description = "Read and lift a number's lockout and its destination's blocks (admin keys only, audited)."),
        (name = "carriers", description = "Delivery receipts from carriers, signed by them."),
        (name = "twilio-verify", description = "The Twilio Verify v2 surface (with `[twilio_verify]`): Twilio's resources, fields and error codes, for apps and SDKs written for Twilio Verify."),
    ),
)]
pub struct ApiDoc;

/// The document as served and committed: pretty JSON and a final newline.
pub fn document() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .expect("the document serializes")
        + "\n"
}
