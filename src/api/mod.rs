//! What the HTTP and gRPC APIs share, owned by neither: who is calling
//! (API keys bound to services), the request bodies and their validation
//! into use-case requests, the views of verifications, and problems (a
//! refusal's kind and stable code, which each transport maps to its own
//! statuses).

mod auth;
mod dto;
mod problem;

pub use self::auth::{authorize, authorize_admin, ApiKeys, Authorized};
pub use self::dto::{
    client, phone, verification_id, AttestationBody, CheckBody, CheckByNumberBody, CheckView,
    DeliveryView, EndUser, ResendBody, StartBody, VerificationView,
};
pub use self::problem::{seconds, Kind, Problem};
