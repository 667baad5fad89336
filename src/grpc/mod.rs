//! gRPC API v1 (`proto/otp/v1/otp.proto`) on tonic, on its own port. Each
//! call authenticates and authorizes with `api`'s keys, turns the message
//! into the same request values (`api`'s bodies and validation, one
//! implementation of each rule), calls the same use case, and maps each
//! kind of problem onto its gRPC code with the problem `code` in
//! `google.rpc.ErrorInfo`.

mod connections;
mod status;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use tonic::{Request, Response, Status};

use self::pb::verification_service_server::VerificationService;
use crate::api::{
    self, authorize, verification_id, ApiKeys, Authorized, CheckBody, CheckByNumberBody, Problem,
    ResendBody, StartBody, VerificationView,
};
use crate::metrics::{Metrics, Surface};
use crate::otp::Otp;
use crate::ratelimit::{Flood, TrustedProxies};

/// The code generated from the proto, and its descriptors (reflection).
pub mod pb {
    tonic::include_proto!("otp.v1");

    pub const DESCRIPTORS: &[u8] = tonic::include_file_descriptor_set!("otp_descriptor");
}

pub use self::connections::accept_counted;
pub use self::pb::verification_service_server::VerificationServiceServer;

/// The service implementation over the use cases.
pub struct Verifications {
    otp: Arc<Otp>,
    keys: Arc<ApiKeys>,
    metrics: Metrics,
    /// The same client rules as HTTP's: trusted proxies, flood shedding.
    proxies: Arc<TrustedProxies>,
    flood: Arc<Flood>,
}

impl Verifications {
    /// The use cases it serves (the health service asks them too).
    pub fn otp(&self) -> &Arc<Otp> {
        &self.otp
    }

    pub fn new(
        otp: Arc<Otp>,
        keys: Arc<ApiKeys>,
        metrics: Metrics,
        proxies: Arc<TrustedProxies>,
        flood: Arc<Flood>,
    ) -> Self {
        Verifications {
            otp,
            keys,
            metrics,
            proxies,
            flood,
        }
    }

    /// The client: the peer, or what trusted proxies say in `forwarded` /
    /// `x-forwarded-for` metadata, as over HTTP.
    fn client<T>(&self, request: &Request<T>) -> Option<IpAddr> {
        let peer = request.remote_addr()?.ip();
        let values = |name: &str| -> Vec<&str> {
            request
                .metadata()
                .get_all(name)
                .iter()
                .filter_map(|value| value.to_str().ok())
                .collect()
        };
        Some(
            self.proxies
                .client(peer, &values("forwarded"), &values("x-forwarded-for")),
        )
    }

    /// Sheds floods from the client, then finds the caller's key and the
    /// service it may use.
    async fn authorized<T>(
        &self,
        request: &Request<T>,
        service: &str,
    ) -> Result<Authorized, Problem> {
        if let Some(client) = self.client(request) {
            self.flood.admit(client).map_err(Problem::flood)?;
        }
        let authorization = request
            .metadata()
            .get("authorization")
            .and_then(|value| value.to_str().ok());
        let key = self.keys.caller(&self.otp, authorization).await?;
        authorize(&self.otp, &key, service)
    }

    /// Runs one call, with its metrics, turning problems into statuses.
    async fn observed<T>(
        &self,
        method: &'static str,
        call: impl std::future::Future<Output = Result<T, Problem>>,
    ) -> Result<Response<T>, Status> {
        let started = Instant::now();
        let result = call.await.map(Response::new).map_err(status::from_problem);
        let code = match &result {
            Ok(_) => tonic::Code::Ok,
            Err(status) => status.code(),
        };
        self.metrics
            .grpc_request(method, code_name(code), started.elapsed().as_secs_f64());
        result
    }
}

/// The metric label of each gRPC code, as the gRPC specification names it.
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

fn end_user(message: Option<&pb::EndUser>) -> Option<api::EndUser> {
    message.map(|end_user| api::EndUser {
        client_ip: end_user.client_ip.clone(),
        device_id: optional(&end_user.device_id),
        user_id: optional(&end_user.user_id),
    })
}

/// Empty proto strings are absent fields.
fn optional(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_owned())
}

fn verification(view: VerificationView) -> pb::Verification {
    use pb::{DeliveryStatus, Status as State};
    let status = match view.status {
        "pending" => State::Pending,
        "approved" => State::Approved,
        "canceled" => State::Canceled,
        "failed" => State::Failed,
        _ => State::Unspecified,
    };
    let delivery = match view.delivery.status {
        "queued" => DeliveryStatus::Queued,
        "sent" => DeliveryStatus::Sent,
        "delivered" => DeliveryStatus::Delivered,
        "undelivered" => DeliveryStatus::Undelivered,
        "failed" => DeliveryStatus::Failed,
        "delivery_unknown" => DeliveryStatus::DeliveryUnknown,
        _ => DeliveryStatus::Unspecified,
    };
    pb::Verification {
        id: view.id,
        service: view.service,
        to: view.to,
        channel: view.channel.to_owned(),
        status: status.into(),
        created_at: view.created_at,
        expires_at: view.expires_at,
        resend_after: view.resend_after,
        sends: view.sends,
        attempts_left: view.attempts_left,
        delivery: Some(pb::Delivery {
            status: delivery.into(),
            carrier: view.delivery.carrier.unwrap_or_default(),
            message_id: view.delivery.message_id.unwrap_or_default(),
            rerouted_from: view.delivery.rerouted_from.unwrap_or_default(),
            reroute_reason: view.delivery.reroute_reason.unwrap_or_default().to_owned(),
        }),
    }
}

#[tonic::async_trait]
impl VerificationService for Verifications {
    async fn start_verification(
        &self,
        request: Request<pb::StartVerificationRequest>,
    ) -> Result<Response<pb::StartVerificationResponse>, Status> {
        self.observed("StartVerification", async {
            let message = request.get_ref();
            let auth = self.authorized(&request, &message.service).await?;
            let body = StartBody {
                to: message.to.clone(),
                channel: message.channel.clone(),
                locale: optional(&message.locale),
                binding: optional(&message.binding),
                app_hash: optional(&message.app_hash),
                end_user: end_user(message.end_user.as_ref()),
                attestation: message
                    .attestation
                    .as_ref()
                    .map(|attestation| api::AttestationBody {
                        provider: attestation.provider.clone(),
                        token: attestation.token.clone(),
                    }),
            };
            let client = api::client(&auth, body.end_user.as_ref(), self.client(&request))?;
            let start = body.to_request(&auth.service, client, Surface::Grpc, None)?;
            let outcome = self.otp.start(start).await?;
            Ok(pb::StartVerificationResponse {
                verification: Some(verification(VerificationView::from(&outcome.verification))),
                created: outcome.created,
            })
        })
        .await
    }

    async fn check_verification(
        &self,
        request: Request<pb::CheckVerificationRequest>,
    ) -> Result<Response<pb::CheckVerificationResponse>, Status> {
        use pb::check_verification_request::Target;
        self.observed("CheckVerification", async {
            let message = request.get_ref();
            let auth = self.authorized(&request, &message.service).await?;
            let binding = optional(&message.binding);
            let asserted = end_user(message.end_user.as_ref());
            let client = api::client(&auth, asserted.as_ref(), self.client(&request))?;
            let check = match &message.target {
                Some(Target::Id(id)) => CheckBody {
                    code: message.code.clone(),
                    binding,
                    end_user: asserted,
                }
                .to_request(
                    &auth.service,
                    verification_id(id)?,
                    client,
                    Surface::Grpc,
                )?,
                Some(Target::To(to)) => CheckByNumberBody {
                    to: to.clone(),
                    code: message.code.clone(),
                    binding,
                    end_user: asserted,
                }
                .to_request(&auth.service, client, Surface::Grpc)?,
                None => {
                    return Err(Problem::bad_request(
                        "missing-field",
                        "name the verification: id or to",
                    ))
                }
            };
            let outcome = self.otp.check(check).await?;
            Ok(pb::CheckVerificationResponse {
                verification: Some(verification(VerificationView::from(&outcome.verification))),
                valid: outcome.valid,
            })
        })
        .await
    }

    async fn resend_verification(
        &self,
        request: Request<pb::ResendVerificationRequest>,
    ) -> Result<Response<pb::ResendVerificationResponse>, Status> {
        self.observed("ResendVerification", async {
            let channel = request.get_ref().channel.as_str();
            let body = ResendBody {
                channel: optional(channel),
            };
            let verification = Some(self.by_id(&request, ById::Resend(body)).await?);
            Ok(pb::ResendVerificationResponse { verification })
        })
        .await
    }

    async fn cancel_verification(
        &self,
        request: Request<pb::CancelVerificationRequest>,
    ) -> Result<Response<pb::CancelVerificationResponse>, Status> {
        self.observed("CancelVerification", async {
            let verification = Some(self.by_id(&request, ById::Cancel).await?);
            Ok(pb::CancelVerificationResponse { verification })
        })
        .await
    }

    async fn get_verification(
        &self,
        request: Request<pb::GetVerificationRequest>,
    ) -> Result<Response<pb::GetVerificationResponse>, Status> {
        self.observed("GetVerification", async {
            let verification = Some(self.by_id(&request, ById::Get).await?);
            Ok(pb::GetVerificationResponse { verification })
        })
        .await
    }
}

/// The calls that name one verification by service and id.
enum ById {
    Resend(ResendBody),
    Cancel,
    Get,
}

/// A request naming one verification.
trait Names {
    fn service(&self) -> &str;
    fn id(&self) -> &str;
}

macro_rules! names {
    ($($message:ty),+) => {$(
        impl Names for $message {
            fn service(&self) -> &str {
                &self.service
            }
            fn id(&self) -> &str {
                &self.id
            }
        }
    )+};
}

names!(
    pb::ResendVerificationRequest,
    pb::CancelVerificationRequest,
    pb::GetVerificationRequest
);

impl Verifications {
    async fn by_id<M: Names>(
        &self,
        request: &Request<M>,
        call: ById,
    ) -> Result<pb::Verification, Problem> {
        let message = request.get_ref();
        let auth = self.authorized(request, message.service()).await?;
        let id = verification_id(message.id())?;
        let name = &auth.service.name;
        let found = match call {
            ById::Resend(body) => {
                let channel = body.channel(&auth.service)?;
                self.otp.resend(name, &id, channel, Surface::Grpc).await?
            }
            ById::Cancel => self.otp.cancel(name, &id).await?,
            ById::Get => self.otp.get(name, &id).await?,
        };
        Ok(verification(VerificationView::from(&found)))
    }
}
