//! Delivery receipts from HTTP carriers: `POST /v1/carriers/{carrier}/receipts`.
//! No API key: the carrier's own signature authenticates the request (its
//! adapter checks it), and an unsigned or badly signed one is refused
//! before anything is read; what it says goes to the receipt use case
//! (`Otp::record_receipt`), as SMPP receipts do.

use actix_web::{web, HttpRequest, HttpResponse};

use super::problem::{Kind, Problem};
use crate::carrier::{Callback, ReceiptError, Router};
use crate::domain::CarrierReceipt;
use crate::otp::Otp;

#[utoipa::path(
    post,
    path = "/v1/carriers/{carrier}/receipts",
    tag = "carriers",
    summary = "A carrier's delivery receipt",
    description = "No API key: the carrier's own signature authenticates it (Standard Webhooks HMAC for `webhook`, `X-Twilio-Signature` for `twilio`, Vonage's signed callback for `vonage`).",
    params(("carrier" = String, Path, description = "The carrier's configured name")),
    request_body(content = String, description = "As the carrier sends it (JSON or a form)", content_type = "application/octet-stream"),
    responses(
        (status = 204, description = "Read (recorded, or ignored as a duplicate)"),
        (status = 400, description = "`malformed-receipt`", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "`bad-signature`: unsigned, badly signed or stale", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "`unknown-carrier`", body = super::openapi::ProblemDoc, content_type = "application/problem+json"),
    ),
)]
pub async fn receive(
    request: HttpRequest,
    carrier: web::Path<String>,
    body: web::Bytes,
    router: web::Data<Router>,
    otp: web::Data<Otp>,
) -> Result<HttpResponse, Problem> {
    let unknown = || {
        Problem::new(
            Kind::NotFound,
            "unknown-carrier",
            "no carrier by that name takes receipts here",
        )
    };
    let adapter = router.carrier(&carrier).ok_or_else(unknown)?;
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .filter_map(|(name, value)| {
            Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
        })
        .collect();
    let path_and_query = request
        .uri()
        .path_and_query()
        .map_or(request.path(), |pq| pq.as_str());
    let callback = Callback {
        path_and_query,
        headers: &headers,
        body: &body,
    };
    match adapter.receipt(&callback) {
        Ok(Some(receipt)) => {
            otp.record_receipt(&CarrierReceipt::for_send(&carrier, receipt))
                .await?
        }
        Ok(None) => {}
        Err(ReceiptError::NotSupported) => return Err(unknown()),
        Err(ReceiptError::BadSignature) => {
            return Err(Problem::new(
                Kind::Unauthorized,
                "bad-signature",
                "the receipt is unsigned or its signature does not verify",
            ))
        }
        Err(error @ ReceiptError::Malformed(_)) => {
            return Err(Problem::bad_request("malformed-receipt", error.to_string()))
        }
    }
    Ok(HttpResponse::NoContent().finish())
}
