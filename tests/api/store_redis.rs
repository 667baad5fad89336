//! The store conformance suite against a real redis-server.

use std::sync::Arc;

use otpd::otp::ManualClock;
use otpd::store::conformance::Fixture;
use otpd::store::{RedisSettings, RedisStore};

use crate::support::RedisServer;

async fn redis_fixture() -> Fixture {
    let server = RedisServer::start();
    let settings = RedisSettings {
        url: server.url(),
        key_prefix: "otpd".into(),
        timeout: std::time::Duration::from_secs(2),
    };
    let store = RedisStore::connect(&settings, otpd::metrics::Metrics::new()).expect("connects");
    Fixture::new(Arc::new(store), ManualClock::new(), server)
}

mod conformance {
    use super::redis_fixture;

    otpd::store_conformance!(redis_fixture);
}
