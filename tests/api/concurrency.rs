//! Single use and bounded guessing under concurrency, and two replicas on
//! one Redis.

use futures_util::future::join_all;
use otpd::carrier::RecordingCarrier;
use otpd::domain::ManualClock;

use crate::support::{json_of, settings, wrong, RedisServer, TestApp, PHONE};

/// SEC-4: 200 concurrent checks of the right code approve exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_right_checks_approve_exactly_once() {
    let redis = RedisServer::start();
    let app = TestApp::spawn(&settings(Some(&redis))).await;
    let id = app.started(PHONE).await;
    let code = app.sent_code(PHONE).await;
    let responses = join_all((0..200).map(|_| app.check(&id, &code))).await;
    let mut approved = 0;
    let mut conflicts = 0;
    for response in responses {
        match response.status().as_u16() {
            200 => {
                assert_eq!(json_of(response).await["valid"], true);
                approved += 1;
            }
            409 => conflicts += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!((approved, conflicts), (1, 199));
}

/// SEC-7: 50 concurrent wrong checks spend exactly max_attempts, never more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_wrong_checks_spend_exactly_max_attempts() {
    let redis = RedisServer::start();
    let app = TestApp::spawn(&settings(Some(&redis))).await;
    let id = app.started(PHONE).await;
    let guess = wrong(&app.sent_code(PHONE).await);
    let responses = join_all((0..50).map(|_| app.check(&id, &guess))).await;
    let mut wrong_answers = 0;
    for response in responses {
        match response.status().as_u16() {
            200 => {
                let body = json_of(response).await;
                assert_eq!(body["valid"], false);
                assert!(body["attempts_left"].as_i64().expect("number") >= 0);
                wrong_answers += 1;
            }
            409 => assert_eq!(json_of(response).await["code"], "verification-failed"),
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(wrong_answers, 5);
    let status = json_of(app.status(&id).await).await;
    assert_eq!(
        (status["attempts_left"].as_u64(), status["status"].as_str()),
        (Some(0), Some("failed"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verification_started_on_one_replica_checks_on_another() {
    let redis = RedisServer::start();
    let (carrier, clock) = (RecordingCarrier::new(), ManualClock::new());
    let one = TestApp::spawn_with(&settings(Some(&redis)), carrier.clone(), clock.clone()).await;
    let two = TestApp::spawn_with(&settings(Some(&redis)), carrier, clock).await;
    let id = one.started(PHONE).await;
    let code = one.sent_code(PHONE).await;
    assert_eq!(json_of(two.status(&id).await).await["status"], "pending");
    assert_eq!(json_of(two.check(&id, &code).await).await["valid"], true);
    assert_eq!(
        json_of(one.check(&id, &code).await).await["code"],
        "verification-approved"
    );
}
