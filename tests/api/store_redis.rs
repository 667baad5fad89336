//! The store conformance suite against a real redis-server and a real Redis
//! Cluster, with every script refusing to touch a key it did not declare.

use std::sync::Arc;

use otpd::domain::ManualClock;
use otpd::store::conformance::Fixture;
use otpd::store::{RedisSettings, RedisStore, Stores};

use crate::support::RedisServer;
use crate::topology::RedisCluster;

fn store(settings: RedisSettings) -> Arc<RedisStore> {
    let store = RedisStore::connect(&settings, otpd::metrics::Metrics::new()).expect("connects");
    Arc::new(
        store
            .with_events(otpd::store::conformance::with_events())
            .declared_keys_only(),
    )
}

fn redis_settings() -> RedisSettings {
    let mut settings = otpd::config::Settings::dev("unused")
        .expect("dev settings")
        .redis;
    settings.timeout = std::time::Duration::from_secs(2);
    settings
}

async fn redis_fixture() -> Fixture {
    let server = RedisServer::start();
    let mut settings = redis_settings();
    settings.url = server.url();
    Fixture::new(Stores::of(store(settings)), ManualClock::new(), server)
}

/// Three primaries without replicas: the suite is about slots, not
/// failover (`replicas_ack` 0).
async fn cluster_fixture() -> Fixture {
    let cluster = RedisCluster::start_shaped(3, 0);
    let mut settings = redis_settings();
    settings.cluster.nodes = cluster.urls();
    settings.replicas_ack = Some(0);
    Fixture::new(Stores::of(store(settings)), ManualClock::new(), cluster)
}

mod conformance {
    use super::redis_fixture;

    otpd::store_conformance!(redis_fixture);
}

mod cluster_conformance {
    use super::cluster_fixture;

    otpd::store_conformance!(cluster_fixture);
}
