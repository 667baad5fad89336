//! Test numbers: configured numbers with fixed codes, for app-store review
//! and end-to-end tests. Never sent, never billed, still bounded by
//! attempts (SEC-7), counted as `kind="test"`.

use serde_json::{json, Value};

use crate::support::{json_of, problem, RedisServer, TestApp};

const TEST_NUMBER: &str = "+819099990001";

fn settings(redis: &RedisServer) -> otpd::config::Settings {
    let mut settings = crate::support::settings(Some(redis));
    let demo = settings.services.get_mut("demo").expect("demo");
    demo.test_numbers = [(TEST_NUMBER.to_owned(), "424242".to_owned())].into();
    demo.allow_test_numbers = true;
    // Budgets and range limits are about what sending costs: a test number
    // sends nothing, so this cap of one message does not stop it.
    demo.limits.budget.daily_messages = Some(1);
    settings
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_number_has_its_fixed_code_and_is_never_sent() {
    let redis = RedisServer::start();
    let app = TestApp::spawn(&settings(&redis)).await;
    let check = async |id: &str, code: &str| -> Value { json_of(app.check(id, code).await).await };
    // Attempts still bind: five wrong codes fail the verification.
    let id = app.started("090-9999-0001").await;
    for _ in 0..5 {
        assert_eq!(check(&id, "000000").await["valid"], false);
    }
    problem(app.check(&id, "424242").await, 409, "verification-failed").await;
    // A fresh one, resent: the same fixed code, approved once.
    let id = app.started(TEST_NUMBER).await;
    app.clock.advance(std::time::Duration::from_secs(30));
    assert_eq!(app.resend(&id).await.status(), 200);
    let approved = check(&id, "424242").await;
    assert_eq!(
        (approved["valid"].clone(), approved["sends"].clone()),
        (json!(true), json!(2))
    );
    problem(app.check(&id, "424242").await, 409, "verification-approved").await;
    assert_eq!(app.sent_count().await, 0, "never sent");
    // A real number still sends, within the one-message budget the test
    // number did not use.
    app.started("+819012345678").await;
    assert_eq!(app.sent_count().await, 1);
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(r#"otpd_verifications_started_total{channel="sms",country="81",kind="test",service="demo",surface="http"} 3"#),
        "{metrics}"
    );
    assert!(metrics.contains(
        r#"otpd_verifications_started_total{channel="sms",country="81",kind="new",service="demo",surface="http"} 1"#
    ));
    assert!(
        !metrics.contains(r#"kind="test",service="other""#),
        "only services with test numbers have the series"
    );
}
