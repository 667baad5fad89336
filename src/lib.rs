//! otpd: one-time-code verification over HTTP, on Redis.
//!
//! Module map (dependencies point down the list):
//! - `http`, `grpc`: the two transports: routes, middleware, problem+json;
//!   the gRPC service and statuses.
//! - `api`: what both transports share: API keys, request bodies and their
//!   validation, views, problems (a kind each transport maps exhaustively).
//! - `otp`: the use cases (start, check, resend, cancel, status), the
//!   keyring and use-case errors.
//! - `store`: one trait per concern (verifications, idempotency, limits,
//!   outbox), their Redis (one server, Sentinel, Cluster) and in-memory
//!   implementations and a conformance suite per trait.
//! - `ratelimit`: limit policies per scope, GCRA, trusted client IPs.
//! - `delivery`: outbox workers: claims, retries, takeover, outcomes.
//! - `carrier`: the `Carrier` trait and its adapters.
//! - `sms`: templates, GSM-7/UCS-2 encoding and segment counts.
//! - `domain`: values valid once built (phone, code, ids, names), the
//!   clock, carriers' receipts.
//! - `config`, `startup`, `descriptors`, `tls`, `telemetry`, `metrics`:
//!   settings, wiring, connection caps within the file-descriptor limit,
//!   the listeners' TLS, logs and Prometheus instruments.

pub mod api;
pub mod attestation;
pub mod carrier;
pub mod config;
pub mod delivery;
pub mod descriptors;
pub mod domain;
pub mod events;
pub mod grpc;
pub mod http;
pub mod metrics;
pub mod otp;
pub mod ratelimit;
pub mod sms;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod voice;
