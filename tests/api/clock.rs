//! RL-2: one clock for limits. Limits are decided in Redis from the time
//! each replica passes in; a replica whose clock strays from Redis's by more
//! than `redis.max_clock_skew` (1 s) says it is not ready, so it takes no
//! traffic. Within the bound, two replicas decide one limit alike: the
//! same number allowed, waits that differ by at most the skew.

use std::time::Duration;

use otpd::carrier::RecordingCarrier;
use otpd::domain::{Clock, ManualClock, SystemClock};

use crate::support::{json_of, problem, settings_with_default_limits, until, RedisServer, TestApp};

/// The default limits, with the default bound (the harness lifts it).
fn settings(redis: &RedisServer) -> otpd::config::Settings {
    let mut settings = settings_with_default_limits(Some(redis));
    settings.redis.max_clock_skew = Duration::from_secs(1);
    settings
}

/// Sets `clock` to the wall clock (Redis's, on this machine) plus `ahead`:
/// a manual clock stands still while the test runs.
fn wall_clock_plus(clock: &ManualClock, ahead: Duration) {
    clock.set(SystemClock.now().plus(ahead));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_clock_strays_from_redis_is_not_ready() {
    let redis = RedisServer::start();
    let clock = ManualClock::new();
    let app = TestApp::spawn_with(&settings(&redis), RecordingCarrier::new(), clock.clone()).await;
    wall_clock_plus(&clock, Duration::ZERO);
    assert_eq!(app.public("/readyz").await.status(), 200);
    wall_clock_plus(&clock, Duration::from_secs(5));
    let refused = problem(app.public("/readyz").await, 503, "clock-skew").await;
    assert!(
        refused["detail"]
            .as_str()
            .expect("detail")
            .contains("ms from Redis"),
        "{refused}"
    );
    let metrics = app.metrics().await;
    let skew: f64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("otpd_clock_skew_seconds "))
        .expect("otpd_clock_skew_seconds")
        .parse()
        .expect("a number");
    assert!((4.5..5.5).contains(&skew), "{skew}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_within_the_bound_decide_a_limit_alike() {
    let redis = RedisServer::start();
    let settings = settings_with_default_limits(Some(&redis));
    let (behind, ahead) = (ManualClock::new(), ManualClock::new());
    ahead.advance(Duration::from_millis(900));
    let replicas = [
        TestApp::spawn_with(&settings, RecordingCarrier::new(), behind).await,
        TestApp::spawn_with(&settings, RecordingCarrier::new(), ahead).await,
    ];
    for replica in &replicas {
        until(
            "ready within the bound",
            Duration::from_secs(5),
            async || replica.public("/readyz").await.status() == 200,
        )
        .await;
    }
    // ABU-5: ten starts a minute from one client, across both replicas.
    for n in 0..10 {
        let replica = &replicas[n % 2];
        let to = format!("+8190{:02}{:02}0000", 40 + n / 100, n % 100);
        assert_eq!(replica.start(&to).await.status(), 201, "start {n}");
    }
    let mut waits = Vec::new();
    for replica in &replicas {
        let refused = replica.start("+819049990000").await;
        let wait: u64 = refused.headers()["retry-after"]
            .to_str()
            .expect("ascii")
            .parse()
            .expect("seconds");
        assert_eq!(json_of(refused).await["scope"], "ip");
        waits.push(wait);
    }
    assert!(waits[0].abs_diff(waits[1]) <= 1, "{waits:?}");
}
