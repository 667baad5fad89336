//! The admin API (`/admin/v1`, admin keys only): read and lift a number's
//! failure lockout and the blocks on its destination. Numbers travel in
//! bodies, never in paths (which proxies log), and each call leaves an
//! audit line (log target `otpd::audit`): which admin key did what, to
//! which service and masked number.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest};
use serde::{Deserialize, Serialize};

use super::answer::Answer;
use super::auth::authorize_admin_request;
use super::openapi::{CommonProblems, ProblemDoc};
use crate::api::{phone, Problem};
use crate::otp::{Lift, NumberState, Otp};

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"to": "090-1234-5678"}))]
pub struct NumberBody {
    pub to: String,
}

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"to": "090-1234-5678", "lockout": true, "blocks": false}))]
pub struct LiftBody {
    pub to: String,
    /// Forget the number's wrong codes (default true).
    #[serde(default = "yes")]
    pub lockout: bool,
    /// Lift the range and conversion blocks on its destination (default true).
    #[serde(default = "yes")]
    pub blocks: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"to": "090-1234-5678", "range": false, "safe": true, "days": 30}))]
pub struct SafeBody {
    pub to: String,
    /// The number's whole range rather than the number (default false).
    #[serde(default)]
    pub range: bool,
    /// List it (default) or take it off.
    #[serde(default = "yes")]
    pub safe: bool,
    /// How long it stays listed, 1 to 366 days (default 30).
    #[serde(default = "thirty")]
    #[schema(minimum = 1, maximum = 366)]
    pub days: u32,
}

fn thirty() -> u32 {
    30
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SafeView {
    /// The number itself is listed.
    pub number: bool,
    /// Its range is listed.
    pub range: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LockoutView {
    pub failures: u32,
    /// At `max`: no check until `decays_at`.
    pub locked: bool,
    pub wait_until: String,
    pub decays_at: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BlockView {
    /// `range` or `conversion`.
    pub scope: &'static str,
    pub until: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NumberStateView {
    pub masked_to: String,
    pub lockout: Option<LockoutView>,
    pub blocks: Vec<BlockView>,
    /// On the safe list: exempt from the range and conversion rules.
    pub safe: SafeView,
}

impl From<NumberState> for NumberStateView {
    fn from(state: NumberState) -> Self {
        NumberStateView {
            masked_to: state.masked_to,
            lockout: state.lockout.map(|lockout| LockoutView {
                failures: lockout.failures,
                locked: lockout.locked,
                wait_until: lockout.wait_until.to_string(),
                decays_at: lockout.decays_at.to_string(),
            }),
            blocks: state
                .blocks
                .into_iter()
                .map(|block| BlockView {
                    scope: block.scope,
                    until: block.until.to_string(),
                })
                .collect(),
            safe: SafeView {
                number: state.safe.number,
                range: state.safe.range,
            },
        }
    }
}

#[utoipa::path(
    post,
    path = "/admin/v1/services/{service}/numbers/state",
    tag = "admin",
    summary = "Read a number's lockout and its destination's blocks",
    params(("service" = String, Path, description = "The service, e.g. `demo`", example = "demo")),
    request_body = NumberBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "What holds the number back", body = NumberStateView),
        (status = 400, description = "`malformed-json`, `unknown-field`, `missing-field`, `invalid-body`, `invalid-phone-number`", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "`service-not-found`", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported-media-type`: send `Content-Type: application/json`", body = ProblemDoc, content_type = "application/problem+json"),
        CommonProblems
    ),
)]
pub async fn state(
    request: HttpRequest,
    body: web::Json<NumberBody>,
    otp: web::Data<Otp>,
) -> Result<Answer, Problem> {
    let auth = authorize_admin_request(&request)?;
    let phone = phone(&body.to, &auth.service)?;
    let state = otp.number_state(&auth.service.name, &phone).await?;
    tracing::info!(target: "otpd::audit", admin_key = %auth.api_key, action = "read",
        service = %auth.service.name, to = phone.masked(), "admin read a number's state");
    Ok(Answer::json(StatusCode::OK, &NumberStateView::from(state)))
}

#[utoipa::path(
    post,
    path = "/admin/v1/services/{service}/numbers/lift",
    tag = "admin",
    summary = "Lift a number's lockout and its destination's blocks",
    params(("service" = String, Path, description = "The service, e.g. `demo`", example = "demo")),
    request_body = LiftBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Lifted; the state as it was before", body = NumberStateView),
        (status = 400, description = "`malformed-json`, `unknown-field`, `missing-field`, `invalid-body`, `invalid-phone-number`", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "`service-not-found`", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported-media-type`: send `Content-Type: application/json`", body = ProblemDoc, content_type = "application/problem+json"),
        CommonProblems
    ),
)]
pub async fn lift(
    request: HttpRequest,
    body: web::Json<LiftBody>,
    otp: web::Data<Otp>,
) -> Result<Answer, Problem> {
    let auth = authorize_admin_request(&request)?;
    let phone = phone(&body.to, &auth.service)?;
    let what = Lift {
        lockout: body.lockout,
        blocks: body.blocks,
    };
    let before = otp.lift(&auth.service.name, &phone, what).await?;
    tracing::warn!(target: "otpd::audit", admin_key = %auth.api_key, action = "lift",
        service = %auth.service.name, to = phone.masked(), lockout = what.lockout,
        blocks = what.blocks, had_lockout = before.lockout.is_some(),
        had_blocks = before.blocks.len(), "admin lifted a number's lockout or blocks");
    Ok(Answer::json(StatusCode::OK, &NumberStateView::from(before)))
}

#[utoipa::path(
    post,
    path = "/admin/v1/services/{service}/numbers/safe-list",
    tag = "admin",
    summary = "Put a number or its range on the safe list, or take it off",
    params(("service" = String, Path, description = "The service, e.g. `demo`", example = "demo")),
    request_body = SafeBody,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Done; the state as it was before", body = NumberStateView),
        (status = 400, description = "`malformed-json`, `unknown-field`, `missing-field`, `invalid-body`, `invalid-phone-number`, `invalid-days`", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "`service-not-found`", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported-media-type`: send `Content-Type: application/json`", body = ProblemDoc, content_type = "application/problem+json"),
        CommonProblems
    ),
)]
pub async fn safe_list(
    request: HttpRequest,
    body: web::Json<SafeBody>,
    otp: web::Data<Otp>,
) -> Result<Answer, Problem> {
    let auth = authorize_admin_request(&request)?;
    let phone = phone(&body.to, &auth.service)?;
    if !(1..=366).contains(&body.days) {
        return Err(Problem::bad_request("invalid-days", "days: 1 to 366"));
    }
    let period = body
        .safe
        .then(|| Duration::from_secs(u64::from(body.days) * 24 * 3600));
    let before = otp
        .list_safe(&auth.service.name, &phone, body.range, period)
        .await?;
    tracing::warn!(target: "otpd::audit", admin_key = %auth.api_key, action = "safe-list",
        service = %auth.service.name, to = phone.masked(), range = body.range,
        safe = body.safe, days = body.days, "admin changed the safe list");
    Ok(Answer::json(StatusCode::OK, &NumberStateView::from(before)))
}
