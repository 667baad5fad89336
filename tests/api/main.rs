//! Black-box tests of otpd over HTTP, against a real redis-server that each
//! test starts on a free port.

mod abuse;
mod bad_input;
mod binary;
mod concurrency;
mod contract;
mod crash;
mod delivery;
mod end_user;
mod failover;
mod fake_provider;
mod faults;
mod fuzz;
mod gateway;
mod grpc;
mod http_carriers;
mod idempotency;
mod lifecycle;
mod messages;
mod openapi;
mod operations;
mod privacy;
mod prometheus;
mod receipts;
mod rejections;
mod routing;
mod secured;
mod slow_clients;
mod smpp;
mod smsc;
mod store_redis;
mod support;
mod test_numbers;
mod tls;
mod topology;
