//! Bodies are read whole, within `http.request_timeout` and up to
//! `http.max_body_bytes`, before any handler runs: a client that declares a
//! body and sends it slowly, or never, gets 408 and is disconnected instead
//! of holding a connection for ever (actix-web bounds the headers' time
//! only). Handlers then parse bytes already in memory.

use std::time::Duration;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::CONTENT_LENGTH;
use actix_web::http::ConnectionType;
use actix_web::middleware::Next;
use actix_web::web::{self, BytesMut};
use actix_web::HttpMessage as _;
use futures_util::StreamExt;

use super::problem::{refuse, Kind, Problem};

/// What `read_bodies` allows each request.
#[derive(Clone, Copy)]
pub struct BodyLimits {
    pub max_bytes: usize,
    pub within: Duration,
}

pub async fn read_bodies(
    mut request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let limits = *request
        .app_data::<web::Data<BodyLimits>>()
        .expect("BodyLimits are registered")
        .get_ref();
    let mut payload = request.take_payload();
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    let read = async {
        if declared.is_some_and(|length| length > limits.max_bytes) {
            return Err(too_large());
        }
        let mut body = BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|_| {
                Problem::bad_request("malformed-body", "the body could not be read")
            })?;
            if body.len() + chunk.len() > limits.max_bytes {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    };
    let refused = match tokio::time::timeout(limits.within, read).await {
        Ok(Ok(body)) => {
            request.set_payload(body.into());
            return Ok(next.call(request).await?.map_into_left_body());
        }
        Ok(Err(problem)) => problem,
        Err(_) => Problem::new(
            Kind::RequestTimeout,
            "request-timeout",
            "the body did not arrive in time",
        ),
    };
    // The rest of the body is not read: the connection cannot carry another
    // request.
    let mut response = refuse(request, refused);
    response
        .response_mut()
        .head_mut()
        .set_connection_type(ConnectionType::Close);
    Ok(response)
}

fn too_large() -> Problem {
    Problem::new(
        Kind::PayloadTooLarge,
        "payload-too-large",
        "the body is larger than this API accepts",
    )
}
