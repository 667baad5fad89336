//! The outbox over HTTP: sends go out after the answer, are retried, taken
//! over from a dead replica, and never go out for a stale code.

use std::time::{Duration, Instant};

use otpd::carrier::RecordingCarrier;
use otpd::domain::ManualClock;

use crate::support::{assert_has_lines, json_of, until, Backend, TestApp, PHONE};

crate::on_redis_and_cluster!(
    temporary_failures_are_retried_until_the_carrier_takes_it,
    a_send_out_of_attempts_is_dead_lettered,
    a_live_replica_takes_over_what_a_dead_one_claimed,
    a_send_for_an_expired_verification_is_never_issued,
    the_oldest_send_age_is_reported,
);

/// Temporary carrier failures are retried; the send goes out once.
async fn temporary_failures_are_retried_until_the_carrier_takes_it(backend: &Backend) {
    let app = TestApp::spawn(&backend.settings()).await;
    app.carrier.fail_next(2);
    let id = app.started(PHONE).await;
    assert_eq!(app.sent_to(PHONE).await.len(), 1);
    assert_eq!(
        json_of(app.status(&id).await).await["delivery"]["status"],
        "sent"
    );
    let metrics = app.metrics().await;
    let sends = [("temporary", 2), ("accepted", 1)].map(|(outcome, count)| {
        format!(r#"otpd_sends_total{{carrier="recording",country="81",outcome="{outcome}",service="demo"}} {count}"#)
    });
    assert_has_lines(&metrics, sends);
}

/// A send that fails every attempt is dead-lettered and shows as failed.
async fn a_send_out_of_attempts_is_dead_lettered(backend: &Backend) {
    let app = TestApp::spawn(&backend.settings()).await;
    app.carrier.fail_next(3);
    let id = app.started(PHONE).await;
    assert!(app.sent_to(PHONE).await.is_empty());
    assert_eq!(
        json_of(app.status(&id).await).await["delivery"]["status"],
        "failed"
    );
    assert!(app.metrics().await.contains("otpd_dead_letters_total 1"));
    let dead: Vec<String> = backend
        .keys()
        .into_iter()
        .filter(|key| key.ends_with(":dead"))
        .collect();
    assert_eq!(dead.len(), 1, "one dead-letter stream: {dead:?}");
}

/// Replica A claims three sends and hangs on them, like a replica that died
/// mid-send; replica B takes them over once they are idle for `claim_idle`
/// (1 s in tests) and delivers each once.
async fn stranded_sends(
    backend: &Backend,
    expire_first: bool,
) -> (TestApp, RecordingCarrier, Vec<String>) {
    let clock = ManualClock::new();
    let (dying, healthy) = (RecordingCarrier::new(), RecordingCarrier::new());
    dying.hang_next(3);
    let a = TestApp::spawn_with(&backend.settings(), dying.clone(), clock.clone()).await;
    let mut ids = Vec::new();
    for n in 0..3 {
        ids.push(a.started(&format!("+8190{:04}0000", 1200 + n)).await);
    }
    until(
        "replica A to hang on three sends",
        Duration::from_secs(10),
        async || dying.hanging() == 3,
    )
    .await;
    a.stop();
    if expire_first {
        clock.advance(Duration::from_secs(300));
    }
    let b = TestApp::spawn_with(&backend.settings(), healthy.clone(), clock).await;
    b.settled().await;
    (b, healthy, ids)
}

async fn a_live_replica_takes_over_what_a_dead_one_claimed(backend: &Backend) {
    let (b, healthy, ids) = stranded_sends(backend, false).await;
    assert_eq!(
        healthy.count(),
        3,
        "every stranded send went out, each once"
    );
    for id in ids {
        assert_eq!(healthy.bodies_for(&id).len(), 1);
        assert_eq!(
            json_of(b.status(&id).await).await["delivery"]["status"],
            "sent"
        );
    }
}

/// A stale code is never sent: a send taken over after its verification
/// expired is dropped.
async fn a_send_for_an_expired_verification_is_never_issued(backend: &Backend) {
    let (_b, healthy, _ids) = stranded_sends(backend, true).await;
    assert_eq!(healthy.count(), 0);
}

/// The age of the oldest unfinished send is a metric (sampled every
/// `claim_idle / 2`): a send stuck on a hanging carrier shows its age.
async fn the_oldest_send_age_is_reported(backend: &Backend) {
    let app = TestApp::spawn(&backend.settings()).await;
    app.carrier.hang_next(1);
    app.started(PHONE).await;
    until("the send to hang", Duration::from_secs(10), async || {
        app.carrier.hanging() == 1
    })
    .await;
    app.clock.advance(Duration::from_secs(7));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !app
        .metrics()
        .await
        .contains("otpd_outbox_oldest_age_seconds 7\n")
    {
        assert!(Instant::now() < deadline, "the age was never reported");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Issue 14: a send claimed while every worker of its replica was busy
/// waited for a permit with its claim unkept, so another replica took it
/// over and both sent it. Now a replica claims only what it can start, and
/// a send already out is never sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_replica_holds_no_send_it_cannot_start() {
    let redis = crate::support::RedisServer::start();
    let mut settings = crate::support::settings(Some(&redis));
    settings.delivery.concurrency = 1;
    let (slow, other) = (RecordingCarrier::new(), RecordingCarrier::new());
    slow.slow_next(1, Duration::from_millis(2500));
    let clock = ManualClock::new();
    let a = TestApp::spawn_with(&settings, slow.clone(), clock.clone()).await;
    let first = a.started(PHONE).await;
    until(
        "A busy with the first send",
        Duration::from_secs(10),
        async || slow.calls() == 1,
    )
    .await;
    let second = a.started("+819011110000").await;
    let _b = TestApp::spawn_with(&settings, other.clone(), clock).await;
    until("B sends the second", Duration::from_secs(10), async || {
        other.bodies_for(&second).len() == 1
    })
    .await;
    // A's next send shows it is done with anything it held.
    let third = a.started("+819022220000").await;
    until("A free again", Duration::from_secs(10), async || {
        slow.bodies_for(&first).len() == 1
            && slow.bodies_for(&third).len() + other.bodies_for(&third).len() == 1
    })
    .await;
    assert!(
        slow.bodies_for(&second).is_empty(),
        "the second went out twice"
    );
}
