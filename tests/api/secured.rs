//! Passwords and TLS in every topology: otpd on a Redis server, a Sentinel
//! set and a Redis Cluster that each take only clients with the password,
//! over TLS with a CA made for the test (`redis.tls_ca_file`), runs a
//! verification end to end. SEC-20: secrets and codes never cross the
//! network in clear.

use std::time::Duration;

use crate::support::{json_of, settings, RedisServer, Security, TestApp, PHONE};
use crate::topology::{RedisCluster, SentinelSet, TestCa};

fn secured() -> Security {
    Security {
        password: Some("redis-secret-for-tests".into()),
        tls: Some(TestCa::new()),
    }
}

/// A code sent, checked wrong, checked right, replayed.
async fn a_verification_goes_through(app: &TestApp) {
    assert!(app.becomes_ready(Duration::from_secs(20)).await, "ready");
    let id = app.started(PHONE).await;
    let code = app.code_for(&id).await;
    let wrong = app.check(&id, &crate::support::wrong(&code)).await;
    assert_eq!(json_of(wrong).await["valid"], false);
    let right = app.check(&id, &code).await;
    assert_eq!(json_of(right).await["valid"], true);
    assert_eq!(app.check(&id, &code).await.status(), 409);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_server_with_a_password_over_tls() {
    let redis = RedisServer::start_secured(&[], secured());
    assert!(redis.url().starts_with("rediss://:redis-secret-for-tests@"));
    let app = TestApp::spawn(&settings(Some(&redis))).await;
    a_verification_goes_through(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_or_no_tls_is_not_ready() {
    let redis = RedisServer::start_secured(&[], secured());
    let mut wrong_password = settings(Some(&redis));
    wrong_password.redis.url = redis.url().replace("redis-secret-for-tests", "guess");
    let mut plaintext = settings(Some(&redis));
    plaintext.redis.url = redis.url().replace("rediss://", "redis://");
    plaintext.redis.tls_ca_file = Default::default();
    for settings in [wrong_password, plaintext] {
        let app = TestApp::spawn(&settings).await;
        assert_eq!(app.public("/readyz").await.status(), 503);
        assert_eq!(app.start(PHONE).await.status(), 503);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_with_passwords_over_tls() {
    let set = SentinelSet::start_secured(secured(), Some("sentinel-secret-for-tests"));
    let app = TestApp::spawn(&set.settings(settings(None))).await;
    a_verification_goes_through(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_with_a_password_over_tls() {
    let cluster = RedisCluster::start_secured(3, 1, secured());
    let app = TestApp::spawn(&cluster.settings(settings(None))).await;
    a_verification_goes_through(&app).await;
}
